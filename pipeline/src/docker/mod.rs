//! The one client of the Docker Engine, over bollard (which stays in here): connect
//! (honouring `DOCKER_HOST`), build from a streamed context ([`build`]), tag, push with
//! explicit credentials ([`push`]), and run containers on a network ([`run`]). The AWS
//! target (`image`) and the local target (`local`) both use it.

pub mod binaries;
pub mod build;
pub mod context;
pub mod push;
pub mod run;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Result};
use bollard::query_parameters::{RemoveImageOptions, TagImageOptions};
use bollard::Docker;

pub use binaries::build_static_binaries;
pub use build::{BuildOptions, Built, OutputMode};
pub use context::{BuildContext, ContextStats, DockerIgnore};
pub use push::{Pushed, RegistryAuth, Retry};
pub use run::ContainerState;

/// Where bollard looks when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Builds and pushes can take long; the engine streams progress meanwhile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine at {host}: {message}\n  hint: start the Docker daemon, or point DOCKER_HOST at a running one (unix:///path/to/docker.sock, tcp://host:2375)")]
    Unreachable { host: String, message: String },
}

/// What the engine says about one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    pub id: String,
    pub labels: HashMap<String, String>,
    /// Size in bytes of the image's layers.
    pub size: i64,
    /// `amd64`, `arm64`…
    pub architecture: String,
}

/// A connected Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

impl Engine {
    /// Connects to `host`, else `DOCKER_HOST`, else the default socket, and agrees on an API
    /// version (the engine may be older than bollard).
    pub async fn connect(host: Option<&str>) -> Result<Self, EngineError> {
        let host = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let unreachable = |message: String| EngineError::Unreachable {
            host: host.clone(),
            message,
        };
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(REQUEST_TIMEOUT);
        let docker = tokio::time::timeout(Duration::from_secs(30), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 30s".into()))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        docker
            .ping()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        tracing::debug!("connected to the Docker Engine at {host}");
        Ok(Self { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// What the engine knows of the image `reference`; `None` when it does not have it.
    pub async fn inspect_image(&self, reference: &str) -> Result<Option<ImageFacts>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(Some(ImageFacts {
                id: i.id.unwrap_or_default(),
                labels: i.config.and_then(|c| c.labels).unwrap_or_default(),
                size: i.size.unwrap_or_default(),
                architecture: i.architecture.unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(anyhow!(
                "cannot inspect the image {reference} on {}: {}",
                self.host,
                error_chain(&e)
            )),
        }
    }

    /// The image id of `reference`, or `None` when the engine does not have it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.inspect_image(reference).await?.map(|i| i.id))
    }

    /// True when the engine has the image `reference`.
    pub async fn has_image(&self, reference: &str) -> Result<bool> {
        Ok(self.inspect_image(reference).await?.is_some())
    }

    /// Adds the tag `repo:tag` to `image`.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        self.docker
            .tag_image(
                image,
                Some(TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(|e| anyhow!("cannot tag {image} as {repo}:{tag}: {}", error_chain(&e)))
    }

    /// Removes the tag `reference` (tests, cleanup).
    pub async fn untag(&self, reference: &str) -> Result<()> {
        self.docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: false,
                    noprune: false,
                    platforms: None,
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("cannot remove {reference}: {}", error_chain(&e)))
    }
}

/// The engine's own message for stream errors, else the error and its causes.
fn stream_error(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
        bollard::errors::Error::DockerResponseServerError {
            message,
            status_code,
        } => {
            format!("{} (HTTP {status_code})", message.trim())
        }
        other => error_chain(other),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dead_socket_names_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let err = Engine::connect(Some(&host)).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot reach the Docker Engine at {host}: ")),
            "{err}"
        );
        assert!(err.contains("DOCKER_HOST"), "{err}");
    }
}
