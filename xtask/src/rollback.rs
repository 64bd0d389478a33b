//! `rollback`: deploy an earlier version again, with deploy's lock, wait, verdict and verify.

use std::time::Duration;

use anyhow::{bail, Result};
use pipeline::ops::rollback::{self, RollbackRequest};
use pipeline::ops::{AwsEnvironment, Session};

use crate::args::{DryRunArg, EnvArg};
use crate::Global;

/// Roll an environment back to LABEL, or to the last version that ran healthy on it before
/// the current one. Refuses a version that failed processing, was never processed, or whose
/// images are gone from ECR.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    env: EnvArg,
    /// The version label to go back to (default: the last healthy one before the current).
    label: Option<String>,
    /// How long to wait for another deploy in progress (default: the environment's timeouts.lock_wait).
    #[arg(long, value_parser = pipeline::deploy::parse_duration)]
    lock_wait: Option<Duration>,
    /// How long to wait for the verdict (default: the environment's timeouts.deploy).
    #[arg(long, value_parser = pipeline::deploy::parse_duration)]
    deadline: Option<Duration>,
    #[command(flatten)]
    dry_run: DryRunArg,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = AwsEnvironment::resolve(&config, &self.env.required("rollback")?, "rollback")?;
        let session = Session::open(&config).await;
        let state_dir = config.resolve(&config.bundle.out_dir);
        let req = RollbackRequest {
            env: &env,
            label: self.label.as_deref(),
            deadline: self.deadline,
            lock_wait: self.lock_wait,
            state_dir: Some(&state_dir),
            dry_run: self.dry_run.dry_run,
        };
        let checks = pipeline::verify::EnvironmentChecks::new(&config, &env.name);
        let target = rollback::target(&session, &req).await?;
        // GitHub: a deployment of the version's commit with its statuses (no-op locally).
        let git_ref = target
            .git_ref()
            .map(str::to_string)
            .or_else(|| std::env::var("GITHUB_SHA").ok())
            .unwrap_or_else(|| target.version.label.clone());
        let github = pipeline::deploy::reporter::DeployReporter::start(&git_ref, &env.name).await;
        let report = match rollback::run(&session, &req, &target, Some(&checks)).await {
            Ok(r) => r,
            Err(e) => {
                github.failed(&e).await;
                return Err(e);
            }
        };
        eprintln!(
            "rollback of {} to {} ({}):",
            env.eb_environment, target.version.label, target.reason
        );
        eprintln!("{}", report.table());
        github.finish(&report, env.spec.url.as_deref()).await?;
        global.emit_json(&report)?;
        if !report.ok {
            bail!(
                "the rollback of {} to {} failed: see the summary above",
                env.eb_environment,
                target.version.label
            );
        }
        Ok(())
    }
}
