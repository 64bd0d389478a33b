//! `bundle`: render, lint and zip the source bundle (deploy.zip) reproducibly.

use std::path::PathBuf;

use anyhow::Result;
use pipeline::bundle::BundleCommand;
use pipeline::config::Config;

use crate::args::{DryRunArg, ReleaseTarget};
use crate::Global;

/// Render, lint and zip the source bundle (deploy.zip) reproducibly.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    target: ReleaseTarget,
    /// Directory for deploy.zip (default `<bundle.out_dir>/<env>`).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    dry_run: DryRunArg,
}

impl Cmd {
    pub fn request(&self, _config: &Config) -> BundleCommand {
        BundleCommand {
            environment: self.target.env.or_local(),
            release: self.target.release(),
            out_dir: self.out_dir.clone(),
            dry_run: self.dry_run.dry_run,
        }
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let req = self.request(&config);
        // Ctrl-C or SIGTERM while the pair is written: remove the temporary files and exit,
        // leaving the folder with the pair it had.
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let b = tokio::select! {
            b = pipeline::bundle::bundle(&config, &req) => b?,
            code = async {
                tokio::select! {
                    _ = int.recv() => 130,
                    _ = term.recv() => 143,
                }
            } => {
                let _held = pipeline::bundle::discard_temp_files();
                eprintln!("error: interrupted: the bundle's temporary files were removed; the output folder keeps what it had");
                std::process::exit(code);
            }
        };
        if !b.lint.findings.is_empty() {
            eprint!("{}", b.lint.to_text());
        }
        for f in &b.files {
            tracing::info!("  {f}");
        }
        let verb = if b.written {
            "wrote"
        } else {
            "dry run: would write"
        };
        tracing::info!(
            "{verb} {} ({} bytes, sha256 {}), version label {}",
            b.path.display(),
            b.size,
            b.sha256,
            b.version_label
        );
        global.emit_json(&b)
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn out_dir_and_dry_run() {
        let Command::Bundle(cmd) =
            parse(&["bundle", "-e", "staging", "--out-dir", "o", "--dry-run"])
        else {
            panic!("not bundle")
        };
        let req = cmd.request(&config());
        assert_eq!(req.environment, "staging");
        assert_eq!(req.out_dir.as_deref(), Some(std::path::Path::new("o")));
        assert!(req.dry_run);
    }
}
