//! The operating commands (`status`, `history`, `rollback`, `logs`, `cleanup`) against moto
//! and the EB emulator.

use std::time::Duration;

use integration::deploy_world::World;
use pipeline::eb::{Eb, Pacing};
use pipeline::ops::logs::{self, LogKind, LogsRequest};

fn eb(w: &World) -> Eb {
    Eb::new(w.clients.eb.clone(), Pacing::scaled(100.0))
}

const SECRETS: [&str; 4] = [
    "sk-live-123456",
    "pg-pass-77",
    "redis-pw-99",
    "known-value-42",
];

fn add_secret_lines(w: &World) {
    w.emu.append_log(
        &w.environment,
        "/var/log/containers/django-4f2a-stdouterr.log",
        &[
            "[INFO] Booting worker with pid: 7",
            "DJANGO_SECRET_KEY=sk-live-123456 loaded",
            "DATABASE_URL=postgres://antenna:pg-pass-77@db:5432/antenna",
            "connecting to redis://:redis-pw-99@cache:6379/0",
            "the flower password is known-value-42",
        ],
    );
}

#[tokio::test]
async fn tail_logs_come_per_instance_and_file_with_secrets_masked() {
    let w = World::new().await;
    add_secret_lines(&w);
    let eb = eb(&w);
    let req = LogsRequest {
        environment: &w.environment,
        kind: LogKind::Tail,
        timeout: Duration::from_secs(5),
        known_secrets: vec!["known-value-42".into()],
    };
    let report = logs::fetch(&eb, &req).await.unwrap();
    assert_eq!(report.instances.len(), 2, "{report:#?}");
    assert!(report.missing.is_empty());
    let instances = w.emu.environment(&w.environment).instances;
    for inst in &report.instances {
        assert!(instances.iter().any(|i| i.id == inst.instance));
        let paths: Vec<&str> = inst.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/var/log/containers/django-4f2a-stdouterr.log",
                "/var/log/eb-engine.log",
                "/var/log/ecs/ecs-agent.log"
            ]
        );
        let django = &inst.files[0].lines;
        assert_eq!(django[1], "DJANGO_SECRET_KEY=*** loaded");
        assert_eq!(django[3], "connecting to redis://:***@cache:6379/0");
        assert_eq!(django[4], "the flower password is ***");
    }
    let text = serde_json::to_string(&report).unwrap();
    for s in SECRETS {
        assert!(!text.contains(s), "{s} leaked: {text}");
    }
    // A second run waits for new samples rather than reusing the first ones.
    w.emu
        .append_log(&w.environment, "/var/log/eb-engine.log", &["[INFO] second"]);
    let again = logs::fetch(&eb, &req).await.unwrap();
    assert_eq!(w.emu.calls_of("RequestEnvironmentInfo").len(), 2);
    assert_eq!(w.emu.log_samples().len(), 4);
    for inst in &again.instances {
        let engine = inst
            .files
            .iter()
            .find(|f| f.path == "/var/log/eb-engine.log")
            .unwrap();
        assert_eq!(engine.lines.last().unwrap(), "[INFO] second");
    }
}

#[tokio::test]
async fn bundle_logs_and_instances_that_never_answer() {
    let w = World::new().await;
    add_secret_lines(&w);
    let eb = eb(&w);
    let report = logs::fetch(
        &eb,
        &LogsRequest {
            environment: &w.environment,
            kind: LogKind::Bundle,
            timeout: Duration::from_secs(5),
            known_secrets: vec![],
        },
    )
    .await
    .unwrap();
    assert_eq!(report.instances.len(), 2);
    let text = serde_json::to_string(&report).unwrap();
    for s in &SECRETS[..3] {
        assert!(!text.contains(s), "{s} leaked: {text}");
    }
    assert!(report.instances[0]
        .files
        .iter()
        .any(|f| f.path == "/var/log/containers/django-4f2a-stdouterr.log"));

    // Instances that take longer than the deadline are reported missing, not waited for.
    w.emu.set_log_delay(Duration::from_secs(30));
    let started = std::time::Instant::now();
    let late = logs::fetch(
        &eb,
        &LogsRequest {
            environment: &w.environment,
            kind: LogKind::Tail,
            timeout: Duration::from_millis(300),
            known_secrets: vec![],
        },
    )
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(late.instances.is_empty());
    assert_eq!(late.missing.len(), 2);
}
