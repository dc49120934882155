//! host-sim: p2psc's network test bench.
//!
//! Real p2psc code on real smoltcp stacks, in memory, on a virtual clock: same inputs, same run.
//!
//! - [`clock`]: a per-thread virtual embassy-time driver that jumps to the next alarm.
//! - [`exec`]: a deterministic single-threaded executor over that clock.
//! - [`network`]: a routed IPv4 network of hosts, switches, [`nat`] routers and an internet router,
//!   joined by links with seeded latency, jitter and loss; hosts' stacks run on its IP-medium drivers.
//! - [`nat`]: NAT behaviour after RFC 4787 and RFC 5382 (mapping, port allocation, filtering,
//!   unsolicited SYNs, hairpinning, timeouts), rewriting IPv4/TCP headers ([`packet`]).
//! - [`mediator`]: the mediator's sans-IO logic served over smoltcp sockets.
//! - [`scenario`]: one run — two peers calling `p2psc::net::connect_observed`, their NATs, the
//!   mediator — and its [`timeline`].
//! - [`theory`]: what should happen, from first principles; [`matrix`]: every NAT combination, simulated
//!   and compared with the theory.
//! - [`link`]: an in-memory Ethernet segment (for stack tests that want ARP and a switch).

pub mod clock;
pub mod crypto;
pub mod exec;
pub mod link;
pub mod matrix;
pub mod mediator;
pub mod nat;
pub mod network;
pub mod packet;
pub mod rng;
pub mod scenario;
pub mod theory;
pub mod timeline;

/// p2psc's time (smoltcp's, microseconds) on the simulator's clock (embassy-time).
pub fn time_from_p2psc(at: p2psc::time::Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.total_micros().max(0) as u64)
}
