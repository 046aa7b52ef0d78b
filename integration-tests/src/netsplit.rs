//! Network partitions for a three-node test cluster on loopback, made with TCP proxies
//! ([`proxy`](crate::proxy)) rather than network namespaces: they need neither root nor
//! iproute2/iptables, so the partition tests run wherever the other cluster tests run.
//!
//! Every path from one node to another goes through a proxy:
//! - Kafka traffic (followers fetching from leaders): each node advertises a proxy in front of
//!   its Kafka listener, and that proxy finds out which node opened each connection. The test's
//!   clients bootstrap through the same proxies ([`Network::bootstrap`]) and learn them as the
//!   advertised addresses, so during a split they are on the side not split off; a client can
//!   still reach a node split off on its own listener ([`Broker::addr`]), which has no proxy;
//! - controller (Raft) traffic: each node's `--controller-quorum-voters` names, for every other
//!   voter, a proxy of its own (node 1 reaches node 2 through one proxy, node 3 through another,
//!   node 2 reaches node 1 through a third), so each direction of each pair is cut separately.
//!
//! [`Network::split`] cuts both directions between one side and the rest: open connections
//! across the split are closed and new ones refused until [`Network::heal`]. Proxies are
//! threads of the test process and go away with the [`Network`] (also on panic).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::cluster::node_options;
use crate::proxy::{Links, Peer, Proxy, Source};
use crate::{free_port, Broker};

/// The proxies between the nodes of one cluster and the split in force.
pub struct Network {
    links: Arc<Mutex<Links>>,
    /// In front of each node's Kafka listener (its advertised address), by node.
    kafka: Vec<Proxy>,
    /// In front of the controller listeners, one per (from, to) pair of nodes.
    controller: Vec<Proxy>,
}

impl Network {
    /// Tells the Kafka proxies which process is which node (after a node restarts, call again).
    pub fn track(&self, nodes: &[Broker]) {
        let pids = nodes
            .iter()
            .filter_map(|broker| broker.pid().map(|pid| (pid, broker.node_id())));
        self.lock().track(pids);
    }

    /// Cuts node `node` off from every other node, both directions, Kafka and controller
    /// traffic, and from the test's clients that connect through the proxies.
    pub fn isolate(&self, node: i32) {
        self.split([node]);
    }

    /// Cuts `side` off from the other nodes and the test's clients: open connections between
    /// the two sides are closed and new ones refused.
    pub fn split(&self, side: impl IntoIterator<Item = i32>) {
        self.lock()
            .split(side.into_iter().collect::<BTreeSet<i32>>());
        for proxy in self.kafka.iter().chain(&self.controller) {
            proxy.sweep();
        }
    }

    /// Ends the split: new connections pass again.
    pub fn heal(&self) {
        self.lock().heal();
    }

    /// `bootstrap.servers` for clients that connect through the proxies (and so are cut off
    /// from a node split off).
    pub fn bootstrap(&self) -> String {
        self.kafka
            .iter()
            .map(|proxy| proxy.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every connection open through the Kafka listeners' proxies: who opened it (as far as
    /// the proxy could tell), and the node it goes to.
    pub fn kafka_connections(&self) -> Vec<(Peer, i32)> {
        self.kafka
            .iter()
            .flat_map(Proxy::open_connections)
            .collect()
    }

    /// How many connections the splits so far closed or refused.
    pub fn cut_count(&self) -> usize {
        self.kafka
            .iter()
            .chain(&self.controller)
            .map(Proxy::cut_count)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts nodes 1, 2 and 3 as one cluster (as [`start_cluster_with`](crate::cluster::start_cluster_with),
/// `extra_args` to every node) whose nodes reach each other only through the returned
/// [`Network`]'s proxies.
pub fn start_cluster_with(extra_args: &[&str]) -> (Vec<Broker>, Network) {
    const NODES: i32 = 3;
    let links = Arc::new(Mutex::new(Links::default()));
    let kafka_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let controller_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let kafka: Vec<Proxy> = (1..=NODES)
        .zip(&kafka_ports)
        .map(|(id, port)| Proxy::start(id, loopback(*port), Source::Lookup, links.clone()))
        .collect();
    let mut controller = Vec::new();
    let mut options = Vec::new();
    for from in 1..=NODES {
        let mut voters = Vec::new();
        for to in 1..=NODES {
            let real = loopback(controller_ports[(to - 1) as usize]);
            let addr = if to == from {
                real
            } else {
                let proxy = Proxy::start(to, real, Source::Node(from), links.clone());
                let addr = proxy.addr();
                controller.push(proxy);
                addr
            };
            voters.push(format!("{to}@{addr}"));
        }
        let i = (from - 1) as usize;
        let mut node = node_options(
            from,
            kafka_ports[i],
            controller_ports[i],
            &voters.join(","),
            extra_args,
        );
        node.advertised_listener = Some(kafka[i].addr().to_string());
        options.push(node);
    }
    let network = Network {
        links,
        kafka,
        controller,
    };
    let nodes = Broker::start_group(options);
    network.track(&nodes);
    (nodes, network)
}
