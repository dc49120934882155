//! Kernel sockets that share the punch port *P* (protocol §8.1): the mediator connection, every punch
//! connection and the listener bind P before they connect or listen.
//!
//! # Port reuse, by operating system
//!
//! - **Linux**: every socket on P sets `SO_REUSEADDR` and `SO_REUSEPORT` before `bind` (all under the
//!   same user). Then a listener and any number of connections can share P; an incoming segment goes to
//!   the connection whose 4-tuple it matches first (the established-socket lookup comes before the
//!   listener lookup), so a listener never takes a segment of a dialled connection — not even the
//!   peer's SYN that crosses ours.
//! - **macOS / BSD**: the same two options give the same sharing (`SO_REUSEPORT` is what lets a second
//!   socket bind a port in use; `SO_REUSEADDR` alone is not enough once one listens).
//! - **Windows**: there is no `SO_REUSEPORT`, and `SO_REUSEADDR` means "steal the port"; this module
//!   builds there, but punching from one port with several sockets is not expected to work and is
//!   untested.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A TCP socket bound to `local`, sharing the port with the others of the punch.
fn bound(local: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    s.set_reuse_port(true)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    Ok(s)
}

/// Whether no socket at all holds `local`'s port: an exclusive bind (no reuse options) succeeds. A
/// drawn punch port that another socket holds — with `SO_REUSEPORT` under the same user, it would even
/// share the port and take some of the peer's SYNs — is drawn again.
pub(crate) fn is_free(local: SocketAddr) -> bool {
    Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .and_then(|s| s.bind(&local.into()))
    .is_ok()
}

/// Connect from `local` to `remote`; the future completes when the connection is established or has
/// failed. Dropping it before then closes the socket without a RST (a socket in SYN-SENT just goes).
pub(crate) fn connect(
    local: SocketAddr,
    remote: SocketAddr,
) -> io::Result<impl std::future::Future<Output = io::Result<TcpStream>> + Send + 'static> {
    let socket = TcpSocket::from_std_stream(bound(local)?.into());
    Ok(socket.connect(remote))
}

/// Listen on `local` (the punch port).
pub(crate) fn listen(local: SocketAddr) -> io::Result<TcpListener> {
    let s = bound(local)?;
    s.listen(8)?;
    TcpListener::from_std(s.into())
}

/// The unspecified address of `remote`'s family with port `port`: where the first socket binds.
pub(crate) fn any_port(remote: SocketAddr, port: u16) -> SocketAddr {
    match remote.ip() {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port),
    }
}

/// Close `stream` with a RST (a linger of zero): a candidate that failed, or one that lost.
pub(crate) fn abort(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that a socket of the punch holds (with the reuse options, as another p2psc process
    /// would) is not free; once it is closed, it is.
    #[test]
    fn a_port_held_by_another_socket_is_not_free() {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let held = bound(any).unwrap();
        let local = held.local_addr().unwrap().as_socket().unwrap();
        held.listen(1).unwrap();
        assert!(!is_free(local));
        drop(held);
        assert!(is_free(local));
    }
}
