//! `iam-policy`: the least-privilege IAM policies of the deploy and preview roles.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::iam::IamPolicyRequest;

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
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> Result<IamPolicyRequest> {
        Ok(IamPolicyRequest {
            environment: self.env.required("iam-policy")?,
            account: self.account.clone(),
            trust: self.trust.clone(),
            preview: self.preview,
        })
    }

    pub fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let policy = pipeline::iam::policy_document(&config, &self.request(&config)?)?;
        // The policy is the command's output: stdout, with or without --json.
        println!("{}", serde_json::to_string_pretty(&policy)?);
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
