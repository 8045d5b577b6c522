//! [`TurmoilNetwork`]: the driver's [`Network`] on turmoil TCP sockets.
//!
//! Every host listens on one port. After connecting, each side writes a preamble with its peer
//! id, then core messages flow in the production framing
//! ([`flotilla_node::framing`]). The network alone owns the connection table; its tasks (see
//! [`connection`](super::connection)) report through one bounded channel that
//! [`Network::next_event`] awaits, so the table changes in one deterministic order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use flotilla_core::rcmgr::{ConnHandle, Limits, ResourceManager, StreamHandle};
use flotilla_core::{DialId, Direction, Message, PeerId};
use flotilla_node::network::{NetEvent, Network};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::{self, ConnId, Ctx, Internal};
use crate::account::{self, Refusal};

/// Where a host's resource accounting reports: each refusal, and each operation for the
/// invariant checks.
pub trait RcmgrReport: Send + Sync {
    /// The manager refused something.
    fn refused(&self, r: Refusal);
    /// The manager changed on behalf of `peer` (if any): check it.
    fn checked(&self, rm: &ResourceManager, peer: Option<&PeerId>);
}

/// The resource manager of one host, shared by its network and connection tasks: inbound
/// connections are admitted when accepted (from the dialler's simulated address), moved to
/// their peer when the handshake is done, outbound ones opened when their handshake is
/// done, and every received frame is a stream on the core protocol while the driver
/// handles it (see [`crate::account`]).
pub struct NetRcmgr {
    rm: Mutex<ResourceManager>,
    report: Box<dyn RcmgrReport>,
    /// Whether received frames are accounted as streams (see
    /// [`crate::account::Accounting::new`] for when they are not).
    messages: bool,
}

impl std::fmt::Debug for NetRcmgr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetRcmgr").finish_non_exhaustive()
    }
}

impl NetRcmgr {
    /// A manager with `limits`, reporting to `report`; `messages`: account received
    /// frames as streams.
    pub fn new(limits: Limits, report: Box<dyn RcmgrReport>, messages: bool) -> NetRcmgr {
        NetRcmgr {
            rm: Mutex::new(ResourceManager::new(limits)),
            report,
            messages,
        }
    }

    /// The manager (one thread runs the simulation, so this never waits).
    pub(super) fn lock(&self) -> MutexGuard<'_, ResourceManager> {
        match self.rm.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reports a refusal.
    pub(super) fn refused(&self, r: Refusal) {
        self.report.refused(r);
    }

    /// Reports an operation for the checks.
    pub(super) fn checked(&self, rm: &ResourceManager, peer: Option<&PeerId>) {
        self.report.checked(rm, peer);
    }
}

fn expect_ok(r: Result<(), flotilla_core::rcmgr::RcmgrError>) {
    if let Err(e) = r {
        panic!("the turmoil network misused the resource manager: {e}");
    }
}

/// Task reports queued to the network at most; tasks wait when it is full.
pub const EVENT_QUEUE_MAX: usize = 256;

/// Why a multiaddr-like address cannot be dialled in the simulation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The text is not `/dns4/<host>/tcp/<port>` (or `/dns/`, `/ip4/`, `/ip6/`).
    #[error("address `{0}` is not of the form /dns4/<host>/tcp/<port>")]
    Shape(String),
    /// The port is not a number from 1 to 65535.
    #[error("address `{0}` has no valid tcp port")]
    Port(String),
}

/// Parses `/dns4/n17/tcp/7000` (also `/dns/`, `/ip4/`, `/ip6/`, and a trailing `/p2p/<id>`)
/// into the host name and port.
pub fn parse_addr(addr: &str) -> Result<(String, u16), AddrError> {
    let parts: Vec<&str> = addr.split('/').collect();
    match parts.as_slice() {
        [
            "",
            "dns4" | "dns" | "dns6" | "ip4" | "ip6",
            host,
            "tcp",
            port,
            rest @ ..,
        ] if !host.is_empty() && matches!(rest, [] | ["p2p", _]) => {
            let port: u16 = port
                .parse()
                .map_err(|_| AddrError::Port(addr.to_string()))?;
            if port == 0 {
                return Err(AddrError::Port(addr.to_string()));
            }
            Ok(((*host).to_string(), port))
        }
        _ => Err(AddrError::Shape(addr.to_string())),
    }
}

/// The multiaddr-like text of host `host` listening on `port`: `/dns4/<host>/tcp/<port>`.
pub fn addr_of(host: &str, port: u16) -> String {
    format!("/dns4/{host}/tcp/{port}")
}

/// One open connection as the network tracks it; dropping it closes the connection.
#[derive(Debug)]
struct Conn {
    peer: PeerId,
    writer: mpsc::Sender<Message>,
    _close: oneshot::Sender<()>,
    /// Its connection in the host's resource manager.
    rc: Option<ConnHandle>,
}

/// A [`Network`] on turmoil TCP. Must be created and used inside a turmoil host.
#[derive(Debug)]
pub struct TurmoilNetwork {
    ctx: Ctx,
    events: mpsc::Receiver<Internal>,
    pending: VecDeque<NetEvent>,
    conns: BTreeMap<ConnId, Conn>,
    peers: BTreeMap<PeerId, BTreeSet<ConnId>>,
    tasks: JoinSet<()>,
    stop_at: Option<Instant>,
    stopped: bool,
    dropped: Arc<AtomicU64>,
    /// The stream of the message the driver is handling, closed when it asks for the next
    /// event.
    handling: Option<StreamHandle>,
}

impl TurmoilNetwork {
    /// Listens on `port` of the current turmoil host as peer `local`.
    pub async fn bind(local: PeerId, port: u16) -> std::io::Result<Self> {
        Self::bind_with(local, port, None).await
    }

    /// [`TurmoilNetwork::bind`] with resource accounting in `rcmgr`, if given.
    pub async fn bind_with(
        local: PeerId,
        port: u16,
        rcmgr: Option<Arc<NetRcmgr>>,
    ) -> std::io::Result<Self> {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
        let (tx, events) = mpsc::channel(EVENT_QUEUE_MAX);
        let ctx = Ctx {
            local,
            events: tx,
            ids: Arc::new(AtomicU64::new(0)),
            rcmgr,
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(connection::listen(listener, ctx.clone()));
        Ok(TurmoilNetwork {
            ctx,
            events,
            pending: VecDeque::new(),
            conns: BTreeMap::new(),
            peers: BTreeMap::new(),
            tasks,
            stop_at: None,
            stopped: false,
            dropped: Arc::new(AtomicU64::new(0)),
            handling: None,
        })
    }

    /// Ends the network at `deadline` (tokio time): from then on [`Network::next_event`]
    /// yields `None`, which makes the driver return its node.
    pub fn stop_at(mut self, deadline: Instant) -> Self {
        self.stop_at = Some(deadline);
        self
    }

    /// This host's peer id.
    pub fn local_peer(&self) -> PeerId {
        self.ctx.local
    }

    /// Peers with at least one open connection, in peer-id order.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.peers.keys()
    }

    /// Counts dropped messages in `counter` (which several networks may share) from now on.
    pub fn count_drops_in(mut self, counter: Arc<AtomicU64>) -> Self {
        self.dropped = counter;
        self
    }

    /// Messages dropped so far: sent to a peer without connection, or to a full or closing
    /// write queue.
    pub fn messages_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Applies one task report to the table; returns the event for the driver, if any.
    fn apply(&mut self, internal: Internal) -> Option<NetEvent> {
        match internal {
            Internal::Opened {
                conn,
                peer,
                direction,
                dial,
                writer,
                close,
                rc,
            } => {
                let rc = match self.admit(peer, direction, rc) {
                    Ok(rc) => rc,
                    Err(r) => {
                        // Dropping `writer` and `close` closes the connection.
                        let reason = r.reason();
                        return dial.map(|dial| NetEvent::DialFailed { dial, reason });
                    }
                };
                let conns = self.peers.entry(peer).or_default();
                let first = conns.is_empty();
                conns.insert(conn);
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        writer,
                        _close: close,
                        rc,
                    },
                );
                (first || dial.is_some()).then_some(NetEvent::Connected {
                    peer,
                    direction,
                    dial,
                })
            }
            Internal::Frame { conn, message } => {
                let from = self.conns.get(&conn)?.peer;
                if let Some(rcmgr) = self.ctx.rcmgr.clone().filter(|r| r.messages) {
                    let mut rm = rcmgr.lock();
                    match account::open_message(&mut rm, from, account::frame_bytes(&message)) {
                        Ok(s) => {
                            rcmgr.checked(&rm, Some(&from));
                            self.handling = Some(s);
                        }
                        Err(r) => {
                            drop(rm);
                            rcmgr.refused(r);
                            self.dropped.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                    }
                }
                Some(NetEvent::Message { from, message })
            }
            Internal::Closed { conn, reason } => {
                let closed = self.conns.remove(&conn)?;
                self.release(closed.rc);
                let peer = closed.peer;
                tracing::debug!(peer = %peer.short(), %reason, "connection closed");
                let conns = self.peers.get_mut(&peer)?;
                conns.remove(&conn);
                if !conns.is_empty() {
                    return None;
                }
                self.peers.remove(&peer);
                Some(NetEvent::Disconnected { peer })
            }
            Internal::DialFailed { dial, reason } => Some(NetEvent::DialFailed { dial, reason }),
        }
    }

    /// Accounts a connection past its handshake: an inbound one (admitted when accepted,
    /// `rc`) moves to `peer`, an outbound one opens and moves to it.
    fn admit(
        &mut self,
        peer: PeerId,
        direction: Direction,
        rc: Option<ConnHandle>,
    ) -> Result<Option<ConnHandle>, Refusal> {
        let Some(rcmgr) = self.ctx.rcmgr.clone() else {
            return Ok(None);
        };
        let mut rm = rcmgr.lock();
        let opened = match (direction, rc) {
            (Direction::Inbound, Some(c)) => Ok(c),
            (Direction::Inbound, None) => return Ok(None),
            (Direction::Outbound, _) => rm
                .open_connection(Direction::Outbound, true)
                .map_err(|e| Refusal::of(&e)),
        };
        let moved = opened.and_then(|c| match rm.set_connection_peer(c, peer) {
            Ok(()) => Ok(c),
            Err(e) => {
                expect_ok(rm.close_connection(c));
                Err(Refusal::of(&e))
            }
        });
        match moved {
            Ok(c) => {
                rcmgr.checked(&rm, Some(&peer));
                Ok(Some(c))
            }
            Err(r) => {
                drop(rm);
                rcmgr.refused(r);
                Err(r)
            }
        }
    }

    /// Closes connection `rc` in the resource manager.
    fn release(&mut self, rc: Option<ConnHandle>) {
        if let (Some(c), Some(rcmgr)) = (rc, self.ctx.rcmgr.as_ref()) {
            let mut rm = rcmgr.lock();
            expect_ok(rm.close_connection(c));
            rm.collect_garbage();
        }
    }

    async fn next(&mut self) -> Option<NetEvent> {
        if let (Some(s), Some(rcmgr)) = (self.handling.take(), self.ctx.rcmgr.as_ref()) {
            expect_ok(rcmgr.lock().close_stream(s));
        }
        loop {
            if self.stopped {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            let internal = tokio::select! {
                biased;
                _ = sleep_until(self.stop_at) => {
                    self.stop();
                    return None;
                }
                internal = self.events.recv() => internal,
            };
            while self.tasks.try_join_next().is_some() {}
            // The network holds a sender itself, so the channel never closes.
            let internal = internal?;
            if let Some(ev) = self.apply(internal) {
                return Some(ev);
            }
        }
    }

    /// Closes every connection and task; `next_event` yields `None` from now on.
    fn stop(&mut self) {
        self.stopped = true;
        self.conns.clear();
        self.peers.clear();
        self.pending.clear();
        self.tasks.abort_all();
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Network for TurmoilNetwork {
    fn next_event(&mut self) -> impl Future<Output = Option<NetEvent>> + Send {
        self.next()
    }

    fn dial(&mut self, id: DialId, addr: &str, peer: Option<PeerId>) {
        if let Some(p) = peer.filter(|p| self.peers.contains_key(p)) {
            let direction = Direction::Outbound;
            self.pending.push_back(NetEvent::Connected {
                peer: p,
                direction,
                dial: Some(id),
            });
            return;
        }
        match parse_addr(addr) {
            Ok((host, port)) => {
                self.tasks
                    .spawn(connection::dial(self.ctx.clone(), id, host, port, peer));
            }
            Err(e) => self.pending.push_back(NetEvent::DialFailed {
                dial: id,
                reason: e.to_string(),
            }),
        }
    }

    fn disconnect(&mut self, peer: PeerId) {
        let Some(conns) = self.peers.remove(&peer) else {
            return;
        };
        for conn in conns {
            if let Some(c) = self.conns.remove(&conn) {
                self.release(c.rc);
            }
        }
        self.pending.push_back(NetEvent::Disconnected { peer });
    }

    fn send(&mut self, to: PeerId, message: Message) {
        let conn = self
            .peers
            .get(&to)
            .and_then(|c| c.first())
            .and_then(|c| self.conns.get(c));
        let Some(conn) = conn else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %to.short(), kind = message.kind(), "not connected, dropped");
            return;
        };
        if let Err(e) = conn.writer.try_send(message) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            let why = match e {
                TrySendError::Full(_) => "write queue full",
                // The connection is closing; its `Closed` report is on the way.
                TrySendError::Closed(_) => "connection closing",
            };
            tracing::debug!(peer = %to.short(), why, "message dropped");
        }
    }
}

#[cfg(test)]
mod tests;
