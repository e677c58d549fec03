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
# The `web` profile (Cargo.toml) builds for size; .cargo/config.toml turns on WebAssembly SIMD.
cargo build --profile web --target wasm32-unknown-unknown -p mamba-perturb
wasm-bindgen --target web --no-typescript --out-dir www/pkg "$target/wasm32-unknown-unknown/web/mamba_perturb.wasm"
# No wasm-opt: npm's binaryen 132 (-Oz) took 3m51s and shrank the wasm from 12.98 to 8.44 MB raw but
# grew it gzipped (2.77 to 2.90 MB, measured on an earlier build), which is what the page downloads. (Debian's binaryen 108 even
# breaks the module.)
mkdir -p www/models www/sample
rm -rf www/models/default && cp -r models/default www/models/default
cp data/genome/cytoband_GRCh38.tsv www/
cargo build --release -p mamba-perturb-trainer
# Same simulated world as the default model (seed 0, 2,000 genes), new cells (cell seed 1: with the
# training file's cell seed, some cells would be exact copies of training cells). The sample button
# opens the gzip-compressed h5ad (it carries the labels, so the page shows accuracy and groups);
# the CSV is the same cells in the other format people bring.
"$target/release/mamba-perturb" simulate --out www/sample/sample.csv --cells 1000 --genes 2000 --seed 0 --cell-seed 1 2>/dev/null
"$target/release/mamba-perturb" simulate --out www/sample/sample.h5ad --cells 1000 --genes 2000 --seed 0 --cell-seed 1 --layout scperturb --compression 6 2>/dev/null
echo "www/ is ready: $(du -sh www/pkg | cut -f1) of wasm + glue"
