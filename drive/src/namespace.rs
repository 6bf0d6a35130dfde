//! The bucket namespace users see, and who may do what in it.
//!
//! A user names buckets by alias: `_my` is their home bucket, `default` their personal
//! workspace, and the name of each of their OIDC groups that group's workspace. Behind the
//! aliases are ordinary backend buckets with reserved names (`home--<id>`, `default--<id>`,
//! `ws--<group>`, where `<id>` is derived from the subject). Admins also reach every backend
//! bucket by its own name. Anything else is `AccessDenied`, whether it exists or not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buckets::{Backend, BucketName};
use s3s::{S3Result, s3_error};
use sha2::{Digest, Sha256};
use shared_identity::Principal;

use crate::s3::backend_error;

/// The alias of the caller's home bucket.
pub const HOME_ALIAS: &str = "_my";
/// The alias of the caller's personal workspace.
pub const DEFAULT_ALIAS: &str = "default";
const RESERVED: [&str; 3] = ["home--", "default--", "ws--"];

/// How the caller relates to a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Their own home bucket or personal workspace.
    Owner,
    /// A workspace of one of their groups.
    Member,
    /// An admin reaching a bucket by its backend name.
    Admin,
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reads objects or bucket facts.
    Read,
    /// Writes or deletes objects.
    Write,
    /// Creates or deletes buckets, or anything Drive does not know.
    Manage,
}

/// Which relation grants which need: the whole authorization policy.
const POLICY: &[(Relation, &[Need])] = &[
    (Relation::Owner, &[Need::Read, Need::Write]),
    (Relation::Member, &[Need::Read, Need::Write]),
    (Relation::Admin, &[Need::Read, Need::Write, Need::Manage]),
];

/// Whether `relation` grants `need`.
pub fn allowed(relation: Relation, need: Need) -> bool {
    POLICY
        .iter()
        .any(|(r, needs)| *r == relation && needs.contains(&need))
}

/// What the S3 operation named `op` needs on its bucket.
pub fn need(op: &str) -> Need {
    match op {
        "HeadBucket"
        | "GetBucketLocation"
        | "ListObjects"
        | "ListObjectsV2"
        | "GetObject"
        | "HeadObject"
        | "ListParts"
        | "ListMultipartUploads" => Need::Read,
        "PutObject"
        | "DeleteObject"
        | "DeleteObjects"
        | "CopyObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "AbortMultipartUpload" => Need::Write,
        _ => Need::Manage,
    }
}

/// A bucket as the caller named it, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The backend bucket.
    pub bucket: BucketName,
    /// How the caller relates to it.
    pub relation: Relation,
}

/// Whether `name` belongs to the buckets Drive creates for users.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|p| name.starts_with(p))
}

/// The backend bucket of `principal`'s home.
pub fn home_bucket(principal: &Principal) -> BucketName {
    reserved(&format!("home--{}", user_id(principal)))
}

/// The backend bucket of `principal`'s personal workspace.
pub fn default_bucket(principal: &Principal) -> BucketName {
    reserved(&format!("default--{}", user_id(principal)))
}

/// The backend bucket of the workspace of `group`, if the group's name can name a bucket.
pub fn workspace_bucket(group: &str) -> Option<BucketName> {
    if group == HOME_ALIAS || group == DEFAULT_ALIAS || is_reserved(group) {
        return None;
    }
    BucketName::new(&format!("ws--{group}")).ok()
}

fn reserved(name: &str) -> BucketName {
    BucketName::new(name).expect("reserved names are valid bucket names")
}

/// 24 hex digits of a hash of the subject: stable, and no user can choose another's.
fn user_id(principal: &Principal) -> String {
    let digest = Sha256::new()
        .chain_update(b"drive-user\n")
        .chain_update(principal.subject.as_bytes())
        .finalize();
    hex_simd::encode_to_string(&digest[..12], hex_simd::AsciiCase::Lower)
}

/// Resolves a bucket name as `principal` used it; `None` means access denied.
pub fn resolve(principal: &Principal, admin: bool, name: &str) -> Option<Target> {
    let (bucket, relation) = match name {
        HOME_ALIAS => (home_bucket(principal), Relation::Owner),
        DEFAULT_ALIAS => (default_bucket(principal), Relation::Owner),
        group if principal.in_group(group) && workspace_bucket(group).is_some() => {
            (workspace_bucket(group)?, Relation::Member)
        }
        other if admin => (BucketName::new(other).ok()?, Relation::Admin),
        _ => return None,
    };
    Some(Target { bucket, relation })
}

/// The buckets `principal` sees by alias: name shown, backend bucket.
pub fn aliases(principal: &Principal) -> Vec<(String, BucketName)> {
    let mut out = vec![
        (HOME_ALIAS.to_owned(), home_bucket(principal)),
        (DEFAULT_ALIAS.to_owned(), default_bucket(principal)),
    ];
    for g in &principal.groups {
        if let Some(b) = workspace_bucket(g)
            && !out.iter().any(|(name, _)| name == g)
        {
            out.push((g.clone(), b));
        }
    }
    out
}

/// How long a replica trusts that a user bucket it made sure of still exists; after that
/// it checks again (one conditional create), so a bucket an admin deleted through another
/// replica comes back within this time.
pub const RECHECK: Duration = Duration::from_secs(60);

/// Creates user buckets on first use and remembers, for a while, which exist.
pub struct Provisioner {
    backend: Arc<dyn Backend>,
    known: Mutex<HashMap<BucketName, Instant>>,
    recheck: Duration,
}

impl Provisioner {
    /// A provisioner over `backend` that checks a bucket again after `recheck`.
    pub fn new(backend: Arc<dyn Backend>, recheck: Duration) -> Self {
        Self {
            backend,
            known: Mutex::new(HashMap::new()),
            recheck,
        }
    }

    /// Makes sure `bucket` exists; concurrent and repeated calls, in this process or
    /// another on the same backend, all succeed.
    pub async fn ensure(&self, bucket: &BucketName) -> S3Result<()> {
        let fresh = self
            .known
            .lock()
            .expect("lock")
            .get(bucket)
            .is_some_and(|at| at.elapsed() < self.recheck);
        if fresh {
            return Ok(());
        }
        match self.backend.create_bucket(bucket).await {
            Ok(()) | Err(buckets::Error::BucketAlreadyExists) => {}
            Err(e) => return Err(backend_error(e)),
        }
        self.known
            .lock()
            .expect("lock")
            .insert(bucket.clone(), Instant::now());
        Ok(())
    }

    /// Forgets `bucket`, after it was deleted.
    pub fn forget(&self, bucket: &BucketName) {
        self.known.lock().expect("lock").remove(bucket);
    }
}

/// The error every denial gets, the same whether the bucket exists or not.
pub fn denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(sub: &str, groups: &[&str]) -> Principal {
        Principal {
            issuer: "i".into(),
            subject: sub.into(),
            username: None,
            email: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            roles: vec![],
        }
    }

    #[test]
    fn aliases_resolve_per_user() {
        let (a, b) = (user("a", &["team-a"]), user("b", &[]));
        let home_a = resolve(&a, false, "_my").unwrap();
        assert_eq!(home_a.relation, Relation::Owner);
        assert_ne!(home_a.bucket, resolve(&b, false, "_my").unwrap().bucket);
        assert_ne!(home_a.bucket, resolve(&a, false, "default").unwrap().bucket);
        assert!(is_reserved(home_a.bucket.as_str()));
        assert_eq!(
            resolve(&a, false, "team-a").unwrap().bucket.as_str(),
            "ws--team-a"
        );
        assert_eq!(resolve(&b, false, "team-a"), None);
        assert_eq!(resolve(&b, false, home_a.bucket.as_str()), None);
        assert_eq!(
            resolve(&b, true, home_a.bucket.as_str()).unwrap().relation,
            Relation::Admin
        );
        assert_eq!(resolve(&b, true, "Not_A_Bucket"), None);
    }

    #[test]
    fn odd_groups_are_not_workspaces() {
        let p = user("a", &["Team A", "_my", "default", "home--x", "ok-group"]);
        let names: Vec<_> = aliases(&p).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["_my", "default", "ok-group"]);
        assert_eq!(resolve(&p, false, "Team A"), None);
    }

    #[tokio::test]
    async fn deleted_user_buckets_come_back_after_the_recheck_time() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(buckets::fs::FsBackend::open(dir.path()).unwrap());
        let b = home_bucket(&user("a", &[]));
        let (remembering, rechecking) = (
            Provisioner::new(Arc::clone(&backend), Duration::from_secs(3600)),
            Provisioner::new(Arc::clone(&backend), Duration::ZERO),
        );
        remembering.ensure(&b).await.unwrap();
        rechecking.ensure(&b).await.unwrap();
        backend.delete_bucket(&b).await.unwrap();
        remembering.ensure(&b).await.unwrap();
        assert!(backend.head_bucket(&b).await.is_err(), "trusted its memory");
        rechecking.ensure(&b).await.unwrap();
        assert!(backend.head_bucket(&b).await.is_ok(), "made it again");
    }

    #[test]
    fn policy_table() {
        for rel in [Relation::Owner, Relation::Member] {
            assert!(allowed(rel, Need::Read) && allowed(rel, Need::Write));
            assert!(!allowed(rel, Need::Manage));
        }
        assert!(allowed(Relation::Admin, Need::Manage));
        assert_eq!(need("GetObject"), Need::Read);
        assert_eq!(need("UploadPartCopy"), Need::Write);
        assert_eq!(need("DeleteBucket"), Need::Manage);
        assert_eq!(need("PutBucketPolicy"), Need::Manage);
    }
}
