//! `upload`: the deploy's stages up to the upload of the bundle to S3.

use anyhow::Result;
use pipeline::config::Config;
use pipeline::deploy::{Selection, ShipRequest};
use pipeline::stages::Stage;

use crate::deploy::ShipArgs;
use crate::Global;

/// Upload the bundle to S3 (skipped when the same bundle is there).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    common: ShipArgs,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> ShipRequest {
        self.common.request(Selection::only(&[Stage::Upload]))
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        self.common.aws_environment(&config, "upload")?;
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
    fn upload_runs_only_the_upload() {
        let Command::Upload(cmd) = parse(&["upload", "--env", "staging", "--bundle", "b.zip"])
        else {
            panic!("not upload")
        };
        let req = cmd.request(&config());
        assert_eq!(req.selection.only, vec![Stage::Upload]);
        assert!(req.bundle.is_some());
    }
}
