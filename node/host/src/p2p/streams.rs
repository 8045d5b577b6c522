//! Core messages on libp2p streams.
//!
//! Outbound: one stream per peer, opened lazily by a writer task that drains a bounded
//! queue. Inbound: an acceptor task hands every stream of the core protocol to a reader
//! task (bounded in total and per peer), which decodes frames into one bounded channel.
//! A bad frame closes the stream that carried it, and only that stream.
//!
//! Every core stream is a stream scope in the resource manager ([`StreamScope`]): opened
//! for its peer, moved to the core protocol and the `core` service, holding the memory of
//! one frame buffer, and closed when the stream ends. An inbound stream the resource
//! manager refuses gets one [`Message::Refused`] frame naming the limit, then is closed;
//! a writer that reads such a frame on its stream logs it and stops.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use flotilla_core::rcmgr::{PRIORITY_HIGH, RcmgrError, StreamHandle};
use flotilla_core::wire::{FRAME_MAX_BYTES, FRAME_PREFIX_BYTES, PROTOCOL_NAME};
use flotilla_core::{Direction, Message, PeerId};
use futures::StreamExt;
use libp2p::Stream;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

use super::addr::core_peer;
use super::behaviour::CORE_PROTOCOL;
use crate::framing::{self, FrameError};
use crate::metrics::Metrics;
use crate::network::NetEvent;
use crate::rcmgr::SharedRcmgr;

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
/// Memory a reader or writer reserves for its buffer: one frame and its length prefix.
pub const STREAM_BUFFER_BYTES: u64 = (FRAME_MAX_BYTES + FRAME_PREFIX_BYTES) as u64;
/// The service that claims the core protocol's streams in the resource manager.
pub const CORE_SERVICE: &str = "core";
/// Refusal notices being written at once at most; further refused streams are closed
/// without one.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// How long writing a refusal notice may take.
pub const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A core stream open in the resource manager; closed there when dropped, so that every
/// way a stream task ends (done, failed, aborted) releases what it held.
#[derive(Debug)]
pub struct StreamScope {
    rcmgr: SharedRcmgr,
    handle: StreamHandle,
}

impl StreamScope {
    /// Opens a stream of `peer` in direction `dir`, sets its protocol and service, and
    /// reserves `buffer_bytes` for its buffer; on refusal nothing stays open and the
    /// refusal is reported.
    pub fn open(
        rcmgr: &SharedRcmgr,
        dir: Direction,
        peer: PeerId,
        buffer_bytes: u64,
    ) -> Result<StreamScope, RcmgrError> {
        Self::open_as(rcmgr, dir, peer, PROTOCOL_NAME, CORE_SERVICE, buffer_bytes)
    }

    /// Like [`StreamScope::open`], for a stream of `protocol` claimed by `service`.
    pub fn open_as(
        rcmgr: &SharedRcmgr,
        dir: Direction,
        peer: PeerId,
        protocol: &str,
        service: &str,
        buffer_bytes: u64,
    ) -> Result<StreamScope, RcmgrError> {
        let handle = rcmgr.try_with(dir, |rm| {
            let h = rm.open_stream_for(dir, peer)?;
            let set = rm
                .set_protocol(h, protocol)
                .and_then(|()| rm.set_service(h, service))
                .and_then(|()| rm.reserve_memory(h, buffer_bytes, PRIORITY_HIGH));
            match set {
                Ok(()) => Ok(h),
                Err(e) => {
                    // Just opened, so it is open: closing cannot fail.
                    let _ = rm.close_stream(h);
                    Err(e)
                }
            }
        })?;
        Ok(StreamScope {
            rcmgr: rcmgr.clone(),
            handle,
        })
    }
}

impl Drop for StreamScope {
    fn drop(&mut self) {
        let h = self.handle;
        if let Err(e) = self.rcmgr.with(|rm| rm.close_stream(h)) {
            tracing::warn!(error = %e, "resource manager: closing a core stream failed");
        }
    }
}

/// What a writer heard on the read side of its stream.
enum Heard {
    /// The remote refused the stream.
    Refused(String),
    /// The remote closed the stream or sent something unexpected.
    Ended(String),
}

/// Reads the read side of a writer's stream: the remote only ever writes a refusal there.
async fn watch(mut rd: ReadHalf<Compat<Stream>>) -> Heard {
    match framing::read_message(&mut rd).await {
        Ok(Message::Refused { reason }) => Heard::Refused(reason),
        Ok(other) => Heard::Ended(format!("unexpected {} frame", other.kind())),
        Err(e) => Heard::Ended(e.to_string()),
    }
}

/// A writer's open stream.
struct Open {
    wr: WriteHalf<Compat<Stream>>,
    watch: Pin<Box<dyn Future<Output = Heard> + Send>>,
    _scope: StreamScope,
}

/// Writes queued messages to `peer` on one stream, opened when the first message comes
/// and the resource manager allows it (a message the resource manager refuses a stream
/// for is dropped; the next one tries again). Ends when the queue is closed, the stream
/// fails or the remote refuses it; messages still queued are dropped.
pub async fn write_loop(
    mut control: libp2p_stream::Control,
    lp_peer: libp2p::PeerId,
    peer: PeerId,
    mut queue: mpsc::Receiver<Message>,
    rcmgr: SharedRcmgr,
    metrics: Metrics,
) {
    let mut open: Option<Open> = None;
    loop {
        let next = match open.as_mut() {
            Some(o) => tokio::select! {
                biased;
                heard = &mut o.watch => Err(heard),
                m = queue.recv() => Ok(m),
            },
            None => Ok(queue.recv().await),
        };
        let message = match next {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(Heard::Refused(reason)) => {
                // Release the stream's scope before anything else sees the refusal.
                drop(open.take());
                tracing::info!(%peer, %reason, "the peer refused our core stream");
                metrics.message_dropped("refused-by-peer");
                return;
            }
            Err(Heard::Ended(why)) => {
                drop(open.take());
                tracing::debug!(%peer, %why, "core stream ended by the peer");
                return;
            }
        };
        let o = match open.as_mut() {
            Some(o) => o,
            None => {
                let scope = match StreamScope::open(
                    &rcmgr,
                    Direction::Outbound,
                    peer,
                    STREAM_BUFFER_BYTES,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, reason = %e, kind = message.kind(), "no core stream within the limits; message dropped");
                        metrics.message_dropped("resource-limit");
                        continue;
                    }
                };
                let opened = tokio::time::timeout(
                    STREAM_OPEN_TIMEOUT,
                    control.open_stream(lp_peer, CORE_PROTOCOL),
                )
                .await;
                let stream = match opened {
                    Ok(Ok(s)) => s,
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
                };
                let (rd, wr) = tokio::io::split(stream.compat());
                open.insert(Open {
                    wr,
                    watch: Box::pin(watch(rd)),
                    _scope: scope,
                })
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, framing::write_message(&mut o.wr, &message)).await
        {
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
    if let Some(mut o) = open {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, o.wr.shutdown()).await;
    }
}

/// Writes one [`Message::Refused`] on `stream` and closes it, unless
/// [`REFUSALS_IN_FLIGHT_MAX`] notices are already being written (then it is just closed).
fn refuse(notices: &mut JoinSet<()>, stream: Stream, reason: String) {
    if notices.len() >= REFUSALS_IN_FLIGHT_MAX {
        return;
    }
    notices.spawn(async move {
        let mut s = stream.compat();
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            framing::write_message(&mut s, &Message::refused(&reason)).await?;
            s.shutdown().await?;
            Ok::<(), FrameError>(())
        })
        .await;
    });
}

/// Accepts inbound core streams and runs a reader for each, within the limits (the task
/// limits here and the resource manager's). Ends when the driver stops taking messages or
/// the swarm is gone; dropping it stops every reader.
pub async fn accept_loop(
    mut incoming: libp2p_stream::IncomingStreams,
    events: mpsc::Sender<NetEvent>,
    rcmgr: SharedRcmgr,
    metrics: Metrics,
) {
    let mut readers = JoinSet::new();
    let mut notices = JoinSet::new();
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
            Some(_) = notices.join_next(), if !notices.is_empty() => {}
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
                    let reason = format!(
                        "too many core streams: {count} open from this peer (at most \
                         {READERS_PER_PEER_MAX}), {} in all (at most {READERS_MAX})",
                        readers.len()
                    );
                    refuse(&mut notices, stream, reason);
                    continue;
                }
                let scope = match StreamScope::open(&rcmgr, Direction::Inbound, peer, STREAM_BUFFER_BYTES) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, reason = %e, "core stream refused by the resource manager");
                        refuse(&mut notices, stream, e.to_string());
                        continue;
                    }
                };
                per_peer.insert(lp, count + 1);
                let handle = readers.spawn(read_loop(peer, stream, scope, events.clone(), metrics.clone()));
                owners.insert(handle.id(), lp);
            }
        }
    }
}

/// Reads frames from one inbound stream until it closes or carries a bad frame; the
/// stream's scope is released when it ends.
async fn read_loop(
    peer: PeerId,
    stream: Stream,
    _scope: StreamScope,
    events: mpsc::Sender<NetEvent>,
    metrics: Metrics,
) {
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
