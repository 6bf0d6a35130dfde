//! Verification of OpenID Connect access tokens (JWTs) from trusted issuers: discovery,
//! a JWKS cache with periodic refresh and a rate-limited refetch for unknown key ids, and
//! the checks of issuer, audience, authorized party, expiry and algorithm.

use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::{ClaimMapping, Principal};

/// Largest discovery document or key set read from an issuer.
const MAX_DOCUMENT: usize = 1 << 20;
/// Least time between two fetches while an issuer's keys could never be fetched (it may
/// start after the verifier), whatever the refetch interval.
const RETRY_WITHOUT_KEYS: Duration = Duration::from_secs(1);

/// One issuer whose tokens are accepted.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The issuer URL exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any audience.
    pub audiences: Vec<String>,
    /// Accepted `azp` values (Keycloak's client id); empty skips the check.
    pub authorized_parties: Vec<String>,
    /// Accepted signature algorithms (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Where the identity claims are.
    pub claims: ClaimMapping,
    /// The key set URL; `None` finds it by OIDC discovery.
    pub jwks_uri: Option<String>,
    /// A key set known up front (the built-in development issuer); never fetched.
    pub keys: Option<JwkSet>,
}

impl IssuerConfig {
    /// An issuer with the default claim mapping and every asymmetric algorithm.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            authorized_parties: Vec::new(),
            algorithms: ASYMMETRIC.to_vec(),
            claims: ClaimMapping::default(),
            jwks_uri: None,
            keys: None,
        }
    }
}

/// The algorithms a public key can verify.
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Timing knobs of the verifier.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Age after which a key set is fetched again.
    pub keys_max_age: Duration,
    /// Least time between two fetches caused by unknown key ids.
    pub refetch_interval: Duration,
    /// Timeout of each request to an issuer.
    pub http_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(30),
            keys_max_age: Duration::from_secs(600),
            refetch_interval: Duration::from_secs(30),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a JWT, or one whose header or claims cannot be read.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// `iss` names no trusted issuer.
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    /// The header names an algorithm this issuer may not use (`none`, HS*, …).
    #[error("the token's algorithm {0} is not allowed")]
    Algorithm(String),
    /// No key of the issuer has the token's key id.
    #[error("the issuer has no key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `aud` or `azp` names nobody we accept.
    #[error("the token is meant for another audience")]
    Audience,
    /// A required claim is missing or has the wrong type.
    #[error("the token's claims are invalid: {0}")]
    Claims(String),
    /// The issuer could not be asked for its keys.
    #[error("the identity provider could not be reached: {0}")]
    Provider(String),
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who the token speaks for.
    pub principal: Principal,
    /// When the token expires.
    pub expires: SystemTime,
    /// The first audience, for STS's `Audience` element.
    pub audience: Option<String>,
    /// The `nonce` claim of an ID token, which a sign-in compares with the one it sent.
    pub nonce: Option<String>,
    /// The `instance_id` claim: the app instance a token broker minted the token for.
    pub instance: Option<String>,
}

/// Verifies access tokens from a set of trusted issuers.
pub struct Verifier {
    issuers: Vec<Trusted>,
    timing: Timing,
    http: reqwest::Client,
}

struct Trusted {
    config: IssuerConfig,
    keys: RwLock<Option<CachedKeys>>,
    /// Serializes fetches; holds when the last one started.
    fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Clone)]
struct CachedKeys {
    set: JwkSet,
    fetched: Instant,
}

impl Verifier {
    /// A verifier for `issuers`; HS* and `none` are never accepted, whatever is configured.
    pub fn new(issuers: Vec<IssuerConfig>, timing: Timing) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timing.http_timeout)
            .build()
            .expect("the HTTP client builds");
        let issuers = issuers
            .into_iter()
            .map(|mut config| {
                config.algorithms.retain(|a| ASYMMETRIC.contains(a));
                Trusted {
                    config,
                    keys: RwLock::new(None),
                    fetch: tokio::sync::Mutex::new(None),
                }
            })
            .collect();
        Self {
            issuers,
            timing,
            http,
        }
    }

    /// The issuers this verifier trusts.
    pub fn issuers(&self) -> impl Iterator<Item = &str> {
        self.issuers.iter().map(|t| t.config.issuer.as_str())
    }

    /// Fetches every issuer's keys now; reports the first that fails. An issuer that fails
    /// is asked again on demand, at most once a second until its keys arrive.
    pub async fn warm(&self) -> Result<(), VerifyError> {
        for t in self.issuers.iter().filter(|t| t.config.keys.is_none()) {
            t.refresh(&self.http, &self.timing, true).await?;
        }
        Ok(())
    }

    /// Verifies `token` and maps its claims to a principal.
    pub async fn verify(&self, token: &str) -> Result<Verified, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let unverified: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let iss = unverified.get("iss").and_then(Value::as_str);
        let trusted = self
            .issuers
            .iter()
            .find(|t| Some(t.config.issuer.as_str()) == iss)
            .ok_or(VerifyError::UntrustedIssuer)?;
        let config = &trusted.config;
        if !config.algorithms.contains(&header.alg) {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        let jwk = trusted
            .key(&self.http, &self.timing, header.kid.as_deref())
            .await?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{:?}", header.alg)
        {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.timing.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        if config.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&config.audiences);
        }
        let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                ErrorKind::InvalidAudience => VerifyError::Audience,
                ErrorKind::InvalidIssuer => VerifyError::UntrustedIssuer,
                ErrorKind::InvalidSignature => VerifyError::Signature,
                ErrorKind::InvalidAlgorithm => VerifyError::Algorithm(format!("{:?}", header.alg)),
                ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
                    VerifyError::Claims(c.clone())
                }
                _ => VerifyError::Malformed(e.to_string()),
            })?
            .claims;
        if !config.authorized_parties.is_empty() {
            let azp = claims.get("azp").and_then(Value::as_str);
            if !config
                .authorized_parties
                .iter()
                .any(|p| Some(p.as_str()) == azp)
            {
                return Err(VerifyError::Audience);
            }
        }
        let principal = config
            .claims
            .principal(&config.issuer, &claims)
            .ok_or_else(|| VerifyError::Claims("sub".into()))?;
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .ok_or_else(|| VerifyError::Claims("exp".into()))?;
        let audience = match claims.get("aud") {
            Some(Value::String(a)) => Some(a.clone()),
            Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Verified {
            principal,
            expires,
            audience,
            nonce: string("nonce"),
            instance: string("instance_id"),
        })
    }
}

impl Trusted {
    fn cached(&self) -> Option<CachedKeys> {
        self.keys.read().expect("key cache lock").clone()
    }

    /// The key for `kid`, fetching the key set when it is old or lacks the key (at most
    /// once per refetch interval for unknown keys).
    async fn key(
        &self,
        http: &reqwest::Client,
        timing: &Timing,
        kid: Option<&str>,
    ) -> Result<Jwk, VerifyError> {
        if let Some(set) = &self.config.keys {
            return find(set, kid).ok_or_else(|| unknown(kid));
        }
        if let Some(keys) = self.cached()
            && keys.fetched.elapsed() < timing.keys_max_age
            && let Some(jwk) = find(&keys.set, kid)
        {
            return Ok(jwk);
        }
        self.refresh(http, timing, false).await?;
        let keys = self
            .cached()
            .ok_or_else(|| VerifyError::Provider("no keys could be fetched yet".into()))?;
        find(&keys.set, kid).ok_or_else(|| unknown(kid))
    }

    /// Fetches the key set unless the last fetch was within the refetch interval (within a
    /// second while no keys were ever fetched); `force` always fetches. A failed fetch keeps
    /// the old keys.
    async fn refresh(
        &self,
        http: &reqwest::Client,
        timing: &Timing,
        force: bool,
    ) -> Result<(), VerifyError> {
        let mut last = self.fetch.lock().await;
        let cached = self.cached();
        let interval = if cached.is_some() {
            timing.refetch_interval
        } else {
            timing.refetch_interval.min(RETRY_WITHOUT_KEYS)
        };
        // Whoever waited for the lock finds the fresh keys; unknown key ids and a failing
        // provider cause at most one fetch per interval.
        if !force && last.is_some_and(|t| t.elapsed() < interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        match self.fetch_keys(http).await {
            Ok(set) => {
                *self.keys.write().expect("key cache lock") = Some(CachedKeys {
                    set,
                    fetched: Instant::now(),
                });
                Ok(())
            }
            Err(e) if cached.is_some() && !force => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "key set refresh failed; keeping the old keys");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch_keys(&self, http: &reqwest::Client) -> Result<JwkSet, VerifyError> {
        let uri = match &self.config.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                #[derive(Deserialize)]
                struct Metadata {
                    issuer: String,
                    jwks_uri: String,
                }
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let meta: Metadata = serde_json::from_slice(&get(http, &url).await?)
                    .map_err(|e| VerifyError::Provider(format!("{url}: {e}")))?;
                if meta.issuer != self.config.issuer {
                    return Err(VerifyError::Provider(format!(
                        "{url} names the issuer {:?}, expected {:?}",
                        meta.issuer, self.config.issuer
                    )));
                }
                meta.jwks_uri
            }
        };
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let raw: RawSet = serde_json::from_slice(&get(http, &uri).await?)
            .map_err(|e| VerifyError::Provider(format!("{uri}: {e}")))?;
        // Keys of kinds we cannot use (encryption keys, unknown types) are skipped.
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .collect();
        Ok(JwkSet { keys })
    }
}

fn find(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

fn unknown(kid: Option<&str>) -> VerifyError {
    VerifyError::UnknownKey(kid.unwrap_or("").to_owned())
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, VerifyError> {
    let err = |e: &dyn std::fmt::Display| VerifyError::Provider(format!("{url}: {e}"));
    let mut resp = http.get(url).send().await.map_err(|e| err(&e))?;
    if !resp.status().is_success() {
        return Err(err(&resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| err(&e))? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(err(&"document larger than 1 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
