//! The pull-request preview: render and lint the bundle of the checked-out tree, diff its
//! `Dockerrun.aws.json`, `.ebextensions/**` and `.platform/**` against a baseline, and say it
//! all in one markdown document (posted as ONE pull-request comment, and written to the job
//! summary).
//!
//! The baseline is the bundle of the version running on the environment (EB
//! DescribeEnvironments → DescribeApplicationVersions → its S3 source bundle) when AWS read
//! credentials are there, else the bundle rendered from the base commit, else nothing.
//!
//! `head` renders what would be deployed, `baseline` finds what to compare it with, `diff`
//! compares the files and the environment properties, `markdown` says it all; this module
//! runs them for one request.

mod baseline;
mod diff;
mod head;
mod markdown;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

pub use baseline::{base_commit_baseline, running_baseline, running_baseline_with, Baseline};
pub use diff::{diff, Change, EnvSection, FileDiff};
pub use head::{render_head, BundleFacts, Head, PLACEHOLDER_ACCOUNT};
pub use markdown::{location, mask_secrets};

use crate::bundle::Files;
use crate::config::Config;
use crate::release::Release;

/// The hidden marker of the preview comment of environment `env`.
pub fn marker(env: &str) -> String {
    format!("<!-- cargo-xtask-preview:{env} -->")
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
                if aws.has_credentials().await {
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

/// The git work tree's top directory around `dir`, else `dir`.
fn repo_root(dir: &Path) -> PathBuf {
    crate::release::git(dir, &["rev-parse", "--show-toplevel"])
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bundle::DOCKERRUN;
    use crate::config::test_config::MINIMAL;

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

    const EBEXT: &str = "option_settings:\n  aws:elasticbeanstalk:environment:process:default:\n    HealthCheckPath: /api/v2/\n";

    fn fixture() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = format!("account = \"123456789012\"\n{MINIMAL}");
        std::fs::write(d.join("deploy.toml"), config).unwrap();
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
