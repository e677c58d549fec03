//! Baselines scored in the same run and on the same inputs as the model (z-scored panel expression):
//! target-gene up-regulation (no training), logistic regression (linear, same set likelihood),
//! nearest centroid of training conditions, additive-inverse retrieval (a pair's profile ≈
//! control + effect(A) + effect(B)) and prior-only. Each returns `SetScores` per input row.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use mamba_perturb::model::GenomeFeatures;
use mamba_perturb::model::sets::{SetScores, bound, pair_index};

use crate::training::SetModel;

/// What the baselines may learn from: the training cells only.
pub struct TrainView<'a> {
    pub g: usize,
    pub candidates: &'a [String],
    /// Panel column of each candidate's own gene, when the panel has it (not when masked).
    pub candidate_column: Vec<Option<usize>>,
    /// Training rows, z-scored, row-major.
    pub z: Vec<f32>,
    /// Training rows as normalised log1p values (what `z` is computed from).
    pub x: &'a [f32],
    pub targets: &'a [Vec<usize>],
}

/// Standardises rows with the model's reference mean/sd (the same scale the network sees).
pub fn zscore(x: &[f32], mean: &[f32], sd: &[f32]) -> Vec<f32> {
    let g = mean.len();
    x.iter().enumerate().map(|(k, &v)| ((v - mean[k % g]) / sd[k % g].max(0.05)).clamp(-5.0, 10.0)).collect()
}

fn mean_rows(z: &[f32], g: usize, rows: impl Iterator<Item = usize>) -> (Vec<f64>, usize) {
    let mut m = vec![0f64; g];
    let mut n = 0;
    for i in rows {
        for j in 0..g {
            m[j] += z[i * g + j] as f64;
        }
        n += 1;
    }
    m.iter_mut().for_each(|v| *v /= n.max(1) as f64);
    (m, n)
}

fn from_log_probs(control: f64, singles: Vec<f64>, pairs: Vec<f64>) -> SetScores {
    let m = singles.iter().chain(&pairs).cloned().fold(control, f64::max);
    let e = |v: f64| if v.is_finite() { (v - m).exp() } else { 0.0 };
    let total: f64 = e(control) + singles.iter().map(|&v| e(v)).sum::<f64>() + pairs.iter().map(|&v| e(v)).sum::<f64>();
    SetScores {
        control: e(control) / total,
        singles: singles.iter().map(|&v| e(v) / total).collect(),
        pairs: pairs.iter().map(|&v| e(v) / total).collect(),
    }
}

/// Each candidate's evidence is its own gene's z-score against training controls; the number of
/// genes called is the number above 3 (capped at 2). Without the gene in the panel: no evidence.
pub fn upregulation(view: &TrainView, z: &[f32]) -> Vec<SetScores> {
    let g = view.g;
    let (ctrl, _) = mean_rows(&view.z, g, (0..view.targets.len()).filter(|&i| view.targets[i].is_empty()));
    z.chunks(g)
        .map(|row| {
            let ev: Vec<f32> = view
                .candidate_column
                .iter()
                .map(|c| c.map(|j| (row[j] as f64 - ctrl[j]) as f32).unwrap_or(-LOW).clamp(-12.0, 12.0))
                .collect();
            let called = ev.iter().filter(|&&v| v > 3.0).count().min(2);
            let mut count = [0f32; 3];
            count[called] = 5.0;
            SetScores::from_logits(&ev, &count)
        })
        .collect()
}
const LOW: f32 = 12.0;

/// Gaussian log-likelihood (unit variance in z-space) to each training condition's centroid;
/// answers never seen in training get probability 0.
pub fn nearest_centroid(view: &TrainView, z: &[f32]) -> Vec<SetScores> {
    let g = view.g;
    let n = view.candidates.len();
    let mut conds: Vec<Vec<usize>> = view.targets.to_vec();
    conds.sort();
    conds.dedup();
    let centroids: Vec<(Vec<usize>, Vec<f64>)> = conds
        .into_iter()
        .map(|t| {
            let (m, _) = mean_rows(&view.z, g, (0..view.targets.len()).filter(|&i| view.targets[i] == t));
            (t, m)
        })
        .collect();
    z.chunks(g)
        .map(|row| {
            let mut control = f64::NEG_INFINITY;
            let mut singles = vec![f64::NEG_INFINITY; n];
            let mut pairs = vec![f64::NEG_INFINITY; n * (n - 1) / 2];
            for (t, m) in &centroids {
                let ll = -0.5 * row.iter().zip(m).map(|(&x, &c)| (x as f64 - c).powi(2)).sum::<f64>();
                match t.as_slice() {
                    [] => control = ll,
                    [a] => singles[*a] = ll,
                    [a, b] => pairs[pair_index(*a.min(b), *a.max(b), n)] = ll,
                    _ => {}
                }
            }
            from_log_probs(control, singles, pairs)
        })
        .collect()
}

/// Every answer's expected profile is control + the sum of its genes' single effects (from
/// training singles); cells go to the nearest under a diagonal Gaussian with pooled within-
/// condition variance. Genes without a training single cannot be proposed.
pub fn additive_inverse(view: &TrainView, z: &[f32]) -> Vec<SetScores> {
    additive_gaussian(view, z, 1.0)
}

/// `additive_inverse` under a Gaussian whose covariance is the pooled within-condition covariance,
/// shrunk toward its diagonal by `shrink` (1: diagonal only): correlated noise (cell state) is
/// then not counted as evidence gene by gene.
pub fn additive_gaussian(view: &TrainView, z: &[f32], shrink: f64) -> Vec<SetScores> {
    let g = view.g;
    let n = view.candidates.len();
    let (ctrl, _) = mean_rows(&view.z, g, (0..view.targets.len()).filter(|&i| view.targets[i].is_empty()));
    // Pooled within-condition covariance.
    let mut conds: Vec<Vec<usize>> = view.targets.to_vec();
    conds.sort();
    conds.dedup();
    let mut cov = vec![0f64; g * g];
    let mut dof = 0usize;
    let mut effects: Vec<Option<Vec<f64>>> = vec![None; n];
    for t in &conds {
        let rows: Vec<usize> = (0..view.targets.len()).filter(|&i| &view.targets[i] == t).collect();
        let (m, k) = mean_rows(&view.z, g, rows.iter().cloned());
        for &i in &rows {
            let d: Vec<f64> = (0..g).map(|j| view.z[i * g + j] as f64 - m[j]).collect();
            for a in 0..g {
                if shrink >= 1.0 {
                    cov[a * g + a] += d[a] * d[a];
                } else {
                    for b in 0..g {
                        cov[a * g + b] += d[a] * d[b];
                    }
                }
            }
        }
        dof += k.saturating_sub(1);
        if let [a] = t.as_slice() {
            effects[*a] = Some(m.iter().zip(&ctrl).map(|(a, c)| a - c).collect());
        }
    }
    for a in 0..g {
        for b in 0..g {
            let v = cov[a * g + b] / dof.max(1) as f64;
            cov[a * g + b] = if a == b { v.max(0.05) } else { (1.0 - shrink) * v };
        }
    }
    let precision = inverse_spd(&cov, g);
    let times = |v: &[f64]| -> Vec<f64> { (0..g).map(|a| (0..g).map(|b| precision[a * g + b] * v[b]).sum()).collect() };
    // Λ·effect per candidate: every inner product below is in the precision's metric.
    let weighted: Vec<Option<Vec<f64>>> = effects.iter().map(|e| e.as_ref().map(|e| times(e))).collect();
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
    let q: Vec<f64> = effects
        .iter()
        .zip(&weighted)
        .map(|(e, w)| match (e, w) {
            (Some(e), Some(w)) => dot(e, w),
            _ => f64::NAN,
        })
        .collect();
    let mut cross = vec![0f64; n * n];
    for a in 0..n {
        for b in a + 1..n {
            if let (Some(wa), Some(eb)) = (&weighted[a], &effects[b]) {
                cross[a * n + b] = dot(wa, eb);
            }
        }
    }
    z.chunks(g)
        .map(|row| {
            let r: Vec<f64> = row.iter().zip(&ctrl).map(|(&x, c)| x as f64 - c).collect();
            let base = dot(&r, &times(&r));
            let d: Vec<f64> = weighted.iter().map(|w| w.as_ref().map(|w| dot(w, &r)).unwrap_or(f64::NAN)).collect();
            let single = |a: usize| -0.5 * (base - 2.0 * d[a] + q[a]);
            let singles: Vec<f64> = (0..n).map(|a| if d[a].is_nan() { f64::NEG_INFINITY } else { single(a) }).collect();
            let mut pairs = Vec::with_capacity(n * (n - 1) / 2);
            for a in 0..n {
                for b in a + 1..n {
                    pairs.push(if d[a].is_nan() || d[b].is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        -0.5 * (base - 2.0 * (d[a] + d[b]) + q[a] + q[b] + 2.0 * cross[a * n + b])
                    });
                }
            }
            from_log_probs(-0.5 * base, singles, pairs)
        })
        .collect()
}

/// The additive rule on the count scale: each answer's expected normalised expression is control's
/// plus its genes' single changes (floored at 5 % of control), scored by a quasi-Poisson likelihood
/// with each gene's pooled within-condition dispersion; genes not `measured` are left out.
pub fn additive_counts(view: &TrainView, x: &[f32], measured: &[bool]) -> Vec<SetScores> {
    let g = view.g;
    let n = view.candidates.len();
    let y: Vec<f64> = view.x.iter().map(|&v| (v as f64).exp_m1()).collect();
    let (ctrl, _) = mean_rows_f64(&y, g, (0..view.targets.len()).filter(|&i| view.targets[i].is_empty()));
    let mut conds: Vec<Vec<usize>> = view.targets.to_vec();
    conds.sort();
    conds.dedup();
    let (mut var, mut mean) = (vec![0f64; g], vec![0f64; g]);
    let mut change: Vec<Option<Vec<f64>>> = vec![None; n];
    for t in &conds {
        let rows: Vec<usize> = (0..view.targets.len()).filter(|&i| &view.targets[i] == t).collect();
        let (m, _) = mean_rows_f64(&y, g, rows.iter().cloned());
        for &i in &rows {
            for j in 0..g {
                var[j] += (y[i * g + j] - m[j]).powi(2);
                mean[j] += m[j];
            }
        }
        if let [a] = t.as_slice() {
            change[*a] = Some(m.iter().zip(&ctrl).map(|(a, c)| a - c).collect());
        }
    }
    let phi: Vec<f64> = (0..g).map(|j| (var[j] / mean[j].max(1e-9)).max(1e-3)).collect();
    let floor = |c: f64, d: f64| (c + d).max(0.05 * c).max(1e-6);
    // Per answer: Σ_j ln μ_j / φ_j weights and Σ_j μ_j / φ_j.
    let answer = |d: &[f64]| -> (Vec<f64>, f64) {
        let mu: Vec<f64> = (0..g).map(|j| floor(ctrl[j], d[j])).collect();
        let w = (0..g).map(|j| if measured[j] { mu[j].ln() / phi[j] } else { 0.0 }).collect();
        let total = (0..g).filter(|&j| measured[j]).map(|j| mu[j] / phi[j]).sum();
        (w, total)
    };
    let zero = vec![0f64; g];
    let control = answer(&zero);
    let singles: Vec<Option<(Vec<f64>, f64)>> = change.iter().map(|c| c.as_ref().map(|c| answer(c))).collect();
    let mut pairs: Vec<Option<(Vec<f64>, f64)>> = Vec::with_capacity(n * (n - 1) / 2);
    for a in 0..n {
        for b in a + 1..n {
            pairs.push(match (&change[a], &change[b]) {
                (Some(ca), Some(cb)) => Some(answer(&ca.iter().zip(cb).map(|(p, q)| p + q).collect::<Vec<_>>())),
                _ => None,
            });
        }
    }
    let score = |yc: &[f64], a: &Option<(Vec<f64>, f64)>| match a {
        Some((w, t)) => yc.iter().zip(w).map(|(y, w)| y * w).sum::<f64>() - t,
        None => f64::NEG_INFINITY,
    };
    x.chunks(g)
        .map(|row| {
            let yc: Vec<f64> = row.iter().map(|&v| (v as f64).exp_m1()).collect();
            let c = score(&yc, &Some(control.clone()));
            from_log_probs(c, singles.iter().map(|a| score(&yc, a)).collect(), pairs.iter().map(|a| score(&yc, a)).collect())
        })
        .collect()
}

fn mean_rows_f64(y: &[f64], g: usize, rows: impl Iterator<Item = usize>) -> (Vec<f64>, usize) {
    let mut m = vec![0f64; g];
    let mut n = 0;
    for i in rows {
        for j in 0..g {
            m[j] += y[i * g + j];
        }
        n += 1;
    }
    m.iter_mut().for_each(|v| *v /= n.max(1) as f64);
    (m, n)
}

/// Inverse of a symmetric positive definite matrix (row-major, g × g) by Cholesky.
fn inverse_spd(m: &[f64], g: usize) -> Vec<f64> {
    let mut l = vec![0f64; g * g];
    for i in 0..g {
        for j in 0..=i {
            let s = m[i * g + j] - (0..j).map(|k| l[i * g + k] * l[j * g + k]).sum::<f64>();
            l[i * g + j] = if i == j { s.max(1e-9).sqrt() } else { s / l[j * g + j] };
        }
    }
    let mut inv = vec![0f64; g * g];
    for c in 0..g {
        // Solve L y = e_c, then Lᵀ x = y.
        let mut y = vec![0f64; g];
        for i in 0..g {
            let e = if i == c { 1.0 } else { 0.0 };
            y[i] = (e - (0..i).map(|k| l[i * g + k] * y[k]).sum::<f64>()) / l[i * g + i];
        }
        for i in (0..g).rev() {
            let x = (y[i] - (i + 1..g).map(|k| l[k * g + i] * inv[k * g + c]).sum::<f64>()) / l[i * g + i];
            inv[i * g + c] = x;
        }
    }
    inv
}

/// The training frequency of 0, 1 and 2 genes, spread evenly within each size.
pub fn prior_only(view: &TrainView, rows: usize) -> Vec<SetScores> {
    let n = view.candidates.len();
    let mut k = [0f64; 3];
    for t in view.targets {
        k[t.len().min(2)] += 1.0;
    }
    let total: f64 = k.iter().sum::<f64>().max(1.0);
    let s = SetScores {
        control: k[0] / total,
        singles: vec![k[1] / total / n as f64; n],
        pairs: vec![k[2] / total / (n * (n - 1) / 2) as f64; n * (n - 1) / 2],
    };
    vec![s; rows]
}

/// Logistic regression: linear gene and count logits from z-scored expression, fitted on the same
/// exact set likelihood as the network.
#[derive(Module, Debug)]
pub struct LinearBaseline {
    gene: Linear,
    count: Linear,
}

impl LinearBaseline {
    pub fn new(g: usize, c: usize, device: &Device) -> Self {
        LinearBaseline { gene: LinearConfig::new(g, c).init(device), count: LinearConfig::new(g, 3).init(device) }
    }
}

/// z-scores of the input against its reference; absent genes sit at the reference centre (0).
fn standardised(x: Tensor<2>, f: &GenomeFeatures) -> Tensor<2> {
    let z = ((x - f.gene_mean.clone()) * f.gene_inv_sd.clone()).clamp(-5.0, 10.0);
    match &f.present {
        Some(p) => z * p.clone(),
        None => z,
    }
}

impl SetModel for LinearBaseline {
    fn logits(&self, x: Tensor<2>, f: &GenomeFeatures) -> (Tensor<2>, Tensor<2>) {
        let z = standardised(x, f);
        (bound(self.gene.forward(z.clone())), self.count.forward(z))
    }
}

/// Ablation `mlp`: the network's inputs (z-scored panel, absent genes absent) through two hidden
/// layers of the model's width, no attention and no gene positions; same set likelihood.
#[derive(Module, Debug)]
pub struct MlpAblation {
    hidden1: Linear,
    hidden2: Linear,
    gene: Linear,
    count: Linear,
}

impl MlpAblation {
    pub fn new(g: usize, c: usize, width: usize, device: &Device) -> Self {
        MlpAblation {
            hidden1: LinearConfig::new(g, width).init(device),
            hidden2: LinearConfig::new(width, width).init(device),
            gene: LinearConfig::new(width, c).init(device),
            count: LinearConfig::new(width, 3).init(device),
        }
    }
}

impl SetModel for MlpAblation {
    fn logits(&self, x: Tensor<2>, f: &GenomeFeatures) -> (Tensor<2>, Tensor<2>) {
        use burn::tensor::activation::gelu;
        let h = gelu(self.hidden2.forward(gelu(self.hidden1.forward(standardised(x, f)))));
        (bound(self.gene.forward(h.clone())), self.count.forward(h))
    }
}
