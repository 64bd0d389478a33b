//! Rendering `Dockerrun.template.json` into `Dockerrun.aws.json`.
//!
//! Placeholders are `${NAME}` and are substituted inside JSON string values only:
//!
//! | placeholder | value |
//! |---|---|
//! | `${image.NAME}` | full reference of image NAME with its tag (built images: the release) |
//! | `${release}` | the release name (git tag, else short commit) |
//! | `${commit}` | the full commit |
//! | `${account}`, `${region}`, `${registry}` | AWS account id, region, registry host |
//! | `${application}`, `${environment}` | EB application, EB environment (or the config's name) |
//! | `${var.NAME}` | `[vars]` and `[environments.X.vars]` of the configuration |
//!
//! `$${` writes a literal `${`. An unknown or unset placeholder is an error naming it and the
//! lines it is on; every such problem is reported, not just the first.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Config, EnvironmentSpec, ImageSpec, Target};
use crate::dockerrun::Dockerrun;
use crate::release::Release;

/// What placeholders stand for in one environment. A value can be known to be unset, with the
/// reason and what to do.
#[derive(Debug, Clone, Default)]
pub struct RenderContext {
    values: BTreeMap<String, Result<String, String>>,
}

impl RenderContext {
    /// The values for environment `env_name`. `account` comes from the config, an override or
    /// STS; without it, AWS image references are unset (with a reason).
    pub fn for_environment(
        config: &Config,
        env_name: &str,
        env: &EnvironmentSpec,
        release: &Release,
        account: Option<&str>,
    ) -> Self {
        let mut ctx = RenderContext::default();
        let no_account = "the AWS account is unknown: set `account` in the configuration, DEPLOY_ACCOUNT, or AWS credentials that STS accepts";
        ctx.set("release", &release.name);
        ctx.set("commit", &release.commit);
        ctx.set("region", &config.region);
        ctx.set("application", &config.application);
        ctx.set(
            "environment",
            env.eb_environment.as_deref().unwrap_or(env_name),
        );
        let account = account.or(config.account.as_deref());
        match account {
            Some(a) => ctx.set("account", a),
            None => ctx.unset("account", no_account),
        }
        let registry = config
            .registry
            .clone()
            .or_else(|| account.map(|a| format!("{a}.dkr.ecr.{}.amazonaws.com", config.region)));
        match &registry {
            Some(r) => ctx.set("registry", r),
            None => ctx.unset("registry", no_account),
        }
        for (name, image) in &config.images {
            let key = format!("image.{name}");
            match image_reference(image, env.target, registry.as_deref(), &release.name) {
                Some(r) => ctx.set(&key, &r),
                None => ctx.unset(&key, no_account),
            }
        }
        for (k, v) in config.vars_for(env) {
            ctx.set(&format!("var.{k}"), &v);
        }
        ctx
    }

    /// Sets placeholder `name` to `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), Ok(value.to_string()));
    }

    /// Marks `name` as known but without a value, and why.
    pub fn unset(&mut self, name: &str, reason: &str) {
        self.values
            .insert(name.to_string(), Err(reason.to_string()));
    }

    pub fn get(&self, name: &str) -> Option<&Result<String, String>> {
        self.values.get(name)
    }

    /// Known placeholder names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// The reference an image gets in an environment: built images carry the release as tag;
/// local environments use local names (nothing is pushed).
pub fn image_reference(
    image: &ImageSpec,
    target: Target,
    registry: Option<&str>,
    release: &str,
) -> Option<String> {
    let tag = match (&image.build, &image.tag) {
        (Some(_), _) => release,
        (None, Some(t)) => t.as_str(),
        (None, None) => release,
    };
    if target == Target::Local || image.has_registry_host() {
        return Some(format!("{}:{tag}", image.repository));
    }
    registry.map(|r| format!("{r}/{}:{tag}", image.repository))
}

/// A problem in a template, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateProblem {
    pub file: PathBuf,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// Every problem that stopped a render.
#[derive(Debug, Clone, thiserror::Error)]
pub struct RenderError {
    pub problems: Vec<TemplateProblem>,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "cannot render the template ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// A rendered file.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The template it came from.
    pub template: PathBuf,
    pub dockerrun: Dockerrun,
    /// Pretty JSON, stable key order, final newline.
    pub json: String,
}

/// Reads and renders the configured template for one environment.
pub fn render_file(config: &Config, ctx: &RenderContext) -> Result<Rendered, RenderError> {
    let path = config.resolve(&config.bundle.template);
    let text = std::fs::read_to_string(&path).map_err(|e| RenderError {
        problems: vec![TemplateProblem {
            file: path.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read the template: {e}; set `bundle.template` in the configuration if it lives elsewhere"),
        }],
    })?;
    render(&path, &text, ctx)
}

/// Renders template `text` (read from `path`, for messages).
pub fn render(path: &Path, text: &str, ctx: &RenderContext) -> Result<Rendered, RenderError> {
    let problem = |line: usize, column: usize, message: String| TemplateProblem {
        file: path.to_path_buf(),
        line,
        column,
        message,
    };
    let mut value: Value = serde_json::from_str(text).map_err(|e| RenderError {
        problems: vec![problem(e.line(), e.column(), format!("invalid JSON: {e}"))],
    })?;

    let mut problems = Vec::new();
    let mut seen = BTreeMap::<String, String>::new();
    substitute(&mut value, ctx, &mut seen);
    for (name, reason) in &seen {
        let positions = placeholder_positions(text, name);
        let (line, column) = positions.first().copied().unwrap_or((0, 0));
        let lines = if positions.len() > 1 {
            format!(
                " (also on line{} {})",
                if positions.len() > 2 { "s" } else { "" },
                positions[1..]
                    .iter()
                    .map(|(l, _)| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        problems.push(problem(line, column, format!("{reason}{lines}")));
    }
    for key in crate::lint::json_keys(text) {
        if let Some(name) = placeholder_in(&key.key) {
            problems.push(problem(
                key.line,
                key.column,
                format!("placeholder ${{{name}}} is in an object key: placeholders are substituted in string values only; move it into a value"),
            ));
        }
    }
    for dup in crate::lint::duplicate_keys(text) {
        problems.push(problem(dup.again.line, dup.again.column, dup.message()));
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(RenderError { problems });
    }
    let dockerrun = Dockerrun::from_value(value).map_err(|e| {
        let (line, column) = crate::lint::locate(text, &e.path);
        RenderError {
            problems: vec![problem(
                line,
                column,
                format!("`{}`: {}", e.path, e.message),
            )],
        }
    })?;
    let json = dockerrun.to_pretty_json();
    Ok(Rendered {
        template: path.to_path_buf(),
        dockerrun,
        json,
    })
}

/// Walks string values, substituting placeholders; records unknown/unset ones in `problems`
/// (name → message).
fn substitute(value: &mut Value, ctx: &RenderContext, problems: &mut BTreeMap<String, String>) {
    match value {
        Value::String(s) if s.contains('$') => *s = substitute_str(s, ctx, problems),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, ctx, problems)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, ctx, problems)),
        _ => {}
    }
}

fn substitute_str(s: &str, ctx: &RenderContext, problems: &mut BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(end) => {
                    let name = body[..end].trim();
                    match ctx.get(name) {
                        Some(Ok(v)) => out.push_str(v),
                        Some(Err(reason)) => {
                            problems.entry(name.to_string()).or_insert_with(|| {
                                format!("placeholder ${{{name}}} is unset: {reason}")
                            });
                        }
                        None => {
                            problems
                                .entry(name.to_string())
                                .or_insert_with(|| unknown_message(name, ctx));
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    problems
                        .entry(body.to_string())
                        .or_insert_with(|| format!("unterminated placeholder \"${{{body}\": close it with '}}' (write $${{ for a literal ${{)"));
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn unknown_message(name: &str, ctx: &RenderContext) -> String {
    let hint = if let Some(var) = name.strip_prefix("var.") {
        format!("add `{var} = \"…\"` under [vars] (or the environment's vars) in the configuration")
    } else if let Some(image) = name.strip_prefix("image.") {
        let images: Vec<_> = ctx
            .names()
            .filter_map(|n| n.strip_prefix("image."))
            .collect();
        format!(
            "no image {image:?} in the configuration's [images]; known: {}",
            images.join(", ")
        )
    } else {
        "known placeholders: ${release}, ${commit}, ${account}, ${region}, ${registry}, ${application}, ${environment}, ${image.NAME}, ${var.NAME}".to_string()
    };
    format!("unknown placeholder ${{{name}}}: {hint}")
}

/// 1-based (line, column) of each `${name}` in `text`.
fn placeholder_positions(text: &str, name: &str) -> Vec<(usize, usize)> {
    let needle = format!("${{{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(&needle) {
        let at = from + i;
        if !text[..at].ends_with('$') {
            out.push(crate::config::line_col(text, at));
        }
        from = at + needle.len();
    }
    out
}

/// The first placeholder written in `key` (`$${` is a literal, not a placeholder).
fn placeholder_in(key: &str) -> Option<&str> {
    let mut rest = key;
    while let Some(i) = rest.find("${") {
        if rest[..i].ends_with('$') {
            rest = &rest[i + 2..];
            continue;
        }
        let body = &rest[i + 2..];
        return Some(body.find('}').map_or(body, |end| &body[..end]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RenderContext {
        let mut c = RenderContext::default();
        c.set(
            "image.backend",
            "1.dkr.ecr.us-west-2.amazonaws.com/antenna:v1",
        );
        c.set("release", "v1");
        c.set("var.MODE", "prod");
        c.unset("account", "the AWS account is unknown");
        c
    }

    const T: &str = r#"{
  "AWSEBDockerrunVersion": 2,
  "containerDefinitions": [
    {"name": "django", "image": "${image.backend}", "memory": 512,
     "environment": [{"name": "MODE", "value": "${var.MODE}-$${literal}"}]}
  ]
}"#;

    #[test]
    fn substitutes_in_strings_and_keeps_literals() {
        let r = render(Path::new("t.json"), T, &ctx()).unwrap();
        let c = &r.dockerrun.container_definitions[0];
        assert_eq!(
            c.image.as_deref(),
            Some("1.dkr.ecr.us-west-2.amazonaws.com/antenna:v1")
        );
        assert_eq!(c.environment[0].value, "prod-${literal}");
        assert!(r.json.ends_with("}\n"));
    }

    #[test]
    fn unknown_and_unset_placeholders_name_their_lines() {
        let t = T.replace("${var.MODE}", "${var.NOPE}").replace(
            "\"memory\": 512",
            "\"memory\": 512, \"user\": \"${account}\"",
        );
        let err = render(Path::new("t.json"), &t, &ctx()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot render the template (2 problems):"),
            "{text}"
        );
        assert!(
            text.contains(
                "t.json:4:77: placeholder ${account} is unset: the AWS account is unknown"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "t.json:5:49: unknown placeholder ${var.NOPE}: add `NOPE = \"…\"` under [vars]"
            ),
            "{text}"
        );
    }

    #[test]
    fn unknown_image_lists_known_images() {
        let t = T.replace("${image.backend}", "${image.frontend}");
        let err = render(Path::new("t.json"), &t, &ctx())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown placeholder ${image.frontend}: no image \"frontend\" in the configuration's [images]; known: backend"), "{err}");
    }

    #[test]
    fn placeholder_in_a_key_is_an_error() {
        let t = T.replace("\"memory\": 512", "\"memory\": 512,\n\"${var.MODE}\": 1");
        let err = render(Path::new("t.json"), &t, &ctx())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json:5:1: placeholder ${var.MODE} is in an object key"),
            "{err}"
        );
    }

    #[test]
    fn placeholder_in_a_key_is_an_error_anywhere_on_its_line() {
        // Not at the start of its line, inside a nested object, and next to a literal `$${`.
        let t = T.replace(
            "\"memory\": 512",
            "\"memory\": 512, \"dockerLabels\": {\"$${literal}\": \"x\", \"tier-${var.MODE}\": \"y\"}",
        );
        let err = render(Path::new("t.json"), &t, &ctx())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("placeholder ${var.MODE} is in an object key"),
            "{err}"
        );
        assert!(
            err.starts_with("cannot render the template (1 problem):"),
            "{err}"
        );
        assert!(!err.contains("literal"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_naming_both_lines() {
        let t = T.replace(
            "\"memory\": 512,",
            "\"memory\": 512,\n     \"essential\": true,\n     \"memory\": 256,",
        );
        let err = render(Path::new("t.json"), &t, &ctx())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json:6:6: duplicate key \"memory\" in `containerDefinitions[0]`: first on line 4, again on line 6; JSON keeps only the last value"),
            "{err}"
        );
        // The same name in two different objects is not a duplicate; escapes are decoded.
        let fine = T.replace(
            "\"memory\": 512",
            "\"memory\": 512, \"dockerLabels\": {\"memory\": \"1\"}",
        );
        assert!(render(Path::new("t.json"), &fine, &ctx()).is_ok());
        let escaped = T.replace("\"memory\": 512", "\"memory\": 512, \"m\\u0065mory\": 3");
        let err = render(Path::new("t.json"), &escaped, &ctx())
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key \"memory\""), "{err}");
        let top = format!(
            "{{\"AWSEBDockerrunVersion\": 2,\n\"AWSEBDockerrunVersion\": 2, {}",
            &T[T.find("\"containerDefinitions").unwrap()..]
        );
        let err = render(Path::new("t.json"), &top, &ctx())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("in the top-level object: first on line 1, again on line 2"),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_has_position() {
        let err = render(Path::new("t.json"), "{\n  \"a\": ,\n}", &ctx())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json:2:8: invalid JSON: expected value"),
            "{err}"
        );
    }

    #[test]
    fn wrong_field_type_names_path_and_line() {
        let t = T.replace("\"memory\": 512", "\"memory\": \"512\"");
        let err = render(Path::new("t.json"), &t, &ctx())
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.json:4:"), "{err}");
        assert!(
            err.contains(
                "`containerDefinitions[0].memory`: invalid type: string \"512\", expected u64"
            ),
            "{err}"
        );
    }

    #[test]
    fn image_references_per_target() {
        let built = ImageSpec {
            repository: "antenna".into(),
            tag: None,
            build: Some(crate::config::BuildSpec {
                context: ".".into(),
                dockerfile: None,
                target: None,
                args: Default::default(),
                platform: "linux/amd64".into(),
            }),
            source: None,
        };
        let ext = ImageSpec {
            repository: "ml".into(),
            tag: Some("v2".into()),
            build: None,
            source: None,
        };
        let hosted = ImageSpec {
            repository: "registry.example.org/x/y".into(),
            tag: Some("3".into()),
            build: None,
            source: None,
        };
        assert_eq!(
            image_reference(&built, Target::Aws, Some("r.io"), "v1").unwrap(),
            "r.io/antenna:v1"
        );
        assert_eq!(
            image_reference(&built, Target::Local, None, "v1").unwrap(),
            "antenna:v1"
        );
        assert_eq!(
            image_reference(&ext, Target::Aws, Some("r.io"), "v1").unwrap(),
            "r.io/ml:v2"
        );
        assert_eq!(image_reference(&ext, Target::Aws, None, "v1"), None);
        assert_eq!(
            image_reference(&hosted, Target::Aws, None, "v1").unwrap(),
            "registry.example.org/x/y:3"
        );
    }
}
