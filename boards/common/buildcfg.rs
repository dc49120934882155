//! The boards' build-time configuration: `P2PSC_*` environment variables → `$OUT_DIR/config.rs`.
//!
//! Included by every board's `build.rs` (through `#[path]`) and by the mps2-an386 library's host tests,
//! so the parsing that decides what a firmware image contains is tested like any other code.
//!
//! | variable | meaning | TEST default |
//! |---|---|---|
//! | `P2PSC_KEY_SEED` | this device's Ed25519 secret seed, 64 hex | `a1` × 32 |
//! | `P2PSC_PEER_KEY` | the peer's Ed25519 public key, 64 hex | public key of seed `b2` × 32 |
//! | `P2PSC_MEDIATOR` | mediator `IPv4:port` | `203.0.113.10:7777` |
//! | `P2PSC_IPV4` | own `address/prefix`, or `dhcp` | per board |
//! | `P2PSC_GATEWAY` | default gateway, or `none` (ignored with DHCP) | per board |
//! | `P2PSC_MAC` | MAC address, or empty for the board's default | per board |
//! | `P2PSC_ENTROPY_SECRET` | secret mixed into boot entropy on boards without a TRNG, 64 hex | fixed |

#![allow(dead_code)]

use std::fmt::Write as _;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

/// TEST keys: seed [0xA1; 32] for the device, and the public key of seed [0xB2; 32] for its peer
/// (what scripts/board-e2e.sh gives the host peer).
pub const TEST_KEY_SEED: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
/// Public key of the seed [0xB2; 32].
pub const TEST_PEER_KEY: &str = "55154f42065ea5a1bea05463826be2684eb92df92c100027aabaae57ca554207";
/// Entropy secret of TEST builds.
pub const TEST_ENTROPY_SECRET: &str =
    "7e577e577e577e577e577e577e577e577e577e577e577e577e577e577e577e57";

/// A board's defaults for the addressing variables.
pub struct Defaults {
    /// `P2PSC_IPV4`: `address/prefix` or `dhcp`.
    pub ipv4: &'static str,
    /// `P2PSC_GATEWAY`.
    pub gateway: &'static str,
    /// `P2PSC_MAC`.
    pub mac: &'static str,
}

/// Read the variables (through `get`, which returns `None` for an unset one) and return the Rust
/// source of the `config` module, or a message naming the bad variable.
pub fn generate(
    defaults: &Defaults,
    mut get: impl FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut defaulted: Vec<&str> = Vec::new();
    let mut var = |name: &'static str, default: &str| match get(name) {
        Some(v) => v,
        None => {
            defaulted.push(name);
            default.to_string()
        }
    };
    let ctx = |name: &'static str| move |e: String| format!("{name}: {e}");
    let key_seed = hex32(&var("P2PSC_KEY_SEED", TEST_KEY_SEED)).map_err(ctx("P2PSC_KEY_SEED"))?;
    let peer_key = hex32(&var("P2PSC_PEER_KEY", TEST_PEER_KEY)).map_err(ctx("P2PSC_PEER_KEY"))?;
    let (med_addr, med_port) =
        endpoint(&var("P2PSC_MEDIATOR", "203.0.113.10:7777")).map_err(ctx("P2PSC_MEDIATOR"))?;
    let ipv4 = match var("P2PSC_IPV4", defaults.ipv4).trim() {
        "dhcp" => None,
        text => Some(cidr(text).map_err(ctx("P2PSC_IPV4"))?),
    };
    let gateway = gateway(&var("P2PSC_GATEWAY", defaults.gateway)).map_err(ctx("P2PSC_GATEWAY"))?;
    let mac = mac(&var("P2PSC_MAC", defaults.mac)).map_err(ctx("P2PSC_MAC"))?;
    let secret = hex32(&var("P2PSC_ENTROPY_SECRET", TEST_ENTROPY_SECRET))
        .map_err(ctx("P2PSC_ENTROPY_SECRET"))?;
    let test_keys = hex32(TEST_KEY_SEED) == Ok(key_seed);

    let ipv4 = match ipv4 {
        Some((a, p)) => format!("Some(({}, {p}))", bytes_literal(&a)),
        None => "None".to_string(),
    };
    let items = [
        (
            "True when the device key is the public TEST default.",
            format!("pub const TEST_KEYS: bool = {test_keys};"),
        ),
        (
            "Variables left at their defaults.",
            format!("pub const DEFAULTED: &[&str] = &{defaulted:?};"),
        ),
        (
            "This device's Ed25519 secret seed.",
            format!(
                "pub const KEY_SEED: [u8; 32] = {};",
                bytes_literal(&key_seed)
            ),
        ),
        (
            "The peer's Ed25519 public key.",
            format!(
                "pub const PEER_KEY: [u8; 32] = {};",
                bytes_literal(&peer_key)
            ),
        ),
        (
            "The mediator's IPv4 address.",
            format!(
                "pub const MEDIATOR_ADDR: [u8; 4] = {};",
                bytes_literal(&med_addr)
            ),
        ),
        (
            "The mediator's TCP port.",
            format!("pub const MEDIATOR_PORT: u16 = {med_port};"),
        ),
        (
            "Own IPv4 address and prefix length; `None`: DHCP.",
            format!("pub const IPV4: Option<([u8; 4], u8)> = {ipv4};"),
        ),
        (
            "Default gateway (static addressing).",
            format!(
                "pub const GATEWAY: Option<[u8; 4]> = {};",
                option_literal(gateway.as_ref().map(|g| &g[..]))
            ),
        ),
        (
            "MAC address (`None`: the board's default).",
            format!(
                "pub const MAC: Option<[u8; 6]> = {};",
                option_literal(mac.as_ref().map(|m| &m[..]))
            ),
        ),
        (
            "Secret mixed into the boot entropy on boards without a TRNG.",
            format!(
                "pub const ENTROPY_SECRET: [u8; 32] = {};",
                bytes_literal(&secret)
            ),
        ),
    ];
    let mut src =
        String::from("// Generated by build.rs from the P2PSC_* environment variables.\n");
    for (doc, item) in items {
        let _ = writeln!(src, "/// {doc}\n{item}");
    }
    Ok(src)
}

/// Cargo build-script glue: [`generate`] from the environment (with `rerun-if-env-changed` lines),
/// panicking with the message on a bad value.
pub fn from_env(defaults: &Defaults) -> String {
    let get = |name: &str| {
        println!("cargo:rerun-if-env-changed={name}");
        std::env::var(name).ok()
    };
    match generate(defaults, get) {
        Ok(src) => src,
        Err(e) => panic!("bad build-time configuration: {e} (see the board's README.md)"),
    }
}

/// 64 hex digits → 32 bytes.
pub fn hex32(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits, got {} characters",
            text.len()
        ));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("not hex: {:?}", &text[2 * i..2 * i + 2]))?;
    }
    Ok(out)
}

/// Dotted quad → 4 bytes.
pub fn ipv4(text: &str) -> Result<[u8; 4], String> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    if parts.len() != 4 {
        return Err(format!("not an IPv4 address: {text:?}"));
    }
    let mut out = [0u8; 4];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = p
            .parse()
            .map_err(|_| format!("not an IPv4 address: {text:?}"))?;
    }
    Ok(out)
}

/// `a.b.c.d/len` → address and prefix length.
pub fn cidr(text: &str) -> Result<([u8; 4], u8), String> {
    let (addr, len) = text
        .trim()
        .split_once('/')
        .ok_or_else(|| format!("expected ADDRESS/PREFIX, got {text:?}"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("bad prefix length in {text:?}"))?;
    if len > 32 {
        return Err(format!("prefix length over 32 in {text:?}"));
    }
    Ok((ipv4(addr)?, len))
}

/// `a.b.c.d:port` → address and port (port not 0).
pub fn endpoint(text: &str) -> Result<([u8; 4], u16), String> {
    let (addr, port) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("expected ADDRESS:PORT, got {text:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
    if port == 0 {
        return Err(format!("port 0 in {text:?}"));
    }
    Ok((ipv4(addr)?, port))
}

/// `none`/empty → no gateway; else an address.
pub fn gateway(text: &str) -> Result<Option<[u8; 4]>, String> {
    match text.trim() {
        "" | "none" => Ok(None),
        t => ipv4(t).map(Some),
    }
}

/// `52:54:00:12:34:56` → 6 bytes; `none`/empty → keep the NIC's own address.
pub fn mac(text: &str) -> Result<Option<[u8; 6]>, String> {
    let text = text.trim();
    if text.is_empty() || text == "none" {
        return Ok(None);
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("not a MAC address: {text:?}"));
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(format!("not a MAC address: {text:?}"));
        }
        *o = u8::from_str_radix(p, 16).map_err(|_| format!("not a MAC address: {text:?}"))?;
    }
    Ok(Some(out))
}

/// Rust source for a byte array constant's value.
pub fn bytes_literal(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
    format!("[{}]", items.join(", "))
}

/// Rust source for an `Option` of a byte array.
pub fn option_literal(bytes: Option<&[u8]>) -> String {
    match bytes {
        Some(b) => format!("Some({})", bytes_literal(b)),
        None => "None".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_values() {
        assert_eq!(hex32(&"a1".repeat(32)).unwrap(), [0xA1; 32]);
        assert_eq!(hex32(&"Ab".repeat(32)).unwrap(), [0xAB; 32]);
        assert_eq!(ipv4("203.0.113.10").unwrap(), [203, 0, 113, 10]);
        assert_eq!(cidr("10.0.1.2/24").unwrap(), ([10, 0, 1, 2], 24));
        assert_eq!(
            endpoint("203.0.113.10:7777").unwrap(),
            ([203, 0, 113, 10], 7777)
        );
        assert_eq!(gateway("none").unwrap(), None);
        assert_eq!(gateway("10.0.1.1").unwrap(), Some([10, 0, 1, 1]));
        assert_eq!(
            mac("52:54:00:aa:BB:02").unwrap(),
            Some([0x52, 0x54, 0, 0xAA, 0xBB, 2])
        );
        assert_eq!(mac("").unwrap(), None);
        assert_eq!(bytes_literal(&[1, 0xff]), "[0x01, 0xff]");
        assert_eq!(option_literal(None), "None");
    }

    fn gen(vars: &[(&str, &str)]) -> Result<String, String> {
        let defaults = Defaults {
            ipv4: "192.168.1.2/24",
            gateway: "192.168.1.1",
            mac: "",
        };
        generate(&defaults, |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn generates_test_defaults() {
        let src = gen(&[]).unwrap();
        assert!(src.contains("pub const TEST_KEYS: bool = true;"));
        assert!(src.contains("pub const KEY_SEED: [u8; 32] = [0xa1, 0xa1,"));
        assert!(src.contains("pub const PEER_KEY: [u8; 32] = [0x55, 0x15, 0x4f,"));
        assert!(src.contains("pub const MEDIATOR_ADDR: [u8; 4] = [0xcb, 0x00, 0x71, 0x0a];"));
        assert!(src.contains("pub const MEDIATOR_PORT: u16 = 7777;"));
        assert!(src.contains(
            "pub const IPV4: Option<([u8; 4], u8)> = Some(([0xc0, 0xa8, 0x01, 0x02], 24));"
        ));
        assert!(src.contains("pub const MAC: Option<[u8; 6]> = None;"));
    }

    #[test]
    fn generates_from_variables() {
        let seed = "01".repeat(32);
        let src = gen(&[
            ("P2PSC_KEY_SEED", &seed),
            ("P2PSC_IPV4", "dhcp"),
            ("P2PSC_MEDIATOR", "198.51.100.7:4000"),
        ])
        .unwrap();
        assert!(src.contains("pub const TEST_KEYS: bool = false;"));
        assert!(src.contains("pub const IPV4: Option<([u8; 4], u8)> = None;"));
        assert!(src.contains("pub const MEDIATOR_PORT: u16 = 4000;"));
        assert!(
            !src.contains("\"P2PSC_KEY_SEED\""),
            "not listed as defaulted"
        );
        let err = gen(&[("P2PSC_PEER_KEY", "abc")]).unwrap_err();
        assert!(err.starts_with("P2PSC_PEER_KEY: "), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        assert!(hex32(&"a1".repeat(31)).is_err());
        assert!(hex32(&"g1".repeat(32)).is_err());
        assert!(ipv4("10.0.1").is_err());
        assert!(ipv4("10.0.1.256").is_err());
        assert!(cidr("10.0.1.2").is_err());
        assert!(cidr("10.0.1.2/33").is_err());
        assert!(endpoint("203.0.113.10").is_err());
        assert!(endpoint("203.0.113.10:0").is_err());
        assert!(endpoint("203.0.113.10:70000").is_err());
        assert!(mac("52:54:00:aa:bb").is_err());
        assert!(mac("52:54:00:aa:bb:2").is_err());
    }
}
