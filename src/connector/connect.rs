//! `connect`: one call that returns an authenticated socket to the peer, on the async [`Stack`].
//!
//! A thin layer over the poll-API [`Connector`]: it creates the sockets from your buffers, runs the
//! connector inside [`Stack::poll_with`] (woken by the sockets and by the connector's own deadlines), and
//! hands back the winning socket. Every other socket is removed on every path.

use super::{ConnectConfig, ConnectEvent, Connected, Connector, Error, Path, Sockets};
use crate::identity::{PublicKey, SaltyVerifier, Signer};
use crate::net::secure::SecureSocket;
use crate::net::tcp::TcpSocket;
use crate::net::{now, wake_on, IpAddress, IpEndpoint, Stack};
use crate::proto::SessionKey;
use crate::wire::Role;

/// The peer to connect to: the application knows its public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Peer {
    /// The peer's Ed25519 public key.
    pub key: PublicKey,
}

impl Peer {
    /// The peer with this key.
    pub const fn new(key: PublicKey) -> Peer {
        Peer { key }
    }
}

/// The mediator both peers register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Mediator {
    /// Its address and TCP port.
    pub endpoint: IpEndpoint,
}

impl Mediator {
    /// The mediator at `addr`:`port`.
    pub fn new(addr: impl Into<IpAddress>, port: u16) -> Mediator {
        Mediator {
            endpoint: IpEndpoint::new(addr.into(), port),
        }
    }
}

/// The buffers `connect` needs, all yours. The peer socket's buffers become the returned socket's.
pub struct ConnectBuffers<'a> {
    /// Receive buffer of the peer socket.
    pub rx: &'a mut [u8],
    /// Transmit buffer of the peer socket.
    pub tx: &'a mut [u8],
    /// Receive buffer of the mediator connection (at least [`crate::wire::MAX_FRAME_LEN`]; 256 is ample).
    pub mediator_rx: &'a mut [u8],
    /// Transmit buffer of the mediator connection (same).
    pub mediator_tx: &'a mut [u8],
    /// Buffers of a second candidate socket, so the LAN and public paths to a peer behind the same
    /// public address can be tried at once. Without it they are tried in turn.
    pub race: Option<(&'a mut [u8], &'a mut [u8])>,
}

/// The secure channel's record buffers (protocol §12), yours: `rx` holds one incoming record, so give
/// it [`MAX_RECORD_LEN`](crate::proto::channel::MAX_RECORD_LEN) bytes; `tx` one outgoing record (at
/// least 20 bytes; the maximum makes the fewest records).
pub struct RecordBuffers<'a> {
    /// One incoming record.
    pub rx: &'a mut [u8],
    /// One outgoing record.
    pub tx: &'a mut [u8],
}

/// An authenticated connection to the peer, on the secure channel: what is written is encrypted and
/// integrity-protected, and the stream ends only with the peer's authenticated end-of-stream record.
pub struct SecureConnection<'a> {
    /// The secure socket, ready for `read`/`write` (embedded-io-async).
    pub socket: SecureSocket<'a, 'a>,
    /// Direct, or relayed through the mediator (then the socket is the mediator connection's, with
    /// its buffers).
    pub path: Path,
    /// The peer's endpoint as seen from here (relayed: as the mediator saw it).
    pub remote: IpEndpoint,
    /// Our role in the pair.
    pub role: Role,
    /// The key both sides derived (the channel's keys derive from it).
    pub session_key: SessionKey,
}

/// An authenticated connection to the peer whose stream is plaintext ([`connect_plaintext`]).
pub struct PeerConnection<'a> {
    /// The TCP socket, ready for `read`/`write`.
    pub socket: TcpSocket<'a>,
    /// Direct, or relayed through the mediator (then the socket is the mediator connection's, with
    /// its buffers).
    pub path: Path,
    /// The peer's endpoint as seen from here (relayed: as the mediator saw it).
    pub remote: IpEndpoint,
    /// Our role in the pair.
    pub role: Role,
    /// The key both sides derived.
    pub session_key: SessionKey,
}

/// Connect to `peer` through `mediator`: register, punch, authenticate, and return the connection on
/// the secure channel.
///
/// `seed` must be 32 fresh bytes from a cryptographically secure source (a hardware RNG): the registration
/// nonce and the ephemeral key derive from it. Signatures are verified with salty.
#[allow(clippy::too_many_arguments)]
pub async fn connect<'a, S: Signer>(
    stack: Stack<'a>,
    signer: &S,
    peer: &Peer,
    mediator: &Mediator,
    buffers: ConnectBuffers<'a>,
    records: RecordBuffers<'a>,
    config: ConnectConfig,
    seed: [u8; 32],
) -> Result<SecureConnection<'a>, Error> {
    let observe = |_| {};
    connect_observed(
        stack, signer, peer, mediator, buffers, records, config, seed, observe,
    )
    .await
}

/// [`connect`], reporting each [`ConnectEvent`] to `observe` as it happens (progress displays,
/// timelines, logs).
#[allow(clippy::too_many_arguments)]
pub async fn connect_observed<'a, S: Signer>(
    stack: Stack<'a>,
    signer: &S,
    peer: &Peer,
    mediator: &Mediator,
    buffers: ConnectBuffers<'a>,
    records: RecordBuffers<'a>,
    config: ConnectConfig,
    seed: [u8; 32],
    observe: impl FnMut(ConnectEvent),
) -> Result<SecureConnection<'a>, Error> {
    let c = connect_plaintext(
        stack, signer, peer, mediator, buffers, config, seed, observe,
    )
    .await?;
    let socket = SecureSocket::new(c.socket, &c.session_key, c.role, records.rx, records.tx);
    Ok(SecureConnection {
        socket,
        path: c.path,
        remote: c.remote,
        role: c.role,
        session_key: c.session_key,
    })
}

/// [`connect_observed`] without the secure channel: the application gets the TCP socket itself,
/// neither encrypted nor integrity-protected (protocol §12.8). Only for applications that bring their
/// own TLS or Noise over it — an attacker on the path, or a lying mediator pointing both peers at its
/// relay, reads and changes a plaintext stream while both handshakes succeed. Both peers must agree.
#[allow(clippy::too_many_arguments)]
pub async fn connect_plaintext<'a, S: Signer>(
    stack: Stack<'a>,
    signer: &S,
    peer: &Peer,
    mediator: &Mediator,
    buffers: ConnectBuffers<'a>,
    config: ConnectConfig,
    seed: [u8; 32],
    mut observe: impl FnMut(ConnectEvent),
) -> Result<PeerConnection<'a>, Error> {
    let mediator_socket = TcpSocket::new(stack, buffers.mediator_rx, buffers.mediator_tx);
    let first = TcpSocket::new(stack, buffers.rx, buffers.tx);
    let second = buffers.race.map(|(rx, tx)| TcpSocket::new(stack, rx, tx));
    let handles = Sockets {
        mediator: mediator_socket.handle(),
        candidates: [Some(first.handle()), second.as_ref().map(|s| s.handle())],
    };
    let mut connector = Connector::new(
        config,
        signer,
        SaltyVerifier,
        peer.key,
        mediator.endpoint,
        handles,
        seed,
        now(),
    );
    let result: Result<Connected, Error> = stack
        .poll_with(|cx, iface, sockets| {
            let poll = connector.poll(now(), iface, sockets);
            while let Some(event) = connector.next_event() {
                observe(event);
            }
            if poll.is_pending() {
                wake_on(cx, sockets, handles.all(), connector.poll_at());
            }
            poll
        })
        .await;
    // Dropping a TcpSocket removes it from the set: everything but the winner goes.
    let connected = result?;
    let mut sockets = [Some(mediator_socket), Some(first), second];
    let winner = sockets
        .iter_mut()
        .find(|s| s.as_ref().is_some_and(|s| s.handle() == connected.socket))
        .and_then(Option::take)
        .ok_or(Error::BadSocket)?;
    drop(sockets);
    Ok(PeerConnection {
        socket: winner,
        path: connected.path,
        remote: connected.remote,
        role: connected.role,
        session_key: connected.session_key,
    })
}
