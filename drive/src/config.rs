//! Drive's configuration: command-line flags, then environment, then the TOML file, then
//! defaults. Every setting can come from any of them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared_identity::Secret;

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
    /// Where objects live: `fs` (the data directory), `s3`, `azure` or `gcs` [default: fs].
    #[arg(long, env = "DRIVE_BACKEND")]
    pub backend: Option<BackendKind>,
    /// Prefix inside the cloud container under which all Drive buckets live [default: drive].
    #[arg(long, env = "DRIVE_ROOT_PREFIX")]
    pub root_prefix: Option<String>,
    /// S3 backend: service endpoint [default: AWS].
    #[arg(long, env = "DRIVE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 backend: region to sign for [default: us-east-1].
    #[arg(long, env = "DRIVE_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 backend: the provider bucket that holds every Drive bucket.
    #[arg(long, env = "DRIVE_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 backend: access key id.
    #[arg(long, env = "DRIVE_S3_ACCESS_KEY")]
    pub s3_access_key: Option<String>,
    /// S3 backend: secret access key (prefer the environment variable to the flag).
    #[arg(long, env = "DRIVE_S3_SECRET_KEY", hide_env_values = true)]
    pub s3_secret_key: Option<Secret>,
    /// Azure backend: storage account name.
    #[arg(long, env = "DRIVE_AZURE_ACCOUNT")]
    pub azure_account: Option<String>,
    /// Azure backend: account key (prefer the environment variable to the flag).
    #[arg(long, env = "DRIVE_AZURE_ACCESS_KEY", hide_env_values = true)]
    pub azure_access_key: Option<Secret>,
    /// Azure backend: blob service URL with the account, for emulators [default: Azure].
    #[arg(long, env = "DRIVE_AZURE_ENDPOINT")]
    pub azure_endpoint: Option<String>,
    /// Azure backend: the container that holds every Drive bucket.
    #[arg(long, env = "DRIVE_AZURE_CONTAINER")]
    pub azure_container: Option<String>,
    /// GCS backend: JSON API endpoint [default: Google; an emulator's URL needs no credentials].
    #[arg(long, env = "DRIVE_GCS_ENDPOINT")]
    pub gcs_endpoint: Option<String>,
    /// GCS backend: the GCS bucket that holds every Drive bucket.
    #[arg(long, env = "DRIVE_GCS_BUCKET")]
    pub gcs_bucket: Option<String>,
    /// GCS backend: service account key file [default: Google's default credentials].
    #[arg(long, env = "DRIVE_GCS_CREDENTIALS_FILE")]
    pub gcs_credentials_file: Option<PathBuf>,
    /// OIDC issuers whose access tokens STS accepts (comma-separated; exact `iss` values).
    #[arg(long, env = "DRIVE_OIDC_ISSUER", value_delimiter = ',')]
    pub oidc_issuer: Vec<String>,
    /// Accepted `aud` values of access tokens (comma-separated).
    #[arg(long, env = "DRIVE_OIDC_AUDIENCE", value_delimiter = ',')]
    pub oidc_audience: Vec<String>,
    /// Accepted `azp` values (the OAuth client ids, as Keycloak sets them; comma-separated).
    #[arg(long, env = "DRIVE_OIDC_AUTHORIZED_PARTY", value_delimiter = ',')]
    pub oidc_authorized_party: Vec<String>,
    /// Claim path of the user name [default: preferred_username].
    #[arg(long, env = "DRIVE_OIDC_USERNAME_CLAIM")]
    pub oidc_username_claim: Option<String>,
    /// Claim path of the e-mail address [default: email].
    #[arg(long, env = "DRIVE_OIDC_EMAIL_CLAIM")]
    pub oidc_email_claim: Option<String>,
    /// Claim path of the groups [default: groups].
    #[arg(long, env = "DRIVE_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// Claim path of the roles [default: realm_access.roles].
    #[arg(long, env = "DRIVE_OIDC_ROLES_CLAIM")]
    pub oidc_roles_claim: Option<String>,
    /// Public OAuth client id clients use with the issuer, announced by discovery [default: drive].
    #[arg(long, env = "DRIVE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// OAuth scope announced by discovery [default: "openid offline_access"].
    #[arg(long, env = "DRIVE_OIDC_SCOPE")]
    pub oidc_scope: Option<String>,
    /// Least seconds between two key-set fetches caused by unknown key ids [default: 30].
    #[arg(long, env = "DRIVE_OIDC_REFETCH_SECS")]
    pub oidc_refetch_secs: Option<u64>,
    /// Role that makes a user an admin, who reaches every bucket [default: drive-admin].
    #[arg(long, env = "DRIVE_ADMIN_ROLE")]
    pub admin_role: Option<String>,
    /// Longest STS session in seconds, 10 to 43200; AWS's own floor is 900, shorter caps
    /// are for testing credential refresh [default: 43200].
    #[arg(long, env = "DRIVE_STS_MAX_DURATION_SECS")]
    pub sts_max_duration_secs: Option<u64>,
    /// File with the key that signs session credentials; replicas share it
    /// [default: generated as <data-dir>/server-key].
    #[arg(long, env = "DRIVE_SERVER_KEY_FILE")]
    pub server_key_file: Option<PathBuf>,
    /// Older server key files still accepted while sessions they signed run out (comma-separated).
    #[arg(long, env = "DRIVE_PREVIOUS_SERVER_KEY_FILES", value_delimiter = ',')]
    pub previous_server_key_files: Vec<PathBuf>,
    /// Public base URL of Drive, announced by discovery [default: http://<Host header>].
    #[arg(long, env = "DRIVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Whether the built-in development issuer runs; `true` keeps it beside --oidc-issuer
    /// [default: true without --oidc-issuer, false with it].
    #[arg(long, env = "DRIVE_DEV_ISSUER", value_name = "true|false")]
    pub dev_issuer: Option<bool>,
    /// Users of the built-in development issuer, each
    /// NAME:PASSWORD[:GROUP+GROUP[:ROLE+ROLE]] (comma-separated).
    #[arg(
        long,
        env = "DRIVE_DEV_USERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub dev_user: Vec<shared_identity::DevUser>,
    /// Metadata database (users' access keys): `sqlite://…` or `postgres://…`; replicas share
    /// one PostgreSQL database [default: sqlite://<data-dir>/drive.db].
    #[arg(long, env = "DRIVE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Milliseconds a replica answers from its copy of the revoked app instances before
    /// reading the database again [default: 1000].
    #[arg(long, env = "DRIVE_REVOCATION_CACHE_MS")]
    pub revocation_cache_ms: Option<u64>,
}

/// Which store holds the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The local filesystem under the data directory.
    Fs,
    /// AWS S3 or any S3-compatible service.
    S3,
    /// Azure Blob Storage.
    Azure,
    /// Google Cloud Storage.
    Gcs,
}

/// Settings of the S3 backend.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// Service endpoint; `None` for AWS.
    pub endpoint: Option<String>,
    /// Region to sign for.
    pub region: String,
    /// The provider bucket.
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: Secret,
}

/// The store that holds the objects, with its settings.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// The filesystem under the data directory.
    Fs,
    /// An S3 bucket, under a root prefix.
    S3 { s3: S3Config, root_prefix: String },
    /// A GCS bucket, under a root prefix.
    Gcs { gcs: GcsConfig, root_prefix: String },
    /// An Azure container, under a root prefix.
    Azure {
        azure: AzureConfig,
        root_prefix: String,
    },
}

/// Settings of the Azure backend.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// Storage account.
    pub account: String,
    /// Account key.
    pub access_key: Secret,
    /// Blob service URL; `None` for Azure.
    pub endpoint: Option<String>,
    /// The container.
    pub container: String,
}

/// Settings of the GCS backend.
#[derive(Debug, Clone)]
pub struct GcsConfig {
    /// JSON API endpoint; `None` for Google.
    pub endpoint: Option<String>,
    /// The GCS bucket.
    pub bucket: String,
    /// Service account key file.
    pub credentials_file: Option<PathBuf>,
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
    backend: Option<BackendKind>,
    root_prefix: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_bucket: Option<String>,
    s3_access_key: Option<String>,
    s3_secret_key: Option<Secret>,
    gcs_endpoint: Option<String>,
    gcs_bucket: Option<String>,
    gcs_credentials_file: Option<PathBuf>,
    azure_account: Option<String>,
    azure_access_key: Option<Secret>,
    azure_endpoint: Option<String>,
    azure_container: Option<String>,
    oidc_issuer: Option<Vec<String>>,
    oidc_audience: Option<Vec<String>>,
    oidc_authorized_party: Option<Vec<String>>,
    oidc_username_claim: Option<String>,
    oidc_email_claim: Option<String>,
    oidc_groups_claim: Option<String>,
    oidc_roles_claim: Option<String>,
    oidc_client_id: Option<String>,
    oidc_scope: Option<String>,
    oidc_refetch_secs: Option<u64>,
    admin_role: Option<String>,
    sts_max_duration_secs: Option<u64>,
    server_key_file: Option<PathBuf>,
    previous_server_key_files: Option<Vec<PathBuf>>,
    public_url: Option<String>,
    database_url: Option<Secret>,
    dev_issuer: Option<bool>,
    dev_users: Option<Vec<String>>,
    revocation_cache_ms: Option<u64>,
}

/// Who Drive trusts and how it maps and authorizes users.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Trusted OIDC issuers; empty: only the root credentials work.
    pub issuers: Vec<String>,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Accepted authorized parties.
    pub authorized_parties: Vec<String>,
    /// Where the identity claims are.
    pub claims: shared_identity::ClaimMapping,
    /// Public OAuth client id announced by discovery.
    pub client_id: String,
    /// OAuth scope announced by discovery.
    pub scope: String,
    /// Least time between key-set fetches for unknown key ids.
    pub refetch_interval: Duration,
    /// The admin role.
    pub admin_role: String,
    /// Longest STS session.
    pub sts_max_duration: Duration,
    /// The server key file, if not the generated one.
    pub server_key_file: Option<PathBuf>,
    /// Older server keys still accepted.
    pub previous_server_key_files: Vec<PathBuf>,
    /// Public base URL.
    pub public_url: Option<String>,
    /// Whether the built-in development issuer runs (beside any external issuers).
    pub dev_issuer: bool,
    /// Users of the built-in development issuer.
    pub dev_users: Vec<shared_identity::DevUser>,
    /// Age after which a replica reads the revoked app instances from the database again.
    pub revocation_cache: Duration,
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
    /// Where objects live.
    pub backend: BackendConfig,
    /// Identity settings.
    pub identity: IdentityConfig,
    /// The metadata database URL.
    pub database_url: Secret,
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
    /// An identity setting is missing or out of range.
    #[error("{0}")]
    Identity(&'static str),
    /// A setting the chosen backend needs is missing.
    #[error("the {backend} backend needs {setting} (flag --{flag} or {env})")]
    Missing {
        backend: &'static str,
        setting: &'static str,
        flag: &'static str,
        env: &'static str,
    },
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the file and defaults.
    pub fn resolve(mut args: ServeArgs) -> Result<Self, ConfigError> {
        let mut file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let identity = identity(&mut args, &mut file)?;
        let root_prefix = args
            .root_prefix
            .or(file.root_prefix)
            .unwrap_or_else(|| "drive".into());
        let backend = match args.backend.or(file.backend).unwrap_or(BackendKind::Fs) {
            BackendKind::Fs => BackendConfig::Fs,
            BackendKind::S3 => {
                let missing = |setting, flag, env| ConfigError::Missing {
                    backend: "s3",
                    setting,
                    flag,
                    env,
                };
                BackendConfig::S3 {
                    s3: S3Config {
                        endpoint: args.s3_endpoint.or(file.s3_endpoint),
                        region: args
                            .s3_region
                            .or(file.s3_region)
                            .unwrap_or_else(|| "us-east-1".into()),
                        bucket: args
                            .s3_bucket
                            .or(file.s3_bucket)
                            .ok_or_else(|| missing("a bucket", "s3-bucket", "DRIVE_S3_BUCKET"))?,
                        access_key: args.s3_access_key.or(file.s3_access_key).ok_or_else(|| {
                            missing("an access key", "s3-access-key", "DRIVE_S3_ACCESS_KEY")
                        })?,
                        secret_key: args.s3_secret_key.or(file.s3_secret_key).ok_or_else(|| {
                            missing("a secret key", "s3-secret-key", "DRIVE_S3_SECRET_KEY")
                        })?,
                    },
                    root_prefix,
                }
            }
            BackendKind::Azure => {
                let missing = |setting, flag, env| ConfigError::Missing {
                    backend: "azure",
                    setting,
                    flag,
                    env,
                };
                BackendConfig::Azure {
                    azure: AzureConfig {
                        account: args.azure_account.or(file.azure_account).ok_or_else(|| {
                            missing("an account", "azure-account", "DRIVE_AZURE_ACCOUNT")
                        })?,
                        access_key: args.azure_access_key.or(file.azure_access_key).ok_or_else(
                            || {
                                missing(
                                    "an account key",
                                    "azure-access-key",
                                    "DRIVE_AZURE_ACCESS_KEY",
                                )
                            },
                        )?,
                        endpoint: args.azure_endpoint.or(file.azure_endpoint),
                        container: args.azure_container.or(file.azure_container).ok_or_else(
                            || missing("a container", "azure-container", "DRIVE_AZURE_CONTAINER"),
                        )?,
                    },
                    root_prefix,
                }
            }
            BackendKind::Gcs => BackendConfig::Gcs {
                gcs: GcsConfig {
                    endpoint: args.gcs_endpoint.or(file.gcs_endpoint),
                    bucket: args
                        .gcs_bucket
                        .or(file.gcs_bucket)
                        .ok_or(ConfigError::Missing {
                            backend: "gcs",
                            setting: "a bucket",
                            flag: "gcs-bucket",
                            env: "DRIVE_GCS_BUCKET",
                        })?,
                    credentials_file: args.gcs_credentials_file.or(file.gcs_credentials_file),
                },
                root_prefix,
            },
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let database_url = args.database_url.or(file.database_url).unwrap_or_else(|| {
            Secret::from(format!("sqlite://{}/drive.db?mode=rwc", data_dir.display()))
        });
        Ok(Self {
            backend,
            identity,
            database_url,
            data_dir,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9000))),
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

fn identity(args: &mut ServeArgs, file: &mut FileConfig) -> Result<IdentityConfig, ConfigError> {
    let list = |flag: &mut Vec<String>, file: &mut Option<Vec<String>>| {
        let flag = std::mem::take(flag);
        if flag.is_empty() {
            file.take().unwrap_or_default()
        } else {
            flag
        }
    };
    let defaults = shared_identity::ClaimMapping::default();
    let issuers = list(&mut args.oidc_issuer, &mut file.oidc_issuer);
    let audiences = list(&mut args.oidc_audience, &mut file.oidc_audience);
    let authorized_parties = list(
        &mut args.oidc_authorized_party,
        &mut file.oidc_authorized_party,
    );
    if !issuers.is_empty() && audiences.is_empty() && authorized_parties.is_empty() {
        return Err(ConfigError::Identity(
            "an OIDC issuer needs --oidc-audience (the aud of its access tokens) or --oidc-authorized-party (their azp)",
        ));
    }
    let mut dev_users = std::mem::take(&mut args.dev_user);
    if dev_users.is_empty() {
        for text in file.dev_users.take().unwrap_or_default() {
            dev_users.push(text.parse().map_err(|_| {
                ConfigError::Identity(
                    "dev_users entries are NAME:PASSWORD[:GROUP+GROUP[:ROLE+ROLE]]",
                )
            })?);
        }
    }
    let dev_issuer = args
        .dev_issuer
        .or(file.dev_issuer)
        .unwrap_or(issuers.is_empty());
    if !dev_issuer && !dev_users.is_empty() {
        return Err(ConfigError::Identity(
            "dev users belong to the built-in issuer, which is off (by default when --oidc-issuer is set; keep it with --dev-issuer true)",
        ));
    }
    let sts_max = args
        .sts_max_duration_secs
        .or(file.sts_max_duration_secs)
        .unwrap_or(43200);
    if !(10..=43200).contains(&sts_max) {
        return Err(ConfigError::Identity(
            "--sts-max-duration-secs must be from 10 to 43200",
        ));
    }
    let previous = std::mem::take(&mut args.previous_server_key_files);
    Ok(IdentityConfig {
        issuers,
        audiences,
        authorized_parties,
        claims: shared_identity::ClaimMapping {
            username: args
                .oidc_username_claim
                .take()
                .or(file.oidc_username_claim.take())
                .unwrap_or(defaults.username),
            email: args
                .oidc_email_claim
                .take()
                .or(file.oidc_email_claim.take())
                .unwrap_or(defaults.email),
            groups: args
                .oidc_groups_claim
                .take()
                .or(file.oidc_groups_claim.take())
                .unwrap_or(defaults.groups),
            roles: args
                .oidc_roles_claim
                .take()
                .or(file.oidc_roles_claim.take())
                .unwrap_or(defaults.roles),
        },
        client_id: args
            .oidc_client_id
            .take()
            .or(file.oidc_client_id.take())
            .unwrap_or_else(|| "drive".into()),
        scope: args
            .oidc_scope
            .take()
            .or(file.oidc_scope.take())
            .unwrap_or_else(|| "openid offline_access".into()),
        refetch_interval: Duration::from_secs(
            args.oidc_refetch_secs
                .or(file.oidc_refetch_secs)
                .unwrap_or(30),
        ),
        admin_role: args
            .admin_role
            .take()
            .or(file.admin_role.take())
            .unwrap_or_else(|| "drive-admin".into()),
        sts_max_duration: Duration::from_secs(sts_max),
        server_key_file: args.server_key_file.take().or(file.server_key_file.take()),
        previous_server_key_files: if previous.is_empty() {
            file.previous_server_key_files.take().unwrap_or_default()
        } else {
            previous
        },
        public_url: args.public_url.take().or(file.public_url.take()),
        dev_issuer,
        dev_users,
        revocation_cache: Duration::from_millis(
            args.revocation_cache_ms
                .or(file.revocation_cache_ms)
                .unwrap_or(1000),
        ),
    })
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
        assert!(matches!(c.backend, BackendConfig::Fs));
    }

    #[test]
    fn the_s3_backend_names_what_it_misses_and_hides_its_secret() {
        let args = ServeArgs {
            backend: Some(BackendKind::S3),
            s3_bucket: Some("up".into()),
            ..Default::default()
        };
        let err = Config::resolve(args).unwrap_err().to_string();
        assert!(err.contains("DRIVE_S3_ACCESS_KEY"), "{err}");
        let args = ServeArgs {
            backend: Some(BackendKind::S3),
            s3_bucket: Some("up".into()),
            s3_access_key: Some("ak".into()),
            s3_secret_key: Some("very-secret".parse().unwrap()),
            ..Default::default()
        };
        let c = Config::resolve(args).unwrap();
        assert!(!format!("{c:?}").contains("very-secret"));
        let BackendConfig::S3 { s3, root_prefix } = c.backend else {
            panic!("s3 expected");
        };
        assert_eq!(
            (s3.region.as_str(), root_prefix.as_str()),
            ("us-east-1", "drive")
        );
    }

    #[test]
    fn an_issuer_needs_an_audience() {
        let args = ServeArgs {
            oidc_issuer: vec!["http://idp".into()],
            ..Default::default()
        };
        assert!(matches!(
            Config::resolve(args),
            Err(ConfigError::Identity(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drive.toml");
        std::fs::write(
            &path,
            "oidc_issuer = [\"http://idp\"]\noidc_audience = [\"urn:drive\"]\noidc_roles_claim = \"roles\"\n",
        )
        .unwrap();
        let c = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.identity.issuers, ["http://idp"]);
        assert_eq!(c.identity.claims.roles, "roles");
        assert_eq!(c.identity.claims.groups, "groups");
        assert_eq!(c.identity.sts_max_duration, Duration::from_secs(43200));
    }

    #[test]
    fn the_dev_issuer_runs_alone_by_default_and_beside_issuers_on_request() {
        let alice: shared_identity::DevUser = "alice:pw".parse().unwrap();
        let c = Config::resolve(ServeArgs::default()).unwrap();
        assert!(c.identity.dev_issuer);
        assert_eq!(c.identity.revocation_cache, Duration::from_secs(1));
        let external = || ServeArgs {
            oidc_issuer: vec!["http://broker".into()],
            oidc_audience: vec!["urn:drive".into()],
            ..Default::default()
        };
        assert!(!Config::resolve(external()).unwrap().identity.dev_issuer);
        let err = Config::resolve(ServeArgs {
            dev_user: vec![alice.clone()],
            ..external()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--dev-issuer true"), "{err}");
        let both = Config::resolve(ServeArgs {
            dev_issuer: Some(true),
            dev_user: vec![alice.clone()],
            revocation_cache_ms: Some(200),
            ..external()
        })
        .unwrap()
        .identity;
        assert!(both.dev_issuer);
        assert_eq!(both.issuers, ["http://broker"]);
        assert_eq!(both.dev_users, std::slice::from_ref(&alice));
        assert_eq!(both.revocation_cache, Duration::from_millis(200));
        // Switched off without any external issuer, dev users have nowhere to sign in.
        assert!(
            Config::resolve(ServeArgs {
                dev_issuer: Some(false),
                dev_user: vec![alice],
                ..Default::default()
            })
            .is_err()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drive.toml");
        std::fs::write(
            &path,
            "oidc_issuer = [\"http://broker\"]\noidc_audience = [\"urn:drive\"]\ndev_issuer = true\ndev_users = [\"bob:pw\"]\nrevocation_cache_ms = 50\n",
        )
        .unwrap();
        let file = Config::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap()
        .identity;
        assert!(file.dev_issuer);
        assert_eq!(file.dev_users[0].name, "bob");
        assert_eq!(file.revocation_cache, Duration::from_millis(50));
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
