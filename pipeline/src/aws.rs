//! One AWS configuration for every client.
//!
//! Credentials and region come from the standard chain (environment, profile, web identity
//! for GitHub's OIDC, instance metadata). Endpoints can be overridden for tests with the SDK's
//! own variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_ECR`,
//! `AWS_ENDPOINT_URL_ELASTIC_BEANSTALK`, `AWS_ENDPOINT_URL_STS`); S3 then uses path-style
//! addressing, which local emulators need. HTTPS uses rustls with the ring provider.

use aws_config::{BehaviorVersion, Region, SdkConfig};

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

    /// The account id: `configured` if given, else STS `GetCallerIdentity`.
    pub async fn account(&self, configured: Option<&str>) -> anyhow::Result<String> {
        use anyhow::Context;
        if let Some(a) = configured {
            return Ok(a.to_string());
        }
        let who = self
            .sts()
            .get_caller_identity()
            .send()
            .await
            .context("cannot read the AWS account from STS GetCallerIdentity: check the AWS credentials, or set `account` in the configuration (or DEPLOY_ACCOUNT)")?;
        who.account()
            .map(str::to_string)
            .context("STS GetCallerIdentity returned no account")
    }
}
