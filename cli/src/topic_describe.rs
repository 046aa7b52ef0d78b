//! `inlet topic describe`: a topic's partitions (leader, replicas, ISR, earliest and latest
//! offsets) and configs. The offsets are asked of every leader at once, each within
//! [`BROKER_TIMEOUT`]: a leader that is dead but still in the metadata (until its session times
//! out) or stopped marks its own partitions' offsets unavailable instead of failing the verb.

use std::collections::BTreeMap;
use std::time::Duration;

use inlet_protocol::client::cluster::{list_offsets_request, Cluster, TopicInfo, EARLIEST, LATEST};
use inlet_protocol::client::{check, Client, ClientError};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cluster::{describe_configs, RESOURCE_TOPIC};
use crate::connect::Context;
use crate::output::{ids, print_json, Output, Table};
use crate::topic::print_configs;

/// How long one leader has to connect and answer both ListOffsets requests. Short: an operator
/// describing a cluster with a broker down wants the rest at once, not after a TCP timeout.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

const CLIENT_ID: &str = "inlet-cli";

/// One partition's offsets, or why they could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offsets {
    Known { earliest: i64, latest: i64 },
    Unavailable(String),
}

pub async fn describe(context: &Context, cluster: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let info = cluster.topic(name).await?;
    let offsets = offsets_of(cluster.brokers(), &info, BROKER_TIMEOUT).await;
    let configs = describe_configs(cluster, RESOURCE_TOPIC, name).await?;
    let offsets_for = |index: i32| {
        offsets
            .get(&index)
            .cloned()
            .unwrap_or_else(|| Offsets::Unavailable("no answer for this partition".to_string()))
    };
    match context.output {
        Output::Json => {
            let partitions: Vec<Value> = info
                .partitions
                .iter()
                .map(|p| {
                    let mut row = json!({
                        "partition": p.index,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "replicas": p.replicas,
                        "isr": p.isr,
                    });
                    let (earliest, latest, error) = match offsets_for(p.index) {
                        Offsets::Known { earliest, latest } => {
                            (json!(earliest), json!(latest), Value::Null)
                        }
                        Offsets::Unavailable(why) => (Value::Null, Value::Null, json!(why)),
                    };
                    row["earliest_offset"] = earliest;
                    row["latest_offset"] = latest;
                    row["offsets_available"] = json!(error.is_null());
                    if !error.is_null() {
                        row["offsets_error"] = error;
                    }
                    row
                })
                .collect();
            print_json(&json!({
                "name": info.name,
                "id": info.id,
                "internal": info.internal,
                "partitions": partitions,
                "configs": configs,
            }))
        }
        Output::Table => {
            println!("topic: {}  id: {}", info.name, info.id);
            println!();
            let mut table = Table::new(&[
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "EARLIEST",
                "LATEST",
            ]);
            let mut unavailable = Vec::new();
            for p in &info.partitions {
                let (earliest, latest) = match offsets_for(p.index) {
                    Offsets::Known { earliest, latest } => {
                        (earliest.to_string(), latest.to_string())
                    }
                    Offsets::Unavailable(why) => {
                        unavailable.push(format!("partition {}: {why}", p.index));
                        ("unavailable".to_string(), "unavailable".to_string())
                    }
                };
                table.row(vec![
                    p.index.to_string(),
                    p.leader.to_string(),
                    p.leader_epoch.to_string(),
                    ids(&p.replicas),
                    ids(&p.isr),
                    earliest,
                    latest,
                ]);
            }
            table.print()?;
            for line in unavailable {
                println!("offsets unavailable: {line}");
            }
            println!();
            print_configs(&configs)
        }
    }
}

/// Every partition's offsets of `topic`, asked of all its leaders concurrently (each on a
/// connection of its own, within `timeout`). Never fails: a partition whose leader is unknown,
/// unreachable, slow or answering an error is [`Offsets::Unavailable`] with the reason.
pub async fn offsets_of(
    brokers: &BTreeMap<i32, String>,
    topic: &TopicInfo,
    timeout: Duration,
) -> BTreeMap<i32, Offsets> {
    let mut offsets = BTreeMap::new();
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in &topic.partitions {
        if p.leader < 0 {
            offsets.insert(p.index, Offsets::Unavailable("no leader".to_string()));
        } else {
            by_leader.entry(p.leader).or_default().push(p.index);
        }
    }
    let mut asks = JoinSet::new();
    for (leader, indexes) in by_leader {
        let Some(addr) = brokers.get(&leader).cloned() else {
            for index in indexes {
                let why = format!("leader {leader} is not in the cluster metadata");
                offsets.insert(index, Offsets::Unavailable(why));
            }
            continue;
        };
        let name = topic.name.clone();
        asks.spawn(async move {
            let answer = tokio::time::timeout(timeout, ask_leader(&addr, &name, &indexes)).await;
            let answer = match answer {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(error)) => Err(format!("leader {leader} at {addr}: {error}")),
                Err(_) => Err(format!(
                    "leader {leader} at {addr} did not answer within {timeout:?}"
                )),
            };
            (indexes, answer)
        });
    }
    while let Some(joined) = asks.join_next().await {
        let Ok((indexes, answer)) = joined else {
            // A task only ends without a value if it panicked; its partitions stay unanswered
            // and are reported as such by the caller.
            continue;
        };
        match answer {
            Ok(answer) => offsets.extend(answer),
            Err(why) => {
                for index in indexes {
                    offsets.insert(index, Offsets::Unavailable(why.clone()));
                }
            }
        }
    }
    offsets
}

/// Earliest and latest offsets of `indexes` of `topic` from the leader at `addr`; a partition
/// the leader answers with an error code is unavailable with that error.
async fn ask_leader(
    addr: &str,
    topic: &str,
    indexes: &[i32],
) -> Result<BTreeMap<i32, Offsets>, ClientError> {
    let mut client = Client::connect(addr, CLIENT_ID).await?;
    let earliest = list_offsets(&mut client, topic, indexes, EARLIEST).await?;
    let latest = list_offsets(&mut client, topic, indexes, LATEST).await?;
    let offsets = indexes
        .iter()
        .map(|&index| {
            let found = match (earliest.get(&index), latest.get(&index)) {
                (Some(Ok(earliest)), Some(Ok(latest))) => Offsets::Known {
                    earliest: *earliest,
                    latest: *latest,
                },
                (Some(Err(why)), _) | (_, Some(Err(why))) => Offsets::Unavailable(why.clone()),
                _ => Offsets::Unavailable("the leader did not answer for it".to_string()),
            };
            (index, found)
        })
        .collect();
    Ok(offsets)
}

/// One ListOffsets request: partition -> offset at `timestamp`, or the error it was answered.
async fn list_offsets(
    client: &mut Client,
    topic: &str,
    indexes: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, Result<i64, String>>, ClientError> {
    let request = list_offsets_request(topic, indexes, timestamp);
    let response = client.send(request).await?;
    let mut offsets = BTreeMap::new();
    for t in response.topics {
        for p in t.partitions {
            let offset = check(p.error_code, || "list offsets".to_string())
                .map(|()| p.offset)
                .map_err(|e| e.to_string());
            offsets.insert(p.partition_index, offset);
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use inlet_protocol::client::cluster::PartitionInfo;

    use super::*;

    fn topic(leaders: &[i32]) -> TopicInfo {
        TopicInfo {
            name: "t".to_string(),
            id: "id".to_string(),
            internal: false,
            partitions: leaders
                .iter()
                .enumerate()
                .map(|(i, &leader)| PartitionInfo {
                    index: i as i32,
                    leader,
                    leader_epoch: 0,
                    replicas: vec![leader],
                    isr: vec![leader],
                    error_code: 0,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn unreachable_and_unknown_leaders_mark_only_their_partitions_unavailable() {
        // A port nothing listens on: bind one, learn it, close it.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").to_string()
        };
        let brokers = BTreeMap::from([(1, closed)]);
        let offsets = offsets_of(&brokers, &topic(&[1, -1, 7]), Duration::from_secs(2)).await;
        assert_eq!(offsets.len(), 3);
        for (index, offsets) in offsets {
            match offsets {
                Offsets::Unavailable(why) => match index {
                    0 => assert!(why.contains("leader 1"), "{why}"),
                    1 => assert_eq!(why, "no leader"),
                    _ => assert!(why.contains("not in the cluster metadata"), "{why}"),
                },
                known => panic!("partition {index}: {known:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_leader_that_accepts_but_never_answers_is_cut_off_at_the_timeout() {
        // Accepts the connection (the kernel's backlog does) and never answers ApiVersions.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let brokers = BTreeMap::from([(1, listener.local_addr().expect("addr").to_string())]);
        let started = std::time::Instant::now();
        let offsets = offsets_of(&brokers, &topic(&[1]), Duration::from_millis(300)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        match &offsets[&0] {
            Offsets::Unavailable(why) => assert!(why.contains("did not answer"), "{why}"),
            known => panic!("{known:?}"),
        }
    }
}
