//! The punch machine (protocol §8), two ways:
//!
//! - **pair** (two inputs in three): a leader and a follower punch against each other through an
//!   in-memory network the fuzzer runs — which SYNs meet (simultaneous open, or a listening socket
//!   taking one), resets and closes from the other side, bytes moved when and as far as it likes, lost
//!   or damaged on the way — so that both reach verified, confirmed and won states;
//! - **solo**: one punch under arbitrary link observations for any socket index (states no network
//!   produces), any bytes, and now and then the real peer's PeerAuth or a Confirm.
//!
//! Either way: racing or not (one public address, LAN endpoints), one or two sockets per side, default
//! or short deadlines, polls at any time. Checks: no panic; every action names a candidate that exists,
//! and a dial goes to a target of that candidate's plan; after a poll, `poll_at` is never in the past,
//! and polling again at the same time settles; the result, once decided, never changes and the machine
//! asks for nothing more; a winner is established, on the remote it reports, with the session key both
//! honest sides derive; only the leader sends Confirm, at most once per connection, and on a second
//! connection only once the first is given up; two winners are the same connection.
//!
//! Whether other candidates are still open when the result is decided is reported as a reached state,
//! not checked: the machine leaves closing them to the shell (module docs of `proto::punch`, step 5).
#![no_main]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use p2psc::proto::punch::{plan, Action, Link, Punch, PunchConfig, Turn, Winner};
use p2psc::proto::{PunchInfo, SessionKey};
use p2psc::time::{Duration, Instant};
use p2psc::wire::{Message, Role, MAX_FRAME_LEN};
use p2psc_fuzz::crypto::FastVerifier;
use p2psc_fuzz::ident::identity;
use p2psc_fuzz::input::{self, below, byte, chunk, flag, one_in};
use p2psc_fuzz::pipe::Pipe;
use p2psc_fuzz::{finding, reach, trace, Unstructured};

/// When both sides start (the Match came at time zero).
fn start() -> Instant {
    Instant::from_millis(100)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Short deadlines three times in four: they cross the same states in fewer schedule slots, which
    // cost a SHA-512 each and bound this target's speed.
    let short = byte(&mut u) % 4 != 0;
    let case = Case { racing: flag(&mut u), short, sockets: [1 + below(&mut u, 2), 1 + below(&mut u, 2)] };
    if one_in(&mut u, 3) {
        Solo::new(case, input::role(&mut u)).run(&mut u);
    } else {
        Pair::new(case).run(&mut u);
    }
});

/// What both sides of one input share.
#[derive(Clone, Copy)]
struct Case {
    /// Both behind one public address, with LAN endpoints.
    racing: bool,
    /// Short deadlines (to cross them often) instead of the defaults.
    short: bool,
    /// Candidate sockets, leader's and follower's.
    sockets: [usize; 2],
}

fn config(short: bool) -> PunchConfig {
    let default = PunchConfig::default();
    match short {
        false => default,
        true => PunchConfig {
            punch_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_millis(300),
            auth_timeout: Duration::from_millis(500),
            ..default
        },
    }
}

/// A side's public and LAN endpoints.
fn endpoints(role: Role, racing: bool) -> (SocketAddr, SocketAddr) {
    let ep = |a, b, c, d, port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port);
    match (role, racing) {
        (Role::Leader, _) => (ep(198, 51, 100, 1, 5001), ep(192, 168, 1, 2, 40000)),
        (Role::Follower, true) => (ep(198, 51, 100, 1, 5002), ep(192, 168, 1, 3, 40000)),
        (Role::Follower, false) => (ep(198, 51, 100, 2, 5002), ep(192, 168, 1, 3, 40000)),
    }
}

/// The Match as `role` sees it.
fn info(role: Role, racing: bool) -> PunchInfo {
    let own = endpoints(role, racing).0;
    let (peer, peer_lan) = endpoints(role.other(), racing);
    let nonce = |r: Role| [1 + r.to_u8(); 32];
    PunchInfo {
        role,
        matched_at: Instant::ZERO,
        start_at: start(),
        own_observed: own,
        own_nonce: nonce(role),
        peer_observed: peer,
        peer_local: Some(peer_lan),
        peer_nonce: nonce(role.other()),
    }
}

/// Identity 0 leads, identity 1 follows.
fn who(role: Role) -> usize {
    usize::from(role.to_u8())
}

/// A punch as [`Punch::new`] makes it, for every case, made once per process.
///
/// `Punch` is not `Clone`, and making one costs an X25519 key generation and a signature (about 1.3 ms
/// with salty on a host), which per input would hold this target under 1000 runs per second. A bitwise
/// copy is a clone here: a `Punch` owns no heap memory or other resource (the core does not allocate)
/// and borrows nothing (it has no lifetime), so the copy is an independent value whose drop, like the
/// template's, only drops plain data. If `Punch` derives `Clone` one day, use that instead.
fn fresh(role: Role, case: Case, sockets: usize) -> Punch {
    static ALL: OnceLock<Vec<Punch>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let mut all = Vec::new();
        for n in 0..16 {
            let (role, racing, short, sockets) = (n & 1 == 1, n & 2 == 2, n & 4 == 4, 1 + n / 8);
            let role = if role { Role::Follower } else { Role::Leader };
            all.push(make(role, racing, short, sockets));
        }
        all
    });
    let n = usize::from(role.to_u8()) | usize::from(case.racing) << 1 | usize::from(case.short) << 2 | (sockets - 1) << 3;
    // SAFETY: see above; the template is never used mutably.
    unsafe { core::ptr::read(&all[n]) }
}

fn make(role: Role, racing: bool, short: bool, sockets: usize) -> Punch {
    let (me, peer) = (identity(who(role)), identity(who(role.other())));
    let from = Some(endpoints(role, racing).1);
    let seed = [0x70 + role.to_u8(); 32];
    Punch::new(&me.keypair, peer.public, &info(role, racing), from, sockets, config(short), seed).expect("a target")
}

/// The session key both honest sides derive, and the PeerAuth frame each sends, from a clean connect.
struct Golden {
    key: SessionKey,
    /// Indexed by the sender's role.
    auth: [Vec<u8>; 2],
}

static GOLDEN: OnceLock<Golden> = OnceLock::new();

/// The golden values, made on first use by a clean connect (whose own checks skip the comparisons
/// with them, see [`GOLDEN`]).
fn golden() -> &'static Golden {
    GOLDEN.get_or_init(|| {
        let case = Case { racing: false, short: false, sockets: [1, 1] };
        let mut pair = Pair::new(case);
        pair.now = start();
        let mut auth = [Vec::new(), Vec::new()];
        for s in 0..2 {
            pair.sides[s].socks[0] = Sock::Established { conn: 0, remote: pair.sides[1 - s].public };
            pair.sides[s].drive(start());
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = pair.sides[s].punch.transmit(0, &mut buf).expect("PeerAuth first");
            auth[s] = buf[..n].to_vec();
        }
        // Through the normal path from here: the two PeerAuths, then the leader's Confirm.
        pair.conns.push(Conn { ends: [0, 0], pipes: [Pipe::new(), Pipe::new()], open: true });
        pair.conns[0].pipes[1].send(&auth[0]);
        pair.conns[0].pipes[0].send(&auth[1]);
        for _ in 0..3 {
            pair.flush();
        }
        let won = |s: usize| pair.sides[s].punch.result().and_then(Result::ok).expect("a clean connect wins");
        assert_eq!(won(0).session_key, won(1).session_key);
        Golden { key: won(0).session_key, auth }
    })
}

/// What a candidate socket is doing, as the network model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sock {
    Closed,
    Listening,
    SynSent(SocketAddr),
    SynReceived,
    Established { conn: usize, remote: SocketAddr },
    Closing,
}

impl Sock {
    fn link(self, local: SocketAddr) -> Link {
        match self {
            Sock::Closed => Link::Closed,
            Sock::Listening => Link::Listening,
            Sock::SynSent(_) => Link::SynSent,
            Sock::SynReceived => Link::SynReceived,
            Sock::Established { remote, .. } => Link::Established { local, remote },
            Sock::Closing => Link::Closing,
        }
    }

    fn conn(self) -> Option<usize> {
        match self {
            Sock::Established { conn, .. } => Some(conn),
            _ => None,
        }
    }
}

/// One side: its punch, its sockets, what it decided.
struct Side {
    role: Role,
    punch: Punch,
    socks: Vec<Sock>,
    public: SocketAddr,
    lan: SocketAddr,
    /// What each candidate may dial (its plan's dialling turns).
    targets: Vec<Vec<SocketAddr>>,
    decided: Option<Result<Winner, p2psc::proto::punch::PunchError>>,
    now: Instant,
}

impl Side {
    fn new(role: Role, case: Case) -> Side {
        let sockets = case.sockets[usize::from(role.to_u8())];
        let punch = fresh(role, case, sockets);
        let (public, lan) = endpoints(role, case.racing);
        let targets = plan(&info(role, case.racing), Some(lan), sockets)
            .iter()
            .map(|turns| {
                turns.iter().filter_map(|t| match t {
                    Turn::Public(t) | Turn::Lan(t) => Some(*t),
                    Turn::Listen { .. } => None,
                }).collect()
            })
            .collect();
        let socks = vec![Sock::Closed; punch.candidates()];
        Side { role, punch, socks, public, lan, targets, decided: None, now: Instant::ZERO }
    }

    /// A shell's round at `now`: report every socket, carry out every action, until the machine has
    /// nothing more to do at this time. Returns the actions.
    fn drive(&mut self, now: Instant) -> Vec<Action> {
        assert!(now >= self.now);
        self.now = now;
        let mut actions = Vec::new();
        for round in 0..4 {
            for k in 0..self.socks.len() {
                self.punch.observe(k, self.socks[k].link(self.lan));
            }
            while let Some(action) = self.punch.poll(now) {
                assert!(self.decided.is_none(), "{action:?} after the result");
                self.check_action(action);
                actions.push(action);
                assert!(actions.len() < 64, "no end of actions: {actions:?}");
            }
            self.check_result();
            // Not in the past; and if it is now, polling again must get somewhere (a shell that sleeps
            // until poll_at would spin otherwise).
            let at = self.punch.poll_at();
            let settled = at.is_none_or(|at| at > now);
            let fine = settled || (round < 3 && at == Some(now));
            finding("punch-stale-poll-at", fine, || format!("poll_at {at:?} after polls at {now}: {:?}", self.punch));
            if settled || !fine {
                break;
            }
            reach("punch: poll_at is now after a poll (settles on the next)");
        }
        actions
    }

    /// Every action names a candidate that exists; a dial goes to one of its plan's targets.
    fn check_action(&mut self, action: Action) {
        let k = match action {
            Action::Dial { candidate, target } => {
                assert!(self.targets.get(candidate).is_some_and(|t| t.contains(&target)), "{action:?} not in the plan {:?}", self.targets);
                candidate
            }
            Action::Listen { candidate } | Action::Close { candidate } | Action::Abort { candidate } => candidate,
        };
        assert!(k < self.socks.len(), "{action:?}: no such candidate");
        trace!("{} {:?}: {action:?}", self.now, self.role);
    }

    /// A result, once there, stays; a winner is established on the remote it reports.
    fn check_result(&mut self) {
        let result = self.punch.result();
        if let Some(decided) = self.decided {
            assert_eq!(result, Some(decided), "the result changed");
            return;
        }
        let Some(result) = result else { return };
        self.decided = Some(result);
        let Ok(w) = result else {
            reach("punch: failed");
            return;
        };
        reach(match self.role {
            Role::Leader => "punch: the leader won",
            Role::Follower => "punch: the follower won",
        });
        assert_eq!(w.role, self.role);
        let link = self.socks.get(w.candidate).copied();
        finding("punch-closed-winner", matches!(link, Some(Sock::Established { .. })), || {
            format!("{w:?} won on a socket that is {link:?}")
        });
        if let Some(g) = GOLDEN.get() {
            assert_eq!(w.session_key, g.key, "not the key both honest sides derive");
        }
        assert!(w.candidate < self.socks.len());
        if self.socks.iter().enumerate().any(|(k, s)| k != w.candidate && !matches!(s, Sock::Closed)) {
            reach("punch: won with another candidate still open (the shell closes it)");
        }
    }
}

/// Two punches and the network between them.
struct Pair {
    /// Leader, follower.
    sides: [Side; 2],
    conns: Vec<Conn>,
    now: Instant,
    /// Connections the leader sent a Confirm on.
    confirmed: Vec<usize>,
}

/// A TCP connection between the two sides: each side's socket, and the bytes in flight to each side.
struct Conn {
    ends: [usize; 2],
    pipes: [Pipe; 2],
    open: bool,
}

impl Pair {
    fn new(case: Case) -> Pair {
        let sides = [Side::new(Role::Leader, case), Side::new(Role::Follower, case)];
        Pair { sides, conns: Vec::new(), now: Instant::ZERO, confirmed: Vec::new() }
    }

    fn run(&mut self, u: &mut Unstructured) {
        golden();
        for _ in 0..128 {
            if u.is_empty() {
                break;
            }
            let s = below(u, 2);
            let op = byte(u) % 10;
            trace!("{}: op {op} side {s}; sockets {:?} / {:?}", self.now, self.sides[0].socks, self.sides[1].socks);
            match op {
                0 | 1 => self.connect(below(u, 2), below(u, 2)),
                2 => self.syn_arrives(s, below(u, 2)),
                3 => self.reset(s, below(u, 2), flag(u)),
                4 => self.transfer(s, below(u, 2), chunk(u)),
                5 => self.send(s, below(u, 2)),
                6 if !self.conns.is_empty() => {
                    let c = below(u, self.conns.len());
                    self.conns[c].pipes[s].fault(u);
                }
                7 => self.flush(),
                _ => self.tick(step(u)),
            }
            self.check();
        }
    }

    /// Time passes; both shells run a round.
    fn tick(&mut self, step: Duration) {
        self.now += step;
        for s in 0..2 {
            let actions = self.sides[s].drive(self.now);
            for action in actions {
                self.apply(s, action);
            }
            self.after_decision(s);
        }
    }

    /// Carry out an action on the model's sockets.
    fn apply(&mut self, s: usize, action: Action) {
        let (k, sock) = match action {
            Action::Dial { candidate, target } => (candidate, Sock::SynSent(target)),
            Action::Listen { candidate } => (candidate, Sock::Listening),
            // Quietly: the other end hears nothing.
            Action::Close { candidate } => (candidate, Sock::Closed),
            Action::Abort { candidate } => {
                self.hang_up(s, candidate, Sock::Closed);
                (candidate, Sock::Closed)
            }
        };
        if let Some(c) = self.sides[s].socks[k].conn() {
            self.conns[c].open = false;
        }
        self.sides[s].socks[k] = sock;
    }

    /// Once a side has decided, its shell closes every socket but the winner's (module docs, step 5).
    fn after_decision(&mut self, s: usize) {
        let Some(result) = self.sides[s].decided else { return };
        let winner = result.ok().map(|w| w.candidate);
        for k in 0..self.sides[s].socks.len() {
            if Some(k) != winner && self.sides[s].socks[k] != Sock::Closed {
                self.hang_up(s, k, Sock::Closed);
                self.sides[s].socks[k] = Sock::Closed;
            }
        }
    }

    /// Side `s` ends the connection of its socket `k`: the other end sees `peer_sees`.
    fn hang_up(&mut self, s: usize, k: usize, peer_sees: Sock) {
        let Some(c) = self.sides[s].socks[k].conn() else { return };
        self.conns[c].open = false;
        let j = self.conns[c].ends[1 - s];
        if self.sides[1 - s].socks[j].conn() == Some(c) {
            self.sides[1 - s].socks[j] = peer_sees;
        }
    }

    /// A SYN meets: the leader's socket `a` and the follower's socket `b` connect, if one dialled the
    /// other and the other dialled back on the same path (simultaneous open) or was listening.
    fn connect(&mut self, a: usize, b: usize) {
        let (Some(&sa), Some(&sb)) = (self.sides[0].socks.get(a), self.sides[1].socks.get(b)) else { return };
        let [l, f] = &self.sides;
        let waiting = |s: Sock| matches!(s, Sock::Listening | Sock::SynReceived);
        // Where each side's SYN went, and so what the other sees as its remote.
        let seen = |side: &Side, to: SocketAddr, peer: &Side| if to == peer.lan { side.lan } else { side.public };
        let (ra, rb) = match (sa, sb) {
            (Sock::SynSent(ta), Sock::SynSent(tb)) if ta == f.public && tb == l.public => (ta, tb),
            (Sock::SynSent(ta), s) if waiting(s) && (ta == f.public || ta == f.lan) => (ta, seen(l, ta, f)),
            (s, Sock::SynSent(tb)) if waiting(s) && (tb == l.public || tb == l.lan) => (seen(f, tb, l), tb),
            _ => return,
        };
        let conn = self.conns.len();
        self.conns.push(Conn { ends: [a, b], pipes: [Pipe::new(), Pipe::new()], open: true });
        self.sides[0].socks[a] = Sock::Established { conn, remote: ra };
        self.sides[1].socks[b] = Sock::Established { conn, remote: rb };
        reach(if matches!((sa, sb), (Sock::SynSent(_), Sock::SynSent(_))) { "punch: simultaneous open" } else { "punch: a listener took a SYN" });
    }

    /// The other side's SYN reaches a listening socket, which answers (half open).
    fn syn_arrives(&mut self, s: usize, k: usize) {
        let (me, peer) = (&self.sides[s], &self.sides[1 - s]);
        let dialled = peer.socks.iter().any(|p| matches!(p, Sock::SynSent(t) if *t == me.public || *t == me.lan));
        if dialled && me.socks.get(k) == Some(&Sock::Listening) {
            self.sides[s].socks[k] = Sock::SynReceived;
        }
    }

    /// Side `s`'s socket `k` is reset (a RST from a router or the peer) or, if connected, the other
    /// end closes (`fin`).
    fn reset(&mut self, s: usize, k: usize, fin: bool) {
        let Some(&sock) = self.sides[s].socks.get(k) else { return };
        match sock.conn() {
            Some(_) if fin => {
                self.hang_up(s, k, Sock::Closed);
                self.sides[s].socks[k] = Sock::Closing;
            }
            Some(_) => {
                self.hang_up(s, k, Sock::Closed);
                self.sides[s].socks[k] = Sock::Closed;
            }
            None if sock != Sock::Closed => self.sides[s].socks[k] = Sock::Closed,
            None => {}
        }
    }

    /// Side `s` sends what its candidate `k` has: a PeerAuth, and from the leader a Confirm.
    fn send(&mut self, s: usize, k: usize) {
        if k >= self.sides[s].socks.len() {
            return;
        }
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.sides[s].punch.transmit(k, &mut buf) {
            let message = Message::parse_bytes(&buf[..n]).expect("a punch's frame parses");
            let conn = self.sides[s].socks[k].conn();
            match message {
                Message::PeerAuth(_) => {
                    if let Some(g) = GOLDEN.get() {
                        assert_eq!(buf[..n], g.auth[s][..], "not its PeerAuth");
                    }
                }
                Message::Confirm => self.confirm_sent(s, conn),
                other => panic!("a punch sent {other:?}"),
            }
            if let Some(c) = conn.filter(|c| self.conns[*c].open) {
                self.conns[c].pipes[1 - s].send(&buf[..n]);
            }
        }
        self.check();
    }

    /// Only the leader confirms; once per connection; a second connection only once the first is
    /// given up.
    fn confirm_sent(&mut self, s: usize, conn: Option<usize>) {
        assert_eq!(self.sides[s].role, Role::Leader, "the follower sent Confirm");
        let Some(c) = conn else { return };
        assert!(!self.confirmed.contains(&c), "a second Confirm on connection {c}");
        for &other in &self.confirmed {
            let leader_end = self.conns[other].ends[0];
            assert_ne!(self.sides[0].socks[leader_end].conn(), Some(other), "Confirm on {c} while {other} is still confirmed");
            reach("punch: Confirm on a second connection after the first was given up");
        }
        self.confirmed.push(c);
    }

    /// Bytes in flight to side `s`'s socket `k` reach its punch.
    fn transfer(&mut self, s: usize, k: usize, max: usize) {
        let Some(c) = self.sides.get(s).and_then(|side| side.socks.get(k)).and_then(|sock| sock.conn()) else { return };
        let punch = &mut self.sides[s].punch;
        self.conns[c].pipes[s].deliver(max, |rest| punch.receive(k, &FastVerifier, rest));
    }

    /// Everything moves: both sides send and receive all they can, then run a round.
    fn flush(&mut self) {
        for s in 0..2 {
            for k in 0..self.sides[s].socks.len() {
                self.send(s, k);
            }
        }
        for s in 0..2 {
            for k in 0..self.sides[s].socks.len() {
                self.transfer(s, k, usize::MAX);
            }
        }
        self.tick(Duration::ZERO);
    }

    /// Two winners are one connection, with one key.
    fn check(&self) {
        let winner = |s: usize| match self.sides[s].decided {
            Some(Ok(w)) => Some(w),
            _ => None,
        };
        if let (Some(a), Some(b)) = (winner(0), winner(1)) {
            reach("punch: both won");
            let conn = |s: usize, w: Winner| self.sides[s].socks[w.candidate].conn();
            // The shells closed everything else, so each winner's socket is what it won on; unless the
            // network has since reset it.
            if let (Some(ca), Some(cb)) = (conn(0, a), conn(1, b)) {
                assert_eq!(ca, cb, "the two sides won on different connections");
            }
            assert_eq!(a.session_key, b.session_key);
        }
        for s in 0..2 {
            if let Some(Ok(w)) = self.sides[s].decided {
                if let Sock::Established { remote, .. } = self.sides[s].socks[w.candidate] {
                    assert_eq!(w.remote, remote, "the winner's remote is not its socket's");
                }
            }
        }
    }
}

/// One punch, observed and fed at random.
struct Solo {
    side: Side,
    now: Instant,
}

impl Solo {
    fn new(case: Case, role: Role) -> Solo {
        Solo { side: Side::new(role, case), now: Instant::ZERO }
    }

    fn run(&mut self, u: &mut Unstructured) {
        let g = golden();
        let role = self.side.role;
        for _ in 0..128 {
            if u.is_empty() {
                break;
            }
            // Candidate indices past the last included: the machine must ignore them.
            let k = below(u, 3);
            match byte(u) % 6 {
                0 | 1 => self.side.punch.observe(k, link(u)),
                2 => {
                    let bytes = match byte(u) % 5 {
                        0 | 1 => g.auth[usize::from(role.other().to_u8())].clone(),
                        2 => input::frame(&Message::Confirm),
                        3 => input::frame(&input::message(u)),
                        _ => input::garbage(u),
                    };
                    let mut pipe = Pipe::new();
                    pipe.send(&bytes);
                    if one_in(u, 4) {
                        pipe.fault(u);
                    }
                    let punch = &mut self.side.punch;
                    pipe.deliver(chunk(u), |rest| punch.receive(k, &FastVerifier, rest));
                }
                3 => {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    while let Some(n) = self.side.punch.transmit(k, &mut buf) {
                        match Message::parse_bytes(&buf[..n]) {
                            Ok(Message::PeerAuth(_)) => assert_eq!(buf[..n], g.auth[usize::from(role.to_u8())][..]),
                            Ok(Message::Confirm) => assert_eq!(role, Role::Leader, "the follower sent Confirm"),
                            other => panic!("a punch sent {other:?}"),
                        }
                    }
                    self.side.check_result();
                }
                _ => {
                    self.now += step(u);
                    self.side.drive(self.now);
                }
            }
        }
    }
}

/// How far time moves: as [`input::step`], but at most 20 s, which crosses every deadline of a punch.
/// A longer stall only costs time here: the first poll after it walks the shared schedule up to the
/// present (a SHA-512 per slot, about 15 slots a second).
fn step(u: &mut Unstructured) -> Duration {
    let step = input::step(u);
    if step > Duration::from_secs(20) {
        Duration::from_secs(20)
    } else {
        step
    }
}

/// Any link a shell could report.
fn link(u: &mut Unstructured) -> Link {
    match byte(u) % 6 {
        0 => Link::Closed,
        1 => Link::Listening,
        2 => Link::SynSent,
        3 => Link::SynReceived,
        4 => Link::Established { local: input::endpoint(u), remote: input::endpoint(u) },
        _ => Link::Closing,
    }
}
