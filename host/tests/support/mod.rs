//! Processes for the tool's tests: the `p2psc` binary, a real `p2psc-mediator` process, an echo
//! service, scratch directories. Every child is killed (by its PID) when its guard drops, so a failing
//! test leaves nothing running; every wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod liar;

/// A child process, killed and reaped when dropped unless it already exited.
pub struct Guard(Child);

impl Guard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().expect("try_wait")
    }

    /// Wait for the child to exit on its own within `limit`; kill it and fail the test otherwise.
    pub fn wait_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                panic!("process {} did not exit within {limit:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The tool, with the environment variables that stand for options removed.
pub fn p2psc() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_p2psc"));
    command.env_remove("P2PSC_KEY").env_remove("P2PSC_MEDIATOR");
    command
}

/// Lines of a child's stream, as they come.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn read(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Whether a line (from now on) contains `needle` within `limit`.
    pub fn saw(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(line) => self.seen.push(line),
                Err(_) => return false,
            }
        }
    }

    /// The first line (from now on) that contains `needle`, within `limit`.
    pub fn find(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {limit:?}; saw {:#?}",
                    self.seen
                ),
            }
        }
    }
}

/// A running process whose stderr is read line by line.
pub struct Running {
    pub guard: Guard,
    pub stderr: Lines,
}

/// Start `command` with stdin closed, stdout discarded and stderr read by line.
pub fn start(command: &mut Command) -> Running {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let stderr = Lines::read(child.stderr.take().unwrap());
    Running {
        guard: Guard(child),
        stderr,
    }
}

/// What a finished process left.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}, {} bytes on stdout, stderr:\n{}",
            self.code,
            self.stdout.len(),
            self.stderr
        )
    }
}

/// A process fed `stdin` (then closed), its outputs collected.
pub struct Fed {
    guard: Guard,
    writer: JoinHandle<()>,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

pub fn feed(command: &mut Command, stdin: Vec<u8>) -> Fed {
    feed_with(command, move |input| {
        // A process that fails early closes its stdin: the test judges its exit, not this write.
        let _ = input.write_all(&stdin);
    })
}

/// A process fed without end (until its stdin closes), its outputs collected.
pub fn feed_endless(command: &mut Command) -> Fed {
    feed_with(command, |input| {
        let chunk = pattern(64 * 1024, 7);
        while input.write_all(&chunk).is_ok() {}
    })
}

fn feed_with(
    command: &mut Command,
    write: impl FnOnce(&mut std::process::ChildStdin) + Send + 'static,
) -> Fed {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the process");
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || write(&mut input));
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = r.read_to_end(&mut all);
            all
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    Fed {
        guard: Guard(child),
        writer,
        stdout,
        stderr,
    }
}

impl Fed {
    /// Wait (bounded) for the exit, then collect everything.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let status = self.guard.wait_within(limit);
        let _ = self.writer.join();
        Finished {
            code: status.code(),
            stdout: self.stdout.join().unwrap(),
            stderr: String::from_utf8_lossy(&self.stderr.join().unwrap()).into_owned(),
        }
    }
}

/// Start `command` with its stdout looped back into its stdin (an echo, like `p2psc pipe <fifo | tee
/// fifo`); its stdin closes only when its stdout has ended. The thread returns what went round.
pub fn loop_back(command: &mut Command) -> (Guard, JoinHandle<Vec<u8>>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the process");
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut all, mut buf) = (Vec::new(), [0u8; 4096]);
        while let Ok(n @ 1..) = output.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
            if input.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        all
    });
    (Guard(child), echo)
}

/// Run `command` with `stdin`, bounded by `limit`.
pub fn run(command: &mut Command, stdin: &[u8], limit: Duration) -> Finished {
    feed(command, stdin.to_vec()).finish(limit)
}

/// The `p2psc-mediator` binary, built once per test run by the same cargo, profile and target
/// directory as this test (`cargo test -p p2psc-tokio` alone does not build other packages' binaries).
fn mediator_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/cli-<hash>
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "-q",
                "-p",
                "p2psc-mediator",
                "--bin",
                "p2psc-mediator",
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p p2psc-mediator: {status}");
        profile_dir.join("p2psc-mediator")
    })
}

/// A real mediator process on loopback.
pub struct Mediator {
    pub running: Running,
    pub addr: SocketAddr,
}

impl Mediator {
    pub fn start() -> Mediator {
        Mediator::start_logging("info")
    }

    /// A mediator logging at `level` ("debug" logs each verified registration with its key).
    pub fn start_logging(level: &str) -> Mediator {
        let mut running = start(
            Command::new(mediator_binary())
                .args(["--listen", "127.0.0.1:0", "--stats-interval", "0"])
                .args(["--log-level", level]),
        );
        let line = running
            .stderr
            .find("listening addr=", Duration::from_secs(60));
        let addr = line.split("listening addr=").nth(1).unwrap().trim();
        Mediator {
            addr: addr.parse().expect("address in the mediator's log"),
            running,
        }
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
}

/// A directory for one test's files, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("p2psc-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh identity from `p2psc keygen`: (key file, public key hex).
pub fn keygen(scratch: &Scratch, name: &str) -> (PathBuf, String) {
    let file = scratch.path(name);
    let out = run(
        p2psc().args(["-q", "keygen", "--out"]).arg(&file),
        b"",
        Duration::from_secs(20),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let hex = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(hex.len(), 64, "{hex:?}");
    (file, hex)
}

/// An echo service on loopback: each connection gets back what it sends, and a FIN after the
/// client's. Runs until the test process ends.
pub fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || echo(stream));
        }
    });
    addr
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Test data that differs at every position (a misplaced chunk cannot go unnoticed).
pub fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(salt) >> 13) as u8)
        .collect()
}

/// A port nothing listens on (bound, noted, released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
