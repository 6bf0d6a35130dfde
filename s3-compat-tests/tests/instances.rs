//! App instances end to end: a token broker (played here by a small issuer on loopback that
//! signs with `shared_identity::TokenSigner`, as the App Store's does) mints tokens carrying
//! `instance_id`; Drive's STS turns them into session credentials; revoking the instance at
//! `POST /_drive/api/v1/revocations` (root credentials, HTTP Basic) refuses its tokens and
//! credentials at once, on every replica within the revocation cache age. Drive also starts
//! before the broker and trusts it once it listens, and runs its development issuer beside
//! the broker on request (the all-in-one development setup).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use bytes::Bytes;
use s3_compat_tests::database::TestDatabase;
use s3_compat_tests::server::{ACCESS_KEY, DriveProcess, SECRET_KEY};
use s3_compat_tests::sign::{self, Reply};
use s3_compat_tests::sts::{SessionCredentials, assume, keys_api, session_client};
use serde_json::{Value, json};
use shared_identity::{ServerKey, TokenSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The audience of the broker's tokens, which Drive is told to accept.
const AUDIENCE: &str = "urn:test";

/// A token broker on loopback: discovery and key set over HTTP, tokens signed in process.
struct Broker {
    url: String,
    signer: TokenSigner,
}

impl Broker {
    /// A broker with a new key, to serve at `url`.
    fn new(url: String) -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let key = ServerKey::new(&seed).unwrap();
        Self {
            url,
            signer: TokenSigner::derive(&key, "test-broker\n", "broker"),
        }
    }

    /// A broker listening on a free port.
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = Self::new(format!("http://{}", listener.local_addr().unwrap()));
        broker.serve(listener);
        broker
    }

    /// Serves `/.well-known/openid-configuration` and `/jwks` on `listener`.
    fn serve(&self, listener: TcpListener) {
        let discovery =
            json!({"issuer": self.url, "jwks_uri": format!("{}/jwks", self.url)}).to_string();
        let jwks = self.signer.jwks().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (discovery, jwks) = (discovery.clone(), jwks.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let (status, body) = match request.split_whitespace().nth(1) {
                        Some("/.well-known/openid-configuration") => ("200 OK", discovery),
                        Some("/jwks") => ("200 OK", jwks),
                        _ => ("404 Not Found", "{}".to_owned()),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
    }

    /// An access token for alice, minted for `instance`.
    fn token(&self, instance: &str) -> String {
        self.token_with(&json!({ "instance_id": instance }))
    }

    /// An access token for alice with `extra` claims over valid defaults.
    fn token_with(&self, extra: &Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({"iss": self.url, "sub": "alice-subject", "aud": AUDIENCE,
            "iat": now, "exp": now + 300, "preferred_username": "alice", "groups": ["team-a"]});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        self.signer.sign(&claims)
    }

    /// The flags that make Drive trust this broker.
    fn flags(&self) -> Vec<String> {
        ["--oidc-issuer", &self.url, "--oidc-audience", AUDIENCE]
            .map(str::to_owned)
            .to_vec()
    }
}

/// Starts Drive in a temporary directory with `flags`.
fn drive(flags: &[String]) -> DriveProcess {
    let temp = tempfile::tempdir().unwrap();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    DriveProcess::start_in(temp.path(), &flags).keeping(temp)
}

/// Posts `body` to the revocation endpoint, with `auth` as HTTP Basic credentials.
async fn revoke(endpoint: &str, auth: Option<(&str, &str)>, body: &str) -> Reply {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some((access, secret)) = auth {
        let encoded = base64_simd::STANDARD.encode_to_string(format!("{access}:{secret}"));
        headers.push(("authorization".to_owned(), format!("Basic {encoded}")));
    }
    sign::send(sign::request(
        "POST",
        &format!("{endpoint}/_drive/api/v1/revocations"),
        headers,
        Bytes::from(body.to_owned()),
    ))
    .await
}

/// Revokes `instance` on `endpoint` with the root credentials; expects 204.
async fn revoke_as_root(endpoint: &str, instance: &str) {
    let body = json!({ "instance_id": instance }).to_string();
    let reply = revoke(endpoint, Some((ACCESS_KEY, SECRET_KEY)), &body).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
}

/// Session credentials for `token`; panics with STS's refusal.
async fn session(endpoint: &str, token: &str) -> SessionCredentials {
    assume(endpoint, token, None)
        .await
        .unwrap_or_else(|e| panic!("STS refused the token: {e:?}"))
}

/// What a GET of `_my/key` with `client` fails with: S3 error code and status.
async fn refusal(client: &Client, key: &str) -> (String, u16) {
    s3_compat_tests::failure(client.get_object().bucket("_my").key(key).send().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_instance_refuses_its_credentials_at_once() {
    let broker = Broker::start().await;
    let d = drive(&broker.flags());
    let (t1, t2) = (broker.token("inst-1"), broker.token("inst-2"));
    let (one, two) = (
        session_client(&d.endpoint, &session(&d.endpoint, &t1).await),
        session_client(&d.endpoint, &session(&d.endpoint, &t2).await),
    );
    // Both instances act for alice, in her home bucket.
    s3_compat_tests::put(&one, "_my", "from-1.txt", "one").await;
    s3_compat_tests::put(&two, "_my", "from-2.txt", "two").await;
    assert_eq!(
        s3_compat_tests::get(&one, "_my", "from-2.txt").await,
        b"two"
    );
    assert_eq!(
        s3_compat_tests::get(&two, "_my", "from-1.txt").await,
        b"one"
    );

    // Only the root credentials revoke, and only well-formed instance ids.
    let body = json!({"instance_id": "inst-1"}).to_string();
    let anonymous = revoke(&d.endpoint, None, &body).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let challenge = anonymous.headers.get("www-authenticate").unwrap();
    assert!(challenge.to_str().unwrap().starts_with("Basic"));
    for (access, secret) in [(ACCESS_KEY, "wrong-secret-key"), ("someone", SECRET_KEY)] {
        let reply = revoke(&d.endpoint, Some((access, secret)), &body).await;
        assert_eq!(reply.status, 401, "{access}");
        assert!(reply.headers.contains_key("www-authenticate"));
    }
    let long = "a".repeat(129);
    for bad in [
        "not json".to_owned(),
        String::new(),
        "[]".to_owned(),
        json!({"instance": "inst-1"}).to_string(),
        json!({"instance_id": 7}).to_string(),
        json!({"instance_id": ""}).to_string(),
        json!({"instance_id": "inst/1"}).to_string(),
        json!({ "instance_id": long }).to_string(),
    ] {
        let reply = revoke(&d.endpoint, Some((ACCESS_KEY, SECRET_KEY)), &bad).await;
        assert_eq!(reply.status, 400, "{bad:?}: {}", reply.text());
    }
    // Nothing of that revoked anything.
    assert_eq!(
        s3_compat_tests::get(&one, "_my", "from-1.txt").await,
        b"one"
    );

    revoke_as_root(&d.endpoint, "inst-1").await;
    revoke_as_root(&d.endpoint, "inst-1").await;
    // At once: the instance's session credentials, for reads and writes alike…
    assert_eq!(
        refusal(&one, "from-1.txt").await,
        ("InvalidToken".to_owned(), 403)
    );
    let put = one
        .put_object()
        .bucket("_my")
        .key("late.txt")
        .body(b"late".to_vec().into())
        .send()
        .await;
    assert_eq!(
        s3_compat_tests::failure(put),
        ("InvalidToken".to_owned(), 403)
    );
    // …new exchanges of its tokens, and its tokens on Drive's key API.
    let err = assume(&d.endpoint, &t1, None).await.unwrap_err();
    assert_eq!(
        (err.status, err.code.as_str()),
        (400, "InvalidIdentityToken")
    );
    assert!(err.body.contains("terminated"), "{}", err.body);
    let reply = keys_api(&d.endpoint, "GET", "keys", &t1, "").await;
    assert_eq!(reply.status, 401, "{}", reply.text());

    // The other instance goes on; it cannot mint long-term keys that would outlive it.
    assert_eq!(
        s3_compat_tests::get(&two, "_my", "from-1.txt").await,
        b"one"
    );
    let again = session_client(&d.endpoint, &session(&d.endpoint, &t2).await);
    s3_compat_tests::put(&again, "_my", "still.txt", "here").await;
    let reply = keys_api(&d.endpoint, "POST", "keys", &t2, "").await;
    assert_eq!(reply.status, 403, "{}", reply.text());
    let reply = keys_api(&d.endpoint, "GET", "keys", &t2, "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_other_replica_within_the_cache_age() {
    let broker = Broker::start().await;
    let db = TestDatabase::create().await;
    let keys = tempfile::tempdir().unwrap();
    let server_key = keys.path().join("server-key");
    std::fs::write(
        &server_key,
        s3_compat_tests::unique("a-shared-server-key-of-enough-length"),
    )
    .unwrap();
    let mut flags = broker.flags();
    flags.extend(
        [
            "--server-key-file",
            server_key.to_str().unwrap(),
            "--database-url",
            db.url(),
            "--revocation-cache-ms",
            "200",
        ]
        .map(str::to_owned),
    );
    let (a, b) = (drive(&flags), drive(&flags));
    let token = broker.token("inst-1");
    let creds = session(&a.endpoint, &token).await;
    let (on_a, on_b) = (
        session_client(&a.endpoint, &creds),
        session_client(&b.endpoint, &creds),
    );
    s3_compat_tests::put(&on_b, "_my", "k.txt", "v").await;
    assert_eq!(s3_compat_tests::get(&on_b, "_my", "k.txt").await, b"v");

    revoke_as_root(&a.endpoint, "inst-1").await;
    let revoked = Instant::now();
    assert_eq!(
        refusal(&on_a, "k.txt").await,
        ("InvalidToken".to_owned(), 403)
    );
    // Replica B reads the list again once its copy is older than 200 ms.
    loop {
        let answer = on_b.get_object().bucket("_my").key("k.txt").send().await;
        if answer.is_err() {
            assert_eq!(
                s3_compat_tests::failure(answer),
                ("InvalidToken".to_owned(), 403)
            );
            break;
        }
        assert!(
            revoked.elapsed() < Duration::from_millis(1500),
            "replica B still accepts the revoked instance's credentials"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = assume(&b.endpoint, &token, None).await.unwrap_err();
    assert_eq!(err.code, "InvalidIdentityToken");
    let other = session(&b.endpoint, &broker.token("inst-2")).await;
    let other = session_client(&b.endpoint, &other);
    assert_eq!(s3_compat_tests::get(&other, "_my", "k.txt").await, b"v");
    assert!(a.terminate().success() && b.terminate().success());
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drive_starts_before_the_issuer_and_trusts_it_once_it_listens() {
    // A port for the broker, free until it starts.
    let port = {
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        reserved.local_addr().unwrap().port()
    };
    let broker = Broker::new(format!("http://127.0.0.1:{port}"));
    let d = drive(&broker.flags());
    let token = broker.token("inst-1");
    let early = assume(&d.endpoint, &token, None).await.unwrap_err();
    assert_eq!(early.code, "IDPCommunicationError", "{}", early.body);

    broker.serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let started = Instant::now();
    let creds = loop {
        match assume(&d.endpoint, &token, None).await {
            Ok(creds) => break creds,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "STS still refuses once the issuer listens: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let client = session_client(&d.endpoint, &creds);
    s3_compat_tests::put(&client, "_my", "k.txt", "v").await;
    assert_eq!(s3_compat_tests::get(&client, "_my", "k.txt").await, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_issuer_runs_beside_the_broker() {
    let broker = Broker::start().await;
    let mut flags = broker.flags();
    flags.extend(["--dev-issuer", "true", "--dev-user", "bob:bob-dev-pw"].map(str::to_owned));
    let d = drive(&flags);
    // Dev users sign in at Drive's own issuer, whose tokens keep the audience `drive`…
    let reply = sign::send(sign::request(
        "POST",
        &format!("{}/_drive/idp/token", d.endpoint),
        [("content-type", "application/x-www-form-urlencoded")],
        Bytes::from("grant_type=password&client_id=drive&username=bob&password=bob-dev-pw"),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let tokens: Value = serde_json::from_slice(&reply.body).unwrap();
    let bob = session(&d.endpoint, tokens["access_token"].as_str().unwrap()).await;
    s3_compat_tests::put(&session_client(&d.endpoint, &bob), "_my", "b.txt", "bob").await;
    // …while the broker's tokens work too, with the audience Drive was given for it.
    let alice = session(&d.endpoint, &broker.token("inst-1")).await;
    s3_compat_tests::put(&session_client(&d.endpoint, &alice), "_my", "a.txt", "a").await;
    let wrong = broker.token_with(&json!({"aud": "drive", "instance_id": "inst-1"}));
    let err = assume(&d.endpoint, &wrong, None).await.unwrap_err();
    assert_eq!(err.code, "InvalidIdentityToken", "{}", err.body);
    // Discovery sends users to the development issuer, where they sign in.
    let env = sign::get_url(format!(
        "{}/.ai.h2o.cloud.discovery/v1/environment",
        d.endpoint
    ))
    .await;
    let env: Value = serde_json::from_slice(&env.body).unwrap();
    assert_eq!(
        env["environment"]["issuerUrl"],
        format!("{}/_drive/idp", d.endpoint)
    );
}
