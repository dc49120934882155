//! The mediator's table of waiting peers under any sequence of registrations (new keys, the same key
//! from a new connection), expiries (time jumps), disconnects (`connection_ended`), session aborts and
//! round-trip updates, over four keys, in both storages (a fixed array, a hash map).
//!
//! A plain model (a list of entries) says what the table must hold after every step, and the checks
//! are: a key is in the table at most once, with exactly the model's connection, registrant and
//! expiry; every notice goes to the connection the model names (Replaced to the older registration of a
//! key, Match to the waiting counterpart, and their contents pair the two, RetryAfter to the entry a
//! full table evicts for a registration from a lighter network); `len()` never exceeds the
//! capacity; nothing expires before its time and everything expires at it; `poll_at` is the earliest
//! expiry and never in the past after `poll`; a stale session's removal never removes a newer entry.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2psc::proto::mediator::{Entry, Prefix, Registrant, Storage};
use p2psc::proto::{
    ConnId, MediatorConfig, Notice, RegisterConfig, Registration, Session, SessionEvent, Table,
};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{AbortReason, Match, Message, Role, MAX_FRAME_LEN};
use p2psc_fuzz::crypto::{FastSigner, FastVerifier, SignLog};
use p2psc_fuzz::ident::{self, IDENTITIES};
use p2psc_fuzz::input::{self, below, byte, flag, word};
use p2psc_fuzz::{reach, Unstructured};

/// Slots of the fixed-array storage.
const ARRAY: usize = 4;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let config = MediatorConfig {
        capacity: below(&mut u, ARRAY + 2),
        wait_timeout: Duration::from_millis(1 + u64::from(word(&mut u))),
        retry_after: Duration::from_millis(u64::from(word(&mut u))),
        ..MediatorConfig::default()
    };
    if flag(&mut u) {
        let table = Table::new(heapless::Vec::<Entry, ARRAY>::new(), config);
        World::new(table, config.capacity.min(ARRAY), config.wait_timeout).run(&mut u);
    } else {
        let table = Table::new(HashMap::new(), config);
        World::new(table, config.capacity, config.wait_timeout).run(&mut u);
    }
});

/// The verified session (key, want) as a server has it when its proof checked, and its registrant;
/// made once per process (it takes a signature and a verification).
fn template(key: usize, want: usize) -> (Session, Registrant) {
    static ALL: OnceLock<Vec<Option<(Session, Registrant)>>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        (0..IDENTITIES * IDENTITIES)
            .map(|n| {
                (n / IDENTITIES != n % IDENTITIES).then(|| verified(n / IDENTITIES, n % IDENTITIES))
            })
            .collect()
    });
    all[key * IDENTITIES + want].clone().expect("key != want")
}

/// Run a registration of `key` wanting `want` against a fresh session up to its Verified event.
fn verified(key: usize, want: usize) -> (Session, Registrant) {
    let (now, log) = (Instant::ZERO, SignLog::default());
    let signer = FastSigner::new(ident::identity(key), &log);
    let config = RegisterConfig::default();
    let mut client = Registration::new(
        config,
        ident::public(key),
        ident::public(want),
        [key as u8; 32],
        None,
        now,
    );
    let observed = "203.0.113.9:4000".parse().unwrap();
    let mut session = Session::new(MediatorConfig::default(), observed, [0xA0; 32], now);
    let mut buf = [0u8; MAX_FRAME_LEN];
    loop {
        while let Some(n) = client.transmit(now, &mut buf) {
            if let (_, Some(SessionEvent::Verified(reg))) =
                session.receive(now, &FastVerifier, &buf[..n])
            {
                return (session, reg);
            }
        }
        while let Some(n) = session.transmit(now, &mut buf) {
            client
                .receive(now, &signer, &buf[..n])
                .expect("an honest exchange");
        }
    }
}

/// The table, the live sessions by connection, and the model of what the table must hold.
struct World<S: Storage> {
    table: Table<S>,
    /// Entries the table can hold: its configured capacity, or the array's size if smaller.
    room: usize,
    /// The configured wait.
    wait: Duration,
    now: Instant,
    next_conn: ConnId,
    sessions: Vec<(ConnId, Session)>,
    model: Vec<Entry>,
    /// Counters the table must report: registrations, matches, replaced, expired, full, evicted.
    counts: [u64; 6],
}

impl<S: Storage> World<S> {
    fn new(table: Table<S>, room: usize, wait: Duration) -> Self {
        World {
            table,
            room,
            wait,
            now: Instant::ZERO,
            next_conn: 1,
            sessions: Vec::new(),
            model: Vec::new(),
            counts: [0; 6],
        }
    }

    fn run(mut self, u: &mut Unstructured) {
        for _ in 0..128 {
            if u.is_empty() {
                break;
            }
            match byte(u) % 6 {
                0 | 1 => {
                    let key = below(u, IDENTITIES);
                    self.register(u, key);
                }
                // Replace: the key of a waiting entry registers again from a new connection.
                2 => match self.model.len() {
                    0 => self.expire(u),
                    n => {
                        let key = self.model[below(u, n)].registrant.key;
                        let i = (0..IDENTITIES)
                            .position(|i| ident::public(i) == key)
                            .unwrap();
                        self.register(u, i);
                    }
                },
                3 => self.expire(u),
                4 => self.end(u),
                _ => self.rtt(u),
            }
            self.check();
        }
    }

    /// A verified registration of identity `key` from a new connection.
    fn register(&mut self, u: &mut Unstructured, key: usize) {
        let want = (key + 1 + below(u, IDENTITIES - 1)) % IDENTITIES;
        let (mut session, mut reg) = template(key, want);
        reg.nonce = input::nonce(u);
        reg.observed = input::endpoint(u);
        reg.local = input::maybe_endpoint(u);
        reg.rtt = Duration::from_millis(u64::from(word(u) % 2000));
        let conn = self.next_conn;
        self.next_conn += 1;
        let expected = self.predict(conn, &reg);
        let others = self
            .table
            .settle(self.now, conn, &mut session, SessionEvent::Verified(reg));
        let own = sent(&mut session, self.now);
        self.check_outcome(&reg, &expected, &own, &others);
        self.sessions.push((conn, session));
        self.deliver(others);
        self.drop_closed();
    }

    /// What registering `reg` from `conn` must do, applied to the model.
    fn predict(&mut self, conn: ConnId, reg: &Registrant) -> Prediction {
        self.counts[0] += 1;
        let replaced = self
            .take(|e| e.registrant.key == reg.key)
            .map(|old| old.conn);
        self.counts[2] += u64::from(replaced.is_some());
        let matched = self.take(|e| e.registrant.key == reg.want && e.registrant.want == reg.key);
        self.counts[1] += u64::from(matched.is_some());
        let evicted = match matched {
            None if self.model.len() >= self.room => self.evict_for(reg),
            _ => None,
        };
        let waits = matched.is_none() && self.model.len() < self.room;
        reach(match (replaced, &matched, waits) {
            (Some(_), Some(_), _) => "table: replaced and matched at once",
            (Some(_), None, _) => "table: replaced",
            (None, Some(_), _) => "table: matched",
            (None, None, true) if evicted.is_some() => "table: full, evicted for a lighter network",
            (None, None, true) => "table: waits",
            (None, None, false) => "table: full",
        });
        if waits {
            let expires = self.now + self.wait;
            self.model.push(Entry {
                conn,
                registrant: *reg,
                expires,
            });
        } else if matched.is_none() {
            self.counts[4] += 1;
        }
        Prediction {
            replaced,
            matched,
            evicted,
            waits,
        }
    }

    /// The eviction rule of a full table (mediator.md §5.5), applied to the model: the network holding
    /// the most entries (ties: the lower prefix) gives up its entry that expires first (ties: the
    /// older connection) if it holds at least two more than the newcomer's network.
    fn evict_for(&mut self, reg: &Registrant) -> Option<ConnId> {
        let network = |r: &Registrant| Prefix::network(r.observed.ip());
        let count = |p: Prefix| {
            self.model
                .iter()
                .filter(|e| network(&e.registrant) == p)
                .count()
        };
        let mine = count(network(reg));
        let (heaviest, std::cmp::Reverse(prefix)) = self
            .model
            .iter()
            .map(|e| network(&e.registrant))
            .map(|p| (count(p), std::cmp::Reverse(p)))
            .max()?;
        if heaviest < mine + 2 {
            return None;
        }
        let oldest = self
            .model
            .iter()
            .filter(|e| network(&e.registrant) == prefix)
            .min_by_key(|e| (e.expires, e.conn))?
            .conn;
        self.counts[5] += 1;
        self.take(|e| e.conn == oldest).map(|e| e.conn)
    }

    fn take(&mut self, f: impl Fn(&Entry) -> bool) -> Option<Entry> {
        let at = self.model.iter().position(f)?;
        Some(self.model.remove(at))
    }

    /// The table's notices for others and the session's own message are the model's.
    fn check_outcome(
        &self,
        reg: &Registrant,
        p: &Prediction,
        own: &[Message],
        got: &[(ConnId, Notice)],
    ) {
        let mut got = got.iter();
        if let Some(old) = p.replaced {
            assert_eq!(
                got.next(),
                Some(&(old, Notice::Abort(AbortReason::Replaced)))
            );
        }
        if let Some(evicted) = p.evicted {
            let notice = got.next();
            assert!(
                matches!(notice, Some(&(c, Notice::RetryAfter(_))) if c == evicted),
                "expected RetryAfter for the evicted connection {evicted}, the table said {notice:?}"
            );
        }
        match (&p.matched, got.next()) {
            (Some(waiting), Some((conn, Notice::Match { message: m, .. }))) if *conn == waiting.conn => {
                check_pair(&waiting.registrant, m, reg, own)
            }
            (None, None) => match own {
                [Message::Registered { wait_ms }] => {
                    assert!(p.waits, "Registered, but the table is full");
                    assert_eq!(u64::from(*wait_ms), self.wait.total_millis());
                }
                [Message::RetryAfter { .. }] => assert!(!p.waits, "RetryAfter, but there is room"),
                other => panic!("a waiting or refused session sent {other:?}"),
            },
            (expected, got) => panic!("expected a Match for {expected:?}, the table said {got:?}"),
        }
        assert_eq!(got.next(), None);
    }

    /// Hand the table's notices to their sessions, as a server does, and settle what they answer
    /// (a replaced session's abort): it must not disturb the table.
    fn deliver(&mut self, notices: impl IntoIterator<Item = (ConnId, Notice)>) {
        for (conn, notice) in notices {
            let Some(at) = self.sessions.iter().position(|(c, _)| *c == conn) else {
                panic!("a notice for connection {conn}, which has ended");
            };
            let session = &mut self.sessions[at].1;
            if let Some(event) = session.notify(self.now, notice) {
                let more = self.table.settle(self.now, conn, session, event);
                assert!(more.is_empty());
            }
            sent(session, self.now);
        }
    }

    /// Sessions that sent their last frame are closed by the server: they must hold no entry.
    fn drop_closed(&mut self) {
        let table = &mut self.table;
        self.sessions.retain(|(conn, session)| {
            if session.is_closed() {
                assert!(!table.connection_ended(*conn, session));
            }
            !session.is_closed()
        });
    }

    /// Time jumps; the table expires what ran out, exactly that, and nothing else.
    fn expire(&mut self, u: &mut Unstructured) {
        self.now += input::step(u);
        let now = self.now;
        let mut expired = Vec::new();
        self.table.poll(now, |conn, notice| {
            assert_eq!(notice, Notice::Abort(AbortReason::PeerTimeout));
            expired.push(conn);
        });
        let mut due: Vec<ConnId> = self
            .model
            .iter()
            .filter(|e| e.expires <= now)
            .map(|e| e.conn)
            .collect();
        self.model.retain(|e| e.expires > now);
        self.counts[3] += due.len() as u64;
        if due.len() > 1 {
            reach("table: several expire at once");
        }
        expired.sort();
        due.sort();
        assert_eq!(expired, due, "expired at {now}");
        if let Some(at) = self.table.poll_at() {
            assert!(at > now, "poll_at {at} not after poll at {now}");
        }
        self.deliver(
            expired
                .into_iter()
                .map(|c| (c, Notice::Abort(AbortReason::PeerTimeout))),
        );
        self.drop_closed();
    }

    /// A connection ends: closed by the peer (`connection_ended`) or aborted by the server.
    fn end(&mut self, u: &mut Unstructured) {
        if self.sessions.is_empty() {
            return;
        }
        let (conn, mut session) = self.sessions.remove(below(u, self.sessions.len()));
        let holds = session
            .waiting_key()
            .and_then(|key| self.take(|e| e.registrant.key == key && e.conn == conn));
        if holds.is_some() {
            reach("table: a waiting connection ends");
        }
        if flag(u) {
            assert_eq!(self.table.connection_ended(conn, &session), holds.is_some());
        } else if let Some(event) = session.abort(AbortReason::ShuttingDown) {
            assert!(self
                .table
                .settle(self.now, conn, &mut session, event)
                .is_empty());
        }
    }

    /// A fresh round trip of a session: only its own entry keeps the smaller one.
    fn rtt(&mut self, u: &mut Unstructured) {
        if self.sessions.is_empty() {
            return;
        }
        let at = below(u, self.sessions.len());
        let (conn, session) = &mut self.sessions[at];
        let Some(key) = session.key() else { return };
        let rtt = Duration::from_millis(u64::from(word(u) % 2000));
        if let Some(e) = self
            .model
            .iter_mut()
            .find(|e| e.registrant.key == key && e.conn == *conn)
        {
            e.registrant.rtt = e.registrant.rtt.min(rtt);
        }
        assert!(self
            .table
            .settle(self.now, *conn, session, SessionEvent::Rtt(key, rtt))
            .is_empty());
    }

    /// The table holds exactly the model's entries.
    fn check(&self) {
        assert_eq!(
            self.table.len(),
            self.model.len(),
            "table {:?} vs model {:?}",
            self.table.len(),
            self.model
        );
        assert!(self.table.len() <= self.room);
        for i in 0..IDENTITIES {
            let key = ident::public(i);
            assert_eq!(
                self.table.get(&key),
                self.model.iter().find(|e| e.registrant.key == key)
            );
        }
        assert_eq!(
            self.table.poll_at(),
            self.model.iter().map(|e| e.expires).min()
        );
        let s = self.table.stats();
        assert_eq!(
            [
                s.registrations,
                s.matches,
                s.replaced,
                s.expired,
                s.full,
                s.evicted
            ],
            self.counts
        );
    }
}

/// What a registration must do to the table.
struct Prediction {
    /// The connection of the older registration of the key, which is aborted.
    replaced: Option<ConnId>,
    /// The waiting counterpart, matched.
    matched: Option<Entry>,
    /// The connection of the entry evicted to make room (it gets RetryAfter).
    evicted: Option<ConnId>,
    /// Whether the registrant waits (else, unmatched, it is refused: the table is full).
    waits: bool,
}

/// The two Matches of a pair: the waiting peer leads and learns the new one's nonce and endpoints,
/// the new one follows and learns the waiting one's; the start delays make both SYNs leave together.
fn check_pair(waiting: &Registrant, for_waiting: &Match, new: &Registrant, own: &[Message]) {
    let [Message::Match(for_new)] = own else {
        panic!("a matched session sent {own:?}");
    };
    assert_eq!(
        (for_waiting.role, for_new.role),
        (Role::Leader, Role::Follower)
    );
    let told = |m: &Match, r: &Registrant| {
        (m.peer_nonce, m.peer_observed, m.peer_local) == (r.nonce, r.observed, r.local)
    };
    assert!(
        told(for_waiting, new) && told(for_new, waiting),
        "{for_waiting:?} / {for_new:?}"
    );
    let owd = |r: &Registrant| r.rtt.total_millis() / 2;
    let leave = |m: &Match, r: &Registrant| u64::from(m.start_delay_ms) + owd(r);
    assert_eq!(leave(for_waiting, waiting), leave(for_new, new));
    assert_eq!(for_waiting.start_delay_ms.min(for_new.start_delay_ms), 0);
}

/// Everything a session has to send.
fn sent(session: &mut Session, now: Instant) -> Vec<Message> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut out = Vec::new();
    while let Some(n) = session.transmit(now, &mut buf) {
        out.push(Message::parse_bytes(&buf[..n]).expect("a session's frame parses"));
    }
    out
}
