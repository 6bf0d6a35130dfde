//! Wiring: opens the database, Drive and the local runtime, builds the API and the instance
//! router, serves them, sweeps abandoned imports, retries revocations, and shuts down
//! gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shared_identity::discovery::Discovery;
use shared_identity::{IssuerConfig, Sealer, Timing, Verifier};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::authz::Roles;
use crate::broker::Broker;
use crate::bundle::manifest::Policy;
use crate::config::Config;
use crate::config::RuntimeKind;
use crate::import::{ImportSettings, Importer};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::repository::Repository;
use crate::scheduler::kubernetes::{ConnectError, KubernetesRuntime};
use crate::scheduler::local::{LauncherSettings, LocalRuntime};
use crate::scheduler::records::{Records, SqlRecords};
use crate::scheduler::revocation::Revoker;
use crate::scheduler::runtime::Runtime;
use crate::scheduler::{Endpoints, Scheduler};
use crate::store::Store;
use crate::web::SignIn;

/// How often abandoned imports and orphaned objects are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metadata database.
    #[error("cannot open the metadata database: {0}")]
    Database(#[from] crate::repository::RepoError),
    /// Drive.
    #[error("cannot use Drive's bucket: {0}")]
    Drive(#[from] crate::store::StoreError),
    /// The session key.
    #[error("{0}")]
    Key(#[from] shared_identity::KeyFileError),
    /// Local files.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The Kubernetes cluster instances run on.
    #[error("{0}")]
    Cluster(#[from] ConnectError),
}

/// A running App Store.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and waits.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Waits until the server ends by itself (it does not, short of an error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// A sender that stops the server when `true` is sent.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// The `app.toml` policy the configuration sets.
fn policy(config: &Config) -> Policy {
    let mut policy = Policy::default();
    if !config.runtime_versions.is_empty() {
        policy.runtimes.clone_from(&config.runtime_versions);
    }
    policy.env_allow.extend(config.env_allow.iter().cloned());
    policy
        .custom_image_allow
        .clone_from(&config.custom_image_allow);
    policy
        .allowed_gpu_types
        .clone_from(&config.allowed_gpu_types);
    policy
}

/// Starts the App Store on `listener`.
pub async fn start(config: Config, listener: TcpListener) -> Result<Running, StartError> {
    std::fs::create_dir_all(&config.data_dir)?;
    let repo = Repository::open(config.database_url.expose()).await?;
    let store = Store::new(&config.drive);
    store.ensure_bucket().await?;
    let key = shared_identity::load_server_key(
        config.session_key_file.as_deref(),
        &config.data_dir.join("session-key"),
    )?;
    let addr = listener.local_addr()?;
    let mut issuer = IssuerConfig::new(config.oidc.issuer.clone(), config.oidc.audiences.clone());
    issuer.claims.roles.clone_from(&config.oidc.role_claim);
    let verifier = Arc::new(Verifier::new(vec![issuer.clone()], Timing::default()));
    let id_issuer = IssuerConfig {
        audiences: vec![config.oidc.client_id.clone()],
        ..issuer
    };
    let importer = Importer::new(
        repo.clone(),
        store.clone(),
        ImportSettings {
            max_bundle_bytes: config.max_bundle_bytes,
            limits: config.limits.clone(),
            app_version_limit: config.app_version_limit,
            policy: policy(&config),
            spool_dir: config.data_dir.join("spool"),
        },
    );
    let internal = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let mut sched = config.scheduler.clone();
    sched.runtime_versions = policy(&config).runtimes;
    let internal = sched
        .internal_url
        .clone()
        .unwrap_or_else(|| format!("http://{internal}"));
    let (records, runtime): (Arc<dyn Records>, Arc<dyn Runtime>) = match sched.runtime {
        RuntimeKind::Local => (
            Arc::new(SqlRecords::new(repo.clone())),
            Arc::new(LocalRuntime::open(
                sched.instances_dir.clone(),
                LauncherSettings {
                    program: sched.launcher.clone(),
                    appstore_url: internal,
                    python: sched.python.clone(),
                    pip_cache: sched.pip_cache_dir.clone(),
                    venv_cache: sched.venv_cache_dir.clone(),
                    wheelhouse: sched.wheelhouse.clone(),
                    offline: sched.pip_offline,
                    uv: sched.uv.clone(),
                },
            )?),
        ),
        RuntimeKind::Kubernetes => {
            let cluster = Arc::new(KubernetesRuntime::connect(&sched, internal).await?);
            (cluster.clone(), cluster)
        }
    };
    let revoker = Revoker::new(config.drive.clone(), repo.clone());
    let scheduler = Scheduler::new(
        repo.clone(),
        records,
        runtime,
        sched.clone(),
        Endpoints {
            public_url: config.public_url.clone(),
        },
        revoker.clone(),
        config.public_mode,
    );
    let broker = Broker::new(
        &config.public_url,
        &key,
        sched.broker_audience.clone(),
        sched.broker_token_ttl,
    );
    let discovery = Discovery {
        issuer: broker.issuer().to_owned(),
        client_id: "appstore-instance".into(),
        scope: "openid".into(),
        public_url: Some(config.public_url.clone()),
        drive_url: Some(sched.drive_public_url.clone()),
    };
    let state = Arc::new(AppState {
        scheduler,
        broker,
        discovery,
        proxy: Proxy::default(),
        tickets: Sealer::new(key.clone(), Vec::new()),
        bearers: api::BearerCache::default(),
        sign_in: SignIn::new(
            config.oidc.clone(),
            repo.clone(),
            Sealer::new(key, Vec::new()),
            Arc::clone(&verifier),
            id_issuer,
        ),
        client_config: json!({
            "issuer": config.oidc.issuer,
            "cliClientId": config.oidc.cli_client_id,
            "publicMode": config.public_mode,
        }),
        repo,
        store,
        importer: importer.clone(),
        verifier,
        roles: Roles {
            admin: config.oidc.admin_role.clone(),
            full_access: config.oidc.full_access_role.clone(),
        },
        metrics: Metrics::new(),
        public_mode: config.public_mode,
        cookie_secure: config.cookie_secure,
    });
    let (stop, mut stopped) = watch::channel(false);
    let mut sweep_stopped = stopped.clone();
    tokio::spawn(revoker.retry_loop(stopped.clone()));
    tokio::spawn(async move {
        loop {
            match importer.sweep().await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(removed = n, "swept abandoned imports and orphaned objects")
                }
                Err(e) => tracing::warn!(error = %e, "sweeping abandoned imports failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = sweep_stopped.changed() => return,
            }
        }
    });
    let app = api::router(Arc::clone(&state)).layer(axum::middleware::from_fn_with_state(
        state,
        crate::router::route,
    ));
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
    });
    Ok(Running { addr, stop, task })
}
