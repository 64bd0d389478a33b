//! What to run: the containers of a rendered `Dockerrun.aws.json` (v2), put in start order
//! the way EB's ECS agent reads them.
//!
//! The file is read into the typed model of the AWS deploy ([`Dockerrun`]) and checked by
//! the linter's rules (names, images, memory, essential, links, dependsOn, ports, cycles);
//! the plan adds only what running needs: host ports after the offset, the alias of each
//! link, `dependsOn` conditions a local start can wait for, health checks in the engine's
//! terms, and the start order. Fields the engine does not act on are reported and skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::dockerrun::{Container, Dockerrun};
use crate::lint::{self, Severity};

/// A `dependsOn` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The dependency has started.
    Start,
    /// The dependency has run to completion (any exit code).
    Complete,
    /// The dependency has exited with code 0.
    Success,
    /// The dependency's health check reports healthy.
    Healthy,
}

impl Condition {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "START" => Some(Self::Start),
            "COMPLETE" => Some(Self::Complete),
            "SUCCESS" => Some(Self::Success),
            "HEALTHY" => Some(Self::Healthy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "START",
            Self::Complete => "COMPLETE",
            Self::Success => "SUCCESS",
            Self::Healthy => "HEALTHY",
        }
    }
}

/// One published port: `127.0.0.1:host` → `container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Host port after the offset; `None` publishes on a free port the engine picks.
    pub host: Option<u16>,
    /// Host port as written in the file (for messages).
    pub file_host: Option<u16>,
    pub container: u16,
    pub protocol: String,
}

/// A container health check (`healthCheck`), in the engine's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

/// One container of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub essential: bool,
    /// Hard limit in MiB (`memory`).
    pub memory: Option<u64>,
    /// Soft limit in MiB (`memoryReservation`).
    pub memory_reservation: Option<u64>,
    pub command: Option<Vec<String>>,
    pub entry_point: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    /// Names of `secrets`: EB would read them from Secrets Manager; locally they come from the
    /// host's environment variable of the same name when set.
    pub secrets: Vec<String>,
    pub ports: Vec<Port>,
    /// Other containers' names this one links to, with the alias it knows them by.
    pub links: Vec<(String, String)>,
    pub depends_on: Vec<(String, Condition)>,
    pub health_check: Option<HealthCheck>,
    pub working_directory: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// The validated file: containers in start order (dependencies first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub containers: Vec<ContainerPlan>,
    /// Fields the local target does not act on, as `container.field` (reported once).
    pub ignored: Vec<String>,
}

/// Fields of a container definition that the local target acts on.
const KNOWN: &[&str] = &[
    "name",
    "image",
    "essential",
    "memory",
    "memoryReservation",
    "command",
    "entryPoint",
    "environment",
    "secrets",
    "portMappings",
    "links",
    "dependsOn",
    "healthCheck",
    "workingDirectory",
    "hostname",
    "user",
    "dockerLabels",
];

/// The linter's rules whose errors stop a local run: a file the engine cannot run as EB would.
const BLOCKING: &[&str] = &[
    "DR001", "DR002", "DR003", "DR004", "DR005", "DR006", "DR007", "DR010", "DR011", "DR015",
];

impl Plan {
    /// Reads the rendered Dockerrun JSON `text` (`file` names it in messages) and adds
    /// `host_port_offset` to every host port.
    pub fn parse(file: &str, text: &str, host_port_offset: u16) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).with_context(|| format!("{file} is not valid JSON"))?;
        let doc = Dockerrun::from_value(value)
            .map_err(|e| anyhow!("{file}: {e}: the file is not of the Dockerrun v2 shape"))?;
        Self::from_dockerrun(file, text, &doc, host_port_offset)
    }

    /// The plan of a Dockerrun model; `text` (the file as written) gives lint's line numbers.
    pub fn from_dockerrun(
        file: &str,
        text: &str,
        doc: &Dockerrun,
        host_port_offset: u16,
    ) -> Result<Self> {
        let errors: Vec<String> = lint::lint_dockerrun(Path::new(file), text, doc)
            .into_iter()
            .filter(|f| f.severity == Severity::Error && BLOCKING.contains(&f.rule))
            .map(|f| f.to_string())
            .collect();
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        let mut containers = Vec::new();
        let mut ignored = Vec::new();
        for (i, c) in doc.container_definitions.iter().enumerate() {
            let at = format!("{file}: containerDefinitions[{i}] ({})", c.display_name(i));
            let plan = plan_container(&at, c, host_port_offset)?;
            let fields = serde_json::to_value(c)
                .with_context(|| format!("{at}: cannot read the container's fields"))?;
            for key in fields
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .filter(|k| !KNOWN.contains(&k.as_str()))
            {
                ignored.push(format!("{}.{key}", plan.name));
            }
            containers.push(plan);
        }
        let containers = validate_and_order(file, containers)?;
        Ok(Self {
            containers,
            ignored,
        })
    }

    pub fn container(&self, name: &str) -> Option<&ContainerPlan> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Every host port the plan publishes, with the container that publishes it.
    pub fn host_ports(&self) -> Vec<(u16, &ContainerPlan, &Port)> {
        self.containers
            .iter()
            .flat_map(|c| {
                c.ports
                    .iter()
                    .filter_map(move |p| p.host.map(|h| (h, c, p)))
            })
            .collect()
    }

    /// The distinct images, each with the first container that uses it.
    pub fn images(&self) -> Vec<(&str, &str)> {
        let mut seen = BTreeSet::new();
        self.containers
            .iter()
            .filter(|c| seen.insert(c.image.as_str()))
            .map(|c| (c.image.as_str(), c.name.as_str()))
            .collect()
    }
}

fn string_list(at: &str, field: &str, v: Option<&Value>) -> Result<Option<Vec<String>>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .with_context(|| format!("{at}: `{field}` must be an array of strings"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => bail!("{at}: `{field}` must be an array of strings"),
    }
}

fn opt_u64(at: &str, field: &str, v: Option<&Value>) -> Result<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .map(Some)
            .with_context(|| format!("{at}: `{field}` must be a non-negative integer, got {n}")),
    }
}

/// The engine's health check of `healthCheck` (kept raw in the model), with ECS's defaults.
fn health_check(at: &str, h: &Value) -> Result<HealthCheck> {
    let test = string_list(at, "healthCheck.command", h.get("command"))?
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!("{at}: healthCheck needs `command` (for example [\"CMD\", \"/bin/check\"])")
        })?;
    let secs = |field: &str, default: u64| -> Result<Duration> {
        Ok(Duration::from_secs(
            opt_u64(at, &format!("healthCheck.{field}"), h.get(field))?.unwrap_or(default),
        ))
    };
    Ok(HealthCheck {
        test,
        interval: secs("interval", 30)?,
        timeout: secs("timeout", 5)?,
        retries: opt_u64(at, "healthCheck.retries", h.get("retries"))?.unwrap_or(3) as u32,
        start_period: secs("startPeriod", 0)?,
    })
}

/// What running `c` needs, from a container the linter has passed.
fn plan_container(at: &str, c: &Container, offset: u16) -> Result<ContainerPlan> {
    let image = c.image.clone().unwrap_or_default();
    if image.contains("${") {
        bail!("{at}: `image` {image:?} still holds a placeholder: render the template first");
    }
    let mut ports = Vec::new();
    for (j, p) in c.port_mappings.iter().enumerate() {
        let field = format!("portMappings[{j}]");
        let container = p
            .container_port
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .with_context(|| {
                format!("{at}: {field} needs a `containerPort` between 1 and 65535")
            })?;
        let file_host = match p.host_port {
            None | Some(0) => None,
            Some(h) => Some(u16::try_from(h).with_context(|| {
                format!("{at}: {field}.hostPort {h} is not between 1 and 65535")
            })?),
        };
        let host = file_host
            .map(|h| {
                h.checked_add(offset).with_context(|| {
                    format!("{at}: {field}.hostPort {h} + host_port_offset {offset} is above 65535: lower host_port_offset")
                })
            })
            .transpose()?;
        let protocol = p.protocol.clone().unwrap_or_else(|| "tcp".into());
        if protocol != "tcp" && protocol != "udp" {
            bail!("{at}: {field}.protocol must be \"tcp\" or \"udp\", got {protocol:?}");
        }
        ports.push(Port {
            host,
            file_host,
            container,
            protocol,
        });
    }
    let links = c
        .links
        .iter()
        .map(|l| match l.split_once(':') {
            Some((target, alias)) => (target.to_string(), alias.to_string()),
            None => (l.clone(), l.clone()),
        })
        .collect();
    let mut depends_on = Vec::new();
    for (j, d) in c.depends_on.iter().enumerate() {
        let cond = Condition::parse(&d.condition).with_context(|| {
            format!(
                "{at}: dependsOn[{j}].condition {:?} is not one of START, COMPLETE, SUCCESS, HEALTHY",
                d.condition
            )
        })?;
        depends_on.push((d.container_name.clone(), cond));
    }
    Ok(ContainerPlan {
        name: c.name.clone().unwrap_or_default(),
        image,
        essential: c.is_essential(),
        memory: c.memory.filter(|m| *m > 0),
        memory_reservation: c.memory_reservation.filter(|m| *m > 0),
        command: c.command.clone(),
        entry_point: c.entry_point.clone(),
        environment: c
            .environment
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect(),
        secrets: c.secrets.iter().map(|s| s.name.clone()).collect(),
        ports,
        links,
        depends_on,
        health_check: c
            .health_check
            .as_ref()
            .filter(|h| !h.is_null())
            .map(|h| health_check(at, h))
            .transpose()?,
        working_directory: c.working_directory.clone(),
        hostname: c.hostname.clone(),
        user: c.user.clone(),
        labels: c.docker_labels.clone().unwrap_or_default(),
    })
}

/// Checks what a local start waits for and sorts the containers so that each comes after
/// what it depends on (`dependsOn` and `links`), keeping the file's order otherwise.
fn validate_and_order(file: &str, containers: Vec<ContainerPlan>) -> Result<Vec<ContainerPlan>> {
    for c in &containers {
        for (target, cond) in &c.depends_on {
            let Some(dep) = containers.iter().find(|d| &d.name == target) else {
                continue; // lint's DR007 names it
            };
            match cond {
                Condition::Complete | Condition::Success if dep.essential => bail!(
                    "{file}: container {:?} waits for {target:?} to {}, but {target:?} is essential (an essential container must keep running): set \"essential\": false on it",
                    c.name,
                    cond.name()
                ),
                Condition::Healthy if dep.health_check.is_none() => bail!(
                    "{file}: container {:?} waits for {target:?} to be HEALTHY, but {target:?} has no `healthCheck`: add one or use START",
                    c.name
                ),
                _ => {}
            }
        }
    }
    // Kahn's algorithm, taking the earliest ready container in file order each time.
    let deps = |c: &ContainerPlan| -> BTreeSet<String> {
        c.depends_on
            .iter()
            .map(|(n, _)| n.clone())
            .chain(c.links.iter().map(|(n, _)| n.clone()))
            .filter(|n| n != &c.name)
            .collect()
    };
    let mut pending: Vec<ContainerPlan> = containers;
    let mut ordered: Vec<ContainerPlan> = Vec::new();
    while !pending.is_empty() {
        let started: BTreeSet<&str> = ordered.iter().map(|c| c.name.as_str()).collect();
        let Some(i) = pending
            .iter()
            .position(|c| deps(c).iter().all(|d| started.contains(d.as_str())))
        else {
            let stuck: Vec<&str> = pending.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "{file}: `dependsOn`/`links` form a cycle between {}: remove one of the references",
                stuck.join(", ")
            );
        };
        ordered.push(pending.remove(i));
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(containers: &str) -> Result<Plan> {
        Plan::parse(
            "Dockerrun.aws.json",
            &format!("{{\"AWSEBDockerrunVersion\": 2, \"containerDefinitions\": [{containers}]}}"),
            8000,
        )
    }

    #[test]
    fn orders_by_links_and_depends_on_and_offsets_ports() {
        let p = plan(
            r#"{"name": "web", "image": "demo:1", "memory": 128, "links": ["ml:model"],
                "portMappings": [{"hostPort": 80, "containerPort": 5000}],
                "dependsOn": [{"containerName": "init", "condition": "SUCCESS"}],
                "environment": [{"name": "A", "value": "1"}], "ulimits": []},
               {"name": "ml", "image": "demo:1", "essential": false, "memoryReservation": 64},
               {"name": "init", "image": "demo:1", "essential": false, "memory": 64, "command": ["sleep", "0"]}"#,
        )
        .unwrap();
        let names: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ml", "init", "web"]);
        let web = p.container("web").unwrap();
        assert_eq!(web.ports[0].host, Some(8080));
        assert_eq!(web.ports[0].file_host, Some(80));
        assert_eq!(web.links, [("ml".to_string(), "model".to_string())]);
        assert_eq!(web.depends_on, [("init".to_string(), Condition::Success)]);
        assert!(web.essential, "essential defaults to true");
        assert_eq!(p.ignored, ["web.ulimits"]);
        assert_eq!(p.images(), [("demo:1", "ml")]);
    }

    #[test]
    fn rejects_what_ecs_rejects() {
        let cases = [
            (
                r#"{"name": "a", "image": "x", "memory": 1, "links": ["b"]}"#,
                "error DR006[links]: container `a` links to `b`, which is not a container of this file",
            ),
            (
                r#"{"name": "a", "image": "x"}"#,
                "error DR004[memory]: container `a` sets neither a non-zero memory nor memoryReservation",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "essential": false}"#,
                "error DR005[essential]: no container is essential",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "dependsOn": [{"containerName": "b", "condition": "SUCCESS"}]},
                   {"name": "b", "image": "x", "memory": 1}"#,
                "but \"b\" is essential",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "dependsOn": [{"containerName": "b", "condition": "HEALTHY"}]},
                   {"name": "b", "image": "x", "memory": 1, "essential": false}"#,
                "\"b\" has no `healthCheck`",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "dependsOn": [{"containerName": "b", "condition": "READY"}]},
                   {"name": "b", "image": "x", "memory": 1}"#,
                "error DR007[depends-on]: container `a`: dependsOn condition \"READY\" is not one of START, COMPLETE, SUCCESS, HEALTHY",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "links": ["b"]},
                   {"name": "b", "image": "x", "memory": 1, "links": ["a"]}"#,
                "form a cycle between a, b",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "portMappings": [{"hostPort": 80, "containerPort": 1}]},
                   {"name": "b", "image": "x", "memory": 1, "portMappings": [{"hostPort": 80, "containerPort": 2}]}"#,
                "error DR010[host-port]: host port 80/tcp is mapped by both `a` and `b`",
            ),
            (
                r#"{"name": "a", "image": "${image.backend}", "memory": 1}"#,
                "still holds a placeholder: render the template first",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "portMappings": [{"hostPort": 65000, "containerPort": 1}]}"#,
                "hostPort 65000 + host_port_offset 8000 is above 65535",
            ),
        ];
        for (containers, expected) in cases {
            let err = format!("{:#}", plan(containers).unwrap_err());
            assert!(err.starts_with("Dockerrun.aws.json"), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn lint_owns_the_checks_of_the_file() {
        let err = Plan::parse(
            "f.json",
            r#"{"AWSEBDockerrunVersion": "2", "containerDefinitions": []}"#,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("f.json:1:2: error DR001[version]: AWSEBDockerrunVersion must be the integer 2, found \"2\""),
            "{err}"
        );
        assert!(
            err.contains("f.json:1:32: error DR005[essential]: no containers"),
            "{err}"
        );
        let err = Plan::parse(
            "f.json",
            r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "a", "memory": "lots"}]}"#,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "f.json: containerDefinitions[0].memory: invalid type: string \"lots\""
            ),
            "{err}"
        );
    }

    #[test]
    fn health_check_defaults_follow_ecs() {
        let p = plan(
            r#"{"name": "a", "image": "x", "memory": 1, "healthCheck": {"command": ["CMD", "/check"], "interval": 2}}"#,
        )
        .unwrap();
        let h = p.containers[0].health_check.as_ref().unwrap();
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(h.timeout, Duration::from_secs(5));
        assert_eq!(h.retries, 3);
    }
}
