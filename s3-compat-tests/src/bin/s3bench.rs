//! `s3bench`: measures an S3 endpoint with the AWS SDK — small-object ops/s, 1 MiB, 64 MiB
//! and 256 MiB throughput, a 1 GiB multipart upload and a 10 000-key listing. Prints one
//! `name value unit` line per figure. Every object has unique content.
//!
//! Usage: `s3bench ENDPOINT ACCESS_KEY SECRET_KEY [SCENARIO...]`; with `BENCH_WATCH` set, the
//! 1 MiB and 64 MiB points also print CPU seconds per GiB by process (see [`CpuWatch`]).

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::StreamExt;
use s3_compat_tests::cpu::CpuWatch;
use s3_compat_tests::{client, multipart_put, pattern, unique};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Time box of each ops/s scenario.
const WINDOW: Duration = Duration::from_secs(4);

struct Bench {
    client: Client,
    bucket: String,
    data: Bytes,
}

impl Bench {
    fn slice(&self, seed: usize, len: usize) -> Bytes {
        let start = (seed.wrapping_mul(4099 * 4096)) % (self.data.len() - len);
        self.data.slice(start..start + len)
    }

    async fn put(&self, key: &str, body: Bytes) {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("put");
    }

    async fn get(&self, key: &str) -> usize {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get");
        let mut body = out.body;
        let mut n = 0;
        while let Some(chunk) = body.next().await {
            n += chunk.expect("body").len();
        }
        n
    }

    /// Runs `op(i)` with `concurrency` in flight until the window closes; returns ops/s, the
    /// median latency, and `n` such that every `i < n` was done.
    async fn ops<'a, F, Fut>(&'a self, concurrency: usize, op: F) -> (f64, Duration, usize)
    where
        F: Fn(usize) -> Fut + Copy + 'a,
        Fut: Future<Output = ()> + 'a,
    {
        let start = Instant::now();
        let latencies: Vec<Vec<Duration>> = futures::stream::iter(0..concurrency)
            .map(|w| async move {
                let mut lat = Vec::new();
                let mut i = w;
                while start.elapsed() < WINDOW {
                    let t = Instant::now();
                    op(i).await;
                    lat.push(t.elapsed());
                    i += concurrency;
                }
                lat
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let elapsed = start.elapsed().as_secs_f64();
        let done = latencies.iter().map(Vec::len).min().unwrap_or(0) * concurrency;
        let mut all: Vec<Duration> = latencies.into_iter().flatten().collect();
        all.sort();
        (all.len() as f64 / elapsed, all[all.len() / 2], done.max(1))
    }
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.3} {unit}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, access, secret, only @ ..] = args.as_slice() else {
        eprintln!("usage: s3bench ENDPOINT ACCESS_KEY SECRET_KEY [SCENARIO...]");
        std::process::exit(2);
    };
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let client = client(endpoint, access, secret);
    let bucket = unique("bench");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let bench = Bench {
        client,
        bucket,
        data: Bytes::from(pattern(7, 1024 * MIB + 256 * MIB)),
    };
    let b = &bench;

    if wanted("small") {
        for c in [1, 32] {
            let (ops, p50, written) = b
                .ops(c, |i| async move {
                    b.put(&format!("small/{c}/{i}"), b.slice(i, 4 * KIB)).await
                })
                .await;
            report(&format!("put_4k_c{c}"), ops, "ops/s");
            report(
                &format!("put_4k_c{c}_p50"),
                p50.as_secs_f64() * 1000.0,
                "ms",
            );
            let (ops, p50, _) = b
                .ops(c, |i| async move {
                    b.get(&format!("small/{c}/{}", i % written)).await;
                })
                .await;
            report(&format!("get_4k_c{c}"), ops, "ops/s");
            report(
                &format!("get_4k_c{c}_p50"),
                p50.as_secs_f64() * 1000.0,
                "ms",
            );
        }
    }
    let cpu = CpuWatch::from_env();
    if wanted("1m") {
        let before = cpu.sample();
        let (ops, _, written) = b
            .ops(8, |i| async move {
                b.put(&format!("1m/{i}"), b.slice(i, MIB)).await
            })
            .await;
        report("put_1m_c8", ops, "MiB/s");
        cpu.report("put_1m_c8", &before, ops);
        let before = cpu.sample();
        let (ops, _, _) = b
            .ops(8, |i| async move {
                b.get(&format!("1m/{}", i % written)).await;
            })
            .await;
        report("get_1m_c8", ops, "MiB/s");
        cpu.report("get_1m_c8", &before, ops);
    }
    if wanted("64m") {
        let before = cpu.sample();
        let t = Instant::now();
        for i in 0..4 {
            b.put(&format!("64m/{i}"), b.slice(i, 64 * MIB)).await;
        }
        let rate = 256.0 / t.elapsed().as_secs_f64();
        report("put_64m", rate, "MiB/s");
        cpu.report("put_64m", &before, rate);
        let before = cpu.sample();
        let t = Instant::now();
        for i in 0..4 {
            assert_eq!(b.get(&format!("64m/{i}")).await, 64 * MIB);
        }
        let rate = 256.0 / t.elapsed().as_secs_f64();
        report("get_64m", rate, "MiB/s");
        cpu.report("get_64m", &before, rate);
    }
    if wanted("256m") {
        let body = b.slice(3, 256 * MIB);
        let t = Instant::now();
        b.put("256m", body).await;
        report("put_256m", 256.0 / t.elapsed().as_secs_f64(), "MiB/s");
        let t = Instant::now();
        let n = b.get("256m").await;
        assert_eq!(n, 256 * MIB);
        report("get_256m", 256.0 / t.elapsed().as_secs_f64(), "MiB/s");
    }
    if wanted("multipart") {
        let t = Instant::now();
        multipart_put(&b.client, &b.bucket, "1g", 16, 4, |n| {
            ByteStream::from(b.data.slice((n - 1) * 64 * MIB..n * 64 * MIB))
        })
        .await;
        report(
            "multipart_1g_c4",
            1024.0 / t.elapsed().as_secs_f64(),
            "MiB/s",
        );
    }
    if wanted("list") {
        futures::stream::iter(0..10_000usize)
            .map(|i| async move {
                b.put(&format!("list/{:02}/{i:05}", i % 37), b.slice(i, 16))
                    .await
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        let t = Instant::now();
        let mut token = None;
        let mut n = 0;
        loop {
            let page = b
                .client
                .list_objects_v2()
                .bucket(&b.bucket)
                .prefix("list/")
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            n += page.contents().len();
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(n, 10_000);
        report("list_10k", t.elapsed().as_secs_f64(), "s");
    }
}
