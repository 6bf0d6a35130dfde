//! The App Store's metadata in its database (PostgreSQL shared by replicas, SQLite on the
//! embedded default; the same SQL for both through sqlx's `Any` driver): apps, tags and the
//! instances that pin an app. Which apps a caller may see is one SQL condition, so listing,
//! searching and fetching one app can never disagree.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::authz::Caller;

/// Why the repository failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The database refused or could not be reached.
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("metadata database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// An app with this name and version exists.
    #[error("app {name} version {version} already exists")]
    Duplicate {
        /// The app name.
        name: String,
        /// The version.
        version: String,
    },
    /// The importer holds the most app versions allowed.
    #[error("a user may import at most {0} app versions; delete one first")]
    VersionLimit(i64),
    /// A tag with this name exists.
    #[error("tag {0} already exists")]
    TagExists(String),
    /// The app still has instances.
    #[error("the app has {0} instance(s); terminate them before deleting it")]
    HasInstances(i64),
    /// A stored record cannot be read.
    #[error("stored record {0} is unreadable")]
    Corrupt(String),
}

/// Who may see an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Visibility {
    /// Its owner (and admins).
    Private,
    /// Every full-access user.
    AllUsers,
    /// Everyone, signed in or not.
    Public,
}

impl Visibility {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "PRIVATE",
            Visibility::AllUsers => "ALL_USERS",
            Visibility::Public => "PUBLIC",
        }
    }

    /// Parses the wire form (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PRIVATE" => Some(Visibility::Private),
            "ALL_USERS" => Some(Visibility::AllUsers),
            "PUBLIC" => Some(Visibility::Public),
            _ => None,
        }
    }
}

/// An object the App Store keeps in Drive for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    /// Object key in the system bucket.
    pub key: String,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One app version as stored.
#[derive(Debug, Clone)]
pub struct AppRecord {
    /// Random UUID.
    pub id: String,
    /// `[App] Name`.
    pub name: String,
    /// `[App] Version`.
    pub version: String,
    /// Display title.
    pub title: String,
    /// One-line description.
    pub description: String,
    /// Markdown text of the long description.
    pub long_description: String,
    /// The importer's subject.
    pub owner_subject: String,
    /// The importer's display name.
    pub owner_name: String,
    /// Who may see it.
    pub visibility: Visibility,
    /// `ON_DEMAND`, `MANAGED` or `LINK`.
    pub lifecycle: String,
    /// Canonical runtime version (none for links).
    pub runtime_version: Option<String>,
    /// The validated `app.toml`, as JSON.
    pub manifest: serde_json::Value,
    /// The bundle's object key.
    pub bundle_key: String,
    /// Bundle size in bytes.
    pub bundle_size: u64,
    /// Hex SHA-256 of the bundle.
    pub bundle_sha256: String,
    /// The icon, if the bundle has one.
    pub icon: Option<Asset>,
    /// Screenshots in display order.
    pub screenshots: Vec<Asset>,
    /// Tag names.
    pub tags: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl AppRecord {
    /// Every object key the app owns in Drive.
    pub fn object_keys(&self) -> Vec<String> {
        let mut keys = vec![self.bundle_key.clone()];
        keys.extend(self.icon.iter().map(|a| a.key.clone()));
        keys.extend(self.screenshots.iter().map(|a| a.key.clone()));
        keys
    }
}

/// A tag as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tag {
    /// Random UUID.
    pub id: String,
    /// The name `app.toml` uses.
    pub name: String,
    /// Display title.
    pub title: String,
    /// Hex colour.
    pub color: String,
    /// What it means.
    pub description: String,
    /// Whether the UI shows it as a category.
    pub is_category: bool,
    /// Roles that may assign it; empty means any full-access user.
    pub admin_roles: Vec<String>,
    /// Roles of visitors who see `ALL_USERS` apps carrying it.
    pub visitor_roles: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// Filters of an app listing.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Exact app name.
    pub name: Option<String>,
    /// Case-insensitive substring of name, title or description.
    pub search: Option<String>,
    /// Tag name the app carries.
    pub tag: Option<String>,
    /// Owner subject or display name.
    pub owner: Option<String>,
    /// Visibility.
    pub visibility: Option<Visibility>,
    /// Continue after this (name, version).
    pub after: Option<(String, String)>,
    /// Page size.
    pub limit: u32,
}

/// The repository.
#[derive(Clone)]
pub struct Repository {
    pool: AnyPool,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// SQL text with numbered placeholders and the values bound to them, in order.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<String>,
}

impl Sql {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    fn arg(&mut self, value: impl Into<String>) -> &mut Self {
        self.args.push(value.into());
        let n = self.args.len();
        self.text.push_str(&format!("${n}"));
        self
    }

    fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        self.args
            .iter()
            .fold(sqlx::query(&self.text), |q, a| q.bind(a.as_str()))
    }
}

const APP_COLUMNS: &str = "a.id, a.name, a.version, a.title, a.description, a.long_description, \
     a.owner_subject, a.owner_name, a.visibility, a.lifecycle, a.runtime_version, a.manifest, \
     a.bundle_key, a.bundle_size, a.bundle_sha256, a.icon, a.screenshots, a.created_at, a.updated_at";

/// Appends the condition "the caller may see app `a`".
fn visible_to(sql: &mut Sql, caller: &Caller) {
    match caller {
        Caller::Anonymous => {
            sql.push("a.visibility = 'PUBLIC'");
        }
        Caller::User(u) if u.admin => {
            sql.push("1 = 1");
        }
        Caller::User(u) if u.full_access => {
            sql.push("(a.visibility IN ('ALL_USERS', 'PUBLIC') OR a.owner_subject = ")
                .arg(&u.principal.subject)
                .push(")");
        }
        Caller::User(u) => {
            sql.push("(a.visibility = 'PUBLIC' OR a.owner_subject = ")
                .arg(&u.principal.subject);
            if !u.principal.roles.is_empty() {
                sql.push(
                    " OR (a.visibility = 'ALL_USERS' AND EXISTS (SELECT 1 FROM app_tags t \
                     JOIN tag_roles r ON r.tag_id = t.tag_id WHERE t.app_id = a.id \
                     AND r.kind = 'visitor' AND r.role IN (",
                );
                for (i, role) in u.principal.roles.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.arg(role);
                }
                sql.push(")))");
            }
            sql.push(")");
        }
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Repository {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and brings the schema up to date.
    /// On PostgreSQL the migrator holds an advisory lock, so replicas starting together
    /// migrate once.
    pub async fn open(url: &str) -> Result<Self, RepoError> {
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for modules that own other tables of the schema.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn check(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records an import under way (hidden from listings), unless the name and version are
    /// taken or the owner is at `limit` app versions. The row is what makes concurrent
    /// imports of one name and version exclusive: the database's unique index picks one;
    /// the owner's counter, taken in the same transaction, holds the limit under concurrency.
    pub async fn begin_import(&self, app: &AppRecord, limit: i64) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO app_owners (subject, apps) VALUES ($1, 0) ON CONFLICT (subject) DO NOTHING",
        )
        .bind(&app.owner_subject)
        .execute(&mut *tx)
        .await?;
        let slot =
            sqlx::query("UPDATE app_owners SET apps = apps + 1 WHERE subject = $1 AND apps < $2")
                .bind(&app.owner_subject)
                .bind(limit)
                .execute(&mut *tx)
                .await?;
        if slot.rows_affected() == 0 {
            return Err(RepoError::VersionLimit(limit));
        }
        let inserted = sqlx::query(
            "INSERT INTO apps (id, name, version, state, title, description, long_description, \
             owner_subject, owner_name, visibility, lifecycle, runtime_version, manifest, \
             bundle_key, bundle_size, bundle_sha256, icon, screenshots, created_at, updated_at) \
             VALUES ($1, $2, $3, 'importing', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $18)",
        )
        .bind(&app.id)
        .bind(&app.name)
        .bind(&app.version)
        .bind(&app.title)
        .bind(&app.description)
        .bind(&app.long_description)
        .bind(&app.owner_subject)
        .bind(&app.owner_name)
        .bind(app.visibility.as_str())
        .bind(&app.lifecycle)
        .bind(app.runtime_version.as_deref())
        .bind(app.manifest.to_string())
        .bind(&app.bundle_key)
        .bind(i64::try_from(app.bundle_size).unwrap_or(i64::MAX))
        .bind(&app.bundle_sha256)
        .bind(app.icon.as_ref().map(json))
        .bind(json(&app.screenshots))
        .bind(app.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(RepoError::Duplicate {
                    name: app.name.clone(),
                    version: app.version.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes an imported app visible, with its tags.
    pub async fn finish_import(&self, id: &str, tag_ids: &[String]) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        for tag in tag_ids {
            sqlx::query("INSERT INTO app_tags (app_id, tag_id) VALUES ($1, $2)")
                .bind(id)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE apps SET state = 'ready', updated_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets an import that failed (its objects are already gone or being removed).
    pub async fn abort_import(&self, id: &str) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query(
            "DELETE FROM apps WHERE id = $1 AND state = 'importing' RETURNING owner_subject",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = gone {
            release_slot(&mut tx, &row.try_get::<String, _>("owner_subject")?).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Imports that started before `before` (unix ms) and never finished: a replica died
    /// while writing their objects.
    pub async fn stale_imports(&self, before: i64) -> Result<Vec<AppRecord>, RepoError> {
        let rows = sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM apps a WHERE a.state = 'importing' AND a.created_at < $1"
        ))
        .bind(before)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| app_from_row(r, Vec::new())).collect()
    }

    /// Whether an app row (in any state) has this id.
    pub async fn app_exists(&self, id: &str) -> Result<bool, RepoError> {
        Ok(sqlx::query("SELECT 1 AS one FROM apps WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Apps the caller may see that match `filter`, in (name, version) order, and whether
    /// more follow.
    pub async fn list(
        &self,
        caller: &Caller,
        filter: &AppFilter,
    ) -> Result<(Vec<AppRecord>, bool), RepoError> {
        let mut sql = Sql::new(&format!(
            "SELECT {APP_COLUMNS} FROM apps a WHERE a.state = 'ready' AND "
        ));
        visible_to(&mut sql, caller);
        if let Some(name) = &filter.name {
            sql.push(" AND a.name = ").arg(name);
        }
        if let Some(q) = &filter.search {
            let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
            sql.push(" AND (LOWER(a.name) LIKE ")
                .arg(pattern.clone())
                .push(" ESCAPE '\\' OR LOWER(a.title) LIKE ")
                .arg(pattern.clone())
                .push(" ESCAPE '\\' OR LOWER(a.description) LIKE ")
                .arg(pattern)
                .push(" ESCAPE '\\')");
        }
        if let Some(owner) = &filter.owner {
            sql.push(" AND (a.owner_subject = ")
                .arg(owner)
                .push(" OR a.owner_name = ")
                .arg(owner)
                .push(")");
        }
        if let Some(v) = filter.visibility {
            sql.push(" AND a.visibility = ").arg(v.as_str());
        }
        if let Some(tag) = &filter.tag {
            sql.push(
                " AND EXISTS (SELECT 1 FROM app_tags t JOIN tags g ON g.id = t.tag_id \
                 WHERE t.app_id = a.id AND g.name = ",
            )
            .arg(tag)
            .push(")");
        }
        if let Some((name, version)) = &filter.after {
            sql.push(" AND (a.name > ")
                .arg(name)
                .push(" OR (a.name = ")
                .arg(name)
                .push(" AND a.version > ")
                .arg(version)
                .push("))");
        }
        let limit = filter.limit.clamp(1, 1000);
        sql.push(&format!(" ORDER BY a.name, a.version LIMIT {}", limit + 1));
        let rows = sql.query().fetch_all(&self.pool).await?;
        let more = rows.len() > limit as usize;
        let rows = &rows[..rows.len().min(limit as usize)];
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut tags = self.tags_of(&ids).await?;
        let apps = rows
            .iter()
            .zip(&ids)
            .map(|(r, id)| app_from_row(r, tags.remove(id).unwrap_or_default()))
            .collect::<Result<_, _>>()?;
        Ok((apps, more))
    }

    /// One ready app, if the caller may see it.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Option<AppRecord>, RepoError> {
        let mut sql = Sql::new(&format!(
            "SELECT {APP_COLUMNS} FROM apps a WHERE a.state = 'ready' AND a.id = "
        ));
        sql.arg(id).push(" AND ");
        visible_to(&mut sql, caller);
        let Some(row) = sql.query().fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut tags = self.tags_of(&[id.to_owned()]).await?;
        app_from_row(&row, tags.remove(id).unwrap_or_default()).map(Some)
    }

    async fn tags_of(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<String>>, RepoError> {
        let mut out = std::collections::HashMap::<String, Vec<String>>::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let mut sql = Sql::new(
            "SELECT t.app_id, g.name FROM app_tags t JOIN tags g ON g.id = t.tag_id \
             WHERE t.app_id IN (",
        );
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.arg(id);
        }
        sql.push(") ORDER BY g.name");
        for row in sql.query().fetch_all(&self.pool).await? {
            out.entry(row.try_get("app_id")?)
                .or_default()
                .push(row.try_get("name")?);
        }
        Ok(out)
    }

    /// A ready app by id, whoever asks (for the scheduler's own use).
    pub async fn ready_app(&self, id: &str) -> Result<Option<AppRecord>, RepoError> {
        let row = sqlx::query(&format!(
            "SELECT {APP_COLUMNS} FROM apps a WHERE a.state = 'ready' AND a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| app_from_row(&r, Vec::new())).transpose()
    }

    /// Deletes an app unless it has instances; returns whether a row went.
    pub async fn delete(&self, id: &str) -> Result<bool, RepoError> {
        let mut tx = self.pool.begin().await?;
        let instances: i64 = sqlx::query("SELECT COUNT(*) AS n FROM instances WHERE app_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if instances > 0 {
            return Err(RepoError::HasInstances(instances));
        }
        let gone = sqlx::query(
            "DELETE FROM apps WHERE id = $1 AND state = 'ready' RETURNING owner_subject",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = gone else {
            return Ok(false);
        };
        release_slot(&mut tx, &row.try_get::<String, _>("owner_subject")?).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Changes an app's visibility.
    pub async fn set_visibility(&self, id: &str, v: Visibility) -> Result<(), RepoError> {
        sqlx::query("UPDATE apps SET visibility = $1, updated_at = $2 WHERE id = $3")
            .bind(v.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Creates a tag.
    pub async fn create_tag(&self, tag: &Tag) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tags (id, name, title, color, description, is_category, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&tag.id)
        .bind(&tag.name)
        .bind(&tag.title)
        .bind(&tag.color)
        .bind(&tag.description)
        .bind(i64::from(tag.is_category))
        .bind(tag.created_at)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(RepoError::TagExists(tag.name.clone()));
            }
            other => other?,
        };
        write_tag_roles(&mut tx, tag).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a tag's descriptive fields and roles.
    pub async fn update_tag(&self, tag: &Tag) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE tags SET title = $1, color = $2, description = $3, is_category = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(&tag.title)
        .bind(&tag.color)
        .bind(&tag.description)
        .bind(i64::from(tag.is_category))
        .bind(now_ms())
        .bind(&tag.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM tag_roles WHERE tag_id = $1")
            .bind(&tag.id)
            .execute(&mut *tx)
            .await?;
        write_tag_roles(&mut tx, tag).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every tag, by name.
    pub async fn tags(&self) -> Result<Vec<Tag>, RepoError> {
        self.find_tags(None).await
    }

    /// The tag named or identified by `name_or_id`.
    pub async fn tag(&self, name_or_id: &str) -> Result<Option<Tag>, RepoError> {
        Ok(self.find_tags(Some(name_or_id)).await?.pop())
    }

    async fn find_tags(&self, only: Option<&str>) -> Result<Vec<Tag>, RepoError> {
        let mut sql = Sql::new(
            "SELECT id, name, title, color, description, is_category, created_at, updated_at \
             FROM tags",
        );
        if let Some(key) = only {
            sql.push(" WHERE name = ")
                .arg(key)
                .push(" OR id = ")
                .arg(key);
        }
        sql.push(" ORDER BY name");
        let mut tags = sql
            .query()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Tag {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    title: r.try_get("title")?,
                    color: r.try_get("color")?,
                    description: r.try_get("description")?,
                    is_category: r.try_get::<i64, _>("is_category")? != 0,
                    admin_roles: Vec::new(),
                    visitor_roles: Vec::new(),
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let mut roles = Sql::new("SELECT tag_id, kind, role FROM tag_roles");
        if let [tag] = tags.as_slice() {
            roles.push(" WHERE tag_id = ").arg(&tag.id);
        }
        roles.push(" ORDER BY role");
        let roles = roles.query().fetch_all(&self.pool).await?;
        for r in roles {
            let tag_id: String = r.try_get("tag_id")?;
            let Some(tag) = tags.iter_mut().find(|t| t.id == tag_id) else {
                continue;
            };
            let role: String = r.try_get("role")?;
            match r.try_get::<String, _>("kind")?.as_str() {
                "admin" => tag.admin_roles.push(role),
                _ => tag.visitor_roles.push(role),
            }
        }
        Ok(tags)
    }

    /// Puts a tag on an app (no-op when it is already there).
    pub async fn assign_tag(&self, app_id: &str, tag_id: &str) -> Result<(), RepoError> {
        let done = sqlx::query("INSERT INTO app_tags (app_id, tag_id) VALUES ($1, $2)")
            .bind(app_id)
            .bind(tag_id)
            .execute(&self.pool)
            .await;
        match done {
            Err(e) if is_unique_violation(&e) => Ok(()),
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    /// Takes a tag off an app; says whether it was there.
    pub async fn remove_tag(&self, app_id: &str, tag_id: &str) -> Result<bool, RepoError> {
        let done = sqlx::query("DELETE FROM app_tags WHERE app_id = $1 AND tag_id = $2")
            .bind(app_id)
            .bind(tag_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Numbers of app rows in each state, for metrics and tests.
    pub async fn count_apps(&self) -> Result<i64, RepoError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM apps")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }
}

/// Gives back one of `subject`'s app-version slots.
async fn release_slot(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    subject: &str,
) -> Result<(), RepoError> {
    sqlx::query("UPDATE app_owners SET apps = apps - 1 WHERE subject = $1 AND apps > 0")
        .bind(subject)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn write_tag_roles(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tag: &Tag,
) -> Result<(), RepoError> {
    let roles = tag
        .admin_roles
        .iter()
        .map(|r| ("admin", r))
        .chain(tag.visitor_roles.iter().map(|r| ("visitor", r)));
    for (kind, role) in roles {
        sqlx::query("INSERT INTO tag_roles (tag_id, kind, role) VALUES ($1, $2, $3)")
            .bind(&tag.id)
            .bind(kind)
            .bind(role)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("assets serialize")
}

/// Escapes `%`, `_` and the escape character itself for a LIKE pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn app_from_row(r: &AnyRow, tags: Vec<String>) -> Result<AppRecord, RepoError> {
    let id: String = r.try_get("id")?;
    let corrupt = || RepoError::Corrupt(format!("app {id}"));
    let visibility =
        Visibility::parse(&r.try_get::<String, _>("visibility")?).ok_or_else(corrupt)?;
    let manifest =
        serde_json::from_str(&r.try_get::<String, _>("manifest")?).map_err(|_| corrupt())?;
    let icon = match r.try_get::<Option<String>, _>("icon")? {
        Some(text) => Some(serde_json::from_str(&text).map_err(|_| corrupt())?),
        None => None,
    };
    let screenshots =
        serde_json::from_str(&r.try_get::<String, _>("screenshots")?).map_err(|_| corrupt())?;
    Ok(AppRecord {
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        long_description: r.try_get("long_description")?,
        owner_subject: r.try_get("owner_subject")?,
        owner_name: r.try_get("owner_name")?,
        visibility,
        lifecycle: r.try_get("lifecycle")?,
        runtime_version: r.try_get("runtime_version")?,
        manifest,
        bundle_key: r.try_get("bundle_key")?,
        bundle_size: u64::try_from(r.try_get::<i64, _>("bundle_size")?).unwrap_or(0),
        bundle_sha256: r.try_get("bundle_sha256")?,
        icon,
        screenshots,
        tags,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }

    #[test]
    fn placeholders_number_in_order() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.arg("x").push(" AND b = ").arg("y");
        assert_eq!(sql.text, "SELECT 1 WHERE a = $1 AND b = $2");
        assert_eq!(sql.args, ["x", "y"]);
    }
}
