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
//! `cargo run -p integration --example bench_deploy -- --vs-eb-cli [--write]`: the same kinds
//! of scenario in real time (the EB CLI's clock cannot be compressed), each played by this
//! pipeline and by the official EB CLI (`$EB_CLI`, `eb deploy` of a new bundle) at the same
//! time, each on its own emulator; prints the side-by-side table (`--write`: into README.md,
//! between its `bench_deploy --vs-eb-cli` markers).

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
        let write = std::env::args().nth(2).as_deref() == Some("--write");
        return rt.block_on(versus::run(write));
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

    /// The EB CLI looks at the events every 5 s from its `UpdateEnvironment`: a scenario
    /// whose length is a multiple of 5 s would end just before one of its looks every time.
    /// Each scenario is played at these offsets spread over that period (midpoints of four
    /// quarters), all at once, and the figures are their mean and worst.
    const OFFSETS_MS: [u64; 4] = [625, 1875, 3125, 4375];

    struct Row {
        verdict: String,
        /// From the scenario's decisive step to the tool's verdict.
        after: Option<Duration>,
        /// From the tool's first EB call to its UpdateEnvironment.
        to_update: Option<Duration>,
        calls: usize,
        throttled: usize,
        /// Calls per second over the whole run.
        rate: f64,
        /// Calls per second from UpdateEnvironment to the verdict.
        wait_rate: f64,
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

    fn measure(
        calls: &[Call],
        started: Instant,
        ended: Instant,
        w: &World,
        verdict: String,
    ) -> Row {
        // This pipeline reports a failed deploy, then fetches the instances' logs: the verdict
        // is when it asks for them (the rate of the whole run counts those calls too).
        let verdict_at = calls
            .iter()
            .find(|c| c.action == "RequestEnvironmentInfo")
            .map_or(ended, |c| c.at);
        if std::env::var_os("BENCH_CALLS").is_some() {
            let t0 = calls.first().map_or(started, |c| c.at);
            let list: Vec<String> = calls
                .iter()
                .map(|c| format!("{:.1} {}", (c.at - t0).as_secs_f64(), c.action))
                .collect();
            eprintln!("calls: {}", list.join(", "));
        }
        let first = calls.first().map(|c| c.at);
        let update = calls
            .iter()
            .find(|c| c.action == "UpdateEnvironment" && c.status == 200)
            .map(|c| c.at);
        let finished = w.emu.finishes(&w.environment).last().copied();
        let waited = update.map_or(0, |u| {
            calls
                .iter()
                .filter(|c| c.at >= u && c.at <= verdict_at)
                .count()
        });
        Row {
            verdict,
            after: finished.map(|f| verdict_at.saturating_duration_since(f)),
            to_update: first.zip(update).map(|(f, u)| u - f),
            calls: calls.len(),
            throttled: calls
                .iter()
                .filter(|c| c.status == 400 && c.action != "UpdateEnvironment")
                .count(),
            rate: calls.len() as f64 / (ended - started).as_secs_f64(),
            wait_rate: update.map_or(0.0, |u| waited as f64 / (verdict_at - u).as_secs_f64()),
        }
    }

    /// A fresh world (its own emulator, EB's throttle on) with the scenario scripted.
    async fn world(kind: Kind, took: Duration) -> World {
        let w = World::new().await;
        w.emu.throttle_like_eb(1.0);
        w.emu.script_next_deploy(&w.environment, script(kind, took));
        if let Kind::Throttled = kind {
            w.emu.inject(Some("DescribeEvents"), Fault::Throttle, 3);
        }
        w
    }

    async fn ours(kind: Kind, took: Duration, settle: &'static str) -> Row {
        let w = world(kind, took).await;
        let s = Settings {
            deploy: "10m",
            lock_wait: "1m",
            health_settle: settle,
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
        measure(&w.emu.calls(), started, ended, &w, verdict)
    }

    async fn eb_cli(kind: Kind, took: Duration) -> Row {
        let w = world(kind, took).await;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join(".elasticbeanstalk")).unwrap();
        std::fs::write(
            d.join(".elasticbeanstalk/config.yml"),
            format!("branch-defaults:\n  default:\n    environment: {}\nglobal:\n  application_name: {}\n  default_region: us-west-2\n  workspace_type: Application\n", w.environment, w.application),
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
        measure(&w.emu.calls(), started, ended, &w, verdict.into())
    }

    fn secs(d: Duration) -> String {
        format!("{:.1} s", d.as_secs_f64())
    }

    /// "mean (worst)" of some durations.
    fn spread(ds: &[Option<Duration>]) -> String {
        let ds: Vec<Duration> = ds.iter().flatten().copied().collect();
        if ds.is_empty() {
            return "n/a".into();
        }
        let mean = ds.iter().sum::<Duration>() / ds.len() as u32;
        format!("{} ({})", secs(mean), secs(*ds.iter().max().unwrap()))
    }

    fn summary(rows: &[Row]) -> String {
        let mut verdicts: Vec<&str> = rows.iter().map(|r| r.verdict.as_str()).collect();
        verdicts.dedup();
        let n = rows.len() as f64;
        let max = |f: fn(&Row) -> f64| rows.iter().map(f).fold(0.0, f64::max);
        format!(
            "{} | {} | {} | {:.1} | {} | {:.2} | {:.2}",
            verdicts.join(" / "),
            spread(&rows.iter().map(|r| r.after).collect::<Vec<_>>()),
            spread(&rows.iter().map(|r| r.to_update).collect::<Vec<_>>()),
            rows.iter().map(|r| r.calls).sum::<usize>() as f64 / n,
            rows.iter().map(|r| r.throttled).sum::<usize>(),
            max(|r| r.rate),
            max(|r| r.wait_rate),
        )
    }

    fn load() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Where the table goes in README.md (`--write`).
    const BEGIN: &str = "<!-- bench_deploy --vs-eb-cli: begin -->";
    const END: &str = "<!-- bench_deploy --vs-eb-cli: end -->";

    pub async fn run(write: bool) -> anyhow::Result<()> {
        // (name, kind, length of the scripted deploy, health settle of this pipeline)
        let scenarios: [(&str, Kind, u64, &'static str); 7] = [
            ("success (30 s deploy)", Kind::Success, 30, "20s"),
            ("failure at 20 s", Kind::Failure, 20, "20s"),
            (
                "Red after completed (20 s)",
                Kind::RedAfterCompleted,
                20,
                "20s",
            ),
            (
                "completed after an instance failed (20 s)",
                Kind::CompletedAfterInstanceFailure,
                20,
                "20s",
            ),
            ("throttled x3 (30 s)", Kind::Throttled, 30, "20s"),
            ("success (3 min deploy)", Kind::Success, 180, "20s"),
            ("failure at 2 min", Kind::Failure, 120, "20s"),
        ];
        let only = std::env::var("BENCH_ONLY").ok();
        let scenarios: Vec<_> = scenarios
            .into_iter()
            .filter(|(name, ..)| only.as_deref().is_none_or(|o| name.contains(o)))
            .collect();
        let load_before = load();
        let start = Instant::now();
        // Each scenario at every offset at once, each tool on its own emulator (its own
        // account's throttle), so that both see the same load; one scenario after the other.
        let mut results = vec![];
        for &(_, kind, base, settle) in &scenarios {
            let plays = OFFSETS_MS.iter().map(|&off| async move {
                let took = Duration::from_secs(base) + Duration::from_millis(off);
                tokio::join!(ours(kind, took, settle), eb_cli(kind, took))
            });
            results.push(futures_util::future::join_all(plays).await);
        }
        let mut table = format!(
            "Measured {} s, load average {load_before} before and {} after (2 shared cores); \
             each scenario played {} times (its length offset by 0.6-4.4 s), figures are the mean (worst):\n\n",
            start.elapsed().as_secs(),
            load(),
            OFFSETS_MS.len()
        );
        table.push_str("| scenario | tool | verdict | decisive step → verdict | first call → UpdateEnvironment | calls | throttled | req/s, whole run (worst) | req/s, UpdateEnvironment → verdict (worst) |\n");
        table.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for ((name, ..), plays) in scenarios.into_iter().zip(results) {
            let (a, b): (Vec<Row>, Vec<Row>) = plays.into_iter().unzip();
            for (tool, rows) in [("this pipeline", a), ("EB CLI", b)] {
                table.push_str(&format!("| {name} | {tool} | {} |\n", summary(&rows)));
            }
        }
        print!("{table}");
        if write {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
            let readme = std::fs::read_to_string(&path)?;
            let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
                anyhow::bail!("README.md has no {BEGIN} … {END} section: add the two markers where the table goes");
            };
            let updated = format!("{}{BEGIN}\n{table}{}", &readme[..b], &readme[e..]);
            std::fs::write(&path, updated)?;
            eprintln!("wrote the table into {}", path.display());
        }
        Ok(())
    }
}
