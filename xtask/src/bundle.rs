//! `render`, `lint`, `bundle` (and `test`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pipeline::bundle::{self, BundleRequest};
use pipeline::lint::Report;
use pipeline::release::Release;
use pipeline::template::{self, RenderContext};

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Render Dockerrun.template.json into Dockerrun.aws.json for an environment.
    Render(RenderArgs),
    /// Lint the bundle's inputs for an environment, or the files given.
    Lint(LintArgs),
    /// Render, lint and zip the source bundle (deploy.zip) reproducibly.
    Bundle(BundleArgs),
    /// Run the whole test suite with its test services (the README's test command).
    Test(crate::test::TestCmd),
}

/// The environment and release a command works on.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The environment of the configuration (`[environments.NAME]`).
    #[arg(long, env = "DEPLOY_ENV", default_value = "local")]
    pub env: String,
    /// Release name (default: the git tag of HEAD, else its short commit; `-dirty` when changed).
    #[arg(long, env = "DEPLOY_RELEASE")]
    pub release: Option<String>,
}

impl Target {
    /// The release, and the placeholder values of this environment.
    async fn render_context(
        &self,
        global: &Global,
        config: &pipeline::config::Config,
    ) -> Result<(Release, RenderContext)> {
        let env = config.environment(&self.env)?;
        let release = self.release(global)?;
        let account = bundle::account_for(config, env).await;
        let ctx =
            RenderContext::for_environment(config, &self.env, env, &release, account.as_deref());
        Ok((release, ctx))
    }

    pub fn release(&self, global: &Global) -> Result<Release> {
        let config_dir = global
            .config
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        Release::detect(config_dir, self.release.as_deref())
    }
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    target: Target,
    /// Write here instead of `<bundle.out_dir>/<env>/Dockerrun.aws.json`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the rendered file on stdout instead of writing it.
    #[arg(long)]
    stdout: bool,
    /// Render and show where it would go; write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct LintArgs {
    #[command(flatten)]
    target: Target,
    /// Files to lint instead (a rendered Dockerrun.aws.json or an .ebextensions .config).
    files: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct BundleArgs {
    #[command(flatten)]
    target: Target,
    /// Directory for deploy.zip (default `<bundle.out_dir>/<env>`).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Show what would be bundled; write nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::Render(a) => render(a, global).await,
            Cmd::Lint(a) => lint(a, global).await,
            Cmd::Bundle(a) => make_bundle(a, global).await,
            Cmd::Test(t) => t.run(),
        }
    }
}

async fn render(args: RenderArgs, global: &Global) -> Result<()> {
    let config = global.load_config()?;
    let (release, ctx) = args.target.render_context(global, &config).await?;
    let rendered = template::render_file(&config, &ctx)?;
    let out = args.out.unwrap_or_else(|| {
        config
            .resolve(&config.bundle.out_dir)
            .join(&args.target.env)
            .join(bundle::DOCKERRUN)
    });
    if args.stdout {
        print!("{}", rendered.json);
        return Ok(());
    }
    if args.dry_run {
        tracing::info!(
            "dry run: would write {} ({} bytes)",
            out.display(),
            rendered.json.len()
        );
    } else {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&out, &rendered.json)
            .with_context(|| format!("cannot write {}", out.display()))?;
        tracing::info!(
            "rendered {} for {} (release {})",
            out.display(),
            args.target.env,
            release.name
        );
    }
    global.emit_json(&serde_json::json!({
        "path": out,
        "written": !args.dry_run,
        "environment": args.target.env,
        "release": release.name,
    }))
}

async fn lint(args: LintArgs, global: &Global) -> Result<()> {
    let mut report = Report::default();
    if args.files.is_empty() {
        let config = global.load_config()?;
        let env = config.environment(&args.target.env)?;
        let (_, ctx) = args.target.render_context(global, &config).await?;
        let inputs = bundle::collect_inputs(&config)?;
        report = bundle::lint_inputs(&config, env, &ctx, &inputs)?.1;
    } else {
        // The verify path comes from the configuration when there is one.
        let verify_path = global.load_config().ok().and_then(|c| {
            c.environment(&args.target.env)
                .ok()
                .and_then(bundle::verify_path)
        });
        for file in &args.files {
            let findings = pipeline::lint::lint_file(file, verify_path.as_deref())
                .with_context(|| format!("cannot read {}", file.display()))?;
            report.extend(findings);
        }
        report.sort();
    }
    eprint!("{}", report.to_text());
    global.emit_json(&report)?;
    if report.errors() > 0 {
        bail!("lint found {} error(s)", report.errors());
    }
    Ok(())
}

async fn make_bundle(args: BundleArgs, global: &Global) -> Result<()> {
    let config = global.load_config()?;
    let env = config.environment(&args.target.env)?;
    let release = args.target.release(global)?;
    let account = bundle::account_for(&config, env).await;
    let req = BundleRequest::new(&config, &args.target.env, release)
        .with_account(account)
        .with_out_dir(args.out_dir)
        .with_dry_run(args.dry_run);
    let b = bundle::make_bundle(&req)?;
    if !b.lint.findings.is_empty() {
        eprint!("{}", b.lint.to_text());
    }
    for f in &b.files {
        tracing::info!("  {f}");
    }
    let verb = if b.written {
        "wrote"
    } else {
        "dry run: would write"
    };
    tracing::info!(
        "{verb} {} ({} bytes, sha256 {}), version label {}",
        b.path.display(),
        b.size,
        b.sha256,
        b.version_label
    );
    global.emit_json(&b)
}
