//! Two tokio peers on the kernel's TCP stack, through the real mediator server, on loopback.

use std::time::Duration;

use p2psc::identity::Keypair;
use p2psc::wire::Role;
use p2psc_mediator::{run, Running, ServerConfig};
use p2psc_tokio::{connect, Config, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn mediator() -> Running {
    let config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        stats_interval: None,
        ..ServerConfig::default()
    };
    run(config, std::future::pending()).await.expect("bind")
}

fn keys() -> (Keypair, Keypair) {
    (
        Keypair::from_seed(&[0xA1; 32]),
        Keypair::from_seed(&[0xB2; 32]),
    )
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("bounded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tokio_peers_connect_and_exchange_data() {
    let m = mediator().await;
    let addr = m.local_addrs()[0].to_string();
    let (a, b) = keys();
    let (pa, pb) = (a.public_key(), b.public_key());
    let (ra, rb) = within(async {
        let first = connect(&a, &pb, &addr, Config::default());
        let second = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            connect(&b, &pa, &addr, Config::default()).await
        };
        tokio::join!(first, second)
    })
    .await;
    let (mut ca, mut cb) = (ra.expect("A connects"), rb.expect("B connects"));
    assert_eq!((ca.role(), cb.role()), (Role::Leader, Role::Follower));
    assert_eq!(ca.session_key(), cb.session_key());
    assert_eq!(ca.peer(), cb.local());
    within(async {
        ca.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        cb.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        cb.write_all(b"pong").await.unwrap();
        ca.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    })
    .await;
}

#[tokio::test]
async fn a_mediator_name_that_does_not_resolve_is_a_resolve_error() {
    let (a, b) = keys();
    let r = connect(
        &a,
        &b.public_key(),
        "no-such-host.invalid:7777",
        Config::default(),
    )
    .await;
    assert!(matches!(r, Err(Error::Resolve(..))), "{r:?}");
}

#[tokio::test]
async fn a_mediator_that_refuses_is_unreachable() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (a, b) = keys();
    let addr = format!("127.0.0.1:{port}");
    let r = within(connect(&a, &b.public_key(), &addr, Config::default())).await;
    assert!(
        matches!(r, Err(Error::Connect(p2psc::Error::MediatorUnreachable))),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_peer_that_never_comes_ends_in_peer_never_came() {
    let m = mediator().await;
    let (a, b) = keys();
    let mut config = Config::default();
    config.register.wait_timeout = p2psc::time::Duration::from_millis(500);
    let r = within(connect(
        &a,
        &b.public_key(),
        &m.local_addrs()[0].to_string(),
        config,
    ))
    .await;
    assert!(
        matches!(r, Err(Error::Connect(p2psc::Error::PeerNeverCame))),
        "{r:?}"
    );
}
