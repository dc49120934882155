//! A hostile peer against the mediator's session: any bytes at any times. Never panics, never emits a
//! frame that does not parse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psc::identity::SaltyVerifier;
use p2psc::proto::{MediatorConfig, Session};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{Message, MAX_FRAME_LEN};

fuzz_target!(|steps: Vec<(u16, Vec<u8>)>| {
    let config = MediatorConfig::default();
    let mut now = Instant::from_millis(0);
    let mut s = Session::new(config, "203.0.113.5:4000".parse().unwrap(), [7; 32], now);
    let mut buf = [0u8; MAX_FRAME_LEN];
    for (dt, bytes) in steps.iter().take(64) {
        now += Duration::from_millis(u64::from(*dt));
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (used, _) = s.receive(now, &SaltyVerifier, rest);
            if used == 0 {
                break;
            }
            rest = &rest[used..];
        }
        let _ = s.poll(now);
        while let Some(n) = s.transmit(now, &mut buf) {
            assert!(Message::parse_bytes(&buf[..n]).is_ok());
        }
    }
});
