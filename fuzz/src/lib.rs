//! What the fuzz targets share: identities built once per process, memoised signing and verification,
//! structured choices from the fuzzer's bytes, and an in-memory byte pipe that can break on demand.
//!
//! Each target reads its input as a script of operations ([`Unstructured`](arbitrary::Unstructured)):
//! the fuzzer chooses roles, which machine sends or receives next, where a byte stream is split, how
//! far time jumps and which faults strike, while the harness supplies what a fuzzer cannot forge —
//! valid signatures, made by the library's own code — and checks invariants after every step.

pub mod crypto;
pub mod ident;
pub mod input;
pub mod pipe;

pub use arbitrary::Unstructured;
pub use libfuzzer_sys::arbitrary;

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;

/// Mark a state of interest as reached. With `P2PSC_FUZZ_REACH` set in the environment, the first
/// time each `label` is reached it is printed to stderr (`reach: LABEL`); run a target over its
/// corpus with `-runs=0` to list what the corpus reaches. Otherwise it costs one load.
pub fn reach(label: &'static str) {
    static ON: OnceLock<bool> = OnceLock::new();
    thread_local! {
        static SEEN: RefCell<HashSet<&'static str>> = RefCell::default();
    }
    if *ON.get_or_init(|| std::env::var_os("P2PSC_FUZZ_REACH").is_some())
        && SEEN.with(|seen| seen.borrow_mut().insert(label))
    {
        eprintln!("reach: {label}");
    }
}

/// Whether `P2PSC_FUZZ_TRACE` is set: targets then print each step of a script (see [`trace!`]), to
/// read what a crashing input does.
pub fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("P2PSC_FUZZ_TRACE").is_some())
}

/// Print a step of a script to stderr when [`tracing`].
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// Check an invariant that a fuzz target found broken and reported, by name: it panics unless `id` is
/// listed in `P2PSC_FUZZ_ALLOW` (comma-separated), in which case a break is only reported as reached
/// (`finding: ID`, see [`reach`]). Long runs can so look past a known finding for others; CI and
/// default runs stay strict.
pub fn finding(id: &'static str, holds: bool, what: impl FnOnce() -> String) {
    static ALLOWED: OnceLock<Vec<String>> = OnceLock::new();
    if holds {
        return;
    }
    let allowed = ALLOWED.get_or_init(|| {
        let list = std::env::var("P2PSC_FUZZ_ALLOW").unwrap_or_default();
        list.split(',').map(str::to_owned).collect()
    });
    if !allowed.iter().any(|a| a == id) {
        panic!("finding {id}: {}", what());
    }
    reach(id);
}
