// The tab's memory as the benches report it, read from /proc (Linux, headless Chromium).
import { readdirSync, readFileSync } from "node:fs";

/** The largest renderer process's (the tab's, with its workers) resident memory in MiB: the larger
 * of VmRSS now and VmHWM, its peak since Chromium last reset it. */
function largestRendererMiB() {
  let peak = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("--type=renderer")) continue;
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      for (const field of ["VmRSS", "VmHWM"]) {
        const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
        if (kb) peak = Math.max(peak, Number(kb[1]) / 1024);
      }
    } catch { /* the process ended */ }
  }
  return peak;
}

/** Peak resident memory (MiB) of the largest renderer process, read once. Chromium resets VmHWM
 * now and then, so a reading at the end can miss an earlier peak: `rendererPeakSampler` does not. */
export const rendererPeakMiB = largestRendererMiB;

/** Samples the largest renderer's memory every `ms` until `stop()`, which returns the peak (MiB). */
export function rendererPeakSampler(ms = 100) {
  let peak = 0;
  const sample = () => { peak = Math.max(peak, largestRendererMiB()); };
  sample();
  const timer = setInterval(sample, ms);
  return { stop: () => { clearInterval(timer); sample(); return peak; } };
}
