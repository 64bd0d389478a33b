//! The local target: run the bundle that would go to EB on the local Docker Engine.
//!
//! The same stages run as for AWS, with the local engine in place of ECR and EB: build the
//! images into the engine (nothing is pushed), render the template for the local environment
//! and write it under `target/`, then run its containers the way EB's ECS agent does
//! ([`run::run`]: one private network per stack, `links` as network aliases, `portMappings`
//! on 127.0.0.1, `dependsOn`, `essential`, the postdeploy hooks), and verify over HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle;
use crate::config::{Config, Target};
use crate::release::Release;
use crate::verify;
use anyhow::{bail, Context, Result};
use serde::Serialize;

mod hooks;
pub mod plan;
pub mod prepare;
pub mod run;

pub use crate::docker::run::{
    ContainerState, LABEL_CONTAINER_NAME, LABEL_ENVIRONMENT, LABEL_FINGERPRINT, LABEL_STACK,
    LABEL_VERSION,
};
pub use run::{down, down_with, logs, status, DownReport, StackReport, StackRequest};

/// The file the local run uses when stand-ins changed the bundle's `Dockerrun.aws.json`.
pub const LOCAL_DOCKERRUN: &str = "Dockerrun.local.json";

/// Options of a local deploy, beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Release name (else the git tag or short commit).
    pub release: Option<String>,
    /// The engine; else `DOCKER_HOST`, else the default socket.
    pub docker_host: Option<String>,
    /// Use the images already in the engine instead of building them.
    pub skip_build: bool,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// Replace the stack even when it already runs this version, unchanged and healthy.
    pub force: bool,
}

/// The result of [`deploy_local`].
#[derive(Debug, Clone, Serialize)]
pub struct LocalDeployment {
    pub release: String,
    pub version_label: String,
    /// The bundle that would go to EB (`deploy.zip`).
    pub bundle: PathBuf,
    /// The file that ran: the bundle's `Dockerrun.aws.json`, or `Dockerrun.local.json` next to
    /// it when the environment has image stand-ins.
    pub dockerrun: PathBuf,
    /// Built images: name → local reference.
    pub images: std::collections::BTreeMap<String, String>,
    /// `None` for a dry run.
    pub run: Option<StackReport>,
}

impl LocalDeployment {
    /// What runs now, on stderr: the stack, its version and containers, the verify verdict.
    pub fn log_summary(&self) {
        let Some(run) = &self.run else { return };
        tracing::info!(
            "local stack {} {} version {} ({} containers){}",
            run.stack,
            if run.unchanged {
                "already runs (nothing restarted)"
            } else {
                "runs"
            },
            run.version,
            run.containers.len(),
            run.verified
                .as_ref()
                .map(|v| format!("; verify passed ({} checks)", v.checks.len()))
                .unwrap_or_default()
        );
        if !run.replaced.is_empty() {
            tracing::info!("replaced version(s): {}", run.replaced.join(", "));
        }
        let mut table = crate::output::Table::new(["container", "status", "ports"]);
        for c in &run.containers {
            table.row([c.name.clone(), c.status.clone(), c.ports.join(" ")]);
        }
        for line in table.render().lines() {
            tracing::info!("  {line}");
        }
    }
}

/// The stack name of environment `env_name`: `<application>-<environment>`.
pub fn stack_name(config: &Config, env_name: &str) -> String {
    format!("{}-{env_name}", config.application)
}

/// `cargo xtask local up` and `cargo xtask deploy --env local`: build, render, write the
/// bundle's Dockerrun file under `target/`, run it on the local engine, verify.
pub async fn deploy_local(
    config: &Config,
    env_name: &str,
    options: &LocalOptions,
) -> Result<LocalDeployment> {
    let env = config.environment(env_name)?;
    if env.target != Target::Local {
        bail!(
            "environment {env_name:?} in {} has target = \"{}\", not \"local\": deploy it with `cargo xtask deploy --env {env_name}`",
            config.path.display(),
            env.target
        );
    }
    let mut release = Release::detect(&config.root, options.release.as_deref())?;
    // Git sources: fetched (or, in a dry run, only shown) before anything is built.
    let mut fetched = config.clone();
    if !options.skip_build {
        crate::image::source::prepare(&mut fetched, &mut release, options.dry_run)?;
    }
    let config = &fetched;
    let stack = stack_name(config, env_name);
    // In GitHub Actions, each phase's log is a collapsible group (a no-op elsewhere).
    let actions = crate::github::actions::Actions::from_env();
    let build_group = actions.group("build");

    let mut images = std::collections::BTreeMap::new();
    if options.dry_run {
        for (name, image, _) in config.built_images() {
            images.insert(
                name.to_string(),
                prepare::local_reference(&image.repository, &release.name),
            );
        }
    } else {
        let engine = crate::docker::Engine::connect(options.docker_host.as_deref()).await?;
        if options.skip_build {
            for (name, image, _) in config.built_images() {
                images.insert(
                    name.to_string(),
                    prepare::local_reference(&image.repository, &release.name),
                );
            }
        } else {
            // Blocking: cargo prints its progress on stderr.
            let cfg = config.clone();
            tokio::task::spawn_blocking(move || crate::docker::build_static_binaries(&cfg))
                .await
                .context("the static build task panicked")??;
            images = prepare::build_images(
                &engine,
                config,
                &release,
                crate::docker::OutputMode::detect(),
            )
            .await?;
        }
    }

    drop(build_group);
    // The same bundle as for EB (rendered, linted, zipped under target/), then the stand-ins.
    let bundle_group = actions.group("bundle");
    let bundle = bundle::make_bundle(
        &bundle::BundleRequest::new(config, env_name, release.clone())
            .with_dry_run(options.dry_run),
    )
    .inspect_err(|e| {
        if let Some(bundle::LintFailed(lint)) = e.downcast_ref() {
            actions.annotate_lint(lint, &config.root);
        }
    })?;
    actions.annotate_lint(&bundle.lint, &config.root);
    let version_label = bundle.version_label.clone();
    let out_dir = bundle.path.parent().map(PathBuf::from).unwrap_or_default();
    let (dockerrun, text) =
        match prepare::apply_stand_ins(config, env, &release.name, &bundle.dockerrun)? {
            Some(text) => (out_dir.join(LOCAL_DOCKERRUN), text),
            None => (out_dir.join(bundle::DOCKERRUN), bundle.dockerrun.clone()),
        };
    if !options.dry_run {
        std::fs::write(&dockerrun, &text)
            .with_context(|| format!("cannot write {}", dockerrun.display()))?;
        tracing::info!(
            "bundle {} (version {version_label}); running {}",
            bundle.path.display(),
            dockerrun.display()
        );
    }
    let rendered = text;
    drop(bundle_group);

    let mut req = StackRequest::new(
        &stack,
        env_name,
        &version_label,
        &dockerrun.display().to_string(),
        rendered,
    );
    req.host_port_offset = env.host_port_offset;
    req.docker_host = options.docker_host.clone();
    req.force = options.force;
    req.postdeploy_hooks = Some(
        config
            .resolve(&config.bundle.platform)
            .join("hooks/postdeploy"),
    );
    req.checks = verify::for_environment(config, env_name, None)?;
    if !options.dry_run {
        req.instance_hook = instance_hook(config, env_name, &out_dir.join("instance"))?;
    }
    req.start_timeout = env.timeouts.deploy.min(Duration::from_secs(300));

    if options.dry_run {
        let plan = plan::Plan::parse(&req.dockerrun_file, &req.dockerrun, req.host_port_offset)?;
        tracing::info!("dry run: would run stack {stack} with version {version_label}:");
        for c in &plan.containers {
            let ports: Vec<String> = c
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "127.0.0.1:{}->{}",
                        p.host.map_or("auto".into(), |h| h.to_string()),
                        p.container
                    )
                })
                .collect();
            tracing::info!(
                "  {} ({}{}) {}",
                c.name,
                c.image,
                if c.essential { ", essential" } else { "" },
                ports.join(" ")
            );
        }
        for check in &req.checks {
            tracing::info!("  then verify: {} {}", check.kind(), check.target());
        }
        return Ok(LocalDeployment {
            release: release.name,
            version_label,
            bundle: bundle.path.clone(),
            dockerrun,
            images,
            run: None,
        });
    }
    let deploy_group = actions.group("deploy");
    let report = run::run(&req).await?;
    drop(deploy_group);
    Ok(LocalDeployment {
        release: release.name,
        version_label,
        bundle: bundle.path,
        dockerrun,
        images,
        run: Some(report),
    })
}

/// The `where = "instance"` checks' hook, as the bundle carries it, written under `dir`, with
/// the `get-config` stand-in; the properties it prints are the variables those checks read,
/// from this process's environment. `None` without instance checks.
fn instance_hook(config: &Config, env_name: &str, dir: &Path) -> Result<Option<run::InstanceHook>> {
    use std::os::unix::fs::PermissionsExt;
    let Some(list) = verify::agent::instance_checks(config, env_name)? else {
        return Ok(None);
    };
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let Some(script) = verify::agent::write_entries(config, env_name, dir)? else {
        return Ok(None);
    };
    let get_config = dir.join("get-config");
    std::fs::write(&get_config, run::GET_CONFIG_STAND_IN)
        .with_context(|| format!("cannot write {}", get_config.display()))?;
    std::fs::set_permissions(&get_config, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", get_config.display()))?;
    let properties: serde_json::Map<String, serde_json::Value> =
        verify::agent::variable_names(&list)
            .into_iter()
            .filter_map(|name| {
                let value = std::env::var(&name).ok()?;
                Some((name, serde_json::Value::String(value)))
            })
            .collect();
    Ok(Some(run::InstanceHook {
        script,
        get_config,
        properties: serde_json::Value::Object(properties).to_string(),
    }))
}
