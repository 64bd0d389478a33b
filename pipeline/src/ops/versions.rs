//! Application versions and environments as the operating commands see them: every version
//! of the application (paged, newest first) with the release, commit and GitHub run its
//! description names, and every environment of the application.

use std::time::SystemTime;

use anyhow::{Context, Result};
use aws_sdk_elasticbeanstalk::types::{ApplicationVersionDescription, EnvironmentDescription};
use serde::Serialize;

use crate::eb::Eb;
use crate::release::Release;

/// EB's limit on a version description.
pub const MAX_DESCRIPTION: usize = 200;

/// The description `deploy` gives a version: `release (commit)`, then `image@commit` for
/// each image built from a git source, then the GitHub run that made it when there is one
/// (dropped when it would not fit in EB's 200 characters).
pub fn description(release: &Release, run_url: Option<&str>) -> String {
    let mut base = format!("{} ({})", release.name, release.commit);
    for pin in &release.sources {
        base.push_str(&format!(" {}@{}", pin.image, pin.commit));
    }
    match run_url {
        Some(url) if base.len() + 1 + url.len() <= MAX_DESCRIPTION => format!("{base} {url}"),
        _ => base.chars().take(MAX_DESCRIPTION).collect(),
    }
}

/// What a description written by [`description`] says; other descriptions give nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Described {
    pub release: Option<String>,
    pub commit: Option<String>,
    /// The GitHub Actions run that created the version.
    pub run_url: Option<String>,
    /// Image → commit of the images built from a git source.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sources: std::collections::BTreeMap<String, String>,
}

/// Reads `release (commit) [image@commit…] [run-url]`.
pub fn parse_description(text: &str) -> Described {
    let text = text.trim();
    let Some((release, rest)) = text.split_once(" (") else {
        return Described::default();
    };
    let Some((commit, rest)) = rest.split_once(')') else {
        return Described::default();
    };
    let mut run_url = None;
    let mut sources = std::collections::BTreeMap::new();
    for word in rest.split_whitespace() {
        if word.starts_with("https://") {
            run_url = Some(word.to_string());
        } else if let Some((image, commit)) = word.split_once('@') {
            sources.insert(image.to_string(), commit.to_string());
        }
    }
    Described {
        release: Some(release.to_string()),
        commit: Some(commit.to_string()),
        run_url,
        sources,
    }
}

/// One application version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Version {
    pub label: String,
    #[serde(flatten)]
    pub described: Described,
    /// EB's status, upper case: PROCESSED, UNPROCESSED, PROCESSING, FAILED, BUILDING.
    pub status: String,
    #[serde(with = "rfc3339_opt")]
    pub created: Option<SystemTime>,
    pub bucket: Option<String>,
    pub key: Option<String>,
}

impl Version {
    pub fn from_eb(v: &ApplicationVersionDescription) -> Self {
        Self {
            label: v.version_label().unwrap_or_default().to_string(),
            described: parse_description(v.description().unwrap_or_default()),
            status: v
                .status()
                .map_or("UNKNOWN".to_string(), |s| s.as_str().to_ascii_uppercase()),
            created: v.date_created().and_then(|d| SystemTime::try_from(*d).ok()),
            bucket: v
                .source_bundle()
                .and_then(|b| b.s3_bucket())
                .map(str::to_string),
            key: v
                .source_bundle()
                .and_then(|b| b.s3_key())
                .map(str::to_string),
        }
    }

    /// `release (commit 0123456789ab)`, or the label's own words when the description says
    /// nothing.
    pub fn release_text(&self) -> String {
        match (&self.described.release, &self.described.commit) {
            (Some(r), Some(c)) => format!("{r} ({})", c.chars().take(12).collect::<String>()),
            _ => "-".to_string(),
        }
    }
}

/// Every version of `application`, newest first (paged with `NextToken`).
pub async fn list(eb: &Eb, application: &str) -> Result<Vec<Version>> {
    let mut out = vec![];
    let mut token: Option<String> = None;
    loop {
        let page = eb
            .call("DescribeApplicationVersions", application, |c| {
                c.describe_application_versions()
                    .application_name(application)
                    .max_records(100)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .with_context(|| format!("cannot list the application versions of {application}"))?;
        out.extend(page.application_versions().iter().map(Version::from_eb));
        match page.next_token() {
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then(b.label.cmp(&a.label)));
    Ok(out)
}

/// The version `label` of `application`, if it exists.
pub async fn find(eb: &Eb, application: &str, label: &str) -> Result<Option<Version>> {
    Ok(crate::eb::version::describe(eb, application, label)
        .await?
        .as_ref()
        .map(Version::from_eb))
}

/// Every live environment of `application` (all of them, not only those of `deploy.toml`:
/// cleanup must not delete what any environment runs).
pub async fn environments(eb: &Eb, application: &str) -> Result<Vec<EnvironmentDescription>> {
    eb.environments(application, None)
        .await
        .with_context(|| format!("cannot list the environments of {application}"))
}

/// RFC 3339 text for a time (`2026-11-29T17:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Serde for `Option<SystemTime>` as RFC 3339 text.
pub mod rfc3339_opt {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_round_trip() {
        let r = Release::fixed("v1.2.0", "0123456789abcdef0123456789abcdef01234567");
        let url = "https://github.com/RolnickLab/antenna/actions/runs/123456";
        let d = description(&r, Some(url));
        assert_eq!(
            d,
            "v1.2.0 (0123456789abcdef0123456789abcdef01234567) https://github.com/RolnickLab/antenna/actions/runs/123456"
        );
        let p = parse_description(&d);
        assert_eq!(p.release.as_deref(), Some("v1.2.0"));
        assert_eq!(p.commit.as_deref(), Some(r.commit.as_str()));
        assert_eq!(p.run_url.as_deref(), Some(url));
        let plain = parse_description(&description(&r, None));
        assert_eq!(plain.run_url, None);
        assert_eq!(plain.release.as_deref(), Some("v1.2.0"));
        assert_eq!(parse_description("made by hand"), Described::default());
        let long = "x".repeat(190);
        assert!(!description(&r, Some(&long)).contains("xxx"));

        // An image built from a git source: its exact commit is in the description too.
        let mut pinned = r.clone();
        let source = "fedcba9876543210fedcba9876543210fedcba98";
        pinned.sources.push(crate::image::source::PinnedSource {
            image: "backend".into(),
            url: "https://github.com/RolnickLab/antenna.git".into(),
            rev: "v0.9.0".into(),
            commit: source.into(),
            pinned: true,
        });
        let d = description(&pinned, Some(url));
        assert!(d.len() <= MAX_DESCRIPTION, "{d}");
        let p = parse_description(&d);
        assert_eq!(p.sources.get("backend").map(String::as_str), Some(source));
        assert_eq!(p.commit.as_deref(), Some(r.commit.as_str()));
        assert_eq!(p.run_url.as_deref(), Some(url));
    }
}
