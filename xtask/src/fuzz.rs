//! `fuzz`: run the fuzz targets under `fuzz/` (cargo-fuzz on a nightly toolchain), one after
//! the other. Not part of `cargo xtask test`, which stays on the stable toolchain.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The targets of `fuzz/Cargo.toml`.
pub const TARGETS: [&str; 6] = [
    "template_render",
    "lint_dockerrun",
    "lint_ebextension",
    "config_parse",
    "dotenv_parse",
    "url_parse",
];

/// Fuzz the parsers (needs `cargo-fuzz` and a nightly toolchain; see docs/fuzzing.md).
#[derive(clap::Args, Debug)]
pub struct Cmd {
    /// The target to run (default: every target, one after the other).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// How long to run each target, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

impl Cmd {
    pub fn run(self) -> Result<()> {
        let fuzz = crate::test::workspace_root()?.join("fuzz");
        let targets: Vec<&str> = match &self.target {
            Some(t) => vec![t.as_str()],
            None => TARGETS.to_vec(),
        };
        for target in targets {
            let corpus = fuzz.join("corpus").join(target);
            std::fs::create_dir_all(&corpus)
                .with_context(|| format!("cannot create {}", corpus.display()))?;
            let mut cmd = Command::new("cargo");
            // The stable toolchain `cargo xtask` runs with must not leak into the nightly build.
            for var in ["CARGO", "RUSTC", "RUSTDOC", "RUSTUP_TOOLCHAIN", "RUSTFLAGS"] {
                cmd.env_remove(var);
            }
            cmd.current_dir(&fuzz)
                .args(["+nightly", "fuzz", "run", "--sanitizer", "none", target])
                .arg(&corpus)
                .arg(fuzz.join("seeds").join(target))
                .arg("--")
                .arg(format!("-max_total_time={}", self.seconds));
            tracing::info!("fuzzing {target} for {}s", self.seconds);
            let status = cmd.status().context(
                "cannot run `cargo +nightly fuzz`: install a nightly toolchain and cargo-fuzz (docs/fuzzing.md)",
            )?;
            if !status.success() {
                bail!(
                    "the fuzz target {target} failed: the input is under fuzz/artifacts/{target}/\n  hint: reproduce with `cargo +nightly fuzz run --sanitizer none {target} fuzz/artifacts/{target}/FILE` in fuzz/, fix it, and add the input as a regression test"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    #[test]
    fn targets_are_the_fuzz_crates_binaries_each_with_seeds() {
        let fuzz = crate::test::workspace_root().unwrap().join("fuzz");
        let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
        let bins: Vec<&str> = manifest
            .split("[[bin]]")
            .skip(1)
            .filter_map(|bin| {
                bin.lines()
                    .find_map(|l| l.strip_prefix("name = "))
                    .map(|n| n.trim_matches('"'))
            })
            .collect();
        assert_eq!(bins, TARGETS);
        for target in TARGETS {
            let seeds = std::fs::read_dir(fuzz.join("seeds").join(target)).unwrap();
            assert!(
                seeds.count() >= 2,
                "{target}: a few seeds in fuzz/seeds/{target}"
            );
        }
    }
}
