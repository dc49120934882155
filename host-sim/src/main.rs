//! `host-sim`: p2psc's NAT simulator.
//!
//! - `host-sim` (or `host-sim demo`): two peers behind home routers connect; prints the timeline and the
//!   set-up latency next to its physical limit.
//! - `host-sim matrix`: every combination of NAT behaviours, simulated and compared with theory.
//! - `host-sim bench`: set-up latency distribution over many seeded runs; success under loss.
//! - `host-sim tap …` (Linux): p2psc through real Linux NATs on TAP devices (see README).

use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use embassy_time::Duration;
use host_sim::matrix;
use host_sim::nat::{Allocation, Filtering, Mapping, NatConfig, Tracking, Unsolicited};
use host_sim::scenario::{self, Delays, Layout, Report, Scenario};
use host_sim::timeline::Side;
use p2psc::connector::Path;

/// p2psc's deterministic NAT simulator: real p2psc and smoltcp code, simulated NATs and links, virtual
/// time.
#[derive(Debug, Parser)]
#[command(name = "host-sim", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    demo: DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two peers connect through NATs; print the timeline (the default command).
    Demo(DemoArgs),
    /// Every combination of NAT behaviours: outcome, set-up latency and theory's prediction.
    Matrix(MatrixArgs),
    /// Set-up latency distribution over seeded runs, and success under loss.
    Bench(BenchArgs),
    /// p2psc on TAP devices through real Linux NATs (root; see host-sim/README.md).
    #[cfg(target_os = "linux")]
    Tap(host_sim::tap::TapArgs),
}

/// A NAT behaviour: `home` (eim/preserve/apdf/drop), `linux-rst` (eim/preserve/apdf/rst: masquerade
/// without a firewall), `symmetric` (apdm/random/apdf/drop: no punch connects two of them, the pair is
/// relayed), or MAPPING/ALLOCATION/FILTERING/UNSOLICITED[/TRACKING] with mapping
/// eim|adm|apdm, allocation preserve|seq|random, filtering eif|adf|apdf, unsolicited drop|rst|icmp,
/// tracking linux (Linux conntrack, the default) | none (endpoints only: the RFC model alone).
/// Examples: `apdm/random/apdf/drop` (symmetric), `eim/preserve/eif/rst` (full cone),
/// `eim/preserve/apdf/drop/none`.
#[derive(Debug, Clone, Copy)]
struct NatSpec(NatConfig);

impl FromStr for NatSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        use clap::ValueEnum;
        if s == "home" {
            return Ok(NatSpec(NatConfig::home_router()));
        }
        if s == "linux-rst" {
            return Ok(NatSpec(NatConfig::linux_no_firewall()));
        }
        if s == "symmetric" {
            return Ok(NatSpec(NatConfig {
                mapping: Mapping::AddressPortDependent,
                allocation: Allocation::Random,
                ..NatConfig::home_router()
            }));
        }
        let parts: Vec<&str> = s.split('/').collect();
        let ([m, a, f, u] | [m, a, f, u, _]) = parts.as_slice() else {
            return Err(format!(
                "expected `home`, `linux-rst`, `symmetric` or MAPPING/ALLOCATION/FILTERING/UNSOLICITED[/TRACKING], got {s:?}"
            ));
        };
        let tracking = match parts.get(4) {
            Some(t) => Tracking::from_str(t, true)?,
            None => Tracking::Linux,
        };
        Ok(NatSpec(NatConfig {
            mapping: Mapping::from_str(m, true)?,
            allocation: Allocation::from_str(a, true)?,
            filtering: Filtering::from_str(f, true)?,
            unsolicited: Unsolicited::from_str(u, true)?,
            tracking,
            ..NatConfig::home_router()
        }))
    }
}

#[derive(Debug, Clone, Args)]
struct NetArgs {
    /// One-way delay (ms) of the link between home A and the internet.
    #[arg(long, default_value_t = 25.0)]
    delay_a: f64,
    /// One-way delay (ms) of the link between home B and the internet.
    #[arg(long, default_value_t = 25.0)]
    delay_b: f64,
    /// One-way delay (ms) of the link between the internet and the mediator.
    #[arg(long, default_value_t = 25.0)]
    delay_m: f64,
    /// Set all three internet links to a quarter of this round-trip time (ms): every path then has it.
    #[arg(long)]
    rtt: Option<f64>,
    /// One-way delay (ms) of each LAN hop (host–switch, switch–router).
    #[arg(long, default_value_t = 0.0)]
    lan: f64,
    /// Jitter (ms) on each internet link: each packet waits an extra uniform 0..=JITTER.
    #[arg(long, default_value_t = 0.0)]
    jitter: f64,
    /// Loss (%) on each path, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Extra delay (ms) of each ARP frame on each LAN hop (slow neighbour discovery).
    #[arg(long, default_value_t = 0.0)]
    arp: f64,
}

fn parse_side(s: &str) -> Result<Side, String> {
    match s {
        "a" | "A" => Ok(Side::A),
        "b" | "B" => Ok(Side::B),
        _ => Err(format!("expected a or b, got {s:?}")),
    }
}

fn ms(v: f64) -> Duration {
    Duration::from_micros((v * 1000.0).round().max(0.0) as u64)
}

impl NetArgs {
    fn delays(&self) -> Delays {
        let (a, b, m) = match self.rtt {
            Some(rtt) => (rtt / 4.0, rtt / 4.0, rtt / 4.0),
            None => (self.delay_a, self.delay_b, self.delay_m),
        };
        Delays {
            access_a: ms(a),
            access_b: ms(b),
            mediator: ms(m),
            lan: ms(self.lan),
            jitter: ms(self.jitter),
            loss: self.loss / 100.0,
            arp: ms(self.arp),
        }
    }
}

#[derive(Debug, Clone, Args)]
struct DemoArgs {
    /// NAT of peer A: `home` (= eim/preserve/apdf/drop), `linux-rst` (eim/preserve/apdf/rst), `symmetric` (apdm/random/apdf/drop) or
    /// MAPPING/ALLOCATION/FILTERING/UNSOLICITED[/TRACKING], from eim|adm|apdm / preserve|seq|random /
    /// eif|adf|apdf / drop|rst|icmp / linux|none (conntrack, the default, or none).
    #[arg(long, default_value = "home", value_name = "NAT")]
    nat_a: NatSpec,
    /// NAT of peer B (same syntax).
    #[arg(long, default_value = "home", value_name = "NAT")]
    nat_b: NatSpec,
    /// Put both peers on one LAN behind one NAT (with --nat-a's behaviour).
    #[arg(long, conflicts_with = "no_nat")]
    same_nat: bool,
    /// With --same-nat: hairpinning off.
    #[arg(long)]
    no_hairpin: bool,
    /// Give both peers public addresses (no NAT).
    #[arg(long)]
    no_nat: bool,
    /// With --same-nat: this peer (a or b) already has the other's MAC address in its ARP cache.
    #[arg(long, value_name = "PEER", requires = "same_nat", value_parser = parse_side)]
    knows_mac: Option<Side>,
    #[command(flatten)]
    net: NetArgs,
    /// When peer B calls connect (ms after peer A).
    #[arg(long, default_value_t = 1000)]
    b_start: u64,
    /// Peer B stops polling (connector and network stack) for this long after the Match (ms): a slow
    /// device that dials late.
    #[arg(long, default_value_t = 0)]
    stall_b: u64,
    /// The same for peer A (ms).
    #[arg(long, default_value_t = 0)]
    stall_a: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also show detail events (dropped retransmissions, mediator accepts…).
    #[arg(long)]
    all: bool,
    /// Print every packet on every link.
    #[arg(long)]
    packets: bool,
    /// Write the timeline as a mermaid sequence diagram to FILE.
    #[arg(long, value_name = "FILE")]
    mermaid: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
struct MatrixArgs {
    /// Base seed (each cell mixes in its index).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print every cell, one per line.
    #[arg(long)]
    full: bool,
}

#[derive(Debug, Clone, Args)]
struct BenchArgs {
    /// Runs per configuration.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Jitter (ms) on each internet link in every run.
    #[arg(long, default_value_t = 5.0)]
    jitter: f64,
    /// Round-trip time (ms) of the latency benchmark.
    #[arg(long, default_value_t = 100.0)]
    rtt: f64,
    /// Round-trip time (ms) of the loss benchmark.
    #[arg(long, default_value_t = 300.0)]
    lossy_rtt: f64,
    /// Loss (%) per path and direction in the loss benchmark.
    #[arg(long, default_value_t = 5.0)]
    loss: f64,
    /// One-way delay (ms) between the two routers in the RST benchmark (half on each access link).
    #[arg(long, default_value_t = 2.0)]
    rst_delay: f64,
    /// How long (ms) peer B stalls after the Match in the stalled RST benchmark.
    #[arg(long, default_value_t = 800)]
    rst_stall: u64,
    /// Runs per row of the late-peer and same-LAN table.
    #[arg(long, default_value_t = 50)]
    late_runs: usize,
    /// Which benchmarks to run (comma-separated): latency, symmetric (two symmetric NATs, relayed
    /// at once, at the latency benchmark's RTT), loss, rst (RST routers, no stall), rst-stall (RST
    /// routers, B stalls), late (a peer late by 0.5–8 s, drop and RST routers), lan-race (same LAN,
    /// one peer already knows the other's MAC).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,symmetric,loss,rst,rst-stall,late,lan-race"
    )]
    only: Vec<String>,
    /// Base seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn threads(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn demo(args: DemoArgs) -> ExitCode {
    let mut s = Scenario::home_routers(args.seed);
    s.layout = if args.no_nat {
        Layout::Public
    } else if args.same_nat {
        Layout::OneNat(NatConfig {
            hairpin: !args.no_hairpin,
            ..args.nat_a.0
        })
    } else {
        Layout::TwoNats(args.nat_a.0, args.nat_b.0)
    };
    s.delays = args.net.delays();
    s.b.start = Some(Duration::from_millis(args.b_start));
    s.b.stall_after_match = (args.stall_b > 0).then(|| Duration::from_millis(args.stall_b));
    s.a.stall_after_match = (args.stall_a > 0).then(|| Duration::from_millis(args.stall_a));
    s.knows_mac = args.knows_mac;
    s.trace = args.packets;
    let r = scenario::run(&s);
    print_demo(&s, &r, args.all);
    if args.packets {
        println!("\nPackets:");
        for p in &r.trace {
            println!(
                "{:>9.1} ms  {:<26} {}{}",
                host_sim::timeline::at_ms(p.at),
                p.link,
                host_sim::packet::summary(&p.packet),
                if p.lost { "  (lost)" } else { "" }
            );
        }
    }
    if let Some(path) = args.mermaid {
        let text = format!("```mermaid\n{}```\n", r.mermaid());
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("host-sim: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("\nMermaid sequence diagram written to {}", path.display());
    }
    if r.connected() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn dur_ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn print_demo(s: &Scenario, r: &Report, all: bool) {
    let d = &s.delays;
    match s.layout {
        Layout::TwoNats(a, b) => println!(
            "Peer A behind NAT A ({}), peer B behind NAT B ({}); mediator on the internet.",
            a.label(),
            b.label()
        ),
        Layout::OneNat(n) => println!(
            "Peers A and B on one LAN behind one NAT ({}, hairpinning {}); mediator on the internet.",
            n.label(),
            if n.hairpin { "on" } else { "off" }
        ),
        Layout::Public => println!("Peers A and B on public addresses (no NAT); mediator on the internet."),
    }
    println!(
        "One-way delays: home A–internet {:.1} ms, home B–internet {:.1} ms, internet–mediator {:.1} ms, \
         LAN hop {:.1} ms; jitter {:.1} ms; loss {:.1} %; seed {}.",
        dur_ms(d.access_a),
        dur_ms(d.access_b),
        dur_ms(d.mediator),
        dur_ms(d.lan),
        dur_ms(d.jitter),
        d.loss * 100.0,
        s.seed
    );
    println!(
        "Round trips: peer–mediator {:.1} ms (farther peer), peer–peer {:.1} ms.\n",
        dur_ms(r.mediator_rtt),
        dur_ms(r.peer_rtt)
    );
    print!("{}", r.timeline(all));
    println!();
    for (side, p) in [("A", &r.a), ("B", &r.b)] {
        match (&p.result, p.session()) {
            (_, Some(sess)) => println!(
                "peer {side}: connected {} to {} as {:?} after {} attempt(s){}",
                sess.path,
                sess.remote,
                sess.role,
                p.attempts,
                if p.echoed {
                    "; data echoed both ways"
                } else {
                    "; data NOT echoed"
                }
            ),
            (Some(Err(e)), _) => println!(
                "peer {side}: failed: {e} ({e:?}) after {} attempt(s)",
                p.attempts
            ),
            _ => println!("peer {side}: did not run"),
        }
    }
    if r.a.session().is_some() && r.b.session().is_some() {
        let same = r.a.session().map(|s| s.session_key) == r.b.session().map(|s| s.session_key);
        println!("session keys {}", if same { "match" } else { "DIFFER" });
    }
    match r.setup {
        Some(setup) if r.path == Some(Path::Relayed) => println!(
            "\nSet-up latency (mediator's second verified registration -> both peers authenticated): {:.1} ms\n\
             Limit of a relayed pair 1.5 x mediator RTT = 1.5 x {:.1} = {:.1} ms ({:+.1} ms): the Match to each \
             peer, then each peer's first flight through the mediator (protocol 14.7)",
            dur_ms(setup),
            dur_ms(r.mediator_rtt),
            dur_ms(r.mediator_rtt * 3 / 2),
            dur_ms(setup) - dur_ms(r.mediator_rtt * 3 / 2),
        ),
        Some(setup) => println!(
            "\nSet-up latency (mediator's second verified registration -> both peers authenticated): {:.1} ms \
             = {:.2} peer RTTs\nPhysical limit 0.5 x mediator RTT + 1.5 x peer RTT = 0.5 x {:.1} + 1.5 x {:.1} = {:.1} ms \
             ({:+.1} ms)\n(a direct connection takes the limit + 0.5 x peer RTT: smoltcp 0.13 completes a simultaneous \
             open in 1.5 round trips, not 1; doc/smoltcp.md has the upstream fix, which reaches the limit)",
            dur_ms(setup),
            r.setup_in_rtts().unwrap_or(f64::NAN),
            dur_ms(r.mediator_rtt),
            dur_ms(r.peer_rtt),
            dur_ms(r.limit),
            dur_ms(setup) - dur_ms(r.limit),
        ),
        None => println!("\nNo connection: no set-up latency (physical limit would be {:.1} ms).", dur_ms(r.limit)),
    }
}

fn matrix(args: MatrixArgs) -> ExitCode {
    let cells = matrix::cells();
    let started = std::time::Instant::now();
    let results = matrix::run_cells(&cells, args.seed, threads(args.threads));
    if args.full {
        print!("{}", matrix::full(&results));
        println!();
    }
    print!("{}", matrix::summary(&results));
    println!(
        "({} runs in {:.1} s wall time, seed {})",
        results.len(),
        started.elapsed().as_secs_f64(),
        args.seed
    );
    if results.iter().all(|r| r.matches_prediction()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    dur_ms(sorted[i])
}

/// `f` of every scenario, on `threads` threads, in the scenarios' order.
fn run_parallel<T: Send>(
    scenarios: &[Scenario],
    threads: usize,
    f: impl Fn(&Scenario) -> T + Sync,
) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new((0..scenarios.len()).map(|_| None).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(s) = scenarios.get(i) else { break };
                let r = f(s);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every scenario ran"))
        .collect()
}

fn bench_config(name: &str, scenarios: Vec<Scenario>, threads: usize) {
    let limit = scenarios[0].limit();
    let started = std::time::Instant::now();
    let results = run_parallel(&scenarios, threads, |s| {
        let r = scenario::run(s);
        let b_start = s.b.start.unwrap_or_default();
        let total = match (r.a.authenticated_at, r.b.authenticated_at) {
            (Some(x), Some(y)) => Some(
                x.max(y)
                    .duration_since(embassy_time::Instant::from_ticks(0))
                    - b_start,
            ),
            _ => None,
        };
        let attempts = r.a.attempts.max(r.b.attempts);
        let errors = (r.a.error(), r.b.error());
        let relayed = r.path == Some(Path::Relayed);
        let from_hello = r.setup_from_hello.filter(|_| relayed);
        (r.connected(), r.setup, total, attempts, errors, from_hello)
    });
    let n = results.len();
    let ok = results.iter().filter(|r| r.0).count();
    let mut setups: Vec<Duration> = results.iter().filter(|r| r.0).filter_map(|r| r.1).collect();
    setups.sort();
    let mut totals: Vec<Duration> = results.iter().filter(|r| r.0).filter_map(|r| r.2).collect();
    totals.sort();
    let first_try = results.iter().filter(|r| r.0 && r.3 == 1).count();
    let mut attempts: Vec<u16> = results.iter().filter(|r| r.0).map(|r| r.3).collect();
    attempts.sort();
    let attempt = |p: f64| {
        attempts
            .get(((attempts.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let ten = Duration::from_secs(10);
    let within = |v: &[Duration]| v.iter().filter(|t| **t <= ten).count();
    println!("{name}");
    println!(
        "  connected {ok}/{n} ({:.1} %), {first_try} on the first SYN attempt   [{:.1} s wall]",
        100.0 * ok as f64 / n as f64,
        started.elapsed().as_secs_f64()
    );
    println!(
        "  connected within 10 s: {} of the second registration, {} of B's connect()",
        within(&setups),
        within(&totals)
    );
    let mut failures: Vec<String> = results
        .iter()
        .filter(|r| !r.0)
        .map(|r| format!("{:?}/{:?}", r.4 .0, r.4 .1))
        .collect();
    failures.sort();
    failures.dedup();
    if !failures.is_empty() {
        println!("  failures (A/B errors): {}", failures.join(", "));
    }
    println!(
        "  SYN attempts (busier peer, connected runs): median {}  p90 {}  p99 {}  max {}",
        attempt(0.5),
        attempt(0.9),
        attempt(0.99),
        attempt(1.0)
    );
    println!(
        "  set-up latency (2nd registration -> both authenticated): min {:.1}  median {:.1}  p90 {:.1}  p99 {:.1}  max {:.1} ms",
        percentile(&setups, 0.0),
        percentile(&setups, 0.5),
        percentile(&setups, 0.9),
        percentile(&setups, 0.99),
        percentile(&setups, 1.0),
    );
    let mut relayed: Vec<Duration> = results.iter().filter(|r| r.0).filter_map(|r| r.5).collect();
    relayed.sort();
    // A relayed pair's limit is the relay's (protocol §14.7): the Match to each peer, then each peer's
    // first flight through the mediator, 1.5 x the mediator RTT; the target is twice that.
    let all_relayed = ok > 0 && relayed.len() == ok;
    let (limit, which) = match all_relayed {
        true => (
            scenarios[0].mediator_rtt() * 3 / 2,
            " (relayed: 1.5 x mediator RTT, protocol 14.7)",
        ),
        false => (limit, ""),
    };
    println!(
        "  physical limit (no jitter) {:.1} ms{which}; median / limit = {:.3}",
        dur_ms(limit),
        percentile(&setups, 0.5) / dur_ms(limit)
    );
    println!(
        "  time to connect (B calls connect() -> both authenticated): median {:.1}  p90 {:.1}  p99 {:.1}  max {:.1} ms",
        percentile(&totals, 0.5),
        percentile(&totals, 0.9),
        percentile(&totals, 0.99),
        percentile(&totals, 1.0),
    );
    if !relayed.is_empty() {
        println!(
            "  relayed {}: target 2 x (0.5 + 1) x mediator RTT = {:.1} ms from the 2nd registration \
             (protocol 14.7); from the later Hello (1.5 RTT of registration more): median {:.1}  \
             p90 {:.1}  max {:.1} ms",
            relayed.len(),
            dur_ms(scenarios[0].mediator_rtt() * 3),
            percentile(&relayed, 0.5),
            percentile(&relayed, 0.9),
            percentile(&relayed, 1.0),
        );
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    let threads = threads(args.threads);
    let make = |rtt: f64, loss: f64| -> Vec<Scenario> {
        (0..args.runs)
            .map(|i| {
                let mut s = Scenario::home_routers(matrix::cell_seed(args.seed, i));
                s.delays = Delays {
                    jitter: ms(args.jitter),
                    loss: loss / 100.0,
                    ..Delays::symmetric(ms(rtt))
                };
                s
            })
            .collect()
    };
    let wants = |name: &str| args.only.iter().any(|o| o == name);
    let mut first = true;
    let mut section = |name: String, scenarios: Vec<Scenario>| {
        if !first {
            println!();
        }
        first = false;
        bench_config(&name, scenarios, threads);
    };
    if wants("latency") {
        section(
            format!(
                "Latency: {} runs, home routers, RTT {} ms on every path, jitter 0..{} ms per internet link, no loss",
                args.runs, args.rtt, args.jitter
            ),
            make(args.rtt, 0.0),
        );
    }
    if wants("symmetric") {
        let scenarios = (0..args.runs)
            .map(|i| {
                let mut s = Scenario::symmetric_nats(matrix::cell_seed(args.seed, i));
                s.delays = Delays {
                    jitter: ms(args.jitter),
                    ..Delays::symmetric(ms(args.rtt))
                };
                s
            })
            .collect();
        section(
            format!(
                "Symmetric NATs (relayed at once): {} runs, RTT {} ms on every path, jitter 0..{} ms per internet link, no loss",
                args.runs, args.rtt, args.jitter
            ),
            scenarios,
        );
    }
    if wants("loss") {
        section(
            format!(
                "Loss: {} runs, home routers, RTT {} ms, jitter 0..{} ms per internet link, {} % loss per path and direction",
                args.runs, args.lossy_rtt, args.jitter, args.loss
            ),
            make(args.lossy_rtt, args.loss),
        );
    }
    // Routers that reset early SYNs and end their session on the RST (Linux masquerade, no firewall):
    // both SYNs must leave within one router-to-router delay. Short path, small jitter.
    let rst = |stall: Option<u64>| -> Vec<Scenario> {
        (0..args.runs)
            .map(|i| {
                let mut s = Scenario::home_routers(matrix::cell_seed(args.seed, i));
                let nat = NatConfig::linux_no_firewall();
                s.layout = Layout::TwoNats(nat, nat);
                s.delays = Delays {
                    access_a: ms(args.rst_delay / 2.0),
                    access_b: ms(args.rst_delay / 2.0),
                    mediator: ms(10.0),
                    jitter: ms(0.5),
                    ..Delays::default()
                };
                s.b.stall_after_match = stall.map(Duration::from_millis);
                s
            })
            .collect()
    };
    let rst_name = |what: &str| {
        format!(
            "RST routers ({}): {} runs, router-to-router {} ms one way, mediator 10 ms beyond, jitter 0..0.5 ms per internet link, {what}",
            NatConfig::linux_no_firewall().label(),
            args.runs,
            args.rst_delay
        )
    };
    if wants("rst") {
        section(rst_name("no stall"), rst(None));
    }
    if wants("rst-stall") {
        section(
            rst_name(&format!("B stalls {} ms after the Match", args.rst_stall)),
            rst(Some(args.rst_stall)),
        );
    }
    let rows = robustness_rows(&args, wants("late"), wants("lan-race"));
    if !rows.is_empty() {
        if !first {
            println!();
        }
        robustness(&rows, args.late_runs, threads);
    }
    ExitCode::SUCCESS
}

/// How long the late peer stalls after its Match, in the late-peer rows (ms).
const LATE_STALLS_MS: [u64; 5] = [500, 1500, 2000, 4000, 8000];

/// The rows of the late-peer and same-LAN table: a name and its seeded scenarios.
fn robustness_rows(args: &BenchArgs, late: bool, lan_race: bool) -> Vec<(String, Vec<Scenario>)> {
    let seeds = |make: &dyn Fn(u64) -> Scenario| -> Vec<Scenario> {
        (0..args.late_runs)
            .map(|i| make(matrix::cell_seed(args.seed, i)))
            .collect()
    };
    let mut rows = Vec::new();
    let routers = [
        ("drop", NatConfig::home_router()),
        ("RST", NatConfig::linux_no_firewall()),
    ];
    for (kind, router) in routers.into_iter().filter(|_| late) {
        for side in [Side::A, Side::B] {
            for stall in LATE_STALLS_MS {
                let name = format!(
                    "{kind} routers ({}), {side} late {} s",
                    router.label(),
                    stall as f64 / 1000.0
                );
                let stall = Duration::from_millis(stall);
                rows.push((
                    name,
                    seeds(&|seed| Scenario::late_peer(seed, router, side, stall)),
                ));
            }
        }
    }
    for knower in [Side::B, Side::A].into_iter().filter(|_| lan_race) {
        let name = format!("same LAN (1 ms hops), {knower} already knows the other's MAC");
        rows.push((name, seeds(&|seed| Scenario::same_lan_race(seed, knower))));
    }
    rows
}

/// Run each row and print a table: connected/total, and the failures grouped by outcome.
fn robustness(rows: &[(String, Vec<Scenario>)], runs: usize, threads: usize) {
    println!(
        "Late peers and same-LAN races ({runs} seeded runs per row; links 25 ms each way home–internet–mediator, \
         B calls connect 1 s after A; late = stops polling for that long after its Match):"
    );
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    println!("  {:<width$}  {:>9}  failures", "scenario", "connected");
    // A stack's panic is a result here, not a crash: keep the default hook from printing each one.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    for (name, scenarios) in rows {
        let outcomes = run_parallel(scenarios, threads, |s| {
            scenario::outcome(&scenario::try_run(s))
        });
        let connected = outcomes.iter().filter(|o| *o == "connected").count();
        let mut failures: Vec<(usize, &String)> = Vec::new();
        for o in outcomes.iter().filter(|o| *o != "connected") {
            match failures.iter_mut().find(|(_, f)| *f == o) {
                Some(entry) => entry.0 += 1,
                None => failures.push((1, o)),
            }
        }
        failures.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        let failures: Vec<String> = failures.iter().map(|(n, f)| format!("{n} x {f}")).collect();
        println!(
            "  {name:<width$}  {:>9}  {}",
            format!("{connected}/{}", outcomes.len()),
            failures.join("; ")
        );
    }
    std::panic::set_hook(hook);
    println!("  [{:.1} s wall]", started.elapsed().as_secs_f64());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => demo(cli.demo),
        Some(Command::Demo(args)) => demo(args),
        Some(Command::Matrix(args)) => matrix(args),
        Some(Command::Bench(args)) => bench(args),
        #[cfg(target_os = "linux")]
        Some(Command::Tap(args)) => host_sim::tap::run(args),
    }
}
