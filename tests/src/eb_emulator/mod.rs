//! A test-only Elastic Beanstalk: an HTTP/1.1 server on 127.0.0.1 that speaks the AWS Query
//! protocol (form-encoded POST, `Action=…&Version=2010-12-01`) to the real
//! `aws-sdk-elasticbeanstalk` client, with EB's XML responses and error XML.
//!
//! Each test starts its own emulator (random port), adds applications and environments, scripts
//! what the next deploys do (a timeline of statuses, events and health, in short real delays),
//! injects throttling bursts, 5xx answers and dropped connections, then asserts on the calls the
//! emulator recorded. Application versions created with `Process=true` are fetched from S3
//! (moto) and checked the way EB checks a multi-container Docker bundle.

mod http;
mod options;
mod script;
mod validate;
mod xml;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use options::{ENVIRONMENT, ENVIRONMENT_SECRETS};
pub use script::{Script, Step, Which};

use xml::{Xml, NS};

/// One recorded API call: the action and its form parameters.
#[derive(Debug, Clone)]
pub struct Call {
    pub action: String,
    pub params: BTreeMap<String, String>,
    pub at: Instant,
    /// The HTTP status the emulator answered with (0 for a dropped connection or while the
    /// call is being answered).
    pub status: u16,
}

impl Call {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }
}

/// Actions that change something in EB.
pub const WRITE_ACTIONS: &[&str] = &[
    "CreateApplicationVersion",
    "DeleteApplicationVersion",
    "UpdateEnvironment",
    "CreateStorageLocation",
];

/// A fault injected into the next matching calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 `Throttling: Rate exceeded`, as EB answers above its rate.
    Throttle,
    /// An HTTP 5xx with EB's `InternalFailure` / `ServiceUnavailable` error XML.
    ServerError(u16),
    /// The connection is closed without an answer.
    Drop,
}

#[derive(Debug)]
struct FaultRule {
    action: Option<String>,
    fault: Fault,
    remaining: usize,
}

#[derive(Debug, Clone)]
pub struct Version {
    pub application: String,
    pub label: String,
    pub bucket: String,
    pub key: String,
    pub status: String,
    pub created: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub version: Option<String>,
    pub color: String,
    pub health_status: String,
}

#[derive(Debug, Clone)]
pub struct Environment {
    pub application: String,
    pub name: String,
    pub id: String,
    pub status: String,
    pub version: Option<String>,
    pub color: String,
    pub health_status: String,
    pub causes: Vec<String>,
    pub instances: Vec<Instance>,
    pub updated: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub date: SystemTime,
    pub message: String,
    pub severity: String,
    pub request_id: Option<String>,
    pub application: String,
    pub environment: Option<String>,
    pub version: Option<String>,
}

/// A script being played on an environment.
#[derive(Debug)]
struct Running {
    script: Script,
    started: Instant,
    next: usize,
    version: Option<String>,
    previous: Option<String>,
    request_id: Option<String>,
}

#[derive(Default)]
struct State {
    storage_bucket: String,
    versions: BTreeMap<(String, String), Version>,
    environments: BTreeMap<String, Environment>,
    events: Vec<Event>,
    calls: Vec<Call>,
    faults: VecDeque<FaultRule>,
    /// Scripts for the next `UpdateEnvironment` calls, per environment.
    next_scripts: BTreeMap<String, VecDeque<Script>>,
    running: BTreeMap<String, Running>,
    /// When the last step of the last script ran, per environment.
    finished: BTreeMap<String, Instant>,
    /// Every script end, in order: (environment, when).
    finish_log: Vec<(String, Instant)>,
    latency: Duration,
    processing_delay: Duration,
    /// A foreign deploy that starts just before the next `UpdateEnvironment` is handled.
    foreign_before_update: Option<(String, String, Script)>,
    /// EB's own throttle on DescribeEnvironments and DescribeEvents: (calls/s, burst).
    rate_limit: Option<(f64, f64)>,
    /// Tokens left and when they were counted.
    rate_tokens: (f64, Option<Instant>),
    request_counter: u64,
    /// Option settings per environment (see `options`).
    configs: BTreeMap<String, options::EnvConfig>,
}

/// The emulator; dropping it stops the server.
pub struct EbEmulator {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    s3: aws_sdk_s3::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for EbEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl EbEmulator {
    /// Starts an emulator on a random port of 127.0.0.1. `s3` reads the bundles of versions
    /// created with `Process=true`; `storage_bucket` is what `CreateStorageLocation` answers
    /// (the test creates it in S3).
    pub async fn start(s3: aws_sdk_s3::Client, storage_bucket: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            storage_bucket: storage_bucket.to_string(),
            processing_delay: Duration::from_millis(30),
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot bind the EB emulator on 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let handler = Handler {
            state: state.clone(),
            s3: s3.clone(),
        };
        let server = tokio::spawn(http::serve(listener, handler));
        Self {
            endpoint: format!("http://{addr}"),
            state,
            s3,
            server,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds a Ready, Green environment running `version` (with `instances` instances).
    pub fn add_environment(
        &self,
        application: &str,
        name: &str,
        version: Option<&str>,
        instances: usize,
    ) {
        self.with(|s| {
            let id = format!("e-{:010x}", fastrand::u64(..) & 0xff_ffff_ffff);
            let instances = (0..instances)
                .map(|i| Instance {
                    id: format!("i-{:017x}", fastrand::u64(..) >> 4 | i as u64),
                    version: version.map(str::to_string),
                    color: "Green".into(),
                    health_status: "Ok".into(),
                })
                .collect();
            s.environments.insert(
                name.to_string(),
                Environment {
                    application: application.to_string(),
                    name: name.to_string(),
                    id,
                    status: "Ready".into(),
                    version: version.map(str::to_string),
                    color: "Green".into(),
                    health_status: "Ok".into(),
                    causes: vec![],
                    instances,
                    updated: SystemTime::now(),
                },
            );
        });
    }

    /// Registers an application version that already exists (for example the running one).
    pub fn add_version(
        &self,
        application: &str,
        label: &str,
        bucket: &str,
        key: &str,
        status: &str,
    ) {
        self.with(|s| {
            s.versions.insert(
                (application.to_string(), label.to_string()),
                Version {
                    application: application.to_string(),
                    label: label.to_string(),
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    status: status.to_string(),
                    created: SystemTime::now(),
                },
            );
        });
    }

    /// Changes an environment directly (status, health, causes...).
    pub fn update_environment(&self, name: &str, f: impl FnOnce(&mut Environment)) {
        self.with(|s| f(s.environments.get_mut(name).expect("unknown environment")));
    }

    pub fn environment(&self, name: &str) -> Environment {
        self.with(|s| s.environments[name].clone())
    }

    pub fn version(&self, application: &str, label: &str) -> Option<Version> {
        self.with(|s| {
            s.versions
                .get(&(application.to_string(), label.to_string()))
                .cloned()
        })
    }

    /// What the next `UpdateEnvironment` of `environment` does (queued, one per call). Without a
    /// script, a deploy succeeds after 50 ms.
    pub fn script_next_deploy(&self, environment: &str, script: Script) {
        self.with(|s| {
            s.next_scripts
                .entry(environment.to_string())
                .or_default()
                .push_back(script)
        });
    }

    /// Starts a deploy of `version` that someone else asked for (the environment turns
    /// `Updating` now and plays `script`).
    pub fn start_foreign_deploy(&self, environment: &str, version: &str, script: Script) {
        self.with(|s| {
            let rid = s.new_request_id();
            s.begin(environment, Some(version.to_string()), script, Some(rid));
        });
    }

    /// Makes the next `UpdateEnvironment` of `environment` lose a race: someone else's deploy
    /// of `version` starts just before it, so EB refuses it.
    pub fn race_next_update(&self, environment: &str, version: &str, script: Script) {
        self.with(|s| {
            s.foreign_before_update = Some((environment.to_string(), version.to_string(), script))
        });
    }

    /// Injects `fault` into the next `count` calls of `action` (any action when `None`).
    pub fn inject(&self, action: Option<&str>, fault: Fault, count: usize) {
        self.with(|s| {
            s.faults.push_back(FaultRule {
                action: action.map(str::to_string),
                fault,
                remaining: count,
            })
        });
    }

    /// Throttles DescribeEnvironments and DescribeEvents above `per_second` (burst `burst`),
    /// as EB does at about 2 calls/s with a burst of 15.
    pub fn set_rate_limit(&self, per_second: f64, burst: u32) {
        self.with(|s| {
            s.rate_limit = Some((per_second, burst as f64));
            s.rate_tokens = (burst as f64, None);
        });
    }

    /// Delay before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// How long version processing takes once the bundle is fetched.
    pub fn set_processing_delay(&self, delay: Duration) {
        self.with(|s| s.processing_delay = delay);
    }

    /// Every call received so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    /// The calls of `action`.
    pub fn calls_of(&self, action: &str) -> Vec<Call> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| c.action == action)
                .cloned()
                .collect()
        })
    }

    /// The calls that change something in EB.
    pub fn write_calls(&self) -> Vec<Call> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|c| WRITE_ACTIONS.contains(&c.action.as_str()))
                .cloned()
                .collect()
        })
    }

    /// When the last scripted step of `environment` ran (the moment the scenario was decided).
    pub fn finished_at(&self, environment: &str) -> Option<Instant> {
        self.with(|s| {
            s.advance(Instant::now());
            s.finished.get(environment).copied()
        })
    }

    /// When each script played on `environment` ended, in order.
    pub fn finishes(&self, environment: &str) -> Vec<Instant> {
        self.with(|s| {
            s.advance(Instant::now());
            s.finish_log
                .iter()
                .filter(|(e, _)| e == environment)
                .map(|(_, t)| *t)
                .collect()
        })
    }

    /// The events recorded so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.with(|s| s.events.clone())
    }

    /// The S3 client the emulator reads bundles with.
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }
}

impl State {
    fn new_request_id(&mut self) -> String {
        self.request_counter += 1;
        let r = fastrand::u64(..);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (r >> 32) as u32,
            (r >> 16) as u16,
            self.request_counter & 0xfff,
            (r >> 4) & 0xfff,
            self.request_counter
        )
    }

    fn event(
        &mut self,
        env: &str,
        severity: &str,
        message: String,
        request_id: Option<String>,
        version: Option<String>,
    ) {
        let application = self
            .environments
            .get(env)
            .map(|e| e.application.clone())
            .unwrap_or_default();
        self.events.push(Event {
            date: SystemTime::now(),
            message,
            severity: severity.to_string(),
            request_id,
            application,
            environment: Some(env.to_string()),
            version,
        });
    }

    /// Starts playing `script` on `env` for a deploy of `version`.
    fn begin(
        &mut self,
        env: &str,
        version: Option<String>,
        script: Script,
        request_id: Option<String>,
    ) {
        let e = self.environments.get_mut(env).expect("unknown environment");
        let previous = e.version.clone();
        e.status = "Updating".into();
        e.color = "Grey".into();
        e.health_status = "Info".into();
        if version.is_some() {
            e.version = version.clone();
        }
        e.updated = SystemTime::now();
        self.finished.remove(env);
        self.event(
            env,
            "INFO",
            "Environment update is starting.".into(),
            request_id.clone(),
            None,
        );
        self.running.insert(
            env.to_string(),
            Running {
                script,
                started: Instant::now(),
                next: 0,
                version,
                previous,
                request_id,
            },
        );
        self.advance(Instant::now());
    }

    /// Applies every scripted step whose time has come.
    fn advance(&mut self, now: Instant) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            loop {
                let run = self.running.get_mut(&name).unwrap();
                let Some(step) = run.script.steps.get(run.next).cloned() else {
                    let started = run.started;
                    let last = run.script.steps.last().map_or(Duration::ZERO, |s| s.at);
                    self.running.remove(&name);
                    self.finished.insert(name.clone(), started + last);
                    self.finish_log.push((name.clone(), started + last));
                    break;
                };
                if run.started + step.at > now {
                    break;
                }
                run.next += 1;
                let version = run.version.clone();
                let previous = run.previous.clone();
                let rid = run.request_id.clone();
                let fill = |t: &str| {
                    t.replace("{version}", version.as_deref().unwrap_or("none"))
                        .replace("{previous}", previous.as_deref().unwrap_or("none"))
                };
                for (severity, message) in &step.events {
                    let message = fill(message);
                    self.event(&name, severity, message, rid.clone(), None);
                }
                let e = self.environments.get_mut(&name).unwrap();
                let pick = |w: Which| match w {
                    Which::Deployed => version.clone(),
                    Which::Previous => previous.clone(),
                };
                if let Some(s) = &step.status {
                    e.status = s.clone();
                }
                if let Some((c, h)) = &step.health {
                    e.color = c.clone();
                    e.health_status = h.clone();
                }
                if let Some(w) = step.env_version {
                    e.version = pick(w);
                }
                if let Some(causes) = &step.causes {
                    e.causes = causes.iter().map(|c| fill(c)).collect();
                }
                if let Some((n, w)) = step.instances {
                    let n = n.min(e.instances.len());
                    let v = pick(w);
                    for i in e.instances.iter_mut().take(n) {
                        i.version = v.clone();
                    }
                }
                if let Some((c, h)) = &step.instance_health {
                    for i in &mut e.instances {
                        i.color = c.clone();
                        i.health_status = h.clone();
                    }
                }
                e.updated = SystemTime::now();
            }
        }
    }

    fn take_fault(&mut self, action: &str) -> Option<Fault> {
        if let Some((rate, burst)) = self.rate_limit {
            if matches!(action, "DescribeEnvironments" | "DescribeEvents") {
                let now = Instant::now();
                let (tokens, last) = self.rate_tokens;
                let tokens = last.map_or(tokens, |l| {
                    (tokens + now.duration_since(l).as_secs_f64() * rate).min(burst)
                });
                if tokens < 1.0 {
                    self.rate_tokens = (tokens, Some(now));
                    return Some(Fault::Throttle);
                }
                self.rate_tokens = (tokens - 1.0, Some(now));
            }
        }
        let rule = self
            .faults
            .iter_mut()
            .find(|r| r.remaining > 0 && r.action.as_deref().is_none_or(|a| a == action))?;
        rule.remaining -= 1;
        Some(rule.fault)
    }
}

/// What the HTTP layer answers.
pub(crate) enum Reply {
    Ok {
        body: String,
        request_id: String,
    },
    Err {
        status: u16,
        body: String,
        request_id: String,
    },
    Drop,
}

#[derive(Clone)]
pub(crate) struct Handler {
    state: Arc<Mutex<State>>,
    s3: aws_sdk_s3::Client,
}

type Params = BTreeMap<String, String>;

struct ApiError {
    status: u16,
    kind: &'static str,
    code: &'static str,
    message: String,
}

fn sender(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        kind: "Sender",
        code,
        message: message.into(),
    }
}

impl Handler {
    pub(crate) async fn handle(&self, body: &[u8]) -> Reply {
        let params: Params = url::form_urlencoded::parse(body).into_owned().collect();
        let action = params.get("Action").cloned().unwrap_or_default();
        let (latency, fault, request_id, index) = {
            let mut s = self.state.lock().unwrap();
            let fault = s.take_fault(&action);
            s.calls.push(Call {
                action: action.clone(),
                params: params.clone(),
                at: Instant::now(),
                status: 0,
            });
            let index = s.calls.len() - 1;
            (s.latency, fault, s.new_request_id(), index)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let result = match fault {
            Some(Fault::Drop) => return Reply::Drop,
            Some(Fault::Throttle) => Err(sender("Throttling", "Rate exceeded")),
            Some(Fault::ServerError(status)) => Err(ApiError {
                status,
                kind: "Receiver",
                code: if status == 503 { "ServiceUnavailable" } else { "InternalFailure" },
                message: "The request processing has failed because of an unknown error, exception or failure.".into(),
            }),
            None if params.get("Version").map(String::as_str) != Some("2010-12-01") => Err(sender(
                "InvalidParameterValue",
                "Version must be 2010-12-01",
            )),
            None => self.dispatch(&action, &params, &request_id).await,
        };
        let status = match &result {
            Ok(_) => 200,
            Err(e) => e.status,
        };
        self.state.lock().unwrap().calls[index].status = status;
        match result {
            Ok(inner) => Reply::Ok {
                body: format!(
                    "<{action}Response xmlns=\"{NS}\"><{action}Result>{inner}</{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
                ),
                request_id,
            },
            Err(e) => Reply::Err {
                status: e.status,
                body: format!(
                    "<ErrorResponse xmlns=\"{NS}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                    e.kind,
                    e.code,
                    xml::escape(&e.message)
                ),
                request_id,
            },
        }
    }

    async fn dispatch(
        &self,
        action: &str,
        p: &Params,
        request_id: &str,
    ) -> Result<String, ApiError> {
        let req = |k: &str| {
            p.get(k).cloned().ok_or_else(|| {
                sender(
                    "MissingParameter",
                    format!("The request must contain the parameter {k}"),
                )
            })
        };
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        s.advance(now);
        let mut x = Xml::default();
        match action {
            "CreateStorageLocation" => {
                x.leaf("S3Bucket", &s.storage_bucket);
            }
            "CreateApplicationVersion" => {
                let app = req("ApplicationName")?;
                let label = req("VersionLabel")?;
                let bucket = req("SourceBundle.S3Bucket")?;
                let key = req("SourceBundle.S3Key")?;
                if label.len() > 100 {
                    return Err(sender(
                        "InvalidParameterValue",
                        "Version label must be at most 100 characters long.",
                    ));
                }
                if s.versions.contains_key(&(app.clone(), label.clone())) {
                    return Err(sender(
                        "InvalidParameterValue",
                        format!("Application Version {label} already exists."),
                    ));
                }
                let process = p.get("Process").map(String::as_str) == Some("true");
                let v = Version {
                    application: app.clone(),
                    label: label.clone(),
                    bucket: bucket.clone(),
                    key: key.clone(),
                    status: if process { "PROCESSING" } else { "UNPROCESSED" }.into(),
                    created: SystemTime::now(),
                };
                s.versions.insert((app.clone(), label.clone()), v.clone());
                if process {
                    let handler = self.clone();
                    let delay = s.processing_delay;
                    tokio::spawn(
                        async move { handler.process(app, label, bucket, key, delay).await },
                    );
                }
                x.open("ApplicationVersion");
                version_xml(&mut x, &v);
                x.close("ApplicationVersion");
            }
            "DescribeApplicationVersions" => {
                let app = p.get("ApplicationName");
                let labels = members(p, "VersionLabels");
                x.open("ApplicationVersions");
                for v in s.versions.values() {
                    if app.is_some_and(|a| *a != v.application) {
                        continue;
                    }
                    if !labels.is_empty() && !labels.contains(&v.label) {
                        continue;
                    }
                    x.open("member");
                    version_xml(&mut x, v);
                    x.close("member");
                }
                x.close("ApplicationVersions");
            }
            "DeleteApplicationVersion" => {
                let app = req("ApplicationName")?;
                let label = req("VersionLabel")?;
                if s.environments
                    .values()
                    .any(|e| e.application == app && e.version.as_deref() == Some(&label))
                {
                    return Err(sender(
                        "InvalidParameterValue",
                        format!("Unable to delete application version '{label}' because it is being used by an environment."),
                    ));
                }
                if s.versions.remove(&(app, label.clone())).is_none() {
                    return Err(sender(
                        "InvalidParameterValue",
                        format!("No Application Version named '{label}' found."),
                    ));
                }
            }
            "DescribeEnvironments" => {
                let names = members(p, "EnvironmentNames");
                let app = p.get("ApplicationName");
                x.open("Environments");
                for e in s.environments.values() {
                    if (!names.is_empty() && !names.contains(&e.name))
                        || app.is_some_and(|a| *a != e.application)
                    {
                        continue;
                    }
                    x.open("member");
                    env_xml(&mut x, e);
                    x.close("member");
                }
                x.close("Environments");
            }
            "DescribeConfigurationSettings" => {
                let env = req("EnvironmentName")?;
                s.describe_configuration(
                    &mut x,
                    p.get("ApplicationName").map(String::as_str),
                    &env,
                )?;
            }
            "UpdateEnvironment" => {
                let name = req("EnvironmentName")?;
                let label = p.get("VersionLabel").cloned();
                if s.foreign_before_update
                    .as_ref()
                    .is_some_and(|(e, _, _)| *e == name)
                {
                    let (e, v, script) = s.foreign_before_update.take().unwrap();
                    let rid = s.new_request_id();
                    s.begin(&e, Some(v), script, Some(rid));
                }
                let e = s.environments.get(&name).ok_or_else(|| {
                    sender(
                        "InvalidParameterValue",
                        format!("No Environment found for EnvironmentName = '{name}'."),
                    )
                })?;
                let app = e.application.clone();
                if e.status != "Ready" {
                    return Err(sender(
                        "InvalidParameterValue",
                        format!("Environment named {name} is in an invalid state for this operation. Must be Ready."),
                    ));
                }
                if let Some(label) = &label {
                    if !s.versions.contains_key(&(app.clone(), label.clone())) {
                        return Err(sender(
                            "InvalidParameterValue",
                            format!("No Application Version named '{label}' found."),
                        ));
                    }
                }
                let changes = options::parse_changes(p)?;
                let script = s
                    .next_scripts
                    .get_mut(&name)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or_else(|| match label {
                        Some(_) => Script::success(Duration::from_millis(50)),
                        None => options::configuration_script(&name, Duration::from_millis(50)),
                    });
                // A configuration-only update keeps the running version.
                let version = label.or_else(|| s.environments[&name].version.clone());
                s.stage(&name, changes, request_id);
                s.begin(&name, version, script, Some(request_id.to_string()));
                env_xml(&mut x, &s.environments[&name]);
            }
            "DescribeEvents" => {
                let start = match p.get("StartTime") {
                    Some(t) => Some(parse_time(t)?),
                    None => None,
                };
                let max = p
                    .get("MaxRecords")
                    .and_then(|m| m.parse::<usize>().ok())
                    .unwrap_or(100);
                let rank = |sev: &str| {
                    ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
                        .iter()
                        .position(|x| *x == sev)
                };
                let min_sev = p.get("Severity").and_then(|s| rank(s));
                x.open("Events");
                let matching = s
                    .events
                    .iter()
                    .rev()
                    .filter(|ev| {
                        p.get("ApplicationName")
                            .is_none_or(|a| *a == ev.application)
                    })
                    .filter(|ev| {
                        p.get("EnvironmentName")
                            .is_none_or(|n| Some(n) == ev.environment.as_ref())
                    })
                    .filter(|ev| {
                        p.get("VersionLabel")
                            .is_none_or(|v| Some(v) == ev.version.as_ref())
                    })
                    .filter(|ev| {
                        p.get("RequestId")
                            .is_none_or(|r| Some(r) == ev.request_id.as_ref())
                    })
                    .filter(|ev| start.is_none_or(|t| ev.date >= t))
                    .filter(|ev| min_sev.is_none_or(|m| rank(&ev.severity).unwrap_or(0) >= m))
                    .take(max);
                for ev in matching {
                    x.open("member");
                    x.leaf("EventDate", &fmt_time(ev.date));
                    x.leaf("Message", &ev.message);
                    x.leaf("ApplicationName", &ev.application);
                    if let Some(v) = &ev.version {
                        x.leaf("VersionLabel", v);
                    }
                    if let Some(n) = &ev.environment {
                        x.leaf("EnvironmentName", n);
                    }
                    if let Some(r) = &ev.request_id {
                        x.leaf("RequestId", r);
                    }
                    x.leaf("Severity", &ev.severity);
                    x.close("member");
                }
                x.close("Events");
            }
            "DescribeEnvironmentHealth" => {
                let name = req("EnvironmentName")?;
                let e = s.environments.get(&name).ok_or_else(|| {
                    sender(
                        "InvalidRequestException",
                        format!("Environment {name} does not exist."),
                    )
                })?;
                x.leaf("EnvironmentName", &e.name);
                x.leaf("HealthStatus", &e.health_status);
                x.leaf("Status", &e.status);
                x.leaf("Color", &e.color);
                x.open("Causes");
                for c in &e.causes {
                    x.leaf("member", c);
                }
                x.close("Causes");
                let count = |c: &str| e.instances.iter().filter(|i| i.health_status == c).count();
                x.open("InstancesHealth");
                for (tag, st) in [
                    ("Ok", "Ok"),
                    ("Info", "Info"),
                    ("Warning", "Warning"),
                    ("Degraded", "Degraded"),
                    ("Severe", "Severe"),
                    ("Pending", "Pending"),
                    ("Unknown", "Unknown"),
                    ("NoData", "NoData"),
                ] {
                    x.leaf(tag, &count(st).to_string());
                }
                x.close("InstancesHealth");
                x.leaf("RefreshedAt", &fmt_time(SystemTime::now()));
            }
            "DescribeInstancesHealth" => {
                let name = req("EnvironmentName")?;
                let e = s.environments.get(&name).ok_or_else(|| {
                    sender(
                        "InvalidRequestException",
                        format!("Environment {name} does not exist."),
                    )
                })?;
                x.open("InstanceHealthList");
                for (n, i) in e.instances.iter().enumerate() {
                    x.open("member");
                    x.leaf("InstanceId", &i.id);
                    x.leaf("HealthStatus", &i.health_status);
                    x.leaf("Color", &i.color);
                    x.open("Causes");
                    x.close("Causes");
                    if let Some(v) = &i.version {
                        x.open("Deployment");
                        x.leaf("VersionLabel", v);
                        x.leaf("DeploymentId", &(n + 1).to_string());
                        x.leaf("Status", "Deployed");
                        x.close("Deployment");
                    }
                    x.close("member");
                }
                x.close("InstanceHealthList");
                x.leaf("RefreshedAt", &fmt_time(SystemTime::now()));
            }
            other => {
                return Err(sender(
                    "InvalidAction",
                    format!("The action {other} is not valid for this web service."),
                ));
            }
        }
        Ok(x.finish())
    }

    /// Fetches the bundle from S3 and checks it as EB does, then marks the version.
    async fn process(
        &self,
        app: String,
        label: String,
        bucket: String,
        key: String,
        delay: Duration,
    ) {
        let verdict = match self.s3.get_object().bucket(&bucket).key(&key).send().await {
            Ok(obj) => match obj.body.collect().await {
                Ok(bytes) => validate::bundle(&bytes.into_bytes()),
                Err(e) => Err(format!(
                    "Unable to download the source bundle s3://{bucket}/{key}: {e}"
                )),
            },
            Err(e) => Err(format!(
                "Unable to download the source bundle s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )),
        };
        tokio::time::sleep(delay).await;
        let mut s = self.state.lock().unwrap();
        let status = if verdict.is_ok() {
            "PROCESSED"
        } else {
            "FAILED"
        };
        if let Some(v) = s.versions.get_mut(&(app.clone(), label.clone())) {
            v.status = status.into();
        }
        let message = match verdict {
            Ok(()) => format!("Created a new application version: {label}"),
            Err(why) => format!("Failed to process application version {label}: {why}"),
        };
        s.events.push(Event {
            date: SystemTime::now(),
            message,
            severity: if status == "PROCESSED" {
                "INFO"
            } else {
                "ERROR"
            }
            .into(),
            request_id: None,
            application: app,
            environment: None,
            version: Some(label),
        });
    }
}

/// The values of a Query list parameter (`Name.member.1`, `Name.member.2`...).
fn members(p: &Params, name: &str) -> Vec<String> {
    let prefix = format!("{name}.member.");
    p.iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, v)| v.clone())
        .collect()
}

fn version_xml(x: &mut Xml, v: &Version) {
    x.leaf(
        "ApplicationVersionArn",
        &format!(
            "arn:aws:elasticbeanstalk:us-west-2:123456789012:applicationversion/{}/{}",
            v.application, v.label
        ),
    );
    x.leaf("ApplicationName", &v.application);
    x.leaf("VersionLabel", &v.label);
    x.open("SourceBundle");
    x.leaf("S3Bucket", &v.bucket);
    x.leaf("S3Key", &v.key);
    x.close("SourceBundle");
    x.leaf("DateCreated", &fmt_time(v.created));
    x.leaf("DateUpdated", &fmt_time(v.created));
    x.leaf("Status", &v.status);
}

fn env_xml(x: &mut Xml, e: &Environment) {
    x.leaf("EnvironmentName", &e.name);
    x.leaf("EnvironmentId", &e.id);
    x.leaf("ApplicationName", &e.application);
    if let Some(v) = &e.version {
        x.leaf("VersionLabel", v);
    }
    x.leaf(
        "SolutionStackName",
        "64bit Amazon Linux 2 v3.6.0 running ECS",
    );
    x.leaf(
        "CNAME",
        &format!("{}.us-west-2.elasticbeanstalk.com", e.name),
    );
    x.leaf("DateUpdated", &fmt_time(e.updated));
    x.leaf("Status", &e.status);
    x.leaf(
        "AbortableOperationInProgress",
        if e.status == "Updating" {
            "true"
        } else {
            "false"
        },
    );
    x.leaf("Health", &e.color);
    x.leaf("HealthStatus", &e.health_status);
    x.open("Tier");
    x.leaf("Name", "WebServer");
    x.leaf("Type", "Standard");
    x.leaf("Version", "1.0");
    x.close("Tier");
}

fn fmt_time(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .expect("time in range")
}

fn parse_time(t: &str) -> Result<SystemTime, ApiError> {
    let dt = aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
        .map_err(|e| {
            sender(
                "InvalidParameterValue",
                format!("Invalid timestamp {t}: {e}"),
            )
        })?;
    SystemTime::try_from(dt).map_err(|e| {
        sender(
            "InvalidParameterValue",
            format!("Invalid timestamp {t}: {e}"),
        )
    })
}
