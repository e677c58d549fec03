#!/usr/bin/env python3
"""Out-of-core training, measured: `train --stream` against the same training in memory, on SIMULATED
files of 100k, 250k and 500k cells x 8,000 genes (the shape class of Replogle 2022's K562 screens;
scPerturb layout, counts in X). One epoch each: peak memory (the process's maximum resident set,
from /usr/bin/time) and training cells per second (the epoch's training cells over its seconds,
reading included). Writes train_stream_100k/250k/500k into results/speed.json and prints the
projection for 2.5 million cells.

    python3 benches/train_stream.py [--bin PATH] [--dir /tmp/mamba-stream-bench] [--cells 100000,250000,500000]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import speed_json  # noqa: E402


def run(cmd):
    """Runs a command under /usr/bin/time -v: (seconds, peak MiB, stderr)."""
    t = time.time()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return time.time() - t, peak_kib / 1024, p.stderr


def train(binary, data, out, stream):
    cmd = [binary, "train", "--data", data, "--out", out, "--epochs", "1"] + (["--stream"] if stream else [])
    seconds, peak, log = run(cmd)
    card = json.load(open(os.path.join(out, "card.json")))
    epoch = card["metrics"]["history"][0]
    cells = card["training_data"]["cells"]
    passes = [float(s) for s in re.findall(r"cells read in ([0-9.]+) s", log)]
    return {"seconds": seconds, "peak_mib": peak, "cells": cells, "epoch_seconds": epoch["seconds"],
            "cells_per_s": cells / epoch["seconds"], "pass_seconds": passes,
            "command": " ".join(["mamba-perturb"] + cmd[1:])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "mamba-perturb"))
    ap.add_argument("--dir", default="/tmp/mamba-stream-bench")
    ap.add_argument("--cells", default="100000,250000,500000")
    ap.add_argument("--genes", type=int, default=8000)
    ap.add_argument("--peer-cells", default="100000,250000,500000",
                    help="sizes also trained in memory (the peer); the others report the largest measured peer")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    rows = []
    for n in [int(c) for c in args.cells.split(",")]:
        name = f"{n // 1000}k"
        data = os.path.join(args.dir, f"cells_{name}.h5ad")
        if not os.path.exists(data):
            subprocess.run([args.bin, "simulate", "--out", data, "--cells", str(n), "--genes", str(args.genes),
                            "--seed", "0", "--layout", "scperturb"], check=True)
        gib = os.path.getsize(data) / 2**30
        streamed = train(args.bin, data, os.path.join(args.dir, f"model_stream_{name}"), True)
        peers = [int(c) for c in args.peer_cells.split(",")]
        memory = (train(args.bin, data, os.path.join(args.dir, f"model_memory_{name}"), False) if n in peers
                  else dict(rows[-1][4], measured_on=rows[-1][1]))
        rows.append((n, name, gib, streamed, memory))
        print(f"[simulated] {name} cells ({gib:.2f} GiB): streamed {streamed['cells_per_s']:.0f} cells/s, "
              f"peak {streamed['peak_mib']:.0f} MiB, whole run {streamed['seconds']:.0f} s "
              f"(passes {streamed['pass_seconds']}); in memory {memory['cells_per_s']:.0f} cells/s, "
              f"peak {memory['peak_mib']:.0f} MiB, whole run {memory['seconds']:.0f} s", flush=True)

    entries = []
    for n, name, gib, s, m in rows:
        entries.append({
            "name": f"train_stream_{name}", "ours": s["cells_per_s"], "unit": "cells/s",
            "peer": "the same training in memory" + (f" (of the {m['measured_on']} file)" if "measured_on" in m else ""),
            "peer_value": m["cells_per_s"],
            "speedup": s["cells_per_s"] / m["cells_per_s"],
            "peak_mib": s["peak_mib"], "cells_per_s": s["cells_per_s"], "peer_peak_mib": m["peak_mib"],
            "run_seconds": s["seconds"], "peer_run_seconds": m["seconds"],
            "command": f"benches/train_stream.py ({s['command']})",
            "note": f"SIMULATED {n:,} cells × {args.genes:,} genes ({gib:.2f} GiB h5ad), one epoch, 2 cores; "
                    f"peak memory {s['peak_mib']:.0f} MiB streamed vs {m['peak_mib']:.0f} MiB in memory"
                    f"{' (' + m['measured_on'] + ' file)' if 'measured_on' in m else ''}; "
                    f"whole run {s['seconds']:.0f} s vs {m['seconds']:.0f} s.",
        })
    speed_json.record(entries)
    # Projection: the passes and the epoch grow with the cells, memory does not (the samples are capped).
    n, _, _, s, _ = rows[-1]
    per_cell = (s["seconds"] - s["epoch_seconds"]) / n
    target = 2_500_000
    hours = (per_cell * target + target * (s["cells"] / n) / s["cells_per_s"]) / 3600
    print(f"[simulated] projection for {target:,} cells: peak about {max(r[3]['peak_mib'] for r in rows):.0f} MiB "
          f"(flat), one epoch about {hours:.1f} h on 2 cores at {s['cells_per_s']:.0f} cells/s")
    speed_json.readme()


if __name__ == "__main__":
    main()
