//! `GET /rtt?peers=<id>,<id>[&from=<id>]`: a latency table, measured by this node or, with
//! `from`, by a connected peer asked over the core protocol.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_core::PeerId;

use super::{ApiState, error, stopped};
use crate::driver::RttError;
use crate::views::RttView;

/// A bad query of `GET /rtt`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RttQueryError {
    /// No peer asked about.
    #[error(
        "`peers` is missing or empty; pass `peers=<peer id>,<peer id>` (ids as listed by \
         `flotilla peers`)"
    )]
    NoPeers,
    /// A value that is not a peer id.
    #[error("`{text}` in `{key}` is not a peer id ({cause}); copy one from `flotilla peers`")]
    BadPeer {
        /// The parameter.
        key: String,
        /// The offending value.
        text: String,
        /// Why it does not parse.
        cause: String,
    },
    /// `from` given more than once.
    #[error("`from` is given twice; name one node to ask")]
    FromTwice,
    /// A parameter `GET /rtt` does not take.
    #[error("unknown parameter `{0}`; GET /rtt takes `peers` and `from`")]
    Unknown(String),
}

/// The parsed query of `GET /rtt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RttQuery {
    /// The node whose measurements are wanted: this one if `None`.
    pub from: Option<PeerId>,
    /// The peers asked about, in order (`peers` may be repeated; each value is a
    /// comma-separated list).
    pub peers: Vec<PeerId>,
}

impl RttQuery {
    /// Parses the query's `(key, value)` pairs.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, RttQueryError> {
        let parse = |key: &str, text: &str| {
            text.parse::<PeerId>().map_err(|e| RttQueryError::BadPeer {
                key: key.to_string(),
                text: text.to_string(),
                cause: e.to_string(),
            })
        };
        let mut query = RttQuery {
            from: None,
            peers: Vec::new(),
        };
        for (key, value) in pairs {
            match key {
                "peers" => {
                    for text in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                        query.peers.push(parse(key, text)?);
                    }
                }
                "from" if query.from.is_some() => return Err(RttQueryError::FromTwice),
                "from" => query.from = Some(parse(key, value.trim())?),
                _ => return Err(RttQueryError::Unknown(key.to_string())),
            }
        }
        if query.peers.is_empty() {
            return Err(RttQueryError::NoPeers);
        }
        Ok(query)
    }
}

pub(super) async fn rtt(
    State(s): State<ApiState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let query = match RttQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match s.driver.rtts(query.from, query.peers).await {
        Ok(rtts) => Json(rtts.into_iter().map(RttView::from).collect::<Vec<_>>()).into_response(),
        Err(e @ RttError::NotConnected(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ RttError::TooMany(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ RttError::Busy(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e @ RttError::Timeout(..)) => error(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(RttError::Stopped) => stopped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorReply;
    use crate::api::tests::{get, serve_for_test};
    use crate::clock::{Clock, TokioClock};
    use crate::driver::{Driver, DriverHandle, NoObserver};
    use crate::network::{NetEvent, Network};
    use flotilla_core::{Config, DialId, Direction, Keypair, Message, Node, SeedTree};
    use tokio::sync::mpsc;

    /// Messages in flight between the two linked nodes at most.
    const LINK_QUEUE_MAX: usize = 256;

    /// One end of an in-memory connection between two nodes.
    struct Linked {
        me: PeerId,
        inbox: mpsc::Receiver<NetEvent>,
        other: mpsc::Sender<NetEvent>,
    }

    impl Network for Linked {
        async fn next_event(&mut self) -> Option<NetEvent> {
            self.inbox.recv().await
        }
        fn dial(&mut self, _: DialId, _: &str, _: Option<PeerId>) {}
        fn disconnect(&mut self, _: PeerId) {}
        fn send(&mut self, _: PeerId, message: Message) {
            let from = self.me;
            let _ = self.other.try_send(NetEvent::Message { from, message });
        }
    }

    fn node(seed: u64, clock: &TokioClock) -> Node {
        let keypair = Keypair::generate(&mut SeedTree::new(seed).rng());
        Node::new(Config::default(), keypair, SeedTree::new(seed), clock.now()).unwrap()
    }

    /// Two connected nodes, A and B, each driven with its handle.
    fn linked_pair() -> [(PeerId, DriverHandle); 2] {
        let clock = TokioClock::system();
        let (a, b) = (node(21, &clock), node(22, &clock));
        let (a_id, b_id) = (a.peer_id(), b.peer_id());
        let (to_a, inbox_a) = mpsc::channel(LINK_QUEUE_MAX);
        let (to_b, inbox_b) = mpsc::channel(LINK_QUEUE_MAX);
        for (tx, peer, direction) in [
            (&to_a, b_id, Direction::Outbound),
            (&to_b, a_id, Direction::Inbound),
        ] {
            let connected = NetEvent::Connected {
                peer,
                direction,
                dial: None,
            };
            tx.try_send(connected).unwrap();
        }
        let net_a = Linked {
            me: a_id,
            inbox: inbox_a,
            other: to_b,
        };
        let net_b = Linked {
            me: b_id,
            inbox: inbox_b,
            other: to_a,
        };
        let (driver_a, handle_a) = Driver::new(a, net_a, clock, NoObserver);
        let (driver_b, handle_b) = Driver::new(b, net_b, clock, NoObserver);
        tokio::spawn(driver_a.run());
        tokio::spawn(driver_b.run());
        [(a_id, handle_a), (b_id, handle_b)]
    }

    /// Waits until both drivers have handled their connection.
    async fn connected(handles: [&DriverHandle; 2]) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        for h in handles {
            while h.status().await.unwrap().connected < 1 {
                assert!(tokio::time::Instant::now() < deadline, "not connected");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }

    async fn get_all<const N: usize>(urls: [String; N]) -> [(u16, String); N] {
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            urls.map(|url| get(&agent, false, &url))
        })
        .await
        .unwrap()
    }

    fn listed(answer: &(u16, String)) -> Vec<RttView> {
        assert_eq!(answer.0, 200, "{}", answer.1);
        serde_json::from_str(&answer.1).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tables_local_and_from_a_connected_peer() {
        let [(a, handle_a), (b, handle_b)] = linked_pair();
        connected([&handle_a, &handle_b]).await;
        // Each measures the other once.
        handle_a.ping(b).await.unwrap();
        handle_b.ping(a).await.unwrap();
        let base = serve_for_test(handle_a.clone()).await;
        let stranger = Keypair::generate(&mut SeedTree::new(23).rng()).peer_id();
        let [local, unmeasured, remote, from_self, absent] = get_all([
            format!("{base}/rtt?peers={b}"),
            format!("{base}/rtt?peers={stranger},{a}"),
            format!("{base}/rtt?peers={a},{stranger}&from={b}"),
            format!("{base}/rtt?peers={b}&from={a}"),
            format!("{base}/rtt?peers={a}&from={stranger}"),
        ])
        .await;

        let local = listed(&local);
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].peer_id, b);
        assert!(local[0].samples >= 1 && local[0].rtt_ms >= 0.0);
        assert_eq!(listed(&unmeasured), []);
        // B's measurement of A: A has none of itself.
        let remote = listed(&remote);
        assert_eq!(remote.len(), 1);
        assert_eq!(remote[0].peer_id, a);
        assert!(remote[0].samples >= 1 && remote[0].rtt_ms >= 0.0);
        assert_eq!(listed(&from_self)[0].peer_id, b);
        assert_eq!(absent.0, 404, "{}", absent.1);
        assert!(absent.1.contains("flotilla peers"), "{}", absent.1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_to_one_peer_get_their_own_report() {
        let [(a, handle_a), (b, handle_b)] = linked_pair();
        connected([&handle_a, &handle_b]).await;
        handle_b.ping(a).await.unwrap();
        let stranger = Keypair::generate(&mut SeedTree::new(23).rng()).peer_id();
        let (with_a, without) = tokio::join!(
            handle_a.rtts(Some(b), vec![a]),
            handle_a.rtts(Some(b), vec![stranger]),
        );
        assert_eq!(with_a.unwrap().len(), 1);
        assert_eq!(without.unwrap(), []);
        let too_many = handle_a.rtts(Some(b), vec![a; 65]).await;
        assert_eq!(too_many, Err(RttError::TooMany(65)));
        let too_many = handle_a.rtts(None, vec![a; 65]).await;
        assert_eq!(too_many, Err(RttError::TooMany(65)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_queries_are_answered_400() {
        let [(a, handle_a), (_, handle_b)] = linked_pair();
        connected([&handle_a, &handle_b]).await;
        let base = serve_for_test(handle_a).await;
        let many = vec![a.to_string(); 65].join(",");
        let answers = get_all([
            format!("{base}/rtt"),
            format!("{base}/rtt?peers="),
            format!("{base}/rtt?peers={a},garbage"),
            format!("{base}/rtt?peers={a}&from=nobody"),
            format!("{base}/rtt?peers={a}&from={a}&from={a}"),
            format!("{base}/rtt?peers={a}&colour=red"),
            format!("{base}/rtt?peers={many}"),
        ])
        .await;
        let needles: [&[&str]; 7] = [
            &["`peers`", "peers=<peer id>,<peer id>"],
            &["`peers`", "peers=<peer id>,<peer id>"],
            &["`garbage`", "`peers`", "flotilla peers"],
            &["`nobody`", "`from`", "flotilla peers"],
            &["`from`", "twice"],
            &["`colour`", "`peers` and `from`"],
            &["65 peers", "at most 64"],
        ];
        for (answer, needles) in answers.iter().zip(needles) {
            assert_eq!(answer.0, 400, "{}", answer.1);
            let e: ErrorReply = serde_json::from_str(&answer.1).unwrap();
            for needle in needles {
                assert!(e.error.contains(needle), "{needle} not in {}", e.error);
            }
        }
    }
}
