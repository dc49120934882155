//! Every transition of the punch machine, driven with chosen links and times — no sockets, no sleeps.

use super::*;
use crate::identity::{Keypair, SaltyVerifier};
use crate::proto::auth::AuthError;
use crate::wire::MessageType;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::vec;
use std::vec::Vec;

const START: i64 = 1000;

fn at(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn ep(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)), port)
}

fn lan(host: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, host)), 40000)
}

struct Side {
    keys: Keypair,
    info: PunchInfo,
}

/// A matched pair: the leader (A) and the follower (B). When `racing`, both appear behind one public
/// address and report LAN endpoints.
fn pair(racing: bool) -> (Side, Side) {
    let (a_pub, b_pub) = if racing {
        (ep(1, 5001), ep(1, 5002))
    } else {
        (ep(1, 5001), ep(2, 5002))
    };
    let info =
        |role, own: SocketAddr, nonce: u8, peer: SocketAddr, peer_nonce: u8, local| PunchInfo {
            role,
            matched_at: Instant::from_millis(0),
            start_at: at(START),
            own_observed: own,
            own_nonce: [nonce; 32],
            peer_observed: peer,
            peer_local: racing.then_some(local),
            peer_nonce: [peer_nonce; 32],
            paths: None,
        };
    (
        Side {
            keys: Keypair::from_seed(&[0xA1; 32]),
            info: info(Role::Leader, a_pub, 1, b_pub, 2, lan(3)),
        },
        Side {
            keys: Keypair::from_seed(&[0xB2; 32]),
            info: info(Role::Follower, b_pub, 2, a_pub, 1, lan(2)),
        },
    )
}

fn punch_with(me: &Side, peer: &Side, sockets: usize, config: PunchConfig) -> Punch {
    let from = Some(lan(9));
    let peer_key = peer.keys.public_key();
    Punch::new(&me.keys, peer_key, &me.info, from, sockets, config, [7; 32]).unwrap()
}

fn punch(me: &Side, peer: &Side, sockets: usize) -> Punch {
    punch_with(me, peer, sockets, PunchConfig::default())
}

/// Every action until the machine has nothing more to do at `now`.
fn actions(p: &mut Punch, now: Instant) -> Vec<Action> {
    let mut all = Vec::new();
    while let Some(a) = p.poll(now) {
        all.push(a);
        assert!(all.len() < 16, "no end of actions: {all:?}");
    }
    all
}

fn events(p: &mut Punch) -> Vec<PunchEvent> {
    core::iter::from_fn(|| p.next_event()).collect()
}

fn established(remote: SocketAddr) -> Link {
    Link::Established {
        local: lan(9),
        remote,
    }
}

/// Move every frame candidate `k` of `from` has into candidate `j` of `to`. Returns the types sent.
fn pump(from: &mut Punch, k: usize, to: &mut Punch, j: usize) -> Vec<MessageType> {
    let mut sent = Vec::new();
    let mut buf = [0u8; crate::wire::MAX_FRAME_LEN];
    while let Some(n) = from.transmit(k, &mut buf) {
        sent.push(MessageType::from_u8(buf[1]).unwrap());
        // A frame the receiver refuses is not taken: its candidate fails at the next poll.
        let mut used = 0;
        while used < n {
            match to.receive(j, &SaltyVerifier, &buf[used..n]) {
                0 => break,
                taken => used += taken,
            }
        }
    }
    sent
}

/// Establish candidate `k` of both punches with each other and run both handshakes to the end.
/// Returns the frame types each side sent.
fn connect(
    a: &mut Punch,
    b: &mut Punch,
    k: usize,
    now: Instant,
) -> (Vec<MessageType>, Vec<MessageType>) {
    a.observe(k, established(ep(2, 5002)));
    b.observe(k, established(ep(1, 5001)));
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        actions(a, now);
        actions(b, now);
        sa.extend(pump(a, k, b, k));
        sb.extend(pump(b, k, a, k));
    }
    (sa, sb)
}

#[test]
fn the_plan_follows_section_8_2() {
    let listen = Turn::Listen { all_along: true };
    let t = |list: &[Turn]| list.iter().copied().collect::<Turns>();
    let plans = |side: &Side, n| plan(&side.info, Some(lan(9)), n);
    // Not racing: the public endpoint; a second socket listens all along.
    let (a, b) = pair(false);
    let p = plans(&a, 1);
    assert_eq!((p.public, p.lan), (Some(ep(2, 5002)), None));
    assert_eq!(p.turns[..], [t(&[Turn::Public])]);
    assert_eq!(plans(&b, 2).turns[..], [t(&[Turn::Public]), t(&[listen])]);
    // Racing: only the leader dials the LAN endpoint; the follower listens for it.
    let (a, b) = pair(true);
    let p = plans(&a, 2);
    assert_eq!((p.public, p.lan), (Some(ep(1, 5002)), Some(lan(3))));
    assert_eq!(p.turns[..], [t(&[Turn::Public]), t(&[Turn::Lan])]);
    let p = plans(&b, 2);
    assert_eq!((p.public, p.lan), (Some(ep(1, 5001)), None));
    assert_eq!(p.turns[..], [t(&[Turn::Public]), t(&[listen])]);
    // One socket takes the LAN turn first, then the public one.
    assert_eq!(plans(&a, 1).turns[..], [t(&[Turn::Lan, Turn::Public])]);
    let brief = Turn::Listen { all_along: false };
    assert_eq!(plans(&b, 1).turns[..], [t(&[brief, Turn::Public])]);
    assert!(plans(&a, 0).turns.is_empty());
    // A punch port of the other family can dial none of them.
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4000);
    assert!(plan(&a.info, Some(v6), 2).turns.is_empty());
    let config = PunchConfig::default();
    let err = Punch::new(
        &a.keys,
        b.keys.public_key(),
        &a.info,
        Some(v6),
        1,
        config,
        [0; 32],
    );
    assert_eq!(err.err(), Some(PunchError::NoTarget));
}

#[test]
fn holds_the_port_before_the_start_and_dials_at_it() {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 1);
    assert_eq!(
        actions(&mut p, at(START - 10)),
        [Action::Listen { candidate: 0 }]
    );
    p.observe(0, Link::Listening);
    assert_eq!(actions(&mut p, at(START - 5)), []);
    assert_eq!(p.poll_at(), Some(at(START)));
    let target = ep(2, 5002);
    let dial = Action::Dial {
        candidate: 0,
        target,
    };
    assert_eq!(actions(&mut p, at(START)), [dial]);
    assert_eq!(events(&mut p), [PunchEvent::Dialing(target, 1)]);
    p.observe(0, Link::SynSent);
    assert_eq!(actions(&mut p, at(START + 1)), []);
}

#[test]
fn a_reset_ends_the_attempt_quietly_and_waits_for_the_next_dial_slot() {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 1);
    actions(&mut p, at(START));
    p.observe(0, Link::Closed);
    let now = at(START + 4);
    // Closed without a RST, then the port is held again while waiting.
    let closing = [
        Action::Close { candidate: 0 },
        Action::Listen { candidate: 0 },
    ];
    assert_eq!(actions(&mut p, now), closing);
    assert_eq!(events(&mut p)[1..], [PunchEvent::Retrying(ep(2, 5002))]);
    let slot = SlotCursor::new(&a.info, SlotConfig::default()).next_dial(now);
    let retry = p.poll_at().unwrap();
    assert!(
        slot <= retry && retry <= slot + Duration::from_micros(500),
        "{retry} vs {slot}"
    );
    p.observe(0, Link::Listening);
    assert_eq!(actions(&mut p, retry - Duration::from_micros(1)), []);
    let dial = [Action::Dial {
        candidate: 0,
        target: ep(2, 5002),
    }];
    assert_eq!(actions(&mut p, retry), dial);
    assert_eq!(events(&mut p), [PunchEvent::Dialing(ep(2, 5002), 2)]);
}

#[test]
fn a_silent_attempt_through_the_nat_is_kept_to_the_deadline() {
    // The late peer's SYN must meet this very socket: a new one would carry another ISN, which a
    // router that tracks TCP drops as out of window.
    let (a, b) = pair(false);
    let config = PunchConfig::default();
    let mut p = punch(&a, &b, 1);
    actions(&mut p, at(START));
    p.observe(0, Link::SynSent);
    let mut t = at(START);
    while t < at(START) + config.punch_timeout {
        assert_eq!(actions(&mut p, t), [], "at {t}");
        t += Duration::from_millis(7);
    }
    assert_eq!(p.poll_at(), Some(at(START) + config.punch_timeout));
    let end = at(START) + config.punch_timeout;
    assert_eq!(actions(&mut p, end), [Action::Close { candidate: 0 }]);
}

#[test]
fn a_spare_socket_listens_all_along_after_the_dialling_one() {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 2);
    assert_eq!(
        actions(&mut p, at(START - 10)),
        [Action::Listen { candidate: 0 }]
    );
    p.observe(0, Link::Listening);
    let start = actions(&mut p, at(START));
    let dial = Action::Dial {
        candidate: 0,
        target: ep(2, 5002),
    };
    assert_eq!(start, [dial, Action::Listen { candidate: 1 }]);
    p.observe(0, Link::SynSent);
    p.observe(1, Link::Listening);
    assert_eq!(actions(&mut p, at(START + 5000)), []);
    // A SYN from a port we never dialled, taken by the listener, becomes a candidate.
    p.observe(1, established(ep(2, 7777)));
    assert_eq!(actions(&mut p, at(START + 5001)), []);
    assert_eq!(events(&mut p)[1..], [PunchEvent::Established(ep(2, 7777))]);
}

#[test]
fn a_lan_attempt_ends_at_the_attempt_timeout_and_is_dialled_again() {
    let (a, b) = pair(true);
    let config = PunchConfig::default();
    let mut p = punch(&a, &b, 2);
    actions(&mut p, at(START));
    p.observe(0, Link::SynSent);
    p.observe(1, Link::SynSent);
    let timeout = at(START) + config.attempt_timeout;
    assert_eq!(actions(&mut p, timeout - Duration::from_micros(1)), []);
    let ended = actions(&mut p, timeout);
    assert_eq!(ended[0], Action::Close { candidate: 1 });
    p.observe(1, Link::Listening);
    let retry = p.poll_at().unwrap();
    let dial = Action::Dial {
        candidate: 1,
        target: lan(3),
    };
    assert_eq!(actions(&mut p, retry), [dial]);
}

#[test]
fn the_follower_never_dials_the_lan_endpoint() {
    // Its SYN could reach the leader's socket before the leader's own SYN has left (ARP), which
    // smoltcp 0.13 does not survive: the leader dials, the follower listens.
    let (a, b) = pair(true);
    for sockets in [1, 2] {
        let mut p = punch(&b, &a, sockets);
        let mut t = at(START - 10);
        while t < at(START) + PunchConfig::default().punch_timeout {
            for action in actions(&mut p, t) {
                if let Action::Dial { target, .. } = action {
                    assert_eq!(target, ep(1, 5001), "{sockets} sockets");
                    p.observe(0, Link::Closed);
                }
            }
            t += Duration::from_millis(50);
        }
    }
    // With one socket, it listens one attempt timeout from the start, then dials the public endpoint.
    let mut p = punch(&b, &a, 1);
    actions(&mut p, at(START - 10));
    p.observe(0, Link::Listening);
    assert_eq!(actions(&mut p, at(START)), []);
    let listened = at(START) + PunchConfig::default().attempt_timeout;
    actions(&mut p, listened);
    let dial_at = p.poll_at().unwrap();
    assert!(dial_at >= listened);
    let dial = Action::Dial {
        candidate: 0,
        target: ep(1, 5001),
    };
    assert_eq!(actions(&mut p, dial_at), [dial]);
}

#[test]
fn the_held_port_taking_the_peers_syn_becomes_a_candidate() {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 1);
    actions(&mut p, at(START - 10));
    p.observe(0, Link::SynReceived);
    assert_eq!(actions(&mut p, at(START - 9)), []);
    p.observe(0, established(ep(2, 5002)));
    assert_eq!(actions(&mut p, at(START - 8)), []);
    assert_eq!(events(&mut p), [PunchEvent::Established(ep(2, 5002))]);
    // PeerAuth goes out first thing, and only once; the leader confirms its first connection at once.
    let mut buf = [0u8; 256];
    let n = p.transmit(0, &mut buf).unwrap();
    assert_eq!((n, buf[1]), (132, 0xC1));
    let n = p.transmit(0, &mut buf).unwrap();
    assert_eq!(&buf[..n], [1, 0xC2, 0, 0]);
    assert_eq!(p.transmit(0, &mut buf), None);
}

#[test]
fn two_peers_authenticate_each_other_and_agree_on_the_key() {
    let (a, b) = pair(false);
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    let (sa, sb) = connect(&mut pa, &mut pb, 0, at(START + 100));
    // One PeerAuth each way; the leader's Confirm follows its PeerAuth at once.
    let leader = vec![MessageType::PeerAuth, MessageType::Confirm];
    assert_eq!((sa, sb), (leader, vec![MessageType::PeerAuth]));
    let (wa, wb) = (pa.result().unwrap().unwrap(), pb.result().unwrap().unwrap());
    assert_eq!(
        (wa.candidate, wa.role, wb.role),
        (0, Role::Leader, Role::Follower)
    );
    assert_eq!(wa.session_key, wb.session_key);
    assert_eq!(wa.remote, ep(2, 5002));
    assert!(events(&mut pa).contains(&PunchEvent::Authenticated(ep(2, 5002))));
    assert_eq!(pa.poll_at(), None);
}

#[test]
fn the_racing_leader_confirms_exactly_one_candidate() {
    let (a, b) = pair(true);
    let (mut pa, mut pb) = (punch(&a, &b, 2), punch(&b, &a, 2));
    assert_eq!((pa.candidates(), pb.candidates()), (2, 2));
    // Each socket dials its own target: the public endpoint first in socket order, the LAN one second.
    let dials = actions(&mut pa, at(START));
    assert!(dials.contains(&Action::Dial {
        candidate: 1,
        target: lan(3)
    }));
    actions(&mut pb, at(START));
    // Candidate 1 connects first; candidate 0 a moment later.
    let (sa1, _) = connect(&mut pa, &mut pb, 1, at(START + 50));
    let (sa0, _) = connect(&mut pa, &mut pb, 0, at(START + 60));
    let confirms = sa0
        .iter()
        .chain(&sa1)
        .filter(|t| **t == MessageType::Confirm)
        .count();
    assert_eq!(confirms, 1);
    assert_eq!(sa1, [MessageType::PeerAuth, MessageType::Confirm]);
    let (wa, wb) = (pa.result().unwrap().unwrap(), pb.result().unwrap().unwrap());
    assert_eq!((wa.candidate, wb.candidate), (1, 1));
    assert_eq!(wa.session_key, wb.session_key);
}

#[test]
fn two_connections_without_racing_settle_on_the_same_one() {
    // Both behind NATs with unpredictable ports that let any SYN in: each side's listener takes the
    // other's SYN, so two connections form crosswise. Both sides must end on the same one.
    let (a, b) = pair(false);
    let (mut pa, mut pb) = (punch(&a, &b, 2), punch(&b, &a, 2));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    // A's dialled socket meets B's listener first; B's dialled socket meets A's listener a bit later.
    pa.observe(0, established(ep(2, 6000)));
    pb.observe(1, established(ep(1, 6001)));
    actions(&mut pa, at(START + 50));
    actions(&mut pb, at(START + 50));
    pa.observe(1, established(ep(2, 6002)));
    pb.observe(0, established(ep(1, 6003)));
    actions(&mut pa, at(START + 60));
    actions(&mut pb, at(START + 60));
    for _ in 0..3 {
        for (ka, kb) in [(0, 1), (1, 0)] {
            pump(&mut pa, ka, &mut pb, kb);
            pump(&mut pb, kb, &mut pa, ka);
        }
        actions(&mut pa, at(START + 70));
        actions(&mut pb, at(START + 70));
    }
    let (wa, wb) = (pa.result().unwrap().unwrap(), pb.result().unwrap().unwrap());
    assert_eq!((wa.candidate, wb.candidate), (0, 1), "the pair A confirmed");
    assert_eq!(wa.session_key, wb.session_key);
}

#[test]
fn the_handshake_deadline_follows_the_path() {
    let config = PunchConfig::default();
    let matched = at(1000);
    // A quick path: the configured minimum.
    let quick = handshake_deadline(at(1100), matched, &config);
    assert_eq!(quick, at(1100) + config.auth_timeout);
    // 460 ms from the Match to established: the peer's timer may be 6 x that; two losses wait 1 + 2.
    let slow = handshake_deadline(at(1460), matched, &config);
    assert_eq!(slow, at(1460) + Duration::from_micros(4 * 6 * 460_000));
    // Bounded by the punch.
    let late = handshake_deadline(at(9000), matched, &config);
    assert_eq!(late, at(9000) + config.punch_timeout + config.auth_timeout);
}

#[test]
fn the_racing_follower_waits_for_confirm() {
    let (a, b) = pair(true);
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    pa.observe(0, established(ep(2, 5002)));
    pb.observe(0, established(ep(1, 5001)));
    actions(&mut pa, at(START + 10));
    actions(&mut pb, at(START + 10));
    // The leader's PeerAuth alone does not finish the follower.
    let mut buf = [0u8; 256];
    let n = pa.transmit(0, &mut buf).unwrap();
    assert_eq!(pb.receive(0, &SaltyVerifier, &buf[..n]), n);
    actions(&mut pb, at(START + 11));
    assert_eq!(pb.result(), None);
    pump(&mut pb, 0, &mut pa, 0);
    actions(&mut pa, at(START + 12));
    assert_eq!(pump(&mut pa, 0, &mut pb, 0), [MessageType::Confirm]);
    actions(&mut pb, at(START + 13));
    assert!(pb.result().unwrap().is_ok());
}

#[test]
fn a_peer_with_another_key_fails_its_candidate() {
    let (a, b) = pair(false);
    let mallory = Side {
        keys: Keypair::from_seed(&[0xEE; 32]),
        info: b.info,
    };
    let (mut pa, mut pm) = (punch(&a, &b, 1), punch(&mallory, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pm, at(START));
    pa.observe(0, established(ep(2, 5002)));
    pm.observe(0, established(ep(1, 5001)));
    actions(&mut pa, at(START + 10));
    actions(&mut pm, at(START + 10));
    pump(&mut pm, 0, &mut pa, 0);
    assert_eq!(
        actions(&mut pa, at(START + 11)),
        [Action::Abort { candidate: 0 }]
    );
    let wrong_key = PunchError::AuthFailed(AuthError::WrongKey);
    assert_eq!(pa.result(), Some(Err(wrong_key)));
}

#[test]
fn a_peer_closing_before_authenticating_fails_its_candidate() {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 1);
    actions(&mut p, at(START));
    p.observe(0, established(ep(2, 5002)));
    actions(&mut p, at(START + 10));
    p.observe(0, Link::Closing);
    assert_eq!(
        actions(&mut p, at(START + 20)),
        [Action::Abort { candidate: 0 }]
    );
    assert_eq!(p.result(), Some(Err(PunchError::PeerClosed)));
}

#[test]
fn a_silent_peer_fails_at_the_handshake_deadline() {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 1);
    actions(&mut p, at(START));
    p.observe(0, established(ep(2, 5002)));
    actions(&mut p, at(START + 10));
    let deadline = handshake_deadline(at(START + 10), at(0), &PunchConfig::default());
    assert_eq!(p.poll_at(), Some(deadline));
    assert_eq!(actions(&mut p, deadline - Duration::from_micros(1)), []);
    assert_eq!(actions(&mut p, deadline), [Action::Abort { candidate: 0 }]);
    let timeout = PunchError::AuthFailed(AuthError::Timeout);
    assert_eq!(p.result(), Some(Err(timeout)));
}

#[test]
fn the_punch_deadline_closes_attempts_and_fails() {
    let (a, b) = pair(false);
    let config = PunchConfig::default();
    let mut p = punch_with(&a, &b, 1, config);
    actions(&mut p, at(START));
    p.observe(0, Link::SynSent);
    let deadline = at(START) + config.punch_timeout;
    assert_eq!(actions(&mut p, deadline - Duration::from_micros(1)), []);
    assert!(p.poll_at() <= Some(deadline));
    assert_eq!(actions(&mut p, deadline), [Action::Close { candidate: 0 }]);
    assert_eq!(p.result(), Some(Err(PunchError::Unreachable)));
    assert_eq!(p.poll_at(), None);
}

#[test]
fn a_handshake_under_way_outlives_the_punch_deadline() {
    let (a, b) = pair(false);
    let config = PunchConfig::default();
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    let just_before = at(START) + config.punch_timeout - Duration::from_millis(1);
    pa.observe(0, established(ep(2, 5002)));
    actions(&mut pa, just_before);
    let after = at(START) + config.punch_timeout + Duration::from_millis(500);
    assert_eq!(actions(&mut pa, after), []);
    assert_eq!(pa.result(), None);
    assert_eq!(
        pa.poll_at(),
        Some(handshake_deadline(just_before, at(0), &config))
    );
    // The peer's PeerAuth still finishes it.
    pb.observe(0, established(ep(1, 5001)));
    actions(&mut pb, after);
    pump(&mut pb, 0, &mut pa, 0);
    actions(&mut pa, after);
    pump(&mut pa, 0, &mut pb, 0);
    actions(&mut pa, after);
    assert!(pa.result().unwrap().is_ok());
}

#[test]
fn one_socket_takes_turns_with_two_targets() {
    let (a, b) = pair(true);
    let mut p = punch(&a, &b, 1);
    let first = actions(&mut p, at(START));
    assert_eq!(
        first,
        [Action::Dial {
            candidate: 0,
            target: lan(3)
        }]
    );
    p.observe(0, Link::Closed);
    actions(&mut p, at(START + 2));
    let retry = p.poll_at().unwrap();
    let second = actions(&mut p, retry);
    assert_eq!(
        second,
        [Action::Dial {
            candidate: 0,
            target: ep(1, 5002)
        }]
    );
}

/// Drive a punch through `resets` attempts that are each reset 3 ms after their SYN, polling `idle`
/// extra times between events; returns the dial times.
fn dial_times(resets: usize, idle: u32) -> Vec<Instant> {
    let (a, b) = pair(false);
    let mut p = punch(&a, &b, 1);
    let mut now = at(START);
    let mut dials = Vec::new();
    let mut reset_at = None;
    while dials.len() < resets {
        if reset_at == Some(now) {
            p.observe(0, Link::Closed);
            reset_at = None;
        }
        for a in actions(&mut p, now) {
            match a {
                Action::Dial { .. } => {
                    dials.push(now);
                    p.observe(0, Link::SynSent);
                    reset_at = Some(now + Duration::from_millis(3));
                }
                Action::Listen { .. } => p.observe(0, Link::Listening),
                _ => {}
            }
        }
        let next = reset_at.into_iter().chain(p.poll_at()).min().unwrap();
        for i in 1..=idle {
            // Polls that change nothing: before the next event.
            let idle_at = now + (next - now) * i / (idle + 1);
            assert_eq!(actions(&mut p, idle_at), []);
        }
        assert!(next > now);
        now = next;
    }
    dials
}

#[test]
fn retry_times_do_not_depend_on_how_often_the_shell_polls() {
    let quiet = dial_times(12, 0);
    assert_eq!(quiet, dial_times(12, 7));
    // And they are spread by the jitter: not all on whole milliseconds of the slots.
    assert!(quiet.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn poll_at_is_never_in_the_past_and_one_candidate_at_most_wins() {
    // A crude random walk over links and times (xorshift), many seeds.
    for seed in 1..200u64 {
        let mut x = seed;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (a, b) = pair(seed % 2 == 0);
        let mut p = punch(&a, &b, 1 + (seed % 2) as usize);
        let mut now = at(START - 50);
        for _ in 0..300 {
            for k in 0..2 {
                let link = match rand(6) {
                    0 => Link::Closed,
                    1 => Link::Listening,
                    2 => Link::SynSent,
                    3 => Link::SynReceived,
                    4 => established(ep(2, 5002)),
                    _ => Link::Closing,
                };
                p.observe(k, link);
            }
            actions(&mut p, now);
            if let Some(at) = p.poll_at() {
                assert!(
                    at >= now || p.result().is_some(),
                    "seed {seed}: {at} < {now}"
                );
            }
            if p.result().is_some() {
                break;
            }
            now += Duration::from_millis(rand(400));
        }
        // Nobody authenticated here (no PeerAuth was ever delivered): no winner.
        assert!(!matches!(p.result(), Some(Ok(_))), "seed {seed}");
    }
}

#[test]
fn a_mediator_that_lies_about_addresses_cannot_split_the_choice() {
    // The leader is told both peers share a public address (so it also dials the LAN endpoint), the
    // follower is told they do not. Confirm does not depend on that view, so both still end on the same
    // connection, and the Confirm never reaches the follower's application stream.
    let (a, _) = pair(true);
    let (_, b) = pair(false);
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    let (sa, sb) = connect(&mut pa, &mut pb, 0, at(START + 100));
    assert_eq!(sa, [MessageType::PeerAuth, MessageType::Confirm]);
    assert_eq!(sb, [MessageType::PeerAuth]);
    let (wa, wb) = (pa.result().unwrap().unwrap(), pb.result().unwrap().unwrap());
    assert_eq!(wa.session_key, wb.session_key);
    // Nothing further is taken from the stream: the next bytes are the application's.
    assert_eq!(pb.receive(0, &SaltyVerifier, b"app data"), 0);
}

/// Found by the `punch` fuzz target (finding `punch-stale-poll-at`). Once a candidate's handshake is
/// done, `poll` stops at it (the winner waits for its last frame to be handed out by `transmit`), but
/// `poll_at` still reports the other candidates' deadlines, also once they have passed: a shell that
/// polls before it transmits, or cannot transmit yet, spins.
#[test]
fn a_winner_waiting_for_its_last_frame_reports_no_past_deadline() {
    let (a, b) = pair(false);
    // The follower's dialling socket and its listener both connect to the leader.
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 2));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    pa.observe(0, established(ep(2, 5002)));
    pb.observe(0, established(ep(1, 5001)));
    pb.observe(1, established(ep(1, 5001)));
    actions(&mut pa, at(START + 10));
    actions(&mut pb, at(START + 10));
    // The leader's PeerAuth and Confirm reach the follower's first candidate, which is then done; the
    // follower has not sent its own PeerAuth yet.
    assert_eq!(
        pump(&mut pa, 0, &mut pb, 0),
        [MessageType::PeerAuth, MessageType::Confirm]
    );
    // Past the second candidate's handshake deadline.
    let later = at(START + 10) + PunchConfig::default().punch_timeout * 2;
    assert_eq!(actions(&mut pb, later), []);
    assert_eq!(pb.result(), None);
    let next = pb.poll_at();
    assert!(
        next.is_none_or(|t| t > later),
        "poll_at {next:?} at {later}"
    );
}

/// Found by the `punch` fuzz target (finding `punch-closed-winner`). A candidate whose handshake is
/// done wins at the next poll even if its socket has been reported closed since (here the follower
/// got the Confirm, then the leader reset the connection): the winner is a dead connection.
#[test]
fn a_connection_closed_after_its_handshake_does_not_win() {
    let (a, b) = pair(false);
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    pa.observe(0, established(ep(2, 5002)));
    pb.observe(0, established(ep(1, 5001)));
    actions(&mut pa, at(START + 10));
    actions(&mut pb, at(START + 10));
    pump(&mut pa, 0, &mut pb, 0);
    pb.observe(0, Link::Closed);
    actions(&mut pb, at(START + 20));
    let mut buf = [0u8; crate::wire::MAX_FRAME_LEN];
    while pb.transmit(0, &mut buf).is_some() {}
    assert!(
        !matches!(pb.result(), Some(Ok(_))),
        "won on a closed connection: {:?}",
        pb.result()
    );
}

/// The same, when the reset comes after the handshake is done but before its last frame went out:
/// the waiting winner is given up (aborted), and the punch goes on without it.
#[test]
fn a_winner_reset_before_its_last_frame_is_given_up() {
    let (a, b) = pair(false);
    let (mut pa, mut pb) = (punch(&a, &b, 1), punch(&b, &a, 1));
    actions(&mut pa, at(START));
    actions(&mut pb, at(START));
    pa.observe(0, established(ep(2, 5002)));
    pb.observe(0, established(ep(1, 5001)));
    actions(&mut pa, at(START + 10));
    actions(&mut pb, at(START + 10));
    pump(&mut pa, 0, &mut pb, 0);
    // Done: the follower's PeerAuth is still to go out.
    assert_eq!(actions(&mut pb, at(START + 20)), []);
    assert_eq!(pb.result(), None);
    pb.observe(0, Link::Closed);
    assert_eq!(
        actions(&mut pb, at(START + 30)),
        [Action::Abort { candidate: 0 }]
    );
    assert_eq!(pb.last_error(), Some(PunchError::PeerClosed));
    let mut buf = [0u8; crate::wire::MAX_FRAME_LEN];
    assert_eq!(pb.transmit(0, &mut buf), None);
    assert!(!matches!(pb.result(), Some(Ok(_))), "{:?}", pb.result());
}

/// One 4-tuple carries one connection: while the listening socket's connection (its far end not known
/// before it is established) is in progress, the reset candidate does not dial, however many slots
/// pass; once that attempt is given up, it dials again (the simulator's after-rst class).
#[test]
fn no_dial_while_a_listener_connection_is_in_progress() {
    let (a, b) = pair(false);
    let mut pb = punch(&b, &a, 2);
    let first = actions(&mut pb, at(START));
    assert!(first.contains(&Action::Dial {
        candidate: 0,
        target: ep(1, 5001)
    }));
    assert!(first.contains(&Action::Listen { candidate: 1 }));
    pb.observe(0, Link::Closed);
    assert_eq!(
        actions(&mut pb, at(START + 50)),
        [Action::Close { candidate: 0 }]
    );
    pb.observe(1, Link::SynReceived);
    let accepted = START + 60;
    let timeout = PunchConfig::default().attempt_timeout.total_millis() as i64;
    let dials = |all: &[Action]| all.iter().any(|a| matches!(a, Action::Dial { .. }));
    for t in (accepted..accepted + timeout).step_by(10) {
        let all = actions(&mut pb, at(t));
        assert!(!dials(&all), "dialled at {t} while accepting: {all:?}");
    }
    // The listener's attempt has timed out (closed); the reset candidate dials at a later slot.
    let mut dialled = false;
    for t in (accepted + timeout..accepted + timeout + 8000).step_by(10) {
        dialled |= dials(&actions(&mut pb, at(t)));
    }
    assert!(dialled, "never dialled again");
}
