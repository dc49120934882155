//! The command line.

use clap::Parser;

use crate::load::Load;

/// `mediator-bench`'s arguments.
#[derive(Debug, Parser)]
#[command(name = "mediator-bench")]
pub struct Args {
    /// Seconds to measure each throughput figure.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Idle waiting peers for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    pub peers: usize,
    /// Pairs registering at once in the throughput run.
    #[arg(long, default_value_t = 16)]
    pub pairs: usize,
    /// Worker threads of the clients' runtime (the server uses one per core).
    #[arg(long, default_value_t = 2)]
    pub client_threads: usize,
    /// Loopback source addresses to spread client connections over (127.0.0.1 ..).
    #[arg(long, default_value_t = 8)]
    pub sources: u8,
    /// Measure the relay instead (protocol version 2): (e) relayed throughput and (f) memory per
    /// relayed pair.
    #[arg(long)]
    pub relay: bool,
    /// Pairs relaying at once in (e), each in both directions.
    #[arg(long, default_value_t = 2)]
    pub relay_streams: usize,
    /// Idle relayed pairs for (f).
    #[arg(long, default_value_t = 1_000)]
    pub relay_pairs: usize,
    /// Internal: run the server (the rest of the arguments are the mediator's).
    #[arg(long, hide = true)]
    pub serve: bool,
    /// Internal: pin the server to this CPU.
    #[arg(long, hide = true)]
    pub cpu: Option<usize>,
    /// Internal: the server's own arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

impl Args {
    /// The throughput run's load, with the server on any CPU.
    pub fn load(&self) -> Load {
        Load {
            seconds: self.seconds,
            pairs: self.pairs,
            sources: self.sources,
            server_cpu: None,
        }
    }
}
