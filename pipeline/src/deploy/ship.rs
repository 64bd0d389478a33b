//! `cargo xtask deploy`, whole: the target chosen by the environment (the local Docker Engine
//! or Elastic Beanstalk), the account resolved once, the GitHub deployment started and
//! finished around the run, and Ctrl-C turned into an error that says what to do.

use anyhow::Result;
use serde::Serialize;

use super::reporter::DeployReporter;
use super::{RunOptions, RunReport, RunRequest};
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
    /// Local target: restart the stack even when it already runs this version.
    pub force: bool,
    /// What is asked of the stages, handed on to the AWS target's [`RunRequest`]; a local
    /// environment takes only `dry_run` (see [`ShipRequest::check`]).
    pub options: RunOptions,
}

impl ShipRequest {
    /// Refuses flags this request cannot honour, rather than dropping them: the stage flags on
    /// a local environment (which runs every stage on the Docker Engine), `--from` with
    /// `--only`, and `--label` with a stage that makes a new bundle.
    pub fn check(&self, environment: &str, target: Target) -> Result<()> {
        let asked = &self.options;
        if target == Target::Local {
            let mut given = Vec::new();
            if asked.selection.from.is_some() {
                given.push("--from");
            }
            if !asked.selection.only.is_empty() {
                given.push("--only");
            }
            if asked.label.is_some() {
                given.push("--label");
            }
            if asked.bundle.is_some() {
                given.push("--bundle");
            }
            if asked.rollback.is_some() {
                given.push("--no-rollback");
            }
            if asked.lock_wait.is_some() {
                given.push("--lock-wait");
            }
            if asked.deadline.is_some() {
                given.push("--deadline");
            }
            if asked.env.apply {
                given.push("--apply-env");
            }
            if asked.skip_preflight {
                given.push("--skip-preflight");
            }
            if !given.is_empty() {
                anyhow::bail!(
                    "{} apply to Elastic Beanstalk environments only: `{environment}` is a local environment, which always runs every stage on the local Docker Engine; drop {} or pass --env with an AWS environment",
                    given.join(", "),
                    if given.len() == 1 { "it" } else { "them" }
                );
            }
        }
        if target == Target::Aws && self.force {
            anyhow::bail!(
                "--force restarts a local stack that already runs this version; `{environment}` is an Elastic Beanstalk environment, where a deploy of the version it already runs does nothing: deploy a new release, or `cargo xtask rollback`"
            );
        }
        if asked.selection.from.is_some() && !asked.selection.only.is_empty() {
            anyhow::bail!("--from and --only together are ambiguous: give one of them (--only lists every stage to run)");
        }
        if asked.label.is_some() {
            let new_bundle: Vec<&str> =
                [Stage::Render, Stage::Bundle, Stage::Upload, Stage::Version]
                    .into_iter()
                    .filter(|s| asked.selection.includes(*s))
                    .map(|s| s.name())
                    .collect();
            if !new_bundle.is_empty() || asked.bundle.is_some() {
                anyhow::bail!(
                    "--label deploys an existing application version, but this run would also {}: use --label with --only deploy (or --only deploy,verify); to ship a new bundle leave the label out (it is the release and the bundle's hash)",
                    if asked.bundle.is_some() {
                        "upload the bundle given with --bundle".to_string()
                    } else {
                        format!("run {}", new_bundle.join(", "))
                    }
                );
            }
        }
        Ok(())
    }
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
    req.check(&req.environment, spec.target)?;
    if spec.target == Target::Local {
        // The local target runs the same stages on the local Docker Engine.
        let options = LocalOptions {
            release: req.release.clone(),
            dry_run: req.options.dry_run,
            force: req.force,
            ..Default::default()
        };
        // The same GitHub reporting as on AWS: groups, job summary, outputs, deployment.
        let release = Release::detect(&config.root, req.release.as_deref())?;
        let github = DeployReporter::start(&release.name, &req.environment).await;
        let url = spec.url.clone();
        let done = match crate::local::deploy_local(&config, &req.environment, &options).await {
            Ok(done) => done,
            Err(e) => {
                github.failed(&e).await;
                return Err(e);
            }
        };
        github.finish_local(&done, url.as_deref()).await?;
        return Ok(Shipped::Local(Box::new(done)));
    }
    let url = spec.url.clone();
    let target = spec.target;
    let mut release = Release::detect(&config.root, req.release.as_deref())?;
    // Git sources: fetched (in a dry run only shown) before anything is built, and their
    // commits recorded for the labels and the version description.
    let mut config = config;
    if [Stage::Build, Stage::Push, Stage::Version]
        .iter()
        .any(|s| req.options.selection.includes(*s))
    {
        crate::image::source::prepare(&mut config, &mut release, req.options.dry_run)?;
    }
    let aws = crate::aws::Aws::load(&config.region).await;
    let renders = req.options.bundle.is_none()
        && [Stage::Render, Stage::Bundle]
            .iter()
            .any(|s| req.options.selection.includes(*s));
    // `${account}` in the template (only when rendering).
    let account = if renders {
        match crate::aws::resolve_account(&config, target, Some(&aws)).await {
            Ok(a) => a,
            // A dry run still shows the plan, with a visible stand-in for the account.
            Err(e) if req.options.dry_run => {
                if !crate::aws::lacks_credentials(&e) {
                    tracing::warn!("{e:#}");
                }
                Some(crate::aws::PLAN_ACCOUNT.to_string())
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
        pacing: Pacing::default(),
        options: req.options.clone(),
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
    // Without a configured `url`, the environment's CNAME (what verify used) is the output:
    // as the preflight read it, else asked.
    let url = match url.or_else(|| super::preflight_url(report.preflight.as_ref())) {
        Some(u) => Some(u),
        None if report.ok && !report.dry_run => {
            let env = crate::ops::AwsEnvironment::resolve(&run.config, &run.environment, "deploy")?;
            let eb = crate::eb::Eb::new(clients.eb.clone(), Pacing::default());
            crate::eb::deploy::environment_url(&eb, &env.application, &env.eb_environment)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("no `url` output: {e:#}");
                    None
                })
        }
        None => None,
    };
    github.finish(&report, url.as_deref()).await?;
    Ok(Shipped::Aws(Box::new(report)))
}
