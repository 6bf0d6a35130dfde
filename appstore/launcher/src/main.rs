//! `appstore-launcher`: runs one App Store app instance. It fetches the app's bundle, builds
//! its virtualenv, starts waved and the app, and reports each phase back to the App Store.
//! Its stdout is the instance log.

mod bundle;
mod launch;
mod output;
mod phase;
mod settings;
mod supervise;
mod token;
mod venv;
mod wave;

use std::process::ExitCode;

use settings::Settings;

/// Exit code for an unusable environment.
const BAD_ENVIRONMENT: u8 = 2;

fn main() -> ExitCode {
    let settings = match Settings::from_env(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("appstore-launcher: {e}");
            return ExitCode::from(BAD_ENVIRONMENT);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(launch::run(settings)),
        Err(e) => {
            eprintln!("appstore-launcher: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
