//! The I/O shell: kernel sockets driven by p2psc's sans-IO [`Client`]. It reports what each socket is
//! doing, feeds the machine what they read, carries out its actions and sends its frames; every
//! protocol decision is the machine's.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use p2psc::identity::dalek::DalekVerifier;
use p2psc::identity::Keypair;
use p2psc::proto::client::MAX_CANDIDATES;
use p2psc::proto::client::{probe_endpoint, Action, Client, ConnectEvent, Via, Won as Winner};
use p2psc::proto::punch::{self, Link};
use p2psc::time::Instant;
use p2psc::wire::MAX_FRAME_LEN;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::socket;
use crate::Error;

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// One socket of the shell, as the kernel has it.
#[derive(Default)]
enum Sock {
    #[default]
    Idle,
    Connecting(Connecting),
    /// A candidate that the machine told to listen: the shared listener's connections go to it.
    Listening,
    Open {
        stream: TcpStream,
        /// Read, not yet taken by the machine (after the handshake: the application's first bytes).
        rx: Vec<u8>,
        eof: bool,
    },
    /// Connecting failed, or the connection was reset.
    Failed,
}

impl Sock {
    fn link(&self) -> Link {
        match self {
            Sock::Idle | Sock::Failed => Link::Closed,
            Sock::Connecting(_) => Link::SynSent,
            Sock::Listening => Link::Listening,
            Sock::Open { eof: true, .. } => Link::Closing,
            Sock::Open { stream, .. } => match (stream.local_addr(), stream.peer_addr()) {
                (Ok(local), Ok(remote)) => Link::Established { local, remote },
                _ => Link::Closing,
            },
        }
    }

    /// Poll what this socket is waiting for; true if anything changed.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        match self {
            Sock::Connecting(connecting) => match connecting.as_mut().poll(cx) {
                Poll::Ready(Ok(stream)) => {
                    *self = open(stream);
                    true
                }
                Poll::Ready(Err(_)) => {
                    *self = Sock::Failed;
                    true
                }
                Poll::Pending => false,
            },
            Sock::Open { stream, rx, eof } if !*eof => read_ready(stream, rx, eof, cx),
            _ => false,
        }
    }

    /// Close it: quietly (a socket still connecting sends nothing) or, with `reset`, with a RST.
    fn close(&mut self, reset: bool) {
        match std::mem::take(self) {
            Sock::Open { stream, .. } if reset => socket::abort(stream),
            _ => {}
        }
    }
}

fn open(stream: TcpStream) -> Sock {
    Sock::Open {
        stream,
        rx: Vec::new(),
        eof: false,
    }
}

/// Most bytes held for one socket: the handshake needs a frame; what follows it is the application's,
/// and the rest can wait in the kernel.
const RX_LIMIT: usize = 64 * 1024;

/// Read whatever `stream` has into `rx`; true if anything arrived or the stream ended (or was reset).
fn read_ready(stream: &TcpStream, rx: &mut Vec<u8>, eof: &mut bool, cx: &mut Context<'_>) -> bool {
    let mut changed = false;
    while rx.len() < RX_LIMIT && stream.poll_read_ready(cx).is_ready() {
        let mut buf = [0u8; 2048];
        match stream.try_read(&mut buf) {
            Ok(0) => {
                *eof = true;
                return true;
            }
            Ok(n) => {
                rx.extend_from_slice(&buf[..n]);
                changed = true;
            }
            // Readiness was stale: polling again registers the waker.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                *eof = true;
                return true;
            }
        }
    }
    changed
}

/// The shell of one connection attempt.
pub(crate) struct Shell<'k> {
    pub(crate) client: Client,
    keypair: &'k Keypair,
    /// The mediators in the pair's ranking (protocol §13), best first.
    mediators: Vec<SocketAddr>,
    /// The one in use.
    mediator_addr: SocketAddr,
    started: tokio::time::Instant,
    mediator: Sock,
    /// The mapping probe (protocol §14.2): a second connection from the punch port.
    probe: Sock,
    candidates: [Sock; MAX_CANDIDATES],
    listener: Option<TcpListener>,
    /// Where the punch port is bound (known once the mediator connection is up).
    local: Option<SocketAddr>,
}

/// What [`Shell::run`] ends with.
pub(crate) struct Won {
    pub(crate) stream: TcpStream,
    pub(crate) pending: Vec<u8>,
    pub(crate) winner: Winner,
    pub(crate) local: SocketAddr,
}

impl<'k> Shell<'k> {
    /// The shell of `client`, with `mediators` in the pair's ranking (at least one).
    pub(crate) fn new(client: Client, keypair: &'k Keypair, mediators: Vec<SocketAddr>) -> Self {
        Shell {
            client,
            keypair,
            mediator_addr: mediators[0],
            mediators,
            started: tokio::time::Instant::now(),
            mediator: Sock::Idle,
            probe: Sock::Idle,
            candidates: Default::default(),
            listener: None,
            local: None,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.started.elapsed().as_micros() as i64)
    }

    /// Run to the outcome, reporting every event to `observe`.
    pub(crate) async fn run(mut self, mut observe: impl FnMut(ConnectEvent)) -> Result<Won, Error> {
        loop {
            let now = self.now();
            self.observe();
            self.feed(now);
            while let Some(action) = self.client.poll(now) {
                self.apply(action)?;
            }
            self.send(now).await;
            while let Some(event) = self.client.next_event() {
                observe(event);
            }
            if let Some(result) = self.client.result() {
                return self.finish(result);
            }
            self.wait().await;
        }
    }

    fn observe(&mut self) {
        // The kernel completes handshakes on the listener by itself: take what it queued, so the
        // machine decides on what is there now (a smoltcp listening socket shows it at once).
        self.accept(&mut Context::from_waker(Waker::noop()));
        self.client.observe_mediator(self.mediator.link());
        self.client.observe_probe(self.probe.link());
        for (k, c) in self.candidates.iter().enumerate() {
            self.client.observe(k, c.link());
        }
    }

    /// Hand the machine what the sockets read; it takes frames, leaving the application's bytes.
    fn feed(&mut self, now: Instant) {
        if let Sock::Open { rx, .. } = &mut self.mediator {
            let used = self
                .client
                .receive_mediator(now, self.keypair, &DalekVerifier, rx);
            rx.drain(..used);
        }
        for (k, c) in self.candidates.iter_mut().enumerate() {
            if let Sock::Open { rx, .. } = c {
                let used = self.client.receive(k, &DalekVerifier, rx);
                rx.drain(..used);
            }
        }
    }

    fn apply(&mut self, action: Action) -> Result<(), Error> {
        match action {
            Action::DialMediator { rank, from_port } => {
                self.mediator.close(true);
                if let Some(addr) = self.mediators.get(rank) {
                    self.mediator_addr = *addr;
                }
                self.local = None;
                let local = socket::any_port(self.mediator_addr, from_port);
                let connecting = socket::connect(local, self.mediator_addr).map_err(Error::bind)?;
                self.mediator = Sock::Connecting(Box::pin(connecting));
            }
            Action::Candidate(action) => self.candidate(action)?,
            Action::DialProbe { rank, from_port } => {
                self.probe.close(false);
                // A probe that cannot go out only leaves our mapping unknown to the mediator.
                let mediator = self.mediators.get(rank).copied();
                if let Some(target) = mediator.and_then(probe_endpoint) {
                    let local = socket::any_port(self.mediator_addr, from_port);
                    if let Ok(connecting) = socket::connect(local, target) {
                        self.probe = Sock::Connecting(Box::pin(connecting));
                    }
                }
            }
            Action::CloseProbe => self.probe.close(false),
        }
        Ok(())
    }

    fn candidate(&mut self, action: punch::Action) -> Result<(), Error> {
        let port = self.client.local_port();
        let local = self
            .local
            .unwrap_or(socket::any_port(self.mediator_addr, port));
        match action {
            punch::Action::Dial { candidate, .. } | punch::Action::Close { candidate }
                if self.took_queued_connection(candidate) => {}
            punch::Action::Dial { candidate, target } => {
                self.candidates[candidate].close(false);
                let connecting = socket::connect(local, target).map_err(Error::bind)?;
                self.candidates[candidate] = Sock::Connecting(Box::pin(connecting));
            }
            punch::Action::Listen { candidate } => {
                self.candidates[candidate].close(false);
                self.candidates[candidate] = Sock::Listening;
                if self.listener.is_none() {
                    self.listener = Some(socket::listen(local).map_err(Error::bind)?);
                }
            }
            punch::Action::Close { candidate } => self.candidates[candidate].close(false),
            punch::Action::Abort { candidate } => self.candidates[candidate].close(true),
        }
        // The listener stays only while a candidate listens: otherwise the kernel would complete
        // handshakes that nobody takes.
        if !self.candidates.iter().any(|c| matches!(c, Sock::Listening)) {
            self.listener = None;
        }
        Ok(())
    }

    /// Send every frame the machine has, on every socket.
    async fn send(&mut self, now: Instant) {
        if let Sock::Open { stream, .. } = &mut self.mediator {
            if self.local.is_none() {
                self.local = stream.local_addr().ok();
            }
            let _ = send_all(stream, |out| self.client.transmit_mediator(now, out)).await;
        }
        if let Sock::Open { stream, .. } = &mut self.probe {
            let _ = send_all(stream, |out| self.client.transmit_probe(out)).await;
        }
        for k in 0..MAX_CANDIDATES {
            if let Sock::Open { stream, .. } = &mut self.candidates[k] {
                if send_all(stream, |out| self.client.transmit(k, out))
                    .await
                    .is_err()
                {
                    self.candidates[k] = Sock::Failed;
                }
            }
        }
    }

    /// Wait until a socket changes, a connection is accepted, or the machine's next deadline.
    async fn wait(&mut self) {
        let deadline = self.client.poll_at().map(|at| {
            let at = std::time::Duration::from_micros(at.total_micros().max(0) as u64);
            self.started + at
        });
        let mut sleep = deadline.map(|at| Box::pin(tokio::time::sleep_until(at)));
        poll_fn(|cx| {
            let mut changed = self.mediator.poll(cx);
            changed |= self.probe.poll(cx);
            for c in self.candidates.iter_mut() {
                changed |= c.poll(cx);
            }
            changed |= self.accept(cx);
            if let Some(sleep) = sleep.as_mut() {
                changed |= sleep.as_mut().poll(cx).is_ready();
            }
            if changed {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The last listening candidate is to dial or to close: a connection the kernel completed on the
    /// listener since the machine's last observation goes to it instead (the machine sees it
    /// established next time and takes it, as it would from a smoltcp listening socket that took the
    /// peer's SYN). Closing the listener would reset that connection, which the peer may already be
    /// authenticating on: on a LAN, where only the leader dials, that loses the pair's only path
    /// (seen in the TAP lab with two kernel peers on one LAN, about 1 run in 50).
    fn took_queued_connection(&mut self, k: usize) -> bool {
        let listening = |c: &Sock| matches!(c, Sock::Listening);
        let others = (0..MAX_CANDIDATES).any(|i| i != k && listening(&self.candidates[i]));
        if !listening(&self.candidates[k]) || others {
            return false;
        }
        self.accept(&mut Context::from_waker(Waker::noop()));
        matches!(self.candidates[k], Sock::Open { .. })
    }

    /// A connection the listener took goes to the candidate that listens.
    fn accept(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        let Poll::Ready(Ok((stream, _))) = listener.poll_accept(cx) else {
            return false;
        };
        match self
            .candidates
            .iter_mut()
            .find(|c| matches!(c, Sock::Listening))
        {
            Some(c) => *c = open(stream),
            None => socket::abort(stream),
        }
        true
    }

    fn finish(mut self, result: Result<Winner, p2psc::Error>) -> Result<Won, Error> {
        self.probe.close(false);
        let winner = match result {
            Ok(winner) => winner,
            Err(e) => {
                self.mediator.close(true);
                self.close_candidates();
                return Err(Error::Connect(e));
            }
        };
        // Relayed, the mediator connection is the stream.
        let won = match winner.via {
            Via::Candidate(k) => std::mem::take(&mut self.candidates[k]),
            Via::Mediator => std::mem::take(&mut self.mediator),
        };
        self.mediator.close(true);
        self.close_candidates();
        let Sock::Open { stream, rx, .. } = won else {
            return Err(Error::Connect(p2psc::Error::PeerClosed));
        };
        let local = stream.local_addr().map_err(Error::bind)?;
        Ok(Won {
            stream,
            pending: rx,
            winner,
            local,
        })
    }
}

impl Shell<'_> {
    fn close_candidates(&mut self) {
        for c in self.candidates.iter_mut() {
            c.close(true);
        }
    }
}

/// Write all of `data`; the frames are small, so the socket's buffer nearly always takes them at once.
/// Write every frame `next` hands out, a buffer's worth at a time, until it has none: a relayed
/// leader's first flight (RelayRequest, PeerAuth, Confirm) is more than one buffer, and a frame left
/// for the next wake-up would wait for the peer's bytes — a round trip through the mediator.
async fn send_all(
    stream: &mut TcpStream,
    mut next: impl FnMut(&mut [u8]) -> Option<usize>,
) -> io::Result<()> {
    let mut buf = [0u8; 2 * MAX_FRAME_LEN];
    loop {
        let n = p2psc::proto::fill(&mut buf, &mut next);
        if n == 0 {
            return Ok(());
        }
        write(stream, &buf[..n]).await?;
    }
}

async fn write(stream: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let sent = match stream.try_write(data) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let rest = &data[sent..];
    if rest.is_empty() {
        return Ok(());
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.write_all(rest))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A relayed leader's first flight — RelayRequest, PeerAuth, Confirm: 140 bytes, more than fits
    /// a buffer while a largest frame still does — leaves in one `send_all`, none of it waiting for
    /// the next wake-up.
    #[tokio::test]
    async fn send_all_writes_every_frame_the_machine_has() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut receiver, _) = listener.accept().await.unwrap();
        let mut frames = [4usize, MAX_FRAME_LEN, 4].into_iter();
        let mut queued = 0;
        send_all(&mut sender, |out| {
            let n = frames.next()?;
            out[..n].fill(0xAB);
            queued += n;
            Some(n)
        })
        .await
        .unwrap();
        drop(sender);
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).await.unwrap();
        assert_eq!(queued, 8 + MAX_FRAME_LEN);
        assert_eq!(got.len(), queued, "every frame was written");
    }
}
