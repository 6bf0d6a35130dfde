//! The `appstore` CLI against a running App Store: `bundle` builds the hello-world Wave app
//! (honouring `.appignore` and the default exclusions), then `login`, `app import | list |
//! get | update | download | delete` and `tag list | assign | remove`, with a saved access
//! token and with a refresh token; `app run` and `instance …` against the local runtime.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Db, Stack};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hello");

/// Runs `appstore ARGS` with the settings file `conf`.
async fn appstore(conf: &Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_appstore"));
    command
        .args(args)
        .arg("--conf")
        .arg(conf)
        .env_remove("APPSTORE_TOKEN")
        .env_remove("APPSTORE_ENDPOINT");
    command.output().await.expect("the appstore binary runs")
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_bundles_imports_and_manages_a_wave_app() {
    let stack = Stack::start(Db::Sqlite).await;
    let work = tempfile::tempdir().unwrap();
    let app_dir = work.path().join("hello");
    copy_dir(Path::new(FIXTURE), &app_dir);
    for (path, text) in [
        ("venv/lib/site.py", "x"),
        ("__pycache__/app.cpython-311.pyc", "x"),
        (".git/config", "x"),
        ("notes/todo.txt", "not shipped"),
        ("debug.log", "not shipped"),
    ] {
        let p = app_dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let conf = work.path().join("cli.toml");

    // bundle
    let out = ok(
        &appstore(&conf, &["bundle", app_dir.to_str().unwrap(), "--json"]).await,
        "bundle",
    );
    let packed: Value = serde_json::from_str(&out).unwrap();
    let wave = app_dir.join("ai.h2o.test.hello.0.0.1.wave");
    assert_eq!(packed["path"], wave.to_str().unwrap());
    let mut files: Vec<&str> = packed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(
        files,
        [
            "about.md",
            "app.py",
            "app.toml",
            "requirements.txt",
            "static/icon.png"
        ]
    );

    // login with an access token, then import
    let token = stack.token("alice").await;
    let out = ok(
        &appstore(
            &conf,
            &["login", "--endpoint", &stack.url, "--token", &token],
        )
        .await,
        "login",
    );
    assert!(out.contains("as alice"), "{out}");
    let out = ok(
        &appstore(
            &conf,
            &[
                "app",
                "import",
                wave.to_str().unwrap(),
                "-v",
                "ALL_USERS",
                "--json",
            ],
        )
        .await,
        "import",
    );
    let app: Value = serde_json::from_str(&out).unwrap();
    let id = app["id"].as_str().unwrap().to_owned();
    assert_eq!(app["title"], "Hello, Wave");
    assert_eq!(app["version"], "0.0.1");

    // The long description came from about.md.
    let (_, md) = stack
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/apps/{id}"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(md["hasLongDescription"], true);

    // list (table), get, update, download
    let out = ok(&appstore(&conf, &["app", "list"]).await, "list");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "TITLE", "OWNER", "CREATED", "VISIBILITY", "TAGS"]
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&id) && row.contains("Hello, Wave 0.0.1") && row.contains("ALL_USERS"),
        "{out}"
    );
    let out = ok(&appstore(&conf, &["app", "get", &id]).await, "get");
    assert!(out.contains("Title        Hello, Wave"), "{out}");
    let out = ok(
        &appstore(&conf, &["app", "update", &id, "-v", "PRIVATE", "--json"]).await,
        "update",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["visibility"],
        "PRIVATE"
    );
    let copy = work.path().join("copy.wave");
    ok(
        &appstore(&conf, &["app", "download", &id, copy.to_str().unwrap()]).await,
        "download",
    );
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&wave).unwrap());

    // Errors come back as the problem's detail and a failing exit status.
    let out = appstore(&conf, &["app", "import", wave.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409 app-exists"),
        "{out:?}"
    );
    let out = appstore(&conf, &["app", "get", "../etc"]).await;
    assert!(!out.status.success());

    // tags: an admin creates one, the owner assigns and removes it
    let admin_conf = work.path().join("admin.toml");
    let dave = stack.token("dave").await;
    ok(
        &appstore(
            &admin_conf,
            &["login", "--endpoint", &stack.url, "--token", &dave],
        )
        .await,
        "admin login",
    );
    ok(
        &appstore(
            &admin_conf,
            &[
                "tag", "create", "demo", "--title", "Demos", "--color", "#00aa88",
            ],
        )
        .await,
        "tag create",
    );
    let out = ok(&appstore(&conf, &["tag", "list"]).await, "tag list");
    assert!(
        out.lines()
            .any(|l| l.starts_with("demo") && l.contains("Demos")),
        "{out}"
    );
    ok(
        &appstore(&conf, &["tag", "assign", "demo", &id]).await,
        "tag assign",
    );
    let out = ok(
        &appstore(&conf, &["app", "list", "--tag", "demo", "--json"]).await,
        "list by tag",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["tags"][0],
        "demo"
    );
    ok(
        &appstore(&conf, &["tag", "remove", "demo", &id]).await,
        "tag remove",
    );

    // A refresh token is refreshed before each command (and a rotated one saved).
    let refresh_conf = work.path().join("refresh.toml");
    let tokens = stack.idp.login("alice").await;
    let rt = tokens.refresh_token.expect("a refresh token");
    ok(
        &appstore(
            &refresh_conf,
            &["login", "--endpoint", &stack.url, "--refresh-token", &rt],
        )
        .await,
        "login with a refresh token",
    );
    let saved = std::fs::read_to_string(&refresh_conf).unwrap();
    assert!(
        saved.contains("RefreshToken") && saved.contains("IssuerURL"),
        "{saved}"
    );
    let out = ok(
        &appstore(&refresh_conf, &["app", "list", "--json"]).await,
        "list after refresh",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["id"],
        id.as_str()
    );

    ok(&appstore(&conf, &["app", "delete", &id]).await, "delete");
    let out = ok(
        &appstore(&conf, &["app", "list", "--json"]).await,
        "list after delete",
    );
    assert_eq!(out.trim(), "[]");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appstore_serve_takes_flags_environment_and_toml_and_stops_on_sigterm() {
    use s3_compat_tests::server::{ACCESS_KEY, DriveProcess, SECRET_KEY};
    let drive = tokio::task::spawn_blocking(DriveProcess::start)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("appstore.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nbucket = \"from-file\"\napp_version_limit = 3\ncookie_secure = false\n",
    )
    .unwrap();
    let envs = [
        ("APPSTORE_CONFIG", config.display().to_string()),
        (
            "APPSTORE_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("APPSTORE_DRIVE_ENDPOINT", drive.endpoint.clone()),
        ("APPSTORE_DRIVE_ACCESS_KEY", ACCESS_KEY.to_owned()),
        ("APPSTORE_DRIVE_SECRET_KEY", SECRET_KEY.to_owned()),
        ("APPSTORE_BUCKET", "from-env".to_owned()),
    ];
    let (mut child, url) = common::serve(&envs);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{url}{path}")).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let doc: Value = get("/api/v1/openapi.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let missing = get("/api/v1/nope").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], "no-route");
    // Browser sign-in goes to Drive's development issuer, the default.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{url}/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302);
    let to = login.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&format!("{}/_drive/idp/authorize?", drive.endpoint)),
        "{to}"
    );
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(
            "appstore_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    // The environment beat the file: the system bucket is `from-env`.
    let s3 = s3_compat_tests::client(&drive.endpoint, ACCESS_KEY, SECRET_KEY);
    assert!(s3.head_bucket().bucket("from-env").send().await.is_ok());
    assert!(s3.head_bucket().bucket("from-file").send().await.is_err());
    // The embedded default database and session key were created in the data directory.
    assert!(dir.path().join("data/appstore.db").exists());
    assert!(dir.path().join("data/session-key").exists());

    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    // A misspelt key stops the start with a message naming it.
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nbukket = \"x\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appstore"))
        .arg("serve")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bukket"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_in_with_a_browser() {
    use tokio::io::AsyncBufReadExt as _;
    let stack = common::DevStack::start("alice:alice-pw").await;
    let (url, drive_endpoint) = (stack.url.clone(), stack.drive_endpoint.clone());

    let conf = stack.dir.path().join("cli.toml");
    let mut login = tokio::process::Command::new(env!("CARGO_BIN_EXE_appstore"))
        .args(["login", "--browser", "--endpoint", &url, "--conf"])
        .arg(&conf)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(login.stderr.take().unwrap()).lines();
    let mut authorize = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(u) = line.trim().strip_prefix("http") {
            authorize = Some(format!("http{u}"));
            break;
        }
    }
    let authorize =
        reqwest::Url::parse(&authorize.expect("the CLI prints the sign-in URL")).unwrap();
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/_drive/idp/authorize?", drive_endpoint))
    );
    // The browser: the login page, the password, then the redirect back to the CLI.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        browser
            .get(authorize.clone())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut fields: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), "alice-pw".into()));
    let back = browser
        .post(format!("{}/_drive/idp/authorize", drive_endpoint))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let to_cli = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_cli.starts_with("http://127.0.0.1:"), "{to_cli}");
    let done = browser.get(&to_cli).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let out = login.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("as alice"),
        "{out:?}"
    );
    let saved = std::fs::read_to_string(&conf).unwrap();
    assert!(saved.contains("RefreshToken"), "{saved}");
    // The saved refresh token works for later commands.
    let list = appstore(&conf, &["app", "list", "--json"]).await;
    assert_eq!(ok(&list, "list after a browser sign-in").trim(), "[]");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_and_manages_instances() {
    // The launcher is a program that exits at once: this is about the CLI and the API.
    let stack = Stack::start_with(Db::Sqlite, |a| a.launcher = Some("/bin/true".into())).await;
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("cli.toml");
    let token = stack.token("alice").await;
    ok(
        &appstore(
            &conf,
            &["login", "--endpoint", &stack.url, "--token", &token],
        )
        .await,
        "login",
    );
    let (_, app) = stack
        .import("alice", common::bundle("ai.h2o.test.cli", "0.0.1"), None)
        .await;
    let app = app["id"].as_str().unwrap();
    let out = ok(
        &appstore(&conf, &["app", "run", app, "--routing-mode", "BASE_URL"]).await,
        "run",
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("ID:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no ID in {out}"))
        .to_owned();
    assert!(
        out.contains(&format!("{}/instance/{id}/", stack.url)),
        "{out}"
    );
    assert!(out.contains("PRIVATE") && out.contains("BASE_URL"), "{out}");
    let list = ok(&appstore(&conf, &["instance", "list"]).await, "list");
    assert!(list.starts_with("ID") && list.contains(&id), "{list}");
    let json = ok(
        &appstore(&conf, &["--json", "instance", "get", &id]).await,
        "get",
    );
    let got: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(got["appId"], app);
    let status = ok(
        &appstore(&conf, &["instance", "status", &id]).await,
        "status",
    );
    assert!(
        status.contains("Phase:") && status.contains("Restarts:"),
        "{status}"
    );
    let updated = ok(
        &appstore(&conf, &["instance", "update", &id, "-v", "ALL_USERS"]).await,
        "update",
    );
    assert!(updated.contains("ALL_USERS"), "{updated}");
    let suspended = ok(
        &appstore(&conf, &["instance", "suspend", &id]).await,
        "suspend",
    );
    assert!(suspended.contains("SUSPENDED"), "{suspended}");
    ok(
        &appstore(&conf, &["instance", "resume", &id]).await,
        "resume",
    );
    // The current run's log (the stand-in launcher restarts every few seconds, each run
    // starting a new log with the runtime's own line).
    let mut logs = String::new();
    for _ in 0..50 {
        logs = ok(&appstore(&conf, &["instance", "logs", &id]).await, "logs");
        if logs.contains("[appstore] memory") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(logs.contains("[appstore] memory"), "{logs}");
    let bad = appstore(&conf, &["instance", "update", &id, "-v", "EVERYONE"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid-visibility"));
    let out = ok(
        &appstore(&conf, &["instance", "terminate", &id]).await,
        "terminate",
    );
    assert!(out.contains(&format!("Terminated {id}")), "{out}");
    let gone = appstore(&conf, &["instance", "get", &id]).await;
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));
    stack.stop().await;
}
