//! Unit tests per operation and a property test over random operation sequences.

use proptest::prelude::*;

use super::*;

fn cap(millicores: u64, memory_mb: u64, disk_gb: u64, gpus: u64) -> Capacity {
    Capacity {
        millicores,
        memory_mb,
        disk_gb,
        gpus,
    }
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

const ID1: AllocationId = AllocationId(1);
const ID2: AllocationId = AllocationId(2);

/// 8 cores, 16 GiB, 100 GB, 1 GPU registered; 4 cores, 8 GiB, 50 GB, 1 GPU onboarded.
fn ledger() -> Ledger {
    let mut l = Ledger::new(cap(8000, 16384, 100, 1), Some(1234));
    l.onboard(cap(4000, 8192, 50, 1)).unwrap();
    l
}

#[test]
fn capacity_arithmetic_is_checked() {
    let a = cap(1, 2, 3, 4);
    assert_eq!(a.checked_add(a), Some(cap(2, 4, 6, 8)));
    assert_eq!(a.checked_sub(a), Some(Capacity::ZERO));
    assert_eq!(a.checked_sub(cap(0, 3, 0, 0)), None);
    assert_eq!(cap(u64::MAX, 0, 0, 0).checked_add(cap(1, 0, 0, 0)), None);
    assert!(Capacity::ZERO.is_zero());
    assert!(!a.is_zero());
    assert!(a.fits_in(&cap(1, 2, 3, 4)));
    assert!(!a.fits_in(&cap(1, 2, 3, 3)));
}

#[test]
fn shortfall_names_the_first_short_field() {
    let s = cap(10, 2048, 1, 0).shortfall(&cap(10, 1024, 0, 0)).unwrap();
    assert_eq!(s.to_string(), "memory_mb: 2048 asked, 1024 available");
    assert_eq!(cap(1, 1, 1, 1).shortfall(&cap(1, 1, 1, 1)), None);
}

#[test]
fn new_ledger_offers_nothing() {
    let l = Ledger::new(cap(8000, 16384, 100, 0), None);
    assert_eq!(l.registered(), cap(8000, 16384, 100, 0));
    assert_eq!(l.benchmark_score(), None);
    assert_eq!(l.onboarded(), Capacity::ZERO);
    assert_eq!(l.available(), Capacity::ZERO);
    l.check_invariant().unwrap();
}

#[test]
fn onboard_must_fit_in_registered() {
    let mut l = ledger();
    assert_eq!(l.benchmark_score(), Some(1234));
    l.onboard(cap(4000, 8192, 50, 0)).unwrap();
    assert_eq!(l.onboarded(), cap(8000, 16384, 100, 1));
    let err = l.onboard(cap(0, 0, 0, 1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot onboard beyond registered capacity: gpus: 2 asked, 1 available; onboard less"
    );
    assert_eq!(l.onboarded(), cap(8000, 16384, 100, 1), "unchanged");
    l.check_invariant().unwrap();
}

#[test]
fn lock_start_release_round_trip() {
    let mut l = ledger();
    l.lock(ID1, cap(1500, 2048, 10, 0), t(60)).unwrap();
    assert_eq!(l.locked(), cap(1500, 2048, 10, 0));
    assert_eq!(l.available(), cap(2500, 6144, 40, 1));
    assert_eq!(
        l.allocation(ID1).unwrap().state,
        AllocationState::Locked { expires_at: t(60) }
    );
    l.check_invariant().unwrap();

    l.start(ID1).unwrap();
    assert_eq!(l.locked(), Capacity::ZERO);
    assert_eq!(l.allocated(), cap(1500, 2048, 10, 0));
    assert_eq!(l.available(), cap(2500, 6144, 40, 1));
    assert_eq!(l.next_expiry(), None, "running allocations do not expire");
    l.check_invariant().unwrap();

    let a = l.release(ID1).unwrap();
    assert_eq!(a.request, cap(1500, 2048, 10, 0));
    assert_eq!(a.state, AllocationState::Running);
    assert_eq!(l.available(), l.onboarded());
    assert_eq!(l.allocations().count(), 0);
    l.check_invariant().unwrap();
}

#[test]
fn release_of_a_lock_frees_it() {
    let mut l = ledger();
    l.lock(ID1, cap(4000, 1, 0, 0), t(60)).unwrap();
    l.release(ID1).unwrap();
    assert_eq!(l.available(), l.onboarded());
    assert_eq!(l.release(ID1), Err(LedgerError::Unknown(ID1)));
}

#[test]
fn lock_is_all_or_nothing_and_names_what_is_short() {
    let mut l = ledger();
    l.lock(ID1, cap(1000, 7168, 0, 0), t(60)).unwrap();
    let before = l.clone();
    let err = l.lock(ID2, cap(1000, 2048, 0, 0), t(60)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "allocation 2: not enough capacity: memory_mb: 2048 asked, 1024 available"
    );
    assert_eq!(l.available(), before.available());
    assert!(l.allocation(ID2).is_none());
    // Exactly what is left fits.
    l.lock(ID2, cap(3000, 1024, 50, 1), t(60)).unwrap();
    assert_eq!(l.available(), Capacity::ZERO);
    l.check_invariant().unwrap();
}

#[test]
fn lock_refuses_duplicates_and_empty_requests() {
    let mut l = ledger();
    l.lock(ID1, cap(1, 0, 0, 0), t(60)).unwrap();
    assert_eq!(
        l.lock(ID1, cap(1, 0, 0, 0), t(60)),
        Err(LedgerError::Duplicate(ID1))
    );
    assert_eq!(
        l.lock(ID2, Capacity::ZERO, t(60)),
        Err(LedgerError::EmptyRequest(ID2))
    );
    assert_eq!(l.locked(), cap(1, 0, 0, 0));
}

#[test]
fn start_refuses_unknown_and_running() {
    let mut l = ledger();
    assert_eq!(l.start(ID1), Err(LedgerError::Unknown(ID1)));
    l.lock(ID1, cap(1, 0, 0, 0), t(60)).unwrap();
    l.start(ID1).unwrap();
    assert_eq!(l.start(ID1), Err(LedgerError::AlreadyRunning(ID1)));
    assert_eq!(l.allocated(), cap(1, 0, 0, 0));
}

#[test]
fn expire_releases_due_locks_only() {
    let mut l = ledger();
    l.lock(AllocationId(3), cap(100, 0, 0, 0), t(30)).unwrap();
    l.lock(ID1, cap(100, 0, 0, 0), t(10)).unwrap();
    l.lock(ID2, cap(100, 0, 0, 0), t(20)).unwrap();
    l.lock(AllocationId(4), cap(100, 0, 0, 0), t(5)).unwrap();
    l.start(AllocationId(4)).unwrap();
    assert_eq!(l.next_expiry(), Some(t(10)));
    assert_eq!(l.expire(t(9)), vec![]);
    assert_eq!(l.expire(t(20)), vec![ID1, ID2], "due at or before now");
    assert_eq!(l.next_expiry(), Some(t(30)));
    assert_eq!(l.locked(), cap(100, 0, 0, 0));
    assert_eq!(
        l.allocated(),
        cap(100, 0, 0, 0),
        "a running allocation never expires"
    );
    assert_eq!(l.expire(t(1000)), vec![AllocationId(3)]);
    assert_eq!(l.locked(), Capacity::ZERO);
    l.check_invariant().unwrap();
}

#[test]
fn offboard_is_refused_below_what_is_in_use() {
    let mut l = ledger();
    l.lock(ID1, cap(1000, 4096, 0, 0), t(60)).unwrap();
    l.lock(ID2, cap(1000, 2048, 0, 0), t(60)).unwrap();
    l.start(ID2).unwrap();
    let err = l.offboard(cap(0, 4096, 0, 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot offboard millicores 0, memory_mb 4096, disk_gb 0, gpus 0: \
         millicores 2000, memory_mb 6144, disk_gb 0, gpus 0 in use (allocated + locked); \
         memory_mb: 4096 asked, 2048 available; \
         wait for allocations to finish or offboard less"
    );
    assert_eq!(l.onboarded(), cap(4000, 8192, 50, 1), "unchanged");
    l.offboard(cap(2000, 2048, 50, 1)).unwrap();
    assert_eq!(l.onboarded(), cap(2000, 6144, 0, 0));
    assert_eq!(l.available(), Capacity::ZERO);
    l.check_invariant().unwrap();
}

#[test]
fn offboard_more_than_onboarded_is_refused() {
    let mut l = ledger();
    let err = l.offboard(cap(5000, 0, 0, 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot offboard more than is onboarded: millicores: 5000 asked, 4000 available"
    );
    l.offboard(cap(4000, 8192, 50, 1)).unwrap();
    assert_eq!(l.onboarded(), Capacity::ZERO);
}

#[test]
fn check_invariant_detects_drift() {
    let mut l = ledger();
    l.lock(ID1, cap(1000, 0, 0, 0), t(60)).unwrap();
    l.locked = Capacity::ZERO;
    assert!(l.check_invariant().unwrap_err().contains("totals drifted"));
    let mut l = ledger();
    l.allocated = cap(5000, 0, 0, 0);
    l.allocations.insert(
        ID1,
        Allocation {
            request: cap(5000, 0, 0, 0),
            state: AllocationState::Running,
        },
    );
    assert!(
        l.check_invariant()
            .unwrap_err()
            .contains("exceeds onboarded")
    );
    let mut l = ledger();
    l.onboarded = cap(9000, 0, 0, 0);
    assert!(
        l.check_invariant()
            .unwrap_err()
            .contains("exceeds registered")
    );
}

#[derive(Debug, Clone)]
enum Op {
    Lock(u8, Capacity, u64),
    Start(u8),
    Release(u8),
    Expire(u64),
    Onboard(Capacity),
    Offboard(Capacity),
}

fn small_cap() -> impl Strategy<Value = Capacity> {
    (0..3000u64, 0..5000u64, 0..40u64, 0..2u64).prop_map(|(c, m, d, g)| cap(c, m, d, g))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..16u8, small_cap(), 0..100u64).prop_map(|(i, c, e)| Op::Lock(i, c, e)),
        3 => (0..16u8).prop_map(Op::Start),
        2 => (0..16u8).prop_map(Op::Release),
        1 => (0..100u64).prop_map(Op::Expire),
        1 => small_cap().prop_map(Op::Onboard),
        1 => small_cap().prop_map(Op::Offboard),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Over random sequences the invariant holds after every operation, a refused
    /// operation changes nothing, and releasing everything brings usage back to zero.
    #[test]
    fn invariant_holds_over_random_sequences(ops in proptest::collection::vec(op(), 1..300)) {
        let mut l = Ledger::new(cap(16000, 32768, 200, 4), None);
        l.onboard(cap(8000, 16384, 100, 2)).unwrap();
        for op in &ops {
            let before = l.clone();
            let refused = match *op {
                Op::Lock(i, c, e) => l.lock(AllocationId(u64::from(i)), c, t(e)).is_err(),
                Op::Start(i) => l.start(AllocationId(u64::from(i))).is_err(),
                Op::Release(i) => l.release(AllocationId(u64::from(i))).is_err(),
                Op::Expire(now) => {
                    let gone = l.expire(t(now));
                    prop_assert!(gone.iter().all(|id| l.allocation(*id).is_none()));
                    prop_assert!(l.next_expiry().is_none_or(|e| e > t(now)));
                    false
                }
                Op::Onboard(c) => l.onboard(c).is_err(),
                Op::Offboard(c) => l.offboard(c).is_err(),
            };
            if let Err(e) = l.check_invariant() {
                prop_assert!(false, "after {:?}: {}", op, e);
            }
            if refused {
                prop_assert_eq!(l.onboarded(), before.onboarded());
                prop_assert_eq!(l.locked(), before.locked());
                prop_assert_eq!(l.allocated(), before.allocated());
            }
        }
        let ids: Vec<AllocationId> = l.allocations().map(|(id, _)| id).collect();
        for id in ids {
            l.release(id).unwrap();
        }
        prop_assert_eq!(l.locked(), Capacity::ZERO);
        prop_assert_eq!(l.allocated(), Capacity::ZERO);
        prop_assert_eq!(l.available(), l.onboarded());
        l.check_invariant().unwrap();
    }
}
