//! `local up|status|logs|down`: the local target (the README's first command).

use anyhow::Result;
use pipeline::config::Config;
use pipeline::local::{self, LocalOptions};

use crate::args::{DryRunArg, EnvArg, ReleaseArg};
use crate::Global;

/// Run the release on the local Docker Engine (build, render, run, verify).
#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
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
    #[command(flatten)]
    env: EnvArg,
    /// Docker Engine address (else DOCKER_HOST, else the default socket).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    release: ReleaseArg,
    /// Use the images already in the engine instead of building them.
    #[arg(long)]
    no_build: bool,
    /// Restart the stack even when it already runs this version, unchanged and healthy.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    dry_run: DryRunArg,
}

#[derive(clap::Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    dry_run: DryRunArg,
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

impl UpArgs {
    pub fn request(&self, _config: &Config) -> (String, LocalOptions) {
        let options = LocalOptions {
            release: self.release.release.clone(),
            docker_host: self.stack.docker_host.clone(),
            skip_build: self.no_build,
            dry_run: self.dry_run.dry_run,
            force: self.force,
        };
        (self.stack.env.or_local(), options)
    }
}

impl StackArgs {
    /// The stack's name and engine.
    pub fn stack(&self, config: &Config) -> (String, Option<&str>) {
        (
            local::stack_name(config, &self.env.or_local()),
            self.docker_host.as_deref(),
        )
    }
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        match self {
            Cmd::Up(a) => {
                let (env, options) = a.request(&config);
                let done = local::deploy_local(&config, &env, &options).await?;
                done.log_summary();
                global.emit_json(&done)
            }
            Cmd::Status(a) => {
                let (stack, host) = a.stack(&config);
                let containers = local::status(host, &stack).await?;
                if containers.is_empty() {
                    tracing::info!("nothing runs in the local stack {stack} (start it with `cargo xtask local up`)");
                }
                let mut table =
                    pipeline::output::Table::new(["container", "state", "version", "ports"]);
                for c in &containers {
                    let state = match (&c.health, c.exit_code) {
                        (Some(h), _) => format!("{} ({h})", c.status),
                        (None, Some(code)) if !c.running && c.status == "exited" => {
                            format!("exited ({code})")
                        }
                        _ => c.status.clone(),
                    };
                    table.row([c.name.clone(), state, c.version.clone(), c.ports.join(" ")]);
                }
                if !table.is_empty() {
                    for line in table.render().lines() {
                        tracing::info!("{line}");
                    }
                }
                global.emit_json(&containers)
            }
            Cmd::Logs(a) => {
                let (stack, host) = a.stack.stack(&config);
                let logs = local::logs(host, &stack, a.container.as_deref(), a.tail).await?;
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
            Cmd::Down(a) => {
                let (stack, host) = a.stack.stack(&config);
                let report = local::down_with(host, &stack, a.dry_run.dry_run).await?;
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

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn up_options() {
        let Command::Local(super::Cmd::Up(a)) = parse(&[
            "local",
            "up",
            "--no-build",
            "--release",
            "r1",
            "--docker-host",
            "tcp://h:1",
        ]) else {
            panic!("not local up")
        };
        let (env, o) = a.request(&config());
        if std::env::var_os("DEPLOY_ENV").is_none() {
            assert_eq!(env, "local");
        }
        assert!(o.skip_build && !o.dry_run);
        assert_eq!(o.release.as_deref(), Some("r1"));
        assert_eq!(o.docker_host.as_deref(), Some("tcp://h:1"));
    }
}
