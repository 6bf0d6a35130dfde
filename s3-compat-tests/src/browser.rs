//! Browser tests' plumbing: the tools `clients/setup.sh` installs (Debian's `chromium`,
//! npm's `playwright-core`), where screenshots go, and running a Node script that drives
//! the browser (the scripts share `ui/browser.mjs`).

use std::path::{Path, PathBuf};

/// Where `playwright-core` is installed; panics saying how to install what is missing.
pub fn tools() -> PathBuf {
    let ui = crate::emulator::tools_dir().join("ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "chromium and playwright-core are missing: run s3-compat-tests/clients/setup.sh"
    );
    ui
}

/// Where screenshots go: `$DRIVE_UI_ARTIFACTS`, else `$CARGO_TARGET_DIR/ui-artifacts`
/// (created).
pub fn artifacts() -> PathBuf {
    let dir = std::env::var_os("DRIVE_UI_ARTIFACTS").map_or_else(
        || {
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
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    dir
}

/// Runs the Node script `script` with `envs` (plus `UI_TOOLS` and `ARTIFACTS`), killed after
/// `limit`; its exit status and everything it printed.
pub async fn run(
    script: &Path,
    envs: &[(&str, String)],
    limit: std::time::Duration,
) -> (Option<i32>, String) {
    let child = tokio::process::Command::new("node")
        .arg(script)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("UI_TOOLS", tools())
        .env("ARTIFACTS", artifacts())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts (setup.sh installs it)");
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

/// Copies the screenshots `names` from the artifacts to `docs/screenshots/` when
/// `UPDATE_DOCS_SCREENSHOTS` is set (the README's pictures are refreshed on request only).
pub fn update_docs(names: &[&str]) {
    if std::env::var_os("UPDATE_DOCS_SCREENSHOTS").is_none() {
        return;
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&docs).expect("docs/screenshots");
    let shots = artifacts();
    for name in names {
        std::fs::copy(shots.join(name), docs.join(name)).expect("copy a screenshot");
    }
}
