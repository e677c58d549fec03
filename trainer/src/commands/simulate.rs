//! `simulate`: Norman-design Perturb-seq, marked as simulated in the file and in every line printed.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use mamba_perturb::simulate::{self, Layout, SimConfig, layouts};

#[derive(clap::Args)]
pub struct Args {
    /// Output file: .h5ad, or .csv / .csv.gz (counts; labels go to <stem>.labels.csv).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed of the simulated world (gene panel, effects, design) and, by default, of the cells.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the cells alone: new cells from the same world as `--seed` (e.g. a test file for a
    /// model trained on a file with the same `--seed`; with the same cell seed, cell i of both
    /// files can be identical).
    #[arg(long)]
    pub cell_seed: Option<u64>,
    /// Total cells (Norman-sized: 100000).
    #[arg(long, default_value_t = 20_000)]
    pub cells: usize,
    /// Genes in the panel (all 105 targets + placed genes from the GEO list).
    #[arg(long, default_value_t = 2_000)]
    pub genes: usize,
    #[arg(long, default_value_t = 0.106)]
    pub control_fraction: f64,
    /// h5ad layout of a public Norman version: pertpy, gears or scperturb.
    #[arg(long, default_value = "pertpy")]
    pub layout: String,
    /// gzip level (1-9) for the h5ad matrix arrays; none by default, like anndata.
    #[arg(long)]
    pub compression: Option<u32>,
}

pub fn run(args: Args) -> Result<(), String> {
    let layout: Layout = args.layout.parse()?;
    if let Some(level) = args.compression
        && !(1..=9).contains(&level)
    {
        return Err(format!("--compression {level}: use a gzip level from 1 to 9"));
    }
    let config = SimConfig {
        seed: args.seed,
        cells: args.cells,
        genes: args.genes,
        control_fraction: args.control_fraction,
        cell_seed: args.cell_seed,
    };
    let bar = ProgressBar::new(args.cells as u64);
    bar.set_style(
        ProgressStyle::with_template("[simulated] {msg} {bar:30} {pos}/{len} cells ({elapsed}, eta {eta})")
            .map_err(|e| e.to_string())?,
    );
    bar.set_message("simulating");
    let sim = simulate::simulate(&config, |done, _| bar.set_position(done as u64)).map_err(|e| e.to_string())?;
    bar.finish_with_message("simulated");

    let name = args.out.display().to_string();
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".h5ad") {
        let bytes = layouts::to_h5ad(&sim, layout, args.compression).map_err(|e| e.to_string())?;
        std::fs::write(&args.out, bytes).map_err(|e| format!("{name}: {e}"))?;
    } else if lower.ends_with(".csv") || lower.ends_with(".csv.gz") {
        let file = std::fs::File::create(&args.out).map_err(|e| format!("{name}: {e}"))?;
        let writer: Box<dyn std::io::Write> = if lower.ends_with(".gz") {
            Box::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()))
        } else {
            Box::new(file)
        };
        layouts::to_csv(&sim, std::io::BufWriter::new(writer)).map_err(|e| format!("{name}: {e}"))?;
        let stem = name.trim_end_matches(".gz").trim_end_matches(".csv");
        let labels = format!("{stem}.labels.csv");
        let f = std::fs::File::create(&labels).map_err(|e| format!("{labels}: {e}"))?;
        layouts::labels_csv(&sim, std::io::BufWriter::new(f)).map_err(|e| format!("{labels}: {e}"))?;
    } else {
        return Err(format!("{name}: the output must end in .h5ad, .csv or .csv.gz"));
    }
    let d = &sim.data;
    eprintln!(
        "[simulated] wrote {name}: {} cells x {} genes, {} conditions, layout {:?} (label column '{}'), seed {}{}. SIMULATED data, not real measurements.",
        d.cells.len(),
        d.genes.len(),
        sim.conditions.len(),
        layout,
        layout.label_column(),
        args.seed,
        args.cell_seed.map(|s| format!(", cell seed {s}")).unwrap_or_default()
    );
    Ok(())
}
