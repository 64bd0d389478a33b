//! `cargo xtask deploy`, whole: the target chosen by the environment (the local Docker Engine
//! or Elastic Beanstalk), the account resolved once, the GitHub deployment started and
//! finished around the run, and Ctrl-C turned into an error that says what to do.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::reporter::DeployReporter;
use super::{RunReport, RunRequest, Selection};
use crate::config::{Config, Target};
use crate::eb::{Clients, Pacing};
use crate::local::{LocalDeployment, LocalOptions};
use crate::release::Release;
use crate::stages::Stage;
use crate::verify::EnvironmentChecks;

/// One `deploy` (or `upload`, `version`) of a release to an environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipRequest {
    /// The environment of `deploy.toml`.
    pub environment: String,
    /// The release name; `None`: the git tag of HEAD, else its short commit.
    pub release: Option<String>,
    /// A bundle zip built earlier (skips render and bundle).
    pub bundle: Option<PathBuf>,
    /// The version label to deploy when no bundle is at hand (`--only deploy`).
    pub label: Option<String>,
    pub dry_run: bool,
    pub selection: Selection,
    pub lock_wait: Option<Duration>,
    pub deadline: Option<Duration>,
    /// Override of the environment's `rollback` setting.
    pub rollback: Option<bool>,
    /// The environment properties: apply them with the version (`--apply-env`), prune.
    pub env: super::EnvChoice,
}

/// What a ship did, by target.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Shipped {
    /// `target = "local"`: the stack on the local Docker Engine.
    Local(Box<LocalDeployment>),
    /// `target = "aws"`: every stage's outcome.
    Aws(Box<RunReport>),
}

impl Shipped {
    /// False when a stage failed (the caller exits non-zero).
    pub fn ok(&self) -> bool {
        match self {
            Shipped::Local(_) => true,
            Shipped::Aws(r) => r.ok,
        }
    }
}

/// Ships `req` to its environment's target. Re-running after a failure or Ctrl-C is safe.
pub async fn ship(config: Config, req: &ShipRequest) -> Result<Shipped> {
    let spec = config.environment(&req.environment)?;
    if spec.target == Target::Local {
        // The local target runs the same stages on the local Docker Engine.
        let options = LocalOptions {
            release: req.release.clone(),
            dry_run: req.dry_run,
            ..Default::default()
        };
        let done = crate::local::deploy_local(&config, &req.environment, &options).await?;
        return Ok(Shipped::Local(Box::new(done)));
    }
    let url = spec.url.clone();
    let release = Release::detect(&config.root, req.release.as_deref())?;
    let aws = crate::aws::Aws::load(&config.region).await;
    let renders = req.bundle.is_none()
        && [Stage::Render, Stage::Bundle]
            .iter()
            .any(|s| req.selection.includes(*s));
    // `${account}` in the template (only when rendering).
    let account = if renders {
        match crate::aws::resolve_account(&config, spec.target, Some(&aws)).await {
            Ok(a) => a,
            // A dry run still shows the plan; rendering then says what is missing.
            Err(e) if req.dry_run => {
                tracing::warn!("{e:#}");
                None
            }
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let run = RunRequest {
        environment: req.environment.clone(),
        account,
        aws: Some(aws.clone()),
        release,
        bundle: req.bundle.clone(),
        label: req.label.clone(),
        dry_run: req.dry_run,
        selection: req.selection.clone(),
        lock_wait: req.lock_wait,
        deadline: req.deadline,
        rollback: req.rollback,
        env: req.env,
        pacing: Pacing::default(),
        config,
    };
    let clients = Clients::from_aws(&aws);
    let checks = EnvironmentChecks::new(&run.config, &run.environment);
    // GitHub: a deployment with statuses, groups, annotations and outputs (no-op locally).
    let github = DeployReporter::start(&run.release.name, &run.environment).await;
    let result = tokio::select! {
        r = super::run(&run, &clients, Some(&checks)) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted: whatever Elastic Beanstalk was doing goes on; re-run the same command: \
             the upload and the version are reused and a deploy in flight is waited for, not restarted"
        )),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            github.failed(&e).await;
            return Err(e);
        }
    };
    github.finish(&report, url.as_deref()).await?;
    Ok(Shipped::Aws(Box::new(report)))
}
