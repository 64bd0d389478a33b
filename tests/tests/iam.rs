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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration::eb_emulator::{EbEmulator, Script};
use integration::services;
use serde_json::Value;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ACCOUNT: &str = "123456789012";
/// The value `secrets put` stores: it must appear in no output.
const SECRET_VALUE: &str = "s3cr3t-django-key-for-iam-tests";
/// The SSM parameter the staging environment declares (created by the administrator).
const PARAMETER: &str = "/antenna/staging/sentry-dsn";
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
    /// The application's site: answers the health check path for `doctor`.
    _site: wiremock::MockServer,
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
            _site: site,
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

    /// A second user with `policy` (the preview role's), known to moto and the emulator.
    async fn add_user(&self, prefix: &str, policy: &Value) -> User {
        let file = self.dir.path().join(format!("target/{prefix}.json"));
        std::fs::write(&file, serde_json::to_vec(policy).unwrap()).unwrap();
        moto_auth(false).await;
        let user = create_user(&services::unique(prefix), &file);
        moto_auth(true).await;
        self.emu.enforce(&user.key, &user.arn, policy.clone());
        user
    }

    async fn drop_repository(&self) {
        moto_auth(false).await;
        admin(&["drop-repository", &self.repository]);
        moto_auth(true).await;
    }

    /// The binary as `user`: only its policy's permissions.
    fn xtask(&self, user: &User, args: &[&str]) -> Command {
        let mut cmd = integration::xtask();
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
    async fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.deployer, args).await
    }

    async fn run_as(&self, user: &User, args: &[&str]) -> Output {
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
    async fn tour(&self, release: &str, root_volume: u32) -> Vec<(String, Step)> {
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
    async fn step(&self, args: &[&str], steps: &mut Vec<(String, Step)>) -> bool {
        let step = Step::of(args, self.run(args).await);
        let ok = step.ok();
        steps.push((command_name(args), step));
        ok
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
/// Staging declares a property, a secret (stored by `secrets put`) and an SSM parameter.
fn write_inputs(dir: &Path, repository: &str, eb_environment: &str, site: &str, volume: u32) {
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
url = "{site}"
required = []
timeouts = {{ deploy = "60s", lock_wait = "20s", health_settle = "200ms" }}

[environments.staging.properties]
USE_DOCKER = "yes"

[environments.staging.secrets]
DJANGO_SECRET_KEY = {{ secret = "antenna/staging/DJANGO_SECRET_KEY" }}
SENTRY_DSN = {{ parameter = "{PARAMETER}" }}

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
    if !dir.join(".git").exists() {
        integration::git(dir, &["init", "-q"]);
    }
    integration::git(dir, &["add", "-A", "."]);
    integration::git(dir, &["commit", "-q", "--allow-empty", "-m", "inputs"]);
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

/// `env diff` for `["env", "diff", …]`, `doctor` for `["--json", "doctor", …]`.
fn command_name(args: &[&str]) -> String {
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
struct Step {
    out: Output,
    /// The first line that says IAM refused something (a command may go on past a refused
    /// read and exit 0: `env diff` reports a secret it cannot describe).
    denial: Option<String>,
}

impl Step {
    fn of(args: &[&str], out: Output) -> Self {
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
    fn ok(&self) -> bool {
        self.out.status.success() && self.denial.is_none()
    }
}

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
    let as_deployer = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&integration::aws::sdk_config(&moto()))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &w.deployer.key,
                &w.deployer.secret,
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build(),
    );
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
