//! The connector tests' harness: an in-memory wire ([`wire`]) and three smoltcp hosts on it ([`sim`]).

pub mod sim;
pub mod wire;
