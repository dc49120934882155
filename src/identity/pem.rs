//! Key files (feature `std`): PKCS#8 and SubjectPublicKeyInfo PEM. Reading decodes the base64 and
//! hands the DER to `der`; writing goes through the RustCrypto `ed25519`, `pkcs8` and `der` crates.

use super::keypair::wipe;
use super::{KeyError, Keypair, PublicKey};
use ed25519::pkcs8::spki::der::{self, pem::LineEnding, zeroize::Zeroizing, Document};
use ed25519::pkcs8::{
    EncodePrivateKey, EncodePublicKey, KeypairBytes, PublicKeyBytes, SecretDocument,
};
use std::string::String;

/// RFC 7468 labels.
const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
const ENCRYPTED_PRIVATE_KEY_LABEL: &str = "ENCRYPTED PRIVATE KEY";
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl PublicKey {
    /// Read a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, RFC 8410), as written by
    /// `openssl pkey -pubout`. The key is not validated (see [`PublicKey`]).
    pub fn from_public_key_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = Document::from_pem(pem).map_err(|e| der_error(&e))?;
        if label != PUBLIC_KEY_LABEL {
            return Err(KeyError::Pem);
        }
        Self::from_public_key_der(der.as_bytes())
    }

    /// Write a SubjectPublicKeyInfo PEM, byte for byte what `openssl pkey -pubout` writes
    /// (LF line endings, final newline).
    pub fn to_public_key_pem(&self) -> String {
        // `.ok()`: the `der` error cannot be shown through defmt.
        let pem = PublicKeyBytes(self.to_bytes()).to_public_key_pem(LineEnding::LF);
        unwrap!(pem.ok(), "a 32-byte SubjectPublicKeyInfo always encodes")
    }

    /// All 64 hex digits, lowercase (same as `format!("{:x}", key)`).
    pub fn to_hex(&self) -> String {
        std::format!("{self:x}")
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl Keypair {
    /// Read a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 5958 / RFC 8410), as written by
    /// `openssl genpkey -algorithm ed25519`.
    ///
    /// The rules of [`Keypair::from_pkcs8_der`] apply to the key inside: both versions, a v2 key's
    /// public key checked. Encrypted keys are refused with [`KeyError::Encrypted`].
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        // Decoding the PEM ourselves tells an encrypted key from a wrong one.
        let (label, der) = SecretDocument::from_pem(pem).map_err(|e| der_error(&e))?;
        match label {
            PRIVATE_KEY_LABEL => Self::from_pkcs8_der(der.as_bytes()),
            ENCRYPTED_PRIVATE_KEY_LABEL => Err(KeyError::Encrypted),
            _ => Err(KeyError::Pem),
        }
    }

    /// Write a PKCS#8 v1 PEM, byte for byte what `openssl genpkey -algorithm ed25519` writes
    /// (LF line endings, final newline). The text holds the secret; it is wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        // v1, without the public key, like OpenSSL: every reader recomputes it anyway.
        let mut bytes = KeypairBytes {
            secret_key: self.seed,
            public_key: None,
        };
        let pem = bytes.to_pkcs8_pem(LineEnding::LF);
        wipe(&mut bytes.secret_key);
        unwrap!(pem.ok(), "a 32-byte PKCS#8 key always encodes")
    }
}

/// Not PEM, or PEM around something that is not DER.
fn der_error(e: &der::Error) -> KeyError {
    match e.kind() {
        der::ErrorKind::Pem(_) => KeyError::Pem,
        _ => KeyError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeyError, Keypair, PublicKey, Signature};
    use ed25519::pkcs8::spki::der::{pem, pem::LineEnding};
    use ed25519::pkcs8::{EncodePrivateKey, KeypairBytes, PublicKeyBytes, SecretDocument};
    use proptest::prelude::*;
    use std::{string::String, vec::Vec};

    const ALICE: &str = include_str!("../../tests/fixtures/alice.pem");
    const ALICE_PUB: &str = include_str!("../../tests/fixtures/alice.pub.pem");
    const BOB: &str = include_str!("../../tests/fixtures/bob.pem");
    const BOB_PUB: &str = include_str!("../../tests/fixtures/bob.pub.pem");

    #[test]
    fn openssl_keys_match_their_public_keys() {
        for (private, public) in [(ALICE, ALICE_PUB), (BOB, BOB_PUB)] {
            let keypair = Keypair::from_pkcs8_pem(private).unwrap();
            let key = PublicKey::from_public_key_pem(public).unwrap();
            assert_eq!(keypair.public_key(), key);
        }
        // As printed by `openssl pkey -in alice.pem -text -noout`.
        assert_eq!(
            PublicKey::from_public_key_pem(ALICE_PUB).unwrap().to_hex(),
            "7dccfdb9cae36575907dbfd97ae050fb185d400f8617a29844d7c5e037f632d6"
        );
        assert_ne!(
            PublicKey::from_public_key_pem(ALICE_PUB),
            PublicKey::from_public_key_pem(BOB_PUB)
        );
    }

    #[test]
    fn same_signature_as_openssl() {
        let msg = include_bytes!("../../tests/fixtures/alice.msg");
        let openssl = Signature::from_bytes(*include_bytes!("../../tests/fixtures/alice.msg.sig"));
        let keypair = Keypair::from_pkcs8_pem(ALICE).unwrap();
        assert_eq!(keypair.sign(msg), openssl);
        assert_eq!(keypair.public_key().verify(msg, &openssl), Ok(()));
    }

    #[test]
    fn writes_what_openssl_writes() {
        for (private, public) in [(ALICE, ALICE_PUB), (BOB, BOB_PUB)] {
            let keypair = Keypair::from_pkcs8_pem(private).unwrap();
            assert_eq!(keypair.to_pkcs8_pem().trim_end(), private.trim_end());
            assert_eq!(
                keypair.public_key().to_public_key_pem().trim_end(),
                public.trim_end()
            );
        }
    }

    #[test]
    fn pem_round_trip() {
        let keypair = Keypair::from_seed(&[42; 32]);
        let again = Keypair::from_pkcs8_pem(&keypair.to_pkcs8_pem()).unwrap();
        assert_eq!(again.public_key(), keypair.public_key());
        assert_eq!(again.sign(b"x"), keypair.sign(b"x"));
        let key = keypair.public_key();
        assert_eq!(
            PublicKey::from_public_key_pem(&key.to_public_key_pem()),
            Ok(key)
        );
        assert_eq!(key.to_hex().parse::<PublicKey>(), Ok(key));
    }

    fn v2_pem(seed: [u8; 32], public: [u8; 32]) -> String {
        let bytes = KeypairBytes {
            secret_key: seed,
            public_key: Some(PublicKeyBytes(public)),
        };
        String::from(bytes.to_pkcs8_pem(LineEnding::LF).unwrap().as_str())
    }

    #[test]
    fn pkcs8_v2() {
        let keypair = Keypair::from_seed(&[3; 32]);
        let v2 = v2_pem([3; 32], keypair.public_key().to_bytes());
        assert_ne!(v2, *keypair.to_pkcs8_pem());
        assert_eq!(
            Keypair::from_pkcs8_pem(&v2).unwrap().public_key(),
            keypair.public_key()
        );

        let other = Keypair::from_seed(&[4; 32]).public_key().to_bytes();
        assert_eq!(
            Keypair::from_pkcs8_pem(&v2_pem([3; 32], other)).unwrap_err(),
            KeyError::PublicKeyMismatch
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        for pem in [
            include_str!("../../tests/fixtures/x25519.pem"),
            include_str!("../../tests/fixtures/ed448.pem"),
            include_str!("../../tests/fixtures/rsa.pem"),
        ] {
            assert_eq!(
                Keypair::from_pkcs8_pem(pem).unwrap_err(),
                KeyError::NotEd25519
            );
        }
        let x25519_pub = include_str!("../../tests/fixtures/x25519.pub.pem");
        assert_eq!(
            PublicKey::from_public_key_pem(x25519_pub),
            Err(KeyError::NotEd25519)
        );
    }

    #[test]
    fn encrypted_key_is_refused() {
        let pem = include_str!("../../tests/fixtures/alice.encrypted.pem");
        assert_eq!(
            Keypair::from_pkcs8_pem(pem).unwrap_err(),
            KeyError::Encrypted
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let bad_base64 = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
        for text in ["", "hello", bad_base64, ALICE_PUB, &ALICE[1..]] {
            assert_eq!(
                Keypair::from_pkcs8_pem(text).unwrap_err(),
                KeyError::Pem,
                "{text:?}"
            );
        }
        for text in ["", "hello", ALICE] {
            assert_eq!(
                PublicKey::from_public_key_pem(text),
                Err(KeyError::Pem),
                "{text:?}"
            );
        }

        // Well-formed PEM around DER that is not a key.
        let (_, der) = SecretDocument::from_pem(ALICE).unwrap();
        let truncated =
            pem::encode_string("PRIVATE KEY", LineEnding::LF, &der.as_bytes()[..40]).unwrap();
        assert_eq!(
            Keypair::from_pkcs8_pem(&truncated).unwrap_err(),
            KeyError::Malformed
        );
        let (_, spki) = SecretDocument::from_pem(ALICE_PUB).unwrap();
        let spki_as_pkcs8 =
            pem::encode_string("PRIVATE KEY", LineEnding::LF, spki.as_bytes()).unwrap();
        assert_eq!(
            Keypair::from_pkcs8_pem(&spki_as_pkcs8).unwrap_err(),
            KeyError::Malformed
        );
        let pkcs8_as_spki =
            pem::encode_string("PUBLIC KEY", LineEnding::LF, der.as_bytes()).unwrap();
        assert_eq!(
            PublicKey::from_public_key_pem(&pkcs8_as_spki),
            Err(KeyError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn any_text_is_refused_without_panic(text in ".*") {
            prop_assert!(Keypair::from_pkcs8_pem(&text).is_err());
            prop_assert!(PublicKey::from_public_key_pem(&text).is_err());
        }

        /// One changed character in a real key file: an error or a key, never a panic.
        #[test]
        fn damaged_key_files_do_not_panic(i in any::<prop::sample::Index>(), c in any::<char>()) {
            for text in [ALICE, ALICE_PUB] {
                let mut damaged: Vec<char> = text.chars().collect();
                let i = i.index(damaged.len());
                damaged[i] = c;
                let damaged: String = damaged.into_iter().collect();
                let _ = Keypair::from_pkcs8_pem(&damaged);
                let _ = PublicKey::from_public_key_pem(&damaged);
            }
        }
    }
}
