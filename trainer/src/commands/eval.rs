//! `eval --model DIR --data FILE`: scores a trained model on a labelled file at cell, pseudobulk
//! (all cells of a condition) and 10-cell pseudobulk level, with the benchmark's metrics. The cell
//! and pseudobulk figures are the ones the page shows for the same file (one `Analysis`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use mamba_perturb::labels::Perturbation;
use mamba_perturb::metrics::{self, METRIC_NAMES, Scores};
use serde_json::json;

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

fn level(scores: &Scores) -> serde_json::Value {
    let m: serde_json::Map<String, serde_json::Value> =
        METRIC_NAMES.iter().zip(scores.values()).map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"n": scores.n, "metrics": m})
}

pub fn run(args: Args) -> Result<(), String> {
    let mut analysis = super::predict::open(&args.model, &args.data, &args.read)?;
    let file = args.data.display().to_string();
    let labels =
        analysis.labels().ok_or_else(|| format!("{file}: no perturbation label column (use --label-column)"))?.to_vec();
    let label_column = analysis.report().map_err(|e| e.to_string())?.summary.label_column.clone();
    analysis.predict_all_cells(256, |_, _| {}).map_err(|e| e.to_string())?;
    let cells = analysis.cell_accuracy().ok_or("no labels")?;
    analysis.set_group_column(label_column.as_deref()).map_err(|e| e.to_string())?;
    let bulk = analysis.pseudobulk(1).map_err(|e| e.to_string())?.accuracy.unwrap_or_default();
    // 10-cell pseudobulks: consecutive chunks of 10 cells of one condition.
    let mut by_condition: BTreeMap<&Perturbation, Vec<usize>> = BTreeMap::new();
    for (i, p) in labels.iter().enumerate() {
        by_condition.entry(p).or_default().push(i);
    }
    let (mut groups, mut truths) = (Vec::new(), Vec::new());
    for (p, members) in &by_condition {
        if let Some(t) = analysis.candidate_indices(p) {
            for chunk in members.chunks_exact(10) {
                groups.push(chunk.to_vec());
                truths.push(t.clone());
            }
        }
    }
    let ten = metrics::score(&analysis.score_groups(&groups).map_err(|e| e.to_string())?, &truths);
    let card = &analysis.predictor().card;
    let report = json!({
        "model": card.name, "model_trained_on": format!("{} ({})", card.training_data.name, card.training_data.kind),
        "data": file, "data_kind": analysis.report().map_err(|e| e.to_string())?.summary.kind,
        "cells": labels.len(), "cells_with_genes_outside_the_model": cells.outside_the_model,
        "levels": {"cell": level(&cells.scores), "pseudobulk": level(&bulk), "pseudobulk10": level(&ten)},
    });
    println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    Ok(())
}
