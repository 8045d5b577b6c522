//! `[jobs]` keys: a good section, and bad ones with their line and key.

use std::time::Duration;

use super::super::Scenario;
use super::Providers;

const JOBS: &str = r#"
[jobs]
providers_count = 6
cores = 4
memory_mb = 4096
price = [100, 200]
service_providers = 2
run_time_s = [5, 10]
deploy_at_s = 10
deploy_every_s = 5

[[jobs.templates]]
cores = 0.5
memory_mb = 256
duration_s = 30
workers = 2
"#;

fn text(jobs: &str, extra: &str) -> String {
    format!("name = \"t\"\nduration_s = 60\n[peers]\ncount = 10\n{extra}{jobs}")
}

fn err(text: &str) -> (usize, String) {
    match Scenario::parse(text, "x.toml") {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => (e.line().unwrap_or(0), e.to_string()),
    }
}

#[test]
fn a_jobs_section_parses_with_its_defaults() {
    let s = Scenario::parse(&text(JOBS, ""), "x.toml").unwrap();
    let j = s.jobs.expect("the section is read");
    assert_eq!(j.providers, Providers::Count(6));
    assert_eq!((j.capacity.millicores, j.capacity.memory_mb), (4000, 4096));
    assert_eq!((j.price, j.service_providers), ((100, 200), 2));
    assert_eq!(j.deploy_until, Duration::from_secs(60));
    assert_eq!(
        j.exec.run_time,
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!(j.templates[0].resources.millicores, 500);
    assert_eq!(j.templates[0].constraints.executor.as_deref(), Some("sim"));
    assert!(
        Scenario::parse(&text("", ""), "x.toml")
            .unwrap()
            .jobs
            .is_none()
    );
}

#[test]
fn bad_jobs_keys_name_their_line_and_key() {
    let cases: [(String, usize, &str); 7] = [
        (
            JOBS.replace("providers_count = 6", "providers_count = 10"),
            3,
            "`jobs.providers_count` must be from 1 to the non-bootstrap peers (9), found 10",
        ),
        (
            JOBS.replace("providers_count = 6", "provider_classes = [\"gpu\"]"),
            3,
            "`jobs.provider_classes[0]` names no class: `gpu`",
        ),
        (
            JOBS.replace("providers_count = 6\n", ""),
            2,
            "needs exactly one of `provider_classes`",
        ),
        (
            JOBS.replace("service_providers = 2", "service_providers = 4"),
            7,
            "`jobs.service_providers` must be at least 1 and leave room",
        ),
        (
            JOBS.replace("cores = 0.5", "cores = 5"),
            12,
            "`jobs.templates.0` asks for more per worker",
        ),
        (
            JOBS.replace("duration_s = 30", "duration_s = 0"),
            12,
            "`jobs.templates.0` is not a valid job",
        ),
        (
            JOBS.replace("run_time_s = [5, 10]", "run_time_s = [10, 5]"),
            8,
            "`jobs.run_time_s` must be [min, max] in seconds with min <= max",
        ),
    ];
    for (jobs, line, message) in cases {
        let (at, msg) = err(&text(&jobs, ""));
        assert_eq!(at, line + 4, "{msg}");
        assert!(msg.contains(message), "{msg}");
    }
    let (line, msg) = err(&text(
        &JOBS.replace("cores = 4\n", "cores = 4\nbogus = 1\n"),
        "",
    ));
    assert_eq!(line, 9, "{msg}");
    assert!(msg.contains("bogus"), "{msg}");
}

#[test]
fn jobs_expectations_need_a_jobs_section() {
    let (line, msg) = err(&text("", "[expect]\ndeployments_terminal = true\n"));
    assert_eq!(line, 6, "{msg}");
    assert!(
        msg.contains("`expect.deployments_terminal` needs a [jobs] section"),
        "{msg}"
    );
    let s = Scenario::parse(
        &text(JOBS, "[expect]\ndeployments_completed_min = 0.5\n"),
        "x.toml",
    )
    .unwrap();
    assert_eq!(s.expect.deployments_completed_min, Some(0.5));
}
