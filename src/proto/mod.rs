//! The protocol's state machines, sans I/O.
//!
//! Like smoltcp's sockets, these never read a clock, a socket or a random number generator: time, random
//! bytes and keys come in as arguments; each machine takes received bytes with `receive`, hands out frames
//! to send with `transmit`, and says with `poll_at` when `poll` must run its deadlines. That is what lets
//! the firmware, the mediator server and the simulator share one implementation, and what makes the
//! simulator deterministic.
//!
//! - [`register`]: the peer's registration with the mediator, up to the Match.
//! - [`auth`]: the peer-to-peer handshake on each candidate connection.
//! - [`mediator`]: the mediator's per-connection sessions and its table of waiting peers.
//! - [`transcript`]: what is signed, for all of them.
//! - [`channel`]: the secure channel that protects the stream after the handshake.

pub mod auth;
pub mod channel;
pub mod mediator;
pub mod register;
pub mod transcript;

pub use auth::{AuthError, AuthEvent, Handshake, HandshakeParams, SessionKey};
pub use mediator::{ConnId, MediatorConfig, Notice, Session, SessionEvent, Table};
pub use register::{PunchInfo, RegisterConfig, RegisterError, RegisterEvent, Registration};
