//! The mediator's sans-IO logic ([`p2psc::proto::mediator`]) served over smoltcp TCP sockets.
//!
//! [`MediatorNode`] owns a fixed number of listening sockets (one per concurrent connection), a
//! [`Session`] per accepted connection and one [`Table`]; [`MediatorNode::poll`] moves bytes between
//! sockets and sessions and routes the table's notices. It is the same protocol code the
//! `p2psc-mediator` server runs, on the same kind of stack the peers run. Like the server, it verifies
//! proofs with ed25519-dalek ([`DalekVerifier`]). The table lives in a `heapless::Vec` rather than a
//! `HashMap`, whose per-process random iteration order would make expiry order, and so runs, differ.

use std::cell::RefCell;
use std::net::SocketAddr;

use p2psc::connector::{feed, send_frames};
use p2psc::identity::PublicKey;
use p2psc::net::{self, Stack};
use p2psc::proto::mediator::{ConnId, Entry, MediatorConfig, Notice, Session, SessionEvent, Table};
use p2psc::rng::Drbg;
use p2psc::time::Instant;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};

use crate::crypto::DalekVerifier;

/// Most peers the simulated mediator's table holds.
pub const TABLE_SLOTS: usize = 64;

type Storage = heapless::Vec<Entry, TABLE_SLOTS>;

/// Something the mediator did, for timelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediatorEvent {
    /// A peer connected from this (observed) endpoint.
    Accepted(SocketAddr),
    /// A peer's proof verified.
    Verified {
        /// The peer's key.
        key: PublicKey,
        /// Where it was seen.
        observed: SocketAddr,
        /// The round trip measured during registration, in milliseconds.
        rtt_ms: u64,
    },
    /// Two peers were matched.
    Matched,
    /// A session was aborted.
    Aborted(p2psc::wire::AbortReason),
}

struct Slot {
    handle: SocketHandle,
    session: Option<(ConnId, Session)>,
}

/// A mediator on a smoltcp host.
pub struct MediatorNode {
    port: u16,
    config: MediatorConfig,
    slots: Vec<Slot>,
    table: Table<Storage>,
    /// Registrations of the first key are entered in the table as the second (a lying mediator).
    impersonate: Option<(PublicKey, PublicKey)>,
    rng: Drbg,
    next_conn: ConnId,
    events: Vec<(Instant, MediatorEvent)>,
}

impl MediatorNode {
    /// Listen on `port` with `slots` sockets (each with 512-byte buffers) added to `sockets`.
    pub fn new(
        port: u16,
        slots: usize,
        config: MediatorConfig,
        seed: [u8; 32],
        sockets: &mut SocketSet<'_>,
    ) -> MediatorNode {
        let slots = (0..slots)
            .map(|_| {
                let rx = tcp::SocketBuffer::new(vec![0; 512]);
                let tx = tcp::SocketBuffer::new(vec![0; 512]);
                let mut socket = tcp::Socket::new(rx, tx);
                socket.set_nagle_enabled(false);
                Slot {
                    handle: sockets.add(socket),
                    session: None,
                }
            })
            .collect();
        MediatorNode {
            port,
            config,
            slots,
            table: Table::new(Storage::new(), config),
            impersonate: None,
            rng: Drbg::new(seed),
            next_conn: 1,
            events: Vec::new(),
        }
    }

    /// The socket handles (to register wakers on).
    pub fn handles(&self) -> impl Iterator<Item = SocketHandle> + '_ {
        self.slots.iter().map(|s| s.handle)
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

    /// The mediator process dies: every connection is reset and nothing listens on its port any more
    /// (the host's stack answers SYNs to it with a RST). Poll it no more.
    pub fn crash(&mut self, sockets: &mut SocketSet<'_>) {
        for slot in &mut self.slots {
            sockets.get_mut::<tcp::Socket>(slot.handle).abort();
            slot.session = None;
        }
    }

    /// When [`poll`](Self::poll) must run next at the latest.
    pub fn poll_at(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| {
                s.session
                    .as_ref()
                    .and_then(|(_, session)| session.poll_at())
            })
            .chain(self.table.poll_at())
            .min()
    }

    /// Serve: accept, read, run sessions and the table, write. Call after every interface poll.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>) {
        let mut notices: Vec<(ConnId, Notice)> = Vec::new();
        for i in 0..self.slots.len() {
            self.serve_slot(i, now, sockets, &mut notices);
        }
        self.table
            .poll(now, |conn, notice| notices.push((conn, notice)));
        // Notices may produce frames and further notices (never more than one round).
        while let Some((conn, notice)) = notices.pop() {
            if let Some(i) = self.slot_of(conn) {
                let (_, session) = self.slots[i].session.as_mut().expect("slot_of");
                if let Some(event) = session.notify(now, notice) {
                    self.handle(i, now, event, &mut notices);
                }
                self.flush(i, now, sockets);
            }
        }
    }

    fn slot_of(&self, conn: ConnId) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| matches!(&s.session, Some((c, _)) if *c == conn))
    }

    fn serve_slot(
        &mut self,
        i: usize,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        notices: &mut Vec<(ConnId, Notice)>,
    ) {
        let handle = self.slots[i].handle;
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if self.slots[i].session.is_none() {
            match socket.state() {
                State::Closed => {
                    let _ = socket.listen(self.port);
                    return;
                }
                State::Established => {
                    let Some(remote) = socket.remote_endpoint() else {
                        return;
                    };
                    let observed = SocketAddr::from(remote);
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    let session = Session::new(self.config, observed, self.rng.bytes32(), now);
                    self.slots[i].session = Some((conn, session));
                    self.events.push((now, MediatorEvent::Accepted(observed)));
                }
                _ => return,
            }
        }
        // Read; then act on what the session reported.
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
        self.flush(i, now, sockets);
    }

    /// Transmit what the session has, and close or recycle the slot when it is done.
    fn flush(&mut self, i: usize, now: Instant, sockets: &mut SocketSet<'_>) {
        let handle = self.slots[i].handle;
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        let Some((conn, session)) = self.slots[i].session.as_mut() else {
            return;
        };
        send_frames(socket, &mut |buf| session.transmit(now, buf));
        let peer_gone = !socket.may_recv() && socket.state() != State::Established;
        let closed = session.is_closed();
        if closed || peer_gone {
            self.table.connection_ended(*conn, session);
            socket.close();
        }
        // Once our FIN is acknowledged the session has nothing more to say: free the slot rather than
        // wait for the peer's FIN. (A connector told RetryAfter redials from the same port without
        // closing; smoltcp's FIN-WAIT-2 socket would swallow its new SYN for good.)
        if matches!(socket.state(), State::Closed | State::TimeWait)
            || (peer_gone && socket.send_queue() == 0)
            || (closed && socket.state() == State::FinWait2)
        {
            socket.abort();
            self.slots[i].session = None;
        }
    }

    /// Log `event`, then let the core's [`Table::settle`] act on it; notices for other sessions are
    /// queued in `notices`.
    fn handle(
        &mut self,
        i: usize,
        now: Instant,
        mut event: SessionEvent,
        notices: &mut Vec<(ConnId, Notice)>,
    ) {
        let Some((conn, session)) = self.slots[i].session.as_mut() else {
            return;
        };
        match &mut event {
            SessionEvent::Verified(reg) => {
                self.events.push((
                    now,
                    MediatorEvent::Verified {
                        key: reg.key,
                        observed: reg.observed,
                        rtt_ms: reg.rtt.total_millis(),
                    },
                ));
                if let Some((real, claimed)) = self.impersonate {
                    if reg.key == real {
                        reg.key = claimed;
                    }
                }
            }
            SessionEvent::Aborted { reason, .. } => {
                self.events.push((now, MediatorEvent::Aborted(*reason)))
            }
            _ => {}
        }
        let matches_before = self.table.stats().matches;
        notices.extend(self.table.settle(now, *conn, session, event));
        if self.table.stats().matches > matches_before {
            self.events.push((now, MediatorEvent::Matched));
        }
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
