#!/usr/bin/env bash
# Builds the CLI, writes a small SIMULATED Norman-design sample and shows what the readers find in it.
# (The drag-and-drop web page will replace this as the main entry point.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mamba-perturb-trainer
mkdir -p results/tmp
bin=target/release/mamba-perturb
$bin simulate --out results/tmp/sample.h5ad --cells 5000 --genes 1000 --seed 0
$bin inspect results/tmp/sample.h5ad
echo
echo "Next: $bin inspect YOUR_FILE.h5ad   (or .csv / .csv.gz);  $bin --help for everything"
