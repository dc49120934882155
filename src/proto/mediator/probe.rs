//! The mediator's side of the mapping probe (protocol §14.2, `doc/mediator.md` §15): one
//! [`ProbeSession`] per connection on the probe endpoint, and [`classify`], which compares what a probe
//! saw with what the registration saw.
//!
//! A probe connection carries one frame, a version-2 Probe with the nonce of a Hello; the session
//! reports it with the connection's observed endpoint, and the connection is closed without an answer.
//! Anything else is refused like a bad registration (an Abort, then close), and a silent connection is
//! aborted at the step deadline.

use core::net::SocketAddr;

use crate::time::{Duration, Instant};
use crate::wire::{self, AbortReason, FrameReader, Mapping, Message, Nonce, RelayMode};

/// The mapping class of a registration (protocol §14.2): the Hello's relay flags, and the endpoint its
/// probe was observed at (`None`: no probe arrived), against the endpoint the registration was
/// observed at. The address counts too: a NAT that picks another public address per destination is as
/// unpredictable as one that picks another port.
pub fn classify(
    relay: Option<RelayMode>,
    observed: SocketAddr,
    probe: Option<SocketAddr>,
) -> Mapping {
    match (relay, probe) {
        (Some(RelayMode::Only), _) => Mapping::RelayOnly,
        (_, None) => Mapping::Unknown,
        (_, Some(p)) if p == observed => Mapping::Independent,
        (_, Some(_)) => Mapping::Dependent,
    }
}

/// What a probe connection reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Probed {
    /// The nonce of the Hello it belongs to.
    pub nonce: Nonce,
    /// Where the probe connection came from, as observed.
    pub observed: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitProbe,
    /// An Abort to send, then closed.
    Refusing(AbortReason),
    Closed,
}

/// One connection on the probe endpoint, as a sans-IO state machine.
#[derive(Debug, Clone)]
pub struct ProbeSession {
    observed: SocketAddr,
    deadline: Instant,
    state: State,
    reader: FrameReader,
    /// The version byte of the one frame, once it arrived.
    version: Option<u8>,
}

impl ProbeSession {
    /// A probe connection from `observed`, accepted at `now`, that must deliver its Probe within
    /// `step_timeout`.
    pub fn new(observed: SocketAddr, now: Instant, step_timeout: Duration) -> ProbeSession {
        ProbeSession {
            observed,
            deadline: now + step_timeout,
            state: State::AwaitProbe,
            reader: FrameReader::new(),
            version: None,
        }
    }

    /// Whether the connection should now be closed (after [`transmit`](Self::transmit) handed out
    /// everything).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Feed bytes received; returns how many were consumed and the probe, once it arrived. After the
    /// probe or an error, everything is consumed and ignored.
    pub fn receive(&mut self, data: &[u8]) -> (usize, Option<Probed>) {
        if self.state != State::AwaitProbe {
            return (data.len(), None);
        }
        if self.version.is_none() {
            self.version = data.first().copied();
        }
        let (used, message) = self.reader.read(data);
        let refuse = match message {
            None => return (used, None),
            Some(Ok(Message::Probe { nonce })) => {
                self.state = State::Closed;
                let observed = self.observed;
                return (used, Some(Probed { nonce, observed }));
            }
            // Version 1 has no probe: a version-1 frame here is of a version this port does not speak.
            Some(_) if self.version == Some(wire::VERSION) => AbortReason::UnsupportedVersion,
            Some(Ok(_)) => AbortReason::UnexpectedMessage,
            Some(Err(wire::Error::UnsupportedVersion(_))) => AbortReason::UnsupportedVersion,
            Some(Err(_)) => AbortReason::Malformed,
        };
        self.state = State::Refusing(refuse);
        (used, None)
    }

    /// The Abort to send when the connection is refused; then it is closed.
    pub fn transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        let State::Refusing(reason) = self.state else {
            return None;
        };
        self.state = State::Closed;
        Message::Abort(reason).emit_bytes_in(wire::VERSION_2, buf)
    }

    /// When [`poll`](Self::poll) must run next.
    pub fn poll_at(&self) -> Option<Instant> {
        (self.state == State::AwaitProbe).then_some(self.deadline)
    }

    /// Check the step deadline: a probe that did not arrive in time is refused with `Timeout`.
    pub fn poll(&mut self, now: Instant) {
        if self.state == State::AwaitProbe && now >= self.deadline {
            self.state = State::Refusing(AbortReason::Timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MAX_FRAME_LEN;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classes() {
        let seen = ep("198.51.100.1:40000");
        let fallback = Some(RelayMode::Fallback);
        assert_eq!(classify(fallback, seen, Some(seen)), Mapping::Independent);
        assert_eq!(
            classify(fallback, seen, Some(ep("198.51.100.1:40001"))),
            Mapping::Dependent
        );
        assert_eq!(
            classify(fallback, seen, Some(ep("198.51.100.2:40000"))),
            Mapping::Dependent
        );
        assert_eq!(classify(fallback, seen, None), Mapping::Unknown);
        assert_eq!(
            classify(Some(RelayMode::Only), seen, Some(seen)),
            Mapping::RelayOnly
        );
    }

    fn frame(m: Message) -> ([u8; MAX_FRAME_LEN], usize) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = m.emit_bytes_in(wire::VERSION_2, &mut buf).unwrap();
        (buf, n)
    }

    #[test]
    fn a_probe_is_reported_once_and_closes() {
        let mut s = ProbeSession::new(ep("192.0.2.1:5000"), Instant::ZERO, Duration::from_secs(10));
        let (buf, n) = frame(Message::Probe { nonce: [7; 32] });
        assert_eq!(s.receive(&buf[..5]), (5, None));
        let (used, probed) = s.receive(&buf[5..n]);
        assert_eq!(used, n - 5);
        assert_eq!(
            probed,
            Some(Probed {
                nonce: [7; 32],
                observed: ep("192.0.2.1:5000")
            })
        );
        assert!(s.is_closed());
        assert_eq!(s.transmit(&mut [0; MAX_FRAME_LEN]), None);
        assert_eq!(s.receive(&buf[..n]), (n, None));
    }

    #[test]
    fn anything_else_is_refused() {
        let cases = [
            (frame(Message::RelayRequest), AbortReason::UnexpectedMessage),
            (
                {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    let n = Message::Ping { token: 1 }.emit_bytes(&mut buf).unwrap();
                    // A version-1 frame of the Probe's type.
                    buf[1] = 0x04;
                    (buf, n)
                },
                AbortReason::UnsupportedVersion,
            ),
            (
                {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    buf[..4].copy_from_slice(&[9, 0x04, 0, 32]);
                    (buf, 4)
                },
                AbortReason::UnsupportedVersion,
            ),
            (
                {
                    let mut buf = [0u8; MAX_FRAME_LEN];
                    buf[..4].copy_from_slice(&[2, 0x04, 0, 3]);
                    (buf, 7)
                },
                AbortReason::Malformed,
            ),
        ];
        for ((buf, n), reason) in cases {
            let mut s =
                ProbeSession::new(ep("192.0.2.1:5000"), Instant::ZERO, Duration::from_secs(1));
            let (_, probed) = s.receive(&buf[..n]);
            assert_eq!(probed, None);
            let mut out = [0u8; MAX_FRAME_LEN];
            let len = s.transmit(&mut out).unwrap();
            assert_eq!(
                Message::parse_bytes(&out[..len]),
                Ok(Message::Abort(reason))
            );
            assert!(s.is_closed());
        }
    }

    #[test]
    fn a_silent_probe_times_out() {
        let mut s = ProbeSession::new(ep("192.0.2.1:5000"), Instant::ZERO, Duration::from_secs(1));
        assert_eq!(s.poll_at(), Some(Instant::from_secs(1)));
        s.poll(Instant::from_millis(999));
        assert!(!s.is_closed() && s.poll_at().is_some());
        s.poll(Instant::from_secs(1));
        let mut out = [0u8; MAX_FRAME_LEN];
        let len = s.transmit(&mut out).unwrap();
        assert_eq!(
            Message::parse_bytes(&out[..len]),
            Ok(Message::Abort(AbortReason::Timeout))
        );
    }
}
