//! Jobs on the fleet engine: a small deployment workload, churning providers; both
//! engines take `[jobs]`.

use crate::engine::EngineKind;
use crate::runner;
use crate::scenario::Scenario;
use crate::trace::Trace;

const SMALL: &str = r#"
name = "jobs"
seed = 3
duration_s = 400
[peers]
count = 30
bootstrap = 1
start_spread_s = 10
[regions]
eu-west = 1
na-east = 1
[jobs]
providers_count = 24
cores = 4
memory_mb = 8192
price = [100, 900]
service_providers = 4
start_delay_s = [0.5, 2]
run_time_s = [10, 40]
failure_probability = 0.1
log_lines = 2
deploy_at_s = 20
deploy_until_s = 140
deploy_every_s = 15
[[jobs.templates]]
cores = 1
memory_mb = 512
duration_s = 60
workers = 1
[[jobs.templates]]
cores = 2
memory_mb = 1024
duration_s = 90
workers = 2
[expect]
deployments_terminal = true
"#;

fn run(text: &str) -> runner::Outcome {
    let s = Scenario::parse(text, "jobs.toml").unwrap();
    runner::run_checked(&s, s.seed, EngineKind::Fleet, Trace::new).unwrap()
}

#[test]
fn a_small_workload_deploys_runs_and_ends_the_same_way_twice() {
    let a = run(SMALL);
    assert!(a.failure.is_none(), "{:?}", a.failure);
    let j = a.summary.jobs.clone().expect("a jobs summary");
    // 4 service providers, rounds at 20, 35, ..., 125 s (and staggered): 8 each.
    assert_eq!(j.deployments_asked + j.deploy_errors, 32, "{j:?}");
    let completed = j.by_state.get("completed").copied().unwrap_or(0);
    let failed = j.by_state.get("failed").copied().unwrap_or(0);
    assert_eq!(completed + failed, j.deployments_asked, "{j:?}");
    assert!(completed > 0 && j.running_reached > 0, "{j:?}");
    assert!(
        j.bids_sent > 0 && j.allocations_accepted > 0 && j.log_lines > 0,
        "{j:?}"
    );
    let text = String::from_utf8_lossy(a.result.trace.text()).into_owned();
    assert!(text.contains(" deployment #1 running"), "no deployment ran");
    assert!(text.contains(" allocation a1 "), "no allocation");
    let b = run(SMALL);
    assert_eq!(a.result.trace.text(), b.result.trace.text());
    assert_eq!(a.summary.to_json(), b.summary.to_json());
}

#[test]
fn deployments_on_churning_providers_still_end_by_their_deadlines() {
    let churn = SMALL
        .replace(
            "providers_count = 24",
            "provider_classes = [\"cp\"]",
        )
        .replace(
            "[jobs]",
            "[[classes]]\nname = \"cp\"\nweight = 0.8\nuptime_s = [20, 40]\ndowntime_s = [5, 10]\n[[classes]]\nname = \"sp\"\nweight = 0.2\n[jobs]",
        );
    let out = run(&churn);
    assert!(out.failure.is_none(), "{:?}", out.failure);
    let j = out.summary.jobs.expect("a jobs summary");
    let text = String::from_utf8_lossy(out.result.trace.text()).into_owned();
    assert!(text.contains(" crash running"), "no provider crashed");
    // Jobs that vanished with their provider end their deployments by a deadline.
    let by_deadline: u64 = ["run-timeout", "provision-timeout", "commit-timeout"]
        .iter()
        .filter_map(|k| j.failed_by_reason.get(*k))
        .sum();
    assert!(by_deadline > 0, "{j:?}");
}

#[test]
fn both_engines_take_jobs() {
    let s = Scenario::parse(SMALL, "jobs.toml").unwrap();
    assert!(runner::check_engine(&s, EngineKind::Turmoil).is_ok());
    assert!(runner::check_engine(&s, EngineKind::Fleet).is_ok());
}
