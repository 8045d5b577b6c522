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
