#!/usr/bin/env bash
# Runs every test of pinion, from a fresh machine: formatting, lints, unit,
# scenario, crash and property tests of every crate. Installs what the tests
# need first (nothing beyond the Rust toolchain yet; the real-client tests
# that arrive with the broker install their pip and apt packages here).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "format (cargo fmt --check)"
cargo fmt --all --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "tests (cargo test --workspace)"
cargo test --workspace --all-targets
cargo test --workspace --doc
