//! The client's own transitions — mediator dial, registration, back-off, the hand-over to the punch and
//! the overall deadline — driven with chosen links, frames and times.

use super::*;
use crate::identity::{Keypair, SaltyVerifier};
use crate::proto::punch;
use crate::wire::{AbortReason, Challenge, Match, Message, Role, MAX_FRAME_LEN};
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::vec::Vec;

fn at(ms: i64) -> Instant {
    Instant::from_millis(ms)
}

fn addr(a: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, a)), port)
}

fn me() -> Keypair {
    Keypair::from_seed(&[1; 32])
}

/// A client without the probe (the probe has tests of its own, in `relay_tests`).
fn client(config: ConnectConfig) -> Client {
    let peer = Keypair::from_seed(&[2; 32]).public_key();
    #[cfg(feature = "relay")]
    let config = ConnectConfig {
        probe: false,
        ..config
    };
    Client::new(config, me().public_key(), peer, 2, [9; 32], at(0))
}

fn actions(c: &mut Client, now: Instant) -> Vec<Action> {
    core::iter::from_fn(|| c.poll(now)).take(16).collect()
}

fn up() -> Link {
    Link::Established {
        local: addr(10, 50000),
        remote: addr(1, 7777),
    }
}

/// The protocol version of the tests' registrations (the default configuration's).
const VERSION: u8 = if cfg!(feature = "relay") { 2 } else { 1 };

/// Feed a mediator frame (in the registration's version); returns the bytes taken.
fn feed(c: &mut Client, now: Instant, message: Message) -> usize {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = message.emit_bytes_in(VERSION, &mut buf).unwrap();
    c.receive_mediator(now, &me(), &SaltyVerifier, &buf[..n])
}

/// The Match that makes the client the leader, its peer at 192.0.2.20:62000 (version 2: with `paths`).
fn leader_match(paths: Option<crate::wire::Paths>) -> Match {
    Match {
        role: Role::Leader,
        start_delay_ms: 0,
        peer_nonce: [4; 32],
        peer_observed: addr(20, 62000),
        peer_local: None,
        paths,
    }
}

/// The type bytes of the frames the client has for the mediator.
fn sent(c: &mut Client, now: Instant) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    core::iter::from_fn(|| c.transmit_mediator(now, &mut buf).map(|_| buf[1])).collect()
}

/// A client with its mediator connection up, its Hello sent.
fn registering() -> Client {
    let mut c = client(ConnectConfig::default());
    actions(&mut c, at(0));
    c.observe_mediator(up());
    assert_eq!(actions(&mut c, at(10)), []);
    assert_eq!(sent(&mut c, at(10)), [0x01]);
    c
}

#[test]
fn it_dials_the_mediator_from_the_punch_port_first() {
    let config = ConnectConfig {
        local_port: Some(40000),
        ..ConnectConfig::default()
    };
    let mut c = client(config);
    assert_eq!(c.poll_at(), Some(Instant::ZERO));
    let dial = Action::DialMediator {
        rank: 0,
        from_port: 40000,
    };
    assert_eq!(actions(&mut c, at(0)), [dial]);
    c.observe_mediator(Link::SynSent);
    assert_eq!(actions(&mut c, at(5)), []);
    assert_eq!(c.poll_at(), Some(at(0) + config.mediator_timeout));
}

#[test]
fn a_mediator_that_refuses_or_never_answers_is_unreachable() {
    let mut c = client(ConnectConfig::default());
    actions(&mut c, at(0));
    c.observe_mediator(Link::Closed);
    actions(&mut c, at(5));
    assert_eq!(c.result(), Some(Err(Error::MediatorUnreachable)));
    let mut c = client(ConnectConfig::default());
    actions(&mut c, at(0));
    c.observe_mediator(Link::SynSent);
    let timeout = at(0) + ConnectConfig::default().mediator_timeout;
    actions(&mut c, timeout - Duration::from_millis(1));
    assert_eq!(c.result(), None);
    actions(&mut c, timeout);
    assert_eq!(c.result(), Some(Err(Error::MediatorUnreachable)));
}

#[test]
fn registration_proves_the_key_and_reports_each_step() {
    let mut c = registering();
    let observed = addr(10, 61000);
    let challenge = Challenge {
        nonce: [3; 32],
        observed,
    };
    let n = feed(&mut c, at(20), Message::Challenge(challenge));
    assert_eq!(n, 54);
    assert_eq!(sent(&mut c, at(21)), [0x02], "the Proof");
    feed(&mut c, at(30), Message::Registered { wait_ms: 60_000 });
    let events: Vec<_> = core::iter::from_fn(|| c.next_event()).collect();
    assert_eq!(
        events,
        [
            ConnectEvent::MediatorConnected(addr(10, 50000)),
            ConnectEvent::Challenged(observed),
            ConnectEvent::Registered
        ]
    );
}

#[test]
fn the_match_starts_the_punch_which_first_only_holds_the_port() {
    let mut c = registering();
    let challenge = Challenge {
        nonce: [3; 32],
        observed: addr(10, 61000),
    };
    feed(&mut c, at(20), Message::Challenge(challenge));
    // The registration's version: no relay offered.
    let paths = (VERSION == 2).then_some(crate::wire::Paths {
        own: crate::wire::Mapping::Unknown,
        peer: crate::wire::Mapping::Unknown,
        relay_after_ms: 0,
    });
    feed(&mut c, at(30), Message::Match(leader_match(paths)));
    assert!(c.is_punching());
    // One poll: hold the port, then yield, so the Match is seen before the first SYN.
    let hold = Action::Candidate(punch::Action::Listen { candidate: 0 });
    assert_eq!(actions(&mut c, at(30)), [hold]);
    c.observe(0, Link::Listening);
    let dial = punch::Action::Dial {
        candidate: 0,
        target: addr(20, 62000),
    };
    assert!(actions(&mut c, at(30)).contains(&Action::Candidate(dial)));
    // Whatever the mediator sends now is read and ignored.
    assert_eq!(feed(&mut c, at(40), Message::Ping { token: 1 }), 8);
}

#[test]
fn retry_after_backs_off_with_a_floor_that_doubles_and_jitter() {
    let mut c = registering();
    let floor = ConnectConfig::default().busy_backoff;
    let mut now = at(10);
    let mut last = Duration::ZERO;
    let mut ports = Vec::new();
    for round in 0..4u32 {
        // A lying mediator that says "come back at once".
        feed(&mut c, now, Message::RetryAfter { millis: 0 });
        assert_eq!(c.result(), None);
        let until = c.poll_at().unwrap();
        let waited = until - now;
        let least = Duration::from_micros(floor.total_micros() << round);
        assert!(
            least <= waited && waited <= least + least / 4,
            "round {round}: {waited}"
        );
        assert!(waited > last);
        last = waited;
        assert_eq!(actions(&mut c, until - Duration::from_micros(1)), []);
        let redial = actions(&mut c, until);
        let [Action::DialMediator { rank: 0, from_port }] = redial[..] else {
            panic!("{redial:?}")
        };
        ports.push(from_port);
        c.observe_mediator(up());
        now = until + Duration::from_millis(10);
        actions(&mut c, now);
        sent(&mut c, now);
    }
    // A fresh port each time: the old connection may linger at the mediator.
    ports.dedup();
    assert_eq!(ports.len(), 4);
}

#[test]
fn retry_after_beyond_the_deadline_is_busy() {
    let mut c = registering();
    feed(&mut c, at(20), Message::RetryAfter { millis: 200_000 });
    assert_eq!(c.result(), Some(Err(Error::MediatorBusy)));
}

#[test]
fn a_mediator_that_closes_before_the_match_ends_it() {
    let mut c = registering();
    c.observe_mediator(Link::Closing);
    actions(&mut c, at(20));
    assert_eq!(c.result(), Some(Err(Error::MediatorClosed)));
    assert_eq!(c.poll_at(), None);
}

#[test]
fn the_overall_deadline_ends_every_phase() {
    let config = ConnectConfig {
        timeout: Duration::from_secs(3),
        ..ConnectConfig::default()
    };
    let mut c = client(config);
    actions(&mut c, at(0));
    c.observe_mediator(up());
    actions(&mut c, at(10));
    assert_eq!(c.poll_at(), Some(at(3000)));
    actions(&mut c, at(3000));
    assert_eq!(c.result(), Some(Err(Error::Timeout)));
}

#[cfg(feature = "relay")]
mod relay_tests;
/// A client that knows three mediators.
fn with_three() -> Client {
    let mut c = client(ConnectConfig::default());
    c.set_mediators(3);
    c
}

fn dialled_rank(actions: &[Action]) -> Option<usize> {
    match actions {
        [Action::DialMediator { rank, .. }] => Some(*rank),
        _ => None,
    }
}

#[test]
fn a_mediator_that_cannot_serve_us_is_left_for_the_next_of_the_ranking() {
    let mut c = with_three();
    assert_eq!(dialled_rank(&actions(&mut c, at(0))), Some(0));
    c.observe_mediator(Link::Closed);
    assert_eq!(actions(&mut c, at(5)), [], "refused: move on");
    assert_eq!(c.result(), None);
    assert_eq!(c.mediator_rank(), 1);
    assert_eq!(dialled_rank(&actions(&mut c, at(5))), Some(1));
    // Up and registering, then closed before the Match (the mediator died): the third.
    c.observe_mediator(up());
    actions(&mut c, at(10));
    c.observe_mediator(Link::Closed);
    actions(&mut c, at(20));
    assert_eq!(dialled_rank(&actions(&mut c, at(20))), Some(2));
    let events: Vec<_> = core::iter::from_fn(|| c.next_event()).collect();
    assert!(events.contains(&ConnectEvent::NextMediator {
        failed: Error::MediatorUnreachable,
        rank: 1
    }));
    assert!(events.contains(&ConnectEvent::NextMediator {
        failed: Error::MediatorClosed,
        rank: 2
    }));
    // The last one fails too: nothing is left, the error is the last mediator's.
    c.observe_mediator(Link::Closed);
    actions(&mut c, at(30));
    assert_eq!(c.result(), Some(Err(Error::MediatorUnreachable)));
}

#[test]
fn a_shutdown_moves_on_but_an_answer_about_the_pair_ends_the_attempt() {
    let mut c = with_three();
    actions(&mut c, at(0));
    c.observe_mediator(up());
    actions(&mut c, at(10));
    feed(&mut c, at(20), Message::Abort(AbortReason::ShuttingDown));
    assert_eq!(c.result(), None);
    assert_eq!(dialled_rank(&actions(&mut c, at(20))), Some(1));
    for (reason, error) in [
        (AbortReason::PeerTimeout, Error::PeerNeverCame),
        (AbortReason::Replaced, Error::Aborted(AbortReason::Replaced)),
        (AbortReason::BadProof, Error::Aborted(AbortReason::BadProof)),
    ] {
        let mut c = with_three();
        actions(&mut c, at(0));
        c.observe_mediator(up());
        actions(&mut c, at(10));
        feed(&mut c, at(20), Message::Abort(reason));
        assert_eq!(c.result(), Some(Err(error)), "{reason:?}");
    }
}

#[test]
fn one_mediator_ends_where_several_would_move_on() {
    let mut c = client(ConnectConfig::default());
    actions(&mut c, at(0));
    c.observe_mediator(Link::Closed);
    actions(&mut c, at(5));
    assert_eq!(c.result(), Some(Err(Error::MediatorUnreachable)));
}

#[test]
fn the_punchs_errors_and_the_overall_deadline_do_not_move_on() {
    for error in [
        Error::PunchFailed,
        Error::PeerClosed,
        Error::Timeout,
        Error::MediatorBusy,
        Error::PeerNeverCame,
    ] {
        assert!(!error.moves_on(), "{error:?}");
    }
    let mut c = with_three();
    actions(&mut c, at(0));
    c.observe_mediator(Link::SynSent);
    let deadline = at(0) + ConnectConfig::default().timeout;
    actions(&mut c, deadline);
    assert_eq!(c.result(), Some(Err(Error::Timeout)));
}
