//! Keys and signatures as hexadecimal text: [`PublicKey::from_hex`] reads 64 digits (in `const`
//! context too), `{:x}` prints every byte, and `Debug`, `Display` and `defmt::Format` print a short
//! form, a prefix and the first few bytes.

use core::fmt;

use super::{KeyError, PublicKey, Signature};
use crate::fmt::Bytes;

/// How many leading bytes `Debug`, `Display` and `defmt::Format` show of a key or signature.
const SHORT_LEN: usize = 8;

impl PublicKey {
    /// Parse exactly 64 hexadecimal digits (either case, nothing around them).
    ///
    /// Usable in `const` context, e.g. to build a mediator's key into firmware:
    /// ```
    /// use p2psc::identity::PublicKey;
    /// const MEDIATOR: PublicKey =
    ///     match PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a") {
    ///         Ok(key) => key,
    ///         Err(_) => panic!("bad mediator key"),
    ///     };
    /// assert_eq!(MEDIATOR.as_bytes()[0], 0xd7);
    /// ```
    pub const fn from_hex(hex: &str) -> Result<Self, KeyError> {
        match decode_hex(hex.as_bytes()) {
            Some(bytes) => Ok(Self::from_bytes(bytes)),
            None => Err(KeyError::InvalidHex),
        }
    }
}

impl core::str::FromStr for PublicKey {
    type Err = KeyError;

    /// Same as [`PublicKey::from_hex`].
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_hex(s)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_short_hex(f, "ed25519:", self.as_bytes(), "")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_short_hex(f, "ed25519:", self.as_bytes(), "")
    }
}

/// All 64 hex digits, lowercase; [`PublicKey::from_hex`] reads them back.
impl fmt::LowerHex for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&Bytes(self.as_bytes()), f)
    }
}

#[cfg(feature = "defmt")]
#[cfg_attr(docsrs, doc(cfg(feature = "defmt")))]
impl defmt::Format for PublicKey {
    fn format(&self, f: defmt::Formatter<'_>) {
        let b = self.as_bytes();
        defmt::write!(
            f,
            "ed25519:{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}…",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7]
        );
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_short_hex(f, "Signature(", self.as_bytes(), ")")
    }
}

/// All 128 hex digits, lowercase.
impl fmt::LowerHex for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&Bytes(self.as_bytes()), f)
    }
}

#[cfg(feature = "defmt")]
#[cfg_attr(docsrs, doc(cfg(feature = "defmt")))]
impl defmt::Format for Signature {
    fn format(&self, f: defmt::Formatter<'_>) {
        let b = self.as_bytes();
        defmt::write!(
            f,
            "Signature({=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}…)",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7]
        );
    }
}

const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const fn decode_hex(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    let mut i = 0;
    while i < 32 {
        let (Some(hi), Some(lo)) = (hex_digit(hex[2 * i]), hex_digit(hex[2 * i + 1])) else {
            return None;
        };
        out[i] = hi << 4 | lo;
        i += 1;
    }
    Some(out)
}

fn write_short_hex(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    bytes: &[u8],
    suffix: &str,
) -> fmt::Result {
    f.write_str(prefix)?;
    fmt::LowerHex::fmt(&Bytes(&bytes[..SHORT_LEN]), f)?;
    f.write_str("…")?;
    f.write_str(suffix)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::test_vectors::RFC8032;
    use super::*;
    use std::{format, string::String};

    #[test]
    fn short_and_full_forms() {
        let key = PublicKey::from_bytes(RFC8032[0].public);
        assert_eq!(format!("{key}"), "ed25519:d75a980182b10ab7…");
        assert_eq!(format!("{key:?}"), "ed25519:d75a980182b10ab7…");
        assert_eq!(
            format!("{key:x}"),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = Signature::from_bytes(RFC8032[0].sig);
        assert_eq!(format!("{sig:?}"), "Signature(e5564300c360ac72…)");
        assert_eq!(format!("{sig:x}").len(), 128);
        assert!(format!("{sig:x}").starts_with("e5564300c360ac72"));
    }

    #[test]
    fn hex_parsing() {
        const KEY: PublicKey = match PublicKey::from_hex(
            "D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A",
        ) {
            Ok(key) => key,
            Err(_) => panic!(),
        };
        assert_eq!(KEY.as_bytes(), &RFC8032[0].public);
        let full = format!("{KEY:x}");
        assert_eq!(full.parse::<PublicKey>(), Ok(KEY));
        for bad in [
            String::new(),
            String::from(&full[..63]),
            format!("{full}0"),
            format!(" {}", &full[1..]),
            format!("{}g", &full[..63]),
            format!("ed25519:{full}"),
            format!("{}é", &full[..62]), // 64 bytes, not 64 digits
        ] {
            assert_eq!(
                bad.parse::<PublicKey>(),
                Err(KeyError::InvalidHex),
                "{bad:?}"
            );
        }
    }
}
