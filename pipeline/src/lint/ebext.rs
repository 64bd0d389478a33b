//! Rules for `.ebextensions/*.config` and `.platform/hooks`.

use std::path::Path;

use serde_yaml_ng::Value;

use super::secrets::secret_reason;
use super::*;
use crate::eb::OptionSetting;

/// Top-level keys EB reads from a configuration file.
pub const KNOWN_KEYS: [&str; 11] = [
    "option_settings",
    "packages",
    "groups",
    "users",
    "sources",
    "files",
    "commands",
    "services",
    "container_commands",
    "Resources",
    "Outputs",
];

const ENV_NAMESPACE: &str = "aws:elasticbeanstalk:application:environment";

/// Lints one `.config` file's `text`. `verify_path` is the path the verify stage checks (to
/// compare with `HealthCheckPath`).
pub fn lint_ebextension(file: &Path, text: &str, verify_path: Option<&str>) -> Vec<Finding> {
    let mut out = Vec::new();
    let doc: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            out.push(
                Finding::new(
                    EX_PARSE,
                    file,
                    "",
                    format!("invalid YAML/JSON: {msg}"),
                    "fix the syntax; YAML is indentation-sensitive (use spaces, not tabs)",
                )
                .at(at),
            );
            return out;
        }
    };
    let Value::Mapping(top) = doc else {
        if !doc.is_null() {
            out.push(
                Finding::new(
                    EX_PARSE,
                    file,
                    "",
                    "the file is not a mapping of keys such as option_settings",
                    "start with top-level keys such as `option_settings:`",
                )
                .at((1, 1)),
            );
        }
        return out;
    };
    for (key, value) in &top {
        let Some(key) = key.as_str() else {
            out.push(
                Finding::new(
                    EX_KEYS,
                    file,
                    "",
                    format!("top-level key {key:?} is not a string"),
                    "use one of the known keys",
                )
                .at((1, 1)),
            );
            continue;
        };
        let at = key_position(text, key, 0);
        if !KNOWN_KEYS.contains(&key) {
            out.push(
                Finding::new(
                    EX_KEYS,
                    file,
                    key,
                    format!("unknown top-level key `{key}`"),
                    format!("known keys: {}", KNOWN_KEYS.join(", ")),
                )
                .at(at),
            );
            continue;
        }
        match key {
            "option_settings" => {
                options(file, text, value, verify_path, &mut out);
            }
            "container_commands" => {
                container_commands(file, text, value, &mut out);
                commands_secrets(file, text, key, value, &mut out);
            }
            "commands" => commands_secrets(file, text, key, value, &mut out),
            "files" => files_secrets(file, text, value, &mut out),
            _ => {}
        }
    }
    out
}

/// One option setting, whichever of EB's two shapes it was written in.
struct Setting<'a> {
    namespace: String,
    option: String,
    value: &'a Value,
}

fn options(
    file: &Path,
    text: &str,
    value: &Value,
    verify_path: Option<&str>,
    out: &mut Vec<Finding>,
) -> Vec<OptionSetting> {
    let mut collected = Vec::new();
    let at = key_position(text, "option_settings", 0);
    let shape_hint = "write either `namespace: {OptionName: value}` maps, or a list of `- namespace: …\\n  option_name: …\\n  value: …`";
    let mut settings = Vec::new();
    match value {
        Value::Mapping(ns_map) => {
            for (ns, opts) in ns_map {
                let ns = ns.as_str().unwrap_or_default().to_string();
                match opts {
                    Value::Mapping(opts) => {
                        for (name, v) in opts {
                            settings.push(Setting {
                                namespace: ns.clone(),
                                option: name.as_str().unwrap_or_default().to_string(),
                                value: v,
                            });
                        }
                    }
                    Value::Null => {}
                    _ => out.push(
                        Finding::new(
                            EX_OPTIONS,
                            file,
                            format!("option_settings.{ns}"),
                            format!(
                                "option_settings.{ns} must be a mapping of option names to values"
                            ),
                            shape_hint,
                        )
                        .at(key_position(text, &ns, 0)),
                    ),
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Mapping(m) = item else {
                    out.push(Finding::new(EX_OPTIONS, file, format!("option_settings[{i}]"), format!("option_settings[{i}] must be a mapping with namespace, option_name and value"), shape_hint).at(at));
                    continue;
                };
                let get = |k: &str| m.get(Value::from(k));
                for k in m.keys().filter_map(Value::as_str) {
                    if !["namespace", "option_name", "value", "resource_name"].contains(&k) {
                        out.push(
                            Finding::new(
                                EX_OPTIONS,
                                file,
                                format!("option_settings[{i}].{k}"),
                                format!("option_settings[{i}] has an unknown key `{k}`"),
                                "use namespace, option_name, value (and resource_name)",
                            )
                            .at(key_position(text, k, 0)),
                        );
                    }
                }
                match (get("option_name").and_then(Value::as_str), get("value")) {
                    (Some(name), Some(v)) => settings.push(Setting {
                        namespace: get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or(ENV_NAMESPACE)
                            .to_string(),
                        option: name.to_string(),
                        value: v,
                    }),
                    _ => out.push(
                        Finding::new(
                            EX_OPTIONS,
                            file,
                            format!("option_settings[{i}]"),
                            format!("option_settings[{i}] needs option_name and value"),
                            shape_hint,
                        )
                        .at(at),
                    ),
                }
            }
        }
        _ => out.push(
            Finding::new(
                EX_OPTIONS,
                file,
                "option_settings",
                "option_settings must be a mapping of namespaces or a list of settings",
                shape_hint,
            )
            .at(at),
        ),
    }
    for s in settings {
        let field = format!("option_settings.{}.{}", s.namespace, s.option);
        let pos = key_position(text, &s.option, 0);
        let scalar = match s.value {
            Value::String(v) => Some(v.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null => Some(String::new()),
            _ => None,
        };
        let Some(scalar) = scalar else {
            out.push(
                Finding::new(
                    EX_OPTIONS,
                    file,
                    field,
                    format!(
                        "option {} in {} must be a single value, not a list or mapping",
                        s.option, s.namespace
                    ),
                    "quote the value as one string",
                )
                .at(pos),
            );
            continue;
        };
        collected.push(OptionSetting {
            namespace: s.namespace.clone(),
            name: s.option.clone(),
            value: scalar.clone(),
        });
        if s.namespace == ENV_NAMESPACE {
            if let Some(why) = secret_reason(&s.option, &scalar) {
                out.push(Finding::new(EX_SECRET, file, field.clone(), format!("environment property `{}` looks like a secret ({why}); it would be stored in the bundle", s.option), "remove it from the file and set it on the environment (console or `aws elasticbeanstalk update-environment`), or use a Secrets Manager reference").at(pos).with_secret(scalar.clone()));
            }
        }
        let is_health = (s.option == "HealthCheckPath"
            && s.namespace
                .starts_with("aws:elasticbeanstalk:environment:process"))
            || (s.option == "Application Healthcheck URL"
                && s.namespace == "aws:elasticbeanstalk:application");
        if let (true, Some(expected)) = (is_health, verify_path) {
            if scalar != expected {
                out.push(Finding::new(EX_HEALTH, file, field, format!("{} is {scalar:?} but the verify stage checks {expected:?}", s.option), "use the same path in both, so that EB's health and our verify agree (Antenna: /api/v2/)").at(pos));
            }
        }
    }
    collected
}

/// The well-formed option settings of one `.ebextensions` file, in either of EB's shapes
/// (what the bundle will set on the environment); an unparsable file has none.
pub fn option_settings(text: &str) -> Vec<OptionSetting> {
    let Ok(Value::Mapping(doc)) = serde_yaml_ng::from_str::<Value>(text) else {
        return Vec::new();
    };
    match doc.get(Value::from("option_settings")) {
        Some(v) => options(Path::new(""), text, v, None, &mut Vec::new()),
        None => Vec::new(),
    }
}

fn container_commands(file: &Path, text: &str, value: &Value, out: &mut Vec<Finding>) {
    let Value::Mapping(cmds) = value else {
        return;
    };
    for (name, body) in cmds {
        let name = name.as_str().unwrap_or_default();
        let command = match body {
            Value::Mapping(m) => m
                .get(Value::from("command"))
                .cloned()
                .unwrap_or(Value::Null),
            other => other.clone(),
        };
        let text_of = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Sequence(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let cmd = text_of(&command);
        if cmd.contains("migrate") {
            out.push(Finding::new(EX_MIGRATE, file, format!("container_commands.{name}"), format!("container_commands.{name} runs migrations, but container_commands run before the new version's containers start: it migrates with the old image (or none on a first deploy)"), "move it to an executable .platform/hooks/postdeploy/ script that runs `docker exec <django container> python manage.py migrate --noinput`").at(key_position(text, name, 0)));
        }
    }
}

const TEXT_SECRET_HINT: &str = "read it at run time instead (an EB environment property, or Secrets Manager / SSM Parameter Store), so that it never goes into the bundle uploaded to S3";

/// The text of a scalar YAML value (strings, numbers, booleans), else `None`.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every string in `v` (a command written as a string or a list of arguments).
fn strings_of(v: &Value) -> String {
    match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(scalar_text)
            .collect::<Vec<_>>()
            .join(" "),
        other => scalar_text(other).unwrap_or_default(),
    }
}

/// `commands:` and `container_commands:`: secrets in a command line or in its `env:`.
fn commands_secrets(file: &Path, text: &str, section: &str, value: &Value, out: &mut Vec<Finding>) {
    let Value::Mapping(cmds) = value else {
        return;
    };
    for (name, body) in cmds {
        let name = name.as_str().unwrap_or_default();
        let field = format!("{section}.{name}");
        let at = key_position(text, name, 0);
        let (command, env) = match body {
            Value::Mapping(m) => (
                m.get(Value::from("command"))
                    .map(strings_of)
                    .unwrap_or_default(),
                m.get(Value::from("env")),
            ),
            other => (strings_of(other), None),
        };
        for found in secret_scan(&command) {
            out.push(Finding::new(EX_SECRET_TEXT, file, format!("{field}.command"), format!("{field}: the command holds {} that looks like a secret ({}); it would be stored in the bundle", found.what, found.reason), TEXT_SECRET_HINT).at(at).with_secret(found.value));
        }
        if let Some(Value::Mapping(env)) = env {
            for (var, v) in env {
                let var = var.as_str().unwrap_or_default();
                let Some(v) = scalar_text(v) else { continue };
                let why = secret_reason(var, &v).or_else(|| {
                    super::secrets::url_password(&v)
                        .map(|_| "its value is a URL with a password".to_string())
                });
                if let Some(why) = why {
                    out.push(Finding::new(EX_SECRET_TEXT, file, format!("{field}.env.{var}"), format!("{field}: env `{var}` looks like a secret ({why}); it would be stored in the bundle"), TEXT_SECRET_HINT).at(key_position(text, var, 0)).with_secret(v));
                }
            }
        }
    }
}

/// `files:`: secrets in a file's inline `content`.
fn files_secrets(file: &Path, text: &str, value: &Value, out: &mut Vec<Finding>) {
    let Value::Mapping(files) = value else {
        return;
    };
    for (target, spec) in files {
        let target = target.as_str().unwrap_or_default();
        let Some(content) = spec
            .as_mapping()
            .and_then(|m| m.get(Value::from("content")))
            .and_then(scalar_text)
        else {
            continue;
        };
        let at = key_position(text, target, 0);
        for found in secret_scan(&content) {
            out.push(Finding::new(EX_SECRET_TEXT, file, format!("files.{target}.content"), format!("files.{target}: line {} of its content holds {} that looks like a secret ({}); it would be stored in the bundle", found.line, found.what, found.reason), TEXT_SECRET_HINT).at(at).with_secret(found.value));
        }
    }
}

fn secret_scan(text: &str) -> Vec<super::secrets::TextSecret> {
    super::secrets::scan_text(text)
}

/// Secrets in a bundle file that is not an EB configuration file (a platform hook, a script
/// or data file next to the `.config` files): every line is scanned.
pub fn lint_file_secrets(file: &Path, text: &str) -> Vec<Finding> {
    secret_scan(text)
        .into_iter()
        .map(|found| {
            Finding::new(
                EX_SECRET_TEXT,
                file,
                "",
                format!(
                    "holds {} that looks like a secret ({}); it would be stored in the bundle",
                    found.what, found.reason
                ),
                TEXT_SECRET_HINT,
            )
            .at((found.line, 1))
            .with_secret(found.value)
        })
        .collect()
}

/// Lints the platform hooks under `platform_dir` (`.platform`): every hook must be executable.
pub fn lint_hooks(platform_dir: &Path, files: &[(std::path::PathBuf, u32)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (path, mode) in files {
        let rel = path.strip_prefix(platform_dir).unwrap_or(path);
        let is_hook = rel.starts_with("hooks") || rel.starts_with("confighooks");
        if is_hook && mode & 0o111 == 0 {
            out.push(Finding::new(PL_HOOK, path, "", "this platform hook is not executable, so EB fails the deployment when it tries to run it", format!("chmod +x {} and commit the mode (git update-index --chmod=+x)", path.display())));
        }
    }
    out
}

/// 1-based position of the first `key:` (YAML) or `"key":` (JSON) in `text`, or (0, 0).
fn key_position(text: &str, key: &str, _from_line: usize) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - trimmed.len();
        for candidate in [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ] {
            if trimmed.starts_with(&candidate) {
                return (i + 1, indent + 1);
            }
        }
    }
    (0, 0)
}
