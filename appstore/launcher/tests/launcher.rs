//! Runs the launcher binary against a fake App Store on loopback.

use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::process::Command;
use zip::write::{SimpleFileOptions, ZipWriter};

const INSTANCE_TOKEN: &str = "instance-token-3f9a";
const ACCESS_TOKEN: &str = "web-identity-token-7c21";

/// What the fake App Store serves and what it was sent.
struct Store {
    bundle_status: StatusCode,
    /// Lifetime of the access tokens the broker hands out, in seconds.
    expires_in: u64,
    bundle: Vec<u8>,
    phases: Mutex<Vec<Value>>,
    /// Authorization headers of bundle and phase requests.
    auth: Mutex<Vec<String>>,
    token_forms: Mutex<Vec<String>>,
}

impl Store {
    fn new(bundle_status: StatusCode) -> Arc<Store> {
        Store::with_tokens_for(bundle_status, 3600)
    }

    fn with_tokens_for(bundle_status: StatusCode, expires_in: u64) -> Arc<Store> {
        Arc::new(Store {
            bundle_status,
            expires_in,
            bundle: bundle(),
            phases: Mutex::default(),
            auth: Mutex::default(),
            token_forms: Mutex::default(),
        })
    }

    fn phases(&self) -> Vec<(String, Option<String>)> {
        let phases = self.phases.lock().unwrap();
        let text = |v: &Value| v.as_str().map(str::to_owned);
        phases
            .iter()
            .map(|p| (text(&p["phase"]).unwrap(), text(&p["reason"])))
            .collect()
    }
}

/// A bundle with an empty requirements file, so the virtualenv needs no package.
fn bundle() -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let files: [(&str, &[u8]); 3] = [
        (
            "app.toml",
            b"[App]\nName = \"test-app\"\nVersion = \"0.1.0\"\n",
        ),
        ("requirements.txt", b""),
        ("app.py", b"from h2o_wave import main, app\n"),
    ];
    for (name, data) in files {
        w.start_file(name, SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn remember_auth(store: &Store, headers: &HeaderMap) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    store
        .auth
        .lock()
        .unwrap()
        .push(auth.unwrap_or("").to_owned());
}

async fn serve(store: Arc<Store>) -> SocketAddr {
    let app = Router::new()
        .route(
            "/api/v1/instances/{id}/launcher/bundle",
            get(|State(s): State<Arc<Store>>, headers: HeaderMap| async move {
                remember_auth(&s, &headers);
                if s.bundle_status.is_success() {
                    (s.bundle_status, s.bundle.clone())
                } else {
                    (s.bundle_status, Vec::new())
                }
            }),
        )
        .route(
            "/api/v1/instances/{id}/launcher/phase",
            post(
                |State(s): State<Arc<Store>>, headers: HeaderMap, body: axum::Json<Value>| async move {
                    remember_auth(&s, &headers);
                    s.phases.lock().unwrap().push(body.0);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/broker/token",
            post(|State(s): State<Arc<Store>>, body: String| async move {
                s.token_forms.lock().unwrap().push(body);
                let token = serde_json::json!({
                    "access_token": ACCESS_TOKEN,
                    "expires_in": s.expires_in,
                    "token_type": "Bearer",
                });
                axum::Json(token)
            }),
        )
        .with_state(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A port nothing listens on (for now).
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// The real interpreter behind `python3` (which may be a shim that needs the caller's HOME).
fn python() -> String {
    let output = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(output.status.success(), "python3 is needed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        Dirs { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// The launcher as the App Store would start it, with a cleared environment.
fn command(addr: SocketAddr, dirs: &Dirs, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_appstore-launcher"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dirs.root.path())
        .env("LANG", "C.UTF-8")
        .env("APPSTORE_LAUNCHER_URL", format!("http://{addr}/"))
        .env("H2O_CLOUD_INSTANCE_ID", "inst-1")
        .env("H2O_CLOUD_CLIENT_PLATFORM_TOKEN", INSTANCE_TOKEN)
        .env("APPSTORE_LAUNCHER_MODULE", "app")
        .env("APPSTORE_LAUNCHER_APP_DIR", dirs.path("app"))
        .env("APPSTORE_LAUNCHER_DATA_DIR", dirs.path("data"))
        .env("APPSTORE_LAUNCHER_VENV_CACHE", dirs.path("venvs"))
        .env("APPSTORE_LAUNCHER_WAVE_PORT", free_port())
        .env("APPSTORE_LAUNCHER_APP_PORT", free_port())
        .env("APPSTORE_LAUNCHER_PYTHON", python())
        .env("APPSTORE_LAUNCHER_OFFLINE", "true")
        .kill_on_drop(true);
    for (name, value) in extra {
        command.env(name, value);
    }
    command
}

/// Runs the launcher to its end.
async fn launch(addr: SocketAddr, dirs: &Dirs, extra: &[(&str, &str)]) -> Output {
    let run = command(addr, dirs, extra).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the launcher should finish within 60 s")
        .unwrap()
}

fn log(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!("{stdout}{stderr}")
}

#[tokio::test]
async fn without_waved_the_start_fails_after_installing() {
    let store = Store::new(StatusCode::OK);
    let addr = serve(store.clone()).await;
    let dirs = Dirs::new();
    let token_file = dirs.path("identity/token");
    let token_var = ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap());
    let output = launch(addr, &dirs, &[token_var]).await;
    let log = log(&output);

    assert_eq!(output.status.code(), Some(1), "{log}");
    let phases = store.phases();
    let names: Vec<_> = phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["sourcing", "installing", "starting", "failed"],
        "{log}"
    );
    let reason = phases[3].1.as_deref().unwrap_or_default();
    assert!(reason.contains("waved"), "{reason}");

    let auth = store.auth.lock().unwrap().clone();
    assert_eq!(auth.len(), 5, "one bundle download and four phase reports");
    let bearer = format!("Bearer {INSTANCE_TOKEN}");
    assert!(auth.iter().all(|a| *a == bearer), "{auth:?}");
    let forms = store.token_forms.lock().unwrap().clone();
    let form = format!("grant_type=refresh_token&refresh_token={INSTANCE_TOKEN}");
    assert_eq!(forms, [form]);

    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), ACCESS_TOKEN);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    let app_py = std::fs::read(dirs.path("app/app.py")).unwrap();
    assert_eq!(app_py, b"from h2o_wave import main, app\n");
    let venvs: Vec<_> = std::fs::read_dir(dirs.path("venvs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    assert_eq!(venvs.len(), 1, "{venvs:?}");
    assert!(
        dirs.path("venvs")
            .join(&venvs[0])
            .join(".complete")
            .exists()
    );

    assert!(log.contains("[launcher] "), "{log}");
    assert!(
        !log.contains(INSTANCE_TOKEN),
        "the log shows the instance token: {log}"
    );
    assert!(
        !log.contains(ACCESS_TOKEN),
        "the log shows the access token: {log}"
    );
}

#[tokio::test]
async fn refused_bundle_download_fails() {
    let store = Store::new(StatusCode::UNAUTHORIZED);
    let addr = serve(store.clone()).await;
    let dirs = Dirs::new();
    let output = launch(addr, &dirs, &[]).await;
    let log = log(&output);

    assert_eq!(output.status.code(), Some(1), "{log}");
    let phases = store.phases();
    let names: Vec<_> = phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["sourcing", "failed"], "{log}");
    let reason = phases[1].1.as_deref().unwrap_or_default();
    assert!(reason.contains("401"), "{reason}");
    assert!(store.token_forms.lock().unwrap().is_empty());
}

#[tokio::test]
async fn missing_settings_exit_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_appstore-launcher"))
        .env_clear()
        .env("APPSTORE_LAUNCHER_URL", "http://127.0.0.1:9/")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is required"), "{stderr}");
}

/// A stand-in for waved: answers every GET with 200 on `H2O_WAVE_LISTEN`.
const FAKE_WAVED: &str = r#"
import http.server, os
host, port = os.environ["H2O_WAVE_LISTEN"].rsplit(":", 1)
with open(os.path.join(os.environ["HOME"], "waved.pid"), "w") as f:
    f.write(str(os.getpid()))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((host, int(port)), Handler)
print("fake waved serving", os.environ["H2O_WAVE_BASE_URL"], "from", os.getcwd(), flush=True)
server.serve_forever()
"#;

/// A stand-in for `wave run`: listens on the app port, says what it was given, and exits with
/// `FAKE_APP_EXIT` once probed if that is set.
const FAKE_WAVE: &str = r#"
import os, socket, sys, time
with open(os.path.join(os.environ["HOME"], "app.pid"), "w") as f:
    f.write(str(os.getpid()))
port = int(os.environ["H2O_WAVE_APP_ADDRESS"].rsplit(":", 1)[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
leaked = [n for n in os.environ if n.startswith("APPSTORE_LAUNCHER_")]
print("args", " ".join(sys.argv[1:]), flush=True)
print("cwd", os.getcwd(), flush=True)
print("venv", os.environ["VIRTUAL_ENV"], "autostart", os.environ["H2O_WAVE_NO_AUTOSTART"], flush=True)
print("launcher variables", len(leaked), "instance", os.environ["H2O_CLOUD_INSTANCE_ID"], flush=True)
print("an error line", file=sys.stderr, flush=True)
code = os.environ.get("FAKE_APP_EXIT")
if code:
    s.accept()
    time.sleep(0.3)
    sys.exit(int(code))
while True:
    time.sleep(1)
"#;

/// Builds the cached virtualenv with a first, failing start, then puts fake waved and wave
/// programs into it.
async fn fake_wave(addr: SocketAddr, dirs: &Dirs) {
    let output = launch(addr, dirs, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", log(&output));
    let venvs = dirs.path("venvs");
    let venv = std::fs::read_dir(&venvs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let python = python();
    for (path, script) in [("waved", FAKE_WAVED), ("bin/wave", FAKE_WAVE)] {
        let path = venv.join(path);
        std::fs::write(&path, format!("#!{python}\n{script}")).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, mode).unwrap();
    }
}

/// Whether the process whose pid is in the file `name` under `dirs` still exists.
fn alive(dirs: &Dirs, name: &str) -> bool {
    let pid: i32 = std::fs::read_to_string(dirs.path(name))
        .unwrap()
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    rustix::process::test_kill_process(pid).is_ok()
}

#[tokio::test]
async fn running_app_stops_on_sigterm() {
    let store = Store::with_tokens_for(StatusCode::OK, 2);
    let addr = serve(store.clone()).await;
    let dirs = Dirs::new();
    fake_wave(addr, &dirs).await;
    store.phases.lock().unwrap().clear();

    let token_file = dirs.path("token");
    let token_var = ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap());
    let child = command(addr, &dirs, &[token_var])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    let running = async {
        while store.phases().last().map(|(p, _)| p.as_str()) != Some("running") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let ran = tokio::time::timeout(Duration::from_secs(30), running).await;
    // Tokens living 2 s are refreshed every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the launcher should stop within 20 s")
        .unwrap();
    let log = log(&output);
    assert!(ran.is_ok(), "never running: {log}");

    assert_eq!(output.status.code(), Some(0), "{log}");
    let names: Vec<_> = store.phases().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        names,
        ["sourcing", "installing", "starting", "running"],
        "{log}"
    );
    let app_dir = dirs.path("app");
    let wanted = [
        "[waved] fake waved serving / from ".to_owned(),
        "[app] args run --no-reload --no-autostart app".to_owned(),
        format!("[app] cwd {}", app_dir.display()),
        "[app] launcher variables 0 instance inst-1".to_owned(),
        "[app] an error line".to_owned(),
        "[launcher] SIGTERM received".to_owned(),
    ];
    for line in wanted {
        assert!(log.contains(&line), "no `{line}` in: {log}");
    }
    assert!(!alive(&dirs, "waved.pid"), "waved is still running");
    assert!(!alive(&dirs, "app.pid"), "the app is still running");
    let fetched = store.token_forms.lock().unwrap().len();
    assert!(fetched >= 2, "the token was fetched {fetched} times");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), ACCESS_TOKEN);
}

#[tokio::test]
async fn app_exit_fails_the_instance() {
    let store = Store::new(StatusCode::OK);
    let addr = serve(store.clone()).await;
    let dirs = Dirs::new();
    fake_wave(addr, &dirs).await;
    store.phases.lock().unwrap().clear();

    let output = launch(addr, &dirs, &[("FAKE_APP_EXIT", "3")]).await;
    let log = log(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let phases = store.phases();
    let names: Vec<_> = phases.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["sourcing", "installing", "starting", "running", "failed"],
        "{log}"
    );
    assert_eq!(phases[4].1.as_deref(), Some("app exited with status 3"));
    assert!(log.contains("[launcher] using cached virtualenv"), "{log}");
    assert!(!alive(&dirs, "waved.pid"), "waved is still running");
}
