//! The server under test, in a child process (this program re-executed with `--serve`), so that its
//! CPU time and memory can be read from /proc apart from the clients'.

use std::io::{BufRead, BufReader, Lines, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use p2psc_mediator::{Args as ServerArgs, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::host;

/// The mediator's arguments in every run: loopback, limits far above the load, quiet.
const BASE_ARGS: [&str; 24] = [
    "--listen",
    "127.0.0.1:0",
    "--metrics",
    "127.0.0.1:0",
    "--max-connections",
    "19000",
    "--max-per-ip",
    "19000",
    "--max-per-net",
    "19000",
    "--rate-per-ip",
    "0",
    "--rate-per-net",
    "0",
    "--max-waiting",
    "19000",
    // The clients' sources are all in 127.0.0.0/24: one network.
    "--max-waiting-per-net",
    "19000",
    "--stats-interval",
    "0",
    // No probe endpoint: port + 1 of a port-0 listener may be taken, and no figure needs it.
    "--probe-port",
    "0",
    "--log-level",
    "warn",
];

/// The child's side: pin to `cpu` if asked, serve with the mediator's arguments `rest`, print the bound
/// addresses, and stop when the parent closes our stdin (or dies).
pub fn run_child(cpu: Option<usize>, rest: &[String]) {
    if let Some(cpu) = cpu {
        host::pin_to(cpu);
    }
    let args = ServerArgs::parse_from(
        std::iter::once("p2psc-mediator".to_string()).chain(rest.iter().cloned()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Server::bind(args.server_config()).await.expect("bind");
        println!("LISTEN {}", server.local_addrs()[0]);
        println!(
            "METRICS {}",
            server.metrics_addr().expect("metrics address")
        );
        std::io::stdout().flush().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = tx.send(());
        });
        server
            .serve(async {
                let _ = rx.await;
            })
            .await;
    });
}

/// The parent's handle on the server process; dropping it stops the server.
pub struct ServerProcess {
    child: Child,
    /// Where the mediator listens.
    pub addr: SocketAddr,
    metrics: SocketAddr,
}

impl ServerProcess {
    /// Start a server (pinned to `cpu`, if given) with `extra` mediator arguments.
    pub fn start(cpu: Option<usize>, extra: &[&str]) -> ServerProcess {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg("--serve");
        if let Some(cpu) = cpu {
            command.arg(format!("--cpu={cpu}"));
        }
        let mut child = command
            .arg("--")
            .args(BASE_ARGS)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = announced(&mut lines, "LISTEN ");
        let metrics = announced(&mut lines, "METRICS ");
        ServerProcess {
            child,
            addr,
            metrics,
        }
    }

    /// Its resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        host::status_kib(self.child.id(), "VmRSS:")
    }

    /// Its user + system CPU time so far.
    pub fn cpu(&self) -> Duration {
        host::process_cpu(self.child.id())
    }

    /// One gauge or counter from the metrics endpoint.
    async fn metric(&self, name: &str) -> u64 {
        let mut stream = TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let prefix = format!("p2psc_mediator_{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// Poll a metric until `pred` holds (this is a benchmark: a short poll interval is fine).
    pub async fn wait_metric(&self, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.metric(name).await;
            if pred(value) {
                return value;
            }
            assert!(Instant::now() < deadline, "{name} stuck at {value}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The address on the child's next output line, which must start with `prefix`.
fn announced(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> SocketAddr {
    let line = lines.next().expect("server output").expect("server output");
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected server output {line:?}"))
        .trim()
        .parse()
        .unwrap()
}
