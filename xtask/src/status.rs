//! `status`: what runs where, its health, and any deploy in flight.

use anyhow::Result;
use pipeline::eb::Poller;
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
    /// Refresh until interrupted, at the deploy's polling pace (5 s, slowing to 15 s).
    #[arg(long)]
    watch: bool,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let envs = AwsEnvironment::selected(&config, self.env.env.as_deref(), "status")?;
        let session = Session::open(&config).await;
        let state_dir = config.resolve(&config.bundle.out_dir);
        let mut poller = Poller::new(session.eb.pacing);
        loop {
            let mut report = StatusReport {
                environments: vec![],
            };
            for env in &envs {
                report
                    .environments
                    .push(status::status(&session, env, Some(&state_dir)).await?);
            }
            eprint!("{}", report.render());
            global.emit_json(&report)?;
            if !self.watch {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(poller.next_wait()) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    }
}
