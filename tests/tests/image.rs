//! The build and push stages against the real Docker Engine, a Debian docker-registry with
//! htpasswd (standing in for ECR's registry endpoint) and moto (ECR's API).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration::deploy_tree::DeployToml;
use integration::services;
use pipeline::aws::Aws;
use pipeline::config::Config;
use pipeline::docker::{Engine, OutputMode, Retry};
use pipeline::image::{self, ImageRequest, Outcome};
use pipeline::release::Release;

const USER: &str = "AWS";
const PASSWORD: &str = "123456789012-auth-token";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/image")
}

/// An AWS configuration pointed at moto, without touching the process environment.
async fn moto() -> Aws {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-west-2"))
        .endpoint_url(services::env("MOTO_ENDPOINT"))
        .credentials_provider(aws_sdk_ecr::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .http_client(http)
        .load()
        .await;
    Aws {
        sdk,
        custom_endpoint: true,
    }
}

fn random_commit() -> String {
    (0..40)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap())
        .collect()
}

/// A configuration in a temporary directory building the fixture into `repository`, with
/// `extra` (tables of their own) after its image.
fn config(dir: &Path, registry: &str, repository: &str, extra: &str) -> Config {
    DeployToml::new("antenna")
        .raw(&format!("registry = \"{registry}\"\n"))
        .built_image(
            "backend",
            repository,
            &format!(
                r#"context = "{ctx}", dockerfile = "{df}", target = "final", args = {{ GREETING = "hello" }}"#,
                ctx = fixture().join("context").display(),
                df = fixture().join("Dockerfile").display(),
            ),
        )
        .raw(extra)
        .environment("local", "target = \"local\"")
        .load(dir)
}

/// A configuration in `dir` with one image, `repository`, built from `context` (relative to
/// `dir`), and no registry.
fn backend_only(dir: &Path, repository: &str, context: &str) -> Config {
    DeployToml::new("a")
        .built_image("backend", repository, &format!("context = \"{context}\""))
        .environment("local", "target = \"local\"")
        .load(dir)
}

/// A build-only request (nothing pushed) of `release` at `commit`.
fn build_request(config: Config, release: &str, commit: &str) -> ImageRequest {
    ImageRequest::new(config, Release::fixed(release, commit)).with_output(OutputMode::Plain)
}

/// The error of a run that must fail, with its causes.
async fn failure(req: &ImageRequest, aws: Option<&Aws>) -> String {
    format!("{:#}", image::run(req, aws).await.unwrap_err())
}

/// The error of a push of `release` (from a fresh commit) to moto's ECR that must fail.
async fn push_failure(config: Config, release: &str) -> String {
    let req = request(config, Release::fixed(release, &random_commit()));
    failure(&req, Some(&moto().await)).await
}

/// Builds and pushes `release` at `commit` to moto's ECR.
async fn push(
    config: &Config,
    release: &str,
    commit: &str,
    aws: &Aws,
) -> anyhow::Result<image::ImageRun> {
    image::run(
        &request(config.clone(), Release::fixed(release, commit)),
        Some(aws),
    )
    .await
}

fn request(config: Config, release: Release) -> ImageRequest {
    ImageRequest::new(config, release)
        .with_push(true)
        .with_create_repository(true)
        .with_source(Some("https://github.com/RolnickLab/antenna".into()))
        .with_output(OutputMode::Plain)
        .with_retry(Retry {
            attempts: 3,
            base: Duration::from_millis(100),
        })
}

/// GET on the registry's HTTP API with the test credentials.
async fn registry_get(path: &str, accept: &str) -> reqwest::Response {
    let url = format!("http://{}{path}", services::env("REGISTRY"));
    let resp = reqwest::Client::new()
        .get(&url)
        .basic_auth(USER, Some(PASSWORD))
        .header("Accept", accept)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp
}

async fn registry_json(path: &str, accept: &str) -> serde_json::Value {
    registry_get(path, accept).await.json().await.unwrap()
}

/// Blob uploads the registry logged for `repository`.
fn uploads(repository: &str) -> usize {
    let log = std::fs::read_to_string(services::env("REGISTRY_LOG")).unwrap();
    let needle = format!("POST /v2/{repository}/blobs/uploads/");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// Removes every local tag of `repository` (`host/name`) when dropped, also when the test
/// fails: only images this test built carry its unique name.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        integration::remove_local_images(&self.0);
    }
}

#[tokio::test]
async fn build_push_read_back_then_skip() {
    let dir = tempfile::tempdir().unwrap();
    let registry = services::env("REGISTRY");
    let repo = services::unique("it-backend");
    let _untag = Untag(format!("{registry}/{repo}"));
    let commit = random_commit();
    let release = services::unique("v1");
    let cfg = config(dir.path(), &registry, &repo, "");
    let aws = moto().await;

    let run = push(&cfg, &release, &commit, &aws).await.unwrap();
    let reference = format!("{registry}/{repo}:{release}");
    let commit_ref = format!("{registry}/{repo}:{commit}");
    let report = &run.images[0];
    assert_eq!(report.outcome, Outcome::Pushed, "{}", report.message);
    assert_eq!(report.reference, reference);
    assert_eq!(report.tags, [release.clone(), commit.clone()]);
    let digest = report.digest.clone().expect("a digest");
    assert!(digest.starts_with("sha256:"), "{digest}");
    // Two COPY layers; another repository may hold the same blobs already (mounted, not sent).
    assert_eq!(
        report.layers_pushed + report.layers_existing,
        2,
        "two COPY layers"
    );
    if report.layers_existing == 0 {
        assert!(report.bytes_sent > 0);
    }
    assert!(
        report
            .message
            .starts_with(&format!("pushed {reference} ({digest};")),
        "{}",
        report.message
    );
    // Both tags point at the built image in the engine too.
    let engine = Engine::connect(None).await.unwrap();
    let id = report.image_id.clone().unwrap();
    assert_eq!(
        engine.image_id(&reference).await.unwrap().as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        engine.image_id(&commit_ref).await.unwrap().as_deref(),
        Some(id.as_str())
    );
    let ctx = report.context.unwrap();
    assert_eq!(
        ctx.excluded, 5,
        "NOTES.md, app/cache, docs/wip.draft, logs, secrets.env"
    );

    // Tags, manifest and config, read back from the registry's HTTP API.
    let tags = registry_json(&format!("/v2/{repo}/tags/list"), "application/json").await;
    let tags: BTreeSet<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, BTreeSet::from([release.as_str(), commit.as_str()]));
    let accept = "application/vnd.docker.distribution.manifest.v2+json";
    let by_release = registry_get(&format!("/v2/{repo}/manifests/{release}"), accept).await;
    assert_eq!(
        by_release.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        digest
    );
    let manifest: serde_json::Value = by_release.json().await.unwrap();
    let by_commit = registry_get(&format!("/v2/{repo}/manifests/{commit}"), accept).await;
    assert_eq!(
        by_commit.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        digest
    );
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = registry_json(&format!("/v2/{repo}/blobs/{config_digest}"), "*/*").await;
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());
    assert_eq!(labels["org.opencontainers.image.version"], release.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/RolnickLab/antenna"
    );
    assert!(labels["org.opencontainers.image.created"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(config["architecture"], "amd64");
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"GREETING=hello"),
        "build args reach the build: {env:?}"
    );

    // Layers: what the .dockerignore let through, nothing else; the `unused` stage is absent.
    let mut files = BTreeSet::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let blob = registry_get(&format!("/v2/{repo}/blobs/{digest}"), "*/*")
            .await
            .bytes()
            .await
            .unwrap();
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                files.insert(entry.path().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    assert_eq!(
        files,
        BTreeSet::from(
            [
                "app/config.json",
                "app/main.txt",
                "docs/README.md",
                "docs/guide.txt"
            ]
            .map(String::from)
        )
    );

    // ECR's API knows the release, and the repository was created with immutable tags.
    let ecr = aws.ecr();
    let repos = ecr
        .describe_repositories()
        .repository_names(&repo)
        .send()
        .await
        .unwrap();
    assert_eq!(
        repos.repositories()[0].image_tag_mutability(),
        Some(&aws_sdk_ecr::types::ImageTagMutability::Immutable)
    );
    let found = image::ecr::find_tag(&ecr, &repo, &release).await.unwrap();
    assert!(found.is_some(), "release tag recorded in ECR");

    // Second run: skipped before building, no blob uploaded.
    let before = uploads(&repo);
    assert!(
        before >= 2,
        "the first push uploaded blobs ({before} logged)"
    );
    let again = push(&cfg, &release, &commit, &aws).await.unwrap();
    let report = &again.images[0];
    assert_eq!(report.outcome, Outcome::Skipped);
    assert_eq!(
        report.message,
        format!("{reference} already exists with revision {commit}: build and push skipped")
    );
    assert_eq!(report.bytes_sent, 0);
    assert_eq!(uploads(&repo), before, "no blob upload on the second run");

    // Same release name, another commit: refused, naming both revisions.
    let other = random_commit();
    let msg = format!(
        "{:#}",
        push(&cfg, &release, &other, &aws).await.unwrap_err()
    );
    assert!(
        msg.starts_with(&format!(
            "the tag {release} already exists in ECR repository {repo} with revision {commit}"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("not {other}")) && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(uploads(&repo), before);

    // --force pushes over it (this registry has no tag immutability); then it skips again.
    let forced = image::run(
        &request(cfg.clone(), Release::fixed(&release, &other)).with_force(true),
        Some(&aws),
    )
    .await
    .unwrap();
    assert_eq!(forced.images[0].outcome, Outcome::Pushed);
    let m = registry_json(&format!("/v2/{repo}/manifests/{release}"), accept).await;
    let config_digest = m["config"]["digest"].as_str().unwrap();
    let config = registry_json(&format!("/v2/{repo}/blobs/{config_digest}"), "*/*").await;
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        other.as_str()
    );
    let again = push(&cfg, &release, &other, &aws).await.unwrap();
    assert_eq!(again.images[0].outcome, Outcome::Skipped);
}

#[tokio::test]
async fn build_only_tags_locally_and_contacts_no_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = services::env("REGISTRY");
    let repo = services::unique("it-local");
    let _untag = Untag(format!("{registry}/{repo}"));
    let commit = random_commit();
    let cfg = config(dir.path(), &registry, &repo, "");
    let run = image::run(&build_request(cfg, "v3", &commit), None)
        .await
        .unwrap();
    let report = &run.images[0];
    assert_eq!(report.outcome, Outcome::Built);
    assert_eq!(report.reference, format!("{registry}/{repo}:v3"));
    assert!(
        report
            .message
            .starts_with(&format!("built {registry}/{repo}:v3 (")),
        "{}",
        report.message
    );
    assert!(
        report
            .message
            .ends_with("context 6 files, 8.0 KiB sent, 5 left out by .dockerignore)"),
        "{}",
        report.message
    );
    let engine = Engine::connect(None).await.unwrap();
    let id = report.image_id.clone().unwrap();
    assert_eq!(
        engine
            .image_id(&format!("{registry}/{repo}:{commit}"))
            .await
            .unwrap(),
        Some(id)
    );
    assert_eq!(uploads(&repo), 0, "a build pushes nothing");
}

#[tokio::test]
async fn broken_dockerfile_fails_naming_the_step_and_tags_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(services::env("BUSYBOX"), ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about to fail; exit 3\"]\nCOPY Dockerfile /\n",
    )
    .unwrap();
    let repo = services::unique("it-broken");
    let cfg = backend_only(dir.path(), &repo, "ctx");
    let req = build_request(cfg, "v0", &random_commit());
    let msg = failure(&req, None).await;
    assert!(
        msg.starts_with(&format!(
            "cannot build image backend ({repo}:v0): the image build failed at `Step 3/7 : RUN"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("of {}", ctx.join("Dockerfile").display())),
        "{msg}"
    );
    assert!(
        msg.contains("returned a non-zero code: 3"),
        "the engine's message: {msg}"
    );
    assert!(msg.contains("nothing was tagged or pushed"), "{msg}");
    let engine = Engine::connect(None).await.unwrap();
    assert_eq!(
        engine.image_id(&format!("{repo}:v0")).await.unwrap(),
        None,
        "nothing tagged"
    );

    // A Dockerfile the engine cannot parse fails before the first step, with its message.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPPY busybox /bin/busybox\n",
    )
    .unwrap();
    let msg = failure(&req, None).await;
    assert!(
        msg.contains("the image build failed before the first step of "),
        "{msg}"
    );
    assert!(msg.contains("unknown instruction: COPPY"), "{msg}");
    assert_eq!(engine.image_id(&format!("{repo}:v0")).await.unwrap(), None);
}

#[tokio::test]
async fn missing_context_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = backend_only(dir.path(), "x", "no-such-dir");
    let msg = failure(&build_request(cfg, "v0", "c"), None).await;
    assert!(
        msg.starts_with("cannot build image backend: build context "),
        "{msg}"
    );
    assert!(msg.contains("no-such-dir does not exist or cannot be read: check `build.context` in the configuration"), "{msg}");
}

#[tokio::test]
async fn wrong_registry_password_is_not_retried_and_names_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let other = services::env("REGISTRY_OTHER");
    let repo = services::unique("it-auth");
    let _untag = Untag(format!("{other}/{repo}"));
    let release = services::unique("v1");
    let cfg = config(dir.path(), &other, &repo, "");
    let started = std::time::Instant::now();
    let msg = push_failure(cfg, &release).await;
    assert!(
        msg.starts_with(&format!(
            "the registry {other} refused the credentials of user \"AWS\" (from ECR GetAuthorizationToken) for pushing {other}/{repo}:{release}"
        )),
        "{msg}"
    );
    assert!(!msg.contains(PASSWORD), "the token never shows: {msg}");
    assert!(
        !msg.contains("attempts"),
        "auth failures are not retried: {msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn registry_down_retries_then_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("127.0.0.1:{port}");
    let repo = services::unique("it-down");
    let _untag = Untag(format!("{down}/{repo}"));
    let release = services::unique("v1");
    let cfg = config(dir.path(), &down, &repo, "");
    let msg = push_failure(cfg, &release).await;
    assert!(
        msg.starts_with(&format!(
            "pushing {down}/{repo}:{release} to {down} failed after 3 attempts: "
        )),
        "{msg}"
    );
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(msg.contains("check that the registry is up"), "{msg}");
}

#[tokio::test]
async fn unreachable_engine_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "127.0.0.1:1",
        &services::unique("it-engine"),
        "",
    );
    let host = format!("unix://{}/dead.sock", dir.path().display());
    let req = build_request(cfg, "v0", "c").with_docker_host(Some(host.clone()));
    let msg = failure(&req, None).await;
    assert!(
        msg.starts_with(&format!("cannot reach the Docker Engine at {host}: ")),
        "{msg}"
    );
    assert!(msg.contains("point DOCKER_HOST at a running one"), "{msg}");
}

#[tokio::test]
async fn missing_external_image_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let registry = services::env("REGISTRY");
    let aws = moto().await;
    let ecr = aws.ecr();
    // One external image that exists in ECR's API, one that does not.
    let present = services::unique("it-awscli");
    ecr.create_repository()
        .repository_name(&present)
        .send()
        .await
        .unwrap();
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;
    ecr.put_image()
        .repository_name(&present)
        .image_tag("2.17.0")
        .image_manifest(manifest)
        .send()
        .await
        .unwrap();
    let absent = services::unique("it-ml");
    let extra = format!(
        "[images.awscli]\nrepository = \"{present}\"\ntag = \"2.17.0\"\n[images.ml]\nrepository = \"{absent}\"\ntag = \"v0.1.0\"\n"
    );
    let cfg = config(dir.path(), &registry, &services::unique("it-ext"), &extra);
    // A dead engine: the external check must fail first.
    let dead = format!("unix://{}/dead.sock", dir.path().display());
    let req =
        request(cfg, Release::fixed("v1", &random_commit())).with_docker_host(Some(dead.clone()));
    let msg = failure(&req, Some(&aws)).await;
    assert_eq!(
        msg,
        format!("external image ml ({absent}:v0.1.0) is not in the account's ECR: push it there, or fix `images.ml` in the configuration")
    );

    // On another registry: HEAD on the manifest through its HTTP API.
    let extra = format!("[images.awscli]\nrepository = \"{present}\"\ntag = \"2.17.0\"\n[images.ml]\nrepository = \"{registry}/{absent}\"\ntag = \"v0.1.0\"\n");
    let cfg = config(dir.path(), &registry, &services::unique("it-ext"), &extra);
    let req =
        request(cfg, Release::fixed("v1", &random_commit())).with_docker_host(Some(dead.clone()));
    let msg = failure(&req, Some(&aws)).await;
    assert_eq!(
        msg,
        format!("external image ml ({registry}/{absent}:v0.1.0) does not exist in the registry {registry}: push it, or fix `images.ml` in the configuration")
    );

    // Dry run with both present: the plan, nothing built (the engine is not even asked).
    let extra = format!("[images.awscli]\nrepository = \"{present}\"\ntag = \"2.17.0\"\n");
    let new_repo = services::unique("it-dry");
    let cfg = config(dir.path(), &registry, &new_repo, &extra);
    let req = request(cfg, Release::fixed("v1", &random_commit()))
        .with_docker_host(Some(dead))
        .with_dry_run(true);
    let run = image::run(&req, Some(&aws)).await.unwrap();
    assert_eq!(run.external.len(), 1);
    assert_eq!(run.external[0].found_in, "ECR");
    assert_eq!(run.images[0].outcome, Outcome::Planned);
    assert!(
        run.images[0]
            .message
            .starts_with(&format!("would build {registry}/{new_repo}:v1 from ")),
        "{}",
        run.images[0].message
    );
    let repos = ecr
        .describe_repositories()
        .repository_names(&new_repo)
        .send()
        .await;
    assert!(repos.is_err(), "a dry run creates no repository");
}

/// A git work tree holding the configuration, so that the binary detects a real commit.
fn git_tree(registry: &str, repository: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path(), registry, repository, "");
    let git = |args: &[&str]| integration::git(dir.path(), args);
    git(&["init", "-q"]);
    git(&["add", "deploy.toml"]);
    git(&["commit", "-q", "-m", "config"]);
    let commit = git(&["rev-parse", "HEAD"]);
    (dir, commit)
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    integration::xtask_on_moto(dir).args(args).output().unwrap()
}

#[tokio::test]
async fn cli_push_prints_the_report_then_skips() {
    let registry = services::env("REGISTRY");
    let repo = services::unique("it-cli");
    let _untag = Untag(format!("{registry}/{repo}"));
    let release = services::unique("v2");
    let (dir, commit) = git_tree(&registry, &repo);
    let args = [
        "--json",
        "push",
        "--release",
        &release,
        "--create-repository",
    ];
    let out = cli(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "the token never shows");
    assert!(
        stderr.contains(" build: Step 1/"),
        "build output streamed line by line: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["release"], release.as_str());
    assert_eq!(report["commit"], commit.as_str());
    assert_eq!(report["registry"], registry.as_str());
    let image = &report["images"][0];
    assert_eq!(image["outcome"], "pushed");
    assert_eq!(image["reference"], format!("{registry}/{repo}:{release}"));
    assert!(image["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(image["duration_ms"].as_u64().is_some());

    let out = cli(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"][0]["outcome"], "skipped");
    assert!(
        stderr.contains(&format!("{registry}/{repo}:{release} already exists with revision {commit}: build and push skipped")),
        "{stderr}"
    );
}

/// `DEPLOY_LOG=trace` turns on every log the HTTP stacks have, which at trace level print
/// whole response bodies: ECR's token (base64 `AWS:<password>`) must still never show.
#[tokio::test]
async fn trace_logging_never_shows_the_ecr_token() {
    use base64::Engine as _;
    let registry = services::env("REGISTRY");
    let repo = services::unique("it-trace");
    let _untag = Untag(format!("{registry}/{repo}"));
    let release = services::unique("v3");
    let (dir, _) = git_tree(&registry, &repo);
    // The token moto hands out, read independently.
    let data = moto()
        .await
        .ecr()
        .get_authorization_token()
        .send()
        .await
        .unwrap();
    let token = data.authorization_data()[0]
        .authorization_token()
        .unwrap()
        .to_string();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap(),
    )
    .unwrap();
    let password = decoded.strip_prefix("AWS:").unwrap().to_string();
    assert_eq!(password, PASSWORD);

    let out = integration::xtask()
        .arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(["push", "--release", &release, "--create-repository"])
        .env("AWS_ENDPOINT_URL", services::env("MOTO_ENDPOINT"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-west-2")
        .env("CI", "1")
        .env("DEPLOY_LOG", "trace")
        .env_remove("DEPLOY_REGISTRY")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    // The SDK's own lines about the call are there (debug is kept); only what it would log
    // at trace (whole bodies) is held back.
    assert!(
        all.lines()
            .any(|l| l.starts_with("DEBUG ECR.GetAuthorizationToken")),
        "{all}"
    );
    for secret in [&token, &password] {
        assert!(
            !all.contains(secret.as_str()),
            "{secret} is printed at trace level"
        );
    }
}

#[test]
fn cli_exits_non_zero_when_the_engine_is_unreachable() {
    let (dir, _) = git_tree("127.0.0.1:1", "it-cli-dead");
    let host = format!("unix://{}/dead.sock", dir.path().display());
    let out = integration::xtask()
        .arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(["build", "--release", "v1"])
        .env("DOCKER_HOST", &host)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: cannot reach the Docker Engine at {host}: "
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn expired_ecr_token_is_refused_without_a_registry_override() {
    let dir = tempfile::tempdir().unwrap();
    let repo = services::unique("it-expired");
    let cfg = backend_only(dir.path(), &repo, "ctx");
    // moto's token expired in 2015; real ECR's lasts 12 hours.
    let msg = push_failure(cfg, "v1").await;
    assert!(
        msg.starts_with("ECR returned an authorization token that expired at 2015-"),
        "{msg}"
    );
    assert!(
        msg.ends_with("check the machine's clock and the AWS endpoint"),
        "{msg}"
    );
}
