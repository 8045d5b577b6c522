//! The deployment state machine: bids, two-phase commit, provisioning, failures, shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key([n; 32])
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_micros(1_000_000_000 + ms * 1000)
}

fn bid(n: u8, price: u64) -> Bid {
    Bid {
        peer: peer(n),
        price_micros_per_core_hour: price,
    }
}

fn drain(d: &mut Deployment) -> Vec<Request> {
    std::iter::from_fn(|| d.poll_request()).collect()
}

fn none() -> BTreeMap<PeerId, Duration> {
    BTreeMap::new()
}

/// Two workers; bids from 1..=4 at prices 40, 10, 30, 20; the deadline picks 2 and 4.
fn committed() -> Deployment {
    let mut d = Deployment::new(at(0), 2, Deadlines::default());
    assert_eq!(drain(&mut d), vec![Request::BidRequest]);
    for (n, price) in [(1, 40), (2, 10), (3, 30), (4, 20)] {
        d.handle_bid(at(100), bid(n, price), &none());
    }
    assert_eq!(d.state(), DeployState::Preparing);
    assert_eq!(d.poll_timeout(), Some(at(5000)));
    d.handle_timeout(at(5000), &none());
    assert_eq!(d.state(), DeployState::Committing);
    assert_eq!(
        drain(&mut d),
        vec![Request::Commit(peer(2)), Request::Commit(peer(4))]
    );
    d
}

#[test]
fn a_job_goes_from_bids_to_completion() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    assert_eq!(d.state(), DeployState::Committing);
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    assert_eq!(d.state(), DeployState::Provisioning);
    d.handle_status(at(6000), peer(2), WorkerStatus::Running);
    d.handle_status(at(6500), peer(4), WorkerStatus::Running);
    assert_eq!(d.state(), DeployState::Running);
    // Running is bounded by the run deadline.
    assert_eq!(d.poll_timeout(), Some(at(6500) + Deadlines::default().run));
    d.handle_status(at(9000), peer(2), WorkerStatus::Ended(Ok(())));
    assert_eq!(d.state(), DeployState::Running);
    d.handle_status(at(9500), peer(4), WorkerStatus::Ended(Ok(())));
    assert_eq!(d.state(), DeployState::Completed);
    let states: Vec<DeployState> = d.transitions().iter().map(|t| t.1).collect();
    assert_eq!(
        states,
        [
            DeployState::Preparing,
            DeployState::Committing,
            DeployState::Provisioning,
            DeployState::Running,
            DeployState::Completed
        ]
    );
    assert!(drain(&mut d).is_empty());
}

#[test]
fn a_refused_commit_reverts_every_accepted_one() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Err("full".into()));
    assert_eq!(d.state(), DeployState::Failed);
    assert!(d.reason().unwrap().contains("refused the commit"));
    assert_eq!(drain(&mut d), vec![Request::Revert(peer(2))]);
}

#[test]
fn a_commit_left_unanswered_fails_the_deployment_and_a_late_accept_is_reverted() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    assert_eq!(d.poll_timeout(), Some(at(15000)));
    d.handle_timeout(at(14999), &none());
    assert_eq!(d.state(), DeployState::Committing);
    d.handle_timeout(at(15000), &none());
    assert_eq!(d.state(), DeployState::Failed);
    assert_eq!(drain(&mut d), vec![Request::Revert(peer(2))]);
    // The slow provider accepts after all: its commit is undone as well.
    d.handle_commit_answer(at(16000), peer(4), Ok(()));
    assert_eq!(drain(&mut d), vec![Request::Revert(peer(4))]);
    assert_eq!(d.state(), DeployState::Failed);
}

#[test]
fn too_few_bids_fail_with_advice_and_enough_bids_do_not_wait() {
    let mut d = Deployment::new(at(0), 3, Deadlines::default());
    d.handle_bid(at(10), bid(1, 5), &none());
    d.handle_bid(at(10), bid(1, 5), &none());
    d.handle_timeout(at(5000), &none());
    assert_eq!(d.state(), DeployState::Failed);
    assert_eq!(
        d.reason(),
        Some("1 bids for 3 workers; ask again later or lower the requirements")
    );

    let mut d = Deployment::new(at(0), 1, Deadlines::default());
    let rtt = BTreeMap::from([(peer(3), Duration::from_millis(5))]);
    for n in 1..=3 {
        d.handle_bid(at(10), bid(n, 7), &rtt);
    }
    // Three bids for one worker: chosen at once, the nearest of equal prices.
    assert_eq!(d.state(), DeployState::Committing);
    assert_eq!(
        drain(&mut d),
        vec![Request::BidRequest, Request::Commit(peer(3))]
    );
}

#[test]
fn a_failed_worker_fails_the_deployment_and_stops_the_others() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    d.handle_status(at(6000), peer(2), WorkerStatus::Running);
    d.handle_status(at(6500), peer(4), WorkerStatus::Running);
    d.handle_status(
        at(7000),
        peer(4),
        WorkerStatus::Ended(Err("exit code 1".into())),
    );
    assert_eq!(d.state(), DeployState::Failed);
    assert_eq!(
        d.reason(),
        Some(format!("worker on {} failed: exit code 1", peer(4)).as_str())
    );
    assert_eq!(drain(&mut d), vec![Request::Shutdown(peer(2))]);
}

#[test]
fn workers_that_never_start_fail_the_deployment_in_time() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    d.handle_status(at(6000), peer(2), WorkerStatus::Running);
    d.handle_timeout(at(5200 + 120_000), &none());
    assert_eq!(d.state(), DeployState::Failed);
    assert_eq!(
        drain(&mut d),
        vec![Request::Shutdown(peer(2)), Request::Shutdown(peer(4))]
    );
}

#[test]
fn a_shutdown_stops_every_worker_and_completes() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    d.handle_status(at(6000), peer(2), WorkerStatus::Running);
    d.handle_status(at(6000), peer(4), WorkerStatus::Running);
    d.shutdown(at(7000));
    assert_eq!(d.state(), DeployState::ShuttingDown);
    assert_eq!(
        drain(&mut d),
        vec![Request::Shutdown(peer(2)), Request::Shutdown(peer(4))]
    );
    d.handle_status(
        at(7100),
        peer(2),
        WorkerStatus::Ended(Err("stopped".into())),
    );
    assert_eq!(d.state(), DeployState::ShuttingDown);
    d.handle_status(at(7200), peer(4), WorkerStatus::Ended(Ok(())));
    assert_eq!(
        (d.state(), d.reason()),
        (DeployState::Completed, Some("shut down"))
    );

    // A provider that never confirms does not hold the deployment forever.
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    d.shutdown(at(6000));
    d.handle_timeout(at(6000 + 30_000), &none());
    assert_eq!(d.state(), DeployState::Completed);

    // Before any commit nothing needs stopping; while committing the accepts are reverted.
    let mut d = Deployment::new(at(0), 1, Deadlines::default());
    d.shutdown(at(1));
    assert_eq!(d.state(), DeployState::Completed);
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.shutdown(at(5150));
    assert_eq!(d.state(), DeployState::Failed);
    assert_eq!(drain(&mut d), vec![Request::Revert(peer(2))]);
}

#[test]
fn a_short_job_may_end_before_the_other_worker_runs() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    d.handle_status(at(5300), peer(2), WorkerStatus::Running);
    d.handle_status(at(5400), peer(2), WorkerStatus::Ended(Ok(())));
    assert_eq!(d.state(), DeployState::Provisioning);
    d.handle_status(at(5500), peer(4), WorkerStatus::Running);
    assert_eq!(d.state(), DeployState::Running);
    d.handle_status(at(5600), peer(4), WorkerStatus::Ended(Ok(())));
    assert_eq!(d.state(), DeployState::Completed);
}

#[test]
fn workers_silent_past_the_run_deadline_fail_the_deployment_and_are_stopped() {
    let mut d = committed();
    d.handle_commit_answer(at(5100), peer(2), Ok(()));
    d.handle_commit_answer(at(5200), peer(4), Ok(()));
    d.handle_status(at(6000), peer(2), WorkerStatus::Running);
    d.handle_status(at(6500), peer(4), WorkerStatus::Running);
    while d.poll_request().is_some() {}
    let due = d.poll_timeout().unwrap();
    d.handle_timeout(due, &BTreeMap::new());
    assert_eq!(d.state(), DeployState::Failed);
    assert!(d.reason().unwrap().contains("duration limit"));
    let mut stops = Vec::new();
    while let Some(r) = d.poll_request() {
        stops.push(r);
    }
    assert_eq!(
        stops,
        [Request::Shutdown(peer(2)), Request::Shutdown(peer(4))]
    );
}
