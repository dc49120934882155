//! Parsers for the build-time configuration (environment variables read by `build.rs`).
//!
//! Shared by `build.rs` (through `#[path]`) and the library's host tests, so the parsing that decides
//! what a firmware image contains is tested like any other code.

#![allow(dead_code)]

use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

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
