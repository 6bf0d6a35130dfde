//! The scheduler: runs apps as instances for their users, on a [`Runtime`]. It keeps one row
//! per instance (owner, visibility, routing mode, the hash of the instance token) and takes
//! each running state from the runtime. Every instance gets its user's Drive identity
//! through the token broker ([`crate::broker`]): an instance token, exchanged for short-lived
//! access tokens that Drive's STS trusts, revoked when the instance is terminated.

pub mod limits;
pub mod local;
pub mod revocation;
pub mod runtime;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use shared_identity::Principal;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::authz::{Caller, Denied};
use crate::bundle::manifest::{AppMode, Lifecycle, Manifest, RoutingMode};
use crate::config::SchedulerConfig;
use crate::repository::{AppRecord, RepoError, Repository, Visibility, now_ms};
use revocation::Revoker;
use runtime::{InstanceSpec, Runtime, RuntimeError, Status};

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

const COLUMNS: &str = "i.id, i.app_id, a.name AS app_name, a.version AS app_version, \
    a.title AS app_title, i.owner_subject, i.owner_name, i.principal, i.visibility, \
    i.routing_mode, i.suspended, i.created_at, i.updated_at";

fn instance_from_row(row: &AnyRow) -> Result<Instance, ScheduleError> {
    let id: String = row.try_get("id")?;
    let corrupt = || ScheduleError::Repository(RepoError::Corrupt(format!("instance {id}")));
    let principal: String = row.try_get("principal")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(Instance {
        app_id: row.try_get("app_id")?,
        app_name: row.try_get("app_name")?,
        app_version: row.try_get("app_version")?,
        app_title: row.try_get("app_title")?,
        owner_subject: row.try_get("owner_subject")?,
        owner: row.try_get("owner_name")?,
        principal: serde_json::from_str(&principal).map_err(|_| corrupt())?,
        visibility: Visibility::parse(&visibility).ok_or_else(corrupt)?,
        routing_mode: row.try_get("routing_mode")?,
        suspended: row.try_get::<i64, _>("suspended")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}

/// SHA-256 of an instance token, as stored.
pub fn token_hash(token: &str) -> String {
    hex_simd::encode_to_string(Sha256::digest(token.as_bytes()), hex_simd::AsciiCase::Lower)
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

/// How long the router trusts an instance row it read.
const ROUTE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries at which the route cache is emptied (unknown ids are cached too).
const ROUTE_CACHE_MAX: usize = 10_000;

impl Scheduler {
    /// A scheduler over `runtime`.
    pub fn new(
        repo: Repository,
        runtime: Arc<dyn Runtime>,
        config: SchedulerConfig,
        endpoints: Endpoints,
        revoker: Revoker,
        public_mode: bool,
    ) -> Self {
        Self {
            repo,
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
                "the local runtime runs Wave apps only, not AppMode {}",
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
        let id = crate::import::new_id();
        let token = format!(
            "{TOKEN_PREFIX}{}",
            shared_identity::random_string(40, shared_identity::ALNUM)
        );
        let now = now_ms();
        let principal = &user.principal;
        let mut tx = self.repo.pool().begin().await?;
        sqlx::query(
            "INSERT INTO app_owners (subject, apps) VALUES ($1, 0) ON CONFLICT (subject) DO NOTHING",
        )
        .bind(&principal.subject)
        .execute(&mut *tx)
        .await?;
        let slot = sqlx::query(
            "UPDATE app_owners SET instances = instances + 1 WHERE subject = $1 AND instances < $2",
        )
        .bind(&principal.subject)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        if slot.rows_affected() == 0 {
            return Err(ScheduleError::Limit { limit, who });
        }
        sqlx::query(
            "INSERT INTO instances (id, app_id, owner_subject, owner_name, principal, visibility, \
             routing_mode, token_hash, suspended, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9)",
        )
        .bind(&id)
        .bind(&app.id)
        .bind(&principal.subject)
        .bind(principal.display_name())
        .bind(serde_json::to_string(principal).unwrap_or_default())
        .bind(visibility.as_str())
        .bind(&routing_mode)
        .bind(token_hash(&token))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.forget_route(&id);
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
        let spec = InstanceSpec {
            id: id.clone(),
            module: runtime.module.clone(),
            memory_limit: crate::bundle::manifest::quantity_bytes(&runtime.memory_limit)
                .unwrap_or(self.config.default_memory_limit),
            env: self.environment(&app, &manifest, &instance, &token),
        };
        if let Err(e) = self.timed(self.runtime.start(spec)).await {
            tracing::error!(instance = %id, error = %e, "the runtime could not start an instance");
            let _ = self.runtime.terminate(&id).await;
            self.forget(&id, &principal.subject).await?;
            return Err(e);
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
        let volume = self.runtime.volume_dir(&instance.id);
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
            ("H2O_CLOUD_VOLUME_PATH", volume.display().to_string()),
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

    async fn forget(&self, id: &str, owner: &str) -> Result<(), ScheduleError> {
        let mut tx = self.repo.pool().begin().await?;
        let gone = sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() > 0 {
            sqlx::query(
                "UPDATE app_owners SET instances = instances - 1 WHERE subject = $1 AND instances > 0",
            )
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.forget_route(id);
        Ok(())
    }

    /// An instance by id, whoever asks (the router and the API decide who may see it).
    pub async fn get(&self, id: &str) -> Result<Option<Instance>, ScheduleError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances i JOIN apps a ON a.id = i.app_id WHERE i.id = $1"
        ))
        .bind(id)
        .fetch_optional(self.repo.pool())
        .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    /// The instance an instance token belongs to.
    pub async fn by_token(&self, token: &str) -> Result<Option<Instance>, ScheduleError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM instances i JOIN apps a ON a.id = i.app_id \
             WHERE i.token_hash = $1"
        ))
        .bind(token_hash(token))
        .fetch_optional(self.repo.pool())
        .await?;
        row.as_ref().map(instance_from_row).transpose()
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
        let mut text =
            format!("SELECT {COLUMNS} FROM instances i JOIN apps a ON a.id = i.app_id WHERE 1 = 1");
        let mut args = Vec::new();
        if !all {
            args.push(user.principal.subject.clone());
            text.push_str(&format!(" AND i.owner_subject = ${}", args.len()));
        }
        if let Some(app) = app {
            args.push(app.to_owned());
            text.push_str(&format!(" AND i.app_id = ${}", args.len()));
        }
        text.push_str(" ORDER BY i.created_at, i.id");
        let query = args
            .iter()
            .fold(sqlx::query(&text), |q, a| q.bind(a.as_str()));
        query
            .fetch_all(self.repo.pool())
            .await?
            .iter()
            .map(instance_from_row)
            .collect()
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
        sqlx::query("UPDATE instances SET visibility = $1, updated_at = $2 WHERE id = $3")
            .bind(visibility.as_str())
            .bind(now_ms())
            .bind(&instance.id)
            .execute(self.repo.pool())
            .await?;
        self.forget_route(&instance.id);
        Ok(Instance {
            visibility,
            ..instance
        })
    }

    async fn set_suspended(&self, id: &str, suspended: bool) -> Result<(), ScheduleError> {
        sqlx::query("UPDATE instances SET suspended = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(suspended))
            .bind(now_ms())
            .bind(id)
            .execute(self.repo.pool())
            .await?;
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
