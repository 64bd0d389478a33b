//! One AWS configuration for every client.
//!
//! Credentials and region come from the standard chain (environment, profile, web identity
//! for GitHub's OIDC, instance metadata). Endpoints can be overridden for tests with the SDK's
//! own variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_ECR`,
//! `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK`, `AWS_ENDPOINT_URL_STS`); S3 then uses path-style
//! addressing, which local emulators need. HTTPS uses rustls with the ring provider.

use aws_config::{BehaviorVersion, Region, SdkConfig};
// Every service's crate re-exports the same smithy error and response types.
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{Config, Target};

/// The error codes AWS services answer when IAM refuses a call.
pub const DENIAL_CODES: [&str; 4] = [
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
];

/// True when `code` (a service error's code) says IAM refused the call.
pub fn is_denial(code: Option<&str>) -> bool {
    code.is_some_and(|c| DENIAL_CODES.contains(&c))
}

/// The service's code and message, or the transport error with its causes. An error body the
/// SDK could not read (a proxy's or an emulator's XML page, or an XML denial where the SDK
/// expects JSON) is described by its HTTP status and the `<Code>`/`<Message>` it carries, never
/// left blank.
pub fn sdk_message<E>(e: &SdkError<E, HttpResponse>) -> String
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

/// Shared AWS clients, built from one [`SdkConfig`].
#[derive(Clone, Debug)]
pub struct Aws {
    pub sdk: SdkConfig,
    /// True when an endpoint override is in effect (tests, emulators).
    pub custom_endpoint: bool,
}

impl Aws {
    /// Loads the configuration for `region` from the environment.
    pub async fn load(region: &str) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .http_client(http)
            .load()
            .await;
        let custom_endpoint =
            std::env::vars().any(|(k, v)| k.starts_with("AWS_ENDPOINT_URL") && !v.is_empty());
        if custom_endpoint {
            tracing::info!("AWS endpoint override in effect (AWS_ENDPOINT_URL*); S3 uses path-style addressing");
        }
        Self {
            sdk,
            custom_endpoint,
        }
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.custom_endpoint)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk)
    }

    pub fn eb(&self) -> aws_sdk_elasticbeanstalk::Client {
        aws_sdk_elasticbeanstalk::Client::new(&self.sdk)
    }

    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk)
    }

    /// The account id of the credentials, from STS `GetCallerIdentity` (20 s at most).
    async fn caller_account(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        let call = self.sts().get_caller_identity().send();
        let who = tokio::time::timeout(STS_TIMEOUT, call)
            .await
            .map_err(|_| anyhow::anyhow!("STS GetCallerIdentity did not answer within {} s", STS_TIMEOUT.as_secs()))
            .and_then(|r| Ok(r?))
            .context("cannot read the AWS account from STS GetCallerIdentity: check the AWS credentials, or set `account` in the configuration (or DEPLOY_ACCOUNT)")?;
        who.account()
            .map(str::to_string)
            .context("STS GetCallerIdentity returned no account")
    }
}

/// What a run without credentials says, once, in place of the SDK's account of every provider
/// it tried.
pub const NO_CREDENTIALS: &str = "no AWS credentials: set AWS_PROFILE (a profile of ~/.aws/config), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; in GitHub Actions, assume a role through OIDC (aws-actions/configure-aws-credentials)";

/// True when `error` comes from the SDK finding no credentials at all.
pub fn lacks_credentials(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("no credentials found in chain")
        || text.contains("no providers in chain provided credentials")
}

/// The account a dry run renders with when the real one cannot be read: the plan still shows
/// every file, with image references under this visible stand-in.
pub const PLAN_ACCOUNT: &str = "ACCOUNT-ID";

/// How long the account lookup may take before rendering goes on without it.
const STS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The one account resolver, for `${account}` in the template: the configuration's `account`
/// (or DEPLOY_ACCOUNT); else, for an AWS environment, the account of the credentials (STS,
/// through `aws` when the caller has a configuration loaded already); `Ok(None)` for a local
/// environment without one.
pub async fn resolve_account(
    config: &Config,
    target: Target,
    aws: Option<&Aws>,
) -> anyhow::Result<Option<String>> {
    if config.account.is_some() || target == Target::Local {
        return Ok(config.account.clone());
    }
    match aws {
        Some(aws) => aws.caller_account().await.map(Some),
        None => Aws::load(&config.region)
            .await
            .caller_account()
            .await
            .map(Some),
    }
}

/// [`resolve_account`] for commands that render without needing the account (render, lint,
/// bundle, preview): `None` when STS cannot answer (rendering then says what to set).
pub async fn account_or_none(config: &Config, target: Target) -> Option<String> {
    match resolve_account(config, target, None).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!("{e:#}");
            None
        }
    }
}
