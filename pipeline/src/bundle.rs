//! The source bundle: `Dockerrun.aws.json`, `.ebextensions/**` and `.platform/**`, minus what
//! `.ebignore` excludes, zipped byte-for-byte reproducibly (sorted entries, fixed timestamps,
//! normalised permissions), linted before anything is written.
//!
//! The output folder holds one pair, `deploy.zip` and the `Dockerrun.aws.json` inside it, and
//! the pair is written as one unit: under a lock on the folder (a second `bundle` waits,
//! naming the holder), through temporary files removed on error and on interrupt
//! ([`discard_temp_files`]), renamed into place one right after the other under that lock.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{CheckKind, Config, EnvironmentSpec};
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
    let rendered = rendered.with_context(|| {
        format!(
            "the template {} did not render: run `cargo xtask lint --env {}` to see why",
            config.bundle.template.display(),
            req.env_name
        )
    })?;
    // The postdeploy hook of the `where = "instance"` checks, when the environment has any.
    let generated = crate::verify::agent::bundle_entries(config, &req.env_name)?;
    if let Some(f) = inputs
        .iter()
        .find(|f| generated.iter().any(|(name, _, _)| *name == f.name))
    {
        bail!(
            "{} is written by the bundle stage (the verify agent's hook) and cannot come from the repository: rename or remove it",
            f.path.display()
        );
    }

    let bytes = zip_bundle_with(&rendered.json, &inputs, &generated)?;
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
    let mut names: Vec<String> = inputs
        .iter()
        .map(|f| f.name.clone())
        .chain(generated.iter().map(|(name, _, _)| name.clone()))
        .collect();
    names.sort();
    let files = std::iter::once(DOCKERRUN.to_string())
        .chain(names)
        .collect();
    if !req.dry_run {
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("cannot create {}", out_dir.display()))?;
        let _lock = OutputLock::acquire(&out_dir, &req.release.name, LOCK_WAIT)?;
        let mut pair = TempFiles::default();
        pair.write(&out_dir.join(DOCKERRUN), rendered.json.as_bytes())?;
        pair.write(&path, &bytes)?;
        if let Some(ms) = std::env::var(PAUSE_VAR)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            // Test hook: a window in which the temporary files exist (see PAUSE_VAR).
            std::thread::sleep(Duration::from_millis(ms));
        }
        pair.rename_into_place()?;
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
    env.checks.iter().find_map(|c| match &c.kind {
        CheckKind::Http {
            url: None, path, ..
        } => Some(path.clone()),
        CheckKind::Http { url: Some(u), .. } => {
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
    zip_bundle_with(dockerrun, inputs, &[])
}

/// A zip entry: its name and mode, and where its bytes are (a file, or generated bytes).
type Entry<'a> = (&'a str, u32, Result<&'a Path, &'a [u8]>);

/// [`zip_bundle`] with `generated` entries (name, bytes, mode) among the inputs, in name order.
pub fn zip_bundle_with(
    dockerrun: &str,
    inputs: &[InputFile],
    generated: &[(String, Vec<u8>, u32)],
) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(zip::DateTime::default());
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file(DOCKERRUN, base.unix_permissions(0o644))?;
    zip.write_all(dockerrun.as_bytes())?;
    let mut entries: Vec<Entry<'_>> = inputs
        .iter()
        .map(|f| (f.name.as_str(), f.mode, Ok(f.path.as_path())))
        .chain(
            generated
                .iter()
                .map(|(name, bytes, mode)| (name.as_str(), *mode, Err(bytes.as_slice()))),
        )
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, mode, source) in entries {
        let data = match source {
            Ok(path) => {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
            }
            Err(bytes) => bytes.to_vec(),
        };
        zip.start_file(name, base.unix_permissions(mode))?;
        zip.write_all(&data)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A bundle as files: name inside the zip → content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files(pub BTreeMap<String, Vec<u8>>);

impl Files {
    /// The files of a zip (a source bundle).
    pub fn from_zip(bytes: &[u8]) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
            .context("the source bundle is not a readable zip")?;
        let mut files = BTreeMap::new();
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i)?;
            if entry.is_dir() {
                continue;
            }
            let name = entry.name()?.trim_start_matches("./").to_string();
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .with_context(|| format!("cannot read {name} in the source bundle"))?;
            files.insert(name, data);
        }
        Ok(Self(files))
    }
}

/// Downloads and unzips `s3://bucket/key`.
pub async fn fetch_bundle(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Files> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("cannot download the source bundle s3://{bucket}/{key}: check that the role may s3:GetObject on it"))?;
    let bytes = object
        .body
        .collect()
        .await
        .with_context(|| format!("cannot read the source bundle s3://{bucket}/{key}"))?
        .into_bytes();
    Files::from_zip(&bytes).with_context(|| format!("s3://{bucket}/{key}"))
}

/// The lock file of an output folder, naming its holder while it is held. It stays in the
/// folder: removing a lock file another process may have opened defeats the lock.
pub const LOCK_FILE: &str = ".bundle.lock";

/// How long a `bundle` waits for another one writing to the same folder.
pub const LOCK_WAIT: Duration = Duration::from_secs(120);

/// Test hook: milliseconds to wait between writing the temporary files and renaming them
/// into place, so that a test can interrupt a bundle or race another one in that window.
/// The `Dockerrun.aws.json` inside the zip at `path`; `None` when it has none.
/// Reads only that entry, not the whole zip (a bundle may be hundreds of MB). An error when
/// the file is not a readable zip.
pub(crate) fn zip_dockerrun(path: &Path) -> Result<Option<Vec<u8>>> {
    let file =
        File::open(path).with_context(|| format!("cannot read the bundle {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .with_context(|| format!("the bundle {} is not a readable zip", path.display()))?;
    let mut entry = match zip.by_name(DOCKERRUN) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the bundle {}", path.display()))
        }
    };
    let mut data = Vec::new();
    entry
        .read_to_end(&mut data)
        .with_context(|| format!("cannot read {DOCKERRUN} in the bundle {}", path.display()))?;
    Ok(Some(data))
}

pub const PAUSE_VAR: &str = "DEPLOY_TEST_BUNDLE_PAUSE_MS";

/// An exclusive lock on an output folder, released when dropped (the file is closed).
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Locks `dir`, waiting up to `wait` for the process that holds it; `release` goes into
    /// the lock file so that whoever waits next can be told who holds it.
    pub fn acquire(dir: &Path, release: &str, wait: Duration) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .unwrap_or_else(|| "another process".to_string());
                    if start.elapsed() >= wait {
                        bail!(
                            "{} is locked by {holder}, still writing a bundle there after {}; nothing was written\n  hint: let it finish, or bundle into another folder with --out-dir",
                            dir.display(),
                            humantime::format_duration(wait)
                        );
                    }
                    if !told {
                        tracing::info!(
                            "{} is locked by {holder}, writing a bundle there: waiting for it (up to {})",
                            dir.display(),
                            humantime::format_duration(wait)
                        );
                        told = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        let holder = format!(
            "process {} (bundle of release {release})\n",
            std::process::id()
        );
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(holder.as_bytes()))
            .with_context(|| format!("cannot write the lock file {}", path.display()))?;
        remove_stale_temp_files(dir);
        Ok(Self { _file: file })
    }
}

/// Temporary files being written, for an interrupt to remove.
#[derive(Debug)]
struct TempRegistry(Mutex<Vec<PathBuf>>);

impl TempRegistry {
    const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn lock(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn discard(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        let mut files = self.lock();
        for f in files.drain(..) {
            if let Err(e) = std::fs::remove_file(&f) {
                tracing::debug!("cannot remove {}: {e}", f.display());
            }
        }
        files
    }
}

/// The temporary files of the outputs this process is writing.
static TEMP_FILES: TempRegistry = TempRegistry::new();

/// For Ctrl-C or SIGTERM: removes the temporary files of every bundle being written and
/// keeps them from being renamed into place while the returned guard lives. Hold it until
/// the process exits: the output folder keeps the pair it had before.
pub fn discard_temp_files() -> MutexGuard<'static, Vec<PathBuf>> {
    TEMP_FILES.discard()
}

/// The name of the temporary file for `path`, in the same folder (a rename stays atomic).
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Leftovers of a process that was killed outright (SIGKILL) while writing to `dir`; called
/// under the folder's lock, so no other process is writing them.
fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let ours = [format!("{DOCKERRUN}.tmp-"), "deploy.zip.tmp-".to_string()];
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ours.iter().any(|p| name.starts_with(p.as_str())) {
            tracing::debug!("removing {name}, left by an interrupted bundle");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// An output set being written: `(temporary, final)` paths. Dropped before
/// [`TempFiles::rename_into_place`] (an error, a panic), it removes its temporary files.
#[derive(Debug)]
struct TempFiles {
    registry: &'static TempRegistry,
    files: Vec<(PathBuf, PathBuf)>,
}

impl Default for TempFiles {
    fn default() -> Self {
        Self {
            registry: &TEMP_FILES,
            files: Vec::new(),
        }
    }
}

impl TempFiles {
    /// Writes `bytes` to the temporary file of `path`.
    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = temp_path(path);
        let mut file = {
            // Created and registered at once: an interrupt removes every file created.
            let mut registry = self.registry.lock();
            let file =
                File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            registry.push(tmp.clone());
            file
        };
        self.files.push((tmp.clone(), path.to_path_buf()));
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))
    }

    /// Renames every file into place, one right after the other, unless an interrupt has
    /// discarded them.
    fn rename_into_place(mut self) -> Result<()> {
        let mut registry = self.registry.lock();
        let files = std::mem::take(&mut self.files);
        if files.iter().any(|(tmp, _)| !registry.contains(tmp)) {
            bail!("interrupted: the bundle's temporary files were removed; nothing was written");
        }
        registry.retain(|f| !files.iter().any(|(tmp, _)| tmp == f));
        for (i, (tmp, path)) in files.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, path) {
                for (rest, _) in &files[i..] {
                    let _ = std::fs::remove_file(rest);
                }
                return Err(e)
                    .with_context(|| format!("cannot move {} into place", path.display()));
            }
        }
        Ok(())
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        if self.files.is_empty() {
            return;
        }
        let mut registry = self.registry.lock();
        for (tmp, _) in self.files.drain(..) {
            registry.retain(|f| f != &tmp);
            let _ = std::fs::remove_file(&tmp);
        }
    }
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
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // The folder's pair stays one unit: under the bundle's lock, and a `deploy.zip` whose
        // Dockerrun file this render replaces goes (the bundle stage makes it again).
        let _lock = OutputLock::acquire(dir, &release.name, LOCK_WAIT)?;
        let zip = dir.join("deploy.zip");
        if path.file_name() == Some(std::ffi::OsStr::new(DOCKERRUN))
            && zip_dockerrun(&zip)
                .ok()
                .flatten()
                .is_some_and(|inside| inside != rendered.json.as_bytes())
        {
            std::fs::remove_file(&zip)
                .with_context(|| format!("cannot remove {}", zip.display()))?;
            tracing::warn!(
                "removed {}: it held another Dockerrun file than the one rendered now; `cargo xtask bundle --env {}` makes it again",
                zip.display(),
                req.environment
            );
        }
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        std::fs::write(&tmp, &rendered.json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
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
    // Zipping and writing block: off the async threads, so that the caller can meet an
    // interrupt meanwhile (and call `discard_temp_files`).
    let config = config.clone();
    let req = req.clone();
    tokio::task::spawn_blocking(move || {
        make_bundle(
            &BundleRequest::new(&config, &req.environment, release)
                .with_account(account)
                .with_out_dir(req.out_dir.clone())
                .with_dry_run(req.dry_run),
        )
    })
    .await
    .context("the bundle's worker thread failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_folder_lock_is_waited_for_then_refused_naming_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = OutputLock::acquire(dir.path(), "v1", LOCK_WAIT).unwrap();
        let err = OutputLock::acquire(dir.path(), "v2", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        let holder = format!(
            "is locked by process {} (bundle of release v1)",
            std::process::id()
        );
        assert!(err.contains(&holder), "{err}");
        assert!(err.contains("nothing was written"), "{err}");
        assert!(err.contains("--out-dir"), "{err}");
        drop(held);
        OutputLock::acquire(dir.path(), "v2", Duration::ZERO).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.contains("(bundle of release v2)"), "{text}");
    }

    #[test]
    fn temporary_files_go_on_error_and_on_interrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        // A registry of its own: the process's one may hold other tests' files.
        let registry: &'static TempRegistry = Box::leak(Box::new(TempRegistry::new()));
        let new_set = || TempFiles {
            registry,
            files: Vec::new(),
        };
        // Dropped before the renames (an error on the way): nothing stays.
        let mut set = new_set();
        set.write(&a, b"1").unwrap();
        assert!(temp_path(&a).exists());
        drop(set);
        assert!(!temp_path(&a).exists());
        assert!(!registry.lock().contains(&temp_path(&a)));

        // Discarded by an interrupt: removed, and never renamed into place.
        let mut set = new_set();
        set.write(&a, b"1").unwrap();
        set.write(&b, b"2").unwrap();
        drop(registry.discard());
        assert!(!temp_path(&a).exists() && !temp_path(&b).exists());
        let err = set.rename_into_place().unwrap_err().to_string();
        assert!(err.starts_with("interrupted"), "{err}");
        assert!(!a.exists() && !b.exists());

        let mut set = new_set();
        set.write(&a, b"1").unwrap();
        set.write(&b, b"2").unwrap();
        set.rename_into_place().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"1");
        assert_eq!(std::fs::read(&b).unwrap(), b"2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
