//! The EB emulator against clients nobody here wrote: botocore validates every answer of
//! every emulated action against its own EB service model, and the official EB CLI
//! (`awsebcli`, its own venv from tests/services/up.d/50-ebcli.sh) runs `eb status`,
//! `eb events`, `eb health`, `eb deploy --version` and `eb deploy` of a new bundle (S3 in moto).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use integration::eb_emulator::{EbEmulator, Script, ACTIONS};
use integration::{aws, services};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

async fn emulator() -> (EbEmulator, aws_sdk_s3::Client, String) {
    let s3 = aws::s3(&services::env("MOTO_ENDPOINT"));
    let bucket = services::unique("conformance");
    aws::create_bucket(&s3, &bucket).await;
    let emu = EbEmulator::start(s3.clone(), &bucket).await;
    (emu, s3, bucket)
}

fn call(action: &str, params: Value, botocore: Value) -> Value {
    json!({"action": action, "params": params, "botocore": botocore})
}

#[tokio::test]
async fn botocore_validates_every_emulated_action() {
    let (emu, s3, bucket) = emulator().await;
    emu.add_environment("antenna", "env-1", Some("v0"), 2);
    emu.add_environment("antenna", "env-2", Some("v0"), 1);
    for label in ["v0", "v1", "del-1", "del-2"] {
        emu.add_version(
            "antenna",
            label,
            &bucket,
            &format!("antenna/{label}.zip"),
            "PROCESSED",
        );
    }
    s3.put_object()
        .bucket(&bucket)
        .key("antenna/new.zip")
        .body(b"not a zip".to_vec().into())
        .send()
        .await
        .unwrap();
    emu.script_next_deploy("env-1", Script::success(Duration::from_millis(50)));
    emu.script_next_deploy("env-2", Script::success(Duration::from_millis(50)));
    let src = |label: &str| json!({"SourceBundle.S3Bucket": bucket, "SourceBundle.S3Key": format!("antenna/{label}.zip")});
    let with = |v: Value, extra: Value| {
        let mut v = v;
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let calls = vec![
        call("CreateStorageLocation", json!({}), json!({})),
        call(
            "CreateApplication",
            json!({"ApplicationName": "other", "Description": "d"}),
            json!({"ApplicationName": "other-2"}),
        ),
        call("DescribeApplications", json!({}), json!({})),
        call(
            "CreateApplicationVersion",
            with(
                json!({"ApplicationName": "antenna", "VersionLabel": "v2", "Process": "true"}),
                src("new"),
            ),
            json!({"ApplicationName": "antenna", "VersionLabel": "v3", "SourceBundle": {"S3Bucket": bucket, "S3Key": "antenna/new.zip"}}),
        ),
        call(
            "DescribeApplicationVersions",
            json!({"ApplicationName": "antenna"}),
            json!({"ApplicationName": "antenna", "MaxRecords": 2}),
        ),
        call(
            "DeleteApplicationVersion",
            json!({"ApplicationName": "antenna", "VersionLabel": "del-1"}),
            json!({"ApplicationName": "antenna", "VersionLabel": "del-2"}),
        ),
        call(
            "DescribeEnvironments",
            json!({"ApplicationName": "antenna"}),
            json!({"EnvironmentNames": ["env-1"]}),
        ),
        call(
            "DescribeConfigurationSettings",
            json!({"ApplicationName": "antenna", "EnvironmentName": "env-1"}),
            json!({"ApplicationName": "antenna", "EnvironmentName": "env-1"}),
        ),
        call(
            "UpdateEnvironment",
            json!({"EnvironmentName": "env-1", "VersionLabel": "v1"}),
            json!({"EnvironmentName": "env-2", "VersionLabel": "v1"}),
        ),
        call(
            "DescribeEvents",
            json!({"EnvironmentName": "env-1", "MaxRecords": "1"}),
            json!({"EnvironmentName": "env-1"}),
        ),
        call(
            "DescribeEnvironmentHealth",
            json!({"EnvironmentName": "env-1", "AttributeNames.member.1": "All"}),
            json!({"EnvironmentName": "env-1", "AttributeNames": ["All"]}),
        ),
        call(
            "DescribeEnvironmentResources",
            json!({"EnvironmentName": "env-1"}),
            json!({"EnvironmentName": "env-2"}),
        ),
        call(
            "DescribeInstancesHealth",
            json!({"EnvironmentName": "env-1", "AttributeNames.member.1": "All"}),
            json!({"EnvironmentName": "env-1", "AttributeNames": ["All"]}),
        ),
        call(
            "DescribePlatformVersion",
            json!({"PlatformArn": "arn:aws:elasticbeanstalk:us-west-2::platform/ECS running on 64bit Amazon Linux 2/3.6.0"}),
            json!({"PlatformArn": "arn:aws:elasticbeanstalk:us-west-2::platform/ECS running on 64bit Amazon Linux 2/3.6.0"}),
        ),
        call(
            "ListPlatformBranches",
            json!({"Filters.member.1.Attribute": "LifecycleState", "Filters.member.1.Operator": "!=", "Filters.member.1.Values.member.1": "Retired"}),
            json!({}),
        ),
        call(
            "RequestEnvironmentInfo",
            json!({"EnvironmentName": "env-1", "InfoType": "tail"}),
            json!({"EnvironmentName": "env-1", "InfoType": "tail"}),
        ),
        call(
            "RetrieveEnvironmentInfo",
            json!({"EnvironmentName": "env-1", "InfoType": "tail"}),
            json!({"EnvironmentName": "env-1", "InfoType": "tail"}),
        ),
        call(
            "UpdateApplicationResourceLifecycle",
            json!({"ApplicationName": "antenna", "ResourceLifecycleConfig.ServiceRole": "arn:aws:iam::123456789012:role/eb", "ResourceLifecycleConfig.VersionLifecycleConfig.MaxCountRule.Enabled": "true", "ResourceLifecycleConfig.VersionLifecycleConfig.MaxCountRule.MaxCount": "200"}),
            json!({"ApplicationName": "antenna", "ResourceLifecycleConfig": {"ServiceRole": "arn:aws:iam::123456789012:role/eb", "VersionLifecycleConfig": {"MaxCountRule": {"Enabled": true, "MaxCount": 200}}}}),
        ),
    ];
    let python = format!("{}/bin/python", services::env("TEST_VENV"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/botocore_check.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&emu.endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let input = serde_json::to_vec(&calls).unwrap();
    child.stdin.take().unwrap().write_all(&input).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["problems"], json!([]), "{report:#}");
    // Every action the emulator's dispatcher answers was checked, and nothing else.
    let checked: BTreeSet<&str> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let emulated: BTreeSet<&str> = ACTIONS.iter().copied().collect();
    assert_eq!(checked, emulated);
    assert_eq!(calls.len(), emulated.len());
    // Each allowance for a known mistake of the model was needed by an answer (the checker
    // reports a stale one as a problem, above).
    assert_eq!(
        report["allowances"],
        json!([
            "enum ApplicationVersionStatus",
            "member ConfigurationSettingsDescription/Tier",
            "path DescribeEnvironmentHealth/Status"
        ])
    );
    assert!(out.status.success());
}

/// Runs the EB CLI in `dir` against the emulator; its output, or a panic with it.
async fn eb(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(services::env("EB_CLI"))
        .args(args)
        .args(["--endpoint-url", endpoint])
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-west-2")
        .env("AWS_ENDPOINT_URL_S3", services::env("MOTO_ENDPOINT"))
        .env("HOME", dir)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("cannot run the EB CLI");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "eb {args:?} failed:\n{text}");
    assert!(!text.contains("ERROR"), "eb {args:?}:\n{text}");
    text
}

#[tokio::test]
async fn the_official_eb_cli_works_against_the_emulator() {
    let (emu, s3, bucket) = emulator().await;
    emu.add_environment("antenna", "antenna-staging", Some("v0"), 2);
    emu.add_version("antenna", "v0", &bucket, "antenna/v0.zip", "PROCESSED");
    emu.add_version("antenna", "v1", &bucket, "antenna/v1.zip", "PROCESSED");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".elasticbeanstalk")).unwrap();
    std::fs::write(
        dir.path().join(".elasticbeanstalk/config.yml"),
        "branch-defaults:\n  default:\n    environment: antenna-staging\nglobal:\n  application_name: antenna\n  default_region: us-west-2\n  workspace_type: Application\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Dockerrun.aws.json"),
        integration::deploy_world::GOOD_DOCKERRUN,
    )
    .unwrap();
    let d = dir.path();
    let e = emu.endpoint.clone();

    let status = eb(d, &e, &["status"]).await;
    assert!(status.contains("Deployed Version: v0"), "{status}");
    assert!(
        status.contains("Status: Ready") && status.contains("Health: Green"),
        "{status}"
    );

    emu.script_next_deploy("antenna-staging", Script::success(Duration::from_secs(2)));
    let deployed = eb(d, &e, &["deploy", "--version", "v1", "--timeout", "2"]).await;
    assert!(
        deployed.contains("Environment update completed successfully."),
        "{deployed}"
    );
    assert_eq!(
        emu.environment("antenna-staging").version.as_deref(),
        Some("v1")
    );

    let events = eb(d, &e, &["events"]).await;
    assert!(
        events.contains("Environment update is starting."),
        "{events}"
    );

    let health = eb(d, &e, &["health"]).await;
    assert!(
        health.contains("antenna-staging") && health.contains("Ok"),
        "{health}"
    );

    // A new bundle: zipped, uploaded to the storage location in moto, processed, deployed.
    emu.script_next_deploy("antenna-staging", Script::success(Duration::from_secs(2)));
    let fresh = eb(d, &e, &["deploy", "--timeout", "2"]).await;
    assert!(
        fresh.contains("Environment update completed successfully."),
        "{fresh}"
    );
    let created = emu.calls_of("CreateApplicationVersion");
    assert_eq!(created.len(), 1);
    let key = created[0].param("SourceBundle.S3Key").unwrap().to_string();
    assert_eq!(
        created[0].param("SourceBundle.S3Bucket"),
        Some(bucket.as_str())
    );
    let label = created[0].param("VersionLabel").unwrap().to_string();
    assert_eq!(
        emu.environment("antenna-staging").version.as_deref(),
        Some(label.as_str())
    );
    // The bundle is really in S3.
    s3.head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
}
