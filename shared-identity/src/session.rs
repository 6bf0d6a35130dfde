//! Drive session credentials: stateless, signed, expiring S3 credentials that carry their
//! principal, so every replica verifies them without a database.
//!
//! - access key id: `ASIA` + the signing key's id (8 characters) + 12 random characters;
//! - secret key: HMAC of the access key id under the signing key, so it is derived, never
//!   stored;
//! - session token: `DS1.<kid>.<payload>.<mac>` where the payload (base64url JSON) names the
//!   access key id it belongs to, the principal, the expiry and the app instance the
//!   credentials were minted for (if any), and the MAC is HMAC-SHA256 under the key `kid`
//!   names. Older keys stay accepted for rotation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64_simd::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Principal;

/// Prefix of every session access key id (AWS uses `ASIA` for temporary keys).
pub const ACCESS_KEY_PREFIX: &str = "ASIA";
const TOKEN_VERSION: &str = "DS1";
const KID_LEN: usize = 8;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A secret key that signs session credentials.
#[derive(Clone)]
pub struct ServerKey {
    kid: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// A server key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("a server key needs at least 32 bytes, got {0}")]
pub struct ShortKey(usize);

impl ServerKey {
    /// A key from at least 32 secret bytes; its id is derived from the bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, ShortKey> {
        if bytes.len() < 32 {
            return Err(ShortKey(bytes.len()));
        }
        let digest = Sha256::new()
            .chain_update(b"drive-server-key-id\n")
            .chain_update(bytes)
            .finalize();
        Ok(Self {
            kid: base32(&digest)[..KID_LEN].to_owned(),
            key: bytes.to_vec(),
        })
    }

    /// The key's public identifier.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A 32-byte key for one purpose, derived from this key and `label`.
    pub(crate) fn derive(&self, label: &str) -> [u8; 32] {
        self.mac(label, &[])
    }

    fn mac(&self, label: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(label.as_bytes());
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    fn secret_for(&self, access_key: &str) -> String {
        let mac = self.mac("drive-session-secret-v1\n", &[access_key.as_bytes()]);
        B64.encode_to_string(mac)[..40].to_owned()
    }
}

/// Temporary S3 credentials as STS hands them out.
#[derive(Clone)]
pub struct SessionCredentials {
    /// Access key id (`ASIA…`).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token the client sends as `x-amz-security-token`.
    pub session_token: String,
    /// When the credentials stop working.
    pub expiration: SystemTime,
}

impl std::fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who the credentials act for.
    pub principal: Principal,
    /// When they expire.
    pub expires: SystemTime,
    /// The app instance whose token the credentials were minted from, if any.
    pub instance: Option<String>,
}

/// Why session credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The token is not a session token this server could have issued.
    #[error("the session token is malformed")]
    Malformed,
    /// The token was signed with a key this server no longer (or never) accepts.
    #[error("the session token was signed with an unknown key")]
    UnknownKey,
    /// The token belongs to another access key.
    #[error("the session token does not belong to this access key")]
    Mismatch,
    /// The token's signature is wrong: it was altered.
    #[error("the session token's signature does not match")]
    BadSignature,
    /// The session is over.
    #[error("the session expired")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    ak: String,
    exp: u64,
    iat: u64,
    p: Principal,
    /// The app instance; absent in tokens minted without one (and in older tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inst: Option<String>,
}

/// Issues and verifies session credentials with a current key and older accepted ones.
#[derive(Debug, Clone)]
pub struct Sessions {
    current: ServerKey,
    older: Vec<ServerKey>,
}

impl Sessions {
    /// Signs with `current`; also accepts credentials signed with any of `older`.
    pub fn new(current: ServerKey, older: Vec<ServerKey>) -> Self {
        Self { current, older }
    }

    /// New credentials for `principal`, minted for the app `instance` if any, valid for
    /// `lifetime` from `now`.
    pub fn issue(
        &self,
        principal: &Principal,
        instance: Option<&str>,
        lifetime: Duration,
        now: SystemTime,
    ) -> SessionCredentials {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS random source is available");
        let access_key_id = format!(
            "{ACCESS_KEY_PREFIX}{}{}",
            self.current.kid,
            &base32(&random)[..12]
        );
        let expiration = now + lifetime;
        let payload = Payload {
            ak: access_key_id.clone(),
            exp: unix(expiration),
            iat: unix(now),
            p: principal.clone(),
            inst: instance.map(str::to_owned),
        };
        let payload =
            B64.encode_to_string(serde_json::to_vec(&payload).expect("payload serializes"));
        let signed = format!("{TOKEN_VERSION}.{}.{payload}", self.current.kid);
        let mac = self
            .current
            .mac("drive-session-token-v1\n", &[signed.as_bytes()]);
        SessionCredentials {
            secret_access_key: self.current.secret_for(&access_key_id),
            session_token: format!("{signed}.{}", B64.encode_to_string(mac)),
            access_key_id,
            expiration: UNIX_EPOCH + Duration::from_secs(unix(expiration)),
        }
    }

    /// Whether `access_key` has the shape of a session access key id.
    pub fn is_session_key(access_key: &str) -> bool {
        access_key.starts_with(ACCESS_KEY_PREFIX) && access_key.len() == 24
    }

    /// The secret of a session access key id, if one of our keys could have issued it.
    pub fn secret_for(&self, access_key: &str) -> Option<String> {
        if !Self::is_session_key(access_key) {
            return None;
        }
        let kid = &access_key[ACCESS_KEY_PREFIX.len()..ACCESS_KEY_PREFIX.len() + KID_LEN];
        self.key(kid).map(|k| k.secret_for(access_key))
    }

    /// Checks that `token` was issued by us, together with `access_key`, and is still valid
    /// at `now`.
    pub fn verify(
        &self,
        access_key: &str,
        token: &str,
        now: SystemTime,
    ) -> Result<Session, SessionError> {
        let (signed, mac) = token.rsplit_once('.').ok_or(SessionError::Malformed)?;
        let mut parts = signed.splitn(3, '.');
        let (Some(TOKEN_VERSION), Some(kid), Some(payload)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        let key = self.key(kid).ok_or(SessionError::UnknownKey)?;
        // Compared as text, so no second spelling of the same bytes passes.
        let expected =
            B64.encode_to_string(key.mac("drive-session-token-v1\n", &[signed.as_bytes()]));
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(SessionError::BadSignature);
        }
        let payload: Payload = B64
            .decode_to_vec(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(SessionError::Malformed)?;
        if !bool::from(payload.ak.as_bytes().ct_eq(access_key.as_bytes())) {
            return Err(SessionError::Mismatch);
        }
        if unix(now) >= payload.exp {
            return Err(SessionError::Expired);
        }
        Ok(Session {
            principal: payload.p,
            expires: UNIX_EPOCH + Duration::from_secs(payload.exp),
            instance: payload.inst,
        })
    }

    fn key(&self, kid: &str) -> Option<&ServerKey> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.kid == kid)
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// RFC 4648 base32 without padding, upper case.
fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn alice() -> Principal {
        Principal {
            issuer: "https://idp".into(),
            subject: "sub-1".into(),
            username: Some("alice".into()),
            email: None,
            groups: vec!["team-a".into()],
            roles: vec![],
        }
    }

    fn sessions(seed: u8) -> Sessions {
        Sessions::new(ServerKey::new(&[seed; 32]).unwrap(), vec![])
    }

    #[test]
    fn round_trip_and_derived_secret() {
        let s = sessions(1);
        let now = SystemTime::now();
        let c = s.issue(&alice(), None, Duration::from_secs(3600), now);
        assert!(Sessions::is_session_key(&c.access_key_id));
        assert_eq!(
            s.secret_for(&c.access_key_id).as_deref(),
            Some(c.secret_access_key.as_str())
        );
        let session = s.verify(&c.access_key_id, &c.session_token, now).unwrap();
        assert_eq!(session.principal, alice());
        assert_eq!(session.expires, c.expiration);
        assert_eq!(session.instance, None);
        assert!(!format!("{c:?}").contains(&c.secret_access_key));
    }

    #[test]
    fn expiry_foreign_tokens_and_rotation() {
        let (old, new) = (sessions(1), sessions(2));
        let now = SystemTime::now();
        let c = old.issue(&alice(), None, Duration::from_secs(900), now);
        let other = old.issue(&alice(), None, Duration::from_secs(900), now);
        assert_eq!(
            old.verify(
                &c.access_key_id,
                &c.session_token,
                now + Duration::from_secs(900)
            ),
            Err(SessionError::Expired)
        );
        assert_eq!(
            old.verify(&c.access_key_id, &other.session_token, now),
            Err(SessionError::Mismatch)
        );
        assert_eq!(
            new.verify(&c.access_key_id, &c.session_token, now),
            Err(SessionError::UnknownKey)
        );
        assert_eq!(new.secret_for(&c.access_key_id), None);
        let rotated = Sessions::new(
            ServerKey::new(&[2; 32]).unwrap(),
            vec![ServerKey::new(&[1; 32]).unwrap()],
        );
        assert!(
            rotated
                .verify(&c.access_key_id, &c.session_token, now)
                .is_ok()
        );
        assert_eq!(
            rotated.secret_for(&c.access_key_id),
            Some(c.secret_access_key.clone())
        );
        assert!(ServerKey::new(&[0; 31]).is_err());
    }

    #[test]
    fn the_instance_round_trips_and_older_tokens_have_none() {
        let s = sessions(4);
        let now = SystemTime::now();
        let c = s.issue(&alice(), Some("inst-1"), Duration::from_secs(600), now);
        let session = s.verify(&c.access_key_id, &c.session_token, now).unwrap();
        assert_eq!(session.instance.as_deref(), Some("inst-1"));
        assert_eq!(session.principal, alice());
        // A token minted before sessions carried an instance: its payload has no `inst`.
        let plain = s.issue(&alice(), None, Duration::from_secs(600), now);
        let payload = plain.session_token.split('.').nth(2).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&B64.decode_to_vec(payload).unwrap()).unwrap();
        assert_eq!(json.get("inst"), None);
        let old = serde_json::json!({"ak": c.access_key_id, "exp": unix(now) + 600,
            "iat": unix(now), "p": alice()});
        let signed = format!(
            "{TOKEN_VERSION}.{}.{}",
            s.current.kid,
            B64.encode_to_string(old.to_string())
        );
        let mac = s
            .current
            .mac("drive-session-token-v1\n", &[signed.as_bytes()]);
        let token = format!("{signed}.{}", B64.encode_to_string(mac));
        let session = s.verify(&c.access_key_id, &token, now).unwrap();
        assert_eq!((session.instance, session.principal), (None, alice()));
    }

    proptest! {
        #[test]
        fn any_altered_byte_is_refused(at in 0usize..4096, flip in 1u8..=255) {
            let s = sessions(7);
            let now = SystemTime::now();
            let c = s.issue(&alice(), None, Duration::from_secs(3600), now);
            let mut token = c.session_token.clone().into_bytes();
            let at = at % token.len();
            token[at] ^= flip;
            let token = String::from_utf8_lossy(&token).into_owned();
            prop_assert!(s.verify(&c.access_key_id, &token, now).is_err());
            let mut key = c.access_key_id.clone().into_bytes();
            let at = at % key.len();
            key[at] ^= flip;
            let key = String::from_utf8_lossy(&key).into_owned();
            prop_assert!(s.verify(&key, &c.session_token, now).is_err());
        }

        #[test]
        fn any_principal_round_trips(sub in "\\PC{1,64}", groups in proptest::collection::vec("\\PC{0,20}", 0..8)) {
            let s = sessions(9);
            let now = SystemTime::now();
            let p = Principal { subject: sub, groups, ..alice() };
            let c = s.issue(&p, None, Duration::from_secs(60), now);
            prop_assert_eq!(s.verify(&c.access_key_id, &c.session_token, now).unwrap().principal, p);
        }
    }
}
