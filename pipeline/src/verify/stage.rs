//! The verify stage of `deploy`: [`crate::deploy::Verifier`] over the environment's checks.

use std::future::Future;
use std::pin::Pin;

use anyhow::{bail, Result};

use crate::config::Config;
use crate::deploy::{Verifier, VerifyTarget};

use super::{report::human_duration, verify_environment, Verdict};

/// Runs the target environment's checks against its URL; fails when a required check fails
/// (the deploy then rolls back when `rollback` is on). The table goes to the log (stderr).
#[derive(Debug, Clone)]
pub struct StageVerifier {
    config: Config,
}

impl StageVerifier {
    pub fn new(config: Config) -> Self {
        Self { config }
    }
}

impl Verifier for StageVerifier {
    fn verify<'a>(
        &'a self,
        target: &'a VerifyTarget,
    ) -> Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>> {
        Box::pin(async move {
            let env = self.config.environment(&target.environment)?;
            if env.checks.is_empty() {
                return Ok(format!(
                    "no checks configured: add [[environments.{}.checks]] to {}",
                    target.environment,
                    self.config.path.display()
                ));
            }
            let report =
                verify_environment(&self.config, &target.environment, target.url.as_deref())
                    .await?;
            tracing::info!(
                "verify of {} ({}):\n{}",
                target.environment,
                target.label,
                report.render_table()
            );
            if !report.passed() {
                let failed: Vec<String> = report
                    .failures()
                    .map(|c| format!("{} {} ({}): {}", c.check, c.verdict, c.target, c.detail))
                    .collect();
                bail!(
                    "{} of {} required checks did not pass: {}",
                    failed.len(),
                    report.checks.iter().filter(|c| c.required).count(),
                    failed.join("; ")
                );
            }
            let passed: Vec<String> = report
                .checks
                .iter()
                .filter(|c| c.verdict == Verdict::Pass)
                .map(|c| {
                    format!(
                        "{} {}",
                        c.check,
                        human_duration(std::time::Duration::from_millis(c.latency_ms))
                    )
                })
                .collect();
            Ok(format!("checks passed: {}", passed.join(", ")))
        })
    }
}
