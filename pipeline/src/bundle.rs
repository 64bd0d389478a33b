//! The source bundle: `Dockerrun.aws.json`, `.ebextensions/**` and `.platform/**`, minus what
//! `.ebignore` excludes, zipped byte-for-byte reproducibly (sorted entries, fixed timestamps,
//! normalised permissions), linted before anything is written.

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{CheckSpec, Config, EnvironmentSpec};
use crate::lint::{self, Report};
use crate::release::Release;
use crate::template::{self, RenderContext, Rendered};

/// EB's limit on a source bundle.
pub const MAX_BUNDLE_SIZE: u64 = 500 * 1024 * 1024;

/// The name of the rendered file inside the bundle.
pub const DOCKERRUN: &str = "Dockerrun.aws.json";

/// What to bundle.
#[derive(Debug, Clone)]
pub struct BundleRequest<'a> {
    pub config: &'a Config,
    pub env_name: String,
    pub release: Release,
    /// The AWS account, when known (else the configuration's).
    pub account: Option<String>,
    /// Where to write; default `<bundle.out_dir>/<env>`.
    pub out_dir: Option<PathBuf>,
    /// Compute everything, write nothing.
    pub dry_run: bool,
    pub max_size: u64,
}

impl<'a> BundleRequest<'a> {
    pub fn new(config: &'a Config, env_name: &str, release: Release) -> Self {
        Self {
            config,
            env_name: env_name.to_string(),
            release,
            account: None,
            out_dir: None,
            dry_run: false,
            max_size: MAX_BUNDLE_SIZE,
        }
    }

    pub fn with_account(mut self, account: Option<String>) -> Self {
        self.account = account;
        self
    }

    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    pub fn with_out_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.out_dir = dir;
        self
    }

    /// The directory the bundle goes to.
    pub fn out_dir(&self) -> PathBuf {
        self.out_dir.clone().unwrap_or_else(|| {
            self.config
                .resolve(&self.config.bundle.out_dir)
                .join(&self.env_name)
        })
    }
}

/// A bundle, written or (with `dry_run`) only computed.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    /// `<out_dir>/deploy.zip`.
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub version_label: String,
    /// Entry names, in zip order.
    pub files: Vec<String>,
    /// The rendered `Dockerrun.aws.json`.
    #[serde(skip)]
    pub dockerrun: String,
    /// Warnings found by lint (errors stop the bundle).
    pub lint: Report,
    pub written: bool,
    /// The zip's bytes.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// Lint found errors: nothing was written.
#[derive(Debug, thiserror::Error)]
#[error("lint found {} error(s) in the bundle's inputs; nothing was written:\n{}", .0.errors(), .0.to_text().trim_end())]
pub struct LintFailed(pub Report);

/// One input file of the bundle.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Name inside the zip (`/`-separated, relative to the config's directory).
    pub name: String,
    pub path: PathBuf,
    /// 0o755 for executables, else 0o644.
    pub mode: u32,
}

/// Renders, lints and zips; writes `deploy.zip` and `Dockerrun.aws.json` unless `dry_run`.
pub fn make_bundle(req: &BundleRequest) -> Result<Bundle> {
    let config = req.config;
    let env = config.environment(&req.env_name)?;
    let ctx = RenderContext::for_environment(
        config,
        &req.env_name,
        env,
        &req.release,
        req.account.as_deref(),
    );
    let inputs = collect_inputs(config)?;
    let (rendered, report) = lint_inputs(config, env, &ctx, &inputs)?;
    if report.errors() > 0 {
        return Err(LintFailed(report).into());
    }
    let rendered = rendered.expect("no render error without a rendered file");

    let bytes = zip_bundle(&rendered.json, &inputs)?;
    let size = bytes.len() as u64;
    let out_dir = req.out_dir();
    let path = out_dir.join("deploy.zip");
    if size > req.max_size {
        bail!(
            "the bundle for {} would be {} bytes, over Elastic Beanstalk's limit of {} bytes; nothing was written\n  hint: exclude large files under {} or {} with {}",
            req.env_name,
            size,
            req.max_size,
            config.bundle.ebextensions.display(),
            config.bundle.platform.display(),
            config.bundle.ebignore.display()
        );
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let version_label = req.release.version_label(&sha256);
    let files = std::iter::once(DOCKERRUN.to_string())
        .chain(inputs.iter().map(|f| f.name.clone()))
        .collect();
    if !req.dry_run {
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        write_atomically(&out_dir.join(DOCKERRUN), rendered.json.as_bytes())?;
        write_atomically(&path, &bytes)?;
    }
    Ok(Bundle {
        path,
        sha256,
        size,
        version_label,
        files,
        dockerrun: rendered.json,
        lint: report,
        written: !req.dry_run,
        bytes,
    })
}

/// Renders the template and lints it with the extension files. A render error becomes a
/// finding (with no rendered file) so that everything is reported at once.
pub fn lint_inputs(
    config: &Config,
    env: &EnvironmentSpec,
    ctx: &RenderContext,
    inputs: &[InputFile],
) -> Result<(Option<Rendered>, Report)> {
    let mut report = Report::default();
    let template_path = config.resolve(&config.bundle.template);
    let rendered = match template::render_file(config, ctx) {
        Ok(r) => {
            let text = std::fs::read_to_string(&template_path).unwrap_or_default();
            report.extend(lint::lint_dockerrun(&template_path, &text, &r.dockerrun));
            if let Some(it) = &env.instance_type {
                report.extend(lint::lint_memory(&template_path, &text, &r.dockerrun, it));
            }
            Some(r)
        }
        Err(e) => {
            report.extend(e.problems.into_iter().map(|p| {
                lint::Finding::new(
                    lint::DR_PARSE,
                    &p.file,
                    "",
                    p.message,
                    "fix the template, then run `cargo xtask render` again",
                )
                .at((p.line, p.column))
            }));
            None
        }
    };
    let verify_path = verify_path(env);
    let ebext_dir = config.resolve(&config.bundle.ebextensions);
    let platform_dir = config.resolve(&config.bundle.platform);
    let mut hooks = Vec::new();
    for f in inputs {
        if f.path.starts_with(&ebext_dir) && f.name.ends_with(".config") {
            let text = std::fs::read_to_string(&f.path)
                .with_context(|| format!("cannot read {}", f.path.display()))?;
            report.extend(lint::lint_ebextension(
                &f.path,
                &text,
                verify_path.as_deref(),
            ));
        } else {
            // Every other file goes into the zip as it is: no secret in it either.
            let bytes = std::fs::read(&f.path)
                .with_context(|| format!("cannot read {}", f.path.display()))?;
            report.extend(lint::lint_file_secrets(
                &f.path,
                &String::from_utf8_lossy(&bytes),
            ));
        }
        if f.path.starts_with(&platform_dir) {
            hooks.push((f.path.clone(), f.mode));
        }
    }
    report.extend(lint::lint_hooks(&platform_dir, &hooks));
    report.sort();
    Ok((rendered, report))
}

/// The path the environment's first HTTP check requests, when it has one.
pub fn verify_path(env: &EnvironmentSpec) -> Option<String> {
    env.checks.iter().find_map(|c| match c {
        CheckSpec::Http {
            url: None, path, ..
        } => Some(path.clone()),
        CheckSpec::Http { url: Some(u), .. } => {
            url::Url::parse(u).ok().map(|u| u.path().to_string())
        }
        _ => None,
    })
}

/// The files under `.ebextensions` and `.platform`, sorted, minus `.ebignore`'s matches.
pub fn collect_inputs(config: &Config) -> Result<Vec<InputFile>> {
    let root = &config.root;
    let ebignore_path = config.resolve(&config.bundle.ebignore);
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    if ebignore_path.exists() {
        if let Some(e) = builder.add(&ebignore_path) {
            bail!("invalid pattern in {}: {e}", ebignore_path.display());
        }
    }
    let ignore = builder
        .build()
        .with_context(|| format!("invalid patterns in {}", ebignore_path.display()))?;
    let mut out = Vec::new();
    let real_root = root
        .canonicalize()
        .with_context(|| format!("cannot read {}", root.display()))?;
    for dir in [&config.bundle.ebextensions, &config.bundle.platform] {
        let dir = config.resolve(dir);
        if dir.is_dir() {
            walk(&dir, root, &real_root, &ignore, &mut out)?;
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn walk(
    dir: &Path,
    root: &Path,
    real_root: &Path,
    ignore: &ignore::gitignore::Gitignore,
    out: &mut Vec<InputFile>,
) -> Result<()> {
    // A link may point anywhere: only what stays inside the repository goes into the zip.
    let real = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    if !real.starts_with(real_root) {
        bail!(
            "{} leads outside the repository (to {}): refusing to put it into the bundle\n  hint: copy what is needed into the repository, or exclude the link with .ebignore",
            dir.display(),
            real.display()
        );
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if ignore
            .matched_path_or_any_parents(rel, path.is_dir())
            .is_ignore()
        {
            tracing::debug!("{} is excluded by .ebignore", rel.display());
            continue;
        }
        if rel.to_str().is_none() {
            bail!(
                "{} has a name that is not UTF-8: zip entry names would garble it; rename it",
                path.display()
            );
        }
        let link = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .file_type()
            .is_symlink();
        let meta = std::fs::metadata(&path).with_context(|| {
            if link {
                format!(
                    "{} is a symbolic link to nothing (a dangling link)",
                    path.display()
                )
            } else {
                format!("cannot read {}", path.display())
            }
        })?;
        if link && !meta.is_dir() {
            let target = path
                .canonicalize()
                .with_context(|| format!("cannot resolve the link {}", path.display()))?;
            if !target.starts_with(real_root) {
                bail!(
                    "{} is a symbolic link to {}, outside the repository: refusing to put that file into the bundle\n  hint: copy the file into the repository, or exclude the link with .ebignore",
                    path.display(),
                    target.display()
                );
            }
        }
        if meta.is_dir() {
            walk(&path, root, real_root, ignore, out)?;
        } else if meta.is_file() {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let mode = if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(InputFile { name, path, mode });
        }
    }
    Ok(())
}

/// The zip: `Dockerrun.aws.json` first, then the inputs in name order; every entry dated
/// 1980-01-01 00:00:00 with mode 0644 or 0755, deflated at a fixed level.
pub fn zip_bundle(dockerrun: &str, inputs: &[InputFile]) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(zip::DateTime::default());
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(DOCKERRUN, base.unix_permissions(0o644))?;
    zip.write_all(dockerrun.as_bytes())?;
    for f in inputs {
        let data =
            std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        zip.start_file(f.name.as_str(), base.unix_permissions(f.mode))?;
        zip.write_all(&data)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Writes through a temporary file in the same directory, then renames: readers never see a
/// half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// `render`: the environment's `Dockerrun.aws.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderRequest {
    pub environment: String,
    /// The release name; `None`: the git tag of HEAD, else its short commit.
    pub release: Option<String>,
    /// Where to write (default `<bundle.out_dir>/<env>/Dockerrun.aws.json`).
    pub out: Option<PathBuf>,
    /// Render; write nothing.
    pub dry_run: bool,
}

/// What [`render`] made.
#[derive(Debug, Clone, Serialize)]
pub struct RenderOutcome {
    pub path: PathBuf,
    pub written: bool,
    pub environment: String,
    pub release: String,
    /// The rendered file.
    #[serde(skip)]
    pub json: String,
}

/// Renders the template for an environment and writes it (unless a dry run).
pub async fn render(config: &Config, req: &RenderRequest) -> Result<RenderOutcome> {
    let env = config.environment(&req.environment)?;
    let release = Release::detect(&config.root, req.release.as_deref())?;
    let account = crate::aws::account_or_none(config, env.target).await;
    let ctx =
        RenderContext::for_environment(config, &req.environment, env, &release, account.as_deref());
    let rendered = crate::template::render_file(config, &ctx)?;
    let path = req.out.clone().unwrap_or_else(|| {
        config
            .resolve(&config.bundle.out_dir)
            .join(&req.environment)
            .join(DOCKERRUN)
    });
    if req.dry_run {
        tracing::info!(
            "dry run: would write {} ({} bytes)",
            path.display(),
            rendered.json.len()
        );
    } else {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, &rendered.json)
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::info!(
            "rendered {} for {} (release {})",
            path.display(),
            req.environment,
            release.name
        );
    }
    Ok(RenderOutcome {
        path,
        written: !req.dry_run,
        environment: req.environment.clone(),
        release: release.name,
        json: rendered.json,
    })
}

/// `lint`: the bundle's inputs of an environment, or the files given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintRequest {
    pub environment: String,
    pub release: Option<String>,
    /// Files to lint instead (a rendered Dockerrun.aws.json or an .ebextensions .config).
    pub files: Vec<PathBuf>,
}

/// Lints; `config` is needed for the environment's inputs, and optional with files (it then
/// only gives the verify path).
pub async fn lint(config: Option<&Config>, req: &LintRequest) -> Result<Report> {
    let mut report = Report::default();
    if req.files.is_empty() {
        let config = config.context("lint without files needs the configuration")?;
        let env = config.environment(&req.environment)?;
        let release = Release::detect(&config.root, req.release.as_deref())?;
        let account = crate::aws::account_or_none(config, env.target).await;
        let ctx = RenderContext::for_environment(
            config,
            &req.environment,
            env,
            &release,
            account.as_deref(),
        );
        let inputs = collect_inputs(config)?;
        return Ok(lint_inputs(config, env, &ctx, &inputs)?.1);
    }
    // The verify path comes from the configuration when there is one.
    let verify_path =
        config.and_then(|c| c.environment(&req.environment).ok().and_then(verify_path));
    for file in &req.files {
        let findings = crate::lint::lint_file(file, verify_path.as_deref())
            .with_context(|| format!("cannot read {}", file.display()))?;
        report.extend(findings);
    }
    report.sort();
    Ok(report)
}

/// `bundle`: render, lint and zip an environment's bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleCommand {
    pub environment: String,
    pub release: Option<String>,
    /// Directory for deploy.zip (default `<bundle.out_dir>/<env>`).
    pub out_dir: Option<PathBuf>,
    pub dry_run: bool,
}

/// Detects the release and the account, then [`make_bundle`].
pub async fn bundle(config: &Config, req: &BundleCommand) -> Result<Bundle> {
    let env = config.environment(&req.environment)?;
    let release = Release::detect(&config.root, req.release.as_deref())?;
    let account = crate::aws::account_or_none(config, env.target).await;
    make_bundle(
        &BundleRequest::new(config, &req.environment, release)
            .with_account(account)
            .with_out_dir(req.out_dir.clone())
            .with_dry_run(req.dry_run),
    )
}
