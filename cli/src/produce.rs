//! `inlet produce TOPIC`: one record per line of stdin (or `--file`), optionally `key<SEP>value`,
//! with headers, a fixed partition, compression and acks; prints a summary at the end.
//!
//! Lines are read on a blocking thread and batched per partition; a batch goes out when it is
//! full or when input pauses for the linger time, so piping `tail -f` works interactively.
//! Keyed records are partitioned like Kafka's default partitioner (murmur2 of the key), so they
//! land where a Java producer would put them; unkeyed records go to one partition per batch,
//! rotating (the "sticky" partitioner).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Args;
use inlet_protocol::client::check_with_message;
use inlet_protocol::client::cluster::{topic_name, Cluster, TopicInfo};
use inlet_protocol::client::records::{encode_batch, parse_compression, ProducerRecord};
use inlet_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use inlet_protocol::kafka_protocol::messages::ProduceRequest;
use inlet_protocol::kafka_protocol::records::Compression;
use serde_json::json;

use crate::connect::Context;
use crate::output::{print_json, Output};
use crate::topic::parse_key_value;

/// Produce v13 addresses topics by id; v3-12 by name.
pub const PRODUCE_CAP: i16 = 12;
const LINGER: Duration = Duration::from_millis(50);

#[derive(Args)]
pub struct ProduceArgs {
    topic: String,
    /// Split each line at the first SEP into key and value (otherwise: no key).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record, `key=value`; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    header: Vec<(String, String)>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// 0, 1 or all (-1).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Read lines from this file instead of stdin.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Largest batch per partition, in bytes of keys and values.
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
}

pub fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(format!("acks must be 0, 1 or all, not {other:?}")),
    }
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), for key -> partition.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

pub async fn run(context: &Context, args: ProduceArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    // Like Kafka's console producer, producing may auto-create the topic if the broker allows.
    cluster
        .metadata(Some(std::slice::from_ref(&args.topic)), true)
        .await?;
    let topic = cluster.topic(&args.topic).await?;
    let count = topic.partitions.len() as i32;
    if let Some(p) = args.partition {
        if p < 0 || p >= count {
            bail!("topic {} has no partition {p} (it has {count})", args.topic);
        }
    }
    let lines = spawn_reader(args.file.clone())?;
    let started = Instant::now();
    let mut producer = Producer {
        args: &args,
        topic,
        pending: BTreeMap::new(),
        pending_bytes: 0,
        sticky: 0,
        records: 0,
        bytes: 0,
    };
    let mut lines = lines;
    loop {
        match tokio::time::timeout(LINGER, lines.recv()).await {
            Ok(Some(Ok(line))) => {
                producer.add(&line);
                if producer.pending_bytes >= args.batch_bytes {
                    producer.flush(&mut cluster).await?;
                }
            }
            Ok(Some(Err(error))) => return Err(error),
            Ok(None) => break,
            Err(_) => producer.flush(&mut cluster).await?,
        }
    }
    producer.flush(&mut cluster).await?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "topic": args.topic,
        "records": producer.records,
        "bytes": producer.bytes,
        "seconds": seconds,
    });
    match context.output {
        Output::Json => print_json(&summary),
        Output::Table => {
            println!(
                "produced {} records ({} bytes) to {} in {seconds:.3} s",
                producer.records, producer.bytes, args.topic
            );
            Ok(())
        }
    }
}

/// Reads lines on a blocking thread so a slow or interactive stdin never stalls the network side.
fn spawn_reader(
    file: Option<PathBuf>,
) -> anyhow::Result<tokio::sync::mpsc::Receiver<anyhow::Result<Vec<u8>>>> {
    let input: Box<dyn BufRead + Send> = match &file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(10_000);
    std::thread::spawn(move || {
        let mut input = input;
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ =
                        tx.blocking_send(Err(anyhow::Error::new(e).context("cannot read input")));
                    break;
                }
            }
        }
    });
    Ok(rx)
}

struct Producer<'a> {
    args: &'a ProduceArgs,
    topic: TopicInfo,
    pending: BTreeMap<i32, Vec<ProducerRecord>>,
    pending_bytes: usize,
    sticky: i32,
    records: u64,
    bytes: u64,
}

impl Producer<'_> {
    fn add(&mut self, line: &[u8]) {
        let (key, value) = match &self.args.key_separator {
            Some(sep) if !sep.is_empty() => match find(line, sep.as_bytes()) {
                Some(at) => (
                    Some(Bytes::copy_from_slice(&line[..at])),
                    Bytes::copy_from_slice(&line[at + sep.len()..]),
                ),
                None => (None, Bytes::copy_from_slice(line)),
            },
            _ => (None, Bytes::copy_from_slice(line)),
        };
        let partitions = self.topic.partitions.len() as i32;
        let partition = match (self.args.partition, &key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => self.sticky,
        };
        self.pending_bytes += key.as_ref().map_or(0, |k| k.len()) + value.len();
        self.pending
            .entry(partition)
            .or_default()
            .push(ProducerRecord {
                key,
                value: Some(value),
                headers: self
                    .args
                    .header
                    .iter()
                    .map(|(k, v)| (k.clone(), Bytes::from(v.clone())))
                    .collect(),
                timestamp: now_ms(),
            });
    }

    /// Sends every pending batch (one Produce request per leader) and checks each partition.
    async fn flush(&mut self, cluster: &mut Cluster) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let partitions = self.topic.partitions.len() as i32;
        self.sticky = (self.sticky + 1) % partitions.max(1);
        let mut by_leader: BTreeMap<i32, Vec<PartitionProduceData>> = BTreeMap::new();
        for (partition, records) in std::mem::take(&mut self.pending) {
            let leader = self
                .topic
                .partitions
                .iter()
                .find(|p| p.index == partition)
                .map_or(-1, |p| p.leader);
            let batch = encode_batch(&records, self.args.compression)?;
            self.records += records.len() as u64;
            by_leader.entry(leader).or_default().push(
                PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch)),
            );
        }
        self.bytes += self.pending_bytes as u64;
        self.pending_bytes = 0;
        for (leader, data) in by_leader {
            if leader < 0 {
                bail!("topic {} has a partition without a leader", self.topic.name);
            }
            let request = ProduceRequest::default()
                .with_acks(self.args.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(&self.topic.name))
                    .with_partition_data(data)]);
            let client = cluster.broker(leader).await?;
            if self.args.acks == 0 {
                // The broker sends nothing back to acks=0: write and move on.
                let version = client.version_capped::<ProduceRequest>(PRODUCE_CAP)?;
                client.send_no_response(request, version).await?;
                continue;
            }
            let response = client.send_capped(request, PRODUCE_CAP).await?;
            for t in &response.responses {
                for p in &t.partition_responses {
                    check_with_message(p.error_code, p.error_message.as_deref(), || {
                        format!("produce to {}/{}", self.topic.name, p.index)
                    })?;
                }
            }
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest / DefaultPartitionerTest.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn acks_accepts_kafka_spellings_only() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }
}
