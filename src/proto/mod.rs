//! The protocol's state machines, sans I/O.
//!
//! Like smoltcp's sockets, these never read a clock, a socket or a random number generator: time, random
//! bytes and keys come in as arguments; each machine takes received bytes with `receive`, hands out frames
//! to send with `transmit`, and says with `poll_at` when `poll` must run its deadlines. That is what lets
//! the firmware, the mediator server and the simulator share one implementation, and what makes the
//! simulator deterministic.
//!
//! - [`register`]: the peer's registration with the mediator, up to the Match (protocol §7).
//! - [`punch`]: the punch (§8): targets, the shared retry schedule, each candidate's attempt life
//!   cycle and the choice of the winning connection.
//! - [`auth`]: the peer-to-peer handshake on each candidate connection (§9).
//! - `relay` (feature `relay`): the peer's side of the relay through the mediator and the path
//!   decision of a version-2 Match (§14).
//! - [`client`]: the peer's whole side, sequencing the above with the mediator connection; every peer
//!   shell drives it.
//! - [`mediator`]: the mediator's per-connection sessions and its table of waiting peers.
//! - [`rendezvous`]: which of several mediators a pair meets on (§13): the ranking both peers compute.
//! - [`transcript`]: what is signed, for all of them.
//! - [`channel`]: the secure channel that protects the stream after the handshake.

pub mod auth;
pub mod channel;
pub mod client;
pub mod mediator;
pub mod punch;
pub mod register;
#[cfg(feature = "relay")]
pub mod relay;
pub mod rendezvous;
pub mod transcript;

pub use auth::{AuthError, AuthEvent, Handshake, HandshakeParams, SessionKey};
pub use mediator::{ConnId, MediatorConfig, Notice, Session, SessionEvent, Table};
pub use register::{PunchInfo, RegisterConfig, RegisterError, RegisterEvent, Registration};

/// Hand `data` to `take` — a machine's frame-at-a-time `receive`, with whatever it reports handled — until
/// it consumes nothing more or nothing is left. Returns the bytes consumed. Every shell that reads a
/// byte stream into a machine needs this loop; here it is once.
pub fn feed(data: &[u8], mut take: impl FnMut(&[u8]) -> usize) -> usize {
    let mut used = 0;
    while used < data.len() {
        match take(&data[used..]) {
            0 => break,
            n => used += n,
        }
    }
    used
}

/// Write the frames `next` hands out (a machine's `transmit`) into `out`, while a largest frame
/// ([`MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN)) still fits. Returns the bytes written.
pub fn fill(out: &mut [u8], mut next: impl FnMut(&mut [u8]) -> Option<usize>) -> usize {
    let mut len = 0;
    while out.len() - len >= crate::wire::MAX_FRAME_LEN {
        match next(&mut out[len..]) {
            Some(n) => len += n,
            None => break,
        }
    }
    len
}
