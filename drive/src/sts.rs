//! STS `AssumeRoleWithWebIdentity`: an OIDC access token in, Drive session credentials
//! out, in AWS's query-protocol wire format (form or query parameters, XML answers). Tokens
//! a broker minted for an app instance (claim `instance_id`) are refused once the instance
//! is revoked; otherwise the session credentials carry the instance.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use shared_identity::{SessionCredentials, Sessions, Verified, Verifier, VerifyError};

use crate::revocations::Revocations;

/// Shortest and longest sessions AWS allows for `DurationSeconds`.
const DURATION_RANGE: std::ops::RangeInclusive<u64> = 900..=43200;
const DEFAULT_DURATION: u64 = 3600;
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The STS endpoint.
pub struct Sts {
    verifier: Arc<Verifier>,
    sessions: Arc<Sessions>,
    revocations: Arc<Revocations>,
    max_duration: Duration,
}

/// An STS answer: status and XML body.
pub type Answer = (StatusCode, String);

impl Sts {
    /// An endpoint that trusts `verifier`'s issuers except for instances in `revocations`,
    /// and issues sessions of at most `max_duration`.
    pub fn new(
        verifier: Arc<Verifier>,
        sessions: Arc<Sessions>,
        revocations: Arc<Revocations>,
        max_duration: Duration,
    ) -> Self {
        Self {
            verifier,
            sessions,
            revocations,
            max_duration,
        }
    }

    /// Answers one STS request with the decoded `params`.
    pub async fn handle(&self, params: &[(String, String)], request_id: &str) -> Answer {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let fail = |status, code, message: &str| error(status, code, message, request_id);
        match get("Action") {
            Some("AssumeRoleWithWebIdentity") => {}
            Some(other) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "InvalidAction",
                    &format!("Drive's STS does not support the action {other}."),
                );
            }
            None => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "MissingAction",
                    "The request must contain the parameter Action.",
                );
            }
        }
        let Some(token) = get("WebIdentityToken") else {
            return fail(
                StatusCode::BAD_REQUEST,
                "MissingParameter",
                "The request must contain the parameter WebIdentityToken.",
            );
        };
        let session_name = get("RoleSessionName").unwrap_or("drive-session");
        if !(2..=64).contains(&session_name.len())
            || !session_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
        {
            return fail(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "RoleSessionName must be 2 to 64 characters of [\\w+=,.@-].",
            );
        }
        let duration = match get("DurationSeconds").map(str::parse::<u64>) {
            None => DEFAULT_DURATION,
            Some(Ok(d)) if DURATION_RANGE.contains(&d) => d,
            Some(_) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "ValidationError",
                    "DurationSeconds must be a number from 900 to 43200.",
                );
            }
        };
        let (verified, creds) = match self.assume(token, Duration::from_secs(duration)).await {
            Ok(answer) => answer,
            Err(refusal) => return fail(refusal.status, refusal.code, &refusal.message),
        };
        let subject = xml_escape(&verified.principal.subject);
        let session_name = xml_escape(session_name);
        let audience = verified
            .audience
            .as_deref()
            .map(|a| format!("<Audience>{}</Audience>", xml_escape(a)))
            .unwrap_or_default();
        let provider = format!(
            "<Provider>{}</Provider>",
            xml_escape(&verified.principal.issuer)
        );
        let expiration = time::OffsetDateTime::from(creds.expiration)
            .format(&time::format_description::well_known::Rfc3339)
            .expect("timestamps format");
        let body = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"{NAMESPACE}\">\
             <AssumeRoleWithWebIdentityResult>\
             <SubjectFromWebIdentityToken>{subject}</SubjectFromWebIdentityToken>{audience}\
             <AssumedRoleUser><Arn>arn:aws:sts::000000000000:assumed-role/drive/{session_name}</Arn>\
             <AssumedRoleId>AROADRIVE:{session_name}</AssumedRoleId></AssumedRoleUser>\
             <Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>{}</SecretAccessKey>\
             <SessionToken>{}</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
             {provider}</AssumeRoleWithWebIdentityResult>\
             <ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
             </AssumeRoleWithWebIdentityResponse>",
            creds.access_key_id, creds.secret_access_key, creds.session_token
        );
        (StatusCode::OK, body)
    }

    /// Verifies a web identity `token` and issues session credentials for it, valid for
    /// `duration` but at most the configured maximum: what `AssumeRoleWithWebIdentity`
    /// does, for Drive's own callers (the file browser's sign-in).
    pub async fn assume(
        &self,
        token: &str,
        duration: Duration,
    ) -> Result<(Verified, SessionCredentials), Refusal> {
        let refuse = |status, code, message: String| Refusal {
            status,
            code,
            message,
        };
        let duration = duration.min(self.max_duration);
        let verified = match self.verifier.verify(token).await {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(error = %e, "web identity token refused");
                let code = match e {
                    VerifyError::Expired => "ExpiredTokenException",
                    VerifyError::Provider(_) => "IDPCommunicationError",
                    _ => "InvalidIdentityToken",
                };
                return Err(refuse(StatusCode::BAD_REQUEST, code, e.to_string()));
            }
        };
        if let Some(instance) = &verified.instance {
            match self.revocations.is_revoked(instance).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(instance, "web identity token of a revoked instance refused");
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        "InvalidIdentityToken",
                        format!(
                            "The token was minted for the app instance {instance}, which has been terminated."
                        ),
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "instance revocation lookup failed");
                    return Err(refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "The token could not be checked; try again.".to_owned(),
                    ));
                }
            }
        }
        let creds = self.sessions.issue(
            &verified.principal,
            verified.instance.as_deref(),
            duration,
            SystemTime::now(),
        );
        tracing::info!(
            user = verified.principal.display_name(),
            instance = verified.instance.as_deref(),
            access_key = %creds.access_key_id,
            seconds = duration.as_secs(),
            "session credentials issued"
        );
        Ok((verified, creds))
    }
}

/// Why a web identity token got no session credentials.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The STS error code.
    pub code: &'static str,
    /// What went wrong, in words.
    pub message: String,
}

/// Decodes `application/x-www-form-urlencoded` text (also a query string).
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// An AWS-shaped STS error document (`ErrorResponse`) with the request id.
pub fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> Answer {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type><Code>{code}</Code>\
         <Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    (status, body)
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared_identity::{IssuerConfig, Sealer, ServerKey, TokenSigner};

    use super::*;
    use crate::keys::KeyStore;

    const ISSUER: &str = "https://broker.test";

    /// An STS trusting one issuer that `signer` plays, and its revocation list.
    struct Fixture {
        sts: Sts,
        signer: TokenSigner,
        sessions: Arc<Sessions>,
        revocations: Arc<Revocations>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let key = ServerKey::new(&[3; 32]).unwrap();
        let signer = TokenSigner::derive(&key, "test-broker\n", "broker");
        let sessions = Arc::new(Sessions::new(key.clone(), vec![]));
        let verifier = Verifier::new(
            vec![IssuerConfig {
                keys: Some(signer.key_set()),
                ..IssuerConfig::new(ISSUER, vec!["urn:test".into()])
            }],
            shared_identity::Timing::default(),
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/drive.db?mode=rwc", dir.path().display());
        let store = KeyStore::open(&url, Sealer::new(key, vec![]))
            .await
            .unwrap();
        let revocations = Arc::new(Revocations::new(
            store.pool(),
            crate::revocations::List::Instances,
            Duration::from_secs(1),
        ));
        let sts = Sts::new(
            Arc::new(verifier),
            Arc::clone(&sessions),
            Arc::clone(&revocations),
            Duration::from_secs(43200),
        );
        Fixture {
            sts,
            signer,
            sessions,
            revocations,
            _dir: dir,
        }
    }

    async fn sts() -> Sts {
        fixture().await.sts
    }

    #[tokio::test]
    async fn sessions_carry_the_instance_until_it_is_revoked() {
        let f = fixture().await;
        let now = SystemTime::now();
        let exp = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300;
        let token = |instance: Option<&str>| {
            let mut claims = json!({"iss": ISSUER, "sub": "u1", "aud": "urn:test", "exp": exp});
            if let Some(i) = instance {
                claims["instance_id"] = json!(i);
            }
            f.signer.sign(&claims)
        };
        let ask = |token: String| {
            parse_form(&format!(
                "Action=AssumeRoleWithWebIdentity&WebIdentityToken={token}"
            ))
        };
        let session = |body: &str| {
            let get = |tag: &str| {
                let (_, rest) = body.split_once(&format!("<{tag}>")).unwrap();
                rest.split_once(&format!("</{tag}>")).unwrap().0.to_owned()
            };
            f.sessions
                .verify(&get("AccessKeyId"), &get("SessionToken"), now)
                .unwrap()
        };
        for instance in [Some("inst-1"), None] {
            let (status, body) = f.sts.handle(&ask(token(instance)), "r").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(session(&body).instance.as_deref(), instance);
        }
        f.revocations.revoke("inst-1").await.unwrap();
        let (status, body) = f.sts.handle(&ask(token(Some("inst-1"))), "r").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("<Code>InvalidIdentityToken</Code>"), "{body}");
        assert!(
            body.contains("inst-1") && body.contains("terminated"),
            "{body}"
        );
        let (status, _) = f.sts.handle(&ask(token(Some("inst-2"))), "r").await;
        assert_eq!(status, StatusCode::OK);
    }

    #[test]
    fn forms_decode() {
        assert_eq!(
            parse_form("Action=A&x=a%2Bb+c&empty=&flag"),
            [
                ("Action".into(), "A".into()),
                ("x".into(), "a+b c".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new())
            ]
        );
    }

    #[tokio::test]
    async fn bad_requests_get_aws_errors() {
        let s = sts().await;
        let ask = |q: &str| parse_form(q);
        let (status, body) = s.handle(&ask("Action=GetCallerIdentity"), "r1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("<Code>InvalidAction</Code>") && body.contains("r1"));
        let base = "Action=AssumeRoleWithWebIdentity&WebIdentityToken=abcd";
        for (extra, code) in [
            ("&RoleSessionName=s1&DurationSeconds=899", "ValidationError"),
            (
                "&RoleSessionName=s1&DurationSeconds=43201",
                "ValidationError",
            ),
            ("&RoleSessionName=s1&DurationSeconds=x", "ValidationError"),
            ("&RoleSessionName=%3Cx%3E", "ValidationError"),
            ("&RoleSessionName=s1", "InvalidIdentityToken"),
        ] {
            let (status, body) = s.handle(&ask(&format!("{base}{extra}")), "r").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}");
            assert!(
                body.contains(&format!("<Code>{code}</Code>")),
                "{extra}: {body}"
            );
        }
        let (_, body) = s
            .handle(&ask("Action=AssumeRoleWithWebIdentity"), "r")
            .await;
        assert!(body.contains("MissingParameter"));
    }
}
