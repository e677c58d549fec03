#!/usr/bin/env python3
"""Speed of the Burn network against its PyTorch twin on the same shapes, in one run.

Times a training step (forward + exact set loss + backward + AdamW) and an inference pass for a batch,
median over --steps after 2 warm-up steps, both on the CPU with the same thread count (or both on
the GPU with --device gpu: PyTorch on CUDA, Burn on wgpu/Vulkan from a binary built with
`--features gpu`). Also reports Burn's training
rate as a share of a plain 1024^3 matrix product through the same backend (the machine's limit).
Writes the figures to results/speed.json (benches/speed_json.py) unless --no-record.

Usage: .venv-torch/bin/python benches/torch_vs_burn.py [--genes 233 --candidates 105 --batch 64 --d-model 32
       --heads 4 --steps 20 --threads 2 --device cpu --bin target/release/mamba-perturb --no-record]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference", "pytorch"))
from perturbnet import PerturbNet, genome_features  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import speed_json  # noqa: E402


def set_nll(gene, count, y, k):
    """Same exact set likelihood as src/model/sets.rs."""
    chosen = (gene * y).sum(1)
    lse1 = torch.logsumexp(gene, 1)
    top = gene.topk(2, 1).values.detach().mean(1, keepdim=True)
    w = torch.exp(gene - top).sort(1).values
    before = torch.cat([torch.zeros_like(w[:, :1]), w.cumsum(1)[:, :-1]], 1)
    lse2 = torch.log((w * before).sum(1)) + 2 * top.squeeze(1)
    set_term = k[:, 1] * lse1 + k[:, 2] * lse2 - chosen
    count_term = -(torch.log_softmax(count, 1) * k).sum(1)
    return (set_term + count_term).mean()


def main():
    ap = argparse.ArgumentParser()
    for name, default in [("genes", 233), ("candidates", 105), ("batch", 64), ("d-model", 32), ("heads", 4), ("steps", 20), ("threads", 2)]:
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--bin", default="target/release/mamba-perturb")
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--rounds", type=int, default=3, help="alternating PyTorch / Burn rounds; medians over rounds are reported")
    ap.add_argument("--no-record", action="store_true", help="do not write results/speed.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device("cuda" if a.device == "gpu" else "cpu")
    sync = torch.cuda.synchronize if a.device == "gpu" else (lambda: None)
    g, c, b = a.genes, a.candidates, a.batch
    net = PerturbNet(g, c, a.d_model, a.heads, 6).to(dev)
    gc, gl = genome_features([None] * g, 6)
    qc, ql = genome_features([None] * c, 6, extra_zero_rows=1)
    own = torch.tensor([i % g for i in range(c)] + [g], dtype=torch.long)  # as `mamba-perturb speed`
    feats = dict(gene_chrom=gc, gene_locus=gl, query_chrom=qc, query_locus=ql, mean=torch.full((g,), 0.5), inv_sd=torch.ones(g),
                 own_token=own)
    feats = {key: v.to(dev) for key, v in feats.items()}
    x = torch.rand(b, g) * 3
    y = torch.zeros(b, c)
    k = torch.zeros(b, 3)
    for r in range(b):
        y[r, r % c] = 1
        y[r, (r + 1) % c] = 1
        k[r, 2] = 1
    x, y, k = x.to(dev), y.to(dev), k.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def torch_round():
        train = []
        for i in range(a.steps + 2):
            t = time.perf_counter()
            gene, count, _ = net(x, feats)
            loss = set_nll(gene, count, y, k)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
            if i >= 2:
                train.append(time.perf_counter() - t)
        infer = []
        with torch.no_grad():
            for i in range(a.steps + 2):
                t = time.perf_counter()
                net(x, feats)
                sync()
                if i >= 2:
                    infer.append(time.perf_counter() - t)
        return {"train_step_s": statistics.median(train), "inference_batch_s": statistics.median(infer)}

    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))

    def burn_round():
        out = subprocess.run([a.bin, "speed", "--genes", str(g), "--candidates", str(c), "--batch", str(b), "--d-model",
                              str(a.d_model), "--heads", str(a.heads), "--steps", str(a.steps), "--device", a.device],
                             capture_output=True, text=True, env=env, check=True)
        return json.loads(out.stdout)

    # Alternate the two, so a slow spell of the machine hits both; report medians over rounds.
    torch_rounds, burn_rounds = [], []
    for _ in range(a.rounds):
        torch_rounds.append(torch_round())
        burn_rounds.append(burn_round())
    torch_res = {key: statistics.median(r[key] for r in torch_rounds) for key in torch_rounds[0]}
    burn = dict(burn_rounds[0])
    for key in ["train_step_s", "inference_batch_s", "gemm_gflops"]:
        burn[key] = statistics.median(r[key] for r in burn_rounds)
    flops = burn["forward_flops"]
    where = torch.cuda.get_device_name(0) if a.device == "gpu" else f"{a.threads} threads, {os.cpu_count()}-core CPU"
    print(f"Shapes: {b} cells x {g} genes x {c + 1} queries, d_model {a.d_model}, {a.heads} heads; {where}; "
          f"torch {torch.__version__}; forward {flops / b / 1e6:.2f} MFLOP per cell")
    print(f"{'':<22}{burn['backend']:>18}{'pytorch':>12}{'torch/burn':>12}")
    for key, label in [("train_step_s", "train step (s)"), ("inference_batch_s", "inference batch (s)")]:
        print(f"{label:<22}{burn[key]:>18.4f}{torch_res[key]:>12.4f}{torch_res[key] / burn[key]:>12.2f}")
    train_rate = 3 * flops / burn["train_step_s"] / 1e9
    print(f"achieved: burn {train_rate:.1f} GFLOP/s training, {flops / burn['inference_batch_s'] / 1e9:.1f} GFLOP/s inference; "
          f"pytorch {3 * flops / torch_res['train_step_s'] / 1e9:.1f} / {flops / torch_res['inference_batch_s'] / 1e9:.1f}; "
          f"a plain 1024^3 matrix product through the same backend: {burn['gemm_gflops']:.1f} GFLOP/s")
    print(f"torch/burn > 1 means burn is faster; medians of {a.rounds} alternating rounds of {a.steps} steps each")
    if a.no_record:
        return
    suffix = "" if a.device == "cpu" else "_gpu"
    command = f"benches/torch_vs_burn.py --device {a.device} --threads {a.threads} --batch {b}"
    shapes = f"{b} cells × {g} genes × {c + 1} queries; {where}; torch {torch.__version__}."
    speed_json.record([
        speed_json.timing("train_step" + suffix, burn["train_step_s"], "PyTorch twin", torch_res["train_step_s"], command, shapes),
        speed_json.timing("inference" + suffix, burn["inference_batch_s"], "PyTorch twin", torch_res["inference_batch_s"], command,
                          shapes),
        {"name": "gemm_share" + suffix, "ours": train_rate, "peer": "1024³ f32 matrix product, same backend",
         "peer_value": burn["gemm_gflops"], "unit": "GFLOP/s", "speedup": train_rate / burn["gemm_gflops"], "command": command,
         "note": f"training rate as a share of the machine's GEMM rate; {where}."},
    ])


if __name__ == "__main__":
    main()
