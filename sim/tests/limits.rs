//! Resource limits in scenario profiles: a node whose system scope takes one inbound
//! connection refuses the others, its dialers' dials fail naming the resource, the
//! `usage-within-limits` invariant holds, and the summary counts the refusals. Limits
//! that can never be met are refused at parse time, naming the file, line and key.

use flotilla_sim::{EngineKind, Scenario, Trace, runner};

/// Six peers; the bootstrap node (n0), which every peer dials first, takes one inbound
/// connection at a time.
const TIGHT: &str = "\
name = \"tight\"
seed = 3
duration_s = 60

[peers]
count = 6
bootstrap = 1
start_spread_s = 5

[regions]
eu-west = 1

[node]
ping_interval_s = 5
ping_timeout_s = 2

[bootstrap_node.limits.system]
conns_in = 1
";

fn tight_run(engine: EngineKind) {
    let s = Scenario::parse(TIGHT, "tight.toml").expect("the scenario parses");
    assert!(s.reports_rcmgr());
    assert_eq!(s.bootstrap_node_limits.limits.system.conns_in, 1);
    assert_eq!(s.node_limits.limits.system.conns_in, 4096);
    let out = runner::run_checked(&s, s.seed, engine, Trace::new).expect("the run finishes");
    assert!(out.failure.is_none(), "{engine}: {:?}", out.failure);
    let text = String::from_utf8_lossy(out.result.trace.text()).into_owned();
    let refused_dials = text
        .lines()
        .filter(|l| l.contains(" dial-failed n0 limit:system.conns_in"))
        .count();
    assert!(
        refused_dials > 0,
        "{engine}: no dial refused by n0:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" n0 refused system.conns_in=")),
        "{engine}: no refused line for n0"
    );
    let rcmgr = out
        .summary
        .rcmgr
        .expect("the summary reports the resource managers");
    assert!(
        rcmgr.refused["system.conns_in"] >= refused_dials as u64,
        "{engine}: {rcmgr:?}"
    );
    assert!(
        rcmgr
            .refused_by_node
            .iter()
            .all(|r| r.node == 0 && r.refused == "system.conns_in"),
        "{engine}: {rcmgr:?}"
    );
    // The one connection n0 takes is served: its pings are answered.
    assert!(rcmgr.honest_pongs > 0, "{engine}");
}

#[test]
fn a_tight_system_scope_refuses_connections_on_the_fleet_engine() {
    tight_run(EngineKind::Fleet);
}

#[test]
fn a_tight_system_scope_refuses_connections_on_the_turmoil_engine() {
    tight_run(EngineKind::Turmoil);
}

#[test]
fn default_limits_refuse_nothing_and_report_nothing() {
    let text = TIGHT.replace("[bootstrap_node.limits.system]\nconns_in = 1\n", "");
    let s = Scenario::parse(&text, "loose.toml").expect("the scenario parses");
    assert!(!s.reports_rcmgr());
    let out =
        runner::run_checked(&s, s.seed, EngineKind::Fleet, Trace::new).expect("the run finishes");
    assert!(out.failure.is_none(), "{:?}", out.failure);
    assert!(out.summary.rcmgr.is_none());
    assert!(out.result.rcmgr.refused.is_empty());
}

fn error_of(extra: &str) -> (usize, String) {
    let text = format!("{TIGHT}{extra}");
    match Scenario::parse(&text, "x.toml") {
        Ok(_) => panic!("expected an error for\n{extra}"),
        Err(e) => (e.line().unwrap_or(0), e.to_string()),
    }
}

#[test]
fn impossible_limits_name_their_file_line_and_key() {
    // TIGHT has 18 lines.
    let (line, msg) = error_of("[node.limits.peer]\nmemory = 1099511627776\n");
    assert_eq!(line, 20, "{msg}");
    assert!(msg.starts_with("x.toml:20: "), "{msg}");
    assert!(msg.contains("node.limits.peer.memory"), "{msg}");
    assert!(msg.contains("node.limits.system.memory"), "{msg}");
    let (line, msg) = error_of("[node.limits.sytem]\nconns_in = 1\n");
    assert_eq!(line, 19, "{msg}");
    assert!(msg.contains("unknown key `sytem`"), "{msg}");
    let (line, msg) = error_of("[node.limits.system]\nconns_in = -1\n");
    assert_eq!(line, 20, "{msg}");
    assert!(msg.contains("negative"), "{msg}");
    let (line, msg) = error_of("[bootstrap_node]\nfd_limit = 0\n");
    assert_eq!(line, 20, "{msg}");
    assert!(
        msg.contains("`bootstrap_node.fd_limit` must be at least 1"),
        "{msg}"
    );
}

#[test]
fn attack_workload_keys_are_checked() {
    let flood = "[[workload]]\nkind = \"connect\"\nat_s = 1\nrate_per_s = 1\nnodes = [1]\n";
    let (line, msg) = error_of(&format!("{flood}targets = [2]\n"));
    assert!(msg.contains("needs `workload.0.hold_s`"), "{msg}");
    assert_eq!(line, 19, "{msg}");
    let (_, msg) = error_of(&format!("{flood}hold_s = 5\n"));
    assert!(msg.contains("exactly one of `targets`"), "{msg}");
    let (line, msg) = error_of(&format!(
        "{flood}hold_s = 5\ntargets = [2]\nmemory_bytes = 4\n"
    ));
    assert!(
        msg.contains("`workload.0.memory_bytes` applies only to kind streams"),
        "{msg}"
    );
    assert_eq!(line, 26, "{msg}");
    let (_, msg) = error_of(&format!("{flood}hold_s = 5\ntargets = [2]\nuntil_s = 1\n"));
    assert!(msg.contains("must be later than"), "{msg}");
    let (_, msg) = error_of(&format!("{flood}hold_s = 5\ntargets_class = \"x\"\n"));
    assert!(msg.contains("names no class"), "{msg}");
    let ok = format!("{TIGHT}{flood}hold_s = 5\ntargets = [2]\nhandshake = true\n");
    let s = Scenario::parse(&ok, "ok.toml").expect("the scenario parses");
    assert!(s.workload[0].handshake);
    assert!(s.reports_rcmgr());
}
