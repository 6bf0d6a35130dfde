//! The scheduler: runs apps as instances for their users, on a [`Runtime`]. It keeps one row
//! per instance (owner, visibility, routing mode, the hash of the instance token) and takes
//! each running state from the runtime. Every instance gets its user's Drive identity
//! through the token broker ([`crate::broker`]): an instance token, exchanged for short-lived
//! access tokens that Drive's STS trusts, revoked when the instance is terminated.

pub mod kubernetes;
pub mod limits;
pub mod local;
pub mod records;
pub mod revocation;
pub mod runtime;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shared_identity::Principal;

use crate::authz::{Caller, Denied};
use crate::bundle::manifest::{AppMode, Lifecycle, Manifest, RoutingMode};
use crate::config::SchedulerConfig;
use crate::repository::{AppRecord, RepoError, Repository, Visibility, now_ms};
use records::{Records, Slot};
use revocation::Revoker;
use runtime::{InstanceRecord, InstanceSpec, Resources, Runtime, RuntimeError, Status, Volumes};

/// Prefix of instance tokens, so they are recognisable in a leak scan.
pub const TOKEN_PREFIX: &str = "ait_";

/// Why the scheduler refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// No such app or instance for this caller.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("not allowed")]
    Denied(Denied),
    /// The caller has as many instances as allowed.
    #[error("{who} may have at most {limit} instances; terminate one first")]
    Limit {
        /// The limit.
        limit: i64,
        /// Which limit (`a user`, `a visitor`).
        who: &'static str,
    },
    /// The app cannot have instances here.
    #[error("{0}")]
    NotRunnable(String),
    /// A request value is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The runtime took longer than the write timeout.
    #[error("the runtime did not finish within {0} s")]
    Timeout(u64),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The database failed.
    #[error(transparent)]
    Repository(#[from] RepoError),
}

impl From<sqlx::Error> for ScheduleError {
    fn from(e: sqlx::Error) -> Self {
        ScheduleError::Repository(e.into())
    }
}

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Its id.
    pub id: String,
    /// The app's id.
    pub app_id: String,
    /// The app's name.
    pub app_name: String,
    /// The app's version.
    pub app_version: String,
    /// The app's title.
    pub app_title: String,
    /// Owner's subject.
    pub owner_subject: String,
    /// Owner's display name.
    pub owner: String,
    /// Who may open it.
    pub visibility: Visibility,
    /// `DOMAIN` or `BASE_URL`.
    pub routing_mode: String,
    /// Whether its owner suspended it.
    pub suspended: bool,
    /// Creation time (unix ms).
    pub created_at: i64,
    /// Last change (unix ms).
    pub updated_at: i64,
    /// The owner's principal when it started.
    #[serde(skip)]
    pub principal: Principal,
}

/// SHA-256 of an instance token, as stored.
pub fn token_hash(token: &str) -> String {
    hex_simd::encode_to_string(Sha256::digest(token.as_bytes()), hex_simd::AsciiCase::Lower)
}

/// The persistent volumes an app's `[Runtime]` asks for.
fn volumes_of(runtime: &crate::bundle::manifest::Runtime) -> Volumes {
    Volumes {
        mount: runtime.volume_mount.clone(),
        size: runtime.volume_size.clone(),
        resource_size: runtime.resource_volume_size.clone(),
    }
}

/// Where the scheduler's instances are reached and what they are told.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The App Store's public URL (no trailing slash).
    pub public_url: String,
}

/// Runs and manages instances.
#[derive(Clone)]
pub struct Scheduler {
    repo: Repository,
    records: Arc<dyn Records>,
    runtime: Arc<dyn Runtime>,
    config: SchedulerConfig,
    endpoints: Endpoints,
    revoker: Revoker,
    public_mode: bool,
    routes: Arc<std::sync::Mutex<RouteCache>>,
}

/// Instance rows the router read lately, so that it does not query the database for every
/// request: changes made through this replica replace them at once, other replicas' within
/// [`ROUTE_TTL`].
type RouteCache = std::collections::HashMap<String, (std::time::Instant, Option<Instance>)>;

/// Pause between attempts to remove what a failed start left behind.
const CLEAN_UP_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the router trusts an instance row it read.
const ROUTE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries at which the route cache is emptied (unknown ids are cached too).
const ROUTE_CACHE_MAX: usize = 10_000;

impl Scheduler {
    /// A scheduler over `runtime`, keeping its instance records in `records`.
    pub fn new(
        repo: Repository,
        records: Arc<dyn Records>,
        runtime: Arc<dyn Runtime>,
        config: SchedulerConfig,
        endpoints: Endpoints,
        revoker: Revoker,
        public_mode: bool,
    ) -> Self {
        Self {
            repo,
            records,
            runtime,
            config,
            endpoints,
            revoker,
            public_mode,
            routes: Arc::default(),
        }
    }

    /// An instance by id for the router: read from the database at most once per
    /// [`ROUTE_TTL`].
    pub async fn routed(&self, id: &str) -> Result<Option<Instance>, ScheduleError> {
        if let Some((read, instance)) = self.routes.lock().expect("route cache").get(id)
            && read.elapsed() < ROUTE_TTL
        {
            return Ok(instance.clone());
        }
        let instance = self.get(id).await?;
        let mut routes = self.routes.lock().expect("route cache");
        if routes.len() >= ROUTE_CACHE_MAX {
            routes.clear();
        }
        routes.insert(id.to_owned(), (std::time::Instant::now(), instance.clone()));
        Ok(instance)
    }

    fn forget_route(&self, id: &str) {
        self.routes.lock().expect("route cache").remove(id);
    }

    /// The runtime instances run on.
    pub fn runtime(&self) -> &dyn Runtime {
        self.runtime.as_ref()
    }

    /// The App Store's public URL.
    pub fn public_url(&self) -> &str {
        &self.endpoints.public_url
    }

    /// The Wave client waved signs users in with, for `EnableOIDC` apps, if configured.
    pub fn wave_oidc(&self) -> Option<&crate::config::WaveOidc> {
        self.config.wave_oidc.as_ref()
    }

    /// The domain of DOMAIN-routed instances.
    pub fn apps_domain(&self) -> &str {
        &self.config.apps_domain
    }

    /// The URL an instance is opened at.
    pub fn url(&self, instance: &Instance) -> String {
        let public = &self.endpoints.public_url;
        if instance.routing_mode == "BASE_URL" {
            format!("{public}/instance/{}/", instance.id)
        } else {
            let (scheme, rest) = public.split_once("://").unwrap_or(("http", public));
            let port = rest
                .rsplit_once(':')
                .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                .map_or(String::new(), |(_, p)| format!(":{p}"));
            format!(
                "{scheme}://{}.{}{port}/",
                instance.id, self.config.apps_domain
            )
        }
    }

    async fn timed<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, ScheduleError> {
        tokio::time::timeout(self.config.write_timeout, work)
            .await
            .map_err(|_| ScheduleError::Timeout(self.config.write_timeout.as_secs()))?
            .map_err(ScheduleError::from)
    }

    /// Starts an instance of app `app_id` for `caller`; returns it with its instance token.
    pub async fn run(
        &self,
        caller: &Caller,
        app_id: &str,
        visibility: Option<Visibility>,
        routing_mode: Option<&str>,
    ) -> Result<Instance, ScheduleError> {
        let user = caller.user().map_err(ScheduleError::Denied)?;
        let app = self
            .repo
            .get(caller, app_id)
            .await?
            .ok_or(ScheduleError::NotFound("app"))?;
        let manifest: Manifest = serde_json::from_value(app.manifest.clone())
            .map_err(|_| RepoError::Corrupt(format!("app {}", app.id)))?;
        let runtime = match (&manifest.app.instance_lifecycle, &manifest.runtime) {
            (Lifecycle::Link, _) | (_, None) => {
                return Err(ScheduleError::NotRunnable(
                    "a LINK app has no instances; open its link".into(),
                ));
            }
            (Lifecycle::Managed, _)
                if !(user.admin || app.owner_subject == user.principal.subject) =>
            {
                return Err(ScheduleError::Denied(Denied::Forbidden));
            }
            (_, Some(r)) => r,
        };
        if runtime.enable_oidc && self.config.wave_oidc.is_none() {
            return Err(ScheduleError::NotRunnable(
                "the app signs users in with EnableOIDC, and this server has no Wave OIDC \
                 client (--oidc-wave-client-id)"
                    .into(),
            ));
        }
        if runtime.app_mode != AppMode::Wave {
            return Err(ScheduleError::NotRunnable(format!(
                "this server runs Wave apps only, not AppMode {}",
                runtime.app_mode.as_str()
            )));
        }
        let visibility = visibility.unwrap_or(Visibility::Private);
        if visibility == Visibility::Public && !self.public_mode {
            return Err(ScheduleError::Invalid(
                "PUBLIC visibility is turned off on this server".into(),
            ));
        }
        let routing_mode = match routing_mode {
            Some(m @ ("DOMAIN" | "BASE_URL")) => m.to_owned(),
            Some(other) => {
                return Err(ScheduleError::Invalid(format!(
                    "routingMode must be DOMAIN or BASE_URL, not {other:?}"
                )));
            }
            None if manifest
                .runtime
                .as_ref()
                .is_some_and(|r| r.routing_mode == RoutingMode::BaseUrl) =>
            {
                "BASE_URL".to_owned()
            }
            None => self.config.routing_mode.clone(),
        };
        let (limit, who) = if user.full_access {
            (self.config.instance_limit, "a user")
        } else {
            (self.config.visitor_instance_limit, "a visitor")
        };
        let image = self.image(&runtime.runtime_version)?;
        let id = crate::import::new_id();
        let token = format!(
            "{TOKEN_PREFIX}{}",
            shared_identity::random_string(40, shared_identity::ALNUM)
        );
        let now = now_ms();
        let principal = &user.principal;
        let instance = Instance {
            id: id.clone(),
            app_id: app.id.clone(),
            app_name: app.name.clone(),
            app_version: app.version.clone(),
            app_title: app.title.clone(),
            owner_subject: principal.subject.clone(),
            owner: principal.display_name().to_owned(),
            visibility,
            routing_mode,
            suspended: false,
            created_at: now,
            updated_at: now,
            principal: principal.clone(),
        };
        let hash = token_hash(&token);
        if self.records.insert(&instance, &hash, limit).await? == Slot::Full {
            return Err(ScheduleError::Limit { limit, who });
        }
        self.forget_route(&id);
        let defaults = &self.config.default_limits;
        let spec_memory = crate::bundle::manifest::quantity_bytes(&runtime.memory_limit)
            .unwrap_or(self.config.default_memory_limit);
        let or = |value: &str, default: &str| {
            Some(if value.is_empty() { default } else { value }.to_owned())
                .filter(|v| !v.is_empty())
        };
        let spec = InstanceSpec {
            id: id.clone(),
            module: runtime.module.clone(),
            memory_limit: spec_memory,
            env: self.environment(&app, &manifest, &instance, &token),
            image,
            resources: Resources {
                memory_limit: or(&runtime.memory_limit, "")
                    .unwrap_or_else(|| spec_memory.to_string()),
                memory_reservation: or(&runtime.memory_reservation, &defaults.memory_reservation),
                cpu_limit: or(&runtime.cpu_limit, &defaults.cpu_limit),
                cpu_reservation: or(&runtime.cpu_reservation, &defaults.cpu_reservation),
                gpu_count: u32::try_from(runtime.gpu_count).unwrap_or(0),
                gpu_type: or(&runtime.gpu_type, &defaults.gpu_type),
            },
            volumes: volumes_of(runtime),
            enable_shm: runtime.enable_shm,
            record: Some(InstanceRecord {
                instance: instance.clone(),
                token_hash: hash,
            }),
        };
        if let Err(e) = self.timed(self.runtime.start(spec)).await {
            tracing::error!(instance = %id, error = %e, "the runtime could not start an instance");
            self.abandon(&id, &principal.subject).await?;
            return Err(e);
        }
        if self.records.settle(&instance, limit).await? == Slot::Full {
            self.abandon(&id, &principal.subject).await?;
            return Err(ScheduleError::Limit { limit, who });
        }
        tracing::info!(instance = %id, app = %app.id, owner = %principal.subject, "instance started");
        Ok(instance)
    }

    /// The environment of an instance (H2O AI Cloud's variables, AWS web identity, the
    /// app's literal `[[Env]]`), never the user's own tokens.
    fn environment(
        &self,
        app: &AppRecord,
        manifest: &Manifest,
        instance: &Instance,
        token: &str,
    ) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for var in &manifest.env {
            if let Some(value) = &var.value {
                env.insert(var.name.clone(), value.clone());
            }
        }
        let public = &self.endpoints.public_url;
        let drive = &self.config.drive_public_url;
        let base_url = if instance.routing_mode == "BASE_URL" {
            format!("/instance/{}/", instance.id)
        } else {
            "/".to_owned()
        };
        if let (Some(wave), Some(true)) = (
            &self.config.wave_oidc,
            manifest.runtime.as_ref().map(|r| r.enable_oidc),
        ) {
            let callback = format!("{}_auth/callback", self.url(instance));
            for (k, v) in [
                ("H2O_WAVE_OIDC_PROVIDER_URL", wave.provider_url.clone()),
                ("H2O_WAVE_OIDC_CLIENT_ID", wave.client_id.clone()),
                (
                    "H2O_WAVE_OIDC_CLIENT_SECRET",
                    wave.client_secret.expose().to_owned(),
                ),
                ("H2O_WAVE_OIDC_REDIRECT_URL", callback),
                ("H2O_WAVE_OIDC_SCOPES", "openid,profile".to_owned()),
            ] {
                env.insert(k.to_owned(), v);
            }
            if let Some(end) = &wave.end_session_url {
                env.insert("H2O_WAVE_OIDC_END_SESSION_URL".to_owned(), end.clone());
            }
        }
        let token_file = self.runtime.token_file(&instance.id);
        let volume = manifest
            .runtime
            .as_ref()
            .and_then(|r| self.runtime.volume_dir(&instance.id, &volumes_of(r)));
        if let Some(volume) = volume {
            env.insert(
                "H2O_CLOUD_VOLUME_PATH".to_owned(),
                volume.display().to_string(),
            );
        }
        for (k, v) in [
            ("H2O_CLOUD_ENVIRONMENT", public.clone()),
            (
                "H2O_CLOUD_DISCOVERY",
                format!("{public}/broker/.ai.h2o.cloud.discovery"),
            ),
            ("H2O_CLOUD_CLIENT_PLATFORM_TOKEN", token.to_owned()),
            ("H2O_CLOUD_INSTANCE_ID", instance.id.clone()),
            ("H2O_CLOUD_APP_ID", app.id.clone()),
            ("H2O_CLOUD_APP_NAME", app.name.clone()),
            ("H2O_CLOUD_APP_VERSION", app.version.clone()),
            ("H2O_WAVE_BASE_URL", base_url),
            ("AWS_ENDPOINT_URL_S3", drive.clone()),
            ("AWS_ENDPOINT_URL_STS", drive.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::000000000000:role/appstore-instance".to_owned(),
            ),
            ("AWS_ROLE_SESSION_NAME", format!("instance-{}", instance.id)),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
        ] {
            env.insert(k.to_owned(), v);
        }
        env
    }

    /// Removes what a failed start left behind; while the runtime fails (a slow or
    /// unreachable cluster), retried in the background every [`CLEAN_UP_PAUSE`] for a minute.
    async fn clean_up(&self, id: &str) {
        let gone =
            |r: &Result<(), RuntimeError>| matches!(r, Ok(()) | Err(RuntimeError::Unknown(_)));
        if gone(&self.runtime.terminate(id).await) {
            return;
        }
        let (runtime, id) = (Arc::clone(&self.runtime), id.to_owned());
        tokio::spawn(async move {
            for attempt in 1..=12 {
                tokio::time::sleep(CLEAN_UP_PAUSE).await;
                let result = runtime.terminate(&id).await;
                if gone(&result) {
                    return;
                }
                if let (12, Err(e)) = (attempt, result) {
                    tracing::error!(instance = %id, error = %e, "what a failed start made is left behind");
                }
            }
        });
    }

    /// Gives up an instance whose start failed: what it made and its record.
    async fn abandon(&self, id: &str, owner: &str) -> Result<(), ScheduleError> {
        self.clean_up(id).await;
        self.forget(id, owner).await
    }

    async fn forget(&self, id: &str, owner: &str) -> Result<(), ScheduleError> {
        self.records.remove(id, owner).await?;
        self.forget_route(id);
        Ok(())
    }

    /// The image of runtime version `name` (or alias; empty: the default one).
    fn image(&self, name: &str) -> Result<String, ScheduleError> {
        let versions = &self.config.runtime_versions;
        let found = if name.is_empty() {
            versions.iter().find(|v| v.default)
        } else {
            versions
                .iter()
                .find(|v| v.name == name || v.aliases.iter().any(|a| a == name))
        };
        match found {
            Some(v) => Ok(v.image.clone()),
            None if versions.is_empty() => Ok(String::new()),
            None => Err(ScheduleError::NotRunnable(format!(
                "runtime version {name:?} is not configured on this server"
            ))),
        }
    }

    /// An instance by id, whoever asks (the router and the API decide who may see it).
    pub async fn get(&self, id: &str) -> Result<Option<Instance>, ScheduleError> {
        self.records.get(id).await
    }

    /// The instance an instance token belongs to.
    pub async fn by_token(&self, token: &str) -> Result<Option<Instance>, ScheduleError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        self.records.by_token_hash(&token_hash(token)).await
    }

    /// Instances of `caller` (all users' for an admin asking for `all`), optionally of one app.
    pub async fn list(
        &self,
        caller: &Caller,
        all: bool,
        app: Option<&str>,
    ) -> Result<Vec<Instance>, ScheduleError> {
        let user = caller.user().map_err(ScheduleError::Denied)?;
        if all && !user.admin {
            return Err(ScheduleError::Denied(Denied::Forbidden));
        }
        let owner = (!all).then_some(user.principal.subject.as_str());
        self.records.list(owner, app).await
    }

    /// An instance `caller` may manage (its owner or an admin), or why not.
    pub async fn managed(&self, caller: &Caller, id: &str) -> Result<Instance, ScheduleError> {
        let user = caller.user().map_err(ScheduleError::Denied)?;
        let instance = self
            .get(id)
            .await?
            .ok_or(ScheduleError::NotFound("instance"))?;
        if instance.owner_subject == user.principal.subject || user.admin {
            Ok(instance)
        } else if self.may_open(caller, &instance) {
            Err(ScheduleError::Denied(Denied::Forbidden))
        } else {
            Err(ScheduleError::NotFound("instance"))
        }
    }

    /// Whether `caller` may open (use) `instance`: PRIVATE its owner only, ALL_USERS any
    /// signed-in user, PUBLIC anyone.
    pub fn may_open(&self, caller: &Caller, instance: &Instance) -> bool {
        match (instance.visibility, caller) {
            (Visibility::Public, _) => self.public_mode,
            (Visibility::AllUsers, Caller::User(_)) => true,
            (Visibility::Private, Caller::User(u)) => u.principal.subject == instance.owner_subject,
            (_, Caller::Anonymous) => false,
        }
    }

    /// The runtime's status of an instance.
    pub async fn status(&self, instance: &Instance) -> Status {
        self.runtime.status(&instance.id).await.unwrap_or(Status {
            phase: runtime::Phase::Pending,
            reason: Some("not known to the runtime".into()),
            restarts: 0,
            last_failure: None,
        })
    }

    /// Changes who may open an instance.
    pub async fn set_visibility(
        &self,
        caller: &Caller,
        id: &str,
        visibility: Visibility,
    ) -> Result<Instance, ScheduleError> {
        let instance = self.managed(caller, id).await?;
        if visibility == Visibility::Public && !self.public_mode {
            return Err(ScheduleError::Invalid(
                "PUBLIC visibility is turned off on this server".into(),
            ));
        }
        self.records
            .set_visibility(&instance.id, visibility)
            .await?;
        self.forget_route(&instance.id);
        Ok(Instance {
            visibility,
            ..instance
        })
    }

    async fn set_suspended(&self, id: &str, suspended: bool) -> Result<(), ScheduleError> {
        self.records.set_suspended(id, suspended).await?;
        self.forget_route(id);
        Ok(())
    }

    /// Stops an instance's processes, keeping its volume.
    pub async fn suspend(&self, caller: &Caller, id: &str) -> Result<Instance, ScheduleError> {
        let instance = self.managed(caller, id).await?;
        self.timed(self.runtime.suspend(&instance.id)).await?;
        self.set_suspended(&instance.id, true).await?;
        tracing::info!(instance = %instance.id, "instance suspended");
        Ok(Instance {
            suspended: true,
            ..instance
        })
    }

    /// Starts a suspended instance again.
    pub async fn resume(&self, caller: &Caller, id: &str) -> Result<Instance, ScheduleError> {
        let instance = self.managed(caller, id).await?;
        self.timed(self.runtime.resume(&instance.id)).await?;
        self.set_suspended(&instance.id, false).await?;
        tracing::info!(instance = %instance.id, "instance resumed");
        Ok(Instance {
            suspended: false,
            ..instance
        })
    }

    /// Stops an instance for good, forgets it, and revokes every credential minted for it.
    pub async fn terminate(&self, caller: &Caller, id: &str) -> Result<(), ScheduleError> {
        let instance = self.managed(caller, id).await?;
        self.forget(&instance.id, &instance.owner_subject).await?;
        self.revoker.revoke(&instance.id).await;
        self.timed(self.runtime.terminate(&instance.id)).await?;
        tracing::info!(instance = %instance.id, "instance terminated");
        Ok(())
    }
}
