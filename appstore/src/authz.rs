//! Who a caller is and what the App Store lets them do, after H2O AI Cloud's rules: admins
//! read and write every app and tag; full-access users import apps, see `ALL_USERS` apps
//! and manage their own; visitors see only `PUBLIC` apps and `ALL_USERS` apps carrying a tag
//! that names one of their roles; anonymous callers see `PUBLIC` apps. Which apps a caller
//! sees is decided in one SQL condition ([`crate::repository`]); the checks here decide
//! what they may change.

use shared_identity::Principal;

use crate::repository::{AppRecord, Tag};

/// Roles that mean something to the App Store.
#[derive(Debug, Clone)]
pub struct Roles {
    /// The admin role.
    pub admin: String,
    /// The full-access role; empty means every signed-in user.
    pub full_access: String,
}

/// The signed-in user behind a request.
#[derive(Debug, Clone)]
pub struct User {
    /// Who they are.
    pub principal: Principal,
    /// Whether they hold the admin role.
    pub admin: bool,
    /// Whether they have full access (admins always do).
    pub full_access: bool,
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// A verified user.
    User(User),
}

impl Roles {
    /// The caller a verified principal becomes.
    pub fn caller(&self, principal: Principal) -> Caller {
        let admin = principal.has_role(&self.admin);
        let full_access =
            admin || self.full_access.is_empty() || principal.has_role(&self.full_access);
        Caller::User(User {
            principal,
            admin,
            full_access,
        })
    }
}

/// Why a caller may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// They must sign in first.
    SignIn,
    /// Signing in would not help.
    Forbidden,
}

impl Caller {
    /// The user, or [`Denied::SignIn`].
    pub fn user(&self) -> Result<&User, Denied> {
        match self {
            Caller::Anonymous => Err(Denied::SignIn),
            Caller::User(u) => Ok(u),
        }
    }

    /// A full-access user (or admin), as importing and tagging need.
    pub fn full_access(&self) -> Result<&User, Denied> {
        let user = self.user()?;
        if user.full_access {
            Ok(user)
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// An admin.
    pub fn admin(&self) -> Result<&User, Denied> {
        let user = self.user()?;
        if user.admin {
            Ok(user)
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// The owner of `app` or an admin: who may update, delete and download it.
    pub fn manager_of(&self, app: &AppRecord) -> Result<&User, Denied> {
        let user = self.user()?;
        if user.admin || user.principal.subject == app.owner_subject {
            Ok(user)
        } else {
            Err(Denied::Forbidden)
        }
    }

    /// Someone who may put `tag` on apps or take it off: admins, and full-access users
    /// holding one of the tag's admin roles (any full-access user when it names none).
    pub fn tagger_of(&self, tag: &Tag) -> Result<&User, Denied> {
        let user = self.full_access()?;
        let allowed = user.admin
            || tag.admin_roles.is_empty()
            || tag.admin_roles.iter().any(|r| user.principal.has_role(r));
        if allowed {
            Ok(user)
        } else {
            Err(Denied::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str, roles: &[&str]) -> Principal {
        Principal {
            issuer: "https://issuer".into(),
            subject: sub.into(),
            username: Some(sub.into()),
            email: None,
            groups: vec![],
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn roles_make_admins_full_access_users_and_visitors() {
        let open = Roles {
            admin: "admin".into(),
            full_access: String::new(),
        };
        let Caller::User(u) = open.caller(principal("a", &[])) else {
            panic!()
        };
        assert!(u.full_access && !u.admin);
        let gated = Roles {
            admin: "admin".into(),
            full_access: "app-user".into(),
        };
        let visitor = gated.caller(principal("v", &["other"]));
        assert_eq!(visitor.full_access().unwrap_err(), Denied::Forbidden);
        let admin = gated.caller(principal("root", &["admin"]));
        assert!(admin.full_access().is_ok() && admin.admin().is_ok());
        assert_eq!(Caller::Anonymous.full_access().unwrap_err(), Denied::SignIn);
    }

    #[test]
    fn tag_admin_roles_limit_who_assigns() {
        let roles = Roles {
            admin: "admin".into(),
            full_access: String::new(),
        };
        let mut tag = Tag::default();
        let curator = roles.caller(principal("c", &["curator"]));
        let user = roles.caller(principal("u", &[]));
        assert!(user.tagger_of(&tag).is_ok());
        tag.admin_roles = vec!["curator".into()];
        assert!(curator.tagger_of(&tag).is_ok());
        assert_eq!(user.tagger_of(&tag).unwrap_err(), Denied::Forbidden);
        assert!(
            roles
                .caller(principal("r", &["admin"]))
                .tagger_of(&tag)
                .is_ok()
        );
    }
}
