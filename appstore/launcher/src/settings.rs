//! The launcher's environment contract, read once at start.

use std::fmt;
use std::path::PathBuf;

use reqwest::Url;

/// Prefix of the variables meant for the launcher only, never passed on to the app.
pub const LAUNCHER_PREFIX: &str = "APPSTORE_LAUNCHER_";

/// A value that must never reach the log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value itself, for the places that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Everything the launcher reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Base URL of the App Store (`APPSTORE_LAUNCHER_URL`).
    pub url: Url,
    /// This instance's id (`H2O_CLOUD_INSTANCE_ID`).
    pub instance_id: String,
    /// The instance token (`H2O_CLOUD_CLIENT_PLATFORM_TOKEN`).
    pub token: Secret,
    /// Python module of the app (`APPSTORE_LAUNCHER_MODULE`).
    pub module: String,
    /// Where the bundle is unpacked (`APPSTORE_LAUNCHER_APP_DIR`).
    pub app_dir: PathBuf,
    /// The instance's persistent data (`APPSTORE_LAUNCHER_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Shared cache of built virtualenvs (`APPSTORE_LAUNCHER_VENV_CACHE`).
    pub venv_cache: PathBuf,
    /// Port waved listens on, on loopback (`APPSTORE_LAUNCHER_WAVE_PORT`).
    pub wave_port: u16,
    /// Port the app listens on, on loopback (`APPSTORE_LAUNCHER_APP_PORT`).
    pub app_port: u16,
    /// Python interpreter that builds the virtualenv (`APPSTORE_LAUNCHER_PYTHON`).
    pub python: String,
    /// pip's download cache (`APPSTORE_LAUNCHER_PIP_CACHE`).
    pub pip_cache: Option<PathBuf>,
    /// Local directory of wheels pip may use (`APPSTORE_LAUNCHER_WHEELHOUSE`).
    pub wheelhouse: Option<PathBuf>,
    /// The `uv` program that installs packages instead of pip, when set
    /// (`APPSTORE_LAUNCHER_UV`).
    pub uv: Option<PathBuf>,
    /// Whether pip must not reach any package index (`APPSTORE_LAUNCHER_OFFLINE`).
    pub offline: bool,
    /// Path prefix waved serves the app under (`H2O_WAVE_BASE_URL`).
    pub base_url: String,
    /// Where to keep a fresh web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE`).
    pub web_identity_token_file: Option<PathBuf>,
}

/// Why the environment cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A required variable is unset or empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A port variable is not a number from 1 to 65535.
    #[error("{name} must be a port number from 1 to 65535, not `{value}`")]
    BadPort { name: &'static str, value: String },
    /// `APPSTORE_LAUNCHER_OFFLINE` is neither true nor false.
    #[error("APPSTORE_LAUNCHER_OFFLINE must be `true` or `false`, not `{0}`")]
    BadFlag(String),
    /// `APPSTORE_LAUNCHER_URL` is not an http(s) URL.
    #[error("APPSTORE_LAUNCHER_URL must be an http or https URL, not `{0}`")]
    BadUrl(String),
    /// `H2O_WAVE_BASE_URL` does not start with `/`.
    #[error("H2O_WAVE_BASE_URL must start with `/`, not `{0}`")]
    BadBaseUrl(String),
}

impl Settings {
    /// Reads the settings through `var`, which returns a variable's value if it is set.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let optional = |name: &str| var(name).filter(|v| !v.is_empty());
        let required = |name: &'static str| optional(name).ok_or(SettingsError::Missing(name));
        let port = |name: &'static str| {
            let value = required(name)?;
            match value.parse::<u16>() {
                Ok(port) if port != 0 => Ok(port),
                _ => Err(SettingsError::BadPort { name, value }),
            }
        };

        let raw_url = required("APPSTORE_LAUNCHER_URL")?;
        let url = Url::parse(&raw_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or(SettingsError::BadUrl(raw_url))?;
        let offline = match optional("APPSTORE_LAUNCHER_OFFLINE").as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => return Err(SettingsError::BadFlag(other.to_owned())),
        };
        let base_url = optional("H2O_WAVE_BASE_URL").unwrap_or_else(|| "/".to_owned());
        if !base_url.starts_with('/') {
            return Err(SettingsError::BadBaseUrl(base_url));
        }
        Ok(Settings {
            url,
            instance_id: required("H2O_CLOUD_INSTANCE_ID")?,
            token: Secret(required("H2O_CLOUD_CLIENT_PLATFORM_TOKEN")?),
            module: required("APPSTORE_LAUNCHER_MODULE")?,
            app_dir: required("APPSTORE_LAUNCHER_APP_DIR")?.into(),
            data_dir: required("APPSTORE_LAUNCHER_DATA_DIR")?.into(),
            venv_cache: required("APPSTORE_LAUNCHER_VENV_CACHE")?.into(),
            wave_port: port("APPSTORE_LAUNCHER_WAVE_PORT")?,
            app_port: port("APPSTORE_LAUNCHER_APP_PORT")?,
            python: optional("APPSTORE_LAUNCHER_PYTHON").unwrap_or_else(|| "python3".to_owned()),
            pip_cache: optional("APPSTORE_LAUNCHER_PIP_CACHE").map(PathBuf::from),
            wheelhouse: optional("APPSTORE_LAUNCHER_WHEELHOUSE").map(PathBuf::from),
            uv: optional("APPSTORE_LAUNCHER_UV").map(PathBuf::from),
            offline,
            base_url,
            web_identity_token_file: optional("AWS_WEB_IDENTITY_TOKEN_FILE").map(PathBuf::from),
        })
    }

    /// The App Store URL of `last` below this instance's launcher API.
    pub fn launcher_url(&self, last: &str) -> Url {
        let id = self.instance_id.as_str();
        self.store_url(&["api", "v1", "instances", id, "launcher", last])
    }

    /// The App Store URL of the token broker.
    pub fn broker_url(&self) -> Url {
        self.store_url(&["broker", "token"])
    }

    /// The App Store URL of `segments` (each one percent-encoded) below the base URL.
    fn store_url(&self, segments: &[&str]) -> Url {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        // `from_env` only accepts URLs that can be a base, which always have path segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

/// A full launcher environment, for tests.
#[cfg(test)]
const EXAMPLE_ENV: [(&str, &str); 9] = [
    ("APPSTORE_LAUNCHER_URL", "http://store:8080/"),
    ("H2O_CLOUD_INSTANCE_ID", "i-1"),
    ("H2O_CLOUD_CLIENT_PLATFORM_TOKEN", "tok"),
    ("APPSTORE_LAUNCHER_MODULE", "app"),
    ("APPSTORE_LAUNCHER_APP_DIR", "/srv/app"),
    ("APPSTORE_LAUNCHER_DATA_DIR", "/srv/data"),
    ("APPSTORE_LAUNCHER_VENV_CACHE", "/srv/venvs"),
    ("APPSTORE_LAUNCHER_WAVE_PORT", "10101"),
    ("APPSTORE_LAUNCHER_APP_PORT", "8000"),
];

/// Settings for tests: [`EXAMPLE_ENV`], changed by `overrides`.
#[cfg(test)]
pub fn example(overrides: &[(&str, &str)]) -> Settings {
    let get = |name: &str| {
        let mut all = overrides.iter().rev().chain(&EXAMPLE_ENV);
        all.find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    };
    match Settings::from_env(get) {
        Ok(settings) => settings,
        Err(e) => panic!("bad test settings: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn full() -> HashMap<&'static str, &'static str> {
        HashMap::from(EXAMPLE_ENV)
    }

    fn parse(env: &HashMap<&str, &str>) -> Result<Settings, SettingsError> {
        Settings::from_env(|name| env.get(name).map(|v| (*v).to_owned()))
    }

    #[test]
    fn required_only() {
        let s = parse(&full()).unwrap();
        assert_eq!(s.instance_id, "i-1");
        assert_eq!(s.token.expose(), "tok");
        assert_eq!((s.wave_port, s.app_port), (10101, 8000));
        assert_eq!(s.python, "python3");
        assert_eq!(s.base_url, "/");
        assert!(!s.offline);
        assert_eq!((s.pip_cache, s.wheelhouse, s.uv), (None, None, None));
        assert_eq!(s.web_identity_token_file, None);
    }

    #[test]
    fn optional_values() {
        let mut env = full();
        env.extend([
            ("APPSTORE_LAUNCHER_PYTHON", "/usr/bin/python3.12"),
            ("APPSTORE_LAUNCHER_PIP_CACHE", "/cache/pip"),
            ("APPSTORE_LAUNCHER_WHEELHOUSE", "/wheels"),
            ("APPSTORE_LAUNCHER_UV", "/opt/uv"),
            ("APPSTORE_LAUNCHER_OFFLINE", "true"),
            ("H2O_WAVE_BASE_URL", "/apps/x/"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/run/token"),
        ]);
        let s = parse(&env).unwrap();
        assert_eq!(s.python, "/usr/bin/python3.12");
        assert_eq!(s.pip_cache, Some("/cache/pip".into()));
        assert_eq!(s.wheelhouse, Some("/wheels".into()));
        assert_eq!(s.uv, Some("/opt/uv".into()));
        assert!(s.offline);
        assert_eq!(s.base_url, "/apps/x/");
        assert_eq!(s.web_identity_token_file, Some("/run/token".into()));
    }

    #[test]
    fn missing_required() {
        for name in full().keys() {
            let mut env = full();
            env.remove(name);
            assert_eq!(parse(&env), Err(SettingsError::Missing(name)));
            env.insert(name, "");
            assert_eq!(
                parse(&env),
                Err(SettingsError::Missing(name)),
                "empty {name}"
            );
        }
    }

    #[test]
    fn bad_port() {
        for value in ["0", "65536", "-1", "80a", " 80"] {
            let mut env = full();
            env.insert("APPSTORE_LAUNCHER_APP_PORT", value);
            let name = "APPSTORE_LAUNCHER_APP_PORT";
            let value = value.to_owned();
            assert_eq!(parse(&env), Err(SettingsError::BadPort { name, value }));
        }
    }

    #[test]
    fn bad_values() {
        let cases = [
            ("APPSTORE_LAUNCHER_OFFLINE", "yes"),
            ("APPSTORE_LAUNCHER_URL", "store:8080"),
            ("APPSTORE_LAUNCHER_URL", "ftp://store/"),
            ("H2O_WAVE_BASE_URL", "apps/"),
        ];
        for (name, value) in cases {
            let mut env = full();
            env.insert(name, value);
            assert!(parse(&env).is_err(), "{name}={value}");
        }
    }

    #[test]
    fn urls() {
        let mut env = full();
        env.insert("H2O_CLOUD_INSTANCE_ID", "a b/c");
        let s = parse(&env).unwrap();
        let bundle = "http://store:8080/api/v1/instances/a%20b%2Fc/launcher/bundle";
        assert_eq!(s.launcher_url("bundle").as_str(), bundle);
        assert_eq!(s.broker_url().as_str(), "http://store:8080/broker/token");
        env.insert("APPSTORE_LAUNCHER_URL", "https://host/store?x=1");
        let s = parse(&env).unwrap();
        assert_eq!(s.broker_url().as_str(), "https://host/store/broker/token");
    }

    #[test]
    fn debug_hides_the_token() {
        let mut env = full();
        env.insert("H2O_CLOUD_CLIENT_PLATFORM_TOKEN", "very-secret-token");
        let s = parse(&env).unwrap();
        assert!(!format!("{s:?}").contains("very-secret-token"));
    }
}
