"""Writes tests/fixtures/torch_twin/: weights of a PyTorch twin (safetensors), a model card for it,
input cells and the logits PyTorch computes, so the Rust test can check the Burn model without torch.

Run: .venv-torch/bin/python reference/pytorch/make_twin_fixture.py   (torch + safetensors from PyPI)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from perturbnet import PerturbNet, genome_features, own_tokens  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "torch_twin")
G, C, D, H, F_ = 24, 6, 16, 4, 4
CHROMS = ["1", "2", "7", "11", "17", "19", "X", "Y"]


def main():
    torch.manual_seed(7)
    os.makedirs(OUT, exist_ok=True)
    net = PerturbNet(G, C, D, H, F_, cis=True).eval()
    with torch.no_grad():  # non-trivial values everywhere, LayerNorm included
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    gene_loci = [None if i == 5 else (CHROMS[i % len(CHROMS)], round((i * 0.137) % 1.0, 4)) for i in range(G)]
    cand_loci = [(CHROMS[(i + 3) % len(CHROMS)], round((i * 0.291 + 0.05) % 1.0, 4)) for i in range(C)]
    mean = (torch.rand(G) * 2.0).tolist()
    sd = (torch.rand(G) * 0.8 + 0.2).tolist()
    gene_chrom, gene_locus = genome_features(gene_loci, F_)
    query_chrom, query_locus = genome_features(cand_loci, F_, extra_zero_rows=1)
    panel_symbols = [f"G{i}" for i in range(G)]
    # Candidates T0..T2 are measured panel genes (their own token is read), T3.. are not.
    cand_symbols = [f"G{3 * i + 1}" if i < 3 else f"T{i}" for i in range(C)]
    feats = dict(gene_chrom=gene_chrom, gene_locus=gene_locus, query_chrom=query_chrom, query_locus=query_locus,
                 mean=torch.tensor(mean), inv_sd=1.0 / torch.tensor(sd).clamp(min=0.05),
                 own_token=own_tokens(panel_symbols, cand_symbols))
    x = (torch.rand(5, G) * 4.0).float()
    x[0, :] = 0.0  # an empty cell
    # A file that lacks some panel genes (among them the own genes of candidates 0 and 2): absent keys
    # and own tokens, as a partial panel enters the Burn model.
    present = torch.ones(1, G)
    present[0, [1, 7, 8, 15]] = 0.0
    with torch.no_grad():
        gene, count, _ = net(x, feats)
        gene_p, count_p, _ = net(x, dict(feats, present=present))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, os.path.join(OUT, "weights.safetensors"))

    def card_gene(i, name, l):
        g = {"symbol": name}
        if l is not None:
            g.update(chrom=l[0], start=int(l[1] * 1e8), end=int(l[1] * 1e8) + 1000, relative=l[1])
        return g

    card = {
        "format": "mamba-perturb-model/1", "name": "torch-twin-fixture",
        "description": "Random-weight PyTorch twin used to check the Burn model (not a trained model)",
        "training_data": {"name": "none", "kind": "simulated", "sha256": "", "cells": 0, "conditions": 0, "label_column": ""},
        "panel": [card_gene(i, panel_symbols[i], l) for i, l in enumerate(gene_loci)],
        "candidates": [card_gene(i, cand_symbols[i], l) for i, l in enumerate(cand_loci)],
        "targets_masked": False, "normalization": "log1p(CP10k)",
        "net": {"n_genes": G, "n_candidates": C, "d_model": D, "n_heads": H, "n_freqs": F_, "cis": True},
        "reference_mean": mean, "reference_sd": sd,
        "weights": {"file": "model.bpk", "sha256": "", "bytes": 0, "dtype": "f32"},
        "command": "reference/pytorch/make_twin_fixture.py", "seed": 7, "metrics": {}, "versions": {"torch": torch.__version__},
    }
    with open(os.path.join(OUT, "card.json"), "w") as f:
        json.dump(card, f, indent=1)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"x": x.tolist(), "gene_logits": gene.tolist(), "count_logits": count.tolist(),
                   "present": present[0].tolist(), "partial_gene_logits": gene_p.tolist(),
                   "partial_count_logits": count_p.tolist()}, f)
    print(f"wrote {OUT}: {G} genes, {C} candidates, d={D}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
