//! `predict --model DIR FILE`: per-cell top-k and pseudobulk predictions (all cells, or per group of
//! an obs column) as JSON or CSV, through the same `Predictor` the web page uses.

use std::io::Write;
use std::path::PathBuf;

use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use mamba_perturb::io;
use mamba_perturb::predict::{CellPrediction, GroupPrediction, MatchReport, Predictor, groups_by, top_k};
use serde::Serialize;

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
    /// Obs column whose groups get a pseudobulk prediction each (besides all cells).
    #[arg(long)]
    pub group_by: Option<String>,
    /// json or csv.
    #[arg(long, default_value = "json")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[command(flatten)]
    pub read: super::ReadArgs,
}

#[derive(Serialize)]
pub struct Output {
    pub model: String,
    pub model_trained_on: String,
    pub file: String,
    pub genes: MatchReport,
    pub cells: Vec<CellPrediction>,
    pub pseudobulk: Vec<GroupPrediction>,
}

pub fn load_model(dir: &std::path::Path, device: &Device) -> Result<Predictor, String> {
    let card = std::fs::read_to_string(dir.join("card.json"))
        .map_err(|e| format!("{}: {e}", dir.join("card.json").display()))?;
    let weights =
        std::fs::read(dir.join("model.bpk")).map_err(|e| format!("{}: {e}", dir.join("model.bpk").display()))?;
    Predictor::load(&card, weights, device).map_err(|e| format!("{}: {e}", dir.display()))
}

pub fn run(args: Args) -> Result<(), String> {
    if args.format != "json" && args.format != "csv" {
        return Err(format!("--format {}: use json or csv", args.format));
    }
    let device = Device::flex();
    let predictor = load_model(&args.model, &device)?;
    let mut options = args.read.options()?;
    options.extra_obs = args.group_by.iter().cloned().collect();
    let file = args.file.display().to_string();
    let data = io::read_path(&args.file, &options).map_err(|e| e.to_string())?;
    let prepared = predictor.prepare(&data).map_err(|e| format!("{file}: {e}"))?;
    let card = &predictor.card;
    let tag = if card.is_simulated() { "[model trained on SIMULATED data] " } else { "" };
    let r = &prepared.report;
    eprintln!(
        "{tag}{file}: {} cells; {} of {} panel genes found; values: {}",
        data.cells.len(),
        r.matched,
        r.panel_genes,
        r.values.describe()
    );
    if !r.missing.is_empty() {
        let shown: Vec<_> = r.missing.iter().take(10).cloned().collect();
        eprintln!(
            "missing panel genes (set to 0): {}{}",
            shown.join(", "),
            if r.missing.len() > 10 { ", ..." } else { "" }
        );
    }
    for w in data.warnings.iter().chain(&r.warnings) {
        eprintln!("warning: {w}");
    }

    let bar = ProgressBar::new(data.cells.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("predicting {bar:30} {pos}/{len} cells ({elapsed}, eta {eta})")
            .map_err(|e| e.to_string())?,
    );
    let scores = predictor
        .score_cells(&prepared, args.batch, |done, _| bar.set_position(done as u64))
        .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    let candidates = predictor.candidates();
    let cells: Vec<CellPrediction> = scores
        .iter()
        .zip(&prepared.cells)
        .map(|(s, c)| CellPrediction { cell: c.clone(), top: top_k(s, &candidates, args.top) })
        .collect();

    let groups = groups_by(data.cells.len(), data.obs.first());
    let bulk = predictor.score_pseudobulk(&prepared, &groups).map_err(|e| e.to_string())?;
    let pseudobulk: Vec<GroupPrediction> = groups
        .iter()
        .zip(&bulk)
        .map(|((g, m), s)| GroupPrediction { group: g.clone(), cells: m.len(), top: top_k(s, &candidates, args.top) })
        .collect();

    let output = Output {
        model: card.name.clone(),
        model_trained_on: format!("{} ({})", card.training_data.name, card.training_data.kind),
        file,
        genes: prepared.report.clone(),
        cells,
        pseudobulk,
    };
    let mut sink: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let result = if args.format == "json" {
        serde_json::to_writer_pretty(&mut sink, &output)
            .map_err(|e| e.to_string())
            .and_then(|_| writeln!(sink).map_err(|e| e.to_string()))
    } else {
        write_csv(&mut sink, &output).map_err(|e| e.to_string())
    };
    result?;
    eprintln!("{tag}predicted {} cells and {} pseudobulk group(s)", output.cells.len(), output.pseudobulk.len());
    Ok(())
}

/// One row per (cell or group, rank): `kind,id,rank,perturbation,probability`.
fn write_csv(w: &mut dyn Write, o: &Output) -> std::io::Result<()> {
    writeln!(w, "kind,id,rank,perturbation,probability")?;
    for c in &o.cells {
        for (r, t) in c.top.iter().enumerate() {
            writeln!(w, "cell,{},{},{},{:.6}", c.cell, r + 1, t.perturbation, t.probability)?;
        }
    }
    for g in &o.pseudobulk {
        for (r, t) in g.top.iter().enumerate() {
            writeln!(
                w,
                "pseudobulk,\"{}\",{},{},{:.6}",
                g.group.replace('"', "'"),
                r + 1,
                t.perturbation,
                t.probability
            )?;
        }
    }
    Ok(())
}
