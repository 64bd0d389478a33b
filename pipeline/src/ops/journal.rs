//! The deploy journal: one small JSON file per environment next to the bundles
//! (`s3://BUCKET/APPLICATION/deploys/EB_ENVIRONMENT.json`), to which `deploy` and `rollback`
//! add an entry once they have a verdict.
//!
//! Elastic Beanstalk's events say when a deploy started and how it ended but not which
//! version it deployed, and its environment description only names the version running now.
//! The journal holds the rest: which version each environment ran before, which one was
//! live at a given time, and who deployed it. The newest [`MAX_ENTRIES`] entries are kept.

use std::time::SystemTime;

use anyhow::{Context, Result};
use aws_sdk_s3::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

/// Entries kept per environment.
pub const MAX_ENTRIES: usize = 200;

/// One deploy or rollback, once it has a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `deploy` or `rollback`.
    pub kind: String,
    pub label: String,
    /// The version the environment ran before.
    pub previous: Option<String>,
    /// The deploy's verdict (`succeeded`, `failed`, `timed_out`...).
    pub verdict: String,
    /// When the verdict came (RFC 3339).
    pub at: String,
    pub request_id: Option<String>,
    /// The GitHub Actions run, or the user who ran it locally.
    pub by: Option<String>,
}

impl Entry {
    pub fn succeeded(&self) -> bool {
        matches!(self.verdict.as_str(), "succeeded" | "already_deployed")
    }

    /// Who ran it: the GitHub run URL in Actions, else `$USER` on this machine.
    pub fn runner() -> Option<String> {
        crate::github::actions::run_url().or_else(|| {
            std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .map(|u| format!("{u} (local)"))
        })
    }
}

/// Where the journal of `eb_environment` lives in the bundle bucket.
pub fn key(application: &str, eb_environment: &str) -> String {
    format!("{application}/deploys/{eb_environment}.json")
}

/// The journal's entries, oldest first; empty when none was written yet.
pub async fn read(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    application: &str,
    eb_environment: &str,
) -> Result<Vec<Entry>> {
    let key = key(application, eb_environment);
    let out = match s3.get_object().bucket(bucket).key(&key).send().await {
        Ok(o) => o,
        Err(e) if matches!(e.code(), Some("NoSuchKey" | "NotFound")) => return Ok(vec![]),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot read the deploy journal s3://{bucket}/{key}: check that the role may s3:GetObject on the bundle bucket"
            )))
        }
    };
    let bytes = out
        .body
        .collect()
        .await
        .with_context(|| format!("cannot read the deploy journal s3://{bucket}/{key}"))?
        .into_bytes();
    serde_json::from_slice(&bytes).with_context(|| {
        format!("the deploy journal s3://{bucket}/{key} is not valid JSON: fix or delete it (it is rebuilt from the next deploy)")
    })
}

/// Adds `entry` to the journal (read, append, write: EB runs one deploy per environment at a
/// time, so two writers do not race).
pub async fn append(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    application: &str,
    eb_environment: &str,
    entry: Entry,
) -> Result<()> {
    let mut entries = read(s3, bucket, application, eb_environment).await?;
    entries.push(entry);
    let from = entries.len().saturating_sub(MAX_ENTRIES);
    let body = serde_json::to_vec_pretty(&entries[from..])?;
    let key = key(application, eb_environment);
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .with_context(|| format!("cannot write the deploy journal s3://{bucket}/{key}: check that the role may s3:PutObject on the bundle bucket"))?;
    Ok(())
}

/// The entry for a finished deploy or rollback.
pub fn entry_for(kind: &str, outcome: &crate::eb::DeployOutcome) -> Entry {
    Entry {
        kind: kind.to_string(),
        label: outcome.label.clone(),
        previous: outcome.previous.as_ref().map(|p| p.label.clone()),
        verdict: serde_json::to_value(outcome.verdict)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        at: super::versions::rfc3339(SystemTime::now()),
        request_id: outcome.request_id.clone(),
        by: Entry::runner(),
    }
}

/// Records a deploy's verdict; a failure to write is a warning (the deploy itself is done).
pub async fn record(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    application: &str,
    kind: &str,
    outcome: &crate::eb::DeployOutcome,
) {
    if matches!(
        outcome.verdict,
        crate::eb::DeployVerdict::DryRun
            | crate::eb::DeployVerdict::Locked
            | crate::eb::DeployVerdict::Skipped
    ) {
        return;
    }
    let entry = entry_for(kind, outcome);
    if let Err(e) = append(s3, bucket, application, &outcome.environment, entry).await {
        tracing::warn!("{e:#} (status, history and rollback will not know this {kind})");
    }
}

/// The last version that ran healthy on the environment before `current`: the newest
/// succeeded entry for another label.
pub fn last_good_before(entries: &[Entry], current: Option<&str>) -> Option<String> {
    entries
        .iter()
        .rev()
        .filter(|e| e.succeeded() && Some(e.label.as_str()) != current)
        .map(|e| e.label.clone())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(label: &str, verdict: &str) -> Entry {
        Entry {
            kind: "deploy".into(),
            label: label.into(),
            previous: None,
            verdict: verdict.into(),
            at: String::new(),
            request_id: None,
            by: None,
        }
    }

    #[test]
    fn the_last_good_version_skips_failures_and_the_current_one() {
        let j = vec![
            e("v1", "succeeded"),
            e("v2", "succeeded"),
            e("v3", "failed"),
            e("v4", "succeeded"),
        ];
        assert_eq!(last_good_before(&j, Some("v4")).as_deref(), Some("v2"));
        assert_eq!(last_good_before(&j, Some("v2")).as_deref(), Some("v4"));
        assert_eq!(last_good_before(&j[..1], Some("v1")), None);
        assert_eq!(last_good_before(&[], None), None);
    }
}
