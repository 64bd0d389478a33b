//! What `cargo xtask deploy` tells GitHub, in one place: a `::group::` per stage, lint
//! findings as annotations, secrets masked, step outputs, and (with a token) a GitHub
//! deployment whose statuses go `in_progress` → `success`/`failure`.
//!
//! Locally (no `GITHUB_ACTIONS`, no `GITHUB_TOKEN`) every call is a no-op, so the deploy code
//! calls it unconditionally. A GitHub API failure is logged as a warning and never fails the
//! deploy itself.

use std::path::Path;

use crate::github::actions::{Actions, Annotation, Group, Level};
use crate::github::{DeploymentTracker, GitHub, GitHubSettings};
use crate::lint::Report;
use crate::stages::Stage;

/// Reporting for one deploy of `git_ref` to `environment`.
#[derive(Debug)]
pub struct DeployReporter {
    actions: Actions,
    tracker: Option<DeploymentTracker>,
}

/// The step outputs of a deploy.
#[derive(Debug, Clone, Default)]
pub struct DeployOutputs<'a> {
    pub version_label: Option<&'a str>,
    pub bundle_sha256: Option<&'a str>,
    /// `name@sha256:…` of each pushed image, one a line.
    pub image_digests: Vec<String>,
    pub environment_url: Option<&'a str>,
}

impl DeployReporter {
    /// Reads the Actions environment; with a token, creates the GitHub deployment and marks
    /// it `in_progress`.
    pub async fn start(git_ref: &str, environment: &str) -> Self {
        let actions = Actions::from_env();
        let settings = match GitHubSettings::from_env() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("no GitHub deployment: {e}");
                None
            }
        };
        if let Some(s) = &settings {
            use secrecy::ExposeSecret;
            actions.mask(s.token.expose_secret());
        }
        let github = settings.and_then(|s| match GitHub::new(&s) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!("no GitHub deployment: {e}");
                None
            }
        });
        Self::with(
            actions,
            github,
            git_ref,
            environment,
            crate::github::actions::run_url(),
        )
        .await
    }

    /// Explicit channels, client and run URL (tests, or callers that built their own).
    pub async fn with(
        actions: Actions,
        github: Option<GitHub>,
        git_ref: &str,
        environment: &str,
        log_url: Option<String>,
    ) -> Self {
        let mut tracker = None;
        if let Some(gh) = &github {
            match DeploymentTracker::start(gh, git_ref, environment, log_url).await {
                Ok(t) => {
                    tracing::info!("GitHub deployment {} of {git_ref} to {environment}", t.id);
                    tracker = Some(t);
                }
                Err(e) => tracing::warn!("no GitHub deployment: {e}"),
            }
        }
        Self { actions, tracker }
    }

    pub fn actions(&self) -> &Actions {
        &self.actions
    }

    /// A log group for `stage`, closed when the guard drops.
    pub fn stage(&self, stage: Stage) -> Group {
        self.actions.group(&format!("{stage}"))
    }

    /// Hides a secret from the rest of the job's log.
    pub fn mask(&self, secret: &str) {
        self.actions.mask(secret);
    }

    /// One annotation per lint finding, at its file, line and column (relative to `root`).
    pub fn lint(&self, report: &Report, root: &Path) {
        self.actions.annotate_lint(report, root);
    }

    /// Writes `version_label`, `bundle_sha256`, `image_digests` and `environment_url` to
    /// `$GITHUB_OUTPUT`.
    pub fn outputs(&self, o: &DeployOutputs<'_>) -> anyhow::Result<()> {
        if let Some(v) = o.version_label {
            self.actions.set_output("version_label", v)?;
        }
        if let Some(v) = o.bundle_sha256 {
            self.actions.set_output("bundle_sha256", v)?;
        }
        if !o.image_digests.is_empty() {
            self.actions
                .set_output("image_digests", &o.image_digests.join("\n"))?;
        }
        if let Some(v) = o.environment_url {
            self.actions.set_output("url", v)?;
        }
        Ok(())
    }

    /// Everything after `pipeline::deploy::run`: a `::error` per failed stage, the summary
    /// table in the job summary, `version_label` and `url` outputs, and the deployment's final
    /// status (`success` with `environment_url`, else `failure` with the failed stage's output).
    pub async fn finish(
        &self,
        report: &super::RunReport,
        environment_url: Option<&str>,
    ) -> anyhow::Result<()> {
        use super::Outcome;
        // A URL with credentials goes to outputs and the deployment without them.
        let masked_url = environment_url.map(crate::verify::mask_url);
        let environment_url = masked_url.as_deref();
        let failed: Vec<&super::StageReport> = report
            .stages
            .iter()
            .filter(|s| s.outcome == Outcome::Failed)
            .collect();
        for s in &failed {
            self.actions.annotate(
                Level::Error,
                &Annotation {
                    title: Some(format!("{} stage failed", s.stage)),
                    message: s.output.clone(),
                    ..Default::default()
                },
            );
        }
        self.actions.summary(&format!(
            "## Deploy `{}` → `{}`\n\n```\n{}\n```\n",
            report.release,
            report.eb_environment,
            report.table()
        ))?;
        self.outputs(&DeployOutputs {
            version_label: report.label.as_deref(),
            environment_url: environment_url.filter(|_| report.ok),
            ..Default::default()
        })?;
        if report.dry_run {
            return Ok(());
        }
        if report.ok {
            let label = report.label.as_deref().unwrap_or(&report.release);
            self.succeeded(environment_url, &format!("deployed {label}"))
                .await;
        } else {
            let why = failed
                .first()
                .map(|s| format!("{} stage failed: {}", s.stage, s.output))
                .unwrap_or_else(|| "deploy failed".into());
            if let Some(t) = &self.tracker {
                if let Err(e) = t.failed(&why).await {
                    tracing::warn!("cannot mark the GitHub deployment failed: {e}");
                }
            }
        }
        Ok(())
    }

    /// `success` with the environment's URL.
    pub async fn succeeded(&self, environment_url: Option<&str>, description: &str) {
        if let Some(t) = &self.tracker {
            if let Err(e) = t.succeeded(environment_url, description).await {
                tracing::warn!("cannot mark the GitHub deployment successful: {e}");
            }
        }
    }

    /// `failure` with the run's URL; the error also becomes an annotation.
    pub async fn failed(&self, error: &anyhow::Error) {
        let message = format!("{error:#}");
        self.actions.annotate(
            Level::Error,
            &Annotation {
                title: Some("deploy failed".into()),
                message: message.clone(),
                ..Default::default()
            },
        );
        if let Some(t) = &self.tracker {
            if let Err(e) = t.failed(&message).await {
                tracing::warn!("cannot mark the GitHub deployment failed: {e}");
            }
        }
    }

    /// The local target's end: its containers and checks in the job summary, the
    /// `version_label` and `url` outputs, and the deployment's final status.
    pub async fn finish_local(
        &self,
        done: &crate::local::LocalDeployment,
        environment_url: Option<&str>,
    ) -> anyhow::Result<()> {
        let masked_url = environment_url.map(crate::verify::mask_url);
        let mut summary = format!(
            "## Deploy `{}` → local Docker Engine\n\nversion `{}`",
            done.release, done.version_label
        );
        match &done.run {
            None => summary.push_str(" (plan only: --dry-run)\n"),
            Some(run) => {
                summary.push_str(&format!(
                    " on stack `{}`{}\n\n| container | status | ports |\n|---|---|---|\n",
                    run.stack,
                    if run.unchanged {
                        " (already running: nothing restarted)"
                    } else {
                        ""
                    }
                ));
                for c in &run.containers {
                    summary.push_str(&format!(
                        "| {} | {} | {} |\n",
                        c.name,
                        c.status,
                        c.ports.join(" ")
                    ));
                }
                if let Some(v) = &run.verified {
                    summary.push_str(&format!("\nverify: {} check(s) passed\n", v.checks.len()));
                }
            }
        }
        self.actions.summary(&summary)?;
        self.outputs(&DeployOutputs {
            version_label: Some(&done.version_label),
            environment_url: masked_url.as_deref().filter(|_| done.run.is_some()),
            ..Default::default()
        })?;
        if done.run.is_some() {
            self.succeeded(
                masked_url.as_deref(),
                &format!("deployed {} locally", done.version_label),
            )
            .await;
        }
        Ok(())
    }
}
