//! Benchmark: the deploy pipeline against moto and the EB emulator, per scenario: EB calls
//! made, average request rate, and how long after the emulator finished the scenario the
//! pipeline reported its verdict.
//!
//! Time is compressed SCALE times (poll intervals, deadlines, scripted durations and the rate
//! limit alike); figures are printed in real-time equivalents (scaled back) and as measured.
//!
//! `bash tests/services/up.sh; set -a; . target/test-services/env; set +a`
//! `cargo run -p integration --example bench_deploy [SCALE]` (the figures are about calls and
//! latency, not CPU: the debug build measures the same)

use std::time::{Duration, Instant};

use integration::deploy_world::{Settings, World};
use integration::eb_emulator::{Fault, Script, Step, Which};
use pipeline::eb::Pacing;

struct Scenario {
    name: &'static str,
    /// Real-time length of the scripted deploy.
    took: Duration,
    kind: Kind,
}

enum Kind {
    Success,
    FailureEvent,
    RedAfterCompleted,
    Throttled,
    LockWait,
    Stuck,
}

fn main() -> anyhow::Result<()> {
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scenarios = [
        Scenario {
            name: "success (3 min deploy)",
            took: Duration::from_secs(180),
            kind: Kind::Success,
        },
        Scenario {
            name: "slow success (12 min)",
            took: Duration::from_secs(720),
            kind: Kind::Success,
        },
        Scenario {
            name: "failure event at 2 min",
            took: Duration::from_secs(120),
            kind: Kind::FailureEvent,
        },
        Scenario {
            name: "Red after completed",
            took: Duration::from_secs(180),
            kind: Kind::RedAfterCompleted,
        },
        Scenario {
            name: "throttled x10 (3 min)",
            took: Duration::from_secs(180),
            kind: Kind::Throttled,
        },
        Scenario {
            name: "lock wait 2 min + 3 min",
            took: Duration::from_secs(180),
            kind: Kind::LockWait,
        },
        Scenario {
            name: "stuck past 30 min deadline",
            took: Duration::from_secs(7200),
            kind: Kind::Stuck,
        },
    ];
    println!("time compressed {scale}x; figures in real-time equivalents (measured in brackets)");
    println!(
        "{:<28} {:<16} {:>6} {:>9} {:>18} {:>10} {:>22}",
        "scenario", "verdict", "calls", "throttled", "run", "avg req/s", "reported after finish"
    );
    for s in &scenarios {
        rt.block_on(run(s, scale))?;
    }
    Ok(())
}

fn scaled(d: Duration, scale: f64) -> Duration {
    d.div_f64(scale)
}

fn secs(d: Duration, scale: f64) -> String {
    format!("{:.1}s", d.as_secs_f64() * scale)
}

async fn run(s: &Scenario, scale: f64) -> anyhow::Result<()> {
    let w = World::new().await;
    let ms = scaled(s.took, scale).as_millis() as u64;
    let success = Script::success(scaled(s.took, scale));
    match s.kind {
        Kind::Success | Kind::Throttled => w.emu.script_next_deploy(&w.environment, success),
        Kind::LockWait => {
            w.emu.start_foreign_deploy(
                &w.environment,
                "v-other",
                Script::success(scaled(Duration::from_secs(120), scale)),
            );
            w.emu.script_next_deploy(&w.environment, success);
        }
        Kind::FailureEvent => w.emu.script_next_deploy(
            &w.environment,
            Script::new(vec![
                Step::at_ms(ms / 2).event("INFO", "Deploying new version to instance(s)."),
                Step::at_ms(ms).event(
                    "ERROR",
                    "Instance deployment failed. For details, see 'eb-engine.log'.",
                ),
            ]),
        ),
        Kind::RedAfterCompleted => w.emu.script_next_deploy(
            &w.environment,
            Script::new(vec![Step::at_ms(ms)
                .event("INFO", "Environment update completed successfully.")
                .status("Ready")
                .instances(usize::MAX, Which::Deployed)
                .health("Red", "Severe")]),
        ),
        Kind::Stuck => w.emu.script_next_deploy(
            &w.environment,
            Script::new(vec![Step::at_ms(ms).status("Ready")]),
        ),
    }
    if let Kind::Throttled = s.kind {
        w.emu
            .inject(Some("DescribeEnvironments"), Fault::Throttle, 5);
        w.emu.inject(Some("DescribeEvents"), Fault::Throttle, 5);
    }
    // The default settings, compressed: deadline 30 min, lock wait 10 min, health settle 5 min.
    let fmt = |d: Duration| format!("{}ms", scaled(d, scale).as_millis());
    let deadline = fmt(Duration::from_secs(1800));
    let settle = fmt(Duration::from_secs(300));
    let settings = Settings {
        deploy: Box::leak(deadline.into_boxed_str()),
        lock_wait: Box::leak(fmt(Duration::from_secs(600)).into_boxed_str()),
        health_settle: Box::leak(settle.into_boxed_str()),
        rollback: false,
        ..Settings::default()
    };
    // EB's own throttle (about 2 calls/s, burst 15), compressed like the rest.
    w.emu.set_rate_limit(2.0 * scale, 15);
    let mut req = w.request(&settings);
    req.pacing = Pacing::scaled(scale);
    let started = Instant::now();
    let report = w.run(&req, None).await;
    let reported = Instant::now();
    let took = reported - started;
    let all = w.emu.calls();
    let calls = all.len();
    let throttled = all.iter().filter(|c| c.status == 400).count();
    let rate = calls as f64 / (took.as_secs_f64() * scale);
    let verdict = report
        .deploy
        .as_ref()
        .map_or("none".to_string(), |d| format!("{:?}", d.verdict));
    // The scenario's last scripted step (ours, not the foreign deploy's).
    let after = match w.emu.finishes(&w.environment).last() {
        Some(f) if matches!(s.kind, Kind::Stuck) => format!(
            "deadline; step at {}",
            secs(f.saturating_duration_since(started), scale)
        ),
        Some(f) => {
            let d = reported.saturating_duration_since(*f);
            format!("{} [{}ms]", secs(d, scale), d.as_millis())
        }
        None => "n/a (still running)".to_string(),
    };
    println!(
        "{:<28} {:<16} {:>6} {:>9} {:>18} {:>10.3} {:>22}",
        s.name,
        verdict,
        calls,
        throttled,
        format!("{} [{}ms]", secs(took, scale), took.as_millis()),
        rate,
        after
    );
    Ok(())
}
