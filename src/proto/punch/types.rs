//! What a punch takes and gives: its configuration, the link observations and actions it trades with
//! its I/O shell, its events, errors and winner.

use core::fmt;
use core::net::SocketAddr;

use super::schedule::SlotConfig;
use crate::proto::auth::{AuthError, SessionKey};
use crate::time::Duration;
use crate::wire::Role;

/// Deadlines and retry policy of a punch. The defaults suit links up to a few hundred milliseconds of
/// round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PunchConfig {
    /// Longest time from the start time to the last attempt (a handshake under way at this deadline
    /// still runs to its own, [`auth_timeout`](Self::auth_timeout) after establishment).
    pub punch_timeout: Duration,
    /// Longest unanswered attempt on the peer's LAN endpoint (no NAT in between) before it is given up
    /// and retried at the next slot; also how long a follower's only socket listens for the leader's
    /// LAN SYN before it dials. An attempt through our NAT is never given up this way ([`plan`](super::plan())).
    pub attempt_timeout: Duration,
    /// The retry schedule shared with the peer ([`Schedule`](super::Schedule)). Both peers must use the same values to
    /// share it; keep the defaults (protocol §8.3) unless you control both.
    pub slots: SlotConfig,
    /// Independent random delay added to each retry (uniform in `0..=jitter`), on top of the shared
    /// slot time. Small: the shared schedule does the aligning; this only keeps two peers from being
    /// exactly in step by accident.
    pub jitter: Duration,
    /// Shortest time from an established connection to the end of the peer handshake; the deadline
    /// grows with the path ([`handshake_deadline`](super::handshake_deadline)).
    pub auth_timeout: Duration,
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            punch_timeout: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(3),
            slots: SlotConfig::default(),
            jitter: Duration::from_micros(500),
            auth_timeout: Duration::from_secs(5),
        }
    }
}

/// What an I/O shell sees of one socket (a candidate's, or the mediator connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Link {
    /// No connection: never opened, closed, reset or refused.
    Closed,
    /// Listening on the punch port.
    Listening,
    /// Our SYN is out, nothing heard yet (a shell that cannot tell SYN-SENT from SYN-RECEIVED reports
    /// this while its connect is pending).
    SynSent,
    /// The peer's SYN arrived; the connection is not yet established.
    SynReceived,
    /// Established, and the other end has not closed.
    Established {
        /// Our end.
        local: SocketAddr,
        /// The other end.
        remote: SocketAddr,
    },
    /// Was established, but the other end closed it, or it is closing.
    Closing,
}

/// What the shell must do with candidate socket `candidate`, all on the punch port *P*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Connect from *P* to `target` (drop whatever the socket held first, without a RST).
    Dial {
        /// Which candidate socket.
        candidate: usize,
        /// Where to.
        target: SocketAddr,
    },
    /// Hold *P*: listen on it, so that an early SYN from the peer is answered with SYN|ACK instead of a
    /// RST (§8.3). The socket is closed when this comes.
    Listen {
        /// Which candidate socket.
        candidate: usize,
    },
    /// End this attempt without sending a RST (§8.3: a RST through our own NAT would end the session it
    /// keeps for the peer). With smoltcp: `abort`, then `listen` and `abort` again, which forgets the
    /// remote.
    Close {
        /// Which candidate socket.
        candidate: usize,
    },
    /// Abort this connection (a RST is fine): the other end did not authenticate (§8.4).
    Abort {
        /// Which candidate socket.
        candidate: usize,
    },
}

/// Progress of a punch, for logs and timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PunchEvent {
    /// A SYN went out to this endpoint (attempt number, from 1).
    Dialing(SocketAddr, u16),
    /// An attempt ended (reset, timed out, or stopped to listen in a slot where only the peer dials);
    /// the next goes out at our next slot of the shared schedule.
    Retrying(SocketAddr),
    /// A connection to the peer is established.
    Established(SocketAddr),
    /// The peer authenticated on this connection, which won.
    Authenticated(SocketAddr),
}

/// Why a punch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PunchError {
    /// No target can be dialled from the punch port (the peer's addresses are of another family).
    NoTarget,
    /// No connection could be established before the punch deadline.
    Unreachable,
    /// A connection formed but the peer did not authenticate.
    AuthFailed(AuthError),
    /// A connection formed but the peer closed it before authenticating (it rejected us).
    PeerClosed,
}

impl fmt::Display for PunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PunchError::NoTarget => f.write_str("no peer address of the punch port's family"),
            PunchError::Unreachable => f.write_str("could not reach the peer"),
            PunchError::AuthFailed(e) => write!(f, "authentication failed: {}", e),
            PunchError::PeerClosed => f.write_str("peer closed the connection"),
        }
    }
}

impl core::error::Error for PunchError {}

/// The connection that won: the application's from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Winner {
    /// Which candidate socket.
    pub candidate: usize,
    /// The peer's endpoint as seen from here.
    pub remote: SocketAddr,
    /// Our role.
    pub role: Role,
    /// The key both sides derived in the handshake.
    pub session_key: SessionKey,
}
