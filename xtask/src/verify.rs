//! `verify`: is the deployed backend really up? Runs the environment's checks and prints a table.

use anyhow::{bail, Result};

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Check a deployed environment: API root, Redis, Celery workers and queues, Flower.
    Verify(VerifyCmd),
}

#[derive(clap::Args, Debug)]
pub struct VerifyCmd {
    /// The environment of the configuration whose checks run.
    #[arg(long)]
    env: String,
    /// Base URL of the deployed application (else the environment's `url`, or DEPLOY_URL).
    #[arg(long)]
    url: Option<String>,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::Verify(v) => v.run(global).await,
        }
    }
}

impl VerifyCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        if let Some(url) = &self.url {
            let actions = pipeline::github::actions::Actions::from_env();
            for secret in pipeline::verify::url_secrets(url) {
                actions.mask(&secret);
            }
            pipeline::config::check_url(url).map_err(|m| anyhow::anyhow!("--url: {m}"))?;
        }
        let checks =
            pipeline::verify::Check::for_environment(&config, &self.env, self.url.as_deref())?;
        if checks.is_empty() {
            bail!(
                "environment {:?} has no checks: add [[environments.{}.checks]] tables to {}",
                self.env,
                self.env,
                config.path.display()
            );
        }
        tracing::info!("verifying {} with {} checks", self.env, checks.len());
        let report = pipeline::verify::run(&checks).await;
        eprint!("{}", report.render_table());
        global.emit_json(&report)?;
        if !report.passed() {
            let failed: Vec<String> = report
                .failures()
                .map(|c| format!("{} ({})", c.check, c.verdict))
                .collect();
            bail!(
                "verify of {} failed: {} (details in the table above)",
                self.env,
                failed.join(", ")
            );
        }
        Ok(())
    }
}
