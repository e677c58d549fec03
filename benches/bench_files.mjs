// What the page benches share: the native CLI, the SIMULATED files they measure on (cached between
// runs) and the CLI's own speed on them, the peer every page figure is divided by.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const bin = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "release", "mamba-perturb");
export const cache = path.join(os.tmpdir(), "mamba-page-bench");
mkdirSync(cache, { recursive: true });

/** `simulate --out out ...extra`, once: an existing file is reused. */
export const simulate = (out, extra) => { if (!existsSync(out)) execFileSync(bin, ["simulate", "--out", out, ...extra], { stdio: "ignore" }); return out; };

/** The native CLI on the same file and model: cells/s of the whole process (read, predict, write). */
export function nativeCellsPerSecond(file, n, threads) {
  const t0 = process.hrtime.bigint();
  execFileSync(bin, ["predict", "--model", path.join(root, "models/default"), file, "-o", path.join(cache, "out.json")],
    { stdio: "ignore", env: { ...process.env, RAYON_NUM_THREADS: String(threads) } });
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}
