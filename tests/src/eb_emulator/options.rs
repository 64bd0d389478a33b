//! Option settings: `DescribeConfigurationSettings`, and `OptionSettings` / `OptionsToRemove`
//! in `UpdateEnvironment`, as EB answers them for an "ECS running on Amazon Linux 2"
//! environment.
//!
//! Each environment holds its deployed configuration set (defaults such as a real environment
//! reports, plus what was set since). An `UpdateEnvironment` that changes options creates a
//! draft (`DeploymentStatus` `pending`, described next to the `deployed` one while the update
//! runs); the draft replaces the deployed set when the update ends without an ERROR event, and
//! stays as `failed` otherwise. Unknown namespaces and options are refused with EB's own
//! `ConfigurationValidationException`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::script::{Script, Step};
use super::xml::Xml;
use super::{fmt_time, sender, ApiError, EbEmulator, Environment, Params, State};

/// The namespace of plain environment properties.
pub const ENVIRONMENT: &str = "aws:elasticbeanstalk:application:environment";
/// The namespace of environment properties resolved from Secrets Manager or SSM.
pub const ENVIRONMENT_SECRETS: &str = "aws:elasticbeanstalk:application:environmentsecrets";

const PLATFORM_ARN: &str =
    "arn:aws:elasticbeanstalk:us-west-2::platform/ECS running on 64bit Amazon Linux 2/3.6.0";

/// Namespaces whose option names are the user's own (any name is valid).
const USER_NAMESPACES: &[&str] = &[ENVIRONMENT, ENVIRONMENT_SECRETS];

/// The options EB knows per namespace (those an ECS on Amazon Linux 2 environment offers).
const KNOWN: &[(&str, &[&str])] = &[
    (
        "aws:autoscaling:asg",
        &[
            "Availability Zones",
            "Cooldown",
            "Custom Availability Zones",
            "EnableCapacityRebalancing",
            "MaxSize",
            "MinSize",
        ],
    ),
    (
        "aws:autoscaling:launchconfiguration",
        &[
            "BlockDeviceMappings",
            "DisableDefaultEC2SecurityGroup",
            "DisableIMDSv1",
            "EC2KeyName",
            "IamInstanceProfile",
            "ImageId",
            "InstanceType",
            "MonitoringInterval",
            "RootVolumeIOPS",
            "RootVolumeSize",
            "RootVolumeThroughput",
            "RootVolumeType",
            "SSHSourceRestriction",
            "SecurityGroups",
        ],
    ),
    (
        "aws:autoscaling:trigger",
        &[
            "BreachDuration",
            "EvaluationPeriods",
            "LowerBreachScaleIncrement",
            "LowerThreshold",
            "MeasureName",
            "Period",
            "Statistic",
            "Unit",
            "UpperBreachScaleIncrement",
            "UpperThreshold",
        ],
    ),
    (
        "aws:autoscaling:updatepolicy:rollingupdate",
        &[
            "MaxBatchSize",
            "MinInstancesInService",
            "PauseTime",
            "RollingUpdateEnabled",
            "RollingUpdateType",
            "Timeout",
        ],
    ),
    (
        "aws:cloudformation:template:parameter",
        &["EnvironmentVariables", "InstancePort", "InstanceTypeFamily"],
    ),
    (
        "aws:ec2:instances",
        &[
            "EnableSpot",
            "InstanceTypes",
            "SpotFleetOnDemandAboveBasePercentage",
            "SpotFleetOnDemandBase",
            "SpotMaxPrice",
            "SupportedArchitectures",
        ],
    ),
    (
        "aws:ec2:vpc",
        &[
            "AssociatePublicIpAddress",
            "ELBScheme",
            "ELBSubnets",
            "Subnets",
            "VPCId",
        ],
    ),
    (
        "aws:elasticbeanstalk:application",
        &["Application Healthcheck URL"],
    ),
    (
        "aws:elasticbeanstalk:cloudwatch:logs",
        &["DeleteOnTerminate", "RetentionInDays", "StreamLogs"],
    ),
    (
        "aws:elasticbeanstalk:command",
        &[
            "BatchSize",
            "BatchSizeType",
            "DeploymentPolicy",
            "IgnoreHealthCheck",
            "Timeout",
        ],
    ),
    (
        "aws:elasticbeanstalk:control",
        &[
            "DefaultSSHPort",
            "LaunchTimeout",
            "LaunchType",
            "RollbackLaunchOnFailure",
        ],
    ),
    (
        "aws:elasticbeanstalk:environment",
        &[
            "EnvironmentType",
            "ExternalExtensionsS3Bucket",
            "ExternalExtensionsS3Key",
            "LoadBalancerIsShared",
            "LoadBalancerType",
            "ServiceRole",
        ],
    ),
    (
        "aws:elasticbeanstalk:healthreporting:system",
        &[
            "ConfigDocument",
            "EnhancedHealthAuthEnabled",
            "HealthCheckSuccessThreshold",
            "SystemType",
        ],
    ),
    (
        "aws:elasticbeanstalk:hostmanager",
        &["LogPublicationControl"],
    ),
    (
        "aws:elasticbeanstalk:managedactions",
        &[
            "ManagedActionsEnabled",
            "PreferredStartTime",
            "ServiceRoleForManagedUpdates",
        ],
    ),
    (
        "aws:elasticbeanstalk:managedactions:platformupdate",
        &["InstanceRefreshEnabled", "UpdateLevel"],
    ),
    (
        "aws:elasticbeanstalk:monitoring",
        &["Automatically Terminate Unhealthy Instances"],
    ),
    (
        "aws:elasticbeanstalk:sns:topics",
        &[
            "Notification Endpoint",
            "Notification Protocol",
            "Notification Topic ARN",
            "Notification Topic Name",
        ],
    ),
    ("aws:elasticbeanstalk:xray", &["XRayEnabled"]),
    (
        "aws:elbv2:loadbalancer",
        &[
            "AccessLogsS3Bucket",
            "AccessLogsS3Enabled",
            "AccessLogsS3Prefix",
            "IdleTimeout",
            "ManagedSecurityGroup",
            "SecurityGroups",
        ],
    ),
];

/// Options of `aws:elasticbeanstalk:environment:process:<name>`.
const PROCESS_OPTIONS: &[&str] = &[
    "DeregistrationDelay",
    "HealthCheckInterval",
    "HealthCheckPath",
    "HealthCheckTimeout",
    "HealthyThresholdCount",
    "MatcherHTTPCode",
    "Port",
    "Protocol",
    "StickinessEnabled",
    "StickinessLBCookieDuration",
    "StickinessType",
    "UnhealthyThresholdCount",
];

/// Options of `aws:elbv2:listener:<port>` and `aws:elbv2:listener:default`.
const LISTENER_OPTIONS: &[&str] = &[
    "DefaultProcess",
    "ListenerEnabled",
    "Protocol",
    "Rules",
    "SSLCertificateArns",
    "SSLPolicy",
];

/// What a new ECS on Amazon Linux 2 environment reports (a representative subset).
/// `None`: EB lists the option without a `Value`.
const DEFAULTS: &[(&str, &str, Option<&str>)] = &[
    ("aws:autoscaling:asg", "Availability Zones", Some("Any")),
    ("aws:autoscaling:asg", "Cooldown", Some("360")),
    ("aws:autoscaling:asg", "MaxSize", Some("1")),
    ("aws:autoscaling:asg", "MinSize", Some("1")),
    ("aws:autoscaling:launchconfiguration", "EC2KeyName", None),
    (
        "aws:autoscaling:launchconfiguration",
        "IamInstanceProfile",
        Some("aws-elasticbeanstalk-ec2-role"),
    ),
    (
        "aws:autoscaling:launchconfiguration",
        "InstanceType",
        Some("t3.medium"),
    ),
    (
        "aws:autoscaling:launchconfiguration",
        "RootVolumeSize",
        Some("30"),
    ),
    (
        "aws:autoscaling:updatepolicy:rollingupdate",
        "RollingUpdateEnabled",
        Some("false"),
    ),
    (
        "aws:cloudformation:template:parameter",
        "InstancePort",
        Some("80"),
    ),
    (
        "aws:cloudformation:template:parameter",
        "InstanceTypeFamily",
        Some("t3"),
    ),
    ("aws:ec2:instances", "InstanceTypes", Some("t3.medium")),
    ("aws:ec2:vpc", "AssociatePublicIpAddress", None),
    (
        "aws:elasticbeanstalk:application",
        "Application Healthcheck URL",
        Some(""),
    ),
    (
        "aws:elasticbeanstalk:cloudwatch:logs",
        "StreamLogs",
        Some("false"),
    ),
    ("aws:elasticbeanstalk:command", "BatchSize", Some("100")),
    (
        "aws:elasticbeanstalk:command",
        "BatchSizeType",
        Some("Percentage"),
    ),
    (
        "aws:elasticbeanstalk:command",
        "DeploymentPolicy",
        Some("AllAtOnce"),
    ),
    ("aws:elasticbeanstalk:command", "Timeout", Some("600")),
    (
        "aws:elasticbeanstalk:environment",
        "EnvironmentType",
        Some("LoadBalanced"),
    ),
    (
        "aws:elasticbeanstalk:environment",
        "LoadBalancerType",
        Some("application"),
    ),
    (
        "aws:elasticbeanstalk:environment",
        "ServiceRole",
        Some("arn:aws:iam::123456789012:role/aws-elasticbeanstalk-service-role"),
    ),
    (
        "aws:elasticbeanstalk:environment:process:default",
        "HealthCheckPath",
        Some("/"),
    ),
    (
        "aws:elasticbeanstalk:environment:process:default",
        "Port",
        Some("80"),
    ),
    (
        "aws:elasticbeanstalk:environment:process:default",
        "Protocol",
        Some("HTTP"),
    ),
    (
        "aws:elasticbeanstalk:healthreporting:system",
        "SystemType",
        Some("enhanced"),
    ),
    (
        "aws:elasticbeanstalk:managedactions",
        "ManagedActionsEnabled",
        Some("false"),
    ),
    ("aws:elasticbeanstalk:xray", "XRayEnabled", Some("false")),
    (
        "aws:elbv2:listener:default",
        "ListenerEnabled",
        Some("true"),
    ),
];

type Key = (String, String);

/// One configuration set: (namespace, option) → value (`None`: listed without a value).
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings(BTreeMap<Key, Option<String>>);

impl Settings {
    fn defaults() -> Self {
        Self(
            DEFAULTS
                .iter()
                .map(|(ns, o, v)| ((ns.to_string(), o.to_string()), v.map(str::to_string)))
                .collect(),
        )
    }

    /// EB mirrors the environment properties into the CloudFormation parameter
    /// `EnvironmentVariables` (`NAME=value` joined by commas).
    fn with_template_parameter(&self) -> Vec<(Key, Option<String>)> {
        let joined = self
            .0
            .iter()
            .filter(|((ns, _), _)| ns == ENVIRONMENT)
            .map(|((_, n), v)| format!("{n}={}", v.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",");
        let mut all: Vec<(Key, Option<String>)> =
            self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.push((
            (
                "aws:cloudformation:template:parameter".into(),
                "EnvironmentVariables".into(),
            ),
            Some(joined),
        ));
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// An environment's configuration: the deployed set and, during or after an update, a draft.
#[derive(Debug, Clone)]
pub(crate) struct EnvConfig {
    created: SystemTime,
    updated: SystemTime,
    deployed: Settings,
    draft: Option<Draft>,
}

#[derive(Debug, Clone)]
struct Draft {
    settings: Settings,
    request_id: String,
    at: SystemTime,
    failed: bool,
}

/// What one `UpdateEnvironment` asks to change.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    set: Vec<(Key, String)>,
    remove: Vec<Key>,
}

impl Changes {
    /// Adds settings to set (the bundle's, which EB applies with the version).
    pub(crate) fn add(&mut self, settings: Vec<(String, String, String)>) {
        for (ns, option, value) in settings {
            self.set.push(((ns, option), value));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

fn known(namespace: &str, option: &str) -> bool {
    if USER_NAMESPACES.contains(&namespace) {
        return !option.is_empty();
    }
    if let Some(process) = namespace.strip_prefix("aws:elasticbeanstalk:environment:process:") {
        return !process.is_empty() && PROCESS_OPTIONS.contains(&option);
    }
    if let Some(port) = namespace.strip_prefix("aws:elbv2:listener:") {
        return (port == "default" || port.parse::<u16>().is_ok())
            && LISTENER_OPTIONS.contains(&option);
    }
    KNOWN
        .iter()
        .any(|(ns, options)| *ns == namespace && options.contains(&option))
}

fn invalid(namespace: &str, option: &str) -> ApiError {
    sender(
        "ConfigurationValidationException",
        format!(
            "Configuration validation exception: Invalid option specification (Namespace: '{namespace}', OptionName: '{option}'): Unknown configuration setting."
        ),
    )
}

/// Reads and validates `OptionSettings.member.N.*` and `OptionsToRemove.member.N.*`.
pub(crate) fn parse_changes(p: &Params) -> Result<Changes, ApiError> {
    let mut changes = Changes::default();
    for (list, remove) in [("OptionSettings", false), ("OptionsToRemove", true)] {
        for n in 1.. {
            let field = |f: &str| p.get(&format!("{list}.member.{n}.{f}")).cloned();
            let (ns, option) = (field("Namespace"), field("OptionName"));
            if ns.is_none() && option.is_none() && field("Value").is_none() {
                break;
            }
            let (Some(ns), Some(option)) = (ns, option) else {
                return Err(sender(
                    "MissingParameter",
                    format!("The request must contain the parameters Namespace and OptionName for {list} member {n}"),
                ));
            };
            if !known(&ns, &option) {
                return Err(invalid(&ns, &option));
            }
            if remove {
                changes.remove.push((ns, option));
            } else {
                let value = field("Value").unwrap_or_default();
                changes.set.push(((ns, option), value));
            }
        }
    }
    Ok(changes)
}

/// The config-only update EB plays when an `UpdateEnvironment` has no `VersionLabel`.
pub(crate) fn configuration_script(environment: &str, took: Duration) -> Script {
    let ms = took.as_millis() as u64;
    Script::new(vec![
        Step::at_ms(ms / 3).event(
            "INFO",
            &format!("Updating environment {environment}'s configuration settings."),
        ),
        Step::at_ms(ms)
            .event(
                "INFO",
                "Successfully deployed new configuration to environment.",
            )
            .event("INFO", "Environment update completed successfully.")
            .status("Ready")
            .health("Green", "Ok")
            .instance_health("Green", "Ok")
            .causes(&[]),
    ])
}

impl State {
    fn config(&mut self, env: &str) -> &mut EnvConfig {
        let now = SystemTime::now();
        self.configs
            .entry(env.to_string())
            .or_insert_with(|| EnvConfig {
                created: now,
                updated: now,
                deployed: Settings::defaults(),
                draft: None,
            })
    }

    /// The deployed option settings of `env` in `namespace` (option → value).
    pub(crate) fn deployed_options(
        &mut self,
        env: &str,
        namespace: &str,
    ) -> BTreeMap<String, String> {
        self.config(env)
            .deployed
            .0
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, o), v)| (o.clone(), v.clone().unwrap_or_default()))
            .collect()
    }

    /// Records the draft an `UpdateEnvironment` (request `request_id`) made.
    /// Call it before the update starts playing.
    pub(crate) fn stage(&mut self, env: &str, changes: Changes, request_id: &str) {
        self.settle(env);
        if changes.is_empty() {
            return;
        }
        let config = self.config(env);
        let mut settings = config.deployed.clone();
        for (key, value) in changes.set {
            settings.0.insert(key, Some(value));
        }
        for key in changes.remove {
            if USER_NAMESPACES.contains(&key.0.as_str()) {
                settings.0.remove(&key);
            } else if let Some(default) = DEFAULTS
                .iter()
                .find(|(ns, o, _)| *ns == key.0 && *o == key.1)
            {
                settings.0.insert(key, default.2.map(str::to_string));
            } else {
                settings.0.remove(&key);
            }
        }
        config.draft = Some(Draft {
            settings,
            request_id: request_id.to_string(),
            at: SystemTime::now(),
            failed: false,
        });
    }

    /// Once the update that made the draft has ended, deploys it (or marks it failed when the
    /// update logged an ERROR event).
    fn settle(&mut self, env: &str) {
        if self.running.contains_key(env) {
            return;
        }
        let Some(draft) = self.configs.get(env).and_then(|c| c.draft.clone()) else {
            return;
        };
        if draft.failed {
            return;
        }
        let failed = self
            .events
            .iter()
            .any(|e| e.request_id.as_deref() == Some(&draft.request_id) && e.severity == "ERROR");
        let config = self.config(env);
        if failed {
            if let Some(d) = config.draft.as_mut() {
                d.failed = true;
            }
        } else {
            config.deployed = draft.settings;
            config.updated = draft.at;
            config.draft = None;
        }
    }

    /// The `DescribeConfigurationSettings` result of `env`.
    pub(crate) fn describe_configuration(
        &mut self,
        x: &mut Xml,
        application: Option<&str>,
        env: &str,
    ) -> Result<(), ApiError> {
        let e: Environment = match self.environments.get(env) {
            Some(e) if application.is_none_or(|a| a == e.application) => e.clone(),
            _ => {
                return Err(sender(
                    "InvalidParameterValue",
                    format!("No Environment found for EnvironmentName = '{env}'."),
                ))
            }
        };
        self.settle(env);
        let config = self.config(env).clone();
        x.open("ConfigurationSettings");
        let mut sets = vec![("deployed", &config.deployed, config.updated)];
        if let Some(d) = &config.draft {
            let status = if d.failed { "failed" } else { "pending" };
            sets.push((status, &d.settings, d.at));
        }
        for (status, settings, updated) in sets {
            x.open("member");
            x.leaf(
                "SolutionStackName",
                "64bit Amazon Linux 2 v3.6.0 running ECS",
            );
            x.leaf("PlatformArn", PLATFORM_ARN);
            x.leaf("ApplicationName", &e.application);
            x.leaf("EnvironmentName", &e.name);
            // Not in botocore's model, but EB sends it and the EB CLI's own model reads it.
            x.open("Tier");
            x.leaf("Name", "WebServer");
            x.leaf("Type", "Standard");
            x.leaf("Version", "1.0");
            x.close("Tier");
            x.leaf("DeploymentStatus", status);
            x.leaf("DateCreated", &fmt_time(config.created));
            x.leaf("DateUpdated", &fmt_time(updated));
            x.open("OptionSettings");
            for ((ns, option), value) in settings.with_template_parameter() {
                x.open("member");
                x.leaf("Namespace", &ns);
                x.leaf("OptionName", &option);
                if let Some(v) = value {
                    x.leaf("Value", &v);
                }
                x.close("member");
            }
            x.close("OptionSettings");
            x.close("member");
        }
        x.close("ConfigurationSettings");
        Ok(())
    }
}

impl EbEmulator {
    /// Sets an option of `environment`'s deployed configuration directly (as the console would).
    pub fn set_option(&self, environment: &str, namespace: &str, option: &str, value: &str) {
        self.with(|s| {
            s.config(environment)
                .deployed
                .0
                .insert((namespace.into(), option.into()), Some(value.into()));
        });
    }

    /// Sets a plain environment property directly.
    pub fn set_environment_property(&self, environment: &str, name: &str, value: &str) {
        self.set_option(environment, ENVIRONMENT, name, value);
    }

    /// Removes every plain environment property of `environment`.
    pub fn clear_environment_properties(&self, environment: &str) {
        self.with(|s| {
            s.config(environment)
                .deployed
                .0
                .retain(|(ns, _), _| ns != ENVIRONMENT);
        });
    }

    /// The deployed options of `namespace` (name → value), after any finished update.
    pub fn options(&self, environment: &str, namespace: &str) -> BTreeMap<String, String> {
        self.with(|s| {
            s.advance(std::time::Instant::now());
            s.settle(environment);
            s.config(environment)
                .deployed
                .0
                .iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|((_, o), v)| (o.clone(), v.clone().unwrap_or_default()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_user_namespaces_processes_and_listeners() {
        assert!(known(ENVIRONMENT, "DJANGO_SETTINGS_MODULE"));
        assert!(known(ENVIRONMENT_SECRETS, "DATABASE_URL"));
        assert!(known(
            "aws:elasticbeanstalk:environment:process:default",
            "HealthCheckPath"
        ));
        assert!(known("aws:elbv2:listener:443", "SSLCertificateArns"));
        assert!(!known("aws:elbv2:listener:https", "Protocol"));
        assert!(!known("aws:autoscaling:trigger", " LowerThreshold"));
        assert!(!known("aws:elasticbeanstalk:application:environmen", "X"));
        assert!(!known(ENVIRONMENT, ""));
    }
}
