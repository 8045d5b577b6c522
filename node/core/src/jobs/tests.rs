use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::seed::SeedTree;
use crate::simexec::{SimExecConfig, SimExecutor};

const MACHINE: Capacity = Capacity {
    millicores: 4000,
    memory_mb: 4096,
    disk_gb: 20,
    gpus: 0,
};

fn spec(text: &str) -> JobSpec {
    JobSpec::from_toml_str(text, Path::new("job.toml")).unwrap()
}

fn small_job(workers: u32) -> JobSpec {
    spec(&format!(
        "image = \"busybox\"\nduration_s = 600\nworkers = {workers}\n\
         [resources]\ncores = 1\nmemory_mb = 256\n"
    ))
}

/// A little network of job machines: node 0 is the requester, the others providers with
/// simulated executors. Messages are delivered in order, instantly; time advances only
/// through `run_until`.
struct Net {
    nodes: Vec<Jobs>,
    execs: Vec<SimExecutor>,
    ids: Vec<PeerId>,
    now: Timestamp,
    events: Vec<(usize, JobEvent)>,
    /// Node indexes whose messages are dropped.
    mute: BTreeSet<usize>,
    /// The RTT between two nodes, as their latency tables would report it.
    rtt: fn(usize, usize) -> Duration,
}

impl Net {
    fn new(providers: usize, configure: impl Fn(usize, &mut JobsConfig)) -> Net {
        let mut nodes = Vec::new();
        let mut execs = Vec::new();
        let mut ids = Vec::new();
        for i in 0..=providers {
            let key = Keypair::from_secret([u8::try_from(i).unwrap() + 1; 32]);
            ids.push(key.peer_id());
            let mut config = JobsConfig::default();
            if i > 0 {
                config.preferences = Preferences::new(1000 * u64::try_from(i).unwrap(), ["sim"]);
            }
            configure(i, &mut config);
            let mut jobs = Jobs::new(key, config, MACHINE);
            jobs.onboard(MACHINE).unwrap();
            nodes.push(jobs);
            let exec = SimExecConfig {
                start_delay: (Duration::from_millis(100), Duration::from_millis(500)),
                run_time: (Duration::from_secs(5), Duration::from_secs(20)),
                failure_probability: 0.0,
                log_lines: 3,
            };
            execs.push(SimExecutor::new(exec, SeedTree::new(7).child(i as u64)).unwrap());
        }
        Net {
            nodes,
            execs,
            ids,
            now: Timestamp::from_micros(1_000_000),
            events: Vec::new(),
            mute: BTreeSet::new(),
            rtt: |_, _| Duration::from_millis(10),
        }
    }

    fn index(&self, p: &PeerId) -> usize {
        self.ids.iter().position(|q| q == p).unwrap()
    }

    /// Delivers everything queued until quiet.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(cmd) = self.nodes[i].poll_exec() {
                    moved = true;
                    match cmd {
                        ExecCommand::Start { id, limit, .. } => {
                            self.execs[i].start(self.now, id, limit).unwrap()
                        }
                        ExecCommand::Stop { id } => self.execs[i].stop(self.now, id).unwrap(),
                    }
                }
                while let Some(e) = self.execs[i].poll_event() {
                    moved = true;
                    self.nodes[i].handle_exec(self.now, e);
                }
                while let Some((to, msg)) = self.nodes[i].poll_transmit() {
                    moved = true;
                    if self.mute.contains(&i) {
                        continue;
                    }
                    let j = self.index(&to);
                    let from = self.ids[i];
                    self.nodes[j].handle_message(self.now, from, msg, &BTreeMap::new());
                }
                while let Some((id, to, peers)) = self.nodes[i].poll_rtt_query() {
                    moved = true;
                    let j = self.index(&to);
                    if self.mute.contains(&j) {
                        continue;
                    }
                    let table = peers
                        .iter()
                        .map(|p| (*p, (self.rtt)(j, self.index(p))))
                        .collect();
                    self.nodes[i].handle_rtt_report(self.now, id, to, table);
                }
                while let Some(msg) = self.nodes[i].poll_broadcast() {
                    moved = true;
                    let from = self.ids[i];
                    for j in (0..self.nodes.len()).filter(|j| *j != i) {
                        assert!(self.nodes[j].handle_broadcast(from, msg.clone()));
                    }
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    moved = true;
                    self.events.push((i, e));
                }
                self.nodes[i].check_invariant().unwrap();
            }
            if !moved {
                break;
            }
        }
    }

    fn run_until(&mut self, end: Timestamp) {
        self.pump();
        loop {
            let next = (0..self.nodes.len())
                .flat_map(|i| [self.nodes[i].poll_timeout(), self.execs[i].poll_timeout()])
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            for i in 0..self.nodes.len() {
                self.execs[i].handle_timeout(self.now);
                self.nodes[i].handle_timeout(self.now, &BTreeMap::new());
            }
            self.pump();
        }
        self.now = end;
    }

    fn deploy(&mut self, spec: JobSpec) -> u64 {
        let peers = self.ids[1..].to_vec();
        let id = self.nodes[0].deploy(self.now, spec, &[], &peers).unwrap();
        self.pump();
        id
    }

    fn states(&self, id: u64) -> Vec<DeployState> {
        self.nodes[0]
            .deployment(id)
            .unwrap()
            .transitions
            .iter()
            .map(|t| t.1)
            .collect()
    }

    fn later(&self, s: u64) -> Timestamp {
        self.now + Duration::from_secs(s)
    }
}

#[test]
fn a_job_runs_on_the_cheapest_provider_and_its_capacity_comes_back() {
    let mut net = Net::new(3, |_, _| {});
    let id = net.deploy(small_job(1));
    let end = net.later(120);
    net.run_until(end);
    assert_eq!(
        net.states(id),
        [
            DeployState::Preparing,
            DeployState::Committing,
            DeployState::Provisioning,
            DeployState::Running,
            DeployState::Completed
        ]
    );
    let view = net.nodes[0].deployment(id).unwrap();
    // Provider 1 asks the lowest price.
    assert_eq!(view.workers, vec![(net.ids[1], "done".to_string())]);
    let logs = net.nodes[0].logs(id, 0).unwrap();
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert!(logs.iter().all(|l| l.peer == net.ids[1]));
    for n in &net.nodes[1..] {
        assert_eq!(n.allocations().ledger().available(), MACHINE);
    }
    assert_eq!(net.nodes[1].stats().commits_accepted, 1);
    assert_eq!(net.nodes[2].stats().bids_sent, 1);
}

#[test]
fn requesters_outside_the_policy_are_refused_and_counted() {
    let mut net = Net::new(1, |i, c| {
        if i == 1 {
            c.requesters = RequesterPolicy::Only(BTreeSet::new());
        }
    });
    let id = net.deploy(small_job(1));
    let end = net.later(30);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Failed);
    assert!(view.reason.unwrap().contains("0 bids for 1 workers"));
    assert_eq!(net.nodes[1].stats().refused_requesters, 1);
    // A commit sent anyway is refused with the policy named.
    let me = net.ids[0];
    net.nodes[1].handle_message(
        net.now,
        me,
        JobMessage::Commit {
            deployment: 9,
            spec: toml::to_string(&small_job(1)).unwrap(),
        },
        &BTreeMap::new(),
    );
    let (_, answer) = net.nodes[1].poll_transmit().unwrap();
    let JobMessage::CommitAnswer {
        result: Err(why), ..
    } = answer
    else {
        panic!("{answer:?}")
    };
    assert!(why.contains("jobs.requesters"), "{why}");
    assert_eq!(net.nodes[1].stats().refused_requesters, 2);
}

#[test]
fn a_second_commit_for_the_same_request_and_an_invalid_spec_get_clear_replies() {
    let mut net = Net::new(1, |_, _| {});
    let me = net.ids[0];
    let text = toml::to_string(&small_job(1)).unwrap();
    let cp = &mut net.nodes[1];
    let answer = |cp: &mut Jobs, deployment: u64, spec: &str| {
        cp.handle_message(
            Timestamp::from_micros(0),
            me,
            JobMessage::Commit {
                deployment,
                spec: spec.to_string(),
            },
            &BTreeMap::new(),
        );
        while let Some((_, m)) = cp.poll_transmit() {
            if let JobMessage::CommitAnswer { result, .. } = m {
                return result;
            }
        }
        panic!("no answer")
    };
    assert_eq!(answer(cp, 1, &text), Ok(()));
    let again = answer(cp, 1, &text).unwrap_err();
    assert!(again.contains("one job per request"), "{again}");
    let bad = answer(
        cp,
        2,
        "image = \"\"\nduration_s = 5\n[resources]\ncores = 1\nmemory_mb = 1\n",
    )
    .unwrap_err();
    assert!(bad.contains("image: must not be empty"), "{bad}");
    let huge = text.replace("cores = 1", "cores = 64");
    let short = answer(cp, 3, &huge).unwrap_err();
    assert!(short.contains("not enough capacity"), "{short}");
    cp.check_invariant().unwrap();
}

#[test]
fn a_refused_commit_reverts_the_accepted_ones() {
    // Two workers wanted; provider 2 bids but its start queue takes nothing.
    let mut net = Net::new(2, |i, c| {
        if i == 2 {
            c.queue_max = 0;
        }
    });
    let id = net.deploy(small_job(2));
    let end = net.later(30);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Failed);
    assert!(
        view.reason.as_deref().unwrap().contains("queue full"),
        "{view:?}"
    );
    // Provider 1 accepted, then was reverted: everything is back.
    assert_eq!(net.nodes[1].stats().commits_accepted, 1);
    assert_eq!(net.nodes[1].allocations().ledger().available(), MACHINE);
    let stopped = net.events.iter().any(|(i, e)| {
        *i == 1
            && matches!(e, JobEvent::Allocation { state: AllocState::Stopped, reason, .. }
                if reason.contains("reverted"))
    });
    assert!(stopped, "{:?}", net.events);
}

#[test]
fn a_commit_never_started_expires_and_frees_the_provider() {
    // A commit that is accepted but never started (its requester went silent).
    let mut net = Net::new(1, |_, _| {});
    let me = net.ids[0];
    net.nodes[1].handle_message(
        net.now,
        me,
        JobMessage::Commit {
            deployment: 1,
            spec: toml::to_string(&small_job(1)).unwrap(),
        },
        &BTreeMap::new(),
    );
    assert!(net.nodes[1].allocations().ledger().available() != MACHINE);
    net.mute.insert(1);
    let end = net.later(60);
    net.run_until(end);
    assert_eq!(net.nodes[1].allocations().ledger().available(), MACHINE);
    let expired = net.events.iter().any(|(i, e)| {
        *i == 1
            && matches!(
                e,
                JobEvent::Allocation {
                    state: AllocState::Failed,
                    ..
                }
            )
    });
    assert!(expired, "{:?}", net.events);
}

#[test]
fn a_shutdown_stops_the_workers_and_completes() {
    let mut net = Net::new(2, |_, _| {});
    let mut job = small_job(2);
    job.duration_s = 3600;
    let id = net.deploy(job);
    // Two bids for two workers: chosen at the bid deadline (5 s), then started.
    let end = net.later(8);
    net.run_until(end);
    assert_eq!(
        net.nodes[0].deployment(id).unwrap().state,
        DeployState::Running
    );
    net.nodes[0].shutdown(net.now, id).unwrap();
    let end = net.later(10);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Completed, "{view:?}");
    assert_eq!(view.reason.as_deref(), Some("shut down"));
    for n in &net.nodes[1..] {
        assert_eq!(n.allocations().ledger().available(), MACHINE);
    }
}

#[test]
fn forged_bids_are_dropped() {
    let mut net = Net::new(1, |_, _| {});
    let id = net.nodes[0]
        .deploy(net.now, small_job(1), &[], &[net.ids[1]])
        .unwrap();
    while net.nodes[0].poll_transmit().is_some() {}
    // Provider 1's bid signed for another requester does not count.
    let other = PeerId::from_public_key([9; 32]);
    let key = Keypair::from_secret([2; 32]);
    let bid = SignedBid::sign(&key, &other, id, 1);
    let from = net.ids[1];
    net.nodes[0].handle_message(net.now, from, JobMessage::Bid(bid), &BTreeMap::new());
    assert_eq!(net.nodes[0].stats().bids_forged, 1);
    let bid = SignedBid::sign(&key, &net.ids[0], id, 1);
    net.nodes[0].handle_message(net.now, from, JobMessage::Bid(bid), &BTreeMap::new());
    assert_eq!(net.nodes[0].stats().bids_forged, 1);
}

#[test]
fn a_broadcast_bid_request_reaches_every_provider_and_waits_for_the_deadline() {
    let mut net = Net::new(3, |_, _| {});
    let id = net.nodes[0].deploy_broadcast(net.now, small_job(1));
    net.pump();
    // Three bids for one worker are enough to choose at once.
    assert_eq!(
        net.states(id),
        [
            DeployState::Preparing,
            DeployState::Committing,
            DeployState::Provisioning
        ]
    );
    for n in &net.nodes[1..] {
        assert_eq!(n.stats().bids_sent, 1);
    }
    let end = net.later(120);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Completed);
    assert_eq!(view.workers, vec![(net.ids[1], "done".to_string())]);
    // Two workers want six bids: with three providers the choice waits for the deadline.
    let second = net.nodes[0].deploy_broadcast(net.now, small_job(2));
    net.pump();
    assert_eq!(net.states(second), [DeployState::Preparing]);
    let end = net.later(6);
    net.run_until(end);
    assert!(net.states(second).contains(&DeployState::Committing));
    // Only bid requests are taken from a broadcast.
    let commit = JobMessage::Commit {
        deployment: 9,
        spec: String::new(),
    };
    let from = net.ids[0];
    assert!(!net.nodes[1].handle_broadcast(from, commit));
}

impl Net {
    /// Node 0 restarts: a fresh machine with the same key takes back its deployments as
    /// they were (state, since, created, workers), as the host does from its store.
    fn restart_requester(&mut self) {
        let views = self.nodes[0].deployments();
        let key = Keypair::from_secret([1; 32]);
        let mut fresh = Jobs::new(key, JobsConfig::default(), MACHINE);
        for v in views {
            let spec = self.nodes[0].deployment_spec(v.id).unwrap().clone();
            let workers: Vec<PeerId> = v.workers.iter().map(|w| w.0).collect();
            fresh.restore_deployment(self.now, v.id, spec, v.state, v.since, v.created, &workers);
        }
        self.nodes[0] = fresh;
    }

    /// Every message to or from `i` is lost.
    fn isolate(&mut self, i: usize, on: bool) {
        if on {
            self.mute.insert(i);
        } else {
            self.mute.remove(&i);
        }
    }
}

#[test]
fn a_requester_restored_after_a_restart_confirms_its_workers_and_sees_the_end() {
    let mut net = Net::new(3, |_, _| {});
    let id = net.deploy(small_job(2));
    let end = net.later(3);
    net.run_until(end);
    assert_eq!(
        net.nodes[0].deployment(id).unwrap().state,
        DeployState::Running
    );
    // The requester goes away: the workers' end reports are lost, then it restarts.
    net.isolate(0, true);
    for i in 1..=3 {
        net.isolate(i, true);
    }
    let end = net.later(30);
    net.run_until(end);
    for i in 0..=3 {
        net.isolate(i, false);
    }
    assert_eq!(
        net.nodes[0].deployment(id).unwrap().state,
        DeployState::Running
    );
    net.restart_requester();
    net.pump();
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Completed, "{view:?}");
    assert!(view.workers.iter().all(|w| w.1 == "done"), "{view:?}");
    // A fresh deployment is numbered after the restored one.
    let next = net.deploy(small_job(1));
    assert_eq!(next, id + 1);
}

#[test]
fn a_worker_that_never_confirms_after_a_restart_fails_the_deployment() {
    let mut net = Net::new(3, |_, _| {});
    let id = net.deploy(small_job(2));
    let end = net.later(3);
    net.run_until(end);
    let workers: Vec<PeerId> = net.nodes[0]
        .deployment(id)
        .unwrap()
        .workers
        .iter()
        .map(|w| w.0)
        .collect();
    let silent = net.index(&workers[0]);
    net.restart_requester();
    net.isolate(silent, true);
    net.pump();
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(
        view.state,
        DeployState::Running,
        "the other worker confirmed"
    );
    let end = net.later(60);
    net.run_until(end);
    assert_eq!(
        net.nodes[0].deployment(id).unwrap().state,
        DeployState::Running
    );
    let end = net.later(61);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Failed);
    let reason = view.reason.unwrap();
    assert!(
        reason.contains(&workers[0].to_string()) && reason.contains("did not confirm"),
        "{reason}"
    );
}

#[test]
fn a_requester_restarted_while_committing_reverts_every_commit() {
    // Providers accept but the requester restarts before the commit answers arrive.
    let mut net = Net::new(2, |_, _| {});
    let mut spec = small_job(2);
    spec.workers = 2;
    let peers = net.ids[1..].to_vec();
    let id = net.nodes[0].deploy(net.now, spec, &[], &peers).unwrap();
    // Deliver the bid requests, bids and commits, then lose the commit answers.
    for _ in 0..4 {
        let mut out = Vec::new();
        for i in 0..net.nodes.len() {
            while let Some(m) = net.nodes[i].poll_transmit() {
                out.push((i, m));
            }
        }
        for (i, (to, msg)) in out {
            if i > 0 && matches!(msg, JobMessage::CommitAnswer { .. }) {
                continue;
            }
            let j = net.index(&to);
            let from = net.ids[i];
            net.nodes[j].handle_message(net.now, from, msg, &BTreeMap::new());
        }
    }
    assert_eq!(
        net.nodes[0].deployment(id).unwrap().state,
        DeployState::Committing
    );
    let locked = net.nodes[1].allocations().ledger().available();
    assert_ne!(locked, MACHINE, "the commit holds capacity");
    net.restart_requester();
    net.pump();
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Failed);
    assert!(view.reason.unwrap().contains("reverted"));
    for n in &net.nodes[1..] {
        assert_eq!(n.allocations().ledger().available(), MACHINE);
    }
}

/// Jobs that run for 5 to 7 minutes on every provider.
fn long_runs(net: &mut Net) {
    for (i, e) in net.execs.iter_mut().enumerate() {
        let exec = SimExecConfig {
            start_delay: (Duration::from_millis(100), Duration::from_millis(500)),
            run_time: (Duration::from_secs(300), Duration::from_secs(420)),
            failure_probability: 0.0,
            log_lines: 1,
        };
        *e = SimExecutor::new(exec, SeedTree::new(8).child(i as u64)).unwrap();
    }
}

/// Provider 1 is 200 ms from everyone; the others are 10 ms apart.
fn provider_one_far(a: usize, b: usize) -> Duration {
    if a == 1 || b == 1 {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(10)
    }
}

fn rtt_bound_job() -> JobSpec {
    spec(
        "image = \"busybox\"\nduration_s = 600\nworkers = 2\n\
         [resources]\ncores = 1\nmemory_mb = 256\n[constraints]\nrtt_max_ms = 50\n",
    )
}

#[test]
fn a_worker_far_from_the_others_is_replaced_and_the_job_goes_on() {
    let mut net = Net::new(4, |_, _| {});
    long_runs(&mut net);
    // Provider 1, the cheapest, is 200 ms from everyone; the others 10 ms apart.
    net.rtt = provider_one_far;
    let id = net.deploy(rtt_bound_job());
    let end = net.later(5);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Running);
    let chosen: Vec<PeerId> = view.workers.iter().map(|w| w.0).collect();
    assert!(
        chosen.contains(&net.ids[1]) && chosen.contains(&net.ids[2]),
        "{view:?}"
    );
    // The bound is broken from the first check (10 s after running); not replaced yet at
    // 30 s of breaking.
    let end = net.later(30);
    net.run_until(end);
    assert_eq!(net.nodes[0].deployment(id).unwrap().workers.len(), 2);
    let end = net.later(15);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Running, "{view:?}");
    let workers: BTreeMap<PeerId, String> = view.workers.iter().cloned().collect();
    assert_eq!(
        workers.get(&net.ids[1]).map(String::as_str),
        Some("stopped"),
        "{view:?}"
    );
    assert_eq!(
        workers.get(&net.ids[2]).map(String::as_str),
        Some("running")
    );
    assert_eq!(
        workers.get(&net.ids[3]).map(String::as_str),
        Some("running")
    );
    assert!(
        view.transitions.iter().any(|t| t
            .2
            .contains(&format!("worker {} replaced by {}", net.ids[1], net.ids[3]))),
        "{view:?}"
    );
    // The replaced provider got its capacity back; the job runs to its end.
    assert_eq!(net.nodes[1].allocations().ledger().available(), MACHINE);
    let end = net.later(600);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Completed, "{view:?}");
    for n in &net.nodes[1..] {
        assert_eq!(n.allocations().ledger().available(), MACHINE);
    }
}

#[test]
fn workers_within_the_rtt_bound_are_kept() {
    let mut net = Net::new(4, |_, _| {});
    long_runs(&mut net);
    net.rtt = |_, _| Duration::from_millis(40);
    let id = net.deploy(rtt_bound_job());
    let end = net.later(120);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Running);
    assert_eq!(view.workers.len(), 2);
    assert!(view.workers.iter().all(|w| w.1 == "running"), "{view:?}");
}

#[test]
fn a_failed_replacement_keeps_the_old_worker() {
    // Only two providers: no third one can bid, so the far worker stays.
    let mut net = Net::new(2, |_, _| {});
    long_runs(&mut net);
    net.rtt = provider_one_far;
    let id = net.deploy(rtt_bound_job());
    let end = net.later(60);
    net.run_until(end);
    let view = net.nodes[0].deployment(id).unwrap();
    assert_eq!(view.state, DeployState::Running, "{view:?}");
    assert!(view.workers.iter().all(|w| w.1 == "running"), "{view:?}");
    assert!(
        view.transitions.iter().any(|t| t
            .2
            .contains("kept, its replacement failed: no provider bid")),
        "{view:?}"
    );
}
