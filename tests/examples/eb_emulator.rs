//! The EB emulator on its own, for rehearsing the AWS path offline or pointing other tools
//! (the AWS CLI, the EB CLI) at it:
//!
//! `cargo run -p integration --example eb-emulator -- --port 4580 [--scenario FILE]
//!  [--s3-endpoint URL] [--bucket NAME]`
//!
//! Prints `EB emulator listening on http://127.0.0.1:PORT`, then serves until Ctrl-C.
//! Versions created with `Process=true` are read from the S3 endpoint (moto, default
//! `$AWS_ENDPOINT_URL_S3`). See docs/eb-emulator.md.

use std::path::PathBuf;

use anyhow::{bail, Context};
use integration::eb_emulator::{EbEmulator, Scenario};

struct Args {
    port: u16,
    scenario: Option<PathBuf>,
    s3_endpoint: Option<String>,
    bucket: Option<String>,
}

const USAGE: &str =
    "usage: eb-emulator --port N [--scenario FILE] [--s3-endpoint URL] [--bucket NAME]";

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 0,
        scenario: None,
        s3_endpoint: std::env::var("AWS_ENDPOINT_URL_S3").ok(),
        bucket: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                a.port = v
                    .parse()
                    .with_context(|| format!("--port {v}: not a port number\n{USAGE}"))?;
            }
            "--scenario" => a.scenario = Some(value()?.into()),
            "--s3-endpoint" => a.s3_endpoint = Some(value()?),
            "--bucket" => a.bucket = Some(value()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let scenario = match &a.scenario {
        Some(p) => Scenario::load(p)?,
        None => Scenario::default(),
    };
    let bucket = a
        .bucket
        .or(scenario.bucket.clone())
        .unwrap_or_else(|| "elasticbeanstalk-us-west-2-123456789012".into());
    // Without an S3 endpoint, processing a version fails the way EB does when it cannot
    // read the bundle.
    let s3 = integration::aws::s3(a.s3_endpoint.as_deref().unwrap_or("http://127.0.0.1:9"));
    let emu = EbEmulator::start_on(&format!("127.0.0.1:{}", a.port), s3, &bucket)
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", a.port))?;
    scenario.apply(&emu)?;
    println!("EB emulator listening on {}", emu.endpoint);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
