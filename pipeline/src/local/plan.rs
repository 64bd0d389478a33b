//! What to run: the containers of a rendered `Dockerrun.aws.json` (v2), validated and put in
//! start order the way EB's ECS agent reads them.
//!
//! The file is read as JSON values (not the typed model of the AWS deploy) because the local
//! target needs only the fields the engine acts on; the others are reported and skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

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

impl Plan {
    /// Reads the rendered Dockerrun JSON `text` (`file` names it in messages) and adds
    /// `host_port_offset` to every host port.
    pub fn parse(file: &str, text: &str, host_port_offset: u16) -> Result<Self> {
        let doc: Value =
            serde_json::from_str(text).with_context(|| format!("{file} is not valid JSON"))?;
        if doc.get("AWSEBDockerrunVersion").and_then(Value::as_u64) != Some(2) {
            bail!("{file}: `AWSEBDockerrunVersion` must be the integer 2 (multi-container Docker)");
        }
        let defs = doc
            .get("containerDefinitions")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
            .with_context(|| format!("{file}: `containerDefinitions` must be a non-empty array"))?;
        let mut containers = Vec::new();
        let mut ignored = Vec::new();
        for (i, def) in defs.iter().enumerate() {
            let at = format!("{file}: containerDefinitions[{i}]");
            let obj = def
                .as_object()
                .with_context(|| format!("{at} is not an object"))?;
            let c = parse_container(&at, def, host_port_offset)?;
            for key in obj.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
                ignored.push(format!("{}.{key}", c.name));
            }
            containers.push(c);
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

fn opt_str(at: &str, field: &str, v: Option<&Value>) -> Result<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => bail!("{at}: `{field}` must be a string"),
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

fn parse_container(at: &str, def: &Value, offset: u16) -> Result<ContainerPlan> {
    let name = opt_str(at, "name", def.get("name"))?
        .filter(|n| !n.is_empty())
        .with_context(|| format!("{at}: `name` is required"))?;
    let at = format!("{at} ({name})");
    let image = opt_str(&at, "image", def.get("image"))?
        .filter(|n| !n.is_empty())
        .with_context(|| format!("{at}: `image` is required"))?;
    if image.contains("${") {
        bail!("{at}: `image` {image:?} still holds a placeholder: render the template first");
    }
    let essential = match def.get("essential") {
        None | Some(Value::Null) => true, // ECS's default
        Some(Value::Bool(b)) => *b,
        Some(_) => bail!("{at}: `essential` must be true or false"),
    };
    let memory = opt_u64(&at, "memory", def.get("memory"))?.filter(|m| *m > 0);
    let memory_reservation =
        opt_u64(&at, "memoryReservation", def.get("memoryReservation"))?.filter(|m| *m > 0);
    if memory.is_none() && memory_reservation.is_none() {
        bail!("{at}: needs a non-zero `memory` or `memoryReservation` (MiB), as EB requires");
    }
    let mut environment = Vec::new();
    for (j, e) in def
        .get("environment")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let n = opt_str(&at, "environment[].name", e.get("name"))?
            .with_context(|| format!("{at}: environment[{j}] needs `name`"))?;
        let v = match e.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        environment.push((n, v));
    }
    let secrets = def
        .get("secrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut ports = Vec::new();
    for (j, p) in def
        .get("portMappings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let field = format!("portMappings[{j}]");
        let container = opt_u64(
            &at,
            &format!("{field}.containerPort"),
            p.get("containerPort"),
        )?
        .filter(|p| (1..=65535).contains(p))
        .with_context(|| format!("{at}: {field} needs a `containerPort` between 1 and 65535"))?
            as u16;
        let file_host = opt_u64(&at, &format!("{field}.hostPort"), p.get("hostPort"))?
            .filter(|p| *p != 0)
            .map(|p| {
                u16::try_from(p)
                    .with_context(|| format!("{at}: {field}.hostPort {p} is above 65535"))
            })
            .transpose()?;
        let host = file_host
            .map(|h| {
                h.checked_add(offset).with_context(|| {
                    format!("{at}: {field}.hostPort {h} + host_port_offset {offset} is above 65535: lower host_port_offset")
                })
            })
            .transpose()?;
        let protocol = opt_str(&at, "protocol", p.get("protocol"))?.unwrap_or_else(|| "tcp".into());
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
    let links = string_list(&at, "links", def.get("links"))?
        .unwrap_or_default()
        .into_iter()
        .map(|l| match l.split_once(':') {
            Some((target, alias)) => (target.to_string(), alias.to_string()),
            None => (l.clone(), l),
        })
        .collect();
    let mut depends_on = Vec::new();
    for (j, d) in def
        .get("dependsOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let target = opt_str(&at, "dependsOn[].containerName", d.get("containerName"))?
            .with_context(|| format!("{at}: dependsOn[{j}] needs `containerName`"))?;
        let cond = opt_str(&at, "dependsOn[].condition", d.get("condition"))?
            .with_context(|| format!("{at}: dependsOn[{j}] needs `condition`"))?;
        let cond = Condition::parse(&cond).with_context(|| {
            format!("{at}: dependsOn[{j}].condition {cond:?} is not one of START, COMPLETE, SUCCESS, HEALTHY")
        })?;
        depends_on.push((target, cond));
    }
    let health_check = match def.get("healthCheck") {
        None | Some(Value::Null) => None,
        Some(h) => {
            let test = string_list(&at, "healthCheck.command", h.get("command"))?
                .filter(|t| !t.is_empty())
                .with_context(|| {
                    format!(
                        "{at}: healthCheck needs `command` (for example [\"CMD\", \"/bin/check\"])"
                    )
                })?;
            let secs = |field: &str, default: u64| -> Result<Duration> {
                Ok(Duration::from_secs(
                    opt_u64(&at, &format!("healthCheck.{field}"), h.get(field))?.unwrap_or(default),
                ))
            };
            Some(HealthCheck {
                test,
                interval: secs("interval", 30)?,
                timeout: secs("timeout", 5)?,
                retries: opt_u64(&at, "healthCheck.retries", h.get("retries"))?.unwrap_or(3) as u32,
                start_period: secs("startPeriod", 0)?,
            })
        }
    };
    let labels = def
        .get("dockerLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect();
    Ok(ContainerPlan {
        command: string_list(&at, "command", def.get("command"))?,
        entry_point: string_list(&at, "entryPoint", def.get("entryPoint"))?,
        working_directory: opt_str(&at, "workingDirectory", def.get("workingDirectory"))?,
        hostname: opt_str(&at, "hostname", def.get("hostname"))?,
        user: opt_str(&at, "user", def.get("user"))?,
        name,
        image,
        essential,
        memory,
        memory_reservation,
        environment,
        secrets,
        ports,
        links,
        depends_on,
        health_check,
        labels,
    })
}

/// Checks the cross-references and sorts the containers so that each comes after what it
/// depends on (`dependsOn` and `links`), keeping the file's order otherwise.
fn validate_and_order(file: &str, containers: Vec<ContainerPlan>) -> Result<Vec<ContainerPlan>> {
    let mut names = BTreeSet::new();
    for c in &containers {
        if !names.insert(c.name.as_str()) {
            bail!(
                "{file}: two containers are named {:?}: names must be unique",
                c.name
            );
        }
    }
    if !containers.iter().any(|c| c.essential) {
        bail!("{file}: no container is `essential`: mark at least one (for example the web server) essential");
    }
    let mut host_ports: BTreeMap<(u16, &str), &str> = BTreeMap::new();
    for c in &containers {
        for (target, _) in &c.links {
            if !names.contains(target.as_str()) {
                bail!("{file}: container {:?} links to {target:?}, which is not a container of this file", c.name);
            }
        }
        for (target, cond) in &c.depends_on {
            let Some(dep) = containers.iter().find(|d| &d.name == target) else {
                bail!("{file}: container {:?} depends on {target:?}, which is not a container of this file", c.name);
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
        for p in &c.ports {
            if let Some(h) = p.host {
                if let Some(other) = host_ports.insert((h, p.protocol.as_str()), &c.name) {
                    bail!(
                        "{file}: containers {other:?} and {:?} both publish host port {} ({}): give each its own hostPort",
                        c.name,
                        p.file_host.unwrap_or(h),
                        p.protocol
                    );
                }
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
                "container \"a\" links to \"b\", which is not a container of this file",
            ),
            (
                r#"{"name": "a", "image": "x"}"#,
                "containerDefinitions[0] (a): needs a non-zero `memory` or `memoryReservation`",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "essential": false}"#,
                "no container is `essential`",
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
                "condition \"READY\" is not one of START, COMPLETE, SUCCESS, HEALTHY",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "links": ["b"]},
                   {"name": "b", "image": "x", "memory": 1, "links": ["a"]}"#,
                "form a cycle between a, b",
            ),
            (
                r#"{"name": "a", "image": "x", "memory": 1, "portMappings": [{"hostPort": 80, "containerPort": 1}]},
                   {"name": "b", "image": "x", "memory": 1, "portMappings": [{"hostPort": 80, "containerPort": 2}]}"#,
                "containers \"a\" and \"b\" both publish host port 80 (tcp)",
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
    fn version_must_be_two() {
        let err = Plan::parse(
            "f.json",
            r#"{"AWSEBDockerrunVersion": "2", "containerDefinitions": []}"#,
            0,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "f.json: `AWSEBDockerrunVersion` must be the integer 2 (multi-container Docker)"
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
