//! The EB emulator answers the real `aws-sdk-elasticbeanstalk` client as EB does.

use std::io::Write;
use std::time::Duration;

use aws_sdk_elasticbeanstalk::error::ProvideErrorMetadata;
use aws_sdk_elasticbeanstalk::operation::update_environment::builders::UpdateEnvironmentFluentBuilder;
use aws_sdk_elasticbeanstalk::operation::update_environment::{
    UpdateEnvironmentError, UpdateEnvironmentOutput,
};
use aws_sdk_elasticbeanstalk::types::{
    Deployment, EnvironmentHealthAttribute, EventDescription, InstancesHealthAttribute, S3Location,
};
use aws_sdk_elasticbeanstalk::Client;
use integration::eb_emulator::{EbEmulator, Fault, Script, Step, ACTIONS};
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

/// The service error (EB's `<Error>` XML, as the SDK reads it) a call's builder ends with.
macro_rules! refused {
    ($call:expr) => {
        $call.send().await.unwrap_err().into_service_error()
    };
}

/// Uploads `body` to `bucket` under `key`, as the deploy uploads a bundle.
async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

/// Where a version's source bundle lies in S3.
fn bundle(bucket: &str, key: &str) -> S3Location {
    S3Location::builder().s3_bucket(bucket).s3_key(key).build()
}

/// UpdateEnvironment of `env` to `version`, which the emulator accepts.
async fn deploy(eb: &Client, env: &str, version: &str) -> UpdateEnvironmentOutput {
    update(eb, env, version).send().await.unwrap()
}

/// UpdateEnvironment of `env` to `version`, which the emulator refuses.
async fn update_refused(eb: &Client, env: &str, version: &str) -> UpdateEnvironmentError {
    refused!(update(eb, env, version))
}

fn update(eb: &Client, env: &str, version: &str) -> UpdateEnvironmentFluentBuilder {
    eb.update_environment()
        .environment_name(env)
        .version_label(version)
}

/// Every event of `env`, newest first.
async fn events(eb: &Client, env: &str) -> Vec<EventDescription> {
    let out = eb
        .describe_events()
        .environment_name(env)
        .send()
        .await
        .unwrap();
    out.events().to_vec()
}

/// The deployment each instance of `env` reports (asked for with the `Deployment` attribute).
async fn deployments(eb: &Client, env: &str) -> Vec<Deployment> {
    let out = eb
        .describe_instances_health()
        .environment_name(env)
        .attribute_names(InstancesHealthAttribute::Deployment)
        .send()
        .await
        .unwrap();
    out.instance_health_list()
        .iter()
        .map(|i| i.deployment().unwrap().clone())
        .collect()
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
    let up = deploy(&eb, "env-a", "v1").await;
    assert_eq!(up.status().unwrap().as_str(), "Updating");
    let err = update_refused(&eb, "env-a", "v1").await;
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    assert_eq!(
        err.message(),
        Some("Environment named env-a is in an invalid state for this operation. Must be Ready.")
    );
    let calls = emu.calls_of("UpdateEnvironment");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].param("VersionLabel"), Some("v1"));

    let events = events(&eb, "env-a").await;
    let first = events.last().unwrap();
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
    assert!(deployments(&eb, "env-a")
        .await
        .iter()
        .all(|d| d.version_label() == Some("v1")));
}

#[tokio::test]
async fn throttling_and_server_errors_use_eb_error_xml() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-t", Some("v0"), 1);
    emu.inject(Some("DescribeEnvironments"), Fault::Throttle, 1);
    emu.inject(None, Fault::ServerError(503), 1);
    let eb = eb(&emu);
    let err = refused!(eb.describe_environments());
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
    emu.add_application("app");
    for (key, body) in [("app/good.zip", good), ("app/bad.zip", bad)] {
        put(&s3, &bucket, key, body).await;
    }
    let eb = eb(&emu);
    for label in ["good", "bad"] {
        let out = eb
            .create_application_version()
            .application_name("app")
            .version_label(label)
            .process(true)
            .source_bundle(bundle(&bucket, &format!("app/{label}.zip")))
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
    let dup = refused!(eb
        .create_application_version()
        .application_name("app")
        .version_label("good")
        .source_bundle(bundle(&bucket, "app/good.zip")));
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
    let err = refused!(eb.describe_environments());
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
        let err = refused!(eb
            .update_environment()
            .environment_name("env-v")
            .option_settings(option(ns, name, "1")));
        assert_eq!(err.code(), Some("ConfigurationValidationException"));
        assert_eq!(
            err.message().unwrap(),
            format!("Configuration validation exception: Invalid option specification (Namespace: '{ns}', OptionName: '{name}'): Unknown configuration setting.")
        );
    }
    // Nothing started.
    assert_eq!(emu.environment("env-v").status, "Ready");
    let err = refused!(eb
        .describe_configuration_settings()
        .application_name("app")
        .environment_name("nope"));
    assert_eq!(
        err.message(),
        Some("No Environment found for EnvironmentName = 'nope'.")
    );
}

#[tokio::test]
async fn responses_carry_date_arns_and_creation_dates() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-d", Some("v0"), 1);
    // A raw request: AWS always sends `Date`, which the EB CLI reads.
    let resp = reqwest::Client::new()
        .post(&emu.endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=DescribeEnvironments&Version=2010-12-01")
        .send()
        .await
        .unwrap();
    let date = resp.headers()["date"].to_str().unwrap().to_string();
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    let out = eb(&emu).describe_environments().send().await.unwrap();
    let env = &out.environments()[0];
    assert_eq!(
        env.environment_arn(),
        Some("arn:aws:elasticbeanstalk:us-west-2:123456789012:environment/app/env-d")
    );
    let platform = env.platform_arn().unwrap();
    assert_eq!(
        platform,
        "arn:aws:elasticbeanstalk:us-west-2::platform/ECS running on 64bit Amazon Linux 2/3.6.0"
    );
    assert!(env.date_created().is_some() && env.date_updated().is_some());
    let p = eb(&emu)
        .describe_platform_version()
        .platform_arn(platform)
        .send()
        .await
        .unwrap();
    let p = p.platform_description().unwrap();
    assert_eq!(p.platform_status().unwrap().as_str(), "Ready");
    assert_eq!(
        p.platform_branch_name(),
        Some("ECS running on 64bit Amazon Linux 2")
    );
    let err = refused!(eb(&emu)
        .describe_platform_version()
        .platform_arn("arn:aws:elasticbeanstalk:us-west-2::platform/Nope/1.0"));
    assert_eq!(err.code(), Some("InvalidParameterValue"));
}

#[tokio::test]
async fn applications_are_created_once_and_versions_need_one() {
    let (emu, _, _) = setup().await;
    let eb = eb(&emu);
    let created = eb
        .create_application()
        .application_name("antenna")
        .description("the backend")
        .send()
        .await
        .unwrap();
    let app = created.application().unwrap();
    assert_eq!(
        app.application_arn(),
        Some("arn:aws:elasticbeanstalk:us-west-2:123456789012:application/antenna")
    );
    assert!(app.date_created().is_some());
    let dup = refused!(eb.create_application().application_name("antenna"));
    assert_eq!(dup.code(), Some("InvalidParameterValue"));
    assert_eq!(dup.message(), Some("Application antenna already exists."));
    let listed = eb.describe_applications().send().await.unwrap();
    assert_eq!(listed.applications().len(), 1);
    assert_eq!(listed.applications()[0].description(), Some("the backend"));
    let none = eb
        .describe_applications()
        .application_names("other")
        .send()
        .await
        .unwrap();
    assert!(none.applications().is_empty());
    let err = refused!(eb
        .create_application_version()
        .application_name("nope")
        .version_label("v1")
        .source_bundle(S3Location::builder().s3_bucket("b").s3_key("k").build()));
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    assert_eq!(err.message(), Some("No Application named 'nope' found."));
}

#[tokio::test]
async fn a_failed_version_cannot_be_deployed() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-f", Some("v0"), 1);
    emu.add_version("app", "bad", "b", "k", "FAILED");
    let err = update_refused(&eb(&emu), "env-f", "bad").await;
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    assert!(err.message().unwrap().contains("'bad' failed processing"));
    assert_eq!(emu.environment("env-f").status, "Ready");
}

#[tokio::test]
async fn events_page_with_max_records_next_token_and_end_time() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-p", Some("v0"), 1);
    emu.add_version("app", "v1", "b", "k", "PROCESSED");
    let eb = eb(&emu);
    emu.script_next_deploy("env-p", Script::success(Duration::from_millis(90)));
    deploy(&eb, "env-p", "v1").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let all = events(&eb, "env-p").await;
    assert_eq!(all.len(), 5, "{all:?}");
    // Two by two, newest first, until no token is left.
    let mut paged = vec![];
    let mut token = None;
    loop {
        let page = eb
            .describe_events()
            .environment_name("env-p")
            .max_records(2)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        assert!(page.events().len() <= 2);
        paged.extend(page.events().iter().cloned());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(paged, all);
    // EndTime excludes what happened at or after it.
    let end = *all[1].event_date().unwrap();
    let before = eb
        .describe_events()
        .environment_name("env-p")
        .end_time(end)
        .send()
        .await
        .unwrap();
    assert!(before
        .events()
        .iter()
        .all(|e| *e.event_date().unwrap() < end));
    assert!(!before.events().is_empty());
    let bad = refused!(eb.describe_events().max_records(0));
    assert_eq!(bad.code(), Some("InvalidParameterValue"));
}

#[tokio::test]
async fn late_events_are_dated_before_events_already_seen() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-l", Some("v0"), 1);
    emu.add_version("app", "v1", "b", "k", "PROCESSED");
    emu.script_next_deploy(
        "env-l",
        Script::new(vec![
            Step::at_ms(20).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(150).late_event(
                "ERROR",
                "[Instance: {instance}] Command failed on instance. Return code: 1 Output: boom.",
                Duration::from_millis(140),
            ),
        ]),
    );
    let eb = eb(&emu);
    deploy(&eb, "env-l", "v1").await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let first = events(&eb, "env-l").await;
    let newest = *first[0].event_date().unwrap();
    assert_eq!(
        first[0].message(),
        Some("Deploying new version to instance(s).")
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    // Polling from the newest date seen misses it...
    let since = eb
        .describe_events()
        .environment_name("env-l")
        .start_time(newest)
        .send()
        .await
        .unwrap();
    assert!(since
        .events()
        .iter()
        .all(|e| !e.message().unwrap().contains("Command failed")));
    // ...though it is there, dated before the event already seen, and names the instance.
    let all = events(&eb, "env-l").await;
    let late = all
        .iter()
        .find(|e| e.message().unwrap().contains("Command failed"))
        .unwrap();
    assert!(*late.event_date().unwrap() < newest);
    let instance = emu.environment("env-l").instances[0].id.clone();
    assert!(late
        .message()
        .unwrap()
        .contains(&format!("[Instance: {instance}]")));
}

#[tokio::test]
async fn health_answers_only_the_attributes_asked_for() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-h", Some("v0"), 2);
    let eb = eb(&emu);
    // Without `Deployment`, instances carry no version information at all.
    let bare = eb
        .describe_instances_health()
        .environment_name("env-h")
        .attribute_names(InstancesHealthAttribute::HealthStatus)
        .attribute_names(InstancesHealthAttribute::Color)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.instance_health_list().len(), 2);
    for i in bare.instance_health_list() {
        assert!(i.instance_id().is_some());
        assert_eq!(i.health_status(), Some("Ok"));
        assert!(i.deployment().is_none(), "{i:?}");
        assert!(i.causes().is_empty() && i.launched_at().is_none());
    }
    let none = eb
        .describe_instances_health()
        .environment_name("env-h")
        .send()
        .await
        .unwrap();
    assert!(none
        .instance_health_list()
        .iter()
        .all(|i| i.instance_id().is_some()
            && i.health_status().is_none()
            && i.deployment().is_none()));
    let all = eb
        .describe_instances_health()
        .environment_name("env-h")
        .attribute_names(InstancesHealthAttribute::All)
        .send()
        .await
        .unwrap();
    for i in all.instance_health_list() {
        let d = i.deployment().unwrap();
        assert_eq!(d.version_label(), Some("v0"));
        assert_eq!(d.deployment_id(), Some(1));
    }
    let env = eb
        .describe_environment_health()
        .environment_name("env-h")
        .send()
        .await
        .unwrap();
    assert_eq!(env.environment_name(), Some("env-h"));
    assert!(
        env.color().is_none() && env.health_status().is_none() && env.instances_health().is_none()
    );
    let env = eb
        .describe_environment_health()
        .environment_name("env-h")
        .attribute_names(EnvironmentHealthAttribute::Color)
        .attribute_names(EnvironmentHealthAttribute::HealthStatus)
        .send()
        .await
        .unwrap();
    assert_eq!(env.color(), Some("Green"));
    assert_eq!(env.health_status(), Some("Ok"));
    assert!(env.causes().is_empty() && env.instances_health().is_none());
}

#[tokio::test]
async fn deployment_ids_count_the_environments_deployments() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-n", Some("v0"), 2);
    emu.add_version("app", "v1", "b", "k", "PROCESSED");
    emu.script_next_deploy("env-n", Script::success(Duration::from_millis(30)));
    let eb = eb(&emu);
    deploy(&eb, "env-n", "v1").await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    for d in deployments(&eb, "env-n").await {
        assert_eq!(
            (d.version_label(), d.deployment_id()),
            (Some("v1"), Some(2))
        );
    }
}

#[tokio::test]
async fn a_version_can_fail_processing_with_no_reason() {
    let (emu, s3, bucket) = setup().await;
    emu.add_application("app");
    put(
        &s3,
        &bucket,
        "app/good.zip",
        zip_with(integration::deploy_world::GOOD_DOCKERRUN),
    )
    .await;
    emu.fail_next_processing_silently(1);
    let eb = eb(&emu);
    eb.create_application_version()
        .application_name("app")
        .version_label("v1")
        .source_bundle(bundle(&bucket, "app/good.zip"))
        .process(true)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emu.version("app", "v1").unwrap().status, "FAILED");
    let events = eb
        .describe_events()
        .application_name("app")
        .send()
        .await
        .unwrap();
    assert!(events.events().is_empty(), "{:?}", events.events());
}

#[tokio::test]
async fn events_are_dated_when_they_happen_not_when_someone_looks() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-t", Some("v0"), 1);
    emu.add_version("app", "v1", "b", "k", "PROCESSED");
    emu.script_next_deploy("env-t", Script::success(Duration::from_millis(60)));
    let eb = eb(&emu);
    let start = std::time::SystemTime::now();
    deploy(&eb, "env-t", "v1").await;
    // Nobody looks for 400 ms; the deploy ended at 60 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = events(&eb, "env-t").await;
    let done = out
        .iter()
        .find(|e| e.message() == Some("Environment update completed successfully."))
        .unwrap();
    let at = std::time::SystemTime::try_from(*done.event_date().unwrap()).unwrap();
    let after = at.duration_since(start).unwrap();
    assert!(
        after < Duration::from_millis(200),
        "dated {after:?} after the update"
    );
}

#[tokio::test]
async fn the_example_scenario_file_loads_and_plays() {
    let (emu, _, _) = setup().await;
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/eb-emulator/scenario.toml");
    let scenario = integration::eb_emulator::Scenario::load(&path).unwrap();
    scenario.apply(&emu).unwrap();
    assert!(emu.has_environment("antenna-staging"));
    assert_eq!(emu.version("antenna", "v0").unwrap().status, "PROCESSED");
    // The file's first fault drops the first DescribeEvents.
    let err = eb(&emu).describe_events().send().await.unwrap_err();
    assert!(
        matches!(
            err,
            aws_sdk_elasticbeanstalk::error::SdkError::DispatchFailure(_)
        ),
        "{err:?}"
    );
    // A typo is refused at load time, with the file and the deploy named.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[environments]]\napplication = \"a\"\nname = \"e\"\n\n[[deploys]]\nenvironment = \"e\"\npreset = \"sucess\"\n",
    )
    .unwrap();
    let err = integration::eb_emulator::Scenario::load(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.toml: deploy of e: unknown preset `sucess`"),
        "{err}"
    );
}

#[tokio::test]
async fn every_listed_action_is_answered_and_nothing_else() {
    let (emu, _, _) = setup().await;
    let post = |action: &str| {
        let body = format!("Action={action}&Version=2010-12-01");
        let endpoint = emu.endpoint.clone();
        async move {
            reqwest::Client::new()
                .post(&endpoint)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    // Without parameters most answer MissingParameter: what matters is that the dispatcher
    // knows them (the conformance suite calls each one for real).
    for action in ACTIONS {
        let text = post(action).await;
        assert!(
            !text.contains("<Code>InvalidAction</Code>")
                && !text.contains("<Code>InternalFailure</Code>"),
            "{action}: {text}"
        );
    }
    let text = post("SwapEnvironmentCNAMEs").await;
    assert!(text.contains("<Code>InvalidAction</Code>"), "{text}");
}

#[tokio::test]
async fn environment_resources_name_the_launch_template_iam_policy_scopes_launches_to() {
    let (emu, _, _) = setup().await;
    emu.add_environment("app", "env-r", Some("v0"), 2);
    let env = emu.environment("env-r");
    let out = eb(&emu)
        .describe_environment_resources()
        .environment_name("env-r")
        .send()
        .await
        .unwrap();
    let r = out.environment_resources().unwrap();
    assert_eq!(r.environment_name(), Some("env-r"));
    let instances: Vec<_> = r.instances().iter().filter_map(|i| i.id()).collect();
    assert_eq!(instances.len(), 2);
    assert_eq!(
        r.launch_templates()
            .iter()
            .filter_map(|t| t.id())
            .collect::<Vec<_>>(),
        vec![integration::eb_emulator::launch_template_id(&env).as_str()]
    );
    // The lookup `iam-policy` makes.
    let paced = pipeline::eb::Eb::new(eb(&emu), pipeline::eb::Pacing::scaled(100.0));
    assert_eq!(
        pipeline::iam::launch_templates(&paced, "env-r")
            .await
            .unwrap(),
        vec![integration::eb_emulator::launch_template_id(&env)]
    );
    let err = pipeline::iam::launch_templates(&paced, "env-missing")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot list the resources of the environment env-missing"),
        "{err:#}"
    );
}
