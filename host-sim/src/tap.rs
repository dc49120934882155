//! TAP mode: p2psc on real Linux TAP devices, through real Linux NATs.
//!
//! Three small programs behind `host-sim tap`:
//!
//! - `peer`: one p2psc peer. A smoltcp [`Interface`](smoltcp::iface::Interface) on a TAP device (static
//!   IPv4, default route) drives the poll-API [`Connector`](p2psc::connector::Connector) on the wall clock,
//!   prints each [`ConnectEvent`](p2psc::connector::ConnectEvent), then echoes or sends a message over the
//!   authenticated connection.
//! - `relay`: forwards Ethernet frames between two TAP devices after a delay, both ways. The lab kernel has
//!   no netem; bridging each TAP into a different segment turns the relay into a delayed link.
//! - `pubkey`: prints the public key of a seed or PEM key (so scripts can hand one peer the other's key).
//!
//! `scripts/tap-lab.sh` builds the namespaces, NATs and firewalls around them; `host-sim/README.md` tells
//! how to run it.

use std::process::ExitCode;

use p2psc::identity::Keypair;

mod peer;
mod relay;
mod stream;

pub use peer::PeerArgs;
pub use relay::RelayArgs;

/// `host-sim tap …`: p2psc on TAP devices (Linux, root or CAP_NET_ADMIN).
#[derive(Debug, clap::Args)]
pub struct TapArgs {
    #[command(subcommand)]
    pub command: TapCommand,
}

/// The TAP-mode programs.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum TapCommand {
    /// Run one p2psc peer on a TAP device: register, punch, authenticate, exchange a message.
    Peer(PeerArgs),
    /// Forward Ethernet frames between two TAP devices after a delay (a userspace netem).
    Relay(RelayArgs),
    /// Print the public key (64 hex digits) of a key seed or PEM key.
    Pubkey(KeyArgs),
}

/// The peer's own identity: a 32-byte seed in hex, or a PKCS#8 PEM file.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// Ed25519 secret seed, 64 hex digits (test keys only: it shows in `ps`).
    #[arg(long, value_name = "HEX")]
    pub key_seed: Option<String>,
    /// Ed25519 private key, PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`).
    #[arg(long, value_name = "PEM")]
    pub key: Option<std::path::PathBuf>,
}

impl KeyArgs {
    /// Load the keypair.
    pub fn keypair(&self) -> Result<Keypair, String> {
        if let Some(hex) = &self.key_seed {
            let seed = parse_hex32(hex).ok_or("--key-seed: expected 64 hex digits")?;
            return Ok(Keypair::from_seed(&seed));
        }
        let path = self.key.as_ref().ok_or("--key-seed or --key is required")?;
        let pem =
            std::fs::read_to_string(path).map_err(|e| format!("--key {}: {e}", path.display()))?;
        Keypair::from_pkcs8_pem(&pem).map_err(|e| format!("--key {}: {e}", path.display()))
    }
}

/// Run a TAP-mode program; the exit code tells the outcome (see each program's help).
pub fn run(args: TapArgs) -> ExitCode {
    match args.command {
        TapCommand::Peer(args) => peer::run(args),
        TapCommand::Relay(args) => relay::run(args),
        TapCommand::Pubkey(args) => match args.keypair() {
            Ok(kp) => {
                println!("{}", kp.public_key().to_hex());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("host-sim tap pubkey: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex32() {
        let hex = "00ff".repeat(16);
        let bytes = parse_hex32(&hex).unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(bytes[1], 0xff);
        assert!(parse_hex32("00").is_none());
        assert!(parse_hex32(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn cli_parses() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            tap: TapArgs,
        }
        let cli = Cli::try_parse_from([
            "tap",
            "peer",
            "--tap",
            "tap0",
            "--ip",
            "192.168.1.2/24",
            "--gw",
            "192.168.1.1",
            "--key-seed",
            &"01".repeat(32),
            "--peer-key",
            &"02".repeat(32),
            "--mediator",
            "203.0.113.10:7777",
            "--send",
            "hi",
            "--announce-to",
            "192.168.1.3",
        ])
        .unwrap();
        let TapCommand::Peer(peer) = cli.tap.command else {
            panic!("not a peer command");
        };
        assert_eq!(
            peer.announce_to,
            Some(std::net::Ipv4Addr::new(192, 168, 1, 3))
        );
        // --echo and --send exclude each other; one key source is required.
        assert!(Cli::try_parse_from([
            "tap",
            "peer",
            "--tap",
            "t",
            "--ip",
            "10.0.0.2/24",
            "--gw",
            "10.0.0.1",
            "--peer-key",
            &"02".repeat(32),
            "--mediator",
            "10.0.0.3:1",
        ])
        .is_err());
        assert!(
            Cli::try_parse_from(["tap", "relay", "--a", "x", "--b", "y", "--delay-ms", "20",])
                .is_ok()
        );
    }
}
