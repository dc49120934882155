//! Choices read from the fuzzer's bytes. Every helper answers even when the input has run out (with
//! its first option), so a script simply ends when the bytes do.
//!
//! Values come mostly from small sets (the [`ident`](crate::ident) keys, four nonces, a handful of
//! endpoints) so that fields match across messages and signatures repeat; now and then from raw bytes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::arbitrary::Unstructured;
use p2psc::identity::{PublicKey, Signature};
use p2psc::time::Duration;
use p2psc::wire::{AbortReason, Challenge, Hello, Match, Message, Nonce, PeerAuth, Pong, Proof};
use p2psc::wire::{Mapping, Paths, RelayMode, Role, MAX_FRAME_LEN};

use crate::ident;

/// One byte.
pub fn byte(u: &mut Unstructured) -> u8 {
    u.arbitrary().unwrap_or(0)
}

/// A number in `0..n` (`n` > 0).
pub fn below(u: &mut Unstructured, n: usize) -> usize {
    u.int_in_range(0..=n - 1).unwrap_or(0)
}

/// A coin toss.
pub fn flag(u: &mut Unstructured) -> bool {
    byte(u) & 1 == 1
}

/// True about once in `n` times.
pub fn one_in(u: &mut Unstructured, n: u8) -> bool {
    byte(u).is_multiple_of(n)
}

/// A 16-bit number.
pub fn word(u: &mut Unstructured) -> u16 {
    u.arbitrary().unwrap_or(0)
}

/// A 32-bit number.
pub fn long(u: &mut Unstructured) -> u32 {
    u.arbitrary().unwrap_or(0)
}

/// 32 raw bytes.
pub fn bytes32(u: &mut Unstructured) -> [u8; 32] {
    let mut out = [0u8; 32];
    let _ = u.fill_buffer(&mut out);
    out
}

/// How far time moves: not at all, microseconds (one event after another), milliseconds (across
/// schedule slots and round trips), or seconds (across every deadline; at most about an hour).
pub fn step(u: &mut Unstructured) -> Duration {
    let kind = byte(u) % 4;
    let n = u64::from(word(u));
    match kind {
        0 => Duration::ZERO,
        1 => Duration::from_micros(n),
        2 => Duration::from_millis(n),
        _ => Duration::from_secs(n % 4096),
    }
}

/// A delivery size: everything (0), or 1 to 255 bytes (a frame split anywhere).
pub fn chunk(u: &mut Unstructured) -> usize {
    match byte(u) {
        0 => usize::MAX,
        n => usize::from(n),
    }
}

/// An endpoint: mostly one of a few public, LAN and IPv6 ones; sometimes any IPv4 address and port
/// that a socket could report (not 0.0.0.0, not port 0: those do not parse, and a frame that does not
/// parse is the business of the wire targets and of [`Pipe::fault`](crate::pipe::Pipe::fault)).
pub fn endpoint(u: &mut Unstructured) -> SocketAddr {
    let v4 = |a, b, c, d, port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port);
    match byte(u) % 8 {
        0 => v4(203, 0, 113, 5, 4000),
        1 => v4(203, 0, 113, 5, 4001),
        2 => v4(198, 51, 100, 7, 5000),
        3 => v4(192, 168, 1, 10, 40000),
        4 => v4(192, 168, 1, 11, 40000),
        5 => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            4000,
        ),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(long(u).max(1))), word(u).max(1)),
    }
}

/// An optional endpoint.
pub fn maybe_endpoint(u: &mut Unstructured) -> Option<SocketAddr> {
    flag(u).then(|| endpoint(u))
}

/// A nonce: mostly one of four, sometimes raw.
pub fn nonce(u: &mut Unstructured) -> Nonce {
    match byte(u) % 8 {
        7 => bytes32(u),
        n => [n % 4; 32],
    }
}

/// A public key: mostly one of the identities, sometimes raw bytes.
pub fn key(u: &mut Unstructured) -> PublicKey {
    match byte(u) % 8 {
        7 => PublicKey::from_bytes(bytes32(u)),
        n => ident::public(usize::from(n)),
    }
}

/// 64 raw bytes as a signature (a fuzzer does not forge Ed25519).
pub fn signature(u: &mut Unstructured) -> Signature {
    let mut out = [0u8; 64];
    let _ = u.fill_buffer(&mut out);
    Signature::from_bytes(out)
}

/// A role.
pub fn role(u: &mut Unstructured) -> Role {
    if flag(u) {
        Role::Follower
    } else {
        Role::Leader
    }
}

/// Any message of the protocol, with fields from the sets above.
pub fn message(u: &mut Unstructured) -> Message {
    match byte(u) % 14 {
        0 => Message::Hello(Hello {
            key: key(u),
            want: key(u),
            nonce: nonce(u),
            local: maybe_endpoint(u),
            relay: relay_mode(u),
        }),
        1 => Message::Proof(Proof {
            signature: signature(u),
            hold_ms: word(u),
        }),
        2 => Message::Pong(Pong {
            token: long(u) % 4,
            hold_ms: word(u),
        }),
        3 => Message::Challenge(Challenge {
            nonce: nonce(u),
            observed: endpoint(u),
        }),
        4 => Message::Registered { wait_ms: long(u) },
        5 => Message::Ping { token: long(u) },
        6 => Message::Match(a_match(u)),
        7 => Message::RetryAfter { millis: long(u) },
        8 => Message::Abort(AbortReason::from_u8(byte(u) % 16)),
        9 => Message::PeerAuth(PeerAuth {
            key: key(u),
            ephemeral: bytes32(u),
            signature: signature(u),
        }),
        10 => Message::Confirm,
        11 => Message::Probe { nonce: nonce(u) },
        12 => Message::RelayRequest,
        _ => Message::Relayed,
    }
}

/// A Hello's relay flags: version 1 (none) or one of version 2's.
pub fn relay_mode(u: &mut Unstructured) -> Option<RelayMode> {
    match byte(u) % 4 {
        0 => None,
        1 => Some(RelayMode::Off),
        2 => Some(RelayMode::Fallback),
        _ => Some(RelayMode::Only),
    }
}

/// A mapping class.
pub fn mapping(u: &mut Unstructured) -> Mapping {
    Mapping::from_u8(byte(u) % 5).unwrap_or(Mapping::Unknown)
}

/// A version-2 Match's paths, or none (version 1); mostly small fallback deadlines.
pub fn paths(u: &mut Unstructured) -> Option<Paths> {
    flag(u).then(|| Paths {
        own: mapping(u),
        peer: mapping(u),
        relay_after_ms: match byte(u) % 4 {
            0 => 0,
            1 => word(u),
            _ => word(u) % 4000,
        },
    })
}

/// A Match with fields from the sets above.
pub fn a_match(u: &mut Unstructured) -> Match {
    Match {
        role: role(u),
        start_delay_ms: word(u),
        peer_nonce: nonce(u),
        peer_observed: endpoint(u),
        peer_local: maybe_endpoint(u),
        paths: paths(u),
    }
}

/// The frame of `message` as a version-1 registration sends it.
pub fn frame(message: &Message) -> Vec<u8> {
    frame_in(p2psc::wire::VERSION, message)
}

/// The frame of `message` as a registration of `version` sends it.
pub fn frame_in(version: u8, message: &Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let len = message
        .emit_bytes_in(version, &mut buf)
        .expect("a frame fits MAX_FRAME_LEN");
    buf[..len].to_vec()
}

/// Up to 64 raw bytes: garbage on a stream.
pub fn garbage(u: &mut Unstructured) -> Vec<u8> {
    let len = below(u, 65);
    u.bytes(len).unwrap_or(&[]).to_vec()
}
