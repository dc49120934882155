//! The `p2psc` tool as a user runs it: real processes (the tool, a real `p2psc-mediator`), loopback
//! only. Every child is killed by PID if a test fails; every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// `pipe` arguments towards `peer` through `mediator`.
fn pipe(key: &std::path::Path, peer: &str, mediator: &str) -> Command {
    let mut command = p2psc();
    command
        .arg("pipe")
        .arg("--key")
        .arg(key)
        .args(["--peer", peer, "--mediator", mediator]);
    command
}

/// The only line on stderr, which must be an error line.
fn one_error_line(out: &Finished) -> &str {
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:?}");
    assert!(lines[0].starts_with("p2psc: error: "), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    lines[0]
}

/// A and B connected with `pipe`, each fed the other's bytes: both exit 0 with exactly those bytes.
fn exchange(a: &mut Command, b: &mut Command, to_b: &[u8], to_a: &[u8]) -> (Finished, Finished) {
    let (a, b) = (feed(a, to_b.to_vec()), feed(b, to_a.to_vec()));
    let (a, b) = (a.finish(LIMIT), b.finish(LIMIT));
    assert_eq!((a.code, b.code), (Some(0), Some(0)), "A: {a:?}\nB: {b:?}");
    assert!(a.stdout == to_a, "A received other bytes: {a:?}");
    assert!(b.stdout == to_b, "B received other bytes: {b:?}");
    (a, b)
}

/// The objects of a `--json` run's progress, one per line of stderr.
fn json_events(out: &Finished) -> Vec<serde_json::Value> {
    out.stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect()
}

#[test]
fn pipe_carries_both_directions_and_both_ends_exit_0() {
    let scratch = Scratch::new("pipe");
    let mediator = Mediator::start();
    let (key_a, hex_a) = keygen(&scratch, "a.pem");
    let (key_b, hex_b) = keygen(&scratch, "b.pem");
    let (to_b, to_a) = (pattern(3 << 20, 1), pattern(1 << 20, 2));
    // B takes its key and mediator from the environment.
    let (a, b) = exchange(
        &mut pipe(&key_a, &hex_b, &mediator.addr()),
        p2psc()
            .env("P2PSC_KEY", &key_b)
            .env("P2PSC_MEDIATOR", mediator.addr())
            .args(["--json", "pipe", "--peer", &hex_a]),
        &to_b,
        &to_a,
    );
    assert!(a.stderr.contains("; path direct; peer 127.0.0.1:"), "{a:?}");
    // --json: one object per line, the connection's among them.
    let events = json_events(&b);
    let connected = events.iter().find(|e| e["event"] == "connected").unwrap();
    assert_eq!(connected["path"], "direct");
    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["sent"], to_a.len());
    assert_eq!(done["received"], to_b.len());
}

/// One side asks for the relay at once (`--relay only`: Hello flags 3, mapping `RelayOnly`), so both
/// decide the relay (protocol §14.3): the bytes cross the real mediator, encrypted end to end, and both
/// tools say so.
#[test]
fn relay_only_carries_both_directions_through_the_mediator() {
    let scratch = Scratch::new("relay");
    let mediator = Mediator::start();
    let (key_a, hex_a) = keygen(&scratch, "a.pem");
    let (key_b, hex_b) = keygen(&scratch, "b.pem");
    let (to_b, to_a) = (pattern(1 << 20, 3), pattern(256 << 10, 4));
    let (a, b) = exchange(
        pipe(&key_a, &hex_b, &mediator.addr()).args(["--relay", "only"]),
        pipe(&key_b, &hex_a, &mediator.addr()).arg("--json"),
        &to_b,
        &to_a,
    );
    assert!(a.stderr.contains("; path relayed; "), "{a:?}");
    let events = json_events(&b);
    let connected = events.iter().find(|e| e["event"] == "connected").unwrap();
    assert_eq!(connected["path"], "relayed");
    assert!(
        events.iter().any(|e| e["event"] == "relaying"),
        "B asked for the relay: {b:?}"
    );
}

/// Protocol versions meet (protocol §14.8): a version-1 peer (`--relay off`) and a version-2 peer
/// wanting each other are matched by the version-2 mediator, punch, and authenticate directly.
#[test]
fn a_version_1_peer_and_a_version_2_peer_connect_directly() {
    let scratch = Scratch::new("versions");
    let mediator = Mediator::start();
    let (key_a, hex_a) = keygen(&scratch, "a.pem");
    let (key_b, hex_b) = keygen(&scratch, "b.pem");
    let (to_b, to_a) = (pattern(64 << 10, 5), pattern(32 << 10, 6));
    let (a, b) = exchange(
        pipe(&key_a, &hex_b, &mediator.addr()).args(["--relay", "off"]),
        &mut pipe(&key_b, &hex_a, &mediator.addr()),
        &to_b,
        &to_a,
    );
    for out in [&a, &b] {
        assert!(out.stderr.contains("; path direct; "), "{out:?}");
    }
}

#[test]
fn the_peers_end_closes_stdout_so_an_echo_loop_ends() {
    // The laptop echoes (its stdout feeds its stdin); the device sends a greeting and half-closes.
    // The device's FIN must close the laptop's stdout, which ends the loop, which ends its stdin.
    let scratch = Scratch::new("echo");
    let mediator = Mediator::start();
    let (key_a, hex_a) = keygen(&scratch, "laptop.pem");
    let (key_b, hex_b) = keygen(&scratch, "device.pem");
    let (mut laptop, echoed) = loop_back(&mut pipe(&key_a, &hex_b, &mediator.addr()));
    let greeting = b"hello from a device\n".to_vec();
    let device = feed(
        &mut pipe(&key_b, &hex_a, &mediator.addr()),
        greeting.clone(),
    );
    let device = device.finish(LIMIT);
    assert_eq!(device.code, Some(0), "{device:?}");
    assert_eq!(device.stdout, greeting);
    assert_eq!(laptop.wait_within(LIMIT).code(), Some(0));
    assert_eq!(echoed.join().unwrap(), greeting);
}

#[test]
fn a_peer_that_dies_mid_transfer_is_a_lost_connection() {
    let scratch = Scratch::new("lost");
    let mediator = Mediator::start();
    let (key_a, hex_a) = keygen(&scratch, "a.pem");
    let (key_b, hex_b) = keygen(&scratch, "b.pem");
    let mut b = start(&mut pipe(&key_b, &hex_a, &mediator.addr()));
    let a = feed_endless(&mut pipe(&key_a, &hex_b, &mediator.addr()));
    b.stderr.find("authenticated in", LIMIT);
    std::thread::sleep(Duration::from_millis(200));
    drop(b); // killed while A is still sending: its socket closes with unread data, a reset
    let a = a.finish(LIMIT);
    assert_eq!(a.code, Some(9), "{a:?}");
    let last = a.stderr.lines().last().unwrap();
    assert!(last.starts_with("p2psc: error: cannot "), "{a:?}");
    assert!(last.contains("the peer"), "{a:?}");
}

/// Start both ends of a forward to `service`; returns them and the local listening address.
fn forward_pair(
    scratch: &Scratch,
    mediator: &Mediator,
    service: SocketAddr,
) -> (Running, Running, SocketAddr) {
    let (key_a, hex_a) = keygen(scratch, "laptop.pem");
    let (key_b, hex_b) = keygen(scratch, "device.pem");
    let mut device = start(
        p2psc()
            .args(["--json", "forward", "--to", &service.to_string(), "--key"])
            .arg(&key_b)
            .args(["--peer", &hex_a, "--mediator", &mediator.addr()]),
    );
    device.stderr.find("\"serving\"", LIMIT);
    let mut laptop = start(
        p2psc()
            .args(["--json", "forward", "--listen", "127.0.0.1:0", "--key"])
            .arg(&key_a)
            .args(["--peer", &hex_b, "--mediator", &mediator.addr()]),
    );
    let line = laptop.stderr.find("\"listening\"", LIMIT);
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    let listen = event["addr"].as_str().unwrap().parse().unwrap();
    (laptop, device, listen)
}

/// Send `data` through `stream` and read it all back (the echo service returns it).
fn echo_through(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    assert!(back == data, "the echo differs");
}

fn connect_local(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream
}

#[test]
fn forward_carries_sequential_and_concurrent_connections() {
    let scratch = Scratch::new("forward");
    let mediator = Mediator::start();
    let service = echo_service();
    let (mut laptop, mut device, listen) = forward_pair(&scratch, &mediator, service);

    for round in 0..3 {
        let mut stream = connect_local(listen);
        echo_through(&mut stream, &pattern(200_000, round));
        // Half-close: the FIN crosses both p2psc ends and the service, and comes back.
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        laptop.stderr.find("\"closed\"", LIMIT);
    }

    // Two at once: both are set up (one after the other), then carried side by side.
    let mut first = connect_local(listen);
    let mut second = connect_local(listen);
    echo_through(&mut first, b"first, before the second speaks");
    echo_through(&mut second, b"second, while the first is open");
    echo_through(&mut first, b"first again");
    drop((first, second));
    for _ in 0..2 {
        laptop.stderr.find("\"closed\"", LIMIT);
    }
    assert!(laptop.guard.exited().is_none() && device.guard.exited().is_none());
    device.stderr.find("\"carrying\"", LIMIT);
}

#[test]
fn a_peer_configured_with_another_key_never_comes() {
    // B wants C, not A: an honest mediator never pairs them, so both wait out --wait.
    let scratch = Scratch::new("wrongkey");
    let mediator = Mediator::start();
    let (key_a, _) = keygen(&scratch, "a.pem");
    let (key_b, hex_b) = keygen(&scratch, "b.pem");
    let (_, hex_c) = keygen(&scratch, "c.pem");
    let a = feed(
        pipe(&key_a, &hex_b, &mediator.addr()).args(["--wait", "1s"]),
        vec![],
    );
    let b = run(
        pipe(&key_b, &hex_c, &mediator.addr()).args(["-q", "--wait", "1s"]),
        b"",
        LIMIT,
    );
    let a = a.finish(LIMIT);
    assert_eq!((a.code, b.code), (Some(5), Some(5)), "A: {a:?}\nB: {b:?}");
    let line = one_error_line(&b);
    assert!(
        line.contains(&format!("peer {hex_c} did not come")),
        "{line}"
    );
    assert!(a.stderr.contains("registered with the mediator"), "{a:?}");
}

#[test]
fn a_mediator_that_pairs_an_impostor_is_caught_by_the_handshake() {
    // The mediator lies: it enters M (key m, wanting A) as B, whom A wants. A authenticates the peer
    // itself and refuses M's key.
    let scratch = Scratch::new("liar");
    let (key_a, hex_a) = keygen(&scratch, "a.pem");
    let (_, hex_b) = keygen(&scratch, "b.pem");
    let (key_m, hex_m) = keygen(&scratch, "m.pem");
    let key = |hex: &str| hex.parse::<p2psc::identity::PublicKey>().unwrap();
    let liar = liar::start(key(&hex_m), key(&hex_b), LIMIT).to_string();
    let a = feed(
        pipe(&key_a, &hex_b, &liar).args(["--timeout", "20s"]),
        vec![],
    );
    let m = run(
        pipe(&key_m, &hex_a, &liar).args(["--timeout", "20s"]),
        b"",
        LIMIT,
    );
    let a = a.finish(LIMIT);
    assert_eq!(a.code, Some(7), "A: {a:?}\nM: {m:?}");
    assert!(
        a.stderr
            .contains("authentication failed: peer presented another key"),
        "{a:?}"
    );
    // M's side of the same handshake fails too: A's signature covers the key A expected.
    assert_eq!(m.code, Some(7), "M: {m:?}");
}

#[test]
fn a_peer_that_never_comes_ends_with_its_code() {
    let scratch = Scratch::new("nopeer");
    let mediator = Mediator::start();
    let (key_a, _) = keygen(&scratch, "a.pem");
    let (_, hex_b) = keygen(&scratch, "b.pem");
    let out = run(
        pipe(&key_a, &hex_b, &mediator.addr()).args(["--wait", "1s"]),
        b"",
        LIMIT,
    );
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(out.stderr.contains("did not come to mediator"), "{out:?}");
    // The overall deadline, while waiting, means the same.
    let out = run(
        pipe(&key_a, &hex_b, &mediator.addr()).args(["-q", "--timeout", "1500ms"]),
        b"",
        LIMIT,
    );
    assert_eq!(out.code, Some(5), "{out:?}");
    one_error_line(&out);
}

#[test]
fn a_mediator_that_is_down_refuses_or_stays_silent_gets_one_line_and_its_code() {
    let scratch = Scratch::new("mediator");
    let (key_a, _) = keygen(&scratch, "a.pem");
    let (_, hex_b) = keygen(&scratch, "b.pem");

    // A mediator process that went down.
    let mediator = Mediator::start();
    let addr = mediator.addr();
    drop(mediator);
    let out = run(pipe(&key_a, &hex_b, &addr).arg("-q"), b"", LIMIT);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(one_error_line(&out).contains("unreachable"), "{out:?}");

    // A port nobody ever listened on; and progress stays silent for a refused connection.
    let refused = format!("127.0.0.1:{}", closed_port());
    let out = run(&mut pipe(&key_a, &hex_b, &refused), b"", LIMIT);
    assert_eq!(out.code, Some(3), "{out:?}");
    one_error_line(&out);

    // A listener that accepts and never answers: bounded by --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let out = run(
        pipe(&key_a, &hex_b, &silent_addr).args(["-q", "--timeout", "1s"]),
        b"",
        LIMIT,
    );
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(one_error_line(&out).contains("did not answer"), "{out:?}");

    // A name that does not resolve.
    let out = run(
        &mut pipe(&key_a, &hex_b, "no-such-host.invalid:7777"),
        b"",
        LIMIT,
    );
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(one_error_line(&out).contains("cannot resolve"), "{out:?}");
}

#[test]
fn keygen_and_pubkey_round_trip() {
    let scratch = Scratch::new("keys");
    let (file, hex) = keygen(&scratch, "id.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pubkey = |path: &std::path::Path| {
        let out = run(p2psc().arg("pubkey").arg(path), b"", LIMIT);
        assert_eq!(out.code, Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(pubkey(&file), hex);

    // Never overwritten by accident; replaced with --force.
    let again = run(p2psc().args(["keygen", "--out"]).arg(&file), b"", LIMIT);
    assert_eq!(again.code, Some(2), "{again:?}");
    assert!(one_error_line(&again).contains("exists"), "{again:?}");
    assert_eq!(pubkey(&file), hex);
    let forced = run(
        p2psc()
            .args(["-q", "keygen", "--force", "--out"])
            .arg(&file),
        b"",
        LIMIT,
    );
    assert_eq!(forced.code, Some(0), "{forced:?}");
    let new_hex = String::from_utf8(forced.stdout).unwrap().trim().to_owned();
    assert_ne!(new_hex, hex);
    assert_eq!(pubkey(&file), new_hex);

    // The firmware's seed derives the same public key (checked by p2psc's own derivation).
    let seed = run(p2psc().arg("seed").arg(&file), b"", LIMIT);
    let seed = String::from_utf8(seed.stdout).unwrap();
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&seed.trim()[2 * i..2 * i + 2], 16).unwrap();
    }
    let derived = p2psc::identity::Keypair::from_seed(&bytes).public_key();
    assert_eq!(derived.to_hex(), new_hex);

    openssl_reads(&scratch, &file, &new_hex, pubkey);
}

/// OpenSSL reads the key file, and its public-key PEM gives the same key back.
fn openssl_reads(
    scratch: &Scratch,
    file: &std::path::Path,
    hex: &str,
    pubkey: impl Fn(&std::path::Path) -> String,
) {
    let text = Command::new("openssl")
        .args(["pkey", "-noout", "-text", "-in"])
        .arg(file)
        .output();
    let Ok(text) = text else {
        eprintln!("openssl is not installed: skipping the OpenSSL checks");
        return;
    };
    assert!(text.status.success(), "{text:?}");
    assert!(String::from_utf8_lossy(&text.stdout).contains("ED25519 Private-Key"));
    let public = scratch.path("id.pub.pem");
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(file)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(pubkey(&public), hex);
}

/// Files that are not usable private keys, each with a word its error line must contain.
fn bad_key_files(scratch: &Scratch) -> Vec<(std::path::PathBuf, &'static str)> {
    let fixtures = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"));
    let garbage = scratch.path("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let binary = scratch.path("binary.pem");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    vec![
        (scratch.path("missing.pem"), "No such file"),
        (scratch.path(""), "not a regular file"),
        (garbage, "not a PEM private key"),
        (binary, "not text"),
        (fixtures.join("alice.pub.pem"), "holds a public key"),
        (fixtures.join("alice.encrypted.pem"), "encrypted"),
        (fixtures.join("rsa.pem"), "not an Ed25519 key"),
    ]
}

#[test]
fn bad_input_gets_one_line_and_its_code() {
    let scratch = Scratch::new("badinput");
    let (key, hex) = keygen(&scratch, "a.pem");
    let mediator = format!("127.0.0.1:{}", closed_port());
    for (file, says) in bad_key_files(&scratch) {
        let out = run(&mut pipe(&file, &hex, &mediator), b"", LIMIT);
        assert_eq!(out.code, Some(2), "{file:?}: {out:?}");
        assert!(one_error_line(&out).contains(says), "{file:?}: {out:?}");
        if says != "holds a public key" {
            let out = run(p2psc().arg("pubkey").arg(&file), b"", LIMIT);
            assert_eq!(out.code, Some(2), "pubkey {file:?}: {out:?}");
            one_error_line(&out);
        }
    }
    let short = &hex[1..];
    let not_hex = format!("{}zz", &hex[2..]);
    // (--peer, --mediator, more arguments), and what the line must say.
    let usage: [(&str, &str, &[&str], &str); 6] = [
        ("abc", &mediator, &[], "not 64 hex digits (3 characters)"),
        (short, &mediator, &[], "not 64 hex digits (63 characters)"),
        (&not_hex, &mediator, &[], "not 64 hex digits"),
        (&hex, "no-port.example", &[], "expected HOST:PORT"),
        (&hex, &mediator, &["--timeout", "soon"], "500ms"),
        (&hex, &mediator, &["--port", "70000"], "--port"),
    ];
    for (peer, mediator, more, says) in usage {
        let out = run(pipe(&key, peer, mediator).args(more), b"", LIMIT);
        assert_eq!(out.code, Some(1), "{peer} {mediator} {more:?}: {out:?}");
        assert!(one_error_line(&out).contains(says), "{out:?}");
    }
    // A --port that another socket holds (without SO_REUSEPORT, so it cannot be shared).
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        pipe(&key, &hex, &mediator).args(["--port", &port]),
        b"",
        LIMIT,
    );
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(one_error_line(&out).contains("in use"), "{out:?}");
    let out = run(p2psc().args(["pipe", "--peer", &hex]), b"", LIMIT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(one_error_line(&out).contains("--key"), "{out:?}");
}

/// `forward` with its key, a peer and the given arguments.
fn forward(key: &std::path::Path, peer: &str, more: &[&str]) -> Command {
    let mut command = p2psc();
    command
        .args(["forward", "--key"])
        .arg(key)
        .args(["--peer", peer])
        .args(more);
    command
}

#[test]
fn forward_reports_bad_input_in_one_line_with_its_code() {
    let scratch = Scratch::new("forwardbad");
    let (key, hex) = keygen(&scratch, "a.pem");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let down = format!("127.0.0.1:{}", closed_port());
    let cases: [(&[&str], i32, &str); 3] = [
        (
            &["--listen", &port, "--mediator", &down],
            8,
            "cannot listen on 127.0.0.1:",
        ),
        (
            &["--listen", "0", "--mediator", "no-such-host.invalid:7777"],
            3,
            "cannot resolve mediator",
        ),
        // The --to end stops on its mediator's failures (a supervisor restarts it).
        (&["--to", "22", "--mediator", &down], 3, "unreachable"),
    ];
    for (more, code, says) in cases {
        let out = run(forward(&key, &hex, more).arg("-q"), b"", LIMIT);
        assert_eq!(out.code, Some(code), "{more:?}: {out:?}");
        assert!(one_error_line(&out).contains(says), "{more:?}: {out:?}");
    }
}
