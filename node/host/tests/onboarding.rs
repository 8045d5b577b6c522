//! `flotilla onboard`, `resources` and `offboard` on a temporary data directory: the real
//! binary, the real machine, one measurement.

use std::path::Path;
use std::process::{Command, Output};

use flotilla_core::capacity::Capacity;
use flotilla_node::onboarding::{Onboarding, ResourcesReport};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn flotilla(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the flotilla binary runs")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = flotilla(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "flotilla {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn stored(dir: &Path) -> Option<Onboarding> {
    let report: ResourcesReport =
        serde_json::from_str(&ok(dir, &["resources", "--json"])).expect("resources --json is JSON");
    assert_eq!(report.live, None, "no node runs here");
    report.stored
}

#[test]
fn onboard_half_show_it_then_offboard() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    assert_eq!(stored(&dir), None);
    let text = ok(&dir, &["resources"]);
    assert!(text.starts_with("not onboarded yet"), "{text}");

    let text = ok(&dir, &["onboard", "--share", "50%"]);
    assert!(text.starts_with("onboarded "), "{text}");
    let o = stored(&dir).expect("onboarded");
    let r = o.registered.capacity;
    assert!(r.millicores >= 1000 && r.memory_mb > 0, "{o:?}");
    assert!(o.registered.cpu_score > 0, "{o:?}");
    assert_eq!(
        o.onboarded,
        Capacity {
            millicores: r.millicores / 2,
            memory_mb: r.memory_mb / 2,
            disk_gb: r.disk_gb / 2,
            gpus: r.gpus / 2,
        }
    );
    let table = ok(&dir, &["resources"]);
    for line in [
        "RESOURCE",
        "cores",
        "memory MiB",
        "disk GiB",
        "gpus",
        "cpu score:",
    ] {
        assert!(table.contains(line), "{line} missing from:\n{table}");
    }
    let cores_row = table
        .lines()
        .find(|l| l.starts_with("cores"))
        .expect("a cores row");
    let cells: Vec<&str> = cores_row.split_whitespace().collect();
    assert_eq!(
        cells[1..],
        [
            flotilla_node::onboarding::thousandths(r.millicores),
            flotilla_node::onboarding::thousandths(r.millicores / 2)
        ]
    );

    // Above the machine: refused, naming the flag and what the machine has; nothing changes.
    let out = flotilla(&dir, &["onboard", "--cores", "100000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cores 100000 is above the"), "{err}");
    assert!(
        err.contains("cores this machine has; give at most"),
        "{err}"
    );
    assert_eq!(stored(&dir), Some(o));

    // Onboarding again reuses the measurement.
    ok(&dir, &["onboard", "--cores", "1", "--memory-mb", "1"]);
    let again = stored(&dir).expect("onboarded");
    assert_eq!(again.registered, o.registered);
    assert_eq!(
        (again.onboarded.millicores, again.onboarded.memory_mb),
        (1000, 1)
    );
    assert_eq!(again.onboarded.disk_gb, r.disk_gb, "not given: all of it");

    let text = ok(&dir, &["offboard"]);
    assert!(text.starts_with("offboarded"), "{text}");
    let off = stored(&dir).expect("still registered");
    assert_eq!(off.onboarded, Capacity::ZERO);
    assert_eq!(off.registered, o.registered);
}

#[test]
fn offboarding_a_node_never_onboarded_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let text = ok(tmp.path(), &["offboard"]);
    assert_eq!(
        text.trim(),
        "nothing to offboard: this node was never onboarded"
    );
}
