//! Running containers: the stack's network, create, start, stop, remove, inspect, logs.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, ListNetworksOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use super::Engine;
use crate::local::plan::ContainerPlan;

/// Label keys the local target puts on what it creates.
pub const LABEL_STACK: &str = "deploy.local.stack";
pub const LABEL_ENVIRONMENT: &str = "deploy.local.environment";
pub const LABEL_VERSION: &str = "deploy.local.version";
/// A digest of what a container runs (the rendered file, the images' ids, the port offset):
/// equal on two runs means that nothing changed.
pub const LABEL_FINGERPRINT: &str = "deploy.local.fingerprint";
/// The label EB's ECS agent sets, which `.platform` hooks filter on.
pub const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerState {
    pub id: String,
    /// The Docker name (without the leading '/').
    pub docker_name: String,
    /// The name in the Dockerrun file.
    pub name: String,
    pub version: String,
    pub environment: String,
    /// The `deploy.local.fingerprint` label (empty on containers of older runs).
    #[serde(skip)]
    pub fingerprint: String,
    pub image: String,
    /// created, running, exited…
    pub status: String,
    pub running: bool,
    pub exit_code: Option<i64>,
    /// healthy, unhealthy, starting; `None` without a health check.
    pub health: Option<String>,
    /// `127.0.0.1:HOST->CONTAINER/tcp` for each published port.
    pub ports: Vec<String>,
    /// Creation time (RFC 3339) as the engine reports it.
    pub created: String,
}

/// RFC 3339 with nanoseconds, as Docker writes it (trailing zeros trimmed), made sortable.
fn sortable_time(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    match t.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{frac:0<9}"),
        None => format!("{t}.000000000"),
    }
}

impl Engine {
    /// Creates the stack's network unless it exists; a network of that name that the local
    /// target did not create (without `deploy.local.stack=<name>`) is an error.
    pub async fn ensure_network(&self, name: &str, labels: HashMap<String, String>) -> Result<()> {
        if let Some(existing) = self.network_labels(name).await? {
            if existing.get(LABEL_STACK).map(String::as_str) != Some(name) {
                bail!(
                    "a network named {name} already exists on {} but was not created by the local target (it lacks the label {LABEL_STACK}={name}): remove it (`docker network rm {name}`) or change `application` in deploy.toml",
                    self.host
                );
            }
            return Ok(());
        }
        self.docker
            .create_network(NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".into()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot create the network {name} on {}", self.host))?;
        Ok(())
    }

    pub async fn network_exists(&self, name: &str) -> Result<bool> {
        Ok(self.network_labels(name).await?.is_some())
    }

    /// The labels of the network called exactly `name`; `None` when there is none.
    pub async fn network_labels(&self, name: &str) -> Result<Option<HashMap<String, String>>> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .with_context(|| format!("cannot list networks on {}", self.host))?;
        Ok(nets
            .into_iter()
            .find(|n| n.name.as_deref() == Some(name))
            .map(|n| n.labels.unwrap_or_default()))
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot remove the network {name} on {}", self.host))
            }
        }
    }

    /// Creates (does not start) the container `docker_name` for `plan` on `network`.
    pub async fn create(
        &self,
        docker_name: &str,
        plan: &ContainerPlan,
        network: &str,
        aliases: Vec<String>,
        env: Vec<String>,
        labels: HashMap<String, String>,
    ) -> Result<String> {
        const MIB: i64 = 1024 * 1024;
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for p in &plan.ports {
            let key = format!("{}/{}", p.container, p.protocol);
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(p.host.map(|h| h.to_string()).unwrap_or_default()),
                });
        }
        let healthcheck = plan.health_check.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(h.interval.as_nanos() as i64),
            timeout: Some(h.timeout.as_nanos() as i64),
            retries: Some(i64::from(h.retries)),
            start_period: Some(h.start_period.as_nanos() as i64),
            ..Default::default()
        });
        let body = ContainerCreateBody {
            image: Some(plan.image.clone()),
            cmd: plan.command.clone(),
            entrypoint: plan.entry_point.clone(),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(exposed),
            healthcheck,
            working_dir: plan.working_directory.clone(),
            hostname: plan.hostname.clone(),
            user: plan.user.clone(),
            host_config: Some(HostConfig {
                memory: plan.memory.map(|m| m as i64 * MIB),
                memory_reservation: plan.memory_reservation.map(|m| m as i64 * MIB),
                port_bindings: Some(bindings),
                network_mode: Some(network.to_string()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_string(),
                    EndpointSettings {
                        aliases: Some(aliases),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(docker_name.to_string()),
            ..Default::default()
        };
        match self.docker.create_container(Some(options), body).await {
            Ok(r) => Ok(r.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message }) if message.contains("image") => bail!(
                "image {} (container {:?}) is not in the local Docker Engine ({}): the local target pulls nothing; build it first (`cargo xtask local up` builds the images of deploy.toml), or point the environment's `images` at an image you have",
                plan.image, plan.name, self.host
            ),
            Err(e) => Err(e).with_context(|| format!("cannot create the container {docker_name} for {:?} (image {})", plan.name, plan.image)),
        }
    }

    /// Starts the container; one that already runs is left as it is.
    pub async fn start(&self, id: &str, what: &str) -> Result<()> {
        match self.docker.start_container(id, None).await {
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            other => other,
        }
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => {
                anyhow::anyhow!("{message}")
            }
            e => anyhow::anyhow!("{e}"),
        })
        .with_context(|| format!("cannot start the container {what}"))
    }

    /// Stops with a short grace period (the stack's processes exit on SIGTERM).
    pub async fn stop(&self, id: &str) -> Result<()> {
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(5),
                    signal: None,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot stop the container {id}")),
        }
    }

    pub async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove the container {id}")),
        }
    }

    /// The containers carrying `label=value`, stopped ones included, oldest first.
    pub async fn list(&self, label: &str, value: &str) -> Result<Vec<ContainerState>> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{label}={value}")])]);
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .with_context(|| format!("cannot list containers on {}", self.host))?;
        let mut out = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            if let Some(state) = self.inspect(&id).await? {
                out.push(state);
            }
        }
        out.sort_by_key(|c| sortable_time(&c.created));
        Ok(out)
    }

    /// The state of one container; `None` once it is gone.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerState>> {
        let info = match self.docker.inspect_container(id, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect the container {id}")),
        };
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let state = info.state.unwrap_or_default();
        let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
        let health = state
            .health
            .and_then(|h| h.status)
            .filter(|s| !matches!(s, HealthStatusEnum::EMPTY | HealthStatusEnum::NONE))
            .map(|s| s.to_string());
        let mut ports = Vec::new();
        if let Some(map) = info.network_settings.and_then(|n| n.ports) {
            for (container, bindings) in map {
                for b in bindings.into_iter().flatten() {
                    ports.push(format!(
                        "{}:{}->{container}",
                        b.host_ip.unwrap_or_default(),
                        b.host_port.unwrap_or_default()
                    ));
                }
            }
        }
        ports.sort();
        Ok(Some(ContainerState {
            created: info.created.clone().unwrap_or_default(),
            id: info.id.unwrap_or_else(|| id.to_string()),
            docker_name: info
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            name: label(LABEL_CONTAINER_NAME),
            version: label(LABEL_VERSION),
            environment: label(LABEL_ENVIRONMENT),
            fingerprint: label(LABEL_FINGERPRINT),
            image: info.config.and_then(|c| c.image).unwrap_or_default(),
            running: state.running.unwrap_or(false),
            status: status.to_string(),
            exit_code: state.exit_code,
            health,
            ports,
        }))
    }

    /// The last `tail` lines of the container's stdout and stderr.
    pub async fn logs(&self, id: &str, tail: usize) -> Result<String> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.with_context(|| format!("cannot read the logs of the container {id}"))?;
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(out)
    }
}
