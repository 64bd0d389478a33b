//! The verify agent's side of the bundle: the check list the pipeline renders into the
//! bundle (`.platform/verify/checks.json`), and the line of the agent's output that carries
//! its report back to the pipeline through EB's logs.
//!
//! The check list holds the `where = "instance"` checks of one environment with the *names*
//! of the environment variables they read, never their values: the agent looks the values up
//! in the environment properties that the postdeploy hook passes it (the JSON object printed
//! by `/opt/elasticbeanstalk/bin/get-config environment`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{de_positive_duration, ser_duration, CheckSpec};
use crate::{Check, VerifyReport};

/// The start of the output line that carries the agent's report as JSON (one line, so that
/// it survives EB's tail logs, which keep the last 100 lines of each file).
pub const REPORT_MARKER: &str = "verify-agent report: ";

/// The check list of the bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentChecks {
    /// The environment's name in the configuration (shown in the agent's output).
    pub environment: String,
    /// The stage's deadline (`timeouts.verify`): it caps every check's timeout.
    #[serde(
        deserialize_with = "de_positive_duration",
        serialize_with = "ser_duration"
    )]
    pub timeout: Duration,
    pub checks: Vec<CheckSpec>,
}

impl AgentChecks {
    /// Parses a check list; the error names `origin` (the file).
    pub fn parse(origin: &str, text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .with_context(|| format!("{origin} is not a check list of the verify agent"))
    }

    /// The checks, with URLs and credentials looked up by `env`.
    pub fn build(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Check>> {
        self.checks
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut check = Check::from_spec(spec, None, env)
                    .with_context(|| format!("checks[{i}] ({})", spec.kind.name()))?;
                check.cap_timeout(self.timeout);
                Ok(check)
            })
            .collect()
    }
}

/// The environment properties printed by `get-config environment`: a JSON object of strings.
pub fn parse_properties(origin: &str, text: &str) -> Result<BTreeMap<String, String>> {
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| {
        format!("{origin} is not JSON: expected the output of `get-config environment`")
    })?;
    let object = value
        .as_object()
        .with_context(|| format!("{origin} is not a JSON object of environment properties"))?;
    Ok(object
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect())
}

/// The report line of the agent's output: [`REPORT_MARKER`] and the report as JSON.
pub fn report_line(report: &VerifyReport) -> String {
    let json = serde_json::to_string(report).unwrap_or_else(|_| "{}".into());
    format!("{REPORT_MARKER}{json}")
}

/// What the agent prints on the instance (and so what lands in `eb-hooks.log`): a header
/// naming the environment, the check table, and the [`report_line`].
pub fn render_output(environment: &str, report: &VerifyReport) -> String {
    format!(
        "verify-agent: {} check(s) of {environment} from this instance\n{}{}\n",
        report.checks.len(),
        report.render_table(),
        report_line(report)
    )
}

/// The last report found in `lines` (a log's lines; each may carry a prefix before the
/// marker), if any.
pub fn find_report<'a>(lines: impl DoubleEndedIterator<Item = &'a str>) -> Option<VerifyReport> {
    lines.rev().find_map(|line| {
        let at = line.find(REPORT_MARKER)?;
        serde_json::from_str(&line[at + REPORT_MARKER.len()..]).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CheckOutcome, Verdict};

    #[test]
    fn a_report_survives_the_log_line() {
        let report = VerifyReport::new(vec![CheckOutcome {
            check: "redis".into(),
            target: "rediss://:***@cache:6379/0".into(),
            required: true,
            verdict: Verdict::Fail,
            latency_ms: 12,
            elapsed_ms: 30,
            attempts: 2,
            detail: "WRONGPASS".into(),
        }]);
        let lines = [
            "some output".to_string(),
            format!("2026/11/29 23:59:00.1 [INFO] {}", report_line(&report)),
            "later".to_string(),
        ];
        let found = find_report(lines.iter().map(String::as_str)).unwrap();
        assert_eq!(found, report);
        assert!(find_report(["no report here"].into_iter()).is_none());
    }

    #[test]
    fn properties_are_strings() {
        let p = parse_properties("props", r#"{"A": "x", "N": 5}"#).unwrap();
        assert_eq!(p["A"], "x");
        assert_eq!(p["N"], "5");
        let e = parse_properties("props", "[1]").unwrap_err();
        assert!(
            format!("{e:#}").contains("props is not a JSON object"),
            "{e:#}"
        );
    }

    #[test]
    fn a_check_list_round_trips_and_caps_timeouts() {
        let text = r#"{"environment":"staging","timeout":"30s","checks":[{"kind":"redis","url_env":"REDIS_URL","timeout":"2m","where":"instance"}]}"#;
        let list = AgentChecks::parse("checks.json", text).unwrap();
        let env = |k: &str| (k == "REDIS_URL").then(|| "redis://:pw@h:6379/0".to_string());
        let checks = list.build(&env).unwrap();
        assert_eq!(checks[0].timeout(), Duration::from_secs(30));
        assert_eq!(checks[0].target(), "redis://:***@h:6379/0");
        let missing = list.build(&|_| None).unwrap_err();
        assert!(
            format!("{missing:#}").contains("environment variable REDIS_URL, which is not set"),
            "{missing:#}"
        );
        let again: AgentChecks =
            serde_json::from_str(&serde_json::to_string(&list).unwrap()).unwrap();
        assert_eq!(again, list);
    }
}
