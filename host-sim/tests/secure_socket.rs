//! `p2psc::net::SecureSocket` end to end: two smoltcp stacks on an in-memory LAN, virtual time.

use embassy_time::Duration;
use embedded_io_async::{Read, Write};
use host_sim::clock;
use host_sim::exec::{join, Executor};
use host_sim::link::Lan;
use p2psc::net::secure::Error;
use p2psc::net::tcp::{State, TcpSocket};
use p2psc::net::{
    self, Config, Ipv4Address, Ipv4Cidr, SecureSocket, Stack, StackResources, StaticConfigV4,
};
use p2psc::proto::channel::{ChannelError, ChannelKeys, Opener, Sealer, MAX_RECORD_LEN, OVERHEAD};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;

const SESSION: SessionKey = SessionKey([0x42; 32]);

fn addr(host: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, host)
}

/// Two stacks (10.0.0.1, 10.0.0.2) on one LAN, their runners on the executor. Leaked: tests are short.
fn setup() -> (Lan, Stack<'static>, Stack<'static>, Executor<'static>) {
    clock::reset();
    let lan = Lan::new(Duration::from_millis(5));
    let mut ex = Executor::new();
    let mut stacks = (1..=2u8).map(|host| {
        let resources = Box::leak(Box::new(StackResources::<4>::new()));
        let config = Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(addr(host), 24),
            gateway: None,
            dns_servers: Default::default(),
        });
        let (stack, mut runner) = net::new(
            lan.port([0x02, 0, 0, 0, 0, host]),
            config,
            resources,
            u64::from(host),
        );
        ex.spawn(async move { runner.run().await });
        stack
    });
    let (a, b) = (stacks.next().unwrap(), stacks.next().unwrap());
    (lan, a, b, ex)
}

fn buffer(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0; len].into_boxed_slice())
}

fn socket(stack: Stack<'static>) -> TcpSocket<'static> {
    TcpSocket::new(stack, buffer(2048), buffer(2048))
}

/// A connected pair of plain sockets: (10.0.0.1 → 10.0.0.2:80, accepted at 10.0.0.2).
async fn connected(
    a: Stack<'static>,
    b: Stack<'static>,
) -> (TcpSocket<'static>, TcpSocket<'static>) {
    let (mut client, mut server) = (socket(a), socket(b));
    let (accepted, connected) = join(server.accept(80), client.connect((addr(2), 80))).await;
    accepted.unwrap();
    connected.unwrap();
    (client, server)
}

fn secure(socket: TcpSocket<'static>, role: Role) -> SecureSocket<'static, 'static> {
    SecureSocket::new(
        socket,
        &SESSION,
        role,
        buffer(MAX_RECORD_LEN),
        buffer(MAX_RECORD_LEN),
    )
}

/// Read until the end of stream; the error if the stream fails instead.
async fn read_to_end(s: &mut SecureSocket<'_, '_>) -> (Vec<u8>, Result<(), Error>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 700];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return (got, Err(e)),
        }
    }
}

#[test]
fn echo_both_ways_then_clean_close() {
    let (_lan, a, b, mut ex) = setup();
    ex.run(async {
        let (client, server) = connected(a, b).await;
        let (mut leader, mut follower) =
            (secure(client, Role::Leader), secure(server, Role::Follower));
        // Several records' worth, through 2 KiB TCP buffers.
        let message: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let leader_side = async {
            leader.write_all(&message).await.unwrap();
            leader.flush().await.unwrap();
            leader.close().await.unwrap();
            assert!(
                leader.write(b"late").await.is_err(),
                "nothing after our end of stream"
            );
            read_to_end(&mut leader).await
        };
        let follower_side = async {
            let (got, end) = read_to_end(&mut follower).await;
            assert_eq!(end, Ok(()));
            follower.write_all(&got).await.unwrap();
            follower.close().await.unwrap();
            got
        };
        let ((echoed, end), got) = join(leader_side, follower_side).await;
        assert_eq!(got, message);
        assert_eq!(end, Ok(()));
        assert_eq!(echoed, message);
        // Read again after the end: still the end.
        assert_eq!(leader.read(&mut [0u8; 4]).await, Ok(0));
    });
}

#[test]
fn the_wire_carries_records_not_plaintext() {
    let (_lan, a, b, mut ex) = setup();
    ex.run(async {
        let (client, mut raw) = connected(a, b).await;
        let mut leader = secure(client, Role::Leader);
        let secret = b"attack at dawn, bring snacks";
        join(
            async {
                leader.write_all(secret).await.unwrap();
                leader.close().await.unwrap();
            },
            async {
                let mut wire = vec![0u8; secret.len() + 2 * OVERHEAD];
                raw.read_exact(&mut wire).await.unwrap();
                assert!(
                    wire.windows(6).all(|w| w != b"attack"),
                    "plaintext on the wire"
                );
                // It is exactly one data record and the end record, which the follower opens.
                let mut rx = [0u8; MAX_RECORD_LEN];
                let keys = ChannelKeys::derive(&SESSION, Role::Follower);
                let mut opener = Opener::new(keys.receive, &mut rx);
                assert_eq!(opener.feed(&wire), Ok(secret.len() + OVERHEAD));
                assert_eq!(opener.plaintext(), secret);
                opener.consume(secret.len());
                assert_eq!(opener.feed(&wire[secret.len() + OVERHEAD..]), Ok(OVERHEAD));
                assert!(opener.is_ended());
            },
        )
        .await;
    });
}

#[test]
fn a_stream_cut_before_its_end_record_is_an_error() {
    let (_lan, a, b, mut ex) = setup();
    ex.run(async {
        let (client, mut raw) = connected(a, b).await;
        let mut leader = secure(client, Role::Leader);
        join(
            async {
                // The follower's authentic data, then a FIN without an end-of-stream record.
                let mut sealer = Sealer::new(ChannelKeys::derive(&SESSION, Role::Follower).send);
                let mut record = [0u8; 64];
                let sealed = sealer.seal(b"partial", &mut record).unwrap();
                raw.write_all(&record[..sealed.len]).await.unwrap();
                raw.close();
                raw.flush().await.unwrap();
            },
            async {
                let (got, end) = read_to_end(&mut leader).await;
                assert_eq!(
                    got, b"partial",
                    "authentic records before the cut are delivered"
                );
                assert_eq!(end, Err(Error::Channel(ChannelError::Truncated)));
            },
        )
        .await;
        assert_eq!(
            leader.socket().state(),
            State::Closed,
            "a channel error aborts the connection"
        );
    });
}

#[test]
fn a_forged_record_aborts_the_connection() {
    let (_lan, a, b, mut ex) = setup();
    ex.run(async {
        let (client, mut raw) = connected(a, b).await;
        let mut leader = secure(client, Role::Leader);
        // The leader's own key: a reflected or forged record.
        let mut sealer = Sealer::new(ChannelKeys::derive(&SESSION, Role::Leader).send);
        let mut record = [0u8; 64];
        let sealed = sealer.seal(b"forged", &mut record).unwrap();
        raw.write_all(&record[..sealed.len]).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            leader.read(&mut buf).await,
            Err(Error::Channel(ChannelError::BadTag))
        );
        assert_eq!(
            leader.read(&mut buf).await,
            Err(Error::Channel(ChannelError::BadTag))
        );
        // The RST reaches the other end.
        assert!(raw.read(&mut buf).await.is_err());
    });
}
