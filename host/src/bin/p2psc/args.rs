//! The command line: what each subcommand takes, and how its values are read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use p2psc::identity::PublicKey;
use p2psc::proto::client::RelayMode;

/// Exit codes and environment, shown at the end of `p2psc --help`.
pub const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  usage: a bad option or value (e.g. --peer is not 64 hex digits)
  2  key file: missing, unreadable, not an Ed25519 PEM key, or (keygen) already there
  3  mediator unreachable: its name does not resolve, nothing listens, or no answer to connecting
  4  mediator failed: it aborted, is busy, closed early, did not answer, or broke the protocol
  5  the peer never came: it did not register with the mediator in time (--wait);
     also what a peer configured with another key looks like (the mediator pairs only mutual keys)
  6  punch failed: no TCP connection to the peer before the punch deadline
  7  authentication failed: the peer presented another key or a bad signature, or rejected ours
  8  local I/O: a local socket (e.g. --listen port in use), stdin/stdout, or the OS RNG
  9  the connection to the peer broke after it was made (reset)
A --timeout that runs out ends with the code of the step it interrupted (3, 4, 5, 6 or 7).

Environment:
  P2PSC_KEY       stands for --key
  P2PSC_MEDIATOR  stands for --mediator";

/// p2psc: direct, mutually authenticated TCP connections between two peers behind NATs, through a
/// p2psc mediator.
#[derive(Debug, Parser)]
#[command(name = "p2psc", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Progress as one JSON object per line on stderr, instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress on stderr (errors are still reported).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new identity: write a PKCS#8 PEM private key (mode 0600), print its public key.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key (64 hex digits) of a PEM private key or an OpenSSL public-key PEM.
    Pubkey {
        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the secret seed of a PEM private key as 64 hex digits, for a firmware build's
    /// P2PSC_KEY_SEED. Keep it secret.
    Seed {
        /// The private key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Connect to the peer and copy stdin to it and it to stdout, like netcat.
    Pipe(ConnectArgs),
    /// Carry TCP connections to the peer (--listen) or from it to a local service (--to), one p2psc
    /// connection per TCP connection.
    Forward(ForwardArgs),
}

/// How to reach the peer: shared by every subcommand that connects.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Our private key (PKCS#8 PEM, from `p2psc keygen` or `openssl genpkey -algorithm ed25519`).
    #[arg(long, env = "P2PSC_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// The peer's public key: 64 hex digits.
    #[arg(long, value_name = "HEX", value_parser = parse_peer)]
    pub peer: PublicKey,
    /// The mediator, as HOST:PORT (a name, an IPv4 address, or [IPv6]:PORT). Several: repeat the
    /// option or separate them with commas; both peers rank them by their keys and meet on the first
    /// that works, so give both the same ones (P2PSC_MEDIATOR takes a comma list too).
    #[arg(
        long,
        env = "P2PSC_MEDIATOR",
        value_name = "HOST:PORT",
        value_parser = parse_mediator,
        value_delimiter = ',',
        required = true
    )]
    pub mediator: Vec<String>,
    /// Longest time for one connection, from the first packet to the authenticated peer
    /// (e.g. 500ms, 30s, 2m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Longest wait at the mediator for the peer to come.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Local port for the mediator connection and the punch (default: random, 49152-65535).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Carry the stream in plaintext instead of the secure channel (both ends must say so). Only
    /// for a protocol that brings its own encryption: anyone on the path can read and change it.
    #[arg(long)]
    pub plaintext: bool,
    /// The relayed path through the mediator (protocol version 2): `fallback` when the NATs cannot be
    /// punched or the punch fails; `only` at once, without a punch (a network that blocks it; tests);
    /// `off`, direct or nothing (speaks protocol version 1, as a version-1 mediator needs).
    #[arg(long, value_name = "MODE", default_value = "fallback")]
    pub relay: RelayMode,
}

/// `p2psc forward`: the connection settings and one of the two directions.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// How to reach the peer.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Which end of the tunnel this is.
    #[command(flatten)]
    pub end: ForwardEnd,
}

/// Exactly one of `--listen` and `--to`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ForwardEnd {
    /// Accept local TCP connections at ADDR (IP:PORT, or a bare PORT for 127.0.0.1:PORT) and carry
    /// each to the peer.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Connect each connection the peer carries here to ADDR (HOST:PORT, or a bare PORT for
    /// 127.0.0.1:PORT).
    #[arg(long, value_name = "ADDR", value_parser = parse_target)]
    pub to: Option<String>,
}

impl ConnectArgs {
    /// The mediators as the library takes them: one comma-separated list.
    pub fn mediator_list(&self) -> String {
        self.mediator.join(",")
    }

    /// The mediators, named for a message: "mediator A" or "mediators A, B".
    pub fn mediator_names(&self) -> String {
        match &self.mediator[..] {
            [one] => format!("mediator {one}"),
            all => format!("mediators {}", all.join(", ")),
        }
    }
}

fn parse_peer(text: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(text.trim()).map_err(|_| {
        format!(
            "not 64 hex digits ({} characters); get it with `p2psc pubkey KEYFILE` on the peer",
            text.trim().chars().count()
        )
    })
}

/// A port, if `text` ends in `:PORT`.
fn port_of(text: &str) -> Option<u16> {
    let (_, port) = text.rsplit_once(':')?;
    port.parse().ok()
}

fn parse_mediator(text: &str) -> Result<String, String> {
    let text = text.trim();
    match port_of(text) {
        Some(_) if !text.starts_with(':') => Ok(text.to_owned()),
        _ => Err("expected HOST:PORT, e.g. mediator.example.net:7777".to_owned()),
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| "expected IP:PORT or PORT, e.g. 127.0.0.1:2222".to_owned())
}

fn parse_target(text: &str) -> Result<String, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(format!("127.0.0.1:{port}"));
    }
    match port_of(text) {
        Some(_) if !text.starts_with(':') => Ok(text.to_owned()),
        _ => Err("expected HOST:PORT or PORT, e.g. localhost:22".to_owned()),
    }
}

/// `250ms`, `5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err("expected e.g. 500ms, 30s, 2m or 1h".to_owned()),
    };
    let seconds = number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .ok_or("expected a positive number with a unit, e.g. 500ms, 30s, 2m or 1h")?;
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "0", "-1s", "5x", "ms", "1e3s", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        assert!(parse_mediator("mediator.example.net:7777").is_ok());
        assert!(parse_mediator("[::1]:7777").is_ok());
        for bad in ["mediator.example.net", ":7777", "host:port", "host:70000"] {
            assert!(parse_mediator(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_listen("2222"), Ok("127.0.0.1:2222".parse().unwrap()));
        assert_eq!(parse_listen("[::1]:22"), Ok("[::1]:22".parse().unwrap()));
        assert!(parse_listen("localhost:22").is_err());
        assert_eq!(parse_target("22").as_deref(), Ok("127.0.0.1:22"));
        assert_eq!(parse_target("localhost:22").as_deref(), Ok("localhost:22"));
        assert!(parse_target("localhost").is_err());
    }

    #[test]
    fn peer_keys() {
        let hex = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
        assert_eq!(parse_peer(hex).unwrap().to_hex(), hex);
        let err = parse_peer(&hex[1..]).unwrap_err();
        assert!(err.contains("63 characters"), "{err}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
