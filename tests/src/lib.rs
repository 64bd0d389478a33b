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
