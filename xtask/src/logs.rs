//! `logs`: EB's tail logs or full log bundle, per instance and file, secrets masked.

use std::time::Duration;

use anyhow::Result;
use pipeline::ops::logs::{self, LogKind, LogsRequest};
use pipeline::ops::{AwsEnvironment, Session};

use crate::args::EnvArg;
use crate::Global;

/// Fetch the environment's logs from every instance (EB's tail logs: the last 100 lines of
/// each file; `--all`: every log file), split per instance and file, with secrets masked.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    env: EnvArg,
    /// The full log bundle instead of the tail.
    #[arg(long)]
    all: bool,
    /// How long the instances may take to upload their logs.
    #[arg(long, default_value = "2m", value_parser = pipeline::deploy::parse_duration)]
    timeout: Duration,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = AwsEnvironment::resolve(&config, &self.env.required("logs")?, "logs")?;
        let session = Session::open(&config).await;
        let report = logs::fetch(
            &session.eb,
            &LogsRequest {
                environment: &env.eb_environment,
                kind: if self.all {
                    LogKind::Bundle
                } else {
                    LogKind::Tail
                },
                timeout: self.timeout,
                known_secrets: vec![],
            },
        )
        .await?;
        if !global.json {
            for inst in &report.instances {
                for f in &inst.files {
                    eprintln!("==> {} {} <==", inst.instance, f.path);
                    for l in &f.lines {
                        eprintln!("{l}");
                    }
                    eprintln!();
                }
            }
        }
        global.emit_json(&report)
    }
}
