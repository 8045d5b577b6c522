//! The node state machine.
//!
//! A [`Node`] is driven from outside, like `quinn-proto`'s `Connection`:
//!
//! - inputs are `handle_*(now, ..)` calls: connection events, messages, dial failures,
//!   discoveries, and [`Node::handle_timeout`] when [`Node::poll_timeout`] has passed;
//! - operator commands are plain methods ([`Node::ping`]);
//! - outputs are drained after every input, in this order: [`Node::poll_action`] (dials,
//!   disconnects), [`Node::poll_transmit`] (messages), [`Node::poll_event`] (observations),
//!   then [`Node::poll_timeout`] for the next wake-up.
//!
//! The node never reads a clock or the OS random source: time is an argument and
//! randomness comes from the seed given to [`Node::new`].

mod company;
mod config;
mod event;
mod exchange;
mod jobs;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub use config::{BootstrapPeer, Config, ConfigError, Profile};
pub use event::{Action, DialId, Direction, Event, Transmit};

use crate::advert::{Advert, AdvertError, SignedAdvert, VerifiedAdverts};
use crate::capacity::Capacity;
use crate::connmgr::{ConnManager, ConnManagerConfig};
use crate::identity::{Keypair, PeerId};
use crate::jobs::Jobs;
use crate::peer_table::{PeerTable, Source};
use crate::seed::SeedTree;
use crate::time::Timestamp;
use crate::wire::{Message, PROTOCOL_VERSION, RTT_QUERY_MAX, RttSample};

/// Errors of operator commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The peer is not connected.
    #[error("peer {0} is not connected; check `flotilla peers` for connected peers")]
    NotConnected(PeerId),
    /// A latency query names too many peers.
    #[error("{0} peers asked about; at most {RTT_QUERY_MAX} per query")]
    TooMany(usize),
}

/// A ping in flight.
#[derive(Clone, Copy, Debug)]
struct PendingPing {
    nonce: u64,
    sent_at: Timestamp,
}

/// Per-peer connection state.
#[derive(Clone, Debug)]
struct Connection {
    direction: Direction,
    since: Timestamp,
    hello: bool,
    next_ping: Timestamp,
    ping: Option<PendingPing>,
    ping_failures: u32,
    /// Set on a refused inbound connection: it closes at this time and does not count as
    /// a peer. Until then the newcomer may ask for peers, so a full node still helps it on.
    closing_at: Option<Timestamp>,
    /// Opened by an exploration dial: when its first RTT is measured, the node lets its
    /// lowest-scored connection go (which may be this one).
    explored: bool,
    /// It fails the filter but was kept (the node's last connection, or protected); judged
    /// again on every maintenance tick until it passes or goes.
    spared: bool,
}

/// A connected peer, as reported by [`Node::connections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionInfo {
    /// The peer.
    pub peer: PeerId,
    /// Who dialled.
    pub direction: Direction,
    /// When the connection came up.
    pub since: Timestamp,
    /// Whether the peer's hello was received.
    pub hello: bool,
    /// Whether the connection was refused and is about to close.
    pub closing: bool,
}

/// A dial in flight.
#[derive(Clone, Debug)]
struct Dial {
    peer: Option<PeerId>,
    /// An exploration dial: once connected, one other peer is let go.
    explore: bool,
}

/// A summary of the node's state for the API.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// This node.
    pub peer_id: PeerId,
    /// Protocol version spoken.
    pub protocol_version: u16,
    /// When the node started.
    pub started_at: Timestamp,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Connected peers.
    pub connected: usize,
    /// Peers in the table.
    pub known: usize,
    /// Dials in flight.
    pub dialing: usize,
    /// Advertised listen addresses.
    pub listen_addrs: Vec<String>,
}

/// The sans-IO state machine of one Flotilla node.
#[derive(Debug)]
pub struct Node {
    keypair: Keypair,
    config: Config,
    rng: ChaCha8Rng,
    started_at: Timestamp,
    advert: Arc<SignedAdvert>,
    verified: Arc<VerifiedAdverts>,
    table: PeerTable,
    connections: BTreeMap<PeerId, Connection>,
    /// Watermarks, grace, protections and tags of the connected peers (not counting
    /// refused connections about to close).
    connmgr: ConnManager,
    /// The resource manager's system scope: connections held and their limit, as last
    /// reported by the shell.
    system_conns: (u64, u64),
    /// Connections in `connections` that were refused and are about to close.
    refused: usize,
    /// The earliest deadline of any connection (next ping, ping timeout, close of a refused
    /// connection), unless `conn_due_stale`: every change to those deadlines marks it
    /// stale and the end of every input recomputes it, so that [`Node::poll_timeout`],
    /// called after every input, need not walk the connections after most of them.
    conn_due: Timestamp,
    conn_due_stale: bool,
    dials: BTreeMap<DialId, Dial>,
    next_dial_id: u64,
    next_rtt_query: u64,
    next_maintain: Timestamp,
    next_exchange: Timestamp,
    next_explore: Timestamp,
    next_advert_refresh: Timestamp,
    bootstrap_not_before: Timestamp,
    actions: VecDeque<Action>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Allocations (as a provider) and deployments (as a requester).
    jobs: Jobs,
    /// Peers this node protects from trims because a live job involves them.
    job_protected: BTreeSet<PeerId>,
    /// Job messages dropped: their peer stayed unreachable past the outbox's time limit,
    /// or its outbox was full.
    jobs_undeliverable: u64,
    /// Job messages waiting for their peer to connect.
    job_outbox: BTreeMap<PeerId, jobs::Outbox>,
    /// RTT queries asked for the jobs machine: query id to deployment.
    job_rtt_queries: BTreeMap<u64, u64>,
}

impl Node {
    /// A node with identity `keypair`, starting at `now`, drawing its randomness from `seed`.
    pub fn new(
        config: Config,
        keypair: Keypair,
        seed: SeedTree,
        now: Timestamp,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = seed.rng();
        let advert = Arc::new(sign_advert(&keypair, &config, now, now));
        let mut table = PeerTable::new(config.peers_known_max);
        for b in &config.bootstrap {
            if let Some(peer) = b.peer_id.filter(|p| *p != keypair.peer_id())
                && let Some(e) = table.entry(peer, now, Source::Bootstrap, 1, |_| true)
            {
                e.add_addr(b.addr.clone(), usize::MAX);
            }
        }
        let connmgr = ConnManager::new(ConnManagerConfig {
            low_watermark: config.low_watermark,
            high_watermark: config.high_watermark,
            grace: config.conn_grace,
            quiet: config.trim_quiet,
            pressure_per_mille: config.pressure_per_mille,
        });
        let exchange_phase = jitter(&mut rng, config.exchange_interval);
        let explore_phase = jitter(&mut rng, config.explore_interval);
        let registered = Capacity {
            millicores: u64::from(config.resources.cores) * 1000,
            memory_mb: config.resources.memory_mb,
            disk_gb: config.resources.disk_gb,
            gpus: u64::from(config.resources.gpus),
        };
        let jobs = Jobs::new(keypair.clone(), config.jobs.clone(), registered);
        Ok(Node {
            jobs,
            job_protected: BTreeSet::new(),
            jobs_undeliverable: 0,
            job_outbox: BTreeMap::new(),
            job_rtt_queries: BTreeMap::new(),
            next_maintain: now,
            next_exchange: now + exchange_phase,
            next_explore: now + config.explore_interval + explore_phase,
            next_advert_refresh: now + config.advert_refresh,
            bootstrap_not_before: now,
            keypair,
            rng,
            started_at: now,
            advert,
            verified: Arc::new(VerifiedAdverts::new(
                config.peers_known_max.saturating_mul(2),
            )),
            table,
            connections: BTreeMap::new(),
            connmgr,
            system_conns: (0, u64::MAX),
            refused: 0,
            conn_due: Timestamp::MAX,
            conn_due_stale: false,
            dials: BTreeMap::new(),
            next_dial_id: 0,
            next_rtt_query: 0,
            actions: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            config,
        })
    }

    /// Shares a cache of verified adverts with other nodes of the same process (the
    /// simulators do this; outcomes do not change, repeated signature checks are saved).
    pub fn share_verified_adverts(&mut self, cache: Arc<VerifiedAdverts>) {
        self.verified = cache;
    }

    // ----- getters -----

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.peer_id()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peer table.
    pub fn peer_table(&self) -> &PeerTable {
        &self.table
    }

    /// This node's current signed advert (for gossip).
    pub fn advert(&self) -> &SignedAdvert {
        &self.advert
    }

    /// Connected peers in peer-id order.
    pub fn connections(&self) -> impl Iterator<Item = ConnectionInfo> + '_ {
        self.connections.iter().map(|(p, c)| ConnectionInfo {
            peer: *p,
            direction: c.direction,
            since: c.since,
            hello: c.hello,
            closing: c.closing_at.is_some(),
        })
    }

    /// Connected peers, not counting refused connections about to close.
    pub fn peers_count(&self) -> usize {
        self.connections.len() - self.refused
    }

    /// True if `peer` is connected.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connections.contains_key(peer)
    }

    /// A summary for the API.
    pub fn status(&self, now: Timestamp) -> Status {
        Status {
            peer_id: self.peer_id(),
            protocol_version: PROTOCOL_VERSION,
            started_at: self.started_at,
            uptime_s: now.saturating_since(self.started_at).as_secs(),
            connected: self.peers_count(),
            known: self.table.len(),
            dialing: self.dials.len(),
            listen_addrs: self.config.listen_addrs.clone(),
        }
    }

    // ----- outputs -----

    /// The next dial or disconnect for the shell.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next observation.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let conn = if self.conn_due_stale {
            self.connections_due()
        } else {
            debug_assert_eq!(self.conn_due, self.connections_due(), "stale deadline kept");
            self.conn_due
        };
        let t = self
            .next_maintain
            .min(self.next_exchange)
            .min(self.next_explore)
            .min(self.next_advert_refresh)
            .min(conn)
            .min(self.jobs.poll_timeout().unwrap_or(Timestamp::MAX))
            .min(self.outbox_due());
        Some(t)
    }

    /// The earliest deadline of any connection, by walking them all.
    fn connections_due(&self) -> Timestamp {
        let mut t = Timestamp::MAX;
        for c in self.connections.values() {
            t = t.min(c.next_ping);
            if let Some(at) = c.closing_at {
                t = t.min(at);
            }
            if let Some(p) = c.ping {
                t = t.min(p.sent_at + self.config.ping_timeout);
            }
        }
        t
    }

    /// Recomputes the connections' earliest deadline if a change made it stale; called at
    /// the end of every input.
    fn settle(&mut self) {
        if self.conn_due_stale {
            self.conn_due = self.connections_due();
            self.conn_due_stale = false;
        }
    }

    // ----- inputs -----

    /// Timers due at or before `now` fire.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.on_timeout(now);
        self.settle();
    }

    fn on_timeout(&mut self, now: Timestamp) {
        if now >= self.next_advert_refresh {
            self.advert = Arc::new(sign_advert(
                &self.keypair,
                &self.config,
                self.started_at,
                now,
            ));
            self.next_advert_refresh = now + self.config.advert_refresh;
        }
        self.close_refused(now);
        self.check_pings(now);
        if now >= self.next_maintain {
            self.maintain(now);
            let j = jitter(&mut self.rng, self.config.maintain_interval / 5);
            self.next_maintain = now + self.config.maintain_interval + j;
        }
        if now >= self.next_exchange {
            self.start_exchange(now);
            let j = jitter(&mut self.rng, self.config.exchange_interval / 5);
            self.next_exchange = now + self.config.exchange_interval + j;
        }
        if now >= self.next_explore {
            self.explore(now);
            let j = jitter(&mut self.rng, self.config.explore_interval / 5);
            self.next_explore = now + self.config.explore_interval + j;
        }
        self.jobs_timeout(now);
        if self.outbox_due() <= now {
            self.outbox_timeout(now);
        }
    }

    /// A connection to `peer` is up. `dial` is set when it answers one of this node's dials.
    /// A second connection to a connected peer only settles its dial.
    pub fn handle_connected(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        direction: Direction,
        dial: Option<DialId>,
    ) {
        self.on_connected(now, peer, direction, dial);
        self.settle();
    }

    fn on_connected(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        direction: Direction,
        dial: Option<DialId>,
    ) {
        let dialed = dial.and_then(|d| self.dials.remove(&d));
        if self.connections.contains_key(&peer) {
            return;
        }
        if peer == self.peer_id() {
            self.drop_peer(peer, "self");
            return;
        }
        // Before the hello: a peer the filter rejects by its id alone (a deny list), or by
        // an advert or RTT the table already holds, is not kept.
        if self.judge(&peer, now, None).fails() && self.peers_count() > 0 {
            self.drop_peer(peer, "filter");
            return;
        }
        let mut closing_at = None;
        // Never above the high watermark, whoever opened the connection: inbound peers, the
        // shell's own discovery (the DHT dials by itself) and dials that were in flight
        // while the node filled up.
        if self.peers_count() >= self.config.high_watermark {
            if self.refused >= self.config.peers_refused_max {
                self.drop_peer(peer, "full");
                return;
            }
            closing_at = Some(now + self.config.refuse_grace);
        }
        let explored = dialed.as_ref().is_some_and(|d| d.explore);
        let source = match (direction, dialed) {
            (Direction::Inbound, _) => Source::Inbound,
            // Dialled by address alone: one of the configured bootstrap addresses.
            (Direction::Outbound, Some(_)) => Source::Bootstrap,
            // Opened by the shell's own discovery (the DHT), not by a dial of the core.
            (Direction::Outbound, None) => Source::Dht,
        };
        let connected = &self.connections;
        if let Some(e) = self
            .table
            .entry(peer, now, source, 1, |p| !connected.contains_key(p))
        {
            e.last_seen = e.last_seen.max(now);
            e.dial_failures = 0;
            e.dial_not_before = Timestamp::ZERO;
        }
        let first_ping = jitter(&mut self.rng, Duration::from_secs(2));
        let next_ping = if closing_at.is_some() {
            Timestamp::MAX
        } else {
            now + first_ping
        };
        self.refused += usize::from(closing_at.is_some());
        if closing_at.is_none() {
            self.connmgr.connected(peer, now);
        }
        self.conn_due_stale = true;
        self.connections.insert(
            peer,
            Connection {
                direction,
                since: now,
                hello: false,
                next_ping,
                ping: None,
                ping_failures: 0,
                closing_at,
                explored,
                spared: false,
            },
        );
        self.events.push_back(Event::Connected { peer, direction });
        self.send(peer, Message::Hello(Arc::clone(&self.advert)));
        if direction == Direction::Outbound {
            self.send(peer, self.peers_request());
        }
        self.trim_if_due(now);
    }

    /// The last connection to `peer` is down.
    pub fn handle_disconnected(&mut self, now: Timestamp, peer: PeerId) {
        if self.remove_connection(&peer).is_some() {
            self.table.touch(&peer, now);
            self.events.push_back(Event::Disconnected { peer });
        }
        self.settle();
    }

    /// Dial `dial` failed.
    pub fn handle_dial_failed(&mut self, now: Timestamp, dial: DialId, reason: &str) {
        let Some(d) = self.dials.remove(&dial) else {
            return;
        };
        self.events.push_back(Event::DialFailed {
            peer: d.peer,
            reason: reason.to_string(),
        });
        let Some(peer) = d.peer else { return };
        let Some(e) = self.table.get_mut(&peer) else {
            return;
        };
        e.dial_failures = e.dial_failures.saturating_add(1);
        let backoff = self
            .config
            .dial_backoff_base
            .saturating_mul(1 << e.dial_failures.min(16))
            .min(self.config.dial_backoff_max);
        e.dial_not_before = now + backoff;
        if e.dial_failures >= self.config.dial_failures_max && e.source != Source::Bootstrap {
            self.table.remove(&peer);
        }
    }

    /// A message from connected peer `from`.
    pub fn handle_message(&mut self, now: Timestamp, from: PeerId, message: Message) {
        if !self.connections.contains_key(&from) {
            return;
        }
        self.on_message(now, from, message);
        self.settle();
    }

    fn on_message(&mut self, now: Timestamp, from: PeerId, message: Message) {
        match message {
            Message::Hello(signed) => self.on_hello(now, from, signed),
            Message::Ping { nonce } => self.send(from, Message::Pong { nonce }),
            Message::Pong { nonce } => self.on_pong(now, from, nonce),
            Message::PeersRequest { max, hops_max } => {
                self.on_peers_request(now, from, max, hops_max)
            }
            Message::PeersResponse { records } => self.on_peers_response(now, from, records),
            // The shell logs why a stream was refused; nothing changes for the protocol.
            Message::Refused { .. } => {}
            Message::RttQuery { id, peers } => self.on_rtt_query(now, from, id, peers),
            Message::RttReport { id, rtts } => {
                if let Some(deployment) = self.job_rtt_queries.remove(&id) {
                    self.on_job_rtt_report(now, from, deployment, rtts);
                } else if rtts.len() <= RTT_QUERY_MAX {
                    self.events.push_back(Event::RttReport { from, id, rtts });
                }
            }
            Message::Job(msg) => self.on_job_message(now, from, msg),
        }
    }

    /// A peer found by other means (DHT, mDNS, the operator), with addresses to dial it on.
    pub fn handle_discovered(
        &mut self,
        now: Timestamp,
        peer: PeerId,
        addrs: Vec<String>,
        source: Source,
    ) {
        if peer == self.peer_id() {
            return;
        }
        let connected = &self.connections;
        if let Some(e) = self
            .table
            .entry(peer, now, source, 1, |p| !connected.contains_key(p))
        {
            e.last_seen = e.last_seen.max(now);
            for a in addrs {
                e.add_addr(a, crate::advert::ADVERT_ADDRS_MAX);
            }
        }
    }

    /// A signed advert that arrived outside a connection (the gossip hello topic).
    pub fn handle_advert(&mut self, now: Timestamp, from: PeerId, signed: SignedAdvert) {
        let _ = self.learn_advert(now, from, &Arc::new(signed), 1, Source::Gossip);
    }

    // ----- operator commands -----

    /// Pings `peer` now; the answer arrives as an [`Event::Rtt`] with the returned nonce.
    pub fn ping(&mut self, now: Timestamp, peer: PeerId) -> Result<u64, NodeError> {
        if !self.connections.contains_key(&peer) {
            return Err(NodeError::NotConnected(peer));
        }
        let nonce = self.send_ping(now, peer);
        self.settle();
        Ok(nonce)
    }

    /// Asks connected `to` for its RTTs to `peers` (at most [`RTT_QUERY_MAX`]); the answer
    /// arrives as an [`Event::RttReport`] with the returned id. A service provider asks
    /// each provider of a job for the latency table between them.
    pub fn query_rtts(&mut self, to: PeerId, peers: Vec<PeerId>) -> Result<u64, NodeError> {
        if !self.connections.contains_key(&to) {
            return Err(NodeError::NotConnected(to));
        }
        if peers.len() > RTT_QUERY_MAX {
            return Err(NodeError::TooMany(peers.len()));
        }
        let id = self.next_rtt_query;
        self.next_rtt_query += 1;
        self.send(to, Message::RttQuery { id, peers });
        Ok(id)
    }

    /// The RTTs this node measured to `peers`, in the order given (unmeasured peers left
    /// out): its part of a job's latency table.
    pub fn rtt_table(&self, peers: &[PeerId]) -> Vec<RttSample> {
        peers
            .iter()
            .filter_map(|p| {
                let r = self.table.get(p)?.rtt.as_deref()?;
                Some(RttSample {
                    peer: *p,
                    ewma_us: r.ewma_us,
                    jitter_us: r.jitter_us,
                    samples: r.samples,
                })
            })
            .collect()
    }

    fn on_rtt_query(&mut self, now: Timestamp, from: PeerId, id: u64, peers: Vec<PeerId>) {
        if peers.len() > RTT_QUERY_MAX {
            return;
        }
        let rtts = self.rtt_table(&peers);
        self.send(from, Message::RttReport { id, rtts });
        // Peers asked about but not connected (a job's workers need not be connected to
        // each other): dial those whose address is known and that are not backing off, so
        // that a later query finds them measured.
        let me = self.peer_id();
        for p in peers {
            if p == me
                || self.connections.contains_key(&p)
                || self.dials.values().any(|d| d.peer == Some(p))
            {
                continue;
            }
            let addr = self
                .table
                .get(&p)
                .filter(|e| e.dial_not_before <= now)
                .and_then(|e| e.addr_first())
                .cloned();
            if let Some(addr) = addr {
                self.dial(addr, Some(p), false);
            }
        }
    }

    // ----- internals -----

    fn send(&mut self, to: PeerId, message: Message) {
        self.transmits.push_back(Transmit { to, message });
    }

    fn drop_peer(&mut self, peer: PeerId, reason: &'static str) {
        self.events.push_back(Event::Dropping { peer, reason });
        self.actions.push_back(Action::Disconnect { peer });
    }

    fn send_ping(&mut self, now: Timestamp, peer: PeerId) -> u64 {
        let nonce = self.rng.random::<u64>();
        if let Some(c) = self.connections.get_mut(&peer) {
            self.conn_due_stale = true;
            c.ping = Some(PendingPing {
                nonce,
                sent_at: now,
            });
            c.next_ping = now + self.config.ping_interval;
        }
        self.send(peer, Message::Ping { nonce });
        nonce
    }

    /// Removes the connection to `peer`, keeping the count of refused ones.
    fn remove_connection(&mut self, peer: &PeerId) -> Option<Connection> {
        let c = self.connections.remove(peer)?;
        self.connmgr.disconnected(peer);
        self.conn_due_stale = true;
        self.refused -= usize::from(c.closing_at.is_some());
        Some(c)
    }

    fn close_refused(&mut self, now: Timestamp) {
        if self.refused == 0 {
            return;
        }
        let due: Vec<PeerId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.closing_at.is_some_and(|at| at <= now))
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.remove_connection(&peer);
            self.drop_peer(peer, "refused");
        }
    }

    fn check_pings(&mut self, now: Timestamp) {
        let mut due = Vec::new();
        let mut dead = Vec::new();
        self.conn_due_stale = true;
        for (peer, c) in self.connections.iter_mut() {
            if let Some(p) = c.ping
                && now >= p.sent_at + self.config.ping_timeout
            {
                c.ping = None;
                c.ping_failures += 1;
                self.events.push_back(Event::PingTimeout {
                    peer: *peer,
                    nonce: p.nonce,
                    failures: c.ping_failures,
                });
                if c.ping_failures >= self.config.ping_failures_max {
                    dead.push(*peer);
                }
            }
            if now >= c.next_ping {
                match c.ping {
                    None => due.push(*peer),
                    // A ping is still out (timeout longer than the interval): the next
                    // one waits until that ping is answered or times out.
                    Some(p) => c.next_ping = p.sent_at + self.config.ping_timeout,
                }
            }
        }
        for peer in dead {
            self.remove_connection(&peer);
            self.drop_peer(peer, "ping-failures");
        }
        for peer in due {
            if self.connections.contains_key(&peer) {
                self.send_ping(now, peer);
            }
        }
    }

    fn on_hello(&mut self, now: Timestamp, from: PeerId, signed: Arc<SignedAdvert>) {
        let result = if signed.advert.peer_id != from {
            Err(AdvertError::Forged)
        } else {
            self.learn_advert(now, from, &signed, 0, Source::Inbound)
        };
        match result {
            Ok(_) => {
                if let Some(c) = self.connections.get_mut(&from) {
                    c.hello = true;
                }
                self.events.push_back(Event::Hello { peer: from });
                self.flush_outbox(now, from);
                self.enforce_filter(now, from);
            }
            Err(_) => self.drop_peer(from, "bad-hello"),
        }
    }

    fn on_pong(&mut self, now: Timestamp, from: PeerId, nonce: u64) {
        let Some(c) = self.connections.get_mut(&from) else {
            return;
        };
        let Some(p) = c.ping.filter(|p| p.nonce == nonce) else {
            return;
        };
        self.conn_due_stale = true;
        c.ping = None;
        c.ping_failures = 0;
        let explored = std::mem::take(&mut c.explored);
        let rtt = now.saturating_since(p.sent_at);
        self.table.record_rtt(&from, rtt, now);
        self.events.push_back(Event::Rtt {
            peer: from,
            nonce,
            rtt,
        });
        // Only an RTT filter can change its mind on an RTT sample; adverts are judged as
        // they arrive, time-dependent filters on the maintenance tick.
        let rejected = self.config.filter.uses_rtt() && self.enforce_filter(now, from);
        if !rejected && explored {
            self.rotate(now, from);
        }
    }

    /// Verifies and stores an advert heard from `from`, `hops` away. Rejections are
    /// reported as events.
    fn learn_advert(
        &mut self,
        now: Timestamp,
        from: PeerId,
        signed: &Arc<SignedAdvert>,
        hops: u8,
        source: Source,
    ) -> Result<Learned, AdvertError> {
        let peer = signed.advert.peer_id;
        if peer == self.peer_id() {
            return Ok(Learned::Known);
        }
        let spot = self.table.spot(&peer);
        let held = self.table.held(spot);
        let is_new = held.is_none();
        // The very advert the table holds passed every check when it was stored; only its
        // freshness can have changed since.
        let check = if held.is_some_and(|e| e.holds(signed)) {
            signed.check_fresh(now, self.config.advert_ttl)
        } else {
            self.verified.verify(signed, now, self.config.advert_ttl)
        };
        if let Err(reason) = check {
            self.events.push_back(Event::AdvertRejected {
                from,
                reason: reason.clone(),
            });
            return Err(reason);
        }
        // A new peer heard of from others that the filter rejects by its advert is not
        // stored (a connected peer's own hello is: its connection is judged separately).
        if is_new && hops > 0 && self.judge_advert(signed, now).fails() {
            return Ok(Learned::Filtered);
        }
        let connected = &self.connections;
        // The table has not changed since `spot` was found.
        match self.table.entry_at(spot, peer, now, source, hops, |p| {
            !connected.contains_key(p)
        }) {
            Some(e) => {
                let replaced = e.apply_advert(signed, hops, now);
                // A connected peer's newer advert, heard from others, is judged again (its
                // own hello is judged by `on_hello`).
                if replaced && hops > 0 && self.connections.contains_key(&peer) {
                    self.enforce_filter(now, peer);
                }
                Ok(if is_new { Learned::New } else { Learned::Known })
            }
            None => Ok(Learned::Known),
        }
    }
}

/// What became of a verified advert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Learned {
    /// Its peer is new to the table.
    New,
    /// Its peer was known (or the table had no room).
    Known,
    /// Its peer is new and the filter rejects it: not stored.
    Filtered,
}

/// A uniformly drawn duration in `[0, max)`.
fn jitter(rng: &mut ChaCha8Rng, max: Duration) -> Duration {
    let us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    if us == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(0..us))
}

fn sign_advert(
    keypair: &Keypair,
    config: &Config,
    started_at: Timestamp,
    now: Timestamp,
) -> SignedAdvert {
    SignedAdvert::sign(
        keypair,
        Advert {
            protocol_version: PROTOCOL_VERSION,
            peer_id: keypair.peer_id(),
            listen_addrs: config.listen_addrs.clone(),
            resources: config.resources,
            region: config.region.clone(),
            started_at,
            timestamp: now,
            executors: config.executors.clone(),
        },
    )
}

#[cfg(test)]
mod tests;
