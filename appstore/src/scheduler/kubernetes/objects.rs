//! The Kubernetes objects of one instance (Secret, PVCs, Deployment, Service) and the
//! scheduler's record kept in their labels and annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, Secret, SecretEnvSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::super::Instance;
use super::super::runtime::{InstanceRecord, InstanceSpec};
use crate::repository::Visibility;

/// Label every object of every instance carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "h2o-appstore");
/// Label naming the instance.
pub const INSTANCE: &str = "appstore.h2o.ai/instance";
/// Label naming the app.
pub const APP: &str = "appstore.h2o.ai/app";
/// Label with a hash of the owner's subject (subjects do not fit label values).
pub const OWNER: &str = "appstore.h2o.ai/owner";
/// Label with a prefix of the instance token's hash, to find an instance by its token.
pub const TOKEN: &str = "appstore.h2o.ai/token";
/// Label with the instance's visibility.
pub const VISIBILITY: &str = "appstore.h2o.ai/visibility";
/// Prefix of the record's annotations.
const NOTE: &str = "appstore.h2o.ai/";
/// Annotation with the phase the launcher reported last.
pub const PHASE: &str = "appstore.h2o.ai/phase";
/// Annotation with the reason that came with it.
pub const PHASE_REASON: &str = "appstore.h2o.ai/phase-reason";
/// Annotation with the time of the last change (unix ms).
pub const UPDATED_AT: &str = "appstore.h2o.ai/updated-at";

/// Port waved listens on inside the pod.
pub const WAVE_PORT: i32 = 10101;
/// Port the app listens on inside the pod (waved talks to it).
const APP_PORT: i32 = 8000;
/// Where the bundle is unpacked.
const APP_DIR: &str = "/app";
/// The instance's working files (waved's data, the web identity token).
const WORK_DIR: &str = "/instance";
/// The web identity token file the launcher keeps fresh.
pub const TOKEN_FILE: &str = "/instance/data/web-identity-token";
/// The one container of an instance pod.
pub const CONTAINER: &str = "launcher";

/// What the runtime adds to an instance's spec: the cluster's settings.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Namespace of the objects.
    pub namespace: String,
    /// The App Store as the launcher reaches it.
    pub appstore_url: String,
    /// Type of the Service.
    pub service_type: String,
    /// Storage class of volumes; `None` for the default.
    pub storage_class: Option<String>,
    /// Service account of the pod; `None` for none (and no API token in the pod).
    pub service_account: Option<String>,
    /// Mount path of the resource volume.
    pub resource_path: String,
    /// Size of `/dev/shm` with `EnableSHM`.
    pub shm_size: String,
}

/// Name of the Deployment and Service of instance `id`.
pub fn name(id: &str) -> String {
    format!("i-{id}")
}

/// Name of the Secret of instance `id`.
fn secret_name(id: &str) -> String {
    format!("i-{id}-env")
}

/// The first 40 hex digits of SHA-256 of `text`: a label value standing for it.
pub fn label_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex_simd::encode_to_string(&digest[..20], hex_simd::AsciiCase::Lower)
}

/// Label selector of every object of instance `id`.
pub fn selector(id: &str) -> String {
    selector_of(&[(INSTANCE, id)])
}

/// Label selector of all instances, narrowed by more `key=value` terms.
pub fn selector_of(terms: &[(&str, &str)]) -> String {
    let mut s = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    for (k, v) in terms {
        s.push_str(&format!(",{k}={v}"));
    }
    s
}

fn labels(id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (INSTANCE.to_owned(), id.to_owned()),
    ])
}

fn meta(name: String, spec: &InstanceSpec, placement: &Placement) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(placement.namespace.clone()),
        labels: Some(labels(&spec.id)),
        ..ObjectMeta::default()
    }
}

/// The labels and annotations holding the scheduler's record of an instance.
pub fn record_metadata(
    record: &InstanceRecord,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let i = &record.instance;
    let mut labels = labels(&i.id);
    labels.insert(APP.to_owned(), i.app_id.clone());
    labels.insert(OWNER.to_owned(), label_hash(&i.owner_subject));
    let token = record.token_hash.get(..40).unwrap_or(&record.token_hash);
    labels.insert(TOKEN.to_owned(), token.to_owned());
    labels.insert(VISIBILITY.to_owned(), i.visibility.as_str().to_owned());
    let principal = serde_json::to_string(&i.principal).unwrap_or_default();
    let annotations = [
        ("app-name", i.app_name.clone()),
        ("app-version", i.app_version.clone()),
        ("app-title", i.app_title.clone()),
        ("owner-subject", i.owner_subject.clone()),
        ("owner-name", i.owner.clone()),
        ("principal", principal),
        ("routing-mode", i.routing_mode.clone()),
        ("created-at", i.created_at.to_string()),
        ("updated-at", i.updated_at.to_string()),
        ("token-hash", record.token_hash.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{NOTE}{k}"), v))
    .collect();
    (labels, annotations)
}

/// The scheduler's record read back from an instance's Deployment, with its token hash;
/// `None` if the Deployment carries no complete record.
pub fn record_of(deployment: &Deployment) -> Option<InstanceRecord> {
    let meta = &deployment.metadata;
    let labels = meta.labels.as_ref()?;
    let notes = meta.annotations.as_ref()?;
    let note = |k: &str| notes.get(&format!("{NOTE}{k}")).cloned();
    let number = |k: &str| note(k).and_then(|v| v.parse::<i64>().ok());
    if labels.get(MANAGED_BY.0).map(String::as_str) != Some(MANAGED_BY.1) {
        return None;
    }
    let id = labels.get(INSTANCE)?.clone();
    let created_at = number("created-at")?;
    let instance = Instance {
        app_id: labels.get(APP)?.clone(),
        app_name: note("app-name")?,
        app_version: note("app-version")?,
        app_title: note("app-title").unwrap_or_default(),
        owner_subject: note("owner-subject")?,
        owner: note("owner-name").unwrap_or_default(),
        visibility: Visibility::parse(labels.get(VISIBILITY)?)?,
        routing_mode: note("routing-mode")?,
        suspended: deployment.spec.as_ref().and_then(|s| s.replicas) == Some(0),
        created_at,
        updated_at: number("updated-at").unwrap_or(created_at),
        principal: serde_json::from_str(&note("principal")?).ok()?,
        id,
    };
    Some(InstanceRecord {
        instance,
        token_hash: note("token-hash")?,
    })
}

/// The Secret with the instance's environment.
pub fn secret(spec: &InstanceSpec, placement: &Placement) -> Secret {
    Secret {
        metadata: meta(secret_name(&spec.id), spec, placement),
        string_data: Some(spec.env.clone()),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// The instance's persistent volume claims: `(volume name, claim, mount path)`.
pub fn claims(
    spec: &InstanceSpec,
    placement: &Placement,
) -> Vec<(&'static str, PersistentVolumeClaim, String)> {
    let v = &spec.volumes;
    [
        ("volume", &v.size, v.mount.clone()),
        (
            "resources",
            &v.resource_size,
            placement.resource_path.clone(),
        ),
    ]
    .into_iter()
    .filter(|(_, size, mount)| !size.is_empty() && !mount.is_empty())
    .map(|(volume, size, mount)| {
        let claim = PersistentVolumeClaim {
            metadata: meta(format!("i-{}-{volume}", spec.id), spec, placement),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: placement.storage_class.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(size.clone()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        (volume, claim, mount)
    })
    .collect()
}

/// The Service in front of the instance's waved.
pub fn service(spec: &InstanceSpec, placement: &Placement) -> Service {
    Service {
        metadata: meta(name(&spec.id), spec, placement),
        spec: Some(ServiceSpec {
            type_: Some(placement.service_type.clone()),
            selector: Some(labels(&spec.id)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: WAVE_PORT,
                target_port: Some(IntOrString::Int(WAVE_PORT)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn empty_dir(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            size_limit: size.map(|s| Quantity(s.to_owned())),
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// The Deployment running the launcher (one replica; zero while suspended), carrying the
/// scheduler's record.
pub fn deployment(spec: &InstanceSpec, placement: &Placement) -> Deployment {
    let mut metadata = meta(name(&spec.id), spec, placement);
    if let Some(record) = &spec.record {
        let (labels, annotations) = record_metadata(record);
        metadata.labels = Some(labels);
        metadata.annotations = Some(annotations);
    }
    let resources = &placement.resource_path;
    let mut volumes = vec![
        empty_dir("app", None, None),
        empty_dir("work", None, None),
        empty_dir("tmp", None, None),
    ];
    let mut mounts = vec![
        mount("app", APP_DIR),
        mount("work", WORK_DIR),
        mount("tmp", "/tmp"),
    ];
    let claims = claims(spec, placement);
    if !claims.iter().any(|(volume, ..)| *volume == "resources") {
        volumes.push(empty_dir("resources", None, None));
        mounts.push(mount("resources", resources));
    }
    for (volume, claim, path) in &claims {
        volumes.push(Volume {
            name: (*volume).to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Volume::default()
        });
        mounts.push(mount(volume, path));
    }
    if spec.enable_shm {
        volumes.push(empty_dir("shm", Some("Memory"), Some(&placement.shm_size)));
        mounts.push(mount("shm", "/dev/shm"));
    }
    let base_url = spec
        .env
        .get("H2O_WAVE_BASE_URL")
        .cloned()
        .unwrap_or_else(|| "/".into());
    let env = [
        ("APPSTORE_LAUNCHER_URL", placement.appstore_url.clone()),
        ("APPSTORE_LAUNCHER_MODULE", spec.module.clone()),
        ("APPSTORE_LAUNCHER_APP_DIR", APP_DIR.to_owned()),
        ("APPSTORE_LAUNCHER_DATA_DIR", format!("{WORK_DIR}/data")),
        ("APPSTORE_LAUNCHER_VENV_CACHE", format!("{resources}/venvs")),
        (
            "APPSTORE_LAUNCHER_PIP_CACHE",
            format!("{resources}/pip-cache"),
        ),
        ("APPSTORE_LAUNCHER_WAVE_PORT", WAVE_PORT.to_string()),
        ("APPSTORE_LAUNCHER_APP_PORT", APP_PORT.to_string()),
        ("HOME", "/tmp".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| EnvVar {
        name: k.to_owned(),
        value: Some(v),
        ..EnvVar::default()
    })
    .collect();
    let r = &spec.resources;
    let mut limits = BTreeMap::from([("memory".to_owned(), Quantity(r.memory_limit.clone()))]);
    let mut requests = BTreeMap::new();
    if let Some(cpu) = &r.cpu_limit {
        limits.insert("cpu".into(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &r.memory_reservation {
        requests.insert("memory".into(), Quantity(memory.clone()));
    }
    if let Some(cpu) = &r.cpu_reservation {
        requests.insert("cpu".into(), Quantity(cpu.clone()));
    }
    let mut node_selector = None;
    if r.gpu_count > 0 {
        limits.insert("nvidia.com/gpu".into(), Quantity(r.gpu_count.to_string()));
        node_selector = r
            .gpu_type
            .as_ref()
            .map(|t| BTreeMap::from([("hac.h2o.ai/accelerator".to_owned(), t.clone())]));
    }
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(env),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret_name(&spec.id),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: WAVE_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some(base_url),
                port: IntOrString::Int(WAVE_PORT),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(limits),
            requests: (!requests.is_empty()).then_some(requests),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pod_labels = labels(&spec.id);
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(INSTANCE.to_owned(), spec.id.clone())])),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector,
                    service_account_name: placement.service_account.clone(),
                    automount_service_account_token: Some(placement.service_account.is_some()),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(1000),
                        run_as_group: Some(1000),
                        fs_group: Some(1000),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
