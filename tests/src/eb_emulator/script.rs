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
    /// Lines appended to log files of the last instance (path, lines); the lines may use
    /// `{instance}`, `{version}` and `{previous}` like events, and `{stamp}` (the step's time
    /// as EB's logs write it).
    pub last_instance_logs: Vec<(String, Vec<String>)>,
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
    /// Appends `lines` to the log file `path` of the last instance when the step applies.
    pub fn last_instance_log(mut self, path: &str, lines: &[String]) -> Self {
        self.last_instance_logs.push((path.into(), lines.to_vec()));
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
    /// EB's events after a command failed on the (last) instance: the summary, the abort,
    /// the failed deploy.
    fn aborted(self) -> Self {
        self.event("INFO", "Command execution completed on all instances. Summary: [Successful: 0, Failed: 1].")
            .event("ERROR", "Unsuccessful command execution on instance id(s) '{instance}'. Aborting the operation.")
            .event("ERROR", "Failed to deploy application.")
    }
}

/// EB's revert after a command failed on all instances, at `ms`: the health warning, Ready, the
/// previous version, health Red (Degraded).
fn reverted(ms: u64) -> Step {
    Step::at_ms(ms)
        .event("WARN", "Environment health has transitioned from Ok to Degraded. Command failed on all instances. Incorrect application version found on all instances. Expected version \"{previous}\".")
        .status("Ready")
        .env_version(Which::Previous)
        .health("Red", "Degraded")
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

    /// EB's sequence when a deploy command fails on the (last) instance: the command's error,
    /// the summary, the abort, then EB reverts (Ready, the previous version, health Degraded).
    pub fn command_failure(took: Duration) -> Self {
        let ms = took.as_millis() as u64;
        Self::new(vec![
            Step::at_ms(ms / 3).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(ms)
                .event("ERROR", "[Instance: {instance}] Command failed on instance. Return code: 1 Output: (TRUNCATED)...failed to pull image. Hook /opt/elasticbeanstalk/hooks/appdeploy/enact/00run.sh failed. For more detail, check /var/log/eb-activity.log using console or EB CLI.")
                .aborted(),
            reverted(ms + 10),
        ])
    }

    /// A postdeploy hook that fails on the last instance, as EB reports it: the hook ran
    /// after the new version's containers started, its output (`hook_output`, such as the
    /// verify agent's table and report line) is in that instance's `/var/log/eb-hooks.log`,
    /// eb-engine.log names the failed hook, and the events are those of a command failure on
    /// the instance (its error, the summary, the abort), after which EB reverts (Ready, the
    /// previous version, health Degraded).
    pub fn postdeploy_hook_failure(took: Duration, hook: &str, hook_output: &[String]) -> Self {
        let ms = took.as_millis() as u64;
        let mut hooks_log = vec![format!("{{stamp}} [INFO] Running command {hook}")];
        hooks_log.extend(hook_output.iter().cloned());
        hooks_log.push(format!(
            "{{stamp}} [ERROR] Command {hook} failed with error exit status 1"
        ));
        let engine = vec![
            "{stamp} [INFO] Executing instruction: RunAppDeployPostDeployHooks".to_string(),
            format!("{{stamp}} [INFO] Following platform hooks will be executed in order: [{hook}]"),
            format!("{{stamp}} [INFO] Running platform hook: {hook}"),
            format!("{{stamp}} [ERROR] An error occurred during execution of command [app-deploy] - [RunAppDeployPostDeployHooks]. Stop running the command. Error: Command {hook} failed with error exit status 1"),
        ];
        Self::new(vec![
            Step::at_ms(ms / 3).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(ms)
                .last_instance_log("/var/log/eb-hooks.log", &hooks_log)
                .last_instance_log("/var/log/eb-engine.log", &engine)
                .event("ERROR", &format!("[Instance: {{instance}}] Command failed on instance. Return code: 1 Output: (TRUNCATED)...ommand [app-deploy] - [RunAppDeployPostDeployHooks]. Stop running the command. Error: Command {hook} failed with error exit status 1. Stderr: "))
                .event("ERROR", "Instance deployment failed. For details, see 'eb-engine.log'.")
                .aborted(),
            reverted(ms + 10),
        ])
    }

    /// Real EB reporting completion although an instance failed: the first instances run the
    /// new version, the last keeps the previous one and turns Severe, and EB still says
    /// "Environment update completed successfully." (health Degraded).
    pub fn completed_after_instance_failure(took: Duration, instances: usize) -> Self {
        let ms = took.as_millis() as u64;
        let good = instances.saturating_sub(1);
        Self::new(vec![
            Step::at_ms(ms / 3).event("INFO", "Deploying new version to instance(s)."),
            Step::at_ms(ms * 2 / 3)
                .event("INFO", "Instance deployment completed successfully.")
                .instances(good, Which::Deployed),
            Step::at_ms(ms)
                .event("WARN", "Environment health has transitioned from Ok to Degraded. Incorrect application version found on 1 out of {instances} instances. Expected version \"{version}\" (deployment 2).")
                .event("INFO", "New application version was deployed to running EC2 instances.")
                .event("INFO", "Environment update completed successfully.")
                .status("Ready")
                .health("Red", "Degraded")
                .causes(&["Incorrect application version found on 1 out of {instances} instances. Expected version \"{version}\" (deployment 2)."])
                .last_instance_health("Red", "Severe"),
        ])
        .fill_instances(instances)
    }

    fn fill_instances(mut self, n: usize) -> Self {
        for step in &mut self.steps {
            for (_, m) in &mut step.events {
                *m = m.replace("{instances}", &n.to_string());
            }
            if let Some(c) = &mut step.causes {
                for m in c {
                    *m = m.replace("{instances}", &n.to_string());
                }
            }
        }
        self
    }
}
