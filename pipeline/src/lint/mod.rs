//! Lint of the bundle's inputs: the rendered `Dockerrun.aws.json`, `.ebextensions/*.config`
//! and `.platform/hooks`. Every finding has a rule id, a severity, a message, a fix hint and
//! the file, line and column it is about. Lint reports every finding, not just the first.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

mod dockerrun;
mod ebext;
pub mod image_ref;
mod memory;
#[cfg(test)]
mod rule_tests;
pub mod secrets;

pub use dockerrun::lint_dockerrun;
pub use ebext::{lint_ebextension, lint_file_secrets, lint_hooks, option_settings, OptionSetting};
pub use memory::lint_memory;

/// How bad a finding is: errors stop the bundle, warnings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A lint rule.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

macro_rules! rules {
    ($($konst:ident = $id:literal $name:literal $sev:ident $summary:literal;)*) => {
        $(pub const $konst: Rule = Rule { id: $id, name: $name, severity: Severity::$sev, summary: $summary };)*
        /// Every rule, in id order.
        pub const RULES: &[Rule] = &[$($konst),*];
    };
}

rules! {
    DR_PARSE = "DR000" "dockerrun-invalid" Error "the file is valid JSON of the Dockerrun v2 shape; every placeholder of the template is known and set";
    DR_VERSION = "DR001" "version" Error "AWSEBDockerrunVersion is the integer 2";
    DR_NAME = "DR002" "container-name" Error "every container has a name, and names are unique";
    DR_IMAGE = "DR003" "container-image" Error "every container has an image";
    DR_MEMORY = "DR004" "memory" Error "every container sets a non-zero memory or memoryReservation";
    DR_ESSENTIAL = "DR005" "essential" Error "at least one container is essential (a missing `essential` counts as true, as in ECS)";
    DR_LINKS = "DR006" "links" Error "links name containers of the same file";
    DR_DEPENDS_ON = "DR007" "depends-on" Error "dependsOn names containers of the same file, with START, COMPLETE, SUCCESS or HEALTHY";
    DR_VOLUMES_FROM = "DR008" "volumes-from" Error "volumesFrom names containers of the same file";
    DR_MOUNT_POINTS = "DR009" "mount-points" Error "mountPoints name declared volumes";
    DR_HOST_PORT = "DR010" "host-port" Error "no host port is mapped twice (per protocol)";
    DR_PORT_RANGE = "DR011" "port-range" Error "ports are between 1 and 65535";
    DR_IMAGE_REF = "DR012" "image-reference" Error "image references are well formed";
    DR_IMAGE_TAG = "DR013" "image-tag" Warning "images are pinned to a tag other than latest (or a digest)";
    DR_SECRET_ENV = "DR014" "secret-in-environment" Error "no secret in a container's environment (names *SECRET*, *PASSWORD, *_KEY, *TOKEN*, *_DSN, *CREDENTIALS*; URLs with a password; private keys): use EB environment properties or secrets with a valueFrom ARN";
    DR_CYCLE = "DR015" "depends-on-cycle" Error "dependsOn has no cycle";
    DR_SECRETS_ARN = "DR016" "secrets-value-from" Error "secrets take an ARN in valueFrom, and need a top-level executionRoleArn";
    DR_UNKNOWN = "DR017" "unknown-field" Warning "fields are known to EB's ECS platform (unknown ones are kept)";
    DR_INSTANCE_MEMORY = "DR018" "instance-memory" Error "the containers' reserved memory fits the environment's instance_type";
    DR_MEMORY_OVERCOMMIT = "DR019" "memory-overcommit" Warning "the containers' hard memory caps fit the environment's instance_type";
    DR_SECRET_COMMAND = "DR020" "secret-in-command" Error "no secret in a container's command or entryPoint";
    EX_PARSE = "EX001" "config-invalid" Error "the file is valid YAML or JSON, a mapping at the top";
    EX_KEYS = "EX002" "config-keys" Error "only the top-level keys EB knows (option_settings, container_commands, files, Resources…; the finding lists them all)";
    EX_OPTIONS = "EX003" "option-settings" Error "option_settings is a map of namespaces or a list of namespace/option_name/value, with single values";
    EX_MIGRATE = "EX004" "migrate-in-container-commands" Warning "no migrations in container_commands: they run before the new containers start; use .platform/hooks/postdeploy/";
    EX_HEALTH = "EX005" "health-check-path" Warning "HealthCheckPath is the path the verify stage checks";
    EX_SECRET = "EX006" "secret-in-option-settings" Error "no secret among the environment properties of option_settings";
    EX_SECRET_TEXT = "EX007" "secret-in-files" Error "no secret in files, commands, their env or platform hooks";
    PL_HOOK = "PL001" "hook-executable" Error ".platform/hooks scripts are executable";
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; 0 when the finding is about the whole file.
    pub line: usize,
    pub column: usize,
    /// The field it is about (`containerDefinitions[2].memory`), or empty.
    pub field: String,
    pub message: String,
    pub hint: String,
    /// The secret-looking value the finding is about, never printed: whatever shows the
    /// bundle's files (the preview) masks it.
    #[serde(skip)]
    pub secret: Option<String>,
}

impl Finding {
    pub fn new(
        rule: Rule,
        file: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Finding {
            rule: rule.id,
            name: rule.name,
            severity: rule.severity,
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
            secret: None,
        }
    }

    /// Remembers the secret value the finding is about (see [`Finding::secret`]).
    pub fn with_secret(mut self, value: impl Into<String>) -> Self {
        self.secret = Some(value.into());
        self
    }

    pub fn at(mut self, (line, column): (usize, usize)) -> Self {
        self.line = line;
        self.column = column;
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(
            f,
            ": {} {}[{}]: {}",
            self.severity, self.rule, self.name, self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "\n    hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// All findings of a lint run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn extend(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
    }

    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count()
    }

    /// Sorted by file, position and rule, for stable output.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            (&a.file, a.line, a.column, a.rule).cmp(&(&b.file, b.line, b.column, b.rule))
        });
    }

    /// The secret values the findings are about, longest first (so that masking one never
    /// leaves part of a longer one).
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .findings
            .iter()
            .filter_map(|f| f.secret.clone())
            .filter(|s| !s.trim().is_empty())
            .collect();
        out.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        out.dedup();
        out
    }

    /// Human text: one finding a paragraph, then a count.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            out.push_str(&f.to_string());
            out.push('\n');
        }
        out.push_str(&format!(
            "{} error(s), {} warning(s)\n",
            self.errors(),
            self.warnings()
        ));
        out
    }
}

/// 1-based (line, column) where the value at JSON `path` (`a.b[2].c`, as serde_path_to_error
/// writes it) starts in `text`; (0, 0) when it cannot be found. For a missing key, the
/// position of the closest existing parent.
pub fn locate(text: &str, path: &str) -> (usize, usize) {
    let want = split_path(path);
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut best = None;
    scanner.value(&mut Vec::new(), &want, &mut best, None);
    best.map_or((0, 0), |(_, offset)| crate::config::line_col(text, offset))
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = r.get(end + 1..).unwrap_or("");
        }
    }
    out
}

/// A tolerant JSON scanner that records where the deepest matching prefix of a path starts.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.pos < self.bytes.len() && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    /// Scans one value; `mark` is the position to report for it (its key inside an object).
    fn value(
        &mut self,
        at: &mut Vec<Seg>,
        want: &[Seg],
        best: &mut Option<(usize, usize)>,
        mark: Option<usize>,
    ) {
        self.ws();
        let mark = mark.unwrap_or(self.pos);
        if at.len() <= want.len()
            && want[..at.len()] == at[..]
            && best.is_none_or(|(d, _)| at.len() > d)
        {
            *best = Some((at.len(), mark));
        }
        match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.ws();
                    match self.bytes.get(self.pos) {
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b'"') => {
                            let key_at = self.pos;
                            let key = self.string();
                            self.ws();
                            if self.bytes.get(self.pos) == Some(&b':') {
                                self.pos += 1;
                            }
                            at.push(Seg::Key(key));
                            self.value(at, want, best, Some(key_at));
                            at.pop();
                        }
                        Some(_) => self.pos += 1,
                        None => return,
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut i = 0;
                loop {
                    self.ws();
                    match self.bytes.get(self.pos) {
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => {
                            self.pos += 1;
                            i += 1;
                        }
                        Some(_) => {
                            at.push(Seg::Index(i));
                            let before = self.pos;
                            self.value(at, want, best, None);
                            at.pop();
                            if self.pos == before {
                                self.pos += 1;
                            }
                        }
                        None => return,
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while self.pos < self.bytes.len() && !b",}]".contains(&self.bytes[self.pos]) {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    fn string(&mut self) -> String {
        let start = self.pos + 1;
        self.pos += 1;
        while self.pos < self.bytes.len() {
            match self.bytes[self.pos] {
                b'\\' => self.pos += 2,
                b'"' => {
                    let s = String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned();
                    self.pos += 1;
                    return s;
                }
                _ => self.pos += 1,
            }
        }
        String::new()
    }
}

/// Lints one file given by hand: a rendered `Dockerrun.aws.json` (JSON) or an
/// `.ebextensions` `.config` (YAML or JSON), told apart by name, then by content.
pub fn lint_file(path: &Path, verify_path: Option<&str>) -> std::io::Result<Vec<Finding>> {
    let text = std::fs::read_to_string(path)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let is_config = name.ends_with(".config") || name.ends_with(".yaml") || name.ends_with(".yml");
    if is_config {
        return Ok(lint_ebextension(path, &text, verify_path));
    }
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            return Ok(vec![Finding::new(
                DR_PARSE,
                path,
                "",
                format!("invalid JSON: {e}"),
                "fix the syntax",
            )
            .at((e.line(), e.column()))]);
        }
    };
    match crate::dockerrun::Dockerrun::from_value(value) {
        Ok(d) => Ok(lint_dockerrun(path, &text, &d)),
        Err(e) => {
            let at = locate(&text, &e.path);
            Ok(vec![Finding::new(
                DR_PARSE,
                path,
                e.path.clone(),
                format!("`{}`: {}", e.path, e.message),
                "fix the field's type",
            )
            .at(at)])
        }
    }
}

/// `path` relative to `root` when inside it, `/`-separated.
pub fn relative(path: &Path, root: &Path) -> String {
    let abs_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let rel = abs
        .strip_prefix(&abs_root)
        .or_else(|_| path.strip_prefix(root))
        .unwrap_or(path);
    rel.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "{\n  \"AWSEBDockerrunVersion\": 2,\n  \"containerDefinitions\": [\n    {\"name\": \"a\"},\n    {\n      \"name\": \"b\",\n      \"memory\": 0\n    }\n  ]\n}";

    #[test]
    fn locate_finds_keys_and_elements() {
        assert_eq!(locate(T, "AWSEBDockerrunVersion"), (2, 3));
        assert_eq!(locate(T, "containerDefinitions[0]"), (4, 5));
        assert_eq!(locate(T, "containerDefinitions[1].memory"), (7, 7));
        // A missing key falls back to its parent.
        assert_eq!(locate(T, "containerDefinitions[1].links"), (5, 5));
        assert_eq!(locate(T, "."), (1, 1));
    }

    #[test]
    fn rule_ids_are_unique_and_sorted() {
        let ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }
}
