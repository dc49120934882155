//! Strict Ed25519 verification with salty: [`PublicKey::verify`] adds to salty's check of the
//! verification equation the checks that make it accept exactly what ed25519-dalek's `verify_strict`
//! accepts (the rules are in the [module docs](super)), and [`SaltyVerifier`] offers it as a
//! [`Verifier`].

use core::fmt;

use super::{PublicKey, Signature, Verifier};

impl PublicKey {
    /// Verify `sig` over `msg` with salty, under the rules in the [module docs](super).
    ///
    /// [`SignatureError::InvalidKey`] if this key is not a point or is of small order,
    /// [`SignatureError::BadSignature`] otherwise.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let mut r = [0; 32];
        let mut s = [0; 32];
        r.copy_from_slice(&sig.as_bytes()[..32]);
        s.copy_from_slice(&sig.as_bytes()[32..]);
        // Cheap checks first; each one rejects something salty would accept.
        if has_small_order(self.as_bytes()) {
            return Err(SignatureError::InvalidKey);
        }
        if !is_canonical_scalar(&s) || has_small_order(&r) {
            return Err(SignatureError::BadSignature);
        }
        let key =
            salty::PublicKey::try_from(self.as_bytes()).map_err(|_| SignatureError::InvalidKey)?;
        key.verify(msg, &salty::Signature::from(sig.as_bytes()))
            .map_err(|_| SignatureError::BadSignature)
    }
}

/// Verifies with salty, through [`PublicKey::verify`] (works everywhere; fast only on thumbv7em and
/// thumbv8m.main).
#[derive(Clone, Copy, Debug, Default)]
pub struct SaltyVerifier;

impl Verifier for SaltyVerifier {
    fn verify(&self, key: &PublicKey, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        key.verify(msg, sig)
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SignatureError {
    /// The public key does not decode to a curve point (RFC 8032 §5.1.3), or is one of the eight points
    /// of small order, for which a signature proves nothing.
    InvalidKey,
    /// The signature is not this key's over this message: wrong key or message, `S` not less than ℓ,
    /// or `R` a point of small order.
    BadSignature,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidKey => "invalid or weak Ed25519 public key",
            Self::BadSignature => "bad Ed25519 signature",
        })
    }
}

impl core::error::Error for SignatureError {}

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493 (RFC 8032 §5.1), little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// Whether the little-endian number `s` is less than ℓ (RFC 8032 §5.1.7 step 1).
fn is_canonical_scalar(s: &[u8; 32]) -> bool {
    for (a, l) in s.iter().rev().zip(GROUP_ORDER.iter().rev()) {
        if a != l {
            return a < l;
        }
    }
    false // s == ℓ
}

/// p + k for small k, little-endian, where p = 2^255 - 19 is the field prime.
const fn p_plus(k: u8) -> [u8; 32] {
    let mut bytes = [0xff; 32];
    bytes[0] = 0xed + k;
    bytes[31] = 0x7f;
    bytes
}

/// The y coordinates of the eight points of small order, with the x sign bit (bit 255) cleared, in
/// every encoding that decodes (y and, for y < 19, y + p). Same list as libsodium's
/// `ge25519_has_small_order`; checked against curve25519-dalek's `EIGHT_TORSION` in the tests.
const SMALL_ORDER_Y: [[u8; 32]; 7] = [
    // y = 0: the two points of order 4
    [0; 32],
    // y = 1: the neutral element
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    // the four points of order 8 (two y values, each with both signs of x)
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 = -1: the point of order 2
    {
        let mut minus_one = p_plus(0);
        minus_one[0] = 0xec;
        minus_one
    },
    // y = p and y = p + 1: non-canonical encodings of 0 and 1
    p_plus(0),
    p_plus(1),
];

/// Whether `encoding` decodes to a point of small order (order 1, 2, 4 or 8).
fn has_small_order(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    y[31] &= 0x7f; // the sign of x does not change the order
    SMALL_ORDER_Y.contains(&y)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::test_vectors::{dalek_accepts, flip, RFC8032};
    use super::super::Keypair;
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
    use proptest::prelude::*;
    use std::{format, vec::Vec};

    #[test]
    fn wycheproof() {
        fn unhex(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        fn string_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
            let rest = line.strip_prefix(&format!("\"{name}\" : \""))?;
            Some(&rest[..rest.find('"')?])
        }
        let json = include_str!("../../tests/fixtures/wycheproof/eddsa_test.json");
        let (mut key, mut msg, mut sig) = ([0; 32], Vec::new(), Vec::new());
        let (mut tests, mut valid) = (0, 0);
        for line in json.lines().map(str::trim) {
            if let Some(pk) = string_field(line, "pk") {
                key.copy_from_slice(&unhex(pk));
            } else if let Some(m) = string_field(line, "msg") {
                msg = unhex(m);
            } else if let Some(s) = string_field(line, "sig") {
                sig = unhex(s);
            } else if let Some(result) = string_field(line, "result") {
                tests += 1;
                let Ok(sig) = <[u8; 64]>::try_from(&sig[..]) else {
                    assert_eq!(result, "invalid", "{} bytes signature", sig.len());
                    continue;
                };
                let ours = PublicKey::from_bytes(key).verify(&msg, &Signature::from_bytes(sig));
                assert_eq!(
                    ours.is_ok(),
                    result == "valid",
                    "key {:?} sig {:?}",
                    key,
                    sig
                );
                assert_eq!(
                    ours.is_ok(),
                    dalek_accepts(&key, &msg, &sig),
                    "key {:?}",
                    key
                );
                valid += usize::from(ours.is_ok());
            }
        }
        assert_eq!((tests, valid), (145, 84));
    }

    /// The blocklist holds exactly the encodings of the eight points of small order.
    #[test]
    fn small_order_list_matches_dalek() {
        use curve25519_dalek::{constants::EIGHT_TORSION, edwards::CompressedEdwardsY};
        for point in EIGHT_TORSION {
            assert!(has_small_order(&point.compress().to_bytes()), "{point:?}");
        }
        for y in SMALL_ORDER_Y {
            for sign in [0, 0x80] {
                let mut encoding = y;
                encoding[31] |= sign;
                let point = CompressedEdwardsY(encoding).decompress().unwrap();
                assert!(point.is_small_order(), "{encoding:02x?}");
            }
        }
        // A valid key is not flagged.
        assert!(!has_small_order(&RFC8032[0].public));
    }

    #[test]
    fn group_order_matches_dalek() {
        use curve25519_dalek::Scalar;
        let canonical = |s: [u8; 32]| bool::from(Scalar::from_canonical_bytes(s).is_some());
        let mut below = GROUP_ORDER;
        below[0] -= 1;
        let mut above = GROUP_ORDER;
        above[0] += 1;
        let mut top_byte = [0; 32];
        top_byte[31] = 0x10;
        for s in [
            [0; 32],
            below,
            GROUP_ORDER,
            above,
            top_byte,
            [0xff; 32],
            RFC8032[2].sig[32..].try_into().unwrap(),
        ] {
            assert_eq!(is_canonical_scalar(&s), canonical(s), "{s:02x?}");
        }
        assert!(is_canonical_scalar(&below) && !is_canonical_scalar(&GROUP_ORDER));
    }

    /// With the neutral element as key, R = neutral and S = 0 satisfy salty's equation for every
    /// message; p2psc must refuse the key.
    #[test]
    fn weak_key_is_rejected() {
        let mut neutral = [0; 32];
        neutral[0] = 1;
        let mut forged = [0; 64];
        forged[0] = 1;
        let salty_key = salty::PublicKey::try_from(&neutral).unwrap();
        assert!(salty_key
            .verify(b"anything", &salty::Signature::from(&forged))
            .is_ok());

        let key = PublicKey::from_bytes(neutral);
        let forged = Signature::from_bytes(forged);
        assert_eq!(
            key.verify(b"anything", &forged),
            Err(SignatureError::InvalidKey)
        );
        assert!(!dalek_accepts(&neutral, b"anything", forged.as_bytes()));
    }

    /// With R = neutral element and S = k·a (a: the key's discrete log, k = H(R || A || M)),
    /// [S]B - [k]A = R holds; a signature with a small-order R must still be refused.
    #[test]
    fn small_order_r_is_rejected() {
        use curve25519_dalek::{constants::ED25519_BASEPOINT_POINT, Scalar};
        let a = Scalar::from(123_456_789_u64);
        let key = (a * ED25519_BASEPOINT_POINT).compress().to_bytes();
        let mut r = [0; 32];
        r[0] = 1;
        let msg = b"small R";
        let hash = salty::Sha512::new()
            .updated(&r)
            .updated(&key)
            .updated(msg)
            .finalize();
        let s = Scalar::from_bytes_mod_order_wide(&hash) * a;
        let mut sig = [0; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        let salty_key = salty::PublicKey::try_from(&key).unwrap();
        assert!(salty_key.verify(msg, &salty::Signature::from(&sig)).is_ok());

        let sig = Signature::from_bytes(sig);
        assert_eq!(
            PublicKey::from_bytes(key).verify(msg, &sig),
            Err(SignatureError::BadSignature)
        );
        assert!(!dalek_accepts(&key, msg, sig.as_bytes()));
    }

    /// S + ℓ is the same scalar to salty's multiplication; p2psc must refuse it (RFC 8032 §5.1.7).
    #[test]
    fn malleated_signature_is_rejected() {
        let v = &RFC8032[1];
        let mut malleated = v.sig;
        let mut carry = 0u16;
        for (s, l) in malleated[32..].iter_mut().zip(GROUP_ORDER) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let salty_key = salty::PublicKey::try_from(&v.public).unwrap();
        assert!(salty_key
            .verify(v.msg, &salty::Signature::from(&malleated))
            .is_ok());

        let key = PublicKey::from_bytes(v.public);
        let malleated = Signature::from_bytes(malleated);
        assert_eq!(
            key.verify(v.msg, &malleated),
            Err(SignatureError::BadSignature)
        );
        assert!(!dalek_accepts(&v.public, v.msg, malleated.as_bytes()));
    }

    #[test]
    fn invalid_point_is_rejected() {
        // y = 2 is not the y coordinate of any curve point.
        let mut y2 = [0; 32];
        y2[0] = 2;
        assert!(VerifyingKey::from_bytes(&y2).is_err());
        let sig = Keypair::from_seed(&[7; 32]).sign(b"m");
        assert_eq!(
            PublicKey::from_bytes(y2).verify(b"m", &sig),
            Err(SignatureError::InvalidKey)
        );
    }

    #[test]
    fn error_text() {
        assert_eq!(
            format!("{}", SignatureError::InvalidKey),
            "invalid or weak Ed25519 public key"
        );
        assert_eq!(
            format!("{}", SignatureError::BadSignature),
            "bad Ed25519 signature"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// salty and ed25519-dalek make the same signature (Ed25519 is deterministic), and each
        /// verifies the other's.
        #[test]
        fn salty_and_dalek_interoperate(seed in any::<[u8; 32]>(), msg in prop::collection::vec(any::<u8>(), 0..300)) {
            let ours = Keypair::from_seed(&seed);
            let theirs = SigningKey::from_bytes(&seed);
            prop_assert_eq!(ours.public_key().to_bytes(), theirs.verifying_key().to_bytes());

            let our_sig = ours.sign(&msg);
            prop_assert!(theirs.verifying_key().verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(our_sig.as_bytes())).is_ok());
            let their_sig = Signature::from_bytes(theirs.sign(&msg).to_bytes());
            prop_assert_eq!(SaltyVerifier.verify(&ours.public_key(), &msg, &their_sig), Ok(()));
            prop_assert_eq!(our_sig, their_sig);
        }

        /// After one flipped bit anywhere in key, signature or message, salty and ed25519-dalek still
        /// agree (and both reject).
        #[test]
        fn tampering_agrees_with_dalek(seed in any::<[u8; 32]>(), msg in prop::collection::vec(any::<u8>(), 1..100), bit in any::<prop::sample::Index>()) {
            let keypair = Keypair::from_seed(&seed);
            let mut key = keypair.public_key().to_bytes();
            let mut sig = keypair.sign(&msg).to_bytes();
            let mut msg = msg;
            let bit = bit.index(8 * (32 + 64 + msg.len()));
            match bit / 8 {
                0..32 => flip(&mut key, bit),
                32..96 => flip(&mut sig, bit - 8 * 32),
                _ => flip(&mut msg, bit - 8 * 96),
            }
            let ours = PublicKey::from_bytes(key).verify(&msg, &Signature::from_bytes(sig));
            prop_assert!(ours.is_err());
            prop_assert_eq!(ours.is_ok(), dalek_accepts(&key, &msg, &sig));
        }
    }
}
