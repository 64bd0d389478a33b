//! `deploy`, `upload` and `version`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use pipeline::deploy::{RunRequest, Selection};
use pipeline::eb::{Clients, Pacing};
use pipeline::release::Release;
use pipeline::stages::Stage;

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Ship a release to an Elastic Beanstalk environment: build, push, render, bundle, upload,
    /// version, deploy, verify; roll back when the deploy or verify fails.
    Deploy(DeployArgs),
    /// Upload the bundle to S3 (skipped when the same bundle is there).
    Upload(StageArgs),
    /// Upload the bundle and create the EB application version (reused when it exists).
    Version(StageArgs),
}

#[derive(clap::Args, Debug)]
pub struct StageArgs {
    /// Environment name in deploy.toml.
    #[arg(long, short, env = "DEPLOY_ENV", default_value = "local")]
    env: String,
    /// Release name (default: the git tag, else the short commit).
    #[arg(long, env = "DEPLOY_RELEASE")]
    release: Option<String>,
    /// The bundle zip to ship.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Show what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    common: StageArgs,
    /// Deploy this existing version label (with `--only deploy`).
    #[arg(long)]
    label: Option<String>,
    /// Start at this stage (build, push, render, bundle, upload, version, deploy, verify).
    #[arg(long, value_parser = parse_stage)]
    from: Option<Stage>,
    /// Run only these stages (comma-separated).
    #[arg(long, value_parser = parse_stage, value_delimiter = ',')]
    only: Vec<Stage>,
    /// How long to wait for another deploy in progress (default: the environment's timeouts.lock_wait).
    #[arg(long, value_parser = parse_duration)]
    lock_wait: Option<Duration>,
    /// How long to wait for the deploy's verdict (default: the environment's timeouts.deploy).
    #[arg(long, value_parser = parse_duration)]
    deadline: Option<Duration>,
    /// Do not redeploy the previous version when the deploy or verify fails.
    #[arg(long)]
    no_rollback: bool,
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    Stage::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        format!("unknown stage {s:?}: expected one of {}", names.join(", "))
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    pipeline::deploy::parse_duration(s)
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let (args, opts) = match self {
            Cmd::Deploy(d) => {
                let DeployArgs {
                    common,
                    label,
                    from,
                    only,
                    lock_wait,
                    deadline,
                    no_rollback,
                } = d;
                let opts = Opts {
                    label,
                    selection: Selection { from, only },
                    lock_wait,
                    deadline,
                    rollback: no_rollback.then_some(false),
                };
                (common, opts)
            }
            Cmd::Upload(a) => (a, Opts::only(vec![Stage::Upload])),
            Cmd::Version(a) => (a, Opts::only(vec![Stage::Upload, Stage::Version])),
        };
        let config = global.load_config()?;
        if config.environment(&args.env)?.target == pipeline::config::Target::Local {
            // The local target runs the same stages on the local Docker Engine.
            let options = pipeline::local::LocalOptions {
                release: args.release.clone(),
                dry_run: args.dry_run,
                ..Default::default()
            };
            return crate::local::up(global, &config, &args.env, &options).await;
        }
        let release = Release::detect(&config.root, args.release.as_deref())?;
        let aws = pipeline::aws::Aws::load(&config.region).await;
        let renders = args.bundle.is_none()
            && [Stage::Render, Stage::Bundle]
                .iter()
                .any(|s| opts.selection.includes(*s));
        // `${account}` in the template: the configured account, else STS (only when rendering).
        let account = if renders {
            match aws.account(config.account.as_deref()).await {
                Ok(a) => Some(a),
                // A dry run still shows the plan; rendering then says what is missing.
                Err(e) if args.dry_run => {
                    tracing::warn!("{e:#}");
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let request = RunRequest {
            environment: args.env,
            account,
            aws: Some(aws.clone()),
            release,
            bundle: args.bundle,
            label: opts.label,
            dry_run: args.dry_run,
            selection: opts.selection,
            lock_wait: opts.lock_wait,
            deadline: opts.deadline,
            rollback: opts.rollback,
            pacing: Pacing::default(),
            config,
        };
        let clients = Clients::from_aws(&aws);
        let checks = pipeline::deploy::EnvironmentChecks {
            config: &request.config,
            environment: &request.environment,
        };
        // GitHub: a deployment with statuses, groups, annotations and outputs (no-op locally).
        let github = pipeline::github::report::DeployReporter::start(
            &request.release.name,
            &request.environment,
        )
        .await;
        let report = tokio::select! {
            r = pipeline::deploy::run(&request, &clients, Some(&checks)) => r?,
            _ = tokio::signal::ctrl_c() => bail!(
                "interrupted: whatever Elastic Beanstalk was doing goes on; re-run the same command: \
                 the upload and the version are reused and a deploy in flight is waited for, not restarted"
            ),
        };
        eprintln!("{}", report.table());
        let url = request
            .config
            .environment(&request.environment)?
            .url
            .clone();
        github.finish(&report, url.as_deref()).await?;
        global.emit_json(&report)?;
        if !report.ok {
            bail!(
                "the deploy of {} to {} failed: see the summary above",
                report.release,
                report.eb_environment
            );
        }
        Ok(())
    }
}

/// The options only `deploy` has.
#[derive(Default)]
struct Opts {
    label: Option<String>,
    selection: Selection,
    lock_wait: Option<Duration>,
    deadline: Option<Duration>,
    rollback: Option<bool>,
}

impl Opts {
    fn only(stages: Vec<Stage>) -> Self {
        Self {
            selection: Selection {
                from: None,
                only: stages,
            },
            ..Self::default()
        }
    }
}
