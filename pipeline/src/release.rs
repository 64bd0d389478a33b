//! The release being shipped: its name (git tag, else short commit, `-dirty` when the tree
//! has changes), the full commit, and the version label EB knows it by.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Identity of the source tree being released.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Release {
    /// Human name: the exact git tag, else the short commit; `-dirty` appended for a changed tree.
    pub name: String,
    /// Full commit id (`unknown` outside git).
    pub commit: String,
    pub dirty: bool,
    /// The commits the images with a git `source` were built from (empty without).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<crate::image::source::PinnedSource>,
}

impl Release {
    /// Reads the release of the git work tree at `dir`. `name_override` (for example the
    /// `DEPLOY_RELEASE` variable or `--release`) wins over the tag.
    pub fn detect(dir: &Path, name_override: Option<&str>) -> Result<Self> {
        let commit = git(dir, &["rev-parse", "HEAD"]).context(
            "cannot read the current commit: run inside a git checkout with at least one commit, or pass --release NAME",
        );
        let (commit, dirty, tag) = match commit {
            Ok(commit) => {
                let dirty =
                    !git(dir, &["status", "--porcelain", "--untracked-files=no"])?.is_empty();
                let tag = git(dir, &["describe", "--tags", "--exact-match", "HEAD"]).ok();
                (commit, dirty, tag)
            }
            Err(e) if name_override.is_some() => {
                tracing::debug!("no git commit: {e:#}");
                ("unknown".to_string(), false, None)
            }
            Err(e) => return Err(e),
        };
        let base = match (name_override, tag) {
            (Some(n), _) => n.to_string(),
            (None, Some(t)) => t,
            (None, None) => commit.chars().take(12).collect(),
        };
        let name = if dirty && name_override.is_none() {
            format!("{base}-dirty")
        } else {
            base
        };
        validate_release_name(&name)?;
        Ok(Self {
            name,
            commit,
            dirty,
            sources: Vec::new(),
        })
    }

    /// A release with fixed values, for tests and for `--release` without git.
    pub fn fixed(name: &str, commit: &str) -> Self {
        Self {
            name: name.to_string(),
            commit: commit.to_string(),
            dirty: false,
            sources: Vec::new(),
        }
    }

    /// The commit image `name` is built from: its source's when it has one, else this
    /// release's.
    pub fn commit_of(&self, image: &str) -> &str {
        self.source_of(image).map_or(&self.commit, |p| &p.commit)
    }

    /// The pinned source of image `name`, when it is built from one.
    pub fn source_of(&self, image: &str) -> Option<&crate::image::source::PinnedSource> {
        self.sources.iter().find(|p| p.image == image)
    }

    /// EB version label: the release name plus the first 8 hex digits of the bundle's sha256,
    /// cut to EB's 100 characters and its allowed set.
    pub fn version_label(&self, bundle_sha256: &str) -> String {
        let short = &bundle_sha256[..bundle_sha256.len().min(8)];
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let room = MAX_LABEL - short.len() - 1;
        let name: String = name.chars().take(room).collect();
        format!("{name}-{short}")
    }
}

/// EB's limit on version labels.
pub const MAX_LABEL: usize = 100;

/// A release name doubles as an image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_release_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("release name {name:?} is not a valid image tag: use letters, digits, '_', '.' and '-', at most 128 characters, not starting with '.' or '-'");
    }
    Ok(())
}

/// Runs `git ARGS` in `dir`; its trimmed stdout, or an error with git's stderr.
pub(crate) fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run git: is it installed?")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keeps_allowed_chars_and_limit() {
        let r = Release::fixed("v1.2.0", "abc");
        assert_eq!(r.version_label("0123456789abcdef"), "v1.2.0-01234567");
        let long = Release::fixed(&"x".repeat(150), "abc");
        let label = long.version_label("0123456789abcdef");
        assert_eq!(label.len(), 100);
        assert!(label.ends_with("-01234567"));
        let odd = Release::fixed("feature/x+y", "abc");
        assert_eq!(odd.version_label("ffffffff00"), "feature-x-y-ffffffff");
    }

    #[test]
    fn release_names_must_be_tags() {
        assert!(validate_release_name("v1.0.0").is_ok());
        assert!(validate_release_name("abc123def456-dirty").is_ok());
        let err = validate_release_name("-x").unwrap_err().to_string();
        assert!(err.contains("not a valid image tag"), "{err}");
        assert!(validate_release_name("a/b").is_err());
    }

    #[test]
    fn detect_reads_tag_commit_and_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .args(args)
                .current_dir(d)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q"]);
        std::fs::write(d.join("f"), "1").unwrap();
        run(&["add", "f"]);
        run(&["commit", "-q", "-m", "one"]);
        let r = Release::detect(d, None).unwrap();
        assert_eq!(r.commit.len(), 40);
        assert_eq!(r.name, &r.commit[..12]);
        run(&["tag", "v0.1.0"]);
        assert_eq!(Release::detect(d, None).unwrap().name, "v0.1.0");
        std::fs::write(d.join("f"), "2").unwrap();
        let r = Release::detect(d, None).unwrap();
        assert_eq!(r.name, "v0.1.0-dirty");
        assert!(r.dirty);
        assert_eq!(Release::detect(d, Some("v9")).unwrap().name, "v9");
    }
}
