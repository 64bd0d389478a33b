//! Scenario files for the standalone emulator (`cargo run -p integration --example
//! eb-emulator -- --port N --scenario FILE`): applications, environments, versions, scripted
//! deploys, faults and EB's throttle, in TOML. See docs/eb-emulator.md.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{EbEmulator, Fault, Script, Step, Which};

/// A whole scenario file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What `CreateStorageLocation` answers (create it in your S3 too).
    pub bucket: Option<String>,
    /// Delay before every answer.
    #[serde(default, with = "humantime_serde_opt")]
    pub latency: Option<Duration>,
    /// How long processing a version takes once its bundle is read.
    #[serde(default, with = "humantime_serde_opt")]
    pub processing_delay: Option<Duration>,
    /// EB's own throttle: `"eb"` (2 calls/s, burst 15 per action family) or
    /// `{ rate = 5.0, burst = 10 }`.
    pub throttle: Option<Throttle>,
    #[serde(default)]
    pub applications: Vec<String>,
    #[serde(default)]
    pub environments: Vec<EnvironmentSpec>,
    #[serde(default)]
    pub versions: Vec<VersionSpec>,
    /// What the next `UpdateEnvironment` calls of an environment do, in order.
    #[serde(default)]
    pub deploys: Vec<DeploySpec>,
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Throttle {
    /// `"eb"`: EB's own rate.
    Named(String),
    Rate {
        rate: f64,
        burst: u32,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    pub application: String,
    pub name: String,
    /// The version it runs (none: a fresh environment).
    pub version: Option<String>,
    #[serde(default = "one")]
    pub instances: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    pub application: String,
    pub label: String,
    pub bucket: String,
    pub key: String,
    /// PROCESSED, UNPROCESSED, FAILED...
    #[serde(default = "processed")]
    pub status: String,
}

fn processed() -> String {
    "PROCESSED".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    pub environment: String,
    /// `success`, `failure`, `command_failure`, `completed_after_instance_failure`,
    /// `postdeploy_hook_failure`, or none with `steps`.
    pub preset: Option<String>,
    /// How long the preset deploy takes.
    #[serde(default, with = "humantime_serde_opt")]
    pub took: Option<Duration>,
    /// The failure event of the `failure` preset.
    pub event: Option<String>,
    /// The hook's output of the `postdeploy_hook_failure` preset (the last instance's
    /// `/var/log/eb-hooks.log`; the verify agent's table and report line).
    #[serde(default)]
    pub hook_output: Vec<String>,
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

/// One scripted step (see [`Step`]); texts may use `{version}`, `{previous}`, `{instance}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    pub status: Option<String>,
    /// [colour, status], such as ["Green", "Ok"].
    pub health: Option<(String, String)>,
    /// `deployed` or `previous`.
    pub env_version: Option<String>,
    pub causes: Option<Vec<String>>,
    /// [count, "deployed" | "previous"]: the first N instances run that version.
    pub instances: Option<(usize, String)>,
    pub instance_health: Option<(String, String)>,
    /// [[severity, message], ...]
    #[serde(default)]
    pub events: Vec<(String, String)>,
    /// [[severity, message, "dated this much earlier"], ...]
    #[serde(default)]
    pub late_events: Vec<(String, String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The action (any when absent).
    pub action: Option<String>,
    /// `throttle`, `server_error` or `drop`.
    pub kind: String,
    /// The HTTP status of a `server_error` (500 or 503).
    #[serde(default = "five_hundred")]
    pub status: u16,
    #[serde(default = "one")]
    pub count: usize,
}

fn five_hundred() -> u16 {
    500
}

mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

fn which(w: &str, what: &str) -> anyhow::Result<Which> {
    match w {
        "deployed" => Ok(Which::Deployed),
        "previous" => Ok(Which::Previous),
        other => anyhow::bail!("{what}: `{other}` is neither `deployed` nor `previous`"),
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the scenario file {}: {e}", path.display())
        })?;
        let s: Scenario =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // Check the scripts now, so that a typo fails at start rather than at the deploy.
        for d in &s.deploys {
            d.script().map_err(|e| {
                anyhow::anyhow!("{}: deploy of {}: {e}", path.display(), d.environment)
            })?;
        }
        for f in &s.faults {
            f.fault()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        Ok(s)
    }

    /// Sets `emu` up as the file says.
    pub fn apply(&self, emu: &EbEmulator) -> anyhow::Result<()> {
        if let Some(l) = self.latency {
            emu.set_latency(l);
        }
        if let Some(d) = self.processing_delay {
            emu.set_processing_delay(d);
        }
        match &self.throttle {
            None => {}
            Some(Throttle::Named(n)) if n == "eb" => emu.throttle_like_eb(1.0),
            Some(Throttle::Named(n)) => {
                anyhow::bail!("throttle = \"{n}\": use \"eb\" or {{ rate = …, burst = … }}")
            }
            Some(Throttle::Rate { rate, burst }) => emu.set_rate_limit(*rate, *burst),
        }
        for a in &self.applications {
            emu.add_application(a);
        }
        for e in &self.environments {
            emu.add_environment(&e.application, &e.name, e.version.as_deref(), e.instances);
        }
        for v in &self.versions {
            emu.add_version(&v.application, &v.label, &v.bucket, &v.key, &v.status);
        }
        for d in &self.deploys {
            if !emu.has_environment(&d.environment) {
                anyhow::bail!(
                    "a deploy is scripted for the environment {}, which the file does not declare under [[environments]]",
                    d.environment
                );
            }
            emu.script_next_deploy(&d.environment, d.script()?);
        }
        for f in &self.faults {
            emu.inject(f.action.as_deref(), f.fault()?, f.count);
        }
        Ok(())
    }
}

impl DeploySpec {
    pub fn script(&self) -> anyhow::Result<Script> {
        let took = self.took.unwrap_or(Duration::from_secs(30));
        match (self.preset.as_deref(), self.steps.is_empty()) {
            (Some(_), false) => anyhow::bail!("give either `preset` or `steps`, not both"),
            (Some("success"), true) => Ok(Script::success(took)),
            (Some("failure"), true) => Ok(Script::failure(
                took,
                self.event
                    .as_deref()
                    .unwrap_or("Failed to deploy application."),
            )),
            (Some("command_failure"), true) => Ok(Script::command_failure(took)),
            (Some("completed_after_instance_failure"), true) => {
                Ok(Script::completed_after_instance_failure(took, 2))
            }
            (Some("postdeploy_hook_failure"), true) => Ok(Script::postdeploy_hook_failure(
                took,
                ".platform/hooks/postdeploy/90_verify.sh",
                &self.hook_output,
            )),
            (Some(other), true) => anyhow::bail!(
                "unknown preset `{other}`: use success, failure, command_failure, completed_after_instance_failure or postdeploy_hook_failure"
            ),
            (None, true) => anyhow::bail!("give a `preset` or some `steps`"),
            (None, false) => {
                let steps = self
                    .steps
                    .iter()
                    .map(StepSpec::step)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Script::new(steps))
            }
        }
    }
}

impl StepSpec {
    fn step(&self) -> anyhow::Result<Step> {
        let mut s = Step {
            at: self.at,
            status: self.status.clone(),
            health: self.health.clone(),
            causes: self.causes.clone(),
            instance_health: self.instance_health.clone(),
            events: self.events.clone(),
            ..Step::default()
        };
        if let Some(w) = &self.env_version {
            s.env_version = Some(which(w, "env_version")?);
        }
        if let Some((n, w)) = &self.instances {
            s.instances = Some((*n, which(w, "instances")?));
        }
        for (sev, msg, back) in &self.late_events {
            let back = humantime::parse_duration(back)
                .map_err(|e| anyhow::anyhow!("late_events: `{back}`: {e}"))?;
            s.late_events.push((sev.clone(), msg.clone(), back));
        }
        Ok(s)
    }
}

impl FaultSpec {
    fn fault(&self) -> anyhow::Result<Fault> {
        match self.kind.as_str() {
            "throttle" => Ok(Fault::Throttle),
            "server_error" => Ok(Fault::ServerError(self.status)),
            "drop" => Ok(Fault::Drop),
            other => anyhow::bail!("fault kind `{other}`: use throttle, server_error or drop"),
        }
    }
}
