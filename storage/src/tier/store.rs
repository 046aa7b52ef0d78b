//! Where the lake lives: a local directory (the default, `<data-dir>/lake`) or an S3-compatible
//! bucket, both behind the `object_store` crate so the rest of the tier never knows which.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use crate::tier::TierError;

/// An S3-compatible bucket. Fields left `None` come from the usual `AWS_*` environment
/// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix inside the bucket, e.g. `inlet/prod` (empty: the bucket's root).
    pub prefix: String,
    /// `http(s)://host:port` of a non-AWS store (MinIO, Ceph, moto, ...).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`); most self-hosted stores need it.
    pub path_style: bool,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
}

/// Where tiered data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeLocation {
    Local(PathBuf),
    S3(S3Location),
}

impl std::fmt::Display for LakeLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LakeLocation::Local(dir) => write!(f, "{}", dir.display()),
            LakeLocation::S3(s3) if s3.prefix.is_empty() => write!(f, "s3://{}", s3.bucket),
            LakeLocation::S3(s3) => write!(f, "s3://{}/{}", s3.bucket, s3.prefix),
        }
    }
}

impl LakeLocation {
    /// Opens the store; a local directory is created if missing.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, TierError> {
        match self {
            LakeLocation::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| TierError::Io {
                    context: format!("creating lake directory {}", dir.display()),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(dir)?;
                Ok(Arc::new(store))
            }
            LakeLocation::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_virtual_hosted_style_request(!s3.path_style)
                    .with_allow_http(s3.allow_http);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let store = builder.build()?;
                let prefix = s3.prefix.trim_matches('/');
                if prefix.is_empty() {
                    Ok(Arc::new(store))
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix)))
                }
            }
        }
    }
}
