//! The `p2psc-mediator` binary: configured from the environment, serves, and on SIGTERM aborts its
//! waiting peers with ShuttingDown and exits cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use p2psc::proto::RegisterError;
use p2psc::wire::AbortReason;

#[tokio::test]
async fn configured_by_environment_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2psc-mediator"))
        .env("P2PSC_MEDIATOR_LISTEN", "127.0.0.1:0,[::1]:0")
        .env("P2PSC_MEDIATOR_WAIT_TIMEOUT", "30s")
        // Generous: shutdown ends as soon as the connections close; a loaded machine must not turn a
        // slow write into a missing Abort.
        .env("P2PSC_MEDIATOR_SHUTDOWN_GRACE", "20s")
        .env("P2PSC_MEDIATOR_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |lines: &mpsc::Receiver<String>| {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a log line from the mediator")
    };
    let mut addrs: Vec<SocketAddr> = Vec::new();
    while addrs.len() < 2 {
        let line = next_line(&lines);
        if let Some((_, addr)) = line.split_once("listening addr=") {
            addrs.push(addr.trim().parse().expect("address in the log"));
        }
    }
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6(), "{addrs:?}");

    let mut waiting = connect(addrs[1], signer(1), key(2)).await;
    waiting.registered().await.unwrap();

    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(
        within(LONG, waiting.failure()).await,
        ClientError::Register(RegisterError::Aborted(AbortReason::ShuttingDown))
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The last words are the final stats line.
    let mut saw_stats = false;
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        saw_stats |=
            line.contains("stats: connections=0 waiting=0") && line.contains("registrations=1");
    }
    assert!(saw_stats);
}
