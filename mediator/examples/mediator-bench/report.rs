//! What the bench prints: a line per figure as it is measured, then the summary against the goals.

use crate::host;
use crate::measure::{Ceiling, Memory, Throughput};
use crate::relay::{RelayMemory, RelayThroughput};

/// Every figure of a run, for the summary.
pub struct Figures {
    /// (a).
    pub ceiling: Ceiling,
    /// (b).
    pub shared: Throughput,
    /// (b1), on a machine with two cores or more.
    pub pinned: Option<Throughput>,
    /// (c).
    pub memory: Memory,
}

/// Registrations per second over (a)'s one-thread ceiling, at least this.
const THROUGHPUT_GOAL: f64 = 0.6;
/// Server memory per waiting peer, at most this (bytes).
const MEMORY_GOAL: f64 = 4096.0;
/// Cores busy with work other than the server and the clients above which the summary warns.
const QUIET: f64 = 0.2;

/// The machine and the sizes of the core's mediator state.
pub fn header(nofile: u64) {
    println!(
        "mediator-bench: {} cores, RLIMIT_NOFILE {nofile}",
        host::cores()
    );
    println!(
        "sizes: Session {} B, Entry {} B",
        std::mem::size_of::<p2psc::proto::Session>(),
        std::mem::size_of::<p2psc::proto::mediator::Entry>()
    );
}

/// (a).
pub fn ceiling(c: &Ceiling) {
    println!(
        "(a) ed25519-dalek verify_strict: {:.0}/s on 1 thread, {:.0}/s on 2 threads",
        c.one, c.two
    );
}

/// (b) or (b1).
pub fn throughput(what: &str, t: &Throughput, pairs: usize) {
    println!(
        "{what}: {:.0} registrations/s ({} in {:.1} s, {pairs} pairs in flight); server CPU {:.0} µs per \
         registration ({:.2} cores busy), clients {:.2} cores, anything else {:.2} cores",
        t.rate,
        t.completed,
        t.elapsed.as_secs_f64(),
        t.server_cpu_per_registration_us,
        t.server_cores,
        t.client_cores,
        t.other_cores,
    );
}

/// (d): `(processes, registrations/s)`, the first with one process.
pub fn scaling(rates: &[(usize, f64)], pairs: usize) {
    let one = rates.first().map_or(0.0, |&(_, r)| r);
    let cells: Vec<String> = rates
        .iter()
        .map(|&(n, r)| format!("{n}: {r:.0}/s (x{:.2})", r / one))
        .collect();
    println!(
        "(d) aggregate registrations through several mediator processes ({pairs} pairs spread over \
         them, clients on the same cores): {}",
        cells.join(", ")
    );
}

/// (c).
pub fn memory(m: &Memory) {
    println!(
        "(c) server VmRSS {} KiB idle, {} KiB with {} waiting peers: {:.0} B per waiting peer \
         (kernel slab, outside VmRSS: ~{:.0} B per socket)",
        m.before_kib, m.after_kib, m.peers, m.per_peer_bytes, m.kernel_per_socket_bytes,
    );
}

/// Every figure against its goal.
pub fn summary(f: &Figures) {
    let one = f.ceiling.one;
    let ratio = f.shared.rate / one;
    println!();
    println!("summary");
    println!(
        "  (a)  ceiling, 1 thread          {one:>7.0} verify/s  (2 threads {:.0}/s)",
        f.ceiling.two
    );
    println!(
        "  (b)  registrations, shared     {:>7.0} /s        (b)/(a)  = {ratio:.2}  (goal ≥ 0.60: {})",
        f.shared.rate,
        verdict(ratio >= THROUGHPUT_GOAL)
    );
    if let Some(pinned) = &f.pinned {
        let ratio = pinned.rate / one;
        println!(
            "  (b1) registrations, 1 core     {:>7.0} /s        (b1)/(a) = {ratio:.2}  (goal ≥ 0.60: {})",
            pinned.rate,
            verdict(ratio >= THROUGHPUT_GOAL)
        );
    }
    println!(
        "       server CPU per registration {:>5.0} µs       (verification alone: {:.0} µs)",
        f.shared.server_cpu_per_registration_us,
        1e6 / one
    );
    println!(
        "       one server core            {:>7.0} registrations/s (1 s / server CPU per registration)",
        1e6 / f.shared.server_cpu_per_registration_us
    );
    busy_machine_notes(f);
    println!(
        "  (c) memory per waiting peer  {:>9.0} B          (goal ≤ 4096 B: {})",
        f.memory.per_peer_bytes,
        verdict(f.memory.per_peer_bytes <= MEMORY_GOAL)
    );
    let gib = f64::from(1u32 << 30);
    println!(
        "      waiting peers per GiB    {:>9.0} of VmRSS; {:.0} with the kernel's socket memory",
        gib / f.memory.per_peer_bytes,
        gib / (f.memory.per_peer_bytes + f.memory.kernel_per_socket_bytes)
    );
}

/// A note for each throughput run during which other work kept the machine busy.
fn busy_machine_notes(f: &Figures) {
    let runs = std::iter::once(("(b)", &f.shared)).chain(f.pinned.iter().map(|p| ("(b1)", p)));
    for (name, t) in runs {
        if t.other_cores > QUIET {
            println!(
                "       note: {:.2} cores were busy with other work during {name}: the machine was not quiet",
                t.other_cores
            );
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// (e).
pub fn relay_throughput(t: &RelayThroughput) {
    let mb = t.bytes_per_s / 1e6;
    println!(
        "(e) relay: {mb:.0} MB/s delivered ({} pairs, both directions); server CPU {:.2} cores busy, \
         {:.0} MB/s per core",
        t.pairs,
        t.server_cores,
        mb / t.server_cores.max(1e-9),
    );
}

/// (f).
pub fn relay_memory(m: &RelayMemory) {
    println!(
        "(f) relay memory: {:.1} KiB per idle relayed pair (VmRSS {} -> {} KiB with {} pairs)",
        m.per_pair_bytes() / 1024.0,
        m.before_kib,
        m.after_kib,
        m.pairs,
    );
}
