//! `simulate`: Norman-design Perturb-seq, marked as simulated in the file and in every line printed.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use mamba_perturb::simulate::{self, Layout, SimConfig, WorldParams, layouts, realism};

#[derive(clap::Args)]
pub struct Args {
    /// Output file: .h5ad, or .csv / .csv.gz (counts; labels go to <stem>.labels.csv).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed of the simulated world (baselines, shared programs, each condition's effect, gene panel;
    /// written with the world parameters to uns/world) and, by default, of the cells.
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
    /// Genes in the panel: all 105 targets + genes drawn at random from the world's 24,982 (200 … 24,982).
    #[arg(long, default_value_t = 2_000)]
    pub genes: usize,
    /// Share of control cells (pertpy's copy of the screen: 11,835 of 111,255).
    #[arg(long, default_value_t = 0.106)]
    pub control_fraction: f64,
    /// h5ad layout of a public Norman version: pertpy, gears or scperturb.
    #[arg(long, default_value = "pertpy")]
    pub layout: String,
    /// gzip level (1-9) for the h5ad matrix arrays; none by default, like anndata.
    #[arg(long)]
    pub compression: Option<u32>,
    /// Instead of a data file, measure the world as the authors measured the screen (KS DE counts,
    /// GI refit, depth, zeros, dispersion) and write the realism report as JSON to --out
    /// (e.g. results/simulation_realism.json); prints a markdown table. About 30 s on 2 cores (docs/simulation.md, section 5).
    #[arg(long)]
    pub realism: bool,
    /// Share of genes near-silent in K562 [0.72]; with --silent-median, gives ~52 % of genes at zero in 50 random cells (real 50-cell fixture: 68 %).
    #[arg(long, help_heading = "World")]
    pub silent_fraction: Option<f64>,
    /// Median mean UMIs per cell of an expressed gene at control depth [0.2].
    #[arg(long, help_heading = "World")]
    pub expressed_median: Option<f64>,
    /// ln-SD of expressed genes' means [1.7]: heavy right tail (a few dominant genes); sets ~5k genes with mean > 0.25, enough for the authors' largest DE count (2,938).
    #[arg(long, help_heading = "World")]
    pub expressed_log_sd: Option<f64>,
    /// Median mean UMIs per cell of a silent gene [0.002].
    #[arg(long, help_heading = "World")]
    pub silent_median: Option<f64>,
    /// ln-SD of silent genes' means [1.2].
    #[arg(long, help_heading = "World")]
    pub silent_log_sd: Option<f64>,
    /// Median control mean UMIs of a CRISPRa target [0.05] (transcription factors, mostly low in K562).
    #[arg(long, help_heading = "World")]
    pub target_median: Option<f64>,
    /// NB dispersion phi = floor + slope/sqrt(mean) [floor 0.05]: falls with the mean, as in 10x data.
    #[arg(long, help_heading = "World")]
    pub dispersion_floor: Option<f64>,
    /// Slope of the dispersion trend [0.15] (see --dispersion-floor).
    #[arg(long, help_heading = "World")]
    pub dispersion_slope: Option<f64>,
    /// ln-SD of gene-specific dispersion around the trend [0.3].
    #[arg(long, help_heading = "World")]
    pub dispersion_gene_sd: Option<f64>,
    /// SD of each gene's loading on 3 cell-state axes [0.08] (variation without perturbation).
    #[arg(long, help_heading = "World")]
    pub state_sd: Option<f64>,
    /// Minor shared programs besides the generic one and the 14 of the authors' UMAP clusters [5].
    #[arg(long, help_heading = "World")]
    pub extra_programs: Option<usize>,
    /// Share of genes each shared program touches [0.06].
    #[arg(long, help_heading = "World")]
    pub program_genes: Option<f64>,
    /// Private response size: a single's private part touches this many genes per DE gene it must reach [1.0] (0.2 %–60 % of genes).
    #[arg(long, help_heading = "World")]
    pub private_genes: Option<f64>,
    /// Share of genes the generic program touches [0.24] (denser than the others, so the similarity of
    /// two singles does not hang on a few genes).
    #[arg(long, help_heading = "World")]
    pub generic_genes: Option<f64>,
    /// Weight of the generic program in every single [0.7]; pins the median correlation of a pair's two single profiles (real 0.40, corr_first_second).
    #[arg(long, help_heading = "World")]
    pub generic_weight: Option<f64>,
    /// Weight of the authors' cluster program in clustered singles and emergent doubles [1.0] (the strongest shared part).
    #[arg(long, help_heading = "World")]
    pub cluster_weight: Option<f64>,
    /// Weight of one minor program in each single [0.4].
    #[arg(long, help_heading = "World")]
    pub minor_weight: Option<f64>,
    /// Weight of the private part [0.8].
    #[arg(long, help_heading = "World")]
    pub private_weight: Option<f64>,
    /// Highly expressed genes respond less: loadings × min(1, (5 / control mean)^d) [0.5; 0 = off], so
    /// a pair's profile correlation does not hang on the few top genes.
    #[arg(long, help_heading = "World")]
    pub high_gene_damping: Option<f64>,
    /// Multiplies every calibrated effect [1 = the authors' DE-gene counts per condition, regr_fits_final.csv de_*].
    #[arg(long, help_heading = "World")]
    pub effect_scale: Option<f64>,
    /// GI strength: coefficients 1 + interaction*(c - 1) [1 = the authors' c1, c2 fits; 0 = additive].
    #[arg(long, help_heading = "World")]
    pub interaction: Option<f64>,
    /// Multiplies each double's own residual [1 = calibrated to the double's DE count].
    #[arg(long, help_heading = "World")]
    pub double_residual: Option<f64>,
    /// Median CRISPRa fold on the target itself [25].
    #[arg(long, help_heading = "World")]
    pub crispra_fold: Option<f64>,
    /// ln-SD of the CRISPRa fold over targets [0.5].
    #[arg(long, help_heading = "World")]
    pub crispra_fold_sd: Option<f64>,
    /// Targets below this control mean are raised to it before the fold [0.3 UMIs].
    #[arg(long, help_heading = "World")]
    pub target_floor: Option<f64>,
    /// Control median UMIs per cell [14955: the authors normalise to it, GI_generate_populations]. Populations keep the authors' mean UMIs.
    #[arg(long, help_heading = "World")]
    pub control_depth: Option<f64>,
    /// ln-SD of depth between cells [0.3].
    #[arg(long, help_heading = "World")]
    pub depth_sd: Option<f64>,
    /// Share of perturbed cells whose guides did not act [0.15]; they are control cells in distribution; truth in obs 'responded'.
    #[arg(long, help_heading = "World")]
    pub guide_failure: Option<f64>,
    /// Cells per single condition per cell of a double [2: singles pool both guide orders, ~282 cells each].
    #[arg(long, help_heading = "World")]
    pub single_to_double_cells: Option<f64>,
    /// Power correction of the analytic DE calibration [1.15], measured with --realism.
    #[arg(long, help_heading = "World")]
    pub ks_power: Option<f64>,
}

/// The world parameters: defaults, then every option given.
fn world_params(args: &Args) -> Result<WorldParams, String> {
    let mut w = WorldParams::default();
    if let Some(v) = args.silent_fraction {
        w.silent_fraction = v;
    }
    if let Some(v) = args.expressed_median {
        w.expressed_median = v;
    }
    if let Some(v) = args.expressed_log_sd {
        w.expressed_log_sd = v;
    }
    if let Some(v) = args.silent_median {
        w.silent_median = v;
    }
    if let Some(v) = args.silent_log_sd {
        w.silent_log_sd = v;
    }
    if let Some(v) = args.target_median {
        w.target_median = v;
    }
    if let Some(v) = args.dispersion_floor {
        w.dispersion_floor = v;
    }
    if let Some(v) = args.dispersion_slope {
        w.dispersion_slope = v;
    }
    if let Some(v) = args.dispersion_gene_sd {
        w.dispersion_gene_sd = v;
    }
    if let Some(v) = args.state_sd {
        w.state_sd = v;
    }
    if let Some(v) = args.extra_programs {
        w.extra_programs = v;
    }
    if let Some(v) = args.program_genes {
        w.program_genes = v;
    }
    if let Some(v) = args.generic_genes {
        w.generic_genes = v;
    }
    if let Some(v) = args.private_genes {
        w.private_genes = v;
    }
    if let Some(v) = args.generic_weight {
        w.generic_weight = v;
    }
    if let Some(v) = args.cluster_weight {
        w.cluster_weight = v;
    }
    if let Some(v) = args.minor_weight {
        w.minor_weight = v;
    }
    if let Some(v) = args.high_gene_damping {
        w.high_gene_damping = v;
    }
    if let Some(v) = args.private_weight {
        w.private_weight = v;
    }
    if let Some(v) = args.effect_scale {
        w.effect_scale = v;
    }
    if let Some(v) = args.interaction {
        w.interaction = v;
    }
    if let Some(v) = args.double_residual {
        w.double_residual = v;
    }
    if let Some(v) = args.crispra_fold {
        w.crispra_fold = v;
    }
    if let Some(v) = args.crispra_fold_sd {
        w.crispra_fold_sd = v;
    }
    if let Some(v) = args.target_floor {
        w.target_floor = v;
    }
    if let Some(v) = args.control_depth {
        w.control_depth = v;
    }
    if let Some(v) = args.depth_sd {
        w.depth_sd = v;
    }
    if let Some(v) = args.guide_failure {
        w.guide_failure = v;
    }
    if let Some(v) = args.single_to_double_cells {
        w.single_to_double_cells = v;
    }
    if let Some(v) = args.ks_power {
        w.ks_power = v;
    }
    w.check()?;
    Ok(w)
}

pub fn run(args: Args) -> Result<(), String> {
    let world = world_params(&args)?;
    if args.realism {
        let cfg = realism::RealismConfig {
            seed: args.seed,
            cell_seed: args.cell_seed.unwrap_or(1),
            world,
            ..Default::default()
        };
        let report = realism::report(&cfg, |msg| eprintln!("[simulated] realism: {msg}"));
        let name = args.out.display().to_string();
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(&args.out, text + "\n").map_err(|e| format!("{name}: {e}"))?;
        println!("{}", realism::markdown(&report));
        eprintln!(
            "[simulated] wrote the realism report {name} (world seed {}). SIMULATED data, not real measurements.",
            args.seed
        );
        return Ok(());
    }
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
        world,
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
