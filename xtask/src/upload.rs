//! `upload` and `version`: the deploy's stages up to the upload of the bundle to S3, or up to
//! the EB application version.

use anyhow::Result;
use pipeline::deploy::{RunOptions, Selection, ShipRequest};
use pipeline::stages::Stage;

use crate::deploy::ShipArgs;
use crate::Global;

/// The stages `upload` runs.
pub const UPLOAD: &[Stage] = &[Stage::Upload];
/// The stages `version` runs.
pub const VERSION: &[Stage] = &[Stage::Upload, Stage::Version];

/// The arguments of `upload` and `version` (their help text is on `Command`'s variants).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    common: ShipArgs,
}

impl Cmd {
    pub fn request(&self, stages: &[Stage]) -> ShipRequest {
        self.common.request(RunOptions {
            selection: Selection::only(stages),
            ..RunOptions::default()
        })
    }

    /// Runs `stages` (`command` names the subcommand in messages).
    pub async fn run(self, global: &Global, command: &str, stages: &[Stage]) -> Result<()> {
        self.common
            .ship_on_aws(global, command, |_| self.request(stages))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::parse;
    use crate::Command;

    #[test]
    fn upload_runs_only_the_upload() {
        let Command::Upload(cmd) = parse(&["upload", "--env", "staging", "--bundle", "b.zip"])
        else {
            panic!("not upload")
        };
        let req = cmd.request(UPLOAD);
        assert_eq!(req.options.selection.only, vec![Stage::Upload]);
        assert!(req.options.bundle.is_some());
    }

    #[test]
    fn version_runs_upload_and_version() {
        let Command::Version(cmd) = parse(&["version", "--env", "staging", "--dry-run"]) else {
            panic!("not version")
        };
        let req = cmd.request(VERSION);
        assert_eq!(
            req.options.selection.only,
            vec![Stage::Upload, Stage::Version]
        );
        assert!(req.options.dry_run);
    }
}
