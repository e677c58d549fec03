//! From gene logits and a 0/1/2 count to a distribution over every answer: control, each single and
//! each pair. P(S) = P(|S|) · Π_{g∈S} e^{l_g} / Z_{|S|}, with Z_1 = Σ e^{l_g} and
//! Z_2 = Σ_{a<b} e^{l_a + l_b}: a pair's score is the sum of its genes' evidence, which is what lets
//! the model name pairs it never saw. Training minimises −log P(true set) exactly.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

use super::additive::{AdditiveHead, HeadTerms};

/// Gene logits are bounded to ±LOGIT_BOUND so pair sums stay well inside f32 range.
pub const LOGIT_BOUND: f32 = 12.0;

pub fn bound(raw: Tensor<2>) -> Tensor<2> {
    raw.div_scalar(LOGIT_BOUND).tanh().mul_scalar(LOGIT_BOUND)
}

/// log Σ_{a<b} e^{l_a + l_b} per row, without cancellation: values are sorted ascending and each
/// is multiplied by the sum of the smaller ones only.
pub fn log_pair_normalizer(logits: Tensor<2>) -> Tensor<2> {
    let [batch, n] = logits.dims();
    let top = logits.clone().topk(2, 1).detach();
    let shift = top.sum_dim(1).div_scalar(2.0); // [B, 1]: makes the best pair's term exactly 1
    let w = (logits - shift.clone()).exp().sort(1);
    let before = Tensor::cat(vec![Tensor::zeros([batch, 1], &w.device()), w.clone().cumsum(1).narrow(1, 0, n - 1)], 1);
    (w * before).sum_dim(1).log() + shift.mul_scalar(2.0)
}

/// Mean −log P(true set) over the batch. `multi_hot`: [B, C] with 0–2 ones per row;
/// `count_one_hot`: [B, 3] (0, 1, 2 genes).
pub fn set_nll(
    gene_logits: Tensor<2>,
    count_logits: Tensor<2>,
    multi_hot: Tensor<2>,
    count_one_hot: Tensor<2>,
) -> Tensor<1> {
    let [batch, _] = gene_logits.dims();
    let chosen = (gene_logits.clone() * multi_hot).sum_dim(1); // [B, 1]
    let max = gene_logits.clone().max_dim(1).detach();
    let lse1 = (gene_logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let lse2 = log_pair_normalizer(gene_logits);
    let k1 = count_one_hot.clone().narrow(1, 1, 1);
    let k2 = count_one_hot.clone().narrow(1, 2, 1);
    let set_term = k1 * lse1 + k2 * lse2 - chosen;
    let count_term = (log_softmax(count_logits, 1) * count_one_hot).sum_dim(1).neg();
    (set_term + count_term).sum().div_scalar(batch as f32)
}

/// Probabilities of every answer for one cell, from its logits (computed in f64).
#[derive(Clone, Debug, PartialEq)]
pub struct SetScores {
    pub control: f64,
    /// P({g}) per candidate.
    pub singles: Vec<f64>,
    /// P({a, b}) for a < b, in `pair_index` order.
    pub pairs: Vec<f64>,
}

/// Pairs are answers only among at most this many candidates (44,850 pairs). Beyond it, as in a
/// genome-wide screen of single targets (10,000 candidates would make 50 million pairs, 400 MB of
/// probabilities per cell), the answers are control and the singles.
pub const MAX_PAIR_CANDIDATES: usize = 300;

/// Pair answers among `n` candidates: every pair up to `MAX_PAIR_CANDIDATES`, none beyond.
pub fn pair_count(n: usize) -> usize {
    match n <= MAX_PAIR_CANDIDATES {
        true => n * n.saturating_sub(1) / 2,
        false => 0,
    }
}

/// Position of the pair (a, b), a < b, among all pairs of `n` candidates.
pub fn pair_index(a: usize, b: usize, n: usize) -> usize {
    debug_assert!(a < b && b < n);
    a * n - a * (a + 1) / 2 + (b - a - 1)
}

/// A single or a pair of candidates, by index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    Single(usize),
    Pair(usize, usize),
}

impl Answer {
    pub fn genes(self) -> Vec<usize> {
        match self {
            Answer::Single(a) => vec![a],
            Answer::Pair(a, b) => vec![a, b],
        }
    }
}

/// The pair at position `k` (inverse of `pair_index`).
pub fn pair_at(mut k: usize, n: usize) -> (usize, usize) {
    for a in 0..n {
        let row = n - a - 1;
        if k < row {
            return (a, a + 1 + k);
        }
        k -= row;
    }
    (n, n)
}

fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl SetScores {
    /// P(answer) for an answer given as candidate indices (empty: control); 0 for 3 or more genes.
    pub fn probability(&self, genes: &[usize]) -> f64 {
        match genes {
            [] => self.control,
            [a] => self.singles[*a],
            [a, b] if a != b => {
                self.pairs.get(pair_index(*a.min(b), *a.max(b), self.singles.len())).copied().unwrap_or(0.0)
            }
            _ => 0.0,
        }
    }

    /// Every single and pair with its probability (control left out), pairs in `pair_index` order.
    pub fn gene_answers(&self) -> impl Iterator<Item = (Answer, f64)> + '_ {
        let n = self.singles.len();
        let pairs = (0..n).flat_map(move |a| (a + 1..n).map(move |b| Answer::Pair(a, b)));
        self.singles
            .iter()
            .enumerate()
            .map(|(a, &p)| (Answer::Single(a), p))
            .chain(pairs.zip(self.pairs.iter().copied()))
    }

    /// `gene_logits` already bounded (as the network outputs them through `bound`).
    pub fn from_logits(gene_logits: &[f32], count_logits: &[f32]) -> SetScores {
        SetScores::from_parts(gene_logits, count_logits, None, 1.0)
    }

    /// The network's distribution times further evidence (a log likelihood ratio over control per
    /// single and per pair, as the additive head gives; None: none), at temperature `t`, in one
    /// pass over the answers: log P(S) = (log P_net(S) + e_S) / t, normalised. The same as
    /// `from_logits`, then `with_evidence`, then `tempered`, with one exponential per answer
    /// instead of three (scoring was 40 % of `predict`'s time before).
    pub fn from_parts(
        gene_logits: &[f32],
        count_logits: &[f32],
        evidence: Option<(&[f32], &[f32])>,
        t: f64,
    ) -> SetScores {
        SetScores::from_parts_with_logs(gene_logits, count_logits, evidence, t).0
    }

    /// The same, with each answer's log probability in answer order (what a pseudobulk adds up),
    /// at no further logarithm.
    pub fn from_parts_with_logs(
        gene_logits: &[f32],
        count_logits: &[f32],
        evidence: Option<(&[f32], &[f32])>,
        t: f64,
    ) -> (SetScores, Vec<f64>) {
        let mut values = SetScores::log_values(gene_logits, count_logits, evidence, t);
        let n = gene_logits.len();
        match SetScores::normalise(&values, n) {
            Some((scores, log_z)) => {
                values.iter_mut().for_each(|v| *v -= log_z);
                (scores, values)
            }
            None => {
                let uniform = SetScores::uniform(n);
                let log_p = uniform.control.ln();
                (uniform, vec![log_p; values.len()])
            }
        }
    }

    /// The network's own log probabilities in answer order at temperature `t`, as
    /// `from_parts_with_logs` gives them with no evidence; at t = 1 without the pass that
    /// normalises them: they are.
    pub fn network_logs(gene_logits: &[f32], count_logits: &[f32], t: f64) -> Vec<f64> {
        match t == 1.0 {
            true => SetScores::log_values(gene_logits, count_logits, None, 1.0),
            false => SetScores::from_parts_with_logs(gene_logits, count_logits, None, t).1,
        }
    }

    /// Each answer's log P_net(S) + e_S, over t, in answer order (not normalised).
    fn log_values(gene_logits: &[f32], count_logits: &[f32], evidence: Option<(&[f32], &[f32])>, t: f64) -> Vec<f64> {
        let l: Vec<f64> = gene_logits.iter().map(|&x| x as f64).collect();
        let n = l.len();
        let c: Vec<f64> = count_logits.iter().map(|&x| x as f64).collect();
        let lc = log_sum_exp(c.iter().cloned());
        let log_count: Vec<f64> = c.iter().map(|x| x - lc).collect();
        let single = log_count[1] - log_sum_exp(l.iter().cloned());
        let (e1, e2) = evidence.unwrap_or((&[], &[]));
        let extra = |e: &[f32], k: usize| e.get(k).map_or(0.0, |&v| v as f64);
        let mut values = Vec::with_capacity(1 + n + pair_count(n));
        values.push(log_count[0] / t);
        values.extend(l.iter().enumerate().map(|(a, x)| (single + x + extra(e1, a)) / t));
        let pair = match pair_count(n) {
            0 => 0.0,
            _ => log_count[2] - log_pair_sum(&l),
        };
        for a in (0..n).filter(|_| pair_count(n) > 0) {
            let first = values.len() - (1 + n); // pair_index(a, a + 1, n)
            values.extend((a + 1..n).map(|b| (pair + l[a] + l[b] + extra(e2, first + b - a - 1)) / t));
        }
        values
    }
}

/// log Σ_{a<b} e^{l_a + l_b}, without cancellation and with one exponential per candidate: the
/// terms sorted ascending, each multiplied by the sum of the smaller ones (−∞ below two candidates).
fn log_pair_sum(l: &[f64]) -> f64 {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut w: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
    w.sort_by(|a, b| a.total_cmp(b));
    let (mut smaller, mut total) = (0.0, 0.0);
    for v in w {
        total += v * smaller;
        smaller += v;
    }
    total.ln() + 2.0 * m
}

impl SetScores {
    /// Every answer (control, each single, each pair of `n` candidates: `pair_count`) equally likely.
    pub fn uniform(n: usize) -> SetScores {
        let pairs = pair_count(n);
        let p = 1.0 / (1 + n + pairs) as f64;
        SetScores { control: p, singles: vec![p; n], pairs: vec![p; pairs] }
    }

    /// The distribution reweighted by further evidence, a log likelihood ratio over control per
    /// single and per pair (`pair_index` order), as the additive head gives: P(S) ∝ P(S)·e^{e_S}.
    pub fn with_evidence(&self, singles: &[f32], pairs: &[f32]) -> SetScores {
        let log = |p: f64, add: f32| if p > 0.0 { p.ln() + add as f64 } else { f64::NEG_INFINITY };
        let values: Vec<f64> = std::iter::once(log(self.control, 0.0))
            .chain(self.singles.iter().zip(singles).map(|(&p, &e)| log(p, e)))
            .chain(self.pairs.iter().zip(pairs).map(|(&p, &e)| log(p, e)))
            .collect();
        SetScores::from_log_values(&values, self.singles.len()).unwrap_or_else(|| self.clone())
    }

    /// The same distribution with its log divided by `t` and normalised again (temperature
    /// scaling: t > 1 flattens, t < 1 sharpens; the ranking is unchanged).
    pub fn tempered(&self, t: f64) -> SetScores {
        let log = |p: f64| if p > 0.0 { p.ln() / t } else { f64::NEG_INFINITY };
        let values: Vec<f64> = std::iter::once(self.control)
            .chain(self.singles.iter().copied())
            .chain(self.pairs.iter().copied())
            .map(log)
            .collect();
        SetScores::from_log_values(&values, self.singles.len()).unwrap_or_else(|| self.clone())
    }

    /// Probabilities from unnormalised log values in answer order (control, `n` singles, then pairs
    /// in `pair_index` order); a value that is not finite is probability 0. None when none is finite.
    pub fn from_log_values(values: &[f64], n: usize) -> Option<SetScores> {
        Some(SetScores::normalise(values, n)?.0)
    }

    /// `from_log_values`, with the log of the normaliser (log P = value − it).
    fn normalise(values: &[f64], n: usize) -> Option<(SetScores, f64)> {
        let max = values.iter().copied().filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() || values.len() < 1 + n {
            return None;
        }
        let e: Vec<f64> = values.iter().map(|&v| if v.is_finite() { (v - max).exp() } else { 0.0 }).collect();
        let z: f64 = e.iter().sum();
        let p = |v: &f64| v / z;
        let scores = SetScores {
            control: p(&e[0]),
            singles: e[1..=n].iter().map(p).collect(),
            pairs: e[n + 1..].iter().map(p).collect(),
        };
        Some((scores, max + z.ln()))
    }
}

/// Size (0 control, 1 single, 2 pair) of the answer at position `k` of the answer order (control,
/// `n` singles, then pairs).
pub fn answer_size(k: usize, n: usize) -> usize {
    match k {
        0 => 0,
        k if k <= n => 1,
        _ => 2,
    }
}

/// P(S) for one answer of each size before seeing a cell: P(size) spread evenly within the size.
/// `sizes`: P(0, 1, 2 genes); `n` candidates.
pub fn answer_prior(sizes: [f64; 3], n: usize) -> [f64; 3] {
    let pairs = pair_count(n).max(1) as f64;
    [sizes[0], sizes[1] / n.max(1) as f64, sizes[2] / pairs]
}

/// How a group's cells are pooled into one answer: the prior of each answer (`answer_prior`) and
/// the share of a perturbed condition's cells whose guides did nothing and that look like control
/// cells (`guide_failure`, fitted on held-out training cells; 0: every cell responded).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pooling {
    pub prior: [f64; 3],
    pub guide_failure: f64,
    /// How the additive head speaks for a whole group (None: through its cells' posteriors).
    #[serde(default)]
    pub group: Option<GroupModel>,
}

/// A group's answer from the head's likelihood of the group's mean levels, next to its cells'
/// network posteriors. Adding up cells' head evidence counts each single's measured profile once
/// per cell, as if its error were new in every cell: over a 200-cell group the error of a profile
/// measured on 200 cells then outweighs the data, and on genes that move little (targets masked)
/// it picked the wrong answer (bench: masked pseudobulk below additive-inverse). The mean's
/// likelihood counts that error once.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupModel {
    /// Multiplies the sum of the cells' network log likelihood ratios.
    pub network_weight: f64,
    /// A pair's departure from additivity (its genetic interaction), as a share of its genes'
    /// own changes: ρ in var = ρ²(Δ_A² + Δ_B²) per gene.
    pub pair_error: f64,
}

impl Pooling {
    /// Every cell responded: the group's posterior is Σ log P(S | cell) − (n − 1) log P(S).
    pub fn responding(prior: [f64; 3]) -> Pooling {
        Pooling { prior, guide_failure: 0.0, group: None }
    }

    /// Whether a group's answer reads its cells' `cell_terms`: not when the group model weighs
    /// them at 0 (the default model's), so they need not be built.
    pub fn weighs_cells(&self) -> bool {
        self.group.is_none_or(|g| g.network_weight != 0.0)
    }

    /// With a share `guide_failure` of control-like cells in perturbed groups.
    pub fn with_failure(prior: [f64; 3], guide_failure: f64) -> Pooling {
        Pooling { prior, guide_failure, group: None }
    }

    /// One cell's log likelihood ratio for every answer (`log_p`: its log posteriors in answer
    /// order, `n` candidates), what a group adds up.
    pub fn cell_terms(&self, log_p: &[f64], n: usize) -> Vec<f64> {
        let floor = MIN_PROBABILITY.ln();
        let log_prior = self.prior.map(|p| p.max(MIN_PROBABILITY).ln());
        let f = self.guide_failure;
        // A failure's term, ln f + the cell's control likelihood ratio; a response's, ln(1 − f) + its own.
        let failure = log_p.first().map_or(0.0, |&l| f.ln() + l.max(floor) - log_prior[0]);
        let responds = (1.0 - f).ln();
        log_p
            .iter()
            .enumerate()
            .map(|(k, &l)| {
                let own = l.max(floor) - log_prior[answer_size(k, n)];
                if k == 0 || f <= 0.0 { own } else { log_add(responds + own, failure) }
            })
            .collect()
    }
}

/// A group's answer distribution from its cells' posteriors, taken as independent given the
/// answer, each cell of a perturbed answer S being with probability f a control-like failure:
/// P(cell | S) ∝ (1 − f)·P(S | cell)/P(S) + f·P(control | cell)/P(control). With f = 0,
/// log P(S | cells) = Σ log P(S | cell) − (n − 1) log P(S), normalised.
pub fn combine(cells: &[&SetScores], pooling: Pooling) -> SetScores {
    let mut group = Combination::new(cells.first().map_or(0, |s| s.singles.len()), pooling);
    cells.iter().for_each(|s| group.add(s));
    group.finish()
}

/// Probabilities are floored here when combined, so that no single cell can veto an answer.
const MIN_PROBABILITY: f64 = 1e-300;

/// `combine` one cell at a time: only the running sums of each answer's log likelihood ratio are
/// kept (one row of control, singles and pairs), never the cells' own tables.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Combination {
    /// Σ log (P(cell | S) / P(cell)) over the cells added: control, then singles, then pairs in
    /// `pair_index` order.
    #[serde(with = "crate::analysis::jobs::raw")]
    log_sum: Vec<f64>,
    /// Σ of the cells' levels (CP10k) per panel gene, when the pooling has a `GroupModel`.
    #[serde(with = "crate::analysis::jobs::raw")]
    levels: Vec<f64>,
    n_candidates: usize,
    cells: usize,
    pooling: Pooling,
}

impl Combination {
    pub fn new(n_candidates: usize, pooling: Pooling) -> Self {
        let answers = 1 + n_candidates + pair_count(n_candidates);
        Combination { log_sum: vec![0.0; answers], levels: Vec::new(), n_candidates, cells: 0, pooling }
    }

    /// The same sums finished with another group model (the cells' terms depend only on the
    /// prior and the guide-failure share, which stay): what fitting the group model tries. The
    /// sums must hold the cells' terms (built under a pooling that `weighs_cells`).
    pub fn with_group(&self, group: GroupModel) -> Combination {
        debug_assert!(self.pooling.weighs_cells() || self.cells == 0 || group.network_weight == 0.0);
        Combination { pooling: Pooling { group: Some(group), ..self.pooling }, ..self.clone() }
    }

    /// Adds one cell: its `Pooling::cell_terms` (computed once for every group holding it; empty
    /// when the pooling does not `weighs_cells`) and, when the pooling has a `GroupModel`, its
    /// levels (`row`: log1p CP10k over the panel).
    pub fn add_cell(&mut self, terms: &[f64], row: &[f32]) {
        self.add_terms(terms);
        if self.pooling.group.is_some() {
            self.add_levels(row);
        }
    }

    /// Adds one cell's levels, what the head's group likelihood reads.
    fn add_levels(&mut self, row: &[f32]) {
        if self.levels.is_empty() {
            self.levels = vec![0.0; row.len()];
        }
        self.levels.iter_mut().zip(row).for_each(|(s, &v)| *s += (v as f64).exp_m1().max(0.0));
    }

    pub fn add(&mut self, cell: &SetScores) {
        let probabilities = std::iter::once(&cell.control).chain(&cell.singles).chain(&cell.pairs);
        let log_p: Vec<f64> = probabilities.map(|&p| p.max(MIN_PROBABILITY).ln()).collect();
        self.add_logs(&log_p);
    }

    /// The same from the cell's log probabilities in answer order (`from_parts_with_logs`).
    pub fn add_logs(&mut self, log_p: &[f64]) {
        self.add_terms(&self.pooling.cell_terms(log_p, self.n_candidates));
    }

    /// Adds one cell's `Pooling::cell_terms` (computed once for every group the cell is in).
    pub fn add_terms(&mut self, terms: &[f64]) {
        debug_assert!(terms.len() == self.log_sum.len() || (terms.is_empty() && !self.pooling.weighs_cells()));
        self.log_sum.iter_mut().zip(terms).for_each(|(sum, t)| *sum += t);
        self.cells += 1;
    }

    /// Adds the cells of another combination of the same candidates (a chunk scored elsewhere).
    pub fn merge(&mut self, other: &Combination) -> Result<(), String> {
        if other.log_sum.len() != self.log_sum.len() || other.pooling != self.pooling {
            return Err(format!(
                "a group of {} answers cannot join one of {} (or their pooling differs)",
                other.log_sum.len(),
                self.log_sum.len()
            ));
        }
        self.log_sum.iter_mut().zip(&other.log_sum).for_each(|(a, b)| *a += b);
        if self.levels.is_empty() {
            self.levels = vec![0.0; other.levels.len()];
        }
        if other.levels.len() == self.levels.len() {
            self.levels.iter_mut().zip(&other.levels).for_each(|(a, b)| *a += b);
        }
        self.cells += other.cells;
        Ok(())
    }

    /// The normalised distribution (with no cells: control, the empty group's placeholder), from
    /// the cells' posteriors alone.
    pub fn finish(&self) -> SetScores {
        self.finish_with_head(None)
    }

    /// The same, with the head's likelihood of the group's mean levels when the pooling has a
    /// `GroupModel` (and levels were added): then the cells' sums are the network's, weighted.
    pub fn finish_with_head(&self, head: Option<(&AdditiveHead, &HeadTerms)>) -> SetScores {
        let c = self.n_candidates;
        if self.cells == 0 {
            return SetScores { control: 1.0, singles: vec![0.0; c], pairs: vec![0.0; self.log_sum.len() - 1 - c] };
        }
        let prior = self.pooling.prior;
        let group = self.pooling.group.zip(head).filter(|_| !self.levels.is_empty());
        let (weight, evidence) = match group {
            Some((model, (head, terms))) => {
                let f = self.pooling.guide_failure;
                let e = head.group_evidence(terms, &self.levels, self.cells, f, model.pair_error);
                (model.network_weight, e)
            }
            None => (1.0, Vec::new()),
        };
        let totals: Vec<f64> = self
            .log_sum
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let head = if k == 0 { 0.0 } else { evidence.get(k - 1).copied().unwrap_or(0.0) };
                weight * v + head + prior[answer_size(k, c)].max(MIN_PROBABILITY).ln()
            })
            .collect();
        // Every total is finite (log probabilities are floored at 1e-300 when added).
        SetScores::from_log_values(&totals, c).unwrap_or_else(|| SetScores::uniform(c))
    }
}

/// ln(e^a + e^b), without the exponentials where one term is negligible (most answers of most
/// cells: pooling a 5,566-answer row per cell stays cheap).
pub fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if hi - lo > 37.0 { hi } else { hi + (lo - hi).exp().ln_1p() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distribution from logits as first written: each probability by its own exponential.
    fn from_logits_in_steps(gene_logits: &[f32], count_logits: &[f32]) -> SetScores {
        let l: Vec<f64> = gene_logits.iter().map(|&x| x as f64).collect();
        let c: Vec<f64> = count_logits.iter().map(|&x| x as f64).collect();
        let lc = log_sum_exp(c.iter().cloned());
        let p_count: Vec<f64> = c.iter().map(|x| (x - lc).exp()).collect();
        let lse1 = log_sum_exp(l.iter().cloned());
        let pair_logits: Vec<f64> =
            (0..l.len()).flat_map(|a| (a + 1..l.len()).map(move |b| (a, b))).map(|(a, b)| l[a] + l[b]).collect();
        let lse2 = log_sum_exp(pair_logits.iter().cloned());
        SetScores {
            control: p_count[0],
            singles: l.iter().map(|x| p_count[1] * (x - lse1).exp()).collect(),
            pairs: pair_logits.iter().map(|x| p_count[2] * (x - lse2).exp()).collect(),
        }
    }

    /// One pass equals the three steps it replaces: the network's distribution, its evidence, its
    /// temperature.
    #[test]
    fn from_parts_equals_logits_then_evidence_then_temperature() {
        let gene = [3.0, -1.5, 0.25, 11.9, -11.9];
        let count = [0.5, -2.0, 1.0];
        let singles = [0.5, -3.0, 2.0, 0.0, 7.0];
        let pairs: Vec<f32> = (0..10).map(|k| (k as f32 - 4.5) * 0.7).collect();
        let old = |t: f64| {
            let net = from_logits_in_steps(&gene, &count);
            net.with_evidence(&singles, &pairs).tempered(t)
        };
        for t in [1.0, 1.3, 0.7] {
            let new = SetScores::from_parts(&gene, &count, Some((&singles, &pairs)), t);
            let (a, b) = (old(t), new);
            let all = |s: &SetScores| {
                std::iter::once(s.control).chain(s.singles.clone()).chain(s.pairs.clone()).collect::<Vec<_>>()
            };
            for (x, y) in all(&a).iter().zip(all(&b)) {
                assert!((x - y).abs() < 1e-9 * (1.0 + x.abs()), "t {t}: {a:?} vs {b:?}");
            }
        }
        // The log probabilities it returns add into a pseudobulk exactly as the probabilities do.
        let (scores, logs) = SetScores::from_parts_with_logs(&gene, &count, Some((&singles, &pairs)), 1.3);
        let pooling = Pooling::with_failure([0.2, 0.4, 0.4], 0.1);
        let (mut by_p, mut by_log) = (Combination::new(5, pooling), Combination::new(5, pooling));
        by_p.add(&scores);
        by_log.add_logs(&logs);
        let (a, b) = (by_p.finish(), by_log.finish());
        assert!(
            a.pairs.iter().zip(&b.pairs).all(|(x, y)| (x - y).abs() < 1e-12) && (a.control - b.control).abs() < 1e-12
        );
        // The network's own log probabilities in closed form are those of the normalising pass.
        let (_, net_logs) = SetScores::from_parts_with_logs(&gene, &count, None, 1.0);
        let closed = SetScores::network_logs(&gene, &count, 1.0);
        assert!(net_logs.iter().zip(&closed).all(|(a, b)| (a - b).abs() < 1e-9), "{net_logs:?} vs {closed:?}");
        let tempered = SetScores::network_logs(&gene, &count, 1.5);
        let total: f64 = tempered.iter().map(|l| l.exp()).sum();
        assert!(
            (total - 1.0).abs() < 1e-12 && (tempered[1] - tempered[2] - (closed[1] - closed[2]) / 1.5).abs() < 1e-9
        );
        let plain = SetScores::from_parts(&gene, &count, None, 1.0);
        assert!(
            (plain.control + plain.singles.iter().sum::<f64>() + plain.pairs.iter().sum::<f64>() - 1.0).abs() < 1e-12
        );
        assert_eq!(SetScores::from_parts(&[0.0], &[0.0, 0.0, 0.0], None, 1.0).pairs.len(), 0);
    }
    use burn::tensor::{Device, TensorData};

    #[test]
    fn evidence_reweights_answers() {
        let flat = SetScores::uniform(3);
        assert!((flat.control * (1 + 3 + 3) as f64 - 1.0).abs() < 1e-12);
        // Evidence for candidates 0 and 1, against 2: the pair {0, 1} carries both and wins.
        let pair = |a: f32, b: f32| a + b;
        let (e0, e1, e2) = (2.0, 1.0, -3.0);
        let s = flat.with_evidence(&[e0, e1, e2], &[pair(e0, e1), pair(e0, e2), pair(e1, e2)]);
        let total = s.control + s.singles.iter().sum::<f64>() + s.pairs.iter().sum::<f64>();
        assert!((total - 1.0).abs() < 1e-12);
        let best = s.gene_answers().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        assert_eq!(best, Answer::Pair(0, 1));
        // Ratios are exactly e^{evidence}: pair {0,1} over control is e^{3}, single 0 over 2 e^{5}.
        assert!((s.pairs[pair_index(0, 1, 3)] / s.control - 3f64.exp()).abs() < 1e-9);
        assert!((s.singles[0] / s.singles[2] - 5f64.exp()).abs() < 1e-6);
        // No evidence changes nothing; an answer with probability 0 stays 0.
        let net = SetScores { control: 0.5, singles: vec![0.25, 0.25, 0.0], pairs: vec![0.0; 3] };
        assert_eq!(net.with_evidence(&[0.0; 3], &[0.0; 3]), net);
        assert_eq!(net.with_evidence(&[0.0, 0.0, 9.0], &[0.0; 3]).singles[2], 0.0);
    }

    #[test]
    fn pair_indexing_round_trips() {
        let n = 7;
        let mut k = 0;
        for a in 0..n {
            for b in a + 1..n {
                assert_eq!(pair_index(a, b, n), k);
                assert_eq!(pair_at(k, n), (a, b));
                k += 1;
            }
        }
    }

    #[test]
    fn scores_sum_to_one_and_pairs_follow_gene_evidence() {
        let s = SetScores::from_logits(&[3.0, 2.0, -1.0, 0.0], &[0.0, 1.0, 2.0]);
        let total = s.control + s.singles.iter().sum::<f64>() + s.pairs.iter().sum::<f64>();
        assert!((total - 1.0).abs() < 1e-9);
        let best = (0..s.pairs.len()).max_by(|&a, &b| s.pairs[a].total_cmp(&s.pairs[b])).unwrap();
        assert_eq!(pair_at(best, 4), (0, 1));
    }

    #[test]
    fn combining_cells_sharpens_towards_their_common_answer() {
        // Three cells, each mildly for gene 1; with a flat prior their product is clearly for gene 1.
        let cell = SetScores::from_logits(&[0.0, 1.0, 0.0], &[0.0, 1.0, -1.0]);
        let prior = Pooling::responding(answer_prior([1.0 / 3.0; 3], 3));
        let one = combine(&[&cell], prior);
        assert!((one.singles[1] - cell.singles[1]).abs() < 1e-12, "one cell is its own pseudobulk");
        let three = combine(&[&cell, &cell, &cell], prior);
        let best = three.gene_answers().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(best.0, Answer::Single(1));
        assert!(
            three.singles[1] > 0.5 && three.singles[1] > cell.singles[1],
            "{} vs {}",
            three.singles[1],
            cell.singles[1]
        );
        let total = three.control + three.singles.iter().sum::<f64>() + three.pairs.iter().sum::<f64>();
        assert!((total - 1.0).abs() < 1e-9);
    }

    /// Nine cells for single 1 and one control-like cell (a guide that did nothing): pooled as if
    /// every cell responded, the one cell vetoes gene 1; with guide failure in the pooling, the
    /// group is gene 1's. A control group stays control, and one clear cell keeps its answer.
    #[test]
    fn a_failed_guide_cannot_veto_its_group() {
        let prior = answer_prior([0.1, 0.6, 0.3], 3);
        let responder = SetScores::from_logits(&[-12.0, 12.0, -12.0], &[-6.0, 12.0, -6.0]);
        // The head's evidence can be far stronger than the network's bounded logits.
        let failed =
            SetScores::from_logits(&[0.0; 3], &[12.0, -12.0, -12.0]).with_evidence(&[0.0, -400.0, 0.0], &[0.0; 3]);
        let mut group: Vec<&SetScores> = vec![&responder; 9];
        group.push(&failed);
        let best = |s: &SetScores| top_answer(s);
        let strict = combine(&group, Pooling::responding(prior));
        assert_ne!(best(&strict), Some(Answer::Single(1)), "{strict:?}");
        let mixed = combine(&group, Pooling::with_failure(prior, 0.15));
        assert_eq!(best(&mixed), Some(Answer::Single(1)));
        assert!(mixed.singles[1] > 0.99, "{mixed:?}");
        let controls = combine(&[&failed, &failed], Pooling::with_failure(prior, 0.15));
        assert_eq!(best(&controls), None, "control");
        let one = combine(&[&responder], Pooling::with_failure(prior, 0.3));
        assert!(one.singles[1] > 0.99 && best(&one) == best(&responder), "{one:?}");
        let mut a = Combination::new(3, Pooling::with_failure(prior, 0.15));
        assert!(a.merge(&Combination::new(3, Pooling::responding(prior))).is_err());
    }

    /// The most probable answer; None: control.
    fn top_answer(s: &SetScores) -> Option<Answer> {
        let gene = s.gene_answers().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        (gene.1 > s.control).then_some(gene.0)
    }

    #[test]
    fn tensor_loss_matches_the_exact_likelihood() {
        let device = Device::flex();
        let logits = [2.0f32, -1.0, 0.5, 11.5, -11.0];
        let count = [0.1f32, 0.2, 0.3];
        let s = SetScores::from_logits(&logits, &count);
        let l = Tensor::<2>::from_data(TensorData::new(logits.to_vec(), [1, 5]), &device);
        let c = Tensor::<2>::from_data(TensorData::new(count.to_vec(), [1, 3]), &device);
        // The true set {0, 2}: a pair.
        let y = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 0.0], [1, 5]), &device);
        let k = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0, 1.0], [1, 3]), &device);
        let nll: f32 = set_nll(l, c, y, k).into_data().try_to_vec::<f32>().unwrap()[0];
        let expected = -s.pairs[pair_index(0, 2, 5)].ln();
        assert!((nll as f64 - expected).abs() < 1e-3, "{nll} vs {expected}");
    }

    /// A genome-wide candidate set (10,000 single targets): the answers are control and the
    /// singles, whose probabilities are those of the same logits with pairs given no mass.
    #[test]
    fn beyond_the_pair_limit_the_answers_are_control_and_singles() {
        let n = 10_000;
        let gene: Vec<f32> = (0..n).map(|a| ((a * 37 % 101) as f32 / 10.0) - 5.0).collect();
        let count = [0.5f32, 1.0, 0.2];
        let (s, logs) = SetScores::from_parts_with_logs(&gene, &count, None, 1.0);
        assert_eq!((s.singles.len(), s.pairs.len(), logs.len()), (n, 0, 1 + n));
        assert!((s.control + s.singles.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // P(single a) / P(control) = e^{c1 + l_a − c0} / Σ e^{l}: the pair size's share is left out.
        let z: f64 = gene.iter().map(|&l| (l as f64).exp()).sum();
        let ratio = s.singles[7] / s.control;
        assert!((ratio - (1.0f64 - 0.5 + gene[7] as f64).exp() / z).abs() < 1e-9 * ratio);
        assert_eq!(s.probability(&[3, 9]), 0.0);
        assert_eq!((SetScores::uniform(n).pairs.len(), pair_count(MAX_PAIR_CANDIDATES + 1)), (0, 0));
        let mut group = Combination::new(n, Pooling::with_failure(answer_prior([0.1, 0.9, 0.0], n), 0.1));
        group.add_logs(&logs);
        group.add(&s);
        let both = group.finish();
        assert_eq!(both.pairs.len(), 0);
        let top = (0..n).max_by(|&a, &b| s.singles[a].total_cmp(&s.singles[b])).unwrap();
        assert!(both.singles[top] > s.singles[top], "two cells agreeing sharpen the group's top answer");
        assert_eq!(pair_count(MAX_PAIR_CANDIDATES), MAX_PAIR_CANDIDATES * (MAX_PAIR_CANDIDATES - 1) / 2);
    }
}
