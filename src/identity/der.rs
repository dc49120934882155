//! Key files in DER (feature `pkcs8`): PKCS#8 private keys and SubjectPublicKeyInfo public keys, read
//! in place through the RustCrypto `ed25519`, `pkcs8`, `spki` and `der` crates, without an allocator.
//!
//! The PEM readers (feature `std`, in `pem`) decode the base64 and then call these, so both forms
//! accept and refuse exactly the same keys.

use super::keypair::wipe;
use super::{KeyError, Keypair, PublicKey};
use ed25519::pkcs8::spki::der::{self, asn1::AnyRef, Decode, Reader, Tag, Tagged};
use ed25519::pkcs8::{self, spki, DecodePrivateKey, DecodePublicKey, KeypairBytes, PublicKeyBytes};

#[cfg_attr(docsrs, doc(cfg(feature = "pkcs8")))]
impl PublicKey {
    /// Read a DER SubjectPublicKeyInfo (RFC 8410 §4), as written by
    /// `openssl pkey -in KEY -pubout -outform DER`: 44 bytes for an Ed25519 key. The key is not
    /// validated (see [`PublicKey`]).
    ///
    /// Works without `std` and without an allocator.
    pub fn from_public_key_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = PublicKeyBytes::from_public_key_der(der).map_err(spki_error)?;
        Ok(Self::from_bytes(key.to_bytes()))
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "pkcs8")))]
impl Keypair {
    /// Read a DER PKCS#8 private key (RFC 5958, RFC 8410 §7), as written by
    /// `openssl pkey -in KEY -outform DER`: 48 bytes for an OpenSSL Ed25519 key.
    ///
    /// Both versions are accepted; if a v2 key carries a public key, it must be the one the seed
    /// derives ([`KeyError::PublicKeyMismatch`] otherwise). Encrypted keys (`EncryptedPrivateKeyInfo`)
    /// are refused with [`KeyError::Encrypted`]. Works without `std` and without an allocator; costs
    /// one scalar multiplication, like [`Keypair::from_seed`].
    ///
    /// ```
    /// use p2psc::identity::{Keypair, PublicKey};
    ///
    /// // `openssl genpkey -algorithm ed25519 -outform DER`: 16 bytes of PKCS#8 header, then the seed.
    /// // Firmware can embed such a file with `include_bytes!` (doc/keys.md).
    /// const DEVICE_KEY: [u8; 48] = [
    ///     0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ///     0xb8, 0x09, 0x47, 0xd8, 0xb4, 0xb3, 0x00, 0x4e, 0x70, 0x6d, 0xf0, 0x29, 0x3e, 0xd6, 0x6e, 0x7d,
    ///     0x43, 0x17, 0xce, 0x5a, 0xaf, 0x34, 0x44, 0x08, 0x53, 0x94, 0xdb, 0x90, 0xc3, 0x3e, 0x2a, 0x33,
    /// ];
    /// let keypair = Keypair::from_pkcs8_der(&DEVICE_KEY)?;
    /// // What `openssl pkey -in KEY -pubout` and `p2psc pubkey KEY` show.
    /// let public = "7dccfdb9cae36575907dbfd97ae050fb185d400f8617a29844d7c5e037f632d6";
    /// assert_eq!(keypair.public_key(), PublicKey::from_hex(public)?);
    /// # Ok::<(), p2psc::identity::KeyError>(())
    /// ```
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut bytes = match KeypairBytes::from_pkcs8_der(der) {
            Ok(bytes) => bytes,
            Err(_) if is_encrypted(der) => return Err(KeyError::Encrypted),
            Err(e) => return Err(pkcs8_error(e)),
        };
        let keypair = Keypair::from_seed(&bytes.secret_key);
        // `ed25519` wipes its copy only with its `zeroize` feature, which p2psc does not enable.
        wipe(&mut bytes.secret_key);
        match bytes.public_key {
            Some(public) if public.to_bytes() != keypair.public_key().to_bytes() => {
                Err(KeyError::PublicKeyMismatch)
            }
            _ => Ok(keypair),
        }
    }
}

/// Whether `der` has the shape of an `EncryptedPrivateKeyInfo` (RFC 5958 §3): a SEQUENCE of the
/// encryption algorithm (a SEQUENCE) and the encrypted data (an OCTET STRING). A `PrivateKeyInfo`
/// starts with an INTEGER, a SubjectPublicKeyInfo ends with a BIT STRING.
fn is_encrypted(der: &[u8]) -> bool {
    let tag_of_next =
        |reader: &mut der::SliceReader<'_>| AnyRef::decode(reader).ok().map(|a| a.tag());
    let Ok(outer) = AnyRef::from_der(der) else {
        return false;
    };
    let Ok(mut inner) = der::SliceReader::new(outer.value()) else {
        return false;
    };
    outer.tag() == Tag::Sequence
        && tag_of_next(&mut inner) == Some(Tag::Sequence)
        && tag_of_next(&mut inner) == Some(Tag::OctetString)
        && inner.is_finished()
}

/// A SubjectPublicKeyInfo that did not give an Ed25519 key.
fn spki_error(e: spki::Error) -> KeyError {
    match e {
        spki::Error::OidUnknown { .. } => KeyError::NotEd25519,
        _ => KeyError::Malformed,
    }
}

/// A PKCS#8 document that did not give an Ed25519 key.
fn pkcs8_error(e: pkcs8::Error) -> KeyError {
    match e {
        pkcs8::Error::PublicKey(e) => spki_error(e),
        _ => KeyError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeyError, Keypair, PublicKey, Signature};

    // Made by OpenSSL 3.0 (tests/fixtures/README.md).
    const ALICE: &[u8] = include_bytes!("../../tests/fixtures/alice.der");
    const ALICE_PUB: &[u8] = include_bytes!("../../tests/fixtures/alice.pub.der");
    const ALICE_HEX: &str = "7dccfdb9cae36575907dbfd97ae050fb185d400f8617a29844d7c5e037f632d6";
    /// RFC 8410 §10.3's PKCS#8 v2 example (with an attribute and the public key).
    const RFC8410_V2: &[u8] = include_bytes!("../../tests/fixtures/rfc8410-v2.der");

    #[test]
    fn openssl_keys() {
        let keypair = Keypair::from_pkcs8_der(ALICE).unwrap();
        let key = PublicKey::from_public_key_der(ALICE_PUB).unwrap();
        assert_eq!(keypair.public_key(), key);
        assert_eq!(key, PublicKey::from_hex(ALICE_HEX).unwrap());

        let msg = include_bytes!("../../tests/fixtures/alice.msg");
        let openssl = Signature::from_bytes(*include_bytes!("../../tests/fixtures/alice.msg.sig"));
        assert_eq!(keypair.sign(msg), openssl);
    }

    #[test]
    fn pkcs8_v2_with_public_key() {
        let keypair = Keypair::from_pkcs8_der(RFC8410_V2).unwrap();
        // RFC 8410 §10.3: the public key of the example.
        let expected = "19bf44096984cdfe8541bac167dc3b96c85086aa30b6b6cb0c5c38ad703166e1";
        assert_eq!(keypair.public_key(), PublicKey::from_hex(expected).unwrap());

        // The same document with another public key: its last byte is the key's.
        let mut lying = [0; RFC8410_V2.len()];
        lying.copy_from_slice(RFC8410_V2);
        lying[RFC8410_V2.len() - 1] ^= 1;
        assert_eq!(
            Keypair::from_pkcs8_der(&lying).unwrap_err(),
            KeyError::PublicKeyMismatch
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        for der in [
            &include_bytes!("../../tests/fixtures/x25519.der")[..],
            &include_bytes!("../../tests/fixtures/ed448.der")[..],
        ] {
            assert_eq!(
                Keypair::from_pkcs8_der(der).unwrap_err(),
                KeyError::NotEd25519
            );
        }
        let x25519_pub = include_bytes!("../../tests/fixtures/x25519.pub.der");
        assert_eq!(
            PublicKey::from_public_key_der(x25519_pub),
            Err(KeyError::NotEd25519)
        );
    }

    #[test]
    fn encrypted_key_is_refused() {
        let der = include_bytes!("../../tests/fixtures/alice.encrypted.der");
        assert_eq!(
            Keypair::from_pkcs8_der(der).unwrap_err(),
            KeyError::Encrypted
        );
    }

    #[test]
    fn wrong_kind_of_document_is_malformed() {
        assert_eq!(
            Keypair::from_pkcs8_der(ALICE_PUB).unwrap_err(),
            KeyError::Malformed
        );
        assert_eq!(
            PublicKey::from_public_key_der(ALICE),
            Err(KeyError::Malformed)
        );
        // The PEM text is not DER.
        let pem = include_bytes!("../../tests/fixtures/alice.pem");
        assert_eq!(
            Keypair::from_pkcs8_der(pem).unwrap_err(),
            KeyError::Malformed
        );
    }

    /// Every prefix, every trailing byte and every single-bit change of a real key: an error or a key,
    /// never a panic; a cut or extended document is always an error.
    #[test]
    fn damaged_documents() {
        for der in [ALICE, ALICE_PUB, RFC8410_V2] {
            for len in 0..der.len() {
                assert!(Keypair::from_pkcs8_der(&der[..len]).is_err());
                assert!(PublicKey::from_public_key_der(&der[..len]).is_err());
            }
            let mut longer = [0; 128];
            longer[..der.len()].copy_from_slice(der);
            let longer = &longer[..der.len() + 1];
            assert!(Keypair::from_pkcs8_der(longer).is_err());
            assert!(PublicKey::from_public_key_der(longer).is_err());

            let mut damaged = [0; 128];
            for bit in 0..der.len() * 8 {
                damaged[..der.len()].copy_from_slice(der);
                damaged[bit / 8] ^= 1 << (bit % 8);
                let _ = Keypair::from_pkcs8_der(&damaged[..der.len()]);
                let _ = PublicKey::from_public_key_der(&damaged[..der.len()]);
            }
        }
    }
}
