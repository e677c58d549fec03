//! Scoring predictions against true gene sets, the same way everywhere: the benchmark, `eval`, and
//! the accuracy the page shows. Every method produces `SetScores` (control, each single, each pair).

use crate::model::sets::{Answer, SetScores};

/// 0-based rank of the true answer among all 1 + C + C(C−1)/2 answers (ties count against it).
pub fn rank_of(s: &SetScores, truth: &[usize]) -> usize {
    if truth.len() > 2 {
        return usize::MAX;
    }
    let p = s.probability(truth);
    let better = |q: &f64| *q >= p;
    (s.control >= p) as usize
        + s.singles.iter().filter(|q| better(q)).count()
        + s.pairs.iter().filter(|q| better(q)).count()
        - 1
}

/// Marginal probability that each candidate gene is perturbed.
pub fn marginals(s: &SetScores) -> Vec<f64> {
    let mut m = s.singles.clone();
    for (answer, p) in s.gene_answers() {
        if let Answer::Pair(a, b) = answer {
            m[a] += p;
            m[b] += p;
        }
    }
    m
}

/// The probability of the most probable answer.
pub fn top_probability(s: &SetScores) -> f64 {
    s.singles.iter().chain(&s.pairs).fold(s.control, |a, &b| a.max(b))
}

/// The genes of the single most probable answer.
pub fn top_answer(s: &SetScores) -> Vec<usize> {
    best_answer(s, |_| true)
        .map_or_else(Vec::new, |(answer, p)| if p > s.control { answer.genes() } else { Vec::new() })
}

/// The most probable single or pair among those `keep` accepts (the first one on ties).
pub fn best_answer(s: &SetScores, keep: impl Fn(Answer) -> bool) -> Option<(Answer, f64)> {
    s.gene_answers().filter(|&(a, _)| keep(a)).fold(None, |best, (a, p)| match best {
        Some((_, q)) if q >= p => best,
        _ => Some((a, p)),
    })
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Scores {
    pub exact_top1: f64,
    pub exact_top5: f64,
    pub exact_top10: f64,
    pub any_gene_hit1: f64,
    pub mrr: f64,
    pub micro_f1: f64,
    /// Expected calibration error of the top-1 answer's probability (15 equal-width bins).
    pub ece_top1: f64,
    pub n: usize,
}

pub const METRIC_NAMES: [&str; 7] =
    ["exact_pair_top1", "exact_pair_top5", "exact_pair_top10", "any_gene_hit1", "mrr", "micro_f1", "ece_top1"];

/// Bins of the calibration error.
pub const ECE_BINS: usize = 15;

impl Scores {
    pub fn values(&self) -> [f64; 7] {
        [self.exact_top1, self.exact_top5, self.exact_top10, self.any_gene_hit1, self.mrr, self.micro_f1, self.ece_top1]
    }
}

/// Scores predictions for examples whose true gene sets are `truths`.
pub fn score(preds: &[SetScores], truths: &[Vec<usize>]) -> Scores {
    let mut tally = Tally::default();
    preds.iter().zip(truths).for_each(|(s, truth)| tally.add(s, truth));
    tally.scores()
}

/// `Scores` counted one example at a time, so that a large file's cells need not be held at once.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    n: usize,
    top1: f64,
    top5: f64,
    top10: f64,
    hit: f64,
    reciprocal_ranks: f64,
    true_positives: f64,
    false_positives: f64,
    false_negatives: f64,
    bins: [ReliabilityBin; ECE_BINS],
}

impl Tally {
    pub fn add(&mut self, s: &SetScores, truth: &[usize]) {
        let r = rank_of(s, truth);
        add_to_bins(&mut self.bins, s, r);
        self.n += 1;
        self.top1 += (r < 1) as u8 as f64;
        self.top5 += (r < 5) as u8 as f64;
        self.top10 += (r < 10) as u8 as f64;
        self.reciprocal_ranks += 1.0 / (r as f64 + 1.0);
        let top = top_answer(s);
        // "At least one gene right" (for control: predicting control).
        self.hit += if truth.is_empty() {
            top.is_empty() as u8 as f64
        } else {
            top.iter().any(|g| truth.contains(g)) as u8 as f64
        };
        let called: Vec<usize> = marginals(s).iter().enumerate().filter(|(_, p)| **p >= 0.5).map(|(g, _)| g).collect();
        self.true_positives += called.iter().filter(|g| truth.contains(g)).count() as f64;
        self.false_positives += called.iter().filter(|g| !truth.contains(g)).count() as f64;
        self.false_negatives += truth.iter().filter(|g| !called.contains(g)).count() as f64;
    }

    /// Adds another tally's examples (a chunk scored elsewhere).
    pub fn merge(&mut self, other: &Tally) {
        self.n += other.n;
        self.top1 += other.top1;
        self.top5 += other.top5;
        self.top10 += other.top10;
        self.hit += other.hit;
        self.reciprocal_ranks += other.reciprocal_ranks;
        self.true_positives += other.true_positives;
        self.false_positives += other.false_positives;
        self.false_negatives += other.false_negatives;
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.examples += b.examples;
            a.confidence += b.confidence;
            a.hits += b.hits;
        }
    }

    pub fn scores(&self) -> Scores {
        if self.n == 0 {
            return Scores::default();
        }
        let nf = self.n as f64;
        let tp = self.true_positives;
        let f1 = if tp == 0.0 { 0.0 } else { 2.0 * tp / (2.0 * tp + self.false_positives + self.false_negatives) };
        Scores {
            exact_top1: self.top1 / nf,
            exact_top5: self.top5 / nf,
            exact_top10: self.top10 / nf,
            any_gene_hit1: self.hit / nf,
            mrr: self.reciprocal_ranks / nf,
            micro_f1: f1,
            ece_top1: self.bins.iter().map(|b| (b.hits - b.confidence).abs()).sum::<f64>() / nf,
            n: self.n,
        }
    }
}

/// One bin of a reliability diagram: the examples whose top answer's probability fell in it, the
/// sum of those probabilities and how many of those top answers were right.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReliabilityBin {
    pub examples: usize,
    pub confidence: f64,
    pub hits: f64,
}

/// The top answer's probability against its accuracy, in `ECE_BINS` equal-width bins (sums, so bins
/// of several runs add up).
pub fn reliability(preds: &[SetScores], truths: &[Vec<usize>]) -> [ReliabilityBin; ECE_BINS] {
    let mut bins = [ReliabilityBin::default(); ECE_BINS];
    preds.iter().zip(truths).for_each(|(s, truth)| add_to_bins(&mut bins, s, rank_of(s, truth)));
    bins
}

/// Counts one example, whose true answer ranks `rank`, into the bin of its top probability.
fn add_to_bins(bins: &mut [ReliabilityBin; ECE_BINS], s: &SetScores, rank: usize) {
    let confidence = top_probability(s);
    let bin = &mut bins[((confidence * ECE_BINS as f64) as usize).min(ECE_BINS - 1)];
    bin.examples += 1;
    bin.confidence += confidence;
    bin.hits += (rank == 0) as u8 as f64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_scores_a_known_prediction() {
        // Candidates 0..4; the pair (0, 1) is most likely, then single 2.
        let s = SetScores::from_logits(&[3.0, 2.5, 1.0, -2.0], &[-5.0, 0.0, 1.0]);
        assert_eq!(rank_of(&s, &[0, 1]), 0);
        assert_eq!(top_answer(&s), vec![0, 1]);
        let sc = score(&[s.clone(), s.clone()], &[vec![0, 1], vec![2, 3]]);
        assert_eq!(sc.exact_top1, 0.5);
        assert_eq!(sc.any_gene_hit1, 0.5);
        assert!(rank_of(&s, &[2, 3]) > 0);
        let m = marginals(&s);
        assert!(m[0] > 0.5 && m[3] < 0.5);
    }

    #[test]
    fn calibration_error_is_the_gap_between_confidence_and_accuracy() {
        let s = SetScores::from_logits(&[3.0, 2.5, 1.0, -2.0], &[-5.0, 0.0, 1.0]);
        let p = top_probability(&s);
        // Right every time: the gap is 1 - p; wrong every time: p.
        assert!((score(std::slice::from_ref(&s), &[vec![0, 1]]).ece_top1 - (1.0 - p)).abs() < 1e-12);
        assert!((score(&[s.clone(), s.clone()], &[vec![2], vec![3]]).ece_top1 - p).abs() < 1e-12);
    }
}
