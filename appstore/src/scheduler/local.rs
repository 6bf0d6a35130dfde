//! The local runtime, the embedded default: each instance is a launcher process (in its own
//! process group, with a cleared environment) supervised by the App Store and restarted with
//! backoff when it fails. Everything about an instance lives in its directory
//! (`spec.json`, `state.json`, `current.log`, `previous.log`, `app/`, `data/`, `volume/`), so
//! an App Store that restarts adopts the launchers still running and restarts the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::limits;
use super::runtime::{InstanceSpec, LogLines, Phase, Runtime, RuntimeError, Status, Volumes};

/// How long a launcher may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Longest pause between restarts of a failing launcher.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Environment variables of the App Store an instance inherits; everything else is cleared.
const INHERITED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "PIP_INDEX_URL",
];

/// How launchers are started.
#[derive(Debug, Clone)]
pub struct LauncherSettings {
    /// The launcher program.
    pub program: PathBuf,
    /// The App Store's URL as launchers reach it.
    pub appstore_url: String,
    /// Python for virtualenvs.
    pub python: PathBuf,
    /// pip's cache.
    pub pip_cache: PathBuf,
    /// Shared virtualenvs.
    pub venv_cache: PathBuf,
    /// Extra wheels.
    pub wheelhouse: Option<PathBuf>,
    /// Install only from local wheels.
    pub offline: bool,
    /// uv, to install packages instead of pip.
    pub uv: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Desired {
    Run,
    Suspend,
    Terminate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    phase: Phase,
    reason: Option<String>,
    restarts: u32,
    last_failure: Option<String>,
    pid: Option<u32>,
    wave_port: Option<u16>,
    suspended: bool,
}

struct Local {
    id: String,
    dir: PathBuf,
    spec: InstanceSpec,
    state: Mutex<State>,
    desired: watch::Sender<Desired>,
    /// Counts launcher starts, so a follower of the log knows when its run ended.
    runs: watch::Sender<u64>,
    supervisor: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Local {
    fn update(&self, change: impl FnOnce(&mut State)) {
        let state = {
            let mut s = self.state.lock().expect("state lock");
            change(&mut s);
            s.clone()
        };
        if let Ok(text) = serde_json::to_string(&state) {
            let tmp = self.dir.join("state.json.tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(tmp, self.dir.join("state.json"));
            }
        }
    }

    fn snapshot(&self) -> State {
        self.state.lock().expect("state lock").clone()
    }
}

/// Instances as supervised child processes of this App Store.
pub struct LocalRuntime {
    root: PathBuf,
    settings: Arc<LauncherSettings>,
    instances: Mutex<HashMap<String, Arc<Local>>>,
}

impl LocalRuntime {
    /// Opens the runtime in `root`, adopting the launchers of a previous App Store process
    /// that still run and restarting those that should run but do not.
    /// Paths are made absolute and Python resolved to its interpreter: launchers run in their
    /// instance's directory with another HOME.
    pub fn open(root: PathBuf, mut settings: LauncherSettings) -> std::io::Result<Self> {
        let root = absolute_dir(&root)?;
        settings.pip_cache = absolute_dir(&settings.pip_cache)?;
        settings.venv_cache = absolute_dir(&settings.venv_cache)?;
        settings.python = real_python(&settings.python);
        if let Some(wheelhouse) = &settings.wheelhouse {
            settings.wheelhouse = Some(std::path::absolute(wheelhouse)?);
        }
        if let Some(uv) = settings.uv.as_ref().filter(|p| p.components().count() > 1) {
            settings.uv = Some(std::path::absolute(uv)?);
        }
        if settings.program.components().count() > 1 {
            settings.program = std::path::absolute(&settings.program)?;
        }
        let runtime = Self {
            root,
            settings: Arc::new(settings),
            instances: Mutex::new(HashMap::new()),
        };
        for entry in std::fs::read_dir(&runtime.root)? {
            let dir = entry?.path();
            match runtime.adopt(&dir) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot adopt an instance")
                }
            }
        }
        Ok(runtime)
    }

    fn adopt(&self, dir: &Path) -> Result<(), RuntimeError> {
        let corrupt = || RuntimeError::Corrupt(dir.display().to_string());
        let spec: InstanceSpec = serde_json::from_slice(&std::fs::read(dir.join("spec.json"))?)
            .map_err(|_| corrupt())?;
        let state: State = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)
            .map_err(|_| corrupt())?;
        let live = state.pid.filter(|pid| runs_instance(*pid, &spec.id));
        let desired = if state.suspended {
            Desired::Suspend
        } else {
            Desired::Run
        };
        let local = self.register(spec, state, desired);
        if desired == Desired::Run {
            if live.is_some() {
                tracing::info!(instance = %local.id, "adopted a running instance");
            }
            self.supervise(&local, live);
        }
        Ok(())
    }

    fn register(&self, spec: InstanceSpec, state: State, desired: Desired) -> Arc<Local> {
        let local = Arc::new(Local {
            id: spec.id.clone(),
            dir: self.root.join(&spec.id),
            spec,
            state: Mutex::new(state),
            desired: watch::Sender::new(desired),
            runs: watch::Sender::new(0),
            supervisor: tokio::sync::Mutex::new(None),
        });
        self.instances
            .lock()
            .expect("instances lock")
            .insert(local.id.clone(), Arc::clone(&local));
        local
    }

    fn get(&self, id: &str) -> Option<Arc<Local>> {
        self.instances
            .lock()
            .expect("instances lock")
            .get(id)
            .cloned()
    }

    fn supervise(&self, local: &Arc<Local>, adopted: Option<u32>) {
        let task = tokio::spawn(supervise(
            Arc::clone(local),
            Arc::clone(&self.settings),
            adopted,
        ));
        if let Ok(mut slot) = local.supervisor.try_lock() {
            *slot = Some(task);
        }
    }

    /// Sets what `local` should do and waits for its supervisor to get there.
    async fn drive(&self, local: &Local, desired: Desired) {
        local.desired.send_replace(desired);
        let task = local.supervisor.lock().await.take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The interpreter `python` runs, as an absolute path: launchers run with another HOME and a
/// cleared environment, where version-manager shims (pyenv) no longer find it.
fn real_python(python: &Path) -> PathBuf {
    let out = std::process::Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let path = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if path.is_empty() {
                python.to_owned()
            } else {
                PathBuf::from(path)
            }
        }
        _ => {
            tracing::warn!(python = %python.display(), "cannot run Python; instances will fail to install");
            python.to_owned()
        }
    }
}

/// `dir`, created if missing, as an absolute path.
fn absolute_dir(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::canonicalize(dir)
}

/// Whether `pid` is a launcher of instance `id` (its environment names the instance).
fn runs_instance(pid: u32, id: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|b| *b == 0)
            .any(|var| var == format!("H2O_CLOUD_INSTANCE_ID={id}").as_bytes())
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// A launcher process: a child of this App Store, or adopted from a previous one.
enum Launcher {
    Child(tokio::process::Child),
    Adopted(u32),
}

impl Launcher {
    fn pid(&self) -> Option<u32> {
        match self {
            Launcher::Child(c) => c.id(),
            Launcher::Adopted(pid) => Some(*pid),
        }
    }

    async fn wait(&mut self, id: &str) -> String {
        match self {
            Launcher::Child(c) => match c.wait().await {
                Ok(status) => format!("launcher exited ({status})"),
                Err(e) => format!("launcher could not be waited for: {e}"),
            },
            Launcher::Adopted(pid) => {
                while runs_instance(*pid, id) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                "launcher exited".to_owned()
            }
        }
    }
}

fn start_launcher(local: &Local, settings: &LauncherSettings) -> std::io::Result<Launcher> {
    let dir = &local.dir;
    for sub in ["app", "data", "volume"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let current = dir.join("current.log");
    if current.exists() {
        std::fs::rename(&current, dir.join("previous.log"))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&current)?;
    let wave_port = free_port()?;
    let app_port = free_port()?;
    let mut command = tokio::process::Command::new(&settings.program);
    command
        .env_clear()
        .envs(
            INHERITED
                .iter()
                .filter_map(|k| Some((*k, std::env::var_os(k)?))),
        )
        .envs(&local.spec.env)
        .env("HOME", dir.join("data"))
        .env("APPSTORE_LAUNCHER_URL", &settings.appstore_url)
        .env("APPSTORE_LAUNCHER_MODULE", &local.spec.module)
        .env("APPSTORE_LAUNCHER_APP_DIR", dir.join("app"))
        .env("APPSTORE_LAUNCHER_DATA_DIR", dir.join("data"))
        .env("APPSTORE_LAUNCHER_VENV_CACHE", &settings.venv_cache)
        .env("APPSTORE_LAUNCHER_PIP_CACHE", &settings.pip_cache)
        .env("APPSTORE_LAUNCHER_PYTHON", &settings.python)
        .env("APPSTORE_LAUNCHER_WAVE_PORT", wave_port.to_string())
        .env("APPSTORE_LAUNCHER_APP_PORT", app_port.to_string())
        .env("APPSTORE_LAUNCHER_OFFLINE", settings.offline.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    if let Some(wheelhouse) = &settings.wheelhouse {
        command.env("APPSTORE_LAUNCHER_WHEELHOUSE", wheelhouse);
    }
    if let Some(uv) = &settings.uv {
        command.env("APPSTORE_LAUNCHER_UV", uv);
    }
    let child = command.spawn()?;
    let pid = child.id();
    if let Some(pid) = pid {
        let note = limits::limit_memory(&local.id, pid, local.spec.memory_limit);
        append_log(dir, &format!("[appstore] {note}\n"));
    }
    local.update(|s| {
        s.pid = pid;
        s.wave_port = Some(wave_port);
        s.phase = Phase::Pending;
        s.reason = None;
    });
    local.runs.send_modify(|n| *n += 1);
    Ok(Launcher::Child(child))
}

fn append_log(dir: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("current.log"))
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Runs the launcher of `local` while it should run, restarting it with backoff.
async fn supervise(local: Arc<Local>, settings: Arc<LauncherSettings>, adopted: Option<u32>) {
    let mut desired = local.desired.subscribe();
    let mut adopted = adopted;
    let mut backoff = Duration::from_secs(1);
    while *desired.borrow() == Desired::Run {
        let mut launcher = match adopted.take() {
            Some(pid) => Launcher::Adopted(pid),
            None => match start_launcher(&local, &settings) {
                Ok(l) => l,
                Err(e) => {
                    let why = format!(
                        "cannot start the launcher {}: {e}",
                        settings.program.display()
                    );
                    tracing::error!(instance = %local.id, "{why}");
                    local.update(|s| {
                        s.phase = Phase::Failed;
                        s.last_failure = Some(why.clone());
                        s.reason = Some(why);
                    });
                    pause(&mut desired, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let started = Instant::now();
        let pid = launcher.pid();
        let stopped = tokio::select! {
            why = launcher.wait(&local.id) => Err(why),
            _ = desired.wait_for(|d| *d != Desired::Run) => Ok(()),
        };
        match stopped {
            Ok(()) => {
                if let Some(pid) = pid {
                    stop(&mut launcher, pid, &local.id).await;
                }
            }
            Err(why) => {
                if let Some(pid) = pid {
                    signal_group(pid, rustix::process::Signal::KILL);
                }
                if *desired.borrow() != Desired::Run {
                    break;
                }
                tracing::warn!(instance = %local.id, "{why}; restarting");
                local.update(|s| {
                    s.phase = Phase::Failed;
                    s.restarts += 1;
                    let reported = s.reason.take().filter(|_| s.last_failure.is_some());
                    s.last_failure = Some(reported.map_or(why.clone(), |r| format!("{r}; {why}")));
                    s.reason = Some(why);
                    s.pid = None;
                });
                if started.elapsed() > HEALTHY_RUN {
                    backoff = Duration::from_secs(1);
                }
                pause(&mut desired, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    limits::release(&local.id);
    local.update(|s| {
        s.pid = None;
        s.wave_port = None;
        if *desired.borrow() == Desired::Suspend {
            s.phase = Phase::Suspended;
            s.reason = None;
        }
    });
    local.runs.send_modify(|n| *n += 1);
}

async fn pause(desired: &mut watch::Receiver<Desired>, time: Duration) {
    tokio::select! {
        () = tokio::time::sleep(time) => {}
        _ = desired.wait_for(|d| *d != Desired::Run) => {}
    }
}

/// SIGTERM to the launcher's process group, SIGKILL after the grace period.
async fn stop(launcher: &mut Launcher, pid: u32, id: &str) {
    signal_group(pid, rustix::process::Signal::TERM);
    if tokio::time::timeout(STOP_GRACE, launcher.wait(id))
        .await
        .is_err()
    {
        tracing::warn!(instance = %id, "the launcher ignored SIGTERM; killing it");
    }
    signal_group(pid, rustix::process::Signal::KILL);
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        let dir = self.root.join(&spec.id);
        std::fs::create_dir_all(&dir)?;
        let text =
            serde_json::to_string(&spec).map_err(|_| RuntimeError::Corrupt(spec.id.clone()))?;
        shared_identity::write_private(&dir.join("spec.json"), &text)?;
        let state = State {
            phase: Phase::Pending,
            reason: None,
            restarts: 0,
            last_failure: None,
            pid: None,
            wave_port: None,
            suspended: false,
        };
        let local = self.register(spec, state, Desired::Run);
        local.update(|_| {});
        self.supervise(&local, None);
        Ok(())
    }

    async fn status(&self, id: &str) -> Option<Status> {
        let s = self.get(id)?.snapshot();
        Some(Status {
            phase: if s.suspended {
                Phase::Suspended
            } else {
                s.phase
            },
            reason: s.reason,
            restarts: s.restarts,
            last_failure: s.last_failure,
        })
    }

    async fn endpoint(&self, id: &str) -> Option<String> {
        let s = self.get(id)?.snapshot();
        (s.phase == Phase::Running && !s.suspended)
            .then_some(())
            .and(s.wave_port)
            .map(|port| format!("127.0.0.1:{port}"))
    }

    async fn report(&self, id: &str, phase: Phase, reason: Option<String>) {
        let Some(local) = self.get(id) else { return };
        if *local.desired.borrow() != Desired::Run {
            return;
        }
        local.update(|s| {
            s.phase = phase;
            if phase == Phase::Failed {
                s.last_failure.clone_from(&reason);
            }
            s.reason = reason;
        });
    }

    async fn suspend(&self, id: &str) -> Result<(), RuntimeError> {
        let local = self
            .get(id)
            .ok_or_else(|| RuntimeError::Unknown(id.to_owned()))?;
        local.update(|s| s.suspended = true);
        self.drive(&local, Desired::Suspend).await;
        Ok(())
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let local = self
            .get(id)
            .ok_or_else(|| RuntimeError::Unknown(id.to_owned()))?;
        if *local.desired.borrow() == Desired::Run {
            return Ok(());
        }
        local.update(|s| {
            s.suspended = false;
            s.phase = Phase::Pending;
        });
        local.desired.send_replace(Desired::Run);
        self.supervise(&local, None);
        Ok(())
    }

    async fn terminate(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(local) = self.get(id) else {
            return Ok(());
        };
        self.drive(&local, Desired::Terminate).await;
        self.instances.lock().expect("instances lock").remove(id);
        match tokio::fs::remove_dir_all(&local.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn logs(&self, id: &str, previous: bool, follow: bool) -> Result<LogLines, RuntimeError> {
        let local = self
            .get(id)
            .ok_or_else(|| RuntimeError::Unknown(id.to_owned()))?;
        let name = if previous {
            "previous.log"
        } else {
            "current.log"
        };
        let file = match tokio::fs::File::open(local.dir.join(name)).await {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let mut runs = local.runs.subscribe();
        runs.mark_unchanged();
        let follow = follow && !previous;
        let tail = Tail {
            file,
            runs,
            follow,
            buf: vec![0; 16 * 1024],
        };
        Ok(Box::pin(futures::stream::unfold(tail, Tail::next)))
    }

    fn volume_dir(&self, id: &str, _: &Volumes) -> Option<PathBuf> {
        Some(self.root.join(id).join("volume"))
    }

    fn token_file(&self, id: &str) -> PathBuf {
        self.root.join(id).join("data").join("web-identity-token")
    }
}

/// Reads a log file to its end, and while following, what is appended until the run ends.
struct Tail {
    file: Option<tokio::fs::File>,
    runs: watch::Receiver<u64>,
    follow: bool,
    buf: Vec<u8>,
}

impl Tail {
    async fn next(mut self) -> Option<(std::io::Result<bytes::Bytes>, Self)> {
        loop {
            let file = self.file.as_mut()?;
            match file.read(&mut self.buf).await {
                Ok(0) if self.follow && !self.runs.has_changed().unwrap_or(true) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(0) => return None,
                Ok(n) => {
                    let chunk = bytes::Bytes::copy_from_slice(&self.buf[..n]);
                    return Some((Ok(chunk), self));
                }
                Err(e) => {
                    self.file = None;
                    return Some((Err(e), self));
                }
            }
        }
    }
}
