//! Every combination of NAT behaviours, simulated and set against `crate::theory`.
//!
//! Two parts:
//! - **Two NATs**: mapping × allocation × filtering × unsolicited-SYN behaviour (81 behaviours) on each
//!   side, 6561 pairs, each a full run of the default scenario (home links of 25 ms, B 1 s late).
//! - **One NAT**: the 81 behaviours × hairpinning on/off with both peers on its LAN (LAN hops of 1 ms, so
//!   the LAN path is strictly shorter than a hairpin).
//!
//! Protocol version 2: the mediator probes each peer's mapping and offers the relay, so every cell
//! connects — directly, relayed at once, or relayed when the punch's fallback deadline ends; theory
//! predicts which ([`theory::predict_path`]) and roughly when.
//!
//! Runs are independent, so [`run_cells`] spreads them over threads (the virtual clock is per thread).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use embassy_time::Duration;
use p2psc::connector::Path;

use crate::nat::{Allocation, Filtering, Mapping, NatConfig, Unsolicited};
use crate::scenario::{self, Delays, Layout, Scenario};
use crate::theory::{self, Expected, Prediction};

/// Every NAT behaviour (hairpinning on, default timeout), in a fixed order.
pub fn behaviours() -> Vec<NatConfig> {
    let mut out = Vec::new();
    for mapping in [
        Mapping::EndpointIndependent,
        Mapping::AddressDependent,
        Mapping::AddressPortDependent,
    ] {
        for allocation in [
            Allocation::Preserving,
            Allocation::Sequential,
            Allocation::Random,
        ] {
            for filtering in [
                Filtering::EndpointIndependent,
                Filtering::AddressDependent,
                Filtering::AddressPortDependent,
            ] {
                for unsolicited in [Unsolicited::Drop, Unsolicited::Rst, Unsolicited::Icmp] {
                    out.push(NatConfig {
                        mapping,
                        allocation,
                        filtering,
                        unsolicited,
                        ..NatConfig::home_router()
                    });
                }
            }
        }
    }
    out
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Peers behind two NATs.
    Two(NatConfig, NatConfig),
    /// Peers on one LAN behind one NAT.
    One(NatConfig),
}

impl Cell {
    /// What theory predicts.
    pub fn prediction(&self) -> Prediction {
        match self {
            Cell::Two(a, b) => theory::predict(a, b),
            Cell::One(n) => theory::predict_same_nat(n),
        }
    }

    /// The path theory expects.
    pub fn expected(&self) -> Expected {
        match self {
            Cell::Two(a, b) => theory::predict_path(a, b),
            Cell::One(n) => theory::predict_path_same_nat(n),
        }
    }

    /// The scenario that tests it.
    pub fn scenario(&self, seed: u64) -> Scenario {
        let mut s = Scenario::home_routers(seed);
        match *self {
            Cell::Two(a, b) => s.layout = Layout::TwoNats(a, b),
            Cell::One(n) => {
                s.layout = Layout::OneNat(n);
                s.delays = Delays {
                    lan: Duration::from_millis(1),
                    ..Delays::default()
                };
            }
        }
        s
    }

    /// Label for tables.
    pub fn label(&self) -> String {
        match self {
            Cell::Two(a, b) => format!("{} | {}", a.label(), b.label()),
            Cell::One(n) => format!(
                "{} hairpin {}",
                n.label(),
                if n.hairpin { "on" } else { "off" }
            ),
        }
    }
}

/// Every cell: the two-NAT pairs (A's behaviour major), then the one-NAT cells.
pub fn cells() -> Vec<Cell> {
    let all = behaviours();
    let mut out = Vec::new();
    for a in &all {
        for b in &all {
            out.push(Cell::Two(*a, *b));
        }
    }
    for hairpin in [true, false] {
        for n in &all {
            out.push(Cell::One(NatConfig { hairpin, ..*n }));
        }
    }
    out
}

/// The path a cell took, as the summary counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Observed {
    /// Connected directly.
    Direct,
    /// Relayed before the fallback deadline: at once.
    Relay,
    /// Relayed after the fallback deadline.
    Fallback,
    /// Not connected.
    Failed,
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Observed::Direct => "direct",
            Observed::Relay => "relayed at once",
            Observed::Fallback => "relayed after the fallback deadline",
            Observed::Failed => "failed",
        })
    }
}

/// What a cell did.
#[derive(Debug, Clone, PartialEq)]
pub struct CellResult {
    /// The cell.
    pub cell: Cell,
    /// Theory: the punch.
    pub prediction: Prediction,
    /// Theory: the path (point 6).
    pub expected: Expected,
    /// The path both peers got, if both connected on the same one.
    pub path: Option<Path>,
    /// The fallback deadline the Matches announced ([`theory::relay_after`]).
    pub relay_after: Duration,
    /// Set-up latency of a pair relayed at once ([`theory::relay_setup`]).
    pub relay_setup: Duration,
    /// Set-up latency of a pair relayed after the fallback deadline ([`theory::fallback_setup`]).
    pub fallback_setup: Duration,
    /// How far from [`theory::relay_setup`] and [`theory::fallback_setup`] a relayed set-up may be:
    /// half a mediator round trip.
    pub relay_tolerance: Duration,
    /// Both authenticated and exchanged data.
    pub connected: bool,
    /// The peers' errors, if any.
    pub errors: (Option<p2psc::Error>, Option<p2psc::Error>),
    /// Set-up latency.
    pub setup: Option<Duration>,
    /// The physical limit.
    pub limit: Duration,
    /// What a direct connection takes with p2psc on smoltcp ([`theory::direct_setup`]; for one NAT
    /// over the path it took, [`theory::lan_setup`] or [`theory::hairpin_setup`]).
    pub direct_setup: Duration,
    /// Most SYN attempts either peer made.
    pub attempts: u16,
    /// Most attempts either peer's winning candidate made (0 if none won).
    pub winner_attempts: u16,
    /// One NAT: whether the path the connection took is one theory allows to win (the LAN path, or
    /// the public one where [`theory::public_path_may_win`]).
    pub path_allowed: bool,
    /// Longest time a failed peer took from its Match to its error.
    pub fail_after_match: Option<Duration>,
    /// Whether the winning connection used the LAN (one-NAT cells).
    pub via_lan: bool,
}

impl CellResult {
    /// The path the cell took: relayed ones split by the fallback deadline.
    pub fn observed(&self) -> Observed {
        match (self.connected, self.path, self.setup) {
            (true, Some(Path::Direct), _) => Observed::Direct,
            (true, Some(Path::Relayed), Some(setup)) if setup < self.relay_after => Observed::Relay,
            (true, Some(Path::Relayed), _) => Observed::Fallback,
            _ => Observed::Failed,
        }
    }

    /// Whether the set-up took `want`, give or take [`relay_tolerance`](Self::relay_tolerance).
    fn took(&self, want: Duration) -> bool {
        self.setup.is_some_and(|s| {
            let diff = if s > want { s - want } else { want - s };
            diff <= self.relay_tolerance
        })
    }

    /// Whether the outcome is what theory predicts. Every cell connects, on the expected path:
    /// `Direct` with the winning candidate's first attempt in the predicted time (for one NAT over a
    /// path theory allows to win); `Relay` at once in [`theory::relay_setup`]; `Fallback` after the
    /// fallback deadline, in [`theory::fallback_setup`]; `DirectOrFallback` either way (timing).
    pub fn matches_prediction(&self) -> bool {
        let direct = self.observed() == Observed::Direct;
        let fallback = self.observed() == Observed::Fallback && self.took(self.fallback_setup);
        match self.expected {
            Expected::Direct => {
                direct
                    && self.winner_attempts == 1
                    && self.setup == Some(self.direct_setup)
                    && self.path_allowed
            }
            Expected::Relay => self.observed() == Observed::Relay && self.took(self.relay_setup),
            Expected::Fallback => fallback,
            Expected::DirectOrFallback => direct || fallback,
        }
    }
}

/// Seed of a cell's run: the base seed mixed with the cell's index.
pub fn cell_seed(base: u64, index: usize) -> u64 {
    base ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Run one cell.
pub fn run_cell(cell: Cell, seed: u64) -> CellResult {
    let s = cell.scenario(seed);
    let r = scenario::run(&s);
    let matched_at = r
        .events
        .iter()
        .find(|e| {
            matches!(
                e.what,
                crate::timeline::What::Connect(p2psc::connector::ConnectEvent::Matched { .. })
            )
        })
        .map(|e| e.at);
    let fail_after_match = [&r.a, &r.b]
        .iter()
        .filter(|p| p.error().is_some())
        .filter_map(|p| Some(p.done_at?.duration_since(matched_at?)))
        .max();
    let via_lan = r
        .a
        .session()
        .is_some_and(|s| matches!(s.remote.addr, smoltcp::wire::IpAddress::Ipv4(a) if a.octets()[0] == 192 && a.octets()[1] == 168));
    let (direct_setup, path_allowed) = match cell {
        Cell::Two(..) => (theory::direct_setup(r.mediator_rtt, r.peer_rtt), true),
        Cell::One(_) if via_lan => (theory::lan_setup(r.mediator_rtt, r.peer_rtt), true),
        Cell::One(n) => (
            theory::hairpin_setup(r.mediator_rtt, r.peer_rtt),
            theory::public_path_may_win(&n),
        ),
    };
    let relay_after = theory::relay_after(r.mediator_rtt, r.mediator_rtt);
    CellResult {
        cell,
        direct_setup,
        prediction: cell.prediction(),
        expected: cell.expected(),
        path: r.path,
        relay_after,
        relay_setup: theory::relay_setup(r.mediator_rtt),
        fallback_setup: theory::fallback_setup(r.mediator_rtt, relay_after),
        relay_tolerance: r.mediator_rtt / 2,
        connected: r.connected(),
        errors: (r.a.error(), r.b.error()),
        setup: r.setup,
        limit: r.limit,
        attempts: r.a.attempts.max(r.b.attempts),
        winner_attempts: r.a.winner_attempts.max(r.b.winner_attempts),
        path_allowed,
        fail_after_match,
        via_lan,
    }
}

/// Run `cells` (seeded from `base_seed` and their index) on `threads` threads; results in cell order.
pub fn run_cells(cells: &[Cell], base_seed: u64, threads: usize) -> Vec<CellResult> {
    let numbered: Vec<(usize, Cell)> = cells.iter().copied().enumerate().collect();
    run_numbered(&numbered, base_seed, threads)
}

/// Run cells numbered by their place in the whole matrix ([`cells`]), each seeded from `base_seed` and
/// its number, so that part of the matrix runs exactly as it does within the whole; on `threads`
/// threads, results in the order given.
pub fn run_numbered(cells: &[(usize, Cell)], base_seed: u64, threads: usize) -> Vec<CellResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; cells.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(number, cell)) = cells.get(i) else {
                    break;
                };
                let r = run_cell(cell, cell_seed(base_seed, number));
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every cell ran"))
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

/// The summary tables: by prediction, and a grid of mapping/allocation pairs.
pub fn summary(results: &[CellResult]) -> String {
    let mut out = String::new();
    let two: Vec<&CellResult> = results
        .iter()
        .filter(|r| matches!(r.cell, Cell::Two(..)))
        .collect();
    let one: Vec<&CellResult> = results
        .iter()
        .filter(|r| matches!(r.cell, Cell::One(..)))
        .collect();
    by_prediction(&mut out, &two);
    mapping_grid(&mut out, &two, "Connected pairs", &|r: &CellResult| {
        r.connected
    });
    mapping_grid(&mut out, &two, "Relayed pairs", &|r: &CellResult| {
        r.path == Some(Path::Relayed)
    });
    unpredictable_sides(&mut out, &two);
    if !one.is_empty() {
        one_nat(&mut out, &one);
    }
    mismatches(&mut out, results);
    out
}

/// The two-NAT cells by prediction: the paths expected and observed, set-up latencies, attempts, and
/// how failures end.
fn by_prediction(out: &mut String, two: &[&CellResult]) {
    let _ = writeln!(
        out,
        "Two NATs ({} pairs of behaviours), by theory's prediction for the punch; paths expected \
         (direct, relay at once, fallback, direct or fallback) and observed (direct, relayed at once, \
         relayed after the fallback deadline, failed):",
        two.len()
    );
    let _ = writeln!(
        out,
        "  {:<9} {:>6} {:>27} {:>28} {:>12} {:>12} {:>12} {:>9}",
        "punch",
        "cells",
        "expected d/r/f/either",
        "observed d/r/f/failed",
        "as predicted",
        "setup median",
        "setup max",
        "attempts"
    );
    for p in [
        Prediction::Direct,
        Prediction::Listener,
        Prediction::AfterReset,
        Prediction::Fail,
    ] {
        let rs: Vec<&CellResult> = two.iter().copied().filter(|r| r.prediction == p).collect();
        if !rs.is_empty() {
            prediction_row(out, p, &rs);
        }
    }
    if let Some(r) = two.first() {
        let _ = writeln!(
            out,
            "  (physical limit 0.5 x mediator RTT + 1.5 x peer RTT = {:.1} ms; direct on smoltcp = limit + 0.5 x peer RTT = {:.1} ms;\n   \
             relayed at once: 1.5 x mediator RTT = {:.1} ms; fallback deadline {:.1} ms, relayed after it: {:.1} ms)",
            ms(r.limit),
            ms(r.direct_setup),
            ms(r.relay_setup),
            ms(r.relay_after),
            ms(r.fallback_setup),
        );
    }
    let fails: Vec<Duration> = two
        .iter()
        .filter(|r| !r.connected)
        .filter_map(|r| r.fail_after_match)
        .collect();
    if let Some(max) = fails.iter().max() {
        let _ = writeln!(
            out,
            "  failures end with PunchFailed at most {:.1} ms after the Match",
            ms(*max)
        );
    }
}

/// One row of [`by_prediction`]: the cells `rs` that theory predicts `p` for.
fn prediction_row(out: &mut String, p: Prediction, rs: &[&CellResult]) {
    let setups: Vec<Duration> = rs.iter().filter_map(|r| r.setup).collect();
    let expected = [
        Expected::Direct,
        Expected::Relay,
        Expected::Fallback,
        Expected::DirectOrFallback,
    ]
    .map(|e| rs.iter().filter(|r| r.expected == e).count().to_string());
    let observed = [
        Observed::Direct,
        Observed::Relay,
        Observed::Fallback,
        Observed::Failed,
    ]
    .map(|o| rs.iter().filter(|r| r.observed() == o).count().to_string());
    let _ = writeln!(
        out,
        "  {:<9} {:>6} {:>27} {:>28} {:>12} {:>9.1} ms {:>9.1} ms {:>9}",
        p.to_string(),
        rs.len(),
        expected.join(" / "),
        observed.join(" / "),
        rs.iter().filter(|r| r.matches_prediction()).count(),
        median(setups.clone()).map_or(f64::NAN, ms),
        setups.iter().max().copied().map_or(f64::NAN, ms),
        rs.iter().map(|r| r.attempts).max().unwrap_or(0),
    );
}

/// The nine mapping/allocation classes, in table order.
fn mapping_allocation_classes() -> Vec<(Mapping, Allocation)> {
    [
        Mapping::EndpointIndependent,
        Mapping::AddressDependent,
        Mapping::AddressPortDependent,
    ]
    .into_iter()
    .flat_map(|m| {
        [
            Allocation::Preserving,
            Allocation::Sequential,
            Allocation::Random,
        ]
        .map(|a| (m, a))
    })
    .collect()
}

/// Grid: rows A's mapping/allocation, columns B's; entry: for how many of the 81 filtering and
/// unsolicited combinations `counted` holds, and the punch prediction's letter.
fn mapping_grid(
    out: &mut String,
    two: &[&CellResult],
    title: &str,
    counted: &dyn Fn(&CellResult) -> bool,
) {
    let classes = mapping_allocation_classes();
    let name = |(m, a): (Mapping, Allocation)| format!("{m}/{a}");
    let _ = writeln!(
        out,
        "\n{title} out of the 81 filtering x unsolicited combinations per mapping/allocation pair\n\
         (rows: NAT A, columns: NAT B; D = all predicted direct, L = listener, F = fail, * = mixed):"
    );
    let _ = write!(out, "  {:<15}", "A \\ B");
    for c in &classes {
        let _ = write!(out, "{:>14}", name(*c));
    }
    out.push('\n');
    for ra in &classes {
        let _ = write!(out, "  {:<15}", name(*ra));
        for cb in &classes {
            let rs: Vec<&CellResult> = two
                .iter()
                .copied()
                .filter(|r| match r.cell {
                    Cell::Two(a, b) => {
                        (a.mapping, a.allocation) == *ra && (b.mapping, b.allocation) == *cb
                    }
                    Cell::One(_) => false,
                })
                .collect();
            grid_entry(out, &rs, counted);
        }
        out.push('\n');
    }
}

/// One entry of [`mapping_grid`]: how many of `rs` are `counted`, and what theory predicts for them.
fn grid_entry(out: &mut String, rs: &[&CellResult], counted: &dyn Fn(&CellResult) -> bool) {
    let connected = rs.iter().filter(|r| counted(r)).count();
    let mut preds: Vec<Prediction> = rs.iter().map(|r| r.prediction).collect();
    preds.sort();
    preds.dedup();
    let tag = match preds.as_slice() {
        [Prediction::Direct] => "D",
        [Prediction::Listener] => "L",
        [Prediction::Fail] => "F",
        _ => "*",
    };
    let _ = write!(out, "{:>11} {tag} ", format!("{connected}/{}", rs.len()));
}

/// Where the grid says "*": the filtering decides (theory, point 3).
fn unpredictable_sides(out: &mut String, two: &[&CellResult]) {
    // Connected and all of the pairs for which `f` holds one way round or the other.
    let pairs = |f: &dyn Fn(&NatConfig, &NatConfig) -> bool| -> (usize, usize) {
        let rs: Vec<&CellResult> = two
            .iter()
            .copied()
            .filter(|r| match r.cell {
                Cell::Two(a, b) => f(&a, &b) || f(&b, &a),
                Cell::One(_) => false,
            })
            .collect();
        (rs.iter().filter(|r| r.connected).count(), rs.len())
    };
    let sym = |n: &NatConfig| !theory::predictable(n);
    let _ = writeln!(
        out,
        "\nOne side unpredictable (non-EIM with seq/random ports), the other predictable, by the predictable side's filtering:"
    );
    for f in [
        Filtering::EndpointIndependent,
        Filtering::AddressDependent,
        Filtering::AddressPortDependent,
    ] {
        let (c, n) = pairs(&|x, y| sym(x) && !sym(y) && y.filtering == f);
        let _ = write!(out, "  {f}: {c}/{n} connected");
    }
    let eif = |n: &NatConfig| n.filtering == Filtering::EndpointIndependent;
    let (c, n) = pairs(&|x, y| sym(x) && sym(y) && (eif(x) || eif(y)));
    let (c2, n2) = pairs(&|x, y| sym(x) && sym(y) && !eif(x) && !eif(y));
    let _ = writeln!(
        out,
        "\nBoth unpredictable: with an EIF side {c}/{n} connected, without {c2}/{n2}."
    );
}

/// The one-NAT cells: outcomes, the LAN path, set-up latency.
fn one_nat(out: &mut String, one: &[&CellResult]) {
    let via_lan = one.iter().filter(|r| r.via_lan).count();
    let setups: Vec<Duration> = one.iter().filter_map(|r| r.setup).collect();
    let _ = writeln!(
        out,
        "\nOne NAT ({} cells: 81 behaviours x hairpinning on/off): {} connected, {} directly, {} over the LAN path, \
         {} as predicted; setup median {:.1} ms (limit {:.1} ms)",
        one.len(),
        one.iter().filter(|r| r.connected).count(),
        one.iter().filter(|r| r.observed() == Observed::Direct).count(),
        via_lan,
        one.iter().filter(|r| r.matches_prediction()).count(),
        median(setups).map_or(f64::NAN, ms),
        one.first().map_or(f64::NAN, |r| ms(r.limit)),
    );
}

/// How many cells went as predicted, and the first 20 that did not.
fn mismatches(out: &mut String, results: &[CellResult]) {
    let mismatches: Vec<&CellResult> = results.iter().filter(|r| !r.matches_prediction()).collect();
    let _ = writeln!(
        out,
        "\n{} of {} cells as predicted.",
        results.len() - mismatches.len(),
        results.len()
    );
    for r in mismatches.iter().take(20) {
        let _ = writeln!(
            out,
            "  MISMATCH {}: predicted {} ({}), got {}",
            r.cell.label(),
            r.prediction,
            r.expected,
            describe(r)
        );
    }
}

/// One line for a result.
pub fn describe(r: &CellResult) -> String {
    if r.connected {
        format!(
            "connected {} in {:.1} ms, {} attempt(s){}",
            r.observed(),
            r.setup.map_or(f64::NAN, ms),
            r.attempts,
            if r.via_lan { ", over the LAN" } else { "" }
        )
    } else {
        format!(
            "failed {:?} / {:?} after {} attempt(s)",
            r.errors.0, r.errors.1, r.attempts
        )
    }
}

/// Every cell, one line each.
pub fn full(results: &[CellResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<58} {:<9} {:<15} {:<3} outcome",
        "NAT A | NAT B", "punch", "path", "ok"
    );
    for r in results {
        let _ = writeln!(
            out,
            "{:<58} {:<9} {:<15} {:<3} {}",
            r.cell.label(),
            r.prediction.to_string(),
            r.expected.to_string(),
            if r.matches_prediction() { "yes" } else { "NO" },
            describe(r)
        );
    }
    out
}
