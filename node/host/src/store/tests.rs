//! The local store: records, transitions, reopening, schema versions.

use super::*;

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
        e.contains("schema version 2, newer than this build's 1"),
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
