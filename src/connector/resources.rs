//! [`ConnectResources`]: the memory of one [`connect`](super::connect), sized by const generics like
//! embassy-net's `StackResources`.

use crate::proto::channel::MAX_RECORD_LEN;
use crate::proto::client::MAX_CANDIDATES;
use crate::wire::MAX_FRAME_LEN;

/// Each way of the mediator connection: its frames are at most [`MAX_FRAME_LEN`] bytes, and a few
/// may arrive together.
pub const MEDIATOR_BUFFER_LEN: usize = 256;

/// Smallest outgoing record buffer the secure channel accepts (a record's overhead and a byte).
const MIN_RECORD_TX: usize = crate::proto::channel::OVERHEAD + 1;

/// The memory [`connect`](super::connect) works in, all of it yours, like embassy-net's
/// `StackResources`: a `const fn new()` value that fits a `StaticCell`, with its sizes in its type.
///
/// - `RX`, `TX`: each candidate socket's receive and send buffers. The winning candidate becomes the
///   application's socket, so size them for the application (at least
///   [`MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) each).
/// - `CANDIDATES`: candidate sockets, 1 or 2. A second lets the LAN and public paths to a peer behind
///   the same public address be tried at once; with one they are tried in turn.
/// - `RECORD_TX`: the secure channel's outgoing record buffer (at least 20 bytes; bigger makes
///   fewer records). The incoming one is `RECORD_RX` bytes, [`MAX_RECORD_LEN`] (a whole record of
///   the peer's).
/// - The mediator connection's buffers are [`MEDIATOR_BUFFER_LEN`] bytes each way; with the feature
///   `relay`, `RX` and `TX` like a candidate's, since a relayed connection (protocol §14) is the
///   mediator connection and becomes the application's socket.
///
/// A connection takes [`SOCKETS`](Self::SOCKETS) slots of the stack's socket set while it is being
/// made (one when it is made); [`connect`](super::connect) fails with
/// [`Error::SocketSetFull`](crate::Error::SocketSetFull) if the set has fewer free.
///
/// [`connect_plaintext`](super::connect_plaintext) needs no record buffers: give it
/// [`PlaintextResources`].
///
/// ```
/// use p2psc::connector::{ConnectResources, PlaintextResources};
///
/// // 1 KiB each way for the application's socket, one candidate, 512-byte outgoing records. In
/// // firmware: `static RESOURCES: StaticCell<ConnectResources<1024, 1024>> = StaticCell::new();`
/// let resources = ConnectResources::<1024, 1024>::new();
/// assert_eq!(ConnectResources::<1024, 1024>::SOCKETS, 2);
/// // Two candidates racing, 2 KiB buffers, whole records both ways.
/// assert_eq!(ConnectResources::<2048, 2048, 2, 2048>::SOCKETS, 3);
/// assert!(size_of::<PlaintextResources<1024, 1024>>() < size_of::<ConnectResources<1024, 1024>>());
/// ```
pub struct ConnectResources<
    const RX: usize,
    const TX: usize,
    const CANDIDATES: usize = 1,
    const RECORD_TX: usize = 512,
    const RECORD_RX: usize = MAX_RECORD_LEN,
> {
    pub(super) rx: [[u8; RX]; CANDIDATES],
    pub(super) tx: [[u8; TX]; CANDIDATES],
    #[cfg(not(feature = "relay"))]
    pub(super) mediator_rx: [u8; MEDIATOR_BUFFER_LEN],
    #[cfg(not(feature = "relay"))]
    pub(super) mediator_tx: [u8; MEDIATOR_BUFFER_LEN],
    // A relayed connection is the mediator socket itself (protocol §14.4): it carries the application's
    // stream, so it gets the application's buffers — a 256-byte window would cap a relayed stream at
    // 256 bytes per round trip.
    #[cfg(feature = "relay")]
    pub(super) mediator_rx: [u8; RX],
    #[cfg(feature = "relay")]
    pub(super) mediator_tx: [u8; TX],
    pub(super) record_rx: [u8; RECORD_RX],
    pub(super) record_tx: [u8; RECORD_TX],
}

/// The memory [`connect_plaintext`](super::connect_plaintext) works in: [`ConnectResources`] without
/// the secure channel's record buffers.
pub type PlaintextResources<const RX: usize, const TX: usize, const CANDIDATES: usize = 1> =
    ConnectResources<RX, TX, CANDIDATES, 0, 0>;

impl<
        const RX: usize,
        const TX: usize,
        const CANDIDATES: usize,
        const RECORD_TX: usize,
        const RECORD_RX: usize,
    > ConnectResources<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>
{
    /// Socket slots a connection takes in the stack's socket set while it is being made: the mediator
    /// connection's and one per candidate.
    pub const SOCKETS: usize = 1 + CANDIDATES;

    /// Zeroed buffers.
    pub const fn new() -> Self {
        Self {
            rx: [[0; RX]; CANDIDATES],
            tx: [[0; TX]; CANDIDATES],
            #[cfg(not(feature = "relay"))]
            mediator_rx: [0; MEDIATOR_BUFFER_LEN],
            #[cfg(not(feature = "relay"))]
            mediator_tx: [0; MEDIATOR_BUFFER_LEN],
            #[cfg(feature = "relay")]
            mediator_rx: [0; RX],
            #[cfg(feature = "relay")]
            mediator_tx: [0; TX],
            record_rx: [0; RECORD_RX],
            record_tx: [0; RECORD_TX],
        }
    }

    /// The buffers, each as a slice: the mediator connection's, each candidate's, the records'.
    pub(super) fn parts(&mut self) -> Parts<'_> {
        #[allow(clippy::let_unit_value)] // evaluates the check when the program is built
        let () = Self::CHECK_SOCKETS;
        let candidates = self.rx.iter_mut().zip(self.tx.iter_mut());
        Parts {
            mediator: (&mut self.mediator_rx, &mut self.mediator_tx),
            candidates: candidates
                .map(|(rx, tx)| (&mut rx[..], &mut tx[..]))
                .collect(),
            records: (&mut self.record_rx, &mut self.record_tx),
        }
    }

    /// Refuses, when the program is built, sizes no connection can use.
    const CHECK_SOCKETS: () = {
        assert!(
            CANDIDATES >= 1 && CANDIDATES <= MAX_CANDIDATES,
            "CANDIDATES is 1 or 2"
        );
        assert!(
            RX >= MAX_FRAME_LEN && TX >= MAX_FRAME_LEN,
            "RX and TX hold at least a frame (wire::MAX_FRAME_LEN)"
        );
    };

    /// [`CHECK_SOCKETS`](Self::CHECK_SOCKETS), and record buffers the secure channel can use.
    pub(super) const CHECK_RECORDS: () = {
        assert!(
            RECORD_RX >= MAX_RECORD_LEN,
            "RECORD_RX holds a whole record (MAX_RECORD_LEN)"
        );
        assert!(
            RECORD_TX >= MIN_RECORD_TX,
            "RECORD_TX holds a record's overhead and a byte"
        );
    };
}

/// The buffers of one socket (or one record each way), receive and send.
pub(super) type Buffers<'a> = (&'a mut [u8], &'a mut [u8]);

/// [`ConnectResources`] as slices.
pub(super) struct Parts<'a> {
    pub(super) mediator: Buffers<'a>,
    pub(super) candidates: heapless::Vec<Buffers<'a>, MAX_CANDIDATES>,
    pub(super) records: Buffers<'a>,
}

impl<
        const RX: usize,
        const TX: usize,
        const CANDIDATES: usize,
        const RECORD_TX: usize,
        const RECORD_RX: usize,
    > Default for ConnectResources<RX, TX, CANDIDATES, RECORD_TX, RECORD_RX>
{
    fn default() -> Self {
        Self::new()
    }
}
