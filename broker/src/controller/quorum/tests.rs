//! Cluster tests of the controller quorum: in-process nodes on 127.0.0.1, the toy append-only
//! list as the replicated state.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::storage_tests::Toy;
use super::{parse_voters, QuorumConfig, QuorumError, QuorumNode};

const T: Duration = Duration::from_secs(10);

struct Cluster {
    _root: tempfile::TempDir,
    dirs: BTreeMap<i32, PathBuf>,
    addrs: BTreeMap<i32, SocketAddr>,
    snapshot_every: u64,
    election_ms: (u64, u64),
    nodes: BTreeMap<i32, (QuorumNode, Toy)>,
}

fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect()
}

impl Cluster {
    async fn start(n: i32, snapshot_every: u64, election_ms: (u64, u64)) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let addrs: BTreeMap<i32, SocketAddr> = (1..=n).zip(free_addrs(n as usize)).collect();
        let dirs = (1..=n)
            .map(|i| (i, root.path().join(format!("node-{i}"))))
            .collect();
        let mut c = Cluster {
            _root: root,
            dirs,
            addrs,
            snapshot_every,
            election_ms,
            nodes: BTreeMap::new(),
        };
        for i in 1..=n {
            c.start_node(i).await;
        }
        c
    }

    fn config(&self, id: i32) -> QuorumConfig {
        let voters = self
            .addrs
            .iter()
            .map(|(i, a)| (*i, a.to_string()))
            .collect();
        let mut config =
            QuorumConfig::new(id, voters, Some(self.addrs[&id]), self.dirs[&id].clone());
        config.election_timeout_ms = self.election_ms;
        config.heartbeat_interval_ms = 100;
        config.snapshot_every = self.snapshot_every;
        config.rpc_timeout_ms = 500;
        config
    }

    async fn start_node(&mut self, id: i32) {
        let toy = Toy::default();
        let node = QuorumNode::start(self.config(id), Box::new(toy.clone()))
            .await
            .expect("start node");
        let handler_id = id;
        node.set_leader_handler(Arc::new(move |req: Vec<u8>| {
            Box::pin(async move { [format!("from {handler_id}: ").into_bytes(), req].concat() })
        }));
        self.nodes.insert(id, (node, toy));
    }

    async fn stop_node(&mut self, id: i32) {
        if let Some((node, _)) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    fn node(&self, id: i32) -> &QuorumNode {
        &self.nodes[&id].0
    }

    /// Waits until every running node names the same leader, among the running nodes.
    async fn agreed_leader(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<_> = self.nodes.values().map(|(n, _)| n.leader()).collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) && self.nodes.contains_key(l) {
                    return *l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {timeout:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node applied at least `index`.
    async fn all_applied(&self, index: u64) {
        for (id, (node, _)) in &self.nodes {
            let mut rx = node.applied();
            tokio::time::timeout(T, rx.wait_for(|a| *a >= index))
                .await
                .unwrap_or_else(|_| panic!("node {id} did not apply {index}"))
                .expect("applied watch");
        }
    }

    fn lists(&self) -> Vec<Vec<(u64, Vec<u8>)>> {
        self.nodes.values().map(|(_, toy)| toy.items()).collect()
    }
}

fn index_of(reply: &[u8]) -> u64 {
    let s = String::from_utf8_lossy(reply);
    s.strip_prefix("applied ")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("bad reply {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_apply_proposals_through_leader_and_follower_in_the_same_order() {
    let c = Cluster::start(3, 1000, (300, 600)).await;
    let leader = c.agreed_leader(T).await;
    let follower = *c.nodes.keys().find(|i| **i != leader).expect("a follower");
    let mut last = 0;
    for i in 0..10 {
        let via = if i % 2 == 0 { leader } else { follower };
        let reply = c
            .node(via)
            .propose(format!("cmd {i}").into_bytes(), T)
            .await
            .expect("propose");
        let index = index_of(&reply);
        assert!(index > last, "indexes grow");
        last = index;
        // Applied locally on the proposer before propose returns.
        assert!(*c.node(via).applied().borrow() >= index);
    }
    c.all_applied(last).await;
    let lists = c.lists();
    let commands: Vec<_> = lists[0]
        .iter()
        .map(|(_, cmd)| String::from_utf8_lossy(cmd).to_string())
        .collect();
    assert_eq!(
        commands,
        (0..10).map(|i| format!("cmd {i}")).collect::<Vec<_>>()
    );
    assert!(
        lists.iter().all(|l| *l == lists[0]),
        "same order on every node: {lists:?}"
    );

    // Concurrent proposals through every node: each applied once, in one order everywhere.
    let mut joins = Vec::new();
    for (id, (node, _)) in &c.nodes {
        for k in 0..8 {
            let node = node.clone();
            let cmd = format!("concurrent {id}-{k}").into_bytes();
            joins.push(tokio::spawn(async move { node.propose(cmd, T).await }));
        }
    }
    let mut indexes = Vec::new();
    for j in joins {
        indexes.push(index_of(&j.await.expect("join").expect("propose")));
    }
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 24, "every proposal got its own index");
    last = *indexes.last().expect("indexes");
    c.all_applied(last).await;
    let lists = c.lists();
    assert_eq!(lists[0].len(), 34);
    assert!(
        lists.iter().all(|l| *l == lists[0]),
        "same order on every node"
    );

    // A malformed frame closes that connection only.
    let mut buf = [0u8; 16];
    for garbage in [
        &[0xff, 0xff, 0xff, 0xff, b'x'][..],
        &[0, 0, 0, 3, b'{', b'{', b'{'],
    ] {
        let mut bad = tokio::net::TcpStream::connect(c.addrs[&leader])
            .await
            .expect("connect");
        bad.write_all(garbage).await.expect("write");
        let read = tokio::time::timeout(T, bad.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "connection closed: {read:?}"
        );
    }
    last = index_of(
        &c.node(follower)
            .propose(b"after garbage".to_vec(), T)
            .await
            .expect("propose"),
    );
    c.all_applied(last).await;

    // Leader calls and status are answered by the leader, even when asked on a follower.
    let reply = c
        .node(follower)
        .leader_call(b"ping".to_vec(), T)
        .await
        .expect("leader call");
    assert_eq!(reply, format!("from {leader}: ping").into_bytes());
    let status = c.node(follower).status(T).await.expect("status");
    assert_eq!(status.leader_id, leader);
    assert!(status.leader_epoch >= 1);
    assert_eq!(status.high_watermark, last + 1);
    assert_eq!(
        status
            .voters
            .iter()
            .map(|v| v.replica_id)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let me = status
        .voters
        .iter()
        .find(|v| v.replica_id == leader)
        .expect("leader in voters");
    assert_eq!(me.log_end_offset, last + 1);
    assert!(
        status
            .voters
            .iter()
            .all(|v| v.log_end_offset >= 1 && v.last_fetch_timestamp > 0),
        "{status:?}"
    );
    for id in [1, 2, 3] {
        c.node(id).shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_and_catches_up_on_restart() {
    // The default election timeouts, to measure a realistic fail-over.
    let mut c = Cluster::start(3, 1000, (1000, 2000)).await;
    let old = c.agreed_leader(T).await;
    for i in 0..5 {
        c.node(old)
            .propose(format!("before {i}").into_bytes(), T)
            .await
            .expect("propose");
    }
    let crashed = Instant::now();
    c.stop_node(old).await;
    let new = c.agreed_leader(T).await;
    let took = crashed.elapsed();
    println!("new controller leader {new} elected {took:?} after leader {old} stopped");
    assert_ne!(new, old);
    assert!(took < Duration::from_secs(6), "election took {took:?}");
    let mut last = 0;
    for i in 0..5 {
        let via = if i % 2 == 0 {
            new
        } else {
            *c.nodes.keys().find(|n| **n != new).expect("follower")
        };
        last = index_of(
            &c.node(via)
                .propose(format!("after {i}").into_bytes(), T)
                .await
                .expect("propose"),
        );
    }
    c.start_node(old).await;
    c.all_applied(last).await;
    let lists = c.lists();
    assert_eq!(lists[0].len(), 10);
    assert!(lists.iter().all(|l| *l == lists[0]), "{lists:?}");
    for id in [1, 2, 3] {
        c.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_purged_entries_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(3, 5, (300, 600)).await;
    let leader = c.agreed_leader(T).await;
    let away = *c.nodes.keys().find(|i| **i != leader).expect("a follower");
    c.node(leader)
        .propose(b"first".to_vec(), T)
        .await
        .expect("propose");
    c.stop_node(away).await;
    let mut last = 0;
    for i in 0..40 {
        last = index_of(
            &c.node(leader)
                .propose(format!("while away {i}").into_bytes(), T)
                .await
                .expect("propose"),
        );
    }
    c.start_node(away).await;
    c.all_applied(last).await;
    let restored = *c.nodes[&away].1.restored_at.lock().expect("lock");
    assert!(
        restored.is_some_and(|i| i > 10),
        "caught up through a snapshot: {restored:?}"
    );
    let lists = c.lists();
    assert_eq!(lists[0].len(), 41);
    assert!(lists.iter().all(|l| *l == lists[0]), "{lists:?}");
    for id in [1, 2, 3] {
        c.stop_node(id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_of_one_works_without_a_listener_and_recovers_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = QuorumConfig::new(
        1,
        BTreeMap::from([(1, String::new())]),
        None,
        dir.path().to_path_buf(),
    );
    config.snapshot_every = 4;
    let toy = Toy::default();
    let node = QuorumNode::start(config.clone(), Box::new(toy.clone()))
        .await
        .expect("start");
    let mut last = 0;
    for i in 0..10 {
        last = index_of(
            &node
                .propose(format!("solo {i}").into_bytes(), T)
                .await
                .expect("propose"),
        );
    }
    let status = node.status(T).await.expect("status");
    assert_eq!((status.leader_id, status.high_watermark), (1, last + 1));
    node.shutdown().await;

    let again = Toy::default();
    let node = QuorumNode::start(config, Box::new(again.clone()))
        .await
        .expect("restart");
    tokio::time::timeout(T, node.applied().wait_for(|a| *a >= last))
        .await
        .expect("replayed")
        .expect("watch");
    assert_eq!(again.items(), toy.items());
    let more = index_of(
        &node
            .propose(b"after restart".to_vec(), T)
            .await
            .expect("propose"),
    );
    assert!(more > last);
    node.shutdown().await;
    assert!(matches!(
        node.propose(b"late".to_vec(), T).await,
        Err(QuorumError::Shutdown)
    ));
}

#[tokio::test]
async fn a_node_outside_the_voters_or_without_a_listener_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let voters = parse_voters("1@127.0.0.1:1,2@127.0.0.1:2").expect("voters");
    let config = QuorumConfig::new(3, voters.clone(), None, dir.path().to_path_buf());
    assert!(matches!(
        QuorumNode::start(config, Box::new(Toy::default())).await,
        Err(QuorumError::Config(_))
    ));
    let config = QuorumConfig::new(1, voters, None, dir.path().to_path_buf());
    assert!(matches!(
        QuorumNode::start(config, Box::new(Toy::default())).await,
        Err(QuorumError::Config(_))
    ));
    assert!(parse_voters("1@a:1,1@b:2").is_err());
    assert!(parse_voters("x@a:1").is_err());
}
