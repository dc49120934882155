//! Throughput of `p2psc pipe` on loopback against plain TCP between two processes of the same shape,
//! and the tool's peak memory.
//!
//! ```sh
//! cargo build --release -p p2psc-tokio -p p2psc-mediator
//! cargo run --release -p p2psc-tokio --example pipe_bench -- [--mib 1024] [--runs 3] [--relayed]
//! ```
//!
//! Each run moves `--mib` MiB from this process into the stdin of a sending process, over one TCP
//! connection to a receiving process, out of its stdout back into this process:
//!
//! - **p2psc**: two `p2psc pipe` processes, connected through a real `p2psc-mediator` (the set-up is not
//!   timed: the clock starts at the first byte out of the receiver), over the secure channel;
//! - **p2psc --plaintext**: the same with the stream in plaintext (what the secure channel costs);
//! - **plain TCP**: two processes of this example in relay mode (`relay-listen`, `relay-connect`), which
//!   copy stdin to a plain TCP socket and the socket to stdout with std threads and the same 64 KiB
//!   chunks: netcat, without p2psc.
//! - with `--relayed`, **p2psc relayed**: the secure pipe again, both tools with `--relay only`, so the
//!   stream crosses the mediator's relay (protocol §14; the mediator runs without rate limits for it).
//!
//! It prints the best of `--runs` for each (the machine may be shared), their ratio, each process's
//! CPU time per GiB and peak RSS (`ru_utime + ru_stime` and `ru_maxrss` from `wait4`). CPU time per
//! byte depends less on other load than throughput does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("relay-listen") => relay_listen(),
        Some("relay-connect") => relay_connect(&args[1]),
        _ => bench(
            option(&args, "--mib", 1024),
            option(&args, "--runs", 3),
            args.iter().any(|a| a == "--relayed"),
        ),
    }
}

fn option(args: &[String], name: &str, default: u64) -> u64 {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} takes a number")),
        None => default,
    }
}

/// One run's outcome: bytes per second, and the sender's and receiver's peak RSS (KiB) and CPU
/// time (user + system, seconds).
struct Outcome {
    rate: f64,
    rss_kib: [i64; 2],
    cpu: [f64; 2],
}

fn bench(mib: u64, runs: u64, relayed: bool) {
    let bin = binaries_dir();
    let mediator = Mediator::start(&bin.join("p2psc-mediator"));
    let dir = std::env::temp_dir().join(format!("p2psc-pipe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p2psc = bin.join("p2psc");
    let (a, b) = (keygen(&p2psc, &dir, "a.pem"), keygen(&p2psc, &dir, "b.pem"));
    let bytes = mib << 20;
    println!("moving {mib} MiB, best of {runs} runs (the three kinds alternate)");
    let me = std::env::current_exe().unwrap();
    let (mut piped, mut clear, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let mut through_relay = Vec::new();
    for _ in 0..runs {
        let mut kinds = vec![(Kind::Secure, &mut piped), (Kind::Plaintext, &mut clear)];
        if relayed {
            kinds.push((Kind::Relayed, &mut through_relay));
        }
        for (kind, outcomes) in kinds {
            let m = &mediator.addr;
            let receiver = pipe_process(&p2psc, &b, &a.1, m, false, kind);
            let sender = pipe_process(&p2psc, &a, &b.1, m, true, kind);
            outcomes.push(transfer(sender, receiver, bytes));
        }
        let (receiver, port) = relay_listener(&me);
        let sender = spawn(Command::new(&me).args(["relay-connect", &port]), true);
        plain.push(transfer(sender, receiver, bytes));
    }
    let best = |all: Vec<Outcome>| {
        all.into_iter()
            .max_by(|x, y| x.rate.total_cmp(&y.rate))
            .unwrap()
    };
    let (piped, clear, plain) = (best(piped), best(clear), best(plain));
    let _ = std::fs::remove_dir_all(&dir);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    report("p2psc pipe (secure)   ", &piped, gib);
    report("p2psc pipe --plaintext", &clear, gib);
    report("plain TCP             ", &plain, gib);
    if relayed {
        let through_relay = best(through_relay);
        report("p2psc pipe, relayed   ", &through_relay, gib);
        println!(
            "ratio relayed / direct secure p2psc pipe: throughput {:.2}",
            through_relay.rate / piped.rate
        );
    }
    let cpu = |o: &Outcome| o.cpu[0] + o.cpu[1];
    println!(
        "ratio secure / plaintext p2psc pipe: throughput {:.2}, CPU per byte {:.2}",
        piped.rate / clear.rate,
        cpu(&piped) / cpu(&clear)
    );
    println!(
        "ratio p2psc / plain TCP: throughput {:.2}, CPU per byte {:.2}",
        piped.rate / plain.rate,
        cpu(&piped) / cpu(&plain)
    );
}

fn report(name: &str, o: &Outcome, gib: f64) {
    println!(
        "{name}: {:7.1} MiB/s; CPU per GiB sender {:.2} s, receiver {:.2} s; \
         peak RSS sender {:.1} MiB, receiver {:.1} MiB",
        o.rate / (1 << 20) as f64,
        o.cpu[0] / gib,
        o.cpu[1] / gib,
        o.rss_kib[0] as f64 / 1024.0,
        o.rss_kib[1] as f64 / 1024.0
    );
}

/// Where `p2psc` and `p2psc-mediator` are: the profile directory above this example's.
fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for bin in ["p2psc", "p2psc-mediator"] {
        assert!(
            dir.join(bin).exists(),
            "no {bin} in {}: cargo build --release -p p2psc-tokio -p p2psc-mediator",
            dir.display()
        );
    }
    dir
}

/// A child with stdin piped (`feeds`) or closed, stdout piped.
fn spawn(command: &mut Command, feeds: bool) -> Child {
    let stdin = if feeds { Stdio::piped() } else { Stdio::null() };
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a child")
}

/// What a pair of `p2psc pipe` processes carries the bytes over.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// The secure channel on the punched connection.
    Secure,
    /// `--plaintext` on the punched connection.
    Plaintext,
    /// The secure channel through the mediator's relay (`--relay only`).
    Relayed,
}

fn pipe_process(
    p2psc: &Path,
    (key, _): &(PathBuf, String),
    peer: &str,
    mediator: &str,
    feeds: bool,
    kind: Kind,
) -> Child {
    let mut command = Command::new(p2psc);
    command
        .args(["-q", "pipe", "--key"])
        .arg(key)
        .args(["--peer", peer, "--mediator", mediator]);
    match kind {
        Kind::Secure => {}
        Kind::Plaintext => {
            command.arg("--plaintext");
        }
        Kind::Relayed => {
            command.args(["--relay", "only"]);
        }
    }
    spawn(&mut command, feeds)
}

/// Feed `bytes` into the sender, read the receiver's stdout to its end; then reap both with their
/// peak RSS.
fn transfer(mut sender: Child, mut receiver: Child, bytes: u64) -> Outcome {
    let input = sender.stdin.take().unwrap();
    let writer = std::thread::spawn(move || write_pattern(input, bytes));
    let output = receiver.stdout.take().unwrap();
    let (got, took) = read_all(output);
    writer.join().unwrap();
    assert_eq!(got, bytes, "the receiver got {got} of {bytes} bytes");
    let (sender, receiver) = (reap(&sender), reap(&receiver));
    Outcome {
        rate: bytes as f64 / took.as_secs_f64(),
        rss_kib: [sender.0, receiver.0],
        cpu: [sender.1, receiver.1],
    }
}

fn write_pattern(mut input: ChildStdin, bytes: u64) {
    let block: Vec<u8> = (0..1 << 20).map(|i: u32| ((i * 31) >> 7) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        input.write_all(&block[..n]).expect("write to the sender");
        left -= n as u64;
    }
}

/// Read to the end; the clock starts at the first byte.
fn read_all(mut output: ChildStdout) -> (u64, Duration) {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    let mut first = None;
    loop {
        let n = output.read(&mut buf).expect("read the receiver");
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        got += n as u64;
    }
    (got, first.map_or(Duration::ZERO, |t| t.elapsed()))
}

/// Wait for `child` with wait4(2): it must exit 0; returns its peak RSS in KiB and its CPU seconds.
fn reap(child: &Child) -> (i64, f64) {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child's pid, with valid pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        usage.ru_maxrss,
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
    )
}

fn keygen(p2psc: &Path, dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    let out = Command::new(p2psc)
        .args(["-q", "keygen", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "keygen: {out:?}");
    (
        file,
        String::from_utf8(out.stdout).unwrap().trim().to_owned(),
    )
}

/// The mediator, killed when dropped.
struct Mediator {
    child: Child,
    addr: String,
}

impl Mediator {
    fn start(binary: &Path) -> Mediator {
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--stats-interval", "0"])
            .args(["--log-level", "info"])
            // The relayed runs measure the relay itself, not its operator limits.
            .args(["--relay-pair-rate", "0", "--relay-total-rate", "0"])
            .args(["--relay-max-bytes", "1099511627776"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the mediator");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the mediator's log").unwrap();
            if let Some((_, addr)) = line.split_once("listening addr=") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining its log so that it never blocks on stderr.
        std::thread::spawn(move || lines.for_each(drop));
        Mediator { child, addr }
    }
}

impl Drop for Mediator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a `relay-listen` process; returns it and its port (its first line on stderr).
fn relay_listener(me: &Path) -> (Child, String) {
    let mut child = Command::new(me)
        .arg("relay-listen")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// Relay mode, receiving end: accept one connection on loopback, then relay.
fn relay_listen() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    eprintln!("{}", listener.local_addr().unwrap().port());
    let (stream, _) = listener.accept().unwrap();
    relay(stream);
}

/// Relay mode, sending end.
fn relay_connect(port: &str) {
    relay(TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap());
}

/// stdin → socket (then FIN) and socket → stdout, each on its own thread, like netcat.
fn relay(stream: TcpStream) {
    stream.set_nodelay(true).unwrap();
    let mut up = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        copy(&mut std::io::stdin().lock(), &mut up);
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut down = stream;
    copy(&mut down, &mut std::io::stdout().lock());
    sending.join().unwrap();
}

fn copy(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => to.write_all(&buf[..n]).unwrap(),
        }
    }
    to.flush().unwrap();
}
