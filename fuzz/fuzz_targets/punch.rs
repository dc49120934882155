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

#[path = "punch/pair.rs"]
mod pair;

use pair::{golden, Pair, GOLDEN};

/// When both sides start (the Match came at time zero).
fn start() -> Instant {
    Instant::from_millis(100)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Short deadlines three times in four: they cross the same states in fewer schedule slots, which
    // cost a SHA-512 each and bound this target's speed.
    let short = !one_in(&mut u, 4);
    let case = Case {
        racing: flag(&mut u),
        short,
        sockets: [1 + below(&mut u, 2), 1 + below(&mut u, 2)],
    };
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
        // The punch alone: the relay's path decision is the relay target's.
        paths: None,
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
    let n = usize::from(role.to_u8())
        | usize::from(case.racing) << 1
        | usize::from(case.short) << 2
        | (sockets - 1) << 3;
    // SAFETY: see above; the template is never used mutably.
    unsafe { core::ptr::read(&all[n]) }
}

fn make(role: Role, racing: bool, short: bool, sockets: usize) -> Punch {
    let (me, peer) = (identity(who(role)), identity(who(role.other())));
    let from = Some(endpoints(role, racing).1);
    let seed = [0x70 + role.to_u8(); 32];
    Punch::new(
        &me.keypair,
        peer.public,
        &info(role, racing),
        from,
        sockets,
        config(short),
        seed,
    )
    .expect("a target")
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
    /// What the shell last reported of each socket (the network may have changed it since).
    reported: Vec<Sock>,
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
        let plan = plan(&info(role, case.racing), Some(lan), sockets);
        let targets = plan
            .turns
            .iter()
            .map(|turns| {
                turns
                    .iter()
                    .filter_map(|t| match t {
                        Turn::Public => plan.public,
                        Turn::Lan => plan.lan,
                        Turn::Listen { .. } => None,
                    })
                    .collect()
            })
            .collect();
        let socks = vec![Sock::Closed; punch.candidates()];
        let reported = socks.clone();
        Side {
            role,
            punch,
            socks,
            reported,
            public,
            lan,
            targets,
            decided: None,
            now: Instant::ZERO,
        }
    }

    /// A shell's round at `now`: report every socket, carry out every action, until the machine has
    /// nothing more to do at this time. Returns the actions.
    fn drive(&mut self, now: Instant) -> Vec<Action> {
        assert!(now >= self.now);
        self.now = now;
        let mut actions = Vec::new();
        for round in 0..4 {
            self.reported.clone_from(&self.socks);
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
            finding("punch-stale-poll-at", fine, || {
                format!("poll_at {at:?} after polls at {now}: {:?}", self.punch)
            });
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
                assert!(
                    self.targets
                        .get(candidate)
                        .is_some_and(|t| t.contains(&target)),
                    "{action:?} not in the plan {:?}",
                    self.targets
                );
                candidate
            }
            Action::Listen { candidate }
            | Action::Close { candidate }
            | Action::Abort { candidate } => candidate,
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
        // A winner was not reset when the shell last looked (it may have been since, which the shell
        // finds out when it takes the socket). One the peer closed after its last frame may win: what
        // it sent before its FIN is there to read.
        let link = self.reported.get(w.candidate).copied();
        finding(
            "punch-closed-winner",
            matches!(link, Some(Sock::Established { .. } | Sock::Closing)),
            || format!("{w:?} won on a socket last reported {link:?}"),
        );
        if let Some(g) = GOLDEN.get() {
            assert_eq!(w.session_key, g.key, "not the key both honest sides derive");
        }
        assert!(w.candidate < self.socks.len());
        if self
            .socks
            .iter()
            .enumerate()
            .any(|(k, s)| k != w.candidate && !matches!(s, Sock::Closed))
        {
            reach("punch: won with another candidate still open (the shell closes it)");
        }
    }
}

/// One punch, observed and fed at random.
struct Solo {
    side: Side,
    now: Instant,
    short: bool,
}

impl Solo {
    fn new(case: Case, role: Role) -> Solo {
        Solo {
            side: Side::new(role, case),
            now: Instant::ZERO,
            short: case.short,
        }
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
                    // The real PeerAuth one time in five: each that verifies costs an X25519 agreement.
                    let bytes = match byte(u) % 5 {
                        0 => g.auth[usize::from(role.other().to_u8())].clone(),
                        1 | 3 => input::frame(&input::message(u)),
                        2 => input::frame(&Message::Confirm),
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
                            Ok(Message::PeerAuth(_)) => {
                                assert_eq!(buf[..n], g.auth[usize::from(role.to_u8())][..])
                            }
                            Ok(Message::Confirm) => {
                                assert_eq!(role, Role::Leader, "the follower sent Confirm")
                            }
                            other => panic!("a punch sent {other:?}"),
                        }
                    }
                    self.side.check_result();
                }
                _ => {
                    self.now += step(u, self.short);
                    self.side.drive(self.now);
                }
            }
        }
    }
}

/// How far time moves: as [`input::step`], but at most a little more than the longest a punch with
/// these deadlines can last (its deadline, then a handshake's), which crosses every deadline. A longer
/// stall would only cost time here: the first poll after it walks the shared schedule up to the
/// present, a SHA-512 per slot (about 15 slots a second), even past the punch deadline.
fn step(u: &mut Unstructured, short: bool) -> Duration {
    let c = config(short);
    let longest = c.punch_timeout + c.punch_timeout + c.auth_timeout;
    let step = input::step(u);
    if step > longest {
        longest
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
        4 => Link::Established {
            local: input::endpoint(u),
            remote: input::endpoint(u),
        },
        _ => Link::Closing,
    }
}
