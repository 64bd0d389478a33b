//! The demo backend: a stand-in for Antenna's Django image, small enough to build `FROM scratch`.
//!
//! One binary plays every role of the image; it picks the role from the name it was started as
//! (`/start`, `/start-celeryworker`, `python`…) or, when started as `/entrypoint` or `demo`, from
//! its first argument (so `/entrypoint /start` and `demo sleep 10` work too).
//!
//! | role | what it does |
//! |---|---|
//! | `start` | HTTP API on `0.0.0.0:$PORT` (default 5000): `GET /api/v2/` is a DRF-like API root |
//! | `start-celeryworker` | logs that it consumes `$CELERY_QUEUES`, then idles |
//! | `start-celerybeat` | logs a beat every `$BEAT_INTERVAL` seconds (default 30) |
//! | `start-flower` | HTTP on `0.0.0.0:$FLOWER_PORT` (default 5555): `/healthcheck` → `OK` |
//! | `start-ml-backend` | HTTP on `0.0.0.0:$ML_PORT` (default 2000): `/livez`, `/info` |
//! | `sleep N` | sleeps N seconds (the awscli container's `sleep 9999999`) |
//! | `python manage.py migrate --noinput` | prints what a migration run prints, exits 0 |
//! | `python manage.py shell -c CODE` | only the postdeploy hook's locked migration: says it has no database (so no lock), then as `migrate` |
//! | `check URL` | GET `http://HOST:PORT/PATH`; exit 0 on 200 (for container health checks) |
//! | `fail [CODE] [MESSAGE…]` | prints MESSAGE on stderr and exits with CODE (default 1) |
//!
//! Production-like behaviour is opt-in through the environment, as in Antenna's settings:
//! `DJANGO_ALLOWED_HOSTS` (comma-separated; `*` allows any) answers 400 to other hosts, and
//! `DJANGO_SECURE_SSL_REDIRECT=true` redirects to https unless `X-Forwarded-Proto: https`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// API root entries: resource name → path below `/api/v2/`.
const RESOURCES: &[(&str, &str)] = &[
    ("users", "users/"),
    ("projects", "projects/"),
    ("deployments", "deployments/"),
    ("events", "events/"),
    ("captures", "captures/"),
    ("occurrences", "occurrences/"),
    ("taxa", "taxa/"),
    ("jobs", "jobs/"),
    ("ml/pipelines", "ml/pipelines/"),
    ("ml/algorithms", "ml/algorithms/"),
    ("storage", "storage/"),
    ("status", "status/"),
];

fn main() -> ExitCode {
    install_signal_handlers();
    let mut args: Vec<String> = std::env::args().collect();
    let mut role = base_name(args.first().map(String::as_str).unwrap_or("demo"));
    args.remove(0);
    // `/entrypoint CMD…` and `demo CMD…` run CMD, like Antenna's entrypoint script does.
    while matches!(role.as_str(), "entrypoint" | "demo") {
        if args.is_empty() {
            if role == "entrypoint" {
                role = "start".into();
                break;
            }
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
        role = base_name(&args.remove(0));
    }
    match run(&role, &args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("demo {role}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn base_name(s: &str) -> String {
    Path::new(s)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(s)
        .to_string()
}

fn usage() -> &'static str {
    "usage: demo ROLE [ARGS…]; roles: start, start-celeryworker, start-celerybeat, start-flower, \
     start-ml-backend, sleep N, python manage.py migrate --noinput, check URL, fail [CODE] [MESSAGE]"
}

fn run(role: &str, args: &[String]) -> Result<u8, String> {
    let release = env("RELEASE").unwrap_or_else(|| "unknown".into());
    match role {
        "start" => {
            println!("collecting static files: 0 copied (demo)");
            serve("django", env_port("PORT", 5000)?, api)
        }
        "start-celeryworker" => {
            let queues = env("CELERY_QUEUES").unwrap_or_else(|| "antenna".into());
            println!("celery@demo ready (release {release}); consuming queues: {queues}");
            idle()
        }
        "start-celerybeat" => {
            let every = env_port("BEAT_INTERVAL", 30)?.max(1);
            println!("celery beat started (release {release})");
            loop {
                std::thread::sleep(Duration::from_secs(u64::from(every)));
                println!("beat: scheduler tick");
            }
        }
        "start-flower" => serve("flower", env_port("FLOWER_PORT", 5555)?, flower),
        "start-ml-backend" => serve("ml-backend", env_port("ML_PORT", 2000)?, ml_backend),
        "sleep" => {
            let secs: u64 = args
                .first()
                .ok_or("sleep needs a number of seconds")?
                .parse()
                .map_err(|e| format!("sleep: invalid number of seconds: {e}"))?;
            std::thread::sleep(Duration::from_secs(secs));
            Ok(0)
        }
        "python" | "python3" => manage(args),
        "check" => check(
            args.first()
                .ok_or("check needs a URL such as http://127.0.0.1:5000/api/v2/")?,
        ),
        "fail" => {
            let code = args.first().and_then(|c| c.parse::<u8>().ok());
            let skip = usize::from(code.is_some());
            let message = args.get(skip..).map(|m| m.join(" ")).unwrap_or_default();
            let message = if message.is_empty() {
                "failing on purpose".into()
            } else {
                message
            };
            eprintln!("demo: {message}");
            Ok(code.unwrap_or(1))
        }
        other => Err(format!("unknown role {other:?}; {}", usage())),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_port(name: &str, default: u16) -> Result<u16, String> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("{name}={v:?} is not a number: {e}")),
    }
}

fn idle() -> Result<u8, String> {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `python manage.py migrate --noinput` and friends.
fn manage(args: &[String]) -> Result<u8, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["manage.py", "migrate", rest @ ..] if rest.iter().all(|a| a.starts_with("--")) => {
            print_migrate();
            Ok(0)
        }
        // The postdeploy hook's locked migration (`shell -c` with a script that takes a
        // PostgreSQL advisory lock, then calls `migrate`). There is neither Python nor a
        // database here: say so, and run the stand-in migrate without pretending to lock.
        ["manage.py", "shell", rest @ ..] => {
            let code = rest
                .iter()
                .position(|a| *a == "-c" || *a == "--command")
                .and_then(|i| rest.get(i + 1))
                .ok_or("this demo image runs `python manage.py shell` only with `-c CODE`")?;
            if !code.contains("call_command(\"migrate\"") {
                return Err(
                    "this demo image has no Python interpreter: `manage.py shell -c` runs only the postdeploy hook's migration script (one that calls `call_command(\"migrate\", …)`)"
                        .into(),
                );
            }
            let instance = env("MIGRATE_INSTANCE").unwrap_or_else(|| "this instance".into());
            println!(
                "migrate: demo image, no database: {instance} takes no migration lock and runs the stand-in migrate"
            );
            print_migrate();
            Ok(0)
        }
        ["manage.py", "check", ..] => {
            println!("System check passed (0 silenced).");
            Ok(0)
        }
        _ => Err(format!(
            "this demo image only supports `python manage.py migrate [--noinput]`, `python manage.py shell -c CODE` (the migration hook's) and `python manage.py check`, not `python {}`",
            words.join(" ")
        )),
    }
}

/// What `manage.py migrate` prints when the database is up to date.
fn print_migrate() {
    println!("Operations to perform:\n  Apply all migrations: demo");
    println!("Running migrations:\n  No migrations to apply.");
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Response {
    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

fn serve(name: &str, port: u16, handler: fn(&Request) -> Response) -> Result<u8, String> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| format!("cannot listen on 0.0.0.0:{port}: {e}"))?;
    println!(
        "{name} listening on 0.0.0.0:{port} (release {})",
        env("RELEASE").unwrap_or_else(|| "unknown".into())
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, handler) {
                eprintln!("{e}");
            }
        });
    }
    Ok(0)
}

fn handle(stream: TcpStream, handler: fn(&Request) -> Response) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(64 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(stream, "", Response::text(400, "Bad Request (400)"));
    };
    let mut request = Request {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("/").to_string(),
        headers: Vec::new(),
    };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            request
                .headers
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let response = if matches!(request.method.as_str(), "GET" | "HEAD") {
        handler(&request)
    } else {
        let mut r = Response::json(
            405,
            format!(
                "{{\"detail\":\"Method \\\"{}\\\" not allowed.\"}}",
                json_escape(&request.method)
            ),
        );
        r.headers.push(("Allow", "GET, HEAD".into()));
        r
    };
    println!("{} {} {}", request.method, request.path, response.status);
    let method = request.method.clone();
    respond(stream, &method, response)
}

fn respond(mut stream: TcpStream, method: &str, r: Response) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nX-Demo-Release: {}\r\n",
        r.status,
        r.content_type,
        r.body.len(),
        env("RELEASE").unwrap_or_else(|| "unknown".into())
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method != "HEAD" {
        stream.write_all(r.body.as_bytes())?;
    }
    stream.flush()
}

/// The Django role: allowed hosts, the https redirect, the API root.
fn api(req: &Request) -> Response {
    let host = req.header("Host").unwrap_or("localhost").to_string();
    if let Some(allowed) = env("DJANGO_ALLOWED_HOSTS") {
        let bare = host_without_port(&host);
        let ok = allowed.split(',').map(str::trim).any(|a| {
            a == "*"
                || a.eq_ignore_ascii_case(bare)
                || (a.starts_with('.') && (bare.ends_with(a) || bare == &a[1..]))
        });
        if !ok {
            return Response::text(400, "Bad Request (400)");
        }
    }
    let forwarded = req.header("X-Forwarded-Proto").map(str::to_ascii_lowercase);
    if env("DJANGO_SECURE_SSL_REDIRECT")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        && forwarded.as_deref() != Some("https")
    {
        let mut r = Response::text(301, "");
        r.headers
            .push(("Location", format!("https://{host}{}", req.path)));
        return r;
    }
    let scheme = forwarded.unwrap_or_else(|| "http".into());
    match req.path.as_str() {
        "/api/v2/" | "/api/v2" => {
            let entries: Vec<String> = RESOURCES
                .iter()
                .map(|(name, path)| {
                    format!(
                        "\"{name}\":\"{scheme}://{}/api/v2/{path}\"",
                        json_escape(&host)
                    )
                })
                .collect();
            Response::json(200, format!("{{{}}}", entries.join(",")))
        }
        _ => Response::json(404, "{\"detail\":\"Not found.\"}".into()),
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map_or(host, |h| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn flower(req: &Request) -> Response {
    match req.path.as_str() {
        "/healthcheck" => Response::text(200, "OK"),
        "/api/workers" => Response::json(
            200,
            "{\"celery@demo\":{\"stats\":{},\"active_queues\":[]}}".into(),
        ),
        _ => Response::text(404, "Not Found"),
    }
}

fn ml_backend(req: &Request) -> Response {
    match req.path.as_str() {
        "/livez" | "/readyz" => Response::json(200, "{\"status\":\"ok\"}".into()),
        "/info" | "/api/v1/info" => Response::json(
            200,
            "{\"name\":\"demo ML backend\",\"pipelines\":[{\"name\":\"constant\",\"slug\":\"constant\"}]}".into(),
        ),
        _ => Response::json(404, "{\"detail\":\"Not found.\"}".into()),
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `check http://HOST:PORT/PATH`: exit 0 when the answer is 200.
fn check(url: &str) -> Result<u8, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("check: only http:// URLs are supported, not {url:?}"))?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = TcpStream::connect(authority)
        .map_err(|e| format!("check: cannot connect to {authority}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut status = String::new();
    BufReader::new(stream)
        .read_line(&mut status)
        .map_err(|e| e.to_string())?;
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(0)
    } else {
        eprintln!("check: {url} answered {}", status.trim());
        Ok(1)
    }
}

/// PID 1 in a container gets no default action for SIGTERM: without a handler, `docker stop`
/// waits for its timeout and kills. Exit at once instead.
fn install_signal_handlers() {
    extern "C" fn on_signal(_: i32) {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { _exit(0) }
    }
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    // SAFETY: the handler only calls `_exit`.
    unsafe {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn api_root_lists_resources_with_urls_from_the_host_and_forwarded_proto() {
        let r = api(&request(
            "/api/v2/",
            &[("Host", "api.example.org"), ("X-Forwarded-Proto", "https")],
        ));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "application/json");
        assert!(
            r.body
                .starts_with(r#"{"users":"https://api.example.org/api/v2/users/","#),
            "{}",
            r.body
        );
        assert_eq!(
            r.body.matches("https://api.example.org/api/v2/").count(),
            RESOURCES.len()
        );
        let missing = api(&request("/api/v2/nope/", &[("Host", "x")]));
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (404, r#"{"detail":"Not found."}"#)
        );
    }

    #[test]
    fn manage_py_accepts_migrate_and_refuses_the_rest() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(manage(&args("manage.py migrate --noinput")), Ok(0));
        assert_eq!(manage(&args("manage.py migrate")), Ok(0));
        let err = manage(&args("manage.py shell")).unwrap_err();
        assert!(err.contains("only with `-c CODE`"), "{err}");
        let err = manage(&args("manage.py dbshell")).unwrap_err();
        assert!(err.contains("not `python manage.py dbshell`"), "{err}");
        let hook = |code: &str| {
            let mut a = args("manage.py shell --verbosity 0 -c");
            a.push(code.into());
            manage(&a)
        };
        assert_eq!(
            hook("import x\ncall_command(\"migrate\", interactive=False)"),
            Ok(0)
        );
        let err = hook("print(1)").unwrap_err();
        assert!(err.contains("no Python interpreter"), "{err}");
    }

    #[test]
    fn hosts_and_escaping() {
        assert_eq!(host_without_port("example.org:8080"), "example.org");
        assert_eq!(host_without_port("[::1]:5000"), "::1");
        assert_eq!(host_without_port("localhost"), "localhost");
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
        assert_eq!(base_name("/usr/local/bin/python"), "python");
    }

    #[test]
    fn flower_and_ml_backend_answer_their_health_paths() {
        assert_eq!(flower(&request("/healthcheck", &[])).body, "OK");
        assert_eq!(ml_backend(&request("/livez", &[])).status, 200);
        assert_eq!(ml_backend(&request("/other", &[])).status, 404);
    }
}
