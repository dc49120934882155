#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

#[cfg(any(feature = "std", test))]
extern crate std;

// This mod MUST go first, so that the others see its macros.
pub(crate) mod fmt;

/// Time as the state machines see it: smoltcp's `Instant` and `Duration` (microsecond resolution,
/// no clock behind them). Every clock reading enters p2psc as an argument.
pub mod time {
    pub use smoltcp::time::{Duration, Instant};

    /// `a - b`, or zero if `b` is longer (smoltcp's `Sub` panics on underflow).
    pub fn saturating_sub(a: Duration, b: Duration) -> Duration {
        Duration::from_micros(a.total_micros().saturating_sub(b.total_micros()))
    }

    /// Time from `earlier` to `now`, or zero if `earlier` is in the future.
    pub fn elapsed(now: Instant, earlier: Instant) -> Duration {
        if now > earlier {
            now - earlier
        } else {
            Duration::ZERO
        }
    }
}

pub mod connector;
pub mod identity;
pub mod net;
pub mod proto;
pub mod wire;

pub mod rng;

pub use proto::client::Error;
