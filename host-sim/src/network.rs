//! A routed IPv4 network in memory: hosts, a LAN switch, NAT routers and an internet router, joined by
//! one-way links with seeded latency, jitter and loss, on the virtual clock.
//!
//! Hosts run real smoltcp stacks (`p2psc::net`) on [`HostPort`], an `embassy_net_driver::Driver`.
//! Everything between hosts is plain logic run by [`Network::run`], a task on the simulator's executor
//! that moves each packet to the next node when it is due:
//!
//! - a **switch** is an Ethernet LAN ([`crate::ether`]): links to and from it carry Ethernet frames,
//!   and it forwards them by destination MAC address, learning where each address is from the frames'
//!   sources (a learning switch: unknown and broadcast destinations go to every other port). Hosts on
//!   it run smoltcp with `Medium::Ethernet` and resolve their neighbours with ARP;
//! - a **NAT** ([`crate::nat::Nat`]) translates what comes from its LAN for its WAN and back, and
//!   records its decisions in the timeline; its LAN side is an Ethernet interface with ARP
//!   ([`crate::ether::LanIface`]);
//! - a **router** (the internet core) forwards bare IPv4 by destination address; hosts on it (the
//!   mediator, public peers) run smoltcp with `Medium::Ip`.
//!
//! A link is FIFO: jitter adds a random delay in `[0, jitter]` but never reorders. Loss drops a packet
//! with the link's probability. An ARP frame may take longer ([`LinkParams::arp`], a slow neighbour
//! discovery); later frames do not wait for it. All randomness comes from one seeded stream, and the
//! executor polls in a fixed order, so the same seed gives the same run, packet for packet
//! ([`Network::trace`]).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::poll_fn;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_time::{Duration, Instant};

use crate::ether::{self, LanIface, Mac};
use crate::nat::{Nat, Out};
use crate::packet::{self, Kind};
use crate::rng::Rng;
use crate::timeline::{Log, What, Who};

/// Index of a node.
pub type NodeId = usize;
/// Index of a one-way link.
pub type LinkId = usize;

/// Properties of a one-way link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra random delay, uniform in `[0, jitter]` (never reordering packets).
    pub jitter: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Extra delay of an ARP frame on an Ethernet link (a neighbour that is slow to answer); frames
    /// behind it do not wait for it.
    pub arp: Duration,
}

impl LinkParams {
    /// A link with this delay, no jitter and no loss.
    pub const fn delay(delay: Duration) -> LinkParams {
        LinkParams {
            delay,
            jitter: Duration::from_ticks(0),
            loss: 0.0,
            arp: Duration::from_ticks(0),
        }
    }
}

/// A packet on a link, as recorded in the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// When it entered the link.
    pub at: Instant,
    /// The link's name (`from->to`).
    pub link: String,
    /// The packet: IPv4, or on a LAN link what the Ethernet frame carries (IPv4 or ARP).
    pub packet: Vec<u8>,
    /// Whether the link lost it.
    pub lost: bool,
}

/// Decides whether to drop a packet entering a link (fault injection for tests): gets the link's name
/// and the packet, returns true to drop it.
pub type DropRule = Box<dyn FnMut(&str, &Kind) -> bool>;

enum NodeKind {
    Host {
        inbox: VecDeque<Vec<u8>>,
        waker: Option<Waker>,
        uplink: Option<LinkId>,
        /// Its MAC and address on a LAN, if it is on one (then its stack runs on Ethernet).
        lan: Option<(Mac, Ipv4Addr)>,
    },
    Switch {
        /// Links from the switch to each node on it.
        ports: Vec<LinkId>,
        /// Learnt: which port leads to which MAC address.
        table: Vec<(Mac, LinkId)>,
    },
    Nat {
        nat: Box<Nat>,
        name: &'static str,
        lan: Option<LinkId>,
        wan: Option<LinkId>,
        /// Its interface on the LAN.
        iface: Option<LanIface>,
    },
    Router {
        routes: Vec<(Ipv4Addr, LinkId)>,
    },
}

struct Node {
    name: String,
    kind: NodeKind,
}

struct Link {
    from: NodeId,
    to: NodeId,
    name: String,
    params: LinkParams,
    last_due: Instant,
    /// It carries Ethernet frames (a LAN link), not bare IPv4.
    ethernet: bool,
}

struct InFlight {
    link: LinkId,
    packet: Vec<u8>,
}

struct Inner {
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// (due, sequence) → packet; the sequence keeps equal due times in send order.
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: std::collections::HashMap<u64, InFlight>,
    seq: u64,
    rng: Rng,
    log: Log,
    trace: Option<Vec<TraceRecord>>,
    drop_rule: Option<DropRule>,
    waker: Option<Waker>,
}

/// The network. Cloning gives another handle.
#[derive(Clone)]
pub struct Network {
    inner: Rc<RefCell<Inner>>,
}

impl Network {
    /// An empty network drawing jitter and loss from `rng` and logging to `log`; with `trace`, every
    /// packet entering every link is recorded.
    pub fn new(rng: Rng, log: Log, trace: bool) -> Network {
        Network {
            inner: Rc::new(RefCell::new(Inner {
                nodes: Vec::new(),
                links: Vec::new(),
                queue: BinaryHeap::new(),
                in_flight: std::collections::HashMap::new(),
                seq: 0,
                rng,
                log,
                trace: trace.then(Vec::new),
                drop_rule: None,
                waker: None,
            })),
        }
    }

    fn add(&self, name: &str, kind: NodeKind) -> NodeId {
        let mut inner = self.inner.borrow_mut();
        inner.nodes.push(Node {
            name: name.into(),
            kind,
        });
        inner.nodes.len() - 1
    }

    /// A host; give its stack [`Network::port`].
    pub fn add_host(&self, name: &str) -> NodeId {
        self.add(
            name,
            NodeKind::Host {
                inbox: VecDeque::new(),
                waker: None,
                uplink: None,
                lan: None,
            },
        )
    }

    /// A LAN switch.
    pub fn add_switch(&self, name: &str) -> NodeId {
        self.add(
            name,
            NodeKind::Switch {
                ports: Vec::new(),
                table: Vec::new(),
            },
        )
    }

    /// A NAT router; connect its LAN side with [`Network::attach`] from the switch and its WAN side to a
    /// router with [`Network::uplink`].
    pub fn add_nat(&self, name: &'static str, nat: Nat) -> NodeId {
        self.add(
            name,
            NodeKind::Nat {
                nat: Box::new(nat),
                name,
                lan: None,
                wan: None,
                iface: None,
            },
        )
    }

    /// An internet router.
    pub fn add_router(&self, name: &str) -> NodeId {
        self.add(name, NodeKind::Router { routes: Vec::new() })
    }

    fn link(&self, from: NodeId, to: NodeId, params: LinkParams, ethernet: bool) -> LinkId {
        let mut inner = self.inner.borrow_mut();
        let name = format!("{}->{}", inner.nodes[from].name, inner.nodes[to].name);
        inner.links.push(Link {
            from,
            to,
            name,
            params,
            last_due: Instant::from_ticks(0),
            ethernet,
        });
        inner.links.len() - 1
    }

    /// Join a host (or a NAT's LAN side) to a switch's Ethernet, as `addr` on that LAN, with a MAC
    /// address of its own. `up` and `down` are the two directions (towards the switch, and back).
    pub fn attach(
        &self,
        node: NodeId,
        addr: Ipv4Addr,
        switch: NodeId,
        up: LinkParams,
        down: LinkParams,
    ) {
        let to_switch = self.link(node, switch, up, true);
        let to_node = self.link(switch, node, down, true);
        let mut inner = self.inner.borrow_mut();
        let mac = ether::mac_for(node);
        match &mut inner.nodes[node].kind {
            NodeKind::Host { uplink, lan, .. } => {
                *uplink = Some(to_switch);
                *lan = Some((mac, addr));
            }
            NodeKind::Nat { lan, iface, .. } => {
                *lan = Some(to_switch);
                *iface = Some(LanIface::new(mac, addr));
            }
            _ => panic!("only hosts and NATs attach to a switch"),
        }
        match &mut inner.nodes[switch].kind {
            NodeKind::Switch { ports, .. } => ports.push(to_node),
            _ => panic!("not a switch"),
        }
    }

    /// Put `known`'s MAC address into `knower`'s ARP cache (two hosts on one switch), as if `known` had
    /// answered an ARP request of `knower`'s before the run and then forgotten `knower` (a restart):
    /// an unsolicited ARP reply from `known` to `knower`, on the switch's link to `knower`. smoltcp
    /// fills its cache from any ARP packet addressed to it.
    pub fn announce(&self, known: NodeId, knower: NodeId) {
        let mut inner = self.inner.borrow_mut();
        let lan_of = |inner: &Inner, n: NodeId| match inner.nodes[n].kind {
            NodeKind::Host { lan: Some(lan), .. } => lan,
            _ => panic!("announce: not a host on a LAN"),
        };
        let (from, to) = (lan_of(&inner, known), lan_of(&inner, knower));
        let link = inner
            .links
            .iter()
            .position(|l| l.ethernet && l.to == knower)
            .expect("announce: the host is attached to a switch");
        inner.send(link, ether::arp_frame(false, from, to));
    }

    /// Join a host or a NAT's WAN side to a router, reachable there at `addr`.
    pub fn uplink(
        &self,
        node: NodeId,
        addr: Ipv4Addr,
        router: NodeId,
        up: LinkParams,
        down: LinkParams,
    ) {
        let to_router = self.link(node, router, up, false);
        let to_node = self.link(router, node, down, false);
        let mut inner = self.inner.borrow_mut();
        match &mut inner.nodes[node].kind {
            NodeKind::Host { uplink, .. } => *uplink = Some(to_router),
            NodeKind::Nat { wan, .. } => *wan = Some(to_router),
            _ => panic!("only hosts and NATs have an uplink to a router"),
        }
        match &mut inner.nodes[router].kind {
            NodeKind::Router { routes } => routes.push((addr, to_node)),
            _ => panic!("not a router"),
        }
    }

    /// The driver for host `node`'s stack.
    pub fn port(&self, node: NodeId) -> HostPort {
        HostPort {
            net: self.clone(),
            node,
        }
    }

    /// Drop packets for which `rule(link name, packet)` returns true (fault injection).
    pub fn set_drop_rule(&self, rule: impl FnMut(&str, &Kind) -> bool + 'static) {
        self.inner.borrow_mut().drop_rule = Some(Box::new(rule));
    }

    /// Every packet that entered a link, if tracing is on.
    pub fn trace(&self) -> Vec<TraceRecord> {
        self.inner.borrow().trace.clone().unwrap_or_default()
    }

    /// Run `f` on NAT `node` (to inspect its state in tests).
    pub fn with_nat<R>(&self, node: NodeId, f: impl FnOnce(&mut Nat) -> R) -> R {
        match &mut self.inner.borrow_mut().nodes[node].kind {
            NodeKind::Nat { nat, .. } => f(nat),
            _ => panic!("not a NAT"),
        }
    }

    /// Move packets until the end of time. Spawn it on the executor next to the stacks' runners.
    pub async fn run(&self) {
        poll_fn(|cx: &mut Context<'_>| {
            let mut inner = self.inner.borrow_mut();
            inner.waker = Some(cx.waker().clone());
            inner.process(Instant::now());
            if let Some(Reverse((due, _))) = inner.queue.peek() {
                embassy_time_driver::schedule_wake(due.as_ticks(), cx.waker());
            }
            Poll::<()>::Pending
        })
        .await
    }
}

impl Inner {
    /// Put `data` (a frame on an Ethernet link, else an IPv4 packet) on `link`.
    fn send(&mut self, link: LinkId, data: Vec<u8>) {
        let now = Instant::now();
        let ethernet = self.links[link].ethernet;
        let packet = if ethernet {
            ether::payload(&data)
        } else {
            &data[..]
        };
        let dropped = match self.drop_rule.as_mut() {
            Some(rule) => rule(&self.links[link].name, &packet::decode(packet)),
            None => false,
        };
        if dropped {
            let text = format!("{} on {}", packet::summary(packet), self.links[link].name);
            self.log.push(
                Who::Net(self.links[link].name.clone()),
                What::Injected(text),
            );
            return;
        }
        let params = self.links[link].params;
        let lost = self.rng.chance(params.loss);
        if let Some(trace) = self.trace.as_mut() {
            trace.push(TraceRecord {
                at: now,
                link: self.links[link].name.clone(),
                packet: packet.to_vec(),
                lost,
            });
        }
        if lost {
            self.log.push(
                Who::Net(self.links[link].name.clone()),
                What::Lost(packet::summary(packet)),
            );
            return;
        }
        let jitter = if params.jitter.as_ticks() > 0 {
            Duration::from_ticks(self.rng.range(0, params.jitter.as_ticks()))
        } else {
            Duration::from_ticks(0)
        };
        let slow_arp = ethernet && ether::is_arp(&data);
        let extra = if slow_arp {
            params.arp
        } else {
            Duration::from_ticks(0)
        };
        let due = (now + params.delay + jitter + extra).max(self.links[link].last_due);
        if !slow_arp {
            self.links[link].last_due = due;
        }
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Reverse((due, seq)));
        self.in_flight.insert(seq, InFlight { link, packet: data });
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    fn process(&mut self, now: Instant) {
        while let Some(Reverse((due, seq))) = self.queue.peek().copied() {
            if due > now {
                break;
            }
            self.queue.pop();
            let InFlight { link, packet } = self.in_flight.remove(&seq).expect("queued");
            self.arrive(now, link, packet);
        }
    }

    /// `data` comes off `link` at its node.
    fn arrive(&mut self, now: Instant, link: LinkId, data: Vec<u8>) {
        let (from, node) = (self.links[link].from, self.links[link].to);
        debug_assert!(
            {
                let p = if self.links[link].ethernet {
                    ether::payload(&data)
                } else {
                    &data[..]
                };
                !matches!(packet::decode(p), Kind::Tcp(_)) || packet::checksums_ok(p)
            },
            "bad checksum on {}",
            self.links[link].name
        );
        let out = match &mut self.nodes[node].kind {
            NodeKind::Host { inbox, waker, .. } => {
                inbox.push_back(data);
                if let Some(w) = waker.take() {
                    w.wake();
                }
                Vec::new()
            }
            NodeKind::Switch { .. } => self.switch(node, from, data),
            NodeKind::Nat { .. } => self.nat(now, node, from, data),
            NodeKind::Router { routes } => {
                let dst = packet::addresses(&data).map(|(_, dst)| dst);
                match routes.iter().find(|(a, _)| Some(*a) == dst) {
                    Some(&(_, l)) => {
                        let mut packet = data;
                        decrement_ttl(&mut packet);
                        vec![(l, packet)]
                    }
                    None => {
                        let who = Who::Net(self.nodes[node].name.clone());
                        self.log.push(who, What::NoRoute(packet::summary(&data)));
                        Vec::new()
                    }
                }
            }
        };
        for (l, p) in out {
            self.send(l, p);
        }
    }

    /// A learning switch: note that the frame's source is behind the port towards `from`, then
    /// forward it to the port of its destination, or to every other port (broadcast, or not learnt).
    fn switch(&mut self, node: NodeId, from: NodeId, frame: Vec<u8>) -> Vec<(LinkId, Vec<u8>)> {
        let links = &self.links;
        let NodeKind::Switch { ports, table } = &mut self.nodes[node].kind else {
            unreachable!("a switch")
        };
        let Some((dst, src, ..)) = ether::parse(&frame) else {
            return Vec::new();
        };
        let back = ports.iter().copied().find(|&l| links[l].to == from);
        if let Some(back) = back {
            match table.iter_mut().find(|(mac, _)| *mac == src) {
                Some(entry) => entry.1 = back,
                None => table.push((src, back)),
            }
        }
        let known = table.iter().find(|(mac, _)| *mac == dst).map(|&(_, l)| l);
        let targets: Vec<LinkId> = match known {
            Some(l) => vec![l],
            None => ports.clone(),
        };
        targets
            .into_iter()
            .filter(|&l| Some(l) != back)
            .map(|l| (l, frame.clone()))
            .collect()
    }

    /// A NAT: bare IPv4 from its WAN (for its public address), Ethernet from its LAN; what it sends
    /// onto the LAN goes through its interface's ARP.
    fn nat(
        &mut self,
        now: Instant,
        node: NodeId,
        from: NodeId,
        data: Vec<u8>,
    ) -> Vec<(LinkId, Vec<u8>)> {
        let links = &self.links;
        let NodeKind::Nat {
            nat,
            name,
            lan,
            wan,
            iface,
        } = &mut self.nodes[node].kind
        else {
            unreachable!("a NAT")
        };
        let (lan, wan) = (*lan, *wan);
        let mut out: Vec<(LinkId, Vec<u8>)> = Vec::new();
        let outs = if wan.is_some_and(|w| links[w].to == from) {
            let for_us = packet::addresses(&data).is_some_and(|(_, dst)| dst == nat.public());
            if for_us {
                nat.inbound(now, data)
            } else {
                Vec::new()
            }
        } else {
            let got = match iface.as_mut() {
                Some(i) => i.receive(&data),
                None => Default::default(),
            };
            if let Some(l) = lan {
                out.extend(got.frames.into_iter().map(|f| (l, f)));
            }
            match got.packet {
                Some(p) => nat.outbound(now, p),
                None => Vec::new(),
            }
        };
        for e in nat.take_events() {
            self.log.push(Who::Nat(name), What::Nat(e));
        }
        for o in outs {
            match (o, lan, iface.as_mut()) {
                (Out::Lan(p), Some(l), Some(i)) => {
                    out.extend(i.send(p).into_iter().map(|f| (l, f)))
                }
                (Out::Wan(p), ..) => out.extend(wan.map(|l| (l, p))),
                _ => {}
            }
        }
        out
    }
}

fn decrement_ttl(packet: &mut [u8]) {
    let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(packet);
    ip.set_hop_limit(ip.hop_limit().saturating_sub(1));
    ip.fill_checksum();
}

/// A host's network interface: the `embassy_net_driver::Driver` its stack runs on (Ethernet on a
/// LAN, medium IP on a router).
pub struct HostPort {
    net: Network,
    node: NodeId,
}

impl HostPort {
    fn lan(&self) -> Option<(Mac, Ipv4Addr)> {
        match self.net.inner.borrow().nodes[self.node].kind {
            NodeKind::Host { lan, .. } => lan,
            _ => None,
        }
    }
}

/// A received packet.
pub struct RxToken(Vec<u8>);

/// Room to send one packet.
pub struct TxToken {
    net: Network,
    node: NodeId,
}

impl embassy_net_driver::RxToken for RxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        let mut inner = self.net.inner.borrow_mut();
        let uplink = match &inner.nodes[self.node].kind {
            NodeKind::Host { uplink, .. } => *uplink,
            _ => None,
        };
        if let Some(l) = uplink {
            inner.send(l, packet);
        }
        r
    }
}

impl embassy_net_driver::Driver for HostPort {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, cx: &mut Context) -> Option<(RxToken, TxToken)> {
        let mut inner = self.net.inner.borrow_mut();
        let NodeKind::Host { inbox, waker, .. } = &mut inner.nodes[self.node].kind else {
            return None;
        };
        match inbox.pop_front() {
            Some(p) => Some((
                RxToken(p),
                TxToken {
                    net: self.net.clone(),
                    node: self.node,
                },
            )),
            None => {
                *waker = Some(cx.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context) -> Option<TxToken> {
        Some(TxToken {
            net: self.net.clone(),
            node: self.node,
        })
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        // The same 1500-byte IP MTU either way (Ethernet's counts its 14-byte header).
        caps.max_transmission_unit = match self.lan() {
            Some(_) => 1514,
            None => 1500,
        };
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        match self.lan() {
            Some((mac, _)) => HardwareAddress::Ethernet(mac),
            None => HardwareAddress::Ip,
        }
    }
}
