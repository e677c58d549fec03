// Where a model comes from: a model folder's address (fetched, the weights cached) or the files a
// person picked. The folder's file names come from the core (Session.model_files()).
const CACHE = "mamba-perturb-models-v1"; // bump when the weight format changes

export async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}

// Weights are cached under a key carrying a hash of the model card (which changes with every
// training run), so repeat visits start at once and a retrained model at the same address is never
// paired with stale weights.
async function cachedFetch(url, card) {
  if (!("caches" in self) || !crypto.subtle) return fetchBytes(url);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(card)));
  const key = `${url}?card=${[...hash.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  const cache = await caches.open(CACHE);
  const hit = await cache.match(key);
  if (hit) return hit.arrayBuffer();
  const bytes = await fetchBytes(url);
  await cache.put(key, new Response(bytes.slice(0)));
  return bytes;
}

/** @returns {Promise<{card: string, weights: Uint8Array}>} */
export async function fromFolder(folder, [cardFile, weightsFile]) {
  const base = folder.endsWith("/") ? folder : folder + "/";
  const card = new TextDecoder().decode(await fetchBytes(base + cardFile));
  return { card, weights: new Uint8Array(await cachedFetch(base + weightsFile, card)) };
}

export async function fromFiles(files, [cardFile, weightsFile]) {
  const card = files.find((f) => f.name === cardFile) || files.find((f) => f.name.endsWith(".json"));
  const weights = files.find((f) => f.name === weightsFile) || files.find((f) => f.name.endsWith(".bpk"));
  if (!card || !weights) throw new Error(`Choose both ${cardFile} and ${weightsFile} from one model folder.`);
  return { card: await card.text(), weights: new Uint8Array(await weights.arrayBuffer()) };
}
