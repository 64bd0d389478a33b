//! The GitHub Actions workflows pass actionlint (with shellcheck on `run:` scripts) and zizmor
//! with no findings; and both linters do catch the mistakes they are here for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration::services;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn text(out: &Output) -> String {
    format!(
        "exit status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn actionlint(dir: &Path) -> Output {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    assert!(!files.is_empty(), "no workflow files in {}", dir.display());
    Command::new(services::env("ACTIONLINT"))
        .args(["-color=false", "-shellcheck"])
        .arg(services::env("SHELLCHECK"))
        .args(&files)
        .output()
        .expect("cannot run actionlint")
}

fn zizmor(dir: &Path) -> Output {
    Command::new(services::env("ZIZMOR"))
        .args([
            "--offline",
            "--no-progress",
            "--format",
            "plain",
            "--color",
            "never",
        ])
        .arg(dir)
        .output()
        .expect("cannot run zizmor")
}

#[test]
fn workflows_pass_actionlint() {
    let out = actionlint(&root().join(".github/workflows"));
    let report = text(&out);
    assert!(out.status.success(), "actionlint found problems:\n{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "actionlint printed findings:\n{report}"
    );
}

#[test]
fn workflows_pass_zizmor() {
    let out = zizmor(&root().join(".github/workflows"));
    let report = text(&out);
    assert!(out.status.success(), "zizmor found problems:\n{report}");
    assert!(
        report.contains("No findings to report"),
        "zizmor did not report a clean audit:\n{report}"
    );
}

#[test]
fn every_action_is_pinned_by_a_commit_with_its_version() {
    let dir = root().join(".github/workflows");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap();
        for (n, line) in body.lines().enumerate() {
            let trimmed = line.trim_start().trim_start_matches("- ");
            let Some(rest) = trimmed.strip_prefix("uses:") else {
                continue;
            };
            seen += 1;
            let (action, comment) = rest.split_once('#').unwrap_or((rest, ""));
            let (_, sha) = action.trim().split_once('@').unwrap_or(("", ""));
            let at = format!("{}:{}", path.display(), n + 1);
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{at}: {line:?} is not pinned by a full commit SHA"
            );
            assert!(
                comment.trim().starts_with('v'),
                "{at}: {line:?} lacks its `# vX.Y.Z` comment"
            );
        }
    }
    assert!(
        seen >= 3,
        "expected actions in {}, found {seen}",
        dir.display()
    );
}

#[test]
fn linters_catch_an_unsafe_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).unwrap();
    std::fs::write(
        wf.join("bad.yml"),
        "name: bad\non: pull_request\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      \
         - uses: actions/checkout@v5\n      - run: echo \"${{ github.event.pull_request.title }}\"\n",
    )
    .unwrap();

    let out = actionlint(&wf);
    let report = text(&out);
    assert!(
        !out.status.success(),
        "actionlint accepted an injectable run step:\n{report}"
    );
    assert!(
        report.contains("\"github.event.pull_request.title\" is potentially untrusted"),
        "{report}"
    );

    let out = zizmor(&wf);
    let report = text(&out);
    assert!(
        !out.status.success(),
        "zizmor accepted an unsafe workflow:\n{report}"
    );
    assert!(report.contains("template-injection"), "{report}");
    assert!(report.contains("unpinned-uses"), "{report}");
    assert!(report.contains("artipacked"), "{report}");
}

/// The `rollback` workflow (started by hand) runs `cargo xtask rollback` for the chosen
/// environment with what the deploy of that environment has: the same concurrency group (so it
/// never runs during a deploy), the same AWS role and a token that may write deployments.
#[test]
fn the_rollback_workflow_runs_like_the_deploy_of_its_environment() {
    let read = |name: &str| -> serde_yaml_ng::Value {
        let path = root().join(".github/workflows").join(name);
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let (rollback, deploy) = (read("rollback.yml"), read("deploy.yml"));
    let input = &rollback["on"]["workflow_dispatch"]["inputs"]["environment"];
    let options: Vec<&str> = input["options"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(options, ["staging", "production"]);
    let job = &rollback["jobs"]["rollback"];
    let group = job["concurrency"]["group"].as_str().unwrap();
    let steps = job["steps"].as_sequence().unwrap();
    let step = |uses: &str| {
        steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(uses)))
            .unwrap()
    };
    let run = steps
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo xtask")))
        .unwrap();
    assert!(
        run["run"]
            .as_str()
            .unwrap()
            .starts_with("cargo xtask rollback"),
        "{run:?}"
    );
    assert_eq!(run["env"]["DEPLOY_ENV"], "${{ inputs.environment }}");
    assert_eq!(job["permissions"]["deployments"], "write");
    let role = &step("aws-actions/configure-aws-credentials")["with"]["role-to-assume"];
    for option in options {
        let deploy_job = deploy["jobs"]
            .as_mapping()
            .unwrap()
            .values()
            .find(|j| {
                j["environment"]["name"].as_str() == Some(option)
                    || j["environment"].as_str() == Some(option)
            })
            .unwrap_or_else(|| panic!("no deploy job for {option}"));
        assert_eq!(
            group.replace("${{ inputs.environment }}", option),
            deploy_job["concurrency"]["group"].as_str().unwrap(),
            "{option}: not the deploy's concurrency group"
        );
        let deploy_role = deploy_job["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|s| s["with"].get("role-to-assume"))
            .unwrap();
        assert_eq!(role, deploy_role, "{option}: not the deploy's role");
    }
}
