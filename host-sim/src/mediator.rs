//! The mediator's sans-IO logic ([`p2psc::proto::mediator`]) served over smoltcp TCP sockets.
//!
//! [`MediatorNode`] owns a fixed number of listening sockets (one per concurrent connection), a
//! [`Session`] per accepted connection and one [`Table`]; [`MediatorNode::poll`] moves bytes between
//! sockets and sessions and routes the table's notices. It is the same protocol code the
//! `p2psc-mediator` server runs, on the same kind of stack the peers run.
//!
//! Protocol version 2: it also listens on the probe endpoint (its port + 1) with a [`ProbeSession`]
//! per connection, keeps what the probes saw by nonce for a step deadline, and fixes each verified
//! registration's mapping class with [`probe::classify`]. When the table has joined a relay (both
//! sessions of a pair are relaying and have sent their Relayed), the two connections are spliced
//! (`mediator/splice.rs`, [`RelayEnd`]). Every decision comes from the core's sessions, table and
//! budget; this is the I/O.
//!
//! Like the server, it verifies proofs with ed25519-dalek ([`DalekVerifier`]). The table lives in a
//! `heapless::Vec` rather than a `HashMap`, whose per-process random iteration order would make expiry
//! order, and so runs, differ.

use std::cell::RefCell;
use std::net::SocketAddr;

use p2psc::connector::{feed, send_frames};
use p2psc::identity::PublicKey;
use p2psc::net::{self, Stack};
use p2psc::proto::mediator::probe::{self, ProbeSession, Probed};
use p2psc::proto::mediator::relay::{Budget, TokenBucket};
use p2psc::proto::mediator::{ConnId, Entry, MediatorConfig, Notice, Session, SessionEvent, Table};
use p2psc::rng::Drbg;
use p2psc::time::Instant;
use p2psc::wire::{Mapping, Role};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};

use crate::crypto::DalekVerifier;

mod splice;

pub use splice::RelayEnd;
use splice::Splice;

/// Most peers the simulated mediator's table holds.
pub const TABLE_SLOTS: usize = 64;

/// Most probes remembered at once (`doc/mediator.md` §15): beyond, new probes are not recorded and
/// their registrations are classified `Unknown`.
pub const PROBE_RECORDS: usize = 64;

/// Each connection's socket buffer, each way. A relayed direction reads only what the other socket's
/// transmit buffer can take, so this is also the relay's fixed buffer per direction.
const SOCKET_BUFFER: usize = 1024;

type Storage = heapless::Vec<Entry, TABLE_SLOTS>;

/// Something the mediator did, for timelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediatorEvent {
    /// A peer connected from this (observed) endpoint.
    Accepted(SocketAddr),
    /// A probe (protocol §14.2) arrived from this (observed) endpoint.
    Probed(SocketAddr),
    /// A peer's proof verified.
    Verified {
        /// The peer's key.
        key: PublicKey,
        /// Where it was seen.
        observed: SocketAddr,
        /// The round trip measured during registration, in milliseconds.
        rtt_ms: u64,
        /// Its mapping class, from its probe (version 2; `Unknown` without one).
        mapping: Mapping,
    },
    /// Two peers were matched.
    Matched,
    /// A session was aborted.
    Aborted(p2psc::wire::AbortReason),
    /// Both peers of a pair were sent Relayed: their connections are spliced.
    RelayJoined,
    /// A relay ended, having carried this many bytes (both ways).
    RelayEnded {
        /// How.
        end: RelayEnd,
        /// Bytes relayed, both directions.
        bytes: u64,
    },
}

struct Slot {
    handle: SocketHandle,
    session: Option<(ConnId, Session)>,
    /// Everything the session queued has gone into the socket.
    drained: bool,
    /// The connection ends: its partner has been told (once).
    ending: bool,
    /// The connection is one end of a [`Splice`].
    spliced: bool,
}

struct ProbeSlot {
    handle: SocketHandle,
    session: Option<ProbeSession>,
}

/// A mediator on a smoltcp host.
pub struct MediatorNode {
    port: u16,
    config: MediatorConfig,
    slots: Vec<Slot>,
    probe_slots: Vec<ProbeSlot>,
    /// What the probes saw, and when each record expires.
    probes: Vec<(Probed, Instant)>,
    splices: Vec<Splice>,
    /// The rate of all relays together.
    total: TokenBucket,
    table: Table<Storage>,
    /// Registrations of the first key are entered in the table as the second (a lying mediator).
    impersonate: Option<(PublicKey, PublicKey)>,
    rng: Drbg,
    next_conn: ConnId,
    events: Vec<(Instant, MediatorEvent)>,
}

fn tcp_socket(sockets: &mut SocketSet<'_>) -> SocketHandle {
    let rx = tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]);
    let tx = tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]);
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(false);
    sockets.add(socket)
}

/// Whether a connection whose session is done (`closed`), or whose peer has gone, can give its slot
/// back. Once our FIN is acknowledged the session has nothing more to say: free the slot rather than
/// wait for the peer's FIN. (A connector told RetryAfter redials from the same port without closing;
/// smoltcp's FIN-WAIT-2 socket would swallow its new SYN for good.)
fn finished(socket: &tcp::Socket, closed: bool) -> bool {
    let peer_gone = !socket.may_recv() && socket.state() != State::Established;
    matches!(socket.state(), State::Closed | State::TimeWait)
        || (peer_gone && socket.send_queue() == 0)
        || (closed && socket.state() == State::FinWait2)
}

impl MediatorNode {
    /// Listen on `port` with `slots` sockets, and for probes on `port + 1` with half as many (at least
    /// one), each with 1 KiB buffers, added to `sockets`.
    pub fn new(
        port: u16,
        slots: usize,
        config: MediatorConfig,
        seed: [u8; 32],
        sockets: &mut SocketSet<'_>,
    ) -> MediatorNode {
        let slots = (0..slots)
            .map(|_| Slot {
                handle: tcp_socket(sockets),
                session: None,
                drained: false,
                ending: false,
                spliced: false,
            })
            .collect::<Vec<_>>();
        let probe_slots = (0..slots.len().div_ceil(2).max(1))
            .map(|_| ProbeSlot {
                handle: tcp_socket(sockets),
                session: None,
            })
            .collect();
        let total = TokenBucket::new(
            config.relay.total_rate,
            config.relay.buffer as u64,
            Instant::ZERO,
        );
        MediatorNode {
            port,
            config,
            slots,
            probe_slots,
            probes: Vec::new(),
            splices: Vec::new(),
            total,
            table: Table::new(Storage::new(), config),
            impersonate: None,
            rng: Drbg::new(seed),
            next_conn: 1,
            events: Vec::new(),
        }
    }

    /// The socket handles (to register wakers on).
    pub fn handles(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        let probes = self.probe_slots.iter().map(|s| s.handle);
        self.slots.iter().map(|s| s.handle).chain(probes)
    }

    /// Everything the mediator did so far.
    pub fn events(&self) -> &[(Instant, MediatorEvent)] {
        &self.events
    }

    /// The table (for its counters).
    pub fn table(&self) -> &Table<Storage> {
        &self.table
    }

    /// Lie: enter verified registrations of `real` in the table as `claimed`, so that a peer waiting for
    /// `claimed` is matched with `real`. The peers' handshake must catch this (`AuthError::WrongKey`).
    pub fn impersonate(&mut self, real: PublicKey, claimed: PublicKey) {
        self.impersonate = Some((real, claimed));
    }

    /// The mediator process dies: every connection is reset and nothing listens on its ports any more
    /// (the host's stack answers SYNs to them with a RST). Poll it no more.
    pub fn crash(&mut self, sockets: &mut SocketSet<'_>) {
        for slot in &mut self.slots {
            sockets.get_mut::<tcp::Socket>(slot.handle).abort();
            slot.session = None;
        }
        for slot in &mut self.probe_slots {
            sockets.get_mut::<tcp::Socket>(slot.handle).abort();
            slot.session = None;
        }
        self.splices.clear();
    }

    /// When [`poll`](Self::poll) must run next at the latest.
    pub fn poll_at(&self) -> Option<Instant> {
        let sessions = self.slots.iter().filter_map(|s| {
            s.session
                .as_ref()
                .and_then(|(_, session)| session.poll_at())
        });
        let probes = self
            .probe_slots
            .iter()
            .filter_map(|s| s.session.as_ref().and_then(ProbeSession::poll_at));
        sessions
            .chain(probes)
            .chain(self.splices.iter().map(Splice::poll_at))
            .chain(self.table.poll_at())
            .min()
    }

    /// Serve: accept, read, run sessions and the table, write; join and pump relays. Call after every
    /// interface poll.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        for i in 0..self.probe_slots.len() {
            self.serve_probe(i, now, sockets);
        }
        let mut notices: Vec<(ConnId, Notice)> = Vec::new();
        for i in 0..self.slots.len() {
            if !self.slots[i].spliced {
                self.serve_slot(i, now, sockets, &mut notices);
            }
        }
        self.table
            .poll(now, |conn, notice| notices.push((conn, notice)));
        // Notices may produce frames and further notices (a relay's join, a departure).
        while let Some((conn, notice)) = notices.pop() {
            if let Some(i) = self.slot_of(conn) {
                let (_, session) = self.slots[i].session.as_mut().expect("slot_of");
                if let Some(event) = session.notify(now, notice) {
                    self.handle(i, now, event, &mut notices);
                }
                self.flush(i, now, sockets, &mut notices);
            }
        }
        self.join_relays(now, sockets);
        self.pump_relays(now, sockets);
    }

    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| matches!(&s.session, Some((c, _)) if *c == conn))
    }

    /// Accept a connection on a free slot's socket: whether the slot now has a session.
    fn accept(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) -> bool {
        let socket = sockets.get_mut::<tcp::Socket>(self.slots[i].handle);
        match socket.state() {
            State::Closed => {
                let _ = socket.listen(self.port);
                false
            }
            State::Established => {
                let Some(remote) = socket.remote_endpoint() else {
                    return false;
                };
                let observed = SocketAddr::from(remote);
                let conn = self.next_conn;
                self.next_conn += 1;
                let session = Session::new(self.config, observed, self.rng.bytes32(), now);
                let slot = &mut self.slots[i];
                slot.session = Some((conn, session));
                (slot.drained, slot.ending) = (false, false);
                self.events.push((now, MediatorEvent::Accepted(observed)));
                true
            }
            _ => false,
        }
    }

    fn serve_slot(
        &mut self,
        i: usize,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        notices: &mut Vec<(ConnId, Notice)>,
    ) {
        if self.slots[i].session.is_none() && !self.accept(i, now, sockets) {
            return;
        }
        // Read; then act on what the session reported. (Bytes after a RelayRequest stay unread in the
        // socket: they are the payload held for the partner.)
        let handle = self.slots[i].handle;
        let mut events = Vec::new();
        let (_, session) = self.slots[i].session.as_mut().expect("session");
        feed(sockets.get_mut::<tcp::Socket>(handle), &mut |data| {
            let (used, event) = session.receive(now, &DalekVerifier, data);
            events.extend(event);
            used
        });
        for event in events {
            self.handle(i, now, event, notices);
        }
        let (_, session) = self.slots[i].session.as_mut().expect("session");
        if let Some(event) = session.poll(now) {
            self.handle(i, now, event, notices);
        }
        self.flush(i, now, sockets, notices);
    }

    /// Transmit what the session has, and close or recycle the slot when it is done; the partner of a
    /// pair offered a relay learns of the end (`notices`). A relaying connection is the splice's.
    fn flush(
        &mut self,
        i: usize,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        notices: &mut Vec<(ConnId, Notice)>,
    ) {
        let slot = &mut self.slots[i];
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        let Some((conn, session)) = slot.session.as_mut() else {
            return;
        };
        let mut drained = false;
        send_frames(socket, &mut |buf| {
            let frame = session.transmit(now, buf);
            drained |= frame.is_none();
            frame
        });
        slot.drained = drained;
        if session.is_relaying() {
            return;
        }
        let peer_gone = !socket.may_recv() && socket.state() != State::Established;
        let closed = session.is_closed();
        if closed || peer_gone {
            self.table.connection_ended(*conn, session);
            if !slot.ending {
                slot.ending = true;
                notices.extend(session.departure());
            }
            socket.close();
        }
        if finished(socket, closed) {
            socket.abort();
            slot.session = None;
        }
    }

    /// Log `event`, then let the core's [`Table::settle`] act on it; notices for other sessions are
    /// queued in `notices`. A verified registration gets its mapping class from its probe first.
    fn handle(
        &mut self,
        i: usize,
        now: Instant,
        mut event: SessionEvent,
        notices: &mut Vec<(ConnId, Notice)>,
    ) {
        if let SessionEvent::Verified(reg) = &mut event {
            let probe = self.take_probe(now, &reg.nonce);
            reg.mapping = probe::classify(reg.relay, reg.observed, probe);
            self.events.push((
                now,
                MediatorEvent::Verified {
                    key: reg.key,
                    observed: reg.observed,
                    rtt_ms: reg.rtt.total_millis(),
                    mapping: reg.mapping,
                },
            ));
            if let Some((real, claimed)) = self.impersonate {
                if reg.key == real {
                    reg.key = claimed;
                }
            }
        }
        if let SessionEvent::Aborted { reason, .. } = &event {
            self.events.push((now, MediatorEvent::Aborted(*reason)))
        }
        let Some((conn, session)) = self.slots[i].session.as_mut() else {
            return;
        };
        let matches_before = self.table.stats().matches;
        notices.extend(self.table.settle(now, *conn, session, event));
        if self.table.stats().matches > matches_before {
            self.events.push((now, MediatorEvent::Matched));
        }
    }

    /// Serve probe slot `i`: accept, read its one Probe and record it, refuse anything else, close.
    fn serve_probe(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) {
        let slot = &mut self.probe_slots[i];
        let socket = sockets.get_mut::<tcp::Socket>(slot.handle);
        if slot.session.is_none() {
            match (socket.state(), socket.remote_endpoint()) {
                (State::Closed, _) => {
                    let _ = socket.listen(self.port + 1);
                    return;
                }
                (State::Established, Some(remote)) => {
                    let observed = SocketAddr::from(remote);
                    let step = self.config.step_timeout;
                    slot.session = Some(ProbeSession::new(observed, now, step));
                }
                _ => return,
            }
        }
        let session = slot.session.as_mut().expect("accepted");
        let mut probed = None;
        feed(socket, &mut |data| {
            let (used, p) = session.receive(data);
            probed = probed.or(p);
            used
        });
        session.poll(now);
        send_frames(socket, &mut |buf| session.transmit(buf));
        let closed = session.is_closed();
        if closed {
            socket.close();
        }
        if finished(socket, closed) {
            socket.abort();
            slot.session = None;
        }
        if let Some(p) = probed {
            self.record_probe(now, p);
            self.events.push((now, MediatorEvent::Probed(p.observed)));
        }
    }

    /// Keep what a probe saw for a step deadline: the first per nonce, at most [`PROBE_RECORDS`].
    fn record_probe(&mut self, now: Instant, probed: Probed) {
        self.probes.retain(|(_, expires)| *expires > now);
        let known = self.probes.iter().any(|(p, _)| p.nonce == probed.nonce);
        if !known && self.probes.len() < PROBE_RECORDS {
            self.probes.push((probed, now + self.config.step_timeout));
        }
    }

    /// Take the probe recorded for a registration's nonce: where it was observed.
    fn take_probe(&mut self, now: Instant, nonce: &p2psc::wire::Nonce) -> Option<SocketAddr> {
        self.probes.retain(|(_, expires)| *expires > now);
        let k = self.probes.iter().position(|(p, _)| p.nonce == *nonce)?;
        Some(self.probes.remove(k).0.observed)
    }

    /// Splice the pairs whose sessions have both joined the relay and sent their Relayed (the
    /// leader's slot starts it, once).
    fn join_relays(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let pair = slot.session.as_ref().and_then(|(_, s)| s.relay_pair());
            let Some((partner, Role::Leader)) = pair.filter(|_| !slot.spliced && slot.drained)
            else {
                continue;
            };
            let Some(j) = self.slot_of(partner) else {
                // The partner's connection is gone already: the relay ends before it began.
                self.free(i, sockets);
                self.table.relay_ended();
                continue;
            };
            let other = &self.slots[j];
            let joined = other.session.as_ref().and_then(|(_, s)| s.relay_pair());
            if joined.is_none() || !other.drained {
                continue;
            }
            let handles = [self.slots[i].handle, self.slots[j].handle];
            let budget = Budget::new(self.config.relay, now);
            self.splices.push(Splice::new([i, j], handles, budget));
            self.slots[i].spliced = true;
            self.slots[j].spliced = true;
            self.events.push((now, MediatorEvent::RelayJoined));
        }
    }

    /// Move the relays' bytes; free the slots of those that ended.
    fn pump_relays(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        let mut k = 0;
        while k < self.splices.len() {
            let Some(end) = self.splices[k].pump(now, &mut self.total, sockets) else {
                k += 1;
                continue;
            };
            let splice = self.splices.remove(k);
            for i in splice.slots {
                self.free(i, sockets);
            }
            self.table.relay_ended();
            let bytes = splice.bytes();
            self.events
                .push((now, MediatorEvent::RelayEnded { end, bytes }));
        }
    }

    /// Reset slot `i`'s connection (if still open) and free the slot.
    fn free(&mut self, i: usize, sockets: &mut SocketSet<'_>) {
        let slot = &mut self.slots[i];
        sockets.get_mut::<tcp::Socket>(slot.handle).abort();
        slot.session = None;
        slot.spliced = false;
        slot.drained = false;
    }
}

/// Serve `node` on `stack` for ever (run it as a task): poll it whenever its sockets or its deadlines
/// want, handing each new [`MediatorEvent`] to `on_event`.
pub async fn serve(
    stack: Stack<'_>,
    node: &RefCell<MediatorNode>,
    mut on_event: impl FnMut(&MediatorEvent),
) {
    let mut seen = 0;
    stack
        .poll_with(|cx, _iface, sockets| {
            let mut node = node.borrow_mut();
            node.poll(net::now(), sockets);
            for (_, e) in &node.events()[seen..] {
                on_event(e);
            }
            seen = node.events().len();
            let handles: Vec<_> = node.handles().collect();
            net::wake_on(cx, sockets, handles, node.poll_at());
            core::task::Poll::<()>::Pending
        })
        .await
}
