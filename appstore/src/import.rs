//! Importing a bundle: spool the upload to disk under a size limit, check the archive and
//! `app.toml`, then record the app and write its objects to Drive. Any failure removes what
//! was written; a replica that dies half-way leaves an `importing` row that the sweeper
//! ([`Importer::sweep`]) removes later with its objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::authz::{Caller, Denied, User};
use crate::bundle::archive::{Archive, ArchiveError, Limits};
use crate::bundle::assets::{self, AssetError};
use crate::bundle::manifest::{self, BundleFacts, Manifest, ManifestError, Policy, SecretRef};
use crate::repository::{AppRecord, Asset, RepoError, Repository, Tag, Visibility, now_ms};
use crate::store::{Store, StoreError};

/// Largest `app.toml`.
const MAX_MANIFEST_BYTES: u64 = 64 << 10;
/// Largest long description.
const MAX_LONG_DESCRIPTION_BYTES: u64 = 256 << 10;
/// Imports older than this that never finished belong to a replica that died.
const STALE_IMPORT: Duration = Duration::from_secs(3600);

/// Why an import was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The upload is larger than allowed.
    #[error("the bundle is larger than {0} bytes")]
    TooLarge(u64),
    /// The upload was cut off or could not be spooled.
    #[error("the upload could not be read: {0}")]
    Upload(String),
    /// The archive is unsafe or broken.
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    /// The bundle has no `app.toml` at its root.
    #[error("the bundle has no app.toml at its root")]
    NoManifest,
    /// `app.toml` breaks a rule.
    #[error("app.toml: {0}")]
    Manifest(#[from] ManifestError),
    /// The icon or a screenshot breaks a rule.
    #[error("{0}")]
    Asset(#[from] AssetError),
    /// `app.toml` names a tag that does not exist.
    #[error("App.Tags: there is no tag {0}")]
    UnknownTag(String),
    /// `app.toml` names a secret that does not exist.
    #[error("{field}: secret {name} does not exist")]
    UnknownSecret {
        /// The field naming it.
        field: String,
        /// The secret.
        name: String,
    },
    /// The caller may not import, or may not assign a tag it names.
    #[error("{0}")]
    Denied(String, Denied),
    /// The repository refused (duplicate, limit) or failed.
    #[error("{0}")]
    Repository(#[from] RepoError),
    /// Drive failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A local file operation failed.
    #[error("spooling the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// What the archive check found.
struct Unpacked {
    manifest: Manifest,
    runtime_version: Option<String>,
    lifecycle: String,
    long_description: String,
    icon: Option<(String, Vec<u8>)>,
    screenshots: Vec<(String, Vec<u8>)>,
}

/// The settings an import follows.
#[derive(Clone)]
pub struct ImportSettings {
    /// Largest upload.
    pub max_bundle_bytes: u64,
    /// Archive limits.
    pub limits: Limits,
    /// Most app versions per user (admins are not limited).
    pub app_version_limit: i64,
    /// `app.toml` policy; `importer_is_admin` is set per import.
    pub policy: Policy,
    /// Where uploads are spooled.
    pub spool_dir: std::path::PathBuf,
}

/// Imports bundles.
#[derive(Clone)]
pub struct Importer {
    repo: Repository,
    store: Store,
    settings: Arc<ImportSettings>,
}

impl Importer {
    /// An importer over the repository and Drive.
    pub fn new(repo: Repository, store: Store, settings: ImportSettings) -> Self {
        Self {
            repo,
            store,
            settings: Arc::new(settings),
        }
    }

    /// Imports the bundle streamed in `body` for `caller`, with `visibility`.
    pub async fn import<S, E>(
        &self,
        caller: &Caller,
        visibility: Visibility,
        body: S,
    ) -> Result<AppRecord, ImportError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let user = caller
            .full_access()
            .map_err(|d| ImportError::Denied("only full-access users import apps".into(), d))?
            .clone();
        tokio::fs::create_dir_all(&self.settings.spool_dir).await?;
        let spool = tempfile::NamedTempFile::new_in(&self.settings.spool_dir)?;
        let (size, sha256) = self.spool(body, spool.path()).await?;

        let mut policy = self.settings.policy.clone();
        policy.importer_is_admin = user.admin;
        let limits = self.settings.limits.clone();
        let file = spool.reopen()?;
        let unpacked = tokio::task::spawn_blocking(move || unpack(file, &limits, &policy))
            .await
            .map_err(|e| ImportError::Upload(e.to_string()))??;

        let tags = self.tags_for(caller, &unpacked.manifest.app.tags).await?;
        let record = record(&user, visibility, &unpacked, size, sha256);
        // The rest runs to completion even when the client goes away, so a failure always
        // cleans up after itself.
        let this = self.clone();
        tokio::spawn(async move { this.commit(record, unpacked, spool, tags, &user).await })
            .await
            .map_err(|e| ImportError::Upload(e.to_string()))?
    }

    /// Writes the upload to `path`, refusing more than the limit; returns size and SHA-256.
    async fn spool<S, E>(
        &self,
        mut body: S,
        path: &std::path::Path,
    ) -> Result<(u64, String), ImportError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let limit = self.settings.max_bundle_bytes;
        let mut out = tokio::fs::OpenOptions::new().write(true).open(path).await?;
        let mut hash = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ImportError::Upload(e.to_string()))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(ImportError::TooLarge(limit));
            }
            hash.update(&chunk);
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        Ok((
            size,
            hex_simd::encode_to_string(hash.finalize(), hex_simd::AsciiCase::Lower),
        ))
    }

    /// The tags `app.toml` names, each existing and assignable by the caller.
    async fn tags_for(&self, caller: &Caller, names: &[String]) -> Result<Vec<Tag>, ImportError> {
        let mut tags = Vec::new();
        for name in names {
            let tag = self
                .repo
                .tag(name)
                .await?
                .ok_or_else(|| ImportError::UnknownTag(name.clone()))?;
            caller.tagger_of(&tag).map_err(|d| {
                ImportError::Denied(format!("App.Tags: you may not assign tag {name}"), d)
            })?;
            tags.push(tag);
        }
        Ok(tags)
    }

    async fn commit(
        &self,
        record: AppRecord,
        unpacked: Unpacked,
        spool: tempfile::NamedTempFile,
        tags: Vec<Tag>,
        user: &User,
    ) -> Result<AppRecord, ImportError> {
        let limit = if user.admin {
            i64::MAX
        } else {
            self.settings.app_version_limit
        };
        self.repo.begin_import(&record, limit).await?;
        let written = self.write_objects(&record, unpacked, spool.path()).await;
        let tag_ids: Vec<String> = tags.iter().map(|t| t.id.clone()).collect();
        let finished = match written {
            Ok(()) => self
                .repo
                .finish_import(&record.id, &tag_ids)
                .await
                .map_err(Into::into),
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            self.discard(&record).await;
            return Err(e);
        }
        Ok(AppRecord {
            tags: tags.into_iter().map(|t| t.name).collect(),
            ..record
        })
    }

    async fn write_objects(
        &self,
        record: &AppRecord,
        unpacked: Unpacked,
        bundle: &std::path::Path,
    ) -> Result<(), ImportError> {
        self.store
            .put_file(&record.bundle_key, bundle, "application/zip")
            .await?;
        let pictures = unpacked.icon.into_iter().chain(unpacked.screenshots);
        let assets = record.icon.iter().chain(&record.screenshots);
        for ((_, bytes), asset) in pictures.zip(assets) {
            self.store
                .put_bytes(&asset.key, bytes, &asset.content_type)
                .await?;
        }
        Ok(())
    }

    /// Removes an unfinished import's objects and row. Objects Drive cannot delete now have
    /// no row afterwards, so the sweeper finds them; a row that stays is swept when stale.
    async fn discard(&self, record: &AppRecord) {
        if let Err(e) = self.store.delete(&record.object_keys()).await {
            tracing::warn!(app = %record.id, error = %e, "objects of a failed import stay until the next sweep");
        }
        if let Err(e) = self.repo.abort_import(&record.id).await {
            tracing::warn!(app = %record.id, error = %e, "the row of a failed import stays until the next sweep");
        }
    }

    /// Deletes an app's objects after its row went; leftovers are swept later.
    pub async fn delete_objects(&self, record: &AppRecord) {
        if let Err(e) = self.store.delete(&record.object_keys()).await {
            tracing::warn!(app = %record.id, error = %e, "objects of a deleted app stay until the next sweep");
        }
    }

    /// Removes imports a dead replica left half-done, and objects whose app row is gone.
    pub async fn sweep(&self) -> Result<usize, ImportError> {
        let mut removed = 0;
        let before = now_ms() - i64::try_from(STALE_IMPORT.as_millis()).unwrap_or(0);
        for record in self.repo.stale_imports(before).await? {
            self.store.delete(&record.object_keys()).await?;
            self.repo.abort_import(&record.id).await?;
            removed += 1;
        }
        // One listing, grouped by app id. Rows are written before objects, so objects
        // whose row is gone belong to nobody and can go.
        let mut by_app: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in self.store.list("apps/").await? {
            if let Some(id) = key.strip_prefix("apps/").and_then(|k| k.split('/').next()) {
                by_app.entry(id.to_owned()).or_default().push(key);
            }
        }
        for (id, keys) in by_app {
            if !self.repo.app_exists(&id).await? {
                self.store.delete(&keys).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Checks the spooled archive and reads what the store keeps from it.
fn unpack(file: std::fs::File, limits: &Limits, policy: &Policy) -> Result<Unpacked, ImportError> {
    let mut archive = Archive::open(file, limits)?;
    let paths: Vec<String> = archive.files().iter().map(|e| e.path.clone()).collect();
    if !paths.iter().any(|p| p == "app.toml") {
        return Err(ImportError::NoManifest);
    }
    let text = archive.read("app.toml", MAX_MANIFEST_BYTES)?;
    let text = String::from_utf8(text)
        .map_err(|_| ManifestError::Syntax("app.toml is not UTF-8 text".into()))?;
    let manifest = manifest::parse(&text)?;
    let facts = BundleFacts::from_paths(paths.iter().map(String::as_str));
    let resolved = manifest::validate(&manifest, &facts, policy)?;
    // There is no secret store yet, so a required secret can never be found.
    if let Some((field, name)) = required_secret(&manifest, &resolved.secret_refs) {
        return Err(ImportError::UnknownSecret { field, name });
    }
    let path = &manifest.app.long_description;
    let long_description = if path.is_empty() {
        String::new()
    } else {
        let bytes = archive.read(path, MAX_LONG_DESCRIPTION_BYTES)?;
        String::from_utf8(bytes).map_err(|_| ManifestError::Invalid {
            field: "App.LongDescription".into(),
            reason: format!("{path} is not UTF-8 text"),
        })?
    };
    let icon = match assets::icon_path(paths.iter().map(String::as_str), &manifest.app.name) {
        Some(path) => {
            // Read past the icon limit so that check_icon can say what is wrong.
            let bytes = archive.read(path, assets::MAX_SCREENSHOT_BYTES)?;
            assets::check_icon(path, &bytes)?;
            Some((path.to_owned(), bytes))
        }
        None => None,
    };
    let mut screenshots = Vec::new();
    for path in assets::screenshot_paths(paths.iter().map(String::as_str))
        .into_iter()
        .take(assets::MAX_SCREENSHOTS)
    {
        let bytes = archive.read(path, assets::MAX_SCREENSHOT_BYTES)?;
        assets::check_screenshot(path, &bytes)?;
        screenshots.push((path.to_owned(), bytes));
    }
    Ok(Unpacked {
        runtime_version: resolved.runtime,
        lifecycle: resolved.lifecycle.as_str().to_owned(),
        manifest,
        long_description,
        icon,
        screenshots,
    })
}

/// The field and name of the first secret `app.toml` requires (not `Optional`).
fn required_secret(manifest: &Manifest, refs: &[SecretRef]) -> Option<(String, String)> {
    let wanted = refs.iter().find(|r| !r.optional)?;
    let is_it = |secret: &str, key: &str| secret == wanted.name && key == wanted.key;
    let field = match manifest
        .env
        .iter()
        .position(|e| !e.optional && is_it(&e.secret, &e.secret_key))
    {
        Some(i) => format!("Env[{i}].Secret"),
        None => manifest
            .files
            .iter()
            .position(|f| !f.optional && is_it(&f.secret, &f.secret_key))
            .map_or_else(|| "File".to_owned(), |i| format!("File[{i}].Secret")),
    };
    Some((field, wanted.name.clone()))
}

/// Random UUID (version 4).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b[6] = (b[6] & 0x0F) | 0x40;
    b[8] = (b[8] & 0x3F) | 0x80;
    let h = hex_simd::encode_to_string(b, hex_simd::AsciiCase::Lower);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn record(
    user: &User,
    visibility: Visibility,
    u: &Unpacked,
    size: u64,
    sha256: String,
) -> AppRecord {
    let id = new_id();
    let asset = |key: String, path: &str, bytes: &[u8]| Asset {
        key,
        content_type: assets::media_type(path)
            .unwrap_or("application/octet-stream")
            .to_owned(),
        size: bytes.len() as u64,
    };
    let extension = |path: &str| {
        path.rsplit_once('.')
            .map_or("", |(_, e)| e)
            .to_ascii_lowercase()
    };
    let icon = u
        .icon
        .as_ref()
        .map(|(p, b)| asset(format!("apps/{id}/icon.{}", extension(p)), p, b));
    let screenshots = u
        .screenshots
        .iter()
        .enumerate()
        .map(|(i, (p, b))| {
            asset(
                format!("apps/{id}/screenshots/{i:02}.{}", extension(p)),
                p,
                b,
            )
        })
        .collect();
    let now = now_ms();
    let app = &u.manifest.app;
    AppRecord {
        bundle_key: format!("apps/{id}/bundle.wave"),
        name: app.name.clone(),
        version: app.version.clone(),
        title: if app.title.is_empty() {
            app.name.clone()
        } else {
            app.title.clone()
        },
        description: app.description.clone(),
        long_description: u.long_description.clone(),
        owner_subject: user.principal.subject.clone(),
        owner_name: user.principal.display_name().to_owned(),
        visibility,
        lifecycle: u.lifecycle.clone(),
        runtime_version: u.runtime_version.clone(),
        manifest: serde_json::to_value(&u.manifest).unwrap_or_default(),
        bundle_size: size,
        bundle_sha256: sha256,
        icon,
        screenshots,
        tags: Vec::new(),
        created_at: now,
        updated_at: now,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_4_uuids() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, new_id());
    }
}
