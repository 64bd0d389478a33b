//! The deploy role's policy, enforced: the whole AWS deploy runs through the binary under
//! credentials that carry only the policy `iam-policy` prints, against a moto_server that
//! enforces IAM (S3, ECR) and the EB emulator evaluating the same document for the EB actions
//! and for what `UpdateEnvironment` does with the caller's permissions. Taking any one
//! statement out makes some command fail with an access denial, so no unneeded statement hides.
//!
//! Enforcement in moto is server-wide: the tests of this file take one lock and switch it on
//! only once their user and resources exist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration::eb_emulator::{EbEmulator, Script};
use integration::services;
use serde_json::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ACCOUNT: &str = "123456789012";
const EB_BUCKET: &str = "elasticbeanstalk-us-west-2-123456789012";
/// Words AWS services and the emulator use when IAM says no.
const DENIALS: [&str; 4] = [
    "AccessDenied",
    "not authorized to perform",
    "Access Denied",
    "InsufficientPrivileges",
];

fn moto() -> String {
    services::env("MOTO_IAM_ENDPOINT")
}

/// Switches moto's IAM enforcement: `Some(0)` on now, `None` off.
async fn moto_auth(on: bool) {
    let body = if on { "0" } else { "1000000000" };
    let r = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", moto()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "reset-auth: {}", r.status());
}

fn admin(args: &[&str]) -> String {
    let python = PathBuf::from(services::env("TEST_VENV")).join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/iam/admin.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .env("MOTO_IAM_ENDPOINT", moto())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct User {
    key: String,
    secret: String,
    arn: String,
}

fn create_user(name: &str, policy: &Path) -> User {
    let v: Value = serde_json::from_str(&admin(&["user", name, policy.to_str().unwrap()])).unwrap();
    User {
        key: v["key"].as_str().unwrap().into(),
        secret: v["secret"].as_str().unwrap().into(),
        arn: v["arn"].as_str().unwrap().into(),
    }
}

struct World {
    dir: tempfile::TempDir,
    emu: EbEmulator,
    repository: String,
    eb_environment: String,
    deployer: User,
    /// The policy as `iam-policy` printed it.
    policy: Value,
    policy_file: PathBuf,
}

impl World {
    /// Everything an administrator prepares, with enforcement off; switches it on at the end.
    async fn new() -> Self {
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
        let s3 = {
            use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
            let conf = aws_sdk_s3::config::Builder::from(&integration::aws::sdk_config(&moto()))
                .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                    &eb_service.key,
                    &eb_service.secret,
                    None,
                    None,
                    "tests",
                )))
                .force_path_style(true)
                .build();
            aws_sdk_s3::Client::from_conf(conf)
        };
        let emu = EbEmulator::start(s3, EB_BUCKET).await;
        emu.add_environment("antenna", &eb_environment, Some("v0"), 2);
        emu.add_version("antenna", "v0", EB_BUCKET, "antenna/v0.zip", "PROCESSED");
        emu.add_environment("antenna", "antenna-production", Some("v0"), 2);
        write_inputs(dir.path(), &repository, &eb_environment, 30);

        let env_id = emu.environment(&eb_environment).id;
        let out = xtask_admin(dir.path())
            .args([
                "iam-policy",
                "--env",
                "staging",
                "--account",
                ACCOUNT,
                "--environment-id",
                &env_id,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
        let policy_file = dir.path().join("target/policy.json");
        std::fs::write(&policy_file, serde_json::to_vec(&policy).unwrap()).unwrap();
        let deployer = create_user(&services::unique("deployer"), &policy_file);
        emu.enforce(&deployer.key, &deployer.arn, policy.clone());
        moto_auth(true).await;
        Self {
            dir,
            emu,
            repository,
            eb_environment,
            deployer,
            policy,
            policy_file,
        }
    }

    /// Replaces the deployer's policy, in moto and in the emulator.
    async fn set_policy(&self, policy: &Value) {
        std::fs::write(&self.policy_file, serde_json::to_vec(policy).unwrap()).unwrap();
        moto_auth(false).await;
        let name = self.deployer.arn.rsplit('/').next().unwrap().to_string();
        admin(&["policy", &name, self.policy_file.to_str().unwrap()]);
        moto_auth(true).await;
        self.emu
            .enforce(&self.deployer.key, &self.deployer.arn, policy.clone());
    }

    async fn drop_repository(&self) {
        moto_auth(false).await;
        admin(&["drop-repository", &self.repository]);
        moto_auth(true).await;
    }

    /// The binary as the deployer: only the policy's permissions.
    fn xtask(&self, args: &[&str]) -> Command {
        let mut cmd = integration::xtask();
        cmd.arg("--config")
            .arg(self.dir.path().join("deploy.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", moto())
            .env("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", &self.emu.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.deployer.key)
            .env("AWS_SECRET_ACCESS_KEY", &self.deployer.secret)
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

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.xtask(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("cannot run xtask"))
            .await
            .unwrap()
    }

    /// `push --create-repository` then `deploy` of `release`, with the launch configuration
    /// changed (RootVolumeSize) so that the deploy updates the environment's stack.
    async fn ship(&self, release: &str, root_volume: u32) -> Vec<(String, Output)> {
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
fn xtask_admin(dir: &Path) -> Command {
    let mut cmd = integration::xtask();
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
fn write_inputs(dir: &Path, repository: &str, eb_environment: &str, volume: u32) {
    std::fs::write(
        dir.join("deploy.toml"),
        format!(
            r#"region = "us-west-2"
application = "antenna"

[images.backend]
repository = "{repository}"
build = {{ context = "{ctx}", dockerfile = "{df}", target = "final" }}

[environments.staging]
eb_environment = "{eb_environment}"
timeouts = {{ deploy = "60s", lock_wait = "20s", health_settle = "200ms" }}

[environments.production]
eb_environment = "antenna-production"
timeouts = {{ deploy = "60s", lock_wait = "20s", health_settle = "200ms" }}
"#,
            ctx = fixture().join("context").display(),
            df = fixture().join("Dockerfile").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerrun.template.json"),
        r#"{
  "AWSEBDockerrunVersion": 2,
  "containerDefinitions": [
    {"name": "django", "image": "${image.backend}", "memory": 512, "essential": true,
     "command": ["/start"], "portMappings": [{"hostPort": 80, "containerPort": 5000}]}
  ]
}
"#,
    )
    .unwrap();
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
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir.join(".git").exists() {
        git(&["init", "-q"]);
    }
    git(&["add", "-A", "."]);
    git(&["commit", "-q", "--allow-empty", "-m", "inputs"]);
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn denial_in(out: &Output) -> Option<String> {
    let t = text(out);
    t.lines()
        .find(|l| DENIALS.iter().any(|d| l.contains(d)))
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_deploy_runs_under_the_generated_policy() {
    let _serial = SERIAL.lock().await;
    let w = World::new().await;

    // Enforcement is real: moto refuses credentials it does not know.
    let stranger = integration::aws::s3(&moto());
    let refused = stranger.list_buckets().send().await;
    assert!(refused.is_err(), "moto enforces IAM");

    // build, push (creating the repository), render, bundle, upload, version, deploy, verify.
    for (command, out) in w.ship("r1", 30).await {
        assert!(out.status.success(), "{command}: {}", text(&out));
    }
    let r1 = w.emu.environment(&w.eb_environment).version.unwrap();
    assert!(r1.starts_with("r1-"), "{r1}");
    let denied: Vec<_> = w
        .emu
        .calls()
        .into_iter()
        .filter(|c| c.status == 403)
        .map(|c| c.action)
        .collect();
    assert!(denied.is_empty(), "no EB call was refused: {denied:?}");

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
        Some(r1),
        "rolled back: {t}"
    );

    // The staging role cannot touch production.
    let out = w
        .run(&["deploy", "--env", "production", "--release", "r2"])
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
    moto_auth(false).await;
}

/// Each statement is needed: without it, some step of push or deploy is refused.
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
        let outs = w.ship(&release, 40 + i as u32).await;
        let (command, out) = outs.last().unwrap();
        let line = denial_in(out);
        eprintln!(
            "without {sid:<26} {command:<7} {}",
            line.as_deref().unwrap_or("(nothing refused)")
        );
        if line.is_none() {
            eprintln!("{}", text(out));
        }
        table.push((sid, out.status.success(), line));
    }
    let hiding: Vec<&str> = table
        .iter()
        .filter(|(_, ok, line)| *ok || line.is_none())
        .map(|(sid, _, _)| sid.as_str())
        .collect();
    assert!(
        hiding.is_empty(),
        "statements no command needs (or whose absence fails without a denial): {hiding:?}"
    );
    moto_auth(false).await;
}
