//! Lint of the bundle's inputs: the rendered `Dockerrun.aws.json`, `.ebextensions/*.config`
//! and `.platform/hooks`. Every finding has a rule id, a severity, a message, a fix hint and
//! the file, line and column it is about. Lint reports every finding, not just the first.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

mod dockerrun;
mod ebext;
mod memory;
#[cfg(test)]
mod rule_tests;
pub mod secrets;

pub use dockerrun::lint_dockerrun;
pub use ebext::{lint_ebextension, lint_file_secrets, lint_hooks, option_settings};
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
    let mut scanner = Scanner::new(text);
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

/// An object key of a JSON text, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonKey {
    /// The key, escapes decoded.
    pub key: String,
    /// Path of the object holding it (`containerDefinitions[1]`; empty at the top).
    pub object_path: String,
    /// 1-based line and column of its opening quote.
    pub line: usize,
    pub column: usize,
}

/// A key written twice in one JSON object: JSON parsers keep the last one silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    pub first: JsonKey,
    pub again: JsonKey,
}

impl DuplicateKey {
    pub fn message(&self) -> String {
        let within = if self.first.object_path.is_empty() {
            "the top-level object".to_string()
        } else {
            format!("`{}`", self.first.object_path)
        };
        format!(
            "duplicate key {:?} in {within}: first on line {}, again on line {}; JSON keeps only the last value, so remove one of them",
            self.first.key, self.first.line, self.again.line
        )
    }
}

/// Every object key of `text`, in order.
pub fn json_keys(text: &str) -> Vec<JsonKey> {
    scan_keys(text).into_iter().map(|(_, k)| k).collect()
}

/// Keys written more than once in the same object of `text` (each repeat after the first).
pub fn duplicate_keys(text: &str) -> Vec<DuplicateKey> {
    let keys = scan_keys(text);
    let mut first = std::collections::HashMap::<(usize, &str), &JsonKey>::new();
    let mut out = Vec::new();
    for (object, key) in &keys {
        match first.get(&(*object, key.key.as_str())) {
            Some(&earlier) => out.push(DuplicateKey {
                first: earlier.clone(),
                again: key.clone(),
            }),
            None => {
                first.insert((*object, key.key.as_str()), key);
            }
        }
    }
    out
}

/// (object id, key) for every object key of `text`.
fn scan_keys(text: &str) -> Vec<(usize, JsonKey)> {
    let mut scanner = Scanner::new(text);
    scanner.keys = Some(Vec::new());
    scanner.value(&mut Vec::new(), &[], &mut None, None);
    let keys = scanner.keys.take().unwrap_or_default();
    keys.into_iter()
        .map(|(object, object_path, key, offset)| {
            let (line, column) = crate::config::line_col(text, offset);
            let key = JsonKey {
                key,
                object_path,
                line,
                column,
            };
            (object, key)
        })
        .collect()
}

fn render_path(at: &[Seg]) -> String {
    let mut out = String::new();
    for seg in at {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A tolerant JSON scanner that records where the deepest matching prefix of a path starts,
/// and, when asked, every object key it passes.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Objects opened so far (an id per object).
    objects: usize,
    /// (object id, object path, decoded key, byte offset of its quote).
    keys: Option<Vec<(usize, String, String, usize)>>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            bytes: text.as_bytes(),
            pos: 0,
            objects: 0,
            keys: None,
        }
    }

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
                self.objects += 1;
                let object = self.objects;
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
                            if let Some(keys) = self.keys.as_mut() {
                                let decoded = serde_json::from_str::<String>(&format!("\"{key}\""))
                                    .unwrap_or_else(|_| key.clone());
                                keys.push((object, render_path(at), decoded, key_at));
                            }
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
    let duplicates: Vec<Finding> = duplicate_keys(&text)
        .into_iter()
        .map(|dup| {
            let at = (dup.again.line, dup.again.column);
            Finding::new(
                DR_PARSE,
                path,
                dup.again.object_path.clone(),
                dup.message(),
                "keep one of the two keys",
            )
            .at(at)
        })
        .collect();
    match crate::dockerrun::Dockerrun::from_value(value) {
        Ok(d) => Ok(duplicates
            .into_iter()
            .chain(lint_dockerrun(path, &text, &d))
            .collect()),
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
    fn lint_file_reports_a_duplicate_key_with_both_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Dockerrun.aws.json");
        let text = T.replace(
            "\"name\": \"b\",",
            "\"name\": \"b\",\n      \"name\": \"c\",",
        );
        std::fs::write(&path, &text).unwrap();
        let findings = lint_file(&path, None).unwrap();
        let dup = findings
            .iter()
            .find(|f| f.message.contains("duplicate key"))
            .unwrap_or_else(|| panic!("{findings:?}"));
        assert_eq!(dup.rule, "DR000");
        assert_eq!(
            dup.message,
            "duplicate key \"name\" in `containerDefinitions[1]`: first on line 6, again on line 7; JSON keeps only the last value, so remove one of them"
        );
        assert_eq!((dup.line, dup.column), (7, 7));
        assert_eq!(duplicate_keys(T), vec![]);
    }

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
