//! `doctor`: is the account ready for a deploy? Lists every prerequisite with ✓/✗ and the fix.

use anyhow::{bail, Result};
use pipeline::config::Config;
use pipeline::doctor::DoctorRequest;
use pipeline::ops::AwsEnvironment;

use crate::args::EnvArg;
use crate::Global;

/// Check, read-only, that the AWS account and the EB environment have everything a deploy
/// needs (credentials, ECR repositories and images, storage, application, environment on the
/// ECS platform with enhanced health, required properties, the checks' credentials, the health
/// check path); each ✗ comes with its fix.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    #[command(flatten)]
    env: EnvArg,
    /// Create what is safe to create: the ECR repositories (immutable tags, scan on push), the
    /// EB application and EB's S3 storage location. Nothing else is changed.
    #[arg(long)]
    fix: bool,
}

impl Cmd {
    pub fn request<'a>(&self, config: &'a Config) -> Result<DoctorRequest<'a>> {
        let name = self.env.required("doctor")?;
        let env = AwsEnvironment::resolve(config, &name, "doctor")?;
        Ok(DoctorRequest::new(config, env).with_fix(self.fix))
    }

    pub async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let req = self.request(&config)?;
        let session = pipeline::ops::Session::open(&config).await;
        let report = pipeline::doctor::doctor(&session, &req).await?;
        eprint!("{}", report.to_text());
        global.emit_json(&report)?;
        if !report.ok() {
            bail!(
                "doctor found {} problem(s) for {}; each ✗ above says how to fix it",
                report.failures().count(),
                req.env.name
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{config, parse};
    use crate::Command;

    #[test]
    fn doctor_takes_an_aws_environment() {
        let Command::Doctor(cmd) = parse(&["doctor", "--env", "staging", "--fix"]) else {
            panic!("not doctor")
        };
        let config = config();
        let req = cmd.request(&config).unwrap();
        assert_eq!(req.env.name, "staging");
        assert!(req.fix);
        let Command::Doctor(cmd) = parse(&["doctor", "-e", "local"]) else {
            panic!("not doctor")
        };
        let err = cmd.request(&config).err().unwrap().to_string();
        assert!(err.contains("runs on the local Docker Engine"), "{err}");
    }
}
