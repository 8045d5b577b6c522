//! Aggregation of refusals for the log: at most one line per scope per interval, with the
//! number of refusals since the previous line and the latest reason.
//!
//! Time is passed in. A scope's first refusal is reported at once; later ones within the
//! interval are only counted, and reported by the first refusal after the interval or by
//! [`RefusalLog::flush`], which the host calls now and then so that a burst that stopped is
//! still reported.
//!
//! ```
//! use std::time::Duration;
//! use flotilla_core::rcmgr::RefusalLog;
//! use flotilla_core::Timestamp;
//!
//! let mut log = RefusalLog::new(Duration::from_secs(60));
//! let t0 = Timestamp::from_secs(100);
//! assert_eq!(log.record(t0, "system", "full").unwrap().refusals, 1);
//! assert!(log.record(t0, "system", "still full").is_none());
//! let lines = log.flush(Timestamp::from_secs(160));
//! assert_eq!((lines[0].refusals, lines[0].reason.as_str()), (1, "still full"));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::time::Timestamp;

/// How often a scope's refusals are logged at most, by default.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// One log line: refusals of one scope since its previous line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalLine<K> {
    /// The scope (whatever key the caller aggregates by).
    pub scope: K,
    /// Refusals since the previous line of this scope, this one included.
    pub refusals: u64,
    /// Refusals of this scope since the log was created.
    pub total: u64,
    /// The latest refusal's full reason.
    pub reason: String,
}

#[derive(Clone, Debug)]
struct Entry {
    /// When the latest line of this scope was produced.
    last_line: Timestamp,
    /// Refusals counted but not yet reported.
    pending: u64,
    total: u64,
    reason: String,
}

/// Refusal counts per scope, turned into at most one line per scope per interval.
#[derive(Clone, Debug)]
pub struct RefusalLog<K> {
    interval: Duration,
    scopes: BTreeMap<K, Entry>,
}

impl<K: Ord + Clone> RefusalLog<K> {
    /// A log that reports each scope at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        RefusalLog {
            interval,
            scopes: BTreeMap::new(),
        }
    }

    /// The interval between two lines of one scope.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A refusal by `scope` at `now` for `reason`. Returns the line to log if the scope
    /// had none within the interval, else counts the refusal for a later line.
    pub fn record(
        &mut self,
        now: Timestamp,
        scope: K,
        reason: impl Into<String>,
    ) -> Option<RefusalLine<K>> {
        let reason = reason.into();
        let interval = self.interval;
        match self.scopes.get_mut(&scope) {
            Some(e) => {
                e.pending += 1;
                e.total += 1;
                e.reason = reason;
                if now.saturating_since(e.last_line) < interval {
                    return None;
                }
                e.last_line = now;
                let refusals = std::mem::take(&mut e.pending);
                Some(RefusalLine {
                    scope,
                    refusals,
                    total: e.total,
                    reason: e.reason.clone(),
                })
            }
            None => {
                let line = RefusalLine {
                    scope: scope.clone(),
                    refusals: 1,
                    total: 1,
                    reason: reason.clone(),
                };
                let entry = Entry {
                    last_line: now,
                    pending: 0,
                    total: 1,
                    reason,
                };
                self.scopes.insert(scope, entry);
                Some(line)
            }
        }
    }

    /// Lines for every scope whose interval has passed at `now` and that counted refusals
    /// since its last line, in scope order.
    pub fn flush(&mut self, now: Timestamp) -> Vec<RefusalLine<K>> {
        let interval = self.interval;
        let mut out = Vec::new();
        for (scope, e) in &mut self.scopes {
            if e.pending == 0 || now.saturating_since(e.last_line) < interval {
                continue;
            }
            e.last_line = now;
            out.push(RefusalLine {
                scope: scope.clone(),
                refusals: std::mem::take(&mut e.pending),
                total: e.total,
                reason: e.reason.clone(),
            });
        }
        out
    }

    /// Forgets scopes with nothing pending whose last line is an interval old at `now`
    /// (their next refusal is reported at once, as a first one). Returns how many.
    pub fn collect_garbage(&mut self, now: Timestamp) -> usize {
        let before = self.scopes.len();
        let interval = self.interval;
        self.scopes
            .retain(|_, e| e.pending > 0 || now.saturating_since(e.last_line) < interval);
        before - self.scopes.len()
    }

    /// Scopes tracked.
    pub fn tracked(&self) -> usize {
        self.scopes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn first_refusal_is_reported_and_later_ones_counted() {
        let mut log = RefusalLog::new(Duration::from_secs(60));
        let line = log.record(at(10), "system", "a").unwrap();
        assert_eq!(
            line,
            RefusalLine {
                scope: "system",
                refusals: 1,
                total: 1,
                reason: "a".to_string()
            }
        );
        for i in 0..5 {
            assert!(log.record(at(11 + i), "system", format!("b{i}")).is_none());
        }
        // Another scope is reported on its own.
        assert!(log.record(at(12), "transient", "t").is_some());
        // Not yet due.
        assert!(log.flush(at(69)).is_empty());
        // The next refusal after the interval carries the five counted ones and itself.
        let line = log.record(at(70), "system", "c").unwrap();
        assert_eq!((line.refusals, line.total), (6, 7));
        assert_eq!(line.reason, "c");
        assert!(log.flush(at(200)).is_empty(), "nothing pending");
    }

    #[test]
    fn flush_reports_a_burst_that_stopped_once_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(60));
        log.record(at(0), "peer", "p0");
        for i in 1..=3 {
            assert!(log.record(at(i), "peer", format!("p{i}")).is_none());
        }
        let lines = log.flush(at(60));
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].refusals, lines[0].total), (3, 4));
        assert_eq!(lines[0].reason, "p3");
        // The flush counts as a line: the next refusal within a minute of it waits.
        assert!(log.record(at(61), "peer", "p5").is_none());
        assert!(log.flush(at(119)).is_empty());
        assert_eq!(log.flush(at(120))[0].refusals, 1);
    }

    #[test]
    fn at_most_one_line_per_scope_per_interval() {
        let mut log = RefusalLog::new(Duration::from_secs(60));
        let mut lines = Vec::new();
        // A refusal every second for ten minutes, flushing every five seconds.
        for s in 0..600 {
            lines.extend(log.record(at(s), "system", format!("r{s}")).map(|l| (s, l)));
            if s % 5 == 0 {
                lines.extend(log.flush(at(s)).into_iter().map(|l| (s, l)));
            }
        }
        for w in lines.windows(2) {
            assert!(w[1].0 - w[0].0 >= 60, "lines at {} and {}", w[0].0, w[1].0);
        }
        let reported: u64 = lines.iter().map(|(_, l)| l.refusals).sum();
        let pending: u64 = log.flush(at(10_000)).iter().map(|l| l.refusals).sum();
        assert_eq!(reported + pending, 600, "every refusal is counted once");
    }

    #[test]
    fn idle_scopes_are_forgotten() {
        let mut log = RefusalLog::new(Duration::from_secs(60));
        log.record(at(0), "a", "x");
        log.record(at(1), "a", "y");
        log.record(at(30), "b", "z");
        assert_eq!(log.collect_garbage(at(70)), 0, "a has a pending refusal");
        assert_eq!(log.flush(at(70)).len(), 1);
        assert_eq!(log.collect_garbage(at(89)), 0);
        assert_eq!(log.collect_garbage(at(130)), 2);
        assert_eq!(log.tracked(), 0);
        assert_eq!(log.record(at(131), "a", "w").unwrap().total, 1);
    }
}
