//! The local store: records, transitions, reopening, schema versions.

use flotilla_core::capacity::Capacity;

use super::*;
use crate::onboarding::Registered;

fn new<'a>(kind: Kind, id: &'a str, state: &'a str, at_us: u64) -> NewRecord<'a> {
    NewRecord {
        kind,
        id,
        peer: None,
        spec: "{}",
        state,
        detail: "",
        at_us,
    }
}

#[test]
fn records_and_transitions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        let mut s = Store::open(&path).unwrap();
        s.insert(NewRecord {
            peer: Some("12D3KooWsp"),
            spec: r#"{"image":"busybox"}"#,
            detail: "requested",
            ..new(Kind::Allocation, "a1", "pending", 10)
        })
        .unwrap();
        assert_eq!(
            s.transition(Kind::Allocation, "a1", "running", "container started", 20)
                .unwrap(),
            "pending"
        );
        s.insert(new(Kind::Deployment, "d1", "preparing", 15))
            .unwrap();
        // Dropped without any close: every change that returned is on disk.
    }
    let s = Store::open(&path).unwrap();
    let a = s.get(Kind::Allocation, "a1").unwrap().unwrap();
    assert_eq!(
        (
            a.state.as_str(),
            a.peer.as_deref(),
            a.created_at_us,
            a.updated_at_us
        ),
        ("running", Some("12D3KooWsp"), 10, 20)
    );
    assert_eq!(a.spec, r#"{"image":"busybox"}"#);
    let h = s.history(Kind::Allocation, "a1").unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!((h[0].from.as_deref(), h[0].to.as_str()), (None, "pending"));
    assert_eq!(
        (h[1].from.as_deref(), h[1].to.as_str(), h[1].detail.as_str()),
        (Some("pending"), "running", "container started")
    );
    // Kinds are apart: the same id may name an allocation and a deployment.
    assert!(s.get(Kind::Deployment, "a1").unwrap().is_none());
    assert_eq!(s.list(Kind::Deployment, None).unwrap().len(), 1);
}

#[test]
fn lists_filter_by_state_oldest_first() {
    let mut s = Store::in_memory().unwrap();
    for (id, at) in [("c", 3), ("a", 1), ("b", 1)] {
        s.insert(new(Kind::Allocation, id, "pending", at)).unwrap();
    }
    s.transition(Kind::Allocation, "b", "running", "", 5)
        .unwrap();
    let ids = |v: Vec<Record>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list(Kind::Allocation, None).unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        ids(s.list(Kind::Allocation, Some(&["pending"])).unwrap()),
        ["a", "c"]
    );
    assert_eq!(
        ids(s
            .list(Kind::Allocation, Some(&["running", "stopped"]))
            .unwrap()),
        ["b"]
    );
}

#[test]
fn duplicates_and_unknown_ids_are_errors_that_change_nothing() {
    let mut s = Store::in_memory().unwrap();
    s.insert(new(Kind::Deployment, "d", "preparing", 1))
        .unwrap();
    let e = s
        .insert(new(Kind::Deployment, "d", "running", 2))
        .unwrap_err();
    assert_eq!(e.to_string(), "deployment `d` is already stored");
    let e = s
        .transition(Kind::Allocation, "nope", "running", "", 3)
        .unwrap_err();
    assert_eq!(e.to_string(), "no allocation `nope` is stored");
    let d = s.get(Kind::Deployment, "d").unwrap().unwrap();
    assert_eq!(d.state, "preparing");
    assert_eq!(s.history(Kind::Deployment, "d").unwrap().len(), 1);
}

#[test]
fn a_store_from_a_later_release_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        let mut s = Store::open(&path).unwrap();
        s.insert(new(Kind::Allocation, "keep", "running", 1))
            .unwrap();
        s.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let e = Store::open(&path).unwrap_err().to_string();
    assert!(
        e.contains("schema version 3, newer than this build's 2"),
        "{e}"
    );
    assert!(e.contains("left untouched"), "{e}");
    // The data is still there for the release that wrote it.
    let conn = Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM record", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn an_unwritable_place_is_a_clear_error() {
    let e = Store::open(Path::new("/proc/flotilla-no-such-dir/node.sqlite"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot open the local store /proc/"), "{e}");
    assert!(e.contains("writable"), "{e}");
}

fn onboarding(cores: u64) -> Onboarding {
    let capacity = Capacity {
        millicores: 8000,
        memory_mb: 16384,
        disk_gb: 100,
        gpus: 1,
    };
    Onboarding {
        registered: Registered {
            capacity,
            cpu_score: 812,
            measured_at_us: 1_700_000_000_000_000,
        },
        onboarded: Capacity {
            millicores: cores,
            ..capacity
        },
    }
}

#[test]
fn the_onboarding_round_trips_and_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.onboarding().unwrap(), None);
        s.set_onboarding(&onboarding(4000), 10).unwrap();
        assert_eq!(s.onboarding().unwrap(), Some(onboarding(4000)));
        s.set_onboarding(&onboarding(1500), 20).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.onboarding().unwrap(), Some(onboarding(1500)));
    let (rows, at): (i64, i64) = s
        .conn
        .query_row(
            "SELECT COUNT(*), MAX(updated_at_us) FROM onboarding",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, at), (1, 20));
}

#[test]
fn an_unreadable_onboarding_says_how_to_rewrite_it() {
    let s = Store::in_memory().unwrap();
    s.conn
        .execute(
            "INSERT INTO onboarding VALUES (1, '{\"capacity\": 3}', '{}', 1)",
            [],
        )
        .unwrap();
    let e = s.onboarding().unwrap_err().to_string();
    assert!(
        e.starts_with("the onboarding stored in the local store is unreadable"),
        "{e}"
    );
    assert!(e.contains("flotilla onboard --remeasure"), "{e}");
}

#[test]
fn a_schema_1_store_is_upgraded_keeping_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STORE_FILE);
    {
        // Exactly what the release writing schema 1 created.
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
            "INSERT INTO record VALUES ('allocation', 'a1', 'p', '{}', 'running', 1, 2);
             INSERT INTO transition (kind, id, at_us, from_state, to_state, detail)
                 VALUES ('allocation', 'a1', 1, NULL, 'pending', 'requested'),
                        ('allocation', 'a1', 2, 'pending', 'running', 'started');
             INSERT INTO record VALUES ('deployment', 'd1', NULL, '{}', 'preparing', 3, 3);",
        )
        .unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }
    let mut s = Store::open(&path).unwrap();
    let v: i64 = s
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let a = s.get(Kind::Allocation, "a1").unwrap().unwrap();
    assert_eq!(
        (a.state.as_str(), a.peer.as_deref()),
        ("running", Some("p"))
    );
    let h = s.history(Kind::Allocation, "a1").unwrap();
    assert_eq!(
        h.iter().map(|t| t.to.as_str()).collect::<Vec<_>>(),
        ["pending", "running"]
    );
    assert_eq!(s.list(Kind::Deployment, None).unwrap().len(), 1);
    assert_eq!(s.onboarding().unwrap(), None);
    s.set_onboarding(&onboarding(2000), 5).unwrap();
    s.insert(new(Kind::Allocation, "a2", "pending", 6)).unwrap();
    drop(s);
    // Reopening an upgraded store changes nothing.
    let s = Store::open(&path).unwrap();
    assert_eq!(s.onboarding().unwrap(), Some(onboarding(2000)));
    assert_eq!(s.list(Kind::Allocation, None).unwrap().len(), 2);
}
