// The page's side of the worker protocol (protocol.js): send requests, route each reply type to
// its one handler, and drop prediction replies of superseded runs.
// `?workers=N` on the page's address sets the CPU pool's size (default: one per core).
const workerUrl = new URL("./worker.js", import.meta.url);
const workers = new URLSearchParams(location.search).get("workers");
if (workers) workerUrl.searchParams.set("workers", workers);
const worker = new Worker(workerUrl, { type: "module" });
const handlers = {};
let currentRun = 0;

/** @param {import("./protocol.js").Request} message */
export const send = (message) => worker.postMessage(message);
export const on = (type, handler) => { handlers[type] = handler; };

/** Starts a prediction run; replies of earlier runs are ignored from now on. */
export function startRun() {
  currentRun += 1;
  send({ type: "predict", run: currentRun });
  return currentRun;
}

worker.onmessage = ({ data: m }) => {
  if ("run" in m && m.run !== currentRun) return; // superseded
  (handlers[m.type] || (() => console.warn("unhandled worker reply", m.type)))(m);
};
worker.onerror = (e) => handlers.error?.({ message: "The analysis worker failed: " + e.message });
