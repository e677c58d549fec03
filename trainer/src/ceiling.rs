//! The Bayes-ceiling rows of `bench` (`oracle`, `oracle-additive`): for a file the simulator wrote,
//! the posterior over the design's conditions with the world known (`simulate::oracle`), turned
//! into the same scores every method gives. Other files get no ceiling rows, and a reason.

use mamba_perturb::model::sets::SetScores;
use mamba_perturb::normalize::{self, ValueKind};
use mamba_perturb::simulate::World;
use mamba_perturb::simulate::oracle::{self, Likelihoods, Oracle, Variant};
use serde_json::{Value, json};

use crate::dataset::Labelled;
use crate::error::CliError;

pub const VARIANTS: [Variant; 2] = [Variant::Truth, Variant::Additive];

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

/// The oracle over one evaluated file, with its prior and how its conditions name candidates.
pub struct Ceiling<'w> {
    oracle: Oracle<'w>,
    answers: Vec<Option<Vec<usize>>>,
    n_candidates: usize,
    log_prior: Vec<f64>,
    control_share: f64,
}

impl<'w> Ceiling<'w> {
    /// `candidates`: the answers every method ranks (the training file's).
    pub fn new(world: &'w World, file: &Labelled, candidates: &[String]) -> Result<Ceiling<'w>, String> {
        let oracle = Oracle::new(world, &file.data.genes, file.data.gene_ids.as_deref());
        let control_share =
            file.labels.iter().filter(|l| l.is_control()).count() as f64 / file.labels.len().max(1) as f64;
        let log_prior = oracle.design_log_prior(control_share);
        let answers = oracle::candidate_answers(&oracle.conditions(), candidates);
        if answers.iter().all(|a| a.is_none()) {
            return Err("none of the world's conditions names the candidates".into());
        }
        Ok(Ceiling { oracle, answers, n_candidates: candidates.len(), log_prior, control_share })
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
    pub fn scores(&self, lik: &Likelihoods, groups: &[Vec<usize>], variant: Variant) -> Vec<SetScores> {
        groups
            .iter()
            .map(|members| {
                let post = self.oracle.posterior(lik, members, variant, &self.log_prior);
                oracle::set_scores(&post, &self.answers, self.n_candidates)
            })
            .collect()
    }

    /// The prior, as the report states it.
    pub fn prior_json(&self) -> Value {
        let shares: Vec<f64> = self.log_prior.iter().map(|v| v.exp()).collect();
        let of = |n: usize| {
            let conds = self.oracle.conditions();
            let v: Vec<f64> =
                conds.iter().zip(&shares).filter(|(c, _)| c.genes().len() == n).map(|(_, &s)| s).collect();
            json!({"conditions": v.len(), "each": v.first(), "total": v.iter().sum::<f64>()})
        };
        json!({
            "kind": "design",
            "rule": "control: the file's share of control cells; the rest split as the simulator allocates cells, single_to_double_cells (2) per single and 1 per double (each condition's log-normal spread has the same mean, so it drops out)",
            "control": self.control_share,
            "single": of(1),
            "double": of(2),
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
            assert_eq!(c.prior_json()["single"]["conditions"], 105);
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
