//! The build context: `.dockerignore` with Docker's semantics, and a tar archive written
//! while the files are read, so that the engine receives it as a stream and memory stays
//! flat however large the context is.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use globset::{GlobBuilder, GlobMatcher};
use tokio::sync::mpsc;

/// Size of the pieces the tar is cut into on its way to the engine.
const CHUNK: usize = 64 * 1024;
/// How many pieces may wait for the engine; with [`CHUNK`] this bounds the memory in flight.
const IN_FLIGHT: usize = 8;

/// One line of a `.dockerignore`.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    exception: bool,
    glob: GlobMatcher,
}

/// The rules of a `.dockerignore`, in file order; the last matching rule wins.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` (`origin` names it in errors).
    ///
    /// Like Docker: blank lines and `#` comments are skipped, surrounding spaces trimmed,
    /// paths are cleaned and taken relative to the context root (a leading `/` is dropped),
    /// `!` makes an exception, `*` and `?` stay within one path segment, `**` spans any
    /// number of segments.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut patterns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(raw);
            if cleaned.is_empty() || cleaned == "." {
                continue;
            }
            // Go's filepath.Match has no `{a,b}` alternates: match braces literally.
            let escaped = cleaned.replace('{', "[{]").replace('}', "[}]");
            let glob = GlobBuilder::new(&escaped)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| {
                    format!(
                        "{origin}:{}: invalid pattern {line:?}: fix or remove the line",
                        i + 1
                    )
                })?
                .compile_matcher();
            patterns.push(Pattern {
                text: cleaned,
                exception,
                glob,
            });
        }
        Ok(Self { patterns })
    }

    /// Reads `<context>/.dockerignore`; no file means no rules.
    pub fn load(context: &Path) -> Result<Self> {
        let path = context.join(".dockerignore");
        match fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// True when `rel` (a `/`-separated path relative to the context root) is excluded:
    /// the last rule matching the path, or one of its parent directories, decides.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if matches_self_or_parent(&p.glob, rel) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// True when some `!` rule could re-include something below the directory `rel_dir`:
    /// its literal start (before any wildcard) leads into the directory, or the directory
    /// into it.
    pub fn may_reinclude_below(&self, rel_dir: &str) -> bool {
        let dir = format!("{rel_dir}/");
        self.patterns.iter().filter(|p| p.exception).any(|p| {
            let literal = p.text.split(['*', '?', '[', '\\']).next().unwrap_or("");
            literal.starts_with(&dir) || dir.starts_with(literal)
        })
    }

    /// The rules as cleaned, for messages.
    pub fn rules(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exception {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }
}

fn matches_self_or_parent(glob: &GlobMatcher, rel: &str) -> bool {
    if glob.is_match(rel) {
        return true;
    }
    let mut end = rel.len();
    while let Some(slash) = rel[..end].rfind('/') {
        if glob.is_match(&rel[..slash]) {
            return true;
        }
        end = slash;
    }
    false
}

/// `filepath.Clean` for `/`-separated patterns, without the leading `/`.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// A build context ready to be sent: its root, the rules, and where the Dockerfile goes.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub root: PathBuf,
    ignore: DockerIgnore,
    /// Path of the Dockerfile inside the archive (what the engine's `dockerfile` option names).
    pub dockerfile_name: String,
    /// A Dockerfile from outside the context, added to the archive under `dockerfile_name`.
    outside_dockerfile: Option<PathBuf>,
}

/// What was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ContextStats {
    /// Regular files and links in the archive.
    pub files: u64,
    /// Files and directories left out by `.dockerignore`.
    pub excluded: u64,
    /// Size of the tar stream in bytes.
    pub bytes: u64,
    /// Time from the first byte to the last handed to the engine (streaming only).
    pub send_ms: u64,
}

impl BuildContext {
    /// Checks the context directory and the Dockerfile, and reads `.dockerignore`.
    ///
    /// A Dockerfile inside the context is referred to by its relative path; one outside is
    /// added to the archive under a generated name, as the Docker CLI does.
    pub fn prepare(root: &Path, dockerfile: &Path) -> Result<Self> {
        let meta = fs::metadata(root).with_context(|| {
            format!(
                "build context {} does not exist or cannot be read: check `build.context` in the configuration",
                root.display()
            )
        })?;
        if !meta.is_dir() {
            bail!(
                "build context {} is not a directory: `build.context` must name a directory",
                root.display()
            );
        }
        if !dockerfile.is_file() {
            bail!(
                "Dockerfile {} does not exist: check `build.dockerfile` in the configuration (default: <context>/Dockerfile)",
                dockerfile.display()
            );
        }
        let root =
            fs::canonicalize(root).with_context(|| format!("cannot resolve {}", root.display()))?;
        let df = fs::canonicalize(dockerfile)
            .with_context(|| format!("cannot resolve {}", dockerfile.display()))?;
        let ignore = DockerIgnore::load(&root)?;
        let (dockerfile_name, outside_dockerfile) = match df.strip_prefix(&root) {
            Ok(rel) => (to_slash(rel), None),
            Err(_) => (
                format!(".dockerfile.{:012x}", fastrand::u64(..) >> 16),
                Some(df),
            ),
        };
        Ok(Self {
            root,
            ignore,
            dockerfile_name,
            outside_dockerfile,
        })
    }

    /// True for the files that are always sent: the Dockerfile and `.dockerignore`.
    fn always_sent(&self, rel: &str) -> bool {
        rel == ".dockerignore" || (self.outside_dockerfile.is_none() && rel == self.dockerfile_name)
    }

    /// True when a directory has to be walked although it is excluded: an exception rule
    /// may re-include something below it, or an always-sent file is inside.
    fn must_descend(&self, rel_dir: &str) -> bool {
        self.ignore.may_reinclude_below(rel_dir)
            || (self.outside_dockerfile.is_none()
                && self.dockerfile_name.starts_with(&format!("{rel_dir}/")))
    }

    /// Writes the whole archive to `out`, reading one file at a time.
    pub fn write_tar<W: Write>(&self, out: W) -> Result<ContextStats> {
        let counted = CountingWriter {
            inner: out,
            count: 0,
        };
        let mut tar = tar::Builder::new(counted);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        let mut stats = ContextStats::default();
        self.walk(&self.root.clone(), "", &mut tar, &mut stats)?;
        if let Some(df) = &self.outside_dockerfile {
            tar.append_path_with_name(df, &self.dockerfile_name)
                .with_context(|| {
                    format!(
                        "cannot add the Dockerfile {} to the build context",
                        df.display()
                    )
                })?;
            stats.files += 1;
        }
        let counted = tar
            .into_inner()
            .context("cannot finish the build context archive")?;
        stats.bytes = counted.count;
        let mut inner = counted.inner;
        inner.flush().context("cannot send the build context")?;
        Ok(stats)
    }

    fn walk<W: Write>(
        &self,
        dir: &Path,
        rel_dir: &str,
        tar: &mut tar::Builder<W>,
        stats: &mut ContextStats,
    ) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("cannot list {} in the build context", dir.display()))?
            .collect::<io::Result<_>>()
            .with_context(|| format!("cannot list {} in the build context", dir.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                bail!(
                    "{}: file names in the build context must be UTF-8",
                    entry.path().display()
                );
            };
            let rel = if rel_dir.is_empty() {
                name.to_string()
            } else {
                format!("{rel_dir}/{name}")
            };
            let path = entry.path();
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot read {}", path.display()))?;
            let excluded = self.ignore.is_excluded(&rel) && !self.always_sent(&rel);
            if kind.is_dir() {
                if !excluded {
                    tar.append_dir(&rel, &path).with_context(|| {
                        format!("cannot add {} to the build context", path.display())
                    })?;
                } else {
                    stats.excluded += 1;
                    if !self.must_descend(&rel) {
                        continue;
                    }
                }
                self.walk(&path, &rel, tar, stats)?;
            } else if excluded {
                stats.excluded += 1;
            } else {
                // Regular files stream from disk through the tar writer; links stay links.
                tar.append_path_with_name(&path, &rel).with_context(|| {
                    format!("cannot add {} to the build context", path.display())
                })?;
                stats.files += 1;
            }
        }
        Ok(())
    }

    /// Starts writing the archive on a blocking thread and returns it as a stream of pieces
    /// for the request body; the handle yields what was sent, or why it stopped.
    pub fn stream(
        self,
    ) -> (
        impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static,
        tokio::task::JoinHandle<Result<ContextStats>>,
        Arc<AtomicU64>,
    ) {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(IN_FLIGHT);
        let sent = Arc::new(AtomicU64::new(0));
        let writer = ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
            sent: sent.clone(),
        };
        let handle = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result = self.write_tar(writer).map(|mut stats| {
                stats.send_ms = started.elapsed().as_millis() as u64;
                stats
            });
            if let Err(e) = &result {
                // Abort the request body so that the engine does not build a partial context.
                let _ = tx.blocking_send(Err(io::Error::other(format!("{e:#}"))));
            }
            result
        });
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (body, handle, sent)
    }
}

fn to_slash(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Cuts what the tar writer produces into pieces and hands them to the request body,
/// waiting while the engine is behind (bounded channel).
struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    sent: Arc<AtomicU64>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let n = piece.len() as u64;
        self.tx.blocking_send(Ok(piece)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Docker Engine stopped reading the build context",
            )
        })?;
        self.sent.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, ".dockerignore").unwrap()
    }

    #[test]
    fn plain_names_match_at_the_root_and_exclude_directory_contents() {
        let r = rules("node_modules\n/build\n# comment\n\n  secrets.env  \n");
        assert!(r.is_excluded("node_modules"));
        assert!(r.is_excluded("node_modules/a/b.js"));
        assert!(r.is_excluded("build/out.o"));
        assert!(r.is_excluded("secrets.env"));
        // Relative to the root only, like Docker (not gitignore).
        assert!(!r.is_excluded("src/node_modules"));
        assert!(!r.is_excluded("src/secrets.env"));
        assert!(!r.is_excluded("# comment"));
    }

    #[test]
    fn star_stays_in_one_segment_and_double_star_spans_many() {
        let r = rules("*.log\ndocs/*/draft.md\n**/*.pyc\n");
        assert!(r.is_excluded("a.log"));
        assert!(!r.is_excluded("logs/a.log"));
        assert!(r.is_excluded("docs/x/draft.md"));
        assert!(!r.is_excluded("docs/x/y/draft.md"));
        assert!(r.is_excluded("m.pyc"));
        assert!(r.is_excluded("a/b/c/m.pyc"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let r = rules("*.md\n!README.md\nREADME.md\n!keep/*.md\n");
        assert!(r.is_excluded("CHANGES.md"));
        assert!(r.is_excluded("README.md"), "a later rule excludes it again");
        assert!(!r.is_excluded("keep/a.md"));
        let r = rules("data\n!data/keep.txt\n");
        assert!(r.is_excluded("data/drop.txt"));
        assert!(!r.is_excluded("data/keep.txt"));
        assert!(r.may_reinclude_below("data"));
        assert!(!r.may_reinclude_below("other"));
        assert!(rules("!**/*.md").may_reinclude_below("any"));
    }

    #[test]
    fn patterns_are_cleaned_and_braces_are_literal() {
        let r = rules("./a/../b/\n{x,y}\n");
        assert!(r.is_excluded("b/c"));
        assert!(!r.is_excluded("a"));
        assert!(r.is_excluded("{x,y}"));
        assert!(!r.is_excluded("x"));
        assert_eq!(r.rules().collect::<Vec<_>>(), ["b", "{x,y}"]);
    }

    #[test]
    fn a_bad_pattern_names_the_line() {
        let err = DockerIgnore::parse("ok\n[z-a\n", "ctx/.dockerignore").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("ctx/.dockerignore:2: invalid pattern \"[z-a\""),
            "{msg}"
        );
    }

    fn names(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect()
    }

    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        for f in [
            "Dockerfile",
            "app.py",
            "a.log",
            "data/keep.txt",
            "data/drop.txt",
            "cache/x/y.bin",
            "docker/Dockerfile.prod",
        ] {
            let path = p.join(f);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, f).unwrap();
        }
        fs::write(
            p.join(".dockerignore"),
            "*.log\ndata\n!data/keep.txt\ncache\nDockerfile\n.dockerignore\ndocker\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn archive_leaves_out_ignored_files_but_keeps_dockerfile_and_dockerignore() {
        let d = fixture();
        let ctx = BuildContext::prepare(d.path(), &d.path().join("Dockerfile")).unwrap();
        assert_eq!(ctx.dockerfile_name, "Dockerfile");
        let mut out = Vec::new();
        let stats = ctx.write_tar(&mut out).unwrap();
        let got = names(&out);
        assert_eq!(
            got,
            [".dockerignore", "Dockerfile", "app.py", "data/keep.txt"]
        );
        assert_eq!(stats.files, 4);
        assert_eq!(stats.bytes, out.len() as u64);
        assert_eq!(
            stats.excluded, 5,
            "a.log, data, data/drop.txt, cache, docker"
        );
    }

    #[test]
    fn dockerfile_in_an_excluded_directory_is_still_sent() {
        let d = fixture();
        let ctx =
            BuildContext::prepare(d.path(), &d.path().join("docker/Dockerfile.prod")).unwrap();
        assert_eq!(ctx.dockerfile_name, "docker/Dockerfile.prod");
        let mut out = Vec::new();
        ctx.write_tar(&mut out).unwrap();
        assert!(names(&out).contains(&"docker/Dockerfile.prod".to_string()));
    }

    #[test]
    fn dockerfile_outside_the_context_is_added_under_a_generated_name() {
        let d = fixture();
        let outside = tempfile::tempdir().unwrap();
        let df = outside.path().join("Dockerfile.ci");
        fs::write(&df, "FROM scratch\n").unwrap();
        let ctx = BuildContext::prepare(&d.path().join("data"), &df).unwrap();
        assert!(
            ctx.dockerfile_name.starts_with(".dockerfile."),
            "{}",
            ctx.dockerfile_name
        );
        let mut out = Vec::new();
        ctx.write_tar(&mut out).unwrap();
        let got = names(&out);
        assert_eq!(got, ["drop.txt", "keep.txt", ctx.dockerfile_name.as_str()]);
    }

    #[test]
    fn missing_context_and_dockerfile_are_clear_errors() {
        let d = tempfile::tempdir().unwrap();
        let err = BuildContext::prepare(&d.path().join("nope"), &d.path().join("Dockerfile"))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("nope does not exist"),
            "{err:#}"
        );
        let err = BuildContext::prepare(d.path(), &d.path().join("Dockerfile")).unwrap_err();
        assert!(
            format!("{err:#}").contains("Dockerfile")
                && format!("{err:#}").contains("does not exist"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn the_stream_yields_the_same_archive_in_bounded_pieces() {
        use futures_util::StreamExt;
        let d = fixture();
        fs::write(d.path().join("big.bin"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        let ctx = BuildContext::prepare(d.path(), &d.path().join("Dockerfile")).unwrap();
        let mut expected = Vec::new();
        ctx.write_tar(&mut expected).unwrap();
        let (body, handle, sent) = ctx.stream();
        let pieces: Vec<Bytes> = body.map(|p| p.unwrap()).collect().await;
        let stats = handle.await.unwrap().unwrap();
        assert!(pieces.iter().all(|p| p.len() <= CHUNK));
        assert!(pieces.len() > 3);
        let joined: Vec<u8> = pieces.concat();
        assert_eq!(joined, expected);
        assert_eq!(stats.bytes, joined.len() as u64);
        assert!(stats.send_ms < 60_000);
        assert_eq!(sent.load(Ordering::Relaxed), joined.len() as u64);
    }
}
