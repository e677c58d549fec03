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

/// Scores from log likelihoods (uniform over answers before them); if none is finite, no answer
/// is preferred.
fn from_log_probs(control: f64, singles: Vec<f64>, pairs: Vec<f64>) -> SetScores {
    let n = singles.len();
    let values: Vec<f64> = std::iter::once(control).chain(singles).chain(pairs).collect();
    SetScores::from_log_values(&values, n).unwrap_or_else(|| SetScores::uniform(n))
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
    let g = view.g;
    let n = view.candidates.len();
    let (ctrl, _) = mean_rows(&view.z, g, (0..view.targets.len()).filter(|&i| view.targets[i].is_empty()));
    // Pooled within-condition variance per gene.
    let mut conds: Vec<Vec<usize>> = view.targets.to_vec();
    conds.sort();
    conds.dedup();
    let mut var = vec![0f64; g];
    let mut dof = 0usize;
    let mut effects: Vec<Option<Vec<f64>>> = vec![None; n];
    for t in &conds {
        let rows: Vec<usize> = (0..view.targets.len()).filter(|&i| &view.targets[i] == t).collect();
        let (m, k) = mean_rows(&view.z, g, rows.iter().cloned());
        for &i in &rows {
            for j in 0..g {
                var[j] += (view.z[i * g + j] as f64 - m[j]).powi(2);
            }
        }
        dof += k.saturating_sub(1);
        if let [a] = t.as_slice() {
            effects[*a] = Some(m.iter().zip(&ctrl).map(|(a, c)| a - c).collect());
        }
    }
    let w: Vec<f64> = var.iter().map(|v| 1.0 / (v / dof.max(1) as f64).max(0.05)).collect();
    let q: Vec<f64> = effects
        .iter()
        .map(|e| e.as_ref().map(|e| e.iter().zip(&w).map(|(x, w)| w * x * x).sum()).unwrap_or(f64::NAN))
        .collect();
    let mut cross = vec![0f64; n * n];
    for a in 0..n {
        for b in a + 1..n {
            if let (Some(ea), Some(eb)) = (&effects[a], &effects[b]) {
                cross[a * n + b] = ea.iter().zip(eb).zip(&w).map(|((x, y), w)| w * x * y).sum();
            }
        }
    }
    z.chunks(g)
        .map(|row| {
            let r: Vec<f64> = row.iter().zip(&ctrl).map(|(&x, c)| x as f64 - c).collect();
            let base: f64 = r.iter().zip(&w).map(|(r, w)| w * r * r).sum();
            let dot: Vec<f64> = effects
                .iter()
                .map(|e| {
                    e.as_ref().map(|e| e.iter().zip(&r).zip(&w).map(|((e, r), w)| w * e * r).sum()).unwrap_or(f64::NAN)
                })
                .collect();
            let single = |a: usize| -0.5 * (base - 2.0 * dot[a] + q[a]);
            let singles: Vec<f64> =
                (0..n).map(|a| if dot[a].is_nan() { f64::NEG_INFINITY } else { single(a) }).collect();
            let mut pairs = Vec::with_capacity(n * (n - 1) / 2);
            for a in 0..n {
                for b in a + 1..n {
                    pairs.push(if dot[a].is_nan() || dot[b].is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        -0.5 * (base - 2.0 * (dot[a] + dot[b]) + q[a] + q[b] + 2.0 * cross[a * n + b])
                    });
                }
            }
            from_log_probs(-0.5 * base, singles, pairs)
        })
        .collect()
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
