//! The demo scenario (`cargo run -p host-sim`) is deterministic: one seed, one timeline.

use host_sim::scenario::{self, Scenario};

#[test]
fn demo_timeline_is_identical_across_runs_with_one_seed() {
    let mut s = Scenario::home_routers(1);
    s.trace = true;
    let (r1, r2) = (scenario::run(&s), scenario::run(&s));
    assert_eq!(r1.timeline(true), r2.timeline(true));
    assert_eq!(r1.mermaid(), r2.mermaid());
    assert_eq!(r1.events, r2.events);
    assert_eq!(r1.trace, r2.trace);
    assert!(r1.connected());
    let text = r1.timeline(false);
    for needle in [
        "registered with the mediator",
        "pair matched",
        "SYN to",
        "let in (hole open)",
        "TCP established",
        "peer authenticated",
        "received \"HELLO FROM A\"",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from\n{text}");
    }
    assert!(r1.mermaid().starts_with("sequenceDiagram"));
}
