//! Simulated Perturb-seq with the real Norman 2019 design (CRISPRa in K562). The real expression
//! matrix is not reachable here, so this generative model stands on the real facts in `data/`:
//! the 237 conditions, the GEO gene list, each population's mean UMI depth and DE-gene count, the
//! authors' genetic-interaction fits for doubles and their UMAP clusters as shared programs.
//! Everything it writes is marked simulated. The model is documented for biologists in
//! docs/simulation.md; keep the two in step.

pub mod design;
pub mod layouts;

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Normal, Poisson};

use crate::genome::GeneTable;
use crate::io::{CsrMatrix, ExpressionData, LabelColumn};
use design::{Condition, GiClass};

pub use layouts::{Layout, to_csv, to_h5ad};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Total cells (Norman-sized is ~100,000).
    pub cells: usize,
    /// Genes in the panel: all 105 targets plus placed genes drawn from the GEO list.
    pub genes: usize,
    /// Share of control cells (Norman: 11,835 of ~111k ≈ 0.106).
    pub control_fraction: f64,
    /// Seed of each cell's own random stream (default: `seed`). Another value draws new cells from
    /// the same simulated world (same genes, effects and design): with the same seed, cell i of a
    /// smaller file can be an exact copy of cell i of a training file.
    pub cell_seed: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { seed: 0, cells: 20_000, genes: 2_000, control_fraction: 0.106, cell_seed: None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "--cells {cells} is too few: the design has {conditions} conditions and each needs at least 3 cells (use --cells {min} or more)"
    )]
    TooFewCells { cells: usize, conditions: usize, min: usize },
    #[error(
        "--genes {0} is out of range: use between 200 and {1} (the targets plus the placed, uniquely named genes of the GEO list)"
    )]
    GeneCount(usize, usize),
    #[error("--control-fraction {0} must be between 0 and 0.9")]
    ControlFraction(f64),
}

/// A simulated data set: the counts with labels, and the truth behind it.
pub struct Simulation {
    /// Raw counts, cells × panel genes, labels in `perturbation_name` (canonical) form.
    pub data: ExpressionData,
    pub conditions: Vec<Condition>,
    /// Index into `conditions` for each cell.
    pub cell_condition: Vec<usize>,
    pub config: SimConfig,
}

/// Assumed fraction of a cell's UMIs that fall in a panel of `genes` genes (0.62 for 5,000 genes,
/// all of them for the full list), as for a real highly-variable-gene panel. The panel here is drawn
/// at random among placed genes, so this is a modelling choice that sets depth, not a measurement.
fn panel_share(genes: usize) -> f64 {
    (genes as f64 / 33_694.0).powf(0.25).clamp(0.2, 1.0)
}

struct GeneParams {
    base_log: Vec<f32>,
    dispersion: Vec<f32>,
    /// Three cell-state axes (cycle, stress, size-like) shared by all cells, loadings per gene.
    state_loadings: [Vec<f32>; 3],
}

/// The effect (log fold over the panel) of each perturbation, and the CRISPRa targets' own boost.
struct Effects {
    /// For each condition: the downstream log-fold vector when all its guides work.
    full: Vec<Vec<f32>>,
    /// For each target gene symbol: (panel index if measured, log fold of its own up-regulation,
    /// probability that its guide works in a cell, index of its single condition).
    targets: Vec<(String, Option<usize>, f32, f64, usize)>,
}

pub fn simulate(config: &SimConfig, mut progress: impl FnMut(usize, usize)) -> Result<Simulation, SimError> {
    let conditions = design::norman_conditions();
    if !(0.0..=0.9).contains(&config.control_fraction) {
        return Err(SimError::ControlFraction(config.control_fraction));
    }
    // Every perturbed condition needs 3 cells after the controls have their share.
    let perturbed = (conditions.len() - 1) * 3;
    let min_cells = ((perturbed as f64 + 1.0) / (1.0 - config.control_fraction)).ceil() as usize + 3;
    if config.cells < min_cells || config.cells - n_controls(config) < perturbed {
        return Err(SimError::TooFewCells { cells: config.cells, conditions: conditions.len(), min: min_cells });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let (panel_ids, panel_symbols) = choose_panel(config, &conditions, &mut rng)?;
    let g = panel_symbols.len();
    let params = gene_params(&panel_symbols, &conditions, &mut rng);
    let effects = perturbation_effects(&conditions, &panel_symbols, &mut rng);
    let cell_condition = allocate_cells(config, &conditions, &mut rng);
    let n = cell_condition.len();

    // Depth per condition: the authors' mean UMIs when known, else the median over fitted doubles
    // (for doubles) or over singles (for singles and control).
    let median_single = 13_716.4;
    let median_double = 12_005.3;
    let depth: Vec<f64> = conditions
        .iter()
        .map(|c| c.umi.unwrap_or(if c.perturbation.genes().len() == 2 { median_double } else { median_single }))
        .collect();
    let share = panel_share(g);

    // Cells are simulated in blocks, each cell from its own random stream, so the result does not
    // depend on thread count or block size.
    let mut matrix = CsrMatrix::new(g);
    let block = 2048;
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let rows: Vec<(Vec<u32>, Vec<f32>)> = map_cells(start, end, |i| {
            let mut crng = ChaCha8Rng::seed_from_u64(config.cell_seed.unwrap_or(config.seed) ^ 0x5eed_ce11);
            crng.set_stream(i as u64 + 1);
            simulate_cell(
                &mut crng,
                &conditions[cell_condition[i]],
                cell_condition[i],
                &params,
                &effects,
                depth[cell_condition[i]] * share,
            )
        });
        for (cols, vals) in rows {
            matrix.push_sparse_row(&cols, &vals);
        }
        start = end;
        progress(start, n);
    }

    let cells = barcodes(n, &mut rng);
    let labels: Vec<String> = cell_condition.iter().map(|&k| conditions[k].perturbation.to_string()).collect();
    let data = ExpressionData {
        cells,
        genes: panel_symbols,
        gene_ids: Some(panel_ids),
        matrix,
        matrix_source: "simulated counts".into(),
        labels: Some(LabelColumn { name: "perturbation_name".into(), values: labels }),
        obs: Vec::new(),
        obs_column_names: vec!["perturbation_name".into()],
        simulated: true,
        warnings: Vec::new(),
    };
    Ok(Simulation { data, conditions, cell_condition, config: config.clone() })
}

#[cfg(not(target_arch = "wasm32"))]
fn map_cells<T: Send>(start: usize, end: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    (start..end).into_par_iter().map(f).collect()
}

#[cfg(target_arch = "wasm32")]
fn map_cells<T>(start: usize, end: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (start..end).map(f).collect()
}

/// The panel: every CRISPRa target, then genes drawn at random from the placed, uniquely named
/// genes of the GEO list; kept in GEO (genomic) order.
fn choose_panel(
    config: &SimConfig,
    conditions: &[Condition],
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<String>, Vec<String>), SimError> {
    let geo = design::geo_genes();
    if config.genes < 200 {
        return Err(SimError::GeneCount(config.genes, geo.len()));
    }
    let targets: std::collections::HashSet<&str> =
        conditions.iter().flat_map(|c| c.perturbation.genes().iter().map(|s| s.as_str())).collect();
    let mut symbol_count = std::collections::HashMap::new();
    for (_, s) in &geo {
        *symbol_count.entry(s.as_str()).or_insert(0) += 1;
    }
    let table = GeneTable::grch38();
    let mut chosen = vec![false; geo.len()];
    let mut candidates = Vec::new();
    for (i, (id, sym)) in geo.iter().enumerate() {
        if targets.contains(sym.as_str()) {
            chosen[i] = true;
        } else if symbol_count[sym.as_str()] == 1 && table.lookup(id).and_then(|r| table.locus(r)).is_some() {
            candidates.push(i);
        }
    }
    let n_targets = chosen.iter().filter(|&&c| c).count();
    if config.genes > n_targets + candidates.len() {
        return Err(SimError::GeneCount(config.genes, n_targets + candidates.len()));
    }
    let need = config.genes.saturating_sub(n_targets);
    candidates.shuffle(rng);
    let fill = need.min(candidates.len());
    for &i in &candidates[..fill] {
        chosen[i] = true;
    }
    let (mut ids, mut syms) = (Vec::new(), Vec::new());
    for (i, (id, sym)) in geo.iter().enumerate() {
        if chosen[i] {
            ids.push(id.clone());
            syms.push(sym.clone());
        }
    }
    Ok((ids, syms))
}

fn gene_params(symbols: &[String], conditions: &[Condition], rng: &mut ChaCha8Rng) -> GeneParams {
    let targets: std::collections::HashSet<&str> =
        conditions.iter().flat_map(|c| c.perturbation.genes().iter().map(|s| s.as_str())).collect();
    let common = Normal::new(0.0f32, 1.5).expect("valid normal");
    // Transcription factors targeted by CRISPRa are mostly lowly expressed in K562.
    let low = Normal::new(-2.5f32, 1.0).expect("valid normal");
    let disp = LogNormal::new((0.2f32).ln(), 0.5).expect("valid lognormal");
    let load = Normal::new(0.0f32, 0.12).expect("valid normal");
    let base_log = symbols
        .iter()
        .map(|s| if targets.contains(s.as_str()) { low.sample(rng) } else { common.sample(rng) })
        .collect();
    let dispersion = symbols.iter().map(|_| disp.sample(rng)).collect();
    let mut axis = || symbols.iter().map(|_| load.sample(rng)).collect::<Vec<f32>>();
    let state_loadings = [axis(), axis(), axis()];
    GeneParams { base_log, dispersion, state_loadings }
}

/// A sparse random log-fold vector touching `fraction` of the genes with N(0, sd) effects.
fn sparse_effect(g: usize, fraction: f64, sd: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let normal = Normal::new(0.0f32, sd).expect("valid normal");
    (0..g).map(|_| if rng.random::<f64>() < fraction { normal.sample(rng) } else { 0.0 }).collect()
}

fn perturbation_effects(conditions: &[Condition], symbols: &[String], rng: &mut ChaCha8Rng) -> Effects {
    let g = symbols.len();
    // One shared program per authors' cluster: perturbations in a cluster move the same genes.
    let max_cluster = conditions.iter().map(|c| c.cluster).max().unwrap_or(-1).max(0) as usize;
    let programs: Vec<Vec<f32>> = (0..=max_cluster).map(|_| sparse_effect(g, 0.08, 0.9, rng)).collect();
    let known_de: Vec<f64> =
        conditions.iter().filter(|c| c.perturbation.genes().len() == 1).filter_map(|c| c.de_genes).collect();

    let mut full = vec![vec![0.0f32; g]; conditions.len()];
    let mut targets = Vec::new();
    let single_index = |gene: &str| conditions.iter().position(|c| c.perturbation.genes() == [gene.to_string()]);
    for (k, c) in conditions.iter().enumerate() {
        if c.perturbation.genes().len() != 1 {
            continue;
        }
        // DE genes were counted over the genes expressed in K562 (assumed ~12k); 60% of that share of
        // the panel gets a gene-specific effect, the cluster programme adds the rest.
        let de = c.de_genes.unwrap_or_else(|| known_de[rng.random_range(0..known_de.len())]);
        let fraction = (de / 12_000.0).clamp(0.003, 0.25);
        let strength = 0.35 + 0.25 * ((de + 1.0).log10() / 3.5) as f32;
        let mut e = sparse_effect(g, fraction * 0.6, strength, rng);
        if c.cluster >= 0 {
            let weight = rng.random_range(0.6f32..1.2);
            for (x, p) in e.iter_mut().zip(&programs[c.cluster as usize]) {
                *x += weight * p;
            }
        }
        full[k] = e;
        let gene = &c.perturbation.genes()[0];
        let fold = LogNormal::new(25f32.ln(), 0.5).expect("valid lognormal").sample(rng);
        let works = rng.random_range(0.70..0.95);
        targets.push((gene.clone(), symbols.iter().position(|s| s == gene), fold.ln(), works, k));
    }
    for (k, c) in conditions.iter().enumerate() {
        let genes = c.perturbation.genes();
        if genes.len() != 2 {
            continue;
        }
        let (a, b) = (single_index(&genes[0]), single_index(&genes[1]));
        let (Some(a), Some(b)) = (a, b) else { continue };
        // The authors' fit: double ≈ c1·single(A) + c2·single(B); unfitted pairs are additive.
        let (c1, c2) = c.coefs.unwrap_or((1.0, 1.0));
        let residual_sd = match c.gi_class {
            Some(GiClass::Synergy) => 0.35,
            Some(GiClass::Unfitted) | None => 0.15,
            _ => 0.2,
        };
        let residual = sparse_effect(g, 0.02, residual_sd, rng);
        full[k] = (0..g).map(|j| c1 as f32 * full[a][j] + c2 as f32 * full[b][j] + residual[j]).collect();
    }
    Effects { full, targets }
}

/// Control gets its share; the other conditions split the rest with log-normal weights (real
/// screens recover guides unevenly), at least 3 cells each. The order is then shuffled.
fn n_controls(config: &SimConfig) -> usize {
    ((config.cells as f64 * config.control_fraction).round() as usize).max(3)
}

fn allocate_cells(config: &SimConfig, conditions: &[Condition], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n_control = n_controls(config);
    let rest = config.cells - n_control;
    let spread = LogNormal::new(0.0, 0.35).expect("valid lognormal");
    let weights: Vec<f64> = conditions.iter().skip(1).map(|_| spread.sample(rng)).collect();
    let total: f64 = weights.iter().sum();
    let free = rest - 3 * weights.len();
    let mut counts: Vec<usize> = weights.iter().map(|w| 3 + (w / total * free as f64).floor() as usize).collect();
    let mut left = rest - counts.iter().sum::<usize>();
    let (mut i, n_counts) = (0, counts.len());
    while left > 0 {
        counts[i % n_counts] += 1;
        left -= 1;
        i += 1;
    }
    let mut out = vec![0usize; n_control];
    for (k, c) in counts.iter().enumerate() {
        out.extend(std::iter::repeat_n(k + 1, *c));
    }
    out.shuffle(rng);
    out
}

fn simulate_cell(
    rng: &mut ChaCha8Rng,
    condition: &Condition,
    k: usize,
    params: &GeneParams,
    effects: &Effects,
    mean_depth: f64,
) -> (Vec<u32>, Vec<f32>) {
    let g = params.base_log.len();
    let genes = condition.perturbation.genes();
    // Which guides work in this cell (CRISPRa leaves some cells unperturbed).
    let mut working: Vec<&(String, Option<usize>, f32, f64, usize)> = Vec::new();
    for gene in genes {
        if let Some(t) = effects.targets.iter().find(|t| &t.0 == gene)
            && rng.random::<f64>() < t.3
        {
            working.push(t);
        }
    }
    let effect: Option<&Vec<f32>> = match working.len() {
        0 => None,
        n if n == genes.len() => Some(&effects.full[k]),
        _ => Some(&effects.full[working[0].4]),
    };
    let z: [f32; 3] = std::array::from_fn(|_| rng.sample::<f32, _>(rand_distr::StandardNormal));
    let mut logw: Vec<f32> = (0..g)
        .map(|j| {
            let mut v = params.base_log[j]
                + z[0] * params.state_loadings[0][j]
                + z[1] * params.state_loadings[1][j]
                + z[2] * params.state_loadings[2][j];
            if let Some(e) = effect {
                v += e[j];
            }
            v
        })
        .collect();
    for t in &working {
        if let Some(j) = t.1 {
            // CRISPRa switches the target on: a floor for unexpressed targets, then the fold change.
            logw[j] = logw[j].max(-1.0) + t.2;
        }
    }
    let max = logw.iter().cloned().fold(f32::MIN, f32::max);
    let weights: Vec<f64> = logw.iter().map(|&v| ((v - max) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let depth = mean_depth * LogNormal::new(0.0, 0.3).expect("valid lognormal").sample(rng);
    let (mut cols, mut vals) = (Vec::new(), Vec::new());
    for (j, &w) in weights.iter().enumerate().take(g) {
        let mu = depth * w / total;
        if mu < 1e-6 {
            continue;
        }
        let phi = params.dispersion[j] as f64;
        // Negative binomial as a gamma-Poisson mixture: variance mu + phi·mu².
        let lambda = Gamma::new(1.0 / phi, mu * phi).map(|d| d.sample(rng)).unwrap_or(mu);
        if lambda <= 0.0 {
            continue;
        }
        let count = Poisson::new(lambda).map(|d| d.sample(rng)).unwrap_or(0.0);
        if count > 0.0 {
            cols.push(j as u32);
            vals.push(count as f32);
        }
    }
    (cols, vals)
}

/// 10x-style barcodes over the 8 gem groups of the real experiment, unique, deterministic.
fn barcodes(n: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let b: String = (0..16).map(|_| b"ACGT"[rng.random_range(0..4)] as char).collect();
        if seen.insert(b.clone()) {
            out.push(format!("{b}-{}", 1 + out.len() * 8 / n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Simulation {
        simulate(&SimConfig { seed, cells: 1500, genes: 300, control_fraction: 0.1, cell_seed: None }, |_, _| {})
            .unwrap()
    }

    #[test]
    fn deterministic_by_seed() {
        let (a, b, c) = (small(1), small(1), small(2));
        assert_eq!(a.data.matrix, b.data.matrix);
        assert_eq!(a.data.cells, b.data.cells);
        assert_ne!(a.data.matrix, c.data.matrix);
    }

    #[test]
    fn another_cell_seed_draws_new_cells_from_the_same_world() {
        let config = |cells, cell_seed| SimConfig { seed: 1, cells, genes: 300, control_fraction: 0.1, cell_seed };
        let train = simulate(&config(1500, None), |_, _| {}).unwrap();
        let rows = |s: &Simulation| (0..s.data.cells.len()).map(|i| s.data.matrix.dense_row(i)).collect::<Vec<_>>();
        let train_rows = rows(&train);
        let shared = |s: &Simulation| rows(s).iter().filter(|r| train_rows.contains(r)).count();
        // Same seeds, fewer cells: cells whose condition coincides repeat training cells exactly.
        let same = simulate(&config(1000, None), |_, _| {}).unwrap();
        assert!(shared(&same) > 0);
        // Another cell seed: the same genes and design, and no repeated cell.
        let fresh = simulate(&config(1000, Some(7)), |_, _| {}).unwrap();
        assert_eq!(fresh.data.genes, train.data.genes);
        assert_eq!(fresh.conditions.len(), train.conditions.len());
        assert_eq!(shared(&fresh), 0);
    }

    #[test]
    fn crispra_targets_are_raised_in_most_cells() {
        let sim = small(3);
        let d = &sim.data;
        let klf1 = d.genes.iter().position(|g| g == "KLF1").unwrap();
        let mean = |label: &str| {
            let rows: Vec<usize> =
                (0..d.cells.len()).filter(|&i| d.labels.as_ref().unwrap().values[i] == label).collect();
            rows.iter().map(|&i| d.matrix.dense_row(i)[klf1] as f64).sum::<f64>() / rows.len() as f64
        };
        assert!(mean("KLF1") > 10.0 * mean("control").max(0.05), "KLF1 {} control {}", mean("KLF1"), mean("control"));
    }

    #[test]
    fn cell_counts_follow_the_design() {
        let sim = small(4);
        let n_control = sim.cell_condition.iter().filter(|&&k| k == 0).count();
        assert_eq!(sim.cell_condition.len(), 1500);
        assert_eq!(n_control, 150);
        for k in 0..sim.conditions.len() {
            assert!(sim.cell_condition.iter().filter(|&&c| c == k).count() >= 3);
        }
        assert!(matches!(
            simulate(&SimConfig { cells: 100, ..Default::default() }, |_, _| {}),
            Err(SimError::TooFewCells { .. })
        ));
    }
}
