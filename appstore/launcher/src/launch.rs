//! One instance's life: sourcing, installing, starting, running, until it fails or is stopped.

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::bundle::{self, Limits};
use crate::output::say;
use crate::phase::{Phase, Reporter};
use crate::settings::Settings;
use crate::supervise::{Children, Interrupt, Process, Signals, ended, until};
use crate::token::Keeper;
use crate::venv;
use crate::wave::{self, AccessKeys};

/// How long waved and the app together may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting to the App Store may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while receiving from the App Store.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the instance of `settings`; returns the launcher's exit code.
pub async fn run(settings: Settings) -> ExitCode {
    let clients = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .and_then(|store| Ok((store, wave::probe_client()?)));
    let (client, probe) = match clients {
        Ok(clients) => clients,
        Err(e) => {
            say(format_args!("cannot set up an HTTP client: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            say(format_args!("cannot catch signals: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let reporter = Reporter::new(&client, &settings);
    let prepared = tokio::select! {
        prepared = prepare(&client, &settings, &reporter) => prepared,
        signal = signals.recv() => {
            say(format_args!("{signal} received before the app started; stopping"));
            return ExitCode::SUCCESS;
        }
    };
    let (venv, refresher) = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => {
            reporter.report(Phase::Failed, Some(&reason)).await;
            return ExitCode::FAILURE;
        }
    };
    let code = start(&settings, &venv, &probe, &reporter, &mut signals).await;
    if let Some(refresher) = refresher {
        refresher.abort();
    }
    code
}

/// Sources the bundle, writes the first web identity token and builds the virtualenv; returns
/// the virtualenv and the task that keeps the token fresh, or why it failed.
async fn prepare(
    client: &reqwest::Client,
    settings: &Settings,
    reporter: &Reporter<'_>,
) -> Result<(PathBuf, Option<JoinHandle<()>>), String> {
    reporter.report(Phase::Sourcing, None).await;
    let file = bundle::download(client, settings)
        .await
        .map_err(|e| e.to_string())?;
    let dir = settings.app_dir.clone();
    let unpack = move || bundle::unpack(file, &dir, &Limits::default());
    let files = tokio::task::spawn_blocking(unpack)
        .await
        .map_err(|e| format!("unpacking the bundle stopped: {e}"))?
        .map_err(|e| e.to_string())?;
    say(format_args!(
        "unpacked {files} files into {}",
        settings.app_dir.display()
    ));

    let refresher = match &settings.web_identity_token_file {
        Some(path) => {
            let keeper = Keeper::new(client.clone(), settings, path.clone());
            let token = keeper.first().await.map_err(|e| e.to_string())?;
            say(format_args!(
                "wrote the web identity token to {}",
                path.display()
            ));
            Some(tokio::spawn(
                async move { keeper.refresh_from(token).await },
            ))
        }
        None => None,
    };

    reporter.report(Phase::Installing, None).await;
    let venv = venv::ensure(settings, &settings.app_dir)
        .await
        .map_err(|e| e.to_string())?;
    Ok((venv, refresher))
}

/// Starts waved and the app, reports them running once they answer, and watches them.
async fn start(
    settings: &Settings,
    venv: &std::path::Path,
    probe: &reqwest::Client,
    reporter: &Reporter<'_>,
    signals: &mut Signals,
) -> ExitCode {
    reporter.report(Phase::Starting, None).await;
    let deadline = Instant::now() + READY_TIMEOUT;
    let started = AccessKeys::generate().and_then(|keys| {
        let waved = wave::spawn_waved(settings, venv, &keys)?;
        Ok((keys, waved))
    });
    let (keys, waved) = match started {
        Ok(started) => started,
        Err(e) => return fail(reporter, &e.to_string()).await,
    };
    let mut children = Children::new(Process::new("waved", "[waved] ", waved));

    let url = wave::waved_url(settings);
    let waved_up = timeout_at(deadline, wave::wait_for_waved(probe, &url));
    match until(waved_up, &mut children, signals).await {
        Ok(Ok(())) => say("waved answers"),
        Ok(Err(_)) => {
            children.kill().await;
            return fail(reporter, "waved did not answer within 120 s").await;
        }
        Err(interrupt) => return interrupted(interrupt, children, reporter).await,
    }

    match wave::spawn_app(settings, venv, &keys) {
        Ok(app) => children.add_app(Process::new("app", "[app] ", app)),
        Err(e) => {
            children.kill().await;
            return fail(reporter, &e.to_string()).await;
        }
    }
    let app_up = timeout_at(deadline, wave::wait_for_app(settings.app_port));
    match until(app_up, &mut children, signals).await {
        Ok(Ok(())) => reporter.report(Phase::Running, None).await,
        Ok(Err(_)) => {
            children.kill().await;
            return fail(reporter, "the app did not answer within 120 s").await;
        }
        Err(interrupt) => return interrupted(interrupt, children, reporter).await,
    }

    let forever = std::future::pending::<Infallible>();
    match until(forever, &mut children, signals).await {
        Ok(never) => match never {},
        Err(interrupt) => interrupted(interrupt, children, reporter).await,
    }
}

/// Stops the children after `interrupt`; returns the launcher's exit code.
async fn interrupted(
    interrupt: Interrupt,
    children: Children,
    reporter: &Reporter<'_>,
) -> ExitCode {
    match interrupt {
        Interrupt::Signal(signal) => {
            say(format_args!(
                "{signal} received; stopping waved and the app"
            ));
            children.terminate().await;
            say("stopped");
            ExitCode::SUCCESS
        }
        Interrupt::Exited(name, status) => {
            let reason = match status {
                Ok(status) => format!("{name} {}", ended(status)),
                Err(e) => format!("cannot wait for {name}: {e}"),
            };
            children.kill().await;
            fail(reporter, &reason).await
        }
    }
}

/// Reports the instance failed for `reason`; returns the launcher's exit code.
async fn fail(reporter: &Reporter<'_>, reason: &str) -> ExitCode {
    reporter.report(Phase::Failed, Some(reason)).await;
    ExitCode::FAILURE
}
