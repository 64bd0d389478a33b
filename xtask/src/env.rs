//! `env diff|apply|pull`: environment properties and secret references as code.

use anyhow::{bail, Result};
use pipeline::envprops::{self, ApplyRequest, Running};
use pipeline::ops::{AwsEnvironment, Session};

use crate::args::EnvArg;
use crate::Global;

/// Environment properties declared in deploy.toml: compare, apply, or pull what runs.
#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// What `apply` would change: added, changed, removed, unmanaged (secret values never shown).
    Diff(DiffCmd),
    /// Set the declared properties in one UpdateEnvironment and wait like a deploy.
    Apply(ApplyCmd),
    /// Print the declaration of what the environment has today (secrets as placeholders).
    Pull(PullCmd),
}

#[derive(clap::Args, Debug)]
pub struct DiffCmd {
    #[command(flatten)]
    env: EnvArg,
}

#[derive(clap::Args, Debug)]
pub struct ApplyCmd {
    #[command(flatten)]
    env: EnvArg,
    /// Also remove the properties that deploy.toml does not declare (needs --yes).
    #[arg(long)]
    prune: bool,
    /// Confirm --prune.
    #[arg(long)]
    yes: bool,
    /// Show the diff and wait for the environment, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// How long to wait for another deploy to finish (default: the environment's lock_wait).
    #[arg(long, value_parser = pipeline::deploy::parse_duration)]
    lock_wait: Option<std::time::Duration>,
}

#[derive(clap::Args, Debug)]
pub struct PullCmd {
    #[command(flatten)]
    env: EnvArg,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::Diff(c) => c.run(global).await,
            Cmd::Apply(c) => c.run(global).await,
            Cmd::Pull(c) => c.run(global).await,
        }
    }
}

impl DiffCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = AwsEnvironment::resolve(&config, &self.env.required("env diff")?, "env diff")?;
        let session = Session::open(&config).await;
        let report = envprops::apply::plan(&config, &session, &env, false).await?;
        print_diff(&report);
        global.emit_json(&report)
    }
}

fn print_diff(report: &envprops::DiffReport) {
    if report.pending_update {
        tracing::warn!(
            "{}: a configuration update is in progress; compared with the deployed configuration",
            report.eb_environment
        );
    }
    let table = report.table();
    if !table.is_empty() {
        eprint!("{}", table.render());
    }
    eprintln!("{}", report.summary());
    for p in report.problems.iter().chain(&report.warnings) {
        tracing::warn!("{p}");
    }
}

impl ApplyCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = AwsEnvironment::resolve(&config, &self.env.required("env apply")?, "env apply")?;
        let session = Session::open(&config).await;
        let mut req = ApplyRequest::new(env);
        req.prune = self.prune;
        req.confirmed = self.yes;
        req.dry_run = self.dry_run;
        if let Some(w) = self.lock_wait {
            req.lock_wait = w;
        }
        let report = envprops::apply(&config, &session, &req).await?;
        print_diff(&report.diff);
        eprintln!("{}", report.message);
        global.emit_json(&report)?;
        if !report.ok() {
            bail!("env apply of {} failed: {}", req.env.name, report.message);
        }
        Ok(())
    }
}

impl PullCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = AwsEnvironment::resolve(&config, &self.env.required("env pull")?, "env pull")?;
        let session = Session::open(&config).await;
        let running = Running::read(&session.eb, &env.application, &env.eb_environment).await?;
        print!(
            "{}",
            envprops::pull::declaration(&env.application, &env.name, &running)
        );
        Ok(())
    }
}
