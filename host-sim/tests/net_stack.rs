//! `p2psc::net` end to end: stacks on an in-memory LAN, virtual time, deterministic executor.

use core::task::Poll;
use std::cell::Cell;

use embassy_time::{Duration, Instant};
use embedded_io_async::{Read, Write};
use host_sim::clock;
use host_sim::exec::{join, poll_once, Executor};
use host_sim::link::{Lan, Port, TcpSegment};
use p2psc::net::tcp::{AcceptError, ConnectError, Error, State, TcpSocket};
use p2psc::net::{
    self, Config, ConfigV4, IpEndpoint, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources,
    StaticConfigV4,
};
use smoltcp::socket::tcp;

const LATENCY: Duration = Duration::from_millis(5);

fn addr(host: u8) -> Ipv4Address {
    Ipv4Address::new(10, 0, 0, host)
}

fn static_config(host: u8) -> Config {
    Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr(host), 24),
        gateway: None,
        dns_servers: Default::default(),
    })
}

/// A stack for host `host` (10.0.0.`host`) on `lan`. Resources are leaked: each test is short.
fn host_with(
    lan: &Lan,
    host: u8,
    config: Config,
    seed: u64,
) -> (Stack<'static>, Runner<'static, Port>) {
    let resources = Box::leak(Box::new(StackResources::<8>::new()));
    net::new(lan.port([0x02, 0, 0, 0, 0, host]), config, resources, seed)
}

fn host(lan: &Lan, host: u8) -> (Stack<'static>, Runner<'static, Port>) {
    host_with(lan, host, static_config(host), u64::from(host))
}

/// A clock reset, a LAN and an executor running the runners of `hosts` stacks (10.0.0.1…).
fn setup(hosts: u8) -> (Lan, Vec<Stack<'static>>, Executor<'static>) {
    clock::reset();
    let lan = Lan::new(LATENCY);
    let mut ex = Executor::new();
    let stacks = (1..=hosts)
        .map(|h| {
            let (stack, mut runner) = host(&lan, h);
            ex.spawn(async move { runner.run().await });
            stack
        })
        .collect();
    (lan, stacks, ex)
}

fn buffers() -> (&'static mut [u8], &'static mut [u8]) {
    (
        Box::leak(vec![0; 2048].into_boxed_slice()),
        Box::leak(vec![0; 2048].into_boxed_slice()),
    )
}

fn socket(stack: Stack<'static>) -> TcpSocket<'static> {
    let (rx, tx) = buffers();
    TcpSocket::new(stack, rx, tx)
}

fn socket_count(stack: Stack<'_>) -> usize {
    stack.with_mut(|_, sockets| sockets.iter().count())
}

async fn read_exact(s: &mut TcpSocket<'_>, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    Read::read_exact(s, &mut buf).await.expect("read_exact");
    buf
}

/// Read a message, send it back, return it.
async fn echo_once(s: &mut TcpSocket<'_>, n: usize) -> Vec<u8> {
    let msg = read_exact(s, n).await;
    s.write_all(&msg).await.unwrap();
    s.flush().await.unwrap();
    msg
}

/// Send `msg`, expect it back.
async fn ping(s: &mut TcpSocket<'_>, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(read_exact(s, msg.len()).await, msg);
}

fn syns(log: &[TcpSegment]) -> Vec<TcpSegment> {
    log.iter().copied().filter(|s| s.syn).collect()
}

#[test]
fn connect_accept_echo_both_ways() {
    let (_lan, stacks, mut ex) = setup(2);
    let (a, b) = (stacks[0], stacks[1]);
    ex.run(async {
        a.wait_config_up().await;
        assert!(a.is_config_up());
        assert_eq!(a.config_v4().unwrap().address, Ipv4Cidr::new(addr(1), 24));
        let mut server = socket(a);
        let mut client = socket(b);
        let server_side = async {
            server.accept(1234).await.unwrap();
            assert_eq!(
                server.local_endpoint(),
                Some(IpEndpoint::new(addr(1).into(), 1234))
            );
            assert_eq!(echo_once(&mut server, 16).await, b"hello from the c");
            ping(&mut server, b"and hello from the server").await;
            // The client closes: EOF, then close our side.
            let mut buf = [0; 8];
            assert_eq!(server.read(&mut buf).await, Ok(0));
            server.close();
            server.flush().await.unwrap();
        };
        let client_side = async {
            client.connect((addr(1), 1234)).await.unwrap();
            assert_eq!(client.state(), State::Established);
            assert_eq!(
                client.remote_endpoint(),
                Some(IpEndpoint::new(addr(1).into(), 1234))
            );
            ping(&mut client, b"hello from the c").await;
            assert_eq!(
                echo_once(&mut client, 25).await,
                b"and hello from the server"
            );
            client.close();
            client.flush().await.unwrap();
            let mut buf = [0; 8];
            assert_eq!(client.read(&mut buf).await, Ok(0));
        };
        join(server_side, client_side).await;
        assert!(!client.may_send() && !client.may_recv());
    });
}

#[test]
fn simultaneous_open_with_connect_from() {
    let (lan, stacks, mut ex) = setup(2);
    let (a, b) = (stacks[0], stacks[1]);
    ex.run(async {
        let mut sa = socket(a);
        let mut sb = socket(b);
        // Neither side listens: each connects to the other's fixed port from its own.
        let (ra, rb) = join(
            sa.connect_from((addr(2), 4002), 4001),
            sb.connect_from((addr(1), 4001), 4002),
        )
        .await;
        assert_eq!(ra, Ok(()));
        assert_eq!(rb, Ok(()));
        assert_eq!(
            sa.local_endpoint(),
            Some(IpEndpoint::new(addr(1).into(), 4001))
        );
        assert_eq!(
            sb.remote_endpoint(),
            Some(IpEndpoint::new(addr(1).into(), 4001))
        );
        join(ping(&mut sa, b"a to b"), async {
            echo_once(&mut sb, 6).await;
        })
        .await;
        join(ping(&mut sb, b"b to a"), async {
            echo_once(&mut sa, 6).await;
        })
        .await;
    });
    // Both bare SYNs went out before either side saw the other's: a crossed open, answered by
    // a SYN|ACK from each side, and no RST anywhere.
    let log = lan.tcp_log();
    let syns = syns(&log);
    let bare: Vec<_> = syns.iter().filter(|s| !s.ack).collect();
    assert_eq!(bare.len(), 2, "{syns:?}");
    assert_ne!(bare[0].src, bare[1].src);
    assert!(
        bare[1].at < bare[0].at + LATENCY,
        "the SYNs must cross: {bare:?}"
    );
    assert_eq!(syns.iter().filter(|s| s.ack).count(), 2, "{syns:?}");
    assert!(log.iter().all(|s| !s.rst), "{log:?}");
}

#[test]
fn two_connections_from_one_local_port() {
    let (_lan, stacks, mut ex) = setup(3);
    let (a, b, c) = (stacks[0], stacks[1], stacks[2]);
    ex.run(async {
        let mut to_b = socket(a);
        let mut to_c = socket(a);
        let mut at_b = socket(b);
        let mut at_c = socket(c);
        let accepts = join(at_b.accept(80), at_c.accept(80));
        let connects = async {
            to_b.connect_from((addr(2), 80), 5000).await.unwrap();
            // Same local port, other remote: a second, independent connection.
            to_c.connect_from((addr(3), 80), 5000).await.unwrap();
        };
        let (accepted, ()) = join(accepts, connects).await;
        assert_eq!(accepted, (Ok(()), Ok(())));
        assert_eq!(to_b.local_endpoint().unwrap().port, 5000);
        assert_eq!(to_c.local_endpoint().unwrap().port, 5000);
        assert_eq!(
            at_b.remote_endpoint(),
            Some(IpEndpoint::new(addr(1).into(), 5000))
        );
        assert_eq!(
            at_c.remote_endpoint(),
            Some(IpEndpoint::new(addr(1).into(), 5000))
        );
        // Interleaved traffic on both stays apart.
        let ((), (got_b, got_c)) = join(
            async {
                join(ping(&mut to_b, b"for B"), ping(&mut to_c, b"for C!")).await;
            },
            join(echo_once(&mut at_b, 5), echo_once(&mut at_c, 6)),
        )
        .await;
        assert_eq!(got_b, b"for B");
        assert_eq!(got_c, b"for C!");
        assert_eq!(to_b.state(), State::Established);
        assert_eq!(to_c.state(), State::Established);
    });
}

#[test]
fn ephemeral_port_skips_ports_in_use() {
    clock::reset();
    let lan = Lan::new(LATENCY);
    let mut ex = Executor::new();
    // This seed makes 5000 the first ephemeral port (seed % 64510 + 1025).
    let (a, mut runner_a) = host_with(&lan, 1, static_config(1), 5000 - 1025);
    let (b, mut runner_b) = host(&lan, 2);
    ex.spawn(async move { runner_a.run().await });
    ex.spawn(async move { runner_b.run().await });
    ex.run(async {
        let mut punched = socket(a);
        let mut other = socket(a);
        let mut at_b = [socket(b), socket(b)];
        let [first, second] = &mut at_b;
        let (accepted, ()) = join(join(first.accept(80), second.accept(80)), async {
            punched.connect_from((addr(2), 80), 5000).await.unwrap();
            // Same remote endpoint: reusing 5000 would collide with `punched`'s 4-tuple.
            other.connect((addr(2), 80)).await.unwrap();
        })
        .await;
        assert_eq!(accepted, (Ok(()), Ok(())));
        assert_eq!(other.local_endpoint().unwrap().port, 5001);
        // Whichever listener accepted `other` echoes for it.
        let peer = at_b
            .iter()
            .position(|s| s.remote_endpoint().unwrap().port == 5001)
            .unwrap();
        join(ping(&mut other, b"still separate"), async {
            echo_once(&mut at_b[peer], 14).await;
        })
        .await;
        assert_eq!(punched.state(), State::Established);
    });
}

#[test]
fn connect_errors_are_typed() {
    let (lan, stacks, mut ex) = setup(2);
    let (a, _b) = (stacks[0], stacks[1]);
    ex.run(async {
        // Nobody listens on 10.0.0.2:9: its stack answers the SYN with RST.
        let mut s = socket(a);
        assert_eq!(
            s.connect((addr(2), 9)).await,
            Err(ConnectError::ConnectionReset)
        );
        assert_eq!(s.state(), State::Closed);

        // The socket is reusable after a failure.
        assert_eq!(
            s.connect((Ipv4Address::UNSPECIFIED, 9)).await,
            Err(ConnectError::NoRoute)
        );
        assert_eq!(s.connect((addr(2), 0)).await, Err(ConnectError::NoRoute));

        // No host at 10.0.0.99: ARP is never answered, no SYN can even be sent; the socket's
        // timeout still bounds the attempt.
        s.set_timeout(Some(Duration::from_secs(3)));
        let start = Instant::now();
        assert_eq!(s.connect((addr(99), 80)).await, Err(ConnectError::TimedOut));
        let took = Instant::now() - start;
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_millis(3100),
            "{took:?}"
        );
        assert_eq!(s.state(), State::Closed);

        // A socket that is listening cannot connect, nor listen on port 0.
        let mut listener = socket(a);
        assert_eq!(listener.accept(0).await, Err(AcceptError::InvalidPort));
        let mut pending = core::pin::pin!(listener.accept(7));
        assert!(poll_once(&mut pending).await.is_pending());
    });
    let log = lan.tcp_log();
    assert_eq!(
        syns(&log).len(),
        1,
        "one SYN to port 9, none to the absent host: {log:?}"
    );
    assert!(log.iter().any(|s| s.rst && s.src == (addr(2), 9)));
}

#[test]
fn second_connect_on_busy_socket_is_invalid_state() {
    let (_lan, stacks, mut ex) = setup(2);
    let (a, b) = (stacks[0], stacks[1]);
    ex.run(async {
        let mut server = socket(b);
        let mut client = socket(a);
        let (r, ()) = join(server.accept(80), async {
            client.connect((addr(2), 80)).await.unwrap();
        })
        .await;
        r.unwrap();
        assert_eq!(
            client.connect((addr(2), 81)).await,
            Err(ConnectError::InvalidState)
        );
        assert_eq!(server.accept(80).await, Err(AcceptError::InvalidState));
    });
}

#[test]
fn abort_close_and_drop_leave_no_socket_behind() {
    let (lan, stacks, mut ex) = setup(2);
    let (a, b) = (stacks[0], stacks[1]);
    ex.run(async {
        assert_eq!((socket_count(a), socket_count(b)), (0, 0));

        // Abort: the peer sees a reset.
        {
            let mut server = socket(b);
            let mut client = socket(a);
            assert_eq!((socket_count(a), socket_count(b)), (1, 1));
            let (r, ()) = join(server.accept(80), async {
                client.connect((addr(2), 80)).await.unwrap();
            })
            .await;
            r.unwrap();
            client.abort();
            client.flush().await.unwrap();
            assert_eq!(client.state(), State::Closed);
            let mut buf = [0; 4];
            assert_eq!(server.read(&mut buf).await, Err(Error::ConnectionReset));
            assert_eq!(server.write(b"late").await, Err(Error::ConnectionReset));
        }
        assert_eq!((socket_count(a), socket_count(b)), (0, 0));

        // Close on both sides: FIN, FIN, and the active closer ends in TimeWait.
        {
            let mut server = socket(b);
            let mut client = socket(a);
            let (r, ()) = join(server.accept(80), async {
                client.connect((addr(2), 80)).await.unwrap();
            })
            .await;
            r.unwrap();
            client.close();
            client.flush().await.unwrap();
            let mut buf = [0; 4];
            assert_eq!(server.read(&mut buf).await, Ok(0));
            server.close();
            server.flush().await.unwrap();
            assert_eq!(client.read(&mut buf).await, Ok(0));
            assert_eq!(client.state(), State::TimeWait);
            assert_eq!(server.state(), State::Closed);
        }
        assert_eq!((socket_count(a), socket_count(b)), (0, 0));

        // Dropped while established, and dropped while connecting.
        {
            let mut server = socket(b);
            let mut client = socket(a);
            let (r, ()) = join(server.accept(80), async {
                client.connect((addr(2), 80)).await.unwrap();
            })
            .await;
            r.unwrap();
            let mut connecting = socket(a);
            let mut attempt = core::pin::pin!(connecting.connect((addr(2), 81)));
            assert!(poll_once(&mut attempt).await.is_pending());
            assert_eq!(socket_count(a), 2);
        }
        assert_eq!((socket_count(a), socket_count(b)), (0, 0));
    });
    assert!(lan.tcp_log().iter().any(|s| s.rst && s.src.0 == addr(1)));
}

#[test]
fn state_machine_drives_its_own_socket_through_poll_with() {
    let (_lan, stacks, mut ex) = setup(2);
    let (a, b) = (stacks[0], stacks[1]);
    ex.run(async {
        let mut server = socket(b);
        // Let both runners go idle first, so that only `with_mut` can wake A's.
        embassy_time::Timer::after(Duration::from_millis(10)).await;
        // What p2psc's connector does: create and connect a smoltcp socket in the set itself.
        let handle = a.with_mut(|iface, sockets| {
            let (rx, tx) = buffers();
            let mut s = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
            s.connect(iface.context(), (addr(2), 80), 6000).unwrap();
            sockets.add(s)
        });
        assert_eq!(socket_count(a), 1);
        let calls = Cell::new(0);
        let (accepted, state) = join(
            server.accept(80),
            a.poll_with(|cx, _iface, sockets| {
                calls.set(calls.get() + 1);
                let s = sockets.get_mut::<tcp::Socket>(handle);
                match s.state() {
                    tcp::State::SynSent | tcp::State::SynReceived => {
                        s.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    state => Poll::Ready(state),
                }
            }),
        )
        .await;
        accepted.unwrap();
        assert_eq!(state, tcp::State::Established);
        // Called at the start and when the socket changed, not in a loop.
        assert!(calls.get() <= 3, "closure called {} times", calls.get());

        // Hand the connection to the application as an ordinary socket.
        let mut sock = TcpSocket::from_handle(a, handle);
        assert_eq!(sock.local_endpoint().unwrap().port, 6000);
        join(ping(&mut sock, b"adopted"), async {
            echo_once(&mut server, 7).await;
        })
        .await;
        drop(sock);
        assert_eq!(socket_count(a), 0);
    });
}

#[test]
fn poll_with_wakes_at_the_machines_deadline() {
    let (_lan, stacks, mut ex) = setup(1);
    let a = stacks[0];
    ex.run(async {
        let deadline = net::now() + smoltcp::time::Duration::from_millis(2500);
        let calls = Cell::new(0);
        let woke_at = a
            .poll_with(|cx, _, _| {
                calls.set(calls.get() + 1);
                let now = net::now();
                if now >= deadline {
                    Poll::Ready(now)
                } else {
                    net::wake_at(cx, deadline);
                    Poll::Pending
                }
            })
            .await;
        assert_eq!(woke_at, deadline);
        assert_eq!(calls.get(), 2);
    });
}

#[test]
fn with_mut_unchecked_takes_borrowed_buffers() {
    let (_lan, stacks, mut ex) = setup(2);
    let (a, b) = (stacks[0], stacks[1]);
    ex.run(async {
        let mut server = socket(b);
        let mut rx = [0u8; 1024];
        let mut tx = [0u8; 1024];
        let short: Stack<'_> = a;
        // SAFETY: `sock` adopts the socket and is dropped before `rx` and `tx`.
        let handle = unsafe {
            short.with_mut_unchecked(|_, sockets| {
                sockets.add(tcp::Socket::new(
                    tcp::SocketBuffer::new(&mut rx[..]),
                    tcp::SocketBuffer::new(&mut tx[..]),
                ))
            })
        };
        let mut sock = TcpSocket::from_handle(short, handle);
        let (accepted, connected) = join(server.accept(80), sock.connect((addr(2), 80))).await;
        accepted.unwrap();
        connected.unwrap();
        join(ping(&mut sock, b"borrowed"), async {
            echo_once(&mut server, 8).await;
        })
        .await;
        drop(sock);
        assert_eq!(socket_count(a), 0);
    });
}

#[test]
#[should_panic(expected = "not a TCP socket")]
fn from_handle_rejects_a_non_tcp_socket() {
    clock::reset();
    let lan = Lan::new(LATENCY);
    let (a, _runner) = host_with(&lan, 1, Config::dhcpv4(Default::default()), 1);
    let dhcp = a.with_mut(|_, sockets| sockets.iter().next().unwrap().0);
    let _ = TcpSocket::from_handle(a, dhcp);
}

#[test]
fn dhcp_client_runs_until_a_static_config_replaces_it() {
    clock::reset();
    let lan = Lan::new(LATENCY);
    let mut ex = Executor::new();
    let (a, mut runner) = host_with(&lan, 1, Config::dhcpv4(Default::default()), 1);
    ex.spawn(async move { runner.run().await });
    ex.run(async {
        assert!(!a.is_config_up());
        assert_eq!(socket_count(a), 1, "the DHCP client's socket");
        a.wait_link_up().await;
        embassy_time::Timer::after(Duration::from_secs(2)).await;
        assert!(!a.is_config_up(), "no DHCP server on this LAN");
        a.set_config_v4(ConfigV4::Static(StaticConfigV4 {
            address: Ipv4Cidr::new(addr(1), 24),
            gateway: Some(addr(254)),
            dns_servers: Default::default(),
        }));
        a.wait_config_up().await;
        assert_eq!(a.config_v4().unwrap().gateway, Some(addr(254)));
        assert_eq!(socket_count(a), 0);
    });
    assert!(lan.udp_dst_ports().contains(&67), "DHCPDISCOVER sent");
}
