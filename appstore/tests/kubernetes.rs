//! The App Store with `--runtime kubernetes` against a fake Kubernetes API (records every
//! request, answers like the API server): instances through the public API are objects in
//! the cluster, their state read back from it; and, when `KUBECONFIG` is set, the same
//! runtime against a real cluster.

mod common;

use std::time::Duration;

use appstore::bundle::manifest::RuntimeVersion;
use appstore::config::RuntimeKind;
use reqwest::{Method, StatusCode};
use s3_compat_tests::kube_api::{KubeApi, PodState};
use serde_json::{Value, json};

use common::{Db, Stack, zip};

const IMAGE: &str = "registry.example/h2o/runtime:py311";
const INTERNAL_URL: &str = "http://appstore.platform.svc:8080";

/// A kubeconfig naming the fake API, namespace `apps`, no credentials.
fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters:\n- name: fake\n  cluster:\n    server: {server}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: nobody\n    namespace: apps\n\
         users:\n- name: nobody\n  user: {{}}\n"
    );
    std::fs::write(&path, text).expect("kubeconfig");
    path
}

fn bundle(version: &str) -> Vec<u8> {
    let toml = format!(
        "[App]\nName = \"ai.h2o.wave.cluster\"\nVersion = \"{version}\"\nTitle = \"Cluster\"\n\
         [Runtime]\nModule = \"app\"\nMemoryLimit = \"1Gi\"\nVolumeMount = \"/data\"\nVolumeSize = \"1Gi\"\n\
         [[Env]]\nName = \"GREETING\"\nValue = \"hello\"\n"
    );
    zip(&[
        ("app.toml", toml.as_bytes()),
        ("app.py", b"from h2o_wave import main\n"),
    ])
}

fn secret_value(secret: &Value, key: &str) -> String {
    let data = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(base64_simd::STANDARD.decode_to_vec(data).expect("base64")).expect("utf-8")
}

async fn start(api: &KubeApi, dir: &std::path::Path) -> Stack {
    start_with(api, dir, |_| {}).await
}

async fn start_with(
    api: &KubeApi,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut appstore::config::ServeArgs),
) -> Stack {
    let config = kubeconfig(dir, &api.url());
    Stack::start_with(Db::Postgres, |a| {
        a.runtime = Some(RuntimeKind::Kubernetes);
        a.kube_config = Some(config);
        a.internal_url = Some(INTERNAL_URL.into());
        a.instance_limit = Some(2);
        a.storage_class = Some("fast".into());
        a.runtime_version = vec![RuntimeVersion {
            name: "py311".into(),
            image: IMAGE.into(),
            default: true,
            deprecated: false,
            aliases: vec![],
        }];
        tweak(a);
    })
    .await
}

/// POST of `verb` (suspend, resume) on instance `id` as alice.
async fn act(stack: &Stack, id: &str, verb: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/instances/{id}/{verb}");
    stack.call(Method::POST, &path, Some("alice"), None).await
}

async fn instance(stack: &Stack, user: &str, id: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/instances/{id}");
    stack.call(Method::GET, &path, Some(user), None).await
}

#[tokio::test]
async fn instances_are_objects_in_the_cluster() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stack = start(&api, dir.path()).await;
    let (status, app) = stack
        .import("alice", bundle("0.1.0"), Some("ALL_USERS"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app = app["id"].as_str().unwrap().to_owned();
    let run = |user: &'static str| {
        let path = format!("/api/v1/apps/{app}/instances");
        let stack = &stack;
        async move {
            stack
                .call(Method::POST, &path, Some(user), Some(json!({})))
                .await
        }
    };

    let (status, body) = run("alice").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let name = format!("i-{id}");
    let deployment = api
        .object("deployments", "apps", &name)
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["containers"][0]["image"], IMAGE);
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(
        deployment["metadata"]["annotations"]["appstore.h2o.ai/owner-subject"],
        "00000000-0000-4000-8000-00000000a11c"
    );
    assert!(api.object("services", "apps", &name).is_some());
    let claim = api
        .object("persistentvolumeclaims", "apps", &format!("{name}-volume"))
        .expect("a claim for VolumeMount");
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    let secret = api
        .object("secrets", "apps", &format!("{name}-env"))
        .expect("a Secret");
    let token = secret_value(&secret, "H2O_CLOUD_CLIENT_PLATFORM_TOKEN");
    assert!(token.starts_with("ait_"));
    assert_eq!(secret_value(&secret, "GREETING"), "hello");
    assert_eq!(secret_value(&secret, "H2O_CLOUD_VOLUME_PATH"), "/data");
    assert_eq!(
        secret_value(&secret, "AWS_WEB_IDENTITY_TOKEN_FILE"),
        "/instance/data/web-identity-token"
    );
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "APPSTORE_LAUNCHER_URL" && e["value"] == INTERNAL_URL)
    );

    let (status, body) = instance(&stack, "alice", &id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"]["phase"], "RUNNING", "{body}");
    assert_eq!(body["appName"], "ai.h2o.wave.cluster");
    assert_eq!(instance(&stack, "bob", &id).await.0, StatusCode::NOT_FOUND);

    // The launcher's endpoints and the broker find the instance by its token's hash label.
    api.set_pod(&name, PodState::Starting);
    let phase = stack
        .http
        .post(format!(
            "{}/api/v1/instances/{id}/launcher/phase",
            stack.url
        ))
        .bearer_auth(&token)
        .json(&json!({"phase": "installing", "reason": "pip install"}))
        .send()
        .await
        .unwrap();
    assert!(phase.status().is_success(), "{}", phase.status());
    let (_, body) = instance(&stack, "alice", &id).await;
    assert_eq!(body["status"]["phase"], "INSTALLING", "{body}");
    let broker = |token: String| {
        let url = format!("{}/broker/token", stack.url);
        let http = stack.http.clone();
        async move {
            http.post(url)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                .send()
                .await
                .unwrap()
        }
    };
    let granted = broker(token.clone()).await;
    assert_eq!(granted.status(), StatusCode::OK);
    api.set_pod(&name, PodState::Ready);

    let path = format!("/api/v1/instances/{id}");
    let (status, _) = stack
        .call(
            Method::PATCH,
            &path,
            Some("alice"),
            Some(json!({"visibility": "ALL_USERS"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let labels = &api.object("deployments", "apps", &name).unwrap()["metadata"]["labels"];
    assert_eq!(labels["appstore.h2o.ai/visibility"], "ALL_USERS");

    let (status, body) = act(&stack, &id, "suspend").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        api.object("deployments", "apps", &name).unwrap()["spec"]["replicas"],
        0
    );
    assert_eq!(
        instance(&stack, "alice", &id).await.1["status"]["phase"],
        "SUSPENDED"
    );
    let (status, _) = act(&stack, &id, "resume").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        instance(&stack, "alice", &id).await.1["status"]["phase"],
        "RUNNING"
    );

    api.set_log(&name, "[launcher] running\n", "");
    let logs = stack
        .http
        .get(format!("{}{path}/logs", stack.url))
        .bearer_auth(stack.token("alice").await)
        .send()
        .await
        .unwrap();
    assert_eq!(logs.text().await.unwrap(), "[launcher] running\n");

    // Limits are counted on the cluster; a failed create leaves nothing and frees the slot.
    api.fail_next("POST", "deployments", 500, "InternalError");
    let (status, body) = run("alice").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "failed-scheduling-app", "{body}");
    assert_eq!(
        api.objects("secrets").len(),
        1,
        "the half-made instance is gone"
    );
    let (status, second) = run("alice").await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let (status, body) = run("alice").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "instance-limit");
    let (_, listed) = stack
        .call(Method::GET, "/api/v1/instances", Some("alice"), None)
        .await;
    assert_eq!(
        listed["instances"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // kubectl deletes the second one: it is gone for the App Store too, and the slot is free.
    let second = second["id"].as_str().unwrap();
    api.remove("deployments", "apps", &format!("i-{second}"));
    let (_, listed) = stack
        .call(Method::GET, "/api/v1/instances", Some("alice"), None)
        .await;
    assert_eq!(
        listed["instances"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(
        instance(&stack, "alice", second).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, _) = stack.call(Method::DELETE, &path, Some("alice"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for resource in ["deployments", "services", "persistentvolumeclaims", "pods"] {
        assert!(
            api.objects(resource)
                .iter()
                .all(|o| o["metadata"]["labels"]["appstore.h2o.ai/instance"] != id.as_str()),
            "{resource} of the terminated instance remain"
        );
    }
    assert!(
        api.object("secrets", "apps", &format!("{name}-env"))
            .is_none()
    );
    assert_eq!(
        instance(&stack, "alice", &id).await.0,
        StatusCode::NOT_FOUND
    );
    let refused = broker(token).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_slow_cluster_times_out_and_what_was_made_is_removed() {
    let api = KubeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stack = start_with(&api, dir.path(), |a| a.write_timeout_seconds = Some(1)).await;
    let (status, app) = stack.import("alice", bundle("0.3.0"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let path = format!("/api/v1/apps/{}/instances", app["id"].as_str().unwrap());
    api.set_delay(Duration::from_millis(400));
    let (status, body) = stack
        .call(Method::POST, &path, Some("alice"), Some(json!({})))
        .await;
    api.set_delay(Duration::ZERO);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], "runtime-timeout", "{body}");
    let created = api.requests().iter().filter(|r| r.method == "POST").count();
    assert!(created >= 2, "the start got some way: {created} objects");
    for resource in [
        "secrets",
        "persistentvolumeclaims",
        "deployments",
        "services",
        "pods",
    ] {
        assert!(
            api.objects(resource).is_empty(),
            "{resource} of the timed-out start remain"
        );
    }
    let (_, listed) = stack
        .call(Method::GET, "/api/v1/instances", Some("alice"), None)
        .await;
    assert_eq!(
        listed["instances"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

/// The runtime against a real cluster: runs only with `KUBECONFIG` set (README: "Running
/// apps"); the pod runs `APPSTORE_TEST_RUNTIME_IMAGE` (any image will do: the launcher
/// cannot reach this App Store, so the test checks the objects' life, not the app).
#[tokio::test]
async fn a_real_cluster_when_kubeconfig_is_set() {
    let Some(path) = std::env::var_os("KUBECONFIG") else {
        eprintln!("KUBECONFIG is not set: the real-cluster test does not run");
        return;
    };
    let image =
        std::env::var("APPSTORE_TEST_RUNTIME_IMAGE").unwrap_or_else(|_| "busybox:1.36".into());
    let namespace = std::env::var("APPSTORE_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start_with(Db::Postgres, |a| {
        a.runtime = Some(RuntimeKind::Kubernetes);
        a.kube_config = Some(path.into());
        a.namespace = Some(namespace);
        a.runtime_version = vec![RuntimeVersion {
            name: "test".into(),
            image,
            default: true,
            deprecated: false,
            aliases: vec![],
        }];
    })
    .await;
    let (status, app) = stack.import("alice", bundle("0.2.0"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let path = format!("/api/v1/apps/{}/instances", app["id"].as_str().unwrap());
    let (status, body) = stack
        .call(Method::POST, &path, Some("alice"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let mut phase = Value::Null;
    for _ in 0..60 {
        phase = instance(&stack, "alice", &id).await.1["status"]["phase"].clone();
        if phase != "PENDING" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_ne!(phase, "PENDING", "a pod was scheduled");
    let path = format!("/api/v1/instances/{id}");
    let (status, _) = act(&stack, &id, "suspend").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        instance(&stack, "alice", &id).await.1["status"]["phase"],
        "SUSPENDED"
    );
    let (status, _) = stack.call(Method::DELETE, &path, Some("alice"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        instance(&stack, "alice", &id).await.0,
        StatusCode::NOT_FOUND
    );
    drop(dir);
}
