//! `env diff` and `env apply`: the diff of one environment, and one `UpdateEnvironment` that
//! applies it, waited for like a deploy (same lock, events and verdict: `eb::deploy`).

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Serialize;

use super::secrets::SecretStores;
use super::{diff, Declared, DiffReport, Running};
use crate::config::{Config, HealthThreshold};
use crate::eb::{self, DeployVerdict};
use crate::ops::{AwsEnvironment, Session};

/// Reads what runs, resolves the declared references and compares them.
pub async fn plan(
    config: &Config,
    session: &Session,
    env: &AwsEnvironment,
    prune: bool,
) -> Result<DiffReport> {
    plan_with(config, &session.eb, &session.aws, env, prune).await
}

/// [`plan`] with the EB client and the AWS configuration (Secrets Manager, SSM) of a caller
/// that has no [`Session`] (a deploy, the preview).
pub async fn plan_with(
    config: &Config,
    eb: &eb::Eb,
    aws: &crate::aws::Aws,
    env: &AwsEnvironment,
    prune: bool,
) -> Result<DiffReport> {
    let declared = Declared::of(config, &env.name)?;
    let stores = SecretStores::new(aws);
    let resolved = stores.resolve_all(&declared).await;
    let running = Running::read(eb, &env.application, &env.eb_environment).await?;
    let required = env.spec.required_properties();
    Ok(diff(
        &env.name,
        &env.eb_environment,
        &declared,
        &resolved,
        &running,
        &required,
        prune,
    ))
}

/// `--prune` removes what someone else set: it needs `--yes` (`env apply` and `deploy
/// --apply-env` alike).
pub fn check_prune(env: &AwsEnvironment, prune: bool, confirmed: bool) -> Result<()> {
    if prune && !confirmed {
        bail!(
            "--prune removes every property of {} that deploy.toml does not declare (see `cargo xtask env diff --env {}`): add --yes to confirm",
            env.eb_environment,
            env.name
        );
    }
    Ok(())
}

/// What `env apply` does.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub env: AwsEnvironment,
    /// Also remove the properties set outside `deploy.toml`.
    pub prune: bool,
    /// The confirmation `prune` needs (`--yes`).
    pub confirmed: bool,
    pub dry_run: bool,
    pub deadline: Duration,
    pub lock_wait: Duration,
    pub health_settle: Duration,
    pub threshold: HealthThreshold,
}

impl ApplyRequest {
    /// The request for `env` with its configured timeouts and health threshold.
    pub fn new(env: AwsEnvironment) -> Self {
        Self {
            prune: false,
            confirmed: false,
            dry_run: false,
            deadline: env.spec.timeouts.deploy,
            lock_wait: env.spec.timeouts.lock_wait,
            health_settle: env.spec.timeouts.health_settle,
            threshold: env.spec.health_threshold,
            env,
        }
    }
}

/// What `env apply` did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub diff: DiffReport,
    /// `None` when there was nothing to apply (no write call was made).
    pub verdict: Option<DeployVerdict>,
    pub message: String,
    pub request_id: Option<String>,
    pub events: Vec<String>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.verdict.is_none_or(DeployVerdict::ok)
    }
}

/// Applies the diff of `req.env`: waits for the environment to be free (the deploy lock),
/// compares, and sends the changes in one `UpdateEnvironment`, then waits for the verdict.
/// Nothing is written when nothing differs.
pub async fn apply(config: &Config, session: &Session, req: &ApplyRequest) -> Result<ApplyReport> {
    check_prune(&req.env, req.prune, req.confirmed)?;
    let eb_req = eb::DeployRequest {
        application: &req.env.application,
        environment: &req.env.eb_environment,
        label: "",
        region: &req.env.region,
        deadline: req.deadline,
        lock_wait: req.lock_wait,
        health_settle: req.health_settle,
        threshold: req.threshold,
        state_dir: None,
        dry_run: req.dry_run,
        options: None,
        options_only: true,
    };
    // The same lock as a deploy: compare only once the environment is ours.
    if let Err(locked) = eb::wait_until_ready(&session.eb, &eb_req).await? {
        let diff = plan(config, session, &req.env, req.prune).await?;
        return Ok(ApplyReport {
            diff,
            verdict: Some(locked.verdict),
            message: locked.message,
            request_id: None,
            events: vec![],
        });
    }
    let diff = plan(config, session, &req.env, req.prune).await?;
    if !diff.problems.is_empty() {
        bail!(
            "not applying the properties of {}: {}",
            req.env.name,
            diff.problems.join("; ")
        );
    }
    if diff.is_empty() {
        let message = format!(
            "the properties of {} already match deploy.toml; nothing to apply",
            req.env.eb_environment
        );
        return Ok(ApplyReport {
            diff,
            verdict: None,
            message,
            request_id: None,
            events: vec![],
        });
    }
    let update = diff.update.clone();
    let eb_req = eb::DeployRequest {
        options: Some(&update),
        ..eb_req
    };
    let outcome = eb::deploy(&session.eb, &eb_req).await?;
    Ok(ApplyReport {
        diff,
        verdict: Some(outcome.verdict),
        message: outcome.message,
        request_id: outcome.request_id,
        events: outcome.events,
    })
}
