// What the browser tests (tests/browser/) read: a read-only view of the page's state, and
// `data-*` marks on <body> that say how far the page has come. Nothing here changes behaviour.
// `cells()` returns a Promise of every predicted cell (asked of the core).
export function exposeState(state, { cells }) {
  window.__mambaPerturb = { cells, bulk: () => state.bulk, model: () => state.model, selected: () => state.selected };
}
export const mark = (name, value) => { document.body.dataset[name] = String(value); };
export const unmark = (...names) => names.forEach((n) => delete document.body.dataset[n]);
