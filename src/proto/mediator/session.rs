//! The mediator's side of one peer connection: Hello → Challenge → Proof, then Pings while waiting; in
//! version 2, after the Match, the join of the relay (module docs of [`super`]).

use core::net::SocketAddr;

use super::{ConnId, MediatorConfig, Notice, Registrant};
use crate::identity::{PublicKey, Verifier};
use crate::proto::transcript;
use crate::time::{elapsed, saturating_sub, Duration, Instant};
use crate::wire::{self, AbortReason, Challenge, FrameReader, Hello, Mapping, Message, Nonce};
use crate::wire::{Pong, Proof, Role};

/// What a session asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionEvent {
    /// The proof verified: call [`Table::register`](super::Table::register) and hand the outcome's
    /// notices out.
    Verified(Registrant),
    /// A waiting peer's round trip was measured again: call
    /// [`Table::update_rtt`](super::Table::update_rtt).
    Rtt(PublicKey, Duration),
    /// The session aborted (an Abort is queued; transmit it, then close). If `waiting` holds a key, the peer
    /// was in the table: call [`Table::remove`](super::Table::remove).
    Aborted {
        /// Why.
        reason: AbortReason,
        /// The key to remove from the table, if the peer was waiting.
        waiting: Option<PublicKey>,
    },
    /// Version 2: a follower asked for the relay: tell its leader ([`Notice::PartnerRequested`]).
    RelayRequested {
        /// The leader's connection.
        leader: ConnId,
    },
    /// Version 2: a leader has both requests: admit the relay ([`Table::settle`](super::Table::settle)).
    RelayJoin {
        /// The follower's connection.
        follower: ConnId,
    },
}

/// The other side of a pair offered a relay, as one of its sessions knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Partner {
    conn: ConnId,
    /// Our role in the pair: the leader decides the join.
    role: Role,
    /// Leader: the follower has asked for the relay.
    requested: bool,
    /// The partner's connection ended.
    gone: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitProof {
        hello: Hello,
        sent_at: Option<Instant>,
    },
    Verified(PublicKey),
    Waiting {
        key: PublicKey,
        ping: Option<Ping>,
        next_ping: Instant,
    },
    /// Matched and lingering; with the partner when a relay was offered.
    Matched(Option<Partner>),
    /// Version 2: asked for the relay; the partner has not (yet). Bytes after the request are held.
    RelayWaiting(Partner),
    /// Version 2: the relay is joined (Relayed queued or sent); the connection is the relay's.
    Relaying(Partner),
    /// Waiting to flush the queue, then closed.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ping {
    token: u32,
    sent_at: Option<Instant>,
}

/// The mediator's side of one peer connection, as a sans-IO state machine.
#[derive(Debug, Clone)]
pub struct Session {
    config: MediatorConfig,
    observed: SocketAddr,
    nonce: Nonce,
    /// The protocol version of the registration (its Hello's); every frame we send carries it.
    version: u8,
    /// The other peer of a pair offered a relay, until the relay is joined or the partner is gone:
    /// told when this connection ends ([`departure`](Self::departure)).
    partner: Option<ConnId>,
    state: State,
    deadline: Instant,
    queue: heapless::Deque<Message, 4>,
    reader: FrameReader,
    next_token: u32,
}

impl Session {
    /// A new connection from `observed` (the peer's address as this mediator sees it), with a fresh random
    /// `nonce` for its challenge.
    pub fn new(
        config: MediatorConfig,
        observed: SocketAddr,
        nonce: Nonce,
        now: Instant,
    ) -> Session {
        Session {
            config,
            observed,
            nonce,
            version: wire::VERSION,
            partner: None,
            state: State::AwaitHello,
            deadline: now + config.step_timeout,
            queue: heapless::Deque::new(),
            reader: FrameReader::new(),
            next_token: 1,
        }
    }

    /// The key of the peer, once its proof verified.
    pub fn key(&self) -> Option<PublicKey> {
        match self.state {
            State::Verified(key) | State::Waiting { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The key this session holds in the table, if any:
    /// [`Table::connection_ended`](super::Table::connection_ended) removes it when the connection closes.
    pub fn waiting_key(&self) -> Option<PublicKey> {
        match self.state {
            State::Waiting { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether the connection should now be closed (everything queued has been transmitted).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the peer was matched (the connection lingers for the punch, or waits for the relay).
    pub fn is_matched(&self) -> bool {
        matches!(self.state, State::Matched(_) | State::RelayWaiting(_))
    }

    /// Version 2: whether the relay is joined: once [`transmit`](Self::transmit) has handed out the
    /// Relayed frame, the connection is the relay's (spliced with the partner's).
    pub fn is_relaying(&self) -> bool {
        matches!(self.state, State::Relaying(_))
    }

    /// Version 2: whether bytes received now are relay payload, not frames: after our RelayRequest
    /// ([`receive`](Self::receive) consumes none of them; hold them for the partner).
    pub fn holds_payload(&self) -> bool {
        matches!(self.state, State::RelayWaiting(_) | State::Relaying(_))
    }

    /// Version 2: the partner's connection and our role in the pair, once a relay is joined.
    pub fn relay_pair(&self) -> Option<(ConnId, Role)> {
        match self.state {
            State::Relaying(p) => Some((p.conn, p.role)),
            _ => None,
        }
    }

    /// Whether the session wants notices from other sessions now: while waiting in the table, and in
    /// version 2 while its pair may still join a relay.
    pub fn wants_notices(&self) -> bool {
        self.waiting_key().is_some() || self.partner.is_some()
    }

    /// The notice for the partner when this connection ends (whatever the reason), unless the relay was
    /// joined: the partner must not wait for a relay with a peer that left.
    pub fn departure(&self) -> Option<(ConnId, Notice)> {
        self.partner.map(|conn| (conn, Notice::PartnerGone))
    }

    /// Abort the session (e.g. on shutdown). Returns the event to act on, unless already ending or
    /// relaying (the stream is then the peers').
    pub fn abort(&mut self, reason: AbortReason) -> Option<SessionEvent> {
        if matches!(
            self.state,
            State::Closing | State::Closed | State::Relaying(_)
        ) {
            return None;
        }
        let waiting = self.waiting_key();
        self.queue.clear();
        let _ = self.queue.push_back(Message::Abort(reason));
        self.state = State::Closing;
        Some(SessionEvent::Aborted { reason, waiting })
    }

    /// Apply a notice from the table.
    pub fn notify(&mut self, now: Instant, notice: Notice) -> Option<SessionEvent> {
        match (self.state, notice) {
            (State::Matched(_) | State::RelayWaiting(_), Notice::Abort(reason)) => {
                return self.abort(reason)
            }
            (State::Matched(_) | State::RelayWaiting(_), notice) => {
                return self.relay_notice(notice)
            }
            (State::Closing | State::Closed | State::Relaying(_), _) => return None,
            _ => {}
        }
        match notice {
            Notice::Wait(wait) => {
                let State::Verified(key) = self.state else {
                    return None;
                };
                let wait_ms = wait.total_millis().min(u32::MAX as u64) as u32;
                let _ = self.queue.push_back(Message::Registered { wait_ms });
                self.state = State::Waiting {
                    key,
                    ping: None,
                    next_ping: now + self.config.ping_interval,
                };
                None
            }
            Notice::Match { message, partner } => {
                let _ = self.queue.push_back(Message::Match(message));
                let offered = message.paths.is_some_and(|p| p.relay_after_ms > 0);
                let partner = offered.then_some(Partner {
                    conn: partner,
                    role: message.role,
                    requested: false,
                    gone: false,
                });
                self.partner = partner.map(|p| p.conn);
                self.state = State::Matched(partner);
                self.deadline = now + self.config.linger;
                None
            }
            Notice::RetryAfter(d) => {
                let millis = d.total_millis().min(u32::MAX as u64) as u32;
                self.queue.clear();
                let _ = self.queue.push_back(Message::RetryAfter { millis });
                self.state = State::Closing;
                None
            }
            Notice::Abort(reason) => self.abort(reason),
            Notice::PartnerRequested | Notice::RelayGo | Notice::PartnerGone => None,
        }
    }

    /// A notice about the relay, once matched.
    fn relay_notice(&mut self, notice: Notice) -> Option<SessionEvent> {
        let (State::Matched(Some(mut p)) | State::RelayWaiting(mut p)) = self.state else {
            return None;
        };
        let waiting = matches!(self.state, State::RelayWaiting(_));
        match notice {
            Notice::PartnerRequested if waiting => return self.join(p),
            Notice::PartnerRequested => p.requested = true,
            Notice::PartnerGone if waiting => {
                self.partner = None;
                return self.abort(AbortReason::PeerGone);
            }
            Notice::PartnerGone => {
                self.partner = None;
                p.gone = true;
            }
            Notice::RelayGo if waiting => {
                self.partner = None;
                let _ = self.queue.push_back(Message::Relayed);
                self.state = State::Relaying(p);
                return None;
            }
            _ => return None,
        }
        self.state = State::Matched(Some(p));
        None
    }

    /// The leader has both requests: the table decides ([`SessionEvent::RelayJoin`]).
    fn join(&mut self, p: Partner) -> Option<SessionEvent> {
        self.state = State::RelayWaiting(p);
        Some(SessionEvent::RelayJoin { follower: p.conn })
    }

    /// Our RelayRequest, once matched.
    fn relay_request(&mut self, partner: Option<Partner>) -> Option<SessionEvent> {
        let Some(p) = partner else {
            return self.abort(AbortReason::RelayRefused);
        };
        if p.gone {
            return self.abort(AbortReason::PeerGone);
        }
        self.state = State::RelayWaiting(p);
        match (p.role, p.requested) {
            (Role::Leader, true) => self.join(p),
            (Role::Leader, false) => None,
            (Role::Follower, _) => Some(SessionEvent::RelayRequested { leader: p.conn }),
        }
    }

    /// Write the next frame to send into `buf` (at least [`wire::MAX_FRAME_LEN`] bytes).
    pub fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let Some(message) = self.queue.pop_front() else {
            if self.state == State::Closing {
                self.state = State::Closed;
            }
            return None;
        };
        // Round trips are timed from the moment a probe leaves.
        match (&mut self.state, message) {
            (State::AwaitProof { sent_at, .. }, Message::Challenge(_)) => *sent_at = Some(now),
            (State::Waiting { ping: Some(p), .. }, Message::Ping { token }) if p.token == token => {
                p.sent_at = Some(now)
            }
            _ => {}
        }
        let len = message.emit_bytes_in(self.version, buf);
        if self.queue.is_empty() && self.state == State::Closing {
            self.state = State::Closed;
        }
        len
    }

    /// When [`poll`](Self::poll) must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::AwaitHello
            | State::AwaitProof { .. }
            | State::Matched(_)
            | State::RelayWaiting(_) => Some(self.deadline),
            State::Waiting {
                ping, next_ping, ..
            } => match ping {
                Some(Ping {
                    sent_at: Some(at), ..
                }) => Some(at + self.config.ping_timeout),
                Some(_) => None, // queued, not yet sent
                None => Some(next_ping),
            },
            State::Verified(_) | State::Relaying(_) | State::Closing | State::Closed => None,
        }
    }

    /// Check deadlines and send Pings.
    pub fn poll(&mut self, now: Instant) -> Option<SessionEvent> {
        match self.state {
            State::AwaitHello | State::AwaitProof { .. } if now >= self.deadline => {
                self.abort(AbortReason::Timeout)
            }
            State::Matched(_) if now >= self.deadline => {
                self.state = State::Closed;
                None
            }
            // The partner never asked within our linger.
            State::RelayWaiting(_) if now >= self.deadline => {
                self.partner = None;
                self.abort(AbortReason::PeerGone)
            }
            State::Waiting {
                key,
                ping: None,
                next_ping,
            } if now >= next_ping => {
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                let _ = self.queue.push_back(Message::Ping { token });
                self.state = State::Waiting {
                    key,
                    ping: Some(Ping {
                        token,
                        sent_at: None,
                    }),
                    next_ping,
                };
                None
            }
            State::Waiting {
                ping: Some(Ping {
                    sent_at: Some(at), ..
                }),
                ..
            } if now >= at + self.config.ping_timeout => self.abort(AbortReason::Unresponsive),
            _ => None,
        }
    }

    /// Feed bytes received from the peer. Returns how many were consumed and any event. Protocol errors
    /// abort the session (an Abort is queued and [`SessionEvent::Aborted`] returned).
    pub fn receive<V: Verifier>(
        &mut self,
        now: Instant,
        verifier: &V,
        data: &[u8],
    ) -> (usize, Option<SessionEvent>) {
        if self.holds_payload() {
            // Relay payload: the caller holds it for the partner.
            return (0, None);
        }
        let matched_v1 = matches!(self.state, State::Matched(_)) && self.version == wire::VERSION;
        if matched_v1 || matches!(self.state, State::Closing | State::Closed) {
            // Nothing more is expected; discard.
            return (data.len(), None);
        }
        let (used, message) = self.reader.read(data);
        if let State::Matched(partner) = self.state {
            // Version 2, matched: only a RelayRequest means something; anything else is discarded.
            let event = match message {
                Some(Ok(Message::RelayRequest)) => self.relay_request(partner),
                _ => None,
            };
            return (used, event);
        }
        let event = match message {
            None => None,
            Some(Err(wire::Error::UnsupportedVersion(_))) => {
                self.abort(AbortReason::UnsupportedVersion)
            }
            Some(Err(_)) => self.abort(AbortReason::Malformed),
            Some(Ok(message)) => self.process(now, verifier, message),
        };
        (used, event)
    }

    fn process<V: Verifier>(
        &mut self,
        now: Instant,
        verifier: &V,
        message: Message,
    ) -> Option<SessionEvent> {
        match (self.state, message) {
            (State::AwaitHello, Message::Hello(hello)) => self.hello(now, hello),
            (State::AwaitProof { hello, sent_at }, Message::Proof(proof)) => {
                self.proof(now, verifier, &hello, sent_at, proof)
            }
            (State::Waiting { key, ping, .. }, Message::Pong(pong)) => match ping {
                Some(Ping {
                    token,
                    sent_at: Some(at),
                }) if pong.token == token => self.pong(now, key, at, pong),
                // A late Pong for an older token is harmless.
                _ => None,
            },
            _ => self.abort(AbortReason::UnexpectedMessage),
        }
    }

    /// Hello: challenge it (unless it wants itself). Its version is the session's.
    fn hello(&mut self, now: Instant, hello: Hello) -> Option<SessionEvent> {
        if hello.relay.is_some() {
            self.version = wire::VERSION_2;
        }
        if hello.key == hello.want {
            return self.abort(AbortReason::SelfMatch);
        }
        let _ = self.queue.push_back(Message::Challenge(self.challenge()));
        self.state = State::AwaitProof {
            hello,
            sent_at: None,
        };
        self.deadline = now + self.config.step_timeout;
        None
    }

    /// Proof: verify it over the transcript we rebuild, and measure the round trip.
    fn proof<V: Verifier>(
        &mut self,
        now: Instant,
        verifier: &V,
        hello: &Hello,
        sent_at: Option<Instant>,
        proof: Proof,
    ) -> Option<SessionEvent> {
        let t = transcript::registration(hello, &self.challenge());
        if verifier
            .verify(&hello.key, t.as_bytes(), &proof.signature)
            .is_err()
        {
            return self.abort(AbortReason::BadProof);
        }
        let rtt = saturating_sub(
            sent_at.map_or(Duration::ZERO, |at| elapsed(now, at)),
            Duration::from_millis(proof.hold_ms.into()),
        );
        self.state = State::Verified(hello.key);
        Some(SessionEvent::Verified(Registrant {
            key: hello.key,
            want: hello.want,
            nonce: hello.nonce,
            observed: self.observed,
            local: hello.local,
            rtt,
            relay: hello.relay,
            mapping: Mapping::Unknown,
        }))
    }

    /// The Pong to our Ping sent `at`: a new round-trip sample; the next Ping in `ping_interval`.
    fn pong(
        &mut self,
        now: Instant,
        key: PublicKey,
        at: Instant,
        pong: Pong,
    ) -> Option<SessionEvent> {
        let rtt = saturating_sub(elapsed(now, at), Duration::from_millis(pong.hold_ms.into()));
        self.state = State::Waiting {
            key,
            ping: None,
            next_ping: now + self.config.ping_interval,
        };
        Some(SessionEvent::Rtt(key, rtt))
    }

    fn challenge(&self) -> Challenge {
        Challenge {
            nonce: self.nonce,
            observed: self.observed,
        }
    }
}
