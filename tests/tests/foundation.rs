//! Configuration, rendering, lint and the reproducible bundle, through the library and through
//! the real `xtask` binary. No AWS, no Docker.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use integration::{workspace_root, xtask};
use pipeline::bundle::{make_bundle, BundleRequest};
use pipeline::config::{Config, Overrides};
use pipeline::release::Release;
use pipeline::template::{render_file, RenderContext};

/// The files the bundle is made of, as committed.
const INPUTS: [&str; 4] = integration::DEPLOY_INPUTS;

/// A copy of the repository's deploy inputs in a fresh directory, files written in `order`.
fn copy_tree(order: impl IntoIterator<Item = &'static str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    integration::copy_repo_files(dir.path(), order);
    dir
}

fn antenna_tree() -> tempfile::TempDir {
    copy_tree(INPUTS)
}

fn release() -> Release {
    Release::fixed("v1.2.3", "0123456789abcdef0123456789abcdef01234567")
}

fn load(dir: &Path) -> Config {
    let overrides = Overrides {
        account: Some("123456789012".into()),
        ..Default::default()
    };
    Config::load(&dir.join("deploy.toml"), &overrides).unwrap()
}

#[test]
fn antenna_renders_for_staging() {
    let config = load(&workspace_root());
    let env = config.environment("staging").unwrap();
    let ctx = RenderContext::for_environment(&config, "staging", env, &release(), None);
    let rendered = render_file(&config, &ctx).unwrap();
    insta::assert_snapshot!("antenna_staging_dockerrun", rendered.json);
    // The real topology: django is essential and maps 80 → 5000; flower 5555; ML backends.
    let d = &rendered.dockerrun;
    let names: Vec<_> = d.names().collect();
    assert_eq!(
        names,
        [
            "django",
            "celeryworker",
            "celerybeat",
            "flower",
            "awscli",
            "ml-backend-minimal",
            "ml-backend-example"
        ]
    );
    let django = &d.container_definitions[0];
    assert!(django.is_essential());
    assert_eq!(django.port_mappings[0].host_port, Some(80));
    assert_eq!(django.port_mappings[0].container_port, Some(5000));
}

#[test]
fn antenna_inputs_lint_clean_in_every_environment() {
    let config = load(&workspace_root());
    let inputs = pipeline::bundle::collect_inputs(&config).unwrap();
    for (name, env) in &config.environments {
        let ctx = RenderContext::for_environment(&config, name, env, &release(), None);
        let (rendered, report) =
            pipeline::bundle::lint_inputs(&config, env, &ctx, &inputs).unwrap();
        assert!(rendered.is_some(), "{name}");
        assert_eq!(report.findings, vec![], "{name}: {}", report.to_text());
    }
}

#[test]
fn lint_report_lists_every_problem() {
    let dir = antenna_tree();
    let t = dir.path().join("Dockerrun.template.json");
    let text = std::fs::read_to_string(&t)
        .unwrap()
        .replace("\"memoryReservation\": 32,\n      \"memory\": 128", "\"memory\": 0")
        .replace("\"hostPort\": 2003", "\"hostPort\": 80")
        .replace("\"links\": [\"ml-backend-minimal\", \"ml-backend-example\"],\n      \"environment\": [\n        { \"name\": \"USE_DOCKER\", \"value\": \"yes\" },\n        { \"name\": \"DJANGO_SETTINGS_MODULE\", \"value\": \"${var.DJANGO_SETTINGS_MODULE}\" },\n        { \"name\": \"DEFAULT_PROCESSING_SERVICE_ENDPOINT\", \"value\": \"http://ml-backend-minimal:2000\" },\n        { \"name\": \"CELERY_QUEUES\"", "\"links\": [\"ml-backend-minimal\", \"nginx\"],\n      \"environment\": [\n        { \"name\": \"DJANGO_SECRET_KEY\", \"value\": \"hunter2\" },\n        { \"name\": \"DJANGO_SETTINGS_MODULE\", \"value\": \"${var.DJANGO_SETTINGS_MODULE}\" },\n        { \"name\": \"DEFAULT_PROCESSING_SERVICE_ENDPOINT\", \"value\": \"http://ml-backend-minimal:2000\" },\n        { \"name\": \"CELERY_QUEUES\"");
    std::fs::write(&t, text).unwrap();
    std::fs::write(
        dir.path().join(".ebextensions/01_migrate.config"),
        "container_commands:\n  01_migrate:\n    command: docker exec $(docker ps -q | head -1) python manage.py migrate --noinput || true\n    leader_only: true\n",
    )
    .unwrap();
    let out = run(&dir, &["lint", "--env", "staging"]);
    assert!(!out.status.success());
    let stderr = stderr(&out, dir.path());
    insta::assert_snapshot!("lint_report", stderr);
}

#[test]
fn bundle_is_byte_for_byte_reproducible() {
    let a = antenna_tree();
    let mut reversed = INPUTS;
    reversed.reverse();
    let b = copy_tree(reversed);
    // Other modification times on every file of the second copy.
    for rel in INPUTS {
        let f = std::fs::File::options()
            .write(true)
            .open(b.path().join(rel))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
    }
    let bundle = |dir: &Path| {
        let config = load(dir);
        make_bundle(&BundleRequest::new(&config, "staging", release())).unwrap()
    };
    let first = bundle(a.path());
    let again = bundle(a.path());
    let other = bundle(b.path());
    assert_eq!(first.sha256, again.sha256);
    assert_eq!(first.sha256, other.sha256);
    let on_disk = std::fs::read(&first.path).unwrap();
    assert_eq!(on_disk, std::fs::read(&other.path).unwrap());
    assert_eq!(on_disk, first.bytes);
    assert_eq!(
        first.files,
        [
            "Dockerrun.aws.json",
            ".ebextensions/00_setup.config",
            ".platform/hooks/postdeploy/01_migrate.sh",
            // Staging's instance checks: the verify agent, its hook and check list.
            ".platform/hooks/postdeploy/90_verify.sh",
            ".platform/verify/checks.json",
            ".platform/verify/verify-agent"
        ]
    );
    assert_eq!(
        first.version_label,
        format!("v1.2.3-{}", &first.sha256[..8])
    );

    // Entries: fixed date, normalised modes, the hooks and the agent stay executable.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(on_disk)).unwrap();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let expected = if name.ends_with(".sh") || name == pipeline::verify::agent::AGENT_ENTRY {
            0o100755
        } else {
            0o100644
        };
        assert_eq!(entry.unix_mode(), Some(expected), "{name}");
        let t = entry.last_modified().unwrap();
        assert_eq!(
            (t.year(), t.month(), t.day(), t.hour()),
            (1980, 1, 1, 0),
            "{name}"
        );
    }
}

#[test]
fn ebignore_excludes_files_with_gitignore_semantics() {
    let dir = antenna_tree();
    std::fs::write(dir.path().join(".ebextensions/notes.md"), "draft").unwrap();
    std::fs::create_dir_all(dir.path().join(".platform/scratch")).unwrap();
    std::fs::write(dir.path().join(".platform/scratch/big.bin"), "x").unwrap();
    std::fs::write(dir.path().join(".ebignore"), "*.md\n.platform/scratch/\n").unwrap();
    let config = load(dir.path());
    let b =
        make_bundle(&BundleRequest::new(&config, "staging", release()).with_dry_run(true)).unwrap();
    assert_eq!(
        b.files,
        [
            "Dockerrun.aws.json",
            ".ebextensions/00_setup.config",
            ".platform/hooks/postdeploy/01_migrate.sh",
            // Staging's instance checks: the verify agent, its hook and check list.
            ".platform/hooks/postdeploy/90_verify.sh",
            ".platform/verify/checks.json",
            ".platform/verify/verify-agent"
        ]
    );
    assert!(!b.written);
    assert!(!b.path.exists(), "a dry run writes nothing");
}

#[test]
fn bundle_over_the_size_limit_writes_nothing() {
    let dir = antenna_tree();
    let config = load(dir.path());
    let mut req = BundleRequest::new(&config, "staging", release());
    req.max_size = 1000;
    let err = make_bundle(&req).unwrap_err().to_string();
    assert!(err.starts_with("the bundle for staging would be "), "{err}");
    assert!(
        err.contains("over Elastic Beanstalk's limit of 1000 bytes; nothing was written"),
        "{err}"
    );
    assert!(!req.out_dir().join("deploy.zip").exists());
    assert!(!req.out_dir().exists());
}

#[test]
fn cli_bundle_writes_zip_and_prints_json() {
    let dir = antenna_tree();
    let out = run(&dir, &["--json", "bundle", "--env", "staging"]);
    assert!(out.status.success(), "{}", stderr(&out, dir.path()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = PathBuf::from(v["path"].as_str().unwrap());
    assert!(path.ends_with("target/deploy/staging/deploy.zip"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(v["size"], bytes.len());
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert!(v["version_label"].as_str().unwrap().starts_with("v9-"));
    assert!(stderr(&out, dir.path()).contains("version label v9-"));
}

#[test]
fn cli_render_dry_run_and_stdout() {
    let dir = antenna_tree();
    let out = run(&dir, &["render", "--env", "staging", "--dry-run"]);
    assert!(out.status.success());
    assert!(stderr(&out, dir.path())
        .contains("dry run: would write [root]/target/deploy/staging/Dockerrun.aws.json"));
    assert!(!dir.path().join("target").exists());
    let out = run(&dir, &["render", "--env", "staging", "--stdout"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["containerDefinitions"][0]["image"],
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/antenna-backend:v9"
    );
}

#[test]
fn cli_lint_takes_files_by_hand() {
    let dir = antenna_tree();
    let bad = dir.path().join("Dockerrun.aws.json");
    std::fs::write(&bad, r#"{"AWSEBDockerrunVersion": "2", "containerDefinitions": [{"name": "a", "image": "x:1", "memory": 0}]}"#).unwrap();
    let out = run(
        &dir,
        &[
            "lint",
            bad.to_str().unwrap(),
            dir.path()
                .join(".ebextensions/00_setup.config")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out, dir.path());
    assert!(err.contains("[root]/Dockerrun.aws.json:1:2: error DR001[version]: AWSEBDockerrunVersion must be the integer 2, found \"2\""), "{err}");
    assert!(
        err.contains("error DR004[memory]: container `a` sets neither"),
        "{err}"
    );
    assert!(err.contains("2 error(s), 0 warning(s)"), "{err}");
}

/// Each bad input: non-zero exit, a message naming the file and the field, no bundle.
#[test]
fn bad_inputs_fail_clearly_and_write_no_bundle() {
    struct Case {
        name: &'static str,
        file: &'static str,
        from: &'static str,
        to: &'static str,
        expect: &'static [&'static str],
    }
    let cases = [
        Case { name: "malformed JSON", file: "Dockerrun.template.json", from: "\"essential\": true,\n      \"memoryReservation\": 512,\n      \"memory\": 1024,\n      \"command\": [\"/start\"]", to: "\"essential\": true,,", expect: &["Dockerrun.template.json:7:25", "invalid JSON"] },
        Case { name: "malformed YAML", file: ".ebextensions/00_setup.config", from: "    USE_DOCKER: \"yes\"", to: "   USE_DOCKER: \"yes\"", expect: &["00_setup.config:", "EX001"] },
        Case { name: "malformed TOML", file: "deploy.toml", from: "application = \"antenna\"", to: "application = antenna", expect: &["deploy.toml:3:15"] },
        Case { name: "unknown field", file: "deploy.toml", from: "eb_environment = \"antenna-staging\"", to: "eb_environment = \"antenna-staging\"\nbukcet = \"x\"", expect: &["deploy.toml:", "unknown field `bukcet`", "expected one of"] },
        Case { name: "unset placeholder", file: "Dockerrun.template.json", from: "${var.CELERY_QUEUES}", to: "${var.MISSING}", expect: &["Dockerrun.template.json:32:46:", "unknown placeholder ${var.MISSING}"] },
        Case { name: "duplicate container", file: "Dockerrun.template.json", from: "\"name\": \"celerybeat\"", to: "\"name\": \"django\"", expect: &["Dockerrun.template.json:", "DR002", "container name `django` is used twice"] },
        Case { name: "dangling link", file: "Dockerrun.template.json", from: "\"links\": [\"ml-backend-minimal\", \"ml-backend-example\"],\n      \"environment\": [\n        { \"name\": \"USE_DOCKER\", \"value\": \"yes\" },\n        { \"name\": \"DJANGO_SETTINGS_MODULE\", \"value\": \"${var.DJANGO_SETTINGS_MODULE}\" },\n        { \"name\": \"DEFAULT_PROCESSING_SERVICE_ENDPOINT\", \"value\": \"http://ml-backend-minimal:2000\" },\n        { \"name\": \"RELEASE\"", to: "\"links\": [\"ml-backend-minimal\", \"nginx\"],\n      \"environment\": [\n        { \"name\": \"USE_DOCKER\", \"value\": \"yes\" },\n        { \"name\": \"DJANGO_SETTINGS_MODULE\", \"value\": \"${var.DJANGO_SETTINGS_MODULE}\" },\n        { \"name\": \"DEFAULT_PROCESSING_SERVICE_ENDPOINT\", \"value\": \"http://ml-backend-minimal:2000\" },\n        { \"name\": \"RELEASE\"", expect: &["Dockerrun.template.json:", "DR006", "container `django` links to `nginx`"] },
        Case { name: "zero memory", file: "Dockerrun.template.json", from: "\"memoryReservation\": 32,\n      \"memory\": 128", to: "\"memory\": 0", expect: &["Dockerrun.template.json:", "DR004", "container `awscli` sets neither a non-zero memory"] },
        Case { name: "duplicate host port", file: "Dockerrun.template.json", from: "\"hostPort\": 2003", to: "\"hostPort\": 2000", expect: &["Dockerrun.template.json:", "DR010", "host port 2000/tcp is mapped by both `ml-backend-minimal` and `ml-backend-example`"] },
        Case { name: "secret in environment", file: "Dockerrun.template.json", from: "{ \"name\": \"USE_DOCKER\", \"value\": \"yes\" },\n        { \"name\": \"DJANGO_SETTINGS_MODULE\", \"value\": \"${var.DJANGO_SETTINGS_MODULE}\" },\n        { \"name\": \"RELEASE\"", to: "{ \"name\": \"DJANGO_SECRET_KEY\", \"value\": \"hunter2\" },\n        { \"name\": \"DJANGO_SETTINGS_MODULE\", \"value\": \"${var.DJANGO_SETTINGS_MODULE}\" },\n        { \"name\": \"RELEASE\"", expect: &["Dockerrun.template.json:", "DR014", "environment `DJANGO_SECRET_KEY` looks like a secret", "EB environment property"] },
    ];
    for case in cases {
        let dir = antenna_tree();
        let path = dir.path().join(case.file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(case.from),
            "{}: fixture text not found",
            case.name
        );
        std::fs::write(&path, text.replacen(case.from, case.to, 1)).unwrap();
        let out = run(&dir, &["bundle", "--env", "staging"]);
        let err = stderr(&out, dir.path());
        assert!(!out.status.success(), "{}: exited 0\n{err}", case.name);
        for e in case.expect {
            assert!(err.contains(e), "{}: expected {e:?} in\n{err}", case.name);
        }
        assert!(
            !dir.path().join("target/deploy/staging/deploy.zip").exists(),
            "{}: a bundle was written",
            case.name
        );
        assert!(
            out.stdout.is_empty(),
            "{}: stdout is for machine output only",
            case.name
        );
    }
}

#[test]
fn unknown_environment_lists_the_known_ones() {
    let dir = antenna_tree();
    let out = run(&dir, &["bundle", "--env", "prod"]);
    assert!(!out.status.success());
    assert!(stderr(&out, dir.path()).contains("unknown environment \"prod\" in [root]/deploy.toml; known environments: local, production, staging"));
}

fn run(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    xtask()
        .arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .args(args)
        .env("DEPLOY_RELEASE", "v9")
        .env("DEPLOY_ACCOUNT", "123456789012")
        .current_dir(dir.path())
        .output()
        .unwrap()
}

/// Stderr with the temporary directory written as `[root]`.
fn stderr(out: &Output, root: &Path) -> String {
    String::from_utf8_lossy(&out.stderr).replace(&root.display().to_string(), "[root]")
}
