//! The GitHub client (octocrab) against a fake GitHub served by wiremock: the marker comment
//! (created once, then edited, found on a later page, never two), deployment statuses, and
//! 401/403/404, 5xx and rate limits with their messages. Also the Actions workflow commands and files.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration::deploy_tree::DeployToml;
use integration::github_api;
use pipeline::github::actions::{Actions, Annotation, Level};
use pipeline::github::{
    DeploymentTracker, GitHub, GitHubError, GitHubSettings, RetryPolicy, SecretString, Upserted,
};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghs_test-token-never-printed";
const MARKER: &str = "<!-- antenna-preview:staging -->";

fn client(server: &MockServer) -> GitHub {
    GitHub::new(&GitHubSettings {
        api_url: server.uri(),
        repository: "ami/antenna".into(),
        token: SecretString::from(TOKEN.to_string()),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(20),
            max_wait: Duration::from_secs(5),
        },
    })
    .unwrap()
}

/// Issue comments as GitHub keeps them: paginated with `page`/`per_page` and a `Link` header.
#[derive(Clone, Default)]
struct Comments(Arc<Mutex<Vec<Value>>>);

impl Comments {
    fn with_others(n: usize) -> Self {
        let c = Comments::default();
        for i in 0..n {
            c.push(&format!("comment {i} by someone else"));
        }
        c
    }
    fn push(&self, body: &str) -> Value {
        let mut all = self.0.lock().unwrap();
        let id = 1000 + all.len() as u64;
        let c = github_api::comment(id, 7, body);
        all.push(c.clone());
        c
    }
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
    fn marked(&self) -> Vec<Value> {
        self.marked_with(MARKER)
    }
    fn marked_with(&self, marker: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|c| c["body"].as_str().unwrap().contains(marker))
            .collect()
    }
}

struct List(Comments, String);
impl Respond for List {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q = |k: &str| {
            req.url
                .query_pairs()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.parse::<usize>().ok())
        };
        let (page, per_page) = (q("page").unwrap_or(1), q("per_page").unwrap_or(30).min(100));
        let all = self.0.all();
        let last = all.len().div_ceil(per_page).max(1);
        let items: Vec<Value> = all
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        let mut t = ResponseTemplate::new(200).set_body_json(items);
        if page < last {
            let link = |p: usize| {
                format!(
                    "<{}/repositories/1/issues/7/comments?per_page={per_page}&page={p}>",
                    self.1
                )
            };
            t = t.insert_header(
                "link",
                format!(
                    "{}; rel=\"next\", {}; rel=\"last\"",
                    link(page + 1),
                    link(last)
                )
                .as_str(),
            );
        }
        t
    }
}

struct Create(Comments);
impl Respond for Create {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = req.body_json().unwrap();
        ResponseTemplate::new(201).set_body_json(self.0.push(body["body"].as_str().unwrap()))
    }
}

struct Edit(Comments);
impl Respond for Edit {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let id: u64 = req.url.path().rsplit('/').next().unwrap().parse().unwrap();
        let body: Value = req.body_json().unwrap();
        let mut all = self.0 .0.lock().unwrap();
        match all.iter_mut().find(|c| c["id"] == id) {
            Some(c) => {
                c["body"] = body["body"].clone();
                ResponseTemplate::new(200).set_body_json(c.clone())
            }
            None => ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
        }
    }
}

async fn fake_comments(server: &MockServer, comments: &Comments) {
    // Later pages come through the Link header's own URLs, as on GitHub.
    Mock::given(method("GET"))
        .and(path_regex(
            r"^/(repos/ami/antenna|repositories/1)/issues/7/comments$",
        ))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(List(comments.clone(), server.uri()))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/issues/7/comments"))
        .respond_with(Create(comments.clone()))
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/ami/antenna/issues/comments/\d+$"))
        .respond_with(Edit(comments.clone()))
        .mount(server)
        .await;
}

async fn requests(server: &MockServer, verb: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == verb)
        .count()
}

#[tokio::test]
async fn first_preview_creates_the_comment_and_the_second_edits_it() {
    let server = MockServer::start().await;
    let comments = Comments::with_others(3);
    fake_comments(&server, &comments).await;
    let gh = client(&server);

    let first = gh
        .upsert_comment(7, MARKER, "## Preview\nv1")
        .await
        .unwrap();
    let Upserted::Created(c) = &first else {
        panic!("expected a new comment, got {first:?}")
    };
    assert_eq!(
        c.body.as_deref(),
        Some(format!("{MARKER}\n## Preview\nv1").as_str())
    );

    let second = gh
        .upsert_comment(7, MARKER, "## Preview\nv2")
        .await
        .unwrap();
    let Upserted::Updated(c2) = &second else {
        panic!("expected the comment to be edited, got {second:?}")
    };
    assert_eq!(c2.id, c.id, "the same comment is edited");

    let third = gh
        .upsert_comment(7, MARKER, "## Preview\nv2")
        .await
        .unwrap();
    assert!(matches!(third, Upserted::Unchanged(_)), "{third:?}");

    let marked = comments.marked();
    assert_eq!(marked.len(), 1, "exactly one preview comment: {marked:?}");
    assert_eq!(marked[0]["body"], format!("{MARKER}\n## Preview\nv2"));
    assert_eq!(comments.all().len(), 4);
    assert_eq!(requests(&server, "POST").await, 1);
    assert_eq!(requests(&server, "PATCH").await, 1);
}

#[tokio::test]
async fn marker_on_a_later_page_is_found_and_edited_not_added() {
    let server = MockServer::start().await;
    // 230 comments at 100 a page: the marked one is on page 3.
    let comments = Comments::with_others(229);
    comments.push(&format!("{MARKER}\nold preview"));
    fake_comments(&server, &comments).await;
    let gh = client(&server);

    let found = gh
        .find_comment(7, MARKER)
        .await
        .unwrap()
        .expect("the marked comment");
    assert_eq!(found.id, 1229);

    let done = gh.upsert_comment(7, MARKER, "new preview").await.unwrap();
    assert!(
        matches!(&done, Upserted::Updated(c) if c.id == 1229),
        "{done:?}"
    );
    assert_eq!(comments.marked().len(), 1);
    assert_eq!(comments.all().len(), 230, "no comment was added");
    assert_eq!(requests(&server, "POST").await, 0);
    let pages: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .map(|r| r.url.query().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        pages[..3],
        ["per_page=100", "per_page=100&page=2", "per_page=100&page=3"]
    );
}

/// Records deployment statuses.
#[derive(Clone, Default)]
struct Statuses(Arc<Mutex<Vec<Value>>>);
impl Respond for Statuses {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = req.body_json().unwrap();
        self.0.lock().unwrap().push(body.clone());
        let n = self.0.lock().unwrap().len() as u64;
        ResponseTemplate::new(201).set_body_json(github_api::deployment_status(
            n,
            42,
            body["state"].as_str().unwrap(),
        ))
    }
}

impl Statuses {
    /// The deployment statuses posted so far.
    fn posted(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// Their states, in order.
    fn states(&self) -> Vec<String> {
        self.posted()
            .iter()
            .map(|v| v["state"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The body of the first request GitHub received: the deployment it was asked to create.
async fn created_deployment(server: &MockServer) -> Value {
    server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap()
}

/// A deploy reporter of `release` to `environment` on the fake GitHub at `server`, linking
/// the statuses to the workflow run.
async fn reporter(
    actions: Actions,
    server: &MockServer,
    release: &str,
    environment: &str,
) -> pipeline::deploy::reporter::DeployReporter {
    pipeline::deploy::reporter::DeployReporter::with(
        actions,
        Some(client(server)),
        release,
        environment,
        Some(RUN.into()),
    )
    .await
}

async fn fake_deployments(server: &MockServer) -> Statuses {
    let statuses = Statuses::default();
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/deployments"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(github_api::deployment(42, "v1.2.0", "staging")),
        )
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/deployments/42/statuses"))
        .respond_with(statuses.clone())
        .mount(server)
        .await;
    statuses
}

const RUN: &str = "https://github.com/ami/antenna/actions/runs/99";

/// A deployment of `release` to `environment` started on a fake GitHub at `server` that
/// records its statuses.
async fn started_deployment(
    server: &MockServer,
    release: &str,
    environment: &str,
) -> (DeploymentTracker, Statuses) {
    let statuses = fake_deployments(server).await;
    let d = DeploymentTracker::start(&client(server), release, environment, Some(RUN.into()))
        .await
        .unwrap();
    (d, statuses)
}

#[tokio::test]
async fn deployment_statuses_on_success() {
    let server = MockServer::start().await;
    let (d, statuses) = started_deployment(&server, "v1.2.0", "staging").await;
    assert_eq!(d.id, 42);
    d.succeeded(
        Some("https://staging.example.org"),
        "deployed v1.2.0-0123abcd",
    )
    .await
    .unwrap();

    let created = created_deployment(&server).await;
    assert_eq!(created["ref"], "v1.2.0");
    assert_eq!(created["environment"], "staging");
    assert_eq!(created["auto_merge"], false);
    assert_eq!(created["required_contexts"], json!([]));
    let s = statuses.posted();
    assert_eq!(statuses.states(), ["in_progress", "success"]);
    assert_eq!(s[1]["environment_url"], "https://staging.example.org");
    assert_eq!(s[1]["log_url"], RUN);
    assert_eq!(s[1]["description"], "deployed v1.2.0-0123abcd");
}

#[tokio::test]
async fn deployment_statuses_on_failure() {
    let server = MockServer::start().await;
    let (d, statuses) = started_deployment(&server, "v1.2.1", "production").await;
    d.failed("deploy stage failed: Failed to deploy application.")
        .await
        .unwrap();

    let created = created_deployment(&server).await;
    assert_eq!(created["production_environment"], true);
    let s = statuses.posted();
    assert_eq!(statuses.states(), ["in_progress", "failure"]);
    assert_eq!(s[1]["log_url"], RUN);
    assert!(s[1].get("environment_url").is_none(), "{}", s[1]);
    assert_eq!(
        s[1]["description"],
        "deploy stage failed: Failed to deploy application."
    );
}

/// A 403 that is no rate limit (requests remain), with GitHub's `message`.
fn forbidden(message: &str) -> ResponseTemplate {
    ResponseTemplate::new(403)
        .insert_header("x-ratelimit-remaining", "4999")
        .set_body_json(json!({ "message": message }))
}

/// A fake GitHub whose every GET answers `response`, and is asked exactly `times` times.
async fn every_get_answers(response: ResponseTemplate, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(response)
        .expect(times)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn forbidden_says_which_permission_is_missing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/ami/antenna/issues/7/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/issues/7/comments"))
        .respond_with(forbidden("Resource not accessible by integration"))
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .upsert_comment(7, MARKER, "x")
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Forbidden { .. }), "{err:?}");
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "GitHub denied permission (403) to comment on pull request #7 ({}/repos/ami/antenna/issues/7/comments): \
             Resource not accessible by integration; the token needs `pull-requests: write` (in a workflow: \
             `permissions: pull-requests: write` on the job; a pull request from a fork only gets a read-only token)",
            server.uri()
        )
    );
    assert!(!msg.contains(TOKEN));
}

#[tokio::test]
async fn unauthorized_and_not_found_are_clear() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/deployments"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/ami/antenna/issues/8/comments"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .mount(&server)
        .await;
    let gh = client(&server);
    let err = DeploymentTracker::start(&gh, "v1", "staging", None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    let msg = err.to_string();
    assert!(msg.starts_with("GitHub rejected the token (401) when trying to create a deployment of v1 to the environment staging"), "{msg}");
    assert!(
        msg.ends_with("Bad credentials; set GITHUB_TOKEN to a valid, unexpired token"),
        "{msg}"
    );
    assert!(!msg.contains(TOKEN));

    let err = gh.find_comment(8, MARKER).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let msg = err.to_string();
    assert!(
        msg.contains(
            "GitHub found nothing (404) when trying to list the comments of pull request #8"
        ),
        "{msg}"
    );
    assert!(msg.contains("check the repository `ami/antenna`"), "{msg}");
}

/// A fake GitHub whose comment list of pull request #7 answers `first` once, then the marked
/// comment 5.
async fn limited_then_listed(first: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/ami/antenna/issues/7/comments"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/ami/antenna/issues/7/comments"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!([github_api::comment(5, 7, MARKER)])),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn rate_limit_waits_as_long_as_retry_after_says() {
    let server = limited_then_listed(
        ResponseTemplate::new(403)
            .insert_header("retry-after", "1")
            .set_body_json(json!({"message": "You have exceeded a secondary rate limit."})),
    )
    .await;
    let started = Instant::now();
    let found = client(&server).find_comment(7, MARKER).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(found.map(|c| c.id), Some(5));
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before retry-after"
    );
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// A rate limit is told by its status and headers: a 429 is retried after its `retry-after`;
/// a 403 without `retry-after` or `x-ratelimit-remaining: 0` is a permission error, whatever
/// its message says, and is not retried.
#[tokio::test]
async fn rate_limits_are_told_by_status_and_headers_not_by_message() {
    let server = limited_then_listed(
        ResponseTemplate::new(429)
            .insert_header("retry-after", "0")
            .set_body_json(json!({"message": "Too many requests"})),
    )
    .await;
    let found = client(&server).find_comment(7, MARKER).await.unwrap();
    assert_eq!(found.map(|c| c.id), Some(5));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);

    let refusing = every_get_answers(
        forbidden("API rate limit exceeded? no: Resource not accessible by integration"),
        1,
    )
    .await;
    let err = client(&refusing).find_comment(7, MARKER).await.unwrap_err();
    assert!(matches!(err, GitHubError::Forbidden { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the token needs `pull-requests: read`"),
        "{err}"
    );
}

#[tokio::test]
async fn rate_limit_reset_too_far_away_fails_at_once_with_the_wait() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let server = every_get_answers(
        ResponseTemplate::new(403)
            .insert_header("x-ratelimit-remaining", "0")
            .insert_header("x-ratelimit-reset", reset.to_string().as_str())
            .set_body_json(json!({"message": "API rate limit exceeded for installation ID 1."})),
        1,
    )
    .await;
    let started = Instant::now();
    let err = client(&server).find_comment(7, MARKER).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(err, GitHubError::RateLimited { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("GitHub rate limit when trying to list the comments of pull request #7"),
        "{msg}"
    );
    assert!(
        msg.contains("after 1 attempt(s), the limit resets in 360"),
        "{msg}"
    );
    assert!(
        msg.ends_with("API rate limit exceeded for installation ID 1.; wait, then re-run"),
        "{msg}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/deployments"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/ami/antenna/deployments"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(github_api::deployment(9, "v1", "staging")),
        )
        .mount(&server)
        .await;
    let gh = client(&server);
    let id = gh
        .create_deployment(&pipeline::github::NewDeployment::new("v1", "staging", "d"))
        .await
        .unwrap();
    assert_eq!(id, 9);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    let down = every_get_answers(
        ResponseTemplate::new(503).set_body_json(json!({"message": "Service Unavailable"})),
        3,
    )
    .await;
    let err = client(&down).find_comment(7, MARKER).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "GitHub answered 503 when trying to list the comments of pull request #7 \
             ({}/repos/ami/antenna/issues/7/comments?per_page=100) after 3 attempt(s): Service Unavailable",
            down.uri()
        )
    );
}

#[test]
fn actions_outputs_summary_and_masks_go_where_the_runner_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    let summary = dir.path().join("summary.md");
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    struct W(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let a = Actions::new(
        true,
        Box::new(W(log.clone())),
        Some(output.clone()),
        Some(summary.clone()),
    );
    a.mask(TOKEN);
    {
        let _g = a.group("lint");
        a.annotate(
            Level::Error,
            &Annotation {
                file: Some("Dockerrun.template.json".into()),
                line: Some(12),
                col: Some(5),
                title: None,
                message: "container \"flower\": memory must be > 0".into(),
            },
        );
    }
    a.set_output("version_label", "v1.2.0-0123abcd").unwrap();
    a.set_output("diff", "-a\n+b").unwrap();
    a.summary("## Preview").unwrap();
    a.summary("more").unwrap();

    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert_eq!(
        log,
        format!(
            "::add-mask::{TOKEN}\n::group::lint\n::error file=Dockerrun.template.json,line=12,col=5::container \"flower\": memory must be > 0\n::endgroup::\n"
        )
    );
    let out = std::fs::read_to_string(&output).unwrap();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("version_label=v1.2.0-0123abcd"));
    let open = lines.next().unwrap();
    let delim = open
        .strip_prefix("diff<<")
        .expect("heredoc form for a multi-line value");
    assert_eq!(lines.collect::<Vec<_>>(), ["-a", "+b", delim]);
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        "## Preview\nmore\n"
    );
}

/// The fixture's configuration: `application` with Antenna's backend image, `staging` on
/// `eb_environment`.
fn fixture_config(application: &str, eb_environment: &str) -> DeployToml {
    DeployToml::antenna(application)
        .environment("staging", &format!("eb_environment = \"{eb_environment}\""))
}

const FIXTURE_TEMPLATE: &str = r#"{
  "AWSEBDockerrunVersion": 2,
  "containerDefinitions": [
    {
      "name": "django",
      "image": "${image.backend}",
      "essential": true,
      "memory": 512,
      "portMappings": [{ "hostPort": 80, "containerPort": 5000 }]
    }
  ]
}
"#;

/// A repository whose base commit has the fixture and whose head raises django's memory.
fn fixture_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    integration::git(d, &["init", "-q", "-b", "main"]);
    fixture_config("antenna", "antenna-staging").write(d);
    std::fs::write(d.join("Dockerrun.template.json"), FIXTURE_TEMPLATE).unwrap();
    std::fs::create_dir_all(d.join(".ebextensions")).unwrap();
    std::fs::write(
        d.join(".ebextensions/00.config"),
        "option_settings:\n  aws:autoscaling:launchconfiguration:\n    RootVolumeSize: \"30\"\n",
    )
    .unwrap();
    integration::git(d, &["add", "."]);
    integration::git(d, &["commit", "-q", "-m", "base"]);
    let base = integration::git(d, &["rev-parse", "HEAD"]);
    std::fs::write(
        d.join("Dockerrun.template.json"),
        FIXTURE_TEMPLATE.replace("\"memory\": 512", "\"memory\": 1024"),
    )
    .unwrap();
    integration::git(d, &["commit", "-q", "-am", "more memory"]);
    (dir, base)
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    output: String,
    summary: String,
}

async fn run_preview(repo: &std::path::Path, base: &str, server: &MockServer) -> Run {
    run_preview_with(repo, base, server, &[]).await
}

/// [`run_preview`] with more environment variables (AWS endpoints and credentials).
async fn run_preview_with(
    repo: &std::path::Path,
    base: &str,
    server: &MockServer,
    env: &[(&str, String)],
) -> Run {
    let files = tempfile::tempdir().unwrap();
    let (output, summary) = (files.path().join("output"), files.path().join("summary.md"));
    let out = tokio::process::Command::new(integration::xtask_bin())
        .args([
            "preview",
            "--env",
            "staging",
            "--against",
            "base",
            "--base",
            base,
            "--pr",
            "7",
        ])
        .current_dir(repo)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()),
        )
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", "ami/antenna")
        .env("GITHUB_API_URL", server.uri())
        .env("PREVIEW_POST", "true")
        .env("DEPLOY_ACCOUNT", "123456789012")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        output: std::fs::read_to_string(&output).unwrap_or_default(),
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

#[tokio::test]
async fn preview_command_in_actions_posts_one_comment_with_outputs_masks_and_annotations() {
    let server = MockServer::start().await;
    let comments = Comments::with_others(2);
    fake_comments(&server, &comments).await;
    let (repo, base) = fixture_repo();
    const PREVIEW_MARKER: &str = "<!-- cargo-xtask-preview:staging -->";

    // First run: a clean bundle; the comment is created.
    let run = run_preview(repo.path(), &base, &server).await;
    assert!(run.ok, "preview failed:\n{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("::add-mask::{TOKEN}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("::group::render and lint the bundle of staging\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("::group::post the pull request comment\n"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("::group::").count(),
        run.stderr.matches("::endgroup::").count(),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.starts_with("## Bundle preview: `staging`\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "the bundle rendered from the base commit `{}`",
            &base[..12]
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("-      \"memory\": 512,\n+      \"memory\": 1024,"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.summary, run.stdout,
        "the job summary is the same markdown"
    );
    let label = run
        .output
        .lines()
        .find_map(|l| l.strip_prefix("version_label="))
        .expect(&run.output);
    let sha = run
        .output
        .lines()
        .find_map(|l| l.strip_prefix("bundle_sha256="))
        .expect(&run.output);
    assert_eq!(sha.len(), 64, "{}", run.output);
    assert!(label.ends_with(&sha[..8]), "{label} / {sha}");
    assert!(
        run.stdout.contains(&format!("| Bundle sha256 | `{sha}` |")),
        "{}",
        run.stdout
    );
    let marked = comments.marked_with(PREVIEW_MARKER);
    assert_eq!(marked.len(), 1);
    assert!(marked[0]["body"]
        .as_str()
        .unwrap()
        .starts_with("<!-- cargo-xtask-preview:staging -->\n## Bundle preview"));

    // Second run: a lint error; the same comment is edited, the finding is annotated and the
    // command fails.
    std::fs::write(
        repo.path().join("Dockerrun.template.json"),
        FIXTURE_TEMPLATE.replace("\"memory\": 512", "\"memory\": 0"),
    )
    .unwrap();
    let run = run_preview(repo.path(), &base, &server).await;
    assert!(
        !run.ok,
        "lint errors must fail the command:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "error: lint found 1 error(s) in the bundle of staging: see the preview above"
        ),
        "{}",
        run.stderr
    );
    let annotation = run
        .stderr
        .lines()
        .find(|l| l.starts_with("::error "))
        .expect(&run.stderr);
    assert!(
        annotation.starts_with("::error file=Dockerrun.template.json,line="),
        "{annotation}"
    );
    assert!(annotation.contains(",col="), "{annotation}");
    assert!(
        run.output.is_empty(),
        "no bundle, no outputs: {}",
        run.output
    );
    assert!(
        run.summary.contains("❌ lint found errors"),
        "{}",
        run.summary
    );
    let marked = comments.marked_with(PREVIEW_MARKER);
    assert_eq!(marked.len(), 1, "still one preview comment");
    assert!(marked[0]["body"]
        .as_str()
        .unwrap()
        .contains("❌ lint found errors"));
    assert_eq!(requests(&server, "POST").await, 1);
    assert_eq!(requests(&server, "PATCH").await, 1);
    assert!(!run.stdout.contains(TOKEN) && !run.summary.contains(TOKEN));
}

#[tokio::test]
async fn preview_command_outside_actions_prints_markdown_and_posts_nothing() {
    let (repo, base) = fixture_repo();
    let out = tokio::process::Command::new(integration::xtask_bin())
        .args([
            "preview",
            "--env",
            "staging",
            "--against",
            "base",
            "--base",
            &base,
        ])
        .current_dir(repo.path())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_TOKEN")
        .env("DEPLOY_ACCOUNT", "123456789012")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("## Bundle preview: `staging`"),
        "{stdout}"
    );
    assert!(
        !stderr.contains("::"),
        "no workflow commands locally: {stderr}"
    );
    assert!(!stdout.contains("<!-- cargo-xtask-preview"), "{stdout}");
}

/// The running version's bundle is downloaded from S3 (moto) and unzipped into the files the
/// preview compares.
#[tokio::test]
async fn running_bundle_is_fetched_from_s3_and_unzipped() {
    use pipeline::bundle::{zip_bundle, InputFile};
    let endpoint = integration::services::env("MOTO_ENDPOINT");
    let s3 = integration::aws::s3(&endpoint);
    let bucket = integration::services::unique("preview-bundles");
    integration::aws::create_bucket(&s3, &bucket).await;

    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("01_migrate.sh");
    std::fs::write(&hook, "#!/bin/sh\necho migrate\n").unwrap();
    let zip = zip_bundle(
        "{\"AWSEBDockerrunVersion\": 2}\n",
        &[InputFile {
            name: ".platform/hooks/postdeploy/01_migrate.sh".into(),
            path: hook,
            mode: 0o755,
        }],
    )
    .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("antenna/v1.2.0-89abcdef.zip")
        .body(zip.into())
        .send()
        .await
        .unwrap();

    let files = pipeline::bundle::fetch_bundle(&s3, &bucket, "antenna/v1.2.0-89abcdef.zip")
        .await
        .unwrap();
    let names: Vec<&str> = files.0.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            ".platform/hooks/postdeploy/01_migrate.sh",
            "Dockerrun.aws.json"
        ]
    );
    assert_eq!(
        files.0["Dockerrun.aws.json"],
        b"{\"AWSEBDockerrunVersion\": 2}\n"
    );

    let err = pipeline::bundle::fetch_bundle(&s3, &bucket, "antenna/missing.zip")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").starts_with(&format!(
            "cannot download the source bundle s3://{bucket}/antenna/missing.zip: check that the role may s3:GetObject on it"
        )),
        "{err:#}"
    );
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Log {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn deploy_reporter_groups_stages_annotates_and_reports_success() {
    use pipeline::deploy::reporter::DeployOutputs;
    use pipeline::stages::Stage;
    let server = MockServer::start().await;
    let statuses = fake_deployments(&server).await;
    let files = tempfile::tempdir().unwrap();
    let output = files.path().join("output");
    let log = Log::default();
    let actions = Actions::new(true, Box::new(log.clone()), Some(output.clone()), None);
    let r = reporter(actions, &server, "v1.2.0", "staging").await;

    r.mask("redis-password");
    {
        let _g = r.stage(Stage::Render);
        let mut report = pipeline::lint::Report::default();
        report.extend([pipeline::lint::Finding::new(
            pipeline::lint::DR_PARSE,
            &files.path().join("Dockerrun.template.json"),
            "",
            "unknown placeholder ${image.nope}",
            "",
        )
        .at((4, 16))]);
        r.lint(&report, files.path());
    }
    r.outputs(&DeployOutputs {
        version_label: Some("v1.2.0-0123abcd"),
        bundle_sha256: Some("0123abcd"),
        image_digests: vec!["backend@sha256:aa".into(), "worker@sha256:bb".into()],
        environment_url: Some("https://staging.example.org"),
    })
    .unwrap();
    r.succeeded(
        Some("https://staging.example.org"),
        "deployed v1.2.0-0123abcd",
    )
    .await;

    let text = log.text();
    assert!(text.starts_with("::add-mask::redis-password\n::group::render\n::error file=Dockerrun.template.json,line=4,col=16,title="), "{text}");
    assert!(
        text.ends_with("::unknown placeholder ${image.nope}\n::endgroup::\n"),
        "{text}"
    );
    let out = std::fs::read_to_string(&output).unwrap();
    assert!(
        out.starts_with(
            "version_label=v1.2.0-0123abcd\nbundle_sha256=0123abcd\nimage_digests<<ghadelimiter_"
        ),
        "{out}"
    );
    assert!(
        out.contains("\nbackend@sha256:aa\nworker@sha256:bb\nghadelimiter_"),
        "{out}"
    );
    assert!(out.ends_with("url=https://staging.example.org\n"), "{out}");
    assert_eq!(statuses.states(), ["in_progress", "success"]);
}

#[tokio::test]
async fn deploy_reporter_reports_failure_and_survives_github_errors() {
    use pipeline::deploy::reporter::DeployReporter;
    let server = MockServer::start().await;
    let statuses = fake_deployments(&server).await;
    let log = Log::default();
    let actions = Actions::new(true, Box::new(log.clone()), None, None);
    let r = reporter(actions, &server, "v1.2.1", "production").await;
    r.failed(&anyhow::anyhow!("Failed to deploy application.").context("deploy stage failed"))
        .await;
    assert_eq!(
        log.text(),
        "::error title=deploy failed::deploy stage failed: Failed to deploy application.\n"
    );
    let s = statuses.posted();
    assert_eq!(statuses.states(), ["in_progress", "failure"]);
    assert_eq!(s[1]["log_url"], RUN);

    // GitHub refusing the deployment does not stop the deploy: the reporter goes on without it.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "Resource not accessible by integration"})),
        )
        .expect(1)
        .mount(&refusing)
        .await;
    let r = DeployReporter::with(
        Actions::disabled(),
        Some(client(&refusing)),
        "v1",
        "staging",
        None,
    )
    .await;
    r.succeeded(None, "ok").await;
    assert_eq!(
        refusing.received_requests().await.unwrap().len(),
        1,
        "no status without a deployment"
    );
}

/// Against the EB emulator and moto: DescribeEnvironments → its version label →
/// DescribeApplicationVersions → the S3 source bundle, unzipped and diffed.
#[tokio::test]
async fn running_version_is_found_through_eb_and_diffed() {
    use pipeline::bundle::Files;
    use pipeline::preview::{running_baseline_with, Baseline, Change};
    let s3 = integration::aws::s3(&integration::services::env("MOTO_ENDPOINT"));
    let bucket = integration::services::unique("preview-running");
    integration::aws::create_bucket(&s3, &bucket).await;
    let eb_emulator = integration::eb_emulator::EbEmulator::start(s3.clone(), &bucket).await;
    let eb = pipeline::eb::Eb::new(
        pipeline::eb::eb_client(&integration::aws::sdk_config(&eb_emulator.endpoint)),
        pipeline::eb::Pacing::scaled(100.0),
    );
    let (app, env) = (
        integration::services::unique("antenna"),
        integration::services::unique("antenna-staging"),
    );

    let running = "{\n  \"memory\": 512\n}\n";
    let zip = pipeline::bundle::zip_bundle(running, &[]).unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("antenna/v1.1.0-aaaa.zip")
        .body(zip.into())
        .send()
        .await
        .unwrap();
    eb_emulator.add_version(
        &app,
        "v1.1.0-aaaa",
        &bucket,
        "antenna/v1.1.0-aaaa.zip",
        "PROCESSED",
    );
    eb_emulator.add_environment(&app, &env, Some("v1.1.0-aaaa"), 1);

    let baseline = running_baseline_with(&eb, &s3, &app, &env).await.unwrap();
    let Baseline::Running {
        version_label,
        files,
        ..
    } = &baseline
    else {
        panic!("expected the running version, got {baseline:?}")
    };
    assert_eq!(version_label, "v1.1.0-aaaa");
    assert_eq!(files.0["Dockerrun.aws.json"], running.as_bytes());
    assert_eq!(
        baseline.describe(),
        format!("the version running on `{env}`: `v1.1.0-aaaa`")
    );

    let head = Files(
        [(
            "Dockerrun.aws.json".to_string(),
            b"{\n  \"memory\": 1024\n}\n".to_vec(),
        )]
        .into(),
    );
    let diffs = pipeline::preview::diff(files, &head);
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0].change, Change::Modified);
    assert!(
        diffs[0]
            .diff
            .contains("-  \"memory\": 512\n+  \"memory\": 1024\n"),
        "{}",
        diffs[0].diff
    );

    // An environment that runs nothing yet says so.
    let fresh = integration::services::unique("antenna-fresh");
    eb_emulator.add_environment(&app, &fresh, None, 1);
    let err = running_baseline_with(&eb, &s3, &app, &fresh)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the EB environment {fresh} runs no application version yet")
    );
}

fn run_report(ok: bool) -> pipeline::deploy::RunReport {
    use pipeline::deploy::{Outcome, RunReport, StageReport};
    let stage = |name: &str, outcome, output: &str| StageReport {
        stage: name.into(),
        outcome,
        duration_ms: 1200,
        output: output.into(),
    };
    RunReport {
        environment: "staging".into(),
        eb_environment: "antenna-staging".into(),
        release: "v1.2.0".into(),
        label: Some("v1.2.0-0123abcd".into()),
        dry_run: false,
        stages: vec![
            stage("version", Outcome::Done, "v1.2.0-0123abcd"),
            if ok {
                stage(
                    "deploy",
                    Outcome::Done,
                    "Environment update completed successfully.",
                )
            } else {
                stage("deploy", Outcome::Failed, "Failed to deploy application.")
            },
        ],
        deploy: None,
        rollback: None,
        env: None,
        ok,
        eb_calls: 7,
        preflight: None,
    }
}

#[tokio::test]
async fn deploy_reporter_finishes_a_run_report() {
    for ok in [true, false] {
        let server = MockServer::start().await;
        let statuses = fake_deployments(&server).await;
        let files = tempfile::tempdir().unwrap();
        let (output, summary) = (files.path().join("output"), files.path().join("summary.md"));
        let log = Log::default();
        let actions = Actions::new(
            true,
            Box::new(log.clone()),
            Some(output.clone()),
            Some(summary.clone()),
        );
        let r = reporter(actions, &server, "v1.2.0", "staging").await;
        r.finish(&run_report(ok), Some("https://staging.example.org"))
            .await
            .unwrap();

        let summary = std::fs::read_to_string(&summary).unwrap();
        assert!(
            summary.starts_with("## Deploy `v1.2.0` → `antenna-staging`\n\n```\nSTAGE"),
            "{summary}"
        );
        let out = std::fs::read_to_string(&output).unwrap();
        let (s, states) = (statuses.posted(), statuses.states());
        if ok {
            assert_eq!(log.text(), "");
            assert_eq!(
                out,
                "version_label=v1.2.0-0123abcd\nurl=https://staging.example.org\n"
            );
            assert_eq!(states, ["in_progress", "success"]);
            assert_eq!(s[1]["environment_url"], "https://staging.example.org");
            assert_eq!(s[1]["description"], "deployed v1.2.0-0123abcd");
        } else {
            assert_eq!(
                log.text(),
                "::error title=deploy stage failed::Failed to deploy application.\n"
            );
            assert_eq!(out, "version_label=v1.2.0-0123abcd\n");
            assert_eq!(states, ["in_progress", "failure"]);
            assert_eq!(
                s[1]["description"],
                "deploy stage failed: Failed to deploy application."
            );
            assert_eq!(s[1]["log_url"], RUN);
        }
    }
}

/// The bodies of the comments the preview posted or edited, as wiremock received them.
async fn comment_bodies(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PATCH"))
        .map(|r| {
            r.body_json::<Value>().unwrap()["body"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_comment_shows_the_env_diff_masked_or_says_aws_cannot_be_reached() {
    use integration::{aws, services};
    const SECRET_VALUE: &str = "preview-s3cr3t-91c7d2";
    const CONSOLE_SECRET: &str = "console-held-preview-5b0e3a";
    let w = integration::deploy_world::World::new().await;
    let moto = services::env("MOTO_ENDPOINT");
    let stores = pipeline::envprops::secrets::SecretStores::new(&pipeline::aws::Aws {
        sdk: aws::sdk_config(&moto),
        custom_endpoint: true,
    });
    let secret = services::unique("antenna/staging/DJANGO_SECRET_KEY");
    stores.put(&secret, SECRET_VALUE, &[]).await.unwrap();
    w.emu
        .set_environment_property(&w.environment, "DJANGO_SECRET_KEY", CONSOLE_SECRET);
    w.emu
        .set_environment_property(&w.environment, "DJANGO_DEBUG", "True");

    // The head declares the properties; the base commit does not.
    let (repo, base) = fixture_repo();
    fixture_config(&w.application, &w.environment)
        .raw("required = []\n")
        .table(
            "environments.staging.properties",
            r#"DJANGO_DEBUG = "False""#,
        )
        .table(
            "environments.staging.secrets",
            &format!("DJANGO_SECRET_KEY = {{ secret = \"{secret}\" }}"),
        )
        .write(repo.path());

    let server = MockServer::start().await;
    let comments = Comments::default();
    fake_comments(&server, &comments).await;
    let aws_env = [
        ("AWS_ENDPOINT_URL", moto.clone()),
        ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", w.emu.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-west-2".to_string()),
    ];
    let run = run_preview_with(repo.path(), &base, &server, &aws_env).await;
    assert!(run.ok, "preview failed:\n{}", run.stderr);
    let bodies = comment_bodies(&server).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let body = &bodies[0];
    let section = &body[body.find("### Environment properties").expect(body)..];
    assert!(
        body.find("### Changes against") < body.find("### Environment properties"),
        "next to the bundle diff: {body}"
    );
    assert!(
        section.contains(&format!("Against what runs on `{}`", w.environment)),
        "{section}"
    );
    assert!(
        section.contains("| `DJANGO_DEBUG` | changed | plain | differs |"),
        "{section}"
    );
    assert!(
        section.contains("| `DJANGO_SECRET_KEY` | changed | secret | differs |"),
        "{section}"
    );
    assert!(section.contains("staging: 0 added, 2 changed"), "{section}");
    for hidden in ["True", "False", "arn:", "sha256:", secret.as_str()] {
        assert!(
            !section.contains(hidden),
            "{hidden} in the comment:\n{section}"
        );
    }
    assert_eq!(
        run.summary, run.stdout,
        "the job summary is the same markdown"
    );
    let mut captured = format!("{}{}{}{}", run.stdout, run.stderr, run.summary, run.output);
    captured.push_str(&bodies.join("\n"));

    // No credentials: the comment says the properties were not compared, and why.
    let home = tempfile::tempdir().unwrap();
    let no_aws = [
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("AWS_REGION", "us-west-2".to_string()),
        ("HOME", home.path().display().to_string()),
    ];
    let run = run_preview_with(repo.path(), &base, &server, &no_aws).await;
    assert!(run.ok, "preview failed:\n{}", run.stderr);
    let bodies = comment_bodies(&server).await;
    assert_eq!(bodies.len(), 2, "the same comment edited: {bodies:?}");
    assert!(
        bodies[1]
            .contains("⚠️ Not compared: AWS cannot be reached from this job (no AWS credentials)"),
        "{}",
        bodies[1]
    );
    assert_eq!(
        comments
            .marked_with("<!-- cargo-xtask-preview:staging -->")
            .len(),
        1
    );
    captured.push_str(&format!(
        "{}{}{}{}",
        run.stdout, run.stderr, run.summary, run.output
    ));
    captured.push_str(&bodies.join("\n"));
    for value in [SECRET_VALUE, CONSOLE_SECRET] {
        assert!(
            !captured.contains(value),
            "a secret value leaked: {captured}"
        );
    }
}
