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

# Jobs on the network: the deployments scenario (1000+ providers, 50 service providers,
# churn and a partition) on the fleet engine, then its jobs summary.
deployments *args="":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo run --release -p flotilla-sim -- run scenarios/deployments.toml --out out/deployments {{args}} \
        | grep -E '^(scenario|peers|jobs|wall)'
    echo "summary: out/deployments/summary.json (its \"jobs\" section)"

# Many seeds of a scenario in parallel; lists failing seeds with their replay commands.
sweep scenario="scenarios/small.toml" seeds="1..50" jobs="2" *args="":
    cargo build --release -p flotilla-sim
    ./target/release/flotilla-sim sweep {{scenario}} --seeds {{seeds}} --jobs {{jobs}} {{args}}

# Sweeps every shipped scenario over the same seeds on its own engine (`just sweep-all 1..201`).
sweep-all seeds="1..201" jobs="2":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p flotilla-sim
    for s in scenarios/*.toml; do
        echo "== $s"
        ./target/release/flotilla-sim sweep "$s" --seeds {{seeds}} --jobs {{jobs}}
    done

# Re-run one seed and print its trace, filtered: `just replay scenarios/x.toml 7 --peer n3`.
replay scenario seed *args="":
    cargo run --release -p flotilla-sim -- replay {{scenario}} --seed {{seed}} {{args}}

# Fleet 1k x 600 s, 10k x 600 s and 100k x 60 s, turmoil 200 x 60 s, on the quickstart
# workload (the 60 s runs cut its start spread to 60 s, as `--duration-s` does). Figures are
# printed, never asserted: wall and user CPU time, trace events per wall second, speed-up
# over real time (simulated / wall seconds) and peak RSS (CPU time and RSS from GNU time,
# `apt-get install time`).
# Simulator scale and speed benchmarks (release build).
bench-sim:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p flotilla-sim
    mkdir -p out/bench
    bench() {
        local label=$1 sim_s=$2; shift 2
        local log="out/bench/$label.log" times="out/bench/$label.time"
        local run=(./target/release/flotilla-sim run scenarios/quickstart.toml
            --duration-s "$sim_s" --out "out/bench/$label" "$@")
        if [ -x /usr/bin/time ]; then
            /usr/bin/time -f '%e %U %M' -o "$times" "${run[@]}" > "$log" 2> "out/bench/$label.err"
        else
            local t0 t1
            t0=$(date +%s.%N)
            "${run[@]}" > "$log" 2> "out/bench/$label.err"
            t1=$(date +%s.%N)
            awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.2f n/a n/a\n", t1 - t0 }' > "$times"
        fi
        local events
        events=$(awk '$1 == "trace" { print $2 }' "$log")
        awk -v l="$label" -v e="$events" -v s="$sim_s" '{
            w = $1 > 0 ? $1 : 0.01
            user = $2 == "n/a" ? "n/a" : sprintf("%.2f s", $2)
            rss = $3 == "n/a" ? "n/a" : sprintf("%.0f MiB", $3 / 1024)
            printf "%-16s wall %7.2f s  user %9s  %9.0f events/s  speed-up %7.1fx  peak RSS %s\n",
                l, $1, user, e / w, s / w, rss
        }' "$times"
        echo "                 $(awk '$1 == "degree" { print $0 }' "$log")"
    }
    bench fleet-1k-600s 600
    bench fleet-10k-600s 600 --peers 10000
    bench fleet-100k-60s 60 --peers 100000
    bench turmoil-200-60s 60 --engine turmoil --peers 200

# Resource manager benchmarks (criterion): stream and connection lifecycles (plain and
# through the allowlist and per-subnet gate) with the number of heap allocations in steady
# state (must be 0), and an allowlist check against 1000 address ranges.
bench-rcmgr:
    cargo bench -p flotilla-core --bench rcmgr

# Jobs with Docker (needs the daemon and busybox-static): request to running, median of 20
# deployments between two real nodes on loopback, against `docker run` of the same image;
# prints both medians and their ratio.
bench-deploy:
    cargo test -p flotilla-node --test jobs_docker -- --ignored --nocapture request_to_running_benchmark

# One real node on loopback under a flood of connections and streams (node/host/tests/flood):
# prints connection and stream counts, the honest client's ping success, API answers, peak
# RSS and the resource manager's refusals.
flood:
    cargo test -p flotilla-node --test flood -- --nocapture

# mDNS discovery between two in-process nodes; needs multicast on the local link, which
# containers and CI runners often lack, so the test is ignored by `just test`.
mdns:
    cargo test -p flotilla-node --lib -- --ignored mdns_finds_a_node_on_the_link

# Peers of their own kind: latency-filter with and without its filter (neighbour RTT and
# ratio), then max-peers and churn; each run checks its invariants and [expect].
company:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p flotilla-sim
    mkdir -p out/company
    for s in latency-filter latency-filter-off max-peers churn; do
        ./target/release/flotilla-sim run scenarios/$s.toml --out out/company/$s | grep -E '^(scenario|degree|rtt|company|wall)'
    done
    on=$(grep -o '"rtt_neighbour_mean_ms": [0-9.]*' out/company/latency-filter/summary.json | awk '{print $2}')
    off=$(grep -o '"rtt_neighbour_mean_ms": [0-9.]*' out/company/latency-filter-off/summary.json | awk '{print $2}')
    awk -v on="$on" -v off="$off" 'BEGIN { printf "neighbour RTT %.3f ms with the filter, %.3f ms without: %.2fx lower\n", on, off, off / on }'

# 10,000 peers keeping only peers within 50 ms (latency-filter.toml) on the fleet engine:
# prints the summary (convergence time on the company line), wall time and peak RSS.
converge-10k:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p flotilla-sim
    mkdir -p out/converge-10k
    /usr/bin/time -f 'wall %e s, user %U s, peak RSS %M KiB' \
        ./target/release/flotilla-sim run scenarios/latency-filter.toml --peers 10000 \
        --out out/converge-10k | grep -v '^written'
