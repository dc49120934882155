//! The peer's side of the relay (protocol §14.4–§14.5) as a sans-IO machine, on the mediator
//! connection after a version-2 Match that offered one.
//!
//! ```text
//!  Offered ──request()──▶ Requested ──Relayed──▶ Joined ──handshake done──▶ Done(SessionKey)
//!  (reads Aborts only)    (RelayRequest, PeerAuth, [Confirm] queued back to back)
//!  any state ──Abort / close / bad frame / handshake error / deadline──▶ Failed(RelayError)
//! ```
//!
//! While the pair punches, the machine waits in `Offered` and only watches the mediator connection: an
//! Abort there (the mediator shutting down) means the relay is gone. When the decision is the relay
//! (at once, or after the punch failed), [`Relay::request`] queues the RelayRequest and, right behind it,
//! the peer handshake's first flight (§9: PeerAuth, and the leader's Confirm — the relay is the only
//! candidate, so the leader chooses it at once), which the mediator holds until the other peer joins:
//! the relay costs no round trip of its own. After Relayed, every byte is the other peer's: the
//! handshake's, then the application's, which [`receive`](Relay::receive) leaves unconsumed.
//!
//! [`decide`] is the path decision both peers take from their Match (§14.3).

use core::fmt;

use super::auth::{AuthError, Handshake, SessionKey};
use super::punch::Link;
use super::register::PunchInfo;
use crate::identity::Verifier;
use crate::time::{Duration, Instant};
use crate::wire::{self, AbortReason, FrameReader, Mapping, Message, MessageType};

/// What a Match decides about the path (protocol §14.3). Both peers decide alike: they get the same
/// classes, mirrored, the same deadline, and both know whether they share a public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decision {
    /// Punch, with the peer's own punch deadline; no relay (version 1, or none offered).
    Punch,
    /// Punch, ending it this long after the start time at the latest; then the relay.
    PunchThenRelay(Duration),
    /// The relay at once, without a punch: both NATs map per destination (and the peers do not share
    /// a public address), or a peer asked for it.
    RelayNow,
}

/// The path decision of protocol §14.3 for the Match in `info`.
pub fn decide(info: &PunchInfo) -> Decision {
    let Some(paths) = info.paths.filter(|p| p.relay_after_ms > 0) else {
        return Decision::Punch;
    };
    let both_dependent = paths.own == Mapping::Dependent && paths.peer == Mapping::Dependent;
    let relay_only = paths.own == Mapping::RelayOnly || paths.peer == Mapping::RelayOnly;
    if relay_only || (both_dependent && !info.same_public_address()) {
        Decision::RelayNow
    } else {
        Decision::PunchThenRelay(Duration::from_millis(paths.relay_after_ms.into()))
    }
}

/// Why the relay failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RelayError {
    /// The mediator refused or ended it with this reason (`RelayRefused`, `RelayFull`, `PeerGone`,
    /// `ShuttingDown`…).
    Aborted(AbortReason),
    /// The mediator closed the connection.
    Closed,
    /// The mediator sent a frame that does not parse.
    Wire(wire::Error),
    /// The mediator sent a message that is not valid now.
    UnexpectedMessage(MessageType),
    /// The peer handshake on the relayed stream failed.
    Auth(AuthError),
    /// The relayed stream closed before the handshake was done.
    PeerClosed,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Aborted(r) => write!(f, "relay refused: {}", r),
            RelayError::Closed => f.write_str("mediator closed the relay"),
            RelayError::Wire(e) => write!(f, "bad frame from mediator: {}", e),
            RelayError::UnexpectedMessage(t) => write!(f, "unexpected {:?} from mediator", t),
            RelayError::Auth(e) => write!(f, "authentication failed: {}", e),
            RelayError::PeerClosed => f.write_str("peer closed the relayed stream"),
        }
    }
}

impl core::error::Error for RelayError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Offered,
    /// RelayRequest queued (`sent`: handed out).
    Requested {
        sent: bool,
    },
    Joined,
    Failed(RelayError),
}

/// The relay of one pair, from the Match's offer to the authenticated relayed stream (module docs).
pub struct Relay {
    state: State,
    reader: FrameReader,
    /// Given on [`request`](Self::request).
    handshake: Option<Handshake>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay").field("state", &self.state).finish()
    }
}

impl Default for Relay {
    fn default() -> Self {
        Relay::offered()
    }
}

impl Relay {
    /// The relay a Match offered. Nothing is sent until [`request`](Self::request).
    pub const fn offered() -> Relay {
        Relay {
            state: State::Offered,
            reader: FrameReader::new(),
            handshake: None,
        }
    }

    /// Whether it was requested.
    pub fn is_requested(&self) -> bool {
        !matches!(self.state, State::Offered)
    }

    /// Whether the mediator confirmed the relay (Relayed arrived).
    pub fn is_joined(&self) -> bool {
        self.state == State::Joined
    }

    /// Join the relay: queue the RelayRequest and the first flight of `handshake` (prepared, not
    /// started: [`Handshake::new`]) behind it, to be done by `deadline`. Does nothing unless offered
    /// (and not failed).
    pub fn request(&mut self, mut handshake: Handshake, deadline: Instant) {
        if self.state != State::Offered {
            return;
        }
        handshake.start(deadline);
        // The relay is the only candidate left: the leader chooses it at once (§8.5).
        handshake.confirm();
        self.handshake = Some(handshake);
        self.state = State::Requested { sent: false };
    }

    /// Set the handshake's deadline (once joined: it counts from the join, protocol §14.5).
    pub fn set_deadline(&mut self, deadline: Instant) {
        if let Some(h) = self.handshake.as_mut() {
            h.set_deadline(deadline);
        }
    }

    /// The outcome, once decided: the session key, or why the relay failed.
    pub fn result(&self) -> Option<Result<SessionKey, RelayError>> {
        match (self.state, &self.handshake) {
            (State::Failed(e), _) => Some(Err(e)),
            (State::Joined, Some(h)) if h.is_done() => h.session_key().map(Ok),
            _ => None,
        }
    }

    fn fail(&mut self, error: RelayError) {
        if !matches!(self.state, State::Failed(_)) {
            self.state = State::Failed(error);
        }
    }

    /// What the mediator connection is doing: a connection that is gone fails a relay that is not done
    /// (a relayed stream closed after the handshake's last frame is the application's to read).
    pub fn observe(&mut self, link: Link) {
        let open = matches!(link, Link::Established { .. });
        let closed = matches!(link, Link::Closed | Link::Closing);
        match self.state {
            State::Offered | State::Requested { .. } if closed => self.fail(RelayError::Closed),
            State::Joined if !open && self.result().is_none() => self.fail(RelayError::PeerClosed),
            _ => {}
        }
    }

    /// Feed bytes from the mediator connection; returns how many were consumed. Before the relay is
    /// joined they are frames (an Abort, then Relayed); after, the other peer's handshake frames.
    /// Bytes after the handshake's last frame are not consumed: they are the application's.
    pub fn receive<V: Verifier>(&mut self, verifier: &V, data: &[u8]) -> usize {
        match self.state {
            State::Failed(_) => data.len(),
            State::Joined => self.receive_handshake(verifier, data),
            State::Offered | State::Requested { .. } => self.receive_frame(data),
        }
    }

    fn receive_frame(&mut self, data: &[u8]) -> usize {
        let (used, message) = self.reader.read(data);
        let error = match message {
            None => return used,
            Some(Ok(Message::Relayed)) if matches!(self.state, State::Requested { sent: true }) => {
                self.state = State::Joined;
                return used;
            }
            Some(Ok(Message::Abort(reason))) => RelayError::Aborted(reason),
            Some(Ok(other)) => RelayError::UnexpectedMessage(other.msg_type()),
            Some(Err(e)) => RelayError::Wire(e),
        };
        self.fail(error);
        used
    }

    fn receive_handshake<V: Verifier>(&mut self, verifier: &V, data: &[u8]) -> usize {
        let Some(h) = self.handshake.as_mut() else {
            return 0;
        };
        match h.receive(verifier, data) {
            Ok((used, _)) => used,
            Err(e) => {
                self.fail(RelayError::Auth(e));
                0
            }
        }
    }

    /// The next frame for the mediator connection: the RelayRequest, then our handshake frames.
    pub fn transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.state {
            State::Requested { sent: false } => {
                let len = Message::RelayRequest.emit_bytes_in(wire::VERSION_2, buf)?;
                self.state = State::Requested { sent: true };
                Some(len)
            }
            State::Requested { sent: true } | State::Joined => {
                self.handshake.as_mut()?.transmit(buf)
            }
            State::Offered | State::Failed(_) => None,
        }
    }

    /// When [`poll`](Self::poll) must run next: the handshake's deadline, once requested.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::Requested { .. } | State::Joined => self.handshake.as_ref()?.poll_at(),
            State::Offered | State::Failed(_) => None,
        }
    }

    /// Check the deadline.
    pub fn poll(&mut self, now: Instant) {
        if !matches!(self.state, State::Requested { .. } | State::Joined) {
            return;
        }
        if let Some(Err(e)) = self.handshake.as_mut().map(|h| h.poll(now)) {
            self.fail(RelayError::Auth(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, SaltyVerifier};
    use crate::proto::auth::HandshakeParams;
    use crate::wire::{Role, MAX_FRAME_LEN};
    use std::vec::Vec;

    /// Two offered relays, and the handshakes the leader A and the follower B would request them
    /// with.
    fn pair() -> (Relay, Relay, Handshake, Handshake) {
        let (a, b) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let params = |role, peer: &Keypair, own: u8, other: u8| HandshakeParams {
            role,
            peer: peer.public_key(),
            own_nonce: [own; 32],
            peer_nonce: [other; 32],
        };
        let ha = Handshake::new(&a, params(Role::Leader, &b, 0x11, 0x22), [7; 32]);
        let hb = Handshake::new(&b, params(Role::Follower, &a, 0x22, 0x11), [8; 32]);
        (Relay::offered(), Relay::offered(), ha, hb)
    }

    fn drain(r: &mut Relay) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = r.transmit(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn frame(m: Message) -> Vec<u8> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = m.emit_bytes_in(wire::VERSION_2, &mut buf).unwrap();
        buf[..n].to_vec()
    }

    const UP: Link = Link::Established {
        local: core::net::SocketAddr::V4(core::net::SocketAddrV4::new(
            core::net::Ipv4Addr::new(192, 0, 2, 1),
            40000,
        )),
        remote: core::net::SocketAddr::V4(core::net::SocketAddrV4::new(
            core::net::Ipv4Addr::new(203, 0, 113, 10),
            7777,
        )),
    };

    #[test]
    fn the_request_carries_the_first_flight_and_the_stream_authenticates() {
        let (mut ra, mut rb, a, b) = pair();
        let deadline = Instant::from_secs(30);
        ra.request(a, deadline);
        rb.request(b, deadline);
        let from_a = drain(&mut ra);
        let from_b = drain(&mut rb);
        // RelayRequest, PeerAuth, and the leader's Confirm, back to back.
        assert_eq!(&from_a[..4], &[2, 0x05, 0, 0]);
        assert_eq!((from_a[5], from_a.len()), (0xC1, 4 + 132 + 4));
        assert_eq!(&from_a[136..], &[1, 0xC2, 0, 0]);
        assert_eq!(
            (from_b.len(), &from_b[..4]),
            (4 + 132, &[2u8, 0x05, 0, 0][..])
        );
        // The mediator splices: Relayed, then what the other sent after its request, then data.
        let mut to_b = frame(Message::Relayed);
        to_b.extend_from_slice(&from_a[4..]);
        to_b.extend_from_slice(b"app");
        let mut to_a = frame(Message::Relayed);
        to_a.extend_from_slice(&from_b[4..]);
        let used = crate::proto::feed(&to_b, |d| rb.receive(&SaltyVerifier, d));
        assert_eq!(used, to_b.len() - 3, "the application's bytes stay");
        crate::proto::feed(&to_a, |d| ra.receive(&SaltyVerifier, d));
        let (ka, kb) = (ra.result().unwrap().unwrap(), rb.result().unwrap().unwrap());
        assert_eq!(ka, kb);
        // The stream closing after the handshake is the application's business.
        rb.observe(Link::Closing);
        assert!(rb.result().unwrap().is_ok());
    }

    #[test]
    fn the_decision_of_section_13_3() {
        use crate::wire::Paths;
        let ep = |s: &str| s.parse().unwrap();
        let info = |own, peer, relay_after_ms, peer_ip: &str| PunchInfo {
            role: Role::Leader,
            matched_at: Instant::ZERO,
            start_at: Instant::ZERO,
            own_observed: ep("198.51.100.1:40000"),
            own_nonce: [1; 32],
            peer_observed: ep(peer_ip),
            peer_local: None,
            peer_nonce: [2; 32],
            paths: Some(Paths {
                own,
                peer,
                relay_after_ms,
            }),
        };
        use Mapping::{Dependent as D, Independent as I, RelayOnly as R, Unknown as U};
        let far = "192.0.2.1:50000";
        let after = Decision::PunchThenRelay(Duration::from_millis(3800));
        let cases = [
            (I, I, 3800, far, after),
            (U, D, 3800, far, after),
            (D, I, 3800, far, after),
            (D, D, 3800, far, Decision::RelayNow),
            // Behind one public address the LAN path needs no NAT.
            (D, D, 3800, "198.51.100.1:40001", after),
            (I, R, 3800, far, Decision::RelayNow),
            (R, I, 3800, "198.51.100.1:40001", Decision::RelayNow),
            // No relay offered: the punch alone.
            (D, D, 0, far, Decision::Punch),
        ];
        for (own, peer, after_ms, ip, decision) in cases {
            assert_eq!(
                decide(&info(own, peer, after_ms, ip)),
                decision,
                "{own:?} {peer:?}"
            );
        }
        let v1 = PunchInfo {
            paths: None,
            ..info(D, D, 3800, far)
        };
        assert_eq!(decide(&v1), Decision::Punch);
    }

    #[test]
    fn an_abort_or_a_close_fails_it_before_it_is_joined() {
        let (mut ra, mut rb, a, _) = pair();
        // While punching: an Abort is remembered.
        crate::proto::feed(&frame(Message::Abort(AbortReason::ShuttingDown)), |d| {
            rb.receive(&SaltyVerifier, d)
        });
        assert_eq!(
            rb.result(),
            Some(Err(RelayError::Aborted(AbortReason::ShuttingDown)))
        );
        ra.request(a, Instant::from_secs(30));
        drain(&mut ra);
        ra.observe(UP);
        assert_eq!(ra.result(), None);
        ra.observe(Link::Closed);
        assert_eq!(ra.result(), Some(Err(RelayError::Closed)));
    }

    #[test]
    fn relayed_before_the_request_is_unexpected_and_the_deadline_holds() {
        let (mut ra, mut rb, a, b) = pair();
        crate::proto::feed(&frame(Message::Relayed), |d| ra.receive(&SaltyVerifier, d));
        assert_eq!(
            ra.result(),
            Some(Err(RelayError::UnexpectedMessage(MessageType::Relayed)))
        );
        rb.request(b, Instant::from_secs(30));
        let _ = a;
        drain(&mut rb);
        crate::proto::feed(&frame(Message::Relayed), |d| rb.receive(&SaltyVerifier, d));
        assert!(rb.is_joined());
        assert_eq!(rb.poll_at(), Some(Instant::from_secs(30)));
        rb.poll(Instant::from_secs(30));
        assert_eq!(rb.result(), Some(Err(RelayError::Auth(AuthError::Timeout))));
    }
}
