//! GitHub deployments: one per ref and environment, with statuses `in_progress` → `success`
//! (with the environment's URL) or `failure` (with the Actions run's URL).

use super::{Call, GitHub, GitHubError};

pub use octocrab::models::repos::DeploymentStatusState as DeploymentState;

const PERMISSION: &str = "deployments: write";

/// A deployment to create.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// The tag, branch or commit being deployed.
    pub git_ref: String,
    pub environment: String,
    pub description: String,
    pub production_environment: bool,
    /// Never merge the default branch into the ref.
    pub auto_merge: bool,
    /// Commit status checks were CI's business; do not make GitHub wait on them.
    pub required_contexts: Vec<String>,
}

impl NewDeployment {
    pub fn new(git_ref: &str, environment: &str, description: &str) -> Self {
        Self {
            git_ref: git_ref.to_string(),
            environment: environment.to_string(),
            description: description.to_string(),
            production_environment: environment == "production",
            auto_merge: false,
            required_contexts: Vec::new(),
        }
    }
}

/// What a status says besides its state.
#[derive(Debug, Clone, Default)]
pub struct StatusDetails {
    pub description: Option<String>,
    pub environment_url: Option<String>,
    pub log_url: Option<String>,
}

impl GitHub {
    /// Creates a deployment and returns its id.
    pub async fn create_deployment(&self, new: &NewDeployment) -> Result<u64, GitHubError> {
        let call = Call {
            action: format!(
                "create a deployment of {} to the environment {}",
                new.git_ref, new.environment
            ),
            url: self.repo_url("/deployments"),
            permission: PERMISSION,
        };
        let repo = self.octo.repos(&self.owner, &self.name);
        let created = self
            .call(&call, || {
                repo.deployments()
                    .create(&new.git_ref)
                    .environment(&new.environment)
                    .description(&new.description)
                    .production_environment(new.production_environment)
                    .auto_merge(new.auto_merge)
                    .required_contexts(new.required_contexts.clone())
                    .send()
            })
            .await?;
        Ok(created.id.into_inner())
    }

    /// Adds a status to deployment `id`; it makes earlier deployments to the environment
    /// inactive (`auto_inactive`).
    pub async fn deployment_status(
        &self,
        id: u64,
        state: DeploymentState,
        details: &StatusDetails,
    ) -> Result<(), GitHubError> {
        let call = Call {
            action: format!("set the status of deployment {id} to {state:?}"),
            url: self.repo_url(&format!("/deployments/{id}/statuses")),
            permission: PERMISSION,
        };
        let repo = self.octo.repos(&self.owner, &self.name);
        self.call(&call, || {
            let mut status = repo
                .deployments()
                .statuses(id)
                .create(state)
                .auto_inactive(true);
            if let Some(d) = &details.description {
                status = status.description(d);
            }
            if let Some(u) = &details.environment_url {
                status = status.environment_url(u);
            }
            if let Some(u) = &details.log_url {
                status = status.log_url(u);
            }
            status.send()
        })
        .await?;
        Ok(())
    }
}

/// A deploy as GitHub sees it: created and `in_progress` by [`DeploymentTracker::start`], then
/// [`succeeded`](DeploymentTracker::succeeded) or [`failed`](DeploymentTracker::failed).
#[derive(Debug, Clone)]
pub struct DeploymentTracker {
    github: GitHub,
    pub id: u64,
    log_url: Option<String>,
}

impl DeploymentTracker {
    /// Creates the deployment of `git_ref` to `environment` and marks it `in_progress`.
    /// `log_url` is the Actions run's URL ([`super::actions::run_url`]).
    pub async fn start(
        github: &GitHub,
        git_ref: &str,
        environment: &str,
        log_url: Option<String>,
    ) -> Result<Self, GitHubError> {
        let new = NewDeployment::new(
            git_ref,
            environment,
            &format!("cargo xtask deploy --env {environment}"),
        );
        let id = github.create_deployment(&new).await?;
        let tracker = Self {
            github: github.clone(),
            id,
            log_url,
        };
        github
            .deployment_status(
                id,
                DeploymentState::InProgress,
                &StatusDetails {
                    description: Some(format!("deploying {git_ref}")),
                    environment_url: None,
                    log_url: tracker.log_url.clone(),
                },
            )
            .await?;
        Ok(tracker)
    }

    /// `success`, pointing at the deployed environment.
    pub async fn succeeded(
        &self,
        environment_url: Option<&str>,
        description: &str,
    ) -> Result<(), GitHubError> {
        self.github
            .deployment_status(
                self.id,
                DeploymentState::Success,
                &StatusDetails {
                    description: Some(truncate(description)),
                    environment_url: environment_url.map(str::to_string),
                    log_url: self.log_url.clone(),
                },
            )
            .await
    }

    /// `failure`, pointing at the run's log.
    pub async fn failed(&self, description: &str) -> Result<(), GitHubError> {
        self.github
            .deployment_status(
                self.id,
                DeploymentState::Failure,
                &StatusDetails {
                    description: Some(truncate(description)),
                    environment_url: None,
                    log_url: self.log_url.clone(),
                },
            )
            .await
    }
}

/// GitHub limits a status description to 140 characters.
fn truncate(s: &str) -> String {
    if s.chars().count() <= 140 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(139).collect();
        t.push('…');
        t
    }
}
