//! The pair mode of the `punch` target: a leader and a follower punch through an in-memory network
//! the fuzzer runs.

use super::*;

/// The session key both honest sides derive, and the PeerAuth frame each sends, from a clean connect.
pub struct Golden {
    /// The session key.
    pub key: SessionKey,
    /// Indexed by the sender's role.
    pub auth: [Vec<u8>; 2],
}

/// Set once the clean connect of [`golden`] is over: checks that run during it skip the comparisons.
pub static GOLDEN: OnceLock<Golden> = OnceLock::new();

/// The golden values, made on first use by a clean connect.
pub fn golden() -> &'static Golden {
    GOLDEN.get_or_init(|| {
        let case = Case {
            racing: false,
            short: false,
            sockets: [1, 1],
        };
        let mut pair = Pair::new(case);
        pair.now = start();
        let auth = [0, 1].map(|s| {
            let remote = pair.sides[1 - s].public;
            let side = &mut pair.sides[s];
            side.socks[0] = Sock::Established { conn: 0, remote };
            side.drive(start());
            let mut buf = [0u8; MAX_FRAME_LEN];
            let n = side.punch.transmit(0, &mut buf).expect("PeerAuth first");
            buf[..n].to_vec()
        });
        // Through the normal path from here: the two PeerAuths, then the leader's Confirm.
        pair.conns.push(Conn {
            ends: [0, 0],
            pipes: [Pipe::new(), Pipe::new()],
            open: true,
        });
        pair.conns[0].pipes[1].send(&auth[0]);
        pair.conns[0].pipes[0].send(&auth[1]);
        for _ in 0..3 {
            pair.flush();
        }
        let won = |s: usize| {
            pair.sides[s]
                .punch
                .result()
                .and_then(Result::ok)
                .expect("a clean connect wins")
        };
        assert_eq!(won(0).session_key, won(1).session_key);
        Golden {
            key: won(0).session_key,
            auth,
        }
    })
}

/// Two punches and the network between them.
pub struct Pair {
    /// Leader, follower.
    sides: [Side; 2],
    conns: Vec<Conn>,
    now: Instant,
    /// Connections the leader sent a Confirm on.
    confirmed: Vec<usize>,
    /// Short deadlines.
    short: bool,
}

/// A TCP connection between the two sides: each side's socket, and the bytes in flight to each side.
pub struct Conn {
    ends: [usize; 2],
    pipes: [Pipe; 2],
    open: bool,
}

impl Pair {
    pub fn new(case: Case) -> Pair {
        let sides = [
            Side::new(Role::Leader, case),
            Side::new(Role::Follower, case),
        ];
        Pair {
            sides,
            conns: Vec::new(),
            now: Instant::ZERO,
            confirmed: Vec::new(),
            short: case.short,
        }
    }

    pub fn run(&mut self, u: &mut Unstructured) {
        golden();
        for _ in 0..128 {
            if u.is_empty() {
                break;
            }
            let s = below(u, 2);
            let op = byte(u) % 10;
            trace!(
                "{}: op {op} side {s}; sockets {:?} / {:?}",
                self.now,
                self.sides[0].socks,
                self.sides[1].socks
            );
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
                _ => self.tick(step(u, self.short)),
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
        let Some(result) = self.sides[s].decided else {
            return;
        };
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
        let Some(c) = self.sides[s].socks[k].conn() else {
            return;
        };
        self.conns[c].open = false;
        let j = self.conns[c].ends[1 - s];
        if self.sides[1 - s].socks[j].conn() == Some(c) {
            self.sides[1 - s].socks[j] = peer_sees;
        }
    }

    /// A SYN meets: the leader's socket `a` and the follower's socket `b` connect, if one dialled the
    /// other and the other dialled back on the same path (simultaneous open) or was listening.
    fn connect(&mut self, a: usize, b: usize) {
        let (Some(&sa), Some(&sb)) = (self.sides[0].socks.get(a), self.sides[1].socks.get(b))
        else {
            return;
        };
        let [l, f] = &self.sides;
        let waiting = |s: Sock| matches!(s, Sock::Listening | Sock::SynReceived);
        // Where each side's SYN went, and so what the other sees as its remote.
        let seen = |side: &Side, to: SocketAddr, peer: &Side| {
            if to == peer.lan {
                side.lan
            } else {
                side.public
            }
        };
        let (ra, rb) = match (sa, sb) {
            (Sock::SynSent(ta), Sock::SynSent(tb)) if ta == f.public && tb == l.public => (ta, tb),
            (Sock::SynSent(ta), s) if waiting(s) && (ta == f.public || ta == f.lan) => {
                (ta, seen(l, ta, f))
            }
            (s, Sock::SynSent(tb)) if waiting(s) && (tb == l.public || tb == l.lan) => {
                (seen(f, tb, l), tb)
            }
            _ => return,
        };
        let conn = self.conns.len();
        self.conns.push(Conn {
            ends: [a, b],
            pipes: [Pipe::new(), Pipe::new()],
            open: true,
        });
        self.sides[0].socks[a] = Sock::Established { conn, remote: ra };
        self.sides[1].socks[b] = Sock::Established { conn, remote: rb };
        reach(
            if matches!((sa, sb), (Sock::SynSent(_), Sock::SynSent(_))) {
                "punch: simultaneous open"
            } else {
                "punch: a listener took a SYN"
            },
        );
    }

    /// The other side's SYN reaches a listening socket, which answers (half open).
    fn syn_arrives(&mut self, s: usize, k: usize) {
        let (me, peer) = (&self.sides[s], &self.sides[1 - s]);
        let dialled = peer
            .socks
            .iter()
            .any(|p| matches!(p, Sock::SynSent(t) if *t == me.public || *t == me.lan));
        if dialled && me.socks.get(k) == Some(&Sock::Listening) {
            self.sides[s].socks[k] = Sock::SynReceived;
        }
    }

    /// Side `s`'s socket `k` is reset (a RST from a router or the peer) or, if connected, the other
    /// end closes (`fin`).
    fn reset(&mut self, s: usize, k: usize, fin: bool) {
        let Some(&sock) = self.sides[s].socks.get(k) else {
            return;
        };
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
        // A transmit can decide the result (the winner's last frame went out).
        self.sides[s].check_result();
        self.check();
    }

    /// Only the leader confirms; once per connection; a second connection only once the first is
    /// given up.
    fn confirm_sent(&mut self, s: usize, conn: Option<usize>) {
        assert_eq!(
            self.sides[s].role,
            Role::Leader,
            "the follower sent Confirm"
        );
        let Some(c) = conn else { return };
        assert!(
            !self.confirmed.contains(&c),
            "a second Confirm on connection {c}"
        );
        for &other in &self.confirmed {
            let leader_end = self.conns[other].ends[0];
            assert_ne!(
                self.sides[0].socks[leader_end].conn(),
                Some(other),
                "Confirm on {c} while {other} is still confirmed"
            );
            reach("punch: Confirm on a second connection after the first was given up");
        }
        self.confirmed.push(c);
    }

    /// Bytes in flight to side `s`'s socket `k` reach its punch.
    fn transfer(&mut self, s: usize, k: usize, max: usize) {
        let Some(c) = self
            .sides
            .get(s)
            .and_then(|side| side.socks.get(k))
            .and_then(|sock| sock.conn())
        else {
            return;
        };
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
