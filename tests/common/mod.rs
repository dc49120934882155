//! Host test harness for `p2psc::net`: virtual time, a deterministic executor, an in-memory LAN.
//!
//! Everything is per test thread (thread-local clock, single-threaded executor), so tests run in
//! parallel and each one replays identically.
#![allow(dead_code)]

pub mod clock;
pub mod exec;
pub mod link;
