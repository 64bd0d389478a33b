//! `build`: the images this repository builds, with the Docker Engine.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::image::ImagesRequest;

use crate::args::{DryRunArg, ReleaseTarget};
use crate::Global;

/// Build the images this repository builds, with the Docker Engine (DOCKER_HOST).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    target: ReleaseTarget,
    #[command(flatten)]
    dry_run: DryRunArg,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> ImagesRequest {
        images_request(&self.target, &self.dry_run)
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        images(global, |config| self.request(config)).await
    }
}

/// What `build` and `push` ask of every image: the release of the environment, maybe a dry run.
pub fn images_request(target: &ReleaseTarget, dry_run: &DryRunArg) -> ImagesRequest {
    ImagesRequest {
        environment: target.environment(),
        release: target.release(),
        dry_run: dry_run.dry_run,
        ..ImagesRequest::default()
    }
}

/// Builds (and, when the request says so, pushes) the images: what `build` and `push` do.
pub async fn images(global: &Global, request: impl FnOnce(&Config) -> ImagesRequest) -> Result<()> {
    let config = global.load_config()?;
    let req = request(&config);
    let report = pipeline::image::build_or_push(config, &req).await?;
    global.emit_json(&report)
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn build_does_not_push() {
        let Command::Build(cmd) = parse(&["build", "--release", "v1"]) else {
            panic!("not build")
        };
        let req = cmd.request(&config());
        assert!(!req.push && !req.force && !req.create_repository);
        assert_eq!(req.release.as_deref(), Some("v1"));
    }
}
