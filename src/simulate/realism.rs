//! The realism report: draws the screen's populations from a world (the authors' cells per
//! population) and measures them as Norman et al. measured the real screen — cells normalised to the
//! control median UMI, two-sample KS test against control cells with Benjamini–Yekutieli
//! correction, GI coefficients refitted by least squares — next to the authors' own values.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::design::GiClass;
use super::world::{CONTROL_MEDIAN_UMI, DE_ALPHA, DE_MIN_MEAN, SCREEN_CONTROL_CELLS, SCREEN_POPULATION_CELLS, World};
use super::{PanelModel, SimConfig, WorldParams, map_cells};

/// Genes with mean normalised expression above this enter the GI fit and the pair correlation
/// (`GI_model_fits.ipynb`).
pub const FIT_MIN_MEAN: f64 = 0.5;

pub struct RealismConfig {
    pub seed: u64,
    pub cell_seed: u64,
    pub world: WorldParams,
    /// Cells per perturbed population and control cells (the screen's numbers by default).
    pub population_cells: usize,
    pub control_cells: usize,
}

impl Default for RealismConfig {
    fn default() -> Self {
        RealismConfig {
            seed: 0,
            cell_seed: 1,
            world: WorldParams::default(),
            population_cells: SCREEN_POPULATION_CELLS,
            control_cells: SCREEN_CONTROL_CELLS,
        }
    }
}

/// Per-condition measurements of one simulated screen.
pub struct Measured {
    pub de: Vec<usize>,
    /// Mean normalised expression per condition over the measured genes, and the overall mean.
    pub means: Vec<Vec<f64>>,
    pub overall_mean: Vec<f64>,
    pub mean_umi: Vec<f64>,
    pub control_umis: Vec<f64>,
    pub responded_share: f64,
    /// Method-of-moments dispersion and mean per measured gene in control cells.
    pub control_dispersion: Vec<(f64, f64)>,
    pub panel: Vec<usize>,
}

/// Two-sample KS statistic of a sorted population against a sorted control sample.
pub fn ks_statistic(pop: &[f32], control: &[f32]) -> f64 {
    let (n, m) = (pop.len() as f64, control.len() as f64);
    let below = |x: f32| control.partition_point(|&c| c < x) as f64 / m;
    let at_or_below = |x: f32| control.partition_point(|&c| c <= x) as f64 / m;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < pop.len() {
        let x = pop[i];
        let mut j = i;
        while j < pop.len() && pop[j] == x {
            j += 1;
        }
        // Just below x: population CDF i/n; at x: j/n.
        d = d.max((i as f64 / n - below(x)).abs());
        d = d.max((j as f64 / n - at_or_below(x)).abs());
        i = j;
    }
    d
}

/// Asymptotic two-sided p-value of the two-sample KS test as in the scipy the authors used
/// (Kolmogorov distribution with Stephens' small-sample correction).
pub fn ks_pvalue(d: f64, n: usize, m: usize) -> f64 {
    let en = ((n * m) as f64 / (n + m) as f64).sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..100 {
        let term = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Number of p-values with Benjamini–Yekutieli adjusted p below `alpha`.
pub fn by_count(p: &[f64], alpha: f64) -> usize {
    let m = p.len();
    if m == 0 {
        return 0;
    }
    let c_m: f64 = (1..=m).map(|i| 1.0 / i as f64).sum();
    let mut sorted = p.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    // Adjusted p is the running minimum from the top; the count is the largest rank passing.
    let mut count = 0;
    for (i, &pv) in sorted.iter().enumerate() {
        if pv * (m as f64) * c_m / ((i + 1) as f64) < alpha {
            count = i + 1;
        }
    }
    count
}

pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for &t in &idx[i..=j] {
                r[t] = (i + j) as f64 / 2.0;
            }
            i = j + 1;
        }
        r
    }
    pearson(&ranks(a), &ranks(b))
}

pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt().max(1e-300)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { 0.5 * (s[n / 2 - 1] + s[n / 2]) }
}

/// The authors' GI class rule (data/README.md) on refitted coefficients.
pub fn gi_class(c1: f64, c2: f64) -> GiClass {
    if c1 <= 0.05 || c2 <= 0.05 {
        return if c1 <= 0.05 && c2 <= 0.05 { GiClass::Buffering } else { GiClass::Dominant };
    }
    if (c1 / c2).log2().abs() > 1.0 {
        return GiClass::Dominant;
    }
    let norm = (c1 * c1 + c2 * c2).sqrt();
    if norm > 1.6 {
        GiClass::Synergy
    } else if norm < 1.15 {
        GiClass::Buffering
    } else {
        GiClass::Additive
    }
}

/// Draws `n` cells of condition `k` (streams unique to the condition) and returns, per measured
/// gene, the normalised values, plus the cells' whole-transcriptome UMIs and responses.
#[allow(clippy::needless_range_loop)] // i is the cell, the row of every gene column
fn population(model: &PanelModel, cell_seed: u64, k: usize, n: usize) -> (Vec<Vec<f32>>, Vec<f64>, usize) {
    let g = model.panel.len();
    let mut cols = vec![vec![0f32; n]; g];
    let mut umis = Vec::with_capacity(n);
    let mut responded = 0;
    for i in 0..n {
        let mut rng = ChaCha8Rng::seed_from_u64(cell_seed ^ 0x4ea1_15e5);
        rng.set_stream(((k as u64) << 32) + i as u64);
        let (c, v, total, r) = model.cell(&mut rng, k);
        let scale = (CONTROL_MEDIAN_UMI / total.max(1.0)) as f32;
        for (&j, &x) in c.iter().zip(&v) {
            cols[j as usize][i] = x * scale;
        }
        umis.push(total);
        responded += r as usize;
    }
    (cols, umis, responded)
}

/// Simulates the screen's populations of a world and measures DE counts and mean profiles.
pub fn measure(world: &World, cfg: &RealismConfig, mut progress: impl FnMut(&str)) -> Measured {
    // Genes that can reach the authors' thresholds: expected control mean above 0.1.
    let panel: Vec<usize> =
        (0..world.genes()).filter(|&j| (world.ln_share[j] as f64).exp() * world.params.control_depth > 0.1).collect();
    let model = PanelModel::new(world, panel.clone());
    let g = panel.len();
    progress(&format!("control: {} cells x {g} genes", cfg.control_cells));
    let (mut control, control_umis, _) = population(&model, cfg.cell_seed, 0, cfg.control_cells);
    let control_dispersion: Vec<(f64, f64)> = control
        .iter()
        .map(|col| {
            let n = col.len() as f64;
            let m = col.iter().map(|&x| x as f64).sum::<f64>() / n;
            let v = col.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
            (m, if m > 0.0 { (v - m) / (m * m) } else { f64::NAN })
        })
        .collect();
    let control_mean: Vec<f64> = control_dispersion.iter().map(|d| d.0).collect();
    for col in control.iter_mut() {
        col.sort_by(|a, b| a.total_cmp(b));
    }
    let nc = world.conditions.len();
    progress(&format!("{} populations x {} cells", nc - 1, cfg.population_cells));
    // Per condition: (KS p per gene, mean per gene, mean UMI, responded).
    let results: Vec<(Vec<f64>, Vec<f64>, f64, usize)> = map_cells(1, nc, |k| {
        let (mut cols, umis, resp) = population(&model, cfg.cell_seed, k, cfg.population_cells);
        let n = cfg.population_cells;
        let mut ps = Vec::with_capacity(g);
        let mut means = Vec::with_capacity(g);
        for (jj, col) in cols.iter_mut().enumerate() {
            means.push(col.iter().map(|&x| x as f64).sum::<f64>() / n as f64);
            col.sort_by(|a, b| a.total_cmp(b));
            let d = ks_statistic(col, &control[jj]);
            ps.push(ks_pvalue(d, n, cfg.control_cells));
        }
        (ps, means, umis.iter().sum::<f64>() / n as f64, resp)
    });
    // Genes tested: mean over all cells of the screen above 0.25 (as the authors' `mean > 0.25`).
    let total_cells = (cfg.control_cells + (nc - 1) * cfg.population_cells) as f64;
    let overall_mean: Vec<f64> = (0..g)
        .map(|jj| {
            (control_mean[jj] * cfg.control_cells as f64
                + results.iter().map(|r| r.1[jj]).sum::<f64>() * cfg.population_cells as f64)
                / total_cells
        })
        .collect();
    let tested: Vec<usize> = (0..g).filter(|&jj| overall_mean[jj] > DE_MIN_MEAN).collect();
    let mut de = vec![0usize; nc];
    let mut means = vec![control_mean.clone()];
    let mut mean_umi = vec![control_umis.iter().sum::<f64>() / control_umis.len() as f64];
    let mut responded = 0;
    for (k, r) in results.into_iter().enumerate() {
        let p: Vec<f64> = tested.iter().map(|&jj| r.0[jj]).collect();
        de[k + 1] = by_count(&p, DE_ALPHA);
        means.push(r.1);
        mean_umi.push(r.2);
        responded += r.3;
    }
    Measured {
        de,
        means,
        overall_mean,
        mean_umi,
        control_umis,
        responded_share: responded as f64 / ((nc - 1) * cfg.population_cells) as f64,
        control_dispersion,
        panel,
    }
}

fn check(value: f64, lo: f64, hi: f64) -> Value {
    json!({ "simulated": value, "target": [lo, hi], "pass": value >= lo && value <= hi })
}

/// The whole report as JSON: each statistic simulated, real (with its source) and target.
pub fn report(cfg: &RealismConfig, mut progress: impl FnMut(&str)) -> Value {
    let world = World::build(cfg.seed, &cfg.world);
    let m = measure(&world, cfg, &mut progress);
    let conds = &world.conditions;
    let kind = |k: usize| conds[k].perturbation.genes().len();
    let index: std::collections::HashMap<String, usize> =
        conds.iter().enumerate().map(|(k, c)| (c.perturbation.to_string(), k)).collect();

    // DE genes per condition against the authors' counts.
    let de_stats = |n: usize, clustered: Option<bool>| {
        let ks: Vec<usize> = (0..conds.len())
            .filter(|&k| kind(k) == n && conds[k].de_genes.is_some())
            .filter(|&k| clustered.is_none_or(|c| (conds[k].cluster >= 0) == c))
            .collect();
        let sim: Vec<f64> = ks.iter().map(|&k| m.de[k] as f64).collect();
        let real: Vec<f64> = ks.iter().map(|&k| conds[k].de_genes.unwrap_or(0.0)).collect();
        (median(&sim), median(&real), spearman(&sim, &real), ks.len())
    };
    let (s_med, s_real, s_rho, s_n) = de_stats(1, None);
    let (d_med, d_real, d_rho, d_n) = de_stats(2, None);
    let (u_med, u_real, _, u_n) = de_stats(1, Some(false));
    let (c_med, c_real, _, c_n) = de_stats(1, Some(true));
    let all_single_de: Vec<f64> = (0..conds.len()).filter(|&k| kind(k) == 1).map(|k| m.de[k] as f64).collect();

    // Depth.
    let depth = |n: usize| {
        let ks: Vec<usize> = (0..conds.len()).filter(|&k| kind(k) == n && conds[k].umi.is_some()).collect();
        let sim: Vec<f64> = ks.iter().map(|&k| m.mean_umi[k]).collect();
        let real: Vec<f64> = ks.iter().map(|&k| conds[k].umi.unwrap_or(0.0)).collect();
        spearman(&sim, &real)
    };
    let control_median = median(&m.control_umis);

    // Pair correlation and GI refit over genes with mean > 0.5, targets excluded.
    let fit_genes: Vec<usize> =
        (0..m.panel.len()).filter(|&jj| m.overall_mean[jj] > FIT_MIN_MEAN && !world.is_target[m.panel[jj]]).collect();
    let delta = |k: usize| -> Vec<f64> { fit_genes.iter().map(|&jj| m.means[k][jj] - m.means[0][jj]).collect() };
    let (mut corrs, mut c1s, mut c2s, mut r1s, mut r2s) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut agree, mut fitted) = (0usize, 0usize);
    let mut confusion = std::collections::BTreeMap::<String, usize>::new();
    let mut per_double = Vec::new();
    for (k, c) in conds.iter().enumerate() {
        let (Some((r1, r2)), true) = (c.coefs, kind(k) == 2) else { continue };
        let genes = c.perturbation.genes();
        let (Some(&a), Some(&b)) = (index.get(&genes[0]), index.get(&genes[1])) else { continue };
        let (da, db, dab) = (delta(a), delta(b), delta(k));
        corrs.push(pearson(&da, &db));
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let (saa, sbb, sab, say, sby) = (dot(&da, &da), dot(&db, &db), dot(&da, &db), dot(&da, &dab), dot(&db, &dab));
        let det = saa * sbb - sab * sab;
        let (c1, c2) = ((sbb * say - sab * sby) / det, (saa * sby - sab * say) / det);
        c1s.push(c1);
        c2s.push(c2);
        r1s.push(r1);
        r2s.push(r2);
        fitted += 1;
        let real_class = c.gi_class.map(|g| g.name()).unwrap_or("?");
        let sim_class = gi_class(c1, c2).name();
        agree += (real_class == sim_class) as usize;
        *confusion.entry(format!("{real_class}->{sim_class}")).or_default() += 1;
        per_double.push(json!({
            "double": c.perturbation.to_string(), "real_c1": r1, "real_c2": r2, "sim_c1": c1, "sim_c2": c2,
            "real_class": real_class, "sim_class": sim_class, "real_de": c.de_genes, "sim_de": m.de[k], "residual_scale": world.scale[k],
            "de_first": m.de[a], "de_second": m.de[b],
        }));
    }
    let class_counts = |sim: bool| {
        let mut out = std::collections::BTreeMap::<&str, usize>::new();
        for (i, _) in c1s.iter().enumerate() {
            let name = if sim { gi_class(c1s[i], c2s[i]).name() } else { "" };
            if sim {
                *out.entry(name).or_default() += 1;
            }
        }
        out
    };

    // Zeros in 50 random cells of the screen, over a random-gene panel (the fixture's genes are random).
    let all: Vec<usize> = (0..world.genes()).collect();
    let model = PanelModel::new(&world, all);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.cell_seed ^ 0x2e50);
    let mut zero_in_all = vec![true; world.genes()];
    let mut zero_entries = 0usize;
    for i in 0..50 {
        let k = if rng.random::<f64>() < 0.106 { 0 } else { rng.random_range(1..conds.len()) };
        let mut crng = ChaCha8Rng::seed_from_u64(cfg.cell_seed ^ 0x2e51);
        crng.set_stream(i);
        let (cols, _, _, _) = model.cell(&mut crng, k);
        zero_entries += world.genes() - cols.len();
        for &j in &cols {
            zero_in_all[j as usize] = false;
        }
    }
    let zero_genes = zero_in_all.iter().filter(|&&z| z).count() as f64 / world.genes() as f64;
    let zero_entry_share = zero_entries as f64 / (50 * world.genes()) as f64;

    // Dispersion vs mean in control cells (method of moments on normalised values).
    let disp: Vec<(f64, f64)> =
        m.control_dispersion.iter().cloned().filter(|(mu, phi)| *mu > 0.1 && phi.is_finite() && *phi > 0.0).collect();
    let disp_rho =
        spearman(&disp.iter().map(|d| d.0).collect::<Vec<_>>(), &disp.iter().map(|d| d.1).collect::<Vec<_>>());
    let bins = [(0.1, 0.3), (0.3, 1.0), (1.0, 3.0), (3.0, 10.0), (10.0, 1e9)];
    let disp_bins: Vec<Value> = bins
        .iter()
        .map(|&(lo, hi)| {
            let v: Vec<f64> = disp.iter().filter(|d| d.0 >= lo && d.0 < hi).map(|d| d.1).collect();
            json!({ "mean_from": lo, "mean_to": hi, "genes": v.len(), "median_dispersion": median(&v) })
        })
        .collect();

    // Baseline: how heavy-tailed are the control means over the universe?
    let mut mu0: Vec<f64> = world.ln_share.iter().map(|s| (*s as f64).exp() * world.params.control_depth).collect();
    mu0.sort_by(|a, b| b.total_cmp(a));
    let top = |n: usize| mu0[..n].iter().sum::<f64>() / world.params.control_depth;
    let silent = mu0.iter().filter(|&&x| x < 0.01).count() as f64 / mu0.len() as f64;

    // Cells per single : per double in a Norman-sized file.
    let sim_cfg = SimConfig {
        seed: cfg.seed,
        cells: 111_255,
        control_fraction: 0.1064,
        world: cfg.world.clone(),
        ..Default::default()
    };
    let mut arng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let alloc = super::allocate_cells(&sim_cfg, conds, &mut arng);
    let mut per = vec![0usize; conds.len()];
    for k in alloc {
        per[k] += 1;
    }
    let cells_of =
        |n: usize| median(&(0..conds.len()).filter(|&k| kind(k) == n).map(|k| per[k] as f64).collect::<Vec<_>>());
    let ratio = cells_of(1) / cells_of(2);

    let rho_c1 = spearman(&c1s, &r1s);
    let rho_c2 = spearman(&c2s, &r2s);
    json!({
        "note": "SIMULATED data measured as Norman et al. 2019 measured the real screen; real values from the authors' tables (data/norman2019/design.tsv = regr_fits_final.csv, optimal_umap_layout.csv) and notebooks",
        "world": { "seed": cfg.seed, "params": cfg.world, "universe_genes": world.genes() },
        "measurement": {
            "cell_seed": cfg.cell_seed,
            "cells_per_population": cfg.population_cells,
            "control_cells": cfg.control_cells,
            "normalisation": format!("each cell scaled to {CONTROL_MEDIAN_UMI} UMIs (whole transcriptome)"),
            "de_test": format!("two-sample KS vs control, asymptotic p (Stephens), Benjamini-Yekutieli, adj p < {DE_ALPHA}, genes with mean > {DE_MIN_MEAN}"),
            "fit_genes": format!("{} genes with mean > {FIT_MIN_MEAN}, targets excluded", fit_genes.len()),
            "measured_genes": m.panel.len(),
        },
        "de_singles": {
            "median": check(s_med, 0.67 * s_real, 1.5 * s_real), "real_median": s_real, "n": s_n,
            "spearman": check(s_rho, 0.8, 1.0),
            "median_all_105": median(&all_single_de),
            "unclustered_median": u_med, "unclustered_real_median": u_real, "unclustered_n": u_n,
            "clustered_median": c_med, "clustered_real_median": c_real, "clustered_n": c_n,
            "source": "regr_fits_final.csv de_first/de_second (log10 of ks_de), GI_generate_populations.ipynb",
        },
        "de_doubles": {
            "median": check(d_med, 0.67 * d_real, 1.5 * d_real), "real_median": d_real, "n": d_n,
            "spearman": check(d_rho, 0.6, 1.0),
            "source": "regr_fits_final.csv de_double",
        },
        "pair_single_correlation": {
            "median": check(median(&corrs), 0.3, 0.5), "real_median": 0.4045,
            "source": "regr_fits_final.csv corr_first_second (median over 125 fitted doubles)",
        },
        "gi_refit": {
            "class_agreement": check(agree as f64 / fitted.max(1) as f64, 0.6, 1.0),
            "c1_spearman": check(rho_c1, 0.7, 1.0),
            "c2_spearman": check(rho_c2, 0.7, 1.0),
            "median_abs_error_c1": median(&c1s.iter().zip(&r1s).map(|(a, b)| (a - b).abs()).collect::<Vec<_>>()),
            "median_abs_error_c2": median(&c2s.iter().zip(&r2s).map(|(a, b)| (a - b).abs()).collect::<Vec<_>>()),
            "simulated_classes": class_counts(true),
            "real_classes": { "additive": 42, "dominant": 38, "buffering": 35, "synergy": 10 },
            "real_to_simulated": confusion,
            "doubles": fitted,
            "mean_signed_error_c1": c1s.iter().zip(&r1s).map(|(a, b)| a - b).sum::<f64>() / fitted.max(1) as f64,
            "mean_signed_error_c2": c2s.iter().zip(&r2s).map(|(a, b)| a - b).sum::<f64>() / fitted.max(1) as f64,
            "per_double": per_double,
            "source": "regr_fits_final.csv coef_first/coef_second (OLS without intercept, GI_model_fits.ipynb); classes by the rule in data/README.md",
        },
        "zeros_in_50_cells": {
            "genes_all_zero": check(zero_genes, 0.45, 0.75),
            "entries_zero": zero_entry_share,
            "real_fixture_genes_all_zero": 0.68, "real_fixture_entries_zero": 0.9332,
            "issue_value": 0.605,
            "source": "fixtures/scx_norman_subset_50x50.h5ad layers/counts (50 random cells x 50 random genes), measured here",
        },
        "control_median_umi": {
            "value": check(control_median, 0.9 * CONTROL_MEDIAN_UMI, 1.1 * CONTROL_MEDIAN_UMI), "real": CONTROL_MEDIAN_UMI,
            "source": "GI_generate_populations.ipynb (cells normalised to the control median UMI)",
        },
        "depth_spearman": {
            "singles": check(depth(1), 0.95, 1.0), "doubles": check(depth(2), 0.95, 1.0),
            "source": "regr_fits_final.csv UMI_first/UMI_second/UMI_double (population mean UMIs)",
        },
        "dispersion_vs_mean": {
            "spearman_control": disp_rho, "falls_with_mean": disp_rho < 0.0, "bins": disp_bins,
            "genes": disp.len(),
        },
        "baseline": {
            "share_genes_mean_below_0.01": silent, "umi_share_top_10_genes": top(10), "umi_share_top_100_genes": top(100),
            "genes_tested_mean_above_0.25": m.overall_mean.iter().filter(|&&x| x > DE_MIN_MEAN).count(),
        },
        "cells_single_to_double": {
            "ratio_of_medians": check(ratio, 1.6, 2.4),
            "median_single": cells_of(1), "median_double": cells_of(2),
            "source": "real: about 2 (singles pool both guide orders; GI_sgRNA_performance.ipynb median 282.5 cells per single-guide population)",
        },
        "guide_failure": {
            "parameter": cfg.world.guide_failure, "observed_share_not_responding": 1.0 - m.responded_share,
            "obs_column": "responded (1/0)",
        },
    })
}

/// Markdown table of the report's main lines (for docs/simulation.md).
pub fn markdown(r: &Value) -> String {
    let f = |v: &Value| match v.as_f64() {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => v.to_string(),
    };
    let pass = |v: &Value| if v["pass"].as_bool() == Some(true) { "pass" } else { "**miss**" };
    let row = |name: &str, v: &Value, real: String, target: &str| {
        format!("| {name} | {} | {real} | {target} | {} |\n", f(&v["simulated"]), pass(v))
    };
    let mut s = String::from("| statistic | simulated | real | target | |\n|---|---|---|---|---|\n");
    s += &row(
        "DE genes per single, median",
        &r["de_singles"]["median"],
        f(&r["de_singles"]["real_median"]),
        "0.67–1.5× real",
    );
    s += &row("DE genes per single, Spearman with authors'", &r["de_singles"]["spearman"], "—".into(), "≥ 0.8");
    s += &row(
        "DE genes per double, median",
        &r["de_doubles"]["median"],
        f(&r["de_doubles"]["real_median"]),
        "0.67–1.5× real",
    );
    s += &row("DE genes per double, Spearman with authors'", &r["de_doubles"]["spearman"], "—".into(), "≥ 0.6");
    s += &row(
        "correlation of a pair's two singles, median",
        &r["pair_single_correlation"]["median"],
        "0.40".into(),
        "0.3–0.5",
    );
    s += &row("GI class agreement", &r["gi_refit"]["class_agreement"], "—".into(), "≥ 0.6");
    s += &row("refitted c1 vs authors' (Spearman)", &r["gi_refit"]["c1_spearman"], "—".into(), "≥ 0.7");
    s += &row("refitted c2 vs authors' (Spearman)", &r["gi_refit"]["c2_spearman"], "—".into(), "≥ 0.7");
    s += &row(
        "genes with zero counts in 50 random cells",
        &r["zeros_in_50_cells"]["genes_all_zero"],
        "0.68 (fixture)".into(),
        "0.45–0.75",
    );
    s += &row("control median UMI", &r["control_median_umi"]["value"], "14955".into(), "±10 %");
    s += &row("depth per population, Spearman (singles)", &r["depth_spearman"]["singles"], "—".into(), "≥ 0.95");
    s += &row("depth per population, Spearman (doubles)", &r["depth_spearman"]["doubles"], "—".into(), "≥ 0.95");
    s += &row(
        "cells per single : per double",
        &r["cells_single_to_double"]["ratio_of_medians"],
        "≈ 2".into(),
        "1.6–2.4",
    );
    s
}
