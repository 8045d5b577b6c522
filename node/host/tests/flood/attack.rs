//! The attackers, in the test process on real sockets.
//!
//! - Connection flood: many short-lived peers, each with its own key, dial the node with a
//!   bounded number in flight; each completes a handshake and holds the connection a while,
//!   or is refused (the handshake fails or the node closes the connection).
//! - Stream flood: a few peers hold one connection each and open many streams on it, most
//!   of the core protocol and some of the node's other protocols; each stream is held idle,
//!   or carries a malformed frame, an oversized length or a partial frame.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::wire::Message;
use flotilla_node::framing::{self, FrameError};
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, dummy};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identity, noise, tcp, yamux};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::honest::CORE;

/// How long a connection or stream may take to be set up before it counts as failed.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an attacker holds an established connection.
pub const CONN_HOLD: Duration = Duration::from_secs(2);
/// How long an attacker holds an open stream (idle or after writing to it).
pub const STREAM_HOLD: Duration = Duration::from_secs(2);
/// The node's protocols other than the core one, also flooded with idle streams.
pub const OTHER_PROTOCOLS: [StreamProtocol; 3] = [
    StreamProtocol::new("/flotilla/kad/1.0.0"),
    StreamProtocol::new("/ipfs/ping/1.0.0"),
    StreamProtocol::new("/meshsub/1.1.0"),
];
/// One connection in this many is a stalled handshake.
const STALL_EVERY: usize = 8;
/// How long an attacker waits before dialling again after its connection closed.
const REDIAL_DELAY: Duration = Duration::from_millis(100);
/// Every this many stream attempts, one goes to one of [`OTHER_PROTOCOLS`] (on top of the
/// core-protocol quota).
const OTHER_EVERY: usize = 8;

/// A swarm on TCP, noise and yamux for `key`, which keeps idle connections for a minute.
pub fn build_swarm<B: NetworkBehaviour>(
    key: identity::Keypair,
    behaviour: B,
) -> anyhow::Result<Swarm<B>> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// How the connection attempts ended.
#[derive(Debug, Default)]
pub struct ConnCounts {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Handshakes completed and connections held for [`CONN_HOLD`].
    pub established: AtomicU64,
    /// Handshakes the node refused, or connections it closed within [`CONN_HOLD`].
    pub refused: AtomicU64,
    /// Of `refused`: connections closed by the node after the handshake.
    pub closed_after_handshake: AtomicU64,
    /// Attempts that timed out or failed otherwise.
    pub failed: AtomicU64,
    /// Why the first failed attempt failed.
    pub first_failure: Mutex<Option<String>>,
    /// Extra TCP connections opened without ever starting the handshake (not in `attempts`).
    pub stalled: AtomicU64,
    /// Of `stalled`: those the node closed (or refused) within [`CONN_HOLD`].
    pub stalled_closed: AtomicU64,
}

/// Dials the node from fresh keys, at most `in_flight` at a time, at least `attempts` times
/// and until `until`. Besides, one connection in [`STALL_EVERY`] is a bare TCP connection
/// that never starts its handshake.
pub async fn connection_flood(
    target: Multiaddr,
    attempts: usize,
    in_flight: usize,
    until: Instant,
) -> Arc<ConnCounts> {
    let counts = Arc::new(ConnCounts::default());
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut tasks = JoinSet::new();
    let mut handshakes = 0;
    for n in 0usize.. {
        if handshakes >= attempts && Instant::now() >= until {
            break;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        let (target, counts) = (target.clone(), Arc::clone(&counts));
        if n % STALL_EVERY == STALL_EVERY - 1 {
            tasks.spawn(async move {
                counts.stalled.fetch_add(1, Ordering::Relaxed);
                if stall(&target).await {
                    counts.stalled_closed.fetch_add(1, Ordering::Relaxed);
                }
                drop(permit);
            });
            continue;
        }
        handshakes += 1;
        tasks.spawn(async move {
            counts.attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = tokio::time::timeout(SETUP_TIMEOUT + CONN_HOLD, connect_once(target))
                .await
                .unwrap_or_else(|_| ConnOutcome::Failed("timed out".into()));
            let counter = match outcome {
                ConnOutcome::Held => &counts.established,
                ConnOutcome::Refused => &counts.refused,
                ConnOutcome::Closed => {
                    counts
                        .closed_after_handshake
                        .fetch_add(1, Ordering::Relaxed);
                    &counts.refused
                }
                ConnOutcome::Failed(why) => {
                    if let Ok(mut first) = counts.first_failure.lock() {
                        first.get_or_insert(why);
                    }
                    &counts.failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    counts
}

/// Opens a TCP connection to `target` and sends nothing for [`CONN_HOLD`]; whether the
/// node refused or closed it meanwhile.
async fn stall(target: &Multiaddr) -> bool {
    use libp2p::multiaddr::Protocol;
    let mut parts = target.iter();
    let (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(Ok(mut socket)) =
        tokio::time::timeout(SETUP_TIMEOUT, tokio::net::TcpStream::connect((ip, port))).await
    else {
        return true;
    };
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(CONN_HOLD, async {
        // The node may speak first (multistream-select); read until it closes.
        loop {
            match tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

enum ConnOutcome {
    Held,
    Refused,
    Closed,
    Failed(String),
}

/// Parts of a dial error that show the node ended the connection.
const REFUSAL_SIGNS: [&str; 5] = [
    "ConnectionReset",
    "ConnectionRefused",
    "UnexpectedEof",
    "BrokenPipe",
    "Denied",
];

async fn connect_once(target: Multiaddr) -> ConnOutcome {
    let key = identity::Keypair::generate_ed25519();
    let mut swarm = match build_swarm(key, dummy::Behaviour) {
        Ok(s) => s,
        Err(e) => return ConnOutcome::Failed(e.to_string()),
    };
    if let Err(e) = swarm.dial(target) {
        return ConnOutcome::Failed(e.to_string());
    }
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                // The node ended the connection (refused, reset, EOF) during the handshake.
                let text = format!("{error:?}");
                let refused = REFUSAL_SIGNS.iter().any(|k| text.contains(k));
                return if refused {
                    ConnOutcome::Refused
                } else {
                    ConnOutcome::Failed(text)
                };
            }
            _ => {}
        }
    }
    let hold = tokio::time::sleep(CONN_HOLD);
    tokio::pin!(hold);
    loop {
        tokio::select! {
            () = &mut hold => return ConnOutcome::Held,
            event = swarm.select_next_some() => {
                if let SwarmEvent::ConnectionClosed { .. } = event {
                    return ConnOutcome::Closed;
                }
            }
        }
    }
}

/// How the stream attempts ended.
#[derive(Debug, Default)]
pub struct StreamCounts {
    /// Attempts on the core protocol.
    pub core_attempts: AtomicU64,
    /// Attempts on the other protocols.
    pub other_attempts: AtomicU64,
    /// Streams negotiated.
    pub opened: AtomicU64,
    /// Streams the node refused while they were opened (protocol refused, reset).
    pub refused: AtomicU64,
    /// Opened streams the node refused with a `Message::Refused` notice, then closed.
    pub notices: AtomicU64,
    /// The notices' reasons (up to the first `:`), counted.
    pub notice_reasons: Mutex<BTreeMap<String, u64>>,
    /// Opened streams the node closed or reset without a notice before the attacker let go
    /// (a bad frame, or a stream of another protocol it gave up on).
    pub reset: AtomicU64,
    /// Opened streams still open when the attacker let go.
    pub held: AtomicU64,
    /// Attempts that timed out, or failed because the connection was gone.
    pub failed: AtomicU64,
    /// Times an attacker's connection closed and was dialled again.
    pub reconnects: AtomicU64,
}

/// Peers that each hold a connection to the node, redialled when it closes.
pub struct StreamAttackers {
    node: PeerId,
    peers: Vec<(libp2p_stream::Control, watch::Receiver<bool>)>,
    counts: Arc<StreamCounts>,
    drivers: JoinSet<()>,
}

impl StreamAttackers {
    /// Connects `peers` attackers to `node` at `target` and waits until each one is up.
    pub async fn connect(
        node: PeerId,
        target: Multiaddr,
        peers: usize,
    ) -> anyhow::Result<StreamAttackers> {
        let counts = Arc::new(StreamCounts::default());
        let mut drivers = JoinSet::new();
        let mut out = Vec::new();
        for _ in 0..peers {
            let key = identity::Keypair::generate_ed25519();
            let mut swarm = build_swarm(key, libp2p_stream::Behaviour::new())?;
            let control = swarm.behaviour().new_control();
            swarm.dial(target.clone())?;
            let (up_tx, mut up) = watch::channel(false);
            let (target, c) = (target.clone(), Arc::clone(&counts));
            drivers.spawn(async move {
                loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::ConnectionEstablished { .. } => {
                            let _ = up_tx.send(true);
                        }
                        SwarmEvent::ConnectionClosed {
                            num_established: 0, ..
                        }
                        | SwarmEvent::OutgoingConnectionError { .. } => {
                            let _ = up_tx.send(false);
                            c.reconnects.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(REDIAL_DELAY).await;
                            let _ = swarm.dial(target.clone());
                        }
                        _ => {}
                    }
                }
            });
            let connected = tokio::time::timeout(SETUP_TIMEOUT, up.wait_for(|u| *u))
                .await
                .is_ok_and(|r| r.is_ok());
            anyhow::ensure!(
                connected,
                "stream attacker {} could not connect within {SETUP_TIMEOUT:?}",
                out.len()
            );
            out.push((control, up));
        }
        Ok(StreamAttackers {
            node,
            peers: out,
            counts,
            drivers,
        })
    }

    /// Each attacker opens at least `core_per_peer` core-protocol streams (plus one stream of
    /// another protocol every [`OTHER_EVERY`]), at most `in_flight` at a time, and goes on
    /// until `until`; then all disconnect.
    pub async fn flood(
        mut self,
        core_per_peer: usize,
        in_flight: usize,
        until: Instant,
    ) -> Arc<StreamCounts> {
        let total = core_per_peer + core_per_peer / (OTHER_EVERY - 1);
        let mut workers = JoinSet::new();
        for (control, up) in &self.peers {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..in_flight {
                let (mut control, mut up) = (control.clone(), up.clone());
                let (next, counts, node) = (Arc::clone(&next), Arc::clone(&self.counts), self.node);
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total && Instant::now() >= until {
                            return;
                        }
                        let connected = tokio::time::timeout(SETUP_TIMEOUT, up.wait_for(|u| *u))
                            .await
                            .is_ok_and(|r| r.is_ok());
                        if connected {
                            one_stream(&mut control, node, i, &up, &counts).await;
                        } else {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        }
        while workers.join_next().await.is_some() {}
        self.drivers.shutdown().await;
        self.counts
    }
}

/// Opens stream number `i` and does to it what `i` says.
async fn one_stream(
    control: &mut libp2p_stream::Control,
    node: PeerId,
    i: usize,
    up: &watch::Receiver<bool>,
    counts: &StreamCounts,
) {
    let protocol = if i % OTHER_EVERY == OTHER_EVERY - 1 {
        counts.other_attempts.fetch_add(1, Ordering::Relaxed);
        OTHER_PROTOCOLS[(i / OTHER_EVERY) % OTHER_PROTOCOLS.len()].clone()
    } else {
        counts.core_attempts.fetch_add(1, Ordering::Relaxed);
        CORE
    };
    let opened = tokio::time::timeout(SETUP_TIMEOUT, control.open_stream(node, protocol)).await;
    let stream = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // An error while the connection stays up is the node refusing the stream.
        Ok(Err(libp2p_stream::OpenStreamError::Io(e)))
            if e.kind() != std::io::ErrorKind::TimedOut && *up.borrow() =>
        {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        _ => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    counts.opened.fetch_add(1, Ordering::Relaxed);
    // What to send: nothing, a malformed frame, an oversized length, half a length prefix.
    let payload: &[u8] = match i % 4 {
        0 => &[],
        1 => &[0, 0, 0, 3, 0xff, 0xff, 0xff],
        2 => &u32::MAX.to_be_bytes(),
        _ => &[0, 0],
    };
    let mut stream = stream.compat();
    let wrote = payload.is_empty() || {
        let write = async {
            stream.write_all(payload).await?;
            stream.flush().await
        };
        matches!(tokio::time::timeout(STREAM_HOLD, write).await, Ok(Ok(())))
    };
    if !wrote {
        counts.reset.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // The node sends nothing on a stream it accepted; it may refuse one with a notice.
    match tokio::time::timeout(STREAM_HOLD, framing::read_message(&mut stream)).await {
        Ok(Ok(Message::Refused { reason })) => {
            counts.notices.fetch_add(1, Ordering::Relaxed);
            // The reason up to its details, without peer ids.
            let head = reason.split(':').next().unwrap_or_default();
            let key = head
                .split(' ')
                .map(|w| {
                    if w.starts_with("12D3Koo") {
                        "<peer>"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            if let Ok(mut reasons) = counts.notice_reasons.lock() {
                *reasons.entry(key).or_default() += 1;
            }
        }
        Ok(Err(FrameError::Closed | FrameError::Io(_) | FrameError::Wire(_))) => {
            counts.reset.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ok(_)) | Err(_) => {
            counts.held.fetch_add(1, Ordering::Relaxed);
        }
    }
}
