//! `eval --model DIR --data FILE`: scores a trained model on a labelled file at cell, pseudobulk
//! (all cells of a condition) and 10-cell pseudobulk level, with the benchmark's metrics. The cell
//! and pseudobulk figures are the ones the page shows for the same file (one `Analysis`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use mamba_perturb::labels::Perturbation;
use mamba_perturb::metrics::{self, METRIC_NAMES, Scores};
use serde_json::json;

use crate::error::{CliError, output};

fn no_labels(file: &str) -> CliError {
    CliError::Data {
        file: file.to_string(),
        problem: "no perturbation label column (name it with --label-column)".into(),
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled cells (.h5ad with a perturbation label column).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub read: super::ReadArgs,
    #[command(flatten)]
    pub reference: super::ReferenceArgs,
}

fn level(scores: &Scores) -> serde_json::Value {
    let m: serde_json::Map<String, serde_json::Value> =
        METRIC_NAMES.iter().zip(scores.values()).map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"n": scores.n, "metrics": m})
}

pub fn run(args: Args) -> Result<(), CliError> {
    let mut analysis = super::predict::open(&args.model, &args.data, &args.read, &args.reference)?;
    let file = args.data.display().to_string();
    let labels = analysis.labels().ok_or_else(|| no_labels(&file))?.to_vec();
    let label_column = analysis.report()?.summary.label_column.clone();
    analysis.predict_all_cells(256, 0, |_, _| {})?;
    let cells = analysis.cell_accuracy().ok_or_else(|| no_labels(&file))?;
    analysis.set_group_column(label_column.as_deref())?;
    let pseudobulk = analysis.pseudobulk(1)?.accuracy.unwrap_or_default();
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
    let pseudobulk10 = metrics::score(&analysis.score_groups(&groups)?, &truths);
    let card = &analysis.predictor().card;
    let report = json!({
        "model": card.name, "model_trained_on": format!("{} ({})", card.training_data.name, card.training_data.kind),
        "data": file, "data_kind": analysis.report()?.summary.kind,
        "cells": labels.len(), "cells_with_genes_outside_the_model": cells.outside_the_model,
        "levels": {"cell": level(&cells.scores), "pseudobulk": level(&pseudobulk), "pseudobulk10": level(&pseudobulk10)},
    });
    println!("{}", serde_json::to_string_pretty(&report).map_err(output)?);
    Ok(())
}
