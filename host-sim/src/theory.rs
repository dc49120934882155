//! What should happen, from first principles: will two peers behind NATs with these behaviours connect?
//!
//! # The argument
//!
//! Write `p` for the external port the mediator observed for a peer (its mapping towards the mediator),
//! and `q` for the external port its punch SYNs leave from (its mapping towards the other peer's public
//! endpoint). Each peer dials the *other's* `p`, from its own local port.
//!
//! 1. **Predictable** peers (`q = p`). A NAT with endpoint-independent mapping reuses the mediator
//!    mapping for every remote, so `q = p`. A NAT with address(-and-port)-dependent mapping makes a new
//!    mapping for the peer, but with port preservation its port is the local port again, so `q = p`
//!    still (RFC 4787 §4.2.1; Linux `masquerade` does exactly this). With sequential or random
//!    allocation the new mapping gets another port: `q ≠ p`, and nobody told the other peer about `q`.
//!
//! 2. **Both predictable** → [`Prediction::Direct`]. The mediator starts both punches at the same moment
//!    (it equalises the one-way delays). Each SYN leaves its NAT before the other's arrives, creating a
//!    session for exactly the endpoint the other peer's SYN comes from, so each NAT lets the other SYN
//!    in whatever its filtering, and it reaches a socket in SYN-SENT with exactly that remote endpoint:
//!    a TCP simultaneous open (RFC 9293 §3.5), first attempt, at the physical limit. The
//!    unsolicited-SYN behaviour never comes into play.
//!
//! 3. **One or both unpredictable.** A SYN from an unpredictable peer Y comes from `q_Y`, not the `p_Y`
//!    the other peer's socket is connected to, so that socket cannot accept it. It can still be accepted
//!    by the *listening* socket with which the connector holds its port between attempts (it exists so
//!    that an early SYN gets a SYN-ACK rather than a RST) — if X's NAT lets it in at all:
//!    - endpoint-independent filtering admits it (X's port has a mapping); unless X is itself
//!      predictable and Y's SYN comes from a predictable endpoint — not the case here;
//!    - address-dependent filtering admits it if X has sent to Y's *address* from `p_X`: true when X is
//!      predictable (X's punch SYNs go to Y's address from `p_X = q_X`);
//!    - address-and-port-dependent filtering never admits it (X never sent to `q_Y`).
//!
//!    X's SYN-ACK then returns through the session that admission created, from `p_X`, which is exactly
//!    where Y's socket is connected, so the connection completes. In the other direction nothing works:
//!    a predictable X's SYN to `p_Y` meets a NAT whose Y already talks to X's endpoint from `q_Y` (a
//!    conflicting session: dropped), or a filter that refuses it.
//!
//!    So: if some peer X has filtering that admits the other's SYNs (EIF; or ADF with X predictable),
//!    the connection is [`Prediction::Listener`]: it forms when one of Y's SYNs arrives while X listens.
//!    With a spare candidate socket (the scenarios give each peer two) X listens on `p_X` for the whole
//!    punch while its other socket keeps its own attempt, so the first SYN of Y's that X's NAT admits is
//!    taken; with one socket only, X listens only between attempts that were reset. Theory still says
//!    `Listener`, not `Direct`: it depends on a socket being free to listen. Otherwise the connection is
//!    impossible: [`Prediction::Fail`], and the connector ends with `p2psc::Error::PunchFailed` at its
//!    punch deadline.
//!
//! The classical UDP rule of thumb agrees: symmetric NAT ↔ port-restricted cone fails, symmetric ↔
//! (address-)restricted or full cone works, symmetric ↔ symmetric works only against a full cone.
//!
//! 4. **Same NAT.** Peers behind one public address race the LAN endpoint (reported in Hello) and the
//!    public one: the leader dials the LAN endpoint while the follower listens for it. On the LAN no NAT
//!    is involved: the LAN path is always [`Prediction::Direct`]. The leader must first resolve the
//!    follower's MAC address with ARP — one LAN round trip, as the follower only listens and so has
//!    no reason to resolve the leader (it learns the leader's address from the ARP request) — so the
//!    LAN connection takes [`lan_setup`]. The public path needs hairpinning, and is usually a
//!    simultaneous open over two LAN round trips, slower. But where the leader's hairpinned SYN comes
//!    from an unpredicted port that an endpoint-independent filter admits to the follower's listening
//!    socket, it is an ordinary open over the hairpin, whose SYN|ACK reaches the leader just when the
//!    LAN path's would, one ARP round trip later than without ARP: then either path may win
//!    ([`public_path_may_win`]; the public one in [`hairpin_setup`]).
//!
//! 5. **Conntrack's RST rule** (routers with [`Tracking::Linux`]). Linux deletes a conntrack entry
//!    whose only reply was a RST. That can remove the conflicting session of point 3: when a predictable
//!    X's NAT has no firewall (it answers a SYN it refuses with a RST) and an address-and-port-dependent
//!    filter (so point 3 does not apply), each of Y's SYNs from `q_Y` is answered with a RST, which
//!    deletes Y's entry for X's endpoint. If Y's NAT filters endpoint-independently, one of X's SYNs to
//!    `p_Y` (its kept attempt retransmits them) that arrives before Y's next SYN re-creates the entry is
//!    admitted, reaches Y's listening socket, and Y's SYN|ACK leaves from `p_Y`, where X's socket is
//!    connected: the connection forms. Timing decides, as for a listener: [`Prediction::AfterReset`].
//!    Without tracking (or without the RST) the conflicting session stays and the pair fails.
//!
//!    Tracking changes nothing else theory distinguishes. Its other rule — a segment outside the
//!    sequence window conntrack recorded is INVALID and not NATted — breaks a connection only when a
//!    peer dials the same 5-tuple again with a new ISN, or answers the other's SYN from a listening
//!    socket after its own attempt on that 5-tuple ended silently (see [`crate::conntrack`]): then the
//!    router's entry still holds the first attempt's sequence space. A connector that keeps each
//!    attempt through the NAT alive until the deadline never does either.

//! 6. **The relay** (protocol version 2, §14). Each peer also probes its NAT: a second connection
//!    from its punch port to the mediator's port + 1. The probe sees another public endpoint only where
//!    the NAT's mapping depends on the destination *port* and the port is not preserved
//!    ([`probed_mapping`]: address-and-port-dependent mapping with sequential or random allocation,
//!    `Dependent`); an address-dependent mapping sees the same mediator address twice and keeps the
//!    mapping, so the probe calls it `Independent` although its punch leaves from an unpredicted port.
//!    The Match carries both classes and the fallback deadline `relay_after` (`mediator.md` §6.1), and
//!    both peers apply one rule ([`predict_path`]):
//!    - both `Dependent` (two NATs): no punch, the relay at once ([`Expected::Relay`], in
//!      [`relay_setup`]) — even where point 3 would have let a listener connect;
//!    - otherwise the punch, with the relay as fallback at `relay_after`: a pair theory calls
//!      [`Prediction::Direct`] connects directly as before; a pair it calls [`Prediction::Fail`] is
//!      relayed when the punch deadline ends ([`Expected::Fallback`], in [`fallback_setup`]) — that is
//!      where an address-dependent mapping lands that the probe could not see; the timing classes
//!      ([`Prediction::Listener`], [`Prediction::AfterReset`]) connect directly if their chance comes
//!      before `relay_after`, else by the fallback ([`Expected::DirectOrFallback`]).
//!    - behind one NAT the peers share a public address (`racing`): they always punch, and the LAN
//!      path connects directly.
//!
//!    So every pair connects.

//! # How long a direct connection takes
//!
//! The physical limit of the set-up latency is `0.5 × mediator RTT + 1.5 × peer RTT` (see
//! [`crate::scenario`]). p2psc on smoltcp 0.13 needs half a peer round trip more ([`direct_setup`]):
//! in a simultaneous open, smoltcp in SYN-RECEIVED does not accept the other side's SYN-ACK (it answers
//! it with an ACK) and becomes ESTABLISHED only on that bare ACK, half a round trip later. Linux takes
//! the SYN-ACK (`tcp_validate_incoming` has a case for it), as in RFC 793's figure 8. On the LAN path of
//! one NAT the open is an ordinary one (the leader dials, the follower listens), which takes as long:
//! the follower is established by the leader's ACK, one and a half round trips after the SYN. The
//! leader's Confirm travels with its PeerAuth, so it adds nothing.

use core::fmt;

use embassy_time::Duration;

use crate::nat::{Allocation, Filtering, Mapping, NatConfig, Tracking, Unsolicited};

/// What theory says about a pair of NATs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prediction {
    /// Simultaneous open on the first attempt, at the physical limit.
    Direct,
    /// Possible only through the listening socket between attempts: connects after some attempts,
    /// when timing allows; can fail.
    Listener,
    /// Possible only after a router's RST deleted a conflicting conntrack entry (point 5): connects
    /// when timing allows; can fail.
    AfterReset,
    /// Impossible: `p2psc::Error::PunchFailed` at the punch deadline.
    Fail,
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Prediction::Direct => "direct",
            Prediction::Listener => "listener",
            Prediction::AfterReset => "after-rst",
            Prediction::Fail => "fail",
        })
    }
}

/// Whether a peer behind `nat` sends its punch from the port the mediator saw (`q = p`).
pub fn predictable(nat: &NatConfig) -> bool {
    nat.mapping == Mapping::EndpointIndependent || nat.allocation == Allocation::Preserving
}

/// Whether `x`'s NAT admits SYNs from the other peer's unpredicted port.
fn admits_unpredicted(x: &NatConfig) -> bool {
    match x.filtering {
        Filtering::EndpointIndependent => true,
        Filtering::AddressDependent => predictable(x),
        Filtering::AddressPortDependent => false,
    }
}

/// Whether `x`'s RSTs can clear the way for its SYNs into `y`'s NAT (point 5): `x` predictable
/// behind a NAT that answers the SYNs it refuses with RST, `y` unpredictable behind one that tracks
/// (so a RST as the only reply deletes its entry) and filters endpoint-independently.
fn rst_clears_conflict(x: &NatConfig, y: &NatConfig) -> bool {
    let deletes_on_rst = y.tracking == Tracking::Linux || y.rst_ends_session;
    predictable(x)
        && !predictable(y)
        && x.unsolicited == Unsolicited::Rst
        && y.filtering == Filtering::EndpointIndependent
        && deletes_on_rst
}

/// The prediction for peers behind two different NATs.
pub fn predict(a: &NatConfig, b: &NatConfig) -> Prediction {
    if predictable(a) && predictable(b) {
        Prediction::Direct
    } else if (!predictable(b) && admits_unpredicted(a))
        || (!predictable(a) && admits_unpredicted(b))
    {
        Prediction::Listener
    } else if rst_clears_conflict(a, b) || rst_clears_conflict(b, a) {
        Prediction::AfterReset
    } else {
        Prediction::Fail
    }
}

/// The path a pair ends on (point 6), and so roughly when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expected {
    /// The punch connects (as [`Prediction::Direct`] says).
    Direct,
    /// Both probes saw a dependent mapping: relayed at once, in [`relay_setup`].
    Relay,
    /// The punch cannot work but the probes did not show it: relayed when the fallback deadline ends,
    /// in [`fallback_setup`].
    Fallback,
    /// Direct if the timing allows before the fallback deadline, else relayed then.
    DirectOrFallback,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Direct => "direct",
            Expected::Relay => "relay",
            Expected::Fallback => "fallback",
            Expected::DirectOrFallback => "direct|fallback",
        })
    }
}

/// The mapping class the mediator's probe gives a peer behind `nat` (point 6): `Dependent` only when
/// a second destination port gets another public port.
pub fn probed_mapping(nat: &NatConfig) -> p2psc::wire::Mapping {
    let port_dependent = nat.mapping == Mapping::AddressPortDependent;
    if port_dependent && nat.allocation != Allocation::Preserving {
        p2psc::wire::Mapping::Dependent
    } else {
        p2psc::wire::Mapping::Independent
    }
}

/// The path peers behind two different NATs end on (point 6).
pub fn predict_path(a: &NatConfig, b: &NatConfig) -> Expected {
    let dependent = |n: &NatConfig| probed_mapping(n) == p2psc::wire::Mapping::Dependent;
    if dependent(a) && dependent(b) {
        return Expected::Relay;
    }
    match predict(a, b) {
        Prediction::Direct => Expected::Direct,
        Prediction::Fail => Expected::Fallback,
        Prediction::Listener | Prediction::AfterReset => Expected::DirectOrFallback,
    }
}

/// The path peers on one LAN behind one NAT end on: they share a public address, so they punch, and
/// the LAN path connects.
pub fn predict_path_same_nat(_nat: &NatConfig) -> Expected {
    Expected::Direct
}

/// The set-up latency of a pair relayed at once: `1.5 × mediator RTT` from the second registration,
/// protocol §14.7's limit. The Match takes half a round trip to the peers; each sends its RelayRequest
/// with its first flight behind it (PeerAuth, and the leader's Confirm), which the mediator holds until
/// the other's request and then forwards: a round trip through the mediator after the Match, both
/// peers have authenticated.
pub fn relay_setup(mediator_rtt: Duration) -> Duration {
    mediator_rtt * 3 / 2
}

/// The set-up latency of a pair relayed after a failed punch: the punch starts when the Match has
/// reached both peers (half a mediator round trip after the second registration) and ends
/// `relay_after` later; from then as [`relay_setup`] without the Match.
pub fn fallback_setup(mediator_rtt: Duration, relay_after: Duration) -> Duration {
    relay_setup(mediator_rtt) + relay_after
}

/// The fallback deadline a mediator announces to peers with these round trips to it (`mediator.md`
/// §6.1).
pub fn relay_after(rtt_a: Duration, rtt_b: Duration) -> Duration {
    let ms = |d: Duration| p2psc::time::Duration::from_millis(d.as_millis());
    Duration::from_millis(p2psc::proto::mediator::relay::relay_after(ms(rtt_a), ms(rtt_b)).into())
}

/// The set-up latency of a [`Prediction::Direct`] connection with p2psc on smoltcp 0.13:
/// `0.5 × mediator RTT + 2 × peer RTT` (module doc).
pub fn direct_setup(mediator_rtt: Duration, peer_rtt: Duration) -> Duration {
    mediator_rtt / 2 + peer_rtt * 2
}

/// The set-up latency of a connection over the LAN path of one NAT: [`direct_setup`] over the LAN
/// round trip, plus the leader's ARP resolution of the follower, one more LAN round trip (point 4).
pub fn lan_setup(mediator_rtt: Duration, lan_rtt: Duration) -> Duration {
    direct_setup(mediator_rtt, lan_rtt) + lan_rtt
}

/// The set-up latency of a connection over the hairpin of one NAT (two LAN round trips: up to the NAT
/// and down again), when [`public_path_may_win`].
pub fn hairpin_setup(mediator_rtt: Duration, lan_rtt: Duration) -> Duration {
    direct_setup(mediator_rtt, lan_rtt * 2)
}

/// Whether, behind one NAT, the public path through the hairpin can win against the LAN path (point
/// 4): hairpinning on, and the leader's hairpinned SYN, from an unpredicted port, admitted by an
/// endpoint-independent filter to the follower's listening socket.
pub fn public_path_may_win(nat: &NatConfig) -> bool {
    nat.hairpin && nat.filtering == Filtering::EndpointIndependent && !predictable(nat)
}

/// The prediction for peers on one LAN behind one NAT (any behaviour, hairpinning on or off).
pub fn predict_same_nat(_nat: &NatConfig) -> Prediction {
    Prediction::Direct
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::Unsolicited;

    fn nat(mapping: Mapping, allocation: Allocation, filtering: Filtering) -> NatConfig {
        NatConfig {
            mapping,
            allocation,
            filtering,
            unsolicited: Unsolicited::Drop,
            ..NatConfig::home_router()
        }
    }

    #[test]
    fn the_brief_s_examples() {
        use Allocation::{Preserving, Random, Sequential};
        let (eim, adm, apdm) = (
            Mapping::EndpointIndependent,
            Mapping::AddressDependent,
            Mapping::AddressPortDependent,
        );
        let (eif, adf, apdf) = (
            Filtering::EndpointIndependent,
            Filtering::AddressDependent,
            Filtering::AddressPortDependent,
        );
        let home = NatConfig::home_router();
        assert_eq!(predict(&home, &home), Prediction::Direct);
        let adm_preserving = nat(adm, Preserving, apdf);
        assert_eq!(predict(&adm_preserving, &home), Prediction::Direct);
        let symmetric = nat(apdm, Random, apdf);
        assert_eq!(predict(&symmetric, &home), Prediction::Fail);
        assert_eq!(predict(&symmetric, &symmetric), Prediction::Fail);
        let seq = nat(apdm, Sequential, apdf);
        assert_eq!(predict(&seq, &seq), Prediction::Fail);
        // A restricted cone lets a symmetric NAT's SYNs in (after retries).
        let restricted = nat(eim, Preserving, adf);
        assert_eq!(predict(&symmetric, &restricted), Prediction::Listener);
        let full = nat(eim, Random, eif);
        assert_eq!(predict(&full, &symmetric), Prediction::Listener);
        // Two symmetric NATs: only a full-cone filter helps.
        let sym_full = nat(apdm, Random, eif);
        assert_eq!(predict(&sym_full, &symmetric), Prediction::Listener);
        let sym_restricted = nat(apdm, Random, adf);
        assert_eq!(predict(&sym_restricted, &symmetric), Prediction::Fail);
        // Conntrack's RST rule: a RST-answering port-restricted cone against a symmetric NAT with a
        // full-cone filter (point 5) — only if that NAT tracks.
        let linux_rst = NatConfig::linux_no_firewall();
        assert_eq!(predict(&linux_rst, &sym_full), Prediction::AfterReset);
        assert_eq!(predict(&sym_full, &linux_rst), Prediction::AfterReset);
        let untracked = NatConfig {
            tracking: Tracking::None,
            ..sym_full
        };
        assert_eq!(predict(&linux_rst, &untracked), Prediction::Fail);
        // A firewall that drops (no RST) keeps the conflicting session.
        assert_eq!(predict(&home, &sym_full), Prediction::Fail);
        assert_eq!(predict(&linux_rst, &symmetric), Prediction::Fail);
        assert_eq!(
            direct_setup(Duration::from_millis(100), Duration::from_millis(100)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn the_probe_sees_port_dependence_only() {
        use p2psc::wire::Mapping as Class;
        use Allocation::{Preserving, Random, Sequential};
        let apdf = Filtering::AddressPortDependent;
        let symmetric = nat(Mapping::AddressPortDependent, Random, apdf);
        let seq = nat(Mapping::AddressPortDependent, Sequential, apdf);
        let adm = nat(Mapping::AddressDependent, Random, apdf);
        let preserving = nat(Mapping::AddressPortDependent, Preserving, apdf);
        let home = NatConfig::home_router();
        assert_eq!(probed_mapping(&symmetric), Class::Dependent);
        assert_eq!(probed_mapping(&adm), Class::Independent);
        assert_eq!(probed_mapping(&preserving), Class::Independent);
        assert_eq!(predict_path(&symmetric, &seq), Expected::Relay);
        // A full cone on one side would let a listener connect: the probes send the pair to the relay.
        let sym_full = nat(
            Mapping::AddressPortDependent,
            Random,
            Filtering::EndpointIndependent,
        );
        assert_eq!(predict(&sym_full, &symmetric), Prediction::Listener);
        assert_eq!(predict_path(&sym_full, &symmetric), Expected::Relay);
        // Address-dependent mapping looks independent: the pair waits for the fallback deadline.
        assert_eq!(predict(&adm, &symmetric), Prediction::Fail);
        assert_eq!(predict_path(&adm, &symmetric), Expected::Fallback);
        assert_eq!(predict_path(&adm, &adm), Expected::Fallback);
        assert_eq!(predict_path(&home, &symmetric), Expected::Fallback);
        assert_eq!(predict_path(&home, &preserving), Expected::Direct);
        let rtt = Duration::from_millis(100);
        assert_eq!(relay_after(rtt, rtt), Duration::from_millis(3800));
        assert_eq!(relay_setup(rtt), Duration::from_millis(150));
        assert_eq!(
            fallback_setup(rtt, relay_after(rtt, rtt)),
            Duration::from_millis(3950)
        );
    }
}
