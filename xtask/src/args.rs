//! Options that mean the same thing in every command, declared once.

use anyhow::{Context, Result};

/// `--env`: the environment of deploy.toml.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvArg {
    /// The environment of deploy.toml (`[environments.NAME]`); where a command can run
    /// locally, `local` by default.
    #[arg(long, short, env = "DEPLOY_ENV", value_name = "NAME")]
    pub env: Option<String>,
}

impl EnvArg {
    /// The environment, `local` when none was given.
    pub fn or_local(&self) -> String {
        self.env.clone().unwrap_or_else(|| "local".into())
    }

    /// The environment, which `command` needs.
    pub fn required(&self, command: &str) -> Result<String> {
        self.env.clone().with_context(|| {
            format!("`{command}` needs an environment: pass --env NAME (or set DEPLOY_ENV)")
        })
    }
}

/// `--env` and `--release`: the release of an environment that a command renders, builds or
/// ships.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseTarget {
    #[command(flatten)]
    pub env: EnvArg,
    #[command(flatten)]
    pub release: ReleaseArg,
}

impl ReleaseTarget {
    /// The environment given, if any.
    pub fn environment(&self) -> Option<String> {
        self.env.env.clone()
    }

    /// The release given, if any (else the pipeline detects it).
    pub fn release(&self) -> Option<String> {
        self.release.release.clone()
    }
}

/// `--release`: the release name.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseArg {
    /// Release name (default: the git tag of HEAD, else its short commit; `-dirty` when changed).
    #[arg(long, env = "DEPLOY_RELEASE")]
    pub release: Option<String>,
}

/// `--dry-run`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRunArg {
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}
