//! `status`: what runs on each environment now, how healthy it is, what happened since the
//! last deploy, and whether a deploy is in flight (and who started it).

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use aws_sdk_elasticbeanstalk::types::{
    EnvironmentHealthAttribute, EnvironmentStatus as EbStatus, InstancesHealthAttribute,
};
use serde::Serialize;

use super::versions::{self, rfc3339, Described};
use super::{AwsEnvironment, Session};
use crate::output::Table;

/// The status of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentStatus {
    /// The name in `deploy.toml`.
    pub environment: String,
    pub eb_environment: String,
    pub url: Option<String>,
    /// EB's status: Ready, Updating, Launching...
    pub status: String,
    /// Green, Yellow, Red, Grey.
    pub health: String,
    /// Ok, Info, Warning, Degraded, Severe...
    pub health_status: Option<String>,
    pub causes: Vec<String>,
    /// The version the environment runs (during a deploy: the one being deployed).
    pub version: Option<String>,
    #[serde(flatten)]
    pub described: Described,
    pub instances: Vec<InstanceStatus>,
    pub in_flight: Option<PendingDeploy>,
    /// EB's events since the last deploy started, oldest first.
    pub events: Vec<EventLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub id: String,
    pub version: Option<String>,
    pub health: Option<String>,
}

/// A deploy that has no verdict yet.
#[derive(Debug, Clone, Serialize)]
pub struct PendingDeploy {
    pub label: String,
    /// The GitHub run that made the version (from its description), or this machine's state
    /// file.
    pub started_by: Option<String>,
    pub request_id: Option<String>,
    pub previous: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    pub at: String,
    pub severity: String,
    pub message: String,
}

/// The status of every environment of `envs`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub environments: Vec<EnvironmentStatus>,
}

/// Reads the status of `env`. `state_dir` holds this machine's in-flight deploy state files.
pub async fn status(
    session: &Session,
    env: &AwsEnvironment,
    state_dir: Option<&Path>,
) -> Result<EnvironmentStatus> {
    let eb = &session.eb;
    let name = env.eb_environment.as_str();
    let all = versions::environments(eb, &env.application).await?;
    let e = all
        .iter()
        .find(|e| e.environment_name() == Some(name))
        .with_context(|| {
            format!(
                "the Elastic Beanstalk environment {name} does not exist in application {} (region {}): fix `eb_environment` of [environments.{}] in deploy.toml",
                env.application, env.region, env.name
            )
        })?;
    let status = e.status().map_or("Unknown", |s| s.as_str()).to_string();
    let version = e.version_label().map(str::to_string);
    let described = match &version {
        Some(label) => versions::find(eb, &env.application, label)
            .await?
            .map(|v| v.described)
            .unwrap_or_default(),
        None => Described::default(),
    };
    let health = eb
        .call("DescribeEnvironmentHealth", name, |c| {
            c.describe_environment_health()
                .environment_name(name)
                .attribute_names(EnvironmentHealthAttribute::All)
                .send()
        })
        .await;
    let (health_status, causes) = match &health {
        Ok(h) => (h.health_status().map(str::to_string), h.causes().to_vec()),
        Err(err) => {
            tracing::debug!("status: no enhanced health for {name}: {err}");
            (None, vec![])
        }
    };
    let instances = match eb
        .call("DescribeInstancesHealth", name, |c| {
            c.describe_instances_health()
                .environment_name(name)
                .attribute_names(InstancesHealthAttribute::HealthStatus)
                .attribute_names(InstancesHealthAttribute::Deployment)
                .send()
        })
        .await
    {
        Ok(out) => out
            .instance_health_list()
            .iter()
            .map(|i| InstanceStatus {
                id: i.instance_id().unwrap_or_default().to_string(),
                version: i
                    .deployment()
                    .and_then(|d| d.version_label())
                    .map(str::to_string),
                health: i.health_status().map(str::to_string),
            })
            .collect(),
        Err(err) => {
            tracing::debug!("status: no instance health for {name}: {err}");
            vec![]
        }
    };
    let busy = matches!(e.status(), Some(EbStatus::Updating | EbStatus::Launching));
    let local = state_dir.and_then(|d| crate::eb::deploy::in_flight(d, name));
    let in_flight = if busy || local.is_some() {
        let label = local
            .as_ref()
            .map(|l| l.label.clone())
            .or_else(|| version.clone())
            .unwrap_or_default();
        let by_description = if Some(&label) == version.as_ref() {
            described.run_url.clone()
        } else {
            versions::find(eb, &env.application, &label)
                .await?
                .and_then(|v| v.described.run_url)
        };
        Some(PendingDeploy {
            started_by: by_description.or_else(|| {
                local
                    .as_ref()
                    .map(|_| "this machine (deploy state file)".to_string())
            }),
            request_id: local.as_ref().and_then(|l| l.request_id.clone()),
            previous: local
                .as_ref()
                .and_then(|l| l.previous.as_ref().map(|p| p.label.clone())),
            label,
        })
    } else {
        None
    };
    let events = events_since_last_deploy(session, env).await?;
    Ok(EnvironmentStatus {
        environment: env.name.clone(),
        eb_environment: name.to_string(),
        url: e.cname().map(|c| format!("http://{c}")),
        status,
        health: e.health().map_or("Grey", |h| h.as_str()).to_string(),
        health_status,
        causes,
        version,
        described,
        instances,
        in_flight,
        events,
    })
}

/// The status of each environment of `envs`, in order.
pub async fn report(
    session: &Session,
    envs: &[AwsEnvironment],
    state_dir: Option<&Path>,
) -> Result<StatusReport> {
    let mut environments = Vec::with_capacity(envs.len());
    for env in envs {
        environments.push(status(session, env, state_dir).await?);
    }
    Ok(StatusReport { environments })
}

/// `status --watch`: a new report after each wait of the deploy's [`Poller`] (4 s growing to
/// 4.5 s, jittered), every call through the session's paced client (at most
/// [`crate::eb::Pacing::max_rate`] reads a second, as during a deploy), until `each` returns
/// `false`.
pub async fn watch(
    session: &Session,
    envs: &[AwsEnvironment],
    state_dir: Option<&Path>,
    mut each: impl FnMut(&StatusReport) -> Result<bool>,
) -> Result<()> {
    let mut poller = crate::eb::Poller::new(session.eb.pacing);
    loop {
        let r = report(session, envs, state_dir).await?;
        if !each(&r)? {
            return Ok(());
        }
        tokio::time::sleep(poller.next_wait()).await;
    }
}

/// The environment's events back to the start of the last deploy, oldest first (at most 50).
async fn events_since_last_deploy(
    session: &Session,
    env: &AwsEnvironment,
) -> Result<Vec<EventLine>> {
    let name = env.eb_environment.as_str();
    let out = session
        .eb
        .call("DescribeEvents", name, |c| {
            c.describe_events()
                .application_name(&env.application)
                .environment_name(name)
                .max_records(50)
                .send()
        })
        .await
        .with_context(|| format!("cannot read the events of {name}"))?;
    let mut lines = vec![];
    // EB lists the newest first.
    for ev in out.events() {
        let message = ev.message().unwrap_or_default().to_string();
        let start = message.starts_with("Environment update is starting");
        lines.push(EventLine {
            at: ev
                .event_date()
                .and_then(|d| SystemTime::try_from(*d).ok())
                .map(rfc3339)
                .unwrap_or_default(),
            severity: ev.severity().map_or("INFO", |s| s.as_str()).to_string(),
            message,
        });
        if start {
            break;
        }
    }
    lines.reverse();
    Ok(lines)
}

impl StatusReport {
    /// The tables people read: one line per environment, then each one's instances, causes
    /// and events.
    pub fn render(&self) -> String {
        let mut t = Table::new([
            "environment",
            "status",
            "health",
            "version",
            "release",
            "deploy",
        ]);
        for e in &self.environments {
            let release = match (&e.described.release, &e.described.commit) {
                (Some(r), Some(c)) => format!("{r} ({})", c.chars().take(12).collect::<String>()),
                _ => "-".into(),
            };
            let deploy = match &e.in_flight {
                Some(f) => format!(
                    "in flight: {} (started by {})",
                    f.label,
                    f.started_by.as_deref().unwrap_or("unknown")
                ),
                None => "none in flight".into(),
            };
            t.row([
                e.environment.clone(),
                e.status.clone(),
                match &e.health_status {
                    Some(s) => format!("{}/{s}", e.health),
                    None => e.health.clone(),
                },
                e.version.clone().unwrap_or_else(|| "-".into()),
                release,
                deploy,
            ]);
        }
        let mut out = t.render();
        for e in &self.environments {
            out.push_str(&format!("\n{} ({})\n", e.environment, e.eb_environment));
            for c in &e.causes {
                out.push_str(&format!("  cause: {c}\n"));
            }
            if !e.instances.is_empty() {
                let mut i = Table::new(["instance", "version", "health"]);
                for inst in &e.instances {
                    i.row([
                        inst.id.clone(),
                        inst.version.clone().unwrap_or_else(|| "-".into()),
                        inst.health.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                for line in i.render().lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            if !e.events.is_empty() {
                out.push_str("  events since the last deploy:\n");
                for ev in &e.events {
                    out.push_str(&format!("  {} {:<5} {}\n", ev.at, ev.severity, ev.message));
                }
            }
        }
        out
    }
}
