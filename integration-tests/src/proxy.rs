//! A TCP proxy that can cut the network between the nodes of a test cluster on loopback: the
//! network partitions of [`netsplit`](crate::netsplit) without network namespaces or root.
//!
//! A [`Proxy`] listens on a free loopback port and forwards every connection to one node's
//! listener (`to`). Each connection is attributed to the node that opened it: either fixed (a
//! proxy only one node is told about, as a controller voter address) or looked up from the
//! kernel's socket table (a proxy every node and the test's clients use, as an advertised Kafka
//! listener; see [`socket_owner`]). The test process itself is a client: during a split its connections
//! stay with the side that is not split off (the majority, when one node is isolated).
//!
//! What may connect is [`Links`], shared by all proxies of a network: while a split is in
//! force, a connection between the two sides is refused on accept (accepted, then closed at
//! once), and [`Proxy::sweep`] closes those already open (both sockets shut down, so both ends
//! see the connection end), as a partition that resets connections would.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::socket_owner;

/// Who opened a connection through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A node of the cluster, by node id.
    Node(i32),
    /// The test process (its clients).
    Test,
    /// Not found among the tracked processes.
    Unknown,
}

/// How a proxy attributes its connections.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// Only this node is told about the proxy.
    Node(i32),
    /// Anyone may connect: look the connecting process up.
    Lookup,
}

/// Which connections may exist: the split in force, if any, and the processes of the nodes.
#[derive(Debug, Default)]
pub struct Links {
    /// One side of the split (the other side is every node not in it); `None`: no split.
    side: Option<BTreeSet<i32>>,
    /// Process id -> node id of the running nodes.
    pids: BTreeMap<u32, i32>,
}

impl Links {
    /// Whether a connection from `from` to node `to` may be open now. The test's clients are
    /// on the side not split off; a connection of unknown origin is cut while a split is in
    /// force.
    pub fn allows(&self, from: Peer, to: i32) -> bool {
        match (&self.side, from) {
            (None, _) => true,
            (Some(side), Peer::Test) => !side.contains(&to),
            (Some(side), Peer::Node(node)) => side.contains(&node) == side.contains(&to),
            (Some(_), Peer::Unknown) => false,
        }
    }

    /// Puts `side` on one side of a split and every other node on the other.
    pub fn split(&mut self, side: BTreeSet<i32>) {
        self.side = Some(side);
    }

    pub fn heal(&mut self) {
        self.side = None;
    }

    /// Records which process is which node (call again after a node restarts).
    pub fn track(&mut self, pids: impl IntoIterator<Item = (u32, i32)>) {
        self.pids = pids.into_iter().collect();
    }
}

/// One forwarded connection: the accepted socket and the one to the node.
struct Conn {
    from: Peer,
    client: TcpStream,
    upstream: TcpStream,
    /// Pump threads finished (two: the connection is gone).
    finished: Arc<AtomicUsize>,
}

impl Conn {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }

    fn is_open(&self) -> bool {
        self.finished.load(Ordering::Acquire) < 2
    }
}

struct Shared {
    to: i32,
    target: SocketAddr,
    source: Source,
    links: Arc<Mutex<Links>>,
    conns: Mutex<Vec<Conn>>,
    stopping: AtomicBool,
    /// Connections refused or closed because of a split.
    cut: AtomicUsize,
}

/// A cuttable TCP proxy in front of one node's listener; see the module doc.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Proxy {
    /// Starts a proxy on a free loopback port (see [`free_listener`](crate::free_listener))
    /// forwarding to `target`, the listener of node `to`.
    pub fn start(to: i32, target: SocketAddr, source: Source, links: Arc<Mutex<Links>>) -> Proxy {
        let listener = crate::free_listener();
        let addr = listener.local_addr().expect("a proxy's address");
        let shared = Arc::new(Shared {
            to,
            target,
            source,
            links,
            conns: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            cut: AtomicUsize::new(0),
        });
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, &shared))
        };
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the open connections [`Links`] no longer allows.
    pub fn sweep(&self) {
        let mut conns = lock(&self.shared.conns);
        let links = lock(&self.shared.links);
        conns.retain_mut(|conn| {
            if conn.from == Peer::Unknown && matches!(self.shared.source, Source::Lookup) {
                // Opened before its process was tracked: ask again.
                conn.from = identify(&conn.client, &links);
            }
            let keep = conn.is_open() && links.allows(conn.from, self.shared.to);
            if !keep {
                if conn.is_open() {
                    self.shared.cut.fetch_add(1, Ordering::Relaxed);
                }
                conn.close();
            }
            keep
        });
    }

    /// Who opened each connection open now, and the node it goes to.
    pub fn open_connections(&self) -> Vec<(Peer, i32)> {
        self.sweep();
        lock(&self.shared.conns)
            .iter()
            .map(|conn| (conn.from, self.shared.to))
            .collect()
    }

    /// How many connections were refused or closed because of a split.
    pub fn cut_count(&self) -> usize {
        self.shared.cut.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the accept loop, which then sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for conn in lock(&self.shared.conns).drain(..) {
            conn.close();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: &Shared) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let client = match client {
            Ok(client) => client,
            // Out of file descriptors or a connection reset before accept: try the next one.
            Err(_) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let from = match shared.source {
            Source::Node(node) => Peer::Node(node),
            Source::Lookup => identify(&client, &lock(&shared.links)),
        };
        // Checked and registered under the connections' lock, so a split made meanwhile
        // either refuses this connection here or finds it in its sweep.
        let mut conns = lock(&shared.conns);
        conns.retain(Conn::is_open);
        if !lock(&shared.links).allows(from, shared.to) {
            shared.cut.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(upstream) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2))
        else {
            // The node is down: the client sees the connection closed, as it would be.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let finished = Arc::new(AtomicUsize::new(0));
        let pumps = (
            client.try_clone(),
            upstream.try_clone(),
            client.try_clone(),
            upstream.try_clone(),
        );
        let (Ok(c1), Ok(u1), Ok(c2), Ok(u2)) = pumps else {
            continue;
        };
        for (reader, writer) in [(c1, u1), (u2, c2)] {
            let finished = finished.clone();
            thread::spawn(move || pump(reader, writer, &finished));
        }
        conns.push(Conn {
            from,
            client,
            upstream,
            finished,
        });
    }
}

/// Copies `reader` to `writer` until either ends, then passes the end on.
fn pump(mut reader: TcpStream, mut writer: TcpStream, finished: &AtomicUsize) {
    let _ = std::io::copy(&mut reader, &mut writer);
    let _ = writer.shutdown(Shutdown::Write);
    let _ = reader.shutdown(Shutdown::Read);
    finished.fetch_add(1, Ordering::Release);
}

/// Which tracked process (or the test itself) opened `accepted`, the proxy's side of a
/// loopback connection.
fn identify(accepted: &TcpStream, links: &Links) -> Peer {
    let test = std::process::id();
    let candidates = links.pids.keys().copied().chain([test]);
    match socket_owner::connecting_process(accepted, candidates) {
        Some(pid) if pid == test => Peer::Test,
        Some(pid) => links
            .pids
            .get(&pid)
            .map_or(Peer::Unknown, |node| Peer::Node(*node)),
        None => Peer::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        Ok(buf.to_vec())
    }

    #[test]
    fn the_test_process_is_identified_and_stays_with_the_side_not_split_off() {
        let links = Arc::new(Mutex::new(Links::default()));
        let proxy = Proxy::start(2, echo_server(), Source::Lookup, links.clone());
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(round_trip(&mut stream).unwrap(), b"ping");
        assert_eq!(lock(&proxy.shared.conns)[0].from, Peer::Test);
        lock(&links).split([1].into());
        proxy.sweep();
        assert_eq!(round_trip(&mut stream).unwrap(), b"ping");
        lock(&links).split([2].into());
        proxy.sweep();
        assert!(round_trip(&mut stream).is_err(), "node 2 is split off");
    }

    #[test]
    fn a_split_closes_open_connections_across_it_and_refuses_new_ones_until_healed() {
        let links = Arc::new(Mutex::new(Links::default()));
        let proxy = Proxy::start(2, echo_server(), Source::Node(1), links.clone());
        let mut stream = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(round_trip(&mut stream).unwrap(), b"ping");

        lock(&links).split([1].into());
        proxy.sweep();
        assert!(
            round_trip(&mut stream).is_err(),
            "an open connection is cut"
        );
        let mut refused = TcpStream::connect(proxy.addr()).unwrap();
        assert!(round_trip(&mut refused).is_err(), "a new one is refused");
        assert_eq!(proxy.cut_count(), 2);

        lock(&links).heal();
        let mut again = TcpStream::connect(proxy.addr()).unwrap();
        assert_eq!(round_trip(&mut again).unwrap(), b"ping");
    }

    #[test]
    fn nodes_on_the_same_side_of_a_split_stay_connected() {
        let mut links = Links::default();
        links.split([1].into());
        assert!(!links.allows(Peer::Node(1), 2));
        assert!(!links.allows(Peer::Node(2), 1));
        assert!(links.allows(Peer::Node(2), 3));
        assert!(links.allows(Peer::Node(1), 1));
        assert!(!links.allows(Peer::Test, 1));
        assert!(links.allows(Peer::Test, 2));
        assert!(!links.allows(Peer::Unknown, 3));
        links.heal();
        assert!(links.allows(Peer::Unknown, 3));
    }
}
