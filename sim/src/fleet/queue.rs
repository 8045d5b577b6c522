//! The event queue of the fleet engine and the bag of messages in flight.
//!
//! One binary heap orders everything that will happen by (time, sequence number): the
//! sequence number breaks ties in insertion order, so equal times never depend on heap
//! internals. Items are small and `Copy`; message bodies wait in a [`Mailbag`] whose slots
//! are reused, so the queue itself never allocates per event once warmed up.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use flotilla_core::{Message, Timestamp};

/// Why the network failed a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailReason {
    /// No peer listens on the address.
    Unreachable,
    /// The peer has not started yet.
    Refused,
    /// The connection closed while the dial was under way.
    Closed,
    /// Another peer answered than the one expected.
    WrongPeer,
    /// The node dialled its own address.
    SelfDial,
}

impl FailReason {
    /// The reason handed to the node (and shown in the trace).
    pub(super) fn text(self) -> &'static str {
        match self {
            FailReason::Unreachable => "unreachable",
            FailReason::Refused => "refused",
            FailReason::Closed => "closed",
            FailReason::WrongPeer => "wrong-peer",
            FailReason::SelfDial => "self",
        }
    }
}

/// Something that happens at a point in simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Item {
    /// Node `node` starts.
    Start { node: u32 },
    /// Node `node`'s timer, valid if its generation is still current.
    Timer { node: u32, generation: u32 },
    /// A dial's opening reaches `to`.
    Syn { from: u32, to: u32, dial: u64 },
    /// The acceptance of dial `dial` reaches the dialler `to`.
    SynAck {
        from: u32,
        to: u32,
        epoch: u32,
        dial: u64,
    },
    /// Dial `dial` of `node` failed.
    DialFailed {
        node: u32,
        dial: u64,
        reason: FailReason,
    },
    /// `from` closed the connection; the close reaches `to`.
    Fin { from: u32, to: u32, epoch: u32 },
    /// The message in mailbag slot `slot` arrives.
    Deliver { slot: u32 },
    /// Step `step` of the fault schedule.
    Fault { step: u32 },
    /// The liveness phase looks at the network.
    Probe,
}

#[derive(Debug)]
struct Entry {
    at_us: u64,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so the std max-heap pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.seq).cmp(&(self.at_us, self.seq))
    }
}

/// The time-ordered queue of [`Item`]s.
#[derive(Debug, Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl Queue {
    /// Schedules `item` at `at`.
    pub(super) fn push(&mut self, at: Timestamp, item: Item) {
        self.seq += 1;
        self.heap.push(Entry {
            at_us: at.as_micros(),
            seq: self.seq,
            item,
        });
    }

    /// The earliest item if it is due at or before `end`.
    pub(super) fn pop_until(&mut self, end: Timestamp) -> Option<(Timestamp, Item)> {
        if self.heap.peek()?.at_us > end.as_micros() {
            return None;
        }
        self.heap
            .pop()
            .map(|e| (Timestamp::from_micros(e.at_us), e.item))
    }
}

/// A message on its way.
#[derive(Debug)]
pub(super) struct Letter {
    pub from: u32,
    pub to: u32,
    pub epoch: u32,
    pub message: Message,
}

/// Messages in flight, in reusable slots.
#[derive(Debug, Default)]
pub(super) struct Mailbag {
    slots: Vec<Option<Letter>>,
    free: Vec<u32>,
    in_use: u64,
}

impl Mailbag {
    /// Stores `letter` and returns its slot.
    pub(super) fn insert(&mut self, letter: Letter) -> u32 {
        self.in_use += 1;
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(letter);
                slot
            }
            None => {
                self.slots.push(Some(letter));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Takes the letter out of `slot`.
    pub(super) fn take(&mut self, slot: u32) -> Option<Letter> {
        let letter = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        self.in_use -= 1;
        Some(letter)
    }

    /// Letters still in flight.
    pub(super) fn in_use(&self) -> u64 {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_insertion_order() {
        let mut q = Queue::default();
        let t = |us| Timestamp::from_micros(us);
        q.push(t(5), Item::Start { node: 1 });
        q.push(t(3), Item::Start { node: 2 });
        q.push(t(5), Item::Start { node: 3 });
        q.push(t(9), Item::Start { node: 4 });
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(t(5))).collect();
        assert_eq!(
            order,
            [
                (t(3), Item::Start { node: 2 }),
                (t(5), Item::Start { node: 1 }),
                (t(5), Item::Start { node: 3 })
            ]
        );
        assert_eq!(q.pop_until(t(100)), Some((t(9), Item::Start { node: 4 })));
    }

    #[test]
    fn mailbag_reuses_slots() {
        let mut bag = Mailbag::default();
        let letter = |from| Letter {
            from,
            to: 0,
            epoch: 0,
            message: Message::Ping { nonce: 1 },
        };
        let a = bag.insert(letter(1));
        let b = bag.insert(letter(2));
        assert_eq!(bag.take(a).map(|l| l.from), Some(1));
        assert!(bag.take(a).is_none());
        assert_eq!(bag.insert(letter(3)), a);
        assert_eq!((bag.in_use(), b), (2, 1));
    }
}
