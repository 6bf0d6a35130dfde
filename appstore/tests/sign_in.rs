//! Browser sign-in through the real OpenID provider: authorization code with PKCE, the
//! session cookie, the refresh token sealed at rest and used when the access token runs
//! out, CSRF protection of cookie-authenticated changes, replayed and cross-browser
//! callbacks, and sign-out.

mod common;

use common::{Db, Stack, bundle};
use reqwest::StatusCode;
use s3_compat_tests::idp::Browser;
use serde_json::{Value, json};
use shared_identity::Sealer;
use sqlx::Row;

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_sign_in_with_pkce_and_keep_a_csrf_safe_session() {
    let stack = Stack::start(Db::Sqlite).await;
    let (status, app) = stack
        .import(
            "alice",
            bundle("ai.h2o.test.web", "1.0.0"),
            Some("ALL_USERS"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let app_url = format!("{}/api/v1/apps/{}", stack.url, app["id"].as_str().unwrap());

    let mut browser = Browser::new();
    let login = format!("{}/auth/login?returnTo=/api/v1/me", stack.url);
    let response = browser.send(browser.http().get(&login)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let to_provider = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_provider.starts_with(stack.idp.issuer()), "{to_provider}");
    for param in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "client_id=appstore",
    ] {
        assert!(to_provider.contains(param), "{param} in {to_provider}");
    }

    let callback = browser.sign_in(&login, "alice").await;
    assert!(
        callback
            .as_str()
            .starts_with(&format!("{}/auth/callback?", stack.url)),
        "{callback}"
    );
    let response = browser.send(browser.http().get(callback.as_str())).await;
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "{}",
        response.text().await.unwrap_or_default()
    );
    assert_eq!(response.headers()["location"], "/api/v1/me");
    let set_cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session_cookie = set_cookies
        .iter()
        .find(|c| c.starts_with("appstore_session="))
        .expect("a session cookie");
    assert!(
        session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"),
        "{session_cookie}"
    );
    let session = browser
        .cookie("appstore_session")
        .expect("the session cookie")
        .to_owned();

    let me = json_of(
        browser
            .send(browser.http().get(format!("{}/api/v1/me", stack.url)))
            .await,
    )
    .await;
    assert_eq!(me["signedIn"], true, "{me}");
    assert_eq!(me["username"], "alice");
    assert_eq!(me["fullAccess"], true);

    // The same callback again is refused: the sign-in was used up.
    let replay = browser.send(browser.http().get(callback.as_str())).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);

    // Changes by cookie need the session's CSRF token.
    let info = json_of(
        browser
            .send(browser.http().get(format!("{}/auth/session", stack.url)))
            .await,
    )
    .await;
    let csrf = info["csrfToken"].as_str().expect("a CSRF token").to_owned();
    let change = json!({"visibility": "PRIVATE"});
    let without = browser
        .send(browser.http().patch(&app_url).json(&change))
        .await;
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_of(without).await["code"], "csrf");
    let wrong = browser
        .send(
            browser
                .http()
                .patch(&app_url)
                .header("x-csrf-token", "guess")
                .json(&change),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let with = browser
        .send(
            browser
                .http()
                .patch(&app_url)
                .header("x-csrf-token", &csrf)
                .json(&change),
        )
        .await;
    assert_eq!(with.status(), StatusCode::OK);

    // At rest: the session id only hashed, the refresh token sealed with the session key.
    let repo = appstore::repository::Repository::open(&stack.database_url)
        .await
        .unwrap();
    let row = sqlx::query("SELECT id_hash, sealed_refresh_token FROM web_sessions")
        .fetch_one(repo.pool())
        .await
        .unwrap();
    let id_hash: String = row.get("id_hash");
    assert_ne!(id_hash, session);
    let sealed: String = row.get("sealed_refresh_token");
    let key_file = std::path::Path::new(
        stack
            .database_url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap(),
    )
    .parent()
    .unwrap()
    .join("appstore/session-key");
    let key = shared_identity::load_server_key(Some(&key_file), &key_file).unwrap();
    let refresh = Sealer::new(key, vec![])
        .open("refresh-token", &sealed)
        .expect("sealed with the session key");
    let refresh = String::from_utf8(refresh).unwrap();
    assert!(
        !sealed.contains(&refresh),
        "the refresh token is not stored in the clear"
    );

    // When the access token has run out, the session refreshes itself.
    sqlx::query("UPDATE web_sessions SET access_expires_at = 0")
        .execute(repo.pool())
        .await
        .unwrap();
    let me = json_of(
        browser
            .send(browser.http().get(format!("{}/api/v1/me", stack.url)))
            .await,
    )
    .await;
    assert_eq!(me["username"], "alice", "{me}");
    let refreshed: i64 = sqlx::query_scalar("SELECT access_expires_at FROM web_sessions")
        .fetch_one(repo.pool())
        .await
        .unwrap();
    assert!(
        refreshed > 0,
        "the roles were checked again with a fresh access token"
    );

    // Sign-out needs the CSRF token, then the cookie no longer works.
    let out = browser
        .send(browser.http().post(format!("{}/auth/logout", stack.url)))
        .await;
    assert_eq!(out.status(), StatusCode::FORBIDDEN);
    let out = browser
        .send(
            browser
                .http()
                .post(format!("{}/auth/logout", stack.url))
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let stale = stack
        .http
        .get(format!("{}/api/v1/me", stack.url))
        .header("cookie", format!("appstore_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(stale).await["signedIn"], false);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_from_another_browser_is_refused() {
    let stack = Stack::start(Db::Sqlite).await;
    let mut victim = Browser::new();
    let callback = victim
        .sign_in(&format!("{}/auth/login", stack.url), "bob")
        .await;
    // An attacker's browser never started this sign-in: it lacks the login cookie.
    let mut other = Browser::new();
    let response = other.send(other.http().get(callback.as_str())).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(response).await["code"], "sign-in-failed");
    assert!(other.cookie("appstore_session").is_none());
    // A callback carrying an error from the provider is refused too.
    let response = other
        .send(other.http().get(format!(
            "{}/auth/callback?error=access_denied&state=x",
            stack.url
        )))
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_sign_in_through_drives_development_issuer() {
    let stack = common::DevStack::start("alice:alice-pw::admin").await;
    let (url, drive_endpoint) = (stack.url.clone(), stack.drive_endpoint.clone());

    let mut browser = Browser::new();
    let start = browser
        .send(
            browser
                .http()
                .get(format!("{url}/auth/login?returnTo=/api/v1/me")),
        )
        .await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let authorize = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/_drive/idp/authorize?", drive_endpoint))
    );
    let page = browser.send(browser.http().get(authorize.clone())).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"password\""), "{html}");
    let mut fields: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    let post = format!("{}/_drive/idp/authorize", drive_endpoint);
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "wrong".into()));
    let refused = browser.send(browser.http().post(&post).form(&fields)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    fields.pop();
    fields.push(("password".into(), "alice-pw".into()));
    let back = browser.send(browser.http().post(&post).form(&fields)).await;
    assert_eq!(back.status(), StatusCode::FOUND);
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with(&format!("{url}/auth/callback?")),
        "{callback}"
    );
    let done = browser.send(browser.http().get(&callback)).await;
    assert_eq!(
        done.status(),
        StatusCode::FOUND,
        "{}",
        done.text().await.unwrap_or_default()
    );
    let me = json_of(
        browser
            .send(browser.http().get(format!("{url}/api/v1/me")))
            .await,
    )
    .await;
    assert_eq!(me["username"], "alice", "{me}");
    assert_eq!(me["admin"], true, "roles reach the App Store: {me}");
    // The development issuer sends codes only to this machine.
    let mut evil: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| k != "redirect_uri")
        .cloned()
        .collect();
    evil.push(("redirect_uri".into(), "https://evil.example/cb".into()));
    let refused = browser.send(browser.http().post(&post).form(&evil)).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_browser_sign_in_gets_a_clear_answer() {
    use s3_compat_tests::server::DriveProcess;
    // An issuer that only hands out tokens: no authorization endpoint in its metadata.
    let issuer_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", issuer_listener.local_addr().unwrap());
    let metadata = json!({"issuer": issuer, "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/jwks")});
    let router = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let m = metadata.clone();
            async move { axum::Json(m) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(issuer_listener, router).await });
    let drive = tokio::task::spawn_blocking(DriveProcess::start)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let database = format!("sqlite://{}/appstore.db?mode=rwc", dir.path().display());
    let args = common::args(dir.path(), &drive.endpoint, &issuer, &database, &url);
    let app = appstore::server::start(appstore::config::Config::resolve(args).unwrap(), listener)
        .await
        .unwrap();
    let response = reqwest::get(format!("{url}/auth/login")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        json_of(response).await["code"],
        "browser-sign-in-unavailable"
    );
    app.stop().await.unwrap();
    server.abort();
}
