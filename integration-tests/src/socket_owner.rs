//! Which process opened a loopback TCP connection, as the process that accepted it can find
//! out on Linux: the connecting socket's inode from `/proc/net/tcp` (the entry whose local and
//! remote addresses are the accepted socket's remote and local ones), then which of some
//! candidate processes holds that inode among its `/proc/<pid>/fd` links. The cuttable proxies
//! ([`proxy`](crate::proxy)) use it to tell the nodes of a cluster apart, all of which connect
//! from 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};

/// The first of `candidates` (process ids) that holds the other end of `accepted`, an accepted
/// IPv4 connection on this machine; `None` when none does or `/proc` cannot tell.
pub fn connecting_process(
    accepted: &TcpStream,
    candidates: impl IntoIterator<Item = u32>,
) -> Option<u32> {
    let (Ok(SocketAddr::V4(peer)), Ok(SocketAddr::V4(local))) =
        (accepted.peer_addr(), accepted.local_addr())
    else {
        return None;
    };
    let inode = socket_inode(peer, local)?;
    let wanted = format!("socket:[{inode}]");
    candidates.into_iter().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|mut fds| {
            fds.any(|fd| {
                fd.is_ok_and(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|target| target.as_os_str() == wanted.as_str())
                })
            })
        })
    })
}

/// The inode of the TCP socket whose local address is `local` and remote address `remote`,
/// from `/proc/net/tcp`.
fn socket_inode(local: SocketAddrV4, remote: SocketAddrV4) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let matches = fields.len() > 9
            && parse_proc_addr(fields[1]) == Some(local)
            && parse_proc_addr(fields[2]) == Some(remote);
        matches
            .then(|| fields[9].parse().ok())
            .flatten()
            .filter(|inode| *inode != 0)
    })
}

/// `0100007F:1F90` (the address as the kernel's `u32` in host order, the port in hex) to
/// `127.0.0.1:8080`.
fn parse_proc_addr(text: &str) -> Option<SocketAddrV4> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    #[cfg(target_endian = "little")]
    fn a_proc_address_reads_as_the_kernel_writes_it() {
        assert_eq!(
            parse_proc_addr("0100007F:1F90"),
            Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080))
        );
    }

    #[test]
    fn the_process_that_connected_is_found_among_the_candidates() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let me = std::process::id();
        assert_eq!(connecting_process(&accepted, [1, me]), Some(me));
        assert_eq!(connecting_process(&accepted, [1]), None);
    }
}
