//! The async driver: pumps a [`Node`] between a [`Network`], a [`Clock`] and the API.
//!
//! The same code runs the production node and every host of the turmoil simulator. It only
//! loops: feed one input (a command, a network event or a timer), drain the node's `poll_*`
//! outputs into the network and the [`Observer`], re-arm the timer from `poll_timeout`.
//! `select!` is `biased` so that a simulated run is deterministic.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use flotilla_core::job::JobSpec;
use flotilla_core::jobs::{DeploymentView, LogLine};
use flotilla_core::simexec::ExecEvent;
use flotilla_core::wire::RTT_QUERY_MAX;
use flotilla_core::{
    Action, Event, Message, Node, NodeError, PeerId, RttSample, Timestamp, Transmit,
};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::network::{NetEvent, Network};
use crate::views::resources::{OnboardChange, ResourcesView};
use crate::views::{PeerView, StatusView};

/// Commands queued to the driver at most.
pub const COMMAND_QUEUE_MAX: usize = 64;
/// Operator pings awaiting an answer at most.
pub const PINGS_PENDING_MAX: usize = 64;
/// How long an operator ping waits for its pong, and a latency query for its report.
pub const PING_WAIT: Duration = Duration::from_secs(15);
/// Latency queries to other nodes awaiting their report at most.
pub const RTT_QUERIES_PENDING_MAX: usize = 64;

/// Takes the node's executor commands (the production node runs containers; see
/// `executor::runner`).
pub trait JobRunner: Send + std::fmt::Debug {
    /// Carries out `cmd`; what happens is reported later as [`ExecEvent`]s.
    fn command(&mut self, cmd: flotilla_core::jobs::ExecCommand);
}

/// Records job events durably (the production node's local store; see `journal`).
pub trait JobRecorder: Send + std::fmt::Debug {
    /// Records `event` of `node` at `now`.
    fn record(&mut self, node: &Node, now: Timestamp, event: &flotilla_core::jobs::JobEvent);
}

/// Receives what the node does, for traces, logs and metrics.
pub trait Observer {
    /// The node reported `event`.
    fn event(&mut self, now: Timestamp, node: &Node, event: &Event);
    /// The node sent `transmit`.
    fn transmit(&mut self, now: Timestamp, node: &Node, transmit: &Transmit) {
        let _ = (now, node, transmit);
    }
    /// `message` arrived from `from` and is about to be handed to the node.
    fn received(&mut self, now: Timestamp, node: &Node, from: &PeerId, message: &Message) {
        let _ = (now, node, from, message);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&mut self, _: Timestamp, _: &Node, _: &Event) {}
}

/// Why an operator ping failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum PingError {
    /// The peer is not connected.
    #[error("peer {0} is not connected; `flotilla peers` lists connected peers")]
    NotConnected(String),
    /// No pong in time.
    #[error("no answer from {0} within {1} s")]
    Timeout(String, u64),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Stopped,
}

/// Why a latency-table request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RttError {
    /// The node asked is not connected.
    #[error("peer {0} is not connected; `flotilla peers` lists connected peers")]
    NotConnected(String),
    /// More peers asked about than one query carries.
    #[error("{0} peers asked about; ask about at most {RTT_QUERY_MAX} at once")]
    TooMany(usize),
    /// Too many queries already wait for their report.
    #[error("{0} latency queries already wait for an answer; retry in a few seconds")]
    Busy(usize),
    /// No report in time.
    #[error("no latency report from {0} within {1} s")]
    Timeout(String, u64),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    Stopped,
}

/// A latency query sent to another node, waiting for its report.
#[derive(Debug)]
struct PendingRtts {
    to: PeerId,
    id: u64,
    reply: oneshot::Sender<Result<Vec<RttSample>, RttError>>,
}

/// A request from the API to the driver.
#[derive(Debug)]
pub enum Command {
    /// The node's status.
    Status(oneshot::Sender<StatusView>),
    /// The peer table.
    Peers(oneshot::Sender<Vec<PeerView>>),
    /// Ping a connected peer and report the round trip.
    Ping(PeerId, oneshot::Sender<Result<Duration, PingError>>),
    /// The RTTs measured by `from` (this node if `None`) to `peers`; unmeasured peers are
    /// left out.
    Rtts {
        /// The node whose measurements are wanted: this one, or a connected peer.
        from: Option<PeerId>,
        /// The peers asked about, at most [`RTT_QUERY_MAX`].
        peers: Vec<PeerId>,
        /// Where the table goes.
        reply: oneshot::Sender<Result<Vec<RttSample>, RttError>>,
    },
    /// Deploy a job, asking `pinned` providers. Without pins the bid request goes to every
    /// provider: broadcast if the network supports it (and the node has a peer to start
    /// from), else to every connected peer.
    Deploy {
        /// The job.
        spec: Box<JobSpec>,
        /// Providers to ask.
        pinned: Vec<PeerId>,
        /// The deployment's number, or why not.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// This node's deployments.
    Deployments(oneshot::Sender<Vec<DeploymentView>>),
    /// Log lines of a deployment from the `from`-th on (`None`: no such deployment).
    Logs {
        /// The deployment.
        id: u64,
        /// The first line wanted.
        from: usize,
        /// The lines.
        reply: oneshot::Sender<Option<Vec<LogLine>>>,
    },
    /// Shut a deployment down.
    Shutdown {
        /// The deployment.
        id: u64,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// The provider's capacity and allocations.
    Resources(oneshot::Sender<ResourcesView>),
    /// Change the capacity the provider offers; answers the ledger after it, or why
    /// nothing changed.
    Onboard {
        /// The change.
        change: OnboardChange,
        /// The resources after the change, or why not.
        reply: oneshot::Sender<Result<ResourcesView, String>>,
    },
}

/// A cloneable handle to send [`Command`]s to a running driver.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
}

impl DriverHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The node's status, or `None` if the driver stopped.
    pub async fn status(&self) -> Option<StatusView> {
        self.ask(Command::Status).await
    }

    /// The peer table, or `None` if the driver stopped.
    pub async fn peers(&self) -> Option<Vec<PeerView>> {
        self.ask(Command::Peers).await
    }

    /// Deploys `spec` (see [`Command::Deploy`]).
    pub async fn deploy(&self, spec: JobSpec, pinned: Vec<PeerId>) -> Result<u64, String> {
        let spec = Box::new(spec);
        self.ask(|reply| Command::Deploy {
            spec,
            pinned,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("the node is shutting down".into()))
    }

    /// This node's deployments, or `None` if the driver stopped.
    pub async fn deployments(&self) -> Option<Vec<DeploymentView>> {
        self.ask(Command::Deployments).await
    }

    /// Log lines of deployment `id` from the `from`-th on; `None` if there is no such
    /// deployment (or the driver stopped).
    pub async fn logs(&self, id: u64, from: usize) -> Option<Vec<LogLine>> {
        self.ask(|reply| Command::Logs { id, from, reply })
            .await
            .flatten()
    }

    /// Shuts deployment `id` down.
    pub async fn shutdown(&self, id: u64) -> Result<(), String> {
        self.ask(|reply| Command::Shutdown { id, reply })
            .await
            .unwrap_or_else(|| Err("the node is shutting down".into()))
    }

    /// The provider's capacity and allocations, or `None` if the driver stopped.
    pub async fn resources(&self) -> Option<ResourcesView> {
        self.ask(Command::Resources).await
    }

    /// Changes the capacity the provider offers (see [`OnboardChange`]); `None` if the
    /// driver stopped.
    pub async fn onboard(&self, change: OnboardChange) -> Option<Result<ResourcesView, String>> {
        self.ask(|reply| Command::Onboard { change, reply }).await
    }

    /// Pings `peer` and waits for the round trip.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, PingError> {
        let wait = tokio::time::timeout(PING_WAIT, self.ask(|tx| Command::Ping(peer, tx)));
        match wait.await {
            Ok(Some(result)) => result,
            Ok(None) => Err(PingError::Stopped),
            Err(_) => Err(PingError::Timeout(peer.to_string(), PING_WAIT.as_secs())),
        }
    }

    /// The RTTs measured by `from` (this node if `None`) to `peers`, waiting for the report
    /// of a remote node at most [`PING_WAIT`].
    pub async fn rtts(
        &self,
        from: Option<PeerId>,
        peers: Vec<PeerId>,
    ) -> Result<Vec<RttSample>, RttError> {
        let ask = self.ask(|reply| Command::Rtts { from, peers, reply });
        match tokio::time::timeout(PING_WAIT, ask).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(RttError::Stopped),
            Err(_) => Err(RttError::Timeout(
                from.map_or_else(|| "this node".to_string(), |p| p.to_string()),
                PING_WAIT.as_secs(),
            )),
        }
    }
}

/// Runs one node.
#[derive(Debug)]
pub struct Driver<N, C, O> {
    node: Node,
    net: N,
    clock: C,
    observer: O,
    commands: mpsc::Receiver<Command>,
    pings: BTreeMap<u64, oneshot::Sender<Result<Duration, PingError>>>,
    rtt_queries: VecDeque<PendingRtts>,
    /// Runs the node's jobs; without one, every job fails at once with the reason.
    runner: Result<Box<dyn JobRunner>, String>,
    exec_events: Option<mpsc::Receiver<ExecEvent>>,
    journal: Option<Box<dyn JobRecorder>>,
}

impl<N: Network, C: Clock, O: Observer> Driver<N, C, O> {
    /// A driver for `node` and a handle to command it.
    pub fn new(node: Node, net: N, clock: C, observer: O) -> (Self, DriverHandle) {
        let (tx, commands) = mpsc::channel(COMMAND_QUEUE_MAX);
        let driver = Driver {
            node,
            net,
            clock,
            observer,
            commands,
            pings: BTreeMap::new(),
            rtt_queries: VecDeque::new(),
            runner: Err("this node has no executor".into()),
            exec_events: None,
            journal: None,
        };
        (driver, DriverHandle { tx })
    }

    /// Runs the node's jobs with `runner`, whose events arrive on `events`. Without a
    /// runner, every job the node starts fails at once ("no executor").
    pub fn with_runner(
        mut self,
        runner: Box<dyn JobRunner>,
        events: mpsc::Receiver<ExecEvent>,
    ) -> Self {
        self.runner = Ok(runner);
        self.exec_events = Some(events);
        self
    }

    /// Runs no jobs: every job the node starts fails at once with `why`.
    pub fn without_runner(mut self, why: String) -> Self {
        self.runner = Err(why);
        self.exec_events = None;
        self
    }

    /// Records every allocation and deployment, and their transitions, in `journal`.
    pub fn with_journal(mut self, journal: Box<dyn JobRecorder>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The node being driven, to restore state before it runs.
    pub fn node_mut(&mut self) -> &mut Node {
        &mut self.node
    }

    /// The node being driven.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Runs until the network shuts down; returns the node for inspection.
    pub async fn run(mut self) -> Node {
        loop {
            self.flush();
            let deadline = self.node.poll_timeout();
            tokio::select! {
                biased;
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                Some(ev) = recv_some(&mut self.exec_events) => {
                    let now = self.clock.now();
                    self.node.handle_exec(now, ev);
                }
                ev = self.net.next_event() => match ev {
                    Some(ev) => self.on_net(ev),
                    None => break,
                },
                _ = sleep_until(&self.clock, deadline) => {
                    // Never fire before the deadline, so a virtual clock cannot spin.
                    let now = self.clock.now().max(deadline.unwrap_or(Timestamp::ZERO));
                    self.node.handle_timeout(now);
                }
            }
        }
        for (_, reply) in std::mem::take(&mut self.pings) {
            let _ = reply.send(Err(PingError::Stopped));
        }
        for q in std::mem::take(&mut self.rtt_queries) {
            let _ = q.reply.send(Err(RttError::Stopped));
        }
        self.node
    }

    fn on_net(&mut self, ev: NetEvent) {
        let now = self.clock.now();
        match ev {
            NetEvent::Connected {
                peer,
                direction,
                dial,
            } => {
                self.node.handle_connected(now, peer, direction, dial);
                self.report_system_conns(now);
            }
            NetEvent::Disconnected { peer } => {
                self.node.handle_disconnected(now, peer);
                self.report_system_conns(now);
                if !self.node.is_connected(&peer) {
                    // Queries to a peer that went away are answered now, not at the timeout.
                    let (gone, kept) = std::mem::take(&mut self.rtt_queries)
                        .into_iter()
                        .partition(|q| q.to == peer);
                    self.rtt_queries = kept;
                    for q in gone {
                        let _ = q.reply.send(Err(RttError::NotConnected(peer.to_string())));
                    }
                }
            }
            NetEvent::DialFailed { dial, reason } => {
                self.node.handle_dial_failed(now, dial, &reason)
            }
            NetEvent::Message { from, message } => {
                self.observer.received(now, &self.node, &from, &message);
                self.node.handle_message(now, from, message)
            }
            NetEvent::Discovered {
                peer,
                addrs,
                source,
            } => self.node.handle_discovered(now, peer, addrs, source),
            NetEvent::Advert { from, advert } => self.node.handle_advert(now, from, advert),
            NetEvent::Broadcast { from, message } => {
                let kind = message.kind();
                if !self.node.handle_broadcast(now, from, message) {
                    tracing::debug!(%from, kind, "job broadcast not taken");
                }
            }
        }
    }

    /// Tells the node how close the resource manager is to its connection limit, so the
    /// connection manager trims before refusals start.
    fn report_system_conns(&mut self, now: Timestamp) {
        if let Some((held, limit)) = self.net.system_conns() {
            self.node.report_system_conns(now, held, limit);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let now = self.clock.now();
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(StatusView::of(&self.node, now));
            }
            Command::Peers(reply) => {
                let _ = reply.send(PeerView::all(&self.node, now));
            }
            Command::Ping(peer, reply) => match self.node.ping(now, peer) {
                Ok(nonce) => {
                    self.pings.retain(|_, r| !r.is_closed());
                    if self.pings.len() < PINGS_PENDING_MAX {
                        self.pings.insert(nonce, reply);
                    }
                }
                Err(_) => {
                    let _ = reply.send(Err(PingError::NotConnected(peer.to_string())));
                }
            },
            Command::Rtts { from, peers, reply } => self.on_rtts(from, peers, reply),
            Command::Deploy {
                spec,
                pinned,
                reply,
            } => {
                let broadcast = pinned.is_empty()
                    && self.net.supports_broadcast()
                    && self.node.connections().next().is_some();
                let result = if broadcast {
                    Ok(self.node.deploy_broadcast(now, *spec))
                } else {
                    self.node
                        .deploy(now, *spec, &pinned)
                        .map_err(|e| e.to_string())
                };
                let _ = reply.send(result);
            }
            Command::Deployments(reply) => {
                let _ = reply.send(self.node.deployments());
            }
            Command::Logs { id, from, reply } => {
                let _ = reply.send(self.node.deployment_logs(id, from));
            }
            Command::Shutdown { id, reply } => {
                let result = self.node.shutdown_deployment(now, id);
                let _ = reply.send(result.map_err(|e| e.to_string()));
            }
            Command::Resources(reply) => {
                let _ = reply.send(ResourcesView::of(&self.node));
            }
            Command::Onboard { change, reply } => {
                let result = change.apply(&mut self.node);
                let _ = reply.send(result.map(|()| ResourcesView::of(&self.node)));
            }
        }
    }

    /// Answers a latency-table request from this node's table, or forwards it to `from`
    /// and keeps the reply until its report arrives.
    fn on_rtts(
        &mut self,
        from: Option<PeerId>,
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Result<Vec<RttSample>, RttError>>,
    ) {
        let to = match from {
            Some(p) if p != self.node.peer_id() => p,
            _ => {
                let answer = if peers.len() > RTT_QUERY_MAX {
                    Err(RttError::TooMany(peers.len()))
                } else {
                    Ok(self.node.rtt_table(&peers))
                };
                let _ = reply.send(answer);
                return;
            }
        };
        self.rtt_queries.retain(|q| !q.reply.is_closed());
        if self.rtt_queries.len() >= RTT_QUERIES_PENDING_MAX {
            let _ = reply.send(Err(RttError::Busy(self.rtt_queries.len())));
            return;
        }
        match self.node.query_rtts(to, peers) {
            Ok(id) => self.rtt_queries.push_back(PendingRtts { to, id, reply }),
            Err(NodeError::NotConnected(p)) => {
                let _ = reply.send(Err(RttError::NotConnected(p.to_string())));
            }
            Err(NodeError::TooMany(n)) => {
                let _ = reply.send(Err(RttError::TooMany(n)));
            }
        }
    }

    /// Hands a report from `from` to the query it answers (by the id the report echoes).
    fn on_rtt_report(&mut self, from: PeerId, id: u64, rtts: &[RttSample]) {
        if let Some(i) = self
            .rtt_queries
            .iter()
            .position(|q| q.to == from && q.id == id)
            && let Some(q) = self.rtt_queries.remove(i)
        {
            let _ = q.reply.send(Ok(rtts.to_vec()));
        }
    }

    /// Drains the node's outputs in the documented order: actions, transmits, broadcasts,
    /// events.
    fn flush(&mut self) {
        let now = self.clock.now();
        while let Some(cmd) = self.node.poll_exec() {
            match &mut self.runner {
                Ok(r) => r.command(cmd),
                Err(why) => {
                    if let flotilla_core::jobs::ExecCommand::Start { id, .. } = cmd {
                        let reason = why.clone();
                        self.node.handle_exec(now, ExecEvent::Failed { id, reason });
                    }
                }
            }
        }
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Dial { id, addr, peer } => self.net.dial(id, &addr, peer),
                Action::Disconnect { peer } => self.net.disconnect(peer),
            }
        }
        while let Some(t) = self.node.poll_transmit() {
            self.observer.transmit(now, &self.node, &t);
            self.net.send(t.to, t.message);
        }
        while let Some(message) = self.node.poll_broadcast() {
            let kind = message.kind();
            if let Err(e) = self.net.broadcast(message) {
                tracing::warn!(kind, error = %e, "job broadcast not published");
            }
        }
        while let Some(event) = self.node.poll_event() {
            self.observer.event(now, &self.node, &event);
            match &event {
                Event::Rtt { nonce, rtt, .. } => {
                    if let Some(reply) = self.pings.remove(nonce) {
                        let _ = reply.send(Ok(*rtt));
                    }
                }
                Event::PingTimeout { peer, nonce, .. } => {
                    if let Some(reply) = self.pings.remove(nonce) {
                        let secs = self.node.config().ping_timeout.as_secs();
                        let _ = reply.send(Err(PingError::Timeout(peer.to_string(), secs)));
                    }
                }
                Event::RttReport { from, id, rtts } => self.on_rtt_report(*from, *id, rtts),
                Event::Job(e) => {
                    if let Some(j) = &mut self.journal {
                        j.record(&self.node, now, e);
                    }
                }
                _ => {}
            }
        }
        self.net.after_step(&self.node, now);
    }
}

/// The next item of an optional channel; pending forever without one or once it closed.
async fn recv_some<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(v) => Some(v),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until<C: Clock>(clock: &C, deadline: Option<Timestamp>) {
    match deadline {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}
