//! `p2psc forward`: TCP connections carried to the peer, one p2psc connection each.
//!
//! The `--listen` end accepts local connections into a queue and connects to the peer for one at a
//! time; the `--to` end registers, takes one connection, hands it to the local service, and registers
//! again. A key is registered at most once at a time on either end: the mediator replaces an older
//! registration of the same key, so two at once from one key would cancel each other.

use std::net::SocketAddr;
use std::time::Duration;

use p2psc::identity::Keypair;
use p2psc_tokio::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::args::{ConnectArgs, ForwardArgs};
use crate::copy::carry;
use crate::dial::{check_mediator, dial};
use crate::fail::{Class, Failure};
use crate::keys::load_keypair;
use crate::progress::{Progress, Record};

/// Local connections waiting for their turn; beyond, new ones are closed at once.
const QUEUE: usize = 64;
/// Longest wait for the local service to accept a carried connection.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed attempt with the peer before registering again (no tight loop against a
/// peer that keeps failing).
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Run one end of the tunnel until a failure that is not one attempt's (see `Class::is_per_attempt`).
pub async fn run(args: &ForwardArgs, progress: &Progress) -> Result<(), Failure> {
    let keypair = load_keypair(&args.connect.key)?;
    match (&args.end.listen, &args.end.to) {
        (Some(listen), _) => listen_end(&keypair, &args.connect, *listen, progress).await,
        (None, Some(to)) => service_end(&keypair, &args.connect, to, progress).await,
        (None, None) => Err(Failure::new(Class::Usage, "--listen or --to is required")),
    }
}

/// `--listen`: accept local connections; carry each through its own p2psc connection, set up one at a
/// time in arrival order.
async fn listen_end(
    keypair: &Keypair,
    args: &ConnectArgs,
    addr: SocketAddr,
    progress: &Progress,
) -> Result<(), Failure> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::new(Class::LocalIo, format!("cannot listen on {addr}: {e}")))?;
    check_mediator(args).await?;
    let bound = listener.local_addr().unwrap_or(addr);
    progress.report(Record::Listening(bound));
    let (queue, mut waiting) = mpsc::channel(QUEUE);
    tokio::spawn(accept_into(listener, queue, *progress));
    while let Some((local, from)) = waiting.recv().await {
        match dial(keypair, args, progress).await {
            Ok(conn) => {
                tokio::spawn(carry_and_report(local, from, conn, *progress));
            }
            // Dropping `local` closes it: the client sees its connection end.
            Err(failure) => {
                let message = format!("connection from {from}: {}", failure.message);
                progress.report(Record::Failed(&Failure::new(failure.class, message)));
            }
        }
    }
    Ok(())
}

/// Accept local connections into `queue` (closing them when it is full).
async fn accept_into(
    listener: TcpListener,
    queue: mpsc::Sender<(TcpStream, SocketAddr)>,
    progress: Progress,
) {
    loop {
        let (local, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, or a connection that died in the backlog: not fatal.
                let failure = Failure::new(Class::LocalIo, format!("accept failed: {e}"));
                progress.report(Record::Failed(&failure));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let waiting = QUEUE - queue.capacity() + 1;
        if queue.try_send((local, from)).is_err() {
            let message = format!("{from}: {QUEUE} connections already wait; closed");
            progress.report(Record::Failed(&Failure::new(Class::LocalIo, message)));
            continue;
        }
        progress.report(Record::Queued { from, waiting });
    }
}

/// `--to`: register, take one connection, hand it to the service, register again; stop on a failure
/// that is not one attempt's (the mediator, the key, local sockets).
async fn service_end(
    keypair: &Keypair,
    args: &ConnectArgs,
    to: &str,
    progress: &Progress,
) -> Result<(), Failure> {
    progress.report(Record::Serving(to));
    loop {
        match dial(keypair, args, progress).await {
            Ok(conn) => {
                tokio::spawn(deliver(conn, to.to_owned(), *progress));
            }
            Err(failure) if failure.class == Class::PeerNeverCame => {}
            Err(failure) if failure.class.is_per_attempt() => {
                progress.report(Record::Failed(&failure));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(failure) => return Err(failure),
        }
    }
}

/// Connect a carried connection to the service at `to` and carry it.
async fn deliver(conn: Connection, to: String, progress: Progress) {
    let service = tokio::time::timeout(SERVICE_TIMEOUT, TcpStream::connect(&to)).await;
    let local = match service {
        Ok(Ok(local)) => local,
        Ok(Err(e)) => return service_failed(&to, &e.to_string(), progress),
        Err(_) => return service_failed(&to, "no answer", progress),
    };
    let at = local.local_addr().unwrap_or(([0, 0, 0, 0], 0).into());
    carry_and_report(local, at, conn, progress).await;
}

/// The service could not be reached: the peer's connection is closed (dropped) and the failure shown.
fn service_failed(to: &str, why: &str, progress: Progress) {
    let failure = Failure::new(Class::LocalIo, format!("cannot connect to {to}: {why}"));
    progress.report(Record::Failed(&failure));
}

async fn carry_and_report(local: TcpStream, at: SocketAddr, conn: Connection, progress: Progress) {
    progress.report(Record::Carrying {
        local: at,
        peer: conn.peer(),
    });
    match carry(local, conn).await {
        Ok((sent, received)) => progress.report(Record::Closed {
            local: at,
            sent,
            received,
        }),
        Err(failure) => progress.report(Record::Failed(&failure)),
    }
}
