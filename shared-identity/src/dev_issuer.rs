//! A small built-in OpenID issuer for development, so one machine needs no external IdP:
//! the users declared in the configuration get EdDSA-signed access tokens by the password
//! grant, and stateless refresh tokens (HMAC-signed, 30 days) renew them, as `h2o-authn`
//! expects. Its key is derived from the server key, so replicas and restarts agree.

use std::time::{Duration, SystemTime};

use base64_simd::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::session::unix;
use crate::{ClaimMapping, IssuerConfig, ServerKey};

/// The audience of the development issuer's access tokens.
pub const DEV_AUDIENCE: &str = "drive";
const ACCESS_TTL: Duration = Duration::from_secs(300);
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A user of the development issuer.
#[derive(Clone, PartialEq, Eq)]
pub struct DevUser {
    /// User name (also the subject).
    pub name: String,
    /// Password.
    pub password: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
}

impl std::fmt::Debug for DevUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevUser")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for DevUser {
    type Err = String;

    /// `NAME:PASSWORD[:GROUP+GROUP…[:ROLE+ROLE…]]`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(4, ':');
        let name = parts.next().unwrap_or_default();
        let password = parts.next().unwrap_or_default();
        if name.is_empty() || password.is_empty() {
            return Err("a dev user is NAME:PASSWORD[:GROUP+GROUP[:ROLE+ROLE]]".into());
        }
        let list = |p: Option<&str>| {
            p.unwrap_or_default()
                .split('+')
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Ok(Self {
            name: name.to_owned(),
            password: password.to_owned(),
            groups: list(parts.next()),
            roles: list(parts.next()),
        })
    }
}

/// Why a token request was refused, as an OAuth error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// Wrong user or password, or a bad or expired refresh token.
    #[error("invalid_grant")]
    InvalidGrant,
    /// A grant type other than `password` and `refresh_token`.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// A required parameter is missing.
    #[error("invalid_request")]
    InvalidRequest,
}

#[derive(Serialize, Deserialize)]
struct Refresh {
    sub: String,
    exp: u64,
}

/// The development issuer.
pub struct DevIssuer {
    issuer: String,
    users: Vec<DevUser>,
    signing: SigningKey,
    kid: String,
    refresh_key: ServerKey,
}

impl DevIssuer {
    /// An issuer at `issuer` for `users`, with keys derived from `server_key`.
    pub fn new(issuer: String, server_key: &ServerKey, users: Vec<DevUser>) -> Self {
        let signing = SigningKey::from_bytes(&server_key.derive("drive-dev-issuer-signing\n"));
        let refresh_key = ServerKey::new(&server_key.derive("drive-dev-issuer-refresh\n"))
            .expect("a derived key is 32 bytes");
        Self {
            kid: format!("dev-{}", server_key.kid()),
            issuer,
            users,
            signing,
            refresh_key,
        }
    }

    /// The issuer URL tokens carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The declared users.
    pub fn users(&self) -> &[DevUser] {
        &self.users
    }

    /// The public key set (JWKS document).
    pub fn jwks(&self) -> Value {
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
            "kid": self.kid, "x": B64.encode_to_string(self.signing.verifying_key().as_bytes())}]})
    }

    /// The discovery document, with endpoints under `base` (the issuer URL).
    pub fn metadata(&self) -> Value {
        json!({"issuer": self.issuer, "jwks_uri": format!("{}/jwks", self.issuer),
            "token_endpoint": format!("{}/token", self.issuer),
            "grant_types_supported": ["password", "refresh_token"],
            "id_token_signing_alg_values_supported": ["EdDSA"]})
    }

    /// How a verifier trusts this issuer: its own key set, no fetching.
    pub fn trust(&self) -> IssuerConfig {
        let keys: JwkSet = serde_json::from_value(self.jwks()).expect("the key set parses");
        IssuerConfig {
            algorithms: vec![Algorithm::EdDSA],
            claims: ClaimMapping {
                roles: "roles".into(),
                ..ClaimMapping::default()
            },
            keys: Some(keys),
            ..IssuerConfig::new(self.issuer.clone(), vec![DEV_AUDIENCE.into()])
        }
    }

    /// Answers a token request with these form parameters: the OAuth JSON body.
    pub fn token(&self, params: &[(String, String)], now: SystemTime) -> Result<Value, GrantError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let user = match get("grant_type").ok_or(GrantError::InvalidRequest)? {
            "password" => {
                let name = get("username").ok_or(GrantError::InvalidRequest)?;
                let password = get("password").ok_or(GrantError::InvalidRequest)?;
                let user = self.user(name).ok_or(GrantError::InvalidGrant)?;
                if !bool::from(user.password.as_bytes().ct_eq(password.as_bytes())) {
                    return Err(GrantError::InvalidGrant);
                }
                user
            }
            "refresh_token" => {
                let token = get("refresh_token").ok_or(GrantError::InvalidRequest)?;
                let sub = self
                    .open_refresh(token, now)
                    .ok_or(GrantError::InvalidGrant)?;
                self.user(&sub).ok_or(GrantError::InvalidGrant)?
            }
            _ => return Err(GrantError::UnsupportedGrantType),
        };
        Ok(json!({
            "access_token": self.access_token(user, now),
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL.as_secs(),
            "refresh_token": self.refresh_token(&user.name, now),
            "scope": "openid",
        }))
    }

    fn user(&self, name: &str) -> Option<&DevUser> {
        self.users.iter().find(|u| u.name == name)
    }

    fn access_token(&self, user: &DevUser, now: SystemTime) -> String {
        let iat = unix(now);
        let claims = json!({"iss": self.issuer, "sub": user.name, "aud": DEV_AUDIENCE,
            "iat": iat, "exp": iat + ACCESS_TTL.as_secs(), "preferred_username": user.name,
            "groups": user.groups, "roles": user.roles});
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410).
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(self.signing.as_bytes());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&der))
            .expect("signing with a valid key succeeds")
    }

    fn refresh_token(&self, sub: &str, now: SystemTime) -> String {
        let payload = Refresh {
            sub: sub.to_owned(),
            exp: unix(now + REFRESH_TTL),
        };
        let payload = B64.encode_to_string(serde_json::to_vec(&payload).expect("serializes"));
        let mac = B64.encode_to_string(self.refresh_key.derive(&format!("refresh\n{payload}")));
        format!("DRT1.{payload}.{mac}")
    }

    fn open_refresh(&self, token: &str, now: SystemTime) -> Option<String> {
        let rest = token.strip_prefix("DRT1.")?;
        let (payload, mac) = rest.split_once('.')?;
        let expected =
            B64.encode_to_string(self.refresh_key.derive(&format!("refresh\n{payload}")));
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let refresh: Refresh = serde_json::from_slice(&B64.decode_to_vec(payload).ok()?).ok()?;
        (unix(now) < refresh.exp).then_some(refresh.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Timing, Verifier};

    fn issuer() -> DevIssuer {
        let users = vec![
            "alice:pw-a:team-a+team-b".parse().unwrap(),
            "root:pw-r::drive-admin".parse().unwrap(),
        ];
        DevIssuer::new(
            "http://127.0.0.1:9000/_drive/idp".into(),
            &ServerKey::new(&[4; 32]).unwrap(),
            users,
        )
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn password_and_refresh_grants_give_verifiable_tokens() {
        let dev = issuer();
        let verifier = Verifier::new(vec![dev.trust()], Timing::default());
        let now = SystemTime::now();
        let answer = dev
            .token(
                &form(&[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", "pw-a"),
                ]),
                now,
            )
            .unwrap();
        let verified = verifier
            .verify(answer["access_token"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(verified.principal.subject, "alice");
        assert_eq!(verified.principal.groups, ["team-a", "team-b"]);
        let refresh = answer["refresh_token"].as_str().unwrap();
        let again = dev
            .token(
                &form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]),
                now,
            )
            .unwrap();
        assert!(
            verifier
                .verify(again["access_token"].as_str().unwrap())
                .await
                .is_ok()
        );
        let admin = dev
            .token(
                &form(&[
                    ("grant_type", "password"),
                    ("username", "root"),
                    ("password", "pw-r"),
                ]),
                now,
            )
            .unwrap();
        let admin = verifier
            .verify(admin["access_token"].as_str().unwrap())
            .await
            .unwrap();
        assert!(admin.principal.has_role("drive-admin"));

        let refused = |pairs: &[(&str, &str)]| dev.token(&form(pairs), now).unwrap_err();
        assert_eq!(
            refused(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "nope")
            ]),
            GrantError::InvalidGrant
        );
        assert_eq!(
            refused(&[
                ("grant_type", "password"),
                ("username", "mallory"),
                ("password", "x")
            ]),
            GrantError::InvalidGrant
        );
        let mut forged = refresh.to_owned();
        forged.pop();
        assert_eq!(
            refused(&[("grant_type", "refresh_token"), ("refresh_token", &forged)]),
            GrantError::InvalidGrant
        );
        assert_eq!(
            dev.token(
                &form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)]),
                now + REFRESH_TTL
            )
            .unwrap_err(),
            GrantError::InvalidGrant
        );
        assert_eq!(
            refused(&[("grant_type", "client_credentials")]),
            GrantError::UnsupportedGrantType
        );
        assert_eq!(refused(&[]), GrantError::InvalidRequest);
        assert!(!format!("{:?}", dev.users()).contains("pw-a"));
        assert!("alice".parse::<DevUser>().is_err());
    }
}
