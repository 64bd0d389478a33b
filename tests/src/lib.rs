//! Support for the integration tests: addresses of the test services started by
//! `tests/services/up.sh` (through `cargo xtask test`), and the test-only EB emulator.

pub mod services {
    /// The value of a variable that `tests/services/up.sh` exports, or a panic that says how
    /// to start the services.
    pub fn env(key: &str) -> String {
        std::env::var(key).unwrap_or_else(|_| {
            panic!(
                "{key} is not set: the integration tests need the test services; run `cargo xtask test`, \
                 or `bash tests/services/up.sh` and export the variables of target/test-services/env"
            )
        })
    }

    /// A short random suffix so that concurrent tests never share a name.
    pub fn unique(prefix: &str) -> String {
        format!("{prefix}-{:08x}", fastrand::u32(..))
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A command running the `xtask` binary built next to this test binary
/// (`cargo test --workspace --all-targets` builds it).
pub fn xtask() -> std::process::Command {
    let exe = std::env::current_exe().expect("current test binary");
    // target/<profile>/deps/<test> → target/<profile>/xtask
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .join("xtask");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p xtask` (cargo xtask test does)",
        bin.display()
    );
    let mut cmd = std::process::Command::new(bin);
    cmd.env_remove("DEPLOY_CONFIG")
        .env_remove("DEPLOY_ENV")
        .env_remove("DEPLOY_RELEASE")
        .env("NO_COLOR", "1");
    cmd
}
