//! Shared identity end to end: a real OpenID provider on loopback (oidc-provider, its own
//! login flow), Drive's STS, session credentials on S3 requests and presigned URLs, the
//! per-user bucket namespace, and the authorization of every operation.

use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use s3_compat_tests::idp::Idp;
use s3_compat_tests::server::DriveProcess;
use s3_compat_tests::sign;
use s3_compat_tests::sts::{SessionCredentials, assume, element, keys_api, session_client};
use serde_json::{Value, json};

/// An IdP and a Drive that trusts it.
struct World {
    idp: Idp,
    drive: DriveProcess,
}

fn drive_flags(issuer: &str) -> Vec<String> {
    [
        "--oidc-issuer",
        issuer,
        "--oidc-audience",
        "urn:drive",
        "--oidc-client-id",
        "drive-cli",
        "--oidc-refetch-secs",
        "1",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn world() -> World {
    let idp = Idp::start().await;
    let temp = tempfile::tempdir().unwrap();
    let flags = drive_flags(idp.issuer());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let drive = DriveProcess::start_in(temp.path(), &flags).keeping(temp);
    World { idp, drive }
}

impl World {
    /// Session credentials of `user`, signed in through the provider's login form.
    async fn session(&self, user: &str) -> SessionCredentials {
        let token = self.idp.login(user).await.access_token;
        assume(&self.drive.endpoint, &token, None)
            .await
            .unwrap_or_else(|e| panic!("STS refused {user}: {e:?}"))
    }

    async fn client(&self, user: &str) -> Client {
        session_client(&self.drive.endpoint, &self.session(user).await)
    }

    /// A token signed with the provider's own key, with these claims over valid defaults.
    fn forge(&self, extra: Value, kid: Option<String>) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut claims = json!({"iss": self.idp.issuer(), "sub": "00000000-0000-4000-8000-00000000a11c",
            "aud": "urn:drive", "exp": now + 300, "iat": now, "preferred_username": "alice",
            "groups": ["team-a"]});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.unwrap_or_else(|| self.idp.kid()));
        let pem = std::fs::read(self.idp.key_pem()).unwrap();
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seconds from now until an STS `Expiration` (RFC 3339, UTC).
fn seconds_left(expiration: &str) -> i64 {
    let t = aws_smithy_types::DateTime::from_str(
        expiration,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .unwrap_or_else(|e| panic!("bad Expiration {expiration:?}: {e}"));
    t.secs() - i64::try_from(unix_now()).unwrap()
}

async fn put(client: &Client, bucket: &str, key: &str, body: &str) {
    s3_compat_tests::put(client, bucket, key, body.as_bytes()).await;
}

async fn get(client: &Client, bucket: &str, key: &str) -> String {
    String::from_utf8(s3_compat_tests::get(client, bucket, key).await).unwrap()
}

#[tokio::test]
async fn a_user_signs_in_and_uses_their_buckets() {
    let w = world().await;
    // The real browser flow: authorization code + PKCE through the provider's login form.
    let token = w.idp.login("alice").await.access_token;
    let creds = assume(&w.drive.endpoint, &token, None).await.unwrap();
    assert!(creds.access_key_id.starts_with("ASIA"));
    let left = seconds_left(&creds.expiration);
    assert!(
        (3590..=3600).contains(&left),
        "default session is 1 h, got {left} s"
    );
    let short = assume(&w.drive.endpoint, &token, Some(900)).await.unwrap();
    assert!((890..=900).contains(&seconds_left(&short.expiration)));

    let alice = session_client(&w.drive.endpoint, &creds);
    put(&alice, "_my", "home/a.txt", "hello, alice!\n").await;
    assert_eq!(get(&alice, "_my", "home/a.txt").await, "hello, alice!\n");
    put(&alice, "default", "notes.txt", "workspace").await;
    put(&alice, "team-a", "shared.txt", "from alice").await;

    let listed = alice.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["_my", "default", "team-a"]);

    // Bob shares team-a, but has his own _my and default.
    let bob = w.client("bob").await;
    assert_eq!(get(&bob, "team-a", "shared.txt").await, "from alice");
    let bob_home = bob.list_objects_v2().bucket("_my").send().await.unwrap();
    assert_eq!(bob_home.key_count(), Some(0));
    let listed = bob.list_buckets().send().await.unwrap();
    let names: Vec<_> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["_my", "default", "team-a", "team-b"]);
    put(&bob, "_my", "home/a.txt", "bob's").await;
    assert_eq!(get(&alice, "_my", "home/a.txt").await, "hello, alice!\n");
    assert_eq!(get(&bob, "_my", "home/a.txt").await, "bob's");

    // Discovery names the issuer, the client and Drive's endpoints.
    let services = sign::get_url(format!(
        "{}/.ai.h2o.cloud.discovery/v1/services",
        w.drive.endpoint
    ))
    .await;
    let services: Value = serde_json::from_slice(&services.body).unwrap();
    let uri = services["services"][0]["uri"].as_str().unwrap();
    assert_eq!(uri, w.drive.endpoint);
    let env = sign::get_url(format!(
        "{}/.ai.h2o.cloud.discovery/v1/environment",
        w.drive.endpoint
    ))
    .await;
    let env: Value = serde_json::from_slice(&env.body).unwrap();
    assert_eq!(env["environment"]["issuerUrl"], w.idp.issuer());
}

#[tokio::test]
async fn sts_refuses_bad_web_identity_tokens() {
    let w = world().await;
    let now = unix_now();
    let public_pem = std::fs::read(w.idp.public_pem()).unwrap();
    let valid = w.forge(json!({}), None);
    assert!(assume(&w.drive.endpoint, &valid, None).await.is_ok());

    let mut bad_signature = valid.clone().into_bytes();
    let at = bad_signature.len() - 10;
    bad_signature[at] = if bad_signature[at] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let (head, rest) = valid.split_once('.').unwrap();
    let (body, _) = rest.split_once('.').unwrap();
    let none_header =
        base64_simd::URL_SAFE_NO_PAD.encode_to_string(r#"{"alg":"none","typ":"JWT"}"#);
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(w.idp.kid());
    let claims: Value =
        serde_json::from_slice(&base64_simd::URL_SAFE_NO_PAD.decode_to_vec(body).unwrap()).unwrap();
    let hs256 = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public_pem)).unwrap();
    assert!(!head.is_empty());

    let cases = [
        (
            "expired",
            w.forge(json!({"exp": now - 600}), None),
            "ExpiredTokenException",
        ),
        (
            "wrong audience",
            w.forge(json!({"aud": "account"}), None),
            "InvalidIdentityToken",
        ),
        (
            "wrong issuer",
            w.forge(json!({"iss": "http://127.0.0.1:1"}), None),
            "InvalidIdentityToken",
        ),
        (
            "unknown kid",
            w.forge(json!({}), Some("no-such-key".into())),
            "InvalidIdentityToken",
        ),
        (
            "bad signature",
            String::from_utf8(bad_signature).unwrap(),
            "InvalidIdentityToken",
        ),
        (
            "alg none",
            format!("{none_header}.{body}."),
            "InvalidIdentityToken",
        ),
        (
            "HS256 keyed with the public key",
            hs256,
            "InvalidIdentityToken",
        ),
        (
            "no subject",
            w.forge(json!({"sub": ""}), None),
            "InvalidIdentityToken",
        ),
        ("garbage", "not-a-token".to_owned(), "InvalidIdentityToken"),
    ];
    for (what, token, code) in cases {
        let err = assume(&w.drive.endpoint, &token, None)
            .await
            .expect_err(what);
        assert_eq!(
            (err.status, err.code.as_str()),
            (400, code),
            "{what}: {}",
            err.body
        );
        assert!(err.body.contains("<ErrorResponse"), "{what}: {}", err.body);
        assert!(element(&err.body, "RequestId").is_some(), "{what}");
    }
    let err = assume(&w.drive.endpoint, &valid, Some(899))
        .await
        .unwrap_err();
    assert_eq!(err.code, "ValidationError");
    // A token the provider's refresh flow issued still works after the failures.
    let fresh = w.idp.password_token("carol").await;
    let refreshed = w
        .idp
        .refresh(fresh.refresh_token.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        assume(&w.drive.endpoint, &refreshed.access_token, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn the_provider_rotates_its_key() {
    let keys = tempfile::tempdir().unwrap();
    let idp = Idp::start_with_key(&keys.path().join("a.json")).await;
    let temp = tempfile::tempdir().unwrap();
    let flags = drive_flags(idp.issuer());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let drive = DriveProcess::start_in(temp.path(), &flags).keeping(temp);
    let before = idp.password_token("alice").await.access_token;
    assert!(assume(&drive.endpoint, &before, None).await.is_ok());
    let (port, old_kid) = (idp.port(), idp.kid());
    idp.stop().await;
    let idp = Idp::start_on(port, &keys.path().join("b.json")).await;
    assert_ne!(idp.kid(), old_kid);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = idp.password_token("alice").await.access_token;
    let creds = assume(&drive.endpoint, &after, None).await;
    assert!(creds.is_ok(), "a token signed with the new key: {creds:?}");
    // The old key is gone from the provider's key set once Drive has refetched it.
    let err = assume(&drive.endpoint, &before, None).await.unwrap_err();
    assert_eq!(err.code, "InvalidIdentityToken");
}

/// A copy of `token` with one character in its middle changed.
fn altered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'x' { b'y' } else { b'x' };
    String::from_utf8(bytes).unwrap()
}

/// Session credentials signed with Drive's own key file, issued in the past.
fn expired_session(server_key: &Path) -> SessionCredentials {
    let key = std::fs::read_to_string(server_key).unwrap();
    let sessions = shared_identity::Sessions::new(
        shared_identity::ServerKey::new(key.trim().as_bytes()).unwrap(),
        vec![],
    );
    let principal = shared_identity::Principal {
        issuer: "http://127.0.0.1".into(),
        subject: "00000000-0000-4000-8000-00000000a11c".into(),
        username: Some("alice".into()),
        email: None,
        groups: vec![],
        roles: vec![],
    };
    let c = sessions.issue(
        &principal,
        None,
        Duration::from_secs(900),
        SystemTime::now() - Duration::from_secs(1000),
    );
    SessionCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: c.secret_access_key,
        session_token: c.session_token,
        expiration: String::new(),
    }
}

#[tokio::test]
async fn session_tokens_are_bound_to_their_keys() {
    let w = world().await;
    let alice = w.session("alice").await;
    let bob = w.session("bob").await;
    let client = session_client(&w.drive.endpoint, &alice);
    put(&client, "_my", "k.txt", "alice's file").await;
    let url = format!("{}/_my/k.txt", w.drive.endpoint);

    let with_token = |token: Option<&str>| SessionCredentials {
        session_token: token.unwrap_or_default().to_owned(),
        ..alice.clone()
    };
    // Missing, foreign and altered tokens, on signed requests.
    for (what, token) in [
        ("missing", None),
        ("foreign", Some(bob.session_token.as_str())),
        ("altered", Some(altered(&alice.session_token)).as_deref()),
    ] {
        let mut headers = Vec::new();
        if let Some(t) = token {
            headers.push(("x-amz-security-token", t));
        }
        let creds = with_token(token);
        let reply = sign::send(sign::signed(
            "GET",
            &url,
            &headers,
            bytes::Bytes::new(),
            &creds.access_key_id,
            &creds.secret_access_key,
        ))
        .await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (400, "InvalidToken"),
            "{what}"
        );
    }
    // The root key with a session token is refused too.
    let reply = sign::send(sign::signed(
        "GET",
        &url,
        &[("x-amz-security-token", alice.session_token.as_str())],
        bytes::Bytes::new(),
        s3_compat_tests::server::ACCESS_KEY,
        s3_compat_tests::server::SECRET_KEY,
    ))
    .await;
    assert_eq!(reply.code(), "InvalidToken");

    // Presigned URLs carry the session token.
    let presign = |creds: &SessionCredentials, token: &str, secs| {
        sign::presigned_url(
            "GET",
            &url,
            Duration::from_secs(secs),
            &creds.access_key_id,
            &creds.secret_access_key,
            Some(token),
        )
    };
    let ok = sign::get_url(presign(&alice, &alice.session_token, 600)).await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "alice's file"));
    let good = presign(&alice, &alice.session_token, 600);
    let at = good.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &good[at..=at] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &good[..at], &good[at + 1..]);
    let reply = sign::get_url(tampered).await;
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    let too_long = sign::get_url(presign(&alice, &alice.session_token, 604_801)).await;
    assert_eq!(
        (too_long.status, too_long.code().as_str()),
        (403, "AccessDenied")
    );
    let week = sign::get_url(presign(&alice, &alice.session_token, 604_800)).await;
    assert_eq!(week.status, 200);
    let foreign = sign::get_url(presign(&alice, &bob.session_token, 600)).await;
    assert_eq!(foreign.code(), "InvalidToken");

    // An expired session: refused on signed requests and in presigned URLs alike.
    let old = expired_session(&w.drive.data_dir.join("server-key"));
    let expired = session_client(&w.drive.endpoint, &old);
    let err = expired
        .get_object()
        .bucket("_my")
        .key("k.txt")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        s3_compat_tests::failure::<(), _, _>(Err(err)).0,
        "ExpiredToken"
    );
    let reply = sign::get_url(presign(&old, &old.session_token, 600)).await;
    assert_eq!((reply.status, reply.code().as_str()), (400, "ExpiredToken"));
}

/// Runs `drive keys ...` against `endpoint` with `token`.
fn drive_keys(endpoint: &str, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(s3_compat_tests::server::binary())
        .arg("keys")
        .args(args)
        .env("DRIVE_ENDPOINT", endpoint)
        .env("DRIVE_TOKEN", token)
        .output()
        .expect("run drive keys")
}

#[tokio::test]
async fn users_manage_long_term_access_keys() {
    let w = world().await;
    let end = &w.drive.endpoint;
    let alice = w.idp.login("alice").await.access_token;
    let bob = w.idp.login("bob").await.access_token;

    // Without a valid bearer token, nothing.
    for token in ["", "garbage", &w.forge(json!({"aud": "account"}), None)] {
        let reply = keys_api(end, "GET", "keys", token, "").await;
        assert_eq!(reply.status, 401, "{token}: {}", reply.text());
    }
    let reply = keys_api(end, "POST", "keys", &alice, r#"{"description":"laptop"}"#).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let created: Value = serde_json::from_slice(&reply.body).unwrap();
    let (id, secret) = (
        created["accessKeyId"].as_str().unwrap().to_owned(),
        created["secretAccessKey"].as_str().unwrap().to_owned(),
    );
    // The key acts as alice: her _my, her groups.
    let client = s3_compat_tests::client(end, &id, &secret);
    put(&client, "_my", "via-key.txt", "long-term").await;
    let session = w.client("alice").await;
    assert_eq!(get(&session, "_my", "via-key.txt").await, "long-term");
    put(&client, "team-a", "via-key.txt", "shared").await;

    // Listings show only one's own keys, never secrets.
    let listed = keys_api(end, "GET", "keys", &alice, "").await;
    assert!(listed.text().contains(&id) && !listed.text().contains(&secret));
    let bobs = keys_api(end, "GET", "keys", &bob, "").await;
    assert!(!bobs.text().contains(&id));
    // Bob cannot revoke alice's key; a session token does not combine with it.
    assert_eq!(
        keys_api(end, "DELETE", &format!("keys/{id}"), &bob, "")
            .await
            .status,
        404
    );
    let creds = SessionCredentials {
        access_key_id: id.clone(),
        secret_access_key: secret.clone(),
        session_token: w.session("alice").await.session_token,
        expiration: String::new(),
    };
    let err = session_client(end, &creds)
        .list_objects_v2()
        .bucket("_my")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        s3_compat_tests::failure::<(), _, _>(Err(err)).0,
        "InvalidToken"
    );

    // The CLI: create, list, revoke.
    let out = drive_keys(end, &alice, &["create", "--description", "ci job"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let cli_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("AWS_ACCESS_KEY_ID="))
        .unwrap()
        .to_owned();
    let out = drive_keys(end, &alice, &["list"]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains(&cli_id) && listing.contains("ci job") && listing.contains(&id));
    assert!(
        drive_keys(end, &alice, &["revoke", &cli_id])
            .status
            .success()
    );
    let out = drive_keys(end, &alice, &["revoke", &cli_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = drive_keys(end, "not-a-token", &["list"]);
    assert!(!out.status.success());

    // Revoked: refused at once.
    assert_eq!(
        keys_api(end, "DELETE", &format!("keys/{id}"), &alice, "")
            .await
            .status,
        204
    );
    let err = client
        .list_objects_v2()
        .bucket("_my")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        s3_compat_tests::failure::<(), _, _>(Err(err)),
        ("InvalidAccessKeyId".to_owned(), 403)
    );
    let listed = keys_api(end, "GET", "keys", &alice, "").await;
    let listed: Value = serde_json::from_slice(&listed.body).unwrap();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["revokedAt"].is_string())
    );
}

#[tokio::test]
async fn the_built_in_development_issuer_signs_users_in() {
    let temp = tempfile::tempdir().unwrap();
    let drive = DriveProcess::start_in(
        temp.path(),
        &[
            "--dev-user",
            "alice:alice-dev-pw:team-a,root2:r-pw::drive-admin",
        ],
    )
    .keeping(temp);
    let end = &drive.endpoint;
    let token_url = format!("{end}/_drive/idp/token");
    let ask = |form: String| {
        sign::send(sign::request(
            "POST",
            &token_url,
            [("content-type", "application/x-www-form-urlencoded")],
            bytes::Bytes::from(form),
        ))
    };
    let reply =
        ask("grant_type=password&client_id=drive&username=alice&password=alice-dev-pw".into())
            .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let tokens: Value = serde_json::from_slice(&reply.body).unwrap();
    let creds = assume(end, tokens["access_token"].as_str().unwrap(), None)
        .await
        .unwrap();
    let alice = session_client(end, &creds);
    put(
        &alice,
        "_my",
        "dev.txt",
        "signed in without an external IdP",
    )
    .await;
    put(&alice, "team-a", "dev.txt", "group workspace").await;

    // Refresh as h2o-authn does it; wrong passwords and forged refresh tokens: JSON errors.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let reply = ask(format!(
        "grant_type=refresh_token&client_id=drive&refresh_token={refresh}"
    ))
    .await;
    assert_eq!(reply.status, 200);
    let reply = ask("grant_type=password&username=alice&password=wrong".into()).await;
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (reply.status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let reply = ask(format!(
        "grant_type=refresh_token&refresh_token={}x",
        refresh
    ))
    .await;
    assert_eq!(reply.status, 400);

    // Discovery names the built-in issuer, whose discovery document and keys are served.
    let env = sign::get_url(format!("{end}/.ai.h2o.cloud.discovery/v1/environment")).await;
    let env: Value = serde_json::from_slice(&env.body).unwrap();
    let issuer = env["environment"]["issuerUrl"].as_str().unwrap().to_owned();
    assert_eq!(issuer, format!("{end}/_drive/idp"));
    let meta = sign::get_url(format!("{issuer}/.well-known/openid-configuration")).await;
    let meta: Value = serde_json::from_slice(&meta.body).unwrap();
    assert_eq!(meta["token_endpoint"], token_url.as_str());

    // Tokens of the built-in issuer mean nothing to a Drive trusting an external one.
    let w = world().await;
    let err = assume(
        &w.drive.endpoint,
        tokens["access_token"].as_str().unwrap(),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, "InvalidIdentityToken");
    let reply = sign::get_url(format!("{}/_drive/idp/jwks", w.drive.endpoint)).await;
    assert_eq!(reply.status, 404);
}
