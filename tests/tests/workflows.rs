//! The GitHub Actions workflows pass actionlint (with shellcheck on `run:` scripts) and zizmor
//! with no findings; and both linters do catch the mistakes they are here for.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration::{services, workspace_root as root};

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

/// The `${{ secrets.NAME }}` / `${{ vars.NAME }}` expressions of an `env:` block, resolved from
/// `secrets`; any other expression is a failure of this test (it would need a new resolver).
fn resolve_env(
    block: &serde_yaml_ng::Value,
    secrets: &[(&str, String)],
    at: &str,
) -> Vec<(String, String)> {
    let Some(map) = block.as_mapping() else {
        return Vec::new();
    };
    map.iter()
        .map(|(k, v)| {
            let name = k.as_str().unwrap().to_string();
            let expr = v
                .as_str()
                .unwrap_or_else(|| panic!("{at}: {name} is not a string"));
            let inner = expr
                .trim()
                .strip_prefix("${{")
                .and_then(|e| e.strip_suffix("}}"))
                .map(str::trim);
            let value = match inner {
                Some(e) if e.starts_with("secrets.") => {
                    let secret = &e["secrets.".len()..];
                    secrets
                        .iter()
                        .find(|(n, _)| *n == secret)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| panic!("{at}: no test value for secret {secret}"))
                }
                Some(e) => panic!("{at}: {name} = {e}: no resolver for this expression"),
                None => expr.to_string(),
            };
            (name, value)
        })
        .collect()
}

/// "Done when", 4th bullet of issue 10: the staging job of deploy.yml, run through the binary
/// with the environment the workflow gives its deploy step (parsed from the YAML: workflow,
/// job and step `env`, secrets resolved to the test Flower's credentials), deploys to moto +
/// the EB emulator and its Flower check passes against the real Flower test service. The job's
/// `environment:` is GitHub's one deployment: the pipeline, given no token by the workflow,
/// creates none (a fake GitHub API that records every request sees none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staging_job_of_deploy_yml_deploys_with_the_workflows_env() {
    use integration::deploy_world::{Settings, World};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let text = std::fs::read_to_string(root().join(".github/workflows/deploy.yml")).unwrap();
    let wf: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let job = &wf["jobs"]["staging"];
    assert_eq!(job["environment"]["name"], "staging", "{job:?}");
    let step = job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "deploy")
        .expect("a step with id deploy");
    let run = step["run"].as_str().unwrap();
    let words: Vec<&str> = run.split_whitespace().collect();
    assert_eq!(&words[..2], ["cargo", "xtask"], "{run}");
    let args = &words[2..];
    assert_eq!(args, ["deploy", "--env", "staging"], "{run}");
    let secrets = [
        ("CELERY_FLOWER_USER", services::env("FLOWER_USER")),
        ("CELERY_FLOWER_PASSWORD", services::env("FLOWER_PASSWORD")),
    ];
    let mut env = Vec::new();
    for (block, at) in [
        (&wf["env"], "workflow env"),
        (&job["env"], "job env"),
        (&step["env"], "step env"),
    ] {
        env.extend(resolve_env(block, &secrets, at));
    }
    assert!(
        !env.iter().any(|(k, _)| k == "GITHUB_TOKEN"),
        "the deploy step gets a GITHUB_TOKEN: the pipeline would add a second deployment to the job's"
    );

    // The environment: the API root for the HTTP check, the real Flower for the Flower check
    // (with the queues its test workers consume), the credentials' variables by default name.
    let site = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&site)
        .await;
    let github = MockServer::start().await;
    let w = World::new().await;
    let settings = Settings {
        checks: format!(
            "url = \"{site}\"\n\n[[environments.staging.checks]]\nkind = \"http\"\npath = \"/api/v2/\"\n\n[[environments.staging.checks]]\nkind = \"flower\"\nurl = \"{flower}\"\nqueues = [\"antenna\", \"jobs\"]\n",
            site = site.uri(),
            flower = services::env("FLOWER_URL"),
        ),
        // Flower's `/api/workers?refresh=1` waits for every worker's reply.
        verify: "20s",
        ..Settings::default()
    };
    w.config(&settings);
    // The job's command; the image build has its own tests, so the world's bundle is shipped
    // (`--bundle`), under a fixed release.
    let bundle = w.bundle.display().to_string();
    let command = |with_env: bool| {
        let mut cmd = w.xtask(args);
        cmd.args(["--bundle", &bundle, "--release", "v1.0.0", "--json"])
            .env_remove("FLOWER_USER")
            .env_remove("FLOWER_PASSWORD")
            .env_remove("CELERY_FLOWER_USER")
            .env_remove("CELERY_FLOWER_PASSWORD")
            .env_remove("GITHUB_TOKEN")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REPOSITORY", "ami/antenna")
            .env("GITHUB_API_URL", github.uri());
        if with_env {
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        cmd
    };
    let run_it = |mut cmd: std::process::Command| {
        tokio::task::spawn_blocking(move || cmd.output().expect("cannot run xtask"))
    };

    // Control: without the step's env, the preflight names the missing credentials and
    // nothing ships.
    let out = run_it(command(false)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("CELERY_FLOWER_USER, CELERY_FLOWER_PASSWORD not set where the deploy runs"),
        "{stderr}"
    );
    assert!(w.deployed_labels().is_empty());

    let out = run_it(command(true)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{stderr}");
    let verify = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "verify")
        .unwrap();
    // Flower is a required check: a done verify stage is its pass.
    assert_eq!(verify["outcome"], "done", "{stderr}");
    assert!(
        stderr.contains("::add-mask::"),
        "the credentials are masked in the job's log: {stderr}"
    );
    assert_eq!(w.deployed_labels(), vec![w.label()]);
    // One GitHub deployment per run: the job's. The pipeline sent GitHub nothing.
    let requests = github.received_requests().await.unwrap_or_default();
    assert!(
        requests.is_empty(),
        "the pipeline called GitHub: {:?}",
        requests
            .iter()
            .map(|r| r.url.to_string())
            .collect::<Vec<_>>()
    );
}
