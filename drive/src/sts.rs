//! STS `AssumeRoleWithWebIdentity`: an OIDC access token in, Drive session credentials
//! out, in AWS's query-protocol wire format (form or query parameters, XML answers).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;
use shared_identity::{Sessions, Verifier, VerifyError};

/// Shortest and longest sessions AWS allows for `DurationSeconds`.
const DURATION_RANGE: std::ops::RangeInclusive<u64> = 900..=43200;
const DEFAULT_DURATION: u64 = 3600;
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The STS endpoint.
pub struct Sts {
    verifier: Arc<Verifier>,
    sessions: Arc<Sessions>,
    max_duration: Duration,
}

/// An STS answer: status and XML body.
pub type Answer = (StatusCode, String);

impl Sts {
    /// An endpoint that trusts `verifier`'s issuers and issues sessions of at most
    /// `max_duration`.
    pub fn new(verifier: Arc<Verifier>, sessions: Arc<Sessions>, max_duration: Duration) -> Self {
        Self {
            verifier,
            sessions,
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
        let duration = Duration::from_secs(duration).min(self.max_duration);
        let verified = match self.verifier.verify(token).await {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(error = %e, "web identity token refused");
                let code = match e {
                    VerifyError::Expired => "ExpiredTokenException",
                    VerifyError::Provider(_) => "IDPCommunicationError",
                    _ => "InvalidIdentityToken",
                };
                return fail(StatusCode::BAD_REQUEST, code, &e.to_string());
            }
        };
        let creds = self
            .sessions
            .issue(&verified.principal, duration, SystemTime::now());
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
        tracing::info!(
            user = verified.principal.display_name(),
            access_key = %creds.access_key_id,
            seconds = duration.as_secs(),
            "session credentials issued"
        );
        (StatusCode::OK, body)
    }
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
    use shared_identity::ServerKey;

    use super::*;

    fn sts() -> Sts {
        let sessions = Sessions::new(ServerKey::new(&[3; 32]).unwrap(), vec![]);
        let verifier = Verifier::new(vec![], shared_identity::Timing::default());
        Sts::new(
            Arc::new(verifier),
            Arc::new(sessions),
            Duration::from_secs(43200),
        )
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
        let s = sts();
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
