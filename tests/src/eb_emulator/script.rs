//! Scripted deploys: what an environment does, step by step, after `UpdateEnvironment`.

use std::time::Duration;

/// Which version a step means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The version being deployed.
    Deployed,
    /// The version that ran before the deploy.
    Previous,
}

/// One step, applied `at` after the deploy started. Event texts and causes may contain
/// `{version}` and `{previous}`.
#[derive(Debug, Clone, Default)]
pub struct Step {
    pub at: Duration,
    pub status: Option<String>,
    /// (colour, status), such as ("Green", "Ok").
    pub health: Option<(String, String)>,
    pub env_version: Option<Which>,
    pub causes: Option<Vec<String>>,
    /// The first N instances now run this version.
    pub instances: Option<(usize, Which)>,
    pub instance_health: Option<(String, String)>,
    /// (colour, status) of the last instance only (a failed instance among good ones).
    pub last_instance_health: Option<(String, String)>,
    /// (severity, message)
    pub events: Vec<(String, String)>,
    /// Events that arrive at this step but are dated earlier (severity, message, how much
    /// earlier): EB records them late, before events a poll already saw.
    pub late_events: Vec<(String, String, Duration)>,
}

impl Step {
    pub fn at_ms(ms: u64) -> Self {
        Self {
            at: Duration::from_millis(ms),
            ..Self::default()
        }
    }
    pub fn status(mut self, s: &str) -> Self {
        self.status = Some(s.into());
        self
    }
    pub fn health(mut self, color: &str, status: &str) -> Self {
        self.health = Some((color.into(), status.into()));
        self
    }
    pub fn env_version(mut self, w: Which) -> Self {
        self.env_version = Some(w);
        self
    }
    pub fn causes(mut self, causes: &[&str]) -> Self {
        self.causes = Some(causes.iter().map(|c| c.to_string()).collect());
        self
    }
    pub fn instances(mut self, n: usize, w: Which) -> Self {
        self.instances = Some((n, w));
        self
    }
    pub fn instance_health(mut self, color: &str, status: &str) -> Self {
        self.instance_health = Some((color.into(), status.into()));
        self
    }
    pub fn event(mut self, severity: &str, message: &str) -> Self {
        self.events.push((severity.into(), message.into()));
        self
    }
    pub fn late_event(mut self, severity: &str, message: &str, dated_earlier: Duration) -> Self {
        self.late_events
            .push((severity.into(), message.into(), dated_earlier));
        self
    }
    pub fn last_instance_health(mut self, color: &str, status: &str) -> Self {
        self.last_instance_health = Some((color.into(), status.into()));
        self
    }
}

/// A timeline of steps.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub steps: Vec<Step>,
}

impl Script {
    pub fn new(steps: Vec<Step>) -> Self {
        Self { steps }
    }

    /// A deploy that works: every instance gets the version, then Ready and Green after `took`.
    pub fn success(took: Duration) -> Self {
        let ms = took.as_millis() as u64;
        Self::new(vec![
            Step::at_ms(ms / 3).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(ms * 2 / 3)
                .event("INFO", "Instance deployment completed successfully.")
                .instances(usize::MAX, Which::Deployed),
            Step::at_ms(ms)
                .event(
                    "INFO",
                    "New application version was deployed to running EC2 instances.",
                )
                .event("INFO", "Environment update completed successfully.")
                .status("Ready")
                .health("Green", "Ok")
                .instance_health("Green", "Ok")
                .causes(&[]),
        ])
    }

    /// A deploy that fails with `event` (an EB failure event), after which EB reverts: Ready,
    /// the previous version, health Red.
    pub fn failure(took: Duration, event: &str) -> Self {
        let ms = took.as_millis() as u64;
        Self::new(vec![
            Step::at_ms(ms / 2).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(ms).event("ERROR", event),
            Step::at_ms(ms + 10)
                .event("ERROR", "Failed to deploy application.")
                .status("Ready")
                .env_version(Which::Previous)
                .health("Red", "Degraded")
                .causes(&["Incorrect application version found on all instances. Expected version \"{previous}\" (deployment 2)."]),
        ])
    }
}
