//! `eval --model DIR --data FILE`: scores a trained model on a labelled file at cell, pseudobulk
//! (all cells of a condition) and 10-cell pseudobulk level, with the benchmark's metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use mamba_perturb::io;
use mamba_perturb::labels::Perturbation;
use serde_json::json;

use crate::metrics::{self, METRIC_NAMES};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled cells (.h5ad with a perturbation label column).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub read: super::ReadArgs,
}

pub fn run(args: Args) -> Result<(), String> {
    let device = Device::flex();
    let predictor = super::predict::load_model(&args.model, &device)?;
    let file = args.data.display().to_string();
    let data = io::read_path(&args.data, &args.read.options()?).map_err(|e| e.to_string())?;
    let labels =
        data.labels.as_ref().ok_or_else(|| format!("{file}: no perturbation label column (use --label-column)"))?;
    let truth: Vec<Perturbation> = mamba_perturb::labels::parse_column(&labels.values)
        .map_err(|(i, e)| format!("{file}: obs column '{}', cell {}: {e}", labels.name, data.cells[i]))?;
    let candidates = predictor.candidates();
    // Cells whose genes the model cannot name are scored too (they count as misses) but reported.
    let targets: Vec<Vec<usize>> = truth
        .iter()
        .map(|p| p.genes().iter().filter_map(|g| candidates.iter().position(|c| c == g)).collect())
        .collect();
    let unknown = truth.iter().filter(|p| p.genes().iter().any(|g| !candidates.contains(g))).count();
    let prepared = predictor.prepare(&data).map_err(|e| format!("{file}: {e}"))?;
    let scores = predictor.score_cells(&prepared, 256, |_, _| {}).map_err(|e| e.to_string())?;
    let mut groups: BTreeMap<&Perturbation, Vec<usize>> = BTreeMap::new();
    for (i, p) in truth.iter().enumerate() {
        groups.entry(p).or_default().push(i);
    }
    let bulk_groups: Vec<(String, Vec<usize>)> = groups.iter().map(|(p, m)| (p.to_string(), m.clone())).collect();
    let bulk_scores = predictor.score_pseudobulk(&prepared, &bulk_groups).map_err(|e| e.to_string())?;
    let bulk_truth: Vec<Vec<usize>> = bulk_groups.iter().map(|(_, m)| targets[m[0]].clone()).collect();
    let ten: Vec<(String, Vec<usize>)> = bulk_groups
        .iter()
        .flat_map(|(n, m)| m.chunks(10).filter(|c| c.len() == 10).map(|c| (n.clone(), c.to_vec())).collect::<Vec<_>>())
        .collect();
    let ten_scores = predictor.score_pseudobulk(&prepared, &ten).map_err(|e| e.to_string())?;
    let ten_truth: Vec<Vec<usize>> = ten.iter().map(|(_, m)| targets[m[0]].clone()).collect();
    let mut levels = serde_json::Map::new();
    for (level, s, t) in [
        ("cell", &scores, &targets),
        ("pseudobulk", &bulk_scores, &bulk_truth),
        ("pseudobulk10", &ten_scores, &ten_truth),
    ] {
        let sc = metrics::score(s, t);
        let m: serde_json::Map<String, serde_json::Value> =
            METRIC_NAMES.iter().zip(sc.values()).map(|(k, v)| (k.to_string(), json!(v))).collect();
        levels.insert(level.into(), json!({"n": sc.n, "metrics": m}));
    }
    let card = &predictor.card;
    let report = json!({
        "model": card.name, "model_trained_on": format!("{} ({})", card.training_data.name, card.training_data.kind),
        "data": file, "data_kind": if data.simulated { "simulated" } else { "unknown (not marked simulated)" },
        "cells": data.cells.len(), "cells_with_genes_outside_the_model": unknown, "levels": levels,
    });
    println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    Ok(())
}
