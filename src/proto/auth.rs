//! Peer ↔ peer authentication, run on each candidate TCP connection once it is established.
//!
//! Each side sends one [`PeerAuth`] as its first flight: its long-term key, a fresh X25519 ephemeral key, and
//! a signature over the peer-auth transcript (both keys, both nonces, its role and its ephemeral key). Each
//! side checks the key against the one *it was configured with* — never one the mediator supplied — and
//! the signature against its own fresh nonce, so a lying mediator or a replayed PeerAuth can only make the
//! handshake fail. Both sides then derive the same 32-byte [`SessionKey`], which a relaying
//! man-in-the-middle cannot know (see `doc/protocol.md`, "Security").
//!
//! When several candidate connections race (peers behind one public address), the leader picks the first
//! that authenticates and sends [`Message::Confirm`] on it; the follower reports success only on Confirm.
//!
//! ```text
//!  AwaitPeerAuth ──valid PeerAuth──▶ Done                         (single candidate)
//!                ──valid PeerAuth──▶ Verified ──select()──▶ Done  (leader, racing candidates)
//!                                    (reported as AuthEvent::Verified)
//!                ──valid PeerAuth──▶ AwaitConfirm ──Confirm──▶ Done (follower, racing candidates)
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
/// Use it to key an encrypted channel; p2psc itself does not encrypt the stream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SessionKey {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "SessionKey(..)")
    }
}

/// Why a peer handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// Leader with racing candidates: the peer proved its key on this connection, which may now be
    /// chosen with [`Handshake::select`].
    Verified,
    /// The handshake is complete: the connection is the application's.
    Authenticated(SessionKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitPeerAuth,
    /// Leader, racing: verified, waiting for the caller's choice.
    Verified(SessionKey),
    /// Follower, racing: verified, waiting for the leader's Confirm.
    AwaitConfirm(SessionKey),
    /// Leader selected this connection; Confirm still to transmit.
    Selected(SessionKey),
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
    /// Several candidate connections race: the leader confirms the winner.
    pub racing: bool,
}

/// One side of the peer handshake on one connection, as a sans-IO state machine.
#[derive(Clone)]
pub struct Handshake {
    params: HandshakeParams,
    own: PublicKey,
    ephemeral_secret: [u8; 32],
    ours: PeerAuth,
    auth_sent: bool,
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
            ephemeral_secret: ephemeral_seed,
            ours,
            auth_sent: false,
            state: State::AwaitPeerAuth,
            deadline: None,
            reader: FrameReader::new(),
        }
    }

    /// Begin on a freshly established connection, to finish by `deadline`. Starting again (a new
    /// connection after a failed attempt) keeps the parameters and the signature.
    pub fn start(&mut self, deadline: Instant) {
        self.auth_sent = false;
        self.state = State::AwaitPeerAuth;
        self.deadline = Some(deadline);
        self.reader = FrameReader::new();
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

    /// The error, once failed.
    pub fn error(&self) -> Option<AuthError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Leader with racing candidates: choose this connection. Confirm is queued for transmission.
    /// Returns false if this handshake is not a verified leader handshake.
    pub fn select(&mut self) -> bool {
        match self.state {
            State::Verified(key) => {
                self.state = State::Selected(key);
                true
            }
            _ => false,
        }
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
        if let State::Selected(key) = self.state {
            let len = Message::Confirm.emit_bytes(buf)?;
            self.state = State::Done(key);
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
            State::AwaitPeerAuth | State::AwaitConfirm(_) => {}
            // Done, or the leader's own decision pending: anything further is application data.
            State::Verified(_) | State::Selected(_) | State::Done(_) => return Ok((0, None)),
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
                let racing = self.params.racing;
                self.state = match self.params.role {
                    _ if !racing => State::Done(key),
                    Role::Leader => State::Verified(key),
                    Role::Follower => State::AwaitConfirm(key),
                };
                Ok(match self.state {
                    State::AwaitConfirm(_) => None,
                    State::Verified(_) => Some(AuthEvent::Verified),
                    _ => Some(AuthEvent::Authenticated(key)),
                })
            }
            (State::AwaitConfirm(key), Message::Confirm) => {
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
        let secret = salty::agreement::SecretKey::from_seed(&self.ephemeral_secret);
        let shared = secret
            .agree(&salty::agreement::PublicKey::from(theirs.ephemeral))
            .to_bytes();
        if shared == [0u8; 32] {
            return Err(self.fail(AuthError::WeakEphemeral));
        }
        let ours = (&self.own, &p.own_nonce, &self.ours.ephemeral);
        let peers = (&p.peer, &p.peer_nonce, &theirs.ephemeral);
        let (leader, follower) = match p.role {
            Role::Leader => (ours, peers),
            Role::Follower => (peers, ours),
        };
        Ok(SessionKey(transcript::session_key(
            &shared, leader, follower,
        )))
    }
}
