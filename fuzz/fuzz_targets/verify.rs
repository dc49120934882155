//! The device's verifier against the host's: `SaltyVerifier` (salty plus p2psc's own strictness
//! checks, what a device runs) and `DalekVerifier` (ed25519-dalek's `verify_strict`, what the mediator
//! and the other fuzz targets use) must accept exactly the same signatures (`identity` module docs).
//!
//! Inputs start from a valid signature by one of the library's keys over fuzzer bytes and mutate it
//! where strict and lax verifiers part ways: a flipped bit in the signature, key or message, S + ℓ,
//! S replaced by any scalar, R or the key replaced by a point of small order (with either sign bit),
//! a non-canonical key encoding, or raw bytes. Slow on purpose: salty's portable code takes ~1.6 ms
//! per verification on a host.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2psc::identity::dalek::DalekVerifier;
use p2psc::identity::{PublicKey, SaltyVerifier, Signature, Signer, Verifier};
use p2psc_fuzz::ident::{identity, IDENTITIES};
use p2psc_fuzz::input::{below, byte, bytes32};
use p2psc_fuzz::{reach, Unstructured};

/// ℓ, the order of the base point, little-endian (RFC 8032 §5.1).
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Encodings of the points of small order, sign bit clear (protocol §6.1).
const SMALL_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    one(),
    hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
];

const fn one() -> [u8; 32] {
    let mut b = [0; 32];
    b[0] = 1;
    b
}

const fn digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

const fn hex(s: &str) -> [u8; 32] {
    let s = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(s[2 * i]) << 4 | digit(s[2 * i + 1]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let who = identity(below(&mut u, IDENTITIES));
    let len = below(&mut u, 160);
    let mut msg = u.bytes(len).unwrap_or(&[]).to_vec();
    let mut key = who.public.to_bytes();
    let mut sig = Signer::sign(&who.dalek, &msg).to_bytes();
    for _ in 0..1 + below(&mut u, 3) {
        mutate(&mut u, &mut key, &mut sig, &mut msg);
    }
    let (key, sig) = (PublicKey::from_bytes(key), Signature::from_bytes(sig));
    let device = SaltyVerifier.verify(&key, &msg, &sig);
    let host = DalekVerifier.verify(&key, &msg, &sig);
    reach(if device.is_ok() {
        "verify: both accept"
    } else {
        "verify: both refuse"
    });
    assert_eq!(
        device.is_ok(),
        host.is_ok(),
        "salty says {device:?}, dalek {host:?}"
    );
});

/// One of the changes that separate strict verifiers from lax ones.
fn mutate(u: &mut Unstructured, key: &mut [u8; 32], sig: &mut [u8; 64], msg: &mut [u8]) {
    let sign = byte(u) & 0x80;
    match byte(u) % 9 {
        0 => sig[below(u, 64)] ^= 1 << (byte(u) % 8),
        1 => key[below(u, 32)] ^= 1 << (byte(u) % 8),
        2 if !msg.is_empty() => {
            let at = below(u, msg.len());
            msg[at] ^= 1 << (byte(u) % 8);
        }
        3 => add_group_order(&mut sig[32..]),
        4 => sig[32..].copy_from_slice(&bytes32(u)),
        5 => {
            sig[..32].copy_from_slice(&SMALL_ORDER[below(u, SMALL_ORDER.len())]);
            sig[31] |= sign;
        }
        6 => {
            *key = SMALL_ORDER[below(u, SMALL_ORDER.len())];
            key[31] |= sign;
        }
        // A non-canonical y: p + small, which decodes (reduced mod p) unless it is in the list.
        7 => {
            *key = hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
            key[0] = key[0].wrapping_add(byte(u) % 19);
            key[31] |= sign;
        }
        _ => sig.copy_from_slice(&[bytes32(u), bytes32(u)].concat()),
    }
}

/// S + ℓ, in place (little-endian, carry out of the top dropped).
fn add_group_order(s: &mut [u8]) {
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(GROUP_ORDER) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
}
