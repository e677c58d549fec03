//! Simulated Perturb-seq with the real Norman 2019 design (CRISPRa in K562). The real expression
//! matrix is not reachable here, so this generative model stands on the real facts in `data/`:
//! the 237 conditions, the GEO gene list, each population's mean UMI depth and DE-gene count, the
//! authors' genetic-interaction fits for doubles and their UMAP clusters as shared programs.
//! Everything it writes is marked simulated. The model is documented for biologists in
//! docs/simulation.md; keep the two in step.

pub mod design;
pub mod layouts;
pub mod oracle;
pub mod realism;
pub mod world;

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Poisson};

use crate::io::{CsrMatrix, ExpressionData, LabelColumn};
use design::Condition;

pub use layouts::{Layout, to_csv, to_h5ad};
pub use world::{World, WorldParams, expected_log_means};

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of the world (baselines, programs, effects, panel) and, by default, of the cells.
    pub seed: u64,
    /// Total cells (Norman-sized is ~111,000).
    pub cells: usize,
    /// Genes in the panel: all 105 targets plus genes drawn at random from the world's universe.
    pub genes: usize,
    /// Share of control cells (Norman: 11,835 of ~111k ≈ 0.106).
    pub control_fraction: f64,
    /// Seed of each cell's own random stream (default: `seed`). Another value draws new cells from
    /// the same simulated world (same genes, effects and design): with the same seed, cell i of a
    /// smaller file can be an exact copy of cell i of a training file.
    pub cell_seed: Option<u64>,
    /// The world's parameters (see `WorldParams`).
    pub world: WorldParams,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            cells: 20_000,
            genes: 2_000,
            control_fraction: 0.106,
            cell_seed: None,
            world: WorldParams::default(),
        }
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
    #[error("{0}")]
    World(String),
}

/// A simulated data set: the counts with labels, and the truth behind it.
pub struct Simulation {
    /// Raw counts, cells × panel genes, labels in `perturbation_name` (canonical) form.
    pub data: ExpressionData,
    pub conditions: Vec<Condition>,
    /// Index into `conditions` for each cell.
    pub cell_condition: Vec<usize>,
    /// Whether each cell's guides acted (false for control cells and for guide failures).
    pub responded: Vec<bool>,
    /// Each cell's UMIs over the whole transcriptome (the panel is a part of it), like `ncounts`.
    pub total_counts: Vec<f64>,
    /// Universe index of each panel gene.
    pub panel: Vec<usize>,
    /// JSON description of the world (seed and parameters), written to `uns/world`.
    pub world_json: String,
    pub config: SimConfig,
}

/// Per-condition ln mean shares of the panel genes (responders), and the share the panel holds.
pub(crate) struct PanelModel<'w> {
    pub world: &'w World,
    pub panel: Vec<usize>,
    rows: Vec<Vec<f32>>,
    panel_share: Vec<f64>,
    dispersion: Vec<f64>,
    loadings: [Vec<f32>; 3],
}

impl<'w> PanelModel<'w> {
    pub fn new(world: &'w World, panel: Vec<usize>) -> Self {
        let rows: Vec<Vec<f32>> =
            (0..world.conditions.len()).map(|k| panel.iter().map(|&j| world.ln_share_in(k, j)).collect()).collect();
        let panel_share = rows.iter().map(|r| r.iter().map(|&v| (v as f64).exp()).sum::<f64>().min(1.0)).collect();
        let dispersion = panel.iter().map(|&j| world.dispersion[j] as f64).collect();
        let loadings = std::array::from_fn(|a| panel.iter().map(|&j| world.state_loadings[a][j]).collect());
        PanelModel { world, panel, rows, panel_share, dispersion, loadings }
    }

    /// One cell of condition `k` from its own stream: (panel columns, counts, whole-transcriptome
    /// UMIs, responded). Guide failure is drawn first, so a failed cell is a control cell in
    /// distribution (same depth, same expected profile).
    pub fn cell(&self, rng: &mut ChaCha8Rng, k: usize) -> (Vec<u32>, Vec<f32>, f64, bool) {
        let p = &self.world.params;
        let responded = k != 0 && rng.random::<f64>() >= p.guide_failure;
        let row = if responded { k } else { 0 };
        let eps: f64 = rng.sample::<f64, _>(rand_distr::StandardNormal) * p.depth_sd;
        let depth = if responded {
            self.world.responder_depth[k] * (eps - p.depth_sd * p.depth_sd / 2.0).exp()
        } else {
            p.control_depth * eps.exp()
        };
        let z: [f32; 3] = std::array::from_fn(|_| rng.sample::<f32, _>(rand_distr::StandardNormal));
        let (mut cols, mut vals) = (Vec::new(), Vec::new());
        let mut panel_total = 0.0;
        for (jj, &lv) in self.rows[row].iter().enumerate() {
            let v = lv + z[0] * self.loadings[0][jj] + z[1] * self.loadings[1][jj] + z[2] * self.loadings[2][jj];
            let mu = depth * (v as f64).exp();
            let x = nb_sample(rng, mu, self.dispersion[jj]);
            if x > 0 {
                cols.push(jj as u32);
                vals.push(x as f32);
                panel_total += x as f64;
            }
        }
        let off = depth * (1.0 - self.panel_share[row]);
        let off_count = if off > 0.0 { Poisson::new(off).map(|d| d.sample(rng)).unwrap_or(0.0) } else { 0.0 };
        (cols, vals, panel_total + off_count, responded)
    }
}

/// Negative binomial (mean mu, variance mu + phi·mu²). Small means use inversion of the CDF from
/// one uniform (most entries are zero and cost one comparison); larger ones the gamma–Poisson mixture.
fn nb_sample(rng: &mut ChaCha8Rng, mu: f64, phi: f64) -> u32 {
    if mu < 1e-7 {
        return 0;
    }
    let v: f64 = rng.random::<f64>();
    // P(x > 0) ≤ mu for any phi, so v ≥ mu is a zero without computing P(0).
    if v >= mu && mu < 1.0 {
        return 0;
    }
    if mu < 8.0 {
        let r = 1.0 / phi;
        let q = phi * mu / (1.0 + phi * mu);
        let mut pmf = (-(r) * (1.0 + phi * mu).ln()).exp();
        let mut cdf = pmf;
        let u = 1.0 - v;
        let mut x = 0u32;
        while u > cdf && x < 10_000 {
            pmf *= (x as f64 + r) / (x as f64 + 1.0) * q;
            x += 1;
            cdf += pmf;
            if pmf < 1e-300 {
                break;
            }
        }
        return x;
    }
    let lambda = Gamma::new(1.0 / phi, mu * phi).map(|d| d.sample(rng)).unwrap_or(mu);
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda).map(|d| d.sample(rng)).unwrap_or(0.0) as u32
}

pub fn simulate(config: &SimConfig, progress: impl FnMut(usize, usize)) -> Result<Simulation, SimError> {
    config.world.check().map_err(SimError::World)?;
    let world = World::build(config.seed, &config.world);
    simulate_in(&world, config, progress)
}

/// Simulates cells from an already built world (`config.seed` must be the world's seed).
pub fn simulate_in(
    world: &World,
    config: &SimConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<Simulation, SimError> {
    let conditions = world.conditions.clone();
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
    let panel = choose_panel(world, config.genes, &mut rng)?;
    let g = panel.len();
    let model = PanelModel::new(world, panel.clone());
    let cell_condition = allocate_cells(config, &conditions, &mut rng);
    let n = cell_condition.len();

    // Cells are simulated in blocks, each cell from its own random stream, so the result does not
    // depend on thread count or block size.
    let mut matrix = CsrMatrix::new(g);
    let (mut responded, mut total_counts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let block = 2048;
    let mut start = 0;
    while start < n {
        let end = (start + block).min(n);
        let rows = map_cells(start, end, |i| {
            let mut crng = ChaCha8Rng::seed_from_u64(config.cell_seed.unwrap_or(config.seed) ^ 0x5eed_ce11);
            crng.set_stream(i as u64 + 1);
            model.cell(&mut crng, cell_condition[i])
        });
        for (cols, vals, total, resp) in rows {
            matrix.push_sparse_row(&cols, &vals);
            responded.push(resp);
            total_counts.push(total);
        }
        start = end;
        progress(start, n);
    }

    let cells = barcodes(n, &mut rng);
    let labels: Vec<String> = cell_condition.iter().map(|&k| conditions[k].perturbation.to_string()).collect();
    let data = ExpressionData {
        cells,
        genes: panel.iter().map(|&j| world.symbols[j].clone()).collect(),
        gene_ids: Some(panel.iter().map(|&j| world.gene_ids[j].clone()).collect()),
        matrix,
        matrix_source: "simulated counts".into(),
        labels: Some(LabelColumn { name: "perturbation_name".into(), values: labels }),
        obs: Vec::new(),
        obs_column_names: vec!["perturbation_name".into()],
        simulated: true,
        world: Some(world.describe()),
        warnings: Vec::new(),
        subset: None,
    };
    Ok(Simulation {
        data,
        conditions,
        cell_condition,
        responded,
        total_counts,
        panel,
        world_json: world.describe(),
        config: config.clone(),
    })
}

pub(crate) fn map_cells<T: Send>(start: usize, end: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    crate::parallel::map(end - start, |i| f(start + i))
}

/// The panel: every CRISPRa target, then genes drawn at random from the world's universe (placed,
/// uniquely named GEO genes); kept in GEO (genomic) order.
fn choose_panel(world: &World, genes: usize, rng: &mut ChaCha8Rng) -> Result<Vec<usize>, SimError> {
    let g = world.genes();
    if genes < 200 || genes > g {
        return Err(SimError::GeneCount(genes, g));
    }
    let mut chosen = world.is_target.clone();
    let mut candidates: Vec<usize> = (0..g).filter(|&j| !world.is_target[j]).collect();
    let need = genes.saturating_sub(chosen.iter().filter(|&&c| c).count());
    candidates.shuffle(rng);
    for &j in &candidates[..need.min(candidates.len())] {
        chosen[j] = true;
    }
    Ok((0..g).filter(|&j| chosen[j]).collect())
}

/// Control gets its share; singles get `single_to_double_cells` times the weight of doubles (real
/// singles pool both guide orders), each with a log-normal spread, at least 3 cells each. The
/// order is then shuffled.
fn n_controls(config: &SimConfig) -> usize {
    ((config.cells as f64 * config.control_fraction).round() as usize).max(3)
}

fn allocate_cells(config: &SimConfig, conditions: &[Condition], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let n_control = n_controls(config);
    let rest = config.cells - n_control;
    let spread = LogNormal::new(0.0, 0.35).expect("valid lognormal");
    let ratio = config.world.single_to_double_cells;
    let weights: Vec<f64> = conditions
        .iter()
        .skip(1)
        .map(|c| spread.sample(rng) * if c.perturbation.genes().len() == 1 { ratio } else { 1.0 })
        .collect();
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
        simulate(&SimConfig { seed, cells: 1500, genes: 300, control_fraction: 0.1, ..Default::default() }, |_, _| {})
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
        let config = |cells, cell_seed| SimConfig {
            seed: 1,
            cells,
            genes: 300,
            control_fraction: 0.1,
            cell_seed,
            ..Default::default()
        };
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

    #[test]
    fn guide_failures_are_control_cells_in_distribution() {
        let sim = simulate(
            &SimConfig { seed: 6, cells: 6000, genes: 400, control_fraction: 0.3, ..Default::default() },
            |_, _| {},
        )
        .unwrap();
        let failed: Vec<usize> = (0..6000).filter(|&i| sim.cell_condition[i] != 0 && !sim.responded[i]).collect();
        let control: Vec<usize> = (0..6000).filter(|&i| sim.cell_condition[i] == 0).collect();
        let responders = (0..6000).filter(|&i| sim.responded[i]).count();
        // The documented rate (0.15) among perturbed cells, within sampling error.
        let rate = failed.len() as f64 / (failed.len() + responders) as f64;
        assert!((rate - 0.15).abs() < 0.025, "failure rate {rate}");
        assert!(control.iter().all(|&i| !sim.responded[i]));
        // Whole-transcriptome depth and every well-expressed gene: same distribution (KS) as control.
        let sorted = |idx: &[usize], f: &dyn Fn(usize) -> f32| {
            let mut v: Vec<f32> = idx.iter().map(|&i| f(i)).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        };
        let depth = |i: usize| sim.total_counts[i] as f32;
        let d = realism::ks_statistic(&sorted(&failed, &depth), &sorted(&control, &depth));
        assert!(realism::ks_pvalue(d, failed.len(), control.len()) > 1e-3, "depth KS {d}");
        let rows: Vec<Vec<f32>> = (0..6000).map(|i| sim.data.matrix.dense_row(i)).collect();
        let mean = |idx: &[usize], j: usize| idx.iter().map(|&i| rows[i][j] as f64).sum::<f64>() / idx.len() as f64;
        let mut tested = 0;
        #[allow(clippy::needless_range_loop)] // j indexes the columns of every row
        for j in 0..sim.data.genes.len() {
            if mean(&control, j) < 1.0 {
                continue;
            }
            tested += 1;
            let gene = |i: usize| rows[i][j];
            let d = realism::ks_statistic(&sorted(&failed, &gene), &sorted(&control, &gene));
            // Bonferroni over the genes tested.
            assert!(realism::ks_pvalue(d, failed.len(), control.len()) > 1e-3 / 400.0, "gene {j}: KS {d}");
        }
        assert!(tested > 10, "only {tested} genes tested");
        // Responders of a strong single differ from control (the test has power).
        let cebpa = sim.conditions.iter().position(|c| c.perturbation.to_string() == "CEBPA").unwrap();
        let resp: Vec<usize> = (0..6000).filter(|&i| sim.cell_condition[i] == cebpa && sim.responded[i]).collect();
        let d = realism::ks_statistic(&sorted(&resp, &depth), &sorted(&control, &depth));
        assert!(realism::ks_pvalue(d, resp.len(), control.len()) < 0.05 || resp.len() < 20, "CEBPA depth KS {d}");
    }

    #[test]
    fn the_world_is_explicit_and_recomputable() {
        let params = WorldParams { guide_failure: 0.3, interaction: 0.5, ..Default::default() };
        let sim = simulate(
            &SimConfig {
                seed: 9,
                cells: 1000,
                genes: 300,
                control_fraction: 0.1,
                world: params.clone(),
                ..Default::default()
            },
            |_, _| {},
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&sim.world_json).unwrap();
        assert_eq!(json["seed"], 9);
        let back: WorldParams = serde_json::from_value(json["params"].clone()).unwrap();
        assert_eq!(back, params);
        // Expected profiles are a function of seed and parameters alone.
        let (names, genes, a) = expected_log_means(9, &back);
        let (_, _, b) = expected_log_means(9, &params);
        assert_eq!(a, b);
        assert_eq!((names.len(), genes.len()), (237, World::build(9, &params).genes()));
        // The panel's genes are universe genes, and KLF1's expected profile raises KLF1.
        let klf1 = names.iter().position(|n| n == "KLF1").unwrap();
        let g = genes.iter().position(|s| s == "KLF1").unwrap();
        assert!(a[klf1][g] > a[0][g] + 2.0, "{} vs {}", a[klf1][g], a[0][g]);
        assert!(sim.data.genes.iter().all(|s| genes.contains(s)));
    }

    #[test]
    fn additive_doubles_follow_the_same_rule_as_built_doubles() {
        // Without a residual, an unfitted double (c1 = c2 = 1, not de-attenuated) is built additive:
        // `additive_effects` must then return exactly its effects; fitted ones differ.
        let params = WorldParams { double_residual: 0.0, ..Default::default() };
        let w = World::build(2, &params);
        let (mut same, mut differ) = (0, 0);
        for k in 0..w.conditions.len() {
            let Some((e, ln_z)) = w.additive_effects(k) else {
                assert_ne!(w.conditions[k].perturbation.genes().len(), 2);
                continue;
            };
            if w.conditions[k].coefs.is_none() {
                assert_eq!(e, w.effects[k], "{}", w.conditions[k].perturbation);
                assert_eq!(ln_z, w.ln_z[k]);
                same += 1;
            } else if e != w.effects[k] {
                differ += 1;
            }
        }
        assert!(same >= 1 && differ > 100, "{same} unfitted, {differ} fitted doubles differ");
        let back = World::from_description(&w.describe()).unwrap();
        assert_eq!(back.effects, w.effects);
        assert!(World::from_description("{\"seed\": 1, \"params\": {\"depth_sd\": -1}}").is_err());
    }

    #[test]
    fn ks_de_counts_follow_the_authors_and_gi_refits_return_their_coefficients() {
        // A smaller screen (100 cells per population, 3,000 controls) than the realism report's,
        // so fewer DE genes are found (Spearman 0.77 here, 0.99 at the screen's size), but their order
        // must follow the authors' counts.
        let cfg = realism::RealismConfig { population_cells: 100, control_cells: 3000, ..Default::default() };
        let r = realism::report(&cfg, |_| {});
        let rho = r["de_singles"]["spearman"]["simulated"].as_f64().unwrap();
        assert!(rho > 0.7, "singles' DE counts vs the authors': Spearman {rho}");
        let rho = r["de_doubles"]["spearman"]["simulated"].as_f64().unwrap();
        assert!(rho > 0.5, "doubles' DE counts vs the authors': Spearman {rho}");
        let c1 = r["gi_refit"]["c1_spearman"]["simulated"].as_f64().unwrap();
        let c2 = r["gi_refit"]["c2_spearman"]["simulated"].as_f64().unwrap();
        assert!(c1 > 0.5 && c2 > 0.5, "refitted c1 {c1}, c2 {c2}");
        let corr = r["pair_single_correlation"]["median"]["simulated"].as_f64().unwrap();
        assert!((0.2..0.6).contains(&corr), "pair correlation {corr}");
        assert!(r["dispersion_vs_mean"]["falls_with_mean"].as_bool().unwrap());
    }

    #[test]
    fn ks_and_by_match_known_values() {
        // scipy 1.x asymptotic ks_2samp: D = 0.2 at n = m = 100 is kstwobign.sf((√50 + 0.12 + 0.11/√50)·0.2) = 0.0314.
        let p = realism::ks_pvalue(0.2, 100, 100);
        assert!((p - 0.0314).abs() < 0.001, "{p}");
        assert_eq!(realism::ks_statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(realism::ks_statistic(&[5.0, 6.0], &[1.0, 2.0]), 1.0);
        // BY with m = 4 (c_m = 2.083): only p = 1e-5 passes alpha = 1e-3 at rank 1 (1e-5·4·2.083 < 1e-3).
        assert_eq!(realism::by_count(&[1e-5, 0.5, 0.2, 0.9], 1e-3), 1);
        assert_eq!(realism::by_count(&[0.5, 0.6], 1e-3), 0);
    }
}
