//! The application stream of the TAP peer over its smoltcp socket, without an executor: by default the
//! secure channel (protocol §12, p2psc's sans-IO [`Sealer`] and [`Opener`] — what a poll-API firmware
//! does), or plaintext when both peers opt in.

use p2psc::proto::channel::{ChannelKeys, Opener, Sealer, MAX_RECORD_LEN};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;
use smoltcp::socket::tcp;

/// The secure channel's state, when it runs.
struct Channel {
    sealer: Sealer,
    opener: Opener<Vec<u8>>,
}

/// One direction's bytes in, the other's out, over a smoltcp TCP socket.
pub(crate) struct Stream {
    channel: Option<Channel>,
    /// Bytes for the socket not yet queued in it (sealed records, or plaintext).
    out: Vec<u8>,
    /// Our end-of-stream has been queued.
    closing: bool,
}

impl Stream {
    /// The secure channel with the handshake's key and our role, or plaintext.
    pub(crate) fn new(key: &SessionKey, role: Role, plaintext: bool) -> Stream {
        let channel = (!plaintext).then(|| {
            let keys = ChannelKeys::derive(key, role);
            Channel {
                sealer: Sealer::new(keys.send),
                opener: Opener::new(keys.receive, vec![0; MAX_RECORD_LEN]),
            }
        });
        Stream {
            channel,
            out: Vec::new(),
            closing: false,
        }
    }

    /// Seal `data` (or take it as it is) for sending; it goes out as the socket has room.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), String> {
        let Some(c) = self.channel.as_mut() else {
            self.out.extend_from_slice(data);
            return Ok(());
        };
        let mut rest = data;
        while !rest.is_empty() {
            let mut record = vec![0; MAX_RECORD_LEN];
            let sealed = c
                .sealer
                .seal(rest, &mut record)
                .map_err(|e| e.to_string())?;
            self.out.extend_from_slice(&record[..sealed.len]);
            rest = &rest[sealed.consumed..];
        }
        Ok(())
    }

    /// End our direction: the end-of-stream record, then (once everything is queued) FIN.
    pub(crate) fn close(&mut self) -> Result<(), String> {
        if let Some(c) = self.channel.as_mut() {
            let mut record = vec![0; MAX_RECORD_LEN];
            let n = c.sealer.seal_end(&mut record).map_err(|e| e.to_string())?;
            self.out.extend_from_slice(&record[..n]);
        }
        self.closing = true;
        Ok(())
    }

    /// Move bytes between the socket and the stream: queue what is pending out, and append what
    /// arrived (authenticated plaintext) to `into`. A channel error aborts the connection.
    pub(crate) fn pump(&mut self, s: &mut tcp::Socket, into: &mut Vec<u8>) -> Result<(), String> {
        if !self.out.is_empty() && s.can_send() {
            let n = s.send_slice(&self.out).map_err(|e| format!("send: {e}"))?;
            self.out.drain(..n);
        }
        if self.closing && self.out.is_empty() {
            s.close();
        }
        let mut received = Vec::new();
        while s.can_recv() {
            s.recv(|d| {
                received.extend_from_slice(d);
                (d.len(), ())
            })
            .map_err(|e| format!("recv: {e}"))?;
        }
        let result = self.open(&received, into, !s.may_recv());
        if result.is_err() {
            s.abort();
        }
        result
    }

    /// Whether the peer has ended its direction (with its authenticated end record, on the channel).
    pub(crate) fn peer_ended(&self, s: &tcp::Socket) -> bool {
        match &self.channel {
            Some(c) => c.opener.is_ended(),
            None => !s.may_recv(),
        }
    }

    /// Open `received` into `into`; at the socket's end (`eof`) the channel must have ended cleanly.
    fn open(&mut self, received: &[u8], into: &mut Vec<u8>, eof: bool) -> Result<(), String> {
        let Some(c) = self.channel.as_mut() else {
            into.extend_from_slice(received);
            return Ok(());
        };
        let mut rest = received;
        loop {
            let taken = c.opener.feed(rest).map_err(|e| format!("channel: {e}"))?;
            into.extend_from_slice(c.opener.plaintext());
            let n = c.opener.plaintext().len();
            c.opener.consume(n);
            rest = &rest[taken..];
            if taken == 0 || rest.is_empty() {
                break;
            }
        }
        if eof {
            c.opener.finish().map_err(|e| format!("channel: {e}"))?;
        }
        Ok(())
    }
}
