//! A deploy scenario for the tests and the benchmark: a moto bucket, an EB emulator with one
//! application and environment, a `deploy.toml` and a bundle in a temporary directory.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use pipeline::config::Config;
use pipeline::deploy::{RunOptions, RunReport, RunRequest};
use pipeline::eb::{Clients, Pacing};
use pipeline::release::Release;
use pipeline::verify::{Verifier, VerifyTarget};

use crate::deploy_tree::DeployToml;
use crate::eb_emulator::{EbEmulator, Script};
use crate::{aws, services};

/// A valid multi-container `Dockerrun.aws.json`.
pub const GOOD_DOCKERRUN: &str = r#"{
  "AWSEBDockerrunVersion": 2,
  "containerDefinitions": [
    {"name": "django", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/antenna-backend:v1", "memory": 1024, "essential": true,
     "command": ["/start"], "portMappings": [{"hostPort": 80, "containerPort": 5000}]},
    {"name": "celeryworker", "image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/antenna-backend:v1", "memory": 512, "essential": false,
     "command": ["/start-celeryworker"]}
  ]
}"#;

/// An image manifest for moto's ECR (an external image's tag that a preflight finds).
pub const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;

/// Everything one scenario needs.
pub struct World {
    pub emu: EbEmulator,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub application: String,
    pub environment: String,
    pub dir: tempfile::TempDir,
    pub clients: Clients,
    pub bundle: PathBuf,
}

/// Settings of a scenario's `deploy.toml`.
pub struct Settings {
    /// Configure the bucket (else EB's storage location, which is the same bucket).
    pub bucket_in_config: bool,
    pub deploy: &'static str,
    pub lock_wait: &'static str,
    pub health_settle: &'static str,
    /// The verify stage's budget.
    pub verify: &'static str,
    pub rollback: bool,
    /// TOML appended after the environment's table (`[[environments.staging.checks]]`...).
    pub checks: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bucket_in_config: true,
            deploy: "3s",
            lock_wait: "2s",
            health_settle: "150ms",
            verify: "1s",
            rollback: true,
            checks: String::new(),
        }
    }
}

/// Writes a zip holding `dockerrun` as `Dockerrun.aws.json`.
pub fn write_bundle(path: &Path, dockerrun: &str) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("Dockerrun.aws.json", opts).unwrap();
    z.write_all(dockerrun.as_bytes()).unwrap();
    z.start_file(".ebextensions/00_setup.config", opts).unwrap();
    z.write_all(b"option_settings: {}\n").unwrap();
    z.finish().unwrap();
}

impl World {
    /// A world whose environment runs `v0` (healthy, 2 instances), with a valid bundle.
    pub async fn new() -> Self {
        Self::with_dockerrun(GOOD_DOCKERRUN).await
    }

    pub async fn with_dockerrun(dockerrun: &str) -> Self {
        Self::named(
            &services::unique("antenna"),
            &services::unique("antenna-staging"),
            dockerrun,
        )
        .await
    }

    /// A world with fixed names (each world has its own emulator, so names never collide).
    pub async fn named(application: &str, environment: &str, dockerrun: &str) -> Self {
        let (application, environment) = (application.to_string(), environment.to_string());
        let s3 = aws::s3(&services::env("MOTO_ENDPOINT"));
        let bucket = services::unique("bundles");
        aws::create_bucket(&s3, &bucket).await;
        let emu = EbEmulator::start(s3.clone(), &bucket).await;
        emu.add_environment(&application, &environment, Some("v0"), 2);
        // Prepared as a deploy's preflight expects: the properties Antenna requires are set.
        for name in pipeline::config::ANTENNA_REQUIRED_PROPERTIES {
            emu.set_environment_property(&environment, name, "set-by-the-world");
        }
        emu.add_version(
            &application,
            "v0",
            &bucket,
            &format!("{application}/v0.zip"),
            "PROCESSED",
        );
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.zip");
        write_bundle(&bundle, dockerrun);
        let clients = Clients {
            s3: s3.clone(),
            eb: pipeline::eb::eb_client(&aws::sdk_config(&emu.endpoint)),
        };
        Self {
            emu,
            s3,
            bucket,
            application,
            environment,
            dir,
            clients,
            bundle,
        }
    }

    /// Writes this world's `deploy.toml` with the settings `s` and loads it: the application,
    /// Antenna's backend image, and `staging` for this world's environment.
    pub fn config(&self, s: &Settings) -> Config {
        let bucket = if s.bucket_in_config {
            format!("bucket = \"{}\"\n", self.bucket)
        } else {
            String::new()
        };
        DeployToml::antenna(&self.application)
            .table("bundle", r#"out_dir = "out""#)
            .environment(
                "staging",
                &format!(
                    "eb_environment = \"{env}\"\n{bucket}rollback = {rollback}\n\
                     timeouts = {{ deploy = \"{deploy}\", lock_wait = \"{lock}\", health_settle = \"{settle}\", version = \"3s\", verify = \"{verify}\" }}",
                    env = self.environment,
                    rollback = s.rollback,
                    deploy = s.deploy,
                    lock = s.lock_wait,
                    settle = s.health_settle,
                    verify = s.verify,
                ),
            )
            .raw(&s.checks)
            .load(self.dir.path())
    }

    /// A request for the whole pipeline with the given settings, polling 1000× faster.
    pub fn request(&self, s: &Settings) -> RunRequest {
        RunRequest {
            config: self.config(s),
            environment: "staging".into(),
            release: Release::fixed("v1.0.0", "0123456789abcdef0123456789abcdef01234567"),
            account: None,
            // STS, ECR and S3 of the preflight at moto (EB goes through `clients`).
            aws: Some(pipeline::aws::Aws {
                sdk: crate::aws::sdk_config(&services::env("MOTO_ENDPOINT")),
                custom_endpoint: true,
            }),
            pacing: Pacing::scaled(1000.0),
            options: RunOptions {
                bundle: Some(self.bundle.clone()),
                ..RunOptions::default()
            },
        }
    }

    /// The label the pipeline gives this world's bundle.
    pub fn label(&self) -> String {
        let sha = pipeline::deploy::sha256_file(&self.bundle).unwrap();
        Release::fixed("v1.0.0", "x").version_label(&sha)
    }

    pub async fn run(&self, req: &RunRequest, verifier: Option<&dyn Verifier>) -> RunReport {
        pipeline::deploy::run(req, &self.clients, verifier)
            .await
            .expect("the pipeline returned an error instead of a report")
    }

    /// Runs the pipeline with `s` and no verifier.
    pub async fn deploy(&self, s: &Settings) -> RunReport {
        self.run(&self.request(s), None).await
    }

    /// Scripts how the next deploy to this world's environment unfolds.
    pub fn script_deploy(&self, script: Script) {
        self.emu.script_next_deploy(&self.environment, script);
    }

    /// Runs `req` and drops the run's future (Ctrl-C) once it polls events, that is while it
    /// waits for the deploy; panics if the run ends before.
    pub async fn interrupt_while_waiting(&self, req: &RunRequest) {
        let run = self.run(req, None);
        tokio::pin!(run);
        loop {
            tokio::select! {
                _ = &mut run => panic!("the first run should still be waiting"),
                _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {
                    if !self.emu.calls_of("DescribeEvents").is_empty() {
                        break;
                    }
                }
            }
        }
    }

    /// The `xtask` binary with this world's `deploy.toml`, pointed at moto and the emulator
    /// through the SDK's endpoint variables.
    pub fn xtask(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = crate::xtask();
        cmd.arg("--config")
            .arg(self.dir.path().join("deploy.toml"))
            .args(args)
            .env("AWS_ENDPOINT_URL_S3", services::env("MOTO_ENDPOINT"))
            // The preflight's account and repositories.
            .env("AWS_ENDPOINT_URL_STS", services::env("MOTO_ENDPOINT"))
            .env("AWS_ENDPOINT_URL_ECR", services::env("MOTO_ENDPOINT"))
            .env("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", &self.emu.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-west-2")
            .env_remove("AWS_PROFILE")
            .env_remove("DEPLOY_BUCKET")
            .env("DEPLOY_ENV", "staging");
        cmd
    }

    /// The session the operating commands (`status`, `logs`, …) open, with EB at the
    /// emulator and S3 and ECR at moto.
    pub fn session(&self, pacing: Pacing) -> pipeline::ops::Session {
        let sdk = crate::aws::sdk_config(&services::env("MOTO_ENDPOINT"));
        pipeline::ops::Session {
            aws: pipeline::aws::Aws {
                sdk: sdk.clone(),
                custom_endpoint: true,
            },
            eb: std::sync::Arc::new(pipeline::eb::Eb::new(self.clients.eb.clone(), pacing)),
            s3: self.s3.clone(),
            ecr: aws_sdk_ecr::Client::new(&sdk),
        }
    }

    /// Prepares moto's ECR as a deploy's preflight expects for `config`: every repository of
    /// its images, and each external image's tag (repositories and tags already there are
    /// kept: moto's ECR is shared by the tests).
    pub async fn prepare_repositories(&self, config: &Config) {
        let ecr =
            aws_sdk_ecr::Client::new(&crate::aws::sdk_config(&services::env("MOTO_ENDPOINT")));
        for image in config.images.values() {
            if image.has_registry_host() {
                continue;
            }
            let _ = ecr
                .create_repository()
                .repository_name(&image.repository)
                .send()
                .await;
            if let Some(tag) = &image.tag {
                let _ = ecr
                    .put_image()
                    .repository_name(&image.repository)
                    .image_tag(tag)
                    .image_manifest(MANIFEST)
                    .send()
                    .await;
            }
        }
    }

    /// The labels of the `UpdateEnvironment` calls, in order.
    pub fn deployed_labels(&self) -> Vec<String> {
        self.emu
            .calls_of("UpdateEnvironment")
            .iter()
            .filter(|c| c.status == 200)
            .map(|c| c.param("VersionLabel").unwrap_or_default().to_string())
            .collect()
    }
}

/// A verify stage that answers with a fixed result.
pub struct FixedVerify(pub Result<String, String>);

impl Verifier for FixedVerify {
    fn verify<'a>(
        &'a self,
        _target: &'a VerifyTarget,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>> {
        let r = self.0.clone().map_err(|e| anyhow::anyhow!(e));
        Box::pin(async move { r })
    }
}
