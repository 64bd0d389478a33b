//! `status`: what runs where, its health, and any deploy in flight.

use anyhow::Result;
use pipeline::ops::status::{self, StatusReport};
use pipeline::ops::{AwsEnvironment, Session};

use crate::args::EnvArg;
use crate::Global;

/// Show what each environment runs (version, release, commit), its status and health, its
/// instances, the events since the last deploy, and whether a deploy is in flight.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    /// Default: every AWS environment of deploy.toml.
    #[command(flatten)]
    env: EnvArg,
    /// Refresh until interrupted, at the deploy's polite polling pace (every 4 s, slowing to
    /// 4.5 s; at most one EB read every 2 s once the first burst is spent).
    #[arg(long)]
    watch: bool,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let envs = AwsEnvironment::selected(&config, self.env.env.as_deref(), "status")?;
        let session = Session::open(&config).await;
        let state_dir = config.resolve(&config.bundle.out_dir);
        let show = |report: &StatusReport| -> Result<bool> {
            eprint!("{}", report.render());
            global.emit_json(report)?;
            Ok(self.watch)
        };
        tokio::select! {
            r = status::watch(&session, &envs, Some(&state_dir), show) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    }
}
