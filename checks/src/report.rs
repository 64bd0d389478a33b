//! Outcomes of the checks, the report, and its table.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Reached, and right.
    Pass,
    /// Reached, but wrong (a status, a body, a certificate, credentials, missing workers).
    Fail,
    /// Could not reach it (connection refused, no route, DNS, no answer in time).
    Unreachable,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Unreachable => "unreachable",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// The check's kind: `http`, `redis`, `celery` or `flower`.
    pub check: String,
    /// What it talked to, secrets masked.
    pub target: String,
    pub required: bool,
    pub verdict: Verdict,
    /// Duration of the last attempt.
    pub latency_ms: u64,
    /// Time from the first attempt to the verdict.
    pub elapsed_ms: u64,
    pub attempts: u32,
    pub detail: String,
}

/// What the verify stage found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// True when every required check passed.
    pub passed: bool,
    pub checks: Vec<CheckOutcome>,
}

impl VerifyReport {
    pub fn new(checks: Vec<CheckOutcome>) -> Self {
        let passed = checks
            .iter()
            .all(|c| !c.required || c.verdict == Verdict::Pass);
        Self { passed, checks }
    }

    /// True when every required check passed.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// The required checks that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.checks
            .iter()
            .filter(|c| c.required && c.verdict != Verdict::Pass)
    }

    /// A plain-text table: check, target, verdict, latency, detail.
    pub fn render_table(&self) -> String {
        let mut table =
            crate::output::Table::new(["check", "target", "verdict", "latency", "detail"]);
        for c in &self.checks {
            let verdict = if c.required || c.verdict == Verdict::Pass {
                c.verdict.to_string()
            } else {
                format!("{} (optional)", c.verdict)
            };
            table.row([
                c.check.clone(),
                c.target.clone(),
                verdict,
                crate::output::human_duration(Duration::from_millis(c.latency_ms)),
                c.detail.clone(),
            ]);
        }
        let mut out = table.render();
        let failed: Vec<&str> = self.failures().map(|c| c.check.as_str()).collect();
        if failed.is_empty() {
            out.push_str(&format!(
                "verify: all {} required checks passed\n",
                self.checks.iter().filter(|c| c.required).count()
            ));
        } else {
            out.push_str(&format!("verify: FAILED: {}\n", failed.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(check: &str, verdict: Verdict, required: bool) -> CheckOutcome {
        CheckOutcome {
            check: check.into(),
            target: format!("{check}://host"),
            required,
            verdict,
            latency_ms: 42,
            elapsed_ms: 42,
            attempts: 1,
            detail: "some detail".into(),
        }
    }

    #[test]
    fn optional_failures_do_not_fail_the_report() {
        let r = VerifyReport::new(vec![
            outcome("http", Verdict::Pass, true),
            outcome("flower", Verdict::Unreachable, false),
        ]);
        assert!(r.passed());
        let table = r.render_table();
        assert!(table.contains("unreachable (optional)"), "{table}");
        assert!(
            table.ends_with("verify: all 1 required checks passed\n"),
            "{table}"
        );
    }

    #[test]
    fn table_lines_up_and_names_failures() {
        let r = VerifyReport::new(vec![
            outcome("http", Verdict::Pass, true),
            outcome("celery", Verdict::Fail, true),
        ]);
        assert!(!r.passed());
        let table = r.render_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "CHECK   TARGET         VERDICT  LATENCY  DETAIL");
        assert_eq!(
            lines[1],
            "http    http://host    pass     42 ms    some detail"
        );
        assert_eq!(
            lines[2],
            "celery  celery://host  fail     42 ms    some detail"
        );
        assert_eq!(lines[3], "verify: FAILED: celery");
    }

    #[test]
    fn json_uses_lowercase_verdicts() {
        let r = VerifyReport::new(vec![outcome("redis", Verdict::Unreachable, true)]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["passed"], false);
        assert_eq!(v["checks"][0]["verdict"], "unreachable");
        assert_eq!(v["checks"][0]["latency_ms"], 42);
    }
}
