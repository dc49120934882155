//! Two tokio peers on the kernel's TCP stack, through the real mediator server, on loopback.

use std::time::Duration;

use p2psc::identity::Keypair;
use p2psc::proto::client::ConnectEvent;
use p2psc::wire::Role;
use p2psc_mediator::{run, Running, ServerConfig};
use p2psc_tokio::{connect, connect_observed, Config, Connection, Error};
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

/// A and B connected through a fresh mediator (A registers first, so it leads). A run that does not
/// end within the bound shows each side's progress.
async fn pair(config_a: Config, config_b: Config) -> (Connection, Connection) {
    let m = mediator().await;
    let addr = m.local_addrs()[0].to_string();
    let (a, b) = keys();
    let (pa, pb) = (a.public_key(), b.public_key());
    let log = std::sync::Mutex::new(Vec::<String>::new());
    let note = |side: &'static str| {
        let log = &log;
        move |e: ConnectEvent| log.lock().unwrap().push(format!("{side}: {e}"))
    };
    let both = async {
        let first = connect_observed(&a, &pb, &addr, config_a, note("A"));
        let second = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            connect_observed(&b, &pa, &addr, config_b, note("B")).await
        };
        tokio::join!(first, second)
    };
    let Ok((ra, rb)) = tokio::time::timeout(Duration::from_secs(30), both).await else {
        panic!("no outcome within 30 s: {:#?}", log.lock().unwrap());
    };
    (ra.expect("A connects"), rb.expect("B connects"))
}

fn plaintext() -> Config {
    Config {
        plaintext: true,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tokio_peers_connect_and_exchange_data() {
    let (mut ca, mut cb) = pair(Config::default(), Config::default()).await;
    assert!(ca.is_secure() && cb.is_secure(), "secure by default");
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
    config.protocol.register.wait_timeout = p2psc::time::Duration::from_millis(500);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_stream_ends_only_with_the_peers_end_record() {
    let (mut ca, mut cb) = pair(Config::default(), Config::default()).await;
    within(async {
        ca.write_all(&[7u8; 10_000]).await.unwrap();
        ca.shutdown().await.unwrap();
        let mut got = Vec::new();
        cb.read_to_end(&mut got)
            .await
            .expect("a clean, authenticated end");
        assert_eq!(got, vec![7u8; 10_000]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_an_opt_in_of_both_sides() {
    let (mut ca, mut cb) = pair(plaintext(), plaintext()).await;
    assert!(!ca.is_secure() && !cb.is_secure());
    within(async {
        ca.write_all(b"clear").await.unwrap();
        let mut got = [0u8; 5];
        cb.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"clear");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_peer_cannot_talk_to_a_secure_one() {
    // The secure side takes the other's bytes as a record: it fails (never releases them) and
    // resets; the plaintext side never sees our plaintext.
    let (mut secure, mut clear) = pair(Config::default(), plaintext()).await;
    within(async {
        secure.write_all(b"secret").await.unwrap();
        secure.flush().await.unwrap();
        let mut seen = [0u8; 6];
        clear.read_exact(&mut seen).await.unwrap();
        assert_ne!(&seen, b"secret");
        clear
            .write_all(&[0x01, 0x00, 0x04, 1, 2, 3, 4])
            .await
            .unwrap();
        clear.write_all(&[0u8; 16]).await.unwrap();
        let mut buf = [0u8; 16];
        let err = secure.read(&mut buf).await.expect_err("a forged record");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    })
    .await;
}
