//! `build` and `push`: the image stages.

use anyhow::Result;
use pipeline::image::{self, ImageRequest};
use pipeline::release::Release;

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Build the images this repository builds, with the Docker Engine (DOCKER_HOST).
    Build(ImageArgs),
    /// Build and push them to ECR; skipped when ECR has this release of this commit.
    Push(ImageArgs),
}

#[derive(clap::Args, Debug)]
pub struct ImageArgs {
    /// Environment the images are for (checked against the configuration).
    #[arg(long, env = "DEPLOY_ENV")]
    env: Option<String>,
    /// Release name (the image tag); default: the git tag, else the short commit.
    #[arg(long, env = "DEPLOY_RELEASE")]
    release: Option<String>,
    /// Push over a release tag that exists with another revision.
    #[arg(long)]
    force: bool,
    /// Create missing ECR repositories (with tag immutability on).
    #[arg(long)]
    create_repository: bool,
    /// Check and print the plan; build and push nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let (args, push) = match self {
            Cmd::Build(a) => (a, false),
            Cmd::Push(a) => (a, true),
        };
        let config = global.load_config()?;
        if let Some(env) = &args.env {
            config.environment(env)?;
        }
        let release = Release::detect(&config.root, args.release.as_deref())?;
        let source = image::detect_source(&config.root);
        let request = ImageRequest::new(config, release)
            .with_push(push)
            .with_force(args.force)
            .with_create_repository(args.create_repository)
            .with_dry_run(args.dry_run)
            .with_source(source);
        let aws = if push {
            Some(pipeline::aws::Aws::load(&request.config.region).await)
        } else {
            None
        };
        let report = image::run(&request, aws.as_ref()).await?;
        global.emit_json(&report)?;
        Ok(())
    }
}
