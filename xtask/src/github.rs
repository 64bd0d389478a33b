//! `iam-policy` and `preview`: the GitHub side of the pipeline.

use anyhow::{Context, Result};

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Print the least-privilege IAM policy of the deploy role (or, with --trust, the role's
    /// OIDC trust policy for GitHub Actions).
    IamPolicy(IamPolicyCmd),
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::IamPolicy(c) => c.run(global),
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
}

impl IamPolicyCmd {
    fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let policy = pipeline::iam::deploy_policy(
            &config,
            &pipeline::iam::PolicyRequest {
                environment: &self.environment,
                account: self.account.as_deref(),
            },
        )?;
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
