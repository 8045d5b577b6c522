use super::*;

const T0: Timestamp = Timestamp::from_secs(1_000);
const LIMIT: Duration = Duration::from_secs(3_600);

fn config() -> SimExecConfig {
    SimExecConfig {
        start_delay: (Duration::from_millis(10), Duration::from_secs(1)),
        run_time: (Duration::from_secs(1), Duration::from_secs(10)),
        failure_probability: 0.3,
        log_lines: 3,
    }
}

fn executor(config: SimExecConfig, seed: u64) -> SimExecutor {
    SimExecutor::new(config, SeedTree::new(seed)).unwrap()
}

/// Runs until nothing is scheduled; every event with the time it came out.
fn drain(exec: &mut SimExecutor) -> Vec<(Timestamp, ExecEvent)> {
    let mut out = Vec::new();
    while let Some(at) = exec.poll_timeout() {
        exec.handle_timeout(at);
        while let Some(event) = exec.poll_event() {
            out.push((at, event));
        }
    }
    assert_eq!(exec.active(), 0);
    out
}

fn run(
    config: SimExecConfig,
    seed: u64,
    ids: &[u64],
    limit: Duration,
) -> Vec<(Timestamp, ExecEvent)> {
    let mut exec = executor(config, seed);
    for &id in ids {
        exec.start(T0, AllocationId(id), limit).unwrap();
    }
    drain(&mut exec)
}

fn outcomes(events: &[(Timestamp, ExecEvent)]) -> Vec<Outcome> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            ExecEvent::Exited { outcome, .. } => Some(*outcome),
            _ => None,
        })
        .collect()
}

fn id_of(event: &ExecEvent) -> AllocationId {
    match event {
        ExecEvent::Started { id }
        | ExecEvent::Log { id, .. }
        | ExecEvent::Exited { id, .. }
        | ExecEvent::Failed { id, .. } => *id,
    }
}

#[test]
fn same_seed_same_events_different_seed_different_events() {
    let ids: Vec<u64> = (1..=20).collect();
    let a = run(config(), 7, &ids, LIMIT);
    let b = run(config(), 7, &ids, LIMIT);
    let c = run(config(), 8, &ids, LIMIT);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Every job starts once and exits once, Started first and Exited last.
    for id in ids {
        let mine: Vec<_> = a
            .iter()
            .filter(|(_, e)| id_of(e) == AllocationId(id))
            .collect();
        assert!(matches!(mine.first(), Some((_, ExecEvent::Started { .. }))));
        assert!(matches!(mine.last(), Some((_, ExecEvent::Exited { .. }))));
        assert_eq!(
            outcomes(&mine.iter().map(|p| (*p).clone()).collect::<Vec<_>>()).len(),
            1
        );
    }
    // Time never goes backwards, and draws stay in their ranges.
    assert!(a.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(
        a.iter()
            .all(|(at, _)| *at >= T0 + Duration::from_millis(10))
    );
    assert!(a.iter().all(|(at, _)| *at <= T0 + Duration::from_secs(11)));
}

#[test]
fn failure_probability_zero_completes_all_one_fails_all() {
    let ids: Vec<u64> = (1..=50).collect();
    let never = run(
        SimExecConfig {
            failure_probability: 0.0,
            ..config()
        },
        3,
        &ids,
        LIMIT,
    );
    assert_eq!(outcomes(&never), vec![Outcome::Completed; 50]);
    let always = run(
        SimExecConfig {
            failure_probability: 1.0,
            ..config()
        },
        3,
        &ids,
        LIMIT,
    );
    assert_eq!(outcomes(&always), vec![Outcome::Failed { code: 1 }; 50]);
    let stderr = always
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                ExecEvent::Log {
                    stream: Stream::Stderr,
                    ..
                }
            )
        })
        .count();
    assert_eq!(stderr, 50);
    // Some but not all at 0.3.
    let mixed = outcomes(&run(config(), 3, &ids, LIMIT));
    let failed = mixed.iter().filter(|o| **o != Outcome::Completed).count();
    assert!((1..50).contains(&failed), "{failed} of 50 failed");
}

#[test]
fn run_time_beyond_the_limit_times_out_at_the_limit() {
    let config = SimExecConfig {
        start_delay: (Duration::from_secs(2), Duration::from_secs(2)),
        run_time: (Duration::from_secs(10), Duration::from_secs(20)),
        failure_probability: 0.0,
        log_lines: 9,
    };
    let limit = Duration::from_secs(5);
    let events = run(config.clone(), 1, &[1, 2, 3], limit);
    assert_eq!(outcomes(&events), vec![Outcome::TimedOut; 3]);
    for (at, e) in &events {
        if matches!(e, ExecEvent::Exited { .. }) {
            assert_eq!(*at, T0 + Duration::from_secs(7));
        } else {
            assert!(*at < T0 + Duration::from_secs(7), "{e:?} after the limit");
        }
    }
    // With room to spare the same jobs complete, with all their lines.
    let events = run(config, 1, &[1, 2, 3], Duration::from_secs(20));
    assert_eq!(outcomes(&events), vec![Outcome::Completed; 3]);
    let lines = events
        .iter()
        .filter(|(_, e)| matches!(e, ExecEvent::Log { .. }))
        .count();
    assert_eq!(lines, 27);
}

#[test]
fn stop_before_start_and_during_run() {
    let config = SimExecConfig {
        start_delay: (Duration::from_secs(5), Duration::from_secs(5)),
        run_time: (Duration::from_secs(100), Duration::from_secs(100)),
        failure_probability: 0.0,
        log_lines: 4,
    };
    let mut exec = executor(config, 9);
    exec.start(T0, AllocationId(1), LIMIT).unwrap();
    exec.start(T0, AllocationId(2), LIMIT).unwrap();

    // Job 1 stops while still starting: no Started, only Exited.
    let t1 = T0 + Duration::from_secs(1);
    exec.stop(t1, AllocationId(1)).unwrap();
    assert_eq!(
        exec.poll_event(),
        Some(ExecEvent::Exited {
            id: AllocationId(1),
            outcome: Outcome::Stopped
        })
    );
    assert_eq!(exec.poll_event(), None);

    // Job 2 stops mid-run, after its start and first line (due at 5 s and 25 s).
    let t2 = T0 + Duration::from_secs(30);
    exec.stop(t2, AllocationId(2)).unwrap();
    let events: Vec<_> = std::iter::from_fn(|| exec.poll_event()).collect();
    assert!(matches!(
        events[0],
        ExecEvent::Started {
            id: AllocationId(2)
        }
    ));
    assert!(matches!(
        events[1],
        ExecEvent::Log {
            id: AllocationId(2),
            stream: Stream::Stdout,
            ..
        }
    ));
    assert_eq!(
        events[2],
        ExecEvent::Exited {
            id: AllocationId(2),
            outcome: Outcome::Stopped
        }
    );
    assert_eq!(events.len(), 3);
    assert_eq!(exec.poll_timeout(), None);
    assert_eq!(exec.active(), 0);

    // Stopped and finished jobs are unknown; the id may be started again.
    assert_eq!(
        exec.stop(t2, AllocationId(2)),
        Err(SimExecError::Unknown(AllocationId(2)))
    );
    assert_eq!(
        exec.stop(t2, AllocationId(3)),
        Err(SimExecError::Unknown(AllocationId(3)))
    );
    exec.start(t2, AllocationId(2), LIMIT).unwrap();
}

#[test]
fn duplicate_start_is_refused() {
    let mut exec = executor(config(), 1);
    exec.start(T0, AllocationId(4), LIMIT).unwrap();
    assert_eq!(
        exec.start(T0, AllocationId(4), LIMIT),
        Err(SimExecError::Duplicate(AllocationId(4)))
    );
    assert_eq!(outcomes(&drain(&mut exec)).len(), 1);
}

#[test]
fn a_job_does_not_depend_on_other_jobs() {
    let alone = run(config(), 11, &[5], LIMIT);
    let crowd = run(config(), 11, &[1, 2, 3, 4, 5], LIMIT);
    let mine: Vec<_> = crowd
        .into_iter()
        .filter(|(_, e)| id_of(e) == AllocationId(5))
        .collect();
    assert_eq!(alone, mine);
    assert!(alone.len() >= 2);
}

#[test]
fn same_instant_events_come_out_by_id() {
    let config = SimExecConfig {
        start_delay: (Duration::ZERO, Duration::ZERO),
        run_time: (Duration::from_secs(1), Duration::from_secs(1)),
        failure_probability: 0.0,
        log_lines: 1,
    };
    let mut exec = executor(config, 2);
    for id in [3, 1, 2] {
        exec.start(T0, AllocationId(id), LIMIT).unwrap();
    }
    let events = drain(&mut exec);
    let ids: Vec<u64> = events.iter().map(|(_, e)| id_of(e).0).collect();
    assert_eq!(ids, vec![1, 2, 3, 1, 2, 3, 1, 2, 3]);
}

#[test]
fn validation_names_the_field() {
    let bad = |c: SimExecConfig| c.validate().unwrap_err().to_string();
    let d = Duration::from_secs;
    assert!(
        bad(SimExecConfig {
            start_delay: (d(2), d(1)),
            ..config()
        })
        .starts_with("start_delay:")
    );
    assert!(
        bad(SimExecConfig {
            run_time: (d(2), d(1)),
            ..config()
        })
        .starts_with("run_time:")
    );
    for p in [-0.1, 1.5, f64::NAN] {
        assert!(
            bad(SimExecConfig {
                failure_probability: p,
                ..config()
            })
            .starts_with("failure_probability:")
        );
    }
    assert!(
        bad(SimExecConfig {
            log_lines: LOG_LINES_MAX + 1,
            ..config()
        })
        .starts_with("log_lines:")
    );
    assert!(
        SimExecutor::new(
            SimExecConfig {
                log_lines: u32::MAX,
                ..config()
            },
            SeedTree::new(0)
        )
        .is_err()
    );
    config().validate().unwrap();
    SimExecConfig::default().validate().unwrap();
}
