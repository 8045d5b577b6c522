//! The event queue of the fleet engine and the bag of messages in flight.
//!
//! Everything that will happen is ordered by (time, sequence number): the sequence number
//! breaks ties in insertion order, so equal times never depend on the queue's internals. Items are small and `Copy`; message bodies wait in a [`Mailbag`] whose slots
//! are reused, so the queue itself never allocates per event once warmed up.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use flotilla_core::{Message, Timestamp};

use crate::account::Refusal;

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
    /// A resource manager refused the connection (the dialled end's or the dialler's).
    Limit(Refusal),
}

impl FailReason {
    /// The reason handed to the node (and shown in the trace).
    pub(super) fn text(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            FailReason::Unreachable => "unreachable",
            FailReason::Refused => "refused",
            FailReason::Closed => "closed",
            FailReason::WrongPeer => "wrong-peer",
            FailReason::SelfDial => "self",
            FailReason::Limit(r) => return Cow::Owned(r.reason()),
        })
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
    /// What a flood holds in slot `slot` is released.
    Release { slot: u32 },
    /// Node `node`'s simulated executor is due (valid if its time is still the one
    /// recorded).
    Exec { node: u32 },
    /// Service provider `node` deploys.
    Deploy { node: u32 },
    /// The `refused` lines of the minute that ends now.
    RefusalLines,
    /// The liveness phase looks at the network.
    Probe,
    /// The simulator looks for convergence of watermarks and filters.
    CompanyProbe,
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

/// Microseconds covered by one slot of the wheel (a power of two).
const SLOT_US: u64 = 1 << 10;
/// Slots in the wheel: it covers the next `SLOTS * SLOT_US` microseconds (about 16.8 s).
const SLOTS: u64 = 1 << 14;

/// The time-ordered queue of [`Item`]s.
///
/// A timing wheel in front of a heap: items due within the wheel's span wait unsorted in
/// the slot of their time, items further out in the `far` heap. Only the slot being drained
/// is ordered, in the small `current` heap, so a pop sifts through a few dozen entries
/// instead of the whole queue. Every item of a slot before `tick` (included) is in
/// `current`, every item of the following `SLOTS - 1` slots in the wheel, every later one
/// in `far`; the order of pops is therefore exactly the (time, sequence number) order.
#[derive(Debug)]
pub(super) struct Queue {
    /// The slot being drained (time / `SLOT_US`).
    tick: u64,
    current: BinaryHeap<Entry>,
    wheel: Vec<Vec<Entry>>,
    /// Items in the wheel.
    wheel_len: usize,
    far: BinaryHeap<Entry>,
    seq: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            tick: 0,
            current: BinaryHeap::new(),
            wheel: (0..SLOTS).map(|_| Vec::new()).collect(),
            wheel_len: 0,
            far: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl Queue {
    /// Schedules `item` at `at`.
    pub(super) fn push(&mut self, at: Timestamp, item: Item) {
        self.seq += 1;
        let entry = Entry {
            at_us: at.as_micros(),
            seq: self.seq,
            item,
        };
        self.file(entry);
    }

    fn file(&mut self, entry: Entry) {
        let tick = entry.at_us / SLOT_US;
        if tick <= self.tick {
            self.current.push(entry);
        } else if tick - self.tick < SLOTS {
            self.wheel[(tick % SLOTS) as usize].push(entry);
            self.wheel_len += 1;
        } else {
            self.far.push(entry);
        }
    }

    /// Moves on to the next slot that holds anything; false if the queue is empty.
    fn advance(&mut self) -> bool {
        if self.wheel_len == 0 {
            // Nothing within the wheel's span: jump to the earliest far item.
            let Some(first) = self.far.peek() else {
                return false;
            };
            self.tick = first.at_us / SLOT_US;
        } else {
            loop {
                self.tick += 1;
                if !self.wheel[(self.tick % SLOTS) as usize].is_empty() {
                    break;
                }
            }
        }
        let slot = std::mem::take(&mut self.wheel[(self.tick % SLOTS) as usize]);
        self.wheel_len -= slot.len();
        self.current.extend(slot);
        // Far items now within the span move into the wheel (or into `current`).
        while let Some(first) = self.far.peek()
            && (first.at_us / SLOT_US).saturating_sub(self.tick) < SLOTS
        {
            if let Some(entry) = self.far.pop() {
                self.file(entry);
            }
        }
        true
    }

    /// The earliest item if it is due at or before `end`.
    pub(super) fn pop_until(&mut self, end: Timestamp) -> Option<(Timestamp, Item)> {
        while self.current.is_empty() {
            if !self.advance() {
                return None;
            }
        }
        if self.current.peek()?.at_us > end.as_micros() {
            return None;
        }
        self.current
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

    /// The queue against a plain sorted model, with pushes near and far while draining.
    #[test]
    fn pops_in_time_and_insertion_order_across_wheel_and_heap() {
        use rand::Rng;
        let mut rng = flotilla_core::SeedTree::new(9).rng();
        let mut q = Queue::default();
        let mut model: Vec<(u64, u64)> = Vec::new();
        let mut seq = 0u64;
        let mut now = 1_000_000_000u64;
        for round in 0..20_000u64 {
            for _ in 0..rng.random_range(0..4) {
                let delay = match rng.random_range(0..4) {
                    0 => 0,
                    1 => rng.random_range(0..2_000),
                    2 => rng.random_range(0..SLOT_US * SLOTS * 2),
                    _ => rng.random_range(0..60_000_000),
                };
                seq += 1;
                let item = Item::Start { node: seq as u32 };
                q.push(Timestamp::from_micros(now + delay), item);
                model.push((now + delay, seq));
            }
            model.sort_unstable();
            let end = now + rng.random_range(0..5_000);
            let expected = model.first().filter(|(at, _)| *at <= end).copied();
            let got = q.pop_until(Timestamp::from_micros(end));
            let got = got.map(|(at, item)| (at.as_micros(), item));
            let want = expected.map(|(at, seq)| (at, Item::Start { node: seq as u32 }));
            assert_eq!(got, want, "round {round}");
            if let Some(e) = expected {
                model.remove(0);
                now = e.0;
            } else if round % 7 == 0 {
                now = end;
            }
        }
        while let Some((at, item)) = q.pop_until(Timestamp::MAX) {
            let (want_at, seq) = model.remove(0);
            assert_eq!(
                (at.as_micros(), item),
                (want_at, Item::Start { node: seq as u32 })
            );
        }
        assert!(model.is_empty());
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
