//! `deploy`: ship a release to an environment, whatever its target.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use pipeline::config::Config;
use pipeline::deploy::{EnvChoice, RunOptions, Selection, ShipRequest, Shipped};
use pipeline::stages::Stage;

use crate::args::{DryRunArg, ReleaseTarget};
use crate::Global;

/// What `deploy`, `upload` and `version` share.
#[derive(clap::Args, Debug)]
pub struct ShipArgs {
    #[command(flatten)]
    pub target: ReleaseTarget,
    /// The bundle zip to ship.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub dry_run: DryRunArg,
}

impl ShipArgs {
    /// Refuses a missing or local environment for a command that works on AWS only (the
    /// default `local` would run a whole local deploy instead).
    pub fn aws_environment(&self, config: &Config, command: &str) -> Result<()> {
        match &self.target.env.env {
            None => bail!(
                "`{command}` works on Elastic Beanstalk environments only: pass --env NAME (or set DEPLOY_ENV){}",
                match config.aws_environment_names().as_slice() {
                    [] => String::new(),
                    names => format!("; this file has {}", names.join(", ")),
                }
            ),
            Some(name) => {
                pipeline::ops::AwsEnvironment::resolve(config, name, command)?;
                Ok(())
            }
        }
    }

    /// The request: `options` of the command with the shared `--bundle` and `--dry-run`.
    pub fn request(&self, options: RunOptions) -> ShipRequest {
        ShipRequest {
            environment: self.target.env.or_local(),
            release: self.target.release(),
            force: false,
            options: RunOptions {
                bundle: self.bundle.clone(),
                dry_run: self.dry_run.dry_run,
                ..options
            },
        }
    }

    /// Ships `request` on an AWS environment (`command` names the subcommand in messages):
    /// what `upload` and `version` do with their stages.
    pub async fn ship_on_aws(
        &self,
        global: &Global,
        command: &str,
        request: impl FnOnce(&Config) -> ShipRequest,
    ) -> Result<()> {
        let config = global.load_config()?;
        self.aws_environment(&config, command)?;
        let req = request(&config);
        ship(global, config, &req).await
    }
}

/// Ship a release to an Elastic Beanstalk environment: build, push, render, bundle, upload,
/// version, deploy, verify; roll back when the deploy or verify fails.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    common: ShipArgs,
    /// Deploy this existing version label (with `--only deploy`).
    #[arg(long)]
    label: Option<String>,
    /// Start at this stage (build, push, render, bundle, upload, version, deploy, verify).
    #[arg(long, value_parser = parse_stage, conflicts_with = "only")]
    from: Option<Stage>,
    /// Run only these stages (comma-separated).
    #[arg(long, value_parser = parse_stages)]
    only: Option<Stages>,
    /// How long to wait for another deploy in progress (default: the environment's timeouts.lock_wait).
    #[arg(long, value_parser = parse_duration)]
    lock_wait: Option<Duration>,
    /// How long to wait for the deploy's verdict (default: the environment's timeouts.deploy).
    #[arg(long, value_parser = parse_duration)]
    deadline: Option<Duration>,
    /// Do not redeploy the previous version when the deploy or verify fails.
    #[arg(long)]
    no_rollback: bool,
    /// Local environments: restart the stack even when it already runs this version.
    #[arg(long)]
    force: bool,
    /// Apply the environment properties declared in deploy.toml in the same UpdateEnvironment
    /// as the version (without it, a difference is only shown).
    #[arg(long)]
    apply_env: bool,
    /// With --apply-env: also remove the properties deploy.toml does not declare (needs --yes).
    #[arg(long, requires = "apply_env")]
    prune: bool,
    /// Confirm --prune.
    #[arg(long, requires = "prune")]
    yes: bool,
    /// Ship without the preflight (doctor's checks of the account and the environment, run
    /// before the upload): for emergencies, with a warning.
    #[arg(long)]
    skip_preflight: bool,
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        format!("unknown stage {s:?}: expected one of {}", names.join(", "))
    })
}

/// `--only`'s comma-separated stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages(Vec<Stage>);

/// Every unknown name of the list is named, not just the first.
fn parse_stages(s: &str) -> Result<Stages, String> {
    let mut stages = Vec::new();
    let mut unknown = Vec::new();
    for part in s.split(',').map(str::trim) {
        match Stage::parse(part) {
            Some(stage) if !stages.contains(&stage) => stages.push(stage),
            Some(_) => {}
            None => unknown.push(format!("{part:?}")),
        }
    }
    if unknown.is_empty() {
        return Ok(Stages(stages));
    }
    let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
    Err(format!(
        "unknown stage{} {}: expected one of {}",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.join(", "),
        names.join(", ")
    ))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    pipeline::deploy::parse_duration(s)
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> ShipRequest {
        ShipRequest {
            force: self.force,
            ..self.common.request(RunOptions {
                label: self.label.clone(),
                selection: Selection {
                    from: self.from,
                    only: self.only.clone().map(|s| s.0).unwrap_or_default(),
                },
                lock_wait: self.lock_wait,
                deadline: self.deadline,
                rollback: self.no_rollback.then_some(false),
                env: EnvChoice {
                    apply: self.apply_env,
                    prune: self.prune,
                    confirmed: self.yes,
                },
                skip_preflight: self.skip_preflight,
                ..RunOptions::default()
            })
        }
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let req = self.request(&config);
        ship(global, config, &req).await
    }
}

/// `deploy`, `upload` and `version`: ship, then the summary on stderr and JSON on stdout.
pub async fn ship(global: &Global, config: Config, req: &ShipRequest) -> Result<()> {
    let shipped = pipeline::deploy::ship(config, req).await?;
    match &shipped {
        Shipped::Local(done) => done.log_summary(),
        Shipped::Aws(report) => eprintln!("{}", report.table()),
    }
    global.emit_json(&shipped)?;
    if let Shipped::Aws(report) = &shipped {
        if !report.ok {
            bail!(
                "the deploy of {} to {} failed: see the summary above",
                report.release,
                report.eb_environment
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn deploy_options_become_the_request() {
        let Command::Deploy(cmd) = parse(&[
            "deploy",
            "--env",
            "staging",
            "--only",
            "deploy,verify",
            "--label",
            "v1-abc",
            "--deadline",
            "10m",
            "--no-rollback",
        ]) else {
            panic!("not deploy")
        };
        let req = cmd.request(&config());
        assert_eq!(req.environment, "staging");
        assert_eq!(
            req.options.selection.only,
            vec![Stage::Deploy, Stage::Verify]
        );
        assert_eq!(req.options.label.as_deref(), Some("v1-abc"));
        assert_eq!(req.options.deadline, Some(Duration::from_secs(600)));
        assert_eq!(req.options.rollback, Some(false));
        assert_eq!(req.options.lock_wait, None);
        assert_eq!(req.options.env, EnvChoice::default());
        let Command::Deploy(cmd) = parse(&[
            "deploy",
            "--env",
            "staging",
            "--apply-env",
            "--prune",
            "--yes",
        ]) else {
            panic!("not deploy")
        };
        let env = cmd.request(&config()).options.env;
        assert!(env.apply && env.prune && env.confirmed);
        let err = crate::Cli::try_parse_from_args(&["deploy", "--prune", "--yes"]).unwrap_err();
        assert!(err.to_string().contains("--apply-env"), "{err}");
    }

    #[test]
    fn every_unknown_stage_of_only_is_named() {
        let err = crate::Cli::try_parse_from_args(&["deploy", "--only", "deploy,shipit,verfy"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown stages \"shipit\", \"verfy\": expected one of build, push"),
            "{err}"
        );
    }

    #[test]
    fn from_and_only_together_are_refused() {
        let err =
            crate::Cli::try_parse_from_args(&["deploy", "--from", "upload", "--only", "deploy"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("cannot be used with"), "{err}");
    }

    #[test]
    fn an_unknown_stage_names_the_known_ones() {
        let err = crate::Cli::try_parse_from_args(&["deploy", "--from", "ship"]).unwrap_err();
        assert!(
            err.to_string().contains("expected one of build, push"),
            "{err}"
        );
    }
}
