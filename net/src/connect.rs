//! Outgoing TCP connections (clients, bridges): connect on the current
//! monoio runtime, optionally from a chosen source address (to open more
//! connections to one server than one source address has ephemeral ports).

use std::io;
use std::net::{IpAddr, SocketAddr};

use monoio::net::TcpStream;

/// Opens a TCP connection to `addr`, from `bind_ip` (any port) if given,
/// else from whatever source the kernel picks.
pub async fn connect_tcp(addr: SocketAddr, bind_ip: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(ip) = bind_ip else {
        return TcpStream::connect_addr(addr).await;
    };
    // monoio's connect makes its own socket, so a bound one is connected
    // non-blocking by hand and adopted once writable.
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // A second descriptor of the same socket, to read SO_ERROR once the
    // connect finished (monoio's stream does not expose its fd as AsFd).
    let probe = socket.try_clone()?;
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    stream.writable(false).await?;
    if let Some(e) = probe.take_error()? {
        return Err(e);
    }
    Ok(stream)
}
