//! `inlet consume TOPIC`: print records from a start position (earliest, latest, an offset or a
//! time), from chosen partitions or as a member of a consumer group that commits what it printed.
//! Follows new records until Ctrl-C unless `--count` (or `--exit-at-end`) says when to stop.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use inlet_protocol::client::check;
use inlet_protocol::client::cluster::{topic_name, Cluster, TopicInfo, EARLIEST, LATEST};
use inlet_protocol::client::group::{fetch_offsets, Member, Offsets};
use inlet_protocol::client::records::{decode_records, ConsumedRecord};
use inlet_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use inlet_protocol::kafka_protocol::messages::FetchRequest;
use inlet_protocol::kafka_protocol::ResponseError;
use serde_json::json;

use crate::connect::Context;

/// Fetch errors that mean "ask the cluster who leads this partition now".
const LEADER_MOVED: [ResponseError; 4] = [
    ResponseError::NotLeaderOrFollower,
    ResponseError::LeaderNotAvailable,
    ResponseError::FencedLeaderEpoch,
    ResponseError::UnknownLeaderEpoch,
];

/// Fetch v13+ addresses topics by id; v4-12 by name.
const FETCH_CAP: i16 = 12;
/// Short enough that heartbeats (every 3 s) are never late by much.
const MAX_WAIT_MS: i32 = 500;

#[derive(Args)]
pub struct ConsumeArgs {
    topic: String,
    /// Start at the earliest offset (with --group: when the group has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset in every consumed partition.
    #[arg(long, conflicts_with = "from_time")]
    offset: Option<i64>,
    /// Start at the first record at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    from_time: Option<i64>,
    /// Consume only this partition; repeatable (default: all).
    #[arg(long, conflicts_with = "group")]
    partition: Vec<i32>,
    /// Join this consumer group, consume its assigned partitions and commit offsets.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Stop when every partition has been read to its end.
    #[arg(long)]
    exit_at_end: bool,
    /// value: the value only; kv: key TAB value; json: one object per line with partition,
    /// offset, timestamp, key, value and headers.
    #[arg(long, value_enum, default_value_t = Format::Value)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Value,
    Kv,
    Json,
}

/// RFC 3339 -> ms since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let time = humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?}: {e}"))?;
    let since = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?;
    Ok(since.as_millis() as i64)
}

/// What a fetch returned for one partition.
pub struct Fetched {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub records: Bytes,
}

/// One Fetch per leader for `positions` (partition -> next offset).
pub async fn fetch(
    cluster: &mut Cluster,
    topic: &TopicInfo,
    positions: &BTreeMap<i32, i64>,
    max_wait_ms: i32,
    partition_max_bytes: i32,
) -> anyhow::Result<Vec<Fetched>> {
    let mut by_leader: BTreeMap<i32, Vec<FetchPartition>> = BTreeMap::new();
    for (&partition, &offset) in positions {
        let leader = topic
            .partitions
            .iter()
            .find(|p| p.index == partition)
            .map_or(-1, |p| p.leader);
        by_leader.entry(leader).or_default().push(
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(partition_max_bytes),
        );
    }
    let mut fetched = Vec::new();
    for (leader, partitions) in by_leader {
        if leader < 0 {
            bail!("topic {} has a partition without a leader", topic.name);
        }
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(64 * 1024 * 1024)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&topic.name))
                .with_partitions(partitions)]);
        let response = cluster
            .broker(leader)
            .await?
            .send_capped(request, FETCH_CAP)
            .await?;
        check(response.error_code, || format!("fetch from {}", topic.name))?;
        for t in response.responses {
            for p in t.partitions {
                fetched.push(Fetched {
                    partition: p.partition_index,
                    error_code: p.error_code,
                    high_watermark: p.high_watermark,
                    records: p.records.unwrap_or_default(),
                });
            }
        }
    }
    Ok(fetched)
}

pub async fn run(context: &Context, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut cluster = context.connect().await?;
    let mut topic = cluster.topic(&args.topic).await?;
    let mut member = match &args.group {
        Some(group) => Some(
            Member::join(&mut cluster, group, vec![args.topic.clone()])
                .await
                .with_context(|| format!("cannot join group {group}"))?,
        ),
        None => None,
    };
    let mut positions = start_positions(&mut cluster, &topic, &args, member.as_ref(), true).await?;
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
        let fetched = tokio::select! {
            _ = &mut ctrl_c => break,
            fetched = fetch(&mut cluster, &topic, &positions, MAX_WAIT_MS, 1024 * 1024) => fetched?,
        };
        let mut at_end = true;
        let mut stale_metadata = false;
        for f in fetched {
            if LEADER_MOVED.iter().any(|e| e.code() == f.error_code) {
                // Leadership moved (another broker of a cluster): look it up again and retry.
                stale_metadata = true;
                at_end = false;
                continue;
            }
            if f.error_code == ResponseError::OffsetOutOfRange.code() {
                // The position fell off the log (retention) or past its end: reset like
                // auto.offset.reset (earliest with --from-beginning, else latest).
                let reset = if args.from_beginning {
                    EARLIEST
                } else {
                    LATEST
                };
                let offsets = cluster.list_offsets(&topic, &[f.partition], reset).await?;
                positions.extend(offsets);
                at_end = false;
                continue;
            }
            check(f.error_code, || {
                format!("fetch {}/{}", topic.name, f.partition)
            })?;
            let Some(position) = positions.get_mut(&f.partition) else {
                continue;
            };
            for record in decode_records(&f.records, *position)? {
                if args.count.is_some_and(|n| printed >= n) {
                    break;
                }
                print_record(&mut out, args.format, f.partition, &record)?;
                printed += 1;
                *position = record.offset + 1;
            }
            if *position < f.high_watermark {
                at_end = false;
            }
        }
        out.flush()?;
        if stale_metadata {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            topic = cluster.topic(&args.topic).await?;
        }
        if let Some(m) = member.as_mut() {
            let mut rebalanced =
                commit_if_moved(&mut cluster, m, &args.topic, &positions, &mut committed).await?;
            if !rebalanced {
                rebalanced = m.heartbeat_if_due(&mut cluster).await?;
            }
            if rebalanced {
                // The partitions may have changed: continue from the group's committed offsets
                // (--offset and --from-time applied to the first generation only).
                topic = cluster.topic(&args.topic).await?;
                positions = start_positions(&mut cluster, &topic, &args, Some(m), false).await?;
                committed.clear();
            }
        }
        if args.exit_at_end && at_end {
            break;
        }
    }
    if let Some(mut m) = member {
        commit_if_moved(
            &mut cluster,
            &mut m,
            &args.topic,
            &positions,
            &mut committed,
        )
        .await?;
        m.leave(&mut cluster).await?;
    }
    eprintln!("consumed {printed} records");
    Ok(())
}

/// Commits the positions that moved since the last commit. Returns `true` when the group
/// rebalanced instead (the member has rejoined; the commit was refused).
async fn commit_if_moved(
    cluster: &mut Cluster,
    member: &mut Member,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    committed: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<bool> {
    let moved: Offsets = positions
        .iter()
        .filter(|(p, o)| committed.get(p) != Some(o))
        .map(|(&p, &o)| ((topic.to_string(), p), o))
        .collect();
    if moved.is_empty() {
        return Ok(false);
    }
    if member.commit(cluster, &moved).await? {
        return Ok(true);
    }
    committed.extend(moved.into_iter().map(|((_, p), o)| (p, o)));
    Ok(false)
}

/// partition -> first offset to read, from the flags or (in a group) the committed offsets.
/// `explicit: false` ignores `--offset` and `--from-time` (a later generation of the group).
async fn start_positions(
    cluster: &mut Cluster,
    topic: &TopicInfo,
    args: &ConsumeArgs,
    member: Option<&Member>,
    explicit: bool,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let (offset, from_time) = if explicit {
        (args.offset, args.from_time)
    } else {
        (None, None)
    };
    let partitions: Vec<i32> = match member {
        Some(m) => m.assignment().get(&topic.name).cloned().unwrap_or_default(),
        None if args.partition.is_empty() => topic.partitions.iter().map(|p| p.index).collect(),
        None => {
            for p in &args.partition {
                if !topic.partitions.iter().any(|q| q.index == *p) {
                    bail!("topic {} has no partition {p}", topic.name);
                }
            }
            args.partition.clone()
        }
    };
    let mut positions = BTreeMap::new();
    let mut unresolved = partitions.clone();
    if let (Some(m), None, None) = (member, offset, from_time) {
        let wanted = BTreeMap::from([(topic.name.clone(), partitions.clone())]);
        let committed = fetch_offsets(cluster, m.group(), Some(&wanted)).await?;
        for ((_, p), o) in committed {
            positions.insert(p, o);
        }
        unresolved.retain(|p| !positions.contains_key(p));
    }
    if unresolved.is_empty() {
        return Ok(positions);
    }
    if let Some(offset) = offset {
        positions.extend(unresolved.iter().map(|&p| (p, offset)));
        return Ok(positions);
    }
    let timestamp = match from_time {
        Some(ms) => ms,
        None if args.from_beginning => EARLIEST,
        None => LATEST,
    };
    let offsets = cluster.list_offsets(topic, &unresolved, timestamp).await?;
    let latest = if from_time.is_some() {
        cluster.list_offsets(topic, &unresolved, LATEST).await?
    } else {
        BTreeMap::new()
    };
    for p in unresolved {
        let offset = match offsets.get(&p) {
            // No record at or after the time: start at the end.
            Some(-1) | None => latest.get(&p).copied().unwrap_or(0),
            Some(&o) => o,
        };
        positions.insert(p, offset);
    }
    Ok(positions)
}

fn text(bytes: &Option<Bytes>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn print_record(
    out: &mut impl Write,
    format: Format,
    partition: i32,
    record: &ConsumedRecord,
) -> anyhow::Result<()> {
    match format {
        Format::Value => {
            out.write_all(record.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")?;
        }
        Format::Kv => {
            out.write_all(record.key.as_deref().unwrap_or_default())?;
            out.write_all(b"\t")?;
            out.write_all(record.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")?;
        }
        Format::Json => {
            let headers: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(text(v))))
                .collect();
            let line = json!({
                "partition": partition,
                "offset": record.offset,
                "timestamp": record.timestamp,
                "key": text(&record.key),
                "value": text(&record.value),
                "headers": headers,
            });
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}
