//! `preview`: the pull request's view of a deploy.

use anyhow::{bail, Result};
use pipeline::config::Config;
use pipeline::preview::{Against, PreviewCommand};

use crate::args::ReleaseTarget;
use crate::Global;

/// Render and lint the bundle, diff it against the running version (or the base commit)
/// and print the markdown; with --post, keep ONE comment on the pull request up to date.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    target: ReleaseTarget,
    /// The base commit to compare with when the running version cannot be read.
    #[arg(long, value_name = "REV")]
    base: Option<String>,
    /// What to compare against.
    #[arg(long, value_enum, default_value = "auto")]
    against: AgainstArg,
    /// The pull request to comment on (needed by --post).
    #[arg(long, value_name = "NUMBER", env = "PREVIEW_PR")]
    pr: Option<u64>,
    /// Post or edit the pull request's preview comment (needs GITHUB_TOKEN and GITHUB_REPOSITORY).
    #[arg(long, env = "PREVIEW_POST")]
    post: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum AgainstArg {
    /// The running version when AWS credentials can read it, else the base commit.
    Auto,
    /// The version running on the environment.
    Running,
    /// The base commit (--base).
    Base,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> Result<PreviewCommand> {
        Ok(PreviewCommand {
            environment: self.target.env.required("preview")?,
            release: self.target.release(),
            base: self.base.clone(),
            against: match self.against {
                AgainstArg::Auto => Against::Auto,
                AgainstArg::Running => Against::Running,
                AgainstArg::Base => Against::Base,
            },
            pull_request: self.pr,
            post: self.post,
        })
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let req = self.request(&config)?;
        let outcome = pipeline::preview::preview(&config, &req).await?;
        if global.json {
            global.emit_json(&outcome)?;
        } else {
            print!("{}", outcome.markdown);
        }
        if outcome.lint_errors > 0 {
            bail!(
                "lint found {} error(s) in the bundle of {}: see the preview above",
                outcome.lint_errors,
                req.environment
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn against_the_base_commit() {
        let Command::Preview(cmd) = parse(&[
            "preview",
            "--env",
            "staging",
            "--against",
            "base",
            "--base",
            "abc",
            "--pr",
            "7",
        ]) else {
            panic!("not preview")
        };
        let req = cmd.request(&config()).unwrap();
        assert_eq!(req.against, Against::Base);
        assert_eq!(req.base.as_deref(), Some("abc"));
        assert_eq!(req.pull_request, Some(7));
    }
}
