//! A small private client of the Docker Engine over bollard: connect (honouring
//! `DOCKER_HOST`), build from a streamed context, tag, push with explicit credentials.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::context::{BuildContext, ContextStats};
use super::RegistryAuth;

/// Where bollard looks when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Builds and pushes can take long; the engine streams progress meanwhile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker Engine at {host}: {message}\n  hint: start the Docker daemon, or set DOCKER_HOST to a running engine (unix:///path/to/docker.sock, tcp://host:2375)")]
    Unreachable { host: String, message: String },
}

/// How build output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Every line as it comes, through tracing (CI, pipes, files).
    Plain,
    /// Steps on their own line, the rest on one line rewritten in place (a terminal).
    Compact,
}

impl OutputMode {
    /// Plain in CI (`CI` set) or when stderr is not a terminal; compact otherwise.
    pub fn detect() -> Self {
        if std::env::var_os("CI").is_some() || !std::io::stderr().is_terminal() {
            OutputMode::Plain
        } else {
            OutputMode::Compact
        }
    }
}

/// The engine options of one build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// First tag (`repo:tag`), applied by the engine only when the build succeeds.
    pub tag: String,
    pub target: Option<String>,
    pub args: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub platform: String,
    /// The Dockerfile as the user knows it, for messages.
    pub dockerfile_display: String,
    pub output: OutputMode,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub image_id: String,
    pub context: ContextStats,
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub digest: Option<String>,
    pub layers_pushed: u32,
    pub layers_existing: u32,
    pub bytes_sent: u64,
}

/// Retry policy for transient push failures.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// Delay before attempt `n` (1-based retry count): exponential with full jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let max = self.base.saturating_mul(1 << n.min(10));
        Duration::from_millis(fastrand::u64(
            max.as_millis() as u64 / 2..=max.as_millis().max(1) as u64,
        ))
    }
}

/// A connected Docker Engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

impl Engine {
    /// Connects to `host`, else `DOCKER_HOST`, else the default socket, and agrees on an API
    /// version (the engine may be older than bollard).
    pub async fn connect(host: Option<&str>) -> Result<Self, EngineError> {
        let host = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let unreachable = |message: String| EngineError::Unreachable {
            host: host.clone(),
            message,
        };
        let docker = Docker::connect_with_host(&host)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(REQUEST_TIMEOUT);
        let docker = tokio::time::timeout(Duration::from_secs(30), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 30s".into()))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        tracing::debug!("connected to the Docker Engine at {host}");
        Ok(Self { docker, host })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Builds `context` with the classic builder (no provenance attestations); the image is
    /// tagged `opts.tag` only if every step succeeds.
    pub async fn build(&self, context: BuildContext, opts: &BuildOptions) -> Result<Built> {
        let dockerfile = context.dockerfile_name.clone();
        let root = context.root.clone();
        let options = BuildImageOptions {
            dockerfile,
            t: Some(opts.tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(opts.args.clone()),
            labels: Some(opts.labels.clone()),
            platform: opts.platform.clone(),
            target: opts.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let (body, writer, sent) = context.stream();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(body)));
        let mut printer = Printer::new(opts.output);
        let mut step: Option<String> = None;
        let mut image_id: Option<String> = None;
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                            if line.starts_with("Step ") {
                                step = Some(line.to_string());
                            }
                            printer.line(line);
                        }
                    }
                    if let Some(status) = info.status.as_deref() {
                        printer.line(status);
                    }
                    if let Some(id) = info.aux.and_then(|a| a.id) {
                        image_id = Some(id);
                    }
                }
                Err(e) => {
                    failure = Some(stream_error(&e));
                    break;
                }
            }
        }
        printer.finish();
        // Read what the tar writer has to say (a file it could not read, for instance).
        // When the engine failed first, the writer only saw the request end (a broken pipe):
        // the engine's message is the one that matters then.
        drop(stream);
        let written = writer
            .await
            .map_err(|e| anyhow!("the build context writer stopped: {e}"))?;
        let stats = match written {
            Ok(stats) => stats,
            Err(e) if failure.is_none() || !is_broken_pipe(&e) => {
                return Err(e.context(format!("cannot send the build context {}", root.display())))
            }
            Err(_) => ContextStats::default(),
        };
        if let Some(message) = failure {
            let at = match &step {
                Some(s) => format!("at `{s}`"),
                None => "before the first step".to_string(),
            };
            bail!(
                "the image build failed {at} of {}: {message}\n  hint: fix the Dockerfile or the build context; nothing was tagged or pushed",
                opts.dockerfile_display
            );
        }
        let image_id = match image_id {
            Some(id) => id,
            // Older engines only print "Successfully built"; ask for the tag instead.
            None => self
                .image_id(&opts.tag)
                .await?
                .with_context(|| format!("the build ended without an image for {}", opts.tag))?,
        };
        debug_assert_eq!(stats.bytes, sent.load(std::sync::atomic::Ordering::Relaxed));
        Ok(Built {
            image_id,
            context: stats,
        })
    }

    /// The image id of `reference`, or `None` when the engine does not have it.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(anyhow!(
                "cannot inspect the image {reference}: {}",
                error_chain(&e)
            )),
        }
    }

    /// Adds the tag `repo:tag` to `image`.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        self.docker
            .tag_image(
                image,
                Some(TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag.to_string()),
                }),
            )
            .await
            .map_err(|e| anyhow!("cannot tag {image} as {repo}:{tag}: {}", error_chain(&e)))
    }

    /// Removes the tag `reference` (tests, cleanup).
    pub async fn untag(&self, reference: &str) -> Result<()> {
        self.docker
            .remove_image(
                reference,
                Some(RemoveImageOptions {
                    force: false,
                    noprune: false,
                    platforms: None,
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("cannot remove {reference}: {}", error_chain(&e)))
    }

    /// Pushes `repo:tag` with `auth`, retrying transient failures with jittered backoff.
    /// Authentication failures are not retried.
    pub async fn push(
        &self,
        repo: &str,
        tag: &str,
        auth: &RegistryAuth,
        retry: Retry,
    ) -> Result<Pushed> {
        let reference = format!("{repo}:{tag}");
        let mut attempt = 1;
        loop {
            match self.push_once(repo, tag, auth).await {
                Ok(p) => return Ok(p),
                Err(PushFailure::Auth(message)) => bail!(
                    "the registry {} refused the credentials of user {:?} (from {}) for pushing {reference}: {message}\n  hint: check the AWS credentials and that they may push to this repository; the registry address comes from `registry`/DEPLOY_REGISTRY when set",
                    auth.registry, auth.username, auth.source
                ),
                Err(PushFailure::Other(message)) => {
                    bail!("pushing {reference} to {} failed: {message}", auth.registry)
                }
                Err(PushFailure::Transient(message)) if attempt < retry.attempts => {
                    let wait = retry.delay(attempt);
                    tracing::warn!(
                        "pushing {reference} failed (attempt {attempt}/{}): {message}; retrying in {}",
                        retry.attempts,
                        humantime::format_duration(Duration::from_millis(wait.as_millis() as u64))
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(PushFailure::Transient(message)) => bail!(
                    "pushing {reference} to {} failed after {attempt} attempts: {message}\n  hint: check that the registry is up and reachable from the Docker Engine",
                    auth.registry
                ),
            }
        }
    }

    async fn push_once(
        &self,
        repo: &str,
        tag: &str,
        auth: &RegistryAuth,
    ) -> Result<Pushed, PushFailure> {
        let credentials = DockerCredentials {
            username: Some(auth.username.clone()),
            password: Some(auth.password.expose_secret().to_string()),
            serveraddress: Some(auth.registry.clone()),
            ..Default::default()
        };
        let mut stream = self.docker.push_image(
            repo,
            Some(PushImageOptions {
                tag: Some(tag.to_string()),
                platform: None,
            }),
            Some(credentials),
        );
        let mut pushed = Pushed::default();
        // The engine's messages carry no layer id through bollard; uploads are told apart by
        // their size (`total`), which is what the progress lines show.
        let mut uploads: HashMap<i64, i64> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    self.account(&mut pushed, &uploads);
                    return Err(classify(&stream_error(&e)));
                }
            };
            let status = info.status.unwrap_or_default();
            let detail = info.progress_detail.unwrap_or_default();
            match status.as_str() {
                "Pushing" => {
                    if let (Some(cur), Some(total)) = (detail.current, detail.total) {
                        let e = uploads.entry(total).or_insert(0);
                        let before = *e * 4 / total.max(1);
                        *e = (*e).max(cur.min(total));
                        // One line per quarter of each layer, not one per engine message.
                        let now = *e * 4 / total.max(1);
                        if now > before {
                            tracing::info!(
                                "uploading a layer of {}: {} of {}",
                                super::human_bytes(total as u64),
                                super::human_bytes(*e as u64),
                                super::human_bytes(total as u64)
                            );
                        }
                    }
                }
                "Pushed" => {
                    pushed.layers_pushed += 1;
                    tracing::info!("layer pushed ({} of {repo}:{tag})", pushed.layers_pushed);
                }
                "Layer already exists" => {
                    pushed.layers_existing += 1;
                    tracing::info!("layer already in the registry");
                }
                s if s.starts_with("Mounted from ") => {
                    pushed.layers_existing += 1;
                    tracing::info!("layer {}", s.to_lowercase());
                }
                s if s.contains("digest: sha256:") => {
                    pushed.digest = s
                        .split_whitespace()
                        .find(|w| w.starts_with("sha256:"))
                        .map(str::to_string);
                    tracing::info!("{s}");
                }
                "" | "Preparing" | "Waiting" => {}
                s if s.starts_with("Retrying in") => {
                    tracing::warn!("the engine retries a layer upload: {s}")
                }
                s => tracing::debug!("push: {s}"),
            }
        }
        self.account(&mut pushed, &uploads);
        if pushed.digest.is_none() {
            return Err(PushFailure::Other(
                "the engine ended the push without a digest".into(),
            ));
        }
        Ok(pushed)
    }

    fn account(&self, pushed: &mut Pushed, uploads: &HashMap<i64, i64>) {
        pushed.bytes_sent = uploads.values().map(|v| *v as u64).sum();
    }
}

enum PushFailure {
    Auth(String),
    Transient(String),
    Other(String),
}

/// Sorts an engine push error: credentials refused, worth retrying, or final.
fn classify(message: &str) -> PushFailure {
    let m = message.to_ascii_lowercase();
    let auth = [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "401",
    ];
    let transient = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "eof",
        "timeout",
        "timed out",
        "500 internal",
        "502",
        "503",
        "504",
        "internal server error",
        "bad gateway",
        "service unavailable",
        "tls handshake",
        "no such host",
    ];
    if auth.iter().any(|a| m.contains(a)) {
        PushFailure::Auth(message.to_string())
    } else if transient.iter().any(|t| m.contains(t)) {
        PushFailure::Transient(message.to_string())
    } else {
        PushFailure::Other(message.to_string())
    }
}

/// True when the error comes from the engine no longer reading the request body.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The engine's own message for stream errors, else the error and its causes.
fn stream_error(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerStreamError { error } => error.trim().to_string(),
        bollard::errors::Error::DockerResponseServerError {
            message,
            status_code,
        } => {
            format!("{} (HTTP {status_code})", message.trim())
        }
        other => error_chain(other),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Prints build output line by line.
struct Printer {
    mode: OutputMode,
    open_line: bool,
}

impl Printer {
    fn new(mode: OutputMode) -> Self {
        Self {
            mode,
            open_line: false,
        }
    }

    fn line(&mut self, line: &str) {
        match self.mode {
            OutputMode::Plain => tracing::info!("build: {line}"),
            OutputMode::Compact => {
                let mut err = std::io::stderr().lock();
                if line.starts_with("Step ") {
                    let _ = writeln!(
                        err,
                        "{}{line}",
                        if self.open_line { "\r\x1b[K" } else { "" }
                    );
                    self.open_line = false;
                } else {
                    let short: String = line.chars().take(100).collect();
                    let _ = write!(err, "\r\x1b[K  {short}");
                    self.open_line = true;
                }
                let _ = err.flush();
            }
        }
    }

    fn finish(&mut self) {
        if self.open_line {
            eprintln!();
            self.open_line = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_errors_are_sorted() {
        assert!(matches!(
            classify("unauthorized: authentication required"),
            PushFailure::Auth(_)
        ));
        assert!(matches!(
            classify("no basic auth credentials"),
            PushFailure::Auth(_)
        ));
        assert!(matches!(
            classify(
                "Get \"http://127.0.0.1:9/v2/\": dial tcp 127.0.0.1:9: connect: connection refused"
            ),
            PushFailure::Transient(_)
        ));
        assert!(matches!(
            classify("received unexpected HTTP status: 503 Service Unavailable"),
            PushFailure::Transient(_)
        ));
        assert!(matches!(
            classify("manifest invalid"),
            PushFailure::Other(_)
        ));
    }

    #[test]
    fn backoff_grows_with_jitter() {
        let r = Retry {
            attempts: 4,
            base: Duration::from_millis(100),
        };
        for n in 1..4 {
            let d = r.delay(n);
            let max = 100u64 << n;
            assert!(
                d.as_millis() as u64 >= max / 2 && d.as_millis() as u64 <= max,
                "{d:?} for {n}"
            );
        }
    }

    #[tokio::test]
    async fn a_dead_socket_names_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/docker.sock", dir.path().display());
        let err = Engine::connect(Some(&host)).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot reach the Docker Engine at {host}: ")),
            "{err}"
        );
        assert!(err.contains("DOCKER_HOST"), "{err}");
    }
}
