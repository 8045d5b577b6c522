//! What a host of a checked run adds around the production pieces: [`Checked`], a
//! [`Network`] that loses messages to loss bursts, runs the per-step invariant checks and
//! stops when the engine halts the run; and [`SkewClock`], a driver clock that reads the
//! simulated time plus the node's current clock skew.
//!
//! The other faults act on turmoil itself, from the engine loop: a partition cuts the
//! links between its sides (`partition_oneway` per direction), a crash stops the host's
//! software (`crash`) and a restart starts it again from scratch (`bounce`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_core::{DialId, Message, Node, PeerId, Timestamp};
use flotilla_node::clock::Clock;
use flotilla_node::network::{NetEvent, Network};
use tokio::sync::watch;
use tokio::time::Instant;

use super::network::TurmoilNetwork;
use super::recorder::SharedRef;

/// The network of one host in a checked run: [`TurmoilNetwork`] plus loss bursts, the
/// per-step checks and the engine's halt signal.
pub(super) struct Checked {
    pub(super) inner: TurmoilNetwork,
    pub(super) index: usize,
    pub(super) shared: SharedRef,
    /// Turns true when the run stops early (a failure): the driver then returns its node.
    pub(super) halt: watch::Receiver<bool>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Checked {
    async fn next(&mut self) -> Option<NetEvent> {
        if *self.halt.borrow() {
            return None;
        }
        let halt = &mut self.halt;
        tokio::select! {
            biased;
            _ = halt.wait_for(|h| *h) => None,
            ev = self.inner.next_event() => ev,
        }
    }
}

impl Network for Checked {
    fn next_event(&mut self) -> impl Future<Output = Option<NetEvent>> + Send {
        self.next()
    }

    fn dial(&mut self, id: DialId, addr: &str, peer: Option<PeerId>) {
        self.inner.dial(id, addr, peer);
    }

    fn disconnect(&mut self, peer: PeerId) {
        self.inner.disconnect(peer);
    }

    fn send(&mut self, to: PeerId, message: Message) {
        if self.shared.lock().draw_loss() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.send(to, message);
    }

    fn after_step(&mut self, node: &Node, now: Timestamp) {
        let at = super::host::sim_now().unwrap_or(now);
        self.shared.lock().after_step(self.index, node, at);
    }
}

/// The driver clock of a checked run: the simulated time plus the node's clock skew,
/// which the engine changes through a watch channel (in microseconds, negative: behind).
/// A sleep re-arms when the skew changes, so a deadline of the node's clock fires at the
/// simulated time it now corresponds to.
#[derive(Debug, Clone)]
pub(super) struct SkewClock {
    base_instant: Instant,
    base: Timestamp,
    skew_us: watch::Receiver<i64>,
}

impl SkewClock {
    /// A clock that reads `now` plus the skew at this instant.
    pub(super) fn new(now: Timestamp, skew_us: watch::Receiver<i64>) -> SkewClock {
        SkewClock {
            base_instant: Instant::now(),
            base: now,
            skew_us,
        }
    }

    fn shift(t: Timestamp, skew_us: i64) -> Timestamp {
        Timestamp::from_micros(t.as_micros().saturating_add_signed(skew_us))
    }
}

impl Clock for SkewClock {
    fn now(&self) -> Timestamp {
        let sim = self.base + self.base_instant.elapsed();
        Self::shift(sim, *self.skew_us.borrow())
    }

    fn sleep_until(&self, deadline: Timestamp) -> impl Future<Output = ()> + Send {
        let mut skew_us = self.skew_us.clone();
        let (base_instant, base) = (self.base_instant, self.base);
        async move {
            loop {
                let skew = *skew_us.borrow_and_update();
                let sim = Self::shift(deadline, skew.saturating_neg());
                let at = base_instant + sim.saturating_since(base);
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep_until(at) => return,
                    changed = skew_us.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep_until(at).await;
                            return;
                        }
                    }
                }
            }
        }
    }
}
