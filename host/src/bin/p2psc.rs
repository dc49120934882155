//! `p2psc`: direct, mutually authenticated TCP connections to a peer behind a NAT, from the command
//! line. `p2psc --help` lists the subcommands and exit codes; the crate's README has the workflows.
//!
//! The modules live in `p2psc/` beside this file (a binary's root takes its modules from its own
//! directory, hence the paths).

#[path = "p2psc/args.rs"]
mod args;
#[path = "p2psc/copy.rs"]
mod copy;
#[path = "p2psc/dial.rs"]
mod dial;
#[path = "p2psc/fail.rs"]
mod fail;
#[path = "p2psc/forward.rs"]
mod forward;
#[path = "p2psc/keys.rs"]
mod keys;
#[path = "p2psc/pipe.rs"]
mod pipe;
#[path = "p2psc/progress.rs"]
mod progress;
#[path = "p2psc/stdio.rs"]
mod stdio;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use args::{Cli, Command};
use fail::{Class, Failure};
use progress::Progress;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let progress = Progress::new(cli.quiet, cli.json);
    match run(cli.command, &progress) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            progress.error(&failure);
            failure.exit_code()
        }
    }
}

/// Help and version go to stdout with 0; a usage error is one line on stderr with exit code 1.
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(Class::Usage.code())
        }
        _ => {
            // clap's first paragraph (a list of missing arguments spans lines), as one line.
            let text = e.render().to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            eprintln!("p2psc: error: {first} (see p2psc --help)");
            ExitCode::from(Class::Usage.code())
        }
    }
}

fn run(command: Command, progress: &Progress) -> Result<(), Failure> {
    match command {
        Command::Keygen { out, force } => {
            let key = keys::keygen(&out, force, progress)?;
            println!("{}", key.to_hex());
            Ok(())
        }
        Command::Pubkey { file } => {
            println!("{}", keys::public_key_of(&file)?.to_hex());
            Ok(())
        }
        Command::Seed { file } => {
            println!("{}", keys::seed_of(&file)?.as_str());
            Ok(())
        }
        Command::Pipe(args) => on_runtime(pipe::run(&args, progress)),
        Command::Forward(args) => on_runtime(forward::run(&args, progress)),
    }
}

/// Run `task` on a single-threaded runtime (the tool is I/O-bound: one thread is enough, and fewer
/// threads hand data back and forth less). The runtime is left behind, not joined, at the end: a
/// thread still blocked reading stdin must not keep the process alive.
fn on_runtime(task: impl std::future::Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Class::LocalIo, format!("cannot start the runtime: {e}")))?;
    let result = runtime.block_on(task);
    runtime.shutdown_background();
    result
}
