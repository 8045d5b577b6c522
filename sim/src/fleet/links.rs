//! Connections between fleet nodes: a TCP-like handshake, closes and FIFO delivery.
//!
//! Each pair of nodes has at most one [`Link`], the logical connection between them. A
//! link goes through incarnations (its `epoch`); in each, each end is `Idle` (not told
//! anything yet), `Open` (told it is connected) or `Closed` (told it is not, or closed it).
//!
//! - A dial sends a SYN along the directed link. On arrival the dialled end opens (unless
//!   it has not started, which refuses the dial) and answers with a SYN-ACK, on whose
//!   arrival the dialler opens: inbound after one one-way delay, established after a round
//!   trip. A dial whose dialler end is already open is answered at once.
//! - A disconnect closes the local end at once and sends a FIN; its arrival closes the other
//!   end. Messages sent before the FIN arrive before it.
//! - A link with no open end and at least one closed end is finished: the next SYN starts a
//!   new incarnation. Items of an old incarnation are stale: messages are dropped, dial
//!   answers fail the dial. A link with no open end and nothing in flight is forgotten.

use flotilla_core::rcmgr::ConnHandle;
use flotilla_core::{DialId, Direction, PeerId, Timestamp, Transmit};

use super::Fleet;
use super::queue::{FailReason, Item, Letter};
use crate::account;
use crate::world::FastMap;

/// How long a dial to an address nobody listens on takes to fail.
pub(super) const DIAL_UNREACHABLE: std::time::Duration = std::time::Duration::from_secs(5);

/// What one end of a link has been told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Idle,
    Open,
    Closed,
}

/// The logical connection between two nodes.
#[derive(Debug, Clone)]
struct Link {
    epoch: u32,
    /// Ends of the lower and the higher node index.
    ends: [End; 2],
    /// Arrival time of the latest item sent from the lower (0) and the higher (1) end.
    arrival_last_us: [u64; 2],
    /// When the uplink of each end finishes sending what it queued on this link.
    uplink_free_us: [u64; 2],
    /// SYNs, SYN-ACKs, FINs and messages on their way.
    in_flight: u32,
    /// The connection in each end's resource manager while that end is open.
    conns: [Option<ConnHandle>; 2],
}

impl Link {
    fn finished(&self) -> bool {
        !self.ends.contains(&End::Open) && self.ends.contains(&End::Closed)
    }

    fn forgettable(&self) -> bool {
        self.in_flight == 0 && !self.ends.contains(&End::Open)
    }
}

/// All links, by node pair.
#[derive(Debug, Default)]
pub(super) struct Links {
    map: FastMap<u64, Link>,
}

/// The key of the pair and the side of `a` in it.
fn key(a: usize, b: usize) -> (u64, usize) {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    ((lo as u64) << 32 | hi as u64, usize::from(a > b))
}

impl Links {
    fn get(&mut self, a: usize, b: usize) -> Option<&mut Link> {
        self.map.get_mut(&key(a, b).0)
    }

    /// The nodes `a` has a link with, in index order.
    pub(super) fn peers_of(&self, a: usize) -> Vec<usize> {
        let a = a as u64;
        let mut peers: Vec<usize> = self
            .map
            .keys()
            .filter_map(|k| {
                let (lo, hi) = (k >> 32, k & 0xffff_ffff);
                if lo == a {
                    Some(hi as usize)
                } else if hi == a {
                    Some(lo as usize)
                } else {
                    None
                }
            })
            .collect();
        // Sorted, so the order of the hash map never shows.
        peers.sort_unstable();
        peers
    }

    /// True if `a`'s end of its link to `b` is open.
    pub(super) fn is_open(&self, a: usize, b: usize) -> bool {
        let (k, side) = key(a, b);
        self.map.get(&k).is_some_and(|l| l.ends[side] == End::Open)
    }

    /// True if nothing is in flight between `a` and `b`.
    pub(super) fn quiet(&self, a: usize, b: usize) -> bool {
        self.map.get(&key(a, b).0).is_none_or(|l| l.in_flight == 0)
    }

    fn forget_if_done(&mut self, a: usize, b: usize) {
        let k = key(a, b).0;
        if self.map.get(&k).is_some_and(Link::forgettable) {
            self.map.remove(&k);
        }
    }
}

impl Fleet<'_> {
    /// Schedules `item` from `from` to `to` after a one-way delay, FIFO on the directed link.
    pub(super) fn send_on_link(&mut self, from: usize, to: usize, item: Item) {
        self.send_on_link_tx(from, to, item, 0);
    }

    /// [`Self::send_on_link`] for an item that takes `tx_us` to leave `from`'s uplink: it
    /// leaves when what was queued before it on the link has left, then travels.
    fn send_on_link_tx(&mut self, from: usize, to: usize, item: Item, tx_us: u64) {
        let message = matches!(item, Item::Deliver { .. });
        if self.faults.blocks(from, to) || (message && self.faults.draw_loss()) {
            return self.lose(from, item);
        }
        let delay_us = self.world.one_way_us(from, to, &mut self.rng);
        let at_us = self.now.as_micros() + delay_us;
        let (k, side) = key(from, to);
        let link = self.links.map.entry(k).or_insert(Link {
            epoch: 0,
            ends: [End::Idle; 2],
            arrival_last_us: [0; 2],
            uplink_free_us: [0; 2],
            in_flight: 0,
            conns: [None; 2],
        });
        let at_us = if tx_us > 0 {
            let now_us = self.now.as_micros();
            let left_us = now_us.max(link.uplink_free_us[side]) + tx_us;
            link.uplink_free_us[side] = left_us;
            at_us + (left_us - now_us)
        } else {
            at_us
        };
        let at_us = at_us.max(link.arrival_last_us[side]);
        link.arrival_last_us[side] = at_us;
        link.in_flight += 1;
        self.queue.push(Timestamp::from_micros(at_us), item);
    }

    /// Counts an arrival off the link and returns (epoch, end of `a`, end of `b`).
    fn arrive(&mut self, a: usize, b: usize) -> Option<(u32, End, End)> {
        let (_, side) = key(a, b);
        let link = self.links.get(a, b)?;
        link.in_flight -= 1;
        Some((link.epoch, link.ends[side], link.ends[1 - side]))
    }

    fn set_end(&mut self, a: usize, b: usize, end: End) {
        let (_, side) = key(a, b);
        if let Some(link) = self.links.get(a, b) {
            link.ends[side] = end;
        }
    }

    /// Stores the connection of `a`'s end of the link to `b`.
    fn set_conn(&mut self, a: usize, b: usize, c: Option<ConnHandle>) {
        let (_, side) = key(a, b);
        if let Some(link) = self.links.get(a, b) {
            debug_assert!(link.conns[side].is_none(), "an end holds one connection");
            link.conns[side] = c;
        }
    }

    /// Takes the connection of `a`'s end of the link to `b`.
    fn take_conn(&mut self, a: usize, b: usize) -> Option<ConnHandle> {
        let (_, side) = key(a, b);
        self.links.get(a, b).and_then(|l| l.conns[side].take())
    }

    pub(super) fn fail_dial_after(
        &mut self,
        node: usize,
        dial: u64,
        reason: FailReason,
        after_us: u64,
    ) {
        let at = Timestamp::from_micros(self.now.as_micros() + after_us);
        self.queue.push(
            at,
            Item::DialFailed {
                node: node as u32,
                dial,
                reason,
            },
        );
    }

    /// Node `from` dials `addr`, expecting `peer`.
    pub(super) fn dial(&mut self, from: usize, id: DialId, addr: &str, peer: Option<PeerId>) {
        let tagged = self.faults.tag_dial(from, id.0);
        let Some(to) = self.world.index_of_addr(addr) else {
            let after_us = DIAL_UNREACHABLE.as_micros() as u64;
            return self.fail_dial_after(from, tagged, FailReason::Unreachable, after_us);
        };
        if to == from {
            return self.fail_dial_after(from, tagged, FailReason::SelfDial, 0);
        }
        if peer.is_some_and(|p| p != self.ids[to]) {
            let rtt_us = self.world.rtt_us(from, to);
            return self.fail_dial_after(from, tagged, FailReason::WrongPeer, rtt_us);
        }
        let (_, side) = key(from, to);
        let open = self
            .links
            .get(from, to)
            .is_some_and(|l| l.ends[side] == End::Open);
        if open {
            let (now, remote) = (self.clock(from), self.ids[to]);
            if let Some(n) = self.node(from) {
                n.handle_connected(now, remote, Direction::Outbound, Some(id));
            }
            return;
        }
        let item = Item::Syn {
            from: from as u32,
            to: to as u32,
            dial: tagged,
        };
        self.send_on_link(from, to, item);
    }

    /// A SYN from dialler `from` reaches `to`.
    pub(super) fn on_syn(&mut self, from: usize, to: usize, dial: u64) {
        if self.arrive(to, from).is_none() {
            return self.fail_dial_after(from, dial, FailReason::Closed, 0);
        }
        let after_us = self.world.one_way_us(to, from, &mut self.rng);
        if self.nodes[to].is_none() {
            self.fail_dial_after(from, dial, FailReason::Refused, after_us);
            return self.links.forget_if_done(from, to);
        }
        let (_, side) = key(to, from);
        let Some(link) = self.links.get(to, from) else {
            return;
        };
        if link.finished() {
            link.epoch = link.epoch.wrapping_add(1);
            link.ends = [End::Idle; 2];
        }
        let (epoch, mine, theirs) = (link.epoch, link.ends[side], link.ends[1 - side]);
        if mine == End::Closed || theirs == End::Closed {
            self.fail_dial_after(from, dial, FailReason::Closed, after_us);
            return self.links.forget_if_done(from, to);
        }
        if mine == End::Idle {
            let (now, remote) = (self.clock(to), self.ids[from]);
            match self.acct.open_inbound(self.world, to, from, remote, now) {
                Ok(c) => {
                    self.set_conn(to, from, Some(c));
                    self.rcmgr_check(to, Some(remote));
                }
                Err(r) => {
                    self.refuse(to, r);
                    self.fail_dial_after(from, dial, FailReason::Limit(r), after_us);
                    return self.links.forget_if_done(from, to);
                }
            }
        }
        let answer = Item::SynAck {
            from: to as u32,
            to: from as u32,
            epoch,
            dial,
        };
        self.send_on_link(to, from, answer);
        if mine == End::Idle {
            self.set_end(to, from, End::Open);
            let (now, remote) = (self.clock(to), self.ids[from]);
            if let Some(n) = self.node(to) {
                n.handle_connected(now, remote, Direction::Inbound, None);
            }
            self.drain(to, false);
        }
    }

    /// The acceptance of dial `dial` from `from` reaches the dialler `to`.
    pub(super) fn on_syn_ack(&mut self, from: usize, to: usize, epoch: u32, dial: u64) {
        let state = self.arrive(to, from);
        let (now, remote) = (self.clock(to), self.ids[from]);
        // The dial was made by a node that has crashed since: reset the connection the
        // answering end opened, as TCP would.
        let Some(dial) = self.faults.untag_dial(to, dial) else {
            if let Some((current, mine, _)) = state
                && current == epoch
                && mine != End::Open
            {
                self.set_end(to, from, End::Closed);
                let reset = Item::Fin {
                    from: to as u32,
                    to: from as u32,
                    epoch,
                };
                self.send_on_link(to, from, reset);
            }
            return self.links.forget_if_done(from, to);
        };
        match state {
            Some((current, mine, _)) if current == epoch && mine != End::Closed => {
                let opened = if mine == End::Idle && self.nodes[to].is_some() {
                    self.acct.open_outbound(self.world, to, remote).map(Some)
                } else {
                    Ok(None)
                };
                match opened {
                    Ok(c) => {
                        if c.is_some() {
                            self.set_conn(to, from, c);
                            self.rcmgr_check(to, Some(remote));
                        }
                        self.set_end(to, from, End::Open);
                        if let Some(n) = self.node(to) {
                            n.handle_connected(
                                now,
                                remote,
                                Direction::Outbound,
                                Some(DialId(dial)),
                            );
                        }
                    }
                    Err(r) => {
                        // The dialler's own limits refuse the connection: it resets it.
                        self.refuse(to, r);
                        self.set_end(to, from, End::Closed);
                        let reset = Item::Fin {
                            from: to as u32,
                            to: from as u32,
                            epoch,
                        };
                        self.send_on_link(to, from, reset);
                        if let Some(n) = self.node(to) {
                            n.handle_dial_failed(now, DialId(dial), &r.reason());
                        }
                    }
                }
            }
            _ => {
                if let Some(n) = self.node(to) {
                    n.handle_dial_failed(now, DialId(dial), &FailReason::Closed.text());
                }
            }
        }
        self.drain(to, false);
        self.links.forget_if_done(from, to);
    }

    /// Node `from` closes its connection to `peer`.
    pub(super) fn disconnect(&mut self, from: usize, peer: PeerId) {
        let now = self.clock(from);
        let Some(to) = self.world.index_of(&peer) else {
            if let Some(n) = self.node(from) {
                n.handle_disconnected(now, peer);
            }
            return;
        };
        let (_, side) = key(from, to);
        let Some(link) = self.links.get(from, to) else {
            if let Some(n) = self.node(from) {
                n.handle_disconnected(now, peer);
            }
            return;
        };
        let (epoch, mine) = (link.epoch, link.ends[side]);
        if mine == End::Closed {
            return;
        }
        link.ends[side] = End::Closed;
        if let Some(c) = link.conns[side].take() {
            self.acct.close(from, c);
        }
        if mine == End::Open
            && let Some(n) = self.node(from)
        {
            n.handle_disconnected(now, peer);
        }
        self.send_on_link(
            from,
            to,
            Item::Fin {
                from: from as u32,
                to: to as u32,
                epoch,
            },
        );
    }

    /// Node `a` is gone (crashed): its end of the link to `b` closes, and if it was open a
    /// close travels to `b` behind what `a` sent before.
    pub(super) fn close_end(&mut self, a: usize, b: usize) {
        let (_, side) = key(a, b);
        let Some(link) = self.links.get(a, b) else {
            return;
        };
        let (epoch, mine) = (link.epoch, link.ends[side]);
        link.ends[side] = End::Closed;
        // The crashed node's resource manager is gone with everything it held.
        link.conns[side] = None;
        if mine == End::Open {
            let fin = Item::Fin {
                from: a as u32,
                to: b as u32,
                epoch,
            };
            self.send_on_link(a, b, fin);
        }
        self.links.forget_if_done(a, b);
    }

    /// The close of `from` reaches `to`.
    pub(super) fn on_fin(&mut self, from: usize, to: usize, epoch: u32) {
        if let Some((current, mine, _)) = self.arrive(to, from)
            && current == epoch
            && mine != End::Closed
        {
            self.set_end(to, from, End::Closed);
            if let Some(c) = self.take_conn(to, from) {
                self.acct.close(to, c);
            }
            if mine == End::Open {
                let (now, remote) = (self.clock(to), self.ids[from]);
                if let Some(n) = self.node(to) {
                    n.handle_disconnected(now, remote);
                }
                self.drain(to, false);
            }
        }
        self.links.forget_if_done(from, to);
    }

    /// Node `from` sends a message.
    pub(super) fn send(&mut self, from: usize, t: Transmit) {
        self.counters.sent += 1;
        self.trace.timeline_mut().sent(self.now);
        let Some(to) = self.world.index_of(&t.to) else {
            self.counters.dropped += 1;
            return;
        };
        let (_, side) = key(from, to);
        let epoch = match self.links.get(from, to) {
            Some(link) if link.ends[side] == End::Open => link.epoch,
            _ => {
                self.counters.dropped += 1;
                return;
            }
        };
        let kbps = self.world.uplink_kbps(from);
        // Time on a limited uplink: the frame's bits at the uplink's rate.
        let tx_us = if kbps > 0.0 {
            let bytes = flotilla_core::wire::encode_frame(&t.message).map_or(0, |f| f.len());
            ((bytes as f64 * 8_000.0 / kbps).ceil() as u64).max(1)
        } else {
            0
        };
        let slot = self.mail.insert(Letter {
            from: from as u32,
            to: to as u32,
            epoch,
            message: t.message,
        });
        self.send_on_link_tx(from, to, Item::Deliver { slot }, tx_us);
    }

    /// A message arrives.
    pub(super) fn on_deliver(&mut self, slot: u32) {
        let Some(letter) = self.mail.take(slot) else {
            return;
        };
        let (from, to) = (letter.from as usize, letter.to as usize);
        match self.arrive(to, from) {
            Some((current, End::Open, _)) if current == letter.epoch => {
                let (now, remote) = (self.clock(to), self.ids[from]);
                let stream = if self.acct.accounts_messages() && self.nodes[to].is_some() {
                    let bytes = account::frame_bytes(&letter.message);
                    match self.acct.message(self.world, to, remote, bytes) {
                        Ok(s) => Some(s),
                        Err(r) => {
                            self.counters.dropped += 1;
                            self.refuse(to, r);
                            return self.links.forget_if_done(from, to);
                        }
                    }
                } else {
                    None
                };
                if stream.is_some() {
                    self.rcmgr_check(to, Some(remote));
                }
                self.counters.delivered += 1;
                self.trace.timeline_mut().delivered(self.now);
                if let Some(n) = self.node(to) {
                    n.handle_message(now, remote, letter.message);
                }
                if let Some(s) = stream {
                    self.acct.message_done(to, s);
                }
                self.drain(to, false);
            }
            _ => self.counters.dropped += 1,
        }
        self.links.forget_if_done(from, to);
    }
}
