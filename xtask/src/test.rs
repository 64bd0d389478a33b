//! `cargo xtask test`: start the test services, run the whole test suite, stop them.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Run the whole test suite against real servers on loopback.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    /// Leave the test services running afterwards (stop them with tests/services/down.sh).
    #[arg(long)]
    keep_services: bool,
    /// Extra arguments for `cargo test` (after `--`), for example a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

impl Cmd {
    pub fn run(self) -> Result<()> {
        let root = workspace_root()?;
        let services = root.join("tests/services");
        let status = Command::new("bash")
            .arg(services.join("up.sh"))
            .status()
            .context("cannot run tests/services/up.sh")?;
        if !status.success() {
            bail!("the test services did not start (tests/services/up.sh failed; see its output above)");
        }
        let result = self.cargo_test(&root);
        if !self.keep_services {
            let _ = Command::new("bash").arg(services.join("down.sh")).status();
        }
        result
    }

    fn cargo_test(&self, root: &Path) -> Result<()> {
        let env_file = root.join("target/test-services/env");
        let env = std::fs::read_to_string(&env_file)
            .with_context(|| format!("cannot read {}", env_file.display()))?;
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(root)
            .args([
                "test",
                "--workspace",
                "--all-targets",
                "--locked",
                "--no-fail-fast",
            ])
            .args(&self.cargo_args);
        // Tests that run the CLI use this very binary, which `cargo run` just rebuilt.
        if let Ok(me) = std::env::current_exe() {
            cmd.env("XTASK_BIN", me);
        }
        for line in env.lines() {
            if let Some((k, v)) = line.split_once('=') {
                cmd.env(k, v);
            }
        }
        let status = cmd.status().context("cannot run cargo test")?;
        if !status.success() {
            bail!("tests failed");
        }
        Ok(())
    }
}

pub fn workspace_root() -> Result<std::path::PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}
