//! Static binaries for `FROM scratch` images: a build context that is a Cargo package.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Config;

/// A build context that is a Cargo package gets a static binary first: the package is
/// built for the host's gnu target with `-C target-feature=+crt-static` and copied to
/// `<context>/bin/<package>`, which its Dockerfile copies into a `FROM scratch` image.
/// Returns the binaries it wrote.
pub fn build_static_binaries(config: &Config) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, image, build) in config.built_images() {
        // A git source is built from its own tree only, never with this workspace's cargo.
        if image.source.is_some() {
            continue;
        }
        let context = config.resolve(&build.context);
        let manifest = context.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let doc: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let package = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{} has no [package] name", manifest.display()))?
            .to_string();
        let triple = host_triple()?;
        tracing::info!(
            "building the static binary {package} for image {name} ({triple}, crt-static)"
        );
        let built = build_static(&config.root, &package, &package, &triple)
            .with_context(|| format!("cannot build the context of image {name}"))?;
        let dest_dir = context.join("bin");
        std::fs::create_dir_all(&dest_dir)
            .with_context(|| format!("cannot create {}", dest_dir.display()))?;
        let dest = dest_dir.join(&package);
        std::fs::copy(&built, &dest)
            .with_context(|| format!("cannot copy {} to {}", built.display(), dest.display()))?;
        written.push(dest);
    }
    Ok(written)
}

/// The variables cargo sets for a crate it builds or runs (prefixes).
const CRATE_VARS: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "OUT_DIR",
];

/// Builds the binary `bin` of `package` in the workspace at `workspace`, statically linked
/// (`-C target-feature=+crt-static`, symbols stripped), in release mode for `triple`; returns
/// its path under the target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
/// Cargo's own caching makes a second build of unchanged sources a no-op.
pub fn build_static(workspace: &Path, package: &str, bin: &str, triple: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(&cargo);
    // What cargo sets for the crate that runs this code (a test, `cargo run`) is not for
    // the nested build: build scripts that watch such variables would see them change
    // between a shell and a test and rebuild half the dependency tree each time.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if CRATE_VARS.iter().any(|p| name.starts_with(p)) {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--package",
            package,
            "--bin",
            bin,
            "--target",
            triple,
        ])
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+crt-static\x1f-Cstrip=symbols",
        )
        .env_remove("RUSTFLAGS")
        .status()
        .with_context(|| format!("cannot run {cargo} build for the package {package}"))?;
    if !status.success() {
        bail!("cargo build of {bin} (package {package}, {triple}, crt-static) failed; see the compiler output above");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok(target_dir.join(triple).join("release").join(bin))
}

/// The host's target triple, from `rustc -vV`.
pub fn host_triple() -> Result<String> {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run `rustc -vV` to learn the host target")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("`rustc -vV` printed no host line")
}
