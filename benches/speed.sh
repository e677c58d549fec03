#!/usr/bin/env bash
# Every CPU speed figure of results/speed.json in one run on this machine, then the README table.
#   - train_step, inference, gemm_share: benches/torch_vs_burn.py (PyTorch in .venv-torch:
#     python3 -m venv .venv-torch && .venv-torch/bin/pip install torch numpy safetensors)
#   - h5ad_read, h5ad_read_pertpy: benches/read_vs_anndata.py (anndata in .venv: scripts/setup-python.sh)
# GPU figures come from benches/gpu_speed.sh on a machine with a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/mamba-perturb}
cargo build --release -p mamba-perturb-trainer
.venv-torch/bin/python benches/torch_vs_burn.py --bin "$BIN" --rounds 5
.venv/bin/python benches/read_vs_anndata.py --bin "$BIN"
python3 benches/speed_json.py readme
