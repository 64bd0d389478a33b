//! Building Antenna's own backend image, the two supported ways, with the Antenna-shaped
//! fixture (`tests/fixtures/antenna`): this workspace vendored into Antenna's repository
//! (`context = "."`, `compose/production/django/Dockerfile`), and a deploy repository that
//! pins Antenna's source (`source = { git, rev }`, here a bare repository made by the test and
//! served over `file://`). Both run the bundle on the local target and verify it. Then each
//! bad source: a clear error naming the key, and nothing built, pushed or created.

use std::path::{Path, PathBuf};

use integration::services;
use pipeline::config::Config;
use pipeline::local::{self, LocalOptions};
use tokio::sync::OnceCell;

/// The registry's test credentials (moto's ECR token).
const USER: &str = "AWS";
const PASSWORD: &str = "123456789012-auth-token";

/// Host port `n` (0..=1) of this suite.
fn port(n: u16) -> u16 {
    services::env("ANTENNA_PORT_BASE").parse::<u16>().unwrap() + n
}

/// The demo's static binary (it plays every role of Antenna's image), built once.
async fn backend_binary() -> &'static Path {
    static BUILT: OnceCell<PathBuf> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let root = integration::workspace_root();
            let config = Config::load(&root.join("deploy.toml"), &Default::default()).unwrap();
            let written = tokio::task::spawn_blocking(move || {
                pipeline::docker::build_static_binaries(&config)
            })
            .await
            .unwrap()
            .expect("the demo's static binary builds");
            written
                .into_iter()
                .find(|p| p.ends_with("bin/demo"))
                .expect("the demo context gets bin/demo")
        })
        .await
}

/// Copies `from` into `to`, directories included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A tree shaped like Antenna's repository in `dir`: the fixture plus the backend binary
/// where its Dockerfile takes it from.
async fn antenna_tree(dir: &Path) {
    let root = integration::workspace_root();
    copy_tree(&root.join("tests/fixtures/antenna"), dir);
    let bin = dir.join("compose/production/django/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(backend_binary().await, bin.join("backend")).unwrap();
}

/// The deploy files a repository using this workspace has: `deploy.toml` building the
/// backend image with Antenna's Dockerfile from its root (of `source` when given, a git
/// source table) into a repository of a unique name, a template with Antenna's four backend
/// roles (the web one published on `port`) and this repository's postdeploy hook (Django's
/// `migrate` under its lock, in the django container). The guard removes the stack and the
/// images.
fn deploy_files(dir: &Path, name: &str, source: Option<&str>, port: u16) -> Cleanup {
    let app = services::unique(name);
    let repository = services::unique(&format!("{name}-backend"));
    let source = source.map_or(String::new(), |s| format!("source = {s}\n"));
    let images = format!(
        r#"[images.backend]
repository = "{repository}"
{source}build = {{ context = ".", dockerfile = "compose/production/django/Dockerfile" }}
"#
    );
    std::fs::write(
        dir.join("deploy.toml"),
        format!(
            r#"region = "us-west-2"
application = "{app}"

{images}
[environments.local]
target = "local"
url = "http://127.0.0.1:{port}"
host_port_offset = {offset}

[[environments.local.checks]]
kind = "http"
path = "/api/v2/"
timeout = "30s"
"#,
            offset = port - 80
        ),
    )
    .unwrap();
    let role = |name: &str, command: &str, extra: &str| {
        format!(
            r#"{{"name": "{name}", "image": "${{image.backend}}", "essential": {essential}, "memory": 128,
   "command": ["{command}"]{extra},
   "environment": [{{"name": "RELEASE", "value": "${{release}}"}}, {{"name": "DJANGO_SETTINGS_MODULE", "value": "config.settings.production"}}]}}"#,
            essential = name == "django"
        )
    };
    let containers = [
        role(
            "django",
            "/start",
            r#", "portMappings": [{"hostPort": 80, "containerPort": 5000}]"#,
        ),
        role("celeryworker", "/start-celeryworker", ""),
        role("celerybeat", "/start-celerybeat", ""),
        role("flower", "/start-flower", ""),
    ];
    std::fs::write(
        dir.join("Dockerrun.template.json"),
        format!(
            "{{\"AWSEBDockerrunVersion\": 2, \"containerDefinitions\": [\n  {}\n]}}\n",
            containers.join(",\n  ")
        ),
    )
    .unwrap();
    integration::copy_repo_files(dir, [".platform/hooks/postdeploy/01_migrate.sh"]);
    Cleanup {
        stack: format!("{app}-local"),
        repository,
    }
}

/// `git init`, commit everything, tag `tag`; the commit.
fn commit_all(dir: &Path, tag: Option<&str>) -> String {
    let git = |args: &[&str]| integration::git(dir, args);
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "tree"]);
    if let Some(t) = tag {
        git(&["tag", t]);
    }
    git(&["rev-parse", "HEAD"])
}

/// A bare repository of the Antenna-shaped tree, tagged `v1.0.0`: its `file://` URL and
/// the tagged commit.
async fn antenna_remote(dir: &Path) -> (String, String) {
    let work = dir.join("antenna");
    antenna_tree(&work).await;
    let commit = commit_all(&work, Some("v1.0.0"));
    let bare = dir.join("antenna.git");
    integration::git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    (format!("file://{}", bare.display()), commit)
}

/// The labels of a local image, or `None` when the engine has no such image.
fn image_labels(reference: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            reference,
        ])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Removes the stack and the images of `repository` whatever happens to the test.
struct Cleanup {
    stack: String,
    repository: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let stack = self.stack.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(async { local::down(None, &stack).await })
        })
        .join();
        integration::remove_local_images(&self.repository);
    }
}

/// Runs the local deploy of `dir` and checks what runs: Antenna's four roles of the built
/// image, the migration hook, the API root verified through the environment's check.
async fn deploy_and_verify(dir: &Path, port: u16) -> local::LocalDeployment {
    let config = Config::load(&dir.join("deploy.toml"), &Default::default()).unwrap();
    let done = local::deploy_local(&config, "local", &LocalOptions::default())
        .await
        .expect("the local deploy of the Antenna-shaped image works");
    let reference = done.images["backend"].clone();
    let run = done.run.as_ref().expect("not a dry run");
    let verified = run.verified.as_ref().expect("the checks ran");
    assert!(verified.passed(), "{}", verified.render_table());
    assert_eq!(
        verified.checks[0].target,
        format!("http://127.0.0.1:{port}/api/v2/")
    );
    let mut roles: Vec<(&str, &str, bool)> = run
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_str(), c.running))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            ("celerybeat", reference.as_str(), true),
            ("celeryworker", reference.as_str(), true),
            ("django", reference.as_str(), true),
            ("flower", reference.as_str(), true),
        ]
    );
    assert!(
        run.hooks.iter().any(|h| h.ends_with("01_migrate.sh")),
        "the migration hook ran: {:?}",
        run.hooks
    );
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v2/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["projects"],
        format!("http://127.0.0.1:{port}/api/v2/projects/")
    );
    done
}

/// This workspace vendored into Antenna's repository: `deploy.toml` at its root, the image
/// built from the root with Antenna's Dockerfile.
#[tokio::test]
async fn vendored_into_antenna_builds_its_dockerfile_and_runs_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("antenna");
    antenna_tree(&dir).await;
    let port = port(0);
    let cleanup = deploy_files(&dir, "antenna-vendored", None, port);
    let commit = commit_all(&dir, Some("v1.0.0"));
    let done = deploy_and_verify(&dir, port).await;
    assert_eq!(done.release, "v1.0.0");
    let reference = format!("{}:v1.0.0", cleanup.repository);
    assert_eq!(done.images["backend"], reference);
    let labels = image_labels(&reference).expect("the image is in the engine");
    assert_eq!(
        labels["org.opencontainers.image.revision"], commit,
        "{labels}"
    );
    assert!(
        !dir.join("target/sources").exists(),
        "nothing is fetched without a source"
    );
}

/// A deploy repository that pins Antenna's source: fetched over `file://` into
/// `target/sources/`, built from the fetched tree, the source's commit in the labels; a
/// second fetch reuses the cache without reaching the URL.
#[tokio::test]
async fn pinned_git_source_is_fetched_built_labelled_and_runs_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, source_commit) = antenna_remote(tmp.path()).await;
    let dir = tmp.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    let port = port(1);
    let source = format!(r#"{{ git = "{url}", rev = "v1.0.0" }}"#);
    let _cleanup = deploy_files(&dir, "antenna-gitsrc", Some(&source), port);
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    let deploy_commit = commit_all(&dir, None);
    let done = deploy_and_verify(&dir, port).await;
    assert_eq!(done.release, &deploy_commit[..12]);
    let labels = image_labels(&done.images["backend"]).expect("the image is in the engine");
    assert_eq!(
        labels["org.opencontainers.image.revision"], source_commit,
        "the source's commit, not the deploy repository's: {labels}"
    );
    assert_eq!(labels["org.opencontainers.image.source"], url.as_str());
    assert_eq!(
        labels["org.opencontainers.image.version"],
        done.release.as_str()
    );
    let tree = dir.join("target/sources/backend").join(&source_commit);
    assert!(
        tree.join("compose/production/django/Dockerfile").is_file(),
        "the commit is unpacked under target/sources"
    );
    assert!(
        !tree.join(".git").exists(),
        "the unpacked tree is the commit's files only"
    );

    // The binary with a relative `--config`: the source comes from the cache under it.
    let out = integration::xtask()
        .args(["--config", "deploy.toml", "build", "--release", "again"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "v1.0.0 is commit {source_commit}, already unpacked"
        )),
        "{stderr}"
    );

    // The cache answers without the URL: the remote gone, the tag and the commit still resolve.
    std::fs::rename(tmp.path().join("antenna.git"), tmp.path().join("gone.git")).unwrap();
    let cache = dir.join("target/sources");
    for rev in ["v1.0.0", source_commit.as_str()] {
        let spec = pipeline::config::SourceSpec {
            git: url.clone(),
            rev: rev.to_string(),
        };
        let again = pipeline::image::source::fetch(&cache, "backend", &spec)
            .unwrap_or_else(|e| panic!("{rev} from the cache: {e:#}"));
        assert!(again.reused, "{rev}");
        assert_eq!(again.pin.commit, source_commit);
        assert_eq!(again.dir, tree);
    }
}

/// The head of a `deploy.toml` that pushes to `registry` an image built from `source` (a git
/// source table) with `dockerfile`, for `application`.
fn source_image_toml(
    application: &str,
    registry: &str,
    repository: &str,
    source: &str,
    dockerfile: &str,
) -> String {
    format!(
        r#"region = "us-west-2"
application = "{application}"
registry = "{registry}"

[images.backend]
repository = "{repository}"
source = {source}
build = {{ context = ".", dockerfile = "{dockerfile}" }}
"#
    )
}

/// The registry's answer to the tag list of `repository`.
async fn registry_tags(registry: &str, repository: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{registry}/v2/{repository}/tags/list"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
}

/// The deploy repository of a bad source, the `push` it runs through the binary (with the
/// test registry and moto's ECR), and the checks that nothing was built, pushed or created.
/// Returns the binary's stderr.
async fn push_fails_before_building(source: &str, dockerfile: &str) -> String {
    let registry = services::env("REGISTRY");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    let repository = services::unique("antenna-badsrc");
    std::fs::write(
        dir.join("deploy.toml"),
        source_image_toml("antenna", &registry, &repository, source, dockerfile)
            + "\n[environments.local]\ntarget = \"local\"\n",
    )
    .unwrap();
    let release = "v1.0.0";
    let out = integration::xtask_on_moto(&dir)
        .args(["push", "--release", release, "--create-repository"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the push fails: {stderr}");
    assert!(
        image_labels(&format!("{registry}/{repository}:{release}")).is_none(),
        "nothing was built: {stderr}"
    );
    let tags = registry_tags(&registry, &repository).await;
    assert_eq!(tags.status(), 404, "nothing was pushed: {stderr}");
    let ecr = aws_sdk_ecr::Client::new(&integration::aws::sdk_config(&services::env(
        "MOTO_ENDPOINT",
    )));
    let repos = ecr
        .describe_repositories()
        .repository_names(&repository)
        .send()
        .await;
    assert!(repos.is_err(), "no ECR repository was created: {stderr}");
    stderr
}

/// [`push_fails_before_building`] from the Antenna-shaped remote at `rev`, building
/// `dockerfile`; the stderr must contain `expected(url, commit)` (the remote's URL and its
/// tagged commit).
async fn bad_build_of_the_remote(rev: &str, dockerfile: &str, expected: fn(&str, &str) -> String) {
    let tmp = tempfile::tempdir().unwrap();
    let (url, commit) = antenna_remote(tmp.path()).await;
    let source = format!(r#"{{ git = "{url}", rev = "{rev}" }}"#);
    let stderr = push_fails_before_building(&source, dockerfile).await;
    assert!(stderr.contains(&expected(&url, &commit)), "{stderr}");
}

#[tokio::test]
async fn unknown_rev_names_the_key_and_builds_nothing() {
    bad_build_of_the_remote("v9.9.9", "compose/production/django/Dockerfile", |url, _| {
        format!("images.backend.source.rev: \"v9.9.9\" is no tag, branch or commit of {url} (its latest tags: v1.0.0)")
    })
    .await;
}

#[tokio::test]
async fn missing_dockerfile_in_the_fetched_tree_names_the_key_and_builds_nothing() {
    bad_build_of_the_remote("v1.0.0", "compose/local/django/Dockerfile", |url, commit| {
        format!("images.backend.build.dockerfile: compose/local/django/Dockerfile is not in {url} at v1.0.0 (commit {commit})")
    })
    .await;
}

#[tokio::test]
async fn unreachable_url_names_the_key_and_never_shows_its_credentials() {
    let stderr = push_fails_before_building(
        r#"{ git = "http://deploy-bot:s3cr3t-t0ken@127.0.0.1:1/antenna.git", rev = "v1.0.0" }"#,
        "compose/production/django/Dockerfile",
    )
    .await;
    assert!(
        stderr.contains(
            "images.backend.source.git: cannot fetch http://***:***@127.0.0.1:1/antenna.git"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t-t0ken") && !stderr.contains("deploy-bot"),
        "{stderr}"
    );
}

/// A dry run shows the URL (credentials masked) and the rev, and fetches nothing.
#[tokio::test]
async fn dry_run_shows_the_masked_url_and_rev_and_fetches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("deploy.toml"),
        r#"region = "us-west-2"
application = "antenna"

[images.backend]
repository = "antenna-backend"
source = { git = "https://deploy-bot:s3cr3t-t0ken@git.example.invalid/org/antenna.git", rev = "v1.2.0" }
build = { context = ".", dockerfile = "compose/production/django/Dockerfile" }

[environments.local]
target = "local"
"#,
    )
    .unwrap();
    let out = integration::xtask()
        .arg("--config")
        .arg(dir.join("deploy.toml"))
        .args(["build", "--release", "v1", "--dry-run"])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("would fetch https://***:***@git.example.invalid/org/antenna.git at v1.2.0 and build antenna-backend:v1 from . in it (Dockerfile compose/production/django/Dockerfile"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cr3t-t0ken"), "{stderr}");
    assert!(
        !dir.join("target/sources").exists(),
        "a dry run fetches nothing"
    );
}

/// The pinned git source through the AWS path, with the real binary: the tree fetched from the
/// `file://` remote is built, pushed to the registry standing in for ECR (moto's ECR gives the
/// token), bundled, uploaded to moto's S3 and deployed to the EB emulator; the application
/// version's description, read back from the emulator, names the source's commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_git_source_ships_through_aws_and_the_version_names_its_commit() {
    let registry = services::env("REGISTRY");
    let tmp = tempfile::tempdir().unwrap();
    let (url, source_commit) = antenna_remote(tmp.path()).await;
    let w = integration::deploy_world::World::new().await;
    let dir = w.dir.path();
    let repository = services::unique("antenna-gitaws");
    let _images = RegistryImages(format!("{registry}/{repository}"));
    let head = source_image_toml(
        &w.application,
        &registry,
        &repository,
        &format!(r#"{{ git = "{url}", rev = "v1.0.0" }}"#),
        "compose/production/django/Dockerfile",
    );
    std::fs::write(
        dir.join("deploy.toml"),
        format!(
            r#"{head}
[environments.staging]
eb_environment = "{env}"
bucket = "{bucket}"
timeouts = {{ deploy = "60s", lock_wait = "20s", health_settle = "200ms" }}
"#,
            env = w.environment,
            bucket = w.bucket,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("Dockerrun.template.json"),
        r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
  {"name": "django", "image": "${image.backend}", "essential": true, "memory": 256, "command": ["/start"],
   "portMappings": [{"hostPort": 80, "containerPort": 5000}]}
]}
"#,
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\nbundle.zip\n").unwrap();
    let deploy_commit = commit_all(dir, None);
    let config = Config::load(&dir.join("deploy.toml"), &Default::default()).unwrap();
    w.prepare_repositories(&config).await;

    let out = w
        .xtask(&["deploy", "--env", "staging", "--release", "v1.0.0"])
        .current_dir(dir)
        .env("CI", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // The registry holds the release's tag and the source's commit as the extra tag.
    let tags: serde_json::Value = registry_tags(&registry, &repository)
        .await
        .json()
        .await
        .unwrap();
    let tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.contains(&"v1.0.0"), "{tags:?}");
    assert!(tags.contains(&source_commit.as_str()), "{tags:?}");

    // The version EB got, read back through EB's API: its description names both commits.
    let label = w.deployed_labels().pop().expect("an UpdateEnvironment");
    assert!(label.starts_with("v1.0.0-"), "{label}");
    let versions = w
        .clients
        .eb
        .describe_application_versions()
        .application_name(&w.application)
        .version_labels(&label)
        .send()
        .await
        .unwrap();
    let description = versions.application_versions()[0]
        .description()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        description,
        format!("v1.0.0 ({deploy_commit}) backend@{source_commit}"),
        "this repository's commit, then the source's"
    );
    assert_eq!(
        w.emu.environment(&w.environment).version.as_deref(),
        Some(label.as_str())
    );
}

/// Removes the local images of a registry repository whatever happens to the test.
struct RegistryImages(String);

impl Drop for RegistryImages {
    fn drop(&mut self) {
        integration::remove_local_images(&self.0);
    }
}
