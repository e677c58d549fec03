//! Honest splits: whole conditions are held out, never random cells.
//!
//! - `heldout-pairs`: control + every single + half of the pairs train; the other pairs test.
//! - `unseen-genes`: additionally, a fifth of the target genes are never seen as singles (their
//!   singles and every pair containing them move to the test side).
//! - `all`: every condition trains (the default model).
//!
//! In each, a tenth of the training pairs (at least one) is held out as validation conditions for
//! early stopping.

use mamba_perturb::labels::Perturbation;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitKind {
    All,
    HeldoutPairs,
    UnseenGenes,
}

impl SplitKind {
    pub fn name(&self) -> &'static str {
        match self {
            SplitKind::All => "all",
            SplitKind::HeldoutPairs => "heldout-pairs",
            SplitKind::UnseenGenes => "unseen-genes",
        }
    }
}

impl std::str::FromStr for SplitKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(SplitKind::All),
            "heldout-pairs" => Ok(SplitKind::HeldoutPairs),
            "unseen-genes" => Ok(SplitKind::UnseenGenes),
            o => Err(format!("{o}: use all, heldout-pairs or unseen-genes")),
        }
    }
}

/// Which conditions go where (indices into the sorted condition list).
#[derive(Clone, Debug)]
pub struct ConditionSplit {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
    pub test: Vec<usize>,
    /// Genes never seen as singles (unseen-genes split only).
    pub unseen_genes: Vec<String>,
}

pub fn split_conditions(conditions: &[Perturbation], kind: SplitKind, seed: u64) -> ConditionSplit {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5117);
    let mut pairs: Vec<usize> = (0..conditions.len()).filter(|&k| conditions[k].genes().len() == 2).collect();
    pairs.shuffle(&mut rng);
    let mut unseen_genes = Vec::new();
    let (mut train, mut test): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    if kind == SplitKind::UnseenGenes {
        let mut genes: Vec<String> =
            conditions.iter().filter(|c| c.genes().len() == 1).map(|c| c.genes()[0].clone()).collect();
        genes.shuffle(&mut rng);
        unseen_genes = genes[..genes.len() / 5].to_vec();
        unseen_genes.sort();
    }
    let touches_unseen = |k: usize| conditions[k].genes().iter().any(|g| unseen_genes.contains(g));
    for (k, c) in conditions.iter().enumerate() {
        if c.genes().len() < 2 {
            if touches_unseen(k) { test.push(k) } else { train.push(k) }
        }
    }
    let half = match kind {
        SplitKind::All => pairs.len(),
        _ => pairs.len() / 2,
    };
    for (r, &k) in pairs.iter().enumerate() {
        if r < half && !touches_unseen(k) { train.push(k) } else { test.push(k) }
    }
    // Validation: a tenth of the training pairs, whole conditions.
    let train_pairs: Vec<usize> = train.iter().cloned().filter(|&k| conditions[k].genes().len() == 2).collect();
    let n_valid = (train_pairs.len() / 10).max(1).min(train_pairs.len());
    let valid: Vec<usize> = train_pairs[..n_valid].to_vec();
    train.retain(|k| !valid.contains(k));
    train.sort();
    test.sort();
    ConditionSplit { train, valid, test, unseen_genes }
}

/// The cells of the given conditions.
pub fn rows_of(condition_of_cell: &[usize], conditions: &[usize]) -> Vec<usize> {
    let set: std::collections::HashSet<usize> = conditions.iter().cloned().collect();
    (0..condition_of_cell.len()).filter(|i| set.contains(&condition_of_cell[*i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design() -> Vec<Perturbation> {
        let genes = ["A", "B", "C", "D", "E", "F", "G", "H", "I", "J"];
        let mut c = vec![Perturbation::control()];
        c.extend(genes.iter().map(|g| Perturbation::from_genes([*g])));
        for i in 0..genes.len() {
            for j in i + 1..genes.len() {
                c.push(Perturbation::from_genes([genes[i], genes[j]]));
            }
        }
        c.sort();
        c
    }

    #[test]
    fn heldout_pairs_keep_all_singles_and_split_pairs_in_half() {
        let c = design();
        let s = split_conditions(&c, SplitKind::HeldoutPairs, 1);
        let singles_train = s.train.iter().filter(|&&k| c[k].genes().len() <= 1).count();
        assert_eq!(singles_train, 11, "control + 10 singles train");
        assert!(s.test.iter().all(|&k| c[k].genes().len() == 2));
        assert_eq!(s.train.len() + s.valid.len() + s.test.len(), c.len());
        assert_eq!(s.test.len(), 45 - 22);
        for k in &s.test {
            assert!(!s.train.contains(k) && !s.valid.contains(k), "whole conditions are disjoint");
        }
        assert_ne!(split_conditions(&c, SplitKind::HeldoutPairs, 2).test, s.test, "seeds differ");
    }

    #[test]
    fn unseen_genes_never_appear_in_training() {
        let c = design();
        let s = split_conditions(&c, SplitKind::UnseenGenes, 3);
        assert_eq!(s.unseen_genes.len(), 2);
        for &k in s.train.iter().chain(&s.valid) {
            assert!(c[k].genes().iter().all(|g| !s.unseen_genes.contains(g)), "{}", c[k]);
        }
    }
}
