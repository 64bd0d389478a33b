//! Benchmark: time to render, lint and zip Antenna's bundle (no I/O but reading the inputs).
//!
//! `cargo run --release -p integration --example bench_bundle [ITERATIONS]`

use std::time::{Duration, Instant};

use pipeline::bundle::{collect_inputs, lint_inputs, zip_bundle};
use pipeline::config::{Config, Overrides};
use pipeline::release::Release;
use pipeline::template::{render_file, RenderContext};

fn main() -> anyhow::Result<()> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    let root = integration::workspace_root();
    let overrides = Overrides {
        account: Some("123456789012".into()),
        ..Default::default()
    };
    let config = Config::load(&root.join("deploy.toml"), &overrides)?;
    let env = config.environment("staging")?;
    let release = Release::fixed("v1.2.3", "0123456789abcdef0123456789abcdef01234567");
    let ctx = RenderContext::for_environment(&config, "staging", env, &release, None);

    let (mut render, mut lint, mut zip) = (Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..iterations {
        let t = Instant::now();
        let rendered = render_file(&config, &ctx)?;
        render.push(t.elapsed());

        let t = Instant::now();
        let inputs = collect_inputs(&config)?;
        let (_, report) = lint_inputs(&config, env, &ctx, &inputs)?;
        assert_eq!(report.errors(), 0);
        lint.push(t.elapsed());

        let t = Instant::now();
        size = zip_bundle(&rendered.json, &inputs)?.len();
        zip.push(t.elapsed());
    }
    println!("Antenna bundle (staging), {iterations} iterations, {size} bytes zipped");
    println!(
        "{:<28} {:>10} {:>10} {:>10}",
        "phase", "median", "p95", "max"
    );
    for (name, mut samples) in [
        ("render", render),
        ("collect + render + lint", lint),
        ("zip", zip),
    ] {
        samples.sort();
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<28} {:>10} {:>10} {:>10}",
            fmt(pick(0.5)),
            fmt(pick(0.95)),
            fmt(*samples.last().unwrap())
        );
    }
    Ok(())
}

fn fmt(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
