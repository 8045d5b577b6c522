//! Parsing (TOML and YAML), defaults, every validation rule, and error lines.

use super::*;

const FULL: &str = r#"image = "busybox:1.36"
command = ["sh", "-c", "echo hello"]
duration_s = 3600
workers = 2
ports = [80, 443]

[env]
GREETING = "hello"

[resources]
cores = 1.5
memory_mb = 512
disk_gb = 1

[constraints]
region = ["eu-west", "eu-central"]
rtt_max_ms = 50
executor = "docker"
"#;

const FULL_YAML: &str = "image: busybox:1.36
command: [sh, -c, echo hello]
duration_s: 3600
workers: 2
ports: [80, 443]
env:
  GREETING: hello
resources:
  cores: 1.5
  memory_mb: 512
  disk_gb: 1
constraints:
  region: [eu-west, eu-central]
  rtt_max_ms: 50
  executor: docker
";

const MINIMAL: &str =
    "image = \"busybox\"\nduration_s = 60\n[resources]\ncores = 1\nmemory_mb = 64\n";

fn toml(text: &str) -> Result<JobSpec, SpecError> {
    JobSpec::from_toml_str(text, Path::new("job.toml"))
}

fn yaml(text: &str) -> Result<JobSpec, SpecError> {
    JobSpec::from_yaml_str(text, Path::new("job.yaml"))
}

fn err(text: &str) -> String {
    toml(text).unwrap_err().to_string()
}

#[test]
fn full_toml_spec_parses() {
    let s = toml(FULL).unwrap();
    assert_eq!(s.image, "busybox:1.36");
    assert_eq!(s.command, ["sh", "-c", "echo hello"]);
    assert_eq!(s.env.get("GREETING").map(String::as_str), Some("hello"));
    assert_eq!(
        s.resources.capacity(),
        Capacity {
            millicores: 1500,
            memory_mb: 512,
            disk_gb: 1,
            gpus: 0
        }
    );
    assert_eq!(s.ports, Ports::Map(vec![80, 443]));
    assert_eq!(s.host_ports(), 2);
    assert_eq!(s.duration_s, 3600);
    assert_eq!(s.workers, 2);
    assert_eq!(s.constraints.region, ["eu-west", "eu-central"]);
    assert_eq!(s.constraints.rtt_max_ms, Some(50));
    assert_eq!(s.constraints.executor.as_deref(), Some("docker"));
}

#[test]
fn yaml_and_toml_give_the_same_spec() {
    assert_eq!(yaml(FULL_YAML).unwrap(), toml(FULL).unwrap());
    let by_ext = JobSpec::from_str_at(FULL_YAML, Path::new("a/job.yml")).unwrap();
    assert_eq!(by_ext, toml(FULL).unwrap());
    let by_ext = JobSpec::from_str_at(FULL, Path::new("job.toml")).unwrap();
    assert_eq!(by_ext.workers, 2);
}

#[test]
fn defaults_for_optional_keys() {
    let s = toml(MINIMAL).unwrap();
    assert!(s.command.is_empty() && s.env.is_empty());
    assert_eq!(s.ports, Ports::Host(0));
    assert_eq!(s.host_ports(), 0);
    assert_eq!(s.workers, 1);
    assert_eq!(s.constraints, Constraints::default());
    assert_eq!((s.resources.disk_gb, s.resources.gpus), (0, 0));
}

#[test]
fn ports_as_a_count() {
    let s = toml(&format!("ports = 3\n{MINIMAL}")).unwrap();
    assert_eq!(s.ports, Ports::Host(3));
    assert_eq!(s.host_ports(), 3);
    assert!(
        err(&format!("ports = -1\n{MINIMAL}")).contains("job.toml:1:9: ports = -1 is negative")
    );
    let e = err(&format!("ports = \"two\"\n{MINIMAL}"));
    assert!(e.contains("a number of host ports"), "{e}");
}

#[test]
fn spec_round_trips_through_toml() {
    let s = toml(FULL).unwrap();
    let text = toml::to_string(&s).unwrap();
    assert_eq!(toml(&text).unwrap(), s, "{text}");
    let m = toml(&format!("ports = 4\n{MINIMAL}")).unwrap();
    assert_eq!(toml(&toml::to_string(&m).unwrap()).unwrap(), m);
}

#[test]
fn fractional_cores_are_millicores() {
    let with = |c: &str| toml(&MINIMAL.replace("cores = 1", &format!("cores = {c}")));
    assert_eq!(with("0.25").unwrap().resources.millicores, 250);
    assert_eq!(with("0.001").unwrap().resources.millicores, 1);
    assert_eq!(with("64").unwrap().resources.millicores, 64_000);
    let e = with("0.0001").unwrap_err().to_string();
    assert!(
        e.starts_with("job.toml:4:9: cores = 0.0001 is finer than a thousandth"),
        "{e}"
    );
    let e = with("-2").unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let e = with("nan").unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let e = err(&format!("{MINIMAL}colour = \"red\"\n"));
    assert!(e.starts_with("job.toml:6:1: unknown field `colour`"), "{e}");
    let e = err(
        "image = \"b\"\nduration_s = 1\n[resources]\ncores = 1\nmemory_mb = 1\nmemory_gb = 1\n",
    );
    assert!(
        e.starts_with("job.toml:6:1: unknown field `memory_gb`"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}[constraints]\nzone = \"a\"\n"));
    assert!(e.starts_with("job.toml:7:1: unknown field `zone`"), "{e}");
    let e = yaml("image: b\nduration_s: 1\nresources: {cores: 1, memory_mb: 1}\nworker: 2\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("job.yaml:4:1: unknown field `worker`"), "{e}");
}

#[test]
fn missing_required_keys_are_named() {
    let e = err("image = \"b\"\n[resources]\ncores = 1\nmemory_mb = 1\n");
    assert!(e.contains("missing field `duration_s`"), "{e}");
    let e = err("image = \"b\"\nduration_s = 1\n");
    assert!(e.contains("missing field `resources`"), "{e}");
    let e = yaml("image: b\nresources: {cores: 1, memory_mb: 1}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field `duration_s`"), "{e}");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = err("image = \"b\"\nduration_s = = 1\n");
    assert!(e.starts_with("job.toml:2:"), "{e}");
    let e = yaml("image: b\n  bad: [\n").unwrap_err().to_string();
    assert!(e.starts_with("job.yaml:2:"), "{e}");
}

#[test]
fn every_rule_names_its_key_and_line() {
    let text = r#"image = "bad image"
command = [""]
duration_s = 0
workers = 65
ports = [80, 80, 0]

[env]
"1X" = "a"

[resources]
cores = 0
memory_mb = 0

[constraints]
region = ["eu", "eu", ""]
rtt_max_ms = 0
executor = "podman"
"#;
    let e = err(text);
    let expected = [
        "job.toml:1: image: `bad image` contains whitespace; write one image name, e.g. image = \"busybox:1.36\"",
        "job.toml:2: command: the program (first element) is empty; write e.g. command = [\"sh\", \"-c\", \"echo hi\"]",
        "job.toml:8: env.1X: `1X` is not a variable name; use letters, digits and _, not starting with a digit, e.g. MY_VAR",
        "job.toml:11: resources.cores: must be more than 0; write e.g. cores = 1 or cores = 0.5",
        "job.toml:12: resources.memory_mb: must be more than 0; write e.g. memory_mb = 512",
        "job.toml:5: ports: container port 80 is listed twice; list each port once",
        "job.toml:5: ports: container port 0 is not a port; write ports in 1..=65535, e.g. ports = [80]",
        "job.toml:3: duration_s: 0 is out of range; write 1 to 604800 (7 days), e.g. duration_s = 3600",
        "job.toml:4: workers: 65 is out of range; write 1 to 64",
        "job.toml:15: constraints.region: `eu` is listed twice; list each region once",
        "job.toml:15: constraints.region: a region is empty; write names, e.g. region = [\"eu-west\"]",
        "job.toml:16: constraints.rtt_max_ms: must be more than 0; write e.g. rtt_max_ms = 50, or remove it for no limit",
        "job.toml:17: constraints.executor: `podman` is not an executor; write one of \"docker\", \"sim\", or remove it for any",
    ];
    assert_eq!(e.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn yaml_rules_name_their_line() {
    let text = "image: busybox\nduration_s: 700000\nresources:\n  cores: 1\n  memory_mb: 0\n";
    let e = yaml(text).unwrap_err().to_string();
    assert_eq!(
        e.lines().collect::<Vec<_>>(),
        [
            "job.yaml:5: resources.memory_mb: must be more than 0; write e.g. memory_mb = 512",
            "job.yaml:2: duration_s: 700000 is out of range; write 1 to 604800 (7 days), e.g. duration_s = 3600",
        ]
    );
}

#[test]
fn bounds_are_inclusive() {
    let with = |extra: &str| toml(&format!("{extra}\n{MINIMAL}"));
    assert!(toml(&MINIMAL.replace("duration_s = 60", "duration_s = 604800")).is_ok());
    assert!(toml(&MINIMAL.replace("duration_s = 60", "duration_s = 604801")).is_err());
    assert!(toml(&MINIMAL.replace("duration_s = 60", "duration_s = 1")).is_ok());
    assert!(with("workers = 64").is_ok());
    assert!(with("workers = 0").is_err());
    assert!(with("ports = 64").is_ok());
    let e = with("ports = 65").unwrap_err().to_string();
    assert!(
        e.contains("job.toml:1: ports: 65 ports asked; ask for at most 64"),
        "{e}"
    );
}

#[test]
fn env_is_bounded() {
    let vars: String = (0..ENV_VARS_MAX)
        .map(|i| format!("V{i} = \"x\"\n"))
        .collect();
    assert!(toml(&format!("{MINIMAL}[env]\n{vars}")).is_ok());
    let e = err(&format!("{MINIMAL}[env]\n{vars}V64 = \"x\"\n"));
    assert_eq!(e, "job.toml:6: env: 65 variables; set at most 64");
    let e = err(&format!("{MINIMAL}[env]\nA = \"x\\u0000y\"\n"));
    assert_eq!(
        e,
        "job.toml:7: env.A: the value contains a NUL character; remove it"
    );
}

#[test]
fn empty_image_and_long_command() {
    let e = err(&MINIMAL.replace("\"busybox\"", "\"  \""));
    assert_eq!(
        e,
        "job.toml:1: image: must not be empty; write e.g. image = \"busybox:1.36\""
    );
    let args = vec!["\"a\""; COMMAND_ARGS_MAX + 1].join(", ");
    let e = err(&format!("command = [{args}]\n{MINIMAL}"));
    assert_eq!(e, "job.toml:1: command: 257 arguments; write at most 256");
}

#[test]
fn oversized_specs_are_refused_before_parsing() {
    let text = format!("{MINIMAL}#{}\n", "x".repeat(SPEC_BYTES_MAX));
    assert!(matches!(toml(&text), Err(SpecError::TooLong { .. })));
    let e = yaml(&text).unwrap_err().to_string();
    assert!(e.starts_with("job.yaml: the spec is"), "{e}");
}

#[test]
fn validate_alone_lists_keys() {
    let mut s = toml(MINIMAL).unwrap();
    assert_eq!(s.validate(), Ok(()));
    s.workers = 0;
    s.resources.memory_mb = 0;
    let keys: Vec<String> = s
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(keys, ["resources.memory_mb", "workers"]);
}

/// The code block in this module's docs that opens with `` ```lang ``.
fn doc_block(lang: &str) -> String {
    let doc: Vec<&str> = include_str!("../job.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let open = format!("```{lang}");
    let start = doc.iter().position(|l| *l == open).unwrap() + 1;
    let len = doc[start..].iter().position(|l| *l == "```").unwrap();
    doc[start..start + len].join("\n") + "\n"
}

#[test]
fn module_doc_examples_parse_and_agree() {
    let from_toml = toml(&doc_block("toml")).unwrap();
    let from_yaml = yaml(&doc_block("yaml")).unwrap();
    assert_eq!(from_toml, from_yaml);
    assert_eq!(from_toml.workers, 2);
    assert_eq!(from_toml.resources.millicores, 1500);
}
