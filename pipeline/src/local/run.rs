//! Run a rendered `Dockerrun.aws.json` on the local engine the way EB's ECS agent does, and
//! replace the stack's previous version only once the new one is up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use super::hooks;
use super::plan::{Condition, ContainerPlan, Plan};
use super::{
    ContainerState, LABEL_CONTAINER_NAME, LABEL_ENVIRONMENT, LABEL_FINGERPRINT, LABEL_STACK,
    LABEL_VERSION,
};
use crate::docker::Engine;
use crate::verify;

/// The instance checks' hook as the local target runs it: the bundle's hook script (in a
/// copy of the bundle's `.platform` files), a stand-in for EB's `get-config`,
/// and the properties it prints.
#[derive(Debug, Clone)]
pub struct InstanceHook {
    pub script: PathBuf,
    pub get_config: PathBuf,
    /// The environment properties as `get-config environment` prints them (JSON); passed to
    /// the stand-in in its environment, never written to disk.
    pub properties: String,
}

/// The variable through which the `get-config` stand-in gets the properties it prints.
pub const PROPERTIES_VAR: &str = "DEPLOY_LOCAL_PROPERTIES";

/// The `get-config` stand-in: `get-config environment` prints the properties.
pub const GET_CONFIG_STAND_IN: &str = r#"#!/bin/sh
# The local target's stand-in for /opt/elasticbeanstalk/bin/get-config.
if [ "$1" != environment ]; then
  echo "get-config stand-in: only \`get-config environment\` is supported" >&2
  exit 2
fi
printf '%s\n' "$DEPLOY_LOCAL_PROPERTIES"
"#;

/// What to run, where, and how to decide that it works.
#[derive(Debug, Clone)]
pub struct StackRequest {
    /// Name of the stack: the private network and the `deploy.local.stack` label
    /// (for example `antenna-local`). One stack runs one version at a time.
    pub stack: String,
    /// Environment name, recorded as a label.
    pub environment: String,
    /// Version label, recorded as a label.
    pub version: String,
    /// The file's name or path, for messages.
    pub dockerrun_file: String,
    /// The rendered file's text.
    pub dockerrun: String,
    /// Added to every `hostPort`.
    pub host_port_offset: u16,
    /// `.platform/hooks/postdeploy`: its executable files run, in name order, once the new
    /// containers are up. `None` or a missing directory runs none.
    pub postdeploy_hooks: Option<PathBuf>,
    /// The verify agent's hook of the `where = "instance"` checks (the same files as in the
    /// bundle), run after the other hooks as EB runs it on the instance.
    pub instance_hook: Option<InstanceHook>,
    /// The engine (`unix://…`, `tcp://…`); else `DOCKER_HOST`, else the default socket.
    pub docker_host: Option<String>,
    /// The checks that decide whether the new version works (the verify stage's), run while
    /// the essential containers are watched. None: the containers' staying up decides.
    pub checks: Vec<verify::Check>,
    /// How long essential containers must keep running after the last one started.
    pub settle: Duration,
    /// Deadline for each `dependsOn` condition.
    pub start_timeout: Duration,
    /// Deadline for each postdeploy hook.
    pub hook_timeout: Duration,
    /// Log lines shown for each failed container.
    pub log_lines: usize,
    /// Replace the stack even when it already runs this very version, healthy.
    pub force: bool,
}

impl StackRequest {
    /// A request with the defaults: no hooks, no checks, 2 s settle, 60 s waits, 50 log lines.
    pub fn new(
        stack: &str,
        environment: &str,
        version: &str,
        dockerrun_file: &str,
        dockerrun: String,
    ) -> Self {
        Self {
            stack: stack.to_string(),
            environment: environment.to_string(),
            version: version.to_string(),
            dockerrun_file: dockerrun_file.to_string(),
            dockerrun,
            host_port_offset: 0,
            postdeploy_hooks: None,
            instance_hook: None,
            docker_host: None,
            checks: Vec::new(),
            settle: Duration::from_secs(2),
            start_timeout: Duration::from_secs(60),
            hook_timeout: Duration::from_secs(300),
            log_lines: 50,
            force: false,
        }
    }
}

/// The outcome of a successful run.
#[derive(Debug, Clone, Serialize)]
pub struct StackReport {
    pub stack: String,
    pub environment: String,
    pub version: String,
    /// The new version's containers, in start order.
    pub containers: Vec<ContainerState>,
    /// Versions whose containers were removed.
    pub replaced: Vec<String>,
    /// Postdeploy hooks that ran.
    pub hooks: Vec<String>,
    /// The verify stage's report (`None` without checks).
    pub verified: Option<verify::VerifyReport>,
    /// True when the stack already ran this version, unchanged and up: nothing was restarted,
    /// only the checks ran.
    pub unchanged: bool,
}

/// Why the new version was rejected, and whose logs explain it.
struct Failure {
    message: String,
    /// Dockerrun names of the containers whose logs to show.
    show_logs: Vec<String>,
}

impl Failure {
    fn new(message: impl Into<String>, show_logs: Vec<String>) -> Self {
        Self {
            message: message.into(),
            show_logs,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::new(format!("{e:#}"), Vec::new())
    }
}

/// A created container of the new version.
struct Created<'a> {
    plan: &'a ContainerPlan,
    id: String,
    docker_name: String,
}

/// Runs the file as the stack's new version. On success the previous version's containers
/// are removed; on failure the new ones are removed, the previous ones run again, and the
/// error carries the failed containers' logs.
pub async fn run(req: &StackRequest) -> Result<StackReport> {
    let plan = Plan::parse(&req.dockerrun_file, &req.dockerrun, req.host_port_offset)?;
    if !plan.ignored.is_empty() {
        tracing::warn!(
            "the local target ignores these fields of {}: {}",
            req.dockerrun_file,
            plan.ignored.join(", ")
        );
    }
    let engine = Engine::connect(req.docker_host.as_deref()).await?;
    for (image, container) in plan.images() {
        if !engine.has_image(image).await? {
            bail!(
                "image {image} (container {container:?} in {}) is not in the local Docker Engine ({}): the local target pulls nothing; build it first (`cargo xtask local up` builds the images of deploy.toml), or point the environment's `images` at an image you have",
                req.dockerrun_file,
                engine.host()
            );
        }
    }
    let previous = engine.list(LABEL_STACK, &req.stack).await?;
    let fingerprint = fingerprint(&engine, req, &plan).await?;
    if !req.force {
        if let Some(report) = unchanged(&engine, req, &plan, &previous, &fingerprint).await? {
            return Ok(report);
        }
    }
    check_host_ports(&plan, &previous, &req.dockerrun_file)?;
    engine
        .ensure_network(
            &req.stack,
            HashMap::from([(LABEL_STACK.to_string(), req.stack.clone())]),
        )
        .await?;

    let suffix = format!("{:06x}", fastrand::u32(..0x100_0000));
    let mut created = Vec::new();
    for c in &plan.containers {
        let docker_name = format!("{}-{}-{suffix}", req.stack, c.name);
        match engine
            .create(
                &docker_name,
                c,
                &req.stack,
                aliases(&plan, c),
                env(c),
                labels(req, c, &fingerprint),
            )
            .await
        {
            Ok(id) => created.push(Created {
                plan: c,
                id,
                docker_name,
            }),
            Err(e) => {
                remove_all(&engine, &created).await;
                return Err(e);
            }
        }
    }

    let was_running: Vec<&ContainerState> = previous.iter().filter(|c| c.running).collect();
    if !was_running.is_empty() {
        tracing::info!(
            "stopping {} container(s) of version {} (kept until {} is up)",
            was_running.len(),
            was_running[0].version,
            req.version
        );
    }
    let switch = async {
        for c in &was_running {
            engine.stop(&c.id).await?;
        }
        bring_up(&engine, req, &created).await
    };
    // Ctrl-C while the new version comes up rolls back like a failure: the previous version
    // runs again rather than staying stopped.
    let outcome = tokio::select! {
        outcome = switch => outcome,
        _ = tokio::signal::ctrl_c() => Err(Failure::new("interrupted (Ctrl-C) before the new version was up", Vec::new())),
    };
    match outcome {
        Ok((hooks, verified)) => {
            let mut replaced: Vec<String> = Vec::new();
            for c in &previous {
                engine.remove(&c.id).await?;
                if !replaced.contains(&c.version) {
                    replaced.push(c.version.clone());
                }
            }
            let mut containers = Vec::new();
            for c in &created {
                if let Some(state) = engine.inspect(&c.id).await? {
                    containers.push(state);
                }
            }
            Ok(StackReport {
                stack: req.stack.clone(),
                environment: req.environment.clone(),
                version: req.version.clone(),
                containers,
                replaced,
                hooks,
                verified,
                unchanged: false,
            })
        }
        Err(failure) => {
            let mut text = format!(
                "the local deploy of version {} to stack {} failed: {}",
                req.version, req.stack, failure.message
            );
            for name in &failure.show_logs {
                if let Some(c) = created.iter().find(|c| &c.plan.name == name) {
                    let logs = engine
                        .logs(&c.id, req.log_lines)
                        .await
                        .unwrap_or_else(|e| format!("(no logs: {e:#})\n"));
                    text.push_str(&format!(
                        "\n--- logs of {name} ({}), last {} lines ---\n{}",
                        c.docker_name,
                        req.log_lines,
                        if logs.is_empty() {
                            "(empty)\n".to_string()
                        } else {
                            logs
                        }
                    ));
                }
            }
            remove_all(&engine, &created).await;
            let mut restore_errors = Vec::new();
            for c in &was_running {
                if let Err(e) = engine.start(&c.id, &c.docker_name).await {
                    restore_errors.push(format!("{}: {e:#}", c.docker_name));
                }
            }
            match (was_running.first(), restore_errors.is_empty()) {
                (None, _) => text.push_str("\nno previous version was running; nothing was restored"),
                (Some(old), true) => text.push_str(&format!(
                    "\nthe previous version {} runs again ({} container(s) restarted)",
                    old.version,
                    was_running.len()
                )),
                (Some(old), false) => text.push_str(&format!(
                    "\ncould not restart the previous version {}: {}\n  hint: run `cargo xtask local status`",
                    old.version,
                    restore_errors.join("; ")
                )),
            }
            bail!(text)
        }
    }
}

/// What the new version would run, as one digest: the rendered file, the id of every image it
/// names (a rebuilt image under the same tag changes it) and the host port offset.
async fn fingerprint(engine: &Engine, req: &StackRequest, plan: &Plan) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(req.dockerrun.as_bytes());
    h.update(req.host_port_offset.to_be_bytes());
    for (image, _) in plan.images() {
        h.update(image.as_bytes());
        h.update(engine.image_id(image).await?.unwrap_or_default().as_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// The report of a run that has nothing to do: the stack runs this version with the same
/// fingerprint, every container of the file is there and every essential one runs, and the
/// checks pass. `None` when any of that is not so (the stack is then replaced as usual).
async fn unchanged(
    engine: &Engine,
    req: &StackRequest,
    plan: &Plan,
    previous: &[ContainerState],
    fingerprint: &str,
) -> Result<Option<StackReport>> {
    if previous.len() != plan.containers.len() {
        return Ok(None);
    }
    let mut running = Vec::new();
    for c in &plan.containers {
        let Some(state) = previous.iter().find(|p| p.name == c.name) else {
            return Ok(None);
        };
        if state.fingerprint != fingerprint
            || state.version != req.version
            || (c.essential && !state.running)
        {
            return Ok(None);
        }
        running.push(Created {
            plan: c,
            id: state.id.clone(),
            docker_name: state.docker_name.clone(),
        });
    }
    tracing::info!(
        "stack {} already runs version {} unchanged: nothing restarted (--force restarts it); verifying",
        req.stack,
        req.version
    );
    let verified = if req.checks.is_empty() {
        None
    } else {
        match verify_while_watching(engine, &running, &req.checks).await {
            Ok(report) => Some(report),
            Err(failure) => {
                tracing::warn!(
                    "the running stack fails its checks ({}): replacing it",
                    failure.message
                );
                return Ok(None);
            }
        }
    };
    Ok(Some(StackReport {
        stack: req.stack.clone(),
        environment: req.environment.clone(),
        version: req.version.clone(),
        containers: previous.to_vec(),
        replaced: Vec::new(),
        hooks: Vec::new(),
        verified,
        unchanged: true,
    }))
}

/// Starts the containers in order, honouring `dependsOn`, then lets them settle, runs the
/// postdeploy hooks and the verify checks, checking the essential containers all along.
async fn bring_up(
    engine: &Engine,
    req: &StackRequest,
    created: &[Created<'_>],
) -> Result<(Vec<String>, Option<verify::VerifyReport>), Failure> {
    for c in created {
        for (dep, cond) in &c.plan.depends_on {
            // Invariant: `Plan` refuses a file with lint's DR007 errors, so every dependsOn
            // names a container of the plan, and all of them were created.
            let d = created
                .iter()
                .find(|d| &d.plan.name == dep)
                .expect("validated by the plan");
            wait_condition(engine, req, c, d, *cond).await?;
        }
        check_essentials(engine, created).await?;
        tracing::info!("starting {} ({})", c.plan.name, c.docker_name);
        if let Err(e) = engine.start(&c.id, &c.docker_name).await {
            let msg = format!("{e:#}");
            let hint = if msg.contains("port is already allocated")
                || msg.contains("address already in use")
            {
                "\n  hint: another process or container holds one of its host ports: stop it, or set `host_port_offset` for this environment"
            } else {
                ""
            };
            return Err(Failure::new(
                format!("container {:?}: {msg}{hint}", c.plan.name),
                Vec::new(),
            ));
        }
    }
    let until = crate::config::instant_after(req.settle);
    while Instant::now() < until {
        check_essentials(engine, created).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    check_essentials(engine, created).await?;

    let mut ran = Vec::new();
    if let Some(dir) = &req.postdeploy_hooks {
        let env = [
            ("DEPLOY_LOCAL_STACK", req.stack.clone()),
            ("DEPLOY_ENVIRONMENT", req.environment.clone()),
            ("DEPLOY_VERSION", req.version.clone()),
            ("DOCKER_HOST", engine.host().to_string()),
        ];
        for hook in hooks::list(dir)? {
            let name = hook
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            tracing::info!("running postdeploy hook {name}");
            hooks::run(&hook, &env, req.hook_timeout)
                .await
                .map_err(|e| Failure::new(format!("{e:#}"), Vec::new()))?;
            ran.push(name);
            check_essentials(engine, created).await?;
        }
    }
    if let Some(hook) = &req.instance_hook {
        let name = hook
            .script
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        tracing::info!("running postdeploy hook {name} (the `where = \"instance\"` checks)");
        let env = [
            (
                crate::verify::agent::GET_CONFIG_VAR,
                hook.get_config.display().to_string(),
            ),
            (PROPERTIES_VAR, hook.properties.clone()),
        ];
        hooks::run(&hook.script, &env, req.hook_timeout)
            .await
            .map_err(|e| Failure::new(format!("{e:#}"), Vec::new()))?;
        ran.push(name);
        check_essentials(engine, created).await?;
    }

    let verified = if req.checks.is_empty() {
        None
    } else {
        Some(verify_while_watching(engine, created, &req.checks).await?)
    };
    check_essentials(engine, created).await?;
    Ok((ran, verified))
}

/// Fails when an essential container is no longer running.
async fn check_essentials(engine: &Engine, created: &[Created<'_>]) -> Result<(), Failure> {
    for c in created.iter().filter(|c| c.plan.essential) {
        let Some(state) = engine.inspect(&c.id).await? else {
            return Err(Failure::new(
                format!("essential container {:?} disappeared", c.plan.name),
                Vec::new(),
            ));
        };
        if !state.running && state.status != "created" {
            return Err(Failure::new(
                format!(
                    "essential container {:?} exited with code {} (an essential container that stops fails the deploy)",
                    c.plan.name,
                    state.exit_code.unwrap_or(-1)
                ),
                vec![c.plan.name.clone()],
            ));
        }
    }
    Ok(())
}

async fn wait_condition(
    engine: &Engine,
    req: &StackRequest,
    c: &Created<'_>,
    dep: &Created<'_>,
    cond: Condition,
) -> Result<(), Failure> {
    let deadline = crate::config::instant_after(req.start_timeout);
    loop {
        let state = engine.inspect(&dep.id).await?.ok_or_else(|| {
            Failure::new(
                format!(
                    "container {:?} disappeared while {:?} waited for it",
                    dep.plan.name, c.plan.name
                ),
                Vec::new(),
            )
        })?;
        let exited = !state.running && state.status != "created";
        let code = state.exit_code.unwrap_or(-1);
        let done = match cond {
            Condition::Start => state.running || exited,
            Condition::Complete => exited,
            Condition::Success if exited && code != 0 => {
                return Err(Failure::new(
                    format!(
                        "container {:?} waits for {:?} to succeed (dependsOn SUCCESS), but it exited with code {code}",
                        c.plan.name, dep.plan.name
                    ),
                    vec![dep.plan.name.clone()],
                ));
            }
            Condition::Success => exited,
            Condition::Healthy if state.health.as_deref() == Some("unhealthy") || exited => {
                return Err(Failure::new(
                    format!(
                        "container {:?} waits for {:?} to be HEALTHY, but it is {}",
                        c.plan.name,
                        dep.plan.name,
                        if exited {
                            format!("exited with code {code}")
                        } else {
                            "unhealthy".into()
                        }
                    ),
                    vec![dep.plan.name.clone()],
                ));
            }
            Condition::Healthy => state.health.as_deref() == Some("healthy"),
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::new(
                format!(
                    "container {:?} waited {} for {:?} to reach {} (it is {}): raise the start timeout or fix {:?}",
                    c.plan.name,
                    humantime::format_duration(req.start_timeout),
                    dep.plan.name,
                    cond.name(),
                    state.health.as_deref().unwrap_or(&state.status),
                    dep.plan.name
                ),
                vec![dep.plan.name.clone()],
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the verify checks while watching the essential containers: a container that exits
/// ends the wait at once. A report that did not pass is a failure, with the essential
/// containers' logs.
async fn verify_while_watching(
    engine: &Engine,
    created: &[Created<'_>],
    checks: &[verify::Check],
) -> Result<verify::VerifyReport, Failure> {
    let watch = async {
        loop {
            if let Err(failure) = check_essentials(engine, created).await {
                return failure;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let report = tokio::select! {
        report = verify::run(checks) => report,
        failure = watch => return Err(failure),
    };
    for line in report.render_table().lines() {
        tracing::info!("{line}");
    }
    if !report.passed() {
        let failures: Vec<String> = report
            .failures()
            .map(|c| format!("{} {} {}: {}", c.check, c.target, c.verdict, c.detail))
            .collect();
        let essential = created
            .iter()
            .filter(|c| c.plan.essential)
            .map(|c| c.plan.name.clone())
            .collect();
        return Err(Failure::new(
            format!("verify: {}", failures.join("; ")),
            essential,
        ));
    }
    Ok(report)
}

async fn remove_all(engine: &Engine, created: &[Created<'_>]) {
    for c in created {
        if let Err(e) = engine.remove(&c.id).await {
            tracing::warn!("{e:#}");
        }
    }
}

/// Host ports that the stack's previous version does not hold must be free now.
fn check_host_ports(plan: &Plan, previous: &[ContainerState], file: &str) -> Result<()> {
    let held: Vec<u16> = previous
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            p.split_once("->")
                .and_then(|(h, _)| h.rsplit_once(':'))
                .and_then(|(_, port)| port.parse().ok())
        })
        .collect();
    for (port, c, p) in plan.host_ports() {
        if held.contains(&port) || p.protocol != "tcp" {
            continue;
        }
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            let from = match p.file_host {
                Some(h) if h != port => format!(" (hostPort {h} + host_port_offset)"),
                _ => String::new(),
            };
            bail!(
                "host port 127.0.0.1:{port}{from} of container {:?} in {file} is already in use ({e}): stop what listens there, or set `host_port_offset` in the environment of deploy.toml",
                c.name
            );
        }
    }
    Ok(())
}

/// The names other containers reach this one by: its own, and the aliases of links to it.
fn aliases(plan: &Plan, c: &ContainerPlan) -> Vec<String> {
    let mut names = vec![c.name.clone()];
    for other in &plan.containers {
        for (target, alias) in &other.links {
            if target == &c.name && !names.contains(alias) {
                names.push(alias.clone());
            }
        }
    }
    names
}

fn env(c: &ContainerPlan) -> Vec<String> {
    let mut env: Vec<String> = c
        .environment
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for name in &c.secrets {
        match std::env::var(name) {
            Ok(v) => env.push(format!("{name}={v}")),
            Err(_) => tracing::warn!(
                "container {:?}: secret {name} comes from Secrets Manager on EB; locally it is unset (export {name} to pass it)",
                c.name
            ),
        }
    }
    env
}

fn labels(req: &StackRequest, c: &ContainerPlan, fingerprint: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
    labels.insert(LABEL_FINGERPRINT.into(), fingerprint.to_string());
    labels.insert(LABEL_STACK.into(), req.stack.clone());
    labels.insert(LABEL_ENVIRONMENT.into(), req.environment.clone());
    labels.insert(LABEL_VERSION.into(), req.version.clone());
    labels.insert(LABEL_CONTAINER_NAME.into(), c.name.clone());
    labels
}

/// The stack's containers.
pub async fn status(docker_host: Option<&str>, stack: &str) -> Result<Vec<ContainerState>> {
    Engine::connect(docker_host)
        .await?
        .list(LABEL_STACK, stack)
        .await
}

/// The last `tail` log lines of the stack's containers (or of the one named `only`).
pub async fn logs(
    docker_host: Option<&str>,
    stack: &str,
    only: Option<&str>,
    tail: usize,
) -> Result<Vec<(ContainerState, String)>> {
    let engine = Engine::connect(docker_host).await?;
    let containers = engine.list(LABEL_STACK, stack).await?;
    if let Some(name) = only {
        if !containers.iter().any(|c| c.name == name) {
            let known: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "no container {name:?} in the local stack {stack}; it has: {}",
                if known.is_empty() {
                    "nothing (run `cargo xtask local up`)".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
    }
    let mut out = Vec::new();
    for c in containers
        .into_iter()
        .filter(|c| only.is_none_or(|n| n == c.name))
    {
        let text = engine.logs(&c.id, tail).await?;
        out.push((c, text));
    }
    Ok(out)
}

/// What `down` removed.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// True when nothing was removed (`--dry-run`): the fields say what would be.
    pub dry_run: bool,
    pub stack: String,
    pub containers: Vec<String>,
    pub network_removed: bool,
}

/// Removes the stack's containers and network. Idempotent.
pub async fn down(docker_host: Option<&str>, stack: &str) -> Result<DownReport> {
    down_with(docker_host, stack, false).await
}

/// [`down`], or with `dry_run` the report of what it would remove.
pub async fn down_with(
    docker_host: Option<&str>,
    stack: &str,
    dry_run: bool,
) -> Result<DownReport> {
    let engine = Engine::connect(docker_host).await?;
    let containers = engine.list(LABEL_STACK, stack).await?;
    if !dry_run {
        for c in &containers {
            engine.remove(&c.id).await?;
        }
    }
    let network_removed = match engine.network_labels(stack).await? {
        Some(labels) if labels.get(LABEL_STACK).map(String::as_str) == Some(stack) => {
            if !dry_run {
                engine.remove_network(stack).await?;
            }
            true
        }
        Some(_) => {
            tracing::warn!(
                "the network {stack} was not created by the local target: left in place"
            );
            false
        }
        None => false,
    };
    Ok(DownReport {
        dry_run,
        stack: stack.to_string(),
        containers: containers.into_iter().map(|c| c.docker_name).collect(),
        network_removed,
    })
}
