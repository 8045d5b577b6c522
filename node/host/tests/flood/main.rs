//! One real `flotilla` node on loopback under a connection and stream flood.
//!
//! The node runs with deliberately small resource limits. For at least [`FLOOD_MIN`], fresh
//! peers dial it (at least 1000 handshakes, 64 in flight, plus bare TCP connections that
//! never start theirs) while 16 held connections open streams (at least 10,000 of the core
//! protocol, plus some of its other protocols) that stay idle or carry bad frames. An honest
//! peer, connected before, pings it twenty times a second throughout. The node must stay up,
//! answer at least 99% of the honest pings sent during the flood, answer its HTTP API
//! throughout, keep its peak resident memory (VmHWM) under [`RSS_BOUND_MIB`], count
//! refusals, and never let a scope hold more than its limit (sampled from `/metrics` and
//! `/rcmgr/scopes` during the flood). `just flood` runs it and shows the figures it prints.

mod attack;
mod honest;
mod node;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::ensure;
use tokio::task::spawn_blocking;

use self::attack::{ConnCounts, StreamAttackers, StreamCounts, connection_flood};
use self::honest::{Honest, PONG_TIMEOUT, Phase};
use self::node::{ApiProber, NodeProc, ProbeReport, RssSampler, samples};

/// The flood goes on at least this long, however fast the node refuses, so that the honest
/// client's success rate covers a sustained attack.
const FLOOD_MIN: Duration = Duration::from_secs(15);
/// Inbound connection attempts at least, each from its own key.
const CONN_ATTEMPTS: usize = 1000;
/// Connection attempts in flight at once.
const CONN_IN_FLIGHT: usize = 64;
/// Peers that hold a connection and flood it with streams.
const STREAM_PEERS: usize = 16;
/// Core-protocol stream attempts per stream peer at least (16 x 640 = 10,240).
const CORE_STREAMS_PER_PEER: usize = 640;
/// Stream attempts in flight at once per stream peer.
const STREAMS_IN_FLIGHT: usize = 32;
/// The bound on the node's peak resident memory (VmHWM).
const RSS_BOUND_MIB: u64 = 256;
/// Honest pings that must be sent during the flood for its success rate to mean something.
const HONEST_PINGS_MIN: u64 = 100;

/// The node's configuration: small limits, so that the flood meets them. Two core streams
/// per peer let the honest client keep its one while each attacker is held to two, and the
/// system's 256 streams are more than all peers can hold together; the connection limits
/// are what the connection flood fills. The core keeps up to 48 peers (the honest client,
/// the stream attackers and the connection flood's first comers) and pings them every 2 s.
const CONFIG: &str = r#"
region = "flood"

[peers]
ping_interval_s = 2
high_watermark = 48

[limits.system]
conns_in = 64
streams_in = 256

[limits.transient]
conns_in = 32
streams_in = 64

[limits.peer]
conns_in = 2
streams_in = 2
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_survives_a_connection_and_stream_flood() -> anyhow::Result<()> {
    let mut node = spawn_blocking(|| NodeProc::start(CONFIG)).await??;
    let (pid, api, peer, target) = (node.pid(), node.api.clone(), node.peer_id, node.tcp.clone());
    let a = api.clone();
    spawn_blocking(move || node::wait_api(&node::agent(), &a)).await??;
    let rss_start_kib = node::proc_kib(pid, "VmRSS")?;

    let honest = Honest::connect(peer, target.clone()).await?;
    honest.wait_answered(Phase::Before).await?;

    let attackers = StreamAttackers::connect(peer, target.clone(), STREAM_PEERS).await?;

    let rss = RssSampler::start(pid);
    let prober = ApiProber::start(api.clone());
    honest.set_phase(Phase::During);
    let started = Instant::now();
    let until = tokio::time::Instant::now() + FLOOD_MIN;
    let conns = tokio::spawn(connection_flood(
        target.clone(),
        CONN_ATTEMPTS,
        CONN_IN_FLIGHT,
        until,
    ));
    let streams = tokio::spawn(attackers.flood(CORE_STREAMS_PER_PEER, STREAMS_IN_FLIGHT, until));
    let (conns, streams) = (conns.await?, streams.await?);
    let flood = started.elapsed();
    honest.set_phase(Phase::After);
    // Every ping sent during the flood is settled by now, and some after it too.
    tokio::time::sleep(PONG_TIMEOUT + Duration::from_secs(1)).await;
    let probe = spawn_blocking(move || prober.finish()).await??;
    let (rss_max_kib, rss_samples) = rss.finish();
    let hwm_kib = node::proc_kib(pid, "VmHWM")?;
    let rss_end_kib = node::proc_kib(pid, "VmRSS")?;
    let a = api.clone();
    let (after, text) = spawn_blocking(move || {
        let agent = node::agent();
        (node::status(&agent, &a), node::metrics(&agent, &a))
    })
    .await?;
    let alive = node.alive();

    print_figures(&conns, &streams, flood, &honest, &probe);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "memory: VmRSS {:.1} MiB before the flood, at most {:.1} MiB during it ({rss_samples} samples), \
         VmHWM {:.1} MiB (bound {RSS_BOUND_MIB} MiB), VmRSS {:.1} MiB after it",
        mib(rss_start_kib),
        mib(rss_max_kib),
        mib(hwm_kib),
        mib(rss_end_kib),
    );
    if let Ok(s) = &after {
        println!("after the flood: {} connected peers", s.connected);
    }
    let text = text?;
    let refusals = print_rcmgr(&text, &probe);

    ensure!(
        alive,
        "the node died; last log lines:\n{}",
        node.log_tail(40)
    );
    ensure!(
        after.is_ok(),
        "/status failed after the flood: {after:?}\n{}",
        node.log_tail(40)
    );
    let connected = after.as_ref().map_or(0, |s| s.connected);
    ensure!(
        connected == 1,
        "{connected} peers connected after the flood: the honest client alone should be"
    );
    let attempts = conns.attempts.load(Ordering::Relaxed);
    ensure!(
        attempts >= CONN_ATTEMPTS as u64,
        "only {attempts} connection attempts"
    );
    let settled = conns.established.load(Ordering::Relaxed)
        + conns.refused.load(Ordering::Relaxed)
        + conns.failed.load(Ordering::Relaxed);
    ensure!(
        settled == attempts,
        "{settled} of {attempts} attempts settled"
    );
    let core = streams.core_attempts.load(Ordering::Relaxed);
    ensure!(core >= 10_000, "only {core} core stream attempts");
    let (ok, failed) = honest.stats.counts(Phase::During);
    ensure!(
        ok + failed >= HONEST_PINGS_MIN,
        "the honest client sent only {} pings during the flood",
        ok + failed
    );
    ensure!(
        ok * 100 >= (ok + failed) * 99,
        "the node answered only {ok} of {} honest pings during the flood",
        ok + failed
    );
    ensure!(
        honest.stats.counts(Phase::After).0 >= 1,
        "the node answered no honest ping after the flood"
    );
    ensure!(
        probe.status_failed == 0 && probe.status_ok >= 1,
        "/status answered {} times and failed {} times during the flood (first error: {:?})",
        probe.status_ok,
        probe.status_failed,
        probe.first_error
    );
    ensure!(
        hwm_kib <= RSS_BOUND_MIB * 1024,
        "peak RSS {:.1} MiB above the bound of {RSS_BOUND_MIB} MiB",
        mib(hwm_kib)
    );
    ensure!(
        probe.metrics_samples >= 1,
        "/metrics never answered during the flood"
    );
    ensure!(
        probe.scopes_samples >= 1 && !probe.peer_max.is_empty(),
        "/rcmgr/scopes never listed a peer during the flood"
    );
    ensure!(
        !probe.usage_max.is_empty(),
        "/metrics has no flotilla_rcmgr_usage gauges"
    );
    ensure!(
        probe.over_limit.is_empty(),
        "usage above its limit: {:?}",
        probe.over_limit
    );
    ensure!(refusals > 0.0, "the resource manager counted no refusal");
    Ok(())
}

fn print_figures(
    conns: &ConnCounts,
    streams: &StreamCounts,
    flood: Duration,
    honest: &Honest,
    probe: &ProbeReport,
) {
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "connections: {} attempts ({CONN_IN_FLIGHT} in flight): {} established and held, {} refused \
         ({} of them closed by the node after the handshake), {} failed (first: {}); \
         {} stalled handshakes, {} of them closed by the node",
        n(&conns.attempts),
        n(&conns.established),
        n(&conns.refused),
        n(&conns.closed_after_handshake),
        n(&conns.failed),
        conns
            .first_failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "none".into()),
        n(&conns.stalled),
        n(&conns.stalled_closed),
    );
    println!(
        "streams: {} core + {} other-protocol attempts ({STREAM_PEERS} peers, {STREAMS_IN_FLIGHT} in \
         flight each): {} opened ({} then refused with a notice {:?}, {} closed or reset without \
         one, {} held until let go), {} refused while opening, {} failed; {} reconnects",
        n(&streams.core_attempts),
        n(&streams.other_attempts),
        n(&streams.opened),
        n(&streams.notices),
        streams
            .notice_reasons
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default(),
        n(&streams.reset),
        n(&streams.held),
        n(&streams.refused),
        n(&streams.failed),
        n(&streams.reconnects),
    );
    println!("flood: {:.1} s", flood.as_secs_f64());
    let line = |phase| {
        let (ok, failed) = honest.stats.counts(phase);
        let pct = if ok + failed == 0 {
            0.0
        } else {
            100.0 * ok as f64 / (ok + failed) as f64
        };
        format!("{ok}/{} ({pct:.1}%)", ok + failed)
    };
    println!(
        "honest pings answered: before {}, during {}, after {}; node pings answered {}, disconnects {}",
        line(Phase::Before),
        line(Phase::During),
        line(Phase::After),
        n(&honest.stats.pings_answered),
        n(&honest.stats.disconnects),
    );
    println!(
        "api during the flood and after it: /status {} answered, {} failed; /metrics sampled {} times",
        probe.status_ok, probe.status_failed, probe.metrics_samples
    );
}

/// Prints refusals and the largest usage against its limit of the system, the transient
/// scope and any one peer; returns the total of refusals.
fn print_rcmgr(text: &str, probe: &ProbeReport) -> f64 {
    let mut total = 0.0;
    for (labels, value) in samples(text, "flotilla_rcmgr_refusals_total") {
        total += value;
        if value > 0.0 {
            let get = |k: &str| labels.get(k).map_or("?", String::as_str);
            println!(
                "rcmgr refusals: {} {} {}: {value}",
                get("scope"),
                get("resource"),
                get("direction")
            );
        }
    }
    let limits = samples(text, "flotilla_rcmgr_limit");
    let limit_of = |scope: &str, resource: &str| {
        limits
            .iter()
            .find(|(l, _)| {
                l.get("scope").is_some_and(|s| s == scope)
                    && l.get("resource").is_some_and(|r| r == resource)
            })
            .map_or("unlimited".to_string(), |(_, v)| v.to_string())
    };
    for scope in ["system", "transient"] {
        let line: Vec<String> = probe
            .usage_max
            .iter()
            .filter(|((s, _), _)| s == scope)
            .map(|((_, r), used)| format!("{r} {used}/{}", limit_of(scope, r)))
            .collect();
        println!("rcmgr {scope} usage max/limit: {}", line.join(", "));
    }
    let line: Vec<String> = probe
        .peer_max
        .iter()
        .map(|(r, (used, limit))| {
            let limit = limit.map_or("unlimited".to_string(), |l| l.to_string());
            format!("{r} {used}/{limit}")
        })
        .collect();
    println!("rcmgr one peer's usage max/limit: {}", line.join(", "));
    println!(
        "rcmgr: {} peers with a scope at most; /rcmgr/scopes sampled {} times",
        probe.high_watermark, probe.scopes_samples
    );
    println!("rcmgr refusals total: {total}");
    total
}
