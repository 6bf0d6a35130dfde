//! A raw client of Drive's STS (`AssumeRoleWithWebIdentity`) and S3 clients that use the
//! session credentials it returns.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_types::retry::RetryConfig;
use bytes::Bytes;

use crate::sign;

/// Session credentials as STS returned them.
#[derive(Debug, Clone)]
pub struct SessionCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// `Expiration`, as sent.
    pub expiration: String,
}

/// An STS refusal: status, error code and the whole body.
#[derive(Debug, Clone)]
pub struct StsError {
    /// HTTP status.
    pub status: u16,
    /// `<Code>` of the error document.
    pub code: String,
    /// The whole body.
    pub body: String,
}

/// The text of the first `<tag>` element in `xml`.
pub fn element(xml: &str, tag: &str) -> Option<String> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    let (value, _) = rest.split_once(&format!("</{tag}>"))?;
    Some(value.to_owned())
}

/// Posts `AssumeRoleWithWebIdentity` with `token` to `endpoint`, as botocore does.
pub async fn assume(
    endpoint: &str,
    token: &str,
    duration_secs: Option<u64>,
) -> Result<SessionCredentials, StsError> {
    let mut form = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=drivedrivedrivedrive\
         &RoleSessionName=compat-tests&WebIdentityToken={token}"
    );
    if let Some(d) = duration_secs {
        form.push_str(&format!("&DurationSeconds={d}"));
    }
    let reply = sign::send(sign::request(
        "POST",
        &format!("{endpoint}/"),
        [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )],
        Bytes::from(form),
    ))
    .await;
    let body = reply.text();
    if reply.status != 200 {
        return Err(StsError {
            status: reply.status,
            code: element(&body, "Code").unwrap_or_default(),
            body,
        });
    }
    let get = |tag| element(&body, tag).unwrap_or_else(|| panic!("no <{tag}> in {body}"));
    Ok(SessionCredentials {
        access_key_id: get("AccessKeyId"),
        secret_access_key: get("SecretAccessKey"),
        session_token: get("SessionToken"),
        expiration: get("Expiration"),
    })
}

/// An SDK client for `endpoint` with session credentials (path style, no retries).
pub fn session_client(endpoint: &str, creds: &SessionCredentials) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("eu-central-1"))
        .credentials_provider(Credentials::new(
            &creds.access_key_id,
            &creds.secret_access_key,
            Some(creds.session_token.clone()),
            None,
            "sts",
        ))
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

/// Calls Drive's key API (`/_drive/api/v1/<path>`) with a bearer `token`.
pub async fn keys_api(
    endpoint: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> sign::Reply {
    let auth = format!("Bearer {token}");
    sign::send(sign::request(
        method,
        &format!("{endpoint}/_drive/api/v1/{path}"),
        [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Bytes::from(body.to_owned()),
    ))
    .await
}
