//! Who may call Drive: access-key lookup for SigV4 (`S3Auth`), the per-request access hook
//! (`S3Access`) and host-name parsing for virtual-host-style requests (`S3Host`).

use std::sync::{Arc, OnceLock};

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Result, s3_error};

use crate::credentials::RootCredentials;

/// Resolves access keys to secrets. Today only the root key exists; session and user keys
/// plug in here.
pub struct Keys {
    root: RootCredentials,
}

impl Keys {
    /// Keys with the root pair.
    pub fn new(root: RootCredentials) -> Self {
        Self { root }
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if self.root.is_access_key(access_key) {
            return Ok(SecretKey::from(self.root.secret_key.clone()));
        }
        Err(s3_error!(
            InvalidAccessKeyId,
            "The AWS Access Key Id you provided does not exist in our records."
        ))
    }
}

/// Slot in a request's extensions where the access hook records the S3 operation's name,
/// for logs and metrics.
#[derive(Clone, Default)]
pub struct OperationName(pub Arc<OnceLock<String>>);

/// The access hook that every S3 request passes: it requires a valid signature and records
/// the operation.
pub struct Access;

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let name = cx.s3_op().name().to_owned();
        if let Some(slot) = cx.extensions_mut().get::<OperationName>() {
            let _ = slot.0.set(name);
        }
        match cx.credentials() {
            Some(_) => Ok(()),
            None => Err(s3_error!(
                AccessDenied,
                "Anonymous access is not allowed; sign the request."
            )),
        }
    }
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
