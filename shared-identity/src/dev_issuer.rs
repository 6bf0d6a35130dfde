//! A small built-in OpenID issuer for development, so one machine needs no external IdP:
//! the users declared in the configuration get EdDSA-signed access tokens by the password
//! grant or by the authorization code flow with PKCE (browsers, redirect URIs on loopback
//! only), and stateless refresh tokens (HMAC-signed, 30 days) renew them, as `h2o-authn`
//! expects. Its key is derived from the server key, so replicas and restarts agree.

use std::time::{Duration, SystemTime};

use base64_simd::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::session::unix;
use crate::{ClaimMapping, IssuerConfig, ServerKey, TokenSigner};

/// The audience of the development issuer's access tokens.
pub const DEV_AUDIENCE: &str = "drive";
const ACCESS_TTL: Duration = Duration::from_secs(300);
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long an authorization code waits to be redeemed.
const CODE_TTL: Duration = Duration::from_secs(60);

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

/// What an authorization code stands for (signed, so the issuer keeps no state but the
/// codes already redeemed).
#[derive(Serialize, Deserialize)]
struct Code {
    sub: String,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    exp: u64,
}

/// A browser sign-in request (authorization code flow), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The client.
    pub client_id: String,
    /// Where the code goes: a loopback URL.
    pub redirect_uri: String,
    /// The client's state, returned as is.
    pub state: Option<String>,
    /// The nonce to put in the ID token.
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
}

impl Authorization {
    /// Checks the parameters of an authorization request: response type `code`, a client,
    /// PKCE with S256, and a redirect URI on this machine (the development issuer must
    /// never send codes elsewhere).
    pub fn from_params(params: &[(String, String)]) -> Result<Self, String> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        if get("response_type").as_deref() != Some("code") {
            return Err("response_type must be code".into());
        }
        let client_id = get("client_id").ok_or("client_id is missing")?;
        let redirect_uri = get("redirect_uri").ok_or("redirect_uri is missing")?;
        let url = reqwest::Url::parse(&redirect_uri).map_err(|e| format!("redirect_uri: {e}"))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if !matches!(url.scheme(), "http" | "https") || !loopback || url.fragment().is_some() {
            return Err(
                "redirect_uri must be an http(s) URL on this machine (127.0.0.1, localhost)".into(),
            );
        }
        if get("code_challenge_method").as_deref() != Some("S256") {
            return Err("PKCE is required: code_challenge_method must be S256".into());
        }
        let code_challenge = get("code_challenge").ok_or("code_challenge is missing")?;
        Ok(Self {
            client_id,
            redirect_uri,
            state: get("state"),
            nonce: get("nonce"),
            code_challenge,
        })
    }
}

/// The development issuer.
pub struct DevIssuer {
    issuer: String,
    users: Vec<DevUser>,
    signer: TokenSigner,
    refresh_key: ServerKey,
    /// MACs of redeemed codes with their expiry, so each code works once.
    redeemed: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl DevIssuer {
    /// An issuer at `issuer` for `users`, with keys derived from `server_key`.
    pub fn new(issuer: String, server_key: &ServerKey, users: Vec<DevUser>) -> Self {
        let signer = TokenSigner::derive(server_key, "drive-dev-issuer-signing\n", "dev");
        let refresh_key = ServerKey::new(&server_key.derive("drive-dev-issuer-refresh\n"))
            .expect("a derived key is 32 bytes");
        Self {
            issuer,
            users,
            signer,
            refresh_key,
            redeemed: std::sync::Mutex::default(),
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
        self.signer.jwks()
    }

    /// The discovery document, with endpoints under `base` (the issuer URL).
    pub fn metadata(&self) -> Value {
        json!({"issuer": self.issuer, "jwks_uri": format!("{}/jwks", self.issuer),
            "token_endpoint": format!("{}/token", self.issuer),
            "authorization_endpoint": format!("{}/authorize", self.issuer),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "password", "refresh_token"],
            "id_token_signing_alg_values_supported": ["EdDSA"]})
    }

    /// How a verifier trusts this issuer: its own key set, no fetching.
    pub fn trust(&self) -> IssuerConfig {
        let keys = self.signer.key_set();
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

    /// Signs `username` in for a checked browser request: the redirect URI carrying a code
    /// (valid for a minute, once) and the client's state.
    pub fn authorize(
        &self,
        request: &Authorization,
        username: &str,
        password: &str,
        now: SystemTime,
    ) -> Result<String, GrantError> {
        let user = self.check_password(username, password)?;
        let code = Code {
            sub: user.name.clone(),
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            exp: unix(now + CODE_TTL),
        };
        let code = self.sign(
            "DAC1",
            "code",
            &serde_json::to_vec(&code).expect("serializes"),
        );
        let mut url =
            reqwest::Url::parse(&request.redirect_uri).map_err(|_| GrantError::InvalidRequest)?;
        url.query_pairs_mut().append_pair("code", &code);
        if let Some(state) = &request.state {
            url.query_pairs_mut().append_pair("state", state);
        }
        Ok(url.into())
    }

    fn check_password(&self, name: &str, password: &str) -> Result<&DevUser, GrantError> {
        let user = self.user(name).ok_or(GrantError::InvalidGrant)?;
        if !bool::from(user.password.as_bytes().ct_eq(password.as_bytes())) {
            return Err(GrantError::InvalidGrant);
        }
        Ok(user)
    }

    /// Redeems an authorization code: the user and the ID token's audience and nonce.
    fn redeem(
        &self,
        get: impl Fn(&str) -> Option<String>,
        now: SystemTime,
    ) -> Result<(&DevUser, String, Option<String>), GrantError> {
        let token = get("code").ok_or(GrantError::InvalidRequest)?;
        let verifier = get("code_verifier").ok_or(GrantError::InvalidRequest)?;
        let payload = self
            .open("DAC1", "code", &token)
            .ok_or(GrantError::InvalidGrant)?;
        let code: Code = serde_json::from_slice(&payload).map_err(|_| GrantError::InvalidGrant)?;
        let challenge = {
            use sha2::Digest as _;
            B64.encode_to_string(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let matches = unix(now) < code.exp
            && get("client_id").as_deref() == Some(code.client_id.as_str())
            && get("redirect_uri").as_deref() == Some(code.redirect_uri.as_str())
            && bool::from(challenge.as_bytes().ct_eq(code.challenge.as_bytes()));
        if !matches {
            return Err(GrantError::InvalidGrant);
        }
        {
            let mut redeemed = self.redeemed.lock().expect("the redeemed-code lock");
            let now = unix(now);
            redeemed.retain(|_, exp| *exp > now);
            if redeemed.insert(token, code.exp).is_some() {
                return Err(GrantError::InvalidGrant);
            }
        }
        let user = self.user(&code.sub).ok_or(GrantError::InvalidGrant)?;
        Ok((user, code.client_id, code.nonce))
    }

    /// Answers a token request with these form parameters: the OAuth JSON body.
    pub fn token(&self, params: &[(String, String)], now: SystemTime) -> Result<Value, GrantError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut id_token = None;
        let user = match get("grant_type").ok_or(GrantError::InvalidRequest)? {
            "password" => {
                let name = get("username").ok_or(GrantError::InvalidRequest)?;
                let password = get("password").ok_or(GrantError::InvalidRequest)?;
                self.check_password(name, password)?
            }
            "refresh_token" => {
                let token = get("refresh_token").ok_or(GrantError::InvalidRequest)?;
                let sub = self
                    .open_refresh(token, now)
                    .ok_or(GrantError::InvalidGrant)?;
                self.user(&sub).ok_or(GrantError::InvalidGrant)?
            }
            "authorization_code" => {
                let (user, client_id, nonce) =
                    self.redeem(|name| get(name).map(str::to_owned), now)?;
                id_token = Some(self.id_token(user, &client_id, nonce.as_deref(), now));
                user
            }
            _ => return Err(GrantError::UnsupportedGrantType),
        };
        let mut answer = json!({
            "access_token": self.access_token(user, now),
            "token_type": "Bearer",
            "expires_in": ACCESS_TTL.as_secs(),
            "refresh_token": self.refresh_token(&user.name, now),
            "scope": "openid",
        });
        if let Some(id_token) = id_token {
            answer["id_token"] = Value::String(id_token);
        }
        Ok(answer)
    }

    fn user(&self, name: &str) -> Option<&DevUser> {
        self.users.iter().find(|u| u.name == name)
    }

    fn access_token(&self, user: &DevUser, now: SystemTime) -> String {
        let iat = unix(now);
        // Roles twice: `roles` for Drive, `realm_access.roles` as Keycloak puts them, which
        // is where the App Store looks by default.
        self.jwt(
            &json!({"iss": self.issuer, "sub": user.name, "aud": DEV_AUDIENCE,
            "iat": iat, "exp": iat + ACCESS_TTL.as_secs(), "preferred_username": user.name,
            "groups": user.groups, "roles": user.roles,
            "realm_access": {"roles": user.roles}}),
        )
    }

    fn id_token(
        &self,
        user: &DevUser,
        client_id: &str,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> String {
        let iat = unix(now);
        let mut claims = json!({"iss": self.issuer, "sub": user.name, "aud": client_id,
            "iat": iat, "exp": iat + ACCESS_TTL.as_secs(), "preferred_username": user.name});
        if let Some(nonce) = nonce {
            claims["nonce"] = Value::String(nonce.to_owned());
        }
        self.jwt(&claims)
    }

    fn jwt(&self, claims: &Value) -> String {
        self.signer.sign(claims)
    }

    fn refresh_token(&self, sub: &str, now: SystemTime) -> String {
        let payload = Refresh {
            sub: sub.to_owned(),
            exp: unix(now + REFRESH_TTL),
        };
        self.sign(
            "DRT1",
            "refresh",
            &serde_json::to_vec(&payload).expect("serializes"),
        )
    }

    fn open_refresh(&self, token: &str, now: SystemTime) -> Option<String> {
        let refresh: Refresh =
            serde_json::from_slice(&self.open("DRT1", "refresh", token)?).ok()?;
        (unix(now) < refresh.exp).then_some(refresh.sub)
    }

    /// `PREFIX.<payload>.<mac>`, the MAC keyed for `purpose`.
    fn sign(&self, prefix: &str, purpose: &str, payload: &[u8]) -> String {
        let payload = B64.encode_to_string(payload);
        let mac = B64.encode_to_string(self.refresh_key.derive(&format!("{purpose}\n{payload}")));
        format!("{prefix}.{payload}.{mac}")
    }

    /// The payload of a token [`DevIssuer::sign`] made, if its MAC is right.
    fn open(&self, prefix: &str, purpose: &str, token: &str) -> Option<Vec<u8>> {
        let rest = token.strip_prefix(prefix)?.strip_prefix('.')?;
        let (payload, mac) = rest.split_once('.')?;
        let expected =
            B64.encode_to_string(self.refresh_key.derive(&format!("{purpose}\n{payload}")));
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        B64.decode_to_vec(payload).ok()
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

    #[tokio::test]
    async fn the_code_flow_needs_pkce_a_loopback_redirect_and_works_once() {
        use sha2::Digest as _;
        let dev = issuer();
        let now = SystemTime::now();
        let verifier = "a-long-enough-pkce-verifier-0123456789-abcdefghijk";
        let challenge = B64.encode_to_string(sha2::Sha256::digest(verifier.as_bytes()));
        let request = |redirect: &str, method: &str| {
            Authorization::from_params(&form(&[
                ("response_type", "code"),
                ("client_id", "appstore"),
                ("redirect_uri", redirect),
                ("state", "st"),
                ("nonce", "n0"),
                ("code_challenge", &challenge),
                ("code_challenge_method", method),
            ]))
        };
        assert!(request("https://evil.example/cb", "S256").is_err());
        assert!(request("http://127.0.0.1.evil.example/cb", "S256").is_err());
        assert!(request("http://127.0.0.1:8080/cb", "plain").is_err());
        let auth = request("http://127.0.0.1:8080/cb", "S256").unwrap();
        assert_eq!(
            dev.authorize(&auth, "alice", "wrong", now).unwrap_err(),
            GrantError::InvalidGrant
        );
        let back =
            reqwest::Url::parse(&dev.authorize(&auth, "alice", "pw-a", now).unwrap()).unwrap();
        assert_eq!(back.path(), "/cb");
        let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
        assert_eq!(params["state"], "st");
        let code = params["code"].clone();
        let redeem = |verifier: &str, redirect: &str| {
            dev.token(
                &form(&[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", verifier),
                    ("client_id", "appstore"),
                    ("redirect_uri", redirect),
                ]),
                now,
            )
        };
        assert_eq!(
            redeem("wrong-verifier", "http://127.0.0.1:8080/cb").unwrap_err(),
            GrantError::InvalidGrant
        );
        assert_eq!(
            redeem(verifier, "http://127.0.0.1:9999/cb").unwrap_err(),
            GrantError::InvalidGrant
        );
        let answer = redeem(verifier, "http://127.0.0.1:8080/cb").unwrap();
        assert_eq!(
            redeem(verifier, "http://127.0.0.1:8080/cb").unwrap_err(),
            GrantError::InvalidGrant,
            "codes work once"
        );
        let access = Verifier::new(vec![dev.trust()], Timing::default());
        let verified = access
            .verify(answer["access_token"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(verified.principal.subject, "alice");
        let ids = Verifier::new(
            vec![IssuerConfig {
                audiences: vec!["appstore".into()],
                ..dev.trust()
            }],
            Timing::default(),
        );
        let id = ids
            .verify(answer["id_token"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(id.nonce.as_deref(), Some("n0"));
        // A code is good for a minute only.
        let late = dev.authorize(&auth, "alice", "pw-a", now).unwrap();
        let late: std::collections::HashMap<_, _> = reqwest::Url::parse(&late)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        let expired = dev.token(
            &form(&[
                ("grant_type", "authorization_code"),
                ("code", &late["code"]),
                ("code_verifier", verifier),
                ("client_id", "appstore"),
                ("redirect_uri", "http://127.0.0.1:8080/cb"),
            ]),
            now + CODE_TTL,
        );
        assert_eq!(expired.unwrap_err(), GrantError::InvalidGrant);
    }
}
