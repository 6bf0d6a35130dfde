//! App instances end to end with real processes: Drive trusting the test OpenID provider and
//! the App Store's token broker, the App Store with the local runtime, and the real launcher
//! installing h2o-wave and h2o-drive into a virtualenv and running a Wave app that writes to
//! its user's home bucket with boto3 and with `h2o_drive.connect()`.

mod common;

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use s3_compat_tests::idp::{AUDIENCE, Idp};
use s3_compat_tests::server::DriveProcess;
use serde_json::{Value, json};

use common::platform::{Platform, START_TIMEOUT, drive_app, launcher, tools_dir};
use common::ws::Ws;
use common::zip;

async fn object(s3: &aws_sdk_s3::Client, key: &str) -> Option<String> {
    let out = s3.get_object().bucket("_my").key(key).send().await.ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Opens the Wave websocket of an instance through the router and watches `route`.
async fn watch(p: &Platform, host: &str, path: &str, user: &str, route: &str) -> Ws {
    let token = p.token(user).await;
    let auth = format!("Bearer {token}");
    let mut ws = Ws::connect(&p.addr, path, &[("Host", host), ("Authorization", &auth)])
        .await
        .expect("the websocket opens through the router");
    ws.send(&format!("+ {route} ")).await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_writes_to_its_users_drive_through_the_router() {
    let p = Platform::start(|_| {}).await;
    let app = p.import("alice", drive_app(), "ALL_USERS").await;
    let (status, inst) = p.run("alice", &app, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    let port = p.addr.rsplit(':').next().unwrap();
    let host = format!("{id}.localhost:{port}");
    assert_eq!(inst["url"], format!("http://{host}/"));
    assert_eq!(inst["routingMode"], "DOMAIN");

    // A starting instance shows its phase, then serves through the router.
    let (status, page, headers) = p.open(Some(&host), "/", Some("alice")).await;
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::OK,
        "{status} {page}"
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(headers.contains_key("refresh"));
    }
    p.until_running(Some(&host), "/", "alice", &id).await;
    let (status, page, _) = p.open(Some(&host), "/", Some("alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("<html") || page.contains("<!DOCTYPE"),
        "the Wave page: {page}"
    );

    // The websocket: the rendered page carries what the app did at start.
    let mut ws = watch(&p, &host, "/_s/", "alice", "/").await;
    let frame = ws
        .until("boto3 start", Duration::from_secs(60))
        .await
        .unwrap_or_else(|seen| panic!("no start writes on the page: {seen:?}"));
    assert!(
        frame.contains("hello from app.toml"),
        "[[Env]] reaches the app: {frame}"
    );
    // h2o_discovery finds the broker as issuer; the instance's Drive space resolves.
    assert!(
        frame.contains(&format!("issuer={}/broker", p.url)),
        "{frame}"
    );
    assert!(
        frame.contains(&format!(
            "space=ai.h2o.test.drivewriter/{app}-0.0.1/{id}/workspace/"
        )),
        "{frame}"
    );
    assert!(!frame.contains("FAILED"), "{frame}");
    // A button click writes again.
    ws.send("@ / {\"write\":true,\"tag\":\"click\"}").await;
    let frame = ws
        .until("h2o_drive click", Duration::from_secs(60))
        .await
        .unwrap_or_else(|seen| panic!("no click writes: {seen:?}"));
    assert!(!frame.contains("FAILED"), "{frame}");

    // The files are in alice's home, read through Drive as alice, and not in bob's.
    let alice = p.drive_as("alice").await;
    let bob = p.drive_as("bob").await;
    for key in [
        "boto3-start",
        "h2o-drive-start",
        "boto3-click",
        "h2o-drive-click",
    ] {
        let key = format!("home/{key}-{id}.txt");
        let body = object(&alice, &key)
            .await
            .unwrap_or_else(|| panic!("{key} in alice's home"));
        assert!(body.ends_with(&id), "{body}");
        assert!(
            object(&bob, &key).await.is_none(),
            "{key} must not be in bob's home"
        );
    }

    // Who may open it: PRIVATE the owner only, ALL_USERS signed-in users, PUBLIC anyone.
    let s = p.set_visibility("alice", &id, "PRIVATE").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        p.open(Some(&host), "/", Some("bob")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        p.open(Some(&host), "/", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let refused = Ws::connect(
        &p.addr,
        "/_s/",
        &[
            ("Host", &host),
            ("Authorization", &format!("Bearer {}", p.token("bob").await)),
        ],
    )
    .await;
    assert!(
        refused
            .err()
            .is_some_and(|head| head.starts_with("HTTP/1.1 403")),
        "the websocket is authorized too"
    );
    let s = p.set_visibility("bob", &id, "PUBLIC").await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "bob does not see alice's PRIVATE instance"
    );
    p.set_visibility("alice", &id, "ALL_USERS").await;
    let s = p.set_visibility("bob", &id, "PUBLIC").await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "bob may open but not change alice's instance"
    );
    assert_eq!(
        p.open(Some(&host), "/", Some("bob")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        p.open(Some(&host), "/", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    p.set_visibility("alice", &id, "PUBLIC").await;
    assert_eq!(p.open(Some(&host), "/", None).await.0, StatusCode::OK);
    p.set_visibility("alice", &id, "PRIVATE").await;

    // A browser signed in to the App Store reaches the PRIVATE instance's own host through
    // the hand-off: a sealed one-minute ticket becomes a cookie of that host.
    let instance_host = |location: &str| {
        // `*.localhost` is this machine; the request goes to 127.0.0.1 with the Host header.
        let url = reqwest::Url::parse(location).expect("an absolute URL");
        let ip_url = format!(
            "{}{}",
            p.url,
            &location[url.origin().ascii_serialization().len()..]
        );
        (
            ip_url,
            url.host_str().map(|h| format!("{h}:{port}")).unwrap(),
        )
    };
    let mut browser = s3_compat_tests::idp::Browser::new();
    let first = browser
        .send(
            browser
                .http()
                .get(format!("{}/", p.url))
                .header("host", &host)
                .header("accept", "text/html"),
        )
        .await;
    assert_eq!(
        first.status(),
        StatusCode::FOUND,
        "a browser is sent to sign in"
    );
    let hand_off = first.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(hand_off, format!("{}/auth/instance/{id}?path=%2F", p.url));
    let to_login = browser.send(browser.http().get(&hand_off)).await;
    let login = to_login.headers()["location"].to_str().unwrap().to_owned();
    assert!(login.starts_with("/auth/login?returnTo="), "{login}");
    let callback = browser.sign_in(&format!("{}{login}", p.url), "alice").await;
    let back = browser.send(browser.http().get(callback.as_str())).await;
    assert_eq!(
        back.headers()["location"],
        format!("/auth/instance/{id}?path=%2F")
    );
    let ticketed = browser.send(browser.http().get(&hand_off)).await;
    let ticket_url = ticketed.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        ticket_url.starts_with(&format!("http://{host}/_appstore/session?ticket=")),
        "{ticket_url}"
    );
    let (url, h) = instance_host(&ticket_url);
    let taken = browser
        .send(browser.http().get(&url).header("host", &h))
        .await;
    assert_eq!(taken.status(), StatusCode::FOUND);
    assert_eq!(taken.headers()["location"], "/");
    assert!(browser.cookie("appstore_instance").is_some());
    let page = browser
        .send(
            browser
                .http()
                .get(format!("{}/", p.url))
                .header("host", &host),
        )
        .await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "the instance cookie signs the browser in"
    );
    // The ticket is bound to its instance and a forged cookie is nobody.
    let other = format!("00000000-0000-4000-8000-000000000000.localhost:{port}");
    let wrong = browser
        .send(browser.http().get(&url).header("host", &other))
        .await;
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    let forged = p
        .http
        .get(format!("{}/", p.url))
        .header("host", &host)
        .header("cookie", "appstore_instance=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // The wrong form redirects to the right one.
    let (s, _, headers) = p
        .open(None, &format!("/instance/{id}/x?y=1"), Some("alice"))
        .await;
    assert_eq!(s, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers["location"], format!("http://{host}/x?y=1"));
    // Unknown instances get a page, not a 502.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (s, page, _) = p
        .open(
            Some(&format!("{unknown}.localhost:{port}")),
            "/",
            Some("alice"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(page.contains("No such app instance"));

    // Status and logs.
    let (s, status) = p
        .call(
            Method::GET,
            &format!("/api/v1/instances/{id}/status"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["phase"], "RUNNING", "{status}");
    let (s, logs) = p.logs("alice", &id).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        logs.contains("[launcher]") && logs.contains("ok boto3 start"),
        "{logs}"
    );
    assert!(!logs.contains("ait_"), "the instance token is never logged");
    assert_eq!(p.logs("bob", &id).await.0, StatusCode::NOT_FOUND);

    // Drive's sessions last 10 s here and the broker's tokens 10 s: the app still writes
    // once its first credentials have expired.
    tokio::time::sleep(Duration::from_secs(15)).await;
    ws.send("@ / {\"write\":true,\"tag\":\"late\"}").await;
    let frame = ws
        .until("h2o_drive late", Duration::from_secs(60))
        .await
        .unwrap_or_else(|seen| panic!("no late writes: {seen:?}"));
    assert!(
        !frame.contains("FAILED late") && !frame.contains("FAILED boto3 late"),
        "{frame}"
    );
    // Drive's sessions are short here: the test's own need renewing too.
    let alice = p.drive_as("alice").await;
    assert!(
        object(&alice, &format!("home/boto3-late-{id}.txt"))
            .await
            .is_some()
    );

    // Credentials minted for the instance: the broker token in its web identity file, the
    // STS session made from it, and the instance token itself.
    let spec: Value =
        serde_json::from_slice(&std::fs::read(p.instance_dir(&id).join("spec.json")).unwrap())
            .unwrap();
    let instance_token = spec["env"]["H2O_CLOUD_CLIENT_PLATFORM_TOKEN"]
        .as_str()
        .unwrap()
        .to_owned();
    let broker = |t: &str| {
        p.http
            .post(format!("{}/broker/token", p.url))
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "appstore-instance"),
                ("refresh_token", t),
            ])
            .send()
    };
    let answer: Value = broker(&instance_token).await.unwrap().json().await.unwrap();
    let broker_token = answer["access_token"]
        .as_str()
        .expect("a broker token")
        .to_owned();
    let creds = s3_compat_tests::sts::assume(&p.drive_endpoint, &broker_token, None)
        .await
        .expect("STS trusts the broker");
    let session = s3_compat_tests::sts::session_client(&p.drive_endpoint, &creds);
    assert!(
        object(&session, &format!("home/boto3-start-{id}.txt"))
            .await
            .is_some(),
        "the session is alice's"
    );

    let (s, _) = p
        .call(
            Method::DELETE,
            &format!("/api/v1/instances/{id}"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // At once: every credential of the instance is refused.
    let e = session
        .list_objects_v2()
        .bucket("_my")
        .send()
        .await
        .expect_err("the session is revoked");
    assert!(format!("{e:?}").contains("InvalidToken"), "{e:?}");
    let e = s3_compat_tests::sts::assume(&p.drive_endpoint, &broker_token, None)
        .await
        .expect_err("the broker token is revoked");
    assert_eq!(e.code, "InvalidIdentityToken", "{}", e.body);
    let refused = broker(&instance_token).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let bundle = p
        .http
        .get(format!("{}/api/v1/instances/{id}/launcher/bundle", p.url))
        .bearer_auth(&instance_token)
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        p.open(Some(&host), "/", Some("alice")).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(
        !p.instance_dir(&id).exists(),
        "terminate removes the instance's files"
    );
    // alice's own credentials still work.
    let alice = p.drive_as("alice").await;
    assert!(
        object(&alice, &format!("home/boto3-start-{id}.txt"))
            .await
            .is_some()
    );
    p.stop(&[], "alice").await;
}

/// With `--uv`, the launcher installs an app's requirements with uv (here into a virtualenv
/// cache of its own, so nothing pip built is reused): the instance starts and serves its
/// page, uv's report is in the instance's log, and the packages' bytecode was compiled at
/// install (no start compiles it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uv_installs_an_apps_requirements() {
    let venvs = tempfile::tempdir().unwrap();
    let uv = tools_dir().join("venv/bin/uv");
    let p = Platform::start(|a| {
        a.uv = Some(uv);
        a.venv_cache_dir = Some(venvs.path().to_owned());
    })
    .await;
    let app = p.import("alice", drive_app(), "PRIVATE").await;
    let (status, inst) = p.run("alice", &app, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    let port = p.addr.rsplit(':').next().unwrap();
    let host = format!("{id}.localhost:{port}");
    p.until_running(Some(&host), "/", "alice", &id).await;
    let (_, log) = p.logs("alice", &id).await;
    assert!(
        log.lines()
            .any(|l| l.starts_with("[pip] Installed ") && l.contains(" packages in ")),
        "uv's report: {log}"
    );
    let compiled = std::fs::read_dir(venvs.path())
        .unwrap()
        .filter_map(Result::ok)
        .flat_map(|venv| {
            std::fs::read_dir(venv.path().join("lib"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|py| py.path().join("site-packages/h2o_wave/__pycache__"))
        })
        .any(|cache| cache.is_dir());
    assert!(compiled, "h2o_wave's bytecode compiled at install");
    p.stop(&[id], "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn base_url_instances_suspend_and_resume_with_their_volume() {
    let p = Platform::start(|a| a.routing_mode = Some("BASE_URL".into())).await;
    let app = p.import("alice", drive_app(), "PRIVATE").await;
    let (status, inst) = p.run("alice", &app, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    let base = format!("/instance/{id}/");
    assert_eq!(inst["url"], format!("{}{base}", p.url));
    p.until_running(None, &base, "alice", &id).await;
    let mut ws = watch(&p, &p.addr, &format!("{base}_s/"), "alice", &base).await;
    ws.until("starts=1", Duration::from_secs(60))
        .await
        .unwrap_or_else(|seen| panic!("{seen:?}"));

    // The wrong form redirects.
    let port = p.addr.rsplit(':').next().unwrap();
    let (s, _, headers) = p
        .open(
            Some(&format!("{id}.localhost:{port}")),
            "/a?b",
            Some("alice"),
        )
        .await;
    assert_eq!(s, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(headers["location"], format!("{}{base}a?b", p.url));

    let (s, body) = p
        .call(
            Method::POST,
            &format!("/api/v1/instances/{id}/suspend"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["phase"], "SUSPENDED");
    let (s, page, _) = p.open(None, &base, Some("alice")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("suspended"), "{page}");
    let (s, _) = p
        .call(
            Method::POST,
            &format!("/api/v1/instances/{id}/resume"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    p.until_running(None, &base, "alice", &id).await;
    let mut ws = watch(&p, &p.addr, &format!("{base}_s/"), "alice", &base).await;
    ws.until("starts=2", Duration::from_secs(60))
        .await
        .unwrap_or_else(|seen| panic!("the volume survives suspend: {seen:?}"));
    let (s, previous) = p
        .http
        .get(format!(
            "{}/api/v1/instances/{id}/logs?previous=true",
            p.url
        ))
        .bearer_auth(p.token("alice").await)
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(previous.text().await.unwrap().contains("[launcher]"));
    p.stop(&[id], "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instance_limits_hold_for_users_and_visitors() {
    // The launcher is replaced by a program that exits at once: limits are the scheduler's.
    let p = Platform::start(|a| a.launcher = Some("/bin/true".into())).await;
    let app = p.import("alice", drive_app(), "PUBLIC").await;
    // Lifecycles: a LINK app has no instances; a MANAGED app is run by its owner or an admin.
    let link = "[App]\nName = \"ai.h2o.test.link\"\nVersion = \"0.0.1\"\n\
                InstanceLifecycle = \"LINK\"\n[Link]\nAddress = \"https://example.com/\"\n";
    let link = p
        .import("alice", zip(&[("app.toml", link.as_bytes())]), "ALL_USERS")
        .await;
    let (s, body) = p.run("alice", &link, json!({})).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("not-runnable")),
        "{body}"
    );
    // EnableOIDC apps need the server's Wave OIDC client, which this one lacks.
    let oidc = common::manifest("ai.h2o.test.oidc", "0.0.1", "EnableOIDC = true\n");
    let oidc = p
        .import("alice", common::bundle_with(&oidc), "ALL_USERS")
        .await;
    let (s, body) = p.run("alice", &oidc, json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("EnableOIDC"),
        "{body}"
    );
    let managed = common::manifest("ai.h2o.test.managed", "0.0.1", "")
        .replace("[Runtime]", "InstanceLifecycle = \"MANAGED\"\n\n[Runtime]");
    let managed = p
        .import("alice", common::bundle_with(&managed), "ALL_USERS")
        .await;
    assert_eq!(
        p.run("bob", &managed, json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, body) = p.run("dave", &managed, json!({})).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "an admin runs a MANAGED app: {body}"
    );
    let managed_instance = body["id"].as_str().unwrap().to_owned();
    // Bad requests are refused with a clear error.
    let (s, body) = p
        .run("alice", &app, json!({ "routingMode": "SIDEWAYS" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _) = p
        .run("alice", &app, json!({ "visibility": "EVERYONE" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        p.run("alice", "no-such-app", json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = p
        .call(
            Method::POST,
            &format!("/api/v1/apps/{app}/instances"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let mut alices = Vec::new();
    for _ in 0..10 {
        let (s, body) = p.run("alice", &app, json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        alices.push(body["id"].as_str().unwrap().to_owned());
    }
    let (s, body) = p.run("alice", &app, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(body["code"], "instance-limit", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("at most 10"),
        "{body}"
    );
    let mut erins = Vec::new();
    for _ in 0..5 {
        let (s, body) = p.run("erin", &app, json!({})).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        erins.push(body["id"].as_str().unwrap().to_owned());
    }
    let (s, body) = p.run("erin", &app, json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("visitor may have at most 5"),
        "{body}"
    );
    // A suspended instance still counts; a terminated one frees its slot.
    let first = &alices[0];
    p.call(
        Method::POST,
        &format!("/api/v1/instances/{first}/suspend"),
        Some("alice"),
        None,
    )
    .await;
    assert_eq!(
        p.run("alice", &app, json!({})).await.0,
        StatusCode::CONFLICT
    );
    let (s, _) = p
        .call(
            Method::DELETE,
            &format!("/api/v1/instances/{first}"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = p.run("alice", &app, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    alices[0] = body["id"].as_str().unwrap().to_owned();
    // Listing: one's own; everything only for admins.
    let (_, mine) = p
        .call(Method::GET, "/api/v1/instances", Some("alice"), None)
        .await;
    assert_eq!(mine["instances"].as_array().unwrap().len(), 10);
    assert_eq!(
        p.call(
            Method::GET,
            "/api/v1/instances?all=true",
            Some("alice"),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(p.all_instances().await.len(), 16);
    // An app with instances cannot be deleted.
    let (s, body) = p
        .call(
            Method::DELETE,
            &format!("/api/v1/apps/{app}"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    p.call(
        Method::DELETE,
        &format!("/api/v1/instances/{managed_instance}"),
        Some("dave"),
        None,
    )
    .await;
    for id in &erins {
        p.call(
            Method::DELETE,
            &format!("/api/v1/instances/{id}"),
            Some("erin"),
            None,
        )
        .await;
    }
    p.stop(&alices, "alice").await;
}

/// SIGTERM to `child`, and its exit status.
async fn terminate_child(mut child: std::process::Child) -> std::process::ExitStatus {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("joined")
        .expect("the App Store exits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_app_store_adopts_its_running_instances() {
    use s3_compat_tests::server::{ACCESS_KEY, SECRET_KEY};
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let idp = Idp::start_for_app(&format!("{url}/auth/callback")).await;
    let issuers = format!("{},{url}/broker", idp.issuer());
    let drive_dir = dir.path().join("drive");
    std::fs::create_dir_all(&drive_dir).expect("drive dir");
    let drive = tokio::task::spawn_blocking(move || {
        DriveProcess::start_in(
            &drive_dir,
            &["--oidc-issuer", &issuers, "--oidc-audience", AUDIENCE],
        )
    })
    .await
    .expect("drive starts");
    let tools = tools_dir();
    let data = dir.path().join("appstore");
    let envs = [
        ("APPSTORE_LISTEN", format!("127.0.0.1:{port}")),
        ("APPSTORE_DATA_DIR", data.display().to_string()),
        ("APPSTORE_DRIVE_ENDPOINT", drive.endpoint.clone()),
        ("APPSTORE_DRIVE_ACCESS_KEY", ACCESS_KEY.to_owned()),
        ("APPSTORE_DRIVE_SECRET_KEY", SECRET_KEY.to_owned()),
        ("H2O_CLOUD_OIDC_PROVIDER_URL", idp.issuer().to_owned()),
        ("H2O_CLOUD_OIDC_AUDIENCE", AUDIENCE.to_owned()),
        (
            "H2O_CLOUD_OIDC_FULL_ACCESS_ROLE_NAME",
            "app-user".to_owned(),
        ),
        ("APPSTORE_ROUTING_MODE", "BASE_URL".to_owned()),
        ("APPSTORE_LAUNCHER", launcher().display().to_string()),
        (
            "APPSTORE_PIP_CACHE_DIR",
            tools.join("appstore-pip-cache").display().to_string(),
        ),
        (
            "APPSTORE_VENV_CACHE_DIR",
            tools.join("appstore-venvs").display().to_string(),
        ),
        ("APPSTORE_BROKER_AUDIENCE", AUDIENCE.to_owned()),
    ];
    let (first, _) = common::serve(&envs);
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let token = idp.password_token("alice").await.access_token;
    let imported: Value = http
        .post(format!("{url}/api/v1/apps"))
        .bearer_auth(&token)
        .body(drive_app())
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("json");
    let app = imported["id"].as_str().expect("an app id");
    let run: Value = http
        .post(format!("{url}/api/v1/apps/{app}/instances"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json");
    let id = run["id"].as_str().expect("an instance id").to_owned();
    let page = format!("{url}/instance/{id}/");
    let serving = |http: reqwest::Client, token: String, page: String| async move {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            let ok = http
                .get(&page)
                .bearer_auth(&token)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    };
    assert!(
        serving(http.clone(), token.clone(), page.clone()).await,
        "the instance serves"
    );
    let state_file = data.join("instances").join(&id).join("state.json");
    let pid = |f: &Path| -> u64 {
        let state: Value = serde_json::from_slice(&std::fs::read(f).expect("state")).expect("json");
        state["pid"].as_u64().expect("a launcher pid")
    };
    let launcher_pid = pid(&state_file);

    // The App Store stops; the instance keeps running and the next App Store adopts it.
    assert!(terminate_child(first).await.success());
    assert!(
        Path::new(&format!("/proc/{launcher_pid}")).exists(),
        "the launcher outlives the App Store"
    );
    let (second, _) = common::serve(&envs);
    assert!(
        serving(http.clone(), token.clone(), page.clone()).await,
        "served again after the restart"
    );
    assert_eq!(pid(&state_file), launcher_pid, "adopted, not restarted");
    let status: Value = http
        .get(format!("{url}/api/v1/instances/{id}/status"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["phase"], "RUNNING", "{status}");
    assert_eq!(status["restarts"], 0, "{status}");

    // Terminating an adopted instance stops its processes.
    let gone = http
        .delete(format!("{url}/api/v1/instances/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("terminate");
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while Path::new(&format!("/proc/{launcher_pid}")).exists()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !Path::new(&format!("/proc/{launcher_pid}")).exists(),
        "the launcher is gone"
    );
    assert!(terminate_child(second).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enable_oidc_apps_sign_users_in_through_waved() {
    use s3_compat_tests::idp::Browser;
    let p = Platform::start(|a| {
        a.routing_mode = Some("BASE_URL".into());
        a.oidc_wave_client_id = Some("wave-app".into());
        a.oidc_wave_client_secret =
            Some(shared_identity::Secret::from("wave-app-secret".to_owned()));
    })
    .await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drive-app");
    let read = |name: &str| std::fs::read(dir.join(name)).expect("fixture file");
    let toml = String::from_utf8(read("app.toml"))
        .unwrap()
        .replace("Module = \"app\"", "Module = \"app\"\nEnableOIDC = true");
    let (py, req) = (read("app.py"), read("requirements.txt"));
    let bundle = zip(&[
        ("app.toml", toml.as_bytes()),
        ("app.py", &py),
        ("requirements.txt", &req),
    ]);
    let app = p.import("alice", bundle, "ALL_USERS").await;
    // PUBLIC: the App Store lets anyone through; waved's own sign-in is what is tested.
    let (status, inst) = p
        .run("alice", &app, json!({ "visibility": "PUBLIC" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_str().unwrap().to_owned();
    let base = format!("/instance/{id}/");
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let (_, s) = p
            .call(
                Method::GET,
                &format!("/api/v1/instances/{id}/status"),
                Some("alice"),
                None,
            )
            .await;
        if s["phase"] == "RUNNING" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not running: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // waved asks for a sign-in.
    let (s, _, headers) = p.open(None, &base, None).await;
    assert_eq!(s, StatusCode::FOUND);
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .contains("_auth/login"),
        "{headers:?}"
    );
    // A browser signs in at the provider through waved and comes back to the instance.
    let mut browser = Browser::new();
    let start = format!(
        "{}{base}_auth/init?next={}",
        p.url,
        base.replace('/', "%2F")
    );
    let callback = browser.sign_in(&start, "alice").await;
    assert!(
        callback.path().ends_with(&format!("{base}_auth/callback")),
        "{callback}"
    );
    let back = browser.send(browser.http().get(callback.as_str())).await;
    assert_eq!(back.status(), StatusCode::FOUND, "{:?}", back.text().await);
    let session = browser
        .cookie("oidcsession")
        .expect("waved's session cookie")
        .to_owned();
    // The app sees the user waved signed in.
    let cookie = format!("oidcsession={session}");
    let mut ws = Ws::connect(
        &p.addr,
        &format!("{base}_s/"),
        &[("Host", &p.addr), ("Cookie", &cookie)],
    )
    .await
    .expect("the websocket opens");
    ws.send(&format!("+ {base} ")).await;
    ws.until("user=alice", Duration::from_secs(30))
        .await
        .unwrap_or_else(|seen| panic!("q.auth.username is the user: {seen:?}"));
    // With the user's own access token from waved, h2o_drive lists the user's home.
    ws.send(&format!("@ {base} {{\"whoami\":true}}")).await;
    let frame = ws
        .until("oidc-drive", Duration::from_secs(60))
        .await
        .unwrap_or_else(|seen| panic!("no oidc-drive result: {seen:?}"));
    assert!(frame.contains("ok oidc-drive"), "{frame}");
    // S10: q.auth.refresh_token, refreshed through the discovery's issuer (the broker) as its
    // platform client, lists the same home.
    let count = |what: &str| {
        frame
            .split(&format!("ok {what} "))
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .map(str::to_owned)
    };
    assert!(frame.contains("ok refreshed-drive"), "{frame}");
    assert_eq!(count("refreshed-drive"), count("oidc-drive"), "{frame}");
    // A refresh token the provider never issued is refused in OAuth's words.
    let refused = reqwest::Client::new()
        .post(format!("{}/broker/token", p.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "not-a-token"),
            ("client_id", "appstore-instance"),
        ])
        .send()
        .await
        .expect("the broker answers");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let refused: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    p.stop(&[id], "alice").await;
}
