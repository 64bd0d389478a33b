//! What the preview compares: the bundle's files (the Dockerrun file, `.ebextensions/` and
//! `.platform/`) against the baseline's, and the environment properties against what runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::bundle::{Files, DOCKERRUN};
use crate::config::Config;

/// Only what the preview compares: the Dockerrun file, `.ebextensions/` and `.platform/`.
fn compared_files(files: &Files) -> impl Iterator<Item = (&String, &Vec<u8>)> {
    files.0.iter().filter(|(name, _)| compared(name))
}

fn compared(name: &str) -> bool {
    name == DOCKERRUN || name.starts_with(".ebextensions/") || name.starts_with(".platform/")
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub name: String,
    pub change: Change,
    /// Unified diff (empty for binary files).
    pub diff: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Modified,
}

/// The differences between the baseline's and the head's compared files.
pub fn diff(base: &Files, head: &Files) -> Vec<FileDiff> {
    let base_map: BTreeMap<_, _> = compared_files(base).collect();
    let head_map: BTreeMap<_, _> = compared_files(head).collect();
    let names: BTreeSet<&String> = base_map.keys().chain(head_map.keys()).copied().collect();
    let mut out = Vec::new();
    for name in names {
        let (old, new) = (base_map.get(name), head_map.get(name));
        let change = match (old, new) {
            (Some(a), Some(b)) if a == b => continue,
            (Some(_), Some(_)) => Change::Modified,
            (None, Some(_)) => Change::Added,
            (Some(_), None) => Change::Removed,
            (None, None) => continue,
        };
        let text = |b: Option<&&Vec<u8>>| b.map(|b| std::str::from_utf8(b).map(str::to_string));
        let diff = match (text(old), text(new)) {
            (Some(Err(_)), _) | (_, Some(Err(_))) => String::new(),
            (a, b) => {
                let a = a.and_then(Result::ok).unwrap_or_default();
                let b = b.and_then(Result::ok).unwrap_or_default();
                similar::TextDiff::from_lines(&a, &b)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("a/{name}"), &format!("b/{name}"))
                    .to_string()
            }
        };
        out.push(FileDiff {
            name: name.clone(),
            change,
            diff,
        });
    }
    out
}

/// The environment properties in the preview: their diff against what runs (names and
/// masked state only), or why there is none.
#[derive(Debug, Clone)]
pub enum EnvSection {
    /// deploy.toml declares no properties or secrets for the environment.
    NoneDeclared,
    Compared(crate::envprops::DiffReport),
    /// AWS could not be reached (no credentials, no access, no environment): `why` says so.
    Unavailable {
        why: String,
    },
}

impl EnvSection {
    /// The diff of `env_name`'s declared properties against its running environment, read
    /// with the AWS credentials at hand; nothing is read when none are declared.
    pub async fn read(config: &Config, env_name: &str) -> Self {
        let unavailable = |e: &dyn std::fmt::Display| Self::Unavailable {
            why: format!("{e:#}"),
        };
        let declared = match crate::envprops::Declared::of(config, env_name) {
            Ok(d) => d,
            Err(e) => return unavailable(&e),
        };
        if declared.is_empty() {
            return Self::NoneDeclared;
        }
        let env = match crate::ops::AwsEnvironment::resolve(config, env_name, "preview") {
            Ok(e) => e,
            Err(e) => return unavailable(&e),
        };
        let aws = crate::aws::Aws::load(&config.region).await;
        if !aws.has_credentials().await {
            return Self::Unavailable {
                why: "no AWS credentials".into(),
            };
        }
        let eb = crate::eb::Eb::from_aws(&aws, crate::eb::Pacing::default());
        match crate::envprops::apply::plan_with(config, &eb, &aws, &env, false).await {
            Ok(d) => Self::Compared(d),
            Err(e) => unavailable(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_covers_only_bundle_files_and_names_the_change() {
        let f = |pairs: &[(&str, &str)]| {
            Files(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        };
        let base = f(&[
            (DOCKERRUN, "{\n  \"a\": 1\n}\n"),
            (".ebextensions/00.config", "x\n"),
            ("README.md", "ignored\n"),
        ]);
        let head = f(&[
            (DOCKERRUN, "{\n  \"a\": 2\n}\n"),
            (".platform/hooks/postdeploy/01.sh", "#!/bin/sh\n"),
            ("README.md", "changed but ignored\n"),
        ]);
        let d = diff(&base, &head);
        let summary: Vec<(&str, Change)> = d.iter().map(|d| (d.name.as_str(), d.change)).collect();
        assert_eq!(
            summary,
            [
                (".ebextensions/00.config", Change::Removed),
                (".platform/hooks/postdeploy/01.sh", Change::Added),
                (DOCKERRUN, Change::Modified)
            ]
        );
        assert_eq!(
            d[2].diff,
            "--- a/Dockerrun.aws.json\n+++ b/Dockerrun.aws.json\n@@ -1,3 +1,3 @@\n {\n-  \"a\": 1\n+  \"a\": 2\n }\n"
        );
    }
}
