//! The lake extent checkpoint: which offsets the lake holds for a log, kept in the partition
//! directory (`<dir>/lake-extent`, one line `start end`). It lets a restarted broker report the
//! lake's first offset, and lets local retention keep its bound, before the lake is reachable.

use std::io::Write;
use std::path::Path;

/// Offsets `start..end` are in the lake (`start == end`: nothing is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LakeExtent {
    pub start: i64,
    pub end: i64,
}

pub const EXTENT_FILE: &str = "lake-extent";

impl LakeExtent {
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Reads the checkpoint; a missing or unreadable one counts as an empty lake (the tiering
    /// task rewrites it from the manifest on its first pass).
    pub fn read(dir: &Path) -> LakeExtent {
        let text = std::fs::read_to_string(dir.join(EXTENT_FILE)).unwrap_or_default();
        let mut fields = text.split_whitespace().map(str::parse::<i64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(start)), Some(Ok(end))) if start <= end => LakeExtent { start, end },
            _ => LakeExtent::default(),
        }
    }

    /// Replaces the checkpoint (temp file, fsync, rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{EXTENT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{} {}", self.start, self.end)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(EXTENT_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LakeExtent::read(dir.path()).is_empty());
        let extent = LakeExtent { start: 5, end: 90 };
        extent.write(dir.path()).unwrap();
        assert_eq!(LakeExtent::read(dir.path()), extent);
        std::fs::write(dir.path().join(EXTENT_FILE), "9 x").unwrap();
        assert_eq!(LakeExtent::read(dir.path()), LakeExtent::default());
    }
}
