//! [`TurmoilNetwork`]: the driver's [`Network`] on turmoil TCP sockets.
//!
//! Every host listens on one port. After connecting, each side writes a preamble with its peer
//! id, then core messages flow in the production framing
//! ([`flotilla_node::framing`]). The network alone owns the connection table; its tasks (see
//! [`connection`](super::connection)) report through one bounded channel that
//! [`Network::next_event`] awaits, so the table changes in one deterministic order.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_core::{DialId, Direction, Message, PeerId};
use flotilla_node::network::{NetEvent, Network};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::{self, ConnId, Ctx, Internal};

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
}

impl TurmoilNetwork {
    /// Listens on `port` of the current turmoil host as peer `local`.
    pub async fn bind(local: PeerId, port: u16) -> std::io::Result<Self> {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
        let (tx, events) = mpsc::channel(EVENT_QUEUE_MAX);
        let ctx = Ctx {
            local,
            events: tx,
            ids: Arc::new(AtomicU64::new(0)),
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
            } => {
                let conns = self.peers.entry(peer).or_default();
                let first = conns.is_empty();
                conns.insert(conn);
                self.conns.insert(
                    conn,
                    Conn {
                        peer,
                        writer,
                        _close: close,
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
                Some(NetEvent::Message { from, message })
            }
            Internal::Closed { conn, reason } => {
                let peer = self.conns.remove(&conn)?.peer;
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

    async fn next(&mut self) -> Option<NetEvent> {
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
            self.conns.remove(&conn);
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
