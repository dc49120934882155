//! p2psc on ordinary OS sockets: a direct, mutually authenticated TCP connection to a peer — a device
//! behind its home router, another laptop, a server — through a p2psc mediator, with tokio.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use p2psc::identity::{Keypair, PublicKey};
//! use tokio::io::AsyncWriteExt;
//!
//! let me = Keypair::from_seed(&[0xA1; 32]); // load yours from a key file (`p2psc keygen`)
//! let device: PublicKey = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394".parse().unwrap();
//! let mut conn = p2psc_tokio::connect(&me, &device, "mediator.example.net:7777", Default::default()).await?;
//! println!("connected to {} as {:?}", conn.peer(), conn.role());
//! conn.write_all(b"hello").await?;
//! # Ok(()) }
//! ```
//!
//! Several mediators are given as one comma-separated list (`"m1.example.net:7777,m2.example.net:7777"`):
//! both peers rank them by their pair of keys ([`p2psc::proto::rendezvous`], protocol §13) and meet on
//! the first that works; a mediator that is down, or closes before the Match, is left for the next.
//!
//! It is the same protocol code as the firmware's: the sans-IO [`p2psc::proto::client::Client`] decides
//! everything (registration, the punch and its retry schedule, the handshake, which connection wins);
//! this crate only moves bytes between it and kernel sockets, all bound to one local port with
//! `SO_REUSEADDR` and `SO_REUSEPORT` (see the `socket` module docs for what each OS allows).

mod secure;
mod shell;
mod socket;

pub use p2psc::proto::client::Path;
pub use secure::{AwsLcCipher, SecureStream};

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use p2psc::identity::{Keypair, PublicKey};
use p2psc::proto::client::{Client, ConnectConfig, ConnectEvent};
use p2psc::proto::rendezvous;
use p2psc::proto::SessionKey;
use p2psc::wire::Role;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    /// The protocol's deadlines and retry policy ([`ConnectConfig`]).
    pub protocol: ConnectConfig,
    /// Hand over the plain TCP stream instead of the secure channel (protocol §12.8). Only for
    /// applications that bring their own TLS or Noise over it: the stream is then neither encrypted
    /// nor integrity-protected, and an attacker on the path — or a lying mediator pointing both peers
    /// at its relay — reads and changes it while both handshakes succeed. Both peers must agree.
    pub plaintext: bool,
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum Error {
    /// The mediator's name did not resolve (or resolved to nothing).
    Resolve(String, io::Error),
    /// A local socket could not be set up (for example the local port is in use).
    Bind(io::Error),
    /// The protocol failed: the mediator, the punch or the peer handshake ([`p2psc::Error`]).
    Connect(p2psc::Error),
}

impl Error {
    fn bind(e: io::Error) -> Error {
        Error::Bind(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Resolve(name, e) => write!(f, "cannot resolve mediator {name}: {e}"),
            Error::Bind(e) => write!(f, "cannot set up a local socket: {e}"),
            Error::Connect(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Bind(e) | Error::Resolve(_, e) => e,
            e => io::Error::other(e),
        }
    }
}

/// An authenticated connection to the peer, [`AsyncRead`] + [`AsyncWrite`]: by default the secure
/// channel (encrypted and integrity-protected, with an authenticated end of stream), or with
/// [`Config::plaintext`] the TCP stream itself.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    path: Path,
    peer: SocketAddr,
    local: SocketAddr,
    role: Role,
    session_key: SessionKey,
}

impl Connection {
    /// The peer's endpoint: as seen from here (direct), or as the mediator saw it (relayed).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Direct, or relayed through the mediator (protocol §14: authenticated and encrypted end to end
    /// all the same; the mediator forwards ciphertext).
    pub fn path(&self) -> Path {
        self.path
    }

    /// Our end of the connection (the punch port; relayed: our end of the mediator connection).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Our role in the pair.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The key both sides derived in the handshake.
    pub fn session_key(&self) -> SessionKey {
        self.session_key
    }

    /// Whether the stream is the secure channel (the default) or plaintext ([`Config::plaintext`]).
    pub fn is_secure(&self) -> bool {
        matches!(self.stream, Stream::Secure(_))
    }
}

/// What the application reads and writes.
#[derive(Debug)]
enum Stream {
    Secure(Box<SecureStream>),
    /// The TCP stream, after the bytes that arrived behind the handshake.
    Plain {
        stream: TcpStream,
        pending: Vec<u8>,
    },
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Secure(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Plain { pending, .. } if !pending.is_empty() => {
                let n = pending.len().min(buf.remaining());
                buf.put_slice(&pending[..n]);
                pending.drain(..n);
                Poll::Ready(Ok(()))
            }
            Stream::Plain { stream, .. } => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Secure(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Plain { stream, .. } => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Secure(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Plain { stream, .. } => Pin::new(stream).poll_flush(cx),
        }
    }

    /// With the secure channel: our authenticated end of stream, then FIN.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Secure(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Plain { stream, .. } => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// Connect to `peer` through the mediator at `mediator` (`host:port`, a DNS name or an IP literal, v4
/// or v6): register, punch, authenticate, and return the connection.
///
/// `mediator` may list several, separated by commas: the pair meets on the first of them, in the
/// ranking of its two keys (protocol §13), that can serve it. Each name is resolved once, and ranks as
/// the first address it resolves to — the peer must reach the mediator at that address too (a device
/// is given addresses). A name that does not resolve is left out (the others keep their order); if
/// none resolves, the error is the first name's.
pub async fn connect(
    keypair: &Keypair,
    peer: &PublicKey,
    mediator: &str,
    config: Config,
) -> Result<Connection, Error> {
    connect_observed(keypair, peer, mediator, config, |_| {}).await
}

/// [`connect`], reporting each [`ConnectEvent`] to `observe` as it happens.
pub async fn connect_observed(
    keypair: &Keypair,
    peer: &PublicKey,
    mediator: &str,
    config: Config,
    observe: impl FnMut(ConnectEvent),
) -> Result<Connection, Error> {
    let mediators = ranked(keypair.public_key(), *peer, resolve_all(mediator).await?);
    let mut client = client_on_a_free_port(&config, keypair, peer, mediators[0])?;
    client.set_mediators(mediators.len());
    let won = shell::Shell::new(client, keypair, mediators)
        .run(observe)
        .await?;
    let (key, role) = (won.winner.session_key, won.winner.role);
    let stream = match config.plaintext {
        false => Stream::Secure(Box::new(SecureStream::new(
            won.stream,
            won.pending,
            &key,
            role,
        ))),
        true => Stream::Plain {
            stream: won.stream,
            pending: won.pending,
        },
    };
    Ok(Connection {
        stream,
        path: won.winner.path(),
        peer: won.winner.remote,
        local: won.local,
        role: won.winner.role,
        session_key: won.winner.session_key,
    })
}

/// The client machine, on a punch port that no other socket holds: a random port is drawn again (a
/// few times) while one does; a configured port is taken as it is.
fn client_on_a_free_port(
    config: &Config,
    keypair: &Keypair,
    peer: &PublicKey,
    mediator: SocketAddr,
) -> Result<Client, Error> {
    const DRAWS: usize = 8;
    let mut draws = 0;
    loop {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| Error::Bind(io::Error::other(e)))?;
        let now = p2psc::time::Instant::ZERO;
        let client = Client::new(config.protocol, keypair.public_key(), *peer, 2, seed, now);
        draws += 1;
        let port = socket::any_port(mediator, client.local_port());
        if config.protocol.local_port.is_some() || draws == DRAWS || socket::is_free(port) {
            return Ok(client);
        }
    }
}

/// The addresses of the comma-separated mediators in `names` that resolve, in the order given; at
/// least one, or the first name's error.
async fn resolve_all(names: &str) -> Result<Vec<SocketAddr>, Error> {
    let mut addrs = Vec::new();
    let mut first_error = None;
    for name in split_mediators(names) {
        match resolve(name).await {
            Ok(addr) => addrs.push(addr),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (addrs.is_empty(), first_error) {
        (true, Some(e)) => Err(e),
        (true, None) => Err(Error::Resolve(
            names.to_owned(),
            io::Error::new(io::ErrorKind::InvalidInput, "no mediator given"),
        )),
        _ => Ok(addrs),
    }
}

/// The mediators of a comma-separated list, trimmed, empty items left out.
pub fn split_mediators(names: &str) -> impl Iterator<Item = &str> {
    names.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// `mediators` in the pair's ranking (protocol §13), best first.
fn ranked(own: PublicKey, peer: PublicKey, mediators: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let pair = rendezvous::Pair::new(own, peer);
    pair.rank(&mediators, |a| rendezvous::MediatorId::new(*a))
        .map(|i| mediators[i])
        .collect()
}

/// The mediator's address: the first that `name` resolves to.
async fn resolve(name: &str) -> Result<SocketAddr, Error> {
    let resolve_error = |e| Error::Resolve(name.to_owned(), e);
    let mut addrs = tokio::net::lookup_host(name).await.map_err(resolve_error)?;
    addrs
        .next()
        .ok_or_else(|| resolve_error(io::Error::from(io::ErrorKind::NotFound)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_list_names_each_mediator_once_trimmed() {
        let names: Vec<_> = split_mediators(" a.example:1, [::1]:2,,b:3 ").collect();
        assert_eq!(names, ["a.example:1", "[::1]:2", "b:3"]);
    }

    #[tokio::test]
    async fn names_that_do_not_resolve_are_left_out_unless_none_does() {
        // A name without a port fails at once, without asking a resolver.
        let addrs = resolve_all("127.0.0.1:7001,no-port,127.0.0.2:7002")
            .await
            .unwrap();
        assert_eq!(addrs.len(), 2);
        assert!(matches!(
            resolve_all("no-port").await,
            Err(Error::Resolve(name, _)) if name == "no-port"
        ));
        assert!(resolve_all(" , ").await.is_err());
    }

    #[test]
    fn both_peers_rank_the_same_addresses_alike() {
        let (a, b) = (
            Keypair::from_seed(&[1; 32]).public_key(),
            Keypair::from_seed(&[2; 32]).public_key(),
        );
        let list: Vec<SocketAddr> = (1..=5)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect();
        let mut reversed = list.clone();
        reversed.reverse();
        assert_eq!(ranked(a, b, list), ranked(b, a, reversed));
    }
}
