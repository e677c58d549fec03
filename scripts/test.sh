#!/usr/bin/env bash
# Runs every test: installs the Python peer the tests compare against (anndata, in .venv), then the
# Rust unit and integration tests of the workspace (core crate and CLI), in release mode so the
# heavy dependencies are built once for tests and CLI alike.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
export MAMBA_PYTHON="$PWD/.venv/bin/python"
cargo test --release --workspace
# The core crate must keep building for the browser.
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --release --target wasm32-unknown-unknown -p mamba-perturb
