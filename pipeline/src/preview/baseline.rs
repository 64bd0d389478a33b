//! What the head is compared against: the bundle of the version running on the environment
//! (EB DescribeEnvironments → DescribeApplicationVersions → its S3 source bundle), or the
//! bundle rendered from the base commit (`git archive` of its tree), or nothing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::render_head;
use crate::bundle::{fetch_bundle, Files};
use crate::config::Config;
use crate::eb::{Eb, Pacing};
use crate::release::Release;

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
    pub(super) fn files(&self) -> Option<&Files> {
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
    let eb = Eb::from_aws(aws, Pacing::default());
    running_baseline_with(&eb, &aws.s3(), application, eb_environment).await
}

/// [`running_baseline`] with explicit clients.
pub async fn running_baseline_with(
    eb: &Eb,
    s3: &aws_sdk_s3::Client,
    application: &str,
    eb_environment: &str,
) -> Result<Baseline> {
    let env = eb
        .environment(application, eb_environment)
        .await
        .with_context(|| format!("cannot describe the EB environment {eb_environment} of {application} (DescribeEnvironments)"))?
        .with_context(|| {
            format!("EB has no environment {eb_environment} in the application {application}")
        })?;
    let label = env
        .version_label()
        .with_context(|| {
            format!("the EB environment {eb_environment} runs no application version yet")
        })?
        .to_string();
    let version = crate::eb::version::describe(eb, application, &label).await?;
    let source = version
        .as_ref()
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
    let tmp = tempfile::Builder::new()
        .prefix("xtask-preview-")
        .tempdir()
        .context("cannot create a temporary directory for the base commit's tree")?;
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
    let short = &commit[..12];
    let base_config_path = tmp.path().join(&rel_config);
    if !base_config_path.exists() {
        return Ok(Baseline::None {
            why: format!("the base commit {short} has no {}", rel_config.display()),
        });
    }
    let base_config = Config::load(&base_config_path, &crate::config::Overrides::from_env())
        .with_context(|| format!("the configuration of the base commit {short} does not load"))?;
    if base_config.environment(env_name).is_err() {
        return Ok(Baseline::None {
            why: format!("the base commit {short} has no environment {env_name}"),
        });
    }
    let release = Release::fixed(short, &commit);
    let head = render_head(&base_config, env_name, &release, account)?;
    Ok(Baseline::BaseCommit {
        rev: rev.to_string(),
        commit,
        files: head.files,
    })
}
