//! Wave: the waved server and the app, both run from the virtualenv (as the h2o-wave wheel
//! lays them out: `<venv>/waved`, `<venv>/www`, `<venv>/bin/wave`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::settings::{LAUNCHER_PREFIX, Settings};

/// Pause between two readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why waved or the app could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WaveError {
    /// The virtualenv has no waved.
    #[error("waved not found at {}: does requirements.txt list h2o-wave?", .0.display())]
    MissingWaved(PathBuf),
    /// The virtualenv has no `wave` command.
    #[error("the wave command not found at {}: does requirements.txt list h2o-wave?", .0.display())]
    MissingWave(PathBuf),
    /// waved's data directory cannot be created.
    #[error("cannot create the waved data directory {}: {source}", .path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// No random bytes for the access keys.
    #[error("cannot generate access keys: {0}")]
    Random(getrandom::Error),
}

/// The key pair waved and the app authenticate each other with.
pub struct AccessKeys {
    id: String,
    secret: String,
}

impl AccessKeys {
    /// A fresh random pair: a 20-character id and a 40-character secret, both alphanumeric.
    pub fn generate() -> Result<AccessKeys, WaveError> {
        Ok(AccessKeys {
            id: alphanumeric(20).map_err(WaveError::Random)?,
            secret: alphanumeric(40).map_err(WaveError::Random)?,
        })
    }
}

/// A random string of `len` ASCII letters and digits, each equally likely.
fn alphanumeric(len: usize) -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut bytes = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut bytes)?;
        // 248 is the largest multiple of 62 that fits a byte: higher bytes would skew the odds.
        let usable = bytes.iter().filter(|&&b| b < 248);
        out.extend(usable.map(|&b| char::from(ALPHABET[usize::from(b % 62)])));
        out.truncate(len);
    }
    Ok(out)
}

/// Environment variables, in order: later ones win.
type Env = Vec<(OsString, OsString)>;

/// The launcher's environment as the children get it: without the launcher's own variables.
pub fn inherited(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Env {
    let prefix = LAUNCHER_PREFIX.as_bytes();
    vars.into_iter()
        .filter(|(name, _)| !name.as_encoded_bytes().starts_with(prefix))
        .collect()
}

/// Appends `name=value` to `env`.
fn set(env: &mut Env, name: &str, value: impl AsRef<OsStr>) {
    env.push((name.into(), value.as_ref().to_owned()));
}

/// waved's environment.
fn waved_env(settings: &Settings, keys: &AccessKeys, data: &Path, mut env: Env) -> Env {
    let listen = format!("127.0.0.1:{}", settings.wave_port);
    set(&mut env, "H2O_WAVE_LISTEN", listen);
    set(&mut env, "H2O_WAVE_BASE_URL", &settings.base_url);
    set(&mut env, "H2O_WAVE_DATA_DIR", data);
    set(&mut env, "H2O_WAVE_ACCESS_KEY_ID", &keys.id);
    set(&mut env, "H2O_WAVE_ACCESS_KEY_SECRET", &keys.secret);
    env
}

/// The app's environment.
fn app_env(settings: &Settings, keys: &AccessKeys, venv: &Path, mut env: Env) -> Env {
    let path = env.iter().rev().find(|(name, _)| name == "PATH");
    let mut search = venv.join("bin").into_os_string();
    if let Some((_, path)) = path.filter(|(_, path)| !path.is_empty()) {
        search.push(":");
        search.push(path);
    }
    let wave = format!("http://127.0.0.1:{}", settings.wave_port);
    let app = format!("http://127.0.0.1:{}", settings.app_port);
    set(&mut env, "H2O_WAVE_ADDRESS", wave);
    set(&mut env, "H2O_WAVE_APP_ADDRESS", app);
    set(&mut env, "H2O_WAVE_BASE_URL", &settings.base_url);
    set(&mut env, "H2O_WAVE_NO_AUTOSTART", "true");
    set(&mut env, "H2O_WAVE_ACCESS_KEY_ID", &keys.id);
    set(&mut env, "H2O_WAVE_ACCESS_KEY_SECRET", &keys.secret);
    set(&mut env, "VIRTUAL_ENV", venv);
    set(&mut env, "PATH", search);
    env
}

/// Starts waved from `venv`, its output piped.
pub fn spawn_waved(
    settings: &Settings,
    venv: &Path,
    keys: &AccessKeys,
) -> Result<Child, WaveError> {
    let program = venv.join("waved");
    if !program.is_file() {
        return Err(WaveError::MissingWaved(program));
    }
    let data = settings.data_dir.join("wave");
    std::fs::create_dir_all(&data).map_err(|source| WaveError::DataDir {
        path: data.clone(),
        source,
    })?;
    let env = waved_env(settings, keys, &data, inherited(std::env::vars_os()));
    let mut command = Command::new(program);
    command.current_dir(venv).env_clear().envs(env);
    spawn(command, "waved")
}

/// Starts the app's module with `wave run` from `venv`, its output piped.
pub fn spawn_app(settings: &Settings, venv: &Path, keys: &AccessKeys) -> Result<Child, WaveError> {
    let program = venv.join("bin/wave");
    if !program.is_file() {
        return Err(WaveError::MissingWave(program));
    }
    let env = app_env(settings, keys, venv, inherited(std::env::vars_os()));
    let mut command = Command::new(program);
    command
        .args(["run", "--no-reload", "--no-autostart", &settings.module])
        .current_dir(&settings.app_dir)
        .env_clear()
        .envs(env);
    spawn(command, "the app")
}

/// Starts `command` in the launcher's process group, killed should the launcher let go of it.
fn spawn(mut command: Command, what: &'static str) -> Result<Child, WaveError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| WaveError::Spawn { what, source })
}

/// The client that probes waved: loopback only, redirects are answers too.
pub fn probe_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROBE_TIMEOUT)
        .build()
}

/// The address waved serves the app at.
pub fn waved_url(settings: &Settings) -> String {
    format!(
        "http://127.0.0.1:{}{}",
        settings.wave_port, settings.base_url
    )
}

/// Returns once `url` answers with a status below 500.
pub async fn wait_for_waved(client: &reqwest::Client, url: &str) {
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().as_u16() < 500
        {
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Returns once something accepts connections on the loopback `port`.
pub async fn wait_for_app(port: u16) {
    loop {
        let connect = TcpStream::connect(("127.0.0.1", port));
        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        crate::settings::example(&[("H2O_WAVE_BASE_URL", "/x/")])
    }

    fn launcher_env() -> Env {
        [
            ("APPSTORE_LAUNCHER_URL", "http://store/"),
            ("APPSTORE_LAUNCHER_APP_PORT", "8000"),
            ("H2O_CLOUD_CLIENT_PLATFORM_TOKEN", "t"),
            ("AWS_ROLE_ARN", "arn"),
            ("PATH", "/usr/bin:/bin"),
        ]
        .map(|(n, v)| (n.into(), v.into()))
        .into()
    }

    /// The last value of `name` in `env`, as a child would see it.
    fn get<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
        let found = env.iter().rev().find(|(n, _)| n == name);
        found.and_then(|(_, v)| v.to_str())
    }

    #[test]
    fn children_lose_only_launcher_variables() {
        let env = inherited(launcher_env());
        let names: Vec<_> = env.iter().map(|(n, _)| n.to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["H2O_CLOUD_CLIENT_PLATFORM_TOKEN", "AWS_ROLE_ARN", "PATH"]
        );
    }

    #[test]
    fn waved_environment() {
        let keys = AccessKeys::generate().unwrap();
        let env = waved_env(&settings(), &keys, Path::new("/data/wave"), launcher_env());
        assert_eq!(get(&env, "H2O_WAVE_LISTEN"), Some("127.0.0.1:10101"));
        assert_eq!(get(&env, "H2O_WAVE_BASE_URL"), Some("/x/"));
        assert_eq!(get(&env, "H2O_WAVE_DATA_DIR"), Some("/data/wave"));
        assert_eq!(get(&env, "H2O_WAVE_ACCESS_KEY_ID"), Some(keys.id.as_str()));
        assert_eq!(
            get(&env, "H2O_WAVE_ACCESS_KEY_SECRET"),
            Some(keys.secret.as_str())
        );
    }

    #[test]
    fn app_environment() {
        let keys = AccessKeys::generate().unwrap();
        let env = app_env(&settings(), &keys, Path::new("/venvs/k"), launcher_env());
        assert_eq!(
            get(&env, "H2O_WAVE_ADDRESS"),
            Some("http://127.0.0.1:10101")
        );
        assert_eq!(
            get(&env, "H2O_WAVE_APP_ADDRESS"),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(get(&env, "H2O_WAVE_BASE_URL"), Some("/x/"));
        assert_eq!(get(&env, "H2O_WAVE_NO_AUTOSTART"), Some("true"));
        assert_eq!(get(&env, "H2O_WAVE_ACCESS_KEY_ID"), Some(keys.id.as_str()));
        assert_eq!(get(&env, "VIRTUAL_ENV"), Some("/venvs/k"));
        assert_eq!(get(&env, "PATH"), Some("/venvs/k/bin:/usr/bin:/bin"));
        let no_path = app_env(&settings(), &keys, Path::new("/v"), Vec::new());
        assert_eq!(get(&no_path, "PATH"), Some("/v/bin"));
    }

    #[test]
    fn access_keys_are_random_alphanumerics() {
        let (a, b) = (
            AccessKeys::generate().unwrap(),
            AccessKeys::generate().unwrap(),
        );
        assert_eq!((a.id.len(), a.secret.len()), (20, 40));
        assert!(
            a.id.chars()
                .chain(a.secret.chars())
                .all(|c| c.is_ascii_alphanumeric())
        );
        assert_ne!(a.secret, b.secret);
    }

    #[tokio::test]
    async fn missing_waved_is_reported() {
        let venv = tempfile::tempdir().unwrap();
        let keys = AccessKeys::generate().unwrap();
        let e = spawn_waved(&settings(), venv.path(), &keys).unwrap_err();
        assert!(matches!(e, WaveError::MissingWaved(_)), "{e}");
        assert!(e.to_string().starts_with("waved not found"));
    }

    #[tokio::test]
    async fn app_readiness_is_a_tcp_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::time::timeout(Duration::from_secs(5), wait_for_app(port))
            .await
            .unwrap();
    }
}
