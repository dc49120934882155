//! One simulated run: two peers, their NATs, the internet and a mediator, from a [`Scenario`] to a
//! [`Report`].
//!
//! # Topology
//!
//! ```text
//!  peer A ─lan─ switch ─lan─ NAT A ═══access A═══╗                   ╔═══access B═══ NAT B ─lan─ switch ─lan─ peer B
//!  192.168.1.2            198.51.100.1           ╠═ internet router ═╣           192.0.2.1              192.168.1.2
//!                                                ║                   ║
//!                                                ╚═════mediator══════╝ mediator 203.0.113.10:7777
//! ```
//!
//! Both homes use the same private subnet on purpose (as real homes do). Every link is one hop with the
//! one-way delay of [`Delays`] in each direction: a LAN hop (host–switch, switch–router) takes
//! `lan`, the link from home X to the internet router `access_x`, the link from the router to the
//! mediator `mediator`. So with the defaults (25 ms, 25 ms, 25 ms, LAN 0) every peer is 50 ms one way
//! from the mediator and from the other peer: both round trips are 100 ms. Jitter applies to the
//! internet links; loss applies where packets leave the internet router, so every path (peer–mediator,
//! peer–peer) loses `loss` of its packets in each direction.
//!
//! [`Layout::OneNat`] puts both peers on one LAN (192.168.1.2 and .3) behind one NAT; [`Layout::Public`]
//! gives them public addresses with no NAT at all.
//!
//! A home LAN is Ethernet: peers resolve the router and each other with ARP, every ARP frame taking
//! the LAN hop's delay plus [`Delays::arp`]; with [`Scenario::knows_mac`] one peer starts with the
//! other's MAC address already cached. The presets' routers track TCP as Linux conntrack does
//! ([`crate::nat::Tracking`]). [`Scenario::late_peer`] and [`Scenario::same_lan_race`] are the two
//! situations a real network showed those two matter in.
//!
//! # Set-up latency and its physical limit
//!
//! The set-up latency runs from the mediator's second verified registration (the moment it can match the
//! pair) to the moment both peers have authenticated each other. No protocol can beat
//! `0.5 × mediator RTT + 1.5 × peer RTT`: the Match needs half a mediator round trip to reach the
//! farther peer, the crossing SYNs and SYN-ACKs one peer round trip, and each side's authentication
//! message, sent when its connection is established, half a peer round trip more. [`Report::limit`] is
//! that figure from the configured delays (without jitter; the larger of the two mediator round trips).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::{Read, Write};
use p2psc::connector::{
    self, connect_observed, ConnectEvent, ConnectResources, Mediator, Path, Request,
    SecureConnection,
};
use p2psc::identity::{PublicKey, Signer};
use p2psc::net::{
    self, Config, IpEndpoint, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4,
};
use p2psc::proto::channel::MAX_RECORD_LEN;
use p2psc::proto::MediatorConfig;
use p2psc::rng::Drbg;
use p2psc::wire::Role;

use crate::clock;
use crate::crypto::SimSigner;
use crate::exec::{join, Executor};
use crate::mediator::{self, MediatorEvent, MediatorNode};
use crate::nat::{Nat, NatConfig};
use crate::network::{HostPort, LinkParams, Network, NodeId, TraceRecord};
use crate::rng::Rng;
use crate::timeline::{self, Event, Log, Side, What, Who};

/// The mediator's address.
pub const MEDIATOR_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The mediator's TCP port.
pub const MEDIATOR_PORT: u16 = 7777;
/// The internet router's address (the mediator's gateway).
const CORE_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Public address of NAT A (and of the one NAT in [`Layout::OneNat`]).
pub const NAT_A_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Public address of NAT B.
pub const NAT_B_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A home router's LAN address.
const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// Name of NAT A in timelines.
pub const NAT_A: &str = "NAT A";
/// Name of NAT B in timelines.
pub const NAT_B: &str = "NAT B";
/// Name of the shared NAT of [`Layout::OneNat`].
pub const NAT_SHARED: &str = "NAT";

/// Where the peers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each peer behind its own NAT.
    TwoNats(NatConfig, NatConfig),
    /// Both peers on one LAN behind one NAT.
    OneNat(NatConfig),
    /// No NAT: both peers have public addresses.
    Public,
}

/// Link delays, jitter and loss (see the module doc for which link is which).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delays {
    /// One-way delay between home A and the internet router.
    pub access_a: Duration,
    /// One-way delay between home B and the internet router.
    pub access_b: Duration,
    /// One-way delay between the internet router and the mediator.
    pub mediator: Duration,
    /// One-way delay of each LAN hop.
    pub lan: Duration,
    /// Jitter on each internet link (uniform in `[0, jitter]`, order kept).
    pub jitter: Duration,
    /// Loss probability of each path, each direction.
    pub loss: f64,
    /// Extra delay of each ARP frame on each LAN hop (slow neighbour discovery).
    pub arp: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Delays {
            access_a: Duration::from_millis(25),
            access_b: Duration::from_millis(25),
            mediator: Duration::from_millis(25),
            lan: Duration::from_millis(0),
            jitter: Duration::from_millis(0),
            loss: 0.0,
            arp: Duration::from_millis(0),
        }
    }
}

impl Delays {
    /// Every path (peer–mediator, peer–peer) this round-trip time: each internet link a quarter of it.
    pub fn symmetric(rtt: Duration) -> Delays {
        let quarter = rtt / 4;
        Delays {
            access_a: quarter,
            access_b: quarter,
            mediator: quarter,
            ..Delays::default()
        }
    }
}

/// One peer.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Secret seed of its identity key.
    pub identity: [u8; 32],
    /// The key it asks for (default: the other peer's).
    pub want: Option<PublicKey>,
    /// Present this key to the mediator while signing with `identity` (an impostor).
    pub claim: Option<PublicKey>,
    /// When it calls `connect`; `None`: never.
    pub start: Option<Duration>,
    /// Give `connect` a second candidate socket, so the LAN and public paths race.
    pub race: bool,
    /// Stop polling for this long right after the Match (a slow device): neither its connector nor
    /// its network stack runs, so its first SYN goes out late and packets wait for it.
    pub stall_after_match: Option<Duration>,
    /// Its `connect`'s configuration.
    pub config: connector::Config,
}

impl PeerSpec {
    /// A peer with identity seed `[n; 32]` that starts at `start_ms`.
    pub fn new(n: u8, start_ms: u64) -> PeerSpec {
        PeerSpec {
            identity: [n; 32],
            want: None,
            claim: None,
            start: Some(Duration::from_millis(start_ms)),
            race: true,
            stall_after_match: None,
            config: connector::Config::default(),
        }
    }

    /// Its public key.
    pub fn key(&self) -> PublicKey {
        SimSigner::from_seed(&self.identity).public_key()
    }
}

/// Everything one run depends on.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Where the peers are and their NATs.
    pub layout: Layout,
    /// Link properties.
    pub delays: Delays,
    /// Seed of every random choice (ports, sequence numbers, keys' nonces, jitter, loss).
    pub seed: u64,
    /// Peer A.
    pub a: PeerSpec,
    /// Peer B.
    pub b: PeerSpec,
    /// The mediator's policy.
    pub mediator: MediatorConfig,
    /// A lying mediator: enter registrations of the first key as the second.
    pub impersonate: Option<(PublicKey, PublicKey)>,
    /// Record every packet ([`Report::trace`]).
    pub trace: bool,
    /// Stop the run (panic) past this virtual time.
    pub max_time: Duration,
    /// With [`Layout::OneNat`]: this peer has the other's MAC address in its ARP cache when the run
    /// starts (the other answered its ARP request before and has since restarted), so its first packet
    /// to the other's LAN address leaves at once while the other's first packet back waits for ARP.
    pub knows_mac: Option<Side>,
}

impl Scenario {
    /// Two peers behind typical home routers, B starting `b_start_ms` after A.
    pub fn home_routers(seed: u64) -> Scenario {
        Scenario {
            layout: Layout::TwoNats(NatConfig::home_router(), NatConfig::home_router()),
            delays: Delays::default(),
            seed,
            a: PeerSpec::new(1, 0),
            b: PeerSpec::new(2, 1000),
            mediator: MediatorConfig::default(),
            impersonate: None,
            trace: false,
            max_time: Duration::from_secs(600),
            knows_mac: None,
        }
    }

    /// Two peers behind symmetric NATs (address-and-port-dependent mapping, random ports,
    /// address-and-port-dependent filtering, Linux conntrack): no punch can connect them, both probes
    /// show it, and the pair is relayed at once (protocol §14.3).
    pub fn symmetric_nats(seed: u64) -> Scenario {
        let symmetric = NatConfig {
            mapping: crate::nat::Mapping::AddressPortDependent,
            allocation: crate::nat::Allocation::Random,
            ..NatConfig::home_router()
        };
        let mut s = Scenario::home_routers(seed);
        s.layout = Layout::TwoNats(symmetric, symmetric);
        s
    }

    /// Two peers behind `router`s (default links), the `late` one stalling `stall` after its Match (a
    /// slow device): the other's first attempt has long ended when its SYN comes, so it meets a router
    /// whose conntrack entry remembers the first attempt.
    pub fn late_peer(seed: u64, router: NatConfig, late: Side, stall: Duration) -> Scenario {
        let mut s = Scenario::home_routers(seed);
        s.layout = Layout::TwoNats(router, router);
        match late {
            Side::A => s.a.stall_after_match = Some(stall),
            Side::B => s.b.stall_after_match = Some(stall),
        }
        s
    }

    /// Both peers on one LAN behind a home router (LAN hops of 1 ms), `knower` already having the
    /// other's MAC address: its LAN SYN leaves at the start time, the other's waits for ARP.
    pub fn same_lan_race(seed: u64, knower: Side) -> Scenario {
        let mut s = Scenario::home_routers(seed);
        s.layout = Layout::OneNat(NatConfig::home_router());
        s.delays = Delays {
            lan: Duration::from_millis(1),
            ..Delays::default()
        };
        s.knows_mac = Some(knower);
        s
    }

    /// Number of LAN hops between a peer and the internet router, and between the two peers.
    fn hops(&self) -> (u32, Option<u32>) {
        match self.layout {
            Layout::TwoNats(..) => (2, None),
            Layout::OneNat(_) => (2, Some(2)),
            Layout::Public => (0, None),
        }
    }

    /// Round-trip time between the mediator and the farther peer, from the configured delays.
    pub fn mediator_rtt(&self) -> Duration {
        let d = &self.delays;
        let (hops, _) = self.hops();
        let access = match self.layout {
            Layout::OneNat(_) => d.access_a,
            _ => d.access_a.max(d.access_b),
        };
        (d.lan * hops + access + d.mediator) * 2
    }

    /// Round-trip time between the peers (on the LAN in [`Layout::OneNat`]).
    pub fn peer_rtt(&self) -> Duration {
        let d = &self.delays;
        match self.hops() {
            (_, Some(lan_hops)) => d.lan * lan_hops * 2,
            (hops, None) => (d.lan * (2 * hops) + d.access_a + d.access_b) * 2,
        }
    }

    /// The physical limit of the set-up latency: `0.5 × mediator RTT + 1.5 × peer RTT`.
    pub fn limit(&self) -> Duration {
        self.mediator_rtt() / 2 + self.peer_rtt() * 3 / 2
    }
}

/// The connection a peer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Its role.
    pub role: Role,
    /// Direct, or relayed through the mediator.
    pub path: Path,
    /// The peer's endpoint as seen from here.
    pub remote: IpEndpoint,
    /// The derived key.
    pub session_key: [u8; 32],
}

/// How one peer fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// `None` if it never called `connect`.
    pub result: Option<Result<Session, p2psc::Error>>,
    /// Attempts of its busiest candidate socket (1: the first SYN worked).
    pub attempts: u16,
    /// Attempts of the candidate that won (0 if none did).
    pub winner_attempts: u16,
    /// When it authenticated the peer.
    pub authenticated_at: Option<Instant>,
    /// When `connect` returned.
    pub done_at: Option<Instant>,
    /// Whether the application data made it both ways.
    pub echoed: bool,
}

impl PeerReport {
    /// Its error, if `connect` failed.
    pub fn error(&self) -> Option<p2psc::Error> {
        self.result.and_then(|r| r.err())
    }

    /// Its session, if `connect` succeeded.
    pub fn session(&self) -> Option<Session> {
        self.result.and_then(|r| r.ok())
    }
}

/// What happened in a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Peer A.
    pub a: PeerReport,
    /// Peer B.
    pub b: PeerReport,
    /// The timeline.
    pub events: Vec<Event>,
    /// Every packet, if the scenario asked for it.
    pub trace: Vec<TraceRecord>,
    /// When the mediator verified the second registration.
    pub second_registration: Option<Instant>,
    /// From the second registration to both peers authenticated.
    pub setup: Option<Duration>,
    /// From the later peer's Hello (sent as its mediator connection comes up) to both peers
    /// authenticated: the measure of protocol §14.7's bound on a relay, `3 × mediator RTT`.
    pub setup_from_hello: Option<Duration>,
    /// The path both peers got, if both connected on the same one.
    pub path: Option<Path>,
    /// The physical limit of `setup`.
    pub limit: Duration,
    /// Mediator round trip (farther peer).
    pub mediator_rtt: Duration,
    /// Peer round trip.
    pub peer_rtt: Duration,
    /// Pairs the mediator matched.
    pub matches: u64,
    /// The NATs' names, A's first.
    pub nat_names: Vec<&'static str>,
}

impl Report {
    /// Both peers authenticated and exchanged data.
    pub fn connected(&self) -> bool {
        self.a.session().is_some() && self.b.session().is_some() && self.a.echoed && self.b.echoed
    }

    /// The set-up latency in peer round trips.
    pub fn setup_in_rtts(&self) -> Option<f64> {
        let rtt = self.peer_rtt.as_micros() as f64;
        self.setup.map(|s| s.as_micros() as f64 / rtt)
    }

    /// The timeline as text (`all`: with detail events).
    pub fn timeline(&self, all: bool) -> String {
        timeline::render(&self.events, all)
    }

    /// The timeline as a mermaid sequence diagram.
    pub fn mermaid(&self) -> String {
        timeline::mermaid(&self.events, &self.nat_names)
    }
}

/// The memory of one peer's `connect`, with one candidate socket or two (racing).
struct Buffers {
    single: Box<ConnectResources<2048, 2048, 1, MAX_RECORD_LEN>>,
    race: Box<ConnectResources<2048, 2048, 2, MAX_RECORD_LEN>>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            single: Box::new(ConnectResources::new()),
            race: Box::new(ConnectResources::new()),
        }
    }

    /// Connect on the resources with two candidates if `race`, else on those with one.
    async fn connect<'a>(
        &'a mut self,
        race: bool,
        stack: Stack<'a>,
        request: &Request<impl Signer>,
        rng: &mut Drbg,
        observe: impl FnMut(ConnectEvent),
    ) -> Result<SecureConnection<'a>, p2psc::Error> {
        match race {
            true => connect_observed(stack, &mut self.race, request, rng, observe).await,
            false => connect_observed(stack, &mut self.single, request, rng, observe).await,
        }
    }
}

fn stack_config(addr: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Config {
    Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(addr, prefix),
        gateway: Some(gateway),
        dns_servers: Default::default(),
    })
}

/// The message the leader sends and the follower echoes in upper case.
fn greeting(side: Side) -> String {
    format!("hello from {side}")
}

/// Until when a peer is stalled (`None`: running).
type Gate = Rc<Cell<Option<Instant>>>;

/// Runs `inner`, except while its gate holds a time still to come: a device that stopped polling.
struct Stall<F: Future> {
    inner: Pin<Box<F>>,
    gate: Gate,
    timer: Option<Pin<Box<Timer>>>,
}

impl<F: Future> Stall<F> {
    fn new(inner: F, gate: &Gate) -> Stall<F> {
        Stall {
            inner: Box::pin(inner),
            gate: gate.clone(),
            timer: None,
        }
    }
}

impl<F: Future> Future for Stall<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Some(until) = self.gate.get() {
            if Instant::now() < until {
                let timer = self.timer.get_or_insert_with(|| Box::pin(Timer::at(until)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.timer = None;
        }
        self.inner.as_mut().poll(cx)
    }
}

#[allow(clippy::too_many_arguments)]
async fn peer(
    side: Side,
    stack: Stack<'_>,
    spec: &PeerSpec,
    want: PublicKey,
    bufs: &mut Buffers,
    seed: [u8; 32],
    log: Log,
    gate: Gate,
) -> PeerReport {
    let mut report = PeerReport {
        result: None,
        attempts: 0,
        winner_attempts: 0,
        authenticated_at: None,
        done_at: None,
        echoed: false,
    };
    let Some(start) = spec.start else {
        return report;
    };
    Timer::after(start).await;
    let mut signer = SimSigner::from_seed(&spec.identity);
    if let Some(claim) = spec.claim {
        signer = signer.claiming(claim);
    }
    let mediator = Mediator::new(MEDIATOR_ADDR, MEDIATOR_PORT);
    let who = Who::Peer(side);
    log.push(
        who.clone(),
        What::Start {
            mediator: SocketAddrV4::new(MEDIATOR_ADDR, MEDIATOR_PORT).to_string(),
        },
    );
    let attempts = Cell::new(0u16);
    let per_target: RefCell<Vec<(String, u16)>> = RefCell::new(Vec::new());
    let authenticated = Cell::new(None);
    let request = Request {
        config: spec.config,
        ..Request::new(&signer, want, mediator)
    };
    let mut rng = Drbg::new(seed);
    let observe = |e| {
        match e {
            ConnectEvent::Matched { .. } => {
                if let Some(stall) = spec.stall_after_match {
                    gate.set(Some(Instant::now() + stall));
                }
            }
            ConnectEvent::Dialing(target, n) => {
                attempts.set(attempts.get().max(n));
                per_target.borrow_mut().push((target.to_string(), n));
            }
            ConnectEvent::Authenticated(_) => authenticated.set(Some(Instant::now())),
            _ => {}
        }
        log.push(who.clone(), What::Connect(e));
    };
    let result = bufs
        .connect(spec.race, stack, &request, &mut rng, observe)
        .await;
    report.attempts = attempts.get();
    report.done_at = Some(Instant::now());
    // A relayed connector does not always report `Authenticated` (the leader whose result completes
    // outside a receive); `connect` returns in the same poll as it authenticates.
    let returned = result.as_ref().ok().and(report.done_at);
    report.authenticated_at = authenticated.get().or(returned);
    let mut conn = match result {
        Ok(c) => c,
        Err(e) => {
            log.push(who, What::Failed(e));
            report.result = Some(Err(e));
            return report;
        }
    };
    report.result = Some(Ok(Session {
        role: conn.role,
        path: conn.path,
        remote: conn.remote,
        session_key: conn.session_key.0,
    }));
    let winner = conn.remote.to_string();
    report.winner_attempts = per_target
        .borrow()
        .iter()
        .filter(|(target, _)| *target == winner)
        .map(|&(_, n)| n)
        .max()
        .unwrap_or(0);
    let exchange = async {
        if conn.role == Role::Leader {
            let msg = greeting(side);
            conn.socket.write_all(msg.as_bytes()).await.ok()?;
            log.push(who.clone(), What::Sent(msg.clone()));
            conn.socket.flush().await.ok()?;
            let mut back = vec![0; msg.len()];
            conn.socket.read_exact(&mut back).await.ok()?;
            let back = String::from_utf8_lossy(&back).into_owned();
            log.push(who.clone(), What::Received(back.clone()));
            (back == msg.to_uppercase()).then_some(())
        } else {
            let other = if side == Side::A { Side::B } else { Side::A };
            let mut msg = vec![0; greeting(other).len()];
            conn.socket.read_exact(&mut msg).await.ok()?;
            let msg = String::from_utf8_lossy(&msg).into_owned();
            log.push(who.clone(), What::Received(msg.clone()));
            let reply = msg.to_uppercase();
            conn.socket.write_all(reply.as_bytes()).await.ok()?;
            log.push(who.clone(), What::Sent(reply));
            conn.socket.flush().await.ok()?;
            Some(())
        }
    };
    report.echoed = embassy_time::with_timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
        .is_some();
    // Close gracefully (end-of-stream record and FIN both ways), so neither side's last segment is
    // left unacknowledged.
    let _ = embassy_time::with_timeout(Duration::from_secs(5), async {
        let _ = conn.socket.close().await;
        let mut sink = [0u8; 64];
        while matches!(conn.socket.read(&mut sink).await, Ok(n) if n > 0) {}
        let _ = conn.socket.flush().await;
    })
    .await;
    report
}

/// Run a scenario to the end (both peers done) and report.
///
/// # Panics
/// If the run exceeds `scenario.max_time` of virtual time (a bug: every path of `connect` has a
/// deadline).
pub fn run(s: &Scenario) -> Report {
    run_with(s, |_, _| {})
}

/// [`run`], with a panic during the run (a network stack's, say) caught and returned as its message.
pub fn try_run(s: &Scenario) -> Result<Report, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(s))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into())
    })
}

/// What became of a run, in a word or two: `connected`, the peers' errors, or the panic.
pub fn outcome(result: &Result<Report, String>) -> String {
    match result {
        Ok(r) if r.connected() => "connected".into(),
        Ok(r) if r.a.session().is_some() && r.b.session().is_some() => {
            "authenticated, data not echoed".into()
        }
        Ok(r) => {
            let error = |p: &PeerReport| match p.error() {
                Some(e) => format!("{e:?}"),
                None if p.session().is_some() => "authenticated".into(),
                None => "-".into(),
            };
            format!("A {} / B {}", error(&r.a), error(&r.b))
        }
        Err(panic) => format!("panic: {panic}"),
    }
}

/// [`run`], letting `setup` adjust the network (fault injection) once it is built; it gets the network
/// and the NAT nodes.
pub fn run_with(s: &Scenario, setup: impl FnOnce(&Network, &[NodeId])) -> Report {
    clock::reset();
    let master = Rng::new(s.seed);
    let log = Log::new();
    let network = Network::new(master.fork("network"), log.clone(), s.trace);
    let topology = Topology::build(s, &network, &master);
    if let Some(knower) = s.knows_mac {
        assert!(
            matches!(s.layout, Layout::OneNat(_)),
            "knows_mac needs both peers on one LAN"
        );
        let (a, b) = (topology.peer_a.node, topology.peer_b.node);
        match knower {
            Side::A => network.announce(b, a),
            Side::B => network.announce(a, b),
        }
    }
    setup(&network, &topology.nat_nodes);
    let outcome = simulate(s, &network, &topology, &master, &log);
    report(
        s,
        outcome,
        log.events(),
        network.trace(),
        topology.nat_names,
    )
}

/// A host on the network, and how its stack is addressed.
#[derive(Debug, Clone, Copy)]
struct Host {
    node: NodeId,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
}

impl Host {
    /// A host on a home LAN.
    fn on_lan(node: NodeId, addr: Ipv4Addr) -> Host {
        Host {
            node,
            addr,
            prefix: 24,
            gateway: LAN_GATEWAY,
        }
    }

    fn stack_config(&self) -> Config {
        stack_config(self.addr, self.prefix, self.gateway)
    }
}

/// The network of the module doc, as a run needs it.
struct Topology {
    mediator: Host,
    peer_a: Host,
    peer_b: Host,
    /// The NATs, A's first.
    nat_nodes: Vec<NodeId>,
    /// Their names, in the same order.
    nat_names: Vec<&'static str>,
}

impl Topology {
    /// Build the scenario's topology on `network`: the internet router, the mediator, the homes.
    fn build(s: &Scenario, network: &Network, master: &Rng) -> Topology {
        let mut builder = Builder {
            network,
            master,
            delays: s.delays,
            core: network.add_router("internet"),
            nat_nodes: Vec::new(),
            nat_names: Vec::new(),
        };
        let mediator = network.add_host("mediator");
        builder.uplink(mediator, MEDIATOR_ADDR, s.delays.mediator);
        let (peer_a, peer_b) = builder.peers(s.layout);
        Topology {
            mediator: Host {
                node: mediator,
                addr: MEDIATOR_ADDR,
                prefix: 24,
                gateway: CORE_ADDR,
            },
            peer_a,
            peer_b,
            nat_nodes: builder.nat_nodes,
            nat_names: builder.nat_names,
        }
    }
}

/// Adds nodes and links to a network, with the link properties of the scenario's [`Delays`].
struct Builder<'a> {
    network: &'a Network,
    master: &'a Rng,
    delays: Delays,
    /// The internet router.
    core: NodeId,
    nat_nodes: Vec<NodeId>,
    nat_names: Vec<&'static str>,
}

impl Builder<'_> {
    fn lan(&self) -> LinkParams {
        LinkParams {
            arp: self.delays.arp,
            ..LinkParams::delay(self.delays.lan)
        }
    }

    /// A link towards the internet router.
    fn inet(&self, delay: Duration) -> LinkParams {
        LinkParams {
            jitter: self.delays.jitter,
            ..LinkParams::delay(delay)
        }
    }

    /// A link from the internet router: loss where packets leave it, once per path and direction.
    fn inet_down(&self, delay: Duration) -> LinkParams {
        LinkParams {
            loss: self.delays.loss,
            ..self.inet(delay)
        }
    }

    /// Connect `node`, at public address `addr`, to the internet router (one-way `delay`).
    fn uplink(&self, node: NodeId, addr: Ipv4Addr, delay: Duration) {
        self.network.uplink(
            node,
            addr,
            self.core,
            self.inet(delay),
            self.inet_down(delay),
        );
    }

    /// The peers' hosts, and the NATs in front of them.
    fn peers(&mut self, layout: Layout) -> (Host, Host) {
        let d = self.delays;
        let private = |n: u8| Ipv4Addr::new(192, 168, 1, n);
        match layout {
            Layout::TwoNats(na, nb) => {
                let a = self.home(NAT_A, na, NAT_A_ADDR, d.access_a, &[("peer A", private(2))]);
                let b = self.home(NAT_B, nb, NAT_B_ADDR, d.access_b, &[("peer B", private(2))]);
                (a[0], b[0])
            }
            Layout::OneNat(n) => {
                let hosts = [("peer A", private(2)), ("peer B", private(3))];
                let hosts = self.home(NAT_SHARED, n, NAT_A_ADDR, d.access_a, &hosts);
                (hosts[0], hosts[1])
            }
            Layout::Public => (
                self.public_host("peer A", Ipv4Addr::new(198, 51, 100, 2), d.access_a),
                self.public_host("peer B", Ipv4Addr::new(192, 0, 2, 2), d.access_b),
            ),
        }
    }

    /// One home: a switch, the NAT `name` between it and the internet (one-way `access`), and `hosts`
    /// on the switch.
    fn home(
        &mut self,
        name: &'static str,
        config: NatConfig,
        public: Ipv4Addr,
        access: Duration,
        hosts: &[(&str, Ipv4Addr)],
    ) -> Vec<Host> {
        let network = self.network;
        let switch = network.add_switch(&format!("{name} LAN"));
        let nat = network.add_nat(name, Nat::new(config, public, self.master.fork(name)));
        network.attach(nat, LAN_GATEWAY, switch, self.lan(), self.lan());
        self.uplink(nat, public, access);
        self.nat_nodes.push(nat);
        self.nat_names.push(name);
        hosts
            .iter()
            .map(|&(host, addr)| {
                let node = network.add_host(host);
                network.attach(node, addr, switch, self.lan(), self.lan());
                Host::on_lan(node, addr)
            })
            .collect()
    }

    /// A host with a public address, straight on the internet router (one-way `access`).
    fn public_host(&self, name: &str, addr: Ipv4Addr, access: Duration) -> Host {
        let node = self.network.add_host(name);
        self.uplink(node, addr, access);
        Host {
            node,
            addr,
            prefix: 32,
            gateway: CORE_ADDR,
        }
    }
}

/// What the simulation of a run produced.
struct Outcome {
    a: PeerReport,
    b: PeerReport,
    /// Pairs the mediator matched.
    matches: u64,
}

/// Run the mediator and both peers on `topology` until both peers are done.
fn simulate(
    s: &Scenario,
    network: &Network,
    topology: &Topology,
    master: &Rng,
    log: &Log,
) -> Outcome {
    let stack_seed = |label: &str| master.fork(label).next_u64();
    let mut res_m = StackResources::<8>::new();
    let (mstack, mut mrunner) = stack(
        network,
        &topology.mediator,
        &mut res_m,
        stack_seed("stack mediator"),
    );
    let node = RefCell::new(mediator_node(s, mstack, master));
    let mut res_a = StackResources::<8>::new();
    let (astack, mut arunner) = stack(network, &topology.peer_a, &mut res_a, stack_seed("stack A"));
    let mut res_b = StackResources::<8>::new();
    let (bstack, mut brunner) = stack(network, &topology.peer_b, &mut res_b, stack_seed("stack B"));
    let (mut bufs_a, mut bufs_b) = (Buffers::new(), Buffers::new());

    let (gate_a, gate_b): (Gate, Gate) = Default::default();
    let mut ex = Executor::new();
    ex.max_steps = usize::MAX;
    ex.max_time = s.max_time;
    ex.spawn(network.run());
    ex.spawn(async move { mrunner.run().await });
    ex.spawn(Stall::new(async move { arunner.run().await }, &gate_a));
    ex.spawn(Stall::new(async move { brunner.run().await }, &gate_b));
    let mlog = log.clone();
    ex.spawn(mediator::serve(mstack, &node, move |e| {
        mlog.push(Who::Mediator, What::Mediator(e.clone()))
    }));
    let (a, b) = ex.run(join(
        peer_task(s, Side::A, astack, &mut bufs_a, master, log, &gate_a),
        peer_task(s, Side::B, bstack, &mut bufs_b, master, log, &gate_b),
    ));
    drop(ex);
    let matches = node.borrow().table().stats().matches;
    Outcome { a, b, matches }
}

/// A network stack for `host`, on `resources`.
fn stack<'r>(
    network: &Network,
    host: &Host,
    resources: &'r mut StackResources<8>,
    seed: u64,
) -> (Stack<'r>, Runner<'r, HostPort>) {
    net::new(
        network.port(host.node),
        host.stack_config(),
        resources,
        seed,
    )
}

/// The mediator, on `stack`.
fn mediator_node(s: &Scenario, stack: Stack<'_>, master: &Rng) -> MediatorNode {
    let mut node = stack.with_mut(|_, sockets| {
        MediatorNode::new(
            MEDIATOR_PORT,
            4,
            s.mediator,
            master.fork("mediator").bytes32(),
            sockets,
        )
    });
    if let Some((real, claimed)) = s.impersonate {
        node.impersonate(real, claimed);
    }
    node
}

/// Peer `side` of the scenario, stalled while its gate says so.
fn peer_task<'a>(
    s: &'a Scenario,
    side: Side,
    stack: Stack<'a>,
    bufs: &'a mut Buffers,
    master: &Rng,
    log: &Log,
    gate: &Gate,
) -> Stall<impl Future<Output = PeerReport> + 'a> {
    let (spec, other, label) = match side {
        Side::A => (&s.a, &s.b, "connect A"),
        Side::B => (&s.b, &s.a, "connect B"),
    };
    let want = spec.want.unwrap_or_else(|| other.key());
    let seed = master.fork(label).bytes32();
    let run = peer(
        side,
        stack,
        spec,
        want,
        bufs,
        seed,
        log.clone(),
        gate.clone(),
    );
    Stall::new(run, gate)
}

/// The report of a run: the peers' reports, the timeline, and the set-up latency it shows.
fn report(
    s: &Scenario,
    outcome: Outcome,
    events: Vec<Event>,
    trace: Vec<TraceRecord>,
    nat_names: Vec<&'static str>,
) -> Report {
    let Outcome { a, b, matches } = outcome;
    let path = match (a.session(), b.session()) {
        (Some(x), Some(y)) if x.path == y.path => Some(x.path),
        _ => None,
    };
    let second_registration = events
        .iter()
        .filter(|e| matches!(e.what, What::Mediator(MediatorEvent::Verified { .. })))
        .nth(1)
        .map(|e| e.at);
    let authenticated = a
        .authenticated_at
        .zip(b.authenticated_at)
        .map(|(x, y)| x.max(y));
    let setup = second_registration
        .zip(authenticated)
        .map(|(t, done)| done.duration_since(t));
    // Each peer's last Hello: its mediator connection's last coming up.
    let hello = |side: Side| {
        events
            .iter()
            .rev()
            .filter(|e| e.who == Who::Peer(side))
            .find(|e| matches!(e.what, What::Connect(ConnectEvent::MediatorConnected(_))))
            .map(|e| e.at)
    };
    let later_hello = hello(Side::A).zip(hello(Side::B)).map(|(x, y)| x.max(y));
    let setup_from_hello = later_hello
        .zip(authenticated)
        .map(|(t, done)| done.duration_since(t));
    Report {
        a,
        b,
        events,
        trace,
        second_registration,
        setup,
        setup_from_hello,
        path,
        limit: s.limit(),
        mediator_rtt: s.mediator_rtt(),
        peer_rtt: s.peer_rtt(),
        matches,
        nat_names,
    }
}
