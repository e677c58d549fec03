#!/usr/bin/env python3
"""Read speed and peak memory of `mamba-perturb inspect` against Python anndata, same files, same run.

Simulates Norman-sized files (SIMULATED data; default 100,000 cells x 5,000 genes) once into a
cache folder, then times, in fresh processes and alternating order:
  * mamba-perturb: `mamba-perturb inspect FILE` (reads the counts matrix, names and labels, then
    summarises: value detection, gene placement, label parsing);
  * anndata:       `anndata.read_h5ad(FILE)` (reads the whole file into memory).
Peak memory is each process's maximum resident set (from wait4). Prints medians and ratios.

Usage: python benches/read_vs_anndata.py [--cells 100000] [--genes 5000] [--repeats 3]
       [--python .venv/bin/python] [--bin target/release/mamba-perturb] [--cache /tmp/mamba-bench]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import speed_json  # noqa: E402


def run_measured(cmd):
    """Runs cmd, returns (seconds, peak RSS in MiB); fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--genes", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--python", default=".venv/bin/python")
    ap.add_argument("--bin", default="target/release/mamba-perturb")
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "mamba-bench"))
    ap.add_argument("--no-record", action="store_true", help="do not write results/speed.json")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)

    rows = []
    for layout in ["scperturb", "pertpy"]:
        path = os.path.join(args.cache, f"sim_{layout}_{args.cells}x{args.genes}.h5ad")
        if not os.path.exists(path):
            print(f"[simulated] writing {path} ...", flush=True)
            subprocess.run([args.bin, "simulate", "--out", path, "--cells", str(args.cells), "--genes",
                            str(args.genes), "--layout", layout, "--seed", "0"], check=True)
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # same warm page cache for both
        ours, theirs, imports = [], [], []
        for _ in range(args.repeats):
            ours.append(run_measured([args.bin, "inspect", path]))
            theirs.append(run_measured([args.python, "-c", f"import anndata; anndata.read_h5ad({path!r})"]))
            imports.append(run_measured([args.python, "-c", "import anndata"]))
        med = lambda xs, k: statistics.median(x[k] for x in xs)
        rows.append((layout, os.path.getsize(path) / 2**30, med(ours, 0), med(theirs, 0), med(imports, 0),
                     med(ours, 1), med(theirs, 1)))

    version = subprocess.run([args.python, "-c", "import anndata; print(anndata.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    print(f"\nRead benchmark on SIMULATED Norman-design data ({args.cells} cells x {args.genes} genes), "
          f"median of {args.repeats}; anndata {version}; {os.cpu_count()} cores")
    print(f"{'layout':<10} {'file GiB':>8} {'ours s':>7} {'anndata s':>9} {'(import s)':>10} {'speed x':>8} "
          f"{'speed x*':>8} {'ours MiB':>9} {'anndata MiB':>11} {'memory x':>9}")
    for layout, gib, ts, ta, ti, ms, ma in rows:
        print(f"{layout:<10} {gib:>8.2f} {ts:>7.2f} {ta:>9.2f} {ti:>10.2f} {ta / ts:>8.2f} {(ta - ti) / ts:>8.2f} "
              f"{ms:>9.0f} {ma:>11.0f} {ma / ms:>9.2f}")
    print("speed x = anndata time / mamba-perturb time (whole processes); speed x* = the same with anndata's "
          "interpreter start + import subtracted; memory x = anndata peak RSS / mamba-perturb peak RSS (higher is better for us)")
    print("pertpy layout: anndata reads X and layers/counts; mamba-perturb reads only layers/counts (what the model uses).")
    if args.no_record:
        return
    command = f"benches/read_vs_anndata.py --cells {args.cells} --genes {args.genes} --repeats {args.repeats}"
    speed_json.record([
        speed_json.timing("h5ad_read" if layout == "scperturb" else f"h5ad_read_{layout}", ts, f"anndata {version}", ta, command,
                          f"SIMULATED {args.cells:,} cells × {args.genes:,} genes, {layout} layout, {gib:.2f} GiB; whole processes "
                          f"(anndata's Python start and import: {ti:.2f} s); peak memory {ms:.0f} vs {ma:.0f} MiB; "
                          f"{os.cpu_count()} cores.")
        for layout, gib, ts, ta, ti, ms, ma in rows])


if __name__ == "__main__":
    main()
