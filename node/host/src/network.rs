//! The network seen by the driver: connections to peers identified by [`PeerId`], carrying
//! core [`Message`]s. Production implements it on rust-libp2p ([`crate::p2p`]); the turmoil
//! simulator implements it on turmoil TCP sockets with the same framing.

use std::future::Future;

use flotilla_core::jobs::JobMessage;
use flotilla_core::{DialId, Direction, Message, Node, PeerId, SignedAdvert, Source, Timestamp};

/// Something the network reports to the driver.
#[derive(Clone, Debug)]
pub enum NetEvent {
    /// The first connection to `peer` is up (or a dial reached an already connected peer).
    Connected {
        /// The remote peer, authenticated by the transport.
        peer: PeerId,
        /// Who dialled.
        direction: Direction,
        /// The dial this connection answers, if any.
        dial: Option<DialId>,
    },
    /// The last connection to `peer` is down.
    Disconnected {
        /// The remote peer.
        peer: PeerId,
    },
    /// A dial failed.
    DialFailed {
        /// The dial.
        dial: DialId,
        /// Why, in words.
        reason: String,
    },
    /// A message arrived.
    Message {
        /// The sender.
        from: PeerId,
        /// The message.
        message: Message,
    },
    /// A peer was found outside the core protocol (DHT, mDNS).
    Discovered {
        /// The peer.
        peer: PeerId,
        /// Its addresses.
        addrs: Vec<String>,
        /// How it was found.
        source: Source,
    },
    /// A signed advert arrived on the gossip hello topic.
    Advert {
        /// The gossip peer that relayed it.
        from: PeerId,
        /// The advert.
        advert: SignedAdvert,
    },
    /// A job message broadcast to every node (a bid request) arrived; the driver hands it
    /// to [`Node::handle_broadcast`]. When the network is not connected to `from` but
    /// knows addresses for it, it reports them first as [`NetEvent::Discovered`], so that
    /// the node can reach the publisher with its answer.
    Broadcast {
        /// The peer that published it, authenticated by its signature; answers go to it.
        from: PeerId,
        /// The message.
        message: JobMessage,
    },
}

/// Why a job broadcast was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastError {
    /// The network has no way to reach every node.
    #[error("this network cannot broadcast; name the providers to ask")]
    Unsupported,
    /// The encoded message is larger than a broadcast may be.
    #[error("a broadcast of {len} bytes exceeds the limit of {max} bytes; shorten the job spec")]
    TooLarge {
        /// The encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Publishing failed.
    #[error("cannot publish the broadcast: {0}")]
    Publish(String),
}

/// A network the [`Driver`](crate::driver::Driver) can run a node on.
pub trait Network {
    /// The next event, or `None` once the network has shut down. Must be cancel-safe: the
    /// driver polls it inside `tokio::select!`.
    fn next_event(&mut self) -> impl Future<Output = Option<NetEvent>> + Send;
    /// Starts dial `id`; the outcome arrives as [`NetEvent::Connected`] with `dial: Some(id)`
    /// or as [`NetEvent::DialFailed`].
    fn dial(&mut self, id: DialId, addr: &str, peer: Option<PeerId>);
    /// Closes every connection to `peer`.
    fn disconnect(&mut self, peer: PeerId);
    /// Queues `message` for `to`. Never blocks; a full queue drops the message with a log.
    fn send(&mut self, to: PeerId, message: Message);
    /// The resource manager's system scope: connections held and their limit, if the
    /// network enforces one (the node trims before the limit is reached).
    fn system_conns(&self) -> Option<(u64, u64)> {
        None
    }
    /// Whether [`Network::broadcast`] reaches other nodes. Without it, the driver asks
    /// connected peers directly.
    fn supports_broadcast(&self) -> bool {
        false
    }
    /// Publishes `message` to every node (a bid request from [`Node::poll_broadcast`]).
    /// Never blocks; a publication that cannot go out yet may be held and retried.
    fn broadcast(&mut self, message: JobMessage) -> Result<(), BroadcastError> {
        let _ = message;
        Err(BroadcastError::Unsupported)
    }
    /// Called after every driver step, e.g. to republish the node's advert on gossip.
    fn after_step(&mut self, node: &Node, now: Timestamp) {
        let _ = (node, now);
    }
}
