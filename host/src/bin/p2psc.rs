//! The `p2psc` command-line tool (placeholder until the tool lands).
fn main() {}
