//! Instance benchmark (`scripts/bench-instances.sh`): cold start on the local runtime
//! (import → run → first 200 through the router) with a warm pip cache, with and without a
//! warm virtualenv cache; and the router's overhead: requests per second and latency of a
//! small page (Wave's index) through the router against the same page straight from waved,
//! in the same run.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Db, Stack, bundle};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const COLD_STARTS: usize = 3;
const REQUESTS: usize = 4000;
const CONCURRENCY: usize = 8;

fn tools_dir() -> PathBuf {
    std::env::var_os("DRIVE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/drive-tools"),
        PathBuf::from,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Imports a fresh version of the hello app, runs it, and times until the router serves it.
async fn cold_start(stack: &Stack, version: &str) -> (Duration, String) {
    let token = stack.token("alice").await;
    let started = Instant::now();
    let (status, app) = stack
        .import_with_token(&token, bundle("ai.h2o.bench.hello", version), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app = app["id"].as_str().expect("an app id");
    let (status, inst) = stack
        .call(
            Method::POST,
            &format!("/api/v1/apps/{app}/instances"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_str().expect("an instance id").to_owned();
    let page = format!("{}/instance/{id}/", stack.url);
    loop {
        let r = stack
            .http
            .get(&page)
            .bearer_auth(&token)
            .send()
            .await
            .expect("router");
        if r.status() == StatusCode::OK {
            return (started.elapsed(), id);
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no start within 10 min"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `REQUESTS` GETs of `url` from `CONCURRENCY` tasks: requests per second and latencies.
async fn load(http: &reqwest::Client, url: &str, token: Option<&str>) -> (f64, Vec<Duration>) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, url, next) = (http.clone(), url.to_owned(), Arc::clone(&next));
        let token = token.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS {
                let t = Instant::now();
                let mut r = http.get(&url);
                if let Some(token) = &token {
                    r = r.bearer_auth(token);
                }
                let response = r.send().await.expect("an answer");
                assert_eq!(response.status(), StatusCode::OK);
                response.bytes().await.expect("a body");
                samples.push(t.elapsed());
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a load task"));
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_unstable();
    (rate, all)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let launcher = s3_compat_tests::server::binary()
        .parent()
        .expect("the target dir")
        .join("appstore-launcher");
    let pip_cache = tools_dir().join("appstore-pip-cache");
    let venvs = tempfile::tempdir().expect("temp dir");
    let stack = Stack::start_with(Db::Sqlite, |a| {
        a.launcher = Some(launcher);
        a.pip_cache_dir = Some(pip_cache);
        a.venv_cache_dir = Some(venvs.path().to_owned());
        a.routing_mode = Some("BASE_URL".into());
        a.app_version_limit = Some(1000);
        a.instance_limit = Some(1000);
    })
    .await;

    println!("cold start (import -> run -> first 200 through the router), warm pip cache:");
    let mut ids = Vec::new();
    for round in 0..COLD_STARTS {
        // A fresh virtualenv cache each round: pip installs h2o-wave from its warm cache.
        let _ = std::fs::remove_dir_all(venvs.path());
        std::fs::create_dir_all(venvs.path()).expect("venv cache");
        let (cold, id) = cold_start(&stack, &format!("1.0.{round}")).await;
        ids.push(id);
        let (warm, id) = cold_start(&stack, &format!("2.0.{round}")).await;
        ids.push(id);
        println!(
            "  round {round}: cold virtualenv cache {:>6.2} s   warm virtualenv cache {:>6.2} s",
            cold.as_secs_f64(),
            warm.as_secs_f64()
        );
    }

    let id = ids.last().expect("an instance").clone();
    let state: Value = serde_json::from_slice(
        &std::fs::read(stack_instances_dir(&stack).join(&id).join("state.json")).expect("state"),
    )
    .expect("json");
    let wave_port = state["wave_port"].as_u64().expect("waved's port");
    let token = stack.token("alice").await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("a client");
    let direct = format!("http://127.0.0.1:{wave_port}/instance/{id}/");
    let routed = format!("{}/instance/{id}/", stack.url);
    let size = http
        .get(&direct)
        .send()
        .await
        .expect("waved")
        .bytes()
        .await
        .expect("body")
        .len();
    println!(
        "router overhead: GET of Wave's index ({size} bytes), {REQUESTS} requests, {CONCURRENCY} at once:"
    );
    for round in 0..3 {
        let (direct_rate, direct_lat) = load(&http, &direct, None).await;
        let (routed_rate, routed_lat) = load(&http, &routed, Some(&token)).await;
        println!(
            "  round {round}: direct to waved {direct_rate:>7.0} req/s p50 {:>6.2} ms p99 {:>6.2} ms | through the router {routed_rate:>7.0} req/s p50 {:>6.2} ms p99 {:>6.2} ms | rate ratio {:.3}",
            percentile(&direct_lat, 0.5),
            percentile(&direct_lat, 0.99),
            percentile(&routed_lat, 0.5),
            percentile(&routed_lat, 0.99),
            routed_rate / direct_rate
        );
    }
    for id in &ids {
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/instances/{id}"),
                Some("alice"),
                None,
            )
            .await;
    }
    stack.stop().await;
}

fn stack_instances_dir(stack: &Stack) -> PathBuf {
    stack.data_dir().join("instances")
}
