//! The Bayes-ceiling rows of `bench` (`oracle`, `oracle-additive`): for a file the simulator wrote,
//! the posterior over the design's conditions with the world known (`simulate::oracle`), turned
//! into the same scores every method gives. Other files get no ceiling rows, and a reason.

use mamba_perturb::model::sets::SetScores;
use mamba_perturb::normalize::{self, ValueKind};
use mamba_perturb::simulate::World;
use mamba_perturb::simulate::oracle::{Likelihoods, Oracle, Prior, Variant};
use serde_json::{Value, json};

use crate::dataset::Labelled;
use crate::error::CliError;

pub use mamba_perturb::simulate::oracle::CEILINGS;

/// The world behind a file, or why the file gets no ceiling rows.
pub fn world_of(file: &Labelled) -> Result<World, String> {
    let Some(json) = &file.data.world else {
        return Err("the file carries no uns/world (only files written by `mamba-perturb simulate` do)".into());
    };
    // The likelihood is of raw counts; a file with only log-normalised values (GEARS layout) has none.
    if normalize::detect(&file.data.matrix) != ValueKind::Counts {
        return Err(format!("its matrix ({}) is not raw counts", file.data.matrix_source));
    }
    World::from_description(json)
}

/// The oracle over one evaluated file, with its priors.
pub struct Ceiling<'w> {
    oracle: Oracle<'w>,
    /// ln prior per answer slot: what every method knows, and the design's.
    answers_prior: Vec<f64>,
    design_prior: Vec<f64>,
    control_share: f64,
}

impl<'w> Ceiling<'w> {
    /// `candidates`: the answers every method ranks (the training file's).
    pub fn new(world: &'w World, file: &Labelled, candidates: &[String]) -> Result<Ceiling<'w>, String> {
        let oracle = Oracle::new(world, &file.data.genes, file.data.gene_ids.as_deref(), candidates);
        let control_share =
            file.labels.iter().filter(|l| l.is_control()).count() as f64 / file.labels.len().max(1) as f64;
        if oracle.answer_counts().0[1] == 0 {
            return Err("none of the world's targets is a candidate".into());
        }
        let answers_prior = oracle.log_prior(Prior::Answers, control_share);
        let design_prior = oracle.log_prior(Prior::Design, control_share);
        Ok(Ceiling { oracle, answers_prior, design_prior, control_share })
    }

    /// log L of each test cell under every profile over the file columns `columns` (the genes the
    /// methods see in this row).
    pub fn likelihoods(&self, file: &Labelled, rows: &[usize], columns: &[usize]) -> Result<Likelihoods, CliError> {
        self.oracle
            .likelihoods(&file.data.matrix, rows, columns)
            .map_err(|e| CliError::Data { file: file.name.clone(), problem: format!("oracle: {e}") })
    }

    /// Scores of each group of cells (one cell, or the members of a pseudobulk) that share a
    /// condition: the posterior given all of them.
    pub fn scores(&self, lik: &Likelihoods, groups: &[Vec<usize>], variant: Variant, prior: Prior) -> Vec<SetScores> {
        let log_prior = match prior {
            Prior::Answers => &self.answers_prior,
            Prior::Design => &self.design_prior,
        };
        groups.iter().map(|members| self.oracle.posterior(lik, members, variant, log_prior)).collect()
    }

    /// The priors, as the report states them.
    pub fn prior_json(&self) -> Value {
        let ([_, singles, pairs], design_pairs) = self.oracle.answer_counts();
        let n = singles;
        let mass = |p: &[f64], r: std::ops::Range<usize>| p[r].iter().map(|v| v.exp()).sum::<f64>();
        let sizes =
            |p: &[f64]| json!({"control": p[0].exp(), "singles": mass(p, 1..n + 1), "pairs": mass(p, n + 1..p.len())});
        json!({
            "oracle": {"kind": "answers", "singles": singles, "pairs": pairs, "shares": sizes(&self.answers_prior),
                       "rule": "what every method knows: the answers it ranks (control, each candidate, each pair of candidates), the design's size shares, every answer of one size equally likely; a pair outside the design is the additive composition of its singles, with the design doubles' mean depth"},
            "oracle-additive": "the same prior; every pair is the additive composition of its singles",
            "oracle-design": {"kind": "design", "pairs": design_pairs, "shares": sizes(&self.design_prior),
                              "rule": "also knows which pairs the screen holds (no method is told): control the file's share of control cells, the rest split as the simulator allocates cells, single_to_double_cells per single and 1 per double"},
            "control": self.control_share,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamba_perturb::simulate::{Layout, SimConfig, simulate, to_h5ad};

    #[test]
    fn only_simulated_raw_counts_get_ceiling_rows() {
        let sim = simulate(&SimConfig { seed: 2, cells: 900, genes: 200, ..Default::default() }, |_, _| {}).unwrap();
        let dir = std::env::temp_dir().join(format!("mamba-ceiling-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let load = |layout: Layout| {
            let path = dir.join(format!("{layout:?}.h5ad"));
            std::fs::write(&path, to_h5ad(&sim, layout, None).unwrap()).unwrap();
            crate::dataset::load(&path, &Default::default()).unwrap()
        };
        // Raw counts in layers/counts (pertpy) or X (scPerturb): the world is rebuilt.
        for layout in [Layout::Pertpy, Layout::Scperturb] {
            let file = load(layout);
            let world = world_of(&file).unwrap();
            assert_eq!(world.seed, 2);
            let c = Ceiling::new(&world, &file, &file.candidates).unwrap();
            assert_eq!(c.prior_json()["oracle"]["singles"], 105);
            assert_eq!(c.prior_json()["oracle-design"]["pairs"], 131);
        }
        // GEARS keeps only log-normalised values: no likelihood of counts, and the reason says so.
        let reason = world_of(&load(Layout::Gears)).err().unwrap();
        assert!(reason.contains("not raw counts"), "{reason}");
        // A file that does not carry its world.
        let mut file = load(Layout::Pertpy);
        file.data.world = None;
        assert!(world_of(&file).err().unwrap().contains("uns/world"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
