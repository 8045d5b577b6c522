//! Allocations: the state machine, all-or-nothing acceptance, expiry, and the capacity
//! equation over random sequences of operations.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ports::PortRange;

fn cap(cores: u64, memory_mb: u64) -> Capacity {
    Capacity {
        millicores: cores * 1000,
        memory_mb,
        ..Capacity::ZERO
    }
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn sp() -> PeerId {
    PeerId::from_public_key([7; 32])
}

/// 8 cores and 16 GiB onboarded, ports 30000-30003, commit within 60 s.
fn provider() -> Allocations {
    let mut ledger = Ledger::new(cap(16, 32768), None);
    ledger.onboard(cap(8, 16384)).unwrap();
    let ports = PortAllocator::new(PortRange::new(30000, 30003).unwrap());
    Allocations::new(ledger, ports, Duration::from_secs(60))
}

#[test]
fn a_job_runs_to_completion_and_gives_everything_back() {
    let mut p = provider();
    let before = p.ledger().available();
    let id = AllocationId(1);
    assert_eq!(
        p.accept(secs(0), id, sp(), cap(2, 1024), 2).unwrap(),
        &[30000, 30001]
    );
    assert_eq!(p.ledger().locked(), cap(2, 1024));
    p.check_invariant().unwrap();
    p.start(secs(5), id).unwrap();
    assert_eq!(p.ledger().allocated(), cap(2, 1024));
    assert_eq!(p.get(id).unwrap().state, AllocState::Running);
    p.check_invariant().unwrap();
    p.finish(secs(50), id, Ok(())).unwrap();
    let a = p.get(id).unwrap();
    assert_eq!((a.state, a.since), (AllocState::Completed, secs(50)));
    assert!(a.ports.is_empty());
    assert_eq!(p.ledger().available(), before);
    assert_eq!(p.ports().free(), 4);
    p.check_invariant().unwrap();
}

#[test]
fn acceptance_is_all_or_nothing() {
    let mut p = provider();
    p.accept(secs(0), AllocationId(1), sp(), cap(1, 512), 3)
        .unwrap();
    // Capacity is there but only one port is left: nothing is taken.
    let e = p
        .accept(secs(0), AllocationId(2), sp(), cap(1, 512), 2)
        .unwrap_err();
    assert!(e.to_string().contains("2 ports asked, 1 free"), "{e}");
    assert_eq!(p.ledger().locked(), cap(1, 512));
    assert!(p.get(AllocationId(2)).is_none());
    // Ports are there but memory is not.
    let e = p
        .accept(secs(0), AllocationId(3), sp(), cap(1, 20000), 1)
        .unwrap_err();
    assert!(e.to_string().contains("memory_mb"), "{e}");
    assert_eq!(p.ports().free(), 1);
    p.check_invariant().unwrap();
    // A used id is refused, even once terminal.
    p.stop(secs(1), AllocationId(1), "shutdown").unwrap();
    assert_eq!(
        p.accept(secs(2), AllocationId(1), sp(), cap(1, 1), 0),
        Err(AllocError::Duplicate(AllocationId(1)))
    );
}

#[test]
fn an_unconfirmed_allocation_expires_and_a_late_start_is_refused() {
    let mut p = provider();
    p.accept(secs(0), AllocationId(1), sp(), cap(1, 512), 1)
        .unwrap();
    p.accept(secs(30), AllocationId(2), sp(), cap(1, 512), 1)
        .unwrap();
    assert_eq!(p.next_deadline(), Some(secs(60)));
    assert_eq!(p.expire(secs(59)), vec![]);
    assert_eq!(p.expire(secs(60)), vec![AllocationId(1)]);
    let a = p.get(AllocationId(1)).unwrap();
    assert_eq!(
        (a.state, a.reason.as_deref()),
        (AllocState::Failed, Some("expired"))
    );
    assert_eq!(
        p.start(secs(61), AllocationId(1)),
        Err(AllocError::Transition {
            id: AllocationId(1),
            from: AllocState::Failed,
            to: AllocState::Running
        })
    );
    assert_eq!(p.next_deadline(), Some(secs(90)));
    p.check_invariant().unwrap();
}

#[test]
fn only_the_state_machine_s_moves_are_allowed() {
    let mut p = provider();
    let id = AllocationId(4);
    assert_eq!(p.start(secs(0), id), Err(AllocError::Unknown(id)));
    p.accept(secs(0), id, sp(), cap(1, 64), 0).unwrap();
    let e = p.finish(secs(1), id, Ok(())).unwrap_err();
    assert_eq!(
        e.to_string(),
        "allocation 4 is pending; it cannot become completed"
    );
    p.start(secs(1), id).unwrap();
    assert!(p.start(secs(2), id).is_err());
    p.finish(secs(3), id, Err("exit code 1".into())).unwrap();
    let a = p.get(id).unwrap();
    assert_eq!(
        (a.state, a.reason.as_deref()),
        (AllocState::Failed, Some("exit code 1"))
    );
    assert!(p.stop(secs(4), id, "late").is_err());
    assert_eq!(p.forget(id).unwrap().state, AllocState::Failed);
    assert!(p.get(id).is_none());
    p.check_invariant().unwrap();
}

#[test]
fn offboarding_cannot_take_what_allocations_hold() {
    let mut p = provider();
    p.accept(secs(0), AllocationId(1), sp(), cap(6, 1024), 0)
        .unwrap();
    let e = p.ledger_mut().offboard(cap(4, 0)).unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    p.ledger_mut().offboard(cap(2, 0)).unwrap();
    p.check_invariant().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Accept {
        id: u8,
        cores: u8,
        memory: u16,
        ports: u8,
    },
    Start(u8),
    Finish(u8, bool),
    Stop(u8),
    Expire,
    Tick(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 0u8..5, 0u16..9000, 0u8..3)
            .prop_map(|(id, cores, memory, ports)| Op::Accept { id, cores, memory, ports }),
        3 => (0u8..24).prop_map(Op::Start),
        2 => (0u8..24, any::<bool>()).prop_map(|(id, ok)| Op::Finish(id, ok)),
        1 => (0u8..24).prop_map(Op::Stop),
        1 => Just(Op::Expire),
        2 => (1u8..40).prop_map(Op::Tick),
    ]
}

proptest! {
    /// Whatever happens, the capacity equation holds after every operation, a refused
    /// operation changes nothing, and once every allocation has ended the provider is back
    /// where it started.
    #[test]
    fn the_capacity_equation_always_holds(ops in prop::collection::vec(op(), 1..300)) {
        let mut p = provider();
        let start = p.ledger().available();
        let mut now = secs(0);
        for o in ops {
            let before = (p.ledger().locked(), p.ledger().allocated(), p.ports().free());
            let refused = match o {
                Op::Accept { id, cores, memory, ports } => p
                    .accept(now, AllocationId(id.into()), sp(), cap(cores.into(), memory.into()), ports.into())
                    .is_err(),
                Op::Start(id) => p.start(now, AllocationId(id.into())).is_err(),
                Op::Finish(id, ok) => p
                    .finish(now, AllocationId(id.into()), if ok { Ok(()) } else { Err("x".into()) })
                    .is_err(),
                Op::Stop(id) => p.stop(now, AllocationId(id.into()), "stop").is_err(),
                Op::Expire => { p.expire(now); false }
                Op::Tick(s) => { now = now + Duration::from_secs(s.into()); false }
            };
            if refused {
                let after = (p.ledger().locked(), p.ledger().allocated(), p.ports().free());
                prop_assert_eq!(before, after);
            }
            p.check_invariant().map_err(TestCaseError::fail)?;
        }
        let live: Vec<AllocationId> = p
            .iter()
            .filter(|(_, a)| !a.state.is_terminal())
            .map(|(id, _)| id)
            .collect();
        for id in live {
            p.stop(now, id, "end").unwrap();
        }
        p.check_invariant().map_err(TestCaseError::fail)?;
        prop_assert_eq!(p.ledger().available(), start);
        prop_assert_eq!(p.ports().free(), 4);
    }
}
