//! A hostile mediator against the peer's registration: any sequence of Challenge, Registered, Ping,
//! Match, RetryAfter, Abort and stray frames, split at any byte, with faults (flipped bits, truncated
//! frames, replays, garbage, a foreign protocol version) and time jumps across every deadline.
//!
//! A shadow frame reader sees each frame exactly as the machine does, and a small model of protocol §7
//! says what the machine must make of it: the same event or error, the same state, the same deadline.
//! What it sends is checked too: Hello first, with our fields; a Proof only after a Challenge, and it
//! verifies over that Challenge's transcript under our key; a Pong echoing the latest Ping; hold times
//! as measured; nothing once matched or failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2psc::identity::Verifier;
use p2psc::proto::register::Awaiting;
use p2psc::proto::{
    transcript, PunchInfo, RegisterConfig, RegisterError, RegisterEvent, Registration,
};
use p2psc::time::{elapsed, Duration, Instant};
use p2psc::wire::{
    self, AbortReason, Challenge, FrameReader, Hello, Match, Message, MAX_FRAME_LEN,
};
use p2psc_fuzz::crypto::{FastSigner, FastVerifier, SignLog};
use p2psc_fuzz::ident::{self, IDENTITIES};
use p2psc_fuzz::input::{self, below, byte, chunk, long, word};
use p2psc_fuzz::pipe::Pipe;
use p2psc_fuzz::{reach, trace, Unstructured};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let who = below(&mut u, IDENTITIES);
    let hello = Hello {
        key: ident::public(who),
        want: input::key(&mut u),
        nonce: input::nonce(&mut u),
        local: input::maybe_endpoint(&mut u),
        // Version 1, or version 2 with its relay flags.
        relay: input::relay_mode(&mut u),
    };
    let ms = |u: &mut Unstructured| Duration::from_millis(1 + u64::from(word(u)));
    let config = RegisterConfig {
        step_timeout: ms(&mut u),
        wait_timeout: ms(&mut u),
    };
    let log = SignLog::default();
    let signer = FastSigner::new(ident::identity(who), &log);
    let mut peer = Peer::new(config, hello);
    for _ in 0..96 {
        if u.is_empty() {
            break;
        }
        match byte(&mut u) % 8 {
            0..=2 => {
                let version = peer.machine.version();
                peer.down.send(&mediator_frame(&mut u, version))
            }
            3 | 4 => peer.deliver(chunk(&mut u), &signer),
            5 => peer.transmit(),
            6 => peer.down.fault(&mut u),
            _ => peer.tick(input::step(&mut u)),
        }
    }
});

/// A frame a mediator could send: mostly one of its own messages, with fields from small sets; now
/// and then any message, or an Abort in a foreign protocol version.
/// Mostly in the registration's `version`, sometimes in the other.
fn mediator_frame(u: &mut Unstructured, version: u8) -> Vec<u8> {
    let message = match byte(u) % 8 {
        0 => Message::Challenge(Challenge {
            nonce: input::nonce(u),
            observed: input::endpoint(u),
        }),
        1 => Message::Registered {
            wait_ms: long(u) % 200_000,
        },
        2 => Message::Ping { token: long(u) },
        3 => Message::Match(input::a_match(u)),
        4 => Message::RetryAfter {
            millis: long(u) % 200_000,
        },
        5 => Message::Abort(AbortReason::from_u8(byte(u) % 16)),
        6 => input::message(u),
        _ => {
            let mut frame = input::frame(&Message::Abort(AbortReason::UnsupportedVersion));
            frame[0] = byte(u).max(2);
            return frame;
        }
    };
    let version = if byte(u) % 8 == 0 {
        wire::VERSION + wire::VERSION_2 - version
    } else {
        version
    };
    input::frame_in(version, &message)
}

/// Where the model says the registration is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    AwaitChallenge,
    AwaitRegistered(Challenge),
    Waiting(Challenge),
    Matched,
    Failed(RegisterError),
}

/// The machine, the model, and the stream from the mediator.
struct Peer {
    machine: Registration,
    config: RegisterConfig,
    hello: Hello,
    now: Instant,
    down: Pipe,
    /// Reads the same bytes the machine takes, frame by frame.
    shadow: FrameReader,
    phase: Phase,
    deadline: Instant,
    /// What the machine must send next, and since when it waits (for the hold time).
    outgoing: Option<(Message, Instant)>,
}

impl Peer {
    fn new(config: RegisterConfig, hello: Hello) -> Peer {
        let now = Instant::ZERO;
        let machine =
            Registration::new(config, hello.key, hello.want, hello.nonce, hello.local, now);
        let machine = match hello.relay {
            Some(mode) => machine.with_relay(mode),
            None => machine,
        };
        Peer {
            machine,
            config,
            hello,
            now,
            down: Pipe::new(),
            shadow: FrameReader::new(),
            phase: Phase::AwaitChallenge,
            deadline: now + config.step_timeout,
            outgoing: Some((Message::Hello(hello), now)),
        }
    }

    /// Bytes from the mediator reach the machine, frame by frame; each outcome is the model's.
    fn deliver(&mut self, max: usize, signer: &FastSigner) {
        let bytes = self.down.peek(max).to_vec();
        let used = p2psc::proto::feed(&bytes, |rest| {
            let result = self.machine.receive(self.now, signer, rest);
            match self.phase {
                Phase::Failed(e) => {
                    assert_eq!(
                        result,
                        Err(e),
                        "a failed registration answers with its error"
                    );
                    return 0;
                }
                Phase::Matched => {
                    assert_eq!(
                        result,
                        Ok((0, None)),
                        "a matched registration takes nothing"
                    );
                    return 0;
                }
                _ => {}
            }
            let (used, frame) = self.shadow.read(rest);
            let version = self.shadow.version();
            let expected = frame.map(|m| self.expect(version, m));
            trace!("{}: frame {frame:?}: {result:?}", self.now);
            match (result, expected) {
                (Ok((n, event)), expected) => {
                    assert_eq!(n, used, "took other bytes than the frame reader");
                    assert_eq!(Ok(event), expected.unwrap_or(Ok(None)));
                    used
                }
                (Err(e), Some(Err(expected))) => {
                    assert_eq!(e, expected);
                    0
                }
                (Err(e), expected) => panic!("failed with {e:?}, the model expected {expected:?}"),
            }
        });
        self.down.consume(used);
    }

    /// What the machine must make of `frame` (protocol §7), applied to the model.
    /// A frame of another version than the registration's is refused, except an Abort (§2.2, §14.8).
    fn expect(
        &mut self,
        version: u8,
        frame: wire::Result<Message>,
    ) -> Result<Option<RegisterEvent>, RegisterError> {
        let other_version = version != self.machine.version();
        let outcome = match (self.phase, frame) {
            (_, Err(wire::Error::UnsupportedVersion(v))) => {
                Err(RegisterError::UnsupportedVersion(Some(v)))
            }
            (_, Ok(m)) if other_version && !matches!(m, Message::Abort(_)) => {
                reach("register: a frame of the other version");
                Err(RegisterError::UnsupportedVersion(Some(version)))
            }
            (_, Err(e)) => Err(RegisterError::Wire(e)),
            (_, Ok(Message::Abort(AbortReason::UnsupportedVersion))) => {
                Err(RegisterError::UnsupportedVersion(None))
            }
            (_, Ok(Message::Abort(reason))) => Err(RegisterError::Aborted(reason)),
            (_, Ok(Message::RetryAfter { millis })) => Err(RegisterError::RetryAfter(
                Duration::from_millis(millis.into()),
            )),
            (Phase::AwaitChallenge, Ok(Message::Challenge(c))) => {
                self.enter(
                    Phase::AwaitRegistered(c),
                    self.now + self.config.step_timeout,
                );
                // The Proof, checked when it is sent.
                self.outgoing = Some((Message::Challenge(c), self.now));
                Ok(Some(RegisterEvent::Challenged {
                    observed: c.observed,
                }))
            }
            (Phase::AwaitRegistered(c), Ok(Message::Registered { wait_ms })) => {
                let wait = Duration::from_millis(wait_ms.into());
                let bound = self
                    .config
                    .wait_timeout
                    .min(wait + self.config.step_timeout);
                self.enter(Phase::Waiting(c), self.now + bound);
                reach("register: registered");
                Ok(Some(RegisterEvent::Registered { wait }))
            }
            (Phase::AwaitRegistered(_) | Phase::Waiting(_), Ok(Message::Ping { token })) => {
                self.outgoing = Some((Message::Ping { token }, self.now));
                Ok(None)
            }
            (Phase::AwaitRegistered(c) | Phase::Waiting(c), Ok(Message::Match(m))) => {
                Ok(Some(self.matched(&c, &m)))
            }
            (_, Ok(other)) => Err(RegisterError::UnexpectedMessage(other.msg_type())),
        };
        if let Err(e) = outcome {
            self.fail(e);
        }
        outcome
    }

    /// The Match, after the Challenge `c`: the punch's parameters.
    fn matched(&mut self, c: &Challenge, m: &Match) -> RegisterEvent {
        let info = PunchInfo {
            role: m.role,
            matched_at: self.now,
            start_at: self.now + Duration::from_millis(m.start_delay_ms.into()),
            own_observed: c.observed,
            own_nonce: self.hello.nonce,
            peer_observed: m.peer_observed,
            peer_local: m.peer_local,
            peer_nonce: m.peer_nonce,
            paths: m.paths,
        };
        self.enter(Phase::Matched, self.deadline);
        self.outgoing = None;
        reach("register: matched");
        RegisterEvent::Matched(info)
    }

    fn enter(&mut self, phase: Phase, deadline: Instant) {
        self.phase = phase;
        self.deadline = deadline;
    }

    fn fail(&mut self, error: RegisterError) {
        self.phase = Phase::Failed(error);
        self.outgoing = None;
    }

    /// What the machine sends is what the model expects: Hello, the Proof of the Challenge, the Pong
    /// of the latest Ping, each with its hold time.
    fn transmit(&mut self) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let sent = self.machine.transmit(self.now, &mut buf);
        let expected = self.outgoing.take();
        let Some(n) = sent else {
            assert_eq!(expected, None, "nothing sent");
            return;
        };
        let message = Message::parse_bytes(&buf[..n]).expect("a peer's frame parses");
        let Some((trigger, since)) = expected else {
            panic!("sent {message:?} unasked");
        };
        let hold = elapsed(self.now, since)
            .total_millis()
            .min(u64::from(u16::MAX)) as u16;
        match (trigger, message) {
            (Message::Hello(hello), Message::Hello(sent)) => assert_eq!(sent, hello),
            (Message::Challenge(c), Message::Proof(proof)) => {
                let t = transcript::registration(&self.hello, &c);
                assert_eq!(
                    FastVerifier.verify(&self.hello.key, t.as_bytes(), &proof.signature),
                    Ok(())
                );
                assert_eq!(proof.hold_ms, hold);
                reach("register: Proof sent");
            }
            (Message::Ping { token }, Message::Pong(pong)) => {
                assert_eq!((pong.token, pong.hold_ms), (token, hold));
                reach("register: Pong sent");
            }
            (trigger, sent) => panic!("sent {sent:?} for {trigger:?}"),
        }
    }

    /// Time passes; the deadline of the current step fails the registration, and only it.
    fn tick(&mut self, step: Duration) {
        self.now += step;
        let result = self.machine.poll(self.now);
        let awaiting = match self.phase {
            Phase::Failed(e) => return assert_eq!(result, Err(e)),
            Phase::Matched => return assert_eq!((result, self.machine.poll_at()), (Ok(()), None)),
            Phase::AwaitChallenge => Awaiting::Challenge,
            Phase::AwaitRegistered(_) => Awaiting::Registered,
            Phase::Waiting(_) => Awaiting::Match,
        };
        if self.now >= self.deadline {
            reach("register: a deadline passed");
            assert_eq!(result, Err(RegisterError::Timeout(awaiting)));
            self.fail(RegisterError::Timeout(awaiting));
        } else {
            assert_eq!(result, Ok(()));
            assert_eq!(self.machine.poll_at(), Some(self.deadline));
        }
    }
}
