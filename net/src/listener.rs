//! Listening sockets, made with socket2 so the options are set before
//! `bind`: `SO_REUSEADDR` (restart while old connections sit in TIME_WAIT),
//! `SO_REUSEPORT` (every shard binds its own socket on the same address and
//! the kernel spreads new connections across them), non-blocking mode and
//! the accept backlog.
//!
//! Sockets are created as `std::net::TcpListener` on the thread that parses
//! the configuration, so a bind failure is reported once, with the address,
//! before any shard starts; each shard then adopts its socket with
//! `monoio::net::TcpListener::from_std` inside its own runtime.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Options of a listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerOptions {
    /// Length of the kernel's accept queue (`listen(2)` backlog), in
    /// connections; the kernel caps it at `net.core.somaxconn`.
    pub backlog_connections: u32,
    /// Set `SO_REUSEPORT` (needed for one listener per shard).
    pub reuse_port: bool,
    /// Set `SO_REUSEADDR`.
    pub reuse_address: bool,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            backlog_connections: 1024,
            reuse_port: true,
            reuse_address: true,
        }
    }
}

/// Why a listening socket could not be created.
#[derive(Debug)]
pub struct BindError {
    /// The address that was asked for.
    pub address: SocketAddr,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.source.kind() {
            io::ErrorKind::AddrInUse => {
                " (another process is listening on this address and port; stop it or choose another port)"
            }
            io::ErrorKind::AddrNotAvailable => " (no interface of this host has this address)",
            io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
            }
            _ => "",
        };
        write!(
            f,
            "cannot listen on {}: {}{}",
            self.address, self.source, hint
        )
    }
}

impl std::error::Error for BindError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Binds one listening socket on `address` with `options`.
pub fn bind(address: SocketAddr, options: &ListenerOptions) -> Result<TcpListener, BindError> {
    bind_inner(address, options).map_err(|source| BindError { address, source })
}

fn bind_inner(address: SocketAddr, options: &ListenerOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() {
        // `[::]` means IPv6 only; list `0.0.0.0` separately for IPv4.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(options.reuse_address)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(options.reuse_port)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    let backlog = i32::try_from(options.backlog_connections).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Binds `count` listening sockets on the same `address`, one per shard,
/// all with `SO_REUSEPORT`.
///
/// `SO_REUSEPORT` would let us share a port with another process of the same
/// user that also set it (a second ringmq, for instance) without any error.
/// So, unless the port is 0, we first bind a probe socket *without*
/// `SO_REUSEPORT`: it fails with `EADDRINUSE` if anything listens there, and
/// is closed before the real sockets are bound. With port 0 the first socket
/// picks a free port and the others bind to that port.
pub fn bind_group(
    address: SocketAddr,
    count: usize,
    options: &ListenerOptions,
) -> Result<Vec<TcpListener>, BindError> {
    assert!(count >= 1, "bind_group needs at least one socket");
    let options = ListenerOptions {
        reuse_port: true,
        ..options.clone()
    };
    if address.port() != 0 {
        let probe_options = ListenerOptions {
            reuse_port: false,
            ..options.clone()
        };
        drop(bind(address, &probe_options)?);
    }
    let first = bind(address, &options)?;
    let bound = first
        .local_addr()
        .map_err(|source| BindError { address, source })?;
    let mut listeners = Vec::with_capacity(count);
    listeners.push(first);
    for _ in 1..count {
        listeners.push(bind(bound, &options)?);
    }
    Ok(listeners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn localhost0() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[test]
    fn group_shares_one_port() {
        let group = bind_group(localhost0(), 3, &ListenerOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let ports: Vec<u16> = group
            .iter()
            .map(|l| {
                l.local_addr()
                    .map(|a| a.port())
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0));
    }

    #[test]
    fn port_in_use_names_the_address() {
        let holder = std::net::TcpListener::bind(localhost0()).unwrap_or_else(|e| panic!("{e}"));
        let taken = holder.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let err = match bind_group(taken, 2, &ListenerOptions::default()) {
            Ok(_) => panic!("bind on a taken port succeeded"),
            Err(e) => e,
        };
        assert_eq!(err.address, taken);
        assert_eq!(err.source.kind(), io::ErrorKind::AddrInUse);
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot listen on {taken}: ")),
            "{text}"
        );
        assert!(text.contains("another process"), "{text}");
    }

    #[test]
    fn second_reuseport_group_is_refused() {
        let first = bind_group(localhost0(), 2, &ListenerOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let taken = first[0].local_addr().unwrap_or_else(|e| panic!("{e}"));
        assert!(bind_group(taken, 2, &ListenerOptions::default()).is_err());
    }
}
