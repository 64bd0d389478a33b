//! The deploy configuration: one TOML file at the repository root (`deploy.toml`).
//!
//! Parsing is strict (`deny_unknown_fields`); every error names the file, the line and
//! column, and what was expected. Environment variables override what CI must set
//! (see [`Overrides`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use checks::config::{
    de_duration, de_positive_duration, instant_after, parse_duration, ser_duration, CheckKind,
    CheckSpec, DurationText, Where, DEFAULT_HEALTH_PATH, MAX_DURATION,
};

/// Default file name of the configuration, at the repository root.
pub const CONFIG_FILE: &str = "deploy.toml";

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path of the file it was read from.
    pub path: PathBuf,
    /// Directory that relative paths in the file are resolved against (the file's directory).
    pub root: PathBuf,
    pub region: String,
    pub application: String,
    /// AWS account id; when unset, deploy stages ask STS.
    pub account: Option<String>,
    /// Registry host override (else `<account>.dkr.ecr.<region>.amazonaws.com`).
    pub registry: Option<String>,
    pub bundle: BundleSettings,
    pub vars: BTreeMap<String, String>,
    pub images: BTreeMap<String, ImageSpec>,
    pub environments: BTreeMap<String, EnvironmentSpec>,
}

// The file as written. The doc comments of these types are the configuration reference:
// `cargo xtask docs` renders them into docs/configuration.md (a test fails when it is stale).
/// `deploy.toml`, at the repository root (`--config PATH` or `DEPLOY_CONFIG` for another file).
/// Unknown keys are errors; relative paths are resolved against the file's directory.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// AWS region of the application, e.g. `"us-west-2"`. `DEPLOY_REGION`, else `AWS_REGION`,
    /// overrides it when set.
    region: String,
    /// The Elastic Beanstalk application name.
    application: String,
    /// AWS account id (12 digits). Else `DEPLOY_ACCOUNT`, else STS `GetCallerIdentity` with
    /// the credentials at hand. `DEPLOY_ACCOUNT` overrides it when set.
    #[serde(default)]
    account: Option<String>,
    /// Registry host of the images instead of the account's ECR host
    /// (`<account>.dkr.ecr.<region>.amazonaws.com`). `DEPLOY_REGISTRY` overrides it when set.
    #[serde(default)]
    registry: Option<String>,
    /// Where the bundle's inputs are and where its outputs go.
    #[serde(default)]
    bundle: BundleSettings,
    /// Values for `${var.NAME}` in the template, for every environment.
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// The images the template refers to as `${image.NAME}`, by name.
    #[schemars(with = "BTreeMap<String, ImageSpec>")]
    images: BTreeMap<String, Spanned<ImageSpec>>,
    /// The deploy environments, by name (`--env NAME`, or `DEPLOY_ENV`); at least one.
    #[schemars(with = "BTreeMap<String, EnvironmentSpec>")]
    environments: BTreeMap<String, Spanned<EnvironmentSpec>>,
}

/// The JSON schema of `deploy.toml`, from the types above and their doc comments.
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(ConfigFile)
}

/// Where the bundle's inputs are and where its outputs go, relative to the config's directory.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BundleSettings {
    /// The Dockerrun v2 template rendered into `Dockerrun.aws.json`.
    pub template: PathBuf,
    /// The `.ebextensions` directory put in the bundle.
    pub ebextensions: PathBuf,
    /// The `.platform` directory (hooks) put in the bundle.
    pub platform: PathBuf,
    /// Files left out of the bundle (gitignore syntax, patterns relative to the config's
    /// directory); a missing file excludes nothing.
    pub ebignore: PathBuf,
    /// Bundles are written to `<out_dir>/<environment>/`.
    pub out_dir: PathBuf,
}

impl Default for BundleSettings {
    fn default() -> Self {
        Self {
            template: "Dockerrun.template.json".into(),
            ebextensions: ".ebextensions".into(),
            platform: ".platform".into(),
            ebignore: ".ebignore".into(),
            out_dir: "target/deploy".into(),
        }
    }
}

/// An image the template refers to as `${image.NAME}`.
///
/// With `build`, this repository builds it and pushes it to the account's ECR repository
/// `repository`, tagged with the release name. Without, it is external: `repository` (a
/// repository in the account's ECR, or a full reference with a registry host) at `tag`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Repository name in the account's ECR (no host); for an external image also a full
    /// `host/path` on another registry.
    pub repository: String,
    /// Tag of an external image (required without `build`, refused with it: built images are
    /// tagged with the release name).
    #[serde(default)]
    pub tag: Option<String>,
    /// How this repository builds the image; without it the image is external and only
    /// checked to exist.
    #[serde(default)]
    pub build: Option<BuildSpec>,
    /// Build from a pinned git source instead of this repository's tree: `build.context` and
    /// `build.dockerfile` are then relative to the fetched tree (see docs/build-and-push.md).
    #[serde(default)]
    pub source: Option<SourceSpec>,
}

/// A git source an image is built from: `source = { git = "URL", rev = "TAG_OR_SHA" }`.
///
/// Fetched with the `git` CLI into `target/sources/` (one mirror per URL, one tree per
/// commit, both reused); the commit `rev` resolves to is recorded in the image labels, the
/// release and the EB version description. The tree is unpacked with `git archive`, which
/// leaves git submodules out: an image that needs a submodule's files cannot use this source.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Repository URL (`https://`, `ssh://`, `git://`, `file://` or `user@host:path`).
    /// Credentials in it are used by git but never printed.
    pub git: String,
    /// A tag or a commit id (pinned); a branch name builds its current head and is warned
    /// about, since it is not pinned.
    pub rev: String,
}

impl ImageSpec {
    /// True when the repository names its own registry host (`host[:port]/path`).
    pub fn has_registry_host(&self) -> bool {
        crate::image::reference::registry_of(&self.repository).is_some()
    }
}

/// How to build an image of this repository.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// Build context directory, relative to the config's directory.
    pub context: PathBuf,
    /// Dockerfile, relative to the config's directory (default: `<context>/Dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<PathBuf>,
    /// Target stage of a multi-stage Dockerfile.
    #[serde(default)]
    pub target: Option<String>,
    /// Build arguments (`ARG` values).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Platform to build for.
    #[serde(default = "default_platform")]
    pub platform: String,
}

fn default_platform() -> String {
    "linux/amd64".into()
}

/// Where an environment runs.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// AWS Elastic Beanstalk.
    #[default]
    Aws,
    /// The local Docker Engine.
    Local,
}

/// One deploy environment (`[environments.NAME]`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// Where the environment runs: `"aws"` (Elastic Beanstalk) or `"local"` (the local
    /// Docker Engine).
    #[serde(default)]
    pub target: Target,
    /// The Elastic Beanstalk environment name (required for `target = "aws"`).
    #[serde(default)]
    pub eb_environment: Option<String>,
    /// S3 bucket for bundles; else the EB storage location (`CreateStorageLocation`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Base URL of the deployed application; else `http://<environment CNAME>`.
    #[serde(default)]
    pub url: Option<String>,
    /// Values for `${var.NAME}`, over the top-level `[vars]`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Deadlines of the waiting stages.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Lowest enhanced-health status that counts as healthy: `"Ok"` accepts only Ok, `"Info"`
    /// (the default) also Info, which EB reports while and just after an operation runs,
    /// `"Warning"` also Warning (Degraded, Severe and a Red colour always fail).
    #[serde(default)]
    pub health_threshold: HealthThreshold,
    /// Redeploy the previous version when the deploy or verify fails.
    #[serde(default = "yes")]
    pub rollback: bool,
    /// Checks run by the verify stage, in order.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Images that stand in for others in this environment (`[environments.NAME.images]`):
    /// the local target cannot pull the external images, so it runs a built one instead.
    #[serde(default)]
    pub images: BTreeMap<String, ImageOverride>,
    /// Local target only: added to every `hostPort` of the Dockerrun file, so that host port
    /// 80 becomes 8080 with `host_port_offset = 8000` (ports below 1024 need root).
    #[serde(default)]
    pub host_port_offset: u16,
    /// Environment properties that must exist on the environment before a deploy, by name
    /// (values are never read into output); unset means Antenna's list (the default shown).
    #[serde(default)]
    #[schemars(default = "antenna_required_properties")]
    pub required: Option<Vec<String>>,
    /// Plain environment properties (`[environments.NAME.properties]`): name → value,
    /// `${var.NAME}` allowed. A value that looks like a secret is refused: declare it in
    /// `secrets`. `env apply` sets them; `env diff` shows what would change.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Secret environment properties (`[environments.NAME.secrets]`): name → where the value
    /// lives (`{ secret = "NAME or ARN", key = "JSON key" }` in Secrets Manager, or
    /// `{ parameter = "/NAME" }` in SSM Parameter Store). EB resolves them on the instances.
    #[serde(default)]
    pub secrets: BTreeMap<String, crate::envprops::SecretRef>,
    /// EC2 instance type of the environment (`t3.medium`): lint checks that the containers'
    /// memory fits it (rules DR018, DR019). Unset: not checked.
    #[serde(default)]
    pub instance_type: Option<String>,
}

/// The environment properties Antenna's production settings cannot start without: what
/// `config/settings/production.py` and `base.py` read with no default, plus
/// `DJANGO_SETTINGS_MODULE` (else Django loads the local settings) and `REDIS_URL` (its
/// default, none, leaves the cache and Celery's result backend without a server).
pub const ANTENNA_REQUIRED_PROPERTIES: &[&str] = &[
    "DJANGO_SETTINGS_MODULE",
    "DJANGO_SECRET_KEY",
    "DJANGO_ADMIN_URL",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "SENTRY_DSN",
    "SENDGRID_API_KEY",
    "DJANGO_AWS_ACCESS_KEY_ID",
    "DJANGO_AWS_SECRET_ACCESS_KEY",
    "DJANGO_AWS_STORAGE_BUCKET_NAME",
];

/// [`ANTENNA_REQUIRED_PROPERTIES`] as the value of an unset `required` (and as the
/// reference shows its default).
fn antenna_required_properties() -> Option<Vec<String>> {
    Some(
        ANTENNA_REQUIRED_PROPERTIES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

impl EnvironmentSpec {
    /// The names `doctor` checks before a deploy: `required` (else Antenna's list), and every
    /// name declared in `properties` and `secrets`; sorted, without duplicates.
    /// The names of `required` (Antenna's list when unset), without the declared properties.
    pub fn required_list(&self) -> Vec<String> {
        self.required
            .clone()
            .or_else(antenna_required_properties)
            .unwrap_or_default()
    }

    pub fn required_properties(&self) -> Vec<String> {
        let listed = self
            .required
            .clone()
            .or_else(antenna_required_properties)
            .unwrap_or_default();
        let mut names: std::collections::BTreeSet<String> = listed.into_iter().collect();
        names.extend(self.properties.keys().cloned());
        names.extend(self.secrets.keys().cloned());
        names.into_iter().collect()
    }
}

/// `[environments.NAME.images.IMAGE]`: run another image of `[images]` in place of `IMAGE`.
///
/// ```toml fragment
/// [environments.local.images]
/// awscli = { image = "backend" }
/// ml-backend-minimal = { image = "backend", command = ["/start-ml-backend"] }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageOverride {
    /// Name of the image (in `[images]`) to run instead.
    pub image: String,
    /// Command for the containers of the replaced image that set none in the Dockerrun file
    /// (the stand-in's default command would play the wrong role).
    #[serde(default)]
    pub command: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// Deadlines of the waiting stages.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// How long to wait for the deploy's verdict (`--deadline` overrides it).
    #[serde(
        deserialize_with = "de_positive_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub deploy: Duration,
    /// How long to wait for EB to process a new application version.
    #[serde(
        deserialize_with = "de_positive_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub version: Duration,
    /// How long to wait for another deploy in progress (`--lock-wait` overrides it).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    #[schemars(with = "DurationText")]
    pub lock_wait: Duration,
    /// Upper bound of every check's `timeout` (checks run concurrently, so the verify stage
    /// takes at most about this long).
    #[serde(
        deserialize_with = "de_positive_duration",
        serialize_with = "ser_duration"
    )]
    #[schemars(with = "DurationText")]
    pub verify: Duration,
    /// How long enhanced health may take to reach the threshold once the environment is
    /// Ready with the new version.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    #[schemars(with = "DurationText")]
    pub health_settle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            deploy: Duration::from_secs(30 * 60),
            version: Duration::from_secs(10 * 60),
            lock_wait: Duration::from_secs(10 * 60),
            verify: Duration::from_secs(5 * 60),
            health_settle: Duration::from_secs(5 * 60),
        }
    }
}

/// Enhanced health statuses, best first, as EB reports them.
#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Default,
)]
pub enum HealthThreshold {
    Ok,
    /// The default: EB reports `Info` (Green) while and just after an operation runs
    /// ("Application update completed 20 seconds ago…"), so a stricter default would fail or
    /// stall healthy deploys.
    #[default]
    Info,
    Warning,
}

/// An AWS region code such as `us-west-2` or `us-gov-east-1` (not an availability zone, not
/// a display name).
pub fn check_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[0].len() == 2
        && parts.last().is_some_and(|n| {
            !n.is_empty() && n.len() <= 2 && n.bytes().all(|b| b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region code: expected one such as \"us-west-2\" or \"eu-central-1\" (a region, not an availability zone such as \"us-west-2a\")"
        ))
    }
}

/// An Elastic Beanstalk application name: 1 to 100 characters.
pub fn check_application(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if name.trim().is_empty() {
        return Err("is empty: expected the Elastic Beanstalk application name".into());
    }
    if n > 100 {
        return Err(format!(
            "is {n} characters long: Elastic Beanstalk allows 1 to 100"
        ));
    }
    if name.chars().any(|c| c.is_control() || c == '/') {
        return Err(format!(
            "{name:?} contains a control character or '/', which Elastic Beanstalk refuses"
        ));
    }
    Ok(())
}

/// An Elastic Beanstalk environment name: 4 to 40 letters, digits and hyphens, not starting
/// or ending with a hyphen.
pub fn check_eb_environment(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if !(4..=40).contains(&n) {
        return Err(format!(
            "{name:?} is {n} characters long: Elastic Beanstalk environment names have 4 to 40"
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "{name:?}: Elastic Beanstalk environment names are letters, digits and hyphens, and do not start or end with a hyphen"
        ));
    }
    Ok(())
}

/// A 12-digit AWS account id.
pub fn check_account(account: &str) -> Result<(), String> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "{account:?} is not an AWS account id: expected 12 digits such as \"123456789012\""
        ))
    }
}

/// An S3 bucket name, by S3's naming rules for general purpose buckets.
pub fn check_bucket(bucket: &str) -> Result<(), String> {
    let why = if !(3..=63).contains(&bucket.len()) {
        Some("must be 3 to 63 characters long")
    } else if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        Some("may only contain lowercase letters, digits, dots and hyphens")
    } else if !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("must start and end with a letter or a digit")
    } else if bucket.contains("..") {
        Some("must not contain two dots in a row")
    } else if bucket.split('.').count() == 4 && bucket.split('.').all(|p| p.parse::<u8>().is_ok()) {
        Some("must not look like an IP address")
    } else if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|p| bucket.starts_with(p))
    {
        Some("must not start with xn--, sthree- or amzn-s3-demo-")
    } else if ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .any(|s| bucket.ends_with(s))
    {
        Some("must not end with -s3alias, --ol-s3, .mrap, --x-s3 or --table-s3")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!(
            "{bucket:?} is not a valid S3 bucket name: it {why}"
        )),
        None => Ok(()),
    }
}

/// An `http://` or `https://` URL with a host (credentials in it are masked in the message).
pub fn check_url(text: &str) -> Result<(), String> {
    let masked = crate::verify::mask_url(text);
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Err(format!(
            "{masked} is not an http:// or https:// URL (scheme {:?})",
            u.scheme()
        )),
        Ok(_) => Err(format!("{masked} has no host")),
        Err(e) => Err(format!(
            "{masked} is not a URL ({e}): expected one such as \"https://antenna.example.org\""
        )),
    }
}

/// `images.NAME.source`: a git URL git can fetch, a rev that can name a tag, branch or
/// commit, and a `build` table whose paths stay inside the fetched tree.
fn check_source(name: &str, image: &ImageSpec, source: &SourceSpec) -> Result<(), String> {
    if image.tag.is_some() {
        return Err(format!("images.{name}.source: an external image (with `tag`) is not built, so it has no source: remove `source`, or replace `tag` with a `build` table"));
    }
    let Some(build) = &image.build else {
        return Err(format!("images.{name}.source: a source needs a `build` table that says what to build in it, such as build = {{ context = \".\", dockerfile = \"compose/production/django/Dockerfile\" }}"));
    };
    crate::image::source::check_git_url(&source.git)
        .map_err(|m| format!("images.{name}.source.git: {m}"))?;
    check_rev(&source.rev).map_err(|m| format!("images.{name}.source.rev: {m}"))?;
    let inside = |p: &Path| {
        !p.is_absolute()
            && p.components()
                .all(|c| !matches!(c, std::path::Component::ParentDir))
    };
    if !inside(&build.context) {
        return Err(format!("images.{name}.build.context: with `source`, paths are relative to the fetched tree: {:?} must be relative and stay inside it (no `..`)", build.context.display().to_string()));
    }
    if let Some(d) = build.dockerfile.as_deref().filter(|d| !inside(d)) {
        return Err(format!("images.{name}.build.dockerfile: with `source`, paths are relative to the fetched tree: {:?} must be relative and stay inside it (no `..`)", d.display().to_string()));
    }
    Ok(())
}

/// A rev git can resolve as a tag, a branch or a commit id (git's ref name rules, and never
/// an option).
fn check_rev(rev: &str) -> Result<(), String> {
    const HINT: &str = "use a tag (\"v1.2.0\") or a full commit id";
    if rev.trim().is_empty() {
        return Err(format!("is empty: {HINT}"));
    }
    let bad = rev.starts_with('-')
        || rev.starts_with('/')
        || rev.ends_with('/')
        || rev.ends_with('.')
        || rev.ends_with(".lock")
        || rev.contains("..")
        || rev.contains("@{")
        || rev.contains("//")
        || rev
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    if bad {
        return Err(format!("{rev:?} is not a tag, branch or commit id: {HINT}"));
    }
    Ok(())
}

/// The name of an environment variable: letters, digits and `_`, not starting with a digit.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(
            "is empty: expected the name of an environment variable, such as \"REDIS_URL\"".into(),
        );
    }
    if name.starts_with(|c: char| c.is_ascii_digit())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "{name:?} is not an environment variable name: letters, digits and '_'"
        ));
    }
    Ok(())
}

/// Values that CI sets through the environment, over the file's.
///
/// | variable | overrides |
/// |---|---|
/// | `DEPLOY_REGION` (else `AWS_REGION`) | `region` |
/// | `DEPLOY_ACCOUNT` | `account` |
/// | `DEPLOY_REGISTRY` | `registry` |
/// | `DEPLOY_BUCKET` | the selected environment's `bucket` |
/// | `DEPLOY_URL` | the selected environment's `url` |
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub region: Option<String>,
    pub account: Option<String>,
    pub registry: Option<String>,
    pub bucket: Option<String>,
    pub url: Option<String>,
}

impl Overrides {
    /// Reads the documented variables; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            region: var("DEPLOY_REGION").or_else(|| var("AWS_REGION")),
            account: var("DEPLOY_ACCOUNT"),
            registry: var("DEPLOY_REGISTRY"),
            bucket: var("DEPLOY_BUCKET"),
            url: var("DEPLOY_URL"),
        }
    }
}

/// A configuration error: which file, where, and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {}: {reason}{}", path.display(), if *not_found { "\n  hint: run from the repository root, or pass --config PATH" } else { "" })]
    Read {
        path: PathBuf,
        reason: String,
        not_found: bool,
    },
    #[error("{variable}: {message}\n  hint: {variable} overrides a value of {}; fix it or unset it", path.display())]
    Variable {
        path: PathBuf,
        variable: String,
        message: String,
    },
    #[error("{}: {message}", location(path, *line, *column))]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("unknown environment {name:?} in {}; known environments: {}", path.display(), known.join(", "))]
    UnknownEnvironment {
        path: PathBuf,
        name: String,
        known: Vec<String>,
    },
    #[error("environment {name:?} in {} runs on the local Docker Engine; `{command}` works on Elastic Beanstalk environments only: {}", path.display(), if aws.is_empty() { "this file has none".to_string() } else { format!("pick one of {}", aws.join(", ")) })]
    NotAws {
        path: PathBuf,
        name: String,
        command: String,
        aws: Vec<String>,
    },
}

fn location(path: &Path, line: usize, column: usize) -> String {
    if line == 0 {
        path.display().to_string()
    } else {
        format!("{}:{line}:{column}", path.display())
    }
}

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

impl Config {
    /// Reads and validates the file at `path`, then applies `overrides`.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
            not_found: e.kind() == std::io::ErrorKind::NotFound,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let prefix = String::from_utf8_lossy(&bytes[..good]);
            let (line, column) = line_col(&prefix, good);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message: "the file is not UTF-8 text: save it as UTF-8".into(),
            }
        })?;
        let mut config = Self::parse(path, &text)?;
        config.apply(overrides)?;
        Ok(config)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let toml_error = |e: toml::de::Error, path: Option<String>| {
            let offset = e.span().map_or(0, |s| s.start);
            let mut message = e.message().trim_end().to_string();
            // The key the value belongs to, unless the message names it already.
            if let Some(path) =
                path.filter(|p| !p.is_empty() && p != "?" && !message.starts_with("unknown field"))
            {
                message = format!("{path}: {message}");
            }
            if message.contains("missing field") {
                message.push_str(&format!("\n  hint: {}", SHAPE_HINT));
            }
            invalid(offset, message)
        };
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(e, None))?;
        let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
            // `Spanned` shows in the path as a private field: not part of the key.
            let path = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            toml_error(e.into_inner(), Some(path))
        })?;

        let top = |key: &str| {
            let needle = format!("\n{key}");
            text.find(&needle).map_or(0, |i| i + 1)
        };
        check_region(&file.region).map_err(|m| invalid(top("region"), format!("region: {m}")))?;
        check_application(&file.application)
            .map_err(|m| invalid(top("application"), format!("application: {m}")))?;
        if let Some(a) = &file.account {
            check_account(a).map_err(|m| invalid(top("account"), format!("account: {m}")))?;
        }
        for (name, spanned) in &file.images {
            let image = spanned.get_ref();
            let at = spanned.span().start;
            if !valid_name(name) {
                return Err(invalid(at, format!("image name {name:?} must be letters, digits, '-' or '_' (it is used as ${{image.{name}}})")));
            }
            if let Some(source) = &image.source {
                check_source(name, image, source).map_err(|m| invalid(at, m))?;
            }
            match (&image.build, &image.tag) {
                (Some(_), Some(_)) => {
                    return Err(invalid(at, format!("images.{name}: `tag` is set on an image this repository builds; built images are tagged with the release name: remove `tag`")));
                }
                (Some(_), None) if image.has_registry_host() => {
                    return Err(invalid(at, format!("images.{name}: a built image is pushed to the account's ECR: `repository` must be a repository name without a registry host, not {:?}", image.repository)));
                }
                (None, None) => {
                    return Err(invalid(at, format!("images.{name}: an external image needs `tag` (or a `build` table if this repository builds it)")));
                }
                _ => {}
            }
            if image.repository.trim().is_empty() || image.repository.contains(char::is_whitespace)
            {
                return Err(invalid(at, format!("images.{name}: `repository` must be a non-empty repository name without spaces")));
            }
        }
        if file.environments.is_empty() {
            return Err(invalid(
                0,
                "no environments: add at least one [environments.NAME] table".into(),
            ));
        }
        for (name, spanned) in &file.environments {
            let env = spanned.get_ref();
            let at = spanned.span().start;
            if env.target == Target::Aws && env.eb_environment.as_deref().is_none_or(str::is_empty)
            {
                return Err(invalid(at, format!("environments.{name}: `eb_environment` (the Elastic Beanstalk environment name) is required when target = \"aws\"")));
            }
            if let Some(eb) = &env.eb_environment {
                check_eb_environment(eb)
                    .map_err(|m| invalid(at, format!("environments.{name}.eb_environment: {m}")))?;
            }
            if let Some(b) = &env.bucket {
                check_bucket(b)
                    .map_err(|m| invalid(at, format!("environments.{name}.bucket: {m}")))?;
            }
            if let Some(u) = &env.url {
                check_url(u).map_err(|m| invalid(at, format!("environments.{name}.url: {m}")))?;
            }
            for (i, check) in env.checks.iter().enumerate() {
                let key = format!("environments.{name}.checks[{i}]");
                for (field, value) in check.kind.variables() {
                    check_variable_name(value)
                        .map_err(|m| invalid(at, format!("{key}.{field}: {m}")))?;
                }
                match &check.kind {
                    CheckKind::Http {
                        url, expect_status, ..
                    } => {
                        if !(100..=599).contains(expect_status) {
                            return Err(invalid(at, format!("{key}.expect_status: {expect_status} is not an HTTP status: expected 100-599 (usually 200)")));
                        }
                        if let Some(u) = url {
                            check_url(u).map_err(|m| invalid(at, format!("{key}.url: {m}")))?;
                        }
                    }
                    CheckKind::Flower { url: Some(u), .. } => {
                        check_url(u).map_err(|m| invalid(at, format!("{key}.url: {m}")))?;
                    }
                    _ => {}
                }
            }
            if env.target != Target::Local && env.host_port_offset != 0 {
                return Err(invalid(at, format!("environments.{name}: `host_port_offset` only applies to target = \"local\"; remove it")));
            }
            for (replaced, stand_in) in &env.images {
                if !file.images.contains_key(replaced) {
                    return Err(invalid(at, format!("environments.{name}.images.{replaced}: no image {replaced:?} in [images] to replace; known images: {}", file.images.keys().cloned().collect::<Vec<_>>().join(", "))));
                }
                if !file.images.contains_key(&stand_in.image) {
                    return Err(invalid(at, format!("environments.{name}.images.{replaced}: `image` = {:?} is not in [images]; known images: {}", stand_in.image, file.images.keys().cloned().collect::<Vec<_>>().join(", "))));
                }
                if stand_in.command.as_ref().is_some_and(Vec::is_empty) {
                    return Err(invalid(at, format!("environments.{name}.images.{replaced}: `command` is empty: give the program and its arguments, or remove it")));
                }
            }
            let mut vars = file.vars.clone();
            vars.extend(env.vars.clone());
            crate::envprops::validate(name, &env.properties, &env.secrets, &vars)
                .map_err(|m| invalid(at, m))?;
            for (i, check) in env.checks.iter().enumerate() {
                if let CheckKind::Http {
                    path: p, url: None, ..
                } = &check.kind
                {
                    if !p.starts_with('/') {
                        return Err(invalid(at, format!("environments.{name}.checks[{i}]: `path` must start with '/', got {p:?}")));
                    }
                }
            }
        }

        let root = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(Config {
            path: path.to_path_buf(),
            root,
            region: file.region,
            application: file.application,
            account: file.account,
            registry: file.registry,
            bundle: file.bundle,
            vars: file.vars,
            images: file
                .images
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
            environments: file
                .environments
                .into_iter()
                .map(|(k, v)| (k, v.into_inner()))
                .collect(),
        })
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        let bad = |variable: &str, message: String| ConfigError::Variable {
            path: self.path.clone(),
            variable: variable.to_string(),
            message,
        };
        if let Some(v) = &o.region {
            let var = if std::env::var("DEPLOY_REGION").is_ok_and(|x| !x.trim().is_empty()) {
                "DEPLOY_REGION"
            } else {
                "AWS_REGION"
            };
            check_region(v).map_err(|m| bad(var, m))?;
        }
        if let Some(v) = &o.account {
            check_account(v).map_err(|m| bad("DEPLOY_ACCOUNT", m))?;
        }
        if let Some(v) = &o.bucket {
            check_bucket(v).map_err(|m| bad("DEPLOY_BUCKET", m))?;
        }
        if let Some(v) = &o.url {
            check_url(v).map_err(|m| bad("DEPLOY_URL", m))?;
        }
        if let Some(v) = &o.region {
            self.region = v.clone();
        }
        if let Some(v) = &o.account {
            self.account = Some(v.clone());
        }
        if let Some(v) = &o.registry {
            self.registry = Some(v.clone());
        }
        for env in self.environments.values_mut() {
            if let Some(v) = &o.bucket {
                env.bucket = Some(v.clone());
            }
            if let Some(v) = &o.url {
                env.url = Some(v.clone());
            }
        }
        Ok(())
    }

    /// The environment called `name`, or an error that lists the known ones.
    pub fn environment(&self, name: &str) -> Result<&EnvironmentSpec, ConfigError> {
        self.environments
            .get(name)
            .ok_or_else(|| ConfigError::UnknownEnvironment {
                path: self.path.clone(),
                name: name.to_string(),
                known: self.environments.keys().cloned().collect(),
            })
    }

    /// The names of the environments that run on Elastic Beanstalk, sorted.
    pub fn aws_environment_names(&self) -> Vec<String> {
        self.environments
            .iter()
            .filter(|(_, e)| e.target == Target::Aws)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A path from the file, resolved against the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    /// The images this repository builds.
    pub fn built_images(&self) -> impl Iterator<Item = (&str, &ImageSpec, &BuildSpec)> {
        self.images
            .iter()
            .filter_map(|(n, i)| i.build.as_ref().map(|b| (n.as_str(), i, b)))
    }

    /// The images this repository does not build.
    pub fn external_images(&self) -> impl Iterator<Item = (&str, &ImageSpec)> {
        self.images
            .iter()
            .filter(|(_, i)| i.build.is_none())
            .map(|(n, i)| (n.as_str(), i))
    }

    /// The account's registry host: the override, else ECR's host (`None` without an account).
    pub fn registry_host(&self) -> Option<String> {
        self.registry.clone().or_else(|| {
            self.account
                .as_ref()
                .map(|a| format!("{a}.dkr.ecr.{}.amazonaws.com", self.region))
        })
    }

    /// Values for `${var.NAME}` in environment `env`: top-level `[vars]`, then the environment's.
    pub fn vars_for(&self, env: &EnvironmentSpec) -> BTreeMap<String, String> {
        let mut vars = self.vars.clone();
        vars.extend(env.vars.clone());
        vars
    }
}

const SHAPE_HINT: &str = "expected at least `region`, `application`, `[images.NAME]` with `repository` (and `build` or `tag`), and `[environments.NAME]`; see docs/configuration.md";

/// Names used in placeholders: ASCII letters, digits, `-` and `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Aws => "aws",
            Target::Local => "local",
        })
    }
}

/// The deploy.toml the unit tests start from.
#[cfg(test)]
pub(crate) mod test_config {
    /// Antenna's shape at its smallest: the backend this repository builds, one external
    /// image, an Elastic Beanstalk environment with one HTTP check. Tests edit it with
    /// `replace`, put top-level keys before it or append tables after it.
    pub(crate) const MINIMAL: &str = r#"
region = "us-west-2"
application = "antenna"

[images.backend]
repository = "antenna-backend"
build = { context = "." }

[images.ml]
repository = "ml-backend-minimal"
tag = "v0.2.0"

[environments.staging]
eb_environment = "antenna-staging"

[[environments.staging.checks]]
kind = "http"
headers = { "X-Forwarded-Proto" = "https" }
timeout = "90s"
"#;
}

#[cfg(test)]
mod tests {
    use super::test_config::MINIMAL;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("deploy.toml"), text)
    }

    #[test]
    fn minimal_file_parses_with_defaults() {
        let c = parse(MINIMAL).unwrap();
        let env = c.environment("staging").unwrap();
        assert_eq!(env.target, Target::Aws);
        assert!(env.rollback);
        assert_eq!(env.timeouts.deploy, Duration::from_secs(1800));
        assert_eq!(env.checks[0].timeout, Duration::from_secs(90));
        match &env.checks[0].kind {
            CheckKind::Http {
                path,
                expect_status,
                ..
            } => {
                assert_eq!(path, "/api/v2/");
                assert_eq!(*expect_status, 200);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(c.built_images().count(), 1);
        assert_eq!(c.bundle.template, PathBuf::from("Dockerrun.template.json"));
    }

    #[test]
    fn properties_and_secrets_are_parsed_strictly() {
        let with = |tables: &str| {
            let text = MINIMAL.replace(
                "[[environments.staging.checks]]",
                &format!("{tables}\n[[environments.staging.checks]]"),
            );
            parse(&text)
        };
        let ok = with("[environments.staging.properties]\nUSE_DOCKER = \"yes\"\n\n[environments.staging.secrets]\nDJANGO_SECRET_KEY = { secret = \"antenna/staging/k\" }\n").unwrap();
        let env = ok.environment("staging").unwrap();
        assert_eq!(env.properties["USE_DOCKER"], "yes");
        assert_eq!(
            env.secrets["DJANGO_SECRET_KEY"].describe(),
            "secret antenna/staging/k"
        );
        // What doctor checks: Antenna's list when `required` is not set, and every declared name.
        let required = env.required_properties();
        for name in ["DJANGO_SETTINGS_MODULE", "USE_DOCKER", "DJANGO_SECRET_KEY"] {
            assert!(required.iter().any(|r| r == name), "{name}: {required:?}");
        }
        // A plain value that looks like a secret: the file, the key, and the way out.
        let err =
            with("[environments.staging.properties]\nDJANGO_SECRET_KEY = \"hunter2-plain\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.starts_with("deploy.toml"), "{err}");
        assert!(
            err.contains("environments.staging.properties.DJANGO_SECRET_KEY looks like a secret"),
            "{err}"
        );
        assert!(err.contains("[environments.staging.secrets]"), "{err}");
        assert!(!err.contains("hunter2-plain"), "{err}");
        // Unknown fields in a reference are refused like everywhere else in the file.
        let err = with("[environments.staging.secrets]\nX = { secert = \"a\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `secert`"), "{err}");
    }

    #[test]
    fn unknown_field_names_line_and_column() {
        let text = MINIMAL.replace("eb_environment", "eb_enviroment");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with("deploy.toml:14:1: unknown field `eb_enviroment`"),
            "{err}"
        );
        assert!(err.contains("expected one of"), "{err}");
    }

    #[test]
    fn unknown_check_field_is_rejected() {
        let text = MINIMAL.replace("timeout = \"90s\"", "timout = \"90s\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `timout`"), "{err}");
        assert!(err.starts_with("deploy.toml:16:"), "{err}");
    }

    #[test]
    fn bad_duration_explains_the_shape() {
        let text = MINIMAL.replace("\"90s\"", "\"ninety\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("invalid duration \"ninety\""), "{err}");
        assert!(err.contains("expected a string such as"), "{err}");
    }

    #[test]
    fn malformed_toml_names_position() {
        let err = parse("region = \"x\"\napplication = \n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("deploy.toml:2:"), "{err}");
    }

    #[test]
    fn built_image_with_tag_is_an_error() {
        let text = MINIMAL.replace(
            "build = { context = \".\" }",
            "build = { context = \".\" }\ntag = \"x\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("deploy.toml:5:"), "{err}");
        assert!(
            err.contains("images.backend: `tag` is set on an image this repository builds"),
            "{err}"
        );
    }

    #[test]
    fn external_image_needs_a_tag() {
        let text = MINIMAL.replace("tag = \"v0.2.0\"\n", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("images.ml: an external image needs `tag`"),
            "{err}"
        );
    }

    #[test]
    fn git_source_is_checked_key_by_key() {
        let with = |source: &str, build: &str| {
            let text = MINIMAL.replace(
                "build = { context = \".\" }",
                &format!("source = {source}\n{build}"),
            );
            parse(&text).map_err(|e| e.to_string())
        };
        let build =
            "build = { context = \".\", dockerfile = \"compose/production/django/Dockerfile\" }";
        let ok = with(
            r#"{ git = "https://github.com/RolnickLab/antenna.git", rev = "v1.2.0" }"#,
            build,
        )
        .unwrap();
        let source = ok.images["backend"].source.as_ref().unwrap();
        assert_eq!(source.rev, "v1.2.0");
        let cases = [
            (r#"{ git = "ftp://x/y", rev = "v1" }"#, build, "images.backend.source.git: the scheme \"ftp\""),
            (r#"{ git = "https://u:s3cr3t@h/r.git x", rev = "v1" }"#, build, "is not a git URL"),
            (r#"{ git = "https://h/r.git", rev = "" }"#, build, "images.backend.source.rev: is empty"),
            (r#"{ git = "https://h/r.git", rev = "--upload-pack=x" }"#, build, "images.backend.source.rev: \"--upload-pack=x\" is not a tag, branch or commit id"),
            (r#"{ git = "https://h/r.git", rev = "v1", tag = "x" }"#, build, "unknown field `tag`"),
            (r#"{ git = "https://h/r.git", rev = "v1" }"#, "build = { context = \"../x\" }", "images.backend.build.context: with `source`, paths are relative to the fetched tree"),
            (r#"{ git = "https://h/r.git", rev = "v1" }"#, "build = { context = \".\", dockerfile = \"/etc/Dockerfile\" }", "images.backend.build.dockerfile: with `source`"),
            (r#"{ git = "https://h/r.git", rev = "v1" }"#, "", "images.backend.source: a source needs a `build` table"),
            (r#"{ git = "https://h/r.git", rev = "v1" }"#, "tag = \"v1\"", "images.backend.source: an external image (with `tag`) is not built"),
        ];
        for (source, build, expected) in cases {
            let err = with(source, build).unwrap_err();
            assert!(err.contains(expected), "{source} {build}: {err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn aws_environment_needs_eb_name() {
        let text = MINIMAL.replace("eb_environment = \"antenna-staging\"\n", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("environments.staging: `eb_environment`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_environment_lists_known_ones() {
        let c = parse(MINIMAL).unwrap();
        let err = c.environment("prod").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown environment \"prod\" in deploy.toml; known environments: staging"
        );
    }

    #[test]
    fn a_local_environment_is_refused_by_aws_commands() {
        let c = parse(&format!("{MINIMAL}{LOCAL}")).unwrap();
        assert_eq!(c.aws_environment_names(), vec!["staging".to_string()]);
        let err = crate::ops::AwsEnvironment::resolve(&c, "local", "status")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "environment \"local\" in deploy.toml runs on the local Docker Engine; `status` works on Elastic Beanstalk environments only: pick one of staging");
        let all = crate::ops::AwsEnvironment::selected(&c, None, "status").unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].eb_environment, "antenna-staging");
        assert_eq!(all[0].application, "antenna");
    }

    #[test]
    fn overrides_apply() {
        let mut c = parse(MINIMAL).unwrap();
        c.apply(&Overrides {
            region: Some("eu-west-1".into()),
            account: Some("123456789012".into()),
            bucket: Some("bundles-b".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(
            c.registry_host().unwrap(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            c.environments["staging"].bucket.as_deref(),
            Some("bundles-b")
        );
    }

    const LOCAL: &str = r#"
[environments.local]
target = "local"
url = "http://127.0.0.1:8080"
host_port_offset = 8000

[environments.local.images]
ml = { image = "backend", command = ["/start-ml-backend"] }
"#;

    #[test]
    fn local_image_overrides_and_port_offset_parse() {
        let c = parse(&format!("{MINIMAL}{LOCAL}")).unwrap();
        let env = c.environment("local").unwrap();
        assert_eq!(env.target, Target::Local);
        assert_eq!(env.host_port_offset, 8000);
        assert_eq!(
            env.images["ml"],
            ImageOverride {
                image: "backend".into(),
                command: Some(vec!["/start-ml-backend".into()]),
            }
        );
        assert!(c.environment("staging").unwrap().images.is_empty());
    }

    #[test]
    fn image_override_must_name_known_images() {
        let text = format!("{MINIMAL}{}", LOCAL.replace("ml = {", "awscli = {"));
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("deploy.toml:21:"), "{err}");
        assert!(err.contains("environments.local.images.awscli: no image \"awscli\" in [images] to replace; known images: backend, ml"), "{err}");

        let text = format!(
            "{MINIMAL}{}",
            LOCAL.replace("image = \"backend\"", "image = \"django\"")
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("environments.local.images.ml: `image` = \"django\" is not in [images]"),
            "{err}"
        );

        let text = format!(
            "{MINIMAL}{}",
            LOCAL.replace("[\"/start-ml-backend\"]", "[]")
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("environments.local.images.ml: `command` is empty"),
            "{err}"
        );

        let text = format!(
            "{MINIMAL}{}",
            LOCAL.replace("ml = {", "ml = { tag = \"x\",")
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `tag`"), "{err}");
    }

    #[test]
    fn port_offset_is_local_only() {
        let text = MINIMAL.replace(
            "eb_environment = \"antenna-staging\"\n",
            "eb_environment = \"antenna-staging\"\nhost_port_offset = 1\n",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(
                "environments.staging: `host_port_offset` only applies to target = \"local\""
            ),
            "{err}"
        );
    }

    #[test]
    fn timeouts_accept_health_settle() {
        let text = MINIMAL.replace(
            "eb_environment = \"antenna-staging\"\n",
            "eb_environment = \"antenna-staging\"\ntimeouts = { deploy = \"45m\", health_settle = \"90s\" }\n",
        );
        let c = parse(&text).unwrap();
        let t = c.environment("staging").unwrap().timeouts;
        assert_eq!(t.health_settle, Duration::from_secs(90));
        assert_eq!(t.deploy, Duration::from_secs(45 * 60));
        assert_eq!(t.lock_wait, Duration::from_secs(600));
        assert_eq!(Timeouts::default().health_settle, Duration::from_secs(300));
    }

    #[test]
    fn type_range_and_duplicate_errors_name_the_key() {
        let env = "eb_environment = \"antenna-staging\"\n";
        for (extra, want) in [
            ("rollback = \"yes\"\n", "environments.staging.rollback: invalid type: string \"yes\", expected a boolean"),
            ("host_port_offset = -1\n", "environments.staging.host_port_offset: invalid value: integer `-1`, expected u16"),
            ("timeouts = { verify = \"300000000000y\" }\n", "environments.staging.timeouts.verify: duration \"300000000000y\" is too long: at most 1day (\"24h\")"),
            ("timeouts = { deploy = \"0s\" }\n", "environments.staging.timeouts.deploy: a zero duration would give up at once"),
            ("rollback = true\nrollback = false\n", "duplicate key"),
        ] {
            let text = MINIMAL.replace(env, &format!("{env}{extra}"));
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("deploy.toml:1"), "{err}");
            assert!(err.contains(want), "{extra}: {err}");
        }
        let nats = MINIMAL.replace(
            "kind = \"http\"\nheaders = { \"X-Forwarded-Proto\" = \"https\" }\ntimeout = \"90s\"",
            "kind = \"nats\"\ntimeout = \"0s\"",
        );
        let err = parse(&nats).unwrap_err().to_string();
        assert!(
            err.contains("environments.staging.checks[0]: a zero duration would give up at once"),
            "{err}"
        );
        let text = MINIMAL.replace("timeout = \"90s\"", "timeout = \"99999999999999h\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("deploy.toml:16:1: environments.staging.checks[0]: duration \"99999999999999h\" is too long"), "{err}");
    }

    #[test]
    fn values_follow_aws_rules() {
        for ok in [
            "us-west-2",
            "us-gov-west-1",
            "ap-southeast-1",
            "cn-north-1",
            "eu-central-2",
        ] {
            assert!(check_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "us-west-2a",
            "US West (Oregon)",
            "",
            "uswest2",
            "us-west-",
            "west-2",
        ] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
        assert!(check_account("123456789012").is_ok());
        for bad in ["12345678901", "1234567890123", "12345678901a", ""] {
            assert!(check_account(bad).is_err(), "{bad}");
        }
        for ok in ["my-bundles", "a.b-c", "abc"] {
            assert!(check_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "My_Bucket",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            &"a".repeat(64),
        ] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        for ok in ["abcd", "antenna-staging", &"a".repeat(40)] {
            assert!(check_eb_environment(ok).is_ok(), "{ok}");
        }
        for bad in ["abc", "-abcd", "abcd-", "ab_cd", &"a".repeat(41)] {
            assert!(check_eb_environment(bad).is_err(), "{bad}");
        }
        assert!(check_application("antenna").is_ok());
        assert!(check_application(&"a".repeat(100)).is_ok());
        assert!(check_application("").is_err());
        assert!(check_application(&"a".repeat(101)).is_err());
        assert!(check_variable_name("REDIS_URL").is_ok());
        assert!(check_variable_name("").is_err());
        assert!(check_variable_name("REDIS URL").is_err());
        let err = check_url("https//u:pw123@h").unwrap_err();
        assert!(!err.contains("pw123"), "{err}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
