//! The one-byte codes of the protocol: message types, roles and abort reasons.
//!
//! Each is declared by [`wire_code!`] from one table, so that a code is written once: the enum, the
//! decoding `from_u8` and (for abort reasons) the encoding and the text all come from the same row.

use core::fmt;

use super::message::{Challenge, Hello, Match, PeerAuth, Pong, Proof, HELLO_V2_LEN, MATCH_V2_LEN};
use super::{NONCE_LEN, VERSION, VERSION_2};

/// Declares a one-byte wire code from one table: the enum with the documentation of each variant, and
/// its conversions from (and to) the byte. The shape of smoltcp's `enum_with_unknown!`.
///
/// - A closed set, `pub enum Name { Variant = code, … }`, is a `#[repr(u8)]` enum whose discriminants
///   are the codes (`Name::Variant as u8` is the byte on the wire), with
///   `const fn from_u8(u8) -> Option<Name>`, `None` for a byte no variant has.
/// - An open set, `pub enum Name { Variant = code => "text", … } unknown { Other(u8) => "text {}" }`,
///   keeps every other byte in its `Other` variant: `const fn from_u8(u8) -> Name` is total,
///   `const fn to_u8(self) -> u8` gives the same byte back, and `Display` prints each row's text
///   (the unknown one formats the code into its text).
///
/// A code written twice in a table does not compile (closed set: two equal discriminants) or is an
/// unreachable pattern (open set), which the lints refuse.
macro_rules! wire_code {
    (
        $(#[$attr:meta])*
        pub enum $name:ident {
            $( $(#[$variant_attr:meta])* $variant:ident = $code:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[repr(u8)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant = $code, )+
        }

        impl $name {
            /// Decode a wire value; `None` if no variant has this code.
            pub const fn from_u8(value: u8) -> Option<$name> {
                match value {
                    $( $code => Some($name::$variant), )+
                    _ => None,
                }
            }
        }
    };
    (
        $(#[$attr:meta])*
        pub enum $name:ident {
            $( $(#[$variant_attr:meta])* $variant:ident = $code:literal => $text:literal ),+ $(,)?
        }
        unknown {
            $(#[$unknown_attr:meta])* $unknown:ident(u8) => $unknown_text:literal $(,)?
        }
    ) => {
        $(#[$attr])*
        pub enum $name {
            $( $(#[$variant_attr])* $variant, )+
            $(#[$unknown_attr])* $unknown(u8),
        }

        impl $name {
            /// Wire value.
            pub const fn to_u8(self) -> u8 {
                match self {
                    $( $name::$variant => $code, )+
                    $name::$unknown(code) => code,
                }
            }

            #[doc = concat!(
                "Decode a wire value; unknown codes become [`", stringify!($name), "::",
                stringify!($unknown), "`]."
            )]
            pub const fn from_u8(value: u8) -> $name {
                match value {
                    $( $code => $name::$variant, )+
                    code => $name::$unknown(code),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $name::$variant => f.write_str($text), )+
                    $name::$unknown(code) => write!(f, $unknown_text, code),
                }
            }
        }
    };
}

wire_code! {
    /// Message type codes. The two high bits give the direction: `00` peer → mediator, `10` mediator →
    /// peer, `11` peer ↔ peer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum MessageType {
        /// Peer → mediator: who I am, whom I want, my nonce and LAN endpoint.
        Hello = 0x01,
        /// Peer → mediator: signature proving ownership of the key in Hello.
        Proof = 0x02,
        /// Peer → mediator: answer to a Ping.
        Pong = 0x03,
        /// Peer → mediator, version 2, the only frame of a probe connection: the registration's nonce,
        /// so that the mediator can compare the probe's observed endpoint with the registration's.
        Probe = 0x04,
        /// Peer → mediator, version 2: join the relay the Match offered; what follows is relay payload.
        RelayRequest = 0x05,
        /// Mediator → peer: the mediator's nonce and the endpoint it observed.
        Challenge = 0x81,
        /// Mediator → peer: proof accepted, waiting for the other peer.
        Registered = 0x82,
        /// Mediator → peer: liveness and round-trip probe while waiting.
        Ping = 0x83,
        /// Mediator → peer: the other peer is here; punch.
        Match = 0x84,
        /// Mediator → peer: busy, register again later.
        RetryAfter = 0x85,
        /// Mediator → peer: registration ended, with a reason. Its layout is the same in every version.
        Abort = 0x86,
        /// Mediator → peer, version 2: both peers joined the relay; what follows is the other peer's.
        Relayed = 0x87,
        /// Peer ↔ peer: key, ephemeral key and signature, each side's first flight.
        PeerAuth = 0xC1,
        /// Peer ↔ peer: the leader chose this connection (only when several candidates raced).
        Confirm = 0xC2,
    }
}

impl MessageType {
    /// The one valid body length of this type in frames of `version`, or `None` if that version does not
    /// define the type. An Abort has its one-byte body in every version (its layout is frozen).
    pub const fn body_len_in(self, version: u8) -> Option<usize> {
        let v2 = super::SPEAKS_VERSION_2 && version == VERSION_2;
        if !v2 && version != VERSION {
            return match self {
                MessageType::Abort => Some(1),
                _ => None,
            };
        }
        Some(match self {
            MessageType::Hello if v2 => HELLO_V2_LEN,
            MessageType::Hello => Hello::LEN,
            MessageType::Proof => Proof::LEN,
            MessageType::Pong => Pong::LEN,
            MessageType::Probe if v2 => NONCE_LEN,
            MessageType::RelayRequest | MessageType::Relayed if v2 => 0,
            MessageType::Probe | MessageType::RelayRequest | MessageType::Relayed => return None,
            MessageType::Challenge => Challenge::LEN,
            MessageType::Registered => 4,
            MessageType::Ping => 4,
            MessageType::Match if v2 => MATCH_V2_LEN,
            MessageType::Match => Match::LEN,
            MessageType::RetryAfter => 4,
            MessageType::Abort => 1,
            // Peer ↔ peer messages are version-1 frames in both versions.
            MessageType::PeerAuth | MessageType::Confirm if v2 => return None,
            MessageType::PeerAuth => PeerAuth::LEN,
            MessageType::Confirm => 0,
        })
    }
}

wire_code! {
    /// What a version-2 peer says about the relayed path, in its Hello (protocol §4.1, §14.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum RelayMode {
        /// No relayed path: a direct connection or none.
        Off = 0,
        /// The relay as a fallback, when the punch cannot work or has failed.
        Fallback = 1,
        /// The relay at once, without a punch (the direct path is known to be blocked; tests).
        Only = 3,
    }
}

/// `fallback`, `only` or `off`: a [`RelayMode`] as command lines and configuration files spell it.
impl core::str::FromStr for RelayMode {
    type Err = ParseRelayModeError;

    fn from_str(text: &str) -> Result<RelayMode, ParseRelayModeError> {
        match text {
            "fallback" => Ok(RelayMode::Fallback),
            "only" => Ok(RelayMode::Only),
            "off" => Ok(RelayMode::Off),
            _ => Err(ParseRelayModeError),
        }
    }
}

/// A [`RelayMode`] that is not `fallback`, `only` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseRelayModeError;

impl core::fmt::Display for ParseRelayModeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("expected fallback, only or off")
    }
}

impl core::error::Error for ParseRelayModeError {}

wire_code! {
    /// A peer's NAT mapping as the mediator's probe found it (protocol §14.2), in a version-2 Match.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum Mapping {
        /// No probe arrived: nothing is known (the punch treats it as independent).
        Unknown = 0,
        /// The probe from the punch port was seen at the same public endpoint as the registration: the
        /// punch's SYNs leave from the endpoint the other peer is told.
        Independent = 1,
        /// The probe was seen at another public endpoint: the NAT maps per destination, and the other
        /// peer cannot know where our SYNs come from.
        Dependent = 2,
        /// The peer asked for the relay at once ([`RelayMode::Only`]).
        RelayOnly = 3,
    }
}

wire_code! {
    /// The role the mediator assigns each peer of a pair. Both peers dial; the leader breaks ties when
    /// several candidate connections authenticate (see [`MessageType::Confirm`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub enum Role {
        /// The peer that registered first.
        Leader = 0,
        /// The peer that registered second.
        Follower = 1,
    }
}

impl Role {
    /// The other role.
    pub const fn other(self) -> Role {
        match self {
            Role::Leader => Role::Follower,
            Role::Follower => Role::Leader,
        }
    }

    /// Wire value.
    pub const fn to_u8(self) -> u8 {
        self as u8
    }
}

/// `leader` or `follower`, for logs.
impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
        })
    }
}

wire_code! {
    /// Why the mediator ended a registration. Codes a receiver does not know are kept as
    /// [`AbortReason::Other`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    #[non_exhaustive]
    pub enum AbortReason {
        /// The peer's frames carry a protocol version the mediator does not speak (the Abort frame's own
        /// version field carries the mediator's).
        UnsupportedVersion = 1 => "unsupported protocol version",
        /// A frame could not be parsed.
        Malformed = 2 => "malformed frame",
        /// A message arrived that is not valid in the current state.
        UnexpectedMessage = 3 => "unexpected message",
        /// The signature in Proof did not verify.
        BadProof = 4 => "key ownership proof did not verify",
        /// The waiting table is full and the mediator will not take retries either.
        TableFull = 5 => "mediator table full",
        /// A registration step did not finish within its deadline.
        Timeout = 6 => "registration step timed out",
        /// The wanted peer did not register within the wait deadline.
        PeerTimeout = 7 => "peer did not register in time",
        /// A newer registration of the same key replaced this one.
        Replaced = 8 => "replaced by a newer registration of the same key",
        /// The peer asked to be matched with its own key.
        SelfMatch = 9 => "a peer cannot ask for itself",
        /// The mediator is shutting down.
        ShuttingDown = 10 => "mediator shutting down",
        /// Too many connections from this peer's address.
        TooManyConnections = 11 => "too many connections from this address",
        /// The peer did not answer Pings.
        Unresponsive = 12 => "peer did not answer pings",
        /// Version 2: a RelayRequest for a pair the mediator does not relay.
        RelayRefused = 13 => "the mediator does not relay this pair",
        /// Version 2: the mediator relays as many pairs as it will.
        RelayFull = 14 => "the mediator's relay is full",
        /// Version 2: the other peer left, or did not ask for the relay in time.
        PeerGone = 15 => "the other peer did not join the relay",
    }
    unknown {
        /// A reason code this implementation does not know.
        Other(u8) => "abort reason {}",
    }
}

#[cfg(test)]
mod tests {
    use super::super::{MAX_BODY_LEN, MAX_FRAME_LEN};
    use super::*;
    use std::format;

    #[test]
    fn frame_sizes() {
        // Documented in doc/protocol.md; a change here is a protocol change.
        // (type, version 1, version 2)
        let sizes = [
            (MessageType::Hello, Some(114), Some(115)),
            (MessageType::Proof, Some(66), Some(66)),
            (MessageType::Pong, Some(6), Some(6)),
            (MessageType::Probe, None, Some(32)),
            (MessageType::RelayRequest, None, Some(0)),
            (MessageType::Challenge, Some(50), Some(50)),
            (MessageType::Registered, Some(4), Some(4)),
            (MessageType::Ping, Some(4), Some(4)),
            (MessageType::Match, Some(71), Some(75)),
            (MessageType::RetryAfter, Some(4), Some(4)),
            (MessageType::Abort, Some(1), Some(1)),
            (MessageType::Relayed, None, Some(0)),
            (MessageType::PeerAuth, Some(128), None),
            (MessageType::Confirm, Some(0), None),
        ];
        for (t, v1, v2) in sizes {
            assert_eq!(t.body_len_in(1), v1, "{:?}", t);
            assert_eq!(t.body_len_in(2), v2, "{:?}", t);
            assert_eq!(t.body_len_in(3), (t == MessageType::Abort).then_some(1));
            assert_eq!(MessageType::from_u8(t as u8), Some(t));
        }
        assert_eq!(MAX_BODY_LEN, 128);
        assert_eq!(MAX_FRAME_LEN, 132);
    }

    /// The codes of doc/protocol.md, and no others.
    #[test]
    fn message_type_codes() {
        let known: std::vec::Vec<u8> = (0..=255u8)
            .filter(|&b| MessageType::from_u8(b).is_some_and(|t| t as u8 == b))
            .collect();
        assert_eq!(
            known,
            [0x01, 0x02, 0x03, 0x04, 0x05, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0xC1, 0xC2]
        );
        assert_eq!((0..=255u8).filter_map(MessageType::from_u8).count(), 14);
        assert_eq!(MessageType::from_u8(0x86), Some(MessageType::Abort));
    }

    #[test]
    fn relay_mode_and_mapping_codes() {
        assert_eq!(RelayMode::from_u8(2), None);
        assert_eq!(RelayMode::from_u8(3), Some(RelayMode::Only));
        for m in [
            Mapping::Unknown,
            Mapping::Independent,
            Mapping::Dependent,
            Mapping::RelayOnly,
        ] {
            assert_eq!(Mapping::from_u8(m as u8), Some(m));
        }
        assert_eq!(Mapping::from_u8(4), None);
    }

    #[test]
    fn role_codes() {
        assert_eq!(Role::from_u8(0), Some(Role::Leader));
        assert_eq!(Role::from_u8(1), Some(Role::Follower));
        assert_eq!(Role::from_u8(2), None);
        for role in [Role::Leader, Role::Follower] {
            assert_eq!(Role::from_u8(role.to_u8()), Some(role));
            assert_eq!(role.other().other(), role);
            assert_ne!(role.other(), role);
        }
    }

    #[test]
    fn abort_reason_codes_round_trip() {
        for code in 0..=255u8 {
            assert_eq!(AbortReason::from_u8(code).to_u8(), code);
        }
        assert_eq!(AbortReason::from_u8(4), AbortReason::BadProof);
        assert_eq!(AbortReason::from_u8(0), AbortReason::Other(0));
        assert_eq!(AbortReason::from_u8(15), AbortReason::PeerGone);
        assert_eq!(AbortReason::from_u8(16), AbortReason::Other(16));
    }

    #[test]
    fn abort_reason_text() {
        let texts = [
            (1, "unsupported protocol version"),
            (2, "malformed frame"),
            (3, "unexpected message"),
            (4, "key ownership proof did not verify"),
            (5, "mediator table full"),
            (6, "registration step timed out"),
            (7, "peer did not register in time"),
            (8, "replaced by a newer registration of the same key"),
            (9, "a peer cannot ask for itself"),
            (10, "mediator shutting down"),
            (11, "too many connections from this address"),
            (12, "peer did not answer pings"),
            (13, "the mediator does not relay this pair"),
            (14, "the mediator's relay is full"),
            (15, "the other peer did not join the relay"),
            (0, "abort reason 0"),
            (200, "abort reason 200"),
        ];
        for (code, text) in texts {
            assert_eq!(format!("{}", AbortReason::from_u8(code)), text);
        }
    }
}
