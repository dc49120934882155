//! What gets signed: domain-separated transcripts, defined once for every party.
//!
//! Each use has its own context string, so a signature made for one use (registering with a mediator,
//! authenticating to a peer) never verifies as another. Each transcript binds both public keys and both
//! nonces of its exchange, so it cannot be replayed into another session or towards another key, and the
//! peer transcript binds the signer's role, so it cannot be reflected back. Byte layouts are in
//! `doc/protocol.md` ("Transcripts").

use core::net::SocketAddr;

use crate::identity::PublicKey;
use crate::wire::{emit_endpoint, Challenge, Hello, Nonce, Role, ENDPOINT_LEN};

/// Context of the registration proof (peer → mediator).
pub const REGISTER_CONTEXT: &[u8] = b"p2psc/1 register\0";
/// Context of the registration proof of a version-2 registration (its Hello has relay flags).
pub const REGISTER_CONTEXT_V2: &[u8] = b"p2psc/2 register\0";
/// Context of the peer authentication signature (peer ↔ peer).
pub const PEER_AUTH_CONTEXT: &[u8] = b"p2psc/1 peer-auth\0";
/// Context of the session key derivation.
pub const SESSION_KEY_CONTEXT: &[u8] = b"p2psc/1 session-key\0";

const CAPACITY: usize = 256;

/// A transcript assembled in a fixed buffer.
#[derive(Clone)]
pub struct Transcript {
    buf: [u8; CAPACITY],
    len: usize,
}

impl Transcript {
    fn new(context: &[u8]) -> Self {
        let mut t = Transcript {
            buf: [0; CAPACITY],
            len: 0,
        };
        t.push(context);
        t
    }

    fn push(&mut self, bytes: &[u8]) {
        // Every transcript below has a fixed length well under CAPACITY (checked by a test).
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_endpoint(&mut self, endpoint: Option<SocketAddr>) {
        let mut ep = [0u8; ENDPOINT_LEN];
        emit_endpoint(endpoint, &mut ep);
        self.push(&ep);
    }

    /// The bytes to sign or verify.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The registration transcript a peer signs in Proof: the Hello it sent and the Challenge it received.
/// A version-2 Hello (with relay flags) has its own context, and its flags follow `local`.
pub fn registration(hello: &Hello, challenge: &Challenge) -> Transcript {
    let context = match hello.relay {
        Some(_) => REGISTER_CONTEXT_V2,
        None => REGISTER_CONTEXT,
    };
    let mut t = Transcript::new(context);
    t.push(hello.key.as_bytes());
    t.push(hello.want.as_bytes());
    t.push(&hello.nonce);
    t.push_endpoint(hello.local);
    if let Some(relay) = hello.relay {
        t.push(&[relay as u8]);
    }
    t.push(&challenge.nonce);
    t.push_endpoint(Some(challenge.observed));
    t
}

/// The peer-auth transcript: what `signer` (in `signer_role`) signs for `verifier`.
pub fn peer_auth(
    signer_role: Role,
    signer: &PublicKey,
    verifier: &PublicKey,
    signer_nonce: &Nonce,
    verifier_nonce: &Nonce,
    signer_ephemeral: &[u8; 32],
) -> Transcript {
    let mut t = Transcript::new(PEER_AUTH_CONTEXT);
    t.push(&[signer_role.to_u8()]);
    t.push(signer.as_bytes());
    t.push(verifier.as_bytes());
    t.push(signer_nonce);
    t.push(verifier_nonce);
    t.push(signer_ephemeral);
    t
}

/// The session key both peers derive: SHA-512 over the context, the X25519 shared secret and both
/// sides' keys, nonces and ephemeral keys in leader-then-follower order, truncated to 32 bytes.
pub fn session_key(
    shared_secret: &[u8; 32],
    leader: (&PublicKey, &Nonce, &[u8; 32]),
    follower: (&PublicKey, &Nonce, &[u8; 32]),
) -> [u8; 32] {
    let mut h = salty::Sha512::new();
    h.update(SESSION_KEY_CONTEXT);
    h.update(shared_secret);
    for (key, nonce, ephemeral) in [leader, follower] {
        h.update(key.as_bytes());
        h.update(nonce);
        h.update(ephemeral);
    }
    let digest = h.finalize();
    let mut key = [0u8; 32];
    key.copy_from_slice(&digest[..32]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PublicKey {
        PublicKey::from_bytes([b; 32])
    }

    #[test]
    fn lengths_are_fixed_and_fit() {
        let hello = Hello {
            key: key(1),
            want: key(2),
            nonce: [3; 32],
            local: None,
            relay: None,
        };
        let challenge = Challenge {
            nonce: [4; 32],
            observed: "203.0.113.1:4000".parse().unwrap(),
        };
        let r = registration(&hello, &challenge);
        assert_eq!(
            r.as_bytes().len(),
            REGISTER_CONTEXT.len() + 32 * 4 + 2 * ENDPOINT_LEN
        );
        let p = peer_auth(Role::Leader, &key(1), &key(2), &[0; 32], &[1; 32], &[2; 32]);
        assert_eq!(p.as_bytes().len(), PEER_AUTH_CONTEXT.len() + 1 + 32 * 5);
        assert!(r.as_bytes().len() <= CAPACITY && p.as_bytes().len() <= CAPACITY);
        let v2 = Hello {
            relay: Some(crate::wire::RelayMode::Fallback),
            ..hello
        };
        let r2 = registration(&v2, &challenge);
        assert_eq!(r2.as_bytes().len(), r.as_bytes().len() + 1);
        assert_eq!(
            &r2.as_bytes()[..REGISTER_CONTEXT_V2.len()],
            REGISTER_CONTEXT_V2
        );
        assert_eq!(r2.as_bytes()[131], 1);
    }

    #[test]
    fn every_field_changes_the_transcript() {
        let base = peer_auth(Role::Leader, &key(1), &key(2), &[3; 32], &[4; 32], &[5; 32]);
        let variants = [
            peer_auth(
                Role::Follower,
                &key(1),
                &key(2),
                &[3; 32],
                &[4; 32],
                &[5; 32],
            ),
            peer_auth(Role::Leader, &key(2), &key(1), &[3; 32], &[4; 32], &[5; 32]),
            peer_auth(Role::Leader, &key(1), &key(2), &[4; 32], &[3; 32], &[5; 32]),
            peer_auth(Role::Leader, &key(1), &key(2), &[3; 32], &[4; 32], &[6; 32]),
        ];
        for v in variants {
            assert_ne!(base.as_bytes(), v.as_bytes());
        }
        assert_ne!(REGISTER_CONTEXT, PEER_AUTH_CONTEXT);
    }
}
