//! Upload the bundle to S3 at `<application>/<version-label>.zip`, once.
//!
//! The object carries the bundle's sha256 as metadata (`x-amz-meta-sha256`): a re-run finds
//! the same key with the same sha256 and skips the upload; the same key with other content is
//! an error (a label names one bundle forever).

use std::path::Path;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::{Eb, EbError};

/// A failed upload: which bundle, which S3 object, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot read the bundle {path}: run the bundle stage first")]
    NoBundle {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the bundle {path} is {size} bytes, over Elastic Beanstalk's 500 MB limit: add large files to .ebignore")]
    TooLarge { path: String, size: u64 },
    #[error("{url} already exists with other content (sha256 {theirs}, this bundle {ours}): a version label names one bundle; \
             rebuild the bundle (its label changes with its content) or delete the object if it is a leftover")]
    OtherContent {
        url: String,
        theirs: String,
        ours: String,
    },
    #[error("cannot check {url}: check the bucket name (`bucket` in deploy.toml or DEPLOY_BUCKET) and the credentials' s3:GetObject permission")]
    Check {
        url: String,
        #[source]
        source: S3Message,
    },
    #[error("cannot read the bundle {path}")]
    Read {
        path: String,
        #[source]
        source: aws_sdk_s3::primitives::ByteStreamError,
    },
    #[error("cannot upload {path} to {url}: check that the bucket exists in the configured region and the credentials allow s3:PutObject")]
    Put {
        path: String,
        url: String,
        #[source]
        source: S3Message,
    },
    #[error("cannot get Elastic Beanstalk's S3 storage location: set `bucket` for the environment in deploy.toml (or DEPLOY_BUCKET), or allow elasticbeanstalk:CreateStorageLocation")]
    StorageLocation {
        #[source]
        source: EbError,
    },
    #[error(
        "CreateStorageLocation returned no bucket: set `bucket` for the environment in deploy.toml"
    )]
    NoStorageBucket,
    /// Looking up the existing version failed.
    #[error(transparent)]
    Version(#[from] anyhow::Error),
}

/// An S3 SDK error as one line with its causes (the SDK's own `Display` says only "service error").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct S3Message(String);

impl S3Message {
    fn of<E: std::error::Error>(e: E) -> Self {
        Self(DisplayErrorContext(e).to_string())
    }
}

type Result<T, E = UploadError> = std::result::Result<T, E>;

/// EB's limit on a source bundle.
pub const MAX_BUNDLE_BYTES: u64 = 500 * 1024 * 1024;

/// The metadata key that holds the bundle's sha256.
pub const SHA256_METADATA: &str = "sha256";

#[derive(Debug, Clone)]
pub struct UploadRequest<'a> {
    /// The configured bucket; else EB's storage location (from the existing version, else
    /// `CreateStorageLocation`).
    pub bucket: Option<&'a str>,
    pub application: &'a str,
    pub label: &'a str,
    pub path: &'a Path,
    pub sha256: &'a str,
    pub size: u64,
    pub dry_run: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Uploaded {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// True when the object was already there with the same sha256.
    pub skipped: bool,
}

impl Uploaded {
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// The S3 key of a version's bundle.
pub fn bundle_key(application: &str, label: &str) -> String {
    format!("{application}/{label}.zip")
}

/// Uploads the bundle unless the same content is already at its key.
pub async fn upload(s3: &aws_sdk_s3::Client, eb: &Eb, req: &UploadRequest<'_>) -> Result<Uploaded> {
    // A dry run's bundle stage computes the bundle without writing it.
    let size = if req.dry_run {
        req.size
    } else {
        std::fs::metadata(req.path)
            .map_err(|source| UploadError::NoBundle {
                path: req.path.display().to_string(),
                source,
            })?
            .len()
    };
    if size > MAX_BUNDLE_BYTES {
        return Err(UploadError::TooLarge {
            path: req.path.display().to_string(),
            size,
        });
    }
    let key = bundle_key(req.application, req.label);
    let bucket = match req.bucket {
        Some(b) => b.to_string(),
        None => storage_bucket(eb, req.application, req.label, req.dry_run).await?,
    };
    let url = format!("s3://{bucket}/{key}");

    match s3.head_object().bucket(&bucket).key(&key).send().await {
        Ok(head) => {
            let theirs = head
                .metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .map(String::as_str);
            if theirs == Some(req.sha256) {
                tracing::info!(
                    "upload: {url} already holds this bundle (sha256 {}); skipped",
                    short(req.sha256)
                );
                return Ok(Uploaded {
                    bucket,
                    key,
                    size,
                    skipped: true,
                });
            }
            return Err(UploadError::OtherContent {
                url,
                theirs: theirs.map_or("unknown".to_string(), |s| short(s).to_string()),
                ours: short(req.sha256).to_string(),
            });
        }
        Err(e) => {
            let not_found = e.as_service_error().is_some_and(|se| se.is_not_found());
            // Without s3:ListBucket (which the deploy role does not need), S3 answers a
            // HeadObject for a missing key with 403, not 404: the object is not there for us
            // to compare, so upload it (a PutObject the role may not make fails clearly).
            let forbidden = e.raw_response().is_some_and(|r| r.status().as_u16() == 403);
            if forbidden {
                tracing::debug!(
                    "upload: HeadObject {url} answered 403 (no s3:ListBucket): uploading"
                );
            } else if !not_found {
                return Err(UploadError::Check {
                    url,
                    source: S3Message::of(e),
                });
            }
        }
    }
    if req.dry_run {
        tracing::info!(
            "upload: would upload {} ({size} bytes) to {url}",
            req.path.display()
        );
        return Ok(Uploaded {
            bucket,
            key,
            size,
            skipped: false,
        });
    }
    let body = ByteStream::from_path(req.path)
        .await
        .map_err(|source| UploadError::Read {
            path: req.path.display().to_string(),
            source,
        })?;
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .body(body)
        .content_type("application/zip")
        .metadata(SHA256_METADATA, req.sha256)
        .send()
        .await
        .map_err(|e| UploadError::Put {
            path: req.path.display().to_string(),
            url: url.clone(),
            source: S3Message::of(e),
        })?;
    tracing::info!("upload: {} ({size} bytes) → {url}", req.path.display());
    Ok(Uploaded {
        bucket,
        key,
        size,
        skipped: false,
    })
}

/// The bucket for an unconfigured environment: the bucket of the version if it already exists
/// (a re-run makes no call that creates anything), else EB's storage location.
async fn storage_bucket(eb: &Eb, application: &str, label: &str, dry_run: bool) -> Result<String> {
    if let Some(existing) = super::version::describe(eb, application, label).await? {
        if let Some(b) = existing.source_bundle().and_then(|s| s.s3_bucket()) {
            return Ok(b.to_string());
        }
    }
    if dry_run {
        return Ok("<EB storage location>".to_string());
    }
    let out = eb
        .call("CreateStorageLocation", application, |c| {
            c.create_storage_location().send()
        })
        .await
        .map_err(|source| UploadError::StorageLocation { source })?;
    out.s3_bucket()
        .map(str::to_string)
        .ok_or(UploadError::NoStorageBucket)
}

pub(crate) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
