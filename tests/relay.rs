//! Protocol version 2 on the mediator's side, in memory with explicit times: the Match's paths from
//! probes and relay flags, the relay's join in both orders, its refusals, a partner that leaves, and
//! mixed version-1/version-2 pairs.

use std::net::SocketAddr;

use p2psc::identity::{Keypair, SaltyVerifier};
use p2psc::proto::mediator::probe::classify;
use p2psc::proto::mediator::{relay::relay_after, Entry, RelayConfig};
use p2psc::proto::{MediatorConfig, Notice, RegisterConfig, RegisterEvent, Registration};
use p2psc::proto::{Session, SessionEvent, Table};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{self, AbortReason, Mapping, Match, Message, RelayMode, Role, MAX_FRAME_LEN};

type TestTable = Table<heapless::Vec<Entry, 8>>;

fn at(v: i64) -> Instant {
    Instant::from_millis(v)
}

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One peer's connection: its registration, the mediator's session, the Match it got.
struct Peer {
    conn: u64,
    keypair: Keypair,
    client: Registration,
    session: Session,
    matched: Option<Match>,
    /// Frames the session sent after the Match.
    after_match: Vec<Message>,
}

impl Peer {
    fn new(conn: u64, relay: Option<RelayMode>, config: MediatorConfig) -> Peer {
        let keypair = Keypair::from_seed(&[conn as u8; 32]);
        let want = Keypair::from_seed(&[3 - conn as u8; 32]).public_key();
        let client = Registration::new(
            RegisterConfig::default(),
            keypair.public_key(),
            want,
            [conn as u8; 32],
            None,
            at(0),
        );
        let client = match relay {
            Some(mode) => client.with_relay(mode),
            None => client,
        };
        let observed = ep(&format!("198.51.100.{conn}:4000{conn}"));
        Peer {
            conn,
            keypair,
            client,
            session: Session::new(config, observed, [conn as u8; 32], at(0)),
            matched: None,
            after_match: Vec::new(),
        }
    }

    /// Client → session until the client is quiet, sent at `sent`, received at `now`; the session's
    /// events.
    fn up(&mut self, sent: Instant, now: Instant) -> Vec<SessionEvent> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let mut events = Vec::new();
        while let Some(n) = self.client.transmit(sent, &mut buf) {
            let (used, event) = self.session.receive(now, &SaltyVerifier, &buf[..n]);
            assert_eq!(used, n);
            events.extend(event);
        }
        events
    }

    /// Session → client; frames after the Match are kept for the test to look at.
    fn down(&mut self, now: Instant) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.session.transmit(now, &mut buf) {
            if self.matched.is_some() {
                self.after_match
                    .push(Message::parse_bytes(&buf[..n]).unwrap());
                continue;
            }
            if let Ok((_, Some(RegisterEvent::Matched(_)))) =
                self.client.receive(now, &self.keypair, &buf[..n])
            {
                let Ok(Message::Match(m)) = Message::parse_bytes(&buf[..n]) else {
                    unreachable!()
                };
                assert_eq!(buf[0], if m.paths.is_some() { 2 } else { 1 });
                self.matched = Some(m);
            }
        }
    }

    /// The peer sends a frame (after its Match); the session's event.
    fn send(&mut self, now: Instant, message: Message) -> Option<SessionEvent> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = message.emit_bytes_in(wire::VERSION_2, &mut buf).unwrap();
        let (used, event) = self.session.receive(now, &SaltyVerifier, &buf[..n]);
        assert_eq!(used, n);
        event
    }
}

/// The mediator: a table and the routing of notices (and the events they yield) between sessions.
struct Mediator {
    table: TestTable,
}

impl Mediator {
    fn new(config: MediatorConfig) -> Mediator {
        Mediator {
            table: Table::new(heapless::Vec::new(), config),
        }
    }

    /// Act on `event` of `peers[from]`, deliver every notice, and act on what they yield in turn.
    fn settle(&mut self, peers: &mut [&mut Peer], from: usize, event: SessionEvent, now: Instant) {
        let mut pending = vec![(from, event)];
        while let Some((i, event)) = pending.pop() {
            let conn = peers[i].conn;
            for (other, notice) in self.table.settle(now, conn, &mut peers[i].session, event) {
                let j = peers.iter().position(|p| p.conn == other).unwrap();
                if let Some(e) = peers[j].session.notify(now, notice) {
                    pending.push((j, e));
                }
            }
        }
    }

    /// Register `peers[i]` at `t` with round trip `rtt`; its probe seen at `probe`.
    fn register(
        &mut self,
        peers: &mut [&mut Peer],
        i: usize,
        t: i64,
        rtt: i64,
        probe: Option<SocketAddr>,
    ) {
        assert!(peers[i].up(at(t), at(t)).is_empty());
        peers[i].down(at(t));
        // The Proof leaves as the Challenge arrives, and takes the round trip to reach the session.
        for mut e in peers[i].up(at(t), at(t + rtt)) {
            if let SessionEvent::Verified(reg) = &mut e {
                reg.mapping = classify(reg.relay, reg.observed, probe);
            }
            self.settle(peers, i, e, at(t + rtt));
        }
        for p in peers.iter_mut() {
            p.down(at(t + rtt));
        }
    }
}

/// A matched version-2 pair: 1 (leader, probe at its registration's endpoint) and 2 (follower, probe
/// at another port); both round trips 100 ms.
fn matched_pair(config: MediatorConfig) -> (Mediator, Peer, Peer) {
    let mut m = Mediator::new(config);
    let (mut a, mut b) = (
        Peer::new(1, Some(RelayMode::Fallback), config),
        Peer::new(2, Some(RelayMode::Fallback), config),
    );
    m.register(
        &mut [&mut a, &mut b],
        0,
        0,
        100,
        Some(ep("198.51.100.1:40001")),
    );
    m.register(
        &mut [&mut a, &mut b],
        1,
        1000,
        100,
        Some(ep("198.51.100.2:50000")),
    );
    (m, a, b)
}

#[test]
fn the_match_carries_both_classes_and_the_fallback_deadline() {
    let (m, a, b) = matched_pair(MediatorConfig::default());
    let (ma, mb) = (a.matched.unwrap(), b.matched.unwrap());
    let (pa, pb) = (ma.paths.unwrap(), mb.paths.unwrap());
    assert_eq!((ma.role, mb.role), (Role::Leader, Role::Follower));
    assert_eq!(
        (pa.own, pa.peer),
        (Mapping::Independent, Mapping::Dependent)
    );
    assert_eq!(
        (pb.own, pb.peer),
        (Mapping::Dependent, Mapping::Independent)
    );
    let after = relay_after(Duration::from_millis(100), Duration::from_millis(100));
    assert_eq!((pa.relay_after_ms, pb.relay_after_ms), (after, after));
    assert_eq!(m.table.stats().matches, 1);
}

/// Both peers request the relay, `first` first; the bytes behind a request stay unread.
fn join(first: usize) -> (Mediator, Peer, Peer) {
    let (mut m, mut a, mut b) = matched_pair(MediatorConfig::default());
    let order = if first == 0 { [0, 1] } else { [1, 0] };
    for (k, i) in order.into_iter().enumerate() {
        let mut peers = [&mut a, &mut b];
        let event = peers[i].send(at(2000 + k as i64), Message::RelayRequest);
        // The first flight behind it is payload: the session takes none of it.
        let (used, none) = peers[i]
            .session
            .receive(at(2000), &SaltyVerifier, &[1, 0xC1, 0, 0x80]);
        assert_eq!((used, none), (0, None));
        assert!(peers[i].session.holds_payload());
        if let Some(e) = event {
            m.settle(&mut peers, i, e, at(2000 + k as i64));
        }
    }
    a.down(at(2010));
    b.down(at(2010));
    (m, a, b)
}

#[test]
fn the_relay_joins_whichever_peer_asks_first() {
    for first in [0, 1] {
        let (m, a, b) = join(first);
        for p in [&a, &b] {
            assert_eq!(p.after_match, [Message::Relayed], "first {first}");
            assert!(p.session.is_relaying());
        }
        assert_eq!(a.session.relay_pair(), Some((2, Role::Leader)));
        assert_eq!(b.session.relay_pair(), Some((1, Role::Follower)));
        let stats = m.table.stats();
        assert_eq!((stats.relays, stats.relays_open), (1, 1));
        // Once relaying, leaving tells nobody: the relay's own end is the shell's.
        assert_eq!(a.session.departure(), None);
    }
}

#[test]
fn a_full_relay_refuses_both_peers() {
    let config = MediatorConfig {
        relay: RelayConfig {
            max_pairs: 0,
            ..RelayConfig::default()
        },
        ..MediatorConfig::default()
    };
    let (mut m, mut a, mut b) = matched_pair(config);
    // The leader asks first and waits; the follower's request reaches it and it decides.
    assert!(a.send(at(2000), Message::RelayRequest).is_none());
    let e = b.send(at(2001), Message::RelayRequest).unwrap();
    assert_eq!(e, SessionEvent::RelayRequested { leader: 1 });
    m.settle(&mut [&mut a, &mut b], 1, e, at(2001));
    a.down(at(2002));
    b.down(at(2002));
    let full = Message::Abort(AbortReason::RelayFull);
    assert_eq!(a.after_match, [full]);
    assert_eq!(b.after_match, [full]);
    let stats = m.table.stats();
    assert_eq!(stats.aborts[AbortReason::RelayFull.to_u8() as usize], 2);
    assert_eq!((stats.relays, stats.relays_open), (0, 0));
    assert!(!a.session.is_relaying() && !b.session.is_relaying());
}

#[test]
fn a_partner_that_leaves_or_never_asks_is_gone() {
    let (mut m, mut a, mut b) = matched_pair(MediatorConfig::default());
    let e = b.send(at(2000), Message::RelayRequest).unwrap();
    m.settle(&mut [&mut a, &mut b], 1, e, at(2000));
    // The leader's connection ends before it asked.
    let (to, notice) = a.session.departure().unwrap();
    assert_eq!((to, notice), (2, Notice::PartnerGone));
    let e = b.session.notify(at(2100), notice).unwrap();
    assert!(matches!(
        e,
        SessionEvent::Aborted {
            reason: AbortReason::PeerGone,
            ..
        }
    ));
    b.down(at(2100));
    assert_eq!(b.after_match, [Message::Abort(AbortReason::PeerGone)]);

    // The other never asks: the linger ends the wait.
    let (_, mut a, mut b) = matched_pair(MediatorConfig::default());
    assert!(a.send(at(2000), Message::RelayRequest).is_none());
    let linger_end = a.session.poll_at().unwrap();
    assert_eq!(linger_end, at(1100) + MediatorConfig::default().linger);
    let e = a.session.poll(linger_end).unwrap();
    assert!(matches!(
        e,
        SessionEvent::Aborted {
            reason: AbortReason::PeerGone,
            ..
        }
    ));
    a.down(linger_end);
    assert_eq!(a.after_match, [Message::Abort(AbortReason::PeerGone)]);
    // A partner that left before we asked: our request is answered at once.
    let (to, notice) = a.session.departure().unwrap_or((2, Notice::PartnerGone));
    assert_eq!(to, 2);
    assert_eq!(b.session.notify(linger_end, notice), None);
    let e = b.send(linger_end, Message::RelayRequest).unwrap();
    assert!(matches!(
        e,
        SessionEvent::Aborted {
            reason: AbortReason::PeerGone,
            ..
        }
    ));
}

#[test]
fn no_relay_offered_means_refused_and_mixed_versions_punch() {
    // Relaying off: the Match offers none; a request anyway is refused.
    let off = MediatorConfig {
        relay: RelayConfig {
            enabled: false,
            ..RelayConfig::default()
        },
        ..MediatorConfig::default()
    };
    let (_, mut a, _) = matched_pair(off);
    assert_eq!(a.matched.unwrap().paths.unwrap().relay_after_ms, 0);
    let e = a.send(at(2000), Message::RelayRequest).unwrap();
    assert!(matches!(
        e,
        SessionEvent::Aborted {
            reason: AbortReason::RelayRefused,
            ..
        }
    ));
    assert_eq!(a.session.departure(), None);

    // A version-1 leader and a version-2 follower: a version-1 Match for the one, and for the
    // other the peer's class unknown and no relay.
    let config = MediatorConfig::default();
    let mut m = Mediator::new(config);
    let (mut a, mut b) = (
        Peer::new(1, None, config),
        Peer::new(2, Some(RelayMode::Only), config),
    );
    m.register(&mut [&mut a, &mut b], 0, 0, 100, None);
    m.register(
        &mut [&mut a, &mut b],
        1,
        1000,
        100,
        Some(ep("198.51.100.2:40002")),
    );
    assert_eq!(a.matched.unwrap().paths, None);
    let pb = b.matched.unwrap().paths.unwrap();
    assert_eq!(
        (pb.own, pb.peer, pb.relay_after_ms),
        (Mapping::RelayOnly, Mapping::Unknown, 0)
    );
    // The version-1 session ignores anything after its Match, as version 1 says.
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = Message::RelayRequest.emit_bytes(&mut buf).unwrap();
    assert_eq!(
        a.session.receive(at(2000), &SaltyVerifier, &buf[..n]),
        (n, None)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The version-2 frames of `doc/protocol.md` Appendix A (A.2), with the inputs of A.1.
#[test]
fn spec_vectors_version_2() {
    use p2psc::proto::transcript;
    use p2psc::wire::{Challenge, Hello, Paths};
    let (ka, kb) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let hello = Hello {
        key: ka.public_key(),
        want: kb.public_key(),
        nonce: [0x11; 32],
        local: Some(ep("192.168.1.10:40000")),
        relay: Some(RelayMode::Fallback),
    };
    let challenge = Challenge {
        nonce: [0xAA; 32],
        observed: ep("203.0.113.1:50001"),
    };
    let frame = |m: Message| {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = m.emit_bytes_in(wire::VERSION_2, &mut buf).unwrap();
        hex(&buf[..n])
    };
    let t = transcript::registration(&hello, &challenge);
    let sig = p2psc::identity::Signer::sign(&ka, t.as_bytes());
    let to_a = Match {
        role: Role::Leader,
        start_delay_ms: 0,
        peer_nonce: [0x22; 32],
        peer_observed: ep("198.51.100.2:60002"),
        peer_local: None,
        paths: Some(Paths {
            own: Mapping::Independent,
            peer: Mapping::Dependent,
            relay_after_ms: 3800,
        }),
    };
    let got = [
        ("hello", frame(Message::Hello(hello))),
        ("transcript", hex(t.as_bytes())),
        ("signature", hex(sig.as_bytes())),
        ("probe", frame(Message::Probe { nonce: [0x11; 32] })),
        ("match", frame(Message::Match(to_a))),
        ("request", frame(Message::RelayRequest)),
        ("relayed", frame(Message::Relayed)),
        ("full", frame(Message::Abort(AbortReason::RelayFull))),
    ];
    let want = [
        (
            "hello",
            "02010073\
            8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
            8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394\
            1111111111111111111111111111111111111111111111111111111111111111\
            00000000000000000000ffffc0a8010a9c40\
            01",
        ),
        (
            "transcript",
            "70327073632f32207265676973746572 00\
            8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
            8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394\
            1111111111111111111111111111111111111111111111111111111111111111\
            00000000000000000000ffffc0a8010a9c40\
            01\
            aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\
            00000000000000000000ffffcb007101c351",
        ),
        (
            "signature",
            "0a25ae2df87a6f3219015ccc981c9acdfeb89e9b77595ca06f60f2c638bcc909\
            131bd529353681394b30543d3eb419e8d4c87f7e63e0ed0e50540d8d164cc009",
        ),
        (
            "probe",
            "02040020\
            1111111111111111111111111111111111111111111111111111111111111111",
        ),
        (
            "match",
            "0284004b 00 0000\
            2222222222222222222222222222222222222222222222222222222222222222\
            00000000000000000000ffffc6336402ea62\
            000000000000000000000000000000000000\
            01 02 0ed8",
        ),
        ("request", "02050000"),
        ("relayed", "02870000"),
        ("full", "028600010e"),
    ];
    for ((name, got), (_, want)) in got.iter().zip(want) {
        let want: String = want.split_whitespace().collect();
        assert_eq!(got, &want, "{name}");
    }
    // An independent verifier accepts the signature over the version-2 transcript.
    let key = ed25519_dalek::VerifyingKey::from_bytes(ka.public_key().as_bytes()).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(sig.as_bytes());
    assert!(key.verify_strict(t.as_bytes(), &sig).is_ok());
}
