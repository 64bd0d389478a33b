//! `history`: the application's versions newest first (release, commit, bundle size, status,
//! creation time, which environment runs each), and each environment's deploys from the
//! deploy journal (which version it ran before, and when each one went live).

use anyhow::Result;
use serde::Serialize;

use super::journal::{self, Entry};
use super::versions::{self, Version};
use super::{AwsEnvironment, Session};
use crate::output::human_bytes;
use crate::output::Table;

#[derive(Debug, Clone, Serialize)]
pub struct HistoryVersion {
    #[serde(flatten)]
    pub version: Version,
    /// The bundle's size in S3 (none when the object is gone).
    pub size: Option<u64>,
    /// The environments (EB names) that run it now.
    pub running_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentHistory {
    pub environment: String,
    pub eb_environment: String,
    pub running: Option<String>,
    /// The version it ran before the running one (the rollback target).
    pub previous: Option<String>,
    /// Its deploys and rollbacks, newest first.
    pub deploys: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub application: String,
    /// Versions in all, before `--limit`.
    pub total_versions: usize,
    pub versions: Vec<HistoryVersion>,
    pub environments: Vec<EnvironmentHistory>,
}

/// The newest `limit` versions and the history of `envs`. `bucket` is the bundle bucket
/// (else the bucket of the newest version's bundle) where the deploy journals live.
pub async fn history(
    session: &Session,
    application: &str,
    envs: &[AwsEnvironment],
    limit: usize,
) -> Result<HistoryReport> {
    let all = versions::list(&session.eb, application).await?;
    let live = versions::environments(&session.eb, application).await?;
    let mut out = vec![];
    for v in all.iter().take(limit) {
        let size = match (&v.bucket, &v.key) {
            (Some(b), Some(k)) => session
                .s3
                .head_object()
                .bucket(b)
                .key(k)
                .send()
                .await
                .ok()
                .and_then(|h| h.content_length())
                .map(|n| n.max(0) as u64),
            _ => None,
        };
        out.push(HistoryVersion {
            version: v.clone(),
            size,
            running_on: live
                .iter()
                .filter(|e| e.version_label() == Some(v.label.as_str()))
                .filter_map(|e| e.environment_name().map(str::to_string))
                .collect(),
        });
    }
    let mut environments = vec![];
    for env in envs {
        let running = live
            .iter()
            .find(|e| e.environment_name() == Some(env.eb_environment.as_str()))
            .and_then(|e| e.version_label().map(str::to_string));
        let entries = match journal_bucket(env, &all) {
            Some(bucket) => {
                journal::read(&session.s3, &bucket, application, &env.eb_environment).await?
            }
            None => vec![],
        };
        let previous = journal::last_good_before(&entries, running.as_deref());
        environments.push(EnvironmentHistory {
            environment: env.name.clone(),
            eb_environment: env.eb_environment.clone(),
            running,
            previous,
            deploys: entries.into_iter().rev().collect(),
        });
    }
    Ok(HistoryReport {
        application: application.to_string(),
        total_versions: all.len(),
        versions: out,
        environments,
    })
}

/// The bucket that holds the environment's journal: the configured bundle bucket, else the
/// bucket of the newest version's bundle (EB's storage location).
pub fn journal_bucket(env: &AwsEnvironment, versions: &[Version]) -> Option<String> {
    env.spec
        .bucket
        .clone()
        .or_else(|| versions.iter().find_map(|v| v.bucket.clone()))
}

impl HistoryReport {
    pub fn render(&self) -> String {
        let mut t = Table::new([
            "version",
            "release",
            "size",
            "status",
            "created",
            "running on",
        ]);
        for v in &self.versions {
            t.row([
                v.version.label.clone(),
                v.version.release_text(),
                v.size.map_or("-".into(), human_bytes),
                v.version.status.clone(),
                v.version.created.map_or("-".into(), versions::rfc3339),
                v.running_on.join(", "),
            ]);
        }
        let mut out = t.render();
        if self.total_versions > self.versions.len() {
            out.push_str(&format!(
                "({} of {} versions; --limit N shows more)\n",
                self.versions.len(),
                self.total_versions
            ));
        }
        for e in &self.environments {
            out.push_str(&format!(
                "\n{} ({}): runs {}, ran {} before\n",
                e.environment,
                e.eb_environment,
                e.running.as_deref().unwrap_or("nothing"),
                e.previous.as_deref().unwrap_or("nothing known")
            ));
            if e.deploys.is_empty() {
                out.push_str(
                    "  no deploys recorded yet (the journal starts with the next deploy)\n",
                );
                continue;
            }
            let mut d = Table::new(["at", "kind", "version", "verdict", "previous", "by"]);
            for entry in &e.deploys {
                d.row([
                    entry.at.clone(),
                    entry.kind.clone(),
                    entry.label.clone(),
                    entry.verdict.clone(),
                    entry.previous.clone().unwrap_or_else(|| "-".into()),
                    entry.by.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            for line in d.render().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }
}
