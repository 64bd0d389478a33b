//! `history`: versions newest first and each environment's deploys.

use anyhow::Result;
use pipeline::ops::{history, AwsEnvironment, Session};

use crate::args::EnvArg;
use crate::Global;

/// List application versions newest first (release, commit, bundle size, status, created,
/// where each runs) and each environment's deploys and rollbacks (what it ran before).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    /// Default: every AWS environment of deploy.toml.
    #[command(flatten)]
    env: EnvArg,
    /// How many versions to show.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let envs = AwsEnvironment::selected(&config, self.env.env.as_deref(), "history")?;
        let session = Session::open(&config).await;
        let report = history::history(&session, &config.application, &envs, self.limit).await?;
        eprint!("{}", report.render());
        global.emit_json(&report)
    }
}
