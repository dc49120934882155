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

/// `Environment=K=V` lines of a systemd unit.
fn unit_environment(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `ENV K=V K=V` instruction of a container file (continuation lines joined).
fn container_environment(file: &str) -> Vec<(String, String)> {
    let joined = file.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `"key":"value"` in a JSON log line.
fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    line[start..].split('"').next()
}

/// The status line of `GET path`.
fn http_status(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

/// The binary starts with the settings of the systemd unit and of the container file (their ports
/// moved to free loopback ones), logs JSON, and answers /healthz and /readyz.
#[test]
fn deployment_files_start_the_server() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
    for (name, env) in [
        (
            "p2psc-mediator.service",
            unit_environment(&read("p2psc-mediator.service")),
        ),
        (
            "Containerfile",
            container_environment(&read("Containerfile")),
        ),
    ] {
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        for wanted in [
            "P2PSC_MEDIATOR_LISTEN",
            "P2PSC_MEDIATOR_METRICS",
            "P2PSC_MEDIATOR_LOG_FORMAT",
        ] {
            assert!(
                names.contains(&wanted),
                "{name}: {wanted} missing from {names:?}"
            );
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_p2psc-mediator"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("P2PSC_MEDIATOR_LISTEN", "127.0.0.1:0")
            .env("P2PSC_MEDIATOR_METRICS", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut metrics = None;
        for line in stderr.lines().map_while(Result::ok) {
            assert!(line.starts_with('{'), "{name}: not a JSON log line: {line}");
            if line.contains("serving metrics") {
                metrics = json_field(&line, "addr").map(|a| a.parse::<SocketAddr>().unwrap());
                break;
            }
        }
        let metrics = metrics.unwrap_or_else(|| panic!("{name}: no metrics address logged"));
        assert_eq!(
            http_status(metrics, "/healthz"),
            "HTTP/1.1 200 OK",
            "{name}"
        );
        assert_eq!(http_status(metrics, "/readyz"), "HTTP/1.1 200 OK", "{name}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Metrics on a non-loopback address: the server warns, and serves them all the same.
#[test]
fn metrics_on_a_public_address_are_warned_about() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2psc-mediator"))
        .args(["--listen", "127.0.0.1:0", "--metrics", "0.0.0.0:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut warned = false;
    let mut metrics = None;
    for line in stderr.lines().map_while(Result::ok) {
        warned |= line.contains("WARN") && line.contains("non-loopback");
        if let Some((_, addr)) =
            line.split_once("serving metrics at /metrics, /healthz, /readyz addr=")
        {
            metrics = Some(addr.trim().parse::<SocketAddr>().unwrap());
            break;
        }
    }
    let port = metrics.expect("the metrics address in the log").port();
    assert!(warned, "no warning about the non-loopback metrics address");
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(http_status(local, "/healthz"), "HTTP/1.1 200 OK");
    child.kill().unwrap();
    child.wait().unwrap();
}
