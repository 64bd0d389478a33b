//! `version`: the deploy's stages up to the EB application version.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::deploy::{Selection, ShipRequest};
use pipeline::stages::Stage;

use crate::deploy::ShipArgs;
use crate::Global;

/// Upload the bundle and create the EB application version (reused when it exists).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    common: ShipArgs,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> ShipRequest {
        self.common
            .request(Selection::only(&[Stage::Upload, Stage::Version]))
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        self.common.aws_environment(&config, "version")?;
        let req = self.request(&config);
        crate::deploy::ship(global, config, &req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn version_runs_upload_and_version() {
        let Command::Version(cmd) = parse(&["version", "--env", "staging", "--dry-run"]) else {
            panic!("not version")
        };
        let req = cmd.request(&config());
        assert_eq!(req.selection.only, vec![Stage::Upload, Stage::Version]);
        assert!(req.dry_run);
    }
}
