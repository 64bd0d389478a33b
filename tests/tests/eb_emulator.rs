//! The EB emulator answers the real `aws-sdk-elasticbeanstalk` client as EB does.

use std::io::Write;
use std::time::Duration;

use aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata;
use aws_sdk_elasticbeanstalk::types::S3Location;
use integration::eb_emulator::{EbEmulator, Fault, Script};
use integration::{aws, services};

fn eb(emu: &EbEmulator) -> aws_sdk_elasticbeanstalk::Client {
    let conf = aws_sdk_elasticbeanstalk::config::Builder::from(&aws::sdk_config(&emu.endpoint))
        .retry_config(aws_sdk_elasticbeanstalk::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_elasticbeanstalk::Client::from_conf(conf)
}

fn zip_with(dockerrun: &str) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    z.start_file(
        "Dockerrun.aws.json",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    z.write_all(dockerrun.as_bytes()).unwrap();
    z.finish().unwrap();
    buf.into_inner()
}

async fn setup() -> (EbEmulator, aws_sdk_s3::Client, String) {
    let s3 = aws::s3(&services::env("MOTO_ENDPOINT"));
    let bucket = services::unique("emu");
    aws::create_bucket(&s3, &bucket).await;
    (EbEmulator::start(s3.clone(), &bucket).await, s3, bucket)
}

#[tokio::test]
async fn describes_environments_and_rejects_updates_unless_ready() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-a", Some("v0"), 2);
    emu.add_version("app", "v0", "b", "k", "PROCESSED");
    emu.add_version("app", "v1", "b", "k1", "PROCESSED");
    let eb = eb(&emu);
    let out = eb
        .describe_environments()
        .environment_names("env-a")
        .send()
        .await
        .unwrap();
    let env = &out.environments()[0];
    assert_eq!(env.status().unwrap().as_str(), "Ready");
    assert_eq!(env.version_label(), Some("v0"));
    assert_eq!(env.health().unwrap().as_str(), "Green");

    emu.script_next_deploy("env-a", Script::success(Duration::from_millis(300)));
    let up = eb
        .update_environment()
        .environment_name("env-a")
        .version_label("v1")
        .send()
        .await
        .unwrap();
    assert_eq!(up.status().unwrap().as_str(), "Updating");
    let err = eb
        .update_environment()
        .environment_name("env-a")
        .version_label("v1")
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    assert_eq!(
        err.message(),
        Some("Environment named env-a is in an invalid state for this operation. Must be Ready.")
    );
    let calls = emu.calls_of("UpdateEnvironment");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].param("VersionLabel"), Some("v1"));

    let events = eb
        .describe_events()
        .environment_name("env-a")
        .send()
        .await
        .unwrap();
    let first = events.events().last().unwrap();
    assert_eq!(first.message(), Some("Environment update is starting."));
    let rid = first.request_id().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(350)).await;
    let events = eb
        .describe_events()
        .environment_name("env-a")
        .request_id(&rid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        events.events()[0].message(),
        Some("Environment update completed successfully.")
    );
    let h = eb
        .describe_instances_health()
        .environment_name("env-a")
        .send()
        .await
        .unwrap();
    assert!(h
        .instance_health_list()
        .iter()
        .all(|i| i.deployment().unwrap().version_label() == Some("v1")));
}

#[tokio::test]
async fn throttling_and_server_errors_use_eb_error_xml() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-t", Some("v0"), 1);
    emu.inject(Some("DescribeEnvironments"), Fault::Throttle, 1);
    emu.inject(None, Fault::ServerError(503), 1);
    let eb = eb(&emu);
    let err = eb
        .describe_environments()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    let err = eb.describe_environments().send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 503);
    assert!(eb.describe_environments().send().await.is_ok());
}

#[tokio::test]
async fn processing_checks_the_bundle_from_s3() {
    let (emu, s3, bucket) = setup().await;
    let good = zip_with(
        r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "web", "image": "x", "memory": 256}]}"#,
    );
    let bad = zip_with(r#"{"AWSEBDockerrunVersion": "1", "containerDefinitions": []}"#);
    for (key, body) in [("app/good.zip", good), ("app/bad.zip", bad)] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    let eb = eb(&emu);
    for label in ["good", "bad"] {
        let out = eb
            .create_application_version()
            .application_name("app")
            .version_label(label)
            .process(true)
            .source_bundle(
                S3Location::builder()
                    .s3_bucket(&bucket)
                    .s3_key(format!("app/{label}.zip"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.application_version()
                .unwrap()
                .status()
                .unwrap()
                .as_str(),
            "PROCESSING"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = eb
        .describe_application_versions()
        .application_name("app")
        .send()
        .await
        .unwrap();
    let status = |l: &str| {
        out.application_versions()
            .iter()
            .find(|v| v.version_label() == Some(l))
            .unwrap()
            .status()
            .unwrap()
            .as_str()
            .to_string()
    };
    assert_eq!(status("good"), "PROCESSED");
    assert_eq!(status("bad"), "FAILED");
    let ev = eb
        .describe_events()
        .application_name("app")
        .version_label("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(
        ev.events()[0].message(),
        Some("Failed to process application version bad: ECS Application sourcebundle validation error: AWSEBDockerrunVersion must be 2 for a multi-container Docker environment.")
    );
    let dup = eb
        .create_application_version()
        .application_name("app")
        .version_label("good")
        .source_bundle(
            S3Location::builder()
                .s3_bucket(&bucket)
                .s3_key("app/good.zip")
                .build(),
        )
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        dup.message(),
        Some("Application Version good already exists.")
    );
}

#[tokio::test]
async fn rate_limit_throttles_describe_calls_like_eb() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-r", Some("v0"), 1);
    emu.set_rate_limit(5.0, 2);
    let eb = eb(&emu);
    assert!(eb.describe_environments().send().await.is_ok());
    assert!(eb.describe_events().send().await.is_ok());
    let err = eb
        .describe_environments()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    // Other actions are not limited; after 250 ms one token is back.
    assert!(eb
        .describe_environment_health()
        .environment_name("env-r")
        .send()
        .await
        .is_ok());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(eb.describe_environments().send().await.is_ok());
}

fn option_values(
    set: &aws_sdk_elasticbeanstalk::types::ConfigurationSettingsDescription,
    namespace: &str,
) -> Vec<(String, Option<String>)> {
    set.option_settings()
        .iter()
        .filter(|o| o.namespace() == Some(namespace))
        .map(|o| {
            (
                o.option_name().unwrap().to_string(),
                o.value().map(str::to_string),
            )
        })
        .collect()
}

fn option(
    ns: &str,
    name: &str,
    value: &str,
) -> aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting {
    aws_sdk_elasticbeanstalk::types::ConfigurationOptionSetting::builder()
        .namespace(ns)
        .option_name(name)
        .value(value)
        .build()
}

async fn configuration(
    eb: &aws_sdk_elasticbeanstalk::Client,
    env: &str,
) -> (
    aws_sdk_elasticbeanstalk::operation::describe_configuration_settings::DescribeConfigurationSettingsOutput,
    Vec<String>,
){
    let out = eb
        .describe_configuration_settings()
        .application_name("app")
        .environment_name(env)
        .send()
        .await
        .unwrap();
    let statuses = out
        .configuration_settings()
        .iter()
        .map(|s| s.deployment_status().unwrap().as_str().to_string())
        .collect();
    (out, statuses)
}

#[tokio::test]
async fn option_settings_are_described_drafted_and_deployed() {
    use integration::eb_emulator::{ENVIRONMENT, ENVIRONMENT_SECRETS};
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-o", Some("v0"), 1);
    emu.add_version("app", "v0", "b", "k", "PROCESSED");
    emu.add_version("app", "v1", "b", "k1", "PROCESSED");
    emu.set_environment_property("env-o", "OLD", "1");
    let eb = eb(&emu);

    let (out, _) = configuration(&eb, "env-o").await;
    let sets = out.configuration_settings();
    assert_eq!(sets.len(), 1);
    let deployed = &sets[0];
    assert_eq!(deployed.deployment_status().unwrap().as_str(), "deployed");
    assert_eq!(deployed.environment_name(), Some("env-o"));
    assert_eq!(deployed.application_name(), Some("app"));
    assert!(deployed
        .platform_arn()
        .unwrap()
        .contains("ECS running on 64bit Amazon Linux 2"));
    assert_eq!(
        option_values(deployed, ENVIRONMENT),
        vec![("OLD".to_string(), Some("1".to_string()))]
    );
    // EB mirrors environment properties into a CloudFormation parameter, and lists some
    // options without a value.
    assert_eq!(
        option_values(deployed, "aws:cloudformation:template:parameter")
            .into_iter()
            .find(|(n, _)| n == "EnvironmentVariables"),
        Some((
            "EnvironmentVariables".to_string(),
            Some("OLD=1".to_string())
        ))
    );
    assert!(
        option_values(deployed, "aws:autoscaling:launchconfiguration")
            .contains(&("EC2KeyName".to_string(), None))
    );

    // A configuration-only update: pending draft next to the deployed set, then deployed.
    emu.script_next_deploy(
        "env-o",
        integration::eb_emulator::Script::new(vec![integration::eb_emulator::Step::at_ms(200)
            .event(
                "INFO",
                "Successfully deployed new configuration to environment.",
            )
            .event("INFO", "Environment update completed successfully.")
            .status("Ready")]),
    );
    let secret = "arn:aws:secretsmanager:us-west-2:123456789012:secret:db-AbCdEf";
    eb.update_environment()
        .environment_name("env-o")
        .option_settings(option(ENVIRONMENT, "NEW", "2"))
        .option_settings(option(ENVIRONMENT_SECRETS, "DATABASE_URL", secret))
        .options_to_remove(
            aws_sdk_elasticbeanstalk::types::OptionSpecification::builder()
                .namespace(ENVIRONMENT)
                .option_name("OLD")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(emu.environment("env-o").version.as_deref(), Some("v0"));
    let (out, statuses) = configuration(&eb, "env-o").await;
    assert_eq!(statuses, ["deployed", "pending"]);
    assert_eq!(
        option_values(&out.configuration_settings()[1], ENVIRONMENT),
        vec![("NEW".to_string(), Some("2".to_string()))]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (out, _) = configuration(&eb, "env-o").await;
    assert_eq!(out.configuration_settings().len(), 1);
    assert_eq!(
        option_values(&out.configuration_settings()[0], ENVIRONMENT_SECRETS),
        vec![("DATABASE_URL".to_string(), Some(secret.to_string()))]
    );
    assert_eq!(
        emu.options("env-o", ENVIRONMENT)
            .into_iter()
            .collect::<Vec<_>>(),
        vec![("NEW".to_string(), "2".to_string())]
    );

    // Options and a new version in one call: both apply.
    eb.update_environment()
        .environment_name("env-o")
        .version_label("v1")
        .option_settings(option(ENVIRONMENT, "NEW", "3"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(emu.environment("env-o").version.as_deref(), Some("v1"));
    assert_eq!(emu.options("env-o", ENVIRONMENT)["NEW"], "3");

    // A failed update leaves the deployed set and describes the draft as failed.
    emu.script_next_deploy(
        "env-o",
        Script::failure(
            Duration::from_millis(50),
            "Instance deployment failed. For details, see 'eb-engine.log'.",
        ),
    );
    eb.update_environment()
        .environment_name("env-o")
        .option_settings(option(ENVIRONMENT, "NEW", "4"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, statuses) = configuration(&eb, "env-o").await;
    assert_eq!(statuses, ["deployed", "failed"]);
    assert_eq!(emu.options("env-o", ENVIRONMENT)["NEW"], "3");
}

#[tokio::test]
async fn unknown_namespaces_and_options_get_eb_validation_errors() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-v", Some("v0"), 1);
    let eb = eb(&emu);
    for (ns, name) in [
        ("aws:elasticbeanstalk:application:environmen", "FOO"),
        ("aws:autoscaling:trigger", " LowerThreshold"),
    ] {
        let err = eb
            .update_environment()
            .environment_name("env-v")
            .option_settings(option(ns, name, "1"))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(err.code(), Some("ConfigurationValidationException"));
        assert_eq!(
            err.message().unwrap(),
            format!("Configuration validation exception: Invalid option specification (Namespace: '{ns}', OptionName: '{name}'): Unknown configuration setting.")
        );
    }
    // Nothing started.
    assert_eq!(emu.environment("env-v").status, "Ready");
    let err = eb
        .describe_configuration_settings()
        .application_name("app")
        .environment_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some("No Environment found for EnvironmentName = 'nope'.")
    );
}
