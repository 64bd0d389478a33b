//! `rollback`: deploys an earlier version again, with the same lock, wait, verdict and verify
//! as `deploy` (it calls the same functions).
//!
//! The target is the label given, else the last version that ran healthy on the environment
//! before the current one (from the deploy journal). A target is refused, with the reason,
//! when it does not exist, already runs, failed EB's processing or was never processed, or
//! when an image its `Dockerrun.aws.json` names is gone from ECR (the instances could not
//! pull it).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::versions::{self, Version};
use super::{journal, AwsEnvironment, Session};
use crate::deploy::{Outcome, RunReport, StageReport};
use crate::eb;
use crate::image::ecr::EcrError;
use crate::verify::Verifier;

/// Why a rollback target is refused (callers and tests branch on the kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no earlier healthy version of {environment} is known (the deploy journal has none): pass the LABEL to roll back to (`cargo xtask history` lists them)")]
    NoTarget { environment: String },
    #[error("{label} already runs on {environment}: nothing to roll back to")]
    AlreadyRunning { label: String, environment: String },
    #[error(
        "no application version {label} exists in {application}: `cargo xtask history` lists them"
    )]
    NotFound { label: String, application: String },
    #[error("{label} failed Elastic Beanstalk's processing (status FAILED): its Dockerrun.aws.json was refused; pick another version")]
    Failed { label: String },
    #[error("{label} was never processed by Elastic Beanstalk (status {status}): its bundle was not checked; pick a PROCESSED version")]
    Unprocessed { label: String, status: String },
    #[error("{label} names images that are gone from ECR: {}; the instances could not pull them: push them again or pick another version", images.join(", "))]
    ImagesGone { label: String, images: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct RollbackRequest<'a> {
    pub env: &'a AwsEnvironment,
    /// The version to go back to (else the last healthy one before the current).
    pub label: Option<&'a str>,
    pub deadline: Option<Duration>,
    pub lock_wait: Option<Duration>,
    /// Where the in-flight deploy state file lives (as for `deploy`).
    pub state_dir: Option<&'a Path>,
    pub dry_run: bool,
}

/// The version a rollback goes to, and why it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub version: Version,
    pub current: Option<String>,
    pub reason: String,
}

/// Chooses and checks the target; `Err` (a [`Refused`] inside) when it must not be deployed.
pub async fn target(session: &Session, req: &RollbackRequest<'_>) -> Result<Target> {
    let env = req.env;
    let app = env.application.as_str();
    let name = env.eb_environment.as_str();
    let live = versions::environments(&session.eb, app).await?;
    let current = live
        .iter()
        .find(|e| e.environment_name() == Some(name))
        .with_context(|| format!("the Elastic Beanstalk environment {name} does not exist in application {app}: fix `eb_environment` of [environments.{}] in deploy.toml", env.name))?
        .version_label()
        .map(str::to_string);
    let (label, reason) = match req.label {
        Some(l) => (l.to_string(), "the version asked for".to_string()),
        None => {
            let all = versions::list(&session.eb, app).await?;
            let entries = match super::history::journal_bucket(env, &all) {
                Some(bucket) => journal::read(&session.s3, &bucket, app, name).await?,
                None => vec![],
            };
            let l = journal::last_good_before(&entries, current.as_deref()).ok_or_else(|| {
                Refused::NoTarget {
                    environment: name.to_string(),
                }
            })?;
            (
                l,
                format!(
                    "the last version that ran healthy on {name} before {}",
                    current.as_deref().unwrap_or("the current one")
                ),
            )
        }
    };
    if current.as_deref() == Some(label.as_str()) {
        return Err(Refused::AlreadyRunning {
            label,
            environment: name.to_string(),
        }
        .into());
    }
    let version = versions::find(&session.eb, app, &label)
        .await?
        .ok_or_else(|| Refused::NotFound {
            label: label.clone(),
            application: app.to_string(),
        })?;
    match version.status.as_str() {
        "PROCESSED" => {}
        "FAILED" => return Err(Refused::Failed { label }.into()),
        other => {
            return Err(Refused::Unprocessed {
                label,
                status: other.to_string(),
            }
            .into())
        }
    }
    let gone = missing_images(session, &version).await?;
    if !gone.is_empty() {
        return Err(Refused::ImagesGone {
            label,
            images: gone,
        }
        .into());
    }
    Ok(Target {
        version,
        current,
        reason,
    })
}

/// The ECR images of the version's `Dockerrun.aws.json` that ECR no longer has.
async fn missing_images(session: &Session, version: &Version) -> Result<Vec<String>> {
    let (Some(bucket), Some(key)) = (&version.bucket, &version.key) else {
        return Ok(vec![]);
    };
    let files = crate::bundle::fetch_bundle(&session.s3, bucket, key).await?;
    let Some(bytes) = files.0.get(crate::bundle::DOCKERRUN) else {
        return Ok(vec![]);
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).with_context(|| {
        format!(
            "the {} of {} is not JSON",
            crate::bundle::DOCKERRUN,
            version.label
        )
    })?;
    let dockerrun = crate::dockerrun::Dockerrun::from_value(value)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "the {} of {} cannot be read",
                crate::bundle::DOCKERRUN,
                version.label
            )
        })?;
    let mut gone = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for (_, image) in dockerrun.images() {
        if !seen.insert(image.to_string()) {
            continue;
        }
        let Ok(r) = crate::image::reference::ImageRef::parse(image) else {
            continue;
        };
        let ecr = r
            .registry
            .as_deref()
            .is_some_and(|h| h.contains(".dkr.ecr.") && h.ends_with(".amazonaws.com"));
        let Some(tag) = r.tag.as_deref().filter(|_| ecr) else {
            continue;
        };
        let found = crate::image::ecr::find_tag(&session.ecr, &r.repository, tag).await;
        match found {
            Ok(Some(_)) => {}
            Ok(None) => gone.push(image.to_string()),
            Err(EcrError::NoRepository { .. }) => gone.push(format!(
                "{image} (repository {} does not exist)",
                r.repository
            )),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot check the image {image} in ECR"))
            }
        }
    }
    Ok(gone)
}

/// Rolls back: checks the target, deploys it (lock, wait, verdict; the last lines of the logs
/// when it fails, as `deploy` shows them), verifies it, records it in the journal. The report
/// has the shape of a deploy's (GitHub reporting reads it).
pub async fn rollback(
    session: &Session,
    req: &RollbackRequest<'_>,
    verifier: Option<&dyn Verifier>,
) -> Result<(Target, RunReport)> {
    let target = target(session, req).await?;
    let report = run(session, req, &target, verifier).await?;
    Ok((target, report))
}

impl Target {
    /// The git ref a GitHub deployment of this rollback names: the version's commit.
    pub fn git_ref(&self) -> Option<&str> {
        self.version
            .described
            .commit
            .as_deref()
            .filter(|c| c.len() == 40 && c.chars().all(|x| x.is_ascii_hexdigit()))
    }
}

/// Deploys and verifies a target [`target`] accepted.
pub async fn run(
    session: &Session,
    req: &RollbackRequest<'_>,
    target: &Target,
    verifier: Option<&dyn Verifier>,
) -> Result<RunReport> {
    let env = req.env;
    let label = target.version.label.clone();
    tracing::info!(
        "rollback: {} → {label} ({}); now running {}",
        env.eb_environment,
        target.reason,
        target.current.as_deref().unwrap_or("nothing")
    );
    let spec = &env.spec;
    let deploy_req = env.deploy_request(
        &label,
        req.deadline,
        req.lock_wait,
        req.state_dir,
        req.dry_run,
    );
    let started = Instant::now();
    let outcome = eb::deploy(&session.eb, &deploy_req).await?;
    if outcome.verdict == eb::DeployVerdict::Failed {
        let actions = crate::github::actions::Actions::from_env();
        crate::ops::logs::show_failure_logs(&session.eb, &env.eb_environment, &actions).await;
    }
    let deploy_stage = StageReport {
        stage: "deploy".into(),
        outcome: Outcome::of_verdict(outcome.verdict),
        duration_ms: started.elapsed().as_millis() as u64,
        output: outcome.message.clone(),
    };
    if let Some(bucket) = target.version.bucket.as_deref().or(spec.bucket.as_deref()) {
        journal::record(&session.s3, bucket, &env.application, "rollback", &outcome).await;
    }
    let started = Instant::now();
    let verify_stage = match (verifier, outcome.verdict.ok(), req.dry_run) {
        (_, _, true) => (
            Outcome::Planned,
            "would run the environment's checks".to_string(),
        ),
        (_, false, _) => (Outcome::NotRun, "the deploy failed".to_string()),
        (None, true, _) => (Outcome::NotAvailable, "no checks in this build".to_string()),
        (Some(v), true, _) => crate::deploy::check_environment(&session.eb, env, &label, v, None)
            .await
            .unwrap_or_else(|e| (Outcome::Failed, format!("{e:#}"))),
    };
    let verify_stage = StageReport {
        stage: "verify".into(),
        outcome: verify_stage.0,
        duration_ms: started.elapsed().as_millis() as u64,
        output: verify_stage.1,
    };
    let ok = outcome.verdict.ok() && verify_stage.outcome != Outcome::Failed;
    let report = RunReport {
        environment: env.name.clone(),
        eb_environment: env.eb_environment.clone(),
        release: target
            .version
            .described
            .release
            .clone()
            .unwrap_or_else(|| label.clone()),
        label: Some(label),
        dry_run: req.dry_run,
        stages: vec![deploy_stage, verify_stage],
        deploy: Some(outcome),
        rollback: None,
        env: None,
        ok,
        eb_calls: session.eb.calls_made(),
        preflight: None,
    };
    Ok(report)
}
