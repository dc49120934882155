//! A routed IPv4 network in memory: hosts, a LAN switch, NAT routers and an internet router, joined by
//! one-way links with seeded latency, jitter and loss, on the virtual clock.
//!
//! Hosts run real smoltcp stacks (`p2psc::net`) on [`HostPort`], an `embassy_net_driver::Driver` of
//! medium IP: packets are bare IPv4, there is no Ethernet and no ARP. Everything between hosts is plain
//! logic run by [`Network::run`], a task on the simulator's executor that moves each packet to the next
//! node when it is due:
//!
//! - a **switch** forwards packets for its subnet to the host that has the address, others to its
//!   uplink (the home router), like a LAN whose hosts talk directly;
//! - a **NAT** ([`crate::nat::Nat`]) translates what comes from its LAN for its WAN and back, and
//!   records its decisions in the timeline;
//! - a **router** (the internet core) forwards by destination address.
//!
//! A link is FIFO: jitter adds a random delay in `[0, jitter]` but never reorders. Loss drops a packet
//! with the link's probability. All randomness comes from one seeded stream, and the executor polls in a
//! fixed order, so the same seed gives the same run, packet for packet ([`Network::trace`]).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::future::poll_fn;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_time::{Duration, Instant};

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
}

impl LinkParams {
    /// A link with this delay, no jitter and no loss.
    pub const fn delay(delay: Duration) -> LinkParams {
        LinkParams {
            delay,
            jitter: Duration::from_ticks(0),
            loss: 0.0,
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
    /// The packet (IPv4).
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
    },
    Switch {
        hosts: Vec<(Ipv4Addr, LinkId)>,
        uplink: Option<LinkId>,
    },
    Nat {
        nat: Box<Nat>,
        name: &'static str,
        lan: Option<LinkId>,
        wan: Option<LinkId>,
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
            },
        )
    }

    /// A LAN switch.
    pub fn add_switch(&self, name: &str) -> NodeId {
        self.add(
            name,
            NodeKind::Switch {
                hosts: Vec::new(),
                uplink: None,
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
            },
        )
    }

    /// An internet router.
    pub fn add_router(&self, name: &str) -> NodeId {
        self.add(name, NodeKind::Router { routes: Vec::new() })
    }

    fn link(&self, from: NodeId, to: NodeId, params: LinkParams) -> LinkId {
        let mut inner = self.inner.borrow_mut();
        let name = format!("{}->{}", inner.nodes[from].name, inner.nodes[to].name);
        inner.links.push(Link {
            from,
            to,
            name,
            params,
            last_due: Instant::from_ticks(0),
        });
        inner.links.len() - 1
    }

    /// Join a host (or a NAT's LAN side) to a switch, as `addr` on that LAN. `up` and `down` are the
    /// two directions (towards the switch, and back).
    pub fn attach(
        &self,
        node: NodeId,
        addr: Ipv4Addr,
        switch: NodeId,
        up: LinkParams,
        down: LinkParams,
    ) {
        let to_switch = self.link(node, switch, up);
        let to_node = self.link(switch, node, down);
        let mut inner = self.inner.borrow_mut();
        match &mut inner.nodes[node].kind {
            NodeKind::Host { uplink, .. } => *uplink = Some(to_switch),
            NodeKind::Nat { lan, .. } => *lan = Some(to_switch),
            _ => panic!("only hosts and NATs attach to a switch"),
        }
        // Record where the switch sends packets for `addr` (a NAT's LAN side is the switch's uplink).
        let is_nat = matches!(inner.nodes[node].kind, NodeKind::Nat { .. });
        match &mut inner.nodes[switch].kind {
            NodeKind::Switch { uplink, .. } if is_nat => *uplink = Some(to_node),
            NodeKind::Switch { hosts, .. } => hosts.push((addr, to_node)),
            _ => panic!("not a switch"),
        }
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
        let to_router = self.link(node, router, up);
        let to_node = self.link(router, node, down);
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
    fn send(&mut self, link: LinkId, packet: Vec<u8>) {
        let now = Instant::now();
        let dropped = match self.drop_rule.as_mut() {
            Some(rule) => rule(&self.links[link].name, &packet::decode(&packet)),
            None => false,
        };
        if dropped {
            let text = format!("{} on {}", packet::summary(&packet), self.links[link].name);
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
                packet: packet.clone(),
                lost,
            });
        }
        if lost {
            self.log.push(
                Who::Net(self.links[link].name.clone()),
                What::Lost(packet::summary(&packet)),
            );
            return;
        }
        let jitter = if params.jitter.as_ticks() > 0 {
            Duration::from_ticks(self.rng.range(0, params.jitter.as_ticks()))
        } else {
            Duration::from_ticks(0)
        };
        let due = (now + params.delay + jitter).max(self.links[link].last_due);
        self.links[link].last_due = due;
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Reverse((due, seq)));
        self.in_flight.insert(seq, InFlight { link, packet });
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
            let (from, to) = (self.links[link].from, self.links[link].to);
            self.arrive(now, from, to, packet);
        }
    }

    fn arrive(&mut self, now: Instant, from: NodeId, node: NodeId, packet: Vec<u8>) {
        debug_assert!(
            packet::checksums_ok(&packet),
            "bad checksum: {}",
            packet::summary(&packet)
        );
        let Some((_, dst)) = packet::addresses(&packet) else {
            return;
        };
        let mut out: Vec<(LinkId, Vec<u8>)> = Vec::new();
        match &mut self.nodes[node].kind {
            NodeKind::Host { inbox, waker, .. } => {
                inbox.push_back(packet);
                if let Some(w) = waker.take() {
                    w.wake();
                }
            }
            NodeKind::Switch { hosts, uplink } => {
                match hosts.iter().find(|(a, _)| *a == dst) {
                    Some((_, l)) => out.push((*l, packet)),
                    // Off-LAN, or for an address nobody on the LAN has: to the router (unless it came
                    // from there).
                    None => {
                        if let Some(u) = *uplink {
                            if self.links[u].to != from {
                                out.push((u, packet));
                            }
                        }
                    }
                }
            }
            NodeKind::Nat {
                nat,
                name,
                lan,
                wan,
            } => {
                let (name, lan, wan): (&'static str, _, _) = (name, *lan, *wan);
                let from_wan = wan.is_some_and(|w| self.links[w].to == from);
                let outs = if from_wan {
                    if dst == nat.public() {
                        nat.inbound(now, packet)
                    } else {
                        Vec::new()
                    }
                } else {
                    nat.outbound(now, packet)
                };
                for e in nat.take_events() {
                    self.log.push(Who::Nat(name), What::Nat(e));
                }
                for o in outs {
                    match o {
                        Out::Lan(p) => out.extend(lan.map(|l| (l, p))),
                        Out::Wan(p) => out.extend(wan.map(|l| (l, p))),
                    }
                }
            }
            NodeKind::Router { routes } => match routes.iter().find(|(a, _)| *a == dst) {
                Some((_, l)) => {
                    let mut packet = packet;
                    decrement_ttl(&mut packet);
                    out.push((*l, packet));
                }
                None => {
                    let who = Who::Net(self.nodes[node].name.clone());
                    self.log.push(who, What::NoRoute(packet::summary(&packet)));
                }
            },
        }
        for (l, p) in out {
            self.send(l, p);
        }
    }
}

fn decrement_ttl(packet: &mut [u8]) {
    let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(packet);
    ip.set_hop_limit(ip.hop_limit().saturating_sub(1));
    ip.fill_checksum();
}

/// A host's network interface: the `embassy_net_driver::Driver` its stack runs on (medium IP).
pub struct HostPort {
    net: Network,
    node: NodeId,
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
        caps.max_transmission_unit = 1500;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}
