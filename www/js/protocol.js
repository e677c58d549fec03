// The messages between the page (app.js) and the analysis worker (worker.js), declared once.
// Results are the core's own types, serialised by the Rust bindings (src/wasm.rs): their fields are
// named as in src/analysis.rs, src/export.rs and src/model/card.rs.

/** Answers per cell and per pseudobulk group: shown, and written by the exports (as `predict --top 5 --group-top 3`). */
export const CELL_TOP = 5;
export const GROUP_TOP = 3;
/** Cells per forward pass; the first batch is smaller so answers appear sooner. */
export const BATCH = 256;
export const FIRST_BATCH = 64;
/** Cells per job of a helper worker (the CPU backend's pool: one helper per core). */
export const POOL_BATCH = 256;
/** Rows and columns of the confusion picture (the most frequent labels). */
export const CONFUSION_ANSWERS = 15;

// ---------- page → worker ----------
/**
 * @typedef {{type: "backend", choice: "auto" | "webgpu" | "cpu"}} BackendRequest
 * @typedef {{type: "load-model", folder: string} | {type: "load-model", files: File[]}} LoadModelRequest
 *   A model folder's address (fetched and cached by the worker), or the files a person picked.
 * @typedef {{type: "open", file: File, orientation: "auto" | "cells-as-rows" | "genes-as-rows"}} OpenRequest  Read in slices by the worker; never copied whole. orientation: for a CSV/TSV.
 * @typedef {{type: "reference", control: string | null, batch: string | null}} ReferenceRequest  What genes are measured against (Analysis::set_reference); replies with the report.
 * @typedef {{type: "predict", run: number}} PredictRequest  Predicts every cell, in batches.
 * @typedef {{type: "cancel"}} CancelRequest
 * @typedef {{type: "group-by", column: string | null}} GroupByRequest  Pseudobulk by an obs column.
 * @typedef {{type: "attention", cell: number | null, group: string | null, gene: string}} AttentionRequest
 * @typedef {{type: "export", format: "csv" | "json"}} ExportRequest
 * @typedef {{view: "attention", cell: number | null, group: string | null, gene: string} | {view: "cell-accuracy"}
 *   | {view: "confusion", answers: number} | {view: "label-check"} | {view: "why", cell: number}
 *   | {view: "cells", search: string, order: "index" | "cell" | "probability" | "label", descending: boolean, limit: number, top: number, find?: string | null, tag?: string}} ViewName
 *   The core's `ViewRequest` (src/analysis/views.rs; `cells`: src/analysis/cell_table.rs). `tag`: the page's own, returned as sent.
 * @typedef {{type: "view", request: ViewName, csv: boolean}} ViewRequest  csv: the view's CSV export instead.
 * @typedef {BackendRequest | LoadModelRequest | OpenRequest | ReferenceRequest | PredictRequest | CancelRequest | GroupByRequest | AttentionRequest | ExportRequest | ViewRequest} Request
 */

// ---------- worker → page ----------
/**
 * @typedef {{perturbation: string, probability: number}} Ranked
 * @typedef {{index: number, cell: string, label?: string, top: Ranked[]}} CellPrediction
 * @typedef {{group: string, cells: number, label?: string, top: Ranked[]}} GroupPrediction
 * @typedef {{exact_top1: number, any_gene_hit1: number, n: number}} Scores  (and the other metrics of src/metrics.rs)
 * @typedef {{scores: Scores, outside_the_model: number}} CellAccuracy
 * @typedef {{summary: object, genes: {panel_genes: number, matched: number, missing: string[], reference: string, atypical_cells: number, warnings: string[]}, cells: number, group_columns: string[], control_labels: string[], batch_columns: string[]}} InputReport
 *
 * @typedef {{type: "backend", choice: string, active: "cpu" | "webgpu", gpu: {usable: boolean, name: string | null, why: string}, note: string}} BackendReply
 * @typedef {{type: "model", info: object}} ModelReply  The card's overview (name, description, kind, panel, candidates, ...).
 * @typedef {{type: "progress", stage: string}} ProgressReply
 * @typedef {{type: "report", report: InputReport | null}} ReportReply  null: no file is open.
 * @typedef {{type: "cells", run: number, done: number, total: number, ms: number, backend: string, workers: number}} CellsReply
 *   Progress only (the cells themselves: the `cells` view). workers: the workers computing (the CPU pool's helpers, or 1).
 * @typedef {{rows: CellPrediction[], matched: number, predicted: number, found: CellPrediction | null}} CellTable  The `cells` view.
 * @typedef {{type: "predicted", run: number, done: number, total: number, cancelled: boolean, ms: number, backend: string, workers: number, jobMs: number | null, accuracy: CellAccuracy | null}} PredictedReply
 *   jobMs: time the helpers spent running jobs (null without the pool).
 * @typedef {{type: "pseudobulk", column: string | null, groups: GroupPrediction[], accuracy: Scores | null}} PseudobulkReply
 * @typedef {{gene: string, chrom: string | null, start: number | null, weight: number}} GeneWeight
 * @typedef {{type: "attention", gene: string, weights: number[], cell: number | null, group: string | null, cells_used: number, group_cells: number, top_genes: GeneWeight[]}} AttentionReply
 *   A group's attention is the mean over (up to 500 of) its cells.
 * @typedef {{type: "view", request: ViewName, result: object}} ViewReply  result: Confusion, LabelCheck, Why or CellTable (src/analysis/views.rs).
 * @typedef {{type: "export", format: string, name?: string, text: string}} ExportReply
 * @typedef {{type: "error", message: string}} ErrorReply
 * @typedef {BackendReply | ModelReply | ProgressReply | ReportReply | CellsReply | PredictedReply | PseudobulkReply | AttentionReply | ViewReply | ExportReply | ErrorReply} Reply
 */
export {};
