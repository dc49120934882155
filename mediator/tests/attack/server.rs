//! The mediator under attack: the real `p2psc-mediator` binary in a child process (so that its memory
//! and CPU time are its own, and its descriptor limit too), optionally pinned to one CPU.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pin the calling thread, and the threads it starts later, to `cpu`.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Lift this process's soft descriptor limit to the hard one: the attack holds thousands of sockets.
pub fn raise_nofile() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// A mediator process; dropping it kills it.
pub struct ServerChild {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    metrics: SocketAddr,
}

impl ServerChild {
    /// Start the binary on loopback with its default limits and `extra` flags, pinned to `cpu` if given.
    pub fn start(extra: &[&str], cpu: Option<usize>) -> ServerChild {
        // Another build of the server (an older one, for figures before a change) if named.
        let binary = std::env::var_os("P2PSC_ATTACK_BINARY")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_p2psc-mediator").into());
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(["--stats-interval", "0", "--log-level", "info"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(cpu) = cpu {
            // SAFETY: only sched_setaffinity (async-signal-safe) between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    pin_to(cpu);
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start p2psc-mediator");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("P2PSC_ATTACK_LOG").is_some() {
                    eprintln!("server: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || metrics.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the mediator's start-up lines");
            let Some((_, at)) = line.split_once("addr=") else {
                continue;
            };
            let at: SocketAddr = at.split_whitespace().next().unwrap().parse().unwrap();
            if line.contains("metrics") {
                metrics = Some(at);
            } else if line.contains("listening") {
                addr = Some(at);
            }
        }
        ServerChild {
            child,
            addr: addr.unwrap(),
            metrics: metrics.unwrap(),
        }
    }

    /// A field of /proc/PID/status in KiB (`VmRSS:`, `VmHWM:`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// User + system CPU time so far.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<u64> = after
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros((fields[0] + fields[1]) * 1_000_000 / hz)
    }

    /// The metrics page.
    pub async fn metrics(&self) -> String {
        let mut stream = TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: attack\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    }

    /// One sample of the metrics page (`name` with its labels, as printed), 0 if absent.
    pub async fn metric(&self, name: &str) -> u64 {
        metric_in(&self.metrics().await, name)
    }
}

/// The value of the sample `name` (with labels) in a metrics page, 0 if absent.
pub fn metric_in(page: &str, name: &str) -> u64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
