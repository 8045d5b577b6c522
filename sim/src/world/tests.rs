//! World building: determinism, placement and the latency model.

use rand::SeedableRng;

use super::*;

fn scenario(count: usize, extra: &str) -> Scenario {
    let text = format!(
        "name = \"w\"\nduration_s = 100\n[peers]\ncount = {count}\nbootstrap = 3\nstart_spread_s = 50\n{extra}"
    );
    Scenario::parse(&text, "w.toml").unwrap()
}

#[test]
fn same_seed_same_world_other_seed_other_world() {
    let s = scenario(50, "");
    let (a, b, c) = (
        World::build(&s, 1, sim_addr),
        World::build(&s, 1, sim_addr),
        World::build(&s, 2, sim_addr),
    );
    let facts = |w: &World| -> Vec<(PeerId, usize, Duration, Duration)> {
        w.peers()
            .iter()
            .map(|p| (p.peer_id, p.region, p.last_mile, p.start_offset))
            .collect()
    };
    assert_eq!(facts(&a), facts(&b));
    assert_ne!(facts(&a), facts(&c));
    for (p, q) in a.peers().iter().zip(b.peers()) {
        assert_eq!(p.config, q.config);
        assert_eq!(p.protocol_seed, q.protocol_seed);
    }
    // The key is the one the seed tree prescribes.
    let expected = Keypair::generate(&mut SeedTree::new(1).child(7).child(PURPOSE_KEY).rng());
    assert_eq!(a.peer(7).peer_id, expected.peer_id());
}

#[test]
fn peers_get_addresses_bootstrap_lists_and_start_offsets() {
    let w = World::build(
        &scenario(20, "[bootstrap_node]\nhigh_watermark = 200\n"),
        3,
        sim_addr,
    );
    let boot: Vec<BootstrapPeer> = (0..3)
        .map(|b| BootstrapPeer {
            addr: sim_addr(b),
            peer_id: Some(w.peer(b).peer_id),
        })
        .collect();
    for p in w.peers() {
        assert_eq!(p.config.listen_addrs, vec![sim_addr(p.index)]);
        assert_eq!(p.config.bootstrap, boot);
        assert_eq!(p.config.region.as_deref(), Some(w.region_name(p.index)));
        assert_eq!(p.bootstrap, p.index < 3);
        assert!(p.start_offset < Duration::from_secs(50));
        assert!(
            p.last_mile >= Duration::from_millis(5) && p.last_mile <= Duration::from_millis(30)
        );
        assert_eq!(w.index_of(&p.peer_id), Some(p.index));
        assert_eq!(w.index_of_addr(&sim_addr(p.index)), Some(p.index));
    }
    assert!(w.peers()[..3].iter().all(|p| p.start_offset.is_zero()));
    assert!(
        w.peers()[..3]
            .iter()
            .all(|p| p.config.high_watermark == 200),
        "bootstrap profile"
    );
    assert!(
        w.peers()[3..]
            .iter()
            .all(|p| p.config.high_watermark == Config::default().high_watermark)
    );
    assert!(w.peers()[3..].iter().any(|p| !p.start_offset.is_zero()));
    assert_eq!(w.index_of_addr("/dns4/n99/tcp/4001"), None);
    assert_eq!(World::epoch(), Timestamp::from_secs(1_767_225_600));
}

#[test]
fn regions_follow_the_weights() {
    let w = World::build(
        &scenario(3000, "[regions]\neu-west = 3\nea-jp = 1\n"),
        5,
        sim_addr,
    );
    let eu = w.data().index_of("eu-west").unwrap();
    let jp = w.data().index_of("ea-jp").unwrap();
    let in_eu = w.peers().iter().filter(|p| p.region == eu).count();
    assert!(w.peers().iter().all(|p| p.region == eu || p.region == jp));
    assert!(
        (2100..2400).contains(&in_eu),
        "{in_eu} of 3000 in eu-west, expected about 2250"
    );
}

#[test]
fn delays_follow_the_matrix_plus_last_miles_and_jitter() {
    let s = scenario(40, "[latency]\njitter_ms = 4\nlast_mile_ms = [10, 10]\n");
    let w = World::build(&s, 9, sim_addr);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for a in 0..w.len() {
        for b in 0..w.len() {
            let region_rtt = w.data().rtt_us(w.peer(a).region, w.peer(b).region) as u64;
            assert_eq!(w.rtt_us(a, b), region_rtt + 20_000);
            assert_eq!(w.rtt(a, b), w.rtt(b, a));
            let d = w.one_way_us(a, b, &mut rng);
            assert!(
                d >= w.rtt_us(a, b) / 2 && d <= w.rtt_us(a, b) / 2 + 4_000,
                "{d}"
            );
        }
    }
    let quiet = World::build(&scenario(4, "[latency]\njitter_ms = 0\n"), 9, sim_addr);
    assert_eq!(quiet.one_way(0, 1, &mut rng), quiet.rtt(0, 1) / 2);
}

#[test]
fn nodes_start_with_their_identity_and_config() {
    let w = World::build(&scenario(5, ""), 4, sim_addr);
    let node = w.new_node(2, World::epoch());
    assert_eq!(node.peer_id(), w.peer(2).peer_id);
    assert_eq!(node.config(), &w.peer(2).config);
}

#[test]
fn every_peer_id_maps_back_to_its_index() {
    let w = World::build(&scenario(200, ""), 4, sim_addr);
    let ids = w.peer_ids();
    assert_eq!(ids.len(), 200);
    for p in w.peers() {
        assert_eq!(w.index_of(&p.peer_id), Some(p.index));
    }
}
