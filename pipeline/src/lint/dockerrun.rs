//! Rules for `Dockerrun.aws.json` v2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::secrets::secret_reason;
use super::*;
use crate::dockerrun::{Dockerrun, DEPENDS_ON_CONDITIONS};
use crate::image::reference::ImageRef;

/// Lints a Dockerrun model read from `file`; `text` (the template or the rendered file) is used
/// to find line numbers.
pub fn lint_dockerrun(file: &Path, text: &str, d: &Dockerrun) -> Vec<Finding> {
    let mut out = Vec::new();
    // (rule, field, message, secret): findings about a secret value, which they remember.
    let mut secret_findings: Vec<(Rule, String, String, String)> = Vec::new();
    let mut push = |rule: Rule, field: String, message: String, hint: &str| {
        let at = locate(text, &field);
        out.push(Finding::new(rule, file, field, message, hint).at(at));
    };

    if d.version != serde_json::json!(2) {
        push(
            DR_VERSION,
            "AWSEBDockerrunVersion".into(),
            format!("AWSEBDockerrunVersion must be the integer 2, found {}", d.version),
            "write \"AWSEBDockerrunVersion\": 2 (a number, not a string): version 1 is for single-container environments",
        );
    }
    for key in d.unknown.keys() {
        push(
            DR_UNKNOWN,
            key.clone(),
            format!("unknown top-level field `{key}` (kept in the output)"),
            "check the spelling against the Dockerrun v2 reference; EB may reject or ignore it",
        );
    }

    let names: BTreeSet<&str> = d.names().collect();
    let mut seen = BTreeMap::<&str, usize>::new();
    let mut host_ports = BTreeMap::<(i64, String), String>::new();
    if d.container_definitions.is_empty() {
        push(
            DR_ESSENTIAL,
            "containerDefinitions".into(),
            "no containers: containerDefinitions is empty".into(),
            "add at least one container definition",
        );
    } else if !d.container_definitions.iter().any(|c| c.is_essential()) {
        push(DR_ESSENTIAL, "containerDefinitions".into(), "no container is essential: every container sets \"essential\": false".into(), "mark the main container (django) \"essential\": true so that ECS restarts the task when it stops");
    }
    let declared_volumes: BTreeSet<&str> = d.volumes.iter().map(|v| v.name.as_str()).collect();
    let uses_secrets = d
        .container_definitions
        .iter()
        .any(|c| !c.secrets.is_empty());
    if uses_secrets && d.execution_role_arn.is_none() {
        push(DR_SECRETS_ARN, "containerDefinitions".into(), "containers use `secrets` but there is no top-level executionRoleArn".into(), "add \"executionRoleArn\" with a role that may read those secrets (secretsmanager:GetSecretValue / ssm:GetParameters)");
    }

    for (i, c) in d.container_definitions.iter().enumerate() {
        let base = format!("containerDefinitions[{i}]");
        let who = c.display_name(i);
        match c.name.as_deref() {
            None | Some("") => push(
                DR_NAME,
                base.clone(),
                format!("container {who} has no name"),
                "add \"name\": a unique name other containers can link to",
            ),
            Some(n) => {
                if let Some(first) = seen.insert(n, i) {
                    push(
                        DR_NAME,
                        format!("{base}.name"),
                        format!("container name `{n}` is used twice (containers {first} and {i})"),
                        "give each container a unique name",
                    );
                }
            }
        }
        match c.image.as_deref() {
            None | Some("") => push(
                DR_IMAGE,
                base.clone(),
                format!("container `{who}` has no image"),
                "add \"image\": a full reference such as ${image.backend}",
            ),
            Some(image) => match ImageRef::parse(image) {
                Err(why) => push(
                    DR_IMAGE_REF,
                    format!("{base}.image"),
                    format!("container `{who}`: image {image:?} is not a valid reference: {why}"),
                    "use [REGISTRY/]REPOSITORY[:TAG][@DIGEST] in lowercase",
                ),
                Ok(r) => {
                    if r.digest.is_none() && r.tag.as_deref().is_none_or(|t| t == "latest") {
                        let what = if r.tag.is_none() {
                            "has no tag"
                        } else {
                            "uses the tag latest"
                        };
                        push(DR_IMAGE_TAG, format!("{base}.image"), format!("container `{who}`: image {image:?} {what}, so a redeploy may run another image"), "pin a release tag (or a digest)");
                    }
                }
            },
        }
        if c.memory.unwrap_or(0) == 0 && c.memory_reservation.unwrap_or(0) == 0 {
            push(DR_MEMORY, base.clone(), format!("container `{who}` sets neither a non-zero memory nor memoryReservation"), "set \"memory\" (hard limit, MiB) or \"memoryReservation\" (soft limit, MiB), for example 512");
        }
        for (j, link) in c.links.iter().enumerate() {
            let target = link.split(':').next().unwrap_or(link);
            if !names.contains(target) {
                push(DR_LINKS, format!("{base}.links[{j}]"), format!("container `{who}` links to `{target}`, which is not a container of this file"), &format!("known containers: {}", join(&names)));
            } else if c.name.as_deref() == Some(target) {
                push(
                    DR_LINKS,
                    format!("{base}.links[{j}]"),
                    format!("container `{who}` links to itself"),
                    "remove the link",
                );
            }
        }
        for (j, dep) in c.depends_on.iter().enumerate() {
            if !names.contains(dep.container_name.as_str()) {
                push(
                    DR_DEPENDS_ON,
                    format!("{base}.dependsOn[{j}].containerName"),
                    format!(
                        "container `{who}` depends on `{}`, which is not a container of this file",
                        dep.container_name
                    ),
                    &format!("known containers: {}", join(&names)),
                );
            }
            if !DEPENDS_ON_CONDITIONS.contains(&dep.condition.as_str()) {
                push(DR_DEPENDS_ON, format!("{base}.dependsOn[{j}].condition"), format!("container `{who}`: dependsOn condition {:?} is not one of {}", dep.condition, DEPENDS_ON_CONDITIONS.join(", ")), "use START, COMPLETE, SUCCESS or HEALTHY (HEALTHY needs a healthCheck on the other container)");
            }
        }
        for (j, vf) in c.volumes_from.iter().enumerate() {
            if !names.contains(vf.source_container.as_str()) {
                push(DR_VOLUMES_FROM, format!("{base}.volumesFrom[{j}].sourceContainer"), format!("container `{who}` takes volumes from `{}`, which is not a container of this file", vf.source_container), &format!("known containers: {}", join(&names)));
            }
        }
        for (j, mp) in c.mount_points.iter().enumerate() {
            if !declared_volumes.contains(mp.source_volume.as_str()) {
                push(DR_MOUNT_POINTS, format!("{base}.mountPoints[{j}].sourceVolume"), format!("container `{who}` mounts volume `{}`, which is not declared in the top-level volumes", mp.source_volume), "declare it: \"volumes\": [{\"name\": …, \"host\": {\"sourcePath\": …}}]");
            }
        }
        for (j, pm) in c.port_mappings.iter().enumerate() {
            let field = format!("{base}.portMappings[{j}]");
            match pm.container_port {
                Some(p) if (1..=65535).contains(&p) => {}
                Some(p) => push(
                    DR_PORT_RANGE,
                    format!("{field}.containerPort"),
                    format!("container `{who}`: containerPort {p} is outside 1-65535"),
                    "use the port the process listens on",
                ),
                None => push(
                    DR_PORT_RANGE,
                    field.clone(),
                    format!("container `{who}`: a port mapping has no containerPort"),
                    "add \"containerPort\"",
                ),
            }
            if let Some(h) = pm.host_port {
                if !(1..=65535).contains(&h) {
                    push(
                        DR_PORT_RANGE,
                        format!("{field}.hostPort"),
                        format!("container `{who}`: hostPort {h} is outside 1-65535"),
                        "use a port between 1 and 65535",
                    );
                } else {
                    let proto = pm
                        .protocol
                        .clone()
                        .unwrap_or_else(|| "tcp".into())
                        .to_ascii_lowercase();
                    if let Some(other) = host_ports.insert((h, proto.clone()), who.clone()) {
                        push(
                            DR_HOST_PORT,
                            format!("{field}.hostPort"),
                            format!(
                                "host port {h}/{proto} is mapped by both `{other}` and `{who}`"
                            ),
                            "map each host port once; change one hostPort",
                        );
                    }
                }
            }
        }
        for (j, e) in c.environment.iter().enumerate() {
            if let Some(why) = secret_reason(&e.name, &e.value) {
                secret_findings.push((DR_SECRET_ENV, format!("{base}.environment[{j}]"), format!("container `{who}`: environment `{}` looks like a secret ({why}); secrets must not go into the bundle", e.name), e.value.clone()));
            }
        }
        for (key, args) in [("entryPoint", &c.entry_point), ("command", &c.command)] {
            let line = args.as_deref().unwrap_or_default().join(" ");
            for found in super::secrets::scan_text(&line) {
                secret_findings.push((DR_SECRET_COMMAND, format!("{base}.{key}"), format!("container `{who}`: `{key}` holds {} that looks like a secret ({}); it would be stored in the bundle", found.what, found.reason), found.value));
            }
        }
        for (j, s) in c.secrets.iter().enumerate() {
            if !s.value_from.starts_with("arn:") {
                push(DR_SECRETS_ARN, format!("{base}.secrets[{j}].valueFrom"), format!("container `{who}`: secret `{}` takes its value from {:?}, which is not an ARN", s.name, s.value_from), "use the ARN of a Secrets Manager secret or an SSM parameter");
            }
        }
        for key in c.unknown.keys() {
            push(
                DR_UNKNOWN,
                format!("{base}.{key}"),
                format!("container `{who}`: unknown field `{key}` (kept in the output)"),
                "check the spelling against ECS's container definition reference",
            );
        }
    }

    if let Some(cycle) = depends_on_cycle(d) {
        let first = cycle[0].clone();
        let i = d
            .container_definitions
            .iter()
            .position(|c| c.name.as_deref() == Some(&first))
            .unwrap_or(0);
        push(
            DR_CYCLE,
            format!("containerDefinitions[{i}].dependsOn"),
            format!("dependsOn has a cycle: {}", cycle.join(" -> ")),
            "remove one of these dependencies: ECS cannot start any container of a cycle",
        );
    }
    for (rule, field, message, secret) in secret_findings {
        let hint = if rule.id == DR_SECRET_ENV.id {
            "set it as an EB environment property (console, or `aws elasticbeanstalk update-environment --option-settings Namespace=aws:elasticbeanstalk:application:environment,…`), or move it to \"secrets\" with a Secrets Manager or SSM valueFrom ARN"
        } else {
            "read it from the environment at run time (an EB environment property, or \"secrets\" with a Secrets Manager or SSM valueFrom ARN) instead of writing it in the command"
        };
        let at = locate(text, &field);
        out.push(
            Finding::new(rule, file, field, message, hint)
                .at(at)
                .with_secret(secret),
        );
    }
    out
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}

/// A dependsOn cycle as container names, first repeated at the end (`a -> b -> a`).
fn depends_on_cycle(d: &Dockerrun) -> Option<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = d
        .container_definitions
        .iter()
        .filter_map(|c| {
            Some((
                c.name.as_deref()?,
                c.depends_on
                    .iter()
                    .map(|x| x.container_name.as_str())
                    .collect(),
            ))
        })
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = BTreeMap::<&str, u8>::new();
    let mut stack = Vec::new();
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let from = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            if edges.contains_key(m) {
                if let Some(c) = visit(m, edges, state, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for n in edges.keys() {
        if let Some(c) = visit(n, &edges, &mut state, &mut stack) {
            return Some(c);
        }
    }
    None
}
