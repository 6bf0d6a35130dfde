//! `drive`: the S3-compatible front door of the platform.

mod alias_copy;
mod api;
mod auth;
mod client;
mod config;
mod credentials;
mod dev_idp;
mod framing;
mod keys;
mod metrics;
mod namespace;
mod revocations;
mod s3;
mod server;
mod sts;
mod ui;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use s3s::service::S3ServiceBuilder;

use crate::config::{BackendConfig, Config, LogFormat, ServeArgs};
use crate::credentials::{Origin, RootCredentials};
use shared_identity::discovery;

/// Drive: S3-compatible object storage with a home bucket for every user.
#[derive(Parser)]
#[command(version, about)]
enum Cli {
    /// Start the server.
    Serve(Box<ServeArgs>),
    /// Create, list and revoke your long-term access keys on a running Drive.
    Keys(client::KeysArgs),
}

fn main() -> ExitCode {
    let args = match Cli::parse() {
        Cli::Serve(args) => *args,
        Cli::Keys(args) => return client::run(args),
    };
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drive: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drive: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIVE_LOG")
        .unwrap_or_else(|_| "info,s3s=off".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let (root, origin) = RootCredentials::load(
        std::env::var("DRIVE_ROOT_ACCESS_KEY").ok(),
        std::env::var("DRIVE_ROOT_SECRET_KEY").ok(),
        &config.data_dir,
    )?;
    let backend = open_backend(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let identity = &config.identity;
    let server_key =
        credentials::load_server_key(identity.server_key_file.as_deref(), &config.data_dir)?;
    let older_keys: Vec<_> = identity
        .previous_server_key_files
        .iter()
        .map(|p| credentials::load_server_key(Some(p), &config.data_dir))
        .collect::<Result<_, _>>()?;
    let sessions = Arc::new(shared_identity::Sessions::new(
        server_key.clone(),
        older_keys.clone(),
    ));
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    // Seals access key secrets at rest and the file browser's cookies, so every replica
    // sharing the server key opens them.
    let sealer = shared_identity::Sealer::new(server_key.clone(), older_keys);
    let keys = Arc::new(
        keys::KeyStore::open(config.database_url.expose(), sealer.clone())
            .await
            .map_err(|e| format!("cannot open the metadata database: {e}"))?,
    );
    let revocations = Arc::new(revocations::Revocations::new(
        keys.pool(),
        revocations::List::Instances,
        identity.revocation_cache,
    ));
    let ended_sessions = Arc::new(revocations::Revocations::new(
        keys.pool(),
        revocations::List::UiSessions {
            lifetime: ui::SESSION_LIFETIME,
        },
        identity.revocation_cache,
    ));
    // On by default without an external issuer; `--dev-issuer true` keeps it beside them.
    let dev_issuer = identity.dev_issuer.then(|| {
        let base = identity
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        Arc::new(shared_identity::DevIssuer::new(
            format!("{}{}", base.trim_end_matches('/'), dev_idp::PREFIX),
            &server_key,
            identity.dev_users.clone(),
        ))
    });
    let verifier = open_verifier(identity, dev_issuer.as_deref()).await;
    let provisioner = Arc::new(namespace::Provisioner::new(
        Arc::clone(&backend),
        namespace::RECHECK,
    ));

    let mut builder = S3ServiceBuilder::new(s3::Drive::new(
        Arc::clone(&backend),
        config.region.clone(),
        Arc::clone(&provisioner),
    ));
    builder.set_auth(auth::Keys::new(
        root.clone(),
        Arc::clone(&sessions),
        Arc::clone(&keys),
    ));
    builder.set_access(auth::Access::new(
        root.clone(),
        Arc::clone(&sessions),
        Arc::clone(&keys),
        Arc::clone(&revocations),
        provisioner,
        identity.admin_role.clone(),
    ));
    builder.set_validation(auth::Names);
    builder.set_route(alias_copy::AliasCopy);
    if let Some(domain) = &config.domain {
        builder.set_host(auth::Hosts::new(domain));
    }
    let state = Arc::new(server::State {
        s3: builder.build(),
        metrics: metrics::Metrics::new(),
        backend,
        sts: sts::Sts::new(
            verifier.clone(),
            sessions,
            Arc::clone(&revocations),
            identity.sts_max_duration,
        ),
        api: api::Api {
            verifier,
            keys,
            revocations,
            root: root.clone(),
        },
        discovery: discovery::Discovery {
            // Where users sign in: the development issuer when it runs (beside a token
            // broker, say), else the first external issuer.
            issuer: dev_issuer
                .as_ref()
                .map(|d| d.issuer().to_owned())
                .or_else(|| identity.issuers.first().cloned())
                .unwrap_or_default(),
            client_id: identity.client_id.clone(),
            scope: identity.scope.clone(),
            public_url: identity.public_url.clone(),
            drive_url: None,
        },
        ui: ui::Ui::new(
            // Browsers sign in where discovery sends them (see above).
            match &dev_issuer {
                Some(dev) => ui::Provider::Dev(Arc::clone(dev)),
                None => {
                    ui::Provider::External(identity.issuers.first().cloned().unwrap_or_default())
                }
            },
            identity.client_id.clone(),
            identity.scope.clone(),
            identity.public_url.clone(),
            config.region.clone(),
            sealer,
            ended_sessions,
        ),
        dev_issuer: dev_issuer.clone(),
    });

    announce(&config, &addr, &root, &origin, dev_issuer.as_deref());

    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be handled");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    server::serve(listener, state, shutdown, config.shutdown_timeout).await;
    tracing::info!("stopped");
    Ok(())
}

/// The verifier of the development issuer (when it runs) and the configured issuers, whose
/// keys are fetched now if they answer, else on first use: an issuer that starts after
/// Drive (the App Store's token broker) is asked again at most once a second.
async fn open_verifier(
    identity: &config::IdentityConfig,
    dev_issuer: Option<&shared_identity::DevIssuer>,
) -> Arc<shared_identity::Verifier> {
    let issuers = dev_issuer
        .map(shared_identity::DevIssuer::trust)
        .into_iter()
        .chain(
            identity
                .issuers
                .iter()
                .map(|issuer| shared_identity::IssuerConfig {
                    authorized_parties: identity.authorized_parties.clone(),
                    claims: identity.claims.clone(),
                    ..shared_identity::IssuerConfig::new(issuer.clone(), identity.audiences.clone())
                }),
        )
        .collect();
    let verifier = shared_identity::Verifier::new(
        issuers,
        shared_identity::Timing {
            refetch_interval: identity.refetch_interval,
            ..Default::default()
        },
    );
    if let Err(e) = verifier.warm().await {
        tracing::warn!(error = %e, "an identity provider did not answer; its keys are fetched on first use");
    }
    Arc::new(verifier)
}

/// Opens the configured store and checks that it can be used.
async fn open_backend(config: &Config) -> Result<Arc<dyn buckets::Backend>, String> {
    match &config.backend {
        BackendConfig::Fs => {
            let fs = buckets::fs::FsBackend::open(&config.data_dir).map_err(|e| {
                format!(
                    "cannot open the data directory {}: {e}",
                    config.data_dir.display()
                )
            })?;
            Ok(Arc::new(fs))
        }
        BackendConfig::S3 { s3, root_prefix } => {
            let settings = buckets::s3::S3Settings {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                bucket: s3.bucket.clone(),
                root: root_prefix.clone(),
                access_key: s3.access_key.clone(),
                secret_key: s3.secret_key.expose().to_owned(),
            };
            let backend = buckets::s3::S3Backend::connect(settings)
                .await
                .map_err(|e| format!("cannot use the S3 bucket {:?}: {e}", s3.bucket))?;
            Ok(Arc::new(backend))
        }
        BackendConfig::Azure { azure, root_prefix } => {
            let settings = buckets::azure::AzureSettings {
                account: azure.account.clone(),
                access_key: azure.access_key.expose().to_owned(),
                endpoint: azure.endpoint.clone(),
                container: azure.container.clone(),
                root: root_prefix.clone(),
            };
            let backend = buckets::azure::AzureBackend::connect(settings)
                .await
                .map_err(|e| {
                    format!("cannot use the Azure container {:?}: {e}", azure.container)
                })?;
            Ok(Arc::new(backend))
        }
        BackendConfig::Gcs { gcs, root_prefix } => {
            let settings = buckets::gcs::GcsSettings {
                endpoint: gcs.endpoint.clone(),
                bucket: gcs.bucket.clone(),
                root: root_prefix.clone(),
                credentials_file: gcs
                    .credentials_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            };
            let backend = buckets::gcs::GcsBackend::connect(settings)
                .await
                .map_err(|e| format!("cannot use the GCS bucket {:?}: {e}", gcs.bucket))?;
            Ok(Arc::new(backend))
        }
    }
}

/// Prints where Drive listens and how to reach it with aws-cli.
fn announce(
    config: &Config,
    addr: &std::net::SocketAddr,
    root: &RootCredentials,
    origin: &Origin,
    dev_issuer: Option<&shared_identity::DevIssuer>,
) {
    let endpoint = format!("http://{addr}");
    match &config.backend {
        BackendConfig::Fs => println!(
            "Drive is listening on {endpoint} (data in {})",
            config.data_dir.display()
        ),
        BackendConfig::S3 { s3, root_prefix } => println!(
            "Drive is listening on {endpoint} (data in S3 bucket {} under {root_prefix:?}, endpoint {})",
            s3.bucket,
            s3.endpoint.as_deref().unwrap_or("AWS")
        ),
        BackendConfig::Azure { azure, root_prefix } => println!(
            "Drive is listening on {endpoint} (data in Azure container {} under {root_prefix:?}, account {})",
            azure.container, azure.account
        ),
        BackendConfig::Gcs { gcs, root_prefix } => println!(
            "Drive is listening on {endpoint} (data in GCS bucket {} under {root_prefix:?}, endpoint {})",
            gcs.bucket,
            gcs.endpoint.as_deref().unwrap_or("Google")
        ),
    }
    if let Some(domain) = &config.domain {
        println!("Virtual-host-style requests: http://<bucket>.{domain}");
    }
    if let Some(dev) = dev_issuer {
        let names: Vec<&str> = dev.users().iter().map(|u| u.name.as_str()).collect();
        println!(
            "Identity: built-in development issuer {}; users: {}",
            dev.issuer(),
            if names.is_empty() {
                "none yet, add some with --dev-user NAME:PASSWORD[:GROUP+GROUP]".to_owned()
            } else {
                names.join(", ")
            }
        );
    }
    if !config.identity.issuers.is_empty() {
        println!(
            "Identity: OIDC issuer {} (STS at {endpoint}, discovery at {endpoint}{})",
            config.identity.issuers.join(", "),
            discovery::PREFIX
        );
    }
    if dev_issuer.is_none() && config.identity.issuers.is_empty() {
        println!("Identity: no issuer (--dev-issuer false): only the root credentials work");
    }
    match origin {
        Origin::Generated(path) => {
            println!(
                "Generated root credentials (shown once; stored in {} with mode 0600):",
                path.display()
            );
            println!("  access key: {}", root.access_key);
            println!("  secret key: {}", root.secret_key);
        }
        Origin::Stored(path) => println!(
            "Root credentials: access key {} (secret in {})",
            root.access_key,
            path.display()
        ),
        Origin::Environment => println!(
            "Root credentials: access key {} (from DRIVE_ROOT_ACCESS_KEY)",
            root.access_key
        ),
    }
    println!("Try it with aws-cli:");
    println!(
        "  export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY=<secret key> AWS_DEFAULT_REGION={}",
        root.access_key, config.region
    );
    println!("  aws --endpoint-url {endpoint} s3 mb s3://my-bucket");
    println!("  aws --endpoint-url {endpoint} s3 cp ./file.txt s3://my-bucket/");
    println!("Drive ready on {endpoint}");
}
