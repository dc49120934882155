//! The peer handshake on one connection, in either role, against a real peer (the library's own
//! handshake, whose PeerAuth verifies) and a fuzzer that reorders, splits, corrupts and injects: frames
//! signed by another key, a PeerAuth from another session, our own PeerAuth reflected, one signed for
//! the wrong role, validly signed low-order ephemeral keys, Confirms at any time, garbage, replays,
//! truncation; the leader's choice (`confirm`) before or after the peer's PeerAuth; restarts on a new
//! connection; time jumps past the deadline.
//!
//! A shadow frame reader sees each frame as the machine does, and a model of protocol §9.2 says what
//! it must do with it. In particular: only the real peer's PeerAuth authenticates (signatures are not
//! malleable), and the session key is the one both honest sides derive; the follower finishes only on
//! a Confirm after that PeerAuth, the leader only once it chose the connection and said so; it sends
//! its PeerAuth once per connection, a Confirm only as the leader that chose, nothing once failed; it
//! takes no byte after its last frame.
//!
//! Signatures verify on ed25519-dalek (memoised); the X25519 agreement is salty's, as on a device.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2psc::identity::Keypair;
use p2psc::proto::{transcript, AuthError, AuthEvent, Handshake, HandshakeParams, SessionKey};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{self, FrameReader, Message, Nonce, PeerAuth, Role, MAX_FRAME_LEN};
use p2psc_fuzz::crypto::FastVerifier;
use p2psc_fuzz::ident::identity;
use p2psc_fuzz::input::{self, below, byte, chunk, flag, word};
use p2psc_fuzz::pipe::Pipe;
use p2psc_fuzz::{finding, reach, trace, Unstructured};

/// Our nonce, the peer's, and another session's.
const OURS: Nonce = [0x0A; 32];
const THEIRS: Nonce = [0x0B; 32];
const STALE: Nonce = [0x0C; 32];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut run = Run::new(fixture(input::role(&mut u)));
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        match byte(&mut u) % 9 {
            0 => run.transmit(),
            1 => run.peer_transmits(),
            2 | 3 => run.deliver(chunk(&mut u)),
            4 => run.deliver_to_peer(chunk(&mut u)),
            5 => run.inject(&mut u),
            6 if flag(&mut u) => run.to_us.fault(&mut u),
            6 => run.to_peer.fault(&mut u),
            7 => run.confirm(flag(&mut u)),
            _ if flag(&mut u) => run.tick(input::step(&mut u)),
            _ => run.restart(Duration::from_millis(1 + u64::from(word(&mut u)))),
        }
        run.check();
    }
});

/// Everything one role needs, made once per process: both sides' handshakes, ready to start, the
/// frames a fuzzer cannot make, and the session key both honest sides derive.
struct Fixture {
    role: Role,
    ours: Handshake,
    theirs: Handshake,
    /// Our PeerAuth frame, and the real peer's.
    our_auth: Vec<u8>,
    their_auth: Vec<u8>,
    /// The peer's key on low-order ephemeral keys, validly signed: they must fail as weak.
    weak: Vec<Vec<u8>>,
    /// Frames that must fail whatever happens: another key's, another session's, ours reflected,
    /// the peer's signed for our role.
    forged: Vec<Vec<u8>>,
    key: SessionKey,
}

fn fixture(role: Role) -> &'static Fixture {
    static ALL: OnceLock<[Fixture; 2]> = OnceLock::new();
    let all = ALL.get_or_init(|| [Fixture::new(Role::Leader), Fixture::new(Role::Follower)]);
    &all[usize::from(role.to_u8())]
}

impl Fixture {
    fn new(role: Role) -> Fixture {
        let (me, peer, mallory) = (
            &identity(0).keypair,
            &identity(1).keypair,
            &identity(2).keypair,
        );
        let ours = Handshake::new(me, params(role, peer, OURS, THEIRS), [0x1A; 32]);
        let theirs = Handshake::new(peer, params(role.other(), me, THEIRS, OURS), [0x1B; 32]);
        let (our_auth, their_auth) = (auth_frame(&ours), auth_frame(&theirs));
        let Ok(Message::PeerAuth(real)) = Message::parse_bytes(&their_auth) else {
            unreachable!()
        };
        let mut one = [0u8; 32];
        one[0] = 1;
        let weak = vec![
            signed_by_peer(role.other(), [0; 32]),
            signed_by_peer(role.other(), one),
        ];
        let other = |signer, own, seed| {
            auth_frame(&Handshake::new(
                signer,
                params(role.other(), me, own, OURS),
                seed,
            ))
        };
        let forged = vec![
            other(mallory, THEIRS, [0x1C; 32]),
            other(peer, STALE, [0x1D; 32]),
            our_auth.clone(),
            signed_by_peer(role, real.ephemeral),
        ];
        let key = honest_key(&ours, &theirs);
        Fixture {
            role,
            ours,
            theirs,
            our_auth,
            their_auth,
            weak,
            forged,
            key,
        }
    }
}

/// The parameters of a handshake with `peer`.
fn params(role: Role, peer: &Keypair, own_nonce: Nonce, peer_nonce: Nonce) -> HandshakeParams {
    HandshakeParams {
        role,
        peer: peer.public_key(),
        own_nonce,
        peer_nonce,
    }
}

/// A PeerAuth by the peer's own key (identity 1) for us (identity 0) in this session, as the signer
/// in `role` with `ephemeral`, signed through the library's transcript.
fn signed_by_peer(role: Role, ephemeral: [u8; 32]) -> Vec<u8> {
    let (me, peer) = (identity(0).public, &identity(1).keypair);
    let key = peer.public_key();
    let t = transcript::peer_auth(role, &key, &me, &THEIRS, &OURS, &ephemeral);
    let signature = peer.sign(t.as_bytes());
    input::frame(&Message::PeerAuth(PeerAuth {
        key,
        ephemeral,
        signature,
    }))
}

/// The PeerAuth frame a handshake sends first.
fn auth_frame(handshake: &Handshake) -> Vec<u8> {
    let mut h = handshake.clone();
    h.start(Instant::from_secs(5));
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = h.transmit(&mut buf).expect("PeerAuth first");
    buf[..n].to_vec()
}

/// Run both sides to the end on a clean connection: the key both derive.
fn honest_key(ours: &Handshake, theirs: &Handshake) -> SessionKey {
    let (mut a, mut b) = (ours.clone(), theirs.clone());
    a.start(Instant::from_secs(5));
    b.start(Instant::from_secs(5));
    let pump = |from: &mut Handshake, to: &mut Handshake| {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = from.transmit(&mut buf) {
            to.receive(&FastVerifier, &buf[..n])
                .expect("an honest handshake");
        }
        from.confirm();
    };
    for _ in 0..3 {
        pump(&mut a, &mut b);
        pump(&mut b, &mut a);
    }
    let key = a.session_key().expect("done");
    assert_eq!(b.session_key(), Some(key), "both sides derive one key");
    key
}

/// Where the model says our handshake is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    AwaitPeerAuth,
    Verified,
    Done,
    Failed(AuthError),
}

struct Run {
    fixture: &'static Fixture,
    ours: Handshake,
    theirs: Handshake,
    to_us: Pipe,
    to_peer: Pipe,
    /// Reads the same bytes our handshake takes.
    shadow: FrameReader,
    phase: Phase,
    auth_sent: bool,
    /// Leader: it chose this connection; and said so.
    confirmed: bool,
    confirm_sent: bool,
    /// The peer's honest PeerAuth verified once (on any connection): its ephemeral key is the agreed one.
    agreed: bool,
    now: Instant,
    deadline: Instant,
}

impl Run {
    fn new(fixture: &'static Fixture) -> Run {
        let (mut ours, mut theirs) = (fixture.ours.clone(), fixture.theirs.clone());
        let deadline = Instant::from_secs(5);
        ours.start(deadline);
        theirs.start(deadline);
        Run {
            fixture,
            ours,
            theirs,
            to_us: Pipe::new(),
            to_peer: Pipe::new(),
            shadow: FrameReader::new(),
            phase: Phase::AwaitPeerAuth,
            auth_sent: false,
            confirmed: false,
            confirm_sent: false,
            agreed: false,
            now: Instant::ZERO,
            deadline,
        }
    }

    /// We send: our PeerAuth once, then a Confirm only as the leader that chose this connection.
    fn transmit(&mut self) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let sent = self.ours.transmit(&mut buf).map(|n| buf[..n].to_vec());
        let expected = match self.phase {
            Phase::Failed(_) => None,
            _ if !self.auth_sent => {
                self.auth_sent = true;
                Some(self.fixture.our_auth.clone())
            }
            phase if self.confirmed && !self.confirm_sent => {
                self.confirm_sent = true;
                if phase == Phase::Verified {
                    self.phase = Phase::Done;
                    reach("handshake: the leader done on sending Confirm");
                }
                Some(input::frame(&Message::Confirm))
            }
            _ => None,
        };
        assert_eq!(sent, expected, "in {:?}", self.phase);
        if let Some(frame) = sent {
            self.to_peer.send(&frame);
        }
    }

    fn peer_transmits(&mut self) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.theirs.transmit(&mut buf) {
            self.to_us.send(&buf[..n]);
        }
    }

    /// Bytes reach our handshake, frame by frame; each outcome is the model's.
    fn deliver(&mut self, max: usize) {
        let bytes = self.to_us.peek(max).to_vec();
        let used = p2psc::proto::feed(&bytes, |rest| {
            let result = self.ours.receive(&FastVerifier, rest);
            match self.phase {
                Phase::Failed(e) => {
                    assert_eq!(result, Err(e));
                    return 0;
                }
                Phase::Verified if self.fixture.role == Role::Follower => {}
                Phase::Verified | Phase::Done => {
                    assert_eq!(
                        result,
                        Ok((0, None)),
                        "application data is not the handshake's"
                    );
                    return 0;
                }
                Phase::AwaitPeerAuth => {}
            }
            let (used, frame) = self.shadow.read(rest);
            let expected = frame.map(|m| self.expect(m));
            trace!("{}: {frame:?} → {result:?} (model {expected:?})", self.now);
            match result {
                Ok((n, event)) => {
                    let event = event.map(|e| self.honest_key(e));
                    assert_eq!((n, Ok(event)), (used, expected.unwrap_or(Ok(None))));
                    used
                }
                Err(e) => {
                    assert_eq!(Some(Err(e)), expected);
                    0
                }
            }
        });
        self.to_us.consume(used);
    }

    /// The event, once its session key is checked to be the one both honest sides derive.
    fn honest_key(&self, event: AuthEvent) -> AuthEvent {
        if let AuthEvent::Authenticated(key) = event {
            let honest = key == self.fixture.key;
            finding("handshake-restart-key", honest, || {
                "authenticated with another session key than both honest sides derive".into()
            });
            return AuthEvent::Authenticated(self.fixture.key);
        }
        event
    }

    /// What our handshake must make of `frame`, applied to the model.
    fn expect(&mut self, frame: wire::Result<Message>) -> Result<Option<AuthEvent>, AuthError> {
        let f = self.fixture;
        let authenticated = Ok(Some(AuthEvent::Authenticated(f.key)));
        let outcome = match (self.phase, frame) {
            (_, Err(e)) => Err(AuthError::Wire(e)),
            (Phase::AwaitPeerAuth, Ok(Message::PeerAuth(theirs))) => match theirs.key
                == identity(1).public
            {
                false => Err(AuthError::WrongKey),
                true if Ok(Message::PeerAuth(theirs)) == Message::parse_bytes(&f.their_auth) => {
                    reach("handshake: the peer's PeerAuth verified");
                    self.agreed = true;
                    if f.role == Role::Leader && self.confirm_sent {
                        reach("handshake: the leader done on the PeerAuth after its eager Confirm");
                        self.phase = Phase::Done;
                        authenticated
                    } else {
                        self.phase = Phase::Verified;
                        Ok(Some(AuthEvent::Verified))
                    }
                }
                true if f
                    .weak
                    .iter()
                    .any(|w| Ok(Message::PeerAuth(theirs)) == Message::parse_bytes(w)) =>
                {
                    match self.agreed {
                        true => Err(AuthError::EphemeralChanged),
                        false => {
                            reach("handshake: a weak ephemeral key");
                            Err(AuthError::WeakEphemeral)
                        }
                    }
                }
                true => Err(AuthError::BadSignature),
            },
            (Phase::Verified, Ok(Message::Confirm)) => {
                reach("handshake: the follower done on Confirm");
                self.phase = Phase::Done;
                authenticated
            }
            (_, Ok(other)) => Err(AuthError::UnexpectedMessage(other.msg_type())),
        };
        if let Err(e) = outcome {
            self.phase = Phase::Failed(e);
        }
        outcome
    }

    /// Bytes reach the real peer: on an untouched stream it fails by nothing but its deadline, and it
    /// derives our key.
    fn deliver_to_peer(&mut self, max: usize) {
        let theirs = &mut self.theirs;
        self.to_peer.deliver(max, |rest| {
            theirs
                .receive(&FastVerifier, rest)
                .map_or(0, |(used, _)| used)
        });
        if let Some(e) = self.theirs.error() {
            assert!(
                self.to_peer.tampered() || e == AuthError::Timeout,
                "the real peer failed: {e:?}"
            );
        }
        let key = self.theirs.session_key();
        finding(
            "handshake-restart-key",
            key.is_none_or(|k| k == self.fixture.key),
            || "the real peer derived another session key".into(),
        );
    }

    /// A frame the real peer did not send: forged, weak, a Confirm, any message, garbage, a replay.
    fn inject(&mut self, u: &mut Unstructured) {
        let f = self.fixture;
        let frame = match byte(u) % 6 {
            0 => f.forged[below(u, f.forged.len())].clone(),
            1 => f.weak[below(u, f.weak.len())].clone(),
            2 => input::frame(&Message::Confirm),
            3 => input::frame(&input::message(u)),
            4 => input::garbage(u),
            _ => f.their_auth.clone(),
        };
        self.to_us.inject(&frame);
    }

    /// The leader's choice of this connection (or the real peer's, when it leads): only a leader that
    /// has not failed can make it.
    fn confirm(&mut self, ours: bool) {
        if !ours {
            self.theirs.confirm();
            return;
        }
        let can = self.fixture.role == Role::Leader && !matches!(self.phase, Phase::Failed(_));
        assert_eq!(self.ours.confirm(), can);
        self.confirmed |= can;
    }

    /// Time passes: the deadline fails a handshake that has not finished, and nothing else does.
    fn tick(&mut self, step: Duration) {
        self.now += step;
        let result = self.ours.poll(self.now);
        let _ = self.theirs.poll(self.now);
        match self.phase {
            Phase::Failed(e) => assert_eq!(result, Err(e)),
            Phase::Done => assert_eq!((result, self.ours.poll_at()), (Ok(()), None)),
            _ if self.now >= self.deadline => {
                assert_eq!(result, Err(AuthError::Timeout));
                self.phase = Phase::Failed(AuthError::Timeout);
                reach("handshake: deadline");
            }
            _ => assert_eq!((result, self.ours.poll_at()), (Ok(()), Some(self.deadline))),
        }
    }

    /// A new connection (a retry of the punch): both sides start over, keeping their signatures.
    fn restart(&mut self, timeout: Duration) {
        self.deadline = self.now + timeout;
        self.ours.start(self.deadline);
        self.theirs.start(self.deadline);
        self.to_us = Pipe::new();
        self.to_peer = Pipe::new();
        self.shadow = FrameReader::new();
        self.phase = Phase::AwaitPeerAuth;
        self.auth_sent = false;
        self.confirmed = false;
        self.confirm_sent = false;
    }

    fn check(&self) {
        let done = self.phase == Phase::Done;
        let key = self.ours.session_key();
        assert_eq!(key.is_some(), done);
        finding(
            "handshake-restart-key",
            key.is_none_or(|k| k == self.fixture.key),
            || "not the session key both honest sides derive".into(),
        );
        assert_eq!(self.ours.is_done(), done && self.auth_sent);
        let failed = match self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        };
        assert_eq!(self.ours.error(), failed);
        assert_eq!(
            self.ours.is_verified(),
            matches!(self.phase, Phase::Verified | Phase::Done)
        );
        assert_eq!(self.ours.is_confirmed(), self.confirmed);
    }
}
