//! Deploy a version to an environment and wait for a verdict; roll back to the previous
//! version.
//!
//! A deploy succeeds only when every signal agrees: the environment is `Ready`, runs our
//! version (every instance too), its enhanced health is at or above the threshold, no failure
//! event arrived since our request, and no "Incorrect application version" cause is reported.
//! A failure event ends the wait at once; a deadline ends it with a message that says the
//! deploy may still run and how to look at it.
//!
//! An interrupted run leaves a small state file (request id, previous version) next to the
//! bundle; a re-run finds the deploy in flight and waits for it instead of starting another.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use aws_sdk_elasticbeanstalk::operation::RequestId;
use aws_sdk_elasticbeanstalk::types::{
    ConfigurationOptionSetting, EnvironmentDescription, EnvironmentHealthAttribute,
    EnvironmentStatus, EventDescription, InstancesHealthAttribute, OptionSpecification,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Eb, Poller, Progress};
use crate::config::HealthThreshold;

/// What one deploy (or rollback) is about.
#[derive(Debug, Clone)]
pub struct DeployRequest<'a> {
    pub application: &'a str,
    pub environment: &'a str,
    pub label: &'a str,
    pub region: &'a str,
    /// How long to wait for a verdict after `UpdateEnvironment`.
    pub deadline: Duration,
    /// How long to wait for another deploy in progress to finish before ours.
    pub lock_wait: Duration,
    /// How long health may take to reach the threshold once the environment is Ready.
    pub health_settle: Duration,
    pub threshold: HealthThreshold,
    /// Where the in-flight state file lives (none: no resume after an interrupt).
    pub state_dir: Option<&'a Path>,
    pub dry_run: bool,
    /// Option settings (environment properties) changed in the same `UpdateEnvironment`.
    pub options: Option<&'a OptionUpdate>,
    /// Only `options` change: no `VersionLabel` is sent and the running version stays
    /// (`label` is the version running when the update starts).
    pub options_only: bool,
}

/// Option settings one `UpdateEnvironment` changes: (namespace, name, value) to set and
/// (namespace, name) to remove. `Debug` shows names only, never values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OptionUpdate {
    pub set: Vec<(String, String, String)>,
    pub remove: Vec<(String, String)>,
}

impl OptionUpdate {
    pub fn set(&mut self, namespace: &str, name: &str, value: &str) {
        self.set
            .push((namespace.to_string(), name.to_string(), value.to_string()));
    }

    pub fn remove(&mut self, namespace: &str, name: &str) {
        self.remove.push((namespace.to_string(), name.to_string()));
    }

    /// True when `name` is set (in any namespace).
    pub fn sets(&self, name: &str) -> bool {
        self.set.iter().any(|(_, n, _)| n == name)
    }

    /// True when `name` is removed (from any namespace).
    pub fn removes(&self, name: &str) -> bool {
        self.remove.iter().any(|(_, n)| n == name)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    fn settings(&self) -> Vec<ConfigurationOptionSetting> {
        self.set
            .iter()
            .map(|(ns, name, value)| {
                ConfigurationOptionSetting::builder()
                    .namespace(ns)
                    .option_name(name)
                    .value(value)
                    .build()
            })
            .collect()
    }

    fn removals(&self) -> Vec<OptionSpecification> {
        self.remove
            .iter()
            .map(|(ns, name)| {
                OptionSpecification::builder()
                    .namespace(ns)
                    .option_name(name)
                    .build()
            })
            .collect()
    }
}

impl std::fmt::Debug for OptionUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptionUpdate")
            .field(
                "set",
                &self.set.iter().map(|(_, n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "remove",
                &self.remove.iter().map(|(_, n)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployVerdict {
    /// Deployed and healthy.
    Succeeded,
    /// The version already ran, healthy: nothing was done.
    AlreadyDeployed,
    Failed,
    /// No verdict before the deadline; the deploy may still run.
    TimedOut,
    /// Another deploy held the environment past the lock wait; nothing was changed.
    Locked,
    /// Not attempted (a rollback with no healthy version to go back to).
    Skipped,
    /// `--dry-run`: what would happen.
    DryRun,
}

impl DeployVerdict {
    pub fn ok(self) -> bool {
        matches!(
            self,
            DeployVerdict::Succeeded | DeployVerdict::AlreadyDeployed | DeployVerdict::DryRun
        )
    }
}

/// The version that ran before the deploy, and whether it was healthy then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub label: String,
    /// Colour and status, such as "Green/Ok".
    pub health: String,
    pub healthy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub environment: String,
    pub label: String,
    pub verdict: DeployVerdict,
    pub message: String,
    pub previous: Option<Previous>,
    pub request_id: Option<String>,
    /// EB's events of this deploy, as streamed ("SEVERITY message").
    pub events: Vec<String>,
    /// True when this run waited for a deploy that an earlier run started.
    pub resumed: bool,
}

/// Written after `UpdateEnvironment`, removed once there is a verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InFlight {
    pub environment: String,
    pub label: String,
    pub request_id: Option<String>,
    pub started_unix_ms: u64,
    pub previous: Option<Previous>,
}

/// The deploy this machine started on `environment` and has no verdict for yet, from the
/// state file in `dir` (`status` and `cleanup` read it).
pub fn in_flight(dir: &Path, environment: &str) -> Option<InFlight> {
    let text = std::fs::read_to_string(state_path(dir, environment)).ok()?;
    serde_json::from_str::<InFlight>(&text)
        .ok()
        .filter(|s| s.environment == environment)
}

fn state_path(dir: &Path, environment: &str) -> PathBuf {
    dir.join(format!("eb-deploy-{environment}.json"))
}

fn read_state(req: &DeployRequest<'_>) -> Option<InFlight> {
    let path = state_path(req.state_dir?, req.environment);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<InFlight>(&text) {
        Ok(s) if s.environment == req.environment && s.label == req.label => Some(s),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(
                "ignoring the unreadable deploy state {}: {e}",
                path.display()
            );
            None
        }
    }
}

fn write_state(req: &DeployRequest<'_>, state: &InFlight) {
    let Some(dir) = req.state_dir else { return };
    let path = state_path(dir, req.environment);
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(state).unwrap_or_default()));
    if let Err(e) = result {
        tracing::warn!(
            "cannot write the deploy state {}: {e} (an interrupted run will not find its deploy)",
            path.display()
        );
    }
}

fn clear_state(req: &DeployRequest<'_>) {
    if let Some(dir) = req.state_dir {
        let _ = std::fs::remove_file(state_path(dir, req.environment));
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Deploys `req.label` to `req.environment` and waits for the verdict. `Err` only when EB
/// cannot be asked (after retries) or the environment does not exist; every verdict,
/// failures included, is an `Ok` outcome.
pub async fn deploy(eb: &Eb, req: &DeployRequest<'_>) -> Result<DeployOutcome> {
    deploy_attempt(eb, req, true).await
}

/// One attempt; when EB refuses the update because another deploy started in between and
/// `again` is set, waits for that deploy (lock wait) and tries once more from the start.
fn deploy_attempt<'a>(
    eb: &'a Eb,
    req: &'a DeployRequest<'a>,
    again: bool,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<DeployOutcome>> + Send + 'a>> {
    Box::pin(deploy_once(eb, req, again))
}

async fn deploy_once(eb: &Eb, req: &DeployRequest<'_>, again: bool) -> Result<DeployOutcome> {
    if req.options_only {
        return options_once(eb, req, again).await;
    }
    let name = req.environment;
    let label = req.label;
    let mut env = match eb.take_environment(name, REUSE_DESCRIPTION) {
        Some(env)
            if !matches!(
                env.status(),
                Some(EnvironmentStatus::Terminated | EnvironmentStatus::Terminating)
            ) =>
        {
            tracing::debug!("deploy: {name} as the preflight described it a moment ago");
            env
        }
        _ => describe_env(eb, req).await?,
    };
    let inflight = read_state(req);
    let has_options = req.options.is_some_and(|o| !o.is_empty());

    if !is_ready(&env) && env.version_label() == Some(label) {
        let (request_id, started, previous) = match &inflight {
            Some(s) => (
                s.request_id.clone(),
                SystemTime::UNIX_EPOCH + Duration::from_millis(s.started_unix_ms),
                s.previous.clone(),
            ),
            None => (None, SystemTime::now(), None),
        };
        tracing::info!("deploy: {label} is already being deployed to {name} (started earlier); waiting for it instead of starting another");
        let mut outcome = wait_for(eb, req, request_id.as_deref(), started).await?;
        outcome.previous = previous;
        outcome.resumed = true;
        finish_state(req, &outcome);
        return Ok(outcome);
    }
    if !is_ready(&env) {
        match wait_ready(eb, req, env).await? {
            Ok(ready) => env = ready,
            Err(locked) => return Ok(locked),
        }
    }

    if env.version_label() == Some(label) && !has_options {
        if let Some(s) = inflight {
            // Our earlier run started this deploy and it ended while nobody watched: judge it.
            tracing::info!(
                "deploy: an earlier run deployed {label} to {name}; checking how it ended"
            );
            let started = SystemTime::UNIX_EPOCH + Duration::from_millis(s.started_unix_ms);
            let mut outcome = wait_for(eb, req, s.request_id.as_deref(), started).await?;
            outcome.previous = s.previous;
            outcome.resumed = true;
            finish_state(req, &outcome);
            return Ok(outcome);
        }
        let health = health_problems(eb, req, label, &env, Look::Full).await?;
        if health.problems.is_empty() {
            return Ok(outcome(
                req,
                DeployVerdict::AlreadyDeployed,
                format!(
                    "{label} already runs on {name} and is healthy ({}); nothing to do",
                    health.summary
                ),
                None,
            ));
        }
        tracing::warn!(
            "deploy: {label} runs on {name} but is not healthy ({}); deploying it again",
            health.problems.join("; ")
        );
    }

    if let Some(s) = &inflight {
        if env.version_label() != Some(label) {
            tracing::warn!(
                "deploy: the deploy of {label} an earlier run started (request {}) ended with {name} on {}: EB went back; deploying {label} again",
                s.request_id.as_deref().unwrap_or("unknown"),
                env.version_label().unwrap_or("no version")
            );
        }
    }
    let previous = match env.version_label() {
        Some(prev) if prev != label => {
            let health = health_problems(eb, req, prev, &env, Look::Environment).await?;
            Some(Previous {
                label: prev.to_string(),
                health: health.summary.clone(),
                healthy: health.problems.is_empty(),
            })
        }
        _ => None,
    };
    if req.dry_run {
        let running = previous.as_ref().map_or("nothing known".to_string(), |p| {
            format!("{} ({})", p.label, p.health)
        });
        let mut o = outcome(
            req,
            DeployVerdict::DryRun,
            format!("would deploy {label} to {name} (now running {running})"),
            None,
        );
        o.previous = previous;
        return Ok(o);
    }

    let started = SystemTime::now();
    let update = send_update(eb, req).await;
    let update = match update {
        Ok(u) => u,
        Err(e) if e.message().is_some_and(|m| m.contains("invalid state for this operation")) => {
            // Someone started a deploy between our look and our call: EB refused ours.
            tracing::warn!("deploy: EB refused the update: {}", e.message().unwrap_or_default());
            let env = describe_env(eb, req).await?;
            return match wait_ready(eb, req, env).await? {
                Err(locked) => Ok(locked),
                Ok(_) if again => deploy_attempt(eb, req, false).await,
                Ok(_) => Ok(outcome(
                    req,
                    DeployVerdict::Locked,
                    format!("another deploy started on {name} twice while this one prepared; nothing was changed: re-run to deploy {label}"),
                    None,
                )),
            };
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot start the deploy of {label} to {name}: check the environment and the credentials' elasticbeanstalk:UpdateEnvironment permission"
            )))
        }
    };
    let request_id = update.request_id().map(str::to_string);
    tracing::info!(
        "deploy: {label} → {name} started (request {}); previous version {}",
        request_id.as_deref().unwrap_or("unknown"),
        previous.as_ref().map_or("none", |p| p.label.as_str())
    );
    write_state(
        req,
        &InFlight {
            environment: name.to_string(),
            label: label.to_string(),
            request_id: request_id.clone(),
            started_unix_ms: unix_ms(started),
            previous: previous.clone(),
        },
    );
    let mut o = wait_for(eb, req, request_id.as_deref(), started).await?;
    o.previous = previous;
    finish_state(req, &o);
    Ok(o)
}

/// The `UpdateEnvironment` of `req`: its version (unless `options_only`) and its options.
async fn send_update(
    eb: &Eb,
    req: &DeployRequest<'_>,
) -> Result<
    aws_sdk_elasticbeanstalk::operation::update_environment::UpdateEnvironmentOutput,
    super::EbError,
> {
    let name = req.environment;
    let version = (!req.options_only).then(|| req.label.to_string());
    let (settings, removals) = match req.options {
        Some(o) if !o.is_empty() => (Some(o.settings()), Some(o.removals())),
        _ => (None, None),
    };
    eb.call("UpdateEnvironment", name, |c| {
        c.update_environment()
            .environment_name(name)
            .set_version_label(version.clone())
            .set_option_settings(settings.clone())
            .set_options_to_remove(removals.clone())
            .send()
    })
    .await
}

/// How old a description of the environment (the preflight's) a deploy starts from, instead
/// of asking again: its status is the lock (a deploy that started since makes EB refuse our
/// `UpdateEnvironment`, which leads to the lock wait like a busy status would), its version
/// and health say what a rollback would go back to; seconds old, they are what EB would say.
const REUSE_DESCRIPTION: Duration = Duration::from_secs(10);

/// Waits for the environment to be `Ready` (another deploy holds it until then), up to the
/// lock wait: the same lock as a deploy. `Ok(Err(outcome))` when it stayed busy.
pub async fn wait_until_ready(
    eb: &Eb,
    req: &DeployRequest<'_>,
) -> Result<Result<EnvironmentDescription, DeployOutcome>> {
    let env = describe_env(eb, req).await?;
    if is_ready(&env) {
        return Ok(Ok(env));
    }
    wait_ready(eb, req, env).await
}

/// An update of the option settings only: waits for the lock, sends the options without a
/// version, and waits for the verdict like a deploy of the version that runs.
async fn options_once(eb: &Eb, req: &DeployRequest<'_>, again: bool) -> Result<DeployOutcome> {
    let name = req.environment;
    let env = match wait_until_ready(eb, req).await? {
        Ok(env) => env,
        Err(locked) => return Ok(locked),
    };
    // The version that runs once the lock is ours is the one the verdict expects.
    let running = env.version_label().unwrap_or(req.label).to_string();
    let req = DeployRequest {
        label: &running,
        ..req.clone()
    };
    if req.dry_run {
        return Ok(outcome(
            &req,
            DeployVerdict::DryRun,
            format!("would update the environment properties of {name} (running {running})"),
            None,
        ));
    }
    let started = SystemTime::now();
    let update = match send_update(eb, &req).await {
        Ok(u) => u,
        Err(e) if e.message().is_some_and(|m| m.contains("invalid state for this operation")) && again => {
            tracing::warn!("env: EB refused the update: {}", e.message().unwrap_or_default());
            return deploy_attempt(eb, &req, false).await;
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot update the environment properties of {name}: check the environment and the credentials' elasticbeanstalk:UpdateEnvironment permission"
            )))
        }
    };
    let request_id = update.request_id().map(str::to_string);
    tracing::info!(
        "env: property update of {name} started (request {})",
        request_id.as_deref().unwrap_or("unknown")
    );
    wait_for(eb, &req, request_id.as_deref(), started).await
}

/// Redeploys the version that ran before a failed deploy, if it was healthy then.
pub async fn rollback(
    eb: &Eb,
    req: &DeployRequest<'_>,
    previous: Option<&Previous>,
) -> Result<DeployOutcome> {
    let skip = |label: &str, why: String| DeployOutcome {
        environment: req.environment.to_string(),
        label: label.to_string(),
        verdict: DeployVerdict::Skipped,
        message: why,
        previous: None,
        request_id: None,
        events: vec![],
        resumed: false,
    };
    let Some(p) = previous else {
        return Ok(skip("", format!("no rollback: no earlier version of {} is known (first deploy, or the deploy was started elsewhere)", req.environment)));
    };
    if p.label == req.label {
        return Ok(skip(
            &p.label,
            format!("no rollback: {} is the version that failed", p.label),
        ));
    }
    if !p.healthy {
        return Ok(skip(
            &p.label,
            format!("no rollback: {} was not healthy before the deploy ({}); rolling back to it would not help", p.label, p.health),
        ));
    }
    tracing::warn!("rollback: redeploying {} to {}", p.label, req.environment);
    let back = DeployRequest {
        label: &p.label,
        options: None,
        options_only: false,
        ..req.clone()
    };
    let mut o = deploy(eb, &back).await?;
    o.previous = None;
    Ok(o)
}

fn finish_state(req: &DeployRequest<'_>, o: &DeployOutcome) {
    if o.verdict != DeployVerdict::TimedOut {
        clear_state(req);
    }
}

fn outcome(
    req: &DeployRequest<'_>,
    verdict: DeployVerdict,
    message: String,
    request_id: Option<String>,
) -> DeployOutcome {
    DeployOutcome {
        environment: req.environment.to_string(),
        label: req.label.to_string(),
        verdict,
        message,
        previous: None,
        request_id,
        events: vec![],
        resumed: false,
    }
}

fn is_ready(env: &EnvironmentDescription) -> bool {
    env.status() == Some(&EnvironmentStatus::Ready)
}

fn status_of(env: &EnvironmentDescription) -> &str {
    env.status().map_or("Unknown", |s| s.as_str())
}

async fn describe_env(eb: &Eb, req: &DeployRequest<'_>) -> Result<EnvironmentDescription> {
    let env = eb
        .environment(req.application, req.environment)
        .await
        .with_context(|| {
            format!(
                "cannot read the state of the Elastic Beanstalk environment {}",
                req.environment
            )
        })?;
    match env {
        Some(e) if matches!(e.status(), Some(EnvironmentStatus::Terminated | EnvironmentStatus::Terminating)) => bail!(
            "the Elastic Beanstalk environment {} is {}: create it again, or fix `eb_environment` in deploy.toml",
            req.environment,
            status_of(&e)
        ),
        Some(e) => Ok(e),
        None => bail!(
            "the Elastic Beanstalk environment {} does not exist in application {} (region {}): create it, or fix `eb_environment` in deploy.toml",
            req.environment,
            req.application,
            req.region
        ),
    }
}

/// `http://<CNAME>` of the environment (the verify stage's base URL when none is configured).
pub async fn environment_url(
    eb: &Eb,
    application: &str,
    environment: &str,
) -> Result<Option<String>> {
    let env = eb
        .environment(application, environment)
        .await
        .with_context(|| {
            format!("cannot read the URL of the Elastic Beanstalk environment {environment}")
        })?;
    Ok(env
        .as_ref()
        .and_then(|e| e.cname())
        .map(|c| format!("http://{c}")))
}

/// Waits up to the lock wait for another deploy to finish. `Ok(Err(outcome))` when it did not.
async fn wait_ready(
    eb: &Eb,
    req: &DeployRequest<'_>,
    mut env: EnvironmentDescription,
) -> Result<Result<EnvironmentDescription, DeployOutcome>> {
    let other = env.version_label().unwrap_or("unknown").to_string();
    tracing::info!(
        "deploy: {} is {} (deploying version {other}); waiting up to {} before deploying {}",
        req.environment,
        status_of(&env),
        humantime::format_duration(req.lock_wait),
        req.label
    );
    let until = Instant::from_std(crate::config::instant_after(req.lock_wait));
    let mut poller = Poller::new(eb.pacing);
    while !is_ready(&env) {
        let now = Instant::now();
        if now >= until {
            return Ok(Err(outcome(
                req,
                DeployVerdict::Locked,
                format!(
                    "{} is still {} (deploying version {other}) after waiting {}; nothing was changed: re-run when that deploy is over, or raise --lock-wait",
                    req.environment,
                    status_of(&env),
                    humantime::format_duration(req.lock_wait)
                ),
                None,
            )));
        }
        tokio::time::sleep(poller.next_wait().min(until - now)).await;
        env = describe_env(eb, req).await?;
    }
    tracing::info!(
        "deploy: {} is Ready again (running {})",
        req.environment,
        env.version_label().unwrap_or("unknown")
    );
    Ok(Ok(env))
}

/// EB event texts that mean the deploy failed.
pub const FAILURE_EVENTS: &[&str] = &[
    "Failed to deploy application",
    "Command failed on instance",
    "Environment health has been set to RED",
    "The environment was reverted to the previous configuration setting",
    "Update environment operation is complete, but with errors",
    "Update environment operation is complete, but with command timeouts",
    "Instance deployment failed",
    "Unsuccessful command execution on instance id(s)",
    "ECS Application sourcebundle validation error",
];

/// True when an event ends the deploy as failed: a known failure text, or severity ERROR/FATAL.
pub fn is_failure_event(severity: &str, message: &str) -> bool {
    matches!(severity, "ERROR" | "FATAL")
        || FAILURE_EVENTS.iter().any(|f| message.contains(f))
        || failed_commands(message).is_some_and(|n| n > 0)
}

/// N of EB's "Command execution completed on all instances. Summary: [Successful: S,
/// Failed: N]." (an INFO event even when N > 0).
fn failed_commands(message: &str) -> Option<u32> {
    let rest = message.split_once("Summary: [")?.1;
    let failed = rest.split_once("Failed: ")?.1;
    let digits: String = failed.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

struct Health {
    summary: String,
    problems: Vec<String>,
}

fn rank(status: &str) -> u8 {
    match status {
        "Ok" => 0,
        "Info" => 1,
        "Warning" => 2,
        "Degraded" => 3,
        "Severe" => 4,
        _ => 5,
    }
}

fn threshold_rank(t: HealthThreshold) -> u8 {
    match t {
        HealthThreshold::Ok => 0,
        HealthThreshold::Info => 1,
        HealthThreshold::Warning => 2,
    }
}

/// How much of the health a look reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// The environment's colour and status only (the health of the version that ran before a
    /// deploy, for the rollback decision): no call when `DescribeEnvironments` gave them.
    Environment,
    /// The environment's colour and status come with the `DescribeEnvironments` answer;
    /// the instances are read only when those are within the threshold (they alone can then
    /// tell that an instance runs another version). Nothing more while health may still
    /// recover.
    Quick,
    /// Also EB's causes and every instance, for the message of a verdict.
    Full,
}

/// Enhanced health of the environment and its instances, against the threshold and `label`,
/// starting from the `DescribeEnvironments` answer `env` (its `Health` and `HealthStatus` are
/// the enhanced health's colour and status). `DescribeEnvironmentHealth` is read when that
/// answer has no `HealthStatus` (enhanced health off: the error says so) and, with
/// [`Look::Full`], for EB's causes once something is wrong; `DescribeInstancesHealth` when the
/// environment is within the threshold (or with [`Look::Full`]).
async fn health_problems(
    eb: &Eb,
    req: &DeployRequest<'_>,
    label: &str,
    env: &EnvironmentDescription,
    look: Look,
) -> Result<Health> {
    let name = req.environment;
    let mut causes: Option<Vec<String>> = None;
    let (color, status) = match env_health(env) {
        Some(cs) => cs,
        None => {
            let h = environment_health(eb, name).await?;
            causes = Some(h.causes().to_vec());
            (
                h.color().unwrap_or("Grey").to_string(),
                h.health_status().unwrap_or("Unknown").to_string(),
            )
        }
    };
    let mut problems = vec![];
    if color == "Red" || rank(&status) > threshold_rank(req.threshold) {
        problems.push(format!(
            "health is {color}/{status}, below the threshold {:?}",
            req.threshold
        ));
    }
    let mut summary = format!("{color}/{status}");
    if look == Look::Environment || (!problems.is_empty() && look == Look::Quick) {
        return Ok(Health { summary, problems });
    }
    let inst = eb
        .call("DescribeInstancesHealth", name, |c| {
            c.describe_instances_health()
                .environment_name(name)
                .attribute_names(InstancesHealthAttribute::HealthStatus)
                .attribute_names(InstancesHealthAttribute::Color)
                .attribute_names(InstancesHealthAttribute::Deployment)
                .send()
        })
        .await
        .with_context(|| format!("cannot read the instances' health of {name}"))?;
    let list = inst.instance_health_list();
    eb.note_instances(
        name,
        list.iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect(),
    );
    let wrong: Vec<String> = list
        .iter()
        .filter(|i| i.deployment().and_then(|d| d.version_label()) != Some(label))
        .map(|i| {
            format!(
                "{} ({})",
                i.instance_id().unwrap_or("?"),
                i.deployment()
                    .and_then(|d| d.version_label())
                    .unwrap_or("no version")
            )
        })
        .collect();
    if !wrong.is_empty() {
        problems.push(format!(
            "{} of {} instances do not run {label}: {}",
            wrong.len(),
            list.len(),
            wrong.join(", ")
        ));
    }
    if !problems.is_empty() && look == Look::Full && causes.is_none() {
        causes = Some(environment_health(eb, name).await?.causes().to_vec());
    }
    // EB's own words on a wrong version, before the instances' list.
    let reported: Vec<String> = causes
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.contains("Incorrect application version"))
        .map(|c| format!("EB reports: {c}"))
        .collect();
    let at = problems.len() - usize::from(!wrong.is_empty());
    problems.splice(at..at, reported);
    if !list.is_empty() {
        summary.push_str(&format!(
            ", {}/{} instances on {label}",
            list.len() - wrong.len(),
            list.len()
        ));
    }
    Ok(Health { summary, problems })
}

/// The enhanced health colour and status in a `DescribeEnvironments` answer; `None` without
/// a `HealthStatus` (basic health reporting).
fn env_health(env: &EnvironmentDescription) -> Option<(String, String)> {
    let status = env.health_status()?.as_str().to_string();
    let color = env.health().map_or("Grey", |h| h.as_str()).to_string();
    Some((color, status))
}

/// `DescribeEnvironmentHealth` with the colour, the status and EB's causes.
async fn environment_health(
    eb: &Eb,
    name: &str,
) -> Result<aws_sdk_elasticbeanstalk::operation::describe_environment_health::DescribeEnvironmentHealthOutput>
{
    eb.call("DescribeEnvironmentHealth", name, |c| {
        c.describe_environment_health()
            .environment_name(name)
            .attribute_names(EnvironmentHealthAttribute::Color)
            .attribute_names(EnvironmentHealthAttribute::HealthStatus)
            .attribute_names(EnvironmentHealthAttribute::Causes)
            .send()
    })
    .await
    .with_context(|| format!("cannot read the health of {name}: enhanced health reporting must be on for the environment"))
}

/// Calls of the final look at a deploy EB says ended, made in a row: the status (with the
/// environment's health), the instances' health, the last events.
const FINAL_LOOK: u32 = 3;

/// Streams the events of the request and decides. Events come first: the status is read when
/// they say the update ended (and after [`super::Pacing::status_interval`] without events), health
/// once the environment is Ready on our version.
async fn wait_for(
    eb: &Eb,
    req: &DeployRequest<'_>,
    request_id: Option<&str>,
    started: SystemTime,
) -> Result<DeployOutcome> {
    let name = req.environment;
    let label = req.label;
    let deadline = Instant::from_std(crate::config::instant_after(req.deadline));
    let mut poller = Poller::new(eb.pacing);
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    // A minute of margin for clock skew between this machine and EB.
    let floor = started
        .checked_sub(Duration::from_secs(60))
        .unwrap_or(started);
    // The newest event date seen. EB records some events late, dated before events already
    // listed, so each poll asks again from a window before it (`seen` drops the repeats).
    let mut newest = floor;
    let since = |newest: SystemTime| {
        newest
            .checked_sub(LATE_EVENTS)
            .map_or(floor, |t| t.max(floor))
    };
    // A deploy that started that long ago (a resumed one) has its status read at once.
    let age = SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    let mut status_due = Instant::now() + eb.pacing.status_interval.saturating_sub(age);
    // EB's events said the update ended: the status is read at every poll until Ready.
    let mut ended = false;
    // The last status read saw the environment Ready on `label`: health decides.
    let mut ready = false;
    let mut events: Vec<String> = vec![];
    let mut settle_until: Option<Instant> = None;
    let mut last_state = String::new();
    let rid = request_id.map(str::to_string);
    let done = |verdict: DeployVerdict, message: String, events: &Vec<String>| {
        let mut o = outcome(req, verdict, message, rid.clone());
        o.events = events.clone();
        o
    };
    let reported = |text: &str, events: &Vec<String>| {
        done(
            DeployVerdict::Failed,
            format!(
                "the deploy of {label} to {name} failed: Elastic Beanstalk reported \"{text}\""
            ),
            events,
        )
    };
    // A deploy that has just started has nothing to tell yet (EB's first event, "Environment
    // update is starting.", says nothing the update's answer did not): the first look waits
    // like any other. A resumed deploy is looked at at once.
    if age < eb.pacing.initial_interval {
        let wait = paced_wait(eb, &mut poller).await;
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    loop {
        // 1. New events of this request, oldest first: the cheapest and first signal.
        let fresh = new_events(eb, req, request_id, since(newest), &mut seen).await?;
        let progress = fresh
            .iter()
            .map(|e| Progress::of_event(e.message().unwrap_or_default()))
            .max()
            .unwrap_or(Progress::Quiet);
        poller.observe(progress);
        ended |= progress == Progress::Ended;
        if !fresh.is_empty() {
            // EB is talking: the status is a safety net for its silence.
            status_due = Instant::now() + eb.pacing.status_interval;
        }
        if let Some(text) = absorb(name, &fresh, &mut events, &mut newest) {
            return Ok(reported(&text, &events));
        }
        // 2. The status, once EB said the update ended, when it is due, and at each look at
        //    health once Ready: one DescribeEnvironments answer gives the status, the version
        //    and the environment's health.
        let now = Instant::now();
        let mut latest = None;
        if ended || ready || now >= status_due {
            status_due = now + eb.pacing.status_interval;
            let env = describe_env(eb, req).await?;
            let state = format!(
                "{} {} ({})",
                status_of(&env),
                env.health().map_or("Grey", |h| h.as_str()),
                env.version_label().unwrap_or("no version")
            );
            if state != last_state {
                tracing::debug!("{name}: {state}");
                last_state = state;
            }
            ready = is_ready(&env);
            let running = env.version_label().unwrap_or("no version");
            if ready && running != label {
                // EB went back; its failure event may have come after our last look.
                let late = new_events(eb, req, request_id, since(newest), &mut seen).await?;
                if let Some(text) = absorb(name, &late, &mut events, &mut newest) {
                    return Ok(reported(&text, &events));
                }
                return Ok(done(
                    DeployVerdict::Failed,
                    format!("the deploy of {label} to {name} failed: the environment is Ready but runs {running}; EB went back to it (see the events above or in the EB console)"),
                    &events,
                ));
            }
            latest = Some(env);
        }
        // 3. Health, while the environment is Ready on our version.
        if let Some(env) = latest.as_ref().filter(|_| ready) {
            let last = settle_until.is_some_and(|u| Instant::now() >= u);
            let look = if last { Look::Full } else { Look::Quick };
            let mut health = health_problems(eb, req, label, env, look).await?;
            let until = *settle_until.get_or_insert_with(|| {
                Instant::from_std(crate::config::instant_after(req.health_settle))
            });
            if !health.problems.is_empty() && look == Look::Quick && Instant::now() >= until {
                // The window is over: the whole picture for the verdict.
                health = health_problems(eb, req, label, env, Look::Full).await?;
            }
            if health.problems.is_empty() {
                // The last events (and any late failure) before declaring success.
                let late = new_events(eb, req, request_id, since(newest), &mut seen).await?;
                if let Some(text) = absorb(name, &late, &mut events, &mut newest) {
                    return Ok(reported(&text, &events));
                }
                return Ok(done(
                    DeployVerdict::Succeeded,
                    format!("{label} runs on {name}: Ready, health {}", health.summary),
                    &events,
                ));
            }
            if Instant::now() >= until {
                return Ok(done(
                    DeployVerdict::Failed,
                    format!(
                        "the deploy of {label} to {name} completed but the environment is not healthy after {}: {}",
                        humantime::format_duration(req.health_settle),
                        health.problems.join("; ")
                    ),
                    &events,
                ));
            }
            tracing::info!(
                "{name}: Ready with {label}; waiting for health: {}",
                health.problems.join("; ")
            );
        }
        // 4. The deadline.
        let now = Instant::now();
        if now >= deadline {
            return Ok(timed_out(req, request_id, &last_state, &events));
        }
        let wait = match settle_until.filter(|_| ready) {
            // Each look while health settles is two or three calls (events, the status with
            // the environment's health, the instances while that is good): spaced well within
            // the poll budget, the last one at the end of the window.
            Some(until) => poller
                .next_wait()
                .max(
                    Duration::try_from_secs_f64(4.0 / eb.pacing.max_rate)
                        .unwrap_or(eb.pacing.max_interval),
                )
                .min(until.saturating_duration_since(now))
                .max(Duration::from_millis(1)),
            None => paced_wait(eb, &mut poller).await,
        };
        tokio::time::sleep(wait.min(deadline - now)).await;
    }
}

/// The wait before the next poll of a deploy: the poll interval, and the run's budget (up to
/// [`super::Pacing::budget_max_wait`]) with the final look kept in reserve; once the end is
/// next, until the poll budget holds the final look, so that the verdict never waits on it.
async fn paced_wait(eb: &Eb, poller: &mut Poller) -> Duration {
    let mut wait = poller.next_wait().max(
        eb.run_budget_wait(FINAL_LOOK)
            .min(eb.pacing.budget_max_wait),
    );
    if poller.finishing() {
        wait = wait.max(eb.polls_available_in(FINAL_LOOK + 1).await);
    }
    wait
}

/// How far before the newest event seen each poll asks again: EB records some events late.
const LATE_EVENTS: Duration = Duration::from_secs(300);

/// The verdict when the deadline passed: the deploy may still run; how to look at it.
fn timed_out(
    req: &DeployRequest<'_>,
    request_id: Option<&str>,
    state: &str,
    events: &[String],
) -> DeployOutcome {
    let (name, label) = (req.environment, req.label);
    let rid_arg = request_id.map_or(String::new(), |r| format!(" --request-id {r}"));
    let state = if state.is_empty() {
        "nothing yet"
    } else {
        state
    };
    let mut o = outcome(
        req,
        DeployVerdict::TimedOut,
        format!(
            "no verdict on the deploy of {label} to {name} after {} (last seen: {state}); it may still be running. \
             Look at it in the EB console (https://{region}.console.aws.amazon.com/elasticbeanstalk/home?region={region}#/environments) \
             or with `aws elasticbeanstalk describe-events --application-name {app} --environment-name {name}{rid_arg} --region {region}`; \
             re-run the same command to wait for it again (no second deploy is started)",
            humantime::format_duration(req.deadline),
            region = req.region,
            app = req.application,
        ),
        request_id.map(str::to_string),
    );
    o.events = events.to_vec();
    o
}

/// Streams `fresh` events to the user and the outcome; the text of the first failure event.
fn absorb(
    name: &str,
    fresh: &[EventDescription],
    events: &mut Vec<String>,
    newest: &mut SystemTime,
) -> Option<String> {
    for e in fresh {
        let severity = e.severity().map_or("INFO", |s| s.as_str());
        let message = e.message().unwrap_or_default();
        tracing::info!("{name}: {severity} {message}");
        events.push(format!("{severity} {message}"));
        if let Some(t) = e.event_date().and_then(|d| SystemTime::try_from(*d).ok()) {
            *newest = (*newest).max(t);
        }
        if is_failure_event(severity, message) {
            return Some(message.to_string());
        }
    }
    None
}

async fn new_events(
    eb: &Eb,
    req: &DeployRequest<'_>,
    request_id: Option<&str>,
    since: SystemTime,
    seen: &mut HashSet<(i64, String)>,
) -> Result<Vec<EventDescription>> {
    let mut fresh: Vec<EventDescription> = vec![];
    let mut token: Option<String> = None;
    // A deploy makes tens of events; a few pages bound a runaway listing.
    for _ in 0..MAX_EVENT_PAGES {
        let out = eb
            .call("DescribeEvents", req.environment, |c| {
                c.describe_events()
                    .application_name(req.application)
                    .environment_name(req.environment)
                    .set_request_id(request_id.map(str::to_string))
                    .start_time(aws_smithy_types::DateTime::from(since))
                    .max_records(100)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .with_context(|| format!("cannot read the events of {}", req.environment))?;
        fresh.extend(
            out.events()
                .iter()
                .filter(|e| {
                    let key = (
                        e.event_date().map_or(0, |d| d.to_millis().unwrap_or(0)),
                        e.message().unwrap_or_default().to_string(),
                    );
                    seen.insert(key)
                })
                .cloned(),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    // EB lists the newest first.
    fresh.reverse();
    Ok(fresh)
}

const MAX_EVENT_PAGES: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_events_are_recognised() {
        for text in [
            "Failed to deploy application.",
            "Environment health has been set to RED",
            "The environment was reverted to the previous configuration setting.",
            "Update environment operation is complete, but with errors. For more information, see troubleshooting documentation.",
            "Update environment operation is complete, but with command timeouts.",
            "Instance deployment failed. For details, see 'eb-engine.log'.",
            "Unsuccessful command execution on instance id(s) 'i-0abc'. Aborting the operation.",
            "ECS Application sourcebundle validation error: Container memory is required.",
            "[Instance: i-0abc] Command failed on instance. Return code: 1 Output: (TRUNCATED)...",
            "Command execution completed on all instances. Summary: [Successful: 0, Failed: 1].",
        ] {
            assert!(is_failure_event("INFO", text), "{text}");
        }
        assert!(!is_failure_event(
            "INFO",
            "Command execution completed on all instances. Summary: [Successful: 2, Failed: 0]."
        ));
        // A health transition alone is not a verdict (health is read when Ready).
        assert!(!is_failure_event(
            "WARN",
            "Environment health has transitioned from Ok to Degraded. Command failed on all instances."
        ));
        assert!(!is_failure_event(
            "INFO",
            "Instance deployment completed successfully."
        ));
        assert!(!is_failure_event(
            "INFO",
            "Environment update completed successfully."
        ));
        assert!(is_failure_event("ERROR", "Something new went wrong."));
    }

    #[test]
    fn health_ranks_follow_the_threshold() {
        assert!(rank("Ok") <= threshold_rank(HealthThreshold::Ok));
        assert!(rank("Info") > threshold_rank(HealthThreshold::Ok));
        assert!(rank("Warning") <= threshold_rank(HealthThreshold::Warning));
        assert!(rank("Degraded") > threshold_rank(HealthThreshold::Warning));
        assert!(rank("Pending") > threshold_rank(HealthThreshold::Warning));
    }
}
