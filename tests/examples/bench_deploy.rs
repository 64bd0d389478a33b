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
//!
//! `cargo run -p integration --example bench_deploy -- --vs-eb-cli`: the same kinds of
//! scenario in real time (the EB CLI's clock cannot be compressed), shortened, each played
//! once for this pipeline and once for the official EB CLI (`$EB_CLI`, `eb deploy` of a new
//! bundle) on the same emulator; prints the side-by-side table of docs/benchmarks-deploy.md.

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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::args().nth(1).as_deref() == Some("--vs-eb-cli") {
        return rt.block_on(versus::run());
    }
    let scale: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200.0);
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

mod versus {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use integration::deploy_world::{Settings, World, GOOD_DOCKERRUN};
    use integration::eb_emulator::{Call, Fault, Script, Step, Which};
    use integration::services;
    use pipeline::eb::Pacing;

    #[derive(Clone, Copy)]
    enum Kind {
        Success,
        Failure,
        RedAfterCompleted,
        CompletedAfterInstanceFailure,
        Throttled,
    }

    struct Row {
        verdict: String,
        /// From the scenario's decisive step to the tool's verdict.
        after: Option<Duration>,
        /// From the tool's first EB call to its UpdateEnvironment.
        to_update: Option<Duration>,
        calls: usize,
        throttled: usize,
        rate: f64,
    }

    fn script(kind: Kind, took: Duration) -> Script {
        let ms = took.as_millis() as u64;
        match kind {
            Kind::Success | Kind::Throttled => Script::success(took),
            Kind::Failure => Script::command_failure(took),
            Kind::RedAfterCompleted => Script::new(vec![
                Step::at_ms(ms / 3).event("INFO", "Deploying new version to instance(s)."),
                Step::at_ms(ms)
                    .event("INFO", "Environment update completed successfully.")
                    .status("Ready")
                    .instances(usize::MAX, Which::Deployed)
                    .health("Red", "Severe"),
            ]),
            Kind::CompletedAfterInstanceFailure => {
                Script::completed_after_instance_failure(took, 2)
            }
        }
    }

    fn slice(calls: &[Call], from: Instant, to: Instant) -> Vec<Call> {
        calls
            .iter()
            .filter(|c| c.at >= from && c.at <= to)
            .cloned()
            .collect()
    }

    fn measure(
        calls: &[Call],
        started: Instant,
        ended: Instant,
        finished: Option<Instant>,
        verdict: String,
    ) -> Row {
        let first = calls.first().map(|c| c.at);
        let update = calls
            .iter()
            .find(|c| c.action == "UpdateEnvironment" && c.status == 200)
            .map(|c| c.at);
        Row {
            verdict,
            after: finished.map(|f| ended.saturating_duration_since(f)),
            to_update: first.zip(update).map(|(f, u)| u - f),
            calls: calls.len(),
            throttled: calls
                .iter()
                .filter(|c| c.status == 400 && c.action != "UpdateEnvironment")
                .count(),
            rate: calls.len() as f64 / (ended - started).as_secs_f64(),
        }
    }

    async fn ours(w: &World, kind: Kind, took: Duration) -> Row {
        w.emu.script_next_deploy(&w.environment, script(kind, took));
        if let Kind::Throttled = kind {
            w.emu.inject(Some("DescribeEvents"), Fault::Throttle, 3);
        }
        let s = Settings {
            deploy: "10m",
            lock_wait: "1m",
            health_settle: "20s",
            rollback: false,
            ..Settings::default()
        };
        let mut req = w.request(&s);
        req.pacing = Pacing::default();
        let started = Instant::now();
        let report = w.run(&req, None).await;
        let ended = Instant::now();
        let verdict = report
            .deploy
            .as_ref()
            .map_or("none".into(), |d| format!("{:?}", d.verdict));
        let calls = slice(&w.emu.calls(), started, ended);
        measure(
            &calls,
            started,
            ended,
            w.emu.finishes(&w.environment).last().copied(),
            verdict,
        )
    }

    async fn eb_cli(w: &World, env: &str, kind: Kind, took: Duration) -> Row {
        w.emu.script_next_deploy(env, script(kind, took));
        if let Kind::Throttled = kind {
            w.emu.inject(Some("DescribeEvents"), Fault::Throttle, 3);
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join(".elasticbeanstalk")).unwrap();
        std::fs::write(
            d.join(".elasticbeanstalk/config.yml"),
            format!("branch-defaults:\n  default:\n    environment: {env}\nglobal:\n  application_name: {}\n  default_region: us-west-2\n  workspace_type: Application\n", w.application),
        )
        .unwrap();
        std::fs::write(d.join("Dockerrun.aws.json"), GOOD_DOCKERRUN).unwrap();
        let started = Instant::now();
        let out = tokio::process::Command::new(services::env("EB_CLI"))
            .args([
                "deploy",
                "--timeout",
                "10",
                "--endpoint-url",
                &w.emu.endpoint,
            ])
            .current_dir(d)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-west-2")
            .env("AWS_ENDPOINT_URL_S3", services::env("MOTO_ENDPOINT"))
            .env("HOME", d)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("cannot run the EB CLI ($EB_CLI)");
        let ended = Instant::now();
        let verdict = if out.status.success() {
            "exit 0 (success)"
        } else {
            "exit 1 (failed)"
        };
        let calls = slice(&w.emu.calls(), started, ended);
        measure(
            &calls,
            started,
            ended,
            w.emu.finishes(env).last().copied(),
            verdict.into(),
        )
    }

    fn secs(d: Option<Duration>) -> String {
        d.map_or("n/a".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    }

    pub async fn run() -> anyhow::Result<()> {
        let scenarios = [
            ("success (30 s deploy)", Kind::Success, 30),
            ("failure at 20 s", Kind::Failure, 20),
            ("Red after completed (20 s)", Kind::RedAfterCompleted, 20),
            (
                "completed after an instance failed",
                Kind::CompletedAfterInstanceFailure,
                20,
            ),
            ("throttled x3 (30 s)", Kind::Throttled, 30),
        ];
        println!("| scenario | tool | verdict | decisive step → verdict | first call → UpdateEnvironment | calls | throttled | avg req/s |");
        println!("|---|---|---|---|---|---|---|---|");
        for (name, kind, secs_) in scenarios {
            let took = Duration::from_secs(secs_);
            let w = World::new().await;
            w.emu.throttle_like_eb(1.0);
            let theirs_env = format!("{}-ebcli", w.environment);
            w.emu
                .add_environment(&w.application, &theirs_env, Some("v0"), 2);
            let a = ours(&w, kind, took).await;
            let b = eb_cli(&w, &theirs_env, kind, took).await;
            for (tool, r) in [("this pipeline", a), ("EB CLI", b)] {
                println!(
                    "| {name} | {tool} | {} | {} | {} | {} | {} | {:.2} |",
                    r.verdict,
                    secs(r.after),
                    secs(r.to_update),
                    r.calls,
                    r.throttled,
                    r.rate
                );
            }
        }
        Ok(())
    }
}
