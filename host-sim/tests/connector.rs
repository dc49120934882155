//! The smoltcp [`Connector`] driven directly: `Connector::poll` over real smoltcp interfaces and
//! sockets on an in-memory wire with a virtual clock (`support/`), no executor. Every run is the same
//! (fixed seeds, no wall clock). The tests look at what the connector promises: its outcome, the state
//! of every socket it was handed, and the segments it put on the wire, against protocol §8.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::task::Poll;

use host_sim::packet::Tcp;
use p2psc::connector::{
    ConnectConfig, ConnectEvent, Connected, Connector, Error, Path, PunchConfig, Schedule, Slot,
    SlotConfig, Sockets,
};
use p2psc::identity::{Keypair, SaltyVerifier};
use p2psc::proto::{AuthError, PunchInfo};
use p2psc::wire::{Message, Role};
use smoltcp::iface::SocketSet;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp::State;
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    IpAddress, IpEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
    TcpSeqNumber,
};

use support::sim::{
    interface, key, tcp_socket, Peer, Setup, Sim, A_IDENTITY, A_IP, B_IDENTITY, B_IP, MEDIATOR_IP,
    MEDIATOR_PORT,
};
use support::wire::{Fate, Nic, Segment};

fn secs(n: i64) -> Instant {
    Instant::from_secs(n)
}

/// The endpoint `ep` as a std IPv4 socket address.
fn v4(ep: IpEndpoint) -> SocketAddrV4 {
    match ep.addr {
        IpAddress::Ipv4(ip) => SocketAddrV4::new(ip, ep.port),
        #[allow(unreachable_patterns)]
        _ => panic!("not IPv4: {ep}"),
    }
}

/// The connection attempts the host at `from` made to anyone but the mediator, in order: its bare
/// SYNs, without retransmissions (a SYN with a sequence number already sent).
fn syns_from(sim: &Sim, from: std::net::Ipv4Addr) -> Vec<&Segment> {
    let mut seen = BTreeSet::new();
    let log = sim.wire.log();
    log.iter()
        .filter(|s| !s.injected && s.tcp.is_bare_syn())
        .filter(|s| *s.tcp.src.ip() == from && *s.tcp.dst.ip() != MEDIATOR_IP)
        .filter(|s| seen.insert((s.tcp.src, s.tcp.dst, s.tcp.seq)))
        .collect()
}

/// The nonce the host at `ip` sent in its Hello.
fn hello_nonce(sim: &Sim, ip: std::net::Ipv4Addr) -> [u8; 32] {
    let log = sim.wire.log();
    log.iter()
        .filter(|s| *s.tcp.src.ip() == ip && *s.tcp.dst.ip() == MEDIATOR_IP)
        .find_map(|s| match Message::parse_bytes(&s.payload) {
            Ok(Message::Hello(h)) => Some(h.nonce),
            _ => None,
        })
        .expect("a Hello on the wire")
}

/// The punch schedule as peer `i` (0: A, 1: B) has it, rebuilt from the Hellos on the wire and its
/// Match event: its role, the start time, and the first 500 slots.
fn schedule(sim: &Sim, i: usize) -> (Role, Instant, Vec<Slot>) {
    let (_, role, start_at) = sim.peers[i].matched().expect("matched");
    let (own, other) = [(A_IP, B_IP), (B_IP, A_IP)][i];
    let ep = |ip| std::net::SocketAddr::from(SocketAddrV4::new(ip, 0));
    let info = PunchInfo {
        role,
        matched_at: start_at,
        start_at,
        own_observed: ep(own),
        own_nonce: hello_nonce(sim, own),
        peer_observed: ep(other),
        peer_local: None,
        peer_nonce: hello_nonce(sim, other),
        paths: None,
    };
    let slots = Schedule::for_punch(&info, SlotConfig::default())
        .take(500)
        .collect();
    (role, start_at, slots)
}

/// The first time at or after `after` at which `role` dials in `slots` (protocol §8.3.1).
fn first_dial(slots: &[Slot], start: Instant, role: Role, after: Instant) -> Instant {
    slots
        .iter()
        .find_map(|s| {
            let at = start + s.at + s.dial(role)?;
            (at >= after).then_some(at)
        })
        .expect("a dial within the first slots")
}

/// The states of `peer`'s candidate sockets after each poll of its host in `from..to`.
fn trace_between(peer: &Peer, from: Instant, to: Instant) -> Vec<&(Instant, Vec<State>)> {
    let trace = peer.trace.iter();
    trace.filter(|(at, _)| from <= *at && *at < to).collect()
}

/// Every socket `peer` handed its connector is closed except `winner`'s, which is established: right
/// when the connector returned, and now.
fn assert_only_winner_open(peer: &Peer, winner: Option<Connected>, name: &str) {
    let winner = winner.map(|w| w.socket);
    let expected = |h| match Some(h) == winner {
        true => State::Established,
        false => State::Closed,
    };
    let handles: Vec<_> = peer.handles.all().collect();
    let expected_all: Vec<State> = handles.iter().map(|h| expected(*h)).collect();
    assert_eq!(
        peer.states_at_outcome, expected_all,
        "{name} at its outcome"
    );
    let now: Vec<State> = handles.iter().map(|h| peer.state(*h)).collect();
    assert_eq!(now, expected_all, "{name} afterwards");
}

#[test]
fn peers_connect_and_only_the_winners_sockets_stay_open() {
    let mut setup = Setup::default();
    // A second candidate that the punch does not need (no shared public address): it must stay closed.
    setup.a.candidates = 2;
    let mut sim = Sim::new(setup);
    sim.run_to_outcomes(secs(10));
    let a = sim.a().connected().expect("A connected");
    let b = sim.b().connected().expect("B connected");
    assert_eq!(a.session_key, b.session_key);
    assert_ne!(a.role, b.role);
    assert_eq!(v4(a.remote), SocketAddrV4::new(B_IP, sim.b().local_port()));
    assert_eq!(v4(b.remote), SocketAddrV4::new(A_IP, sim.a().local_port()));
    assert_eq!(Some(a.socket), sim.a().handles.candidates[0]);
    // Let the aborted sockets' segments play out; nothing reopens.
    sim.run_for(Duration::from_secs(2));
    assert_only_winner_open(sim.a(), Some(a), "A");
    assert_only_winner_open(sim.b(), Some(b), "B");

    // The winning sockets carry the application's data, both ways.
    let sent = |sim: &mut Sim, i: usize, socket, data: &[u8]| {
        let n = sim
            .peer_mut(i)
            .socket(socket)
            .send_slice(data)
            .expect("send");
        assert_eq!(n, data.len());
    };
    sent(&mut sim, 0, a.socket, b"from A to B");
    sent(&mut sim, 1, b.socket, b"and back");
    sim.run_for(Duration::from_millis(100));
    let mut buf = [0u8; 64];
    let n = sim
        .peer_mut(1)
        .socket(b.socket)
        .recv_slice(&mut buf)
        .expect("B reads");
    assert_eq!(&buf[..n], b"from A to B");
    let n = sim
        .peer_mut(0)
        .socket(a.socket)
        .recv_slice(&mut buf)
        .expect("A reads");
    assert_eq!(&buf[..n], b"and back");
}

#[test]
fn duplicated_and_reordered_segments_still_give_one_connection() {
    let mut sim = Sim::new(racing_setup());
    // Between the peers: every third segment twice, every third one 7 ms late (overtaken).
    let mut n = 0u32;
    sim.wire.set_fault(move |_, tcp| {
        if *tcp.src.ip() == MEDIATOR_IP || *tcp.dst.ip() == MEDIATOR_IP {
            return Fate::Deliver;
        }
        n += 1;
        match n % 3 {
            0 => Fate::Duplicate,
            1 => Fate::Delay(Duration::from_millis(7)),
            _ => Fate::Deliver,
        }
    });
    sim.run_to_outcomes(secs(10));
    let a = sim.a().connected().expect("A connected");
    let b = sim.b().connected().expect("B connected");
    assert_eq!(a.session_key, b.session_key, "{}", sim.story());
    assert_eq!(confirms(&sim).len(), 1, "{}", sim.story());
    sim.run_for(Duration::from_secs(1));
    assert_only_winner_open(sim.a(), Some(a), "A");
    assert_only_winner_open(sim.b(), Some(b), "B");
}

/// The fault hook of a home router in front of B without a firewall: it answers every SYN from A with
/// a RST until B's own SYN to A has gone out through it (and opened its session).
fn router_resets_syns_until_b_dials() -> impl FnMut(Instant, &Tcp) -> Fate {
    let mut b_dialled = false;
    move |_, tcp| {
        let (from, to) = (*tcp.src.ip(), *tcp.dst.ip());
        if tcp.is_bare_syn() && (from, to) == (B_IP, A_IP) {
            b_dialled = true;
        }
        match tcp.is_bare_syn() && (from, to) == (A_IP, B_IP) && !b_dialled {
            true => Fate::Reset,
            false => Fate::Deliver,
        }
    }
}

/// A run where B stalls 300 ms after its Match, behind a router that resets A's SYNs meanwhile.
fn late_b_behind_a_resetting_router() -> Sim {
    let mut setup = Setup::default();
    setup.b.as_mut().expect("B").stall_after_match = Some(Duration::from_millis(300));
    let mut sim = Sim::new(setup);
    sim.wire.set_fault(router_resets_syns_until_b_dials());
    // A is farther from the mediator than B: the Match reaches them at different times.
    sim.wire
        .set_delay(A_IP, MEDIATOR_IP, Duration::from_millis(20));
    sim
}

/// A SYN from `src` to `dst`, as a probe from some other host.
fn syn(src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 1024,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let mut buf = vec![0; ip.buffer_len() + tcp.buffer_len()];
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf), &caps);
    let (s, d) = (IpAddress::Ipv4(*src.ip()), IpAddress::Ipv4(*dst.ip()));
    let mut segment = TcpPacket::new_unchecked(&mut buf[ip.buffer_len()..]);
    tcp.emit(&mut segment, &s, &d, &caps);
    buf
}

/// How the wait after one reset of A's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterReset {
    /// A dialled again, at this time.
    Dialled(Instant),
    /// B's first SYN arrived at A first, at this time.
    PeerSyn(Instant),
}

/// Each reset of A's attempts (when it reached A), and how the wait after it ended, until B's first
/// SYN reaches A (later resets may cross it: a simultaneous open, which they do not end).
fn resets_of_a(sim: &Sim) -> Vec<(Instant, AfterReset)> {
    let b_first = syns_from(sim, B_IP)[0]
        .delivered
        .expect("B's SYN arrives")
        .0;
    let a_syns = syns_from(sim, A_IP);
    let log = sim.wire.log();
    log.iter()
        .filter(|s| s.injected && s.tcp.rst && *s.tcp.dst.ip() == A_IP)
        .filter_map(|s| Some(s.delivered?.0))
        .filter(|at| *at < b_first)
        .map(|reset| {
            let next = a_syns.iter().map(|s| s.sent_at).find(|at| *at > reset);
            let end = match next.filter(|at| *at < b_first) {
                Some(at) => AfterReset::Dialled(at),
                None => AfterReset::PeerSyn(b_first),
            };
            (reset, end)
        })
        .collect()
}

#[test]
fn after_a_reset_the_next_syn_waits_for_the_next_slot_and_the_port_listens() {
    let mut sim = late_b_behind_a_resetting_router();
    sim.run_to_outcomes(secs(10));
    assert!(sim.a().connected().is_some() && sim.b().connected().is_some());
    let (role, start, slots) = schedule(&sim, 0);
    assert_eq!(
        syns_from(&sim, A_IP)[0].sent_at,
        start,
        "first SYN at the start"
    );
    let jitter = PunchConfig::default().jitter;
    let resets = resets_of_a(&sim);
    let dialled = resets
        .iter()
        .filter(|(_, end)| matches!(end, AfterReset::Dialled(_)))
        .count();
    assert!(dialled >= 3, "only {dialled} resets:\n{}", sim.story());
    for (reset, end) in resets {
        let (AfterReset::Dialled(until) | AfterReset::PeerSyn(until)) = end;
        // Until then the port is held: A's candidate socket listens at every poll.
        let between = trace_between(sim.a(), reset, until);
        assert!(!between.is_empty());
        let held = between.iter().all(|(_, s)| port_held(s));
        assert!(held, "after the reset at {reset}: {between:?}");
        match end {
            AfterReset::Dialled(at) => {
                let slot = first_dial(&slots, start, role, reset);
                let in_slot = slot <= at && at <= slot + jitter;
                assert!(
                    in_slot,
                    "reset {reset}: SYN {at}, slot {slot}\n{}",
                    sim.story()
                );
            }
            // The held port took B's SYN: A answered SYN|ACK at once.
            AfterReset::PeerSyn(at) => {
                let answer = sim.wire.log().iter().find(|s| {
                    s.sent_at == at && *s.tcp.src.ip() == A_IP && *s.tcp.dst.ip() == B_IP
                });
                let answer = answer.expect("an answer").tcp;
                assert!(answer.syn && answer.ack && !answer.rst, "{answer}");
            }
        }
    }
}

#[test]
fn between_attempts_the_held_port_answers_a_syn_with_syn_ack() {
    // Where A waits after its first reset, from the run of the test above.
    let mut sim = late_b_behind_a_resetting_router();
    sim.run_to_outcomes(secs(10));
    let Some((reset, AfterReset::Dialled(next))) = resets_of_a(&sim).first().copied() else {
        panic!(
            "A's first reset is not followed by its next SYN:\n{}",
            sim.story()
        );
    };
    // The same run again (the same up to there: it is deterministic), with a probe at the midpoint: a
    // SYN from elsewhere to A's port.
    let probe_at = reset + (next - reset) / 2;
    assert!(reset < probe_at && probe_at < next);
    let mut probed = late_b_behind_a_resetting_router();
    assert!(!probed.run_until(probe_at, |_| false));
    let sent = |s: &Sim| -> Vec<_> { s.wire.log().iter().map(|s| (s.sent_at, s.tcp)).collect() };
    let before = sent(&probed);
    assert_eq!(
        before,
        sent(&sim)[..before.len()],
        "two runs of one setup differ"
    );
    let a_port = SocketAddrV4::new(A_IP, probed.a().local_port());
    let prober = SocketAddrV4::new(std::net::Ipv4Addr::new(10, 0, 0, 99), 40000);
    probed.wire.inject(probe_at, syn(prober, a_port));
    probed.run_for(Duration::from_millis(50));
    let answers: Vec<Tcp> = probed
        .wire
        .log()
        .iter()
        .filter(|seg| seg.tcp.src == a_port && seg.tcp.dst == prober)
        .map(|seg| seg.tcp)
        .collect();
    assert!(!answers.is_empty(), "{}", probed.story());
    assert!(answers[0].syn && answers[0].ack, "{answers:?}");
    assert!(answers.iter().all(|t| !t.rst), "{answers:?}");
}

/// The wire's fault hook that loses everything between the peers (and lets the mediator's through).
fn drop_peer_to_peer(_: Instant, tcp: &Tcp) -> Fate {
    match *tcp.src.ip() == MEDIATOR_IP || *tcp.dst.ip() == MEDIATOR_IP {
        true => Fate::Deliver,
        false => Fate::Drop,
    }
}

/// The times of A's Retrying events.
fn retries_of_a(sim: &Sim) -> Vec<Instant> {
    let events = sim.a().events.iter();
    let retries = events.filter(|(_, e)| matches!(e, ConnectEvent::Retrying(_)));
    retries.map(|(at, _)| *at).collect()
}

/// Whether one candidate socket holds the port (listens) and the others are closed.
fn port_held(states: &[State]) -> bool {
    let listening = states.iter().filter(|s| **s == State::Listen).count();
    let closed = states.iter().filter(|s| **s == State::Closed).count();
    (listening, closed) == (1, states.len() - 1)
}

/// Protocol §8.3 on A's attempt through its NAT, which nothing answers: it is kept — the same socket in
/// SYN-SENT, its own SYN retransmissions carrying the ISN a router that tracks TCP holds for the
/// 5-tuple — until the punch deadline, when it ends without a RST. A spare candidate socket listens
/// on the punch port meanwhile.
fn an_unanswered_attempt_is_kept(setup: Setup) {
    let spare = setup.a.candidates > 1;
    let mut sim = Sim::new(setup);
    sim.wire.set_fault(drop_peer_to_peer);
    let config = PunchConfig::default();
    assert!(
        sim.run_until(secs(30), |s| s.a().outcome.is_some()),
        "{}",
        sim.story()
    );
    let (_, start, _) = schedule(&sim, 0);
    let deadline = start + config.punch_timeout;
    // One attempt: every SYN of A's is a retransmission of the first (same ISN), none after the end.
    assert_eq!(syns_from(&sim, A_IP).len(), 1, "one ISN: {}", sim.story());
    let log = sim.wire.log();
    let sent = log.iter().filter(|s| {
        *s.tcp.src.ip() == A_IP && *s.tcp.dst.ip() != MEDIATOR_IP && s.tcp.is_bare_syn()
    });
    let sent: Vec<_> = sent.map(|s| s.sent_at).collect();
    assert!(sent.len() >= 3, "retransmitted: {sent:?}");
    assert!(sent
        .iter()
        .all(|at| *at < deadline + Duration::from_millis(1)));
    assert!(retries_of_a(&sim).is_empty(), "{}", sim.story());
    // SYN-SENT all along on the dialling socket; the spare one listens.
    let punching = trace_between(sim.a(), start + Duration::from_micros(1), deadline);
    assert!(!punching.is_empty());
    for (at, states) in punching {
        assert_eq!(states[0], State::SynSent, "at {at}: {states:?}");
        if spare {
            assert_eq!(states[1], State::Listen, "at {at}: {states:?}");
        }
    }
    assert!(matches!(
        sim.a().outcome,
        Some((_, Err(p2psc::Error::PunchFailed)))
    ));
    // Quietly: A never sent the peer a RST (through its NAT it would end the session the peer aims at).
    let log = sim.wire.log();
    let to_peer = |s: &&Segment| *s.tcp.src.ip() == A_IP && *s.tcp.dst.ip() != MEDIATOR_IP;
    let rsts = log.iter().filter(to_peer).filter(|s| s.tcp.rst);
    assert_eq!(rsts.count(), 0, "{}", sim.story());
}

#[test]
fn an_unanswered_attempt_through_the_nat_is_kept_to_the_punch_deadline() {
    an_unanswered_attempt_is_kept(Setup::default());
}

#[test]
fn a_spare_socket_listens_while_the_unanswered_attempt_is_kept() {
    let mut setup = Setup::default();
    setup.a.candidates = 2;
    an_unanswered_attempt_is_kept(setup);
}

/// Both peers behind one NAT, each with two candidate sockets: LAN and public paths race.
fn racing_setup() -> Setup {
    let mut setup = Setup {
        nat: true,
        ..Setup::default()
    };
    setup.a.candidates = 2;
    setup.b.as_mut().expect("B").candidates = 2;
    setup
}

/// Where Confirm frames start in the TCP payloads on the wire, one per frame (a retransmission is the
/// same frame): (segment, offset).
fn confirms(sim: &Sim) -> Vec<(&Segment, usize)> {
    const CONFIRM: [u8; 4] = [0x01, 0xC2, 0x00, 0x00];
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for seg in sim.wire.log().iter().filter(|s| !s.injected) {
        for (i, w) in seg.payload.windows(4).enumerate() {
            let frame = (seg.tcp.src, seg.tcp.dst, seg.tcp.seq.wrapping_add(i as u32));
            if w == CONFIRM && seen.insert(frame) {
                found.push((seg, i));
            }
        }
    }
    found
}

#[test]
fn the_racing_leader_confirms_exactly_once_on_the_winning_connection() {
    let mut sim = Sim::new(racing_setup());
    sim.run_to_outcomes(secs(10));
    for peer in &sim.peers {
        let racing = peer
            .events
            .iter()
            .any(|(_, e)| matches!(e, ConnectEvent::Matched { racing: true, .. }));
        assert!(racing, "{}", sim.story());
    }
    let a = sim.a().connected().expect("A connected");
    let b = sim.b().connected().expect("B connected");
    assert_eq!(a.session_key, b.session_key);
    // Both paths (LAN and hairpin through the NAT) formed on both sides: a real race.
    for peer in &sim.peers {
        let established: BTreeSet<_> = peer
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                ConnectEvent::Established(to) => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(established.len(), 2, "{}", sim.story());
    }
    let (leader, l_ip, l_port, follower, f_ip, f_port) = match a.role {
        Role::Leader => (a, A_IP, sim.a().local_port(), b, B_IP, sim.b().local_port()),
        Role::Follower => (b, B_IP, sim.b().local_port(), a, A_IP, sim.a().local_port()),
    };
    let found = confirms(&sim);
    assert_eq!(found.len(), 1, "{}", sim.story());
    let (seg, _) = found[0];
    let sent = (seg.tcp.src, seg.tcp.dst);
    assert_eq!(sent, (SocketAddrV4::new(l_ip, l_port), v4(leader.remote)));
    let (_, src, dst) = seg.delivered.expect("the Confirm arrives");
    assert_eq!(
        (src, dst),
        (v4(follower.remote), SocketAddrV4::new(f_ip, f_port))
    );
    sim.run_for(Duration::from_secs(1));
    assert_only_winner_open(sim.a(), Some(a), "A");
    assert_only_winner_open(sim.b(), Some(b), "B");
}

/// Run to the outcomes, then a while longer; every socket handed to a connector must be closed.
fn assert_all_closed_after(mut sim: Sim, deadline: Instant) -> Sim {
    sim.run_to_outcomes(deadline);
    sim.run_for(Duration::from_secs(2));
    for (peer, name) in sim.peers.iter().zip(["A", "B"]) {
        assert!(peer.error().is_some(), "{name}: {:?}", peer.outcome);
        assert_only_winner_open(peer, None, name);
    }
    sim
}

#[test]
fn every_socket_closes_when_the_peer_presents_another_key() {
    let mut setup = Setup::default();
    let wrong = key([0xEE; 32]);
    setup.b.as_mut().expect("B").want = wrong;
    let mut sim = Sim::new(setup);
    // A lying mediator pairs B (who wants `wrong`) with A.
    sim.mediator().impersonate(key(A_IDENTITY), wrong);
    let sim = assert_all_closed_after(sim, secs(30));
    let wrong_key = Some(Error::AuthFailed(AuthError::WrongKey));
    assert_eq!(sim.b().error(), wrong_key, "{}", sim.story());
    // B signed a transcript naming `wrong` as its peer's key: A cannot verify it.
    let bad_signature = Some(Error::AuthFailed(AuthError::BadSignature));
    assert_eq!(sim.a().error(), bad_signature, "{}", sim.story());
}

#[test]
fn every_socket_closes_when_the_peer_never_comes() {
    let mut setup = Setup {
        b: None,
        ..Setup::default()
    };
    setup.a.config.register.wait_timeout = Duration::from_secs(2);
    let sim = assert_all_closed_after(Sim::new(setup), secs(10));
    assert_eq!(sim.a().error(), Some(Error::PeerNeverCame));
}

#[test]
fn every_socket_closes_when_the_mediator_is_unreachable() {
    let setup = Setup {
        b: None,
        mediator: false,
        ..Setup::default()
    };
    let sim = assert_all_closed_after(Sim::new(setup), secs(10));
    assert_eq!(sim.a().error(), Some(Error::MediatorUnreachable));
}

#[test]
fn every_socket_closes_when_the_punch_fails() {
    let mut setup = Setup::default();
    setup.a.candidates = 2;
    for spec in [&mut setup.a, setup.b.as_mut().expect("B")] {
        spec.config.punch.punch_timeout = Duration::from_secs(2);
    }
    let mut sim = Sim::new(setup);
    sim.wire.set_fault(drop_peer_to_peer);
    let sim = assert_all_closed_after(sim, secs(20));
    assert_eq!(sim.a().error(), Some(Error::PunchFailed));
    assert_eq!(sim.b().error(), Some(Error::PunchFailed));
    // The attempts ended quietly at the punch deadline: no RST towards the peer.
    let log = sim.wire.log();
    let to_peer = |s: &&Segment| *s.tcp.src.ip() != MEDIATOR_IP && *s.tcp.dst.ip() != MEDIATOR_IP;
    let rsts: Vec<_> = log.iter().filter(to_peer).filter(|s| s.tcp.rst).collect();
    assert!(rsts.is_empty(), "{rsts:?}");
}

/// With the relay offered, a punch that cannot get through falls back to it at its deadline: both
/// peers connect through the mediator (its probe and splice, `host_sim::mediator`), with one key.
#[test]
fn a_blocked_punch_falls_back_to_the_relay() {
    use host_sim::mediator::MediatorEvent;
    let mut setup = Setup {
        relay: true,
        ..Setup::default()
    };
    setup.a.candidates = 2;
    for spec in [&mut setup.a, setup.b.as_mut().expect("B")] {
        spec.config.punch.punch_timeout = Duration::from_secs(2);
    }
    let mut sim = Sim::new(setup);
    sim.wire.set_fault(drop_peer_to_peer);
    sim.run_to_outcomes(secs(20));
    let a = sim.a().connected().expect("A connected");
    let b = sim.b().connected().expect("B connected");
    assert_eq!(
        (a.path, b.path),
        (Path::Relayed, Path::Relayed),
        "{}",
        sim.story()
    );
    assert_eq!(a.session_key, b.session_key);
    assert_ne!(a.role, b.role);
    let joined = sim
        .mediator()
        .events()
        .iter()
        .any(|(_, e)| *e == MediatorEvent::RelayJoined);
    assert!(joined, "{}", sim.story());
}

/// The connector's first poll over `sockets` with `handles`, and how many packets the interface sent
/// after it.
fn first_poll(
    sockets: &mut SocketSet<'static>,
    handles: Sockets,
) -> (Poll<Result<Connected, Error>>, usize) {
    let mut nic = Nic::default();
    let mut iface = interface(&mut nic, A_IP, 1);
    let mediator = IpEndpoint::new(IpAddress::Ipv4(MEDIATOR_IP), MEDIATOR_PORT);
    let mut connector = Connector::new(
        ConnectConfig::default(),
        Keypair::from_seed(&A_IDENTITY),
        SaltyVerifier,
        key(B_IDENTITY),
        mediator,
        handles,
        &mut p2psc::rng::Drbg::new([1; 32]),
        Instant::ZERO,
    );
    let result = connector.poll(Instant::ZERO, &mut iface, sockets);
    iface.poll(Instant::ZERO, &mut nic, sockets);
    (result, nic.take_sent().len())
}

#[test]
fn a_candidate_socket_with_small_buffers_is_a_bad_socket() {
    let mut sockets = SocketSet::new(Vec::new());
    let handles = Sockets {
        mediator: sockets.add(tcp_socket(256)),
        candidates: [Some(sockets.add(tcp_socket(64))), None],
    };
    let (result, sent) = first_poll(&mut sockets, handles);
    assert_eq!(result, Poll::Ready(Err(Error::BadSocket)));
    assert_eq!(sent, 0, "nothing goes out: not even a SYN to the mediator");
    for handle in handles.all() {
        let socket = sockets.get::<smoltcp::socket::tcp::Socket>(handle);
        assert_eq!(socket.state(), State::Closed);
    }
}

#[test]
fn a_candidate_udp_socket_is_a_bad_socket() {
    let mut sockets = SocketSet::new(Vec::new());
    let udp = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 2048]),
    );
    let handles = Sockets {
        mediator: sockets.add(tcp_socket(256)),
        candidates: [Some(sockets.add(udp)), None],
    };
    let result = catch_unwind(AssertUnwindSafe(|| first_poll(&mut sockets, handles)));
    let (result, sent) = result.expect("the connector panicked instead of returning BadSocket");
    assert_eq!(result, Poll::Ready(Err(Error::BadSocket)));
    assert_eq!(sent, 0);
}

/// Three mediators on one host: the pair's first in its ranking (protocol §13) dies after A registered
/// there and before B reaches it (B's first SYNs are lost for a second). A's connection is reset, B's
/// next SYN is refused: both move on to the second of the ranking, meet there and connect; the third
/// sees neither.
#[test]
fn when_the_pairs_first_mediator_dies_both_peers_meet_on_the_second() {
    use host_sim::mediator::MediatorEvent;
    use p2psc::proto::rendezvous::{MediatorId, Pair};

    let setup = Setup {
        mediators: 3,
        ..Setup::default()
    };
    let mut sim = Sim::new(setup);
    sim.wire
        .set_fault(|now, tcp| match *tcp.src.ip() == B_IP && now < secs(1) {
            true => Fate::Drop,
            false => Fate::Deliver,
        });
    let ports: Vec<std::net::SocketAddr> = (0..3)
        .map(|i| std::net::SocketAddr::from((MEDIATOR_IP, MEDIATOR_PORT + 2 * i)))
        .collect();
    let pair = Pair::new(key(A_IDENTITY), key(B_IDENTITY));
    let ranking: Vec<usize> = pair.rank(&ports, |a| MediatorId::new(*a)).collect();
    let (first, second, third) = (ranking[0], ranking[1], ranking[2]);
    let registered = |sim: &Sim| {
        sim.a()
            .events
            .iter()
            .any(|(_, e)| *e == ConnectEvent::Registered)
    };
    assert!(sim.run_until(secs(1), registered), "{}", sim.story());
    let verified = |node: &mut host_sim::mediator::MediatorNode| {
        let events = node.events();
        let keys = events.iter().filter_map(|(_, e)| match e {
            MediatorEvent::Verified { key, .. } => Some(*key),
            _ => None,
        });
        keys.collect::<Vec<_>>()
    };
    assert_eq!(verified(sim.mediator_at(first)), [key(A_IDENTITY)]);
    sim.crash_mediator(first);
    sim.run_to_outcomes(secs(30));

    let (a, b) = (sim.a(), sim.b());
    assert!(a.connected().is_some(), "{}", sim.story());
    assert!(b.connected().is_some(), "{}", sim.story());
    let moved = |peer: &Peer, failed| {
        let next = ConnectEvent::NextMediator { failed, rank: 1 };
        peer.events.iter().any(|(_, e)| *e == next)
    };
    assert!(moved(a, Error::MediatorClosed), "{}", sim.story());
    assert!(moved(b, Error::MediatorUnreachable), "{}", sim.story());
    let on_second = verified(sim.mediator_at(second));
    assert_eq!(on_second, [key(A_IDENTITY), key(B_IDENTITY)]);
    assert!(verified(sim.mediator_at(third)).is_empty());
}
