//! `verify-agent`: the `where = "instance"` checks of an environment, run on the Elastic
//! Beanstalk instance by the postdeploy hook that the pipeline's bundle stage adds.
//!
//!     get-config environment | verify-agent --checks .platform/verify/checks.json --properties -
//!
//! Prints the check table (as `cargo xtask verify` does) and one report line for the pipeline
//! (`verify-agent report: {…}`); exits 0 when every required check passed, 1 when one did
//! not, 2 when the check list or the properties cannot be read.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use checks::agent::{self, AgentChecks};

const USAGE: &str =
    "usage: verify-agent --checks FILE --properties FILE (`-` reads the properties from stdin)";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("verify-agent: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let mut checks_file = None;
    let mut properties_file = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--checks" => checks_file = args.next(),
            "--properties" => properties_file = args.next(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(true);
            }
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    let (Some(checks_file), Some(properties_file)) = (checks_file, properties_file) else {
        bail!("{USAGE}");
    };
    let text = std::fs::read_to_string(&checks_file)
        .with_context(|| format!("cannot read the check list {checks_file}"))?;
    let list = AgentChecks::parse(&checks_file, &text)?;
    let props = if properties_file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the environment properties from stdin")?;
        agent::parse_properties("the environment properties (stdin)", &text)?
    } else {
        let text = std::fs::read_to_string(&properties_file)
            .with_context(|| format!("cannot read the environment properties {properties_file}"))?;
        agent::parse_properties(&properties_file, &text)?
    };
    let lookup = |name: &str| props.get(name).cloned();
    let checks = list
        .build(&lookup)
        .with_context(|| format!("in {checks_file} (environment {})", list.environment))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(checks::run(&checks));
    print!("{}", agent::render_output(&list.environment, &report));
    Ok(report.passed())
}
