#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
//! p2psc: peer-to-peer socket creation.
//!
//! Placeholder crate docs; filled in as the modules land.

#[cfg(feature = "std")]
extern crate std;

// This mod MUST go first, so that the others see its macros.
pub(crate) mod fmt;

/// Time as the state machines see it: smoltcp's `Instant` and `Duration` (microsecond resolution,
/// no clock behind them). Every clock reading enters p2psc as an argument.
pub mod time {
    pub use smoltcp::time::{Duration, Instant};
}
