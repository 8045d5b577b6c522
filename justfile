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
