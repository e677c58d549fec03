#!/usr/bin/env python3
"""Speed of the Burn network against its PyTorch twin on the same shapes, in one run.

Times a training step (forward + exact set loss + backward + AdamW) and an inference pass for a batch,
median over --steps after 2 warm-up steps, both on CPU with the same thread count.

Usage: .venv-torch/bin/python benches/torch_vs_burn.py [--genes 233 --candidates 105 --batch 64 --d-model 32
       --heads 4 --steps 20 --threads 2 --bin target/release/mamba-perturb]
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
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g, c, b = a.genes, a.candidates, a.batch
    net = PerturbNet(g, c, a.d_model, a.heads, 6)
    gc, gl = genome_features([None] * g, 6)
    qc, ql = genome_features([None] * c, 6, extra_zero_rows=1)
    own = torch.tensor([i % g for i in range(c)] + [g], dtype=torch.long)  # as `mamba-perturb speed`
    feats = dict(gene_chrom=gc, gene_locus=gl, query_chrom=qc, query_locus=ql, mean=torch.full((g,), 0.5), inv_sd=torch.ones(g),
                 own_token=own)
    x = torch.rand(b, g) * 3
    y = torch.zeros(b, c)
    k = torch.zeros(b, 3)
    for r in range(b):
        y[r, r % c] = 1
        y[r, (r + 1) % c] = 1
        k[r, 2] = 1
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    train = []
    for i in range(a.steps + 2):
        t = time.perf_counter()
        gene, count, _ = net(x, feats)
        loss = set_nll(gene, count, y, k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 2:
            train.append(time.perf_counter() - t)
    infer = []
    with torch.no_grad():
        for i in range(a.steps + 2):
            t = time.perf_counter()
            net(x, feats)
            if i >= 2:
                infer.append(time.perf_counter() - t)
    torch_res = {"train_step_s": statistics.median(train), "inference_batch_s": statistics.median(infer)}
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.bin, "speed", "--genes", str(g), "--candidates", str(c), "--batch", str(b), "--d-model", str(a.d_model),
                          "--heads", str(a.heads), "--steps", str(a.steps)], capture_output=True, text=True, env=env, check=True)
    burn = json.loads(out.stdout)
    flops = burn["forward_flops_per_cell"]
    print(f"Shapes: {b} cells x {g} genes x {c + 1} queries, d_model {a.d_model}, {a.heads} heads; {a.threads} threads; "
          f"torch {torch.__version__}; forward {flops / 1e6:.1f} MFLOP per cell")
    print(f"{'':<22}{'burn (flex)':>14}{'pytorch':>12}{'torch/burn':>12}")
    for key, label in [("train_step_s", "train step (s)"), ("inference_batch_s", "inference batch (s)")]:
        print(f"{label:<22}{burn[key]:>14.4f}{torch_res[key]:>12.4f}{torch_res[key] / burn[key]:>12.2f}")
    print(f"achieved: burn {3 * flops * b / burn['train_step_s'] / 1e9:.1f} GFLOP/s training, "
          f"{flops * b / burn['inference_batch_s'] / 1e9:.1f} GFLOP/s inference; "
          f"pytorch {3 * flops * b / torch_res['train_step_s'] / 1e9:.1f} / {flops * b / torch_res['inference_batch_s'] / 1e9:.1f}")
    print("torch/burn > 1 means burn is faster.")


if __name__ == "__main__":
    main()
