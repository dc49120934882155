//! Conversions between embassy-time (the clock the async shell sleeps on) and smoltcp time (the
//! clock the state machines are given). Both count microseconds since an arbitrary epoch.

use embassy_time::{Duration, Instant};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};

pub(crate) fn instant_to_smoltcp(instant: Instant) -> SmolInstant {
    SmolInstant::from_micros(instant.as_micros() as i64)
}

pub(crate) fn instant_from_smoltcp(instant: SmolInstant) -> Instant {
    // smoltcp instants are signed; anything before the epoch is "already due".
    Instant::from_micros(instant.total_micros().max(0) as u64)
}

pub(crate) fn duration_to_smoltcp(duration: Duration) -> SmolDuration {
    SmolDuration::from_micros(duration.as_micros())
}

pub(crate) fn duration_from_smoltcp(duration: SmolDuration) -> Duration {
    Duration::from_micros(duration.total_micros())
}
