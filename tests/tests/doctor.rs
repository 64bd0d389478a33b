//! `doctor` against moto (STS, ECR, S3) and the EB emulator: a fully prepared world passes,
//! and each missing piece is named with its fix, one test per ✗ line.

use std::collections::BTreeMap;

use integration::eb_emulator::EbEmulator;
use integration::{aws, services};
use pipeline::config::Config;
use pipeline::doctor::{doctor, DoctorReport, DoctorRequest, Subject};
use pipeline::eb::{Eb, Pacing};
use pipeline::ops::{AwsEnvironment, Session};
use wiremock::matchers::{header_exists, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
/// A property value that must never appear in any output.
const SECRET_VALUE: &str = "doctor-secret-value-4711";

/// What a prepared world leaves out (each test drops one piece).
#[derive(Default, Clone, Copy)]
struct Skip {
    backend_repository: bool,
    awscli_tag: bool,
    bucket: bool,
    application: bool,
    environment: bool,
    property: bool,
}

struct DoctorWorld {
    emu: EbEmulator,
    dir: tempfile::TempDir,
    moto: String,
    app: String,
    eb_env: String,
    bucket: String,
    repos: BTreeMap<&'static str, String>,
    site: MockServer,
}

impl DoctorWorld {
    /// Everything a deploy of the repository's template needs, minus `skip`.
    async fn prepared(skip: Skip) -> Self {
        let moto = services::env("MOTO_ENDPOINT");
        let sdk = aws::sdk_config(&moto);
        let s3 = aws::s3(&moto);
        let ecr = aws_sdk_ecr::Client::new(&sdk);
        let bucket = services::unique("doctor-bundles");
        if !skip.bucket {
            aws::create_bucket(&s3, &bucket).await;
        }
        let repos: BTreeMap<&'static str, String> = [
            ("backend", services::unique("antenna-backend")),
            ("awscli", services::unique("antenna-awscli")),
            ("ml-backend-minimal", services::unique("antenna-ml-minimal")),
            ("ml-backend-example", services::unique("antenna-ml-example")),
        ]
        .into_iter()
        .collect();
        for (name, repo) in &repos {
            if *name == "backend" && skip.backend_repository {
                continue;
            }
            ecr.create_repository()
                .repository_name(repo)
                .send()
                .await
                .unwrap();
            if *name != "backend" && !(*name == "awscli" && skip.awscli_tag) {
                ecr.put_image()
                    .repository_name(repo)
                    .image_tag(tag_of(name))
                    .image_manifest(MANIFEST)
                    .send()
                    .await
                    .unwrap();
            }
        }
        let emu = EbEmulator::start(s3.clone(), &bucket).await;
        let app = services::unique("antenna");
        let eb_env = services::unique("antenna-staging");
        if !skip.environment && !skip.application {
            emu.add_environment(&app, &eb_env, Some("v0"), 1);
            for name in pipeline::config::ANTENNA_REQUIRED_PROPERTIES {
                if skip.property && *name == "SENTRY_DSN" {
                    continue;
                }
                emu.set_environment_property(&eb_env, name, SECRET_VALUE);
            }
        } else if !skip.application {
            emu.add_application(&app);
        }
        let site = MockServer::start().await;
        // Django behind the load balancer: plain HTTP without X-Forwarded-Proto is answered by
        // the API root (DJANGO_SECURE_SSL_REDIRECT=False in a prepared environment).
        Mock::given(method("GET"))
            .and(path("/api/v2/"))
            .respond_with(ResponseTemplate::new(200).set_body_string("{\"projects\": \"...\"}"))
            .mount(&site)
            .await;
        let dir = tempfile::tempdir().unwrap();
        integration::copy_repo_files(
            dir.path(),
            ["Dockerrun.template.json", ".ebextensions/00_setup.config"],
        );
        let w = Self {
            emu,
            dir,
            moto,
            app,
            eb_env,
            bucket,
            repos,
            site,
        };
        w.write_config("");
        w
    }

    fn write_config(&self, extra_env: &str) {
        let images: String = self
            .repos
            .iter()
            .map(|(name, repo)| {
                if *name == "backend" {
                    format!("[images.{name}]\nrepository = \"{repo}\"\nbuild = {{ context = \".\" }}\n\n")
                } else {
                    format!("[images.{name}]\nrepository = \"{repo}\"\ntag = \"{}\"\n\n", tag_of(name))
                }
            })
            .collect();
        let text = format!(
            r#"region = "us-west-2"
application = "{app}"

{images}
[environments.staging]
eb_environment = "{env}"
bucket = "{bucket}"
url = "{url}"
{extra_env}

[[environments.staging.checks]]
kind = "http"
path = "/api/v2/"

[[environments.staging.checks]]
kind = "flower"
url = "{url}"
"#,
            app = self.app,
            env = self.eb_env,
            bucket = self.bucket,
            url = self.site.uri(),
        );
        std::fs::write(self.dir.path().join("deploy.toml"), text).unwrap();
    }

    fn config(&self) -> Config {
        Config::load(&self.dir.path().join("deploy.toml"), &Default::default()).unwrap()
    }

    fn session(&self) -> Session {
        let sdk = aws::sdk_config(&self.moto);
        Session {
            aws: pipeline::aws::Aws {
                sdk: sdk.clone(),
                custom_endpoint: true,
            },
            eb: std::sync::Arc::new(Eb::new(
                pipeline::eb::eb_client(&aws::sdk_config(&self.emu.endpoint)),
                Pacing::scaled(0.01),
            )),
            s3: aws::s3(&self.moto),
            ecr: aws_sdk_ecr::Client::new(&sdk),
        }
    }

    async fn run(&self, fix: bool, flower_vars: bool) -> DoctorReport {
        let config = self.config();
        let env = AwsEnvironment::resolve(&config, "staging", "doctor").unwrap();
        let req = DoctorRequest::new(&config, env)
            .with_fix(fix)
            .with_vars(move |name| {
                (flower_vars && name.starts_with("CELERY_FLOWER_")).then(|| "flower-pw".to_string())
            });
        let report = doctor(&self.session(), &req).await.unwrap();
        let text = report.to_text();
        let json = serde_json::to_string(&report).unwrap();
        assert!(
            !text.contains(SECRET_VALUE) && !json.contains(SECRET_VALUE),
            "{text}"
        );
        assert!(
            !text.contains("flower-pw") && !json.contains("flower-pw"),
            "{text}"
        );
        report
    }
}

fn tag_of(image: &str) -> &'static str {
    match image {
        "awscli" => "2.17.0",
        _ => "v0.1.0",
    }
}

/// The only ✗ of `report`: it is about `subject`, and its detail and fix contain the texts.
fn only_failure(report: &DoctorReport, subject: Subject, detail: &str, fix: &str) {
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1, "{}", report.to_text());
    let f = failures[0];
    assert_eq!(f.subject, subject, "{}", report.to_text());
    assert!(
        f.detail.contains(detail),
        "{detail:?} not in {:?}",
        f.detail
    );
    let f_fix = f.fix.clone().unwrap_or_default();
    assert!(f_fix.contains(fix), "{fix:?} not in {f_fix:?}");
    assert!(report.to_text().contains(&format!("✗ {}", f.what)));
}

#[tokio::test]
async fn a_prepared_world_passes() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    let report = w.run(false, true).await;
    assert!(report.ok(), "{}", report.to_text());
    let subjects: Vec<Subject> = report.items.iter().map(|i| i.subject).collect();
    for s in [
        Subject::Credentials,
        Subject::EcrRepository,
        Subject::ExternalImage,
        Subject::StorageLocation,
        Subject::Application,
        Subject::Environment,
        Subject::Platform,
        Subject::EnhancedHealth,
        Subject::EnvironmentProperties,
        Subject::CheckCredentials,
        Subject::HealthCheckPath,
    ] {
        assert!(
            subjects.contains(&s),
            "{s:?} not checked:\n{}",
            report.to_text()
        );
    }
    // Four repositories, three external tags.
    assert_eq!(
        report
            .items
            .iter()
            .filter(|i| i.subject == Subject::EcrRepository)
            .count(),
        4
    );
    assert_eq!(
        report
            .items
            .iter()
            .filter(|i| i.subject == Subject::ExternalImage)
            .count(),
        3
    );
    assert!(report.created.is_empty());
    assert!(report
        .to_text()
        .contains("every prerequisite of a deploy is in place"));
    // Read-only: no EB write call.
    assert!(w.emu.write_calls().is_empty(), "{:?}", w.emu.write_calls());

    // The deploy role's permissions: what the reads verified, and what only a write would.
    let p = &report.permissions;
    assert!(p.note.is_none(), "{p:?}");
    for verified in [
        "ecr:DescribeRepositories",
        "ecr:DescribeImages",
        "elasticbeanstalk:DescribeApplications",
        "elasticbeanstalk:DescribeEnvironments",
        "elasticbeanstalk:DescribeConfigurationSettings",
    ] {
        assert!(
            p.verified.iter().any(|v| v == verified),
            "{verified}: {p:?}"
        );
    }
    assert!(p.denied.is_empty(), "{p:?}");
    for unverified in [
        "UpdateEnvironment: elasticbeanstalk:UpdateEnvironment",
        "EcrPush: ecr:PutImage",
        "EnvironmentStack: cloudformation:UpdateStack",
        "ApplicationVersions: elasticbeanstalk:CreateApplicationVersion",
    ] {
        assert!(
            p.unverified.iter().any(|u| u == unverified),
            "{unverified}: {p:?}"
        );
    }
    // Nothing is both verified and unverified.
    assert!(p
        .unverified
        .iter()
        .all(|u| !p.verified.iter().any(|v| u.ends_with(&format!(": {v}")))));
    let text = report.to_text();
    assert!(
        text.contains("verified by the reads above (")
            && text.contains("elasticbeanstalk:DescribeEnvironments"),
        "{text}"
    );
    assert!(
        text.contains("    UpdateEnvironment: elasticbeanstalk:UpdateEnvironment\n"),
        "{text}"
    );
}

#[tokio::test]
async fn wrong_account_is_named() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    let text = std::fs::read_to_string(w.dir.path().join("deploy.toml")).unwrap();
    std::fs::write(
        w.dir.path().join("deploy.toml"),
        text.replacen("region = ", "account = \"999999999999\"\nregion = ", 1),
    )
    .unwrap();
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::Credentials,
        "the credentials are for account 123456789012, but the configuration names account 999999999999",
        "use credentials of account 999999999999",
    );
}

#[tokio::test]
async fn missing_ecr_repository_is_named_and_fix_creates_it() {
    let w = DoctorWorld::prepared(Skip {
        backend_repository: true,
        ..Default::default()
    })
    .await;
    let repo = w.repos["backend"].clone();
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::EcrRepository,
        "missing",
        &format!("aws ecr create-repository --repository-name {repo} --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true --region us-west-2"),
    );
    assert!(report
        .failures()
        .next()
        .unwrap()
        .fix
        .as_deref()
        .unwrap()
        .contains("cargo xtask doctor --env staging --fix"));

    let fixed = w.run(true, true).await;
    assert!(fixed.ok(), "{}", fixed.to_text());
    assert!(
        fixed
            .created
            .iter()
            .any(|c| c == &format!("ECR repository {repo} (tag immutability on, scan on push)")),
        "{:?}",
        fixed.created
    );
    let ecr = aws_sdk_ecr::Client::new(&aws::sdk_config(&w.moto));
    let described = ecr
        .describe_repositories()
        .repository_names(&repo)
        .send()
        .await
        .unwrap();
    let r = &described.repositories()[0];
    assert_eq!(
        r.image_tag_mutability(),
        Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable)
    );
    assert_eq!(
        r.image_scanning_configuration().map(|c| c.scan_on_push()),
        Some(true)
    );
    // Once there, nothing more is created.
    assert!(w
        .run(true, true)
        .await
        .created
        .iter()
        .all(|c| !c.starts_with("ECR")));
}

#[tokio::test]
async fn missing_external_image_tag_is_named_with_the_mirror_command() {
    let w = DoctorWorld::prepared(Skip {
        awscli_tag: true,
        ..Default::default()
    })
    .await;
    let repo = w.repos["awscli"].clone();
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::ExternalImage,
        "the tag is not in the repository",
        &format!("docker push ACCOUNT.dkr.ecr.us-west-2.amazonaws.com/{repo}:2.17.0"),
    );
    // --fix does not invent images.
    assert!(!w.run(true, true).await.ok());
}

#[tokio::test]
async fn missing_bucket_is_named() {
    let w = DoctorWorld::prepared(Skip {
        bucket: true,
        ..Default::default()
    })
    .await;
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::StorageLocation,
        "does not exist",
        &format!("aws s3 mb s3://{} --region us-west-2", w.bucket),
    );
}

#[tokio::test]
async fn storage_location_is_checked_and_fix_creates_it() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    let text = std::fs::read_to_string(w.dir.path().join("deploy.toml")).unwrap();
    std::fs::write(
        w.dir.path().join("deploy.toml"),
        text.replacen(&format!("bucket = \"{}\"\n", w.bucket), "", 1),
    )
    .unwrap();
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::StorageLocation,
        "bucket elasticbeanstalk-us-west-2-123456789012",
        "cargo xtask doctor --env staging --fix",
    );
    let fixed = w.run(true, true).await;
    assert!(fixed.ok(), "{}", fixed.to_text());
    assert_eq!(
        fixed.created,
        [format!(
            "EB storage location {} (CreateStorageLocation)",
            w.bucket
        )]
    );
    assert_eq!(w.emu.calls_of("CreateStorageLocation").len(), 1);
}

#[tokio::test]
async fn missing_application_is_named_and_fix_creates_it() {
    let w = DoctorWorld::prepared(Skip {
        application: true,
        ..Default::default()
    })
    .await;
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::Application,
        "missing",
        &format!(
            "aws elasticbeanstalk create-application --application-name {} --region us-west-2",
            w.app
        ),
    );
    let fixed = w.run(true, true).await;
    assert!(
        fixed.created.contains(&format!("EB application {}", w.app)),
        "{:?}",
        fixed.created
    );
    assert!(w.emu.applications().iter().any(|a| a.name == w.app));
    // The environment is still missing: that is not doctor's to create.
    assert_eq!(
        fixed.failures().next().unwrap().subject,
        Subject::Environment
    );
}

#[tokio::test]
async fn missing_environment_is_named() {
    let w = DoctorWorld::prepared(Skip {
        environment: true,
        ..Default::default()
    })
    .await;
    let report = w.run(true, true).await;
    only_failure(
        &report,
        Subject::Environment,
        "missing",
        &format!(
            "aws elasticbeanstalk create-environment --application-name {} --environment-name {}",
            w.app, w.eb_env
        ),
    );
    assert!(w.emu.calls_of("CreateEnvironment").is_empty());
}

#[tokio::test]
async fn environment_on_another_platform_is_named() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    w.emu.update_environment(&w.eb_env, |e| {
        e.solution_stack = "64bit Amazon Linux 2023 v4.3.0 running Docker".into();
        e.platform_arn = "arn:aws:elasticbeanstalk:us-west-2::platform/Docker running on 64bit Amazon Linux 2023/4.3.0".into();
    });
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::Platform,
        "\"64bit Amazon Linux 2023 v4.3.0 running Docker\": a Dockerrun v2 (multi-container) bundle needs \"ECS running on 64bit Amazon Linux 2\"",
        "create a new environment on \"ECS running on 64bit Amazon Linux 2\"",
    );
}

#[tokio::test]
async fn basic_health_is_named() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    w.emu.set_option(
        &w.eb_env,
        "aws:elasticbeanstalk:healthreporting:system",
        "SystemType",
        "basic",
    );
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::EnhancedHealth,
        "SystemType is \"basic\"",
        &format!("aws elasticbeanstalk update-environment --environment-name {} --option-settings Namespace=aws:elasticbeanstalk:healthreporting:system,OptionName=SystemType,Value=enhanced", w.eb_env),
    );
}

#[tokio::test]
async fn missing_required_property_is_named_without_values() {
    let w = DoctorWorld::prepared(Skip {
        property: true,
        ..Default::default()
    })
    .await;
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::EnvironmentProperties,
        "missing: SENTRY_DSN",
        "OptionName=SENTRY_DSN,Value=...",
    );
    // A name declared by .ebextensions counts as set (DJANGO_SETTINGS_MODULE is in 00_setup.config).
    w.write_config("required = [\"DJANGO_SETTINGS_MODULE\", \"NOT_ON_THE_ENVIRONMENT\"]");
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::EnvironmentProperties,
        "missing: NOT_ON_THE_ENVIRONMENT",
        "OptionName=NOT_ON_THE_ENVIRONMENT",
    );
}

#[tokio::test]
async fn missing_check_credentials_are_named() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    let report = w.run(false, false).await;
    only_failure(
        &report,
        Subject::CheckCredentials,
        "CELERY_FLOWER_USER, CELERY_FLOWER_PASSWORD not set",
        "secrets of the `staging` environment",
    );
}

#[tokio::test]
async fn health_check_redirected_to_https_is_named() {
    let w = DoctorWorld::prepared(Skip::default()).await;
    // Django's SECURE_SSL_REDIRECT: 301 unless the proxy says https.
    w.site.reset().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/"))
        .and(header_exists("x-forwarded-proto"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&w.site)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/"))
        .respond_with(
            ResponseTemplate::new(301).insert_header("location", "https://antenna.example/api/v2/"),
        )
        .mount(&w.site)
        .await;
    let report = w.run(false, true).await;
    only_failure(
        &report,
        Subject::HealthCheckPath,
        "→ 301 to https://antenna.example/api/v2/",
        "DJANGO_SECURE_SSL_REDIRECT=False",
    );
    // The health check path probes the running version: it does not stop a deploy.
    assert!(!report.ok() && report.deployable());
}
