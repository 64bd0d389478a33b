//! The pull-request preview: render and lint the bundle of the checked-out tree, diff its
//! `Dockerrun.aws.json`, `.ebextensions/**` and `.platform/**` against a baseline, and say it
//! all in one markdown document (posted as ONE pull-request comment, and written to the job
//! summary).
//!
//! The baseline is the bundle of the version running on the environment (EB
//! DescribeEnvironments → DescribeApplicationVersions → its S3 source bundle) when AWS read
//! credentials are there, else the bundle rendered from the base commit, else nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bundle::{self, DOCKERRUN};
use crate::config::Config;
use crate::dockerrun::Dockerrun;
use crate::lint::{Finding, Report, Severity};
use crate::release::Release;
use crate::template::RenderContext;

/// Stand-in account for rendering when none is known (the preview says so).
pub const PLACEHOLDER_ACCOUNT: &str = "000000000000";

/// The hidden marker of the preview comment of environment `env`.
pub fn marker(env: &str) -> String {
    format!("<!-- cargo-xtask-preview:{env} -->")
}

/// A rendered bundle as files: name inside the zip → content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files(pub BTreeMap<String, Vec<u8>>);

impl Files {
    /// Only what the preview compares: the Dockerrun file, `.ebextensions/` and `.platform/`.
    fn compared(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.0.iter().filter(|(name, _)| compared(name))
    }

    /// The files of a zip (a source bundle).
    pub fn from_zip(bytes: &[u8]) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
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

fn compared(name: &str) -> bool {
    name == DOCKERRUN || name.starts_with(".ebextensions/") || name.starts_with(".platform/")
}

/// The head side: what would be deployed.
#[derive(Debug, Clone)]
pub struct Head {
    pub env_name: String,
    pub release: Release,
    /// `None` when the template did not render.
    pub dockerrun: Option<Dockerrun>,
    pub files: Files,
    pub lint: Report,
    /// `None` when lint found errors (no bundle is made then).
    pub bundle: Option<BundleFacts>,
    /// False when the account was unknown and [`PLACEHOLDER_ACCOUNT`] stood in.
    pub account_known: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFacts {
    pub sha256: String,
    pub size: u64,
    pub version_label: String,
}

/// Renders and lints the bundle of `config`'s tree for `env_name`, as `make_bundle` would,
/// but keeps going on lint errors so that the preview can show them.
pub fn render_head(
    config: &Config,
    env_name: &str,
    release: &Release,
    account: Option<&str>,
) -> Result<Head> {
    let env = config.environment(env_name)?;
    let account_known = account.is_some() || config.account.is_some();
    let account = account
        .or(config.account.as_deref())
        .unwrap_or(PLACEHOLDER_ACCOUNT);
    let ctx = RenderContext::for_environment(config, env_name, env, release, Some(account));
    let inputs = bundle::collect_inputs(config)?;
    let (rendered, lint) = bundle::lint_inputs(config, env, &ctx, &inputs)?;
    let mut files = BTreeMap::new();
    for f in &inputs {
        let data =
            std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        files.insert(f.name.clone(), data);
    }
    let mut facts = None;
    if let Some(r) = &rendered {
        files.insert(DOCKERRUN.to_string(), r.json.clone().into_bytes());
        if lint.errors() == 0 {
            let bytes = bundle::zip_bundle(&r.json, &inputs)?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            facts = Some(BundleFacts {
                version_label: release.version_label(&sha256),
                sha256,
                size: bytes.len() as u64,
            });
        }
    }
    Ok(Head {
        env_name: env_name.to_string(),
        release: release.clone(),
        dockerrun: rendered.map(|r| r.dockerrun),
        files: Files(files),
        lint,
        bundle: facts,
        account_known,
    })
}

/// What the head was compared against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Baseline {
    /// The bundle of the version running on the EB environment.
    Running {
        eb_environment: String,
        version_label: String,
        files: Files,
    },
    /// The bundle rendered from the base commit.
    BaseCommit {
        rev: String,
        commit: String,
        files: Files,
    },
    /// Nothing to compare with; `why` says so.
    None { why: String },
}

impl Baseline {
    fn files(&self) -> Option<&Files> {
        match self {
            Baseline::Running { files, .. } | Baseline::BaseCommit { files, .. } => Some(files),
            Baseline::None { .. } => None,
        }
    }

    /// One sentence: what the diff is against.
    pub fn describe(&self) -> String {
        match self {
            Baseline::Running {
                eb_environment,
                version_label,
                ..
            } => format!("the version running on `{eb_environment}`: `{version_label}`"),
            Baseline::BaseCommit { rev, commit, .. } => {
                let short: String = commit.chars().take(12).collect();
                if rev.starts_with(&short) || short.starts_with(rev.as_str()) {
                    format!("the bundle rendered from the base commit `{short}`")
                } else {
                    format!("the bundle rendered from the base commit `{short}` (`{rev}`)")
                }
            }
            Baseline::None { why } => format!("nothing ({why})"),
        }
    }
}

/// The bundle of the version running on the environment, through EB and S3.
pub async fn running_baseline(
    aws: &crate::aws::Aws,
    application: &str,
    eb_environment: &str,
) -> Result<Baseline> {
    running_baseline_with(&aws.eb(), &aws.s3(), application, eb_environment).await
}

/// [`running_baseline`] with explicit clients.
pub async fn running_baseline_with(
    eb: &aws_sdk_elasticbeanstalk::Client,
    s3: &aws_sdk_s3::Client,
    application: &str,
    eb_environment: &str,
) -> Result<Baseline> {
    let envs = eb
        .describe_environments()
        .application_name(application)
        .environment_names(eb_environment)
        .include_deleted(false)
        .send()
        .await
        .with_context(|| format!("cannot describe the EB environment {eb_environment} of {application} (DescribeEnvironments)"))?;
    let env = envs.environments().first().with_context(|| {
        format!("EB has no environment {eb_environment} in the application {application}")
    })?;
    let label = env
        .version_label()
        .with_context(|| {
            format!("the EB environment {eb_environment} runs no application version yet")
        })?
        .to_string();
    let versions = eb
        .describe_application_versions()
        .application_name(application)
        .version_labels(&label)
        .send()
        .await
        .with_context(|| {
            format!("cannot describe the application version {label} (DescribeApplicationVersions)")
        })?;
    let source = versions
        .application_versions()
        .first()
        .and_then(|v| v.source_bundle())
        .with_context(|| format!("the application version {label} has no S3 source bundle"))?;
    let (bucket, key) = (
        source.s3_bucket().unwrap_or_default().to_string(),
        source.s3_key().unwrap_or_default().to_string(),
    );
    let files = fetch_bundle(s3, &bucket, &key).await?;
    Ok(Baseline::Running {
        eb_environment: eb_environment.to_string(),
        version_label: label,
        files,
    })
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

/// The bundle rendered from commit `rev` of the git repository around `config`: the commit's
/// tree is exported (`git archive`) to a temporary directory and rendered there.
pub fn base_commit_baseline(
    config: &Config,
    env_name: &str,
    rev: &str,
    account: Option<&str>,
) -> Result<Baseline> {
    let dir = config.root.clone();
    let top = crate::release::git(&dir, &["rev-parse", "--show-toplevel"])?;
    let top = PathBuf::from(top.trim());
    let commit = crate::release::git(&dir, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
        .with_context(|| format!("the base revision {rev:?} is not a commit of this repository: fetch it (actions/checkout with fetch-depth: 0) or pass another --base"))?
        .trim()
        .to_string();
    let abs_config = std::fs::canonicalize(&config.path)
        .with_context(|| format!("cannot resolve {}", config.path.display()))?;
    let rel_config = abs_config
        .strip_prefix(std::fs::canonicalize(&top)?)
        .with_context(|| {
            format!(
                "{} is outside the git repository {}",
                config.path.display(),
                top.display()
            )
        })?
        .to_path_buf();
    let tmp = TempDir::new()?;
    let out = Command::new("git")
        .args(["archive", "--format=tar", &commit])
        .current_dir(&top)
        .output()
        .context("cannot run git archive")?;
    if !out.status.success() {
        bail!(
            "git archive {commit} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    tar::Archive::new(&out.stdout[..])
        .unpack(tmp.path())
        .with_context(|| format!("cannot unpack the tree of {commit}"))?;
    let base_config_path = tmp.path().join(&rel_config);
    if !base_config_path.exists() {
        return Ok(Baseline::None {
            why: format!(
                "the base commit {} has no {}",
                &commit[..12],
                rel_config.display()
            ),
        });
    }
    let base_config = Config::load(&base_config_path, &crate::config::Overrides::from_env())
        .with_context(|| {
            format!(
                "the configuration of the base commit {} does not load",
                &commit[..12]
            )
        })?;
    if base_config.environment(env_name).is_err() {
        return Ok(Baseline::None {
            why: format!(
                "the base commit {} has no environment {env_name}",
                &commit[..12]
            ),
        });
    }
    let release = Release::fixed(&commit[..12], &commit);
    let head = render_head(&base_config, env_name, &release, account)?;
    Ok(Baseline::BaseCommit {
        rev: rev.to_string(),
        commit,
        files: head.files,
    })
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let p = std::env::temp_dir().join(format!("xtask-preview-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
        Ok(Self(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub name: String,
    pub change: Change,
    /// Unified diff (empty for binary files).
    pub diff: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Modified,
}

/// The differences between the baseline's and the head's compared files.
pub fn diff(base: &Files, head: &Files) -> Vec<FileDiff> {
    let base_map: BTreeMap<_, _> = base.compared().collect();
    let head_map: BTreeMap<_, _> = head.compared().collect();
    let names: std::collections::BTreeSet<&String> =
        base_map.keys().chain(head_map.keys()).copied().collect();
    let mut out = Vec::new();
    for name in names {
        let (old, new) = (base_map.get(name), head_map.get(name));
        let change = match (old, new) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(_), Some(_)) => Change::Modified,
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (None, None) => continue,
        };
        let text = |b: Option<&&Vec<u8>>| b.map(|b| std::str::from_utf8(b).map(str::to_string));
        let diff = match (text(old), text(new)) {
            (Some(Err(_)), _) | (_, Some(Err(_))) => String::new(),
            (a, b) => {
                let a = a.and_then(Result::ok).unwrap_or_default();
                let b = b.and_then(Result::ok).unwrap_or_default();
                similar::TextDiff::from_lines(&a, &b)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("a/{name}"), &format!("b/{name}"))
                    .to_string()
            }
        };
        out.push(FileDiff {
            name: name.clone(),
            change,
            diff,
        });
    }
    out
}

/// The environment properties in the preview: their diff against what runs (names and
/// masked state only), or why there is none.
#[derive(Debug, Clone)]
pub enum EnvSection {
    /// deploy.toml declares no properties or secrets for the environment.
    NoneDeclared,
    Compared(crate::envprops::DiffReport),
    /// AWS could not be reached (no credentials, no access, no environment): `why` says so.
    Unavailable {
        why: String,
    },
}

impl EnvSection {
    /// The diff of `env_name`'s declared properties against its running environment, read
    /// with the AWS credentials at hand; nothing is read when none are declared.
    pub async fn read(config: &Config, env_name: &str) -> Self {
        let declared = match crate::envprops::Declared::of(config, env_name) {
            Ok(d) => d,
            Err(e) => {
                return Self::Unavailable {
                    why: format!("{e:#}"),
                }
            }
        };
        if declared.is_empty() {
            return Self::NoneDeclared;
        }
        let env = match crate::ops::AwsEnvironment::resolve(config, env_name, "preview") {
            Ok(e) => e,
            Err(e) => {
                return Self::Unavailable {
                    why: format!("{e:#}"),
                }
            }
        };
        let aws = crate::aws::Aws::load(&config.region).await;
        if !has_credentials(&aws).await {
            return Self::Unavailable {
                why: "no AWS credentials".into(),
            };
        }
        let eb = crate::eb::Eb::new(aws.eb(), crate::eb::Pacing::default());
        match crate::envprops::apply::plan_with(config, &eb, &aws, &env, false).await {
            Ok(d) => Self::Compared(d),
            Err(e) => Self::Unavailable {
                why: format!("{e:#}"),
            },
        }
    }

    /// The section's markdown: a table of names, changes, kinds and whether each differs.
    fn markdown(&self, env_name: &str, md: &mut String) {
        while md.ends_with("\n\n") {
            md.pop();
        }
        let _ = writeln!(md, "\n### Environment properties\n");
        match self {
            EnvSection::NoneDeclared => {
                let _ = writeln!(
                    md,
                    "deploy.toml declares no environment properties or secrets for `{env_name}`."
                );
            }
            EnvSection::Unavailable { why } => {
                let _ = writeln!(
                    md,
                    "⚠️ Not compared: AWS cannot be reached from this job ({why}). The running environment's properties are unknown here."
                );
            }
            EnvSection::Compared(d) => {
                let _ = writeln!(
                    md,
                    "Against what runs on `{}` (values are never shown: only whether they differ).\n",
                    d.eb_environment
                );
                let rows = d.masked_rows();
                if rows.is_empty() {
                    let _ = writeln!(md, "They match deploy.toml.\n");
                } else {
                    let _ = writeln!(md, "| name | change | kind | value |\n|---|---|---|---|");
                    for [name, change, kind, state] in &rows {
                        let _ = writeln!(md, "| `{name}` | {change} | {kind} | {state} |");
                    }
                    let _ = writeln!(md);
                }
                let _ = writeln!(md, "{}", d.summary());
                if d.changes > 0 {
                    let _ = writeln!(
                        md,
                        "\nA deploy applies these with `--apply-env`; `cargo xtask env apply --env {}` applies them alone.",
                        d.environment
                    );
                }
                for p in &d.problems {
                    let _ = writeln!(md, "- ❌ {p}");
                }
            }
        }
    }
}

/// The whole preview.
#[derive(Debug, Clone)]
pub struct Preview {
    pub head: Head,
    pub baseline: Baseline,
    pub diffs: Vec<FileDiff>,
    pub env: EnvSection,
}

impl Preview {
    pub fn new(head: Head, baseline: Baseline) -> Self {
        let diffs = match baseline.files() {
            Some(base) => diff(base, &head.files),
            None => diff(&Files::default(), &head.files),
        };
        Self {
            head,
            baseline,
            diffs,
            env: EnvSection::NoneDeclared,
        }
    }

    /// The preview as markdown (without the marker).
    pub fn markdown(&self, root: &Path) -> String {
        let h = &self.head;
        let mut md = String::new();
        let verdict = if h.lint.errors() > 0 {
            "❌ lint found errors: this bundle cannot be deployed"
        } else if h.lint.warnings() > 0 {
            "⚠️ renders, with lint warnings"
        } else {
            "✅ renders and passes lint"
        };
        let _ = writeln!(md, "## Bundle preview: `{}`\n", h.env_name);
        let _ = writeln!(md, "{verdict}\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| Release | `{}` |", h.release.name);
        match &h.bundle {
            Some(b) => {
                let _ = writeln!(md, "| Version label | `{}` |", b.version_label);
                let _ = writeln!(md, "| Bundle sha256 | `{}` |", b.sha256);
                let _ = writeln!(md, "| Bundle size | {} bytes |", b.size);
            }
            None => {
                let _ = writeln!(md, "| Bundle | not made (lint errors) |");
            }
        }
        let _ = writeln!(md, "| Compared against | {} |", self.baseline.describe());
        if !h.account_known {
            let _ = writeln!(
                md,
                "\nThe AWS account is unknown here: image references show `{PLACEHOLDER_ACCOUNT}` (set the repository variable `AWS_ACCOUNT_ID`)."
            );
        }

        if let Some(d) = &h.dockerrun {
            let _ = writeln!(
                md,
                "\n### Images\n\n| image | tag | containers |\n|---|---|---|"
            );
            let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in &d.container_definitions {
                images
                    .entry(c.image.clone().unwrap_or_default())
                    .or_default()
                    .push(c.name.clone().unwrap_or_default());
            }
            for (image, users) in &images {
                let (repo, tag) = split_tag(image);
                let _ = writeln!(md, "| `{repo}` | `{tag}` | {} |", users.join(", "));
            }
            let _ = writeln!(
                md,
                "\n### Containers\n\n| container | essential | memory (MiB) | ports (host → container) | command |\n|---|---|---|---|---|"
            );
            for c in &d.container_definitions {
                let ports: Vec<String> = c
                    .port_mappings
                    .iter()
                    .map(|p| {
                        let cp = p
                            .container_port
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "?".into());
                        match p.host_port {
                            Some(hp) => format!("{hp} → {cp}"),
                            None => format!("→ {cp}"),
                        }
                    })
                    .collect();
                let memory = match (c.memory, c.memory_reservation) {
                    (Some(m), _) => m.to_string(),
                    (None, Some(r)) => format!("{r} (reservation)"),
                    (None, None) => "–".into(),
                };
                let command = c
                    .command
                    .as_ref()
                    .map(|c| format!("`{}`", c.join(" ")))
                    .unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    md,
                    "| {} | {} | {memory} | {} | {command} |",
                    c.name.as_deref().unwrap_or("?"),
                    if c.essential.unwrap_or(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    if ports.is_empty() {
                        "–".to_string()
                    } else {
                        ports.join(", ")
                    },
                );
            }
        }

        let _ = writeln!(
            md,
            "\n### Lint: {} error(s), {} warning(s)\n",
            h.lint.errors(),
            h.lint.warnings()
        );
        if h.lint.findings.is_empty() {
            let _ = writeln!(md, "No findings.");
        }
        for f in &h.lint.findings {
            let icon = match f.severity {
                Severity::Error => "❌",
                Severity::Warning => "⚠️",
            };
            let _ = writeln!(
                md,
                "- {icon} `{}` {} [{}]: {}{}",
                location(f, root),
                f.rule,
                f.name,
                f.message,
                if f.hint.is_empty() {
                    String::new()
                } else {
                    format!(" (hint: {})", f.hint)
                }
            );
        }

        let _ = writeln!(md, "\n### Changes against {}\n", self.baseline.describe());
        if self.diffs.is_empty() {
            let _ = writeln!(
                md,
                "No changes to `{DOCKERRUN}`, `.ebextensions/` or `.platform/`."
            );
        }
        for d in &self.diffs {
            let change = match d.change {
                Change::Added => "added",
                Change::Removed => "removed",
                Change::Modified => "modified",
            };
            let _ = writeln!(
                md,
                "<details><summary><code>{}</code> ({change})</summary>\n",
                d.name
            );
            if d.diff.is_empty() {
                let _ = writeln!(md, "Binary file {change}.");
            } else {
                let fence = if d.diff.contains("```") {
                    "````"
                } else {
                    "```"
                };
                let _ = writeln!(md, "{fence}diff\n{}{fence}", ensure_newline(&d.diff));
            }
            let _ = writeln!(md, "\n</details>\n");
        }
        self.env.markdown(&h.env_name, &mut md);
        mask_secrets(&md, &h.lint.secrets())
    }
}

/// `text` with every line of every secret replaced by `***`: a value lint flagged as a
/// secret is never republished by the preview (stdout, job summary, PR comment).
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut parts: Vec<&str> = secrets
        .iter()
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|l| l.chars().count() > 1)
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    let mut out = text.to_string();
    for p in parts {
        out = out.replace(p, "***");
    }
    out
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// `repo` and `tag` of an image reference (the tag after the last `:` past the last `/`).
fn split_tag(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// `file:line:col` relative to `root` (the repository), as annotations want it.
pub fn location(f: &Finding, root: &Path) -> String {
    let file = crate::lint::relative(&f.file, root);
    if f.line > 0 {
        format!("{file}:{}:{}", f.line, f.column)
    } else {
        file
    }
}

/// Which baseline to compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Against {
    /// The running version when AWS read credentials work, else the base commit.
    #[default]
    Auto,
    /// The running version, or fail.
    Running,
    /// The base commit.
    Base,
}

/// Where to post the comment.
#[derive(Debug, Clone)]
pub struct PostTo {
    pub github: crate::github::GitHub,
    pub pull_request: u64,
}

/// A preview to make.
#[derive(Debug, Clone)]
pub struct PreviewRequest<'a> {
    pub config: &'a Config,
    pub env_name: String,
    pub release: Release,
    pub account: Option<String>,
    /// The base commit (for example the pull request's base SHA).
    pub base: Option<String>,
    pub against: Against,
    /// Post (or edit) the pull request's comment; `None` posts nothing.
    pub post: Option<PostTo>,
}

/// `preview`: what the command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewCommand {
    pub environment: String,
    /// The release name; `None`: the git tag of HEAD, else its short commit.
    pub release: Option<String>,
    /// The base commit to compare with when the running version cannot be read.
    pub base: Option<String>,
    pub against: Against,
    /// The pull request to comment on (needed by `post`).
    pub pull_request: Option<u64>,
    /// Post or edit the pull request's preview comment (needs GITHUB_TOKEN and GITHUB_REPOSITORY).
    pub post: bool,
}

/// Reads the GitHub settings (only when posting), the release and the account, then [`run`].
pub async fn preview(config: &Config, cmd: &PreviewCommand) -> Result<PreviewOutcome> {
    let actions = crate::github::actions::Actions::from_env();
    if let Ok(token) = std::env::var("GITHUB_TOKEN") {
        actions.mask(&token);
    }
    // GitHub settings matter only when posting: a token in a laptop's environment without
    // GITHUB_REPOSITORY must not stop a local preview.
    let settings = if cmd.post {
        crate::github::GitHubSettings::from_env()?
    } else {
        None
    };
    let release = Release::detect(&config.root, cmd.release.as_deref())?;
    let post = match (cmd.post, settings, cmd.pull_request) {
        (false, _, _) => None,
        (true, None, _) => {
            bail!("--post needs a GitHub token: set GITHUB_TOKEN (and GITHUB_REPOSITORY)")
        }
        (true, Some(_), None) => bail!("--post needs the pull request: pass --pr NUMBER"),
        (true, Some(s), Some(pr)) => Some(PostTo {
            github: crate::github::GitHub::new(&s)?,
            pull_request: pr,
        }),
    };
    // `${account}`: the configured one (or DEPLOY_ACCOUNT), else STS when the preview may use
    // AWS at all; without either, a stand-in the preview points out.
    let account = match cmd.against {
        Against::Base => config.account.clone(),
        _ => {
            let env = config.environment(&cmd.environment)?;
            crate::aws::account_or_none(config, env.target).await
        }
    };
    let req = PreviewRequest {
        config,
        env_name: cmd.environment.clone(),
        release,
        account,
        base: cmd.base.clone(),
        against: cmd.against,
        post,
    };
    run(&req, &actions).await
}

/// What [`run`] made.
#[derive(Debug, Clone, Serialize)]
pub struct PreviewOutcome {
    pub environment: String,
    pub compared_against: String,
    pub bundle: Option<BundleFacts>,
    pub lint_errors: usize,
    pub lint_warnings: usize,
    pub changed_files: Vec<String>,
    /// The environment properties `apply` would change (`None`: not compared).
    pub env_changes: Option<usize>,
    /// The comment's URL when one was posted or edited.
    pub comment_url: Option<String>,
    #[serde(skip)]
    pub markdown: String,
}

/// Renders, lints, diffs against the baseline, writes the job summary and outputs, and posts
/// the comment when asked. Lint errors are reported, not returned as an error: the caller
/// decides the exit status from `lint_errors`.
pub async fn run(
    req: &PreviewRequest<'_>,
    actions: &crate::github::actions::Actions,
) -> Result<PreviewOutcome> {
    let config = req.config;
    let env = config.environment(&req.env_name)?;
    let root = repo_root(&config.root);

    let head = {
        let _g = actions.group(&format!("render and lint the bundle of {}", req.env_name));
        let head = render_head(config, &req.env_name, &req.release, req.account.as_deref())?;
        for secret in head.lint.secrets() {
            actions.mask(&secret);
        }
        actions.annotate_lint(&head.lint, &root);
        tracing::info!(
            "rendered {}: {} lint error(s), {} warning(s)",
            req.env_name,
            head.lint.errors(),
            head.lint.warnings()
        );
        head
    };

    let baseline = {
        let _g = actions.group("find the baseline");
        let from_base = || -> Result<Baseline> {
            match &req.base {
                Some(rev) => {
                    base_commit_baseline(config, &req.env_name, rev, req.account.as_deref())
                }
                None => Ok(Baseline::None {
                    why: "no running version could be read and no base commit was given (--base)"
                        .into(),
                }),
            }
        };
        let eb_env = env.eb_environment.clone();
        match (req.against, eb_env) {
            (Against::Base, _) => from_base()?,
            (Against::Running, None) => bail!(
                "environment {} has no `eb_environment`: there is no running version to compare with; use --against base",
                req.env_name
            ),
            (Against::Running, Some(eb_env)) => {
                let aws = crate::aws::Aws::load(&config.region).await;
                running_baseline(&aws, &config.application, &eb_env).await?
            }
            (Against::Auto, None) => from_base()?,
            (Against::Auto, Some(eb_env)) => {
                let aws = crate::aws::Aws::load(&config.region).await;
                if has_credentials(&aws).await {
                    match running_baseline(&aws, &config.application, &eb_env).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!("cannot read the running version of {eb_env} ({e:#}); comparing against the base commit instead");
                            from_base()?
                        }
                    }
                } else {
                    tracing::info!("no AWS credentials: comparing against the base commit");
                    from_base()?
                }
            }
        }
    };
    tracing::info!("comparing against {}", baseline.describe());

    let mut preview = Preview::new(head, baseline);
    preview.env = {
        let _g = actions.group("compare the environment properties");
        let section = EnvSection::read(config, &req.env_name).await;
        if let EnvSection::Unavailable { why } = &section {
            tracing::warn!(
                "the environment properties of {} were not compared: {why}",
                req.env_name
            );
        }
        section
    };
    let markdown = preview.markdown(&root);
    actions.summary(&markdown)?;
    if let Some(b) = &preview.head.bundle {
        actions.set_output("version_label", &b.version_label)?;
        actions.set_output("bundle_sha256", &b.sha256)?;
    }
    let mut comment_url = None;
    if let Some(post) = &req.post {
        let _g = actions.group("post the pull request comment");
        let done = post
            .github
            .upsert_comment(post.pull_request, &marker(&req.env_name), &markdown)
            .await
            .with_context(|| {
                format!(
                    "cannot post the preview on pull request #{}",
                    post.pull_request
                )
            })?;
        let verb = match &done {
            crate::github::Upserted::Created(_) => "posted",
            crate::github::Upserted::Updated(_) => "updated",
            crate::github::Upserted::Unchanged(_) => "left unchanged",
        };
        tracing::info!("{verb} the preview comment {}", done.comment().html_url);
        comment_url = Some(done.comment().html_url.clone());
    }
    Ok(PreviewOutcome {
        environment: req.env_name.clone(),
        compared_against: preview.baseline.describe(),
        bundle: preview.head.bundle.clone(),
        lint_errors: preview.head.lint.errors(),
        lint_warnings: preview.head.lint.warnings(),
        changed_files: preview.diffs.iter().map(|d| d.name.clone()).collect(),
        env_changes: match &preview.env {
            EnvSection::Compared(d) => Some(d.changes),
            _ => None,
        },
        comment_url,
        markdown,
    })
}

/// True when the credential chain yields credentials within a few seconds.
async fn has_credentials(aws: &crate::aws::Aws) -> bool {
    use aws_sdk_s3::config::ProvideCredentials;
    let Some(provider) = aws.sdk.credentials_provider() else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            provider.provide_credentials()
        )
        .await,
        Ok(Ok(_))
    )
}

/// The git work tree's top directory around `dir`, else `dir`.
fn repo_root(dir: &Path) -> PathBuf {
    crate::release::git(dir, &["rev-parse", "--show-toplevel"])
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_after_the_last_slash() {
        assert_eq!(
            split_tag("1.dkr.ecr.us-west-2.amazonaws.com/antenna-backend:v1"),
            ("1.dkr.ecr.us-west-2.amazonaws.com/antenna-backend", "v1")
        );
        assert_eq!(
            split_tag("localhost:5000/x"),
            ("localhost:5000/x", "latest")
        );
    }

    #[test]
    fn diff_covers_only_bundle_files_and_names_the_change() {
        let f = |pairs: &[(&str, &str)]| {
            Files(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        };
        let base = f(&[
            (DOCKERRUN, "{\n  \"a\": 1\n}\n"),
            (".ebextensions/00.config", "x\n"),
            ("README.md", "ignored\n"),
        ]);
        let head = f(&[
            (DOCKERRUN, "{\n  \"a\": 2\n}\n"),
            (".platform/hooks/postdeploy/01.sh", "#!/bin/sh\n"),
            ("README.md", "changed but ignored\n"),
        ]);
        let d = diff(&base, &head);
        let summary: Vec<(&str, Change)> = d.iter().map(|d| (d.name.as_str(), d.change)).collect();
        assert_eq!(
            summary,
            [
                (".ebextensions/00.config", Change::Removed),
                (".platform/hooks/postdeploy/01.sh", Change::Added),
                (DOCKERRUN, Change::Modified)
            ]
        );
        assert_eq!(
            d[2].diff,
            "--- a/Dockerrun.aws.json\n+++ b/Dockerrun.aws.json\n@@ -1,3 +1,3 @@\n {\n-  \"a\": 1\n+  \"a\": 2\n }\n"
        );
    }

    const TEMPLATE: &str = r#"{
  "AWSEBDockerrunVersion": 2,
  "containerDefinitions": [
    {
      "name": "django",
      "image": "${image.backend}",
      "essential": true,
      "memory": 1024,
      "command": ["/start"],
      "portMappings": [{ "hostPort": 80, "containerPort": 5000 }],
      "environment": [{ "name": "RELEASE", "value": "${release}" }]
    },
    {
      "name": "ml-backend-minimal",
      "image": "${image.ml}",
      "essential": false,
      "memoryReservation": 512,
      "portMappings": [{ "hostPort": 2000, "containerPort": 2000 }]
    }
  ]
}
"#;

    const CONFIG: &str = r#"
region = "us-west-2"
application = "antenna"
account = "123456789012"

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
path = "/api/v2/"
"#;

    const EBEXT: &str = "option_settings:\n  aws:elasticbeanstalk:environment:process:default:\n    HealthCheckPath: /api/v2/\n";

    fn fixture() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("deploy.toml"), CONFIG).unwrap();
        std::fs::write(d.join("Dockerrun.template.json"), TEMPLATE).unwrap();
        std::fs::create_dir_all(d.join(".ebextensions")).unwrap();
        std::fs::write(d.join(".ebextensions/00_setup.config"), EBEXT).unwrap();
        let config = Config::load(&d.join("deploy.toml"), &Default::default()).unwrap();
        (dir, config)
    }

    #[test]
    fn markdown_snapshot_against_the_running_version() {
        let (dir, config) = fixture();
        let release = Release::fixed("v1.3.0", "0123456789abcdef0123456789abcdef01234567");
        let head = render_head(&config, "staging", &release, None).unwrap();
        let bundle = head.bundle.clone().expect("a clean fixture makes a bundle");
        assert_eq!(bundle.sha256.len(), 64);
        assert_eq!(
            bundle.version_label,
            format!("v1.3.0-{}", &bundle.sha256[..8])
        );

        // The running version: an older release, less memory, an extension file since removed.
        let mut running = head.files.clone();
        let old = String::from_utf8(running.0[DOCKERRUN].clone())
            .unwrap()
            .replace("v1.3.0", "v1.2.0")
            .replace("\"memory\": 1024", "\"memory\": 768")
            .replace("v0.2.0", "v0.1.0");
        running.0.insert(DOCKERRUN.into(), old.into_bytes());
        running.0.insert(
            ".ebextensions/99_old.config".into(),
            b"option_settings: {}\n".to_vec(),
        );
        let preview = Preview::new(
            head,
            Baseline::Running {
                eb_environment: "antenna-staging".into(),
                version_label: "v1.2.0-89abcdef".into(),
                files: running,
            },
        );
        assert_eq!(
            preview
                .diffs
                .iter()
                .map(|d| (d.name.as_str(), d.change))
                .collect::<Vec<_>>(),
            [
                (".ebextensions/99_old.config", Change::Removed),
                (DOCKERRUN, Change::Modified)
            ]
        );
        // Environment properties: one of each kind; values and references never shown.
        let mut preview = preview;
        let declared = crate::envprops::Declared {
            properties: BTreeMap::from([
                ("DJANGO_DEBUG".into(), "False".into()),
                ("NEW".into(), "n".into()),
            ]),
            secrets: BTreeMap::from([(
                "DJANGO_SECRET_KEY".into(),
                crate::envprops::SecretRef {
                    secret: Some("antenna/staging/DJANGO_SECRET_KEY".into()),
                    key: None,
                    parameter: None,
                },
            )]),
        };
        let running = crate::envprops::Running {
            plain: BTreeMap::from([
                ("DJANGO_DEBUG".into(), "True".into()),
                ("DJANGO_SECRET_KEY".into(), "hunter2-console".into()),
                ("CONSOLE".into(), "y".into()),
            ]),
            ..Default::default()
        };
        let arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna/staging/DJANGO_SECRET_KEY-AbCdEf";
        let resolved = BTreeMap::from([("DJANGO_SECRET_KEY".to_string(), Ok(arn.to_string()))]);
        preview.env = EnvSection::Compared(crate::envprops::diff(
            "staging",
            "antenna-staging",
            &declared,
            &resolved,
            &running,
            &[],
            false,
        ));
        let md = preview
            .markdown(dir.path())
            .replace(&bundle.sha256, "[sha256]")
            .replace(&bundle.version_label, "[version label]")
            .replace(&format!("{} bytes", bundle.size), "[size] bytes");
        for hidden in ["hunter2-console", "False", "True", "arn:", "sha256:"] {
            assert!(!md.contains(hidden), "{hidden} in the preview:\n{md}");
        }
        insta::assert_snapshot!(md);
    }

    #[test]
    fn lint_errors_are_listed_and_no_bundle_is_made() {
        let (dir, config) = fixture();
        std::fs::write(
            dir.path().join("Dockerrun.template.json"),
            TEMPLATE
                .replace("\"memory\": 1024,", "\"memory\": 0,")
                .replace("\"hostPort\": 2000", "\"hostPort\": 80"),
        )
        .unwrap();
        let release = Release::fixed("v1.3.0", "0123456789abcdef0123456789abcdef01234567");
        let head = render_head(&config, "staging", &release, None).unwrap();
        assert!(head.lint.errors() > 0, "{:?}", head.lint);
        assert!(head.bundle.is_none());
        let preview = Preview::new(
            head,
            Baseline::None {
                why: "first deploy".into(),
            },
        );
        let md = preview.markdown(dir.path());
        assert!(
            md.contains("❌ lint found errors: this bundle cannot be deployed"),
            "{md}"
        );
        assert!(md.contains("| Bundle | not made (lint errors) |"), "{md}");
        assert!(
            md.contains("| Compared against | nothing (first deploy) |"),
            "{md}"
        );
        assert!(md.contains("- ❌ `Dockerrun.template.json:"), "{md}");
        assert!(
            md.contains("<code>Dockerrun.aws.json</code> (added)"),
            "{md}"
        );
    }
}
