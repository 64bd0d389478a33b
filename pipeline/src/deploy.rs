//! `cargo xtask deploy`: every stage in order (build, push, render, bundle, upload, version,
//! deploy, verify), a plan with `--dry-run`, a selection with `--from`/`--only`, and a summary
//! of what each stage did.
//!
//! Re-running after a failure or Ctrl-C is safe: the upload is skipped when the same bundle is
//! in S3, the version is reused, and a deploy already in flight is waited for, not restarted.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::eb::{self, DeployOutcome, DeployVerdict, Eb, Pacing};
use crate::github::actions::Actions;
use crate::ops::AwsEnvironment;
use crate::release::Release;
use crate::stages::Stage;
use crate::verify::{Verifier, VerifyTarget};

pub mod reporter;
mod ship;

pub use ship::{ship, ShipRequest, Shipped};

/// Which stages to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Run this stage and the ones after it.
    pub from: Option<Stage>,
    /// Run only these stages (over `from`).
    pub only: Vec<Stage>,
}

impl Selection {
    /// Only `stages` (`upload` is `[Upload]`, `version` is `[Upload, Version]`).
    pub fn only(stages: &[Stage]) -> Self {
        Self {
            from: None,
            only: stages.to_vec(),
        }
    }

    pub fn includes(&self, stage: Stage) -> bool {
        if !self.only.is_empty() {
            return self.only.contains(&stage);
        }
        self.from.is_none_or(|f| stage >= f)
    }

    fn why_not(&self) -> &'static str {
        if self.only.is_empty() {
            "before the --from stage"
        } else {
            "not in --only"
        }
    }
}

/// Everything one `deploy` run needs.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: Config,
    pub environment: String,
    pub release: Release,
    /// The AWS account for `${account}` when rendering (else the configuration's).
    pub account: Option<String>,
    /// AWS for pushing images to ECR (build and push stages).
    pub aws: Option<crate::aws::Aws>,
    pub pacing: Pacing,
    /// What was asked of the stages (as [`ShipRequest`] carries it).
    pub options: RunOptions,
}

/// What a deploy is asked to do with its stages: [`ShipRequest`] takes it from the command
/// line and hands it on, unchanged, to the stages' [`RunRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// A bundle zip built earlier (skips render and bundle).
    pub bundle: Option<PathBuf>,
    /// The version label to deploy when no bundle is at hand (`--only deploy`).
    pub label: Option<String>,
    pub dry_run: bool,
    pub selection: Selection,
    pub lock_wait: Option<Duration>,
    pub deadline: Option<Duration>,
    /// Override of the environment's `rollback` setting.
    pub rollback: Option<bool>,
    /// What the deploy does with the environment properties declared in `deploy.toml`
    /// (`--apply-env`, `--prune`).
    pub env: EnvChoice,
    /// `--skip-preflight`: ship without checking the account first (emergencies).
    pub skip_preflight: bool,
}

/// What a deploy does with the environment properties declared in `deploy.toml`: it always
/// shows their diff in its plan; with `apply` it sends the diff in the same
/// `UpdateEnvironment` as the new version (same lock, wait and verdict), else a non-empty
/// diff is a warning and nothing of it is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnvChoice {
    /// `--apply-env`.
    pub apply: bool,
    /// `--prune`: also remove the properties deploy.toml does not declare (as `env apply`).
    pub prune: bool,
    /// `--yes`: the confirmation `prune` needs.
    pub confirmed: bool,
}

/// The environment properties in a deploy: their diff and whether the deploy sent it.
#[derive(Debug, Clone, Serialize)]
pub struct EnvPlan {
    pub diff: crate::envprops::DiffReport,
    /// True when the diff went out in the version's `UpdateEnvironment` (`--apply-env`, not a
    /// dry run); the deploy's verdict says whether EB applied it.
    pub sent: bool,
    /// True when the deploy was asked to apply it (`--apply-env`).
    pub apply_requested: bool,
}

impl EnvPlan {
    /// The plan's lines for people: a heading, the masked table and the summary.
    pub fn render(&self, dry_run: bool) -> String {
        let d = &self.diff;
        let heading = if d.is_empty() {
            "environment properties: they match deploy.toml".to_string()
        } else if self.sent {
            format!(
                "environment properties: {} change(s) sent with the version",
                d.changes
            )
        } else if self.apply_requested && dry_run {
            format!("environment properties: {} change(s) would be applied with the version (--apply-env)", d.changes)
        } else if self.apply_requested {
            format!(
                "environment properties: {} change(s) NOT applied (the deploy did not send them)",
                d.changes
            )
        } else {
            format!("environment properties differ from deploy.toml: {} change(s) NOT applied (pass --apply-env, or run `cargo xtask env apply --env {}`)", d.changes, d.environment)
        };
        let mut out = format!("{heading}\n");
        let table = d.masked_table();
        if !table.is_empty() {
            out.push_str(&table.render());
        }
        let _ = writeln!(out, "{}", d.summary());
        for p in &d.problems {
            let _ = writeln!(out, "problem: {p}");
        }
        out
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Done,
    /// Nothing to do (already done, or not selected).
    Skipped,
    /// `--dry-run`: what would happen.
    Planned,
    /// The stage is not part of this build.
    NotAvailable,
    Failed,
    /// An earlier stage failed.
    NotRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Skipped => "skipped",
            Outcome::Planned => "planned",
            Outcome::NotAvailable => "not available",
            Outcome::Failed => "FAILED",
            Outcome::NotRun => "not run",
        }
    }

    /// How a deploy stage ends for an EB verdict.
    pub fn of_verdict(v: DeployVerdict) -> Self {
        match v {
            DeployVerdict::Succeeded => Outcome::Done,
            DeployVerdict::AlreadyDeployed => Outcome::Skipped,
            DeployVerdict::DryRun => Outcome::Planned,
            _ => Outcome::Failed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// A stage name, or `rollback`.
    pub stage: String,
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// The key output (a URL, a label, a verdict) or why it was skipped or failed.
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub environment: String,
    pub eb_environment: String,
    pub release: String,
    pub label: Option<String>,
    pub dry_run: bool,
    pub stages: Vec<StageReport>,
    pub deploy: Option<DeployOutcome>,
    pub rollback: Option<DeployOutcome>,
    /// The environment properties' diff (`None`: none declared and `--apply-env` not given,
    /// or the deploy stage did not run).
    pub env: Option<EnvPlan>,
    pub ok: bool,
    /// EB calls made (retries included).
    pub eb_calls: u64,
    /// What the preflight found (doctor's checks, before anything was uploaded); `None` when
    /// it did not run (`--skip-preflight`, or no stage that ships).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preflight: Option<crate::doctor::DoctorReport>,
}

impl RunReport {
    /// The summary table, for humans.
    pub fn table(&self) -> String {
        let mut table = crate::output::Table::new(["stage", "outcome", "duration", "output"]);
        for s in &self.stages {
            table.row([
                s.stage.clone(),
                s.outcome.as_str().to_string(),
                crate::output::human_duration(Duration::from_millis(s.duration_ms)),
                s.output.clone(),
            ]);
        }
        let mut out = table.render();
        // The plan shows the preflight whole; a refused deploy shows what to fix.
        if let Some(p) = self
            .preflight
            .as_ref()
            .filter(|p| self.dry_run || !p.deployable())
        {
            out.push_str("preflight (the checks of `cargo xtask doctor`):\n");
            out.push_str(&p.checklist());
        }
        if let Some(env) = &self.env {
            out.push_str(&env.render(self.dry_run));
        }
        let verdict = if self.dry_run {
            "plan only (--dry-run): nothing was changed"
        } else if self.ok {
            "deploy succeeded"
        } else {
            "deploy FAILED"
        };
        let _ = write!(
            out,
            "{verdict}: {} → {} ({})",
            self.release,
            self.eb_environment,
            self.label.as_deref().unwrap_or("no version")
        );
        out
    }
}

/// A bundle zip and its identity.
#[derive(Debug, Clone)]
struct BundleFile {
    path: PathBuf,
    sha256: String,
    size: u64,
    /// False in a dry run: computed, not on disk.
    written: bool,
}

impl BundleFile {
    fn from_path(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            sha256: sha256_file(path)?,
            size: std::fs::metadata(path)
                .with_context(|| format!("cannot read the bundle {}", path.display()))?
                .len(),
            written: true,
        })
    }
}

/// A duration such as "90s", "10m" or "1h 30m" (for `--lock-wait` and `--deadline`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration(text)
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open the bundle {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read the bundle {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What the stages of one run share: the request, the environment resolved once, and what
/// earlier stages produced.
struct Ctx<'a> {
    req: &'a RunRequest,
    env: AwsEnvironment,
    eb: std::sync::Arc<Eb>,
    clients: &'a eb::Clients,
    actions: Actions,
    state_dir: PathBuf,
    bundle: Option<BundleFile>,
    /// True when the bundle came from `--bundle`.
    given_bundle: bool,
    label: Option<String>,
    uploaded: Option<eb::Uploaded>,
    /// The image run of the build stage, and whether it pushed too.
    images: Option<(crate::image::ImageRun, bool)>,
    deploy: Option<DeployOutcome>,
    rollback: Option<DeployOutcome>,
    env_plan: Option<EnvPlan>,
    /// The preflight, running next to the stages before the upload.
    preflight: Option<tokio::task::JoinHandle<Result<crate::doctor::DoctorReport>>>,
    /// What it found.
    preflight_report: Option<crate::doctor::DoctorReport>,
}

impl Ctx<'_> {
    /// `http://<CNAME>` of the environment as the preflight read it (a CNAME does not change
    /// with a deploy).
    fn preflight_url(&self) -> Option<String> {
        preflight_url(self.preflight_report.as_ref())
    }

    /// `Done` becomes `Planned` in a dry run.
    fn planned(&self, done: Outcome) -> Outcome {
        if self.req.options.dry_run && done == Outcome::Done {
            Outcome::Planned
        } else {
            done
        }
    }

    fn label(&self) -> Result<String> {
        self.label
            .clone()
            .context("no version label: pass --bundle PATH or --label LABEL")
    }

    fn eb_request<'a>(&'a self, label: &'a str) -> eb::DeployRequest<'a> {
        let req = self.req;
        self.env.deploy_request(
            label,
            req.options.deadline,
            req.options.lock_wait,
            Some(&self.state_dir),
            req.options.dry_run,
        )
    }

    /// The bucket of the bundles (and of the deploy journal).
    fn bucket(&self) -> Option<String> {
        self.uploaded
            .as_ref()
            .map(|u| u.bucket.clone())
            .or_else(|| self.env.spec.bucket.clone())
    }
}

/// The bundle an earlier `bundle` (or `deploy`) wrote for this environment, when this run
/// ships without making one (`--from upload`, `--from version`, `--only deploy`) and neither
/// `--bundle` nor `--label` says what to ship. It must be of this release: a bundle of another
/// release would go out under this release's label.
fn earlier_bundle(req: &RunRequest) -> Result<Option<BundleFile>> {
    let makes_bundle = req.options.selection.includes(Stage::Bundle);
    let ships = [Stage::Upload, Stage::Version, Stage::Deploy]
        .iter()
        .any(|s| req.options.selection.includes(*s));
    if makes_bundle || !ships || req.options.label.is_some() {
        return Ok(None);
    }
    let path =
        crate::bundle::BundleRequest::new(&req.config, &req.environment, req.release.clone())
            .out_dir()
            .join("deploy.zip");
    if !path.is_file() {
        bail!(
            "no bundle at {}: run `cargo xtask bundle --env {}` first (or a deploy from an earlier stage), or pass --bundle PATH or --label LABEL",
            path.display(),
            req.environment
        );
    }
    let dockerrun = crate::bundle::zip_dockerrun(&path)?;
    if let Some(other) = dockerrun
        .as_deref()
        .and_then(|d| bundled_release(&req.config, d))
    {
        if other != req.release.name {
            bail!(
                "{} was bundled for release {other}, not {}: run the bundle stage again (`--from bundle`) or pass --release {other}",
                path.display(),
                req.release.name
            );
        }
    }
    tracing::info!("shipping the bundle written earlier: {}", path.display());
    BundleFile::from_path(&path).map(Some)
}

/// The release a bundle was made for, read from the tags of the built images in its
/// Dockerrun file (built images are tagged with the release).
fn bundled_release(config: &crate::config::Config, dockerrun: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(dockerrun).ok()?;
    let dockerrun = crate::dockerrun::Dockerrun::from_value(value).ok()?;
    let built: Vec<&str> = config
        .images
        .values()
        .filter(|i| i.build.is_some())
        .map(|i| i.repository.as_str())
        .collect();
    dockerrun.container_definitions.iter().find_map(|c| {
        let (repository, tag) = c.image.as_deref()?.rsplit_once(':')?;
        built
            .iter()
            .any(|b| repository == *b || repository.ends_with(&format!("/{b}")))
            .then(|| tag.to_string())
    })
}

/// What a stage tells the summary.
pub type StageResult = Result<(Outcome, String)>;

/// Runs the selected stages in order and reports each.
pub async fn run(
    req: &RunRequest,
    clients: &eb::Clients,
    verifier: Option<&dyn Verifier>,
) -> Result<RunReport> {
    let env = AwsEnvironment::resolve(&req.config, &req.environment, "deploy")?;
    // Before anything is built: a prune without its confirmation is refused.
    crate::envprops::apply::check_prune(&env, req.options.env.prune, req.options.env.confirmed)?;
    if (req.options.env.prune || req.options.env.confirmed) && !req.options.env.apply {
        bail!("--prune and --yes go with --apply-env: the deploy applies the environment properties only when asked");
    }
    let bundle = match &req.options.bundle {
        Some(p) => Some(BundleFile::from_path(p)?),
        None => earlier_bundle(req)?,
    };
    let label = req.options.label.clone().or_else(|| {
        bundle
            .as_ref()
            .map(|b| req.release.version_label(&b.sha256))
    });
    let mut ctx = Ctx {
        req,
        env,
        eb: std::sync::Arc::new(Eb::new(clients.eb.clone(), req.pacing)),
        clients,
        // In GitHub Actions, each stage's log is a collapsible group (a no-op elsewhere).
        actions: Actions::from_env(),
        state_dir: req.config.resolve(&req.config.bundle.out_dir),
        given_bundle: bundle.is_some(),
        bundle,
        label,
        uploaded: None,
        images: None,
        deploy: None,
        rollback: None,
        env_plan: None,
        preflight: None,
        preflight_report: None,
    };
    let mut stages = vec![];
    // Started now, so that its reads overlap the build; awaited before the first stage that
    // ships.
    let preflight = start_preflight(&mut ctx, verifier.is_some());
    if let Some(skipped) = preflight {
        stages.push(skipped);
    }
    let mut failed = false;
    // Told once, however many stages it stops.
    let mut told_no_credentials = false;
    for stage in Stage::ALL {
        // A dry run goes on past a failed stage, so that the plan shows every stage.
        if failed && !req.options.dry_run {
            stages.push(report(
                stage.name(),
                Outcome::NotRun,
                Duration::ZERO,
                "an earlier stage failed".into(),
            ));
            continue;
        }
        if !req.options.selection.includes(stage) {
            stages.push(report(
                stage.name(),
                Outcome::Skipped,
                Duration::ZERO,
                req.options.selection.why_not().into(),
            ));
            continue;
        }
        if let Some(handle) = ctx.preflight.take() {
            if matches!(stage, Stage::Upload | Stage::Version | Stage::Deploy) {
                let (row, no_credentials) = finish_preflight(&mut ctx, handle).await;
                if no_credentials && !told_no_credentials {
                    tracing::error!("{}", crate::aws::NO_CREDENTIALS);
                    told_no_credentials = true;
                }
                let refused = row.outcome == Outcome::Failed;
                stages.push(row);
                if refused {
                    failed = true;
                    if !req.options.dry_run {
                        stages.push(report(
                            stage.name(),
                            Outcome::NotRun,
                            Duration::ZERO,
                            "the preflight failed".into(),
                        ));
                        continue;
                    }
                }
            } else {
                ctx.preflight = Some(handle);
            }
        }
        let started = Instant::now();
        let group = ctx.actions.group(stage.name());
        let (outcome, output) = match run_stage(&mut ctx, stage, verifier).await {
            Ok(r) => r,
            Err(e) if crate::aws::lacks_credentials(&e) => {
                if !told_no_credentials {
                    tracing::error!("{}", crate::aws::NO_CREDENTIALS);
                    told_no_credentials = true;
                }
                (
                    Outcome::Failed,
                    "needs AWS credentials (none found; see above)".to_string(),
                )
            }
            Err(e) => (Outcome::Failed, format!("{e:#}")),
        };
        drop(group);
        let stage_failed = outcome == Outcome::Failed;
        if stage_failed {
            tracing::error!("{stage}: {output}");
            failed = true;
        } else {
            tracing::info!("{stage}: {} {output}", outcome.as_str());
        }
        stages.push(report(stage.name(), outcome, started.elapsed(), output));
        if stage_failed && !req.options.dry_run && matches!(stage, Stage::Deploy | Stage::Verify) {
            let started = Instant::now();
            if let Some(r) = roll_back(&mut ctx).await {
                stages.push(report("rollback", r.0, started.elapsed(), r.1));
            }
        }
    }
    if let Some(handle) = ctx.preflight.take() {
        // An earlier stage failed before anything shipped: its reads are of no use now.
        handle.abort();
    }
    Ok(RunReport {
        environment: req.environment.clone(),
        eb_environment: ctx.env.eb_environment.clone(),
        release: req.release.name.clone(),
        label: ctx.label.clone(),
        dry_run: req.options.dry_run,
        stages,
        deploy: ctx.deploy,
        rollback: ctx.rollback,
        env: ctx.env_plan,
        ok: !failed,
        eb_calls: ctx.eb.calls_made(),
        preflight: ctx.preflight_report,
    })
}

/// `http://<CNAME>` of the environment the preflight described.
pub fn preflight_url(report: Option<&crate::doctor::DoctorReport>) -> Option<String> {
    report
        .and_then(|p| p.described.as_ref())
        .and_then(|d| d.cname())
        .map(|c| format!("http://{c}"))
}

/// What the preflight of this run checks: the parts that matter to the selected stages, or
/// `None` when no selected stage ships anything (build, push, render, bundle, verify only).
/// ECR repositories and images: when the deploy stage runs (EB pulls them); the storage
/// location: when the upload runs; the verify checks' variables: when verify runs here. The
/// EB application and environment, platform, enhanced health and required properties: always.
pub fn preflight_scope(
    selection: &Selection,
    verifies: bool,
    applies_env: bool,
) -> Option<crate::doctor::Scope> {
    let ships = [Stage::Upload, Stage::Version, Stage::Deploy]
        .iter()
        .any(|s| selection.includes(*s));
    ships.then(|| crate::doctor::Scope {
        images: selection.includes(Stage::Deploy),
        storage: selection.includes(Stage::Upload),
        check_credentials: verifies && selection.includes(Stage::Verify),
        applies_env: applies_env && selection.includes(Stage::Deploy),
        lean: true,
    })
}

/// Starts the preflight in the background, through the deploy's own EB client and pacing;
/// `Some(row)` when it does not run although the run ships (`--skip-preflight`, no AWS
/// configuration).
fn start_preflight(ctx: &mut Ctx<'_>, verifies: bool) -> Option<StageReport> {
    let req = ctx.req;
    let scope = preflight_scope(&req.options.selection, verifies, req.options.env.apply)?;
    if req.options.skip_preflight {
        tracing::warn!(
            "--skip-preflight: the account's prerequisites were not checked; a missing one fails the upload, the version or the deploy instead (`cargo xtask doctor --env {}` checks them)",
            ctx.env.name
        );
        return Some(report(
            "preflight",
            Outcome::Skipped,
            Duration::ZERO,
            "--skip-preflight: the account was not checked".into(),
        ));
    }
    let Some(aws) = req.aws.clone() else {
        return Some(report(
            "preflight",
            Outcome::NotAvailable,
            Duration::ZERO,
            "no AWS configuration to check the account with".into(),
        ));
    };
    let session = crate::ops::Session {
        ecr: aws.ecr(),
        aws,
        eb: ctx.eb.clone(),
        s3: ctx.clients.s3.clone(),
    };
    let config = req.config.clone();
    let env = ctx.env.clone();
    ctx.preflight = Some(tokio::spawn(async move {
        let req = crate::doctor::DoctorRequest::preflight(&config, env, scope);
        crate::doctor::preflight(&session, &req).await
    }));
    None
}

/// Waits for the preflight; its row is `Failed` when a ✗ stops the deploy (the list of what
/// to fix is logged and shown under the summary). True when there are no credentials at all
/// (said once for the whole run, by the caller).
async fn finish_preflight(
    ctx: &mut Ctx<'_>,
    handle: tokio::task::JoinHandle<Result<crate::doctor::DoctorReport>>,
) -> (StageReport, bool) {
    let started = Instant::now();
    let group = ctx.actions.group("preflight");
    let found = match handle.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("the preflight stopped: {e}")),
    };
    let no_credentials = found.as_ref().is_ok_and(|p| {
        p.items.iter().any(|i| {
            i.subject == crate::doctor::Subject::Credentials
                && !i.ok
                && crate::aws::lacks_credentials(&anyhow::anyhow!("{}", i.detail))
        })
    });
    let (outcome, output) = match found {
        // Every ✗ follows from that one cause: the row says it, not the SDK's chain.
        Ok(_) if no_credentials => (
            Outcome::Failed,
            "needs AWS credentials (none found; see above)".to_string(),
        ),
        Ok(p) => {
            let out = match p.refusal() {
                Some(refusal) => {
                    tracing::error!("preflight: {refusal}");
                    let what: Vec<String> = p
                        .failures()
                        .filter(|i| !i.advisory)
                        .map(|i| format!("✗ {}", i.what))
                        .collect();
                    (
                        Outcome::Failed,
                        format!("{}; fix them or pass --skip-preflight", what.join("; ")),
                    )
                }
                None => {
                    let warned = p.failures().count();
                    let mut out = format!("{} prerequisite(s) in place", p.items.len() - warned);
                    if warned > 0 {
                        let _ = write!(out, ", {warned} advisory warning(s)");
                    }
                    tracing::info!("preflight: {out}");
                    (Outcome::Done, out)
                }
            };
            ctx.preflight_report = Some(p);
            out
        }
        Err(e) => {
            tracing::error!("preflight: {e:#}");
            (
                Outcome::Failed,
                format!("{e:#}; fix it or pass --skip-preflight"),
            )
        }
    };
    drop(group);
    (
        report("preflight", outcome, started.elapsed(), output),
        no_credentials,
    )
}

fn report(stage: &str, outcome: Outcome, took: Duration, output: String) -> StageReport {
    StageReport {
        stage: stage.to_string(),
        outcome,
        duration_ms: took.as_millis() as u64,
        output,
    }
}

/// One stage: the function that runs it.
async fn run_stage(
    ctx: &mut Ctx<'_>,
    stage: Stage,
    verifier: Option<&dyn Verifier>,
) -> StageResult {
    match stage {
        Stage::Build | Stage::Push | Stage::Render | Stage::Bundle if ctx.given_bundle => {
            Ok(given_bundle(ctx, stage))
        }
        Stage::Build | Stage::Push => images(ctx, stage).await,
        Stage::Render | Stage::Bundle => render_and_bundle(ctx, stage),
        Stage::Upload => upload(ctx).await,
        Stage::Version => version(ctx).await,
        Stage::Deploy => deploy(ctx).await,
        Stage::Verify => verify(ctx, verifier).await,
    }
}

/// Build, push, render and bundle with `--bundle`: skipped.
fn given_bundle(ctx: &Ctx<'_>, stage: Stage) -> (Outcome, String) {
    (
        Outcome::Skipped,
        format!(
            "--bundle {} given{}",
            ctx.bundle
                .as_ref()
                .map_or(String::new(), |b| b.path.display().to_string()),
            if matches!(stage, Stage::Build | Stage::Push) {
                ": its images are expected in the registry already"
            } else {
                ""
            }
        ),
    )
}

/// Build and push run as one pass (push builds what it pushes).
async fn images(ctx: &mut Ctx<'_>, stage: Stage) -> StageResult {
    let req = ctx.req;
    if let (Stage::Push, Some((run, true))) = (stage, &ctx.images) {
        return Ok((ctx.planned(Outcome::Done), image_summary(run, true)));
    }
    let push = stage == Stage::Push || req.options.selection.includes(Stage::Push);
    let request = crate::image::ImageRequest::new(req.config.clone(), req.release.clone())
        .with_push(push)
        .with_dry_run(req.options.dry_run);
    let run = crate::image::run(&request, req.aws.as_ref()).await?;
    let summary = image_summary(&run, push && stage == Stage::Push);
    ctx.images = Some((run, push));
    Ok((ctx.planned(Outcome::Done), summary))
}

/// Render and lint always run without writing; the bundle stage writes the zip. The zip is
/// reproducible, so both compute the same sha256 and label.
fn render_and_bundle(ctx: &mut Ctx<'_>, stage: Stage) -> StageResult {
    let req = ctx.req;
    let write = stage == Stage::Bundle && !req.options.dry_run;
    let b = crate::bundle::make_bundle(
        &crate::bundle::BundleRequest::new(&req.config, &req.environment, req.release.clone())
            .with_account(req.account.clone())
            .with_dry_run(!write),
    )
    .inspect_err(|e| {
        if let Some(crate::bundle::LintFailed(lint)) = e.downcast_ref() {
            ctx.actions.annotate_lint(lint, &req.config.root);
        }
    })?;
    if stage == Stage::Bundle {
        ctx.actions.annotate_lint(&b.lint, &req.config.root);
    }
    let warnings = b.lint.warnings();
    let stand_in = if req.account.as_deref() == Some(crate::aws::PLAN_ACCOUNT) {
        format!(
            "; the AWS account is unknown, so image references use {} in this plan",
            crate::aws::PLAN_ACCOUNT
        )
    } else {
        String::new()
    };
    ctx.label = Some(
        req.options
            .label
            .clone()
            .unwrap_or_else(|| b.version_label.clone()),
    );
    ctx.bundle = Some(BundleFile {
        path: b.path.clone(),
        sha256: b.sha256.clone(),
        size: b.size,
        written: b.written,
    });
    Ok(match stage {
        Stage::Render => (
            Outcome::Done,
            format!(
                "{} rendered and linted ({warnings} warning(s)){stand_in}",
                crate::bundle::DOCKERRUN
            ),
        ),
        _ if write => (
            Outcome::Done,
            format!(
                "{} ({} bytes, {})",
                b.path.display(),
                b.size,
                b.version_label
            ),
        ),
        _ => (
            Outcome::Planned,
            format!(
                "would write {} ({} bytes, {}){stand_in}",
                b.path.display(),
                b.size,
                b.version_label
            ),
        ),
    })
}

/// The bundle to S3 (skipped when the same bundle is there).
async fn upload(ctx: &mut Ctx<'_>) -> StageResult {
    let req = ctx.req;
    let Some(bundle) = ctx.bundle.clone() else {
        bail!("no bundle to upload: the bundle stage did not produce one; pass --bundle PATH");
    };
    let label = ctx.label.clone().context("no version label")?;
    let up = eb::upload(
        &ctx.clients.s3,
        &ctx.eb,
        &eb::UploadRequest {
            bucket: ctx.env.spec.bucket.as_deref(),
            application: &ctx.env.application,
            label: &label,
            path: &bundle.path,
            sha256: &bundle.sha256,
            size: bundle.size,
            dry_run: req.options.dry_run || !bundle.written,
        },
    )
    .await?;
    let out = if up.skipped {
        (
            Outcome::Skipped,
            format!("{} already holds this bundle", up.url()),
        )
    } else if req.options.dry_run {
        (
            Outcome::Planned,
            format!("would upload {} bytes to {}", up.size, up.url()),
        )
    } else {
        (Outcome::Done, up.url())
    };
    ctx.uploaded = Some(up);
    Ok(out)
}

/// The EB application version (reused when it exists for this bundle).
async fn version(ctx: &mut Ctx<'_>) -> StageResult {
    let req = ctx.req;
    let label = ctx.label()?;
    let application = &ctx.env.application;
    let (bucket, key) = match &ctx.uploaded {
        Some(u) => (u.bucket.clone(), u.key.clone()),
        None => {
            let key = eb::upload::bundle_key(application, &label);
            match &ctx.env.spec.bucket {
                Some(b) => (b.clone(), key),
                None => match eb::version::describe(&ctx.eb, application, &label).await? {
                    Some(v) => (
                        v.source_bundle().and_then(|s| s.s3_bucket()).unwrap_or_default().to_string(),
                        v.source_bundle().and_then(|s| s.s3_key()).unwrap_or(&key).to_string(),
                    ),
                    None => bail!("the version {label} does not exist and the upload stage did not run: run it (drop --only/--from) or set `bucket`"),
                },
            }
        }
    };
    let run_url = crate::github::actions::run_url();
    let description = crate::ops::versions::description(&req.release, run_url.as_deref());
    let v = eb::ensure_version(
        &ctx.eb,
        &eb::VersionRequest {
            application,
            label: &label,
            bucket: &bucket,
            key: &key,
            description: Some(&description),
            timeout: ctx.env.spec.timeouts.version,
            dry_run: req.options.dry_run,
        },
    )
    .await?;
    Ok(if v.created {
        (Outcome::Done, format!("{label} created ({})", v.status))
    } else if req.options.dry_run && v.status.starts_with("NOT") {
        (
            Outcome::Planned,
            format!("would create {label} from s3://{bucket}/{key}"),
        )
    } else {
        (
            Outcome::Skipped,
            format!("{label} exists for this bundle ({}); reused", v.status),
        )
    })
}

/// The version onto the environment, waited for until EB's verdict; with `--apply-env`, the
/// environment properties' diff goes in the same `UpdateEnvironment`.
async fn deploy(ctx: &mut Ctx<'_>) -> StageResult {
    let label = ctx.label()?;
    let choice = ctx.req.options.env;
    if choice.apply && !ctx.req.options.dry_run {
        // The same lock as the deploy: compare only once the environment is ours, so that the
        // diff sent is the diff against what runs.
        if let Err(locked) = eb::wait_until_ready(&ctx.eb, &ctx.eb_request(&label)).await? {
            let msg = locked.message.clone();
            ctx.deploy = Some(locked);
            return Ok((Outcome::Failed, msg));
        }
    }
    let plan = env_plan(ctx).await?;
    let update = match &plan {
        Some(d) if choice.apply && !d.is_empty() => {
            if !d.problems.is_empty() {
                let problems = d.problems.join("; ");
                ctx.env_plan = plan.map(|diff| EnvPlan {
                    diff,
                    sent: false,
                    apply_requested: true,
                });
                bail!(
                    "not deploying with the environment properties of {}: {problems}",
                    ctx.env.name
                );
            }
            Some(d.update.clone())
        }
        Some(d) if !d.is_empty() => {
            tracing::warn!(
                "the environment properties of {} differ from deploy.toml ({} change(s)): not applied; pass --apply-env to apply them with the version",
                ctx.env.eb_environment,
                d.changes
            );
            None
        }
        _ => None,
    };
    let mut request = ctx.eb_request(&label);
    request.options = update.as_ref();
    let o = eb::deploy(&ctx.eb, &request).await?;
    let outcome = Outcome::of_verdict(o.verdict);
    record(ctx, "deploy", &o).await;
    if o.verdict == DeployVerdict::Failed {
        crate::ops::logs::show_failure_logs(&ctx.eb, &ctx.env.eb_environment, &ctx.actions).await;
    }
    let mut msg = o.message.clone();
    if o.resumed {
        msg.push_str(" (waited for the deploy an earlier run started)");
    }
    // Sent unless the deploy only waited for one already in flight, or did not start.
    let sent = update.is_some()
        && !o.resumed
        && !matches!(o.verdict, DeployVerdict::Locked | DeployVerdict::DryRun);
    if let Some(d) = &update {
        let _ = if sent {
            write!(
                msg,
                "; with {} environment property change(s)",
                d.set.len() + d.remove.len()
            )
        } else {
            write!(
                msg,
                "; environment properties: {} setting(s) to send with the version",
                d.set.len() + d.remove.len()
            )
        };
    }
    ctx.env_plan = plan.map(|diff| EnvPlan {
        diff,
        sent,
        apply_requested: choice.apply,
    });
    ctx.deploy = Some(o);
    Ok((ctx.planned(outcome), msg))
}

/// The diff of the environment properties, for the plan (and for `--apply-env`). `None` when
/// deploy.toml declares none and `--apply-env` was not given: nothing is read then. Without
/// `--apply-env`, a diff that cannot be made is a warning, not a failed deploy.
async fn env_plan(ctx: &Ctx<'_>) -> Result<Option<crate::envprops::DiffReport>> {
    let req = ctx.req;
    let declared = crate::envprops::Declared::of(&req.config, &ctx.env.name)?;
    if declared.is_empty() && !req.options.env.apply {
        return Ok(None);
    }
    let made = match &req.aws {
        Some(aws) => {
            crate::envprops::apply::plan_with(
                &req.config,
                &ctx.eb,
                aws,
                &ctx.env,
                req.options.env.prune,
            )
            .await
        }
        None => Err(anyhow::anyhow!(
            "no AWS configuration to read Secrets Manager and SSM with"
        )),
    };
    match made {
        Ok(d) => Ok(Some(d)),
        Err(e) if req.options.env.apply => Err(e.context(format!(
            "cannot compare the environment properties of {}",
            ctx.env.name
        ))),
        Err(e) => {
            tracing::warn!(
                "cannot compare the environment properties of {} with deploy.toml: {e:#}",
                ctx.env.name
            );
            Ok(None)
        }
    }
}

/// The environment's checks against its URL (the configured one, else EB's CNAME).
async fn verify(ctx: &mut Ctx<'_>, verifier: Option<&dyn Verifier>) -> StageResult {
    let Some(v) = verifier else {
        return Ok((
            Outcome::NotAvailable,
            "the verify stage is not part of this build of the pipeline".into(),
        ));
    };
    if ctx.req.options.dry_run {
        return Ok((
            Outcome::Planned,
            "would run the environment's checks".into(),
        ));
    }
    let label = ctx.label.clone().unwrap_or_default();
    check_environment(&ctx.eb, &ctx.env, &label, v, ctx.preflight_url().as_deref()).await
}

/// The environment's checks against its URL (the configured one, else EB's CNAME: `known`
/// when the caller read it already); `deploy` and `rollback` verify the same way.
pub async fn check_environment(
    eb: &Eb,
    env: &AwsEnvironment,
    label: &str,
    v: &dyn Verifier,
    known: Option<&str>,
) -> StageResult {
    let url = match (&env.spec.url, known) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(k)) => Some(k.to_string()),
        (None, None) => {
            eb::deploy::environment_url(eb, &env.application, &env.eb_environment).await?
        }
    };
    let target = VerifyTarget {
        environment: env.name.clone(),
        label: label.to_string(),
        url,
    };
    let summary = v.verify(&target).await?;
    Ok((Outcome::Done, summary))
}

/// Adds a deploy's or rollback's verdict to the environment's deploy journal.
async fn record(ctx: &Ctx<'_>, kind: &str, o: &DeployOutcome) {
    let bucket = match ctx.bucket() {
        Some(b) => Some(b),
        None => eb::version::describe(&ctx.eb, &ctx.env.application, &o.label)
            .await
            .ok()
            .flatten()
            .and_then(|v| {
                v.source_bundle()
                    .and_then(|b| b.s3_bucket())
                    .map(str::to_string)
            }),
    };
    match bucket {
        Some(b) => {
            crate::ops::journal::record(&ctx.clients.s3, &b, &ctx.env.application, kind, o).await
        }
        None => tracing::warn!("no bundle bucket known: the deploy journal was not written"),
    }
}

/// One line about the images of a run: each image's reference and outcome.
fn image_summary(run: &crate::image::ImageRun, pushed: bool) -> String {
    let parts: Vec<String> = run
        .images
        .iter()
        .map(|i| {
            let outcome = serde_json::to_value(i.outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{} {outcome}", i.reference)
        })
        .collect();
    let mut out = parts.join("; ");
    if pushed {
        if let Some(r) = &run.registry {
            out = format!("{out} (registry {r})");
        }
    }
    out
}

/// Rolls back after a failed deploy or verify, when enabled. `None` when not applicable.
async fn roll_back(ctx: &mut Ctx<'_>) -> Option<(Outcome, String)> {
    let req = ctx.req;
    let deployed = ctx.deploy.clone()?;
    if req.options.dry_run
        || matches!(
            deployed.verdict,
            DeployVerdict::Locked | DeployVerdict::DryRun
        )
    {
        return None;
    }
    if !req.options.rollback.unwrap_or(ctx.env.spec.rollback) {
        return Some((
            Outcome::Skipped,
            "rollback is off (rollback = false or --no-rollback)".into(),
        ));
    }
    if deployed.verdict == DeployVerdict::TimedOut {
        return Some((
            Outcome::Skipped,
            "no rollback while the deploy may still run: re-run to wait for it".into(),
        ));
    }
    let label = ctx.label.clone().unwrap_or_default();
    let result = eb::rollback(&ctx.eb, &ctx.eb_request(&label), deployed.previous.as_ref()).await;
    match result {
        Ok(o) => {
            record(ctx, "rollback", &o).await;
            let outcome = match o.verdict {
                DeployVerdict::Succeeded | DeployVerdict::AlreadyDeployed => Outcome::Done,
                DeployVerdict::Skipped => Outcome::Skipped,
                _ => Outcome::Failed,
            };
            let msg = if outcome == Outcome::Done {
                format!("rolled back to {}: {}", o.label, o.message)
            } else {
                o.message.clone()
            };
            if outcome == Outcome::Failed {
                tracing::error!("rollback: {msg}");
            } else {
                tracing::warn!("rollback: {msg}");
            }
            ctx.rollback = Some(o);
            Some((outcome, msg))
        }
        Err(e) => Some((Outcome::Failed, format!("rollback failed: {e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_from_and_only() {
        let all = Selection::default();
        assert!(Stage::ALL.iter().all(|s| all.includes(*s)));
        let from = Selection {
            from: Some(Stage::Upload),
            only: vec![],
        };
        assert!(!from.includes(Stage::Bundle));
        assert!(from.includes(Stage::Upload) && from.includes(Stage::Verify));
        let only = Selection {
            from: Some(Stage::Build),
            only: vec![Stage::Deploy],
        };
        assert!(only.includes(Stage::Deploy));
        assert!(!only.includes(Stage::Version));
    }

    #[test]
    fn the_preflight_checks_what_the_selected_stages_need() {
        let all = preflight_scope(&Selection::default(), true, false).unwrap();
        assert!(all.images && all.storage && all.check_credentials && all.lean);
        assert!(!all.applies_env);
        assert!(
            preflight_scope(&Selection::default(), true, true)
                .unwrap()
                .applies_env
        );
        // Nothing that ships: no preflight.
        for only in [
            vec![Stage::Build, Stage::Push, Stage::Render, Stage::Bundle],
            vec![Stage::Verify],
        ] {
            assert_eq!(preflight_scope(&Selection::only(&only), true, false), None);
        }
        let from_deploy = Selection {
            from: Some(Stage::Deploy),
            only: vec![],
        };
        let s = preflight_scope(&from_deploy, true, false).unwrap();
        assert!(s.images && !s.storage && s.check_credentials);
        let upload = preflight_scope(&Selection::only(&[Stage::Upload]), true, true).unwrap();
        assert!(upload.storage && !upload.images && !upload.check_credentials);
        assert!(!upload.applies_env, "no deploy stage: nothing is applied");
        // No verifier in this build: the checks' variables do not matter.
        let s = preflight_scope(&Selection::default(), false, false).unwrap();
        assert!(!s.check_credentials);
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.zip");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let err = sha256_file(&dir.path().join("none.zip"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot open the bundle"), "{err}");
    }
}
