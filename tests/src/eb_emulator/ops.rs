//! The actions of the operating commands (`status`, `history`, `logs`, `cleanup`):
//! `RequestEnvironmentInfo` / `RetrieveEnvironmentInfo` (log files written to S3 and handed
//! out as presigned URLs, as EB does), `DescribeApplicationVersions` newest first with
//! `MaxRecords`/`NextToken` paging, `DeleteApplicationVersion` with `DeleteSourceBundle`,
//! the account's application version quota (`TooManyApplicationVersionsException`) and
//! `UpdateApplicationResourceLifecycle`, whose version rules are applied as EB applies them:
//! each time a version is created (see [`Handler::apply_lifecycle`]).
//!
//! These handlers lock the state only between their awaits, so S3 calls happen outside it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use super::{
    fmt_time, members, sender, version_xml, ApiError, EbEmulator, Handler, Params, State, Xml,
};

/// EB's default quota of application versions per account and region.
pub const DEFAULT_VERSION_QUOTA: usize = 1000;

/// One collected log sample.
#[derive(Debug, Clone)]
pub struct LogSample {
    pub environment: String,
    pub info_type: String,
    pub instance: String,
    pub sampled: SystemTime,
    pub bucket: String,
    pub key: String,
    /// The presigned GET URL (made when the sample was uploaded, valid 15 minutes).
    pub url: String,
}

/// The operating commands' part of the emulator's state.
#[derive(Debug)]
pub(crate) struct OpsState {
    samples: Vec<LogSample>,
    /// Lines tests add to an environment's log files: (environment, path) → lines.
    lines: BTreeMap<(String, String), Vec<String>>,
    /// Lines of one instance's log files: (environment, instance, path) → lines.
    instance_lines: BTreeMap<(String, String, String), Vec<String>>,
    /// How long instances take to upload their logs.
    log_delay: Duration,
    descriptions: BTreeMap<(String, String), String>,
    quota: usize,
    /// The parameters of the last UpdateApplicationResourceLifecycle, per application.
    lifecycle: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for OpsState {
    fn default() -> Self {
        Self {
            samples: vec![],
            lines: BTreeMap::new(),
            instance_lines: BTreeMap::new(),
            log_delay: Duration::from_millis(40),
            descriptions: BTreeMap::new(),
            quota: DEFAULT_VERSION_QUOTA,
            lifecycle: BTreeMap::new(),
        }
    }
}

/// The stamp of EB's log lines (eb-engine.log, eb-hooks.log): `2026/11/29 10:00:00.123`.
pub(super) fn log_stamp(t: SystemTime) -> String {
    let t = fmt_time(t);
    let (day, time) = t.split_once('T').unwrap_or((&t, ""));
    format!("{} {}", day.replace('-', "/"), time.trim_end_matches('Z'))
}

impl OpsState {
    /// Appends `lines` to the log file `path` of one instance of `environment`.
    pub(super) fn append_instance_log(
        &mut self,
        environment: &str,
        instance: &str,
        path: &str,
        lines: impl IntoIterator<Item = String>,
    ) {
        self.instance_lines
            .entry((
                environment.to_string(),
                instance.to_string(),
                path.to_string(),
            ))
            .or_default()
            .extend(lines);
    }
}

impl EbEmulator {
    /// Appends `lines` to the log file `path` (`/var/log/eb-hooks.log`…) of the instance
    /// `instance` of `environment` only.
    pub fn append_instance_log(
        &self,
        environment: &str,
        instance: &str,
        path: &str,
        lines: &[&str],
    ) {
        self.with(|s| {
            s.ops.append_instance_log(
                environment,
                instance,
                path,
                lines.iter().map(|l| l.to_string()),
            )
        });
    }

    /// Appends `lines` to the log file `path` (`/var/log/eb-engine.log`,
    /// `/var/log/containers/django-…-stdouterr.log`…) of every instance of `environment`.
    pub fn append_log(&self, environment: &str, path: &str, lines: &[&str]) {
        self.with(|s| {
            s.ops
                .lines
                .entry((environment.to_string(), path.to_string()))
                .or_default()
                .extend(lines.iter().map(|l| l.to_string()))
        });
    }

    /// How long instances take to upload their logs after `RequestEnvironmentInfo`.
    pub fn set_log_delay(&self, delay: Duration) {
        self.with(|s| s.ops.log_delay = delay);
    }

    /// The log samples uploaded so far.
    pub fn log_samples(&self) -> Vec<LogSample> {
        self.with(|s| s.ops.samples.clone())
    }

    /// The account's quota of application versions (EB's default is 1,000).
    pub fn set_version_quota(&self, quota: usize) {
        self.with(|s| s.ops.quota = quota);
    }

    /// Registers an existing version with a description and a creation time.
    #[allow(clippy::too_many_arguments)]
    pub fn add_version_at(
        &self,
        application: &str,
        label: &str,
        bucket: &str,
        key: &str,
        status: &str,
        description: &str,
        created: SystemTime,
    ) {
        self.add_version(application, label, bucket, key, status);
        self.with(|s| {
            let k = (application.to_string(), label.to_string());
            if let Some(v) = s.versions.get_mut(&k) {
                v.created = created;
            }
            s.ops.descriptions.insert(k, description.to_string());
        });
    }

    /// The description a version was created with.
    pub fn version_description(&self, application: &str, label: &str) -> Option<String> {
        self.with(|s| {
            s.ops
                .descriptions
                .get(&(application.to_string(), label.to_string()))
                .cloned()
        })
    }

    /// The labels of `application`'s versions.
    pub fn version_labels(&self, application: &str) -> Vec<String> {
        self.with(|s| {
            s.versions
                .values()
                .filter(|v| v.application == application)
                .map(|v| v.label.clone())
                .collect()
        })
    }

    /// The parameters of the last `UpdateApplicationResourceLifecycle` of `application`.
    pub fn lifecycle(&self, application: &str) -> Option<BTreeMap<String, String>> {
        self.with(|s| s.ops.lifecycle.get(application).cloned())
    }
}

impl Handler {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Handles the operating commands' actions; `None` for the others (and for a
    /// `CreateApplicationVersion` within the quota, which the core handles).
    pub(super) async fn dispatch_ops(
        &self,
        action: &str,
        p: &Params,
    ) -> Option<Result<String, ApiError>> {
        let req = |k: &str| {
            p.get(k).cloned().ok_or_else(|| {
                sender(
                    "MissingParameter",
                    format!("The request must contain the parameter {k}"),
                )
            })
        };
        let result = match action {
            "CreateApplicationVersion" => {
                let mut s = self.lock();
                let (Ok(app), Ok(label)) = (req("ApplicationName"), req("VersionLabel")) else {
                    return None;
                };
                let key = (app, label);
                // The core answers an unknown application or an existing label.
                if s.versions.contains_key(&key) || !s.applications.contains_key(&key.0) {
                    return None;
                }
                if s.versions.len() >= s.ops.quota {
                    return Some(Err(sender(
                        "TooManyApplicationVersionsException",
                        format!(
                            "You cannot have more than {} Application Versions.",
                            s.ops.quota
                        ),
                    )));
                }
                if let Some(d) = p.get("Description") {
                    s.ops.descriptions.insert(key, d.clone());
                }
                return None;
            }
            "DescribeApplicationVersions" => self.describe_versions(p),
            "DeleteApplicationVersion" => self.delete_version(p).await,
            "RequestEnvironmentInfo" => self.request_info(p),
            "RetrieveEnvironmentInfo" => self.retrieve_info(p),
            "UpdateApplicationResourceLifecycle" => self.update_lifecycle(p),
            _ => return None,
        };
        Some(result)
    }

    fn describe_versions(&self, p: &Params) -> Result<String, ApiError> {
        let s = self.lock();
        let app = p.get("ApplicationName");
        let labels = members(p, "VersionLabels");
        let max = match p.get("MaxRecords") {
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => n,
                _ => {
                    return Err(sender(
                        "InvalidParameterValue",
                        format!("1 validation error detected: Value '{m}' at 'maxRecords' failed to satisfy constraint: Member must have value between 1 and 1000"),
                    ))
                }
            },
            None => usize::MAX,
        };
        let start = match p.get("NextToken") {
            Some(t) => t
                .strip_prefix("v1-")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| sender("InvalidParameterValue", "Invalid NextToken"))?,
            None => 0,
        };
        let mut matching: Vec<&super::Version> = s
            .versions
            .values()
            .filter(|v| app.is_none_or(|a| *a == v.application))
            .filter(|v| labels.is_empty() || labels.contains(&v.label))
            .collect();
        // Newest first, as EB lists them.
        matching.sort_by(|a, b| b.created.cmp(&a.created).then(b.label.cmp(&a.label)));
        let mut x = Xml::default();
        x.open("ApplicationVersions");
        for v in matching.iter().skip(start).take(max) {
            x.open("member");
            version_xml(&mut x, v);
            if let Some(d) = s
                .ops
                .descriptions
                .get(&(v.application.clone(), v.label.clone()))
            {
                x.leaf("Description", d);
            }
            x.close("member");
        }
        x.close("ApplicationVersions");
        if start.saturating_add(max) < matching.len() {
            x.leaf("NextToken", &format!("v1-{}", start + max));
        }
        Ok(x.finish())
    }

    async fn delete_version(&self, p: &Params) -> Result<String, ApiError> {
        let app = p.get("ApplicationName").cloned().ok_or_else(|| {
            sender(
                "MissingParameter",
                "The request must contain the parameter ApplicationName",
            )
        })?;
        let label = p.get("VersionLabel").cloned().ok_or_else(|| {
            sender(
                "MissingParameter",
                "The request must contain the parameter VersionLabel",
            )
        })?;
        let removed = {
            let mut s = self.lock();
            s.advance(std::time::Instant::now());
            if s.environments
                .values()
                .any(|e| e.application == app && e.version.as_deref() == Some(&label))
            {
                return Err(sender(
                    "InvalidParameterValue",
                    format!("Unable to delete application version '{label}' because it is being used by an environment."),
                ));
            }
            let removed = s.versions.remove(&(app.clone(), label.clone()));
            s.ops.descriptions.remove(&(app.clone(), label.clone()));
            removed
        };
        let Some(v) = removed else {
            return Err(sender(
                "InvalidParameterValue",
                format!("No Application Version named '{label}' found."),
            ));
        };
        if p.get("DeleteSourceBundle").map(String::as_str) == Some("true") {
            self.s3
                .delete_object()
                .bucket(&v.bucket)
                .key(&v.key)
                .send()
                .await
                .map_err(|e| {
                    sender(
                        "SourceBundleDeletionFailure",
                        format!(
                            "Unable to delete source bundle s3://{}/{}: {}",
                            v.bucket,
                            v.key,
                            aws_sdk_s3::error::DisplayErrorContext(e)
                        ),
                    )
                })?;
        }
        Ok(String::new())
    }

    fn request_info(&self, p: &Params) -> Result<String, ApiError> {
        let info_type = p.get("InfoType").cloned().unwrap_or_default();
        if info_type != "tail" && info_type != "bundle" {
            return Err(sender(
                "InvalidParameterValue",
                format!("Value '{info_type}' at 'infoType' failed to satisfy constraint: Member must satisfy enum value set: [tail, bundle]"),
            ));
        }
        let mut s = self.lock();
        s.advance(std::time::Instant::now());
        let name = p.get("EnvironmentName").cloned().unwrap_or_default();
        let Some(env) = s.environments.get(&name).cloned() else {
            return Err(sender(
                "InvalidParameterValue",
                format!("No Environment found for EnvironmentName = '{name}'."),
            ));
        };
        let now = SystemTime::now();
        // The files every instance has, then what tests appended.
        let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let engine: Vec<String> = s
            .events
            .iter()
            .filter(|e| e.environment.as_deref() == Some(name.as_str()))
            .map(|e| {
                let level = if e.severity == "INFO" {
                    "INFO"
                } else {
                    "ERROR"
                };
                format!("{} [{level}] {}", log_stamp(e.date), e.message)
            })
            .collect();
        files.insert("/var/log/eb-engine.log".into(), engine);
        files.insert(
            "/var/log/ecs/ecs-agent.log".into(),
            vec![format!(
                "level=info time={} msg=\"Managed task is running\" task=\"{}\"",
                fmt_time(now),
                env.version.clone().unwrap_or_default()
            )],
        );
        for ((e, path), lines) in &s.ops.lines {
            if *e == name {
                files.entry(path.clone()).or_default().extend(lines.clone());
            }
        }
        // Each instance's own files on top of those.
        let per_instance: BTreeMap<String, BTreeMap<String, Vec<String>>> = env
            .instances
            .iter()
            .map(|inst| {
                let mut own = files.clone();
                for ((e, i, path), lines) in &s.ops.instance_lines {
                    if *e == name && *i == inst.id {
                        own.entry(path.clone()).or_default().extend(lines.clone());
                    }
                }
                (inst.id.clone(), own)
            })
            .collect();
        let bucket = s.storage_bucket.clone();
        let delay = s.ops.log_delay;
        let handler = self.clone();
        drop(s);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for inst in &env.instances {
                let files = &per_instance[&inst.id];
                let sampled = SystemTime::now();
                let ms = sampled
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let (key, body) = if info_type == "tail" {
                    let mut text = String::new();
                    for (path, lines) in files {
                        let rule = "-".repeat(40);
                        text.push_str(&format!("{rule}\n{path}\n{rule}\n"));
                        let from = lines.len().saturating_sub(100);
                        for l in &lines[from..] {
                            text.push_str(l);
                            text.push('\n');
                        }
                        text.push_str("\n\n");
                    }
                    (
                        format!(
                            "resources/environments/logs/tail/{}/{}/TailLogs-{ms}.out",
                            env.id, inst.id
                        ),
                        text.into_bytes(),
                    )
                } else {
                    let mut buf = std::io::Cursor::new(Vec::new());
                    {
                        let mut z = zip::ZipWriter::new(&mut buf);
                        let o = zip::write::SimpleFileOptions::default();
                        for (path, lines) in files {
                            z.start_file(path.trim_start_matches('/'), o).unwrap();
                            for l in lines {
                                writeln!(z, "{l}").unwrap();
                            }
                        }
                        z.finish().unwrap();
                    }
                    (
                        format!(
                            "resources/environments/logs/bundle/{}/{}/BundleLogs-{ms}.zip",
                            env.id, inst.id
                        ),
                        buf.into_inner(),
                    )
                };
                let put = handler
                    .s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await;
                if put.is_err() {
                    continue;
                }
                let Ok(cfg) =
                    aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(900))
                else {
                    continue;
                };
                let Ok(url) = handler
                    .s3
                    .get_object()
                    .bucket(&bucket)
                    .key(&key)
                    .presigned(cfg)
                    .await
                else {
                    continue;
                };
                handler.lock().ops.samples.push(LogSample {
                    environment: env.name.clone(),
                    info_type: info_type.clone(),
                    instance: inst.id.clone(),
                    sampled,
                    bucket: bucket.clone(),
                    key,
                    url: url.uri().to_string(),
                });
            }
        });
        Ok(String::new())
    }

    fn retrieve_info(&self, p: &Params) -> Result<String, ApiError> {
        let s = self.lock();
        let name = p.get("EnvironmentName").cloned().unwrap_or_default();
        if !s.environments.contains_key(&name) {
            return Err(sender(
                "InvalidParameterValue",
                format!("No Environment found for EnvironmentName = '{name}'."),
            ));
        }
        let info_type = p.get("InfoType").cloned().unwrap_or_default();
        let mut x = Xml::default();
        x.open("EnvironmentInfo");
        for sample in s
            .ops
            .samples
            .iter()
            .filter(|l| l.environment == name && l.info_type == info_type)
        {
            x.open("member");
            x.leaf("InfoType", &sample.info_type);
            x.leaf("Ec2InstanceId", &sample.instance);
            x.leaf("SampleTimestamp", &fmt_time(sample.sampled));
            x.leaf("Message", &sample.url);
            x.close("member");
        }
        x.close("EnvironmentInfo");
        Ok(x.finish())
    }

    /// EB applies an application's version lifecycle policy each time a version of it is
    /// created: after creating it, without counting the new version toward `MaxCount`. It
    /// deletes the versions beyond `MaxCount` (the oldest first) and those older than
    /// `MaxAgeInDays`, at most 100 at a time, never one that an environment uses, and deletes
    /// their source bundles from S3 when the rule that removed them says
    /// `DeleteSourceFromS3`. (Real EB does this in the background, soon after answering; here it
    /// is done before the answer, so that tests see the result at once.)
    pub(super) async fn apply_lifecycle(&self, application: &str, created: &str) {
        const MAX_DELETIONS: usize = 100;
        let doomed: Vec<(super::Version, bool)> = {
            let mut s = self.lock();
            let Some(config) = s.ops.lifecycle.get(application).cloned() else {
                return;
            };
            let field = |rule: &str, field: &str| {
                config
                    .get(&format!("VersionLifecycleConfig.{rule}.{field}"))
                    .cloned()
            };
            let enabled = |rule: &str| field(rule, "Enabled").as_deref() == Some("true");
            let from_s3 = |rule: &str| field(rule, "DeleteSourceFromS3").as_deref() == Some("true");
            let max_count = enabled("MaxCountRule")
                .then(|| field("MaxCountRule", "MaxCount")?.parse::<usize>().ok())
                .flatten();
            let max_age = enabled("MaxAgeRule")
                .then(|| field("MaxAgeRule", "MaxAgeInDays")?.parse::<u64>().ok())
                .flatten()
                .map(|days| Duration::from_secs(days * 86_400));
            let in_use: Vec<String> = s
                .environments
                .values()
                .filter(|e| e.application == application)
                .filter_map(|e| e.version.clone())
                .collect();
            let mut older: Vec<super::Version> = s
                .versions
                .values()
                .filter(|v| v.application == application && v.label != created)
                .cloned()
                .collect();
            older.sort_by(|a, b| b.created.cmp(&a.created).then(b.label.cmp(&a.label)));
            let now = SystemTime::now();
            let mut doomed = vec![];
            for (i, v) in older.into_iter().enumerate() {
                let by_count = max_count.is_some_and(|n| i >= n);
                let by_age = max_age
                    .is_some_and(|age| now.duration_since(v.created).unwrap_or_default() > age);
                if !(by_count || by_age) || in_use.contains(&v.label) {
                    continue;
                }
                let source =
                    (by_count && from_s3("MaxCountRule")) || (by_age && from_s3("MaxAgeRule"));
                doomed.push((v, source));
                if doomed.len() == MAX_DELETIONS {
                    break;
                }
            }
            for (v, _) in &doomed {
                let key = (v.application.clone(), v.label.clone());
                s.versions.remove(&key);
                s.ops.descriptions.remove(&key);
            }
            doomed
        };
        for (v, _) in doomed.iter().filter(|(_, source)| *source) {
            // EB's service role deletes the bundle; a failure leaves it in S3 and nothing else.
            let _ = self
                .s3
                .delete_object()
                .bucket(&v.bucket)
                .key(&v.key)
                .send()
                .await;
        }
    }

    fn update_lifecycle(&self, p: &Params) -> Result<String, ApiError> {
        let mut s = self.lock();
        let app = p.get("ApplicationName").cloned().ok_or_else(|| {
            sender(
                "MissingParameter",
                "The request must contain the parameter ApplicationName",
            )
        })?;
        let prefix = "ResourceLifecycleConfig.";
        let config: BTreeMap<String, String> = p
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone())))
            .collect();
        let get = |k: &str| config.get(k).cloned();
        for rule in ["MaxCountRule", "MaxAgeRule"] {
            let enabled = get(&format!("VersionLifecycleConfig.{rule}.Enabled"));
            if enabled.as_deref() == Some("true") && get("ServiceRole").is_none() {
                return Err(sender(
                    "InvalidParameterValue",
                    "A service role is required to enable application version lifecycle rules.",
                ));
            }
        }
        s.ops.lifecycle.insert(app.clone(), config.clone());
        let mut x = Xml::default();
        x.leaf("ApplicationName", &app);
        x.open("ResourceLifecycleConfig");
        if let Some(r) = get("ServiceRole") {
            x.leaf("ServiceRole", &r);
        }
        x.open("VersionLifecycleConfig");
        for (rule, limit) in [("MaxCountRule", "MaxCount"), ("MaxAgeRule", "MaxAgeInDays")] {
            x.open(rule);
            for field in ["Enabled", limit, "DeleteSourceFromS3"] {
                if let Some(v) = get(&format!("VersionLifecycleConfig.{rule}.{field}")) {
                    x.leaf(field, &v);
                }
            }
            x.close(rule);
        }
        x.close("VersionLifecycleConfig");
        x.close("ResourceLifecycleConfig");
        Ok(x.finish())
    }
}
