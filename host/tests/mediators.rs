//! Several mediators, with real processes: three `p2psc-mediator`s on loopback ports and two `p2psc`
//! tools that list them (in different orders, one as a comma list, one as repeated options). The
//! pair's first mediator in its ranking (protocol §13) dies after one peer registered there and before
//! the other comes: both end on the second of the ranking and connect; the third sees neither.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use p2psc::identity::PublicKey;
use p2psc::proto::rendezvous::{MediatorId, Pair};
use support::*;

const LIMIT: Duration = Duration::from_secs(60);

/// The tag a mediator's debug log gives a registration of `key` ("verified … key=…").
fn verified(key: &str) -> String {
    format!("key={}", PublicKey::from_hex(key).unwrap())
}

#[test]
fn when_the_pairs_first_mediator_dies_both_peers_meet_on_the_second() {
    let scratch = Scratch::new("mediators");
    let (key_a, hex_a) = keygen(&scratch, "a.pem");
    let (key_b, hex_b) = keygen(&scratch, "b.pem");
    let mut mediators: Vec<Mediator> = (0..3).map(|_| Mediator::start_logging("debug")).collect();
    let addrs: Vec<SocketAddr> = mediators.iter().map(|m| m.addr).collect();
    let pair = Pair::new(
        PublicKey::from_hex(&hex_a).unwrap(),
        PublicKey::from_hex(&hex_b).unwrap(),
    );
    let ranking: Vec<usize> = pair.rank(&addrs, |a| MediatorId::new(*a)).collect();
    let (first, second, third) = (ranking[0], ranking[1], ranking[2]);

    // A lists them in order, as one comma list; B in reverse, one option each.
    let list: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    let (to_b, to_a) = (pattern(256 << 10, 3), pattern(128 << 10, 4));
    let a = feed(
        p2psc().arg("pipe").arg("--key").arg(&key_a).args([
            "--peer",
            &hex_b,
            "--mediator",
            &list.join(","),
        ]),
        to_b.clone(),
    );
    assert!(
        mediators[first]
            .running
            .stderr
            .saw(&verified(&hex_a), LIMIT),
        "A registers with the first mediator of the ranking"
    );
    // The first mediator dies (SIGKILL): A's connection closes before any Match.
    let dead = mediators.remove(first);
    drop(dead);
    let second = if second > first { second - 1 } else { second };
    let third = if third > first { third - 1 } else { third };
    assert!(
        mediators[second]
            .running
            .stderr
            .saw(&verified(&hex_a), LIMIT),
        "A moves on to the second and registers again"
    );

    let mut b = p2psc();
    b.arg("pipe")
        .arg("--key")
        .arg(&key_b)
        .args(["--peer", &hex_a]);
    for addr in list.iter().rev() {
        b.args(["--mediator", addr]);
    }
    let b = feed(&mut b, to_a.clone());
    let (a, b) = (a.finish(LIMIT), b.finish(LIMIT));
    assert_eq!((a.code, b.code), (Some(0), Some(0)), "A: {a:?}\nB: {b:?}");
    assert!(a.stdout == to_a, "A received other bytes: {a:?}");
    assert!(b.stdout == to_b, "B received other bytes: {b:?}");
    // A saw its mediator close and moved on; B found the first refused and moved on.
    assert!(
        a.stderr
            .contains("mediator closed the connection; trying mediator 2 of the ranking"),
        "{a:?}"
    );
    assert!(
        b.stderr
            .contains("mediator unreachable; trying mediator 2 of the ranking"),
        "{b:?}"
    );
    assert!(
        mediators[second]
            .running
            .stderr
            .saw(&verified(&hex_b), Duration::from_secs(5)),
        "B registered with the second mediator"
    );
    let log = &mut mediators[third].running.stderr;
    assert!(
        !log.saw("verified", Duration::from_millis(200)),
        "nobody went to the third"
    );
}
