//! The peer's side of registration: Hello → Challenge → Proof → (Registered, Pings) → Match.
//!
//! ```text
//!  SendHello ──Hello──▶ AwaitChallenge ──Challenge/sign──▶ AwaitRegistered ──Registered──▶ Waiting
//!                                                                 │                          │
//!                                                                 └────────Match─────────────┴──▶ Matched
//!  any state ──Abort / RetryAfter / bad frame / deadline──▶ Failed(RegisterError)
//! ```
//!
//! The state machine owns a [`FrameReader`], so the caller hands it raw stream bytes; it never reads a clock
//! or a socket. Deadlines: [`RegisterConfig::step_timeout`] for each answer of the mediator, and
//! [`RegisterConfig::wait_timeout`] (capped by the mediator's own wait bound) for the Match.

use core::fmt;
use core::net::SocketAddr;

use super::transcript;
use crate::identity::{PublicKey, Signer};
use crate::time::{elapsed, Duration, Instant};
use crate::wire::{self, AbortReason, Challenge, FrameReader, Hello, Match, Message, MessageType};
use crate::wire::{Nonce, Paths, Pong, Proof, RelayMode, Role};

/// Deadlines of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RegisterConfig {
    /// Longest wait for each answer of the mediator (Challenge after Hello, Registered after Proof).
    pub step_timeout: Duration,
    /// Longest wait for the other peer once registered.
    pub wait_timeout: Duration,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            step_timeout: Duration::from_secs(10),
            wait_timeout: Duration::from_secs(60),
        }
    }
}

/// Which answer of the mediator did not come in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Awaiting {
    /// No Challenge after Hello.
    Challenge,
    /// No Registered (or Match) after Proof.
    Registered,
    /// Registered, but no Match: the other peer did not come.
    Match,
}

/// Why a registration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegisterError {
    /// The mediator sent a frame that does not parse.
    Wire(wire::Error),
    /// The mediator does not speak our protocol version: its own version when it sent a frame of it,
    /// `None` when it only said so with an Abort.
    UnsupportedVersion(Option<u8>),
    /// The mediator ended the registration with this reason.
    Aborted(AbortReason),
    /// The mediator is busy: register again after this long.
    RetryAfter(Duration),
    /// The mediator sent a message that is not valid now.
    UnexpectedMessage(MessageType),
    /// A deadline passed.
    Timeout(Awaiting),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Wire(e) => write!(f, "bad frame from mediator: {}", e),
            RegisterError::UnsupportedVersion(Some(v)) => {
                write!(f, "mediator speaks protocol version {}", v)
            }
            RegisterError::UnsupportedVersion(None) => write!(
                f,
                "mediator does not speak protocol version {}",
                wire::VERSION
            ),
            RegisterError::Aborted(r) => write!(f, "mediator aborted: {}", r),
            RegisterError::RetryAfter(d) => {
                write!(f, "mediator busy, retry after {} ms", d.total_millis())
            }
            RegisterError::UnexpectedMessage(t) => write!(f, "unexpected {:?} from mediator", t),
            RegisterError::Timeout(p) => write!(f, "timed out waiting for {:?}", p),
        }
    }
}

impl core::error::Error for RegisterError {}

/// What the mediator told us, once matched: everything the punch needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PunchInfo {
    /// Our role in the pair.
    pub role: Role,
    /// When the Match arrived.
    pub matched_at: Instant,
    /// When to send the first SYN.
    pub start_at: Instant,
    /// Our public endpoint as the mediator saw it.
    pub own_observed: SocketAddr,
    /// Our nonce (sent in Hello).
    pub own_nonce: Nonce,
    /// The other peer's public endpoint as the mediator saw it.
    pub peer_observed: SocketAddr,
    /// The other peer's LAN endpoint, if it reported one.
    pub peer_local: Option<SocketAddr>,
    /// The other peer's nonce.
    pub peer_nonce: Nonce,
    /// Version 2: the mapping classes and the relay offer (protocol §14.3); `None` from a version-1
    /// Match.
    pub paths: Option<Paths>,
}

impl PunchInfo {
    /// Both peers appear behind the same public address, so they may share a LAN: candidates race (the
    /// LAN endpoint too, when the peer reported one) and the leader confirms which connection wins.
    ///
    /// Depends only on the two observed addresses, which both peers know alike, so both always agree
    /// on whether a Confirm will come.
    pub fn same_public_address(&self) -> bool {
        self.own_observed.ip() == self.peer_observed.ip()
    }
}

/// Progress worth telling the application about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RegisterEvent {
    /// The mediator challenged us; it sees us at this endpoint.
    Challenged {
        /// Our public endpoint as the mediator sees it.
        observed: SocketAddr,
    },
    /// The mediator accepted our proof and holds us at most this long.
    Registered {
        /// The mediator's wait bound.
        wait: Duration,
    },
    /// The other peer is here.
    Matched(PunchInfo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitChallenge,
    AwaitRegistered { observed: SocketAddr },
    Waiting { observed: SocketAddr },
    Matched(PunchInfo),
    Failed(RegisterError),
}

/// A frame queued for transmission, with the time its trigger arrived (to report the hold time).
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    message: Message,
    since: Instant,
}

/// The peer's registration with a mediator, as a sans-IO state machine.
#[derive(Debug, Clone)]
pub struct Registration {
    config: RegisterConfig,
    hello: Hello,
    state: State,
    deadline: Instant,
    outgoing: Option<Outgoing>,
    reader: FrameReader,
}

impl Registration {
    /// Start a registration of `own` wanting `want`, with a fresh random `nonce`; `local` is our end of the
    /// mediator connection (for peers on one LAN). Hello is ready to [`transmit`](Self::transmit) at once.
    pub fn new(
        config: RegisterConfig,
        own: PublicKey,
        want: PublicKey,
        nonce: Nonce,
        local: Option<SocketAddr>,
        now: Instant,
    ) -> Registration {
        let hello = Hello {
            key: own,
            want,
            nonce,
            local,
            relay: None,
        };
        Registration {
            config,
            hello,
            state: State::AwaitChallenge,
            deadline: now + config.step_timeout,
            outgoing: Some(Outgoing {
                message: Message::Hello(hello),
                since: now,
            }),
            reader: FrameReader::new(),
        }
    }

    /// Register in protocol version 2, saying `relay` about the relayed path (protocol §4.1); call
    /// before the first [`transmit`](Self::transmit). Without it the registration is version 1.
    pub fn with_relay(mut self, relay: RelayMode) -> Registration {
        self.hello.relay = Some(relay);
        self.outgoing = self.outgoing.map(|out| Outgoing {
            message: Message::Hello(self.hello),
            ..out
        });
        self
    }

    /// The protocol version of this registration: every frame we send carries it.
    pub fn version(&self) -> u8 {
        match self.hello.relay {
            Some(_) if wire::SPEAKS_VERSION_2 => wire::VERSION_2,
            _ => wire::VERSION,
        }
    }

    /// The error, once failed.
    pub fn error(&self) -> Option<RegisterError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// What the Match said, once it has arrived.
    pub fn punch_info(&self) -> Option<PunchInfo> {
        match self.state {
            State::Matched(info) => Some(info),
            _ => None,
        }
    }

    /// Our public endpoint as the mediator sees it, once challenged.
    pub fn observed(&self) -> Option<SocketAddr> {
        match self.state {
            State::AwaitRegistered { observed } | State::Waiting { observed } => Some(observed),
            State::Matched(info) => Some(info.own_observed),
            State::AwaitChallenge | State::Failed(_) => None,
        }
    }

    /// Write the next frame to send into `buf` (at least [`wire::MAX_FRAME_LEN`] bytes) and return its length.
    pub fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let out = self.outgoing?;
        let hold_ms = elapsed(now, out.since).total_millis().min(u16::MAX as u64) as u16;
        let message = match out.message {
            Message::Proof(p) => Message::Proof(Proof { hold_ms, ..p }),
            Message::Pong(p) => Message::Pong(Pong { hold_ms, ..p }),
            m => m,
        };
        let len = message.emit_bytes_in(self.version(), buf)?;
        self.outgoing = None;
        Some(len)
    }

    /// When [`poll`](Self::poll) must next be called, if ever.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::Matched(_) | State::Failed(_) => None,
            _ => Some(self.deadline),
        }
    }

    /// Check deadlines.
    pub fn poll(&mut self, now: Instant) -> Result<(), RegisterError> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        if now >= self.deadline {
            let phase = match self.state {
                State::AwaitChallenge => Awaiting::Challenge,
                State::AwaitRegistered { .. } => Awaiting::Registered,
                State::Waiting { .. } => Awaiting::Match,
                State::Matched(_) | State::Failed(_) => return Ok(()),
            };
            return Err(self.fail(RegisterError::Timeout(phase)));
        }
        Ok(())
    }

    /// Feed bytes received from the mediator. Returns how many were consumed (call again with the rest)
    /// and any event. `signer` signs the Proof when the Challenge arrives.
    pub fn receive<S: Signer>(
        &mut self,
        now: Instant,
        signer: &S,
        data: &[u8],
    ) -> Result<(usize, Option<RegisterEvent>), RegisterError> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        if let State::Matched(_) = self.state {
            // Nothing more is expected; leave the bytes (the caller is about to close).
            return Ok((0, None));
        }
        let (used, message) = self.reader.read(data);
        let version = self.reader.version();
        let event = match message {
            None => Ok(None),
            // Every frame of a registration carries its version (an Abort: any, §2.2).
            Some(Ok(m)) if version != self.version() && !matches!(m, Message::Abort(_)) => {
                Err(RegisterError::UnsupportedVersion(Some(version)))
            }
            Some(Ok(message)) => self.process(now, signer, message),
            Some(Err(wire::Error::UnsupportedVersion(v))) => {
                Err(RegisterError::UnsupportedVersion(Some(v)))
            }
            Some(Err(e)) => Err(RegisterError::Wire(e)),
        };
        event.map(|event| (used, event)).map_err(|e| self.fail(e))
    }

    fn fail(&mut self, error: RegisterError) -> RegisterError {
        self.state = State::Failed(error);
        self.outgoing = None;
        error
    }

    /// Apply one message from the mediator; the caller fails the registration on an error.
    // Out of line: inlined, its message dispatch grew the firmware by ~0.4 KiB.
    #[inline(never)]
    fn process<S: Signer>(
        &mut self,
        now: Instant,
        signer: &S,
        message: Message,
    ) -> Result<Option<RegisterEvent>, RegisterError> {
        match (self.state, message) {
            (_, Message::Abort(AbortReason::UnsupportedVersion)) => {
                Err(RegisterError::UnsupportedVersion(None))
            }
            (_, Message::Abort(reason)) => Err(RegisterError::Aborted(reason)),
            (_, Message::RetryAfter { millis }) => Err(RegisterError::RetryAfter(
                Duration::from_millis(millis.into()),
            )),
            (State::AwaitChallenge, Message::Challenge(challenge)) => {
                Ok(Some(self.challenged(now, signer, &challenge)))
            }
            (State::AwaitRegistered { observed }, Message::Registered { wait_ms }) => {
                Ok(Some(self.registered(now, observed, wait_ms)))
            }
            (State::AwaitRegistered { .. } | State::Waiting { .. }, Message::Ping { token }) => {
                self.outgoing = Some(Outgoing {
                    message: Message::Pong(Pong { token, hold_ms: 0 }),
                    since: now,
                });
                Ok(None)
            }
            (
                State::AwaitRegistered { observed } | State::Waiting { observed },
                Message::Match(m),
            ) => Ok(Some(self.matched(now, observed, &m))),
            (_, other) => Err(RegisterError::UnexpectedMessage(other.msg_type())),
        }
    }

    /// The Challenge: sign the transcript, queue the Proof.
    fn challenged<S: Signer>(
        &mut self,
        now: Instant,
        signer: &S,
        challenge: &Challenge,
    ) -> RegisterEvent {
        let transcript = transcript::registration(&self.hello, challenge);
        let signature = signer.sign(transcript.as_bytes());
        self.outgoing = Some(Outgoing {
            message: Message::Proof(Proof {
                signature,
                hold_ms: 0,
            }),
            since: now,
        });
        self.state = State::AwaitRegistered {
            observed: challenge.observed,
        };
        self.deadline = now + self.config.step_timeout;
        RegisterEvent::Challenged {
            observed: challenge.observed,
        }
    }

    /// Registered: wait for the Match, at most the mediator's bound (plus the travel of its Abort).
    fn registered(&mut self, now: Instant, observed: SocketAddr, wait_ms: u32) -> RegisterEvent {
        let wait = Duration::from_millis(wait_ms.into());
        self.state = State::Waiting { observed };
        let bound = wait + self.config.step_timeout;
        self.deadline = now + self.config.wait_timeout.min(bound);
        RegisterEvent::Registered { wait }
    }

    /// The Match: everything the punch needs.
    fn matched(&mut self, now: Instant, observed: SocketAddr, m: &Match) -> RegisterEvent {
        let info = PunchInfo {
            role: m.role,
            matched_at: now,
            start_at: now + Duration::from_millis(m.start_delay_ms.into()),
            own_observed: observed,
            own_nonce: self.hello.nonce,
            peer_observed: m.peer_observed,
            peer_local: m.peer_local,
            peer_nonce: m.peer_nonce,
            paths: m.paths,
        };
        self.state = State::Matched(info);
        self.outgoing = None;
        RegisterEvent::Matched(info)
    }
}
