use super::*;

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key([n; 32])
}

fn secs(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn manager(low: usize, high: usize) -> ConnManager {
    ConnManager::new(ConnManagerConfig {
        low_watermark: low,
        high_watermark: high,
        grace: Duration::from_secs(30),
        quiet: Duration::from_secs(10),
        pressure_per_mille: 900,
    })
}

#[test]
fn trims_to_the_low_watermark_in_one_batch_lowest_score_first() {
    let mut m = manager(3, 5);
    for n in 1..=6 {
        m.connected(peer(n), secs(0));
    }
    assert_eq!(
        m.trim_due(secs(100), 6, 1000),
        Some(TrimCause::HighWatermark)
    );
    // Score: the peer number; peers 1, 2, 3 score lowest.
    let victims = m.trim(secs(100), |p| i64::from(p.public_key()[0]));
    assert_eq!(victims, vec![peer(1), peer(2), peer(3)]);
    for v in &victims {
        m.disconnected(v);
    }
    assert_eq!(m.len(), 3);
    assert_eq!(m.trims(), 1);
}

#[test]
fn a_trim_is_due_at_the_high_watermark_not_below() {
    let mut m = manager(2, 4);
    for n in 1..=3 {
        m.connected(peer(n), secs(0));
    }
    assert_eq!(m.trim_due(secs(100), 3, 1000), None);
    m.connected(peer(4), secs(0));
    assert_eq!(
        m.trim_due(secs(100), 4, 1000),
        Some(TrimCause::HighWatermark)
    );
}

#[test]
fn grace_protection_and_tags_keep_peers() {
    let mut m = manager(3, 4);
    for n in 1..=4 {
        m.connected(peer(n), secs(0));
    }
    m.connected(peer(5), secs(90)); // still in its grace period at 100 s
    assert!(m.protect(&peer(1)));
    m.tag(&peer(2), "job", 1000, Decay::None, secs(0));
    let victims = m.trim(secs(100), |_| 0);
    // Two must go: peer 1 is protected, 5 is new, 2 carries a tag; 3 and 4 go.
    assert_eq!(victims, vec![peer(3), peer(4)]);
    m.unprotect(&peer(1));
    assert!(!m.is_protected(&peer(1)));
    assert!(!m.protect(&peer(9)), "an unknown peer cannot be protected");
}

#[test]
fn quiet_period_and_pressure() {
    let mut m = manager(2, 10);
    for n in 1..=5 {
        m.connected(peer(n), secs(0));
    }
    // Below the high watermark, no pressure: nothing to do.
    assert_eq!(m.trim_due(secs(100), 5, 1000), None);
    // 900 of 1000 system connections held: trim early.
    assert_eq!(m.trim_due(secs(100), 900, 1000), Some(TrimCause::Pressure));
    assert_eq!(m.trim_due(secs(100), 5, u64::MAX), None);
    let victims = m.trim(secs(100), |_| 0);
    assert_eq!(victims.len(), 3);
    // Within the quiet period nothing is due, even above the high watermark.
    for n in 6..=20 {
        m.connected(peer(n), secs(101));
    }
    assert_eq!(m.trim_due(secs(105), 900, 1000), None);
    assert_eq!(
        m.trim_due(secs(110), 20, 1000),
        Some(TrimCause::HighWatermark)
    );
    // At the low watermark pressure alone does not trim.
    let mut m = manager(5, 10);
    for n in 1..=5 {
        m.connected(peer(n), secs(0));
    }
    assert_eq!(m.trim_due(secs(100), 999, 1000), None);
}

#[test]
fn tags_decay() {
    let mut m = manager(1, 2);
    m.connected(peer(1), secs(0));
    m.tag(
        &peer(1),
        "useful",
        64,
        Decay::Halve(Duration::from_secs(10)),
        secs(0),
    );
    m.tag(
        &peer(1),
        "recent",
        10,
        Decay::Linear {
            every: Duration::from_secs(1),
            step: 2,
        },
        secs(0),
    );
    assert_eq!(m.tag_value(&peer(1), secs(0)), 74);
    assert_eq!(m.tag_value(&peer(1), secs(3)), 64 + 4);
    assert_eq!(m.tag_value(&peer(1), secs(20)), 16);
    assert_eq!(m.tag_value(&peer(1), secs(1000)), 0);
    // Bumping restarts the decay from the current value.
    m.tag(
        &peer(1),
        "useful",
        8,
        Decay::Halve(Duration::from_secs(10)),
        secs(1000),
    );
    m.bump(&peer(1), "useful", 8, secs(1010));
    assert_eq!(m.tag_value(&peer(1), secs(1010)), 12);
    m.disconnected(&peer(1));
    assert_eq!(m.tag_value(&peer(1), secs(1010)), 0);
}

#[test]
fn validation_names_the_keys_to_change() {
    let limits = Limits::for_machine(8 << 30, 256);
    let ok = ConnManagerConfig {
        low_watermark: 8,
        high_watermark: 32,
        ..ConnManagerConfig::default()
    };
    ok.validate(&limits).unwrap();
    let e = ConnManagerConfig {
        high_watermark: 500,
        ..ok
    }
    .validate(&limits)
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "peers.high_watermark = 500 is above limits.system.conns = 128: the resource manager \
         would refuse connections before the connection manager trims; lower \
         peers.high_watermark or raise limits.system.conns"
    );
    let e = ConnManagerConfig {
        low_watermark: 40,
        ..ok
    }
    .validate(&limits)
    .unwrap_err();
    assert!(e.to_string().starts_with("peers.low_watermark = 40"), "{e}");
    let e = ConnManagerConfig {
        pressure_per_mille: 0,
        ..ok
    }
    .validate(&limits)
    .unwrap_err();
    assert!(e.to_string().contains("pressure_per_mille"), "{e}");
}
