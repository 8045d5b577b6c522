//! What the turmoil hosts of one run share with the engine loop: the records for the trace,
//! the message counters, and the nodes handed back at the end.
//!
//! Hosts are ticked one after another within a simulation step, so their records arrive
//! grouped by host, not by time. [`Shared::drain_into`] sorts each step's records by virtual
//! time (stably, so ties keep host order) before they reach the [`Trace`], which keeps the
//! trace in time order like the fleet engine's.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use flotilla_core::{Event, Message, Node, PeerId, Timestamp, Transmit};
use flotilla_node::driver::Observer;

use super::host::sim_now;
use crate::trace::Trace;

/// One line for the trace, before sorting.
#[derive(Debug)]
enum Record {
    /// The node started.
    Started {
        region: String,
        last_mile: Duration,
        bootstrap: bool,
    },
    /// The node reported an event.
    Event(Event),
    /// The node handed a message to the network (counted in the timeline only).
    Sent,
    /// The node received a message (counted in the timeline only).
    Delivered,
}

/// The state shared by every host of a run and the engine loop (all on one thread).
#[derive(Debug, Default)]
pub(super) struct Shared {
    records: Vec<(Timestamp, usize, Record)>,
    sent: u64,
    delivered: u64,
    nodes: BTreeMap<usize, Node>,
}

/// A handle to the [`Shared`] state of a run.
pub(super) type SharedRef = Rc<RefCell<Shared>>;

impl Shared {
    /// Node `node` started at `now`.
    pub(super) fn started(
        &mut self,
        now: Timestamp,
        node: usize,
        region: &str,
        last_mile: Duration,
        bootstrap: bool,
    ) {
        let record = Record::Started {
            region: region.to_string(),
            last_mile,
            bootstrap,
        };
        self.records.push((now, node, record));
    }

    /// Node `node` stopped; keep it for the result.
    pub(super) fn finished(&mut self, node: usize, state: Node) {
        self.nodes.insert(node, state);
    }

    /// Writes the records gathered so far to `trace`, in time order.
    pub(super) fn drain_into(&mut self, trace: &mut Trace) {
        self.records.sort_by_key(|(t, _, _)| *t);
        for (now, node, record) in self.records.drain(..) {
            match record {
                Record::Started {
                    region,
                    last_mile,
                    bootstrap,
                } => trace.node_started(now, node, &region, last_mile, bootstrap),
                Record::Event(event) => trace.event(now, node, &event),
                Record::Sent => trace.timeline_mut().sent(now),
                Record::Delivered => trace.timeline_mut().delivered(now),
            }
        }
    }

    /// Messages handed to the network so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent
    }

    /// Messages handed to a receiving node so far.
    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The nodes handed back, by index.
    pub(super) fn take_nodes(&mut self) -> BTreeMap<usize, Node> {
        std::mem::take(&mut self.nodes)
    }
}

/// The [`Observer`] of node `index`: records its events at the simulation's virtual time
/// (not the node's own clock, which may be skewed) and counts its messages.
#[derive(Debug, Clone)]
pub(super) struct Recorder {
    pub(super) index: usize,
    pub(super) shared: SharedRef,
}

impl Observer for Recorder {
    fn event(&mut self, now: Timestamp, _: &Node, event: &Event) {
        let at = sim_now().unwrap_or(now);
        self.shared
            .borrow_mut()
            .records
            .push((at, self.index, Record::Event(event.clone())));
    }

    fn transmit(&mut self, now: Timestamp, _: &Node, _: &Transmit) {
        let mut shared = self.shared.borrow_mut();
        shared.sent += 1;
        let at = sim_now().unwrap_or(now);
        shared.records.push((at, self.index, Record::Sent));
    }

    fn received(&mut self, now: Timestamp, _: &Node, _: &PeerId, _: &Message) {
        let mut shared = self.shared.borrow_mut();
        shared.delivered += 1;
        let at = sim_now().unwrap_or(now);
        shared.records.push((at, self.index, Record::Delivered));
    }
}
