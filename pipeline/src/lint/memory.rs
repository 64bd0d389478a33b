//! Whether the containers fit the environment's instance type (`instance_type` in deploy.toml).
//!
//! EB's ECS platform runs every container of the file as one task on each instance. ECS places
//! the task only when the instance's registered memory holds the sum, over the containers, of
//! `memoryReservation` where set, else `memory`: a bundle over that sum can never start
//! ([`DR_INSTANCE_MEMORY`], an error). The hard `memory` caps may add up to more (containers
//! share what is free above their reservations), but then a busy moment can exhaust the
//! instance and the kernel kills a container: [`DR_MEMORY_OVERCOMMIT`], a warning.

use std::path::Path;

use super::*;
use crate::dockerrun::Dockerrun;
use crate::instance::{self, InstanceType};

/// Memory findings of `d` on `instance_type` (nothing when the environment sets none).
pub fn lint_memory(file: &Path, text: &str, d: &Dockerrun, instance_type: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(it) = InstanceType::find(instance_type) else {
        out.push(Finding::new(
            DR_MEMORY_OVERCOMMIT,
            file,
            "",
            format!("instance type {instance_type:?} is not in the memory table, so the containers' memory was not checked against it"),
            format!("use a size of a known family ({}), or remove `instance_type` from the environment", instance::known_families().join(", ")),
        ));
        return out;
    };
    let available = it.schedulable_mib();
    let mut placed = 0u64;
    let mut hard = 0u64;
    let mut uncapped = Vec::new();
    for (i, c) in d.container_definitions.iter().enumerate() {
        let memory = c.memory.unwrap_or(0);
        let reservation = c.memory_reservation.unwrap_or(0);
        if memory > 0 && reservation > memory {
            let field = format!("containerDefinitions[{i}].memoryReservation");
            out.push(
                Finding::new(
                    DR_INSTANCE_MEMORY,
                    file,
                    field.clone(),
                    format!("container `{}`: memoryReservation {reservation} MiB is above its hard limit memory {memory} MiB; ECS refuses such a task", c.display_name(i)),
                    "make memoryReservation (the soft limit) at most memory (the hard cap)",
                )
                .at(locate(text, &field)),
            );
        }
        placed += if reservation > 0 { reservation } else { memory };
        if memory > 0 {
            hard += memory;
        } else {
            uncapped.push(c.display_name(i));
        }
    }
    let at = locate(text, "containerDefinitions");
    if placed > available {
        out.push(
            Finding::new(
                DR_INSTANCE_MEMORY,
                file,
                "containerDefinitions",
                format!(
                    "the containers reserve {placed} MiB (memoryReservation, else memory) but a {} can place about {available} MiB ({} MiB installed, minus the kernel's share and {} MiB for the ECS agent): the task would never start",
                    it.name, it.memory_mib, instance::AGENT_RESERVE_MIB
                ),
                "lower the containers' memory, give them memoryReservation soft limits below their hard caps, or pick a larger instance_type",
            )
            .at(at),
        );
    } else if hard > available || !uncapped.is_empty() {
        let what = if uncapped.is_empty() {
            format!("the hard memory limits add up to {hard} MiB, more than the {available} MiB a {} can place", it.name)
        } else {
            format!("container(s) {} have no hard memory limit, so together they can use more than the {available} MiB a {} can place", uncapped.join(", "), it.name)
        };
        out.push(
            Finding::new(
                DR_MEMORY_OVERCOMMIT,
                file,
                "containerDefinitions",
                format!("{what}: when they all grow at once the kernel kills a container"),
                "keep the hard caps' sum within the instance, or accept the risk for non-essential containers",
            )
            .at(at),
        );
    }
    out
}
