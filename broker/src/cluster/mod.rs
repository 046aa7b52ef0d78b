//! Cluster state as this broker knows it: its identity, the topics and partitions it hosts and
//! the producer ids it hands out. With one broker it leads every partition; replication will add
//! followers, leader epochs and ISR tracking here.

pub mod partition;
pub mod producer_ids;
pub mod topic_config;
pub mod topics;

use std::path::Path;

/// The cluster id, created once and kept in `<data_dir>/cluster-id`.
pub fn load_or_create_cluster_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("cluster-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&path, &id)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// Replaces `<data_dir>/cluster-id` (the cluster's id, taken from the metadata log).
pub fn store_cluster_id(data_dir: &Path, id: &str) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join("cluster-id");
    let tmp = data_dir.join("cluster-id.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(id.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)
}
