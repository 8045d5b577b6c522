//! Amounts, shares and their errors; measuring the machine.

use super::*;

const MACHINE: Capacity = Capacity {
    millicores: 8000,
    memory_mb: 16384,
    disk_gb: 100,
    gpus: 2,
};

fn amount(s: &str) -> Amount {
    s.parse().unwrap()
}

fn err(share: Share) -> String {
    share.apply(&MACHINE).unwrap_err().to_string()
}

#[test]
fn amounts_parse_as_fixed_point() {
    assert_eq!(amount("4"), Amount::Thousandths(4000));
    assert_eq!(amount("1.5"), Amount::Thousandths(1500));
    assert_eq!(amount("0.125"), Amount::Thousandths(125));
    assert_eq!(amount("50%"), Amount::PercentThousandths(50_000));
    assert_eq!(amount("12.5 %"), Amount::PercentThousandths(12_500));
    assert_eq!(amount("1.50").to_string(), "1.5");
    assert_eq!(amount("12.5%").to_string(), "12.5%");
    for bad in [
        "",
        "%",
        "-1",
        "1.2345",
        "abc",
        ".5",
        "1e3",
        "5%%",
        "99999999999999999999",
    ] {
        let e = bad.parse::<Amount>().unwrap_err().to_string();
        assert_eq!(
            e,
            format!("`{bad}` is not an amount; give a number like 4 or 1.5, or a share like 50%")
        );
    }
}

#[test]
fn nothing_given_onboards_everything() {
    assert_eq!(Share::default().apply(&MACHINE).unwrap(), MACHINE);
}

#[test]
fn share_applies_to_the_resources_not_given() {
    let s = Share {
        cores: Some(amount("1.5")),
        gpus: Some(amount("1")),
        all: Some(amount("50%")),
        ..Share::default()
    };
    assert_eq!(
        s.apply(&MACHINE).unwrap(),
        Capacity {
            millicores: 1500,
            memory_mb: 8192,
            disk_gb: 50,
            gpus: 1
        }
    );
    // Without --share, a resource not given is onboarded whole.
    let s = Share {
        memory_mb: Some(amount("25%")),
        ..Share::default()
    };
    let c = s.apply(&MACHINE).unwrap();
    assert_eq!((c.millicores, c.memory_mb, c.gpus), (8000, 4096, 2));
}

#[test]
fn percentages_round_down() {
    let s = Share {
        all: Some(amount("33.3%")),
        ..Share::default()
    };
    assert_eq!(
        s.apply(&MACHINE).unwrap(),
        Capacity {
            millicores: 2664,
            memory_mb: 5455,
            disk_gb: 33,
            gpus: 0
        }
    );
    let s = Share {
        all: Some(amount("0%")),
        ..Share::default()
    };
    assert_eq!(s.apply(&MACHINE).unwrap(), Capacity::ZERO);
}

#[test]
fn above_registered_is_refused_naming_flag_value_and_machine() {
    let e = err(Share {
        cores: Some(amount("64")),
        ..Share::default()
    });
    assert_eq!(
        e,
        "--cores 64 is above the 8 cores this machine has; give at most 8 or a share like 50%"
    );
    let e = err(Share {
        cores: Some(amount("8.001")),
        ..Share::default()
    });
    assert!(e.starts_with("--cores 8.001 is above the 8 cores"), "{e}");
    let e = err(Share {
        memory_mb: Some(amount("20000")),
        ..Share::default()
    });
    assert_eq!(
        e,
        "--memory-mb 20000 is above the 16384 MiB this machine has; give at most 16384 or a \
         share like 50%"
    );
    let e = err(Share {
        disk_gb: Some(amount("101")),
        ..Share::default()
    });
    assert!(e.starts_with("--disk-gb 101 is above the 100 GiB"), "{e}");
    let e = err(Share {
        gpus: Some(amount("3")),
        ..Share::default()
    });
    assert!(e.starts_with("--gpus 3 is above the 2 GPUs"), "{e}");
    // Exactly what the machine has is fine.
    let s = Share {
        cores: Some(amount("8")),
        gpus: Some(amount("2")),
        ..Share::default()
    };
    assert_eq!(s.apply(&MACHINE).unwrap(), MACHINE);
}

#[test]
fn bad_shares_say_what_to_write() {
    let e = err(Share {
        disk_gb: Some(amount("150%")),
        ..Share::default()
    });
    assert_eq!(
        e,
        "--disk-gb 150% is more than all of it; give a share from 0% to 100%"
    );
    let e = err(Share {
        gpus: Some(amount("0.5")),
        ..Share::default()
    });
    assert_eq!(
        e,
        "--gpus 0.5 is not a whole number of GPUs; give a whole number or a share like 50%"
    );
    let e = err(Share {
        all: Some(amount("4")),
        ..Share::default()
    });
    assert!(
        e.starts_with("--share 4 is not a share; give a percentage like 50%"),
        "{e}"
    );
    let e = err(Share {
        all: Some(amount("101%")),
        ..Share::default()
    });
    assert!(e.starts_with("--cores 101% is more than all of it"), "{e}");
}

#[test]
fn thousandths_print_short() {
    assert_eq!(thousandths(0), "0");
    assert_eq!(thousandths(8000), "8");
    assert_eq!(thousandths(1500), "1.5");
    assert_eq!(thousandths(1250), "1.25");
    assert_eq!(thousandths(7), "0.007");
}

#[test]
fn the_longest_mount_point_holds_a_path() {
    let mounts = || {
        [
            ("/", 1),
            ("/var", 2),
            ("/var/lib/flotilla-other", 3),
            ("/va", 4),
        ]
        .map(|(m, v)| (PathBuf::from(m), v))
        .into_iter()
    };
    assert_eq!(
        filesystem_of(Path::new("/var/lib/flotilla"), mounts()),
        Some(2)
    );
    assert_eq!(filesystem_of(Path::new("/home/x"), mounts()), Some(1));
    assert_eq!(filesystem_of(Path::new("/home"), std::iter::empty()), None);
}

#[test]
fn gpus_are_counted_from_device_nodes() {
    let dev = tempfile::tempdir().unwrap();
    assert_eq!(count_gpus(dev.path()), 0);
    for name in [
        "nvidia0",
        "nvidia1",
        "nvidia12",
        "nvidiactl",
        "nvidia-uvm",
        "nvidia",
        "sda",
    ] {
        std::fs::write(dev.path().join(name), "").unwrap();
    }
    assert_eq!(count_gpus(dev.path()), 3);
    assert_eq!(count_gpus(Path::new("/no/such/dev")), 0);
}

#[test]
fn this_machine_measures_something() {
    let dir = tempfile::tempdir().unwrap();
    let r = measure(&dir.path().join("not-yet-created")).unwrap();
    assert!(r.capacity.millicores >= 1000, "{r:?}");
    assert_eq!(r.capacity.millicores % 1000, 0, "{r:?}");
    assert!(r.capacity.memory_mb >= 1, "{r:?}");
    assert!(r.cpu_score >= 1, "{r:?}");
    assert!(r.measured_at_us > 0, "{r:?}");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Registered>(&json).unwrap(), r);
}
