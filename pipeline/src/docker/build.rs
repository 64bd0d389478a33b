//! Building an image: the context streamed to the engine (`.dockerignore` honoured), the
//! build options of the configuration (`args`, `target`, `platform`), progress on stderr.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;

use super::context::{BuildContext, ContextStats};
use super::{stream_error, Engine};
use crate::config::{BuildSpec, Config};

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

/// The context and options of an image of the configuration (`[images.NAME.build]`): the
/// directory, the Dockerfile (default `<context>/Dockerfile`), and what the engine is told.
pub fn prepare(
    config: &Config,
    build: &BuildSpec,
    tag: String,
    labels: HashMap<String, String>,
    output: OutputMode,
) -> Result<(BuildContext, BuildOptions)> {
    let context_dir = config.resolve(&build.context);
    let dockerfile: PathBuf = match &build.dockerfile {
        Some(d) => config.resolve(d),
        None => context_dir.join("Dockerfile"),
    };
    let context = BuildContext::prepare(&context_dir, &dockerfile)?;
    let options = BuildOptions {
        tag,
        target: build.target.clone(),
        args: build
            .args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        labels,
        platform: build.platform.clone(),
        dockerfile_display: dockerfile.display().to_string(),
        output,
    };
    Ok((context, options))
}

impl Engine {
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
}

/// True when the error comes from the engine no longer reading the request body.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
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
