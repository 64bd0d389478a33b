//! `deploy` against moto (S3) and the EB emulator: verdicts, messages, retries, rollback,
//! re-runs.

use std::time::Duration;

use integration::deploy_world::{FixedVerify, Settings, World, GOOD_DOCKERRUN};
use integration::eb_emulator::{Fault, Script, Step, Which};
use integration::services;
use pipeline::deploy::{Outcome, RunReport};
use pipeline::eb::{DeployVerdict, Pacing};

fn stage<'a>(r: &'a RunReport, name: &str) -> &'a pipeline::deploy::StageReport {
    r.stages
        .iter()
        .find(|s| s.stage == name)
        .unwrap_or_else(|| panic!("no stage {name} in {r:#?}"))
}

fn verdict(r: &RunReport) -> DeployVerdict {
    r.deploy.as_ref().expect("no deploy outcome").verdict
}

/// Settings with rollback off, so the deploy's own verdict ends the run.
fn no_rollback() -> Settings {
    Settings {
        rollback: false,
        ..Settings::default()
    }
}

/// The deploy's verdict is `expected`; the message shows the run's table.
fn assert_verdict(r: &RunReport, expected: DeployVerdict) {
    assert_eq!(verdict(r), expected, "{}", r.table());
}

fn deploy_message(r: &RunReport) -> &str {
    &r.deploy.as_ref().expect("no deploy outcome").message
}

#[tokio::test]
async fn success_uploads_creates_deploys_and_reports() {
    let w = World::new().await;
    let label = w.label();
    let r = w.deploy(&Settings::default()).await;
    assert!(r.ok, "{}", r.table());
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert_eq!(
        deploy_message(&r),
        format!(
            "{label} runs on {}: Ready, health Green/Ok, 2/2 instances on {label}",
            w.environment
        )
    );
    let key = format!("{}/{label}.zip", w.application);
    assert_eq!(stage(&r, "upload").outcome, Outcome::Done);
    assert_eq!(
        stage(&r, "upload").output,
        format!("s3://{}/{key}", w.bucket)
    );
    assert_eq!(
        stage(&r, "version").output,
        format!("{label} created (PROCESSED)")
    );
    assert_eq!(stage(&r, "build").outcome, Outcome::Skipped);
    assert_eq!(stage(&r, "verify").outcome, Outcome::NotAvailable);
    // S3 holds the bundle with its sha256; EB got Process=true and one update.
    let head =
        w.s3.head_object()
            .bucket(&w.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    let sha = pipeline::deploy::sha256_file(&w.bundle).unwrap();
    assert_eq!(head.metadata().unwrap().get("sha256"), Some(&sha));
    let create = &w.emu.calls_of("CreateApplicationVersion")[0];
    assert_eq!(create.param("Process"), Some("true"));
    assert_eq!(create.param("SourceBundle.S3Key"), Some(key.as_str()));
    assert_eq!(w.deployed_labels(), vec![label.clone()]);
    // The events of this request were streamed, in order.
    let events = &r.deploy.as_ref().unwrap().events;
    assert_eq!(
        events.first().map(String::as_str),
        Some("INFO Environment update is starting.")
    );
    assert_eq!(
        events.last().map(String::as_str),
        Some("INFO Environment update completed successfully.")
    );
    assert!(
        r.table().contains("deploy succeeded: v1.0.0"),
        "{}",
        r.table()
    );
}

#[tokio::test]
async fn success_after_slow_polls() {
    let w = World::new().await;
    // Time compressed 20x here (so that the client's own time per call, slow when every test
    // runs at once, stays small next to the intervals): 12 s is a 4-minute deploy; quiet
    // polls 200-225 ms apart, finishing polls 100 ms.
    w.script_deploy(Script::success(Duration::from_secs(12)));
    let s = Settings {
        deploy: "30s",
        ..Settings::default()
    };
    let mut req = w.request(&s);
    req.pacing = Pacing::scaled(20.0);
    let r = w.run(&req, None).await;
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert!(
        deploy_message(&r).contains(": Ready, health Green/Ok"),
        "{}",
        deploy_message(&r)
    );
    // Events come first; the status is read when they say the update ended and every 20 s
    // otherwise: far fewer status reads than event polls.
    let update = w.emu.calls_of("UpdateEnvironment")[0].at;
    let polls: Vec<_> = w.emu.calls_of("DescribeEvents");
    let status = w.emu.calls_of("DescribeEnvironments").len();
    assert!(
        (50..=120).contains(&polls.len()),
        "{} DescribeEvents calls",
        polls.len()
    );
    assert!(
        status * 3 < polls.len(),
        "{status} DescribeEnvironments calls"
    );
    // Quiet before the instances (0-4 s), finishing after the first instance (8-12 s): a
    // fixed interval, or a poller that never tightens, has the same gaps in both.
    let gap = |from: u64, to: u64| {
        let t: Vec<_> = polls
            .iter()
            .map(|c| c.at.duration_since(update).as_millis() as u64)
            .filter(|ms| (from..to).contains(ms))
            .collect();
        (t.last().unwrap() - t.first().unwrap()) as f64 / (t.len() - 1) as f64
    };
    let (early, late) = (gap(300, 3800), gap(8200, 11800));
    assert!(
        early > late * 1.3,
        "quiet polls every {early} ms, finishing every {late} ms"
    );
    let finished = *w.emu.finishes(&w.environment).last().unwrap();
    // The status is read every status interval (1 s here) while the events have not said the
    // update ended, not at each event: at most 13 reads in the 12 s deploy.
    let status_during = w
        .emu
        .calls_of("DescribeEnvironments")
        .into_iter()
        .filter(|c| c.at > update && c.at < finished)
        .count();
    assert!(
        status_during <= 13,
        "{status_during} status reads during the deploy"
    );
    // Health is read only once EB's events said the update ended: never during the deploy.
    for action in ["DescribeEnvironmentHealth", "DescribeInstancesHealth"] {
        let during: Vec<_> = w
            .emu
            .calls_of(action)
            .into_iter()
            .filter(|c| c.at > update && c.at < finished)
            .collect();
        assert!(
            during.is_empty(),
            "{} {action} calls during the deploy",
            during.len()
        );
    }
}

#[tokio::test]
async fn a_late_failure_event_dated_before_the_newest_is_caught() {
    let w = World::new().await;
    let label = w.label();
    let failed = "[Instance: {instance}] Command failed on instance. Return code: 1 Output: container django exited.";
    w.script_deploy(Script::new(vec![
        Step::at_ms(20).event("INFO", "Deploying new version to instance(s)."),
        Step::at_ms(100).event("INFO", "Instance deployment completed successfully."),
        // Recorded late: dated 50 ms in, listed only at 200 ms.
        Step::at_ms(200).late_event("ERROR", failed, Duration::from_millis(150)),
        Step::at_ms(400)
            .event("ERROR", "Failed to deploy application.")
            .status("Ready")
            .env_version(Which::Previous)
            .health("Red", "Degraded"),
    ]));
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    let instance = w.emu.environment(&w.environment).instances[1].id.clone();
    assert_eq!(
        deploy_message(&r),
        format!(
            "the deploy of {label} to {} failed: Elastic Beanstalk reported \"{}\"",
            w.environment,
            failed.replace("{instance}", &instance)
        )
    );
}

#[tokio::test]
async fn ebs_command_failure_sequence_fails_with_the_instances_error() {
    let w = World::new().await;
    w.script_deploy(Script::command_failure(Duration::from_millis(200)));
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    let m = deploy_message(&r);
    assert!(
        m.contains("Elastic Beanstalk reported \"[Instance: i-")
            && m.contains("] Command failed on instance. Return code: 1"),
        "{m}"
    );
}

#[tokio::test]
async fn completion_reported_after_an_instance_failed_is_a_failure() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(Script::completed_after_instance_failure(
        Duration::from_millis(150),
        2,
    ));
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    let m = deploy_message(&r);
    let bad = w.emu.environment(&w.environment).instances[1].id.clone();
    assert!(
        m.contains("completed but the environment is not healthy"),
        "{m}"
    );
    assert!(
        m.contains(&format!("1 of 2 instances do not run {label}: {bad} (v0)")),
        "{m}"
    );
    // EB's own words were streamed, success included: the verdict did not trust them.
    let events = &r.deploy.as_ref().unwrap().events;
    assert!(
        events
            .iter()
            .any(|e| e == "INFO Environment update completed successfully."),
        "{events:?}"
    );
}

#[tokio::test]
async fn each_failure_event_ends_the_wait_with_its_text() {
    let events = [
        "Failed to deploy application.",
        "Environment health has been set to RED",
        "The environment was reverted to the previous configuration setting.",
        "Update environment operation is complete, but with errors. For more information, see troubleshooting documentation.",
        "Update environment operation is complete, but with command timeouts. Try increasing the timeout period.",
        "Instance deployment failed. For details, see 'eb-engine.log'.",
        "Unsuccessful command execution on instance id(s) 'i-0123456789abcdef0'. Aborting the operation.",
        "ECS Application sourcebundle validation error: Container named 'django' has no memory setting.",
    ];
    for text in events {
        let w = World::new().await;
        let label = w.label();
        // WARN on purpose: the text alone must be enough. The environment would stay Updating
        // for 10 s: the verdict must come from the event, at once.
        w.script_deploy(Script::new(vec![
            Step::at_ms(40).event("WARN", text),
            Step::at_ms(10_000).status("Ready"),
        ]));
        let s = no_rollback();
        let started = std::time::Instant::now();
        let r = w.deploy(&s).await;
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{text}: took {:?}",
            started.elapsed()
        );
        assert!(!r.ok);
        assert_eq!(verdict(&r), DeployVerdict::Failed, "{text}");
        assert_eq!(
            deploy_message(&r),
            format!(
                "the deploy of {label} to {} failed: Elastic Beanstalk reported \"{text}\"",
                w.environment
            )
        );
        assert_eq!(stage(&r, "deploy").outcome, Outcome::Failed);
        assert_eq!(stage(&r, "verify").outcome, Outcome::NotRun);
        assert_eq!(
            stage(&r, "rollback").output,
            "rollback is off (rollback = false or --no-rollback)"
        );
    }
}

#[tokio::test]
async fn red_health_after_completed_is_a_failure() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(Script::new(vec![Step::at_ms(60)
        .event("INFO", "Environment update completed successfully.")
        .status("Ready")
        .instances(usize::MAX, Which::Deployed)
        .health("Red", "Severe")
        .causes(&["100.0 % of the requests are failing with HTTP 5xx."])]));
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    assert_eq!(
        deploy_message(&r),
        format!(
            "the deploy of {label} to {} completed but the environment is not healthy after 150ms: health is Red/Severe, below the threshold Info",
            w.environment
        )
    );
}

/// EB reports Green/Info while and just after an operation runs ("Application update
/// completed 10 seconds ago…"): by default that is healthy; `health_threshold = "Ok"` waits for
/// Ok and fails when health stays at Info.
#[tokio::test]
async fn an_environment_settling_at_info_is_healthy_by_default() {
    let script = || {
        Script::new(vec![Step::at_ms(60)
            .event("INFO", "Environment update completed successfully.")
            .status("Ready")
            .instances(usize::MAX, Which::Deployed)
            .health("Green", "Info")
            .causes(&[
                "Application update completed 10 seconds ago and took 47 seconds.",
            ])])
    };
    let w = World::new().await;
    w.script_deploy(script());
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Succeeded);

    let w = World::new().await;
    w.script_deploy(script());
    let mut req = w.request(&no_rollback());
    req.config
        .environments
        .get_mut("staging")
        .unwrap()
        .health_threshold = pipeline::config::HealthThreshold::Ok;
    let r = w.run(&req, None).await;
    assert_verdict(&r, DeployVerdict::Failed);
    assert!(
        deploy_message(&r).contains("health is Green/Info, below the threshold Ok"),
        "{}",
        deploy_message(&r)
    );
}

#[tokio::test]
async fn wrong_version_on_some_instances_is_a_failure() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(
        Script::new(vec![Step::at_ms(60)
            .event("INFO", "Environment update completed successfully.")
            .status("Ready")
            .health("Green", "Ok")
            .instances(1, Which::Deployed)
            .causes(&["Incorrect application version found on 1 out of 2 instances. Expected version \"{version}\" (deployment 3)."])]),
    );
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    let m = deploy_message(&r);
    assert!(
        m.starts_with(&format!(
            "the deploy of {label} to {} completed but the environment is not healthy",
            w.environment
        )),
        "{m}"
    );
    assert!(m.contains(&format!("EB reports: Incorrect application version found on 1 out of 2 instances. Expected version \"{label}\"")), "{m}");
    assert!(
        m.contains(&format!("1 of 2 instances do not run {label}: i-")),
        "{m}"
    );
    assert!(m.contains("(v0)"), "{m}");
}

#[tokio::test]
async fn stuck_updating_past_the_deadline_says_how_to_look() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(Script::new(vec![Step::at_ms(60_000).status("Ready")]));
    let s = Settings {
        deploy: "400ms",
        ..Settings::default()
    };
    let r = w.deploy(&s).await;
    assert_verdict(&r, DeployVerdict::TimedOut);
    let rid = r.deploy.as_ref().unwrap().request_id.clone().unwrap();
    let m = deploy_message(&r);
    assert!(m.starts_with(&format!("no verdict on the deploy of {label} to {} after 400ms (last seen: Updating Grey ({label}))", w.environment)), "{m}");
    assert!(m.contains("it may still be running"), "{m}");
    assert!(m.contains(&format!(
        "`aws elasticbeanstalk describe-events --application-name {} --environment-name {} --request-id {rid} --region us-west-2`",
        w.application, w.environment
    )), "{m}");
    assert_eq!(
        stage(&r, "rollback").output,
        "no rollback while the deploy may still run: re-run to wait for it"
    );
    assert_eq!(w.deployed_labels(), vec![label]);
}

#[tokio::test]
async fn not_ready_waits_for_the_lock_then_deploys() {
    let w = World::new().await;
    let label = w.label();
    w.emu.start_foreign_deploy(
        &w.environment,
        "v-other",
        Script::success(Duration::from_millis(300)),
    );
    let r = w.deploy(&Settings::default()).await;
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert!(deploy_message(&r).starts_with(&format!("{label} runs on {}", w.environment)));
    // Ours went out once, after the other deploy ended, and EB never refused it.
    let updates = w.emu.calls_of("UpdateEnvironment");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].status, 200);
    assert!(updates[0].at >= w.emu.finishes(&w.environment)[0]);
    // The previous version recorded is the one the other deploy left.
    assert_eq!(
        r.deploy.as_ref().unwrap().previous.as_ref().unwrap().label,
        "v-other"
    );
}

#[tokio::test]
async fn not_ready_past_the_lock_wait_fails_without_touching_it() {
    let w = World::new().await;
    w.emu.start_foreign_deploy(
        &w.environment,
        "v-other",
        Script::success(Duration::from_secs(30)),
    );
    let s = Settings {
        lock_wait: "300ms",
        ..Settings::default()
    };
    let r = w.deploy(&s).await;
    assert_verdict(&r, DeployVerdict::Locked);
    assert_eq!(
        deploy_message(&r),
        format!(
            "{} is still Updating (deploying version v-other) after waiting 300ms; nothing was changed: re-run when that deploy is over, or raise --lock-wait",
            w.environment
        )
    );
    assert!(w.emu.calls_of("UpdateEnvironment").is_empty());
    assert!(
        r.stages.iter().all(|s| s.stage != "rollback"),
        "no rollback after a lock wait"
    );
}

#[tokio::test]
async fn throttling_bursts_are_retried() {
    let w = World::new().await;
    w.emu
        .inject(Some("DescribeEnvironments"), Fault::Throttle, 6);
    w.emu.inject(Some("DescribeEvents"), Fault::Throttle, 6);
    w.emu
        .inject(Some("CreateApplicationVersion"), Fault::Throttle, 2);
    let r = w.deploy(&Settings::default()).await;
    assert_verdict(&r, DeployVerdict::Succeeded);
    let throttled = w.emu.calls().iter().filter(|c| c.status == 400).count();
    assert_eq!(throttled, 14);
    // Throttled creates were retried; still one version.
    assert_eq!(
        w.emu
            .calls_of("CreateApplicationVersion")
            .iter()
            .filter(|c| c.status == 200)
            .count(),
        1
    );
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried() {
    let w = World::new().await;
    w.emu.inject(None, Fault::ServerError(500), 3);
    w.emu
        .inject(Some("DescribeEnvironments"), Fault::ServerError(503), 2);
    w.emu.inject(Some("DescribeEvents"), Fault::Drop, 2);
    let r = w.deploy(&Settings::default()).await;
    assert_verdict(&r, DeployVerdict::Succeeded);
    let calls = w.emu.calls();
    assert_eq!(calls.iter().filter(|c| c.status >= 500).count(), 5);
    assert_eq!(calls.iter().filter(|c| c.status == 0).count(), 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_a_clear_message() {
    let w = World::new().await;
    w.emu
        .inject(Some("DescribeEnvironments"), Fault::ServerError(503), 1000);
    let r = w.deploy(&Settings::default()).await;
    assert!(!r.ok);
    let out = &stage(&r, "deploy").output;
    assert_eq!(stage(&r, "deploy").outcome, Outcome::Failed);
    assert!(
        out.starts_with(&format!(
            "cannot read the state of the Elastic Beanstalk environment {}",
            w.environment
        )),
        "{out}"
    );
    assert!(
        out.contains("ServiceUnavailable: The request processing has failed"),
        "{out}"
    );
    assert!(out.contains("(gave up after 9 attempts)"), "{out}");
    assert!(w.emu.calls_of("UpdateEnvironment").is_empty());
}

#[tokio::test]
async fn version_failed_on_processing_stops_before_deploy() {
    let w = World::with_dockerrun(r#"{"AWSEBDockerrunVersion": "1", "containerDefinitions": [{"name": "web", "image": "x", "memory": 256}]}"#).await;
    let label = w.label();
    let r = w.deploy(&Settings::default()).await;
    assert!(!r.ok);
    let v = stage(&r, "version");
    assert_eq!(v.outcome, Outcome::Failed);
    assert!(v.output.starts_with(&format!(
        "Elastic Beanstalk could not process the application version {label} (s3://{}/{}/{label}.zip): Failed to process application version {label}: ECS Application sourcebundle validation error: AWSEBDockerrunVersion must be 2",
        w.bucket, w.application
    )), "{}", v.output);
    assert!(v.output.contains("fix Dockerrun.aws.json"), "{}", v.output);
    assert_eq!(stage(&r, "deploy").outcome, Outcome::NotRun);
    assert!(w.emu.calls_of("UpdateEnvironment").is_empty());
}

#[tokio::test]
async fn version_failed_with_no_reason_stops_and_says_where_to_look() {
    // Real EB often marks a version FAILED with no event at all.
    let w = World::new().await;
    let label = w.label();
    w.emu.fail_next_processing_silently(1);
    let r = w.deploy(&Settings::default()).await;
    assert!(!r.ok);
    let v = stage(&r, "version");
    assert_eq!(v.outcome, Outcome::Failed);
    assert!(
        v.output.starts_with(&format!(
            "Elastic Beanstalk could not process the application version {label} (s3://{}/{}/{label}.zip): EB gave no reason; see the application's events in the EB console",
            w.bucket, w.application
        )),
        "{}",
        v.output
    );
    // It looked for EB's reason among the version's events before giving up.
    let looked = w.emu.calls_of("DescribeEvents");
    assert!(
        looked
            .iter()
            .any(|c| c.param("VersionLabel") == Some(label.as_str())),
        "{looked:?}"
    );
    assert_eq!(stage(&r, "deploy").outcome, Outcome::NotRun);
    assert!(w.emu.calls_of("UpdateEnvironment").is_empty());
}

#[tokio::test]
async fn rollback_after_a_failed_deploy() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(Script::failure(
        Duration::from_millis(60),
        "Instance deployment failed. For details, see 'eb-engine.log'.",
    ));
    w.script_deploy(Script::success(Duration::from_millis(60)));
    let r = w.deploy(&Settings::default()).await;
    assert!(!r.ok);
    assert_verdict(&r, DeployVerdict::Failed);
    assert_eq!(
        deploy_message(&r),
        format!("the deploy of {label} to {} failed: Elastic Beanstalk reported \"Instance deployment failed. For details, see 'eb-engine.log'.\"", w.environment)
    );
    let rb = stage(&r, "rollback");
    assert_eq!(rb.outcome, Outcome::Done, "{}", r.table());
    assert_eq!(
        rb.output,
        format!(
            "rolled back to v0: v0 runs on {}: Ready, health Green/Ok, 2/2 instances on v0",
            w.environment
        )
    );
    assert_eq!(
        r.rollback.as_ref().unwrap().verdict,
        DeployVerdict::Succeeded
    );
    assert_eq!(w.deployed_labels(), vec![label, "v0".to_string()]);
    assert_eq!(
        w.emu.environment(&w.environment).version.as_deref(),
        Some("v0")
    );
}

#[tokio::test]
async fn rollback_after_a_failed_verify() {
    let w = World::new().await;
    let label = w.label();
    let verify = FixedVerify(Err(
        "http: GET https://staging.example.org/api/v2/ answered 502, expected 200".into(),
    ));
    let r = w.run(&w.request(&Settings::default()), Some(&verify)).await;
    assert!(!r.ok);
    assert_verdict(&r, DeployVerdict::Succeeded);
    let v = stage(&r, "verify");
    assert_eq!(v.outcome, Outcome::Failed);
    assert_eq!(
        v.output,
        "http: GET https://staging.example.org/api/v2/ answered 502, expected 200"
    );
    let rb = stage(&r, "rollback");
    assert_eq!(rb.outcome, Outcome::Done, "{}", r.table());
    assert!(
        rb.output.starts_with("rolled back to v0: v0 runs on"),
        "{}",
        rb.output
    );
    assert_eq!(w.deployed_labels(), vec![label, "v0".to_string()]);
}

#[tokio::test]
async fn verify_passing_completes_the_run() {
    let w = World::new().await;
    let verify = FixedVerify(Ok(
        "http /api/v2/ 200; flower: 1 worker on antenna, jobs, ml_results".into(),
    ));
    let r = w.run(&w.request(&Settings::default()), Some(&verify)).await;
    assert!(r.ok, "{}", r.table());
    assert_eq!(stage(&r, "verify").outcome, Outcome::Done);
    assert_eq!(
        stage(&r, "verify").output,
        "http /api/v2/ 200; flower: 1 worker on antenna, jobs, ml_results"
    );
    assert!(r.stages.iter().all(|s| s.stage != "rollback"));
}

#[tokio::test]
async fn never_rolls_back_to_an_unhealthy_version() {
    let w = World::new().await;
    w.emu.update_environment(&w.environment, |e| {
        e.color = "Red".into();
        e.health_status = "Severe".into();
    });
    w.script_deploy(Script::failure(
        Duration::from_millis(40),
        "Failed to deploy application.",
    ));
    let r = w.deploy(&Settings::default()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    let rb = stage(&r, "rollback");
    assert_eq!(rb.outcome, Outcome::Skipped);
    assert_eq!(
        rb.output,
        "no rollback: v0 was not healthy before the deploy (Red/Severe); rolling back to it would not help"
    );
    assert_eq!(w.deployed_labels().len(), 1);
}

#[tokio::test]
async fn interrupted_run_is_picked_up_without_a_second_deploy() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(Script::success(Duration::from_millis(1500)));
    let req = w.request(&Settings::default());
    // Ctrl-C while waiting for the deploy: the run's future is dropped once it polls events.
    w.interrupt_while_waiting(&req).await;
    assert_eq!(w.emu.environment(&w.environment).status, "Updating");
    let r = w.run(&req, None).await;
    assert!(r.ok, "{}", r.table());
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert!(r.deploy.as_ref().unwrap().resumed);
    assert_eq!(
        stage(&r, "deploy").output,
        format!("{label} runs on {}: Ready, health Green/Ok, 2/2 instances on {label} (waited for the deploy an earlier run started)", w.environment)
    );
    assert_eq!(stage(&r, "upload").outcome, Outcome::Skipped);
    assert_eq!(stage(&r, "version").outcome, Outcome::Skipped);
    assert_eq!(w.emu.calls_of("CreateApplicationVersion").len(), 1);
    assert_eq!(w.deployed_labels(), vec![label]);
    // The previous version came back from the state file: a rollback would be possible.
    assert_eq!(
        r.deploy.as_ref().unwrap().previous.as_ref().unwrap().label,
        "v0"
    );
}

async fn object_stamp(w: &World, key: &str) -> (String, String) {
    let h =
        w.s3.head_object()
            .bucket(&w.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    (
        h.e_tag().unwrap().to_string(),
        h.last_modified().unwrap().to_string(),
    )
}

#[tokio::test]
async fn second_run_makes_no_write_call() {
    for bucket_in_config in [true, false] {
        let w = World::new().await;
        let label = w.label();
        let s = Settings {
            bucket_in_config,
            ..Settings::default()
        };
        let req = w.request(&s);
        let first = w.run(&req, None).await;
        assert!(first.ok, "{}", first.table());
        let key = format!("{}/{label}.zip", w.application);
        let stamp = object_stamp(&w, &key).await;
        let writes_before = w.emu.write_calls().len();
        tokio::time::sleep(Duration::from_millis(1100)).await; // LastModified has 1 s resolution
        let second = w.run(&req, None).await;
        assert!(second.ok, "{}", second.table());
        assert_eq!(
            w.emu.write_calls().len(),
            writes_before,
            "write calls on the second run: {:?}",
            w.emu.write_calls()
        );
        assert_eq!(
            object_stamp(&w, &key).await,
            stamp,
            "the S3 object was written again"
        );
        assert_verdict(&second, DeployVerdict::AlreadyDeployed);
        assert_eq!(
            deploy_message(&second),
            format!("{label} already runs on {} and is healthy (Green/Ok, 2/2 instances on {label}); nothing to do", w.environment)
        );
        assert_eq!(
            stage(&second, "upload").output,
            format!("s3://{}/{key} already holds this bundle", w.bucket)
        );
        assert_eq!(
            stage(&second, "version").output,
            format!("{label} exists for this bundle (PROCESSED); reused")
        );
    }
}

#[tokio::test]
async fn existing_key_with_other_content_is_an_error() {
    let w = World::new().await;
    let label = w.label();
    let key = format!("{}/{label}.zip", w.application);
    w.s3.put_object()
        .bucket(&w.bucket)
        .key(&key)
        .body(b"other".to_vec().into())
        .send()
        .await
        .unwrap();
    let r = w.deploy(&Settings::default()).await;
    let up = stage(&r, "upload");
    assert_eq!(up.outcome, Outcome::Failed);
    assert!(
        up.output.starts_with(&format!(
            "s3://{}/{key} already exists with other content (sha256 unknown, this bundle ",
            w.bucket
        )),
        "{}",
        up.output
    );
    assert!(
        up.output.contains("a version label names one bundle"),
        "{}",
        up.output
    );
    assert!(w.emu.write_calls().is_empty());
}

#[tokio::test]
async fn existing_label_pointing_elsewhere_is_an_error() {
    let w = World::new().await;
    let label = w.label();
    w.emu.add_version(
        &w.application,
        &label,
        &w.bucket,
        "elsewhere/other.zip",
        "PROCESSED",
    );
    let r = w.deploy(&Settings::default()).await;
    let v = stage(&r, "version");
    assert_eq!(v.outcome, Outcome::Failed);
    assert!(v.output.starts_with(&format!(
        "the application version {label} of {} already exists but points at s3://{}/elsewhere/other.zip, not at this bundle",
        w.application, w.bucket
    )), "{}", v.output);
    assert!(w.emu.calls_of("CreateApplicationVersion").is_empty());
    assert!(w.emu.calls_of("UpdateEnvironment").is_empty());
}

#[tokio::test]
async fn dry_run_plans_and_writes_nothing() {
    let w = World::new().await;
    let label = w.label();
    let mut req = w.request(&Settings::default());
    req.options.dry_run = true;
    let r = w.run(&req, None).await;
    assert!(r.ok, "{}", r.table());
    assert!(w.emu.write_calls().is_empty());
    let key = format!("{}/{label}.zip", w.application);
    assert!(
        w.s3.head_object()
            .bucket(&w.bucket)
            .key(&key)
            .send()
            .await
            .is_err(),
        "dry run uploaded"
    );
    assert_eq!(stage(&r, "upload").outcome, Outcome::Planned);
    assert!(
        stage(&r, "upload").output.starts_with("would upload "),
        "{}",
        stage(&r, "upload").output
    );
    assert_eq!(
        stage(&r, "version").output,
        format!("would create {label} from s3://{}/{key}", w.bucket)
    );
    assert_eq!(
        deploy_message(&r),
        format!(
            "would deploy {label} to {} (now running v0 (Green/Ok))",
            w.environment
        )
    );
    assert!(r
        .table()
        .contains("plan only (--dry-run): nothing was changed"));
}

#[tokio::test]
async fn only_deploy_with_a_label() {
    let w = World::new().await;
    w.emu
        .add_version(&w.application, "v2", &w.bucket, "x/v2.zip", "PROCESSED");
    let mut req = w.request(&Settings::default());
    req.options.bundle = None;
    req.options.label = Some("v2".into());
    req.options.selection.only = vec![pipeline::stages::Stage::Deploy];
    let r = w.run(&req, None).await;
    assert!(r.ok, "{}", r.table());
    assert_eq!(stage(&r, "upload").output, "not in --only");
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert_eq!(w.deployed_labels(), vec!["v2".to_string()]);
    assert!(w.emu.calls_of("CreateApplicationVersion").is_empty());
}

#[tokio::test]
async fn whole_pipeline_from_the_repository_template() {
    // The repository's own inputs, rendered, linted, zipped, uploaded to EB's storage
    // location, processed by the emulator's Dockerrun checks and deployed.
    let w = World::named("antenna", "antenna-staging", GOOD_DOCKERRUN).await;
    integration::copy_repo_files(w.dir.path(), integration::DEPLOY_INPUTS);
    let config =
        pipeline::config::Config::load(&w.dir.path().join("deploy.toml"), &Default::default())
            .unwrap();
    w.prepare_repositories(&config).await;
    let mut req = w.request(&Settings::default());
    req.config = config;
    req.options.bundle = None;
    req.account = Some("123456789012".into());
    // Image build and push have their own tests; this one starts at render.
    req.options.selection.from = Some(pipeline::stages::Stage::Render);
    let r = w.run(&req, None).await;
    assert!(r.ok, "{}", r.table());
    let label = r.label.clone().unwrap();
    assert!(label.starts_with("v1.0.0-"), "{label}");
    assert_eq!(
        stage(&r, "render").output,
        "Dockerrun.aws.json rendered and linted (0 warning(s))"
    );
    assert_eq!(stage(&r, "bundle").outcome, Outcome::Done);
    assert_eq!(stage(&r, "build").output, "before the --from stage");
    let zip = w.dir.path().join("target/deploy/staging/deploy.zip");
    assert!(
        stage(&r, "bundle")
            .output
            .starts_with(&zip.display().to_string()),
        "{}",
        stage(&r, "bundle").output
    );
    // No bucket configured: EB's storage location, which the emulator names.
    assert_eq!(
        stage(&r, "upload").output,
        format!("s3://{}/antenna/{label}.zip", w.bucket)
    );
    assert_eq!(w.emu.calls_of("CreateStorageLocation").len(), 1);
    assert_eq!(
        w.emu.version("antenna", &label).unwrap().status,
        "PROCESSED"
    );
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert_eq!(w.deployed_labels(), vec![label.clone()]);

    // `--from upload` ships the bundle written above: same label, nothing uploaded again.
    let mut again = req.clone();
    again.options.selection.from = Some(pipeline::stages::Stage::Upload);
    let r = w.run(&again, None).await;
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.label.as_deref(), Some(label.as_str()));
    assert_eq!(stage(&r, "bundle").output, "before the --from stage");
    assert_verdict(&r, DeployVerdict::AlreadyDeployed);
    assert_eq!(w.emu.calls_of("CreateApplicationVersion").len(), 1);
    // ... and refuses it for another release, whose label it would carry.
    again.release =
        pipeline::release::Release::fixed("v2.0.0", "0123456789abcdef0123456789abcdef01234567");
    let err = pipeline::deploy::run(&again, &w.clients, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("target/deploy/staging/deploy.zip was bundled for release v1.0.0, not v2.0.0: run the bundle stage again (`--from bundle`) or pass --release v1.0.0"),
        "{err}"
    );
}

/// The `xtask` binary, pointed at moto and the emulator through the SDK's endpoint variables.
fn xtask_against(w: &World, args: &[&str]) -> std::process::Command {
    w.xtask(args)
}

/// Runs `cmd` to its end; its output and its stderr as text.
async fn output(mut cmd: std::process::Command) -> (std::process::Output, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("cannot run xtask"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_plans_then_deploys_with_json_output() {
    let w = World::new().await;
    let label = w.label();
    let (out, stderr) = ship(&w, &Settings::default(), &["--json", "--dry-run"]).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("plan only (--dry-run): nothing was changed"),
        "{stderr}"
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["deploy"]["verdict"], "dry_run");
    assert_eq!(plan["label"], label.as_str());
    assert!(w.emu.write_calls().is_empty());

    let (out, stderr) = ship(&w, &Settings::default(), &["--json"]).await;
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["deploy"]["verdict"], "succeeded");
    assert!(
        stderr.contains("INFO Environment update completed successfully."),
        "{stderr}"
    );
    assert!(stderr.contains("deploy succeeded: v1.0.0"), "{stderr}");
    assert_eq!(w.deployed_labels(), vec![label]);
}

/// A dry run without AWS credentials still shows every stage of the plan, each failure with
/// its reason, and gives up at once instead of retrying what cannot pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_without_credentials_shows_every_stage() {
    let w = World::named("antenna", "antenna-staging", GOOD_DOCKERRUN).await;
    integration::copy_repo_files(w.dir.path(), integration::DEPLOY_INPUTS);
    let mut cmd = xtask_against(
        &w,
        &[
            "deploy",
            "--env",
            "staging",
            "--release",
            "v1.0.0",
            "--dry-run",
        ],
    );
    // No credentials from any provider of the chain.
    let without_credentials = |cmd: &mut std::process::Command| {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", w.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                w.dir.path().join("no-aws-credentials"),
            );
    };
    without_credentials(&mut cmd);
    cmd.env("DEPLOY_ACCOUNT", "123456789012");
    // Staging bundles the verify agent: a stand-in keeps its release build out of the time
    // that shows credential errors are not retried.
    cmd.env(
        pipeline::verify::agent::AGENT_VAR,
        integration::stand_in_agent(w.dir.path()),
    );
    let started = std::time::Instant::now();
    let (out, stderr) = output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "credential errors are not retried"
    );
    let table: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("STAGE "))
        .collect();
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("render ") && l.contains(" done ")),
        "{stderr}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("bundle ") && l.contains(" planned ")),
        "{stderr}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("verify ") && l.contains(" planned ")),
        "{stderr}"
    );
    assert!(!table.iter().any(|l| l.contains("not run")), "{stderr}");
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("deploy ") && l.contains("FAILED") && l.contains("credentials")),
        "{stderr}"
    );
    // One line for the cause, however many stages it stops; no SDK dump.
    assert_eq!(
        stderr
            .matches("no AWS credentials: set AWS_PROFILE")
            .count(),
        1,
        "{stderr}"
    );
    for dump in [
        "DispatchFailure",
        "Attempted:",
        "dispatch failure",
        "Ec2InstanceMetadata",
    ] {
        assert!(!stderr.contains(dump), "{dump}: {stderr}");
    }
    assert!(w.emu.write_calls().is_empty());

    // Without an account either, the plan still renders, with a visible stand-in.
    let mut cmd = xtask_against(
        &w,
        &[
            "deploy",
            "--env",
            "staging",
            "--release",
            "v1.0.0",
            "--dry-run",
        ],
    );
    without_credentials(&mut cmd);
    cmd.env_remove("DEPLOY_ACCOUNT");
    let (out, stderr) = output(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("render ")
            && l.contains(" done ")
            && l.contains(
                "the AWS account is unknown, so image references use ACCOUNT-ID in this plan"
            )),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("bundle ") && l.contains(" planned ")),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("no AWS credentials: set AWS_PROFILE")
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("Attempted:"), "{stderr}");
    assert!(
        !w.dir
            .path()
            .join("target/deploy/staging/deploy.zip")
            .exists(),
        "a dry run writes no bundle"
    );
}

/// In GitHub Actions the deploy groups its stages, writes step outputs and the job summary,
/// and prints nothing extra on stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_to_github_actions() {
    let w = World::new().await;
    let label = w.label();
    w.config(&Settings::default());
    let outputs = w.dir.path().join("github_output");
    let summary = w.dir.path().join("github_summary");
    std::fs::write(&outputs, "").unwrap();
    std::fs::write(&summary, "").unwrap();
    let args = ship_args(&w, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = xtask_against(&w, &args);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("GITHUB_TOKEN");
    let (out, stderr) = output(cmd).await;
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout is for --json only");
    for stage in ["upload", "version", "deploy", "verify"] {
        assert!(
            stderr.contains(&format!("::group::{stage}\n")),
            "no group for {stage}:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.matches("::group::").count(),
        stderr.matches("::endgroup::").count()
    );
    let outputs = std::fs::read_to_string(&outputs).unwrap();
    assert!(
        outputs.contains(&format!("version_label={label}")),
        "{outputs}"
    );
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("## Deploy `v1.0.0`"), "{summary}");
}

/// Without a `url`, `verify` checks the environment's CNAME from Elastic Beanstalk, as the
/// deploy's verify stage does, and the deploy's `url` output is that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_url_verify_and_deploy_use_the_environment_cname() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"projects": "/api/v2/projects/"})),
        )
        .mount(&api)
        .await;
    let host = api.address().to_string();
    let w = World::new().await;
    w.emu
        .update_environment(&w.environment, |e| e.cname = Some(host.clone()));
    w.config(&Settings {
        checks: "[[environments.staging.checks]]\nkind = \"http\"\ntimeout = \"5s\"\n".into(),
        ..Settings::default()
    });

    let (out, stderr) = output(xtask_against(&w, &["--json", "verify", "--env", "staging"])).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no `url` for staging: verifying http://{host} (the environment's CNAME)"
        )),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["checks"][0]["target"],
        format!("http://{host}/api/v2/"),
        "{report}"
    );
    assert_eq!(report["checks"][0]["verdict"], "pass", "{report}");

    let outputs = w.dir.path().join("github_output");
    std::fs::write(&outputs, "").unwrap();
    let args = ship_args(&w, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = xtask_against(&w, &args);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &outputs)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_TOKEN");
    let (out, stderr) = output(cmd).await;
    assert!(out.status.success(), "{stderr}");
    let outputs = std::fs::read_to_string(&outputs).unwrap();
    assert!(outputs.contains(&format!("url=http://{host}")), "{outputs}");
    assert!(api.received_requests().await.unwrap().len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_with_the_event_text_and_status_1() {
    let w = World::new().await;
    w.config(&no_rollback());
    w.script_deploy(Script::new(vec![
        Step::at_ms(20).event("ERROR", "Failed to deploy application.")
    ]));
    let bundle = w.bundle.display().to_string();
    let (out, stderr) = output(xtask_against(
        &w,
        &["deploy", "--release", "v1.0.0", "--bundle", bundle.as_str()],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed: Elastic Beanstalk reported \"Failed to deploy application.\""),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: the deploy of v1.0.0 to {} failed: see the summary above",
            w.environment
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "stdout is for --json only");
}

/// The real verify stage (the environment's checks) against an HTTP server on loopback.
async fn verify_world(status: u16) -> (World, Settings, wiremock::MockServer) {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/api/v2/"))
        .respond_with(
            wiremock::ResponseTemplate::new(status)
                .set_body_json(serde_json::json!({"projects": "http://x/api/v2/projects/"})),
        )
        .mount(&server)
        .await;
    let w = World::new().await;
    let s = Settings {
        checks: format!("url = \"{}\"\n\n[[environments.staging.checks]]\nkind = \"http\"\npath = \"/api/v2/\"\ntimeout = \"1s\"\n", server.uri()),
        ..Settings::default()
    };
    (w, s, server)
}

#[tokio::test]
async fn real_verify_failure_rolls_back() {
    let (w, s, server) = verify_world(502).await;
    let req = w.request(&s);
    let checks = pipeline::verify::EnvironmentChecks {
        config: &req.config,
        environment: "staging",
    };
    let r = w.run(&req, Some(&checks)).await;
    assert!(!r.ok);
    let v = stage(&r, "verify");
    assert_eq!(v.outcome, Outcome::Failed);
    assert!(
        v.output.starts_with(&format!(
            "http {}/api/v2/ fail: HTTP 502 Bad Gateway (expected 200)",
            server.uri()
        )),
        "{}",
        v.output
    );
    assert!(v.output.contains("502"), "{}", v.output);
    assert_eq!(
        stage(&r, "rollback").outcome,
        Outcome::Done,
        "{}",
        r.table()
    );
    assert_eq!(w.deployed_labels(), vec![w.label(), "v0".to_string()]);
}

#[tokio::test]
async fn real_verify_success_completes_the_run() {
    let (w, s, _server) = verify_world(200).await;
    let req = w.request(&s);
    let checks = pipeline::verify::EnvironmentChecks {
        config: &req.config,
        environment: "staging",
    };
    let r = w.run(&req, Some(&checks)).await;
    assert!(r.ok, "{}", r.table());
    assert_eq!(stage(&r, "verify").output, "all 1 required checks passed");
}

#[tokio::test]
async fn ready_on_another_version_without_an_event_is_a_failure() {
    let w = World::new().await;
    let label = w.label();
    // EB quietly went back: Ready, the previous version, no failure event.
    w.script_deploy(Script::new(vec![Step::at_ms(60)
        .status("Ready")
        .env_version(Which::Previous)
        .health("Green", "Ok")]));
    let r = w.deploy(&no_rollback()).await;
    assert_verdict(&r, DeployVerdict::Failed);
    assert_eq!(
        deploy_message(&r),
        format!(
            "the deploy of {label} to {env} failed: the environment is Ready but runs v0; EB went back to it (see the events above or in the EB console)",
            env = w.environment
        )
    );
}

#[tokio::test]
async fn pacing_stays_under_ebs_own_throttle() {
    let w = World::new().await;
    // EB's throttle (2 calls/s, burst 15, per account and action family), compressed like the
    // pipeline's pacing (1000x).
    w.emu.throttle_like_eb(1000.0);
    w.script_deploy(Script::success(Duration::from_millis(600)));
    let r = w.deploy(&Settings::default()).await;
    assert_verdict(&r, DeployVerdict::Succeeded);
    let throttled = |calls: Vec<integration::eb_emulator::Call>| {
        calls.iter().filter(|c| c.status == 400).count()
    };
    assert_eq!(throttled(w.emu.calls()), 0, "EB throttled the pipeline");
    assert_eq!(r.eb_calls as usize, w.emu.calls().len());

    // 40 status reads at once through the paced client: none throttled. Compressed 100x only
    // (calls 20 ms apart), so that this process's own scheduling cannot bunch them.
    w.emu.throttle_like_eb(100.0);
    let burst = |eb: std::sync::Arc<pipeline::eb::Eb>| {
        let env = w.environment.clone();
        async move {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..40 {
                let (eb, env) = (eb.clone(), env.clone());
                set.spawn(async move {
                    eb.call("DescribeEnvironments", &env, |c| {
                        c.describe_environments().send()
                    })
                    .await
                });
            }
            set.join_all().await
        }
    };
    let before = w.emu.calls().len();
    let paced = Pacing::scaled(100.0);
    let results = burst(std::sync::Arc::new(pipeline::eb::Eb::new(
        w.clients.eb.clone(),
        paced,
    )))
    .await;
    assert!(results.iter().all(Result::is_ok));
    let calls = w.emu.calls().split_off(before);
    assert_eq!(calls.len(), 40, "retries were needed");
    assert_eq!(throttled(calls), 0, "the paced client was throttled");

    // Control: the same client unpaced (no budget, no retries) is throttled.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = w.emu.calls().len();
    let unpaced = Pacing {
        max_rate: f64::INFINITY,
        burst: u32::MAX,
        max_retries: 0,
        ..paced
    };
    burst(std::sync::Arc::new(pipeline::eb::Eb::new(
        w.clients.eb.clone(),
        unpaced,
    )))
    .await;
    let calls = w.emu.calls().split_off(before);
    assert!(
        throttled(calls) >= 10,
        "an unpaced client was not throttled"
    );
}

/// The deploy starts from the environment as its preflight described it a moment before:
/// one `DescribeEnvironments` before `UpdateEnvironment`, the preflight's, where a run
/// without the preflight reads it itself; and a version this run created is first looked at
/// one wait after EB answered that it is processing it, not at once.
#[tokio::test]
async fn the_deploy_reuses_what_its_preflight_read() {
    // The EB calls of one run up to its UpdateEnvironment, sorted (the preflight's and the
    // stages' go out in an order of their own), but the version's looks (as many as
    // processing takes).
    async fn before_update(skip_preflight: bool) -> Vec<String> {
        let w = World::new().await;
        w.script_deploy(Script::success(Duration::from_millis(200)));
        let mut req = w.request(&Settings::default());
        req.options.skip_preflight = skip_preflight;
        req.pacing.quick_interval = Duration::from_millis(50);
        let r = w.run(&req, None).await;
        assert_verdict(&r, DeployVerdict::Succeeded);
        let calls = w.emu.calls();
        let update = calls
            .iter()
            .position(|c| c.action == "UpdateEnvironment")
            .expect("no UpdateEnvironment");
        let calls = &calls[..update];
        let created = calls
            .iter()
            .find(|c| c.action == "CreateApplicationVersion")
            .expect("no CreateApplicationVersion")
            .at;
        let looks: Vec<_> = calls
            .iter()
            .filter(|c| c.action == "DescribeApplicationVersions")
            .collect();
        assert!(!looks.is_empty(), "the version was not looked at");
        assert!(
            looks
                .iter()
                .all(|c| c.at >= created + Duration::from_millis(45)),
            "the version was looked at right after its creation"
        );
        let mut actions: Vec<String> = calls
            .iter()
            .filter(|c| c.action != "DescribeApplicationVersions")
            .map(|c| c.action.clone())
            .collect();
        actions.sort();
        actions
    }
    let with = before_update(false).await;
    let without = before_update(true).await;
    assert_eq!(
        with,
        [
            "CreateApplicationVersion",
            "DescribeApplications",
            "DescribeConfigurationSettings",
            "DescribeEnvironments",
        ],
        "after the preflight, the deploy reads the environment again"
    );
    assert_eq!(
        without,
        [
            "CreateApplicationVersion",
            "DescribeApplications",
            "DescribeEnvironments",
        ],
        "without the preflight, the deploy reads the environment itself"
    );
}

#[tokio::test]
async fn rerun_after_an_interrupted_deploy_that_failed_deploys_again() {
    let w = World::new().await;
    let label = w.label();
    w.script_deploy(Script::failure(
        Duration::from_millis(300),
        "Failed to deploy application.",
    ));
    let req = w.request(&Settings::default());
    w.interrupt_while_waiting(&req).await;
    // The deploy fails while nobody watches; EB goes back to v0.
    tokio::time::sleep(Duration::from_millis(400)).await;
    w.emu.update_environment(&w.environment, |e| {
        e.color = "Green".into();
        e.health_status = "Ok".into();
        e.causes.clear();
    });
    let r = w.run(&req, None).await;
    assert!(r.ok, "{}", r.table());
    assert_verdict(&r, DeployVerdict::Succeeded);
    assert!(!r.deploy.as_ref().unwrap().resumed);
    assert_eq!(w.deployed_labels(), vec![label.clone(), label]);
    assert_eq!(w.emu.calls_of("CreateApplicationVersion").len(), 1);
}

#[tokio::test]
async fn losing_the_race_to_another_deploy_waits_and_tries_again() {
    let w = World::new().await;
    let label = w.label();
    w.emu.race_next_update(
        &w.environment,
        "v-other",
        Script::success(Duration::from_millis(200)),
    );
    let r = w.deploy(&Settings::default()).await;
    assert_verdict(&r, DeployVerdict::Succeeded);
    let updates = w.emu.calls_of("UpdateEnvironment");
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].status, 400, "EB refused the first update");
    assert_eq!(updates[1].status, 200);
    assert_eq!(w.deployed_labels(), vec![label]);
    // The version to roll back to is the one the other deploy left.
    assert_eq!(
        r.deploy.as_ref().unwrap().previous.as_ref().unwrap().label,
        "v-other"
    );
}

/// `deploy --env staging --release v1.0.0 --bundle <the world's bundle>` and `extra`.
fn ship_args(w: &World, extra: &[&str]) -> Vec<String> {
    let bundle = w.bundle.display().to_string();
    [
        "deploy",
        "--env",
        "staging",
        "--release",
        "v1.0.0",
        "--bundle",
        &bundle,
    ]
    .iter()
    .chain(extra)
    .map(|a| a.to_string())
    .collect()
}

/// Runs the binary with `ship_args(extra)` on `w` configured with `settings`; the output and
/// its stderr.
async fn ship(w: &World, settings: &Settings, extra: &[&str]) -> (std::process::Output, String) {
    w.config(settings);
    let args = ship_args(w, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    output(xtask_against(w, &args)).await
}

/// The summary line of `stage` in `stderr` contains every one of `texts`.
fn assert_row(stderr: &str, stage: &str, texts: &[&str]) {
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{stage} ")) && texts.iter().all(|t| l.contains(t))),
        "no {stage} line with {texts:?}:\n{stderr}"
    );
}

/// The bundles under the world's application prefix in moto's S3.
async fn uploaded(w: &World) -> Vec<String> {
    w.s3.list_objects_v2()
        .bucket(&w.bucket)
        .prefix(format!("{}/", w.application))
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .filter(|k| k.ends_with(".zip"))
        .collect()
}

/// A world whose environment lacks a property deploy.toml requires: doctor's ✗.
fn missing_property() -> Settings {
    Settings {
        checks: "required = [\"DJANGO_SECRET_KEY\", \"PREFLIGHT_MISSING_KEY\"]\n".into(),
        ..Settings::default()
    }
}

/// `deploy` runs doctor's checks before it uploads anything: a ✗ stops it with doctor's
/// list and fixes, with nothing in S3 and no application version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_refuses_to_upload_when_the_preflight_fails() {
    let w = World::new().await;
    let (out, stderr) = ship(&w, &missing_property(), &["--json"]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the account is not ready for a deploy to staging: nothing was uploaded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("✗ environment properties (2 required): missing: PREFLIGHT_MISSING_KEY"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fix: set them on the environment")
            && stderr.contains("OptionName=PREFLIGHT_MISSING_KEY,Value=..."),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    let stages = report["stages"].as_array().unwrap();
    let outcome = |name: &str| {
        stages
            .iter()
            .find(|s| s["stage"] == name)
            .map(|s| s["outcome"].as_str().unwrap().to_string())
    };
    assert_eq!(outcome("preflight").as_deref(), Some("failed"));
    for s in ["upload", "version", "deploy", "verify"] {
        assert_eq!(outcome(s).as_deref(), Some("not_run"), "{s}");
    }
    assert_eq!(report["preflight"]["environment"], "staging");
    // Nothing uploaded, no version, no deploy.
    assert!(uploaded(&w).await.is_empty());
    assert!(w.emu.version(&w.application, &w.label()).is_none());
    assert!(w.emu.write_calls().is_empty(), "{:?}", w.emu.write_calls());
}

/// `--skip-preflight` ships anyway, with a warning; the same run without the missing piece
/// passes its preflight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_preflight_ships_with_a_warning() {
    let w = World::new().await;
    let (out, stderr) = ship(&w, &missing_property(), &["--skip-preflight"]).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN")
            && stderr.contains("--skip-preflight: the account's prerequisites were not checked"),
        "{stderr}"
    );
    assert_row(&stderr, "preflight", &["skipped"]);
    assert!(!stderr.contains("PREFLIGHT_MISSING_KEY"), "{stderr}");
    assert_eq!(w.deployed_labels(), vec![w.label()]);
    assert_eq!(
        uploaded(&w).await,
        vec![format!("{}/{}.zip", w.application, w.label())]
    );
}

/// `--dry-run` shows doctor's result in the plan: each ✓ and ✗ line, and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_the_preflight() {
    let w = World::new().await;
    let (out, stderr) = ship(&w, &Settings::default(), &["--dry-run"]).await;
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("preflight (the checks of `cargo xtask doctor`):"),
        "{stderr}"
    );
    for line in [
        "✓  AWS credentials and account",
        &format!("✓  EB environment {}", w.environment),
        "✓  enhanced health",
        "every prerequisite of a deploy is in place",
    ] {
        assert!(stderr.contains(line), "{line:?} not in:\n{stderr}");
    }
    assert_row(
        &stderr,
        "preflight",
        &[" done ", "prerequisite(s) in place"],
    );

    let (out, stderr) = ship(&w, &missing_property(), &["--dry-run"]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("✗  environment properties (2 required)"),
        "{stderr}"
    );
    assert!(stderr.contains("1 to fix:"), "{stderr}");
    // The rest of the plan is shown all the same, and nothing was written.
    assert_row(&stderr, "deploy", &["planned"]);
    assert!(w.emu.write_calls().is_empty());
    assert!(uploaded(&w).await.is_empty());
}

/// The verify agent's postdeploy hook fails on an instance: a Redis check with a wrong
/// password (run for real against the test Redis that wants one) and a NATS check that
/// passes, rendered exactly as the agent prints them into that instance's `eb-hooks.log`.
/// EB reports the command failure; the deploy fails, rolls back, and names the failed check,
/// the instance and its check table; no password is printed. `logs` shows the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_postdeploy_hook_names_the_instance_check_and_rolls_back() {
    let w = World::new().await;
    let label = w.label();
    let secret = "hook-secret-5f1e2d3c9a";
    let settings = Settings {
        checks: "\n[[environments.staging.checks]]\nkind = \"redis\"\nurl_env = \"HOOK_REDIS_URL\"\nwhere = \"instance\"\ntimeout = \"2s\"\n\n[[environments.staging.checks]]\nkind = \"nats\"\nwhere = \"instance\"\ntimeout = \"2s\"\n".into(),
        verify: "5s",
        ..Settings::default()
    };
    // The check list the bundle stage would write, run as the agent runs it on the instance.
    let config = w.config(&settings);
    let list = pipeline::verify::agent::instance_checks(&config, "staging")
        .unwrap()
        .expect("the environment has instance checks");
    let wrong =
        services::env("REDIS_AUTH_URL").replacen("redis://", &format!("redis://:{secret}@"), 1);
    let props = std::collections::BTreeMap::from([
        ("HOOK_REDIS_URL".to_string(), wrong),
        ("NATS_URL".to_string(), services::env("NATS_URL")),
    ]);
    let checks = list.build(&|k| props.get(k).cloned()).unwrap();
    let report = pipeline::verify::run(&checks).await;
    assert!(!report.passed(), "{}", report.render_table());
    let printed = pipeline::verify::agent::render_output(&list.environment, &report);
    let printed: Vec<String> = printed.lines().map(str::to_string).collect();
    w.script_deploy(Script::postdeploy_hook_failure(
        Duration::from_millis(60),
        pipeline::verify::agent::HOOK_ENTRY,
        &printed,
    ));
    w.script_deploy(Script::success(Duration::from_millis(60)));
    let instance = w.emu.environment(&w.environment).instances[1].id.clone();

    let (out, stderr) = ship(&w, &settings, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "[Instance: {instance}] Command failed on instance. Return code: 1"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("check redis failed on instance {instance}: ")),
        "{stderr}"
    );
    // The instance's table: its header, both checks, the summary line (each an error line).
    let table: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("ERROR   "))
        .collect();
    assert_eq!(table.len(), 4, "{stderr}");
    assert!(table[0].starts_with("CHECK "), "{table:?}");
    assert_eq!(table[3], "verify: FAILED: redis", "{table:?}");
    let table = &table[1..];
    assert!(
        table[0].starts_with("redis ") && table[0].contains(" fail "),
        "{table:?}"
    );
    assert!(
        table[1].starts_with("nats ") && table[1].contains(" pass "),
        "{table:?}"
    );
    assert!(!stderr.contains(secret), "the password leaked:\n{stderr}");
    assert!(stderr.contains("redis://:***@"), "{stderr}");
    // Rolled back as for any failed deploy.
    assert_row(&stderr, "rollback", &["rolled back to v0"]);
    assert_eq!(w.deployed_labels(), vec![label, "v0".to_string()]);
    assert_eq!(
        w.emu.environment(&w.environment).version.as_deref(),
        Some("v0")
    );

    // `logs` shows the hook's log of that instance, masked too.
    let (logs, stderr) = output(w.xtask(&["logs", "--env", "staging"])).await;
    let all = format!("{}{stderr}", String::from_utf8_lossy(&logs.stdout));
    assert!(logs.status.success(), "{all}");
    assert!(
        all.contains(&format!("{instance} /var/log/eb-hooks.log")),
        "{all}"
    );
    assert!(all.contains("verify: FAILED: redis"), "{all}");
    assert!(!all.contains(secret), "the password leaked:\n{all}");
}
