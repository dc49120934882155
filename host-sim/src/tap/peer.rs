//! `host-sim tap peer`: one p2psc peer on a TAP device, driving the poll-API connector on the wall clock.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::io::AsRawFd;
use std::process::ExitCode;
use std::task::Poll;

use p2psc::connector::{ConnectConfig, ConnectEvent, Connected, Connector, Sockets};
use p2psc::identity::{PublicKey, SaltyVerifier};
use p2psc::proto::SessionKey;
use p2psc::wire::RelayMode;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device as _, Medium, TunTapInterface, TxToken as _};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::{Duration, Instant};

use super::stream::Stream;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpCidr, IpEndpoint, Ipv4Cidr,
};

use super::KeyArgs;

/// Exit codes of `host-sim tap peer`.
pub mod exit {
    /// Connected, authenticated, and the message exchange (if any) checked out.
    pub const OK: u8 = 0;
    /// The connector failed: the typed `p2psc::Error` is printed.
    pub const CONNECT_FAILED: u8 = 1;
    /// Bad arguments, or the TAP device could not be opened.
    pub const SETUP: u8 = 2;
    /// Connected, but the data exchange after it failed.
    pub const EXCHANGE_FAILED: u8 = 3;
}

/// One p2psc peer on a TAP device.
///
/// Prints one line per step (`[   0.123s] …`), then `authenticated: …`, then the exchange. Exit codes:
/// 0 success, 1 the connector failed (`connect failed: <p2psc::Error>`), 2 setup error, 3 the exchange
/// after connecting failed.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// TAP device to attach to (created if missing; a persistent one made with `ip tuntap add` can be
    /// bridged before the peer starts).
    #[arg(long, value_name = "IFNAME")]
    pub tap: String,
    /// Our IPv4 address and prefix, e.g. 192.168.1.2/24.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub ip: Ipv4Cidr,
    /// Default gateway (the home router).
    #[arg(long, value_name = "ADDR")]
    pub gw: Ipv4Addr,
    /// Our MAC address; 02:00 and the IPv4 address by default.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub mac: Option<EthernetAddress>,
    #[command(flatten)]
    pub key: KeyArgs,
    /// The peer's Ed25519 public key, 64 hex digits.
    #[arg(long, value_name = "HEX")]
    pub peer_key: PublicKey,
    /// The mediator's address and port.
    #[arg(long, value_name = "ADDR:PORT")]
    pub mediator: SocketAddrV4,
    /// After connecting, echo everything the peer sends until it closes.
    #[arg(long, conflicts_with = "send")]
    pub echo: bool,
    /// After connecting, send MSG, expect it echoed back, then close.
    #[arg(long, value_name = "MSG")]
    pub send: Option<String>,
    /// Exchange plaintext instead of the secure channel (protocol §12.8; the peer must too).
    #[arg(long)]
    pub plaintext: bool,
    /// The relayed path through the mediator (protocol §14): `fallback` when the NATs cannot be punched
    /// or the punch fails, `only` at once, `off` direct or nothing (protocol version 1).
    #[arg(long, value_name = "MODE", default_value = "fallback")]
    pub relay: RelayMode,
    /// Overall connector deadline, seconds (registration, wait for the peer, punch, handshake).
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub timeout: u64,
    /// Punch deadline, seconds from the start time the mediator announces.
    #[arg(long, value_name = "S")]
    pub punch_timeout: Option<u64>,
    /// Gap range after a slot of the shared retry schedule where both peers dial, ms (the
    /// connector's default if unset; both peers need the same value).
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_range)]
    pub dial_gap_ms: Option<(u64, u64)>,
    /// Gap range after a slot where only one peer dials, ms (the connector's default if unset; both
    /// peers need the same value).
    #[arg(long, value_name = "MIN-MAX", value_parser = parse_range)]
    pub listen_gap_ms: Option<(u64, u64)>,
    /// Largest skew between the peers' SYNs in a slot, µs (the connector's default if unset; both
    /// peers need the same value).
    #[arg(long, value_name = "US")]
    pub slot_skew_us: Option<u64>,
    /// Independent random delay added to each retry, µs (the connector's default if unset).
    #[arg(long, value_name = "US")]
    pub jitter_us: Option<u64>,
    /// Local port for the mediator connection and the punch (random in 49152..=65535 by default).
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
    /// Deadline of the message exchange after connecting, seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub exchange_timeout: u64,
    /// Test knob: stop polling for this long right after the Match (a slow device), so this side dials
    /// late and the other side's early SYN meets its router first.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub stall_after_match_ms: u64,
    /// Test knob: from start-up until the Match, tell the host at ADDR on our LAN our MAC address
    /// with an unsolicited ARP reply every 50 ms. smoltcp fills its neighbour cache from any ARP packet
    /// aimed at it, so that host can send to us at once, while we still have to ARP for it (a reply
    /// gets no answer): the same-LAN race, where its SYN can reach us while our own SYN to it still
    /// waits for ARP. Repeated because the other host may start after us; by the Match it is up.
    #[arg(long, value_name = "ADDR")]
    pub announce_to: Option<Ipv4Addr>,
    /// Log p2psc's own debug lines (and smoltcp's, with -vv) to stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `MIN-MAX`, two numbers.
fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (lo, hi) = text
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {text:?}"))?;
    let num = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    let (lo, hi) = (num(lo)?, num(hi)?);
    if lo > hi {
        return Err(format!("{lo} is more than {hi}"));
    }
    Ok((lo, hi))
}

/// Lines on stdout, stamped with the time since start.
struct Out {
    start: std::time::Instant,
}

impl Out {
    fn line(&self, text: impl std::fmt::Display) {
        let t = self.start.elapsed();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "[{:>4}.{:03}s] {}",
            t.as_secs(),
            t.subsec_millis(),
            text
        );
        let _ = out.flush();
    }
}

pub fn run(args: PeerArgs) -> ExitCode {
    let out = Out {
        start: std::time::Instant::now(),
    };
    if args.verbose > 0 {
        StderrLog::install(args.verbose, out.start);
    }
    match peer(&args, &out) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(Failure::Connect(e)) => {
            out.line(format_args!("connect failed: {e:?} ({e})"));
            ExitCode::from(exit::CONNECT_FAILED)
        }
        Err(Failure::Setup(e)) => {
            out.line(format_args!("setup failed: {e}"));
            ExitCode::from(exit::SETUP)
        }
        Err(Failure::Exchange(e)) => {
            out.line(format_args!("exchange failed: {e}"));
            ExitCode::from(exit::EXCHANGE_FAILED)
        }
    }
}

enum Failure {
    Setup(String),
    Connect(p2psc::Error),
    Exchange(String),
}

struct Net {
    device: TunTapInterface,
    iface: Interface,
    sockets: SocketSet<'static>,
}

impl Net {
    /// Process what the device has and what the sockets want to send.
    fn poll(&mut self) {
        self.iface
            .poll(Instant::now(), &mut self.device, &mut self.sockets);
    }

    /// Sleep until a frame arrives, the interface needs polling, or `at` (whichever comes first).
    fn wait(&mut self, at: Option<Instant>) -> Result<(), String> {
        let now = Instant::now();
        let mut delay = self.iface.poll_delay(now, &self.sockets);
        if let Some(at) = at {
            let until = if at > now { at - now } else { Duration::ZERO };
            delay = Some(delay.map_or(until, |d| d.min(until)));
        }
        match phy::wait(self.device.as_raw_fd(), delay) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(format!("waiting on the TAP device: {e}")),
        }
    }

    fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(handle)
    }
}

fn peer(args: &PeerArgs, out: &Out) -> Result<(), Failure> {
    let keypair = args.key.keypair().map_err(Failure::Setup)?;
    let mut device = TunTapInterface::new(&args.tap, Medium::Ethernet).map_err(|e| {
        Failure::Setup(format!(
            "opening TAP {}: {e} (root? /dev/net/tun?)",
            args.tap
        ))
    })?;
    match wait_link_up(&args.tap, std::time::Duration::from_secs(2)) {
        Some(ms) => out.line(format_args!("{} is up after {ms} ms", args.tap)),
        None => out.line(format_args!(
            "{} did not report its link up within 2 s; starting anyway",
            args.tap
        )),
    }
    let mac = args.mac.unwrap_or_else(|| {
        let ip = args.ip.address().octets();
        EthernetAddress([0x02, 0x00, ip[0], ip[1], ip[2], ip[3]])
    });
    let mut announcer = Announcer::new(mac, args.ip.address(), args.announce_to, Instant::now());
    if let Some(to) = args.announce_to {
        out.line(format_args!(
            "telling {to} our MAC {mac} until the Match (unsolicited ARP replies; test knob: a \
             neighbour that knows us while we must ARP for it)"
        ));
    }
    let mut config = Config::new(mac.into());
    config.random_seed = u64::from_le_bytes(random::<8>().map_err(Failure::Setup)?);
    let mut iface = Interface::new(config, &mut device, Instant::now());
    iface.update_ip_addrs(|addrs| {
        let _ = addrs.push(IpCidr::Ipv4(args.ip));
    });
    iface
        .routes_mut()
        .add_default_ipv4_route(args.gw)
        .map_err(|_| Failure::Setup("route table full".into()))?;

    let mut sockets = SocketSet::new(Vec::new());
    let tcp = |rx: usize, tx: usize| {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; tx]),
        )
    };
    let handles = Sockets {
        mediator: sockets.add(tcp(512, 512)),
        // Two candidates: when both peers share a public address the LAN and public paths race.
        candidates: [
            Some(sockets.add(tcp(16 * 1024, 16 * 1024))),
            Some(sockets.add(tcp(16 * 1024, 16 * 1024))),
        ],
    };
    let mut net = Net {
        device,
        iface,
        sockets,
    };

    let mut config = ConnectConfig {
        timeout: Duration::from_secs(args.timeout),
        local_port: args.local_port,
        relay: args.relay,
        ..ConnectConfig::default()
    };
    if let Some(s) = args.punch_timeout {
        config.punch.punch_timeout = Duration::from_secs(s);
    }
    if let Some((lo, hi)) = args.dial_gap_ms {
        config.punch.slots.dial_gap_min = Duration::from_millis(lo);
        config.punch.slots.dial_gap_max = Duration::from_millis(hi);
    }
    if let Some((lo, hi)) = args.listen_gap_ms {
        config.punch.slots.listen_gap_min = Duration::from_millis(lo);
        config.punch.slots.listen_gap_max = Duration::from_millis(hi);
    }
    if let Some(us) = args.slot_skew_us {
        config.punch.slots.skew = Duration::from_micros(us);
    }
    if let Some(us) = args.jitter_us {
        config.punch.jitter = Duration::from_micros(us);
    }
    let seed = random::<32>().map_err(Failure::Setup)?;
    let started = Instant::now();
    let mut connector = Connector::new(
        config,
        &keypair,
        SaltyVerifier,
        args.peer_key,
        IpEndpoint::from(std::net::SocketAddr::V4(args.mediator)),
        handles,
        &mut p2psc::rng::Drbg::new(seed),
        started,
    );
    out.line(format_args!(
        "peer {} on {} ({}, gw {}, mac {}), key {}, wants {}, mediator {}, port {}",
        std::process::id(),
        args.tap,
        args.ip,
        args.gw,
        mac,
        keypair.public_key().to_hex(),
        args.peer_key.to_hex(),
        args.mediator,
        connector.local_port()
    ));

    // The connector bounds itself (config.timeout); this is only a guard against a stuck loop.
    let guard = started + config.timeout + Duration::from_secs(5);
    let connected: Connected = loop {
        net.poll();
        let now = Instant::now();
        announcer
            .poll(&mut net.device, now)
            .map_err(Failure::Setup)?;
        let poll = connector.poll(now, &mut net.iface, &mut net.sockets);
        while let Some(event) = connector.next_event() {
            match event {
                // Our clock is the wall clock: say when the punch starts relative to now.
                ConnectEvent::Matched { start_at, .. } => {
                    let wait = p2psc::time::elapsed(start_at, now).total_millis();
                    out.line(format_args!("{event} (in {wait} ms)"));
                }
                _ => out.line(format_args!("{event}")),
            }
            if matches!(event, ConnectEvent::Matched { .. }) {
                // Both peers are up by now: the other one has heard our announcements.
                announcer.stop();
                if args.stall_after_match_ms > 0 {
                    out.line(format_args!(
                        "stalling {} ms (test knob: a slow peer)",
                        args.stall_after_match_ms
                    ));
                    std::thread::sleep(std::time::Duration::from_millis(args.stall_after_match_ms));
                }
            }
        }
        match poll {
            Poll::Ready(Ok(connected)) => break connected,
            Poll::Ready(Err(e)) => {
                // Send the aborts (RSTs) the connector queued before leaving.
                net.poll();
                return Err(Failure::Connect(e));
            }
            Poll::Pending => {}
        }
        if now >= guard {
            return Err(Failure::Connect(p2psc::Error::Timeout));
        }
        let wake = match (connector.poll_at(), announcer.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        net.wait(wake).map_err(Failure::Setup)?;
    };
    out.line(format_args!(
        "authenticated: peer {} role {:?} path {} session {} in {} ms",
        connected.remote,
        connected.role,
        connected.path,
        fingerprint(&connected.session_key),
        (Instant::now() - started).total_millis()
    ));

    let deadline = Instant::now() + Duration::from_secs(args.exchange_timeout);
    let socket = connected.socket;
    let stream = Stream::new(&connected.session_key, connected.role, args.plaintext);
    let mut conn = Conn {
        net,
        socket,
        stream,
    };
    // Every ACK at once: the exchange ends as soon as our socket reaches TIME-WAIT, and a delayed ACK of
    // the peer's FIN would never leave (the peer then waits in LAST-ACK until its own close deadline).
    conn.net.tcp(conn.socket).set_ack_delay(None);
    if let Some(msg) = &args.send {
        send(&mut conn, msg.as_bytes(), deadline, out).map_err(Failure::Exchange)?;
    } else if args.echo {
        echo(&mut conn, deadline, out).map_err(Failure::Exchange)?;
    } else {
        conn.stream.close().map_err(Failure::Exchange)?;
        conn.finish(deadline);
    }
    Ok(())
}

/// The application's connection: the winning socket and the stream over it.
struct Conn {
    net: Net,
    socket: SocketHandle,
    stream: Stream,
}

impl Conn {
    /// Poll the stack and move the stream's bytes; what arrived is appended to `into`. Returns with
    /// nothing unread in the socket: the caller then sleeps until the next frame, so bytes that came in
    /// with the last poll would wait for a frame that may never come (the exchange's deadline).
    fn pump(&mut self, into: &mut Vec<u8>) -> Result<(), String> {
        loop {
            self.net.poll();
            let result = self.stream.pump(self.net.tcp(self.socket), into);
            // Send what the pump queued (or the abort after a channel error) at once. This poll also
            // takes in the frames that have arrived meanwhile.
            self.net.poll();
            if result.is_err() || !self.net.tcp(self.socket).can_recv() {
                return result;
            }
        }
    }

    /// Wait (at most until `deadline`) for the close to finish: FIN both ways.
    fn finish(&mut self, deadline: Instant) -> State {
        let deadline = deadline.min(Instant::now() + Duration::from_secs(3));
        loop {
            if self.pump(&mut Vec::new()).is_err() {
                return self.net.tcp(self.socket).state();
            }
            let state = self.net.tcp(self.socket).state();
            if matches!(state, State::Closed | State::TimeWait) || Instant::now() >= deadline {
                return state;
            }
            if self.net.wait(Some(deadline)).is_err() {
                return state;
            }
        }
    }
}

/// Send `msg`, read it back, close.
fn send(conn: &mut Conn, msg: &[u8], deadline: Instant, out: &Out) -> Result<(), String> {
    conn.stream.write(msg)?;
    out.line(format_args!("sent {} bytes: {:?}", msg.len(), show(msg)));
    let mut back = Vec::with_capacity(msg.len());
    while back.len() < msg.len() {
        conn.pump(&mut back)?;
        let s = conn.net.tcp(conn.socket);
        if back.len() >= msg.len() {
            break;
        }
        if conn.stream.peer_ended(s) || !s.may_recv() {
            return Err(format!(
                "the peer closed after echoing {} of {} bytes",
                back.len(),
                msg.len()
            ));
        }
        if Instant::now() >= deadline {
            let state = s.state();
            return Err(format!(
                "timed out: {} of {} bytes echoed (state {state})",
                back.len(),
                msg.len()
            ));
        }
        conn.net.wait(Some(deadline))?;
    }
    if back != msg {
        return Err(format!(
            "echo mismatch: sent {:?}, got {:?}",
            show(msg),
            show(&back)
        ));
    }
    out.line(format_args!("echo received: {:?}", show(&back)));
    conn.stream.close()?;
    let state = conn.finish(deadline);
    out.line(format_args!(
        "echo ok ({} bytes each way), closed ({state})",
        msg.len()
    ));
    Ok(())
}

/// Echo everything until the peer ends its stream, then end ours.
fn echo(conn: &mut Conn, deadline: Instant, out: &Out) -> Result<(), String> {
    let mut total = 0;
    loop {
        let mut received = Vec::new();
        conn.pump(&mut received)?;
        if !received.is_empty() {
            out.line(format_args!(
                "echoed {} bytes: {:?}",
                received.len(),
                show(&received)
            ));
            conn.stream.write(&received)?;
            total += received.len();
            continue;
        }
        let s = conn.net.tcp(conn.socket);
        if conn.stream.peer_ended(s) {
            break;
        }
        if !s.is_active() {
            return Err(format!("connection lost after {total} bytes"));
        }
        if Instant::now() >= deadline {
            let state = s.state();
            return Err(format!(
                "timed out after echoing {total} bytes (state {state})"
            ));
        }
        conn.net.wait(Some(deadline))?;
    }
    conn.stream.close()?;
    let state = conn.finish(deadline);
    if total == 0 {
        return Err("the peer closed without sending anything".into());
    }
    out.line(format_args!(
        "peer closed; echo ok ({total} bytes), closed ({state})"
    ));
    Ok(())
}

fn wait_link_up(name: &str, timeout: std::time::Duration) -> Option<u128> {
    let path = format!("/sys/class/net/{name}/operstate");
    let start = std::time::Instant::now();
    loop {
        match std::fs::read_to_string(&path) {
            Ok(state) if state.trim() == "up" => {
                // The bridge hears of it just after operstate changes (same kernel work item).
                std::thread::sleep(std::time::Duration::from_millis(10));
                return Some(start.elapsed().as_millis());
            }
            // No sysfs view of the device (not Linux sysfs, another namespace): nothing to wait for.
            Err(_) => return Some(0),
            Ok(_) if start.elapsed() >= timeout => return None,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
        }
    }
}

/// `--announce-to`: [`announcement`] every [`Announcer::PERIOD`] until stopped (at the Match).
struct Announcer {
    frame: Vec<u8>,
    next: Option<Instant>,
}

impl Announcer {
    const PERIOD: Duration = Duration::from_millis(50);

    /// Announce `ip` at `mac` to `to` from `now` on; with no `to`, never.
    fn new(mac: EthernetAddress, ip: Ipv4Addr, to: Option<Ipv4Addr>, now: Instant) -> Announcer {
        Announcer {
            frame: to.map_or_else(Vec::new, |to| announcement(mac, ip, to)),
            next: to.map(|_| now),
        }
    }

    /// Send the announcement if it is due.
    fn poll(&mut self, device: &mut TunTapInterface, now: Instant) -> Result<(), String> {
        if self.next.is_none_or(|next| now < next) {
            return Ok(());
        }
        let token = device
            .transmit(now)
            .ok_or("--announce-to: the TAP device cannot send")?;
        token.consume(self.frame.len(), |buffer| {
            buffer.copy_from_slice(&self.frame)
        });
        self.next = Some(now + Self::PERIOD);
        Ok(())
    }

    fn stop(&mut self) {
        self.next = None;
    }

    /// When the next announcement is due.
    fn poll_at(&self) -> Option<Instant> {
        self.next
    }
}

/// One unsolicited ARP reply "`ip` is at `mac`" to `to`, as an Ethernet broadcast: we do not know its
/// MAC, and must not learn it (so not a request, which `to` would answer). RFC 826 receivers that are
/// the target merge the sender's pair into their cache; smoltcp does so for any request or reply aimed
/// at one of its addresses.
fn announcement(mac: EthernetAddress, ip: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress::BROADCAST,
        target_protocol_addr: to,
    };
    let ethernet = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buffer = vec![0; ethernet.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buffer[..]);
    ethernet.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buffer
}

/// A short, non-secret tag of the session key: both peers print the same one.
fn fingerprint(key: &SessionKey) -> String {
    let digest = salty::Sha512::new()
        .updated(b"p2psc host-sim session fingerprint")
        .updated(&key.0)
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_cidr(text: &str) -> Result<Ipv4Cidr, String> {
    text.parse()
        .map_err(|()| format!("{text:?}: expected an IPv4 address and prefix, like 192.168.1.2/24"))
}

fn parse_mac(text: &str) -> Result<EthernetAddress, String> {
    text.parse()
        .map_err(|()| format!("{text:?}: expected a MAC address, like 02:00:c0:a8:01:02"))
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("OS random source: {e}"))?;
    Ok(bytes)
}

/// `-v`: p2psc's `log` lines on stderr (with `-vv`, smoltcp's too).
struct StderrLog {
    start: std::time::Instant,
    verbose: u8,
}

impl StderrLog {
    fn install(verbose: u8, start: std::time::Instant) {
        let logger = Box::leak(Box::new(StderrLog { start, verbose }));
        if log::set_logger(logger).is_ok() {
            log::set_max_level(if verbose > 1 {
                log::LevelFilter::Trace
            } else {
                log::LevelFilter::Debug
            });
        }
    }
}

impl log::Log for StderrLog {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        self.verbose > 1 || meta.target().starts_with("p2psc")
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let t = self.start.elapsed();
            eprintln!(
                "[{:>4}.{:03}s] {} {}: {}",
                t.as_secs(),
                t.subsec_millis(),
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_is_a_broadcast_arp_reply_aimed_at_the_other_host() {
        let mac = EthernetAddress([0x02, 0, 192, 168, 1, 3]);
        let (ip, to) = (Ipv4Addr::new(192, 168, 1, 3), Ipv4Addr::new(192, 168, 1, 2));
        let bytes = announcement(mac, ip, to);
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.src_addr(), mac);
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
        assert_eq!(
            arp,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: mac,
                source_protocol_addr: ip,
                target_hardware_addr: EthernetAddress::BROADCAST,
                target_protocol_addr: to,
            }
        );
    }
}
