// Small helpers every view uses. Names from files and model cards reach the page only through
// `esc` or `textContent`, never as markup.
export const $ = (id) => document.getElementById(id);
export const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
export const percent = (p) => (p * 100).toFixed(1) + "%";

export function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("progress").hidden = true;
}
export const clearError = () => { $("error").hidden = true; };

export function showProgress(text, done, total) {
  $("progress").hidden = false;
  $("bar").value = total ? done / total : 0;
  $("progress-text").textContent = text;
}

export function download(name, data, type) {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
