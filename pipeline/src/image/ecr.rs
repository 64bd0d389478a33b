//! ECR's API: registry credentials, repositories, and what a tag points at.
//!
//! Every call returns [`EcrError`], classified by the SDK error's code and kind: callers
//! branch on its variants (a missing repository, a denial), never on its text.

use aws_sdk_ecr::config::http::HttpResponse;
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{ImageIdentifier, ImageTagMutability};
use aws_sdk_ecr::Client;
use base64::Engine as _;
use secrecy::SecretString;

use crate::aws::sdk_message;
use crate::docker::RegistryAuth;

/// A failed ECR call, typed by what callers decide on. Each variant's text is what the user
/// reads: what failed, then what ECR (or the transport) said.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    /// `RepositoryNotFoundException` (and no `--create-repository`).
    #[error("ECR repository {repository:?} does not exist\n  hint: create it, or pass --create-repository")]
    NoRepository { repository: String },
    /// IAM refused `action` (one of [`crate::aws::DENIAL_CODES`]).
    #[error("{what}: {message}")]
    Denied {
        /// `ecr:Action`, as in an IAM policy.
        action: &'static str,
        what: String,
        message: String,
    },
    /// Throttled or a 5xx after the SDK's retries, or no usable answer (connection refused or
    /// reset, timeout, an answer that could not be read).
    #[error("{what}: {message}")]
    Unavailable {
        action: &'static str,
        what: String,
        message: String,
    },
    /// Any other error: ECR's code when it answered, none when the SDK could not send the
    /// request (no credentials, no region).
    #[error("{what}: {message}")]
    Service {
        action: &'static str,
        what: String,
        code: Option<String>,
        message: String,
    },
    /// `GetAuthorizationToken` answered something that cannot be used.
    #[error("{0}")]
    Unusable(&'static str),
    #[error("ECR returned an authorization token that expired at {at}: check the machine's clock and the AWS endpoint")]
    Expired { at: String },
}

/// ECR error codes that mean "slow down".
const THROTTLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
];

impl EcrError {
    /// The failure `e` of the call `action` (`what` names it for the user), by its code and
    /// kind.
    fn of<E>(action: &'static str, what: String, e: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let message = sdk_message(e);
        match e {
            SdkError::ServiceError(se) if crate::aws::is_denial(se.err().code()) => {
                EcrError::Denied {
                    action,
                    what,
                    message,
                }
            }
            SdkError::ServiceError(se)
                if se.raw().status().is_server_error()
                    || se.err().code().is_some_and(|c| THROTTLE_CODES.contains(&c)) =>
            {
                EcrError::Unavailable {
                    action,
                    what,
                    message,
                }
            }
            SdkError::ServiceError(se) => EcrError::Service {
                action,
                what,
                code: se.err().code().map(str::to_string),
                message,
            },
            SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => EcrError::Unavailable {
                action,
                what,
                message,
            },
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => EcrError::Unavailable {
                action,
                what,
                message,
            },
            _ => EcrError::Service {
                action,
                what,
                code: None,
                message,
            },
        }
    }
}

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
) -> Result<RegistryAuth, EcrError> {
    let out = ecr.get_authorization_token().send().await.map_err(|e| {
        EcrError::of(
            "ecr:GetAuthorizationToken",
            "ECR GetAuthorizationToken failed: check the AWS credentials and that they allow ecr:GetAuthorizationToken".into(),
            &e,
        )
    })?;
    let data = out.authorization_data().first().ok_or(EcrError::Unusable(
        "ECR GetAuthorizationToken returned no authorization data",
    ))?;
    let token = data.authorization_token().ok_or(EcrError::Unusable(
        "ECR GetAuthorizationToken returned no token",
    ))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(EcrError::Unusable(
            "ECR returned an authorization token that is not base64 of `user:password`",
        ))?;
    let (username, password) = decoded.split_once(':').ok_or(EcrError::Unusable(
        "ECR returned an authorization token without `user:password`",
    ))?;
    // In GitHub Actions the registry password is masked in the job's log.
    let actions = crate::github::actions::Actions::from_env();
    actions.mask(password);
    actions.mask(token.trim());
    let proxy = data.proxy_endpoint().unwrap_or_default();
    let registry = match host {
        Some(h) => h.to_string(),
        None => host_of(proxy).ok_or(EcrError::Unusable("ECR returned no proxyEndpoint: set `registry` in the configuration (or DEPLOY_REGISTRY)"))?,
    };
    if let Some(expires) = data.expires_at() {
        let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        if expires.secs() <= now.secs() {
            if lenient_expiry {
                tracing::warn!(
                    "ECR's authorization token expired at {expires}; using it anyway for the configured registry {registry}"
                );
            } else {
                return Err(EcrError::Expired {
                    at: expires.to_string(),
                });
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

/// The image `repository:tag`, or `None` when the tag does not exist.
pub async fn find_tag(
    ecr: &Client,
    repository: &str,
    tag: &str,
) -> Result<Option<EcrImage>, EcrError> {
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
            }),
            _ => Err(EcrError::of(
                "ecr:DescribeImages",
                format!("ECR DescribeImages for {repository}:{tag} failed"),
                &e,
            )),
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
) -> Result<bool, EcrError> {
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
                });
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
                .map_err(|e| {
                    EcrError::of(
                        "ecr:CreateRepository",
                        format!("cannot create the ECR repository {repository}"),
                        &e,
                    )
                })?;
            tracing::info!(
                "created the ECR repository {repository} (tag immutability and scan on push on)"
            );
            Ok(true)
        }
        Err(e) => Err(EcrError::of(
            "ecr:DescribeRepositories",
            format!("ECR DescribeRepositories for {repository} failed"),
            &e,
        )),
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
) -> Result<(), EcrError> {
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
        Err(e) => Err(EcrError::of(
            "ecr:PutImage",
            format!("ECR PutImage for {repository}:{tag} failed"),
            &e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_ecr::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_ecr::operation::describe_images::DescribeImagesError;

    /// `EcrError::of` for DescribeImages failing with `e`.
    fn of(e: SdkError<DescribeImagesError, HttpResponse>) -> EcrError {
        EcrError::of(
            "ecr:DescribeImages",
            "ECR DescribeImages for r:t failed".into(),
            &e,
        )
    }

    /// ECR's answer `status` with the error `code`.
    fn answered(status: u16, code: &str) -> EcrError {
        let err = DescribeImagesError::generic(
            ErrorMetadata::builder()
                .code(code)
                .message("said so")
                .build(),
        );
        let raw = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        of(SdkError::service_error(err, raw))
    }

    #[test]
    fn errors_are_told_apart_by_code_and_kind() {
        let denied = answered(400, "AccessDeniedException");
        assert!(matches!(
            denied,
            EcrError::Denied {
                action: "ecr:DescribeImages",
                ..
            }
        ));
        assert_eq!(
            denied.to_string(),
            "ECR DescribeImages for r:t failed: AccessDeniedException: said so"
        );
        assert!(matches!(
            answered(400, "ThrottlingException"),
            EcrError::Unavailable { .. }
        ));
        assert!(matches!(
            answered(503, "ServiceUnavailableException"),
            EcrError::Unavailable { .. }
        ));
        let other = answered(400, "InvalidParameterException");
        assert!(
            matches!(&other, EcrError::Service { code: Some(c), .. } if c == "InvalidParameterException"),
            "{other:?}"
        );
        // No answer: the connection failed; or the request was never sent (no credentials).
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            of(SdkError::dispatch_failure(ConnectorError::io(
                refused.into()
            ))),
            EcrError::Unavailable { .. }
        ));
        let unsigned = ConnectorError::other("no credentials".into(), None);
        assert!(matches!(
            of(SdkError::dispatch_failure(unsigned)),
            EcrError::Service { code: None, .. }
        ));
    }

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
