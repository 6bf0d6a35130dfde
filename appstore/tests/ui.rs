//! The App Store's web UI in a real headless Chromium (Debian's `chromium`, driven by npm's
//! `playwright-core` from `s3-compat-tests/clients/setup.sh`): sign-in through the test
//! OpenID provider, import by drag-and-drop, tags and search, the app page with its
//! Markdown, launch, live phases, the instance through the router, logs, suspend, resume,
//! visibility, terminate, a second user and an admin, hostile names shown as text, and
//! screenshots at desktop and phone width. The browser side is `tests/ui/appstore.mjs`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use common::platform::{Platform, START_TIMEOUT, drive_app, tools_dir};
use common::{ICON, manifest, zip};

/// A title that would run script if it were ever treated as HTML.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// The long description of the showcase app: every construct the renderer knows, and
/// some it must not interpret.
const ABOUT: &str = "# About the showcase\n\n\
A *small* app with **bold** claims and `inline code`.\n\n\
- one [safe link](https://example.com/docs)\n\
- a [bad link](javascript:alert(1))\n\
- <script>alert(1)</script>\n\n\
```\nfn main() {}\n```\n";

/// Where the browser's screenshots go: `$CARGO_TARGET_DIR/ui-artifacts`.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            // target/<profile>/deps/<test> → target
            let exe = std::env::current_exe().expect("the test binary has a path");
            exe.ancestors()
                .nth(3)
                .expect("tests run from target/<profile>/deps")
                .to_owned()
        },
        PathBuf::from,
    );
    target.join("ui-artifacts")
}

/// The showcase app at `version`: hostile title, a tag, long description, icon, screenshot.
fn showcase(version: &str) -> Vec<u8> {
    let toml = format!(
        "[App]\nName = \"ai.h2o.test.showcase\"\nVersion = \"{version}\"\n\
         Title = \"{HOSTILE}\"\nDescription = \"Shows <b>markup</b> as text\"\n\
         LongDescription = \"about.md\"\nTags = [\"demo\"]\n\n[Runtime]\nModule = \"app\"\n"
    );
    zip(&[
        ("app.toml", toml.as_bytes()),
        ("app.py", include_bytes!("fixtures/hello/app.py")),
        ("requirements.txt", b"h2o-wave==1.8.16\n"),
        ("about.md", ABOUT.as_bytes()),
        ("static/icon.png", ICON),
        ("static/screenshot-1.png", ICON),
    ])
}

/// Runs the browser script with `envs`; its exit status and everything it printed.
async fn browse(envs: &[(&str, String)]) -> (Option<i32>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/appstore.mjs");
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts (setup.sh installs it)");
    let limit = START_TIMEOUT * 2 + Duration::from_secs(300);
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .expect("the browser script finishes in time")
        .expect("the browser script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_ui_imports_launches_and_manages_apps_in_chromium() {
    let ui_tools = tools_dir().join("ui");
    assert!(
        ui_tools.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "chromium and playwright-core are missing: run s3-compat-tests/clients/setup.sh"
    );
    let p = Platform::start(|_| {}).await;

    // A tag, and an app with a hostile title in two versions, imported through the API.
    let (s, body) = p
        .call(
            Method::POST,
            "/api/v1/tags",
            Some("dave"),
            Some(json!({"name": "demo", "title": "Demo"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    for version in ["1.0.0", "1.2.0"] {
        p.import("alice", showcase(version), "ALL_USERS").await;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("drive-writer.wave");
    std::fs::write(&good, drive_app()).expect("write the bundle");
    let bad = dir.path().join("bad-version.wave");
    let bad_toml = manifest("ai.h2o.test.bad", "1.0", "");
    std::fs::write(&bad, zip(&[("app.toml", bad_toml.as_bytes())])).expect("write the bundle");
    let shots = artifacts();
    std::fs::create_dir_all(&shots).expect("the artifacts directory");

    let (code, output) = browse(&[
        ("APPSTORE_URL", p.url.clone()),
        ("UI_TOOLS", ui_tools.display().to_string()),
        ("BUNDLE", good.display().to_string()),
        ("BAD_BUNDLE", bad.display().to_string()),
        ("HOSTILE", HOSTILE.to_owned()),
        ("ARTIFACTS", shots.display().to_string()),
        ("START_TIMEOUT_MS", START_TIMEOUT.as_millis().to_string()),
    ])
    .await;
    println!("{output}");

    // Whatever happened, no instance is left running.
    let (_, list) = p
        .call(
            Method::GET,
            "/api/v1/instances?all=true",
            Some("dave"),
            None,
        )
        .await;
    let left: Vec<String> = list["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut logs = String::new();
    for id in &left {
        logs.push_str(&p.logs("dave", id).await.1);
    }
    p.stop(&left, "dave").await;
    assert_eq!(
        code,
        Some(0),
        "the browser script failed (screenshots in {}):\n{output}\ninstance logs:\n{logs}",
        shots.display()
    );
    assert!(
        left.is_empty(),
        "the script terminated its instance: {left:?}"
    );

    // The README's pictures, refreshed on request.
    if std::env::var_os("UPDATE_DOCS_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs/screenshots");
        for name in [
            "catalogue-desktop.png",
            "catalogue-phone.png",
            "app-desktop.png",
            "app-phone.png",
            "instances-desktop.png",
            "instances-phone.png",
        ] {
            std::fs::copy(shots.join(name), docs.join(name)).expect("copy a screenshot");
        }
    }
}
