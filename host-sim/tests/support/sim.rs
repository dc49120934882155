//! The harness: peer A, peer B and the mediator, each a smoltcp [`Interface`] with its [`SocketSet`] on
//! one [`Wire`], advanced on a virtual clock without an executor.
//!
//! The clock jumps to the next event: the earliest of every interface's `poll_at`, the mediator's and
//! each connector's `poll_at`, and the next packet delivery. A host is polled only when it has
//! something to do then (a packet arrived, or one of its deadlines came), as a super-loop on a device
//! would be woken: its interface, then its application (the [`Connector`] or the mediator), again until
//! the interface has nothing more to do. Every [`ConnectEvent`] is recorded with its time, and so is
//! the state of each candidate socket after each poll of its host.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::task::Poll;

use host_sim::mediator::MediatorNode;
use p2psc::connector::{
    ConnectConfig, ConnectEvent, Connected, Connector, Error, Mediator, Sockets,
};
use p2psc::identity::{Keypair, PublicKey, SaltyVerifier};
use p2psc::proto::MediatorConfig;
use p2psc::wire::Role;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use super::wire::{Nat, Nic, NodeId, Wire};

/// The mediator's address.
pub const MEDIATOR_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The mediator's port (with [`Setup::mediators`] above one, the first's; the others follow).
pub const MEDIATOR_PORT: u16 = 7777;
/// Peer A's address.
pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Peer B's address.
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The address both peers share when they are behind one NAT ([`Setup::nat`]).
pub const PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Most steps of one run: far more than any test needs, so a loop that stops advancing is caught.
const MAX_STEPS: usize = 200_000;

/// One peer's configuration.
#[derive(Clone)]
pub struct PeerSpec {
    /// Its Ed25519 secret seed.
    pub identity: [u8; 32],
    /// The key it wants to reach.
    pub want: PublicKey,
    /// Its connector's configuration.
    pub config: ConnectConfig,
    /// How many candidate sockets it hands the connector (1 or 2).
    pub candidates: usize,
    /// The connector's random seed.
    pub seed: [u8; 32],
    /// Stop polling the connector this long after its Match (its interface keeps running): a slow
    /// device, or a peer that got the Match late.
    pub stall_after_match: Option<Duration>,
}

/// The identity seeds of A and B.
pub const A_IDENTITY: [u8; 32] = [0xA1; 32];
/// B's identity seed.
pub const B_IDENTITY: [u8; 32] = [0xB2; 32];

/// The public key of an identity seed.
pub fn key(identity: [u8; 32]) -> PublicKey {
    Keypair::from_seed(&identity).public_key()
}

impl PeerSpec {
    /// Peer A, wanting B, with default settings and one candidate socket.
    pub fn a() -> PeerSpec {
        PeerSpec {
            identity: A_IDENTITY,
            want: key(B_IDENTITY),
            config: ConnectConfig::default(),
            candidates: 1,
            seed: [0x0A; 32],
            stall_after_match: None,
        }
    }

    /// Peer B, wanting A, with default settings and one candidate socket.
    pub fn b() -> PeerSpec {
        PeerSpec {
            identity: B_IDENTITY,
            want: key(A_IDENTITY),
            seed: [0x0B; 32],
            ..PeerSpec::a()
        }
    }
}

/// A whole run's configuration.
pub struct Setup {
    /// One-way delay of every link.
    pub delay: Duration,
    /// Peer A.
    pub a: PeerSpec,
    /// Peer B, if it takes part.
    pub b: Option<PeerSpec>,
    /// Whether the mediator serves (if not, its host answers every SYN with a RST).
    pub mediator: bool,
    /// How many mediators the mediator host runs, on ports [`MEDIATOR_PORT`] and up, two apart (each mediator's probe endpoint is its port + 1); both peers list
    /// them all.
    pub mediators: u16,
    /// Whether A and B sit behind one NAT at [`PUBLIC_IP`] (port-preserving, hairpinning).
    pub nat: bool,
    /// Whether the mediators offer the relay (protocol version 2). Off unless a test asks: these tests
    /// are about the punch and its sockets, and several need the punch to end in `PunchFailed`,
    /// which a relay offered in the Match would turn into a relayed connection.
    pub relay: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            delay: Duration::from_millis(5),
            a: PeerSpec::a(),
            b: Some(PeerSpec::b()),
            mediator: true,
            mediators: 1,
            nat: false,
            relay: false,
        }
    }
}

/// A host: its place on the wire, its interface and its sockets.
pub struct Host {
    node: NodeId,
    iface: Interface,
    sockets: SocketSet<'static>,
}

/// A smoltcp interface for `ip` (a /24 with a default route) on `nic`, with a fixed random seed.
pub fn interface(nic: &mut Nic, ip: Ipv4Addr, seed: u64) -> Interface {
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = seed;
    let mut iface = Interface::new(config, nic, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::Ipv4(ip), 24))
            .expect("one address")
    });
    let [a, b, c, _] = ip.octets();
    iface
        .routes_mut()
        .add_default_ipv4_route(Ipv4Addr::new(a, b, c, 254))
        .expect("one route");
    iface
}

/// A TCP socket with `len`-byte buffers each way.
pub fn tcp_socket(len: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; len]),
        tcp::SocketBuffer::new(vec![0; len]),
    )
}

impl Host {
    fn new(wire: &mut Wire, ip: Ipv4Addr, seed: u64) -> Host {
        let node = wire.add_node(ip);
        Host {
            node,
            iface: interface(wire.nic(node), ip, seed),
            sockets: SocketSet::new(Vec::new()),
        }
    }

    fn poll_at(&mut self, now: Instant) -> Option<Instant> {
        self.iface.poll_at(now, &self.sockets)
    }

    /// Poll the interface and then `app`, again while the interface did something, handing what it
    /// sent to the wire.
    fn poll(
        &mut self,
        now: Instant,
        wire: &mut Wire,
        mut app: impl FnMut(&mut Interface, &mut SocketSet<'static>),
    ) {
        for round in 0..16 {
            let changed = self.iface.poll(now, wire.nic(self.node), &mut self.sockets);
            wire.send(now, self.node);
            if round > 0 && changed == PollResult::None {
                return;
            }
            app(&mut self.iface, &mut self.sockets);
        }
        panic!("host {} still busy after 16 rounds at {now}", self.node);
    }
}

/// A peer: its host, its connector and what it did.
pub struct Peer {
    host: Host,
    /// The sockets handed to the connector.
    pub handles: Sockets,
    connector: Connector<Keypair, SaltyVerifier, Vec<Mediator>>,
    /// Every event of the connector, with the time it was read.
    pub events: Vec<(Instant, ConnectEvent)>,
    /// When the connector returned `Poll::Ready`, and with what.
    pub outcome: Option<(Instant, Result<Connected, Error>)>,
    /// The state of every handed socket right after the connector returned `Poll::Ready`.
    pub states_at_outcome: Vec<State>,
    /// The states of the candidate sockets after each poll of this host.
    pub trace: Vec<(Instant, Vec<State>)>,
    stall: Option<Duration>,
    resume_at: Option<Instant>,
}

impl Peer {
    fn new(wire: &mut Wire, ip: Ipv4Addr, spec: &PeerSpec, mediators: u16, host_seed: u64) -> Peer {
        let mut host = Host::new(wire, ip, host_seed);
        let mediator = host.sockets.add(tcp_socket(256));
        let mut candidates = [None; 2];
        for c in candidates.iter_mut().take(spec.candidates) {
            *c = Some(host.sockets.add(tcp_socket(2048)));
        }
        let handles = Sockets {
            mediator,
            candidates,
        };
        let mediators = (0..mediators)
            .map(|i| Mediator::new(MEDIATOR_IP, MEDIATOR_PORT + 2 * i))
            .collect();
        let connector = Connector::with_mediators(
            spec.config,
            Keypair::from_seed(&spec.identity),
            SaltyVerifier,
            spec.want,
            mediators,
            handles,
            &mut p2psc::rng::Drbg::new(spec.seed),
            Instant::ZERO,
        );
        Peer {
            host,
            handles,
            connector,
            events: Vec::new(),
            outcome: None,
            states_at_outcome: Vec::new(),
            trace: Vec::new(),
            stall: spec.stall_after_match,
            resume_at: None,
        }
    }

    /// The TCP socket `handle` of this peer.
    pub fn socket(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.host.sockets.get_mut::<tcp::Socket>(handle)
    }

    /// The state of socket `handle`.
    pub fn state(&self, handle: SocketHandle) -> State {
        self.host.sockets.get::<tcp::Socket>(handle).state()
    }

    /// The candidate handles handed to the connector.
    pub fn candidates(&self) -> Vec<SocketHandle> {
        self.handles.candidates.iter().flatten().copied().collect()
    }

    /// The punch port.
    pub fn local_port(&self) -> u16 {
        self.connector.local_port()
    }

    /// The Match, as the connector reported it: when, our role, the start time.
    pub fn matched(&self) -> Option<(Instant, Role, Instant)> {
        self.events.iter().find_map(|(at, e)| match e {
            ConnectEvent::Matched { role, start_at, .. } => Some((*at, *role, *start_at)),
            _ => None,
        })
    }

    /// The connection, if the connector returned one.
    pub fn connected(&self) -> Option<Connected> {
        self.outcome.as_ref()?.1.ok()
    }

    /// The error, if the connector returned one.
    pub fn error(&self) -> Option<Error> {
        self.outcome.as_ref()?.1.err()
    }

    fn stalled(&self, now: Instant) -> bool {
        self.resume_at.is_some_and(|t| now < t)
    }

    /// When the connector wants to be polled (or to resume from its stall).
    fn wake_at(&self, now: Instant) -> Option<Instant> {
        match self.stalled(now) {
            true => self.resume_at,
            false => self.connector.poll_at(),
        }
    }

    /// Poll this peer's host if it has something to do now; returns whether it had.
    fn poll(&mut self, now: Instant, wire: &mut Wire, woken: bool) -> bool {
        let due = woken
            || self.host.poll_at(now).is_some_and(|t| t <= now)
            || self.wake_at(now).is_some_and(|t| t <= now);
        if !due {
            return false;
        }
        let Peer {
            host,
            connector,
            handles,
            events,
            outcome,
            states_at_outcome,
            stall,
            resume_at,
            ..
        } = self;
        host.poll(now, wire, |iface, sockets| {
            if resume_at.is_some_and(|t| now < t) {
                return;
            }
            if let Poll::Ready(result) = connector.poll(now, iface, sockets) {
                *outcome = Some((now, result));
                *states_at_outcome = handles
                    .all()
                    .map(|h| sockets.get::<tcp::Socket>(h).state())
                    .collect();
            }
            while let Some(event) = connector.next_event() {
                if let (ConnectEvent::Matched { .. }, Some(stall)) = (event, *stall) {
                    *resume_at = Some(now + stall);
                }
                events.push((now, event));
            }
        });
        let states = self.candidates().iter().map(|h| self.state(*h)).collect();
        self.trace.push((now, states));
        true
    }
}

/// The mediator's host, serving or not: one node per mediator port; `None` once crashed.
struct MediatorHost {
    host: Host,
    nodes: Vec<Option<MediatorNode>>,
}

impl MediatorHost {
    /// Poll the mediator's host if it has something to do now; returns whether it had.
    fn poll(&mut self, now: Instant, wire: &mut Wire, woken: bool) -> bool {
        let due = woken
            || self.host.poll_at(now).is_some_and(|t| t <= now)
            || self.poll_at().is_some_and(|t| t <= now);
        if due {
            let nodes = &mut self.nodes;
            self.host.poll(now, wire, |_, sockets| {
                for node in nodes.iter_mut().flatten() {
                    node.poll(now, sockets);
                }
            });
        }
        due
    }

    /// The earliest deadline of the nodes still running.
    fn poll_at(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .flatten()
            .filter_map(|n| n.poll_at())
            .min()
    }
}

/// One run: the wire, the mediator and the peers, on a virtual clock.
pub struct Sim {
    /// The virtual time.
    pub now: Instant,
    /// The wire (its log, its fault hook).
    pub wire: Wire,
    mediator: MediatorHost,
    /// A, then B if it takes part.
    pub peers: Vec<Peer>,
    steps: usize,
}

impl Sim {
    /// Set up a run; nothing has happened yet.
    pub fn new(setup: Setup) -> Sim {
        let mut wire = Wire::new(setup.delay);
        let mediators = setup.mediators;
        let mut peers = vec![Peer::new(&mut wire, A_IP, &setup.a, mediators, 0xA)];
        if let Some(b) = &setup.b {
            peers.push(Peer::new(&mut wire, B_IP, b, mediators, 0xB));
        }
        let mut host = Host::new(&mut wire, MEDIATOR_IP, 0xC);
        let serving = if setup.mediator { mediators } else { 0 };
        let nodes = (0..serving)
            .map(|i| {
                let mut config = MediatorConfig::default();
                config.relay.enabled = setup.relay;
                let seed = [0x0C + i as u8; 32];
                let port = MEDIATOR_PORT + 2 * i;
                Some(MediatorNode::new(port, 4, config, seed, &mut host.sockets))
            })
            .collect();
        if setup.nat {
            wire.set_nat(Nat::new(PUBLIC_IP, &[A_IP, B_IP]));
        }
        Sim {
            now: Instant::ZERO,
            wire,
            mediator: MediatorHost { host, nodes },
            peers,
            steps: 0,
        }
    }

    /// Peer A.
    pub fn a(&self) -> &Peer {
        &self.peers[0]
    }

    /// Peer B.
    pub fn b(&self) -> &Peer {
        &self.peers[1]
    }

    /// Peer `i` (0: A, 1: B), to change its sockets.
    pub fn peer_mut(&mut self, i: usize) -> &mut Peer {
        &mut self.peers[i]
    }

    /// The mediator node, to set it up.
    pub fn mediator(&mut self) -> &mut MediatorNode {
        self.mediator_at(0)
    }

    /// The mediator node on port [`MEDIATOR_PORT`] + 2 × `i`.
    pub fn mediator_at(&mut self, i: usize) -> &mut MediatorNode {
        let node = self.mediator.nodes.get_mut(i).and_then(Option::as_mut);
        node.expect("that mediator serves")
    }

    /// The mediator on port [`MEDIATOR_PORT`] + 2 × `i` dies (its connections are reset, its port closes).
    pub fn crash_mediator(&mut self, i: usize) {
        let host = &mut self.mediator;
        if let Some(mut node) = host.nodes.get_mut(i).and_then(Option::take) {
            node.crash(&mut host.host.sockets);
        }
    }

    /// Whether every peer's connector has returned.
    pub fn all_done(&self) -> bool {
        self.peers.iter().all(|p| p.outcome.is_some())
    }

    /// Advance until `done` holds (then `true`) or the next event is past `deadline` (then the clock
    /// stops at `deadline`, `false`).
    pub fn run_until(&mut self, deadline: Instant, mut done: impl FnMut(&Sim) -> bool) -> bool {
        if self.steps == 0 {
            self.step(); // everything starts at time zero
        }
        loop {
            if done(self) {
                return true;
            }
            match self.next_event() {
                Some(next) if next <= deadline => self.now = next,
                _ => {
                    self.now = self.now.max(deadline);
                    return false;
                }
            }
            self.step();
        }
    }

    /// Advance until every connector has returned; panics with the run's story if they have not by
    /// `deadline`.
    pub fn run_to_outcomes(&mut self, deadline: Instant) {
        if !self.run_until(deadline, Sim::all_done) {
            panic!("no outcome by {deadline}:\n{}", self.story());
        }
    }

    /// Advance by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        self.run_until(deadline, |_| false);
    }

    fn step(&mut self) {
        self.steps += 1;
        assert!(self.steps < MAX_STEPS, "runaway run:\n{}", self.story());
        let now = self.now;
        let arrived = self.wire.deliver(now);
        // Every host starts up in the first step (the mediator starts listening then).
        let woken = |node| self.steps == 1 || arrived.contains(&node);
        let mut woken: Vec<bool> = self.peers.iter().map(|p| woken(p.host.node)).collect();
        woken.push(self.steps == 1 || arrived.contains(&self.mediator.host.node));
        // A host whose deadline is still due after its poll (a connector that asks to be polled again
        // at once) is polled again at the same instant, as a super-loop would; forever is a busy loop.
        for _ in 0..8 {
            let mut polled = false;
            for (peer, woken) in self.peers.iter_mut().zip(&woken) {
                polled |= peer.poll(now, &mut self.wire, *woken);
            }
            polled |= self
                .mediator
                .poll(now, &mut self.wire, woken[self.peers.len()]);
            if !polled {
                return;
            }
            woken.fill(false);
        }
        panic!(
            "a host wants polling again and again at {now}:\n{}",
            self.story()
        );
    }

    /// The next time anything happens, strictly after now.
    fn next_event(&mut self) -> Option<Instant> {
        let now = self.now;
        let mut times: Vec<Instant> = self.wire.next_delivery().into_iter().collect();
        for peer in &mut self.peers {
            times.extend(peer.host.poll_at(now));
            times.extend(peer.wake_at(now));
        }
        times.extend(self.mediator.host.poll_at(now));
        times.extend(self.mediator.poll_at());
        // Due now only when a test touched a socket between runs: then step now.
        times.into_iter().min().map(|next| next.max(now))
    }

    /// What happened, for a failing test's message: each peer's events and outcome, and the wire.
    pub fn story(&self) -> String {
        let mut s = String::new();
        for (name, peer) in ["A", "B"].iter().zip(&self.peers) {
            for (at, e) in &peer.events {
                let _ = writeln!(s, "{at} {name}: {e}");
            }
            let _ = writeln!(s, "{name} outcome: {:?}", peer.outcome);
        }
        for seg in self.wire.log() {
            let fate = match seg.delivered {
                Some((at, src, dst)) => format!("arrives {at} as {src} > {dst}"),
                None => "lost".to_string(),
            };
            let _ = writeln!(s, "{} {} ({fate})", seg.sent_at, seg.tcp);
        }
        s
    }
}
