//! Pinned git sources of built images: `[images.NAME] source = { git = "URL", rev = "REV" }`.
//!
//! The `git` CLI fetches the URL into a bare mirror under `target/sources/mirrors/` (one per
//! URL, fetched again only when the rev is not already in it or is a branch), and the commit
//! the rev resolves to is unpacked into `target/sources/NAME/COMMIT/` (reused as long as it
//! exists). The image's `build.context` and `build.dockerfile` are then taken inside that tree.
//! The commit is recorded in the [`Release`] (and from there in the image labels and the EB
//! version description). Credentials in the URL are given to git, never printed: messages
//! show the URL with them replaced by `***`, labels the URL without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, SourceSpec};
use crate::release::Release;

/// Where sources are fetched to, relative to the configuration's directory.
pub const CACHE_DIR: &str = "target/sources";

/// The commit an image's source was built from, as the release records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinnedSource {
    /// The image name (`[images.NAME]`).
    pub image: String,
    /// The URL without credentials.
    pub url: String,
    /// The rev of the configuration.
    pub rev: String,
    /// The full commit id `rev` resolved to.
    pub commit: String,
    /// False when `rev` is a branch (its head at fetch time).
    pub pinned: bool,
}

/// A source unpacked on disk.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub pin: PinnedSource,
    /// The unpacked tree of the commit.
    pub dir: PathBuf,
    /// True when the tree was there already (nothing fetched or unpacked).
    pub reused: bool,
}

/// What a rev named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RevKind {
    Commit,
    Tag,
    Branch,
}

/// Checks the shape of a `source.git` URL (the message does not repeat the URL's credentials).
pub fn check_git_url(url: &str) -> Result<(), String> {
    const HINT: &str = "expected https://host/org/repo.git, ssh://git@host/org/repo.git, git@host:org/repo.git or file:///path/to/repo.git";
    if url.trim().is_empty() {
        return Err(format!("is empty: {HINT}"));
    }
    if url.starts_with('-') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{} is not a git URL: {HINT}", redacted(url)));
    }
    if url.contains("://") {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("{} is not a URL ({e}): {HINT}", redacted(url)))?;
        if !["https", "http", "ssh", "git", "file"].contains(&parsed.scheme()) {
            return Err(format!(
                "the scheme {:?} is not one git fetches from here: {HINT}",
                parsed.scheme()
            ));
        }
        if parsed.scheme() != "file" && parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("{} has no host: {HINT}", redacted(url)));
        }
        return Ok(());
    }
    // scp-like `[user@]host:path`.
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') => Ok(()),
        _ => Err(format!("{} is not a git URL: {HINT}", redacted(url))),
    }
}

/// The URL for messages: user and password of a URL replaced by `***` (for `ssh://` and
/// `user@host:path` only a password; their user name is not a secret).
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if url.contains("://") => {
            let ssh = u.scheme() == "ssh";
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if !ssh && !u.username().is_empty() {
                let _ = u.set_username("***");
            }
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The URL for labels and the release: without any credentials.
pub fn public_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if url.contains("://") => {
            let _ = u.set_password(None);
            if u.scheme() != "ssh" {
                let _ = u.set_username("");
            }
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The secrets of a URL (user name and password of a non-ssh URL), to scrub from git's output.
fn secrets(url: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(url) else {
        return vec![];
    };
    let mut s = vec![];
    if let Some(p) = u.password() {
        s.push(p.to_string());
    }
    if u.scheme() != "ssh" && !u.username().is_empty() {
        s.push(u.username().to_string());
    }
    s.retain(|x| x.len() >= 3);
    s
}

/// `text` with the URL and its credentials replaced (for git's own messages).
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redacted(url));
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// True for a full (40 hex digit) commit id.
fn is_full_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit())
}

/// Runs git with prompts off; its output, or an error with its scrubbed stderr.
fn git(dir: Option<&Path>, args: &[&str], url: &str) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("--git-dir").arg(d);
    }
    let out = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .stdin(Stdio::null())
        .output()
        .context("cannot run git: is it installed? (the README lists it as a prerequisite)")?;
    if !out.status.success() {
        let shown: Vec<String> = args.iter().map(|a| scrub(a, url)).collect();
        bail!(
            "git {} failed: {}",
            shown.join(" "),
            scrub(String::from_utf8_lossy(&out.stderr).trim(), url)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit `rev` names in the mirror, and what it is.
fn lookup(mirror: &Path, rev: &str, url: &str) -> Option<(String, RevKind)> {
    let commit = |spec: String| {
        git(
            Some(mirror),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{spec}^{{commit}}"),
            ],
            url,
        )
        .ok()
        .filter(|c| is_full_commit(c))
    };
    if is_full_commit(rev) {
        return commit(rev.to_string()).map(|c| (c, RevKind::Commit));
    }
    if let Some(c) = commit(format!("refs/tags/{rev}")) {
        return Some((c, RevKind::Tag));
    }
    if let Some(c) = commit(format!("refs/heads/{rev}")) {
        return Some((c, RevKind::Branch));
    }
    let abbreviated = rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit());
    abbreviated
        .then(|| commit(rev.to_string()))
        .flatten()
        .map(|c| (c, RevKind::Commit))
}

/// Fetches every branch and tag of `url` into the mirror.
fn fetch_all(mirror: &Path, url: &str) -> Result<()> {
    git(
        Some(mirror),
        &[
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
        url,
    )
    .map(drop)
}

/// A fresh name next to `path` for a directory that is renamed into place when complete.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp-{:08x}", fastrand::u32(..)))
}

/// Renames a complete `tmp` to `dest`; when another run got there first, keeps theirs.
fn put_in_place(tmp: &Path, dest: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::remove_dir_all(tmp);
        if !dest.is_dir() {
            return Err(e)
                .with_context(|| format!("cannot move the fetched source to {}", dest.display()));
        }
    }
    Ok(())
}

/// Fetches `spec` for image `image` into `cache` (see the module documentation).
pub fn fetch(cache: &Path, image: &str, spec: &SourceSpec) -> Result<Fetched> {
    let url = spec.git.as_str();
    let rev = spec.rev.as_str();
    let shown = redacted(url);
    let trees = cache.join(image);
    let pin = |commit: &str, pinned: bool| PinnedSource {
        image: image.to_string(),
        url: public_url(url),
        rev: rev.to_string(),
        commit: commit.to_string(),
        pinned,
    };
    if is_full_commit(rev) {
        let dir = trees.join(rev.to_ascii_lowercase());
        if dir.is_dir() {
            tracing::info!(
                "images.{image}.source: commit {rev} of {shown} already fetched ({})",
                dir.display()
            );
            return Ok(Fetched {
                pin: pin(&rev.to_ascii_lowercase(), true),
                dir,
                reused: true,
            });
        }
    }
    let key = hex::encode(Sha256::digest(public_url(url).as_bytes()));
    let mirror = cache.join("mirrors").join(format!("{}.git", &key[..16]));
    let fetch_failed = |e: anyhow::Error| {
        e.context(format!(
            "images.{image}.source.git: cannot fetch {shown}: check the URL, that this machine can reach it, and its credentials (a token in the URL or git's credential helper); nothing was built"
        ))
    };
    let mut fetched = false;
    if !mirror.is_dir() {
        // Invariant: `mirror` is `<cache>/mirrors/<key>.git`, so it has a parent.
        std::fs::create_dir_all(mirror.parent().expect("mirrors/ has a parent"))
            .with_context(|| format!("cannot create {}", cache.display()))?;
        let tmp = temporary(&mirror);
        let tmp_str = tmp.to_string_lossy().to_string();
        let made = git(None, &["init", "--quiet", "--bare", &tmp_str], url)
            .and_then(|_| fetch_all(&tmp, url));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(fetch_failed(e));
        }
        put_in_place(&tmp, &mirror)?;
        fetched = true;
    }
    let mut found = lookup(&mirror, rev, url);
    // A branch moves, and a rev not in the mirror may have been pushed since: fetch again.
    if !fetched && matches!(found, None | Some((_, RevKind::Branch))) {
        tracing::info!("images.{image}.source: fetching {shown}");
        fetch_all(&mirror, url).map_err(fetch_failed)?;
        found = lookup(&mirror, rev, url);
    }
    // A commit that no branch or tag reaches (servers that allow fetching it by id).
    if found.is_none()
        && is_full_commit(rev)
        && git(
            Some(&mirror),
            &["fetch", "--quiet", "--no-tags", url, rev],
            url,
        )
        .is_ok()
    {
        found = lookup(&mirror, rev, url);
    }
    let Some((commit, kind)) = found else {
        let tags = git(
            Some(&mirror),
            &["tag", "--list", "--sort=-creatordate"],
            url,
        )
        .unwrap_or_default();
        let tags: Vec<&str> = tags.lines().take(5).collect();
        bail!(
            "images.{image}.source.rev: {rev:?} is no tag, branch or commit of {shown}{}: set `rev` to a tag or a full commit id that exists there; nothing was built",
            if tags.is_empty() {
                " (it has no tags)".to_string()
            } else {
                format!(" (its latest tags: {})", tags.join(", "))
            }
        );
    };
    if kind == RevKind::Branch {
        tracing::warn!(
            "images.{image}.source.rev {rev:?} is a branch of {shown}, not pinned: building its head {commit}; set `rev` to a tag or a commit id for a reproducible release"
        );
    }
    let dir = trees.join(&commit);
    if dir.is_dir() {
        tracing::info!(
            "images.{image}.source: {rev} is commit {commit}, already unpacked ({})",
            dir.display()
        );
        return Ok(Fetched {
            pin: pin(&commit, kind != RevKind::Branch),
            dir,
            reused: true,
        });
    }
    std::fs::create_dir_all(&trees)
        .with_context(|| format!("cannot create {}", trees.display()))?;
    let tmp = temporary(&dir);
    if let Err(e) = unpack(&mirror, &commit, &tmp, url) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "images.{image}.source: cannot unpack commit {commit} of {shown}"
        )));
    }
    put_in_place(&tmp, &dir)?;
    tracing::info!(
        "images.{image}.source: {rev} of {shown} is commit {commit}, unpacked in {}",
        dir.display()
    );
    Ok(Fetched {
        pin: pin(&commit, kind != RevKind::Branch),
        dir,
        reused: false,
    })
}

/// Unpacks the tree of `commit` into `dest` (`git archive`, streamed into the tar reader).
fn unpack(mirror: &Path, commit: &str, dest: &Path, url: &str) -> Result<()> {
    std::fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut child = Command::new("git")
        .arg("--git-dir")
        .arg(mirror)
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git archive")?;
    // Invariant: the child was spawned with `Stdio::piped()` just above.
    let stdout = child.stdout.take().expect("piped");
    let mut archive = tar::Archive::new(stdout);
    let unpacked = archive.unpack(dest);
    // The reader stops at the end-of-archive marker: read git's padding after it too, or
    // git dies of a closed pipe.
    let _ = std::io::copy(&mut archive.into_inner(), &mut std::io::sink());
    let out = child
        .wait_with_output()
        .context("git archive did not finish")?;
    if !out.status.success() {
        bail!(
            "git archive failed: {}",
            scrub(String::from_utf8_lossy(&out.stderr).trim(), url)
        );
    }
    unpacked.with_context(|| format!("cannot unpack into {}", dest.display()))
}

/// Before a build: fetches the source of every image that has one, points its `build`
/// paths into the fetched tree (checking that the context and the Dockerfile are there),
/// and records the commits in `release`. With `dry_run`, only says what would be fetched.
/// Nothing is built before this has succeeded for every image.
pub fn prepare(config: &mut Config, release: &mut Release, dry_run: bool) -> Result<()> {
    // Absolute, since the build paths are set to it and `config.resolve` keeps those as
    // they are (a relative `--config` gives a relative root).
    let cache = std::path::absolute(config.root.join(CACHE_DIR))
        .with_context(|| format!("cannot resolve {}", config.root.join(CACHE_DIR).display()))?;
    for (name, image) in config.images.iter_mut() {
        let (Some(spec), Some(build)) = (&image.source, image.build.as_mut()) else {
            continue;
        };
        if release.sources.iter().any(|p| &p.image == name) {
            continue;
        }
        if dry_run {
            tracing::info!(
                "dry run: images.{name} would be built from {} at {} (context {}, not fetched)",
                redacted(&spec.git),
                spec.rev,
                build.context.display()
            );
            continue;
        }
        let fetched = fetch(&cache, name, spec)?;
        let context = fetched.dir.join(&build.context);
        if !context.is_dir() {
            bail!(
                "images.{name}.build.context: {} is not a directory of {} at {} (commit {}): fix the path (relative to the source's root) or `rev`; nothing was built",
                build.context.display(),
                redacted(&spec.git),
                spec.rev,
                fetched.pin.commit
            );
        }
        let dockerfile = match &build.dockerfile {
            Some(d) => fetched.dir.join(d),
            None => context.join("Dockerfile"),
        };
        if !dockerfile.is_file() {
            bail!(
                "images.{name}.build.dockerfile: {} is not in {} at {} (commit {}): fix the path (relative to the source's root) or `rev`; nothing was built",
                dockerfile.strip_prefix(&fetched.dir).unwrap_or(&dockerfile).display(),
                redacted(&spec.git),
                spec.rev,
                fetched.pin.commit
            );
        }
        build.context = context;
        build.dockerfile = Some(dockerfile);
        release.sources.push(fetched.pin);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_shown() {
        let url = "https://deploy-bot:s3cr3t-token@git.example.com/org/antenna.git";
        assert_eq!(
            redacted(url),
            "https://***:***@git.example.com/org/antenna.git"
        );
        assert_eq!(public_url(url), "https://git.example.com/org/antenna.git");
        let token_only = "https://ghp_abcdef@git.example.com/org/antenna.git";
        assert_eq!(
            redacted(token_only),
            "https://***@git.example.com/org/antenna.git"
        );
        let said = scrub(
            &format!("fatal: unable to access '{url}/': auth failed for s3cr3t-token"),
            url,
        );
        assert!(
            !said.contains("s3cr3t") && !said.contains("deploy-bot"),
            "{said}"
        );
        // An ssh user name is no secret.
        assert_eq!(
            redacted("ssh://git@git.example.com/org/a.git"),
            "ssh://git@git.example.com/org/a.git"
        );
        assert_eq!(
            redacted("git@git.example.com:org/a.git"),
            "git@git.example.com:org/a.git"
        );
    }

    #[test]
    fn git_urls_are_checked_without_echoing_credentials() {
        for ok in [
            "https://git.example.com/org/antenna.git",
            "ssh://git@git.example.com/org/antenna.git",
            "git@git.example.com:org/antenna.git",
            "file:///srv/git/antenna.git",
        ] {
            assert_eq!(check_git_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "ftp://x/y",
            "-uhttps://x",
            "https://",
            "no-colon-here",
            "https://a b/c",
        ] {
            assert!(check_git_url(bad).is_err(), "{bad:?}");
        }
        let err = check_git_url("ftp://user:s3cr3t@x/y").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
