//! `render`: Dockerrun.template.json into Dockerrun.aws.json for an environment.

use std::path::PathBuf;

use anyhow::Result;
use pipeline::bundle::RenderRequest;
use pipeline::config::Config;

use crate::args::ReleaseTarget;
use crate::Global;

/// Render Dockerrun.template.json into Dockerrun.aws.json for an environment.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    target: ReleaseTarget,
    /// Write here instead of `<bundle.out_dir>/<env>/Dockerrun.aws.json`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the rendered file on stdout instead of writing it.
    #[arg(long, conflicts_with = "out")]
    stdout: bool,
    /// Render and show where it would go; write nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> RenderRequest {
        RenderRequest {
            environment: self.target.env.or_local(),
            release: self.target.release(),
            out: self.out.clone(),
            dry_run: self.dry_run || self.stdout,
        }
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let rendered = pipeline::bundle::render(&config, &self.request(&config)).await?;
        if self.stdout {
            print!("{}", rendered.json);
            return Ok(());
        }
        global.emit_json(&rendered)
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn stdout_writes_nothing() {
        let Command::Render(cmd) = parse(&["render", "--env", "staging", "--stdout"]) else {
            panic!("not render")
        };
        let req = cmd.request(&config());
        assert_eq!(req.environment, "staging");
        assert!(req.dry_run);
    }
}
