//! `env pull`: the declaration of what a running environment has today, to paste into
//! `deploy.toml` (the way off properties kept by hand in the console).

use std::fmt::Write as _;

use super::secrets::{declaration_line, secret_name, toml_string};
use super::Running;

/// The `[environments.ENV.properties]` and `[environments.ENV.secrets]` tables for `running`.
/// Plain values that look like secrets are not written: each becomes a secret placeholder
/// with the command that stores its value.
pub fn declaration(application: &str, env: &str, running: &Running) -> String {
    let mut plain = String::new();
    let mut secrets = String::new();
    let mut todo = vec![];
    for (name, value) in &running.plain {
        if crate::lint::secrets::secret_reason(name, value).is_some() {
            let _ = writeln!(
                secrets,
                "{}  # placeholder: store the value first",
                declaration_line(name, &secret_name(application, env, name))
            );
            todo.push(name.clone());
        } else {
            let _ = writeln!(plain, "{name} = {}", toml_string(value));
        }
    }
    for (name, arn) in &running.secrets {
        let line = if arn.starts_with("arn:aws:ssm:") || arn.starts_with("arn:aws-cn:ssm:") {
            let parameter = arn
                .split_once(":parameter")
                .map_or(arn.as_str(), |(_, p)| p);
            format!("{name} = {{ parameter = {} }}", toml_string(parameter))
        } else {
            match split_json_key(arn) {
                Some((secret, key)) => format!(
                    "{name} = {{ secret = {}, key = {} }}",
                    toml_string(secret),
                    toml_string(key)
                ),
                None => declaration_line(name, arn),
            }
        };
        let _ = writeln!(secrets, "{line}");
    }
    let mut out = format!(
        "# Environment properties of {env} as they run today ({} plain, {} secret).\n",
        running.plain.len(),
        running.secrets.len()
    );
    for name in &todo {
        let _ = writeln!(
            out,
            "# {name} holds a secret in plain text: store it with `cargo xtask secrets put {name} --env {env}`, then `env apply` moves it"
        );
    }
    let _ = write!(
        out,
        "\n[environments.{env}.properties]\n{plain}\n[environments.{env}.secrets]\n{secrets}"
    );
    out
}

/// `arn:…:secret:NAME-AbCdEf:KEY::` → (`arn:…:secret:NAME-AbCdEf`, `KEY`).
fn split_json_key(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    // arn, partition, service, region, account, "secret", name, key, stage, version
    if parts.len() >= 8 && parts[5] == "secret" && !parts[7].is_empty() {
        let end = parts[..7].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
        return Some((&arn[..end], parts[7]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_become_placeholders_and_references_stay_references() {
        let running = Running {
            plain: [
                ("USE_DOCKER".to_string(), "yes".to_string()),
                ("DJANGO_SECRET_KEY".to_string(), "hunter2".to_string()),
            ]
            .into(),
            secrets: [
                (
                    "DATABASE_URL".to_string(),
                    "arn:aws:secretsmanager:us-west-2:1:secret:db-AbCdEf:url::".to_string(),
                ),
                (
                    "SENTRY_DSN".to_string(),
                    "arn:aws:ssm:us-west-2:1:parameter/antenna/sentry".to_string(),
                ),
            ]
            .into(),
            managed: None,
            pending: false,
        };
        let text = declaration("antenna", "production", &running);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("USE_DOCKER = \"yes\""));
        assert!(text
            .contains("DJANGO_SECRET_KEY = { secret = \"antenna/production/DJANGO_SECRET_KEY\" }"));
        assert!(text.contains("DATABASE_URL = { secret = \"arn:aws:secretsmanager:us-west-2:1:secret:db-AbCdEf\", key = \"url\" }"), "{text}");
        assert!(text.contains("SENTRY_DSN = { parameter = \"/antenna/sentry\" }"));
        // What it writes parses as the environment's tables.
        let doc: toml::Value = toml::from_str(&text).unwrap();
        assert!(doc["environments"]["production"]["secrets"]["SENTRY_DSN"].is_table());
    }
}
