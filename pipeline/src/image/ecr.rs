//! ECR's API: registry credentials, repositories, and what a tag points at.

use anyhow::{bail, Context as _, Result};
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::{ImageIdentifier, ImageTagMutability};
use aws_sdk_ecr::Client;
use base64::Engine as _;
use secrecy::SecretString;

use crate::docker::RegistryAuth;

/// Registry credentials from `GetAuthorizationToken`, for `registry`.
///
/// The address is `host` when given (the configured account's ECR host, or the `registry`
/// override), else ECR's `proxyEndpoint`. An expired token is an error unless
/// `lenient_expiry` (a registry override: emulators hand out tokens that expired long ago,
/// and the registry they stand beside decides).
pub async fn authorization(
    ecr: &Client,
    host: Option<&str>,
    lenient_expiry: bool,
) -> Result<RegistryAuth> {
    let out = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", sdk_message(&e)))
        .context("ECR GetAuthorizationToken failed: check the AWS credentials and that they allow ecr:GetAuthorizationToken")?;
    let data = out
        .authorization_data()
        .first()
        .context("ECR GetAuthorizationToken returned no authorization data")?;
    let token = data
        .authorization_token()
        .context("ECR GetAuthorizationToken returned no token")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .context("ECR returned an authorization token that is not base64 of `user:password`")?;
    let (username, password) = decoded
        .split_once(':')
        .context("ECR returned an authorization token without `user:password`")?;
    // In GitHub Actions the registry password is masked in the job's log.
    let actions = crate::github::actions::Actions::from_env();
    actions.mask(password);
    actions.mask(token.trim());
    let proxy = data.proxy_endpoint().unwrap_or_default();
    let registry = match host {
        Some(h) => h.to_string(),
        None => host_of(proxy).context("ECR returned no proxyEndpoint: set `registry` in the configuration (or DEPLOY_REGISTRY)")?,
    };
    if let Some(expires) = data.expires_at() {
        let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        if expires.secs() <= now.secs() {
            if lenient_expiry {
                tracing::warn!(
                    "ECR's authorization token expired at {expires}; using it anyway for the configured registry {registry}"
                );
            } else {
                bail!("ECR returned an authorization token that expired at {expires}: check the machine's clock and the AWS endpoint");
            }
        }
    }
    Ok(RegistryAuth {
        registry,
        username: username.to_string(),
        password: SecretString::from(password.to_string()),
        source: "ECR GetAuthorizationToken".into(),
    })
}

/// `https://host[:port][/...]` → `host[:port]`.
pub fn host_of(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty()).then(|| host.to_string())
}

/// An image in an ECR repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrImage {
    pub digest: Option<String>,
    pub tags: Vec<String>,
}

/// Errors callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("ECR repository {repository:?} does not exist\n  hint: create it, or pass --create-repository")]
    NoRepository { repository: String },
}

/// The image `repository:tag`, or `None` when the tag does not exist.
pub async fn find_tag(ecr: &Client, repository: &str, tag: &str) -> Result<Option<EcrImage>> {
    let out = ecr
        .describe_images()
        .repository_name(repository)
        .image_ids(ImageIdentifier::builder().image_tag(tag).build())
        .send()
        .await;
    match out {
        Ok(out) => Ok(out.image_details().first().map(|d| EcrImage {
            digest: d.image_digest().map(str::to_string),
            tags: d.image_tags().to_vec(),
        })),
        Err(e) => match e.code() {
            Some("ImageNotFoundException") => Ok(None),
            Some("RepositoryNotFoundException") => Err(EcrError::NoRepository {
                repository: repository.to_string(),
            }
            .into()),
            _ => Err(service_error("ecr:DescribeImages", &e))
                .with_context(|| format!("ECR DescribeImages for {repository}:{tag} failed")),
        },
    }
}

/// Checks that `repository` exists; creates it (tag immutability and scan on push on) when
/// `create`.
/// Returns true when it was created.
pub async fn ensure_repository(
    ecr: &Client,
    repository: &str,
    create: bool,
    dry_run: bool,
) -> Result<bool> {
    let out = ecr
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await;
    match out {
        Ok(_) => Ok(false),
        Err(e) if e.code() == Some("RepositoryNotFoundException") => {
            if !create {
                return Err(EcrError::NoRepository {
                    repository: repository.to_string(),
                }
                .into());
            }
            if dry_run {
                tracing::info!(
                    "would create the ECR repository {repository} (tag immutability on)"
                );
                return Ok(true);
            }
            ecr.create_repository()
                .repository_name(repository)
                .image_tag_mutability(ImageTagMutability::Immutable)
                .image_scanning_configuration(
                    aws_sdk_ecr::types::ImageScanningConfiguration::builder()
                        .scan_on_push(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| service_error("ecr:CreateRepository", &e))
                .with_context(|| format!("cannot create the ECR repository {repository}"))?;
            tracing::info!(
                "created the ECR repository {repository} (tag immutability and scan on push on)"
            );
            Ok(true)
        }
        Err(e) => Err(service_error("ecr:DescribeRepositories", &e))
            .with_context(|| format!("ECR DescribeRepositories for {repository} failed")),
    }
}

/// Records `manifest` under `tag` in ECR's API (`PutImage`). ECR accepts this for a
/// manifest whose blobs it has; an identical existing tag is not an error.
pub async fn record(
    ecr: &Client,
    repository: &str,
    tag: &str,
    manifest: &str,
    media_type: &str,
) -> Result<()> {
    let out = ecr
        .put_image()
        .repository_name(repository)
        .image_tag(tag)
        .image_manifest(manifest)
        .image_manifest_media_type(media_type)
        .send()
        .await;
    match out {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ImageAlreadyExistsException") => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{}", sdk_message(&e)))
            .with_context(|| format!("ECR PutImage for {repository}:{tag} failed")),
    }
}

/// The error of a failed ECR call `action`: [`crate::aws::Denied`] when IAM refused it, else
/// the service's message.
fn service_error<E>(
    action: &'static str,
    e: &aws_sdk_ecr::error::SdkError<E, aws_sdk_ecr::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = sdk_message(e);
    if crate::aws::is_denial(e.code()) {
        crate::aws::Denied { action, message }.into()
    } else {
        anyhow::anyhow!("{message}")
    }
}

/// The service's code and message, or the transport error with its causes. An error body the
/// SDK could not read (a proxy's or an emulator's XML page, or an XML denial where the SDK
/// expects JSON) is described by its HTTP status and the `<Code>`/`<Message>` it carries, never
/// left blank.
pub fn sdk_message<E>(
    e: &aws_sdk_ecr::error::SdkError<E, aws_sdk_ecr::config::http::HttpResponse>,
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let raw = e.raw_response();
    let status = raw.map_or(0, |r| r.status().as_u16());
    let body = raw
        .and_then(|r| r.body().bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    let from_body = match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message} (HTTP {status})")),
        (Some(code), None) => Some(format!("{code} (HTTP {status})")),
        _ => None,
    };
    match e.as_service_error() {
        Some(s) if s.code().is_some() || s.message().is_some() => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("")
        ),
        Some(_) => from_body.unwrap_or_else(|| format!("HTTP {status} with no error code")),
        None => from_body.unwrap_or_else(|| {
            let mut s = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(c) = cur {
                s.push_str(": ");
                s.push_str(&c.to_string());
                cur = c.source();
            }
            s
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_endpoint_to_host() {
        assert_eq!(
            host_of("https://123456789012.dkr.ecr.us-west-2.amazonaws.com").as_deref(),
            Some("123456789012.dkr.ecr.us-west-2.amazonaws.com")
        );
        assert_eq!(
            host_of("http://127.0.0.1:5000/").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(host_of(""), None);
    }
}
