// Links that open a model, a file and a view: ?model=FOLDER&data=FILE_URL&cell=NAME_OR_ROW&gene=SYMBOL&backend=auto|webgpu|cpu
const params = new URLSearchParams(location.search);

export const linked = {
  model: params.get("model"),
  data: params.get("data"),
  backend: params.get("backend"),
  cell: params.get("cell"),
  gene: params.get("gene"),
};

/** The link to this model, file and view (only files fetched from an address can be linked). */
export function linkTo({ dataUrl, cell, gene }) {
  const u = new URL(location.href.split("?")[0]);
  if (linked.model) u.searchParams.set("model", linked.model);
  u.searchParams.set("data", dataUrl);
  if (cell) u.searchParams.set("cell", cell);
  if (gene) u.searchParams.set("gene", gene);
  return u.href;
}
