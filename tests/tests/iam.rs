//! The deploy role's policy, enforced: the whole AWS deploy and the commands around it
//! (`doctor`, `secrets`, `env`, `status`, `history`, `logs`, `rollback`, `cleanup`) run through
//! the binary under credentials that carry only the policy `iam-policy` prints, against a
//! moto_server that enforces IAM (S3, ECR, STS, Secrets Manager, SSM) and the EB emulator
//! evaluating the same document for the EB actions and for what `UpdateEnvironment` does with
//! the caller's permissions. Taking any one statement out makes some command fail with an
//! access denial, so no unneeded statement hides. The preview role's read-only policy runs
//! `status`, `history` and `logs`.
//!
//! Enforcement in moto is server-wide: the tests of this file take one lock and switch it on
//! only once their user and resources exist.

use integration::eb_emulator::Script;
use integration::iam_world::{
    denial_in, moto, moto_auth, xtask_admin, World, ACCOUNT, EB_BUCKET, SERIAL,
};
use integration::output_text as text;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_deploy_runs_under_the_generated_policy() {
    let _serial = SERIAL.lock().await;
    let w = World::new().await;

    // Enforcement is real: moto refuses credentials it does not know.
    let stranger = integration::aws::s3(&moto());
    let refused = stranger.list_buckets().send().await;
    assert!(refused.is_err(), "moto enforces IAM");

    // secrets put, env diff, build, push (creating the repository), render, bundle, upload,
    // version, deploy, verify, env apply, doctor, env pull, status, history, logs; `rollback`
    // finds no version that ran healthy before r1 in this run: refused, but not by IAM.
    let steps = w.tour("r1", 30).await;
    let commands: Vec<&str> = steps.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        commands,
        [
            "secrets put",
            "env diff",
            "push",
            "deploy",
            "env apply",
            "doctor",
            "env pull",
            "status",
            "history",
            "logs",
            "cleanup",
            "rollback"
        ],
        "{}",
        text(&steps.last().unwrap().1.out)
    );
    let (last, rollback) = steps.last().unwrap();
    for (command, step) in &steps[..steps.len() - 1] {
        assert!(step.ok(), "{command}: {}", text(&step.out));
    }
    assert_eq!(last, "rollback");
    assert!(rollback.denial.is_none(), "{}", text(&rollback.out));
    let r1 = w.emu.environment(&w.eb_environment).version.unwrap();
    assert!(r1.starts_with("r1-"), "{r1}");

    // doctor: what the policy's reads verified, and which permissions only a write would.
    let doctor = &steps[5].1;
    let report: Value = serde_json::from_slice(&doctor.out.stdout).unwrap();
    let verified: Vec<&str> = report["permissions"]["verified"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for v in [
        "ecr:DescribeRepositories",
        "s3:GetObject",
        "elasticbeanstalk:DescribeApplications",
        "elasticbeanstalk:DescribeEnvironments",
        "elasticbeanstalk:DescribeConfigurationSettings",
    ] {
        assert!(verified.contains(&v), "{v} not in {verified:?}");
    }
    let unverified = report["permissions"]["unverified"].to_string();
    for u in [
        "UpdateEnvironment: elasticbeanstalk:UpdateEnvironment",
        "EnvironmentStack: cloudformation:UpdateStack",
        "EnvironmentSecretsWrite: secretsmanager:CreateSecret",
    ] {
        assert!(unverified.contains(u), "{u} not in {unverified}");
    }
    let doctor_text = text(&doctor.out);
    assert!(doctor_text.contains("not verified ("), "{doctor_text}");

    // env apply set the declaration; the secret is referenced by its ARN, never by its value.
    let pulled = String::from_utf8_lossy(&steps[6].1.out.stdout).to_string();
    assert!(pulled.contains("USE_DOCKER"), "{pulled}");
    assert!(pulled.contains("DJANGO_SECRET_KEY"), "{pulled}");

    // A deploy that fails is rolled back, under the same policy.
    w.emu.script_next_deploy(
        &w.eb_environment,
        Script::failure(
            std::time::Duration::from_millis(80),
            "Instance deployment failed. For details, see 'eb-engine.log'.",
        ),
    );
    let outs = w.ship("r2", 31).await;
    let (command, out) = outs.last().unwrap();
    assert_eq!(command, "deploy");
    assert!(!out.status.success());
    let t = text(out);
    assert!(t.contains("Instance deployment failed"), "{t}");
    assert!(
        denial_in(out).is_none(),
        "the rollback needs nothing more: {t}"
    );
    assert_eq!(
        w.emu.environment(&w.eb_environment).version,
        Some(r1.clone()),
        "rolled back: {t}"
    );

    // `rollback` of a good deploy, then `cleanup` deletes r2, which nothing runs or returns to.
    for (command, out) in w.ship("r3", 32).await {
        assert!(out.status.success(), "{command}: {}", text(&out));
    }
    let out = w.run(&["rollback", "--env", "staging"]).await;
    assert!(out.status.success(), "rollback: {}", text(&out));
    assert_eq!(
        w.emu.environment(&w.eb_environment).version,
        Some(r1),
        "{}",
        text(&out)
    );
    let out = w.run(&["cleanup", "--keep", "1", "--yes"]).await;
    assert!(out.status.success(), "cleanup: {}", text(&out));
    let deleted: Vec<String> = w
        .emu
        .calls_of("DeleteApplicationVersion")
        .into_iter()
        .filter(|c| c.status == 200)
        .filter_map(|c| c.params.get("VersionLabel").cloned())
        .collect();
    assert!(
        deleted.len() == 1 && deleted[0].starts_with("r2-"),
        "{deleted:?}: {}",
        text(&out)
    );
    let denied: Vec<_> = w
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.status == 403)
        .map(|c| c.action)
        .collect();
    assert!(denied.is_empty(), "no EB call was refused: {denied:?}");

    // The preview role reads what status, history and logs show, and nothing more.
    let out = xtask_admin(w.dir.path())
        .args([
            "iam-policy",
            "--env",
            "staging",
            "--preview",
            "--offline",
            "--account",
            ACCOUNT,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).unwrap();
    let previewer = w.add_user("previewer", &preview).await;
    for args in [
        vec!["status", "--env", "staging"],
        vec!["history", "--env", "staging"],
        vec!["logs", "--env", "staging", "--timeout", "20s"],
    ] {
        let out = w.run_as(&previewer, &args).await;
        assert!(
            out.status.success() && denial_in(&out).is_none(),
            "{args:?} as the preview role: {}",
            text(&out)
        );
    }
    let out = w
        .run_as(
            &previewer,
            &["deploy", "--env", "staging", "--release", "r3"],
        )
        .await;
    assert!(!out.status.success());
    assert!(denial_in(&out).is_some(), "{}", text(&out));

    // The staging role cannot touch production.
    let out = w
        .run(&["deploy", "--env", "production", "--release", "r3"])
        .await;
    assert!(!out.status.success());
    let line = denial_in(&out).unwrap_or_else(|| text(&out));
    assert!(
        line.contains("not authorized to perform: elasticbeanstalk:")
            && line.contains("environment/antenna/antenna-production"),
        "{line}"
    );
    assert_eq!(
        w.emu.environment("antenna-production").version.as_deref(),
        Some("v0")
    );
    // Nor production's deploy journal in the shared bucket (its own, it may write).
    let as_deployer = w.deployer.s3();
    let put = |key: String| {
        as_deployer
            .put_object()
            .bucket(EB_BUCKET)
            .key(key)
            .body(b"[]".to_vec().into())
            .send()
    };
    let refused = put("antenna/deploys/antenna-production.json".into()).await;
    assert!(
        format!("{:?}", refused.unwrap_err()).contains("AccessDenied"),
        "the staging role wrote production's journal"
    );
    let own = put(format!("antenna/deploys/{}.json", w.eb_environment)).await;
    assert!(own.is_ok(), "its own journal: {own:?}");
    moto_auth(false).await;
}

/// Each statement is needed: without it, some command of the tour is refused. Prints, for
/// each statement, the command refused and the denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_needed_by_some_command() {
    let _serial = SERIAL.lock().await;
    let w = World::new().await;
    let statements = w.policy["Statement"].as_array().unwrap().clone();
    let mut table = Vec::new();
    // IAM_STATEMENTS=EcrLogin,EcrRead runs only those (while working on one).
    let only = std::env::var("IAM_STATEMENTS").unwrap_or_default();
    for (i, removed) in statements.iter().enumerate() {
        let sid = removed["Sid"].as_str().unwrap().to_string();
        if !only.is_empty() && !only.split(',').any(|o| o == sid) {
            continue;
        }
        let mut policy = w.policy.clone();
        policy["Statement"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["Sid"] != removed["Sid"]);
        w.drop_repository().await;
        w.set_policy(&policy).await;
        let release = format!("s{i}");
        let steps = w.tour(&release, 40 + i as u32).await;
        let (command, step) = steps.last().unwrap();
        eprintln!(
            "without {sid:<26} {command:<12} {}",
            step.denial.as_deref().unwrap_or("(nothing refused)")
        );
        if step.denial.is_none() {
            eprintln!("{}", text(&step.out));
        }
        table.push((sid, step.denial.clone()));
    }
    let hiding: Vec<&str> = table
        .iter()
        .filter(|(_, denial)| denial.is_none())
        .map(|(sid, _)| sid.as_str())
        .collect();
    assert!(
        hiding.is_empty(),
        "statements no command needs (or whose absence fails without a denial): {hiding:?}"
    );
    moto_auth(false).await;
}
