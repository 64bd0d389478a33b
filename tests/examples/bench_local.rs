//! Benchmark: the README's first command, phase by phase, on the local Docker Engine.
//!
//! `cargo run -p integration --example bench_local [REPLACEMENTS]` (the time is the engine's,
//! not the code's: a debug build measures the same)
//!
//! Uses the repository's `deploy.toml` environment `local` (host ports 8080, 13555, 10000,
//! 10003 must be free) and removes the stack at the end.

use std::time::{Duration, Instant};

use pipeline::config::{Config, Overrides};
use pipeline::docker::{self, Engine, OutputMode};
use pipeline::local::{self, prepare, LocalOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let replacements: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let root = integration::workspace_root();
    let config = Config::load(&root.join("deploy.toml"), &Overrides::default())?;
    let release = "bench";
    let stack = local::stack_name(&config, "local");

    let t = Instant::now();
    let cfg = config.clone();
    tokio::task::spawn_blocking(move || docker::build_static_binaries(&cfg)).await??;
    let static_build = t.elapsed();

    let engine = Engine::connect(None).await?;
    let t = Instant::now();
    let fixed = pipeline::release::Release::fixed(release, "unknown");
    prepare::build_images(&engine, &config, &fixed, OutputMode::Plain).await?;
    let image_build = t.elapsed();

    let options = LocalOptions {
        release: Some(release.into()),
        skip_build: true,
        ..Default::default()
    };
    local::down(None, &stack).await?;
    let t = Instant::now();
    let first = local::deploy_local(&config, "local", &options).await?;
    let first_deploy = t.elapsed();
    let containers = first.run.map_or(0, |r| r.containers.len());

    let mut replace = Vec::new();
    for _ in 0..replacements {
        let t = Instant::now();
        local::deploy_local(&config, "local", &options).await?;
        replace.push(t.elapsed());
    }
    let t = Instant::now();
    local::down(None, &stack).await?;
    let down = t.elapsed();

    replace.sort();
    let median = replace.get(replace.len() / 2).copied().unwrap_or_default();
    let max = replace.last().copied().unwrap_or_default();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!("local target, deploy.toml environment `local`, {containers} containers");
    println!("{:<44} {:>10}", "phase", "time");
    println!(
        "{:<44} {:>10}",
        "static demo binary (cargo, cached)",
        ms(static_build)
    );
    println!(
        "{:<44} {:>10}",
        "demo image build (FROM scratch)",
        ms(image_build)
    );
    println!(
        "{:<44} {:>10}",
        "first deploy (bundle, run, hook, verify)",
        ms(first_deploy)
    );
    println!(
        "{:<44} {:>10}",
        format!("replace, median of {replacements}"),
        ms(median)
    );
    println!(
        "{:<44} {:>10}",
        format!("replace, max of {replacements}"),
        ms(max)
    );
    println!("{:<44} {:>10}", "down", ms(down));
    Ok(())
}
