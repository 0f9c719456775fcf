#!/usr/bin/env bash
# Runs every test of pinion, from a fresh machine: formatting, lints, unit,
# scenario, crash and property tests of every crate. Installs what the tests
# need first: kcat, Go and sarama (apt), a Python venv with the real Kafka
# clients (pip) and kafkajs (npm), for the black-box tests of `pinion serve`
# in tests/.
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

step "black-box tests with real Kafka clients (pytest tests/)"
# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "scripts/test.sh: need root (or sudo) for: $*" >&2
    return 1
  fi
}
apt_updated=false
apt_install() {
  if [ "$apt_updated" = false ]; then
    as_root apt-get update
    apt_updated=true
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}
if ! command -v kcat >/dev/null 2>&1; then
  apt_install kcat
fi
# Go and sarama 1.22 (Debian's packages) for tests/test_sarama.py, which
# builds its driver offline in GOPATH mode; gcc and libc6-dev are for cgo
# (sarama's zstd), which golang-go only recommends.
if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/Shopify/sarama ]; then
  apt_install golang-go golang-github-shopify-sarama-dev gcc libc6-dev
fi
if [ ! -x .venv/bin/python ]; then
  # Debian's python3 needs python3-venv for ensurepip.
  if ! python3 -m venv .venv; then
    rm -rf .venv
    apt_install python3-venv
    python3 -m venv .venv
  fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
# kafkajs (tests/test_kafkajs.py) runs in Node, from tests/js's lockfile.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
(cd tests/js && npm ci --no-audit --no-fund)
cargo build -p pinion-server
export PINION_BIN="${PINION_BIN:-${CARGO_TARGET_DIR:-target}/debug/pinion}"
.venv/bin/python -m pytest -q tests/
