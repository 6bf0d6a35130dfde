//! Drive's configuration: command-line flags, then environment, then the TOML file, then
//! defaults. Every setting can come from any of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Flags of `drive serve`; each also reads an environment variable.
#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:9000].
    #[arg(long, env = "DRIVE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory of the filesystem backend and generated credentials [default: ./data].
    #[arg(long, env = "DRIVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base domain for virtual-host-style requests (`<bucket>.<domain>`).
    #[arg(long, env = "DRIVE_DOMAIN")]
    pub domain: Option<String>,
    /// Region reported to clients [default: us-east-1].
    #[arg(long, env = "DRIVE_REGION")]
    pub region: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "DRIVE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Seconds to wait for in-flight requests at shutdown [default: 30].
    #[arg(long, env = "DRIVE_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// TOML configuration file with the same settings (snake_case keys).
    #[arg(long, env = "DRIVE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The settings a config file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    domain: Option<String>,
    region: Option<String>,
    log_format: Option<LogFormat>,
    shutdown_timeout_secs: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Base domain for virtual-host-style requests.
    pub domain: Option<String>,
    /// Region reported to clients.
    pub region: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the file and defaults.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9000))),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            domain: args.domain.or(file.domain).filter(|d| !d.is_empty()),
            region: args
                .region
                .or(file.region)
                .unwrap_or_else(|| "us-east-1".into()),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            shutdown_timeout: Duration::from_secs(
                args.shutdown_timeout_secs
                    .or(file.shutdown_timeout_secs)
                    .unwrap_or(30),
            ),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drive.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9100\"\ndomain = \"s3.local\"\nregion = \"eu-west-1\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            region: Some("ap-south-1".into()),
            ..Default::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.domain.as_deref(), Some("s3.local"));
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drive.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let err = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
