//! The mediator's side of one peer connection: Hello → Challenge → Proof, then Pings while waiting.

use core::net::SocketAddr;

use super::{MediatorConfig, Notice, Registrant};
use crate::identity::{PublicKey, Verifier};
use crate::proto::transcript;
use crate::time::{elapsed, saturating_sub, Duration, Instant};
use crate::wire::{self, AbortReason, Challenge, FrameReader, Hello, Message, Nonce, Pong, Proof};

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
    Matched,
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

    /// Whether the peer was matched (the connection lingers for the punch).
    pub fn is_matched(&self) -> bool {
        self.state == State::Matched
    }

    /// Abort the session (e.g. on shutdown). Returns the event to act on, unless already ending.
    pub fn abort(&mut self, reason: AbortReason) -> Option<SessionEvent> {
        if matches!(self.state, State::Closing | State::Closed) {
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
        if matches!(self.state, State::Closing | State::Closed | State::Matched) {
            return None;
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
            Notice::Match(m) => {
                let _ = self.queue.push_back(Message::Match(m));
                self.state = State::Matched;
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
        let len = message.emit_bytes(buf);
        if self.queue.is_empty() && self.state == State::Closing {
            self.state = State::Closed;
        }
        len
    }

    /// When [`poll`](Self::poll) must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::AwaitHello | State::AwaitProof { .. } | State::Matched => Some(self.deadline),
            State::Waiting {
                ping, next_ping, ..
            } => match ping {
                Some(Ping {
                    sent_at: Some(at), ..
                }) => Some(at + self.config.ping_timeout),
                Some(_) => None, // queued, not yet sent
                None => Some(next_ping),
            },
            State::Verified(_) | State::Closing | State::Closed => None,
        }
    }

    /// Check deadlines and send Pings.
    pub fn poll(&mut self, now: Instant) -> Option<SessionEvent> {
        match self.state {
            State::AwaitHello | State::AwaitProof { .. } if now >= self.deadline => {
                self.abort(AbortReason::Timeout)
            }
            State::Matched if now >= self.deadline => {
                self.state = State::Closed;
                None
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
        if matches!(self.state, State::Matched | State::Closing | State::Closed) {
            // Nothing more is expected; discard.
            return (data.len(), None);
        }
        let (used, message) = self.reader.read(data);
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

    /// Hello: challenge it (unless it wants itself).
    fn hello(&mut self, now: Instant, hello: Hello) -> Option<SessionEvent> {
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
