//! A NAT router modelled on RFC 4787 (behavioural requirements for NATs) and RFC 5382 (for TCP).
//!
//! The model keeps two tables, as the RFCs describe them:
//!
//! - **Mappings** (RFC 4787 §4.1): an internal endpoint `X:x`, when it sends to a remote endpoint
//!   `Y:y`, gets an external port `x'` on the NAT's public address. Whether a later packet to another
//!   remote reuses that mapping is the [`Mapping`] behaviour: endpoint-independent (any remote),
//!   address-dependent (same remote address) or address-and-port-dependent (same remote endpoint).
//!   A new mapping's external port comes from the [`Allocation`] policy (§4.2.1): preserve `x`, take the
//!   next port of a counter, or a random one. An external port belongs to one internal endpoint at a
//!   time (no "port overloading", §4.2.2), but that endpoint's mappings may share it: with port
//!   preservation, its mappings to different remotes all use `x' = x`, which is what Linux
//!   `masquerade` does (its uniqueness is per 5-tuple).
//! - **Sessions**: one per (internal endpoint, remote endpoint) pair that has exchanged packets, bound to
//!   an external port, like a conntrack entry. Packets of a session pass both ways. A session starts
//!   with an outbound packet (on the mapping chosen as above) or with an inbound packet that the
//!   [`Filtering`] behaviour admits (§5): endpoint-independent filtering admits any remote to a port that
//!   has a mapping, address-dependent filtering a remote whose *address* the internal endpoint has sent
//!   to from that port, address-and-port-dependent filtering only remotes with a session (so nothing new).
//!   An admitted packet whose internal endpoint already has a session with that remote on *another*
//!   external port is dropped: its reply could not leave from the port it came in on (Linux drops it
//!   as a conntrack clash).
//!
//! An inbound SYN that no session or filter lets in is **unsolicited** (RFC 5382 §5): it is dropped,
//! answered with a RST from the NAT (what a Linux router without a firewall does: its own stack finds
//! no socket), or answered with ICMP port unreachable (RFC 5382 REQ-4's suggestion). Other unsolicited
//! segments are dropped. ICMP errors about a session's segment are translated to the inside host
//! (RFC 5508 §4.2).
//!
//! **Hairpinning** (RFC 4787 §6, RFC 5382 §7.2): a packet from inside to the NAT's own public address is
//! translated out (source becomes the sender's external endpoint, REQ-9) and back in through the
//! filter, to the internal endpoint that owns the destination port; with hairpinning off it is dropped.
//!
//! **Timeouts** (RFC 4787 §4.3, RFC 5382 §5): a session, and a mapping with no session, expires after
//! `timeout` without packets in either direction.
//!
//! **TCP tracking** ([`Tracking`]). Real NAT routers are mostly Linux, and Linux NATs a packet only if
//! conntrack files it under an entry. With [`Tracking::Linux`] (the default of both presets) each
//! session is such an entry and every TCP segment goes through [`crate::conntrack`] first: the
//! session follows TCP's states and both directions' sequence windows, and a segment conntrack finds
//! INVALID is not translated. Going out, it leaves with its private source address and is lost (the
//! next router drops it, [`InvalidFate::Lost`]); coming in, a router with a firewall drops it and one
//! without hands it to its own stack, which answers with a RST ([`InvalidFate::Reset`]). A RST that is
//! a session's only reply deletes it at once; a RST after a reply leaves it in CLOSE for 10 s, where a
//! new SYN from the side that reset re-opens it, one from the other side is INVALID. A session's timeout
//! is conntrack's for its state (SYN_SENT 120 s, CLOSE 10 s, …), capped at `timeout`.
//!
//! With [`Tracking::None`] the model is the RFCs' alone: every segment of a session passes. A RST is
//! then tracked only if [`NatConfig::rst_ends_session`] is set: a RST that passes through a session
//! (either way) ends it. Otherwise the model keeps a session until it idles out, so a reset punch
//! attempt retried from the same port finds its mapping.
//!
//! [`NatConfig::linux_no_firewall`] is the router the TAP lab's `port-preserving-rst` scenario builds
//! with nftables: a SYN that reaches it before its own host's SYN went out is reset by the router's own
//! stack, and that RST, passing back through the other router, deletes the other side's session too
//! (it was that session's only reply).
//! Each router therefore holds a usable session for one round trip after its host's SYN: both SYNs
//! must leave within one router-to-router one-way delay of each other.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use embassy_time::{Duration, Instant};

use crate::conntrack::{Dir, TcpState, TcpTrack, Verdict};
use crate::packet::{self, Kind, Tcp};
use crate::rng::Rng;

/// Mapping behaviour (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mapping {
    /// Endpoint-independent: one external port per internal endpoint, whatever the remote.
    #[value(name = "eim")]
    EndpointIndependent,
    /// Address-dependent: a new mapping for each remote address.
    #[value(name = "adm")]
    AddressDependent,
    /// Address-and-port-dependent ("symmetric"): a new mapping for each remote endpoint.
    #[value(name = "apdm")]
    AddressPortDependent,
}

/// External port of a new mapping (RFC 4787 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Allocation {
    /// The internal port, if no other internal endpoint holds it (else sequential).
    #[value(name = "preserve")]
    Preserving,
    /// The next free port after the last one allocated.
    #[value(name = "seq")]
    Sequential,
    /// A random free port.
    #[value(name = "random")]
    Random,
}

/// Filtering behaviour (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Filtering {
    /// Endpoint-independent ("full cone"): any remote may send to a mapped port.
    #[value(name = "eif")]
    EndpointIndependent,
    /// Address-dependent ("restricted cone"): remotes at an address the internal endpoint sent to.
    #[value(name = "adf")]
    AddressDependent,
    /// Address-and-port-dependent ("port-restricted"): only remote endpoints it sent to.
    #[value(name = "apdf")]
    AddressPortDependent,
}

/// What the NAT does with an unsolicited inbound SYN (RFC 5382 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Unsolicited {
    /// Drop it silently (a home router's firewall).
    Drop,
    /// Answer with a TCP RST (a Linux router with no firewall: its own stack refuses).
    Rst,
    /// Answer with ICMP port unreachable.
    Icmp,
}

/// How much of TCP the NAT tracks ([`crate::conntrack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Tracking {
    /// Endpoints only, as RFC 4787 and RFC 5382 describe a NAT: every segment of a session passes;
    /// a RST ends the session only with [`NatConfig::rst_ends_session`].
    None,
    /// Linux conntrack (`nf_conntrack_tcp_be_liberal = 0`): each session follows TCP's states and
    /// sequence windows; a segment out of window or out of place is INVALID and not NATted.
    Linux,
}

/// A NAT's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatConfig {
    /// Mapping behaviour.
    pub mapping: Mapping,
    /// Port allocation.
    pub allocation: Allocation,
    /// Filtering behaviour.
    pub filtering: Filtering,
    /// Unsolicited-SYN behaviour.
    pub unsolicited: Unsolicited,
    /// Whether packets from inside to the public address are looped back in.
    pub hairpin: bool,
    /// Idle time after which a session or mapping expires.
    pub timeout: Duration,
    /// Without tracking: a RST passing through a session ends it; otherwise sessions only idle out.
    /// (With [`Tracking::Linux`] conntrack decides what a RST does.)
    pub rst_ends_session: bool,
    /// TCP tracking.
    pub tracking: Tracking,
}

impl NatConfig {
    /// The typical home router: Linux `masquerade` (port-preserving, endpoint-independent mapping)
    /// behind a stateful firewall that admits only replies (address-and-port-dependent filtering) and
    /// drops the rest; hairpinning on; RFC 5382 REQ-5's established-connection timeout (2 h 4 min).
    pub const fn home_router() -> NatConfig {
        NatConfig {
            mapping: Mapping::EndpointIndependent,
            allocation: Allocation::Preserving,
            filtering: Filtering::AddressPortDependent,
            unsolicited: Unsolicited::Drop,
            hairpin: true,
            timeout: Duration::from_secs(7440),
            rst_ends_session: false,
            tracking: Tracking::Linux,
        }
    }

    /// A Linux router doing plain `masquerade` with no firewall (the TAP lab's `port-preserving-rst`):
    /// port-preserving, endpoint-independent mapping; only conntrack entries let packets in (APDF); its
    /// own stack answers an unsolicited SYN (and an INVALID segment) with RST; and conntrack deletes an
    /// entry whose only reply was a RST.
    pub const fn linux_no_firewall() -> NatConfig {
        NatConfig {
            unsolicited: Unsolicited::Rst,
            rst_ends_session: true,
            ..NatConfig::home_router()
        }
    }

    /// Short label, e.g. `EIM/preserve/APDF/drop`, with `/untracked` without conntrack (and
    /// `+rst-ends` if a RST then ends a session).
    pub fn label(&self) -> String {
        let tracking = match (self.tracking, self.rst_ends_session) {
            (Tracking::Linux, _) => "",
            (Tracking::None, false) => "/untracked",
            (Tracking::None, true) => "/untracked+rst-ends",
        };
        format!(
            "{}/{}/{}/{}{tracking}",
            self.mapping, self.allocation, self.filtering, self.unsolicited,
        )
    }
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig::home_router()
    }
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mapping::EndpointIndependent => "EIM",
            Mapping::AddressDependent => "ADM",
            Mapping::AddressPortDependent => "APDM",
        })
    }
}

impl fmt::Display for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Allocation::Preserving => "preserve",
            Allocation::Sequential => "seq",
            Allocation::Random => "random",
        })
    }
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filtering::EndpointIndependent => "EIF",
            Filtering::AddressDependent => "ADF",
            Filtering::AddressPortDependent => "APDF",
        })
    }
}

impl fmt::Display for Unsolicited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unsolicited::Drop => "drop",
            Unsolicited::Rst => "rst",
            Unsolicited::Icmp => "icmp",
        })
    }
}

/// How a new mapping got its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortChoice {
    /// The internal port.
    Preserved,
    /// Preservation was asked for but another internal endpoint holds the port.
    PreservationFailed,
    /// Next of the counter.
    Sequential,
    /// Random.
    Random,
}

/// Why an inbound SYN was let in, or what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynVerdict {
    /// A session exists: the inside host sent to exactly this remote from this port.
    Session,
    /// No session, but the filter admits it (a new session starts).
    Admitted(Filtering),
    /// The filter admits it, but the inside host already talks to this remote from another port.
    Conflict,
    /// Unsolicited: dropped.
    Dropped,
    /// Unsolicited: answered with RST.
    Reset,
    /// Unsolicited: answered with ICMP port unreachable.
    Icmp,
}

/// A decision of the NAT, for timelines and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatEvent {
    /// A new mapping.
    MappingCreated {
        /// The internal endpoint.
        internal: SocketAddrV4,
        /// Its external endpoint.
        external: SocketAddrV4,
        /// The remote the first packet went to.
        remote: SocketAddrV4,
        /// How the port was chosen.
        choice: PortChoice,
    },
    /// A mapping idled out.
    MappingExpired {
        /// The internal endpoint.
        internal: SocketAddrV4,
        /// Its external endpoint.
        external: SocketAddrV4,
    },
    /// An inbound SYN (or SYN-ACK), and what became of it. `to` is the public endpoint it was sent to;
    /// `inside` where it went, if it was let in.
    Syn {
        /// Sender.
        from: SocketAddrV4,
        /// Destination (public).
        to: SocketAddrV4,
        /// Whether it carried ACK (a SYN-ACK).
        ack: bool,
        /// What happened.
        verdict: SynVerdict,
        /// Where it was forwarded.
        inside: Option<SocketAddrV4>,
    },
    /// A packet from inside to the public address.
    Hairpin {
        /// Sender (internal).
        from: SocketAddrV4,
        /// Destination (public).
        to: SocketAddrV4,
        /// Whether hairpinning is on.
        looped: bool,
    },
    /// Some other packet was dropped (an unsolicited non-SYN segment, an ICMP error with no session,
    /// a protocol the NAT does not translate).
    Dropped {
        /// The packet.
        summary: String,
        /// Why.
        why: &'static str,
    },
    /// Conntrack found a segment INVALID ([`crate::conntrack`]), so it was not NATted.
    Invalid {
        /// The segment, as it reached the NAT.
        summary: String,
        /// Whether it came from inside.
        outbound: bool,
        /// Conntrack's reason (the kernel's log message).
        why: &'static str,
        /// What became of it.
        fate: InvalidFate,
    },
}

/// What becomes of a segment conntrack found INVALID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidFate {
    /// Outbound: it leaves with its private source address, which the next router drops.
    Lost,
    /// Inbound: the firewall (`ct state established,related accept`, then drop) drops it.
    Dropped,
    /// Inbound, no firewall: it reaches the router's own stack, which answers with a RST.
    Reset,
}

impl fmt::Display for NatEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatEvent::MappingCreated {
                internal,
                external,
                remote,
                choice,
            } => {
                let how = match choice {
                    PortChoice::Preserved => "port preserved",
                    PortChoice::PreservationFailed => "port taken, next free",
                    PortChoice::Sequential => "sequential port",
                    PortChoice::Random => "random port",
                };
                write!(
                    f,
                    "new mapping {internal} -> {external} (to {remote}; {how})"
                )
            }
            NatEvent::MappingExpired { internal, external } => {
                write!(f, "mapping {internal} -> {external} expired")
            }
            NatEvent::Syn {
                from,
                to,
                ack,
                verdict,
                inside,
            } => {
                let what = if *ack { "SYN-ACK" } else { "SYN" };
                let inside = inside.map(|i| i.to_string()).unwrap_or_default();
                match verdict {
                    SynVerdict::Session => {
                        write!(f, "{what} {from} -> {to} let in (hole open) to {inside}")
                    }
                    SynVerdict::Admitted(filter) => {
                        write!(f, "{what} {from} -> {to} admitted by {filter} filter to {inside}")
                    }
                    SynVerdict::Conflict => write!(
                        f,
                        "{what} {from} -> {to} dropped: inside host already talks to {from} from another port"
                    ),
                    SynVerdict::Dropped => write!(f, "{what} {from} -> {to} unsolicited, dropped"),
                    SynVerdict::Reset => write!(f, "{what} {from} -> {to} unsolicited, answered RST"),
                    SynVerdict::Icmp => {
                        write!(f, "{what} {from} -> {to} unsolicited, answered ICMP port unreachable")
                    }
                }
            }
            NatEvent::Hairpin { from, to, looped } => {
                if *looped {
                    write!(f, "hairpin {from} -> {to}")
                } else {
                    write!(
                        f,
                        "hairpin {from} -> {to} refused (hairpinning off), dropped"
                    )
                }
            }
            NatEvent::Dropped { summary, why } => write!(f, "dropped {summary}: {why}"),
            NatEvent::Invalid {
                summary,
                outbound,
                why,
                fate,
            } => {
                let fate = match fate {
                    InvalidFate::Lost => "leaves un-NATted with its private source, lost",
                    InvalidFate::Dropped => "dropped by the firewall",
                    InvalidFate::Reset => "reaches the router's stack, answered RST",
                };
                let way = if *outbound { "outbound" } else { "inbound" };
                write!(f, "conntrack INVALID {way} {summary} ({why}): {fate}")
            }
        }
    }
}

/// Where a packet leaving the NAT goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Onto the LAN.
    Lan(Vec<u8>),
    /// Onto the WAN.
    Wan(Vec<u8>),
}

#[derive(Debug, Clone)]
struct MappingEntry {
    internal: SocketAddrV4,
    /// The remote part of the mapping key: none (EIM), an address (ADM) or an endpoint (APDM).
    key: (Option<Ipv4Addr>, Option<u16>),
    external: u16,
    last: Instant,
}

#[derive(Debug, Clone)]
struct SessionEntry {
    internal: SocketAddrV4,
    remote: SocketAddrV4,
    external: u16,
    /// When it idles out (each packet that refreshes it moves this on).
    expires: Instant,
    /// Whether a packet from inside opened it (then inside is conntrack's original direction).
    opened_inside: bool,
    /// Conntrack's TCP tracking of it, with [`Tracking::Linux`].
    track: Option<TcpTrack>,
}

/// What tracking made of a segment on a session.
enum Tracked {
    /// It passes (NATted).
    Pass,
    /// It passes, and the session ends with it.
    PassAndEnd,
    /// INVALID: not NATted.
    Invalid(&'static str),
    /// The session was deleted; look the segment up again.
    Reopen,
}

/// An inbound segment's session, or why it has none.
enum Inbound {
    /// Session `index`; why it let the segment in.
    Session(usize, SynVerdict),
    /// Refused before conntrack: unsolicited, or in conflict with another session.
    Refused(SynVerdict),
    /// Admitted by the filter, but conntrack cannot start an entry with it.
    Invalid(&'static str),
}

/// Lowest port the NAT allocates.
const PORT_MIN: u16 = 1024;

/// A NAT's translation state. Pure logic: the network hands it packets with the time, it returns the
/// packets to forward and records its decisions ([`Nat::take_events`]).
#[derive(Debug)]
pub struct Nat {
    config: NatConfig,
    public: Ipv4Addr,
    mappings: Vec<MappingEntry>,
    sessions: Vec<SessionEntry>,
    next_port: u16,
    rng: Rng,
    events: Vec<NatEvent>,
}

impl Nat {
    /// A NAT with public address `public`; `rng` draws random ports and the sequential counter's start.
    pub fn new(config: NatConfig, public: Ipv4Addr, mut rng: Rng) -> Nat {
        let next_port = rng.range(20000, 40000) as u16;
        Nat {
            config,
            public,
            mappings: Vec::new(),
            sessions: Vec::new(),
            next_port,
            rng,
            events: Vec::new(),
        }
    }

    /// Its behaviour.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// Its public address.
    pub fn public(&self) -> Ipv4Addr {
        self.public
    }

    /// Decisions since the last call.
    pub fn take_events(&mut self) -> Vec<NatEvent> {
        std::mem::take(&mut self.events)
    }

    /// The external endpoint of `internal`'s mapping towards `remote`, if one is live (for tests).
    pub fn external_for(
        &self,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        let key = self.key(remote);
        self.mappings
            .iter()
            .find(|m| m.internal == internal && m.key == key)
            .map(|m| SocketAddrV4::new(self.public, m.external))
    }

    /// The conntrack state of `internal`'s session with `remote`, if it has a tracked one (for tests).
    pub fn tcp_state(&self, internal: SocketAddrV4, remote: SocketAddrV4) -> Option<TcpState> {
        self.sessions
            .iter()
            .find(|s| s.internal == internal && s.remote == remote)
            .and_then(|s| s.track.as_ref())
            .map(|t| t.state())
    }

    fn key(&self, remote: SocketAddrV4) -> (Option<Ipv4Addr>, Option<u16>) {
        match self.config.mapping {
            Mapping::EndpointIndependent => (None, None),
            Mapping::AddressDependent => (Some(*remote.ip()), None),
            Mapping::AddressPortDependent => (Some(*remote.ip()), Some(remote.port())),
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.config.timeout;
        self.sessions.retain(|s| now < s.expires);
        let sessions = &self.sessions;
        let public = self.public;
        let events = &mut self.events;
        self.mappings.retain(|m| {
            let used = sessions
                .iter()
                .any(|s| s.internal == m.internal && s.external == m.external);
            let keep = used || now < m.last + timeout;
            if !keep {
                events.push(NatEvent::MappingExpired {
                    internal: m.internal,
                    external: SocketAddrV4::new(public, m.external),
                });
            }
            keep
        });
    }

    /// Whether `port` may be given to `internal`: no other internal endpoint holds it.
    fn port_free_for(&self, port: u16, internal: SocketAddrV4) -> bool {
        port >= PORT_MIN
            && !self
                .mappings
                .iter()
                .any(|m| m.external == port && m.internal != internal)
    }

    fn port_unused(&self, port: u16) -> bool {
        port >= PORT_MIN && !self.mappings.iter().any(|m| m.external == port)
    }

    fn allocate(&mut self, internal: SocketAddrV4) -> (u16, PortChoice) {
        match self.config.allocation {
            Allocation::Preserving if self.port_free_for(internal.port(), internal) => {
                (internal.port(), PortChoice::Preserved)
            }
            Allocation::Preserving => (self.sequential(), PortChoice::PreservationFailed),
            Allocation::Sequential => (self.sequential(), PortChoice::Sequential),
            Allocation::Random => loop {
                let p = self.rng.range(u64::from(PORT_MIN), 65535) as u16;
                if self.port_unused(p) {
                    break (p, PortChoice::Random);
                }
            },
        }
    }

    fn sequential(&mut self) -> u16 {
        loop {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { PORT_MIN } else { p + 1 };
            if self.port_unused(p) {
                return p;
            }
        }
    }

    /// The tracker of a new session whose first packet is `tcp`, or why conntrack refuses to start one.
    fn new_track(&self, tcp: &Tcp) -> Result<Option<TcpTrack>, &'static str> {
        match self.config.tracking {
            Tracking::None => Ok(None),
            Tracking::Linux => TcpTrack::new(tcp).map(Some),
        }
    }

    fn session(&self, internal: SocketAddrV4, remote: SocketAddrV4) -> Option<usize> {
        self.sessions
            .iter()
            .position(|s| s.internal == internal && s.remote == remote)
    }

    /// Open a session of `internal` with `remote` on `external`.
    fn open_session(
        &mut self,
        now: Instant,
        (internal, remote, external): (SocketAddrV4, SocketAddrV4, u16),
        opened_inside: bool,
        track: Option<TcpTrack>,
    ) -> usize {
        self.sessions.push(SessionEntry {
            internal,
            remote,
            external,
            expires: now + self.config.timeout,
            opened_inside,
            track,
        });
        self.touch_mapping(now, internal, external);
        self.sessions.len() - 1
    }

    /// The external port for a new session from `internal` to `remote`: its mapping's (created if
    /// needed).
    fn mapping_out(&mut self, now: Instant, internal: SocketAddrV4, remote: SocketAddrV4) -> u16 {
        let key = self.key(remote);
        if let Some(m) = self
            .mappings
            .iter_mut()
            .find(|m| m.internal == internal && m.key == key)
        {
            m.last = now;
            return m.external;
        }
        let (external, choice) = self.allocate(internal);
        self.mappings.push(MappingEntry {
            internal,
            key,
            external,
            last: now,
        });
        self.events.push(NatEvent::MappingCreated {
            internal,
            external: SocketAddrV4::new(self.public, external),
            remote,
            choice,
        });
        external
    }

    /// Track `tcp` on session `index` (`outbound`: it came from inside) and refresh the session.
    fn track(&mut self, now: Instant, index: usize, outbound: bool, tcp: &Tcp) -> Tracked {
        let max = self.config.timeout;
        let s = &mut self.sessions[index];
        let (internal, external) = (s.internal, s.external);
        let tracked = match s.track.as_mut() {
            None => {
                s.expires = now + max;
                let ends = tcp.rst && self.config.rst_ends_session;
                if ends {
                    Tracked::PassAndEnd
                } else {
                    Tracked::Pass
                }
            }
            Some(t) => {
                let dir = if s.opened_inside == outbound {
                    Dir::Original
                } else {
                    Dir::Reply
                };
                match t.packet(dir, tcp) {
                    Verdict::Accept { refresh } => {
                        if let Some(d) = refresh {
                            s.expires = now + d.min(max);
                        }
                        Tracked::Pass
                    }
                    Verdict::Ignore(_) => Tracked::Pass,
                    Verdict::Invalid(why) => Tracked::Invalid(why),
                    Verdict::Reopen => Tracked::Reopen,
                    Verdict::Kill => Tracked::PassAndEnd,
                }
            }
        };
        if !matches!(tracked, Tracked::Invalid(_)) {
            self.touch_mapping(now, internal, external);
        }
        tracked
    }

    /// The external port a segment from inside leaves from, tracking it on its session (opened if
    /// needed), or why conntrack found it INVALID.
    fn translate_out(&mut self, now: Instant, tcp: &Tcp) -> Result<u16, &'static str> {
        loop {
            let index = match self.session(tcp.src, tcp.dst) {
                Some(i) => i,
                None => {
                    let track = self.new_track(tcp)?;
                    let external = self.mapping_out(now, tcp.src, tcp.dst);
                    self.open_session(now, (tcp.src, tcp.dst, external), true, track)
                }
            };
            let external = self.sessions[index].external;
            match self.track(now, index, true, tcp) {
                Tracked::Pass => return Ok(external),
                Tracked::PassAndEnd => {
                    // The mapping stays until it idles out.
                    self.sessions.remove(index);
                    return Ok(external);
                }
                Tracked::Invalid(why) => return Err(why),
                Tracked::Reopen => {
                    self.sessions.remove(index);
                }
            }
        }
    }

    fn touch_mapping(&mut self, now: Instant, internal: SocketAddrV4, external: u16) {
        for m in self
            .mappings
            .iter_mut()
            .filter(|m| m.internal == internal && m.external == external)
        {
            m.last = now;
        }
    }

    /// Inbound lookup for `tcp` (from a remote to public port `tcp.dst.port()`): its session (opened if
    /// the filter admits it), or why not.
    fn find_in(&mut self, now: Instant, tcp: &Tcp) -> Inbound {
        let (remote, port) = (tcp.src, tcp.dst.port());
        if let Some(i) = self
            .sessions
            .iter()
            .position(|s| s.external == port && s.remote == remote)
        {
            return Inbound::Session(i, SynVerdict::Session);
        }
        let Some(internal) = self
            .mappings
            .iter()
            .find(|m| m.external == port)
            .map(|m| m.internal)
        else {
            return Inbound::Refused(SynVerdict::Dropped);
        };
        let admitted = match self.config.filtering {
            Filtering::EndpointIndependent => true,
            Filtering::AddressDependent => self.sessions.iter().any(|s| {
                s.external == port && s.internal == internal && s.remote.ip() == remote.ip()
            }),
            Filtering::AddressPortDependent => false,
        };
        if !admitted {
            return Inbound::Refused(SynVerdict::Dropped);
        }
        if self.session(internal, remote).is_some() {
            return Inbound::Refused(SynVerdict::Conflict);
        }
        match self.new_track(tcp) {
            Ok(track) => {
                let i = self.open_session(now, (internal, remote, port), false, track);
                Inbound::Session(i, SynVerdict::Admitted(self.config.filtering))
            }
            Err(why) => Inbound::Invalid(why),
        }
    }

    /// A packet from the LAN towards the WAN (or, addressed to the public address, a hairpin).
    pub fn outbound(&mut self, now: Instant, mut packet: Vec<u8>) -> Vec<Out> {
        self.expire(now);
        let tcp = match packet::decode(&packet) {
            Kind::Tcp(t) => t,
            other => {
                self.events.push(NatEvent::Dropped {
                    summary: packet::summary(&packet),
                    why: if matches!(other, Kind::IcmpUnreachable { .. }) {
                        "outbound ICMP not translated"
                    } else {
                        "not TCP"
                    },
                });
                return Vec::new();
            }
        };
        let external = match self.translate_out(now, &tcp) {
            Ok(external) => external,
            Err(why) => {
                self.events.push(NatEvent::Invalid {
                    summary: tcp.to_string(),
                    outbound: true,
                    why,
                    fate: InvalidFate::Lost,
                });
                return Vec::new();
            }
        };
        let src = SocketAddrV4::new(self.public, external);
        if *tcp.dst.ip() == self.public {
            self.events.push(NatEvent::Hairpin {
                from: tcp.src,
                to: tcp.dst,
                looped: self.config.hairpin,
            });
            if !self.config.hairpin {
                return Vec::new();
            }
            packet::rewrite_tcp(&mut packet, Some(src), None);
            let Kind::Tcp(translated) = packet::decode(&packet) else {
                return Vec::new();
            };
            return self.inbound_tcp(now, packet, translated, true);
        }
        packet::rewrite_tcp(&mut packet, Some(src), None);
        vec![Out::Wan(packet)]
    }

    /// A packet from the WAN addressed to the public address.
    pub fn inbound(&mut self, now: Instant, packet: Vec<u8>) -> Vec<Out> {
        self.expire(now);
        match packet::decode(&packet) {
            Kind::Tcp(tcp) => self.inbound_tcp(now, packet, tcp, false),
            Kind::IcmpUnreachable { about, .. } => {
                // The quoted segment went out from our public endpoint to `about.dst`.
                let session = self
                    .sessions
                    .iter()
                    .find(|s| s.external == about.src.port() && s.remote == about.dst)
                    .map(|s| s.internal);
                match session {
                    Some(internal) => {
                        let mut packet = packet;
                        packet::rewrite_icmp_for_inside(&mut packet, internal);
                        vec![Out::Lan(packet)]
                    }
                    None => {
                        self.events.push(NatEvent::Dropped {
                            summary: packet::summary(&packet),
                            why: "ICMP error matches no session",
                        });
                        Vec::new()
                    }
                }
            }
            Kind::Other | Kind::Arp { .. } => {
                self.events.push(NatEvent::Dropped {
                    summary: packet::summary(&packet),
                    why: "not TCP",
                });
                Vec::new()
            }
        }
    }

    fn inbound_tcp(
        &mut self,
        now: Instant,
        mut packet: Vec<u8>,
        tcp: Tcp,
        hairpin: bool,
    ) -> Vec<Out> {
        let (index, verdict) = loop {
            match self.find_in(now, &tcp) {
                Inbound::Session(i, verdict) => match self.track(now, i, false, &tcp) {
                    Tracked::Reopen => {
                        self.sessions.remove(i);
                    }
                    Tracked::Invalid(why) => return self.invalid_in(now, &tcp, why, hairpin),
                    Tracked::Pass => break (Some(i), verdict),
                    Tracked::PassAndEnd => break (None, verdict),
                },
                Inbound::Refused(verdict) => {
                    return self.refuse(now, &packet, &tcp, verdict, hairpin)
                }
                Inbound::Invalid(why) => return self.invalid_in(now, &tcp, why, hairpin),
            }
        };
        let inside = match index {
            Some(i) => self.sessions[i].internal,
            None => {
                // Ended by this segment: it still goes in (found again by endpoints, then removed).
                let i = self
                    .sessions
                    .iter()
                    .position(|s| s.external == tcp.dst.port() && s.remote == tcp.src)
                    .expect("the session that passed the segment");
                self.sessions.remove(i).internal
            }
        };
        if tcp.syn && !tcp.rst {
            self.events.push(NatEvent::Syn {
                from: tcp.src,
                to: tcp.dst,
                ack: tcp.ack,
                verdict,
                inside: Some(inside),
            });
        }
        packet::rewrite_tcp(&mut packet, None, Some(inside));
        vec![Out::Lan(packet)]
    }

    /// An inbound segment conntrack found INVALID: a firewall drops it; without one the router's own
    /// stack gets it (it is addressed to the router) and answers anything but a RST with a RST.
    fn invalid_in(
        &mut self,
        now: Instant,
        tcp: &Tcp,
        why: &'static str,
        hairpin: bool,
    ) -> Vec<Out> {
        let reset = self.config.unsolicited == Unsolicited::Rst;
        self.events.push(NatEvent::Invalid {
            summary: tcp.to_string(),
            outbound: false,
            why,
            fate: if reset {
                InvalidFate::Reset
            } else {
                InvalidFate::Dropped
            },
        });
        if !reset || tcp.rst {
            return Vec::new();
        }
        self.reply(now, packet::rst_for(tcp), hairpin)
    }

    /// An unsolicited (or conflicting) inbound segment: dropped, or a SYN answered as configured.
    fn refuse(
        &mut self,
        now: Instant,
        packet: &[u8],
        tcp: &Tcp,
        verdict: SynVerdict,
        hairpin: bool,
    ) -> Vec<Out> {
        if !tcp.is_bare_syn() {
            self.events.push(NatEvent::Dropped {
                summary: tcp.to_string(),
                why: if verdict == SynVerdict::Conflict {
                    "inside host already talks to the sender from another port"
                } else {
                    "unsolicited"
                },
            });
            return Vec::new();
        }
        let verdict = match (verdict, self.config.unsolicited) {
            (SynVerdict::Conflict, _) => SynVerdict::Conflict,
            (_, Unsolicited::Drop) => SynVerdict::Dropped,
            (_, Unsolicited::Rst) => SynVerdict::Reset,
            (_, Unsolicited::Icmp) => SynVerdict::Icmp,
        };
        self.events.push(NatEvent::Syn {
            from: tcp.src,
            to: tcp.dst,
            ack: false,
            verdict,
            inside: None,
        });
        let reply = match verdict {
            SynVerdict::Reset => Some(packet::rst_for(tcp)),
            SynVerdict::Icmp => packet::icmp_unreachable(self.public, packet),
            _ => None,
        };
        match reply {
            Some(r) => self.reply(now, r, hairpin),
            None => Vec::new(),
        }
    }

    /// A packet the router itself sends to the sender of an inbound one. A reply to a hairpinned
    /// packet goes back in through the NAT like any packet to the public address.
    fn reply(&mut self, now: Instant, reply: Vec<u8>, hairpin: bool) -> Vec<Out> {
        if !hairpin {
            return vec![Out::Wan(reply)];
        }
        match packet::decode(&reply) {
            Kind::Tcp(t) => self.inbound_tcp(now, reply, t, true),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpPacket, TcpSeqNumber};

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn seg(src: SocketAddrV4, dst: SocketAddrV4, syn: bool, ack: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 40];
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len(40);
            ip.set_hop_limit(64);
            ip.set_next_header(IpProtocol::Tcp);
            ip.set_src_addr(*src.ip());
            ip.set_dst_addr(*dst.ip());
            ip.fill_checksum();
        }
        let mut t = TcpPacket::new_unchecked(&mut buf[20..]);
        t.set_src_port(src.port());
        t.set_dst_port(dst.port());
        t.set_header_len(20);
        t.clear_flags();
        t.set_syn(syn);
        t.set_ack(ack);
        t.set_seq_number(TcpSeqNumber(100));
        t.set_window_len(1000);
        t.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
        buf
    }

    fn nat(
        mapping: Mapping,
        allocation: Allocation,
        filtering: Filtering,
        unsolicited: Unsolicited,
    ) -> Nat {
        let config = NatConfig {
            mapping,
            allocation,
            filtering,
            unsolicited,
            hairpin: false,
            timeout: Duration::from_secs(60),
            rst_ends_session: false,
            tracking: Tracking::None,
        };
        Nat::new(config, "198.51.100.1".parse().unwrap(), Rng::new(1))
    }

    fn out_src(outs: &[Out]) -> SocketAddrV4 {
        match &outs[0] {
            Out::Wan(p) => match packet::decode(p) {
                Kind::Tcp(t) => {
                    assert!(packet::checksums_ok(p));
                    t.src
                }
                _ => panic!(),
            },
            o => panic!("{o:?}"),
        }
    }

    const T0: Instant = Instant::from_ticks(0);
    const INSIDE: &str = "192.168.1.2:50000";
    const MEDIATOR: &str = "203.0.113.10:7777";
    const PEER: &str = "192.0.2.1:40000";

    #[test]
    fn eim_reuses_the_port_for_every_remote_and_apdm_does_not() {
        let mut n = nat(
            Mapping::EndpointIndependent,
            Allocation::Random,
            Filtering::AddressPortDependent,
            Unsolicited::Drop,
        );
        let a = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(MEDIATOR), true, false)));
        let b = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false)));
        assert_eq!(a, b);
        assert_ne!(a.port(), 50000);
        let mut n = nat(
            Mapping::AddressPortDependent,
            Allocation::Sequential,
            Filtering::AddressPortDependent,
            Unsolicited::Drop,
        );
        let a = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(MEDIATOR), true, false)));
        let b = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false)));
        assert_eq!(b.port(), a.port() + 1);
        // Port preservation keeps x' = x across an APDM NAT's mappings.
        let mut n = nat(
            Mapping::AddressPortDependent,
            Allocation::Preserving,
            Filtering::AddressPortDependent,
            Unsolicited::Drop,
        );
        let a = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(MEDIATOR), true, false)));
        let b = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false)));
        assert_eq!((a.port(), b.port()), (50000, 50000));
        // Another inside host asking for the same port gets another one.
        let c = out_src(&n.outbound(T0, seg(ep("192.168.1.3:50000"), ep(MEDIATOR), true, false)));
        assert_ne!(c.port(), 50000);
    }

    fn inbound_verdict(n: &mut Nat, from: &str, to_port: u16) -> (SynVerdict, Vec<Out>) {
        let to = SocketAddrV4::new(n.public, to_port);
        let outs = n.inbound(T0, seg(ep(from), to, true, false));
        let v = n
            .take_events()
            .into_iter()
            .rev()
            .find_map(|e| match e {
                NatEvent::Syn { verdict, .. } => Some(verdict),
                _ => None,
            })
            .unwrap();
        (v, outs)
    }

    #[test]
    fn filters_admit_what_the_rfc_says() {
        for (filtering, same_addr, any) in [
            (Filtering::EndpointIndependent, true, true),
            (Filtering::AddressDependent, true, false),
            (Filtering::AddressPortDependent, false, false),
        ] {
            let mut n = nat(
                Mapping::EndpointIndependent,
                Allocation::Preserving,
                filtering,
                Unsolicited::Drop,
            );
            n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false));
            // The exact remote is a session under every filter.
            assert_eq!(inbound_verdict(&mut n, PEER, 50000).0, SynVerdict::Session);
            let (v, outs) = inbound_verdict(&mut n, "192.0.2.1:40001", 50000);
            assert_eq!(
                matches!(v, SynVerdict::Admitted(_)),
                same_addr,
                "{filtering}"
            );
            assert_eq!(outs.len(), usize::from(same_addr));
            let (v, _) = inbound_verdict(&mut n, "203.0.113.99:1", 50000);
            assert_eq!(matches!(v, SynVerdict::Admitted(_)), any, "{filtering}");
            // No mapping at all: unsolicited.
            assert_eq!(inbound_verdict(&mut n, PEER, 9).0, SynVerdict::Dropped);
        }
    }

    #[test]
    fn unsolicited_syn_gets_rst_or_icmp() {
        let mut n = nat(
            Mapping::EndpointIndependent,
            Allocation::Preserving,
            Filtering::AddressPortDependent,
            Unsolicited::Rst,
        );
        let (v, outs) = inbound_verdict(&mut n, PEER, 50000);
        assert_eq!(v, SynVerdict::Reset);
        let Out::Wan(r) = &outs[0] else { panic!() };
        let Kind::Tcp(r) = packet::decode(r) else {
            panic!()
        };
        assert!(r.rst && r.ack);
        assert_eq!(r.dst, ep(PEER));
        let mut n = nat(
            Mapping::EndpointIndependent,
            Allocation::Preserving,
            Filtering::AddressPortDependent,
            Unsolicited::Icmp,
        );
        let (v, outs) = inbound_verdict(&mut n, PEER, 50000);
        assert_eq!(v, SynVerdict::Icmp);
        let Out::Wan(r) = &outs[0] else { panic!() };
        assert!(matches!(packet::decode(r), Kind::IcmpUnreachable { .. }));
    }

    #[test]
    fn without_conntrack_a_rst_ends_the_session_only_with_rst_ends_session() {
        let rst = |src: &str, dst: SocketAddrV4| {
            let mut p = seg(ep(src), dst, false, true);
            let mut t = TcpPacket::new_unchecked(&mut p[20..]);
            t.set_rst(true);
            t.fill_checksum(&IpAddress::Ipv4(*ep(src).ip()), &IpAddress::Ipv4(*dst.ip()));
            p
        };
        for tracked in [false, true] {
            let mut n = nat(
                Mapping::EndpointIndependent,
                Allocation::Preserving,
                Filtering::AddressPortDependent,
                Unsolicited::Rst,
            );
            n.config.rst_ends_session = tracked;
            // Our SYN opens the session; the peer's router answers RST, which comes back through it.
            n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false));
            assert_eq!(n.inbound(T0, rst(PEER, ep("198.51.100.1:50000"))).len(), 1);
            // The peer's own SYN now: let in only if the RST did not end the session.
            let (v, _) = inbound_verdict(&mut n, PEER, 50000);
            let expected = if tracked {
                SynVerdict::Reset
            } else {
                SynVerdict::Session
            };
            assert_eq!(v, expected, "tracked {tracked}");
            // A RST from inside ends it too; a new SYN from inside opens it again.
            n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false));
            n.outbound(T0, rst(INSIDE, ep(PEER)));
            assert_eq!(inbound_verdict(&mut n, PEER, 50000).0, expected);
            n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false));
            assert_eq!(inbound_verdict(&mut n, PEER, 50000).0, SynVerdict::Session);
        }
    }

    #[test]
    fn admitted_packet_conflicting_with_a_session_on_another_port_is_dropped() {
        let mut n = nat(
            Mapping::AddressPortDependent,
            Allocation::Sequential,
            Filtering::EndpointIndependent,
            Unsolicited::Drop,
        );
        let m = out_src(&n.outbound(T0, seg(ep(INSIDE), ep(MEDIATOR), true, false)));
        n.outbound(T0, seg(ep(INSIDE), ep(PEER), true, false));
        // The peer aims at the mediator's port; the inside host talks to it from the other port.
        assert_eq!(
            inbound_verdict(&mut n, PEER, m.port()).0,
            SynVerdict::Conflict
        );
        // Another port of the peer is fine (EIF).
        assert!(matches!(
            inbound_verdict(&mut n, "192.0.2.1:40001", m.port()).0,
            SynVerdict::Admitted(_)
        ));
    }

    #[test]
    fn mappings_expire_after_the_idle_timeout() {
        let mut n = nat(
            Mapping::EndpointIndependent,
            Allocation::Preserving,
            Filtering::EndpointIndependent,
            Unsolicited::Drop,
        );
        n.outbound(T0, seg(ep(INSIDE), ep(MEDIATOR), true, false));
        let later = T0 + Duration::from_secs(61);
        n.take_events();
        assert!(n
            .inbound(
                later,
                seg(ep(MEDIATOR), ep("198.51.100.1:50000"), false, true)
            )
            .is_empty());
        assert!(n
            .take_events()
            .iter()
            .any(|e| matches!(e, NatEvent::MappingExpired { .. })));
    }

    /// A segment with these flags (`S`, `.`, `R`, `F` as tcpdump writes them), sequence numbers and
    /// payload length.
    fn segment(
        src: &str,
        dst: SocketAddrV4,
        flags: &str,
        seq: u32,
        ack: u32,
        len: usize,
    ) -> Vec<u8> {
        let (src, total) = (ep(src), 40 + len);
        let mut buf = seg(src, dst, flags.contains('S'), flags.contains('.'));
        buf.resize(total, 0);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[..]);
            ip.set_total_len(total as u16);
            ip.fill_checksum();
        }
        let mut t = TcpPacket::new_unchecked(&mut buf[20..]);
        t.set_rst(flags.contains('R'));
        t.set_fin(flags.contains('F'));
        t.set_seq_number(TcpSeqNumber(seq as i32));
        t.set_ack_number(TcpSeqNumber(ack as i32));
        t.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
        buf
    }

    fn tracked(unsolicited: Unsolicited) -> Nat {
        let config = NatConfig {
            unsolicited,
            hairpin: false,
            ..NatConfig::home_router()
        };
        Nat::new(config, "198.51.100.1".parse().unwrap(), Rng::new(1))
    }

    fn invalid_fates(n: &mut Nat) -> Vec<(bool, InvalidFate)> {
        n.take_events()
            .into_iter()
            .filter_map(|e| match e {
                NatEvent::Invalid { outbound, fate, .. } => Some((outbound, fate)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn conntrack_loses_our_data_after_a_re_dial_with_a_smaller_isn() {
        let mut n = tracked(Unsolicited::Drop);
        let public = ep("198.51.100.1:50000");
        // First attempt, unanswered; the re-dial on the same 5-tuple has a smaller ISN.
        assert_eq!(
            n.outbound(T0, segment(INSIDE, ep(PEER), "S", 3_000_000, 0, 0))
                .len(),
            1
        );
        assert_eq!(
            n.outbound(T0, segment(INSIDE, ep(PEER), "S", 1_000, 0, 0))
                .len(),
            1
        );
        // The late peer's SYN and our SYN|ACK pass, and so does its ACK.
        assert_eq!(
            n.inbound(T0, segment(PEER, public, "S", 9_000, 0, 0)).len(),
            1
        );
        assert_eq!(n.tcp_state(ep(INSIDE), ep(PEER)), Some(TcpState::SynSent2));
        assert_eq!(
            n.outbound(T0, segment(INSIDE, ep(PEER), "S.", 1_000, 9_001, 0))
                .len(),
            1
        );
        assert_eq!(
            n.inbound(T0, segment(PEER, public, ".", 9_001, 1_001, 0))
                .len(),
            1
        );
        n.take_events();
        // Our data is INVALID: not NATted, lost.
        let outs = n.outbound(T0, segment(INSIDE, ep(PEER), ".", 1_001, 9_001, 10));
        assert!(outs.is_empty());
        assert_eq!(invalid_fates(&mut n), vec![(true, InvalidFate::Lost)]);
        // Without tracking the same sequence passes.
        let mut n = nat(
            Mapping::EndpointIndependent,
            Allocation::Preserving,
            Filtering::AddressPortDependent,
            Unsolicited::Drop,
        );
        n.outbound(T0, segment(INSIDE, ep(PEER), "S", 3_000_000, 0, 0));
        n.outbound(T0, segment(INSIDE, ep(PEER), "S", 1_000, 0, 0));
        n.inbound(T0, segment(PEER, public, "S", 9_000, 0, 0));
        n.outbound(T0, segment(INSIDE, ep(PEER), "S.", 1_000, 9_001, 0));
        n.inbound(T0, segment(PEER, public, ".", 9_001, 1_001, 0));
        assert_eq!(
            n.outbound(T0, segment(INSIDE, ep(PEER), ".", 1_001, 9_001, 10))
                .len(),
            1
        );
    }

    #[test]
    fn conntrack_invalid_inbound_is_dropped_by_a_firewall_and_reset_by_a_bare_router() {
        for (unsolicited, fate) in [
            (Unsolicited::Drop, InvalidFate::Dropped),
            (Unsolicited::Rst, InvalidFate::Reset),
        ] {
            let mut n = tracked(unsolicited);
            let public = ep("198.51.100.1:50000");
            n.outbound(T0, segment(INSIDE, ep(PEER), "S", 500, 0, 0));
            n.inbound(T0, segment(PEER, public, "S", 9_000, 0, 0));
            // We abort after the peer's SYN came: the entry goes to CLOSE (a reply was seen).
            assert_eq!(
                n.outbound(T0, segment(INSIDE, ep(PEER), "R", 501, 0, 0))
                    .len(),
                1
            );
            assert_eq!(n.tcp_state(ep(INSIDE), ep(PEER)), Some(TcpState::Close));
            n.take_events();
            // The peer's SYN on the closed entry is INVALID.
            let outs = n.inbound(T0, segment(PEER, public, "S", 9_500, 0, 0));
            assert_eq!(invalid_fates(&mut n), vec![(false, fate)]);
            match fate {
                InvalidFate::Reset => {
                    let [Out::Wan(r)] = outs.as_slice() else {
                        panic!("{outs:?}")
                    };
                    assert!(
                        matches!(packet::decode(r), Kind::Tcp(t) if t.rst && t.dst == ep(PEER))
                    );
                }
                _ => assert!(outs.is_empty()),
            }
            // Our own new SYN re-opens it (the RST was ours): a fresh entry.
            assert_eq!(
                n.outbound(T0, segment(INSIDE, ep(PEER), "S", 7, 0, 0))
                    .len(),
                1
            );
            assert_eq!(n.tcp_state(ep(INSIDE), ep(PEER)), Some(TcpState::SynSent));
        }
    }

    #[test]
    fn conntrack_deletes_an_entry_whose_only_reply_is_a_rst() {
        let mut n = tracked(Unsolicited::Rst);
        let public = ep("198.51.100.1:50000");
        n.outbound(T0, segment(INSIDE, ep(PEER), "S", 500, 0, 0));
        assert_eq!(
            n.inbound(T0, segment(PEER, public, "R.", 0, 501, 0)).len(),
            1
        );
        assert_eq!(n.tcp_state(ep(INSIDE), ep(PEER)), None);
        // The peer's SYN now finds no session: unsolicited, answered by the router's RST.
        assert_eq!(inbound_verdict(&mut n, PEER, 50000).0, SynVerdict::Reset);
    }

    #[test]
    fn hairpin_translates_the_source_and_loops_back() {
        let mut n = nat(
            Mapping::EndpointIndependent,
            Allocation::Preserving,
            Filtering::EndpointIndependent,
            Unsolicited::Drop,
        );
        n.config.hairpin = true;
        n.outbound(T0, seg(ep("192.168.1.3:40000"), ep(MEDIATOR), true, false));
        let outs = n.outbound(T0, seg(ep(INSIDE), ep("198.51.100.1:40000"), true, false));
        let Out::Lan(p) = &outs[0] else {
            panic!("{outs:?}")
        };
        assert!(packet::checksums_ok(p));
        let Kind::Tcp(t) = packet::decode(p) else {
            panic!()
        };
        assert_eq!(t.src, ep("198.51.100.1:50000"));
        assert_eq!(t.dst, ep("192.168.1.3:40000"));
        n.config.hairpin = false;
        assert!(n
            .outbound(T0, seg(ep(INSIDE), ep("198.51.100.1:40000"), true, false))
            .is_empty());
    }
}
