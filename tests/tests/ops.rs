//! The operating commands (`status`, `history`, `rollback`, `logs`, `cleanup`) against moto
//! and the EB emulator.

use std::time::{Duration, SystemTime};

use integration::deploy_world::{write_bundle, Settings, World};
use integration::eb_emulator::{Script, Step};
use integration::{aws, services};
use pipeline::eb::{Eb, Pacing};
use pipeline::ops::cleanup::{self, Action, CleanupRequest};
use pipeline::ops::journal::{self, Entry};
use pipeline::ops::logs::{self, LogKind, LogsRequest};
use pipeline::ops::rollback::{self, Refused, RollbackRequest};
use pipeline::ops::{history, status, AwsEnvironment, Session};
use pipeline::release::Release;

fn eb(w: &World) -> Eb {
    Eb::new(w.clients.eb.clone(), Pacing::scaled(100.0))
}

/// The session the commands open, with EB at the emulator and S3 and ECR at moto.
fn session(w: &World) -> Session {
    let sdk = aws::sdk_config(&services::env("MOTO_ENDPOINT"));
    Session {
        aws: pipeline::aws::Aws {
            sdk: sdk.clone(),
            custom_endpoint: true,
        },
        eb: eb(w),
        s3: w.s3.clone(),
        ecr: aws_sdk_ecr::Client::new(&sdk),
    }
}

fn staging(w: &World) -> AwsEnvironment {
    let config = w.config(&Settings::default());
    AwsEnvironment::resolve(&config, "staging", "test").unwrap()
}

/// A Dockerrun whose backend image is `REPOSITORY:TAG` in the account's ECR.
fn dockerrun(repository: &str, tag: &str, memory: u32) -> String {
    format!(
        r#"{{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
  {{"name": "django", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/{repository}:{tag}", "memory": {memory}, "essential": true,
   "portMappings": [{{"hostPort": 80, "containerPort": 5000}}]}}]}}"#
    )
}

/// Makes `repository:tag` exist in moto's ECR (repeated runs find it there already).
async fn push_image(s: &Session, repository: &str, tag: &str) {
    let _ = s
        .ecr
        .create_repository()
        .repository_name(repository)
        .send()
        .await;
    let manifest = r#"{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}, "layers": []}"#;
    let _ = s
        .ecr
        .put_image()
        .repository_name(repository)
        .image_tag(tag)
        .image_manifest(manifest)
        .send()
        .await;
}

/// The JSON with the values that change from run to run replaced.
fn redacted(value: &impl serde::Serialize) -> String {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let changing = [
                        "created",
                        "at",
                        "sampled_at",
                        "request_id",
                        "by",
                        "bucket",
                        "id",
                        "instance",
                        "duration_ms",
                        "eb_calls",
                    ]
                    .contains(&k.as_str());
                    if changing && !x.is_null() {
                        *x = serde_json::Value::String("[redacted]".into());
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            serde_json::Value::String(s) if s.starts_with("i-") => *s = "[instance]".into(),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(value).unwrap();
    walk(&mut v);
    serde_json::to_string_pretty(&v).unwrap()
}

/// Deploys a bundle of `dockerrun` as release `release` through the whole pipeline.
async fn deploy(w: &World, release: &str, dockerrun: &str) -> String {
    let bundle = w.dir.path().join(format!("{release}.zip"));
    write_bundle(&bundle, dockerrun);
    let mut req = w.request(&Settings::default());
    req.bundle = Some(bundle.clone());
    req.release = Release::fixed(release, "0123456789abcdef0123456789abcdef01234567");
    let report = w.run(&req, None).await;
    assert!(report.ok, "{}", report.table());
    report.label.unwrap()
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
    insta::assert_snapshot!("logs_masked", redacted(&report.instances[0].files[0]));
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

#[tokio::test]
async fn status_shows_a_deploy_in_flight_and_who_started_it() {
    let w = World::named(
        "antenna",
        "antenna-staging",
        integration::deploy_world::GOOD_DOCKERRUN,
    )
    .await;
    let s = session(&w);
    let run = "https://github.com/RolnickLab/antenna/actions/runs/4242";
    w.emu.add_version_at(
        "antenna",
        "v1.1.0-0a1b2c3d",
        &w.bucket,
        "antenna/v1.1.0-0a1b2c3d.zip",
        "PROCESSED",
        &format!("v1.1.0 (0123456789abcdef0123456789abcdef01234567) {run}"),
        SystemTime::now(),
    );
    w.emu.start_foreign_deploy(
        "antenna-staging",
        "v1.1.0-0a1b2c3d",
        Script::new(vec![
            Step::at_ms(10).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(60_000).status("Ready"),
        ]),
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    let st = status::status(&s, &staging(&w), None).await.unwrap();
    assert_eq!(st.status, "Updating");
    let f = st.in_flight.as_ref().expect("a deploy in flight");
    assert_eq!(f.label, "v1.1.0-0a1b2c3d");
    assert_eq!(f.started_by.as_deref(), Some(run));
    assert_eq!(st.described.release.as_deref(), Some("v1.1.0"));
    let messages: Vec<&str> = st.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "Environment update is starting.",
            "Deploying new version to instance(s)."
        ]
    );
    assert_eq!(st.instances.len(), 2);
    let report = status::StatusReport {
        environments: vec![st],
    };
    assert!(report.render().contains("in flight: v1.1.0-0a1b2c3d (started by https://github.com/RolnickLab/antenna/actions/runs/4242)"));
    insta::assert_snapshot!("status_in_flight", redacted(&report));
}

#[tokio::test]
async fn history_across_three_deploys_and_a_rollback() {
    let w = World::named(
        "antenna",
        "antenna-staging",
        integration::deploy_world::GOOD_DOCKERRUN,
    )
    .await;
    let s = session(&w);
    push_image(&s, "ops-history-backend", "v1").await;
    let mut labels = vec![];
    for (i, release) in ["v1.1.0", "v1.2.0", "v1.3.0"].iter().enumerate() {
        labels.push(
            deploy(
                &w,
                release,
                &dockerrun("ops-history-backend", "v1", 512 + i as u32),
            )
            .await,
        );
    }
    let env = staging(&w);
    let req = RollbackRequest {
        env: &env,
        label: None,
        deadline: None,
        lock_wait: None,
        state_dir: None,
        dry_run: false,
    };
    let (target, report) = rollback::rollback(&s, &req, None).await.unwrap();
    assert_eq!(
        target.version.label, labels[1],
        "back to the last healthy one before v1.3.0"
    );
    assert!(report.ok, "{}", report.table());
    assert_eq!(
        w.emu.environment("antenna-staging").version.as_deref(),
        Some(labels[1].as_str())
    );
    insta::assert_snapshot!("rollback_report", redacted(&report));

    let h = history::history(&s, "antenna", std::slice::from_ref(&env), 20)
        .await
        .unwrap();
    let order: Vec<&str> = h
        .versions
        .iter()
        .map(|v| v.version.label.as_str())
        .collect();
    assert_eq!(
        order,
        [
            labels[2].as_str(),
            labels[1].as_str(),
            labels[0].as_str(),
            "v0"
        ]
    );
    assert_eq!(h.versions[1].running_on, ["antenna-staging"]);
    assert!(h.versions[0].size.unwrap() > 100);
    assert_eq!(
        h.versions[0].version.described.release.as_deref(),
        Some("v1.3.0")
    );
    let e = &h.environments[0];
    assert_eq!(e.running.as_deref(), Some(labels[1].as_str()));
    assert_eq!(
        e.previous.as_deref(),
        Some(labels[2].as_str()),
        "it ran v1.3.0 before the rollback"
    );
    let kinds: Vec<(&str, &str, Option<&str>)> = e
        .deploys
        .iter()
        .map(|d| (d.kind.as_str(), d.label.as_str(), d.previous.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("rollback", labels[1].as_str(), Some(labels[2].as_str())),
            ("deploy", labels[2].as_str(), Some(labels[1].as_str())),
            ("deploy", labels[1].as_str(), Some(labels[0].as_str())),
            ("deploy", labels[0].as_str(), Some("v0")),
        ]
    );
    insta::assert_snapshot!("history", redacted(&h));
}

#[tokio::test]
async fn rollback_refuses_each_bad_target_with_its_reason() {
    let w = World::new().await;
    let s = session(&w);
    let env = staging(&w);
    let app = w.application.clone();
    push_image(&s, "ops-refuse-backend", "v1").await;
    // A PROCESSED version whose image tag is gone from ECR.
    let key = format!("{app}/gone.zip");
    let zip = w.dir.path().join("gone.zip");
    write_bundle(&zip, &dockerrun("ops-refuse-backend", "v9-deleted", 512));
    w.s3.put_object()
        .bucket(&w.bucket)
        .key(&key)
        .body(std::fs::read(&zip).unwrap().into())
        .send()
        .await
        .unwrap();
    w.emu
        .add_version(&app, "gone", &w.bucket, &key, "PROCESSED");
    w.emu
        .add_version(&app, "broken", &w.bucket, "x.zip", "FAILED");
    w.emu
        .add_version(&app, "raw", &w.bucket, "y.zip", "UNPROCESSED");
    let cases: Vec<(Option<&str>, Refused)> = vec![
        (
            None,
            Refused::NoTarget {
                environment: w.environment.clone(),
            },
        ),
        (
            Some("v0"),
            Refused::AlreadyRunning {
                label: "v0".into(),
                environment: w.environment.clone(),
            },
        ),
        (
            Some("nope"),
            Refused::NotFound {
                label: "nope".into(),
                application: app.clone(),
            },
        ),
        (
            Some("broken"),
            Refused::Failed {
                label: "broken".into(),
            },
        ),
        (
            Some("raw"),
            Refused::Unprocessed {
                label: "raw".into(),
                status: "UNPROCESSED".into(),
            },
        ),
        (
            Some("gone"),
            Refused::ImagesGone {
                label: "gone".into(),
                images: vec![
                    "123456789012.dkr.ecr.us-west-2.amazonaws.com/ops-refuse-backend:v9-deleted"
                        .into(),
                ],
            },
        ),
    ];
    for (label, want) in cases {
        let req = RollbackRequest {
            env: &env,
            label,
            deadline: None,
            lock_wait: None,
            state_dir: None,
            dry_run: false,
        };
        let err = rollback::rollback(&s, &req, None).await.unwrap_err();
        let got = err
            .downcast_ref::<Refused>()
            .unwrap_or_else(|| panic!("{err:#}"));
        assert_eq!(got, &want);
        eprintln!("refused: {err}");
    }
    assert!(
        w.emu.calls_of("UpdateEnvironment").is_empty(),
        "nothing was deployed"
    );
}

/// Cleanup over random sets of versions (seeded): the running, previous and in-flight
/// versions and their bundles always stay; what it deletes loses its bundle too.
#[tokio::test]
async fn cleanup_never_deletes_the_running_previous_or_in_flight_version() {
    let mut rng = fastrand::Rng::with_seed(0x000c_1ea4_u64);
    for round in 0..4 {
        let w = World::new().await;
        let s = session(&w);
        let app = w.application.clone();
        let now = SystemTime::now();
        let n = rng.usize(6..20);
        let mut labels = vec!["v0".to_string()];
        for i in 0..n {
            let label = format!("r{round}-v{i}");
            let key = format!("{app}/{label}.zip");
            w.s3.put_object()
                .bucket(&w.bucket)
                .key(&key)
                .body(b"zip".to_vec().into())
                .send()
                .await
                .unwrap();
            let age = Duration::from_secs(rng.u64(0..90) * 86_400 + 60);
            w.emu
                .add_version_at(&app, &label, &w.bucket, &key, "PROCESSED", "", now - age);
            labels.push(label);
        }
        let pick = |rng: &mut fastrand::Rng| labels[1 + rng.usize(0..n)].clone();
        let (running, previous, in_flight) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
        w.emu
            .update_environment(&w.environment, |e| e.version = Some(running.clone()));
        for (label, prev) in [(&previous, "v0"), (&running, previous.as_str())] {
            journal::append(
                &w.s3,
                &w.bucket,
                &app,
                &w.environment,
                Entry {
                    kind: "deploy".into(),
                    label: label.clone(),
                    previous: Some(prev.to_string()),
                    verdict: "succeeded".into(),
                    at: String::new(),
                    request_id: None,
                    by: None,
                },
            )
            .await
            .unwrap();
        }
        let other = format!("{}-other", w.environment);
        w.emu.add_environment(&app, &other, Some("v0"), 1);
        w.emu.start_foreign_deploy(
            &other,
            &in_flight,
            Script::success(Duration::from_secs(120)),
        );
        let keep = rng.usize(0..4);
        let older_than = rng
            .bool()
            .then(|| Duration::from_secs(rng.u64(0..30) * 86_400));
        let env = staging(&w);
        let report = cleanup::cleanup(
            &s,
            &CleanupRequest {
                application: &app,
                environments: std::slice::from_ref(&env),
                keep,
                older_than,
                dry_run: false,
                state_dir: None,
            },
        )
        .await
        .unwrap();
        let left = w.emu.version_labels(&app);
        for must in [&running, &previous, &in_flight] {
            assert!(
                left.contains(must),
                "round {round}: {must} was deleted: {}",
                report.render()
            );
        }
        for d in &report.decisions {
            let key = format!("{app}/{}.zip", d.label);
            let exists =
                w.s3.head_object()
                    .bucket(&w.bucket)
                    .key(&key)
                    .send()
                    .await
                    .is_ok();
            match d.action {
                Action::Deleted => {
                    assert!(!left.contains(&d.label));
                    assert!(!exists, "the bundle of {} is still in S3", d.label);
                }
                Action::Keep => assert!(left.contains(&d.label)),
                other => panic!("round {round}: {other:?} for {}: {}", d.label, d.reason),
            }
        }
        assert_eq!(
            report.count(Action::Deleted) + report.count(Action::Keep),
            n + 1
        );
    }
}

#[tokio::test]
async fn cleanup_plan_and_the_quota_hint() {
    let w = World::named(
        "antenna",
        "antenna-staging",
        integration::deploy_world::GOOD_DOCKERRUN,
    )
    .await;
    let s = session(&w);
    let now = SystemTime::now();
    for i in 1..=4u64 {
        w.emu.add_version_at(
            "antenna",
            &format!("v{i}"),
            &w.bucket,
            &format!("antenna/v{i}.zip"),
            "PROCESSED",
            "",
            now - Duration::from_secs((10 - i) * 86_400),
        );
    }
    let env = staging(&w);
    let report = cleanup::cleanup(
        &s,
        &CleanupRequest {
            application: "antenna",
            environments: std::slice::from_ref(&env),
            keep: 1,
            older_than: None,
            dry_run: true,
            state_dir: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.count(Action::Delete), 3, "{}", report.render());
    assert!(
        w.emu.calls_of("DeleteApplicationVersion").is_empty(),
        "a dry run deletes nothing"
    );
    insta::assert_snapshot!("cleanup_dry_run", redacted(&report));

    // At the quota, deploy's version stage says to run cleanup.
    w.emu.set_version_quota(5);
    let r = w.run(&w.request(&Settings::default()), None).await;
    assert!(!r.ok);
    let version = r.stages.iter().find(|s| s.stage == "version").unwrap();
    assert!(
        version
            .output
            .contains("TooManyApplicationVersionsException"),
        "{}",
        version.output
    );
    assert!(
        version.output.contains("run `cargo xtask cleanup`"),
        "{}",
        version.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_status_history_and_cleanup_as_json() {
    let w = World::new().await;
    w.config(&Settings::default());
    for (args, key) in [
        (vec!["status", "--json"], "environments"),
        (vec!["history", "--json", "--limit", "5"], "versions"),
        (vec!["cleanup", "--json", "--keep", "0"], "decisions"),
    ] {
        let mut cmd = w.xtask(&args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"));
        assert!(json[key].is_array(), "{json}");
    }
    // cleanup without --yes deleted nothing, and said how to delete.
    assert!(w.emu.calls_of("DeleteApplicationVersion").is_empty());
}
