//! The build and push stages: the images this repository builds, built by the Docker Engine
//! from a context streamed to it, and pushed to the account's ECR registry (or the
//! configured registry), idempotently.
//!
//! Idempotence: before building, ECR's `DescribeImages` says whether the release tag exists;
//! if it does, the image's `org.opencontainers.image.revision` label, read from the registry
//! (manifest, then config blob), or else a full-commit tag on the same ECR image, tells
//! whether it is this commit. Same commit: build and push are skipped. Another commit: an
//! error unless `force`. After a push the tag is also recorded in ECR's API with `PutImage`
//! when `DescribeImages` does not know it yet (a registry override in front of an emulator);
//! real ECR already knows it, so nothing is written twice.

pub mod ecr;
pub mod reference;
pub mod registry;
pub mod source;

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::aws::Aws;
use crate::config::{BuildSpec, Config, ImageSpec};
use crate::release::Release;

use crate::docker::{self, ContextStats, Engine, OutputMode, RegistryAuth, Retry};
use crate::output::human_bytes;

/// OCI label names set on every built image.
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";

/// What to do: build only, or build and push.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    pub config: Config,
    pub release: Release,
    /// Push after building (the push stage); else build locally only.
    pub push: bool,
    /// Rebuild and push although the release tag exists with another revision.
    pub force: bool,
    /// Create missing ECR repositories (tag immutability on).
    pub create_repository: bool,
    /// Check and print the plan; build and push nothing.
    pub dry_run: bool,
    /// Docker Engine address; else `DOCKER_HOST`, else the default socket.
    pub docker_host: Option<String>,
    /// `org.opencontainers.image.source`; see [`detect_source`].
    pub source: Option<String>,
    pub retry: Retry,
    pub output: OutputMode,
}

impl ImageRequest {
    pub fn new(config: Config, release: Release) -> Self {
        Self {
            config,
            release,
            push: false,
            force: false,
            create_repository: false,
            dry_run: false,
            docker_host: None,
            source: None,
            retry: Retry::default(),
            output: OutputMode::detect(),
        }
    }

    pub fn with_push(mut self, yes: bool) -> Self {
        self.push = yes;
        self
    }
    pub fn with_force(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }
    pub fn with_create_repository(mut self, yes: bool) -> Self {
        self.create_repository = yes;
        self
    }
    pub fn with_dry_run(mut self, yes: bool) -> Self {
        self.dry_run = yes;
        self
    }
    pub fn with_docker_host(mut self, host: Option<String>) -> Self {
        self.docker_host = host;
        self
    }
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
    pub fn with_output(mut self, output: OutputMode) -> Self {
        self.output = output;
        self
    }

    /// Tags of a built image: the release name, and the full commit of a clean tree.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.release.name.clone()];
        if !self.release.dirty
            && self.release.commit != "unknown"
            && self.release.commit != self.release.name
        {
            tags.push(self.release.commit.clone());
        }
        tags
    }

    /// Tags of image `name`: [`Self::tags`], but for an image built from a git source the
    /// full commit is the source's.
    pub fn tags_of(&self, name: &str) -> Vec<String> {
        match self.release.source_of(name) {
            Some(pin) => vec![self.release.name.clone(), pin.commit.clone()],
            None => self.tags(),
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Built locally (build stage only).
    Built,
    /// Built and pushed.
    Pushed,
    /// The registry already had this release of this commit.
    Skipped,
    /// Dry run: what would be done.
    Planned,
}

/// The report of one image, also printed as JSON with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub name: String,
    /// `registry/repository:release`.
    pub reference: String,
    pub tags: Vec<String>,
    pub outcome: Outcome,
    pub image_id: Option<String>,
    pub digest: Option<String>,
    pub bytes_sent: u64,
    pub layers_pushed: u32,
    pub layers_existing: u32,
    pub context: Option<ContextStats>,
    pub duration_ms: u64,
    pub message: String,
}

/// An external image and where it was found.
#[derive(Debug, Clone, Serialize)]
pub struct ExternalCheck {
    pub name: String,
    pub reference: String,
    pub found_in: String,
}

/// The report of a build or push run.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRun {
    pub release: String,
    pub commit: String,
    pub registry: Option<String>,
    pub images: Vec<ImageReport>,
    pub external: Vec<ExternalCheck>,
    pub duration_ms: u64,
}

/// `build` and `push`: the images of the configuration, for a release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagesRequest {
    /// Checked against the configuration when given.
    pub environment: Option<String>,
    /// The release name (the image tag); `None`: the git tag, else the short commit.
    pub release: Option<String>,
    pub push: bool,
    /// Push over a release tag that exists with another revision.
    pub force: bool,
    /// Create missing ECR repositories (with tag immutability on).
    pub create_repository: bool,
    pub dry_run: bool,
}

/// Detects the release and the source, loads AWS when pushing, then [`run`].
pub async fn build_or_push(config: Config, req: &ImagesRequest) -> Result<ImageRun> {
    if let Some(env) = &req.environment {
        config.environment(env)?;
    }
    let mut config = config;
    let mut release = Release::detect(&config.root, req.release.as_deref())?;
    // Git sources are fetched (or, in a dry run, only shown) before anything is built.
    source::prepare(&mut config, &mut release, req.dry_run)?;
    let source = detect_source(&config.root);
    let request = ImageRequest::new(config, release)
        .with_push(req.push)
        .with_force(req.force)
        .with_create_repository(req.create_repository)
        .with_dry_run(req.dry_run)
        .with_source(source);
    let aws = if req.push {
        Some(Aws::load(&request.config.region).await)
    } else {
        None
    };
    run(&request, aws.as_ref()).await
}

/// Runs the build stage, or build and push, for every image the configuration builds.
/// `aws` is needed to push (ECR).
pub async fn run(req: &ImageRequest, aws: Option<&Aws>) -> Result<ImageRun> {
    let started = Instant::now();
    let mut run = ImageRun {
        release: req.release.name.clone(),
        commit: req.release.commit.clone(),
        registry: None,
        images: Vec::new(),
        external: Vec::new(),
        duration_ms: 0,
    };
    if req.config.built_images().next().is_none() {
        bail!(
            "{} has no image to build: add `build = {{ context = \"…\" }}` to an [images.NAME] table",
            req.config.path.display()
        );
    }
    if !req.push {
        let host = req.config.registry_host();
        run.registry = host.clone();
        let engine = if req.dry_run {
            None
        } else {
            Some(Engine::connect(req.docker_host.as_deref()).await?)
        };
        for (name, image, build) in req.config.built_images() {
            let repo = match &host {
                Some(h) => format!("{h}/{}", image.repository),
                None => image.repository.clone(),
            };
            run.images
                .push(build_one(req, engine.as_ref(), name, &repo, build).await?);
        }
        run.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(run);
    }

    let aws = aws.context("pushing needs AWS (ECR): no AWS configuration was given")?;
    let ecr = aws.ecr();
    // The override, else the configured account's ECR host, else the caller's account's
    // (ECR's proxyEndpoint).
    let auth = match &req.config.registry {
        Some(h) => {
            tracing::info!("registry override in effect: pushing to {h} (config `registry` or DEPLOY_REGISTRY)");
            ecr::authorization(&ecr, Some(h), true).await?
        }
        None => ecr::authorization(&ecr, req.config.registry_host().as_deref(), false).await?,
    };
    run.registry = Some(auth.registry.clone());
    let registry = registry::Registry::new(
        &auth.registry,
        Some((auth.username.clone(), auth.password.clone())),
    )?;

    // External images first: a missing one stops the deploy before anything is built.
    for (name, image) in req.config.external_images() {
        run.external
            .push(check_external(&ecr, &auth, name, image).await?);
    }

    let mut engine: Option<Engine> = None;
    for (name, image, build) in req.config.built_images() {
        let one = Instant::now();
        let repo = format!("{}/{}", auth.registry, image.repository);
        let created =
            ecr::ensure_repository(&ecr, &image.repository, req.create_repository, req.dry_run)
                .await?;
        let release = &req.release.name;
        let existing = if created {
            None
        } else {
            ecr::find_tag(&ecr, &image.repository, release).await?
        };
        if let Some(existing) = existing {
            let revision =
                existing_revision(&registry, &image.repository, release, &existing).await;
            // Outside git the commit is "unknown": nothing to compare, so never a skip. An
            // image built from a git source is that source's commit.
            let commit = req.release.commit_of(name);
            let known = req.release.source_of(name).is_some()
                || (req.release.commit != "unknown" && !req.release.dirty);
            if known && revision.as_deref() == Some(commit) {
                let message = format!(
                    "{repo}:{release} already exists with revision {commit}: build and push skipped"
                );
                tracing::info!("{message}");
                run.images.push(ImageReport {
                    name: name.to_string(),
                    reference: format!("{repo}:{release}"),
                    tags: req.tags_of(name),
                    outcome: Outcome::Skipped,
                    image_id: None,
                    digest: existing.digest.clone(),
                    bytes_sent: 0,
                    layers_pushed: 0,
                    layers_existing: 0,
                    context: None,
                    duration_ms: one.elapsed().as_millis() as u64,
                    message,
                });
                continue;
            }
            let what = match &revision {
                Some(r) => format!("revision {r}"),
                None => "an unknown revision".to_string(),
            };
            if !req.force {
                bail!(
                    "the tag {release} already exists in ECR repository {} with {what} (digest {}), not {}{}: release tags are immutable\n  hint: tag a new release, or pass --force to push over it (refused where tag immutability is on)",
                    image.repository,
                    existing.digest.as_deref().unwrap_or("unknown"),
                    commit,
                    if req.release.dirty { " (the work tree has uncommitted changes)" } else { "" },
                );
            }
            tracing::warn!("--force: pushing over {repo}:{release} ({what})");
        }
        if req.dry_run {
            let report = build_one(req, None, name, &repo, build).await?;
            run.images.push(report);
            continue;
        }
        let engine_ref = match engine {
            Some(ref e) => e,
            None => engine.insert(Engine::connect(req.docker_host.as_deref()).await?),
        };
        let mut report = build_one(req, Some(engine_ref), name, &repo, build).await?;
        for tag in req.tags_of(name) {
            if tag != *release
                && ecr::find_tag(&ecr, &image.repository, &tag)
                    .await?
                    .is_some()
            {
                tracing::warn!("{repo}:{tag} already exists (an earlier release of this commit); left as it is");
                continue;
            }
            tracing::info!("pushing {repo}:{tag}");
            let pushed = engine_ref.push(&repo, &tag, &auth, req.retry).await?;
            let manifest = registry
                .manifest(&image.repository, &tag)
                .await?
                .with_context(|| {
                    format!(
                        "{repo}:{tag} is missing from the registry {} right after its push",
                        auth.registry
                    )
                })?;
            // The engine reports no progress for small layers: when every layer was
            // uploaded, the pushed manifest's sizes are the exact count.
            let bytes = match manifest_size(&manifest.body) {
                Some(total) if pushed.layers_existing == 0 && pushed.layers_pushed > 0 => total,
                _ => pushed.bytes_sent,
            };
            report.bytes_sent += bytes;
            // Layers are counted once, for the release tag; further tags reuse them.
            if tag == *release {
                report.layers_pushed = pushed.layers_pushed;
                report.layers_existing = pushed.layers_existing;
                report.digest = pushed.digest.clone();
            }
            record_in_ecr(&ecr, &image.repository, &tag, &manifest).await?;
        }
        report.outcome = Outcome::Pushed;
        report.duration_ms = one.elapsed().as_millis() as u64;
        report.message = format!(
            "pushed {} ({}; {} layer(s) uploaded, {} already there, {} sent)",
            report.reference,
            report.digest.as_deref().unwrap_or("no digest"),
            report.layers_pushed,
            report.layers_existing,
            human_bytes(report.bytes_sent)
        );
        tracing::info!("{}", report.message);
        run.images.push(report);
    }
    run.duration_ms = started.elapsed().as_millis() as u64;
    Ok(run)
}

/// Builds one image (or, without an engine, reports what would be built).
async fn build_one(
    req: &ImageRequest,
    engine: Option<&Engine>,
    name: &str,
    repo: &str,
    build: &BuildSpec,
) -> Result<ImageReport> {
    let started = Instant::now();
    // A git source not fetched yet (a dry run): its paths are not on this machine.
    let unfetched = req
        .config
        .images
        .get(name)
        .and_then(|i| i.source.as_ref())
        .filter(|_| req.release.source_of(name).is_none());
    if let (Some(_), Some(s)) = (engine, unfetched) {
        bail!("images.{name}.source ({} at {}) was not fetched before the build: run the build through `cargo xtask build`, `push` or `deploy`", source::redacted(&s.git), s.rev);
    }
    if engine.is_some() {
        // A context that is a Cargo package (the demo app) gets its static binary first.
        docker::build_static_binaries(&req.config)
            .with_context(|| format!("cannot build image {name}"))?;
    }
    let release = &req.release.name;
    let reference = format!("{repo}:{release}");
    let mut report = ImageReport {
        name: name.to_string(),
        reference: reference.clone(),
        tags: req.tags_of(name),
        outcome: Outcome::Planned,
        image_id: None,
        digest: None,
        bytes_sent: 0,
        layers_pushed: 0,
        layers_existing: 0,
        context: None,
        duration_ms: 0,
        message: String::new(),
    };
    if let (None, Some(s)) = (engine, unfetched) {
        report.message = format!(
            "would fetch {} at {} and build {reference} from {} in it (Dockerfile {}, platform {}){}",
            source::redacted(&s.git),
            s.rev,
            build.context.display(),
            build
                .dockerfile
                .as_deref()
                .unwrap_or(&build.context.join("Dockerfile"))
                .display(),
            build.platform,
            if req.push { " and push it" } else { "" }
        );
        tracing::info!("{}", report.message);
        return Ok(report);
    }
    let labels = labels_of(&req.release, name, req.source.as_deref());
    let (context, opts) =
        docker::build::prepare(&req.config, build, reference.clone(), labels, req.output)
            .with_context(|| format!("cannot build image {name}"))?;
    let Some(engine) = engine else {
        report.message = format!(
            "would build {reference} from {} (Dockerfile {}, platform {}){}",
            context.root.display(),
            opts.dockerfile_display,
            build.platform,
            if req.push { " and push it" } else { "" }
        );
        tracing::info!("{}", report.message);
        return Ok(report);
    };
    tracing::info!(
        "building {reference} from {} with the Docker Engine at {}",
        context.root.display(),
        engine.host()
    );
    let built = engine
        .build(context, &opts)
        .await
        .with_context(|| format!("cannot build image {name} ({reference})"))?;
    for tag in req.tags_of(name).iter().filter(|t| *t != release) {
        engine.tag(&built.image_id, repo, tag).await?;
    }
    report.outcome = Outcome::Built;
    report.image_id = Some(built.image_id.clone());
    report.context = Some(built.context);
    report.duration_ms = started.elapsed().as_millis() as u64;
    report.message = format!(
        "built {reference} ({}; context {} files, {} sent, {} left out by .dockerignore)",
        short_id(&built.image_id),
        built.context.files,
        human_bytes(built.context.bytes),
        built.context.excluded
    );
    tracing::info!("{}", report.message);
    Ok(report)
}

/// The OCI labels of an image of `release`.
pub fn labels(release: &Release, source: Option<&str>) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(LABEL_REVISION.to_string(), release.commit.clone());
    l.insert(LABEL_VERSION.to_string(), release.name.clone());
    l.insert(
        LABEL_CREATED.to_string(),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    );
    if let Some(s) = source {
        l.insert(LABEL_SOURCE.to_string(), s.to_string());
    }
    l
}

/// The OCI labels of image `name` of `release`: for an image built from a git source, its
/// commit and URL (without credentials), else [`labels`].
pub fn labels_of(release: &Release, name: &str, source: Option<&str>) -> HashMap<String, String> {
    let mut l = labels(release, source);
    if let Some(pin) = release.source_of(name) {
        l.insert(LABEL_REVISION.to_string(), pin.commit.clone());
        l.insert(LABEL_SOURCE.to_string(), pin.url.clone());
    }
    l
}

/// The source repository URL: GitHub Actions' variables, else git's `origin` (without any
/// credentials in it), else none.
pub fn detect_source(dir: &std::path::Path) -> Option<String> {
    if let (Ok(server), Ok(repo)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) {
        return Some(format!("{server}/{repo}"));
    }
    let out = std::process::Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(dir)
        .output()
        .ok()?;
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if url.is_empty() {
        return None;
    }
    match url::Url::parse(&url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            Some(u.to_string())
        }
        Err(_) => Some(url),
    }
}

/// The revision of an existing image: its label from the registry, else a full-commit tag
/// on the same image in ECR.
async fn existing_revision(
    registry: &registry::Registry,
    repository: &str,
    tag: &str,
    existing: &ecr::EcrImage,
) -> Option<String> {
    match registry.labels(repository, tag).await {
        Ok(Some(labels)) => {
            if let Some(r) = labels.get(LABEL_REVISION).and_then(|v| v.as_str()) {
                return Some(r.to_string());
            }
        }
        Ok(None) => tracing::debug!(
            "{}/{repository}:{tag} is in ECR's API but not in the registry",
            registry.host()
        ),
        Err(e) => tracing::debug!("cannot read the labels of {repository}:{tag}: {e:#}"),
    }
    existing
        .tags
        .iter()
        .find(|t| t.len() == 40 && t.chars().all(|c| c.is_ascii_hexdigit()))
        .cloned()
}

/// Makes ECR's API know `repository:tag` after a push (see the module documentation).
async fn record_in_ecr(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    tag: &str,
    manifest: &registry::Manifest,
) -> Result<()> {
    if ecr::find_tag(ecr, repository, tag).await?.is_some() {
        return Ok(());
    }
    ecr::record(ecr, repository, tag, &manifest.body, &manifest.media_type).await?;
    tracing::debug!("recorded {repository}:{tag} in ECR's API");
    Ok(())
}

/// Checks that an external image exists: ECR's API for repositories of the account, the
/// registry's HTTP API (HEAD on the manifest) for others.
async fn check_external(
    ecr_client: &aws_sdk_ecr::Client,
    auth: &RegistryAuth,
    name: &str,
    image: &ImageSpec,
) -> Result<ExternalCheck> {
    let tag = image.tag.as_deref().unwrap_or("latest");
    if !image.has_registry_host() {
        let found = match ecr::find_tag(ecr_client, &image.repository, tag).await {
            Ok(found) => found.is_some(),
            Err(ecr::EcrError::NoRepository { .. }) => false,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot check the external image {name}"))
            }
        };
        if !found {
            bail!(
                "external image {name} ({}:{tag}) is not in the account's ECR: push it there, or fix `images.{name}` in {}",
                image.repository,
                "the configuration"
            );
        }
        return Ok(ExternalCheck {
            name: name.to_string(),
            reference: format!("{}/{}:{tag}", auth.registry, image.repository),
            found_in: "ECR".into(),
        });
    }
    let r = reference::ImageRef::parse(&format!("{}:{tag}", image.repository)).map_err(|e| {
        anyhow::anyhow!("images.{name}: {e}: fix `repository` or `tag` in the configuration")
    })?;
    let host = r.registry_host().to_string();
    let creds = (host == auth.registry).then(|| (auth.username.clone(), auth.password.clone()));
    let client = registry::Registry::new(&host, creds)?;
    let found = client
        .manifest_exists(&r.registry_path(), tag)
        .await
        .with_context(|| {
            format!(
                "cannot check the external image {name} ({}:{tag})",
                image.repository
            )
        })?;
    if !found {
        bail!(
            "external image {name} ({}:{tag}) does not exist in the registry {}: push it, or fix `images.{name}` in the configuration",
            image.repository,
            host
        );
    }
    Ok(ExternalCheck {
        name: name.to_string(),
        reference: format!("{}:{tag}", image.repository),
        found_in: host,
    })
}

/// Config plus layer sizes of an image manifest.
fn manifest_size(body: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let config = v["config"]["size"].as_u64()?;
    let layers = v["layers"]
        .as_array()?
        .iter()
        .filter_map(|l| l["size"].as_u64())
        .sum::<u64>();
    Some(config + layers)
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_release_and_full_commit_of_a_clean_tree() {
        let config = Config::parse(
            std::path::Path::new("deploy.toml"),
            "region='us-west-2'\napplication='a'\n[images.b]\nrepository='b'\nbuild={context='.'}\n[environments.local]\ntarget='local'\n",
        )
        .unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let req = ImageRequest::new(config.clone(), Release::fixed("v1.0.0", commit));
        assert_eq!(req.tags(), ["v1.0.0", commit]);
        let mut dirty = Release::fixed("v1.0.0-dirty", commit);
        dirty.dirty = true;
        assert_eq!(ImageRequest::new(config, dirty).tags(), ["v1.0.0-dirty"]);
    }

    #[test]
    fn labels_carry_revision_version_source_created() {
        let l = labels(
            &Release::fixed("v2", "abc"),
            Some("https://github.com/org/repo"),
        );
        assert_eq!(l[LABEL_REVISION], "abc");
        assert_eq!(l[LABEL_VERSION], "v2");
        assert_eq!(l[LABEL_SOURCE], "https://github.com/org/repo");
        assert!(l[LABEL_CREATED].ends_with('Z'), "{}", l[LABEL_CREATED]);
    }

    #[test]
    fn manifest_sizes_add_up() {
        let m = r#"{"config":{"size":10},"layers":[{"size":5},{"size":7}]}"#;
        assert_eq!(manifest_size(m), Some(22));
        assert_eq!(manifest_size(r#"{"manifests":[]}"#), None);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(300 * 1024 * 1024), "300.0 MiB");
    }
}
