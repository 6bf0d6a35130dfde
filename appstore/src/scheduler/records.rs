//! Where the scheduler keeps its instance records (owner, visibility, routing mode, the hash
//! of the instance token): rows in the App Store's database for the local runtime, or the
//! labels and annotations of the instance's own objects on Kubernetes, so that an instance
//! created or deleted by other means is seen as it is.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Instance, ScheduleError};
use crate::repository::{RepoError, Repository, Visibility, now_ms};

/// Whether a new instance got its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Recorded; the owner was under the limit.
    Taken,
    /// The owner already has `limit` instances.
    Full,
}

/// A store of instance records.
#[async_trait::async_trait]
pub trait Records: Send + Sync {
    /// Records a new instance if its owner has fewer than `limit`; the runtime's `start`
    /// follows.
    async fn insert(
        &self,
        instance: &Instance,
        token_hash: &str,
        limit: i64,
    ) -> Result<Slot, ScheduleError>;
    /// After the runtime started `instance`: whether it still fits its owner's `limit`
    /// (stores without transactions check here for instances started at the same moment).
    async fn settle(&self, instance: &Instance, limit: i64) -> Result<Slot, ScheduleError>;
    /// Forgets an instance and frees its slot.
    async fn remove(&self, id: &str, owner: &str) -> Result<(), ScheduleError>;
    /// An instance by id.
    async fn get(&self, id: &str) -> Result<Option<Instance>, ScheduleError>;
    /// The instance whose token hashes to `token_hash`.
    async fn by_token_hash(&self, token_hash: &str) -> Result<Option<Instance>, ScheduleError>;
    /// Instances, of one owner and one app when given, oldest first.
    async fn list(
        &self,
        owner: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<Instance>, ScheduleError>;
    /// Changes who may open an instance.
    async fn set_visibility(&self, id: &str, visibility: Visibility) -> Result<(), ScheduleError>;
    /// Records whether its owner suspended it.
    async fn set_suspended(&self, id: &str, suspended: bool) -> Result<(), ScheduleError>;
}

/// Instance rows in the App Store's database (the local runtime's records).
#[derive(Clone)]
pub struct SqlRecords {
    repo: Repository,
}

impl SqlRecords {
    /// Records in `repo`'s database.
    pub fn new(repo: Repository) -> Self {
        Self { repo }
    }

    async fn select(&self, condition: &str, args: &[&str]) -> Result<Vec<Instance>, ScheduleError> {
        let text = format!(
            "SELECT {COLUMNS} FROM instances i JOIN apps a ON a.id = i.app_id WHERE {condition} \
             ORDER BY i.created_at, i.id"
        );
        let query = args.iter().fold(sqlx::query(&text), |q, a| q.bind(*a));
        query
            .fetch_all(self.repo.pool())
            .await?
            .iter()
            .map(instance_from_row)
            .collect()
    }
}

const COLUMNS: &str = "i.id, i.app_id, a.name AS app_name, a.version AS app_version, \
    a.title AS app_title, i.owner_subject, i.owner_name, i.principal, i.visibility, \
    i.routing_mode, i.suspended, i.created_at, i.updated_at";

fn instance_from_row(row: &AnyRow) -> Result<Instance, ScheduleError> {
    let id: String = row.try_get("id")?;
    let corrupt = || ScheduleError::Repository(RepoError::Corrupt(format!("instance {id}")));
    let principal: String = row.try_get("principal")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(Instance {
        app_id: row.try_get("app_id")?,
        app_name: row.try_get("app_name")?,
        app_version: row.try_get("app_version")?,
        app_title: row.try_get("app_title")?,
        owner_subject: row.try_get("owner_subject")?,
        owner: row.try_get("owner_name")?,
        principal: serde_json::from_str(&principal).map_err(|_| corrupt())?,
        visibility: Visibility::parse(&visibility).ok_or_else(corrupt)?,
        routing_mode: row.try_get("routing_mode")?,
        suspended: row.try_get::<i64, _>("suspended")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}

#[async_trait::async_trait]
impl Records for SqlRecords {
    async fn insert(
        &self,
        instance: &Instance,
        token_hash: &str,
        limit: i64,
    ) -> Result<Slot, ScheduleError> {
        let principal = &instance.principal;
        let mut tx = self.repo.pool().begin().await?;
        sqlx::query(
            "INSERT INTO app_owners (subject, apps) VALUES ($1, 0) ON CONFLICT (subject) DO NOTHING",
        )
        .bind(&principal.subject)
        .execute(&mut *tx)
        .await?;
        let slot = sqlx::query(
            "UPDATE app_owners SET instances = instances + 1 WHERE subject = $1 AND instances < $2",
        )
        .bind(&principal.subject)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        if slot.rows_affected() == 0 {
            return Ok(Slot::Full);
        }
        sqlx::query(
            "INSERT INTO instances (id, app_id, owner_subject, owner_name, principal, visibility, \
             routing_mode, token_hash, suspended, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9)",
        )
        .bind(&instance.id)
        .bind(&instance.app_id)
        .bind(&principal.subject)
        .bind(principal.display_name())
        .bind(serde_json::to_string(principal).unwrap_or_default())
        .bind(instance.visibility.as_str())
        .bind(&instance.routing_mode)
        .bind(token_hash)
        .bind(instance.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Slot::Taken)
    }

    async fn settle(&self, _: &Instance, _: i64) -> Result<Slot, ScheduleError> {
        Ok(Slot::Taken)
    }

    async fn remove(&self, id: &str, owner: &str) -> Result<(), ScheduleError> {
        let mut tx = self.repo.pool().begin().await?;
        let gone = sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() > 0 {
            sqlx::query(
                "UPDATE app_owners SET instances = instances - 1 WHERE subject = $1 AND instances > 0",
            )
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Instance>, ScheduleError> {
        Ok(self.select("i.id = $1", &[id]).await?.pop())
    }

    async fn by_token_hash(&self, token_hash: &str) -> Result<Option<Instance>, ScheduleError> {
        Ok(self.select("i.token_hash = $1", &[token_hash]).await?.pop())
    }

    async fn list(
        &self,
        owner: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<Instance>, ScheduleError> {
        let mut condition = "1 = 1".to_owned();
        let mut args = Vec::new();
        for (column, value) in [("i.owner_subject", owner), ("i.app_id", app)] {
            if let Some(value) = value {
                args.push(value);
                condition.push_str(&format!(" AND {column} = ${}", args.len()));
            }
        }
        self.select(&condition, &args).await
    }

    async fn set_visibility(&self, id: &str, visibility: Visibility) -> Result<(), ScheduleError> {
        sqlx::query("UPDATE instances SET visibility = $1, updated_at = $2 WHERE id = $3")
            .bind(visibility.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(self.repo.pool())
            .await?;
        Ok(())
    }

    async fn set_suspended(&self, id: &str, suspended: bool) -> Result<(), ScheduleError> {
        sqlx::query("UPDATE instances SET suspended = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(suspended))
            .bind(now_ms())
            .bind(id)
            .execute(self.repo.pool())
            .await?;
        Ok(())
    }
}
