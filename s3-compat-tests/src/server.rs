//! Starts and stops the real `drive` binary on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::Ctx;

/// Root credentials every test server uses.
pub const ACCESS_KEY: &str = "compat-access";
/// Root secret every test server uses.
pub const SECRET_KEY: &str = "compat-secret-key";

/// A running `drive serve`.
pub struct DriveProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The cloud backend's root prefix, when Drive runs on one.
    pub root_prefix: Option<String>,
    /// Whether the backend stores keys with control characters.
    pub control_chars_in_keys: bool,
    _temp: Option<tempfile::TempDir>,
}

/// The `drive` binary: `$DRIVE_BIN`, or `drive` next to the test's own target directory.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DRIVE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test> → target/<profile>/drive
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    profile_dir.join("drive")
}

impl DriveProcess {
    /// Starts Drive with a fresh temporary data directory.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut d = Self::start_in(temp.path(), &[]);
        d._temp = Some(temp);
        d
    }

    /// Starts Drive on `data_dir` with extra flags.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("DRIVE_ROOT_ACCESS_KEY", ACCESS_KEY)
            .env("DRIVE_ROOT_SECRET_KEY", SECRET_KEY)
            .env(
                "DRIVE_LOG",
                std::env::var("DRIVE_LOG").unwrap_or_else(|_| "warn,s3s=off".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (build it with `cargo build -p drive`)",
                    binary().display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(endpoint) = line.strip_prefix("Drive ready on ") {
                    let _ = tx.send(endpoint.trim().to_owned());
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("drive did not become ready within 30 s")
            });
        Self {
            child: Some(child),
            endpoint,
            data_dir: data_dir.to_owned(),
            root_prefix: None,
            control_chars_in_keys: true,
            _temp: None,
        }
    }

    /// Keeps `temp` (the data directory) alive as long as the server.
    #[must_use]
    pub fn keeping(mut self, temp: tempfile::TempDir) -> Self {
        self._temp = Some(temp);
        self
    }

    /// Runs `drive serve` with settings it must refuse, and returns its exit status and what
    /// it printed on stderr. Panics if it becomes ready or runs for more than 60 s.
    pub fn start_failing(extra: &[String]) -> (ExitStatus, String) {
        let data = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .env("DRIVE_ROOT_ACCESS_KEY", ACCESS_KEY)
            .env("DRIVE_ROOT_SECRET_KEY", SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start drive");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for drive") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("drive kept running with settings it should refuse");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
            .expect("read stderr");
        (status, stderr)
    }

    /// A test context with the root credentials.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            root_prefix: self.root_prefix.clone(),
            control_chars_in_keys: self.control_chars_in_keys,
            ..Ctx::new(&self.endpoint, ACCESS_KEY, SECRET_KEY)
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Peak resident memory of the server so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().expect("wait for drive")
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for DriveProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
