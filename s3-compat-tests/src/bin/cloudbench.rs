//! `cloudbench`: the baseline of the cloud-backend benchmark — the provider's own SDK (the one
//! Drive uses) talking to the provider directly: 1 MiB objects with 8 in flight, and 64 MiB
//! objects one at a time, written then read. Prints `name value unit` lines like `s3bench`.
//!
//! Usage: `cloudbench azure ENDPOINT ACCOUNT KEY CONTAINER`
//!        `cloudbench azure-create ENDPOINT ACCOUNT KEY CONTAINER` (creates the container)
//!        `cloudbench gcs ENDPOINT BUCKET`
//! With `BENCH_WATCH` set, each point also prints CPU seconds per GiB by process ([`CpuWatch`]).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use s3_compat_tests::cpu::CpuWatch;
use s3_compat_tests::pattern;

const MIB: usize = 1024 * 1024;
const WINDOW: Duration = Duration::from_secs(4);

/// One provider, as the benchmark drives it.
enum Provider {
    Azure(azure_storage_blobs::prelude::ContainerClient),
    Gcs(gcloud_storage::client::Client, String),
}

impl Provider {
    async fn put(&self, name: &str, body: Bytes) {
        match self {
            Self::Azure(c) => {
                c.blob_client(name)
                    .put_block_blob(body)
                    .await
                    .expect("put blob");
            }
            Self::Gcs(c, bucket) => {
                use gcloud_storage::http::objects::upload::{
                    Media, UploadObjectRequest, UploadType,
                };
                let req = UploadObjectRequest {
                    bucket: bucket.clone(),
                    ..Default::default()
                };
                c.upload_object(&req, body, &UploadType::Simple(Media::new(name.to_owned())))
                    .await
                    .expect("upload");
            }
        }
    }

    async fn get(&self, name: &str) -> usize {
        match self {
            Self::Azure(c) => {
                let mut pages = c.blob_client(name).get().into_stream();
                let mut n = 0;
                while let Some(page) = pages.next().await {
                    let mut data = page.expect("get blob").data;
                    while let Some(chunk) = data.next().await {
                        n += chunk.expect("blob body").len();
                    }
                }
                n
            }
            Self::Gcs(c, bucket) => {
                use gcloud_storage::http::objects::download::Range;
                use gcloud_storage::http::objects::get::GetObjectRequest;
                let req = GetObjectRequest {
                    bucket: bucket.clone(),
                    object: name.to_owned(),
                    ..Default::default()
                };
                let mut stream = std::pin::pin!(
                    c.download_streamed_object(&req, &Range::default())
                        .await
                        .expect("download")
                );
                let mut n = 0;
                while let Some(chunk) = stream.next().await {
                    n += chunk.expect("object body").len();
                }
                n
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let provider = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [
            _,
            verb @ ("azure" | "azure-create"),
            endpoint,
            account,
            key,
            container,
        ] => {
            let location = azure_storage::CloudLocation::Custom {
                account: (*account).to_owned(),
                uri: (*endpoint).to_owned(),
            };
            let credentials =
                azure_storage::StorageCredentials::access_key(*account, (*key).to_owned());
            // Pooled like Drive's own client (azure_core's default opens a connection per
            // call), so the comparison is of like with like.
            let http = reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(4))
                .tcp_nodelay(true)
                .build()
                .expect("an HTTP client");
            let client =
                azure_storage_blobs::prelude::ClientBuilder::with_location(location, credentials)
                    .transport(azure_core::TransportOptions::new(std::sync::Arc::new(http)))
                    .container_client(*container);
            if *verb == "azure-create" {
                client.create().await.expect("create the container");
                return;
            }
            Provider::Azure(client)
        }
        [_, "gcs", endpoint, bucket] => {
            let config = gcloud_storage::client::ClientConfig {
                storage_endpoint: (*endpoint).to_owned(),
                ..Default::default()
            }
            .anonymous();
            Provider::Gcs(
                gcloud_storage::client::Client::new(config),
                (*bucket).to_owned(),
            )
        }
        _ => {
            eprintln!(
                "usage: cloudbench azure ENDPOINT ACCOUNT KEY CONTAINER | gcs ENDPOINT BUCKET"
            );
            std::process::exit(2);
        }
    };
    let data = Bytes::from(pattern(11, 320 * MIB));
    let slice = |i: usize, len: usize| {
        let start = (i.wrapping_mul(4099 * 4096)) % (data.len() - len);
        data.slice(start..start + len)
    };
    let p = &provider;
    let run = format!("cloudbench-{}", std::process::id());
    let cpu = CpuWatch::from_env();

    let before = cpu.sample();
    let start = Instant::now();
    let written: Vec<usize> = futures::stream::iter(0..8)
        .map(|w| {
            let run = &run;
            let slice = &slice;
            async move {
                let mut i = w;
                let mut n = 0;
                while start.elapsed() < WINDOW {
                    p.put(&format!("{run}/1m/{i}"), slice(i, MIB)).await;
                    i += 8;
                    n += 1;
                }
                n
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let total: usize = written.iter().sum();
    let rate = total as f64 / start.elapsed().as_secs_f64();
    println!("put_1m_c8 {rate:.3} MiB/s");
    cpu.report("put_1m_c8", &before, rate);
    // Every index below this was written (each worker wrote at least this many / 8).
    let complete = 8 * written.iter().copied().min().unwrap_or(0);
    let before = cpu.sample();
    let start = Instant::now();
    let read: Vec<usize> = futures::stream::iter(0..8)
        .map(|w| {
            let run = &run;
            async move {
                let mut i = w;
                let mut n = 0;
                while start.elapsed() < WINDOW {
                    let k = i % complete.max(1);
                    n += p.get(&format!("{run}/1m/{k}")).await;
                    i += 8;
                }
                n
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let bytes: usize = read.iter().sum();
    let rate = bytes as f64 / MIB as f64 / start.elapsed().as_secs_f64();
    println!("get_1m_c8 {rate:.3} MiB/s");
    cpu.report("get_1m_c8", &before, rate);

    let before = cpu.sample();
    let start = Instant::now();
    for i in 0..4 {
        p.put(&format!("{run}/64m/{i}"), slice(i, 64 * MIB)).await;
    }
    let rate = 256.0 / start.elapsed().as_secs_f64();
    println!("put_64m {rate:.3} MiB/s");
    cpu.report("put_64m", &before, rate);
    let before = cpu.sample();
    let start = Instant::now();
    for i in 0..4 {
        assert_eq!(p.get(&format!("{run}/64m/{i}")).await, 64 * MIB);
    }
    let rate = 256.0 / start.elapsed().as_secs_f64();
    println!("get_64m {rate:.3} MiB/s");
    cpu.report("get_64m", &before, rate);
}
