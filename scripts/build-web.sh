#!/usr/bin/env bash
# Builds the static page in www/: the core crate to WebAssembly (+ JS glue from the wasm-bindgen
# CLI, which must equal the pinned wasm-bindgen version), the default model, the cytobands and a
# small SIMULATED sample. The resulting www/ folder deploys as-is to any static host.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
version=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p' | head -1)
if ! wasm-bindgen --version 2>/dev/null | grep -q "$version"; then
  echo "installing wasm-bindgen-cli $version (one time, a few minutes)"
  cargo install wasm-bindgen-cli --version "$version"
fi
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --release --target wasm32-unknown-unknown -p mamba-perturb
wasm-bindgen --target web --no-typescript --out-dir www/pkg "$target/wasm32-unknown-unknown/release/mamba_perturb.wasm"
if command -v wasm-opt >/dev/null && wasm-opt --version | grep -q -v "version 108"; then
  wasm-opt -Oz -o www/pkg/mamba_perturb_bg.wasm www/pkg/mamba_perturb_bg.wasm || echo "wasm-opt failed; keeping the unoptimised wasm"
fi
mkdir -p www/models www/sample
rm -rf www/models/default && cp -r models/default www/models/default
cp data/genome/cytoband_GRCh38.tsv www/
cargo build --release -p mamba-perturb-trainer
# Same simulated world as the default model (seed 0, 1,000 genes), other cells.
"$target/release/mamba-perturb" simulate --out www/sample/sample.csv --cells 1000 --genes 1000 --seed 0 2>/dev/null
"$target/release/mamba-perturb" simulate --out www/sample/sample.h5ad --cells 1000 --genes 1000 --seed 0 --layout scperturb 2>/dev/null
echo "www/ is ready: $(du -sh www/pkg | cut -f1) of wasm + glue"
