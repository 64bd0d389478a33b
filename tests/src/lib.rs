//! Support for the integration tests: addresses of the test services started by
//! `tests/services/up.sh` (through `cargo xtask test`), and the test-only EB emulator.

pub mod services {
    /// The value of a variable that `tests/services/up.sh` exports, or a panic that says how
    /// to start the services.
    pub fn env(key: &str) -> String {
        std::env::var(key).unwrap_or_else(|_| {
            panic!(
                "{key} is not set: the integration tests need the test services; run `cargo xtask test`, \
                 or `bash tests/services/up.sh` and export the variables of target/test-services/env"
            )
        })
    }

    /// A short random suffix so that concurrent tests never share a name.
    pub fn unique(prefix: &str) -> String {
        format!("{prefix}-{:08x}", fastrand::u32(..))
    }
}

pub mod deploy_tree;
pub mod deploy_world;
pub mod eb_emulator;
pub mod github_api;
pub mod iam_world;
pub mod local_world;
pub mod migrate_world;

/// AWS clients for tests, built explicitly (never from the process environment, since tests
/// run in parallel threads): static test credentials, plain HTTP to loopback.
pub mod aws {
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};

    pub const REGION: &str = "us-west-2";

    /// An SDK configuration pointed at `endpoint`.
    pub fn sdk_config(endpoint: &str) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "tests",
            )))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build()
    }

    /// An S3 client for moto (path-style addressing).
    pub fn s3(moto_endpoint: &str) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&sdk_config(moto_endpoint))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Creates `bucket` in [`REGION`] (moto wants the location constraint outside us-east-1).
    pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        s3.create_bucket()
            .bucket(bucket)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(REGION))
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot create the S3 bucket {bucket} in moto: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }
}

/// Runs `git ARGS` in `dir` as a fixed author, and returns its trimmed stdout; a failure
/// panics with git's stderr.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("cannot run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("git printed UTF-8")
        .trim()
        .to_string()
}

/// Removes every local tag of `repository` (`[host/]name`) with the docker CLI; for test
/// guards, so errors are ignored.
pub fn remove_local_images(repository: &str) {
    let format = "{{.Repository}}:{{.Tag}}";
    let Ok(out) = std::process::Command::new("docker")
        .args(["image", "ls", repository, "--format", format])
        .output()
    else {
        return;
    };
    let refs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if !refs.is_empty() {
        let _ = std::process::Command::new("docker")
            .arg("rmi")
            .args(&refs)
            .output();
    }
}

/// The repository's deploy inputs (relative to the root), as committed.
pub const DEPLOY_INPUTS: [&str; 4] = [
    "deploy.toml",
    "Dockerrun.template.json",
    ".ebextensions/00_setup.config",
    ".platform/hooks/postdeploy/01_migrate.sh",
];

/// Copies `files` (relative to the repository's root) into `dir`, in that order.
pub fn copy_repo_files<'a>(dir: &std::path::Path, files: impl IntoIterator<Item = &'a str>) {
    let root = workspace_root();
    for rel in files {
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().expect("a file has a parent")).unwrap();
        std::fs::copy(root.join(rel), &to).unwrap();
    }
}

/// The workspace's root directory.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `xtask` binary: `XTASK_BIN` (set by `cargo xtask test` to itself), else
/// `target/debug/xtask`, rebuilt first when missing or older than the sources.
pub fn xtask_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("XTASK_BIN") {
        Some(p) => std::path::PathBuf::from(p),
        None => build_xtask(),
    })
    .clone()
}

/// A command running [`xtask_bin`], without the deploy variables of the caller's environment.
pub fn xtask() -> std::process::Command {
    let mut cmd = std::process::Command::new(xtask_bin());
    cmd.env_remove("DEPLOY_CONFIG")
        .env_remove("DEPLOY_ENV")
        .env_remove("DEPLOY_RELEASE")
        .env("NO_COLOR", "1");
    cmd
}

/// [`xtask`] with `--config DIR/deploy.toml`, run in `dir`, with AWS pointed at moto
/// (static test credentials) and no registry override from the caller's environment.
pub fn xtask_on_moto(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = xtask();
    cmd.arg("--config")
        .arg(dir.join("deploy.toml"))
        .env("AWS_ENDPOINT_URL", services::env("MOTO_ENDPOINT"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-west-2")
        .env("CI", "1")
        .env_remove("DEPLOY_REGISTRY")
        .current_dir(dir);
    cmd
}

/// `target/debug/xtask`, rebuilt when missing or older than the sources, with cargo's
/// variables of this test process removed so that the build is the same as `cargo xtask`'s.
fn build_xtask() -> std::path::PathBuf {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug/xtask");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_source = ["pipeline/src", "xtask/src"]
        .iter()
        .flat_map(|d| files_under(&root.join(d)))
        .filter_map(|p| modified(&p))
        .max();
    let fresh = matches!((modified(&bin), newest_source), (Some(b), Some(s)) if b >= s);
    if !fresh {
        let mut cmd =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--quiet", "--package", "xtask"])
            .current_dir(&root);
        for (k, _) in std::env::vars() {
            if (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
                || k.starts_with("RUST")
            {
                cmd.env_remove(k);
            }
        }
        let status = cmd.status().expect("cannot run cargo build");
        assert!(status.success(), "cargo build --package xtask failed");
    }
    bin
}

/// Every file under `dir`, recursively (links not followed); none when `dir` does not exist.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

/// A finished command's stdout then stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A small executable to pass as the verify agent (`DEPLOY_VERIFY_AGENT`), written under
/// `dir`: for tests whose environments have instance checks but which are about something
/// else than the agent (the real one is a release build, minutes when cold).
pub fn stand_in_agent(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("stand-in-verify-agent");
    if !path.exists() {
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
    }
    path
}
