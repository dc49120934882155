//! The one monotonic clock the server feeds to the state machines.

use p2psc::time::Instant;

/// Microseconds since the server started, as p2psc [`Instant`]s, and back to tokio instants for sleeping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    /// Now, for the state machines.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// The tokio instant of a state-machine deadline.
    pub(crate) fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.start + std::time::Duration::from_micros(at.total_micros().max(0) as u64)
    }

    /// Time since start.
    pub(crate) fn uptime(&self) -> std::time::Duration {
        self.start.elapsed()
    }
}
