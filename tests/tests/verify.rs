//! The verify checks against real servers: a local HTTP server, plain and TLS redis-server,
//! real Celery workers and Flower (started by tests/services/up.d/20-redis.sh and
//! 25-celery.sh, or by the tests themselves when they need to stop one).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration::services;
use pipeline::config::{Config, Where};
use pipeline::verify::{self, Check, CheckOutcome, Verdict};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The checks of a one-environment configuration whose checks are `checks_toml`.
fn checks_with(base: Option<&str>, checks_toml: &str, vars: &[(&str, String)]) -> Vec<Check> {
    let text = format!(
        "region = \"us-west-2\"\napplication = \"antenna\"\n\n[images.backend]\nrepository = \"antenna-backend\"\nbuild = {{ context = \".\" }}\n\n[environments.t]\ntarget = \"local\"\n\n{checks_toml}"
    );
    let config = Config::parse(Path::new("deploy.toml"), &text).expect("test configuration parses");
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let lookup = move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    verify::for_environment_with(&config, "t", base, Where::Runner, &lookup).expect("checks build")
}

async fn run_one(base: Option<&str>, check_toml: &str, vars: &[(&str, String)]) -> CheckOutcome {
    let checks = checks_with(
        base,
        &format!("[[environments.t.checks]]\n{check_toml}"),
        vars,
    );
    assert_eq!(checks.len(), 1);
    let report = verify::run(&checks).await;
    report.checks.into_iter().next().unwrap()
}

/// The outcome of one HTTP check of the app at `base`; `check_toml` holds its keys but `kind`.
async fn run_http(base: &str, check_toml: &str) -> CheckOutcome {
    run_one(Some(base), &format!("kind = \"http\"\n{check_toml}"), &[]).await
}

fn assert_outcome(o: &CheckOutcome, verdict: Verdict, needles: &[&str]) {
    assert_eq!(o.verdict, verdict, "{o:#?}");
    for n in needles {
        assert!(o.detail.contains(n), "detail {:?} lacks {n:?}", o.detail);
    }
}

// ---------------------------------------------------------------- HTTP

/// Answers like Antenna's Django behind the load balancer: 400 to a Host not allowed, 301 to
/// https without `X-Forwarded-Proto: https`, else DRF's API root as JSON.
struct Django;

const ALLOWED_HOST: &str = "antenna.example.org";

impl Respond for Django {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let host = header("host");
        if host.split(':').next() != Some(ALLOWED_HOST) {
            return ResponseTemplate::new(400)
                .set_body_raw("<h1>Bad Request (400)</h1>", "text/html");
        }
        if header("x-forwarded-proto") != "https" {
            return ResponseTemplate::new(301)
                .insert_header("location", format!("https://{host}{}", req.url.path()));
        }
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "deployments": format!("https://{host}/api/v2/deployments/"),
            "events": format!("https://{host}/api/v2/events/"),
        }))
    }
}

async fn django() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/"))
        .respond_with(Django)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn http_json_200_with_the_configured_headers_passes() {
    let server = django().await;
    let o = run_http(&server.uri(), "headers = { Host = \"antenna.example.org\", \"X-Forwarded-Proto\" = \"https\" }\ntimeout = \"5s\"").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["HTTP 200, JSON object with 2 keys (deployments, events)"],
    );
    assert_eq!(o.target, format!("{}/api/v2/", server.uri()));
    assert_eq!(o.attempts, 1);
}

#[tokio::test]
async fn http_ssl_redirect_fails_at_once_with_the_forwarded_proto_hint() {
    let server = django().await;
    let o = run_http(
        &server.uri(),
        "headers = { Host = \"antenna.example.org\" }\ntimeout = \"5s\"",
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "HTTP 301 Moved Permanently (expected 200)",
            "redirect to https://antenna.example.org/api/v2/",
            "\"X-Forwarded-Proto\" = \"https\"",
        ],
    );
    assert_eq!(o.attempts, 1, "a redirect is not retried");
    assert!(o.elapsed_ms < 2000, "{o:?}");
}

#[tokio::test]
async fn http_disallowed_host_hints_at_allowed_hosts() {
    let server = django().await;
    let o = run_http(
        &server.uri(),
        "headers = { \"X-Forwarded-Proto\" = \"https\" }\ntimeout = \"5s\"",
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "HTTP 400 Bad Request (expected 200)",
            "Host header \"127.0.0.1\"",
            "DJANGO_ALLOWED_HOSTS",
        ],
    );
    assert_eq!(o.attempts, 1);
}

#[tokio::test]
async fn http_html_200_is_not_healthy() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            "<!DOCTYPE html><html><body>Congratulations</body></html>",
            "text/html",
        ))
        .mount(&server)
        .await;
    let o = run_http(&server.uri(), "timeout = \"1s\"").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "HTTP 200, but the body is not JSON",
            "text/html",
            "<!DOCTYPE html>",
        ],
    );
}

#[tokio::test]
async fn http_500_is_retried_until_the_deadline() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/"))
        .respond_with(ResponseTemplate::new(500).set_body_raw("Server Error (500)", "text/html"))
        .mount(&server)
        .await;
    let start = Instant::now();
    let o = run_http(&server.uri(), "timeout = \"2s\"").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "HTTP 500 Internal Server Error (expected 200)",
            "Server Error (500)",
            "attempts in",
        ],
    );
    assert!(o.attempts >= 3, "{o:?}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    assert!(server.received_requests().await.unwrap().len() >= 3);
}

#[tokio::test]
async fn http_passes_once_the_app_is_up() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/api/v2/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"projects": "/api/v2/projects/"})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    let o = run_http(&server.uri(), "timeout = \"10s\"").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["HTTP 200, JSON object with 1 keys (projects)", "3 attempts"],
    );
    assert_eq!(o.attempts, 3);
}

#[tokio::test]
async fn http_slow_answer_fails_within_the_timeout() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v2/"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({}))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let start = Instant::now();
    let o = run_http(&server.uri(), "timeout = \"1s\"").await;
    assert_outcome(&o, Verdict::Fail, &["connected, but no answer within"]);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn http_nothing_listening_is_unreachable() {
    let port = free_port();
    let o = run_http(&format!("http://127.0.0.1:{port}"), "timeout = \"1s\"").await;
    assert_outcome(
        &o,
        Verdict::Unreachable,
        &["cannot connect", "Connection refused"],
    );
}

// ---------------------------------------------------------------- Redis

fn redis_check(url: &str) -> (String, Vec<(&'static str, String)>) {
    (
        "kind = \"redis\"\nurl_env = \"THE_REDIS_URL\"\ntimeout = \"2s\"".into(),
        vec![("THE_REDIS_URL", url.to_string())],
    )
}

async fn run_redis(url: &str) -> CheckOutcome {
    let (toml, vars) = redis_check(url);
    run_one(None, &toml, &vars).await
}

#[tokio::test]
async fn redis_plain_pings_and_reports_version_and_role() {
    let o = run_redis(&services::env("REDIS_URL")).await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["PONG from redis 7.", "(master)", "db 0", "no TLS"],
    );
}

#[tokio::test]
async fn redis_tls_with_cert_reqs_none_accepts_the_self_signed_certificate() {
    let url = format!("{}/0?ssl_cert_reqs=none", services::env("REDIS_TLS_URL"));
    let o = run_redis(&url).await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &[
            "PONG from redis",
            "TLS, certificate not verified (ssl_cert_reqs=none)",
        ],
    );
}

#[tokio::test]
async fn redis_tls_required_rejects_the_unknown_certificate() {
    let url = format!("{}?ssl_cert_reqs=required", services::env("REDIS_TLS_URL"));
    let o = run_redis(&url).await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "the TLS certificate of 127.0.0.1:",
            "was rejected",
            "unknown authority",
            "ssl_cert_reqs=none",
        ],
    );
    assert_eq!(o.attempts, 1, "a certificate error is not retried");
}

#[tokio::test]
async fn redis_tls_required_with_its_ca_verifies() {
    let url = format!(
        "{}?ssl_cert_reqs=required&ssl_ca_certs={}",
        services::env("REDIS_TLS_URL"),
        services::env("REDIS_TLS_CA")
    );
    let o = run_redis(&url).await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["PONG from redis", "TLS, certificate verified"],
    );
}

#[tokio::test]
async fn redis_tls_on_a_plain_port_is_a_tls_failure() {
    let url = format!(
        "{}?ssl_cert_reqs=none",
        services::env("REDIS_URL").replace("redis://", "rediss://")
    );
    let o = run_redis(&url).await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "the TLS handshake with 127.0.0.1:",
            "use redis:// for a server without TLS",
        ],
    );
}

#[tokio::test]
async fn redis_plain_on_a_tls_port_hints_at_rediss() {
    let url = services::env("REDIS_TLS_URL").replace("rediss://", "redis://");
    let o = run_redis(&url).await;
    assert_outcome(&o, Verdict::Fail, &["use rediss://"]);
}

#[tokio::test]
async fn redis_passwords_are_checked_and_never_printed() {
    let base = services::env("REDIS_AUTH_URL");
    let password = services::env("REDIS_AUTH_PASSWORD");
    let with = |p: &str| base.replacen("redis://", &format!("redis://:{p}@"), 1);

    let o = run_redis(&with("not-the-password")).await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "authentication failed: WRONGPASS",
            "check the password in the URL",
        ],
    );
    assert_eq!(o.target, with("***"));
    assert_eq!(o.attempts, 1);

    let o = run_redis(&base).await;
    assert_outcome(&o, Verdict::Fail, &["authentication failed: NOAUTH"]);

    let o = run_redis(&with(&password)).await;
    assert_outcome(&o, Verdict::Pass, &["PONG from redis"]);
    assert_eq!(o.target, with("***"));
    let report = verify::VerifyReport::new(vec![o]);
    assert!(!report.render_table().contains(&password));
    assert!(!serde_json::to_string(&report).unwrap().contains(&password));
}

#[tokio::test]
async fn redis_nothing_listening_is_unreachable() {
    let o = run_redis(&format!("redis://127.0.0.1:{}", free_port())).await;
    assert_outcome(
        &o,
        Verdict::Unreachable,
        &["cannot connect to 127.0.0.1:", "Connection refused"],
    );
    assert!(
        o.attempts > 1,
        "unreachable is retried until the deadline: {o:?}"
    );
}

#[tokio::test]
async fn redis_replica_passes_with_a_note_and_fails_as_a_celery_broker() {
    let primary = services::env("REDIS_URL");
    let primary_port = primary
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut replica = KillOnDrop(
        Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--replicaof", "127.0.0.1", &primary_port])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (tests/services/up.sh installs it)"),
    );
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the replica did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let o = run_redis(&url).await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["(slave) (a read-only replica: Celery needs the primary endpoint)"],
    );

    let o = run_celery(&format!("{url}/1"), 1, &[], "1s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "broker: the server answered SADD: READONLY",
            "use the primary endpoint",
        ],
    );
    let _ = replica.0.kill();
}

// ---------------------------------------------------------------- Celery

fn celery_toml(min_workers: usize, queues: &[&str], timeout: &str) -> String {
    let queues: Vec<String> = queues.iter().map(|q| format!("{q:?}")).collect();
    format!(
        "kind = \"celery\"\nbroker_url_env = \"BROKER\"\nmin_workers = {min_workers}\nqueues = [{}]\ntimeout = \"{timeout}\"",
        queues.join(", ")
    )
}

async fn run_celery(
    broker: &str,
    min_workers: usize,
    queues: &[&str],
    timeout: &str,
) -> CheckOutcome {
    run_one(
        None,
        &celery_toml(min_workers, queues, timeout),
        &[("BROKER", broker.to_string())],
    )
    .await
}

#[tokio::test]
async fn celery_ping_passes_and_names_the_unconsumed_queue() {
    let broker = services::env("CELERY_BROKER_URL");
    let o = run_celery(&broker, 1, &["antenna", "jobs", "ml_results"], "3s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "no worker consumes ml_results:",
            "w1@verify [antenna, jobs]",
            "-Q antenna,jobs,ml_results",
        ],
    );
    assert!(!o.detail.contains("consumes antenna"), "{o:?}");
}

#[tokio::test]
async fn celery_two_workers_both_answer() {
    let broker = services::env("CELERY_BROKER_URL");
    let o = run_celery(&broker, 2, &["antenna", "jobs"], "10s").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["2 workers answered: w1@verify [antenna, jobs], w2@verify [antenna]"],
    );
    assert!(
        o.latency_ms < 2000,
        "once every subscribed worker has answered, the 2 s reply window is not waited out: {o:?}"
    );
    assert_eq!(o.target, broker);
}

#[tokio::test]
async fn celery_expecting_more_workers_than_run_fails() {
    let broker = services::env("CELERY_BROKER_URL");
    let o = run_celery(&broker, 3, &[], "2s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "2 of at least 3 worker(s) answered the ping",
            "w1@verify",
            "w2@verify",
        ],
    );
}

/// Starts a worker of the test's own, named `PREFIX-…@verify`, on `queues` of `broker`, and
/// checks that it answers the ping; returns it and its name.
async fn own_worker(broker: &str, prefix: &str, queues: &[&str]) -> (CeleryProcess, String) {
    let name = format!("{}@verify", services::unique(prefix));
    let worker = CeleryProcess::worker(broker, &name, &queues.join(","));
    let o = run_celery(broker, 1, queues, "60s").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &[&format!(
            "1 worker answered: {name} [{}]",
            queues.join(", ")
        )],
    );
    (worker, name)
}

/// The Celery check of one worker on `antenna` with a 3 s timeout, which must give up in
/// less than 5 s.
async fn run_celery_within_3s(broker: &str) -> CheckOutcome {
    let start = Instant::now();
    let o = run_celery(broker, 1, &["antenna"], "3s").await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} with a 3 s timeout: {o:?}"
    );
    o
}

#[tokio::test]
async fn celery_stopped_worker_fails_within_the_timeout() {
    let broker = format!("{}/{}", services::env("REDIS_URL"), DB_CELERY_STOP);
    let (worker, name) = own_worker(&broker, "stop", &["antenna", "jobs"]).await;

    worker.kill();
    let o = run_celery_within_3s(&broker).await;
    assert_outcome(&o, Verdict::Fail, &["no worker"]);
    assert!(!o.detail.contains(&name), "{o:?}");
}

#[tokio::test]
async fn celery_hung_worker_fails_within_the_timeout() {
    let broker = format!("{}/{}", services::env("REDIS_URL"), DB_CELERY_HUNG);
    let (worker, _) = own_worker(&broker, "hung", &["antenna"]).await;

    // SIGSTOP: still subscribed to the mailbox, but it never answers.
    worker.signal("STOP");
    let o = run_celery_within_3s(&broker).await;
    worker.signal("CONT");
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "no worker answered the ping within",
            "1 client(s) subscribed to /4.celery.pidbox",
            "a stuck or killed worker?",
        ],
    );
}

#[tokio::test]
async fn celery_over_a_tls_broker_finds_no_worker_on_an_empty_database() {
    let broker = format!(
        "{}/{DB_EMPTY}?ssl_cert_reqs=none",
        services::env("REDIS_TLS_URL")
    );
    let o = run_celery(&broker, 1, &["antenna"], "1s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[&format!("no worker listens on the broker (PUBLISH /{DB_EMPTY}.celery.pidbox reached 0 clients)"), "are the Celery workers running"],
    );
}

/// The Celery check of `broker`, where nothing listens: unreachable, naming the address.
async fn run_celery_unreachable(broker: &str) -> CheckOutcome {
    let o = run_celery(broker, 1, &[], "1s").await;
    assert_outcome(
        &o,
        Verdict::Unreachable,
        &["broker: cannot connect to 127.0.0.1:"],
    );
    o
}

#[tokio::test]
async fn celery_broker_nothing_listening_is_unreachable() {
    run_celery_unreachable(&format!("redis://127.0.0.1:{}/1", free_port())).await;
}

// ---------------------------------------------------------------- Celery over AMQP

/// The broker URL of the RabbitMQ test node for `vhost`, with the test user's password.
fn amqp_url(vhost: &str) -> String {
    format!(
        "amqp://antenna:{}@{}/{vhost}",
        services::env("AMQP_PASSWORD"),
        services::env("AMQP_BASE")
    )
}

fn assert_no_secret(o: &CheckOutcome, secret: &str) {
    let text = format!("{o:?}");
    assert!(!text.contains(secret), "the password leaked: {text}");
}

#[tokio::test]
async fn celery_over_amqp_pings_and_covers_antennas_queues() {
    let broker = services::env("AMQP_URL");
    let o = run_celery(&broker, 1, &["antenna", "jobs", "ml_results"], "10s").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["1 worker answered: amqp1@verify [antenna, jobs, ml_results]"],
    );
    assert!(
        o.target.starts_with("amqp://antenna:***@127.0.0.1:"),
        "{o:?}"
    );
    assert_no_secret(&o, &services::env("AMQP_PASSWORD"));

    let o = run_celery(&broker, 1, &["antenna", "other"], "3s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "no worker consumes other:",
            "amqp1@verify [antenna, jobs, ml_results]",
        ],
    );
}

#[tokio::test]
async fn celery_over_amqps_verifies_the_certificate_with_the_ca_file() {
    let ca = services::env("AMQP_TLS_CA");
    let broker = format!("{}?ssl_ca_certs={ca}", services::env("AMQPS_URL"));
    let o = run_celery(&broker, 1, &["antenna", "jobs", "ml_results"], "10s").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &[
            "amqp1@verify [antenna, jobs, ml_results]",
            "TLS, certificate verified",
        ],
    );

    let broker = format!("{}?ssl_cert_reqs=none", services::env("AMQPS_URL"));
    let o = run_celery(&broker, 1, &[], "10s").await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["TLS, certificate not verified (ssl_cert_reqs=none)"],
    );
}

#[tokio::test]
async fn celery_over_amqps_rejects_an_unknown_ca_at_once() {
    let o = run_celery(&services::env("AMQPS_URL"), 1, &[], "10s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "was rejected: it is signed by an unknown authority",
            "ssl_ca_certs=PATH",
        ],
    );
    assert_eq!(o.attempts, 1, "a certificate is not retried: {o:?}");
    assert_no_secret(&o, &services::env("AMQP_PASSWORD"));
}

#[tokio::test]
async fn celery_over_amqp_wrong_password_and_wrong_vhost_are_told_apart() {
    let password = services::env("AMQP_PASSWORD");
    let wrong = amqp_url("antenna").replace(&password, "wrong-secret");
    let o = run_celery(&wrong, 1, &[], "10s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "refused the login of user \"antenna\"",
            "check the user and password",
        ],
    );
    assert_eq!(o.attempts, 1, "{o:?}");
    assert_no_secret(&o, "wrong-secret");

    let o = run_celery(&amqp_url("no-such-vhost"), 1, &[], "10s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &["refused vhost \"no-such-vhost\"", "check the vhost"],
    );
    assert_eq!(o.attempts, 1, "{o:?}");
    assert_no_secret(&o, &password);

    // A vhost where no worker ever started: no mailbox exchange.
    let o = run_celery(&amqp_url("spare"), 1, &[], "1s").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &["vhost \"spare\" has no exchange celery.pidbox"],
    );
}

#[tokio::test]
async fn celery_over_amqp_nothing_listening_is_unreachable() {
    let o = run_celery_unreachable(&format!("amqp://u:secret@127.0.0.1:{}/v", free_port())).await;
    assert_outcome(&o, Verdict::Unreachable, &["where = \"instance\""]);
    assert_no_secret(&o, "secret");
}

#[tokio::test]
async fn celery_over_amqp_hung_worker_fails_within_the_timeout() {
    let broker = amqp_url("stopped");
    let (worker, _) = own_worker(&broker, "amqphung", &["antenna"]).await;

    // SIGSTOP: its mailbox queue stays bound, but it never answers.
    worker.signal("STOP");
    let o = run_celery_within_3s(&broker).await;
    worker.signal("CONT");
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "no worker answered the ping within",
            "a stuck or killed worker?",
        ],
    );
}

// ---------------------------------------------------------------- NATS

fn nats_toml(extra: &str) -> String {
    format!("kind = \"nats\"\nurl_env = \"N\"\ntimeout = \"3s\"\n{extra}")
}

async fn run_nats(url: &str, extra: &str) -> CheckOutcome {
    run_one(None, &nats_toml(extra), &[("N", url.to_string())]).await
}

/// Creates a stream with one durable pull consumer on the JetStream test server, as
/// Antenna does for an ML job; returns the stream's name.
async fn nats_job_stream(consumer: &str) -> String {
    use async_nats::jetstream::{self, consumer::pull, stream};
    let name = services::unique("jobs").replace(['-', '.'], "_");
    let client = async_nats::connect(services::env("NATS_URL"))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let stream = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some(consumer.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn nats_reports_version_jetstream_and_the_streams_consumers() {
    let stream = nats_job_stream("job-worker").await;
    let o = run_nats(
        &services::env("NATS_URL"),
        &format!("streams = [{stream:?}]"),
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &[
            "NATS 2.",
            "JetStream on",
            &format!("streams: {stream} (consumers: job-worker)"),
        ],
    );

    let o = run_nats(
        &services::env("NATS_URL"),
        &format!("streams = [{stream:?}, \"no_such_stream\"]"),
    )
    .await;
    assert_outcome(&o, Verdict::Fail, &["missing stream(s): no_such_stream"]);
}

#[tokio::test]
async fn nats_without_jetstream_fails_when_streams_are_required() {
    let url = services::env("NATS_NOJS_URL");
    let o = run_nats(&url, "").await;
    assert_outcome(&o, Verdict::Pass, &["JetStream off"]);
    let o = run_nats(&url, "streams = [\"antenna_jobs\"]").await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "JetStream off, but streams antenna_jobs are required",
            "-js",
        ],
    );
    assert_eq!(o.attempts, 1, "{o:?}");
    let o = run_nats(&url, "jetstream = true").await;
    assert_outcome(&o, Verdict::Fail, &["but JetStream is required"]);
}

#[tokio::test]
async fn nats_credentials_are_checked_and_never_printed() {
    let password = services::env("NATS_PASSWORD");
    let o = run_nats(&services::env("NATS_AUTH_URL"), "jetstream = true").await;
    assert_outcome(&o, Verdict::Pass, &["JetStream on"]);
    assert!(o.target.contains("antenna:***@"), "{o:?}");
    assert_no_secret(&o, &password);

    let wrong = services::env("NATS_AUTH_URL").replace(&password, "wrong-secret");
    let o = run_nats(&wrong, "").await;
    assert_outcome(&o, Verdict::Fail, &["refused the credentials"]);
    assert_eq!(o.attempts, 1, "{o:?}");
    assert_no_secret(&o, "wrong-secret");

    let token = services::env("NATS_TOKEN");
    let o = run_nats(&services::env("NATS_TOKEN_URL"), "").await;
    assert_outcome(&o, Verdict::Pass, &["JetStream on"]);
    assert!(o.target.starts_with("nats://***@127.0.0.1:"), "{o:?}");
    assert_no_secret(&o, &token);
    let o = run_nats(
        &services::env("NATS_TOKEN_URL").replace(&token, "bad-token"),
        "",
    )
    .await;
    assert_outcome(&o, Verdict::Fail, &["refused the credentials"]);
    assert_no_secret(&o, "bad-token");
}

#[tokio::test]
async fn nats_over_tls_verifies_the_certificate() {
    let url = services::env("NATS_TLS_URL");
    let o = run_nats(
        &url,
        &format!("ca_file = {:?}", services::env("REDIS_TLS_CA")),
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["JetStream on", "TLS, certificate verified"],
    );
    let o = run_nats(&url, "").await;
    assert_outcome(&o, Verdict::Fail, &["was rejected", "unknown authority"]);
    assert_eq!(o.attempts, 1, "{o:?}");
    let o = run_nats(&url, "verify_certificate = false").await;
    assert_outcome(&o, Verdict::Pass, &["TLS, certificate not verified"]);
}

#[tokio::test]
async fn nats_nothing_listening_is_unreachable() {
    let o = run_nats(&format!("nats://127.0.0.1:{}", free_port()), "").await;
    assert_outcome(
        &o,
        Verdict::Unreachable,
        &["cannot connect to nats://127.0.0.1:"],
    );
}

/// A NATS JWT, as `nsc` writes one: `subject`'s claims, signed by `issuer`'s nkey, the
/// `jti` the hash of the claims (as the Go jwt library computes it).
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut claims = serde_json::json!({
        "jti": "",
        "iat": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let hash = sha2::Sha512_256::digest(claims.to_string().as_bytes());
    claims["jti"] = base32(&hash).into();
    let signed = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64(&signature))
}

/// RFC 4648 base32, without padding (the JWT ids of the NATS tools).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// An account's JWT (no limits), signed by `operator`.
fn nats_account_jwt(operator: &nkeys::KeyPair, account: &nkeys::KeyPair) -> String {
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
    });
    nats_jwt(
        operator,
        &account.public_key(),
        "antenna",
        serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
    )
}

/// A user's credentials file (its JWT signed by `account`, and its seed), as `nsc` writes it.
fn nats_creds(account: &nkeys::KeyPair, user: &nkeys::KeyPair) -> String {
    let jwt = nats_jwt(
        account,
        &user.public_key(),
        "verify",
        serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        }),
    );
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    )
}

#[tokio::test]
async fn nats_creds_file_logs_in_and_a_wrong_one_is_refused() {
    // A server in operator mode (decentralised JWT auth), trusting one operator whose one
    // account is preloaded: what a creds file from `nsc` logs in to.
    let dir = tempfile::tempdir().unwrap();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    std::fs::write(dir.path().join("operator.jwt"), &operator_jwt).unwrap();
    let port = free_port();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\noperator: {:?}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {:?}\n}}\n",
            dir.path().join("operator.jwt"),
            account.public_key(),
            nats_account_jwt(&operator, &account)
        ),
    )
    .unwrap();
    let _server = KillOnDrop(
        Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (tests/services/up.sh installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("nats://127.0.0.1:{port}");
    let creds = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        format!("creds_file = {path:?}")
    };

    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let o = run_nats(&url, &creds("good.creds", &nats_creds(&account, &user))).await;
    assert_outcome(&o, Verdict::Pass, &["NATS 2.", "JetStream off"]);
    assert_no_secret(&o, &seed);

    // Without credentials, and with a user of an account the server does not know.
    let o = run_nats(&url, "").await;
    assert_outcome(&o, Verdict::Fail, &["refused the credentials"]);
    let stranger = nkeys::KeyPair::new_account();
    let other = nkeys::KeyPair::new_user();
    let o = run_nats(&url, &creds("wrong.creds", &nats_creds(&stranger, &other))).await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &["refused the credentials", "the credentials file"],
    );
    assert_eq!(o.attempts, 1, "{o:?}");
    assert_no_secret(&o, &other.seed().unwrap());

    // A file that is no credentials file at all.
    let o = run_nats(&url, &creds("garbled.creds", "not a creds file\n")).await;
    assert_outcome(&o, Verdict::Fail, &["cannot read the credentials file"]);
    assert_eq!(o.attempts, 1, "{o:?}");
}

// ---------------------------------------------------------------- Flower

fn flower_toml(url: &str, min_workers: usize, queues: &[&str], timeout: &str) -> String {
    let queues: Vec<String> = queues.iter().map(|q| format!("{q:?}")).collect();
    format!(
        "kind = \"flower\"\nurl = \"{url}\"\nuser_env = \"F_USER\"\npassword_env = \"F_PASS\"\nmin_workers = {min_workers}\nqueues = [{}]\ntimeout = \"{timeout}\"",
        queues.join(", ")
    )
}

#[tokio::test]
async fn flower_with_the_right_credentials_sees_the_workers() {
    let (url, user, password) = (
        services::env("FLOWER_URL"),
        services::env("FLOWER_USER"),
        services::env("FLOWER_PASSWORD"),
    );
    let vars = [("F_USER", user.clone()), ("F_PASS", password.clone())];
    let o = run_one(
        None,
        &flower_toml(&url, 2, &["antenna", "jobs"], "10s"),
        &vars,
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Pass,
        &["2 online: w1@verify [antenna, jobs], w2@verify [antenna]"],
    );
    assert_eq!(
        o.target,
        format!(
            "{}/api/workers",
            url.replacen("http://", &format!("http://{user}:***@"), 1)
        )
    );

    let o = run_one(
        None,
        &flower_toml(&url, 1, &["antenna", "ml_results"], "6s"),
        &vars,
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "no online worker consumes ml_results",
            "-Q antenna,ml_results",
        ],
    );
}

#[tokio::test]
async fn flower_rejects_wrong_or_missing_credentials() {
    let (url, user) = (services::env("FLOWER_URL"), services::env("FLOWER_USER"));
    let o = run_one(
        None,
        &flower_toml(&url, 1, &[], "5s"),
        &[("F_USER", user), ("F_PASS", "wrong".into())],
    )
    .await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "HTTP 401 Unauthorized",
            "the credentials from F_USER and F_PASS were rejected",
        ],
    );
    assert_eq!(o.attempts, 1, "401 is not retried");

    let o = run_one(None, &flower_toml(&url, 1, &[], "5s"), &[]).await;
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "HTTP 401 Unauthorized",
            "Flower wants basic auth: set F_USER and F_PASS",
        ],
    );
}

#[tokio::test]
async fn flower_nothing_listening_is_unreachable() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let o = run_one(None, &flower_toml(&url, 1, &[], "1s"), &[]).await;
    assert_outcome(
        &o,
        Verdict::Unreachable,
        &["cannot connect to Flower", "port 5555"],
    );
}

#[tokio::test]
async fn flower_tells_online_from_offline_workers() {
    let broker = format!("{}/{}", services::env("REDIS_URL"), DB_FLOWER);
    let port = free_port();
    let _flower = CeleryProcess::start(
        &broker,
        &[
            "flower",
            "--address=127.0.0.1",
            &format!("--port={port}"),
            "--basic-auth=ops:pw",
        ],
    );
    let name = format!("{}@verify", services::unique("flw"));
    let worker = CeleryProcess::worker(&broker, &name, "antenna");
    let url = format!("http://127.0.0.1:{port}");
    let vars = [("F_USER", "ops".to_string()), ("F_PASS", "pw".to_string())];
    let o = run_one(None, &flower_toml(&url, 1, &["antenna"], "60s"), &vars).await;
    assert_outcome(&o, Verdict::Pass, &[&format!("1 online: {name} [antenna]")]);

    worker.terminate();
    // Flower learns of the stop from the worker's offline event (or its missed heartbeats).
    let deadline = Instant::now() + Duration::from_secs(30);
    let o = loop {
        let o = run_one(None, &flower_toml(&url, 1, &["antenna"], "5s"), &vars).await;
        if o.verdict != Verdict::Pass || Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_outcome(
        &o,
        Verdict::Fail,
        &[
            "0 of at least 1 worker(s) online",
            &format!("offline: {name}"),
        ],
    );
}

// ---------------------------------------------------------------- the report

#[tokio::test]
async fn report_of_several_checks_fails_on_a_required_one_only() {
    let server = django().await;
    let checks = checks_with(
        Some(&server.uri()),
        &format!(
            "[[environments.t.checks]]\nkind = \"http\"\nheaders = {{ Host = \"antenna.example.org\", \"X-Forwarded-Proto\" = \"https\" }}\ntimeout = \"5s\"\n\n\
             [[environments.t.checks]]\nkind = \"redis\"\nurl_env = \"R\"\ntimeout = \"1s\"\nrequired = false\n\n\
             [[environments.t.checks]]\n{}",
            celery_toml(1, &["antenna"], "5s")
        ),
        &[("R", format!("redis://:secret@127.0.0.1:{}", free_port())), ("BROKER", services::env("CELERY_BROKER_URL"))],
    );
    let report = verify::run(&checks).await;
    let verdicts: Vec<Verdict> = report.checks.iter().map(|c| c.verdict).collect();
    assert_eq!(
        verdicts,
        [Verdict::Pass, Verdict::Unreachable, Verdict::Pass]
    );
    assert!(
        report.passed(),
        "an optional check does not fail the report"
    );
    let table = report.render_table();
    assert!(table.starts_with("CHECK   TARGET"), "{table}");
    assert!(table.contains("unreachable (optional)"), "{table}");
    assert!(table.contains(":***@127.0.0.1"), "{table}");
    assert!(!table.contains("secret"), "{table}");
    assert!(
        table.ends_with("verify: all 2 required checks passed\n"),
        "{table}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["checks"][1]["verdict"], "unreachable");
}

// ---------------------------------------------------------------- support

/// Redis database numbers of the tests that run their own Celery processes (the shared
/// workers use db 1), so that stopping one disturbs no other test.
const DB_CELERY_STOP: u32 = 2;
const DB_FLOWER: u32 = 3;
const DB_CELERY_HUNG: u32 = 4;
/// A database no worker uses.
const DB_EMPTY: u32 = 9;

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Celery process (worker or Flower) of the fixture app, stopped when dropped.
struct CeleryProcess {
    child: Child,
}

impl CeleryProcess {
    fn start(broker: &str, args: &[&str]) -> Self {
        let celery = Path::new(&services::env("TEST_VENV")).join("bin/celery");
        let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/celery");
        let child = Command::new(&celery)
            .arg("--workdir")
            .arg(&app_dir)
            .args(["-A", "app"])
            .args(args)
            .env("CELERY_BROKER_URL", broker)
            .env("PYTHONPATH", &app_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} (run tests/services/up.sh to install it): {e}",
                    celery.display()
                )
            });
        Self { child }
    }

    fn worker(broker: &str, name: &str, queues: &str) -> Self {
        Self::start(
            broker,
            &[
                "worker",
                "--pool=solo",
                "-n",
                name,
                "-Q",
                queues,
                "--without-mingle",
                "--without-gossip",
            ],
        )
    }

    /// SIGKILL: the worker vanishes without a word (its pidbox binding stays behind).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: a warm shutdown; the worker says goodbye (worker-offline event).
    fn terminate(mut self) {
        self.signal("TERM");
        let _ = self.child.wait();
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }
}

/// A child process killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for CeleryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- the deploy stage

#[tokio::test]
async fn deploy_stage_verifier_passes_and_fails_with_what_failed() {
    use pipeline::verify::{EnvironmentChecks, Verifier, VerifyTarget};
    let server = django().await;
    let text = "region = \"us-west-2\"\napplication = \"antenna\"\n\n[images.backend]\nrepository = \"antenna-backend\"\nbuild = { context = \".\" }\n\n\
                [environments.good]\neb_environment = \"antenna-good\"\n[[environments.good.checks]]\nkind = \"http\"\nheaders = { Host = \"antenna.example.org\", \"X-Forwarded-Proto\" = \"https\" }\ntimeout = \"5s\"\n\n\
                [environments.bad]\neb_environment = \"antenna-bad\"\n[[environments.bad.checks]]\nkind = \"http\"\nheaders = { Host = \"antenna.example.org\" }\ntimeout = \"5s\"\n";
    let config = Config::parse(Path::new("deploy.toml"), text).unwrap();
    let target = |env: &str| VerifyTarget {
        environment: env.into(),
        label: "v1-abc".into(),
        url: Some(server.uri()),
    };

    // The verifier the deploy command runs.
    let good = EnvironmentChecks::new(&config, "good");
    let summary = good.verify(&target("good")).await.unwrap();
    assert_eq!(summary, "all 1 required checks passed");

    let bad = EnvironmentChecks::new(&config, "bad");
    let err = bad.verify(&target("bad")).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("http {}/api/v2/ fail: ", server.uri())),
        "{err}"
    );
    assert!(err.contains("HTTP 301 Moved Permanently"), "{err}");
    assert!(err.contains("X-Forwarded-Proto"), "{err}");
}

// ---------------------------------------------------------------- the command

/// Runs `cargo xtask [--json] verify --env t [extra]` against a configuration in a temporary
/// directory; returns the exit status, stdout and stderr.
async fn xtask_verify(
    checks_toml: &str,
    url: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "region = \"us-west-2\"\napplication = \"antenna\"\n\n[images.backend]\nrepository = \"antenna-backend\"\nbuild = {{ context = \".\" }}\n\n[environments.t]\ntarget = \"local\"\nurl = \"{url}\"\n\n{checks_toml}"
    );
    std::fs::write(dir.path().join("deploy.toml"), text).unwrap();
    let mut cmd = integration::xtask();
    cmd.arg("--config")
        .arg(dir.path().join("deploy.toml"))
        .arg("--json")
        .args(["verify", "--env", "t"])
        .args(extra);
    cmd.env_remove("DEPLOY_URL");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn command_prints_the_table_and_json_and_exits_zero_when_all_pass() {
    let server = django().await;
    let broker = services::env("CELERY_BROKER_URL");
    let checks = format!(
        "[[environments.t.checks]]\nkind = \"http\"\nheaders = {{ Host = \"antenna.example.org\", \"X-Forwarded-Proto\" = \"https\" }}\ntimeout = \"5s\"\n\n\
         [[environments.t.checks]]\n{}",
        celery_toml(2, &["antenna", "jobs"], "10s")
    );
    // The configured URL leads nowhere: --url wins over it.
    let (ok, stdout, stderr) = xtask_verify(
        &checks,
        "http://127.0.0.1:9",
        &["--url", &server.uri()],
        &[("BROKER", &broker)],
    )
    .await;
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(json["passed"], true);
    assert_eq!(json["checks"][0]["check"], "http");
    assert_eq!(
        json["checks"][0]["target"],
        format!("{}/api/v2/", server.uri())
    );
    assert_eq!(json["checks"][1]["verdict"], "pass");
    assert!(stderr.contains("CHECK   TARGET"), "{stderr}");
    assert!(
        stderr.contains("2 workers answered: w1@verify [antenna, jobs], w2@verify [antenna]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("verify: all 2 required checks passed"),
        "{stderr}"
    );
}

#[tokio::test]
async fn command_fails_on_a_required_check_and_masks_the_password() {
    let server = django().await;
    let password = services::env("REDIS_AUTH_PASSWORD");
    let wrong = services::env("REDIS_AUTH_URL").replacen("redis://", "redis://:wrong-secret@", 1);
    let checks = "[[environments.t.checks]]\nkind = \"http\"\ntimeout = \"5s\"\n\n\
                  [[environments.t.checks]]\nkind = \"redis\"\nurl_env = \"R\"\ntimeout = \"2s\"\n";
    let (ok, stdout, stderr) = xtask_verify(checks, &server.uri(), &[], &[("R", &wrong)]).await;
    assert!(!ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(json["passed"], false);
    assert_eq!(json["checks"][0]["verdict"], "fail");
    assert!(json["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("DJANGO_ALLOWED_HOSTS"));
    assert_eq!(json["checks"][1]["verdict"], "fail");
    assert!(json["checks"][1]["detail"]
        .as_str()
        .unwrap()
        .contains("WRONGPASS"));
    assert!(
        stderr.contains(
            "error: verify of t failed: http (fail), redis (fail) (details in the table above)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("redis://:***@127.0.0.1:"), "{stderr}");
    for secret in ["wrong-secret", password.as_str()] {
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{secret} leaked:\n{stderr}\n{stdout}"
        );
    }
}

#[tokio::test]
async fn command_names_the_missing_variable() {
    let (ok, stdout, stderr) = xtask_verify(
        "[[environments.t.checks]]\nkind = \"celery\"\nbroker_url_env = \"VERIFY_TEST_UNSET_BROKER\"\n",
        "http://127.0.0.1:9",
        &[],
        &[],
    )
    .await;
    assert!(!ok);
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("environments.t.checks[0] (celery) in "),
        "{stderr}"
    );
    assert!(
        stderr.contains("the celery check needs the Celery broker URL (amqp://…, amqps://…, redis://… or rediss://…) in the environment variable VERIFY_TEST_UNSET_BROKER, which is not set"),
        "{stderr}"
    );
}
