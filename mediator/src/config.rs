//! Command line and environment: every flag also reads `P2PSC_MEDIATOR_<FLAG>`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use p2psc::proto::mediator::RelayConfig;
use p2psc::proto::MediatorConfig;

use crate::{PrefixLimit, ProbePort, ServerConfig};

/// The p2psc mediator: the public rendezvous server that lets two peers behind NATs punch a direct,
/// mutually authenticated TCP connection.
///
/// Durations take a unit: `250ms`, `5s`, `2m`, `1h`, `1h 30m` (a bare number is seconds).
#[derive(Debug, Clone, Parser)]
#[command(name = "p2psc-mediator", version)]
pub struct Args {
    /// Address to listen on, `IP:PORT` or `HOST:PORT` (every address the name resolves to); repeat (or
    /// comma-separate in the environment) for several. IPv6 sockets are IPv6-only, so `0.0.0.0:PORT` and
    /// `[::]:PORT` bind side by side. An IPv6 address the host cannot bind (no IPv6) is skipped with a
    /// warning as long as another address binds.
    #[arg(
        long = "listen",
        value_name = "ADDR",
        env = "P2PSC_MEDIATOR_LISTEN",
        value_delimiter = ',',
        default_values = ["0.0.0.0:7777", "[::]:7777"],
        value_parser = parse_listen
    )]
    pub listen: Vec<Listen>,

    /// Most peers waiting in the table. When it is full, a registration from a network holding fewer
    /// takes the place of the oldest peer of the network holding the most, else gets RetryAfter.
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_MAX_WAITING", default_value_t = crate::DEFAULT_MAX_WAITING)]
    pub max_waiting: usize,

    /// Most peers waiting from one network (an IPv4 /24, an IPv6 /48); beyond, RetryAfter.
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_MAX_WAITING_PER_NET", default_value_t = crate::DEFAULT_MAX_WAITING_PER_NET)]
    pub max_waiting_per_net: usize,

    /// Most connections open at once; beyond, a new one gets Abort(TooManyConnections) and is closed.
    /// Lowered to fit the descriptor limit, with a warning.
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_MAX_CONNECTIONS", default_value_t = crate::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most connections open at once from one IPv4 address or IPv6 /64; beyond, Abort(TooManyConnections).
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_MAX_PER_IP", default_value_t = crate::DEFAULT_PER_IP.concurrent)]
    pub max_per_ip: u32,

    /// New connections per second from one IPv4 address or IPv6 /64, after a burst of --max-per-ip;
    /// beyond, Abort(TooManyConnections). 0: no rate limit.
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_RATE_PER_IP", default_value_t = crate::DEFAULT_PER_IP.rate)]
    pub rate_per_ip: u32,

    /// Most connections open at once from one IPv4 /24 or IPv6 /48.
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_MAX_PER_NET", default_value_t = crate::DEFAULT_PER_NET.concurrent)]
    pub max_per_net: u32,

    /// New connections per second from one IPv4 /24 or IPv6 /48, after a burst of --max-per-net. 0: no
    /// rate limit.
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_RATE_PER_NET", default_value_t = crate::DEFAULT_PER_NET.rate)]
    pub rate_per_net: u32,

    /// Deadline for each registration message (Hello after connecting, Proof after the Challenge), and
    /// for writing a frame.
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_STEP_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub step_timeout: Duration,

    /// Longest a registered peer waits for its counterpart (then Abort(PeerTimeout)).
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_WAIT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub wait_timeout: Duration,

    /// Time between Pings to a waiting peer (keeps NAT mappings warm, measures the round trip).
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_PING_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Longest wait for a Pong (then Abort(Unresponsive)).
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_PING_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub ping_timeout: Duration,

    /// How long a matched connection stays open for the peer's punch before the mediator closes it.
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_LINGER", default_value = "30s", value_parser = parse_duration)]
    pub linger: Duration,

    /// Delay announced in RetryAfter when the table is full.
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_RETRY_AFTER", default_value = "5s", value_parser = parse_duration)]
    pub retry_after: Duration,

    /// On SIGTERM/Ctrl-C, how long live sessions get to receive Abort(ShuttingDown) and close.
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Period of the stats log line; 0 turns it off.
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_STATS_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub stats_interval: Duration,

    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a tracing directive such as
    /// `p2psc_mediator=debug`). Without it, RUST_LOG, else `info`.
    #[arg(long, value_name = "FILTER", env = "P2PSC_MEDIATOR_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log format: `text` (one line per event) or `json` (one JSON object per line, for log collectors).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "P2PSC_MEDIATOR_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Version 2: whether to relay pairs that cannot punch (`on` or `off`). Off: Matches offer no relay
    /// and a RelayRequest is answered Abort(RelayRefused).
    #[arg(long, value_name = "on|off", env = "P2PSC_MEDIATOR_RELAY", default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub relay: bool,

    /// Most pairs relayed at once; beyond, both peers of a joining pair get Abort(RelayFull).
    #[arg(long, value_name = "N", env = "P2PSC_MEDIATOR_MAX_RELAYS", default_value_t = RelayConfig::default().max_pairs)]
    pub max_relays: usize,

    /// Bytes per second one relayed pair may carry, both directions together, with a unit (`1MiB`,
    /// `512KiB`, `100000`); 0: no limit. Faster senders are slowed, nothing is dropped.
    #[arg(long, value_name = "BYTES", env = "P2PSC_MEDIATOR_RELAY_PAIR_RATE", default_value = "1MiB", value_parser = parse_bytes)]
    pub relay_pair_rate: u64,

    /// Bytes per second all relayed pairs together may carry; 0: no limit.
    #[arg(long, value_name = "BYTES", env = "P2PSC_MEDIATOR_RELAY_TOTAL_RATE", default_value = "32MiB", value_parser = parse_bytes)]
    pub relay_total_rate: u64,

    /// Bytes one relay may carry, both directions together; then both connections are reset.
    #[arg(long, value_name = "BYTES", env = "P2PSC_MEDIATOR_RELAY_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub relay_max_bytes: u64,

    /// Longest life of one relay; then both connections are reset.
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_RELAY_MAX_DURATION", default_value = "1h", value_parser = parse_duration)]
    pub relay_max_duration: Duration,

    /// A relay with no byte in either direction for this long is ended (both connections reset).
    #[arg(long, value_name = "DURATION", env = "P2PSC_MEDIATOR_RELAY_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub relay_idle_timeout: Duration,

    /// Buffer per direction of a relay: the most the mediator holds for a slow reader.
    #[arg(long, value_name = "BYTES", env = "P2PSC_MEDIATOR_RELAY_BUFFER", default_value = "16KiB", value_parser = parse_buffer)]
    pub relay_buffer: usize,

    /// Version 2: the port of the probe endpoint on every listen address; 0: no probe endpoint (every
    /// peer's mapping is then Unknown). Default: each listen address's port + 1.
    #[arg(long, value_name = "PORT", env = "P2PSC_MEDIATOR_PROBE_PORT")]
    pub probe_port: Option<u16>,

    /// Serve Prometheus metrics at http://ADDR/metrics, with /healthz and /readyz beside them (keep it
    /// on a private address: a warning says so when it is not loopback). `IP:PORT` or `HOST:PORT`.
    #[arg(long, value_name = "ADDR", env = "P2PSC_MEDIATOR_METRICS", value_parser = parse_listen)]
    pub metrics: Option<Listen>,
}

/// The log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A `--listen` or `--metrics` value: the text given and the addresses it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// As given.
    pub text: String,
    /// The socket addresses: one for an address, every one a host name resolves to.
    pub addrs: Vec<SocketAddr>,
}

/// `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (resolved now, once).
pub fn parse_listen(text: &str) -> Result<Listen, String> {
    let text = text.trim();
    let mut addrs: Vec<SocketAddr> = match text.parse::<SocketAddr>() {
        Ok(addr) => vec![addr],
        Err(_) => text
            .to_socket_addrs()
            .map_err(|e| format!("{text:?}: not IP:PORT or HOST:PORT that resolves ({e})"))?
            .collect(),
    };
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolves to no address"));
    }
    Ok(Listen {
        text: text.to_string(),
        addrs,
    })
}

impl Args {
    /// The server configuration these arguments describe.
    pub fn server_config(&self) -> ServerConfig {
        let mut listen: Vec<SocketAddr> = Vec::new();
        for addr in self.listen.iter().flat_map(|l| &l.addrs) {
            if !listen.contains(addr) {
                listen.push(*addr);
            }
        }
        ServerConfig {
            listen,
            mediator: MediatorConfig {
                step_timeout: self.step_timeout.into(),
                wait_timeout: self.wait_timeout.into(),
                ping_interval: self.ping_interval.into(),
                ping_timeout: self.ping_timeout.into(),
                linger: self.linger.into(),
                retry_after: self.retry_after.into(),
                capacity: self.max_waiting,
                relay: RelayConfig {
                    enabled: self.relay,
                    max_pairs: self.max_relays,
                    pair_rate: self.relay_pair_rate,
                    total_rate: self.relay_total_rate,
                    max_bytes: self.relay_max_bytes,
                    max_duration: self.relay_max_duration.into(),
                    idle_timeout: self.relay_idle_timeout.into(),
                    buffer: self.relay_buffer,
                },
                prefix_share: self.max_waiting_per_net,
            },
            max_connections: self.max_connections,
            per_ip: PrefixLimit {
                concurrent: self.max_per_ip,
                rate: self.rate_per_ip,
            },
            per_net: PrefixLimit {
                concurrent: self.max_per_net,
                rate: self.rate_per_net,
            },
            shutdown_grace: self.shutdown_grace,
            stats_interval: (!self.stats_interval.is_zero()).then_some(self.stats_interval),
            metrics: self.metrics.as_ref().map(|m| m.addrs[0]),
            probe: match self.probe_port {
                None => ProbePort::NextPort,
                Some(0) => ProbePort::Off,
                Some(port) => ProbePort::Port(port),
            },
        }
    }
}

/// A duration as humantime reads it (`250ms`, `5s`, `2m`, `1h 30m`), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?}: too long"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e} (say 5s, 250ms, 2m or 1h)"))
}

/// `on` or `off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        other => Err(format!("{other:?}: say on or off")),
    }
}

/// A byte count: a bare number, or with a unit `KiB`, `MiB`, `GiB` (powers of 1024) or `kB`, `MB`,
/// `GB` (powers of 1000); `B` alone is bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_size: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (say 16KiB, 1MiB, 1GiB)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_size))
        .ok_or_else(|| format!("{text:?}: not a byte count (say 16KiB, 1MiB, 1GiB)"))
}

/// A relay buffer size: a byte count of at least 1 byte and at most 16 MiB.
fn parse_buffer(text: &str) -> Result<usize, String> {
    match parse_bytes(text)? {
        n @ 1..=0x100_0000 => Ok(n as usize),
        _ => Err(format!("{text:?}: between 1 byte and 16MiB")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "5 parsecs", "-1s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_listen_on_both_families() {
        let args = Args::try_parse_from(["p2psc-mediator"]).unwrap();
        let config = args.server_config();
        assert_eq!(
            config.listen,
            vec![
                "0.0.0.0:7777".parse::<SocketAddr>().unwrap(),
                "[::]:7777".parse().unwrap()
            ]
        );
        assert_eq!(config.mediator.capacity, crate::DEFAULT_MAX_WAITING);
        assert_eq!(config, ServerConfig::default());
        assert_eq!(config.metrics, None);
    }

    #[test]
    fn flags() {
        let args = Args::try_parse_from([
            "p2psc-mediator",
            "--listen",
            "127.0.0.1:1",
            "--listen",
            "[::1]:2",
            "--wait-timeout",
            "30s",
            "--step-timeout",
            "800ms",
            "--max-per-ip",
            "3",
            "--stats-interval",
            "0",
            "--metrics",
            "127.0.0.1:9100",
        ])
        .unwrap();
        let config = args.server_config();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(
            config.mediator.wait_timeout,
            p2psc::time::Duration::from_secs(30)
        );
        assert_eq!(
            config.mediator.step_timeout,
            p2psc::time::Duration::from_millis(800)
        );
        assert_eq!(config.per_ip.concurrent, 3);
        assert_eq!(config.stats_interval, None);
        assert_eq!(config.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(args.log_format, LogFormat::Text);
        assert!(Args::try_parse_from(["p2psc-mediator", "--ping-interval", "soon"]).is_err());
        assert!(Args::try_parse_from(["p2psc-mediator", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn relay_flags() {
        let relay = |extra: &[&str]| {
            let args = [&["p2psc-mediator"][..], extra].concat();
            Args::try_parse_from(args).map(|a| a.server_config())
        };
        let defaults = relay(&[]).unwrap();
        assert_eq!(defaults.mediator.relay, RelayConfig::default());
        assert_eq!(defaults.probe, ProbePort::NextPort);
        let config = relay(&[
            "--relay",
            "off",
            "--max-relays",
            "3",
            "--relay-pair-rate",
            "2MiB",
            "--relay-total-rate",
            "0",
            "--relay-max-bytes",
            "10MB",
            "--relay-max-duration",
            "2m",
            "--relay-idle-timeout",
            "30s",
            "--relay-buffer",
            "4KiB",
            "--probe-port",
            "0",
        ])
        .unwrap();
        let r = config.mediator.relay;
        assert!(!r.enabled);
        assert_eq!((r.max_pairs, r.pair_rate, r.total_rate), (3, 2 << 20, 0));
        assert_eq!((r.max_bytes, r.buffer), (10_000_000, 4096));
        assert_eq!(r.max_duration, p2psc::time::Duration::from_secs(120));
        assert_eq!(r.idle_timeout, p2psc::time::Duration::from_secs(30));
        assert_eq!(config.probe, ProbePort::Off);
        assert_eq!(
            relay(&["--probe-port", "9000"]).unwrap().probe,
            ProbePort::Port(9000)
        );
        for bad in [
            &["--relay", "maybe"][..],
            &["--relay-buffer", "0"],
            &["--relay-buffer", "1GiB"],
            &["--relay-pair-rate", "1 parsec"],
        ] {
            assert!(relay(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_bytes("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1500"), Ok(1500));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        for bad in ["", "MiB", "1.5MiB", "-1", "99999999999GiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn listen_takes_host_names() {
        let args = Args::try_parse_from([
            "p2psc-mediator",
            "--listen",
            "localhost:7000",
            "--listen",
            "127.0.0.1:7000",
            "--log-format",
            "json",
        ])
        .unwrap();
        let listen = args.server_config().listen;
        // localhost is at least 127.0.0.1 (and ::1 where the host says so), each address once.
        assert!(
            listen.contains(&"127.0.0.1:7000".parse().unwrap()),
            "{listen:?}"
        );
        assert!(listen
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 7000));
        assert_eq!(listen.iter().filter(|a| a.is_ipv4()).count(), 1);
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(parse_listen("no-such-host.invalid:7000").is_err());
        assert!(parse_listen("127.0.0.1").is_err());
    }
}
