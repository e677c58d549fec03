#!/usr/bin/env bash
# Runs every test: installs the Python peer the tests compare against (anndata, in .venv), runs the
# Rust unit and integration tests of the workspace (core crate and CLI) in release mode so the heavy
# dependencies are built once for tests and CLI alike, checks that the GPU feature compiles,
# then builds the page and tests it in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
export MAMBA_PYTHON="$PWD/.venv/bin/python"
cargo test --release --workspace
# The GPU training feature compiles (it runs only where a GPU is: benches/gpu_speed.sh).
cargo check --release -p mamba-perturb-trainer --features gpu
# The page in a real headless Chromium (Debian's chromium, playwright-core from npm).
scripts/build-web.sh
(cd tests/browser && npm install --silent --no-audit --no-fund && npm test)
