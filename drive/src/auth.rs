//! Who may call Drive: access-key lookup for SigV4 (`S3Auth`), the per-request access hook
//! (`S3Access`) that binds session tokens to their keys, refuses sessions of revoked app
//! instances and authorizes the request, and host-name parsing for virtual-host-style
//! requests (`S3Host`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use buckets::BucketName;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::CopySource;
use s3s::host::{S3Host, VirtualHost};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};
use shared_identity::{Principal, SessionError, Sessions};

use crate::alias_copy::{self, Verified};
use crate::credentials::RootCredentials;
use crate::keys::{ActiveKey, KeyStore};
use crate::namespace::{self, Provisioner};
use crate::revocations::Revocations;

/// Longest validity of a presigned URL, as on AWS: 7 days.
const MAX_PRESIGNED_SECS: u64 = 7 * 24 * 3600;

/// Resolves access keys to secrets: the root key, session keys (derived, stateless) and
/// users' long-term keys (from the metadata database).
pub struct Keys {
    root: RootCredentials,
    sessions: Arc<Sessions>,
    store: Arc<KeyStore>,
}

impl Keys {
    /// Keys with the root pair, the session credentials `sessions` issues and the
    /// long-term keys in `store`.
    pub fn new(root: RootCredentials, sessions: Arc<Sessions>, store: Arc<KeyStore>) -> Self {
        Self {
            root,
            sessions,
            store,
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if self.root.is_access_key(access_key) {
            return Ok(SecretKey::from(self.root.secret_key.clone()));
        }
        if let Some(secret) = self.sessions.secret_for(access_key) {
            return Ok(SecretKey::from(secret));
        }
        match lookup(&self.store, access_key).await? {
            Some(key) => Ok(SecretKey::from(key.secret)),
            None => Err(unknown_key()),
        }
    }
}

/// An active long-term key; a database failure is a 503, not a refusal.
async fn lookup(store: &KeyStore, access_key: &str) -> S3Result<Option<ActiveKey>> {
    store.lookup(access_key).await.map_err(|e| {
        tracing::error!(error = %e, "access key lookup failed");
        s3_error!(
            ServiceUnavailable,
            "The access key could not be checked; try again."
        )
    })
}

fn unknown_key() -> s3s::S3Error {
    s3_error!(
        InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records."
    )
}

/// Slot in a request's extensions where the access hook records the S3 operation's name,
/// for logs and metrics.
#[derive(Clone, Default)]
pub struct OperationName(pub Arc<OnceLock<String>>);

/// Who made a request, as the access hook established it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The root credentials: every bucket by its own name.
    Root,
    /// A user with session credentials.
    User {
        /// Who they are.
        principal: Arc<Principal>,
        /// Whether they hold the admin role.
        admin: bool,
    },
}

/// The buckets a user's request named, resolved to backend buckets after authorization.
/// Root requests carry none: their names are backend names.
#[derive(Debug, Clone, Default)]
pub struct BucketMap(pub HashMap<String, BucketName>);

/// The access hook that every S3 request passes: it requires a valid signature, checks the
/// session token of session keys, and authorizes users against their namespace.
pub struct Access {
    root: RootCredentials,
    sessions: Arc<Sessions>,
    store: Arc<KeyStore>,
    revocations: Arc<Revocations>,
    provisioner: Arc<Provisioner>,
    admin_role: String,
}

impl Access {
    /// A hook that knows the root key, verifies sessions with `sessions` (refusing those of
    /// instances in `revocations`), finds long-term keys in `store`, creates user buckets
    /// with `provisioner` and treats holders of `admin_role` as admins.
    pub fn new(
        root: RootCredentials,
        sessions: Arc<Sessions>,
        store: Arc<KeyStore>,
        revocations: Arc<Revocations>,
        provisioner: Arc<Provisioner>,
        admin_role: String,
    ) -> Self {
        Self {
            root,
            sessions,
            store,
            revocations,
            provisioner,
            admin_role,
        }
    }

    /// The verified access key of a request and its session token: from s3s's signature
    /// check, or for a copy served again ([`alias_copy`]), from the original's.
    fn signer(cx: &mut S3AccessContext<'_>) -> S3Result<Verified> {
        if let Some(verified) = cx.extensions_mut().get::<Verified>() {
            return Ok(verified.clone());
        }
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(
                AccessDenied,
                "Anonymous access is not allowed; sign the request."
            ));
        };
        let query = cx.uri().query().unwrap_or("");
        presign_limit(query)?;
        let token = cx
            .headers()
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_param(query, "X-Amz-Security-Token"));
        Ok(Verified {
            access_key: creds.access_key.clone(),
            token,
        })
    }

    async fn caller(&self, cx: &mut S3AccessContext<'_>) -> S3Result<Caller> {
        let Verified { access_key, token } = Self::signer(cx)?;
        if self.root.is_access_key(&access_key) {
            if token.is_some() {
                return Err(invalid_token());
            }
            return Ok(Caller::Root);
        }
        let principal = if Sessions::is_session_key(&access_key) {
            let token = token.ok_or_else(invalid_token)?;
            let session = self
                .sessions
                .verify(&access_key, &token, SystemTime::now())
                .map_err(|e| match e {
                    SessionError::Expired => {
                        s3_error!(ExpiredToken, "The provided token has expired.")
                    }
                    _ => invalid_token(),
                })?;
            if let Some(instance) = &session.instance {
                self.check_instance(instance).await?;
            }
            session.principal
        } else {
            if token.is_some() {
                return Err(invalid_token());
            }
            // Revoked since its signature was checked: refused all the same.
            lookup(&self.store, &access_key)
                .await?
                .ok_or_else(unknown_key)?
                .principal
        };
        let admin = principal.has_role(&self.admin_role);
        Ok(Caller::User {
            principal: Arc::new(principal),
            admin,
        })
    }

    /// Refuses sessions of a revoked app instance, on every request (through the cache):
    /// `InvalidToken`, which AWS SDKs do not retry, as a 403 (refused credentials) rather
    /// than the 400 of a malformed token. An unknown answer is a 503.
    async fn check_instance(&self, instance: &str) -> S3Result<()> {
        match self.revocations.is_revoked(instance).await {
            Ok(false) => Ok(()),
            Ok(true) => {
                let mut e = s3_error!(
                    InvalidToken,
                    "The credentials were minted for an app instance that has been terminated."
                );
                e.set_status_code(http::StatusCode::FORBIDDEN);
                Err(e)
            }
            Err(e) => {
                tracing::error!(error = %e, "instance revocation lookup failed");
                Err(s3_error!(
                    ServiceUnavailable,
                    "The credentials could not be checked; try again."
                ))
            }
        }
    }

    /// Resolves and authorizes the buckets a user's request names.
    async fn authorize(
        &self,
        cx: &mut S3AccessContext<'_>,
        principal: &Principal,
        admin: bool,
    ) -> S3Result<BucketMap> {
        let served_again = cx.extensions_mut().get::<Verified>().is_some();
        let op = cx.s3_op().name();
        let need = namespace::need(op);
        let mut map = BucketMap::default();
        let bucket = match cx.s3_path() {
            S3Path::Root => {
                return if op == "ListBuckets" {
                    Ok(map)
                } else {
                    Err(namespace::denied())
                };
            }
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket,
        };
        let target = self.grant(principal, admin, bucket, need).await?;
        map.0.insert(bucket.to_string(), target);
        if matches!(op, "CopyObject" | "UploadPartCopy")
            && let Some(source) = cx
                .headers()
                .get("x-amz-copy-source")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| CopySource::parse(v).ok())
            && let CopySource::Bucket { bucket, .. } = source
        {
            let alias = if served_again && &*bucket == alias_copy::STAND_IN {
                namespace::HOME_ALIAS
            } else {
                &bucket
            };
            let target = self
                .grant(principal, admin, alias, namespace::Need::Read)
                .await?;
            map.0.insert(bucket.into(), target);
        }
        Ok(map)
    }

    /// The backend bucket `name` stands for, if the caller may do what `need` says in it.
    async fn grant(
        &self,
        principal: &Principal,
        admin: bool,
        name: &str,
        need: namespace::Need,
    ) -> S3Result<BucketName> {
        let target = namespace::resolve(principal, admin, name).ok_or_else(namespace::denied)?;
        if !namespace::allowed(target.relation, need) {
            return Err(namespace::denied());
        }
        if target.relation != namespace::Relation::Admin {
            self.provisioner.ensure(&target.bucket).await?;
        }
        Ok(target.bucket)
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        if let Some(slot) = cx.extensions_mut().get::<OperationName>() {
            let _ = slot.0.set(op.clone());
        }
        let caller = self.caller(cx).await?;
        match &caller {
            Caller::User { principal, admin } => {
                let map = self.authorize(cx, principal, *admin).await?;
                cx.extensions_mut().insert(map);
            }
            Caller::Root if cx.extensions_mut().get::<Verified>().is_some() => {
                return Err(s3_error!(
                    NoSuchBucket,
                    "The root credentials have no home bucket (_my)."
                ));
            }
            Caller::Root => {}
        }
        if let S3Path::Bucket { bucket } = cx.s3_path() {
            if op == "CreateBucket" && namespace::is_reserved(bucket) {
                return Err(s3_error!(
                    InvalidBucketName,
                    "Bucket names starting with home--, default-- or ws-- are reserved for user buckets."
                ));
            }
            if op == "DeleteBucket"
                && let Ok(name) = BucketName::new(bucket)
            {
                self.provisioner.forget(&name);
            }
        }
        cx.extensions_mut().insert(caller);
        Ok(())
    }
}

/// Bucket names in request paths: AWS's rules, plus the `_my` alias.
pub struct Names;

impl s3s::validation::NameValidation for Names {
    fn validate_bucket_name(&self, name: &str) -> bool {
        name == namespace::HOME_ALIAS || s3s::path::check_bucket_name(name)
    }
}

fn invalid_token() -> s3s::S3Error {
    s3_error!(
        InvalidToken,
        "The provided token is malformed or otherwise invalid."
    )
}

/// The percent-decoded value of `name` in a query string.
/// Refuses presigned requests valid for longer than a week, as AWS does.
pub(crate) fn presign_limit(query: &str) -> S3Result<()> {
    match query_param(query, "X-Amz-Expires") {
        Some(expires) if expires.parse::<u64>().is_ok_and(|s| s > MAX_PRESIGNED_SECS) => {
            Err(s3_error!(
                AccessDenied,
                "X-Amz-Expires must be less than a week (604800 seconds)."
            ))
        }
        _ => Ok(()),
    }
}

/// The decoded value of `name` in a query string.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Path-style everywhere, plus virtual-host style under one base domain.
pub struct Hosts {
    domain: String,
}

impl Hosts {
    /// Recognizes `<bucket>.<domain>` as virtual-host style.
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
        }
    }
}

impl S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(n, _)| n);
        let name = name.trim_end_matches('.');
        if let Some(bucket) = name
            .len()
            .checked_sub(self.domain.len() + 1)
            .and_then(|cut| {
                let (bucket, rest) = name.split_at(cut);
                (rest.len() == self.domain.len() + 1
                    && rest[1..].eq_ignore_ascii_case(&self.domain)
                    && rest.starts_with('.'))
                .then_some(bucket)
            })
            && !bucket.is_empty()
        {
            return Ok(VirtualHost::new(host).with_bucket(bucket.to_ascii_lowercase()));
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_under_the_domain_only() {
        let h = Hosts::new("s3.local");
        assert_eq!(
            h.parse_host_header("photos.s3.local:9000")
                .unwrap()
                .bucket(),
            Some("photos")
        );
        assert_eq!(
            h.parse_host_header("a.b.s3.local").unwrap().bucket(),
            Some("a.b")
        );
        assert_eq!(h.parse_host_header("s3.local:9000").unwrap().bucket(), None);
        assert_eq!(
            h.parse_host_header("127.0.0.1:9000").unwrap().bucket(),
            None
        );
        assert_eq!(h.parse_host_header("evils3.local").unwrap().bucket(), None);
    }
}
