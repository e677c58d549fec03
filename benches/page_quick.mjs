import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "tests/browser/package.json"));
const { chromium } = require("playwright-core");
const www = path.join(root, "www");
const port = 19000 + Math.floor(Math.random() * 500);
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", www], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 800));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log("console:", m.text()));
  await page.goto(`http://127.0.0.1:${port}/?backend=cpu${process.argv[3] || ""}`);
  await page.waitForSelector(`body[data-model][data-backend='cpu']`, { timeout: 120_000 });
  const file = process.argv[2] || "sample/bench_10k.csv";
  const n = Number(process.argv[4] || 10000);
  await page.setInputFiles("#file", path.join(www, file)); page.on("console", () => {});
  await page.waitForSelector(`body[data-predicted='${n}']`, { timeout: 600_000 });
  const [first, all, jobMs] = await page.evaluate(() => [Number(document.body.dataset.firstRowsMs), Number(document.body.dataset.allCellsMs), document.body.dataset.jobMs]);
  console.log(await page.textContent("#error").catch(() => "no #error"));
  console.log(`first ${first} ms, all ${all} ms, ${(n / (all / 1000)).toFixed(0)} cells/s, helpers busy ${jobMs} ms`);
} finally { await browser.close(); server.kill(); }
