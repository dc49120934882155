//! Protocol version 2 against the real server over loopback: the mapping probe's classes in the
//! Match, and the relay (its join, its refusals, the splice with payload held before the join,
//! half-close, back-pressure, and the limits that end it with a reset of both connections). No test
//! sleeps to make something true: each waits for an event, bounded by a timeout.

mod common;

use std::io;
use std::time::Duration;

use common::*;
use p2psc::proto::RegisterError;
use p2psc::wire::{AbortReason, Mapping, Message, RelayMode, Role, MAX_FRAME_LEN};
use p2psc_mediator::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn aborted(reason: AbortReason) -> ClientError {
    ClientError::Register(RegisterError::Aborted(reason))
}

/// The test configuration with a relay: no rate limits (unless a test sets them), a linger long
/// enough for the requests.
fn relay_config() -> ServerConfig {
    let mut config = config();
    config.mediator.linger = ms(10_000);
    config.mediator.relay.pair_rate = 0;
    config.mediator.relay.total_rate = 0;
    config
}

/// A relayed pair: both matched with a relay offered, both requested (the leader first, with
/// `payload[0]` behind its request, the follower with `payload[1]`), both joined.
async fn relayed(mediator: &Mediator, a: u32, payload: [&[u8]; 2]) -> [Client; 2] {
    let ([mut leader, mut follower], [l, _]) =
        matched_v2(mediator, a, RelayMode::Only, [Probe::None; 2]).await;
    assert_eq!(l.role, Role::Leader);
    assert!(l.paths.unwrap().relay_after_ms > 0);
    leader.request_relay(payload[0]).await.unwrap();
    // Nothing comes before the partner asks (the mediator holds the leader's payload meanwhile).
    let early = tokio::time::timeout(Duration::from_millis(200), leader.relayed()).await;
    assert!(
        early.is_err(),
        "relayed before the partner asked: {early:?}"
    );
    follower.request_relay(payload[1]).await.unwrap();
    within(LONG, leader.relayed())
        .await
        .expect("leader relayed");
    within(LONG, follower.relayed())
        .await
        .expect("follower relayed");
    [leader, follower]
}

/// Read until end of stream or an error; the bytes, and the error.
async fn read_all(stream: &mut (impl AsyncReadExt + Unpin)) -> (Vec<u8>, Option<io::ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Some(e.kind())),
        }
    }
}

/// `len` bytes of a pattern that shows reordering and loss, distinct per `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

#[tokio::test]
async fn probes_classify_the_mapping_in_the_match() {
    let mediator = Mediator::start(config()).await;
    let probes = [Probe::SamePort, Probe::OtherPort];
    let (_, [l, f]) = matched_v2(&mediator, 10, RelayMode::Fallback, probes).await;
    let (pl, pf) = (l.paths.unwrap(), f.paths.unwrap());
    assert_eq!(
        (pl.own, pl.peer),
        (Mapping::Independent, Mapping::Dependent)
    );
    assert_eq!(
        (pf.own, pf.peer),
        (Mapping::Dependent, Mapping::Independent)
    );
    assert!(pl.relay_after_ms > 0 && pl.relay_after_ms == pf.relay_after_ms);

    let (_, [l, f]) = matched_v2(&mediator, 20, RelayMode::Fallback, [Probe::None; 2]).await;
    for p in [l.paths.unwrap(), f.paths.unwrap()] {
        assert_eq!((p.own, p.peer), (Mapping::Unknown, Mapping::Unknown));
    }
    let s = mediator.stats();
    assert_eq!(s.probes_recorded, 2);
    assert_eq!(
        [
            s.classified_as(Mapping::Independent),
            s.classified_as(Mapping::Dependent),
            s.classified_as(Mapping::Unknown)
        ],
        [1, 1, 2]
    );
    let metrics = p2psc_mediator::render_metrics(&s);
    assert!(
        metrics.contains("registrations_classified_total{mapping=\"dependent\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_probe_endpoint_refuses_anything_but_a_probe() {
    let mediator = Mediator::start(config()).await;
    // A version-1 frame: version 1 has no probe.
    let mut stream = TcpStream::connect(mediator.probe_addr()).await.unwrap();
    let mut frame = [0u8; MAX_FRAME_LEN];
    let n = Message::Ping { token: 1 }.emit_bytes(&mut frame).unwrap();
    stream.write_all(&frame[..n]).await.unwrap();
    assert_eq!(
        within(LONG, read_until_closed(&mut stream)).await,
        vec![Message::Abort(AbortReason::UnsupportedVersion)]
    );
    // Silence: the step deadline (2 s here) closes it with Abort(Timeout).
    let mut stream = TcpStream::connect(mediator.probe_addr()).await.unwrap();
    assert_eq!(
        within(LONG, read_until_closed(&mut stream)).await,
        vec![Message::Abort(AbortReason::Timeout)]
    );
    assert_eq!(mediator.stats().probes_recorded, 0);
}

#[tokio::test]
async fn relayed_bytes_flow_both_ways_in_order_with_half_close() {
    let mediator = Mediator::start(relay_config()).await;
    let [mut a, mut b] = relayed(&mediator, 30, [b"first flight of a", b"of b"]).await;
    let (to_b, to_a) = (pattern(1, 3 << 20), pattern(2, 1 << 20));
    let (sa, sb) = (a.stream_mut(), b.stream_mut());
    let ((mut ra, mut wa), (mut rb, mut wb)) = (sa.split(), sb.split());
    // a sends and then half-closes; b reads to the end while still sending, then half-closes too.
    let a_side = async {
        wa.write_all(&to_b).await.unwrap();
        wa.shutdown().await.unwrap();
        read_all(&mut ra).await
    };
    let b_side = async {
        let ((got, end), ()) = tokio::join!(read_all(&mut rb), async {
            wb.write_all(&to_a).await.unwrap();
        });
        // b's direction is still open after a's FIN: one more message gets through.
        wb.write_all(b"after your FIN").await.unwrap();
        wb.shutdown().await.unwrap();
        (got, end)
    };
    let ((got_a, end_a), (got_b, end_b)) =
        within(LONG, async { tokio::join!(a_side, b_side) }).await;
    assert_eq!((end_a, end_b), (None, None), "a clean end both ways");
    assert_eq!(got_b, [&b"first flight of a"[..], &to_b].concat());
    assert_eq!(got_a, [&b"of b"[..], &to_a, b"after your FIN"].concat());
    let s = mediator
        .wait_for(|s| s.relays_ended_by("closed") == 1)
        .await;
    assert_eq!((s.table.relays, s.table.relays_open), (1, 0));
    let total = got_a.len() + got_b.len();
    assert_eq!(s.relayed_bytes, total as u64);
    let metrics = p2psc_mediator::render_metrics(&s);
    assert!(metrics.contains("relays_started_total 1"), "{metrics}");
    assert!(
        metrics.contains("relays_ended_total{cause=\"closed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("relayed_bytes_total {total}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn relay_off_offers_none_and_refuses_a_request() {
    let mut config = relay_config();
    config.mediator.relay.enabled = false;
    let mediator = Mediator::start(config).await;
    let ([mut a, _b], [l, f]) =
        matched_v2(&mediator, 40, RelayMode::Fallback, [Probe::None; 2]).await;
    assert_eq!(l.paths.unwrap().relay_after_ms, 0);
    assert_eq!(f.paths.unwrap().relay_after_ms, 0);
    a.request_relay(b"payload").await.unwrap();
    assert_eq!(
        within(LONG, a.relayed()).await,
        Err(aborted(AbortReason::RelayRefused))
    );
    let s = mediator
        .wait_for(|s| s.aborts(AbortReason::RelayRefused) == 1)
        .await;
    assert_eq!(s.table.relays, 0);
}

#[tokio::test]
async fn beyond_max_relays_both_peers_get_relay_full() {
    let mut config = relay_config();
    config.mediator.relay.max_pairs = 1;
    let mediator = Mediator::start(config).await;
    let _first = relayed(&mediator, 50, [b"", b""]).await;
    let ([mut a, mut b], _) = matched_v2(&mediator, 60, RelayMode::Only, [Probe::None; 2]).await;
    a.request_relay(b"").await.unwrap();
    b.request_relay(b"").await.unwrap();
    let (ra, rb) = within(LONG, async { tokio::join!(a.relayed(), b.relayed()) }).await;
    assert_eq!(ra, Err(aborted(AbortReason::RelayFull)));
    assert_eq!(rb, Err(aborted(AbortReason::RelayFull)));
    let s = mediator.stats();
    assert_eq!((s.table.relays, s.table.relays_open), (1, 1));
    assert_eq!(s.aborts(AbortReason::RelayFull), 2);
}

#[tokio::test]
async fn a_partner_that_leaves_before_joining_is_gone() {
    let mediator = Mediator::start(relay_config()).await;
    let ([a, mut b], _) = matched_v2(&mediator, 70, RelayMode::Only, [Probe::None; 2]).await;
    b.request_relay(b"waiting").await.unwrap();
    drop(a);
    assert_eq!(
        within(LONG, b.relayed()).await,
        Err(aborted(AbortReason::PeerGone))
    );
    let s = mediator
        .wait_for(|s| s.aborts(AbortReason::PeerGone) == 1)
        .await;
    assert_eq!(s.table.relays, 0);
}

/// Both connections of a relay end with a reset (not a clean end of stream); the bytes each got.
async fn both_reset(a: &mut Client, b: &mut Client) -> [Vec<u8>; 2] {
    let (ea, eb) = within(LONG, async {
        tokio::join!(read_all(a.stream_mut()), read_all(b.stream_mut()))
    })
    .await;
    assert_eq!(ea.1, Some(io::ErrorKind::ConnectionReset));
    assert_eq!(eb.1, Some(io::ErrorKind::ConnectionReset));
    [ea.0, eb.0]
}

#[tokio::test]
async fn a_reset_on_one_side_resets_the_other() {
    let mediator = Mediator::start(relay_config()).await;
    let [a, mut b] = relayed(&mediator, 75, [b"", b""]).await;
    let a = a.into_stream();
    socket2::SockRef::from(&a)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(a);
    let (got, end) = within(LONG, read_all(b.stream_mut())).await;
    assert_eq!((got, end), (vec![], Some(io::ErrorKind::ConnectionReset)));
    let s = mediator.wait_for(|s| s.relays_ended_by("reset") == 1).await;
    assert_eq!(s.table.relays_open, 0);
}

#[tokio::test]
async fn an_idle_relay_is_reset() {
    let mut config = relay_config();
    config.mediator.relay.idle_timeout = ms(300);
    let mediator = Mediator::start(config).await;
    let [mut a, mut b] = relayed(&mediator, 80, [b"", b"x"]).await;
    let [got_a, got_b] = both_reset(&mut a, &mut b).await;
    assert_eq!((got_a, got_b), (b"x".to_vec(), vec![]));
    let s = mediator.wait_for(|s| s.relays_ended_by("idle") == 1).await;
    assert_eq!(s.table.relays_open, 0);
}

#[tokio::test]
async fn a_relay_past_its_byte_limit_is_reset() {
    const MAX: u64 = 64 * 1024;
    let mut config = relay_config();
    config.mediator.relay.max_bytes = MAX;
    let mediator = Mediator::start(config).await;
    let [mut a, mut b] = relayed(&mediator, 90, [b"", b""]).await;
    let data = pattern(3, 1 << 20);
    let (sa, sb) = (a.stream_mut(), b.stream_mut());
    let (mut ra, mut wa) = sa.split();
    // The writer may or may not see its last write fail: the kernel may have taken it all.
    let (_, (got_a, end_a), (got_b, end_b)) = within(LONG, async {
        tokio::join!(wa.write_all(&data), read_all(&mut ra), read_all(sb))
    })
    .await;
    assert_eq!(
        (end_a, end_b),
        (
            Some(io::ErrorKind::ConnectionReset),
            Some(io::ErrorKind::ConnectionReset)
        )
    );
    assert!(got_a.is_empty());
    assert!(got_b.len() as u64 <= MAX, "{} bytes relayed", got_b.len());
    assert_eq!(got_b, data[..got_b.len()]);
    let s = mediator.wait_for(|s| s.relays_ended_by("bytes") == 1).await;
    assert!(s.relayed_bytes <= MAX);
}

#[tokio::test]
async fn a_reader_that_does_not_read_stalls_the_writer() {
    const OFFERED: usize = 256 << 20;
    let mediator = Mediator::start(relay_config()).await;
    let [mut a, mut b] = relayed(&mediator, 100, [b"", b""]).await;
    // The peers' own socket buffers small, so that what is accepted is mostly the mediator's.
    socket2::SockRef::from(&*a.stream_mut())
        .set_send_buffer_size(64 * 1024)
        .unwrap();
    socket2::SockRef::from(&*b.stream_mut())
        .set_recv_buffer_size(64 * 1024)
        .unwrap();
    let chunk = pattern(4, 64 * 1024);
    let mut accepted = 0usize;
    while accepted < OFFERED {
        let write = a.stream_mut().write(&chunk[accepted % chunk.len()..]);
        match tokio::time::timeout(Duration::from_secs(1), write).await {
            Ok(Ok(n)) => accepted += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break, // stalled: back-pressure reached the writer
        }
    }
    eprintln!(
        "accepted {accepted}, relayed {}",
        mediator.stats().relayed_bytes
    );
    // Bound: the mediator's relay buffer and the kernel's socket buffers on its side (they grow to
    // a few MiB on loopback), not the offered 256 MiB.
    assert!(accepted < 48 << 20, "{accepted} bytes accepted");
    // Now b reads: everything accepted arrives, in order.
    a.stream_mut().shutdown().await.unwrap();
    let (got, end) = within(LONG, read_all(b.stream_mut())).await;
    assert_eq!(end, None);
    assert_eq!(got.len(), accepted);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, &x)| x == chunk[i % chunk.len()]));
}

#[tokio::test]
async fn relays_are_reset_when_the_shutdown_grace_ends() {
    let mut config = relay_config();
    config.shutdown_grace = Duration::from_millis(300);
    let mut mediator = Mediator::start(config).await;
    let [mut a, mut b] = relayed(&mediator, 110, [b"", b""]).await;
    mediator.shutdown();
    both_reset(&mut a, &mut b).await;
    mediator
        .wait_for(|s| s.relays_ended_by("shutdown") == 1)
        .await;
}
