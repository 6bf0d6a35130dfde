//! The token broker: an OpenID issuer at `<public-url>/broker` that only instances use. An
//! instance's launcher and its Python clients present the instance token as an OAuth refresh
//! token (grant `refresh_token`, as `h2o_authn` sends it) and get a short-lived EdDSA access
//! token for the instance's owner, carrying the `instance_id` claim, which Drive's STS trusts
//! and Drive revokes when the instance is terminated. The user's own tokens never reach an
//! instance unless the user signs in to an `EnableOIDC` app: the refresh token waved then
//! hands the app (`q.auth.refresh_token`) is refreshed here too, at the identity provider with
//! the Wave client's credentials (see `instances::wave_refresh`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};
use shared_identity::{ServerKey, TokenSigner};

use crate::scheduler::Instance;

/// Path of the broker below the App Store's public URL.
pub const PATH: &str = "/broker";

/// Signs access tokens for instances.
pub struct Broker {
    issuer: String,
    audience: String,
    lifetime: Duration,
    signer: TokenSigner,
}

/// Why a token request was refused, as an OAuth error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// A required parameter is missing.
    #[error("invalid_request")]
    InvalidRequest,
    /// The refresh token is unknown, its instance is gone, or the provider refused it.
    #[error("invalid_grant")]
    InvalidGrant,
    /// Only `refresh_token` is supported.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// The identity provider could not be reached to refresh a token.
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
}

impl BrokerError {
    /// Human words for the error.
    pub fn description(self) -> &'static str {
        match self {
            BrokerError::InvalidRequest => "grant_type and refresh_token are required",
            BrokerError::InvalidGrant => {
                "the refresh token is not valid (a terminated instance's, or refused by the identity provider)"
            }
            BrokerError::UnsupportedGrantType => "the broker takes grant_type=refresh_token only",
            BrokerError::TemporarilyUnavailable => {
                "the identity provider cannot be reached; try again"
            }
        }
    }

    /// The HTTP status the error is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            BrokerError::InvalidRequest
            | BrokerError::InvalidGrant
            | BrokerError::UnsupportedGrantType => StatusCode::BAD_REQUEST,
            BrokerError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Broker {
    /// A broker at `<public_url>/broker` whose tokens carry `audience` and live `lifetime`,
    /// signed with a key derived from the server key (replicas agree).
    pub fn new(public_url: &str, key: &ServerKey, audience: String, lifetime: Duration) -> Self {
        Self {
            issuer: format!("{public_url}{PATH}"),
            audience,
            lifetime,
            signer: TokenSigner::derive(key, "appstore-broker-signing\n", "broker"),
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The OpenID provider metadata.
    pub fn metadata(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/jwks", self.issuer),
            "token_endpoint": format!("{}/token", self.issuer),
            "grant_types_supported": ["refresh_token"],
            "response_types_supported": [],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        })
    }

    /// The public keys.
    pub fn jwks(&self) -> Value {
        self.signer.jwks()
    }

    /// Checks a token request's form; the instance token it carries, if well formed.
    pub fn grant<'a>(&self, params: &'a [(String, String)]) -> Result<&'a str, BrokerError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match get("grant_type") {
            Some("refresh_token") => get("refresh_token")
                .filter(|t| !t.is_empty())
                .ok_or(BrokerError::InvalidRequest),
            Some(_) => Err(BrokerError::UnsupportedGrantType),
            None => Err(BrokerError::InvalidRequest),
        }
    }

    /// The token response for `instance`, echoing the instance token as the refresh token
    /// so clients that store the newest one keep a working token.
    pub fn issue(&self, instance: &Instance, instance_token: &str, now: SystemTime) -> Value {
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let p = &instance.principal;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": p.subject,
            "aud": self.audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + self.lifetime.as_secs(),
            "preferred_username": p.display_name(),
            "groups": p.groups,
            "roles": p.roles,
            "realm_access": {"roles": p.roles},
            "instance_id": instance.id,
            "azp": "appstore-instance",
        });
        if let Some(email) = &p.email {
            claims["email"] = Value::String(email.clone());
        }
        json!({
            "access_token": self.signer.sign(&claims),
            "token_type": "Bearer",
            "expires_in": self.lifetime.as_secs(),
            "refresh_token": instance_token,
            "scope": "openid",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn only_the_refresh_token_grant_is_taken() {
        let b = Broker::new(
            "http://s",
            &ServerKey::new(&[1; 32]).unwrap(),
            "drive".into(),
            Duration::from_secs(60),
        );
        assert_eq!(b.issuer(), "http://s/broker");
        assert_eq!(
            b.grant(&form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "ait_x")
            ])),
            Ok("ait_x")
        );
        assert_eq!(
            b.grant(&form(&[("grant_type", "password")])),
            Err(BrokerError::UnsupportedGrantType)
        );
        assert_eq!(
            b.grant(&form(&[("grant_type", "refresh_token")])),
            Err(BrokerError::InvalidRequest)
        );
        assert_eq!(b.grant(&form(&[])), Err(BrokerError::InvalidRequest));
        assert_eq!(b.metadata()["token_endpoint"], "http://s/broker/token");
    }

    #[test]
    fn only_an_unreachable_provider_is_worth_retrying() {
        assert_eq!(BrokerError::InvalidGrant.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            BrokerError::TemporarilyUnavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            BrokerError::TemporarilyUnavailable.to_string(),
            "temporarily_unavailable"
        );
    }
}
