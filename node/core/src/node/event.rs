//! What the node state machine asks of its shell and tells its observers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::advert::AdvertError;
use crate::connmgr::TrimCause;
use crate::identity::PeerId;
use crate::wire::{Message, RttSample};

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The remote peer dialled us.
    Inbound,
    /// We dialled the remote peer.
    Outbound,
}

impl Direction {
    /// `in` or `out`.
    pub fn label(&self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }
}

/// Identifies one dial from [`Action::Dial`] to its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DialId(pub u64);

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The receiving peer; it is connected when the transmit is produced.
    pub to: PeerId,
    /// The message.
    pub message: Message,
}

/// A connection-level request to the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a connection. The shell answers with `handle_connected` (passing the dial id)
    /// or `handle_dial_failed`.
    Dial {
        /// Echoed in the answer.
        id: DialId,
        /// The address to dial.
        addr: String,
        /// The expected peer, if known.
        peer: Option<PeerId>,
    },
    /// Close every connection to a peer. The shell answers with `handle_disconnected`.
    Disconnect {
        /// The peer.
        peer: PeerId,
    },
}

/// Something that happened, for traces, logs, metrics and the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A dial started.
    Dialing {
        /// The expected peer, if known.
        peer: Option<PeerId>,
        /// The address.
        addr: String,
    },
    /// A dial failed.
    DialFailed {
        /// The expected peer, if known.
        peer: Option<PeerId>,
        /// Why, as the shell told.
        reason: String,
    },
    /// A connection to a peer is up.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Who dialled.
        direction: Direction,
    },
    /// The last connection to a peer is down.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// The node asked the shell to drop a peer.
    Dropping {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: &'static str,
    },
    /// A peer's hello was received and verified.
    Hello {
        /// The peer.
        peer: PeerId,
    },
    /// A pong arrived: one RTT sample.
    Rtt {
        /// The peer.
        peer: PeerId,
        /// The ping's nonce.
        nonce: u64,
        /// The measured round trip.
        rtt: Duration,
    },
    /// A ping got no answer in time.
    PingTimeout {
        /// The peer.
        peer: PeerId,
        /// The ping's nonce.
        nonce: u64,
        /// Consecutive failures.
        failures: u32,
    },
    /// A peer-table exchange answer was processed.
    PeersLearned {
        /// The answering peer.
        from: PeerId,
        /// Records in the answer.
        received: usize,
        /// Records about peers new to the table.
        new: usize,
        /// Records rejected (forged, expired, too many hops).
        rejected: usize,
        /// Records about new peers the filter rejected, not stored.
        filtered: usize,
    },
    /// A peer answered [`Node::query_rtts`](crate::Node::query_rtts) with its RTTs.
    RttReport {
        /// The answering peer.
        from: PeerId,
        /// The id [`Node::query_rtts`](crate::Node::query_rtts) returned.
        id: u64,
        /// Its measured RTTs to the peers asked about.
        rtts: Vec<RttSample>,
    },
    /// The connection manager trimmed connections.
    Trimmed {
        /// Why.
        cause: TrimCause,
        /// Connections let go (each also reported by a [`Event::Dropping`]).
        victims: usize,
    },
    /// An advert was rejected and not stored.
    AdvertRejected {
        /// Who sent it.
        from: PeerId,
        /// Why.
        reason: AdvertError,
    },
    /// Something happened to a job (see [`crate::jobs::JobEvent`]).
    Job(crate::jobs::JobEvent),
}

impl Event {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Dialing { .. } => "dial",
            Event::DialFailed { .. } => "dial-failed",
            Event::Connected { .. } => "conn+",
            Event::Disconnected { .. } => "conn-",
            Event::Dropping { .. } => "drop",
            Event::Hello { .. } => "hello",
            Event::Rtt { .. } => "rtt",
            Event::PingTimeout { .. } => "ping-timeout",
            Event::PeersLearned { .. } => "peers",
            Event::AdvertRejected { .. } => "advert-rejected",
            Event::Trimmed { .. } => "trim",
            Event::RttReport { .. } => "rtt-report",
            Event::Job(e) => e.kind(),
        }
    }
}
