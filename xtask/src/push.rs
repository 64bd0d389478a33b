//! `push`: build the images and push them to ECR.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::image::ImagesRequest;

use crate::args::{DryRunArg, ReleaseTarget};
use crate::Global;

/// Build and push the images to ECR; skipped when ECR has this release of this commit.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    target: ReleaseTarget,
    /// Push over a release tag that exists with another revision.
    #[arg(long)]
    force: bool,
    /// Create missing ECR repositories (with tag immutability on).
    #[arg(long)]
    create_repository: bool,
    #[command(flatten)]
    dry_run: DryRunArg,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> ImagesRequest {
        ImagesRequest {
            push: true,
            force: self.force,
            create_repository: self.create_repository,
            ..crate::build::images_request(&self.target, &self.dry_run)
        }
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        crate::build::images(global, |config| self.request(config)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn push_flags() {
        let Command::Push(cmd) = parse(&["push", "--force", "--create-repository", "--dry-run"])
        else {
            panic!("not push")
        };
        let req = cmd.request(&config());
        assert!(req.push && req.force && req.create_repository && req.dry_run);
    }
}
