//! Instance benchmark (`scripts/bench-instances.sh`): cold start on the local runtime
//! (import → run → first 200 through the router) with warm package caches, with and without a
//! warm virtualenv cache, pip and then uv installing the requirements; and the router's overhead: requests per second and latency of a
//! small page (Wave's index) through the router against the same page straight from waved,
//! in the same run, from a minimal load generator in a process of its own — with every
//! process free to use both CPUs ("shared"), and with the instance on one CPU and the App
//! Store and the load generator on the other ("apart").

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Db, Stack, bundle};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const COLD_STARTS: usize = 3;
const REQUESTS: usize = 20_000;
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

/// `REQUESTS` GETs of `url` (`http://host:port/path`) from `CONCURRENCY` keep-alive
/// connections: requests per second and latencies. The client is a minimal HTTP/1.1 one (a
/// prepared request, the answer read to its Content-Length or last chunk) so that it costs
/// far less CPU per request than the servers it measures.
async fn load(url: &str, token: Option<&str>) -> (f64, Vec<Duration>) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let request: Arc<[u8]> =
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: */*\r\n\r\n")
            .into_bytes()
            .into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (host, request, next) = (host.to_owned(), Arc::clone(&request), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(&host)
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut samples = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS {
                let t = Instant::now();
                stream.write_all(&request).await.expect("send");
                read_answer(&mut stream, &mut buf).await;
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

/// Reads one `200` answer from `stream` into `buf`, to the end of its body.
async fn read_answer(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    buf.clear();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|n| n.trim().parse::<usize>().expect("a length"));
            let done = |b: &[u8]| match length {
                Some(n) => b.len() >= end + 4 + n,
                None => b[end..].ends_with(b"\r\n0\r\n\r\n"),
            };
            while !done(buf) {
                read_more(stream, buf).await;
            }
            return;
        }
        read_more(stream, buf).await;
    }
}

async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    let n = stream.read_buf(buf).await.expect("receive");
    assert!(n > 0, "the server closed the connection");
}

/// The load generator's own process (this binary, run with `LOAD_URL` set): one thread, so
/// it never shares the App Store's runtime. Prints `rate p50 p99`.
fn load_process(url: &str) {
    let token = std::env::var(LOAD_TOKEN).ok();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (rate, lat) = runtime.block_on(load(url, token.as_deref()));
    println!(
        "{rate} {} {}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

/// Runs the load generator in its own process on `cpus` (a `taskset` list): requests per
/// second, p50 and p99 in ms.
async fn measure(url: &str, token: Option<&str>, cpus: &str) -> (f64, f64, f64) {
    let mut command = tokio::process::Command::new("taskset");
    command
        .arg("-c")
        .arg(cpus)
        .arg(std::env::current_exe().expect("this binary"));
    command.env(LOAD_URL, url).env_remove(LOAD_TOKEN);
    if let Some(token) = token {
        command.env(LOAD_TOKEN, token);
    }
    let out = command.output().await.expect("the load generator runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let figures: Vec<f64> = text
        .split_whitespace()
        .map(|f| f.parse().expect("a figure"))
        .collect();
    (figures[0], figures[1], figures[2])
}

/// Puts every thread of every process in process group `group` on `cpus`.
fn pin_group(group: u32, cpus: &str) {
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces, so count after the last ')'.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok());
        if pgrp == Some(group) {
            pin(pid, cpus);
        }
    }
}

/// Puts every thread of process `pid` on `cpus`.
fn pin(pid: u32, cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset runs");
    assert!(status.success(), "taskset {pid}");
}

/// The URL the load generator process fetches.
const LOAD_URL: &str = "INSTANCES_BENCH_LOAD_URL";
/// The bearer token it sends, if any.
const LOAD_TOKEN: &str = "INSTANCES_BENCH_LOAD_TOKEN";

fn main() {
    if let Ok(url) = std::env::var(LOAD_URL) {
        return load_process(&url);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(bench());
}

async fn bench() {
    println!(
        "cold start (import -> run -> first 200 through the router), warm package caches, \
         pip and then uv installing the requirements:"
    );
    let venvs = tempfile::tempdir().expect("temp dir");
    let stack = start(None, venvs.path()).await;
    let ids = cold_starts(&stack, "pip", venvs.path()).await;
    terminate(&stack, &ids).await;
    stack.stop().await;
    let stack = start(Some(tools_dir().join("venv/bin/uv")), venvs.path()).await;
    let ids = cold_starts(&stack, "uv", venvs.path()).await;

    let id = ids.last().expect("an instance").clone();
    let state: Value = serde_json::from_slice(
        &std::fs::read(stack_instances_dir(&stack).join(&id).join("state.json")).expect("state"),
    )
    .expect("json");
    let wave_port = state["wave_port"].as_u64().expect("waved's port");
    let launcher = state["pid"].as_u64().expect("the launcher's pid") as u32;
    let token = stack.token("alice").await;
    let direct = format!("http://127.0.0.1:{wave_port}/instance/{id}/");
    let routed = format!("{}/instance/{id}/", stack.url);
    let size = stack
        .http
        .get(&direct)
        .send()
        .await
        .expect("waved")
        .bytes()
        .await
        .expect("body")
        .len();
    println!(
        "router overhead: GET of Wave's index ({size} bytes), {REQUESTS} requests, {CONCURRENCY} at once, \
         from a load generator in its own process:"
    );
    // "shared": every process may run on both CPUs. "apart": the instance on CPU 1, the App
    // Store and the load generator on CPU 0 — the router does not take the instance's CPU,
    // as in a deployment where instances and the App Store run in different pods.
    for (layout, instance_cpus, ours) in [("shared", "0,1", "0,1"), ("apart", "1", "0")] {
        pin_group(launcher, instance_cpus);
        pin(std::process::id(), ours);
        for round in 0..3 {
            let (direct_rate, direct_p50, direct_p99) = measure(&direct, None, ours).await;
            let (routed_rate, routed_p50, routed_p99) = measure(&routed, Some(&token), ours).await;
            println!(
                "  {layout} round {round}: direct to waved {direct_rate:>7.0} req/s p50 {direct_p50:>6.2} ms p99 {direct_p99:>6.2} ms | through the router {routed_rate:>7.0} req/s p50 {routed_p50:>6.2} ms p99 {routed_p99:>6.2} ms | rate ratio {:.3}",
                routed_rate / direct_rate
            );
        }
    }
    pin_group(launcher, "0,1");
    pin(std::process::id(), "0,1");
    terminate(&stack, &ids).await;
    stack.stop().await;
}

/// The platform with the local runtime, its virtualenvs in `venvs`, installing with `uv`
/// when given (pip otherwise).
async fn start(uv: Option<PathBuf>, venvs: &Path) -> Stack {
    let launcher = s3_compat_tests::server::binary()
        .parent()
        .expect("the target dir")
        .join("appstore-launcher");
    let pip_cache = tools_dir().join("appstore-pip-cache");
    let venvs = venvs.to_owned();
    Stack::start_with(Db::Sqlite, |a| {
        a.launcher = Some(launcher);
        a.pip_cache_dir = Some(pip_cache);
        a.venv_cache_dir = Some(venvs);
        a.uv = uv;
        a.routing_mode = Some("BASE_URL".into());
        a.app_version_limit = Some(1000);
        a.instance_limit = Some(1000);
    })
    .await
}

/// [`COLD_STARTS`] rounds of a start with an empty virtualenv cache (`installer` installs
/// h2o-wave from its warm cache) and one with the virtualenv built; the instances' ids.
async fn cold_starts(stack: &Stack, installer: &str, venvs: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for round in 0..COLD_STARTS {
        let _ = std::fs::remove_dir_all(venvs);
        std::fs::create_dir_all(venvs).expect("venv cache");
        let (cold, id) = cold_start(stack, &format!("1.0.{round}")).await;
        ids.push(id);
        let (warm, id) = cold_start(stack, &format!("2.0.{round}")).await;
        ids.push(id);
        println!(
            "  {installer} round {round}: cold virtualenv cache {:>6.2} s   warm virtualenv cache {:>6.2} s",
            cold.as_secs_f64(),
            warm.as_secs_f64()
        );
    }
    ids
}

/// Terminates the instances `ids`.
async fn terminate(stack: &Stack, ids: &[String]) {
    for id in ids {
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/instances/{id}"),
                Some("alice"),
                None,
            )
            .await;
    }
}

fn stack_instances_dir(stack: &Stack) -> PathBuf {
    stack.data_dir().join("instances")
}
