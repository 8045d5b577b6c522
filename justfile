# Flotilla recipes. `pip install rust-just` provides `just`.

default:
    @just --list

# Format every crate.
fmt:
    cargo fmt --all

# Lints as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The workspace tests (the README's test command).
test:
    cargo test --workspace

# Everything CI runs.
ci:
    bash .ci/run

# Run a scenario: `just sim scenarios/quickstart.toml --seed 7`.
sim scenario="scenarios/quickstart.toml" *args="":
    cargo run --release -p flotilla-sim -- run {{scenario}} {{args}}

# Run a scenario on the turmoil engine (production driver code over simulated TCP).
sim-turmoil scenario="scenarios/small.toml" *args="":
    cargo run --release -p flotilla-sim -- run {{scenario}} --engine turmoil {{args}}

# Review changed snapshots (needs `cargo install cargo-insta`), or accept them all.
snap:
    INSTA_UPDATE=always cargo test -p flotilla-tests
    git status --short snapshots/

# Run a node on embedded defaults.
node *args="":
    cargo run --release -p flotilla-node --bin flotilla -- node run {{args}}

# The same seed gives the same trace, another seed another one (sha256 of each trace).
determinism scenario="scenarios/quickstart.toml":
    cargo build --release -p flotilla-sim
    ./target/release/flotilla-sim run {{scenario}} --seed 7 --out out/det-a > /dev/null
    ./target/release/flotilla-sim run {{scenario}} --seed 7 --out out/det-b > /dev/null
    ./target/release/flotilla-sim run {{scenario}} --seed 8 --out out/det-c > /dev/null
    sha256sum out/det-a/trace.txt out/det-b/trace.txt out/det-c/trace.txt
    cmp out/det-a/trace.txt out/det-b/trace.txt && echo "seed 7 twice: identical"
    ! cmp -s out/det-a/trace.txt out/det-c/trace.txt && echo "seed 8: different"

# Turmoil engine: 100 peers for 2 simulated minutes of the quickstart network, twice.
turmoil-100:
    cargo build --release -p flotilla-sim
    ./target/release/flotilla-sim run scenarios/quickstart.toml --engine turmoil --peers 100 --duration-s 120 --out out/t100-a
    ./target/release/flotilla-sim run scenarios/quickstart.toml --engine turmoil --peers 100 --duration-s 120 --out out/t100-b > /dev/null
    sha256sum out/t100-a/trace.txt out/t100-b/trace.txt
    cmp out/t100-a/trace.txt out/t100-b/trace.txt && echo "turmoil twice: identical"

# Many seeds of a scenario in parallel; lists failing seeds with their replay commands.
sweep scenario="scenarios/small.toml" seeds="1..50" jobs="2" *args="":
    cargo build --release -p flotilla-sim
    ./target/release/flotilla-sim sweep {{scenario}} --seeds {{seeds}} --jobs {{jobs}} {{args}}

# Re-run one seed and print its trace, filtered: `just replay scenarios/x.toml 7 --peer n3`.
replay scenario seed *args="":
    cargo run --release -p flotilla-sim -- replay {{scenario}} --seed {{seed}} {{args}}

# Fleet 1k x 600 s, 10k x 600 s and 100k x 60 s, turmoil 200 x 60 s, on the quickstart
# workload; the 60 s runs use a copy of quickstart whose start spread is cut to 60 s (a run
# may not end before every peer has started). Figures are printed, never asserted: wall
# time, trace events per wall second, speed-up over real time (simulated / wall seconds)
# and peak RSS (from GNU time, `apt-get install time`).
# Simulator scale and speed benchmarks (release build).
bench-sim:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p flotilla-sim
    mkdir -p out/bench
    sed 's/^start_spread_s = 120$/start_spread_s = 60/' scenarios/quickstart.toml > out/bench/quickstart-60s.toml
    bench() {
        local label=$1 scenario=$2 sim_s=$3; shift 3
        local log="out/bench/$label.log" rss="n/a"
        local t0 t1
        t0=$(date +%s.%N)
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -f '%M' -o "out/bench/$label.rss" ./target/release/flotilla-sim run \
                "$scenario" --duration-s "$sim_s" --out "out/bench/$label" "$@" > "$log"
            rss="$(awk '{printf "%.0f MiB", $1 / 1024}' "out/bench/$label.rss")"
        else
            ./target/release/flotilla-sim run "$scenario" --duration-s "$sim_s" \
                --out "out/bench/$label" "$@" > "$log"
        fi
        t1=$(date +%s.%N)
        local events connected
        events=$(awk '$1 == "trace" { print $2 }' "$log")
        connected=$(awk '$1 == "degree" { print $0 }' "$log")
        awk -v l="$label" -v t0="$t0" -v t1="$t1" -v e="$events" -v s="$sim_s" -v r="$rss" \
            'BEGIN { w = t1 - t0; printf "%-16s wall %7.2f s  %9.0f events/s  speed-up %7.1fx  peak RSS %s\n", l, w, e / w, s / w, r }'
        echo "                 $connected"
    }
    bench fleet-1k-600s scenarios/quickstart.toml 600
    bench fleet-10k-600s scenarios/quickstart.toml 600 --peers 10000
    bench fleet-100k-60s out/bench/quickstart-60s.toml 60 --peers 100000
    bench turmoil-200-60s out/bench/quickstart-60s.toml 60 --engine turmoil --peers 200
