//! The resource manager as a libp2p behaviour: every connection is opened in the shared
//! [`SharedRcmgr`] before the swarm accepts or dials it, moves to its peer on the
//! handshake, and is closed when the swarm reports it closed or failed.
//!
//! | swarm hook | resource manager |
//! |---|---|
//! | `handle_pending_inbound_connection` | `open_connection_from(in, fd, remote ip, now)`: the inbound gate (subnet cap, rate), then the transient and system scopes (allowlisted ones if the address is allowed) |
//! | `handle_pending_outbound_connection` | `open_connection_from(out, ..)`, or `open_connection(out, ..)` when no address is known yet |
//! | `handle_established_*_connection` | `set_connection_peer` (peers without an ed25519 key stay in the transient scope) |
//! | `ConnectionClosed`, `DialFailure`, `ListenFailure` | `close_connection` |
//!
//! A refusal denies the connection with a [`ConnectionDenied`] whose cause is the
//! [`RcmgrError`]: its text names the scope chain, the resource, the direction, what was
//! held, what was asked and the limit. A TCP connection holds a file descriptor; a QUIC
//! one shares the listener's socket and holds none.
//!
//! libp2p offers no hook for streams of other behaviours (kad, identify, gossipsub, ping):
//! they count only through their connection's scopes. The node's own core-protocol streams
//! are accounted by the stream tasks ([`super::streams`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use flotilla_core::Direction;
use flotilla_core::rcmgr::{ConnHandle, RcmgrError};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use super::addr::core_peer;
use crate::rcmgr::SharedRcmgr;

/// Enforces the resource manager's connection limits.
#[derive(Debug)]
pub struct Behaviour {
    rcmgr: SharedRcmgr,
    /// Connections open in the resource manager, pending or established.
    conns: HashMap<ConnectionId, ConnHandle>,
}

/// The first IP address in `addr`, if any.
pub fn remote_ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

/// True if a connection on `addr` holds a file descriptor of its own (TCP, not QUIC).
pub fn uses_fd(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Tcp(_)))
}

impl Behaviour {
    /// A behaviour enforcing `rcmgr`'s limits.
    pub fn new(rcmgr: SharedRcmgr) -> Self {
        Behaviour {
            rcmgr,
            conns: HashMap::new(),
        }
    }

    /// Connections currently open in the resource manager through this behaviour.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    fn open(
        &mut self,
        id: ConnectionId,
        dir: Direction,
        fd: bool,
        ip: Option<IpAddr>,
    ) -> Result<(), ConnectionDenied> {
        // A connection id is never reused; a second open for it would be a swarm bug, and
        // the handle already held stays the one closed later.
        if self.conns.contains_key(&id) {
            return Ok(());
        }
        let now = self.rcmgr.now();
        let handle = self.rcmgr.try_with(dir, |rm| match ip {
            Some(ip) => rm.open_connection_from(dir, fd, ip, now),
            None => rm.open_connection(dir, fd),
        });
        match handle {
            Ok(h) => {
                self.conns.insert(id, h);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(connection = %id, direction = dir.label(), reason = %e, "connection refused by the resource manager");
                Err(ConnectionDenied::new(e))
            }
        }
    }

    fn established(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        dir: Direction,
        fd: bool,
        ip: Option<IpAddr>,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.conns.contains_key(&id) {
            // Not seen pending (the swarm calls the pending hooks for every connection;
            // kept for safety): open it now.
            self.open(id, dir, fd, ip)?;
        }
        let Some(core) = core_peer(&peer) else {
            tracing::debug!(%peer, "peer without an ed25519 key: its connection stays transient");
            return Ok(dummy::ConnectionHandler);
        };
        let Some(&h) = self.conns.get(&id) else {
            return Ok(dummy::ConnectionHandler);
        };
        match self
            .rcmgr
            .try_with(dir, |rm| rm.set_connection_peer(h, core))
        {
            Ok(()) => Ok(dummy::ConnectionHandler),
            Err(e) => {
                self.close(id);
                tracing::debug!(%peer, reason = %e, "connection refused by the resource manager");
                Err(ConnectionDenied::new(e))
            }
        }
    }

    fn close(&mut self, id: ConnectionId) {
        if let Some(h) = self.conns.remove(&id)
            && let Err(e) = self.rcmgr.with(|rm| rm.close_connection(h))
        {
            tracing::warn!(connection = %id, error = %e, "resource manager: closing a connection failed");
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.open(
            connection_id,
            Direction::Inbound,
            uses_fd(local_addr),
            remote_ip(remote_addr),
        )
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.established(
            connection_id,
            peer,
            Direction::Inbound,
            uses_fd(local_addr),
            remote_ip(remote_addr),
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // Addresses may still be added by other behaviours: count a descriptor unless
        // every known address is QUIC.
        let fd = addresses.is_empty() || addresses.iter().any(uses_fd);
        let ip = addresses.first().and_then(remote_ip);
        self.open(connection_id, Direction::Outbound, fd, ip)?;
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.established(
            connection_id,
            peer,
            Direction::Outbound,
            uses_fd(addr),
            remote_ip(addr),
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionClosed(c) => self.close(c.connection_id),
            FromSwarm::DialFailure(f) => self.close(f.connection_id),
            FromSwarm::ListenFailure(f) => self.close(f.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Why a connection was denied, if the resource manager denied it.
pub fn refusal(denied: &ConnectionDenied) -> Option<&RcmgrError> {
    denied.downcast_ref::<RcmgrError>()
}

#[cfg(test)]
mod tests;
