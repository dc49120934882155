//! What happened, when: the events of one simulated run, rendered as text or as a mermaid sequence diagram.
//!
//! Every actor pushes into one shared [`Log`] as things happen (peers through
//! `p2psc::net::connect_observed`, the mediator after each poll, the NATs and links as they handle
//! packets), so events at the same virtual instant appear in causal order.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::rc::Rc;

use embassy_time::{Duration, Instant};
use p2psc::connector::ConnectEvent;

use crate::mediator::MediatorEvent;
use crate::nat::{NatEvent, SynVerdict};

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Peer A (starts first by default, so the mediator makes it the leader).
    A,
    /// Peer B.
    B,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::A => "A",
            Side::B => "B",
        })
    }
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A peer.
    Peer(Side),
    /// The mediator.
    Mediator,
    /// A NAT router (by name).
    Nat(&'static str),
    /// A link or router of the network (by name).
    Net(String),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Peer(s) => write!(f, "peer {s}"),
            Who::Mediator => f.write_str("mediator"),
            Who::Nat(n) => f.write_str(n),
            Who::Net(n) => f.write_str(n),
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A peer called `connect`.
    Start {
        /// The mediator it registers with.
        mediator: String,
    },
    /// Progress of a peer's connector.
    Connect(ConnectEvent),
    /// A peer's `connect` failed.
    Failed(p2psc::Error),
    /// A peer sent application data.
    Sent(String),
    /// A peer received application data.
    Received(String),
    /// The mediator did something.
    Mediator(MediatorEvent),
    /// A NAT decided something.
    Nat(NatEvent),
    /// A packet was lost on a link.
    Lost(String),
    /// A packet was dropped by the simulation's fault injection.
    Injected(String),
    /// A router had no route.
    NoRoute(String),
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub at: Instant,
    /// Who.
    pub who: Who,
    /// What.
    pub what: What,
}

impl Event {
    /// Whether the event belongs in the short timeline (the rest is detail: dropped retransmissions,
    /// losses of non-SYN packets…).
    pub fn is_key(&self) -> bool {
        !matches!(
            &self.what,
            What::Nat(NatEvent::Dropped { .. })
                | What::Nat(NatEvent::Syn {
                    ack: true,
                    verdict: SynVerdict::Session,
                    ..
                })
                | What::Mediator(MediatorEvent::Accepted(_))
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// Milliseconds since the start of the run, for printing.
pub fn at_ms(at: Instant) -> f64 {
    ms(at.duration_since(Instant::from_ticks(0)))
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            What::Start { mediator } => {
                write!(f, "connect(): registering with mediator {mediator}")
            }
            What::Connect(e) => write!(f, "{e}"),
            What::Failed(e) => write!(f, "connect() failed: {e} ({e:?})"),
            What::Sent(s) => write!(f, "sent {s:?}"),
            What::Received(s) => write!(f, "received {s:?}"),
            What::Mediator(e) => match e {
                MediatorEvent::Accepted(o) => write!(f, "connection from {o}"),
                MediatorEvent::Probed(o) => write!(f, "probe from {o}"),
                MediatorEvent::Verified {
                    observed,
                    rtt_ms,
                    mapping,
                    ..
                } => write!(
                    f,
                    "verified registration from {observed} (RTT {rtt_ms} ms, mapping {mapping:?})"
                ),
                MediatorEvent::Matched => f.write_str("pair matched: Match sent to both"),
                MediatorEvent::Aborted(r) => write!(f, "aborted a session: {r}"),
                MediatorEvent::RelayJoined => {
                    f.write_str("relay joined: Relayed sent to both, spliced")
                }
                MediatorEvent::RelayEnded { end, bytes } => {
                    write!(f, "relay ended ({end:?}) after {bytes} bytes")
                }
            },
            What::Nat(e) => e.fmt(f),
            What::Lost(p) => write!(f, "lost {p}"),
            What::Injected(p) => write!(f, "fault injection dropped {p}"),
            What::NoRoute(p) => write!(f, "no route for {p}"),
        }
    }
}

/// The shared event log of a run. Cloning gives another handle.
#[derive(Debug, Clone, Default)]
pub struct Log(Rc<RefCell<Vec<Event>>>);

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// Record `what` by `who`, now.
    pub fn push(&self, who: Who, what: What) {
        self.0.borrow_mut().push(Event {
            at: Instant::now(),
            who,
            what,
        });
    }

    /// Everything so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.borrow().clone()
    }
}

/// Render events as text, one per line: time in ms, actor, what.
pub fn render(events: &[Event], all: bool) -> String {
    let mut out = String::new();
    for e in events.iter().filter(|e| all || e.is_key()) {
        let _ = writeln!(
            out,
            "{:>9.1} ms  {:<10} {}",
            at_ms(e.at),
            e.who.to_string(),
            e.what
        );
    }
    out
}

/// A mermaid `sequenceDiagram` of the key events: peers, their NATs and the mediator as participants.
/// Kept small: registration, match, SYNs, NAT verdicts on SYNs, established/authenticated, data.
pub fn mermaid(events: &[Event], nat_names: &[&'static str]) -> String {
    let mut out = String::from("sequenceDiagram\n    participant A as peer A\n");
    let nat_a = nat_names.first().copied();
    let nat_b = nat_names.get(1).copied().or(nat_a);
    if let Some(n) = nat_a {
        let _ = writeln!(out, "    participant {} as {n}", id(n));
    }
    out.push_str("    participant M as mediator\n");
    if let Some(n) = nat_b.filter(|b| Some(*b) != nat_a) {
        let _ = writeln!(out, "    participant {} as {n}", id(n));
    }
    out.push_str("    participant B as peer B\n");
    let peer = |s: Side| if s == Side::A { "A" } else { "B" };
    let other = |s: Side| if s == Side::A { "B" } else { "A" };
    let nat_of = |s: Side| match s {
        Side::A => nat_a,
        Side::B => nat_b,
    };
    for e in events {
        let t = at_ms(e.at);
        let line = match (&e.who, &e.what) {
            (Who::Peer(s), What::Connect(ConnectEvent::Challenged(_))) => {
                format!("{}->>M: Hello, Proof ({t:.0} ms)", peer(*s))
            }
            (Who::Mediator, What::Mediator(MediatorEvent::Matched)) => {
                format!("M-->>A: Match ({t:.0} ms)\nM-->>B: Match")
            }
            (Who::Peer(s), What::Connect(ConnectEvent::Dialing(_, n))) => {
                let to = nat_of(if *s == Side::A { Side::B } else { Side::A })
                    .map(id)
                    .unwrap_or_else(|| other(*s).into());
                format!("{}->>{to}: SYN #{n} ({t:.0} ms)", peer(*s))
            }
            (
                Who::Nat(n),
                What::Nat(NatEvent::Syn {
                    ack: false,
                    verdict,
                    ..
                }),
            ) => {
                let v = match verdict {
                    SynVerdict::Session => "SYN let in: hole open",
                    SynVerdict::Admitted(_) => "SYN admitted by filter",
                    SynVerdict::Conflict => "SYN dropped: port conflict",
                    SynVerdict::Dropped => "SYN dropped",
                    SynVerdict::Reset => "SYN answered RST",
                    SynVerdict::Icmp => "SYN answered ICMP",
                };
                format!("Note over {}: {v} ({t:.0} ms)", id(n))
            }
            (Who::Nat(n), What::Nat(NatEvent::Hairpin { looped, .. })) => {
                format!(
                    "Note over {}: hairpin {} ({t:.0} ms)",
                    id(n),
                    if *looped { "looped back" } else { "refused" }
                )
            }
            (Who::Peer(s), What::Connect(ConnectEvent::Established(_))) => {
                format!("Note over {}: TCP established ({t:.0} ms)", peer(*s))
            }
            (Who::Peer(s), What::Connect(ConnectEvent::Authenticated(_))) => {
                format!("Note over {}: authenticated ({t:.0} ms)", peer(*s))
            }
            (Who::Peer(s), What::Failed(err)) => {
                format!("Note over {}: failed: {err} ({t:.0} ms)", peer(*s))
            }
            (Who::Peer(s), What::Sent(_)) => {
                format!("{}->>{}: data ({t:.0} ms)", peer(*s), other(*s))
            }
            _ => continue,
        };
        for l in line.lines() {
            let _ = writeln!(out, "    {l}");
        }
    }
    out
}

/// A mermaid-safe participant id for a name.
fn id(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).collect()
}
