//! Prometheus metrics of a production node, and the driver [`Observer`] that feeds them and
//! logs what the node does.
//!
//! Every metric handle is a cheap clone of shared counters: the observer, the network and
//! the API each hold one [`Metrics`]; `GET /metrics` renders [`Metrics::encode`].

use std::sync::Arc;

use flotilla_core::jobs::JobEvent;
use flotilla_core::{Event, Node, Timestamp, Transmit};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::driver::Observer;

/// Metric names are prefixed with this.
pub const METRICS_PREFIX: &str = "flotilla";

/// A `kind` label: a message or event kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind, as in traces.
    pub kind: &'static str,
}

/// A `state` label: the state a job entered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state's name.
    pub state: &'static str,
}

/// A `reason` label: why something was refused or dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason, one word.
    pub reason: &'static str,
}

/// A `direction` label: `published` by this node or `received` from another.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// The direction.
    pub direction: &'static str,
}

/// A `source` label: how a peer was discovered outside the core protocol (`pool` for a
/// provider of a pool found in the DHT, `mdns` for a node on the local link).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// The way it was found.
    pub source: &'static str,
}

/// Labels of a resource-manager gauge: the scope (`system`, `transient`,
/// `allowlisted_system`, `allowlisted_transient`, `protocol:NAME`, `service:NAME`, or a
/// kind: `peer`, `connection`, `stream`) and the resource (`memory`, `streams_in`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeResourceLabel {
    /// The scope.
    pub scope: String,
    /// The resource, as the `[limits]` keys name it.
    pub resource: &'static str,
}

/// Labels of a resource-manager refusal: the kind of the refusing scope (`gate` for the
/// inbound gate), the resource and the direction (`in` or `out`) of what was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// The kind of the refusing scope.
    pub scope: &'static str,
    /// `memory`, `streams`, `conns`, `fds` or `conn_rate`.
    pub resource: &'static str,
    /// `in` or `out`.
    pub direction: &'static str,
}

/// The node's metrics.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    messages_sent: Family<KindLabel, Counter>,
    messages_received: Family<KindLabel, Counter>,
    messages_dropped: Family<ReasonLabel, Counter>,
    events: Family<KindLabel, Counter>,
    frames_rejected: Family<ReasonLabel, Counter>,
    connected_peers: Gauge,
    known_peers: Gauge,
    rcmgr_usage: Family<ScopeResourceLabel, Gauge>,
    rcmgr_limit: Family<ScopeResourceLabel, Gauge>,
    rcmgr_refusals: Family<RefusalLabel, Counter>,
    discovery_found: Family<SourceLabel, Counter>,
    discovery_skipped: Family<ReasonLabel, Counter>,
    adverts_rejected: Family<ReasonLabel, Counter>,
    peers_filtered: Counter,
    peers_dropped: Family<ReasonLabel, Counter>,
    trims: Family<ReasonLabel, Counter>,
    job_refusals: Family<ReasonLabel, Counter>,
    deployments: Family<StateLabel, Counter>,
    allocations: Family<StateLabel, Counter>,
    job_broadcasts: Family<DirectionLabel, Counter>,
    job_broadcasts_dropped: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(METRICS_PREFIX);
        let messages_sent = Family::<KindLabel, Counter>::default();
        let messages_received = Family::<KindLabel, Counter>::default();
        let messages_dropped = Family::<ReasonLabel, Counter>::default();
        let events = Family::<KindLabel, Counter>::default();
        let frames_rejected = Family::<ReasonLabel, Counter>::default();
        let connected_peers = Gauge::default();
        let known_peers = Gauge::default();
        let rcmgr_usage = Family::<ScopeResourceLabel, Gauge>::default();
        let rcmgr_limit = Family::<ScopeResourceLabel, Gauge>::default();
        let rcmgr_refusals = Family::<RefusalLabel, Counter>::default();
        let discovery_found = Family::<SourceLabel, Counter>::default();
        let discovery_skipped = Family::<ReasonLabel, Counter>::default();
        let adverts_rejected = Family::<ReasonLabel, Counter>::default();
        let peers_filtered = Counter::default();
        let peers_dropped = Family::<ReasonLabel, Counter>::default();
        let trims = Family::<ReasonLabel, Counter>::default();
        let job_refusals = Family::<ReasonLabel, Counter>::default();
        let deployments = Family::<StateLabel, Counter>::default();
        let allocations = Family::<StateLabel, Counter>::default();
        let job_broadcasts = Family::<DirectionLabel, Counter>::default();
        let job_broadcasts_dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "messages_sent",
            "Core messages queued for sending",
            messages_sent.clone(),
        );
        registry.register(
            "messages_received",
            "Core messages received and decoded",
            messages_received.clone(),
        );
        registry.register(
            "messages_dropped",
            "Core messages dropped before sending",
            messages_dropped.clone(),
        );
        registry.register(
            "events",
            "Events reported by the node state machine",
            events.clone(),
        );
        registry.register(
            "frames_rejected",
            "Inbound frames refused; the stream carrying each was closed",
            frames_rejected.clone(),
        );
        registry.register(
            "connected_peers",
            "Peers connected",
            connected_peers.clone(),
        );
        registry.register(
            "known_peers",
            "Peers in the peer table",
            known_peers.clone(),
        );
        registry.register(
            "rcmgr_usage",
            "Resources held per scope (peer: all peers together)",
            rcmgr_usage.clone(),
        );
        registry.register(
            "rcmgr_limit",
            "Resource limits per scope (peer: each peer's; unlimited ones are not exported)",
            rcmgr_limit.clone(),
        );
        registry.register(
            "rcmgr_refusals",
            "Resource-manager refusals by kind of refusing scope, resource and direction",
            rcmgr_refusals.clone(),
        );
        registry.register(
            "discovery_found",
            "Peers found outside the core protocol and handed to it, by way of finding",
            discovery_found.clone(),
        );
        registry.register(
            "discovery_skipped",
            "Pool providers found but not handed to the core (no-address, lookups-full)",
            discovery_skipped.clone(),
        );
        registry.register(
            "adverts_rejected",
            "Adverts dropped unstored (forged, oversized, expired, future, version)",
            adverts_rejected.clone(),
        );
        registry.register(
            "peers_filtered",
            "Peers learned from others that the peer filter rejected, not stored",
            peers_filtered.clone(),
        );
        registry.register(
            "peers_dropped",
            "Connections the node let go, by reason (filter, trim, trim-pressure, rotate, full, refused, ping-failures, ...)",
            peers_dropped.clone(),
        );
        registry.register(
            "trims",
            "Trims of the connection manager that closed connections, by cause (high-watermark, pressure)",
            trims.clone(),
        );
        registry.register(
            "job_refusals",
            "Commits this provider refused, by reason (policy: a requester not allowed; other: spec, fit, queue)",
            job_refusals.clone(),
        );
        registry.register(
            "deployments",
            "States this node's deployments entered",
            deployments.clone(),
        );
        registry.register(
            "allocations",
            "States this provider's allocations entered",
            allocations.clone(),
        );
        registry.register(
            "job_broadcasts",
            "Job broadcasts (bid requests on the gossip jobs topic), published or received",
            job_broadcasts.clone(),
        );
        registry.register(
            "job_broadcasts_dropped",
            "Job broadcasts dropped, by reason (received: unsigned, oversized, malformed; published: too-large, no-peers, publish)",
            job_broadcasts_dropped.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            job_refusals,
            deployments,
            allocations,
            job_broadcasts,
            job_broadcasts_dropped,
            adverts_rejected,
            peers_filtered,
            peers_dropped,
            trims,
            messages_sent,
            messages_received,
            messages_dropped,
            events,
            frames_rejected,
            connected_peers,
            known_peers,
            rcmgr_usage,
            rcmgr_limit,
            rcmgr_refusals,
            discovery_found,
            discovery_skipped,
        }
    }

    /// Counts what `event` says about adverts, filters, drops and trims.
    fn company(&self, event: &Event) {
        match event {
            Event::AdvertRejected { reason, .. } => {
                let reason = reason.label();
                self.adverts_rejected
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            Event::PeersLearned { filtered, .. } => {
                self.peers_filtered.inc_by(*filtered as u64);
            }
            Event::Dropping { reason, .. } => {
                self.peers_dropped
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            Event::Trimmed { cause, .. } => {
                let reason = match cause {
                    flotilla_core::connmgr::TrimCause::HighWatermark => "high-watermark",
                    flotilla_core::connmgr::TrimCause::Pressure => "pressure",
                };
                self.trims.get_or_create(&ReasonLabel { reason }).inc();
            }
            Event::Job(JobEvent::Refused { policy, .. }) => {
                let reason = if *policy { "policy" } else { "other" };
                self.job_refusals
                    .get_or_create(&ReasonLabel { reason })
                    .inc();
            }
            Event::Job(JobEvent::Deployment { state, .. }) => {
                let state = state.name();
                self.deployments.get_or_create(&StateLabel { state }).inc();
            }
            Event::Job(JobEvent::Allocation { state, .. }) => {
                let state = state.name();
                self.allocations.get_or_create(&StateLabel { state }).inc();
            }
            _ => {}
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One message of `kind` sent.
    pub fn message_sent(&self, kind: &'static str) {
        self.messages_sent.get_or_create(&KindLabel { kind }).inc();
    }

    /// One message of `kind` received.
    pub fn message_received(&self, kind: &'static str) {
        self.messages_received
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// One outgoing message dropped for `reason`.
    pub fn message_dropped(&self, reason: &'static str) {
        self.messages_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// One job broadcast `published` or `received`.
    pub fn job_broadcast(&self, direction: &'static str) {
        self.job_broadcasts
            .get_or_create(&DirectionLabel { direction })
            .inc();
    }

    /// One job broadcast dropped for `reason`.
    pub fn job_broadcast_dropped(&self, reason: &'static str) {
        self.job_broadcasts_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// One inbound frame refused for `reason`.
    pub fn frame_rejected(&self, reason: &'static str) {
        self.frames_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// One peer found by `source` (`pool` or `mdns`) handed to the core.
    pub fn discovery_found(&self, source: &'static str) {
        self.discovery_found
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    /// One pool provider skipped for `reason`.
    pub fn discovery_skipped(&self, reason: &'static str) {
        self.discovery_skipped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// One resource-manager refusal.
    pub fn rcmgr_refused(
        &self,
        scope: &'static str,
        resource: &'static str,
        direction: &'static str,
    ) {
        self.rcmgr_refusals
            .get_or_create(&RefusalLabel {
                scope,
                resource,
                direction,
            })
            .inc();
    }

    /// Replaces the resource manager's usage and limit gauges with these rows (scope,
    /// resource, value); scopes gone since the last call lose their gauges.
    pub fn set_rcmgr_gauges(
        &self,
        usage: &[(String, &'static str, u64)],
        limits: &[(String, &'static str, u64)],
    ) {
        for (family, rows) in [(&self.rcmgr_usage, usage), (&self.rcmgr_limit, limits)] {
            family.clear();
            for (scope, resource, v) in rows {
                let label = ScopeResourceLabel {
                    scope: scope.clone(),
                    resource,
                };
                family
                    .get_or_create(&label)
                    .set(i64::try_from(*v).unwrap_or(i64::MAX));
            }
        }
    }

    fn node_state(&self, node: &Node) {
        self.connected_peers
            .set(i64::try_from(node.connections().count()).unwrap_or(i64::MAX));
        self.known_peers
            .set(i64::try_from(node.peer_table().len()).unwrap_or(i64::MAX));
    }
}

/// Counts and logs what the node does.
#[derive(Clone, Debug)]
pub struct MetricsObserver {
    metrics: Metrics,
}

impl MetricsObserver {
    /// An observer feeding `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        MetricsObserver { metrics }
    }
}

impl Observer for MetricsObserver {
    fn event(&mut self, _now: Timestamp, node: &Node, event: &Event) {
        self.metrics
            .events
            .get_or_create(&KindLabel { kind: event.kind() })
            .inc();
        self.metrics.node_state(node);
        self.metrics.company(event);
        log_event(event);
    }

    fn transmit(&mut self, _now: Timestamp, _node: &Node, transmit: &Transmit) {
        self.metrics.message_sent(transmit.message.kind());
    }
}

/// Logs one event: connection changes at info, routine measurements at debug.
fn log_event(event: &Event) {
    match event {
        Event::Dialing { peer, addr } => {
            tracing::debug!(peer = ?peer.map(|p| p.to_string()), %addr, "dialing")
        }
        Event::DialFailed { peer, reason } => {
            tracing::info!(peer = ?peer.map(|p| p.to_string()), %reason, "dial failed")
        }
        Event::Connected { peer, direction } => {
            tracing::info!(%peer, direction = direction.label(), "peer connected")
        }
        Event::Disconnected { peer } => tracing::info!(%peer, "peer disconnected"),
        Event::Dropping { peer, reason } => tracing::info!(%peer, %reason, "dropping peer"),
        Event::Hello { peer } => tracing::debug!(%peer, "hello received"),
        Event::Rtt { peer, rtt, .. } => {
            tracing::debug!(%peer, rtt_ms = rtt.as_secs_f64() * 1000.0, "rtt")
        }
        Event::PingTimeout { peer, failures, .. } => {
            tracing::info!(%peer, failures, "ping timed out")
        }
        Event::PeersLearned {
            from,
            received,
            new,
            rejected,
            filtered,
        } => {
            tracing::debug!(%from, received, new, rejected, filtered, "peers learned")
        }
        Event::RttReport { from, rtts, .. } => {
            tracing::debug!(%from, entries = rtts.len(), "latency table received")
        }
        Event::Trimmed { cause, victims } => {
            tracing::info!(?cause, victims, "connections trimmed")
        }
        Event::AdvertRejected { from, reason } => {
            tracing::info!(%from, %reason, "advert rejected")
        }
        Event::Job(e) => log_job(e),
    }
}

/// Logs a job event: state changes at info, log lines at debug, refusals at warn.
fn log_job(event: &JobEvent) {
    match event {
        JobEvent::Deployment { id, state, reason } => {
            tracing::info!(deployment = id, %state, %reason, "deployment")
        }
        JobEvent::Log { id, peer, line, .. } => {
            tracing::debug!(deployment = id, %peer, %line, "job log")
        }
        JobEvent::Allocation {
            id,
            requester,
            deployment,
            state,
            reason,
        } => {
            tracing::info!(allocation = id.0, %requester, deployment, %state, %reason, "allocation")
        }
        JobEvent::Refused {
            requester,
            deployment,
            reason,
            ..
        } => tracing::warn!(%requester, deployment, %reason, "job refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rejected_adverts_filtered_peers_drops_and_trims() {
        let m = Metrics::new();
        let peer = flotilla_core::PeerId::from_public_key([1; 32]);
        m.company(&Event::AdvertRejected {
            from: peer,
            reason: flotilla_core::AdvertError::Forged,
        });
        m.company(&Event::PeersLearned {
            from: peer,
            received: 10,
            new: 3,
            rejected: 1,
            filtered: 4,
        });
        m.company(&Event::Dropping {
            peer,
            reason: "filter",
        });
        m.company(&Event::Trimmed {
            cause: flotilla_core::connmgr::TrimCause::Pressure,
            victims: 5,
        });
        let text = m.encode();
        for line in [
            "flotilla_adverts_rejected_total{reason=\"forged\"} 1",
            "flotilla_peers_filtered_total 4",
            "flotilla_peers_dropped_total{reason=\"filter\"} 1",
            "flotilla_trims_total{reason=\"pressure\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn encodes_registered_metrics() {
        let m = Metrics::new();
        m.message_sent("ping");
        m.frame_rejected("oversized");
        m.discovery_found("pool");
        m.job_broadcast("published");
        m.job_broadcast_dropped("malformed");
        let text = m.encode();
        assert!(
            text.contains("flotilla_messages_sent_total{kind=\"ping\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_frames_rejected_total{reason=\"oversized\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flotilla_discovery_found_total{source=\"pool\"} 1"),
            "{text}"
        );
        for line in [
            "flotilla_job_broadcasts_total{direction=\"published\"} 1",
            "flotilla_job_broadcasts_dropped_total{reason=\"malformed\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.contains("flotilla_connected_peers"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
