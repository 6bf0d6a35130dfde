//! Who a verified token speaks for, and how an issuer's claims map onto that.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A signed-in user as every component sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The issuer that vouched for the user.
    #[serde(rename = "i")]
    pub issuer: String,
    /// The issuer's stable subject identifier (`sub`).
    #[serde(rename = "s")]
    pub subject: String,
    /// Human-readable user name, when the token carries one.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// E-mail address, when the token carries one.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Group names, without Keycloak's leading `/`.
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Role names.
    #[serde(rename = "r", default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the principal belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// A name for logs and listings: the user name, else the subject.
    pub fn display_name(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.subject)
    }
}

/// Where an issuer puts the identity claims: dotted paths into the token's JSON
/// (`realm_access.roles` reaches Keycloak's realm roles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMapping {
    /// Path of the user name claim.
    pub username: String,
    /// Path of the e-mail claim.
    pub email: String,
    /// Path of the groups claim (a string or a list of strings).
    pub groups: String,
    /// Path of the roles claim (a string or a list of strings).
    pub roles: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            username: "preferred_username".into(),
            email: "email".into(),
            groups: "groups".into(),
            roles: "realm_access.roles".into(),
        }
    }
}

impl ClaimMapping {
    /// The principal that `claims` from `issuer` describe; `None` without a usable `sub`.
    pub fn principal(&self, issuer: &str, claims: &Value) -> Option<Principal> {
        let subject = claims.get("sub")?.as_str().filter(|s| !s.is_empty())?;
        let text = |path: &str| {
            lookup(claims, path)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(Principal {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            username: text(&self.username),
            email: text(&self.email),
            groups: strings(lookup(claims, &self.groups))
                .into_iter()
                .map(|g| g.trim_start_matches('/').to_owned())
                .filter(|g| !g.is_empty())
                .collect(),
            roles: strings(lookup(claims, &self.roles)),
        })
    }
}

fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |v, part| v.as_object()?.get(part))
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keycloak_shaped_claims() {
        let claims = json!({
            "sub": "u-1", "preferred_username": "alice", "email": "a@x",
            "groups": ["/team-a", "team-b", 7, ""], "realm_access": {"roles": ["drive-admin"]}
        });
        let p = ClaimMapping::default()
            .principal("https://idp", &claims)
            .unwrap();
        assert_eq!(p.subject, "u-1");
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert_eq!(p.groups, ["team-a", "team-b"]);
        assert!(p.has_role("drive-admin"));
        assert!(p.in_group("team-a") && !p.in_group("/team-a"));
    }

    #[test]
    fn configurable_paths_and_missing_subject() {
        let mapping = ClaimMapping {
            username: "name".into(),
            roles: "roles".into(),
            ..ClaimMapping::default()
        };
        let p = mapping
            .principal("i", &json!({"sub": "s", "name": "N", "roles": "admin"}))
            .unwrap();
        assert_eq!(p.display_name(), "N");
        assert_eq!(p.roles, ["admin"]);
        assert!(p.groups.is_empty() && p.email.is_none());
        assert!(mapping.principal("i", &json!({"sub": ""})).is_none());
        assert!(mapping.principal("i", &json!({"name": "x"})).is_none());
    }
}
