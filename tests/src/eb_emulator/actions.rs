//! Action handlers kept apart from the dispatcher: applications, the platform, events and
//! enhanced health (with EB's `AttributeNames` and paging rules).

use std::time::{Instant, SystemTime};

use super::xml::Xml;
use super::{fmt_time, members, parse_time, sender, ApiError, Environment, Params, State};

pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const REGION: &str = "us-west-2";
pub(crate) const PLATFORM_NAME: &str = "ECS running on 64bit Amazon Linux 2";
pub(crate) const PLATFORM_VERSION: &str = "3.6.0";
pub(crate) const SOLUTION_STACK: &str = "64bit Amazon Linux 2 v3.6.0 running ECS";

pub(crate) fn platform_arn() -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}::platform/{PLATFORM_NAME}/{PLATFORM_VERSION}")
}

pub(crate) fn environment_arn(e: &Environment) -> String {
    format!(
        "arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:environment/{}/{}",
        e.application, e.name
    )
}

/// The id of the launch template EB made for the environment (named after its id, as the
/// stack and the Auto Scaling group are).
pub fn launch_template_id(e: &Environment) -> String {
    format!("lt-0{}", e.id.trim_start_matches("e-"))
}

/// `DescribeEnvironmentResources`: what EB made for the environment (its Auto Scaling group,
/// instances, launch template and load balancer), by `EnvironmentName` or `EnvironmentId`.
pub(crate) fn describe_environment_resources(
    s: &State,
    p: &Params,
    x: &mut Xml,
) -> Result<(), ApiError> {
    let e = match (p.get("EnvironmentName"), p.get("EnvironmentId")) {
        (Some(name), _) => s.environments.get(name).ok_or_else(|| missing_env(name))?,
        (None, Some(id)) => s
            .environments
            .values()
            .find(|e| &e.id == id)
            .ok_or_else(|| missing_env(id))?,
        (None, None) => {
            return Err(sender(
                "MissingParameter",
                "Either EnvironmentName or EnvironmentId must be specified.",
            ))
        }
    };
    x.open("EnvironmentResources");
    x.leaf("EnvironmentName", &e.name);
    x.open("AutoScalingGroups");
    x.open("member");
    x.leaf(
        "Name",
        &format!("awseb-{}-AWSEBAutoScalingGroup-1ABCDEF", e.id),
    );
    x.close("member");
    x.close("AutoScalingGroups");
    x.open("Instances");
    for i in &e.instances {
        x.open("member");
        x.leaf("Id", &i.id);
        x.close("member");
    }
    x.close("Instances");
    x.open("LaunchConfigurations");
    x.close("LaunchConfigurations");
    x.open("LaunchTemplates");
    x.open("member");
    x.leaf("Id", &launch_template_id(e));
    x.close("member");
    x.close("LaunchTemplates");
    x.open("LoadBalancers");
    x.open("member");
    x.leaf(
        "Name",
        &format!("awseb-AWSEB-{}", e.id.trim_start_matches("e-")),
    );
    x.close("member");
    x.close("LoadBalancers");
    x.open("Triggers");
    x.close("Triggers");
    x.open("Queues");
    x.close("Queues");
    x.close("EnvironmentResources");
    Ok(())
}

fn application_xml(x: &mut Xml, s: &State, name: &str) {
    let Some(a) = s.applications.get(name) else {
        return;
    };
    x.leaf(
        "ApplicationArn",
        &format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:application/{name}"),
    );
    x.leaf("ApplicationName", name);
    if let Some(d) = &a.description {
        x.leaf("Description", d);
    }
    x.leaf("DateCreated", &fmt_time(a.created));
    x.leaf("DateUpdated", &fmt_time(a.created));
    x.open("Versions");
    for v in s.versions.values().filter(|v| v.application == name) {
        x.leaf("member", &v.label);
    }
    x.close("Versions");
    x.open("ConfigurationTemplates");
    x.close("ConfigurationTemplates");
}

/// `CreateApplication`: EB refuses a name that exists.
pub(crate) fn create_application(s: &mut State, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let name = p.get("ApplicationName").cloned().ok_or_else(|| {
        sender(
            "MissingParameter",
            "The request must contain the parameter ApplicationName",
        )
    })?;
    if name.is_empty() || name.len() > 100 {
        return Err(sender(
            "InvalidParameterValue",
            "Application name must be 1 to 100 characters long.",
        ));
    }
    if s.applications.contains_key(&name) {
        return Err(sender(
            "InvalidParameterValue",
            format!("Application {name} already exists."),
        ));
    }
    s.register_application(&name);
    if let Some(a) = s.applications.get_mut(&name) {
        a.description = p.get("Description").cloned();
    }
    x.open("Application");
    application_xml(x, s, &name);
    x.close("Application");
    Ok(())
}

/// `DescribeApplications`: all, or those named.
pub(crate) fn describe_applications(s: &State, p: &Params, x: &mut Xml) {
    let names = members(p, "ApplicationNames");
    x.open("Applications");
    for name in s.applications.keys() {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        x.open("member");
        application_xml(x, s, name);
        x.close("member");
    }
    x.close("Applications");
}

/// `DescribePlatformVersion`: the one platform every emulated environment runs.
pub(crate) fn describe_platform_version(p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let arn = p.get("PlatformArn").cloned().unwrap_or_else(platform_arn);
    if arn != platform_arn() {
        return Err(sender(
            "InvalidParameterValue",
            format!("Platform '{arn}' does not exist."),
        ));
    }
    let created = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    x.open("PlatformDescription");
    x.leaf("PlatformArn", &arn);
    x.leaf("PlatformOwner", "AWSElasticBeanstalk");
    x.leaf("PlatformName", PLATFORM_NAME);
    x.leaf("PlatformVersion", PLATFORM_VERSION);
    x.leaf("SolutionStackName", SOLUTION_STACK);
    x.leaf("PlatformStatus", "Ready");
    x.leaf("DateCreated", &fmt_time(created));
    x.leaf("DateUpdated", &fmt_time(created));
    x.leaf("PlatformCategory", "Docker");
    x.leaf(
        "Description",
        "ECS running on 64bit Amazon Linux 2 (multi-container Docker)",
    );
    x.leaf("OperatingSystemName", "Amazon Linux 2");
    x.leaf("OperatingSystemVersion", "2");
    x.open("ProgrammingLanguages");
    x.close("ProgrammingLanguages");
    x.open("Frameworks");
    x.close("Frameworks");
    x.open("CustomAmiList");
    x.close("CustomAmiList");
    x.open("SupportedTierList");
    x.leaf("member", "WebServer/Standard");
    x.leaf("member", "Worker/SQS/HTTP");
    x.close("SupportedTierList");
    x.open("SupportedAddonList");
    x.leaf("member", "Log/S3");
    x.leaf("member", "Monitoring/Healthd");
    x.leaf("member", "WorkerDaemon/SQSD");
    x.close("SupportedAddonList");
    x.leaf("PlatformLifecycleState", "Recommended");
    x.leaf("PlatformBranchName", PLATFORM_NAME);
    x.leaf("PlatformBranchLifecycleState", "Supported");
    x.close("PlatformDescription");
    Ok(())
}

/// `DescribeEvents`: newest first by `EventDate`, only events EB has recorded by now (an
/// event may be recorded late, dated before events already listed), `StartTime` inclusive,
/// `EndTime` exclusive, `MaxRecords` (1–1000, default 1000) per page with a `NextToken`.
pub(crate) fn describe_events(s: &State, p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let time = |k: &str| p.get(k).map(|t| parse_time(t)).transpose();
    let (start, end) = (time("StartTime")?, time("EndTime")?);
    let max = match p.get("MaxRecords") {
        None => 1000,
        Some(m) => match m.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(sender(
                    "InvalidParameterValue",
                    format!("MaxRecords must be between 1 and 1000 (got {m})."),
                ))
            }
        },
    };
    // A token holds how many events existed at the first page (later ones belong to a new
    // listing) and how many were already returned.
    let (snapshot, offset) = match p.get("NextToken") {
        None => (s.events.len(), 0),
        Some(t) => t
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .filter(|(a, _): &(usize, usize)| *a <= s.events.len())
            .ok_or_else(|| sender("InvalidParameterValue", "Invalid NextToken."))?,
    };
    let rank = |sev: &str| {
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
            .iter()
            .position(|x| *x == sev)
    };
    let min_sev = p.get("Severity").and_then(|s| rank(s));
    let now = Instant::now();
    let mut matching: Vec<_> = s.events[..snapshot]
        .iter()
        .filter(|ev| ev.visible <= now)
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
        .filter(|ev| end.is_none_or(|t| ev.date < t))
        .filter(|ev| min_sev.is_none_or(|m| rank(&ev.severity).unwrap_or(0) >= m))
        .collect();
    // Newest first; among equal dates, the one recorded last first.
    matching.reverse();
    matching.sort_by_key(|e| std::cmp::Reverse(e.date));
    x.open("Events");
    for ev in matching.iter().skip(offset).take(max) {
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
    if matching.len() > offset + max {
        x.leaf("NextToken", &format!("{snapshot}.{}", offset + max));
    }
    Ok(())
}

/// The `AttributeNames` asked for; `All` means every one of `all`.
/// The attributes a health action was asked for.
struct Asked(Vec<String>);

impl Asked {
    fn has(&self, attribute: &str) -> bool {
        self.0.iter().any(|a| a == attribute)
    }
}

fn attributes(p: &Params, all: &[&str]) -> Result<Vec<String>, ApiError> {
    let asked = members(p, "AttributeNames");
    for a in &asked {
        if a != "All" && !all.contains(&a.as_str()) {
            return Err(sender(
                "InvalidParameterValue",
                format!(
                    "Invalid attribute name: {a}. Valid values: All, {}",
                    all.join(", ")
                ),
            ));
        }
    }
    if asked.iter().any(|a| a == "All") {
        return Ok(all.iter().map(|a| a.to_string()).collect());
    }
    Ok(asked)
}

fn missing_env(name: &str) -> ApiError {
    sender(
        "InvalidRequestException",
        format!("Environment {name} does not exist."),
    )
}

/// What a health action reads: the environment it names in `EnvironmentName` (which it
/// requires), then the attributes it asks for among `all`.
fn health_request<'a>(
    s: &'a State,
    p: &Params,
    all: &[&str],
) -> Result<(&'a Environment, Asked), ApiError> {
    let name = p.get("EnvironmentName").ok_or_else(|| {
        sender(
            "MissingParameter",
            "The request must contain the parameter EnvironmentName",
        )
    })?;
    let e = s.environments.get(name).ok_or_else(|| missing_env(name))?;
    Ok((e, Asked(attributes(p, all)?)))
}

/// `DescribeEnvironmentHealth`: the environment's name, plus only what `AttributeNames` asks
/// for (nothing else without it).
pub(crate) fn describe_environment_health(
    s: &State,
    p: &Params,
    x: &mut Xml,
) -> Result<(), ApiError> {
    let (e, asked) = health_request(
        s,
        p,
        &[
            "Status",
            "Color",
            "Causes",
            "ApplicationMetrics",
            "InstancesHealth",
            "HealthStatus",
            "RefreshedAt",
        ],
    )?;
    x.leaf("EnvironmentName", &e.name);
    if asked.has("HealthStatus") {
        x.leaf("HealthStatus", &e.health_status);
    }
    if asked.has("Status") {
        x.leaf("Status", &e.status);
    }
    if asked.has("Color") {
        x.leaf("Color", &e.color);
    }
    if asked.has("Causes") {
        x.open("Causes");
        for c in &e.causes {
            x.leaf("member", c);
        }
        x.close("Causes");
    }
    if asked.has("ApplicationMetrics") {
        x.open("ApplicationMetrics");
        x.close("ApplicationMetrics");
    }
    if asked.has("InstancesHealth") {
        let count = |c: &str| e.instances.iter().filter(|i| i.health_status == c).count();
        x.open("InstancesHealth");
        for st in [
            "NoData", "Unknown", "Pending", "Ok", "Info", "Warning", "Degraded", "Severe",
        ] {
            x.leaf(st, &count(st).to_string());
        }
        x.close("InstancesHealth");
    }
    if asked.has("RefreshedAt") {
        x.leaf("RefreshedAt", &fmt_time(SystemTime::now()));
    }
    Ok(())
}

/// `DescribeInstancesHealth`: instance ids, plus only what `AttributeNames` asks for: without
/// `Deployment`, no version information at all.
pub(crate) fn describe_instances_health(
    s: &State,
    p: &Params,
    x: &mut Xml,
) -> Result<(), ApiError> {
    let (e, asked) = health_request(
        s,
        p,
        &[
            "HealthStatus",
            "Color",
            "Causes",
            "ApplicationMetrics",
            "RefreshedAt",
            "LaunchedAt",
            "System",
            "Deployment",
            "AvailabilityZone",
            "InstanceType",
        ],
    )?;
    x.open("InstanceHealthList");
    for i in &e.instances {
        x.open("member");
        x.leaf("InstanceId", &i.id);
        if asked.has("HealthStatus") {
            x.leaf("HealthStatus", &i.health_status);
        }
        if asked.has("Color") {
            x.leaf("Color", &i.color);
        }
        if asked.has("Causes") {
            x.open("Causes");
            x.close("Causes");
        }
        if asked.has("LaunchedAt") {
            x.leaf("LaunchedAt", &fmt_time(e.created));
        }
        if asked.has("Deployment") {
            if let Some(v) = &i.version {
                x.open("Deployment");
                x.leaf("VersionLabel", v);
                x.leaf("DeploymentId", &i.deployment_id.to_string());
                x.leaf("Status", "Deployed");
                x.leaf("DeploymentTime", &fmt_time(e.updated));
                x.close("Deployment");
            }
        }
        if asked.has("AvailabilityZone") {
            x.leaf("AvailabilityZone", &format!("{REGION}a"));
        }
        if asked.has("InstanceType") {
            x.leaf("InstanceType", "t3.medium");
        }
        x.close("member");
    }
    x.close("InstanceHealthList");
    if asked.has("RefreshedAt") {
        x.leaf("RefreshedAt", &fmt_time(SystemTime::now()));
    }
    Ok(())
}

/// `ListPlatformBranches`: the one branch every emulated environment runs, filtered by
/// `BranchName`, `PlatformName` or `LifecycleState` with `=` / `!=` (what the EB CLI asks).
pub(crate) fn list_platform_branches(p: &Params, x: &mut Xml) -> Result<(), ApiError> {
    let branch = [
        ("BranchName", PLATFORM_NAME),
        ("PlatformName", "ECS"),
        ("LifecycleState", "Supported"),
        ("TierType", "WebServer/Standard"),
    ];
    let mut keep = true;
    for n in 1.. {
        let key = |k: &str| format!("Filters.member.{n}.{k}");
        let Some(attribute) = p.get(&key("Attribute")) else {
            break;
        };
        let op = p.get(&key("Operator")).map_or("=", String::as_str);
        let values = members(p, &key("Values"));
        let Some((_, ours)) = branch.iter().find(|(a, _)| a == attribute) else {
            return Err(sender(
                "InvalidParameterValue",
                format!("Invalid filter attribute: {attribute}"),
            ));
        };
        let hit = values.iter().any(|v| v == ours);
        keep &= match op {
            "=" | "in" => hit,
            "!=" | "not_in" => !hit,
            other => {
                return Err(sender(
                    "InvalidParameterValue",
                    format!("Invalid filter operator: {other}"),
                ))
            }
        };
    }
    x.open("PlatformBranchSummaryList");
    if keep {
        x.open("member");
        x.leaf("PlatformName", "ECS");
        x.leaf("BranchName", PLATFORM_NAME);
        x.leaf("LifecycleState", "Supported");
        x.leaf("BranchOrder", "1");
        x.open("SupportedTierList");
        x.leaf("member", "WebServer/Standard");
        x.leaf("member", "Worker/SQS/HTTP");
        x.close("SupportedTierList");
        x.close("member");
    }
    x.close("PlatformBranchSummaryList");
    Ok(())
}
