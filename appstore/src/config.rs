//! The App Store server's configuration: command-line flags, then environment (the
//! `H2O_CLOUD_*` names of H2O AI Cloud where one exists, `APPSTORE_*` otherwise), then the
//! TOML file (snake_case keys named like the flags), then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared_identity::Secret;

use crate::bundle::archive::Limits;
use crate::bundle::manifest::RuntimeVersion;

/// Flags of `appstore serve`; each also reads an environment variable and a TOML key.
#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML configuration file with the same settings (snake_case keys).
    #[arg(long, env = "APPSTORE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "APPSTORE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database, the session key and upload spooling
    /// [default: ./appstore-data].
    #[arg(long, env = "APPSTORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: `sqlite://…` or `postgres://…`; replicas share one PostgreSQL
    /// database [default: sqlite://<data-dir>/appstore.db].
    #[arg(long, env = "APPSTORE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Public base URL of the App Store, for sign-in redirects [default: http://<listen>].
    #[arg(long, env = "APPSTORE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "APPSTORE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Drive's S3 endpoint, where bundles and assets are stored [default: http://127.0.0.1:9000].
    #[arg(long, env = "APPSTORE_DRIVE_ENDPOINT")]
    pub drive_endpoint: Option<String>,
    /// The App Store's own Drive access key id.
    #[arg(long, env = "APPSTORE_DRIVE_ACCESS_KEY")]
    pub drive_access_key: Option<String>,
    /// The App Store's own Drive secret key (prefer the environment variable to the flag).
    #[arg(long, env = "APPSTORE_DRIVE_SECRET_KEY", hide_env_values = true)]
    pub drive_secret_key: Option<Secret>,
    /// A Drive root-credentials file to take the key pair from when none is given
    /// [default: ./data/root-credentials.toml, what `drive serve` generates on one machine].
    #[arg(long, env = "APPSTORE_DRIVE_CREDENTIALS_FILE")]
    pub drive_credentials_file: Option<PathBuf>,
    /// The Drive bucket that holds bundles, icons and screenshots [default: appstore].
    #[arg(long, env = "APPSTORE_BUCKET")]
    pub bucket: Option<String>,
    /// Largest bundle upload in bytes [default: 536870912].
    #[arg(long, env = "APPSTORE_MAX_BUNDLE_BYTES")]
    pub max_bundle_bytes: Option<u64>,
    /// Most entries in a bundle [default: 10000].
    #[arg(long, env = "APPSTORE_MAX_BUNDLE_FILES")]
    pub max_bundle_files: Option<usize>,
    /// Largest unpacked size of a bundle in bytes [default: 2147483648].
    #[arg(long, env = "APPSTORE_MAX_UNPACKED_BYTES")]
    pub max_unpacked_bytes: Option<u64>,
    /// Issuer URL of the OIDC provider [default: Drive's development issuer,
    /// <drive-endpoint>/_drive/idp].
    #[arg(long, env = "H2O_CLOUD_OIDC_PROVIDER_URL")]
    pub oidc_provider_url: Option<String>,
    /// Accepted `aud` values of access tokens (comma-separated) [default: drive].
    #[arg(long, env = "H2O_CLOUD_OIDC_AUDIENCE", value_delimiter = ',')]
    #[serde(default)]
    pub oidc_audience: Vec<String>,
    /// OAuth client of the browser sign-in [default: appstore].
    #[arg(long, env = "H2O_CLOUD_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Secret of the browser sign-in client, if it is confidential.
    #[arg(long, env = "H2O_CLOUD_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<Secret>,
    /// Public OAuth client the CLI refreshes its token with [default: appstore-cli].
    #[arg(long, env = "H2O_CLOUD_OIDC_CLI_CLIENT_ID")]
    pub oidc_cli_client_id: Option<String>,
    /// Scopes asked for at sign-in [default: "openid offline_access profile email"].
    #[arg(long, env = "H2O_CLOUD_OIDC_SCOPES")]
    pub oidc_scopes: Option<String>,
    /// Where the provider sends the browser back [default: <public-url>/auth/callback].
    #[arg(long, env = "H2O_CLOUD_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// The provider's end-session endpoint, visited after sign-out.
    #[arg(long, env = "H2O_CLOUD_OIDC_END_SESSION_URL")]
    pub oidc_end_session_url: Option<String>,
    /// Claim path of the roles [default: realm_access.roles].
    #[arg(long, env = "H2O_CLOUD_OIDC_ROLE_CLAIM")]
    pub oidc_role_claim: Option<String>,
    /// Role that makes a user an admin [default: admin].
    #[arg(long, env = "H2O_CLOUD_OIDC_ADMIN_ROLE_NAME")]
    pub oidc_admin_role_name: Option<String>,
    /// Role that gives full access; empty means every signed-in user [default: empty].
    #[arg(long, env = "H2O_CLOUD_OIDC_FULL_ACCESS_ROLE_NAME")]
    pub oidc_full_access_role_name: Option<String>,
    /// OAuth client waved signs users in with for apps with `EnableOIDC` (confidential,
    /// redirect URIs `<instance URL>/_auth/callback`); without it such apps do not run.
    #[arg(long, env = "H2O_CLOUD_OIDC_WAVE_CLIENT_ID")]
    pub oidc_wave_client_id: Option<String>,
    /// Secret of the Wave client (it reaches EnableOIDC instances, as waved needs it).
    #[arg(
        long,
        env = "H2O_CLOUD_OIDC_WAVE_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oidc_wave_client_secret: Option<Secret>,
    /// Whether apps may be made PUBLIC (listed for anonymous visitors) [default: false].
    #[arg(long, env = "H2O_CLOUD_PUBLIC_MODE_ENABLED")]
    pub public_mode_enabled: Option<bool>,
    /// Most app versions one user may import [default: 10].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_APP_VERSION_LIMIT")]
    pub app_version_limit: Option<i64>,
    /// GPU types apps may ask for (comma-separated; empty disables GPUs).
    #[arg(
        long,
        env = "H2O_CLOUD_SCHEDULER_ALLOWED_GPU_TYPES",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_gpu_types: Vec<String>,
    /// Extra regexes of `H2O_WAVE_*`/`H2O_CLOUD_*` names apps may set in `[[Env]]`
    /// (comma-separated), beside the built-in allow-list.
    #[arg(long, env = "APPSTORE_ENV_ALLOW", value_delimiter = ',')]
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Regexes of images admins may run as container apps (comma-separated).
    #[arg(long, env = "APPSTORE_CUSTOM_IMAGE_ALLOW", value_delimiter = ',')]
    #[serde(default)]
    pub custom_image_allow: Vec<String>,
    /// Runtime versions apps may name (TOML only: `[[runtime_version]]` tables with `Name`,
    /// `Image`, `Default`, `Deprecated`, `Aliases`) [default: the built-in list].
    #[arg(skip)]
    #[serde(default)]
    pub runtime_version: Vec<RuntimeVersion>,
    /// Whether the session cookie carries `Secure` (turn off only for http://localhost)
    /// [default: true].
    #[arg(long, env = "APPSTORE_COOKIE_SECURE")]
    pub cookie_secure: Option<bool>,
    /// File with the key that seals refresh tokens at rest; replicas share it
    /// [default: generated as <data-dir>/session-key].
    #[arg(long, env = "APPSTORE_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,
    /// Most instances one full-access user may have [default: 10].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_INSTANCE_LIMIT")]
    pub instance_limit: Option<i64>,
    /// Most instances one visitor may have [default: 5].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_VISITOR_INSTANCE_LIMIT")]
    pub visitor_instance_limit: Option<i64>,
    /// Time limit in seconds of run, suspend, resume and terminate [default: 300].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_WRITE_TIMEOUT_SECONDS")]
    pub write_timeout_seconds: Option<u64>,
    /// Memory limit of an instance whose app.toml sets none [default: 2Gi].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_DEFAULT_MEMORY_LIMIT")]
    pub default_memory_limit: Option<String>,
    /// Domain under which instances answer as `<instance-id>.<domain>` (DOMAIN routing)
    /// [default: localhost].
    #[arg(long, env = "APPSTORE_APPS_DOMAIN")]
    pub apps_domain: Option<String>,
    /// Routing mode of new instances: DOMAIN or BASE_URL [default: DOMAIN].
    #[arg(long, env = "APPSTORE_ROUTING_MODE")]
    pub routing_mode: Option<String>,
    /// Directory of the local runtime's instances [default: <data-dir>/instances].
    #[arg(long, env = "APPSTORE_INSTANCES_DIR")]
    pub instances_dir: Option<PathBuf>,
    /// The launcher program [default: appstore-launcher beside this program].
    #[arg(long, env = "APPSTORE_LAUNCHER")]
    pub launcher: Option<PathBuf>,
    /// Python interpreter for app virtualenvs [default: python3].
    #[arg(long, env = "APPSTORE_PYTHON")]
    pub python: Option<PathBuf>,
    /// pip's cache, shared by instances [default: <data-dir>/pip-cache].
    #[arg(long, env = "APPSTORE_PIP_CACHE_DIR")]
    pub pip_cache_dir: Option<PathBuf>,
    /// Built virtualenvs, shared by instances with the same requirements
    /// [default: <data-dir>/venvs].
    #[arg(long, env = "APPSTORE_VENV_CACHE_DIR")]
    pub venv_cache_dir: Option<PathBuf>,
    /// A directory of wheels pip may install from.
    #[arg(long, env = "APPSTORE_WHEELHOUSE")]
    pub wheelhouse: Option<PathBuf>,
    /// Install requirements only from the wheelhouse and bundled wheels [default: false].
    #[arg(long, env = "APPSTORE_PIP_OFFLINE")]
    pub pip_offline: Option<bool>,
    /// The `uv` program, to install requirements with uv instead of pip (local runtime;
    /// much faster cold starts) [default: pip].
    #[arg(long, env = "APPSTORE_UV")]
    pub uv: Option<PathBuf>,
    /// Drive's URL as instances reach it (S3 and STS) [default: the Drive endpoint].
    #[arg(long, env = "APPSTORE_DRIVE_PUBLIC_URL")]
    pub drive_public_url: Option<String>,
    /// `aud` of the access tokens the broker gives instances [default: drive].
    #[arg(long, env = "APPSTORE_BROKER_AUDIENCE")]
    pub broker_audience: Option<String>,
    /// Lifetime in seconds of the broker's access tokens [default: 900].
    #[arg(long, env = "APPSTORE_BROKER_TOKEN_TTL_SECS")]
    pub broker_token_ttl_secs: Option<u64>,
    /// Where instances run: `local` (child processes) or `kubernetes` [default: local].
    #[arg(long, env = "APPSTORE_RUNTIME")]
    pub runtime: Option<RuntimeKind>,
    /// The App Store's URL as instances reach it (their launcher downloads bundles there)
    /// [default: this server's listening address on loopback].
    #[arg(long, env = "APPSTORE_INTERNAL_URL")]
    pub internal_url: Option<String>,
    /// Memory request of an instance whose app.toml sets none [default: 512Mi].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_DEFAULT_MEMORY_RESERVATION")]
    pub default_memory_reservation: Option<String>,
    /// CPU limit of an instance whose app.toml sets none [default: none].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_DEFAULT_CPU_LIMIT")]
    pub default_cpu_limit: Option<String>,
    /// CPU request of an instance whose app.toml sets none [default: none].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_DEFAULT_CPU_RESERVATION")]
    pub default_cpu_reservation: Option<String>,
    /// GPU type of an instance asking for GPUs without naming a type [default: any].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_DEFAULT_GPU_TYPE")]
    pub default_gpu_type: Option<String>,
    /// Kubernetes namespace of instances [default: the client's namespace].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Type of instance Services [default: ClusterIP].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_SERVICE_TYPE")]
    pub service_type: Option<String>,
    /// Storage class of instance volumes [default: the cluster's default].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_STORAGE_CLASS")]
    pub storage_class: Option<String>,
    /// Kubeconfig file [default: in-cluster service account, else ~/.kube/config].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_KUBE_CONFIG")]
    pub kube_config: Option<PathBuf>,
    /// Service account of instance pods [default: none, and no API token mounted].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_APP_SERVICE_ACCOUNT")]
    pub app_service_account: Option<String>,
    /// Mount path of the `ResourceVolumeSize` volume [default: /resources].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_RESOURCE_PATH")]
    pub resource_path: Option<String>,
    /// Size of `/dev/shm` for apps with `EnableSHM` [default: 2Gi].
    #[arg(long, env = "H2O_CLOUD_SCHEDULER_SHM_SIZE")]
    pub shm_size: Option<String>,
    /// The same scheduler settings under H2O AI Cloud's names (TOML only: a `[Scheduler]`
    /// table); the snake_case keys, the environment and flags win over it.
    #[arg(skip)]
    #[serde(rename = "Scheduler")]
    pub scheduler_table: Option<SchedulerTable>,
}

/// `[Scheduler]` in the TOML file, keyed as H2O AI Cloud's scheduler configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct SchedulerTable {
    /// Most instances per full-access user.
    pub instance_limit: Option<i64>,
    /// Most instances per visitor.
    pub visitor_instance_limit: Option<i64>,
    /// Most app versions per user.
    pub app_version_limit: Option<i64>,
    /// Time limit of run, suspend, resume and terminate.
    pub write_timeout_seconds: Option<u64>,
    /// Mount path of the resource volume.
    pub resource_path: Option<String>,
    /// Namespace of instances.
    pub namespace: Option<String>,
    /// Type of instance Services.
    pub service_type: Option<String>,
    /// Storage class of instance volumes.
    pub storage_class: Option<String>,
    /// Kubeconfig file.
    pub kube_config: Option<PathBuf>,
    /// Service account of instance pods.
    pub app_service_account: Option<String>,
    /// GPU types apps may ask for.
    #[serde(rename = "AllowedGPUTypes")]
    pub allowed_gpu_types: Option<Vec<String>>,
    /// `[Scheduler.DefaultRuntimeLimit]`: resources when app.toml names none.
    pub default_runtime_limit: Option<RuntimeLimitTable>,
}

/// `[Scheduler.DefaultRuntimeLimit]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "PascalCase")]
pub struct RuntimeLimitTable {
    /// Memory limit.
    pub memory_limit: Option<String>,
    /// Memory request.
    pub memory_reservation: Option<String>,
    /// CPU limit.
    #[serde(rename = "CPULimit")]
    pub cpu_limit: Option<String>,
    /// CPU request.
    #[serde(rename = "CPUReservation")]
    pub cpu_reservation: Option<String>,
    /// GPU type.
    #[serde(rename = "GPUType")]
    pub gpu_type: Option<String>,
}

impl ServeArgs {
    /// Fills the settings still unset from the `[Scheduler]` table.
    fn fill_from_scheduler_table(&mut self, table: SchedulerTable) {
        let or = |slot: &mut Option<String>, value: Option<String>| {
            if slot.is_none() {
                *slot = value;
            }
        };
        self.instance_limit = self.instance_limit.or(table.instance_limit);
        self.visitor_instance_limit = self.visitor_instance_limit.or(table.visitor_instance_limit);
        self.app_version_limit = self.app_version_limit.or(table.app_version_limit);
        self.write_timeout_seconds = self.write_timeout_seconds.or(table.write_timeout_seconds);
        self.kube_config = self.kube_config.take().or(table.kube_config);
        or(&mut self.resource_path, table.resource_path);
        or(&mut self.namespace, table.namespace);
        or(&mut self.service_type, table.service_type);
        or(&mut self.storage_class, table.storage_class);
        or(&mut self.app_service_account, table.app_service_account);
        if self.allowed_gpu_types.is_empty() {
            self.allowed_gpu_types = table.allowed_gpu_types.unwrap_or_default();
        }
        let limits = table.default_runtime_limit.unwrap_or_default();
        or(&mut self.default_memory_limit, limits.memory_limit);
        or(
            &mut self.default_memory_reservation,
            limits.memory_reservation,
        );
        or(&mut self.default_cpu_limit, limits.cpu_limit);
        or(&mut self.default_cpu_reservation, limits.cpu_reservation);
        or(&mut self.default_gpu_type, limits.gpu_type);
    }
}

/// Where instances run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Child processes of the App Store on this machine.
    #[default]
    Local,
    /// Pods scheduled on a Kubernetes cluster.
    Kubernetes,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration that cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A setting has a value that cannot work.
    #[error("{key}: {reason}")]
    Invalid {
        /// The setting's flag name.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Where the App Store keeps bundles.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// Drive's S3 endpoint.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: Secret,
    /// The system bucket.
    pub bucket: String,
}

/// How users sign in and what their roles mean.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL (exact `iss`).
    pub issuer: String,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Browser sign-in client.
    pub client_id: String,
    /// Its secret, for a confidential client.
    pub client_secret: Option<Secret>,
    /// The CLI's public client.
    pub cli_client_id: String,
    /// Scopes asked for at sign-in.
    pub scopes: String,
    /// The redirect URL registered with the provider.
    pub redirect_url: String,
    /// Where the browser goes after sign-out, if the provider has such an endpoint.
    pub end_session_url: Option<String>,
    /// Claim path of the roles.
    pub role_claim: String,
    /// The admin role.
    pub admin_role: String,
    /// The full-access role; empty means everyone signed in.
    pub full_access_role: String,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Metadata database URL.
    pub database_url: Secret,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Bundle storage.
    pub drive: DriveConfig,
    /// Largest upload.
    pub max_bundle_bytes: u64,
    /// Archive limits.
    pub limits: Limits,
    /// Identity.
    pub oidc: OidcConfig,
    /// Whether PUBLIC visibility is allowed.
    pub public_mode: bool,
    /// Most app versions per user.
    pub app_version_limit: i64,
    /// GPU types.
    pub allowed_gpu_types: Vec<String>,
    /// Extra env allow-list regexes.
    pub env_allow: Vec<regex::Regex>,
    /// Container image allow-list regexes.
    pub custom_image_allow: Vec<regex::Regex>,
    /// Runtime versions (empty: the built-in list).
    pub runtime_versions: Vec<RuntimeVersion>,
    /// `Secure` on cookies.
    pub cookie_secure: bool,
    /// Session key file.
    pub session_key_file: Option<PathBuf>,
    /// Instances.
    pub scheduler: SchedulerConfig,
}

/// What waved needs to sign users in to an app with `EnableOIDC`.
#[derive(Debug, Clone)]
pub struct WaveOidc {
    /// The issuer.
    pub provider_url: String,
    /// The Wave client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// The provider's end-session endpoint, if any.
    pub end_session_url: Option<String>,
}

/// How instances run and what they may use.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most instances per full-access user.
    pub instance_limit: i64,
    /// Most instances per visitor.
    pub visitor_instance_limit: i64,
    /// Time limit of run, suspend, resume and terminate.
    pub write_timeout: std::time::Duration,
    /// Memory limit in bytes when app.toml sets none.
    pub default_memory_limit: u64,
    /// Domain of DOMAIN-routed instances.
    pub apps_domain: String,
    /// Routing mode of new instances (`DOMAIN` or `BASE_URL`).
    pub routing_mode: String,
    /// The local runtime's directory.
    pub instances_dir: PathBuf,
    /// The launcher program.
    pub launcher: PathBuf,
    /// Python for virtualenvs.
    pub python: PathBuf,
    /// pip's cache.
    pub pip_cache_dir: PathBuf,
    /// Shared virtualenvs.
    pub venv_cache_dir: PathBuf,
    /// Extra wheels.
    pub wheelhouse: Option<PathBuf>,
    /// No index, only local wheels.
    pub pip_offline: bool,
    /// uv instead of pip, when set.
    pub uv: Option<PathBuf>,
    /// Drive as instances reach it.
    pub drive_public_url: String,
    /// `aud` of broker tokens.
    pub broker_audience: String,
    /// waved's sign-in for apps with `EnableOIDC`, when configured.
    pub wave_oidc: Option<WaveOidc>,
    /// Lifetime of broker tokens.
    pub broker_token_ttl: std::time::Duration,
    /// Where instances run.
    pub runtime: RuntimeKind,
    /// The App Store as instances reach it; `None` for this server's own address.
    pub internal_url: Option<String>,
    /// Resources of instances whose app.toml names none.
    pub default_limits: DefaultLimits,
    /// Runtime versions and their images (empty: none configured).
    pub runtime_versions: Vec<RuntimeVersion>,
    /// Settings of the Kubernetes runtime.
    pub kubernetes: KubernetesConfig,
}

/// Resources of instances whose app.toml names none (quantities; empty for none).
#[derive(Debug, Clone, Default)]
pub struct DefaultLimits {
    /// Memory request.
    pub memory_reservation: String,
    /// CPU limit.
    pub cpu_limit: String,
    /// CPU request.
    pub cpu_reservation: String,
    /// GPU type.
    pub gpu_type: String,
}

/// Settings of the Kubernetes runtime.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// Namespace of instances; `None` for the client's own.
    pub namespace: Option<String>,
    /// Type of instance Services.
    pub service_type: String,
    /// Storage class of instance volumes; `None` for the cluster's default.
    pub storage_class: Option<String>,
    /// Kubeconfig file; `None` to infer (in-cluster, then ~/.kube/config).
    pub kube_config: Option<PathBuf>,
    /// Service account of instance pods.
    pub app_service_account: Option<String>,
    /// Mount path of the resource volume.
    pub resource_path: String,
    /// Size of `/dev/shm` for apps with `EnableSHM`.
    pub shm_size: String,
}

#[derive(Deserialize)]
struct StoredRoot {
    access_key: String,
    secret_key: String,
}

macro_rules! fill_from {
    ($args:ident, $file:ident; $($opt:ident),* ; $($vec:ident),*) => {
        $( if $args.$opt.is_none() { $args.$opt = $file.$opt.take(); } )*
        $( if $args.$vec.is_empty() { $args.$vec = std::mem::take(&mut $file.$vec); } )*
    };
}

impl Config {
    /// Resolves flags and environment (already in `args`), the TOML file and defaults.
    pub fn resolve(mut args: ServeArgs) -> Result<Self, ConfigError> {
        if let Some(path) = args.config.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let mut file: ServeArgs =
                toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })?;
            fill_from!(args, file;
                listen, data_dir, database_url, public_url, log_format, drive_endpoint,
                drive_access_key, drive_secret_key, drive_credentials_file, bucket,
                max_bundle_bytes, max_bundle_files, max_unpacked_bytes, oidc_provider_url,
                oidc_client_id, oidc_client_secret, oidc_cli_client_id, oidc_scopes,
                oidc_redirect_url, oidc_end_session_url, oidc_role_claim, oidc_admin_role_name,
                oidc_full_access_role_name, public_mode_enabled, app_version_limit,
                cookie_secure, session_key_file, instance_limit, visitor_instance_limit,
                write_timeout_seconds, default_memory_limit, apps_domain, routing_mode,
                instances_dir, launcher, python, pip_cache_dir, venv_cache_dir, wheelhouse,
                pip_offline, uv, drive_public_url, broker_audience, broker_token_ttl_secs,
                oidc_wave_client_id, oidc_wave_client_secret, runtime, internal_url,
                default_memory_reservation, default_cpu_limit, default_cpu_reservation,
                default_gpu_type, namespace, service_type, storage_class, kube_config,
                app_service_account, resource_path, shm_size;
                oidc_audience, allowed_gpu_types, env_allow, custom_image_allow, runtime_version);
            if let Some(table) = file.scheduler_table.take() {
                args.fill_from_scheduler_table(table);
            }
        }
        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let data_dir = args
            .data_dir
            .take()
            .unwrap_or_else(|| "appstore-data".into());
        let database_url = args.database_url.take().unwrap_or_else(|| {
            Secret::from(format!(
                "sqlite://{}/appstore.db?mode=rwc",
                data_dir.display()
            ))
        });
        let public_url = trim_url(
            args.public_url
                .take()
                .unwrap_or_else(|| format!("http://{listen}")),
        );
        let endpoint = trim_url(
            args.drive_endpoint
                .take()
                .unwrap_or_else(|| "http://127.0.0.1:9000".into()),
        );
        let scheduler = scheduler_config(&mut args, &data_dir, &endpoint)?;
        let (access_key, secret_key) = drive_keys(
            args.drive_access_key,
            args.drive_secret_key,
            args.drive_credentials_file.as_deref(),
        )?;
        let bucket = args.bucket.unwrap_or_else(|| "appstore".into());
        let limits = Limits {
            max_files: args.max_bundle_files.unwrap_or(10_000),
            max_unpacked_bytes: args.max_unpacked_bytes.unwrap_or(2 << 30),
            ..Limits::default()
        };
        let issuer = args
            .oidc_provider_url
            .unwrap_or_else(|| format!("{endpoint}/_drive/idp"));
        let audiences = if args.oidc_audience.is_empty() {
            vec![shared_identity::DEV_AUDIENCE.to_owned()]
        } else {
            args.oidc_audience
        };
        let oidc = OidcConfig {
            issuer: trim_url(issuer),
            audiences,
            client_id: args.oidc_client_id.unwrap_or_else(|| "appstore".into()),
            client_secret: args.oidc_client_secret,
            cli_client_id: args
                .oidc_cli_client_id
                .unwrap_or_else(|| "appstore-cli".into()),
            scopes: args
                .oidc_scopes
                .unwrap_or_else(|| "openid offline_access profile email".into()),
            redirect_url: args
                .oidc_redirect_url
                .unwrap_or_else(|| format!("{public_url}/auth/callback")),
            end_session_url: args.oidc_end_session_url,
            role_claim: args
                .oidc_role_claim
                .unwrap_or_else(|| "realm_access.roles".into()),
            admin_role: args.oidc_admin_role_name.unwrap_or_else(|| "admin".into()),
            full_access_role: args.oidc_full_access_role_name.unwrap_or_default(),
        };
        let mut scheduler = scheduler;
        scheduler.wave_oidc = match (args.oidc_wave_client_id, args.oidc_wave_client_secret) {
            (Some(client_id), Some(client_secret)) => Some(WaveOidc {
                provider_url: oidc.issuer.clone(),
                client_id,
                client_secret,
                end_session_url: oidc.end_session_url.clone(),
            }),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "oidc-wave-client-id",
                    "set both --oidc-wave-client-id and --oidc-wave-client-secret, or neither",
                ));
            }
        };
        let app_version_limit = args.app_version_limit.unwrap_or(10);
        if app_version_limit < 0 {
            return Err(invalid("app-version-limit", "must not be negative"));
        }
        Ok(Self {
            scheduler,
            listen,
            database_url,
            public_url,
            log_format: args.log_format.unwrap_or(LogFormat::Text),
            drive: DriveConfig {
                endpoint,
                access_key,
                secret_key,
                bucket,
            },
            max_bundle_bytes: args.max_bundle_bytes.unwrap_or(512 << 20),
            limits,
            oidc,
            public_mode: args.public_mode_enabled.unwrap_or(false),
            app_version_limit,
            allowed_gpu_types: args.allowed_gpu_types,
            env_allow: regexes("env-allow", &args.env_allow)?,
            custom_image_allow: regexes("custom-image-allow", &args.custom_image_allow)?,
            runtime_versions: args.runtime_version,
            cookie_secure: args.cookie_secure.unwrap_or(true),
            session_key_file: args.session_key_file,
            data_dir,
        })
    }
}

fn scheduler_config(
    args: &mut ServeArgs,
    data_dir: &Path,
    drive_endpoint: &str,
) -> Result<SchedulerConfig, ConfigError> {
    let instance_limit = args.instance_limit.unwrap_or(10);
    let visitor_instance_limit = args.visitor_instance_limit.unwrap_or(5);
    if instance_limit < 0 || visitor_instance_limit < 0 {
        return Err(invalid("instance-limit", "must not be negative"));
    }
    let memory = args
        .default_memory_limit
        .take()
        .unwrap_or_else(|| "2Gi".into());
    let default_memory_limit =
        crate::bundle::manifest::quantity_bytes(&memory).ok_or_else(|| {
            invalid(
                "default-memory-limit",
                format!("{memory:?} is not a quantity like 512Mi or 2Gi"),
            )
        })?;
    let routing_mode = args.routing_mode.take().unwrap_or_else(|| "DOMAIN".into());
    if routing_mode != "DOMAIN" && routing_mode != "BASE_URL" {
        return Err(invalid("routing-mode", "must be DOMAIN or BASE_URL"));
    }
    let apps_domain = args
        .apps_domain
        .take()
        .unwrap_or_else(|| "localhost".into());
    if apps_domain.is_empty() || apps_domain.contains(['/', ':', ' ']) {
        return Err(invalid(
            "apps-domain",
            "must be a host name such as apps.example.com",
        ));
    }
    let launcher = args.launcher.take().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("appstore-launcher")))
            .unwrap_or_else(|| "appstore-launcher".into())
    });
    Ok(SchedulerConfig {
        instance_limit,
        visitor_instance_limit,
        write_timeout: std::time::Duration::from_secs(
            args.write_timeout_seconds.unwrap_or(300).max(1),
        ),
        default_memory_limit,
        apps_domain: apps_domain.to_ascii_lowercase(),
        routing_mode,
        instances_dir: args
            .instances_dir
            .take()
            .unwrap_or_else(|| data_dir.join("instances")),
        launcher,
        python: args.python.take().unwrap_or_else(|| "python3".into()),
        pip_cache_dir: args
            .pip_cache_dir
            .take()
            .unwrap_or_else(|| data_dir.join("pip-cache")),
        venv_cache_dir: args
            .venv_cache_dir
            .take()
            .unwrap_or_else(|| data_dir.join("venvs")),
        wheelhouse: args.wheelhouse.take(),
        pip_offline: args.pip_offline.unwrap_or(false),
        uv: args.uv.take(),
        drive_public_url: trim_url(
            args.drive_public_url
                .take()
                .unwrap_or_else(|| drive_endpoint.to_owned()),
        ),
        broker_audience: args
            .broker_audience
            .take()
            .unwrap_or_else(|| "drive".into()),
        broker_token_ttl: std::time::Duration::from_secs(
            args.broker_token_ttl_secs.unwrap_or(900).max(1),
        ),
        wave_oidc: None,
        runtime: args.runtime.unwrap_or_default(),
        internal_url: args.internal_url.take().map(trim_url),
        default_limits: DefaultLimits {
            memory_reservation: quantity(
                "default-memory-reservation",
                args.default_memory_reservation
                    .take()
                    .unwrap_or_else(|| "512Mi".into()),
            )?,
            cpu_limit: quantity(
                "default-cpu-limit",
                args.default_cpu_limit.take().unwrap_or_default(),
            )?,
            cpu_reservation: quantity(
                "default-cpu-reservation",
                args.default_cpu_reservation.take().unwrap_or_default(),
            )?,
            gpu_type: args.default_gpu_type.take().unwrap_or_default(),
        },
        runtime_versions: Vec::new(),
        kubernetes: KubernetesConfig {
            namespace: args.namespace.take().filter(|n| !n.is_empty()),
            service_type: args
                .service_type
                .take()
                .unwrap_or_else(|| "ClusterIP".into()),
            storage_class: args.storage_class.take().filter(|c| !c.is_empty()),
            kube_config: args.kube_config.take(),
            app_service_account: args.app_service_account.take().filter(|a| !a.is_empty()),
            resource_path: args
                .resource_path
                .take()
                .unwrap_or_else(|| "/resources".into()),
            shm_size: quantity(
                "shm-size",
                args.shm_size.take().unwrap_or_else(|| "2Gi".into()),
            )?,
        },
    })
}

/// `value` if it is empty or a Kubernetes quantity.
fn quantity(key: &'static str, value: String) -> Result<String, ConfigError> {
    if value.is_empty() || crate::bundle::manifest::quantity_bytes(&value).is_some() {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!("{value:?} is not a quantity like 500m, 512Mi or 2"),
        ))
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn trim_url(url: String) -> String {
    url.trim_end_matches('/').to_owned()
}

fn regexes(key: &'static str, patterns: &[String]) -> Result<Vec<regex::Regex>, ConfigError> {
    patterns
        .iter()
        .map(|p| regex::Regex::new(p).map_err(|e| invalid(key, format!("{p:?}: {e}"))))
        .collect()
}

/// The Drive key pair: both given, or read from Drive's generated root-credentials file.
fn drive_keys(
    access: Option<String>,
    secret: Option<Secret>,
    file: Option<&Path>,
) -> Result<(String, Secret), ConfigError> {
    match (access, secret) {
        (Some(a), Some(s)) => return Ok((a, s)),
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                "drive-access-key",
                "set both --drive-access-key and --drive-secret-key, or neither",
            ));
        }
        (None, None) => {}
    }
    let path = file.map_or_else(
        || PathBuf::from("data/root-credentials.toml"),
        Path::to_owned,
    );
    let text = std::fs::read_to_string(&path).map_err(|e| {
        invalid(
            "drive-access-key",
            format!(
                "no Drive key pair given and {} cannot be read ({e}); set \
                 APPSTORE_DRIVE_ACCESS_KEY and APPSTORE_DRIVE_SECRET_KEY",
                path.display()
            ),
        )
    })?;
    let stored: StoredRoot = toml::from_str(&text)
        .map_err(|e| invalid("drive-credentials-file", format!("{}: {e}", path.display())))?;
    Ok((stored.access_key, Secret::from(stored.secret_key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_keys() -> ServeArgs {
        ServeArgs {
            drive_access_key: Some("ak".into()),
            drive_secret_key: Some(Secret::from("secret-key".to_owned())),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_fit_one_machine() {
        let c = Config::resolve(with_keys()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.oidc.issuer, "http://127.0.0.1:9000/_drive/idp");
        assert_eq!(c.oidc.redirect_url, "http://127.0.0.1:8080/auth/callback");
        assert_eq!(c.app_version_limit, 10);
        assert!(c.cookie_secure && !c.public_mode);
        assert!(c.database_url.expose().starts_with("sqlite://"));
    }

    #[test]
    fn file_fills_what_flags_leave_and_names_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appstore.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nbucket = \"apps\"\napp_version_limit = 3\n\
             env_allow = [\"^H2O_WAVE_X$\"]\n\
             [[runtime_version]]\nName = \"py\"\nImage = \"python:3.12\"\nDefault = true\n",
        )
        .unwrap();
        let mut args = with_keys();
        args.config = Some(path.clone());
        args.bucket = Some("flag-wins".into());
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.drive.bucket, "flag-wins");
        assert_eq!(c.app_version_limit, 3);
        assert_eq!(c.env_allow.len(), 1);
        assert_eq!(c.runtime_versions[0].name, "py");

        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let mut args = with_keys();
        args.config = Some(path);
        let e = Config::resolve(args).unwrap_err().to_string();
        assert!(e.contains("no_such_key"), "{e}");
    }

    #[test]
    fn the_scheduler_table_takes_h2o_ai_clouds_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appstore.toml");
        std::fs::write(
            &path,
            "runtime = \"kubernetes\"\nnamespace = \"snake-wins\"\n\
             [Scheduler]\nInstanceLimit = 3\nVisitorInstanceLimit = 1\nAppVersionLimit = 4\n\
             WriteTimeoutSeconds = 60\nResourcePath = \"/res\"\nNamespace = \"apps\"\n\
             ServiceType = \"NodePort\"\nStorageClass = \"fast\"\nKubeConfig = \"/k\"\n\
             AppServiceAccount = \"apps\"\nAllowedGPUTypes = [\"a100\"]\n\
             [Scheduler.DefaultRuntimeLimit]\nMemoryLimit = \"4Gi\"\nMemoryReservation = \"1Gi\"\n\
             CPULimit = \"2\"\nCPUReservation = \"500m\"\nGPUType = \"a100\"\n",
        )
        .unwrap();
        let mut args = with_keys();
        args.config = Some(path.clone());
        args.instance_limit = Some(7);
        let c = Config::resolve(args).unwrap();
        let s = &c.scheduler;
        assert_eq!(s.runtime, RuntimeKind::Kubernetes);
        assert_eq!(s.instance_limit, 7, "a flag wins over the file");
        assert_eq!(s.visitor_instance_limit, 1);
        assert_eq!(c.app_version_limit, 4);
        assert_eq!(s.write_timeout.as_secs(), 60);
        assert_eq!(s.default_memory_limit, 4 << 30);
        let d = &s.default_limits;
        assert_eq!(
            (
                &*d.memory_reservation,
                &*d.cpu_limit,
                &*d.cpu_reservation,
                &*d.gpu_type
            ),
            ("1Gi", "2", "500m", "a100")
        );
        let k = &s.kubernetes;
        assert_eq!(k.namespace.as_deref(), Some("snake-wins"));
        assert_eq!(k.service_type, "NodePort");
        assert_eq!(k.storage_class.as_deref(), Some("fast"));
        assert_eq!(k.kube_config.as_deref(), Some(Path::new("/k")));
        assert_eq!(k.app_service_account.as_deref(), Some("apps"));
        assert_eq!(k.resource_path, "/res");
        assert_eq!(c.allowed_gpu_types, ["a100"]);

        std::fs::write(&path, "[Scheduler]\nInstanceLimt = 3\n").unwrap();
        let mut args = with_keys();
        args.config = Some(path.clone());
        let e = Config::resolve(args).unwrap_err().to_string();
        assert!(e.contains("InstanceLimt"), "{e}");
        std::fs::write(
            &path,
            "[Scheduler.DefaultRuntimeLimit]\nCPULimit = \"lots\"\n",
        )
        .unwrap();
        let mut args = with_keys();
        args.config = Some(path);
        let e = Config::resolve(args).unwrap_err().to_string();
        assert!(e.contains("default-cpu-limit"), "{e}");
    }

    #[test]
    fn drive_keys_come_in_pairs_or_from_drives_file() {
        let args = ServeArgs {
            drive_access_key: Some("only".into()),
            ..ServeArgs::default()
        };
        assert!(Config::resolve(args).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("root-credentials.toml");
        std::fs::write(&file, "access_key = \"AK\"\nsecret_key = \"SK-secret\"\n").unwrap();
        let args = ServeArgs {
            drive_credentials_file: Some(file),
            ..ServeArgs::default()
        };
        let c = Config::resolve(args).unwrap();
        assert_eq!(c.drive.access_key, "AK");
        assert_eq!(c.drive.secret_key.expose(), "SK-secret");
        assert!(!format!("{c:?}").contains("SK-secret"));
    }
}
