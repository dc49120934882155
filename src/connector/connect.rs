//! `connect`: one call that returns an authenticated socket to the peer, on the async [`Stack`].
//!
//! A thin layer over the poll-API [`Connector`]: it creates the sockets in your
//! [`ConnectResources`], runs the connector inside [`Stack::poll_with`] (woken by the sockets and by
//! the connector's own deadlines), and hands back the winning socket. Every other socket is removed
//! on every path.

use rand_core::CryptoRng;

use super::resources::Buffers;
use super::{
    ConnectEvent, ConnectResources, Connected, Connector, Error, Mediator, Path, Request, Sockets,
};
use crate::identity::{SaltyVerifier, Signer};
use crate::net::secure::SecureSocket;
use crate::net::tcp::TcpSocket;
use crate::net::{now, wake_on, IpEndpoint, Stack};
use crate::proto::client::MAX_CANDIDATES;
use crate::proto::SessionKey;
use crate::wire::Role;

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

/// Connect as `request` says: register with the mediator, punch, authenticate, and return the
/// connection on the secure channel.
///
/// `resources` hold every buffer (the winning candidate's become the returned socket's); the stack
/// needs [`ConnectResources::SOCKETS`] free socket slots. `rng` must be a cryptographically secure
/// source (a hardware RNG, or a [`Drbg`](crate::rng::Drbg) over a fresh seed from one): 32 bytes of it
/// seed the registration nonce, the ephemeral key, the local port and the retry jitter. Signatures
/// are verified with salty.
///
/// ```no_run
/// use embedded_io_async::Write;
/// use p2psc::connector::{connect, ConnectResources, Mediator, Request};
/// use p2psc::identity::{Keypair, PublicKey};
/// use p2psc::net::{Ipv4Address, Stack};
/// use p2psc::rng::Drbg;
///
/// async fn hello(stack: Stack<'_>, seed_from_trng: [u8; 32]) -> Result<(), p2psc::Error> {
///     let me = Keypair::from_seed(&[0xA1; 32]);
///     let peer = PublicKey::from_hex("8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394").unwrap();
///     let mediator = Mediator::new(Ipv4Address::new(203, 0, 113, 10), 7777);
///     let mut resources = ConnectResources::<1024, 1024>::new();
///     let mut rng = Drbg::new(seed_from_trng); // or the HAL's RNG
///     let request = Request::new(&me, peer, mediator);
///     let mut conn = connect(stack, &mut resources, &request, &mut rng).await?;
///     conn.socket.write_all(b"hello").await.ok();
///     Ok(())
/// }
/// ```
pub async fn connect<
    'a,
    S: Signer,
    M: AsRef<[Mediator]>,
    const RX: usize,
    const TX: usize,
    const CANDIDATES: usize,
    const RECORD_TX: usize,
    const RECORD_RX: usize,
>(
    stack: Stack<'a>,
    resources: &'a mut ConnectResources<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>,
    request: &Request<S, M>,
    rng: &mut impl CryptoRng,
) -> Result<SecureConnection<'a>, Error> {
    connect_observed(stack, resources, request, rng, |_| {}).await
}

/// [`connect`], reporting each [`ConnectEvent`] to `observe` as it happens (progress displays,
/// timelines, logs).
pub async fn connect_observed<
    'a,
    S: Signer,
    M: AsRef<[Mediator]>,
    const RX: usize,
    const TX: usize,
    const CANDIDATES: usize,
    const RECORD_TX: usize,
    const RECORD_RX: usize,
>(
    stack: Stack<'a>,
    resources: &'a mut ConnectResources<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>,
    request: &Request<S, M>,
    rng: &mut impl CryptoRng,
    observe: impl FnMut(ConnectEvent),
) -> Result<SecureConnection<'a>, Error> {
    #[allow(clippy::let_unit_value)] // evaluates the check when the program is built
    let () = ConnectResources::<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>::CHECK_RECORDS;
    let parts = resources.parts();
    let c = run(
        stack,
        parts.mediator,
        parts.candidates,
        request,
        rng,
        observe,
    )
    .await?;
    let (record_rx, record_tx) = parts.records;
    let socket = SecureSocket::new(c.socket, &c.session_key, c.role, record_rx, record_tx);
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
/// It uses no record buffers: give it [`PlaintextResources`](super::PlaintextResources).
pub async fn connect_plaintext<
    'a,
    S: Signer,
    M: AsRef<[Mediator]>,
    const RX: usize,
    const TX: usize,
    const CANDIDATES: usize,
    const RECORD_TX: usize,
    const RECORD_RX: usize,
>(
    stack: Stack<'a>,
    resources: &'a mut ConnectResources<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>,
    request: &Request<S, M>,
    rng: &mut impl CryptoRng,
    observe: impl FnMut(ConnectEvent),
) -> Result<PeerConnection<'a>, Error> {
    let parts = resources.parts();
    run(
        stack,
        parts.mediator,
        parts.candidates,
        request,
        rng,
        observe,
    )
    .await
}

/// The socket with handle `winner` — a candidate, or (relayed) the mediator socket. Dropping a
/// `TcpSocket` removes it from the set: every other socket goes. Not inlined: one copy instead of one
/// inside each connect future (about 80 bytes of a device's flash).
#[inline(never)]
fn take_winner<'a>(
    winner: crate::net::SocketHandle,
    mediator: TcpSocket<'a>,
    mut candidates: heapless::Vec<TcpSocket<'a>, MAX_CANDIDATES>,
) -> Result<TcpSocket<'a>, Error> {
    if winner == mediator.handle() {
        return Ok(mediator);
    }
    let position = candidates.iter().position(|s| s.handle() == winner);
    Ok(candidates.swap_remove(position.ok_or(Error::BadSocket)?))
}

/// Create the sockets on the buffers, run the connector to its outcome, keep the winner.
async fn run<'a, S: Signer, M: AsRef<[Mediator]>>(
    stack: Stack<'a>,
    mediator: Buffers<'a>,
    candidates: heapless::Vec<Buffers<'a>, MAX_CANDIDATES>,
    request: &Request<S, M>,
    rng: &mut impl CryptoRng,
    mut observe: impl FnMut(ConnectEvent),
) -> Result<PeerConnection<'a>, Error> {
    if stack.free_socket_slots() < 1 + candidates.len() {
        return Err(Error::SocketSetFull);
    }
    let mediator_socket = TcpSocket::new(stack, mediator.0, mediator.1);
    let sockets: heapless::Vec<TcpSocket<'a>, MAX_CANDIDATES> = candidates
        .into_iter()
        .map(|(rx, tx)| TcpSocket::new(stack, rx, tx))
        .collect();
    let mut handles = Sockets {
        mediator: mediator_socket.handle(),
        candidates: [None; 2],
    };
    for (slot, socket) in handles.candidates.iter_mut().zip(&sockets) {
        *slot = Some(socket.handle());
    }
    let mut connector = Connector::with_mediators(
        request.config,
        &request.signer,
        SaltyVerifier,
        request.peer,
        &request.mediators,
        handles,
        rng,
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
    let connected = result?;
    Ok(PeerConnection {
        socket: take_winner(connected.socket, mediator_socket, sockets)?,
        path: connected.path,
        remote: connected.remote,
        role: connected.role,
        session_key: connected.session_key,
    })
}
