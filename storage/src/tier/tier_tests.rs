//! Tiering a real log into a real local-directory lake and reading it back.

use std::sync::Arc;

use inlet_protocol::batch::TestBatchBuilder;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::tier::{LakeReader, PartitionPaths, PartitionTier};
use crate::{Log, LogConfig};

struct Fixture {
    _dir: tempfile::TempDir,
    log: Log,
    store: Arc<dyn ObjectStore>,
    lake_dir: std::path::PathBuf,
    staging: std::path::PathBuf,
}

/// A log of `batches` batches of 10 records with 20-byte values, a few batches per segment.
fn fixture(batches: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        flush_ms: None,
        retention_ms: None,
        remote_storage: true,
        ..LogConfig::default()
    };
    let mut log = Log::open(&dir.path().join("log"), config).unwrap();
    let value = [b'v'; 20];
    for i in 0..batches {
        let records: Vec<(&[u8], &[u8])> = (0..10).map(|_| (&b"k"[..], &value[..])).collect();
        let batch = TestBatchBuilder {
            base_timestamp: 1_000 + i,
            ..Default::default()
        }
        .build(&records);
        log.append(&batch, 0).unwrap();
    }
    // A sole replica: everything is replicated, so every closed segment is below the LSO.
    log.set_high_watermark(i64::MAX);
    let lake_dir = dir.path().join("lake");
    std::fs::create_dir_all(&lake_dir).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&lake_dir).unwrap());
    Fixture {
        staging: dir.path().join("staging"),
        _dir: dir,
        log,
        store,
        lake_dir,
    }
}

async fn tier_everything(f: &Fixture, tier: &mut PartitionTier) -> usize {
    let mut uploaded = 0;
    while let Some(segment) = f.log.closed_segment_from(tier.tiered_end()) {
        tier.upload(&segment, true).await.unwrap();
        uploaded += 1;
    }
    uploaded
}

#[tokio::test]
async fn tiered_segments_read_back_byte_identical_from_every_offset() {
    let mut f = fixture(40);
    let mut tier = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    let uploaded = tier_everything(&f, &mut tier).await;
    assert!(uploaded >= 5, "only {uploaded} segments closed");
    let end = tier.tiered_end();
    assert!(
        end > 0 && end < f.log.log_end_offset(),
        "the active segment is never tiered"
    );
    let reader = LakeReader::new(f.store.clone(), 8 * 1024);
    for offset in 0..end {
        let segment = tier.manifest().segment_for(offset).unwrap().clone();
        let remote = reader
            .read(tier.paths(), "id", &segment, offset, 700)
            .await
            .unwrap();
        let local = f.log.read(offset, 700).unwrap();
        assert_eq!(remote, local, "offset {offset}");
        let wanted = 1_000 + offset / 10;
        let holder = tier
            .manifest()
            .segments
            .iter()
            .find(|s| s.max_timestamp >= wanted)
            .unwrap();
        let found = reader
            .offset_for_timestamp(tier.paths(), "id", holder, wanted, 0)
            .await
            .unwrap();
        let expected = f.log.offset_for_timestamp(wanted).unwrap().unwrap();
        assert_eq!(found, Some((expected.offset, expected.timestamp)));
    }
    // Every segment has its Parquet file, one row per record (10 per batch).
    for segment in &tier.manifest().segments {
        let path = tier
            .paths()
            .parquet_object(segment.base_offset, segment.last_offset);
        let file = std::fs::File::open(f.lake_dir.join(path.as_ref())).unwrap();
        let rows = parquet::file::reader::SerializedFileReader::new(file)
            .map(|r| {
                parquet::file::reader::FileReader::metadata(&r)
                    .file_metadata()
                    .num_rows()
            })
            .unwrap();
        assert_eq!(rows, segment.last_offset - segment.base_offset + 1);
    }
    // Local retention may now drop what the lake holds, and only that.
    f.log
        .set_lake_extent(crate::tier::LakeExtent { start: 0, end })
        .unwrap();
    f.log.set_config(LogConfig {
        local_retention_bytes: Some(0),
        ..f.log.config().clone()
    });
    f.log.apply_retention(0).unwrap();
    assert_eq!(f.log.log_start_offset(), end);
}

#[tokio::test]
async fn reopening_resumes_and_sweeps_uncommitted_objects() {
    let f = fixture(40);
    let mut tier = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    let first = f.log.closed_segment_from(0).unwrap();
    tier.upload(&first, false).await.unwrap();
    // An upload that crashed before its commit leaves objects the manifest does not name.
    let next = f.log.closed_segment_from(tier.tiered_end()).unwrap();
    let paths = PartitionPaths::new("t", 0);
    let orphan = paths.segment_object(next.base_offset, next.last_offset, "log");
    f.store
        .put(&orphan, PutPayload::from(next.log.clone()))
        .await
        .unwrap();
    let mut reopened = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    assert_eq!(reopened.manifest().segments.len(), 1);
    assert!(f.store.head(&orphan).await.is_err(), "orphan was swept");
    let more = tier_everything(&f, &mut reopened).await;
    assert!(more > 0);
    let offsets: Vec<(i64, i64)> = reopened
        .manifest()
        .segments
        .iter()
        .map(|s| (s.base_offset, s.last_offset))
        .collect();
    for pair in offsets.windows(2) {
        assert_eq!(
            pair[0].1 + 1,
            pair[1].0,
            "contiguous, no duplicates: {offsets:?}"
        );
    }
}

#[tokio::test]
async fn a_new_topic_with_an_old_name_starts_with_an_empty_lake() {
    let f = fixture(20);
    let mut tier = PartitionTier::open(f.store.clone(), &f.staging, "t", "old", 0)
        .await
        .unwrap();
    assert!(tier_everything(&f, &mut tier).await > 0);
    let fresh = PartitionTier::open(f.store.clone(), &f.staging, "t", "new", 0)
        .await
        .unwrap();
    assert!(fresh.manifest().segments.is_empty());
    let leftovers = std::fs::read_dir(f.lake_dir.join("t/0")).unwrap().count();
    assert_eq!(leftovers, 1, "only the new manifest is left");
}

#[tokio::test]
async fn lake_retention_drops_oldest_segments_and_their_objects() {
    let f = fixture(40);
    let mut tier = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    tier_everything(&f, &mut tier).await;
    let before = tier.manifest().segments.clone();
    // Everything below offset 1_000_000 is lake-only; keep about two segments' worth.
    let keep = before[before.len() - 2..]
        .iter()
        .map(|s| s.size_bytes)
        .sum::<u64>();
    let dropped = tier
        .apply_retention(None, Some(keep), 1_000_000, 0, 0)
        .await
        .unwrap();
    assert_eq!(dropped.len(), before.len() - 2);
    tier.delete_dropped(&dropped).await.unwrap();
    assert_eq!(tier.manifest().segments, before[before.len() - 2..]);
    let gone = tier
        .paths()
        .segment_object(dropped[0].base_offset, dropped[0].last_offset, "log");
    assert!(f.store.head(&gone).await.is_err());
    // By time: every record is older than 10 ms at t = 1_000_000.
    let dropped = tier
        .apply_retention(Some(10), None, 0, 0, 1_000_000)
        .await
        .unwrap();
    assert_eq!(dropped.len(), 2);
    assert!(tier.manifest().segments.is_empty());
}

#[tokio::test]
async fn a_batch_parquet_cannot_decode_goes_to_the_lake_without_its_parquet_file() {
    let f = fixture(12);
    let mut log = f.log;
    // Valid framing and CRC, but flagged gzip over a plain body: the Produce-side record walk
    // refuses it now, but a log written before may hold it; the Parquet export cannot decompress it.
    let mut bad = TestBatchBuilder::default().build(&[(b"k", b"not gzip")]);
    bad[22] |= 1;
    let crc = inlet_protocol::batch::compute_crc(&bad).unwrap();
    bad[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(log.append(&bad, 0).is_err());
    let bad_offset = log.append_unwalked(&bad, 0).unwrap().base_offset;
    log.roll().unwrap();
    log.set_high_watermark(i64::MAX);
    let f = Fixture { log, ..f };
    let mut tier = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    tier_everything(&f, &mut tier).await;
    let segments = &tier.manifest().segments;
    assert_eq!(
        tier.tiered_end(),
        bad_offset + 1,
        "tiering went past the bad batch"
    );
    for s in segments {
        let holds_bad = (s.base_offset..=s.last_offset).contains(&bad_offset);
        assert_eq!(
            s.parquet, !holds_bad,
            "segment {}-{}",
            s.base_offset, s.last_offset
        );
    }
}

#[tokio::test]
async fn a_log_start_in_the_lake_drops_segments_below_it_and_survives_a_reload() {
    let f = fixture(40);
    let mut tier = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    tier_everything(&f, &mut tier).await;
    let second = tier.manifest().segments[1].clone();
    let start = second.base_offset + 3;
    let dropped = tier.apply_log_start(start).await.unwrap();
    assert_eq!(dropped.len(), 1);
    tier.delete_dropped(&dropped).await.unwrap();
    assert!(tier.apply_log_start(start - 1).await.unwrap().is_empty());
    let reloaded = PartitionTier::open(f.store.clone(), &f.staging, "t", "id", 0)
        .await
        .unwrap();
    let manifest = reloaded.manifest();
    assert_eq!(manifest.log_start_offset, start);
    assert_eq!(manifest.start_offset(), Some(start));
    assert!(manifest.segment_for(start - 1).is_none());
    assert_eq!(
        manifest.segment_for(start).map(|s| s.base_offset),
        Some(second.base_offset)
    );
    // The first segment's objects are gone.
    let first_log = PartitionPaths::new("t", 0).segment_object(0, second.base_offset - 1, "log");
    assert!(f.store.head(&first_log).await.is_err());
}
