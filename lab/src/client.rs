//! The client side of the lab's checks and of [`crate::Lab::connect`]: a TCP connection
//! from a fixed source port, run inside the gateway netns.
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The client side of [`Lab::connect`], run inside the gateway netns.
pub(crate) fn exchange(dest: SocketAddr, client_port: u16, payload: &[u8]) -> Result<Vec<u8>> {
    let mut stream = connect_from(dest, client_port)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    stream
        .write_all(payload)
        .context("could not send the payload")?;
    stream
        .shutdown(Shutdown::Write)
        .context("could not shut down writing")?;
    let mut echoed = Vec::new();
    if let Err(e) = stream.read_to_end(&mut echoed) {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            bail!("no end of the echo within 5 s (got {} bytes)", echoed.len());
        }
        return Err(e).context("could not read the echo");
    }
    Ok(echoed)
}

/// A TCP connection from source port `client_port` (SO_REUSEADDR) to `dest` within 3 s,
/// in the calling thread's netns.
pub(crate) fn connect_from(dest: SocketAddr, client_port: u16) -> Result<TcpStream> {
    let domain = if dest.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .context("could not create a TCP socket")?;
    socket
        .set_reuse_address(true)
        .context("could not set SO_REUSEADDR")?;
    let local: SocketAddr = if dest.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, client_port).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, client_port).into()
    };
    socket
        .bind(&local.into())
        .with_context(|| format!("could not bind source port {client_port}"))?;
    if let Err(e) = socket.connect_timeout(&dest.into(), CONNECT_TIMEOUT) {
        if e.raw_os_error() == Some(rustix::io::Errno::ADDRNOTAVAIL.raw_os_error()) {
            // The same 4-tuple is still in TIME_WAIT from an earlier connection.
            bail!("could not connect: {e} (the same source port to the same VIP was used less than 60 s ago; pick another client port)");
        }
        return Err(e).context("could not connect within 3 s");
    }
    Ok(socket.into())
}
