//! Version 2: the probe endpoint (`doc/mediator.md` §15). One task per probe connection drives the
//! core's [`ProbeSession`]; a Probe's `(nonce → observed endpoint)` goes into the [`ProbeStore`], where
//! the registration with that nonce takes it when its Proof verifies ([`Shared::settle`]).
//!
//! [`Shared::settle`]: crate::shared::Shared::settle

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use p2psc::proto::mediator::probe::ProbeSession;
use p2psc::time::{Duration, Instant};
use p2psc::wire::{Nonce, MAX_FRAME_LEN};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::conn::{close_gracefully, sleep_until, write_within, CLOSE_DRAIN};
use crate::shared::{ConnGuard, Shared};

/// Recorded probes: each kept `keep` from its arrival, the first per nonce, at most `capacity`.
pub(crate) struct ProbeStore {
    records: Mutex<Records>,
    capacity: usize,
    keep: Duration,
}

#[derive(Default)]
struct Records {
    by_nonce: HashMap<Nonce, (SocketAddr, Instant)>,
    /// Arrival order, for expiry; an entry whose record was taken stays until it expires, and counts
    /// against the capacity until then (so this queue is bounded too).
    order: VecDeque<(Instant, Nonce)>,
}

impl Records {
    fn expire(&mut self, now: Instant, keep: Duration) {
        while let Some(&(at, nonce)) = self.order.front() {
            if at + keep > now {
                break;
            }
            self.order.pop_front();
            if self.by_nonce.get(&nonce).is_some_and(|&(_, t)| t == at) {
                self.by_nonce.remove(&nonce);
            }
        }
    }
}

impl ProbeStore {
    pub(crate) fn new(capacity: usize, keep: Duration) -> ProbeStore {
        ProbeStore {
            records: Mutex::new(Records::default()),
            capacity,
            keep,
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a probe; false if its nonce is already recorded (the first wins) or the store is full.
    pub(crate) fn record(&self, now: Instant, nonce: Nonce, observed: SocketAddr) -> bool {
        let mut r = self.records();
        r.expire(now, self.keep);
        if r.order.len() >= self.capacity || r.by_nonce.contains_key(&nonce) {
            return false;
        }
        r.by_nonce.insert(nonce, (observed, now));
        r.order.push_back((now, nonce));
        true
    }

    /// Take (remove) the probe recorded under `nonce`, if one is and has not expired.
    pub(crate) fn take(&self, now: Instant, nonce: &Nonce) -> Option<SocketAddr> {
        let mut r = self.records();
        r.expire(now, self.keep);
        r.by_nonce.remove(nonce).map(|(observed, _)| observed)
    }
}

/// Serve one probe connection: read its Probe (or refuse what came instead, or time out), then close
/// first, with a FIN.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    mut shutdown: watch::Receiver<bool>,
) {
    let clock = shared.clock;
    let step = shared.config.mediator.step_timeout;
    let mut session = ProbeSession::new(peer, clock.now(), step);
    // A Probe frame is 36 bytes.
    let mut buf = [0u8; 64];
    while session.poll_at().is_some() && !*shutdown.borrow_and_update() {
        let wake = session.poll_at().map(|at| clock.deadline(at));
        tokio::select! {
            _ = shutdown.changed() => {}
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    p2psc::proto::feed(&buf[..n], |data| {
                        let (used, probed) = session.receive(data);
                        if let Some(probed) = probed {
                            shared.probed(probed);
                        }
                        used
                    });
                }
            },
            _ = sleep_until(wake) => session.poll(clock.now()),
        }
    }
    let mut frame = [0u8; MAX_FRAME_LEN];
    if let Some(n) = session.transmit(&mut frame) {
        if write_within(&mut stream, &frame[..n], step.into())
            .await
            .is_err()
        {
            return;
        }
    }
    close_gracefully(stream, CLOSE_DRAIN).await;
    drop(guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn the_first_probe_wins_and_is_taken_once() {
        let store = ProbeStore::new(10, Duration::from_secs(10));
        let t = Instant::from_secs(1);
        assert!(store.record(t, [1; 32], ep(1)));
        assert!(!store.record(t, [1; 32], ep(2)));
        assert_eq!(store.take(t, &[1; 32]), Some(ep(1)));
        assert_eq!(store.take(t, &[1; 32]), None);
        assert_eq!(store.take(t, &[2; 32]), None);
    }

    #[test]
    fn probes_expire_and_the_store_is_bounded() {
        let store = ProbeStore::new(2, Duration::from_secs(10));
        let t = Instant::from_secs(1);
        assert!(store.record(t, [1; 32], ep(1)));
        assert!(store.record(t, [2; 32], ep(2)));
        // Full: a third is not recorded, and taking one does not make room before it expires.
        assert!(!store.record(t, [3; 32], ep(3)));
        assert_eq!(store.take(t, &[2; 32]), Some(ep(2)));
        assert!(!store.record(t, [3; 32], ep(3)));
        // Ten seconds on, both have expired: room again, and the old record is gone.
        let later = Instant::from_secs(11);
        assert_eq!(store.take(later, &[1; 32]), None);
        assert!(store.record(later, [3; 32], ep(3)));
        assert_eq!(store.take(later, &[3; 32]), Some(ep(3)));
    }
}
