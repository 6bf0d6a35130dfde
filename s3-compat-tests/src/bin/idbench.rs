//! `idbench`: measures what identity costs. Starts the test OpenID provider and one Drive that
//! trusts it (release binary from `$DRIVE_BIN`, fs backend, temporary data directory), then
//! measures, over ROUNDS rounds:
//!
//! - STS `AssumeRoleWithWebIdentity` latency (p50, p99, mean) of STS_CALLS sequential exchanges
//!   of alice's access token on one kept-alive connection, after warm-up calls that fill
//!   Drive's key-set (JWKS) cache;
//! - 4 KiB GETs per second with CONCURRENCY in flight for SECONDS, with root credentials and
//!   with session credentials (alice's `_my`) alternately, and the ratio session / root.
//!
//! Prints one line per figure and round, then a markdown table with the medians.
//!
//! Usage: `DRIVE_BIN=target/release/drive idbench [STS_CALLS] [CONCURRENCY] [SECONDS] [ROUNDS]`
//! (defaults 2000, 8, 5, 3); `scripts/bench-identity.sh` builds and runs it.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use s3_compat_tests::idp::{AUDIENCE, CLIENT_ID, Idp};
use s3_compat_tests::server::{ACCESS_KEY, DriveProcess, SECRET_KEY};
use s3_compat_tests::sts::{assume, element, session_client};
use s3_compat_tests::{client, pattern, sign, unique};

/// Size of the objects the GET load reads.
const OBJECT_SIZE: usize = 4 * 1024;
/// Key of the object the GET load reads, in both buckets.
const KEY: &str = "idbench/4k";
/// STS exchanges before the first measured one (the first fetches discovery and the JWKS).
const STS_WARM_UP: usize = 20;
/// GET load before the first measured round, per client (fills its connection pool).
const GET_WARM_UP: Duration = Duration::from_millis(500);
/// The user whose token is exchanged and whose `_my` the session client reads.
const USER: &str = "alice";
/// STS p99 target, in milliseconds.
const STS_P99_TARGET_MS: f64 = 5.0;
/// Least ratio of session-credential to root-credential GETs per second.
const SESSION_RATIO_TARGET: f64 = 0.95;

/// What to measure, from the command line.
struct Settings {
    /// Measured STS exchanges per round.
    calls: usize,
    /// GETs in flight.
    concurrency: usize,
    /// Length of each GET window.
    window: Duration,
    /// Rounds of each measurement.
    rounds: usize,
}

impl Settings {
    /// Reads `[STS_CALLS] [CONCURRENCY] [SECONDS] [ROUNDS]`; exits with the usage on bad input.
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.len() > 4 || args.iter().any(|a| a.starts_with('-')) {
            usage();
        }
        Settings {
            calls: positive(&args, 0, 2000),
            concurrency: positive(&args, 1, 8),
            window: Duration::from_secs(positive(&args, 2, 5)),
            rounds: positive(&args, 3, 3),
        }
    }
}

/// The `i`th argument as a number above zero, `default` when absent; exits on anything else.
fn positive<T: std::str::FromStr + PartialOrd + Default>(
    args: &[String],
    i: usize,
    default: T,
) -> T {
    match args.get(i) {
        None => default,
        Some(a) => match a.parse::<T>() {
            Ok(n) if n > T::default() => n,
            _ => usage(),
        },
    }
}

/// Prints how to call `idbench` and exits with status 2.
fn usage() -> ! {
    eprintln!(
        "usage: idbench [STS_CALLS (2000)] [CONCURRENCY (8)] [SECONDS (5)] [ROUNDS (3)]\n\
         with DRIVE_BIN set to the drive binary (scripts/bench-identity.sh does both)"
    );
    std::process::exit(2)
}

/// Latency figures of one round of STS exchanges, in milliseconds.
struct StsRound {
    /// Median.
    p50: f64,
    /// 99th percentile (nearest rank).
    p99: f64,
    /// Arithmetic mean.
    mean: f64,
}

/// GETs per second of one round.
struct GetRound {
    /// With root credentials.
    root: f64,
    /// With session credentials.
    session: f64,
}

/// The plain-HTTP client of the STS exchanges: one instance, so its connection stays alive,
/// with `TCP_NODELAY` so that the client's Nagle delay is not measured.
fn http_client() -> HttpClient<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    HttpClient::builder(TokioExecutor::new()).build(connector)
}

/// Sends `calls` STS exchanges of `token` one after another on `http`; returns their
/// latencies (request sent to whole body received). Panics on any refusal.
async fn sts_latencies(
    http: &HttpClient<HttpConnector, Full<Bytes>>,
    endpoint: &str,
    token: &str,
    calls: usize,
) -> Vec<Duration> {
    let url = format!("{endpoint}/");
    // The form `sts::assume` sends, as botocore does.
    let form = Bytes::from(format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=drivedrivedrivedrive\
         &RoleSessionName=idbench&WebIdentityToken={token}"
    ));
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let request = sign::request(
            "POST",
            &url,
            [(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
            form.clone(),
        );
        let start = Instant::now();
        let reply = sign::try_send_on(http, request)
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        latencies.push(start.elapsed());
        let body = reply.text();
        assert_eq!(reply.status, 200, "STS refused {USER}: {body}");
        let key = element(&body, "AccessKeyId")
            .unwrap_or_else(|| panic!("no <AccessKeyId> in the STS answer: {body}"));
        assert!(key.starts_with("ASIA"), "a session key id, not {key:?}");
    }
    latencies
}

/// p50, p99 and mean of `latencies`.
fn summarize(mut latencies: Vec<Duration>) -> StsRound {
    assert!(!latencies.is_empty(), "at least one STS exchange");
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let percentile = |p: usize| {
        let rank = (latencies.len() * p).div_ceil(100).max(1);
        ms(latencies[rank - 1])
    };
    StsRound {
        p50: percentile(50),
        p99: percentile(99),
        mean: latencies.iter().copied().map(ms).sum::<f64>() / latencies.len() as f64,
    }
}

/// GETs `bucket/KEY` with `concurrency` requests in flight until `window` has passed (as
/// `s3bench` runs its ops/s points); returns the completed GETs per second.
async fn get_load(client: &Client, bucket: &str, concurrency: usize, window: Duration) -> f64 {
    let start = Instant::now();
    let done: Vec<u64> = futures::stream::iter(0..concurrency)
        .map(|_| async move {
            let mut n: u64 = 0;
            while start.elapsed() < window {
                assert_eq!(
                    s3_compat_tests::get(client, bucket, KEY).await.len(),
                    OBJECT_SIZE,
                    "GET {bucket}/{KEY}"
                );
                n += 1;
            }
            n
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    done.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64()
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    assert!(!v.is_empty(), "a median of at least one value");
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// Prints one markdown table row: the figure for every round, then `summary`.
fn row(point: &str, unit: &str, rounds: &[f64], summary: f64, decimals: usize) {
    let cells: Vec<String> = rounds.iter().map(|v| format!("{v:.decimals$}")).collect();
    println!(
        "| {point} | {unit} | {} | {summary:.decimals$} |",
        cells.join(" | ")
    );
}

/// "met" or "NOT met".
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Runs the benchmark.
#[tokio::main]
async fn main() {
    let settings = Settings::from_args();
    if std::env::var_os("DRIVE_BIN").is_none() {
        eprintln!("idbench: set DRIVE_BIN to the (release) drive binary");
        usage();
    }
    let idp = Idp::start().await;
    let data = tempfile::tempdir().expect("a temporary data directory");
    let flags = [
        "--oidc-issuer",
        idp.issuer(),
        "--oidc-audience",
        AUDIENCE,
        "--oidc-client-id",
        CLIENT_ID,
    ];
    let drive = DriveProcess::start_in(data.path(), &flags).keeping(data);
    let endpoint = drive.endpoint.clone();
    println!(
        "idbench: Drive on {endpoint}, IdP {}; {} STS exchanges, 4 KiB GETs c={} for {} s, \
         {} rounds",
        idp.issuer(),
        settings.calls,
        settings.concurrency,
        settings.window.as_secs(),
        settings.rounds
    );

    // STS: warm up (discovery, JWKS, the connection), then sequential exchanges.
    let http = http_client();
    let token = idp.password_token(USER).await.access_token;
    sts_latencies(&http, &endpoint, &token, STS_WARM_UP).await;
    let mut sts = Vec::with_capacity(settings.rounds);
    for round in 1..=settings.rounds {
        // A fresh token each round, so that no round outlives the token's 5 minutes.
        let token = idp.password_token(USER).await.access_token;
        let r = summarize(sts_latencies(&http, &endpoint, &token, settings.calls).await);
        println!("round {round}: sts_p50 {:.3} ms", r.p50);
        println!("round {round}: sts_p99 {:.3} ms", r.p99);
        println!("round {round}: sts_mean {:.3} ms", r.mean);
        sts.push(r);
    }

    // 4 KiB GETs: the same object size in a root bucket and in alice's `_my`.
    let token = idp.password_token(USER).await.access_token;
    let creds = assume(&endpoint, &token, None)
        .await
        .unwrap_or_else(|e| panic!("STS refused {USER}: {e:?}"));
    let session = session_client(&endpoint, &creds);
    let root = client(&endpoint, ACCESS_KEY, SECRET_KEY);
    let bucket = unique("idbench");
    root.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
    s3_compat_tests::put(&root, &bucket, KEY, pattern(1, OBJECT_SIZE)).await;
    s3_compat_tests::put(&session, "_my", KEY, pattern(2, OBJECT_SIZE)).await;
    let c = settings.concurrency;
    get_load(&root, &bucket, c, GET_WARM_UP).await;
    get_load(&session, "_my", c, GET_WARM_UP).await;
    let mut gets = Vec::with_capacity(settings.rounds);
    for round in 1..=settings.rounds {
        let root_ops = get_load(&root, &bucket, c, settings.window).await;
        println!("round {round}: get_4k_c{c}_root {root_ops:.1} ops/s");
        let session_ops = get_load(&session, "_my", c, settings.window).await;
        println!("round {round}: get_4k_c{c}_session {session_ops:.1} ops/s");
        let ratio = session_ops / root_ops;
        println!("round {round}: session_root_ratio {ratio:.3}");
        gets.push(GetRound {
            root: root_ops,
            session: session_ops,
        });
    }

    let p50: Vec<f64> = sts.iter().map(|r| r.p50).collect();
    let p99: Vec<f64> = sts.iter().map(|r| r.p99).collect();
    let mean: Vec<f64> = sts.iter().map(|r| r.mean).collect();
    let roots: Vec<f64> = gets.iter().map(|g| g.root).collect();
    let sessions: Vec<f64> = gets.iter().map(|g| g.session).collect();
    let ratios: Vec<f64> = gets.iter().map(|g| g.session / g.root).collect();
    let p99_median = median(p99.iter().copied());
    let ratio = median(sessions.iter().copied()) / median(roots.iter().copied());

    let heads: Vec<String> = (1..=settings.rounds)
        .map(|r| format!("round {r}"))
        .collect();
    println!("\n| point | unit | {} | median |", heads.join(" | "));
    println!("|---|---|{}---|", "---|".repeat(settings.rounds));
    let n = settings.calls;
    let table = [
        (format!("STS exchange p50, {n} calls"), "ms", p50, 3),
        (format!("STS exchange p99, {n} calls"), "ms", p99, 3),
        (format!("STS exchange mean, {n} calls"), "ms", mean, 3),
        (format!("4 KiB GET c={c}, root"), "ops/s", roots, 0),
        (format!("4 KiB GET c={c}, session"), "ops/s", sessions, 0),
    ];
    for (point, unit, values, decimals) in &table {
        let m = median(values.iter().copied());
        row(point, unit, values, m, *decimals);
    }
    row("session / root", "ratio", &ratios, ratio, 3);
    println!("\n(the median column of session / root is the ratio of the two medians)");
    println!(
        "target STS p99 < {STS_P99_TARGET_MS} ms: {} ({p99_median:.3} ms)",
        verdict(p99_median < STS_P99_TARGET_MS)
    );
    println!(
        "target session GETs within 5% of root: {} (ratio {ratio:.3})",
        verdict(ratio >= SESSION_RATIO_TARGET)
    );

    let status = drive.terminate();
    if !status.success() {
        eprintln!("idbench: drive exited with {status}");
    }
    idp.stop().await;
}
