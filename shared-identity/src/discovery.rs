//! H2O AI Cloud discovery (`/.ai.h2o.cloud.discovery/v1/...`): tells `h2o_discovery` and
//! `h2o_drive.connect()` where the issuer, Drive's STS and its S3 endpoints are. Drive
//! serves it for its users; the App Store serves it to instances, naming its token broker
//! as the issuer.

use serde_json::{Value, json};

/// The path prefix of the discovery service.
pub const PREFIX: &str = "/.ai.h2o.cloud.discovery/";
const PAGE_SIZE: usize = 50;

/// What discovery announces.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The OIDC issuer clients get tokens from.
    pub issuer: String,
    /// The public OAuth client id (`clients/platform`).
    pub client_id: String,
    /// The OAuth scope clients ask for.
    pub scope: String,
    /// Drive's public base URL; `None` takes it from each request's `Host`.
    pub public_url: Option<String>,
    /// Drive's URL when another server answers discovery; `None`: the same base.
    pub drive_url: Option<String>,
}

impl Discovery {
    /// The JSON answer for `path` below [`PREFIX`]; `None` for an unknown path.
    pub fn answer(&self, path: &str, query: &str, host: Option<&str>) -> Option<Value> {
        let base = match (&self.public_url, host) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(host)) => format!("http://{host}"),
            (None, None) => "http://127.0.0.1".to_owned(),
        };
        let drive = self
            .drive_url
            .as_deref()
            .map_or(base.as_str(), |u| u.trim_end_matches('/'));
        let service = |name: &str, display: &str| {
            json!({"name": format!("services/{name}"), "displayName": display, "uri": drive,
                   "version": env!("CARGO_PKG_VERSION")})
        };
        let (key, items) = match path.trim_end_matches('/') {
            "v1/environment" => {
                return Some(json!({"environment": {
                    "h2oCloudEnvironment": base,
                    "issuerUrl": self.issuer,
                    "h2oCloudPlatformOauth2Scope": self.scope,
                    "h2oCloudVersion": format!("Drive {}", env!("CARGO_PKG_VERSION")),
                }}));
            }
            "v1/services" => (
                "services",
                vec![
                    service("drive-sts", "Drive STS"),
                    service("userdrive", "Drive (user buckets)"),
                    service("workspacedrive", "Drive (workspace buckets)"),
                ],
            ),
            "v1/clients" => (
                "clients",
                vec![
                    json!({"name": "clients/platform", "displayName": "Platform",
                            "oauth2ClientId": self.client_id}),
                ],
            ),
            "v1/links" => ("links", Vec::new()),
            "v1/components" => (
                "components",
                vec![json!({"name": "components/drive", "displayName": "Drive",
                            "version": env!("CARGO_PKG_VERSION")})],
            ),
            _ => return None,
        };
        Some(page(key, items, query))
    }
}

/// One page of `items`: `pageSize` and `pageToken` (an offset) as the discovery clients
/// send them; the last page has no `nextPageToken` (an empty one would loop clients forever).
fn page(key: &str, items: Vec<Value>, query: &str) -> Value {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let size = param("pageSize").filter(|s| *s > 0).unwrap_or(PAGE_SIZE);
    let start = param("pageToken").unwrap_or(0).min(items.len());
    let end = start.saturating_add(size).min(items.len());
    let mut out = serde_json::Map::new();
    out.insert(key.into(), Value::Array(items[start..end].to_vec()));
    if end < items.len() {
        out.insert("nextPageToken".into(), Value::String(end.to_string()));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery() -> Discovery {
        Discovery {
            issuer: "http://idp".into(),
            client_id: "drive-cli".into(),
            scope: "openid".into(),
            public_url: None,
            drive_url: None,
        }
    }

    #[test]
    fn services_name_drive_and_pages_end() {
        let d = discovery();
        let all = d.answer("v1/services", "", Some("127.0.0.1:9")).unwrap();
        let names: Vec<_> = all["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "services/drive-sts",
                "services/userdrive",
                "services/workspacedrive"
            ]
        );
        assert_eq!(all["services"][0]["uri"], "http://127.0.0.1:9");
        assert!(all.get("nextPageToken").is_none());
        let first = d.answer("v1/services", "pageSize=2", None).unwrap();
        assert_eq!(first["nextPageToken"], "2");
        let last = d
            .answer("v1/services", "pageSize=2&pageToken=2", None)
            .unwrap();
        assert_eq!(last["services"].as_array().unwrap().len(), 1);
        assert!(last.get("nextPageToken").is_none());
        assert_eq!(
            d.answer("v1/clients", "", None).unwrap()["clients"][0]["oauth2ClientId"],
            "drive-cli"
        );
        assert_eq!(
            d.answer("v1/environment", "", None).unwrap()["environment"]["issuerUrl"],
            "http://idp"
        );
        assert!(d.answer("v1/other", "", None).is_none());
    }
}
