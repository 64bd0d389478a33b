//! The world of `tests/tests/local.rs`: the local target on the machine's Docker Engine with
//! the demo image (built once per test binary), one stack per test (its network, labels and
//! host port `LOCAL_PORT_BASE + n`), removed when the test ends whatever happens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipeline::config::Config;
use pipeline::docker::{self, BuildContext, BuildOptions, Engine, OutputMode};
use pipeline::local::{self, ContainerState, StackRequest, LABEL_STACK};
use pipeline::verify::{Check, HttpCheck, VerifyReport};
use tokio::sync::OnceCell;

use crate::deploy_tree::DeployToml;
use crate::{services, workspace_root};

/// The demo image's repository and the reference the tests build.
pub const DEMO_REPOSITORY: &str = "pipeline-local-test-demo";
pub const IMAGE: &str = "pipeline-local-test-demo:latest";

/// Builds the demo's static binary and its image once for this test binary.
pub async fn demo_image() -> &'static str {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let root = workspace_root();
            let config = Config::load(&root.join("deploy.toml"), &Default::default()).unwrap();
            tokio::task::spawn_blocking(move || docker::build_static_binaries(&config))
                .await
                .unwrap()
                .expect("the demo's static binary builds");
            let engine = Engine::connect(None)
                .await
                .expect("the Docker Engine answers");
            let demo = root.join("demo");
            let context = BuildContext::prepare(&demo, &demo.join("Dockerfile")).unwrap();
            let options = BuildOptions {
                tag: IMAGE.into(),
                target: None,
                args: Default::default(),
                labels: Default::default(),
                platform: String::new(),
                dockerfile_display: "demo/Dockerfile".into(),
                output: OutputMode::Plain,
            };
            engine
                .build(context, &options)
                .await
                .expect("the demo image builds with no network");
        })
        .await;
    IMAGE
}

/// Host port number `n` (0..=9) of this suite: one per test, so that tests run in parallel.
pub fn port(n: u16) -> u16 {
    services::env("LOCAL_PORT_BASE").parse::<u16>().unwrap() + n
}

/// A stack like Antenna's: web (essential, published), worker (essential, linked to ml),
/// ml (not essential), awscli (`sleep`). `web_command` replaces web's `/start`.
pub fn dockerrun(image: &str, port: u16, release: &str, web_command: &[&str]) -> String {
    serde_json::json!({
        "AWSEBDockerrunVersion": 2,
        "containerDefinitions": [
            {
                "name": "web", "image": image, "essential": true, "memory": 128,
                "command": web_command,
                "portMappings": [{"hostPort": port, "containerPort": 5000}],
                "links": ["ml"],
                "environment": [{"name": "RELEASE", "value": release}]
            },
            {
                "name": "worker", "image": image, "essential": true, "memory": 128,
                "command": ["/start-celeryworker"], "links": ["ml:model-server"],
                "environment": [{"name": "CELERY_QUEUES", "value": "antenna,jobs,ml_results"}]
            },
            {"name": "ml", "image": image, "essential": false, "memory": 64, "command": ["/start-ml-backend"]},
            {"name": "awscli", "image": image, "essential": false, "memoryReservation": 32, "command": ["sleep", "9999999"]}
        ]
    })
    .to_string()
}

/// A run of `text` as `version` of `stack`, settling 1 s, verified by [`api_check`] on `port`.
pub fn request(stack: &str, version: &str, text: String, port: u16) -> StackRequest {
    let mut req = StackRequest::new(stack, "test", version, "Dockerrun.aws.json", text);
    req.settle = Duration::from_secs(1);
    req.checks = vec![api_check(port, Duration::from_secs(20))];
    req
}

/// The verify stage's http check of the API root on `port`.
pub fn api_check(port: u16, timeout: Duration) -> Check {
    Check::Http(
        HttpCheck::new(
            &format!("http://127.0.0.1:{port}/api/v2/"),
            Default::default(),
            200,
            timeout,
            true,
        )
        .unwrap(),
    )
}

/// Asserts that the verify report passed its one http check of the API root on `port`.
pub fn assert_verified(report: Option<&VerifyReport>, port: u16) {
    let report = report.expect("the checks ran");
    assert!(report.passed(), "{}", report.render_table());
    assert_eq!(report.checks.len(), 1);
    assert_eq!(report.checks[0].check, "http");
    assert_eq!(
        report.checks[0].target,
        format!("http://127.0.0.1:{port}/api/v2/")
    );
    assert!(
        report.checks[0]
            .detail
            .starts_with("HTTP 200, JSON object with 12 keys ("),
        "{}",
        report.checks[0].detail
    );
}

/// GET the API root until it answers 200; returns the release that answered.
pub async fn answering_release(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/api/v2/")).await {
            if r.status() == 200 {
                let release = r.headers()["x-demo-release"].to_str().unwrap().to_string();
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(
                    body["projects"],
                    format!("http://127.0.0.1:{port}/api/v2/projects/")
                );
                return release;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing answers on 127.0.0.1:{port}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes the stack whatever happens to the test.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stack = self.0.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async { local::down(None, &stack).await })
        })
        .join()
        .unwrap()
        .unwrap();
    }
}

/// The containers of `stack`, as the engine lists them.
pub async fn stack_containers(stack: &str) -> Vec<ContainerState> {
    Engine::connect(None)
        .await
        .unwrap()
        .list(LABEL_STACK, stack)
        .await
        .unwrap()
}

/// One test's stack of the demo image: a unique name, host port `n`, removed at the end.
pub struct TestStack {
    pub name: String,
    pub port: u16,
    pub image: &'static str,
    _cleanup: Cleanup,
}

impl TestStack {
    /// The demo image built, a stack named `local-test-…` on host port `n`.
    pub async fn new(n: u16) -> Self {
        let image = demo_image().await;
        let name = services::unique("local-test");
        Self {
            _cleanup: Cleanup(name.clone()),
            name,
            port: port(n),
            image,
        }
    }

    /// A run of `text` as `version` of this stack (see [`request`]).
    pub fn request(&self, version: &str, text: String) -> StackRequest {
        request(&self.name, version, text, self.port)
    }

    /// The Antenna-like stack ([`dockerrun`]) of `version`, whose web container runs
    /// `web_command` and says it is release `version`.
    pub fn antenna(&self, version: &str, web_command: &[&str]) -> StackRequest {
        self.request(
            version,
            dockerrun(self.image, self.port, version, web_command),
        )
    }

    /// [`Self::antenna`] started as usual (`/start`).
    pub fn version(&self, version: &str) -> StackRequest {
        self.antenna(version, &["/start"])
    }

    /// The release that answers on this stack's port.
    pub async fn answering_release(&self) -> String {
        answering_release(self.port).await
    }

    /// This stack's containers.
    pub async fn containers(&self) -> Vec<ContainerState> {
        stack_containers(&self.name).await
    }
}

/// Runs the docker CLI with `args`; its output, whatever the exit status.
pub fn docker(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run the docker CLI")
}

/// Local options for a deploy of the release `latest` with the images already built (the demo
/// image is built once by [`demo_image`]).
pub fn prebuilt_latest() -> local::LocalOptions {
    local::LocalOptions {
        release: Some("latest".into()),
        skip_build: true,
        ..Default::default()
    }
}

/// Writes an executable hook `DIR/NAME` running `body` under `set -eu`.
pub fn write_hook(dir: &Path, name: &str, body: &str) {
    crate::deploy_tree::write_executable(&dir.join(name), &format!("#!/bin/sh\nset -eu\n{body}\n"));
}

/// An application `app` whose backend image is the demo's (declared built from `demo`, so
/// run with `skip_build`); no environment yet.
pub fn demo_app(app: &str) -> DeployToml {
    DeployToml::new(app).built_image("backend", DEMO_REPOSITORY, r#"context = "demo""#)
}

/// The agent binary for the bundles of these tests (a debug build: the same code as the
/// static one the pipeline builds for EB).
pub fn verify_agent() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .current_dir(&root)
                .args(["build", "-q", "-p", "checks", "--bin", "verify-agent"])
                .status()
                .unwrap();
            assert!(status.success(), "the verify agent builds");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            target.join("debug/verify-agent")
        })
        .clone()
}

/// A one-container application whose checks all run on the "instance" (here, the postdeploy
/// hook that the local target runs as EB does), against the test services: Redis at
/// `HOOK_TEST_REDIS_URL`, Celery at `AMQP_URL`, NATS with JetStream at `nats_env`.
pub fn instance_checks_app(dir: &Path, app: &str, nats_env: &str) -> Config {
    crate::deploy_tree::write_template(
        dir,
        r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
  {"name": "web", "image": "${image.backend}", "essential": true, "memory": 128, "command": ["/start"]}
]}"#,
    );
    demo_app(app)
        .environment(
            "dev",
            "target = \"local\"\ntimeouts = { verify = \"20s\" }",
        )
        .check(
            "dev",
            "kind = \"redis\"\nurl_env = \"HOOK_TEST_REDIS_URL\"\nwhere = \"instance\"",
        )
        .check(
            "dev",
            "kind = \"celery\"\nbroker_url_env = \"AMQP_URL\"\nqueues = [\"antenna\", \"jobs\", \"ml_results\"]\nwhere = \"instance\"",
        )
        .check(
            "dev",
            &format!("kind = \"nats\"\nurl_env = \"{nats_env}\"\njetstream = true\ntimeout = \"5s\"\nwhere = \"instance\""),
        )
        .load(dir)
}
