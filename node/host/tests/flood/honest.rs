//! The honest client: one peer that speaks the core protocol properly. It pings the node on
//! a fixed cadence, whatever happens to earlier pings, and answers the node's own pings, so
//! the node keeps it as a healthy peer. Each ping counts as answered or not by the phase
//! (before, during or after the flood) in which it was sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use flotilla_core::wire::Message;
use flotilla_node::framing;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::attack::build_swarm;

/// The core protocol.
pub const CORE: StreamProtocol = StreamProtocol::new(flotilla_core::wire::PROTOCOL_NAME);
/// Period between two pings of the honest client.
pub const PING_PERIOD: Duration = Duration::from_millis(50);
/// How long a pong may take before its ping counts as failed.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for the node at most.
const SEND_QUEUE_MAX: usize = 256;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// When a ping was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the flood started.
    Before = 0,
    /// While the flood ran.
    During = 1,
    /// After the flood ended.
    After = 2,
}

/// Answered and failed pings per phase, and how often the connection dropped.
#[derive(Debug, Default)]
pub struct PingStats {
    phase: AtomicU8,
    ok: [AtomicU64; 3],
    failed: [AtomicU64; 3],
    /// Connections to the node that closed.
    pub disconnects: AtomicU64,
    /// Pings the node sent to the honest client (answered with pongs).
    pub pings_answered: AtomicU64,
}

impl PingStats {
    /// `(answered, failed)` pings sent in `phase`.
    pub fn counts(&self, phase: Phase) -> (u64, u64) {
        let i = phase as usize;
        (
            self.ok[i].load(Ordering::Relaxed),
            self.failed[i].load(Ordering::Relaxed),
        )
    }
}

/// A connected honest client; its tasks stop when it is dropped.
#[derive(Debug)]
pub struct Honest {
    /// What its pings met.
    pub stats: Arc<PingStats>,
    _tasks: JoinSet<()>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

impl Honest {
    /// Connects to `node` at `addr` and starts pinging.
    pub async fn connect(node: PeerId, addr: Multiaddr) -> anyhow::Result<Honest> {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm = build_swarm(key, libp2p_stream::Behaviour::new())?;
        let mut control = swarm.behaviour().new_control();
        let mut incoming = control.accept(CORE)?;
        swarm.dial(addr)?;
        let stats = Arc::new(PingStats::default());
        let mut tasks = JoinSet::new();

        let (up_tx, mut up) = watch::channel(false);
        let s = Arc::clone(&stats);
        tasks.spawn(async move {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let _ = up_tx.send(true);
                    }
                    SwarmEvent::ConnectionClosed {
                        num_established: 0, ..
                    } => {
                        s.disconnects.fetch_add(1, Ordering::Relaxed);
                        let _ = up_tx.send(false);
                    }
                    _ => {}
                }
            }
        });
        match tokio::time::timeout(CONNECT_TIMEOUT, up.wait_for(|u| *u)).await {
            Ok(Ok(_)) => {}
            _ => bail!("the honest client could not connect within {CONNECT_TIMEOUT:?}"),
        }

        let (out_tx, out_rx) = mpsc::channel::<Message>(SEND_QUEUE_MAX);
        let pending: Pending = Arc::default();
        tasks.spawn(write_loop(control, node, out_rx));
        let (tx, p, s) = (out_tx.clone(), Arc::clone(&pending), Arc::clone(&stats));
        tasks.spawn(async move {
            let mut readers = JoinSet::new();
            while let Some((_, stream)) = incoming.next().await {
                readers.spawn(read_loop(
                    stream,
                    tx.clone(),
                    Arc::clone(&p),
                    Arc::clone(&s),
                ));
                while readers.try_join_next().is_some() {}
            }
        });
        tasks.spawn(ping_loop(out_tx, pending, Arc::clone(&stats)));
        Ok(Honest {
            stats,
            _tasks: tasks,
        })
    }

    /// Marks the pings sent from now on as sent in `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.stats.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Waits until a ping sent in the current phase was answered.
    pub async fn wait_answered(&self, phase: Phase) -> anyhow::Result<()> {
        let wait = async {
            while self.stats.counts(phase).0 == 0 {
                tokio::time::sleep(PING_PERIOD).await;
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, wait)
            .await
            .context("the node never answered the honest client's ping")
    }
}

/// Writes queued messages on one core stream, reopening it when it fails.
async fn write_loop(
    mut control: libp2p_stream::Control,
    node: PeerId,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut stream = None;
    while let Some(message) = queue.recv().await {
        for _attempt in 0..2 {
            let s = match stream.as_mut() {
                Some(s) => s,
                None => match control.open_stream(node, CORE).await {
                    Ok(s) => stream.insert(s.compat()),
                    Err(_) => break,
                },
            };
            if framing::write_message(s, &message).await.is_ok() {
                break;
            }
            stream = None;
        }
    }
}

/// Answers the node's pings and settles the client's own.
async fn read_loop(
    stream: libp2p::Stream,
    out: mpsc::Sender<Message>,
    pending: Pending,
    stats: Arc<PingStats>,
) {
    let mut stream = stream.compat();
    while let Ok(message) = framing::read_message(&mut stream).await {
        match message {
            Message::Ping { nonce } => {
                stats.pings_answered.fetch_add(1, Ordering::Relaxed);
                let _ = out.try_send(Message::Pong { nonce });
            }
            Message::Pong { nonce } => {
                let waiter = pending.lock().ok().and_then(|mut p| p.remove(&nonce));
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
            }
            _ => {}
        }
    }
}

/// Sends a ping every [`PING_PERIOD`] and counts each as answered within
/// [`PONG_TIMEOUT`] or not.
async fn ping_loop(out: mpsc::Sender<Message>, pending: Pending, stats: Arc<PingStats>) {
    let mut tick = tokio::time::interval(PING_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiters = JoinSet::new();
    for nonce in 1u64.. {
        tick.tick().await;
        while waiters.try_join_next().is_some() {}
        let phase = usize::from(stats.phase.load(Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = pending.lock() {
            p.insert(nonce, tx);
        }
        let sent = out.try_send(Message::Ping { nonce }).is_ok();
        let (p, s) = (Arc::clone(&pending), Arc::clone(&stats));
        waiters.spawn(async move {
            let answered =
                sent && matches!(tokio::time::timeout(PONG_TIMEOUT, rx).await, Ok(Ok(())));
            if let Ok(mut p) = p.lock() {
                p.remove(&nonce);
            }
            let counter = if answered {
                &s.ok[phase]
            } else {
                &s.failed[phase]
            };
            counter.fetch_add(1, Ordering::Relaxed);
        });
    }
}
