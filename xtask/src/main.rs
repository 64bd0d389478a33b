//! `cargo xtask`: the command line over the `pipeline` library.
//!
//! Human output and progress go to stderr (tracing); `--json` puts machine output on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bundle;
mod cleanup;
mod deploy;
mod github;
mod history;
mod image;
mod local;
mod logs;
mod rollback;
mod status;
mod test;
mod verify;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    about = "Build, bundle and deploy Antenna to AWS Elastic Beanstalk",
    version
)]
struct Cli {
    /// The deploy configuration.
    #[arg(long, global = true, env = "DEPLOY_CONFIG", default_value = pipeline::config::CONFIG_FILE)]
    config: PathBuf,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// More detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[command(flatten)]
    Bundle(bundle::Cmd),
    #[command(flatten)]
    Verify(verify::Cmd),
    #[command(flatten)]
    Image(image::Cmd),
    #[command(flatten)]
    Deploy(deploy::Cmd),
    #[command(flatten)]
    Local(local::Cmd),
    #[command(flatten)]
    Github(github::Cmd),
    Status(status::Cmd),
    History(history::Cmd),
    Rollback(rollback::Cmd),
    Logs(logs::Cmd),
    Cleanup(cleanup::Cmd),
}

/// What every command gets: the parsed global options.
#[derive(Debug, Clone)]
pub struct Global {
    pub config: PathBuf,
    pub json: bool,
}

impl Global {
    /// Loads the configuration with the environment's overrides applied.
    pub fn load_config(&self) -> Result<pipeline::config::Config> {
        Ok(pipeline::config::Config::load(
            &self.config,
            &pipeline::config::Overrides::from_env(),
        )?)
    }

    /// Prints `value` as JSON on stdout when `--json` was given.
    pub fn emit_json(&self, value: &impl serde::Serialize) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let global = Global {
        config: cli.config,
        json: cli.json,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Bundle(cmd) => cmd.run(&global).await,
            Command::Github(cmd) => cmd.run(&global).await,
            Command::Verify(cmd) => cmd.run(&global).await,
            Command::Image(cmd) => cmd.run(&global).await,
            Command::Deploy(cmd) => cmd.run(&global).await,
            Command::Local(cmd) => cmd.run(&global).await,
            Command::Status(cmd) => cmd.run(&global).await,
            Command::History(cmd) => cmd.run(&global).await,
            Command::Rollback(cmd) => cmd.run(&global).await,
            Command::Logs(cmd) => cmd.run(&global).await,
            Command::Cleanup(cmd) => cmd.run(&global).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info,aws_config=error,aws_smithy_runtime=error,aws_runtime=error",
        1 => "info,pipeline=debug,aws_config=warn",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("DEPLOY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ci = std::env::var_os("CI").is_some();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(!ci && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
