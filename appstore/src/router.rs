//! The instance router: requests for an instance arrive by host (`<id>.<apps-domain>`,
//! DOMAIN routing) or by path (`/instance/<id>/`, BASE_URL routing); the wrong form is
//! redirected (307) to the right one. Every request, websockets included, is authenticated
//! (bearer token or session cookie) and authorized by the instance's visibility before it
//! is proxied; the App Store's own cookies and the bearer token stay behind.
//!
//! Browsers signed in to the App Store reach a DOMAIN instance through a hand-off: the App
//! Store seals a one-minute ticket naming their session and the instance, and the instance's
//! host turns it into a cookie of its own (cookies of the App Store's host are not sent to
//! other hosts).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::{AppState, Problem, cookie, identify, redirect, session_caller, set_cookie};
use crate::authz::Caller;
use crate::instances::url_form;
use crate::proxy::Origin;
use crate::scheduler::Instance;
use crate::scheduler::runtime::Phase;
use crate::web::{self, LOGIN_COOKIE, SESSION_COOKIE};

/// The cookie that carries a browser's session on an instance's own host.
pub const INSTANCE_COOKIE: &str = "appstore_instance";
/// Where an instance's host takes a hand-off ticket.
const SESSION_PATH: &str = "/_appstore/session";
/// How long a hand-off ticket is good for.
pub const TICKET_TTL: Duration = Duration::from_secs(60);
const TICKET_CONTEXT: &str = "instance-ticket";
const COOKIE_CONTEXT: &str = "instance-cookie";

type Shared = Arc<AppState>;

/// Which form a request for an instance came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Domain,
    BaseUrl,
}

/// What a ticket or an instance cookie seals: a session for one instance.
#[derive(Serialize, Deserialize)]
struct Grant {
    sid: String,
    inst: String,
    exp: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn host_of(req: &Request) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// The instance id a host names under `domain`, if it does.
fn domain_instance<'a>(host: &'a str, domain: &str) -> Option<&'a str> {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label = name.strip_suffix(domain)?.strip_suffix('.')?;
    is_id(label).then_some(label)
}

fn is_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The instance id and the rest of a `/instance/<id>/…` path.
fn path_instance(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/instance/")?;
    let (id, tail) = rest.split_once('/').map_or((rest, ""), |(id, t)| (id, t));
    is_id(id).then_some((id, tail))
}

/// Middleware in front of the API: takes the requests that name an instance.
pub async fn route(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let host = host_of(&req).unwrap_or_default();
    if let Some(id) = domain_instance(&host, state.scheduler.apps_domain()) {
        let id = id.to_ascii_lowercase();
        return serve(&state, &id, Form::Domain, host, req).await;
    }
    if let Some((id, _)) = path_instance(req.uri().path()) {
        let id = id.to_ascii_lowercase();
        return serve(&state, &id, Form::BaseUrl, host, req).await;
    }
    next.run(req).await
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;margin:4em\"><h1>{t}</h1><p>{x}</p></body></html>\n",
        t = escape(title),
        x = escape(text)
    );
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

fn wants_html(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

fn path_and_query(req: &Request) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

async fn serve(state: &AppState, id: &str, form: Form, host: String, mut req: Request) -> Response {
    if req.method() == Method::CONNECT {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not forwarded to instances\n",
        )
            .into_response();
    }
    let instance = match state.scheduler.routed(id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such app instance",
                "This instance does not exist or was terminated.",
            );
        }
        Err(e) => return Problem::from(e).into_response(),
    };
    let wanted = if instance.routing_mode == "BASE_URL" {
        Form::BaseUrl
    } else {
        Form::Domain
    };
    if wanted != form {
        let url = state.scheduler.url(&instance);
        let pq = path_and_query(&req);
        let location = match form {
            // `/instance/<id>/rest` → `<id>.<domain>/rest`
            Form::BaseUrl => {
                let prefix = format!("/instance/{id}");
                let rest = pq
                    .strip_prefix(&prefix)
                    .unwrap_or("/")
                    .trim_start_matches('/');
                format!("{url}{rest}")
            }
            // `<id>.<domain>/rest` → `/instance/<id>/rest`
            Form::Domain => format!("{}{}", url.trim_end_matches('/'), pq),
        };
        let mut r = redirect(&location);
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        return r;
    }
    if form == Form::Domain && req.uri().path() == SESSION_PATH {
        return take_ticket(state, &instance, &req);
    }
    let (caller, by_bearer) = match caller_of(state, &instance, form, req.headers()).await {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    if !state.scheduler.may_open(&caller, &instance) {
        return refuse(state, &instance, form, &caller, &req);
    }
    let Some(target) = state.scheduler.runtime().endpoint(&instance.id).await else {
        let status = state.scheduler.status(&instance).await;
        let text = match (&status.phase, &status.reason) {
            (Phase::Failed, Some(why)) => format!("{}: {why}", status.phase.describe()),
            (phase, _) => format!("{}…", phase.describe()),
        };
        let mut r = page(StatusCode::SERVICE_UNAVAILABLE, &instance.app_title, &text);
        if status.phase != Phase::Suspended {
            r.headers_mut()
                .insert(header::REFRESH, HeaderValue::from_static("2"));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        return r;
    };
    let headers = req.headers_mut();
    clean_request(headers, by_bearer);
    if let Caller::User(u) = &caller {
        if let Ok(v) = HeaderValue::from_str(u.principal.display_name()) {
            headers.insert("x-appstore-user", v);
        }
        if let Ok(v) = HeaderValue::from_str(&u.principal.subject) {
            headers.insert("x-appstore-subject", v);
        }
    }
    let origin = Origin {
        client: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
        host,
        proto: state
            .scheduler
            .public_url()
            .split("://")
            .next()
            .unwrap_or("http")
            .to_owned(),
    };
    let mut response = state.proxy.forward(&target, req, &origin).await;
    drop_our_cookies(response.headers_mut());
    response
}

/// Removes `Set-Cookie` headers by which an app would set or overwrite the App Store's own
/// cookies (on a BASE_URL instance the App Store's host is the app's host).
fn drop_our_cookies(headers: &mut HeaderMap) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v
                .to_str()
                .ok()
                .and_then(|c| c.split_once('='))
                .map(|(n, _)| n.trim());
            !name.is_some_and(|n| [SESSION_COOKIE, LOGIN_COOKIE, INSTANCE_COOKIE].contains(&n))
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// Drops what belongs to the App Store: its cookies, a bearer token it checked, and any
/// identity headers a client made up.
fn clean_request(headers: &mut HeaderMap, by_bearer: bool) {
    if by_bearer {
        headers.remove(header::AUTHORIZATION);
    }
    headers.remove("x-appstore-user");
    headers.remove("x-appstore-subject");
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            let name = c.split_once('=').map_or(*c, |(n, _)| n);
            !c.is_empty() && ![SESSION_COOKIE, LOGIN_COOKIE, INSTANCE_COOKIE].contains(&name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Who sends a request to an instance, and whether a bearer token said so.
async fn caller_of(
    state: &AppState,
    instance: &Instance,
    form: Form,
    headers: &HeaderMap,
) -> Result<(Caller, bool), Problem> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer "));
    if bearer {
        return identify(state, headers).await.map(|(c, _)| (c, true));
    }
    // Other Authorization schemes belong to the app: only our cookie counts.
    let (cookie, context) = match form {
        Form::BaseUrl => {
            return match cookie(headers, SESSION_COOKIE) {
                Some(sid) => session_caller(state, sid).await.map(|(c, _)| (c, false)),
                None => Ok((Caller::Anonymous, false)),
            };
        }
        Form::Domain => (cookie(headers, INSTANCE_COOKIE), COOKIE_CONTEXT),
    };
    match cookie.and_then(|sealed| open_grant(state, context, sealed, instance)) {
        Some(g) => session_caller(state, &g.sid).await.map(|(c, _)| (c, false)),
        None => Ok((Caller::Anonymous, false)),
    }
}

/// The unexpired grant for `instance` that `sealed` (a ticket or an instance cookie sealed
/// for `context`) holds.
fn open_grant(state: &AppState, context: &str, sealed: &str, instance: &Instance) -> Option<Grant> {
    let grant: Grant = serde_json::from_slice(&state.tickets.open(context, sealed)?).ok()?;
    (grant.inst == instance.id && grant.exp > unix_now()).then_some(grant)
}

fn refuse(
    state: &AppState,
    instance: &Instance,
    form: Form,
    caller: &Caller,
    req: &Request,
) -> Response {
    match caller {
        Caller::User(_) => page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "You may not open this app instance.",
        ),
        Caller::Anonymous if wants_html(req) => {
            let back = path_and_query(req);
            let target = match form {
                Form::BaseUrl => format!("/auth/login?returnTo={}", encode(&back)),
                Form::Domain => format!(
                    "{}/auth/instance/{}?path={}",
                    state.scheduler.public_url(),
                    instance.id,
                    encode(&back)
                ),
            };
            redirect(&target)
        }
        Caller::Anonymous => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in to open this app instance",
        )
        .into_response(),
    }
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A local path to return to: one leading `/`, never `//host`.
fn local_path(p: Option<&str>) -> String {
    match p {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Query of [`hand_off`].
#[derive(Deserialize)]
pub struct HandOffQuery {
    /// Where to go on the instance.
    path: Option<String>,
}

/// `GET /auth/instance/{id}` on the App Store's host: hands the browser's session to a
/// DOMAIN instance's host with a sealed one-minute ticket, signing in first if needed.
pub async fn hand_off(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HandOffQuery>,
    headers: HeaderMap,
) -> Response {
    let path = local_path(q.path.as_deref());
    let session = cookie(&headers, SESSION_COOKIE).map(str::to_owned);
    let here = format!("/auth/instance/{id}?path={}", encode(&path));
    let Some(sid) = session else {
        return redirect(&format!("/auth/login?returnTo={}", encode(&here)));
    };
    match session_caller(&state, &sid).await {
        Ok((Caller::User(_), _)) => {}
        Ok((Caller::Anonymous, _)) => {
            return redirect(&format!("/auth/login?returnTo={}", encode(&here)));
        }
        Err(p) => return p.into_response(),
    }
    let instance = match state.scheduler.get(&id).await {
        Ok(Some(i)) if i.routing_mode != "BASE_URL" => i,
        Ok(_) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such app instance",
                "This instance does not exist or was terminated.",
            );
        }
        Err(e) => return Problem::from(e).into_response(),
    };
    let grant = Grant {
        sid,
        inst: instance.id.clone(),
        exp: unix_now() + TICKET_TTL.as_secs(),
    };
    let ticket = state.tickets.seal(
        TICKET_CONTEXT,
        &serde_json::to_vec(&grant).unwrap_or_default(),
    );
    let url = state.scheduler.url(&instance);
    redirect(&format!(
        "{}{SESSION_PATH}?ticket={}&path={}",
        url.trim_end_matches('/'),
        encode(&ticket),
        encode(&path)
    ))
}

/// `GET /_appstore/session` on an instance's host: a valid ticket becomes the instance cookie.
fn take_ticket(state: &AppState, instance: &Instance, req: &Request) -> Response {
    let query = url_form(req.uri().query().unwrap_or("").as_bytes());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let grant = param("ticket").and_then(|t| open_grant(state, TICKET_CONTEXT, t, instance));
    let Some(grant) = grant else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in link expired",
            "Open the app again from the App Store.",
        );
    };
    let lifetime = 12 * 3600;
    let cookie_grant = Grant {
        exp: unix_now() + lifetime,
        ..grant
    };
    let sealed = state.tickets.seal(
        COOKIE_CONTEXT,
        &serde_json::to_vec(&cookie_grant).unwrap_or_default(),
    );
    let mut r = redirect(&local_path(param("path")));
    set_cookie(
        &mut r,
        &web::cookie(INSTANCE_COOKIE, &sealed, "/", lifetime, state.cookie_secure),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn hosts_and_paths_name_instances() {
        assert_eq!(
            domain_instance(&format!("{ID}.localhost:8080"), "localhost"),
            Some(ID)
        );
        assert_eq!(
            domain_instance(&format!("{ID}.apps.example.com"), "apps.example.com"),
            Some(ID)
        );
        assert_eq!(domain_instance("localhost:8080", "localhost"), None);
        assert_eq!(
            domain_instance(&format!("x{ID}.localhost"), "localhost"),
            None
        );
        assert_eq!(
            domain_instance(&format!("{ID}.evil.com"), "localhost"),
            None
        );
        assert_eq!(
            path_instance(&format!("/instance/{ID}/_s/")),
            Some((ID, "_s/"))
        );
        assert_eq!(path_instance(&format!("/instance/{ID}")), Some((ID, "")));
        assert_eq!(path_instance("/instance/../x"), None);
        assert_eq!(path_instance("/api/v1/apps"), None);
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(local_path(Some("/x?y")), "/x?y");
        assert_eq!(local_path(Some("//evil.com")), "/");
        assert_eq!(local_path(Some("https://evil.com")), "/");
        assert_eq!(local_path(Some("/\\evil.com")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn apps_cannot_set_the_app_stores_cookies() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("appstore_session=evil; Path=/"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static("oidcsession=1; Path=/x"),
        );
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_static(" appstore_instance=x"),
        );
        drop_our_cookies(&mut h);
        let left: Vec<_> = h.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(left, ["oidcsession=1; Path=/x"]);
    }

    #[test]
    fn app_store_cookies_and_identity_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; appstore_session=s; b=2"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("appstore_instance=x"),
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert("x-appstore-user", HeaderValue::from_static("forged"));
        clean_request(&mut h, true);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        assert!(!h.contains_key(header::AUTHORIZATION));
        assert!(!h.contains_key("x-appstore-user"));
    }
}
