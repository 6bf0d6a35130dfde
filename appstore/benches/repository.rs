//! Repository benchmark (`scripts/bench-appstore.sh`): import throughput of 5 MiB bundles
//! against a plain S3 PUT of the same bytes to the same Drive (the floor: every import
//! stores the bundle there), and list latency with 10 000 apps in PostgreSQL against the
//! same page read straight from the database.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{BUCKET, Db, Stack, manifest, zip};
use reqwest::Method;

const BUNDLE_MIB: usize = 5;
const IMPORTS: usize = 24;
const APPS: usize = 10_000;
const LISTS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "{name:<44} p50 {:>8.2} ms  p99 {:>8.2} ms  (n={})",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
    );
}

/// Incompressible bytes, so the bundle really is 5 MiB on the wire and in Drive.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn big_bundle(version: &str, payload: &[u8]) -> Vec<u8> {
    let toml = manifest("ai.h2o.bench.big", version, "");
    zip(&[
        ("app.toml", toml.as_bytes()),
        ("app.py", b"from h2o_wave import main, app, Q, ui\n"),
        ("static/icon.png", common::ICON),
        ("data/model.bin", payload),
    ])
}

async fn imports(stack: &Stack, concurrency: usize) {
    let payload = noise(BUNDLE_MIB << 20);
    let token = stack.token("alice").await;
    let s3 = stack.s3();
    let sample = big_bundle("0.0.0", &payload);
    println!(
        "bundle: {:.2} MiB, {IMPORTS} imports, concurrency {concurrency}",
        sample.len() as f64 / f64::from(1 << 20)
    );

    let started = Instant::now();
    let puts = futures::future::join_all((0..concurrency).map(|w| {
        let s3 = s3.clone();
        let body = sample.clone();
        async move {
            for i in (w..IMPORTS).step_by(concurrency) {
                s3.put_object()
                    .bucket(BUCKET)
                    .key(format!("bench/baseline-{i}.wave"))
                    .body(body.clone().into())
                    .send()
                    .await
                    .expect("baseline PUT");
            }
        }
    }));
    puts.await;
    let baseline = IMPORTS as f64 / started.elapsed().as_secs_f64();

    let bodies: Vec<Vec<u8>> = (0..IMPORTS)
        .map(|i| big_bundle(&format!("{concurrency}.0.{i}"), &payload))
        .collect();
    let started = Instant::now();
    let runs = futures::future::join_all((0..concurrency).map(|w| {
        let token = token.clone();
        let bodies = &bodies;
        async move {
            for i in (w..IMPORTS).step_by(concurrency) {
                let (status, body) = stack
                    .import_with_token(&token, bodies[i].clone(), None)
                    .await;
                assert_eq!(status, 201, "{body}");
            }
        }
    }));
    runs.await;
    let imported = IMPORTS as f64 / started.elapsed().as_secs_f64();
    println!(
        "import c{concurrency}: {imported:.2} bundles/s ({:.1} MiB/s); baseline S3 PUT of the same bytes to Drive: {baseline:.2} /s; import/baseline {:.2}",
        imported * sample.len() as f64 / f64::from(1 << 20),
        imported / baseline
    );
}

async fn listing(stack: &Stack) {
    let repo = appstore::repository::Repository::open(&stack.database_url)
        .await
        .unwrap();
    let owners = [
        "00000000-0000-4000-8000-00000000a11c",
        "00000000-0000-4000-8000-000000000b0b",
        "someone-else",
    ];
    let visibilities = ["ALL_USERS", "PRIVATE", "PUBLIC", "ALL_USERS"];
    let started = Instant::now();
    for chunk in 0..(APPS / 500) {
        let mut tx = repo.pool().begin().await.unwrap();
        for i in chunk * 500..(chunk + 1) * 500 {
            sqlx::query(
                "INSERT INTO apps (id, name, version, state, title, description, long_description, \
                 owner_subject, owner_name, visibility, lifecycle, manifest, bundle_key, bundle_size, \
                 bundle_sha256, screenshots, created_at, updated_at) VALUES ($1, $2, $3, 'ready', $4, \
                 'A benchmark app', '', $5, 'bench', $6, 'ON_DEMAND', '{}', $7, 1, '', '[]', $8, $8)",
            )
            .bind(format!("bench-{i:05}"))
            .bind(format!("ai.h2o.bench.app{:04}", i / 3))
            .bind(format!("1.0.{}", i % 3))
            .bind(format!("Benchmark app {i}"))
            .bind(owners[i % owners.len()])
            .bind(visibilities[i % visibilities.len()])
            .bind(format!("apps/bench-{i:05}/bundle.wave"))
            .bind(i as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }
    println!(
        "inserted {APPS} apps in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let token = stack.token("bob").await;

    let mut first = Vec::new();
    let mut deep = Vec::new();
    let mut search = Vec::new();
    let mut pages_walked = 0;
    let mut next: Option<String> = None;
    for _ in 0..LISTS {
        let t = Instant::now();
        let (status, _) = get(stack, &token, "/api/v1/apps?pageSize=50").await;
        assert_eq!(status, 200);
        first.push(t.elapsed());

        let path = match &next {
            Some(token) => format!("/api/v1/apps?pageSize=50&pageToken={token}"),
            None => "/api/v1/apps?pageSize=50".to_owned(),
        };
        let t = Instant::now();
        let (_, page) = get(stack, &token, &path).await;
        deep.push(t.elapsed());
        next = page["nextPageToken"].as_str().map(str::to_owned);
        pages_walked += 1;

        let t = Instant::now();
        let (status, _) = get(stack, &token, "/api/v1/apps?pageSize=50&q=app 12").await;
        assert_eq!(status, 200);
        search.push(t.elapsed());
    }
    report("GET /api/v1/apps first page (50 of 10k)", first);
    report(
        &format!("GET /api/v1/apps walking pages ({pages_walked})"),
        deep,
    );
    report("GET /api/v1/apps?q= (substring search)", search);

    let mut direct = Vec::new();
    for _ in 0..LISTS {
        let t = Instant::now();
        let rows = sqlx::query(
            "SELECT * FROM apps a WHERE a.state = 'ready' AND (a.visibility IN ('ALL_USERS', 'PUBLIC') \
             OR a.owner_subject = $1) ORDER BY a.name, a.version LIMIT 51",
        )
        .bind(owners[1])
        .fetch_all(repo.pool())
        .await
        .unwrap();
        assert_eq!(rows.len(), 51);
        direct.push(t.elapsed());
    }
    report("baseline: the same page straight from SQL", direct);
}

async fn get(stack: &Stack, token: &str, path: &str) -> (u16, serde_json::Value) {
    let response = stack
        .http
        .request(Method::GET, format!("{}{path}", stack.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let db = match std::env::var("BENCH_DB").as_deref() {
        Ok("sqlite") => Db::Sqlite,
        _ => Db::Postgres,
    };
    println!("App Store repository benchmark on {db:?}");
    let stack = Stack::start_with(db, |a| a.app_version_limit = Some(1000)).await;
    imports(&stack, 1).await;
    imports(&stack, 4).await;
    listing(&stack).await;
    stack.stop().await;
}
