//! Create the EB application version (`Process=true`, so EB checks `Dockerrun.aws.json` now
//! rather than during the deploy) and wait until it is processed. An existing label that
//! points at the same bundle is reused; one that points elsewhere is an error.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_elasticbeanstalk::types::{ApplicationVersionDescription, S3Location};

use super::{Eb, Poller};

#[derive(Debug, Clone)]
pub struct VersionRequest<'a> {
    pub application: &'a str,
    pub label: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub description: Option<&'a str>,
    /// How long EB may take to process the version.
    pub timeout: Duration,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionOutcome {
    pub label: String,
    /// False when the label existed already (re-run) and was reused.
    pub created: bool,
    /// EB's status: PROCESSED (or UNPROCESSED for a version made elsewhere without processing).
    pub status: String,
}

/// The version `label` of `application`, if it exists.
pub async fn describe(
    eb: &Eb,
    application: &str,
    label: &str,
) -> Result<Option<ApplicationVersionDescription>> {
    let target = format!("{application}/{label}");
    let out = eb
        .call("DescribeApplicationVersions", &target, |c| {
            c.describe_application_versions()
                .application_name(application)
                .version_labels(label)
                .send()
        })
        .await
        .with_context(|| {
            format!("cannot look up the application version {label} of {application}")
        })?;
    Ok(out
        .application_versions()
        .iter()
        .find(|v| v.version_label() == Some(label))
        .cloned())
}

/// Makes sure the version exists, points at the bundle, and is processed.
pub async fn ensure_version(eb: &Eb, req: &VersionRequest<'_>) -> Result<VersionOutcome> {
    let app = req.application;
    let label = req.label;
    let mut created = false;
    // One DescribeApplications answer lists every application's versions: it tells whether
    // the label exists (then only is the version itself read) and counts the versions against
    // EB's quota. Without it (no permission), the version is looked up directly.
    let existing = match crate::ops::cleanup::list_versions(eb).await {
        Ok(listed) => {
            if let Some(w) = crate::ops::cleanup::quota_warning(listed.count) {
                tracing::warn!("version: {w}");
            }
            if listed.has(app, label) {
                describe(eb, app, label).await?
            } else {
                None
            }
        }
        Err(e) => {
            tracing::debug!("version: cannot count the application versions: {e:#}");
            describe(eb, app, label).await?
        }
    };
    match &existing {
        Some(v) => {
            check_same_bundle(v, req)?;
            tracing::info!("version: {label} already exists for this bundle; reusing it");
        }
        None if req.dry_run => {
            tracing::info!(
                "version: would create {label} from s3://{}/{} (Process=true)",
                req.bucket,
                req.key
            );
            return Ok(VersionOutcome {
                label: label.to_string(),
                created: false,
                status: "NOT CREATED (dry run)".into(),
            });
        }
        None => {
            let bundle = S3Location::builder()
                .s3_bucket(req.bucket)
                .s3_key(req.key)
                .build();
            let result = eb
                .call("CreateApplicationVersion", &format!("{app}/{label}"), |c| {
                    c.create_application_version()
                        .application_name(app)
                        .version_label(label)
                        .set_description(req.description.map(|d| d.chars().take(200).collect()))
                        .source_bundle(bundle.clone())
                        .process(true)
                        .send()
                })
                .await;
            match result {
                Ok(_) => {
                    created = true;
                    tracing::info!("version: created {label} from s3://{}/{}; EB is processing it", req.bucket, req.key);
                }
                // Another run created it between our look-up and our call.
                Err(e) if e.message().is_some_and(|m| m.contains("already exists")) => {
                    let v = describe(eb, app, label)
                        .await?
                        .with_context(|| format!("EB said version {label} exists but does not list it"))?;
                    check_same_bundle(&v, req)?;
                }
                Err(e) if e.code() == Some("TooManyApplicationVersionsException") => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot create the application version {label} of {app}: the account has reached Elastic Beanstalk's quota of application versions in this region; run `cargo xtask cleanup` (add --yes to delete) or `cargo xtask cleanup --lifecycle --yes`, then re-run"
                    )))
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot create the application version {label} of {app}: check that the application exists and the credentials allow elasticbeanstalk:CreateApplicationVersion"
                    )))
                }
            }
        }
    }
    let status = wait_processed(eb, req, created).await?;
    Ok(VersionOutcome {
        label: label.to_string(),
        created,
        status,
    })
}

fn check_same_bundle(v: &ApplicationVersionDescription, req: &VersionRequest<'_>) -> Result<()> {
    let b = v.source_bundle();
    let (bucket, key) = (b.and_then(|s| s.s3_bucket()), b.and_then(|s| s.s3_key()));
    if bucket != Some(req.bucket) || key != Some(req.key) {
        bail!(
            "the application version {} of {} already exists but points at s3://{}/{}, not at this bundle s3://{}/{}: \
             a label names one bundle; delete the old version (`aws elasticbeanstalk delete-application-version --application-name {} --version-label {}`) or release under another name",
            req.label,
            req.application,
            bucket.unwrap_or("?"),
            key.unwrap_or("?"),
            req.bucket,
            req.key,
            req.application,
            req.label
        );
    }
    Ok(())
}

/// Waits until EB has processed the version; `created`: this run just created it (EB
/// answered that it is processing), so the first look waits like the others.
async fn wait_processed(eb: &Eb, req: &VersionRequest<'_>, created: bool) -> Result<String> {
    let deadline = tokio::time::Instant::from_std(crate::config::instant_after(req.timeout));
    // Processing takes about a second: look again soon, then less often.
    let mut poller = Poller::quick(eb.pacing);
    if created {
        tokio::time::sleep(poller.next_wait()).await;
    }
    loop {
        let v = describe(eb, req.application, req.label)
            .await?
            .with_context(|| {
                format!(
                    "the application version {} disappeared while EB processed it",
                    req.label
                )
            })?;
        // EB answers upper case ("PROCESSED") while the SDK's enum is camel case: compare
        // case-insensitively.
        let status = v
            .status()
            .map_or("UNKNOWN".to_string(), |s| s.as_str().to_ascii_uppercase());
        match status.as_str() {
            "PROCESSED" => return Ok(status),
            "UNPROCESSED" => {
                tracing::warn!("version: {} exists but was created without processing; EB checks it during the deploy", req.label);
                return Ok(status);
            }
            "FAILED" => {
                let why = failure_message(eb, req).await;
                bail!(
                    "Elastic Beanstalk could not process the application version {} (s3://{}/{}): {why}\n  \
                     fix Dockerrun.aws.json (the bundle gets a new label), then re-run",
                    req.label,
                    req.bucket,
                    req.key
                );
            }
            _ => {
                if tokio::time::Instant::now() >= deadline {
                    bail!(
                        "the application version {} is still {status} after {}: EB may still finish it; \
                         check with `aws elasticbeanstalk describe-application-versions --application-name {} --version-labels {}`, then re-run (the version is reused)",
                        req.label,
                        humantime::format_duration(req.timeout),
                        req.application,
                        req.label
                    );
                }
                tracing::debug!("version: {} is {status}", req.label);
            }
        }
        let wait = poller
            .next_wait()
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        tokio::time::sleep(wait).await;
    }
}

/// EB's own words on why processing failed: the newest error event of the version.
async fn failure_message(eb: &Eb, req: &VersionRequest<'_>) -> String {
    let out = eb
        .call("DescribeEvents", req.label, |c| {
            c.describe_events()
                .application_name(req.application)
                .version_label(req.label)
                .max_records(20)
                .send()
        })
        .await;
    match out {
        Ok(out) => out
            .events()
            .iter()
            .find(|e| {
                e.severity()
                    .is_some_and(|s| matches!(s.as_str(), "ERROR" | "FATAL" | "WARN"))
            })
            .and_then(|e| e.message())
            .map_or_else(
                || "EB gave no reason; see the application's events in the EB console".to_string(),
                str::to_string,
            ),
        Err(e) => format!("EB gave no reason we could read ({e})"),
    }
}
