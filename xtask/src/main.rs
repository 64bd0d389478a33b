//! `cargo xtask`: the command line over the `pipeline` library.
//!
//! Human output and progress go to stderr (tracing); `--json` puts machine output on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod args;
mod build;
mod bundle;
mod cleanup;
mod deploy;
mod docs;
mod doctor;
mod env;
mod fuzz;
mod history;
mod iam_policy;
mod lint;
mod local;
mod logs;
mod preview;
mod push;
mod render;
mod rollback;
mod secrets;
mod status;
mod test;
mod upload;
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

/// One variant per command, each in its own file.
#[derive(Subcommand, Debug)]
enum Command {
    Render(render::Cmd),
    Lint(lint::Cmd),
    Bundle(bundle::Cmd),
    /// Run the whole test suite with its test services (the README's test command).
    Test(test::Cmd),
    Fuzz(fuzz::Cmd),
    Verify(verify::Cmd),
    Build(build::Cmd),
    Push(push::Cmd),
    Deploy(deploy::Cmd),
    /// Upload the bundle to S3 (skipped when the same bundle is there).
    Upload(upload::Cmd),
    /// Upload the bundle and create the EB application version (reused when it exists).
    Version(upload::Cmd),
    /// Run the release on the local Docker Engine (build, render, run, verify).
    #[command(subcommand)]
    Local(local::Cmd),
    IamPolicy(iam_policy::Cmd),
    Preview(preview::Cmd),
    Status(status::Cmd),
    History(history::Cmd),
    Rollback(rollback::Cmd),
    Logs(logs::Cmd),
    Cleanup(cleanup::Cmd),
    Doctor(doctor::Cmd),
    Docs(docs::Cmd),
    /// Environment properties declared in deploy.toml: compare, apply, or pull what runs.
    #[command(subcommand)]
    Env(env::Cmd),
    /// Secret values in Secrets Manager for the environment properties.
    #[command(subcommand)]
    Secrets(secrets::Cmd),
}

/// What every command gets: the parsed global options.
#[derive(Debug, Clone)]
pub struct Global {
    pub config: PathBuf,
    pub json: bool,
}

impl Global {
    /// Loads the configuration with the environment's overrides applied.
    /// In GitHub Actions, credentials written in the file or passed in DEPLOY_URL are
    /// masked in the job's log before anything can print them.
    pub fn load_config(&self) -> Result<pipeline::config::Config> {
        let actions = pipeline::github::actions::Actions::from_env();
        if let Ok(url) = std::env::var("DEPLOY_URL") {
            for secret in pipeline::verify::url_secrets(&url) {
                actions.mask(&secret);
            }
        }
        let config =
            pipeline::config::Config::load(&self.config, &pipeline::config::Overrides::from_env())?;
        let actions = pipeline::github::actions::Actions::from_env();
        for name in config.environments.keys() {
            pipeline::verify::mask_config_secrets(&actions, &config, name, None);
        }
        Ok(config)
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Render(cmd) => cmd.run(&global).await,
            Command::Lint(cmd) => cmd.run(&global).await,
            Command::Bundle(cmd) => cmd.run(&global).await,
            Command::Test(cmd) => cmd.run(),
            Command::Fuzz(cmd) => cmd.run(),
            Command::Verify(cmd) => cmd.run(&global).await,
            Command::Build(cmd) => cmd.run(&global).await,
            Command::Push(cmd) => cmd.run(&global).await,
            Command::Deploy(cmd) => cmd.run(&global).await,
            Command::Upload(cmd) => cmd.run(&global, "upload", upload::UPLOAD).await,
            Command::Version(cmd) => cmd.run(&global, "version", upload::VERSION).await,
            Command::Local(cmd) => cmd.run(&global).await,
            Command::IamPolicy(cmd) => cmd.run(&global).await,
            Command::Preview(cmd) => cmd.run(&global).await,
            Command::Status(cmd) => cmd.run(&global).await,
            Command::History(cmd) => cmd.run(&global).await,
            Command::Rollback(cmd) => cmd.run(&global).await,
            Command::Logs(cmd) => cmd.run(&global).await,
            Command::Cleanup(cmd) => cmd.run(&global).await,
            Command::Doctor(cmd) => cmd.run(&global).await,
            Command::Docs(cmd) => cmd.run(&global),
            Command::Env(cmd) => cmd.run(&global).await,
            Command::Secrets(cmd) => cmd.run(&global).await,
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

/// Crates that log request or response bodies at trace level.
const BODY_LOGGING_TARGETS: [&str; 12] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_runtime",
    "aws_sigv4",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
];

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info,aws_config=error,aws_smithy_runtime=error,aws_runtime=error",
        1 => "info,pipeline=debug,aws_config=warn",
        _ => "debug",
    };
    let mut filter =
        EnvFilter::try_from_env("DEPLOY_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // At trace level the HTTP stacks log whole response bodies (ECR's authorization token,
    // STS credentials): whatever DEPLOY_LOG asks, they log at debug at most.
    if filter.max_level_hint() == Some(tracing_subscriber::filter::LevelFilter::TRACE) {
        for target in BODY_LOGGING_TARGETS {
            if let Ok(d) = format!("{target}=debug").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let ci = std::env::var_os("CI").is_some();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(!ci && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
impl Cli {
    /// Parses `cargo xtask ARGS…`.
    fn try_parse_from_args(args: &[&str]) -> Result<Self, clap::Error> {
        Self::try_parse_from(std::iter::once("cargo xtask").chain(args.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The command `cargo xtask ARGS…` parses into.
    pub fn parse(args: &[&str]) -> Command {
        match Cli::try_parse_from_args(args) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?} does not parse: {e}"),
        }
    }

    /// A configuration with a local and an AWS environment.
    pub fn config() -> pipeline::config::Config {
        pipeline::config::Config::parse(
            std::path::Path::new("deploy.toml"),
            "region = 'us-west-2'\napplication = 'antenna'\n[images.backend]\nrepository = 'antenna-backend'\nbuild = { context = '.' }\n[environments.local]\ntarget = 'local'\n[environments.staging]\neb_environment = 'antenna-staging'\n",
        )
        .expect("the test configuration parses")
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn build_has_no_push_only_flags() {
        let mut cli = Cli::command();
        let build = cli.find_subcommand_mut("build").expect("a build command");
        let flags: Vec<String> = build
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        assert!(
            !flags
                .iter()
                .any(|f| f == "force" || f == "create-repository"),
            "{flags:?}"
        );
    }

    #[test]
    fn every_command_with_env_reads_deploy_env() {
        let cli = Cli::command();
        let mut seen = 0;
        for cmd in cli.get_subcommands() {
            let subs: Vec<&clap::Command> = if cmd.has_subcommands() {
                cmd.get_subcommands().collect()
            } else {
                vec![cmd]
            };
            for c in subs {
                if let Some(env) = c.get_arguments().find(|a| a.get_long() == Some("env")) {
                    seen += 1;
                    assert_eq!(
                        env.get_env().and_then(|e| e.to_str()),
                        Some("DEPLOY_ENV"),
                        "{} --env",
                        c.get_name()
                    );
                    assert_eq!(env.get_short(), Some('e'), "{} --env", c.get_name());
                }
            }
        }
        assert!(seen >= 12, "{seen} commands take --env");
    }
}
