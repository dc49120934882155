//! The record layer's ChaCha20-Poly1305 on AWS-LC ([`AwsLcCipher`]): the same AEAD as p2psc's
//! portable default, 2–4 times faster on x86-64 and AArch64, where AWS-LC computes ChaCha20 and
//! Poly1305 in one pass of assembly (the code BoringSSL and OpenSSL use).
//!
//! Secrets: AWS-LC keeps the key in the `EVP_AEAD_CTX` that `aws-lc-rs` allocates with
//! `OPENSSL_malloc`; dropping the key frees it with `EVP_AEAD_CTX_free`, whose `OPENSSL_free` zeroes
//! the whole allocation before releasing it. Each seal and open also zeroes its stack copy of the
//! key and the one-time Poly1305 key, and a failed open zeroes the body it decrypted.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use p2psc::proto::channel::{AeadError, RecordCipher, KEY_LEN, NONCE_LEN, TAG_LEN};

/// ChaCha20-Poly1305 (RFC 8439) from AWS-LC, through `aws-lc-rs`.
pub struct AwsLcCipher(LessSafeKey);

impl RecordCipher for AwsLcCipher {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        // The only error is a key of the wrong length, which the type rules out.
        let key = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte ChaCha20 key");
        AwsLcCipher(LessSafeKey::new(key))
    }

    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        let tag: Tag = self
            .0
            .seal_in_place_separate_tag(nonce, Aad::from(aad), body)
            .map_err(|_| AeadError)?;
        <[u8; TAG_LEN]>::try_from(tag.as_ref()).map_err(|_| AeadError)
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        match self
            .0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, body)
        {
            Ok(_) => Ok(()),
            Err(_) => {
                // aws-lc-rs leaves `body` unspecified on failure (AWS-LC zeroes it today): make sure
                // that no unauthenticated plaintext stays behind.
                body.fill(0);
                Err(AeadError)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;
    use p2psc::proto::channel::{
        ChannelError, ChannelKeys, Opener, RustCryptoCipher, Sealer, MAX_PLAINTEXT_LEN,
        MAX_RECORD_LEN, OVERHEAD,
    };
    use p2psc::proto::SessionKey;
    use p2psc::wire::Role;

    use super::*;

    /// The session key of the spec's vectors (`doc/protocol.md` Appendix A).
    const SESSION: SessionKey = SessionKey(hex!(
        "8e52c0c88795069e0061e3fa9308e28b5563731d8ea8f399dd2cfce644205982"
    ));

    /// Plaintext lengths from empty to the largest record's, around every block edge that
    /// ChaCha20 (64 bytes), Poly1305 (16 bytes) and AWS-LC's wide paths (256, 512) have.
    fn lengths() -> impl Iterator<Item = usize> {
        let edges = [16, 64, 128, 192, 256, 384, 512, 1024, 2000];
        let around = edges.into_iter().flat_map(|e| [e - 1, e, e + 1]);
        (0..=17)
            .chain(around)
            .chain([MAX_PLAINTEXT_LEN - 1, MAX_PLAINTEXT_LEN])
    }

    /// A plaintext of `len` bytes that differs from one length to the next.
    fn plaintext(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + len) as u8).collect()
    }

    fn nonce(number: u64) -> [u8; NONCE_LEN] {
        let mut nonce = [0; NONCE_LEN];
        nonce[4..].copy_from_slice(&number.to_be_bytes());
        nonce
    }

    /// Seal `records` (then the end of stream) into the stream `role` sends, with cipher `S`.
    fn seal_stream<S: RecordCipher>(role: Role, records: &[Vec<u8>]) -> Vec<u8> {
        let mut sealer = Sealer::<S>::with_cipher(ChannelKeys::derive(&SESSION, role).send);
        let mut stream = Vec::new();
        let mut out = [0u8; MAX_RECORD_LEN];
        for record in records {
            let sealed = sealer.seal(record, &mut out).unwrap();
            assert_eq!(sealed.consumed, record.len());
            stream.extend_from_slice(&out[..sealed.len]);
        }
        let len = sealer.seal_end(&mut out).unwrap();
        stream.extend_from_slice(&out[..len]);
        stream
    }

    /// Open the `stream` that `role` receives with cipher `O`: its plaintext, if the stream ended
    /// with its end-of-stream record.
    fn open_stream<O: RecordCipher>(role: Role, stream: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let key = ChannelKeys::derive(&SESSION, role).receive;
        let mut opener = Opener::<_, O>::with_cipher(key, [0u8; MAX_RECORD_LEN]);
        let mut plaintext = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let taken = opener.feed(rest)?;
            plaintext.extend_from_slice(opener.plaintext());
            opener.consume(usize::MAX);
            rest = &rest[taken..];
        }
        opener.finish()?;
        Ok(plaintext)
    }

    /// Records of every length, sealed by `S` and opened by `O`, in both directions of a session.
    fn check_interop<S: RecordCipher, O: RecordCipher>() {
        let records: Vec<Vec<u8>> = lengths().map(plaintext).collect();
        for role in [Role::Leader, Role::Follower] {
            let stream = seal_stream::<S>(role, &records);
            // Byte for byte what the reference seals.
            assert_eq!(stream, seal_stream::<RustCryptoCipher>(role, &records));
            assert_eq!(
                open_stream::<O>(role.other(), &stream),
                Ok(records.concat())
            );
        }
    }

    #[test]
    fn aws_lc_records_open_with_rust_crypto() {
        check_interop::<AwsLcCipher, RustCryptoCipher>();
    }

    #[test]
    fn rust_crypto_records_open_with_aws_lc() {
        check_interop::<RustCryptoCipher, AwsLcCipher>();
    }

    /// Both ciphers agree on the raw AEAD too, at record numbers a stream reaches only after years
    /// (the nonce's high bytes) and with associated data of other lengths than a header's.
    #[test]
    fn same_bytes_at_any_nonce_and_aad() {
        let key = [0x5a; KEY_LEN];
        let (aws, rust) = (AwsLcCipher::new(&key), RustCryptoCipher::new(&key));
        let numbers = [0, 1, 0xff, 0x1_0000_0000, u64::MAX - 2, u64::MAX - 1];
        for (number, len) in numbers.into_iter().zip(lengths().step_by(4)) {
            for aad in [&b""[..], b"\x01\x07\xed", &[0xa5; 40]] {
                let (mut a, mut r) = (plaintext(len), plaintext(len));
                let tag = aws.seal_in_place(&nonce(number), aad, &mut a).unwrap();
                assert_eq!(rust.seal_in_place(&nonce(number), aad, &mut r), Ok(tag));
                assert_eq!(a, r);
                assert_eq!(
                    rust.open_in_place(&nonce(number), aad, &mut a, &tag),
                    Ok(())
                );
                assert_eq!(aws.open_in_place(&nonce(number), aad, &mut r, &tag), Ok(()));
                assert_eq!((a, r), (plaintext(len), plaintext(len)));
            }
        }
    }

    /// `doc/protocol.md` Appendix A, the secure channel's records, sealed and opened by AWS-LC.
    #[test]
    fn spec_vectors() {
        let from_leader = [b"Hello, follower!".to_vec(), Vec::new()];
        let leader_stream = seal_stream::<AwsLcCipher>(Role::Leader, &from_leader);
        assert_eq!(
            leader_stream,
            [
                &hex!("01001078d70b3e31c406c59911a67a25a470a94df1e526e516e66a6b083d5bd4 b70ac6")[..],
                &hex!("01000044282b570dacb6b75dab73eb789e0a2c"),
                &hex!("0200002cdf87d49c55b38ebf19321ecbb5b91f"),
            ]
            .concat()
        );
        let from_follower = [b"Hello, leader!".to_vec(), (0u8..64).collect()];
        let follower_stream = seal_stream::<AwsLcCipher>(Role::Follower, &from_follower);
        assert_eq!(
            follower_stream,
            [
                &hex!("01000e3aa6dc00a441d35b47c00ad01427153621fac0a21c49fdd715856f8828 93")[..],
                &hex!(
                    "0100400a132aa2e60971f43aebd471614f10b5f0cc751a00f4420aa46e1c30d9"
                    "1160c55f7ae1e33a2c78acc45139186620fc5bb78b521e430309baff4c70d123"
                    "e139931af4e1ba361ded580d53077dbf910a58"
                ),
                &hex!("020000c40352f765e7c2317ea053fee50e2f3e"),
            ]
            .concat()
        );
        let opened = open_stream::<AwsLcCipher>(Role::Follower, &leader_stream);
        assert_eq!(opened, Ok(from_leader.concat()));
        let opened = open_stream::<AwsLcCipher>(Role::Leader, &follower_stream);
        assert_eq!(opened, Ok(from_follower.concat()));
    }

    /// Every flipped bit of a record (header, body, tag) is refused, and the opener's buffer then
    /// holds none of the plaintext.
    #[test]
    fn flipped_bit_fails_and_leaves_no_plaintext() {
        let secret = plaintext(40);
        let record = seal_stream::<AwsLcCipher>(Role::Leader, std::slice::from_ref(&secret));
        let len = secret.len() + OVERHEAD;
        for bit in 0..len * 8 {
            let mut forged = record[..len].to_vec();
            forged[bit / 8] ^= 1 << (bit % 8);
            let mut buf = [0u8; MAX_RECORD_LEN];
            let receive = ChannelKeys::derive(&SESSION, Role::Follower).receive;
            let mut opener = Opener::<_, AwsLcCipher>::with_cipher(receive, &mut buf[..]);
            let fed = opener.feed(&forged);
            assert!(
                opener.plaintext().is_empty(),
                "bit {bit} flipped released plaintext"
            );
            if bit >= 3 * 8 {
                // Body or tag: the whole record is in, and its tag fails.
                assert_eq!(fed, Err(ChannelError::BadTag), "bit {bit}");
            } else if fed.is_ok() {
                // A longer length: the opener waits for the rest, which never comes.
                assert_eq!(opener.finish(), Err(ChannelError::Truncated), "bit {bit}");
            }
            drop(opener);
            let leaked = buf.windows(secret.len()).any(|w| w == &secret[..]);
            assert!(!leaked, "bit {bit} flipped left the plaintext behind");
        }
    }

    /// The cipher itself, asked to open a forged body in place, leaves it the ciphertext or zeros.
    #[test]
    fn failed_open_leaves_no_plaintext_in_place() {
        let cipher = AwsLcCipher::new(&[9; KEY_LEN]);
        let secret = plaintext(MAX_PLAINTEXT_LEN);
        let mut body = secret.clone();
        let tag = cipher.seal_in_place(&nonce(3), b"hdr", &mut body).unwrap();
        let ciphertext = body.clone();
        let mut bad_tag = tag;
        bad_tag[15] ^= 0x80;
        for (number, aad, tag) in [
            (3, &b"hdr"[..], bad_tag),
            (4, b"hdr", tag),
            (3, b"hdR", tag),
        ] {
            let mut body = ciphertext.clone();
            let result = cipher.open_in_place(&nonce(number), aad, &mut body, &tag);
            assert_eq!(result, Err(AeadError));
            assert!(body == ciphertext || body.iter().all(|&b| b == 0));
        }
        assert_eq!(MAX_PLAINTEXT_LEN + OVERHEAD, MAX_RECORD_LEN);
    }
}
