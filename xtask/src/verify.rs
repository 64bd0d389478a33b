//! `verify`: is the deployed backend really up? Runs the environment's checks and prints a table.

use anyhow::{bail, Result};
use pipeline::config::Config;
use pipeline::verify::VerifyRequest;

use crate::args::EnvArg;
use crate::Global;

/// Check a deployed environment: API root, Redis, Celery workers and queues, Flower.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    env: EnvArg,
    /// Base URL of the deployed application (else the environment's `url`, or DEPLOY_URL).
    #[arg(long)]
    url: Option<String>,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> Result<VerifyRequest> {
        Ok(VerifyRequest {
            environment: self.env.required("verify")?,
            url: self.url.clone(),
        })
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let req = self.request(&config)?;
        let report = pipeline::verify::verify(&config, &req).await?;
        eprint!("{}", report.render_table());
        global.emit_json(&report)?;
        if !report.passed() {
            let failed: Vec<String> = report
                .failures()
                .map(|c| format!("{} ({})", c.check, c.verdict))
                .collect();
            bail!(
                "verify of {} failed: {} (details in the table above)",
                req.environment,
                failed.join(", ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn verify_needs_an_environment() {
        let Command::Verify(cmd) = parse(&["verify", "--url", "http://x"]) else {
            panic!("not verify")
        };
        if std::env::var_os("DEPLOY_ENV").is_none() {
            let err = cmd.request(&config()).unwrap_err().to_string();
            assert!(err.contains("pass --env NAME"), "{err}");
        }
        let Command::Verify(cmd) = parse(&["verify", "-e", "staging"]) else {
            panic!("not verify")
        };
        assert_eq!(cmd.request(&config()).unwrap().environment, "staging");
    }
}
