//! `p2psc::net::connect` end to end: two peers and a mediator, each a real smoltcp stack, in memory on a
//! virtual clock.

use std::cell::RefCell;
use std::rc::Rc;

use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use host_sim::clock;
use host_sim::exec::{join, Executor};
use host_sim::link::{Lan, Port};
use host_sim::mediator::MediatorNode;
use p2psc::connector::{ConnectConfig, ConnectError};
use p2psc::identity::Keypair;
use p2psc::net::{
    self, connect, Config, ConnectBuffers, Ipv4Address, Ipv4Cidr, Mediator, Peer, PeerConnection,
    Runner, Stack, StackResources, StaticConfigV4,
};
use p2psc::proto::MediatorConfig;
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

fn buffers() -> ConnectBuffers<'static> {
    ConnectBuffers {
        rx: leak(2048),
        tx: leak(2048),
        mediator_rx: leak(256),
        mediator_tx: leak(256),
        race: None,
    }
}

/// Serve the mediator on `stack` forever.
async fn serve(stack: Stack<'static>, node: Rc<RefCell<MediatorNode>>) {
    stack
        .poll_with(|cx, _iface, sockets| {
            let mut node = node.borrow_mut();
            node.poll(net::now(), sockets);
            for h in node.handles().collect::<Vec<_>>() {
                let s = sockets.get_mut::<smoltcp::socket::tcp::Socket>(h);
                s.register_recv_waker(cx.waker());
                s.register_send_waker(cx.waker());
            }
            if let Some(at) = node.poll_at() {
                net::wake_at(cx, at);
            }
            core::task::Poll::<()>::Pending
        })
        .await
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
    ex.spawn(serve(mstack, node.clone()));
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

async fn echo(conn: &mut PeerConnection<'_>, msg: &[u8]) -> Vec<u8> {
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
                &alice,
                &Peer::new(bob.public_key()),
                &m,
                buffers(),
                ConnectConfig::default(),
                [11; 32],
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
                &bob,
                &Peer::new(alice.public_key()),
                &m,
                buffers(),
                ConnectConfig::default(),
                [22; 32],
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
        connect(
            a,
            &alice,
            &Peer::new(nobody),
            &m,
            buffers(),
            ConnectConfig::default(),
            [11; 32],
        )
        .await
        .err()
    });
    assert_eq!(result, Some(ConnectError::PeerNeverCame));
    assert_eq!(a.with_mut(|_, sockets| sockets.iter().count()), 0);
}
