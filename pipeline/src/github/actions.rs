//! GitHub Actions workflow commands and files, used when `GITHUB_ACTIONS=true`.
//!
//! `::group::`/`::endgroup::` around each stage, `::error file=…,line=…,col=…::` annotations,
//! `::add-mask::` for secrets, step outputs appended to `$GITHUB_OUTPUT` (multi-line values
//! with a random delimiter) and markdown appended to `$GITHUB_STEP_SUMMARY`. Outside Actions
//! every method does nothing, so the same code runs on a laptop.
//!
//! Commands go to stderr: the runner reads workflow commands from both streams, and stdout is
//! kept for machine output (`--json`).

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

/// Severity of an annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

/// An annotation on a file position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Annotation {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub col: Option<usize>,
    pub title: Option<String>,
    pub message: String,
}

type Sink = Arc<Mutex<Box<dyn Write + Send>>>;

/// The Actions runner's channels; inert unless enabled.
#[derive(Clone)]
pub struct Actions {
    enabled: bool,
    out: Sink,
    output_file: Option<PathBuf>,
    summary_file: Option<PathBuf>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("enabled", &self.enabled)
            .field("output_file", &self.output_file)
            .field("summary_file", &self.summary_file)
            .finish()
    }
}

impl Actions {
    /// Enabled when `GITHUB_ACTIONS=true`, with the files the runner names in `GITHUB_OUTPUT`
    /// and `GITHUB_STEP_SUMMARY`; commands on stderr.
    pub fn from_env() -> Self {
        let enabled = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
        let file = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self::new(
            enabled,
            Box::new(std::io::stderr()),
            file("GITHUB_OUTPUT"),
            file("GITHUB_STEP_SUMMARY"),
        )
    }

    /// Nothing special: what a local run gets.
    pub fn disabled() -> Self {
        Self::new(false, Box::new(std::io::sink()), None, None)
    }

    /// Explicit channels (tests, or a runner-like environment).
    pub fn new(
        enabled: bool,
        out: Box<dyn Write + Send>,
        output_file: Option<PathBuf>,
        summary_file: Option<PathBuf>,
    ) -> Self {
        Self {
            enabled,
            out: Arc::new(Mutex::new(out)),
            output_file,
            summary_file,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn command(&self, line: &str) {
        if self.enabled {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Opens a collapsible group in the log; it closes when the guard drops.
    pub fn group(&self, title: &str) -> Group {
        self.command(&format!("::group::{}", escape_data(title)));
        Group {
            actions: self.clone(),
        }
    }

    /// One annotation per lint finding, at its file, line and column (relative to `root`).
    pub fn annotate_lint(&self, report: &crate::lint::Report, root: &Path) {
        use crate::lint::Severity;
        for f in &report.findings {
            let level = match f.severity {
                Severity::Error => Level::Error,
                Severity::Warning => Level::Warning,
            };
            self.annotate(
                level,
                &Annotation {
                    file: Some(crate::lint::relative(&f.file, root)),
                    line: (f.line > 0).then_some(f.line),
                    col: (f.column > 0).then_some(f.column),
                    title: Some(format!("{} {}", f.rule, f.name)),
                    message: if f.hint.is_empty() {
                        f.message.clone()
                    } else {
                        format!("{}\n{}", f.message, f.hint)
                    },
                },
            );
        }
    }

    /// An annotation (`::error file=…,line=…,col=…,title=…::message`).
    pub fn annotate(&self, level: Level, a: &Annotation) {
        if !self.enabled {
            return;
        }
        let mut props = Vec::new();
        if let Some(f) = &a.file {
            props.push(format!("file={}", escape_property(f)));
        }
        if let Some(l) = a.line {
            props.push(format!("line={l}"));
        }
        if let Some(c) = a.col {
            props.push(format!("col={c}"));
        }
        if let Some(t) = &a.title {
            props.push(format!("title={}", escape_property(t)));
        }
        let props = if props.is_empty() {
            String::new()
        } else {
            format!(" {}", props.join(","))
        };
        self.command(&format!(
            "::{}{props}::{}",
            level.command(),
            escape_data(&a.message)
        ));
    }

    /// Hides `secret` (each of its lines) in the rest of the job's log.
    pub fn mask(&self, secret: &str) {
        for line in secret.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.command(&format!("::add-mask::{}", escape_data(line)));
        }
    }

    /// Appends a step output `name=value` to `$GITHUB_OUTPUT` (heredoc form with a random
    /// delimiter for multi-line values).
    pub fn set_output(&self, name: &str, value: &str) -> Result<()> {
        let Some(path) = self.output_file.as_deref().filter(|_| self.enabled) else {
            return Ok(());
        };
        append(path, &key_value(name, value))
            .with_context(|| format!("cannot write the step output {name:?} to $GITHUB_OUTPUT"))
    }

    /// Appends markdown to `$GITHUB_STEP_SUMMARY`.
    pub fn summary(&self, markdown: &str) -> Result<()> {
        let Some(path) = self.summary_file.as_deref().filter(|_| self.enabled) else {
            return Ok(());
        };
        let mut text = markdown.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        append(path, &text).context("cannot write the job summary to $GITHUB_STEP_SUMMARY")
    }
}

/// Closes its `::group::` when dropped.
#[must_use = "the group closes when this guard drops"]
pub struct Group {
    actions: Actions,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.actions.command("::endgroup::");
    }
}

fn append(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot append to {}", path.display()))
}

/// `name=value\n`, or `name<<DELIM\nvalue\nDELIM\n` when the value has a newline.
pub fn key_value(name: &str, value: &str) -> String {
    if !value.contains('\n') && !value.contains('\r') {
        return format!("{name}={value}\n");
    }
    let delimiter = loop {
        let d = format!("ghadelimiter_{:016x}", fastrand::u64(..));
        if !value.contains(&d) {
            break d;
        }
    };
    let mut s = String::new();
    let _ = write!(s, "{name}<<{delimiter}\n{value}\n{delimiter}\n");
    s
}

/// Escapes a command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command's property value.
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The URL of the running workflow run (`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`).
pub fn run_url() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let server = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    Some(format!(
        "{}/{}/actions/runs/{}",
        server.trim_end_matches('/'),
        var("GITHUB_REPOSITORY")?,
        var("GITHUB_RUN_ID")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn commands_are_escaped() {
        let buf = Buf::default();
        let a = Actions::new(true, Box::new(buf.clone()), None, None);
        {
            let _g = a.group("render: staging");
            a.annotate(
                Level::Error,
                &Annotation {
                    file: Some("Dockerrun.template.json".into()),
                    line: Some(3),
                    col: Some(7),
                    title: Some("lint: memory, essential".into()),
                    message: "no memory\n50% done".into(),
                },
            );
            a.mask("p@ss\nword2");
        }
        assert_eq!(
            buf.text(),
            "::group::render: staging\n\
             ::error file=Dockerrun.template.json,line=3,col=7,title=lint%3A memory%2C essential::no memory%0A50%25 done\n\
             ::add-mask::p@ss\n::add-mask::word2\n::endgroup::\n"
        );
    }

    #[test]
    fn disabled_prints_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let buf = Buf::default();
        let out = dir.path().join("out");
        let a = Actions::new(false, Box::new(buf.clone()), Some(out.clone()), None);
        drop(a.group("x"));
        a.mask("secret");
        a.set_output("k", "v").unwrap();
        assert_eq!(buf.text(), "");
        assert!(!out.exists());
    }

    #[test]
    fn multi_line_outputs_use_a_fresh_delimiter() {
        let kv = key_value("diff", "a\nb");
        let (head, rest) = kv.split_once('\n').unwrap();
        let delim = head.strip_prefix("diff<<").unwrap();
        assert!(delim.starts_with("ghadelimiter_"));
        assert_eq!(rest, format!("a\nb\n{delim}\n"));
        assert_eq!(key_value("label", "v1-abc"), "label=v1-abc\n");
    }
}
