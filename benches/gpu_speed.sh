#!/usr/bin/env bash
# GPU figures for results/speed.json, on a machine with a GPU, its Vulkan driver and loader, and a
# python3 with PyTorch (CUDA) for the peer. BIN is a trainer built with `--features gpu`:
#   cargo build --release -p mamba-perturb-trainer --features gpu
#   BIN=target/release/mamba-perturb OUTDIR=results/tmp bash benches/gpu_speed.sh
# Writes train_step_gpu / inference_gpu / gemm_share_gpu (Burn wgpu/Vulkan vs the PyTorch twin on the same
# GPU) and train_epoch_gpu (one epoch of `train` on the GPU vs Burn's CPU backend on all of the same
# machine's cores, same data and model; SIMULATED data) to results/speed.json.
set -uo pipefail
BIN=${BIN:-target/release/mamba-perturb}
OUTDIR=${OUTDIR:-results/tmp}
mkdir -p "$OUTDIR"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
# Vulkan: the loader must be installed (ldconfig -p | grep libvulkan); NVIDIA's ICD file is found
# in the usual places or named by VK_DRIVER_FILES.
ldconfig -p | grep -m1 libvulkan || echo "no Vulkan loader found"

python3 benches/torch_vs_burn.py --device gpu --bin "$BIN" --steps 30
# Larger batches suit a GPU better: for information, not recorded.
python3 benches/torch_vs_burn.py --device gpu --bin "$BIN" --steps 10 --batch 1024 --no-record
# The CPU comparison on this machine's CPU (2 threads), not recorded (results/speed.json's CPU rows
# come from the developers' machine).
python3 benches/torch_vs_burn.py --device cpu --threads 2 --bin "$BIN" --no-record

"$BIN" simulate --cells 10000 --genes 1000 --seed 0 --out "$OUTDIR/train.h5ad" >/dev/null
for dev in gpu cpu; do
  "$BIN" train --data "$OUTDIR/train.h5ad" --out "$OUTDIR/model_$dev" --hvg 128 --epochs 2 --patience 9 \
    --device "$dev" 2>&1 | grep -v "steps" | tee "$OUTDIR/train_$dev.log"
done
python3 - "$OUTDIR" <<'PY'
import json, os, sys
sys.path.insert(0, "benches")
import speed_json
out = sys.argv[1]
hist = {d: json.load(open(os.path.join(out, f"model_{d}", "card.json")))["metrics"]["history"] for d in ("gpu", "cpu")}
# Epoch 2: epoch 1 includes the GPU's kernel compilation.
gpu, cpu = hist["gpu"][-1]["seconds"], hist["cpu"][-1]["seconds"]
print(f"one training epoch: GPU {gpu:.2f} s, CPU ({os.cpu_count()} cores) {cpu:.2f} s")
speed_json.record([speed_json.timing(
    "train_epoch_gpu", gpu, f"Burn flex CPU backend, {os.cpu_count()} cores of the same machine", cpu,
    "benches/gpu_speed.sh",
    "SIMULATED 10,000 cells x 1,000 genes, panel 233 genes, 8,000 training cells, batch 64, validation included; "
    "second epoch (the first compiles GPU kernels).")])
PY
cp results/speed.json "$OUTDIR/speed.json"
