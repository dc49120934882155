//! The mediator server over real TCP on loopback, with clients driven by p2psc's registration state
//! machine (and raw bytes for the misbehaving ones). No test sleeps to make something true: each waits
//! for an event, bounded by a timeout.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use p2psc::identity::Signer;
use p2psc::proto::RegisterError;
use p2psc::wire::{AbortReason, Message, Role};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn aborted(reason: AbortReason) -> ClientError {
    ClientError::Register(RegisterError::Aborted(reason))
}

/// Register the pair (a, b) from two connections at once; both must be matched with each other.
async fn pair(addr: SocketAddr, a: u32, b: u32) {
    let (mut left, mut right) = tokio::join!(
        connect(addr, signer(a), key(b)),
        connect(addr, signer(b), key(a)),
    );
    let (l, r) = tokio::join!(left.matched(), right.matched());
    let (l, r) = (l.expect("left matched"), r.expect("right matched"));
    // Each learns the other's public endpoint: on loopback, the other's local address.
    assert_eq!(l.peer_observed, right.local_addr());
    assert_eq!(r.peer_observed, left.local_addr());
    assert_eq!(l.own_observed, left.local_addr());
    assert_eq!(l.role, r.role.other());
    assert_eq!(l.peer_nonce, r.own_nonce);
    assert_eq!(r.peer_nonce, l.own_nonce);
    assert_eq!(l.peer_local, Some(right.local_addr()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pairs_match_concurrently() {
    let mediator = Mediator::start(config()).await;
    let addr = mediator.addr();
    let tasks: Vec<_> = (0..200u32)
        .map(|i| tokio::spawn(pair(addr, 2 * i, 2 * i + 1)))
        .collect();
    for task in tasks {
        within(LONG, task).await.expect("pair task");
    }
    let stats = mediator.wait_for(|s| s.table.matches == 200).await;
    assert_eq!(stats.table.registrations, 400);
    assert_eq!(stats.waiting, 0);
    // Matched connections linger (200 ms here), then the mediator closes them all.
    mediator.wait_for(|s| s.connections == 0).await;
}

#[tokio::test]
async fn first_registered_leads_and_connection_closes_after_linger() {
    let mediator = Mediator::start(config()).await;
    let mut first = connect(mediator.addr(), signer(1), key(2)).await;
    first.registered().await.unwrap();
    let mut second = connect(mediator.addr(), signer(2), key(1)).await;
    let info = within(LONG, second.matched()).await.unwrap();
    assert_eq!(info.role, Role::Follower);
    assert_eq!(
        within(LONG, first.matched()).await.unwrap().role,
        Role::Leader
    );
    // After the linger the mediator closes: nothing more arrives, then EOF.
    assert_eq!(
        within(LONG, read_until_closed(first.stream_mut())).await,
        vec![]
    );
    assert_eq!(
        within(LONG, read_until_closed(second.stream_mut())).await,
        vec![]
    );
}

#[tokio::test]
async fn wrong_proof_is_aborted() {
    let mediator = Mediator::start(config()).await;
    // Claims key 1, signs with key 3.
    let mut client = connect_claiming(mediator.addr(), key(1), signer(3), key(2)).await;
    assert_eq!(
        within(LONG, client.failure()).await,
        aborted(AbortReason::BadProof)
    );
    let stats = mediator
        .wait_for(|s| s.aborts(AbortReason::BadProof) == 1)
        .await;
    assert_eq!(stats.waiting, 0);
    assert_eq!(stats.table.registrations, 0);
}

#[tokio::test]
async fn unsupported_version_is_aborted() {
    let mediator = Mediator::start(config()).await;
    let mut stream = TcpStream::connect(mediator.addr()).await.unwrap();
    let mut frame = hello_frame(key(1), key(2));
    frame[0] = 3;
    stream.write_all(&frame).await.unwrap();
    assert_eq!(
        within(LONG, read_until_closed(&mut stream)).await,
        vec![Message::Abort(AbortReason::UnsupportedVersion)]
    );
    // The server goes on serving everyone else.
    let mut client = connect(mediator.addr(), signer(1), key(2)).await;
    client.registered().await.unwrap();
}

#[tokio::test]
async fn wait_timeout_aborts_with_peer_timeout() {
    let mut config = config();
    config.mediator.wait_timeout = ms(300);
    let mediator = Mediator::start(config).await;
    let mut client = connect(mediator.addr(), signer(1), key(2)).await;
    assert_eq!(client.registered().await.unwrap(), ms(300));
    assert_eq!(
        within(LONG, client.failure()).await,
        aborted(AbortReason::PeerTimeout)
    );
    let stats = mediator.wait_for(|s| s.table.expired == 1).await;
    assert_eq!(stats.waiting, 0);
}

#[tokio::test]
async fn disconnect_before_match_removes_the_entry() {
    let mediator = Mediator::start(config()).await;
    let mut gone = connect(mediator.addr(), signer(1), key(2)).await;
    gone.registered().await.unwrap();
    drop(gone);
    let stats = mediator
        .wait_for(|s| s.waiting_disconnects == 1 && s.waiting == 0)
        .await;
    assert_eq!(stats.disconnects, 1);

    // Its counterpart does not match the departed peer: it waits.
    let mut other = connect(mediator.addr(), signer(2), key(1)).await;
    other.registered().await.unwrap();
    assert_eq!(mediator.wait_for(|s| s.waiting == 1).await.table.matches, 0);
    // Until the peer comes back.
    let mut back = connect(mediator.addr(), signer(1), key(2)).await;
    let info = within(LONG, back.matched()).await.unwrap();
    assert_eq!(info.peer_observed, other.local_addr());
    assert_eq!(
        within(LONG, other.matched()).await.unwrap().peer_observed,
        back.local_addr()
    );
}

#[tokio::test]
async fn same_key_twice_replaces_the_first() {
    let mediator = Mediator::start(config()).await;
    let mut first = connect(mediator.addr(), signer(1), key(2)).await;
    first.registered().await.unwrap();
    let mut second = connect(mediator.addr(), signer(1), key(2)).await;
    second.registered().await.unwrap();
    assert_eq!(
        within(LONG, first.failure()).await,
        aborted(AbortReason::Replaced)
    );
    let mut peer = connect(mediator.addr(), signer(2), key(1)).await;
    assert_eq!(
        within(LONG, peer.matched()).await.unwrap().peer_observed,
        second.local_addr()
    );
    let stats = mediator.wait_for(|s| s.table.matches == 1).await;
    assert_eq!(stats.table.replaced, 1);
}

/// What a raw misbehaving client saw, and how long the mediator took to close on it.
async fn misbehave(addr: SocketAddr, bytes: Vec<u8>) -> (Vec<Message>, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = tokio::time::Instant::now();
    stream.write_all(&bytes).await.unwrap();
    let messages = within(LONG, read_until_closed(&mut stream)).await;
    (messages, start.elapsed())
}

/// One byte of a valid Hello every 100 ms: never done within the step deadline.
async fn slow_drip(addr: SocketAddr) -> (Vec<Message>, Duration) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let start = tokio::time::Instant::now();
    let (mut read, mut write) = stream.into_split();
    let frame = hello_frame(key(900), key(901));
    let dripper = tokio::spawn(async move {
        for byte in frame {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut stream_messages = Vec::new();
    let mut reader = p2psc::wire::FrameReader::new();
    let mut buf = [0u8; 256];
    loop {
        use tokio::io::AsyncReadExt;
        match within(LONG, read.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut data = &buf[..n];
                while !data.is_empty() {
                    let (used, message) = reader.read(data);
                    stream_messages.extend(message.map(|m| m.unwrap()));
                    data = &data[used..];
                }
            }
        }
    }
    let elapsed = start.elapsed();
    dripper.abort();
    (stream_messages, elapsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_clients_are_closed_in_time_while_others_are_served() {
    let step = Duration::from_millis(1_000);
    let mut config = config();
    config.mediator.step_timeout = step.into();
    let mediator = Mediator::start(config).await;
    let addr = mediator.addr();

    let hello = hello_frame(key(800), key(801));
    let mut oversized = hello.clone();
    oversized[2..4].copy_from_slice(&[0xff, 0xff]);
    let mut unknown_type = hello.clone();
    unknown_type[1] = 0x7e;

    let half_hello = hello[..hello.len() / 2].to_vec();

    let garbage = tokio::spawn(misbehave(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ));
    let unknown = tokio::spawn(misbehave(addr, unknown_type));
    let oversize = tokio::spawn(misbehave(addr, oversized));
    let half = tokio::spawn(misbehave(addr, half_hello));
    let drip = tokio::spawn(slow_drip(addr));
    // Meanwhile, honest peers are served.
    let honest: Vec<_> = (0..20u32)
        .map(|i| tokio::spawn(pair(addr, 2 * i, 2 * i + 1)))
        .collect();
    for task in honest {
        within(LONG, task).await.unwrap();
    }

    // An HTTP request starts with version byte 'G'.
    let (messages, elapsed) = garbage.await.unwrap();
    assert_eq!(
        messages,
        vec![Message::Abort(AbortReason::UnsupportedVersion)]
    );
    assert!(elapsed < step, "garbage closed after {elapsed:?}");
    let (messages, elapsed) = unknown.await.unwrap();
    assert_eq!(messages, vec![Message::Abort(AbortReason::Malformed)]);
    assert!(elapsed < step, "unknown type closed after {elapsed:?}");
    let (messages, elapsed) = oversize.await.unwrap();
    assert_eq!(messages, vec![Message::Abort(AbortReason::Malformed)]);
    assert!(elapsed < step, "oversized closed after {elapsed:?}");
    // The deadline runs from the accept, which follows our connect: never earlier than `step`.
    let slack = Duration::from_secs(2);
    let (messages, elapsed) = half.await.unwrap();
    assert_eq!(messages, vec![Message::Abort(AbortReason::Timeout)]);
    assert!(
        elapsed >= step && elapsed < step + slack,
        "half frame closed after {elapsed:?}"
    );
    let (messages, elapsed) = drip.await.unwrap();
    assert_eq!(messages, vec![Message::Abort(AbortReason::Timeout)]);
    assert!(
        elapsed >= step && elapsed < step + slack,
        "slow drip closed after {elapsed:?}"
    );

    let stats = mediator
        .wait_for(|s| s.aborts(AbortReason::Timeout) == 2 && s.table.matches == 20)
        .await;
    assert_eq!(stats.aborts(AbortReason::Malformed), 2);
    assert_eq!(stats.aborts(AbortReason::UnsupportedVersion), 1);
    mediator.wait_for(|s| s.connections == 0).await;
}

#[tokio::test]
async fn full_table_answers_retry_after() {
    let mut config = config();
    config.mediator.capacity = 2;
    config.mediator.retry_after = ms(1_500);
    let mediator = Mediator::start(config).await;
    let mut waiting = Vec::new();
    for i in 0..2 {
        let mut client = connect(mediator.addr(), signer(i), key(100 + i)).await;
        client.registered().await.unwrap();
        waiting.push(client);
    }
    let mut late = connect(mediator.addr(), signer(7), key(107)).await;
    assert_eq!(
        within(LONG, late.failure()).await,
        ClientError::Register(RegisterError::RetryAfter(ms(1_500)))
    );
    // A registration that completes a pair still gets in: it takes a waiting peer out.
    let mut partner = connect(mediator.addr(), signer(100), key(0)).await;
    within(LONG, partner.matched()).await.unwrap();
    let stats = mediator.wait_for(|s| s.table.matches == 1).await;
    assert_eq!(stats.table.full, 1);
    assert_eq!(stats.waiting, 1);
}

#[tokio::test]
async fn per_ip_limit() {
    let mut config = config();
    config.per_ip.concurrent = 2;
    let mediator = Mediator::start(config).await;
    let addr = mediator.addr();
    let mut a = connect(addr, signer(1), key(2)).await;
    a.registered().await.unwrap();
    let mut b = connect(addr, signer(3), key(4)).await;
    b.registered().await.unwrap();

    let mut third = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        within(LONG, read_until_closed(&mut third)).await,
        vec![Message::Abort(AbortReason::TooManyConnections)]
    );
    // The client machine sees the same abort.
    let mut fourth = connect(addr, signer(5), key(6)).await;
    assert_eq!(
        within(LONG, fourth.failure()).await,
        aborted(AbortReason::TooManyConnections)
    );
    assert_eq!(mediator.stats().refused_by("per_ip"), 2);

    // Another source address has its own allowance.
    let source: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut elsewhere = connect_from(source, addr, signer(2), key(1)).await;
    assert_eq!(
        within(LONG, elsewhere.matched())
            .await
            .unwrap()
            .peer_observed,
        a.local_addr()
    );

    // Once one closes, the address may connect again.
    drop(b);
    mediator
        .wait_for(|s| s.waiting_disconnects == 1 && s.connections <= 3)
        .await;
    let mut again = connect(addr, signer(3), key(4)).await;
    again.registered().await.unwrap();
}

#[tokio::test]
async fn max_connections_limit() {
    let mut config = config();
    config.max_connections = 2;
    let mediator = Mediator::start(config).await;
    let addr = mediator.addr();
    let mut a = connect(addr, signer(1), key(2)).await;
    a.registered().await.unwrap();
    let mut b = connect(addr, signer(3), key(4)).await;
    b.registered().await.unwrap();
    let mut c = connect(addr, signer(5), key(6)).await;
    assert_eq!(
        within(LONG, c.failure()).await,
        aborted(AbortReason::TooManyConnections)
    );
    let stats = mediator
        .wait_for(|s| s.refused_by("max_connections") == 1)
        .await;
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.accepted, 2);
}

#[tokio::test]
async fn shutdown_aborts_live_sessions() {
    let mut mediator = Mediator::start(config()).await;
    let addr = mediator.addr();
    let mut waiting = connect(addr, signer(1), key(2)).await;
    waiting.registered().await.unwrap();
    // A connection in the middle of nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    mediator.wait_for(|s| s.connections == 2).await;

    mediator.shutdown();
    assert_eq!(
        within(LONG, waiting.failure()).await,
        aborted(AbortReason::ShuttingDown)
    );
    assert_eq!(
        within(LONG, read_until_closed(&mut silent)).await,
        vec![Message::Abort(AbortReason::ShuttingDown)]
    );
    let stats = mediator.running.stats().clone();
    within(Duration::from_secs(5), mediator.running.join()).await;
    let stats = stats.snapshot();
    assert_eq!(stats.aborts(AbortReason::ShuttingDown), 2);
    assert_eq!(stats.waiting, 0);
    // No longer listening.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn waiting_peers_are_pinged_and_the_silent_one_dropped() {
    let mut config = config();
    config.mediator.ping_interval = ms(100);
    config.mediator.ping_timeout = ms(1_000);
    let mediator = Mediator::start(config).await;
    let addr = mediator.addr();

    let mut silent = connect(addr, signer(1), key(2)).await;
    silent.registered().await.unwrap();
    // `silent` is no longer driven: it never answers the Ping.
    let mut lively = connect(addr, signer(3), key(4)).await;
    lively.registered().await.unwrap();
    // Keep answering Pings while the silent one is dropped.
    let stats = mediator.running.stats().clone();
    tokio::select! {
        result = lively.matched() => panic!("lively stopped waiting: {result:?}"),
        _ = within(LONG, stats.wait_for(|s| s.aborts(AbortReason::Unresponsive) == 1)) => {}
    }
    assert_eq!(
        within(LONG, silent.failure()).await,
        aborted(AbortReason::Unresponsive)
    );
    // Several ping rounds later the answering peer is still registered, and matches.
    let mut partner = connect(addr, signer(4), key(3)).await;
    let (l, p) = tokio::join!(lively.matched(), partner.matched());
    assert_eq!(l.unwrap().peer_observed, partner.local_addr());
    assert_eq!(p.unwrap().peer_observed, lively.local_addr());
}

#[tokio::test]
async fn ipv4_and_ipv6_listeners_match_across_families() {
    let mut config = config();
    config.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    let mediator = Mediator::start(config).await;
    let (v4, v6) = (
        mediator.running.local_addrs()[0],
        mediator.running.local_addrs()[1],
    );
    assert!(v6.is_ipv6());
    let mut a = connect(v4, signer(1), key(2)).await;
    let mut b = connect(v6, signer(2), key(1)).await;
    let (ia, ib) = tokio::join!(a.matched(), b.matched());
    let (ia, ib) = (ia.unwrap(), ib.unwrap());
    assert_eq!(ia.peer_observed, b.local_addr());
    assert!(ia.peer_observed.is_ipv6());
    assert_eq!(ib.peer_observed, a.local_addr());
    assert!(ib.peer_observed.is_ipv4());
}

/// `GET path` on the metrics endpoint: the whole response.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn metrics_endpoint() {
    let mut config = config();
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let mediator = Mediator::start(config).await;
    pair(mediator.addr(), 1, 2).await;
    mediator.wait_for(|s| s.table.matches == 1).await;
    let metrics = mediator.running.metrics_addr().unwrap();

    let response = within(LONG, http_get(metrics, "/metrics")).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("application/openmetrics-text"),
        "{response}"
    );
    for line in [
        "p2psc_mediator_registrations_total 2",
        "p2psc_mediator_matches_total 1",
        "p2psc_mediator_connections_accepted_total 2",
        "p2psc_mediator_aborts_total{reason=\"bad_proof\"} 0",
        "p2psc_mediator_connections_refused_total{limit=\"rate_per_net\"} 0",
        "p2psc_mediator_evicted_total 0",
        "# TYPE p2psc_mediator_waiting gauge",
        "# TYPE p2psc_mediator_matches counter",
        "p2psc_mediator_uptime_seconds ",
        "# EOF",
    ] {
        assert!(response.contains(line), "{line} missing from:\n{response}");
    }
    let response = within(LONG, http_get(metrics, "/")).await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test]
async fn health_and_readiness() {
    let mut config = config();
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let mut mediator = Mediator::start(config).await;
    let metrics = mediator.running.metrics_addr().unwrap();
    let response = within(LONG, http_get(metrics, "/healthz")).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let response = within(LONG, http_get(metrics, "/readyz")).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

    // A waiting peer keeps the server in its shutdown until it has been told ShuttingDown.
    let mut waiting = connect(mediator.addr(), signer(1), key(2)).await;
    waiting.registered().await.unwrap();
    mediator.shutdown();
    // While shutting down: alive, not ready.
    let ready = within(LONG, async {
        loop {
            let response = http_get(metrics, "/readyz").await;
            if !response.starts_with("HTTP/1.1 200") {
                return response;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert_eq!(
        within(LONG, waiting.failure()).await,
        aborted(AbortReason::ShuttingDown)
    );
}

#[test]
fn dalek_signer_is_a_p2psc_signer() {
    // The tests' clients sign with dalek; the bytes are salty's (RFC 8032 is deterministic).
    let salty = p2psc::identity::Keypair::from_seed(&[0x5a; 32]);
    let dalek = p2psc_mediator::DalekSigner::from_seed(&[0x5a; 32]);
    assert_eq!(dalek.public_key(), salty.public_key());
    assert_eq!(dalek.sign(b"x"), salty.sign(b"x"));
}
