//! Where the lake lives: a local directory (the default, `<data-dir>/lake`) or an S3-compatible
//! bucket, both behind the `object_store` crate so the rest of the tier never knows which; and
//! how much room a filesystem has left ([`disk_space`]), so tiering never takes the last free
//! space of the data directory from producers.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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

impl LakeLocation {
    /// Whether objects put to this lake land on the filesystem holding `data_dir` (a local lake
    /// on the same disk, as the default `<data-dir>/lake` is): then every tiered byte is also
    /// taken from the space producers write to. Unknown (missing directories) counts as yes.
    pub fn shares_filesystem_with(&self, data_dir: &Path) -> bool {
        match self {
            LakeLocation::Local(dir) => match (std::fs::metadata(dir), std::fs::metadata(data_dir))
            {
                (Ok(lake), Ok(data)) => lake.dev() == data.dev(),
                _ => true,
            },
            LakeLocation::S3(_) => false,
        }
    }
}

/// Space of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer may still allocate (`f_bavail`).
    pub available: u64,
    /// Size of the filesystem in bytes.
    pub total: u64,
}

/// The space left on the filesystem holding `path` (statvfs).
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(DiskSpace {
        available: stat.f_bavail.saturating_mul(stat.f_frsize),
        total: stat.f_blocks.saturating_mul(stat.f_frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_of_a_directory_is_within_its_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(
            space.total > 0 && space.available <= space.total,
            "{space:?}"
        );
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn only_a_local_lake_on_the_data_disk_shares_its_space() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LakeLocation::Local(dir.path().join("lake"));
        std::fs::create_dir(dir.path().join("lake")).unwrap();
        assert!(lake.shares_filesystem_with(dir.path()));
        let s3 = LakeLocation::S3(S3Location::default());
        assert!(!s3.shares_filesystem_with(dir.path()));
        // /proc is never the disk a temp dir lives on.
        let proc = LakeLocation::Local(PathBuf::from("/proc"));
        assert!(!proc.shares_filesystem_with(dir.path()));
    }
}
