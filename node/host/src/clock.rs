//! The shell's clock: turns the async runtime's monotonic time into core [`Timestamp`]s.
//!
//! One implementation serves production and the turmoil simulator alike: both run on tokio
//! time, which turmoil virtualises. Production anchors it to the wall clock once at start-up;
//! the simulator anchors it to a fixed epoch (plus a per-node skew when a scenario asks).

use std::future::Future;

use flotilla_core::Timestamp;
use tokio::time::Instant;

/// A source of time for the driver.
pub trait Clock {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> impl Future<Output = ()> + Send;
}

/// tokio's monotonic clock anchored at a given timestamp.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base_instant: Instant,
    base: Timestamp,
}

impl TokioClock {
    /// A clock that reads `base` now and advances with tokio time.
    pub fn anchored_at(base: Timestamp) -> Self {
        TokioClock {
            base_instant: Instant::now(),
            base,
        }
    }

    /// A clock anchored to the system wall clock (production only).
    pub fn system() -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self::anchored_at(Timestamp::from_micros(since_epoch.as_micros() as u64))
    }

    fn instant_of(&self, t: Timestamp) -> Instant {
        self.base_instant + t.saturating_since(self.base)
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base + self.base_instant.elapsed()
    }

    fn sleep_until(&self, deadline: Timestamp) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(self.instant_of(deadline))
    }
}
