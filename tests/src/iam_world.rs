//! The world of `tests/tests/iam.rs`: a moto_server that enforces IAM (`MOTO_IAM_ENDPOINT`,
//! prepared by `tests/fixtures/iam/admin.py` as an administrator would), the EB emulator
//! evaluating the same policy, a deployer user holding only what `iam-policy` prints, and the
//! tour of the commands a user meets around a deploy, run through the binary as that user.
//!
//! Enforcement in moto is server-wide: callers hold [`SERIAL`] and switch it on only once their
//! user and resources exist ([`World::new`] does).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::deploy_tree::{write_template, DeployToml};
use crate::eb_emulator::EbEmulator;
use crate::{output_text as text, services};
use serde_json::Value;

pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const ACCOUNT: &str = "123456789012";
/// The value `secrets put` stores: it must appear in no output.
pub const SECRET_VALUE: &str = "s3cr3t-django-key-for-iam-tests";
/// The SSM parameter the staging environment declares (created by the administrator).
pub const PARAMETER: &str = "/antenna/staging/sentry-dsn";
pub const EB_BUCKET: &str = "elasticbeanstalk-us-west-2-123456789012";
/// Words AWS services and the emulator use when IAM says no.
pub const DENIALS: [&str; 4] = [
    "AccessDenied",
    "not authorized to perform",
    "Access Denied",
    "InsufficientPrivileges",
];

pub fn moto() -> String {
    services::env("MOTO_IAM_ENDPOINT")
}

/// Switches moto's IAM enforcement: `Some(0)` on now, `None` off.
pub async fn moto_auth(on: bool) {
    let body = if on { "0" } else { "1000000000" };
    let r = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", moto()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "reset-auth: {}", r.status());
}

/// Runs `cmd`; its stdout, or a panic naming `what` with its stderr when it fails.
fn stdout_of(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `tests/fixtures/iam/admin.py ARGS` as moto's administrator; its stdout.
pub fn admin(args: &[&str]) -> String {
    let python = PathBuf::from(services::env("TEST_VENV")).join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/iam/admin.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).args(args).env("MOTO_IAM_ENDPOINT", moto());
    String::from_utf8(stdout_of(&mut cmd, &format!("admin.py {args:?}"))).unwrap()
}

/// An IAM user of moto's, with its access key.
pub struct User {
    pub key: String,
    pub secret: String,
    pub arn: String,
}

impl User {
    /// An S3 client for moto with this user's credentials.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
        let conf = aws_sdk_s3::config::Builder::from(&crate::aws::sdk_config(&moto()))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                &self.key,
                &self.secret,
                None,
                None,
                "tests",
            )))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

pub fn create_user(name: &str, policy: &Path) -> User {
    let v: Value = serde_json::from_str(&admin(&["user", name, policy.to_str().unwrap()])).unwrap();
    User {
        key: v["key"].as_str().unwrap().into(),
        secret: v["secret"].as_str().unwrap().into(),
        arn: v["arn"].as_str().unwrap().into(),
    }
}

pub struct World {
    pub dir: tempfile::TempDir,
    pub emu: EbEmulator,
    /// The application's site: answers the health check path for `doctor`.
    _site: wiremock::MockServer,
    pub repository: String,
    pub eb_environment: String,
    pub deployer: User,
    /// The policy as `iam-policy` printed it.
    pub policy: Value,
    pub policy_file: PathBuf,
}

impl World {
    /// Everything an administrator prepares, with enforcement off; switches it on at the end.
    pub async fn new() -> Self {
        moto_auth(false).await;
        let dir = tempfile::tempdir().unwrap();
        let repository = services::unique("iam-backend");
        let eb_environment = services::unique("antenna-stg");
        admin(&["bucket", EB_BUCKET]);
        // The emulator reads bundles as EB would, with its own full access.
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        let all = dir.path().join("target/all.json");
        std::fs::write(
            &all,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
        )
        .unwrap();
        let eb_service = create_user(&services::unique("eb-service"), &all);
        let emu = EbEmulator::start(eb_service.s3(), EB_BUCKET).await;
        emu.add_environment("antenna", &eb_environment, Some("v0"), 2);
        emu.add_version("antenna", "v0", EB_BUCKET, "antenna/v0.zip", "PROCESSED");
        emu.add_environment("antenna", "antenna-production", Some("v0"), 2);
        admin(&["parameter", PARAMETER, "https://key@sentry.example/1"]);
        let site = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/api/v2/"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("{}"))
            .mount(&site)
            .await;
        write_inputs(dir.path(), &repository, &eb_environment, &site.uri(), 30);
        std::fs::write(dir.path().join("target/secret-value"), SECRET_VALUE).unwrap();

        let env_id = emu.environment(&eb_environment).id;
        let mut iam_policy = xtask_admin(dir.path());
        iam_policy.args([
            "iam-policy",
            "--env",
            "staging",
            "--account",
            ACCOUNT,
            "--environment-id",
            &env_id,
        ]);
        let policy: Value =
            serde_json::from_slice(&stdout_of(&mut iam_policy, "iam-policy")).unwrap();
        let policy_file = dir.path().join("target/policy.json");
        std::fs::write(&policy_file, serde_json::to_vec(&policy).unwrap()).unwrap();
        let deployer = create_user(&services::unique("deployer"), &policy_file);
        emu.enforce(&deployer.key, &deployer.arn, policy.clone());
        moto_auth(true).await;
        Self {
            dir,
            emu,
            _site: site,
            repository,
            eb_environment,
            deployer,
            policy,
            policy_file,
        }
    }

    /// Replaces the deployer's policy, in moto and in the emulator.
    pub async fn set_policy(&self, policy: &Value) {
        std::fs::write(&self.policy_file, serde_json::to_vec(policy).unwrap()).unwrap();
        moto_auth(false).await;
        let name = self.deployer.arn.rsplit('/').next().unwrap().to_string();
        admin(&["policy", &name, self.policy_file.to_str().unwrap()]);
        moto_auth(true).await;
        self.emu
            .enforce(&self.deployer.key, &self.deployer.arn, policy.clone());
    }

    /// A second user with `policy` (the preview role's), known to moto and the emulator.
    pub async fn add_user(&self, prefix: &str, policy: &Value) -> User {
        let file = self.dir.path().join(format!("target/{prefix}.json"));
        std::fs::write(&file, serde_json::to_vec(policy).unwrap()).unwrap();
        moto_auth(false).await;
        let user = create_user(&services::unique(prefix), &file);
        moto_auth(true).await;
        self.emu.enforce(&user.key, &user.arn, policy.clone());
        user
    }

    pub async fn drop_repository(&self) {
        moto_auth(false).await;
        admin(&["drop-repository", &self.repository]);
        moto_auth(true).await;
    }

    /// The binary as `user`: only its policy's permissions.
    pub fn xtask(&self, user: &User, args: &[&str]) -> Command {
        let mut cmd = crate::xtask();
        cmd.arg("--config")
            .arg(self.dir.path().join("deploy.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", moto())
            .env("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", &self.emu.endpoint)
            .env("AWS_ACCESS_KEY_ID", &user.key)
            .env("AWS_SECRET_ACCESS_KEY", &user.secret)
            .env("AWS_REGION", "us-west-2")
            .env("DEPLOY_REGISTRY", services::env("REGISTRY"))
            .env("DEPLOY_ACCOUNT", ACCOUNT)
            .env("CI", "1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("DEPLOY_BUCKET")
            .env_remove("DEPLOY_URL")
            .env_remove("GITHUB_ACTIONS");
        cmd
    }

    /// Runs the binary as the deployer.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.deployer, args).await
    }

    pub async fn run_as(&self, user: &User, args: &[&str]) -> Output {
        // moto's IAM layer reads credentials only from the Authorization header: it answers the
        // presigned URLs EB hands out for logs with a 500. Those URLs carry the signature of EB,
        // not the caller's, so `logs` runs with moto's enforcement off; the emulator still holds
        // RequestEnvironmentInfo and RetrieveEnvironmentInfo to the caller's policy.
        let presigned = command_name(args) == "logs";
        if presigned {
            moto_auth(false).await;
        }
        let mut cmd = self.xtask(user, args);
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("cannot run xtask"))
            .await
            .unwrap();
        if presigned {
            moto_auth(true).await;
        }
        let t = text(&out);
        assert!(
            !t.contains(SECRET_VALUE),
            "{args:?} printed the secret: {t}"
        );
        out
    }

    /// The commands around a deploy, in the order a user meets them, until the first that is
    /// refused (or fails): `secrets put`, `env diff`, push (creating the repository), deploy
    /// (with a changed launch setting, so that the stack is updated), `env apply`, `doctor`
    /// (once the declared properties are set, so that it finds nothing missing), `env pull`,
    /// `status`, `history`, `logs`, `rollback`, `cleanup`. Each step: the command and how it
    /// ended.
    pub async fn tour(&self, release: &str, root_volume: u32) -> Vec<(String, Step)> {
        let secret_file = self.dir.path().join("target/secret-value");
        let secret_file = secret_file.to_str().unwrap();
        let mut steps = Vec::new();
        let before: [&[&str]; 2] = [
            &[
                "secrets",
                "put",
                "DJANGO_SECRET_KEY",
                "--env",
                "staging",
                "--from-file",
                secret_file,
            ],
            &["env", "diff", "--env", "staging"],
        ];
        for args in before {
            if !self.step(args, &mut steps).await {
                return steps;
            }
        }
        for (command, out) in self.ship(release, root_volume).await {
            let step = Step::of(&[], out);
            let ok = step.ok();
            steps.push((command, step));
            if !ok {
                return steps;
            }
        }
        let after: [&[&str]; 8] = [
            &["env", "apply", "--env", "staging"],
            &["--json", "doctor", "--env", "staging"],
            &["env", "pull", "--env", "staging"],
            &["status", "--env", "staging"],
            &["history", "--env", "staging"],
            &["logs", "--env", "staging", "--timeout", "20s"],
            &["cleanup", "--keep", "1", "--yes"],
            &["rollback", "--env", "staging"],
        ];
        for args in after {
            if !self.step(args, &mut steps).await {
                return steps;
            }
        }
        steps
    }

    /// Runs `args` as the deployer and adds the step to `steps`; true when it went through.
    pub async fn step(&self, args: &[&str], steps: &mut Vec<(String, Step)>) -> bool {
        let step = Step::of(args, self.run(args).await);
        let ok = step.ok();
        steps.push((command_name(args), step));
        ok
    }

    /// `push --create-repository` then `deploy` of `release`, with the launch configuration
    /// changed (RootVolumeSize) so that the deploy updates the environment's stack.
    pub async fn ship(&self, release: &str, root_volume: u32) -> Vec<(String, Output)> {
        write_ebextensions(self.dir.path(), root_volume);
        commit(self.dir.path());
        let mut outputs = Vec::new();
        for args in [
            vec![
                "push",
                "--env",
                "staging",
                "--release",
                release,
                "--create-repository",
            ],
            vec!["deploy", "--env", "staging", "--release", release],
        ] {
            let out = self.run(&args).await;
            let ok = out.status.success();
            outputs.push((args[0].to_string(), out));
            if !ok {
                break;
            }
        }
        outputs
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Images built for the test, by tag (release names are unique per test).
        let _ = Command::new("docker")
            .args(["image", "ls", "-q", "--filter"])
            .arg(format!("reference=*/{}", self.repository))
            .output()
            .map(|o| {
                for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rmi", "-f", id]).output();
                }
            });
    }
}

/// The binary with administrator credentials (for `iam-policy`, which reads no AWS here).
pub fn xtask_admin(dir: &Path) -> Command {
    let mut cmd = crate::xtask();
    cmd.arg("--config")
        .arg(dir.join("deploy.toml"))
        .current_dir(dir)
        .env_remove("DEPLOY_ACCOUNT")
        .env_remove("DEPLOY_BUCKET");
    cmd
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/image")
}

/// No `bucket`: bundles go to EB's storage location, so `CreateStorageLocation` is exercised.
/// Staging declares a property, a secret (stored by `secrets put`) and an SSM parameter.
fn write_inputs(dir: &Path, repository: &str, eb_environment: &str, site: &str, volume: u32) {
    let timeouts = r#"timeouts = { deploy = "60s", lock_wait = "20s", health_settle = "200ms" }"#;
    DeployToml::new("antenna")
        .built_image(
            "backend",
            repository,
            &format!(
                r#"context = "{}", dockerfile = "{}", target = "final""#,
                fixture().join("context").display(),
                fixture().join("Dockerfile").display()
            ),
        )
        .environment(
            "staging",
            &format!("eb_environment = \"{eb_environment}\"\nurl = \"{site}\"\nrequired = []\n{timeouts}"),
        )
        .table("environments.staging.properties", r#"USE_DOCKER = "yes""#)
        .table(
            "environments.staging.secrets",
            &format!("DJANGO_SECRET_KEY = {{ secret = \"antenna/staging/DJANGO_SECRET_KEY\" }}\nSENTRY_DSN = {{ parameter = \"{PARAMETER}\" }}"),
        )
        .environment(
            "production",
            &format!("eb_environment = \"antenna-production\"\n{timeouts}"),
        )
        .write(dir);
    write_template(
        dir,
        r#"{
  "AWSEBDockerrunVersion": 2,
  "containerDefinitions": [
    {"name": "django", "image": "${image.backend}", "memory": 512, "essential": true,
     "command": ["/start"], "portMappings": [{"hostPort": 80, "containerPort": 5000}]}
  ]
}
"#,
    );
    write_ebextensions(dir, volume);
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
}

fn write_ebextensions(dir: &Path, root_volume: u32) {
    std::fs::create_dir_all(dir.join(".ebextensions")).unwrap();
    std::fs::write(
        dir.join(".ebextensions/00_setup.config"),
        format!(
            "option_settings:\n  aws:elasticbeanstalk:environment:process:default:\n    HealthCheckPath: /api/v2/\n  aws:autoscaling:launchconfiguration:\n    RootVolumeSize: \"{root_volume}\"\n"
        ),
    )
    .unwrap();
}

/// Commits the inputs, so that the release has a revision (the push records it, the deploy
/// finds it and skips the build).
fn commit(dir: &Path) {
    if !dir.join(".git").exists() {
        crate::git(dir, &["init", "-q"]);
    }
    crate::git(dir, &["add", "-A", "."]);
    crate::git(dir, &["commit", "-q", "--allow-empty", "-m", "inputs"]);
}

pub fn denial_in(out: &Output) -> Option<String> {
    let t = text(out);
    t.lines()
        .find(|l| DENIALS.iter().any(|d| l.contains(d)))
        .map(str::to_string)
}

/// `env diff` for `["env", "diff", …]`, `doctor` for `["--json", "doctor", …]`.
pub fn command_name(args: &[&str]) -> String {
    let words: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--"))
        .collect();
    match words.as_slice() {
        [group @ ("env" | "secrets"), sub, ..] => format!("{group} {sub}"),
        [command, ..] => command.to_string(),
        [] => String::new(),
    }
}

/// How one command of [`World::tour`] ended.
pub struct Step {
    pub out: Output,
    /// The first line that says IAM refused something (a command may go on past a refused
    /// read and exit 0: `env diff` reports a secret it cannot describe).
    pub denial: Option<String>,
}

impl Step {
    pub fn of(args: &[&str], out: Output) -> Self {
        let mut denial = denial_in(&out);
        // `doctor --json`: a refused call is a ✗ item and a refused permission.
        if denial.is_none() && args.contains(&"doctor") {
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let refused = &report["permissions"]["denied"];
            if refused.as_array().is_some_and(|a| !a.is_empty()) {
                denial = Some(format!("doctor: refused {refused}"));
            }
        }
        Self { out, denial }
    }

    /// Succeeded, and nothing was refused on the way.
    pub fn ok(&self) -> bool {
        self.out.status.success() && self.denial.is_none()
    }
}
