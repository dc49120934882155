//! The peer's side of the relay (protocol §14.4–§14.5) for both peers of a pair, through an honest
//! mediator that holds each peer's bytes after its RelayRequest and splices them once both asked — and
//! a fuzzer that splits the streams anywhere, corrupts, truncates, replays and injects frames (an
//! Abort, a Relayed before the request, garbage), closes either connection, and moves time past the
//! handshake's deadline.
//!
//! Checks: no panic; `receive` never takes more than it was given; `poll_at` is never in the past
//! after `poll`; a failed relay stays failed with its first error; when both succeed they hold the
//! same session key; and on untouched streams with both requests made, both succeed once everything
//! in flight is delivered before the deadline.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2psc::proto::punch::Link;
use p2psc::proto::relay::Relay;
use p2psc::proto::{Handshake, HandshakeParams, SessionKey};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{self, AbortReason, FrameReader, Message, Nonce, Role, MAX_FRAME_LEN};
use p2psc_fuzz::crypto::FastVerifier;
use p2psc_fuzz::ident::identity;
use p2psc_fuzz::input::{self, below, byte, chunk, word};
use p2psc_fuzz::pipe::Pipe;
use p2psc_fuzz::{reach, Unstructured};

const NONCES: [Nonce; 2] = [[0x0A; 32], [0x0B; 32]];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let deadline = Instant::ZERO + Duration::from_millis(1 + u64::from(word(&mut u)));
    let mut run = Run::new(deadline);
    for _ in 0..96 {
        if u.is_empty() {
            break;
        }
        let side = below(&mut u, 2);
        match byte(&mut u) % 10 {
            0 => run.request(side),
            1 | 2 => run.transmit(side),
            3 | 4 => run.mediate(side, chunk(&mut u)),
            5 | 6 => run.deliver(side, chunk(&mut u)),
            7 => run.fault(side, &mut u),
            8 => run.close(side),
            _ => run.tick(input::step(&mut u)),
        }
        run.check();
    }
    run.finish();
});

/// Both peers' handshakes, prepared once per process (signing is the slow part).
fn handshakes() -> &'static [Handshake; 2] {
    static BOTH: OnceLock<[Handshake; 2]> = OnceLock::new();
    BOTH.get_or_init(|| {
        let (a, b) = (&identity(0).keypair, &identity(1).keypair);
        let params = |role, peer: &p2psc::identity::Keypair, own: usize| HandshakeParams {
            role,
            peer: peer.public_key(),
            own_nonce: NONCES[own],
            peer_nonce: NONCES[1 - own],
        };
        [
            Handshake::new(a, params(Role::Leader, b, 0), [0x1A; 32]),
            Handshake::new(b, params(Role::Follower, a, 1), [0x1B; 32]),
        ]
    })
}

/// One peer's mediator connection as the honest mediator sees it.
#[derive(Default)]
struct Leg {
    /// Peer → mediator, and mediator → peer.
    up: Pipe,
    down: Pipe,
    /// The mediator read this peer's RelayRequest; bytes behind it are payload.
    requested: bool,
    /// The mediator's reader of this peer's frames before the request.
    reader: FrameReader,
    /// The mediator refused this peer (a frame other than RelayRequest): it aborted and closed.
    refused: bool,
    closed: bool,
}

struct Run {
    relays: [Relay; 2],
    legs: [Leg; 2],
    /// The mediator sent Relayed to both.
    joined: bool,
    now: Instant,
    deadline: Instant,
    /// Something touched a stream or a connection: success is no longer owed.
    touched: bool,
    /// Each relay's first error, once it failed.
    failed: [Option<p2psc::proto::relay::RelayError>; 2],
}

impl Run {
    fn new(deadline: Instant) -> Run {
        Run {
            relays: [Relay::offered(), Relay::offered()],
            legs: Default::default(),
            joined: false,
            now: Instant::ZERO,
            deadline,
            touched: false,
            failed: [None; 2],
        }
    }

    fn request(&mut self, side: usize) {
        let deadline = self.deadline;
        self.relays[side].request(handshakes()[side].clone(), deadline);
    }

    /// Everything the relay has to send goes onto its connection.
    fn transmit(&mut self, side: usize) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.relays[side].transmit(&mut buf) {
            if !self.legs[side].closed {
                self.legs[side].up.send(&buf[..n]);
            }
        }
    }

    /// The mediator reads up to `max` bytes of `side`'s: frames until the RelayRequest, then payload
    /// for the other side once both asked.
    fn mediate(&mut self, side: usize, max: usize) {
        let leg = &mut self.legs[side];
        if leg.closed || leg.refused {
            return;
        }
        if !leg.requested {
            let bytes = leg.up.peek(max).to_vec();
            let (used, frame) = leg.reader.read(&bytes);
            leg.up.consume(used);
            match frame {
                None => return,
                Some(Ok(Message::RelayRequest)) => leg.requested = true,
                Some(_) => {
                    reach("relay: the mediator refused a frame");
                    leg.refused = true;
                    let abort = input::frame_in(wire::VERSION_2, &Message::Abort(AbortReason::UnexpectedMessage));
                    leg.down.send(&abort);
                    return;
                }
            }
        }
        if !self.joined && self.legs.iter().all(|l| l.requested) {
            reach("relay: joined");
            self.joined = true;
            for leg in &mut self.legs {
                leg.down.send(&input::frame_in(wire::VERSION_2, &Message::Relayed));
            }
        }
        if self.joined {
            let payload = self.legs[side].up.peek(max).to_vec();
            self.legs[side].up.consume(payload.len());
            self.legs[1 - side].down.send(&payload);
        }
    }

    /// Up to `max` bytes from the mediator reach `side`'s relay.
    fn deliver(&mut self, side: usize, max: usize) {
        let relay = &mut self.relays[side];
        let leg = &mut self.legs[side];
        let offered = leg.down.peek(max).len();
        let used = leg.down.deliver(max, |bytes| {
            let n = relay.receive(&FastVerifier, bytes);
            assert!(n <= bytes.len(), "took {n} of {} bytes", bytes.len());
            n
        });
        assert!(used <= offered);
    }

    fn fault(&mut self, side: usize, u: &mut Unstructured) {
        self.touched = true;
        match byte(u) % 3 {
            0 => self.legs[side].down.fault(u),
            1 => self.legs[side].up.fault(u),
            _ => {
                let message = match byte(u) % 3 {
                    0 => Message::Abort(AbortReason::from_u8(byte(u) % 16)),
                    1 => Message::Relayed,
                    _ => input::message(u),
                };
                self.legs[side].down.send(&input::frame_in(wire::VERSION_2, &message));
            }
        }
    }

    fn close(&mut self, side: usize) {
        self.touched = true;
        self.legs[side].closed = true;
        self.relays[side].observe(Link::Closing);
    }

    fn tick(&mut self, step: Duration) {
        self.now += step;
        for relay in &mut self.relays {
            relay.poll(self.now);
            assert!(relay.poll_at().is_none_or(|at| at > self.now));
        }
    }

    /// A failed relay stays failed with its first error; two successes agree on the key.
    fn check(&mut self) {
        for (relay, failed) in self.relays.iter().zip(&mut self.failed) {
            match (relay.result(), *failed) {
                (Some(Err(e)), None) => *failed = Some(e),
                (result, Some(e)) => assert_eq!(result, Some(Err(e)), "a failed relay changed"),
                _ => {}
            }
        }
        if let [Some(Ok(a)), Some(Ok(b))] = self.relays.each_ref().map(Relay::result) {
            reach("relay: both authenticated");
            assert!(same(&a, &b), "the relayed pair derived different keys");
        }
    }

    /// On untouched streams, with both requests made and time left, both succeed once everything in
    /// flight is delivered.
    fn finish(&mut self) {
        let owed = !self.touched
            && self.now < self.deadline
            && self.relays.iter().all(Relay::is_requested);
        if !owed {
            return;
        }
        for _ in 0..6 {
            for side in 0..2 {
                self.transmit(side);
                self.mediate(side, usize::MAX);
                self.deliver(side, usize::MAX);
            }
        }
        for (side, relay) in self.relays.iter().enumerate() {
            assert!(
                matches!(relay.result(), Some(Ok(_))),
                "side {side} did not authenticate through an honest relay: {:?}",
                relay.result()
            );
        }
        self.check();
    }
}

fn same(a: &SessionKey, b: &SessionKey) -> bool {
    a == b
}
