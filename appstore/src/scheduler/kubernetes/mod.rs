//! The Kubernetes runtime: each instance is a Deployment (one pod, the launcher as its main
//! process), a Service, a Secret with its environment and optional volume claims. All
//! instance state lives on those objects — the scheduler's record in the Deployment's labels
//! and annotations, the running state in the pod — so an instance created or deleted by
//! other means (kubectl) is seen as it is.

pub mod objects;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::records::{Records, Slot};
use super::runtime::{InstanceSpec, LogLines, Phase, Runtime, RuntimeError, Status, Volumes};
use super::{Instance, ScheduleError};
use crate::config::SchedulerConfig;
use crate::repository::{Visibility, now_ms};
pub use objects::Placement;
use objects::{CONTAINER, OWNER, PHASE, PHASE_REASON, TOKEN, UPDATED_AT, VISIBILITY};

/// Longest wait for one answer of the API server (writes are bounded by the scheduler's
/// write timeout as a whole).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a pod's readiness is trusted by the router before the API is asked again.
const READY_TTL: Duration = Duration::from_secs(1);

/// Instances as Kubernetes objects in one namespace.
pub struct KubernetesRuntime {
    client: kube::Client,
    /// The same cluster without a read timeout, for logs that are followed.
    follow_client: kube::Client,
    placement: Placement,
    ready: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

/// Why the cluster could not be reached at start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig file.
    #[error("cannot read the kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Neither in-cluster settings nor ~/.kube/config.
    #[error("cannot find Kubernetes settings (in-cluster or ~/.kube/config): {0}")]
    Infer(String),
    /// The client.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
}

impl KubernetesRuntime {
    /// Connects with the scheduler's settings; instances reach the App Store at
    /// `appstore_url`.
    pub async fn connect(
        config: &SchedulerConfig,
        appstore_url: String,
    ) -> Result<Self, ConnectError> {
        let k = &config.kubernetes;
        let mut kube_config = match &k.kube_config {
            Some(path) => {
                let fail = |reason: String| ConnectError::Kubeconfig {
                    path: path.clone(),
                    reason,
                };
                let file =
                    kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| ConnectError::Infer(e.to_string()))?,
        };
        kube_config.connect_timeout = Some(Duration::from_secs(10));
        let namespace = k
            .namespace
            .clone()
            .unwrap_or_else(|| kube_config.default_namespace.clone());
        tls_provider();
        let mut follow_config = kube_config.clone();
        follow_config.read_timeout = None;
        kube_config.read_timeout = Some(config.write_timeout.max(READ_TIMEOUT));
        let build = |c: kube::Config| {
            kube::Client::try_from(c).map_err(|e| ConnectError::Client(e.to_string()))
        };
        let mut runtime = Self::new(
            build(kube_config)?,
            Placement {
                namespace,
                appstore_url,
                service_type: k.service_type.clone(),
                storage_class: k.storage_class.clone(),
                service_account: k.app_service_account.clone(),
                resource_path: k.resource_path.clone(),
                shm_size: k.shm_size.clone(),
            },
        );
        runtime.follow_client = build(follow_config)?;
        Ok(runtime)
    }

    /// A runtime over `client`, placing instances as `placement` says.
    pub fn new(client: kube::Client, placement: Placement) -> Self {
        tls_provider();
        Self {
            follow_client: client.clone(),
            client,
            placement,
            ready: Mutex::default(),
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.placement.namespace)
    }

    async fn create_all(&self, spec: &InstanceSpec) -> Result<(), kube::Error> {
        let post = PostParams::default();
        let p = &self.placement;
        self.api::<Secret>()
            .create(&post, &objects::secret(spec, p))
            .await?;
        for (_, claim, _) in objects::claims(spec, p) {
            self.api::<PersistentVolumeClaim>()
                .create(&post, &claim)
                .await?;
        }
        self.api::<Deployment>()
            .create(&post, &objects::deployment(spec, p))
            .await?;
        self.api::<Service>()
            .create(&post, &objects::service(spec, p))
            .await?;
        Ok(())
    }

    /// Deletes every object labelled as `id`'s; objects already gone are fine.
    async fn delete_all(&self, id: &str) -> Result<(), kube::Error> {
        let selector = objects::selector(id);
        delete_labelled(self.api::<Service>(), &selector).await?;
        delete_labelled(self.api::<Deployment>(), &selector).await?;
        delete_labelled(self.api::<Secret>(), &selector).await?;
        delete_labelled(self.api::<PersistentVolumeClaim>(), &selector).await?;
        delete_labelled(self.api::<Pod>(), &selector).await?;
        Ok(())
    }

    async fn deployment(&self, id: &str) -> Result<Option<Deployment>, kube::Error> {
        let found = self.api::<Deployment>().get_opt(&objects::name(id)).await?;
        Ok(found.filter(|d| objects::record_of(d).is_some_and(|r| r.instance.id == id)))
    }

    async fn newest_pod(&self, id: &str) -> Result<Option<Pod>, kube::Error> {
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&objects::selector(id)))
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .max_by(|a, b| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            }))
    }

    async fn scale(&self, id: &str, replicas: i32) -> Result<(), RuntimeError> {
        let name = objects::name(id);
        let patch = json!({
            "metadata": {"annotations": {
                UPDATED_AT: now_ms().to_string(),
                PHASE: serde_json::Value::Null,
                PHASE_REASON: serde_json::Value::Null,
            }},
            "spec": {"replicas": replicas},
        });
        self.api::<Deployment>()
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| runtime_error(id, e))?;
        self.ready.lock().expect("ready cache").remove(id);
        Ok(())
    }

    async fn instances(&self, terms: &[(&str, &str)]) -> Result<Vec<Instance>, ScheduleError> {
        let list = self
            .api::<Deployment>()
            .list(&ListParams::default().labels(&objects::selector_of(terms)))
            .await
            .map_err(|e| ScheduleError::Runtime(runtime_error("", e)))?;
        let mut found: Vec<Instance> = list
            .items
            .iter()
            .filter_map(objects::record_of)
            .map(|r| r.instance)
            .collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn owned(&self, owner: &str) -> Result<Vec<Instance>, ScheduleError> {
        let hash = objects::label_hash(owner);
        let mut found = self.instances(&[(OWNER, &hash)]).await?;
        found.retain(|i| i.owner_subject == owner);
        Ok(found)
    }

    async fn annotate(&self, id: &str, patch: serde_json::Value) -> Result<(), kube::Error> {
        self.api::<Deployment>()
            .patch(
                &objects::name(id),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(drop)
    }
}

/// Chooses the TLS implementation of the Kubernetes client: the dependency tree enables
/// two, and rustls then wants one named.
fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn delete_labelled<K>(api: Api<K>, selector: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let listed = api.list(&ListParams::default().labels(selector)).await?;
    for object in listed.items {
        let Some(name) = object.meta().name.clone() else {
            continue;
        };
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A cluster error as the scheduler reports it.
fn runtime_error(id: &str, e: kube::Error) -> RuntimeError {
    match e {
        kube::Error::Api(s) if s.is_not_found() && !id.is_empty() => {
            RuntimeError::Unknown(id.to_owned())
        }
        kube::Error::Api(s) if s.is_conflict() || s.is_already_exists() => {
            RuntimeError::Conflict(s.message)
        }
        kube::Error::Api(s) => RuntimeError::Cluster(format!("{} ({})", s.message, s.code)),
        other => RuntimeError::Cluster(other.to_string()),
    }
}

/// The phase of an instance from its Deployment, its newest pod and what its launcher
/// reported.
fn status_of(deployment: &Deployment, pod: Option<&Pod>) -> Status {
    let notes = deployment.metadata.annotations.as_ref();
    let note = |k: &str| notes.and_then(|n| n.get(k)).cloned();
    let mut status = Status {
        phase: Phase::Pending,
        reason: None,
        restarts: 0,
        last_failure: None,
    };
    if deployment.spec.as_ref().and_then(|s| s.replicas) == Some(0) {
        status.phase = Phase::Suspended;
        return status;
    }
    let Some(pod) = pod else {
        status.reason = Some("waiting for a pod".into());
        return status;
    };
    let pod_status = pod.status.clone().unwrap_or_default();
    let container = pod_status
        .container_statuses
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == CONTAINER));
    if let Some(c) = container {
        status.restarts = u32::try_from(c.restart_count).unwrap_or(0);
        status.last_failure = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| {
                let at = t
                    .finished_at
                    .as_ref()
                    .map(|f| format!(" at {}", f.0))
                    .unwrap_or_default();
                let why = t.reason.as_deref().unwrap_or("terminated");
                format!("{why}: exit code {}{at}", t.exit_code)
            });
        let state = c.state.clone().unwrap_or_default();
        if let Some(waiting) = state.waiting {
            let reason = waiting.reason.unwrap_or_default();
            let text = match waiting.message {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason.clone(),
            };
            status.phase = if matches!(reason.as_str(), "ContainerCreating" | "PodInitializing") {
                Phase::Pending
            } else {
                Phase::Failed
            };
            status.reason = Some(text);
            return status;
        }
        if state.running.is_some() {
            status.phase = if c.ready {
                Phase::Running
            } else {
                note(PHASE)
                    .as_deref()
                    .and_then(Phase::reported)
                    .filter(|p| *p != Phase::Running)
                    .unwrap_or(Phase::Starting)
            };
            status.reason = (status.phase != Phase::Running)
                .then(|| note(PHASE_REASON))
                .flatten();
            return status;
        }
    }
    let unschedulable = pod_status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    status.reason = Some(match unschedulable {
        Some(c) => format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Unschedulable"),
            c.message.as_deref().unwrap_or("")
        ),
        None => pod_status.phase.unwrap_or_else(|| "Pending".into()),
    });
    status
}

#[async_trait::async_trait]
impl Runtime for KubernetesRuntime {
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        if spec.record.is_none() {
            return Err(RuntimeError::Corrupt(spec.id));
        }
        if let Err(e) = self.create_all(&spec).await {
            tracing::warn!(instance = %spec.id, error = %e, "creating the instance failed; removing what was created");
            if let Err(cleanup) = self.delete_all(&spec.id).await {
                tracing::error!(instance = %spec.id, error = %cleanup, "objects of a half-created instance are left behind");
            }
            return Err(runtime_error("", e));
        }
        Ok(())
    }

    async fn status(&self, id: &str) -> Option<Status> {
        let deployment = match self.deployment(id).await {
            Ok(d) => d?,
            Err(e) => {
                return Some(Status {
                    phase: Phase::Pending,
                    reason: Some(format!("the cluster did not answer: {e}")),
                    restarts: 0,
                    last_failure: None,
                });
            }
        };
        let pod = self.newest_pod(id).await.ok().flatten();
        Some(status_of(&deployment, pod.as_ref()))
    }

    async fn endpoint(&self, id: &str) -> Option<String> {
        if let Some((read, target)) = self.ready.lock().expect("ready cache").get(id)
            && read.elapsed() < READY_TTL
        {
            return target.clone();
        }
        let running = self
            .status(id)
            .await
            .is_some_and(|s| s.phase == Phase::Running);
        let target = running.then(|| {
            format!(
                "{}.{}.svc:{}",
                objects::name(id),
                self.placement.namespace,
                objects::WAVE_PORT
            )
        });
        let mut ready = self.ready.lock().expect("ready cache");
        if ready.len() >= 10_000 {
            ready.clear();
        }
        ready.insert(id.to_owned(), (Instant::now(), target.clone()));
        target
    }

    async fn report(&self, id: &str, phase: Phase, reason: Option<String>) {
        let patch = json!({"metadata": {"annotations": {
            PHASE: phase.as_str().to_ascii_lowercase(),
            PHASE_REASON: reason,
        }}});
        if let Err(e) = self.annotate(id, patch).await {
            tracing::warn!(instance = %id, error = %e, "could not record the launcher's phase");
        }
    }

    async fn suspend(&self, id: &str) -> Result<(), RuntimeError> {
        self.scale(id, 0).await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.scale(id, 1).await
    }

    async fn terminate(&self, id: &str) -> Result<(), RuntimeError> {
        self.ready.lock().expect("ready cache").remove(id);
        self.delete_all(id).await.map_err(|e| runtime_error(id, e))
    }

    async fn logs(&self, id: &str, previous: bool, follow: bool) -> Result<LogLines, RuntimeError> {
        let pod = self
            .newest_pod(id)
            .await
            .map_err(|e| runtime_error(id, e))?;
        let Some(name) = pod.and_then(|p| p.metadata.name) else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let params = LogParams {
            container: Some(CONTAINER.into()),
            previous,
            follow: follow && !previous,
            ..LogParams::default()
        };
        let pods: Api<Pod> = Api::namespaced(self.follow_client.clone(), &self.placement.namespace);
        let reader = match pods.log_stream(&name, &params).await {
            Ok(r) => r,
            Err(kube::Error::Api(s)) if s.code == 400 && previous => {
                return Ok(Box::pin(futures::stream::empty()));
            }
            Err(e) => return Err(runtime_error(id, e)),
        };
        let reader = Box::pin(reader);
        Ok(
            Box::pin(futures::stream::unfold(reader, |mut r| async move {
                let mut buf = vec![0; 16 * 1024];
                match r.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), r))
                    }
                    Err(e) => Some((Err(e), r)),
                }
            }))
            .boxed(),
        )
    }

    fn volume_dir(&self, _: &str, volumes: &Volumes) -> Option<PathBuf> {
        (!volumes.mount.is_empty() && !volumes.size.is_empty())
            .then(|| volumes.mount.clone().into())
    }

    fn token_file(&self, _: &str) -> PathBuf {
        objects::TOKEN_FILE.into()
    }
}

#[async_trait::async_trait]
impl Records for KubernetesRuntime {
    async fn insert(
        &self,
        instance: &Instance,
        _: &str,
        limit: i64,
    ) -> Result<Slot, ScheduleError> {
        let owned = self.owned(&instance.owner_subject).await?;
        Ok(if i64::try_from(owned.len()).unwrap_or(i64::MAX) < limit {
            Slot::Taken
        } else {
            Slot::Full
        })
    }

    async fn settle(&self, instance: &Instance, limit: i64) -> Result<Slot, ScheduleError> {
        let owned = self.owned(&instance.owner_subject).await?;
        let place = owned.iter().position(|i| i.id == instance.id);
        Ok(match place {
            Some(p) if i64::try_from(p).unwrap_or(i64::MAX) < limit => Slot::Taken,
            _ => Slot::Full,
        })
    }

    async fn remove(&self, _: &str, _: &str) -> Result<(), ScheduleError> {
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Instance>, ScheduleError> {
        let deployment = self
            .deployment(id)
            .await
            .map_err(|e| ScheduleError::Runtime(runtime_error("", e)))?;
        Ok(deployment
            .as_ref()
            .and_then(objects::record_of)
            .map(|r| r.instance))
    }

    async fn by_token_hash(&self, token_hash: &str) -> Result<Option<Instance>, ScheduleError> {
        let prefix = token_hash.get(..40).unwrap_or(token_hash);
        let list = self
            .api::<Deployment>()
            .list(&ListParams::default().labels(&objects::selector_of(&[(TOKEN, prefix)])))
            .await
            .map_err(|e| ScheduleError::Runtime(runtime_error("", e)))?;
        Ok(list
            .items
            .iter()
            .filter_map(objects::record_of)
            .find(|r| bool::from(r.token_hash.as_bytes().ct_eq(token_hash.as_bytes())))
            .map(|r| r.instance))
    }

    async fn list(
        &self,
        owner: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<Instance>, ScheduleError> {
        let mut found = match owner {
            Some(owner) => self.owned(owner).await?,
            None => self.instances(&[]).await?,
        };
        if let Some(app) = app {
            found.retain(|i| i.app_id == app);
        }
        Ok(found)
    }

    async fn set_visibility(&self, id: &str, visibility: Visibility) -> Result<(), ScheduleError> {
        let patch = json!({"metadata": {
            "labels": {VISIBILITY: visibility.as_str()},
            "annotations": {UPDATED_AT: now_ms().to_string()},
        }});
        self.annotate(id, patch)
            .await
            .map_err(|e| ScheduleError::Runtime(runtime_error(id, e)))
    }

    async fn set_suspended(&self, _: &str, _: bool) -> Result<(), ScheduleError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
