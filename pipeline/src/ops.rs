//! What every command that works on a deployed environment shares: the environment resolved
//! once from `deploy.toml`, and one set of AWS clients built from one configuration.
//!
//! `doctor`, `env`, `secrets`, `status`, `history`, `rollback`, `logs` and `cleanup` start from
//! [`AwsEnvironment::resolve`] (one environment) or [`AwsEnvironment::all`] (every AWS
//! environment of the file), then [`Session::open`]. Output goes through
//! [`crate::output::Table`] for people and `serde::Serialize` reports for `--json`.

pub mod cleanup;
pub mod history;
pub mod journal;
pub mod logs;
pub mod rollback;
pub mod status;
pub mod versions;

use anyhow::Result;

use crate::aws::Aws;
use crate::config::{Config, ConfigError, EnvironmentSpec, Target};
use crate::eb::{Eb, Pacing};

/// An environment of `deploy.toml` that runs on Elastic Beanstalk, resolved once.
#[derive(Debug, Clone)]
pub struct AwsEnvironment {
    /// The name in `deploy.toml` (`staging`).
    pub name: String,
    /// The Elastic Beanstalk environment name (`antenna-staging`).
    pub eb_environment: String,
    /// The Elastic Beanstalk application name.
    pub application: String,
    pub region: String,
    pub spec: EnvironmentSpec,
}

impl AwsEnvironment {
    /// The AWS environment `name`; an unknown name lists the known ones, a local one is refused
    /// by name (`command` says what refused it, for the message).
    pub fn resolve(config: &Config, name: &str, command: &str) -> Result<Self, ConfigError> {
        let spec = config.environment(name)?;
        if spec.target != Target::Aws {
            return Err(ConfigError::NotAws {
                path: config.path.clone(),
                name: name.to_string(),
                command: command.to_string(),
                aws: config.aws_environment_names(),
            });
        }
        Ok(Self {
            name: name.to_string(),
            // `Config::parse` refuses an AWS environment without `eb_environment`.
            eb_environment: spec.eb_environment.clone().unwrap_or_default(),
            application: config.application.clone(),
            region: config.region.clone(),
            spec: spec.clone(),
        })
    }

    /// `name` when given, else every AWS environment of the file, in file order (sorted).
    pub fn selected(
        config: &Config,
        name: Option<&str>,
        command: &str,
    ) -> Result<Vec<Self>, ConfigError> {
        match name {
            Some(n) => Ok(vec![Self::resolve(config, n, command)?]),
            None => Ok(config
                .aws_environment_names()
                .iter()
                .map(|n| Self::resolve(config, n, command))
                .collect::<Result<_, _>>()?),
        }
    }
}

impl AwsEnvironment {
    /// The request `deploy` and `rollback` give [`crate::eb::deploy()`]: the environment's
    /// timeouts and health threshold, unless `deadline` or `lock_wait` override them.
    pub fn deploy_request<'a>(
        &'a self,
        label: &'a str,
        deadline: Option<std::time::Duration>,
        lock_wait: Option<std::time::Duration>,
        state_dir: Option<&'a std::path::Path>,
        dry_run: bool,
    ) -> crate::eb::DeployRequest<'a> {
        let spec = &self.spec;
        crate::eb::DeployRequest {
            application: &self.application,
            environment: &self.eb_environment,
            label,
            region: &self.region,
            deadline: deadline.unwrap_or(spec.timeouts.deploy),
            lock_wait: lock_wait.unwrap_or(spec.timeouts.lock_wait),
            health_settle: spec.timeouts.health_settle,
            threshold: spec.health_threshold,
            state_dir,
            dry_run,
            options: None,
            options_only: false,
        }
    }
}

/// One AWS configuration and the clients built from it, shared by a command's calls.
#[derive(Debug)]
pub struct Session {
    pub aws: Aws,
    /// Elastic Beanstalk, paced and retried in one place (shared: a deploy's preflight reads
    /// through the deploy's own pacing).
    pub eb: std::sync::Arc<Eb>,
    pub s3: aws_sdk_s3::Client,
    pub ecr: aws_sdk_ecr::Client,
}

impl Session {
    /// Loads the AWS configuration for the file's region (credentials from the standard chain).
    pub async fn open(config: &Config) -> Self {
        Self::from_aws(Aws::load(&config.region).await, Pacing::default())
    }

    /// Clients from an existing configuration (tests pass a scaled [`Pacing`]).
    pub fn from_aws(aws: Aws, pacing: Pacing) -> Self {
        Self {
            eb: std::sync::Arc::new(Eb::from_aws(&aws, pacing)),
            s3: aws.s3(),
            ecr: aws.ecr(),
            aws,
        }
    }
}
