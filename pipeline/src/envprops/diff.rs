//! What runs against what is declared: added, changed, removed, unmanaged (and missing
//! required names), with the option settings that would make the environment match.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    fingerprint, shown, Declared, EB_PROPERTIES_LIMIT, ENVIRONMENT, ENVIRONMENT_SECRETS,
    MANAGED_RECORD,
};
use crate::eb::{Eb, OptionUpdate};
use crate::output::Table;

/// The properties an environment has now (its deployed configuration set).
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// Plain properties, name → value (kept in memory only; shown through [`shown`]).
    pub plain: BTreeMap<String, String>,
    /// Secret properties, name → the ARN EB resolves.
    pub secrets: BTreeMap<String, String>,
    /// The names `env apply` manages, from [`MANAGED_RECORD`] (`None`: never applied).
    pub managed: Option<BTreeSet<String>>,
    /// An update of the configuration is in progress (a `pending` draft exists).
    pub pending: bool,
}

impl Running {
    /// Reads the deployed configuration of `environment` with `DescribeConfigurationSettings`.
    pub async fn read(eb: &Eb, application: &str, environment: &str) -> Result<Self> {
        let configuration = eb
            .configuration(application, environment)
            .await
            .with_context(|| format!("cannot read the configuration of the Elastic Beanstalk environment {environment}: check that it exists in application {application} and the credentials' elasticbeanstalk:DescribeConfigurationSettings permission"))?;
        let deployed = configuration.deployed.with_context(|| {
            format!("Elastic Beanstalk described no configuration for {environment}")
        })?;
        let mut running = Running {
            pending: configuration.pending,
            ..Running::default()
        };
        for o in deployed {
            let (ns, name, value) = (o.namespace.as_str(), o.name.as_str(), o.value);
            match ns {
                ENVIRONMENT if name == MANAGED_RECORD => {
                    running.managed = Some(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .map(str::to_string)
                            .collect(),
                    );
                }
                ENVIRONMENT => {
                    running.plain.insert(name.to_string(), value);
                }
                ENVIRONMENT_SECRETS => {
                    running.secrets.insert(name.to_string(), value);
                }
                _ => {}
            }
        }
        Ok(running)
    }
}

/// One kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Declared, not on the environment: `apply` sets it.
    Added,
    /// On the environment with another value or kind: `apply` sets it.
    Changed,
    /// Managed before, no longer declared: `apply` removes it.
    Removed,
    /// On the environment, never declared: kept (removed only by `apply --prune --yes`).
    Unmanaged,
    /// Required (or declared) but neither declared with a value nor on the environment.
    Missing,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
            Change::Unmanaged => "unmanaged",
            Change::Missing => "missing",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One property in the diff. Values are shown as they may be: plain values that look like
/// secrets, and any plain value of a name declared secret, only as a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyDiff {
    pub name: String,
    pub change: Change,
    /// `plain` or `secret`: what it is (declared, else on the environment).
    pub kind: &'static str,
    pub running: Option<String>,
    pub declared: Option<String>,
    pub detail: String,
}

/// The diff of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub environment: String,
    pub eb_environment: String,
    pub entries: Vec<PropertyDiff>,
    /// Entries that `apply` would change (added, changed, removed; unmanaged with `--prune`).
    pub changes: usize,
    /// A configuration update is in progress on the environment: the diff is against the
    /// deployed set.
    pub pending_update: bool,
    /// Reasons `apply` would refuse (a reference that cannot be resolved, a missing required
    /// property, the size limit).
    pub problems: Vec<String>,
    /// What `doctor` would also say (required names set nowhere); `apply` goes on.
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub update: OptionUpdate,
    #[serde(skip)]
    pub prunable: Vec<(String, String)>,
}

impl DiffReport {
    /// True when nothing would change (unmanaged properties aside).
    pub fn is_empty(&self) -> bool {
        self.update.is_empty()
    }

    /// Entries that differ, for tables and comments (unchanged ones left out).
    pub fn differing(&self) -> impl Iterator<Item = &PropertyDiff> {
        self.entries
            .iter()
            .filter(|e| e.change != Change::Unchanged)
    }

    /// The human table (names, kinds, masked values).
    pub fn table(&self) -> Table {
        let mut t = Table::new(["name", "change", "kind", "running", "declared"]);
        for e in self.differing() {
            let detail = if e.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.detail)
            };
            t.row([
                e.name.clone(),
                e.change.as_str().to_string(),
                e.kind.to_string(),
                e.running.clone().unwrap_or_else(|| "-".into()),
                format!(
                    "{}{detail}",
                    e.declared.clone().unwrap_or_else(|| "-".into())
                ),
            ]);
        }
        t
    }

    /// The rows a deploy's plan and the pull-request preview show: name, change, kind and
    /// only whether the value differs (`differs`, `same`, `kept`, `missing`), never a value,
    /// a fingerprint or a reference. Unchanged entries are left out.
    pub fn masked_rows(&self) -> Vec<[String; 4]> {
        self.differing()
            .map(|e| {
                let state = match e.change {
                    Change::Added | Change::Changed | Change::Removed => "differs",
                    Change::Unchanged => "same",
                    Change::Unmanaged if self.update.removes(&e.name) => "removed by --prune",
                    Change::Unmanaged => "kept",
                    Change::Missing => "missing",
                };
                [
                    e.name.clone(),
                    e.change.as_str().to_string(),
                    e.kind.to_string(),
                    state.to_string(),
                ]
            })
            .collect()
    }

    /// [`Self::masked_rows`] as a table for people.
    pub fn masked_table(&self) -> Table {
        let mut t = Table::new(["name", "change", "kind", "value"]);
        for row in self.masked_rows() {
            t.row(row);
        }
        t
    }

    /// One line for people: what `apply` would do.
    pub fn summary(&self) -> String {
        let count = |c: Change| self.entries.iter().filter(|e| e.change == c).count();
        format!(
            "{}: {} added, {} changed, {} removed, {} unmanaged, {} missing, {} unchanged",
            self.environment,
            count(Change::Added),
            count(Change::Changed),
            count(Change::Removed),
            count(Change::Unmanaged),
            count(Change::Missing),
            count(Change::Unchanged)
        )
    }
}

/// Compares `declared` (secret references resolved to the ARNs EB stores: `Err` when one
/// cannot be) with `running`. `prune` also removes unmanaged properties.
#[allow(clippy::too_many_arguments)]
pub fn diff(
    environment: &str,
    eb_environment: &str,
    declared: &Declared,
    resolved: &BTreeMap<String, Result<String, String>>,
    running: &Running,
    required: &[String],
    prune: bool,
) -> DiffReport {
    let mut entries = vec![];
    let mut update = OptionUpdate::default();
    let mut problems = vec![];
    let mut warnings = vec![];
    let mut prunable = vec![];
    let managed = running.managed.clone().unwrap_or_default();
    let mut names: BTreeSet<&String> = declared.names().collect();
    names.extend(running.plain.keys());
    names.extend(running.secrets.keys());
    for name in names {
        let plain_now = running.plain.get(name);
        let secret_now = running.secrets.get(name);
        let running_shown = match (plain_now, secret_now) {
            (Some(v), _) if declared.secrets.contains_key(name) => Some(fingerprint(v)),
            (Some(v), _) => Some(shown(name, v)),
            (None, Some(arn)) => Some(arn.clone()),
            (None, None) => None,
        };
        let entry = |change: Change, kind: &'static str, declared: Option<String>, detail: &str| {
            PropertyDiff {
                name: name.clone(),
                change,
                kind,
                running: running_shown.clone(),
                declared,
                detail: detail.to_string(),
            }
        };
        if let Some(value) = declared.properties.get(name) {
            let e = match (plain_now, secret_now) {
                (Some(v), _) if v == value => {
                    entry(Change::Unchanged, "plain", Some(value.clone()), "")
                }
                (Some(_), _) => entry(Change::Changed, "plain", Some(value.clone()), ""),
                (None, Some(_)) => entry(
                    Change::Changed,
                    "plain",
                    Some(value.clone()),
                    "secret → plain",
                ),
                (None, None) => entry(Change::Added, "plain", Some(value.clone()), ""),
            };
            if e.change != Change::Unchanged {
                update.set(ENVIRONMENT, name, value);
                if secret_now.is_some() {
                    update.remove(ENVIRONMENT_SECRETS, name);
                }
            }
            entries.push(e);
        } else if let Some(r) = declared.secrets.get(name) {
            let what = r.describe();
            match resolved.get(name) {
                Some(Ok(arn)) => {
                    let e = match (plain_now, secret_now) {
                        (_, Some(now)) if now == arn => {
                            entry(Change::Unchanged, "secret", Some(arn.clone()), &what)
                        }
                        (_, Some(_)) => entry(Change::Changed, "secret", Some(arn.clone()), &what),
                        (Some(_), None) => entry(
                            Change::Changed,
                            "secret",
                            Some(arn.clone()),
                            &format!("{what}; plain → secret"),
                        ),
                        (None, None) => entry(Change::Added, "secret", Some(arn.clone()), &what),
                    };
                    if e.change != Change::Unchanged {
                        update.set(ENVIRONMENT_SECRETS, name, arn);
                        if plain_now.is_some() {
                            update.remove(ENVIRONMENT, name);
                        }
                    }
                    entries.push(e);
                }
                Some(Err(why)) => {
                    problems.push(format!("{name}: {why}"));
                    let change = if plain_now.is_some() || secret_now.is_some() {
                        Change::Changed
                    } else {
                        Change::Missing
                    };
                    entries.push(entry(change, "secret", None, &format!("{what}: {why}")));
                }
                None => {
                    problems.push(format!("{name}: its reference was not resolved"));
                    entries.push(entry(Change::Missing, "secret", None, &what));
                }
            }
        } else {
            let (ns, kind) = if secret_now.is_some() {
                (ENVIRONMENT_SECRETS, "secret")
            } else {
                (ENVIRONMENT, "plain")
            };
            if managed.contains(name) {
                update.remove(ns, name);
                entries.push(entry(Change::Removed, kind, None, "no longer declared"));
            } else {
                prunable.push((ns.to_string(), name.clone()));
                if prune {
                    update.remove(ns, name);
                }
                let detail = if prune {
                    "removed by --prune"
                } else {
                    "kept: not declared here"
                };
                entries.push(entry(Change::Unmanaged, kind, None, detail));
            }
        }
    }
    // Required names that will not exist after an apply.
    for name in required {
        let declared_here =
            declared.properties.contains_key(name) || declared.secrets.contains_key(name);
        let present = running.plain.contains_key(name) || running.secrets.contains_key(name);
        let removed = update.removes(name) && !update.sets(name);
        if removed && !declared_here {
            problems.push(format!(
                "{name} is required: the update would remove it; declare it, or keep it"
            ));
        }
        if !declared_here && !present {
            warnings.push(format!("{name} is required but set nowhere: declare it in deploy.toml, or set it on the environment"));
            if !entries.iter().any(|e| &e.name == name) {
                entries.push(PropertyDiff {
                    name: name.clone(),
                    change: Change::Missing,
                    kind: "plain",
                    running: None,
                    declared: None,
                    detail: "required".into(),
                });
            }
        }
    }
    // The record of managed names.
    let record: BTreeSet<String> = declared.names().cloned().collect();
    let wanted = (!record.is_empty()).then(|| record.iter().cloned().collect::<Vec<_>>().join(","));
    let now = running
        .managed
        .as_ref()
        .map(|m| m.iter().cloned().collect::<Vec<_>>().join(","));
    match (&wanted, &now) {
        (Some(w), Some(n)) if w == n => {}
        (Some(w), _) => update.set(ENVIRONMENT, MANAGED_RECORD, w),
        (None, Some(_)) => update.remove(ENVIRONMENT, MANAGED_RECORD),
        (None, None) => {}
    }
    // EB's size limit on plain properties, after the update.
    let mut after: BTreeMap<&str, &str> = running
        .plain
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (ns, name) in &update.remove {
        if ns == ENVIRONMENT {
            after.remove(name.as_str());
        }
    }
    for (ns, name, value) in &update.set {
        if ns == ENVIRONMENT {
            after.insert(name.as_str(), value.as_str());
        }
    }
    let size: usize = after.iter().map(|(k, v)| k.len() + v.len() + 1).sum();
    if size > EB_PROPERTIES_LIMIT {
        problems.push(format!("the plain properties would take {size} bytes; Elastic Beanstalk allows {EB_PROPERTIES_LIMIT} in total: move large values to secrets"));
    }
    entries.sort_by(|a, b| a.change.cmp(&b.change).then(a.name.cmp(&b.name)));
    let changes = entries
        .iter()
        .filter(|e| {
            matches!(e.change, Change::Added | Change::Changed | Change::Removed)
                || (prune && e.change == Change::Unmanaged)
        })
        .count();
    DiffReport {
        environment: environment.to_string(),
        eb_environment: eb_environment.to_string(),
        entries,
        changes,
        pending_update: running.pending,
        problems,
        warnings,
        update,
        prunable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envprops::SecretRef;

    fn running() -> Running {
        Running {
            plain: BTreeMap::from([
                ("KEEP".into(), "1".into()),
                ("CHANGE".into(), "old".into()),
                ("OLD".into(), "x".into()),
                ("CONSOLE".into(), "y".into()),
                ("DJANGO_SECRET_KEY".into(), "hunter2".into()),
            ]),
            secrets: BTreeMap::new(),
            managed: Some(
                ["CHANGE", "DJANGO_SECRET_KEY", "KEEP", "OLD"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            pending: false,
        }
    }

    fn declared() -> Declared {
        Declared {
            properties: BTreeMap::from([
                ("KEEP".into(), "1".into()),
                ("CHANGE".into(), "new".into()),
                ("NEW".into(), "n".into()),
            ]),
            secrets: BTreeMap::from([(
                "DJANGO_SECRET_KEY".into(),
                SecretRef {
                    secret: Some("antenna/p/DJANGO_SECRET_KEY".into()),
                    key: None,
                    parameter: None,
                },
            )]),
        }
    }

    const ARN: &str =
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna/p/DJANGO_SECRET_KEY-AbCdEf";

    #[test]
    fn every_kind_of_difference() {
        let resolved = BTreeMap::from([("DJANGO_SECRET_KEY".to_string(), Ok(ARN.to_string()))]);
        let d = diff("p", "eb-p", &declared(), &resolved, &running(), &[], false);
        let kinds: Vec<(String, Change)> = d
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.change))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("NEW".into(), Change::Added),
                ("CHANGE".into(), Change::Changed),
                ("DJANGO_SECRET_KEY".into(), Change::Changed),
                ("OLD".into(), Change::Removed),
                ("CONSOLE".into(), Change::Unmanaged),
                ("KEEP".into(), Change::Unchanged),
            ]
        );
        let json = serde_json::to_string(&d).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!d.table().render().contains("hunter2"));
        let secret = d
            .entries
            .iter()
            .find(|e| e.name == "DJANGO_SECRET_KEY")
            .unwrap();
        assert_eq!(
            secret.running.as_deref(),
            Some(fingerprint("hunter2").as_str())
        );
        assert!(d.update.sets("NEW") && d.update.sets("CHANGE") && d.update.sets(MANAGED_RECORD));
        assert!(d.update.removes("OLD") && d.update.removes("DJANGO_SECRET_KEY"));
        assert!(!d.update.removes("CONSOLE"));
        assert_eq!(d.changes, 4);
        let pruned = diff("p", "eb-p", &declared(), &resolved, &running(), &[], true);
        assert!(pruned.update.removes("CONSOLE"));
        // The masked view: whether each differs, no value, fingerprint or reference.
        let rows: Vec<String> = d.masked_rows().iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            rows,
            [
                "NEW added plain differs",
                "CHANGE changed plain differs",
                "DJANGO_SECRET_KEY changed secret differs",
                "OLD removed plain differs",
                "CONSOLE unmanaged plain kept",
            ]
        );
        let masked = pruned.masked_table().render();
        assert!(masked.contains("removed by --prune"), "{masked}");
        for hidden in ["old", "new", "hunter2", "sha256:", "arn:"] {
            assert!(!masked.contains(hidden), "{hidden} in {masked}");
        }
    }

    #[test]
    fn nothing_to_do_and_missing_required() {
        let mut r = running();
        r.plain.remove("OLD");
        r.plain.remove("DJANGO_SECRET_KEY");
        r.plain.insert("CHANGE".into(), "new".into());
        r.plain.insert("NEW".into(), "n".into());
        r.secrets.insert("DJANGO_SECRET_KEY".into(), ARN.into());
        r.managed = Some(
            ["CHANGE", "DJANGO_SECRET_KEY", "KEEP", "NEW"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        let resolved = BTreeMap::from([("DJANGO_SECRET_KEY".to_string(), Ok(ARN.to_string()))]);
        let d = diff(
            "p",
            "eb-p",
            &declared(),
            &resolved,
            &r,
            &["SENTRY_DSN".to_string()],
            false,
        );
        assert!(d.is_empty(), "{:?}", d.update);
        assert!(d.problems.is_empty());
        assert_eq!(d.warnings.len(), 1);
        assert!(d
            .entries
            .iter()
            .any(|e| e.name == "SENTRY_DSN" && e.change == Change::Missing));
    }
}
