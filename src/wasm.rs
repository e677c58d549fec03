//! Browser bindings: a thin face that turns JS values into calls on the same readers and the same
//! `Predictor` as the CLI, and results back into JS objects. Runs in a Web Worker; tensors are read
//! asynchronously. Two backends: Burn's CPU backend compiled to WebAssembly (always there) and
//! WebGPU (initialised once, on request; the page decides when to ask, see worker.js).

use burn::tensor::Device;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::inspect;
use crate::io::{self, ExpressionData, ReadOptions};
use crate::model::card::CardGene;
use crate::model::sets::SetScores;
use crate::predict::{MatchReport, Predictor, Prepared, Ranked, groups_by, mean_profile, set_scores, top_k};

unsafe extern "C" {
    /// Synthesised by wasm-ld: runs the module's static constructors (`inventory` registrations in
    /// the GPU stack).
    fn __wasm_call_ctors();
}

/// Runs static constructors once, when the module starts. Without an explicit call, wasm-ld wraps
/// *every* export with them, and they re-register on each call: measured 5x slower predictions
/// and 1.2 s more to load a model.
#[wasm_bindgen(start)]
fn start() {
    unsafe { __wasm_call_ctors() }
}

/// What the page shows about an input file: the `inspect` summary and the match to the panel.
fn input_report(summary: inspect::Summary, genes: &MatchReport) -> Result<JsValue, JsError> {
    to_js(&serde_json::json!({ "summary": summary, "genes": genes }))
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

/// One browser session: a model, a file, its prepared cells and the logits computed so far.
#[wasm_bindgen]
pub struct Session {
    /// The model's card and weights, kept to rebuild the predictor on another backend.
    model: Option<(String, Vec<u8>)>,
    predictor: Option<Predictor>,
    device: Device,
    /// The WebGPU device once initialised (it can be initialised only once per page).
    gpu: Option<Device>,
    file: Option<(String, Vec<u8>)>,
    data: Option<ExpressionData>,
    prepared: Option<Prepared>,
    /// Per cell: gene logits then count logits (candidates + 3 floats).
    logits: Vec<Vec<f32>>,
}

#[derive(Serialize)]
struct ModelInfo<'a> {
    name: &'a str,
    description: &'a str,
    kind: &'a str,
    training_data: &'a str,
    panel: &'a [CardGene],
    candidates: &'a [CardGene],
    targets_masked: bool,
    validation_exact_top1: Option<f64>,
}

#[derive(Serialize)]
struct CellOut {
    index: usize,
    cell: String,
    top: Vec<Ranked>,
    label: Option<String>,
}

#[wasm_bindgen]
impl Session {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Session {
        console_error_panic_hook::set_once();
        Session {
            model: None,
            predictor: None,
            device: Device::flex(),
            gpu: None,
            file: None,
            data: None,
            prepared: None,
            logits: Vec::new(),
        }
    }

    /// Switches the compute backend: "cpu" (WebAssembly) or "webgpu". WebGPU is initialised on
    /// first use (asynchronously); if that fails, the error says why and the CPU backend stays.
    pub async fn use_backend(&mut self, name: &str) -> Result<(), JsError> {
        let device = match name {
            "cpu" => Device::flex(),
            "webgpu" => match &self.gpu {
                Some(d) => d.clone(),
                None => {
                    let d = Device::wgpu_options()
                        .init_async()
                        .await
                        .map_err(|e| js_err(format!("WebGPU could not start ({e}); staying on the CPU backend")))?;
                    self.gpu = Some(d.clone());
                    d
                }
            },
            other => return Err(js_err(format!("unknown backend '{other}' (use 'cpu' or 'webgpu')"))),
        };
        if let Some((card, weights)) = &self.model {
            self.predictor = Some(Predictor::load(card, weights.clone(), &device).map_err(js_err)?);
        }
        self.device = device;
        self.logits.clear();
        Ok(())
    }

    /// Loads a model from its card (JSON text) and burnpack weights; returns what the page shows.
    pub fn load_model(&mut self, card_json: &str, weights: Vec<u8>) -> Result<JsValue, JsError> {
        let p = Predictor::load(card_json, weights.clone(), &self.device).map_err(js_err)?;
        self.model = Some((card_json.to_string(), weights));
        self.predictor = Some(p);
        self.logits.clear();
        self.prepared = None; // an open file is matched to the new panel by `rematch`
        self.model_info()
    }

    pub fn has_file(&self) -> bool {
        self.data.is_some()
    }

    /// Matches the open file to the current model's panel (after a new model is loaded) and
    /// returns its input report.
    pub fn rematch(&mut self) -> Result<JsValue, JsError> {
        let (Some((name, _)), Some(data)) = (&self.file, &self.data) else {
            return Err(js_err("no file is loaded"));
        };
        let p = self.predictor.as_ref().ok_or_else(|| js_err("no model is loaded"))?;
        let prepared = p.prepare(data).map_err(|e| js_err(format!("{name}: {e}")))?;
        let report = input_report(inspect::summarize_with(name, data, None).map_err(js_err)?, &prepared.report);
        self.prepared = Some(prepared);
        report
    }

    pub fn model_info(&self) -> Result<JsValue, JsError> {
        let p = self.predictor.as_ref().ok_or_else(|| js_err("no model is loaded"))?;
        let c = &p.card;
        to_js(&ModelInfo {
            name: &c.name,
            description: &c.description,
            kind: &c.training_data.kind,
            training_data: &c.training_data.name,
            panel: &c.panel,
            candidates: &c.candidates,
            targets_masked: c.targets_masked,
            validation_exact_top1: c.metrics.get("validation_exact_top1").and_then(|v| v.as_f64()),
        })
    }

    /// Reads a dropped file (h5ad, CSV, TSV, .gz) and matches it to the model's panel.
    /// Returns the input report: the `inspect` summary plus the gene match report.
    pub fn read_file(&mut self, name: &str, bytes: Vec<u8>, group_by: Option<String>) -> Result<JsValue, JsError> {
        let options = ReadOptions { extra_obs: group_by.into_iter().collect(), ..Default::default() };
        let data = io::read_bytes(name, bytes.clone(), &options).map_err(js_err)?;
        // Everything that can fail runs before the session changes, so a bad file loses nothing.
        let summary = inspect::summarize_with(name, &data, None).map_err(js_err)?;
        let p = self.predictor.as_ref().ok_or_else(|| js_err("load a model first"))?;
        let prepared = p.prepare(&data).map_err(|e| js_err(format!("{name}: {e}")))?;
        let report = input_report(summary, &prepared.report);
        self.file = Some((name.to_string(), bytes));
        self.data = Some(data);
        self.prepared = Some(prepared);
        self.logits.clear();
        report
    }

    /// Re-reads the current file with an obs column for grouping (kept separate so the first read
    /// stays minimal).
    pub fn set_group_column(&mut self, column: Option<String>) -> Result<(), JsError> {
        let (name, bytes) = self.file.clone().ok_or_else(|| js_err("no file is loaded"))?;
        let options = ReadOptions { extra_obs: column.into_iter().collect(), ..Default::default() };
        self.data = Some(io::read_bytes(&name, bytes, &options).map_err(js_err)?);
        Ok(())
    }

    pub fn cell_count(&self) -> usize {
        self.prepared.as_ref().map(|p| p.cells.len()).unwrap_or(0)
    }

    /// Predicts cells [start, start + count) and returns their top answers.
    pub async fn predict_batch(&mut self, start: usize, count: usize, top: usize) -> Result<JsValue, JsError> {
        let p = self.predictor.as_ref().ok_or_else(|| js_err("no model is loaded"))?;
        let prepared = self.prepared.as_ref().ok_or_else(|| js_err("no file is loaded"))?;
        let n = prepared.cells.len();
        let end = (start + count).min(n);
        if start >= end {
            return to_js(&Vec::<CellOut>::new());
        }
        let g = prepared.n_genes;
        let c = p.card.net.n_candidates;
        let (gene, cnt) = p.logits_async(&prepared.x[start * g..end * g], end - start).await.map_err(js_err)?;
        let candidates = p.candidates();
        let labels = self.data.as_ref().and_then(|d| d.labels.as_ref());
        let mut out = Vec::with_capacity(end - start);
        for (k, (gl, cl)) in gene.chunks(c).zip(cnt.chunks(3)).enumerate() {
            let i = start + k;
            let scores = SetScores::from_logits(gl, cl);
            if self.logits.len() < i + 1 {
                self.logits.resize(i + 1, Vec::new());
            }
            self.logits[i] = gl.iter().chain(cl).cloned().collect();
            out.push(CellOut {
                index: i,
                cell: prepared.cells[i].clone(),
                top: top_k(&scores, &candidates, top),
                label: labels.map(|l| {
                    crate::labels::Perturbation::parse(&l.values[i]).map(|p| p.to_string()).unwrap_or_default()
                }),
            });
        }
        to_js(&out)
    }

    /// Pseudobulk predictions: all cells, then each group of `column` when given.
    pub async fn pseudobulk(&mut self, column: Option<String>, top: usize) -> Result<JsValue, JsError> {
        if column.is_some() {
            self.set_group_column(column.clone())?;
        }
        let p = self.predictor.as_ref().ok_or_else(|| js_err("no model is loaded"))?;
        let prepared = self.prepared.as_ref().ok_or_else(|| js_err("no file is loaded"))?;
        let groups = self.groups(column.as_deref());
        let x: Vec<f32> =
            groups.iter().flat_map(|(_, members)| mean_profile(&prepared.x, prepared.n_genes, members)).collect();
        let (gene, cnt) = p.logits_async(&x, groups.len()).await.map_err(js_err)?;
        let candidates = p.candidates();
        // Grouped by the label column, each group's label in canonical form ("A+B"), to score it.
        let by_labels = column.is_some()
            && self.data.as_ref().and_then(|d| d.labels.as_ref()).map(|l| l.name.as_str()) == column.as_deref();
        let label = |name: &str| {
            by_labels.then(|| crate::labels::Perturbation::parse(name).ok().map(|p| p.to_string())).flatten()
        };
        let out: Vec<serde_json::Value> = groups
            .iter()
            .zip(set_scores(&gene, &cnt, p.card.net.n_candidates))
            .enumerate()
            .map(|(i, ((name, m), s))| {
                serde_json::json!({"group": name, "cells": m.len(), "top": top_k(&s, &candidates, top),
                    "label": if i == 0 { None } else { label(name) }}) // group 0 is "all cells"
            })
            .collect();
        to_js(&out)
    }

    fn groups(&self, column: Option<&str>) -> Vec<(String, Vec<usize>)> {
        let col = column.and_then(|c| self.data.as_ref()?.obs.iter().find(|o| o.name == c));
        groups_by(self.cell_count(), col)
    }

    /// Attention of the query of `gene` (a candidate symbol, or "control") over the panel genes,
    /// for one cell (`cell` index) or the mean profile of a group of the last pseudobulk column.
    pub async fn attention(&self, cell: Option<usize>, group: Option<String>, gene: &str) -> Result<JsValue, JsError> {
        let p = self.predictor.as_ref().ok_or_else(|| js_err("no model is loaded"))?;
        let prepared = self.prepared.as_ref().ok_or_else(|| js_err("no file is loaded"))?;
        let candidates = p.candidates();
        let query = if gene == "control" {
            candidates.len()
        } else {
            candidates
                .iter()
                .position(|c| c == gene)
                .ok_or_else(|| js_err(format!("'{gene}' is not a candidate gene of this model")))?
        };
        let g = prepared.n_genes;
        let profile = match (cell, group) {
            (Some(i), _) if i < self.cell_count() => prepared.x[i * g..(i + 1) * g].to_vec(),
            (_, Some(name)) => {
                let groups = self.groups(self.data.as_ref().and_then(|d| d.obs.first()).map(|o| o.name.as_str()));
                let members = groups
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, m)| m.clone())
                    .ok_or_else(|| js_err(format!("no group '{name}'")))?;
                mean_profile(&prepared.x, prepared.n_genes, &members)
            }
            _ => return Err(js_err("choose a cell or a group")),
        };
        let weights = p.attention_async(&profile, query).await.map_err(js_err)?;
        to_js(&serde_json::json!({"gene": gene, "weights": weights}))
    }

    /// All computed predictions as CSV (`cell,rank,perturbation,probability`).
    pub fn export_csv(&self, top: usize) -> Result<String, JsError> {
        let p = self.predictor.as_ref().ok_or_else(|| js_err("no model is loaded"))?;
        let prepared = self.prepared.as_ref().ok_or_else(|| js_err("no file is loaded"))?;
        let c = p.card.net.n_candidates;
        let candidates = p.candidates();
        let mut s = String::from("cell,rank,perturbation,probability\n");
        for (i, l) in self.logits.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            for (r, t) in top_k(&SetScores::from_logits(&l[..c], &l[c..]), &candidates, top).iter().enumerate() {
                s += &format!("{},{},{},{:.6}\n", prepared.cells[i], r + 1, t.perturbation, t.probability);
            }
        }
        Ok(s)
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}
