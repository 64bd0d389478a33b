//! `cleanup`: deletes old application versions and their S3 bundles, to stay under Elastic
//! Beanstalk's quota of 1,000 versions per account and region.
//!
//! Never deleted: a version an environment runs, the version each environment ran before
//! (its rollback target), a version being deployed (an environment `Updating` to it, or this
//! machine's in-flight state file), one EB is still processing, and the newest `keep`. With
//! `older_than`, only versions older than that go. The plan is a pure function
//! ([`plan`]) so that its rules are tested over many random sets of versions.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use aws_sdk_elasticbeanstalk::types::EnvironmentStatus;
use serde::Serialize;

use super::versions::{self, rfc3339, Version};
use super::{journal, AwsEnvironment, Session};
use crate::output::Table;

/// At this many versions, `deploy` warns that the quota is near.
pub const WARN_AT: usize = 900;
/// EB's default quota of application versions per account and region.
pub const QUOTA: usize = 1000;

#[derive(Debug, Clone)]
pub struct CleanupRequest<'a> {
    pub application: &'a str,
    /// The environments of `deploy.toml` (their journals name the rollback targets).
    pub environments: &'a [AwsEnvironment],
    /// Keep at least the newest `keep` versions.
    pub keep: usize,
    /// Only delete versions older than this.
    pub older_than: Option<Duration>,
    /// Show the plan; delete nothing.
    pub dry_run: bool,
    /// Where this machine's in-flight deploy state files are.
    pub state_dir: Option<&'a Path>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Delete,
    Keep,
    /// Deleted (after a run that was not a dry run).
    Deleted,
    /// EB refused or failed to delete it.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub label: String,
    #[serde(with = "versions::rfc3339_opt")]
    pub created: Option<SystemTime>,
    pub action: Action,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CleanupReport {
    pub application: String,
    pub dry_run: bool,
    pub total: usize,
    pub decisions: Vec<Decision>,
}

impl CleanupReport {
    pub fn count(&self, a: Action) -> usize {
        self.decisions.iter().filter(|d| d.action == a).count()
    }

    pub fn render(&self) -> String {
        let mut t = Table::new(["version", "created", "action", "why"]);
        for d in &self.decisions {
            t.row([
                d.label.clone(),
                d.created.map_or("-".into(), rfc3339),
                match d.action {
                    Action::Delete => "would delete",
                    Action::Keep => "keep",
                    Action::Deleted => "deleted",
                    Action::Failed => "FAILED",
                }
                .to_string(),
                d.reason.clone(),
            ]);
        }
        let mut out = t.render();
        if self.dry_run {
            out.push_str(&format!(
                "dry run: {} of {} versions would be deleted with their bundles; run again with --yes to delete them\n",
                self.count(Action::Delete),
                self.total
            ));
        } else {
            out.push_str(&format!(
                "deleted {} of {} versions with their bundles ({} failed)\n",
                self.count(Action::Deleted),
                self.total,
                self.count(Action::Failed)
            ));
        }
        out
    }
}

/// Decides, for each version (newest first), whether it goes. `protected` maps a label to
/// why it must stay.
pub fn plan(
    versions: &[Version],
    protected: &BTreeMap<String, String>,
    keep: usize,
    older_than: Option<Duration>,
    now: SystemTime,
) -> Vec<Decision> {
    let mut sorted: Vec<&Version> = versions.iter().collect();
    sorted.sort_by(|a, b| b.created.cmp(&a.created).then(b.label.cmp(&a.label)));
    sorted
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let keep_because = if let Some(why) = protected.get(&v.label) {
                Some(why.clone())
            } else if matches!(v.status.as_str(), "PROCESSING" | "BUILDING") {
                Some(format!("EB is still processing it ({})", v.status))
            } else if i < keep {
                Some(format!("among the newest {keep}"))
            } else {
                match (older_than, v.created) {
                    (Some(age), Some(created))
                        if now.duration_since(created).unwrap_or_default() < age =>
                    {
                        Some(format!("newer than {}", humantime::format_duration(age)))
                    }
                    (Some(_), None) => Some("its creation time is unknown".into()),
                    _ => None,
                }
            };
            Decision {
                label: v.label.clone(),
                created: v.created,
                action: if keep_because.is_some() {
                    Action::Keep
                } else {
                    Action::Delete
                },
                reason: keep_because.unwrap_or_else(|| match older_than {
                    Some(age) => format!(
                        "older than {} and not among the newest {keep}",
                        humantime::format_duration(age)
                    ),
                    None => format!("not among the newest {keep}"),
                }),
            }
        })
        .collect()
}

/// The versions that must stay, and why: what every environment of the application runs or
/// is being deployed to, each configured environment's rollback target, and this machine's
/// in-flight deploys.
pub async fn protected(
    session: &Session,
    req: &CleanupRequest<'_>,
    versions: &[Version],
) -> Result<BTreeMap<String, String>> {
    let mut keep: BTreeMap<String, String> = BTreeMap::new();
    let mut add = |label: &str, why: String| {
        keep.entry(label.to_string()).or_insert(why);
    };
    let live = versions::environments(&session.eb, req.application).await?;
    for e in &live {
        let (Some(name), Some(label)) = (e.environment_name(), e.version_label()) else {
            continue;
        };
        if matches!(
            e.status(),
            Some(EnvironmentStatus::Updating | EnvironmentStatus::Launching)
        ) {
            add(label, format!("being deployed to {name}"));
        } else {
            add(label, format!("runs on {name}"));
        }
    }
    for env in req.environments {
        let name = env.eb_environment.as_str();
        if let Some(dir) = req.state_dir {
            if let Some(f) = crate::eb::deploy::in_flight(dir, name) {
                add(
                    &f.label,
                    format!("being deployed to {name} (deploy state file)"),
                );
                if let Some(p) = &f.previous {
                    add(
                        &p.label,
                        format!("ran on {name} before the deploy in flight"),
                    );
                }
            }
        }
        let running = live
            .iter()
            .find(|e| e.environment_name() == Some(name))
            .and_then(|e| e.version_label());
        let entries = match super::history::journal_bucket(env, versions) {
            Some(bucket) => journal::read(&session.s3, &bucket, req.application, name).await?,
            None => vec![],
        };
        match journal::last_good_before(&entries, running) {
            Some(prev) => add(&prev, format!("rollback target of {name} (ran before)")),
            None => {
                // No journal yet: keep the version created just before the running one.
                let created = versions
                    .iter()
                    .find(|v| Some(v.label.as_str()) == running)
                    .and_then(|v| v.created);
                if let Some(prev) = versions
                    .iter()
                    .filter(|v| v.created < created && v.status == "PROCESSED")
                    .max_by_key(|v| v.created)
                {
                    add(
                        &prev.label,
                        format!("probable rollback target of {name} (created just before what it runs; no deploy journal)"),
                    );
                }
            }
        }
    }
    Ok(keep)
}

/// Plans and, unless `dry_run`, deletes the versions the plan lets go (with their bundles).
pub async fn cleanup(session: &Session, req: &CleanupRequest<'_>) -> Result<CleanupReport> {
    let all = versions::list(&session.eb, req.application).await?;
    let keep = protected(session, req, &all).await?;
    let mut decisions = plan(&all, &keep, req.keep, req.older_than, SystemTime::now());
    if !req.dry_run {
        for d in decisions.iter_mut().filter(|d| d.action == Action::Delete) {
            let label = d.label.clone();
            let result = session
                .eb
                .call(
                    "DeleteApplicationVersion",
                    &format!("{}/{label}", req.application),
                    |c| {
                        c.delete_application_version()
                            .application_name(req.application)
                            .version_label(&label)
                            .delete_source_bundle(true)
                            .send()
                    },
                )
                .await
                .with_context(|| format!("cannot delete the application version {label}"));
            match result {
                Ok(_) => {
                    tracing::info!("cleanup: deleted {label} and its bundle");
                    d.action = Action::Deleted;
                }
                Err(e) => {
                    tracing::warn!("cleanup: {e:#}");
                    d.action = Action::Failed;
                    d.reason = format!("{e:#}");
                }
            }
        }
    }
    Ok(CleanupReport {
        application: req.application.to_string(),
        dry_run: req.dry_run,
        total: all.len(),
        decisions,
    })
}

/// What `cleanup --lifecycle` writes: EB's own version lifecycle policy.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleRequest<'a> {
    pub application: &'a str,
    /// The role EB assumes to delete versions (EB's service role).
    pub service_role: &'a str,
    pub max_count: Option<i32>,
    pub max_age_days: Option<i32>,
    pub dry_run: bool,
}

/// Writes EB's application version lifecycle policy: EB then deletes old versions itself
/// (never one an environment runs, but it does not know rollback targets: keep `max_count`
/// above the number of environments).
pub async fn write_lifecycle(session: &Session, req: &LifecycleRequest<'_>) -> Result<()> {
    use aws_sdk_elasticbeanstalk::types::{
        ApplicationResourceLifecycleConfig, ApplicationVersionLifecycleConfig, MaxAgeRule,
        MaxCountRule,
    };
    let mut versions = ApplicationVersionLifecycleConfig::builder();
    if let Some(n) = req.max_count {
        versions = versions.max_count_rule(
            MaxCountRule::builder()
                .enabled(true)
                .max_count(n)
                .delete_source_from_s3(true)
                .build()
                .context("a max count rule needs `enabled`")?,
        );
    }
    if let Some(days) = req.max_age_days {
        versions = versions.max_age_rule(
            MaxAgeRule::builder()
                .enabled(true)
                .max_age_in_days(days)
                .delete_source_from_s3(true)
                .build()
                .context("a max age rule needs `enabled`")?,
        );
    }
    let config = ApplicationResourceLifecycleConfig::builder()
        .service_role(req.service_role)
        .version_lifecycle_config(versions.build())
        .build();
    if req.dry_run {
        tracing::info!(
            "cleanup: would set the version lifecycle of {} (max count {:?}, max age {:?} days, role {})",
            req.application,
            req.max_count,
            req.max_age_days,
            req.service_role
        );
        return Ok(());
    }
    session
        .eb
        .call("UpdateApplicationResourceLifecycle", req.application, |c| {
            c.update_application_resource_lifecycle()
                .application_name(req.application)
                .resource_lifecycle_config(config.clone())
                .send()
        })
        .await
        .with_context(|| format!("cannot set the version lifecycle of {}: check the service role {} and the credentials' elasticbeanstalk:UpdateApplicationResourceLifecycle and iam:PassRole permissions", req.application, req.service_role))?;
    Ok(())
}

/// Every application's version labels (EB's `DescribeApplications` lists them all).
#[derive(Debug, Clone, Default)]
pub struct Listed {
    /// (application, version labels)
    pub applications: Vec<(String, Vec<String>)>,
    /// Versions in the account and region, all applications together (the quota counts them).
    pub count: usize,
}

impl Listed {
    /// True when `application` has a version `label`.
    pub fn has(&self, application: &str, label: &str) -> bool {
        self.applications
            .iter()
            .any(|(a, labels)| a == application && labels.iter().any(|l| l == label))
    }
}

/// Every application's version labels: one `DescribeApplications` call.
pub async fn list_versions(eb: &crate::eb::Eb) -> Result<Listed> {
    let out = eb
        .call("DescribeApplications", "all applications", |c| {
            c.describe_applications().send()
        })
        .await
        .context("cannot count the application versions")?;
    let applications: Vec<(String, Vec<String>)> = out
        .applications()
        .iter()
        .map(|a| {
            (
                a.application_name().unwrap_or_default().to_string(),
                a.versions().to_vec(),
            )
        })
        .collect();
    let count = applications.iter().map(|(_, v)| v.len()).sum();
    Ok(Listed {
        applications,
        count,
    })
}

/// A warning when the account is near EB's quota of versions.
pub fn quota_warning(count: usize) -> Option<String> {
    (count >= WARN_AT).then(|| {
        format!(
            "{count} application versions exist in this account and region (Elastic Beanstalk allows {QUOTA}): run `cargo xtask cleanup` to delete old ones before deploys start failing"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(label: &str, age_days: u64, status: &str, now: SystemTime) -> Version {
        Version {
            label: label.into(),
            described: Default::default(),
            status: status.into(),
            created: Some(now - Duration::from_secs(age_days * 86_400 + 1)),
            bucket: None,
            key: None,
        }
    }

    #[test]
    fn plan_keeps_the_newest_the_protected_and_the_young() {
        let now = SystemTime::now();
        let versions = vec![
            v("v5", 1, "PROCESSED", now),
            v("v4", 2, "PROCESSING", now),
            v("v3", 10, "PROCESSED", now),
            v("v2", 40, "PROCESSED", now),
            v("v1", 50, "FAILED", now),
        ];
        let protected = BTreeMap::from([("v1".to_string(), "runs on prod".to_string())]);
        let p = plan(
            &versions,
            &protected,
            1,
            Some(Duration::from_secs(30 * 86_400)),
            now,
        );
        let got: Vec<(&str, Action, &str)> = p
            .iter()
            .map(|d| (d.label.as_str(), d.action, d.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("v5", Action::Keep, "among the newest 1"),
                ("v4", Action::Keep, "EB is still processing it (PROCESSING)"),
                ("v3", Action::Keep, "newer than 30days"),
                (
                    "v2",
                    Action::Delete,
                    "older than 30days and not among the newest 1"
                ),
                ("v1", Action::Keep, "runs on prod"),
            ]
        );
        assert!(quota_warning(899).is_none());
        assert!(quota_warning(900).unwrap().contains("cargo xtask cleanup"));
    }

    /// Many random sets of versions: a protected version is never planned for deletion, the
    /// newest `keep` always stay, and everything else goes when no age limit is given.
    #[test]
    fn protected_versions_never_go_on_random_sets() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_0a11);
        let now = SystemTime::now();
        for _ in 0..500 {
            let n = rng.usize(0..60);
            let versions: Vec<Version> = (0..n)
                .map(|i| {
                    let status = [
                        "PROCESSED",
                        "PROCESSED",
                        "FAILED",
                        "UNPROCESSED",
                        "PROCESSING",
                    ][rng.usize(0..5)];
                    v(&format!("v{i}"), rng.u64(0..400), status, now)
                })
                .collect();
            let mut protected = BTreeMap::new();
            for _ in 0..rng.usize(0..4) {
                if n > 0 {
                    protected.insert(format!("v{}", rng.usize(0..n)), "runs".to_string());
                }
            }
            let keep = rng.usize(0..10);
            let older = rng
                .bool()
                .then(|| Duration::from_secs(rng.u64(0..200) * 86_400));
            let p = plan(&versions, &protected, keep, older, now);
            assert_eq!(p.len(), n);
            let mut by_age = versions.clone();
            by_age.sort_by(|a, b| b.created.cmp(&a.created).then(b.label.cmp(&a.label)));
            let newest: Vec<&str> = by_age.iter().take(keep).map(|v| v.label.as_str()).collect();
            for d in &p {
                let src = versions.iter().find(|v| v.label == d.label).unwrap();
                if protected.contains_key(&d.label)
                    || newest.contains(&d.label.as_str())
                    || src.status == "PROCESSING"
                {
                    assert_eq!(d.action, Action::Keep, "{d:?}");
                }
                if let (Some(age), Action::Delete) = (older, d.action) {
                    assert!(
                        now.duration_since(src.created.unwrap()).unwrap() >= age,
                        "{d:?}"
                    );
                }
                if older.is_none() && d.action == Action::Keep {
                    assert!(
                        protected.contains_key(&d.label)
                            || newest.contains(&d.label.as_str())
                            || src.status == "PROCESSING",
                        "{d:?}"
                    );
                }
            }
        }
    }
}
