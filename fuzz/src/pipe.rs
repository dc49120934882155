//! One direction of a TCP byte stream between two machines, in memory, with faults on demand.

use crate::arbitrary::Unstructured;

use crate::input;

/// Frames kept for replays.
const HISTORY: usize = 4;

/// Bytes in flight from one machine to another. Bytes the receiver does not take stay in the pipe, as
/// they would in a socket's receive buffer.
#[derive(Default, Debug)]
pub struct Pipe {
    bytes: Vec<u8>,
    /// The latest frames sent, whole, for replays.
    history: Vec<Vec<u8>>,
    /// Whether anything but the sender's own frames went in, or some of them were lost or altered.
    tampered: bool,
}

impl Pipe {
    /// An empty pipe.
    pub fn new() -> Pipe {
        Pipe::default()
    }

    /// A frame from the sender.
    pub fn send(&mut self, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(frame.to_vec());
    }

    /// Bytes that did not come from the sender (an injected frame, garbage).
    pub fn inject(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.tampered = true;
    }

    /// The latest frames sent, oldest first.
    pub fn history(&self) -> &[Vec<u8>] {
        &self.history
    }

    /// Whether the stream is no longer exactly what the sender sent.
    pub fn tampered(&self) -> bool {
        self.tampered
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether no bytes wait.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Drop everything in flight (the connection went away).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.history.clear();
    }

    /// One fault, chosen by the fuzzer: a flipped bit, a truncated tail, a replayed frame, garbage, an
    /// extra frame of any type, or the loss of everything in flight.
    pub fn fault(&mut self, u: &mut Unstructured) {
        self.tampered = true;
        match input::byte(u) % 6 {
            0 if !self.bytes.is_empty() => {
                let at = input::below(u, self.bytes.len());
                self.bytes[at] ^= 1 << (input::byte(u) % 8);
            }
            1 => {
                let cut = input::below(u, self.bytes.len() + 1);
                self.bytes
                    .truncate(self.bytes.len() - cut.min(self.bytes.len()));
            }
            2 if !self.history.is_empty() => {
                let replay = self.history[input::below(u, self.history.len())].clone();
                self.bytes.extend_from_slice(&replay);
            }
            3 => self.bytes.extend(input::garbage(u)),
            4 => self.bytes.extend(input::frame(&input::message(u))),
            _ => self.bytes.clear(),
        }
    }

    /// The first `max` bytes waiting (all of them if fewer), to hand to a receiver that answers with
    /// [`consume`](Self::consume).
    pub fn peek(&self, max: usize) -> &[u8] {
        &self.bytes[..max.min(self.bytes.len())]
    }

    /// The receiver took the first `n` bytes.
    pub fn consume(&mut self, n: usize) {
        self.bytes.drain(..n);
    }

    /// Hand at most `max` bytes to `take` (a machine's frame-at-a-time receive), through
    /// [`p2psc::proto::feed`]; the bytes it takes leave the pipe. Returns how many it took.
    pub fn deliver(&mut self, max: usize, take: impl FnMut(&[u8]) -> usize) -> usize {
        let end = max.min(self.bytes.len());
        let used = p2psc::proto::feed(&self.bytes[..end], take);
        self.bytes.drain(..used);
        used
    }
}
