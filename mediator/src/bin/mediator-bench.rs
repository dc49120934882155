//! `mediator-bench`: how fast and how small the mediator is, on this machine.
//!
//! ```text
//! cargo run --release -p p2psc-mediator --bin mediator-bench [-- --seconds 5 --peers 10000]
//! ```
//!
//! (b1) repeats (b) with the server pinned to CPU 0 and the clients to CPU 1: the server's rate on one
//!     dedicated core, comparable with (a)'s one thread.
//!
//! (a) ed25519-dalek verifications per second, on one thread and on two: the ceiling, since every
//!     registration costs the server one verification.
//! (b) completed registrations per second through the real server on loopback: pairs of clients (signing
//!     with ed25519-dalek, driven by `p2psc::proto::Registration`) register, get matched and hang up.
//!     The server runs in a child process (this program re-executed with `--serve`) so its CPU time and
//!     memory can be read from /proc. Reported against (a).
//! (c) resident memory per idle waiting peer: VmRSS of a fresh server process before and after
//!     `--peers` registered peers wait in its table.
//!
//! Clients and server share the machine's cores; the summary says how the CPU time was split.

use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use clap::Parser;
use p2psc::identity::{PublicKey, Signer, Verifier};
use p2psc::proto::{RegisterConfig, RegisterEvent, Registration};
use p2psc::wire::{Challenge, Hello, MAX_FRAME_LEN};
use p2psc_mediator::{Args as ServerArgs, DalekSigner, DalekVerifier, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Debug, Parser)]
#[command(name = "mediator-bench")]
struct Bench {
    /// Seconds to measure each throughput figure.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Idle waiting peers for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Pairs registering at once in the throughput run.
    #[arg(long, default_value_t = 16)]
    pairs: usize,
    /// Worker threads of the clients' runtime (the server uses one per core).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Loopback source addresses to spread client connections over (127.0.0.1 ..).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Internal: run the server (the rest of the arguments are the mediator's).
    #[arg(long, hide = true)]
    serve: bool,
    /// Internal: pin the server to this CPU.
    #[arg(long, hide = true)]
    cpu: Option<usize>,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

fn main() {
    let bench = Bench::parse();
    if bench.serve {
        if let Some(cpu) = bench.cpu {
            pin_to(cpu);
        }
        serve(&bench.rest);
        return;
    }
    let nofile = raise_nofile();
    println!("mediator-bench: {} cores, RLIMIT_NOFILE {nofile}", cores());
    println!(
        "sizes: Session {} B, Entry {} B",
        std::mem::size_of::<p2psc::proto::Session>(),
        std::mem::size_of::<p2psc::proto::mediator::Entry>()
    );

    let (one, two) = verify_ceiling(Duration::from_secs(1));
    println!("(a) ed25519-dalek verify_strict: {one:.0}/s on 1 thread, {two:.0}/s on 2 threads");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(bench.client_threads)
        .enable_all()
        .build()
        .unwrap();
    let load = Load {
        seconds: bench.seconds,
        pairs: bench.pairs,
        sources: bench.sources,
        server_cpu: None,
    };
    let shared = runtime.block_on(throughput(load));
    report_throughput(
        "(b) server and clients sharing all cores",
        &shared,
        bench.pairs,
    );
    // The server alone on one core, the clients on another: the server's own rate, against (a)'s one
    // thread. (Loopback charges part of each receiver's TCP work to the sender's core.)
    let pinned = (cores() >= 2).then(|| {
        std::thread::spawn(move || {
            pin_to(1);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(throughput(Load {
                server_cpu: Some(0),
                ..load
            }))
        })
        .join()
        .unwrap()
    });
    if let Some(pinned) = &pinned {
        report_throughput(
            "(b1) server pinned to CPU 0, clients to CPU 1",
            pinned,
            bench.pairs,
        );
    }
    let memory = runtime.block_on(memory(&bench));
    println!(
        "(c) server VmRSS {} KiB idle, {} KiB with {} waiting peers: {:.0} B per waiting peer \
         (kernel slab, outside VmRSS: ~{:.0} B per socket)",
        memory.before_kib,
        memory.after_kib,
        memory.peers,
        memory.per_peer_bytes,
        memory.kernel_per_socket_bytes,
    );

    let ratio = shared.rate / one;
    println!();
    println!("summary");
    println!("  (a)  ceiling, 1 thread          {one:>7.0} verify/s  (2 threads {two:.0}/s)");
    println!(
        "  (b)  registrations, shared     {:>7.0} /s        (b)/(a)  = {ratio:.2}  (goal ≥ 0.60: {})",
        shared.rate,
        verdict(ratio >= 0.6)
    );
    if let Some(pinned) = &pinned {
        let ratio = pinned.rate / one;
        println!(
            "  (b1) registrations, 1 core     {:>7.0} /s        (b1)/(a) = {ratio:.2}  (goal ≥ 0.60: {})",
            pinned.rate,
            verdict(ratio >= 0.6)
        );
    }
    println!(
        "       server CPU per registration {:>5.0} µs       (verification alone: {:.0} µs)",
        shared.server_cpu_per_registration_us,
        1e6 / one
    );
    for (name, t) in std::iter::once(("(b)", &shared)).chain(pinned.iter().map(|p| ("(b1)", p))) {
        if t.other_cores > 0.2 {
            println!(
                "       note: {:.2} cores were busy with other work during {name}: the machine was not quiet",
                t.other_cores
            );
        }
    }
    println!(
        "  (c) memory per waiting peer  {:>9.0} B          (goal ≤ 4096 B: {})",
        memory.per_peer_bytes,
        verdict(memory.per_peer_bytes <= 4096.0)
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn report_throughput(what: &str, t: &Throughput, pairs: usize) {
    println!(
        "{what}: {:.0} registrations/s ({} in {:.1} s, {pairs} pairs in flight); server CPU {:.0} µs per \
         registration ({:.2} cores busy), clients {:.2} cores, anything else {:.2} cores",
        t.rate,
        t.completed,
        t.elapsed.as_secs_f64(),
        t.server_cpu_per_registration_us,
        t.server_cores,
        t.client_cores,
        t.other_cores,
    );
}

/// Pin the calling thread (and the threads it starts later) to one CPU.
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("mediator-bench: cannot pin to CPU {cpu}");
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Lift the soft descriptor limit to the hard one (children inherit it).
fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

// ---------------------------------------------------------------------------------------------------
// (a)

fn verify_ceiling(each: Duration) -> (f64, f64) {
    // Real registration transcripts, each under its own key, as the server sees them.
    let cases: Vec<(PublicKey, Vec<u8>, p2psc::identity::Signature)> = (0..256u32)
        .map(|i| {
            let signer = seeded(i);
            let hello = Hello {
                key: signer.public_key(),
                want: seeded(i + 1).public_key(),
                nonce: [i as u8; 32],
                local: Some(SocketAddr::from(([192, 168, 1, 2], 40_000))),
            };
            let challenge = Challenge {
                nonce: [!(i as u8); 32],
                observed: SocketAddr::from(([203, 0, 113, 9], 50_000)),
            };
            let transcript = p2psc::proto::transcript::registration(&hello, &challenge);
            let msg = transcript.as_bytes().to_vec();
            let sig = signer.sign(&msg);
            (hello.key, msg, sig)
        })
        .collect();
    let run = |threads: usize| {
        let start = StdInstant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let cases = &cases;
                    s.spawn(move || {
                        let mut n = 0u64;
                        let mut i = t * 17;
                        while start.elapsed() < each {
                            for _ in 0..64 {
                                let (key, msg, sig) = &cases[i % cases.len()];
                                assert!(DalekVerifier.verify(key, msg, sig).is_ok());
                                i += 1;
                                n += 1;
                            }
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        total as f64 / start.elapsed().as_secs_f64()
    };
    // Best of three: other work on the machine only ever slows a run down.
    let best = |threads| (0..3).map(|_| run(threads)).fold(0.0, f64::max);
    (best(1), best(2))
}

fn seeded(n: u32) -> DalekSigner {
    let mut seed = [0xb7; 32];
    seed[..4].copy_from_slice(&n.to_le_bytes());
    DalekSigner::from_seed(&seed)
}

// ---------------------------------------------------------------------------------------------------
// The server, in a child process

fn serve(rest: &[String]) {
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
        // Serve until the parent closes our stdin (or dies).
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

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl ServerProcess {
    fn start(cpu: Option<usize>, extra: &[&str]) -> ServerProcess {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.arg("--serve");
        if let Some(cpu) = cpu {
            command.arg(format!("--cpu={cpu}"));
        }
        let mut child = command
            .arg("--")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics",
                "127.0.0.1:0",
                "--max-connections",
                "19000",
                "--max-per-ip",
                "19000",
                "--max-waiting",
                "19000",
                "--stats-interval",
                "0",
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = |prefix: &str| -> SocketAddr {
            let line = lines.next().expect("server output").expect("server output");
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("unexpected server output {line:?}"))
                .trim()
                .parse()
                .unwrap()
        };
        let addr = next("LISTEN ");
        let metrics = next("METRICS ");
        ServerProcess {
            child,
            addr,
            metrics,
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// User + system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        cpu_of_stat(&stat)
    }

    /// One gauge or counter from the metrics endpoint.
    async fn metric(&self, name: &str) -> u64 {
        let mut stream = TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
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
    async fn wait_metric(&self, name: &str, pred: impl Fn(u64) -> bool) -> u64 {
        let deadline = StdInstant::now() + Duration::from_secs(60);
        loop {
            let value = self.metric(name).await;
            if pred(value) {
                return value;
            }
            assert!(StdInstant::now() < deadline, "{name} stuck at {value}");
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

fn cpu_of_stat(stat: &str) -> Duration {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// CPU time all processes spent busy (user, nice, system, irq, softirq, steal), from /proc/stat.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7];
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(busy * 1_000_000 / hz)
}

/// Kernel slab memory (socket structures live there), from /proc/meminfo.
fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn own_cpu() -> Duration {
    cpu_of_stat(&std::fs::read_to_string("/proc/self/stat").unwrap())
}

// ---------------------------------------------------------------------------------------------------
// Clients

fn source(i: usize, sources: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % sources.max(1) as usize) as u8,
    ))
}

async fn connect(server: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    // Choose the port at connect(), per destination: bind() alone would have to avoid every port in
    // TIME_WAIT on that address, and runs out after a few seconds of this benchmark.
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` for its size; the descriptor is the socket's own.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(SocketAddr::new(from, 0))?;
    // No TCP_NODELAY: a client never has two frames in flight, so Nagle never holds one.
    socket.connect(server).await
}

fn now(start: tokio::time::Instant) -> p2psc::time::Instant {
    p2psc::time::Instant::from_micros(start.elapsed().as_micros() as i64)
}

/// Register over `stream` until `done` says so; returns the stream for the caller to keep or drop.
async fn register(
    mut stream: TcpStream,
    signer: &DalekSigner,
    want: PublicKey,
    done: impl Fn(&RegisterEvent) -> bool,
) -> Result<TcpStream, String> {
    let start = tokio::time::Instant::now();
    let config = RegisterConfig {
        step_timeout: p2psc::time::Duration::from_secs(30),
        wait_timeout: p2psc::time::Duration::from_secs(600),
    };
    let mut registration = Registration::new(
        config,
        signer.public_key(),
        want,
        [3; 32],
        stream.local_addr().ok(),
        now(start),
    );
    let mut out = [0u8; MAX_FRAME_LEN];
    let mut buf = [0u8; 512];
    loop {
        while let Some(n) = registration.transmit(now(start), &mut out) {
            stream
                .write_all(&out[..n])
                .await
                .map_err(|e| e.to_string())?;
        }
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed by the mediator".into());
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            let (used, event) = registration
                .receive(now(start), signer, data)
                .map_err(|e| e.to_string())?;
            if event.as_ref().is_some_and(&done) {
                return Ok(stream);
            }
            if used == 0 {
                break;
            }
            data = &data[used..];
        }
    }
}

struct Throughput {
    rate: f64,
    completed: u64,
    elapsed: Duration,
    server_cpu_per_registration_us: f64,
    server_cores: f64,
    client_cores: f64,
    /// Busy CPU not accounted to the server or the clients: other processes, and kernel work (softirq)
    /// charged to no process.
    other_cores: f64,
}

#[derive(Debug, Clone, Copy)]
struct Load {
    seconds: u64,
    pairs: usize,
    sources: u8,
    server_cpu: Option<usize>,
}

async fn throughput(load: Load) -> Throughput {
    let server = ServerProcess::start(load.server_cpu, &["--linger", "1s"]);
    let addr = server.addr;
    let completed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..load.pairs {
        let (a, b) = (
            seeded(1_000_000 + 2 * p as u32),
            seeded(1_000_001 + 2 * p as u32),
        );
        let (completed, stop) = (completed.clone(), stop.clone());
        let sources = load.sources;
        tasks.push(tokio::spawn(async move {
            let (ka, kb) = (a.public_key(), b.public_key());
            let matched = |e: &RegisterEvent| matches!(e, RegisterEvent::Matched(_));
            let mut round = 0usize;
            while !stop.load(Relaxed) {
                let (from_a, from_b) = (source(p + round, sources), source(p + round + 1, sources));
                round += 1;
                let (sa, sb) = tokio::join!(connect(addr, from_a), connect(addr, from_b));
                let (sa, sb) = (sa.expect("connect"), sb.expect("connect"));
                let (ra, rb) =
                    tokio::join!(register(sa, &a, kb, matched), register(sb, &b, ka, matched));
                ra.expect("registration");
                rb.expect("registration");
                // Both streams drop here: the peers hang up after their Match, as real ones do.
                completed.fetch_add(2, Relaxed);
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, s0, own0, m0, t0) = (
        completed.load(Relaxed),
        server.cpu(),
        own_cpu(),
        machine_busy(),
        StdInstant::now(),
    );
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    let (c1, s1, own1, m1, elapsed) = (
        completed.load(Relaxed),
        server.cpu(),
        own_cpu(),
        machine_busy(),
        t0.elapsed(),
    );
    stop.store(true, Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let done = c1 - c0;
    let secs = elapsed.as_secs_f64();
    let server_cpu = (s1 - s0).as_secs_f64();
    Throughput {
        rate: done as f64 / secs,
        completed: done,
        elapsed,
        server_cpu_per_registration_us: server_cpu * 1e6 / done as f64,
        server_cores: server_cpu / secs,
        client_cores: (own1 - own0).as_secs_f64() / secs,
        other_cores: ((m1 - m0).as_secs_f64() - server_cpu - (own1 - own0).as_secs_f64()).max(0.0)
            / secs,
    }
}

struct Memory {
    before_kib: u64,
    after_kib: u64,
    peers: usize,
    per_peer_bytes: f64,
    kernel_per_socket_bytes: f64,
}

async fn memory(bench: &Bench) -> Memory {
    // Pings and wait deadlines far away: the peers stay idle.
    let server = ServerProcess::start(None, &["--wait-timeout", "1h", "--ping-interval", "1h"]);
    let addr = server.addr;
    let peers = bench.peers;
    let signers: Arc<Vec<DalekSigner>> =
        Arc::new((0..peers as u32).map(|i| seeded(2_000_000 + i)).collect());
    let nobody = seeded(u32::MAX).public_key();

    // Warm up the server (runtime, allocator arenas, tables) with a round of peers that come and go.
    {
        let warm = open_waiting(addr, &signers[..peers.min(1_000)], nobody, bench.sources).await;
        server
            .wait_metric("waiting", |w| w == warm.len() as u64)
            .await;
        drop(warm);
        server.wait_metric("connections", |c| c == 0).await;
    }
    let (before_kib, slab_before) = (server.status_kib("VmRSS:"), slab_kib());
    let held = open_waiting(addr, &signers, nobody, bench.sources).await;
    server.wait_metric("waiting", |w| w == peers as u64).await;
    let (after_kib, slab_after) = (server.status_kib("VmRSS:"), slab_kib());
    drop(held);
    Memory {
        before_kib,
        after_kib,
        peers,
        per_peer_bytes: (after_kib.saturating_sub(before_kib) * 1024) as f64 / peers as f64,
        // Both ends of each connection are sockets of this kernel.
        kernel_per_socket_bytes: (slab_after.saturating_sub(slab_before) * 1024) as f64
            / (2 * peers) as f64,
    }
}

/// Register one connection per signer (all wanting `want`, who never comes), 256 at a time, and keep
/// the connections open.
async fn open_waiting(
    addr: SocketAddr,
    signers: &[DalekSigner],
    want: PublicKey,
    sources: u8,
) -> Vec<TcpStream> {
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(signers.len());
    for (i, signer) in signers.iter().enumerate() {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let signer = signer.clone();
        tasks.push(tokio::spawn(async move {
            let stream = connect(addr, source(i, sources)).await.expect("connect");
            let registered = |e: &RegisterEvent| matches!(e, RegisterEvent::Registered { .. });
            let stream = register(stream, &signer, want, registered)
                .await
                .expect("registration");
            drop(permit);
            stream
        }));
    }
    let mut streams = Vec::with_capacity(tasks.len());
    for task in tasks {
        streams.push(task.await.unwrap());
    }
    streams
}
