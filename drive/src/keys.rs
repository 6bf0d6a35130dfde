//! Long-term access keys that users create, list and revoke for themselves, kept in the
//! metadata database (SQLite embedded, PostgreSQL shared by replicas) with their secrets
//! sealed by the server key. Every lookup asks the database, so a revocation holds on
//! every replica at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared_identity::{Principal, Sealer};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use shared_identity::{ALNUM, random_string};

/// Prefix of every long-term access key id.
pub const ACCESS_KEY_PREFIX: &str = "AKDR";
/// Most active keys one user may hold.
pub const MAX_ACTIVE_KEYS: i64 = 10;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 256;

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The database refused or could not be reached.
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("metadata database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The user already holds the most keys allowed.
    #[error("a user may hold at most {MAX_ACTIVE_KEYS} active access keys; revoke one first")]
    TooManyKeys,
    /// The description is too long.
    #[error("the description may be at most {MAX_DESCRIPTION} bytes")]
    DescriptionTooLong,
    /// A stored record cannot be used (altered, or sealed with an unknown key).
    #[error("access key {0} has an unreadable record")]
    Corrupt(String),
}

/// A key as its owner sees it in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The access key id.
    pub access_key_id: String,
    /// What the owner wrote about it.
    pub description: String,
    /// When it was created.
    pub created: SystemTime,
    /// When it was revoked, if it was.
    pub revoked: Option<SystemTime>,
}

/// A new key: the only time its secret is shown.
#[derive(Clone)]
pub struct NewKey {
    /// Listing facts.
    pub info: KeyInfo,
    /// The secret access key.
    pub secret: String,
}

/// An active key found for a request.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// The secret access key.
    pub secret: String,
    /// Who the key acts for.
    pub principal: Principal,
}

/// The access keys in the metadata database.
pub struct KeyStore {
    pool: AnyPool,
    sealer: Sealer,
}

impl KeyStore {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and brings the schema up to date.
    pub async fn open(url: &str, sealer: Sealer) -> Result<Self, KeyStoreError> {
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, sealer })
    }

    /// The database pool, which the instance revocation list shares.
    pub fn pool(&self) -> AnyPool {
        self.pool.clone()
    }

    /// Whether the database answers.
    pub async fn check(&self) -> Result<(), KeyStoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Creates a key for `principal`.
    pub async fn create(
        &self,
        principal: &Principal,
        description: &str,
    ) -> Result<NewKey, KeyStoreError> {
        if description.len() > MAX_DESCRIPTION {
            return Err(KeyStoreError::DescriptionTooLong);
        }
        let active: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM access_keys WHERE subject = $1 AND revoked_at IS NULL",
        )
        .bind(&principal.subject)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        if active >= MAX_ACTIVE_KEYS {
            return Err(KeyStoreError::TooManyKeys);
        }
        let access_key_id = format!("{ACCESS_KEY_PREFIX}{}", random_string(16, UPPER));
        let secret = random_string(40, ALNUM);
        let created = unix(SystemTime::now());
        sqlx::query(
            "INSERT INTO access_keys (access_key_id, subject, principal, sealed_secret, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&access_key_id)
        .bind(&principal.subject)
        .bind(serde_json::to_string(principal).expect("principals serialize"))
        .bind(self.sealer.seal(&access_key_id, secret.as_bytes()))
        .bind(description)
        .bind(created)
        .execute(&self.pool)
        .await?;
        Ok(NewKey {
            info: KeyInfo {
                access_key_id,
                description: description.to_owned(),
                created: from_unix(created),
                revoked: None,
            },
            secret,
        })
    }

    /// The keys of the user `subject`, active and revoked, oldest first.
    pub async fn list(&self, subject: &str) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let rows = sqlx::query(
            "SELECT access_key_id, description, created_at, revoked_at FROM access_keys \
             WHERE subject = $1 ORDER BY created_at, access_key_id",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    access_key_id: r.try_get("access_key_id")?,
                    description: r.try_get("description")?,
                    created: from_unix(r.try_get("created_at")?),
                    revoked: r.try_get::<Option<i64>, _>("revoked_at")?.map(from_unix),
                })
            })
            .collect()
    }

    /// Revokes `access_key_id` if it is an active key of `subject`; says whether it was.
    pub async fn revoke(&self, subject: &str, access_key_id: &str) -> Result<bool, KeyStoreError> {
        let done = sqlx::query(
            "UPDATE access_keys SET revoked_at = $1 \
             WHERE access_key_id = $2 AND subject = $3 AND revoked_at IS NULL",
        )
        .bind(unix(SystemTime::now()))
        .bind(access_key_id)
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The secret and principal of an active key.
    pub async fn lookup(&self, access_key_id: &str) -> Result<Option<ActiveKey>, KeyStoreError> {
        if !access_key_id.starts_with(ACCESS_KEY_PREFIX) {
            return Ok(None);
        }
        let Some(row) = sqlx::query(
            "SELECT principal, sealed_secret FROM access_keys \
             WHERE access_key_id = $1 AND revoked_at IS NULL",
        )
        .bind(access_key_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let corrupt = || KeyStoreError::Corrupt(access_key_id.to_owned());
        let sealed: String = row.try_get("sealed_secret")?;
        let secret = self
            .sealer
            .open(access_key_id, &sealed)
            .and_then(|s| String::from_utf8(s).ok())
            .ok_or_else(corrupt)?;
        let principal: String = row.try_get("principal")?;
        let principal = serde_json::from_str(&principal).map_err(|_| corrupt())?;
        Ok(Some(ActiveKey { secret, principal }))
    }
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use shared_identity::ServerKey;

    use super::*;

    fn alice() -> Principal {
        Principal {
            issuer: "i".into(),
            subject: "alice".into(),
            username: Some("alice".into()),
            email: None,
            groups: vec!["team-a".into()],
            roles: vec![],
        }
    }

    #[tokio::test]
    async fn create_list_revoke_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/drive.db?mode=rwc", dir.path().display());
        let sealer = Sealer::new(ServerKey::new(&[5; 32]).unwrap(), vec![]);
        let store = KeyStore::open(&url, sealer.clone()).await.unwrap();
        let key = store.create(&alice(), "laptop").await.unwrap();
        assert!(key.info.access_key_id.starts_with(ACCESS_KEY_PREFIX));
        let found = store
            .lookup(&key.info.access_key_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.secret.as_str(), found.principal),
            (key.secret.as_str(), alice())
        );
        assert_eq!(
            store.list("alice").await.unwrap(),
            std::slice::from_ref(&key.info)
        );
        assert!(store.list("bob").await.unwrap().is_empty());
        assert!(!store.revoke("bob", &key.info.access_key_id).await.unwrap());
        assert!(
            store
                .revoke("alice", &key.info.access_key_id)
                .await
                .unwrap()
        );
        assert!(
            !store
                .revoke("alice", &key.info.access_key_id)
                .await
                .unwrap()
        );
        assert!(
            store
                .lookup(&key.info.access_key_id)
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.list("alice").await.unwrap()[0].revoked.is_some());
        assert!(matches!(
            store.create(&alice(), &"x".repeat(257)).await,
            Err(KeyStoreError::DescriptionTooLong)
        ));
        for _ in 0..MAX_ACTIVE_KEYS {
            store.create(&alice(), "").await.unwrap();
        }
        assert!(matches!(
            store.create(&alice(), "").await,
            Err(KeyStoreError::TooManyKeys)
        ));
        // The database holds no secret in the clear; reopening runs no migration twice.
        drop(store);
        let store = KeyStore::open(&url, sealer).await.unwrap();
        let raw: Vec<String> = sqlx::query("SELECT sealed_secret FROM access_keys")
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("sealed_secret").unwrap())
            .collect();
        assert!(!raw.iter().any(|s| s.contains(&key.secret)));
        // Under another server key the secrets cannot be opened.
        let other = KeyStore::open(&url, Sealer::new(ServerKey::new(&[6; 32]).unwrap(), vec![]))
            .await
            .unwrap();
        let live = store
            .list("alice")
            .await
            .unwrap()
            .into_iter()
            .find(|k| k.revoked.is_none())
            .unwrap();
        assert!(matches!(
            other.lookup(&live.access_key_id).await,
            Err(KeyStoreError::Corrupt(_))
        ));
    }
}
