//! The mediator's logic: one [`Session`] per peer connection, and one [`Table`] of waiting peers shared by
//! all sessions.
//!
//! A session runs the registration handshake of one connection (Hello → Challenge → Proof), measures the
//! peer's round-trip time, and keeps a waiting peer alive with Pings. When a proof verifies it reports
//! [`SessionEvent::Verified`]; the caller registers that in the table, which matches the two halves of a
//! pair, replaces older registrations of the same key, bounds its size and expires waits. The table answers
//! with [`Notice`]s addressed to sessions by [`ConnId`]; the caller hands each to its session with
//! [`Session::notify`]. That split lets a server keep the table behind one lock while sessions live in
//! their own tasks, and lets the simulator run everything on one thread.
//!
//! ```text
//!  AwaitHello ──Hello──▶ AwaitProof ──Proof ok──▶ Verified ──Notice::Wait──▶ Waiting ──Notice::Match──▶ Matched
//!                                                          └─Notice::Match───────────────────────────────┘
//!  any state ──bad frame / bad proof / deadline / Notice::Abort──▶ Closing (Abort queued) ──▶ Closed
//! ```
//!
//! Policy (normative text in `doc/mediator.md`): the newest registration of a key wins, and the older one
//! is aborted with [`AbortReason::Replaced`] — a device that rebooted must not be locked out by its own
//! stale registration, and only the key's owner can produce the proof. The peer that registered first is
//! the [`Role::Leader`](crate::wire::Role::Leader). Start delays equalise the one-way delays estimated
//! from the measured round trips.
//!
//! Version 2 (protocol §14): [`probe`] classifies each peer's NAT mapping from its probe connection, the
//! table offers a pair a relay in its Matches, and the sessions of the pair join it. The relay's join is
//! decided by the leader's session (exactly one side decides, whatever the order the two requests
//! arrive in): a follower's RelayRequest is passed to its leader as [`Notice::PartnerRequested`]; the
//! leader that has both reports [`SessionEvent::RelayJoin`], the table admits the relay (or refuses it)
//! and both sessions get [`Notice::RelayGo`]. From then the connections are the relay's: [`relay`] holds
//! its limits.
//!
//! ```text
//!  Matched ──RelayRequest──▶ RelayWaiting ──(leader: both asked) RelayGo──▶ Relaying (Relayed sent)
//!     │                         └── partner gone / linger over ──▶ Closing (Abort(PeerGone))
//!     └── RelayRequest, no relay offered ──▶ Closing (Abort(RelayRefused))
//! ```

mod prefix;
pub mod probe;
pub mod relay;
mod session;
mod storage;
mod table;

pub use prefix::Prefix;
pub use relay::RelayConfig;
pub use session::{Session, SessionEvent};
#[cfg(feature = "std")]
pub use storage::IndexedStorage;
pub use storage::Storage;
pub use table::Table;

use core::net::SocketAddr;

use crate::identity::PublicKey;
use crate::time::{Duration, Instant};
use crate::wire::{AbortReason, Mapping, Match, Nonce, RelayMode};

/// How the caller names a connection.
pub type ConnId = u64;

/// Mediator policy and deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MediatorConfig {
    /// Longest wait for each registration message (Hello after connect, Proof after Challenge). A client
    /// that dribbles bytes cannot stretch it.
    pub step_timeout: Duration,
    /// Longest time a registered peer waits in the table for its counterpart.
    pub wait_timeout: Duration,
    /// Time between Pings to a waiting peer (keeps NAT mappings warm and the round trip fresh).
    pub ping_interval: Duration,
    /// Longest wait for a Pong.
    pub ping_timeout: Duration,
    /// How long a matched connection is kept open for the peer's punch (the NAT mapping the other peer
    /// aims at belongs to it) before the mediator closes it.
    pub linger: Duration,
    /// Delay announced in RetryAfter when the table is full.
    pub retry_after: Duration,
    /// Maximum number of waiting peers.
    pub capacity: usize,
    /// Version 2: the relay's policy and limits.
    pub relay: RelayConfig,
    /// Maximum number of waiting peers from one source network (an IPv4 /24, an IPv6 /48); see
    /// [`Table`] for how a full table is shared.
    pub prefix_share: usize,
}

impl Default for MediatorConfig {
    fn default() -> Self {
        MediatorConfig {
            step_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(30),
            retry_after: Duration::from_secs(5),
            capacity: 1024,
            relay: RelayConfig::default(),
            prefix_share: 1024,
        }
    }
}

/// A verified registration, ready for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Registrant {
    /// The peer's key (proven).
    pub key: PublicKey,
    /// The key it wants.
    pub want: PublicKey,
    /// Its nonce, relayed to the other peer.
    pub nonce: Nonce,
    /// Its public endpoint as observed.
    pub observed: SocketAddr,
    /// Its reported LAN endpoint.
    pub local: Option<SocketAddr>,
    /// Measured round-trip time (Challenge → Proof, less the peer's hold time).
    pub rtt: Duration,
    /// Version 2: its Hello's relay flags (`None`: a version-1 registration).
    pub relay: Option<RelayMode>,
    /// Version 2: its mapping class ([`probe::classify`]); the caller fills it in from the probe it
    /// recorded under `nonce` before handing the registration to the table.
    pub mapping: Mapping,
}

/// A waiting peer in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    /// The connection that registered it.
    pub conn: ConnId,
    /// What it registered.
    pub registrant: Registrant,
    /// When its wait ends.
    pub expires: Instant,
}

/// What the table tells a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Notice {
    /// Registered; wait at most this long.
    Wait(Duration),
    /// Matched: send this Match; `partner` is the other peer's connection (for the relay).
    Match {
        /// The Match to send.
        message: Match,
        /// The connection of the other peer of the pair.
        partner: ConnId,
    },
    /// The table is full: tell the peer to come back after this long.
    RetryAfter(Duration),
    /// End the registration with this reason.
    Abort(AbortReason),
    /// Version 2, to the leader of a pair offered a relay: the follower asked for it.
    PartnerRequested,
    /// Version 2: both peers asked and the relay is admitted: send Relayed; the connection is the
    /// relay's from then on.
    RelayGo,
    /// Version 2: the other peer of the pair left before the relay was joined.
    PartnerGone,
}

/// The notices one registration produces: one for the registering session, and up to two for others
/// (the matched waiting peer; an older registration of the same key that this one replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// For the session that registered.
    pub own: Notice,
    /// For other sessions.
    pub others: heapless::Vec<(ConnId, Notice), 2>,
}

/// Counters, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Verified registrations offered to the table.
    pub registrations: u64,
    /// Pairs matched.
    pub matches: u64,
    /// Registrations replaced by a newer one of the same key.
    pub replaced: u64,
    /// Waits that ran out.
    pub expired: u64,
    /// Registrations refused because the table was full (or their network had its share).
    pub full: u64,
    /// Version 2: relays joined.
    pub relays: u64,
    /// Version 2: relays open now (joined, not yet ended: [`Table::relay_ended`]).
    pub relays_open: u64,
    /// Waiting peers evicted to make room for a registration from a lighter network.
    pub evicted: u64,
    /// Aborts by reason code (index = wire code; index 0 counts unknown codes). Counted by the caller with
    /// [`Stats::record_abort`], since aborts happen in sessions.
    pub aborts: [u64; 16],
}

impl Stats {
    /// Count one abort.
    pub fn record_abort(&mut self, reason: AbortReason) {
        let code = reason.to_u8() as usize;
        let index = if code < self.aborts.len() { code } else { 0 };
        self.aborts[index] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, SaltyVerifier};
    use crate::proto::{RegisterConfig, Registration as Client};
    use crate::wire::MAX_FRAME_LEN;
    use std::vec::Vec;

    type TestTable = Table<heapless::Vec<Entry, 4>>;

    fn table() -> TestTable {
        Table::new(heapless::Vec::new(), MediatorConfig::default())
    }

    fn key(seed: u8) -> PublicKey {
        Keypair::from_seed(&[seed; 32]).public_key()
    }

    /// Bytes from one side to the other until neither has anything more to say, at time zero: the
    /// session's events.
    fn exchange(
        client: &mut Client,
        keypair: &Keypair,
        session: &mut Session,
    ) -> Vec<SessionEvent> {
        let (now, mut events, mut buf) = (Instant::ZERO, Vec::new(), [0u8; MAX_FRAME_LEN]);
        loop {
            let mut quiet = true;
            while let Some(n) = client.transmit(now, &mut buf) {
                let (used, event) = session.receive(now, &SaltyVerifier, &buf[..n]);
                assert_eq!(used, n);
                events.extend(event);
                quiet = false;
            }
            while let Some(n) = session.transmit(now, &mut buf) {
                let (used, _) = client.receive(now, keypair, &buf[..n]).unwrap();
                assert_eq!(used, n);
                quiet = false;
            }
            if quiet {
                return events;
            }
        }
    }

    /// The session of the peer with key seed `seed`, wanting `want`, registered in `table` on `conn`.
    fn registered(table: &mut TestTable, conn: ConnId, seed: u8, want: u8) -> Session {
        let keypair = Keypair::from_seed(&[seed; 32]);
        let (now, observed) = (Instant::ZERO, "203.0.113.7:40000".parse().unwrap());
        let mut client = Client::new(
            RegisterConfig::default(),
            keypair.public_key(),
            key(want),
            [seed; 32],
            None,
            now,
        );
        let mut session = Session::new(MediatorConfig::default(), observed, [0xA0; 32], now);
        for event in exchange(&mut client, &keypair, &mut session) {
            // Another session's notice (Replaced) is not delivered: its connection may end first.
            let _ = table.settle(now, conn, &mut session, event);
        }
        session
    }

    #[test]
    fn connection_ended_removes_the_waiting_entry_of_its_own_connection_only() {
        let mut table = table();
        let first = registered(&mut table, 1, 1, 2);
        assert_eq!(first.waiting_key(), Some(key(1)));
        // The same key again from connection 2 replaces the entry.
        let second = registered(&mut table, 2, 1, 2);
        assert!(!table.connection_ended(1, &first));
        assert_eq!(table.get(&key(1)).map(|e| e.conn), Some(2));
        assert!(table.connection_ended(2, &second));
        assert!(table.is_empty());
        assert!(!table.connection_ended(2, &second));
    }

    #[test]
    fn connection_ended_before_waiting_or_after_the_match_removes_nothing() {
        let mut table = table();
        let waiting = registered(&mut table, 1, 1, 2);
        let fresh = Session::new(
            MediatorConfig::default(),
            "203.0.113.8:40000".parse().unwrap(),
            [0xA1; 32],
            Instant::ZERO,
        );
        assert!(!table.connection_ended(3, &fresh));
        assert_eq!(table.len(), 1);
        // Its counterpart comes: both leave the table matched.
        let matched = registered(&mut table, 2, 2, 1);
        assert!(matched.is_matched());
        assert!(table.is_empty());
        assert!(!table.connection_ended(2, &matched));
        assert!(!table.connection_ended(1, &waiting));
    }
}
