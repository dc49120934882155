//! Linux conntrack's TCP tracking, as a Linux NAT router applies it to every segment it forwards.
//!
//! A Linux router (nftables or iptables `masquerade`) NATs only packets that belong to a conntrack
//! entry. For TCP, `net/netfilter/nf_conntrack_proto_tcp.c` follows each entry through a state machine
//! and checks every segment against the sequence and acknowledgement windows it has seen in each
//! direction. A segment that fails (with the default `nf_conntrack_tcp_be_liberal = 0`) is **INVALID**:
//! it loses its entry, so it is not NATted. Going out it leaves with the private source address (and
//! the next router drops it); coming in it is dropped by a firewall that admits only
//! `ct state established,related`, or reaches the router's own stack. This module is that tracker for
//! one entry, a pure function of the segments it is shown, following the kernel's code of the 6.x
//! series (function names in the comments are the kernel's).
//!
//! What it models:
//!
//! - **The state table** `tcp_conntracks[dir][index][state]`, indexed by direction (the
//!   side whose packet created the entry sends *original*), the segment's kind
//!   (`get_conntrack_index`: RST, SYN, SYN|ACK, FIN, ACK) and the state: SYN_SENT, SYN_SENT2 (a
//!   reply-direction SYN in SYN_SENT: a simultaneous open), SYN_RECV, ESTABLISHED, the FIN states,
//!   TIME_WAIT, CLOSE (after a RST); `sIV` (invalid) and `sIG` (ignore: let through, state unchanged).
//! - **`nf_conntrack_tcp_packet`**: a new original-direction SYN on an entry in TIME_WAIT or CLOSE
//!   kills it and starts a new one if the entry was closed by a FIN or by a RST from the same side
//!   ([`Verdict::Reopen`]); otherwise the SYN is let through unchecked (`TCP_CONNTRACK_IGNORE`), and
//!   a SYN|ACK answering such a SYN resynchronises the entry. In a simultaneous open the reply
//!   direction's ACK completes SYN_RECV (`IP_CT_TCP_SIMULTANEOUS_OPEN`). A RST is checked against the
//!   highest ACK seen; an entry whose only reply was a RST is deleted at once ([`Verdict::Kill`]).
//!   Timeouts per state, and a SYN retransmitted before any reply does not renew the entry.
//! - **`tcp_in_window`**, per direction `td_end` (highest sequence sent + length), `td_maxend` (highest
//!   ACK + window seen from the other side), `td_maxwin` (largest window), `td_maxack`, `td_scale`
//!   (window scaling, only when both SYNs carried the option): a segment is in window if
//!   `before(seq, sender.td_maxend + 1)` (else INVALID), `before(ack, receiver.td_end + 1)` (else
//!   INVALID), `after(end, sender.td_end - receiver.td_maxwin - 1)` and
//!   `after(ack, receiver.td_end - MAXACKWINDOW - 1)` (else ignored: let through, not learnt from).
//!   A SYN whose end is `after` the sender's `td_end`, in SYN_SENT or SYN_RECV, re-initialises that
//!   direction (RFC 793: a restarted TCP "must only be sure to use sequence numbers larger than those
//!   recently used"); one "before" it does not, so the entry keeps the first SYN's sequence space.
//! - **`tcp_new`**: an entry starts with a SYN, or (`nf_conntrack_tcp_loose = 1`) with any ACK, picked
//!   up mid-stream and then tracked liberally; other segments cannot start one.
//!
//! Why it matters to a hole punch: smoltcp draws a fresh random ISN for every socket. When a peer's
//! first SYN was dropped by the other router and it dials the same 5-tuple again (or answers the
//! peer's SYN from a listening socket), its router's entry still holds the first SYN's `td_end`. A
//! re-dial whose ISN lies "before" it passes while nothing came back, but once the peer's SYN has
//! arrived the entry (SYN_SENT2) refuses our SYN|ACK's sequence space (ignored) and every later
//! segment of ours (the state table has no path from SYN_SENT2 for an ACK: INVALID), so our data leaves
//! un-NATted and is lost. Linux's own re-dials are immune: its ISNs (RFC 6528) move forward per 4-tuple.
//!
//! Not modelled: SACK blocks (ACK = SACK here), NAT sequence adjustment (helpers), the SYN-proxy
//! keep-alive case, `nf_conntrack_tcp_ignore_invalid_rst`, per-net sysctls other than their defaults
//! (`be_liberal = 0`, `loose = 1`, `max_retrans = 3`).

use core::fmt;

use embassy_time::Duration;

use crate::packet::Tcp;

/// Direction of a segment relative to its entry: the side whose packet created the entry sends in
/// the original direction (`IP_CT_DIR_ORIGINAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the side that opened the entry.
    Original,
    /// From the other side.
    Reply,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }

    fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// An entry's TCP state (`enum tcp_conntrack`), in the kernel's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcpState {
    /// `NONE`: a new entry before its first segment.
    None,
    /// `SYN_SENT`: the original side's SYN went through.
    SynSent,
    /// `SYN_RECV`: a SYN|ACK went through.
    SynRecv,
    /// `ESTABLISHED`.
    Established,
    /// `FIN_WAIT`.
    FinWait,
    /// `CLOSE_WAIT`.
    CloseWait,
    /// `LAST_ACK`.
    LastAck,
    /// `TIME_WAIT`.
    TimeWait,
    /// `CLOSE`: a RST went through.
    Close,
    /// `SYN_SENT2`: a SYN from each side (simultaneous open).
    SynSent2,
}

impl TcpState {
    /// Its timeout (`tcp_timeouts`): how long the entry lives without a packet that refreshes it.
    pub fn timeout(self) -> Duration {
        Duration::from_secs(match self {
            TcpState::None | TcpState::SynSent | TcpState::SynSent2 => 120,
            TcpState::SynRecv => 60,
            TcpState::Established => 5 * 24 * 3600,
            TcpState::FinWait | TcpState::TimeWait => 120,
            TcpState::CloseWait => 60,
            TcpState::LastAck => 30,
            TcpState::Close => 10,
        })
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        })
    }
}

/// `TCP_CONNTRACK_RETRANS` / `TCP_CONNTRACK_UNACK`: the shorter timeout of an entry whose segments are
/// retransmitted or left unacknowledged.
const RETRANS_TIMEOUT: Duration = Duration::from_secs(300);
/// `nf_conntrack_tcp_max_retrans`.
const MAX_RETRANS: u8 = 3;
/// `MAXACKWINCONST`: the least window an ACK may lag behind by.
const MAX_ACK_WINDOW: u32 = 66000;
/// `TCP_MAX_WSCALE`.
const MAX_WSCALE: u8 = 14;

/// What a segment is to the state table (`get_conntrack_index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Index {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

impl Index {
    fn of(seg: &Tcp) -> Index {
        if seg.rst {
            Index::Rst
        } else if seg.syn {
            if seg.ack {
                Index::SynAck
            } else {
                Index::Syn
            }
        } else if seg.fin {
            Index::Fin
        } else if seg.ack {
            Index::Ack
        } else {
            Index::None
        }
    }

    fn row(self) -> usize {
        match self {
            Index::Syn => 0,
            Index::SynAck => 1,
            Index::Fin => 2,
            Index::Ack => 3,
            Index::Rst => 4,
            Index::None => 5,
        }
    }
}

/// An entry of the state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    To(TcpState),
    /// `sIV`.
    Invalid,
    /// `sIG`.
    Ignore,
}

const SS: Next = Next::To(TcpState::SynSent);
const SR: Next = Next::To(TcpState::SynRecv);
const ES: Next = Next::To(TcpState::Established);
const FW: Next = Next::To(TcpState::FinWait);
const CW: Next = Next::To(TcpState::CloseWait);
const LA: Next = Next::To(TcpState::LastAck);
const TW: Next = Next::To(TcpState::TimeWait);
const CL: Next = Next::To(TcpState::Close);
const S2: Next = Next::To(TcpState::SynSent2);
const IV: Next = Next::Invalid;
const IG: Next = Next::Ignore;

/// `tcp_conntracks[dir][index][state]`, columns in [`TcpState`] order
/// (NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2);
/// rows SYN, SYN|ACK, FIN, ACK, RST, none.
const TABLE: [[[Next; 10]; 6]; 2] = [
    // Original direction.
    [
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // Reply direction.
    [
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

fn table(dir: Dir, index: Index, state: TcpState) -> Next {
    TABLE[dir.index()][index.row()][state as usize]
}

/// `before(a, b)` of sequence numbers (RFC 1982 arithmetic).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `after(a, b)`.
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// What the router does with a segment, as the tracker decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In window: the segment belongs to the entry (it is NATted) and updated it; `refresh` is the
    /// entry's new timeout, if the segment renews it.
    Accept {
        /// The entry's new lifetime from now (`None`: unchanged).
        refresh: Option<Duration>,
    },
    /// Let through as the entry's (NATted) without updating it (`TCP_CONNTRACK_IGNORE`,
    /// `NFCT_TCP_IGNORE`); why.
    Ignore(&'static str),
    /// INVALID: the segment loses its entry and is not NATted; why (the kernel's log message).
    Invalid(&'static str),
    /// The entry is deleted and the segment looked up again, starting a new entry (`-NF_REPEAT`).
    Reopen,
    /// The segment passes (NATted) and the entry is deleted: a RST was the only reply.
    Kill,
}

impl Verdict {
    /// Whether the segment goes through NATted.
    pub fn passes(&self) -> bool {
        matches!(
            self,
            Verdict::Accept { .. } | Verdict::Ignore(_) | Verdict::Kill
        )
    }
}

/// Per-direction flags (`IP_CT_TCP_FLAG_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    window_scale: bool,
    close_init: bool,
    be_liberal: bool,
    data_unacknowledged: bool,
    maxack_set: bool,
}

/// What the tracker knows of one direction (`struct ip_ct_tcp_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    /// Highest `seq + len` sent.
    td_end: u32,
    /// Highest `ack + window` received from the other side: the sender may send up to here.
    td_maxend: u32,
    /// Largest window advertised (scaled).
    td_maxwin: u32,
    /// Highest ACK sent.
    td_maxack: u32,
    td_scale: u8,
    flags: Flags,
}

impl Seen {
    /// `tcp_options`: the window-scale option of a SYN.
    fn options(&mut self, seg: &Tcp) {
        self.td_scale = 0;
        self.flags = Flags {
            be_liberal: self.flags.be_liberal,
            ..Flags::default()
        };
        if let (true, Some(shift)) = (seg.syn, seg.window_scale) {
            self.td_scale = shift.min(MAX_WSCALE);
            self.flags.window_scale = true;
        }
    }

    /// `nf_ct_tcp_state_reset`.
    fn reset(&mut self) {
        *self = Seen {
            flags: Flags {
                be_liberal: self.flags.be_liberal,
                ..Flags::default()
            },
            ..Seen::default()
        };
    }
}

/// The last segment seen (`last_*` of `struct ip_ct_tcp`), for the special cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Last {
    dir: Dir,
    index: Index,
    seq: u32,
    ack: u32,
    end: u32,
    win: u16,
    /// Window scaling of an ignored original-direction SYN (`last_wscale`, `last_flags`).
    wscale: Option<u8>,
    /// `IP_CT_TCP_SIMULTANEOUS_OPEN`.
    simultaneous_open: bool,
    /// `IP_CT_EXP_CHALLENGE_ACK`.
    challenge_ack: bool,
}

/// One conntrack entry's TCP tracking (`struct ip_ct_tcp` and the entry's status bits it uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpTrack {
    state: TcpState,
    seen: [Seen; 2],
    last: Last,
    retrans: u8,
    /// `IPS_SEEN_REPLY`.
    seen_reply: bool,
    /// `IPS_ASSURED`.
    assured: bool,
}

/// Where `nf_conntrack_tcp_packet` goes after its `switch` on the new state.
enum Step {
    /// Check the window, then commit `new` (with `old` as the state it came from).
    Window { old: TcpState, new: TcpState },
    /// Commit without the window check (`goto in_window`).
    Commit { old: TcpState, new: TcpState },
    /// Done.
    Return(Verdict),
}

impl TcpTrack {
    /// `tcp_new`: the entry the segment starts, in the original direction, or why it cannot start one.
    /// The caller then passes the same segment to [`TcpTrack::packet`], as the kernel does.
    pub fn new(seg: &Tcp) -> Result<TcpTrack, &'static str> {
        valid_flags(seg)?;
        let end = seg.seq.wrapping_add(seg.segment_len());
        let maxwin = u32::from(seg.window).max(1);
        let mut sender = Seen {
            td_end: end,
            td_maxwin: maxwin,
            ..Seen::default()
        };
        match table(Dir::Original, Index::of(seg), TcpState::None) {
            Next::To(TcpState::SynSent) => {
                sender.td_maxend = end;
                sender.options(seg);
            }
            Next::To(_) => {
                // Picked up mid-stream (`nf_conntrack_tcp_loose`): tracked liberally from now on.
                sender.td_maxend = end.wrapping_add(maxwin);
                sender.flags.be_liberal = true;
            }
            _ => return Err("invalid new"),
        }
        let receiver = Seen {
            flags: Flags {
                be_liberal: sender.flags.be_liberal,
                ..Flags::default()
            },
            ..Seen::default()
        };
        Ok(TcpTrack {
            state: TcpState::None,
            seen: [sender, receiver],
            last: Last {
                dir: Dir::Original,
                index: Index::None,
                seq: 0,
                ack: 0,
                end: 0,
                win: 0,
                wscale: None,
                simultaneous_open: false,
                challenge_ack: false,
            },
            retrans: 0,
            seen_reply: false,
            assured: false,
        })
    }

    /// Its state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// Whether a segment from the reply direction has gone through (`IPS_SEEN_REPLY`).
    pub fn seen_reply(&self) -> bool {
        self.seen_reply
    }

    /// `nf_conntrack_tcp_packet`: track `seg`, sent in direction `dir`, and say what becomes of it.
    pub fn packet(&mut self, dir: Dir, seg: &Tcp) -> Verdict {
        // `tcp_error`: flag combinations no TCP sends.
        if let Err(why) = valid_flags(seg) {
            return Verdict::Invalid(why);
        }
        let verdict = match self.step(dir, seg) {
            Step::Return(v) => v,
            Step::Window { old, new } => match self.in_window(dir, seg) {
                Verdict::Accept { .. } => self.commit(dir, seg, old, new),
                other => other,
            },
            Step::Commit { old, new } => self.commit(dir, seg, old, new),
        };
        // `nf_conntrack_in` marks the entry as having seen a reply once a reply passes.
        if dir == Dir::Reply && verdict.passes() {
            self.seen_reply = true;
        }
        verdict
    }

    /// The `switch (new_state)` of `nf_conntrack_tcp_packet`.
    fn step(&mut self, dir: Dir, seg: &Tcp) -> Step {
        let old = self.state;
        let index = Index::of(seg);
        match table(dir, index, old) {
            Next::Invalid => Step::Return(Verdict::Invalid("invalid state")),
            Next::To(TcpState::SynSent) if old >= TcpState::TimeWait => {
                // RFC 1122 re-open from TIME_WAIT, or a side that aborted starting again.
                let closed_by_fin = self.seen.iter().any(|s| s.flags.close_init);
                if closed_by_fin || (self.last.dir == dir && self.last.index == Index::Rst) {
                    Step::Return(Verdict::Reopen)
                } else {
                    self.ignored(dir, seg, old)
                }
            }
            Next::Ignore => self.ignored(dir, seg, old),
            Next::To(TcpState::TimeWait)
                if old == TcpState::LastAck
                    && index == Index::Ack
                    && self.last.dir != dir
                    && self.last.index == Index::Syn
                    && self.last.challenge_ack =>
            {
                // An RFC 5961 challenge ACK, not the ACK of the last FIN.
                self.last.challenge_ack = false;
                Step::Return(Verdict::Ignore("challenge-ack ignored"))
            }
            Next::To(TcpState::SynSent2) => {
                // "tcp_conntracks table is not smart enough to handle simultaneous open."
                self.last.simultaneous_open = true;
                Step::Window {
                    old,
                    new: TcpState::SynSent2,
                }
            }
            Next::To(TcpState::SynRecv)
                if dir == Dir::Reply && index == Index::Ack && self.last.simultaneous_open =>
            {
                Step::Window {
                    old,
                    new: TcpState::Established,
                }
            }
            Next::To(TcpState::Close) if index == Index::Rst => self.rst(dir, seg, old),
            Next::To(new) => Step::Window { old, new },
        }
    }

    /// `case TCP_CONNTRACK_IGNORE`: a SYN|ACK that answers a SYN we let through resynchronises the
    /// entry; anything else is let through, noted, and does not change the entry.
    fn ignored(&mut self, dir: Dir, seg: &Tcp, old: TcpState) -> Step {
        let index = Index::of(seg);
        if index == Index::SynAck
            && self.last.index == Index::Syn
            && self.last.dir != dir
            && seg.ack_number == self.last.end
        {
            let last = self.last;
            let sender = &mut self.seen[last.dir.index()];
            sender.td_end = last.end;
            sender.td_maxend = last.end;
            sender.td_maxwin = u32::from(last.win).max(1);
            sender.td_scale = last.wscale.unwrap_or(0);
            sender.flags = Flags {
                window_scale: last.wscale.is_some(),
                ..Flags::default()
            };
            self.last.challenge_ack = false;
            self.seen[dir.index()].reset();
            return Step::Window {
                old: TcpState::SynSent,
                new: TcpState::SynRecv,
            };
        }
        self.last.index = index;
        self.last.dir = dir;
        self.last.seq = seg.seq;
        self.last.end = seg.seq.wrapping_add(seg.segment_len());
        self.last.win = seg.window;
        if old == TcpState::SynSent && index == Index::Ack && dir == Dir::Reply {
            // A possible challenge ACK answering our SYN.
            self.last.ack = seg.ack_number;
        }
        if index == Index::Syn && dir == Dir::Original {
            self.last.wscale = seg.window_scale.map(|s| s.min(MAX_WSCALE));
            self.last.simultaneous_open = false;
            self.last.challenge_ack = old == TcpState::LastAck;
        }
        Step::Return(Verdict::Ignore("packet ignored"))
    }

    /// `case TCP_CONNTRACK_CLOSE` for a RST: is it believable?
    fn rst(&mut self, dir: Dir, seg: &Tcp, old: TcpState) -> Step {
        let close = TcpState::Close;
        // `tcp_can_early_drop`: the entry is closing anyway, skip the checks.
        if matches!(
            old,
            TcpState::FinWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
                | TcpState::CloseWait
        ) {
            return Step::Commit { old, new: close };
        }
        let mut new = close;
        let receiver = self.seen[dir.other().index()];
        let established = self.state == TcpState::Established && self.assured;
        if receiver.flags.maxack_set && self.last.index != Index::Syn {
            if seg.seq == 0 && !established {
                return Step::Window { old, new };
            }
            if before(seg.seq, receiver.td_maxack) {
                return Step::Return(Verdict::Invalid("invalid rst"));
            }
            if !established || seg.seq == receiver.td_maxack {
                return Step::Window { old, new };
            }
            if self.last.index == Index::Ack && self.last.dir == dir && seg.seq == self.last.end {
                return Step::Window { old, new };
            }
            // Not exactly the expected sequence: keep the state for a possible challenge ACK.
            new = old;
        }
        let answers_ignored =
            (self.seen_reply && self.last.index == Index::Syn && self.last.dir != dir)
                || (!self.assured && self.last.index == Index::Ack);
        if answers_ignored && seg.ack_number == self.last.end {
            // A RST to a SYN or ACK we let through unchecked: delete the entry, skip the window.
            return Step::Commit { old, new };
        }
        Step::Window { old, new }
    }

    /// `tcp_init_sender`: (re)initialise direction `dir` from its SYN or SYN|ACK.
    fn init_sender(&mut self, dir: Dir, seg: &Tcp, end: u32) {
        let (s, r) = (dir.index(), dir.other().index());
        self.seen[s].td_end = end;
        self.seen[s].td_maxend = end;
        self.seen[s].td_maxwin = u32::from(seg.window).max(1);
        self.seen[s].options(seg);
        // RFC 7323: both sides must send the option to enable scaling, which only the reply tells.
        let both = self.seen[s].flags.window_scale && self.seen[r].flags.window_scale;
        if dir == Dir::Reply && !both {
            self.seen[s].td_scale = 0;
            self.seen[r].td_scale = 0;
        }
    }

    /// `tcp_in_window`, up to its checks: initialise or re-initialise the sender, then check.
    fn in_window(&mut self, dir: Dir, seg: &Tcp) -> Verdict {
        let (s, r) = (dir.index(), dir.other().index());
        let end = seg.seq.wrapping_add(seg.segment_len());
        let ack = seg.ack_number;
        if self.seen[s].td_maxwin == 0 {
            if seg.syn {
                // A SYN|ACK answering the SYN, or the reply side's SYN in a simultaneous open.
                self.init_sender(dir, seg, end);
                if !seg.ack {
                    return Verdict::Accept { refresh: None };
                }
            } else {
                // The middle of a connection whose start we did not see.
                let sender = &mut self.seen[s];
                sender.td_end = end;
                sender.td_maxwin = (u32::from(seg.window) << sender.td_scale).max(1);
                sender.td_maxend = end.wrapping_add(sender.td_maxwin);
                let receiver = &mut self.seen[r];
                if receiver.td_maxwin == 0 {
                    receiver.td_end = ack;
                    receiver.td_maxend = ack;
                } else if ack == receiver.td_end.wrapping_add(1) {
                    receiver.td_end = receiver.td_end.wrapping_add(1);
                }
            }
        } else if seg.syn
            && after(end, self.seen[s].td_end)
            && matches!(self.state, TcpState::SynSent | TcpState::SynRecv)
        {
            // RFC 793: a reinitialised TCP uses sequence numbers larger than those recently used.
            self.init_sender(dir, seg, end);
            if dir == Dir::Reply && !seg.ack {
                return Verdict::Accept { refresh: None };
            }
        }
        self.check_window(dir, seg)
    }

    /// `tcp_in_window`'s checks, and the update of both directions if the segment is in window.
    fn check_window(&mut self, dir: Dir, seg: &Tcp) -> Verdict {
        let (s, r) = (dir.index(), dir.other().index());
        let (mut seq, mut end) = (seg.seq, seg.seq.wrapping_add(seg.segment_len()));
        let ack = if !seg.ack || (seg.rst && seg.ack_number == 0) {
            // No ACK (or a broken RST's zero): pretend it acknowledged everything seen.
            self.seen[r].td_end
        } else {
            seg.ack_number
        };
        if seg.rst && seq == 0 && self.state == TcpState::SynSent {
            // A RST answering a SYN.
            seq = self.seen[s].td_end;
            end = seq;
        }
        let (sender, receiver) = (self.seen[s], self.seen[r]);
        let liberal = sender.flags.be_liberal;
        let max_ack_window = sender.td_maxwin.max(MAX_ACK_WINDOW);
        let ack_ok = after(ack, receiver.td_end.wrapping_sub(max_ack_window + 1));
        let in_recv_win = |end: u32| {
            after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            )
        };
        let unless_liberal = |v: Verdict| {
            if liberal {
                Verdict::Accept { refresh: None }
            } else {
                v
            }
        };
        if !before(seq, sender.td_maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
            if receiver.td_maxwin != 0
                && in_recv_win(end)
                && ack_ok
                && overshot <= receiver.td_maxwin
                && before(ack, receiver.td_end.wrapping_add(1))
            {
                // A TCP that sends more than the window allows: note the data, let it through.
                self.seen[s].td_end = end;
                self.seen[s].flags.data_unacknowledged = true;
                return unless_liberal(Verdict::Ignore("bytes more than expected"));
            }
            return unless_liberal(Verdict::Invalid(
                "SEQ is over upper bound (over the window of the receiver)",
            ));
        }
        if !before(ack, receiver.td_end.wrapping_add(1)) {
            return unless_liberal(Verdict::Invalid(
                "ACK is over upper bound (ACKed data not seen yet)",
            ));
        }
        if receiver.td_maxwin != 0 && !in_recv_win(end) {
            return unless_liberal(Verdict::Ignore(
                "SEQ is under lower bound (already ACKed data retransmitted)",
            ));
        }
        if !ack_ok {
            return unless_liberal(Verdict::Ignore(
                "ignored ACK under lower bound (possible overly delayed)",
            ));
        }
        self.update(dir, seg, seq, end, ack);
        Verdict::Accept { refresh: None }
    }

    /// `tcp_in_window` for an in-window segment: learn from it.
    fn update(&mut self, dir: Dir, seg: &Tcp, seq: u32, end: u32, ack: u32) {
        let (s, r) = (dir.index(), dir.other().index());
        let win = if seg.syn {
            u32::from(seg.window)
        } else {
            u32::from(seg.window) << self.seen[s].td_scale
        };
        let sender = &mut self.seen[s];
        sender.td_maxwin = sender.td_maxwin.max(win);
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags.data_unacknowledged = true;
        }
        if seg.ack && (!sender.flags.maxack_set || after(ack, sender.td_maxack)) {
            sender.td_maxack = ack;
            sender.flags.maxack_set = true;
        }
        let sender_maxend = sender.td_maxend;
        let receiver = &mut self.seen[r];
        if receiver.td_maxwin != 0 && after(end, sender_maxend) {
            receiver.td_maxwin = receiver
                .td_maxwin
                .wrapping_add(end.wrapping_sub(sender_maxend));
        }
        if after(ack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
            receiver.td_maxend = ack.wrapping_add(win).wrapping_add(u32::from(win == 0));
        }
        if ack == receiver.td_end {
            receiver.flags.data_unacknowledged = false;
        }
        if Index::of(seg) == Index::Ack {
            let last = &mut self.last;
            if last.dir == dir
                && last.seq == seq
                && last.ack == ack
                && last.end == end
                && last.win == seg.window
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                (last.dir, last.seq, last.ack, last.end, last.win) =
                    (dir, seq, ack, end, seg.window);
                self.retrans = 0;
            }
        }
    }

    /// The end of `nf_conntrack_tcp_packet` (`in_window:`): move to `new`, pick the timeout.
    fn commit(&mut self, dir: Dir, seg: &Tcp, old: TcpState, new: TcpState) -> Verdict {
        let index = Index::of(seg);
        self.last.index = index;
        self.last.dir = dir;
        self.state = new;
        if old != new && new == TcpState::FinWait {
            self.seen[dir.index()].flags.close_init = true;
        }
        let unacknowledged = self.seen.iter().any(|s| s.flags.data_unacknowledged);
        let mut timeout = if self.retrans >= MAX_RETRANS && new.timeout() > RETRANS_TIMEOUT {
            RETRANS_TIMEOUT
        } else if index == Index::Rst {
            TcpState::Close.timeout()
        } else if (unacknowledged || self.last.win == 0) && new.timeout() > RETRANS_TIMEOUT {
            RETRANS_TIMEOUT
        } else {
            new.timeout()
        };
        if !self.seen_reply {
            if seg.rst {
                // "If only reply is a RST, we can consider ourselves not to have an established
                // connection": delete the entry at once.
                return Verdict::Kill;
            }
            if index == Index::Syn && old == TcpState::SynSent {
                // A SYN retransmitted before any reply does not keep the entry alive.
                return Verdict::Accept { refresh: None };
            }
            if new == TcpState::Established {
                timeout = timeout.min(RETRANS_TIMEOUT);
            }
        } else if !self.assured
            && matches!(old, TcpState::SynRecv | TcpState::Established)
            && new == TcpState::Established
        {
            self.assured = true;
        }
        Verdict::Accept {
            refresh: Some(timeout),
        }
    }
}

/// `tcp_error`'s `tcp_valid_flags`: SYN, SYN|ACK, RST, RST|ACK, FIN|ACK, ACK (PSH, URG, ECE, CWR aside).
fn valid_flags(seg: &Tcp) -> Result<(), &'static str> {
    // (SYN, FIN, RST, ACK): a SYN with or without ACK, a RST with or without ACK, FIN|ACK, ACK.
    let valid = matches!(
        (seg.syn, seg.fin, seg.rst, seg.ack),
        (true, false, false, _)
            | (false, false, true, _)
            | (false, true, false, true)
            | (false, false, false, true)
    );
    if valid {
        Ok(())
    } else {
        Err("invalid tcp flag combination")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// A segment from the original side (A) or the reply side (B); only the fields conntrack reads
    /// matter.
    fn seg(flags: &str, seq: u32, ack: u32, len: usize) -> Tcp {
        Tcp {
            src: ep("192.168.1.2:5000"),
            dst: ep("192.0.2.1:5000"),
            syn: flags.contains('S'),
            ack: flags.contains('.'),
            rst: flags.contains('R'),
            fin: flags.contains('F'),
            seq,
            ack_number: ack,
            payload_len: len,
            window: 2048,
            window_scale: flags.contains('S').then_some(0),
        }
    }

    fn accepted(v: Verdict) -> bool {
        matches!(v, Verdict::Accept { .. })
    }

    /// Our SYN with ISN `a1` opened the entry; the peer's SYN never came back (its router dropped ours).
    fn syn_sent(a1: u32) -> TcpTrack {
        let first = seg("S", a1, 0, 0);
        let mut t = TcpTrack::new(&first).unwrap();
        assert!(accepted(t.packet(Dir::Original, &first)));
        assert_eq!(t.state(), TcpState::SynSent);
        t
    }

    /// The late peer's SYN (ISN `b`) arrives, our stack answers SYN|ACK with ISN `a`, the peer ACKs,
    /// and we send 60 bytes: what happens to that data segment?
    fn late_peer_then_data(t: &mut TcpTrack, a: u32, b: u32) -> Verdict {
        assert!(accepted(t.packet(Dir::Reply, &seg("S", b, 0, 0))));
        assert_eq!(t.state(), TcpState::SynSent2);
        let synack = t.packet(Dir::Original, &seg("S.", a, b + 1, 0));
        assert!(synack.passes(), "{synack:?}");
        assert!(t.packet(Dir::Reply, &seg(".", b + 1, a + 1, 0)).passes());
        t.packet(Dir::Original, &seg(".", a + 1, b + 1, 60))
    }

    #[test]
    fn a_re_dial_with_a_larger_isn_re_initialises_the_entry_and_connects() {
        let (a1, a2, b) = (1_000_000, 3_000_000, 77);
        let mut t = syn_sent(a1);
        assert!(t.packet(Dir::Original, &seg("S", a2, 0, 0)).passes());
        assert!(accepted(late_peer_then_data(&mut t, a2, b)));
        assert_eq!(t.state(), TcpState::Established);
        assert!(accepted(t.packet(Dir::Reply, &seg(".", b + 1, a2 + 61, 0))));
    }

    #[test]
    fn a_re_dial_with_a_smaller_isn_passes_but_its_data_goes_invalid() {
        let (a1, a2, b) = (3_000_000, 1_000_000, 77);
        let mut t = syn_sent(a1);
        // The SYN itself passes: nothing came back yet, so there is no window to be outside of.
        assert!(t.packet(Dir::Original, &seg("S", a2, 0, 0)).passes());
        assert_eq!(t.state(), TcpState::SynSent);
        // The SYN|ACK is let through (below the window) without moving the entry out of SYN_SENT2,
        // so the data that follows has no state-table path.
        assert_eq!(
            late_peer_then_data(&mut t, a2, b),
            Verdict::Invalid("invalid state")
        );
        assert_eq!(t.state(), TcpState::SynSent2);
    }

    #[test]
    fn a_syn_ack_from_a_listener_with_a_fresh_isn_ahead_of_the_first_syn_is_invalid() {
        let mut t = syn_sent(1_000_000);
        assert!(t.packet(Dir::Reply, &seg("S", 77, 0, 0)).passes());
        let v = t.packet(Dir::Original, &seg("S.", 2_000_000_000, 78, 0));
        assert_eq!(
            v,
            Verdict::Invalid("SEQ is over upper bound (over the window of the receiver)")
        );
    }

    #[test]
    fn simultaneous_open_reaches_established() {
        let (a, b) = (500, 9000);
        let mut t = syn_sent(a);
        assert!(accepted(t.packet(Dir::Reply, &seg("S", b, 0, 0))));
        assert_eq!(t.state(), TcpState::SynSent2);
        // Each side answers the other's SYN with SYN|ACK (smoltcp), then ACKs the other's SYN|ACK.
        assert!(accepted(t.packet(Dir::Original, &seg("S.", a, b + 1, 0))));
        assert_eq!(t.state(), TcpState::SynRecv);
        assert_eq!(
            t.packet(Dir::Reply, &seg("S.", b, a + 1, 0)),
            Verdict::Ignore("packet ignored")
        );
        assert!(accepted(t.packet(Dir::Reply, &seg(".", b + 1, a + 1, 0))));
        assert_eq!(t.state(), TcpState::Established);
        assert!(accepted(
            t.packet(Dir::Original, &seg(".", a + 1, b + 1, 100))
        ));
        assert!(accepted(
            t.packet(Dir::Reply, &seg(".", b + 1, a + 101, 30))
        ));
        assert!(t.seen_reply());
    }

    #[test]
    fn a_rst_as_the_only_reply_kills_the_entry() {
        let mut t = syn_sent(500);
        assert_eq!(t.packet(Dir::Reply, &seg("R.", 0, 501, 0)), Verdict::Kill);
    }

    #[test]
    fn rst_closes_and_a_new_syn_from_the_side_that_reset_re_opens() {
        let (a, b) = (500, 9000);
        let mut t = syn_sent(a);
        assert!(t.packet(Dir::Reply, &seg("S", b, 0, 0)).passes());
        // We abort (RST) after the peer's SYN: the entry goes to CLOSE and stays 10 s.
        assert_eq!(
            t.packet(Dir::Original, &seg("R", a + 1, 0, 0)),
            Verdict::Accept {
                refresh: Some(Duration::from_secs(10))
            }
        );
        assert_eq!(t.state(), TcpState::Close);
        // Our new SYN (any ISN) deletes it and starts a new entry.
        assert_eq!(t.packet(Dir::Original, &seg("S", 7, 0, 0)), Verdict::Reopen);
    }

    #[test]
    fn in_close_a_reply_syn_is_invalid_and_our_syn_after_the_peer_s_rst_is_only_let_through() {
        let (a, b) = (500, 9000);
        let mut t = syn_sent(a);
        assert!(t.packet(Dir::Reply, &seg("S", b, 0, 0)).passes());
        // The peer resets: CLOSE, and the RST came from the other side.
        assert!(accepted(t.packet(Dir::Reply, &seg("R", b + 1, 0, 0))));
        assert_eq!(t.state(), TcpState::Close);
        assert_eq!(
            t.packet(Dir::Reply, &seg("S", b + 50, 0, 0)),
            Verdict::Invalid("invalid state")
        );
        // Our SYN does not re-open it (the RST was not ours): let through, entry unchanged.
        assert_eq!(
            t.packet(Dir::Original, &seg("S", 100_000, 0, 0)),
            Verdict::Ignore("packet ignored")
        );
        assert_eq!(t.state(), TcpState::Close);
        // A SYN|ACK answering exactly that SYN resynchronises the entry.
        assert!(accepted(
            t.packet(Dir::Reply, &seg("S.", 4_000, 100_001, 0))
        ));
        assert_eq!(t.state(), TcpState::SynRecv);
    }

    #[test]
    fn fin_close_then_time_wait_re_opens_on_a_new_syn() {
        let (a, b) = (500, 9000);
        let mut t = syn_sent(a);
        t.packet(Dir::Reply, &seg("S.", b, a + 1, 0));
        t.packet(Dir::Original, &seg(".", a + 1, b + 1, 0));
        assert_eq!(t.state(), TcpState::Established);
        t.packet(Dir::Original, &seg("F.", a + 1, b + 1, 0));
        assert_eq!(t.state(), TcpState::FinWait);
        t.packet(Dir::Reply, &seg("F.", b + 1, a + 2, 0));
        t.packet(Dir::Original, &seg(".", a + 2, b + 2, 0));
        assert_eq!(t.state(), TcpState::TimeWait);
        assert_eq!(t.packet(Dir::Original, &seg("S", 1, 0, 0)), Verdict::Reopen);
    }

    #[test]
    fn mid_stream_pickup_is_liberal_and_nonsense_cannot_start_an_entry() {
        let ack = seg(".", 5, 6, 10);
        let mut t = TcpTrack::new(&ack).unwrap();
        assert!(accepted(t.packet(Dir::Original, &ack)));
        assert_eq!(t.state(), TcpState::Established);
        // Far outside any window, but the picked-up entry is liberal.
        assert!(t
            .packet(Dir::Reply, &seg(".", 2_000_000_000, 3, 0))
            .passes());
        assert_eq!(TcpTrack::new(&seg("R", 1, 0, 0)), Err("invalid new"));
        assert_eq!(TcpTrack::new(&seg("S.", 1, 1, 0)), Err("invalid new"));
        assert!(TcpTrack::new(&seg("SF", 1, 0, 0)).is_err());
    }

    #[test]
    fn window_scaling_counts_only_when_both_syns_carry_it() {
        let (a, b) = (500, 9000);
        // After the handshake the reply side advertises 2048 in an ACK: 2048 << 7 = 256 KiB if both
        // SYNs carried the option, else 2048. Then we send 100 bytes 5000 beyond what it acknowledged.
        let ahead = |reply_scales: bool| {
            let mut syn = seg("S", a, 0, 0);
            syn.window_scale = Some(7);
            let mut t = TcpTrack::new(&syn).unwrap();
            t.packet(Dir::Original, &syn);
            let mut synack = seg("S.", b, a + 1, 0);
            synack.window_scale = reply_scales.then_some(7);
            assert!(accepted(t.packet(Dir::Reply, &synack)));
            assert!(accepted(
                t.packet(Dir::Original, &seg(".", a + 1, b + 1, 0))
            ));
            assert!(accepted(t.packet(Dir::Reply, &seg(".", b + 1, a + 1, 0))));
            t.packet(Dir::Original, &seg(".", a + 5001, b + 1, 100))
        };
        assert!(accepted(ahead(true)));
        assert_eq!(
            ahead(false),
            Verdict::Invalid("SEQ is over upper bound (over the window of the receiver)")
        );
    }
}
