//! Core messages on libp2p streams.
//!
//! Outbound: one stream per peer, opened lazily by a writer task that drains a bounded
//! queue. Inbound: an acceptor task hands every stream of the core protocol to a reader
//! task (bounded in total and per peer), which decodes frames into one bounded channel.
//! A bad frame closes the stream that carried it, and only that stream.

use std::collections::HashMap;
use std::time::Duration;

use flotilla_core::{Message, PeerId};
use futures::StreamExt;
use libp2p::Stream;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::addr::core_peer;
use super::behaviour::CORE_PROTOCOL;
use crate::framing::{self, FrameError};
use crate::metrics::Metrics;
use crate::network::NetEvent;

/// Messages queued for one peer at most; more are dropped.
pub const SEND_QUEUE_MAX: usize = 64;
/// Messages decoded but not yet taken by the driver, across all peers.
pub const INBOUND_QUEUE_MAX: usize = 256;
/// Reader tasks at most, across all peers.
pub const READERS_MAX: usize = 512;
/// Reader tasks per peer at most.
pub const READERS_PER_PEER_MAX: usize = 4;
/// How long opening an outbound stream may take.
pub const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one frame may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes queued messages to `peer` on one stream, opened when the first message comes.
/// Ends when the queue is closed or the stream fails; messages still queued are dropped.
pub async fn write_loop(
    mut control: libp2p_stream::Control,
    lp_peer: libp2p::PeerId,
    peer: PeerId,
    mut queue: mpsc::Receiver<Message>,
    metrics: Metrics,
) {
    let mut stream = None;
    while let Some(message) = queue.recv().await {
        let s = match stream.as_mut() {
            Some(s) => s,
            None => {
                let opened = tokio::time::timeout(
                    STREAM_OPEN_TIMEOUT,
                    control.open_stream(lp_peer, CORE_PROTOCOL),
                )
                .await;
                match opened {
                    Ok(Ok(s)) => stream.insert(s.compat()),
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "cannot open a core stream; messages dropped");
                        metrics.message_dropped("no-stream");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "opening a core stream timed out; messages dropped");
                        metrics.message_dropped("no-stream");
                        return;
                    }
                }
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, framing::write_message(s, &message)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, kind = message.kind(), "core stream write failed");
                metrics.message_dropped("write-failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, kind = message.kind(), "core stream write timed out");
                metrics.message_dropped("write-timeout");
                return;
            }
        }
    }
    if let Some(mut s) = stream {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, s.shutdown()).await;
    }
}

/// Accepts inbound core streams and runs a reader for each, within the limits. Ends when
/// the driver stops taking messages or the swarm is gone; dropping it stops every reader.
pub async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    events: mpsc::Sender<NetEvent>,
    metrics: Metrics,
) {
    let mut readers = JoinSet::new();
    let mut owners: HashMap<tokio::task::Id, libp2p::PeerId> = HashMap::new();
    let mut per_peer: HashMap<libp2p::PeerId, usize> = HashMap::new();
    loop {
        tokio::select! {
            Some(done) = readers.join_next_with_id(), if !readers.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                if let Some(lp) = owners.remove(&id)
                    && let Some(n) = per_peer.get_mut(&lp)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        per_peer.remove(&lp);
                    }
                }
            }
            next = incoming.next() => {
                let Some((lp, stream)) = next else { return };
                if events.is_closed() {
                    return;
                }
                let Some(peer) = core_peer(&lp) else {
                    tracing::debug!(peer = %lp, "core stream from a non-ed25519 peer refused");
                    continue;
                };
                let count = per_peer.get(&lp).copied().unwrap_or(0);
                if readers.len() >= READERS_MAX || count >= READERS_PER_PEER_MAX {
                    tracing::warn!(%peer, streams = count, "too many core streams; new stream refused");
                    metrics.frame_rejected("too-many-streams");
                    continue;
                }
                per_peer.insert(lp, count + 1);
                let handle = readers.spawn(read_loop(peer, stream, events.clone(), metrics.clone()));
                owners.insert(handle.id(), lp);
            }
        }
    }
}

/// Reads frames from one inbound stream until it closes or carries a bad frame.
async fn read_loop(peer: PeerId, stream: Stream, events: mpsc::Sender<NetEvent>, metrics: Metrics) {
    let mut stream = stream.compat();
    loop {
        match framing::read_message(&mut stream).await {
            Ok(message) => {
                metrics.message_received(message.kind());
                if events
                    .send(NetEvent::Message {
                        from: peer,
                        message,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(FrameError::Closed) => return,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, error = %e, "core stream ended");
                return;
            }
            Err(FrameError::Wire(e)) => {
                let reason = match e {
                    flotilla_core::WireError::Oversized { .. } => "oversized",
                    flotilla_core::WireError::Malformed(_) => "malformed",
                };
                tracing::warn!(%peer, reason = %e, "bad frame on a core stream; closing that stream");
                metrics.frame_rejected(reason);
                return;
            }
        }
    }
}
