use super::*;

fn spec() -> ExecSpec {
    ExecSpec::new("job-1", "img:1", ["/bin/sh", "-c", "true"])
}

fn refused(s: &ExecSpec, needle: &str) {
    match s.validate() {
        Err(ExecError::InvalidSpec(m)) => {
            assert!(m.contains(needle), "{m:?} should mention {needle:?}")
        }
        other => panic!("expected an invalid spec mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn a_plain_spec_is_valid() {
    spec().validate().unwrap();
    let mut s = spec().with_cpu_cores(0.5);
    s.memory_bytes = Some(MEMORY_MIN_BYTES);
    s.ports.push(PortBinding {
        host_port: 8080,
        container_port: 80,
    });
    s.env.insert("A".into(), "b=c".into());
    s.validate().unwrap();
    assert_eq!(s.cpu_nanos, Some(500_000_000));
    // No command: the image's own runs.
    s.command.clear();
    s.validate().unwrap();
}

#[test]
fn bad_specs_say_what_to_fix() {
    refused(
        &ExecSpec {
            name: "-x".into(),
            ..spec()
        },
        "name",
    );
    refused(
        &ExecSpec {
            name: "a/b".into(),
            ..spec()
        },
        "name",
    );
    refused(
        &ExecSpec {
            image: " ".into(),
            ..spec()
        },
        "image",
    );
    refused(
        &ExecSpec {
            command: vec![String::new(), "x".into()],
            ..spec()
        },
        "command",
    );
    refused(&spec().with_cpu_cores(0.0), "cpu");
    refused(&spec().with_cpu_cores(f64::NAN), "cpu");
    refused(
        &ExecSpec {
            memory_bytes: Some(1024),
            ..spec()
        },
        "6 MiB",
    );
    let mut s = spec();
    s.env.insert("A=B".into(), "c".into());
    refused(&s, "env");
    let mut s = spec();
    s.ports = vec![
        PortBinding {
            host_port: 9000,
            container_port: 1,
        },
        PortBinding {
            host_port: 9000,
            container_port: 2,
        },
    ];
    refused(&s, "twice");
    s.ports = vec![PortBinding {
        host_port: 0,
        container_port: 1,
    }];
    refused(&s, "port 0");
    let mount = |host: &str, container: &str| BindMount {
        host: host.into(),
        container: container.into(),
        read_only: false,
    };
    for (m, needle) in [
        (mount("relative/dir", "/artefacts"), "absolute UTF-8"),
        (mount("/srv/a", "artefacts"), "absolute path"),
        (mount("/srv/a", "/"), "absolute path"),
        (mount("/srv/a", "/a/../etc"), "`..`"),
        (mount("/srv/a", "/a:ro"), "':'"),
    ] {
        let mut s = spec();
        s.mounts.push(m);
        refused(&s, needle);
    }
    let mut s = spec();
    s.mounts = vec![mount("/srv/a", "/data"), mount("/srv/b", "/data")];
    refused(&s, "twice");
    s.mounts.pop();
    s.validate().unwrap();
}

#[test]
fn exit_status_success_is_code_zero() {
    assert!(ExitStatus { code: 0 }.success());
    assert!(!ExitStatus { code: 137 }.success());
}
