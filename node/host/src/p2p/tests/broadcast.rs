//! Job broadcasts between in-process nodes: real drivers on libp2p swarms over loopback,
//! with simulated executors.

use std::path::Path;

use flotilla_core::capacity::Capacity;
use flotilla_core::deployment::DeployState;
use flotilla_core::job::JobSpec;
use flotilla_core::offer::Preferences;
use flotilla_core::simexec::{SimExecConfig, SimExecutor};
use flotilla_core::{Node, Resources};

use super::*;
use crate::clock::{Clock, TokioClock};
use crate::driver::{Driver, DriverHandle};
use crate::metrics::MetricsObserver;
use crate::simrunner::SimRunner;

/// A job for one worker on the simulated executor.
const JOB: &str = "image = \"busybox\"\nduration_s = 60\n\
    [resources]\ncores = 1\nmemory_mb = 256\n[constraints]\nexecutor = \"sim\"\n";
/// How long the whole exchange may take: connections, the bid deadline, commit and start.
const DEPLOY_WAIT: Duration = Duration::from_secs(20);

/// One node running its driver.
struct Running {
    peer: flotilla_core::PeerId,
    /// Its TCP address with `/p2p/`.
    addr: Multiaddr,
    handle: DriverHandle,
    metrics: Metrics,
    task: tokio::task::JoinHandle<Node>,
}

/// Starts a node that bootstraps from `bootstrap`; a provider onboards two cores and runs
/// jobs on the simulated executor.
async fn run_node(seed: u64, bootstrap: &[&Multiaddr], provider: bool) -> Running {
    let metrics = Metrics::new();
    let limits = flotilla_core::rcmgr::Limits::default();
    let (kp, net) = start_full(
        seed,
        &["/ip4/127.0.0.1/tcp/0"],
        &[],
        limits,
        metrics.clone(),
        &DiscoveryConfig::default(),
    )
    .await;
    let peer = kp.peer_id();
    let addr = with_p2p(&net.listen_addrs()[0], net.local_peer_id());
    let clock = TokioClock::system();
    let mut config = flotilla_core::Config {
        listen_addrs: net.listen_addrs().iter().map(|a| a.to_string()).collect(),
        bootstrap: bootstrap.iter().map(|a| addr::bootstrap_peer(a)).collect(),
        ..flotilla_core::Config::default()
    };
    // Bids are collected for two seconds, keeping the test short.
    config.jobs.deadlines.bids = Duration::from_secs(2);
    if provider {
        config.resources = Resources {
            cores: 2,
            memory_mb: 2048,
            disk_gb: 10,
            gpus: 0,
        };
        config.executors = vec!["sim".to_string()];
        config.jobs.preferences = Preferences::new(1000 * seed, ["sim"]);
    }
    let mut node = Node::new(config, kp, SeedTree::new(seed).child(1), clock.now()).unwrap();
    if provider {
        let capacity = Capacity {
            millicores: 2000,
            memory_mb: 2048,
            disk_gb: 10,
            gpus: 0,
        };
        node.jobs_mut().onboard(capacity).unwrap();
    }
    let observer = MetricsObserver::new(metrics.clone());
    let (driver, handle) = Driver::new(node, net, clock, observer);
    let exec = SimExecConfig {
        start_delay: (Duration::from_millis(50), Duration::from_millis(100)),
        run_time: (Duration::from_secs(30), Duration::from_secs(30)),
        failure_probability: 0.0,
        log_lines: 1,
    };
    let exec = SimExecutor::new(exec, SeedTree::new(seed).child(2)).unwrap();
    let (runner, events) = SimRunner::spawn(exec, clock);
    let driver = driver.with_runner(Box::new(runner), events);
    let task = tokio::spawn(driver.run());
    Running {
        peer,
        addr,
        handle,
        metrics,
        task,
    }
}

/// Polls `check` every 100 ms until it holds or [`DEPLOY_WAIT`] passes.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let waited = tokio::time::timeout(DEPLOY_WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} within {DEPLOY_WAIT:?}");
}

fn metric(m: &Metrics, line: &str) -> bool {
    m.encode().lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_deployment_broadcasts_its_bid_request_to_every_provider() {
    let sp = run_node(41, &[], false).await;
    // A line: the service provider, a provider next to it, a provider behind that one.
    let p1 = run_node(42, &[&sp.addr], true).await;
    let p2 = run_node(43, &[&p1.addr], true).await;
    wait_for("both providers connected to the network", || async {
        let sp_peers = sp.handle.peers().await.unwrap_or_default();
        let p2_peers = p2.handle.peers().await.unwrap_or_default();
        sp_peers
            .iter()
            .any(|p| p.peer_id == p1.peer && p.direction.is_some())
            && p2_peers.iter().any(|p| p.direction.is_some())
    })
    .await;

    let spec = JobSpec::from_toml_str(JOB, Path::new("job.toml")).unwrap();
    let id = sp.handle.deploy(spec, Vec::new()).await.unwrap();

    // Both providers got the request and bid, the one behind the first included.
    for p in [&p1, &p2] {
        wait_for("a bid from each provider", || async {
            p.handle
                .resources()
                .await
                .is_some_and(|r| r.stats.bids_sent == 1)
        })
        .await;
        assert!(
            metric(
                &p.metrics,
                "flotilla_job_broadcasts_total{direction=\"received\"} 1"
            ),
            "{}",
            p.metrics.encode()
        );
    }
    wait_for("the deployment running", || async {
        let views = sp.handle.deployments().await.unwrap_or_default();
        views
            .iter()
            .any(|d| d.id == id && d.state == DeployState::Running)
    })
    .await;
    let views = sp.handle.deployments().await.unwrap();
    let d = views.iter().find(|d| d.id == id).unwrap();
    assert_eq!(d.workers.len(), 1);
    assert!([p1.peer, p2.peer].contains(&d.workers[0].0), "{d:?}");
    let text = sp.metrics.encode();
    assert!(
        metric(
            &sp.metrics,
            "flotilla_job_broadcasts_total{direction=\"published\"} 1"
        ),
        "{text}"
    );
    assert!(
        !text.contains("flotilla_job_broadcasts_dropped_total{"),
        "{text}"
    );

    // Pinned, the request goes to the pinned provider alone, not over gossip.
    let spec = JobSpec::from_toml_str(JOB, Path::new("job.toml")).unwrap();
    sp.handle.deploy(spec, vec![p1.peer]).await.unwrap();
    wait_for("a second bid from the pinned provider", || async {
        p1.handle
            .resources()
            .await
            .is_some_and(|r| r.stats.bids_sent == 2)
    })
    .await;
    assert!(metric(
        &sp.metrics,
        "flotilla_job_broadcasts_total{direction=\"published\"} 1"
    ));
    for r in [sp, p1, p2] {
        r.task.abort();
    }
}

#[tokio::test]
async fn malformed_and_foreign_job_broadcasts_are_dropped() {
    let (_, mut a) = start(44, &["/ip4/127.0.0.1/tcp/0"]).await;
    let metrics_b = Metrics::new();
    let limits = flotilla_core::rcmgr::Limits::default();
    let (kb, mut b) = start_with(45, &["/ip4/127.0.0.1/tcp/0"], limits, metrics_b.clone()).await;
    a.dial(DialId(1), &addr_with(&b, "tcp"), Some(kb.peer_id()));
    // Not a job message: published as raw bytes, counted as malformed by B.
    let wait = tokio::time::timeout(WAIT, async {
        loop {
            let topic = behaviour::jobs_topic();
            let gossip = &mut a.swarm.behaviour_mut().gossipsub;
            if gossip.publish(topic, vec![0xff; 8]).is_ok() {
                break;
            }
            // Subscriptions yield no event: look again now and then.
            tokio::select! {
                Some(_) = a.next_event() => {}
                Some(_) = b.next_event() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let malformed = "flotilla_job_broadcasts_dropped_total{reason=\"malformed\"} 1";
        while !metric(&metrics_b, malformed) {
            tokio::select! {
                Some(_) = a.next_event() => {}
                Some(ev) = b.next_event() => {
                    assert!(!matches!(ev, NetEvent::Broadcast { .. }), "{ev:?}");
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    })
    .await;
    assert!(wait.is_ok(), "{}", metrics_b.encode());
    // A broadcast larger than a core frame is refused before it is published.
    let huge = JobMessage::BidRequest {
        deployment: 1,
        spec: "x".repeat(behaviour::JOB_BROADCAST_BYTES_MAX),
    };
    assert!(matches!(
        a.broadcast(huge),
        Err(BroadcastError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_broadcast_from_an_unconnected_publisher_brings_its_addresses() {
    let metrics = Metrics::new();
    let limits = flotilla_core::rcmgr::Limits::default();
    let (_, mut c) = start_with(46, &["/ip4/127.0.0.1/tcp/0"], limits, metrics.clone()).await;
    let publisher = Keypair::generate(&mut SeedTree::new(47).rng());
    let (pa, lpa) = (
        publisher.peer_id(),
        addr::libp2p_peer(&publisher.peer_id()).unwrap(),
    );
    // The DHT's routing table knows the publisher; the swarm is not connected to it.
    let known: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
    c.swarm.behaviour_mut().kad.add_address(&lpa, known.clone());
    let request = JobMessage::BidRequest {
        deployment: 3,
        spec: JOB.to_string(),
    };
    let gossip = |source: Option<libp2p::PeerId>, data: Vec<u8>| libp2p::gossipsub::Message {
        source,
        data,
        sequence_number: Some(1),
        topic: behaviour::jobs_topic().hash(),
    };
    let relay = libp2p::PeerId::random();
    c.on_job_broadcast(
        relay,
        gossip(Some(lpa), postcard::to_stdvec(&request).unwrap()),
    );
    let events: Vec<NetEvent> = c.pending.drain(..).collect();
    assert!(
        matches!(
            events.as_slice(),
            [
                NetEvent::Discovered { peer, addrs, source: flotilla_core::Source::Dht },
                NetEvent::Broadcast { from, message },
            ] if *peer == pa && *addrs == [known.to_string()] && *from == pa && *message == request
        ),
        "{events:?}"
    );
    // Without a publisher, or undecodable, a message goes nowhere and is counted.
    c.on_job_broadcast(relay, gossip(None, postcard::to_stdvec(&request).unwrap()));
    c.on_job_broadcast(relay, gossip(Some(lpa), vec![0xff; 4]));
    let mut long = postcard::to_stdvec(&request).unwrap();
    long.push(0);
    c.on_job_broadcast(relay, gossip(Some(lpa), long));
    assert!(c.pending.is_empty(), "{:?}", c.pending);
    for line in [
        "flotilla_job_broadcasts_total{direction=\"received\"} 1",
        "flotilla_job_broadcasts_dropped_total{reason=\"unsigned\"} 1",
        "flotilla_job_broadcasts_dropped_total{reason=\"malformed\"} 2",
    ] {
        assert!(metric(&metrics, line), "{line}\n{}", metrics.encode());
    }
}
