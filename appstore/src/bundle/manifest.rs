//! `app.toml` model of a `.wave` bundle: parsing and import-time validation.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Error produced while parsing or validating an `app.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// TOML syntax, type or unknown-key error; toml's message carries the line and the key.
    #[error("invalid app.toml: {0}")]
    Syntax(String),
    /// A well-formed value that breaks an import rule.
    #[error("{field}: {reason}")]
    Invalid {
        /// Path of the offending key, such as `Env[2].Name`.
        field: String,
        /// Human-readable explanation.
        reason: String,
    },
}

impl ManifestError {
    /// Path of the offending key, when the error is tied to one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Syntax(_) => None,
            Self::Invalid { field, .. } => Some(field),
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Declares a string-valued enum: case-insensitive on input, canonical wire form on output.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident, default $def:ident, $($(#[$vdoc:meta])* $var:ident => $wire:literal),+) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $var),+ }

        impl $name {
            /// Canonical wire form, as stored and shown by the API.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$var => $wire),+ }
            }

            fn parse(raw: &str) -> Option<Self> {
                if raw.is_empty() {
                    return Some(Self::$def);
                }
                [$(Self::$var),+].into_iter().find(|v| v.as_str().eq_ignore_ascii_case(raw))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::$def
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).ok_or_else(|| {
                    let known = [$($wire),+].join(", ");
                    de::Error::custom(format!("unknown value `{raw}`, expected one of {known}"))
                })
            }
        }
    };
}

wire_enum!(
    /// How instances of an app are started (`App.InstanceLifecycle`).
    Lifecycle, default OnDemand,
    /// Any allowed user starts their own instance.
    OnDemand => "ON_DEMAND",
    /// Only the owner or an admin runs instances; others visit the newest one.
    Managed => "MANAGED",
    /// No instance at all: the app is a link to an external address.
    Link => "LINK"
);

wire_enum!(
    /// How the router exposes an instance (`Runtime.RoutingMode`).
    RoutingMode, default Domain,
    /// One host name per instance.
    Domain => "DOMAIN",
    /// A path prefix `/instance/<uuid>/` on the main host.
    BaseUrl => "BASE_URL"
);

wire_enum!(
    /// What kind of process serves the app (`Runtime.AppMode`).
    AppMode, default Wave,
    /// A Wave app started next to waved.
    Wave => "wave",
    /// A plain Python web server listening on `Runtime.Port`.
    Python => "python",
    /// An admin-approved custom container image.
    Container => "container"
);

/// Parsed `app.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifest {
    /// `[App]` table.
    #[serde(rename = "App")]
    pub app: App,
    /// `[Runtime]` table, absent for most link apps.
    #[serde(rename = "Runtime")]
    pub runtime: Option<Runtime>,
    /// `[[Env]]` entries, in file order.
    #[serde(rename = "Env")]
    pub env: Vec<EnvVar>,
    /// `[[File]]` entries, in file order.
    #[serde(rename = "File")]
    pub files: Vec<FileEntry>,
    /// `[Link]` table, only for LINK apps.
    #[serde(rename = "Link")]
    pub link: Option<Link>,
}

/// `[App]` table: identity and catalogue metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct App {
    /// Name shared by all versions of the app.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// Display name.
    pub title: String,
    /// One-line summary.
    pub description: String,
    /// Bundle path of a markdown file with the long description.
    pub long_description: String,
    /// Tag names assigned on import.
    pub tags: Vec<String>,
    /// Instance lifecycle.
    pub instance_lifecycle: Lifecycle,
    /// Idle timeout override (`30m`, `-1`), see [`Timeout`].
    pub instance_timeout: String,
    /// Undocumented setup-guide file name, kept verbatim.
    pub setup_guide: String,
    /// Legacy key from old Wave docs, accepted in any shape and ignored.
    #[serde(skip_serializing)]
    pub category: Option<toml::Value>,
    /// Legacy key from old Wave docs, accepted in any shape and ignored.
    #[serde(skip_serializing)]
    pub keywords: Option<toml::Value>,
}

/// `[Runtime]` table: how an instance is run and which resources it gets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct Runtime {
    /// Python module of the app (`src.app`).
    pub module: String,
    /// Runtime version name or alias; empty means the server default.
    pub runtime_version: String,
    /// Absolute mount path of the persistent data volume.
    pub volume_mount: String,
    /// Size of the data volume (Kubernetes quantity).
    pub volume_size: String,
    /// Size of the resource volume holding the venv (Kubernetes quantity).
    pub resource_volume_size: String,
    /// Memory limit (Kubernetes quantity).
    pub memory_limit: String,
    /// Memory reservation (Kubernetes quantity).
    pub memory_reservation: String,
    /// CPU limit (Kubernetes quantity).
    #[serde(rename = "CPULimit")]
    pub cpu_limit: String,
    /// CPU reservation (Kubernetes quantity).
    #[serde(rename = "CPUReservation")]
    pub cpu_reservation: String,
    /// Number of GPUs; signed so that negative input is reported, not mis-parsed.
    #[serde(rename = "GPUCount")]
    pub gpu_count: i64,
    /// GPU type; empty means the server default.
    #[serde(rename = "GPUType")]
    pub gpu_type: String,
    /// Whether the launcher configures waved for OIDC.
    #[serde(rename = "EnableOIDC")]
    pub enable_oidc: bool,
    /// Whether the instance gets a large `/dev/shm`.
    #[serde(rename = "EnableSHM")]
    pub enable_shm: bool,
    /// Routing mode.
    pub routing_mode: RoutingMode,
    /// App mode.
    pub app_mode: AppMode,
    /// Listening port for python and container apps.
    pub port: Option<i64>,
    /// Image of a container app.
    pub custom_image: String,
    /// Arguments of a container app.
    pub app_args: Vec<String>,
    /// Entry point of a container app.
    pub app_entry_point: Vec<String>,
}

/// One `[[Env]]` entry: an environment variable for the instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value; `Some("")` is a legitimate empty value.
    pub value: Option<String>,
    /// Name of the secret holding the value.
    pub secret: String,
    /// Key inside the secret.
    pub secret_key: String,
    /// Whether the app may be imported while the secret is missing.
    pub optional: bool,
}

/// One `[[File]]` entry: a file written into the instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct FileEntry {
    /// Target path, relative paths being relative to the app directory.
    pub path: String,
    /// Literal content.
    pub value: Option<String>,
    /// Name of the secret holding the content.
    pub secret: String,
    /// Key inside the secret.
    pub secret_key: String,
    /// Whether the app may be imported while the secret is missing.
    pub optional: bool,
}

/// `[Link]` table of a LINK app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields, default)]
pub struct Link {
    /// Absolute http(s) URL the app points to.
    pub address: String,
}

/// Parses the text of an `app.toml`; rules are checked separately by [`validate`].
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))
}

/// Instance idle timeout requested by `App.InstanceTimeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Not set: the server's auto-suspend timeout applies.
    ServerDefault,
    /// `-1`: never auto-suspend.
    Never,
    /// Suspend after this much idle time.
    After(Duration),
}

/// A secret an app references; the caller checks it exists unless optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
    /// Key inside the secret.
    pub key: String,
    /// Whether import may proceed without it.
    pub optional: bool,
}

/// Settings derived from a valid manifest, with server defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Canonical runtime version name; None for LINK apps and container apps that name none.
    pub runtime: Option<String>,
    /// Instance lifecycle.
    pub lifecycle: Lifecycle,
    /// Idle timeout.
    pub timeout: Timeout,
    /// Routing mode.
    pub routing_mode: RoutingMode,
    /// App mode.
    pub app_mode: AppMode,
    /// Secrets referenced by `[[Env]]` and `[[File]]`, in file order.
    pub secret_refs: Vec<SecretRef>,
}

/// What the bundle archive contains, as far as validation cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleFacts {
    /// File paths relative to the archive root, `/`-separated.
    pub files: BTreeSet<String>,
    /// Directory paths relative to the archive root, without trailing slash.
    pub dirs: BTreeSet<String>,
}

impl BundleFacts {
    /// Builds the facts from archive entry names; names ending in `/` are directory entries.
    pub fn from_paths<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut facts = Self::default();
        for raw in paths {
            let raw = raw.as_ref();
            // Entries climbing out with `..` can never match a manifest path, so they are skipped.
            let Some(segs) = segments(raw).filter(|s| !s.is_empty()) else {
                continue;
            };
            // Zip archives may omit directory entries, so parents are derived from every path.
            for i in 1..segs.len() {
                facts.dirs.insert(segs[..i].join("/"));
            }
            if raw.ends_with('/') {
                facts.dirs.insert(segs.join("/"));
            } else {
                facts.files.insert(segs.join("/"));
            }
        }
        facts
    }
}

/// A runtime version from the server configuration (`[[RuntimeVersion]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeVersion {
    /// Canonical name used in `Runtime.RuntimeVersion`.
    pub name: String,
    /// Container image the launcher runs.
    pub image: String,
    /// Whether apps that name no runtime get this one.
    #[serde(default)]
    pub default: bool,
    /// Whether new imports naming it are refused.
    #[serde(default)]
    pub deprecated: bool,
    /// Other names accepted for it.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Server-side settings the manifest is validated against.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Known runtime versions.
    pub runtimes: Vec<RuntimeVersion>,
    /// Reserved `H2O_WAVE*`/`H2O_CLOUD*` env names apps may still set.
    pub env_allow: Vec<Regex>,
    /// Allowed GPU types; empty disables GPUs.
    pub allowed_gpu_types: Vec<String>,
    /// Patterns a container app's image must match.
    pub custom_image_allow: Vec<Regex>,
    /// Whether the importing user is an admin.
    pub importer_is_admin: bool,
    /// Absolute directory the bundle is unpacked into, without trailing slash.
    pub app_dir: String,
    /// Absolute mount point of the resource volume, without trailing slash.
    pub resource_path: String,
}

impl Policy {
    /// The default allow-list of reserved env names that apps may set.
    pub fn default_env_allow() -> Vec<Regex> {
        [
            "^H2O_WAVE_ML_.*",
            "^H2O_WAVE_PUBLIC_DIR$",
            "^H2O_WAVE_PRIVATE_DIR$",
            "^H2O_WAVE_MAX_REQUEST_SIZE$",
            "^H2O_WAVE_NO_STORE$",
            "^H2O_WAVE_SESSION_INACTIVITY_TIMEOUT$",
            "^H2O_WAVE_DATA_DIR$",
            "^H2O_WAVE_PING_INTERVAL$",
        ]
        .into_iter()
        .map(re)
        .collect()
    }
}

impl Default for Policy {
    fn default() -> Self {
        let rt = |name: &str, default: bool, deprecated: bool| RuntimeVersion {
            name: name.into(),
            image: format!("local/{name}"),
            default,
            deprecated,
            aliases: Vec::new(),
        };
        Self {
            runtimes: vec![
                rt("deb11_py310_wlatest", true, false),
                rt("deb11_py39_wlatest", false, false),
                rt("deb11_py38_wlatest", false, true),
                rt("ub2204_cuda121_cudnn8_py310_wlatest", false, false),
            ],
            env_allow: Self::default_env_allow(),
            allowed_gpu_types: Vec::new(),
            custom_image_allow: Vec::new(),
            importer_is_admin: false,
            app_dir: "/app".into(),
            resource_path: "/resources".into(),
        }
    }
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("literal regex")
}

static NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| re("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"));
static TAG_RE: LazyLock<Regex> = LazyLock::new(|| re("^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"));
static MODULE_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"));
static ENV_NAME_RE: LazyLock<Regex> = LazyLock::new(|| re("^[A-Za-z_][A-Za-z0-9_]*$"));
static SECRET_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"));
static SECRET_KEY_RE: LazyLock<Regex> = LazyLock::new(|| re("^[-A-Za-z0-9._]+$"));
static QUANTITY_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([0-9]+)(?:\.([0-9]+))?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"));

/// Maximum length of names that end up as Kubernetes labels.
const MAX_NAME: usize = 63;

/// Checks every import rule that needs no database and resolves server defaults.
pub fn validate(
    manifest: &Manifest,
    bundle: &BundleFacts,
    policy: &Policy,
) -> Result<Resolved, ManifestError> {
    let timeout = check_app(&manifest.app, bundle)?;
    let lifecycle = manifest.app.instance_lifecycle;
    let is_link = lifecycle == Lifecycle::Link;
    let link = manifest.link.as_ref();
    ensure(link.is_none() || is_link, "Link", LINK_ONLY)?;
    let address_ok = !is_link || link.is_some_and(|l| is_http_url(&l.address));
    ensure(
        address_ok,
        "Link.Address",
        "must be an absolute http(s) URL",
    )?;
    let empty = Runtime::default();
    let rt = manifest.runtime.as_ref().unwrap_or(&empty);
    let runtime = if is_link {
        ensure(*rt == empty, "Runtime", "must be empty for LINK apps")?;
        None
    } else {
        check_runtime(rt, bundle, policy)?
    };
    let mut secret_refs = check_env(&manifest.env, policy)?;
    let no_files = !is_link || manifest.files.is_empty();
    ensure(no_files, "File", "not allowed for LINK apps")?;
    secret_refs.extend(check_files(&manifest.files, policy)?);
    Ok(Resolved {
        runtime,
        lifecycle,
        timeout,
        routing_mode: rt.routing_mode,
        app_mode: rt.app_mode,
        secret_refs,
    })
}

/// Keeps each rule on one line: fails on `field` with `reason` unless `ok`.
fn ensure(ok: bool, field: &str, reason: impl Into<String>) -> Result<(), ManifestError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(field, reason))
    }
}

const TOO_LONG: &str = "must be at most 63 characters";
const NAME_RULE: &str = "must be letters, digits, `-`, `_` or `.`, ending in a letter or digit";
const SEMVER_RULE: &str = "must be a semantic version such as `1.2.3`";
const LINK_ONLY: &str = "only allowed when InstanceLifecycle is LINK";
const PORT_MODES: &str = "only allowed for python and container apps";
const ADMIN_ONLY: &str = "container apps can only be imported by an admin";
const SOURCE_RULE: &str = "set either Value or both Secret and SecretKey";
const PAIRED: &str = "VolumeMount and VolumeSize must be set together";
const PORT_RULE: &str = "a port between 1 and 65535 is required";
const TIMEOUT_RULE: &str = "must be empty, `-1` or a positive integer followed by s, m or h";

fn check_label(field: &str, value: &str) -> Result<(), ManifestError> {
    ensure(!value.is_empty(), field, "required")?;
    ensure(value.len() <= MAX_NAME, field, TOO_LONG)?;
    ensure(NAME_RE.is_match(value), field, NAME_RULE)
}

fn check_app(app: &App, bundle: &BundleFacts) -> Result<Timeout, ManifestError> {
    check_label("App.Name", &app.name)?;
    check_label("App.Version", &app.version)?;
    ensure(is_semver(&app.version), "App.Version", SEMVER_RULE)?;
    let full = format!("{}-{}", app.name, app.version);
    let ok = full.len() <= MAX_NAME && NAME_RE.is_match(&full);
    ensure(ok, "App.Version", format!("`{full}` {TOO_LONG}"))?;
    let title_ok = app.title.len() <= 256;
    ensure(title_ok, "App.Title", "must be at most 256 bytes")?;
    let desc = &app.description;
    let desc_ok = desc.len() <= 1024;
    ensure(desc_ok, "App.Description", "must be at most 1024 bytes")?;
    ensure(
        !desc.contains(['\n', '\r']),
        "App.Description",
        "must be one line",
    )?;
    ensure(app.tags.len() <= 32, "App.Tags", "at most 32 tags")?;
    let mut seen = BTreeSet::new();
    for (i, tag) in app.tags.iter().enumerate() {
        let field = &format!("App.Tags[{i}]");
        let ok = tag.len() <= MAX_NAME && TAG_RE.is_match(tag);
        ensure(ok, field, format!("invalid tag name `{tag}`"))?;
        ensure(seen.insert(tag), field, format!("duplicate tag `{tag}`"))?;
    }
    let long = &app.long_description;
    if !long.is_empty() {
        let rel = segments(long).filter(|_| !long.starts_with('/'));
        let found = rel.is_some_and(|segs| bundle.files.contains(&segs.join("/")));
        let reason = format!("`{long}` is not a relative path of a bundle file");
        ensure(found, "App.LongDescription", reason)?;
    }
    parse_timeout(&app.instance_timeout).ok_or_else(|| invalid("App.InstanceTimeout", TIMEOUT_RULE))
}

fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    let host = rest.and_then(|r| r.split(['/', '?', '#']).next());
    host.is_some_and(|h| !h.is_empty()) && !url.contains(char::is_whitespace)
}

fn check_runtime(
    rt: &Runtime,
    bundle: &BundleFacts,
    policy: &Policy,
) -> Result<Option<String>, ManifestError> {
    let container = rt.app_mode == AppMode::Container;
    // Container images bring their own entry point; every other mode starts `Module`.
    let module_ok = container || !rt.module.is_empty();
    ensure(module_ok, "Runtime.Module", "required")?;
    let ok = rt.module.is_empty() || MODULE_RE.is_match(&rt.module);
    ensure(ok, "Runtime.Module", "must be a dotted Python module path")?;
    // A container app runs its own image, so it only gets a runtime if it names one.
    let runtime = match (container, rt.runtime_version.as_str()) {
        (true, "") => None,
        (_, requested) => Some(resolve_runtime(requested, policy)?),
    };

    let quantity = |key: &str, value: &str| match value {
        "" => Ok(None),
        _ => quantity_milli(value).map(Some).ok_or_else(|| {
            let reason = format!("`{value}` is not a quantity");
            invalid(format!("Runtime.{key}"), reason)
        }),
    };
    quantity("VolumeSize", &rt.volume_size)?;
    quantity("ResourceVolumeSize", &rt.resource_volume_size)?;
    let memory = ("Memory", &rt.memory_limit, &rt.memory_reservation);
    for (kind, limit, reservation) in [memory, ("CPU", &rt.cpu_limit, &rt.cpu_reservation)] {
        let limit = quantity(&format!("{kind}Limit"), limit)?;
        let reservation = quantity(&format!("{kind}Reservation"), reservation)?;
        let over = limit.zip(reservation).is_some_and(|(l, r)| r > l);
        let reason = format!("must not exceed {kind}Limit");
        ensure(!over, &format!("Runtime.{kind}Reservation"), reason)?;
    }

    let (has_mount, has_size) = (!rt.volume_mount.is_empty(), !rt.volume_size.is_empty());
    ensure(!has_mount || has_size, "Runtime.VolumeSize", PAIRED)?;
    ensure(has_mount || !has_size, "Runtime.VolumeMount", PAIRED)?;
    if has_mount {
        check_volume_mount(&rt.volume_mount, bundle, policy)?;
    }

    let count_ok = (0..=16).contains(&rt.gpu_count);
    ensure(count_ok, "Runtime.GPUCount", "must be 0 to 16")?;
    let (gpu_type, allowed) = (&rt.gpu_type, &policy.allowed_gpu_types);
    let field = if gpu_type.is_empty() {
        "Runtime.GPUCount"
    } else {
        "Runtime.GPUType"
    };
    let enabled = !allowed.is_empty() || (rt.gpu_count == 0 && gpu_type.is_empty());
    ensure(enabled, field, "GPUs are disabled on this server")?;
    let ok = gpu_type.is_empty() || allowed.contains(gpu_type);
    ensure(ok, field, format!("must be one of: {}", allowed.join(", ")))?;

    check_app_mode(rt, policy)?;
    Ok(runtime)
}

fn resolve_runtime(requested: &str, policy: &Policy) -> Result<String, ManifestError> {
    let field = "Runtime.RuntimeVersion";
    let usable = || policy.runtimes.iter().filter(|r| !r.deprecated);
    let found = if requested.is_empty() {
        let default = policy.runtimes.iter().find(|r| r.default);
        let found = default.or_else(|| usable().next());
        found.ok_or_else(|| invalid(field, "no runtime version is configured"))?
    } else {
        let matches =
            |r: &&RuntimeVersion| r.name == requested || r.aliases.iter().any(|a| a == requested);
        let known: Vec<&str> = usable().map(|r| r.name.as_str()).collect();
        let reason = format!("unknown runtime `{requested}`; known: {}", known.join(", "));
        policy
            .runtimes
            .iter()
            .find(matches)
            .ok_or_else(|| invalid(field, reason))?
    };
    let reason = format!("`{}` is deprecated", found.name);
    ensure(!found.deprecated, field, reason)?;
    Ok(found.name.clone())
}

fn check_volume_mount(
    mount: &str,
    bundle: &BundleFacts,
    policy: &Policy,
) -> Result<(), ManifestError> {
    let field = "Runtime.VolumeMount";
    let segs = segments(mount).filter(|s| mount.starts_with('/') && !s.is_empty());
    let segs = segs.ok_or_else(|| invalid(field, "must be absolute, not `/`, without `..`"))?;
    let path = format!("/{}", segs.join("/"));
    let resources = policy.resource_path.trim_end_matches('/');
    let overlaps = within(&path, resources) || within(resources, &path);
    ensure(!overlaps, field, format!("must not overlap `{resources}`"))?;
    let app_dir = policy.app_dir.trim_end_matches('/');
    let hides_app = within(app_dir, &path);
    ensure(!hides_app, field, "must not hide the app directory")?;
    // Mounting over unpacked bundle content would hide it from the app.
    let rel = path.strip_prefix(app_dir).and_then(|r| r.strip_prefix('/'));
    let clash = rel.is_some_and(|r| bundle.dirs.contains(r) || bundle.files.contains(r));
    ensure(!clash, field, "must not exist in the bundle")
}

fn check_app_mode(rt: &Runtime, policy: &Policy) -> Result<(), ManifestError> {
    let port_ok = matches!(rt.port, Some(1..=65535));
    match rt.app_mode {
        AppMode::Wave => {
            let no_port = rt.port.is_none();
            ensure(no_port, "Runtime.Port", PORT_MODES)?;
        }
        AppMode::Python => ensure(port_ok, "Runtime.Port", PORT_RULE)?,
        AppMode::Container => {
            let admin = policy.importer_is_admin;
            ensure(admin, "Runtime.AppMode", ADMIN_ONLY)?;
            let image = &rt.custom_image;
            ensure(!image.is_empty(), "Runtime.CustomImage", "required")?;
            let allowed = policy.custom_image_allow.iter().any(|r| r.is_match(image));
            let reason = format!("`{image}` is not allowed");
            ensure(allowed, "Runtime.CustomImage", reason)?;
            return ensure(port_ok, "Runtime.Port", PORT_RULE);
        }
    }
    let only = "only for container apps";
    ensure(rt.custom_image.is_empty(), "Runtime.CustomImage", only)?;
    ensure(rt.app_args.is_empty(), "Runtime.AppArgs", only)?;
    ensure(rt.app_entry_point.is_empty(), "Runtime.AppEntryPoint", only)
}

fn check_env(env: &[EnvVar], policy: &Policy) -> Result<Vec<SecretRef>, ManifestError> {
    let mut seen = BTreeSet::new();
    let mut refs = Vec::new();
    for (i, var) in env.iter().enumerate() {
        let (field, name) = (&format!("Env[{i}].Name"), var.name.as_str());
        ensure(!name.is_empty(), field, "required")?;
        let ok = ENV_NAME_RE.is_match(name);
        ensure(ok, field, format!("invalid name `{name}`"))?;
        ensure(seen.insert(name), field, format!("duplicate name `{name}`"))?;
        // The platform configures waved and the cloud clients through these prefixes.
        let reserved = (name.starts_with("H2O_CLOUD") || name.starts_with("H2O_WAVE"))
            && name != "H2O_WAVE_APP_MODE"
            && !policy.env_allow.iter().any(|r| r.is_match(name));
        ensure(!reserved, field, format!("`{name}` is reserved"))?;
        let source = (&var.value, &*var.secret, &*var.secret_key, var.optional);
        refs.extend(check_source(&format!("Env[{i}]"), source)?);
    }
    Ok(refs)
}

fn check_files(files: &[FileEntry], policy: &Policy) -> Result<Vec<SecretRef>, ManifestError> {
    let app_dir = policy.app_dir.trim_end_matches('/');
    let resources = policy.resource_path.trim_end_matches('/');
    let mut seen = BTreeSet::new();
    let mut refs = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let (field, raw) = (&format!("File[{i}].Path"), file.path.as_str());
        ensure(!raw.is_empty(), field, "required")?;
        let segs = segments(raw).filter(|s| !s.is_empty() && !raw.ends_with('/'));
        let Some(segs) = segs else {
            return Err(invalid(field, "must name a file, without `..`"));
        };
        let nested = segs.len() > 1;
        ensure(nested, field, "directory must not be `/` or `.`")?;
        let path = match raw.starts_with('/') {
            true => format!("/{}", segs.join("/")),
            false => format!("{app_dir}/{}", segs.join("/")),
        };
        let in_resources = within(&path, resources);
        let reason = format!("must not be in `{resources}`");
        ensure(!in_resources, field, reason)?;
        let reason = format!("`{path}` is declared twice");
        ensure(seen.insert(path), field, reason)?;
        let source = (&file.value, &*file.secret, &*file.secret_key, file.optional);
        refs.extend(check_source(&format!("File[{i}]"), source)?);
    }
    Ok(refs)
}

/// Checks the `Value` / `Secret`+`SecretKey` / `Optional` combination of env and file entries.
fn check_source(
    prefix: &str,
    (value, secret, key, optional): (&Option<String>, &str, &str, bool),
) -> Result<Option<SecretRef>, ManifestError> {
    let field = |key: &str| format!("{prefix}.{key}");
    match (value, secret.is_empty(), key.is_empty()) {
        (Some(_), true, true) => {
            ensure(!optional, &field("Optional"), "only allowed with Secret").map(|()| None)
        }
        (Some(_), _, _) => Err(invalid(field("Value"), SOURCE_RULE)),
        (None, true, true) => Err(invalid(field("Value"), SOURCE_RULE)),
        (None, false, true) => Err(invalid(field("SecretKey"), "required with Secret")),
        (None, true, false) => Err(invalid(field("Secret"), "required with SecretKey")),
        (None, false, false) => {
            let ok = secret.len() <= MAX_NAME && SECRET_NAME_RE.is_match(secret);
            ensure(ok, &field("Secret"), format!("invalid name `{secret}`"))?;
            let ok = key.len() <= 253 && SECRET_KEY_RE.is_match(key);
            ensure(ok, &field("SecretKey"), format!("invalid key `{key}`"))?;
            Ok(Some(SecretRef {
                name: secret.into(),
                key: key.into(),
                optional,
            }))
        }
    }
}

/// Splits a path into its meaningful segments; None when it climbs with `..`.
fn segments(path: &str) -> Option<Vec<&str>> {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    (!segs.contains(&"..")).then_some(segs)
}

/// Whether absolute `path` is `dir` or below it; `dir` is given without trailing slash.
fn within(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn parse_timeout(raw: &str) -> Option<Timeout> {
    match raw {
        "" => return Some(Timeout::ServerDefault),
        "-1" => return Some(Timeout::Never),
        _ => {}
    }
    let scale = match raw.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        _ => return None,
    };
    // The unit is one ASCII byte, so this slice ends on a char boundary.
    let digits = &raw[..raw.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if n == 0 {
        return None;
    }
    Some(Timeout::After(Duration::from_secs(n.checked_mul(scale)?)))
}

fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let number = |s: &str| digits(s) && (s == "0" || !s.starts_with('0'));
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let core: Vec<&str> = core.split('.').collect();
    core.len() == 3
        && core.iter().all(|p| number(p))
        && pre.is_none_or(|p| {
            p.split('.')
                .all(|id| ident(id) && (!digits(id) || number(id)))
        })
        && build.is_none_or(|b| b.split('.').all(ident))
}

/// Bytes in a Kubernetes quantity such as `512Mi` or `2G`, rounded up; None if malformed.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    u64::try_from(quantity_milli(q)?.div_ceil(1_000)).ok()
}

/// Value of a Kubernetes quantity in thousandths, rounded up like Kubernetes does; None if
/// malformed or too large.
fn quantity_milli(q: &str) -> Option<u128> {
    let caps = QUANTITY_RE.captures(q)?;
    let int: u128 = caps.get(1)?.as_str().parse().ok()?;
    let frac = caps.get(2).map_or("", |m| m.as_str());
    let mult: u128 = match caps.get(3).map_or("", |m| m.as_str()) {
        "m" => 1,
        "" => 1_000,
        "k" => 1_000_000,
        "M" => 1_000_000_000,
        "G" => 1_000_000_000_000,
        "T" => 1_000_000_000_000_000,
        "P" => 1_000_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000_000,
        "Ki" => 1_000 << 10,
        "Mi" => 1_000 << 20,
        "Gi" => 1_000 << 30,
        "Ti" => 1_000 << 40,
        "Pi" => 1_000 << 50,
        "Ei" => 1_000 << 60,
        _ => return None,
    };
    let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scaled = int
        .checked_mul(scale)?
        .checked_add(frac)?
        .checked_mul(mult)?;
    Some(scaled.div_ceil(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[App]\nName = \"ai.h2o.test.hello\"\nVersion = \"0.0.1\"\n";

    /// Builds a manifest from a table template: `raw` is the whole file, `top` follows the
    /// standard `[App]`, `app` adds keys to `[App]` of a valid Wave app, `rt` adds to its `[Runtime]`.
    fn doc(template: &str, snippet: &str) -> String {
        let snippet = snippet.replace("\\n", "\n");
        match template {
            "raw" => snippet,
            "top" => format!("{HEAD}{snippet}\n"),
            "app" => format!("{HEAD}{snippet}\n[Runtime]\nModule = \"app\"\n"),
            _ => format!("{HEAD}[Runtime]\nModule = \"app\"\n{snippet}\n"),
        }
    }

    fn check_with(text: &str, policy: &Policy) -> Result<Resolved, ManifestError> {
        let bundle = BundleFacts::from_paths(["app.py", "README.md", "static/icon.png", "data/"]);
        validate(&parse(text)?, &bundle, policy)
    }

    fn check(template: &str, snippet: &str) -> Result<Resolved, ManifestError> {
        check_with(&doc(template, snippet), &Policy::default())
    }

    fn assert_field(text: &str, policy: &Policy, field: &str) {
        match check_with(text, policy) {
            Err(e) => assert_eq!(e.field(), Some(field), "{text}\n-> {e}"),
            Ok(r) => panic!("accepted, expected {field} error:\n{text}\n-> {r:?}"),
        }
    }

    fn admin() -> Policy {
        Policy {
            importer_is_admin: true,
            custom_image_allow: vec![Regex::new("^gcr.io/vorvan/h2oai/").expect("regex")],
            allowed_gpu_types: vec!["t4".into(), "a100".into()],
            ..Policy::default()
        }
    }

    /// One rule violation per line: `expected field | template | snippet` (see [`doc`]).
    const REJECTED: &str = r#"
        App.Name | raw | [App]\nVersion = "1.0.0"\n[Runtime]\nModule = "app"
        App.Name | raw | [App]\nName = "-bad"\nVersion = "0.0.1"
        App.Name | raw | [App]\nName = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"\nVersion = "0.0.1"
        App.Name | raw | [App]\nName = "bad name"\nVersion = "0.0.1"
        App.Version | raw | [App]\nName = "x"
        App.Version | raw | [App]\nName = "x"\nVersion = "1.0"
        App.Version | raw | [App]\nName = "x"\nVersion = "01.0.0"
        App.Version | raw | [App]\nName = "x"\nVersion = "1.0.0-"
        App.Version | raw | [App]\nName = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"\nVersion = "1.0.0"
        App.Description | app | Description = """a\nb"""
        App.Tags[1] | app | Tags = ["ok", "-x"]
        App.Tags[1] | app | Tags = ["ok", "ok"]
        App.Tags[0] | app | Tags = ["ends-"]
        App.LongDescription | app | LongDescription = "/README.md"
        App.LongDescription | app | LongDescription = "../README.md"
        App.LongDescription | app | LongDescription = "missing.md"
        App.LongDescription | app | LongDescription = "static"
        App.InstanceTimeout | app | InstanceTimeout = "0s"
        App.InstanceTimeout | app | InstanceTimeout = "10"
        App.InstanceTimeout | app | InstanceTimeout = "5d"
        App.InstanceTimeout | app | InstanceTimeout = "-2"
        App.InstanceTimeout | app | InstanceTimeout = "m"
        App.InstanceTimeout | app | InstanceTimeout = "1.5h"
        App.InstanceTimeout | app | InstanceTimeout = "+5m"
        App.InstanceTimeout | app | InstanceTimeout = "99999999999999999999h"
        Link | rt | [Link]\nAddress = "https://x"
        Link.Address | top | InstanceLifecycle = "link"
        Link.Address | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "ftp://x"
        Link.Address | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "http://"
        Link.Address | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "https:///path"
        Link.Address | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "example.com"
        Link.Address | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "http://a b"
        Runtime | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "https://x"\n[Runtime]\nModule = "app"
        File | top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "https://x"\n[[File]]\nPath = "a/b"\nValue = ""
        Runtime.Module | top |
        Runtime.Module | top | [Runtime]
        Runtime.Module | top | [Runtime]\nModule = "src/app.py"
        Runtime.RuntimeVersion | rt | RuntimeVersion = "deb9_py27"
        Runtime.RuntimeVersion | rt | RuntimeVersion = "deb11_py38_wlatest"
        Runtime.MemoryLimit | rt | MemoryLimit = "2GB"
        Runtime.MemoryReservation | rt | MemoryReservation = "1Gb"
        Runtime.CPULimit | rt | CPULimit = ".5"
        Runtime.CPUReservation | rt | CPUReservation = "1e3"
        Runtime.VolumeSize | rt | VolumeMount = "/data"\nVolumeSize = "1 Gi"
        Runtime.ResourceVolumeSize | rt | ResourceVolumeSize = "-1Gi"
        Runtime.CPUReservation | rt | CPULimit = "1500m"\nCPUReservation = "2"
        Runtime.MemoryReservation | rt | MemoryLimit = "1Gi"\nMemoryReservation = "1.1G"
        Runtime.VolumeSize | rt | VolumeMount = "/data"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "data"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/resources"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/resources/x"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/app"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/app/data"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/app/./static/"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/app/app.py"
        Runtime.VolumeMount | rt | VolumeSize = "1Gi"\nVolumeMount = "/a/../b"
        Runtime.GPUCount | rt | GPUCount = 17
        Runtime.GPUCount | rt | GPUCount = -1
        Runtime.GPUCount | rt | GPUCount = 1
        Runtime.GPUType | rt | GPUType = "t4"
        Runtime.Port | rt | Port = 8080
        Runtime.Port | rt | AppMode = "python"
        Runtime.Port | rt | AppMode = "python"\nPort = 70000
        Runtime.Port | rt | AppMode = "python"\nPort = 0
        Runtime.CustomImage | rt | CustomImage = "x"
        Runtime.AppArgs | rt | AppMode = "python"\nPort = 80\nAppArgs = ["x"]
        Runtime.AppEntryPoint | rt | AppEntryPoint = ["x"]
        Runtime.AppMode | rt | AppMode = "container"\nCustomImage = "gcr.io/vorvan/h2oai/x"\nPort = 1
        Env[0].Name | rt | [[Env]]\nValue = "1"
        Env[0].Name | rt | [[Env]]\nName = "1X"\nValue = "1"
        Env[1].Name | rt | [[Env]]\nName = "A"\nValue = "1"\n[[Env]]\nName = "A"\nValue = "2"
        Env[0].Name | rt | [[Env]]\nName = "H2O_WAVE_LISTEN"\nValue = ":10101"
        Env[0].Name | rt | [[Env]]\nName = "H2O_CLOUD_X"\nValue = "1"
        Env[0].Name | rt | [[Env]]\nName = "H2O_WAVEX"\nValue = "1"
        Env[0].Value | rt | [[Env]]\nName = "A"
        Env[0].Value | rt | [[Env]]\nName = "A"\nValue = "1"\nSecret = "s"
        Env[0].SecretKey | rt | [[Env]]\nName = "A"\nSecret = "s"
        Env[0].Secret | rt | [[Env]]\nName = "A"\nSecretKey = "k"
        Env[0].Optional | rt | [[Env]]\nName = "A"\nValue = "1"\nOptional = true
        Env[0].Secret | rt | [[Env]]\nName = "A"\nSecret = "My_Secret"\nSecretKey = "k"
        Env[0].Secret | rt | [[Env]]\nName = "A"\nSecret = "a..b"\nSecretKey = "k"
        Env[0].SecretKey | rt | [[Env]]\nName = "A"\nSecret = "s"\nSecretKey = "a b"
        File[0].Path | rt | [[File]]\nValue = "x"
        File[0].Path | rt | [[File]]\nPath = "x.txt"\nValue = "x"
        File[0].Path | rt | [[File]]\nPath = "./x.txt"\nValue = "x"
        File[0].Path | rt | [[File]]\nPath = "/x.txt"\nValue = "x"
        File[0].Path | rt | [[File]]\nPath = "conf/"\nValue = "x"
        File[0].Path | rt | [[File]]\nPath = "conf/../x"\nValue = "x"
        File[0].Path | rt | [[File]]\nPath = "/resources/x"\nValue = "x"
        File[1].Path | rt | [[File]]\nPath = "conf/a"\nValue = "x"\n[[File]]\nPath = "/app/conf/a"\nValue = "y"
        File[0].Value | rt | [[File]]\nPath = "conf/a"
        File[0].Value | rt | [[File]]\nPath = "conf/a"\nSecret = "s"\nSecretKey = "k"\nValue = ""
        File[0].Optional | rt | [[File]]\nPath = "conf/a"\nValue = "x"\nOptional = true
        File[0].Secret | rt | [[File]]\nPath = "conf/a"\nSecret = "S"\nSecretKey = "k"
    "#;

    /// Valid variations, one per line: `template | snippet`.
    const ACCEPTED: &str = r#"
        app | Category = "Data"\nKeywords = ["a", "b"]
        app | LongDescription = "./README.md"\nTags = ["a.b_c-d", "x"]\nTitle = "Hello"
        rt | [[Env]]\nName = "H2O_WAVE_MAX_REQUEST_SIZE"\nValue = "25MiB"
        rt | [[Env]]\nName = "H2O_WAVE_APP_MODE"\nValue = "unicast"
        rt | [[Env]]\nName = "H2O_WAVE_ML_X"\nValue = ""\n[[Env]]\nName = "AWS_REGION"\nValue = "x"
        rt | VolumeMount = "/app/state"\nVolumeSize = "1Gi"\nResourceVolumeSize = "2Gi"
        rt | MemoryLimit = "1Gi"\nMemoryReservation = "1024Mi"\nCPULimit = "1.5"\nCPUReservation = "1500m"
        rt | RoutingMode = "base_url"\nEnableOIDC = true\nEnableSHM = true\nRuntimeVersion = "deb11_py39_wlatest"
        top | InstanceLifecycle = "LINK"\n[Link]\nAddress = "https://example.com/x"\n[Runtime]
    "#;

    fn table(text: &str) -> impl Iterator<Item = Vec<&str>> {
        let lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        lines.map(|l| l.split('|').map(str::trim).collect())
    }

    #[test]
    fn every_rule_reports_its_field() {
        for row in table(REJECTED) {
            assert_field(&doc(row[1], row[2]), &Policy::default(), row[0]);
        }
        let p = &Policy::default();
        let long = |key: &str, n: usize| format!("{key} = \"{}\"", "x".repeat(n));
        assert_field(&doc("app", &long("Title", 257)), p, "App.Title");
        assert_field(
            &doc("app", &long("Description", 1025)),
            p,
            "App.Description",
        );
        let tags = format!("Tags = [{}]", vec!["\"t\""; 33].join(","));
        assert_field(&doc("app", &tags), p, "App.Tags");
        let env = |s: &str| format!("[[Env]]\nName = \"A\"\n{s}");
        let secret = env(&format!("{}\nSecretKey = \"k\"", long("Secret", 64)));
        assert_field(&doc("rt", &secret), p, "Env[0].Secret");
        let key = env(&format!("Secret = \"s\"\n{}", long("SecretKey", 254)));
        assert_field(&doc("rt", &key), p, "Env[0].SecretKey");
        let gpu = admin();
        assert_field(&doc("rt", "GPUType = \"h100\""), &gpu, "Runtime.GPUType");
        check_with(&doc("rt", "GPUCount = 2\nGPUType = \"a100\""), &gpu).expect("allowed GPU");
        let name = format!("[App]\n{}", long("Name", 64));
        let err = check("raw", &name).expect_err("too long").to_string();
        assert_eq!(err, "App.Name: must be at most 63 characters");
    }

    #[test]
    fn valid_variations_are_accepted() {
        for row in table(ACCEPTED) {
            check(row[0], row[1]).unwrap_or_else(|e| panic!("{}: {e}", row[1]));
        }
    }

    #[test]
    fn minimal_app_resolves_defaults() {
        let r = check("rt", "").expect("valid");
        assert_eq!(r.runtime.as_deref(), Some("deb11_py310_wlatest"));
        assert_eq!(r.lifecycle, Lifecycle::OnDemand);
        assert_eq!(r.timeout, Timeout::ServerDefault);
        assert_eq!(r.routing_mode, RoutingMode::Domain);
        assert_eq!(r.app_mode, AppMode::Wave);
        assert!(r.secret_refs.is_empty());
    }

    #[test]
    fn resolves_lifecycle_modes_and_timeout() {
        let app = "InstanceLifecycle = \"Managed\"\nInstanceTimeout = \"30m\"";
        let r = check("app", app).expect("managed");
        assert_eq!(r.lifecycle, Lifecycle::Managed);
        assert_eq!(r.timeout, Timeout::After(Duration::from_secs(1800)));
        let r = check("app", "InstanceTimeout = \"-1\"").expect("never");
        assert_eq!(r.timeout, Timeout::Never);
        let runtime = "AppMode = \"Python\"\nPort = 8501\nRoutingMode = \"Base_Url\"";
        let r = check("rt", runtime).expect("python");
        assert_eq!(r.app_mode, AppMode::Python);
        assert_eq!(r.routing_mode, RoutingMode::BaseUrl);
        let link = "InstanceLifecycle = \"LINK\"\n[Link]\nAddress = \"https://example.com\"";
        let r = check("top", link).expect("link");
        assert_eq!((r.lifecycle, r.runtime), (Lifecycle::Link, None));
    }

    const LLM_STUDIO: &str = r#"[App]
Name = "ai.h2o.llmstudio"
Version = "1.4.0"
Title = "LLM Studio"
InstanceLifecycle = "MANAGED"
[Runtime]
AppMode = "container"
CustomImage = "gcr.io/vorvan/h2oai/h2o-llmstudio:nightly"
Port = 10101
GPUCount = 1
VolumeMount = "/home/llmstudio/mount"
VolumeSize = "1Ti"
ResourceVolumeSize = "1Ti"
EnableSHM = true
EnableOIDC = true
RoutingMode = "BASE_URL"
AppEntryPoint = ["/bin/sh", "-c"]
AppArgs = ["make llmstudio"]
"#;

    #[test]
    fn container_app_needs_admin_and_allowed_image() {
        let r = check_with(LLM_STUDIO, &admin()).expect("valid for admin");
        assert_eq!(r.app_mode, AppMode::Container);
        assert_eq!(r.routing_mode, RoutingMode::BaseUrl);
        assert_eq!((r.lifecycle, r.runtime), (Lifecycle::Managed, None));
        let mut user = admin();
        user.importer_is_admin = false;
        assert_field(LLM_STUDIO, &user, "Runtime.AppMode");
        let other = LLM_STUDIO.replace("gcr.io/vorvan/h2oai/", "docker.io/evil/");
        assert_field(&other, &admin(), "Runtime.CustomImage");
        let no_image = LLM_STUDIO.replace("CustomImage", "# CustomImage");
        assert_field(&no_image, &admin(), "Runtime.CustomImage");
        let no_port = LLM_STUDIO.replace("Port", "# Port");
        assert_field(&no_port, &admin(), "Runtime.Port");
    }

    #[test]
    fn runtime_versions_resolve() {
        let err = check("rt", "RuntimeVersion = \"deb9_py27\"").expect_err("unknown");
        assert!(err.to_string().contains("deb11_py39_wlatest"), "{err}");
        let mut policy = Policy::default();
        policy.runtimes[1].aliases.push("py39".into());
        let r = check_with(&doc("rt", "RuntimeVersion = \"py39\""), &policy).expect("alias");
        assert_eq!(r.runtime.as_deref(), Some("deb11_py39_wlatest"));
        policy.runtimes.iter_mut().for_each(|r| r.default = false);
        let r = check_with(&doc("rt", ""), &policy).expect("first");
        assert_eq!(r.runtime.as_deref(), Some("deb11_py310_wlatest"));
        policy.runtimes.clear();
        assert_field(&doc("rt", ""), &policy, "Runtime.RuntimeVersion");
        #[derive(Deserialize)]
        struct Config {
            #[serde(rename = "RuntimeVersion")]
            runtimes: Vec<RuntimeVersion>,
        }
        let config = r#"[[RuntimeVersion]]
            Name = "a"
            Image = "i"
            Default = true
            Aliases = ["b"]"#;
        let config: Config = toml::from_str(config).expect("config");
        let rt = &config.runtimes[0];
        assert_eq!(
            (rt.default, rt.deprecated, rt.aliases.len()),
            (true, false, 1)
        );
    }

    #[test]
    fn secret_refs_are_collected_in_order() {
        let text = "[[Env]]\nName = \"TOKEN\"\nSecret = \"team.tokens\"\nSecretKey = \"api_key-1.v2\"\n\
             [[File]]\nPath = \"/etc/app/cfg.json\"\nSecret = \"cfg\"\nSecretKey = \"json\"\nOptional = true\n\
             [[File]]\nPath = \"conf/empty\"\nValue = \"\"";
        let refs = check("rt", text).expect("valid").secret_refs;
        let names: Vec<_> = refs
            .iter()
            .map(|r| (&*r.name, &*r.key, r.optional))
            .collect();
        let expected = [
            ("team.tokens", "api_key-1.v2", false),
            ("cfg", "json", true),
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn syntax_errors_name_the_key() {
        let cases = [
            ("raw", "[App]\nName = \"a\"\nVersion = 1", "Version"),
            ("app", "Colour = \"red\"", "Colour"),
            ("rt", "[Other]\nX = 1", "Other"),
            ("rt", "Modul = \"x\"", "Modul"),
            ("rt", "[[Env]]\nName = \"A\"\nValu = \"1\"", "Valu"),
            ("app", "InstanceLifecycle = \"x\"", "InstanceLifecycle"),
            ("rt", "GPUCount = \"1\"", "GPUCount"),
            ("raw", "[App\n", "line 1"),
        ];
        for (template, snippet, needle) in cases {
            match parse(&doc(template, snippet)) {
                Err(e @ ManifestError::Syntax(_)) => {
                    assert!(e.to_string().contains(needle), "{needle}: {e}");
                    assert_eq!(e.field(), None);
                }
                other => panic!("expected a syntax error for {snippet}: {other:?}"),
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(quantity_milli("1Gi"), quantity_milli("1024Mi"));
        assert_eq!(quantity_milli("1.5"), Some(1500));
        assert_eq!(quantity_milli("500m"), Some(500));
        assert_eq!(quantity_milli("0.0001"), Some(1));
        assert_eq!(quantity_milli("2k"), Some(2_000_000));
        assert_eq!(quantity_milli(&"9".repeat(40)), None);
        for q in ["", "1e3", "1.", ".5", "1Gb", "1 Gi", "-1"] {
            assert_eq!(quantity_milli(q), None, "{q}");
        }
        for v in ["0.0.1", "1.2.3-alpha.1", "1.0.0-x-y.0+build.5", "10.20.30"] {
            assert!(is_semver(v), "{v}");
        }
        for v in [
            "1.2",
            "1.2.3.4",
            "1.02.3",
            "1.2.3-01",
            "1.2.3+",
            "1.2.3-a..b",
        ] {
            assert!(!is_semver(v), "{v}");
        }
        let facts = BundleFacts::from_paths(["./a/b/c.txt", "d/", "e.py", "/"]);
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
        assert_eq!(list(&facts.files), "a/b/c.txt,e.py");
        assert_eq!(list(&facts.dirs), "a,a/b,d");
    }

    #[test]
    fn serializes_wire_forms() {
        let text = r#"[App]
            InstanceLifecycle = "managed"
            Keywords = ["k"]
            [Runtime]
            RoutingMode = "base_url"
            AppMode = "PYTHON"
            CPULimit = "1""#;
        let m = parse(text).expect("parse");
        let out = toml::to_string(&m).expect("serialize");
        let expected = [
            r#"InstanceLifecycle = "MANAGED""#,
            r#"RoutingMode = "BASE_URL""#,
        ];
        for needle in expected
            .into_iter()
            .chain([r#"AppMode = "python""#, "CPULimit = "])
        {
            assert!(out.contains(needle), "{needle} in\n{out}");
        }
        assert!(!out.contains("Keywords"));
        assert_eq!(parse(&out).expect("round trip").runtime, m.runtime);
        assert_eq!(Lifecycle::OnDemand.as_str(), "ON_DEMAND");
    }
}
