//! The p2psc mediator: the public rendezvous server through which two peers behind NATs learn each
//! other's public endpoint and a common moment to punch a direct TCP connection.
//!
//! All protocol logic lives in p2psc's sans-IO state machines ([`p2psc::proto::mediator`]): a
//! [`Session`](p2psc::proto::Session) per connection and one [`Table`](p2psc::proto::Table) of waiting
//! peers. This crate is only their I/O shell, on tokio:
//!
//! - one task per connection owns its socket and its `Session`, and sleeps until the session's
//!   `poll_at`, the next bytes, a notice in its mailbox, or shutdown;
//! - the `Table` and the mailboxes (one `oneshot` per waiting connection, keyed by
//!   [`ConnId`](p2psc::proto::ConnId)) sit behind one `std::sync::Mutex`, held only for a few hash-map
//!   operations;
//! - a ticker task expires waits at the table's `poll_at`;
//! - signatures are checked with ed25519-dalek ([`DalekVerifier`]), which accepts exactly what p2psc's
//!   salty verifier accepts, about 50 times faster on a host (~42 µs against 2–3 ms);
//! - challenge nonces come from the OS random number generator, time from one monotonic clock.
//!
//! Version 2 (`doc/mediator.md` §15–§16): a second listener per address (the probe endpoint, port + 1 by
//! default) drives the core's [`ProbeSession`](p2psc::proto::mediator::probe::ProbeSession) per
//! connection and records each Probe for the registration with its nonce; the two connections of a
//! pair that joined the relay are spliced by one task, within the core's relay
//! [`Budget`](p2psc::proto::mediator::relay::Budget) and a server-wide rate.
//!
//! Everything is bounded: connections in total, and open at once and opened per second per source host
//! and network (beyond: `Abort(TooManyConnections)` and close), frame size (the session's `FrameReader`), each registration step (`step_timeout`: a silent
//! or slowly dribbling client is aborted with `Timeout`), waiting peers (shared fairly among source
//! networks when the table is full, `RetryAfter` beyond), writes (a peer that does not read is dropped after `step_timeout`), and shutdown (every live
//! session is sent `Abort(ShuttingDown)` within `shutdown_grace`).
//!
//! [`client`] is the other side for load tests and tests: a tokio client that registers over TCP with
//! the same registration state machine the peers use.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use p2psc_mediator::{run, ServerConfig};
//! let config = ServerConfig {
//!     listen: vec!["127.0.0.1:0".parse().unwrap()],
//!     ..ServerConfig::default()
//! };
//! let running = run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! println!("listening on {:?}", running.local_addrs());
//! running.join().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod client;
mod clock;
mod config;
mod conn;
mod limits;
mod metrics;
mod probe;
mod relay;
mod shared;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use p2psc::proto::MediatorConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{parse_duration, parse_listen, Args, Listen, LogFormat};
pub use limits::PrefixLimit;
pub use metrics::render as render_metrics;
pub use p2psc::identity::dalek::{DalekSigner, DalekVerifier};
pub use shared::Snapshot;

use shared::{Shared, ABORT_LABELS, REFUSAL_LABELS};

/// Default most waiting peers: a waiting peer costs about 3 KiB of the server's memory (README), so
/// with the connections below this is sized for about 1 GiB.
pub const DEFAULT_MAX_WAITING: usize = 250_000;
/// Default most waiting peers from one network (an IPv4 /24, an IPv6 /48): 1/60 of the table.
pub const DEFAULT_MAX_WAITING_PER_NET: usize = 4_096;
/// Default most connections open at once (about 0.86 GiB of the server's memory at 3 KiB each).
pub const DEFAULT_MAX_CONNECTIONS: usize = 300_000;
/// Default limits per host: 64 open at once (as many at once after a quiet spell), then 20 new per
/// second — far above what one device needs, and room for a household or a small office behind one
/// address.
pub const DEFAULT_PER_IP: PrefixLimit = PrefixLimit {
    concurrent: 64,
    rate: 20,
};
/// Default limits per network: 1024 open at once, 200 new per second.
pub const DEFAULT_PER_NET: PrefixLimit = PrefixLimit {
    concurrent: 1_024,
    rate: 200,
};

/// How often the rate limiters forget sources that have been quiet.
const FORGET_QUIET_SOURCES: Duration = Duration::from_secs(10);

/// Listen backlog (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: i32 = 4096;

/// Everything the server needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses to listen on. IPv6 sockets are made IPv6-only, so an IPv4 and an IPv6 wildcard on the
    /// same port bind side by side.
    pub listen: Vec<SocketAddr>,
    /// Protocol deadlines and table capacity, as the sessions and the table use them.
    pub mediator: MediatorConfig,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Connections from one host (an IPv4 address, an IPv6 /64): open at once, and new per second.
    pub per_ip: PrefixLimit,
    /// Connections from one network (an IPv4 /24, an IPv6 /48): open at once, and new per second.
    pub per_net: PrefixLimit,
    /// On shutdown, how long live sessions get to receive `Abort(ShuttingDown)` and close.
    pub shutdown_grace: Duration,
    /// Period of the stats log line (`None`: never).
    pub stats_interval: Option<Duration>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Version 2: where the probe endpoint listens.
    pub probe: ProbePort,
}

/// Where the probe endpoint (`doc/mediator.md` §15) listens, on every listen address's IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbePort {
    /// No probe endpoint: every version-2 registration is classified `Unknown`.
    Off,
    /// Each listen address's bound port + 1 (the convention peers assume); where that port cannot be
    /// bound, the server warns and serves without a probe endpoint on that address.
    NextPort,
    /// This port (0: one the system chooses, for tests; [`Running::probe_addrs`] tells which).
    Port(u16),
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 7777)),
                SocketAddr::from(([0u16; 8], 7777)),
            ],
            mediator: MediatorConfig {
                capacity: DEFAULT_MAX_WAITING,
                prefix_share: DEFAULT_MAX_WAITING_PER_NET,
                ..MediatorConfig::default()
            },
            max_connections: DEFAULT_MAX_CONNECTIONS,
            per_ip: DEFAULT_PER_IP,
            per_net: DEFAULT_PER_NET,
            shutdown_grace: Duration::from_secs(5),
            stats_interval: Some(Duration::from_secs(60)),
            metrics: None,
            probe: ProbePort::NextPort,
        }
    }
}

/// A bound, not yet serving, mediator.
pub struct Server {
    listeners: Vec<TcpListener>,
    probes: Vec<TcpListener>,
    metrics: Option<TcpListener>,
    shared: Arc<Shared>,
}

/// Whether binding `addr` failed because the host has no IPv6: no IPv6 sockets at all (not built in,
/// or turned off at boot), or no `::` / `::1` (turned off by sysctl). Any other IPv6 address that is
/// not the host's is a mistake in the configuration, not a missing family.
fn no_ipv6(addr: SocketAddr, e: &io::Error) -> bool {
    let wildcard_or_loopback = addr.ip().is_unspecified() || addr.ip().is_loopback();
    addr.is_ipv6()
        && match e.raw_os_error() {
            Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT) => true,
            Some(libc::EADDRNOTAVAIL) => wildcard_or_loopback,
            _ => false,
        }
}

/// Bind every address with `bind`, skipping (with a warning) those [`no_ipv6`] says the host cannot
/// have, as long as one binds.
fn bind_all(
    addrs: &[SocketAddr],
    bind: impl Fn(SocketAddr) -> io::Result<TcpListener>,
) -> io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    let mut skipped = Vec::new();
    for &addr in addrs {
        match bind(addr) {
            Ok(listener) => listeners.push(listener),
            Err(e) if no_ipv6(addr, &e) => skipped.push((addr, e)),
            Err(e) => return Err(listen_error(addr, e)),
        }
    }
    if listeners.is_empty() && !skipped.is_empty() {
        let (addr, e) = skipped.swap_remove(0);
        return Err(listen_error(addr, e));
    }
    for (addr, e) in skipped {
        tracing::warn!(%addr, error = %e, "no IPv6 here: going on without this address");
    }
    Ok(listeners)
}

fn listen_error(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
}

fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    // Frames are small and every exchange is one request, one answer: Nagle would hold a Match behind
    // the peer's delayed ACK of Registered. Accepted sockets inherit the option (checked by a test), which
    // saves a system call per connection.
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

impl Server {
    /// Bind every listen address (and the metrics address). Must be called inside a tokio runtime.
    ///
    /// An IPv6 address that cannot be bound because the host has no IPv6 (the default `[::]:7777` on
    /// such a host, or the `::1` of `localhost`) is skipped with a warning as long as another address
    /// binds; any other failure is an error.
    pub async fn bind(config: ServerConfig) -> io::Result<Server> {
        let listeners = bind_all(&config.listen, bind_listener)?;
        let probes = bind_probes(&listeners, config.probe)?;
        let metrics = match config.metrics {
            Some(addr) => Some(bind_listener(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot serve metrics on {addr}: {e}"))
            })?),
            None => None,
        };
        if let Some(addr) = config.metrics.filter(|a| !a.ip().is_loopback()) {
            tracing::warn!(
                %addr,
                "metrics are served on a non-loopback address: keep it private (firewall)"
            );
        }
        Ok(Server {
            listeners,
            probes,
            metrics,
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// The addresses actually bound (with the ports the system chose for port 0), in `listen` order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The probe endpoint's addresses actually bound, one per listen address (none when off).
    pub fn probe_addrs(&self) -> Vec<SocketAddr> {
        self.probes
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The metrics address actually bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle for reading counters while the server runs.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(self.shared.clone())
    }

    /// Serve until `shutdown` completes, then abort every live session with `ShuttingDown` and wait for
    /// them to close, at most `shutdown_grace`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        for addr in self.local_addrs() {
            tracing::info!(%addr, "listening");
        }
        // Not "listening addr=": scripts read the registration address from those lines.
        for probe in self.probe_addrs() {
            tracing::info!(%probe, "probe endpoint up");
        }
        let shared = self.shared;
        let (stop_tx, stop_rx) = watch::channel(false);
        let registration = self
            .listeners
            .into_iter()
            .map(|l| (l, Endpoint::Registration));
        let probe = self.probes.into_iter().map(|l| (l, Endpoint::Probe));
        let accepters: Vec<JoinHandle<()>> = registration
            .chain(probe)
            .map(|(l, what)| tokio::spawn(accept_loop(l, what, shared.clone(), stop_rx.clone())))
            .collect();
        let mut helpers = vec![
            tokio::spawn(ticker(shared.clone())),
            tokio::spawn(forget_quiet_sources(shared.clone())),
        ];
        if let Some(period) = shared.config.stats_interval {
            helpers.push(tokio::spawn(stats_log(shared.clone(), period)));
        }
        if let Some(listener) = self.metrics {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving metrics at /metrics, /healthz, /readyz");
            }
            helpers.push(tokio::spawn(metrics::serve(listener, shared.clone())));
        }

        shutdown.await;
        // Not ready any more: a load balancer stops sending peers while the sessions wind down.
        shared
            .shutting_down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let open = shared.snapshot().connections;
        tracing::info!(
            connections = open,
            "shutting down: no new connections, aborting live sessions"
        );
        for accepter in &accepters {
            accepter.abort();
        }
        for accepter in accepters {
            let _ = accepter.await;
        }
        let _ = stop_tx.send(true);
        if tokio::time::timeout(shared.config.shutdown_grace, shared.all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = shared.snapshot().connections,
                "grace period over with connections still open"
            );
        }
        for helper in helpers {
            helper.abort();
        }
        tracing::info!("{}", stats_line(&shared.snapshot()));
    }
}

/// Reads the server's counters.
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl StatsHandle {
    /// Counters and gauges now.
    pub fn snapshot(&self) -> Snapshot {
        self.0.snapshot()
    }

    /// Wait until `pred` holds (re-checked whenever a counter, a gauge or the table changes), and return
    /// the snapshot for which it did.
    pub async fn wait_for(&self, pred: impl FnMut(&Snapshot) -> bool) -> Snapshot {
        self.0.wait_for(pred).await
    }
}

/// A server running in its own task.
pub struct Running {
    local_addrs: Vec<SocketAddr>,
    probe_addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    stats: StatsHandle,
    task: JoinHandle<()>,
}

impl Running {
    /// The addresses bound, in `listen` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The probe endpoint's addresses bound, one per listen address (none when off).
    pub fn probe_addrs(&self) -> &[SocketAddr] {
        &self.probe_addrs
    }

    /// The metrics address bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The server's counters.
    pub fn stats(&self) -> &StatsHandle {
        &self.stats
    }

    /// Wait for the server to finish (after the shutdown future completed and the grace period).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Bind as `config` says and serve in a new task until `shutdown` completes. Returns once bound, with
/// the bound addresses (so tests can listen on port 0).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Running> {
    let server = Server::bind(config).await?;
    Ok(Running {
        local_addrs: server.local_addrs(),
        probe_addrs: server.probe_addrs(),
        metrics_addr: server.metrics_addr(),
        stats: server.stats(),
        task: tokio::spawn(server.serve(shutdown)),
    })
}

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// Registrations (and in version 2 the relay).
    Registration,
    /// Version 2: the probe endpoint.
    Probe,
}

/// The probe endpoint's listeners, beside the bound registration `listeners`.
fn bind_probes(listeners: &[TcpListener], probe: ProbePort) -> io::Result<Vec<TcpListener>> {
    let mut probes = Vec::new();
    for addr in listeners.iter().map(TcpListener::local_addr) {
        let mut addr = addr?;
        let port = match probe {
            ProbePort::Off => return Ok(probes),
            ProbePort::Port(port) => port,
            ProbePort::NextPort => addr.port().checked_add(1).ok_or_else(|| {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "no port + 1 for the probe");
                listen_error(addr, e)
            })?,
        };
        addr.set_port(port);
        match bind_listener(addr) {
            Ok(listener) => probes.push(listener),
            // The implicit port + 1 may be another program's: without a probe endpoint peers are
            // only classified Unknown (a slower fallback, no failure), so serve on.
            Err(e) if probe == ProbePort::NextPort => {
                tracing::warn!(%addr, error = %e, "no probe endpoint here: mappings will be Unknown")
            }
            Err(e) => {
                let why = format!("cannot listen for probes on {addr}: {e}");
                return Err(io::Error::new(e.kind(), why));
            }
        }
    }
    Ok(probes)
}

async fn accept_loop(
    listener: TcpListener,
    what: Endpoint,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning; the backlog waits.
                let resource = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                tracing::warn!(error = %e, "accept failed");
                if resource {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let peer = conn::normalise(peer);
        match shared.admit(peer.ip()) {
            Ok(guard) => {
                let (shared, stop) = (shared.clone(), stop.clone());
                match what {
                    Endpoint::Registration => {
                        tokio::spawn(conn::serve(shared, stream, peer, guard, stop))
                    }
                    Endpoint::Probe => {
                        tokio::spawn(probe::serve(shared, stream, peer, guard, stop))
                    }
                };
            }
            Err(why) => conn::refuse(&shared, stream, peer, why),
        }
    }
}

async fn ticker(shared: Arc<Shared>) {
    loop {
        let next = shared.expire();
        tokio::time::sleep_until(shared.clock.deadline(next)).await;
    }
}

async fn forget_quiet_sources(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(FORGET_QUIET_SOURCES);
    loop {
        interval.tick().await;
        shared.forget_quiet_sources();
    }
}

async fn stats_log(shared: Arc<Shared>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.tick().await;
    loop {
        interval.tick().await;
        tracing::info!("{}", stats_line(&shared.snapshot()));
    }
}

/// The periodic stats log line.
fn stats_line(s: &Snapshot) -> String {
    let t = &s.table;
    let mut aborts = String::new();
    for (reason, label) in ABORT_LABELS {
        let n = s.aborts(reason);
        if n > 0 {
            aborts.push_str(&format!(" {label}={n}"));
        }
    }
    if aborts.is_empty() {
        aborts.push_str(" none");
    }
    let refused: Vec<String> = REFUSAL_LABELS
        .iter()
        .map(|label| format!("{label}={}", s.refused_by(label)))
        .collect();
    let refused = refused.join(" ");
    format!(
        "stats: connections={} waiting={} accepted={} registrations={} matches={} replaced={} expired={} \
         table_full={} evicted={} refused({}) disconnects={} (waiting {}) aborts:{}",
        s.connections,
        s.waiting,
        s.accepted,
        t.registrations,
        t.matches,
        t.replaced,
        t.expired,
        t.full,
        t.evicted,
        refused,
        s.disconnects,
        s.waiting_disconnects,
        aborts
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay() {
        for addr in ["127.0.0.1:0", "[::1]:0"] {
            let listener = bind_listener(addr.parse().unwrap()).unwrap();
            let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            assert!(accepted.nodelay().unwrap(), "{addr}");
            drop(client);
        }
    }

    #[test]
    fn missing_ipv6_is_recognised() {
        let error = io::Error::from_raw_os_error;
        let (any6, loop6, v4): (SocketAddr, SocketAddr, SocketAddr) = (
            "[::]:7777".parse().unwrap(),
            "[::1]:7777".parse().unwrap(),
            "0.0.0.0:7777".parse().unwrap(),
        );
        let other6: SocketAddr = "[2001:db8::1]:7777".parse().unwrap();
        for addr in [any6, loop6, other6] {
            assert!(no_ipv6(addr, &error(libc::EAFNOSUPPORT)), "{addr}");
            assert!(!no_ipv6(addr, &error(libc::EADDRINUSE)), "{addr}");
            assert!(
                !no_ipv6(addr, &io::Error::from(io::ErrorKind::Other)),
                "{addr}"
            );
        }
        assert!(no_ipv6(any6, &error(libc::EADDRNOTAVAIL)));
        assert!(no_ipv6(loop6, &error(libc::EADDRNOTAVAIL)));
        // Not the host's address: a mistake, not a missing family.
        assert!(!no_ipv6(other6, &error(libc::EADDRNOTAVAIL)));
        assert!(!no_ipv6(v4, &error(libc::EAFNOSUPPORT)));
    }

    /// As on a host without IPv6: every IPv6 socket fails with EAFNOSUPPORT.
    fn bind_without_ipv6(addr: SocketAddr) -> io::Result<TcpListener> {
        if addr.is_ipv6() {
            return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
        }
        bind_listener(addr)
    }

    #[tokio::test]
    async fn without_ipv6_the_ipv4_address_serves_alone() {
        let (v6, v4): (SocketAddr, SocketAddr) =
            ("[::]:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap());
        let listeners = bind_all(&[v6, v4], bind_without_ipv6).unwrap();
        assert_eq!(listeners.len(), 1);
        assert!(listeners[0].local_addr().unwrap().is_ipv4());
        // Nothing left to serve on: an error.
        assert!(bind_all(&[v6], bind_without_ipv6).is_err());
    }

    #[tokio::test]
    async fn the_probe_endpoint_is_port_plus_one_unless_told_otherwise() {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let listeners = vec![bind_listener(listen).unwrap()];
        let port = listeners[0].local_addr().unwrap().port();
        let probe_port = |probes: Vec<TcpListener>| {
            probes
                .iter()
                .map(|l| l.local_addr().unwrap().port())
                .collect::<Vec<_>>()
        };
        assert!(bind_probes(&listeners, ProbePort::Off).unwrap().is_empty());
        let chosen = probe_port(bind_probes(&listeners, ProbePort::Port(0)).unwrap());
        assert!(chosen.len() == 1 && chosen[0] != 0);
        // Port + 1: bound, or (another program's) skipped with a warning, never an error.
        let next = bind_probes(&listeners, ProbePort::NextPort).unwrap();
        assert!(probe_port(next).iter().all(|&p| p == port + 1));
        // An explicit port that is taken is an error.
        assert!(bind_probes(&listeners, ProbePort::Port(port)).is_err());
    }

    #[tokio::test]
    async fn an_ipv6_address_that_is_not_the_hosts_is_an_error() {
        // 2001:db8::/32 is for documentation: no host has it (EADDRNOTAVAIL, or EAFNOSUPPORT where
        // the host has no IPv6 at all, which is then skipped).
        let config = ServerConfig {
            listen: vec![
                "[2001:db8::1]:0".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ],
            ..ServerConfig::default()
        };
        match Server::bind(config).await {
            Err(e) => assert!(e.to_string().contains("2001:db8::1"), "{e}"),
            Ok(server) => assert_eq!(server.local_addrs().len(), 1),
        }
    }
}
