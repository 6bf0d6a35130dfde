//! `appstore`: the App Store server (`appstore serve`) and its client commands.

use std::process::ExitCode;

use appstore::cli::{self, Command, Global};
use appstore::config::{Config, LogFormat, ServeArgs};
use clap::Parser;

/// App Store: publish Wave app bundles into Drive and find apps.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Top,
}

#[derive(clap::Subcommand)]
enum Top {
    /// Start the server.
    Serve(Box<ServeArgs>),
    #[command(flatten)]
    Client(Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Top::Serve(args) => *args,
        Top::Client(command) => return cli::run(cli.global, command),
    };
    let config = match Config::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("appstore: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appstore: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APPSTORE_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let drive = config.drive.endpoint.clone();
    let bucket = config.drive.bucket.clone();
    let issuer = config.oidc.issuer.clone();
    let mut running = appstore::server::start(config, listener).await?;
    let addr = running.addr;
    println!("App Store ready on http://{addr}");
    println!("  bundles in Drive {drive} bucket {bucket}; sign-in through {issuer}");
    println!("  try: appstore login --endpoint http://{addr} --token <access token>");
    let stop = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down; finishing requests in flight");
        let _ = stop.send(true);
    });
    running.wait().await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
