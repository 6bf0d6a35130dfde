//! A fake Kubernetes API server for controller tests. It records every request and serves
//! Deployments (with their scale subresource), Services, Secrets, PersistentVolumeClaims and
//! Pods (with logs) the way kube-apiserver does for the subset a controller uses, so that
//! `kube::Api<..>` calls work against it unchanged. A fake controller runs one pod per
//! Deployment with one or more replicas, in the [`PodState`] a test sets for it.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Key = (String, String, String);

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// `GET`, `POST`, `PATCH`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string, `""` when there is none.
    pub query: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
}

/// The state of the pod the fake controller runs for a Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PodState {
    /// Running and ready (the default).
    #[default]
    Ready,
    /// Running, not ready yet.
    Starting,
    /// Running with its containers waiting; `CrashLoopBackOff` adds restarts and a last state.
    Waiting {
        /// The waiting reason, e.g. `CrashLoopBackOff` or `ImagePullBackOff`.
        reason: String,
        /// The waiting message.
        message: String,
    },
    /// Not scheduled: phase `Pending`, condition `PodScheduled=False` (`Unschedulable`).
    Pending,
}

/// A running fake API server; the server stops when this is dropped.
pub struct KubeApi {
    url: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl KubeApi {
    /// Starts a fake API server on `127.0.0.1` at a free port.
    pub async fn start() -> KubeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Kubernetes API");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            // Connections live in the set, so aborting the server ends them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                while connections.try_join_next().is_some() {}
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&shared);
                let service = hyper::service::service_fn(move |r| handle(Arc::clone(&state), r));
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        KubeApi { url, state, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The stored objects of `resource` (e.g. `"deployments"`) in all namespaces.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        let s = lock(&self.state);
        s.objects
            .iter()
            .filter(|(k, _)| k.0 == resource)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The stored object `namespace/name` of `resource`.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .objects
            .get(&key(resource, namespace, name))
            .cloned()
    }

    /// The name of the pod the fake controller runs for `namespace/deployment`, if any.
    pub fn pod_name(&self, namespace: &str, deployment: &str) -> Option<String> {
        let s = lock(&self.state);
        s.controlled
            .get(&(namespace.to_owned(), deployment.to_owned()))
            .map(|(p, _)| p.clone())
    }

    /// Stores `object` as if created by kubectl (same defaulting as POST), replacing any.
    pub fn insert(&self, resource: &str, namespace: &str, object: Value) {
        let kind = kind_of(resource).expect("a resource the fake serves");
        let mut s = lock(&self.state);
        let object = s.create(kind, namespace, object);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_owned();
        s.objects.insert(key(resource, namespace, &name), object);
        s.reconcile();
    }

    /// Deletes an object as if by kubectl (a Deployment's pod comes back under a new name).
    pub fn remove(&self, resource: &str, namespace: &str, name: &str) {
        let mut s = lock(&self.state);
        s.objects.remove(&key(resource, namespace, name));
        s.reconcile();
    }

    /// Fails the next `method` on `resource` (or `"pods/log"`, `"deployments/scale"`) once.
    pub fn fail_next(&self, method: &str, resource: &str, code: u16, reason: &str) {
        let failure = (
            method.to_owned(),
            resource.to_owned(),
            code,
            reason.to_owned(),
        );
        lock(&self.state).failures.push_back(failure);
    }

    /// Makes every response wait `delay` first; `Duration::ZERO` to stop.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Sets the state of the pod run for `deployment` (in any namespace).
    pub fn set_pod(&self, deployment: &str, state: PodState) {
        let mut s = lock(&self.state);
        s.pod_states.insert(deployment.to_owned(), state);
        s.reconcile();
    }

    /// Sets the logs of pods named `pod_prefix*` (longest prefix wins; appends stream to followers).
    pub fn set_log(&self, pod_prefix: &str, current: &str, previous: &str) {
        let logs = (current.to_owned(), previous.to_owned());
        lock(&self.state).logs.insert(pod_prefix.to_owned(), logs);
    }
}

struct Kind {
    resource: &'static str,
    group: &'static str,
    api_version: &'static str,
    kind: &'static str,
}

const KINDS: [Kind; 5] = [
    Kind {
        resource: "deployments",
        group: "apps",
        api_version: "apps/v1",
        kind: "Deployment",
    },
    Kind {
        resource: "services",
        group: "",
        api_version: "v1",
        kind: "Service",
    },
    Kind {
        resource: "secrets",
        group: "",
        api_version: "v1",
        kind: "Secret",
    },
    Kind {
        resource: "persistentvolumeclaims",
        group: "",
        api_version: "v1",
        kind: "PersistentVolumeClaim",
    },
    Kind {
        resource: "pods",
        group: "",
        api_version: "v1",
        kind: "Pod",
    },
];

fn kind_of(resource: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.resource == resource)
}

impl Kind {
    fn qualified(&self) -> String {
        match self.group {
            "" => self.resource.to_owned(),
            g => format!("{}.{g}", self.resource),
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    objects: BTreeMap<Key, Value>,
    failures: VecDeque<(String, String, u16, String)>,
    delay: Duration,
    pod_states: BTreeMap<String, PodState>,
    logs: BTreeMap<String, (String, String)>,
    /// (namespace, deployment) -> (pod name, the template the pod was made from).
    controlled: BTreeMap<(String, String), (String, Value)>,
    version: u64,
}

enum Reply {
    Json(u16, Value),
    Text(u16, String),
    Follow { namespace: String, pod: String },
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key(resource: &str, namespace: &str, name: &str) -> Key {
    (resource.to_owned(), namespace.to_owned(), name.to_owned())
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let raw = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = serde_json::from_slice::<Value>(&raw).ok();
    let (reply, delay) = {
        let mut s = lock(&state);
        let r = Recorded {
            method,
            path,
            query,
            content_type,
            body,
        };
        s.requests.push(r.clone());
        let reply = s.serve(
            &r.method,
            &r.path,
            &r.query,
            r.content_type.as_deref(),
            r.body,
        );
        s.reconcile();
        (reply, s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (code, mime, body) = match reply {
        Reply::Json(code, v) => (
            code,
            "application/json",
            Full::new(Bytes::from(v.to_string())).boxed_unsync(),
        ),
        Reply::Text(code, t) => (code, "text/plain", Full::new(Bytes::from(t)).boxed_unsync()),
        Reply::Follow { namespace, pod } => (200, "text/plain", follow(state, namespace, pod)),
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(mime));
    Ok(response)
}

/// Streams the pod's current log, then what is appended, until the pod goes or 2 s pass.
fn follow(state: Arc<Mutex<State>>, namespace: String, pod: String) -> Body {
    let deadline = Instant::now() + Duration::from_secs(2);
    let chunks = futures::stream::unfold(String::new(), move |sent| {
        let state = Arc::clone(&state);
        let (namespace, pod) = (namespace.clone(), pod.clone());
        async move {
            loop {
                let (alive, current) = {
                    let s = lock(&state);
                    (
                        s.objects.contains_key(&key("pods", &namespace, &pod)),
                        s.log_for(&pod).0,
                    )
                };
                if let Some(extra) = current.strip_prefix(sent.as_str())
                    && !extra.is_empty()
                {
                    return Some((Bytes::from(extra.to_owned()), current));
                }
                if !alive || Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    StreamBody::new(chunks.map(|b| Ok(Frame::data(b)))).boxed_unsync()
}

struct Route {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<&'static str>,
}

fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "apps", "v1", rest @ ..] => ("apps", rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] if namespace.is_some() => (*r, Some((*n).to_owned()), None),
        [r, n, s] if namespace.is_some() => (*r, Some((*n).to_owned()), Some(*s)),
        _ => return None,
    };
    let kind = KINDS
        .iter()
        .find(|k| k.resource == resource && k.group == group)?;
    let sub = match (resource, sub) {
        (_, None) => None,
        ("pods", Some("log")) => Some("log"),
        ("deployments", Some("scale")) => Some("scale"),
        _ => return None,
    };
    Some(Route {
        kind,
        namespace,
        name,
        sub,
    })
}

fn status(code: u16, reason: &str, message: &str, details: Value) -> Reply {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    if !details.is_null() {
        s["details"] = details;
    }
    Reply::Json(code, s)
}

fn details(kind: &Kind, name: &str) -> Value {
    let mut d = json!({"kind": kind.resource});
    if !kind.group.is_empty() {
        d["group"] = json!(kind.group);
    }
    if !name.is_empty() {
        d["name"] = json!(name);
    }
    d
}

fn failure(kind: &Kind, code: u16, reason: &str, name: &str) -> Reply {
    let q = kind.qualified();
    let message = match reason {
        "NotFound" => format!("{q} \"{name}\" not found"),
        "AlreadyExists" => format!("{q} \"{name}\" already exists"),
        "Conflict" => format!(
            "Operation cannot be fulfilled on {q} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again"
        ),
        "InternalError" => "Internal error occurred: injected by the fake API server".to_owned(),
        _ => format!("{reason}: injected by the fake API server"),
    };
    status(code, reason, &message, details(kind, name))
}

fn not_allowed() -> Reply {
    let message = "the server does not allow this method on the requested resource";
    status(405, "MethodNotAllowed", message, Value::Null)
}

fn bad_request(message: &str) -> Reply {
    status(400, "BadRequest", message, Value::Null)
}

impl State {
    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    fn serve(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        ct: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let Some(r) = route(path) else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Value::Null,
            );
        };
        let params = query_pairs(query);
        let body_name = body
            .as_ref()
            .and_then(|b| Some(b.pointer("/metadata/name")?.as_str()?.to_owned()));
        let name = r.name.clone().or(body_name.clone()).unwrap_or_default();
        let resource = r.sub.map_or(r.kind.resource.to_owned(), |s| {
            format!("{}/{s}", r.kind.resource)
        });
        let injected = self
            .failures
            .iter()
            .position(|(m, res, ..)| m.eq_ignore_ascii_case(method) && *res == resource);
        if let Some((_, _, code, reason)) = injected.and_then(|i| self.failures.remove(i)) {
            return failure(r.kind, code, &reason, &name);
        }
        let kind = r.kind;
        let ct = ct.unwrap_or("").split(';').next().unwrap_or("").trim();
        let Some(ns) = r.namespace else {
            return match method {
                "GET" => self.list(kind, None, &params),
                _ => not_allowed(),
            };
        };
        let existing = self.objects.get(&key(kind.resource, &ns, &name)).cloned();
        let missing = || failure(kind, 404, "NotFound", &name);
        let applied = method == "PATCH" && ct == "application/apply-patch+yaml" && r.sub.is_none();
        // `dryRun=All`: answer as usual, then forget the change.
        let dry_run = params.get("dryRun").is_some_and(|v| v == "All");
        let saved = dry_run.then(|| (self.objects.clone(), self.controlled.clone(), self.version));
        let reply = match (method, r.name.is_some(), r.sub, existing) {
            ("GET", false, _, _) => self.list(kind, Some(&ns), &params),
            ("POST", false, _, _) => self.post(kind, &ns, body),
            ("DELETE", false, _, _) => self.delete_collection(kind, &ns, &params),
            (_, true, None | Some("scale"), None) if !applied => missing(),
            ("GET", true, None, Some(old)) => Reply::Json(200, old),
            ("PUT", true, None, Some(old)) => self.put(kind, &ns, &name, old, body),
            ("PATCH", true, None, Some(old)) => match body {
                None => bad_request("the body of the request was in an unknown format"),
                Some(p) => {
                    let mut new = old.clone();
                    match patch(&mut new, ct, &p) {
                        Ok(()) => Reply::Json(200, self.update(kind, &ns, &old, new)),
                        Err(e) => e,
                    }
                }
            },
            // Server-side apply creates what does not exist yet.
            ("PATCH", true, None, None) if body_name == r.name => self.post(kind, &ns, body),
            ("PATCH", true, None, None) => {
                bad_request("the name of the object does not match the name on the URL")
            }
            ("DELETE", true, None, Some(old)) => self.delete(kind, &ns, &name, old),
            ("GET", true, Some("scale"), Some(d)) => Reply::Json(200, scale(&d)),
            ("PUT" | "PATCH", true, Some("scale"), Some(d)) => {
                self.rescale(&ns, &name, d, method, ct, body)
            }
            ("GET", true, Some("log"), existing) => self.logs(&name, existing, &params),
            _ => not_allowed(),
        };
        if let Some((objects, controlled, version)) = saved {
            (self.objects, self.controlled, self.version) = (objects, controlled, version);
        }
        reply
    }

    fn list(&self, kind: &Kind, ns: Option<&str>, params: &BTreeMap<String, String>) -> Reply {
        let items = match self.matching(kind, ns, params) {
            Ok(items) => items,
            Err(e) => return e,
        };
        self.list_reply(kind, items)
    }

    /// A `<Kind>List` of `items` at the current resource version.
    fn list_reply(&self, kind: &Kind, items: Vec<Value>) -> Reply {
        let rv = self.version.to_string();
        Reply::Json(
            200,
            json!({"apiVersion": kind.api_version, "kind": format!("{}List", kind.kind),
            "metadata": {"resourceVersion": rv}, "items": items}),
        )
    }

    fn matching(
        &self,
        kind: &Kind,
        ns: Option<&str>,
        params: &BTreeMap<String, String>,
    ) -> Result<Vec<Value>, Reply> {
        let parse = |p: &str| {
            selector(params.get(p).map_or("", String::as_str)).map_err(|e| bad_request(&e))
        };
        let (labels, fields) = (parse("labelSelector")?, parse("fieldSelector")?);
        let objects = self
            .objects
            .iter()
            .filter(|(k, _)| k.0 == kind.resource && ns.is_none_or(|n| k.1 == n));
        Ok(objects
            .map(|(_, v)| v)
            .filter(|v| {
                labels
                    .iter()
                    .all(|r| r.matches(v["metadata"]["labels"].get(&r.key).and_then(Value::as_str)))
            })
            .filter(|v| {
                fields.iter().all(|r| {
                    let field = v.pointer(&format!("/{}", r.key.replace('.', "/")));
                    let field =
                        field.map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_owned));
                    r.matches(field.as_deref())
                })
            })
            .cloned()
            .collect())
    }

    fn validate(kind: &Kind, ns: &str, body: Option<Value>) -> Result<(String, Value), Reply> {
        let Some(obj) = body.filter(Value::is_object) else {
            return Err(bad_request(
                "the body of the request was in an unknown format",
            ));
        };
        for (field, want) in [("apiVersion", kind.api_version), ("kind", kind.kind)] {
            if let Some(got) = obj
                .get(field)
                .and_then(Value::as_str)
                .filter(|g| *g != want)
            {
                return Err(bad_request(&format!(
                    "the {field} in the data ({got}) does not match the expected {field} ({want})"
                )));
            }
        }
        if obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_some_and(|n| n != ns)
        {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        match obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(name) => Ok((name.to_owned(), obj)),
            None => {
                let cause = json!({"reason": "FieldValueRequired", "message": "Required value: name or generateName is required", "field": "metadata.name"});
                let message = format!(
                    "{}{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                    kind.kind,
                    if kind.group.is_empty() {
                        String::new()
                    } else {
                        format!(".{}", kind.group)
                    }
                );
                let mut details = json!({"kind": kind.kind, "causes": [cause]});
                if !kind.group.is_empty() {
                    details["group"] = json!(kind.group);
                }
                Err(status(422, "Invalid", &message, details))
            }
        }
    }

    fn post(&mut self, kind: &'static Kind, ns: &str, body: Option<Value>) -> Reply {
        let (name, obj) = match Self::validate(kind, ns, body) {
            Ok(v) => v,
            Err(e) => return e,
        };
        if self.objects.contains_key(&key(kind.resource, ns, &name)) {
            return failure(kind, 409, "AlreadyExists", &name);
        }
        let obj = self.create(kind, ns, obj);
        self.objects
            .insert(key(kind.resource, ns, &name), obj.clone());
        Reply::Json(201, obj)
    }

    fn put(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        old: Value,
        body: Option<Value>,
    ) -> Reply {
        let (body_name, obj) = match Self::validate(kind, ns, body) {
            Ok(v) => v,
            Err(e) => return e,
        };
        if body_name != name {
            return bad_request(&format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            ));
        }
        let rv = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        if rv.is_some_and(|rv| Some(rv) != old["metadata"]["resourceVersion"].as_str()) {
            return failure(kind, 409, "Conflict", name);
        }
        Reply::Json(200, self.update(kind, ns, &old, obj))
    }

    fn delete(&mut self, kind: &Kind, ns: &str, name: &str, old: Value) -> Reply {
        self.objects.remove(&key(kind.resource, ns, name));
        // Like kube-apiserver: pods, services and claims answer with the object, the rest
        // with a success Status.
        if matches!(
            kind.resource,
            "pods" | "services" | "persistentvolumeclaims"
        ) {
            return Reply::Json(200, old);
        }
        let mut details = details(kind, name);
        details["uid"] = old["metadata"]["uid"].clone();
        Reply::Json(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
        )
    }

    fn delete_collection(
        &mut self,
        kind: &Kind,
        ns: &str,
        params: &BTreeMap<String, String>,
    ) -> Reply {
        let items = match self.matching(kind, Some(ns), params) {
            Ok(items) => items,
            Err(e) => return e,
        };
        for item in &items {
            self.objects.remove(&key(
                kind.resource,
                ns,
                item["metadata"]["name"].as_str().unwrap_or(""),
            ));
        }
        self.list_reply(kind, items)
    }

    fn rescale(
        &mut self,
        ns: &str,
        name: &str,
        d: Value,
        method: &str,
        ct: &str,
        body: Option<Value>,
    ) -> Reply {
        let Some(body) = body else {
            return bad_request("the body of the request was in an unknown format");
        };
        let mut sc = scale(&d);
        if method == "PUT" {
            let rv = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str);
            if rv.is_some_and(|rv| Some(rv) != d["metadata"]["resourceVersion"].as_str()) {
                return failure(&KINDS[0], 409, "Conflict", name);
            }
            sc = body;
        } else if let Err(e) = patch(&mut sc, ct, &body) {
            return e;
        }
        let Some(replicas) = sc
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .filter(|n| *n >= 0)
        else {
            return status(
                422,
                "Invalid",
                "spec.replicas: Invalid value: must be greater than or equal to 0",
                Value::Null,
            );
        };
        let mut new = d.clone();
        new["spec"]["replicas"] = json!(replicas);
        let new = self.update(&KINDS[0], ns, &d, new);
        self.reconcile();
        Reply::Json(
            200,
            scale(
                self.objects
                    .get(&key("deployments", ns, name))
                    .unwrap_or(&new),
            ),
        )
    }

    fn logs(&self, pod: &str, existing: Option<Value>, params: &BTreeMap<String, String>) -> Reply {
        let Some(p) = existing else {
            return failure(&KINDS[4], 404, "NotFound", pod);
        };
        let containers: Vec<&str> = p["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let container = match params.get("container") {
            Some(c) if containers.contains(&c.as_str()) => c.clone(),
            Some(c) => return bad_request(&format!("container {c} is not valid for pod {pod}")),
            None if containers.len() > 1 => {
                let all = containers.join(" ");
                return bad_request(&format!(
                    "a container name must be specified for pod {pod}, choose one of: [{all}]"
                ));
            }
            None => containers.first().copied().unwrap_or("").to_owned(),
        };
        if p["status"]["phase"] == "Pending" {
            return bad_request(&format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ));
        }
        let (current, previous) = self.log_for(pod);
        let flag = |f: &str| params.get(f).is_some_and(|v| v == "true");
        if flag("previous") {
            if previous.is_empty() {
                return bad_request(&format!(
                    "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                ));
            }
            return Reply::Text(200, previous);
        }
        if flag("follow") {
            let namespace = p["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
            return Reply::Follow {
                namespace,
                pod: pod.to_owned(),
            };
        }
        Reply::Text(200, current)
    }

    fn log_for(&self, pod: &str) -> (String, String) {
        let found = self
            .logs
            .iter()
            .filter(|(k, _)| pod.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len());
        found.map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// The defaulting kube-apiserver does on create.
    fn create(&mut self, kind: &Kind, ns: &str, mut obj: Value) -> Value {
        defaults(kind, &mut obj, None);
        let rv = self.next_version();
        let meta = &mut obj["metadata"];
        meta["namespace"] = json!(ns);
        meta["uid"] = json!(uid());
        meta["resourceVersion"] = json!(rv);
        meta["creationTimestamp"] = json!(now());
        if let Some(m) = meta.as_object_mut() {
            m.remove("generateName");
        }
        match kind.resource {
            "deployments" => {
                obj["metadata"]["generation"] = json!(1);
                obj["status"] = json!({});
            }
            "services" => obj["status"] = json!({"loadBalancer": {}}),
            "persistentvolumeclaims" => {
                let spec = &obj["spec"];
                let capacity = spec
                    .pointer("/resources/requests")
                    .cloned()
                    .unwrap_or(json!({}));
                let status = json!({"phase": "Bound", "accessModes": spec["accessModes"], "capacity": capacity});
                obj["status"] = status;
            }
            "pods" if obj.get("status").is_none() => obj["status"] = json!({"phase": "Pending"}),
            _ => {}
        }
        obj
    }

    /// Stores `new` as the update of `old`: identity and status are kept, the
    /// resourceVersion moves when something changed, a Deployment's generation when its spec did.
    fn update(&mut self, kind: &Kind, ns: &str, old: &Value, mut new: Value) -> Value {
        defaults(kind, &mut new, Some(old));
        let kept = [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
        ];
        for field in kept {
            if let Some(v) = old["metadata"].get(field) {
                new["metadata"][field] = v.clone();
            } else if let Some(m) = new["metadata"].as_object_mut() {
                m.remove(field);
            }
        }
        if let Some(s) = old.get("status") {
            new["status"] = s.clone();
        } else if let Some(m) = new.as_object_mut() {
            m.remove("status");
        }
        if new == *old {
            return new;
        }
        if kind.resource == "deployments" && new["spec"] != old["spec"] {
            new["metadata"]["generation"] =
                json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        }
        new["metadata"]["resourceVersion"] = json!(self.next_version());
        let name = new["metadata"]["name"].as_str().unwrap_or("").to_owned();
        self.objects
            .insert(key(kind.resource, ns, &name), new.clone());
        new
    }

    /// The fake controller: one pod per Deployment with replicas, statuses kept current.
    fn reconcile(&mut self) {
        let deployments: Vec<((String, String), Value)> = self
            .objects
            .iter()
            .filter(|(k, _)| k.0 == "deployments")
            .map(|(k, v)| ((k.1.clone(), k.2.clone()), v.clone()))
            .collect();
        let wanted: BTreeMap<_, _> = deployments
            .iter()
            .filter(|(_, d)| replicas(d) >= 1)
            .map(|(k, d)| (k.clone(), d["spec"]["template"].clone()))
            .collect();
        let stale: Vec<_> = self
            .controlled
            .iter()
            .filter(|(k, (pod, template))| {
                wanted.get(*k) != Some(template)
                    || !self.objects.contains_key(&key("pods", &k.0, pod))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some((pod, _)) = self.controlled.remove(&k) {
                self.objects.remove(&key("pods", &k.0, &pod));
            }
        }
        for ((ns, deployment), template) in wanted {
            if self
                .controlled
                .contains_key(&(ns.clone(), deployment.clone()))
            {
                continue;
            }
            let pod = format!("{deployment}-{}", suffix());
            let labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            let object = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "generateName": format!("{deployment}-"),
                "namespace": ns, "labels": labels, "uid": uid(), "resourceVersion": self.next_version(),
                "creationTimestamp": now()}, "spec": template["spec"], "status": {}});
            self.objects.insert(key("pods", &ns, &pod), object);
            self.controlled.insert((ns, deployment), (pod, template));
        }
        for ((ns, deployment), (pod, _)) in self.controlled.clone() {
            let state = self
                .pod_states
                .get(&deployment)
                .cloned()
                .unwrap_or_default();
            let k = key("pods", &ns, &pod);
            let Some(p) = self.objects.get(&k) else {
                continue;
            };
            let status = pod_status(p, &state);
            if p["status"] != status {
                let rv = self.next_version();
                if let Some(p) = self.objects.get_mut(&k) {
                    p["status"] = status;
                    p["metadata"]["resourceVersion"] = json!(rv);
                }
            }
        }
        for ((ns, name), d) in deployments {
            let n = replicas(&d);
            let running = self.controlled.contains_key(&(ns.clone(), name.clone()));
            let ready = running
                && self
                    .pod_states
                    .get(&name)
                    .is_none_or(|s| *s == PodState::Ready);
            let (total, ready) = (if running { n } else { 0 }, if ready { n } else { 0 });
            let mut status = Map::new();
            status.insert(
                "observedGeneration".into(),
                d["metadata"]["generation"].clone(),
            );
            for (field, v) in [
                ("replicas", total),
                ("updatedReplicas", total),
                ("readyReplicas", ready),
                ("availableReplicas", ready),
                ("unavailableReplicas", total - ready),
            ] {
                if v > 0 {
                    status.insert(field.into(), json!(v));
                }
            }
            let at = &d["metadata"]["creationTimestamp"];
            let (available, reason, message) = if ready >= n {
                (
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                (
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
            status.insert(
                "conditions".into(),
                json!([{"type": "Available", "status": available, "reason": reason,
                "message": message, "lastUpdateTime": at, "lastTransitionTime": at}]),
            );
            let status = Value::Object(status);
            if d["status"] != status {
                let rv = self.next_version();
                if let Some(d) = self.objects.get_mut(&key("deployments", &ns, &name)) {
                    d["status"] = status;
                    d["metadata"]["resourceVersion"] = json!(rv);
                }
            }
        }
    }
}

fn replicas(d: &Value) -> i64 {
    d["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// Defaults applied on create and update (`old` on update).
fn defaults(kind: &Kind, obj: &mut Value, old: Option<&Value>) {
    obj["apiVersion"] = json!(kind.api_version);
    obj["kind"] = json!(kind.kind);
    match kind.resource {
        "deployments" if obj["spec"].get("replicas").is_none() => {
            obj["spec"]["replicas"] = json!(1)
        }
        "secrets" => {
            if let Some(Value::Object(plain)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                for (k, v) in plain {
                    let encoded = base64_simd::STANDARD.encode_to_string(v.as_str().unwrap_or(""));
                    obj["data"][k] = json!(encoded);
                }
            }
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        "services" => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("clusterIP").is_none() {
                let kept = old.and_then(|o| o["spec"].get("clusterIP")).cloned();
                let [a, b] = random_bytes();
                spec["clusterIP"] =
                    kept.unwrap_or_else(|| json!(format!("10.96.{a}.{}", b.max(1))));
            }
            for port in spec["ports"].as_array_mut().into_iter().flatten() {
                if port.get("protocol").is_none() {
                    port["protocol"] = json!("TCP");
                }
                if port.get("targetPort").is_none() {
                    port["targetPort"] = port["port"].clone();
                }
            }
        }
        "persistentvolumeclaims" if obj["spec"].get("volumeMode").is_none() => {
            obj["spec"]["volumeMode"] = json!("Filesystem")
        }
        _ => {}
    }
}

fn pod_status(pod: &Value, state: &PodState) -> Value {
    let at = &pod["metadata"]["creationTimestamp"];
    let condition = |kind: &str, ok: bool| json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastTransitionTime": at});
    if *state == PodState::Pending {
        return json!({"phase": "Pending", "qosClass": "BestEffort", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "lastTransitionTime": at,
            "message": "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."}]});
    }
    let ready = *state == PodState::Ready;
    let waiting = matches!(state, PodState::Waiting { .. });
    let crashed = matches!(state, PodState::Waiting { reason, .. } if reason == "CrashLoopBackOff");
    let containers = pod["spec"]["containers"].as_array().into_iter().flatten().map(|c| {
        let (state, last) = match state {
            PodState::Waiting { reason, message } => (
                json!({"waiting": {"reason": reason, "message": message}}),
                if crashed { json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": at, "finishedAt": at}}) } else { json!({}) },
            ),
            _ => (json!({"running": {"startedAt": at}}), json!({})),
        };
        json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": ready, "started": !waiting,
            "restartCount": if crashed { 3 } else { 0 }, "state": state, "lastState": last})
    });
    let mut conditions = vec![
        condition("PodScheduled", true),
        condition("Initialized", true),
    ];
    conditions.extend([
        condition("ContainersReady", ready),
        condition("Ready", ready),
    ]);
    json!({"phase": "Running", "conditions": conditions, "hostIP": "10.0.0.1", "podIP": "10.244.0.10", "startTime": at,
        "qosClass": "BestEffort", "containerStatuses": containers.collect::<Vec<_>>()})
}

fn scale(d: &Value) -> Value {
    let labels = d
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object);
    let selector: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    let m = &d["metadata"];
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"], "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": replicas(d)},
        "status": {"replicas": d["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",")}})
}

/// Applies a PATCH body of content type `ct` to `target`.
fn patch(target: &mut Value, ct: &str, body: &Value) -> Result<(), Reply> {
    match ct {
        // Strategic merge and apply are approximated by a JSON merge patch (lists replaced).
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+yaml" => {
            merge(target, body);
            Ok(())
        }
        "application/json-patch+json" => {
            json_patch(target, body).map_err(|e| status(422, "Invalid", &e, Value::Null))
        }
        _ => Err(status(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct:?})"
            ),
            Value::Null,
        )),
    }
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902: add, replace, remove and test.
fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("a JSON patch must be an array")? {
        let path = op["path"]
            .as_str()
            .ok_or("a JSON patch operation needs a path")?;
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
        let last = last.replace("~1", "/").replace("~0", "~");
        let missing = || format!("unable to apply the patch at {path}: the path does not exist");
        match op["op"].as_str() {
            Some("test") if doc.pointer(path) != Some(&value) => {
                return Err(format!("the test of {path} failed"));
            }
            Some("test") => {}
            Some("replace") => *doc.pointer_mut(path).ok_or_else(missing)? = value,
            Some(kind @ ("add" | "remove")) => match (kind, doc.pointer_mut(parent)) {
                ("add", Some(Value::Object(m))) => _ = m.insert(last, value),
                ("add", Some(Value::Array(a))) => {
                    a.insert(index(&last, a.len(), true).ok_or_else(missing)?, value)
                }
                ("remove", Some(Value::Object(m))) => _ = m.remove(&last).ok_or_else(missing)?,
                ("remove", Some(Value::Array(a))) => {
                    _ = a.remove(index(&last, a.len(), false).ok_or_else(missing)?)
                }
                _ => return Err(missing()),
            },
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// A JSON pointer's last token as an index into an array of `len` (`-` appends).
fn index(token: &str, len: usize, adding: bool) -> Option<usize> {
    match token {
        "-" if adding => Some(len),
        t => t.parse().ok().filter(|i| *i < len + usize::from(adding)),
    }
}

struct Requirement {
    key: String,
    op: &'static str,
    value: String,
}

impl Requirement {
    fn matches(&self, got: Option<&str>) -> bool {
        match self.op {
            "=" => got == Some(self.value.as_str()),
            "!=" => got != Some(self.value.as_str()),
            "exists" => got.is_some(),
            _ => got.is_none(),
        }
    }
}

/// Equality (`a=b`, `a==b`, `a!=b`) and existence (`a`, `!a`) requirements.
fn selector(s: &str) -> Result<Vec<Requirement>, String> {
    let valid = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (key, op, value) = if let Some((k, v)) = t.split_once("!=") {
                (k, "!=", v)
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (k, "=", v)
            } else if let Some(k) = t.strip_prefix('!') {
                (k, "absent", "")
            } else {
                (t, "exists", "")
            };
            let (key, value) = (key.trim(), value.trim());
            if valid(key) {
                Ok(Requirement {
                    key: key.to_owned(),
                    op,
                    value: value.to_owned(),
                })
            } else {
                Err(format!("unable to parse requirement: {t:?}"))
            }
        })
        .collect()
}

fn query_pairs(query: &str) -> BTreeMap<String, String> {
    let Ok(mut url) = reqwest::Url::parse("http://fake/") else {
        return BTreeMap::new();
    };
    url.set_query(Some(query));
    url.query_pairs().into_owned().collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("random bytes");
    b
}

fn uid() -> String {
    let mut b: [u8; 16] = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// 5 characters from the alphabet Kubernetes uses for generated names.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Now, as RFC 3339 UTC to the second.
fn now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/apps/deployments";
    const SECRETS: &str = "/api/v1/namespaces/apps/secrets";

    /// POSTs deployment `name` with `replicas`; the status and the answer.
    async fn create_deployment(api: &KubeApi, name: &str, replicas: i64) -> (u16, Value) {
        let body = Some(deployment(name, replicas));
        call(api, "POST", DEPLOYMENTS, "application/json", body).await
    }

    async fn call(
        api: &KubeApi,
        method: &str,
        path: &str,
        ct: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new().request(method, format!("{}{path}", api.url()));
        if let Some(body) = body {
            req = req.header("content-type", ct).body(body.to_string());
        }
        let res = req.send().await.expect("send");
        let code = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn deployment(name: &str, replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}})
    }

    fn names(list: &Value) -> Vec<&str> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("name"))
            .collect()
    }

    #[tokio::test]
    async fn create_conflict_get_and_status_bodies() {
        let api = KubeApi::start().await;
        let (code, created) = call(
            &api,
            "POST",
            &format!("{DEPLOYMENTS}?fieldManager=t"),
            "application/json",
            Some(deployment("web", 1)),
        )
        .await;
        assert_eq!(code, 201, "{created}");
        let meta = &created["metadata"];
        assert_eq!(
            (meta["namespace"].as_str(), meta["generation"].as_i64()),
            (Some("apps"), Some(1))
        );
        assert_eq!(meta["uid"].as_str().map(str::len), Some(36));
        let ts = meta["creationTimestamp"].as_str().expect("timestamp");
        assert!(
            ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "{ts}"
        );
        assert!(
            meta["resourceVersion"]
                .as_str()
                .expect("rv")
                .parse::<u64>()
                .is_ok()
        );

        let (code, conflict) = create_deployment(&api, "web", 1).await;
        assert_eq!(code, 409);
        assert_eq!(
            conflict,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "deployments.apps \"web\" already exists", "reason": "AlreadyExists",
            "details": {"name": "web", "group": "apps", "kind": "deployments"}, "code": 409})
        );

        let (code, got) = call(&api, "GET", &format!("{DEPLOYMENTS}/web"), "", None).await;
        assert_eq!((code, &got["metadata"]["uid"]), (200, &meta["uid"]));
        let (code, missing) = call(
            &api,
            "GET",
            "/api/v1/namespaces/apps/secrets/nope",
            "",
            None,
        )
        .await;
        assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));
        assert_eq!(missing["message"], "secrets \"nope\" not found");
        assert_eq!(
            missing["details"],
            json!({"name": "nope", "kind": "secrets"})
        );

        let (code, invalid) = call(
            &api,
            "POST",
            SECRETS,
            "application/json",
            Some(json!({"metadata": {}})),
        )
        .await;
        assert_eq!(
            (code, invalid["reason"].as_str(), invalid["code"].as_u64()),
            (422, Some("Invalid"), Some(422))
        );
        let (code, unknown) =
            call(&api, "GET", "/apis/batch/v1/namespaces/apps/jobs", "", None).await;
        assert_eq!((code, unknown["kind"].as_str()), (404, Some("Status")));
        assert_eq!(api.requests().len(), 6);
        assert_eq!(api.requests()[0].query, "fieldManager=t");
        assert_eq!(
            api.requests()[0].content_type.as_deref(),
            Some("application/json")
        );
    }

    #[tokio::test]
    async fn label_selectors_and_delete_collection() {
        let api = KubeApi::start().await;
        for (name, labels) in [
            ("a", json!({"app": "web", "tier": "db"})),
            ("b", json!({"app": "web"})),
            ("c", json!({"app": "api"})),
        ] {
            api.insert(
                "secrets",
                "apps",
                json!({"metadata": {"name": name, "labels": labels}, "stringData": {"k": "v"}}),
            );
        }
        api.insert(
            "secrets",
            "other",
            json!({"metadata": {"name": "d", "labels": {"app": "web"}}}),
        );
        let secret = api.object("secrets", "apps", "a").expect("a");
        assert_eq!(
            (secret["data"]["k"].as_str(), secret["type"].as_str()),
            (Some("dg=="), Some("Opaque"))
        );
        for (selector, want) in [
            ("app%3Dweb", vec!["a", "b"]),
            ("app%3D%3Dweb%2Ctier", vec!["a"]),
            ("app!%3Dweb", vec!["c"]),
            ("tier", vec!["a"]),
            ("!tier", vec!["b", "c"]),
            ("", vec!["a", "b", "c"]),
        ] {
            let (code, list) = call(
                &api,
                "GET",
                &format!("{SECRETS}?labelSelector={selector}"),
                "",
                None,
            )
            .await;
            assert_eq!((code, list["kind"].as_str()), (200, Some("SecretList")));
            assert_eq!(names(&list), want, "{selector}");
            assert!(
                list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|i| i["apiVersion"] == "v1" && i["kind"] == "Secret")
            );
        }
        let (_, all) = call(&api, "GET", "/api/v1/secrets", "", None).await;
        assert_eq!(names(&all), ["a", "b", "c", "d"]);
        let (code, deleted) = call(
            &api,
            "DELETE",
            &format!("{SECRETS}?labelSelector=app%3Dweb"),
            "",
            None,
        )
        .await;
        assert_eq!((code, names(&deleted)), (200, vec!["a", "b"]));
        let left: Vec<Value> = api
            .objects("secrets")
            .iter()
            .map(|s| s["metadata"]["name"].clone())
            .collect();
        assert_eq!(left, ["c", "d"]);
        let (code, gone) = call(
            &api,
            "DELETE",
            &format!("{SECRETS}/c"),
            "application/json",
            Some(json!({})),
        )
        .await;
        assert_eq!((code, gone["status"].as_str()), (200, Some("Success")));
        let (code, _) = call(
            &api,
            "DELETE",
            &format!("{SECRETS}/c"),
            "application/json",
            Some(json!({})),
        )
        .await;
        assert_eq!(code, 404);
    }

    #[tokio::test]
    async fn patches_and_replace() {
        let api = KubeApi::start().await;
        api.insert("deployments", "apps", deployment("web", 1));
        let before = api.object("deployments", "apps", "web").expect("web");
        let path = format!("{DEPLOYMENTS}/web");
        let merge = json!({"metadata": {"labels": {"app": null, "team": "x"}}});
        let (code, patched) = call(
            &api,
            "PATCH",
            &path,
            "application/merge-patch+json",
            Some(merge),
        )
        .await;
        assert_eq!(code, 200, "{patched}");
        assert_eq!(patched["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(patched["metadata"]["generation"], 1, "labels are not spec");
        assert_ne!(
            patched["metadata"]["resourceVersion"],
            before["metadata"]["resourceVersion"]
        );
        let ops = json!([{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]);
        let (code, patched) = call(
            &api,
            "PATCH",
            &path,
            "application/json-patch+json",
            Some(ops),
        )
        .await;
        assert_eq!(
            (
                code,
                &patched["spec"]["replicas"],
                &patched["metadata"]["generation"]
            ),
            (200, &json!(2), &json!(2))
        );
        let bad = json!([{"op": "remove", "path": "/spec/nothing"}]);
        assert_eq!(
            call(
                &api,
                "PATCH",
                &path,
                "application/json-patch+json",
                Some(bad)
            )
            .await
            .0,
            422
        );

        let (code, _) = call(&api, "PUT", &path, "application/json", Some(before.clone())).await;
        assert_eq!(code, 409, "a stale resourceVersion conflicts");
        let mut fresh = api.object("deployments", "apps", "web").expect("web");
        fresh["spec"]["replicas"] = json!(3);
        let (code, put) = call(&api, "PUT", &path, "application/json", Some(fresh)).await;
        assert_eq!(
            (code, &put["spec"]["replicas"], &put["metadata"]["uid"]),
            (200, &json!(3), &before["metadata"]["uid"])
        );
        let status = &api.object("deployments", "apps", "web").expect("web")["status"];
        assert_eq!(
            (&status["readyReplicas"], &status["observedGeneration"]),
            (&json!(3), &json!(3))
        );

        let apply = deployment("api", 1);
        let (code, created) = call(
            &api,
            "PATCH",
            &format!("{DEPLOYMENTS}/api?fieldManager=x"),
            "application/apply-patch+yaml",
            Some(apply),
        )
        .await;
        assert_eq!(
            (code, created["metadata"]["name"].as_str()),
            (201, Some("api")),
            "server-side apply creates"
        );
        assert_eq!(
            call(
                &api,
                "PATCH",
                &format!("{DEPLOYMENTS}/zz"),
                "application/merge-patch+json",
                Some(json!({}))
            )
            .await
            .0,
            404
        );
        let dry = format!("{DEPLOYMENTS}?dryRun=All");
        let (code, _) = call(
            &api,
            "POST",
            &dry,
            "application/json",
            Some(deployment("dry", 1)),
        )
        .await;
        assert_eq!(code, 201);
        assert!(api.object("deployments", "apps", "dry").is_none());
        assert!(api.pod_name("apps", "dry").is_none());
    }

    #[tokio::test]
    async fn the_controller_follows_scale_and_pod_state() {
        let api = KubeApi::start().await;
        let (code, _) = create_deployment(&api, "web", 1).await;
        assert_eq!(code, 201);
        let pod = api.pod_name("apps", "web").expect("a pod");
        assert!(pod.len() == 9 && pod.starts_with("web-"), "{pod}");
        let p = api.object("pods", "apps", &pod).expect("pod");
        assert_eq!(
            (&p["metadata"]["labels"], &p["status"]["phase"]),
            (&json!({"app": "web"}), &json!("Running"))
        );
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        let (_, listed) = call(
            &api,
            "GET",
            "/api/v1/namespaces/apps/pods?labelSelector=app%3Dweb",
            "",
            None,
        )
        .await;
        assert_eq!(names(&listed), [pod.as_str()]);

        let scale = format!("{DEPLOYMENTS}/web/scale");
        let (code, sc) = call(&api, "GET", &scale, "", None).await;
        assert_eq!(
            (
                code,
                &sc["kind"],
                &sc["spec"]["replicas"],
                &sc["status"]["selector"]
            ),
            (200, &json!("Scale"), &json!(1), &json!("app=web"))
        );
        let zero = json!({"spec": {"replicas": 0}});
        let (code, sc) = call(
            &api,
            "PATCH",
            &scale,
            "application/merge-patch+json",
            Some(zero),
        )
        .await;
        assert_eq!(
            (code, &sc["spec"]["replicas"], &sc["status"]["replicas"]),
            (200, &json!(0), &json!(0))
        );
        assert!(api.objects("pods").is_empty());
        let one = json!({"spec": {"replicas": 1}});
        assert_eq!(
            call(
                &api,
                "PATCH",
                &scale,
                "application/merge-patch+json",
                Some(one)
            )
            .await
            .0,
            200
        );
        let again = api.pod_name("apps", "web").expect("a new pod");
        assert_ne!(again, pod);

        let waiting = PodState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 5m0s".into(),
        };
        api.set_pod("web", waiting);
        let p = api.object("pods", "apps", &again).expect("pod");
        let c = &p["status"]["containerStatuses"][0];
        assert_eq!(
            (&c["state"]["waiting"]["reason"], &c["restartCount"]),
            (&json!("CrashLoopBackOff"), &json!(3))
        );
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        let d = api.object("deployments", "apps", "web").expect("web");
        assert!(
            d["status"].get("readyReplicas").is_none() && d["status"]["unavailableReplicas"] == 1,
            "{}",
            d["status"]
        );
        api.set_pod("web", PodState::Pending);
        let p = api.object("pods", "apps", &again).expect("pod");
        assert_eq!(
            (
                &p["status"]["phase"],
                &p["status"]["conditions"][0]["reason"]
            ),
            (&json!("Pending"), &json!("Unschedulable"))
        );

        api.remove("pods", "apps", &again);
        let replaced = api.pod_name("apps", "web").expect("recreated");
        assert_ne!(replaced, again);
        let (code, gone) = call(
            &api,
            "DELETE",
            &format!("{DEPLOYMENTS}/web"),
            "application/json",
            Some(json!({})),
        )
        .await;
        assert_eq!((code, gone["kind"].as_str()), (200, Some("Status")));
        assert!(api.objects("pods").is_empty() && api.pod_name("apps", "web").is_none());
    }

    #[tokio::test]
    async fn injected_failures_and_delay() {
        let api = KubeApi::start().await;
        api.fail_next("GET", "pods", 500, "InternalError");
        api.fail_next("POST", "deployments", 409, "AlreadyExists");
        let (code, err) = call(&api, "GET", "/api/v1/namespaces/apps/pods", "", None).await;
        assert_eq!(
            (code, err["reason"].as_str(), err["code"].as_u64()),
            (500, Some("InternalError"), Some(500))
        );
        assert_eq!(
            call(&api, "GET", "/api/v1/namespaces/apps/pods", "", None)
                .await
                .0,
            200,
            "one-shot"
        );
        let (code, err) = create_deployment(&api, "web", 1).await;
        assert_eq!(
            (code, err["message"].as_str()),
            (409, Some("deployments.apps \"web\" already exists"))
        );
        assert!(api.objects("deployments").is_empty());
        let recorded = &api.requests()[2];
        assert_eq!(
            (recorded.method.as_str(), recorded.path.as_str()),
            ("POST", DEPLOYMENTS)
        );
        assert_eq!(
            recorded.body.as_ref().map(|b| &b["metadata"]["name"]),
            Some(&json!("web"))
        );

        api.set_delay(Duration::from_millis(400));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .expect("client");
        assert!(
            client
                .get(format!("{}{SECRETS}", api.url()))
                .send()
                .await
                .is_err()
        );
        api.set_delay(Duration::ZERO);
        assert!(
            client
                .get(format!("{}{SECRETS}", api.url()))
                .send()
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn logs_current_previous_and_follow() {
        let api = KubeApi::start().await;
        api.insert("deployments", "apps", deployment("web", 1));
        let pod = api.pod_name("apps", "web").expect("pod");
        let log = format!("/api/v1/namespaces/apps/pods/{pod}/log");
        let (code, _) = call(&api, "GET", &format!("{log}?previous=true"), "", None).await;
        assert_eq!(code, 400, "no previous container yet");
        api.set_log("web", "started\n", "crashed\n");
        assert_eq!(
            call(&api, "GET", &format!("{log}?container=app"), "", None).await,
            (200, json!("started\n"))
        );
        assert_eq!(
            call(&api, "GET", &format!("{log}?previous=true"), "", None).await,
            (200, json!("crashed\n"))
        );
        assert_eq!(
            call(&api, "GET", &format!("{log}?container=x"), "", None)
                .await
                .0,
            400
        );
        assert_eq!(
            call(
                &api,
                "GET",
                "/api/v1/namespaces/apps/pods/nope/log",
                "",
                None
            )
            .await
            .0,
            404
        );

        let res = reqwest::get(format!("{}{log}?follow=true", api.url()))
            .await
            .expect("follow");
        assert_eq!(res.headers()["content-type"], "text/plain");
        let appended = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            api.set_log("web", "started\nmore\n", "crashed\n");
            tokio::time::sleep(Duration::from_millis(200)).await;
            api.remove("deployments", "apps", "web");
        };
        let (text, ()) = tokio::join!(res.text(), appended);
        assert_eq!(text.expect("streamed"), "started\nmore\n");
    }
}
