//! `docs`: regenerate the reference pages from the code and check every code block of the
//! documentation (`--check` compares instead of writing; a test runs it).

use anyhow::{bail, Result};
use clap::{CommandFactory, Parser};
use pipeline::docs::{CliHelp, DocsRequest};

use crate::Global;

/// Regenerate docs/cli.md, docs/configuration.md and docs/lint-rules.md from the code, and
/// check every TOML and shell block of README.md and docs/.
#[derive(clap::Args, Debug)]
pub struct Cmd {
    /// Write nothing: fail when a generated section is stale (and show the difference).
    #[arg(long)]
    check: bool,
}

impl Cmd {
    pub fn run(self, global: &Global) -> Result<()> {
        let report = pipeline::docs::run(&request(self.check)?)?;
        global.emit_json(&report)?;
        for file in &report.written {
            tracing::info!("wrote {file}");
        }
        for problem in &report.problems {
            tracing::error!("{problem}");
        }
        if !report.stale.is_empty() {
            bail!(
                "{} generated from the code differ from the committed copy (shown above): run `cargo xtask docs` and commit the result",
                report.stale.join(", ")
            );
        }
        if !report.problems.is_empty() {
            bail!(
                "{} problem(s) in the documentation's code blocks and commands (listed above)",
                report.problems.len()
            );
        }
        let generated = if report.written.is_empty() {
            "generated sections up to date"
        } else {
            "generated sections rewritten"
        };
        tracing::info!(
            "docs: {generated}, {} code blocks checked",
            report.blocks_checked
        );
        Ok(())
    }
}

fn request(check: bool) -> Result<DocsRequest<'static>> {
    Ok(DocsRequest {
        root: crate::test::workspace_root()?,
        check,
        cli: cli_help(),
        validate_cli: &validate,
    })
}

/// The long help of every command, depth first, as `--help` prints it (environment values
/// hidden, so that the page does not depend on the shell it was generated in).
pub fn cli_help() -> Vec<CliHelp> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<CliHelp>) {
        let mut cmd = cmd.clone().mut_args(|a| a.hide_env_values(true));
        out.push(CliHelp {
            command: path.to_string(),
            help: cmd.render_long_help().to_string(),
        });
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }
    let mut root = crate::Cli::command();
    root.build();
    let mut out = Vec::new();
    walk(&root, "cargo xtask", &mut out);
    out
}

/// Parses `cargo xtask ARGS…` with the real CLI.
fn validate(args: &[String]) -> std::result::Result<(), String> {
    let argv = std::iter::once("cargo xtask".to_string()).chain(args.iter().cloned());
    match crate::Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed reference pages match the code, and every code block of README.md and
    /// docs/ loads, parses and names real commands and flags.
    #[test]
    fn committed_docs_are_up_to_date_and_their_code_blocks_valid() {
        let report = pipeline::docs::run(&request(true).unwrap()).unwrap();
        assert!(
            report.stale.is_empty(),
            "stale: {:?}: run `cargo xtask docs` and commit the result",
            report.stale
        );
        assert!(
            report.problems.is_empty(),
            "wrong code blocks:\n{}",
            report.problems.join("\n")
        );
        assert!(report.blocks_checked > 10, "{report:?}");
    }

    #[test]
    fn the_cli_reference_covers_every_command() {
        let help = cli_help();
        let names: Vec<&str> = help.iter().map(|h| h.command.as_str()).collect();
        for command in [
            "cargo xtask",
            "cargo xtask deploy",
            "cargo xtask local up",
            "cargo xtask docs",
        ] {
            assert!(names.contains(&command), "{command} missing from {names:?}");
        }
        assert!(validate(&["deploy".into(), "--dry-run".into()]).is_ok());
        let err = validate(&["deploy".into(), "--no-such-flag".into()]).unwrap_err();
        assert!(err.contains("--no-such-flag"), "{err}");
    }
}
