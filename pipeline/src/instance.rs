//! EC2 instance types an environment may run on, and the memory ECS can place containers in.
//!
//! The ECS agent registers less memory than the instance type advertises: the kernel and the
//! platform take their share (AWS's own example: an m4.large has 8,192 MiB installed and
//! registers 7,985 MiB, 2.5% less), and on Elastic Beanstalk the Docker daemon, the ECS agent,
//! healthd and the log agents run beside the containers. [`InstanceType::schedulable_mib`]
//! models this as 3% of the installed memory plus [`AGENT_RESERVE_MIB`], which errs on the safe
//! side of what real instances register.

use std::fmt;

/// MiB kept for the ECS agent, the Docker daemon and EB's own daemons on the instance.
pub const AGENT_RESERVE_MIB: u64 = 128;

/// A known instance type: its name, installed memory and CPU architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceType {
    pub name: String,
    /// Installed memory, MiB.
    pub memory_mib: u64,
    pub arch: Arch,
}

/// CPU architecture of an instance type (Graviton families end in `g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        })
    }
}

/// Sizes and their installed memory in GiB, per family memory ratio.
const BURSTABLE: &[(&str, f64)] = &[
    ("nano", 0.5),
    ("micro", 1.0),
    ("small", 2.0),
    ("medium", 4.0),
    ("large", 8.0),
    ("xlarge", 16.0),
    ("2xlarge", 32.0),
];
/// General purpose (m-family): 4 GiB per vCPU.
const GENERAL: &[(&str, f64)] = &[
    ("large", 8.0),
    ("xlarge", 16.0),
    ("2xlarge", 32.0),
    ("4xlarge", 64.0),
    ("8xlarge", 128.0),
];
/// Compute optimised (c-family): 2 GiB per vCPU.
const COMPUTE: &[(&str, f64)] = &[
    ("large", 4.0),
    ("xlarge", 8.0),
    ("2xlarge", 16.0),
    ("4xlarge", 32.0),
    ("9xlarge", 72.0),
];
/// Memory optimised (r-family): 8 GiB per vCPU.
const MEMORY: &[(&str, f64)] = &[
    ("large", 16.0),
    ("xlarge", 32.0),
    ("2xlarge", 64.0),
    ("4xlarge", 128.0),
];

/// The families this table knows, with their sizes.
const FAMILIES: &[(&str, &[(&str, f64)])] = &[
    ("t2", BURSTABLE),
    ("t3", BURSTABLE),
    ("t3a", BURSTABLE),
    ("t4g", BURSTABLE),
    ("m5", GENERAL),
    ("m5a", GENERAL),
    ("m6a", GENERAL),
    ("m6g", GENERAL),
    ("m6i", GENERAL),
    ("m7a", GENERAL),
    ("m7g", GENERAL),
    ("m7i", GENERAL),
    ("c5", COMPUTE),
    ("c5a", COMPUTE),
    ("c6a", COMPUTE),
    ("c6g", COMPUTE),
    ("c6i", COMPUTE),
    ("c7a", COMPUTE),
    ("c7g", COMPUTE),
    ("c7i", COMPUTE),
    ("r5", MEMORY),
    ("r6g", MEMORY),
    ("r6i", MEMORY),
    ("r7g", MEMORY),
];

impl InstanceType {
    /// The instance type called `name` (`t3.medium`), if the table knows it.
    pub fn find(name: &str) -> Option<InstanceType> {
        let (family, size) = name.trim().split_once('.')?;
        let (family_name, sizes) = FAMILIES.iter().find(|(f, _)| *f == family)?;
        let (size_name, gib) = sizes.iter().find(|(s, _)| *s == size)?;
        let arch = if family_name.ends_with('g') {
            Arch::Aarch64
        } else {
            Arch::X86_64
        };
        Some(InstanceType {
            name: format!("{family_name}.{size_name}"),
            memory_mib: (gib * 1024.0) as u64,
            arch,
        })
    }

    /// Memory the ECS agent can place containers in, MiB (see the module documentation).
    pub fn schedulable_mib(&self) -> u64 {
        self.memory_mib - self.memory_mib * 3 / 100 - AGENT_RESERVE_MIB
    }
}

/// The families the table knows (`t3`, `m7g`, ...), for error messages.
pub fn known_families() -> Vec<&'static str> {
    FAMILIES.iter().map(|(f, _)| *f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sizes_and_what_ecs_can_place() {
        let medium = InstanceType::find("t3.medium").unwrap();
        assert_eq!(medium.memory_mib, 4096);
        assert_eq!(medium.schedulable_mib(), 4096 - 122 - 128);
        assert_eq!(medium.arch, Arch::X86_64);
        let large = InstanceType::find("m7g.large").unwrap();
        assert_eq!(large.memory_mib, 8192);
        assert_eq!(large.arch, Arch::Aarch64);
        // AWS's example: an m4.large (8 GiB) registers 7,985 MiB; we stay below that.
        assert!(large.schedulable_mib() < 7985);
        assert_eq!(InstanceType::find("t3.micro").unwrap().memory_mib, 1024);
        assert_eq!(InstanceType::find("c6i.large").unwrap().memory_mib, 4096);
        assert_eq!(InstanceType::find("t3.huge"), None);
        assert_eq!(InstanceType::find("x9.large"), None);
        assert_eq!(InstanceType::find("t3"), None);
    }
}
