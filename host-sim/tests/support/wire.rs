//! An in-memory IPv4 "wire" between smoltcp interfaces on `Medium::Ip` devices (no ARP), on a virtual
//! clock: a fixed one-way delay per link, a log of every TCP segment, and fault hooks (drop, reset by a
//! router, duplicate, delay) plus an optional NAT that puts hosts behind one public address.
//!
//! The wire never reads a clock: the caller says what time it is when it hands over what a host sent
//! ([`Wire::send`]) and when it asks for what has arrived ([`Wire::deliver`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};

use host_sim::packet::{self, Kind, Tcp};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Packet, TcpPacket};

/// A host's place on the wire.
pub type NodeId = usize;

/// A host's network device: what the wire delivered to it, and what its interface sent.
#[derive(Default)]
pub struct Nic {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

impl Nic {
    /// Take what the interface sent (for a test that runs an interface without a [`Wire`]).
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }
}

/// A received packet.
pub struct RxToken(Vec<u8>);

/// Room for one packet to send.
pub struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push(packet);
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// What the fault hook decides for a TCP segment a host sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Carry it.
    Deliver,
    /// Lose it.
    Drop,
    /// A router at the far end answers it with a RST from its destination (and does not forward it):
    /// a home router without a firewall whose own stack resets a SYN it has no session for.
    Reset,
    /// Carry it twice.
    Duplicate,
    /// Carry it this much later than the link delay.
    Delay(Duration),
}

/// A TCP segment as it went over the wire.
#[derive(Debug, Clone)]
pub struct Segment {
    /// When it left its sender (for a router's RST: when the router sent it).
    pub sent_at: Instant,
    /// Its header as sent.
    pub tcp: Tcp,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When it arrived and with which (source, destination) after the NAT; `None`: it was lost.
    pub delivered: Option<(Instant, SocketAddrV4, SocketAddrV4)>,
    /// Not sent by a host: a router's RST ([`Fate::Reset`]), or a test's probe ([`Wire::inject`]).
    pub injected: bool,
}

/// A port-preserving NAT with endpoint-independent mapping and hairpinning: every `inside` host
/// appears as `public` to everyone outside, and reaches the others at `public` too.
pub struct Nat {
    public: Ipv4Addr,
    inside: Vec<Ipv4Addr>,
    /// Public port → the inside host that uses it.
    ports: BTreeMap<u16, Ipv4Addr>,
}

impl Nat {
    /// `inside` hosts behind `public`.
    pub fn new(public: Ipv4Addr, inside: &[Ipv4Addr]) -> Nat {
        Nat {
            public,
            inside: inside.to_vec(),
            ports: BTreeMap::new(),
        }
    }

    /// Rewrite `packet` (TCP, fields `tcp`) as it passes the NAT; returns its new (source, destination).
    fn translate(&mut self, packet: &mut [u8], tcp: &Tcp) -> (SocketAddrV4, SocketAddrV4) {
        let (mut src, mut dst) = (tcp.src, tcp.dst);
        let to_inside = self.inside.contains(dst.ip());
        if self.inside.contains(src.ip()) && !to_inside {
            let previous = self.ports.insert(src.port(), *src.ip());
            assert!(
                previous.is_none_or(|host| host == *src.ip()),
                "two inside hosts on public port {}: the NAT is only port-preserving",
                src.port()
            );
            src = SocketAddrV4::new(self.public, src.port());
        }
        if *dst.ip() == self.public {
            if let Some(host) = self.ports.get(&dst.port()) {
                dst = SocketAddrV4::new(*host, dst.port());
            }
        }
        if (src, dst) != (tcp.src, tcp.dst) {
            packet::rewrite_tcp(packet, Some(src), Some(dst));
        }
        (src, dst)
    }
}

/// What the fault hook is: called for every TCP segment a host sends, at the time it leaves.
pub type FaultHook = Box<dyn FnMut(Instant, &Tcp) -> Fate>;

struct InFlight {
    due: Instant,
    to: NodeId,
    packet: Vec<u8>,
}

/// The wire (module docs).
pub struct Wire {
    nodes: Vec<(Ipv4Addr, Nic)>,
    delay: Duration,
    /// One-way delays of particular links, either direction, by the addresses the sender used.
    delays: Vec<((Ipv4Addr, Ipv4Addr), Duration)>,
    fault: Option<FaultHook>,
    nat: Option<Nat>,
    /// Ordered by due time, then by sending order.
    flight: Vec<InFlight>,
    log: Vec<Segment>,
}

impl Wire {
    /// A wire on which every link has one-way delay `delay`.
    pub fn new(delay: Duration) -> Wire {
        Wire {
            nodes: Vec::new(),
            delay,
            delays: Vec::new(),
            fault: None,
            nat: None,
            flight: Vec::new(),
            log: Vec::new(),
        }
    }

    /// A host with address `ip`.
    pub fn add_node(&mut self, ip: Ipv4Addr) -> NodeId {
        self.nodes.push((ip, Nic::default()));
        self.nodes.len() - 1
    }

    /// The device of `node`.
    pub fn nic(&mut self, node: NodeId) -> &mut Nic {
        &mut self.nodes[node].1
    }

    /// Give the link between `a` and `b` its own one-way delay.
    pub fn set_delay(&mut self, a: Ipv4Addr, b: Ipv4Addr, delay: Duration) {
        self.delays.push(((a, b), delay));
    }

    /// Decide the fate of every TCP segment from now on.
    pub fn set_fault(&mut self, hook: impl FnMut(Instant, &Tcp) -> Fate + 'static) {
        self.fault = Some(Box::new(hook));
    }

    /// Put hosts behind a NAT.
    pub fn set_nat(&mut self, nat: Nat) {
        self.nat = Some(nat);
    }

    /// Every TCP segment so far, in the order they were sent.
    pub fn log(&self) -> &[Segment] {
        &self.log
    }

    fn link_delay(&self, a: Ipv4Addr, b: Ipv4Addr) -> Duration {
        self.delays
            .iter()
            .find(|((x, y), _)| (*x, *y) == (a, b) || (*x, *y) == (b, a))
            .map_or(self.delay, |(_, d)| *d)
    }

    fn node_of(&self, ip: Ipv4Addr) -> Option<NodeId> {
        self.nodes.iter().position(|(a, _)| *a == ip)
    }

    /// When the next packet arrives somewhere.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.flight.first().map(|f| f.due)
    }

    /// Hand every packet due by `now` to its host's device; returns the hosts that got any.
    pub fn deliver(&mut self, now: Instant) -> Vec<NodeId> {
        let due = self.flight.partition_point(|f| f.due <= now);
        let mut arrived = Vec::new();
        for f in self.flight.drain(..due) {
            self.nodes[f.to].1.rx.push_back(f.packet);
            if !arrived.contains(&f.to) {
                arrived.push(f.to);
            }
        }
        arrived
    }

    /// Put `packet` on the wire to arrive at its destination at `at` (it is logged as sent then).
    pub fn inject(&mut self, at: Instant, packet: Vec<u8>) {
        let Kind::Tcp(tcp) = packet::decode(&packet) else {
            panic!("inject: not a TCP packet");
        };
        let to = self.node_of(*tcp.dst.ip()).expect("inject: no such host");
        self.log.push(Segment {
            sent_at: at,
            tcp,
            payload: tcp_payload(&packet),
            delivered: Some((at, tcp.src, tcp.dst)),
            injected: true,
        });
        self.schedule(at, to, packet);
    }

    fn schedule(&mut self, due: Instant, to: NodeId, packet: Vec<u8>) {
        let at = self.flight.partition_point(|f| f.due <= due);
        self.flight.insert(at, InFlight { due, to, packet });
    }

    /// Take what `node` sent at `now` and carry it.
    pub fn send(&mut self, now: Instant, node: NodeId) {
        let sent = self.nodes[node].1.take_sent();
        for packet in sent {
            self.carry(now, node, packet);
        }
    }

    fn carry(&mut self, now: Instant, from: NodeId, mut packet: Vec<u8>) {
        let Kind::Tcp(tcp) = packet::decode(&packet) else {
            return; // the hosts send only TCP; anything else is lost
        };
        let fate = self.fault.as_mut().map_or(Fate::Deliver, |f| f(now, &tcp));
        let delay = self.link_delay(*tcp.src.ip(), *tcp.dst.ip());
        let (src, dst) = match self.nat.as_mut() {
            Some(nat) => nat.translate(&mut packet, &tcp),
            None => (tcp.src, tcp.dst),
        };
        let to = self.node_of(*dst.ip());
        let due = match fate {
            Fate::Delay(extra) => now + delay + extra,
            _ => now + delay,
        };
        let delivered = matches!(fate, Fate::Deliver | Fate::Duplicate | Fate::Delay(_));
        let delivered = to.filter(|_| delivered).map(|_| (due, src, dst));
        self.log.push(Segment {
            sent_at: now,
            tcp,
            payload: tcp_payload(&packet),
            delivered,
            injected: false,
        });
        match (fate, to) {
            (Fate::Reset, _) => self.reset(now + delay, from, &tcp),
            (Fate::Drop, _) | (_, None) => {}
            (Fate::Duplicate, Some(to)) => {
                self.schedule(due, to, packet.clone());
                self.schedule(due, to, packet);
            }
            (_, Some(to)) => self.schedule(due, to, packet),
        }
    }

    /// The far end's router answers `tcp` (which reached it at `at`) with a RST to `sender`.
    fn reset(&mut self, at: Instant, sender: NodeId, tcp: &Tcp) {
        let rst = packet::rst_for(tcp);
        let Kind::Tcp(header) = packet::decode(&rst) else {
            unreachable!("rst_for builds TCP");
        };
        let due = at + self.link_delay(*tcp.src.ip(), *tcp.dst.ip());
        self.log.push(Segment {
            sent_at: at,
            tcp: header,
            payload: Vec::new(),
            delivered: Some((due, header.src, header.dst)),
            injected: true,
        });
        self.schedule(due, sender, rst);
    }
}

/// The TCP payload of an IPv4 packet (empty if it is not one).
fn tcp_payload(packet: &[u8]) -> Vec<u8> {
    Ipv4Packet::new_checked(packet)
        .ok()
        .and_then(|ip| {
            Some(
                TcpPacket::new_checked(ip.payload())
                    .ok()?
                    .payload()
                    .to_vec(),
            )
        })
        .unwrap_or_default()
}
