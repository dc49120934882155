//! The three sans-IO state machines together, in memory, with explicit times: registration, matching and
//! the peer handshake, and every failure path of the protocol.

use std::net::SocketAddr;

use p2psc::identity::{Keypair, PublicKey, SaltyVerifier};
use p2psc::proto::mediator::Entry;
use p2psc::proto::{
    AuthError, AuthEvent, Handshake, HandshakeParams, MediatorConfig, Notice, PunchInfo,
    RegisterConfig, RegisterError, RegisterEvent, Registration, Session, SessionEvent, Table,
};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{self, AbortReason, Message, Role, MAX_FRAME_LEN};

type TestTable = Table<heapless::Vec<Entry, 8>>;

fn kp(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn at(v: i64) -> Instant {
    Instant::from_millis(v)
}

/// A handshake on a connection established now, to finish by `deadline`.
fn started(
    signer: &Keypair,
    params: HandshakeParams,
    seed: [u8; 32],
    deadline: Instant,
) -> Handshake {
    let mut h = Handshake::new(signer, params, seed);
    h.start(deadline);
    h
}

/// Move every byte of `bytes` into a `receive`-style function that may consume part of it per call.
fn feed<E>(bytes: &[u8], mut receive: impl FnMut(&[u8]) -> (usize, Option<E>)) -> Vec<E> {
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (used, event) = receive(rest);
        events.extend(event);
        if used == 0 {
            break;
        }
        rest = &rest[used..];
    }
    events
}

/// One peer's connection to the mediator: the client machine, the mediator session, and its id.
struct Link {
    conn: u64,
    keypair: Keypair,
    client: Registration,
    session: Session,
    client_events: Vec<Result<RegisterEvent, RegisterError>>,
}

impl Link {
    fn new(conn: u64, keypair: Keypair, want: PublicKey, observed: &str, now: Instant) -> Link {
        let own = keypair.public_key();
        Link {
            conn,
            client: Registration::new(
                RegisterConfig::default(),
                own,
                want,
                [conn as u8; 32],
                Some(ep("192.168.1.10:40000")),
                now,
            ),
            session: Session::new(
                MediatorConfig::default(),
                ep(observed),
                [0xA0 | conn as u8; 32],
                now,
            ),
            keypair,
            client_events: Vec::new(),
        }
    }

    /// Client → mediator, sent and received at `now`; returns session events.
    fn up(&mut self, now: Instant) -> Vec<SessionEvent> {
        self.up_at(now, now)
    }

    /// Client → mediator, sent at `sent` and received at `received`.
    fn up_at(&mut self, sent: Instant, received: Instant) -> Vec<SessionEvent> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let mut events = Vec::new();
        while let Some(n) = self.client.transmit(sent, &mut buf) {
            let session = &mut self.session;
            events.extend(feed(&buf[..n], |d| {
                session.receive(received, &SaltyVerifier, d)
            }));
        }
        events
    }

    /// Mediator → client at `now`.
    fn down(&mut self, now: Instant) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.session.transmit(now, &mut buf) {
            let (client, keypair) = (&mut self.client, &self.keypair);
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                match client.receive(now, keypair, rest) {
                    Ok((used, event)) => {
                        self.client_events.extend(event.map(Ok));
                        rest = &rest[used..];
                    }
                    Err(e) => {
                        self.client_events.push(Err(e));
                        break;
                    }
                }
            }
        }
    }
}

/// Apply a session event to the table and route the notices.
fn settle(
    table: &mut TestTable,
    links: &mut [&mut Link],
    from: usize,
    event: SessionEvent,
    now: Instant,
) {
    let conn = links[from].conn;
    for (other, notice) in table.settle(now, conn, &mut links[from].session, event) {
        for l in links.iter_mut().filter(|l| l.conn == other) {
            l.session.notify(now, notice);
        }
    }
}

/// Register `link` with `rtt`: Hello at `t`, Challenge back, Proof arriving `rtt` after the Challenge left.
fn register(table: &mut TestTable, links: &mut [&mut Link], i: usize, t: i64, rtt: i64) {
    assert!(links[i].up(at(t)).is_empty()); // Hello
    links[i].down(at(t)); // Challenge leaves at t, the Proof goes straight back
    for e in links[i].up_at(at(t), at(t + rtt)) {
        settle(table, links, i, e, at(t + rtt));
    }
    for l in links.iter_mut() {
        l.down(at(t + rtt));
    }
}

fn matched(link: &Link) -> PunchInfo {
    link.client_events
        .iter()
        .find_map(|e| match e {
            Ok(RegisterEvent::Matched(info)) => Some(*info),
            _ => None,
        })
        .expect("matched")
}

fn last_error(link: &Link) -> Option<RegisterError> {
    link.client_events.iter().rev().find_map(|e| e.err())
}

fn table() -> TestTable {
    Table::new(heapless::Vec::new(), MediatorConfig::default())
}

fn params(info: &PunchInfo, peer: PublicKey) -> HandshakeParams {
    HandshakeParams {
        role: info.role,
        peer,
        own_nonce: info.own_nonce,
        peer_nonce: info.peer_nonce,
    }
}

/// What a Match would tell a peer with `role`, without a registration behind it.
fn lone_punch_info(role: Role) -> PunchInfo {
    PunchInfo {
        role,
        matched_at: Instant::from_millis(0),
        start_at: at(0),
        own_observed: ep("203.0.113.1:1"),
        own_nonce: [1; 32],
        peer_observed: ep("198.51.100.1:1"),
        peer_local: None,
        peer_nonce: [2; 32],
        paths: None,
    }
}

/// The two handshakes of a registered pair (single candidate, deadline t = 5 s); the leader (A) has
/// confirmed the connection, as it does its first established one.
fn handshakes(a: &Link, ia: &PunchInfo, b: &Link, ib: &PunchInfo) -> (Handshake, Handshake) {
    let (mut ha, hb) = (
        started(
            &a.keypair,
            params(ia, b.keypair.public_key()),
            [7; 32],
            at(5000),
        ),
        started(
            &b.keypair,
            params(ib, a.keypair.public_key()),
            [8; 32],
            at(5000),
        ),
    );
    assert!(ha.confirm());
    (ha, hb)
}

fn frames(h: &mut Handshake) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    while let Some(n) = h.transmit(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

type AuthLog = Vec<Result<AuthEvent, AuthError>>;

fn deliver(frames: Vec<Vec<u8>>, to: &mut Handshake, events: &mut AuthLog) {
    for f in frames {
        match to.receive(&SaltyVerifier, &f) {
            Ok((_, Some(e))) => events.push(Ok(e)),
            Ok((_, None)) => {}
            Err(e) => events.push(Err(e)),
        }
    }
}

/// Run two handshakes against each other, both sides sending before receiving (first flights cross).
fn handshake(a: &mut Handshake, b: &mut Handshake) -> (AuthLog, AuthLog) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (fa, fb) = (frames(a), frames(b));
        deliver(fa, b, &mut eb);
        deliver(fb, a, &mut ea);
    }
    (ea, eb)
}

fn register_pair(rtt_a: i64, rtt_b: i64) -> (TestTable, Link, Link) {
    let (ka, kb) = (kp(1), kp(2));
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let mut table = table();
    let mut a = Link::new(1, ka, pb, "203.0.113.1:50001", at(0));
    let mut b = Link::new(2, kb, pa, "198.51.100.2:60002", at(1000));
    register(&mut table, &mut [&mut a, &mut b], 0, 0, rtt_a);
    assert_eq!(table.len(), 1);
    register(&mut table, &mut [&mut a, &mut b], 1, 1000, rtt_b);
    (table, a, b)
}

#[test]
fn registration_match_and_mutual_authentication() {
    let (table, a, b) = register_pair(100, 40);
    assert_eq!(table.len(), 0);
    assert_eq!(table.stats().matches, 1);
    assert!(
        matches!(a.client_events[0], Ok(RegisterEvent::Challenged { observed }) if observed == ep("203.0.113.1:50001"))
    );
    assert!(a
        .client_events
        .iter()
        .any(|e| matches!(e, Ok(RegisterEvent::Registered { .. }))));
    let (ia, ib) = (matched(&a), matched(&b));
    // The first to register leads; each learns the other's observed and local endpoints and nonce.
    assert_eq!((ia.role, ib.role), (Role::Leader, Role::Follower));
    assert_eq!(ia.peer_observed, ep("198.51.100.2:60002"));
    assert_eq!(ib.peer_observed, ep("203.0.113.1:50001"));
    assert_eq!(ia.peer_local, Some(ep("192.168.1.10:40000")));
    assert_eq!((ia.peer_nonce, ib.peer_nonce), (ib.own_nonce, ia.own_nonce));
    // One-way delays 50 ms and 20 ms. Both Matches leave the mediator together at T; A's arrives at
    // T + 50 and A starts at once, B's arrives at T + 20 and B waits 30 ms: both SYNs leave at T + 50.
    // (This harness hands each Match over at the mediator's instant, t = 1040.)
    assert_eq!(ib.start_at, at(1040 + 30));
    assert_eq!(ia.start_at, at(1040));
    assert!(!ia.same_public_address());

    let (mut ha, mut hb) = handshakes(&a, &ia, &b, &ib);
    let (ea, eb) = handshake(&mut ha, &mut hb);
    // The leader, having confirmed, is done on the follower's PeerAuth; the follower verifies the
    // leader's PeerAuth, then is done on its Confirm.
    let (Some(Ok(AuthEvent::Authenticated(ka))), Some(Ok(AuthEvent::Authenticated(kb)))) =
        (ea.last(), eb.last())
    else {
        panic!("{:?} {:?}", ea, eb)
    };
    assert_eq!(eb[0], Ok(AuthEvent::Verified));
    assert_eq!(ka, kb, "both sides derive one session key");
    assert!(ha.is_done() && hb.is_done());
    assert_eq!(ha.session_key(), Some(*ka));
}

#[test]
fn bad_proof_is_aborted() {
    let mut table = table();
    // Claims key 1 but signs with key 9.
    let mut l = Link::new(1, kp(9), kp(2).public_key(), "203.0.113.1:1", at(0));
    l.client = Registration::new(
        RegisterConfig::default(),
        kp(1).public_key(),
        kp(2).public_key(),
        [0; 32],
        None,
        at(0),
    );
    l.up(at(0));
    l.down(at(0));
    let events = l.up(at(10));
    assert_eq!(
        events,
        vec![SessionEvent::Aborted {
            reason: AbortReason::BadProof,
            waiting: None
        }]
    );
    settle(&mut table, &mut [&mut l], 0, events[0], at(10));
    l.down(at(10));
    assert_eq!(
        last_error(&l),
        Some(RegisterError::Aborted(AbortReason::BadProof))
    );
    assert!(l.session.is_closed());
    assert_eq!(table.len(), 0);
    assert_eq!(
        table.stats().aborts[AbortReason::BadProof.to_u8() as usize],
        1
    );
}

#[test]
fn mediator_wait_timeout_reaches_the_peer() {
    let mut table = table();
    let mut l = Link::new(1, kp(1), kp(2).public_key(), "203.0.113.1:1", at(0));
    register(&mut table, &mut [&mut l], 0, 0, 20);
    assert_eq!(table.len(), 1);
    let wait = MediatorConfig::default().wait_timeout;
    assert_eq!(table.poll_at(), Some(at(20) + wait));
    let mut notices = Vec::new();
    table.poll(at(20) + wait - ms(1), |c, n| notices.push((c, n)));
    assert!(notices.is_empty());
    table.poll(at(20) + wait, |c, n| notices.push((c, n)));
    assert_eq!(notices, vec![(1, Notice::Abort(AbortReason::PeerTimeout))]);
    assert_eq!(table.len(), 0);
    l.session.notify(at(20) + wait, notices[0].1);
    l.down(at(20) + wait);
    assert_eq!(
        last_error(&l),
        Some(RegisterError::Aborted(AbortReason::PeerTimeout))
    );
}

#[test]
fn client_times_out_a_silent_mediator_at_every_step() {
    let own = kp(1).public_key();
    let want = kp(2).public_key();
    let cfg = RegisterConfig::default();
    let mut r = Registration::new(cfg, own, want, [0; 32], None, at(0));
    let mut buf = [0u8; MAX_FRAME_LEN];
    assert!(r.transmit(at(0), &mut buf).is_some());
    assert_eq!(r.poll_at(), Some(at(0) + cfg.step_timeout));
    assert_eq!(
        r.poll(at(0) + cfg.step_timeout),
        Err(RegisterError::Timeout(
            p2psc::proto::register::Awaiting::Challenge
        ))
    );
    // A failed machine stays failed and sends nothing.
    assert!(r.transmit(at(0), &mut buf).is_none());
    assert!(r.poll_at().is_none());

    // Registered, then the mediator goes quiet: the wait is bounded by the mediator's own bound + a step.
    let mut table = table();
    let mut l = Link::new(1, kp(1), want, "203.0.113.1:1", at(0));
    register(&mut table, &mut [&mut l], 0, 0, 20);
    let deadline = l.client.poll_at().unwrap();
    assert_eq!(
        deadline,
        at(20)
            + cfg
                .wait_timeout
                .min(MediatorConfig::default().wait_timeout + cfg.step_timeout)
    );
    assert_eq!(
        l.client.poll(deadline),
        Err(RegisterError::Timeout(
            p2psc::proto::register::Awaiting::Match
        ))
    );
}

#[test]
fn another_key_fails_authentication() {
    let (_, a, b) = register_pair(20, 20);
    let (ia, ib) = (matched(&a), matched(&b));
    // Mallory (key 3) answers in B's place, with B's nonce and role: A wants key 2, not 3.
    let mallory = kp(3);
    let mut ha = started(
        &a.keypair,
        params(&ia, b.keypair.public_key()),
        [7; 32],
        at(5000),
    );
    let mut hm = started(
        &mallory,
        params(&ib, a.keypair.public_key()),
        [8; 32],
        at(5000),
    );
    let (ea, _) = handshake(&mut ha, &mut hm);
    assert_eq!(ea, vec![Err(AuthError::WrongKey)]);
    assert_eq!(ha.error(), Some(AuthError::WrongKey));
    assert!(ha.session_key().is_none());
}

#[test]
fn replayed_peer_auth_is_rejected() {
    // Session 1: record B's PeerAuth.
    let (_, a1, b1) = register_pair(20, 20);
    let (ia1, ib1) = (matched(&a1), matched(&b1));
    let mut hb1 = started(
        &b1.keypair,
        params(&ib1, a1.keypair.public_key()),
        [8; 32],
        at(5000),
    );
    let mut recorded = [0u8; MAX_FRAME_LEN];
    let n = hb1.transmit(&mut recorded).unwrap();
    // It was good in session 1.
    let mut ha1 = started(
        &a1.keypair,
        params(&ia1, b1.keypair.public_key()),
        [7; 32],
        at(5000),
    );
    assert!(matches!(
        ha1.receive(&SaltyVerifier, &recorded[..n]),
        Ok((_, Some(AuthEvent::Verified)))
    ));

    // Session 2: A has a fresh nonce; the replay must fail.
    let mut ia2 = ia1;
    ia2.own_nonce = [0x55; 32];
    let mut ha2 = started(
        &a1.keypair,
        params(&ia2, b1.keypair.public_key()),
        [9; 32],
        at(9000),
    );
    assert_eq!(
        ha2.receive(&SaltyVerifier, &recorded[..n]),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn lying_mediator_can_only_break_the_handshake() {
    let (_, a, b) = register_pair(20, 20);
    let (ia, mut ib) = (matched(&a), matched(&b));
    // The mediator tells B a wrong nonce for A, or gives both the same role.
    ib.peer_nonce = [0xEE; 32];
    let (mut ha, mut hb) = handshakes(&a, &ia, &b, &ib);
    let (ea, eb) = handshake(&mut ha, &mut hb);
    assert_eq!(ea, vec![Err(AuthError::BadSignature)]);
    // B fails on A's PeerAuth; the Confirm behind it finds the handshake failed already.
    assert!(!eb.is_empty() && eb.iter().all(|e| *e == Err(AuthError::BadSignature)));
    assert!(ha.session_key().is_none() && hb.session_key().is_none());

    let (ia, mut ib) = (matched(&a), matched(&b));
    ib.role = Role::Leader;
    let (mut ha, mut hb) = handshakes(&a, &ia, &b, &ib);
    let (ea, eb) = handshake(&mut ha, &mut hb);
    assert_eq!(ea, vec![Err(AuthError::BadSignature)]);
    // B fails on A's PeerAuth; the Confirm behind it finds the handshake failed already.
    assert!(!eb.is_empty() && eb.iter().all(|e| *e == Err(AuthError::BadSignature)));
    assert!(ha.session_key().is_none() && hb.session_key().is_none());
}

#[test]
fn unsupported_version_has_its_own_error() {
    // A future client's Hello reaches a v1 mediator.
    let mut s = Session::new(
        MediatorConfig::default(),
        ep("203.0.113.1:1"),
        [0; 32],
        at(0),
    );
    let (_, event) = s.receive(at(0), &SaltyVerifier, &[3, 0x01, 0, 0]);
    assert_eq!(
        event,
        Some(SessionEvent::Aborted {
            reason: AbortReason::UnsupportedVersion,
            waiting: None
        })
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = s.transmit(at(0), &mut buf).unwrap();
    assert_eq!(
        Message::parse_bytes(&buf[..n]),
        Ok(Message::Abort(AbortReason::UnsupportedVersion))
    );
    assert!(s.is_closed());

    // The client gets that Abort: its own typed error.
    let mut r = Registration::new(
        RegisterConfig::default(),
        kp(1).public_key(),
        kp(2).public_key(),
        [0; 32],
        None,
        at(0),
    );
    assert_eq!(
        r.receive(at(0), &kp(1), &buf[..n]),
        Err(RegisterError::UnsupportedVersion(None))
    );
    // A v1 client hearing a v2 Challenge.
    let mut r = Registration::new(
        RegisterConfig::default(),
        kp(1).public_key(),
        kp(2).public_key(),
        [0; 32],
        None,
        at(0),
    );
    let mut v2 = [0u8; MAX_FRAME_LEN];
    let n = Message::Ping { token: 1 }.emit_bytes(&mut v2).unwrap();
    v2[0] = 2;
    assert_eq!(
        r.receive(at(0), &kp(1), &v2[..n]),
        Err(RegisterError::UnsupportedVersion(Some(2)))
    );
}

#[test]
fn out_of_order_messages_are_typed_errors() {
    // Proof before Hello.
    let mut s = Session::new(
        MediatorConfig::default(),
        ep("203.0.113.1:1"),
        [0; 32],
        at(0),
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = Message::Pong(wire::Pong {
        token: 1,
        hold_ms: 0,
    })
    .emit_bytes(&mut buf)
    .unwrap();
    assert_eq!(
        s.receive(at(0), &SaltyVerifier, &buf[..n]).1,
        Some(SessionEvent::Aborted {
            reason: AbortReason::UnexpectedMessage,
            waiting: None
        })
    );
    // Match before Challenge.
    let mut r = Registration::new(
        RegisterConfig::default(),
        kp(1).public_key(),
        kp(2).public_key(),
        [0; 32],
        None,
        at(0),
    );
    let m = Message::Match(wire::Match {
        role: Role::Leader,
        start_delay_ms: 0,
        peer_nonce: [0; 32],
        peer_observed: ep("198.51.100.1:1"),
        peer_local: None,
        paths: None,
    });
    let n = m.emit_bytes(&mut buf).unwrap();
    assert_eq!(
        r.receive(at(0), &kp(1), &buf[..n]),
        Err(RegisterError::UnexpectedMessage(wire::MessageType::Match))
    );
    // A Challenge to a handshake.
    let info = lone_punch_info(Role::Leader);
    let mut h = started(&kp(1), params(&info, kp(2).public_key()), [3; 32], at(100));
    let n = Message::Confirm.emit_bytes(&mut buf).unwrap();
    assert_eq!(
        h.receive(&SaltyVerifier, &buf[..n]),
        Err(AuthError::UnexpectedMessage(wire::MessageType::Confirm))
    );
    // Garbage to a handshake.
    let mut h = started(&kp(1), params(&info, kp(2).public_key()), [3; 32], at(100));
    assert_eq!(
        h.receive(&SaltyVerifier, b"GET / HTTP/1.1\r\n"),
        Err(AuthError::Wire(wire::Error::UnsupportedVersion(b'G')))
    );
    assert_eq!(
        h.poll(at(100)),
        Err(AuthError::Wire(wire::Error::UnsupportedVersion(b'G')))
    );
}

#[test]
fn handshake_times_out() {
    let info = lone_punch_info(Role::Follower);
    let mut h = started(&kp(1), params(&info, kp(2).public_key()), [3; 32], at(100));
    assert_eq!(h.poll_at(), Some(at(100)));
    assert_eq!(h.poll(at(99)), Ok(()));
    assert_eq!(h.poll(at(100)), Err(AuthError::Timeout));
}

#[test]
fn newest_registration_of_a_key_wins() {
    let mut table = table();
    let want = kp(2).public_key();
    let mut old = Link::new(1, kp(1), want, "203.0.113.1:1111", at(0));
    let mut new = Link::new(3, kp(1), want, "203.0.113.1:2222", at(500));
    register(&mut table, &mut [&mut old, &mut new], 0, 0, 20);
    register(&mut table, &mut [&mut old, &mut new], 1, 500, 20);
    assert_eq!(table.len(), 1);
    assert_eq!(table.get(&kp(1).public_key()).unwrap().conn, 3);
    assert_eq!(
        last_error(&old),
        Some(RegisterError::Aborted(AbortReason::Replaced))
    );
    assert!(old.session.is_closed());
    // The old connection closing later must not remove the new registration.
    assert!(!table.remove(&kp(1).public_key(), 1));
    assert_eq!(table.len(), 1);
    assert_eq!(table.stats().replaced, 1);
}

#[test]
fn full_table_answers_retry_after() {
    let config = MediatorConfig {
        capacity: 2,
        ..MediatorConfig::default()
    };
    let mut table: TestTable = Table::new(heapless::Vec::new(), config);
    let nobody = kp(99).public_key();
    let mut links: Vec<Link> = (1..=3)
        .map(|i| Link::new(i, kp(i as u8), nobody, "203.0.113.1:1", at(0)))
        .collect();
    let mut refs: Vec<&mut Link> = links.iter_mut().collect();
    for i in 0..3 {
        register(&mut table, &mut refs, i, 0, 10);
    }
    assert_eq!(table.len(), 2);
    assert_eq!(
        last_error(refs[2]),
        Some(RegisterError::RetryAfter(config.retry_after))
    );
    assert!(refs[2].session.is_closed());
    assert_eq!(table.stats().full, 1);
}

#[test]
fn a_peer_cannot_want_itself() {
    let mut l = Link::new(1, kp(1), kp(1).public_key(), "203.0.113.1:1", at(0));
    let events = l.up(at(0));
    assert_eq!(
        events,
        vec![SessionEvent::Aborted {
            reason: AbortReason::SelfMatch,
            waiting: None
        }]
    );
    l.down(at(0));
    assert_eq!(
        last_error(&l),
        Some(RegisterError::Aborted(AbortReason::SelfMatch))
    );
}

#[test]
fn silent_or_dribbling_client_is_aborted_at_its_step_deadline() {
    let cfg = MediatorConfig::default();
    let mut s = Session::new(cfg, ep("203.0.113.1:1"), [0; 32], at(0));
    // One byte of a Hello per second does not extend the deadline.
    let mut hello = [0u8; MAX_FRAME_LEN];
    let n = Message::Hello(wire::Hello {
        key: kp(1).public_key(),
        want: kp(2).public_key(),
        nonce: [0; 32],
        local: None,
        relay: None,
    })
    .emit_bytes(&mut hello)
    .unwrap();
    let mut t = 0;
    for byte in hello[..n].iter().take(4) {
        assert_eq!(s.receive(at(t), &SaltyVerifier, &[*byte]), (1, None));
        assert_eq!(s.poll(at(t)), None);
        t += 1000;
    }
    assert_eq!(s.poll_at(), Some(at(0) + cfg.step_timeout));
    assert_eq!(
        s.poll(at(0) + cfg.step_timeout),
        Some(SessionEvent::Aborted {
            reason: AbortReason::Timeout,
            waiting: None
        })
    );
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = s.transmit(at(5000), &mut buf).unwrap();
    assert_eq!(
        Message::parse_bytes(&buf[..n]),
        Ok(Message::Abort(AbortReason::Timeout))
    );
    assert!(s.is_closed());
}

#[test]
fn pings_measure_rtt_and_catch_unresponsive_peers() {
    let cfg = MediatorConfig::default();
    let mut table = table();
    let mut l = Link::new(1, kp(1), kp(2).public_key(), "203.0.113.1:1", at(0));
    register(&mut table, &mut [&mut l], 0, 0, 20);
    let key = kp(1).public_key();
    assert_eq!(table.get(&key).unwrap().registrant.rtt, ms(20));
    // First Ping after the interval; its answer 80 ms later is a new round-trip sample.
    let t1 = at(20) + cfg.ping_interval;
    assert_eq!(l.session.poll_at(), Some(t1));
    assert_eq!(l.session.poll(t1), None);
    l.down(t1);
    let events = l.up_at(t1, t1 + ms(80));
    assert_eq!(events, vec![SessionEvent::Rtt(key, ms(80))]);
    settle(&mut table, &mut [&mut l], 0, events[0], t1 + ms(80));
    // A slower sample (a retransmission, say) does not raise the estimate: the table keeps the minimum.
    assert_eq!(table.get(&key).unwrap().registrant.rtt, ms(20));
    table.update_rtt(&key, 1, ms(12));
    assert_eq!(table.get(&key).unwrap().registrant.rtt, ms(12));
    // Next Ping is never answered.
    let t2 = t1 + ms(80) + cfg.ping_interval;
    assert_eq!(l.session.poll(t2), None);
    l.down(t2);
    let event = l.session.poll(t2 + cfg.ping_timeout).unwrap();
    assert_eq!(
        event,
        SessionEvent::Aborted {
            reason: AbortReason::Unresponsive,
            waiting: Some(key)
        }
    );
    settle(&mut table, &mut [&mut l], 0, event, t2 + cfg.ping_timeout);
    assert_eq!(table.len(), 0);
}

#[test]
fn candidates_settle_on_the_leaders_confirmed_connection() {
    let (_, a, b) = register_pair(20, 20);
    let (ia, ib) = (matched(&a), matched(&b));
    let (pa, pb) = (a.keypair.public_key(), b.keypair.public_key());
    // Two candidate connections; the leader confirms the second only.
    let mut la = [0, 1].map(|i| started(&a.keypair, params(&ia, pb), [10 + i; 32], at(5000)));
    let mut lb = [0, 1].map(|i| started(&b.keypair, params(&ib, pa), [20 + i; 32], at(5000)));
    for i in 0..2 {
        let (ea, eb) = handshake(&mut la[i], &mut lb[i]);
        // Both verified; neither done: the leader has not chosen, the follower waits for Confirm.
        assert_eq!(ea, vec![Ok(AuthEvent::Verified)]);
        assert_eq!(eb, vec![Ok(AuthEvent::Verified)]);
        assert!(la[i].session_key().is_none() && lb[i].session_key().is_none());
    }
    assert!(la[1].confirm());
    let (_, eb) = handshake(&mut la[1], &mut lb[1]);
    let key = la[1].session_key().expect("confirmed");
    assert_eq!(eb, vec![Ok(AuthEvent::Authenticated(key))]);
    assert!(lb[1].session_key().is_some() && lb[0].session_key().is_none());
    assert!(la[1].is_done() && !la[0].is_done());
    // A follower cannot confirm.
    assert!(!lb[0].confirm());
}

#[test]
fn application_data_after_peer_auth_stays_in_the_stream() {
    let (_, a, b) = register_pair(20, 20);
    let (ia, ib) = (matched(&a), matched(&b));
    let (mut ha, mut hb) = handshakes(&a, &ia, &b, &ib);
    // The leader has sent its PeerAuth and Confirm already.
    frames(&mut ha);
    let mut buf = [0u8; MAX_FRAME_LEN + 5];
    let n = hb.transmit(&mut buf).unwrap();
    buf[n..n + 5].copy_from_slice(b"hello");
    let (used, event) = ha.receive(&SaltyVerifier, &buf[..n + 5]).unwrap();
    assert_eq!(used, n);
    assert!(matches!(event, Some(AuthEvent::Authenticated(_))));
    assert_eq!(ha.receive(&SaltyVerifier, b"hello").unwrap(), (0, None));
}

#[test]
fn both_peers_agree_on_racing_even_if_only_one_reported_a_lan_endpoint() {
    // Behind one public address; A reported its LAN endpoint, B did not. Whether a Confirm will come
    // must not depend on that, or one side would wait for a Confirm the other never sends.
    let base = PunchInfo {
        role: Role::Leader,
        matched_at: Instant::from_millis(0),
        start_at: at(0),
        own_observed: ep("203.0.113.1:1000"),
        own_nonce: [1; 32],
        peer_observed: ep("203.0.113.1:2000"),
        peer_local: None,
        peer_nonce: [2; 32],
        paths: None,
    };
    let a = base;
    let b = PunchInfo {
        role: Role::Follower,
        matched_at: Instant::from_millis(0),
        own_observed: base.peer_observed,
        peer_observed: base.own_observed,
        peer_local: Some(ep("192.168.1.10:1000")),
        ..base
    };
    assert!(a.same_public_address() && b.same_public_address());
    let c = PunchInfo {
        peer_observed: ep("198.51.100.1:2000"),
        ..b
    };
    assert!(!c.same_public_address());
}
