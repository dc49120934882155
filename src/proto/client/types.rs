//! What a connection attempt takes and gives: its configuration, its errors and progress events, and
//! the actions it asks of its I/O shell.

use core::fmt;
use core::net::SocketAddr;

use crate::proto::punch::Winner;
use crate::proto::punch::{self, PunchConfig, PunchError, PunchEvent};
use crate::proto::register::{Awaiting, RegisterConfig, RegisterError};
use crate::proto::{AuthError, SessionKey};
use crate::time::{Duration, Instant};
#[cfg(feature = "relay")]
pub use crate::wire::RelayMode;
use crate::wire::{AbortReason, Role};

/// Deadlines and retry policy of one connection. The defaults suit links up to a few hundred
/// milliseconds of round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectConfig {
    /// Registration deadlines (each mediator answer; the wait for the peer).
    pub register: RegisterConfig,
    /// Longest wait for the TCP connection to the mediator.
    pub mediator_timeout: Duration,
    /// The punch: its deadline, attempts, retry schedule and handshake deadline.
    pub punch: PunchConfig,
    /// Overall deadline, from the start to the authenticated connection.
    pub timeout: Duration,
    /// Shortest back-off after a RetryAfter; it doubles with each RetryAfter in a row (protocol §7.3).
    pub busy_backoff: Duration,
    /// Local port for the mediator connection and the punch; random in 49152..=65535 if `None`.
    pub local_port: Option<u16>,
    /// Protocol version 2: whether a relayed path is acceptable — as a fallback (the default), at once
    /// (for networks known to block the punch; tests), or not at all ([`RelayMode::Off`]: the client
    /// speaks protocol version 1, without probe or relay, as a version-1 mediator requires).
    #[cfg(feature = "relay")]
    pub relay: RelayMode,
    /// Protocol version 2: probe the NAT's mapping (protocol §14.2) so that a pair that cannot be
    /// punched is relayed at once rather than after the punch deadline.
    #[cfg(feature = "relay")]
    pub probe: bool,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            register: RegisterConfig::default(),
            mediator_timeout: Duration::from_secs(10),
            punch: PunchConfig::default(),
            timeout: Duration::from_secs(120),
            busy_backoff: Duration::from_secs(1),
            local_port: None,
            #[cfg(feature = "relay")]
            relay: RelayMode::Fallback,
            #[cfg(feature = "relay")]
            probe: true,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// No address to reach the mediator or the peer from (no route, no address of that family).
    NoRoute,
    /// The TCP connection to the mediator failed or timed out.
    MediatorUnreachable,
    /// The mediator closed the connection before the Match.
    MediatorClosed,
    /// The mediator ended the registration with this reason.
    Aborted(AbortReason),
    /// The mediator does not speak our protocol version (its own, when known).
    UnsupportedVersion(Option<u8>),
    /// The mediator stopped answering, or broke the protocol.
    Mediator(RegisterError),
    /// The mediator asked us to come back later than the deadline allows.
    MediatorBusy,
    /// The peer did not register with the mediator in time.
    PeerNeverCame,
    /// No connection to the peer could be established before the punch deadline (e.g. a symmetric NAT).
    PunchFailed,
    /// A connection formed but the peer did not authenticate.
    AuthFailed(AuthError),
    /// A connection formed but the peer closed it before authenticating (it rejected us).
    PeerClosed,
    /// The overall deadline passed.
    Timeout,
    /// The shell's sockets cannot carry the connection: a handle that is not a TCP socket of the set,
    /// buffers smaller than a frame ([`wire::MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN)), or no
    /// candidate socket.
    BadSocket,
    /// The network stack has fewer free socket slots than the connection needs (one for the mediator
    /// connection and one per candidate socket): give its `StackResources` more.
    SocketSetFull,
    /// Protocol version 2: the mediator would not relay the pair, or ended the relay before it was
    /// joined, with this reason (`RelayRefused`, `RelayFull`, `PeerGone`, `ShuttingDown`…).
    #[cfg(feature = "relay")]
    Relay(AbortReason),
    /// A mediator given by host name did not resolve to an address (feature `dns`): no such name,
    /// no A record, or no DNS server answered in time.
    #[cfg(feature = "dns")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
    MediatorNameUnresolved,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoRoute => f.write_str("no address to connect from"),
            Error::MediatorUnreachable => f.write_str("mediator unreachable"),
            Error::MediatorClosed => f.write_str("mediator closed the connection"),
            Error::Aborted(r) => write!(f, "mediator aborted: {}", r),
            Error::UnsupportedVersion(v) => {
                fmt::Display::fmt(&RegisterError::UnsupportedVersion(*v), f)
            }
            Error::Mediator(e) => write!(f, "mediator: {}", e),
            Error::MediatorBusy => f.write_str("mediator busy"),
            Error::PeerNeverCame => f.write_str("peer did not come"),
            Error::PunchFailed => f.write_str("could not reach the peer"),
            Error::AuthFailed(e) => write!(f, "authentication failed: {}", e),
            Error::PeerClosed => f.write_str("peer closed the connection"),
            Error::Timeout => f.write_str("timed out"),
            Error::BadSocket => f.write_str("unusable socket"),
            Error::SocketSetFull => f.write_str("no free socket slot"),
            #[cfg(feature = "relay")]
            Error::Relay(r) => write!(f, "no relay: {}", r),
            #[cfg(feature = "dns")]
            Error::MediatorNameUnresolved => f.write_str("mediator name did not resolve"),
        }
    }
}

impl core::error::Error for Error {}

impl Error {
    /// Whether a mediator that failed this way before the Match is left for the next of the pair's
    /// ranking (protocol §13.2): when it cannot take our registration at all — so the peer cannot be
    /// waiting there and, coming to it, will be turned away the same way — moving on loses nothing.
    /// An answer about us or the pair (the peer did not come, our registration was replaced or
    /// refused, our deadline passed) ends the attempt: the mediator works, and the peer may be there.
    pub fn moves_on(&self) -> bool {
        matches!(
            self,
            Error::NoRoute
                | Error::MediatorUnreachable
                | Error::MediatorClosed
                | Error::UnsupportedVersion(_)
                | Error::Mediator(_)
                | Error::Aborted(
                    AbortReason::ShuttingDown
                        | AbortReason::TableFull
                        | AbortReason::TooManyConnections
                )
        )
    }
}

impl From<RegisterError> for Error {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Aborted(AbortReason::PeerTimeout)
            | RegisterError::Timeout(Awaiting::Match) => Error::PeerNeverCame,
            RegisterError::Aborted(AbortReason::UnsupportedVersion) => {
                Error::UnsupportedVersion(None)
            }
            RegisterError::Aborted(r) => Error::Aborted(r),
            RegisterError::UnsupportedVersion(v) => Error::UnsupportedVersion(v),
            e => Error::Mediator(e),
        }
    }
}

impl From<PunchError> for Error {
    fn from(e: PunchError) -> Self {
        match e {
            PunchError::NoTarget => Error::NoRoute,
            PunchError::Unreachable => Error::PunchFailed,
            PunchError::AuthFailed(e) => Error::AuthFailed(e),
            PunchError::PeerClosed => Error::PeerClosed,
        }
    }
}

/// Progress, for logs and timelines. Read with [`Client::next_event`](super::Client::next_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectEvent {
    /// The TCP connection to the mediator is up, from this local endpoint.
    MediatorConnected(SocketAddr),
    /// The mediator sees us at this public endpoint.
    Challenged(SocketAddr),
    /// The mediator accepted our proof; waiting for the peer.
    Registered,
    /// The mediator in use failed before the Match ([`Error::moves_on`]): the next of the pair's
    /// ranking is dialled.
    NextMediator {
        /// How the mediator failed.
        failed: Error,
        /// The rank of the next one (0: the first choice).
        rank: usize,
    },
    /// The mediator paired us.
    Matched {
        /// Our role.
        role: Role,
        /// The peer's public endpoint.
        peer: SocketAddr,
        /// When the punch starts.
        start_at: Instant,
        /// Whether several candidates race (peers share a public address).
        racing: bool,
    },
    /// A SYN went out to this endpoint (attempt number, from 1).
    Dialing(SocketAddr, u16),
    /// An attempt ended (reset, timed out, or stopped to listen in a slot where only the peer dials);
    /// the next goes out at our next slot of the shared schedule.
    Retrying(SocketAddr),
    /// A TCP connection to the peer is established.
    Established(SocketAddr),
    /// The peer authenticated on this connection.
    Authenticated(SocketAddr),
    /// Protocol version 2: we asked the mediator for the relay, at once (the Match said the punch
    /// cannot work) or after the punch failed.
    #[cfg(feature = "relay")]
    Relaying {
        /// Without a punch.
        at_once: bool,
    },
    /// Protocol version 2: both peers joined the relay; the handshake runs through the mediator.
    #[cfg(feature = "relay")]
    Relayed,
}

impl From<PunchEvent> for ConnectEvent {
    fn from(e: PunchEvent) -> Self {
        match e {
            PunchEvent::Dialing(to, n) => ConnectEvent::Dialing(to, n),
            PunchEvent::Retrying(to) => ConnectEvent::Retrying(to),
            PunchEvent::Established(to) => ConnectEvent::Established(to),
            PunchEvent::Authenticated(to) => ConnectEvent::Authenticated(to),
        }
    }
}

/// One line per event, the same in every shell's log.
impl fmt::Display for ConnectEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectEvent::MediatorConnected(l) => write!(f, "TCP to mediator up (local {})", l),
            ConnectEvent::Challenged(o) => write!(f, "mediator sees us at {}; proving key", o),
            ConnectEvent::Registered => f.write_str("registered with the mediator"),
            ConnectEvent::NextMediator { failed, rank } => {
                write!(f, "{}; trying mediator {} of the ranking", failed, rank + 1)
            }
            ConnectEvent::Matched {
                role,
                peer,
                start_at,
                racing,
            } => {
                let tenths = (start_at.total_micros() + 50) / 100;
                let (ms, tenth) = (tenths / 10, tenths % 10);
                write!(
                    f,
                    "matched as {:?}: peer at {}, punch at {}.{} ms",
                    role, peer, ms, tenth
                )?;
                if *racing {
                    f.write_str(" (same public address: racing LAN and public paths)")?;
                }
                Ok(())
            }
            ConnectEvent::Dialing(to, n) => write!(f, "SYN to {} (attempt {})", to, n),
            ConnectEvent::Retrying(to) => {
                write!(
                    f,
                    "attempt to {} ended; next SYN at our next shared slot",
                    to
                )
            }
            ConnectEvent::Established(to) => write!(f, "TCP established with {}", to),
            ConnectEvent::Authenticated(to) => write!(f, "peer authenticated on {}", to),
            #[cfg(feature = "relay")]
            ConnectEvent::Relaying { at_once: true } => {
                f.write_str("asking the mediator to relay (the NATs cannot be punched)")
            }
            #[cfg(feature = "relay")]
            ConnectEvent::Relaying { at_once: false } => {
                f.write_str("asking the mediator to relay (the punch failed)")
            }
            #[cfg(feature = "relay")]
            ConnectEvent::Relayed => f.write_str("relay joined; authenticating through it"),
        }
    }
}

/// What the shell must do with its sockets. Candidate actions are the punch's ([`punch::Action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Connect the mediator socket from local port `from_port` to the mediator (dropping whatever it
    /// held). Report a failure to start it with [`Client::fail`](super::Client::fail).
    DialMediator {
        /// Which mediator: its rank in the pair's ranking (0: the first choice; protocol §13), mapped to
        /// an address with [`rendezvous::nth`](crate::proto::rendezvous::nth).
        rank: usize,
        /// The local port; the punch will use it too (§8.1).
        from_port: u16,
    },
    /// Something to do with a candidate socket.
    Candidate(punch::Action),
    /// Protocol version 2: connect a probe socket from local port `from_port` (the punch port) to the
    /// probe endpoint of the mediator of rank `rank` ([`probe_endpoint`](super::probe_endpoint)), to
    /// send what [`transmit_probe`](super::Client::transmit_probe) hands out. A shell short of sockets
    /// may use its first candidate socket: the probe is closed before the punch needs it.
    #[cfg(feature = "relay")]
    DialProbe {
        /// Which mediator (as in [`Action::DialMediator`]).
        rank: usize,
        /// The local port.
        from_port: u16,
    },
    /// Protocol version 2: close the probe socket, without a RST where it can.
    #[cfg(feature = "relay")]
    CloseProbe,
}

/// Which socket won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Via {
    /// Candidate socket `k`: a direct connection.
    Candidate(usize),
    /// The mediator socket: the relayed stream (protocol version 2).
    Mediator,
}

/// Whether the connection is direct or relayed through the mediator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Path {
    /// A TCP connection between the peers.
    Direct,
    /// Through the mediator (protocol §14): authenticated and encrypted end to end all the same.
    Relayed,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Path::Direct => "direct",
            Path::Relayed => "relayed",
        })
    }
}

/// The connection the client won: the application's from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Won {
    /// The socket that carries it.
    pub via: Via,
    /// The peer's endpoint: as seen from here (direct), or as the mediator saw it (relayed).
    pub remote: SocketAddr,
    /// Our role.
    pub role: Role,
    /// The key both sides derived in the handshake.
    pub session_key: SessionKey,
}

impl Won {
    /// Direct or relayed.
    pub fn path(&self) -> Path {
        match self.via {
            Via::Candidate(_) => Path::Direct,
            Via::Mediator => Path::Relayed,
        }
    }

    pub(super) fn direct(w: Winner) -> Won {
        Won {
            via: Via::Candidate(w.candidate),
            remote: w.remote,
            role: w.role,
            session_key: w.session_key,
        }
    }
}
