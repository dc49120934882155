//! `p2psc::net::connect` end to end: two peers and a mediator, each a real smoltcp stack, in memory on a
//! virtual clock.

use std::cell::RefCell;
use std::rc::Rc;

use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use host_sim::clock;
use host_sim::exec::{join, Executor};
use host_sim::link::{Lan, Port};
use host_sim::mediator::{self, MediatorEvent, MediatorNode, RelayEnd};
use p2psc::connector::{connect, ConnectResources, Mediator, Path, Request, SecureConnection};
use p2psc::identity::Keypair;
use p2psc::net::{
    self, Config, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4,
};
use p2psc::proto::channel::MAX_RECORD_LEN;
use p2psc::proto::mediator::relay::Limit;
use p2psc::proto::MediatorConfig;
use p2psc::rng::Drbg;
use p2psc::wire::Role;

const MEDIATOR_PORT: u16 = 7777;

fn addr(host: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, host)
}

fn host(lan: &Lan, host: u8) -> (Stack<'static>, Runner<'static, Port>) {
    let resources = Box::leak(Box::new(StackResources::<8>::new()));
    let config = Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr(host), 24),
        gateway: None,
        dns_servers: Default::default(),
    });
    net::new(
        lan.port([0x02, 0, 0, 0, 0, host]),
        config,
        resources,
        u64::from(host),
    )
}

fn leak(n: usize) -> &'static mut [u8] {
    Box::leak(vec![0; n].into_boxed_slice())
}

/// One candidate socket with 2 KiB buffers, whole records both ways.
type Resources = ConnectResources<2048, 2048, 1, MAX_RECORD_LEN>;

fn resources() -> &'static mut Resources {
    Box::leak(Box::new(Resources::new()))
}

struct World {
    lan: Lan,
    ex: Executor<'static>,
    peers: Vec<Stack<'static>>,
    node: Rc<RefCell<MediatorNode>>,
}

fn world(latency_ms: u64, config: MediatorConfig) -> World {
    clock::reset();
    let lan = Lan::new(Duration::from_millis(latency_ms));
    let mut ex = Executor::new();
    let (mstack, mut mrunner) = host(&lan, 1);
    ex.spawn(async move { mrunner.run().await });
    let node = Rc::new(RefCell::new(mstack.with_mut(|_, sockets| {
        MediatorNode::new(MEDIATOR_PORT, 4, config, [9; 32], sockets)
    })));
    let served = node.clone();
    ex.spawn(async move { mediator::serve(mstack, &served, |_| {}).await });
    let peers = [2, 3]
        .into_iter()
        .map(|h| {
            let (stack, mut runner) = host(&lan, h);
            ex.spawn(async move { runner.run().await });
            stack
        })
        .collect();
    World {
        lan,
        ex,
        peers,
        node,
    }
}

fn mediator() -> Mediator {
    Mediator::new(addr(1), MEDIATOR_PORT)
}

async fn echo(conn: &mut SecureConnection<'_>, msg: &[u8]) -> Vec<u8> {
    conn.socket.write_all(msg).await.unwrap();
    conn.socket.flush().await.unwrap();
    let mut back = vec![0; msg.len()];
    conn.socket.read_exact(&mut back).await.unwrap();
    back
}

#[test]
fn two_peers_get_an_authenticated_socket_and_exchange_data() {
    let mut w = world(10, MediatorConfig::default());
    let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let (a, b) = (w.peers[0], w.peers[1]);
    let m = mediator();
    let (ra, rb) = w.ex.run(async {
        let fa = async {
            let mut conn = connect(
                a,
                resources(),
                &Request::new(&alice, bob.public_key(), m),
                &mut Drbg::new([11; 32]),
            )
            .await
            .expect("alice connects");
            assert_eq!(
                echo(&mut conn, b"ping from alice").await,
                b"PING FROM ALICE"
            );
            conn
        };
        let fb = async {
            // Bob comes 2 s later.
            embassy_time::Timer::after(Duration::from_secs(2)).await;
            let mut conn = connect(
                b,
                resources(),
                &Request::new(&bob, alice.public_key(), m),
                &mut Drbg::new([22; 32]),
            )
            .await
            .expect("bob connects");
            let mut msg = [0u8; 15];
            conn.socket.read_exact(&mut msg).await.unwrap();
            conn.socket
                .write_all(&msg.to_ascii_uppercase())
                .await
                .unwrap();
            conn.socket.flush().await.unwrap();
            conn
        };
        join(fa, fb).await
    });
    assert_eq!(ra.role, Role::Leader);
    assert_eq!(rb.role, Role::Follower);
    assert_eq!(ra.session_key, rb.session_key);
    // Only the peer socket is left on each stack.
    for s in [a, b] {
        assert_eq!(s.with_mut(|_, sockets| sockets.iter().count()), 1);
    }
    drop((ra, rb));
    let _ = &w.lan;
    assert_eq!(w.node.borrow().table().stats().matches, 1);
}

/// Read until the authenticated end of stream.
async fn read_to_end(conn: &mut SecureConnection<'_>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match conn.socket.read(&mut buf).await {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read failed after {} bytes: {e:?}", got.len()),
        }
    }
}

/// Relayed through the simulated mediator (the LAN drops every frame between the peers, so the punch
/// fails and both fall back to the relay at the Match's deadline): 20 000 bytes, many times
/// every buffer on the way, arrive in order; each side's end of stream (a FIN the splice forwards)
/// reaches the other while the other direction still carries the reply; the relay then ends closed.
#[test]
fn a_relayed_pair_carries_a_bulk_transfer_and_both_ends_of_stream() {
    let mut w = world(10, MediatorConfig::default());
    let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let (a, b) = (w.peers[0], w.peers[1]);
    let m = mediator();
    // Ports in plugging order: the mediator's is 0.
    w.lan.set_filter(|from, to, _| from == 0 || to == 0);
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (ra, rb) = w.ex.run(async {
        let fa = async {
            let request = Request::new(&alice, bob.public_key(), m);
            let mut conn = connect(a, resources(), &request, &mut Drbg::new([11; 32]))
                .await
                .expect("alice connects");
            conn.socket.write_all(&data).await.unwrap();
            conn.socket.close().await.unwrap();
            let reply = read_to_end(&mut conn).await;
            // Keep the socket a while: it acknowledges the relay's FIN.
            embassy_time::Timer::after(Duration::from_secs(1)).await;
            (conn.path, conn.session_key, reply)
        };
        let fb = async {
            let request = Request::new(&bob, alice.public_key(), m);
            let mut conn = connect(b, resources(), &request, &mut Drbg::new([22; 32]))
                .await
                .expect("bob connects");
            let got = read_to_end(&mut conn).await;
            // Half-closed: our direction still goes.
            conn.socket.write_all(&got[..100]).await.unwrap();
            conn.socket.close().await.unwrap();
            embassy_time::Timer::after(Duration::from_secs(1)).await;
            (conn.path, conn.session_key, got)
        };
        join(fa, fb).await
    });
    assert_eq!((ra.0, rb.0), (Path::Relayed, Path::Relayed));
    assert_eq!(ra.1, rb.1);
    assert!(rb.2 == data, "{} bytes arrived", rb.2.len());
    assert_eq!(ra.2, data[..100]);
    let node = w.node.borrow();
    let ended = node.events().iter().find_map(|(_, e)| match e {
        MediatorEvent::RelayEnded { end, bytes } => Some((*end, *bytes)),
        _ => None,
    });
    let (end, bytes) = ended.expect("the relay ended");
    assert_eq!(end, RelayEnd::Closed);
    assert!(bytes > 20_000, "{bytes}");
    assert_eq!(node.table().stats().relays_open, 0);
}

/// A relay that reaches its byte limit is reset on both sides: the reader sees an error, never a clean
/// end of stream (protocol §14.6).
#[test]
fn a_relay_over_its_byte_limit_is_reset() {
    let mut config = MediatorConfig::default();
    config.relay.max_bytes = 5_000;
    let mut w = world(10, config);
    let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let (a, b) = (w.peers[0], w.peers[1]);
    let m = mediator();
    w.lan.set_filter(|from, to, _| from == 0 || to == 0);
    let (_, got) = w.ex.run(async {
        let fa = async {
            let request = Request::new(&alice, bob.public_key(), m);
            let mut conn = connect(a, resources(), &request, &mut Drbg::new([11; 32]))
                .await
                .expect("alice connects");
            let _ = conn.socket.write_all(&[7; 20_000]).await;
        };
        let fb = async {
            let request = Request::new(&bob, alice.public_key(), m);
            let mut conn = connect(b, resources(), &request, &mut Drbg::new([22; 32]))
                .await
                .expect("bob connects");
            let mut buf = [0u8; 512];
            let mut total = 0;
            loop {
                match conn.socket.read(&mut buf).await {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n,
                    Err(_) => return Err(total),
                }
            }
        };
        join(fa, fb).await
    });
    let total = got.expect_err("a reset, not an end of stream");
    assert!(total < 5_000, "{total}");
    let node = w.node.borrow();
    let ended = node.events().iter().find_map(|(_, e)| match e {
        MediatorEvent::RelayEnded { end, bytes } => Some((*end, *bytes)),
        _ => None,
    });
    assert_eq!(ended, Some((RelayEnd::Limit(Limit::Bytes), 5_000)));
}

#[test]
fn peer_that_never_registers_gives_peer_never_came() {
    let mut w = world(
        10,
        MediatorConfig {
            wait_timeout: p2psc::time::Duration::from_secs(20),
            ..MediatorConfig::default()
        },
    );
    let alice = Keypair::from_seed(&[1; 32]);
    let nobody = Keypair::from_seed(&[3; 32]).public_key();
    let a = w.peers[0];
    let m = mediator();
    let result = w.ex.run(async {
        let request = Request::new(&alice, nobody, m);
        connect(a, resources(), &request, &mut Drbg::new([11; 32]))
            .await
            .err()
    });
    assert_eq!(result, Some(p2psc::Error::PeerNeverCame));
    assert_eq!(a.with_mut(|_, sockets| sockets.iter().count()), 0);
}

#[test]
fn a_full_socket_set_is_an_error_not_a_panic() {
    let mut w = world(10, MediatorConfig::default());
    let alice = Keypair::from_seed(&[1; 32]);
    let bob = Keypair::from_seed(&[2; 32]).public_key();
    let a = w.peers[0];
    // The stack has 8 slots; take 7, so that the mediator connection's and one candidate's do not fit.
    let taken: Vec<_> = (0..7)
        .map(|_| p2psc::net::tcp::TcpSocket::new(a, leak(256), leak(256)))
        .collect();
    let request = Request::new(&alice, bob, mediator());
    let result = w.ex.run(async {
        connect(a, resources(), &request, &mut Drbg::new([11; 32]))
            .await
            .err()
    });
    assert_eq!(result, Some(p2psc::Error::SocketSetFull));
    assert_eq!(
        a.with_mut(|_, sockets| sockets.iter().count()),
        7,
        "nothing added"
    );
    drop(taken);
}

// ---------------------------------------------------------------------------------------------------
// Through the routed network with NATs (host_sim::scenario): the same `connect`, real smoltcp stacks,
// simulated home routers and internet.
// ---------------------------------------------------------------------------------------------------

mod routed {
    use std::cell::Cell;
    use std::rc::Rc;

    use embassy_time::Duration;
    use host_sim::nat::{NatConfig, NatEvent, SynVerdict, Unsolicited};
    use host_sim::packet::Kind;
    use host_sim::scenario::{
        self, Delays, Layout, Report, Scenario, MEDIATOR_ADDR, MEDIATOR_PORT,
    };
    use host_sim::theory;
    use host_sim::timeline::{Side, What, Who};
    use p2psc::connector::{Config, ConnectEvent};
    use p2psc::identity::Keypair;
    use p2psc::net::IpAddress;
    use p2psc::proto::{AuthError, MediatorConfig};
    use p2psc::wire::{AbortReason, Role};

    fn ms(d: Duration) -> f64 {
        d.as_micros() as f64 / 1000.0
    }

    fn assert_connected(r: &Report) {
        assert!(r.connected(), "not connected:\n{}", r.timeline(true));
        let (a, b) = (r.a.session().unwrap(), r.b.session().unwrap());
        assert_eq!(a.session_key, b.session_key);
        assert_ne!(a.role, b.role);
    }

    fn peer_events(r: &Report, side: Side) -> Vec<ConnectEvent> {
        r.events
            .iter()
            .filter(|e| e.who == Who::Peer(side))
            .filter_map(|e| match e.what {
                What::Connect(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn nat_events(r: &Report) -> Vec<NatEvent> {
        r.events
            .iter()
            .filter_map(|e| match &e.what {
                What::Nat(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    /// The README's main job: two peers behind home routers, authenticated both ways, data echoed.
    /// Prints the set-up time in peer round trips.
    #[test]
    fn home_routers_connect_authenticate_and_echo() {
        let s = Scenario::home_routers(1);
        let r = scenario::run(&s);
        assert_connected(&r);
        assert_eq!(r.a.session().unwrap().role, Role::Leader);
        assert_eq!((r.a.attempts, r.b.attempts), (1, 1));
        let setup = r.setup.unwrap();
        println!(
            "set-up {:.1} ms = {:.2} peer RTTs (physical limit {:.1} ms = {:.2} RTTs)",
            ms(setup),
            r.setup_in_rtts().unwrap(),
            ms(r.limit),
            ms(r.limit) / ms(r.peer_rtt)
        );
        // Deterministic, so exact: the limit plus smoltcp's half round trip (theory::direct_setup).
        assert_eq!(setup, theory::direct_setup(r.mediator_rtt, r.peer_rtt));
        // Each peer's only remaining socket is its connection, to the other's public endpoint.
        let b_public = r.events.iter().find_map(|e| match e.what {
            What::Connect(ConnectEvent::Challenged(o)) if e.who == Who::Peer(Side::B) => Some(o),
            _ => None,
        });
        assert_eq!(
            b_public.map(|o| o.to_string()),
            Some(r.a.session().unwrap().remote.to_string())
        );
    }

    /// The first SYN is lost: the other peer's SYN opens the connection anyway (it crosses A's open
    /// NAT session and meets A's socket in SYN-SENT), on the first attempt.
    #[test]
    fn first_syn_lost() {
        let s = Scenario::home_routers(2);
        let dropped = Rc::new(Cell::new(0));
        let d = dropped.clone();
        let r = scenario::run_with(&s, move |net, _| {
            net.set_drop_rule(move |link, p| {
                let syn =
                    matches!(p, Kind::Tcp(t) if t.is_bare_syn() && *t.dst.ip() != MEDIATOR_ADDR);
                if link == "NAT A->internet" && syn && d.get() == 0 {
                    d.set(1);
                    return true;
                }
                false
            })
        });
        assert_eq!(dropped.get(), 1);
        assert_connected(&r);
        assert_eq!((r.a.attempts, r.b.attempts), (1, 1));
        assert_eq!(
            r.setup,
            Some(theory::direct_setup(r.mediator_rtt, r.peer_rtt))
        );
    }

    /// Both first SYNs are lost: TCP's own retransmission (after 1 s) completes the punch within
    /// the first attempt.
    #[test]
    fn both_first_syns_lost() {
        let s = Scenario::home_routers(3);
        let dropped = Rc::new(Cell::new(0));
        let d = dropped.clone();
        let r = scenario::run_with(&s, move |net, _| {
            net.set_drop_rule(move |link, p| {
                let syn =
                    matches!(p, Kind::Tcp(t) if t.is_bare_syn() && *t.dst.ip() != MEDIATOR_ADDR);
                if link.ends_with("->internet") && syn && d.get() < 2 {
                    d.set(d.get() + 1);
                    return true;
                }
                false
            })
        });
        assert_eq!(dropped.get(), 2);
        assert_connected(&r);
        assert_eq!((r.a.attempts, r.b.attempts), (1, 1));
        assert!(r.setup.unwrap() > Duration::from_secs(1));
    }

    /// Drop the second payload segment from the mediator on `link` (the Match, for the peer that
    /// registers second), so that peer learns of the match an RTO late.
    fn delay_match(s: &Scenario, link: &'static str) -> Report {
        let seen = Rc::new(Cell::new(0));
        scenario::run_with(s, move |net, _| {
            net.set_drop_rule(move |l, p| {
                if l != link {
                    return false;
                }
                let Kind::Tcp(t) = p else { return false };
                if t.src.port() == MEDIATOR_PORT && t.payload_len > 0 {
                    seen.set(seen.get() + 1);
                    return seen.get() == 2;
                }
                false
            })
        })
    }

    /// No NAT between the peers, and B late (its Match lost once): A's SYNs reach B's stack before B
    /// holds its port and are reset; A retries after random delays and connects once B is there.
    #[test]
    fn syn_reset_by_the_late_peers_stack() {
        let mut s = Scenario::home_routers(4);
        s.layout = Layout::Public;
        s.trace = true;
        let r = delay_match(&s, "internet->peer B");
        assert_connected(&r);
        let a = peer_events(&r, Side::A);
        assert!(
            a.iter().any(|e| matches!(e, ConnectEvent::Retrying(_))),
            "{}",
            r.timeline(true)
        );
        let resets_from_b = r
            .trace
            .iter()
            .filter(|p| p.link == "peer B->internet")
            .filter(|p| matches!(host_sim::packet::decode(&p.packet), Kind::Tcp(t) if t.rst))
            .count();
        assert!(resets_from_b >= 1);
        assert!(r.a.attempts >= 2);
    }

    /// Same, with B behind a NAT that answers unsolicited SYNs with RST.
    #[test]
    fn syn_reset_by_an_rst_answering_nat() {
        let mut s = Scenario::home_routers(5);
        let rst = NatConfig {
            unsolicited: Unsolicited::Rst,
            ..NatConfig::home_router()
        };
        s.layout = Layout::TwoNats(NatConfig::home_router(), rst);
        s.trace = true;
        let r = delay_match(&s, "internet->NAT B");
        assert_connected(&r);
        assert!(nat_events(&r).iter().any(|e| matches!(
            e,
            NatEvent::Syn {
                verdict: SynVerdict::Reset,
                ..
            }
        )));
        assert!(peer_events(&r, Side::A)
            .iter()
            .any(|e| matches!(e, ConnectEvent::Retrying(_))));
    }

    fn same_lan(hairpin: bool) -> Report {
        let mut s = Scenario::home_routers(6);
        s.layout = Layout::OneNat(NatConfig {
            hairpin,
            ..NatConfig::home_router()
        });
        s.delays = Delays {
            lan: Duration::from_millis(1),
            ..Delays::default()
        };
        let r = scenario::run(&s);
        assert_connected(&r);
        for side in [Side::A, Side::B] {
            assert!(peer_events(&r, side)
                .iter()
                .any(|e| matches!(e, ConnectEvent::Matched { racing: true, .. })));
        }
        // The LAN path won on both sides (the leader confirmed it, the follower accepted the Confirm).
        for p in [&r.a, &r.b] {
            let IpAddress::Ipv4(addr) = p.session().unwrap().remote.addr else {
                panic!()
            };
            assert_eq!(addr.octets()[..3], [192, 168, 1]);
        }
        // Including the leader's ARP round trip for the follower's MAC address.
        assert_eq!(r.setup, Some(theory::lan_setup(r.mediator_rtt, r.peer_rtt)));
        r
    }

    #[test]
    fn same_lan_with_hairpinning_lan_path_wins() {
        let r = same_lan(true);
        // The public path was tried too, through the hairpin.
        assert!(nat_events(&r)
            .iter()
            .any(|e| matches!(e, NatEvent::Hairpin { looped: true, .. })));
    }

    #[test]
    fn same_lan_without_hairpinning_lan_path_wins() {
        let r = same_lan(false);
        assert!(nat_events(&r)
            .iter()
            .any(|e| matches!(e, NatEvent::Hairpin { looped: false, .. })));
    }

    #[test]
    fn peer_never_registers_through_nats() {
        let mut s = Scenario::home_routers(7);
        s.b.start = None;
        s.mediator.wait_timeout = p2psc::time::Duration::from_secs(20);
        let r = scenario::run(&s);
        assert_eq!(r.a.error(), Some(p2psc::Error::PeerNeverCame));
        assert_eq!(r.b.result, None);
    }

    /// A lying mediator matches A with C instead of B: A's handshake rejects C's key.
    #[test]
    fn wrong_peer_key() {
        let mut s = Scenario::home_routers(8);
        let expected_b = Keypair::from_seed(&[42; 32]).public_key();
        s.a.want = Some(expected_b);
        // "B" is really C (identity 3), and wants A; the mediator enters C as the key A wants.
        s.b.identity = [3; 32];
        s.impersonate = Some((s.b.key(), expected_b));
        let r = scenario::run(&s);
        assert_eq!(
            r.a.error(),
            Some(p2psc::Error::AuthFailed(AuthError::WrongKey))
        );
        assert!(r.b.session().is_none(), "C must not get a connection");
    }

    #[test]
    fn mediator_abort_reaches_the_caller() {
        // Asking for one's own key.
        let mut s = Scenario::home_routers(9);
        s.a.want = Some(s.a.key());
        s.b.start = None;
        let r = scenario::run(&s);
        assert_eq!(
            r.a.error(),
            Some(p2psc::Error::Aborted(AbortReason::SelfMatch))
        );
        // Claiming a key one cannot sign for.
        let mut s = Scenario::home_routers(10);
        s.a.claim = Some(Keypair::from_seed(&[43; 32]).public_key());
        s.b.start = None;
        let r = scenario::run(&s);
        assert_eq!(
            r.a.error(),
            Some(p2psc::Error::Aborted(AbortReason::BadProof))
        );
    }

    /// A full table answers RetryAfter: the connector backs off and retries while its deadline
    /// allows, then reports the mediator busy.
    #[test]
    fn full_table_gives_mediator_busy() {
        let mut s = Scenario::home_routers(11);
        s.mediator = MediatorConfig {
            capacity: 0,
            ..MediatorConfig::default()
        };
        // RetryAfter says 5 s: back at 5–6.25 s (up to a quarter more at random), turned away again,
        // and the next return would be past the 9 s deadline: busy.
        s.a.config = Config {
            timeout: Duration::from_secs(9),
            ..Config::default()
        };
        s.b.start = None;
        let r = scenario::run(&s);
        assert_eq!(
            r.a.error(),
            Some(p2psc::Error::MediatorBusy),
            "{}",
            r.timeline(true)
        );
        let dials = peer_events(&r, Side::A)
            .iter()
            .filter(|e| matches!(e, ConnectEvent::MediatorConnected(_)))
            .count();
        assert_eq!(dials, 2, "{}", r.timeline(true));
    }

    /// The mediator's Pings keep a waiting peer's NAT mapping alive when the NAT's timeout is longer
    /// than the ping interval; with a shorter one the mapping expires and the Match never arrives.
    #[test]
    fn nat_mapping_timeout_and_mediator_pings() {
        let with_timeout = |secs| {
            let nat = NatConfig {
                timeout: Duration::from_secs(secs),
                ..NatConfig::home_router()
            };
            let mut s = Scenario::home_routers(12);
            s.layout = Layout::TwoNats(nat, nat);
            s.b.start = Some(Duration::from_secs(40));
            scenario::run(&s)
        };
        let r = with_timeout(20);
        assert_connected(&r);
        let r = with_timeout(10);
        assert!(!r.connected());
        assert!(nat_events(&r)
            .iter()
            .any(|e| matches!(e, NatEvent::MappingExpired { .. })));
        assert_eq!(r.a.error(), Some(p2psc::Error::PeerNeverCame));
    }

    /// Two routers that reset early SYNs and end their session on the RST (Linux masquerade, no
    /// firewall), 2 ms apart: both SYNs must leave within 2 ms of each other.
    fn rst_routers(seed: u64, stall_b: Option<u64>) -> Scenario {
        let mut s = Scenario::home_routers(seed);
        let nat = NatConfig::linux_no_firewall();
        s.layout = Layout::TwoNats(nat, nat);
        s.delays = Delays {
            access_a: Duration::from_millis(1),
            access_b: Duration::from_millis(1),
            mediator: Duration::from_millis(10),
            jitter: Duration::from_micros(500),
            ..Delays::default()
        };
        s.b.stall_after_match = stall_b.map(Duration::from_millis);
        s
    }

    /// When a peer's Match came (its timeline's Matched event).
    fn matched_at(r: &Report, side: Side) -> embassy_time::Instant {
        r.events
            .iter()
            .find(|e| {
                e.who == Who::Peer(side)
                    && matches!(e.what, What::Connect(ConnectEvent::Matched { .. }))
            })
            .expect("matched")
            .at
    }

    #[test]
    fn rst_routers_close_together_connect_on_the_first_syn() {
        for seed in 1..=10 {
            let r = scenario::run(&rst_routers(seed, None));
            assert_connected(&r);
            assert_eq!((r.a.attempts, r.b.attempts), (1, 1), "seed {seed}");
        }
    }

    /// B stalls 800 ms after the Match (neither its connector nor its stack runs): A's SYNs meet
    /// router B first and are reset, and each RST ends A's router's session too. Once B wakes, its
    /// SYN goes out at once and then at the shared slots, where A dials as well: they connect soon.
    #[test]
    fn rst_routers_close_together_with_a_stalled_peer_connect_soon_after_it_wakes() {
        for seed in 1..=20 {
            let r = scenario::run(&rst_routers(seed, Some(800)));
            assert_connected(&r);
            // The stall is real: B's first SYN leaves 800 ms after its Match, not at the start time.
            let first_syn = r
                .events
                .iter()
                .find(|e| {
                    e.who == Who::Peer(Side::B)
                        && matches!(e.what, What::Connect(ConnectEvent::Dialing(..)))
                })
                .unwrap()
                .at;
            assert!(first_syn >= matched_at(&r, Side::B) + Duration::from_millis(800));
            // A retried while B stalled, its SYNs reset by router B.
            assert!(r.a.attempts >= 2, "seed {seed}");
            let took =
                r.a.authenticated_at
                    .unwrap()
                    .max(r.b.authenticated_at.unwrap())
                    - matched_at(&r, Side::A);
            assert!(
                took < Duration::from_millis(2500),
                "seed {seed}: {} ms after the Match\n{}",
                took.as_millis(),
                r.timeline(false)
            );
        }
    }

    /// Same seed, same run: identical timelines and identical packets, byte for byte.
    #[test]
    fn deterministic_across_runs() {
        let mut s = Scenario::home_routers(13);
        s.trace = true;
        s.delays.jitter = Duration::from_millis(5);
        s.delays.loss = 0.05;
        let (r1, r2) = (scenario::run(&s), scenario::run(&s));
        assert_eq!(r1.events, r2.events);
        assert_eq!(r1.trace, r2.trace);
        assert!(!r1.trace.is_empty());
        s.seed = 14;
        let r3 = scenario::run(&s);
        assert_ne!(r1.trace, r3.trace);
    }
}
