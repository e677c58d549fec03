#!/usr/bin/env python3
"""Outsider's check of the simulator's realism: reads a SIMULATED h5ad written by
`mamba-perturb simulate` and measures it with the authors' definitions in Python (anndata, scipy),
independently of the Rust report (`simulate --realism`):

- cells normalised to 14,955 UMIs by their whole-transcriptome total (obs `ncounts`),
- DE genes: scipy two-sample KS test (asymptotic) of each condition against control cells, genes with
  mean > 0.25, Benjamini-Yekutieli, adjusted p < 0.001 (Norman et al. 2019, GI_generate_populations),
- GI refit: least squares without intercept of the double's mean change on the singles', genes with
  mean > 0.5, targets excluded (GI_model_fits), and the pair correlation of the singles.

A file holds a random panel of genes, so its DE counts are a share of the screen's; the Spearman
correlations with the authors' per-condition values are what compare. Usage (after
scripts/setup-python.sh):

    mamba-perturb simulate --out /tmp/sim60k.h5ad --cells 60000 --genes 6000 --layout scperturb --cell-seed 2
    .venv/bin/python benches/simulation_realism.py /tmp/sim60k.h5ad --out results/simulation_realism_file.json
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import anndata
import numpy as np
from scipy import sparse, stats

ROOT = Path(__file__).resolve().parent.parent
CONTROL_MEDIAN_UMI = 14955.0


def by_count(p, alpha=1e-3):
    p = np.sort(np.asarray(p))
    m = len(p)
    if m == 0:
        return 0
    c_m = np.sum(1.0 / np.arange(1, m + 1))
    ok = np.nonzero(p * m * c_m / np.arange(1, m + 1) < alpha)[0]
    return int(ok[-1] + 1) if len(ok) else 0


def gi_class(c1, c2):
    if c1 <= 0.05 or c2 <= 0.05:
        return "buffering" if (c1 <= 0.05 and c2 <= 0.05) else "dominant"
    if abs(np.log2(c1 / c2)) > 1.0:
        return "dominant"
    norm = np.hypot(c1, c2)
    return "synergy" if norm > 1.6 else ("buffering" if norm < 1.15 else "additive")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("h5ad")
    ap.add_argument("--out")
    args = ap.parse_args()

    a = anndata.read_h5ad(args.h5ad)
    if a.uns.get("data_kind") != "simulated":
        sys.exit(f"{args.h5ad}: not a simulated file (uns/data_kind)")
    counts = a.layers["counts"] if "counts" in a.layers else a.X
    counts = sparse.csr_matrix(counts, dtype=np.float64)
    label_col = next(c for c in ("perturbation_name", "perturbation", "condition") if c in a.obs)
    labels = a.obs[label_col].astype(str).str.replace("_", "+").to_numpy()
    labels = np.where(np.isin(labels, ["ctrl", "control"]), "control", labels)
    scale = CONTROL_MEDIAN_UMI / a.obs["ncounts"].to_numpy(dtype=np.float64)
    norm = sparse.diags(scale) @ counts
    genes = a.var_names.to_numpy() if "ensembl_id" in a.var or "gene_ids" in a.var else a.var["gene_name"].to_numpy()

    design = {r["perturbation"]: r for r in csv.DictReader(open(ROOT / "data/norman2019/design.tsv"), delimiter="\t")}
    targets = {g for r in design.values() for g in (r["target_1"], r["target_2"]) if g}

    means = np.asarray(norm.mean(axis=0)).ravel()
    tested = np.nonzero(means > 0.25)[0]
    fit = np.array([j for j in np.nonzero(means > 0.5)[0] if genes[j] not in targets])
    ctrl_rows = np.nonzero(labels == "control")[0]
    ctrl = norm[ctrl_rows][:, tested].toarray()
    ctrl_mean = np.asarray(norm[ctrl_rows].mean(axis=0)).ravel()

    de, delta = {}, {}
    for cond in sorted(set(labels) - {"control"}):
        rows = np.nonzero(labels == cond)[0]
        pop = norm[rows][:, tested].toarray()
        ps = [stats.ks_2samp(pop[:, i], ctrl[:, i], method="asymp").pvalue for i in range(len(tested))]
        de[cond] = by_count(ps)
        delta[cond] = np.asarray(norm[rows].mean(axis=0)).ravel()[fit] - ctrl_mean[fit]

    def spearman(kind, key):
        pairs = [(de[c], float(r[key])) for c, r in design.items() if r["type"] == kind and r[key] and c in de]
        return float(stats.spearmanr(*zip(*pairs))[0]), len(pairs)

    corrs, c1s, c2s, r1s, r2s, agree = [], [], [], [], [], 0
    for c, r in design.items():
        if r["type"] != "double" or not r["coef_first"] or c not in delta:
            continue
        da, db, dab = delta[r["target_1"]], delta[r["target_2"]], delta[c]
        corrs.append(np.corrcoef(da, db)[0, 1])
        (c1, c2), *_ = np.linalg.lstsq(np.column_stack([da, db]), dab, rcond=None)
        c1s.append(c1), c2s.append(c2), r1s.append(float(r["coef_first"])), r2s.append(float(r["coef_second"]))
        agree += gi_class(c1, c2) == r["gi_class"]

    s_rho, s_n = spearman("single", "de_genes")
    d_rho, d_n = spearman("double", "de_genes")
    out = {
        "note": "SIMULATED file measured in Python (anndata, scipy) with the authors' definitions; see docs/simulation.md",
        "file": Path(args.h5ad).name,
        "world": json.loads(a.uns["world"]) if "world" in a.uns else None,
        "cells": int(a.n_obs), "genes": int(a.n_vars), "tested_genes": int(len(tested)), "fit_genes": int(len(fit)),
        "control_cells": int(len(ctrl_rows)),
        "de_singles_spearman": s_rho, "de_singles_n": s_n,
        "de_doubles_spearman": d_rho, "de_doubles_n": d_n,
        "de_singles_median": float(np.median([de[c] for c, r in design.items() if r["type"] == "single"])),
        "de_doubles_median": float(np.median([de[c] for c, r in design.items() if r["type"] == "double"])),
        "pair_correlation_median": float(np.median(corrs)),
        "c1_spearman": float(stats.spearmanr(c1s, r1s)[0]), "c2_spearman": float(stats.spearmanr(c2s, r2s)[0]),
        "gi_class_agreement": agree / len(c1s),
        "control_median_umi": float(np.median(a.obs["ncounts"].to_numpy()[ctrl_rows])),
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
