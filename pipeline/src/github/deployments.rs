//! GitHub deployments: one per ref and environment, with statuses `in_progress` → `success`
//! (with the environment's URL) or `failure` (with the Actions run's URL).

use serde::{Deserialize, Serialize};

use super::{GitHub, GitHubError, Method};

const PERMISSION: &str = "deployments: write";

/// A deployment to create.
#[derive(Debug, Clone, Serialize)]
pub struct NewDeployment {
    /// The tag, branch or commit being deployed.
    #[serde(rename = "ref")]
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

/// Deployment status states, as GitHub names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Queued,
    Pending,
    InProgress,
    Success,
    Failure,
    Error,
    Inactive,
}

/// What a status says besides its state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    id: Option<u64>,
    message: Option<String>,
}

impl GitHub {
    /// Creates a deployment and returns its id.
    pub async fn create_deployment(&self, new: &NewDeployment) -> Result<u64, GitHubError> {
        let url = self.repo_url("/deployments");
        let action = format!(
            "create a deployment of {} to the environment {}",
            new.git_ref, new.environment
        );
        let (status, created): (u16, Created) = self
            .write(Method::Post, &url, new, &action, PERMISSION)
            .await?;
        match created.id {
            Some(id) if status == 201 => Ok(id),
            _ => Err(GitHubError::Unexpected {
                action,
                url,
                detail: format!(
                    "HTTP {status} without a deployment id: {}",
                    created.message.unwrap_or_default()
                ),
            }),
        }
    }

    /// Adds a status to deployment `id`.
    pub async fn deployment_status(
        &self,
        id: u64,
        state: DeploymentState,
        details: &StatusDetails,
    ) -> Result<(), GitHubError> {
        #[derive(Serialize)]
        struct Body<'a> {
            state: DeploymentState,
            #[serde(flatten)]
            details: &'a StatusDetails,
            auto_inactive: bool,
        }
        let url = self.repo_url(&format!("/deployments/{id}/statuses"));
        let action = format!("set the status of deployment {id} to {state:?}");
        let _: (u16, serde_json::Value) = self
            .write(
                Method::Post,
                &url,
                &Body {
                    state,
                    details,
                    auto_inactive: true,
                },
                &action,
                PERMISSION,
            )
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
