//! The verify stage of `deploy`: the environment's checks of `deploy.toml`, behind the
//! [`Verifier`] boundary (tests replace it with a fixed answer).

use std::future::Future;
use std::pin::Pin;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::Config;

/// Where the verify stage checks the deployed application.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyTarget {
    pub environment: String,
    pub label: String,
    pub url: Option<String>,
}

/// The verify stage, at its I/O boundary (checks over HTTP, Redis, Flower).
pub trait Verifier: Send + Sync {
    /// `Ok(summary)` when every required check passed, else what failed.
    fn verify<'a>(
        &'a self,
        target: &'a VerifyTarget,
    ) -> Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;
}

/// The production verify stage: the environment's checks of `deploy.toml`, run against the
/// target's URL; the table goes to the log (stderr), and a failed required check fails the
/// stage (the deploy then rolls back when `rollback` is on).
pub struct EnvironmentChecks<'a> {
    pub config: &'a Config,
    pub environment: &'a str,
}

impl<'a> EnvironmentChecks<'a> {
    pub fn new(config: &'a Config, environment: &'a str) -> Self {
        Self {
            config,
            environment,
        }
    }
}

impl Verifier for EnvironmentChecks<'_> {
    fn verify<'a>(
        &'a self,
        target: &'a VerifyTarget,
    ) -> Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>> {
        Box::pin(async move {
            let report =
                super::verify_environment(self.config, self.environment, target.url.as_deref())
                    .await?;
            for line in report.render_table().lines() {
                tracing::info!("{line}");
            }
            if report.passed() {
                let n = report.checks.iter().filter(|c| c.required).count();
                return Ok(format!("all {n} required checks passed"));
            }
            let failures: Vec<String> = report
                .failures()
                .map(|c| format!("{} {} {}: {}", c.check, c.target, c.verdict, c.detail))
                .collect();
            bail!("{}", failures.join("; "))
        })
    }
}
