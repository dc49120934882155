//! A hostile mediator against the peer's registration, and a hostile peer against the handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psc::identity::{Keypair, SaltyVerifier};
use p2psc::proto::{Handshake, HandshakeParams, RegisterConfig, Registration};
use p2psc::time::Instant;
use p2psc::wire::{Role, MAX_FRAME_LEN};

fuzz_target!(|input: (bool, Vec<u8>)| {
    let (leader, data) = input;
    let me = Keypair::from_seed(&[1; 32]);
    let peer = Keypair::from_seed(&[2; 32]).public_key();
    let now = Instant::from_millis(0);
    let mut buf = [0u8; MAX_FRAME_LEN];

    let mut r = Registration::new(RegisterConfig::default(), me.public_key(), peer, [3; 32], None, now);
    let _ = r.transmit(now, &mut buf);
    let mut rest = &data[..];
    while !rest.is_empty() {
        match r.receive(now, &me, rest) {
            Ok((0, _)) | Err(_) => break,
            Ok((used, _)) => rest = &rest[used..],
        }
        while r.transmit(now, &mut buf).is_some() {}
    }

    let role = if leader { Role::Leader } else { Role::Follower };
    let params = HandshakeParams { role, peer, own_nonce: [4; 32], peer_nonce: [5; 32] };
    let mut h = Handshake::new(&me, params, [6; 32]);
    h.start(Instant::from_millis(1000));
    h.confirm();
    let mut rest = &data[..];
    while !rest.is_empty() {
        match h.receive(&SaltyVerifier, rest) {
            Ok((0, _)) | Err(_) => break,
            Ok((used, _)) => rest = &rest[used..],
        }
    }
    // Forging the peer's signature is not something a fuzzer should manage.
    assert!(h.session_key().is_none());
});
