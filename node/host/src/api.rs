//! The node's local HTTP API, bound to a loopback address only.
//!
//! | request | answer |
//! |---|---|
//! | `GET /status` | [`StatusView`](crate::views::StatusView) as JSON |
//! | `GET /peers?sort=rtt&region=eu-west&rtt_max_ms=80&cores_min=4&memory_min_mb=2048&known=true` | a list of [`PeerView`](crate::views::PeerView) as JSON: connected peers (every known peer with `known=true`) that pass the filters, in order (see [`query`](crate::views::query); every parameter optional) |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /rcmgr/limits` | [`LimitsView`]: the resource limits in force |
//! | `GET /rcmgr/scopes?top=N` | [`ScopesView`]: usage against limits, the top `N` peers (default 10), refusals |
//! | `POST /ping/{peer_id}` | [`PingReply`]: `{"rtt_ms": ..}` |
//! | `GET /rtt?peers=<id>,<id>&from=<id>` | a list of [`RttView`](crate::views::RttView) as JSON: the RTTs measured to `peers` (at most 64; unmeasured ones left out) by this node or, with `from`, by that connected peer (see [`rtt`]) |
//! | `GET /resources`, `POST /resources/onboard`, `POST /resources/offboard`, `PUT /resources/onboarded` | the provider's live capacity, and changes to what it offers (see [`jobs`]) |
//! | `POST /fetch/{peer_id}?name=<name>&out=<absolute path>&max_bytes=N&session_bytes_max=N` | [`FetchReport`](crate::p2p::transfer::FetchReport): the node fetched the peer's file `name` into `out`, resuming from `<out>.part` (see [`fetch`]) |
//!
//! Errors are JSON [`ErrorReply`]s: 400 for a bad peer id, peer query or latency query, 404
//! for a peer that is not connected, 504 when the pong or latency report does not come in
//! time, 503 while the node shuts down or is saturated with requests.
//!
//! Submodules:
//! - [`rtt`]: `GET /rtt`, latency tables;
//! - [`jobs`]: `/deployments` (deploy, list, status, logs, follow, shutdown) and
//!   `/resources` (the live ledger, onboard, offboard);
//! - [`fetch`]: `POST /fetch/{peer_id}`, a peer's artefact fetched over the transfer
//!   protocol.

pub mod fetch;
pub mod jobs;
pub mod rtt;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_core::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::driver::{DriverHandle, PingError};
use crate::metrics::Metrics;
use crate::rcmgr::SharedRcmgr;
use crate::rcmgr::views::{LimitsView, ScopesView};
use crate::views::query::PeerQuery;

/// Requests served at once; more are answered 503 at once.
pub const API_REQUESTS_MAX: usize = 32;
/// Peers listed by `GET /rcmgr/scopes` when `top` is not given.
pub const TOP_PEERS_DEFAULT: usize = 10;
/// Peers listed by `GET /rcmgr/scopes` at most.
pub const TOP_PEERS_MAX: usize = 1000;

/// Why the API could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The address is not a loopback address.
    #[error(
        "refusing to serve the API on {0}: it has no authentication, so use a loopback address \
         such as 127.0.0.1:7400"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the API: {cause}; pick another port with --api")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        cause: std::io::Error,
    },
    /// Serving failed.
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
}

/// Answer of `POST /ping/{peer_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PingReply {
    /// The measured round trip in milliseconds.
    pub rtt_ms: f64,
}

/// Body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong and what to do.
    pub error: String,
}

#[derive(Clone, Debug)]
struct ApiState {
    driver: DriverHandle,
    metrics: Metrics,
    rcmgr: SharedRcmgr,
    slots: Arc<Semaphore>,
    /// Opens transfer streams for `POST /fetch`; `None` until [`ApiServer::with_transfers`].
    transfer: Option<fetch::Transfers>,
    /// The local store that keeps onboarding changes; `None` until
    /// [`ApiServer::with_store`] (changes are then live only).
    store: Option<std::path::PathBuf>,
    /// Held by one onboarding change at a time, so that the store keeps the last one.
    onboarding: Arc<tokio::sync::Mutex<()>>,
}

/// A bound, not yet serving API.
#[derive(Debug)]
pub struct ApiServer {
    listener: tokio::net::TcpListener,
    state: ApiState,
}

impl ApiServer {
    /// Binds `addr` (loopback only; port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        driver: DriverHandle,
        metrics: Metrics,
        rcmgr: SharedRcmgr,
    ) -> Result<Self, ApiError> {
        if !addr.ip().is_loopback() {
            return Err(ApiError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|cause| ApiError::Bind { addr, cause })?;
        let state = ApiState {
            driver,
            metrics,
            rcmgr,
            slots: Arc::new(Semaphore::new(API_REQUESTS_MAX)),
            transfer: None,
            store: None,
            onboarding: Arc::new(tokio::sync::Mutex::new(())),
        };
        Ok(ApiServer { listener, state })
    }

    /// Serves `POST /fetch` with transfer streams opened by `control`.
    pub fn with_transfers(mut self, control: libp2p_stream::Control) -> Self {
        self.state.transfer = Some(fetch::Transfers(control));
        self
    }

    /// Keeps onboarding changes (`/resources/onboard`, ...) in the store at `path` too, so
    /// that the node starts with them again.
    pub fn with_store(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.state.store = Some(path.into());
        self
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, ApiError> {
        self.listener.local_addr().map_err(ApiError::Serve)
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ApiError> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ApiError::Serve)
    }
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/metrics", get(metrics))
        .route("/rcmgr/limits", get(rcmgr_limits))
        .route("/rcmgr/scopes", get(rcmgr_scopes))
        .route("/ping/{peer_id}", post(ping))
        .route("/rtt", get(rtt::rtt))
        .route("/deployments", get(jobs::list).post(jobs::deploy))
        .route("/deployments/{id}", get(jobs::status))
        .route("/deployments/{id}/logs", get(jobs::logs))
        .route("/deployments/{id}/follow", get(jobs::follow))
        .route("/deployments/{id}/shutdown", post(jobs::shutdown))
        .route("/resources", get(jobs::resources))
        .route("/resources/onboard", post(jobs::onboard))
        .route("/resources/offboard", post(jobs::offboard))
        .route(
            "/resources/onboarded",
            axum::routing::put(jobs::set_onboarded),
        )
        .route("/fetch/{peer_id}", post(fetch::fetch))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), limit))
        .with_state(state)
}

/// Answers 503 when [`API_REQUESTS_MAX`] requests are already in progress.
async fn limit(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    match s.slots.try_acquire() {
        Ok(_permit) => next.run(request).await,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many API requests at once; retry",
        ),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorReply {
            error: message.into(),
        }),
    )
        .into_response()
}

fn stopped() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down")
}

async fn status(State(s): State<ApiState>) -> Response {
    match s.driver.status().await {
        Some(view) => Json(view).into_response(),
        None => stopped(),
    }
}

async fn peers(State(s): State<ApiState>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let query = match PeerQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.driver.peers().await {
        Some(view) => Json(query.apply(view)).into_response(),
        None => stopped(),
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    s.rcmgr.export_metrics();
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], s.metrics.encode()).into_response()
}

async fn rcmgr_limits(State(s): State<ApiState>) -> Json<LimitsView> {
    Json(s.rcmgr.limits_view())
}

/// Query of `GET /rcmgr/scopes`.
#[derive(Debug, Deserialize)]
struct ScopesQuery {
    top: Option<usize>,
}

async fn rcmgr_scopes(State(s): State<ApiState>, Query(q): Query<ScopesQuery>) -> Json<ScopesView> {
    let top = q.top.unwrap_or(TOP_PEERS_DEFAULT).min(TOP_PEERS_MAX);
    Json(s.rcmgr.scopes_view(top))
}

async fn ping(State(s): State<ApiState>, Path(peer): Path<String>) -> Response {
    let peer_id = match peer.parse::<PeerId>() {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`{peer}` is not a peer id ({e}); copy one from `flotilla peers`"),
            );
        }
    };
    match s.driver.ping(peer_id).await {
        Ok(rtt) => Json(PingReply {
            rtt_ms: rtt.as_secs_f64() * 1000.0,
        })
        .into_response(),
        Err(e @ PingError::NotConnected(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ PingError::Timeout(..)) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(PingError::Stopped) => stopped(),
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; the API serves GET /status, GET /peers, GET /metrics, \
         GET /rcmgr/limits, GET /rcmgr/scopes, POST /ping/{peer_id}, /deployments..., \
         GET /resources, POST /resources/onboard, POST /resources/offboard, \
         PUT /resources/onboarded, \
         POST /fetch/{peer_id}?name=<name>&out=<absolute path> and GET /rtt?peers=<peer id>,<peer id>[&from=<peer id>]",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, TokioClock};
    use crate::driver::{Driver, NoObserver};
    use crate::network::{NetEvent, Network};
    use flotilla_core::{Config, DialId, Keypair, Message, Node, SeedTree};
    use std::time::Duration;

    pub(super) fn test_rcmgr(metrics: Metrics) -> SharedRcmgr {
        let machine = crate::rcmgr::Machine {
            memory_bytes: 8 << 30,
            fds: 16384,
        };
        SharedRcmgr::new(
            machine.default_limits(),
            flotilla_core::rcmgr::Allowlist::default(),
            machine,
            metrics,
        )
    }

    /// Serves the API of the driver behind `handle` on a free loopback port; returns its
    /// base URL.
    pub(super) async fn serve_for_test(handle: crate::driver::DriverHandle) -> String {
        serve_with_store(handle, None).await
    }

    /// As [`serve_for_test`], with the local store at `store` if given.
    pub(super) async fn serve_with_store(
        handle: crate::driver::DriverHandle,
        store: Option<&std::path::Path>,
    ) -> String {
        let metrics = Metrics::new();
        let mut server = ApiServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            handle,
            metrics.clone(),
            test_rcmgr(metrics),
        )
        .await
        .unwrap();
        if let Some(store) = store {
            server = server.with_store(store);
        }
        let base = format!("http://{}", server.local_addr().unwrap());
        tokio::spawn(server.serve(std::future::pending()));
        base
    }

    /// A network on which nothing ever happens.
    pub(super) struct Idle;

    impl Network for Idle {
        async fn next_event(&mut self) -> Option<NetEvent> {
            std::future::pending().await
        }
        fn dial(&mut self, _: DialId, _: &str, _: Option<PeerId>) {}
        fn disconnect(&mut self, _: PeerId) {}
        fn send(&mut self, _: PeerId, _: Message) {}
    }

    pub(super) fn get(agent: &ureq::Agent, post: bool, url: &str) -> (u16, String) {
        let sent = if post {
            agent.post(url).send_empty()
        } else {
            agent.get(url).call()
        };
        let mut response = sent.unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints_answer_json_and_errors() {
        let keypair = Keypair::generate(&mut SeedTree::new(1).rng());
        let me = keypair.peer_id();
        let clock = TokioClock::system();
        let node = Node::new(Config::default(), keypair, SeedTree::new(2), clock.now()).unwrap();
        let (driver, handle) = Driver::new(node, Idle, clock, NoObserver);
        tokio::spawn(driver.run());
        let base = serve_for_test(handle).await;

        let stranger = Keypair::generate(&mut SeedTree::new(3).rng()).peer_id();
        let answers = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            [
                get(&agent, false, &format!("{base}/status")),
                get(&agent, false, &format!("{base}/peers")),
                get(&agent, false, &format!("{base}/metrics")),
                get(&agent, false, &format!("{base}/rcmgr/limits")),
                get(&agent, false, &format!("{base}/rcmgr/scopes?top=3")),
                get(&agent, true, &format!("{base}/ping/garbage")),
                get(&agent, true, &format!("{base}/ping/{stranger}")),
                get(&agent, false, &format!("{base}/nowhere")),
            ]
        })
        .await
        .unwrap();
        let [status, peers, metrics, limits, scopes, bad, absent, nowhere] = answers;

        assert_eq!(status.0, 200);
        let view: crate::views::StatusView = serde_json::from_str(&status.1).unwrap();
        assert_eq!(view.peer_id, me);
        assert_eq!(peers, (200, "[]".to_string()));
        assert_eq!(metrics.0, 200);
        assert!(metrics.1.ends_with("# EOF\n"), "{}", metrics.1);
        assert!(
            metrics
                .1
                .contains("flotilla_rcmgr_limit{scope=\"system\",resource=\"conns_in\"} 4096"),
            "{}",
            metrics.1
        );
        assert_eq!(limits.0, 200);
        let limits: LimitsView = serde_json::from_str(&limits.1).unwrap();
        assert_eq!(limits.scopes[0].scope, "system");
        assert_eq!(limits.scopes[0].conns_in, Some(4096));
        assert_eq!(scopes.0, 200);
        let scopes: ScopesView = serde_json::from_str(&scopes.1).unwrap();
        assert_eq!(scopes.scopes[0].limits.scope, "system");
        assert_eq!(scopes.peers, 0);
        for (answer, code) in [(bad, 400), (absent, 404), (nowhere, 404)] {
            assert_eq!(answer.0, code, "{}", answer.1);
            let e: ErrorReply = serde_json::from_str(&answer.1).unwrap();
            assert!(!e.error.is_empty());
        }
    }

    /// A network that reports `events` once, then nothing.
    struct Scripted(std::collections::VecDeque<NetEvent>);

    impl Network for Scripted {
        async fn next_event(&mut self) -> Option<NetEvent> {
            match self.0.pop_front() {
                Some(ev) => Some(ev),
                None => std::future::pending().await,
            }
        }
        fn dial(&mut self, _: DialId, _: &str, _: Option<PeerId>) {}
        fn disconnect(&mut self, _: PeerId) {}
        fn send(&mut self, _: PeerId, _: Message) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_take_sort_and_filter_parameters() {
        let clock = TokioClock::system();
        let now = clock.now();
        // Three peers known from their adverts on gossip, none connected.
        let mut events = std::collections::VecDeque::new();
        let mut ids = Vec::new();
        for (seed, region, cores) in [(11, "eu-west", 8), (12, "us-east", 16), (13, "eu-west", 2)] {
            let config = Config {
                region: Some(region.to_string()),
                resources: flotilla_core::Resources {
                    cores,
                    memory_mb: 1024,
                    disk_gb: 0,
                    gpus: 0,
                },
                ..Config::default()
            };
            let kp = Keypair::generate(&mut SeedTree::new(seed).rng());
            let peer = Node::new(config, kp, SeedTree::new(seed), now).unwrap();
            ids.push(peer.peer_id());
            events.push_back(NetEvent::Advert {
                from: peer.peer_id(),
                advert: peer.advert().clone(),
            });
        }
        let keypair = Keypair::generate(&mut SeedTree::new(1).rng());
        let node = Node::new(Config::default(), keypair, SeedTree::new(2), now).unwrap();
        let (driver, handle) = Driver::new(node, Scripted(events), clock, NoObserver);
        tokio::spawn(driver.run());
        let base = serve_for_test(handle.clone()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while handle.status().await.unwrap().known < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "adverts not applied"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let answers = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            [
                "",
                "?known=true&sort=cores",
                "?known=true&region=eu-west&cores_min=4",
                "?known=true&region=eu-west&region=us-east&sort=peer",
                "?known=true&rtt_max_ms=80",
                "?sort=latency",
                "?cores_min=-1",
                "?colour=red",
            ]
            .map(|q| get(&agent, false, &format!("{base}/peers{q}")))
        })
        .await
        .unwrap();
        let listed = |answer: &(u16, String)| -> Vec<PeerId> {
            assert_eq!(answer.0, 200, "{}", answer.1);
            let peers: Vec<crate::views::PeerView> = serde_json::from_str(&answer.1).unwrap();
            peers.iter().map(|p| p.peer_id).collect()
        };
        let [
            none,
            by_cores,
            eu_big,
            two_regions,
            near,
            sort,
            cores,
            unknown,
        ] = answers;
        // Only connected peers unless `known=true`.
        assert_eq!(listed(&none), []);
        assert_eq!(listed(&by_cores), [ids[1], ids[0], ids[2]]);
        assert_eq!(listed(&eu_big), [ids[0]]);
        let mut all = ids.clone();
        all.sort_by_key(|p| p.to_string());
        assert_eq!(listed(&two_regions), all);
        // No RTT measured: none passes an RTT bound.
        assert_eq!(listed(&near), []);
        for (answer, needles) in [
            (sort, ["`sort`", "rtt, region, cores, memory, uptime, peer"]),
            (cores, ["`cores_min`", "whole number"]),
            (unknown, ["`colour`", "rtt_max_ms"]),
        ] {
            assert_eq!(answer.0, 400, "{}", answer.1);
            let e: ErrorReply = serde_json::from_str(&answer.1).unwrap();
            for needle in needles {
                assert!(e.error.contains(needle), "{needle} not in {}", e.error);
            }
        }
    }

    #[tokio::test]
    async fn refuses_non_loopback_addresses() {
        let keypair = Keypair::generate(&mut SeedTree::new(1).rng());
        let clock = TokioClock::system();
        let node = Node::new(Config::default(), keypair, SeedTree::new(2), clock.now()).unwrap();
        let (_driver, handle) = Driver::new(node, Idle, clock, NoObserver);
        let metrics = Metrics::new();
        let rcmgr = test_rcmgr(metrics.clone());
        let err = ApiServer::bind("0.0.0.0:0".parse().unwrap(), handle, metrics, rcmgr).await;
        assert!(matches!(err, Err(ApiError::NotLoopback(_))));
    }
}
