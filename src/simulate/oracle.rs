//! The Bayes ceiling of a simulated file: with the world known (every condition's expected profile,
//! dispersion, depth and cell-state loadings), the posterior over the design's conditions given one
//! cell's raw counts. No method that sees only the counts can beat it on average; the benchmark
//! shows it as the `oracle` row, and `oracle-additive` (doubles without their own interaction) shows
//! how much of it needs the interactions.
//!
//! A cell's likelihood under condition k integrates out its depth and 3-dim cell state:
//! P(x | k) = (1 − f)·L_k(x) + f·L_0(x) for k ≠ 0 (guide failure f: such cells are control cells),
//! L_k(x) = ∫ Π_j NB(x_j | e^{η_kj}, φ_j) N(θ; 0, I) dθ with η_kj = c_kj + σ·u + z·L_j, θ = (u, z),
//! c_kj = ln D_k + ln q_kj. The integral is a Laplace approximation around the mode (Newton on a
//! concave function). Terms of the NB density that depend only on x_j and φ_j (not on k) are left
//! out of every L, so values are comparable across conditions of one cell, not across cells.

use super::World;
use super::map_cells;
use crate::io::CsrMatrix;
use std::collections::HashMap;

use super::world::Target;
use crate::model::sets::{SetScores, answer_size};

#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error("uns/world: {0}")]
    World(String),
    #[error(
        "gene '{0}' of the file is not a gene of the simulated world (was the file written by another simulator version?)"
    )]
    UnknownGene(String),
    #[error("column {0} is out of range: the file has {1} genes")]
    Column(usize, usize),
    #[error("row {0} is out of range: the file has {1} cells")]
    Row(usize, usize),
}

/// Which world the oracle believes: the true one, or the one where every double is the additive
/// composition of its singles (`World::additive_composition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Truth,
    Additive,
}

/// What the oracle knows of which answers occur. `Answers`: what every method knows, the answers it
/// ranks (control, each candidate, each pair of candidates) with the size shares of the design and
/// every answer of one size equally likely; a pair outside the design is the additive composition of
/// its singles. `Design`: also which pairs the screen holds (no method is told that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    Answers,
    Design,
}

/// The ceiling rows of the benchmark: (row name, variant, prior).
pub const CEILINGS: [(&str, Variant, Prior); 3] = [
    ("oracle", Variant::Truth, Prior::Answers),
    ("oracle-additive", Variant::Additive, Prior::Answers),
    ("oracle-design", Variant::Truth, Prior::Design),
];

/// Newton stops when the quadratic model promises less than this gain (nats); the value then adds
/// that gain, so the mode's log density is accurate to far below it.
const NEWTON_TOL: f64 = 1e-4;
const NEWTON_MAX_ITER: usize = 40;
/// Largest change of any coordinate of θ (prior SDs) in one Newton step.
const MAX_STEP: f64 = 2.0;
/// Pairs outside the design (thousands of profiles) are screened per cell by their log density at
/// the control's mode; this many of the best get the full Laplace fit, the rest the screen value
/// plus the median correction of those fitted (they carry a negligible share of the posterior).
const REFINED_PAIRS: usize = 48;

/// A pair composed by the additive rule: its design condition (None: a pair the design lacks), ln of
/// the mean depth its cells are drawn with, its log-folds over the file's columns (NaN: a column
/// that is no gene of the world) and ln Z.
struct Composed {
    condition: Option<usize>,
    ln_depth: f64,
    effects: Vec<f32>,
    ln_z: f64,
}

/// Where one answer's likelihood comes from: its design condition (None: not in the design) and
/// its profile in the additive variant (for control and singles, the condition itself).
#[derive(Clone, Copy, Debug)]
struct Slot {
    condition: Option<usize>,
    additive: usize,
}

/// A world's responding profiles over a file's genes, ready to score cells, and the answers of a
/// set of candidates they stand for.
pub struct Oracle<'w> {
    world: &'w World,
    /// Universe gene of each file column (None: not a gene of the world).
    universe: Vec<Option<usize>>,
    names: Vec<String>,
    /// Profiles 0..K are the world's conditions, then the composed pairs: first the design's
    /// doubles (fitted in full), then the other pairs of candidates (screened).
    composed: Vec<Composed>,
    design_composed: usize,
    /// Each answer of the candidates in `SetScores` order (control, singles, pairs); None: an
    /// answer the world cannot produce (a candidate that is no target of it).
    slots: Vec<Option<Slot>>,
    n_candidates: usize,
}

/// Log likelihoods of cells under every profile (cells × profiles), from `Oracle::likelihoods`.
pub struct Likelihoods {
    profiles: usize,
    values: Vec<f64>,
    /// Fits whose Newton iteration did not meet its tolerance (their Laplace value is still used).
    pub unconverged: usize,
    pub genes: usize,
}

impl<'w> Oracle<'w> {
    /// Matches the file's genes to the world's universe: by Ensembl ID (version ignored) when the
    /// file has IDs, else by symbol; `candidates` (sorted) are the genes the methods rank.
    pub fn new(world: &'w World, genes: &[String], gene_ids: Option<&[String]>, candidates: &[String]) -> Oracle<'w> {
        let strip = |s: &str| s.split('.').next().unwrap_or(s).to_string();
        let by_id: HashMap<String, usize> = world.gene_ids.iter().enumerate().map(|(j, id)| (strip(id), j)).collect();
        let by_symbol: HashMap<&str, usize> = world.symbols.iter().enumerate().map(|(j, s)| (s.as_str(), j)).collect();
        let universe: Vec<Option<usize>> = (0..genes.len())
            .map(|c| {
                gene_ids
                    .and_then(|ids| ids.get(c))
                    .and_then(|id| by_id.get(&strip(id)).copied())
                    .or_else(|| by_symbol.get(genes[c].as_str()).copied())
            })
            .collect();
        let k = world.conditions.len();
        // Each candidate the world can raise: its target and its single's change before the boost.
        let singles: Vec<Option<(&Target, Vec<f64>)>> = candidates
            .iter()
            .map(|c| world.targets.iter().find(|t| &t.symbol == c).map(|t| (t, world.unboosted_change(t))))
            .collect();
        let condition_of: HashMap<Vec<&str>, usize> = (0..k)
            .map(|i| {
                let mut g: Vec<&str> = world.conditions[i].perturbation.genes().iter().map(|s| s.as_str()).collect();
                g.sort_unstable();
                (g, i)
            })
            .collect();
        let n = candidates.len();
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect();
        let design_pair = |&(a, b): &(usize, usize)| {
            let mut g = [candidates[a].as_str(), candidates[b].as_str()];
            g.sort_unstable();
            condition_of.get(&g[..]).copied()
        };
        // Composed pairs: the design's doubles first, then every other pair of targets.
        type Single<'a> = &'a (&'a Target, Vec<f64>);
        let mut order: Vec<((usize, usize), Single, Single)> =
            pairs.iter().filter_map(|&(a, b)| Some(((a, b), singles[a].as_ref()?, singles[b].as_ref()?))).collect();
        order.sort_by_key(|(p, _, _)| design_pair(p).is_none());
        let sd = world.params.depth_sd;
        let doubles: Vec<f64> = (0..k)
            .filter(|&i| world.conditions[i].perturbation.genes().len() == 2)
            .map(|i| world.responder_depth[i].ln())
            .collect();
        let mean_double_depth = doubles.iter().sum::<f64>() / doubles.len().max(1) as f64;
        let composed: Vec<Composed> = map_cells(0, order.len(), |i| {
            let (pair, (ta, da), (tb, db)) = order[i];
            let (e, ln_z) = world.additive_composition(ta, tb, da, db);
            let condition = design_pair(&pair);
            let ln_d = condition.map_or(mean_double_depth, |c| world.responder_depth[c].ln());
            Composed {
                condition,
                ln_depth: ln_d - sd * sd / 2.0,
                effects: universe.iter().map(|u| u.map_or(f32::NAN, |j| e[j])).collect(),
                ln_z,
            }
        });
        let design_composed = composed.iter().filter(|c| c.condition.is_some()).count();
        let composed_of: HashMap<(usize, usize), usize> =
            order.iter().enumerate().map(|(i, (p, _, _))| (*p, k + i)).collect();
        let mut slots: Vec<Option<Slot>> = vec![Some(Slot { condition: Some(0), additive: 0 })];
        for single in &singles {
            slots.push(single.as_ref().map(|(t, _)| Slot { condition: Some(t.single), additive: t.single }));
        }
        for p in &pairs {
            slots.push(composed_of.get(p).map(|&additive| Slot { condition: design_pair(p), additive }));
        }
        Oracle { world, universe, names: genes.to_vec(), composed, design_composed, slots, n_candidates: n }
    }

    fn profiles(&self) -> usize {
        self.world.conditions.len() + self.composed.len()
    }

    /// ln D + ln q of profile p over file columns `columns` (universe genes `genes`), D the mean
    /// depth that enters with e^{ε}: control depth for control, responders' depth · e^{−σ²/2}
    /// otherwise, as cells are drawn.
    fn profile(&self, p: usize, columns: &[usize], genes: &[usize]) -> Profile {
        let w = self.world;
        let sd = w.params.depth_sd;
        let k = w.conditions.len();
        let c: Vec<f64> = if p < k {
            let ln_d = if p == 0 { w.params.control_depth.ln() } else { w.responder_depth[p].ln() - sd * sd / 2.0 };
            genes.iter().map(|&j| ln_d + w.ln_share_in(p, j) as f64).collect()
        } else {
            let c = &self.composed[p - k];
            columns
                .iter()
                .zip(genes)
                .map(|(&col, &j)| c.ln_depth + (w.ln_share[j] + c.effects[col]) as f64 - c.ln_z)
                .collect()
        };
        let m = c.iter().map(|v| v.exp()).collect();
        Profile { c, m }
    }

    /// log L of each cell in `rows` of the raw count matrix under every profile, over the file
    /// columns `columns` only (a gene not listed is unobserved, not zero).
    pub fn likelihoods(
        &self,
        counts: &CsrMatrix,
        rows: &[usize],
        columns: &[usize],
    ) -> Result<Likelihoods, OracleError> {
        self.likelihoods_refining(counts, rows, columns, REFINED_PAIRS)
    }

    /// `likelihoods` with `refined` screened pairs fitted in full per cell (all: `usize::MAX`).
    fn likelihoods_refining(
        &self,
        counts: &CsrMatrix,
        rows: &[usize],
        columns: &[usize],
        refined: usize,
    ) -> Result<Likelihoods, OracleError> {
        let n_cols = self.universe.len();
        let mut position = vec![usize::MAX; n_cols];
        let mut genes = Vec::with_capacity(columns.len());
        for (i, &c) in columns.iter().enumerate() {
            let j = self.universe.get(c).ok_or(OracleError::Column(c, n_cols))?;
            let j = j.ok_or_else(|| OracleError::UnknownGene(self.names[c].clone()))?;
            position[c] = i;
            genes.push(j);
        }
        if let Some(&r) = rows.iter().find(|&&r| r >= counts.n_rows) {
            return Err(OracleError::Row(r, counts.n_rows));
        }
        let w = self.world;
        let sd = w.params.depth_sd;
        let consts = Genes {
            a: genes
                .iter()
                .map(|&j| {
                    let l = |a: usize| w.state_loadings[a][j] as f64;
                    [sd, l(0), l(1), l(2)]
                })
                .collect(),
            r: genes.iter().map(|&j| 1.0 / w.dispersion[j] as f64).collect(),
        };
        let profiles: Vec<Profile> = map_cells(0, self.profiles(), |p| self.profile(p, columns, &genes));
        let fitted = w.conditions.len() + self.design_composed;
        let per_cell = map_cells(0, rows.len(), |i| {
            let mut x = vec![0.0f64; genes.len()];
            let (cols, vals) = counts.row(rows[i]);
            for (&c, &v) in cols.iter().zip(vals) {
                if let Some(&p) = position.get(c as usize).filter(|&&p| p != usize::MAX) {
                    x[p] = v as f64;
                }
            }
            // Control first from the prior mean; every other profile starts at the control's mode
            // (depth and state are mostly the cell's own, whatever the condition).
            let control = laplace(&profiles[0], &consts, &x, &Start::new(&consts, [0.0; 4]));
            let start = Start::new(&consts, control.mode);
            let mut out = Vec::with_capacity(profiles.len());
            let mut unconverged = !control.converged as usize;
            out.push(control.log_integral);
            for p in &profiles[1..fitted] {
                let fit = laplace(p, &consts, &x, &start);
                unconverged += !fit.converged as usize;
                out.push(fit.log_integral);
            }
            // The other pairs: screened, the best refined (see REFINED_PAIRS).
            let screen: Vec<f64> = profiles[fitted..].iter().map(|p| plug_in(p, &consts, &x, &start)).collect();
            let mut best: Vec<usize> = (0..screen.len()).collect();
            let keep = refined.min(best.len());
            if keep > 0 {
                best.select_nth_unstable_by(keep - 1, |&a, &b| screen[b].total_cmp(&screen[a]));
            }
            let mut corrections = Vec::with_capacity(keep);
            let mut refined = vec![None; screen.len()];
            for &q in &best[..keep] {
                let fit = laplace(&profiles[fitted + q], &consts, &x, &start);
                corrections.push(fit.log_integral - screen[q]);
                refined[q] = Some(fit.log_integral);
            }
            corrections.sort_by(f64::total_cmp);
            let median = corrections.get(corrections.len() / 2).copied().unwrap_or(0.0);
            out.extend(screen.iter().zip(&refined).map(|(s, r)| r.unwrap_or(s + median)));
            (out, unconverged)
        });
        let mut values = Vec::with_capacity(rows.len() * self.profiles());
        let mut unconverged = 0;
        for (v, u) in per_cell {
            values.extend(v);
            unconverged += u;
        }
        Ok(Likelihoods { profiles: self.profiles(), values, unconverged, genes: genes.len() })
    }

    /// log P(x | answer) of one cell for every answer slot (None: the world cannot produce it),
    /// guide failure included: P = (1 − f)·L_profile + f·L_control.
    fn slot_log_likelihood(&self, lik: &Likelihoods, cell: usize, variant: Variant) -> Vec<f64> {
        let v = &lik.values[cell * lik.profiles..(cell + 1) * lik.profiles];
        let f = self.world.params.guide_failure;
        let (ln_keep, ln_fail) = ((1.0 - f).ln(), f.ln());
        self.slots
            .iter()
            .enumerate()
            .map(|(s, slot)| match slot {
                None => f64::NEG_INFINITY,
                Some(_) if s == 0 => v[0],
                Some(slot) => {
                    let p = match variant {
                        Variant::Truth => slot.condition.unwrap_or(slot.additive),
                        Variant::Additive => slot.additive,
                    };
                    log_add(ln_keep + v[p], ln_fail + v[0])
                }
            })
            .collect()
    }

    /// ln prior of every answer slot. Size shares as the simulator allocates cells: `control_share`
    /// for control (the file's), the rest split with weight `single_to_double_cells` per single and
    /// 1 per double of the design (each condition's own log-normal spread has the same mean, so it
    /// drops out). `Design`: each design condition its share, other pairs 0; `Answers`: a size's
    /// share spread evenly over every answer of that size the world can produce.
    pub fn log_prior(&self, prior: Prior, control_share: f64) -> Vec<f64> {
        let ratio = self.world.params.single_to_double_cells;
        let size = |c: usize| self.world.conditions[c].perturbation.genes().len();
        let weight = |c: usize| match size(c) {
            0 => 0.0,
            1 => ratio,
            _ => 1.0,
        };
        let k = self.world.conditions.len();
        let total: f64 = (0..k).map(weight).sum();
        let cs = control_share.clamp(1e-6, 1.0 - 1e-6);
        let n = self.n_candidates;
        let mut share = [cs, 0.0, 0.0];
        for c in 1..k {
            share[size(c).min(2)] += (1.0 - cs) * weight(c) / total;
        }
        let (count, _) = self.answer_counts();
        self.slots
            .iter()
            .enumerate()
            .map(|(s, slot)| match (slot, prior) {
                (None, _) => f64::NEG_INFINITY,
                (Some(slot), Prior::Design) => match slot.condition {
                    Some(0) => cs.ln(),
                    Some(c) => ((1.0 - cs) * weight(c) / total).ln(),
                    None => f64::NEG_INFINITY,
                },
                (Some(_), Prior::Answers) => (share[answer_size(s, n)] / count[answer_size(s, n)] as f64).ln(),
            })
            .collect()
    }

    /// P(answer | cells) for cells that share one condition (one cell, or a pseudobulk's members):
    /// Σ log P(x_i | answer) + log prior, normalised, as scores over the candidates' answers.
    pub fn posterior(&self, lik: &Likelihoods, members: &[usize], variant: Variant, log_prior: &[f64]) -> SetScores {
        let mut total = log_prior.to_vec();
        for &i in members {
            for (t, l) in total.iter_mut().zip(self.slot_log_likelihood(lik, i, variant)) {
                *t += l;
            }
        }
        // A fit that failed numerically (NaN) says nothing for its answer (probability 0); if every
        // answer failed, the prior is the answer.
        let n = self.n_candidates;
        SetScores::from_log_values(&total, n)
            .or_else(|| SetScores::from_log_values(log_prior, n))
            .unwrap_or_else(|| SetScores::uniform(n))
    }

    /// How many answers of each size (control, singles, pairs) the world can produce, and how many
    /// pairs the design holds.
    pub fn answer_counts(&self) -> ([usize; 3], usize) {
        let n = self.n_candidates;
        let mut count = [0usize; 3];
        for (s, slot) in self.slots.iter().enumerate() {
            count[answer_size(s, n)] += slot.is_some() as usize;
        }
        (count, self.design_composed)
    }
}

fn log_add(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY { m } else { m + ((a - m).exp() + (b - m).exp()).ln() }
}

/// Per-gene constants of a fit: loadings a_j = (σ, L_j) of θ = (u, z), and the NB size r_j = 1/φ_j.
struct Genes {
    a: Vec<[f64; 4]>,
    r: Vec<f64>,
}

struct Fit {
    log_integral: f64,
    mode: [f64; 4],
    converged: bool,
}

/// h(θ) = Σ_j [x_j η_j − (x_j + r_j) ln(r_j + e^{η_j})] − |θ|²/2 with η_j = c_j + a_j·θ, its gradient
/// and P = −∇²h = Σ_j w_j a_j a_jᵀ + I (positive definite: h is concave).
/// h(θ) = Σ_j [x_j η_j − (x_j + r_j) ln(r_j + e^{η_j})] − |θ|²/2 with η_j = c_j + a_j·θ, its gradient
/// and P = −∇²h = Σ_j w_j a_j a_jᵀ + I (positive definite: h is concave). `at_start`: a_j·θ and
/// e^{a_j·θ} when θ is the cell's starting point, shared by every profile, with e^{c_j} in `m`, so
/// the first evaluation of each profile needs no exponential.
#[allow(clippy::needless_range_loop)] // j indexes five per-gene arrays; u, v a 4×4 matrix
fn evaluate(
    p: &Profile,
    g: &Genes,
    x: &[f64],
    t: &[f64; 4],
    at_start: Option<&Start>,
) -> (f64, [f64; 4], [[f64; 4]; 4]) {
    let mut acc =
        Acc { h: -0.5 * t.iter().map(|v| v * v).sum::<f64>(), grad: [-t[0], -t[1], -t[2], -t[3]], p: [[0.0; 4]; 4] };
    match at_start {
        Some(st) => {
            for j in 0..x.len() {
                acc.add(&g.a[j], g.r[j], x[j], p.c[j] + st.dot[j], p.m[j] * st.exp[j]);
            }
        }
        None => {
            for j in 0..x.len() {
                let a = &g.a[j];
                let eta = p.c[j] + a[0] * t[0] + a[1] * t[1] + a[2] * t[2] + a[3] * t[3];
                acc.add(a, g.r[j], x[j], eta, eta.exp());
            }
        }
    }
    let mut hess = acc.p;
    for u in 0..4 {
        hess[u][u] += 1.0;
        for v in 0..u {
            hess[u][v] = hess[v][u];
        }
    }
    (acc.h, acc.grad, hess)
}

struct Acc {
    h: f64,
    grad: [f64; 4],
    p: [[f64; 4]; 4],
}

impl Acc {
    /// One gene's NB term (its θ-free part left out) and its derivatives in η.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // u, v index the 4×4 matrix and a_j together
    fn add(&mut self, a: &[f64; 4], r: f64, x: f64, eta: f64, mu: f64) {
        let rm = r + mu;
        self.h += x * eta - (x + r) * rm.ln();
        let s = (x + r) * mu / rm;
        let d = x - s;
        let w = s * r / rm;
        for u in 0..4 {
            self.grad[u] += d * a[u];
            let wa = w * a[u];
            for v in u..4 {
                self.p[u][v] += wa * a[v];
            }
        }
    }
}

/// One profile over the chosen genes: c_j = ln D + ln q_j and m_j = e^{c_j}.
struct Profile {
    c: Vec<f64>,
    m: Vec<f64>,
}

/// A cell's starting point θ₀ with a_j·θ₀ and e^{a_j·θ₀} per gene.
struct Start {
    theta: [f64; 4],
    dot: Vec<f64>,
    exp: Vec<f64>,
}

impl Start {
    fn new(g: &Genes, theta: [f64; 4]) -> Start {
        let dot: Vec<f64> = g.a.iter().map(|a| (0..4).map(|u| a[u] * theta[u]).sum()).collect();
        let exp = dot.iter().map(|d| d.exp()).collect();
        Start { theta, dot, exp }
    }
}

/// Cholesky factor of a symmetric positive definite 4×4 matrix (None if it is not).
fn cholesky(p: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut l = [[0.0f64; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let s = p[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s.is_nan() || s <= 0.0 {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

fn solve(l: &[[f64; 4]; 4], b: &[f64; 4]) -> [f64; 4] {
    let mut y = [0.0f64; 4];
    for i in 0..4 {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0f64; 4];
    for i in (0..4).rev() {
        x[i] = (y[i] - (i + 1..4).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

/// Laplace approximation of log ∫ Π_j NB(x_j | θ) N(θ; 0, I) dθ with h (which holds the prior's
/// exponent) around its mode: h(θ*) − ½ ln det P(θ*); the (2π)² of the Gaussian integral cancels
/// the prior's normaliser. Newton from `start`; a step after which h fell (an overshoot) is halved.
fn laplace(p: &Profile, g: &Genes, x: &[f64], start: &Start) -> Fit {
    let mut theta = start.theta;
    let mut last: Option<(f64, [f64; 4])> = None;
    let mut best = Fit { log_integral: f64::NEG_INFINITY, mode: theta, converged: false };
    for iter in 0..NEWTON_MAX_ITER {
        let (h, grad, hess) = evaluate(p, g, x, &theta, (iter == 0).then_some(start));
        if let Some((h_last, t_last)) = last
            && (h.is_nan() || h < h_last - 1e-10 * h_last.abs().max(1.0))
        {
            for u in 0..4 {
                theta[u] = 0.5 * (theta[u] + t_last[u]);
            }
            continue;
        }
        let Some(l) = cholesky(&hess) else { break };
        let step = solve(&l, &grad);
        let gain = 0.5 * grad.iter().zip(&step).map(|(a, b)| a * b).sum::<f64>();
        let ln_det = 2.0 * (0..4).map(|i| l[i][i].ln()).sum::<f64>();
        best = Fit { log_integral: h + gain - 0.5 * ln_det, mode: theta, converged: false };
        if gain < NEWTON_TOL {
            best.converged = true;
            return best;
        }
        last = Some((h, theta));
        let scale = (MAX_STEP / step.iter().fold(0.0f64, |m, v| m.max(v.abs()))).min(1.0);
        for u in 0..4 {
            theta[u] += scale * step[u];
        }
    }
    best
}

/// h(θ₀) at the cell's starting point, from the shared a_j·θ₀ and e^{a_j·θ₀}: the screen of the
/// pairs outside the design.
#[allow(clippy::needless_range_loop)] // j indexes six per-gene arrays, as in `evaluate`
fn plug_in(p: &Profile, g: &Genes, x: &[f64], start: &Start) -> f64 {
    let mut h = -0.5 * start.theta.iter().map(|v| v * v).sum::<f64>();
    for j in 0..x.len() {
        let mu = p.m[j] * start.exp[j];
        h += x[j] * (p.c[j] + start.dot[j]) - (x[j] + g.r[j]) * (g.r[j] + mu).ln();
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Perturbation;
    use crate::simulate::{SimConfig, WorldParams, simulate_in};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn world() -> World {
        World::build(11, &WorldParams::default())
    }

    /// Importance-sampling estimate of log ∫ e^{h(θ)} N(θ;0,I)-normalised, with a Student-t-like
    /// proposal: the Laplace Gaussian widened by `widen` (a different estimator, same integral).
    fn importance_sampled(
        c: &Profile,
        g: &Genes,
        x: &[f64],
        mode: [f64; 4],
        n: usize,
        widen: f64,
        seed: u64,
    ) -> (f64, f64) {
        let (_, _, p) = evaluate(c, g, x, &mode, None);
        let l = cholesky(&p).unwrap();
        let ln_det_p = 2.0 * (0..4).map(|i| l[i][i].ln()).sum::<f64>();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut logs = Vec::with_capacity(n);
        for _ in 0..n {
            // θ = mode + widen · L⁻ᵀ e, e ~ N(0, I): covariance widen²·P⁻¹.
            let e: [f64; 4] = std::array::from_fn(|_| rng.sample::<f64, _>(rand_distr::StandardNormal));
            let mut d = [0.0f64; 4];
            for i in (0..4).rev() {
                d[i] = (e[i] - (i + 1..4).map(|k| l[k][i] * d[k]).sum::<f64>()) / l[i][i];
            }
            let theta: [f64; 4] = std::array::from_fn(|u| mode[u] + widen * d[u]);
            let (h, _, _) = evaluate(c, g, x, &theta, None);
            // h holds −|θ|²/2; the prior's normaliser is −2 ln 2π; q's log density:
            let ln_q = -0.5 * e.iter().map(|v| v * v).sum::<f64>() - 2.0 * (2.0 * std::f64::consts::PI).ln()
                + 0.5 * ln_det_p
                - 4.0 * widen.ln();
            logs.push(h - 2.0 * (2.0 * std::f64::consts::PI).ln() - ln_q);
        }
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logs.iter().map(|v| (v - m).exp()).collect();
        let mean = w.iter().sum::<f64>() / n as f64;
        let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        // Estimate and its standard error on the log scale (delta method).
        (m + mean.ln(), (var / n as f64).sqrt() / mean)
    }

    #[test]
    fn laplace_matches_importance_sampling() {
        let w = world();
        let sim = simulate_in(
            &w,
            &SimConfig { seed: 11, cells: 1500, genes: 300, control_fraction: 0.1, ..Default::default() },
            |_, _| {},
        )
        .unwrap();
        let d = &sim.data;
        let oracle = Oracle::new(&w, &d.genes, d.gene_ids.as_deref(), &candidates(&w));
        let cols: Vec<usize> = (0..d.genes.len()).collect();
        let genes: Vec<usize> = cols.iter().map(|&c| oracle.universe[c].unwrap()).collect();
        let sd = w.params.depth_sd;
        let loading = |a: usize, j: usize| w.state_loadings[a][j] as f64;
        let consts = Genes {
            a: genes.iter().map(|&j| [sd, loading(0, j), loading(1, j), loading(2, j)]).collect(),
            r: genes.iter().map(|&j| 1.0 / w.dispersion[j] as f64).collect(),
        };
        let (mut worst, mut worst_odds) = (0.0f64, 0.0f64);
        // Six cells (control, singles, doubles), each under its own condition, control and a double.
        let pick: Vec<usize> = (0..sim.cell_condition.len()).step_by(97).take(6).collect();
        for &i in &pick {
            let x: Vec<f64> = d.matrix.dense_row(i).iter().map(|&v| v as f64).collect();
            let mut pairs = Vec::new();
            for p in [0, sim.cell_condition[i], 200] {
                let prof = oracle.profile(p, &cols, &genes);
                let fit = laplace(&prof, &consts, &x, &Start::new(&consts, [0.0; 4]));
                assert!(fit.converged);
                // Proposal: the Laplace Gaussian widened 1.2× (SE ≈ 0.0023 nats at 40,000 draws),
                // checked against a 2× wider one (a different estimator of the same integral).
                let (is, se) = importance_sampled(&prof, &consts, &x, fit.mode, 40_000, 1.2, i as u64);
                let (wide, se_wide) = importance_sampled(&prof, &consts, &x, fit.mode, 10_000, 2.0, 99 + i as u64);
                assert!((is - wide).abs() < 4.0 * (se + se_wide), "cell {i} profile {p}: IS {is} vs {wide}");
                // Measured: at most 0.005 nats (seed 11, 300 genes), about 2 SE of the estimate.
                assert!(
                    (fit.log_integral - is).abs() < 0.01,
                    "cell {i} profile {p}: Laplace {} IS {is}",
                    fit.log_integral
                );
                worst = worst.max((fit.log_integral - is).abs());
                pairs.push((fit.log_integral, is));
            }
            // What classification uses: log-odds between conditions of one cell (same draws for
            // every profile, so the IS noise largely cancels).
            for &(lap, is) in &pairs[1..] {
                let err = ((lap - pairs[0].0) - (is - pairs[0].1)).abs();
                worst_odds = worst_odds.max(err);
                assert!(err < 0.005, "cell {i}: log-odds error {err}");
            }
        }
        eprintln!("largest |Laplace − IS| {worst:.4} nats; largest log-odds error {worst_odds:.4} nats");
        // `likelihoods` (warm starts, all profiles) gives the same values as a fit from the prior mean.
        let lik = oracle.likelihoods(&d.matrix, &pick, &cols).unwrap();
        let x: Vec<f64> = d.matrix.dense_row(pick[0]).iter().map(|&v| v as f64).collect();
        let direct =
            laplace(&oracle.profile(5, &cols, &genes), &consts, &x, &Start::new(&consts, [0.0; 4])).log_integral;
        assert!((lik.values[5] - direct).abs() < 1e-4);
    }

    /// The world's targets, sorted: the candidates a model trained on its files ranks.
    fn candidates(w: &World) -> Vec<String> {
        let mut c: Vec<String> = w.targets.iter().map(|t| t.symbol.clone()).collect();
        c.sort();
        c
    }

    /// The answer slot of a condition among `candidates` (control, singles, then pairs).
    fn slot_of(p: &Perturbation, candidates: &[String]) -> usize {
        let n = candidates.len();
        let mut idx: Vec<usize> = p.genes().iter().map(|g| candidates.binary_search(g).unwrap()).collect();
        idx.sort_unstable();
        match idx[..] {
            [] => 0,
            [a] => 1 + a,
            [a, b] => 1 + n + crate::model::sets::pair_index(a, b, n),
            _ => unreachable!(),
        }
    }

    fn argmax(s: &SetScores) -> usize {
        let all: Vec<f64> =
            std::iter::once(s.control).chain(s.singles.iter().cloned()).chain(s.pairs.iter().cloned()).collect();
        (0..all.len()).max_by(|&a, &b| all[a].total_cmp(&all[b])).unwrap()
    }

    #[test]
    fn responders_are_named_failed_guides_called_control_and_probabilities_calibrated() {
        let w = world();
        let config = SimConfig {
            seed: 11,
            cells: 2000,
            genes: 300,
            control_fraction: 0.1,
            cell_seed: Some(3),
            ..Default::default()
        };
        let sim = simulate_in(&w, &config, |_, _| {}).unwrap();
        let d = &sim.data;
        let cands = candidates(&w);
        let oracle = Oracle::new(&w, &d.genes, d.gene_ids.as_deref(), &cands);
        let rows: Vec<usize> = (0..d.cells.len()).collect();
        let cols: Vec<usize> = (0..d.genes.len()).collect();
        let t0 = std::time::Instant::now();
        let lik = oracle.likelihoods(&d.matrix, &rows, &cols).unwrap();
        eprintln!(
            "{} cells × {} profiles × {} genes: {:.2} s",
            rows.len(),
            lik.profiles,
            lik.genes,
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(lik.unconverged, 0);
        for (prior, floor) in [(Prior::Design, 0.7), (Prior::Answers, 0.5)] {
            let log_prior = oracle.log_prior(prior, 0.1);
            let (mut named, mut responders, mut called_control, mut failed) = (0, 0, 0, 0);
            let (mut confidence, mut correct) = (0.0, 0.0);
            for i in 0..rows.len() {
                let p = oracle.posterior(&lik, &[i], Variant::Truth, &log_prior);
                let top = argmax(&p);
                let truth = slot_of(&sim.conditions[sim.cell_condition[i]].perturbation, &cands);
                let all_p = std::iter::once(p.control).chain(p.singles.iter().cloned()).chain(p.pairs.iter().cloned());
                confidence += all_p.clone().fold(0.0, f64::max);
                assert!((all_p.sum::<f64>() - 1.0).abs() < 1e-9);
                correct += (top == truth) as usize as f64;
                if sim.responded[i] {
                    responders += 1;
                    named += (top == truth) as usize;
                } else if truth != 0 {
                    failed += 1;
                    called_control += (top == 0) as usize;
                }
            }
            let n = rows.len() as f64;
            let (acc, ctrl) = (named as f64 / responders as f64, called_control as f64 / failed as f64);
            eprintln!(
                "{prior:?}: responders top-1 {acc:.3} ({responders}); failed guides called control {ctrl:.3} ({failed}); \
                 mean top-1 probability {:.4} vs accuracy {:.4}",
                confidence / n,
                correct / n
            );
            // Design prior, measured 0.762 and 0.866 on 300 random genes (72 % near-silent): the rest
            // are genuinely ambiguous (weak singles whose profile is close to control's), as
            // calibration shows. Over all 5,566 answers fewer responders are named.
            assert!(acc > floor, "{prior:?}: responders top-1 {acc}");
            assert!(ctrl > 0.8, "{prior:?}: failed guides called control {ctrl}");
            // The exact posterior is calibrated: its mean top-1 probability is the expected accuracy
            // (3 binomial SEs over 2,000 cells ≈ 0.03).
            assert!((confidence / n - correct / n).abs() < 0.03, "{prior:?}");
        }
        // Control and singles are the same in both variants; design doubles differ.
        let a = oracle.slot_log_likelihood(&lik, 7, Variant::Truth);
        let b = oracle.slot_log_likelihood(&lik, 7, Variant::Additive);
        let n = cands.len();
        assert!(a[..=n].iter().zip(&b[..=n]).all(|(x, y)| x == y));
        assert!(a[n + 1..].iter().zip(&b[n + 1..]).any(|(x, y)| x != y));
    }

    #[test]
    fn screened_pairs_match_full_fits() {
        let w = world();
        let config = SimConfig { seed: 11, cells: 900, genes: 200, cell_seed: Some(5), ..Default::default() };
        let sim = simulate_in(&w, &config, |_, _| {}).unwrap();
        let d = &sim.data;
        let cands = candidates(&w);
        let oracle = Oracle::new(&w, &d.genes, d.gene_ids.as_deref(), &cands);
        let (counts, design) = oracle.answer_counts();
        assert_eq!((counts, design), ([1, 105, 105 * 104 / 2], 131));
        let rows: Vec<usize> = (0..d.cells.len()).step_by(15).collect();
        let cols: Vec<usize> = (0..d.genes.len()).collect();
        let screened = oracle.likelihoods(&d.matrix, &rows, &cols).unwrap();
        let full = oracle.likelihoods_refining(&d.matrix, &rows, &cols, usize::MAX).unwrap();
        let prior = oracle.log_prior(Prior::Answers, 0.1);
        let mut worst = 0.0f64;
        for i in 0..rows.len() {
            for variant in [Variant::Truth, Variant::Additive] {
                let (s, f) = (
                    oracle.posterior(&screened, &[i], variant, &prior),
                    oracle.posterior(&full, &[i], variant, &prior),
                );
                assert_eq!(argmax(&s), argmax(&f), "cell {i}");
                let diff =
                    s.singles.iter().zip(&f.singles).chain(s.pairs.iter().zip(&f.pairs)).map(|(a, b)| (a - b).abs());
                worst = worst.max(diff.fold((s.control - f.control).abs(), f64::max));
            }
        }
        eprintln!("largest probability difference, screened vs full: {worst:.2e}");
        assert!(worst < 0.01, "{worst}");
    }

    #[test]
    fn unknown_genes_and_bad_rows_are_errors() {
        let w = world();
        let oracle = Oracle::new(&w, &["NOT_A_GENE".to_string(), "KLF1".to_string()], None, &candidates(&w));
        let m = CsrMatrix::new(2);
        assert!(matches!(oracle.likelihoods(&m, &[], &[0]), Err(OracleError::UnknownGene(_))));
        assert!(matches!(oracle.likelihoods(&m, &[], &[5]), Err(OracleError::Column(5, 2))));
        assert!(matches!(oracle.likelihoods(&m, &[0], &[1]), Err(OracleError::Row(0, 0))));
    }
}
