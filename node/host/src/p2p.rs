//! The production [`Network`]: a rust-libp2p swarm (TCP and QUIC, noise, yamux) with
//! identify, ping, kad, gossipsub, optional mDNS and raw streams for the core protocol.
//!
//! Submodules:
//! - [`addr`]: peer id and multiaddr conversions between the core and libp2p;
//! - [`behaviour`]: the composed libp2p behaviours and their settings;
//! - [`broadcast`]: job broadcasts (bid requests to every provider) on the gossip jobs
//!   topic;
//! - [`discovery`]: pools in the DHT (providing in them, finding their providers) and mDNS;
//! - [`rcmgr`]: the behaviour enforcing the resource manager's connection limits;
//! - [`streams`]: writer and reader tasks moving core frames over libp2p streams, within
//!   the resource manager's stream and memory limits;
//! - [`transfer`]: the file transfer protocol for job artefacts and checkpoints.
//!
//! Start-up order matters: [`P2pNetwork::start`] builds the swarm and listens, then
//! [`P2pNetwork::wait_listening`] collects the real listen addresses (port 0 works, and
//! `0.0.0.0` expands into one address per interface), and only then is the core `Node`
//! created, so that its advert names addresses peers can dial.

pub mod addr;
pub mod behaviour;
pub mod broadcast;
pub mod discovery;
pub mod rcmgr;
pub mod streams;
mod swarm_events;
pub mod transfer;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use flotilla_core::jobs::JobMessage;
use flotilla_core::{DialId, Direction, Keypair, Message, Node, PeerId, Timestamp};
use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::ConnectionId;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::addr::{libp2p_keypair, libp2p_peer, split_p2p, with_p2p};
use self::behaviour::{Behaviour, CORE_PROTOCOL, hello_topic};
use self::discovery::{Discovery, DiscoveryConfig};
use crate::metrics::Metrics;
use crate::network::{BroadcastError, NetEvent, Network};
use crate::rcmgr::{HOUSEKEEPING_INTERVAL, SharedRcmgr};

/// Period between publications of the node's advert on the hello topic.
pub const ADVERT_GOSSIP_INTERVAL: Duration = Duration::from_secs(60);
/// Retry period while the hello topic has no peers yet.
pub const ADVERT_GOSSIP_RETRY: Duration = Duration::from_secs(5);
/// Connections without any stream are closed after this long.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// After every listener reported an address, how long to wait for more interfaces.
pub const LISTEN_SETTLE: Duration = Duration::from_millis(200);
/// Writer tasks (one per peer) at most.
pub const WRITERS_MAX: usize = 512;
/// Characters of a dial error kept in the reason given to the core.
const DIAL_REASON_CHARS_MAX: usize = 300;

/// Why the network could not start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The key could not be turned into a libp2p key.
    #[error("the node key is not a valid ed25519 key; move the key file away to create a new one")]
    Key,
    /// The transport could not be built.
    #[error("cannot set up the libp2p transport: {0}")]
    Transport(String),
    /// A behaviour could not be built.
    #[error("cannot set up the libp2p behaviours: {0}")]
    Behaviour(String),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}; pick another address or port with --listen")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// No listener produced an address in time.
    #[error("no listen address came up within {0:?}; check the --listen addresses")]
    NoListenAddr(Duration),
}

/// The libp2p network of a production node.
pub struct P2pNetwork {
    swarm: Swarm<Behaviour>,
    local: libp2p::PeerId,
    metrics: Metrics,
    rcmgr: SharedRcmgr,
    /// Collects idle scopes and reports pending refusals ([`HOUSEKEEPING_INTERVAL`]).
    housekeeping: tokio::time::Interval,
    /// Events produced synchronously, returned before anything else. Holds a handful at
    /// most: it is filled by one swarm event or one driver step (whose dials the core
    /// bounds) and drained before the swarm is polled again.
    pending: VecDeque<NetEvent>,
    /// Messages decoded by the readers ([`streams::INBOUND_QUEUE_MAX`]).
    inbound: mpsc::Receiver<NetEvent>,
    /// Runs the acceptor; dropping it stops the acceptor and every reader.
    _acceptor: JoinSet<()>,
    /// One send queue per connected peer ([`WRITERS_MAX`], each [`streams::SEND_QUEUE_MAX`]).
    writers: BTreeMap<PeerId, mpsc::Sender<Message>>,
    writer_tasks: JoinSet<()>,
    /// The core's dials in flight, by the connection they will open.
    dials: HashMap<ConnectionId, DialId>,
    listeners: HashSet<ListenerId>,
    listeners_up: HashSet<ListenerId>,
    listen_addrs: Vec<Multiaddr>,
    next_advert: Timestamp,
    /// Pool announcements and lookups.
    discovery: Discovery,
    /// Job broadcasts waiting for a peer on the jobs topic
    /// ([`broadcast::JOB_BROADCASTS_HELD_MAX`]).
    held_jobs: broadcast::HeldJobs,
}

impl std::fmt::Debug for P2pNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pNetwork")
            .field("local", &self.local)
            .field("listen_addrs", &self.listen_addrs)
            .field("connected", &self.swarm.connected_peers().count())
            .field("writers", &self.writers.len())
            .field("dials", &self.dials.len())
            .finish_non_exhaustive()
    }
}

impl P2pNetwork {
    /// Builds the swarm for `keypair`, starts listening on `listen` and registers
    /// `bootstrap` addresses that name a peer with the DHT; connections and core streams
    /// stay within `rcmgr`'s limits, and peers are also found as `discovery` says. Must run
    /// inside a tokio runtime.
    pub fn start(
        keypair: &Keypair,
        listen: &[Multiaddr],
        bootstrap: &[Multiaddr],
        rcmgr: SharedRcmgr,
        metrics: Metrics,
        discovery: &DiscoveryConfig,
    ) -> Result<Self, P2pError> {
        let key = libp2p_keypair(keypair).ok_or(P2pError::Key)?;
        let local = key.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| P2pError::Transport(e.to_string()))?
            .with_quic()
            .with_behaviour(|key| {
                Behaviour::new(key, rcmgr.clone(), discovery.mdns).map_err(Into::into)
            })
            .map_err(|e| P2pError::Behaviour(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
            .build();

        let incoming = swarm
            .behaviour()
            .stream
            .new_control()
            .accept(CORE_PROTOCOL)
            .map_err(|e| P2pError::Behaviour(e.to_string()))?;
        let (tx, inbound) = mpsc::channel(streams::INBOUND_QUEUE_MAX);
        let mut acceptor = JoinSet::new();
        acceptor.spawn(streams::accept_loop(
            incoming,
            tx,
            rcmgr.clone(),
            metrics.clone(),
        ));

        let mut listeners = HashSet::new();
        for addr in listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
            listeners.insert(id);
        }
        let mut with_peer = false;
        for addr in bootstrap {
            if let (bare, Some(peer)) = split_p2p(addr)
                && peer != local
            {
                swarm.behaviour_mut().kad.add_address(&peer, bare);
                with_peer = true;
            }
        }
        if with_peer {
            // Errors only when no peer is known, which was just ruled out.
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }

        let mut housekeeping = tokio::time::interval_at(
            tokio::time::Instant::now() + HOUSEKEEPING_INTERVAL,
            HOUSEKEEPING_INTERVAL,
        );
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(P2pNetwork {
            swarm,
            local,
            metrics,
            rcmgr,
            housekeeping,
            pending: VecDeque::new(),
            inbound,
            _acceptor: acceptor,
            writers: BTreeMap::new(),
            writer_tasks: JoinSet::new(),
            dials: HashMap::new(),
            listeners,
            listeners_up: HashSet::new(),
            listen_addrs: Vec::new(),
            next_advert: Timestamp::ZERO,
            discovery: Discovery::new(discovery),
            held_jobs: broadcast::HeldJobs::new(),
        })
    }

    /// Polls the swarm until every listener reported an address (then [`LISTEN_SETTLE`]
    /// more for further interfaces), or `timeout` passed. Events seen meanwhile are kept.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<(), P2pError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut settle: Option<tokio::time::Instant> = None;
        loop {
            if settle.is_none() && self.listeners.is_subset(&self.listeners_up) {
                settle = Some(tokio::time::Instant::now() + LISTEN_SETTLE);
            }
            let until = settle.map_or(deadline, |s| s.min(deadline));
            match tokio::time::timeout_at(until, self.swarm.select_next_some()).await {
                Ok(event) => self.on_swarm_event(event),
                Err(_) => break,
            }
        }
        if self.listen_addrs.is_empty() {
            return Err(P2pError::NoListenAddr(timeout));
        }
        Ok(())
    }

    /// The addresses the node listens on, without `/p2p/`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// The resource manager the network enforces.
    pub fn rcmgr(&self) -> &SharedRcmgr {
        &self.rcmgr
    }

    /// A handle opening and accepting raw streams on the swarm, e.g. for
    /// [`transfer::fetch`] and [`transfer::serve`]; streams only move while the network is
    /// polled.
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.swarm.behaviour().stream.new_control()
    }

    /// The node's libp2p peer id.
    pub fn local_peer_id(&self) -> libp2p::PeerId {
        self.local
    }

    fn connected(&self, peer: &PeerId) -> Option<libp2p::PeerId> {
        libp2p_peer(peer).filter(|lp| self.swarm.is_connected(lp))
    }

    fn writer(&mut self, peer: PeerId, lp: libp2p::PeerId) -> Option<mpsc::Sender<Message>> {
        if let Some(tx) = self.writers.get(&peer).filter(|tx| !tx.is_closed()) {
            return Some(tx.clone());
        }
        while self.writer_tasks.try_join_next().is_some() {}
        self.writers.retain(|_, tx| !tx.is_closed());
        if self.writers.len() >= WRITERS_MAX {
            return None;
        }
        let (tx, rx) = mpsc::channel(streams::SEND_QUEUE_MAX);
        let control = self.swarm.behaviour().stream.new_control();
        self.writer_tasks.spawn(streams::write_loop(
            control,
            lp,
            peer,
            rx,
            self.rcmgr.clone(),
            self.metrics.clone(),
        ));
        self.writers.insert(peer, tx.clone());
        Some(tx)
    }

    fn publish_advert(&mut self, node: &Node, now: Timestamp) {
        let data = match postcard::to_stdvec(node.advert()) {
            Ok(d) if d.len() <= behaviour::HELLO_BYTES_MAX => d,
            Ok(d) => {
                tracing::warn!(
                    bytes = d.len(),
                    "own advert too large for the hello topic; not published"
                );
                self.next_advert = now + ADVERT_GOSSIP_INTERVAL;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode own advert");
                self.next_advert = now + ADVERT_GOSSIP_INTERVAL;
                return;
            }
        };
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(hello_topic(), data)
        {
            Ok(_) => self.next_advert = now + ADVERT_GOSSIP_INTERVAL,
            Err(libp2p::gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                self.next_advert = now + ADVERT_GOSSIP_RETRY;
            }
            Err(e) => {
                tracing::debug!(error = %e, "advert not published");
                self.next_advert = now + ADVERT_GOSSIP_RETRY;
            }
        }
    }
}

impl Network for P2pNetwork {
    fn system_conns(&self) -> Option<(u64, u64)> {
        Some(self.rcmgr.with(|rm| rm.system_conns()))
    }

    async fn next_event(&mut self) -> Option<NetEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            // Every branch is cancel-safe: an event taken from the swarm is handled
            // synchronously into `pending`, `recv` loses nothing when dropped, and a tick
            // or a discovery deadline is handled at once.
            let discovery_due = self.discovery.deadline();
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(ev) = self.inbound.recv() => return Some(ev),
                _ = self.housekeeping.tick() => self.rcmgr.housekeeping(),
                _ = discovery::sleep_until(discovery_due) => self.on_discovery_timer(),
            }
        }
    }

    fn dial(&mut self, id: DialId, addr: &str, peer: Option<PeerId>) {
        let fail = |reason: String| NetEvent::DialFailed { dial: id, reason };
        let addr = match addr.parse::<Multiaddr>() {
            Ok(a) => a,
            Err(e) => {
                self.pending
                    .push_back(fail(format!("bad address {addr}: {e}")));
                return;
            }
        };
        let target = match peer.map(|p| (p, libp2p_peer(&p))) {
            Some((p, Some(lp))) if self.swarm.is_connected(&lp) => {
                let ev = NetEvent::Connected {
                    peer: p,
                    direction: Direction::Outbound,
                    dial: Some(id),
                };
                self.pending.push_back(ev);
                return;
            }
            Some((_, Some(lp))) => with_p2p(&addr, lp),
            Some((p, None)) => {
                self.pending
                    .push_back(fail(format!("{p} is not a libp2p peer id")));
                return;
            }
            None => addr,
        };
        let opts = DialOpts::unknown_peer_id().address(target).build();
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(connection, id);
            }
            Err(e) => self.pending.push_back(fail(dial_reason(&e.to_string()))),
        }
    }

    fn disconnect(&mut self, peer: PeerId) {
        self.writers.remove(&peer);
        let closing =
            libp2p_peer(&peer).is_some_and(|lp| self.swarm.disconnect_peer_id(lp).is_ok());
        if !closing {
            self.pending.push_back(NetEvent::Disconnected { peer });
        }
    }

    fn send(&mut self, to: PeerId, message: Message) {
        let Some(lp) = self.connected(&to) else {
            tracing::debug!(peer = %to, kind = message.kind(), "peer not connected; message dropped");
            self.metrics.message_dropped("not-connected");
            return;
        };
        let Some(tx) = self.writer(to, lp) else {
            tracing::warn!(peer = %to, "too many writer tasks; message dropped");
            self.metrics.message_dropped("too-many-writers");
            return;
        };
        let kind = message.kind();
        match tx.try_send(message) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(peer = %to, kind, "send queue full; message dropped");
                self.metrics.message_dropped("queue-full");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(peer = %to, kind, "writer stopped; message dropped");
                self.metrics.message_dropped("writer-stopped");
            }
        }
    }

    fn supports_broadcast(&self) -> bool {
        true
    }

    fn broadcast(&mut self, message: JobMessage) -> Result<(), BroadcastError> {
        self.publish_job(&message)
    }

    fn after_step(&mut self, node: &Node, now: Timestamp) {
        if now >= self.next_advert {
            self.publish_advert(node, now);
        }
        self.retry_held_jobs();
    }
}

/// A dial error as a bounded one-line reason.
fn dial_reason(text: &str) -> String {
    let line = text.replace('\n', " ");
    match line.char_indices().nth(DIAL_REASON_CHARS_MAX) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

#[cfg(test)]
mod tests;
