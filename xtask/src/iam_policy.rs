//! `iam-policy`: the least-privilege IAM policies of the deploy and preview roles.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::iam::{IamPolicyOutput, IamPolicyRequest};

use crate::args::EnvArg;
use crate::Global;

/// Print the least-privilege IAM policy of the deploy role (or, with --trust, the role's
/// OIDC trust policy for GitHub Actions).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    env: EnvArg,
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
    /// Print instead what the environment's instance profile needs to read the secrets and
    /// parameters it declares (EB resolves them on the instances).
    #[arg(long, conflicts_with_all = ["trust", "preview", "managed"])]
    instance_profile: bool,
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

impl Cmd {
    pub fn request(&self, _config: &Config) -> Result<IamPolicyRequest> {
        Ok(IamPolicyRequest {
            environment: self.env.required("iam-policy")?,
            account: self.account.clone(),
            trust: self.trust.clone(),
            preview: self.preview,
            instance_profile: self.instance_profile,
            explain: self.explain,
            managed: self.managed,
            environment_id: self.environment_id.clone(),
            offline: self.offline,
        })
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let output = pipeline::iam::iam_policy(&config, &self.request(&config)?).await?;
        // The policy is the command's output: stdout, with or without --json.
        match output {
            IamPolicyOutput::Policy(policy) => {
                println!("{}", serde_json::to_string_pretty(&policy)?)
            }
            IamPolicyOutput::Trust(trust) => println!("{}", serde_json::to_string_pretty(&trust)?),
            IamPolicyOutput::Explained(text) => print!("{text}"),
            IamPolicyOutput::InstanceProfile(instance) => {
                if global.json {
                    return global.emit_json(&instance);
                }
                eprintln!(
                    "attach to the role {} of the environment's instance profile (on the ECS platform, also to the Dockerrun file's executionRoleArn role):",
                    instance.role
                );
                println!("{}", serde_json::to_string_pretty(&instance.policy)?);
            }
            IamPolicyOutput::Managed(alt) => {
                if global.json {
                    return global.emit_json(&alt);
                }
                eprintln!("{}\n", alt.trade_off);
                eprintln!("attach: {}", alt.managed_policy_arns.join(", "));
                eprintln!("and this inline policy:");
                println!("{}", serde_json::to_string_pretty(&alt.inline_policy)?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn trust_for_a_repository() {
        let Command::IamPolicy(cmd) = parse(&[
            "iam-policy",
            "--env",
            "staging",
            "--trust",
            "o/n",
            "--account",
            "123456789012",
        ]) else {
            panic!("not iam-policy")
        };
        let req = cmd.request(&config()).unwrap();
        assert_eq!(req.trust.as_deref(), Some("o/n"));
        assert_eq!(req.account.as_deref(), Some("123456789012"));
        assert!(!req.preview);
    }
}
