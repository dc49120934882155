//! The client's protocol-version-2 parts (feature `relay`): the mapping probe and the relay (protocol
//! §14), as the client sequences them. The decisions are [`proto::relay`](crate::proto::relay)'s.

use core::net::SocketAddr;

use super::{Action, Client, ConnectEvent, Error, Phase, Via, Won};
use crate::identity::{Signer, Verifier};
use crate::proto::auth::{AuthError, Handshake, HandshakeParams};
use crate::proto::punch::{handshake_deadline, Link, PunchConfig, PunchError};
use crate::proto::register::{PunchInfo, RegisterError};
use crate::proto::relay::{decide, Decision, Relay, RelayError};
use crate::time::Instant;
use crate::wire::{self, Message, RelayMode, Role};

/// The mediator's probe endpoint, for a mediator at `mediator`: the same address and the next port,
/// the convention of protocol §14.2 (and the reference mediator's default); `None` for port 65535.
pub fn probe_endpoint(mediator: SocketAddr) -> Option<SocketAddr> {
    let port = mediator.port().checked_add(1)?;
    Some(SocketAddr::new(mediator.ip(), port))
}

/// Where the probe of the current registration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// None (not probing, or closed).
    Off,
    /// To be dialled at the next poll.
    Due,
    /// Dialled; the Probe goes out once connected.
    Dialing(Link),
    /// Sent; closed when the mediator closes it, or at the Match.
    Sent(Link),
}

/// The relay of a matched pair, with what the client reports once it wins.
#[derive(Debug)]
pub(super) struct Fallback {
    relay: Relay,
    role: Role,
    peer: SocketAddr,
    matched_at: Instant,
    /// `ConnectEvent::Authenticated` went out (once, whichever call finished the handshake).
    reported: bool,
}

impl Fallback {
    fn new(info: &PunchInfo) -> Fallback {
        Fallback {
            relay: Relay::offered(),
            role: info.role,
            peer: info.peer_observed,
            matched_at: info.matched_at,
            reported: false,
        }
    }

    /// Why the relay failed, if it did (an Abort while the pair punched).
    pub(super) fn failed(&self) -> Option<Error> {
        match self.relay.result()? {
            Err(e) => Some(e.into()),
            Ok(_) => None,
        }
    }

    pub(super) fn result(&self) -> Option<Result<Won, Error>> {
        let key = match self.relay.result()? {
            Ok(key) => key,
            Err(e) => return Some(Err(e.into())),
        };
        Some(Ok(Won {
            via: Via::Mediator,
            remote: self.peer,
            role: self.role,
            session_key: key,
        }))
    }

    pub(super) fn poll_at(&self) -> Option<Instant> {
        self.relay.poll_at()
    }
}

/// Whether a failed punch falls back to the relay (protocol §14.3): not when the other end answered
/// and failed to authenticate — it is not the configured peer, or the mediator lied about the pair —
/// since the relay would join the same pair; a handshake that only timed out (a lossy path) does.
pub(super) fn falls_back(error: PunchError) -> bool {
    match error {
        PunchError::AuthFailed(e) => e == AuthError::Timeout,
        PunchError::NoTarget | PunchError::Unreachable | PunchError::PeerClosed => true,
    }
}

impl From<RelayError> for Error {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Aborted(r) => Error::Relay(r),
            RelayError::Closed => Error::MediatorClosed,
            RelayError::Wire(e) => Error::Mediator(RegisterError::Wire(e)),
            RelayError::UnexpectedMessage(t) => {
                Error::Mediator(RegisterError::UnexpectedMessage(t))
            }
            RelayError::Auth(e) => Error::AuthFailed(e),
            RelayError::PeerClosed => Error::PeerClosed,
        }
    }
}

impl Client {
    /// Report what the probe socket is doing now.
    pub fn observe_probe(&mut self, link: Link) {
        self.probe = match self.probe {
            Probe::Dialing(_) => Probe::Dialing(link),
            Probe::Sent(_) => Probe::Sent(link),
            other => other,
        };
    }

    /// The Probe frame for the probe socket, once it is connected; returns its length.
    pub fn transmit_probe(&mut self, buf: &mut [u8]) -> Option<usize> {
        let Probe::Dialing(link @ Link::Established { .. }) = self.probe else {
            return None;
        };
        let probe = Message::Probe { nonce: self.nonce };
        let len = probe.emit_bytes_in(wire::VERSION_2, buf)?;
        self.probe = Probe::Sent(link);
        Some(len)
    }

    /// A new registration: probe it too (protocol version 2, unless configured off).
    pub(super) fn probe_due(&mut self) {
        let v2 = self.config.relay != RelayMode::Off;
        self.probe = match (self.probe, v2 && self.config.probe) {
            // A probe still open from an abandoned registration is closed first.
            (Probe::Off, true) => Probe::Due,
            (_, _) => self.probe,
        };
    }

    /// The registration was abandoned (back-off): its probe goes too.
    pub(super) fn probe_abandoned(&mut self) {
        if self.probe == Probe::Due {
            self.probe = Probe::Off;
        }
    }

    /// The probe's next action: dial it when due; close it when the mediator has closed it, when it
    /// failed, or once the registration is over (matched or abandoned) — the punch needs the port's
    /// sockets.
    pub(super) fn probe_action(&mut self) -> Option<Action> {
        let registering = matches!(
            self.phase,
            Phase::DialingMediator { .. } | Phase::Registering(_)
        );
        match self.probe {
            Probe::Off => None,
            Probe::Due if registering => {
                self.probe = Probe::Dialing(Link::SynSent);
                Some(Action::DialProbe {
                    rank: self.rank,
                    from_port: self.local_port,
                })
            }
            Probe::Due => {
                self.probe = Probe::Off;
                None
            }
            Probe::Dialing(Link::SynSent | Link::SynReceived | Link::Established { .. })
                if registering =>
            {
                None
            }
            Probe::Sent(Link::Established { .. }) if registering => None,
            Probe::Dialing(_) | Probe::Sent(_) => {
                self.probe = Probe::Off;
                Some(Action::CloseProbe)
            }
        }
    }

    /// The mediator connection's state matters to the relay, once offered.
    pub(super) fn observe_relay(&mut self, link: Link) {
        match &mut self.phase {
            Phase::Punching { relay: Some(f), .. } | Phase::Relaying(f) => f.relay.observe(link),
            _ => {}
        }
    }

    /// Mediator bytes, once a relay was offered: the relay machine reads them (an Abort while
    /// punching; Relayed, then the peer's handshake). `None`: not the relay's.
    pub(super) fn receive_relay<V: Verifier>(
        &mut self,
        now: Instant,
        verifier: &V,
        data: &[u8],
    ) -> Option<usize> {
        let (Phase::Punching { relay: Some(f), .. } | Phase::Relaying(f)) = &mut self.phase else {
            return None;
        };
        let joined = f.relay.is_joined();
        let used = crate::proto::feed(data, |rest| f.relay.receive(verifier, rest));
        if !joined && f.relay.is_joined() {
            // The handshake's deadline counts from the join (protocol §14.5).
            let deadline = handshake_deadline(now, f.matched_at, &self.config.punch);
            f.relay.set_deadline(deadline.min(self.deadline));
            self.event(ConnectEvent::Relayed);
        }
        self.report_relayed();
        Some(used)
    }

    /// The next frame for the relayed stream (the RelayRequest, then our handshake's); a leader whose
    /// handshake is done only once its Confirm is out finishes here.
    pub(super) fn transmit_relay(&mut self, buf: &mut [u8]) -> Option<usize> {
        let Phase::Relaying(f) = &mut self.phase else {
            return None;
        };
        let len = f.relay.transmit(buf);
        self.report_relayed();
        len
    }

    /// `Authenticated` once, when the relayed handshake has just finished (in a receive, for the
    /// follower and a leader that confirmed early; in a transmit, for a leader whose Confirm went last).
    fn report_relayed(&mut self) {
        let Phase::Relaying(f) = &mut self.phase else {
            return;
        };
        if !f.reported && matches!(f.relay.result(), Some(Ok(_))) {
            f.reported = true;
            let peer = f.peer;
            self.event(ConnectEvent::Authenticated(peer));
        }
    }

    fn handshake<S: Signer>(&mut self, signer: &S, info: &PunchInfo) -> Handshake {
        let params = HandshakeParams {
            role: info.role,
            peer: self.peer,
            own_nonce: info.own_nonce,
            peer_nonce: info.peer_nonce,
        };
        Handshake::new(signer, params, self.rng.bytes32())
    }

    /// The Match's path decision (protocol §14.3): the relay at once (entered here: `None`), or the
    /// punch, with `config`'s deadline shortened to the fallback's, and the relay it falls back to.
    pub(super) fn choose_path<S: Signer>(
        &mut self,
        signer: &S,
        info: &PunchInfo,
        config: &mut PunchConfig,
    ) -> Option<Option<Fallback>> {
        match decide(info) {
            Decision::Punch => Some(None),
            Decision::PunchThenRelay(after) => {
                config.punch_timeout = config.punch_timeout.min(after);
                Some(Some(Fallback::new(info)))
            }
            Decision::RelayNow => {
                let handshake = self.handshake(signer, info);
                self.relay(Fallback::new(info), handshake, true);
                None
            }
        }
    }

    /// The punch could not even start (no peer address of our family): the relay instead.
    pub(super) fn relay_instead<S: Signer>(
        &mut self,
        signer: &S,
        info: &PunchInfo,
        fallback: Fallback,
    ) {
        let handshake = self.handshake(signer, info);
        self.relay(fallback, handshake, false);
    }

    /// Request the relay with `handshake`'s first flight behind the request.
    fn relay(&mut self, mut fallback: Fallback, handshake: Handshake, at_once: bool) {
        fallback.relay.request(handshake, self.deadline);
        self.event(ConnectEvent::Relaying { at_once });
        self.enter(Phase::Relaying(fallback));
    }

    /// The punch failed and a relay was offered: take it (unless it failed meanwhile; then
    /// [`result`](Client::result) reports why).
    pub(super) fn fall_back(&mut self) {
        let Phase::Punching {
            punch,
            relay: relay @ Some(_),
            ..
        } = &mut self.phase
        else {
            return;
        };
        let Some(Err(error)) = punch.result() else {
            return;
        };
        if !falls_back(error) || relay.as_ref().is_some_and(|f| f.failed().is_some()) {
            return;
        }
        let handshake = punch.prepared_handshake();
        if let Some(fallback) = relay.take() {
            self.relay(fallback, handshake, false);
        }
    }

    /// The relay's deadline; the mediator connection's state was reported by `observe_mediator`.
    pub(super) fn relay_poll(&mut self, now: Instant) {
        if let Phase::Relaying(f) = &mut self.phase {
            f.relay.poll(now);
        }
    }
}
