//! Benchmark: the operating commands (`status`, `history`, `logs`, `cleanup`) against moto
//! and the EB emulator, in real time, with the production pacing (at most 0.5 EB reads a
//! second after a burst of 6) and EB's own throttle applied by the emulator: wall time and EB
//! calls of each command, each with a fresh session as a new process would have.
//!
//! `bash tests/services/up.sh; set -a; . target/test-services/env; set +a`
//! `cargo run -p integration --example bench_ops [VERSIONS] [LATENCY_MS]` (default 300
//! versions, so that listing them takes several pages of 100, and no added latency; EB answers
//! in about 100-300 ms. The figures are about calls and waits, not CPU: the debug build
//! measures the same)

use std::time::{Duration, Instant, SystemTime};

use integration::deploy_world::World;
use pipeline::eb::Pacing;
use pipeline::ops::cleanup::{self, CleanupRequest};
use pipeline::ops::logs::{self, LogKind, LogsRequest};
use pipeline::ops::{history, status, AwsEnvironment};

fn main() -> anyhow::Result<()> {
    let versions: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(300);
    let latency: u64 = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(0);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(versions, Duration::from_millis(latency)))
}

async fn run(versions: usize, latency: Duration) -> anyhow::Result<()> {
    let w = World::named(
        "antenna",
        "antenna-staging",
        integration::deploy_world::GOOD_DOCKERRUN,
    )
    .await;
    w.emu.throttle_like_eb(1.0);
    w.emu.set_latency(latency);
    let now = SystemTime::now();
    for i in 1..versions {
        w.emu.add_version_at(
            "antenna",
            &format!("v1.{i}.0-0a1b2c3d"),
            &w.bucket,
            &format!("antenna/v1.{i}.0-0a1b2c3d.zip"),
            "PROCESSED",
            &format!("v1.{i}.0 (0123456789abcdef0123456789abcdef01234567)"),
            now - Duration::from_secs(3_600 * (versions - i) as u64),
        );
    }
    let lines: Vec<String> = (0..500)
        .map(|i| format!("[INFO] request {i} GET /api/v2/ 200"))
        .collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    w.emu.append_log(
        "antenna-staging",
        "/var/log/containers/django-4f2a-stdouterr.log",
        &lines,
    );
    let config = w.config(&integration::deploy_world::Settings::default());
    let env = AwsEnvironment::resolve(&config, "staging", "bench")?;
    let envs = std::slice::from_ref(&env);

    println!(
        "{versions} versions, 2 instances; production pacing; EB's throttle on; {} ms per EB answer\n",
        latency.as_millis()
    );
    println!("| command | wall time | EB calls | throttled by EB |");
    println!("|---|---|---|---|");
    let commands = [
        "status",
        "history --limit 20",
        "logs (tail)",
        "logs --all",
        "cleanup (plan)",
    ];
    for name in commands {
        let session = w.session(Pacing::default());
        let before = w.emu.calls().len();
        let started = Instant::now();
        match name {
            "status" => {
                status::report(&session, envs, None).await?;
            }
            "history --limit 20" => {
                history::history(&session, "antenna", envs, 20).await?;
            }
            "logs (tail)" | "logs --all" => {
                let kind = if name == "logs --all" {
                    LogKind::Bundle
                } else {
                    LogKind::Tail
                };
                let req = LogsRequest {
                    environment: "antenna-staging",
                    kind,
                    timeout: Duration::from_secs(120),
                    known_secrets: vec![],
                };
                let r = logs::fetch(&session.eb, &req).await?;
                anyhow::ensure!(r.instances.len() == 2, "{name}: {:?}", r.missing);
            }
            _ => {
                let req = CleanupRequest {
                    application: "antenna",
                    environments: envs,
                    keep: 20,
                    older_than: None,
                    dry_run: true,
                    state_dir: None,
                };
                cleanup::cleanup(&session, &req).await?;
            }
        }
        let took = started.elapsed();
        let all = w.emu.calls();
        let calls = &all[before..];
        let throttled = calls.iter().filter(|c| c.status == 400).count();
        println!(
            "| {name} | {:.2} s | {} | {throttled} |",
            took.as_secs_f64(),
            calls.len()
        );
    }
    Ok(())
}
