//! The authorization matrix of apps and tags: {owner, other full-access user, visitor,
//! admin, anonymous} × {PRIVATE, ALL_USERS, PUBLIC}, plus the visitor rule for tagged
//! ALL_USERS apps and the tag rules. Users come from the test OpenID provider: alice
//! (owner) and bob are full-access (`app-user`), carol is full-access with `curator`, dave
//! is admin (`drive-admin`), erin is a visitor (`guest`).

mod common;

use common::{Db, Stack, bundle};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Actor {
    Owner,
    Other,
    Visitor,
    Admin,
    Anonymous,
}

impl Actor {
    fn user(self) -> Option<&'static str> {
        match self {
            Actor::Owner => Some("alice"),
            Actor::Other => Some("bob"),
            Actor::Visitor => Some("erin"),
            Actor::Admin => Some("dave"),
            Actor::Anonymous => None,
        }
    }
}

const ACTORS: [Actor; 5] = [
    Actor::Owner,
    Actor::Other,
    Actor::Visitor,
    Actor::Admin,
    Actor::Anonymous,
];

/// Whether `actor` sees an app with `visibility` (`tagged`: it carries a tag whose visitor
/// roles include erin's `guest`).
fn sees(actor: Actor, visibility: &str, tagged: bool) -> bool {
    match actor {
        Actor::Owner | Actor::Admin => true,
        Actor::Other => visibility != "PRIVATE",
        Actor::Visitor => visibility == "PUBLIC" || (visibility == "ALL_USERS" && tagged),
        Actor::Anonymous => visibility == "PUBLIC",
    }
}

/// The status of an owner-or-admin operation.
fn manage_status(actor: Actor, visible: bool, ok: StatusCode) -> StatusCode {
    if !visible {
        StatusCode::NOT_FOUND
    } else if matches!(actor, Actor::Owner | Actor::Admin) {
        ok
    } else if actor == Actor::Anonymous {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_tags_follow_the_authorization_rules() {
    let stack = Stack::start(Db::Sqlite).await;

    // dave (admin) makes a tag that lets guests see ALL_USERS apps, and a curated one.
    let (status, _) = stack
        .call(
            Method::POST,
            "/api/v1/tags",
            Some("dave"),
            Some(json!({"name": "for-guests", "visitorRoles": ["guest"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = stack
        .call(
            Method::POST,
            "/api/v1/tags",
            Some("dave"),
            Some(json!({"name": "curated", "color": "#ff8800", "adminRoles": ["curator"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = stack
        .call(
            Method::POST,
            "/api/v1/tags",
            Some("dave"),
            Some(json!({"name": "curated"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("tag-exists"))
    );

    // alice owns one app of each visibility, and one ALL_USERS app tagged for guests.
    let mut apps = Vec::new();
    for (i, (visibility, tagged)) in [
        ("PRIVATE", false),
        ("ALL_USERS", false),
        ("PUBLIC", false),
        ("ALL_USERS", true),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, app) = stack
            .import(
                "alice",
                bundle("ai.h2o.test.matrix", &format!("1.0.{i}")),
                Some(visibility),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        let id = app["id"].as_str().unwrap().to_owned();
        if tagged {
            let (status, body) = stack
                .call(
                    Method::PUT,
                    &format!("/api/v1/apps/{id}/tags/for-guests"),
                    Some("alice"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        }
        apps.push((id, visibility, tagged));
    }

    let mut cells = 0;
    for actor in ACTORS {
        let who = actor.user();
        let (status, listed) = stack
            .call(Method::GET, "/api/v1/apps?pageSize=100", who, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{actor:?} lists");
        let listed: Vec<&str> = listed["apps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        for (id, visibility, tagged) in &apps {
            let visible = sees(actor, visibility, *tagged);
            let case = format!(
                "{actor:?} on {visibility}{}",
                if *tagged { " (tagged)" } else { "" }
            );
            assert_eq!(listed.contains(&id.as_str()), visible, "{case}: listing");
            let read = if visible {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            for path in ["", "/icon", "/long-description"] {
                let (status, _) = stack
                    .call(Method::GET, &format!("/api/v1/apps/{id}{path}"), who, None)
                    .await;
                assert_eq!(status, read, "{case}: GET {path}");
            }
            let (status, _) = stack
                .call(Method::GET, &format!("/api/v1/apps/{id}/bundle"), who, None)
                .await;
            assert_eq!(
                status,
                manage_status(actor, visible, StatusCode::OK),
                "{case}: download"
            );
            let (status, _) = stack
                .call(
                    Method::PATCH,
                    &format!("/api/v1/apps/{id}"),
                    who,
                    Some(json!({"visibility": visibility})),
                )
                .await;
            assert_eq!(
                status,
                manage_status(actor, visible, StatusCode::OK),
                "{case}: update"
            );
            if !matches!(actor, Actor::Owner | Actor::Admin) {
                let (status, _) = stack
                    .call(Method::DELETE, &format!("/api/v1/apps/{id}"), who, None)
                    .await;
                assert_eq!(
                    status,
                    manage_status(actor, visible, StatusCode::NO_CONTENT),
                    "{case}: delete"
                );
            }
            // Tag rules: `curated` needs the curator role (or admin), on an app one sees.
            let tag_ok = match actor {
                Actor::Admin => StatusCode::NO_CONTENT,
                Actor::Anonymous => StatusCode::UNAUTHORIZED,
                _ => StatusCode::FORBIDDEN,
            };
            let want = if visible {
                tag_ok
            } else {
                StatusCode::NOT_FOUND
            };
            let (status, _) = stack
                .call(
                    Method::PUT,
                    &format!("/api/v1/apps/{id}/tags/curated"),
                    who,
                    None,
                )
                .await;
            assert_eq!(status, want, "{case}: assign curated");
            cells += 1;
        }
        // Imports: full-access users and admins; visitors are refused, anonymous must sign in.
        let import_want = match actor {
            Actor::Visitor => StatusCode::FORBIDDEN,
            Actor::Anonymous => StatusCode::UNAUTHORIZED,
            _ => StatusCode::CREATED,
        };
        let status = match who {
            Some(user) => {
                stack
                    .import(
                        user,
                        bundle("ai.h2o.test.importer", &format!("0.0.{}", actor as u8)),
                        None,
                    )
                    .await
                    .0
            }
            None => {
                stack
                    .import_with_token("", bundle("ai.h2o.test.importer", "9.9.9"), None)
                    .await
                    .0
            }
        };
        let status = if who.is_none() {
            // An empty bearer token is not anonymous: it is a bad token.
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let response = stack
                .http
                .post(format!("{}/api/v1/apps", stack.url))
                .body(bundle("ai.h2o.test.importer", "9.9.9"))
                .send()
                .await
                .unwrap();
            response.status()
        } else {
            status
        };
        assert_eq!(status, import_want, "{actor:?}: import");
        // Tags: full-access users list them; only admins create them.
        let list_want = match actor {
            Actor::Visitor => StatusCode::FORBIDDEN,
            Actor::Anonymous => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        };
        assert_eq!(
            stack.call(Method::GET, "/api/v1/tags", who, None).await.0,
            list_want,
            "{actor:?}: list tags"
        );
        let create_want = match actor {
            Actor::Admin => StatusCode::CREATED,
            Actor::Anonymous => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        let name = format!("t-{}", actor as u8);
        let (status, _) = stack
            .call(
                Method::POST,
                "/api/v1/tags",
                who,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, create_want, "{actor:?}: create tag");
    }
    assert_eq!(cells, 20);

    // carol holds `curator`: she may assign `curated` to an app she sees; bob may assign a
    // tag without admin roles; PUBLIC needs public mode (on here) and PRIVATE hides again.
    let all_users = &apps[1].0;
    assert_eq!(
        stack
            .call(
                Method::PUT,
                &format!("/api/v1/apps/{all_users}/tags/curated"),
                Some("carol"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        stack
            .call(
                Method::PUT,
                &format!("/api/v1/apps/{all_users}/tags/t-3"),
                Some("bob"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, app) = stack
        .call(
            Method::GET,
            &format!("/api/v1/apps/{all_users}"),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(app["tags"], json!(["curated", "t-3"]));
    let (_, tagged) = stack
        .call(Method::GET, "/api/v1/apps?tag=curated", Some("bob"), None)
        .await;
    // dave put `curated` on all four; bob sees three of them.
    assert_eq!(tagged["apps"].as_array().unwrap().len(), 3);
    assert_eq!(
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/apps/{all_users}/tags/curated"),
                Some("bob"),
                None
            )
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/apps/{all_users}/tags/curated"),
                Some("carol"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/apps/{all_users}/tags/curated"),
                Some("carol"),
                None
            )
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Owner and admin delete.
    assert_eq!(
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/apps/{}", apps[0].0),
                Some("alice"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        stack
            .call(
                Method::DELETE,
                &format!("/api/v1/apps/{}", apps[2].0),
                Some("dave"),
                None
            )
            .await
            .0,
        StatusCode::NO_CONTENT
    );

    // A forged token is refused, not treated as anonymous.
    let forged = format!("{}x", stack.token("alice").await);
    let response = stack
        .http
        .get(format!("{}/api/v1/me", stack.url))
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_visibility_needs_public_mode() {
    let stack = Stack::start_with(Db::Sqlite, |a| a.public_mode_enabled = Some(false)).await;
    let (status, body) = stack
        .import(
            "alice",
            bundle("ai.h2o.test.public", "1.0.0"),
            Some("PUBLIC"),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("public-mode-disabled"))
    );
    let (status, app) = stack
        .import(
            "alice",
            bundle("ai.h2o.test.public", "1.0.0"),
            Some("ALL_USERS"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = app["id"].as_str().unwrap();
    let (status, body) = stack
        .call(
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some("alice"),
            Some(json!({"visibility": "PUBLIC"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("public-mode-disabled"))
    );
    let (status, body) = stack
        .call(
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some("alice"),
            Some(json!({"visibility": "EVERYONE"})),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("visibility"))
    );
    stack.stop().await;
}
