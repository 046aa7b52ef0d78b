//! Append and read throughput of a partition log: 1 KiB records in 16 KiB batches, in a temp dir.
//!
//! `cargo bench -p inlet-storage` prints MB/s (criterion `Throughput::Bytes`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use inlet_protocol::batch::TestBatchBuilder;
use inlet_storage::{Log, LogConfig};

const RECORD: usize = 1024;
const RECORDS_PER_BATCH: usize = 16;
const BATCHES_PER_ITER: usize = 64; // 1 MiB of records per iteration

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 << 20,
        flush_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn one_batch() -> Vec<u8> {
    let value = vec![0xabu8; RECORD];
    let records: Vec<(&[u8], &[u8])> = (0..RECORDS_PER_BATCH)
        .map(|_| (&b"key"[..], &value[..]))
        .collect();
    TestBatchBuilder {
        base_timestamp: 1_700_000_000_000,
        ..Default::default()
    }
    .build(&records)
}

fn append(c: &mut Criterion) {
    let batch = one_batch();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), config()).expect("open log");
    let mut group = c.benchmark_group("log");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    group.throughput(Throughput::Bytes((batch.len() * BATCHES_PER_ITER) as u64));
    group.bench_function("append_16KiB_batches", |b| {
        b.iter_batched_ref(
            || vec![batch.clone(); BATCHES_PER_ITER],
            |batches| {
                for request in batches.iter_mut() {
                    log.append(request, 0).expect("append");
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let batch = one_batch();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = Log::open(dir.path(), config()).expect("open log");
    let total_batches = 4096; // 64 MiB
    for _ in 0..total_batches {
        log.append(&batch, 0).expect("append");
    }
    let end = log.log_end_offset();
    let max_bytes = 1 << 20;
    let mut group = c.benchmark_group("log");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(10);
    group.throughput(Throughput::Bytes((batch.len() * total_batches) as u64));
    // Zero-copy: `read` only locates batches and hands out `Bytes` into the mapping.
    group.bench_function("read_1MiB_fetches_zero_copy", |b| {
        b.iter(|| {
            let (mut offset, mut bytes) = (0, 0);
            while offset < end {
                let chunk = log.read(offset, max_bytes).expect("read");
                bytes += std::hint::black_box(&chunk).len();
                offset += (chunk.len() / batch.len() * RECORDS_PER_BATCH) as i64;
            }
            bytes
        })
    });
    // Plus one copy of every byte, as writing to a socket would do.
    let mut sink = Vec::with_capacity(max_bytes + batch.len());
    group.bench_function("read_1MiB_fetches_copied", |b| {
        b.iter(|| {
            let mut offset = 0;
            while offset < end {
                let chunk = log.read(offset, max_bytes).expect("read");
                sink.clear();
                sink.extend_from_slice(&chunk);
                std::hint::black_box(&sink);
                offset += (chunk.len() / batch.len() * RECORDS_PER_BATCH) as i64;
            }
        })
    });
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
