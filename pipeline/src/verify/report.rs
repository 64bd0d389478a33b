//! Outcomes of the checks, the report, and its table.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        let header = ["CHECK", "TARGET", "VERDICT", "LATENCY", "DETAIL"];
        let rows: Vec<[String; 5]> = self
            .checks
            .iter()
            .map(|c| {
                let verdict = if c.required || c.verdict == Verdict::Pass {
                    c.verdict.to_string()
                } else {
                    format!("{} (optional)", c.verdict)
                };
                [
                    c.check.clone(),
                    c.target.clone(),
                    verdict,
                    human_duration(Duration::from_millis(c.latency_ms)),
                    c.detail.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == 4 {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            out.trim_end().to_string() + "\n"
        };
        let mut out = line(header);
        for row in &rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        }
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

/// A short human duration: `850 ms`, `1.2 s`, `2m 5s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m {}s", d.as_secs() / 60, d.as_secs() % 60)
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

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_millis(1300)), "1.3 s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m 5s");
    }
}
