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

/// Two symmetric NATs (`host-sim --nat-a symmetric --nat-b symmetric`): both probes see a dependent
/// mapping, the pair is relayed at once, in theory's time; home routers probe independent and punch.
#[test]
fn symmetric_nats_are_relayed_at_once_home_routers_punch() {
    use host_sim::mediator::MediatorEvent;
    use host_sim::theory;
    use host_sim::timeline::What;
    use p2psc::connector::Path;
    use p2psc::wire::Mapping;

    let mappings = |r: &scenario::Report| -> Vec<Mapping> {
        let verified = r.events.iter().filter_map(|e| match &e.what {
            What::Mediator(MediatorEvent::Verified { mapping, .. }) => Some(*mapping),
            _ => None,
        });
        verified.collect()
    };
    let r = scenario::run(&Scenario::symmetric_nats(1));
    assert!(r.connected());
    assert_eq!(r.path, Some(Path::Relayed));
    assert_eq!(mappings(&r), [Mapping::Dependent, Mapping::Dependent]);
    // The limit itself, to the simulator's tick of rounding.
    let setup = r.setup.expect("a set-up time");
    let limit = theory::relay_setup(r.mediator_rtt);
    assert!(
        setup >= limit && setup <= limit + embassy_time::Duration::from_millis(1),
        "relayed set-up {setup:?}, theory {limit:?}"
    );
    assert!(r.timeline(false).contains("relay joined"));

    let r = scenario::run(&Scenario::home_routers(1));
    assert_eq!(r.path, Some(Path::Direct));
    assert_eq!(mappings(&r), [Mapping::Independent, Mapping::Independent]);
}
