// The tab's memory as the benches report it, read from /proc (Linux, headless Chromium).
import { readdirSync, readFileSync } from "node:fs";

/** Peak resident memory (VmHWM, MiB) of the largest renderer process: the tab and its workers. */
export function rendererPeakMiB() {
  let peak = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("--type=renderer")) continue;
      const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (hwm) peak = Math.max(peak, Number(hwm[1]) / 1024);
    } catch { /* the process ended */ }
  }
  return peak;
}
