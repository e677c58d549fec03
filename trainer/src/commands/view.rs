//! `view --model DIR FILE confusion|label-check|why|attention|cells`: the page's explaining views
//! and its cell table as numbers (CSV, or JSON), computed by the same core code as the page shows.

use std::path::PathBuf;

use mamba_perturb::analysis::{CellQuery, ViewRequest};

use crate::error::{CliError, flag, output};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder written by `train` (card.json + model.bpk).
    #[arg(long)]
    pub model: PathBuf,
    /// Cells: .h5ad, .csv, .tsv or .csv.gz (confusion and label-check need a label column).
    pub file: PathBuf,
    /// confusion, label-check, why (one cell), attention (a cell, or a group of --group-by) or
    /// cells (the page's table: --search, --order, --descending, --limit).
    pub view: String,
    /// The cell (0-based row) for `why` and `attention`.
    #[arg(long)]
    pub cell: Option<usize>,
    /// Obs column whose group `--group` `attention` averages over (default: the label column).
    #[arg(long)]
    pub group_by: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    /// The candidate gene whose query's attention is shown (`control`: the no-perturbation query).
    #[arg(long, default_value = "control")]
    pub gene: String,
    /// Rows and columns of the confusion table (the most frequent labels).
    #[arg(long, default_value_t = 20)]
    pub answers: usize,
    /// `cells`: cells whose name or label contains this, or whose top answers name this gene.
    #[arg(long, default_value = "")]
    pub search: String,
    /// `cells`: index, cell, probability (of the top answer) or label.
    #[arg(long, default_value = "index")]
    pub order: String,
    #[arg(long)]
    pub descending: bool,
    /// `cells`: rows at most.
    #[arg(long, default_value_t = 500)]
    pub limit: usize,
    /// `cells`: answers per cell.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// csv or json.
    #[arg(long, default_value = "csv")]
    pub format: String,
    #[command(flatten)]
    pub read: super::ReadArgs,
    #[command(flatten)]
    pub reference: super::ReferenceArgs,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let request = match args.view.as_str() {
        "confusion" => ViewRequest::Confusion { answers: args.answers },
        "label-check" => ViewRequest::LabelCheck,
        "why" => ViewRequest::Why { cell: args.cell.ok_or_else(|| flag("cell", "`why` needs a cell"))? },
        "attention" => ViewRequest::Attention { cell: args.cell, group: args.group.clone(), gene: args.gene.clone() },
        "cells" => ViewRequest::Cells(CellQuery {
            search: args.search.clone(),
            order: args.order.parse().map_err(|e| flag("order", e))?,
            descending: args.descending,
            limit: args.limit,
            top: args.top,
            find: None,
        }),
        other => return Err(flag("view", format!("{other}: use confusion, label-check, why, attention or cells"))),
    };
    if args.format != "csv" && args.format != "json" {
        return Err(flag("format", format!("{}: use csv or json", args.format)));
    }
    let mut analysis = super::predict::open(&args.model, &args.file, &args.read, &args.reference)?;
    analysis.predict_all_cells(256, args.top, |_, _| {})?;
    let column = args.group_by.clone().or_else(|| analysis.report().ok()?.summary.label_column.clone());
    analysis.set_group_column(column.as_deref())?;
    let view = analysis.view(&request)?;
    let text =
        if args.format == "csv" { view.to_csv() } else { serde_json::to_string_pretty(&view).map_err(output)? + "\n" };
    print!("{text}");
    Ok(())
}
