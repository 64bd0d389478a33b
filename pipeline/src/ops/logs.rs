//! The logs of an Elastic Beanstalk environment, as EB collects them: tail logs (the last
//! lines of each log file of each instance) or the full bundle (every log file, zipped), per
//! instance and per file, with secrets masked.
//!
//! EB collects logs asynchronously: `RequestEnvironmentInfo` asks every instance to upload its
//! logs to S3, and `RetrieveEnvironmentInfo` lists what arrived so far, one presigned S3 URL
//! per instance and sample (older samples stay listed). A sample counts when it is newer than
//! what was listed before the request (so clock skew between this machine and EB does not
//! matter); the wait ends when every instance has one, or at the deadline with what arrived.
//!
//! Tail logs are one text file per instance in which each log file starts with a header:
//! a line of dashes, the file's path, a line of dashes. A bundle is a zip of `/var/log`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_elasticbeanstalk::types::{
    EnvironmentInfoDescription, EnvironmentInfoType, InstancesHealthAttribute,
};
use serde::Serialize;
use tokio::time::Instant;

use crate::eb::{Eb, Poller};
use crate::lint::secrets::secret_reason;
use crate::verify::mask_url;

/// What to collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// The last lines of each log file (EB's `tail`).
    Tail,
    /// Every log file (EB's `bundle`).
    Bundle,
}

impl LogKind {
    fn info_type(self) -> EnvironmentInfoType {
        match self {
            LogKind::Tail => EnvironmentInfoType::Tail,
            LogKind::Bundle => EnvironmentInfoType::Bundle,
        }
    }
}

/// One collection of logs.
#[derive(Debug, Clone)]
pub struct LogsRequest<'a> {
    /// The Elastic Beanstalk environment name.
    pub environment: &'a str,
    pub kind: LogKind,
    /// How long the instances may take to upload their logs.
    pub timeout: Duration,
    /// Values masked wherever they appear (for example the environment's secret properties),
    /// on top of what the secret detector recognises.
    pub known_secrets: Vec<String>,
}

/// The logs of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct LogsReport {
    pub environment: String,
    pub kind: LogKind,
    pub instances: Vec<InstanceLogs>,
    /// Instances whose logs did not arrive before the deadline.
    pub missing: Vec<String>,
}

/// The logs of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceLogs {
    pub instance: String,
    /// When EB took the sample (RFC 3339).
    pub sampled_at: Option<String>,
    pub files: Vec<LogFile>,
}

/// One log file, masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogFile {
    /// The path on the instance (`/var/log/eb-engine.log`).
    pub path: String,
    pub lines: Vec<String>,
}

impl LogFile {
    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(n)..]
    }
}

/// Collects the environment's logs.
pub async fn fetch(eb: &Eb, req: &LogsRequest<'_>) -> Result<LogsReport> {
    let name = req.environment;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("cannot start an HTTP client")?;
    let expected = instance_ids(eb, name).await;
    let before = newest_samples(&retrieve(eb, req).await?);
    eb.call("RequestEnvironmentInfo", name, |c| {
        c.request_environment_info()
            .environment_name(name)
            .info_type(req.kind.info_type())
            .send()
    })
    .await
    .with_context(|| format!("cannot ask Elastic Beanstalk for the logs of {name}: check the credentials' elasticbeanstalk:RequestEnvironmentInfo permission"))?;
    tracing::info!(
        "logs: asked the instances of {name} for their {} logs; waiting for them (up to {})",
        kind_name(req.kind),
        humantime::format_duration(req.timeout)
    );

    let deadline = Instant::from_std(crate::config::instant_after(req.timeout));
    let mut poller = Poller::new(eb.pacing);
    // The instances take seconds to upload: the first look waits like the others.
    let first = paced(eb, &mut poller).min(deadline.saturating_duration_since(Instant::now()));
    tokio::time::sleep(first).await;
    let fresh = loop {
        let infos = retrieve(eb, req).await?;
        let fresh: BTreeMap<String, EnvironmentInfoDescription> = newest(&infos)
            .into_iter()
            .filter(|(id, info)| {
                let at = info.sample_timestamp().and_then(|t| t.to_millis().ok());
                before.get(id).is_none_or(|b| at > Some(*b))
            })
            .collect();
        let complete = match &expected {
            Some(ids) => ids.iter().all(|i| fresh.contains_key(i)),
            // Without the instance list, wait until samples stop arriving.
            None => !fresh.is_empty() && Instant::now() + poller.next_wait() >= deadline,
        };
        if complete || Instant::now() >= deadline {
            break fresh;
        }
        let wait = paced(eb, &mut poller).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
    };

    let mut instances = vec![];
    for (id, info) in &fresh {
        let url = info.message().unwrap_or_default();
        let body = download(&http, url).await.with_context(|| {
            format!(
                "cannot download the {} logs of instance {id} of {name}",
                kind_name(req.kind)
            )
        })?;
        let files = match req.kind {
            LogKind::Tail => parse_tail(&String::from_utf8_lossy(&body)),
            LogKind::Bundle => parse_bundle(&body).with_context(|| {
                format!("the log bundle of instance {id} of {name} is not a readable zip")
            })?,
        };
        let files = files
            .into_iter()
            .map(|f| LogFile {
                lines: mask_lines(&f.lines, &req.known_secrets),
                path: f.path,
            })
            .collect();
        instances.push(InstanceLogs {
            instance: id.clone(),
            sampled_at: info
                .sample_timestamp()
                .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            files,
        });
    }
    let missing: Vec<String> = expected
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !fresh.contains_key(i))
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "logs: no {} logs from {} after {}: the instance may be unreachable or still starting",
            kind_name(req.kind),
            missing.join(", "),
            humantime::format_duration(req.timeout)
        );
    }
    Ok(LogsReport {
        environment: name.to_string(),
        kind: req.kind,
        instances,
        missing,
    })
}

/// The wait before the next look for the samples: the poll interval, and the run's budget
/// (up to [`crate::eb::Pacing::budget_max_wait`]): after a failed deploy these looks come
/// after the verdict, and the run's average stays within the rate.
fn paced(eb: &Eb, poller: &mut Poller) -> Duration {
    poller
        .next_wait()
        .max(eb.run_budget_wait(0).min(eb.pacing.budget_max_wait))
}

fn kind_name(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Tail => "tail",
        LogKind::Bundle => "bundle",
    }
}

/// The environment's instances, from enhanced health (`None` when it cannot be read).
async fn instance_ids(eb: &Eb, name: &str) -> Option<Vec<String>> {
    // The verdict of a deploy may have listed them a moment ago.
    if let Some(ids) = eb.instances_seen(name, eb.pacing.min_interval) {
        return Some(ids);
    }
    let out = eb
        .call("DescribeInstancesHealth", name, |c| {
            c.describe_instances_health()
                .environment_name(name)
                .attribute_names(InstancesHealthAttribute::HealthStatus)
                .send()
        })
        .await;
    match out {
        Ok(o) => Some(
            o.instance_health_list()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect(),
        ),
        Err(e) => {
            tracing::debug!(
                "logs: cannot list the instances of {name} ({e}); waiting for samples instead"
            );
            None
        }
    }
}

async fn retrieve(eb: &Eb, req: &LogsRequest<'_>) -> Result<Vec<EnvironmentInfoDescription>> {
    let name = req.environment;
    let out = eb
        .call("RetrieveEnvironmentInfo", name, |c| {
            c.retrieve_environment_info()
                .environment_name(name)
                .info_type(req.kind.info_type())
                .send()
        })
        .await
        .with_context(|| format!("cannot list the collected logs of {name}: check the credentials' elasticbeanstalk:RetrieveEnvironmentInfo permission"))?;
    Ok(out.environment_info().to_vec())
}

/// The newest sample of each instance.
fn newest(infos: &[EnvironmentInfoDescription]) -> BTreeMap<String, EnvironmentInfoDescription> {
    let mut out: BTreeMap<String, EnvironmentInfoDescription> = BTreeMap::new();
    for i in infos {
        let Some(id) = i.ec2_instance_id() else {
            continue;
        };
        let at =
            |x: &EnvironmentInfoDescription| x.sample_timestamp().and_then(|t| t.to_millis().ok());
        if out.get(id).is_none_or(|o| at(i) > at(o)) {
            out.insert(id.to_string(), i.clone());
        }
    }
    out
}

fn newest_samples(infos: &[EnvironmentInfoDescription]) -> BTreeMap<String, i64> {
    newest(infos)
        .into_iter()
        .filter_map(|(id, i)| Some((id, i.sample_timestamp()?.to_millis().ok()?)))
        .collect()
}

/// GETs a presigned URL. Errors name the host and path only: the query holds a signature.
async fn download(http: &reqwest::Client, url: &str) -> Result<Vec<u8>> {
    let shown = url.split('?').next().unwrap_or_default().to_string();
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {shown} failed"))?;
    let status = resp.status();
    if !status.is_success() {
        anyhow::bail!(
            "GET {shown} answered {status} (the presigned URL may have expired: run again)"
        );
    }
    Ok(resp
        .bytes()
        .await
        .with_context(|| format!("reading {shown} failed"))?
        .to_vec())
}

/// Splits a tail log into its files: each starts with a line of dashes, its path, and a line
/// of dashes. Text before the first header is kept under the path `(unknown)`.
pub fn parse_tail(text: &str) -> Vec<LogFile> {
    let lines: Vec<&str> = text.lines().collect();
    let is_rule = |l: &str| l.len() >= 10 && l.trim_end().chars().all(|c| c == '-');
    let mut files: Vec<LogFile> = vec![];
    let mut i = 0;
    while i < lines.len() {
        if is_rule(lines[i])
            && i + 2 < lines.len()
            && lines[i + 1].starts_with('/')
            && is_rule(lines[i + 2])
        {
            files.push(LogFile {
                path: lines[i + 1].trim().to_string(),
                lines: vec![],
            });
            i += 3;
            continue;
        }
        if files.is_empty() {
            if lines[i].trim().is_empty() {
                i += 1;
                continue;
            }
            files.push(LogFile {
                path: "(unknown)".into(),
                lines: vec![],
            });
        }
        if let Some(f) = files.last_mut() {
            f.lines.push(lines[i].to_string());
        }
        i += 1;
    }
    for f in &mut files {
        while f.lines.last().is_some_and(|l| l.trim().is_empty()) {
            f.lines.pop();
        }
    }
    files
}

/// The files of a log bundle (a zip of `/var/log`), each with its absolute path.
pub fn parse_bundle(zip_bytes: &[u8]) -> Result<Vec<LogFile>> {
    let files = crate::bundle::Files::from_zip(zip_bytes)?;
    let mut files: Vec<LogFile> = files
        .0
        .into_iter()
        .map(|(name, bytes)| {
            let name = name.trim_start_matches('/');
            let path = if name.starts_with("var/") {
                format!("/{name}")
            } else {
                format!("/var/log/{name}")
            };
            LogFile {
                path,
                lines: String::from_utf8_lossy(&bytes)
                    .lines()
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Masks the secrets of a file's lines: what [`mask_line`] masks, and private key blocks.
pub fn mask_lines(lines: &[String], known: &[String]) -> Vec<String> {
    let mut in_key = false;
    lines
        .iter()
        .map(|l| {
            if l.contains("-----BEGIN") && l.contains("PRIVATE KEY") {
                in_key = !l.contains("-----END");
                return "*** (private key)".to_string();
            }
            if in_key {
                if l.contains("-----END") {
                    in_key = false;
                }
                return "***".to_string();
            }
            mask_report_line(l, known).unwrap_or_else(|| mask_line(l, known))
        })
        .collect()
}

/// The verify agent's report line with each check's target and detail masked as free text
/// (masking the JSON as a whole would blank a detail such as "check the password in the URL
/// (redis://:PASSWORD@HOST:PORT)"); `None` for any other line.
fn mask_report_line(line: &str, known: &[String]) -> Option<String> {
    let marker = crate::verify::agent::REPORT_MARKER;
    let at = line.find(marker)?;
    let mut report: crate::verify::VerifyReport =
        serde_json::from_str(&line[at + marker.len()..]).ok()?;
    for c in &mut report.checks {
        c.target = mask_line(&c.target, known);
        c.detail = mask_line(&c.detail, known);
    }
    Some(format!(
        "{}{}",
        mask_line(&line[..at], known),
        checks::agent::report_line(&report)
    ))
}

/// One line with secrets replaced by `***`: the `known` values; the values of `NAME=value`,
/// `NAME: value` and `"NAME": "value"` pairs whose name or value the lint's secret detector
/// flags; and passwords in URLs.
pub fn mask_line(line: &str, known: &[String]) -> String {
    let mut out = line.to_string();
    for k in known {
        // Very short values would mask ordinary words.
        if k.len() >= 4 {
            out = out.replace(k.as_str(), "***");
        }
    }
    let out = mask_pairs(&out);
    mask_urls(&out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

/// Masks the values of `NAME=value`, `NAME: value` and `"NAME": "value"` pairs.
fn mask_pairs(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '=' && c != ':' {
            i += 1;
            continue;
        }
        // The name: name characters before the separator, maybe in quotes.
        let mut end = i;
        if end > 0 && chars[end - 1] == '"' {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && is_name_char(chars[start - 1]) {
            start -= 1;
        }
        if start == end {
            i += 1;
            continue;
        }
        let name: String = chars[start..end].iter().collect();
        // The value: after spaces and an opening quote, up to a space, quote, comma, & or ;.
        let mut v = i + 1;
        // `://` is a URL, not a pair.
        if c == ':' && chars.get(v) == Some(&'/') {
            i += 1;
            continue;
        }
        while v < chars.len() && chars[v] == ' ' {
            v += 1;
        }
        let quote = match chars.get(v) {
            Some('"') | Some('\'') => {
                v += 1;
                Some(chars[v - 1])
            }
            _ => None,
        };
        let mut w = v;
        while w < chars.len() {
            let d = chars[w];
            let stop = match quote {
                Some(q) => d == q,
                None => d.is_whitespace() || matches!(d, '"' | '\'' | ',' | '&' | ';' | '}'),
            };
            if stop {
                break;
            }
            w += 1;
        }
        let value: String = chars[v..w].iter().collect();
        if !value.is_empty() && !already_masked(&value) && secret_reason(&name, &value).is_some() {
            out.extend(&chars[copied..v]);
            out.push_str("***");
            copied = w;
        }
        i = w.max(i + 1);
    }
    out.extend(&chars[copied.min(chars.len())..]);
    out
}

/// `***`, or a URL whose password is `***` (a line the verify agent already masked).
fn already_masked(value: &str) -> bool {
    value == "***"
        || value.split_once("://").is_some_and(|(_, rest)| {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            authority
                .rsplit_once('@')
                .and_then(|(userinfo, _)| userinfo.split_once(':'))
                .is_some_and(|(_, password)| password == "***")
        })
}

/// Masks the password of every `scheme://user:password@host` in the line.
fn mask_urls(line: &str) -> String {
    if !line.contains("://") {
        return line.to_string();
    }
    line.split_inclusive(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .map(|tok| {
            let (body, sep) = match tok.char_indices().last() {
                Some((i, c)) if c.is_whitespace() || c == '"' || c == '\'' => tok.split_at(i),
                _ => (tok, ""),
            };
            if crate::lint::secrets::url_with_password(body) {
                // The URL starts at its scheme: `(redis://…` keeps its parenthesis.
                let scheme = body.find("://").map_or(0, |at| {
                    body[..at]
                        .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                        .map_or(0, |p| p + 1)
                });
                format!("{}{}{sep}", &body[..scheme], mask_url(&body[scheme..]))
            } else {
                tok.to_string()
            }
        })
        .collect()
}

/// The files worth showing after a failed deploy: EB's engine log, the ECS agent's log and
/// the containers' logs (only those of `containers` when given), each cut to its last
/// `lines` lines.
pub fn failure_excerpt(
    report: &LogsReport,
    containers: &[String],
    lines: usize,
) -> Vec<(String, LogFile)> {
    let mut out = vec![];
    for inst in &report.instances {
        for f in &inst.files {
            let file_name = f.path.rsplit('/').next().unwrap_or_default();
            let container_log = f.path.contains("/containers/") || f.path.contains("/eb-docker/");
            let relevant = file_name == "eb-engine.log"
                || file_name.starts_with("ecs-agent.log")
                || (container_log
                    && (containers.is_empty()
                        || containers.iter().any(|c| file_name.starts_with(c.as_str()))));
            if relevant {
                out.push((
                    inst.instance.clone(),
                    LogFile {
                        path: f.path.clone(),
                        lines: f.tail(lines).to_vec(),
                    },
                ));
            }
        }
    }
    out
}

/// Prints `excerpt` on stderr, one `::group::` per file in GitHub Actions.
pub fn print_excerpt(actions: &crate::github::actions::Actions, excerpt: &[(String, LogFile)]) {
    for (instance, f) in excerpt {
        let title = format!("{instance} {} (last {} lines)", f.path, f.lines.len());
        let _group = actions.group(&title);
        if !actions.enabled() {
            eprintln!("==> {title}");
        }
        for l in &f.lines {
            eprintln!("{l}");
        }
    }
}

/// What the verify agent's postdeploy hook found on each instance whose `eb-hooks.log`
/// carries a failed report: a line per failed required check ("check redis failed on instance
/// i-…: …") and the instance's check table.
pub fn instance_check_failures(report: &LogsReport) -> Vec<String> {
    let mut out = Vec::new();
    for inst in &report.instances {
        let Some(hooks) = inst
            .files
            .iter()
            .find(|f| f.path == crate::verify::agent::HOOKS_LOG)
        else {
            continue;
        };
        let Some(found) = crate::verify::agent::find_report(hooks.lines.iter().map(String::as_str))
        else {
            continue;
        };
        if found.passed() {
            continue;
        }
        for c in found.failures() {
            out.push(format!(
                "check {} {} on instance {}: {} ({})",
                c.check,
                if c.verdict == crate::verify::Verdict::Unreachable {
                    "could not reach its target"
                } else {
                    "failed"
                },
                inst.instance,
                c.detail,
                c.target
            ));
        }
        out.extend(found.render_table().lines().map(|l| format!("  {l}")));
    }
    out
}

/// Lines of each relevant log shown after a failed deploy.
pub const FAILURE_LINES: usize = 40;

/// After a failed deploy: fetches the tail logs and prints the last lines of eb-engine.log,
/// the ECS agent's log and the containers' logs (one `::group::` each in GitHub Actions).
/// Problems fetching them are warnings: the deploy's verdict stands either way.
pub async fn show_failure_logs(
    eb: &Eb,
    environment: &str,
    actions: &crate::github::actions::Actions,
) {
    let req = LogsRequest {
        environment,
        kind: LogKind::Tail,
        timeout: Duration::from_secs(90),
        known_secrets: vec![],
    };
    match fetch(eb, &req).await {
        Ok(report) => {
            for line in instance_check_failures(&report) {
                tracing::error!("{line}");
            }
            let excerpt = failure_excerpt(&report, &[], FAILURE_LINES);
            if excerpt.is_empty() {
                tracing::warn!("logs: no instance of {environment} sent its logs; see `cargo xtask logs --env …`");
            }
            print_excerpt(actions, &excerpt);
        }
        Err(e) => tracing::warn!("cannot fetch the logs of the failed deploy: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_instance_check_is_named_with_its_instance() {
        let outcome = crate::verify::CheckOutcome {
            check: "nats".into(),
            target: "nats://nats.internal:4222".into(),
            required: true,
            verdict: crate::verify::Verdict::Fail,
            latency_ms: 3,
            elapsed_ms: 3,
            attempts: 1,
            detail: "JetStream is not enabled".into(),
        };
        let failed = crate::verify::VerifyReport::new(vec![outcome]);
        let line = checks::agent::report_line(&failed);
        let tail = format!("-------------------------------------\n/var/log/eb-hooks.log\n-------------------------------------\n2026/11/29 10:00:02.000 [INFO] Running command .platform/hooks/postdeploy/90_verify.sh\n{line}\n");
        let report = LogsReport {
            environment: "antenna-staging".into(),
            kind: LogKind::Tail,
            instances: vec![InstanceLogs {
                instance: "i-0abc".into(),
                sampled_at: None,
                files: parse_tail(&tail),
            }],
            missing: vec![],
        };
        let lines = instance_check_failures(&report);
        assert_eq!(
            lines[0],
            "check nats failed on instance i-0abc: JetStream is not enabled (nats://nats.internal:4222)"
        );
        assert!(
            lines.iter().any(|l| l.contains("verify: FAILED: nats")),
            "{lines:?}"
        );
        let passed = crate::verify::VerifyReport::new(vec![]);
        let tail = tail.replace(&line, &checks::agent::report_line(&passed));
        let report = LogsReport {
            instances: vec![InstanceLogs {
                instance: "i-0abc".into(),
                sampled_at: None,
                files: parse_tail(&tail),
            }],
            ..report
        };
        assert!(instance_check_failures(&report).is_empty());
    }

    const TAIL: &str = "-------------------------------------\n/var/log/eb-engine.log\n-------------------------------------\n2026/11/29 10:00:00.000 [INFO] Executing instruction: StageApplication\n2026/11/29 10:00:01.000 [ERROR] An error occurred during execution of command [app-deploy]\n\n\n-------------------------------------\n/var/log/ecs/ecs-agent.log\n-------------------------------------\nlevel=info msg=\"Task started\"\n";

    #[test]
    fn tail_logs_split_per_file() {
        let files = parse_tail(TAIL);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "/var/log/eb-engine.log");
        assert_eq!(files[0].lines.len(), 2);
        assert!(files[0].lines[1].contains("[ERROR]"));
        assert_eq!(files[1].path, "/var/log/ecs/ecs-agent.log");
        assert_eq!(files[1].lines, vec!["level=info msg=\"Task started\""]);
        assert_eq!(files[0].tail(1).len(), 1);
        assert!(parse_tail("").is_empty());
        assert_eq!(parse_tail("stray\n")[0].path, "(unknown)");
    }

    #[test]
    fn secrets_in_lines_are_masked() {
        let known = vec!["hunter2-very-secret".to_string()];
        let cases = [
            (
                "DJANGO_SECRET_KEY=abc123xyz starting",
                "DJANGO_SECRET_KEY=*** starting",
            ),
            (
                "env: {\"POSTGRES_PASSWORD\": \"pw-9876\", \"USE_DOCKER\": \"yes\"}",
                "env: {\"POSTGRES_PASSWORD\": \"***\", \"USE_DOCKER\": \"yes\"}",
            ),
            (
                "connecting to postgres://antenna:s3cr3t@db.internal:5432/antenna",
                "connecting to postgres://antenna:***@db.internal:5432/antenna",
            ),
            (
                "CELERY_BROKER_URL=amqp://guest:pa55@mq:5672//",
                "CELERY_BROKER_URL=***",
            ),
            ("token: hunter2-very-secret", "token: ***"),
            (
                "the value hunter2-very-secret leaked",
                "the value *** leaked",
            ),
            (
                "2026/11/29 10:00:01 [INFO] ok",
                "2026/11/29 10:00:01 [INFO] ok",
            ),
            ("USE_DOCKER=yes", "USE_DOCKER=yes"),
            (
                "hint: check the password in the URL (redis://:PASSWORD@HOST:PORT)",
                "hint: check the password in the URL (redis://:***@HOST:PORT)",
            ),
            // Already masked (the verify agent's report line): kept as it is.
            (
                r#"{"target":"rediss://:***@cache:6379/0","verdict":"fail"}"#,
                r#"{"target":"rediss://:***@cache:6379/0","verdict":"fail"}"#,
            ),
            (
                "GET https://example.org/api/v2/ 200",
                "GET https://example.org/api/v2/ 200",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(mask_line(line, &known), want, "{line}");
        }
        let key = vec![
            "-----BEGIN RSA PRIVATE KEY-----".to_string(),
            "MIIEowIBAAKCAQEA".to_string(),
            "-----END RSA PRIVATE KEY-----".to_string(),
            "after".to_string(),
        ];
        let masked = mask_lines(&key, &[]);
        assert!(!masked.join("\n").contains("MIIE"), "{masked:?}");
        assert_eq!(masked[3], "after");
    }

    #[test]
    fn bundles_keep_absolute_paths() {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            z.start_file("var/log/eb-engine.log", o).unwrap();
            z.write_all(b"a\nb\n").unwrap();
            z.start_file("ecs/ecs-agent.log", o).unwrap();
            z.write_all(b"c\n").unwrap();
            z.finish().unwrap();
        }
        let files = parse_bundle(buf.get_ref()).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/var/log/eb-engine.log", "/var/log/ecs/ecs-agent.log"]
        );
        assert_eq!(files[0].lines, ["a", "b"]);
        assert!(parse_bundle(b"not a zip").is_err());
    }

    #[test]
    fn failure_excerpt_picks_engine_agent_and_container_logs() {
        let report = LogsReport {
            environment: "e".into(),
            kind: LogKind::Tail,
            missing: vec![],
            instances: vec![InstanceLogs {
                instance: "i-1".into(),
                sampled_at: None,
                files: vec![
                    LogFile {
                        path: "/var/log/eb-engine.log".into(),
                        lines: (0..50).map(|i| i.to_string()).collect(),
                    },
                    LogFile {
                        path: "/var/log/nginx/access.log".into(),
                        lines: vec!["x".into()],
                    },
                    LogFile {
                        path: "/var/log/ecs/ecs-agent.log".into(),
                        lines: vec!["y".into()],
                    },
                    LogFile {
                        path: "/var/log/containers/django-0a1b-stdouterr.log".into(),
                        lines: vec!["boom".into()],
                    },
                    LogFile {
                        path: "/var/log/containers/flower-0a1b-stdouterr.log".into(),
                        lines: vec!["ok".into()],
                    },
                ],
            }],
        };
        let all = failure_excerpt(&report, &[], 20);
        let paths: Vec<&str> = all.iter().map(|(_, f)| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/var/log/eb-engine.log",
                "/var/log/ecs/ecs-agent.log",
                "/var/log/containers/django-0a1b-stdouterr.log",
                "/var/log/containers/flower-0a1b-stdouterr.log"
            ]
        );
        assert_eq!(all[0].1.lines.len(), 20);
        assert_eq!(all[0].1.lines[0], "30");
        let django = failure_excerpt(&report, &["django".into()], 20);
        assert_eq!(django.len(), 3);
    }
}
