//! The verifier against a small issuer on loopback that serves discovery and a key set
//! and counts key-set fetches: token checks, rotation, the refetch rate limit and an issuer
//! that comes up after the verifier.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64_simd::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use shared_identity::{IssuerConfig, Timing, Verifier, VerifyError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An Ed25519 key with its id.
struct Key {
    kid: String,
    signing: SigningKey,
}

impl Key {
    fn new(kid: &str, seed: u8) -> Self {
        Self {
            kid: kid.into(),
            signing: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
               "x": B64.encode_to_string(self.signing.verifying_key().as_bytes())})
    }

    fn sign(&self, claims: &Value) -> String {
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410).
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(self.signing.as_bytes());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der)).unwrap()
    }
}

/// The issuer: serves discovery and whatever key set is current, counting key-set fetches.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: &[&Key]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, count, base) = (Arc::clone(&keys), Arc::clone(&fetches), url.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let body = match path {
                    "/.well-known/openid-configuration" => {
                        json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string()
                    }
                    "/jwks" => {
                        count.fetch_add(1, Ordering::SeqCst);
                        served.lock().unwrap().to_string()
                    }
                    _ => "{}".into(),
                };
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        Self { url, keys, fetches }
    }

    fn serve(&self, keys: &[&Key]) {
        *self.keys.lock().unwrap() =
            json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    }

    fn claims(&self, extra: Value) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut c = json!({"iss": self.url, "sub": "user-1", "aud": "urn:drive", "exp": now + 300,
                           "iat": now, "preferred_username": "alice", "groups": ["team-a"]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn verifier(&self, refetch: Duration) -> Verifier {
        Verifier::new(
            vec![IssuerConfig::new(
                self.url.clone(),
                vec!["urn:drive".into()],
            )],
            Timing {
                refetch_interval: refetch,
                leeway: Duration::from_secs(5),
                ..Timing::default()
            },
        )
    }
}

#[tokio::test]
async fn valid_tokens_map_to_principals_and_bad_ones_are_refused() {
    let key = Key::new("k1", 1);
    let issuer = Issuer::start(&[&key]).await;
    let v = issuer.verifier(Duration::from_secs(30));
    let ok = v
        .verify(&key.sign(&issuer.claims(json!({}))))
        .await
        .unwrap();
    assert_eq!(ok.principal.subject, "user-1");
    assert_eq!(ok.principal.groups, ["team-a"]);
    assert_eq!(ok.audience.as_deref(), Some("urn:drive"));
    assert_eq!(ok.instance, None);
    for (claim, want) in [
        (json!("inst-1"), Some("inst-1")),
        (json!(42), None),
        (json!(null), None),
        (json!(["inst-1"]), None),
    ] {
        let token = key.sign(&issuer.claims(json!({ "instance_id": claim })));
        let got = v.verify(&token).await.unwrap();
        assert_eq!(got.instance.as_deref(), want, "{claim}");
    }

    let past = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 600;
    let cases = [
        (json!({"exp": past}), VerifyError::Expired),
        (json!({"nbf": past + 1800}), VerifyError::NotYetValid),
        (json!({"aud": "someone-else"}), VerifyError::Audience),
        (
            json!({"iss": "http://127.0.0.1:1"}),
            VerifyError::UntrustedIssuer,
        ),
    ];
    for (extra, want) in cases {
        let got = v.verify(&key.sign(&issuer.claims(extra.clone()))).await;
        assert_eq!(got.unwrap_err(), want, "{extra}");
    }
    let no_sub = key.sign(&json!({"iss": issuer.url, "aud": "urn:drive", "exp": past + 1200}));
    assert!(matches!(
        v.verify(&no_sub).await,
        Err(VerifyError::Claims(_))
    ));

    // A signature made by another key under the same key id.
    let forged = Key::new("k1", 2).sign(&issuer.claims(json!({})));
    assert_eq!(v.verify(&forged).await.unwrap_err(), VerifyError::Signature);

    // `alg: none` and HS256 keyed with the public key are never accepted.
    let body = B64.encode_to_string(issuer.claims(json!({})).to_string());
    let none = format!(
        "{}.{body}.",
        B64.encode_to_string(r#"{"alg":"none","kid":"k1"}"#)
    );
    assert!(v.verify(&none).await.is_err());
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    let public = key.signing.verifying_key().to_bytes();
    let hs256 = jsonwebtoken::encode(
        &hs,
        &issuer.claims(json!({})),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&hs256).await,
        Err(VerifyError::Algorithm(_))
    ));
    assert!(matches!(
        v.verify("not.a.token").await,
        Err(VerifyError::Malformed(_))
    ));
}

#[tokio::test]
async fn unknown_key_ids_refetch_at_most_once_per_interval() {
    let (old, new) = (Key::new("old", 1), Key::new("new", 3));
    let issuer = Issuer::start(&[&old]).await;
    let v = issuer.verifier(Duration::from_millis(500));
    v.warm().await.unwrap();
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);

    // Right after a fetch, an unknown key id is refused without asking the issuer.
    let bogus = Key::new("bogus", 9);
    let got = v.verify(&bogus.sign(&issuer.claims(json!({})))).await;
    assert!(matches!(got, Err(VerifyError::UnknownKey(_))));
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    // Later, a flood of unknown key ids: one refetch, then refusals without asking.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..20 {
        let got = v.verify(&bogus.sign(&issuer.claims(json!({})))).await;
        assert!(matches!(got, Err(VerifyError::UnknownKey(_))));
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);

    // The issuer rotates; once the interval passed, the new key id is fetched and accepted.
    issuer.serve(&[&new]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ok = v.verify(&new.sign(&issuer.claims(json!({})))).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 3);
    // Known keys need no fetch.
    v.verify(&new.sign(&issuer.claims(json!({}))))
        .await
        .unwrap();
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_provider_error() {
    let key = Key::new("k", 1);
    let v = Verifier::new(
        vec![IssuerConfig::new("http://127.0.0.1:1", vec![])],
        Timing::default(),
    );
    let token = key.sign(&json!({"iss": "http://127.0.0.1:1", "sub": "s", "exp": u64::MAX / 2}));
    assert!(matches!(
        v.verify(&token).await,
        Err(VerifyError::Provider(_))
    ));
}

#[tokio::test]
async fn several_issuers_each_with_their_own_keys() {
    let (ka, kb) = (Key::new("a", 1), Key::new("b", 2));
    let (a, b) = (Issuer::start(&[&ka]).await, Issuer::start(&[&kb]).await);
    let v = Verifier::new(
        vec![
            IssuerConfig::new(a.url.clone(), vec!["urn:drive".into()]),
            IssuerConfig::new(b.url.clone(), vec!["urn:drive".into()]),
        ],
        Timing::default(),
    );
    let from_a = v.verify(&ka.sign(&a.claims(json!({})))).await.unwrap();
    let from_b = v.verify(&kb.sign(&b.claims(json!({})))).await.unwrap();
    assert_eq!(
        (from_a.principal.issuer, from_b.principal.issuer),
        (a.url.clone(), b.url.clone())
    );
    // A token naming issuer b but signed with a's key is refused.
    let crossed = v.verify(&ka.sign(&b.claims(json!({})))).await;
    assert!(
        matches!(crossed, Err(VerifyError::UnknownKey(_))),
        "{crossed:?}"
    );
}

#[tokio::test]
async fn keys_that_could_not_be_fetched_are_asked_for_once_a_second() {
    let key = Key::new("k1", 1);
    let issuer = Issuer::start(&[&key]).await;
    // The issuer is not ready yet: its key set is not a key set.
    *issuer.keys.lock().unwrap() = json!({"not": "keys"});
    // A long refetch interval, which must not delay the first keys.
    let v = issuer.verifier(Duration::from_secs(30));
    assert!(matches!(v.warm().await, Err(VerifyError::Provider(_))));
    let token = key.sign(&issuer.claims(json!({})));
    for _ in 0..20 {
        assert!(matches!(
            v.verify(&token).await,
            Err(VerifyError::Provider(_))
        ));
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);
    issuer.serve(&[&key]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ok = v.verify(&token).await;
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
    // Once keys are known, the refetch interval applies again.
    let bogus = Key::new("bogus", 9).sign(&issuer.claims(json!({})));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        v.verify(&bogus).await,
        Err(VerifyError::UnknownKey(_))
    ));
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
}
