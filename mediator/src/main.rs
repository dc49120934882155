//! `p2psc-mediator`: parse the command line, set up logging and the descriptor limit, serve until
//! SIGTERM or Ctrl-C.

use clap::Parser;
use p2psc_mediator::{Args, LogFormat, Server};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("p2psc-mediator: bad log filter: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Logs go to stderr (journald keeps them); colour only on a terminal.
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut config = args.server_config();
    fit_fd_limit(&mut config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Watched before the server binds and says it listens: a signal from then on shuts down
        // gracefully (a handler installed only when first polled let an early SIGTERM kill the process
        // without the sessions' Abort).
        let shutdown = shutdown_signal();
        let server = match Server::bind(config).await {
            Ok(server) => server,
            Err(e) => {
                tracing::error!("{e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        server.serve(shutdown).await;
        std::process::ExitCode::SUCCESS
    })
}

/// SIGTERM (systemd, docker) or SIGINT (Ctrl-C): both handlers are installed when this is called (in
/// the runtime), the returned future completes at the first signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM/SIGINT; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Descriptors besides the admitted connections: refusals being answered (at most 256), listeners,
/// metrics, the runtime's own.
const FD_HEADROOM: u64 = 512;

/// Each connection is a descriptor: lift the soft RLIMIT_NOFILE towards `max_connections` plus headroom
/// (up to the hard limit), and lower `max_connections` to what the limit allows, with a warning —
/// running out of descriptors would refuse every newcomer, honest or not, without a word.
fn fit_fd_limit(config: &mut p2psc_mediator::ServerConfig) {
    let want = config.max_connections as u64 + FD_HEADROOM;
    let limit = match rlimit::increase_nofile_limit(want) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the descriptor limit");
            return;
        }
    };
    if limit < want {
        let fits = limit.saturating_sub(FD_HEADROOM).max(1) as usize;
        tracing::warn!(
            limit,
            max_connections = fits,
            asked = config.max_connections,
            "file descriptor limit is below --max-connections; lowered it (raise LimitNOFILE / ulimit -n)"
        );
        config.max_connections = fits;
    }
}
