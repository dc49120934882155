//! `mediator-bench`: how fast and how small the mediator is, on this machine.
//!
//! ```text
//! cargo run --release -p p2psc-mediator --example mediator-bench [-- --seconds 5 --peers 10000]
//! ```
//!
//! (a) ed25519-dalek verifications per second, on one thread and on two: the ceiling, since every
//!     registration costs the server one verification.
//! (b) completed registrations per second through the real server on loopback: pairs of clients (the
//!     crate's registration client, [`p2psc_mediator::client`], signing with ed25519-dalek) register,
//!     get matched and hang up. The server runs in a child process (this program re-executed with
//!     `--serve`) so its CPU time and memory can be read from /proc. Reported against (a).
//! (b1) repeats (b) with the server pinned to CPU 0 and the clients to CPU 1: the server's rate on one
//!     dedicated core, comparable with (a)'s one thread.
//! (d) aggregate registrations per second through 1, 2 and 4 mediator processes at once (the pairs
//!     spread over them, as the rendezvous ranking spreads real pairs), as a ratio to one: how far
//!     adding mediators scales on this machine, whose cores the clients share.
//! (c) resident memory per idle waiting peer: VmRSS of a fresh server process before and after
//!     `--peers` registered peers wait in its table.
//!
//! With `--relay` it measures the relay of protocol version 2 instead:
//!
//! ```text
//! cargo run --release -p p2psc-mediator --example mediator-bench -- --relay [--relay-streams 2 --relay-pairs 1000]
//! ```
//!
//! (e) relayed throughput on loopback: `--relay-streams` pairs send in both directions as fast as they
//!     can for `--seconds`, through a server without rate limits; bytes delivered per second, the
//!     server's CPU (cores busy), and so bytes per second per core of the server.
//! (f) resident memory per idle relayed pair: VmRSS of a fresh (warmed-up) server before and after
//!     `--relay-pairs` pairs have joined the relay.
//!
//! Clients and server share the machine's cores; the summary says how the CPU time was split.
//!
//! The parts: `args` (the command line), `load` (the clients), `server` (the server process),
//! `host` (/proc and process limits), `measure` (the figures), `relay` (the relay's figures), `report`
//! (the output).

mod args;
mod host;
mod load;
mod measure;
mod relay;
mod report;
mod server;

use std::time::Duration;

use clap::Parser;

fn main() {
    let args = args::Args::parse();
    if args.serve {
        server::run_child(args.cpu, &args.rest);
        return;
    }
    report::header(host::raise_nofile());
    if args.relay {
        let runtime = load::runtime(args.client_threads);
        let t = runtime.block_on(relay::throughput(args.relay_streams, args.seconds));
        report::relay_throughput(&t);
        let m = runtime.block_on(relay::memory(args.relay_pairs));
        report::relay_memory(&m);
        return;
    }
    let ceiling = measure::verify_ceiling(Duration::from_secs(1));
    report::ceiling(&ceiling);

    let runtime = load::runtime(args.client_threads);
    let load = args.load();
    let shared = runtime.block_on(measure::throughput(load));
    report::throughput(
        "(b) server and clients sharing all cores",
        &shared,
        load.pairs,
    );
    let pinned = measure::throughput_pinned(load);
    if let Some(pinned) = &pinned {
        report::throughput(
            "(b1) server pinned to CPU 0, clients to CPU 1",
            pinned,
            load.pairs,
        );
    }
    let scaling: Vec<(usize, f64)> = [1, 2, 4]
        .into_iter()
        .map(|n| (n, runtime.block_on(measure::aggregate(load, n))))
        .collect();
    report::scaling(&scaling, load.pairs);
    let memory = runtime.block_on(measure::memory(args.peers, args.sources));
    report::memory(&memory);
    report::summary(&report::Figures {
        ceiling,
        shared,
        pinned,
        memory,
    });
}
