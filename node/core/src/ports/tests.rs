//! Range validation, allocation order, exhaustion, release and reuse.

use proptest::prelude::*;

use super::*;

const A: AllocationId = AllocationId(1);
const B: AllocationId = AllocationId(2);
const C: AllocationId = AllocationId(3);

fn alloc(first: u16, last: u16) -> PortAllocator {
    PortAllocator::new(PortRange::new(first, last).unwrap())
}

#[test]
fn range_is_validated() {
    assert_eq!(PortRange::new(1, 65535).unwrap().len(), 65535);
    assert_eq!(PortRange::new(80, 80).unwrap().len(), 1);
    let err = PortRange::new(0, 10).unwrap_err().to_string();
    assert!(err.contains("includes port 0"), "{err}");
    let err = PortRange::new(20, 10).unwrap_err().to_string();
    assert!(
        err.contains("is empty; write the lower port first, e.g. 10-20"),
        "{err}"
    );
}

#[test]
fn range_parses_from_text() {
    let r: PortRange = "30000-30999".parse().unwrap();
    assert_eq!((r.first(), r.last(), r.len()), (30000, 30999, 1000));
    assert_eq!(r.to_string(), "30000-30999");
    assert!(!r.is_empty());
    assert!(r.contains(30000) && r.contains(30999) && !r.contains(31000));
    let single: PortRange = "8080".parse().unwrap();
    assert_eq!(single.len(), 1);
    for bad in ["", "a-b", "1-65536", "-5", "10-", "0-5", "9-3"] {
        assert!(bad.parse::<PortRange>().is_err(), "`{bad}` was accepted");
    }
    let err = "1-70000".parse::<PortRange>().unwrap_err().to_string();
    assert!(err.contains("ports in 1..=65535"), "{err}");
}

#[test]
fn range_deserializes_from_a_string() {
    #[derive(Debug, Deserialize)]
    struct C {
        ports: PortRange,
    }
    let c: C = toml::from_str("ports = \"40000-40010\"").unwrap();
    assert_eq!(c.ports.len(), 11);
    let err = toml::from_str::<C>("ports = \"40010-40000\"").unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
}

#[test]
fn lowest_free_ports_first() {
    let mut p = alloc(100, 109);
    assert_eq!(p.allocate(A, 3).unwrap(), vec![100, 101, 102]);
    assert_eq!(p.allocate(B, 2).unwrap(), vec![103, 104]);
    assert_eq!(p.ports_of(A), Some(&[100, 101, 102][..]));
    assert_eq!(p.free(), 5);
    p.check_invariant().unwrap();
}

#[test]
fn exhaustion_takes_nothing() {
    let mut p = alloc(100, 104);
    p.allocate(A, 3).unwrap();
    let err = p.allocate(B, 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "allocation 2: 3 ports asked, 2 free in 100-104; release ports or widen the range"
    );
    assert_eq!(p.free(), 2, "nothing was taken");
    assert_eq!(p.ports_of(B), None);
    assert_eq!(p.allocate(B, 2).unwrap(), vec![103, 104]);
    assert_eq!(p.free(), 0);
    assert!(matches!(
        p.allocate(C, 1),
        Err(PortsError::Exhausted { free: 0, .. })
    ));
    p.check_invariant().unwrap();
}

#[test]
fn release_returns_ports_for_reuse() {
    let mut p = alloc(100, 105);
    p.allocate(A, 2).unwrap();
    p.allocate(B, 2).unwrap();
    p.allocate(C, 2).unwrap();
    assert_eq!(p.release(B).unwrap(), vec![102, 103]);
    assert_eq!(p.release(B), Err(PortsError::Unknown(B)));
    // The hole is reused, lowest first.
    assert_eq!(p.allocate(AllocationId(9), 1).unwrap(), vec![102]);
    p.release(A).unwrap();
    assert_eq!(
        p.allocate(AllocationId(10), 3).unwrap(),
        vec![100, 101, 103]
    );
    p.check_invariant().unwrap();
}

#[test]
fn a_job_holds_one_set_of_ports() {
    let mut p = alloc(100, 105);
    p.allocate(A, 1).unwrap();
    assert_eq!(p.allocate(A, 1), Err(PortsError::AlreadyHolds(A)));
    assert_eq!(p.free(), 5);
}

#[test]
fn zero_ports_is_recorded_and_released() {
    let mut p = alloc(100, 100);
    assert_eq!(p.allocate(A, 0).unwrap(), Vec::<u16>::new());
    assert_eq!(p.release(A).unwrap(), Vec::<u16>::new());
    assert_eq!(p.free(), 1);
}

#[test]
fn whole_port_space_is_usable() {
    let mut p = alloc(65530, 65535);
    assert_eq!(
        p.allocate(A, 6).unwrap(),
        (65530..=65535).collect::<Vec<_>>()
    );
    p.check_invariant().unwrap();
}

#[test]
fn check_invariant_detects_a_port_given_twice() {
    let mut p = alloc(100, 101);
    p.allocate(A, 1).unwrap();
    p.free.insert(100);
    assert!(p.check_invariant().unwrap_err().contains("given twice"));
}

proptest! {
    /// Random allocate/release sequences never give a port twice, never take part of a
    /// request, and end with the whole range free.
    #[test]
    fn no_port_given_twice(ops in proptest::collection::vec((any::<bool>(), 0..8u64, 0..6usize), 1..200)) {
        let mut p = alloc(1000, 1015);
        for (alloc, job, n) in ops {
            let job = AllocationId(job);
            let free = p.free();
            if alloc {
                match p.allocate(job, n) {
                    Ok(ports) => prop_assert_eq!(ports.len(), n),
                    Err(_) => prop_assert_eq!(p.free(), free),
                }
            } else {
                let _ = p.release(job);
            }
            if let Err(e) = p.check_invariant() {
                prop_assert!(false, "{}", e);
            }
        }
        for job in 0..8 {
            let _ = p.release(AllocationId(job));
        }
        prop_assert_eq!(p.free(), 16);
    }
}
