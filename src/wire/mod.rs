//! Bytes on the wire: p2psc frames and messages, and nothing else.
//!
//! Every p2psc message travels over TCP in a *frame*:
//!
//! ```text
//!  0        1        2                 4
//! +--------+--------+--------+--------+----------------------------+
//! | version|  type  |   body length   |  body (fixed per type)     |
//! +--------+--------+--------+--------+----------------------------+
//! ```
//!
//! The body length is big-endian and at most [`MAX_BODY_LEN`], so a [`MAX_FRAME_LEN`]-byte buffer always
//! holds a whole frame. Each message type has exactly one valid body length in each protocol version. The
//! two high bits of the type say who sends it: `00` peer → mediator, `10` mediator → peer, `11` peer ↔
//! peer. The byte layouts are specified in `doc/protocol.md`.
//!
//! Two versions are spoken ([`VERSION`], [`VERSION_2`]). Version 2 (the relay and the mapping probe,
//! protocol §14) changes only the registration: a Hello with [`Hello::relay`] and a Match with
//! [`Match::paths`] are its frames, with [`Message::Probe`], [`Message::RelayRequest`] and
//! [`Message::Relayed`]; the messages whose layout both versions share take the version of the
//! registration that sends them ([`Message::emit_in`]); peer ↔ peer frames are version 1 in both.
//!
//! Version 2 is spoken with the feature `relay` (on by default; the mediator and the host crates use
//! it). Without it ([`SPEAKS_VERSION_2`] false: a version-1 device, whose flash budget the version-2
//! parsers would cost about 0.7 KiB of) a version-2 frame other than an Abort is
//! [`Error::UnsupportedVersion`], as for any version not spoken.
//!
//! The shape follows smoltcp's `wire` module: [`Frame`] is a zero-copy view over a buffer (field offsets
//! in `mod field`), and [`Message`] is the validated representation with `parse`, `buffer_len` and `emit`.
//!
//! Contract: [`Frame::new_checked`] never panics; after it succeeds, [`Message::parse`] never panics; and
//! [`Message::emit`] never panics on a buffer of at least [`Message::buffer_len`] bytes. Every malformed
//! input is an [`Error`] value. [`FrameReader`] reassembles frames from a byte stream in a fixed buffer.

use core::fmt;
use core::net::{IpAddr, Ipv6Addr, SocketAddr};

mod codes;
mod message;
mod reader;

pub use codes::{AbortReason, Mapping, MessageType, ParseRelayModeError, RelayMode, Role};
pub use message::{Challenge, Hello, Match, Message, Paths, PeerAuth, Pong, Proof};
pub use reader::FrameReader;

/// Protocol version 1, carried in every frame header of a version-1 registration and of every
/// peer ↔ peer frame.
pub const VERSION: u8 = 1;

/// Protocol version 2: the registration with the mapping probe and the relay (protocol §14).
pub const VERSION_2: u8 = 2;

/// Whether this build speaks [`VERSION_2`] (the feature `relay`).
pub const SPEAKS_VERSION_2: bool = cfg!(feature = "relay");

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// The largest body of any message (a [`PeerAuth`]). A longer length field is rejected at once.
pub const MAX_BODY_LEN: usize = message::MAX_BODY_LEN;

/// The largest frame: a buffer of this size always holds one whole frame.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_BODY_LEN;

/// Length of an encoded endpoint: a 16-byte IPv6 address (IPv4 as `::ffff:a.b.c.d`) and a 16-bit port.
pub const ENDPOINT_LEN: usize = 18;

/// Length of a nonce.
pub const NONCE_LEN: usize = 32;

/// A 32-byte random value chosen fresh for one registration (by a peer) or one challenge (by the mediator).
pub type Nonce = [u8; NONCE_LEN];

/// What is wrong with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before the header, or before the body length the header announces.
    Truncated,
    /// The body length field exceeds [`MAX_BODY_LEN`]; the stream cannot be trusted any further.
    Oversized,
    /// The frame carries a protocol version this implementation does not speak.
    UnsupportedVersion(u8),
    /// The message type is not defined in this protocol version.
    UnknownType(u8),
    /// The body length is not the one defined for this message type.
    BadLength,
    /// A field holds a value the protocol does not allow (an unknown role, a bad endpoint…).
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "frame truncated"),
            Error::Oversized => write!(f, "frame length exceeds {} bytes", MAX_BODY_LEN),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version {}", v),
            Error::UnknownType(t) => write!(f, "unknown message type {:#04x}", t),
            Error::BadLength => write!(f, "body length does not match the message type"),
            Error::Malformed => write!(f, "malformed field"),
        }
    }
}

impl core::error::Error for Error {}

/// Result of parsing.
pub type Result<T> = core::result::Result<T, Error>;

mod field {
    use core::ops::Range;

    pub const VERSION: usize = 0;
    pub const TYPE: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const BODY: usize = super::HEADER_LEN;
}

/// A read/write view of a frame: header plus body.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wrap a buffer without checking anything; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wrap a buffer and check its header and that it holds the whole frame: [`Frame::new_unchecked`] +
    /// [`Frame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Check what the header alone tells: the version, then the length bound. A version other than
    /// [`VERSION`] and [`VERSION_2`] (without [`SPEAKS_VERSION_2`]: [`VERSION`]) is refused before its length is believed, except an Abort (type
    /// `0x86`, one-byte body), whose layout is the same in every version so that any peer can learn why
    /// it is refused.
    pub fn check_header(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let body_len = self.body_len() as usize;
        let frozen_abort = self.msg_type() == MessageType::Abort as u8 && body_len == 1;
        let spoken = self.version() == VERSION || (SPEAKS_VERSION_2 && self.version() == VERSION_2);
        if !spoken && !frozen_abort {
            Err(Error::UnsupportedVersion(self.version()))
        } else if body_len > MAX_BODY_LEN {
            Err(Error::Oversized)
        } else {
            Ok(())
        }
    }

    /// Check the header ([`Frame::check_header`]) and that the buffer holds the whole body it announces.
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if self.buffer.as_ref().len() < self.frame_len() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consume the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The protocol version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The raw message type field.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The body length field.
    pub fn body_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Length of the whole frame, header included, as the header announces it.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len() as usize
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY..self.frame_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Set the version field.
    pub fn set_version(&mut self, value: u8) {
        self.buffer.as_mut()[field::VERSION] = value;
    }

    /// Set the message type field.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Set the body length field.
    pub fn set_body_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// The body, mutably (length as the header announces).
    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = self.frame_len();
        &mut self.buffer.as_mut()[field::BODY..end]
    }
}

/// Encode an endpoint into [`ENDPOINT_LEN`] bytes. `None` (unknown) is all zeros.
pub fn emit_endpoint(endpoint: Option<SocketAddr>, buf: &mut [u8]) {
    let (addr, port) = match endpoint {
        None => ([0u8; 16], 0),
        Some(SocketAddr::V4(a)) => (a.ip().to_ipv6_mapped().octets(), a.port()),
        Some(SocketAddr::V6(a)) => (a.ip().octets(), a.port()),
    };
    buf[..16].copy_from_slice(&addr);
    buf[16..ENDPOINT_LEN].copy_from_slice(&port.to_be_bytes());
}

/// Decode an endpoint written by [`emit_endpoint`]. All zeros is `None`; an unspecified address with a
/// port, or a port of 0 with an address, is [`Error::Malformed`].
pub fn parse_endpoint(buf: &[u8]) -> Result<Option<SocketAddr>> {
    let buf = buf.get(..ENDPOINT_LEN).ok_or(Error::Truncated)?;
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&buf[..16]);
    let port = u16::from_be_bytes([buf[16], buf[17]]);
    let v6 = Ipv6Addr::from(octets);
    let ip = match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    };
    match (ip.is_unspecified(), port) {
        (true, 0) if octets == [0; 16] => Ok(None),
        (true, _) | (_, 0) => Err(Error::Malformed),
        _ => Ok(Some(SocketAddr::new(ip, port))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn header_fields() {
        let bytes = [1u8, 0x86, 0, 1, 4];
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.version(), 1);
        assert_eq!(frame.msg_type(), 0x86);
        assert_eq!(frame.body_len(), 1);
        assert_eq!(frame.body(), &[4]);
        assert_eq!(frame.frame_len(), 5);
    }

    #[test]
    fn header_rejects_short_and_oversized() {
        assert_eq!(
            Frame::new_checked(&[1u8, 2, 0][..]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Frame::new_checked(&[1u8, 2, 0, 3, 0, 0][..]).unwrap_err(),
            Error::Truncated
        );
        let over = (MAX_BODY_LEN as u16 + 1).to_be_bytes();
        let bytes = [1u8, 2, over[0], over[1]];
        assert_eq!(
            Frame::new_checked(&[7u8, 2, 0xff, 0xff][..]).unwrap_err(),
            Error::UnsupportedVersion(7)
        );
        assert_eq!(
            Frame::new_checked(&[3u8, 2, 0, 0][..]).unwrap_err(),
            Error::UnsupportedVersion(3)
        );
        assert!(Frame::new_checked(&[2u8, 5, 0, 0][..]).is_ok());
        assert_eq!(
            Frame::new_checked(&bytes[..]).unwrap_err(),
            Error::Oversized
        );
        assert_eq!(
            Frame::new_checked(&[1u8, 2, 0xff, 0xff][..]).unwrap_err(),
            Error::Oversized
        );
    }

    #[test]
    fn endpoint_round_trip() {
        let mut buf = [0u8; ENDPOINT_LEN];
        for ep in [
            Some("203.0.113.7:40000".parse().unwrap()),
            Some("[2001:db8::1]:443".parse().unwrap()),
            None,
        ] {
            emit_endpoint(ep, &mut buf);
            assert_eq!(parse_endpoint(&buf).unwrap(), ep);
        }
        // IPv4 goes on the wire IPv4-mapped.
        emit_endpoint(
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(10, 0, 0, 2),
                0x1234,
            ))),
            &mut buf,
        );
        assert_eq!(
            buf,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2, 0x12, 0x34]
        );
    }

    #[test]
    fn endpoint_rejects_half_specified() {
        let mut buf = [0u8; ENDPOINT_LEN];
        buf[17] = 80; // port without address
        assert_eq!(parse_endpoint(&buf), Err(Error::Malformed));
        let mut buf = [0u8; ENDPOINT_LEN];
        buf[15] = 1; // ::1 without port
        assert_eq!(parse_endpoint(&buf), Err(Error::Malformed));
        assert_eq!(parse_endpoint(&buf[..17]), Err(Error::Truncated));
    }
}
