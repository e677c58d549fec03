//! The simulated world: every gene's baseline and noise, every condition's expected expression,
//! built from a world seed and explicit parameters (`WorldParams`) so that any file can be traced
//! back to its world and any condition's expected profile recomputed (e.g. for a Bayes oracle).
//! Effects are calibrated analytically so that the authors' KS test would find the authors' DE-gene
//! counts, and doubles are built so that refitting the authors' GI model returns their c1, c2.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};

use super::design::Condition;
use crate::genome::GeneTable;

/// Cells of the screen that the calibration assumes (the authors' populations): the median
/// single-guide population (`GI_sgRNA_performance.ipynb`: 282.5 cells) and pertpy's 11,835 controls.
pub const SCREEN_POPULATION_CELLS: usize = 282;
pub const SCREEN_CONTROL_CELLS: usize = 11_835;
/// The authors normalise every cell to the control median UMI (`GI_generate_populations.ipynb`).
pub const CONTROL_MEDIAN_UMI: f64 = 14_955.0;
/// Genes the authors' KS test looks at: mean normalised expression above this (`ks_de` call,
/// `genes='mean > 0.25'`), adjusted p below `DE_ALPHA` (Benjamini–Yekutieli).
pub const DE_MIN_MEAN: f64 = 0.25;
pub const DE_ALPHA: f64 = 0.001;

/// Every knob of the world. `Default` is the calibrated Norman-like world; the CLI exposes each
/// field (docs/simulation.md says which real fact pins each default).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct WorldParams {
    /// Share of genes that are near-silent in K562 (the rest form the expressed mode).
    pub silent_fraction: f64,
    /// Median mean count (UMIs per cell at control depth) of an expressed gene, and the SD of its
    /// natural log: the heavy right tail of a few dominant genes comes from this log-normal.
    pub expressed_median: f64,
    pub expressed_log_sd: f64,
    /// Median mean count of a silent gene and its log SD.
    pub silent_median: f64,
    pub silent_log_sd: f64,
    /// Median mean count of a CRISPRa target in control cells (transcription factors, mostly low).
    pub target_median: f64,
    /// NB dispersion phi(mu) = dispersion_floor + dispersion_slope / sqrt(mu), capped at 20, times
    /// a per-gene log-normal factor (SD dispersion_gene_sd): falls with the mean, as in 10x data.
    pub dispersion_floor: f64,
    pub dispersion_slope: f64,
    pub dispersion_gene_sd: f64,
    /// SD of each gene's loading on 3 cell-state axes (cells vary without any perturbation).
    pub state_sd: f64,
    /// Shared response programs: one generic program every perturbation uses, one per authors'
    /// UMAP cluster (14), and `extra_programs` minor ones; each touches `program_genes` of genes.
    pub extra_programs: usize,
    pub program_genes: f64,
    /// Share of genes the generic program touches (denser than the others, so that the similarity
    /// of any two singles does not hang on a few genes).
    pub generic_genes: f64,
    /// Private response size: a single's private part touches private_genes × its DE count genes
    /// (as a share of the genes the KS test sees), at least 0.2 % and at most 60 % of genes.
    pub private_genes: f64,
    /// Weights of the generic program, the cluster program, a minor program and the private part
    /// in a single's response direction (before calibration scales it).
    pub generic_weight: f64,
    pub cluster_weight: f64,
    pub minor_weight: f64,
    pub private_weight: f64,
    /// Highly expressed genes respond less on the log scale: a gene's loadings are multiplied by
    /// min(1, (5 / control mean)^high_gene_damping) (0 = no damping).
    pub high_gene_damping: f64,
    /// Multiplies every calibrated effect (1 = the authors' DE-gene counts; 0 = no downstream effect).
    pub effect_scale: f64,
    /// Strength of genetic interactions: coefficients used are 1 + interaction·(c − 1) (1 = the
    /// authors' fits; 0 = every double additive in expression space).
    pub interaction: f64,
    /// Multiplies each double's own residual (calibrated so the double reaches its DE count).
    pub double_residual: f64,
    /// CRISPRa fold on the target itself: median and log SD over targets; targets below
    /// `target_floor` mean count are first raised to it.
    pub crispra_fold: f64,
    pub crispra_fold_sd: f64,
    pub target_floor: f64,
    /// Control median UMIs per cell and the log SD of depth between cells.
    pub control_depth: f64,
    pub depth_sd: f64,
    /// Share of perturbed cells whose guide(s) did not act: they are drawn exactly like control
    /// cells (obs `responded` = 0).
    pub guide_failure: f64,
    /// Cells of a single condition per cell of a double condition (singles pool both guide orders).
    pub single_to_double_cells: f64,
    /// KS power correction of the analytic calibration (measured once against the realism report).
    pub ks_power: f64,
}

impl Default for WorldParams {
    fn default() -> Self {
        WorldParams {
            silent_fraction: 0.72,
            expressed_median: 0.2,
            expressed_log_sd: 1.7,
            silent_median: 0.002,
            silent_log_sd: 1.2,
            target_median: 0.05,
            dispersion_floor: 0.05,
            dispersion_slope: 0.15,
            dispersion_gene_sd: 0.3,
            state_sd: 0.08,
            extra_programs: 5,
            program_genes: 0.06,
            generic_genes: 0.24,
            private_genes: 1.0,
            generic_weight: 0.7,
            cluster_weight: 1.0,
            minor_weight: 0.4,
            private_weight: 0.8,
            high_gene_damping: 0.5,
            effect_scale: 1.0,
            interaction: 1.0,
            double_residual: 1.0,
            crispra_fold: 25.0,
            crispra_fold_sd: 0.5,
            target_floor: 0.3,
            control_depth: CONTROL_MEDIAN_UMI,
            depth_sd: 0.3,
            guide_failure: 0.15,
            single_to_double_cells: 2.0,
            ks_power: 1.15,
        }
    }
}

impl WorldParams {
    pub fn check(&self) -> Result<(), String> {
        let unit = [
            ("silent-fraction", self.silent_fraction),
            ("program-genes", self.program_genes),
            ("generic-genes", self.generic_genes),
            ("guide-failure", self.guide_failure),
        ];
        for (name, v) in unit {
            if !(0.0..=0.95).contains(&v) {
                return Err(format!("--{name} {v} must be between 0 and 0.95"));
            }
        }
        let positive = [
            ("expressed-median", self.expressed_median),
            ("silent-median", self.silent_median),
            ("target-median", self.target_median),
            ("crispra-fold", self.crispra_fold),
            ("target-floor", self.target_floor),
            ("control-depth", self.control_depth),
            ("single-to-double-cells", self.single_to_double_cells),
            ("ks-power", self.ks_power),
        ];
        for (name, v) in positive {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!("--{name} {v} must be a positive number"));
            }
        }
        let non_negative = [
            ("expressed-log-sd", self.expressed_log_sd),
            ("silent-log-sd", self.silent_log_sd),
            ("dispersion-floor", self.dispersion_floor),
            ("dispersion-slope", self.dispersion_slope),
            ("dispersion-gene-sd", self.dispersion_gene_sd),
            ("state-sd", self.state_sd),
            ("private-genes", self.private_genes),
            ("generic-weight", self.generic_weight),
            ("cluster-weight", self.cluster_weight),
            ("minor-weight", self.minor_weight),
            ("private-weight", self.private_weight),
            ("high-gene-damping", self.high_gene_damping),
            ("effect-scale", self.effect_scale),
            ("interaction", self.interaction),
            ("double-residual", self.double_residual),
            ("crispra-fold-sd", self.crispra_fold_sd),
            ("depth-sd", self.depth_sd),
        ];
        for (name, v) in non_negative {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("--{name} {v} must be zero or positive"));
            }
        }
        if self.dispersion_floor + self.dispersion_slope <= 0.0 {
            return Err("--dispersion-floor and --dispersion-slope cannot both be 0".into());
        }
        Ok(())
    }
}

/// One CRISPRa target: where it is in the universe and how strongly its guide raises it.
#[derive(Clone, Debug)]
pub struct Target {
    pub symbol: String,
    pub gene: usize,
    pub single: usize,
}

/// The world: genes (the universe the panel is drawn from), their baseline and noise, and each
/// condition's log-fold over the universe relative to control shares.
pub struct World {
    pub seed: u64,
    pub params: WorldParams,
    pub conditions: Vec<Condition>,
    pub gene_ids: Vec<String>,
    pub symbols: Vec<String>,
    /// Whether a universe gene is a CRISPRa target.
    pub is_target: Vec<bool>,
    /// Each gene's share of a control cell's UMIs (sums to 1 over the universe), and its ln.
    pub share: Vec<f64>,
    pub ln_share: Vec<f32>,
    pub dispersion: Vec<f32>,
    pub state_loadings: [Vec<f32>; 3],
    /// Per condition: log fold of each gene's (unnormalised) share, CRISPRa boost included; control 0.
    pub effects: Vec<Vec<f32>>,
    /// Per condition: ln of Σ_j share_j·exp(effect_kj), so that ln share_kj = ln_share_j + e_kj − ln_z_k.
    pub ln_z: Vec<f64>,
    /// Per condition: mean UMIs per responding cell (the authors' population mean, corrected for the
    /// non-responders that are drawn at control depth).
    pub responder_depth: Vec<f64>,
    /// Per condition: the DE-gene count the calibration aimed at (authors', or drawn for the
    /// singles without one) and the effect scale found.
    pub de_target: Vec<Option<f64>>,
    pub scale: Vec<f64>,
    /// GI coefficients used per double (after `interaction`), target_1 first.
    pub coefs: Vec<Option<(f64, f64)>>,
    pub targets: Vec<Target>,
}

/// The universe of genes: every CRISPRa target plus every placed, uniquely named GEO gene, in
/// GEO order (25,065 genes).
fn universe(conditions: &[Condition]) -> (Vec<String>, Vec<String>, Vec<bool>) {
    let geo = super::design::geo_genes();
    let targets: std::collections::HashSet<&str> =
        conditions.iter().flat_map(|c| c.perturbation.genes().iter().map(|s| s.as_str())).collect();
    let mut symbol_count = std::collections::HashMap::new();
    for (_, s) in &geo {
        *symbol_count.entry(s.as_str()).or_insert(0) += 1;
    }
    let table = GeneTable::grch38();
    let (mut ids, mut syms, mut is_t) = (Vec::new(), Vec::new(), Vec::new());
    for (id, sym) in &geo {
        let t = targets.contains(sym.as_str());
        if t || (symbol_count[sym.as_str()] == 1 && table.lookup(id).and_then(|r| table.locus(r)).is_some()) {
            ids.push(id.clone());
            syms.push(sym.clone());
            is_t.push(t);
        }
    }
    (ids, syms, is_t)
}

fn std_normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes erfcc, relative error < 1.2e-7).
pub(crate) fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Distance between the CDFs of normalised expression in control cells (NB mean mu0 at normalised
/// depth, raw depth r0 × the normalisation depth) and in responding cells (mu1, raw depth r1 ×):
/// the larger of the gap in zero mass (which depends on raw, not normalised, counts — a shallower
/// population has more zeros) and a normal approximation of the shift. Cheap stand-in for the
/// population KS statistic.
fn nb_ks_distance(mu0: f64, mu1: f64, phi: f64, r0: f64, r1: f64) -> f64 {
    let p0 = |m: f64| (-(1.0 + phi * m).ln() / phi).exp();
    let zero_gap = (p0(mu0 * r0) - p0(mu1 * r1)).abs();
    let sd = |m: f64, r: f64| (m / r + phi * m * m).sqrt();
    let shift = 2.0 * std_normal_cdf((mu1 - mu0).abs() / (sd(mu0, r0) + sd(mu1, r1)).max(1e-12)) - 1.0;
    zero_gap.max(shift)
}

/// Critical KS statistic for BY-adjusted p < alpha when about `n_de` of `m` tests are positive,
/// using the asymptotic two-sample p-value of the authors' scipy (Stephens' correction).
fn ks_critical(n_de: f64, m: usize, en: f64) -> f64 {
    let c_m: f64 = (1..=m.max(1)).map(|i| 1.0 / i as f64).sum();
    let p = (n_de.max(1.0) * DE_ALPHA / (m.max(1) as f64 * c_m)).min(0.5);
    let lambda = ((2.0 / p).ln() / 2.0).sqrt();
    let sq = en.sqrt();
    lambda / (sq + 0.12 + 0.11 / sq)
}

/// Coefficients c' such that least squares of the double's measured mean change on the singles'
/// measured mean changes (genes with control mean > 0.5, populations of the screen's size) is
/// expected to return `target`: E[ĉ] ≈ (S + N)⁻¹ S c', so c' = S⁻¹ (S + N) target, where S is the
/// Gram matrix of the singles' expected changes and N the sampling variance of their means.
/// Largest downstream log fold of one gene (e^4 ≈ 55-fold), so a few genes cannot take over a
/// cell's transcriptome.
const MAX_LOG_FOLD: f64 = 4.0;

/// Measured sampling variance of population means over the NB-only estimate (depth normalisation,
/// cell state, truncation of strong down-regulation): set so the realism report's refitted c1, c2
/// show no overall shrinkage (docs/simulation.md).
const NOISE_EXCESS: f64 = 3.0;

fn deattenuate(mu0: &[f64], phi: &[f32], da: &[f64], db: &[f64], target: (f64, f64), failure: f64) -> (f64, f64) {
    let n = SCREEN_POPULATION_CELLS as f64;
    let keep = 1.0 - failure;
    let (mut saa, mut sbb, mut sab, mut naa, mut nbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for j in 0..mu0.len() {
        if mu0[j] <= 0.5 {
            continue;
        }
        let (x, y) = (keep * mu0[j] * da[j], keep * mu0[j] * db[j]);
        saa += x * x;
        sbb += y * y;
        sab += x * y;
        let var = |d: f64| {
            let m = mu0[j] * (1.0 + d);
            // NB variance at the responders' mean, plus the mixture with non-responders.
            keep * (m + phi[j] as f64 * m * m)
                + failure * (mu0[j] + phi[j] as f64 * mu0[j] * mu0[j])
                + keep * failure * (mu0[j] * d).powi(2)
        };
        naa += NOISE_EXCESS * var(da[j]) / n;
        nbb += NOISE_EXCESS * var(db[j]) / n;
    }
    let det = saa * sbb - sab * sab;
    if det.abs() < 1e-12 {
        return target;
    }
    let (t1, t2) = target;
    // (S + N) target
    let (v1, v2) = ((saa + naa) * t1 + sab * t2, sab * t1 + (sbb + nbb) * t2);
    ((sbb * v1 - sab * v2) / det, (saa * v2 - sab * v1) / det)
}

/// Sparse program: each gene joins with probability `fraction`; loadings are heavy-tailed
/// (N(0, 1) · exp(0.5 · N(0, 1))), so a few genes respond strongly and many weakly.
fn sparse(g: usize, fraction: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..g)
        .map(|_| {
            if rng.random::<f64>() < fraction {
                let (a, b): (f32, f32) =
                    (rng.sample(rand_distr::StandardNormal), rng.sample(rand_distr::StandardNormal));
                a * (0.5 * b).exp()
            } else {
                0.0
            }
        })
        .collect()
}

/// ln Σ_j share_j·e^{effect_j}: what turns a condition's effects into shares (its ln Z).
fn ln_normaliser(share: &[f64], effect: &[f32]) -> f64 {
    share.iter().zip(effect).map(|(s, x)| s * (*x as f64).exp()).sum::<f64>().ln()
}

/// A single's relative change of every gene's share, q_A/q⁰ − 1: the Δ of the authors' GI model.
fn relative_change(share: &[f64], effect: &[f32]) -> Vec<f64> {
    let z = ln_normaliser(share, effect).exp();
    effect.iter().map(|&e| (e as f64).exp() / z - 1.0).collect()
}

/// The authors' GI model in expression space, the one rule every double is built with: a gene's
/// share fold q_AB/q⁰ from the singles' Δ_A, Δ_B, the coefficients and the double's own residual r
/// (0 for none), floored so no gene vanishes.
fn double_fold(c1: f64, c2: f64, da: f64, db: f64, r: f64) -> f64 {
    (1.0 + c1 * da + c2 * db + r).max(0.05)
}

struct Calibrator<'a> {
    mu0: &'a [f64],
    share: &'a [f64],
    phi: &'a [f32],
    tested: Vec<usize>,
    responded: f64,
    ks_power: f64,
    /// Mean raw depth of control cells over the normalisation depth.
    r0: f64,
}

impl Calibrator<'_> {
    /// Expected number of genes the authors' KS test calls DE for a condition whose unnormalised
    /// share fold is `fold(j)` (responders only; non-responders dilute the KS distance).
    fn expected_de(&self, n_de_guess: f64, en: f64, r1: f64, fold: impl Fn(usize) -> f64) -> f64 {
        let z: f64 = self.share.iter().enumerate().map(|(j, s)| s * fold(j)).sum();
        let crit = ks_critical(n_de_guess, self.tested.len(), en);
        let sd = 0.4 / en.sqrt();
        self.tested
            .iter()
            .map(|&j| {
                let mu1 = self.mu0[j] * fold(j) / z;
                let d =
                    self.ks_power * self.responded * nb_ks_distance(self.mu0[j], mu1, self.phi[j] as f64, self.r0, r1);
                std_normal_cdf((d - crit) / sd)
            })
            .sum()
    }

    /// Smallest scale s ≥ 0 at which `expected_de(s)` reaches `target` (bisection; capped).
    fn solve(&self, target: f64, en: f64, r1: f64, fold_at: impl Fn(f64, usize) -> f64) -> f64 {
        let count = |s: f64| self.expected_de(target, en, r1, |j| fold_at(s, j));
        if count(0.0) >= target {
            return 0.0;
        }
        let (mut lo, mut hi) = (0.0f64, 0.5f64);
        while count(hi) < target && hi < 16.0 {
            lo = hi;
            hi *= 2.0;
        }
        for _ in 0..24 {
            let mid = 0.5 * (lo + hi);
            if count(mid) < target { lo = mid } else { hi = mid }
        }
        0.5 * (lo + hi)
    }
}

impl World {
    /// Builds the world of `seed` and `params` over the Norman design. Deterministic: the same seed
    /// and parameters give the same world on every platform.
    pub fn build(seed: u64, params: &WorldParams) -> World {
        let conditions = super::design::norman_conditions();
        let (gene_ids, symbols, is_target) = universe(&conditions);
        let g = symbols.len();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0077_0e1d);
        let p = params;

        // 1. Baseline mean counts at control depth: silent mode + expressed log-normal mode.
        let expressed = Normal::new(p.expressed_median.ln(), p.expressed_log_sd.max(1e-9)).expect("valid normal");
        let silent = Normal::new(p.silent_median.ln(), p.silent_log_sd.max(1e-9)).expect("valid normal");
        let target_dist = Normal::new(p.target_median.ln(), 1.0).expect("valid normal");
        let ln_mu: Vec<f64> = (0..g)
            .map(|j| {
                let u = rng.random::<f64>();
                let (e, s, t) = (expressed.sample(&mut rng), silent.sample(&mut rng), target_dist.sample(&mut rng));
                if is_target[j] {
                    t
                } else if u < p.silent_fraction {
                    s
                } else {
                    e
                }
            })
            .collect();
        let max = ln_mu.iter().cloned().fold(f64::MIN, f64::max);
        let w: Vec<f64> = ln_mu.iter().map(|&v| (v - max).exp()).collect();
        let total: f64 = w.iter().sum();
        let share: Vec<f64> = w.iter().map(|x| x / total).collect();
        let ln_share: Vec<f32> = share.iter().map(|s| s.ln() as f32).collect();
        let mu0: Vec<f64> = share.iter().map(|s| s * p.control_depth).collect();

        // 2. Dispersion falling with the mean, and cell-state loadings.
        let gene_sd = LogNormal::new(0.0, p.dispersion_gene_sd.max(1e-9)).expect("valid lognormal");
        let dispersion: Vec<f32> = mu0
            .iter()
            .map(|&m| {
                let base = p.dispersion_floor + p.dispersion_slope / m.max(1e-4).sqrt();
                (base.min(20.0) * gene_sd.sample(&mut rng)).max(1e-3) as f32
            })
            .collect();
        let load = Normal::new(0.0f32, p.state_sd.max(1e-9) as f32).expect("valid normal");
        let mut axis = || (0..g).map(|_| load.sample(&mut rng)).collect::<Vec<f32>>();
        let state_loadings = [axis(), axis(), axis()];

        // 3. Shared programs: generic, one per authors' cluster, minor ones.
        let n_clusters = conditions.iter().map(|c| c.cluster + 1).max().unwrap_or(0).max(0) as usize;
        let generic = sparse(g, p.generic_genes, &mut rng);
        let clusters: Vec<Vec<f32>> = (0..n_clusters).map(|_| sparse(g, p.program_genes, &mut rng)).collect();
        let minor: Vec<Vec<f32>> = (0..p.extra_programs).map(|_| sparse(g, p.program_genes, &mut rng)).collect();

        // Depth of responders: the population mean is the authors' (non-responders at control depth).
        let control_mean = p.control_depth * (p.depth_sd * p.depth_sd / 2.0).exp();
        let responder_depth: Vec<f64> = conditions
            .iter()
            .map(|c| {
                let n = c.perturbation.genes().len();
                if n == 0 {
                    return control_mean;
                }
                let u = c.umi.unwrap_or(if n == 2 { 12_005.3 } else { 13_716.4 });
                let f = p.guide_failure;
                ((u - f * control_mean) / (1.0 - f)).max(0.25 * u)
            })
            .collect();

        let damp: Vec<f32> = mu0.iter().map(|&m| (5.0 / m).powf(p.high_gene_damping).min(1.0) as f32).collect();
        let tested: Vec<usize> = (0..g).filter(|&j| mu0[j] > DE_MIN_MEAN).collect();
        let cal = Calibrator {
            mu0: &mu0,
            share: &share,
            phi: &dispersion,
            tested,
            responded: 1.0 - p.guide_failure,
            ks_power: p.ks_power,
            r0: control_mean / CONTROL_MEDIAN_UMI,
        };
        let en = {
            let (a, b) = (SCREEN_POPULATION_CELLS as f64, SCREEN_CONTROL_CELLS as f64);
            a * b / (a + b)
        };

        let known_de: Vec<f64> =
            conditions.iter().filter(|c| c.perturbation.genes().len() == 1).filter_map(|c| c.de_genes).collect();
        let nc = conditions.len();
        let mut effects = vec![vec![0.0f32; g]; nc];
        let mut de_target = vec![None; nc];
        let mut scale = vec![0.0; nc];
        let mut coefs = vec![None; nc];
        let fold = LogNormal::new(p.crispra_fold.ln(), p.crispra_fold_sd.max(1e-9)).expect("valid lognormal");
        let index: std::collections::HashMap<&str, usize> =
            symbols.iter().enumerate().map(|(j, s)| (s.as_str(), j)).collect();
        let mut targets = Vec::new();
        let mut boost = vec![0.0f32; nc];

        // 4. Singles: direction from programs + private part, scale calibrated to the DE count.
        for (k, c) in conditions.iter().enumerate() {
            if c.perturbation.genes().len() != 1 {
                continue;
            }
            let de = c.de_genes.unwrap_or_else(|| known_de[rng.random_range(0..known_de.len())]);
            let gw = p.generic_weight * rng.random_range(0.5..1.5);
            let minor_k = if minor.is_empty() { None } else { Some(rng.random_range(0..minor.len())) };
            // The private part grows with the DE count, so strong perturbations move thousands of
            // genes directly rather than through a global shift of the transcriptome's shares.
            let private_fraction = (p.private_genes * de / cal.tested.len().max(1) as f64).clamp(0.002, 0.6);
            let private = sparse(g, private_fraction, &mut rng);
            let gene = &c.perturbation.genes()[0];
            let target_gene = index[gene.as_str()];
            let target_fold = fold.sample(&mut rng);
            let dir: Vec<f32> = (0..g)
                .map(|j| {
                    let mut v = gw as f32 * generic[j] + p.private_weight as f32 * private[j];
                    if c.cluster >= 0 {
                        v += p.cluster_weight as f32 * clusters[c.cluster as usize][j];
                    }
                    if let Some(m) = minor_k {
                        v += p.minor_weight as f32 * minor[m][j];
                    }
                    if j == target_gene { 0.0 } else { v * damp[j] }
                })
                .collect();
            let s = cal.solve(de, en, responder_depth[k] / CONTROL_MEDIAN_UMI, |s, j| {
                (s * dir[j] as f64).clamp(-MAX_LOG_FOLD, MAX_LOG_FOLD).exp()
            }) * p.effect_scale;
            effects[k] = dir.iter().map(|d| (s * *d as f64).clamp(-MAX_LOG_FOLD, MAX_LOG_FOLD) as f32).collect();
            de_target[k] = Some(de);
            scale[k] = s;
            // CRISPRa on the target itself: raise to the floor, then the fold.
            let floor = (p.target_floor.max(mu0[target_gene]) / mu0[target_gene]).ln();
            boost[k] = (floor + target_fold.ln()) as f32;
            targets.push(Target { symbol: gene.clone(), gene: target_gene, single: k });
        }

        // 5. Doubles: expected shares follow the authors' GI model in expression space, plus a
        // residual (the double's emergent cluster program and a private part) calibrated to its DE count.
        let single_of = |gene: &str| targets.iter().find(|t| t.symbol == gene).map(|t| (t.single, t.gene));
        let mut residual_scales = Vec::new();
        let mut pending = Vec::new();
        for (k, c) in conditions.iter().enumerate() {
            let genes = c.perturbation.genes();
            if genes.len() != 2 {
                continue;
            }
            let (Some((a, ta)), Some((b, tb))) = (single_of(&genes[0]), single_of(&genes[1])) else { continue };
            let (c1, c2) = c.coefs.unwrap_or((1.0, 1.0));
            let (c1, c2) = (1.0 + p.interaction * (c1 - 1.0), 1.0 + p.interaction * (c2 - 1.0));
            coefs[k] = Some((c1, c2));
            // The singles' effects do not carry their CRISPRa boost yet (it is set after this loop).
            let (da, db) = (relative_change(&share, &effects[a]), relative_change(&share, &effects[b]));
            // Refitting on ~282 measured cells per single attenuates c1, c2 (noise in the regressors),
            // as it did for the authors: use the coefficients whose expected refit is theirs.
            let (c1, c2) = if c.coefs.is_some() {
                deattenuate(&mu0, &dispersion, &da, &db, (c1, c2), p.guide_failure)
            } else {
                (c1, c2)
            };
            let emergent = c.cluster >= 0 && conditions[a].cluster != c.cluster && conditions[b].cluster != c.cluster;
            let de_double = c.de_genes.unwrap_or(991.0);
            let private =
                sparse(g, (p.private_genes * de_double / cal.tested.len().max(1) as f64).clamp(0.002, 0.6), &mut rng);
            let resid: Vec<f32> = (0..g)
                .map(|j| {
                    let mut v = p.private_weight as f32 * private[j];
                    if emergent {
                        v += p.cluster_weight as f32 * clusters[c.cluster as usize][j];
                    }
                    if j == ta || j == tb { 0.0 } else { v * damp[j] }
                })
                .collect();
            // The GI combination of the singles' relative share changes.
            let combine = |t: f64, j: usize| -> f64 {
                let r = (t * resid[j] as f64).exp() - 1.0;
                double_fold(c1, c2, da[j], db[j], r)
            };
            let t = match c.de_genes {
                Some(de) if c.coefs.is_some() => {
                    de_target[k] = Some(de);
                    let t = cal.solve(de, en, responder_depth[k] / CONTROL_MEDIAN_UMI, combine);
                    residual_scales.push(t);
                    Some(t)
                }
                _ => None,
            };
            pending.push((k, ta, tb, a, b, t, resid, da, db, c1, c2));
        }
        residual_scales.sort_by(|x, y| x.total_cmp(y));
        let median_t = residual_scales.get(residual_scales.len() / 2).copied().unwrap_or(0.0);
        for (k, ta, tb, a, b, t, resid, da, db, c1, c2) in pending {
            let t = t.unwrap_or(median_t) * p.double_residual;
            effects[k] = (0..g)
                .map(|j| {
                    let r = (t * resid[j] as f64).exp() - 1.0;
                    double_fold(c1, c2, da[j], db[j], r).ln() as f32
                })
                .collect();
            scale[k] = t;
            // Both targets are raised as in their singles.
            effects[k][ta] = boost[a];
            effects[k][tb] = boost[b];
        }
        for t in &targets {
            effects[t.single][t.gene] = boost[t.single];
        }
        let ln_z: Vec<f64> = effects.iter().map(|e| ln_normaliser(&share, e)).collect();

        World {
            seed,
            params: params.clone(),
            conditions,
            gene_ids,
            symbols,
            is_target,
            share,
            ln_share,
            dispersion,
            state_loadings,
            effects,
            ln_z,
            responder_depth,
            de_target,
            scale,
            coefs,
            targets,
        }
    }

    pub fn genes(&self) -> usize {
        self.symbols.len()
    }

    /// Expected ln mean UMI count of every universe gene in a cell of condition `k` at the
    /// condition's mean depth: responding cells (`responded`) or cells whose guides failed (these
    /// are control cells in distribution). Cell state adds a zero-mean term on top.
    pub fn expected_log_mean(&self, k: usize, responded: bool) -> Vec<f32> {
        let control_mean = self.params.control_depth * (self.params.depth_sd * self.params.depth_sd / 2.0).exp();
        if !responded || k == 0 {
            let d = control_mean.ln() as f32;
            return self.ln_share.iter().map(|s| s + d).collect();
        }
        let d = (self.responder_depth[k].ln() - self.ln_z[k]) as f32;
        self.ln_share.iter().zip(&self.effects[k]).map(|(s, e)| s + e + d).collect()
    }

    /// ln of gene j's share of a responding cell's UMIs in condition k (control: k = 0), in f32 as
    /// the simulator draws cells from it.
    pub fn ln_share_in(&self, k: usize, j: usize) -> f32 {
        self.ln_share[j] + self.effects[k][j] - self.ln_z[k] as f32
    }

    /// Effects of double `k` had it no interaction of its own: the GI rule with c1 = c2 = 1 and no
    /// residual, over the singles' relative changes, both targets raised as in their singles; with
    /// its ln Z. None when `k` is not a double of two simulated singles.
    pub fn additive_effects(&self, k: usize) -> Option<(Vec<f32>, f64)> {
        let genes = self.conditions.get(k)?.perturbation.genes();
        let [a, b] = genes else { return None };
        let single = |s: &String| self.targets.iter().find(|t| &t.symbol == s);
        let (ta, tb) = (single(a)?, single(b)?);
        Some(self.additive_composition(ta, tb, &self.unboosted_change(ta), &self.unboosted_change(tb)))
    }

    /// A single's relative change of every gene's share before its CRISPRa boost (which is how
    /// `build` combines singles into doubles).
    pub fn unboosted_change(&self, t: &Target) -> Vec<f64> {
        let mut e = self.effects[t.single].clone();
        e[t.gene] = 0.0;
        relative_change(&self.share, &e)
    }

    /// Any two singles composed by the additive rule (`additive_effects`, for a pair the design may
    /// not hold), from their `unboosted_change`s; with its ln Z.
    pub fn additive_composition(&self, ta: &Target, tb: &Target, da: &[f64], db: &[f64]) -> (Vec<f32>, f64) {
        let mut e: Vec<f32> = da.iter().zip(db).map(|(&x, &y)| double_fold(1.0, 1.0, x, y, 0.0).ln() as f32).collect();
        e[ta.gene] = self.effects[ta.single][ta.gene];
        e[tb.gene] = self.effects[tb.single][tb.gene];
        let ln_z = ln_normaliser(&self.share, &e);
        (e, ln_z)
    }

    /// Rebuilds the world a file's `uns/world` describes (the inverse of `describe`).
    pub fn from_description(json: &str) -> Result<World, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("uns/world is not valid JSON: {e}"))?;
        let seed = v["seed"].as_u64().ok_or("uns/world has no numeric 'seed'")?;
        let params: WorldParams = serde_json::from_value(v["params"].clone())
            .map_err(|e| format!("uns/world 'params' are not the simulator's parameters: {e}"))?;
        params.check().map_err(|e| format!("uns/world: {e}"))?;
        Ok(World::build(seed, &params))
    }

    /// The world as JSON (seed, every parameter, universe size), for `uns/world`.
    pub fn describe(&self) -> String {
        serde_json::json!({
            "seed": self.seed,
            "params": self.params,
            "universe_genes": self.genes(),
            "model": "docs/simulation.md",
        })
        .to_string()
    }
}

/// Each condition's expected ln mean count profile (responding cells, condition's mean depth) over
/// the universe genes, for the world of `seed` and `params`: (condition names, gene symbols, rows).
pub fn expected_log_means(seed: u64, params: &WorldParams) -> (Vec<String>, Vec<String>, Vec<Vec<f32>>) {
    let w = World::build(seed, params);
    let rows = (0..w.conditions.len()).map(|k| w.expected_log_mean(k, true)).collect();
    (w.conditions.iter().map(|c| c.perturbation.to_string()).collect(), w.symbols.clone(), rows)
}
