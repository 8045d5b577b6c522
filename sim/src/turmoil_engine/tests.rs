//! Turmoil hosts running the production driver: five hand-made hosts connect, exchange
//! hellos and measure RTTs; worlds drawn from scenarios run through [`run`]; a seed
//! reproduces a run exactly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_core::seed::{PURPOSE_KEY, PURPOSE_PROTOCOL};
use flotilla_core::{BootstrapPeer, Config, Event, Keypair, Node, SeedTree, Timestamp};
use flotilla_node::driver::Observer;

use super::*;
use crate::engine::{self, EngineKind};
use crate::scenario::Scenario;
use crate::summary::Summary;

const HOSTS: usize = 5;
const EPOCH_S: u64 = 1_700_000_000;
const RUN: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Observer for Log {
    fn event(&mut self, now: Timestamp, node: &Node, event: &Event) {
        let line = format!("{now:?} {} {event:?}", node.peer_id().short());
        self.0.lock().unwrap().push(line);
    }
}

fn config(i: usize, host0: &Keypair) -> Config {
    let mut config = Config {
        listen_addrs: vec![addr_of(&format!("n{i}"), PORT)],
        low_watermark: 3,
        maintain_interval: Duration::from_secs(2),
        ping_interval: Duration::from_secs(5),
        exchange_interval: Duration::from_secs(10),
        ..Config::default()
    };
    if i != 0 {
        let addr = addr_of("n0", PORT);
        config.bootstrap = vec![BootstrapPeer {
            addr,
            peer_id: Some(host0.peer_id()),
        }];
    }
    config
}

/// Runs the five hosts for [`RUN`]; returns the event log and the nodes by host index.
fn simulate(rng_seed: u64) -> (Vec<String>, BTreeMap<usize, Node>) {
    let seed = SeedTree::new(42);
    let keys: Vec<Keypair> = (0..HOSTS)
        .map(|i| Keypair::generate(&mut seed.child(i as u64).child(PURPOSE_KEY).rng()))
        .collect();
    let epoch = Timestamp::from_secs(EPOCH_S);
    let mut sim = turmoil::Builder::new()
        .rng_seed(rng_seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_S))
        .simulation_duration(RUN + Duration::from_secs(1))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(5))
        .max_message_latency(Duration::from_millis(40))
        .build();
    let log = Log(Arc::new(Mutex::new(Vec::new())));
    let nodes = Arc::new(Mutex::new(BTreeMap::new()));
    for (i, keypair) in keys.iter().enumerate() {
        let spec = HostSpec {
            config: config(i, &keys[0]),
            keypair: keypair.clone(),
            seed: seed.child(i as u64).child(PURPOSE_PROTOCOL),
            clock_ahead: Duration::ZERO,
            end: epoch + RUN,
            port: PORT,
            messages_dropped: Arc::default(),
        };
        let (log, nodes) = (log.clone(), nodes.clone());
        sim.host(format!("n{i}"), move || {
            let (spec, log, nodes) = (spec.clone(), log.clone(), nodes.clone());
            async move {
                let node = run_node(spec, log).await?;
                nodes.lock().unwrap().insert(i, node);
                Ok(())
            }
        });
    }
    while sim.elapsed() <= RUN {
        sim.step().unwrap();
    }
    let log = log.0.lock().unwrap().clone();
    let nodes = std::mem::take(&mut *nodes.lock().unwrap());
    (log, nodes)
}

fn count(log: &[String], kind: &str) -> usize {
    log.iter().filter(|l| l.contains(kind)).count()
}

#[test]
fn five_hosts_connect_hello_and_measure() {
    let (log, nodes) = simulate(1);
    assert_eq!(nodes.len(), HOSTS, "every host returned its node");
    for (i, node) in &nodes {
        let connected = node.connections().count();
        assert!(connected >= 2, "n{i} has {connected} connections");
        assert!(node.connections().all(|c| c.hello), "n{i} got every hello");
        let sampled = node.peer_table().iter().filter(|e| e.rtt.is_some()).count();
        assert!(sampled >= 2, "n{i} has RTT samples for {sampled} peers");
    }
    assert_eq!(
        nodes[&0].connections().count(),
        HOSTS - 1,
        "the bootstrap knows everyone"
    );
    assert!(count(&log, "Hello {") >= 2 * HOSTS);
    assert!(count(&log, "Rtt {") >= 20);
    assert_eq!(count(&log, "DialFailed"), 0);
}

#[test]
fn same_seed_same_log_other_seed_other_log() {
    let (a, _) = simulate(7);
    let (b, _) = simulate(7);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let (c, _) = simulate(8);
    assert_ne!(a, c);
}

/// A scenario of `peers` peers for `duration_s`; bootstrap nodes accept everyone, so that
/// the network forms however many peers start at once.
fn scenario(peers: usize, duration_s: u64) -> Scenario {
    let text = format!(
        "name = \"turmoil-test\"\nduration_s = {duration_s}\n\
         [peers]\ncount = {peers}\nbootstrap = 2\nstart_spread_s = 5\n\
         [node]\nlow_watermark = 4\nhigh_watermark = {peers}\nmaintain_interval_s = 2\n\
         ping_interval_s = 5\nping_timeout_s = 4\nexchange_interval_s = 10\n"
    );
    Scenario::parse(&text, "turmoil-test.toml").unwrap()
}

fn run_scenario(s: &Scenario, seed: u64) -> (crate::World, RunResult) {
    let world = engine::world(s, seed);
    let trace = Trace::new(&world);
    let result = run(&world, trace, world.duration());
    (world, result)
}

#[test]
fn a_world_runs_and_every_peer_connects() {
    let s = scenario(12, 60);
    let (world, result) = run_scenario(&s, 5);
    let text = String::from_utf8(result.trace.text().to_vec()).unwrap();
    assert!(
        text.starts_with("    0.000000 n0 start"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("   60.000000 -- end sent=")
    );
    assert_eq!(text.lines().filter(|l| l.contains(" start ")).count(), 12);
    let times: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let secs: Vec<f64> = times.iter().map(|t| t.parse().unwrap()).collect();
    assert!(
        secs.windows(2).all(|w| w[0] <= w[1]),
        "trace lines are in time order"
    );
    assert!(text.contains(" rtt ") && text.contains(" hello ") && text.contains(" peers "));
    assert!(result.messages_delivered > 0);
    assert!(result.messages_delivered <= result.messages_sent);
    let summary = Summary::from_run(&world, EngineKind::Turmoil, &result);
    assert_eq!(summary.connected_fraction, 1.0, "{summary:?}");
    assert!(summary.degree_min >= 2, "{summary:?}");
    assert!(summary.rtt_samples > 0, "{summary:?}");
    // Measured RTTs follow the model, rounded up to ticks (a few per round trip).
    let slack_ms = 4.0 * TICK.as_secs_f64() * 1000.0;
    let (measured, model) = (
        summary.rtt_neighbour_mean_ms,
        summary.rtt_neighbour_model_mean_ms,
    );
    assert!(
        measured >= model * 0.9 && measured <= model * 1.1 + slack_ms,
        "{summary:?}"
    );
}

#[test]
fn a_world_and_seed_give_a_byte_identical_trace() {
    let s = scenario(8, 30);
    let (_, a) = run_scenario(&s, 9);
    let (_, b) = run_scenario(&s, 9);
    assert_eq!(a.trace.text(), b.trace.text());
    assert_eq!(a.trace.digest(), b.trace.digest());
    let (_, c) = run_scenario(&s, 10);
    assert_ne!(a.trace.digest(), c.trace.digest());
}

/// `cargo test --release -p flotilla-sim --lib hundred_peers -- --ignored --nocapture`
#[test]
#[ignore = "slow: 100 peers for 120 simulated seconds"]
fn hundred_peers_for_two_minutes() {
    let s = scenario(100, 120);
    let t = SystemTime::now();
    let (world, result) = run_scenario(&s, 1);
    let wall = t.elapsed().unwrap();
    let summary = Summary::from_run(&world, EngineKind::Turmoil, &result);
    eprintln!(
        "100 peers x 120 s on turmoil: {:.1} s wall, {} trace lines",
        wall.as_secs_f64(),
        result.trace.lines()
    );
    eprintln!("{summary:?}");
    assert_eq!(summary.connected_fraction, 1.0);
    let fleet = crate::fleet::run(&world, Trace::new(&world), world.duration());
    let fleet = Summary::from_run(&world, EngineKind::Fleet, &fleet);
    eprintln!("fleet: {fleet:?}");
    let ratio = summary.messages_sent as f64 / fleet.messages_sent as f64;
    assert!(
        (0.9..1.1).contains(&ratio),
        "both engines carry about the same traffic"
    );
}

/// `scenarios/<name>` of the repository.
fn shipped(name: &str) -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&path).unwrap()
}

/// A checked run of `s` at `seed` on `engine`: its trace and failure.
fn checked(s: &Scenario, seed: u64, engine: EngineKind) -> (String, Option<crate::check::Failure>) {
    let outcome = crate::runner::run_checked(s, seed, engine, Trace::new).unwrap();
    let text = String::from_utf8(outcome.result.trace.text().to_vec()).unwrap();
    (text, outcome.failure)
}

#[test]
fn partition_heal_converges_on_turmoil() {
    let s = shipped("partition-heal.toml");
    let (trace, failure) = checked(&s, s.seed, EngineKind::Turmoil);
    assert_eq!(failure, None);
    assert!(trace.contains("   40.000000 -- fault #0 partition on both-ways"));
    assert!(trace.contains("  100.000000 -- fault #0 partition off both-ways"));
    assert!(trace.contains(" -- converged after="), "{trace}");
}

#[test]
fn crash_restart_converges_on_turmoil_with_the_fleet_engines_schedule() {
    let s = shipped("crash-restart.toml");
    let (trace, failure) = checked(&s, s.seed, EngineKind::Turmoil);
    assert_eq!(failure, None);
    assert!(trace.contains(" -- converged after="));
    // Crashes drawn from the seed hit the same peers at the same times (to the tick).
    let (fleet, _) = checked(&s, s.seed, EngineKind::Fleet);
    let faults = |t: &str| -> Vec<(f64, String)> {
        t.lines()
            .filter(|l| l.contains(" crash ") || l.contains(" restart ") || l.contains(" fault "))
            .map(|l| {
                let mut words = l.split_whitespace();
                let at: f64 = words.next().unwrap().parse().unwrap();
                (at, words.collect::<Vec<_>>().join(" "))
            })
            .collect()
    };
    let (on_turmoil, on_fleet) = (faults(&trace), faults(&fleet));
    assert_eq!(
        on_turmoil.len(),
        on_fleet.len(),
        "{on_turmoil:?}\n{on_fleet:?}"
    );
    assert!(on_fleet.iter().any(|(_, l)| l.ends_with("crash running")));
    for (f, t) in on_fleet.iter() {
        let tick = TICK.as_secs_f64();
        assert!(
            on_turmoil
                .iter()
                .any(|(at, l)| l == t && *at >= *f && *at < *f + tick + 1e-9),
            "{t} at {f} on fleet, not within a tick on turmoil: {on_turmoil:?}"
        );
    }
    // Restarted nodes start again, fresh.
    let restarted = trace
        .lines()
        .skip_while(|l| !l.ends_with("n0 restart fresh"))
        .find(|l| l.contains(" n0 ") && !l.contains(" restart "))
        .unwrap();
    assert!(restarted.contains(" n0 start "), "{restarted}");
}

#[test]
fn churning_classes_follow_the_fleet_engines_schedule() {
    let text = "name = \"churn\"\nseed = 4\nduration_s = 90\n\
                [peers]\ncount = 12\nbootstrap = 2\nstart_spread_s = 10\n\
                [[classes]]\nname = \"phone\"\nweight = 1\nuptime_s = [10, 30]\ndowntime_s = [5, 10]\n\
                [[classes]]\nname = \"server\"\nweight = 1\n";
    let s = Scenario::parse(text, "churn.toml").unwrap();
    let churn = |engine| -> Vec<(f64, String)> {
        let (trace, failure) = checked(&s, s.seed, engine);
        assert_eq!(failure, None, "{engine}");
        trace
            .lines()
            .filter(|l| l.contains(" crash ") || l.contains(" restart "))
            .map(|l| {
                let mut words = l.split_whitespace();
                let at: f64 = words.next().unwrap().parse().unwrap();
                (at, words.collect::<Vec<_>>().join(" "))
            })
            .collect()
    };
    let (on_fleet, on_turmoil) = (churn(EngineKind::Fleet), churn(EngineKind::Turmoil));
    assert!(on_fleet.len() >= 6, "{on_fleet:?}");
    assert_eq!(
        on_fleet.len(),
        on_turmoil.len(),
        "{on_fleet:?}\n{on_turmoil:?}"
    );
    let tick = TICK.as_secs_f64();
    for ((f, a), (t, b)) in on_fleet.iter().zip(&on_turmoil) {
        assert_eq!(a, b);
        assert!(
            *t >= *f && *t < *f + tick + 1e-9,
            "{a} at {f} on fleet, {t} on turmoil"
        );
    }
    // Start lines name the class on turmoil too.
    let (trace, _) = checked(&s, s.seed, EngineKind::Turmoil);
    assert!(
        trace
            .lines()
            .any(|l| l.contains(" start ") && l.ends_with("class=phone"))
    );
}

#[test]
fn a_run_with_faults_repeats_byte_for_byte() {
    let s = shipped("crash-restart.toml");
    let (a, _) = checked(&s, 7, EngineKind::Turmoil);
    let (b, _) = checked(&s, 7, EngineKind::Turmoil);
    assert!(a == b, "seed 7 gave two different traces on turmoil");
    assert!(a.contains(" crash running") && a.contains(" -- fault #2 loss on"));
}

#[test]
fn a_node_crashed_before_its_start_starts_at_its_restart_as_on_fleet() {
    let text = "name = \"x\"\nseed = 3\nduration_s = 40\n\
                [peers]\ncount = 10\nbootstrap = 1\nstart_spread_s = 30\n\
                [[faults]]\nkind = \"crash\"\nnodes = [5]\nat_s = 1\nrestart_after_s = 10\n\
                [[faults]]\nkind = \"crash\"\nnodes = [7]\nat_s = 1\n";
    let s = Scenario::parse(text, "x.toml").unwrap();
    let lines = |engine| -> Vec<String> {
        let (trace, failure) = checked(&s, s.seed, engine);
        assert_eq!(failure, None);
        trace
            .lines()
            .filter(|l| l.contains(" n5 ") || l.contains(" n7 "))
            .filter(|l| l.contains(" crash ") || l.contains(" restart ") || l.contains(" start "))
            .map(str::to_string)
            .collect()
    };
    let expected = [
        "    1.000000 n5 crash not-started",
        "    1.000000 n7 crash not-started",
        "   11.000000 n5 restart fresh",
    ];
    for engine in [EngineKind::Fleet, EngineKind::Turmoil] {
        let got = lines(engine);
        assert_eq!(got[..3], expected, "{engine}: {got:?}");
        assert!(
            got[3].starts_with("   11.000000 n5 start "),
            "{engine}: {got:?}"
        );
        assert_eq!(got.len(), 4, "n7 never starts on {engine}: {got:?}");
    }
}

#[test]
fn a_total_loss_burst_drops_what_is_sent_meanwhile() {
    let mut s = scenario(6, 40);
    let text = "name = \"x\"\nduration_s = 40\n[peers]\ncount = 6\n\
                [[faults]]\nkind = \"loss\"\nprobability = 1.0\nat_s = 20\nuntil_s = 30\n";
    s.faults = Scenario::parse(text, "x.toml").unwrap().faults;
    let (trace, failure) = checked(&s, 3, EngineKind::Turmoil);
    assert_eq!(failure, None);
    let end = trace.lines().last().unwrap();
    let dropped: u64 = end
        .split_whitespace()
        .find_map(|w| w.strip_prefix("dropped="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0, "{end}");
    // Nothing arrives in the burst's second half (what was on the wire has landed).
    let received_late = trace.lines().any(|l| {
        let at: f64 = l.split_whitespace().next().unwrap().parse().unwrap();
        (25.0..30.0).contains(&at) && (l.contains(" hello ") || l.contains(" rtt "))
    });
    assert!(!received_late, "{trace}");
}

#[test]
fn a_one_way_partition_cuts_one_direction_only() {
    // n0 cannot reach anyone, but hears everyone: its pings go unanswered.
    let mut s = scenario(6, 60);
    let text = "name = \"x\"\nduration_s = 60\n[peers]\ncount = 6\n\
                [[faults]]\nkind = \"partition\"\nnodes_a = [0]\none_way = true\nat_s = 20\n";
    s.faults = Scenario::parse(text, "x.toml").unwrap().faults;
    let (trace, failure) = checked(&s, 3, EngineKind::Turmoil);
    assert_eq!(failure, None);
    assert!(trace.contains("   20.000000 -- fault #0 partition on one-way"));
    let after = |who: &str, kind: &str| {
        trace.lines().any(|l| {
            let at: f64 = l.split_whitespace().next().unwrap().parse().unwrap();
            at > 21.0 && l.contains(&format!(" {who} {kind} "))
        })
    };
    assert!(!after("n0", "rtt"), "n0 measured an RTT across the cut");
    assert!(after("n0", "ping-timeout") || after("n0", "conn-"));
}

#[test]
fn a_clock_skew_moves_the_nodes_clock_not_the_trace() {
    let mut s = scenario(4, 30);
    let text = "name = \"x\"\nduration_s = 30\n[peers]\ncount = 4\n\
                [[faults]]\nkind = \"clock_skew\"\nnodes = [1]\noffset_ms = 60000\nat_s = 0\n";
    s.faults = Scenario::parse(text, "x.toml").unwrap().faults;
    let world = engine::world(&s, 2);
    let (result, failure) = run_with(
        &world,
        Trace::new(&world),
        world.duration(),
        plan(&s, TICK),
        TICK,
    );
    assert_eq!(failure, None);
    let epoch = crate::World::epoch();
    let started = |i: usize| result.nodes[i].status(epoch).started_at;
    // n1's clock runs a minute ahead from the start; n0's does not.
    assert!(started(1) >= epoch + Duration::from_secs(60));
    assert!(started(0) < epoch + Duration::from_secs(10));
    // The trace keeps simulated time: n1 starts within the start spread.
    let text = String::from_utf8(result.trace.text().to_vec()).unwrap();
    let line = text.lines().find(|l| l.contains(" n1 start ")).unwrap();
    let at: f64 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(at < 10.0, "{line}");
}

/// The tick's trade-off between cost and RTT resolution, on the quickstart network cut to
/// 200 peers and 60 s with a 60 s start spread (the figures in the module doc):
/// `cargo test --release -p flotilla-sim --lib tick_trade_off -- --ignored --nocapture`
#[test]
#[ignore = "slow: three runs of 200 peers for 60 simulated seconds"]
fn tick_trade_off() {
    let mut s = shipped("quickstart.toml");
    s.peers.start_spread = Duration::from_secs(60);
    let overrides = crate::overrides::Overrides {
        peers: Some(200),
        duration_s: Some(60.0),
    };
    overrides.apply(&mut s).unwrap();
    let world = engine::world(&s, s.seed);
    for ms in [5, 10, 20] {
        let tick = Duration::from_millis(ms);
        let t = SystemTime::now();
        let result = run_with_tick(&world, Trace::new(&world), world.duration(), tick);
        let wall = t.elapsed().unwrap();
        let summary = Summary::from_run(&world, EngineKind::Turmoil, &result);
        eprintln!(
            "tick {ms} ms: {:.1} s wall; rtt measured {:.1} ms, model {:.1} ms ({} samples); \
             degree mean {:.2}; {} messages",
            wall.as_secs_f64(),
            summary.rtt_neighbour_mean_ms,
            summary.rtt_neighbour_model_mean_ms,
            summary.rtt_samples,
            summary.degree_mean,
            summary.messages_sent
        );
    }
}

/// Ten peers, seven compute providers and two service providers deploying every 10 s, with
/// a provider and a service provider crashing while jobs run and restarting later.
const JOBS: &str = "name = \"jobs\"\nseed = 2\nduration_s = 90\n\
                    [peers]\ncount = 10\nbootstrap = 1\nstart_spread_s = 5\n\
                    [jobs]\nproviders_count = 7\ncores = 2\nmemory_mb = 2048\n\
                    service_providers = 2\nstart_delay_s = [0.5, 1]\nrun_time_s = [5, 15]\n\
                    log_lines = 1\ndeploy_at_s = 10\ndeploy_until_s = 50\ndeploy_every_s = 10\n\
                    [[jobs.templates]]\ncores = 1\nmemory_mb = 256\nduration_s = 30\n";

#[test]
fn jobs_run_through_crashes_and_repeat_byte_for_byte() {
    let mut s = Scenario::parse(JOBS, "jobs.toml").unwrap();
    let world = engine::world(&s, s.seed);
    let role = |want: fn(&crate::world::JobRole) -> bool| {
        world
            .peers()
            .iter()
            .find(|p| want(&p.job_role))
            .map(|p| p.index)
            .unwrap()
    };
    let provider = role(|r| matches!(r, crate::world::JobRole::Provider { .. }));
    let sp = role(|r| matches!(r, crate::world::JobRole::ServiceProvider { ordinal: 0 }));
    let faults = format!(
        "name = \"x\"\nduration_s = 90\n[peers]\ncount = 10\n\
         [[faults]]\nkind = \"crash\"\nnodes = [{provider}, {sp}]\nat_s = 32\nrestart_after_s = 10\n"
    );
    s.faults = Scenario::parse(&faults, "x.toml").unwrap().faults;
    let run = |engine| crate::runner::run_checked(&s, s.seed, engine, Trace::new).unwrap();
    let a = run(EngineKind::Turmoil);
    assert_eq!(a.failure, None);
    let j = a.summary.jobs.clone().expect("a jobs summary");
    let text = String::from_utf8_lossy(a.result.trace.text()).into_owned();
    assert!(text.contains(&format!(" n{sp} crash running")), "{text}");
    assert!(
        text.contains(&format!(" n{provider} crash running")),
        "{text}"
    );
    assert!(text.contains(" deployment #1 running"), "{text}");
    assert!(text.contains(" allocation a1 "), "{text}");
    let completed = j.by_state.get("completed").copied().unwrap_or(0);
    assert!(completed >= 3 && j.log_lines > 0, "{j:?}");
    // The first service provider misses its round at 40 s (down from 32 s to 42 s): three
    // rounds, the second four, as on the fleet engine.
    let fleet = run(EngineKind::Fleet);
    assert_eq!(fleet.failure, None);
    let f = fleet.summary.jobs.expect("a jobs summary");
    assert_eq!(j.deployments_asked + j.deploy_errors, 7, "{j:?}");
    assert_eq!(f.deployments_asked + f.deploy_errors, 7, "{f:?}");
    let b = run(EngineKind::Turmoil);
    assert_eq!(a.result.trace.text(), b.result.trace.text());
    assert_eq!(a.summary.to_json(), b.summary.to_json());
}
