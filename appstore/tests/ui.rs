//! The App Store's web UI in a real headless Chromium (Debian's `chromium`, driven by npm's
//! `playwright-core` from `s3-compat-tests/clients/setup.sh`): sign-in through the test
//! OpenID provider, import by drag-and-drop, tags and search, the app page with its
//! Markdown, its visibility, tags and deletion for those allowed (owner, curator, admin)
//! and for no one else, launch, live phases, the instance through the router, logs,
//! suspend, resume, visibility, terminate, a second user, a visitor and an admin, hostile
//! names shown as text, and screenshots at desktop and phone width. The browser side is
//! `tests/ui/appstore.mjs`.

mod common;

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use common::platform::{Platform, START_TIMEOUT, drive_app};
use common::{ICON, manifest, zip};
use s3_compat_tests::browser;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_web_ui_imports_launches_and_manages_apps_in_chromium() {
    browser::tools();
    let p = Platform::start(|_| {}).await;

    // Tags: one anyone with full access may assign, one only curators (with a hostile
    // title); and an app with a hostile title in two versions, imported through the API.
    for tag in [
        json!({"name": "demo", "title": "Demo"}),
        json!({"name": "reviewed", "title": HOSTILE, "adminRoles": ["curator"]}),
    ] {
        let (s, body) = p
            .call(Method::POST, "/api/v1/tags", Some("dave"), Some(tag))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }
    for version in ["1.0.0", "1.2.0"] {
        p.import("alice", showcase(version), "ALL_USERS").await;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("drive-writer.wave");
    std::fs::write(&good, drive_app()).expect("write the bundle");
    let bad = dir.path().join("bad-version.wave");
    let bad_toml = manifest("ai.h2o.test.bad", "1.0", "");
    std::fs::write(&bad, zip(&[("app.toml", bad_toml.as_bytes())])).expect("write the bundle");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/appstore.mjs");
    let limit = START_TIMEOUT * 2 + Duration::from_secs(300);
    let (code, output) = browser::run(
        &script,
        &[
            ("APPSTORE_URL", p.url.clone()),
            ("BUNDLE", good.display().to_string()),
            ("BAD_BUNDLE", bad.display().to_string()),
            ("HOSTILE", HOSTILE.to_owned()),
            ("START_TIMEOUT_MS", START_TIMEOUT.as_millis().to_string()),
        ],
        limit,
    )
    .await;
    println!("{output}");

    // Whatever happened, no instance is left running.
    let left: Vec<String> = p
        .all_instances()
        .await
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    let mut logs = String::new();
    for id in &left {
        logs.push_str(&p.logs("dave", id).await.1);
    }
    p.stop(&left, "dave").await;
    assert_eq!(
        code,
        Some(0),
        "the browser script failed (screenshots in {}):\n{output}\ninstance logs:\n{logs}",
        browser::artifacts().display()
    );
    assert!(
        left.is_empty(),
        "the script terminated its instance: {left:?}"
    );

    browser::update_docs(&[
        "catalogue-desktop.png",
        "catalogue-phone.png",
        "app-desktop.png",
        "app-phone.png",
        "instances-desktop.png",
        "instances-phone.png",
    ]);
}
