//! Environment properties and secrets as code.
//!
//! `[environments.NAME.properties]` declares plain properties (name → value, `${var.X}`
//! allowed) and `[environments.NAME.secrets]` properties whose value lives in Secrets Manager
//! or SSM Parameter Store. They become Elastic Beanstalk option settings: plain ones in
//! [`ENVIRONMENT`], references (ARNs) in [`ENVIRONMENT_SECRETS`], which EB resolves on the
//! instances (see docs/environment-properties.md for why this namespace and what the roles
//! need).
//!
//! [`diff`] compares the declaration with what runs (`DescribeConfigurationSettings`);
//! [`apply`] sends the difference in one `UpdateEnvironment` and waits like a deploy. Values
//! that look like secrets are never shown: only a short hash ([`fingerprint`]).

pub mod apply;
pub mod diff;
pub mod dotenv;
pub mod pull;
pub mod secrets;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use apply::{apply, ApplyReport, ApplyRequest};
pub use diff::{diff, Change, DiffReport, PropertyDiff, Running};

/// EB's namespace of plain environment properties.
pub const ENVIRONMENT: &str = "aws:elasticbeanstalk:application:environment";
/// EB's namespace of environment properties resolved from Secrets Manager or SSM.
pub const ENVIRONMENT_SECRETS: &str = "aws:elasticbeanstalk:application:environmentsecrets";
/// The property in which `env apply` records the names it manages (comma-separated), so that
/// a name deleted from `deploy.toml` is removed while properties set elsewhere are kept.
pub const MANAGED_RECORD: &str = "DEPLOY_MANAGED_PROPERTIES";
/// EB's limit on the total size of an environment's properties (names and values).
pub const EB_PROPERTIES_LIMIT: usize = 4096;

/// Where a secret property's value lives (`[environments.NAME.secrets]`).
///
/// ```toml fragment
/// [environments.staging.secrets]
/// DJANGO_SECRET_KEY = { secret = "antenna/staging/DJANGO_SECRET_KEY" }
/// DATABASE_URL = { secret = "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna-db-AbCdEf", key = "url" }
/// SENTRY_DSN = { parameter = "/antenna/staging/sentry-dsn" }
/// ```
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// A Secrets Manager secret: its name or full ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// With `secret`: the key of a JSON secret whose value the property gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// An SSM Parameter Store parameter: its name (`/antenna/production/x`) or ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

impl SecretRef {
    /// What it points at, for people (`secret antenna/x`, `secret antenna/x key url`,
    /// `parameter /a/b`): names only, never a value.
    pub fn describe(&self) -> String {
        match (&self.secret, &self.key, &self.parameter) {
            (Some(s), Some(k), _) => format!("secret {s} key {k}"),
            (Some(s), None, _) => format!("secret {s}"),
            (None, _, Some(p)) => format!("parameter {p}"),
            _ => "nothing".into(),
        }
    }
}

/// A short, one-way fingerprint of a value (`sha256:1a2b3c4d`): enough to tell two values
/// apart in a diff, never enough to recover either.
pub fn fingerprint(value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..8])
}

/// How a value is shown: itself, or its fingerprint when it looks like a secret.
pub fn shown(name: &str, value: &str) -> String {
    if crate::lint::secrets::secret_reason(name, value).is_some() {
        fingerprint(value)
    } else {
        value.to_string()
    }
}

/// True for names a container and a shell accept: a letter or `_`, then letters, digits, `_`.
pub fn valid_property_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces `${var.NAME}` in `value` with `vars`; an unknown name is an error.
pub fn substitute(value: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${var.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed placeholder in {value:?}"));
        };
        let name = &after[..end];
        match vars.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(format!(
                    "unknown placeholder ${{var.{name}}}: add `{name} = \"…\"` under [vars]"
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks an environment's `properties` and `secrets`; the message names the key at fault.
pub fn validate(
    env: &str,
    properties: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretRef>,
    vars: &BTreeMap<String, String>,
) -> Result<(), String> {
    for (name, value) in properties {
        let key = format!("environments.{env}.properties.{name}");
        check_name(&key, name)?;
        if secrets.contains_key(name) {
            return Err(format!("{key}: {name} is declared in both [environments.{env}.properties] and [environments.{env}.secrets]: keep one"));
        }
        let value = substitute(value, vars).map_err(|e| format!("{key}: {e}"))?;
        if let Some(reason) = crate::lint::secrets::secret_reason(name, &value) {
            return Err(format!(
                "{key} looks like a secret ({reason}): a plain property is visible to anyone who can read the environment. Move it to [environments.{env}.secrets]: store the value with `cargo xtask secrets put {name} --env {env}` (it reads the value from stdin) and declare `{name} = {{ secret = \"…\" }}`"
            ));
        }
    }
    for (name, r) in secrets {
        let key = format!("environments.{env}.secrets.{name}");
        check_name(&key, name)?;
        let blank = |s: &Option<String>| s.as_deref().is_some_and(|v| v.trim().is_empty());
        match (&r.secret, &r.parameter) {
            (Some(_), Some(_)) => return Err(format!("{key}: give either `secret` (Secrets Manager) or `parameter` (SSM Parameter Store), not both")),
            (None, None) => return Err(format!("{key}: give `secret = \"NAME or ARN\"` (Secrets Manager) or `parameter = \"/NAME\"` (SSM Parameter Store)")),
            _ => {}
        }
        if blank(&r.secret) || blank(&r.parameter) || blank(&r.key) {
            return Err(format!("{key}: empty reference"));
        }
        if r.key.is_some() && r.parameter.is_some() {
            return Err(format!("{key}: `key` picks a field of a JSON secret in Secrets Manager; SSM parameters have none: remove `key`"));
        }
    }
    Ok(())
}

fn check_name(key: &str, name: &str) -> Result<(), String> {
    if !valid_property_name(name) {
        return Err(format!("{key}: {name:?} is not a valid property name: use letters, digits and '_', not starting with a digit"));
    }
    if name == MANAGED_RECORD {
        return Err(format!(
            "{key}: {MANAGED_RECORD} is reserved: `env apply` records the names it manages in it"
        ));
    }
    Ok(())
}

/// An environment's declaration, with `${var.X}` resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub properties: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretRef>,
}

impl Declared {
    /// The declaration of `env` (validated by `Config::parse`, so substitution cannot fail
    /// there; an error here still says where).
    pub fn of(config: &crate::config::Config, env: &str) -> anyhow::Result<Self> {
        let spec = config.environment(env)?;
        let vars = config.vars_for(spec);
        let mut properties = BTreeMap::new();
        for (name, value) in &spec.properties {
            let v = substitute(value, &vars).map_err(|e| {
                anyhow::anyhow!(
                    "{}: environments.{env}.properties.{name}: {e}",
                    config.path.display()
                )
            })?;
            properties.insert(name.clone(), v);
        }
        Ok(Self {
            properties,
            secrets: spec.secrets.clone(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.properties.is_empty() && self.secrets.is_empty()
    }

    /// Every declared name.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.properties.keys().chain(self.secrets.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(items: &[(&str, SecretRef)]) -> BTreeMap<String, SecretRef> {
        items
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect()
    }

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            secret: Some(name.into()),
            key: None,
            parameter: None,
        }
    }

    #[test]
    fn plain_values_that_look_secret_are_refused_with_the_way_out() {
        let vars = BTreeMap::from([("PW".to_string(), "hunter2".to_string())]);
        let props = BTreeMap::from([(
            "DATABASE_URL".to_string(),
            "postgres://u:${var.PW}@db/x".to_string(),
        )]);
        let err = validate("production", &props, &BTreeMap::new(), &vars).unwrap_err();
        assert!(err.starts_with("environments.production.properties.DATABASE_URL looks like a secret (its value is a URL with a password)"), "{err}");
        assert!(err.contains("cargo xtask secrets put DATABASE_URL --env production"));
        assert!(!err.contains("hunter2"), "{err}");
        let props = BTreeMap::from([("DJANGO_SECRET_KEY".to_string(), "abc".to_string())]);
        assert!(validate("p", &props, &BTreeMap::new(), &vars).is_err());
        let props = BTreeMap::from([("USE_DOCKER".to_string(), "yes".to_string())]);
        assert!(validate("p", &props, &BTreeMap::new(), &vars).is_ok());
    }

    #[test]
    fn references_are_strict() {
        let none = BTreeMap::new();
        let both = SecretRef {
            secret: Some("a".into()),
            key: None,
            parameter: Some("/b".into()),
        };
        let err = validate("p", &none, &refs(&[("X", both)]), &none).unwrap_err();
        assert!(err.contains("not both"), "{err}");
        let key_on_param = SecretRef {
            secret: None,
            key: Some("k".into()),
            parameter: Some("/b".into()),
        };
        assert!(validate("p", &none, &refs(&[("X", key_on_param)]), &none)
            .unwrap_err()
            .contains("remove `key`"));
        let dup = BTreeMap::from([("X".to_string(), "1".to_string())]);
        assert!(validate("p", &dup, &refs(&[("X", secret("s"))]), &none)
            .unwrap_err()
            .contains("keep one"));
        assert!(validate("p", &none, &refs(&[("1X", secret("s"))]), &none).is_err());
        assert!(validate("p", &none, &refs(&[(MANAGED_RECORD, secret("s"))]), &none).is_err());
    }

    #[test]
    fn substitution_and_fingerprints() {
        let vars = BTreeMap::from([("HOST".to_string(), "example.org".to_string())]);
        assert_eq!(
            substitute("api.${var.HOST},${var.HOST}", &vars).unwrap(),
            "api.example.org,example.org"
        );
        assert!(substitute("${var.NOPE}", &vars)
            .unwrap_err()
            .contains("NOPE"));
        let f = fingerprint("hunter2");
        assert!(f.starts_with("sha256:") && f.len() == 15);
        assert_ne!(f, fingerprint("hunter3"));
        assert_eq!(shown("DJANGO_SECRET_KEY", "hunter2"), f);
        assert_eq!(shown("USE_DOCKER", "yes"), "yes");
    }
}
