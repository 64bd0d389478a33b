//! A test-only Elastic Beanstalk: an HTTP/1.1 server on 127.0.0.1 that speaks the AWS Query
//! protocol (form-encoded POST, `Action=…&Version=2010-12-01`) to the real
//! `aws-sdk-elasticbeanstalk` client, with EB's XML responses and error XML.
//!
//! Each test starts its own emulator (random port), adds applications and environments, scripts
//! what the next deploys do (a timeline of statuses, events and health, in short real delays),
//! injects throttling bursts, 5xx answers and dropped connections, then asserts on the calls the
//! emulator recorded. Application versions created with `Process=true` are fetched from S3
//! (moto) and checked the way EB checks a multi-container Docker bundle.

mod actions;
mod authz;
mod http;
pub mod iam;
mod ops;
mod options;
mod scenario;
mod script;
mod validate;
mod xml;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use actions::launch_template_id;
pub use ops::{LogSample, DEFAULT_VERSION_QUOTA};
pub use options::{ENVIRONMENT, ENVIRONMENT_SECRETS};
pub use scenario::Scenario;
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

/// Every action the emulator answers (the dispatcher refuses anything else with EB's
/// `InvalidAction`); the conformance suite checks each one against botocore's model.
pub const ACTIONS: &[&str] = &[
    "CreateApplication",
    "CreateApplicationVersion",
    "CreateStorageLocation",
    "DeleteApplicationVersion",
    "DescribeApplicationVersions",
    "DescribeApplications",
    "DescribeConfigurationSettings",
    "DescribeEnvironmentHealth",
    "DescribeEnvironmentResources",
    "DescribeEnvironments",
    "DescribeEvents",
    "DescribeInstancesHealth",
    "DescribePlatformVersion",
    "ListPlatformBranches",
    "RequestEnvironmentInfo",
    "RetrieveEnvironmentInfo",
    "UpdateApplicationResourceLifecycle",
    "UpdateEnvironment",
];

/// Actions that change something in EB.
pub const WRITE_ACTIONS: &[&str] = &[
    "CreateApplicationVersion",
    "DeleteApplicationVersion",
    "UpdateEnvironment",
    "CreateStorageLocation",
];

/// EB's throttle on its describe calls, in calls per second per account. AWS publishes no
/// figure for Elastic Beanstalk: about 2 calls/s with a burst of 15 is what peers measure and
/// design for (see docs/eb-emulator.md for the evidence).
pub const EB_RATE: f64 = 2.0;
/// How many calls of one family may go out at once before [`EB_RATE`] applies.
pub const EB_BURST: u32 = 15;

/// EB throttles per account and per family of actions: AWS Support confirmed that
/// DescribeEvents, DescribeEnvironments and ListTagsForResource draw on the same bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// Describe*/List* calls on EB's control plane (environments, events, versions, tags).
    Describe,
    /// Enhanced health (DescribeEnvironmentHealth, DescribeInstancesHealth), served apart.
    Health,
    /// Calls that change something.
    Write,
}

impl Family {
    pub fn of(action: &str) -> Self {
        match action {
            "DescribeEnvironmentHealth" | "DescribeInstancesHealth" => Family::Health,
            a if a.starts_with("Describe")
                || a.starts_with("List")
                || a.starts_with("Retrieve")
                || a.starts_with("Check")
                || a.starts_with("Validate") =>
            {
                Family::Describe
            }
            _ => Family::Write,
        }
    }
}

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

/// An application (`CreateApplication`, or registered by [`EbEmulator::add_environment`]).
#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub description: Option<String>,
    pub created: SystemTime,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub version: Option<String>,
    /// The environment's deployment number that put `version` on this instance (EB counts
    /// deployments per environment: 1, 2, 3...).
    pub deployment_id: u64,
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
    pub created: SystemTime,
    pub updated: SystemTime,
    /// The number of the latest deployment (EB's `DeploymentId`).
    pub deployment_id: u64,
    /// `SolutionStackName` and `PlatformArn` (the ECS on Amazon Linux 2 platform unless a test
    /// puts the environment on another one).
    pub solution_stack: String,
    pub platform_arn: String,
    /// The `CNAME` EB answers (default `<name>.us-west-2.elasticbeanstalk.com`); a test can
    /// point it at a server on loopback (`127.0.0.1:PORT`).
    pub cname: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Event {
    /// When EB recorded the event (its `EventDate`); may be before events already listed.
    pub date: SystemTime,
    /// When the event becomes visible to `DescribeEvents`.
    pub visible: Instant,
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
    applications: BTreeMap<String, Application>,
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
    /// EB's own throttle, per account and per action family: (calls/s, burst).
    rate_limit: Option<(f64, f64)>,
    /// Tokens left in each family's bucket and when they were counted.
    rate_tokens: BTreeMap<Family, (f64, Instant)>,
    request_counter: u64,
    /// The operating commands' state (logs, version descriptions, quota, lifecycle).
    ops: ops::OpsState,
    /// How many of the next processed versions fail with no reason (status FAILED, no event).
    silent_failures: usize,
    /// Option settings per environment (see `options`).
    configs: BTreeMap<String, options::EnvConfig>,
    /// Callers held to an IAM policy, by access key id (see `authz`).
    identities: BTreeMap<String, authz::Identity>,
    /// The `.ebextensions` option settings of each processed version's bundle.
    bundle_settings: BTreeMap<(String, String), Vec<authz::Setting>>,
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
        Self::start_on("127.0.0.1:0", s3, storage_bucket)
            .await
            .expect("cannot bind the EB emulator on 127.0.0.1")
    }

    /// Starts an emulator on `addr` (the standalone emulator's `--port`).
    pub async fn start_on(
        addr: &str,
        s3: aws_sdk_s3::Client,
        storage_bucket: &str,
    ) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            storage_bucket: storage_bucket.to_string(),
            processing_delay: Duration::from_millis(30),
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let handler = Handler {
            state: state.clone(),
            s3: s3.clone(),
        };
        let server = tokio::spawn(http::serve(listener, handler));
        Ok(Self {
            endpoint: format!("http://{addr}"),
            state,
            s3,
            server,
        })
    }

    /// True when `name` is an environment of this emulator.
    pub fn has_environment(&self, name: &str) -> bool {
        self.with(|s| s.environments.contains_key(name))
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
            s.register_application(application);
            let id = format!("e-{:010x}", fastrand::u64(..) & 0xff_ffff_ffff);
            let deployment_id = u64::from(version.is_some());
            let instances = (0..instances)
                .map(|i| Instance {
                    id: format!("i-{:017x}", fastrand::u64(..) >> 4 | i as u64),
                    version: version.map(str::to_string),
                    deployment_id,
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
                    created: SystemTime::now(),
                    updated: SystemTime::now(),
                    deployment_id,
                    solution_stack: actions::SOLUTION_STACK.into(),
                    platform_arn: actions::platform_arn(),
                    cname: None,
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
            s.register_application(application);
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

    /// Registers an application (as `CreateApplication` would), if it is not there yet.
    pub fn add_application(&self, name: &str) {
        self.with(|s| s.register_application(name));
    }

    /// The applications, by name.
    pub fn applications(&self) -> Vec<Application> {
        self.with(|s| s.applications.values().cloned().collect())
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

    /// Throttles every action family above `per_second` (burst `burst`), each family with its
    /// own bucket shared by the whole account (this emulator is one account), as EB does.
    pub fn set_rate_limit(&self, per_second: f64, burst: u32) {
        self.with(|s| {
            s.rate_limit = Some((per_second, burst as f64));
            s.rate_tokens.clear();
        });
    }

    /// EB's own throttle ([`EB_RATE`] calls/s, burst [`EB_BURST`], per family) with time
    /// compressed `scale` times, like the pacing of the client under test.
    pub fn throttle_like_eb(&self, scale: f64) {
        self.set_rate_limit(EB_RATE * scale, EB_BURST);
    }

    /// Delay before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.with(|s| s.latency = latency);
    }

    /// The next `count` versions processed fail the way real EB often does: status FAILED and
    /// no event, no reason anywhere.
    pub fn fail_next_processing_silently(&self, count: usize) {
        self.with(|s| s.silent_failures = count);
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
    fn register_application(&mut self, name: &str) {
        self.applications
            .entry(name.to_string())
            .or_insert_with(|| Application {
                name: name.to_string(),
                description: None,
                created: SystemTime::now(),
            });
    }

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
            visible: Instant::now(),
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
            e.deployment_id += 1;
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
                // EB dates what happens when it happens, whoever looks later.
                let due = run.started + step.at;
                let when = SystemTime::now()
                    .checked_sub(Instant::now().saturating_duration_since(due))
                    .unwrap_or_else(SystemTime::now);
                let version = run.version.clone();
                let previous = run.previous.clone();
                let rid = run.request_id.clone();
                let last_instance = self.environments[&name]
                    .instances
                    .last()
                    .map_or("i-none".to_string(), |i| i.id.clone());
                let fill = |t: &str| {
                    t.replace("{version}", version.as_deref().unwrap_or("none"))
                        .replace("{previous}", previous.as_deref().unwrap_or("none"))
                        .replace("{instance}", &last_instance)
                };
                for (severity, message) in &step.events {
                    let message = fill(message);
                    self.event(&name, severity, message, rid.clone(), None);
                    if let Some(ev) = self.events.last_mut() {
                        ev.date = when;
                    }
                }
                for (severity, message, back) in &step.late_events {
                    let message = fill(message);
                    self.event(&name, severity, message, rid.clone(), None);
                    if let Some(ev) = self.events.last_mut() {
                        ev.date = when.checked_sub(*back).unwrap_or(when);
                    }
                }
                for (path, lines) in &step.last_instance_logs {
                    let stamp = ops::log_stamp(when);
                    let lines = lines.iter().map(|l| fill(l).replace("{stamp}", &stamp));
                    self.ops
                        .append_instance_log(&name, &last_instance, path, lines);
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
                    let deployment = match w {
                        Which::Deployed => e.deployment_id,
                        Which::Previous => e.deployment_id.saturating_sub(1),
                    };
                    for i in e.instances.iter_mut().take(n) {
                        i.version = v.clone();
                        i.deployment_id = deployment;
                    }
                }
                if let Some((c, h)) = &step.instance_health {
                    for i in &mut e.instances {
                        i.color = c.clone();
                        i.health_status = h.clone();
                    }
                }
                if let Some((c, h)) = &step.last_instance_health {
                    if let Some(i) = e.instances.last_mut() {
                        i.color = c.clone();
                        i.health_status = h.clone();
                    }
                }
                e.updated = when;
            }
        }
    }

    fn take_fault(&mut self, action: &str) -> Option<Fault> {
        if let Some((rate, burst)) = self.rate_limit {
            let now = Instant::now();
            let (tokens, last) = *self
                .rate_tokens
                .entry(Family::of(action))
                .or_insert((burst, now));
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
            if tokens < 1.0 {
                self.rate_tokens.insert(Family::of(action), (tokens, now));
                return Some(Fault::Throttle);
            }
            self.rate_tokens
                .insert(Family::of(action), (tokens - 1.0, now));
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
    /// Handles one request; `access_key` is the SigV4 credential's key id, if signed.
    pub(crate) async fn handle(&self, body: &[u8], access_key: Option<&str>) -> Reply {
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
            None => {
                let allowed = self
                    .state
                    .lock()
                    .unwrap()
                    .authorize(access_key, &action, &params);
                match allowed {
                    Ok(()) => {
                        self.dispatch(&action, &params, &request_id, access_key)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
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
        access_key: Option<&str>,
    ) -> Result<String, ApiError> {
        if !ACTIONS.contains(&action) {
            return Err(sender(
                "InvalidAction",
                format!("The action {action} is not valid for this web service."),
            ));
        }
        if let Some(result) = self.dispatch_ops(action, p).await {
            return result;
        }
        let result = self.dispatch_core(action, p, request_id, access_key);
        if result.is_ok() && action == "CreateApplicationVersion" {
            if let (Some(app), Some(label)) = (p.get("ApplicationName"), p.get("VersionLabel")) {
                self.apply_lifecycle(app, label).await;
            }
        }
        result
    }

    /// The actions answered from the state alone (the lock is held throughout).
    fn dispatch_core(
        &self,
        action: &str,
        p: &Params,
        request_id: &str,
        access_key: Option<&str>,
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
                if !s.applications.contains_key(&app) {
                    return Err(sender(
                        "InvalidParameterValue",
                        format!("No Application named '{app}' found."),
                    ));
                }
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
                    match s.versions.get(&(app.clone(), label.clone())) {
                        None => {
                            return Err(sender(
                                "InvalidParameterValue",
                                format!("No Application Version named '{label}' found."),
                            ))
                        }
                        Some(v) if v.status == "FAILED" => {
                            return Err(sender(
                                "InvalidParameterValue",
                                format!("Application version '{label}' failed processing and cannot be deployed: create a new version."),
                            ))
                        }
                        Some(_) => {}
                    }
                }
                let mut changes = options::parse_changes(p)?;
                // EB applies the bundle's `.ebextensions` option settings with the version,
                // and with the caller's permissions (see `authz`).
                let from_bundle = label
                    .as_ref()
                    .and_then(|l| s.bundle_settings.get(&(app.clone(), l.clone())))
                    .cloned()
                    .unwrap_or_default();
                let differing = authz::differing(&from_bundle, |ns| s.deployed_options(&name, ns));
                let changes_configuration = !differing.is_empty() || !changes.is_empty();
                changes.add(differing);
                let denied = s.on_behalf(access_key, &name, changes_configuration);
                let script = denied.map(Ok).unwrap_or_else(|| Err(()));
                let script = script.or_else(|()| {
                    s.next_scripts
                        .get_mut(&name)
                        .and_then(VecDeque::pop_front)
                        .ok_or(())
                });
                let script = script.unwrap_or_else(|()| match label {
                    Some(_) => Script::success(Duration::from_millis(50)),
                    None => options::configuration_script(&name, Duration::from_millis(50)),
                });
                // A configuration-only update keeps the running version.
                let version = label.or_else(|| s.environments[&name].version.clone());
                s.stage(&name, changes, request_id);
                s.begin(&name, version, script, Some(request_id.to_string()));
                env_xml(&mut x, &s.environments[&name]);
            }
            "DescribeEvents" => actions::describe_events(&s, p, &mut x)?,
            "DescribeEnvironmentHealth" => actions::describe_environment_health(&s, p, &mut x)?,
            "DescribeInstancesHealth" => actions::describe_instances_health(&s, p, &mut x)?,
            "DescribeEnvironmentResources" => {
                actions::describe_environment_resources(&s, p, &mut x)?
            }
            "CreateApplication" => actions::create_application(&mut s, p, &mut x)?,
            "DescribeApplications" => actions::describe_applications(&s, p, &mut x),
            "DescribePlatformVersion" => actions::describe_platform_version(p, &mut x)?,
            "ListPlatformBranches" => actions::list_platform_branches(p, &mut x)?,
            other => {
                return Err(ApiError {
                    status: 500,
                    kind: "Receiver",
                    code: "InternalFailure",
                    message: format!(
                        "the emulator lists {other} in ACTIONS but does not answer it"
                    ),
                });
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
        let mut settings = Vec::new();
        let verdict = match self.s3.get_object().bucket(&bucket).key(&key).send().await {
            Ok(obj) => match obj.body.collect().await {
                Ok(bytes) => {
                    let bytes = bytes.into_bytes();
                    settings = authz::bundle_option_settings(&bytes);
                    validate::bundle(&bytes)
                }
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
        s.bundle_settings
            .insert((app.clone(), label.clone()), settings);
        if s.silent_failures > 0 {
            s.silent_failures -= 1;
            if let Some(v) = s.versions.get_mut(&(app, label)) {
                v.status = "FAILED".into();
            }
            return;
        }
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
            visible: Instant::now(),
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
    x.leaf("SolutionStackName", &e.solution_stack);
    x.leaf("PlatformArn", &e.platform_arn);
    x.leaf(
        "EndpointURL",
        &format!("awseb-{}-1234567890.us-west-2.elb.amazonaws.com", e.id),
    );
    x.leaf(
        "CNAME",
        &e.cname
            .clone()
            .unwrap_or_else(|| format!("{}.us-west-2.elasticbeanstalk.com", e.name)),
    );
    x.leaf("DateCreated", &fmt_time(e.created));
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
    x.open("EnvironmentLinks");
    x.close("EnvironmentLinks");
    x.leaf("EnvironmentArn", &actions::environment_arn(e));
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
