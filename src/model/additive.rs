//! The additive head: what the training cells say about each candidate's whole profile, next to the
//! network. Each candidate's training single gives every panel gene a fold over control; a pair's
//! expected expression is control · (1 + Δ_A + Δ_B) (Δ = fold − 1: the additive rule of Norman et
//! al.'s genetic-interaction model, with no interaction), and a cell's evidence for an answer is
//! the quasi-Poisson log likelihood ratio of its normalised expression (CP10k) over control's,
//! with each gene's dispersion among the control cells. The evidence multiplies the network's
//! posterior (`SetScores::with_evidence`): the network brings what carries over (a target's own
//! rise, learned patterns), the head the screen's measured single profiles, which the network
//! alone was found to use poorly on unseen pairs (bench rows `network-only`, `additive-head-only`).
//!
//! Levels are measured against the file's reference like the network's inputs: the expected count
//! of gene j is scaled by how the file's centre of j compares with the training cells'.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::cpu_math::kernels::GroupGenes;
use crate::reference::Reference;

/// Folds and dispersions are floored here so that no gene's evidence is unbounded.
const MIN_LEVEL: f64 = 1e-3;
const FOLD_RANGE: (f64, f64) = (0.05, 200.0);
const CONTROL_PSEUDO_CELLS: f64 = 10.0;
const DISPERSION_PSEUDO_CELLS: f64 = 50.0;
/// A fold's variance is capped here (a gene nearly absent from control has no usable fold), and a
/// group mean's variance floored (CP10k²).
const MAX_FOLD_VARIANCE: f64 = 100.0;
const MIN_VARIANCE: f64 = 1e-9;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdditiveHead {
    /// Per panel gene: mean CP10k of the training control cells, and var / mean over them (blended
    /// with the figure pooled within training conditions when control cells are few).
    pub control: Vec<f32>,
    pub dispersion: Vec<f32>,
    /// Per candidate: each panel gene's fold in its training single; for a candidate without one
    /// whose own gene is in the panel, the typical own-gene rise alone (`with_own_rise`); None:
    /// neither (the head then has no evidence for or against that candidate).
    pub folds: Vec<Option<Vec<f32>>>,
    /// Training cells behind each candidate's folds (0: none).
    pub cells: Vec<usize>,
    /// Per candidate with folds: each fold's sampling variance (its single's cells' spread over
    /// their number, and control's), what a group's likelihood needs (`group_evidence`). Empty
    /// (older cards): none recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fold_variance: Vec<Option<Vec<f32>>>,
    /// How each single's means were shrunk toward control's (None: a card from before it was
    /// recorded; such cards name only a `pseudo_cells` count, which is not read).
    #[serde(default)]
    pub shrinkage: Option<Shrinkage>,
    /// Multiplies the evidence: fitted on held-out training conditions (`train`), since a
    /// quasi-likelihood over correlated genes is overconfident.
    #[serde(default = "unit_weight")]
    pub weight: f32,
    /// ln(fold)/dispersion per answer (singles, then pairs in `pair_index` order) × panel gene, built
    /// on first use: a cell's evidence is then one dot product per answer.
    #[serde(skip)]
    log_folds: OnceLock<Vec<f32>>,
}

/// What the head needs of one file besides each cell: the expected rise of each answer's
/// measured genes over control, at the file's levels (singles, then pairs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadTerms {
    expected: Vec<f64>,
    /// Per panel gene: the file's level over the training cells' (`AdditiveHead::scale`), and
    /// whether the file measures it.
    scale: Vec<f64>,
    measured: Vec<bool>,
}

/// A cell's evidence: log likelihood ratio over control of each single and each pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    pub singles: Vec<f32>,
    pub pairs: Vec<f32>,
}

/// How each single's measured means are shrunk toward control's before they compose answers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Shrinkage {
    /// By this many control-like cells, the same for every gene.
    PseudoCells(f64),
    /// Shared response programs read from every single that shows them, then the rest gene by
    /// gene, by how far each change stands out of its noise among every candidate's
    /// (`shrinkage::programs_and_own`): most singles leave most genes alone.
    Programs,
}

impl Shrinkage {
    pub fn describe(&self) -> String {
        match self {
            Shrinkage::PseudoCells(k) => format!("{k} pseudo-cells"),
            Shrinkage::Programs => "shared programs, then gene by gene".into(),
        }
    }
}

fn unit_weight() -> f32 {
    1.0
}

/// Per answer (candidate indices; empty: control): cells, and Σy, Σy² per panel gene on the CP10k
/// scale (y = expm1 of the log1p input). What `AdditiveHead::from_sums` needs, and what a streamed
/// file adds up block by block without holding its cells.
#[derive(Clone, Debug)]
pub struct ConditionSums {
    g: usize,
    groups: std::collections::BTreeMap<Vec<usize>, GroupSum>,
}

#[derive(Clone, Debug)]
struct GroupSum {
    cells: usize,
    sum: Vec<f64>,
    squares: Vec<f64>,
}

impl GroupSum {
    fn new(g: usize) -> GroupSum {
        GroupSum { cells: 0, sum: vec![0.0; g], squares: vec![0.0; g] }
    }

    fn add(&mut self, other: &GroupSum) {
        self.cells += other.cells;
        self.sum.iter_mut().zip(&other.sum).for_each(|(a, b)| *a += b);
        self.squares.iter_mut().zip(&other.squares).for_each(|(a, b)| *a += b);
    }
}

impl ConditionSums {
    pub fn new(g: usize) -> ConditionSums {
        ConditionSums { g, groups: Default::default() }
    }

    /// Cells summed for one answer.
    pub fn cells_of(&self, answer: &[usize]) -> usize {
        self.groups.get(answer).map_or(0, |s| s.cells)
    }

    /// Adds rows of log1p CP10k values (row-major over `g` panel genes) with their answers.
    pub fn add_rows(&mut self, x: &[f32], targets: &[Vec<usize>]) {
        x.chunks_exact(self.g.max(1)).zip(targets).for_each(|(row, t)| self.add_row(row, t));
    }

    /// Adds one row with its answer.
    pub fn add_row(&mut self, row: &[f32], answer: &[usize]) {
        if !self.groups.contains_key(answer) {
            self.groups.insert(answer.to_vec(), GroupSum::new(self.g));
        }
        let Some(s) = self.groups.get_mut(answer) else { return };
        s.cells += 1;
        for (j, &v) in row.iter().enumerate() {
            let y = (v as f64).exp_m1();
            s.sum[j] += y;
            s.squares[j] += y * y;
        }
    }
}

impl AdditiveHead {
    /// Fits the head on training rows (`x`: log1p CP10k, row-major over `g` panel genes) with
    /// their targets (candidate indices; empty: control), each single's mean shrunk toward
    /// control's (`shrinkage`). None without control cells.
    pub fn fit(
        x: &[f32],
        g: usize,
        targets: &[Vec<usize>],
        n_candidates: usize,
        shrinkage: Shrinkage,
    ) -> Option<AdditiveHead> {
        let mut sums = ConditionSums::new(g);
        sums.add_rows(x, targets);
        AdditiveHead::from_sums(&sums, n_candidates, shrinkage)
    }

    /// `fit` from the training rows' per-condition sums (what a streamed file accumulates).
    pub fn from_sums(sums: &ConditionSums, n_candidates: usize, shrinkage: Shrinkage) -> Option<AdditiveHead> {
        let g = sums.g;
        let mean_of = |s: &GroupSum| -> Vec<f64> { s.sum.iter().map(|v| v / s.cells.max(1) as f64).collect() };
        // Control's mean with `CONTROL_PSEUDO_CELLS` cells at the average training cell's level: a
        // gene never seen in the control cells is rare there, not absent (else one count of it
        // would be unbounded evidence for any candidate that raises it).
        let control_sum = sums.groups.get(&[][..])?;
        let mut all = GroupSum::new(g);
        sums.groups.values().for_each(|s| all.add(s));
        let average = mean_of(&all);
        let n0 = control_sum.cells as f64;
        let control_mean = mean_of(control_sum);
        let control: Vec<f64> = control_mean
            .iter()
            .zip(&average)
            .map(|(c, a)| (n0 * c + CONTROL_PSEUDO_CELLS * a) / (n0 + CONTROL_PSEUDO_CELLS))
            .collect();
        let (mut var, mut level) = (vec![0f64; g], vec![0f64; g]);
        for s in sums.groups.values() {
            let m = mean_of(s);
            for j in 0..g {
                // Σ (y − m)² over the group's cells, from its sums.
                var[j] += (s.squares[j] - s.cells as f64 * m[j] * m[j]).max(0.0);
                level[j] += s.sum[j];
            }
        }
        // Each gene's noise, var / mean, from the control cells. Pooled over every condition it
        // also counted the spread between a perturbed condition's responders and its failed-guide
        // cells, which muted the genes perturbations move most (at Norman scale the pooled figure
        // was 1.6 times control's on average). Blended with the pooled one by
        // `DISPERSION_PSEUDO_CELLS` for screens with few control cells.
        let control_var: Vec<f64> =
            (0..g).map(|j| (control_sum.squares[j] / n0 - control_mean[j].powi(2)).max(0.0)).collect();
        let dispersion: Vec<f64> = (0..g)
            .map(|j| {
                let own = control_var[j] / control[j].max(MIN_LEVEL);
                let pooled = var[j] / level[j].max(MIN_LEVEL);
                let k = DISPERSION_PSEUDO_CELLS;
                ((n0 * own + k * pooled) / (n0 + k)).max(MIN_LEVEL)
            })
            .collect();
        // Each single's mean per gene, shrunk toward control's (`Shrinkage`).
        let singles: Vec<(usize, &GroupSum)> = sums
            .groups
            .iter()
            .filter_map(|(t, s)| match t.as_slice() {
                [a] if *a < n_candidates => Some((*a, s)),
                _ => None,
            })
            .collect();
        let mut means: Vec<Vec<f64>> = singles.iter().map(|(_, s)| mean_of(s)).collect();
        // Each single's change against the noise of its mean: its cells' spread (at least
        // control's) over its cells, plus control's mean's own.
        let v: Vec<f64> = singles
            .iter()
            .zip(&means)
            .flat_map(|((_, s), m)| {
                let (dispersion, control, control_var) = (&dispersion, &control, &control_var);
                let nn = s.cells.max(1) as f64;
                (0..g).map(move |j| {
                    let spread = (s.squares[j] / nn - m[j] * m[j]).max(dispersion[j] * control[j]);
                    spread / nn + control_var[j] / n0.max(1.0)
                })
            })
            .collect();
        match shrinkage {
            // A fold from few counts is mostly noise, and noise summed over many genes reads as
            // evidence: every gene of a single is pulled toward control by `k` control-like cells.
            Shrinkage::PseudoCells(k) => {
                for ((_, s), m) in singles.iter().zip(&mut means) {
                    let nn = s.cells as f64;
                    m.iter_mut().zip(&control).for_each(|(m, c)| *m = (nn * *m + k * c) / (nn + k));
                }
            }
            Shrinkage::Programs => {
                let d: Vec<f64> = means.iter().flat_map(|m| m.iter().zip(&control).map(|(m, c)| m - c)).collect();
                let (shrunk, _) = super::shrinkage::programs_and_own(&d, &v, singles.len(), g);
                for (m, change) in means.iter_mut().zip(shrunk.chunks_exact(g.max(1))) {
                    m.iter_mut().zip(change).zip(&control).for_each(|((m, x), c)| *m = c + x);
                }
            }
        }
        let mut folds = vec![None; n_candidates];
        let mut fold_variance = vec![None; n_candidates];
        let mut cells = vec![0; n_candidates];
        for (((a, s), m), v) in singles.iter().zip(&means).zip(v.chunks_exact(g.max(1))) {
            let fold = (0..g)
                .map(|j| ((m[j].max(MIN_LEVEL)) / control[j].max(MIN_LEVEL)).clamp(FOLD_RANGE.0, FOLD_RANGE.1) as f32)
                .collect();
            let variance = (0..g).map(|j| (v[j] / control[j].max(MIN_LEVEL).powi(2)).min(MAX_FOLD_VARIANCE) as f32);
            folds[*a] = Some(fold);
            fold_variance[*a] = Some(variance.collect());
            cells[*a] = s.cells;
        }
        let dispersion = dispersion.iter().map(|&v| v as f32).collect();
        let control = control.iter().map(|&v| v as f32).collect();
        Some(AdditiveHead {
            control,
            dispersion,
            folds,
            cells,
            fold_variance,
            shrinkage: Some(shrinkage),
            weight: 1.0,
            log_folds: OnceLock::new(),
        })
    }

    /// Gives each candidate without a training single (a gene the screen never showed alone) the
    /// one thing CRISPRa does to any target: its own gene rises, by the median rise of the targets
    /// that were seen (every other gene unchanged). `own[c]`: candidate c's own gene in the panel.
    /// Without it the head had nothing to say about new genes, and on targets never seen in
    /// training the model fell below the plain up-regulation heuristic.
    pub fn with_own_rise(mut self, own: &[Option<usize>]) -> AdditiveHead {
        let mut rises: Vec<f32> = self.folds.iter().zip(own).filter_map(|(f, o)| Some(f.as_ref()?[(*o)?])).collect();
        rises.sort_by(|a, b| a.total_cmp(b));
        let Some(&typical) = rises.get(rises.len() / 2) else { return self };
        // How far a new target's rise may stand from the typical one: the rises' spread.
        let spread = rises.iter().map(|r| ((r - typical) as f64).powi(2)).sum::<f64>() / rises.len() as f64;
        let g = self.control.len();
        let with_variance = self.fold_variance.len() == self.folds.len();
        for (a, o) in own.iter().enumerate() {
            if let (None, Some(j)) = (&self.folds[a], *o) {
                let mut f = vec![1.0; g];
                f[j] = typical;
                self.folds[a] = Some(f);
                if with_variance {
                    let mut v = vec![0.0; g];
                    v[j] = spread.min(MAX_FOLD_VARIANCE) as f32;
                    self.fold_variance[a] = Some(v);
                }
            }
        }
        self.log_folds = OnceLock::new();
        self
    }

    /// Per-gene factor from the training cells' level to the file's: the ratio of the file's
    /// reference centre to the training reference centre, on the CP10k scale.
    pub fn scale(training: &Reference, file: &Reference) -> Vec<f64> {
        training
            .mean
            .iter()
            .zip(&file.mean)
            .map(|(&t, &f)| ((f as f64).exp_m1().max(MIN_LEVEL) / (t as f64).exp_m1().max(MIN_LEVEL)).clamp(0.1, 10.0))
            .collect()
    }

    fn candidates(&self) -> usize {
        self.folds.len()
    }

    /// Each answer's fold per gene (singles, then pairs while `sets::pair_count` has any), floored: a pair's is 1 + Δ_A + Δ_B; a
    /// candidate without folds changes nothing.
    fn answer_folds(&self) -> impl Iterator<Item = Vec<f64>> + '_ {
        let g = self.control.len();
        let n = self.candidates();
        let fold = move |a: usize, j: usize| self.folds[a].as_ref().map_or(1.0, |f| f[j] as f64);
        let singles = (0..n).map(move |a| (0..g).map(|j| fold(a, j)).collect());
        let pairs = (0..n).filter(move |_| super::sets::pair_count(n) > 0).flat_map(move |a| {
            (a + 1..n).map(move |b| (0..g).map(|j| (fold(a, j) + fold(b, j) - 1.0).max(FOLD_RANGE.0)).collect())
        });
        singles.chain(pairs)
    }

    fn log_folds(&self) -> &[f32] {
        self.log_folds.get_or_init(|| {
            self.answer_folds()
                .flat_map(|f| f.into_iter().zip(&self.dispersion).map(|(f, &d)| (f.ln() / d as f64) as f32))
                .collect()
        })
    }

    /// The head's terms for a file: `scale` from `AdditiveHead::scale`, genes not `measured` left out.
    pub fn terms(&self, scale: &[f64], measured: &[bool]) -> HeadTerms {
        let expected = self
            .answer_folds()
            .map(|f| {
                let rise = (0..f.len()).filter(|&j| measured[j]);
                rise.map(|j| scale[j] * self.control[j] as f64 * (f[j] - 1.0) / self.dispersion[j] as f64).sum()
            })
            .collect();
        HeadTerms { expected, scale: scale.to_vec(), measured: measured.to_vec() }
    }

    /// Whether the head can speak for a group (`group_evidence`): it records its folds' variance.
    pub fn pools_groups(&self) -> bool {
        self.fold_variance.len() == self.folds.len()
    }

    /// A group's log likelihood ratio over control of every single and pair (singles, then pairs
    /// in `pair_index` order), from its `cells` cells' summed levels (`level_sum`, CP10k per panel
    /// gene): the mean of gene j is Gaussian around control·(1 + (1 − f)Δ_S), with the cells'
    /// quasi-Poisson noise and the failed guides' spread over the cell count, plus the error of
    /// the measured folds (once, not once per cell) and, for a pair, `pair_error`² (Δ_A² + Δ_B²)
    /// for its genetic interaction. A candidate without folds gets 0.
    pub fn group_evidence(
        &self,
        terms: &HeadTerms,
        level_sum: &[f64],
        cells: usize,
        guide_failure: f64,
        pair_error: f64,
    ) -> Vec<f64> {
        let c = self.candidates();
        let genes: Vec<usize> = (0..self.control.len().min(level_sum.len()))
            .filter(|&j| terms.measured.get(j) == Some(&true) && terms.scale.get(j).is_some())
            .collect();
        let n = cells.max(1) as f64;
        let gaussian = GroupGenes {
            base: genes.iter().map(|&j| (terms.scale[j] * self.control[j] as f64).max(MIN_LEVEL)).collect(),
            mean: genes.iter().map(|&j| level_sum[j] / n).collect(),
            noise: genes.iter().map(|&j| self.dispersion[j] as f64).collect(),
            cells: n,
            failure: guide_failure.clamp(0.0, 0.99),
            pair_error2: pair_error * pair_error,
            min_delta: FOLD_RANGE.0 - 1.0,
            min_level: MIN_LEVEL,
            min_variance: MIN_VARIANCE,
        };
        let zeros = vec![0.0; genes.len()];
        let none = (zeros.as_slice(), zeros.as_slice());
        let control = gaussian.log_likelihood(none, none);
        let column = |a: usize| -> Option<(Vec<f64>, Vec<f64>)> {
            let (fold, var) = (self.folds[a].as_ref()?, self.fold_variance.get(a)?.as_ref()?);
            Some((
                genes.iter().map(|&j| fold[j] as f64 - 1.0).collect(),
                genes.iter().map(|&j| var[j] as f64).collect(),
            ))
        };
        let columns: Vec<Option<(Vec<f64>, Vec<f64>)>> = (0..c).map(column).collect();
        let folds = |a: usize| columns[a].as_ref().map(|(d, v)| (d.as_slice(), v.as_slice()));
        // A single is the pair of its candidate and nothing (whose folds are zeros), but without
        // the pair's interaction spread; a candidate without folds adds nothing.
        let alone = GroupGenes { pair_error2: 0.0, ..gaussian.clone() };
        let single = |a: usize| folds(a).map_or(0.0, |fa| alone.log_likelihood(fa, none) - control);
        let mut out: Vec<f64> = (0..c).map(single).collect();
        for a in (0..c).filter(|_| super::sets::pair_count(c) > 0) {
            for b in a + 1..c {
                let llr = match (folds(a), folds(b)) {
                    (Some(fa), Some(fb)) => gaussian.log_likelihood(fa, fb),
                    (Some(f), None) | (None, Some(f)) => alone.log_likelihood(f, none),
                    (None, None) => control,
                };
                out.push(llr - control);
            }
        }
        out
    }

    /// Log likelihood ratio over control of every single and pair for one cell (`row`: log1p
    /// CP10k over the panel; an unmeasured gene's 0 adds nothing), times the head's weight.
    pub fn evidence(&self, row: &[f32], terms: &HeadTerms) -> Evidence {
        self.evidence_rows(row, terms).remove(0)
    }

    /// The same for every row of `x` (row-major over the panel): one matrix product of the rows'
    /// levels with every answer's log folds. Cell by cell, these dot products cost more than the
    /// network itself (measured: 61 % of `predict`'s time on 10,000 cells).
    pub fn evidence_rows(&self, x: &[f32], terms: &HeadTerms) -> Vec<Evidence> {
        let g = self.control.len();
        let answers = terms.expected.len();
        let rows = x.len() / g;
        let y: Vec<f32> = x[..rows * g].iter().map(|&v| v.exp_m1().max(0.0)).collect();
        let dots = super::cpu_math::matmul_transposed(&y, self.log_folds(), rows, answers, g);
        let w = self.weight as f64;
        let n = self.candidates();
        dots.chunks(answers.max(1))
            .take(rows)
            .map(|s| {
                let mut all = s.iter().zip(&terms.expected).map(|(&s, &expected)| ((s as f64 - expected) * w) as f32);
                let singles = all.by_ref().take(n).collect();
                Evidence { singles, pairs: all.collect() }
            })
            .collect()
    }

    /// The head's check on a card: its sizes agree with the panel and candidates.
    pub fn check(&self, genes: usize, candidates: usize) -> Result<(), String> {
        let ok = self.control.len() == genes
            && self.dispersion.len() == genes
            && self.folds.len() == candidates
            && self.cells.len() == candidates
            && self.folds.iter().flatten().all(|f| f.len() == genes)
            && (self.fold_variance.is_empty() || self.fold_variance.len() == candidates)
            && self.fold_variance.iter().flatten().all(|v| v.len() == genes);
        // Control levels may be 0; dispersions and folds are divided by and taken logs of.
        let levels = self.control.iter().chain([&self.weight]).all(|v| v.is_finite() && *v >= 0.0);
        let positive =
            self.dispersion.iter().chain(self.folds.iter().flatten().flatten()).all(|v| v.is_finite() && *v > 0.0)
                && self.fold_variance.iter().flatten().flatten().all(|v| v.is_finite() && *v >= 0.0);
        match (ok, levels && positive) {
            (false, _) => {
                Err(format!("additive head sizes do not match the panel ({genes} genes) and candidates ({candidates})"))
            }
            (_, false) => {
                Err("additive head holds a non-finite value, a negative level or variance, or a dispersion or fold of 0 or less"
                    .into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three genes, two candidates: A raises gene 0 tenfold, B halves gene 1; gene 2 is noise.
    /// Ten control cells for each cell of a single, as in a screen.
    fn data() -> (Vec<f32>, Vec<Vec<usize>>) {
        let mut x = Vec::new();
        let mut targets = Vec::new();
        for k in 0..60 {
            let wobble = 1.0 + 0.1 * ((k % 5) as f64 - 2.0);
            let mut rows = vec![(vec![], [2.0, 8.0, 5.0]); 10];
            rows.extend([(vec![0], [20.0, 8.0, 5.0]), (vec![1], [2.0, 4.0, 5.0])]);
            for (t, level) in rows {
                x.extend(level.iter().map(|l: &f64| ((l * wobble).ln_1p()) as f32));
                targets.push(t);
            }
        }
        (x, targets)
    }

    fn head() -> AdditiveHead {
        let (x, targets) = data();
        AdditiveHead::fit(&x, 3, &targets, 2, Shrinkage::PseudoCells(0.0)).unwrap()
    }

    #[test]
    fn folds_are_recovered_and_evidence_points_at_the_cause() {
        let h = head();
        // Control's level carries 10 pseudo-cells at the average cell's: gene 0 (2 in 600 control
        // cells, 20 in A's 60, 2 in B's 60) sits at (600·2 + 10·3.5) / 610.
        let c0 = (600.0 * 2.0 + 10.0 * 3.5) / 610.0;
        assert!((h.control[0] as f64 - c0).abs() < 1e-3, "{:?}", h.control);
        let fa = h.folds[0].as_ref().unwrap();
        assert!((fa[0] as f64 - 20.0 / c0).abs() < 0.01 && (fa[2] - 1.0).abs() < 1e-4, "{fa:?}");
        let fb = h.folds[1].as_ref().unwrap();
        assert!(fb[1] < 0.55 && fb[1] > 0.45, "{fb:?}");
        assert_eq!(h.cells, vec![60, 60]);
        let all = [true; 3];
        let one = [1.0; 3];
        let cell = |v: [f64; 3]| v.map(|l| l.ln_1p() as f32);
        // A cell like A's single: evidence for A over control, against B.
        let terms = h.terms(&one, &all);
        let e = h.evidence(&cell([20.0, 8.0, 5.0]), &terms);
        assert!(e.singles[0] > 5.0 && e.singles[1] < 0.0 && e.pairs[0] < e.singles[0], "{e:?}");
        // Like the pair A+B: the pair beats both singles.
        let e = h.evidence(&cell([20.0, 4.0, 5.0]), &terms);
        assert!(e.pairs[0] > e.singles[0] && e.pairs[0] > e.singles[1] && e.singles[1] > 0.0, "{e:?}");
        // Gene 0 absent (its value 0, its term left out): no evidence about A left.
        let e = h.evidence(&cell([0.0, 8.0, 5.0]), &h.terms(&one, &[false, true, true]));
        assert!(e.singles[0].abs() < 1e-3, "{e:?}");
        // A file whose gene 0 sits 10x higher everywhere: 20 is its control level, not A.
        let e = h.evidence(&cell([20.0, 8.0, 5.0]), &h.terms(&[10.0, 1.0, 1.0], &all));
        assert!(e.singles[0] < 0.0, "{e:?}");
        assert!(h.check(3, 2).is_ok() && h.check(4, 2).is_err());
        let mut broken = h.clone();
        broken.dispersion[1] = 0.0;
        assert!(broken.check(3, 2).unwrap_err().contains("dispersion"));
        // Shrinkage: 60 pseudo-cells (as many as A's own) put A's mean halfway to control's.
        let (x, targets) = data();
        let shrunk = AdditiveHead::fit(&x, 3, &targets, 2, Shrinkage::PseudoCells(60.0)).unwrap();
        let halfway = (20.0 + c0) / 2.0 / c0;
        assert!((shrunk.folds[0].as_ref().unwrap()[0] as f64 - halfway).abs() < 0.01);
    }

    /// A group is judged by its mean: a group of A's cells is A, of the pair's cells the pair, of
    /// control's cells control. Each gene's mean is Gaussian with the cells' noise over their number
    /// plus the fold's own error, counted once: however many cells, a miss of two sds of A's
    /// measured fold costs A about 2 nats, where the cells' summed evidence grows with each cell.
    #[test]
    fn a_group_is_judged_by_its_mean_with_each_fold_error_counted_once() {
        let h = head();
        assert!(h.pools_groups() && h.check(3, 2).is_ok());
        let terms = h.terms(&[1.0; 3], &[true; 3]);
        let sum = |level: [f64; 3], n: usize| level.iter().map(|l| l * n as f64).collect::<Vec<_>>();
        let best = |e: &[f64]| (0..e.len()).max_by(|&a, &b| e[a].total_cmp(&e[b])).unwrap();
        // Answers: A, B, then the pair A+B.
        let e = h.group_evidence(&terms, &sum([20.0, 8.0, 5.0], 50), 50, 0.0, 0.0);
        assert!(best(&e) == 0 && e[0] > 10.0, "{e:?}");
        let e = h.group_evidence(&terms, &sum([20.0, 4.0, 5.0], 50), 50, 0.0, 0.0);
        assert!(best(&e) == 2 && e[2] > 10.0, "{e:?}");
        let c = h.control.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let e = h.group_evidence(&terms, &sum([c[0], c[1], c[2]], 50), 50, 0.0, 0.0);
        assert!(e.iter().all(|&v| v < 0.0), "{e:?}");
        // By hand on gene 0 alone (genes 1 and 2 unmeasured): A against control.
        let only0 = h.terms(&[1.0; 3], &[true, false, false]);
        let (fold, var) = (h.folds[0].as_ref().unwrap()[0] as f64, h.fold_variance[0].as_ref().unwrap()[0] as f64);
        let d = h.dispersion[0] as f64;
        let log_normal = |y: f64, mu: f64, v: f64| -0.5 * ((y - mu).powi(2) / v + v.ln());
        let miss = c[0] * (fold + 2.0 * var.sqrt());
        for n in [10usize, 1000, 1_000_000] {
            let nn = n as f64;
            let e = h.group_evidence(&only0, &sum([miss, 8.0, 5.0], n), n, 0.0, 0.0);
            let a = log_normal(miss, c[0] * fold, d * c[0] * fold / nn + c[0] * c[0] * var);
            let expected = a - log_normal(miss, c[0], d * c[0] / nn);
            assert!((e[0] - expected).abs() < 1e-6 * (1.0 + expected.abs()), "{n}: {} vs {expected}", e[0]);
            // Against A's own measured level, the miss costs about 2 nats at any group size.
            let at = h.group_evidence(&only0, &sum([c[0] * fold, 8.0, 5.0], n), n, 0.0, 0.0)[0];
            let control_gap = log_normal(c[0] * fold, c[0], d * c[0] / nn) - log_normal(miss, c[0], d * c[0] / nn);
            let cost = (at - e[0]) + control_gap;
            assert!(cost > 0.0 && cost < 2.0 + 1e-6, "{n}: {cost}");
        }
        // A pair error widens a pair's spread: a pair whose gene 1 fell less than additivity says
        // loses less.
        let partial = sum([20.0, 6.0, 5.0], 200);
        let strict = h.group_evidence(&terms, &partial, 200, 0.0, 0.0)[2];
        let loose = h.group_evidence(&terms, &partial, 200, 0.0, 0.5)[2];
        assert!(loose > strict, "{loose} vs {strict}");
        // An older card without fold variances cannot speak for groups.
        let mut old = h.clone();
        old.fold_variance.clear();
        assert!(!old.pools_groups() && old.check(3, 2).is_ok());
    }

    /// A candidate never seen alone gets the typical own-gene rise: a cell with its own gene up
    /// is evidence for it, a control-like cell against it; candidates with a single keep theirs.
    #[test]
    fn unseen_candidates_get_the_typical_own_gene_rise() {
        let (x, targets) = data();
        // Candidate 2 never appears; its own gene is gene 2. A's own gene is 0, B's is unmeasured.
        let h = AdditiveHead::fit(&x, 3, &targets, 3, Shrinkage::PseudoCells(0.0)).unwrap();
        assert!(h.folds[2].is_none());
        let h = h.with_own_rise(&[Some(0), None, Some(2)]);
        let f = h.folds[2].as_ref().unwrap();
        let rise_a = h.folds[0].as_ref().unwrap()[0];
        assert!((f[2] - rise_a).abs() < 1e-6 && f[0] == 1.0 && f[1] == 1.0, "{f:?}");
        let terms = h.terms(&[1.0; 3], &[true; 3]);
        let cell = |v: [f64; 3]| v.map(|l| l.ln_1p() as f32);
        let up = h.evidence(&cell([2.0, 8.0, 5.0 * rise_a as f64]), &terms);
        let flat = h.evidence(&cell([2.0, 8.0, 5.0]), &terms);
        assert!(up.singles[2] > 5.0 && flat.singles[2] < 0.0, "{up:?} {flat:?}");
        assert!(h.check(3, 3).is_ok());
    }

    /// The block product equals each answer's dot product with the cell, row by row.
    #[test]
    fn evidence_of_a_block_equals_cell_by_cell_sums() {
        let h = head();
        let terms = h.terms(&[1.0, 0.5, 2.0], &[true, true, false]);
        let rows: Vec<f32> = (0..7 * 3).map(|i| ((i * 37 % 11) as f32 * 0.4).ln_1p()).collect();
        let block = h.evidence_rows(&rows, &terms);
        assert_eq!(block.len(), 7);
        for (row, e) in rows.chunks(3).zip(&block) {
            let y: Vec<f64> = row.iter().map(|&v| (v as f64).exp_m1()).collect();
            let by_hand: Vec<f64> = h
                .answer_folds()
                .zip(&terms.expected)
                .map(|(f, ex)| (0..3).map(|j| f[j].ln() / h.dispersion[j] as f64 * y[j]).sum::<f64>() - ex)
                .collect();
            let got: Vec<f32> = e.singles.iter().chain(&e.pairs).copied().collect();
            assert_eq!(got.len(), by_hand.len());
            for (a, b) in got.iter().zip(&by_hand) {
                assert!((*a as f64 - b).abs() < 1e-3 * (1.0 + b.abs()), "{got:?} vs {by_hand:?}");
            }
        }
        assert!(h.evidence_rows(&[], &terms).is_empty());
    }

    /// A condition of responders and failed-guide cells is spread wide; a gene's noise is what it
    /// does among control cells (blended with the pooled figure by 50 pseudo-cells).
    #[test]
    fn dispersion_is_the_control_cells_not_the_perturbed_mixture() {
        let mut x = Vec::new();
        let mut targets = Vec::new();
        for i in 0..600 {
            x.push(((4 + 2 * (i % 2)) as f32).ln_1p());
            targets.push(vec![]);
        }
        for i in 0..300 {
            x.push((if i % 2 == 0 { 50f32 } else { 5.0 }).ln_1p());
            targets.push(vec![0]);
        }
        let h = AdditiveHead::fit(&x, 1, &targets, 1, Shrinkage::PseudoCells(0.0)).unwrap();
        // Control: mean 5, variance 1, over its level (5 with 10 pseudo-cells at the mean of all).
        let level = (600.0 * 5.0 + 10.0 * (3000.0 + 300.0 * 27.5) / 900.0) / 610.0;
        let own = 1.0 / level;
        let pooled = (600.0 + 300.0 * 22.5f64.powi(2)) / (3000.0 + 300.0 * 27.5);
        let expected = (600.0 * own + 50.0 * pooled) / 650.0;
        assert!((h.dispersion[0] as f64 - expected).abs() < 1e-3, "{} vs {expected}", h.dispersion[0]);
        assert!((h.dispersion[0] as f64) < pooled / 5.0);
    }

    /// Eight candidates, each raising its own gene fivefold; genes 8 and 9 only carry noise. Read
    /// as programs then gene by gene, the singles' noise on genes 8 and 9 falls toward no change
    /// while each own rise stays as measured.
    #[test]
    fn denoising_calms_unmoved_genes_and_keeps_the_rises() {
        let (g, n) = (10, 8);
        let noise = |k: usize| ((k.wrapping_mul(2654435761) >> 7) % 1000) as f64 / 1000.0 - 0.5;
        let (mut x, mut targets) = (Vec::new(), Vec::new());
        let mut k = 0;
        for answer in std::iter::repeat_n(None, 400).chain((0..n).flat_map(|a| std::iter::repeat_n(Some(a), 40))) {
            for j in 0..g {
                let rise = if answer == Some(j) { 5.0 } else { 1.0 };
                x.push(((4.0 * rise * (1.0 + noise(k))) as f32).ln_1p());
                k += 1;
            }
            targets.push(answer.map_or(vec![], |a| vec![a]));
        }
        let raw = AdditiveHead::fit(&x, g, &targets, n, Shrinkage::PseudoCells(0.0)).unwrap();
        let denoised = AdditiveHead::fit(&x, g, &targets, n, Shrinkage::Programs).unwrap();
        assert_eq!(denoised.shrinkage, Some(Shrinkage::Programs));
        let off = |h: &AdditiveHead| -> f64 {
            h.folds.iter().flatten().flat_map(|f| [f[8], f[9]]).map(|v| (v as f64 - 1.0).abs()).sum()
        };
        assert!(off(&denoised) < 0.3 * off(&raw), "{} vs {}", off(&denoised), off(&raw));
        for a in 0..n {
            let (r, d) = (raw.folds[a].as_ref().unwrap()[a], denoised.folds[a].as_ref().unwrap()[a]);
            assert!((d / r - 1.0).abs() < 0.05 && r > 4.0, "{a}: {d} vs {r}");
        }
    }

    #[test]
    fn no_control_cells_no_head() {
        let x = vec![0.5f32; 6];
        assert!(AdditiveHead::fit(&x, 3, &[vec![0], vec![1]], 2, Shrinkage::PseudoCells(0.0)).is_none());
    }
}
