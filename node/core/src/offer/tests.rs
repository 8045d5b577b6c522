//! Each reason not to bid, quotes, and the ranking order.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::capacity::AllocationId;
use crate::time::Timestamp;

fn spec(extra: &str) -> JobSpec {
    let text = format!(
        "image = \"busybox\"\nduration_s = 3600\n{extra}\n[resources]\ncores = 1\nmemory_mb = 512\n"
    );
    JobSpec::from_toml_str(&text, Path::new("job.toml")).unwrap()
}

fn ledger() -> Ledger {
    let c = Capacity {
        millicores: 4000,
        memory_mb: 4096,
        disk_gb: 10,
        gpus: 0,
    };
    let mut l = Ledger::new(c, None);
    l.onboard(c).unwrap();
    l
}

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key([n; 32])
}

fn bid(n: u8, price: u64) -> Bid {
    Bid {
        peer: peer(n),
        price_micros_per_core_hour: price,
    }
}

#[test]
fn a_job_that_fits() {
    let prefs = Preferences::new(10, ["docker", "sim"]);
    assert_eq!(fits(&spec(""), &ledger(), &prefs), Ok(()));
    let docker = spec("[constraints]\nexecutor = \"docker\"");
    assert_eq!(fits(&docker, &ledger(), &prefs), Ok(()));
}

#[test]
fn executor_must_be_offered() {
    let prefs = Preferences::new(10, ["sim"]);
    let docker = spec("[constraints]\nexecutor = \"docker\"");
    let e = fits(&docker, &ledger(), &prefs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "executor `docker` is not offered (offered: sim)"
    );
    let none = Preferences::new(10, []);
    assert_eq!(fits(&spec(""), &ledger(), &none), Err(WhyNot::NoExecutor));
}

#[test]
fn region_must_match() {
    let mut prefs = Preferences::new(10, ["docker"]);
    let eu = spec("[constraints]\nregion = [\"eu-west\", \"eu-north\"]");
    let e = fits(&eu, &ledger(), &prefs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "region unknown is not among the job's regions (eu-west, eu-north)"
    );
    prefs.region = Some("us-east".into());
    assert!(matches!(
        fits(&eu, &ledger(), &prefs),
        Err(WhyNot::Region { .. })
    ));
    prefs.region = Some("eu-north".into());
    assert_eq!(fits(&eu, &ledger(), &prefs), Ok(()));
    assert_eq!(
        fits(&spec(""), &ledger(), &prefs),
        Ok(()),
        "no constraint: anywhere"
    );
}

#[test]
fn minimum_size_and_duration() {
    let mut prefs = Preferences::new(10, ["docker"]);
    prefs.resources_min.memory_mb = 1024;
    let e = fits(&spec(""), &ledger(), &prefs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "job is below the minimum size: memory_mb 512 asked, at least 1024 accepted"
    );
    prefs.resources_min.memory_mb = 512;
    prefs.duration_s_min = 7200;
    let e = fits(&spec(""), &ledger(), &prefs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "job is too short: duration_s 3600 asked, at least 7200 accepted"
    );
    prefs.duration_s_min = 3600;
    assert_eq!(fits(&spec(""), &ledger(), &prefs), Ok(()));
}

#[test]
fn capacity_must_be_available() {
    let prefs = Preferences::new(10, ["docker"]);
    let mut l = ledger();
    let most = Capacity {
        millicores: 3500,
        memory_mb: 1,
        disk_gb: 0,
        gpus: 0,
    };
    l.lock(AllocationId(1), most, Timestamp::from_secs(10))
        .unwrap();
    let e = fits(&spec(""), &l, &prefs).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not enough capacity: millicores: 1000 asked, 500 available"
    );
    l.expire(Timestamp::from_secs(10));
    assert_eq!(fits(&spec(""), &l, &prefs), Ok(()));
}

#[test]
fn quotes_are_exact_and_round_up() {
    let prefs = Preferences::new(3_600_000, ["docker"]);
    // One core for one hour.
    assert_eq!(prefs.quote_micros(&spec("")), Some(3_600_000));
    let cheap = Preferences::new(1, ["docker"]);
    let short = JobSpec {
        duration_s: 1,
        ..spec("")
    };
    assert_eq!(
        cheap.quote_micros(&short),
        Some(1),
        "a fraction of a micro rounds up"
    );
    let huge = Preferences::new(u64::MAX, ["docker"]);
    let big = JobSpec {
        duration_s: 604_800,
        ..spec("")
    };
    assert_eq!(huge.quote_micros(&big), None);
}

#[test]
fn preferences_parse_from_toml() {
    let p: Preferences = toml::from_str(
        "price_micros_per_core_hour = 5\nexecutors = [\"docker\"]\nregion = \"eu\"\n\
         [resources_min]\nmillicores = 500\n",
    )
    .unwrap();
    assert_eq!(p.resources_min.millicores, 500);
    assert!(toml::from_str::<Preferences>("price = 5\nexecutors = []\n").is_err());
    let e = toml::from_str::<Preferences>(
        "price_micros_per_core_hour = 5\nexecutors = []\nresources_min = { cores = 1 }\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `cores`"), "{e}");
}

#[test]
fn rank_by_price_then_latency_then_peer() {
    let rtt = BTreeMap::from([
        (peer(1), Duration::from_millis(30)),
        (peer(2), Duration::from_millis(10)),
        (peer(3), Duration::from_millis(10)),
    ]);
    let bids = vec![bid(4, 5), bid(1, 5), bid(3, 5), bid(2, 5), bid(9, 1)];
    let order: Vec<PeerId> = rank(bids, &rtt).into_iter().map(|b| b.peer).collect();
    // 9 is cheapest; among price 5: 2 and 3 (10 ms, by id), 1 (30 ms), 4 (unmeasured).
    assert_eq!(order, [peer(9), peer(2), peer(3), peer(1), peer(4)]);
}

proptest! {
    /// The ranking does not depend on the order the bids arrived in.
    #[test]
    fn rank_ignores_arrival_order(
        prices in proptest::collection::vec((0..20u8, 0..4u64), 0..30),
        seed in any::<u64>(),
    ) {
        let rtt: BTreeMap<PeerId, Duration> = (0..10u8)
            .map(|n| (peer(n), Duration::from_millis(u64::from(n % 3))))
            .collect();
        let bids: Vec<Bid> = prices.iter().map(|&(n, p)| bid(n, p)).collect();
        let mut shuffled = bids.clone();
        // A deterministic shuffle drawn from the case's seed.
        let len = shuffled.len();
        let mut s = seed;
        for i in (1..len).rev() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let j = usize::try_from(s >> 33).unwrap() % (i + 1);
            shuffled.swap(i, j);
        }
        let a = rank(bids, &rtt);
        let b = rank(shuffled, &rtt);
        prop_assert_eq!(&a, &b);
        prop_assert!(a.windows(2).all(|w| w[0].price_micros_per_core_hour <= w[1].price_micros_per_core_hour));
    }
}
