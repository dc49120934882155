//! The client's protocol-version-2 parts: the probe, the path decision and the relay.

use super::*;
use crate::identity::SaltyVerifier;
use crate::proto::auth::{Handshake, HandshakeParams};
use crate::wire::{Hello, Mapping, Paths, RelayMode, VERSION_2};

fn probing() -> Client {
    let peer = Keypair::from_seed(&[2; 32]).public_key();
    Client::new(
        ConnectConfig::default(),
        me().public_key(),
        peer,
        2,
        [9; 32],
        at(0),
    )
}

/// Every frame the client has for the mediator, as bytes.
fn mediator_bytes(c: &mut Client, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; MAX_FRAME_LEN];
    while let Some(n) = c.transmit_mediator(now, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// A probing client registered and challenged; returns it and the nonce of its Hello.
fn challenged() -> (Client, Hello) {
    let mut c = probing();
    let acts = actions(&mut c, at(0));
    assert_eq!(
        acts[1..],
        [Action::DialProbe {
            rank: 0,
            from_port: c.local_port()
        }]
    );
    c.observe_mediator(up());
    actions(&mut c, at(10));
    let hello = mediator_bytes(&mut c, at(10));
    assert_eq!(hello[0], VERSION_2, "a version-2 Hello");
    let Ok(Message::Hello(hello)) = Message::parse_bytes(&hello) else {
        panic!("{hello:?}")
    };
    assert_eq!(hello.relay, Some(RelayMode::Fallback));
    let challenge = Challenge {
        nonce: [3; 32],
        observed: addr(10, 61000),
    };
    feed(&mut c, at(20), Message::Challenge(challenge));
    mediator_bytes(&mut c, at(21));
    (c, hello)
}

fn matched(c: &mut Client, own: Mapping, peer: Mapping, relay_after_ms: u16) {
    let paths = Paths {
        own,
        peer,
        relay_after_ms,
    };
    feed(c, at(30), Message::Match(leader_match(Some(paths))));
}

/// The follower's side of the relayed handshake: its PeerAuth, as the mediator forwards it after
/// Relayed.
fn relayed_follower(hello: &Hello) -> Vec<u8> {
    let params = HandshakeParams {
        role: Role::Follower,
        peer: me().public_key(),
        own_nonce: [4; 32],
        peer_nonce: hello.nonce,
    };
    let mut h = Handshake::new(&Keypair::from_seed(&[2; 32]), params, [8; 32]);
    h.start(at(100_000));
    let mut out = std::vec![VERSION_2, 0x87, 0, 0];
    let mut buf = [0u8; MAX_FRAME_LEN];
    while let Some(n) = h.transmit(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn the_probe_carries_the_hello_nonce_and_closes_when_the_mediator_does() {
    let (mut c, hello) = challenged();
    let mut buf = [0u8; MAX_FRAME_LEN];
    assert_eq!(c.transmit_probe(&mut buf), None, "not connected yet");
    c.observe_probe(up());
    let n = c.transmit_probe(&mut buf).unwrap();
    assert_eq!(
        Message::parse_bytes(&buf[..n]),
        Ok(Message::Probe { nonce: hello.nonce })
    );
    assert_eq!((buf[0], c.transmit_probe(&mut buf)), (VERSION_2, None));
    assert_eq!(actions(&mut c, at(25)), []);
    c.observe_probe(Link::Closing);
    assert_eq!(actions(&mut c, at(26)), [Action::CloseProbe]);
    assert_eq!(actions(&mut c, at(27)), []);
}

#[test]
fn an_open_probe_is_closed_before_the_punch_holds_the_port() {
    let (mut c, _) = challenged();
    c.observe_probe(up());
    matched(&mut c, Mapping::Independent, Mapping::Independent, 3800);
    let hold = Action::Candidate(punch::Action::Listen { candidate: 0 });
    assert_eq!(actions(&mut c, at(30)), [Action::CloseProbe, hold]);
}

#[test]
fn two_dependent_mappings_go_to_the_relay_at_once_with_the_first_flight() {
    let (mut c, hello) = challenged();
    matched(&mut c, Mapping::Dependent, Mapping::Dependent, 3800);
    assert!(!c.is_punching());
    assert_eq!(actions(&mut c, at(30)), [Action::CloseProbe]);
    let events: Vec<_> = core::iter::from_fn(|| c.next_event()).collect();
    assert!(events.contains(&ConnectEvent::Relaying { at_once: true }));
    // RelayRequest, PeerAuth, Confirm, back to back.
    let out = mediator_bytes(&mut c, at(31));
    assert_eq!(&out[..4], &[VERSION_2, 0x05, 0, 0]);
    assert_eq!((out[5], out.len()), (0xC1, 4 + 132 + 4));
    assert_eq!(c.result(), None);
    let mut from_peer = relayed_follower(&hello);
    from_peer.extend_from_slice(b"data");
    let used = c.receive_mediator(at(40), &me(), &SaltyVerifier, &from_peer);
    assert_eq!(used, from_peer.len() - 4, "the application's bytes stay");
    let won = c.result().unwrap().unwrap();
    assert_eq!((won.via, won.path()), (Via::Mediator, Path::Relayed));
    assert_eq!(won.remote, addr(20, 62000));
    let events: Vec<_> = core::iter::from_fn(|| c.next_event()).collect();
    assert_eq!(
        events,
        [
            ConnectEvent::Relayed,
            ConnectEvent::Authenticated(addr(20, 62000))
        ]
    );
}

#[test]
fn a_failed_punch_falls_back_to_the_relay_at_the_fallback_deadline() {
    let (mut c, _) = challenged();
    matched(&mut c, Mapping::Independent, Mapping::Unknown, 1000);
    assert!(c.is_punching());
    let mut now = at(30);
    while c.is_punching() && now < at(5000) {
        actions(&mut c, now);
        now += Duration::from_millis(10);
    }
    // The punch ended at its shortened deadline (start + 1 s), not 15 s.
    assert!(!c.is_punching() && now <= at(1100), "{now}");
    let events: Vec<_> = core::iter::from_fn(|| c.next_event()).collect();
    assert!(events.contains(&ConnectEvent::Relaying { at_once: false }));
    let out = mediator_bytes(&mut c, now);
    assert_eq!(&out[..4], &[VERSION_2, 0x05, 0, 0]);
    // The mediator refuses it: a typed error.
    feed(&mut c, now, Message::Abort(AbortReason::RelayFull));
    assert_eq!(c.result(), Some(Err(Error::Relay(AbortReason::RelayFull))));
}

#[test]
fn an_abort_while_punching_is_what_the_failed_punch_reports() {
    let (mut c, _) = challenged();
    matched(&mut c, Mapping::Independent, Mapping::Independent, 1000);
    feed(&mut c, at(40), Message::Abort(AbortReason::ShuttingDown));
    let mut now = at(40);
    while c.result().is_none() && now < at(5000) {
        actions(&mut c, now);
        now += Duration::from_millis(10);
    }
    assert_eq!(
        c.result(),
        Some(Err(Error::Relay(AbortReason::ShuttingDown)))
    );
}

#[test]
fn without_a_relay_offer_the_punch_keeps_its_own_deadline() {
    let (mut c, _) = challenged();
    matched(&mut c, Mapping::Dependent, Mapping::Dependent, 0);
    assert!(c.is_punching());
    let mut now = at(30);
    while c.result().is_none() && now < at(20_000) {
        actions(&mut c, now);
        now += Duration::from_millis(50);
    }
    assert_eq!(c.result(), Some(Err(Error::PunchFailed)));
    assert!(now >= at(15_000));
}

#[test]
fn relay_off_speaks_version_1_without_a_probe() {
    let peer = Keypair::from_seed(&[2; 32]).public_key();
    let config = ConnectConfig {
        relay: RelayMode::Off,
        ..ConnectConfig::default()
    };
    let mut c = Client::new(config, me().public_key(), peer, 2, [9; 32], at(0));
    assert_eq!(actions(&mut c, at(0)).len(), 1, "no probe");
    c.observe_mediator(up());
    actions(&mut c, at(10));
    let hello = mediator_bytes(&mut c, at(10));
    assert_eq!((hello[0], hello.len()), (1, 118));
}

/// Whichever call finishes the relayed handshake — a receive, or a transmit when the leader's Confirm
/// could only go out after the peer's PeerAuth arrived — `Authenticated` is reported exactly once.
#[test]
fn a_relayed_leader_reports_authenticated_once_also_when_its_confirm_goes_last() {
    let (mut c, hello) = challenged();
    matched(&mut c, Mapping::Dependent, Mapping::Dependent, 3800);
    actions(&mut c, at(30));
    let mut buf = [0u8; MAX_FRAME_LEN];
    // A small socket buffer: only the RelayRequest and the PeerAuth go out for now.
    for _ in 0..2 {
        assert!(c.transmit_mediator(at(31), &mut buf).is_some());
    }
    while c.next_event().is_some() {}
    let mut from_peer = relayed_follower(&hello);
    from_peer.extend_from_slice(b"app");
    let used = c.receive_mediator(at(40), &me(), &SaltyVerifier, &from_peer);
    assert_eq!(used, from_peer.len() - 3, "the application's bytes stay");
    let confirm = mediator_bytes(&mut c, at(41));
    assert_eq!(confirm.len(), 4, "the Confirm, last: {confirm:?}");
    // More calls after the end: nothing is reported again.
    for now in [at(42), at(43)] {
        c.receive_mediator(now, &me(), &SaltyVerifier, b"app");
        mediator_bytes(&mut c, now);
    }
    let events: Vec<_> = core::iter::from_fn(|| c.next_event()).collect();
    let reported = events
        .iter()
        .filter(|e| matches!(e, ConnectEvent::Authenticated(_)))
        .count();
    assert_eq!(reported, 1, "{events:?}");
    assert!(matches!(c.result(), Some(Ok(_))));
}
