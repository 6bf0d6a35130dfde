use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use shared_identity::Principal;

use super::objects::{self, Placement};
use super::status_of;
use crate::repository::Visibility;
use crate::scheduler::Instance;
use crate::scheduler::runtime::{InstanceRecord, InstanceSpec, Phase, Resources, Volumes};

const ID: &str = "0b6f3a52-2f5e-4c1e-9b0a-6d0c1f7e8a90";

fn placement() -> Placement {
    Placement {
        namespace: "apps".into(),
        appstore_url: "http://appstore.platform.svc:8080".into(),
        service_type: "ClusterIP".into(),
        storage_class: Some("fast".into()),
        service_account: None,
        resource_path: "/resources".into(),
        shm_size: "2Gi".into(),
    }
}

fn instance(id: &str, owner: &str, created_at: i64) -> Instance {
    Instance {
        id: id.into(),
        app_id: "7d0c4a1e-5b6f-4e2a-8c3d-1f2e3a4b5c6d".into(),
        app_name: "ai.h2o.wave.hello".into(),
        app_version: "0.1.0".into(),
        app_title: "Hello".into(),
        owner_subject: owner.into(),
        owner: "Alice Liddell".into(),
        visibility: Visibility::Private,
        routing_mode: "DOMAIN".into(),
        suspended: false,
        created_at,
        updated_at: created_at,
        principal: Principal {
            issuer: "https://keycloak.example/realms/ai".into(),
            subject: owner.into(),
            username: Some("alice".into()),
            email: Some("alice@example.com".into()),
            groups: vec![],
            roles: vec!["app-user".into()],
        },
    }
}

/// An app.toml shape rendered as an instance spec.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Plain,
    Gpu,
    Volumes,
    BaseUrlShm,
}

fn spec(shape: Shape) -> InstanceSpec {
    let mut env = BTreeMap::from([
        ("H2O_CLOUD_INSTANCE_ID".to_owned(), ID.to_owned()),
        (
            "H2O_CLOUD_CLIENT_PLATFORM_TOKEN".to_owned(),
            "ait_secret".to_owned(),
        ),
        ("H2O_WAVE_BASE_URL".to_owned(), "/".to_owned()),
        ("GREETING".to_owned(), "hello".to_owned()),
    ]);
    let mut resources = Resources {
        memory_limit: "2Gi".into(),
        memory_reservation: Some("512Mi".into()),
        ..Resources::default()
    };
    let mut volumes = Volumes::default();
    let mut enable_shm = false;
    let mut record = instance(ID, "user-1", 1_700_000_000_000);
    match shape {
        Shape::Plain => {}
        Shape::Gpu => {
            resources.gpu_count = 2;
            resources.gpu_type = Some("a100".into());
            resources.cpu_limit = Some("4".into());
            resources.cpu_reservation = Some("500m".into());
        }
        Shape::Volumes => {
            volumes = Volumes {
                mount: "/data".into(),
                size: "1Gi".into(),
                resource_size: "5Gi".into(),
            };
        }
        Shape::BaseUrlShm => {
            env.insert("H2O_WAVE_BASE_URL".into(), format!("/instance/{ID}/"));
            record.routing_mode = "BASE_URL".into();
            enable_shm = true;
        }
    }
    InstanceSpec {
        id: ID.into(),
        module: "app".into(),
        memory_limit: 2 << 30,
        env,
        image: "registry.example/h2o/runtime:py311".into(),
        resources,
        volumes,
        enable_shm,
        record: Some(InstanceRecord {
            instance: record,
            token_hash: crate::scheduler::token_hash("ait_secret"),
        }),
    }
}

fn rendered(shape: Shape) -> Vec<serde_json::Value> {
    let (s, p) = (spec(shape), placement());
    let mut all = vec![
        serde_json::to_value(objects::secret(&s, &p)).unwrap(),
        serde_json::to_value(objects::deployment(&s, &p)).unwrap(),
        serde_json::to_value(objects::service(&s, &p)).unwrap(),
    ];
    all.extend(
        objects::claims(&s, &p)
            .into_iter()
            .map(|(_, c, _)| serde_json::to_value(c).unwrap()),
    );
    all
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    let validator = s3_compat_tests::emulator::installed(
        s3_compat_tests::emulator::tools_dir().join("venv/bin/kubernetes-validate"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for shape in [Shape::Plain, Shape::Gpu, Shape::Volumes, Shape::BaseUrlShm] {
        for (n, object) in rendered(shape).iter().enumerate() {
            let path = dir.path().join(format!("{shape:?}-{n}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(object).unwrap()).unwrap();
            files.push(path);
        }
    }
    assert_eq!(files.len(), 4 * 3 + 2, "Volumes renders two claims");
    let out = std::process::Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .args(&files)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn a_broken_object_fails_the_same_validation() {
    let validator = s3_compat_tests::emulator::installed(
        s3_compat_tests::emulator::tools_dir().join("venv/bin/kubernetes-validate"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut deployment = rendered(Shape::Plain).remove(1);
    deployment["spec"]["replicas"] = "one".into();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, serde_json::to_vec(&deployment).unwrap()).unwrap();
    let out = std::process::Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a string replica count must not validate"
    );
}

#[test]
fn shapes_render_what_app_toml_asks_for() {
    let p = placement();
    let plain = objects::deployment(&spec(Shape::Plain), &p);
    let pod = plain.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/h2o/runtime:py311")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.node_selector, None);
    let limits = c.resources.as_ref().unwrap().limits.clone().unwrap();
    assert_eq!(limits["memory"].0, "2Gi");
    assert!(!limits.contains_key("nvidia.com/gpu"));
    let env_from = c.env_from.as_ref().unwrap()[0].secret_ref.as_ref().unwrap();
    assert_eq!(env_from.name, format!("i-{ID}-env"));
    let env: BTreeMap<_, _> = c
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(
        env["APPSTORE_LAUNCHER_URL"],
        "http://appstore.platform.svc:8080"
    );
    assert_eq!(env["APPSTORE_LAUNCHER_VENV_CACHE"], "/resources/venvs");
    assert!(
        !env.contains_key("H2O_CLOUD_CLIENT_PLATFORM_TOKEN"),
        "the token is in the Secret only"
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let probe = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/"));

    let gpu = objects::deployment(&spec(Shape::Gpu), &p);
    let pod = gpu.spec.unwrap().template.spec.unwrap();
    let r = pod.containers[0].resources.clone().unwrap();
    assert_eq!(r.limits.as_ref().unwrap()["nvidia.com/gpu"].0, "2");
    assert_eq!(r.limits.as_ref().unwrap()["cpu"].0, "4");
    assert_eq!(r.requests.as_ref().unwrap()["cpu"].0, "500m");
    assert_eq!(pod.node_selector.unwrap()["hac.h2o.ai/accelerator"], "a100");

    let s = spec(Shape::Volumes);
    let claims = objects::claims(&s, &p);
    let sizes: Vec<_> = claims
        .iter()
        .map(|(v, c, m)| {
            let spec = c.spec.clone().unwrap();
            (
                *v,
                spec.resources.unwrap().requests.unwrap()["storage"]
                    .0
                    .clone(),
                spec.storage_class_name.unwrap(),
                m.clone(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("volume", "1Gi".into(), "fast".into(), "/data".into()),
            (
                "resources",
                "5Gi".into(),
                "fast".into(),
                "/resources".into()
            ),
        ]
    );
    let pod = objects::deployment(&s, &p)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let claimed: Vec<_> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect();
    assert_eq!(
        claimed,
        [format!("i-{ID}-volume"), format!("i-{ID}-resources")]
    );

    let base = objects::deployment(&spec(Shape::BaseUrlShm), &p);
    let pod = base.spec.unwrap().template.spec.unwrap();
    let probe = pod.containers[0]
        .readiness_probe
        .clone()
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(probe.path, Some(format!("/instance/{ID}/")));
    let shm = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "shm")
        .unwrap();
    assert_eq!(
        shm.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );

    let mut with_account = placement();
    with_account.service_account = Some("apps".into());
    let pod = objects::deployment(&spec(Shape::Plain), &with_account)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("apps"));
    assert_eq!(pod.automount_service_account_token, Some(true));
}

#[test]
fn the_record_round_trips_through_the_deployment() {
    let s = spec(Shape::BaseUrlShm);
    let deployment = objects::deployment(&s, &placement());
    let back = objects::record_of(&deployment).expect("a complete record");
    let sent = s.record.clone().unwrap();
    assert_eq!(back.token_hash, sent.token_hash);
    assert_eq!(
        serde_json::to_value(&back.instance).unwrap(),
        serde_json::to_value(&sent.instance).unwrap()
    );
    assert_eq!(back.instance.principal, sent.instance.principal);
    let labels = deployment.metadata.labels.unwrap();
    assert_eq!(labels[objects::OWNER], objects::label_hash("user-1"));
    assert!(labels.values().all(|v| v.len() <= 63), "label values fit");
    let mut unmanaged = objects::deployment(&s, &placement());
    unmanaged
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(objects::MANAGED_BY.0);
    assert!(objects::record_of(&unmanaged).is_none());
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn status_follows_the_deployment_and_the_pod() {
    let s = spec(Shape::Plain);
    let mut d: Deployment = objects::deployment(&s, &placement());
    let none = status_of(&d, None);
    assert_eq!(
        (none.phase, none.reason.as_deref()),
        (Phase::Pending, Some("waiting for a pod"))
    );

    let ready = pod(
        serde_json::json!({"phase": "Running", "containerStatuses": [{
        "name": "launcher", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"running": {"startedAt": "2026-12-03T12:00:00Z"}}}]}),
    );
    assert_eq!(status_of(&d, Some(&ready)).phase, Phase::Running);

    let starting = pod(
        serde_json::json!({"phase": "Running", "containerStatuses": [{
        "name": "launcher", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
        "state": {"running": {"startedAt": "2026-12-03T12:00:00Z"}}}]}),
    );
    assert_eq!(status_of(&d, Some(&starting)).phase, Phase::Starting);
    d.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(objects::PHASE.into(), "installing".into());
    assert_eq!(status_of(&d, Some(&starting)).phase, Phase::Installing);

    let crashing = pod(
        serde_json::json!({"phase": "Running", "containerStatuses": [{
        "name": "launcher", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
            "finishedAt": "2026-12-03T12:01:00Z"}}}]}),
    );
    let failed = status_of(&d, Some(&crashing));
    assert_eq!(failed.phase, Phase::Failed);
    assert_eq!(
        failed.reason.as_deref(),
        Some("CrashLoopBackOff: back-off 40s")
    );
    assert_eq!(failed.restarts, 4);
    assert!(
        failed
            .last_failure
            .unwrap()
            .starts_with("Error: exit code 1 at 2026-12-03")
    );

    let unschedulable = pod(serde_json::json!({"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes have nvidia.com/gpu"}]}));
    let pending = status_of(&d, Some(&unschedulable));
    assert_eq!(pending.phase, Phase::Pending);
    assert_eq!(
        pending.reason.as_deref(),
        Some("Unschedulable: 0/3 nodes have nvidia.com/gpu")
    );

    d.spec.as_mut().unwrap().replicas = Some(0);
    assert_eq!(status_of(&d, Some(&ready)).phase, Phase::Suspended);
}

mod controller {
    use std::time::Duration;

    use futures::StreamExt;
    use s3_compat_tests::kube_api::{KubeApi, PodState};

    use super::{ID, Shape, instance, placement, spec};
    use crate::repository::Visibility;
    use crate::scheduler::kubernetes::{KubernetesRuntime, objects};
    use crate::scheduler::records::{Records, Slot};
    use crate::scheduler::runtime::{Phase, Runtime, RuntimeError};

    fn runtime(api: &KubeApi, read_timeout: Option<Duration>) -> KubernetesRuntime {
        super::super::tls_provider();
        let mut config = kube::Config::new(api.url().parse().unwrap());
        config.default_namespace = "apps".into();
        config.read_timeout = read_timeout;
        let client = kube::Client::try_from(config).unwrap();
        KubernetesRuntime::new(client, placement())
    }

    fn names(api: &KubeApi, resource: &str) -> Vec<String> {
        let mut names: Vec<String> = api
            .objects(resource)
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    fn everything(api: &KubeApi) -> usize {
        [
            "secrets",
            "persistentvolumeclaims",
            "deployments",
            "services",
            "pods",
        ]
        .iter()
        .map(|r| api.objects(r).len())
        .sum()
    }

    async fn text(runtime: &KubernetesRuntime, previous: bool) -> String {
        let mut lines = runtime.logs(ID, previous, false).await.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = lines.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn start_creates_the_objects_and_status_follows_the_pod() {
        let api = KubeApi::start().await;
        let k = runtime(&api, None);
        let s = spec(Shape::Volumes);
        let hash = s.record.as_ref().unwrap().token_hash.clone();
        k.start(s).await.unwrap();
        let creates: Vec<String> = api
            .requests()
            .iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(
            creates,
            [
                "/api/v1/namespaces/apps/secrets",
                "/api/v1/namespaces/apps/persistentvolumeclaims",
                "/api/v1/namespaces/apps/persistentvolumeclaims",
                "/apis/apps/v1/namespaces/apps/deployments",
                "/api/v1/namespaces/apps/services",
            ]
        );
        let name = format!("i-{ID}");
        assert_eq!(names(&api, "deployments"), std::slice::from_ref(&name));
        assert_eq!(names(&api, "services"), std::slice::from_ref(&name));
        assert_eq!(names(&api, "secrets"), [format!("{name}-env")]);
        assert_eq!(
            names(&api, "persistentvolumeclaims"),
            [format!("{name}-resources"), format!("{name}-volume")]
        );
        let secret = api
            .object("secrets", "apps", &format!("{name}-env"))
            .unwrap();
        let token = secret["data"]["H2O_CLOUD_CLIENT_PLATFORM_TOKEN"]
            .as_str()
            .unwrap();
        assert_eq!(
            base64_simd::STANDARD.decode_to_vec(token).unwrap(),
            b"ait_secret"
        );

        let status = k.status(ID).await.unwrap();
        assert_eq!(status.phase, Phase::Running);
        assert_eq!(k.endpoint(ID).await, Some(format!("{name}.apps.svc:10101")));

        api.set_pod(
            &name,
            PodState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 20s restarting failed container".into(),
            },
        );
        let status = k.status(ID).await.unwrap();
        assert_eq!(status.phase, Phase::Failed);
        assert!(status.reason.unwrap().starts_with("CrashLoopBackOff"));
        assert!(status.restarts > 0);
        assert!(status.last_failure.is_some());
        api.set_pod(&name, PodState::Pending);
        assert_eq!(k.status(ID).await.unwrap().phase, Phase::Pending);
        api.set_pod(&name, PodState::Starting);
        k.report(ID, Phase::Installing, Some("pip".into())).await;
        let status = k.status(ID).await.unwrap();
        assert_eq!(
            (status.phase, status.reason.as_deref()),
            (Phase::Installing, Some("pip"))
        );

        let got = k.get(ID).await.unwrap().unwrap();
        assert_eq!(got.owner_subject, "user-1");
        assert_eq!(got.app_name, "ai.h2o.wave.hello");
        assert_eq!(got.visibility, Visibility::Private);
        assert_eq!(k.by_token_hash(&hash).await.unwrap().unwrap().id, ID);
        let forged = crate::scheduler::token_hash("ait_other");
        assert!(k.by_token_hash(&forged).await.unwrap().is_none());
        let mut near = hash.clone();
        let tail = if hash.ends_with("0000") {
            "1111"
        } else {
            "0000"
        };
        near.replace_range(60.., tail);
        assert!(
            k.by_token_hash(&near).await.unwrap().is_none(),
            "the label finds candidates, the full hash decides"
        );
        assert_eq!(k.list(Some("user-1"), None).await.unwrap().len(), 1);
        assert!(k.list(Some("user-2"), None).await.unwrap().is_empty());
        assert_eq!(k.list(None, Some("other-app")).await.unwrap().len(), 0);
        assert!(
            k.status("f0000000-0000-0000-0000-000000000000")
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn suspend_resume_visibility_and_terminate() {
        let api = KubeApi::start().await;
        let k = runtime(&api, None);
        k.start(spec(Shape::Volumes)).await.unwrap();
        let name = format!("i-{ID}");
        k.suspend(ID).await.unwrap();
        let d = api.object("deployments", "apps", &name).unwrap();
        assert_eq!(d["spec"]["replicas"], 0);
        assert!(api.objects("pods").is_empty(), "scaled to zero");
        assert_eq!(k.status(ID).await.unwrap().phase, Phase::Suspended);
        assert!(k.get(ID).await.unwrap().unwrap().suspended);
        assert_eq!(k.endpoint(ID).await, None);
        assert_eq!(
            api.objects("persistentvolumeclaims").len(),
            2,
            "volumes are kept"
        );
        k.resume(ID).await.unwrap();
        assert_eq!(
            api.object("deployments", "apps", &name).unwrap()["spec"]["replicas"],
            1
        );
        assert_eq!(k.status(ID).await.unwrap().phase, Phase::Running);
        assert!(!k.get(ID).await.unwrap().unwrap().suspended);

        k.set_visibility(ID, Visibility::AllUsers).await.unwrap();
        let d = api.object("deployments", "apps", &name).unwrap();
        assert_eq!(d["metadata"]["labels"][objects::VISIBILITY], "ALL_USERS");
        assert_eq!(
            k.get(ID).await.unwrap().unwrap().visibility,
            Visibility::AllUsers
        );

        api.fail_next("DELETE", "secrets", 404, "NotFound");
        k.terminate(ID).await.unwrap();
        assert_eq!(
            names(&api, "secrets"),
            [format!("{name}-env")],
            "a 404 on one delete (gone meanwhile) does not stop the others"
        );
        assert!(k.get(ID).await.unwrap().is_none());
        assert!(k.status(ID).await.is_none());
        k.terminate(ID).await.unwrap();
        assert_eq!(everything(&api), 0, "every object of the instance is gone");
        assert!(matches!(k.suspend(ID).await, Err(RuntimeError::Unknown(_))));
        let deletes = api
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE")
            .count();
        assert!(deletes >= 6, "one delete per object: {deletes}");
    }

    #[tokio::test]
    async fn a_failed_create_removes_what_was_created() {
        let api = KubeApi::start().await;
        let k = runtime(&api, None);
        api.fail_next("POST", "deployments", 409, "AlreadyExists");
        let e = k.start(spec(Shape::Volumes)).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Conflict(_)), "{e:?}");
        assert_eq!(
            everything(&api),
            0,
            "the secret and the claims were removed"
        );

        api.fail_next("POST", "services", 500, "InternalError");
        let e = k.start(spec(Shape::Plain)).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Cluster(_)), "{e:?}");
        assert_eq!(everything(&api), 0);

        k.start(spec(Shape::Plain)).await.unwrap();
        let e = k.start(spec(Shape::Plain)).await.unwrap_err();
        assert!(
            matches!(e, RuntimeError::Conflict(_)),
            "a second start of one id: {e:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_cluster_gives_a_clear_error_and_terminate_cleans_up() {
        let api = KubeApi::start().await;
        let k = runtime(&api, Some(Duration::from_millis(300)));
        api.set_delay(Duration::from_millis(800));
        let e = k.start(spec(Shape::Plain)).await.unwrap_err();
        assert!(matches!(e, RuntimeError::Cluster(_)), "{e:?}");
        assert!(e.to_string().contains("cluster"), "{e}");
        api.set_delay(Duration::ZERO);
        k.terminate(ID).await.unwrap();
        assert_eq!(
            everything(&api),
            0,
            "nothing of the half-created instance is left"
        );
    }

    #[tokio::test]
    async fn instances_made_or_removed_by_kubectl_are_seen_as_they_are() {
        let api = KubeApi::start().await;
        let k = runtime(&api, None);
        let mut other = spec(Shape::Plain);
        let id = "5c1d2e3f-0000-4000-8000-000000000001";
        other.id = id.into();
        other.record.as_mut().unwrap().instance = instance(id, "user-1", 1);
        let rendered = serde_json::to_value(objects::deployment(&other, &placement())).unwrap();
        api.insert("deployments", "apps", rendered);
        let listed = k.list(Some("user-1"), None).await.unwrap();
        assert_eq!(
            listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            [id]
        );
        assert_eq!(k.status(id).await.unwrap().phase, Phase::Running);
        api.remove("deployments", "apps", &format!("i-{id}"));
        assert!(k.get(id).await.unwrap().is_none());
        assert!(k.status(id).await.is_none());
        let unlabelled = serde_json::json!({"metadata": {"name": "i-x", "namespace": "apps"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}});
        api.insert("deployments", "apps", unlabelled);
        assert!(k.list(None, None).await.unwrap().is_empty(), "not ours");
    }

    #[tokio::test]
    async fn limits_are_counted_on_the_cluster() {
        let api = KubeApi::start().await;
        let k = runtime(&api, None);
        let ids = [
            "00000000-0000-4000-8000-00000000000a",
            "00000000-0000-4000-8000-00000000000b",
            "00000000-0000-4000-8000-00000000000c",
        ];
        let mut made = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let mut s = spec(Shape::Plain);
            s.id = (*id).into();
            let i = instance(id, "user-1", 1_000 + i64::try_from(n).unwrap());
            s.record.as_mut().unwrap().instance = i.clone();
            s.record.as_mut().unwrap().token_hash = crate::scheduler::token_hash(id);
            k.start(s).await.unwrap();
            made.push(i);
        }
        assert_eq!(k.insert(&made[0], "", 3).await.unwrap(), Slot::Full);
        assert_eq!(k.insert(&made[0], "", 4).await.unwrap(), Slot::Taken);
        assert_eq!(k.settle(&made[1], 2).await.unwrap(), Slot::Taken);
        assert_eq!(
            k.settle(&made[2], 2).await.unwrap(),
            Slot::Full,
            "the newest of three started at once gives way"
        );
        let other = instance("x", "user-2", 5);
        assert_eq!(k.insert(&other, "", 1).await.unwrap(), Slot::Taken);
    }

    #[tokio::test]
    async fn logs_come_from_the_pod() {
        let api = KubeApi::start().await;
        let k = runtime(&api, None);
        k.start(spec(Shape::Plain)).await.unwrap();
        api.set_log(
            &format!("i-{ID}"),
            "[launcher] running\n",
            "[launcher] failed\n",
        );
        assert_eq!(text(&k, false).await, "[launcher] running\n");
        assert_eq!(text(&k, true).await, "[launcher] failed\n");
        let log = api
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/log"))
            .unwrap();
        assert!(log.query.contains("container=launcher"), "{}", log.query);
        api.fail_next("GET", "pods/log", 500, "InternalError");
        assert!(k.logs(ID, false, false).await.is_err());
    }
}
