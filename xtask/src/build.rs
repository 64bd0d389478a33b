//! `build`: the images this repository builds, with the Docker Engine.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::image::ImagesRequest;

use crate::args::{DryRunArg, EnvArg, ReleaseArg};
use crate::Global;

/// Build the images this repository builds, with the Docker Engine (DOCKER_HOST).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    env: EnvArg,
    #[command(flatten)]
    release: ReleaseArg,
    #[command(flatten)]
    dry_run: DryRunArg,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> ImagesRequest {
        ImagesRequest {
            environment: self.env.env.clone(),
            release: self.release.release.clone(),
            dry_run: self.dry_run.dry_run,
            ..ImagesRequest::default()
        }
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        images(global, |config| self.request(config)).await
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
