//! host-sim: p2psc's network test bench.
//!
//! Real p2psc code on real smoltcp stacks, in memory, on a virtual clock: same inputs, same run.
//!
//! - [`clock`]: a per-thread virtual embassy-time driver that jumps to the next alarm.
//! - [`exec`]: a deterministic single-threaded executor over that clock.
//! - [`network`]: a routed IPv4 network of hosts, Ethernet LANs (switches, ARP: [`ether`]), [`nat`]
//!   routers and an internet router, joined by links with seeded latency, jitter and loss; hosts'
//!   stacks run on its drivers (Ethernet on a LAN, medium IP on the internet).
//! - [`nat`]: NAT behaviour after RFC 4787 and RFC 5382 (mapping, port allocation, filtering,
//!   unsolicited SYNs, hairpinning, timeouts), rewriting IPv4/TCP headers ([`packet`]); with Linux
//!   conntrack's TCP tracking ([`conntrack`]: states, sequence windows, INVALID segments not NATted).
//! - [`mediator`]: the mediator's sans-IO logic served over smoltcp sockets, with the mapping probe's
//!   endpoint and the relay's splice (protocol version 2).
//! - [`scenario`]: one run — two peers calling `p2psc::net::connect_observed`, their NATs, the
//!   mediator — and its [`timeline`].
//! - [`theory`]: what should happen, from first principles (the punch, and the path: direct, relayed
//!   at once, or relayed after the fallback deadline); [`matrix`]: every NAT combination, simulated
//!   and compared with the theory.
//! - [`link`]: a simple in-memory Ethernet segment (for stack tests that want ARP and a switch, no
//!   routing).
//! - `tap` (Linux): p2psc on real TAP devices through real Linux NATs (`host-sim tap`).

//!
//! # Running it
//!
//! ```text
//! cargo run --release -p host-sim                        # the demo: two home routers, timeline, latency
//! cargo run --release -p host-sim -- --nat-a apdm/random/apdf/drop --mermaid demo.md
//! cargo run --release -p host-sim -- --nat-a symmetric --nat-b symmetric   # relayed at once
//! cargo run --release -p host-sim -- matrix [--full]     # every NAT pair vs theory (~50 s on 2 cores)
//! cargo run --release -p host-sim -- --nat-a linux-rst --nat-b linux-rst --delay-a 1 --delay-b 1 --stall-b 800
//!                                                        # RST routers 2 ms apart, B stalls after the Match
//! cargo run --release -p host-sim -- bench               # latency; symmetric NATs (relayed); loss; RST routers (with a stalled peer);
//!                                                        # late peers and same-LAN races (a table)
//! cargo test -p host-sim                                 # includes every matrix cell (~1 min in debug)
//! ```
//!
//! # Determinism
//!
//! One thread runs everything: the executor polls tasks in spawn order, the clock only moves when all
//! tasks sleep, every random choice (ports, sequence numbers, nonces, jitter, loss, NAT ports) derives
//! from the scenario's seed, and no container with a per-process random order (`HashMap`) decides
//! anything. The same seed gives the same timeline and the same packets, byte for byte
//! (`tests/demo.rs`, `tests/connect.rs`). Signatures are computed with ed25519-dalek through p2psc's
//! `Signer`/`Verifier` traits ([`crypto`]) — the same bytes as salty, fifty times faster on a host.
//!
//! # What the figures mean
//!
//! The set-up latency is measured from the mediator's second verified registration to both peers
//! authenticated; its physical limit is `0.5 × mediator RTT + 1.5 × peer RTT`. A direct connection takes
//! half a peer round trip more ([`theory::direct_setup`]): smoltcp's simultaneous open completes in
//! 1.5 round trips instead of one (see [`theory`]).

pub mod clock;
pub mod conntrack;
pub mod crypto;
pub mod ether;
pub mod exec;
pub mod link;
pub mod matrix;
pub mod mediator;
pub mod nat;
pub mod network;
pub mod packet;
pub mod rng;
pub mod scenario;
#[cfg(target_os = "linux")]
pub mod tap;
pub mod theory;
pub mod timeline;

/// p2psc's time (smoltcp's, microseconds) on the simulator's clock (embassy-time).
pub fn time_from_p2psc(at: p2psc::time::Instant) -> embassy_time::Instant {
    embassy_time::Instant::from_micros(at.total_micros().max(0) as u64)
}
