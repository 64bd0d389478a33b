//! The operating commands (`status`, `history`, `rollback`, `logs`, `cleanup`) against moto
//! and the EB emulator.

use std::time::{Duration, SystemTime};

use integration::deploy_world::{write_bundle, FixedVerify, Settings, World};
use integration::eb_emulator::{Script, Step};
use integration::services;
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

/// The session the commands open, polling 100 times faster.
fn session(w: &World) -> Session {
    w.session(Pacing::scaled(100.0))
}

/// A world with the names a snapshot can show: application `antenna`, environment
/// `antenna-staging`.
async fn antenna_world() -> World {
    World::named(
        "antenna",
        "antenna-staging",
        integration::deploy_world::GOOD_DOCKERRUN,
    )
    .await
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
    req.options.bundle = Some(bundle.clone());
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
async fn one_instances_own_log_file_is_in_its_sample_only() {
    let w = World::new().await;
    let instances = w.emu.environment(&w.environment).instances;
    let last = &instances[1].id;
    w.emu.append_instance_log(
        &w.environment,
        last,
        "/var/log/eb-hooks.log",
        &["[INFO] Running command .platform/hooks/postdeploy/90_verify.sh"],
    );
    let eb = eb(&w);
    for kind in [LogKind::Tail, LogKind::Bundle] {
        let req = LogsRequest {
            environment: &w.environment,
            kind,
            timeout: Duration::from_secs(5),
            known_secrets: vec![],
        };
        let report = logs::fetch(&eb, &req).await.unwrap();
        assert_eq!(report.instances.len(), 2, "{report:#?}");
        for inst in &report.instances {
            let hooks = inst
                .files
                .iter()
                .find(|f| f.path == "/var/log/eb-hooks.log");
            if inst.instance == *last {
                assert_eq!(
                    hooks.expect("the failed instance's hook log").lines,
                    ["[INFO] Running command .platform/hooks/postdeploy/90_verify.sh"],
                    "{kind:?}"
                );
            } else {
                assert!(hooks.is_none(), "{kind:?}: {inst:#?}");
            }
            // The files every instance has are still there.
            assert!(inst
                .files
                .iter()
                .any(|f| f.path == "/var/log/eb-engine.log"));
        }
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
    let w = antenna_world().await;
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
            Step::at_ms(10)
                .event("INFO", "Deploying new version to instance(s).")
                .health("Grey", "Info")
                .causes(&["Command is executing on all instances (2 seconds elapsed)."]),
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
    assert_eq!(
        (st.health.as_str(), st.health_status.as_deref()),
        ("Grey", Some("Info"))
    );
    assert_eq!(
        st.causes,
        ["Command is executing on all instances (2 seconds elapsed)."]
    );
    let report = status::StatusReport {
        environments: vec![st],
    };
    assert!(report.render().contains("in flight: v1.1.0-0a1b2c3d (started by https://github.com/RolnickLab/antenna/actions/runs/4242)"));
    insta::assert_snapshot!("status_in_flight", redacted(&report));
}

#[tokio::test]
async fn history_across_three_deploys_and_a_rollback() {
    let w = antenna_world().await;
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
    add_version_naming(&w, "gone", "ops-refuse-backend", "v9-deleted").await;
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

/// A PROCESSED version `label` of the world's application created at `created`, its bundle
/// (`APPLICATION/LABEL.zip`) in S3.
async fn add_version_with_bundle(w: &World, label: &str, created: SystemTime) {
    let key = format!("{}/{label}.zip", w.application);
    w.s3.put_object()
        .bucket(&w.bucket)
        .key(&key)
        .body(b"zip".to_vec().into())
        .send()
        .await
        .unwrap();
    w.emu.add_version_at(
        &w.application,
        label,
        &w.bucket,
        &key,
        "PROCESSED",
        "",
        created,
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
            let age = Duration::from_secs(rng.u64(0..90) * 86_400 + 60);
            add_version_with_bundle(&w, &label, now - age).await;
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

/// What `cleanup --keep KEEP` (a dry run) plans for `env`'s application.
async fn cleanup_plan(s: &Session, env: &AwsEnvironment, keep: usize) -> cleanup::CleanupReport {
    let req = CleanupRequest {
        application: &env.application,
        environments: std::slice::from_ref(env),
        keep,
        older_than: None,
        dry_run: true,
        state_dir: None,
    };
    cleanup::cleanup(s, &req).await.unwrap()
}

#[tokio::test]
async fn cleanup_plan_and_the_quota_hint() {
    let w = antenna_world().await;
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
    let report = cleanup_plan(&s, &env, 1).await;
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

/// The `xtask` binary against this world, ECR at moto too, outside GitHub Actions.
fn binary(w: &World, args: &[&str]) -> std::process::Command {
    let mut cmd = w.xtask(args);
    cmd.env("AWS_ENDPOINT_URL_ECR", services::env("MOTO_ENDPOINT"))
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY");
    cmd
}

/// Runs the binary to the end (stdout, stderr, exit status).
async fn output(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("cannot run xtask"))
        .await
        .unwrap()
}

/// The binary's `--json` output, after checking that it succeeded.
fn json_of(what: &str, out: &std::process::Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {stderr}"))
}

/// Log lines with their time stamps replaced (eb-engine.log's `2026/11/29 10:00:00.123456`,
/// the ECS agent's `time=…`).
fn without_stamps(mut report: serde_json::Value) -> serde_json::Value {
    for inst in report["instances"].as_array_mut().unwrap() {
        for file in inst["files"].as_array_mut().unwrap() {
            for line in file["lines"].as_array_mut().unwrap() {
                let text = line.as_str().unwrap().to_string();
                let b = text.as_bytes();
                let stamped = b.len() > 20 && b[4] == b'/' && b[7] == b'/' && b[13] == b':';
                let text = if let (true, Some((_, rest))) = (stamped, text.split_once(" [")) {
                    format!("[time] [{rest}")
                } else if let Some((head, rest)) = text.split_once(" time=") {
                    let rest = rest.split_once(' ').map_or("", |(_, r)| r);
                    format!("{head} time=[time] {rest}")
                } else {
                    text
                };
                *line = serde_json::Value::String(text);
            }
        }
    }
    report
}

/// A fake GitHub that accepts one deployment (id 7) and its statuses.
async fn fake_github() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let server = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/deployments"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(integration::github_api::deployment(7, "v2.0.0", "staging")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(STATUSES))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            integration::github_api::deployment_status(1, 7, "in_progress"),
        ))
        .mount(&server)
        .await;
    server
}

/// The bodies GitHub received at `path`, in order.
async fn posted(server: &wiremock::MockServer, path: &str) -> Vec<serde_json::Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == path)
        .map(|r| r.body_json().unwrap())
        .collect()
}

/// Where the fake GitHub takes the statuses of deployment 7.
const STATUSES: &str = "/repos/ami/antenna/deployments/7/statuses";

/// The `state` of each deployment status.
fn states(statuses: &[serde_json::Value]) -> Vec<&str> {
    statuses
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect()
}

/// EB fails the next deploy to the world's environment, as an instance failure.
fn fail_next_deploy(w: &World) {
    w.emu.script_next_deploy(
        &w.environment,
        Script::failure(
            Duration::from_millis(30),
            "Instance deployment failed. For details, see 'eb-engine.log'.",
        ),
    );
}

/// `binary(..)` as a step of a GitHub Actions job with a token for `ami/antenna`.
fn in_actions(mut cmd: std::process::Command, w: &World, github: &str) -> std::process::Command {
    let (outputs, summary) = (w.dir.path().join("output"), w.dir.path().join("summary"));
    std::fs::write(&outputs, "").unwrap();
    std::fs::write(&summary, "").unwrap();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", outputs)
        .env("GITHUB_STEP_SUMMARY", summary)
        .env("GITHUB_TOKEN", "ghs_fake_token_for_the_test")
        .env("GITHUB_REPOSITORY", "ami/antenna")
        .env("GITHUB_RUN_ID", "77")
        .env("GITHUB_API_URL", github);
    cmd
}

/// Every command through the real binary, each `--json` output pinned: status, history and
/// logs (secrets masked in every byte it prints), a rollback in GitHub Actions (its GitHub
/// deployment goes `in_progress` → `success`), the cleanup plan, then a rollback that fails
/// (deployment `failure`, the last log lines in `::group::`s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_every_command_with_its_json_pinned() {
    let w = antenna_world().await;
    let s = session(&w);
    push_image(&s, "ops-binary-backend", "v1").await;
    let mut labels = vec![];
    for (i, release) in ["v2.0.0", "v2.1.0"].iter().enumerate() {
        let d = dockerrun("ops-binary-backend", "v1", 600 + i as u32);
        labels.push(deploy(&w, release, &d).await);
    }
    add_secret_lines(&w);

    let status = json_of("status", &output(binary(&w, &["status", "--json"])).await);
    assert_eq!(status["environments"][0]["version"], labels[1].as_str());
    insta::assert_snapshot!("binary_status", redacted(&status));

    let args = ["history", "--json", "--limit", "5"];
    let history = json_of("history", &output(binary(&w, &args)).await);
    assert_eq!(history["versions"][0]["label"], labels[1].as_str());
    insta::assert_snapshot!("binary_history", redacted(&history));

    // Logs: the JSON on stdout and the text on stderr, neither with a secret in it.
    for args in [
        &["logs", "--env", "staging", "--json"][..],
        &["logs", "--env", "staging"][..],
    ] {
        let out = output(binary(&w, args)).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for bytes in [&out.stdout, &out.stderr] {
            let text = String::from_utf8_lossy(bytes);
            for secret in &SECRETS[..3] {
                assert!(!text.contains(secret), "{args:?}: {secret} leaked:\n{text}");
            }
        }
        if args.contains(&"--json") {
            let logs = json_of("logs", &out);
            assert_eq!(logs["instances"].as_array().unwrap().len(), 2);
            insta::assert_snapshot!("binary_logs", redacted(&without_stamps(logs)));
        } else {
            let text = String::from_utf8_lossy(&out.stderr);
            assert!(out.stdout.is_empty(), "stdout is for --json only");
            assert!(text.contains("DJANGO_SECRET_KEY=*** loaded"), "{text}");
        }
    }

    // A rollback in GitHub Actions, with its GitHub deployment.
    let github = fake_github().await;
    let cmd = in_actions(
        binary(
            &w,
            &[
                "rollback",
                "--env",
                "staging",
                "--deadline",
                "30s",
                "--json",
            ],
        ),
        &w,
        &github.uri(),
    );
    let rollback = json_of("rollback", &output(cmd).await);
    assert_eq!(
        w.emu.environment("antenna-staging").version.as_deref(),
        Some(labels[0].as_str())
    );
    insta::assert_snapshot!("binary_rollback", redacted(&rollback));
    let created = posted(&github, "/repos/ami/antenna/deployments").await;
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["ref"], "0123456789abcdef0123456789abcdef01234567",
        "the deployment names the commit of the version rolled back to"
    );
    assert_eq!(created[0]["environment"], "staging");
    let statuses = posted(&github, STATUSES).await;
    assert_eq!(states(&statuses), ["in_progress", "success"]);
    assert_eq!(
        statuses[1]["log_url"],
        "https://github.com/ami/antenna/actions/runs/77"
    );

    let args = ["cleanup", "--json", "--keep", "0"];
    let cleanup = json_of("cleanup", &output(binary(&w, &args)).await);
    insta::assert_snapshot!("binary_cleanup", redacted(&cleanup));
    assert!(
        w.emu.calls_of("DeleteApplicationVersion").is_empty(),
        "without --yes, cleanup deletes nothing"
    );

    // A rollback whose deploy fails: status 1, deployment `failure`, the logs in groups.
    fail_next_deploy(&w);
    let github = fake_github().await;
    let args = [
        "rollback",
        "--env",
        "staging",
        "--deadline",
        "30s",
        labels[1].as_str(),
    ];
    let out = output(in_actions(binary(&w, &args), &w, &github.uri())).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let statuses = posted(&github, STATUSES).await;
    assert_eq!(states(&statuses), ["in_progress", "failure"]);
    assert_failure_logs_grouped(&stderr);
}

/// `stderr` shows, in one `::group::` per instance and file, the last lines of eb-engine.log
/// (with EB's failure in it) and of the django container's log, secrets masked.
fn assert_failure_logs_grouped(stderr: &str) {
    let groups: Vec<&str> = stderr
        .split("::group::")
        .skip(1)
        .map(|g| g.split("::endgroup::").next().unwrap())
        .collect();
    let group = |file: &str| {
        groups
            .iter()
            .filter(|g| g.lines().next().unwrap_or_default().contains(file))
            .collect::<Vec<_>>()
    };
    let engine = group("/var/log/eb-engine.log (last ");
    assert_eq!(engine.len(), 2, "one per instance:\n{stderr}");
    assert!(
        engine[0].contains("[ERROR] Instance deployment failed."),
        "{stderr}"
    );
    let django = group("/var/log/containers/django-4f2a-stdouterr.log (last ");
    assert_eq!(django.len(), 2, "{stderr}");
    assert!(
        django[0].contains("DJANGO_SECRET_KEY=*** loaded"),
        "{stderr}"
    );
    assert_eq!(
        group("/var/log/ecs/ecs-agent.log (last ").len(),
        2,
        "{stderr}"
    );
    for secret in &SECRETS[..3] {
        assert!(!stderr.contains(secret), "{secret} leaked:\n{stderr}");
    }
    assert_eq!(
        stderr.matches("::group::").count(),
        stderr.matches("::endgroup::").count()
    );
}

/// A deploy in GitHub Actions near the quota warns (900 versions) and, when EB fails it,
/// prints the last lines of the relevant logs in `::group::`s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_deploy_warns_near_the_quota_and_groups_the_failure_logs() {
    let w = World::new().await;
    w.config(&Settings {
        rollback: false,
        ..Settings::default()
    });
    // v0 and 899 more: 900 versions in the account before the deploy creates one.
    for i in 1..900 {
        w.emu.add_version(
            &w.application,
            &format!("old-{i}"),
            &w.bucket,
            &format!("{}/old-{i}.zip", w.application),
            "PROCESSED",
        );
    }
    add_secret_lines(&w);
    fail_next_deploy(&w);
    let bundle = w.bundle.display().to_string();
    let args = ["deploy", "--release", "v1.0.0", "--bundle", bundle.as_str()];
    let github = fake_github().await;
    let out = output(in_actions(binary(&w, &args), &w, &github.uri())).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("900 application versions exist in this account and region (Elastic Beanstalk allows 1000): run `cargo xtask cleanup`"),
        "{stderr}"
    );
    assert_failure_logs_grouped(&stderr);
}

/// `cleanup --lifecycle` writes EB's version lifecycle policy; the emulator applies it as EB
/// does, each time a version is created: the versions beyond MaxCount (not counting the new
/// one) and those older than MaxAgeInDays go with their bundles, never one an environment
/// runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_lifecycle_is_applied_by_eb_when_versions_are_created() {
    let w = World::new().await;
    w.config(&Settings::default());
    let app = w.application.clone();
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    for (label, age) in [
        ("a1", 46),
        ("a2", 45),
        ("a3", 44),
        ("a4", 43),
        ("y1", 2),
        ("y2", 1),
    ] {
        add_version_with_bundle(&w, label, now - day * age).await;
    }
    // The environment runs the oldest one.
    w.emu
        .update_environment(&w.environment, |e| e.version = Some("a1".into()));
    let bundle_exists = |label: &str| {
        let (s3, bucket, key) = (w.s3.clone(), w.bucket.clone(), format!("{app}/{label}.zip"));
        async move {
            s3.head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .is_ok()
        }
    };
    let role = "arn:aws:iam::123456789012:role/aws-elasticbeanstalk-service-role";
    let base = [
        "cleanup",
        "--lifecycle",
        "--keep",
        "3",
        "--older-than",
        "30d",
        "--service-role",
        role,
    ];
    let out = output(binary(&w, &base)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        w.emu
            .calls_of("UpdateApplicationResourceLifecycle")
            .is_empty(),
        "without --yes nothing is written"
    );
    let mut args = base.to_vec();
    args.push("--yes");
    let out = output(binary(&w, &args)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Elastic Beanstalk now keeps at most 3 versions of {app}, none older than 30 days"
        )),
        "{stderr}"
    );
    let policy = w.emu.lifecycle(&app).unwrap();
    for (k, v) in [
        ("ServiceRole", role),
        ("VersionLifecycleConfig.MaxCountRule.Enabled", "true"),
        ("VersionLifecycleConfig.MaxCountRule.MaxCount", "3"),
        (
            "VersionLifecycleConfig.MaxCountRule.DeleteSourceFromS3",
            "true",
        ),
        ("VersionLifecycleConfig.MaxAgeRule.Enabled", "true"),
        ("VersionLifecycleConfig.MaxAgeRule.MaxAgeInDays", "30"),
        (
            "VersionLifecycleConfig.MaxAgeRule.DeleteSourceFromS3",
            "true",
        ),
    ] {
        assert_eq!(
            policy.get(k).map(String::as_str),
            Some(v),
            "{k}: {policy:?}"
        );
    }
    let mut left = w.emu.version_labels(&app);
    left.sort();
    assert_eq!(
        left.len(),
        7,
        "EB applies the policy when a version is created: {left:?}"
    );

    // A deploy creates a version: EB keeps the 3 newest others (v0, y2, y1) and the one
    // the environment runs (a1, beyond the count and too old), and deletes a2..a4 with their
    // bundles.
    let first = deploy(&w, "v1.0.0", &dockerrun("antenna-backend", "v1", 700)).await;
    let mut left = w.emu.version_labels(&app);
    left.sort();
    let mut want = vec![
        first.clone(),
        "a1".into(),
        "v0".into(),
        "y1".into(),
        "y2".into(),
    ];
    want.sort();
    assert_eq!(left, want);
    for label in ["a2", "a3", "a4"] {
        assert!(
            !bundle_exists(label).await,
            "the bundle of {label} is still in S3"
        );
    }
    for label in ["a1", "y1", "y2"] {
        assert!(
            bundle_exists(label).await,
            "the bundle of {label} was deleted"
        );
    }

    // The next version: a1 no longer runs, so it goes; y1 is now the fourth newest.
    let second = deploy(&w, "v1.1.0", &dockerrun("antenna-backend", "v1", 701)).await;
    let mut left = w.emu.version_labels(&app);
    left.sort();
    let mut want = vec![first.clone(), second.clone(), "v0".into(), "y2".into()];
    want.sort();
    assert_eq!(left, want);
    assert!(!bundle_exists("a1").await && !bundle_exists("y1").await);
    assert_eq!(
        w.emu.environment(&w.environment).version.as_deref(),
        Some(second.as_str())
    );
}

/// `status --watch` refreshes at the deploy's polite pace: with time compressed 20 times
/// (the client's pacing and EB's throttle alike), no call is throttled, reads stay under the
/// pacing's rate once its burst is spent, refreshes are at least the poller's first wait
/// apart, and the watch follows a deploy in flight to its end.
#[tokio::test]
async fn status_watch_keeps_the_deploys_polite_rate() {
    const SCALE: f64 = 20.0;
    let w = World::new().await;
    let pacing = Pacing::scaled(SCALE);
    let s = w.session(pacing);
    w.emu.throttle_like_eb(SCALE);
    w.emu
        .add_version(&w.application, "v1", &w.bucket, "v1.zip", "PROCESSED");
    w.emu.start_foreign_deploy(
        &w.environment,
        "v1",
        Script::success(Duration::from_millis(1500)),
    );
    let env = staging(&w);
    let mut seen: Vec<(String, bool)> = vec![];
    let started = std::time::Instant::now();
    status::watch(&s, std::slice::from_ref(&env), None, |r| {
        let e = &r.environments[0];
        seen.push((e.status.clone(), e.in_flight.is_some()));
        Ok(seen.len() < 8 && !(e.status == "Ready" && e.version.as_deref() == Some("v1")))
    })
    .await
    .unwrap();
    assert!(
        seen[0].1,
        "the first refresh sees the deploy in flight: {seen:?}"
    );
    assert_eq!(
        seen.last().unwrap(),
        &("Ready".to_string(), false),
        "the watch follows the deploy to its end: {seen:?}"
    );
    let calls: Vec<_> = w
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.at >= started)
        .collect();
    assert!(
        calls.iter().all(|c| c.status == 200),
        "throttled or failed: {:?}",
        calls
            .iter()
            .filter(|c| c.status != 200)
            .map(|c| (&c.action, c.status))
            .collect::<Vec<_>>()
    );
    let span = calls.last().unwrap().at - calls[0].at;
    let beyond_burst = calls.len().saturating_sub(pacing.burst as usize) as f64;
    assert!(
        beyond_burst <= pacing.max_rate * span.as_secs_f64() * 1.05 + 1.0,
        "{} reads in {span:?}: above {} a second",
        calls.len(),
        pacing.max_rate
    );
    let refreshes: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "DescribeEnvironments")
        .map(|c| c.at)
        .collect();
    assert_eq!(refreshes.len(), seen.len());
    let first_wait = pacing.initial_interval.mul_f64(1.0 - pacing.jitter);
    for pair in refreshes.windows(2) {
        assert!(
            pair[1] - pair[0] >= first_wait,
            "refreshed too soon: {:?}",
            pair[1] - pair[0]
        );
    }
}

/// `history` and `cleanup` read every page of `DescribeApplicationVersions` (100 a page).
#[tokio::test]
async fn history_and_cleanup_read_every_page_of_versions() {
    let w = World::new().await;
    let s = session(&w);
    let app = w.application.clone();
    let now = SystemTime::now();
    for i in 1..=250u64 {
        w.emu.add_version_at(
            &app,
            &format!("v{i}"),
            &w.bucket,
            &format!("{app}/v{i}.zip"),
            "PROCESSED",
            "",
            now - Duration::from_secs(86_400 + (300 - i) * 60),
        );
    }
    let env = staging(&w);
    let h = history::history(&s, &app, std::slice::from_ref(&env), 1000)
        .await
        .unwrap();
    assert_eq!(h.versions.len(), 251);
    assert_eq!(h.versions[0].version.label, "v0", "newest first");
    assert_eq!(h.versions[1].version.label, "v250");
    assert_eq!(h.versions[250].version.label, "v1");
    let tokens: Vec<Option<String>> = w
        .emu
        .calls_of("DescribeApplicationVersions")
        .iter()
        .filter(|c| c.param("VersionLabels.member.1").is_none())
        .map(|c| c.param("NextToken").map(str::to_string))
        .collect();
    assert_eq!(tokens.len(), 3, "three pages: {tokens:?}");
    let report = cleanup_plan(&s, &env, 10).await;
    assert_eq!(report.total, 251);
    // The newest 10 stay: v0 (it runs) and v250..v242 (v250 is also its probable rollback
    // target).
    assert_eq!(report.count(Action::Delete), 241, "{}", report.render());
}

/// A PROCESSED version `label` whose bundle (in S3) names the image `repository:tag`.
async fn add_version_naming(w: &World, label: &str, repository: &str, tag: &str) {
    let key = format!("{}/{label}.zip", w.application);
    let zip = w.dir.path().join(format!("{label}.zip"));
    write_bundle(&zip, &dockerrun(repository, tag, 512));
    w.s3.put_object()
        .bucket(&w.bucket)
        .key(&key)
        .body(std::fs::read(&zip).unwrap().into())
        .send()
        .await
        .unwrap();
    w.emu
        .add_version(&w.application, label, &w.bucket, &key, "PROCESSED");
}

/// A PROCESSED version `label` whose bundle names `repository:v1`, pushed to moto's ECR.
async fn add_deployable_version(w: &World, s: &Session, repository: &str, label: &str) {
    push_image(s, repository, "v1").await;
    add_version_naming(w, label, repository, "v1").await;
}

/// A rollback takes deploy's lock (it waits for the deploy in flight before its own
/// `UpdateEnvironment`, or gives up after the lock wait changing nothing) and runs the
/// environment's checks after EB's verdict (a failed check fails the rollback).
#[tokio::test]
async fn rollback_waits_for_the_deploy_in_flight_and_runs_the_checks() {
    let w = World::new().await;
    let s = session(&w);
    let env = staging(&w);
    add_deployable_version(&w, &s, "ops-lock-backend", "good").await;
    add_deployable_version(&w, &s, "ops-lock-backend", "other").await;
    let req = |lock_wait: Duration| RollbackRequest {
        env: &env,
        label: Some("good"),
        deadline: None,
        lock_wait: Some(lock_wait),
        state_dir: None,
        dry_run: false,
    };

    // A deploy that outlasts the lock wait: nothing is changed.
    w.emu.start_foreign_deploy(
        &w.environment,
        "other",
        Script::success(Duration::from_secs(3)),
    );
    let (_, report) = rollback::rollback(&s, &req(Duration::from_millis(200)), None)
        .await
        .unwrap();
    assert!(!report.ok, "{}", report.table());
    assert!(
        report.stages[0].output.contains("after waiting"),
        "{}",
        report.table()
    );
    assert!(w.emu.calls_of("UpdateEnvironment").is_empty());

    // Within the lock wait: the rollback goes out once that deploy is over, then its checks
    // run and one fails.
    let check = FixedVerify(Err("GET /api/v2/ answered 502".into()));
    let (_, report) = rollback::rollback(&s, &req(Duration::from_secs(10)), Some(&check))
        .await
        .unwrap();
    let updates = w.emu.calls_of("UpdateEnvironment");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].param("VersionLabel"), Some("good"));
    let foreign_end = w.emu.finishes(&w.environment)[0];
    assert!(
        updates[0].at >= foreign_end,
        "the rollback did not wait for the deploy in flight"
    );
    assert_eq!(report.stages[0].outcome, pipeline::deploy::Outcome::Done);
    let verify = &report.stages[1];
    assert_eq!(verify.stage, "verify");
    assert_eq!(verify.outcome, pipeline::deploy::Outcome::Failed);
    assert!(verify.output.contains("answered 502"), "{}", verify.output);
    assert!(!report.ok, "a failed check fails the rollback");
}

/// A deploy this machine started shows in `status` from its state file (who: this machine;
/// its request and the version it replaces), and `cleanup` keeps both versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_cleanup_read_this_machines_deploy_state_file() {
    let w = World::new().await;
    let s = session(&w);
    let env = staging(&w);
    add_deployable_version(&w, &s, "ops-state-backend", "next").await;
    w.emu
        .script_next_deploy(&w.environment, Script::success(Duration::from_millis(1500)));
    let dir = w.dir.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    let deploying = {
        let (own, env, dir) = (session(&w), env.clone(), dir.clone());
        tokio::spawn(async move {
            let req = env.deploy_request("next", None, None, Some(&dir), false);
            pipeline::eb::deploy(&own.eb, &req).await
        })
    };
    // Until EB has taken the request, the state file may not be written yet.
    let mut st = status::status(&s, &env, Some(&dir)).await.unwrap();
    for _ in 0..50 {
        if st
            .in_flight
            .as_ref()
            .is_some_and(|f| f.request_id.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        st = status::status(&s, &env, Some(&dir)).await.unwrap();
    }
    let f = st.in_flight.expect("a deploy in flight");
    assert_eq!(f.label, "next");
    assert_eq!(
        f.started_by.as_deref(),
        Some("this machine (deploy state file)")
    );
    assert_eq!(f.previous.as_deref(), Some("v0"));
    assert!(f.request_id.is_some());
    let report = cleanup::cleanup(
        &s,
        &CleanupRequest {
            application: &w.application,
            environments: std::slice::from_ref(&env),
            keep: 0,
            older_than: None,
            dry_run: true,
            state_dir: Some(&dir),
        },
    )
    .await
    .unwrap();
    assert_eq!(report.count(Action::Delete), 0, "{}", report.render());
    let outcome = deploying.await.unwrap().unwrap();
    assert!(outcome.verdict.ok(), "{outcome:?}");
    let after = status::status(&s, &env, Some(&dir)).await.unwrap();
    assert!(
        after.in_flight.is_none(),
        "the state file is gone after the verdict"
    );
}
