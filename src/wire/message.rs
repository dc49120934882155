//! Message representations: one struct (or variant) per message type, with fixed body layouts.

use core::net::SocketAddr;

use super::codes::{AbortReason, Mapping, MessageType, RelayMode, Role};
use super::{emit_endpoint, parse_endpoint, Error, Frame, Nonce, Result};
use super::{ENDPOINT_LEN, HEADER_LEN, NONCE_LEN, VERSION, VERSION_2};

use crate::identity::{PublicKey, Signature, PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// The largest body of any message type (a [`PeerAuth`]).
pub(super) const MAX_BODY_LEN: usize = PeerAuth::LEN;

// Field readers. The parsers take their body as a fixed-size array, so every offset is checked at
// compile time and the generated code has no bounds checks.

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(&bytes[at..]))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(&bytes[at..]))
}

/// The body as the fixed-size array of its type (the length was checked against the type already).
fn sized<const N: usize>(body: &[u8]) -> Result<&[u8; N]> {
    body.try_into().map_err(|_| Error::BadLength)
}

/// The body being emitted as the fixed-size array of its type: [`Frame::body_mut`] is exactly as long
/// as the header says, which `emit` has just set from the type.
fn sized_mut<const N: usize>(body: &mut [u8]) -> &mut [u8; N] {
    unwrap!(
        <&mut [u8; N]>::try_from(body).ok(),
        "body length is the message type's"
    )
}

/// Body length of a version-2 Hello: the version-1 fields and the relay flags.
pub(super) const HELLO_V2_LEN: usize = Hello::LEN + 1;
/// Body length of a version-2 Match: the version-1 fields and [`Paths`].
pub(super) const MATCH_V2_LEN: usize = Match::LEN + 4;

/// Peer → mediator, first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello {
    /// The sender's public key.
    pub key: PublicKey,
    /// The public key of the peer it wants to reach.
    pub want: PublicKey,
    /// The sender's fresh nonce; the mediator relays it to the other peer in Match.
    pub nonce: Nonce,
    /// The sender's own (LAN) endpoint of this connection, for peers behind one NAT; `None` if unknown.
    pub local: Option<SocketAddr>,
    /// Version 2: what the sender says about the relayed path. `None`: a version-1 Hello, and the
    /// registration is version 1 throughout.
    pub relay: Option<RelayMode>,
}

impl Hello {
    const KEY: usize = 0;
    const WANT: usize = Self::KEY + PUBLIC_KEY_LEN;
    const NONCE: usize = Self::WANT + PUBLIC_KEY_LEN;
    const LOCAL: usize = Self::NONCE + NONCE_LEN;
    /// Body length.
    pub const LEN: usize = Self::LOCAL + ENDPOINT_LEN;

    fn parse(b: &[u8; Self::LEN]) -> Result<Self> {
        Ok(Hello {
            key: PublicKey::from_bytes(array(&b[Self::KEY..])),
            want: PublicKey::from_bytes(array(&b[Self::WANT..])),
            nonce: array(&b[Self::NONCE..]),
            local: parse_endpoint(&b[Self::LOCAL..])?,
            relay: None,
        })
    }

    fn parse_v2(b: &[u8; HELLO_V2_LEN]) -> Result<Self> {
        let relay = RelayMode::from_u8(b[Self::LEN]).ok_or(Error::Malformed)?;
        Ok(Hello {
            relay: Some(relay),
            ..Self::parse(sized(&b[..Self::LEN])?)?
        })
    }

    /// The body: the version-1 fields, then (version 2) the relay flags.
    fn emit(&self, b: &mut [u8]) {
        let (v1, v2) = b.split_at_mut(Self::LEN);
        self.emit_v1(sized_mut(v1));
        if let (Some(relay), Some(flags)) = (self.relay, v2.first_mut()) {
            *flags = relay as u8;
        }
    }

    fn emit_v1(&self, b: &mut [u8; Self::LEN]) {
        b[Self::KEY..Self::WANT].copy_from_slice(self.key.as_bytes());
        b[Self::WANT..Self::NONCE].copy_from_slice(self.want.as_bytes());
        b[Self::NONCE..Self::LOCAL].copy_from_slice(&self.nonce);
        emit_endpoint(self.local, &mut b[Self::LOCAL..]);
    }
}

/// Peer → mediator: proof of key ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Proof {
    /// Signature over the registration transcript (see `proto::transcript`).
    pub signature: Signature,
    /// Milliseconds the peer held the Challenge before sending this (signing time), so the mediator can
    /// subtract it from its round-trip measurement. Not signed: lying only skews the liar's own timing.
    pub hold_ms: u16,
}

impl Proof {
    /// Body length.
    pub const LEN: usize = SIGNATURE_LEN + 2;

    fn parse(b: &[u8; Self::LEN]) -> Result<Self> {
        Ok(Proof {
            signature: Signature::from_bytes(array(b)),
            hold_ms: u16_at(b, SIGNATURE_LEN),
        })
    }

    fn emit(&self, b: &mut [u8; Self::LEN]) {
        b[..SIGNATURE_LEN].copy_from_slice(self.signature.as_bytes());
        b[SIGNATURE_LEN..Self::LEN].copy_from_slice(&self.hold_ms.to_be_bytes());
    }
}

/// Peer → mediator: answer to a Ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pong {
    /// The token of the Ping answered.
    pub token: u32,
    /// Milliseconds between receiving the Ping and sending this.
    pub hold_ms: u16,
}

impl Pong {
    /// Body length.
    pub const LEN: usize = 6;

    fn parse(b: &[u8; Self::LEN]) -> Result<Self> {
        Ok(Pong {
            token: u32_at(b, 0),
            hold_ms: u16_at(b, 4),
        })
    }

    fn emit(&self, b: &mut [u8; Self::LEN]) {
        b[..4].copy_from_slice(&self.token.to_be_bytes());
        b[4..6].copy_from_slice(&self.hold_ms.to_be_bytes());
    }
}

/// Mediator → peer: answer to Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Challenge {
    /// The mediator's fresh nonce, to be signed in Proof.
    pub nonce: Nonce,
    /// The peer's public endpoint as the mediator sees this connection.
    pub observed: SocketAddr,
}

impl Challenge {
    /// Body length.
    pub const LEN: usize = NONCE_LEN + ENDPOINT_LEN;

    fn parse(b: &[u8; Self::LEN]) -> Result<Self> {
        Ok(Challenge {
            nonce: array(b),
            observed: parse_endpoint(&b[NONCE_LEN..])?.ok_or(Error::Malformed)?,
        })
    }

    fn emit(&self, b: &mut [u8; Self::LEN]) {
        b[..NONCE_LEN].copy_from_slice(&self.nonce);
        emit_endpoint(Some(self.observed), &mut b[NONCE_LEN..]);
    }
}

/// Version 2: what a Match says about the paths open to the pair (protocol §14.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Paths {
    /// The receiver's NAT mapping, as the mediator's probe found it.
    pub own: Mapping,
    /// The other peer's.
    pub peer: Mapping,
    /// 0: no relay for this pair; otherwise the punch deadline, in ms after the start time, after
    /// which both peers fall back to the relay.
    pub relay_after_ms: u16,
}

/// Mediator → peer: the other peer is registered; punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Match {
    /// This peer's role.
    pub role: Role,
    /// Milliseconds to wait after receiving this before sending the first SYN, so both SYNs leave together.
    pub start_delay_ms: u16,
    /// The other peer's nonce, from its Hello.
    pub peer_nonce: Nonce,
    /// The other peer's public endpoint as the mediator observed it.
    pub peer_observed: SocketAddr,
    /// The other peer's LAN endpoint as it reported it, if any.
    pub peer_local: Option<SocketAddr>,
    /// Version 2: the mapping classes and the relay offer. `None`: a version-1 Match.
    pub paths: Option<Paths>,
}

impl Match {
    const ROLE: usize = 0;
    const DELAY: usize = 1;
    const NONCE: usize = 3;
    const OBSERVED: usize = Self::NONCE + NONCE_LEN;
    const LOCAL: usize = Self::OBSERVED + ENDPOINT_LEN;
    /// Body length.
    pub const LEN: usize = Self::LOCAL + ENDPOINT_LEN;

    fn parse(b: &[u8; Self::LEN]) -> Result<Self> {
        Ok(Match {
            role: Role::from_u8(b[Self::ROLE]).ok_or(Error::Malformed)?,
            start_delay_ms: u16_at(b, Self::DELAY),
            peer_nonce: array(&b[Self::NONCE..]),
            peer_observed: parse_endpoint(&b[Self::OBSERVED..])?.ok_or(Error::Malformed)?,
            peer_local: parse_endpoint(&b[Self::LOCAL..])?,
            paths: None,
        })
    }

    fn parse_v2(b: &[u8; MATCH_V2_LEN]) -> Result<Self> {
        let mapping = |at: usize| Mapping::from_u8(b[at]).ok_or(Error::Malformed);
        let paths = Paths {
            own: mapping(Self::LEN)?,
            peer: mapping(Self::LEN + 1)?,
            relay_after_ms: u16_at(b, Self::LEN + 2),
        };
        Ok(Match {
            paths: Some(paths),
            ..Self::parse(sized(&b[..Self::LEN])?)?
        })
    }

    /// The body: the version-1 fields, then (version 2) the paths.
    fn emit(&self, b: &mut [u8]) {
        let (v1, v2) = b.split_at_mut(Self::LEN);
        self.emit_v1(sized_mut(v1));
        if let (Some(p), Some(v2)) = (self.paths, v2.first_chunk_mut::<4>()) {
            let [after_hi, after_lo] = p.relay_after_ms.to_be_bytes();
            *v2 = [p.own as u8, p.peer as u8, after_hi, after_lo];
        }
    }

    fn emit_v1(&self, b: &mut [u8; Self::LEN]) {
        b[Self::ROLE] = self.role.to_u8();
        b[Self::DELAY..Self::NONCE].copy_from_slice(&self.start_delay_ms.to_be_bytes());
        b[Self::NONCE..Self::OBSERVED].copy_from_slice(&self.peer_nonce);
        emit_endpoint(Some(self.peer_observed), &mut b[Self::OBSERVED..]);
        emit_endpoint(self.peer_local, &mut b[Self::LOCAL..]);
    }
}

/// Length of an X25519 public key.
pub const EPHEMERAL_LEN: usize = 32;

/// Peer ↔ peer: the first flight of each side once TCP is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PeerAuth {
    /// The sender's long-term public key.
    pub key: PublicKey,
    /// The sender's ephemeral X25519 public key for this connection.
    pub ephemeral: [u8; EPHEMERAL_LEN],
    /// Signature over the peer-auth transcript (see `proto::transcript`).
    pub signature: Signature,
}

impl PeerAuth {
    const EPHEMERAL: usize = PUBLIC_KEY_LEN;
    const SIGNATURE: usize = Self::EPHEMERAL + EPHEMERAL_LEN;
    /// Body length.
    pub const LEN: usize = Self::SIGNATURE + SIGNATURE_LEN;

    fn parse(b: &[u8; Self::LEN]) -> Result<Self> {
        Ok(PeerAuth {
            key: PublicKey::from_bytes(array(b)),
            ephemeral: array(&b[Self::EPHEMERAL..]),
            signature: Signature::from_bytes(array(&b[Self::SIGNATURE..])),
        })
    }

    fn emit(&self, b: &mut [u8; Self::LEN]) {
        b[..Self::EPHEMERAL].copy_from_slice(self.key.as_bytes());
        b[Self::EPHEMERAL..Self::SIGNATURE].copy_from_slice(&self.ephemeral);
        b[Self::SIGNATURE..Self::LEN].copy_from_slice(self.signature.as_bytes());
    }
}

/// Any p2psc message: the validated representation of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Proof`].
    Proof(Proof),
    /// See [`Pong`].
    Pong(Pong),
    /// See [`Challenge`].
    Challenge(Challenge),
    /// Mediator → peer: proof accepted; the mediator holds the registration at most `wait_ms` for the other peer.
    Registered {
        /// Upper bound of the wait, in milliseconds.
        wait_ms: u32,
    },
    /// Mediator → peer: answer with a Pong carrying `token`.
    Ping {
        /// Opaque token to echo.
        token: u32,
    },
    /// See [`Match`].
    Match(Match),
    /// Mediator → peer: the mediator is busy; register again after `millis`.
    RetryAfter {
        /// Milliseconds to wait before a new registration.
        millis: u32,
    },
    /// Mediator → peer: the registration is over.
    Abort(AbortReason),
    /// See [`PeerAuth`].
    PeerAuth(PeerAuth),
    /// Peer ↔ peer: see [`MessageType::Confirm`].
    Confirm,
    /// Peer → mediator, version 2, on a probe connection: the nonce of the registration's Hello.
    Probe {
        /// The Hello's nonce.
        nonce: Nonce,
    },
    /// Peer → mediator, version 2: see [`MessageType::RelayRequest`].
    RelayRequest,
    /// Mediator → peer, version 2: see [`MessageType::Relayed`].
    Relayed,
}

impl Message {
    /// The type of this message.
    pub const fn msg_type(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::Proof(_) => MessageType::Proof,
            Message::Pong(_) => MessageType::Pong,
            Message::Challenge(_) => MessageType::Challenge,
            Message::Registered { .. } => MessageType::Registered,
            Message::Ping { .. } => MessageType::Ping,
            Message::Match(_) => MessageType::Match,
            Message::RetryAfter { .. } => MessageType::RetryAfter,
            Message::Abort(_) => MessageType::Abort,
            Message::PeerAuth(_) => MessageType::PeerAuth,
            Message::Confirm => MessageType::Confirm,
            Message::Probe { .. } => MessageType::Probe,
            Message::RelayRequest => MessageType::RelayRequest,
            Message::Relayed => MessageType::Relayed,
        }
    }

    /// The protocol version this message's frame carries, when a registration of version
    /// `registration` sends it: its own for the messages whose layout fixes it (a Hello or Match with
    /// or without the version-2 fields, the version-2 types, and the peer ↔ peer messages, which are
    /// version-1 frames in both versions), the registration's for the others.
    pub const fn frame_version(&self, registration: u8) -> u8 {
        if !super::SPEAKS_VERSION_2 {
            return VERSION;
        }
        match self {
            Message::Hello(Hello { relay: Some(_), .. })
            | Message::Match(Match { paths: Some(_), .. })
            | Message::Probe { .. }
            | Message::RelayRequest
            | Message::Relayed => VERSION_2,
            Message::Hello(_) | Message::Match(_) | Message::PeerAuth(_) | Message::Confirm => {
                VERSION
            }
            _ => registration,
        }
    }

    /// Parse a checked frame (see [`Frame::new_checked`]).
    ///
    /// A frame of a version this implementation does not speak is [`Error::UnsupportedVersion`], except
    /// an Abort, whose layout is frozen so that a mediator can tell a peer of any version why it is
    /// refused. A type the frame's version does not define is [`Error::UnknownType`].
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Message> {
        frame.check_len()?;
        let raw_type = frame.msg_type();
        let unknown = Error::UnknownType(raw_type);
        let msg_type = MessageType::from_u8(raw_type).ok_or(unknown)?;
        let body = frame.body();
        let v2 = super::SPEAKS_VERSION_2 && frame.version() == VERSION_2;
        match msg_type.body_len_in(frame.version()) {
            None => return Err(unknown),
            Some(len) if len != body.len() => return Err(Error::BadLength),
            Some(_) => {}
        }
        Ok(match msg_type {
            MessageType::Hello if v2 => Message::Hello(Hello::parse_v2(sized(body)?)?),
            MessageType::Hello => Message::Hello(Hello::parse(sized(body)?)?),
            MessageType::Probe if v2 => Message::Probe {
                nonce: *sized(body)?,
            },
            MessageType::RelayRequest if v2 => Message::RelayRequest,
            MessageType::Relayed if v2 => Message::Relayed,
            // Version-2 types in a version-1 frame: refused by the length check above already.
            MessageType::Probe | MessageType::RelayRequest | MessageType::Relayed => {
                return Err(unknown)
            }
            MessageType::Proof => Message::Proof(Proof::parse(sized(body)?)?),
            MessageType::Pong => Message::Pong(Pong::parse(sized(body)?)?),
            MessageType::Challenge => Message::Challenge(Challenge::parse(sized(body)?)?),
            MessageType::Registered => Message::Registered {
                wait_ms: u32::from_be_bytes(*sized(body)?),
            },
            MessageType::Ping => Message::Ping {
                token: u32::from_be_bytes(*sized(body)?),
            },
            MessageType::Match if v2 => Message::Match(Match::parse_v2(sized(body)?)?),
            MessageType::Match => Message::Match(Match::parse(sized(body)?)?),
            MessageType::RetryAfter => Message::RetryAfter {
                millis: u32::from_be_bytes(*sized(body)?),
            },
            MessageType::Abort => Message::Abort(AbortReason::from_u8(sized::<1>(body)?[0])),
            MessageType::PeerAuth => Message::PeerAuth(PeerAuth::parse(sized(body)?)?),
            MessageType::Confirm => Message::Confirm,
        })
    }

    /// Parse one whole frame from the start of `bytes` (trailing bytes are ignored).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Message> {
        Message::parse(&Frame::new_checked(bytes)?)
    }

    /// The body length of this message in frames of `version` (its [`frame_version`](Self::frame_version)).
    const fn body_len(&self, version: u8) -> usize {
        match self.msg_type().body_len_in(version) {
            Some(len) => len,
            // Unreachable: a frame version is always one that defines the message's type.
            None => 0,
        }
    }

    /// Length of the frame this message emits (in a version-1 registration), header included.
    pub const fn buffer_len(&self) -> usize {
        let version = self.frame_version(VERSION);
        HEADER_LEN + self.body_len(version)
    }

    /// Emit the whole frame (header and body) into `frame`, which must be at least
    /// [`Message::buffer_len`] bytes long, as a version-1 registration sends it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        self.emit_in(VERSION, frame)
    }

    /// Emit the whole frame as a registration of version `registration` sends it (see
    /// [`frame_version`](Self::frame_version)); the frame's length is the same in both versions except
    /// for Hello and Match, whose fields decide it.
    pub fn emit_in<T: AsRef<[u8]> + AsMut<[u8]>>(&self, registration: u8, frame: &mut Frame<T>) {
        let msg_type = self.msg_type();
        let version = self.frame_version(registration);
        frame.set_version(version);
        frame.set_msg_type(msg_type as u8);
        frame.set_body_len(self.body_len(version) as u16);
        let b = frame.body_mut();
        match self {
            Message::Hello(m) => m.emit(b),
            Message::Proof(m) => m.emit(sized_mut(b)),
            Message::Pong(m) => m.emit(sized_mut(b)),
            Message::Challenge(m) => m.emit(sized_mut(b)),
            Message::Registered { wait_ms: v }
            | Message::Ping { token: v }
            | Message::RetryAfter { millis: v } => *sized_mut(b) = v.to_be_bytes(),
            Message::Match(m) => m.emit(b),
            Message::Abort(reason) => *sized_mut(b) = [reason.to_u8()],
            Message::PeerAuth(m) => m.emit(sized_mut(b)),
            Message::Probe { nonce } => *sized_mut(b) = *nonce,
            Message::Confirm | Message::RelayRequest | Message::Relayed => {}
        }
    }

    /// Emit into the start of `buf` and return the frame length, or `None` if `buf` is too short.
    pub fn emit_bytes(&self, buf: &mut [u8]) -> Option<usize> {
        self.emit_bytes_in(VERSION, buf)
    }

    /// [`emit_bytes`](Self::emit_bytes) as a registration of version `registration` sends it.
    pub fn emit_bytes_in(&self, registration: u8, buf: &mut [u8]) -> Option<usize> {
        let len = HEADER_LEN + self.body_len(self.frame_version(registration));
        let mut frame = Frame::new_unchecked(buf.get_mut(..len)?);
        self.emit_in(registration, &mut frame);
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FrameReader, MAX_FRAME_LEN};
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;
    use std::vec;

    fn endpoint() -> impl Strategy<Value = SocketAddr> {
        let v4 = (any::<[u8; 4]>(), 1..=u16::MAX)
            .prop_filter("specified", |(a, _)| *a != [0; 4])
            .prop_map(|(a, p)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p));
        let v6 = (any::<[u8; 16]>(), 1..=u16::MAX)
            .prop_filter("plain v6", |(a, _)| {
                let ip = Ipv6Addr::from(*a);
                !ip.is_unspecified() && ip.to_ipv4_mapped().is_none()
            })
            .prop_map(|(a, p)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p));
        prop_oneof![v4, v6]
    }

    fn key() -> impl Strategy<Value = PublicKey> {
        any::<[u8; 32]>().prop_map(PublicKey::from_bytes)
    }

    fn sig() -> impl Strategy<Value = Signature> {
        prop::array::uniform32(any::<u8>()).prop_flat_map(|a| {
            prop::array::uniform32(any::<u8>()).prop_map(move |b| {
                let mut s = [0u8; 64];
                s[..32].copy_from_slice(&a);
                s[32..].copy_from_slice(&b);
                Signature::from_bytes(s)
            })
        })
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Leader), Just(Role::Follower)]
    }

    fn relay_mode() -> impl Strategy<Value = RelayMode> {
        prop_oneof![
            Just(RelayMode::Off),
            Just(RelayMode::Fallback),
            Just(RelayMode::Only)
        ]
    }

    fn mapping() -> impl Strategy<Value = Mapping> {
        (0u8..4).prop_map(|m| Mapping::from_u8(m).unwrap())
    }

    fn paths() -> impl Strategy<Value = Paths> {
        (mapping(), mapping(), any::<u16>()).prop_map(|(own, peer, relay_after_ms)| Paths {
            own,
            peer,
            relay_after_ms,
        })
    }

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                key(),
                key(),
                any::<Nonce>(),
                prop::option::of(endpoint()),
                prop::option::of(relay_mode())
            )
                .prop_map(|(key, want, nonce, local, relay)| Message::Hello(Hello {
                    key,
                    want,
                    nonce,
                    local,
                    relay,
                })),
            (sig(), any::<u16>())
                .prop_map(|(signature, hold_ms)| Message::Proof(Proof { signature, hold_ms })),
            (any::<u32>(), any::<u16>())
                .prop_map(|(token, hold_ms)| Message::Pong(Pong { token, hold_ms })),
            (any::<Nonce>(), endpoint())
                .prop_map(|(nonce, observed)| Message::Challenge(Challenge { nonce, observed })),
            any::<u32>().prop_map(|wait_ms| Message::Registered { wait_ms }),
            any::<u32>().prop_map(|token| Message::Ping { token }),
            (
                role(),
                any::<u16>(),
                any::<Nonce>(),
                endpoint(),
                prop::option::of(endpoint()),
                prop::option::of(paths())
            )
                .prop_map(
                    |(role, start_delay_ms, peer_nonce, peer_observed, peer_local, paths)| {
                        Message::Match(Match {
                            role,
                            start_delay_ms,
                            peer_nonce,
                            peer_observed,
                            peer_local,
                            paths,
                        })
                    }
                ),
            any::<Nonce>().prop_map(|nonce| Message::Probe { nonce }),
            Just(Message::RelayRequest),
            Just(Message::Relayed),
            any::<u32>().prop_map(|millis| Message::RetryAfter { millis }),
            (1u8..=255).prop_map(|c| Message::Abort(AbortReason::from_u8(c))),
            (key(), any::<[u8; 32]>(), sig()).prop_map(|(key, ephemeral, signature)| {
                Message::PeerAuth(PeerAuth {
                    key,
                    ephemeral,
                    signature,
                })
            }),
            Just(Message::Confirm),
        ]
    }

    fn emit(message: &Message) -> ([u8; MAX_FRAME_LEN], usize) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let len = message.emit_bytes(&mut buf).unwrap();
        (buf, len)
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(message in message()) {
            let (buf, len) = emit(&message);
            prop_assert_eq!(len, message.buffer_len());
            prop_assert_eq!(Message::parse_bytes(&buf[..len]), Ok(message));
        }

        #[test]
        fn every_strict_prefix_is_incomplete(message in message()) {
            let (buf, len) = emit(&message);
            for cut in 0..len {
                prop_assert_eq!(Message::parse_bytes(&buf[..cut]), Err(Error::Truncated));
                let mut reader = FrameReader::new();
                prop_assert_eq!(reader.read(&buf[..cut]), (cut, None));
                // The rest completes it, however the stream was split.
                prop_assert_eq!(reader.read(&buf[cut..len]), (len - cut, Some(Ok(message))));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::parse_bytes(&bytes);
            let mut reader = FrameReader::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (used, result) = reader.read(rest);
                prop_assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
                if let Some(Err(_)) = result {
                    break;
                }
            }
        }

        #[test]
        fn reader_splits_back_to_back_frames(a in message(), b in message(), chunk in 1usize..40) {
            let (fa, la) = emit(&a);
            let (fb, lb) = emit(&b);
            let mut stream = std::vec::Vec::new();
            stream.extend_from_slice(&fa[..la]);
            stream.extend_from_slice(&fb[..lb]);
            let mut reader = FrameReader::new();
            let mut got = std::vec::Vec::new();
            for piece in stream.chunks(chunk) {
                let mut rest = piece;
                while !rest.is_empty() {
                    let (used, result) = reader.read(rest);
                    rest = &rest[used..];
                    if let Some(r) = result {
                        got.push(r.unwrap());
                    }
                }
            }
            prop_assert_eq!(got, std::vec![a, b]);
        }
    }

    #[test]
    fn golden_abort_and_ping() {
        let (buf, len) = emit(&Message::Abort(AbortReason::BadProof));
        assert_eq!(&buf[..len], &[1, 0x86, 0, 1, 4]);
        let (buf, len) = emit(&Message::Ping { token: 0x01020304 });
        assert_eq!(&buf[..len], &[1, 0x83, 0, 4, 1, 2, 3, 4]);
        let (buf, len) = emit(&Message::Confirm);
        assert_eq!(&buf[..len], &[1, 0xC2, 0, 0]);
    }

    #[test]
    fn golden_challenge() {
        let m = Message::Challenge(Challenge {
            nonce: [0xAA; 32],
            observed: "198.51.100.9:4321".parse().unwrap(),
        });
        let (buf, len) = emit(&m);
        let mut expected = std::vec![1u8, 0x81, 0, 50];
        expected.extend_from_slice(&[0xAA; 32]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 9]);
        expected.extend_from_slice(&4321u16.to_be_bytes());
        assert_eq!(&buf[..len], &expected[..]);
    }

    #[test]
    fn rejects_bad_frames() {
        let (mut buf, len) = emit(&Message::Ping { token: 7 });
        // Unknown type.
        buf[1] = 0x7f;
        assert_eq!(
            Message::parse_bytes(&buf[..len]),
            Err(Error::UnknownType(0x7f))
        );
        // Known type, wrong length.
        let bad_len = [1u8, 0x83, 0, 3, 0, 0, 7];
        assert_eq!(Message::parse_bytes(&bad_len), Err(Error::BadLength));
        // Another version.
        let (mut buf, len) = emit(&Message::Ping { token: 7 });
        buf[0] = 3;
        assert_eq!(
            Message::parse_bytes(&buf[..len]),
            Err(Error::UnsupportedVersion(3))
        );
        // Bad role.
        let m = Message::Match(Match {
            role: Role::Leader,
            start_delay_ms: 0,
            peer_nonce: [0; 32],
            peer_observed: "192.0.2.1:1".parse().unwrap(),
            peer_local: None,
            paths: None,
        });
        let (mut buf, len) = emit(&m);
        buf[4] = 2;
        assert_eq!(Message::parse_bytes(&buf[..len]), Err(Error::Malformed));
        // Unspecified observed endpoint in a Challenge.
        let mut c = [0u8; 4 + Challenge::LEN];
        c[..4].copy_from_slice(&[1, 0x81, 0, Challenge::LEN as u8]);
        assert_eq!(Message::parse_bytes(&c), Err(Error::Malformed));
        // Oversized length is refused from the header alone.
        let mut reader = FrameReader::new();
        assert_eq!(
            reader.read(&[1, 0x01, 0x10, 0x00]),
            (4, Some(Err(Error::Oversized)))
        );
    }

    #[test]
    fn version_2_frames() {
        // Shared layouts take the registration's version.
        let ping = Message::Ping { token: 7 };
        let mut buf = [0u8; MAX_FRAME_LEN];
        let len = ping.emit_bytes_in(VERSION_2, &mut buf).unwrap();
        assert_eq!(&buf[..len], &[2, 0x83, 0, 4, 0, 0, 0, 7]);
        assert_eq!(Message::parse_bytes(&buf[..len]), Ok(ping));
        // The version-2 types are version-2 frames whatever the registration, and undefined in
        // version 1; the peer ↔ peer ones are version 1 always, and undefined in version 2.
        let (buf, len) = emit(&Message::RelayRequest);
        assert_eq!(&buf[..len], &[2, 0x05, 0, 0]);
        let (mut buf, len) = emit(&Message::Relayed);
        assert_eq!(&buf[..len], &[2, 0x87, 0, 0]);
        assert_eq!(
            Message::parse_bytes(&[1, 0x05, 0, 0]),
            Err(Error::UnknownType(0x05))
        );
        let len = Message::Confirm.emit_bytes_in(VERSION_2, &mut buf).unwrap();
        assert_eq!(&buf[..len], &[1, 0xC2, 0, 0]);
        assert_eq!(
            Message::parse_bytes(&[2, 0xC2, 0, 0]),
            Err(Error::UnknownType(0xC2))
        );
        // A version-1 Hello length in a version-2 frame is the wrong length.
        let hello = Hello {
            key: PublicKey::from_bytes([1; 32]),
            want: PublicKey::from_bytes([2; 32]),
            nonce: [3; 32],
            local: None,
            relay: None,
        };
        let (mut buf, len) = emit(&Message::Hello(hello));
        assert_eq!((buf[0], len), (1, 118));
        buf[0] = 2;
        assert_eq!(Message::parse_bytes(&buf[..len]), Err(Error::BadLength));
        // Relay flags 2 are not defined.
        let v2 = Hello {
            relay: Some(RelayMode::Fallback),
            ..hello
        };
        let (mut buf, len) = emit(&Message::Hello(v2));
        assert_eq!((buf[0], len, buf[len - 1]), (2, 119, 1));
        buf[len - 1] = 2;
        assert_eq!(Message::parse_bytes(&buf[..len]), Err(Error::Malformed));
    }

    #[test]
    fn version_2_match_rejects_unknown_mapping() {
        let m = Message::Match(Match {
            role: Role::Follower,
            start_delay_ms: 30,
            peer_nonce: [0x11; 32],
            peer_observed: "203.0.113.1:50001".parse().unwrap(),
            peer_local: None,
            paths: Some(Paths {
                own: Mapping::Dependent,
                peer: Mapping::Independent,
                relay_after_ms: 3800,
            }),
        });
        let (mut buf, len) = emit(&m);
        assert_eq!(&buf[len - 4..len], &[2, 1, 0x0e, 0xd8]);
        assert_eq!(Message::parse_bytes(&buf[..len]), Ok(m));
        buf[len - 3] = 4;
        assert_eq!(Message::parse_bytes(&buf[..len]), Err(Error::Malformed));
    }

    #[test]
    fn abort_of_any_version_parses() {
        // A v1 peer must understand why a future mediator refuses it.
        assert_eq!(
            Message::parse_bytes(&[9, 0x86, 0, 1, 1]),
            Ok(Message::Abort(AbortReason::UnsupportedVersion))
        );
        assert_eq!(
            Message::parse_bytes(&[9, 0x86, 0, 2, 1, 0]),
            Err(Error::UnsupportedVersion(9))
        );
    }
}
