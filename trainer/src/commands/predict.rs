//! `predict --model DIR FILE`: per-cell top answers and pseudobulk answers (all cells, or per group of
//! an obs column) as JSON or CSV. The same `Analysis` and export layouts as the web page.

use std::io::Write;
use std::path::PathBuf;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use mamba_perturb::analysis::Analysis;
use mamba_perturb::export::ExportFormat;
use mamba_perturb::io::FileSource;
use mamba_perturb::model_folder::ModelFiles;

use crate::error::{CliError, io_at, output};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder written by `train` (card.json + model.bpk).
    #[arg(long)]
    pub model: PathBuf,
    /// Cells to predict: .h5ad, .csv, .tsv or .csv.gz.
    pub file: PathBuf,
    /// Answers per cell.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Answers per pseudobulk group.
    #[arg(long, default_value_t = 3)]
    pub group_top: usize,
    /// Obs column whose groups get a pseudobulk prediction each (besides all cells).
    #[arg(long)]
    pub group_by: Option<String>,
    /// json or csv.
    #[arg(long, default_value = "json")]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Cells per forward pass.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[command(flatten)]
    pub read: super::ReadArgs,
    #[command(flatten)]
    pub reference: super::ReferenceArgs,
}

/// Opens a model folder and a file in one `Analysis`, printing the input report's lines.
pub fn open(
    model: &std::path::Path,
    file: &std::path::Path,
    read: &super::ReadArgs,
    reference: &super::ReferenceArgs,
) -> Result<Analysis, CliError> {
    let files = ModelFiles::read(model)?;
    let mut analysis = Analysis::new(files, &Device::flex())?;
    let name = file.display().to_string();
    let tag = if analysis.predictor().card.is_simulated() { "[model trained on SIMULATED data] " } else { "" };
    analysis.open(&name, FileSource::Path(file.to_path_buf()), &read.options()?)?;
    let report = match (reference.control.as_deref(), reference.batch_column.as_deref()) {
        (None, None) => analysis.report()?,
        (control, batch) => analysis.set_reference(control, batch)?,
    };
    let g = &report.genes;
    eprintln!(
        "{tag}{name}: {} cells; {} of {} panel genes found; values: {}; genes measured against {}",
        report.cells,
        g.matched,
        g.panel_genes,
        g.values.describe(),
        g.reference
    );
    if !g.missing.is_empty() {
        let more = if g.missing.len() > 10 { ", ..." } else { "" };
        eprintln!(
            "missing panel genes (left out, not read as 0): {}{more}",
            g.missing[..g.missing.len().min(10)].join(", ")
        );
    }
    for w in report.summary.warnings.iter().chain(&g.warnings) {
        eprintln!("warning: {w}");
    }
    Ok(analysis)
}

pub fn run(args: Args) -> Result<(), CliError> {
    let mut analysis = open(&args.model, &args.file, &args.read, &args.reference)?;
    analysis.set_group_column(args.group_by.as_deref())?;
    let bar = ProgressBar::new(analysis.cell_count() as u64);
    bar.set_style(
        ProgressStyle::with_template("predicting {bar:30} {pos}/{len} cells ({elapsed}, eta {eta})").map_err(output)?,
    );
    analysis.predict_all_cells(args.batch, args.top, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    analysis.pseudobulk(args.group_top)?;
    let text = analysis.export(args.format, args.top, args.group_top)?;
    match &args.out {
        Some(p) => std::fs::write(p, text).map_err(io_at(p))?,
        None => std::io::stdout().lock().write_all(text.as_bytes()).map_err(output)?,
    }
    let tag = if analysis.predictor().card.is_simulated() { "[model trained on SIMULATED data] " } else { "" };
    let groups = analysis.pseudobulk_result(0)?.groups.len();
    eprintln!("{tag}predicted {} cells and {groups} pseudobulk group(s)", analysis.cell_count());
    Ok(())
}
