//! `lint`: the bundle's inputs for an environment, or the files given.

use std::path::PathBuf;

use anyhow::{bail, Result};
use pipeline::bundle::LintRequest;

use crate::args::ReleaseTarget;
use crate::Global;

/// Lint the bundle's inputs for an environment, or the files given.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    target: ReleaseTarget,
    /// Files to lint instead (a rendered Dockerrun.aws.json or an .ebextensions .config).
    files: Vec<PathBuf>,
}

impl Cmd {
    pub fn request(&self) -> LintRequest {
        LintRequest {
            environment: self.target.env.or_local(),
            release: self.target.release(),
            files: self.files.clone(),
        }
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let req = self.request();
        // Files lint without a configuration; with one, it gives the verify path.
        let config = if req.files.is_empty() {
            Some(global.load_config()?)
        } else {
            global.load_config().ok()
        };
        let report = pipeline::bundle::lint(config.as_ref(), &req).await?;
        eprint!("{}", report.to_text());
        global.emit_json(&report)?;
        if report.errors() > 0 {
            bail!("lint found {} error(s)", report.errors());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::parse;
    use crate::Command;

    #[test]
    fn files_and_the_default_environment() {
        let Command::Lint(cmd) = parse(&["lint", "a.json", "b.config"]) else {
            panic!("not lint")
        };
        let req = cmd.request();
        assert_eq!(req.environment, "local");
        assert_eq!(req.files.len(), 2);
    }
}
