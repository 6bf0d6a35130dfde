//! Telling Drive that a terminated instance's credentials are void. Drive refuses them from
//! then on; a revocation Drive could not take is kept in the database and sent again until
//! it does, so a Drive outage at terminate time cannot leave credentials alive for good.

use std::time::Duration;

use sqlx::Row;

use crate::config::DriveConfig;
use crate::repository::{Repository, now_ms};

/// How often revocations Drive has not confirmed are sent again.
const RETRY_EVERY: Duration = Duration::from_secs(10);

/// Sends revocations to Drive.
#[derive(Clone)]
pub struct Revoker {
    http: reqwest::Client,
    drive: DriveConfig,
    repo: Repository,
}

impl Revoker {
    /// A revoker for the Drive the App Store stores bundles in (its root key pair).
    pub fn new(drive: DriveConfig, repo: Repository) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with default TLS builds");
        Self { http, drive, repo }
    }

    /// Revokes `instance` at Drive now, or queues it for the retry loop.
    pub async fn revoke(&self, instance: &str) {
        if let Err(e) = self.send(instance).await {
            tracing::warn!(instance, error = %e, "Drive did not take a revocation; retrying later");
            let queued = sqlx::query(
                "INSERT INTO pending_revocations (instance_id, created_at) VALUES ($1, $2) \
                 ON CONFLICT (instance_id) DO NOTHING",
            )
            .bind(instance)
            .bind(now_ms())
            .execute(self.repo.pool())
            .await;
            if let Err(e) = queued {
                tracing::error!(instance, error = %e, "cannot queue a revocation");
            }
        }
    }

    async fn send(&self, instance: &str) -> Result<(), String> {
        let response = self
            .http
            .post(format!("{}/_drive/api/v1/revocations", self.drive.endpoint))
            .basic_auth(&self.drive.access_key, Some(self.drive.secret_key.expose()))
            .json(&serde_json::json!({ "instance_id": instance }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("Drive answered {}", response.status()))
        }
    }

    /// Sends queued revocations again until `stop` turns true.
    pub async fn retry_loop(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RETRY_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let pending = match sqlx::query("SELECT instance_id FROM pending_revocations")
                .fetch_all(self.repo.pool())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read queued revocations");
                    continue;
                }
            };
            for row in pending {
                let Ok(id) = row.try_get::<String, _>("instance_id") else {
                    continue;
                };
                if self.send(&id).await.is_ok() {
                    tracing::info!(instance = %id, "queued revocation taken by Drive");
                    let _ = sqlx::query("DELETE FROM pending_revocations WHERE instance_id = $1")
                        .bind(&id)
                        .execute(self.repo.pool())
                        .await;
                }
            }
        }
    }
}
