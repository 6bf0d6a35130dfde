//! Revocation lists. App instances: when the App Store terminates an instance, every
//! credential minted for it is refused — broker tokens at STS and the session credentials
//! they became. File browser sessions: signing out ends the sealed session cookie. A list
//! lives in the metadata database, so replicas sharing it agree; each replica answers from
//! an in-memory copy refreshed when older than the cache age, so a revocation holds at once
//! on the replica that took it and within that age on the others.

use std::collections::HashMap;
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

/// Which revocation list: its table, id column and time column.
#[derive(Debug, Clone, Copy)]
pub enum List {
    /// Terminated app instances, revoked for good.
    Instances,
    /// Ended file browser sessions, kept until the longest session has expired.
    UiSessions {
        /// How long a session can live.
        lifetime: Duration,
    },
}

impl List {
    fn table(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Instances => ("revoked_instances", "instance_id", "revoked_at"),
            Self::UiSessions { .. } => ("ended_ui_sessions", "session_id", "ended_at"),
        }
    }
}

/// The revoked ids of one list, from the database through a short-lived cache.
pub struct Revocations {
    pool: AnyPool,
    list: List,
    max_age: Duration,
    cache: RwLock<Cache>,
    /// Serializes refreshes, so a stale cache costs one query, not one per request.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    /// Revoked ids and when they were revoked (Unix seconds).
    ids: HashMap<String, i64>,
    loaded: Option<Instant>,
}

impl Revocations {
    /// `list` in `pool` (migrated), read again when the copy is older than `max_age`.
    pub fn new(pool: AnyPool, list: List, max_age: Duration) -> Self {
        Self {
            pool,
            list,
            max_age,
            cache: RwLock::default(),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Revokes `id`; revoking it again changes nothing. Adding to an expiring list also
    /// drops the entries that can no longer matter.
    pub async fn revoke(&self, id: &str) -> Result<(), RevocationError> {
        let (table, column, at) = self.list.table();
        let now = unix_now();
        if let Some(oldest) = self.oldest_kept() {
            sqlx::query(&format!("DELETE FROM {table} WHERE {at} < $1"))
                .bind(oldest)
                .execute(&self.pool)
                .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO {table} ({column}, {at}) VALUES ($1, $2) \
             ON CONFLICT ({column}) DO NOTHING"
        ))
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.write().ids.insert(id.to_owned(), now);
        Ok(())
    }

    /// Whether `id` is revoked. An error means the answer is unknown: callers
    /// refuse (fail closed).
    pub async fn is_revoked(&self, id: &str) -> Result<bool, RevocationError> {
        if let Some(answer) = self.fresh(id) {
            return Ok(answer);
        }
        let _refreshing = self.refresh.lock().await;
        // Whoever waited finds the copy another request just refreshed.
        if let Some(answer) = self.fresh(id) {
            return Ok(answer);
        }
        match self.load().await {
            Ok(ids) => {
                let mut cache = self.write();
                // Revocations are never undone: the union keeps one this replica took
                // while the query ran; an expiring list forgets what has expired.
                cache.ids.extend(ids);
                if let Some(oldest) = self.oldest_kept() {
                    cache.ids.retain(|_, at| *at >= oldest);
                }
                cache.loaded = Some(Instant::now());
                Ok(cache.ids.contains_key(id))
            }
            // A stale copy still knows what was revoked for good.
            Err(_) if self.read().ids.contains_key(id) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The cached answer, if the copy is recent enough.
    fn fresh(&self, id: &str) -> Option<bool> {
        let cache = self.read();
        cache
            .loaded
            .is_some_and(|t| t.elapsed() < self.max_age)
            .then(|| cache.ids.contains_key(id))
    }

    async fn load(&self) -> Result<Vec<(String, i64)>, RevocationError> {
        let (table, column, at) = self.list.table();
        let rows = sqlx::query(&format!("SELECT {column}, {at} FROM {table}"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(column)?, r.try_get(at)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// For an expiring list, the oldest revocation time that can still matter.
    fn oldest_kept(&self) -> Option<i64> {
        match self.list {
            List::Instances => None,
            List::UiSessions { lifetime } => Some(
                unix_now().saturating_sub(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            ),
        }
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
        let here = Revocations::new(store.pool(), List::Instances, Duration::from_millis(200));
        let there = Revocations::new(store.pool(), List::Instances, Duration::from_millis(200));
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
        let restarted = Revocations::new(store.pool(), List::Instances, Duration::from_secs(60));
        assert!(restarted.is_revoked("inst-1").await.unwrap());
    }

    #[tokio::test]
    async fn an_unreachable_database_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let list = Revocations::new(store.pool(), List::Instances, Duration::ZERO);
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

    #[tokio::test]
    async fn ended_sessions_are_forgotten_once_they_would_have_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let lifetime = Duration::from_secs(1);
        let list = Revocations::new(store.pool(), List::UiSessions { lifetime }, Duration::ZERO);
        list.revoke("s-old").await.unwrap();
        assert!(list.is_revoked("s-old").await.unwrap());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        list.revoke("s-new").await.unwrap();
        assert!(list.is_revoked("s-new").await.unwrap());
        assert!(!list.is_revoked("s-old").await.unwrap());
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ended_ui_sessions")
            .fetch_one(&store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1);
        // The instance list in the same database is another list.
        let instances = Revocations::new(store.pool(), List::Instances, Duration::ZERO);
        assert!(!instances.is_revoked("s-new").await.unwrap());
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
