//! `cleanup`: delete old application versions and their bundles.

use std::time::Duration;

use anyhow::{bail, Result};
use pipeline::ops::cleanup::{self, CleanupRequest, LifecycleRequest};
use pipeline::ops::{AwsEnvironment, Session};

use crate::args::DryRunArg;
use crate::Global;

/// Delete old application versions and their S3 bundles, never one that an environment runs,
/// ran just before (its rollback target) or is being deployed. Shows the plan unless --yes.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    /// Always keep the newest N versions.
    #[arg(long, default_value_t = 20)]
    keep: usize,
    /// Only delete versions older than this ("30d", "12weeks").
    #[arg(long, value_parser = parse_age)]
    older_than: Option<Duration>,
    /// Delete (without it, only the plan is shown).
    #[arg(long)]
    yes: bool,
    /// The default unless --yes.
    #[command(flatten)]
    dry_run: DryRunArg,
    /// Write Elastic Beanstalk's own version lifecycle policy (max count --keep, max age
    /// --older-than) instead of deleting now.
    #[arg(long)]
    lifecycle: bool,
    /// The role EB assumes to apply the lifecycle policy.
    #[arg(long, default_value = "aws-elasticbeanstalk-service-role")]
    service_role: String,
}

/// An age such as "90d" (no upper bound, unlike the deploy's timeouts).
fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("invalid age {text:?} ({e}): expected a value such as \"30d\" or \"12weeks\"")
    })
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let envs = AwsEnvironment::selected(&config, None, "cleanup")?;
        let session = Session::open(&config).await;
        // Interactive or in CI, nothing is deleted without an explicit --yes.
        let dry_run = self.dry_run.dry_run || !self.yes;
        if self.lifecycle {
            let role = if self.service_role.starts_with("arn:") {
                self.service_role.clone()
            } else {
                let account = pipeline::aws::resolve_account(
                    &config,
                    pipeline::config::Target::Aws,
                    Some(&session.aws),
                )
                .await?
                .unwrap_or_default();
                format!("arn:aws:iam::{account}:role/{}", self.service_role)
            };
            let days = self
                .older_than
                .map(|d| (d.as_secs().div_ceil(86_400)).max(1) as i32);
            cleanup::write_lifecycle(
                &session,
                &LifecycleRequest {
                    application: &config.application,
                    service_role: &role,
                    max_count: Some(self.keep.max(1) as i32),
                    max_age_days: days,
                    dry_run,
                },
            )
            .await?;
            if dry_run {
                eprintln!("dry run: run again with --yes to write the lifecycle policy");
            } else {
                eprintln!(
                    "Elastic Beanstalk now keeps at most {} versions of {}{}",
                    self.keep.max(1),
                    config.application,
                    days.map_or(String::new(), |d| format!(", none older than {d} days"))
                );
            }
            return Ok(());
        }
        let state_dir = config.resolve(&config.bundle.out_dir);
        let report = cleanup::cleanup(
            &session,
            &CleanupRequest {
                application: &config.application,
                environments: &envs,
                keep: self.keep,
                older_than: self.older_than,
                dry_run,
                state_dir: Some(&state_dir),
            },
        )
        .await?;
        eprint!("{}", report.render());
        global.emit_json(&report)?;
        if report.count(cleanup::Action::Failed) > 0 {
            bail!(
                "{} version(s) could not be deleted: see the table above",
                report.count(cleanup::Action::Failed)
            );
        }
        Ok(())
    }
}
