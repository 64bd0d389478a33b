//! `iam-policy` and `preview`: the GitHub side of the pipeline.

use anyhow::{bail, Context, Result};
use pipeline::github::actions::Actions;
use pipeline::github::{GitHub, GitHubSettings};
use pipeline::preview::{Against, PostTo, PreviewRequest};

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Print the least-privilege IAM policy of the deploy role (or, with --trust, the role's
    /// OIDC trust policy for GitHub Actions).
    IamPolicy(IamPolicyCmd),
    /// Render and lint the bundle, diff it against the running version (or the base commit)
    /// and print the markdown; with --post, keep ONE comment on the pull request up to date.
    Preview(PreviewCmd),
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::IamPolicy(c) => c.run(global).await,
            Cmd::Preview(c) => c.run(global).await,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct IamPolicyCmd {
    /// Environment of the configuration.
    #[arg(long = "env")]
    environment: String,
    /// AWS account id (else `account` in the configuration, or DEPLOY_ACCOUNT).
    #[arg(long)]
    account: Option<String>,
    /// Print the trust policy for GitHub Actions of this repository (`owner/name`) instead;
    /// the GitHub environment is the --env name.
    #[arg(long, value_name = "OWNER/NAME")]
    trust: Option<String>,
    /// Print the read-only policy of the preview role instead.
    #[arg(long, conflicts_with = "trust")]
    preview: bool,
    /// Print, for each statement, the commands and stages that need it and the AWS page that
    /// says so, instead of the policy.
    #[arg(long, conflicts_with = "trust")]
    explain: bool,
    /// Print the alternative that always works: AWS's managed Elastic Beanstalk policy plus the
    /// ECR and bundle statements, with the trade-off.
    #[arg(long, conflicts_with_all = ["trust", "preview"])]
    managed: bool,
    /// The Elastic Beanstalk environment id (e-abc123); else it is looked up when AWS can be
    /// reached, and the environment's resources are scoped by their EB tag when it cannot.
    #[arg(long, value_name = "ID")]
    environment_id: Option<String>,
    /// Do not ask AWS for the environment id and roles.
    #[arg(long)]
    offline: bool,
}

impl IamPolicyCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let facts = if self.environment_id.is_some() || self.offline || self.trust.is_some() {
            pipeline::iam::EnvironmentFacts {
                environment_id: self.environment_id.clone(),
                ..Default::default()
            }
        } else {
            pipeline::iam::lookup_or_explain(&config, &self.environment).await?
        };
        let req = pipeline::iam::PolicyRequest {
            environment: &self.environment,
            account: self.account.as_deref(),
            environment_id: facts.environment_id.as_deref(),
            instance_role: facts.instance_role.as_deref(),
            service_role: facts.service_role.as_deref(),
        };
        if self.managed {
            let alt = pipeline::iam::managed_alternative(&config, &req)?;
            if global.json {
                return global.emit_json(&alt);
            }
            eprintln!("{}\n", alt.trade_off);
            eprintln!("attach: {}", alt.managed_policy_arns.join(", "));
            eprintln!("and this inline policy:");
            println!("{}", serde_json::to_string_pretty(&alt.inline_policy)?);
            return Ok(());
        }
        let policy = if self.preview {
            pipeline::iam::preview_policy(&config, &req)?
        } else {
            pipeline::iam::deploy_policy(&config, &req)?
        };
        if self.explain {
            print!("{}", pipeline::iam::explain(&policy));
            return Ok(());
        }
        let text = match &self.trust {
            None => serde_json::to_string_pretty(&policy)?,
            Some(repository) => {
                let account = self
                    .account
                    .or(config.account)
                    .context("the AWS account id is unknown: pass --account ID")?;
                serde_json::to_string_pretty(&pipeline::iam::trust_policy(
                    &account,
                    repository,
                    &self.environment,
                )?)?
            }
        };
        println!("{text}");
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
pub struct PreviewCmd {
    /// Environment of the configuration to preview.
    #[arg(long = "env", env = "DEPLOY_ENV")]
    environment: String,
    /// Release name (default: the git tag of HEAD, else its short commit).
    #[arg(long, env = "DEPLOY_RELEASE")]
    release: Option<String>,
    /// The base commit to compare with when the running version cannot be read.
    #[arg(long, value_name = "REV")]
    base: Option<String>,
    /// What to compare against.
    #[arg(long, value_enum, default_value = "auto")]
    against: AgainstArg,
    /// The pull request to comment on (needed by --post).
    #[arg(long, value_name = "NUMBER", env = "PREVIEW_PR")]
    pr: Option<u64>,
    /// Post or edit the pull request's preview comment (needs GITHUB_TOKEN and GITHUB_REPOSITORY).
    #[arg(long, env = "PREVIEW_POST")]
    post: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum AgainstArg {
    /// The running version when AWS credentials can read it, else the base commit.
    Auto,
    /// The version running on the environment.
    Running,
    /// The base commit (--base).
    Base,
}

impl PreviewCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let actions = Actions::from_env();
        if let Ok(token) = std::env::var("GITHUB_TOKEN") {
            actions.mask(&token);
        }
        // GitHub settings matter only when posting: a token in a laptop's environment without
        // GITHUB_REPOSITORY must not stop a local preview.
        let settings = if self.post {
            GitHubSettings::from_env()?
        } else {
            None
        };
        let config = global.load_config()?;
        let config_dir = config.root.clone();
        let release = pipeline::release::Release::detect(&config_dir, self.release.as_deref())?;
        let post = match (self.post, settings, self.pr) {
            (false, _, _) => None,
            (true, None, _) => {
                bail!("--post needs a GitHub token: set GITHUB_TOKEN (and GITHUB_REPOSITORY)")
            }
            (true, Some(_), None) => bail!("--post needs the pull request: pass --pr NUMBER"),
            (true, Some(s), Some(pr)) => Some(PostTo {
                github: GitHub::new(&s)?,
                pull_request: pr,
            }),
        };
        // `${account}`: the configured one (or DEPLOY_ACCOUNT), else STS when the preview may
        // use AWS at all; without either, a stand-in the preview points out.
        let account = match (&config.account, self.against) {
            (Some(a), _) => Some(a.clone()),
            (None, AgainstArg::Base) => None,
            (None, _) => {
                let env = config.environment(&self.environment)?;
                pipeline::bundle::account_for(&config, env).await
            }
        };
        let req = PreviewRequest {
            config: &config,
            env_name: self.environment.clone(),
            release,
            account,
            base: self.base,
            against: match self.against {
                AgainstArg::Auto => Against::Auto,
                AgainstArg::Running => Against::Running,
                AgainstArg::Base => Against::Base,
            },
            post,
        };
        let outcome = pipeline::preview::run(&req, &actions).await?;
        if global.json {
            global.emit_json(&outcome)?;
        } else {
            print!("{}", outcome.markdown);
        }
        if outcome.lint_errors > 0 {
            bail!(
                "lint found {} error(s) in the bundle of {}: see the preview above",
                outcome.lint_errors,
                self.environment
            );
        }
        Ok(())
    }
}
