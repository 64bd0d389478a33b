//! The preview as one markdown document: the verdict, the bundle's facts, its images and
//! containers, lint findings, the file changes and the environment properties, with every
//! secret lint flagged masked.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{Change, EnvSection, Preview, PLACEHOLDER_ACCOUNT};
use crate::bundle::DOCKERRUN;
use crate::lint::{Finding, Severity};

impl Preview {
    /// The preview as markdown (without the marker).
    pub fn markdown(&self, root: &Path) -> String {
        let h = &self.head;
        let mut md = String::new();
        let verdict = if h.lint.errors() > 0 {
            "❌ lint found errors: this bundle cannot be deployed"
        } else if h.lint.warnings() > 0 {
            "⚠️ renders, with lint warnings"
        } else {
            "✅ renders and passes lint"
        };
        let _ = writeln!(md, "## Bundle preview: `{}`\n", h.env_name);
        let _ = writeln!(md, "{verdict}\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| Release | `{}` |", h.release.name);
        match &h.bundle {
            Some(b) => {
                let _ = writeln!(md, "| Version label | `{}` |", b.version_label);
                let _ = writeln!(md, "| Bundle sha256 | `{}` |", b.sha256);
                let _ = writeln!(md, "| Bundle size | {} bytes |", b.size);
            }
            None => {
                let _ = writeln!(md, "| Bundle | not made (lint errors) |");
            }
        }
        let _ = writeln!(md, "| Compared against | {} |", self.baseline.describe());
        if !h.account_known {
            let _ = writeln!(
                md,
                "\nThe AWS account is unknown here: image references show `{PLACEHOLDER_ACCOUNT}` (set the repository variable `AWS_ACCOUNT_ID`)."
            );
        }

        if let Some(d) = &h.dockerrun {
            let _ = writeln!(
                md,
                "\n### Images\n\n| image | tag | containers |\n|---|---|---|"
            );
            let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in &d.container_definitions {
                images
                    .entry(c.image.clone().unwrap_or_default())
                    .or_default()
                    .push(c.name.clone().unwrap_or_default());
            }
            for (image, users) in &images {
                let (repo, tag) = split_tag(image);
                let _ = writeln!(md, "| `{repo}` | `{tag}` | {} |", users.join(", "));
            }
            let _ = writeln!(
                md,
                "\n### Containers\n\n| container | essential | memory (MiB) | ports (host → container) | command |\n|---|---|---|---|---|"
            );
            for c in &d.container_definitions {
                let ports: Vec<String> = c
                    .port_mappings
                    .iter()
                    .map(|p| {
                        let cp = p
                            .container_port
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "?".into());
                        match p.host_port {
                            Some(hp) => format!("{hp} → {cp}"),
                            None => format!("→ {cp}"),
                        }
                    })
                    .collect();
                let memory = match (c.memory, c.memory_reservation) {
                    (Some(m), _) => m.to_string(),
                    (None, Some(r)) => format!("{r} (reservation)"),
                    (None, None) => "–".into(),
                };
                let command = c
                    .command
                    .as_ref()
                    .map(|c| format!("`{}`", c.join(" ")))
                    .unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    md,
                    "| {} | {} | {memory} | {} | {command} |",
                    c.name.as_deref().unwrap_or("?"),
                    if c.essential.unwrap_or(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    if ports.is_empty() {
                        "–".to_string()
                    } else {
                        ports.join(", ")
                    },
                );
            }
        }

        let _ = writeln!(
            md,
            "\n### Lint: {} error(s), {} warning(s)\n",
            h.lint.errors(),
            h.lint.warnings()
        );
        if h.lint.findings.is_empty() {
            let _ = writeln!(md, "No findings.");
        }
        for f in &h.lint.findings {
            let icon = match f.severity {
                Severity::Error => "❌",
                Severity::Warning => "⚠️",
            };
            let _ = writeln!(
                md,
                "- {icon} `{}` {} [{}]: {}{}",
                location(f, root),
                f.rule,
                f.name,
                f.message,
                if f.hint.is_empty() {
                    String::new()
                } else {
                    format!(" (hint: {})", f.hint)
                }
            );
        }

        let _ = writeln!(md, "\n### Changes against {}\n", self.baseline.describe());
        if self.diffs.is_empty() {
            let _ = writeln!(
                md,
                "No changes to `{DOCKERRUN}`, `.ebextensions/` or `.platform/`."
            );
        }
        for d in &self.diffs {
            let change = match d.change {
                Change::Added => "added",
                Change::Removed => "removed",
                Change::Modified => "modified",
            };
            let _ = writeln!(
                md,
                "<details><summary><code>{}</code> ({change})</summary>\n",
                d.name
            );
            if d.diff.is_empty() {
                let _ = writeln!(md, "Binary file {change}.");
            } else {
                let fence = if d.diff.contains("```") {
                    "````"
                } else {
                    "```"
                };
                let _ = writeln!(md, "{fence}diff\n{}{fence}", ensure_newline(&d.diff));
            }
            let _ = writeln!(md, "\n</details>\n");
        }
        self.env.markdown(&h.env_name, &mut md);
        mask_secrets(&md, &h.lint.secrets())
    }
}

impl EnvSection {
    /// The section's markdown: a table of names, changes, kinds and whether each differs.
    fn markdown(&self, env_name: &str, md: &mut String) {
        while md.ends_with("\n\n") {
            md.pop();
        }
        let _ = writeln!(md, "\n### Environment properties\n");
        match self {
            EnvSection::NoneDeclared => {
                let _ = writeln!(
                    md,
                    "deploy.toml declares no environment properties or secrets for `{env_name}`."
                );
            }
            EnvSection::Unavailable { why } => {
                let _ = writeln!(
                    md,
                    "⚠️ Not compared: AWS cannot be reached from this job ({why}). The running environment's properties are unknown here."
                );
            }
            EnvSection::Compared(d) => {
                let _ = writeln!(
                    md,
                    "Against what runs on `{}` (values are never shown: only whether they differ).\n",
                    d.eb_environment
                );
                let rows = d.masked_rows();
                if rows.is_empty() {
                    let _ = writeln!(md, "They match deploy.toml.\n");
                } else {
                    let _ = writeln!(md, "| name | change | kind | value |\n|---|---|---|---|");
                    for [name, change, kind, state] in &rows {
                        let _ = writeln!(md, "| `{name}` | {change} | {kind} | {state} |");
                    }
                    let _ = writeln!(md);
                }
                let _ = writeln!(md, "{}", d.summary());
                if d.changes > 0 {
                    let _ = writeln!(
                        md,
                        "\nA deploy applies these with `--apply-env`; `cargo xtask env apply --env {}` applies them alone.",
                        d.environment
                    );
                }
                for p in &d.problems {
                    let _ = writeln!(md, "- ❌ {p}");
                }
            }
        }
    }
}

/// `text` with every line of every secret replaced by `***`: a value lint flagged as a
/// secret is never republished by the preview (stdout, job summary, PR comment).
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut parts: Vec<&str> = secrets
        .iter()
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|l| l.chars().count() > 1)
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    let mut out = text.to_string();
    for p in parts {
        out = out.replace(p, "***");
    }
    out
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// `repo` and `tag` of an image reference (the tag after the last `:` past the last `/`).
fn split_tag(image: &str) -> (&str, &str) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// `file:line:col` relative to `root` (the repository), as annotations want it.
pub fn location(f: &Finding, root: &Path) -> String {
    let file = crate::lint::relative(&f.file, root);
    if f.line > 0 {
        format!("{file}:{}:{}", f.line, f.column)
    } else {
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_split_after_the_last_slash() {
        assert_eq!(
            split_tag("1.dkr.ecr.us-west-2.amazonaws.com/antenna-backend:v1"),
            ("1.dkr.ecr.us-west-2.amazonaws.com/antenna-backend", "v1")
        );
        assert_eq!(
            split_tag("localhost:5000/x"),
            ("localhost:5000/x", "latest")
        );
    }
}
