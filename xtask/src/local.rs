//! `local up|status|logs|down`: the local target (the README's first command).

use anyhow::Result;
use pipeline::local::{self, LocalOptions};

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Run the release on the local Docker Engine (build, render, run, verify).
    #[command(subcommand)]
    Local(LocalCmd),
}

#[derive(clap::Subcommand, Debug)]
pub enum LocalCmd {
    /// Build the images, render the bundle under target/, run it locally and verify it.
    Up(UpArgs),
    /// Show the containers of the local stack.
    Status(StackArgs),
    /// Show the last log lines of the local stack's containers.
    Logs(LogsArgs),
    /// Remove the local stack's containers and network.
    Down(DownArgs),
}

#[derive(clap::Args, Debug)]
pub struct StackArgs {
    /// Environment of deploy.toml with target = "local".
    #[arg(long = "env", default_value = "local")]
    env: String,
    /// Docker Engine address (else DOCKER_HOST, else the default socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Release name (else the git tag or the short commit).
    #[arg(long, env = "DEPLOY_RELEASE")]
    release: Option<String>,
    /// Use the images already in the engine instead of building them.
    #[arg(long)]
    no_build: bool,
    /// Render and print the plan; start nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Show what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    stack: StackArgs,
    /// Only this container (its name in Dockerrun.aws.json).
    container: Option<String>,
    /// Lines per container.
    #[arg(long, default_value_t = 100)]
    tail: usize,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let Cmd::Local(cmd) = self;
        let config = global.load_config()?;
        match cmd {
            LocalCmd::Up(a) => {
                let options = LocalOptions {
                    release: a.release,
                    docker_host: a.stack.docker_host,
                    skip_build: a.no_build,
                    dry_run: a.dry_run,
                };
                up(global, &config, &a.stack.env, &options).await
            }
            LocalCmd::Status(a) => {
                let stack = local::stack_name(&config, &a.env);
                let containers = local::status(a.docker_host.as_deref(), &stack).await?;
                if containers.is_empty() {
                    tracing::info!("nothing runs in the local stack {stack} (start it with `cargo xtask local up`)");
                }
                for c in &containers {
                    let state = match (&c.health, c.exit_code) {
                        (Some(h), _) => format!("{} ({h})", c.status),
                        (None, Some(code)) if !c.running && c.status == "exited" => {
                            format!("exited ({code})")
                        }
                        _ => c.status.clone(),
                    };
                    tracing::info!(
                        "{:<20} {:<14} {:<28} {}",
                        c.name,
                        state,
                        c.version,
                        c.ports.join(" ")
                    );
                }
                global.emit_json(&containers)
            }
            LocalCmd::Logs(a) => {
                let stack = local::stack_name(&config, &a.stack.env);
                let logs = local::logs(
                    a.stack.docker_host.as_deref(),
                    &stack,
                    a.container.as_deref(),
                    a.tail,
                )
                .await?;
                if global.json {
                    let value: Vec<_> = logs
                        .iter()
                        .map(|(c, text)| serde_json::json!({"container": c.name, "docker_name": c.docker_name, "logs": text}))
                        .collect();
                    return global.emit_json(&value);
                }
                // The logs are the command's output: stdout.
                for (c, text) in logs {
                    println!("--- {} ({}) ---", c.name, c.docker_name);
                    print!("{text}");
                }
                Ok(())
            }
            LocalCmd::Down(a) => {
                let stack = local::stack_name(&config, &a.stack.env);
                let report =
                    local::down_with(a.stack.docker_host.as_deref(), &stack, a.dry_run).await?;
                tracing::info!(
                    "{} {} container(s){} of the local stack {stack}",
                    if report.dry_run {
                        "would remove"
                    } else {
                        "removed"
                    },
                    report.containers.len(),
                    if report.network_removed {
                        " and its network"
                    } else {
                        ""
                    }
                );
                global.emit_json(&report)
            }
        }
    }
}

/// `local up`, and `deploy --env NAME` for an environment with `target = "local"`: build,
/// bundle, run on the local engine, verify; a summary on stderr, the result as JSON with `--json`.
pub async fn up(
    global: &Global,
    config: &pipeline::config::Config,
    env: &str,
    options: &LocalOptions,
) -> Result<()> {
    let done = local::deploy_local(config, env, options).await?;
    if let Some(run) = &done.run {
        tracing::info!(
            "local stack {} runs version {} ({} containers){}",
            run.stack,
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
        for c in &run.containers {
            tracing::info!("  {:<20} {:<8} {}", c.name, c.status, c.ports.join(" "));
        }
    }
    global.emit_json(&done)
}
