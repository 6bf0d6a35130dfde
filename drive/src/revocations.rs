//! The revocation list of app instances: when the App Store terminates an instance, every
//! credential minted for it is refused — broker tokens at STS and the session credentials
//! they became. The list lives in the metadata database, so replicas sharing it agree; each
//! replica answers from an in-memory copy refreshed when older than the cache age, so a
//! revocation holds at once on the replica that took it and within that age on the others.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::{AnyPool, Row};

/// Why the revocation list could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The database refused or could not be reached.
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The revoked instances, from the database through a short-lived cache.
pub struct Revocations {
    pool: AnyPool,
    max_age: Duration,
    cache: RwLock<Cache>,
    /// Serializes refreshes, so a stale cache costs one query, not one per request.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    ids: HashSet<String>,
    loaded: Option<Instant>,
}

impl Revocations {
    /// The list in `pool` (migrated), read again when the copy is older than `max_age`.
    pub fn new(pool: AnyPool, max_age: Duration) -> Self {
        Self {
            pool,
            max_age,
            cache: RwLock::default(),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Revokes `instance_id`; revoking it again changes nothing.
    pub async fn revoke(&self, instance_id: &str) -> Result<(), RevocationError> {
        sqlx::query(
            "INSERT INTO revoked_instances (instance_id, revoked_at) VALUES ($1, $2) \
             ON CONFLICT (instance_id) DO NOTHING",
        )
        .bind(instance_id)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        self.write().ids.insert(instance_id.to_owned());
        Ok(())
    }

    /// Whether `instance_id` is revoked. An error means the answer is unknown: callers
    /// refuse (fail closed).
    pub async fn is_revoked(&self, instance_id: &str) -> Result<bool, RevocationError> {
        if let Some(answer) = self.fresh(instance_id) {
            return Ok(answer);
        }
        let _refreshing = self.refresh.lock().await;
        // Whoever waited finds the copy another request just refreshed.
        if let Some(answer) = self.fresh(instance_id) {
            return Ok(answer);
        }
        match self.load().await {
            Ok(ids) => {
                let mut cache = self.write();
                // Revocations are never undone: the union keeps one this replica took
                // while the query ran.
                cache.ids.extend(ids);
                cache.loaded = Some(Instant::now());
                Ok(cache.ids.contains(instance_id))
            }
            // A stale copy still knows what was revoked for good.
            Err(_) if self.read().ids.contains(instance_id) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The cached answer, if the copy is recent enough.
    fn fresh(&self, instance_id: &str) -> Option<bool> {
        let cache = self.read();
        cache
            .loaded
            .is_some_and(|t| t.elapsed() < self.max_age)
            .then(|| cache.ids.contains(instance_id))
    }

    async fn load(&self) -> Result<Vec<String>, RevocationError> {
        let rows = sqlx::query("SELECT instance_id FROM revoked_instances")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("instance_id"))
            .collect::<Result<_, _>>()?)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().expect("the revocation cache lock")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.cache.write().expect("the revocation cache lock")
    }
}

/// Whether `id` is an instance id the revocation endpoint accepts: 1 to 128 characters of
/// letters, digits, `-` and `_`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use shared_identity::{Sealer, ServerKey};

    use super::*;
    use crate::keys::KeyStore;

    async fn store(dir: &std::path::Path) -> KeyStore {
        let url = format!("sqlite://{}/drive.db?mode=rwc", dir.display());
        let sealer = Sealer::new(ServerKey::new(&[5; 32]).unwrap(), vec![]);
        KeyStore::open(&url, sealer).await.unwrap()
    }

    #[tokio::test]
    async fn revocations_hold_at_once_here_and_after_the_cache_age_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let here = Revocations::new(store.pool(), Duration::from_millis(200));
        let there = Revocations::new(store.pool(), Duration::from_millis(200));
        assert!(!here.is_revoked("inst-1").await.unwrap());
        assert!(!there.is_revoked("inst-1").await.unwrap());
        here.revoke("inst-1").await.unwrap();
        here.revoke("inst-1").await.unwrap();
        assert!(here.is_revoked("inst-1").await.unwrap());
        assert!(!here.is_revoked("inst-2").await.unwrap());
        // The other replica's copy is still fresh, then it reads the database again.
        assert!(!there.is_revoked("inst-1").await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(there.is_revoked("inst-1").await.unwrap());
        // A new list on the same database (a restart) knows the revocation.
        let restarted = Revocations::new(store.pool(), Duration::from_secs(60));
        assert!(restarted.is_revoked("inst-1").await.unwrap());
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let list = Revocations::new(store.pool(), Duration::ZERO);
        list.revoke("gone").await.unwrap();
        store.pool().close().await;
        assert!(matches!(
            list.is_revoked("other").await,
            Err(RevocationError::Database(_))
        ));
        // What is known revoked stays revoked.
        assert!(list.is_revoked("gone").await.unwrap());
        assert!(list.revoke("another").await.is_err());
    }

    #[test]
    fn instance_ids_are_checked() {
        assert!(is_valid_id("inst-1_A"));
        assert!(is_valid_id(&"a".repeat(128)));
        for bad in ["", "a b", "a/b", "ä", &"a".repeat(129)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }
}
