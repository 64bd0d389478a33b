//! Secrets Manager and SSM Parameter Store: resolving references to the ARNs EB stores, and
//! storing values (`secrets put`, `secrets import`). Values pass through memory only: they are
//! never logged, printed or put in an error.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::Tag;

use super::{Declared, SecretRef};
// The service's code and message; a body the SDK cannot read (an IAM denial some endpoints
// answer in XML) is still described, never "unknown error".
use crate::aws::sdk_message;

/// The Secrets Manager and SSM clients, built from the session's one AWS configuration.
#[derive(Debug, Clone)]
pub struct SecretStores {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ssm: aws_sdk_ssm::Client,
}

impl SecretStores {
    pub fn new(aws: &crate::aws::Aws) -> Self {
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(&aws.sdk),
            ssm: aws_sdk_ssm::Client::new(&aws.sdk),
        }
    }

    /// The value EB's `environmentsecrets` namespace gets for `r`: the secret's full ARN
    /// (with `:KEY::` for a JSON key, the ECS `valueFrom` form) or the parameter's ARN.
    /// Checks that the secret or parameter exists.
    pub async fn resolve(&self, r: &SecretRef) -> Result<String, String> {
        if let Some(id) = &r.secret {
            let out = self
                .secrets
                .describe_secret()
                .secret_id(id)
                .send()
                .await
                .map_err(|e| match e.code() {
                    Some("ResourceNotFoundException") => format!("no secret {id:?} in Secrets Manager: store it with `cargo xtask secrets put`"),
                    _ => format!("cannot describe the secret {id:?}: {} (the credentials need secretsmanager:DescribeSecret)", sdk_message(&e)),
                })?;
            let arn = out
                .arn()
                .ok_or_else(|| format!("Secrets Manager returned no ARN for {id:?}"))?;
            return Ok(match &r.key {
                Some(key) => format!("{arn}:{key}::"),
                None => arn.to_string(),
            });
        }
        if let Some(name) = &r.parameter {
            let out = self
                .ssm
                .get_parameter()
                .name(name)
                .with_decryption(false)
                .send()
                .await
                .map_err(|e| match aws_sdk_ssm::error::ProvideErrorMetadata::code(&e) {
                    Some("ParameterNotFound") => format!("no parameter {name:?} in SSM Parameter Store: create it (aws ssm put-parameter --type SecureString)"),
                    _ => format!("cannot read the parameter {name:?}: {} (the credentials need ssm:GetParameter)", sdk_message(&e)),
                })?;
            return out
                .parameter()
                .and_then(|p| p.arn())
                .map(str::to_string)
                .ok_or_else(|| format!("SSM returned no ARN for {name:?}"));
        }
        Err("empty reference".into())
    }

    /// Resolves every secret of `declared` (one call each).
    pub async fn resolve_all(
        &self,
        declared: &Declared,
    ) -> BTreeMap<String, Result<String, String>> {
        let mut out = BTreeMap::new();
        for (name, r) in &declared.secrets {
            out.insert(name.clone(), self.resolve(r).await);
        }
        out
    }

    /// Creates the secret `name` with `value`, or stores `value` as its new version; tags it
    /// with the application and environment. The value is never part of an error.
    pub async fn put(&self, name: &str, value: &str, tags: &[(&str, &str)]) -> Result<Stored> {
        let tags: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect();
        let created = self
            .secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .set_tags(Some(tags.clone()))
            .description("Managed by cargo xtask secrets")
            .send()
            .await;
        match created {
            Ok(out) => Ok(Stored {
                name: name.to_string(),
                arn: out.arn().unwrap_or_default().to_string(),
                created: true,
            }),
            Err(e) if e.code() == Some("ResourceExistsException") => {
                let out = self
                    .secrets
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", sdk_message(&e)))
                    .with_context(|| format!("cannot store a new value of the secret {name:?} (the credentials need secretsmanager:PutSecretValue)"))?;
                self.secrets
                    .tag_resource()
                    .secret_id(name)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", sdk_message(&e)))
                    .with_context(|| format!("cannot tag the secret {name:?} (the credentials need secretsmanager:TagResource)"))?;
                Ok(Stored {
                    name: name.to_string(),
                    arn: out.arn().unwrap_or_default().to_string(),
                    created: false,
                })
            }
            Err(e) => Err(anyhow::anyhow!("{}", sdk_message(&e)))
                .with_context(|| format!("cannot create the secret {name:?} (the credentials need secretsmanager:CreateSecret and secretsmanager:TagResource)")),
        }
    }
}

/// A secret stored by [`SecretStores::put`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    pub name: String,
    pub arn: String,
    /// False when the secret existed and got a new version.
    pub created: bool,
}

/// The secret name `secrets put` uses for a property: `<application>/<environment>/<NAME>`.
pub fn secret_name(application: &str, environment: &str, property: &str) -> String {
    format!("{application}/{environment}/{property}")
}

/// The `deploy.toml` line that declares `property` as the secret `secret`.
pub fn declaration_line(property: &str, secret: &str) -> String {
    format!("{property} = {{ secret = {} }}", toml_string(secret))
}

/// `s` as a TOML basic string.
pub fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}
