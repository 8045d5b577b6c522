//! Per-interval counts of a run: messages sent and delivered, connections up and down.
//!
//! A [`Timeline`] cuts the run into buckets of one fixed width, chosen from the run's
//! duration so that there are at most [`BUCKETS_MAX`] of them and the width is a round
//! number (1, 2 or 5 times a power of ten, in microseconds). Every hook adds one to a
//! counter of the bucket its time falls in. Message counts do not depend on the order in
//! which they are reported; connection events must come in time order, as the trace
//! receives them.
//!
//! Connections are counted at each end from the core's events: an end comes up with
//! `Connected` (`conn+`) and goes down with the first of `Disconnected` (`conn-`) or
//! `Dropping` (`drop`) for that node and peer. The core closes refused connections and
//! peers that stopped answering pings without a `Disconnected` event, so counting `conn-`
//! alone would leave those ends open for ever; a set of the open ends makes sure each end
//! goes down once. A connection between two nodes thus shows as two ups and two downs.
//!
//! ```
//! use std::time::Duration;
//! use flotilla_core::{PeerId, Timestamp};
//! use flotilla_sim::timeline::Timeline;
//!
//! let epoch = Timestamp::from_secs(1_000);
//! let mut t = Timeline::new(epoch, Duration::from_secs(600));
//! assert_eq!(t.bucket_width(), Duration::from_secs(10));
//! t.sent(epoch + Duration::from_secs(15));
//! let peer = PeerId::from_public_key([7; 32]);
//! t.conn_up(epoch + Duration::from_secs(1), 0, peer);
//! assert_eq!(t.buckets()[1].sent, 1);
//! assert_eq!(t.open_ends(), vec![1; 60]);
//! ```

use std::time::Duration;

use flotilla_core::{PeerId, Timestamp};
use rustc_hash::FxHashSet;

/// Buckets at most in one timeline.
pub const BUCKETS_MAX: u64 = 100;

/// The counts of one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Messages the nodes handed to the network.
    pub sent: u64,
    /// Messages handed to a receiving node.
    pub delivered: u64,
    /// Connection ends that came up (`conn+` lines).
    pub conn_ups: u64,
    /// Connection ends that went down (`conn-`, or `drop` of an open connection).
    pub conn_downs: u64,
}

/// Counts of a run per fixed-width interval of simulated time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    epoch_us: u64,
    width_us: u64,
    buckets: Vec<Bucket>,
    /// Open connection ends, by node and peer; used for lookups only.
    open: FxHashSet<(u32, PeerId)>,
}

/// The smallest round width (1, 2 or 5 times a power of ten) of at least `min_us`.
fn round_width_us(min_us: u64) -> u64 {
    let mut decade = 1u64;
    loop {
        for step in [1, 2, 5] {
            let width = decade.saturating_mul(step);
            if width >= min_us || width == u64::MAX {
                return width;
            }
        }
        decade = decade.saturating_mul(10);
    }
}

impl Timeline {
    /// An empty timeline of a run starting at `epoch` and lasting `duration`.
    pub fn new(epoch: Timestamp, duration: Duration) -> Timeline {
        let duration_us = u64::try_from(duration.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let width_us = round_width_us(duration_us.div_ceil(BUCKETS_MAX));
        let count = duration_us.div_ceil(width_us);
        Timeline {
            epoch_us: epoch.as_micros(),
            width_us,
            // At most BUCKETS_MAX, which fits any usize.
            buckets: vec![Bucket::default(); count as usize],
            open: FxHashSet::default(),
        }
    }

    /// The bucket `now` falls in; times before the start or after the end are counted in
    /// the first or last bucket.
    fn bucket(&mut self, now: Timestamp) -> &mut Bucket {
        let offset_us = now.as_micros().saturating_sub(self.epoch_us);
        let last = self.buckets.len() - 1;
        let i = usize::try_from(offset_us / self.width_us).map_or(last, |i| i.min(last));
        &mut self.buckets[i]
    }

    /// A node handed a message to the network at `now`.
    pub fn sent(&mut self, now: Timestamp) {
        self.bucket(now).sent += 1;
    }

    /// A message reached a node at `now`.
    pub fn delivered(&mut self, now: Timestamp) {
        self.bucket(now).delivered += 1;
    }

    /// Node `node`'s connection to `peer` came up at `now`.
    pub fn conn_up(&mut self, now: Timestamp, node: usize, peer: PeerId) {
        if self.open.insert((node as u32, peer)) {
            self.bucket(now).conn_ups += 1;
        }
    }

    /// Node `node`'s connection to `peer` went down, or is being dropped, at `now`;
    /// nothing if it is not open.
    pub fn conn_down(&mut self, now: Timestamp, node: usize, peer: PeerId) {
        if self.open.remove(&(node as u32, peer)) {
            self.bucket(now).conn_downs += 1;
        }
    }

    /// The width of every bucket.
    pub fn bucket_width(&self) -> Duration {
        Duration::from_micros(self.width_us)
    }

    /// The buckets in time order; bucket `i` covers `[i * width, (i + 1) * width)`.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// The start of bucket `i`, in seconds since the run's start.
    pub fn bucket_start_s(&self, i: usize) -> f64 {
        (i as u64 * self.width_us) as f64 / 1e6
    }

    /// Open connection ends at the end of each bucket: the running sum of ups less downs.
    pub fn open_ends(&self) -> Vec<u64> {
        let mut open = 0u64;
        self.buckets
            .iter()
            .map(|b| {
                open = (open + b.conn_ups).saturating_sub(b.conn_downs);
                open
            })
            .collect()
    }

    /// Totals over all buckets.
    pub fn totals(&self) -> Bucket {
        self.buckets.iter().fold(Bucket::default(), |t, b| Bucket {
            sent: t.sent + b.sent,
            delivered: t.delivered + b.delivered,
            conn_ups: t.conn_ups + b.conn_ups,
            conn_downs: t.conn_downs + b.conn_downs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: Timestamp, ms: u64) -> Timestamp {
        epoch + Duration::from_millis(ms)
    }

    #[test]
    fn widths_are_round_and_cover_the_run_in_at_most_100_buckets() {
        for (duration_us, width_us, count) in [
            (600_000_000, 10_000_000, 60),
            (120_000_000, 2_000_000, 60),
            (30_000_000, 500_000, 60),
            (100_000_000, 1_000_000, 100),
            (100_001_000, 2_000_000, 51),
            (1_000, 10, 100),
            (1, 1, 1),
            (1_000_000_000_000, 10_000_000_000, 100),
        ] {
            let t = Timeline::new(Timestamp::from_secs(5), Duration::from_micros(duration_us));
            assert_eq!(t.bucket_width().as_micros(), width_us, "{duration_us}");
            assert_eq!(t.buckets().len(), count, "{duration_us}");
        }
        assert_eq!(round_width_us(3), 5);
        assert_eq!(round_width_us(11), 20);
        assert_eq!(round_width_us(0), 1);
    }

    #[test]
    fn events_land_in_the_bucket_of_their_time() {
        let epoch = Timestamp::from_secs(100);
        let mut t = Timeline::new(epoch, Duration::from_secs(60));
        assert_eq!(t.bucket_width(), Duration::from_millis(1_000));
        t.sent(at(epoch, 0));
        t.sent(at(epoch, 999));
        t.sent(at(epoch, 1_000));
        t.delivered(at(epoch, 59_999));
        // Before the start and at or after the end: clamped to the first and last bucket.
        t.delivered(Timestamp::from_secs(50));
        t.delivered(at(epoch, 60_000));
        t.delivered(at(epoch, 3_600_000));
        let b = t.buckets();
        assert_eq!((b[0].sent, b[1].sent, b[2].sent), (2, 1, 0));
        assert_eq!((b[0].delivered, b[59].delivered), (1, 3));
        assert_eq!(t.totals().sent, 3);
        assert_eq!(t.totals().delivered, 4);
        assert_eq!(t.bucket_start_s(59), 59.0);
    }

    #[test]
    fn open_ends_run_across_buckets_and_each_end_goes_down_once() {
        let epoch = Timestamp::from_secs(0);
        let mut t = Timeline::new(epoch, Duration::from_secs(10));
        let (p, q) = (
            PeerId::from_public_key([1; 32]),
            PeerId::from_public_key([2; 32]),
        );
        t.conn_up(at(epoch, 120), 0, p);
        t.conn_up(at(epoch, 150), 1, q);
        // The same end reported up twice counts once.
        t.conn_up(at(epoch, 160), 0, p);
        // Dropped (`drop`), then reported down (`conn-`): one down.
        t.conn_down(at(epoch, 4_500), 0, p);
        t.conn_down(at(epoch, 4_600), 0, p);
        // A drop of a connection that never came up (refused at once) counts nothing.
        t.conn_down(at(epoch, 5_000), 3, q);
        t.conn_up(at(epoch, 9_900), 0, p);
        let open = t.open_ends();
        assert_eq!(open.len(), 100);
        assert_eq!(
            (open[0], open[1], open[44], open[45], open[99]),
            (0, 2, 2, 1, 2)
        );
        assert_eq!((t.totals().conn_ups, t.totals().conn_downs), (3, 1));
    }
}
