//! host-sim: p2psc's network test bench.
//!
//! Real p2psc code on real smoltcp stacks, in memory, on a virtual clock: same inputs, same run.
//!
//! - [`clock`]: a per-thread virtual embassy-time driver that jumps to the next alarm.
//! - [`exec`]: a deterministic single-threaded executor over that clock.
//! - [`link`]: an in-memory Ethernet segment whose ports are `embassy_net_driver::Driver`s.
//! - [`mediator`]: the mediator's sans-IO logic served over smoltcp sockets.

pub mod clock;
pub mod exec;
pub mod link;
pub mod mediator;
