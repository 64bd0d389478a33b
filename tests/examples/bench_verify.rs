//! Benchmark: how long each verify check takes against the test services on loopback
//! (Redis plain and TLS, Celery ping + active_queues over Redis and over AMQP (RabbitMQ,
//! plain and TLS), NATS with JetStream and a stream, and over TLS, Flower's API).
//!
//! `bash tests/services/up.sh`, export the variables of its env file, then
//! `cargo run -p integration --example bench_verify [ITERATIONS]` (a debug build: the
//! figures are mostly round trips to the servers)

use std::time::{Duration, Instant};

use integration::services;
use pipeline::verify::{Check, CheckOutcome, Verdict};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50);
    let vars = [
        ("PLAIN", services::env("REDIS_URL")),
        (
            "TLS",
            format!("{}?ssl_cert_reqs=none", services::env("REDIS_TLS_URL")),
        ),
        ("BROKER", services::env("CELERY_BROKER_URL")),
        ("CELERY_FLOWER_USER", services::env("FLOWER_USER")),
        ("CELERY_FLOWER_PASSWORD", services::env("FLOWER_PASSWORD")),
        ("AMQP", services::env("AMQP_URL")),
        (
            "AMQPS",
            format!(
                "{}?ssl_ca_certs={}",
                services::env("AMQPS_URL"),
                services::env("AMQP_TLS_CA")
            ),
        ),
        ("NATS", services::env("NATS_URL")),
        ("NATS_TLS", services::env("NATS_TLS_URL")),
    ];
    let flower = services::env("FLOWER_URL");
    let stream = nats_job_stream().await?;
    let nats_ca = services::env("REDIS_TLS_CA");
    let cases = [
        ("redis (plain)", "kind = \"redis\"\nurl_env = \"PLAIN\"".to_string()),
        ("redis (TLS, ssl_cert_reqs=none)", "kind = \"redis\"\nurl_env = \"TLS\"".to_string()),
        (
            "celery (2 workers, 2 queues)",
            "kind = \"celery\"\nbroker_url_env = \"BROKER\"\nmin_workers = 2\nqueues = [\"antenna\", \"jobs\"]".to_string(),
        ),
        (
            "celery over amqp (1 worker, 3 queues)",
            "kind = \"celery\"\nbroker_url_env = \"AMQP\"\nqueues = [\"antenna\", \"jobs\", \"ml_results\"]".to_string(),
        ),
        (
            "celery over amqps (CA file)",
            "kind = \"celery\"\nbroker_url_env = \"AMQPS\"\nqueues = [\"antenna\", \"jobs\", \"ml_results\"]".to_string(),
        ),
        (
            "nats (JetStream, 1 stream)",
            format!("kind = \"nats\"\nurl_env = \"NATS\"\nstreams = [{stream:?}]"),
        ),
        (
            "nats (TLS, CA file)",
            format!("kind = \"nats\"\nurl_env = \"NATS_TLS\"\nca_file = {nats_ca:?}"),
        ),
        (
            "flower (status + refresh)",
            format!("kind = \"flower\"\nurl = \"{flower}\"\nmin_workers = 2\nqueues = [\"antenna\", \"jobs\"]"),
        ),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    println!("verify checks against loopback services, {iterations} iterations each");
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        "check", "median", "p95", "max"
    );
    for (name, toml_text) in cases {
        let spec = toml_spec(&toml_text)?;
        let check = Check::from_spec(&spec, None, &lookup)?;
        let mut samples = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            let outcome: CheckOutcome = check.run().await;
            samples.push(t.elapsed());
            anyhow::ensure!(
                outcome.verdict == Verdict::Pass,
                "{name}: {}",
                outcome.detail
            );
        }
        samples.sort();
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!(
            "{name:<40} {:>10} {:>10} {:>10}",
            fmt(pick(0.5)),
            fmt(pick(0.95)),
            fmt(*samples.last().unwrap())
        );
    }
    Ok(())
}

/// A stream with one durable consumer on the JetStream test server, as Antenna makes for its
/// ML jobs (created once; the name is reused by later runs).
async fn nats_job_stream() -> anyhow::Result<String> {
    use async_nats::jetstream::{self, consumer::pull, stream};
    let name = "bench_verify_jobs".to_string();
    let js = jetstream::new(async_nats::connect(services::env("NATS_URL")).await?);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            ..Default::default()
        })
        .await?;
    stream
        .get_or_create_consumer(
            "job-worker",
            pull::Config {
                durable_name: Some("job-worker".into()),
                ..Default::default()
            },
        )
        .await?;
    Ok(name)
}

/// A check spec from the TOML of one `[[environments.NAME.checks]]` table.
fn toml_spec(text: &str) -> anyhow::Result<pipeline::config::CheckSpec> {
    let config_text = format!(
        "region = \"us-west-2\"\napplication = \"a\"\n[images.b]\nrepository = \"b\"\nbuild = {{ context = \".\" }}\n[environments.t]\ntarget = \"local\"\n[[environments.t.checks]]\n{text}\n"
    );
    let config = pipeline::config::Config::parse(std::path::Path::new("bench.toml"), &config_text)?;
    Ok(config.environment("t")?.checks[0].clone())
}

fn fmt(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
