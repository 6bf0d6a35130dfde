//! Telling the App Store how far the instance has come.

use std::time::Duration;

use serde::Serialize;

use crate::output::say;
use crate::settings::Settings;

/// How long one report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// A step of an instance's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching and unpacking the bundle.
    Sourcing,
    /// Building the virtualenv.
    Installing,
    /// Starting waved and the app.
    Starting,
    /// The app answers.
    Running,
    /// The instance stopped for good.
    Failed,
}

impl Phase {
    /// The phase's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Sourcing => "sourcing",
            Phase::Installing => "installing",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Failed => "failed",
        }
    }
}

impl Serialize for Phase {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The body of a phase report.
#[derive(Debug, Serialize)]
struct Report<'a> {
    phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

/// Sends phase reports; a report that fails is logged and otherwise ignored.
pub struct Reporter<'a> {
    client: &'a reqwest::Client,
    settings: &'a Settings,
}

impl<'a> Reporter<'a> {
    /// Reports for the instance of `settings`.
    pub fn new(client: &'a reqwest::Client, settings: &'a Settings) -> Self {
        Reporter { client, settings }
    }

    /// Reports `phase`, with `reason` for a failure.
    pub async fn report(&self, phase: Phase, reason: Option<&str>) {
        match reason {
            Some(reason) => say(format_args!("phase {}: {reason}", phase.as_str())),
            None => say(format_args!("phase {}", phase.as_str())),
        }
        let sent = self
            .client
            .post(self.settings.launcher_url("phase"))
            .bearer_auth(self.settings.token.expose())
            .timeout(REPORT_TIMEOUT)
            .json(&Report { phase, reason })
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        if let Err(e) = sent {
            say(format_args!("cannot report phase {}: {e}", phase.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let failed = Report {
            phase: Phase::Failed,
            reason: Some("pip install failed (exit 1)"),
        };
        let json = serde_json::to_string(&failed).unwrap();
        assert_eq!(
            json,
            r#"{"phase":"failed","reason":"pip install failed (exit 1)"}"#
        );
        let sourcing = Report {
            phase: Phase::Sourcing,
            reason: None,
        };
        let json = serde_json::to_string(&sourcing).unwrap();
        assert_eq!(json, r#"{"phase":"sourcing"}"#);
        assert_eq!(Phase::Installing.as_str(), "installing");
    }
}
