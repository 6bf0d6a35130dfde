//! What the scheduler asks of a runtime, the place instances really run: the local runtime
//! (child processes on this machine) now, Kubernetes later. The runtime is the only source of
//! truth about whether an instance runs; the database only knows that it should exist.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    /// Accepted, the launcher not started yet.
    Pending,
    /// Downloading the bundle.
    Sourcing,
    /// Installing requirements.
    Installing,
    /// Starting waved and the app.
    Starting,
    /// Serving.
    Running,
    /// The launcher failed; the runtime restarts it after a pause.
    Failed,
    /// Stopped on request; the volume is kept.
    Suspended,
}

impl Phase {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "PENDING",
            Phase::Sourcing => "SOURCING",
            Phase::Installing => "INSTALLING",
            Phase::Starting => "STARTING",
            Phase::Running => "RUNNING",
            Phase::Failed => "FAILED",
            Phase::Suspended => "SUSPENDED",
        }
    }

    /// A phase the launcher may report (lower-case names), if it is one.
    pub fn reported(s: &str) -> Option<Self> {
        Some(match s {
            "sourcing" => Phase::Sourcing,
            "installing" => Phase::Installing,
            "starting" => Phase::Starting,
            "running" => Phase::Running,
            "failed" => Phase::Failed,
            _ => return None,
        })
    }

    /// What a browser waiting for the instance is told.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Pending => "Scheduling the app",
            Phase::Sourcing => "Sourcing the Wave application",
            Phase::Installing => "Installing application dependencies",
            Phase::Starting => "Starting the application",
            Phase::Running => "Running",
            Phase::Failed => "The application failed; restarting it",
            Phase::Suspended => "The instance is suspended",
        }
    }
}

/// What the runtime knows of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The phase.
    pub phase: Phase,
    /// Why it is in that phase, when it is not plain.
    pub reason: Option<String>,
    /// How often it was restarted after failing.
    pub restarts: u32,
    /// The last failure, if any.
    pub last_failure: Option<String>,
}

/// Everything a runtime needs to start an instance.
#[derive(Clone, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// The instance id.
    pub id: String,
    /// The app's module (`Runtime.Module`).
    pub module: String,
    /// Memory limit in bytes.
    pub memory_limit: u64,
    /// The environment of the instance (the launcher passes it on to the app).
    pub env: BTreeMap<String, String>,
    /// The runtime image (from `[[RuntimeVersion]]`; empty where the runtime has none).
    #[serde(default)]
    pub image: String,
    /// CPU, memory and GPUs.
    #[serde(default)]
    pub resources: Resources,
    /// Persistent volumes asked for in app.toml.
    #[serde(default)]
    pub volumes: Volumes,
    /// Whether the instance gets a large `/dev/shm`.
    #[serde(default)]
    pub enable_shm: bool,
    /// The scheduler's record of the instance, for runtimes that keep it on their objects.
    #[serde(skip)]
    pub record: Option<InstanceRecord>,
}

/// Resources of an instance, as Kubernetes quantities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit.
    pub memory_limit: String,
    /// Memory request.
    pub memory_reservation: Option<String>,
    /// CPU limit.
    pub cpu_limit: Option<String>,
    /// CPU request.
    pub cpu_reservation: Option<String>,
    /// Number of GPUs.
    pub gpu_count: u32,
    /// GPU type (the `hac.h2o.ai/accelerator` node label).
    pub gpu_type: Option<String>,
}

/// Persistent volumes of an instance (`VolumeMount`/`VolumeSize`, `ResourceVolumeSize`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volumes {
    /// Mount path of the data volume; empty for none.
    pub mount: String,
    /// Size of the data volume.
    pub size: String,
    /// Size of the resource volume (the venv); empty for none.
    pub resource_size: String,
}

/// The scheduler's record of an instance, with the hash of its token.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    /// The instance as the API shows it.
    pub instance: super::Instance,
    /// SHA-256 of its instance token.
    pub token_hash: String,
}

impl std::fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSpec")
            .field("id", &self.id)
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

/// Why a runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such instance in this runtime.
    #[error("instance {0} is not known to the runtime")]
    Unknown(String),
    /// The runtime's own files or processes.
    #[error("runtime: {0}")]
    Io(#[from] std::io::Error),
    /// Stored state is unreadable.
    #[error("runtime state of {0} is unreadable")]
    Corrupt(String),
    /// An object of the instance exists already, or changed under us.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The cluster refused or failed a request.
    #[error("cluster: {0}")]
    Cluster(String),
}

/// Lines of an instance's log.
pub type LogLines = BoxStream<'static, std::io::Result<bytes::Bytes>>;

/// A place instances run.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Starts a new instance.
    async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError>;
    /// Its status; `None` if the runtime does not know it.
    async fn status(&self, id: &str) -> Option<Status>;
    /// Where its web server listens (`host:port`), once it runs.
    async fn endpoint(&self, id: &str) -> Option<String>;
    /// Records a phase the instance's launcher reported.
    async fn report(&self, id: &str, phase: Phase, reason: Option<String>);
    /// Stops its processes and keeps its volume.
    async fn suspend(&self, id: &str) -> Result<(), RuntimeError>;
    /// Starts a suspended instance again.
    async fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Stops it and removes everything it had.
    async fn terminate(&self, id: &str) -> Result<(), RuntimeError>;
    /// Its log: the current run's or the previous one's, following new lines if asked.
    async fn logs(&self, id: &str, previous: bool, follow: bool) -> Result<LogLines, RuntimeError>;
    /// Where the instance keeps files that survive suspend (for the app's volume), if any.
    fn volume_dir(&self, id: &str, volumes: &Volumes) -> Option<PathBuf>;
    /// Where the instance's web identity token file is.
    fn token_file(&self, id: &str) -> PathBuf;
}
