//! The punch on smoltcp, as a poll API: one [`Connector`] drives registration, the TCP simultaneous
//! open and the peer handshake over *your* smoltcp [`Interface`] and [`SocketSet`], advanced by
//! [`Connector::poll`]; and [`connect`], the one async call over the [`net`](crate::net) stack.
//!
//! The async call takes a [`Request`] (our signer, the peer's key, the mediator, a [`Config`] of
//! embassy-time durations), the [`ConnectResources`] holding every buffer, and a
//! `rand_core` RNG. The poll API counts in smoltcp's time, like the `Interface::poll` it runs beside,
//! and takes the protocol's [`ConnectConfig`] (or a [`Config`]).
//!
//! The [`Connector`] is for firmware that runs smoltcp itself (RTIC, a super-loop). It holds no protocol
//! decision: those are the sans-IO [`Client`]'s (registration, back-off,
//! and the punch of [`proto::punch`](crate::proto::punch): targets, the retry schedule both peers share,
//! each attempt's life cycle, the handshake, the racing leader's Confirm). The connector reports what
//! its sockets do, feeds and drains them, and carries out the client's actions on them.
//!
//! What happens, in order:
//! 1. The mediator connection goes out from a random (or configured) local port *P*, and registers.
//! 2. On Match, it stays open (its NAT mapping is the one the peer aims at) and a candidate socket
//!    *holds* port *P* by listening until the start time, so a peer SYN that arrives early is answered
//!    with SYN|ACK instead of a reset.
//! 3. At the start time the candidates connect from *P* to the peer's observed endpoint — and, when both
//!    peers share one public address, to its LAN endpoint too — so each NAT sees outbound traffic and
//!    lets the other's SYN in (TCP simultaneous open, RFC 9293 §3.5).
//! 4. After a reset or an attempt timeout, a candidate holds the port again and retries at its next
//!    slot of the schedule it shares with the peer, until the punch deadline. Attempts end without a
//!    RST, which would end our own NAT's session for the peer (protocol §8.3).
//! 5. The peer handshake runs on each established candidate; the first that authenticates wins (the
//!    leader confirms it when candidates race), the others and the mediator connection are aborted.
//!
//! # Sockets
//!
//! [`connect`] creates its sockets in your [`ConnectResources`] and needs
//! [`ConnectResources::SOCKETS`] free slots in the stack (else [`Error::SocketSetFull`]). With the poll
//! API you add the sockets to your set (with your buffers) and pass their handles ([`Sockets`]): the
//! mediator socket needs at least [`wire::MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) bytes each way;
//! each candidate socket becomes the application's socket if it wins, so size its buffers for the
//! application (and at least one frame each way). With the feature `relay` a relayed connection is the
//! mediator socket itself (protocol §14.4), so size the mediator socket's buffers for the application
//! too. One candidate socket is enough; a second lets the LAN
//! and public paths be tried at once. Handles that are not TCP sockets of the set, or buffers smaller
//! than a frame, end the connection with [`Error::BadSocket`] at the first poll. Do not remove
//! the sockets while the connector runs. On every outcome every socket is left closed except the
//! winner, which [`Connector::poll`] returns.

#[cfg(feature = "dns")]
mod by_name;
mod connect;
mod request;
mod resources;
mod socket;

#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub use by_name::{connect_by_name, resolve_mediators, MediatorName, MAX_NAMED_MEDIATORS};
pub use connect::{connect, connect_observed, connect_plaintext, PeerConnection, SecureConnection};
pub use request::{Config, Mediator, Request};
pub use resources::{ConnectResources, PlaintextResources, MEDIATOR_BUFFER_LEN};
pub use socket::{feed, send_frames};

#[cfg(feature = "relay")]
pub use crate::proto::client::RelayMode;
pub use crate::proto::client::{ConnectConfig, ConnectEvent, Error, Path};
pub use crate::proto::punch::{Dialers, PunchConfig, Schedule, Slot, SlotConfig};

use core::net::SocketAddr;
use core::task::Poll;

use rand_core::CryptoRng;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::wire::IpEndpoint;

use crate::identity::{PublicKey, Signer, Verifier};
use crate::proto::client::{Action, Client, Via, Won};
use crate::proto::punch;
use crate::proto::rendezvous::{self, MediatorId};
use crate::proto::SessionKey;
use crate::time::Instant;
use crate::wire::Role;
use socket::{link, quiet_close, tcp, try_tcp, usable};

/// The result: an established, authenticated TCP connection to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connected {
    /// The winning socket, now the application's (Nagle is off; turn it back on if you like): a
    /// candidate socket, or, relayed, the mediator socket.
    pub socket: SocketHandle,
    /// Direct, or relayed through the mediator (protocol version 2, feature `relay`).
    pub path: Path,
    /// The peer's endpoint: as seen from here (direct), or as the mediator saw it (relayed).
    pub remote: IpEndpoint,
    /// Our role.
    pub role: Role,
    /// The key both sides derived in the handshake.
    pub session_key: SessionKey,
}

/// The sockets a [`Connector`] may use, all TCP sockets in your set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sockets {
    /// For the mediator connection.
    pub mediator: SocketHandle,
    /// For the peer: the first is always used; the second, if any, lets two candidate paths race.
    pub candidates: [Option<SocketHandle>; 2],
}

impl Sockets {
    /// Every handle, the mediator's first.
    pub fn all(&self) -> impl Iterator<Item = SocketHandle> {
        [Some(self.mediator)]
            .into_iter()
            .chain(self.candidates)
            .flatten()
    }

    /// The candidate handles in use, in order.
    fn candidates(&self) -> heapless::Vec<SocketHandle, 2> {
        self.candidates.into_iter().flatten().collect()
    }
}

/// One connection to a peer through a mediator — or the first that works of several, in the pair's
/// ranking (protocol §13) — advanced by [`poll`](Connector::poll).
///
/// `M` holds the mediators: one [`Mediator`] (what [`new`](Connector::new) makes), or a list of them (an
/// array, a slice) for [`with_mediators`](Connector::with_mediators).
pub struct Connector<S: Signer, V: Verifier, M: AsRef<[Mediator]> = Mediator> {
    client: Client,
    signer: S,
    verifier: V,
    mediators: M,
    sockets: Sockets,
    candidates: heapless::Vec<SocketHandle, 2>,
    /// Whether the sockets were checked ([`Error::BadSocket`]).
    checked: bool,
    /// Whether the outcome was returned.
    finished: bool,
}

impl<S: Signer, V: Verifier, M: AsRef<[Mediator]>> core::fmt::Debug for Connector<S, V, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connector")
            .field("mediators", &self.mediators.as_ref())
            .field("client", &self.client)
            .finish()
    }
}

/// `addr` as a smoltcp endpoint; `None` for an IPv6 address when p2psc is built without `ipv6`.
fn endpoint(addr: SocketAddr) -> Option<IpEndpoint> {
    match addr {
        SocketAddr::V4(a) => Some(a.into()),
        #[cfg(feature = "ipv6")]
        SocketAddr::V6(a) => Some(a.into()),
        #[cfg(not(feature = "ipv6"))]
        SocketAddr::V6(_) => None,
    }
}

impl<S: Signer, V: Verifier> Connector<S, V> {
    /// Start connecting to `peer` through `mediator`, as `config` says (the protocol's
    /// [`ConnectConfig`], or the async API's [`Config`]). `rng` is a cryptographically secure random
    /// source (a hardware RNG, or a [`Drbg`](crate::rng::Drbg) over a fresh seed from one): the nonce,
    /// ephemeral key, port and jitter derive from 32 bytes of it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: impl Into<ConnectConfig>,
        signer: S,
        verifier: V,
        peer: PublicKey,
        mediator: impl Into<IpEndpoint>,
        sockets: Sockets,
        rng: &mut impl CryptoRng,
        now: Instant,
    ) -> Self {
        let mediator = Mediator {
            endpoint: mediator.into(),
        };
        Connector::with_mediators(config, signer, verifier, peer, mediator, sockets, rng, now)
    }
}

impl<S: Signer, V: Verifier, M: AsRef<[Mediator]>> Connector<S, V, M> {
    /// [`new`](Connector::new) with several mediators: the pair meets on the first of them, in the
    /// pair's ranking (protocol §13), that can serve it; the peer must know the same ones (by address).
    /// An empty list fails with [`Error::NoRoute`] at the first poll.
    #[allow(clippy::too_many_arguments)]
    pub fn with_mediators(
        config: impl Into<ConnectConfig>,
        signer: S,
        verifier: V,
        peer: PublicKey,
        mediators: M,
        sockets: Sockets,
        rng: &mut impl CryptoRng,
        now: Instant,
    ) -> Self {
        let candidates = sockets.candidates();
        let own = signer.public_key();
        let seed = crate::rng::seed_from(rng);
        let mut client = Client::new(config.into(), own, peer, candidates.len(), seed, now);
        client.set_mediators(mediators.as_ref().len());
        Connector {
            client,
            signer,
            verifier,
            mediators,
            sockets,
            candidates,
            checked: false,
            finished: false,
        }
    }

    /// The error, once failed.
    pub fn error(&self) -> Option<Error> {
        self.client.result()?.err()
    }

    /// The local port of the mediator connection and the punch.
    pub fn local_port(&self) -> u16 {
        self.client.local_port()
    }

    /// The next progress event, oldest first (the queue keeps the latest 8).
    pub fn next_event(&mut self) -> Option<ConnectEvent> {
        self.client.next_event()
    }

    /// When [`poll`](Self::poll) must run next at the latest (besides after any interface activity).
    pub fn poll_at(&self) -> Option<Instant> {
        match self.finished {
            true => None,
            false => self.client.poll_at(),
        }
    }

    /// Advance: call after every `Interface::poll` and at [`poll_at`](Self::poll_at). Returns
    /// `Poll::Ready` once, with the authenticated connection or the error; every socket but the winner
    /// is closed by then.
    pub fn poll(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Poll<Result<Connected, Error>> {
        if self.finished {
            return Poll::Pending;
        }
        if !core::mem::replace(&mut self.checked, true) {
            self.check(sockets);
        }
        // Each round moves bytes and carries out actions; a few rounds carry one poll as far as the
        // sockets allow (held port accepted → established → PeerAuth sent). The poll that brings the
        // Match ends there, so that whoever reads the events sees it before the first SYN.
        for _ in 0..4 {
            let punching = self.client.is_punching();
            let moved = self.round(now, iface, sockets);
            let matched = !punching && self.client.is_punching();
            if self.client.result().is_some() || !moved || matched {
                break;
            }
        }
        let Some(result) = self.client.result() else {
            return Poll::Pending;
        };
        self.finished = true;
        let result = result.and_then(|w| self.connected(w, sockets));
        let winner = result.ok().map(|c| c.socket);
        // Through the checked lookup: after BadSocket a handle may be no TCP socket of this set.
        for handle in self.sockets.all().filter(|h| Some(*h) != winner) {
            if let Some(s) = try_tcp(sockets, handle) {
                s.abort();
            }
        }
        Poll::Ready(result)
    }

    /// Check the handles once: a bad one would panic inside smoltcp.
    fn check(&mut self, sockets: &mut SocketSet<'_>) {
        let all_usable = self.sockets.all().all(|h| usable(sockets, h));
        if self.candidates.is_empty() || !all_usable {
            self.client.fail(Error::BadSocket);
        }
    }

    /// One round: report the sockets, feed them, act, send. Returns whether anything happened.
    // Out of line: `poll` calls it in a loop that the optimiser unrolls, which copied it 4 times.
    #[inline(never)]
    fn round(&mut self, now: Instant, iface: &mut Interface, sockets: &mut SocketSet<'_>) -> bool {
        if self.client.result().is_some() {
            return false;
        }
        let (client, signer, verifier) = (&mut self.client, &self.signer, &self.verifier);
        let m = tcp(sockets, self.sockets.mediator);
        client.observe_mediator(link(m));
        let mut moved = socket::feed(m, &mut |data| {
            client.receive_mediator(now, signer, verifier, data)
        });
        // The probe borrows the first candidate socket until the Match (the client ignores it after).
        #[cfg(feature = "relay")]
        client.observe_probe(link(tcp(sockets, self.candidates[0])));
        for (k, handle) in self.candidates.iter().enumerate() {
            let s = tcp(sockets, *handle);
            client.observe(k, link(s));
            moved |= socket::feed(s, &mut |data| client.receive(k, verifier, data));
        }
        while let Some(action) = self.client.poll(now) {
            moved = true;
            self.apply(action, iface, sockets);
        }
        let client = &mut self.client;
        let m = tcp(sockets, self.sockets.mediator);
        moved |= send_frames(m, &mut |buf| client.transmit_mediator(now, buf));
        #[cfg(feature = "relay")]
        {
            let probe = tcp(sockets, self.candidates[0]);
            moved |= send_frames(probe, &mut |buf| client.transmit_probe(buf));
        }
        for (k, handle) in self.candidates.iter().enumerate() {
            moved |= send_frames(tcp(sockets, *handle), &mut |buf| client.transmit(k, buf));
        }
        moved
    }

    /// Carry out one action of the client on the sockets.
    fn apply(&mut self, action: Action, iface: &mut Interface, sockets: &mut SocketSet<'_>) {
        let port = self.client.local_port();
        match action {
            Action::DialMediator { rank, from_port } => {
                let s = tcp(sockets, self.sockets.mediator);
                s.abort();
                // Relayed, this socket is the application's stream, whose small writes must not wait
                // for an ACK (Nagle), as on a candidate socket.
                #[cfg(feature = "relay")]
                s.set_nagle_enabled(false);
                let mediator = self.ranked(rank);
                let dialled = mediator.map(|m| s.connect(iface.context(), m, from_port));
                if !matches!(dialled, Some(Ok(()))) {
                    self.client.fail(Error::NoRoute);
                }
            }
            Action::Candidate(punch::Action::Dial { candidate, target }) => {
                let s = tcp(sockets, self.candidates[candidate]);
                s.abort();
                s.set_nagle_enabled(false);
                let dialled = endpoint(target).map(|t| s.connect(iface.context(), t, port));
                if !matches!(dialled, Some(Ok(()))) {
                    self.client.fail(Error::NoRoute);
                }
            }
            Action::Candidate(punch::Action::Listen { candidate }) => {
                let s = tcp(sockets, self.candidates[candidate]);
                s.set_nagle_enabled(false);
                let _ = s.listen(port);
            }
            Action::Candidate(punch::Action::Close { candidate }) => {
                quiet_close(tcp(sockets, self.candidates[candidate]), port);
            }
            Action::Candidate(punch::Action::Abort { candidate }) => {
                tcp(sockets, self.candidates[candidate]).abort();
            }
            #[cfg(feature = "relay")]
            Action::DialProbe { rank, from_port } => {
                let s = tcp(sockets, self.candidates[0]);
                s.abort();
                let mediator = self.ranked(rank).map(Into::into);
                let probe = mediator.and_then(crate::proto::client::probe_endpoint);
                // A probe that cannot go out only leaves the mapping unknown.
                if let Some(target) = probe.and_then(endpoint) {
                    let _ = s.connect(iface.context(), target, from_port);
                }
            }
            #[cfg(feature = "relay")]
            Action::CloseProbe => {
                let s = tcp(sockets, self.candidates[0]);
                // The mediator closed first (protocol §14.2): our FIN ends the connection at both
                // ends and in our NAT. Still open (the Match came first): quietly, no RST.
                if s.state() == smoltcp::socket::tcp::State::CloseWait {
                    s.close();
                } else {
                    quiet_close(s, port);
                }
            }
        }
    }

    /// The mediator at `rank` of the pair's ranking. One mediator needs no ranking (and, when `M` is
    /// one [`Mediator`], the optimiser drops the ranking's code).
    fn ranked(&self, rank: usize) -> Option<IpEndpoint> {
        let list = self.mediators.as_ref();
        let (own, peer) = (self.signer.public_key(), self.client.peer());
        let id = |m: &Mediator| MediatorId::new(m.endpoint.into());
        rendezvous::nth(own, peer, list, rank, id).map(|i| list[i].endpoint)
    }

    /// The winner's socket, as the application gets it.
    // Out of line: inlined, it was copied into several callers (firmware size, size-report.sh).
    #[inline(never)]
    fn connected(&self, w: Won, sockets: &mut SocketSet<'_>) -> Result<Connected, Error> {
        let (socket, remote) = match w.via {
            Via::Candidate(k) => {
                let socket = self.candidates[k];
                let remote = tcp(sockets, socket).remote_endpoint();
                (socket, remote.ok_or(Error::PeerClosed)?)
            }
            Via::Mediator => (
                self.sockets.mediator,
                endpoint(w.remote).ok_or(Error::NoRoute)?,
            ),
        };
        Ok(Connected {
            socket,
            path: w.path(),
            remote,
            role: w.role,
            session_key: w.session_key,
        })
    }
}
