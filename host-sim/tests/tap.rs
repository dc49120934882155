//! p2psc through real Linux NATs: `scripts/tap-lab.sh` scenarios (network namespaces, nftables NAT,
//! TAP devices, the real `p2psc-mediator`), one test per scenario; and the `scripts/tap-late.sh` matrix
//! (late peers behind drop and RST routers, the same-LAN race), one test per group, 5 runs per scenario.
//! The same with a kernel peer on one or both sides (the `p2psc` tool, p2psc-tokio on the kernel's
//! sockets, against `host-sim tap peer` or another tool): the scenarios side by side, the late and
//! same-LAN groups with 2 runs per scenario.
//!
//! These need root, `ip`, `nft` and `/dev/net/tun`, and the mediator binary (`cargo build -p
//! p2psc-mediator`; `cargo test --workspace` builds it), and for the kernel peer the `p2psc` binary
//! (`cargo build -p p2psc-tokio`; `cargo test --workspace` builds it too). Without them each test prints
//! why and passes; with `P2PSC_REQUIRE_TAP=1` (CI) a missing prerequisite fails the test instead.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to 1 to turn "cannot run here" into a failure.
const REQUIRE: &str = "P2PSC_REQUIRE_TAP";

/// Longest a scenario may take before the test kills it (the symmetric one, relayed after the fallback
/// deadline, takes ~5 s).
const SCENARIO_LIMIT: Duration = Duration::from_secs(45);

/// Longest a `tap-late.sh` group may take: 20 runs, [`LATE_JOBS`] at a time, a failing run ~15-18 s.
const LATE_LIMIT: Duration = Duration::from_secs(300);
/// Runs per `tap-late.sh` scenario.
const LATE_RUNS: u32 = 5;
/// Runs per `tap-late.sh` scenario of the kernel-peer groups (twice the scenarios of the others).
const KERNEL_LATE_RUNS: u32 = 2;
/// `tap-late.sh` runs at a time, per group (two groups may run at once).
const LATE_JOBS: u32 = 8;

struct Lab {
    script: PathBuf,
    late_script: PathBuf,
    host_sim: PathBuf,
    mediator: PathBuf,
    /// The `p2psc` tool (checked to exist only for the tests with a kernel peer).
    p2psc: PathBuf,
}

/// The lab, or `None` (after printing why) when it cannot run here and that is allowed.
fn lab(test: &str) -> Option<Lab> {
    lab_for(test, false)
}

/// The lab with the `p2psc` tool for a kernel peer, or `None` as [`lab`].
fn kernel_lab(test: &str) -> Option<Lab> {
    lab_for(test, true)
}

fn lab_for(test: &str, kernel: bool) -> Option<Lab> {
    let required = std::env::var(REQUIRE).is_ok_and(|v| !v.is_empty() && v != "0");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let host_sim = PathBuf::from(env!("CARGO_BIN_EXE_host-sim"));
    let mediator = std::env::var_os("P2PSC_MEDIATOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| host_sim.with_file_name("p2psc-mediator"));
    let p2psc = std::env::var_os("P2PSC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| host_sim.with_file_name("p2psc"));
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces, nftables, TAP devices)".to_string());
    }
    for tool in ["ip", "nft", "timeout", "ss", "bash", "awk"] {
        if find_tool(tool).is_none() {
            missing.push(format!("`{tool}` (apt-get install iproute2 nftables)"));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".into());
    }
    if !mediator.is_file() {
        missing.push(format!(
            "the mediator binary at {} (cargo build -p p2psc-mediator, or set P2PSC_MEDIATOR_BIN)",
            mediator.display()
        ));
    }
    if kernel && !p2psc.is_file() {
        missing.push(format!(
            "the p2psc binary at {} (cargo build -p p2psc-tokio, or set P2PSC_BIN)",
            p2psc.display()
        ));
    }
    if missing.is_empty() {
        return Some(Lab {
            script: workspace.join("scripts/tap-lab.sh"),
            late_script: workspace.join("scripts/tap-late.sh"),
            host_sim,
            mediator,
            p2psc,
        });
    }
    let why = format!(
        "{test}: TAP lab cannot run here, missing: {}",
        missing.join("; ")
    );
    if required {
        panic!("{why} ({REQUIRE} is set)");
    }
    // Straight to stderr, past the test harness's capture: a skip must be visible.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {why} (set {REQUIRE}=1 to make this a failure)"
    );
    None
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A running lab scenario. Dropping it (also on panic) stops the script, which tears its namespaces down,
/// and then removes whatever is left under its prefix.
struct Run {
    child: Option<Child>,
    prefix: String,
    logs: PathBuf,
}

impl Run {
    /// `scripts/tap-lab.sh SCENARIO … EXTRA`.
    fn start(lab: &Lab, scenario: &str, tag: &str, extra: &[&str]) -> Run {
        Run::script(lab, &lab.script, scenario, tag, extra)
    }

    /// `scripts/tap-late.sh GROUP …` with `runs` per scenario and [`LATE_JOBS`].
    fn late(lab: &Lab, group: &str, tag: &str, runs: u32) -> Run {
        let (runs, jobs) = (runs.to_string(), LATE_JOBS.to_string());
        let extra = ["--runs", runs.as_str(), "--jobs", jobs.as_str()];
        Run::script(lab, &lab.late_script, group, tag, &extra)
    }

    fn script(lab: &Lab, script: &Path, first: &str, tag: &str, extra: &[&str]) -> Run {
        let prefix = format!("p2lt{}{tag}-", std::process::id());
        let logs = std::env::temp_dir().join(format!("{prefix}logs"));
        let _ = std::fs::remove_dir_all(&logs);
        let child = Command::new("bash")
            .arg(script)
            .arg(first)
            .args(["--prefix", &prefix])
            .arg("--host-sim")
            .arg(&lab.host_sim)
            .arg("--mediator-bin")
            .arg(&lab.mediator)
            .arg("--p2psc")
            .arg(&lab.p2psc)
            .arg("--logs")
            .arg(&logs)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", script.display()));
        Run {
            child: Some(child),
            prefix,
            logs,
        }
    }

    /// Wait for the script (at most `limit`); its exit code and output (stdout then stderr).
    fn finish(&mut self, limit: Duration) -> (Option<i32>, String) {
        let child = self.child.as_mut().expect("running");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the lab") {
                break status;
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!("{}: the lab took longer than {limit:?}", self.prefix);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = None;
        let output = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
        println!("{output}");
        (status.code(), output)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the script's trap kills its processes and deletes its namespaces.
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever survived (the script was killed hard): its namespaces, by our unique prefix.
        let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&list.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if !name.starts_with(&self.prefix) {
                continue;
            }
            if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2); these processes live only in our lab's namespace.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.logs);
        } else {
            eprintln!("{}: logs kept in {}", self.prefix, self.logs.display());
        }
    }
}

/// Run one `tap-lab.sh` scenario, which must pass (exit 0 and its own verdict); its output.
fn passing_run(lab: &Lab, scenario: &str, tag: &str, args: &[&str]) -> String {
    let mut run = Run::start(lab, scenario, tag, args);
    let (code, output) = run.finish(SCENARIO_LIMIT);
    assert!(
        output.contains(&format!("RESULT: PASS {scenario} (")),
        "lab verdict"
    );
    assert_eq!(code, Some(0));
    output
}

/// One peer's log, as the lab prints it (indented under `-- peer X`).
fn peer_log<'a>(output: &'a str, side: &str) -> Vec<&'a str> {
    let header = format!("-- peer {side}:");
    output
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(str::trim)
        .collect()
}

/// The `[  12.345s]` stamp of the first line containing `needle`, in seconds.
fn stamp(log: &[&str], needle: &str) -> Option<f64> {
    let line = log.iter().find(|l| l.contains(needle))?;
    let inner = line.strip_prefix('[')?.split("s]").next()?;
    inner.trim().parse().ok()
}

/// The word after `key` on the peer's `authenticated:` line.
fn authenticated_field(log: &[&str], key: &str) -> Option<String> {
    let line = log.iter().find(|l| l.contains("authenticated: "))?;
    let (_, rest) = line.split_once(&format!(" {key} "))?;
    rest.split_whitespace().next().map(str::to_string)
}

fn session(log: &[&str]) -> Option<String> {
    authenticated_field(log, "session")
}

/// Both peers connect on `path` (`direct` or `relayed`, as their `authenticated:` lines say),
/// authenticate with the same session key, and exchange the message both ways.
fn assert_connected(output: &str, path: &str) {
    let (a, b) = (peer_log(output, "A"), peer_log(output, "B"));
    assert!(!a.is_empty() && !b.is_empty(), "no peer logs in the output");
    for (side, log) in [("A", &a), ("B", &b)] {
        let at = stamp(log, "authenticated: ")
            .unwrap_or_else(|| panic!("peer {side} did not authenticate"));
        assert!(at < 10.0, "peer {side} took {at} s to authenticate");
    }
    for (side, log) in [("A", &a), ("B", &b)] {
        let got = authenticated_field(log, "path");
        assert_eq!(got.as_deref(), Some(path), "peer {side}'s path");
    }
    let (sa, sb) = (session(&a), session(&b));
    assert!(
        sa.is_some() && sa == sb,
        "session fingerprints differ: {sa:?} vs {sb:?}"
    );
    // A → B: the message arrives and is echoed; B → A: the echo arrives intact.
    assert!(
        b.iter()
            .any(|l| l.contains("echoed 29 bytes: \"hello-from-A-through-two-NATs\"")),
        "B did not receive A's message"
    );
    assert!(
        a.iter()
            .any(|l| l.contains("echo received: \"hello-from-A-through-two-NATs\"")),
        "A did not receive the echo"
    );
    assert!(
        a.iter().any(|l| l.contains("] echo ok")),
        "A's exchange did not finish"
    );
    assert!(
        b.iter().any(|l| l.contains("peer closed; echo ok")),
        "B's exchange did not finish"
    );
}

#[test]
fn port_preserving_nat_with_drop_firewalls_connects() {
    let Some(lab) = lab("port_preserving_nat_with_drop_firewalls_connects") else {
        return;
    };
    let output = passing_run(&lab, "port-preserving-drop", "d", &[]);
    // Port-preserving routers: the probes see independent mappings and the punch connects.
    assert_connected(&output, "direct");
    // Both NATs kept the port: each peer was seen by the mediator at its own local port.
    for side in ["A", "B"] {
        let log = peer_log(&output, side);
        let local = log
            .iter()
            .find_map(|l| l.split("TCP to mediator up (local 192.168.1.2:").nth(1));
        let public = log
            .iter()
            .find_map(|l| l.split("mediator sees us at ").nth(1));
        let local_port = local.and_then(|s| s.split(')').next());
        let public_port = public.and_then(|s| s.split(';').next()?.rsplit(':').next());
        assert_eq!(
            local_port, public_port,
            "router {side} did not preserve the port"
        );
    }
}

#[test]
fn port_preserving_nat_with_rst_routers_connects_after_retries() {
    let Some(lab) = lab("port_preserving_nat_with_rst_routers_connects_after_retries") else {
        return;
    };
    // B stalls 800 ms after the Match: A's first SYNs reach router B before B dialled and are reset
    // by the router's own stack; A must retry (with jitter) until B's SYN opens router B.
    let output = passing_run(&lab, "port-preserving-rst", "r", &[]);
    // Port-preserving routers: the probes see independent mappings and the punch connects.
    assert_connected(&output, "direct");
    let a = peer_log(&output, "A");
    assert!(
        a.iter().any(|l| l.contains("(attempt 2)")),
        "A never retried: the RST path was not exercised"
    );
}

/// The Match-to-authenticated time of each peer and what it logged on the way, for the relay tests.
fn relayed_after_match(output: &str, side: &str, asked: &str) -> f64 {
    let log = peer_log(output, side);
    let matched =
        stamp(&log, "matched as ").unwrap_or_else(|| panic!("peer {side} was not matched"));
    let relaying =
        stamp(&log, asked).unwrap_or_else(|| panic!("peer {side} did not log `{asked}`: {log:#?}"));
    let joined = stamp(&log, "relay joined; authenticating through it")
        .unwrap_or_else(|| panic!("peer {side} did not join the relay: {log:#?}"));
    let done = stamp(&log, "authenticated: ")
        .unwrap_or_else(|| panic!("peer {side} did not authenticate: {log:#?}"));
    assert!(matched <= relaying && relaying <= joined && joined <= done);
    done - matched
}

#[test]
fn fully_random_nat_connects_through_the_relay_after_the_fallback_deadline() {
    let Some(lab) = lab("fully_random_nat_connects_through_the_relay_after_the_fallback_deadline")
    else {
        return;
    };
    // A behind masquerade fully-random (its probe: Dependent), B port-preserving (Independent): the
    // pair punches with the relay as fallback (protocol §14.3). No SYN of A's passes B's filter, so
    // both ask for the relay at the fallback deadline, 3 s + 4 x the two measured round trips.
    let output = passing_run(&lab, "symmetric", "s", &["--timeout", "30"]);
    assert_connected(&output, "relayed");
    for side in ["A", "B"] {
        let took = relayed_after_match(
            &output,
            side,
            "asking the mediator to relay (the punch failed)",
        );
        assert!(
            (2.5..8.0).contains(&took),
            "peer {side} authenticated {took:.3} s after the Match (fallback deadline about 3.2 s)"
        );
    }
}

#[test]
fn two_fully_random_nats_are_relayed_at_once() {
    let Some(lab) = lab("two_fully_random_nats_are_relayed_at_once") else {
        return;
    };
    // Both probes find a mapping per destination: no punch, the relay within a round trip or two.
    let output = passing_run(&lab, "symmetric-both", "s2", &["--timeout", "30"]);
    assert_connected(&output, "relayed");
    for side in ["A", "B"] {
        let asked = "asking the mediator to relay (the NATs cannot be punched)";
        let took = relayed_after_match(&output, side, asked);
        assert!(
            took < 2.0,
            "peer {side} took {took:.3} s from the Match to the relayed peer"
        );
        let log = peer_log(&output, side);
        assert!(
            !log.iter().any(|l| l.contains("SYN to ")),
            "peer {side} punched although both NATs map per destination: {log:#?}"
        );
    }
}

/// The pass table's row of each scenario `tap-late.sh` printed: (name, connected, echo ok, verdict).
fn late_rows(output: &str) -> Vec<(&str, &str, &str, &str)> {
    output
        .lines()
        .skip_while(|l| !l.starts_with("scenario "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((*cols.first()?, *cols.get(2)?, *cols.get(3)?, *cols.last()?))
        })
        .collect()
}

/// Run one `tap-late.sh` group and require every run of every listed scenario to connect and echo.
/// A `kernel-*` group (a kernel peer on one side or both) runs [`KERNEL_LATE_RUNS`] per scenario.
fn late_group(test: &str, group: &str, tag: &str, scenarios: &[&str]) {
    let kernel = group.starts_with("kernel-");
    let Some(lab) = lab_for(test, kernel) else {
        return;
    };
    let runs = if kernel { KERNEL_LATE_RUNS } else { LATE_RUNS };
    let mut run = Run::late(&lab, group, tag, runs);
    let (code, output) = run.finish(LATE_LIMIT);
    let rows = late_rows(&output);
    let all = format!("{runs}/{runs}");
    let failed: Vec<String> = scenarios
        .iter()
        .filter_map(|name| match rows.iter().find(|r| r.0 == *name) {
            None => Some(format!("{name}: no row in the pass table")),
            Some((_, c, e, v)) if *c != all || *e != all || *v != "PASS" => {
                Some(format!("{name}: connected {c}, echo ok {e}, {v}"))
            }
            Some(_) => None,
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} (failures listed above)",
        failed.join("; ")
    );
    assert_eq!(rows.len(), scenarios.len(), "unexpected rows: {rows:?}");
    assert!(output.contains("RESULT: PASS tap-late"), "tap-late verdict");
    assert_eq!(code, Some(0));
}

const LATE_SCENARIOS: [&str; 4] = ["A1500", "A4000", "B1500", "B4000"];

#[test]
fn late_peer_behind_drop_routers_connects() {
    // One peer stalls 1.5 s or 4 s after the Match; both routers drop unsolicited inbound, so the early
    // side's SYNs wait in conntrack's SYN_SENT and its re-dials on the same 5-tuple carry new ISNs.
    let names = LATE_SCENARIOS.map(|s| format!("late-drop-{s}"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    late_group(
        "late_peer_behind_drop_routers_connects",
        "late-drop",
        "ld",
        &names,
    );
}

#[test]
fn late_peer_behind_rst_routers_connects() {
    // The same late peers behind routers without a filter: router stacks reset the early SYNs until
    // the late peer dials.
    let names = LATE_SCENARIOS.map(|s| format!("late-rst-{s}"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    late_group(
        "late_peer_behind_rst_routers_connects",
        "late-rst",
        "lr",
        &names,
    );
}

#[test]
fn same_lan_race_with_known_neighbour_connects() {
    // Both peers on one LAN behind one router; one told the other its MAC before the Match, so the
    // other's SYN reaches it while its own SYN still waits for ARP: the leader, then the follower.
    late_group(
        "same_lan_race_with_known_neighbour_connects",
        "same-lan-race",
        "sl",
        &["same-lan-race-leader", "same-lan-race-follower"],
    );
}

/// The kernel-peer pairings of the late groups: `ks` kernel A and smoltcp B, `sk` the reverse, `kk` two
/// tools; the late side last (a kernel B cannot be made late: `scripts/tap-late.sh`).
const KERNEL_LATE_SCENARIOS: [&str; 8] = [
    "ks-A1500", "ks-B1500", "sk-A1500", "kk-A1500", "ks-A4000", "ks-B4000", "sk-A4000", "kk-A4000",
];

#[test]
fn kernel_late_peer_behind_drop_routers_connects() {
    // The late-drop matrix with the `p2psc` tool as one peer or both: a late kernel peer is the tool
    // stopped (SIGSTOP) while it waits for its Match, so it dials only after the other has been dialling.
    let names = KERNEL_LATE_SCENARIOS.map(|s| format!("late-drop-{s}"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    late_group(
        "kernel_late_peer_behind_drop_routers_connects",
        "kernel-late-drop",
        "kld",
        &names,
    );
}

#[test]
fn kernel_late_peer_behind_rst_routers_connects() {
    // The same behind routers whose own stacks reset the early SYNs: the tool's redials (and the smoltcp
    // peer's) must meet the late side's SYN.
    let names = KERNEL_LATE_SCENARIOS.map(|s| format!("late-rst-{s}"));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    late_group(
        "kernel_late_peer_behind_rst_routers_connects",
        "kernel-late-rst",
        "klr",
        &names,
    );
}

#[test]
fn kernel_same_lan_race_connects() {
    // Two peers on one LAN, one of them the tool, or both; one knows the other's MAC when the punch starts.
    late_group(
        "kernel_same_lan_race_connects",
        "kernel-same-lan",
        "ksl",
        &[
            "same-lan-ks-follower",
            "same-lan-sk-leader",
            "same-lan-kk-leader",
            "same-lan-kk-follower",
        ],
    );
}

/// A `PEER SIDE KIND: connected C, data D, attempts N, …` line of the lab's summary: (C, D, N).
fn peer_line(output: &str, side: &str) -> Option<(u32, u32, u32)> {
    let line = output
        .lines()
        .find(|l| l.starts_with(&format!("PEER {side} ")))?;
    let field = |name: &str| -> Option<u32> {
        let rest = line.split(&format!("{name} ")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((
        field("connected")?,
        field("data")?,
        field("attempts").unwrap_or(0),
    ))
}

/// The tap-lab scenarios with a kernel peer, all at once: (tag, scenario, arguments, the side whose
/// SYNs an RST router resets first, which must then dial again).
const KERNEL_SCENARIOS: [(&str, &str, &[&str], Option<&str>); 6] = [
    (
        "kdkk",
        "port-preserving-drop",
        &["--peer-a", "kernel", "--peer-b", "kernel"],
        None,
    ),
    (
        "kdks",
        "port-preserving-drop",
        &["--peer-a", "kernel"],
        None,
    ),
    (
        "kdsk",
        "port-preserving-drop",
        &["--peer-b", "kernel"],
        None,
    ),
    // port-preserving-rst: B 800 ms late, so A's first SYNs are reset by router B.
    (
        "krks",
        "port-preserving-rst",
        &["--peer-a", "kernel"],
        Some("A"),
    ),
    // A kernel B cannot be late: A is, and B's first SYNs are reset by router A.
    (
        "krsk",
        "port-preserving-rst",
        &[
            "--peer-b",
            "kernel",
            "--stall-a-ms",
            "800",
            "--stall-b-ms",
            "0",
        ],
        Some("B"),
    ),
    (
        "krkk",
        "port-preserving-rst",
        &[
            "--peer-a",
            "kernel",
            "--peer-b",
            "kernel",
            "--stall-a-ms",
            "800",
            "--stall-b-ms",
            "0",
        ],
        Some("B"),
    ),
];

#[test]
fn kernel_peers_through_drop_and_rst_routers_connect() {
    let Some(lab) = kernel_lab("kernel_peers_through_drop_and_rst_routers_connect") else {
        return;
    };
    // Side by side: each lab is mostly idle, waiting on its relays' delays.
    let mut runs: Vec<Run> = KERNEL_SCENARIOS
        .iter()
        .map(|(tag, scenario, args, _)| Run::start(&lab, scenario, tag, args))
        .collect();
    let mut failed = Vec::new();
    for (run, (tag, scenario, args, reset)) in runs.iter_mut().zip(KERNEL_SCENARIOS) {
        let what = format!("{scenario} {}", args.join(" "));
        let (code, output) = run.finish(SCENARIO_LIMIT);
        if code != Some(0) || !output.contains(&format!("RESULT: PASS {scenario}")) {
            failed.push(format!("{what}: exit {code:?}, no PASS"));
            continue;
        }
        for side in ["A", "B"] {
            match peer_line(&output, side) {
                Some((1, 1, attempts)) if reset != Some(side) || attempts >= 2 => {}
                Some((1, 1, attempts)) => failed.push(format!(
                    "{what}: {side} dialled {attempts} time(s): the RST path was not exercised ({tag})"
                )),
                other => failed.push(format!("{what}: {side} (connected, data, attempts) {other:?}")),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("; "));
}

#[test]
fn kernel_peers_behind_fully_random_nats_connect_through_the_relay() {
    let Some(lab) = kernel_lab("kernel_peers_behind_fully_random_nats_connect_through_the_relay")
    else {
        return;
    };
    // The tool behind the fully-random NAT against a smoltcp peer (punch, then the relay), and two
    // tools behind two fully-random NATs (the relay at once): side by side.
    let scenarios: [(&str, &str, &[&str]); 3] = [
        ("ksy", "symmetric", &["--peer-a", "kernel"]),
        ("ksyb", "symmetric-both", &["--peer-a", "kernel"]),
        (
            "kkyb",
            "symmetric-both",
            &["--peer-a", "kernel", "--peer-b", "kernel"],
        ),
    ];
    let mut runs: Vec<Run> = scenarios
        .iter()
        .map(|(tag, scenario, args)| {
            let mut args = args.to_vec();
            args.extend(["--timeout", "30"]);
            Run::start(&lab, scenario, tag, &args)
        })
        .collect();
    let mut failed = Vec::new();
    for (run, (_, scenario, args)) in runs.iter_mut().zip(scenarios) {
        let what = format!("{scenario} {}", args.join(" "));
        let (code, output) = run.finish(SCENARIO_LIMIT);
        // The lab checks the bytes both ways and that both peers report the relayed path.
        if code != Some(0) || !output.contains(&format!("RESULT: PASS {scenario}")) {
            failed.push(format!("{what}: exit {code:?}, no PASS"));
            continue;
        }
        for side in ["A", "B"] {
            if peer_line(&output, side).map(|(c, d, _)| (c, d)) != Some((1, 1)) {
                failed.push(format!(
                    "{what}: peer {side} did not connect and check its bytes"
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("; "));
}
