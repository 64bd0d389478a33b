//! The postdeploy hook that runs the `where = "instance"` checks on the Elastic Beanstalk
//! instance: what the bundle stage adds (the static `verify-agent` binary, the check list,
//! the hook script), and how the pipeline reads the agent's report back from EB's logs.
//!
//! The hook reads the environment properties with `get-config environment` and pipes them to
//! the agent; a failed required check fails the hook, so EB reports the deploy as failed and
//! the pipeline rolls back. The agent's output lands in `/var/log/eb-hooks.log`, which EB's
//! tail logs include: after a failed deploy the pipeline finds the report line there and
//! prints the instance's check table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{CheckSpec, Config, Where};
use crate::instance::{Arch, InstanceType};

pub use checks::agent::{find_report, render_output, AgentChecks, REPORT_MARKER};

/// The hook script inside the bundle (after the migration hook, `01_migrate.sh`).
pub const HOOK_ENTRY: &str = ".platform/hooks/postdeploy/90_verify.sh";
/// The agent binary inside the bundle.
pub const AGENT_ENTRY: &str = ".platform/verify/verify-agent";
/// The check list inside the bundle.
pub const CHECKS_ENTRY: &str = ".platform/verify/checks.json";
/// A prebuilt agent binary to bundle instead of building one (CI artifacts, tests).
pub const AGENT_VAR: &str = "DEPLOY_VERIFY_AGENT";
/// The program that prints the environment properties (EB's own on the instance; the local
/// target points it at a stand-in).
pub const GET_CONFIG_VAR: &str = "EB_GET_CONFIG";
/// The log file of the instance that holds the hooks' output.
pub const HOOKS_LOG: &str = "/var/log/eb-hooks.log";
/// The only target the agent is built for here.
pub const AGENT_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The hook script: properties from `get-config`, piped to the agent, from the application
/// directory whatever the working directory.
pub const HOOK_SCRIPT: &str = r#"#!/bin/bash
# Written by the pipeline's bundle stage: runs the `where = "instance"` checks of deploy.toml
# on this instance. A failed required check fails this hook, and so the deploy.
set -euo pipefail
cd "$(dirname "$0")/../../.."
"${EB_GET_CONFIG:-/opt/elasticbeanstalk/bin/get-config}" environment \
  | .platform/verify/verify-agent --checks .platform/verify/checks.json --properties -
"#;

/// The check list of environment `env_name`'s instance checks; `None` when it has none.
pub fn instance_checks(config: &Config, env_name: &str) -> Result<Option<AgentChecks>> {
    let env = config.environment(env_name)?;
    let checks: Vec<_> = env
        .checks
        .iter()
        .filter(|c| c.place() == Where::Instance)
        .cloned()
        .collect();
    if checks.is_empty() {
        return Ok(None);
    }
    Ok(Some(AgentChecks {
        environment: env_name.to_string(),
        timeout: env.timeouts.verify,
        checks,
    }))
}

/// The architecture of environment `env_name`'s instances, refusing what the agent cannot be
/// built for here: only the x86_64 gnu target is installed, so an aarch64 (Graviton)
/// instance type with instance checks is an error, not a hook that cannot start.
pub fn check_architecture(config: &Config, env_name: &str) -> Result<()> {
    let env = config.environment(env_name)?;
    let Some(name) = env.instance_type.as_deref() else {
        return Ok(());
    };
    if let Some(it) = InstanceType::find(name) {
        if it.arch == Arch::Aarch64 {
            bail!(
                "environments.{env_name} in {} has `where = \"instance\"` checks and instance_type {name:?} (aarch64, Graviton): the verify agent is built only for x86_64 here (the aarch64 Rust target is not installed). Use an x86_64 instance type, or set `where = \"runner\"` on those checks",
                config.path.display()
            );
        }
    }
    Ok(())
}

/// The agent binary to put into the bundle: `DEPLOY_VERIFY_AGENT` when set, else a static
/// build (`crt-static`, stripped) of the `checks` package's `verify-agent` for x86_64.
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(AGENT_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{AGENT_VAR} names {}, which is not a file: unset it to build the agent, or point it at a built verify-agent",
                path.display()
            );
        }
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the pipeline's workspace has no root")?;
    tracing::info!("building the verify agent ({AGENT_TRIPLE}, crt-static)");
    crate::docker::binaries::build_static(workspace, "checks", "verify-agent", AGENT_TRIPLE)
        .with_context(|| {
            format!("cannot build the verify agent (or set {AGENT_VAR} to a built verify-agent)")
        })
}

/// The generated entries of the bundle for environment `env_name` (name, bytes, mode), in
/// name order; none when the environment has no instance checks.
pub fn bundle_entries(config: &Config, env_name: &str) -> Result<Vec<(String, Vec<u8>, u32)>> {
    let Some(list) = instance_checks(config, env_name)? else {
        return Ok(Vec::new());
    };
    check_architecture(config, env_name)?;
    let agent = agent_binary()?;
    let binary = std::fs::read(&agent)
        .with_context(|| format!("cannot read the verify agent {}", agent.display()))?;
    let json = serde_json::to_vec_pretty(&list).context("cannot write the check list")?;
    let mut entries = vec![
        (
            HOOK_ENTRY.to_string(),
            HOOK_SCRIPT.as_bytes().to_vec(),
            0o755,
        ),
        (AGENT_ENTRY.to_string(), binary, 0o755),
        (CHECKS_ENTRY.to_string(), json, 0o644),
    ];
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// The names of the environment variables (properties) the checks of `list` read.
pub fn variable_names(list: &AgentChecks) -> Vec<String> {
    let mut names: Vec<String> = list
        .checks
        .iter()
        .flat_map(|c| match c {
            CheckSpec::Http { .. } => vec![],
            CheckSpec::Redis { url_env, .. } | CheckSpec::Nats { url_env, .. } => {
                vec![url_env.clone()]
            }
            CheckSpec::Celery { broker_url_env, .. } => vec![broker_url_env.clone()],
            CheckSpec::Flower {
                user_env,
                password_env,
                ..
            } => vec![user_env.clone(), password_env.clone()],
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Writes the bundle's generated entries under `dir` (as they are unzipped on the instance),
/// with their modes; returns the hook script's path, or `None` without instance checks.
pub fn write_entries(config: &Config, env_name: &str, dir: &Path) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let entries = bundle_entries(config, env_name)?;
    if entries.is_empty() {
        return Ok(None);
    }
    for (name, bytes, mode) in &entries {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    Ok(Some(dir.join(HOOK_ENTRY)))
}
