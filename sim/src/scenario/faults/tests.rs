//! Parsing of `include`, `[[faults]]`, `[expect]` and `[debug]`.

use std::time::Duration;

use super::super::Scenario;
use super::*;

const BASE: &str = "name = \"t\"\nduration_s = 200\n[peers]\ncount = 10\n";

fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&format!("{BASE}{extra}"), "x.toml")
}

fn err(extra: &str) -> (usize, String) {
    match parse(extra) {
        Ok(_) => panic!("expected an error for:\n{extra}"),
        Err(e) => (e.line().unwrap_or(0), e.to_string()),
    }
}

#[test]
fn every_kind_parses() {
    let s = parse(
        "[[faults]]\nkind = \"partition\"\nregions_a = [\"eu-west\"]\nnodes_b = [1]\none_way = true\nat_s = 10\nduration_s = 5\n\
         [[faults]]\nkind = \"crash\"\ncount = 2\nat_s = 20\nuntil_s = 30\nrestart_after_s = 7\n\
         [[faults]]\nkind = \"loss\"\nprobability = 0.5\nat_s = 1\nuntil_s = 2\n\
         [[faults]]\nkind = \"clock_skew\"\nnodes = [3]\noffset_ms = -1.5\nat_s = 0\n\
         [expect]\nliveness_s = 30\nconnected_fraction_min = 0.9\n",
    )
    .unwrap();
    assert_eq!(s.faults.len(), 4);
    assert_eq!(s.faults[0].until, Some(Duration::from_secs(15)));
    assert!(matches!(
        &s.faults[0].kind,
        FaultKind::Partition { a: Side::Regions(_), b: Some(Side::Nodes(n)), one_way: true } if n == &[1]
    ));
    assert_eq!(
        s.faults[3].kind,
        FaultKind::ClockSkew {
            nodes: vec![3],
            offset_us: -1500
        }
    );
    assert_eq!(s.fault_phase_end(), Duration::from_secs(37));
    assert_eq!(s.expect.liveness, Some(Duration::from_secs(30)));
    assert_eq!(s.faults_node_max(), Some(3));
}

#[test]
fn bad_faults_name_their_line_and_key() {
    let (line, msg) =
        err("[[faults]]\nkind = \"crash\"\nat_s = 1\nprobability = 0.1\nnodes = [1]\n");
    assert_eq!(line, 8, "{msg}");
    assert!(
        msg.contains("`probability` does not apply to a `crash` fault"),
        "{msg}"
    );
    let (line, msg) = err("[[faults]]\nkind = \"flood\"\nat_s = 1\n");
    assert_eq!(line, 6, "{msg}");
    assert!(msg.contains("partition, crash, loss, clock_skew"), "{msg}");
    let (_, msg) = err("[[faults]]\nkind = \"crash\"\nat_s = 1\nnodes = [10]\n");
    assert!(msg.contains("peers are numbered 0 to 9"), "{msg}");
    let (_, msg) = err("[[faults]]\nkind = \"partition\"\nat_s = 300\nnodes_a = [1]\n");
    assert!(
        msg.contains("`faults.0.at_s` must be from 0 to 200"),
        "{msg}"
    );
    let (_, msg) = err("[[faults]]\nkind = \"crash\"\ncount = 2\nat_s = 1\n");
    assert!(msg.contains("needs a window"), "{msg}");
    let (_, msg) = err("[[faults]]\nkind = \"loss\"\nprobability = 1.5\nat_s = 1\n");
    assert!(msg.contains("probability"), "{msg}");
}

#[test]
fn a_liveness_bound_must_fit_after_the_fault_phase() {
    let (line, msg) = err(
        "[[faults]]\nkind = \"partition\"\nnodes_a = [1]\nat_s = 10\nuntil_s = 190\n[expect]\nliveness_s = 20\n",
    );
    assert_eq!(line, 11, "{msg}");
    assert!(msg.contains("fault phase (190 s)"), "{msg}");
}

#[test]
fn debug_keys_parse() {
    let s = parse("[debug]\nfail_invariant_after_s = 3\npanic_after_s = 4\n").unwrap();
    assert_eq!(s.debug.fail_invariant_after, Some(Duration::from_secs(3)));
    assert_eq!(s.debug.panic_after, Some(Duration::from_secs(4)));
}

#[test]
fn includes_merge_and_name_the_file_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.toml");
    std::fs::write(&base, "name = \"b\"\nduration_s = 60\n[peers]\ncount = 10\nbootstrap = 2\n[node]\nlow_watermark = 3\nhigh_watermark = 9\n").unwrap();
    let top = dir.path().join("top.toml");
    std::fs::write(
        &top,
        "include = \"base.toml\"\nname = \"top\"\n[node]\nhigh_watermark = 7\n",
    )
    .unwrap();
    let s = Scenario::load(&top).unwrap();
    assert_eq!((s.name.as_str(), s.peers.bootstrap), ("top", 2));
    assert_eq!((s.node.low_watermark, s.node.high_watermark), (3, 7));

    std::fs::write(
        &top,
        "include = \"base.toml\"\n[node]\nhigh_watermark = 7\nlow_watermark = 8\n",
    )
    .unwrap();
    let e = Scenario::load(&top).unwrap_err().to_string();
    assert!(e.contains("top.toml:4:"), "{e}");
    std::fs::write(&top, "include = \"base.toml\"\n[peers]\ncount = 1\n").unwrap();
    let e = Scenario::load(&top).unwrap_err().to_string();
    assert!(
        e.contains("top.toml:3:") && e.contains("peers.count"),
        "{e}"
    );
    std::fs::write(
        &base,
        "name = \"b\"\nduration_s = 60\n[peers]\ncount = 10\npears = 1\n",
    )
    .unwrap();
    let e = Scenario::load(&top).unwrap_err().to_string();
    assert!(
        e.contains("base.toml:5:") && e.contains("unknown key `pears`"),
        "{e}"
    );
}

#[test]
fn include_cycles_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "include = \"b.toml\"\nname = \"a\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.toml"), "include = \"a.toml\"\n").unwrap();
    let e = Scenario::load(dir.path().join("a.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("include cycle:") && e.contains("remove one"),
        "{e}"
    );
    std::fs::write(dir.path().join("a.toml"), "include = \"missing.toml\"\n").unwrap();
    let e = Scenario::load(dir.path().join("a.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("a.toml:1: cannot read included file"), "{e}");
}
