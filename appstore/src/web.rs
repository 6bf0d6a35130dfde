//! Browser sign-in: OpenID Connect authorization code flow with PKCE (`/auth/login`,
//! `/auth/callback`, `/auth/logout`), and the sessions it creates. A session lives in the
//! database (its id only as a hash, the refresh token sealed with the session key); the
//! browser holds the id in an `HttpOnly` cookie. Requests a cookie authenticates must carry
//! the session's CSRF token in `X-CSRF-Token` to change anything.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use shared_identity::{IssuerConfig, Principal, Sealer, Secret, Timing, Verifier, random_string};
use sqlx::Row;
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use crate::config::{OidcConfig, WaveOidc};
use crate::repository::{Repository, now_ms};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "appstore_session";
/// Name of the cookie that binds a sign-in under way to the browser that started it.
pub const LOGIN_COOKIE: &str = "appstore_login";
/// How long a sign-in may take.
const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;
/// How long a session lasts without signing in again.
const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// The base64url alphabet, for random tokens that travel in URLs.
pub const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Why a sign-in or a session failed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The callback does not belong to a sign-in this browser started.
    #[error("this sign-in was not started here or has expired; start again")]
    UnknownFlow,
    /// The provider sent an error back.
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider failed: {0}")]
    Provider(String),
    /// The provider has no authorization endpoint.
    #[error(
        "the identity provider offers no browser sign-in (no authorization endpoint); \
         use an access token (Authorization: Bearer) or configure an issuer that has one"
    )]
    NoBrowserSignIn,
    /// A token it issued does not verify.
    #[error("the identity provider's token is not valid: {0}")]
    Token(String),
    /// The database failed.
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A signed-in browser session.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// Who is signed in.
    pub principal: Principal,
    /// The token state-changing requests must echo.
    pub csrf_token: String,
}

#[derive(Deserialize)]
struct ProviderMetadata {
    /// Absent at issuers that only hand out tokens (Drive's development issuer).
    authorization_endpoint: Option<String>,
    token_endpoint: String,
    end_session_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
    expires_in: Option<i64>,
}

/// Signs browsers in and looks their sessions up.
pub struct SignIn {
    oidc: OidcConfig,
    repo: Repository,
    sealer: Sealer,
    access: std::sync::Arc<Verifier>,
    id_tokens: Verifier,
    http: reqwest::Client,
    metadata: OnceCell<ProviderMetadata>,
}

/// The hex SHA-256 under which an id is stored.
fn hashed(id: &str) -> String {
    hex_simd::encode_to_string(Sha256::digest(id.as_bytes()), hex_simd::AsciiCase::Lower)
}

/// The PKCE S256 challenge of `verifier` (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(Sha256::digest(verifier.as_bytes()))
}

impl SignIn {
    /// Sign-in for `oidc`, verifying access tokens with `access`.
    pub fn new(
        oidc: OidcConfig,
        repo: Repository,
        sealer: Sealer,
        access: std::sync::Arc<Verifier>,
        id_issuer: IssuerConfig,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Self {
            id_tokens: Verifier::new(vec![id_issuer], Timing::default()),
            oidc,
            repo,
            sealer,
            access,
            http,
            metadata: OnceCell::new(),
        }
    }

    async fn metadata(&self) -> Result<&ProviderMetadata, SignInError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!("{}/.well-known/openid-configuration", self.oidc.issuer);
                let response = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| SignInError::Provider(format!("{url}: {e}")))?;
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| SignInError::Provider(format!("{url}: {e}")))?;
                serde_json::from_slice(&body)
                    .map_err(|e| SignInError::Provider(format!("{url}: {e}")))
            })
            .await
    }

    /// Starts a sign-in: returns the provider URL to send the browser to and the state for
    /// the login cookie. `return_to` is a local path to land on afterwards.
    pub async fn start(&self, return_to: &str) -> Result<(String, String), SignInError> {
        let metadata = self.metadata().await?;
        let state = random_string(32, B64URL);
        let verifier = random_string(64, B64URL);
        let nonce = random_string(32, B64URL);
        let return_to = if return_to.starts_with('/') && !return_to.starts_with("//") {
            return_to
        } else {
            "/"
        };
        sqlx::query("DELETE FROM login_flows WHERE created_at < $1")
            .bind(now_ms() - LOGIN_TTL_MS)
            .execute(self.repo.pool())
            .await?;
        sqlx::query(
            "INSERT INTO login_flows (state_hash, sealed_verifier, nonce, return_to, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hashed(&state))
        .bind(self.sealer.seal("pkce", verifier.as_bytes()))
        .bind(&nonce)
        .bind(return_to)
        .bind(now_ms())
        .execute(self.repo.pool())
        .await?;
        let endpoint = metadata
            .authorization_endpoint
            .as_deref()
            .ok_or(SignInError::NoBrowserSignIn)?;
        let mut url = reqwest::Url::parse(endpoint)
            .map_err(|e| SignInError::Provider(format!("authorization endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.oidc.client_id)
            .append_pair("redirect_uri", &self.oidc.redirect_url)
            .append_pair("scope", &self.oidc.scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok((url.into(), state))
    }

    /// Finishes a sign-in: checks that `state` is the one this browser's login cookie holds
    /// (`cookie_state`), redeems `code`, and creates a session. Returns the session id for
    /// the cookie and the path to land on.
    pub async fn finish(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
    ) -> Result<(String, String), SignInError> {
        let same_browser =
            cookie_state.is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
        if !same_browser {
            return Err(SignInError::UnknownFlow);
        }
        // One use only: the row goes whatever happens next.
        let row = sqlx::query(
            "DELETE FROM login_flows WHERE state_hash = $1 AND created_at >= $2 \
             RETURNING sealed_verifier, nonce, return_to",
        )
        .bind(hashed(state))
        .bind(now_ms() - LOGIN_TTL_MS)
        .fetch_optional(self.repo.pool())
        .await?
        .ok_or(SignInError::UnknownFlow)?;
        let verifier = self
            .sealer
            .open("pkce", &row.try_get::<String, _>("sealed_verifier")?)
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or(SignInError::UnknownFlow)?;
        let nonce: String = row.try_get("nonce")?;
        let return_to: String = row.try_get("return_to")?;
        let tokens = self
            .redeem(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.oidc.redirect_url),
                ("code_verifier", &verifier),
            ])
            .await?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| SignInError::Token("no id_token in the response".into()))?;
        let id = self
            .id_tokens
            .verify(id_token)
            .await
            .map_err(|e| SignInError::Token(format!("id_token: {e}")))?;
        let nonce_ok = id
            .nonce
            .as_deref()
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(nonce.as_bytes())));
        if !nonce_ok {
            return Err(SignInError::Token(
                "id_token: the nonce does not match".into(),
            ));
        }
        let (principal, expires) = self.verify_access(&tokens).await?;
        let session_id = random_string(43, B64URL);
        let now = now_ms();
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, principal, csrf_token, sealed_refresh_token, \
             access_expires_at, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hashed(&session_id))
        .bind(serde_json::to_string(&principal).expect("principals serialize"))
        .bind(random_string(32, B64URL))
        .bind(
            tokens
                .refresh_token
                .as_ref()
                .map(|t| self.sealer.seal("refresh-token", t.as_bytes())),
        )
        .bind(expires)
        .bind(now)
        .bind(now + SESSION_TTL_MS)
        .execute(self.repo.pool())
        .await?;
        Ok((session_id, return_to))
    }

    async fn redeem(&self, form: &[(&str, &str)]) -> Result<TokenResponse, SignInError> {
        let body = self
            .token_call(form, &self.oidc.client_id, self.oidc.client_secret.as_ref())
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| SignInError::Provider(format!("token endpoint answer: {e}")))
    }

    /// Posts `form` to the provider's token endpoint as `client_id` (with `secret`, if any);
    /// the answer's body when the provider granted the request.
    async fn token_call(
        &self,
        form: &[(&str, &str)],
        client_id: &str,
        secret: Option<&Secret>,
    ) -> Result<Bytes, SignInError> {
        let metadata = self.metadata().await?;
        let mut form: Vec<(&str, &str)> = form.to_vec();
        form.push(("client_id", client_id));
        if let Some(secret) = secret {
            form.push(("client_secret", secret.expose()));
        }
        let response = self
            .http
            .post(&metadata.token_endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| SignInError::Provider(format!("token endpoint: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| SignInError::Provider(format!("token endpoint: {e}")))?;
        if status.is_server_error() {
            return Err(SignInError::Provider(format!("token endpoint: {status}")));
        }
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = error["error"].as_str().unwrap_or("unknown error");
            return Err(SignInError::Refused(format!("{status}: {code}")));
        }
        Ok(body)
    }

    /// Refreshes a refresh token the provider issued to waved's client (`wave`), for an app
    /// that hands its user's `q.auth.refresh_token` to the broker: the provider's token
    /// response as it sent it.
    pub async fn refresh_for_wave(
        &self,
        wave: &WaveOidc,
        refresh_token: &str,
    ) -> Result<Bytes, SignInError> {
        self.token_call(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
            &wave.client_id,
            Some(&wave.client_secret),
        )
        .await
    }

    /// The principal of a fresh access token and when to look at the roles again.
    async fn verify_access(&self, tokens: &TokenResponse) -> Result<(Principal, i64), SignInError> {
        let verified = self
            .access
            .verify(&tokens.access_token)
            .await
            .map_err(|e| SignInError::Token(format!("access_token: {e}")))?;
        let expires = verified
            .expires
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let expires = tokens
            .expires_in
            .map_or(expires, |s| expires.min(now_ms() + s * 1000));
        Ok((verified.principal, expires))
    }

    /// The session a cookie names, refreshing its roles with the refresh token when the
    /// access token they came from has expired. `None` when there is no valid session.
    pub async fn session(&self, session_id: &str) -> Result<Option<WebSession>, SignInError> {
        let id_hash = hashed(session_id);
        let Some(row) = sqlx::query(
            "SELECT principal, csrf_token, sealed_refresh_token, access_expires_at \
             FROM web_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(&id_hash)
        .bind(now_ms())
        .fetch_optional(self.repo.pool())
        .await?
        else {
            return Ok(None);
        };
        let csrf_token: String = row.try_get("csrf_token")?;
        let principal: Principal =
            match serde_json::from_str(&row.try_get::<String, _>("principal")?) {
                Ok(p) => p,
                Err(_) => return Ok(None),
            };
        if row.try_get::<i64, _>("access_expires_at")? > now_ms() {
            return Ok(Some(WebSession {
                principal,
                csrf_token,
            }));
        }
        let refresh = row
            .try_get::<Option<String>, _>("sealed_refresh_token")?
            .and_then(|s| self.sealer.open("refresh-token", &s))
            .and_then(|t| String::from_utf8(t).ok());
        let Some(refresh) = refresh else {
            self.end(session_id).await?;
            return Ok(None);
        };
        let tokens = match self
            .redeem(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
            .await
        {
            Ok(t) => t,
            Err(SignInError::Refused(reason)) => {
                tracing::info!(%reason, "a session ended: its refresh token was refused");
                self.end(session_id).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (principal, expires) = self.verify_access(&tokens).await?;
        let sealed = tokens.refresh_token.as_ref().map_or_else(
            || self.sealer.seal("refresh-token", refresh.as_bytes()),
            |t| self.sealer.seal("refresh-token", t.as_bytes()),
        );
        sqlx::query(
            "UPDATE web_sessions SET principal = $1, sealed_refresh_token = $2, \
             access_expires_at = $3 WHERE id_hash = $4",
        )
        .bind(serde_json::to_string(&principal).expect("principals serialize"))
        .bind(sealed)
        .bind(expires)
        .bind(&id_hash)
        .execute(self.repo.pool())
        .await?;
        Ok(Some(WebSession {
            principal,
            csrf_token,
        }))
    }

    /// Ends a session.
    pub async fn end(&self, session_id: &str) -> Result<(), SignInError> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1 OR expires_at < $2")
            .bind(hashed(session_id))
            .bind(now_ms())
            .execute(self.repo.pool())
            .await?;
        Ok(())
    }

    /// Where the browser goes after signing out.
    pub async fn after_logout(&self) -> String {
        if let Some(url) = &self.oidc.end_session_url {
            return url.clone();
        }
        match self.metadata().await {
            Ok(ProviderMetadata {
                end_session_endpoint: Some(url),
                ..
            }) => url.clone(),
            _ => "/".into(),
        }
    }
}

/// Whether `sent` is the session's CSRF token.
pub fn csrf_matches(session: &WebSession, sent: Option<&str>) -> bool {
    sent.is_some_and(|s| bool::from(s.as_bytes().ct_eq(session.csrf_token.as_bytes())))
}

/// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
pub fn cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_and_found_by_name() {
        let c = cookie(SESSION_COOKIE, "abc", "/", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
        assert!(!cookie(SESSION_COOKIE, "abc", "/", 60, false).contains("Secure"));
        let header = "a=1; appstore_session=xyz; b=2";
        assert_eq!(cookie_value(header, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie_value(header, "missing"), None);
    }

    #[test]
    fn pkce_challenge_is_rfc7636() {
        // The example of RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn csrf_needs_the_exact_token() {
        let s = WebSession {
            principal: Principal {
                issuer: String::new(),
                subject: "s".into(),
                username: None,
                email: None,
                groups: vec![],
                roles: vec![],
            },
            csrf_token: "tok".into(),
        };
        assert!(csrf_matches(&s, Some("tok")));
        assert!(!csrf_matches(&s, Some("to")));
        assert!(!csrf_matches(&s, None));
    }
}
