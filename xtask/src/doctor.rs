//! `doctor`: is the account ready for a deploy? Lists every prerequisite with ✓/✗ and the fix.

use anyhow::{bail, Result};

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Check, read-only, that the AWS account and the EB environment have everything a deploy
    /// needs (credentials, ECR repositories and images, storage, application, environment on
    /// the ECS platform with enhanced health, required properties, the checks' credentials,
    /// the health check path); each ✗ comes with its fix.
    Doctor(DoctorCmd),
}

#[derive(clap::Args, Debug)]
pub struct DoctorCmd {
    /// The AWS environment of the configuration to check.
    #[arg(long, short, env = "DEPLOY_ENV")]
    env: String,
    /// Create what is safe to create: the ECR repositories (immutable tags, scan on push), the
    /// EB application and EB's S3 storage location. Nothing else is changed.
    #[arg(long)]
    fix: bool,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::Doctor(d) => d.run(global).await,
        }
    }
}

impl DoctorCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = pipeline::ops::AwsEnvironment::resolve(&config, &self.env, "doctor")?;
        let session = pipeline::ops::Session::open(&config).await;
        let req = pipeline::doctor::DoctorRequest::new(&config, env).with_fix(self.fix);
        let report = pipeline::doctor::doctor(&session, &req).await?;
        eprint!("{}", report.to_text());
        global.emit_json(&report)?;
        if !report.ok() {
            bail!(
                "doctor found {} problem(s) for {}; each ✗ above says how to fix it",
                report.failures().count(),
                self.env
            );
        }
        Ok(())
    }
}
