//! The postdeploy hook that runs the `where = "instance"` checks on the Elastic Beanstalk
//! instance: what the bundle stage adds (the static `verify-agent` binary, the check list,
//! the hook script), and how the pipeline reads the agent's report back from EB's logs.
//!
//! The hook reads the environment properties with `get-config environment` and pipes them to
//! the agent; a failed required check fails the hook, so EB reports the deploy as failed and
//! the pipeline rolls back. The agent's output lands in `/var/log/eb-hooks.log`, which EB's
//! tail logs include: after a failed deploy the pipeline finds the report line there and
//! prints the instance's check table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{Config, Where};
use crate::instance::{Arch, InstanceType};

pub use checks::agent::{find_report, render_output, AgentChecks, REPORT_MARKER};

/// The hook script inside the bundle (after the migration hook, `01_migrate.sh`).
pub const HOOK_ENTRY: &str = ".platform/hooks/postdeploy/90_verify.sh";
/// The agent binary inside the bundle.
pub const AGENT_ENTRY: &str = ".platform/verify/verify-agent";
/// The check list inside the bundle.
pub const CHECKS_ENTRY: &str = ".platform/verify/checks.json";
/// A prebuilt agent binary to bundle instead of building one (CI artifacts, tests).
pub const AGENT_VAR: &str = "DEPLOY_VERIFY_AGENT";
/// The program that prints the environment properties (EB's own on the instance; the local
/// target points it at a stand-in).
pub const GET_CONFIG_VAR: &str = "EB_GET_CONFIG";
/// The log file of the instance that holds the hooks' output.
pub const HOOKS_LOG: &str = "/var/log/eb-hooks.log";

/// The hook script: properties from `get-config`, piped to the agent, from the application
/// directory whatever the working directory.
pub const HOOK_SCRIPT: &str = r#"#!/bin/bash
# Written by the pipeline's bundle stage: runs the `where = "instance"` checks of deploy.toml
# on this instance. A failed required check fails this hook, and so the deploy.
set -euo pipefail
cd "$(dirname "$0")/../../.."
"${EB_GET_CONFIG:-/opt/elasticbeanstalk/bin/get-config}" environment \
  | .platform/verify/verify-agent --checks .platform/verify/checks.json --properties -
"#;

/// The check list of environment `env_name`'s instance checks; `None` when it has none.
pub fn instance_checks(config: &Config, env_name: &str) -> Result<Option<AgentChecks>> {
    let env = config.environment(env_name)?;
    let checks: Vec<_> = env
        .checks
        .iter()
        .filter(|c| c.place == Where::Instance)
        .cloned()
        .collect();
    if checks.is_empty() {
        return Ok(None);
    }
    Ok(Some(AgentChecks {
        environment: env_name.to_string(),
        timeout: env.timeouts.verify,
        checks,
    }))
}

/// The architecture of environment `env_name`'s instances, from its `instance_type`
/// (x86_64 when it names none or one this pipeline does not know).
pub fn environment_arch(config: &Config, env_name: &str) -> Result<Arch> {
    let env = config.environment(env_name)?;
    Ok(env
        .instance_type
        .as_deref()
        .and_then(InstanceType::find)
        .map_or(Arch::X86_64, |it| it.arch))
}

/// The Rust target the agent is built for on `arch` instances (static glibc, as EB's Amazon
/// Linux 2 runs it).
pub fn agent_triple(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-unknown-linux-gnu",
        Arch::Aarch64 => "aarch64-unknown-linux-gnu",
    }
}

/// What kind of program the first bytes of a file are: an ELF executable's architecture, or
/// a script (`#!`), as the instance's kernel would read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executable {
    Elf(Option<Arch>),
    Script,
    Unknown,
}

impl Executable {
    pub fn of(head: &[u8]) -> Self {
        const EM_X86_64: u16 = 62;
        const EM_AARCH64: u16 = 183;
        if head.starts_with(b"#!") {
            return Self::Script;
        }
        if !head.starts_with(b"\x7fELF") || head.len() < 20 {
            return Self::Unknown;
        }
        // e_machine at offset 18, in the byte order of EI_DATA (1 little, 2 big endian).
        let m = [head[18], head[19]];
        let machine = if head[5] == 2 {
            u16::from_be_bytes(m)
        } else {
            u16::from_le_bytes(m)
        };
        Self::Elf(match machine {
            EM_X86_64 => Some(Arch::X86_64),
            EM_AARCH64 => Some(Arch::Aarch64),
            _ => None,
        })
    }
}

/// Refuses a prebuilt agent (`DEPLOY_VERIFY_AGENT`) that the instances of `arch` cannot run:
/// an ELF binary for another architecture, or a file that is neither ELF nor a script.
pub fn check_agent_file(path: &Path, arch: Arch) -> Result<()> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {AGENT_VAR}={}", path.display()))?;
    match Executable::of(&head) {
        Executable::Script => Ok(()),
        Executable::Elf(Some(a)) if a == arch => Ok(()),
        Executable::Elf(found) => bail!(
            "{AGENT_VAR}={} is an ELF binary for {}, but the environment's instances are {arch}: build the agent for {} (`cargo build --release -p checks --bin verify-agent --target {}`) or unset {AGENT_VAR}",
            path.display(),
            found.map_or_else(|| "another architecture".to_string(), |a| a.to_string()),
            agent_triple(arch),
            agent_triple(arch),
        ),
        Executable::Unknown => bail!(
            "{AGENT_VAR}={} is not a Linux executable (no ELF header, no #!): point it at a built verify-agent, or unset it to build one",
            path.display()
        ),
    }
}

/// Whether the Rust standard library for `triple` is installed in the toolchain's `sysroot`
/// (`rustc --print sysroot`); without it cargo cannot build for that target.
pub fn target_installed(sysroot: &Path, triple: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(triple)
        .join("lib")
        .is_dir()
}

/// The error for an agent that cannot be built here for `arch`: the target is missing.
fn missing_target(env_name: &str, instance_type: &str, arch: Arch) -> anyhow::Error {
    let triple = agent_triple(arch);
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    );
    // Debian's cross compilers for the two architectures.
    let (linker, package) = match arch {
        Arch::Aarch64 => ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        Arch::X86_64 => ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu"),
    };
    anyhow::anyhow!(
        "environments.{env_name} has `where = \"instance\"` checks and instance_type {instance_type:?} ({arch}): the verify agent must be built for {triple}, whose Rust target is not installed. Either `rustup target add {triple}` and set a linker for it ({linker_var}={linker}, from {package}), or build the agent on an {arch} machine and set {AGENT_VAR} to it, or set `where = \"runner\"` on those checks"
    )
}

/// The agent binary to put into the bundle of environment `env_name`: `DEPLOY_VERIFY_AGENT`
/// when set (refused if its instances cannot run it), else a static build (`crt-static`,
/// stripped) of the `checks` package's `verify-agent` for the instances' architecture.
pub fn agent_binary(config: &Config, env_name: &str) -> Result<PathBuf> {
    let arch = environment_arch(config, env_name)?;
    if let Some(path) = std::env::var_os(AGENT_VAR).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{AGENT_VAR} names {}, which is not a file: unset it to build the agent, or point it at a built verify-agent",
                path.display()
            );
        }
        check_agent_file(&path, arch)?;
        return Ok(path);
    }
    let triple = agent_triple(arch);
    let sysroot = rustc_sysroot()?;
    if !target_installed(&sysroot, triple) {
        let env = config.environment(env_name)?;
        return Err(missing_target(
            env_name,
            env.instance_type.as_deref().unwrap_or("(none)"),
            arch,
        ));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the pipeline's workspace has no root")?;
    tracing::info!("building the verify agent ({triple}, crt-static)");
    crate::docker::binaries::build_static(workspace, "checks", "verify-agent", triple).with_context(
        || format!("cannot build the verify agent (or set {AGENT_VAR} to a built verify-agent)"),
    )
}

/// The toolchain's sysroot, from the `rustc` that cargo would run.
fn rustc_sysroot() -> Result<PathBuf> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("cannot run {rustc} to build the verify agent (or set {AGENT_VAR} to a built verify-agent)"))?;
    if !out.status.success() {
        bail!(
            "{rustc} --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The generated entries of the bundle for environment `env_name` (name, bytes, mode), in
/// name order; none when the environment has no instance checks.
pub fn bundle_entries(config: &Config, env_name: &str) -> Result<Vec<(String, Vec<u8>, u32)>> {
    let Some(list) = instance_checks(config, env_name)? else {
        return Ok(Vec::new());
    };
    let agent = agent_binary(config, env_name)?;
    let binary = std::fs::read(&agent)
        .with_context(|| format!("cannot read the verify agent {}", agent.display()))?;
    let json = serde_json::to_vec_pretty(&list).context("cannot write the check list")?;
    let mut entries = vec![
        (
            HOOK_ENTRY.to_string(),
            HOOK_SCRIPT.as_bytes().to_vec(),
            0o755,
        ),
        (AGENT_ENTRY.to_string(), binary, 0o755),
        (CHECKS_ENTRY.to_string(), json, 0o644),
    ];
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// The names of the environment variables (properties) the checks of `list` read.
pub fn variable_names(list: &AgentChecks) -> Vec<String> {
    let mut names: Vec<String> = list
        .checks
        .iter()
        .flat_map(|c| c.kind.variables())
        .map(|(_, name)| name.to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Writes the bundle's generated entries under `dir` (as they are unzipped on the instance),
/// with their modes; returns the hook script's path, or `None` without instance checks.
pub fn write_entries(config: &Config, env_name: &str, dir: &Path) -> Result<Option<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let entries = bundle_entries(config, env_name)?;
    if entries.is_empty() {
        return Ok(None);
    }
    for (name, bytes, mode) in &entries {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    }
    Ok(Some(dir.join(HOOK_ENTRY)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 20 bytes of a 64-bit little-endian ELF executable for machine `em`.
    fn elf_head(em: u16) -> Vec<u8> {
        let mut h = b"\x7fELF\x02\x01\x01\x00".to_vec();
        h.resize(16, 0);
        h.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
        h.extend_from_slice(&em.to_le_bytes());
        h
    }

    fn file_with(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn executables_are_told_apart_by_their_header() {
        assert_eq!(
            Executable::of(&elf_head(62)),
            Executable::Elf(Some(Arch::X86_64))
        );
        assert_eq!(
            Executable::of(&elf_head(183)),
            Executable::Elf(Some(Arch::Aarch64))
        );
        assert_eq!(Executable::of(&elf_head(40)), Executable::Elf(None)); // 32-bit ARM
        assert_eq!(Executable::of(b"#!/bin/sh\nexit 0\n"), Executable::Script);
        assert_eq!(Executable::of(b"MZ\x90\x00"), Executable::Unknown);
        assert_eq!(Executable::of(b"\x7fELF"), Executable::Unknown);
    }

    #[test]
    fn a_prebuilt_agent_must_run_on_the_instances_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let x86 = file_with(dir.path(), "x86", &elf_head(62));
        let arm = file_with(dir.path(), "arm", &elf_head(183));
        let script = file_with(dir.path(), "script", b"#!/bin/sh\n");
        let text = file_with(dir.path(), "text", b"not a program");

        check_agent_file(&x86, Arch::X86_64).unwrap();
        check_agent_file(&arm, Arch::Aarch64).unwrap();
        check_agent_file(&script, Arch::Aarch64).unwrap();

        let err = format!("{:#}", check_agent_file(&x86, Arch::Aarch64).unwrap_err());
        assert!(err.contains("ELF binary for x86_64"), "{err}");
        assert!(err.contains("instances are aarch64"), "{err}");
        assert!(err.contains("--target aarch64-unknown-linux-gnu"), "{err}");
        let err = format!("{:#}", check_agent_file(&arm, Arch::X86_64).unwrap_err());
        assert!(err.contains("ELF binary for aarch64"), "{err}");
        let err = format!("{:#}", check_agent_file(&text, Arch::X86_64).unwrap_err());
        assert!(err.contains("not a Linux executable"), "{err}");
        assert!(err.contains(&text.display().to_string()), "{err}");
    }

    #[test]
    fn an_installed_target_is_found_in_the_sysroot() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!target_installed(dir.path(), "aarch64-unknown-linux-gnu"));
        std::fs::create_dir_all(dir.path().join("lib/rustlib/aarch64-unknown-linux-gnu/lib"))
            .unwrap();
        assert!(target_installed(dir.path(), "aarch64-unknown-linux-gnu"));
        assert!(!target_installed(dir.path(), "x86_64-unknown-linux-gnu"));
        // The toolchain that runs this test can build for its own target.
        let sysroot = rustc_sysroot().unwrap();
        let host = crate::docker::binaries::host_triple().unwrap();
        assert!(target_installed(&sysroot, &host), "{}", sysroot.display());
    }

    #[test]
    fn a_missing_target_says_how_to_get_the_agent() {
        let err = missing_target("production", "t4g.large", Arch::Aarch64).to_string();
        assert!(err.contains("environments.production"), "{err}");
        assert!(err.contains("\"t4g.large\" (aarch64)"), "{err}");
        assert!(
            err.contains("rustup target add aarch64-unknown-linux-gnu"),
            "{err}"
        );
        assert!(
            err.contains("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc"),
            "{err}"
        );
        assert!(err.contains(AGENT_VAR), "{err}");
        // From an aarch64 machine to x86_64 instances: the other cross compiler.
        let err = missing_target("staging", "t3.medium", Arch::X86_64).to_string();
        assert!(
            err.contains("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc"),
            "{err}"
        );
        assert!(err.contains("where = \"runner\""), "{err}");
    }
}
