//! Peer ↔ peer authentication, run on each candidate TCP connection once it is established.
//!
//! Each side sends one [`PeerAuth`] as its first flight: its long-term key, a fresh X25519 ephemeral key, and
//! a signature over the peer-auth transcript (both keys, both nonces, its role and its ephemeral key). Each
//! side checks the key against the one *it was configured with* — never one the mediator supplied — and
//! the signature against its own fresh nonce, so a lying mediator or a replayed PeerAuth can only make the
//! handshake fail. Both sides then derive the same 32-byte [`SessionKey`], which a relaying
//! man-in-the-middle cannot know (see `doc/protocol.md`, "Security").
//!
//! Several candidate connections can form in one punch (the LAN and the public path, or a listener that
//! takes a SYN from a port we never dialled), and the two sides must use the same one. So the leader
//! chooses: it sends [`Message::Confirm`] on one connection — eagerly, right after its PeerAuth on the
//! first connection established, so the choice costs no round trip — and on another only if that one
//! fails. The follower completes only on the connection where Confirm arrives after a PeerAuth that
//! verified; the leader completes on its confirmed connection once the follower's PeerAuth verifies
//! there.
//!
//! ```text
//!  leader:   AwaitPeerAuth ──valid PeerAuth──▶ Verified ──confirm(), Confirm sent──▶ Done
//!            (confirm() first: Done as soon as the PeerAuth verifies and Confirm is sent)
//!  follower: AwaitPeerAuth ──valid PeerAuth──▶ Verified ──Confirm──▶ Done
//!  any state ──wrong key / bad signature / bad frame / deadline──▶ Failed(AuthError)
//! ```
//!
//! The handshake consumes bytes only up to the end of its last frame: application data that follows in
//! the same segment stays in the socket.

use core::fmt;

use super::transcript;
use crate::identity::{PublicKey, Signer, Verifier};
use crate::time::Instant;
use crate::wire::{self, FrameReader, Message, MessageType, Nonce, PeerAuth, Role};

/// A 32-byte secret both peers share after the handshake, bound to both identities and this connection.
/// Use it to key an encrypted channel. Compared in constant time.
#[derive(Clone, Copy)]
pub struct SessionKey(pub [u8; 32]);

impl PartialEq for SessionKey {
    fn eq(&self, other: &SessionKey) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for SessionKey {}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

#[cfg(feature = "defmt")]
#[cfg_attr(docsrs, doc(cfg(feature = "defmt")))]
impl defmt::Format for SessionKey {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "SessionKey(..)")
    }
}

/// Why a peer handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AuthError {
    /// The peer sent a frame that does not parse.
    Wire(wire::Error),
    /// The peer presented a public key other than the one we want.
    WrongKey,
    /// The peer's signature does not verify for this session (forged, replayed, or the mediator lied about
    /// nonces or roles).
    BadSignature,
    /// The peer's ephemeral key is degenerate (the shared secret would be zero).
    WeakEphemeral,
    /// On a new connection of the same handshake the peer presented another ephemeral key than it did
    /// before (an honest peer signs its PeerAuth once).
    EphemeralChanged,
    /// A message that is not valid in this state.
    UnexpectedMessage(MessageType),
    /// The peer did not complete the handshake before the deadline.
    Timeout,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Wire(e) => write!(f, "bad frame from peer: {}", e),
            AuthError::WrongKey => f.write_str("peer presented another key"),
            AuthError::BadSignature => f.write_str("peer signature does not verify"),
            AuthError::WeakEphemeral => f.write_str("peer ephemeral key is degenerate"),
            AuthError::EphemeralChanged => {
                f.write_str("peer ephemeral key changed between connections")
            }
            AuthError::UnexpectedMessage(t) => write!(f, "unexpected {:?} from peer", t),
            AuthError::Timeout => f.write_str("peer handshake timed out"),
        }
    }
}

impl core::error::Error for AuthError {}

/// What the handshake reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AuthEvent {
    /// The peer proved its key on this connection, but it is not (yet) the chosen one: the leader has
    /// not confirmed it ([`Handshake::confirm`]), or the follower waits for the leader's Confirm.
    Verified,
    /// The handshake is complete: the connection is the application's.
    Authenticated(SessionKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitPeerAuth,
    /// The peer's PeerAuth verified; not chosen yet (leader: not confirmed; follower: no Confirm yet).
    Verified(SessionKey),
    Done(SessionKey),
    Failed(AuthError),
}

/// The parameters both sides of one punch agree on (from the mediator's Match, plus our own key).
#[derive(Debug, Clone, Copy)]
pub struct HandshakeParams {
    /// Our role.
    pub role: Role,
    /// The peer's public key, as configured by the application.
    pub peer: PublicKey,
    /// Our nonce.
    pub own_nonce: Nonce,
    /// The peer's nonce, as the mediator relayed it.
    pub peer_nonce: Nonce,
}

/// One side of the peer handshake on one connection, as a sans-IO state machine.
#[derive(Clone)]
pub struct Handshake {
    params: HandshakeParams,
    own: PublicKey,
    /// Wiped once the peer's PeerAuth has been checked (and on drop): the session key's forward secrecy
    /// rests on it (protocol §10.9).
    ephemeral_secret: zeroize::Zeroizing<[u8; 32]>,
    /// The peer's ephemeral key and the session key agreed with it, kept once the secret is wiped so that
    /// a handshake started again on a new connection agrees on the same key (the peer signs its PeerAuth
    /// once, so an honest peer presents the same ephemeral key on every connection).
    agreed: Option<([u8; 32], SessionKey)>,
    ours: PeerAuth,
    auth_sent: bool,
    /// Leader: this connection is chosen (Confirm queued); follower: never set.
    confirmed: bool,
    /// Leader: the Confirm went out.
    confirm_sent: bool,
    state: State,
    /// Set when the connection is established ([`Handshake::start`]).
    deadline: Option<Instant>,
    reader: FrameReader,
}

impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.params.role)
            .field("peer", &self.params.peer)
            .field("state", &self.state)
            .finish()
    }
}

impl Handshake {
    /// Prepare a handshake: makes the ephemeral key from `ephemeral_seed` (32 fresh random bytes) and
    /// signs our PeerAuth now, so this costly step can run before the connection is established. Call
    /// [`start`](Self::start) once it is.
    pub fn new<S: Signer>(
        signer: &S,
        params: HandshakeParams,
        ephemeral_seed: [u8; 32],
    ) -> Handshake {
        let own = signer.public_key();
        let secret = salty::agreement::SecretKey::from_seed(&ephemeral_seed);
        let ephemeral = secret.public().to_bytes();
        let t = transcript::peer_auth(
            params.role,
            &own,
            &params.peer,
            &params.own_nonce,
            &params.peer_nonce,
            &ephemeral,
        );
        let ours = PeerAuth {
            key: own,
            ephemeral,
            signature: signer.sign(t.as_bytes()),
        };
        Handshake {
            params,
            own,
            ephemeral_secret: zeroize::Zeroizing::new(ephemeral_seed),
            agreed: None,
            ours,
            auth_sent: false,
            confirmed: false,
            confirm_sent: false,
            state: State::AwaitPeerAuth,
            deadline: None,
            reader: FrameReader::new(),
        }
    }

    /// Begin on a freshly established connection, to finish by `deadline`. Starting again (a new
    /// connection after a failed attempt) keeps the parameters and the signature.
    pub fn start(&mut self, deadline: Instant) {
        self.auth_sent = false;
        self.confirmed = false;
        self.confirm_sent = false;
        self.state = State::AwaitPeerAuth;
        self.deadline = Some(deadline);
        self.reader = FrameReader::new();
    }

    /// Move the deadline (set by [`start`](Self::start)) to `deadline`.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// The session key, once the handshake is done.
    pub fn session_key(&self) -> Option<SessionKey> {
        match self.state {
            State::Done(key) => Some(key),
            _ => None,
        }
    }

    /// Whether the handshake is complete and nothing remains to transmit.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_)) && self.auth_sent
    }

    /// Whether the peer's PeerAuth verified on this connection.
    pub fn is_verified(&self) -> bool {
        matches!(self.state, State::Verified(_) | State::Done(_))
    }

    /// Whether this connection is the leader's choice (the leader's own view).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// The error, once failed.
    pub fn error(&self) -> Option<AuthError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Leader: choose this connection. Confirm is queued, after our PeerAuth; the handshake is done once
    /// it is sent and the peer's PeerAuth has verified. Returns false for a follower or a failed
    /// handshake.
    pub fn confirm(&mut self) -> bool {
        if self.params.role != Role::Leader || matches!(self.state, State::Failed(_)) {
            return false;
        }
        self.confirmed = true;
        true
    }

    /// Write the next frame to send into `buf` (at least [`wire::MAX_FRAME_LEN`] bytes).
    pub fn transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let State::Failed(_) = self.state {
            return None;
        }
        if !self.auth_sent {
            let len = Message::PeerAuth(self.ours).emit_bytes(buf)?;
            self.auth_sent = true;
            return Some(len);
        }
        if self.confirmed && !self.confirm_sent {
            let len = Message::Confirm.emit_bytes(buf)?;
            self.confirm_sent = true;
            if let State::Verified(key) = self.state {
                self.state = State::Done(key);
            }
            return Some(len);
        }
        None
    }

    /// When [`poll`](Self::poll) must next be called: the deadline, once started and until done.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::Done(_) | State::Failed(_) => None,
            _ => self.deadline,
        }
    }

    /// Check the deadline.
    pub fn poll(&mut self, now: Instant) -> Result<(), AuthError> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        if self.poll_at().is_some_and(|at| now >= at) {
            return Err(self.fail(AuthError::Timeout));
        }
        Ok(())
    }

    fn fail(&mut self, error: AuthError) -> AuthError {
        self.state = State::Failed(error);
        error
    }

    /// Feed bytes received from the peer. Returns how many were consumed and any event; bytes after the
    /// handshake's last frame are left unconsumed (they are application data).
    pub fn receive<V: Verifier>(
        &mut self,
        verifier: &V,
        data: &[u8],
    ) -> Result<(usize, Option<AuthEvent>), AuthError> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::AwaitPeerAuth => {}
            // The follower waits for Confirm; after it, anything is application data.
            State::Verified(_) if self.params.role == Role::Follower => {}
            State::Verified(_) | State::Done(_) => return Ok((0, None)),
        }
        let (used, message) = self.reader.read(data);
        let event = match message {
            None => None,
            Some(Err(e)) => return Err(self.fail(AuthError::Wire(e))),
            Some(Ok(message)) => self.process(verifier, message)?,
        };
        Ok((used, event))
    }

    fn process<V: Verifier>(
        &mut self,
        verifier: &V,
        message: Message,
    ) -> Result<Option<AuthEvent>, AuthError> {
        match (self.state, message) {
            (State::AwaitPeerAuth, Message::PeerAuth(theirs)) => {
                let key = self.verify(verifier, &theirs)?;
                // The leader is done at once if it already confirmed this connection and said so.
                let done = self.params.role == Role::Leader && self.confirm_sent;
                self.state = if done {
                    State::Done(key)
                } else {
                    State::Verified(key)
                };
                Ok(Some(if done {
                    AuthEvent::Authenticated(key)
                } else {
                    AuthEvent::Verified
                }))
            }
            (State::Verified(key), Message::Confirm) if self.params.role == Role::Follower => {
                self.state = State::Done(key);
                Ok(Some(AuthEvent::Authenticated(key)))
            }
            (_, other) => Err(self.fail(AuthError::UnexpectedMessage(other.msg_type()))),
        }
    }

    fn verify<V: Verifier>(
        &mut self,
        verifier: &V,
        theirs: &PeerAuth,
    ) -> Result<SessionKey, AuthError> {
        let p = &self.params;
        if theirs.key != p.peer {
            return Err(self.fail(AuthError::WrongKey));
        }
        let t = transcript::peer_auth(
            p.role.other(),
            &p.peer,
            &self.own,
            &p.peer_nonce,
            &p.own_nonce,
            &theirs.ephemeral,
        );
        if verifier
            .verify(&p.peer, t.as_bytes(), &theirs.signature)
            .is_err()
        {
            return Err(self.fail(AuthError::BadSignature));
        }
        if let Some((ephemeral, key)) = self.agreed {
            // A new connection of this handshake: the secret is gone; the peer's key must not have changed.
            return match ephemeral == theirs.ephemeral {
                true => Ok(key),
                false => Err(self.fail(AuthError::EphemeralChanged)),
            };
        }
        let secret = salty::agreement::SecretKey::from_seed(&self.ephemeral_secret);
        let shared = zeroize::Zeroizing::new(
            secret
                .agree(&salty::agreement::PublicKey::from(theirs.ephemeral))
                .to_bytes(),
        );
        if *shared == [0u8; 32] {
            return Err(self.fail(AuthError::WeakEphemeral));
        }
        // The secret is not needed again: `agreed` answers a new connection of this handshake (other
        // candidates hold their own copy).
        zeroize::Zeroize::zeroize(&mut *self.ephemeral_secret);
        let ours = (&self.own, &p.own_nonce, &self.ours.ephemeral);
        let peers = (&p.peer, &p.peer_nonce, &theirs.ephemeral);
        let (leader, follower) = match p.role {
            Role::Leader => (ours, peers),
            Role::Follower => (peers, ours),
        };
        let key = SessionKey(transcript::session_key(&shared, leader, follower));
        self.agreed = Some((theirs.ephemeral, key));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, SaltyVerifier};

    fn pair() -> (Handshake, Handshake) {
        let (a, b) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
        let params = |role, peer: &Keypair, own: u8, other: u8| HandshakeParams {
            role,
            peer: peer.public_key(),
            own_nonce: [own; 32],
            peer_nonce: [other; 32],
        };
        let ha = Handshake::new(&a, params(Role::Leader, &b, 0x11, 0x22), [7; 32]);
        let hb = Handshake::new(&b, params(Role::Follower, &a, 0x22, 0x11), [8; 32]);
        (ha, hb)
    }

    #[test]
    fn the_ephemeral_secret_is_wiped_once_the_peer_is_verified() {
        let (mut ha, mut hb) = pair();
        hb.start(Instant::from_secs(5));
        let mut buf = [0u8; wire::MAX_FRAME_LEN];
        let n = ha.transmit(&mut buf).unwrap();
        assert_ne!(*hb.ephemeral_secret, [0; 32]);
        let (_, event) = hb.receive(&SaltyVerifier, &buf[..n]).unwrap();
        assert_eq!(event, Some(AuthEvent::Verified));
        assert_eq!(*hb.ephemeral_secret, [0; 32]);
        // The leader's copy stays until its own check: another candidate may still need it.
        assert_ne!(*ha.ephemeral_secret, [0; 32]);
    }

    /// Found by the `peer_handshake` fuzz target (finding `handshake-restart-key`). `start` promises
    /// that a handshake can begin again on a new connection, keeping its parameters and signature; but
    /// the ephemeral secret is wiped once a PeerAuth verifies, so on the next connection the same
    /// peer's PeerAuth verifies again and yields a session key the peer does not have.
    #[test]
    fn a_handshake_started_again_after_a_verified_peer_agrees_on_the_key() {
        let (mut ha, mut hb) = pair();
        let mut buf = [0u8; wire::MAX_FRAME_LEN];
        // First connection: the follower verifies the leader's PeerAuth, then the connection is lost.
        ha.start(Instant::from_secs(5));
        hb.start(Instant::from_secs(5));
        let n = ha.transmit(&mut buf).unwrap();
        let (_, event) = hb.receive(&SaltyVerifier, &buf[..n]).unwrap();
        assert_eq!(event, Some(AuthEvent::Verified));
        // A new connection: both start again and run to the end.
        ha.start(Instant::from_secs(10));
        hb.start(Instant::from_secs(10));
        assert!(ha.confirm());
        let pump = |from: &mut Handshake, to: &mut Handshake| {
            let mut buf = [0u8; wire::MAX_FRAME_LEN];
            while let Some(n) = from.transmit(&mut buf) {
                to.receive(&SaltyVerifier, &buf[..n]).unwrap();
            }
        };
        for _ in 0..2 {
            pump(&mut ha, &mut hb);
            pump(&mut hb, &mut ha);
        }
        let (ka, kb) = (ha.session_key().unwrap(), hb.session_key().unwrap());
        assert_eq!(ka, kb, "the two sides derived different keys");
    }

    #[test]
    fn session_keys_compare_by_value() {
        let key = SessionKey([0x5A; 32]);
        assert_eq!(key, SessionKey([0x5A; 32]));
        for i in 0..32 {
            let mut other = [0x5A; 32];
            other[i] ^= 1;
            assert_ne!(key, SessionKey(other), "byte {i}");
        }
    }
}
