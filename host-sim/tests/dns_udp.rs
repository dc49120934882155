//! `p2psc::net` DNS and UDP end to end: stacks on an in-memory LAN, virtual time, and a small DNS
//! responder on a UDP socket of another simulated host.

use std::cell::RefCell;
use std::rc::Rc;

use embassy_time::{Duration, Instant};
use embedded_io_async::{Read, Write};
use host_sim::clock;
use host_sim::exec::{join, Executor};
use host_sim::link::Lan;
use host_sim::mediator::{self, MediatorNode};
use p2psc::connector::{connect_by_name, ConnectResources, MediatorName, Request};
use p2psc::identity::Keypair;
use p2psc::net::dns::{DnsError, DnsQueryType};
use p2psc::net::udp::{PacketMetadata, SendError, UdpSocket};
use p2psc::net::{
    self, Config, ConfigV4, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr, Stack, StackResources,
    StaticConfigV4,
};
use p2psc::proto::channel::MAX_RECORD_LEN;
use p2psc::proto::MediatorConfig;
use p2psc::rng::Drbg;

const LATENCY: Duration = Duration::from_millis(5);
const DNS_SERVER: u8 = 53;
const MEDIATOR_NAME: &str = "mediator.example";
/// Where `MEDIATOR_NAME` points: host 1, where `connect_by_name` finds a mediator node.
const MEDIATOR_ADDR: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const MEDIATOR_PORT: u16 = 7777;

fn addr(host: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, host)
}

/// Stacks for hosts `hosts` (10.0.0.`host`), each asking 10.0.0.53 for names, and an executor
/// running their runners.
fn setup(hosts: &[u8]) -> (Lan, Vec<Stack<'static>>, Executor<'static>) {
    clock::reset();
    let lan = Lan::new(LATENCY);
    let mut ex = Executor::new();
    let stacks = hosts
        .iter()
        .map(|&host| {
            let config = Config::ipv4_static(StaticConfigV4 {
                address: Ipv4Cidr::new(addr(host), 24),
                gateway: None,
                dns_servers: [addr(DNS_SERVER)].into_iter().collect(),
            });
            let resources = Box::leak(Box::new(StackResources::<8>::new()));
            let port = lan.port([0x02, 0, 0, 0, 0, host]);
            let (stack, mut runner) = net::new(port, config, resources, u64::from(host));
            ex.spawn(async move { runner.run().await });
            stack
        })
        .collect();
    (lan, stacks, ex)
}

fn udp_socket(stack: Stack<'static>) -> UdpSocket<'static> {
    let meta = || Box::leak(vec![PacketMetadata::EMPTY; 4].into_boxed_slice());
    let buffer = || Box::leak(vec![0u8; 1024].into_boxed_slice());
    UdpSocket::new(stack, meta(), buffer(), meta(), buffer())
}

fn socket_count(stack: Stack<'_>) -> usize {
    stack.with_mut(|_, sockets| sockets.iter().count())
}

/// How the responder answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `MEDIATOR_NAME` has `MEDIATOR_ADDR`; every other name is NXDOMAIN.
    Records,
    /// Nothing at all.
    Silent,
}

/// The question's name as dotted text, and where the question ends (after QTYPE and QCLASS).
fn parse_question(query: &[u8]) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(query.get(at..at + len)?).ok()?);
        at += len;
    }
    Some((name, at + 4))
}

/// The response to `query`: the A record of `MEDIATOR_NAME`, or NXDOMAIN.
fn dns_response(query: &[u8]) -> Option<Vec<u8>> {
    let (name, question_end) = parse_question(query)?;
    let found = name == MEDIATOR_NAME;
    let mut response = query[..2].to_vec(); // ID
    let rcode = if found { 0 } else { 3 };
    response.extend_from_slice(&[0x81, 0x80 | rcode]); // QR, RD, RA, RCODE
    response.extend_from_slice(&[0, 1, 0, u8::from(found), 0, 0, 0, 0]);
    response.extend_from_slice(&query[12..question_end]);
    if found {
        // Name by pointer to the question, type A, class IN, TTL 60, 4 bytes of address.
        response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        response.extend_from_slice(&MEDIATOR_ADDR.octets());
    }
    Some(response)
}

/// A DNS server on port 53 of `stack`, answering as `answer` says, forever.
async fn dns_responder(stack: Stack<'static>, answer: Answer) {
    let mut socket = udp_socket(stack);
    socket.bind(53).unwrap();
    let mut buf = [0; 512];
    loop {
        let (n, meta) = socket.recv_from(&mut buf).await.unwrap();
        if let (Answer::Records, Some(response)) = (answer, dns_response(&buf[..n])) {
            socket.send_to(&response, meta.endpoint).await.unwrap();
        }
    }
}

#[test]
fn dns_query_gets_the_a_record_from_a_responder_on_another_host() {
    let (_lan, stacks, mut ex) = setup(&[1, DNS_SERVER]);
    let (client, server) = (stacks[0], stacks[1]);
    ex.spawn(dns_responder(server, Answer::Records));
    ex.run(async {
        let addresses = client
            .dns_query(MEDIATOR_NAME, DnsQueryType::A)
            .await
            .unwrap();
        assert_eq!(addresses.as_slice(), [IpAddress::Ipv4(MEDIATOR_ADDR)]);
        // Again, with a trailing dot: the query slot was freed.
        assert_eq!(
            socket_count(client),
            0,
            "the DNS socket lives as long as its query"
        );
        // Two at once: the second waits for the first, then runs; a trailing dot is the same name.
        let (first, second) = join(
            client.dns_query(MEDIATOR_NAME, DnsQueryType::A),
            client.dns_query("mediator.example.", DnsQueryType::A),
        )
        .await;
        assert_eq!(first.unwrap().as_slice(), [IpAddress::Ipv4(MEDIATOR_ADDR)]);
        assert_eq!(second.unwrap().as_slice(), [IpAddress::Ipv4(MEDIATOR_ADDR)]);
        assert_eq!(socket_count(client), 0);
    });
}

#[test]
fn dns_query_asks_the_servers_of_the_current_config() {
    let (_lan, stacks, mut ex) = setup(&[1, DNS_SERVER]);
    ex.spawn(dns_responder(stacks[1], Answer::Records));
    let client = stacks[0];
    let with_dns_server = |server: u8| {
        ConfigV4::Static(StaticConfigV4 {
            address: Ipv4Cidr::new(addr(1), 24),
            gateway: None,
            dns_servers: [addr(server)].into_iter().collect(),
        })
    };
    ex.run(async {
        client.set_config_v4(with_dns_server(99)); // nobody there
        let short = Duration::from_secs(2);
        let nobody = client.dns_query_with_timeout(MEDIATOR_NAME, DnsQueryType::A, short);
        assert_eq!(nobody.await, Err(DnsError::TimedOut));
        client.set_config_v4(with_dns_server(DNS_SERVER));
        let found = client.dns_query(MEDIATOR_NAME, DnsQueryType::A).await;
        assert_eq!(found.unwrap().as_slice(), [IpAddress::Ipv4(MEDIATOR_ADDR)]);
    });
}

#[test]
fn dns_query_of_an_unknown_name_fails_on_nxdomain_at_once() {
    let (_lan, stacks, mut ex) = setup(&[1, DNS_SERVER]);
    ex.spawn(dns_responder(stacks[1], Answer::Records));
    ex.run(async {
        let start = Instant::now();
        let result = stacks[0].dns_query("nobody.example", DnsQueryType::A).await;
        assert_eq!(result, Err(DnsError::Failed));
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "no retransmission"
        );
    });
}

#[test]
fn dns_query_to_a_silent_server_times_out_and_frees_its_slot() {
    let (_lan, stacks, mut ex) = setup(&[1, DNS_SERVER]);
    ex.spawn(dns_responder(stacks[1], Answer::Silent));
    ex.run(async {
        let start = Instant::now();
        let result = stacks[0].dns_query(MEDIATOR_NAME, DnsQueryType::A).await;
        assert_eq!(result, Err(DnsError::TimedOut));
        assert_eq!(start.elapsed(), net::dns::DNS_QUERY_TIMEOUT);
        let short = Duration::from_secs(2);
        let again = stacks[0]
            .dns_query_with_timeout(MEDIATOR_NAME, DnsQueryType::A, short)
            .await;
        assert_eq!(
            again,
            Err(DnsError::TimedOut),
            "the slot was cancelled and reused"
        );
    });
}

#[test]
fn dns_query_rejects_bad_names_and_passes_address_literals() {
    let (_lan, stacks, mut ex) = setup(&[1]);
    ex.run(async {
        let q = |name| stacks[0].dns_query(name, DnsQueryType::A);
        assert_eq!(q("").await, Err(DnsError::InvalidName));
        let long = "abc.".repeat(80);
        assert_eq!(q(&long).await, Err(DnsError::NameTooLong));
        let literal = q("192.0.2.1").await.unwrap();
        assert_eq!(literal.as_slice(), [IpAddress::v4(192, 0, 2, 1)]);
    });
}

#[test]
fn dns_query_on_a_full_socket_set_is_an_error_not_a_panic() {
    let (_lan, stacks, mut ex) = setup(&[1, DNS_SERVER]);
    ex.spawn(dns_responder(stacks[1], Answer::Records));
    let taken: Vec<_> = (0..8).map(|_| udp_socket(stacks[0])).collect();
    ex.run(async {
        let result = stacks[0].dns_query(MEDIATOR_NAME, DnsQueryType::A).await;
        assert_eq!(result, Err(DnsError::SocketSetFull));
    });
    drop(taken);
    assert_eq!(socket_count(stacks[0]), 0);
}

#[test]
fn udp_echo_between_two_stacks() {
    let (_lan, stacks, mut ex) = setup(&[1, 2]);
    ex.run(async {
        let mut server = udp_socket(stacks[0]);
        server.bind(7).unwrap();
        let mut client = udp_socket(stacks[1]);
        assert_eq!(
            client.send_to(b"x", (addr(1), 7)).await,
            Err(SendError::SocketNotBound)
        );
        client.bind(0).unwrap();
        let client_port = client.endpoint().port;
        assert_ne!(client_port, 0, "an ephemeral port");
        let echo = async {
            let mut buf = [0; 64];
            let (n, meta) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(meta.endpoint, IpEndpoint::new(addr(2).into(), client_port));
            server.send_to(&buf[..n], meta.endpoint).await.unwrap();
        };
        let ask = async {
            client
                .send_to(b"ping over udp", (addr(1), 7))
                .await
                .unwrap();
            let mut buf = [0; 64];
            let (n, meta) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"ping over udp");
            assert_eq!(meta.endpoint, IpEndpoint::new(addr(1).into(), 7));
        };
        join(echo, ask).await;
        let too_large = [0; 2000];
        assert_eq!(
            client.send_to(&too_large, (addr(1), 7)).await,
            Err(SendError::PacketTooLarge)
        );
        client.close();
        assert!(!client.is_open());
    });
    assert_eq!(
        socket_count(stacks[0]),
        0,
        "dropped UDP sockets leave the set"
    );
}

/// One candidate socket with 2 KiB buffers, whole records both ways.
type Resources = ConnectResources<2048, 2048, 1, MAX_RECORD_LEN>;

fn resources() -> &'static mut Resources {
    Box::leak(Box::new(Resources::new()))
}

/// A mediator node on host 1 (`MEDIATOR_NAME`), the DNS responder on host 53, peers on 2 and 3.
fn mediator_world() -> (
    Vec<Stack<'static>>,
    Executor<'static>,
    Rc<RefCell<MediatorNode>>,
) {
    let (_lan, stacks, mut ex) = setup(&[1, DNS_SERVER, 2, 3]);
    let mstack = stacks[0];
    let node = Rc::new(RefCell::new(mstack.with_mut(|_, sockets| {
        MediatorNode::new(
            MEDIATOR_PORT,
            4,
            MediatorConfig::default(),
            [9; 32],
            sockets,
        )
    })));
    let served = node.clone();
    ex.spawn(async move { mediator::serve(mstack, &served, |_| {}).await });
    ex.spawn(dns_responder(stacks[1], Answer::Records));
    (stacks[2..].to_vec(), ex, node)
}

#[test]
fn connect_by_name_resolves_the_mediator_and_reaches_the_peer() {
    let (peers, mut ex, node) = mediator_world();
    let (alice, bob) = (Keypair::from_seed(&[1; 32]), Keypair::from_seed(&[2; 32]));
    let by_name = MediatorName::new(MEDIATOR_NAME, MEDIATOR_PORT);
    let (key_a, key_b) = ex.run(async {
        let fa = async {
            let request = Request::with_mediator_names(&alice, bob.public_key(), [by_name]);
            let mut conn =
                connect_by_name(peers[0], resources(), &request, &mut Drbg::new([11; 32]))
                    .await
                    .expect("alice connects");
            conn.socket.write_all(b"hello by name").await.unwrap();
            conn.socket.flush().await.unwrap();
            conn.session_key
        };
        let fb = async {
            let request = Request::with_mediator_names(&bob, alice.public_key(), by_name);
            let mut conn =
                connect_by_name(peers[1], resources(), &request, &mut Drbg::new([22; 32]))
                    .await
                    .expect("bob connects");
            let mut msg = [0u8; 13];
            conn.socket.read_exact(&mut msg).await.unwrap();
            assert_eq!(&msg, b"hello by name");
            conn.session_key
        };
        join(fa, fb).await
    });
    assert_eq!(key_a, key_b);
    assert_eq!(node.borrow().table().stats().matches, 1);
}

#[test]
fn connect_by_name_with_an_unknown_name_is_a_typed_error() {
    let (peers, mut ex, node) = mediator_world();
    let alice = Keypair::from_seed(&[1; 32]);
    let bob = Keypair::from_seed(&[2; 32]).public_key();
    let unknown = MediatorName::new("nobody.example", MEDIATOR_PORT);
    let result = ex.run(async {
        let request = Request::with_mediator_names(&alice, bob, unknown);
        connect_by_name(peers[0], resources(), &request, &mut Drbg::new([11; 32]))
            .await
            .err()
    });
    assert_eq!(result, Some(p2psc::Error::MediatorNameUnresolved));
    assert_eq!(socket_count(peers[0]), 0, "nothing left behind");
    assert_eq!(node.borrow().table().stats().matches, 0);
}
