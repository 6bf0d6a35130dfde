//! The app's virtualenv, built once per interpreter, requirements and bundled wheels and shared
//! by every instance through a cache directory.
//!
//! Virtualenvs cannot be moved once built, so each one is built at its final place,
//! `<cache>/<key>`, by whoever holds the lock file `<cache>/<key>.lock`; the marker file
//! `.complete` is written last, so a directory without it is a build that did not finish.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::output::{pipe, say};
use crate::settings::Settings;

/// Marks a virtualenv whose build finished.
const COMPLETE: &str = ".complete";
/// Prints what identifies an interpreter: its version and its executable.
const IDENTIFY: &str = "import sys; print(sys.version); print(sys.executable)";

/// Why the virtualenv could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    /// The interpreter (or the installer) could not be run at all.
    #[error("cannot run {program}: {source}")]
    Run {
        program: String,
        #[source]
        source: io::Error,
    },
    /// The interpreter did not say what it is.
    #[error("{python} cannot report its version ({status})")]
    Identify { python: String, status: String },
    /// `python -m venv` failed.
    #[error("creating the virtualenv failed ({0})")]
    Create(String),
    /// The installer (pip or uv) failed.
    #[error("{installer} install failed ({status})")]
    Install {
        installer: &'static str,
        status: String,
    },
    /// Reading the bundle or writing the cache failed.
    #[error("virtualenv cache: {0}")]
    Io(#[from] io::Error),
}

/// What a virtualenv is built from, and so what names it in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The interpreter's `sys.version` and `sys.executable`, as it printed them.
    pub interpreter: Vec<u8>,
    /// The bundle's `requirements.txt`, if it has one.
    pub requirements: Option<Vec<u8>>,
    /// The wheels at the bundle root: file name and SHA-256, sorted by name.
    pub wheels: Wheels,
}

impl Inputs {
    /// Gathers the inputs for the bundle unpacked in `app_dir`.
    pub async fn gather(python: &str, app_dir: &Path) -> Result<Inputs, VenvError> {
        let output = Command::new(python)
            .args(["-c", IDENTIFY])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| VenvError::Run {
                program: python.to_owned(),
                source,
            })?;
        if !output.status.success() {
            let status = exit(output.status);
            let python = python.to_owned();
            return Err(VenvError::Identify { python, status });
        }
        let app_dir = app_dir.to_owned();
        let (requirements, wheels) = tokio::task::spawn_blocking(move || read_bundle(&app_dir))
            .await
            .map_err(io::Error::other)??;
        Ok(Inputs {
            interpreter: output.stdout,
            requirements,
            wheels,
        })
    }

    /// The cache key: hex SHA-256 over every input, each one tagged and length-prefixed.
    pub fn key(&self) -> String {
        let mut hash = Sha256::new();
        field(&mut hash, b"interpreter", &self.interpreter);
        if let Some(requirements) = &self.requirements {
            field(&mut hash, b"requirements", requirements);
        }
        for (name, digest) in &self.wheels {
            field(&mut hash, b"wheel", name.as_bytes());
            field(&mut hash, b"sha256", digest);
        }
        hex_simd::encode_to_string(hash.finalize(), hex_simd::AsciiCase::Lower)
    }

    /// Whether pip has anything to install.
    fn wants_packages(&self) -> bool {
        let listed = self.requirements.as_deref().is_some_and(|r| {
            String::from_utf8_lossy(r)
                .lines()
                .map(str::trim)
                .any(|l| !l.is_empty() && !l.starts_with('#'))
        });
        listed || !self.wheels.is_empty()
    }
}

/// Adds one tagged, length-prefixed field to `hash`.
fn field(hash: &mut Sha256, tag: &[u8], data: &[u8]) {
    hash.update(tag);
    hash.update((data.len() as u64).to_le_bytes());
    hash.update(data);
}

/// Wheel file names with their SHA-256, sorted by name.
type Wheels = Vec<(String, [u8; 32])>;

/// Reads `requirements.txt` and hashes the `*.whl` files at the root of `app_dir`.
fn read_bundle(app_dir: &Path) -> io::Result<(Option<Vec<u8>>, Wheels)> {
    let requirements = match fs::read(app_dir.join("requirements.txt")) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut wheels = Vec::new();
    for entry in fs::read_dir(app_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".whl") && entry.file_type()?.is_file() {
            wheels.push((name, sha256_of(&entry.path())?));
        }
    }
    wheels.sort();
    Ok((requirements, wheels))
}

/// The SHA-256 of a file's contents.
fn sha256_of(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hash.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hash.finalize().into())
}

/// Returns the virtualenv for the bundle in `app_dir`, building it if the cache lacks it.
pub async fn ensure(settings: &Settings, app_dir: &Path) -> Result<PathBuf, VenvError> {
    let inputs = Inputs::gather(&settings.python, app_dir).await?;
    let key = inputs.key();
    let cache = &settings.venv_cache;
    fs::create_dir_all(cache)?;
    let venv = cache.join(&key);
    if venv.join(COMPLETE).exists() {
        say(format_args!("using cached virtualenv {key}"));
        return Ok(venv);
    }
    let _lock = lock(cache.join(format!("{key}.lock"))).await?;
    if venv.join(COMPLETE).exists() {
        say(format_args!("using virtualenv {key}, built meanwhile"));
        return Ok(venv);
    }
    if fs::symlink_metadata(&venv).is_ok() {
        say(format_args!("removing unfinished virtualenv {key}"));
        fs::remove_dir_all(&venv)?;
    }
    say(format_args!("building virtualenv {key}"));
    if let Err(e) = build(settings, app_dir, &venv, &inputs).await {
        // Best effort: whoever builds next removes it anyway.
        let _ = fs::remove_dir_all(&venv);
        return Err(e);
    }
    fs::write(venv.join(COMPLETE), b"")?;
    Ok(venv)
}

/// Takes the exclusive lock at `path`, waiting for whoever holds it.
async fn lock(path: PathBuf) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(TryLockError::WouldBlock) => {
            say("waiting for another launcher building the same virtualenv");
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(io::Error::other)?
}

/// Creates the virtualenv at `venv` and installs the bundle's packages into it.
async fn build(
    settings: &Settings,
    app_dir: &Path,
    venv: &Path,
    inputs: &Inputs,
) -> Result<(), VenvError> {
    let python = &settings.python;
    let mut create = Command::new(python);
    create.args(["-m", "venv", "--without-pip"]).arg(venv);
    let status = run_logged(create, python).await?;
    if !status.success() {
        return Err(VenvError::Create(exit(status)));
    }
    if !inputs.wants_packages() {
        say("no packages to install");
        return Ok(());
    }
    let (program, args, installer) = match &settings.uv {
        Some(uv) => (
            uv.as_os_str(),
            uv_args(settings, app_dir, venv, inputs),
            "uv pip",
        ),
        None => (
            python.as_ref(),
            pip_args(settings, app_dir, venv, inputs),
            "pip",
        ),
    };
    let mut install = Command::new(program);
    install.current_dir(app_dir).args(args);
    let status = run_logged(install, &program.to_string_lossy()).await?;
    if !status.success() {
        return Err(VenvError::Install {
            installer,
            status: exit(status),
        });
    }
    Ok(())
}

/// The arguments of `python` that install the bundle's packages into `venv` with pip.
fn pip_args(settings: &Settings, app_dir: &Path, venv: &Path, inputs: &Inputs) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-m", "pip", "--python"].map(OsString::from).into();
    args.push(venv.join("bin/python").into());
    let fixed = ["install", "--disable-pip-version-check", "--no-input"];
    args.extend(fixed.map(OsString::from));
    if let Some(cache) = &settings.pip_cache {
        args.extend(["--cache-dir".into(), cache.into()]);
    }
    args.extend(sources(settings, app_dir, inputs));
    args
}

/// The arguments of `uv` that install the bundle's packages into `venv`: no configuration
/// files (a bundle's `uv.toml` or `pyproject.toml` must not choose the index), bytecode
/// compiled at install as pip does (so no start compiles it again), uv's cache beside pip's.
fn uv_args(settings: &Settings, app_dir: &Path, venv: &Path, inputs: &Inputs) -> Vec<OsString> {
    let fixed = [
        "pip",
        "install",
        "--no-config",
        "--no-progress",
        "--compile-bytecode",
    ];
    let mut args: Vec<OsString> = fixed.map(OsString::from).into();
    args.extend(["--python".into(), venv.join("bin/python").into()]);
    if let Some(cache) = &settings.pip_cache {
        args.extend(["--cache-dir".into(), cache.join("uv").into()]);
    }
    args.extend(sources(settings, app_dir, inputs));
    args
}

/// Where packages come from and which to install, in the flags pip and uv share.
fn sources(settings: &Settings, app_dir: &Path, inputs: &Inputs) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if settings.offline {
        args.push("--no-index".into());
    }
    if let Some(wheelhouse) = &settings.wheelhouse {
        args.extend(["--find-links".into(), wheelhouse.into()]);
    }
    if settings.offline {
        args.extend(["--find-links".into(), app_dir.into()]);
    }
    if inputs.requirements.is_some() {
        args.extend(["-r".into(), app_dir.join("requirements.txt").into()]);
    }
    for (name, _) in &inputs.wheels {
        args.push(app_dir.join(name).into());
    }
    args
}

/// Runs `command` (the program `program`) with its output in the log, prefixed `[pip] `;
/// returns how it ended.
async fn run_logged(mut command: Command, program: &str) -> Result<ExitStatus, VenvError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VenvError::Run {
            program: program.to_owned(),
            source,
        })?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let drain = async {
        if let Some(out) = stdout {
            pipe("[pip] ", out).await;
        }
    };
    let drain_err = async {
        if let Some(err) = stderr {
            pipe("[pip] ", err).await;
        }
    };
    let (status, (), ()) = tokio::join!(child.wait(), drain, drain_err);
    Ok(status?)
}

/// How a process ended, as in `exit 1` or `signal 9`.
fn exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            interpreter: b"3.12.3 (main)\n/usr/bin/python3.12\n".to_vec(),
            requirements: Some(b"h2o-wave==1.8.16\n".to_vec()),
            wheels: vec![("extra-1.0-py3-none-any.whl".to_owned(), [7; 32])],
        }
    }

    #[test]
    fn key_is_stable() {
        assert_eq!(inputs().key(), inputs().key());
        assert_eq!(inputs().key().len(), 64);
        assert!(inputs().key().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn key_follows_every_input() {
        let base = inputs().key();
        let mut changed = inputs();
        changed.requirements = Some(b"h2o-wave==1.8.17\n".to_vec());
        assert_ne!(changed.key(), base);
        changed.requirements = None;
        assert_ne!(changed.key(), base);
        let mut changed = inputs();
        changed.interpreter = b"3.12.4 (main)\n/usr/bin/python3.12\n".to_vec();
        assert_ne!(changed.key(), base);
        let mut changed = inputs();
        changed.wheels[0].1 = [8; 32];
        assert_ne!(changed.key(), base);
        changed.wheels.clear();
        assert_ne!(changed.key(), base);
        // Fields cannot run into each other.
        let mut shifted = inputs();
        shifted.interpreter.push(b'h');
        shifted.requirements = Some(b"2o-wave==1.8.16\n".to_vec());
        assert_ne!(shifted.key(), base);
    }

    #[tokio::test]
    async fn gathers_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("requirements.txt"), "numpy\n").unwrap();
        fs::write(dir.path().join("b-1.0-py3-none-any.whl"), "wheel b").unwrap();
        fs::write(dir.path().join("a-1.0-py3-none-any.whl"), "wheel a").unwrap();
        fs::create_dir(dir.path().join("dir.whl")).unwrap();
        fs::write(dir.path().join("app.py"), "").unwrap();
        let (requirements, wheels) = read_bundle(dir.path()).unwrap();
        assert_eq!(requirements.as_deref(), Some(&b"numpy\n"[..]));
        let names: Vec<_> = wheels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a-1.0-py3-none-any.whl", "b-1.0-py3-none-any.whl"]);
        assert_eq!(wheels[0].1, <[u8; 32]>::from(Sha256::digest(b"wheel a")));

        let first = Inputs::gather("python3", dir.path()).await.unwrap();
        assert_eq!(
            first.key(),
            Inputs::gather("python3", dir.path()).await.unwrap().key()
        );
        fs::write(dir.path().join("requirements.txt"), "pandas\n").unwrap();
        let second = Inputs::gather("python3", dir.path()).await.unwrap();
        assert_ne!(first.key(), second.key());
    }

    #[test]
    fn empty_requirements_install_nothing() {
        let mut none = inputs();
        none.wheels.clear();
        none.requirements = Some(b"\n# only comments\n   \n".to_vec());
        assert!(!none.wants_packages());
        none.requirements = None;
        assert!(!none.wants_packages());
        assert!(inputs().wants_packages());
    }

    #[test]
    fn pip_arguments() {
        let settings = crate::settings::example(&[
            ("APPSTORE_LAUNCHER_PIP_CACHE", "/pip"),
            ("APPSTORE_LAUNCHER_WHEELHOUSE", "/wheels"),
            ("APPSTORE_LAUNCHER_OFFLINE", "true"),
        ]);
        let args = pip_args(
            &settings,
            Path::new("/app"),
            Path::new("/venvs/k"),
            &inputs(),
        );
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        let want = [
            "-m",
            "pip",
            "--python",
            "/venvs/k/bin/python",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--cache-dir",
            "/pip",
            "--no-index",
            "--find-links",
            "/wheels",
            "--find-links",
            "/app",
            "-r",
            "/app/requirements.txt",
            "/app/extra-1.0-py3-none-any.whl",
        ];
        assert_eq!(args, want);
    }

    #[test]
    fn uv_arguments() {
        let settings = crate::settings::example(&[
            ("APPSTORE_LAUNCHER_PIP_CACHE", "/pip"),
            ("APPSTORE_LAUNCHER_UV", "/opt/uv"),
        ]);
        let args = uv_args(
            &settings,
            Path::new("/app"),
            Path::new("/venvs/k"),
            &inputs(),
        );
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        let want = [
            "pip",
            "install",
            "--no-config",
            "--no-progress",
            "--compile-bytecode",
            "--python",
            "/venvs/k/bin/python",
            "--cache-dir",
            "/pip/uv",
            "-r",
            "/app/requirements.txt",
            "/app/extra-1.0-py3-none-any.whl",
        ];
        assert_eq!(args, want);
    }

    /// An app directory holding `requirements`, and settings caching virtualenvs beside it.
    fn app_with(requirements: &str) -> (tempfile::TempDir, Settings) {
        let root = tempfile::tempdir().unwrap();
        let app = root.path().join("app");
        fs::create_dir(&app).unwrap();
        fs::write(app.join("requirements.txt"), requirements).unwrap();
        let cache = root.path().join("venvs");
        let settings = crate::settings::example(&[
            ("APPSTORE_LAUNCHER_APP_DIR", app.to_str().unwrap()),
            ("APPSTORE_LAUNCHER_VENV_CACHE", cache.to_str().unwrap()),
            ("APPSTORE_LAUNCHER_OFFLINE", "true"),
        ]);
        (root, settings)
    }

    #[tokio::test]
    async fn builds_once_then_reuses() {
        let (_root, settings) = app_with("# nothing\n");
        let venv = ensure(&settings, &settings.app_dir).await.unwrap();
        assert!(venv.join(COMPLETE).is_file());
        assert!(venv.join("bin/python").exists());
        assert!(venv.starts_with(&settings.venv_cache));
        fs::write(venv.join("marker"), "").unwrap();
        let again = ensure(&settings, &settings.app_dir).await.unwrap();
        assert_eq!(again, venv);
        assert!(
            venv.join("marker").exists(),
            "the cached virtualenv is used as is"
        );
    }

    #[tokio::test]
    async fn unfinished_build_is_redone() {
        let (_root, settings) = app_with("");
        let key = Inputs::gather("python3", &settings.app_dir)
            .await
            .unwrap()
            .key();
        let venv = settings.venv_cache.join(&key);
        fs::create_dir_all(&venv).unwrap();
        fs::write(venv.join("leftover"), "").unwrap();
        assert_eq!(ensure(&settings, &settings.app_dir).await.unwrap(), venv);
        assert!(!venv.join("leftover").exists());
        assert!(venv.join(COMPLETE).is_file());
    }

    #[tokio::test]
    async fn pip_failure_is_reported() {
        let (_root, settings) = app_with("no-such-package-for-the-launcher-test\n");
        let e = ensure(&settings, &settings.app_dir).await.unwrap_err();
        assert_eq!(e.to_string(), "pip install failed (exit 1)");
        let left: Vec<_> = fs::read_dir(&settings.venv_cache).unwrap().collect();
        assert_eq!(left.len(), 1, "only the lock file is left");
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(exit(ExitStatus::from_raw(1 << 8)), "exit 1");
        assert_eq!(exit(ExitStatus::from_raw(9)), "signal 9");
    }
}
