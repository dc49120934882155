//! The mediator — its sessions and their shared table — through whole registrations: up to four
//! connections at once, each with an honest peer (the library's own registration client, signing for
//! real) or a hostile one (any frames, replays of other connections' frames), bytes split anywhere,
//! faults on either direction, time jumps across every deadline (Pings, Pongs, expiry, linger),
//! disconnects and server aborts.
//!
//! Checks: every frame a session sends parses and goes mediator → peer; a session verifies a key only
//! if that key's owner signed this very session's challenge in this run (replayed proofs never pass);
//! a Match names a verified registrant that wants the receiver and is wanted by it; no notice goes to
//! a connection that has ended; `poll_at` is never in the past after `poll`; and an honest peer on an
//! untouched connection is never refused as malformed, unexpected or unproven, nor fails itself with
//! anything but a timeout or the mediator's policy.
#![no_main]

use core::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use p2psc::proto::mediator::{Entry, Registrant};
use p2psc::proto::{transcript, ConnId, MediatorConfig, Notice, RegisterConfig, RegisterError};
use p2psc::proto::{RegisterEvent, Registration, Session, SessionEvent, Table};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{AbortReason, Challenge, Hello, Match, Message, Nonce, MAX_FRAME_LEN, VERSION_2};
use p2psc_fuzz::crypto::{FastSigner, FastVerifier, SignLog};
use p2psc_fuzz::ident::{self, IDENTITIES};
use p2psc_fuzz::input::{self, below, byte, chunk, one_in, word};
use p2psc_fuzz::pipe::Pipe;
use p2psc_fuzz::{reach, trace, Unstructured};

/// Most connections at once.
const CONNECTIONS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let ms = |u: &mut Unstructured| Duration::from_millis(1 + u64::from(word(u) % 30_000));
    let config = MediatorConfig {
        step_timeout: ms(&mut u),
        wait_timeout: ms(&mut u),
        ping_interval: ms(&mut u),
        ping_timeout: ms(&mut u),
        linger: ms(&mut u),
        retry_after: ms(&mut u),
        capacity: 1 + below(&mut u, 4),
        // The default share (far above the capacity): a full table is still shared by eviction between
        // the networks of the endpoints drawn.
        ..MediatorConfig::default()
    };
    let log = SignLog::default();
    Mediator::new(config, &log).run(&mut u);
});

/// One connection: the mediator's session, the peer on the other end, and the stream both ways.
struct Conn {
    id: ConnId,
    session: Session,
    /// The session's challenge nonce (unique per connection) and the peer's endpoint as observed.
    nonce: Nonce,
    observed: SocketAddr,
    /// The honest peer, if the peer is one (otherwise the fuzzer speaks for it).
    client: Option<Client>,
    up: Pipe,
    down: Pipe,
    /// What the session verified.
    registrant: Option<Registrant>,
}

/// An honest peer: the library's registration client.
struct Client {
    who: usize,
    registration: Registration,
    /// Its Match offered a relay (version 2), and whether it has asked for it.
    offered: bool,
    asked: bool,
}

impl Conn {
    /// Neither direction was touched and the peer is honest: its registration must go by the book.
    fn clean(&self) -> bool {
        self.client.is_some() && !self.up.tampered() && !self.down.tampered()
    }
}

struct Mediator<'a> {
    config: MediatorConfig,
    table: Table<heapless::Vec<Entry, 3>>,
    now: Instant,
    conns: Vec<Conn>,
    next_id: ConnId,
    /// What the honest peers signed in this run.
    log: &'a SignLog,
    /// Every registration the sessions verified in this run.
    verified: Vec<Registrant>,
}

impl<'a> Mediator<'a> {
    fn new(config: MediatorConfig, log: &'a SignLog) -> Self {
        let table = Table::new(heapless::Vec::new(), config);
        Mediator {
            config,
            table,
            now: Instant::ZERO,
            conns: Vec::new(),
            next_id: 1,
            log,
            verified: Vec::new(),
        }
    }

    fn run(&mut self, u: &mut Unstructured) {
        for _ in 0..192 {
            if u.is_empty() {
                break;
            }
            let op = byte(u) % 10;
            if op == 0 || self.conns.is_empty() {
                self.connect(u);
                continue;
            }
            let c = below(u, self.conns.len());
            let session = &self.conns[c].session;
            trace!(
                "{}: op {} on connection {} (key {:?})",
                self.now,
                op,
                self.conns[c].id,
                session.key()
            );
            match op {
                1 | 2 => self.peer_sends(u, c),
                3 => self.deliver_up(u, c),
                4 => self.mediator_sends(c),
                5 => self.deliver_down(u, c),
                6 if one_in(u, 2) => self.conns[c].up.fault(u),
                6 => self.conns[c].down.fault(u),
                7 => self.tick(u),
                8 => self.close(c),
                _ => {
                    if let Some(event) = self.conns[c].session.abort(AbortReason::ShuttingDown) {
                        self.settle(c, event);
                    }
                }
            }
        }
    }

    /// A new connection, from an honest peer (three in four) or a hostile one.
    fn connect(&mut self, u: &mut Unstructured) {
        if self.conns.len() == CONNECTIONS {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let nonce = [0xC0 ^ id as u8; 32];
        let observed = input::endpoint(u);
        let (who, want) = (below(u, IDENTITIES), below(u, IDENTITIES));
        let client = (!one_in(u, 4)).then(|| {
            let (nonce, local) = (input::nonce(u), input::maybe_endpoint(u));
            let (key, want) = (ident::public(who), ident::public(want));
            let registration =
                Registration::new(RegisterConfig::default(), key, want, nonce, local, self.now);
            // Version 1 or version 2 (with its relay flags).
            let registration = match input::relay_mode(u) {
                Some(mode) => registration.with_relay(mode),
                None => registration,
            };
            Client {
                who,
                registration,
                offered: false,
                asked: false,
            }
        });
        let session = Session::new(self.config, observed, nonce, self.now);
        self.conns.push(Conn {
            id,
            session,
            nonce,
            observed,
            client,
            up: Pipe::new(),
            down: Pipe::new(),
            registrant: None,
        });
    }

    /// The peer sends: an honest one whatever its client has to send; a hostile one any frame, or a
    /// frame another connection carried (a replayed Hello or Proof).
    fn peer_sends(&mut self, u: &mut Unstructured, c: usize) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let conn = &mut self.conns[c];
        if let Some(client) = &mut conn.client {
            while let Some(n) = client.registration.transmit(self.now, &mut buf) {
                conn.up.send(&buf[..n]);
            }
            // Offered a relay, it asks for it, its first flight (any bytes) right behind (§14.4).
            if client.offered && !client.asked && one_in(u, 2) {
                reach("mediator: an honest peer asks for the relay");
                client.asked = true;
                conn.up.send(&input::frame_in(VERSION_2, &Message::RelayRequest));
                conn.up.send(&input::garbage(u));
            }
            return;
        }
        let other = below(u, self.conns.len());
        let replay = match self.conns[other].up.history() {
            [] => None,
            frames => Some(frames[below(u, frames.len())].clone()),
        };
        let frame = replay
            .filter(|_| one_in(u, 2))
            .unwrap_or_else(|| input::frame(&input::message(u)));
        self.conns[c].up.send(&frame);
    }

    /// Bytes from the peer reach the session; whatever it reports is settled with the table at once,
    /// frame by frame, as the server does (a Verified left unsettled while later frames abort the
    /// session would leave its registration in the table).
    fn deliver_up(&mut self, u: &mut Unstructured, c: usize) {
        let bytes = self.conns[c].up.peek(chunk(u)).to_vec();
        let used = p2psc::proto::feed(&bytes, |rest| {
            let (used, event) = self.conns[c].session.receive(self.now, &FastVerifier, rest);
            if let Some(event) = event {
                self.settle(c, event);
            }
            used
        });
        self.conns[c].up.consume(used);
    }

    /// The session sends: every frame parses and is one a mediator sends.
    fn mediator_sends(&mut self, c: usize) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.conns[c].session.transmit(self.now, &mut buf) {
            let message = Message::parse_bytes(&buf[..n]).expect("a session's frame parses");
            assert!(buf[1] & 0xC0 == 0x80, "a mediator sent {message:?}");
            match message {
                Message::Match(m) => self.check_match(c, &m),
                Message::RetryAfter { .. } => reach("mediator: RetryAfter (table full)"),
                Message::Ping { .. } => reach("mediator: Ping sent"),
                Message::Relayed => reach("mediator: Relayed sent"),
                _ => {}
            }
            self.conns[c].down.send(&buf[..n]);
        }
    }

    /// Bytes from the session reach the honest peer (a hostile one ignores them).
    fn deliver_down(&mut self, u: &mut Unstructured, c: usize) {
        let now = self.now;
        let conn = &mut self.conns[c];
        let Some(client) = &mut conn.client else {
            conn.down.clear();
            return;
        };
        let signer = FastSigner::new(ident::identity(client.who), self.log);
        let mut events = Vec::new();
        conn.down.deliver(chunk(u), |bytes| {
            match client.registration.receive(now, &signer, bytes) {
                Ok((used, event)) => {
                    events.extend(event);
                    used
                }
                Err(_) => 0,
            }
        });
        for event in events {
            if let RegisterEvent::Matched(info) = event {
                reach("mediator: an honest peer matched");
                client.offered = info.paths.is_some_and(|p| p.relay_after_ms > 0);
                if !conn.down.tampered() {
                    assert_eq!(info.own_observed, conn.observed);
                }
            }
        }
        self.check_client(c);
    }

    /// Time passes: every session, the table and every honest client run their deadlines.
    fn tick(&mut self, u: &mut Unstructured) {
        self.now += input::step(u);
        let now = self.now;
        for c in 0..self.conns.len() {
            while let Some(event) = self.conns[c].session.poll(now) {
                self.settle(c, event);
            }
            if let Some(at) = self.conns[c].session.poll_at() {
                assert!(at > now, "session poll_at {at} after poll at {now}");
            }
            if let Some(client) = &mut self.conns[c].client {
                if client.registration.poll(now).is_ok() {
                    assert!(client.registration.poll_at().is_none_or(|at| at > now));
                }
            }
            self.check_client(c);
        }
        let mut notices = Vec::new();
        self.table
            .poll(now, |conn, notice| notices.push((conn, notice)));
        self.deliver(notices);
        assert!(self.table.poll_at().is_none_or(|at| at > now));
    }

    /// The peer closes its connection; the server drops the session and its waiting entry.
    fn close(&mut self, c: usize) {
        let conn = self.conns.remove(c);
        let held = conn.session.waiting_key();
        self.table.connection_ended(conn.id, &conn.session);
        // A partner still waiting for the relay learns that this one left (as the server tells it).
        if let Some((partner, notice)) = conn.session.departure() {
            if self.conns.iter().any(|k| k.id == partner) {
                reach("mediator: a relay partner left");
                self.deliver([(partner, notice)]);
            }
        }
        if let Some(key) = held {
            reach("mediator: a waiting peer disconnected");
            assert!(self.table.get(&key).is_none_or(|e| e.conn != conn.id));
        }
    }

    /// Act on a session's event as a server does, then deliver the table's notices.
    fn settle(&mut self, c: usize, event: SessionEvent) {
        match event {
            SessionEvent::Verified(reg) => self.check_verified(c, &reg),
            SessionEvent::Aborted { reason, .. } => {
                reach(match reason {
                    AbortReason::BadProof => "mediator: abort BadProof",
                    AbortReason::Unresponsive => "mediator: abort Unresponsive (no Pong)",
                    AbortReason::PeerTimeout => "mediator: abort PeerTimeout (wait expired)",
                    AbortReason::Replaced => "mediator: abort Replaced",
                    AbortReason::Timeout => "mediator: abort Timeout (registration step)",
                    _ => "mediator: abort, other reason",
                });
                let conn = &self.conns[c];
                assert!(
                    !conn.clean() || by_policy(reason),
                    "an honest peer aborted: {reason:?}"
                );
            }
            SessionEvent::Rtt(..) => reach("mediator: a Pong measured the round trip"),
            SessionEvent::RelayRequested { .. } => reach("mediator: a follower asked for the relay"),
            SessionEvent::RelayJoin { .. } => reach("mediator: a leader joins the relay"),
        }
        let (now, id) = (self.now, self.conns[c].id);
        let notices = self
            .table
            .settle(now, id, &mut self.conns[c].session, event);
        self.deliver(notices);
        assert!(self.table.len() <= self.config.capacity);
    }

    fn deliver(&mut self, notices: impl IntoIterator<Item = (ConnId, Notice)>) {
        for (id, notice) in notices {
            let Some(c) = self.conns.iter().position(|conn| conn.id == id) else {
                panic!("{notice:?} for connection {id}, which has ended");
            };
            if let Some(event) = self.conns[c].session.notify(self.now, notice) {
                self.settle(c, event);
            }
        }
    }

    /// A session verified a registration: its key's owner signed this session's challenge, in this run.
    fn check_verified(&mut self, c: usize, reg: &Registrant) {
        let conn = &self.conns[c];
        let hello = Hello {
            key: reg.key,
            want: reg.want,
            nonce: reg.nonce,
            local: reg.local,
            relay: reg.relay,
        };
        let challenge = Challenge {
            nonce: conn.nonce,
            observed: conn.observed,
        };
        let t = transcript::registration(&hello, &challenge);
        assert!(
            self.log.signed(&reg.key, t.as_bytes()),
            "{reg:?} verified without its owner's proof"
        );
        assert_eq!(reg.observed, conn.observed);
        reach(if conn.client.is_some() {
            "mediator: an honest peer verified"
        } else {
            "mediator: a replayed proof verified"
        });
        self.conns[c].registrant = Some(*reg);
        self.verified.push(*reg);
    }

    /// A Match goes to a verified registrant and names one it wants and that wants it back.
    fn check_match(&self, c: usize, m: &Match) {
        reach("mediator: a Match sent");
        let conn = &self.conns[c];
        let Some(me) = &conn.registrant else {
            panic!("a Match on connection {}, which never verified", conn.id);
        };
        let fits = |r: &&Registrant| {
            r.key == me.want
                && r.want == me.key
                && (r.nonce, r.observed, r.local) == (m.peer_nonce, m.peer_observed, m.peer_local)
        };
        assert!(
            self.verified.iter().any(|r| fits(&r)),
            "{m:?} for {me:?} names no counterpart"
        );
    }

    /// An honest peer on an untouched connection fails only by timeout or the mediator's policy.
    fn check_client(&self, c: usize) {
        let conn = &self.conns[c];
        let Some(error) = conn.client.as_ref().and_then(|cl| cl.registration.error()) else {
            return;
        };
        let fair = match error {
            RegisterError::Timeout(_) | RegisterError::RetryAfter(_) => true,
            RegisterError::Aborted(reason) => by_policy(reason),
            _ => false,
        };
        assert!(!conn.clean() || fair, "an honest peer failed: {error:?}");
    }
}

/// Abort reasons that come from the mediator's policy or deadlines, never from a peer's mistake.
fn by_policy(reason: AbortReason) -> bool {
    use AbortReason::*;
    matches!(
        reason,
        Timeout
            | PeerTimeout
            | Replaced
            | SelfMatch
            | ShuttingDown
            | Unresponsive
            | RelayFull
            | PeerGone
    )
}
