//! Pool names, their keys, and when announcements and lookups are due.

use super::*;

#[test]
fn pool_names_are_checked() {
    assert_eq!("gpu-a100".parse::<PoolName>().unwrap().as_str(), "gpu-a100");
    assert!("a.b_c-9".parse::<PoolName>().is_ok());
    assert_eq!("".parse::<PoolName>(), Err(PoolNameError::Empty));
    let long = "x".repeat(POOL_NAME_CHARS_MAX + 1);
    assert!(matches!(
        long.parse::<PoolName>(),
        Err(PoolNameError::TooLong(_))
    ));
    assert!("x".repeat(POOL_NAME_CHARS_MAX).parse::<PoolName>().is_ok());
    let err = "GPU".parse::<PoolName>().unwrap_err();
    assert_eq!(
        err,
        PoolNameError::BadChar {
            name: "GPU".into(),
            bad: 'G'
        }
    );
    assert!(err.to_string().contains("lowercase"), "{err}");
    assert!("a/b".parse::<PoolName>().is_err());
    assert!("a b".parse::<PoolName>().is_err());
}

/// True if `t` is `delay` after some moment from `start` to now.
fn after(t: Option<Instant>, start: Instant, delay: Duration) -> bool {
    t.is_some_and(|t| t >= start + delay && t <= Instant::now() + delay)
}

#[test]
fn announcements_and_lookups_are_scheduled() {
    let start = Instant::now();
    let pool: PoolName = "p".parse().unwrap();
    // Nothing to do: no deadline ever.
    let mut idle = Discovery::new(&DiscoveryConfig::default());
    idle.on_routing();
    assert_eq!(idle.deadline(), None);

    let mut d = Discovery::new(&DiscoveryConfig {
        pools: vec![pool.clone()],
        find_pools: vec![pool],
        ..DiscoveryConfig::default()
    });
    // Lookups start even without a DHT peer; announcements wait for one.
    assert!(after(d.deadline(), start, FIND_FIRST_DELAY));
    assert_eq!(d.next_provide, None);
    d.on_routing();
    assert!(after(d.next_provide, start, SETTLE));
    assert!(after(d.next_find, start, SETTLE));
    // An announcement that reached nobody is retried sooner than the interval.
    d.next_provide = Some(start + PROVIDE_INTERVAL);
    d.on_announced(false);
    assert!(after(d.next_provide, start, PROVIDE_RETRY));
    assert_eq!(d.provided, 0);
    d.on_announced(true);
    assert_eq!(d.provided, 1);
}

#[test]
fn pool_keys_are_namespaced_hashes() {
    let a: PoolName = "gpu-a100".parse().unwrap();
    let b: PoolName = "gpu-h100".parse().unwrap();
    assert_eq!(a.key(), a.clone().key());
    assert_ne!(a.key(), b.key());
    assert_eq!(a.key().as_ref().len(), 32);
    let raw = Sha256::digest(b"/flotilla/pool/1/gpu-a100");
    assert_eq!(a.key().as_ref(), raw.as_slice());
}
