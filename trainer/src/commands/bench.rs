//! `bench --data FILE`: the honest held-out benchmark (after Ahlmann-Eltze et al. 2025). For each
//! seed, split (held-out pairs; unseen genes) and target visibility (visible; masked), the model
//! and every baseline are fitted on the training conditions and scored on whole held-out
//! conditions at cell, pseudobulk (all cells of a condition) and 10-cell pseudobulk level, overall
//! and per genetic-interaction class of the pair. A file the simulator wrote also gets Bayes-ceiling
//! rows (`ceiling.rs`). Writes results/benchmark.{json,md,svg}.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use mamba_perturb::model::GenomeFeatures;
use mamba_perturb::model::sets::{self, SetScores};
use mamba_perturb::predict::{self, Predictor, mean_profile, set_scores};
use mamba_perturb::reference::{Reference, ReferenceCells};
use mamba_perturb::simulate::design;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use crate::baselines::{self, LinearBaseline, MlpAblation, TrainView};
use crate::ceiling::{self, Ceiling};
use crate::dataset;
use crate::splits::{self, SplitKind};
use crate::training::{self, SetModel, Split};
use mamba_perturb::metrics::{self, ECE_BINS, METRIC_NAMES, ReliabilityBin};

use crate::error::{CliError, flag, io_at, output};

#[derive(clap::Args)]
pub struct Args {
    /// Labelled data (.h5ad); the README's table uses a simulated Norman-design file.
    #[arg(long)]
    pub data: PathBuf,
    /// Comma-separated seeds (each gives its own split and initialisation).
    #[arg(long, default_value = "0,1,2,3,4")]
    pub seeds: String,
    #[arg(long, default_value = "heldout-pairs,unseen-genes")]
    pub splits: String,
    /// visible, masked or both.
    #[arg(long, default_value = "visible,masked")]
    pub targets: String,
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Another labelled file (another world): adds split `transfer`, training on every condition of
    /// --data and testing on every cell of this file.
    #[arg(long)]
    pub transfer_data: Option<PathBuf>,
    /// Leave out the ablation rows (`attention-no-position`, `mlp`), each a model of its own to train.
    #[arg(long)]
    pub skip_ablations: bool,
    /// Train the ablations on the first N seeds only (the model and baselines get every seed): each
    /// ablation is a model of its own, and three seeds say whether it helps at a fraction of the time.
    #[arg(long)]
    pub ablation_seeds: Option<usize>,
    #[command(flatten)]
    pub model: crate::training::TrainConfig,
    #[command(flatten)]
    pub read: super::ReadArgs,
}

type Key = (String, String, String, String, String, String, String); // method, split, targets, panel, level, class, metric

/// Evaluation-only panels (no retraining): (name, share of non-target panel genes kept, targets dropped too).
const PARTIAL_PANELS: [(&str, f64, bool); 4] = [
    ("partial-panel-75", 0.75, false),
    ("partial-panel-50", 0.5, false),
    ("partial-panel-25", 0.25, false),
    ("partial-panel-50-targets", 0.5, true),
];

const ABLATION_NO_POSITION: &str = "attention-no-position";
const ABLATION_MLP: &str = "mlp";
const ABLATION_NETWORK_ONLY: &str = "network-only";
const ABLATION_HEAD_ONLY: &str = "additive-head-only";
/// The model's own cell posteriors, pooled as if every cell responded (no guide-failure share).
const ABLATION_RESPONDING_POOLING: &str = "pooling-without-failure";

/// What each row of the table is: the product, a baseline, an ablation, or a ceiling.
fn role(method: &str) -> &'static str {
    match method {
        "mamba-perturb" => "model",
        ABLATION_NO_POSITION
        | ABLATION_MLP
        | ABLATION_NETWORK_ONLY
        | ABLATION_HEAD_ONLY
        | ABLATION_RESPONDING_POOLING => "ablation",
        "oracle" | "oracle-additive" | "oracle-design" => "ceiling",
        _ => "baseline",
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    args.model.device.check()?;
    let seeds: Vec<u64> = args
        .seeds
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| flag("seeds", format!("'{s}' is not a number"))))
        .collect::<Result<_, _>>()?;
    let kinds: Vec<SplitKind> =
        args.splits.split(',').map(|s| s.trim().parse().map_err(|e| flag("splits", e))).collect::<Result<_, _>>()?;
    let visibilities: Vec<bool> = args
        .targets
        .split(',')
        .map(|s| match s.trim() {
            "visible" => Ok(false),
            "masked" => Ok(true),
            o => Err(flag("targets", format!("{o}: use visible and/or masked"))),
        })
        .collect::<Result<_, _>>()?;
    let data = dataset::load(&args.data, &args.read.options()?)?;
    let other = args.transfer_data.as_ref().map(|p| dataset::load(p, &args.read.options()?)).transpose()?;
    if let Some(o) = &other
        && o.candidates != data.candidates
    {
        return Err(CliError::Data {
            file: o.name.clone(),
            problem: format!(
                "its labels name other target genes than {} (transfer needs the same candidates)",
                data.name
            ),
        });
    }
    // Bayes ceilings: the world behind each evaluated file, when the simulator wrote it.
    let data_world = ceiling::world_of(&data);
    let other_world = other.as_ref().map(ceiling::world_of);
    let data_ceiling = data_world.as_ref().map_err(Clone::clone).and_then(|w| Ceiling::new(w, &data, &data.candidates));
    let other_ceiling = match (&other, &other_world) {
        (Some(o), Some(w)) => Some(w.as_ref().map_err(Clone::clone).and_then(|w| Ceiling::new(w, o, &data.candidates))),
        _ => None,
    };
    let mut oracle_seconds = 0.0;
    let mut oracle_unconverged = 0;
    // (split, evaluated on the other file): the named splits, then `transfer` when asked for.
    let mut runs: Vec<(SplitKind, bool)> = kinds.iter().map(|&k| (k, false)).collect();
    if other.is_some() {
        runs.push((SplitKind::All, true));
    }
    let kind = if data.data.simulated { "simulated" } else { "real" };
    let tag = if data.data.simulated { "[simulated] " } else { "" };
    let class_of: BTreeMap<String, String> = design::norman_conditions()
        .into_iter()
        .filter_map(|c| c.gi_class.map(|k| (c.perturbation.to_string(), k.name().to_string())))
        .collect();
    let mut values: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    // The seeds behind each row's values (ablations and rare GI classes have fewer than the run).
    let mut seeds_of: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
    let mut reliability: BTreeMap<(String, String, String), [ReliabilityBin; ECE_BINS]> = BTreeMap::new();
    let mut timings = Vec::new();
    let mut held_out_mix = Vec::new();
    let started = std::time::Instant::now();

    for (seed_index, &seed) in seeds.iter().enumerate() {
        let ablations = !args.skip_ablations && args.ablation_seeds.is_none_or(|n| seed_index < n);
        for &(split_kind, transfer) in &runs {
            let split = splits::split_conditions(&data.conditions, split_kind, seed);
            let split_name = if transfer { "transfer" } else { split_kind.name() };
            for &masked in &visibilities {
                let vis = if masked { "masked" } else { "visible" };
                let label = format!("{tag}seed {seed} {split_name} {vis}");
                let mut margs = args.model.clone();
                margs.seed = seed;
                margs.mask_targets = masked;
                let t0 = std::time::Instant::now();
                let trained = super::train::train_on(&data, &split, &margs, &label)?;
                let mut timing = json!({"seed": seed, "split": split_name, "targets": vis, "unseen_genes": split.unseen_genes,
                    "test_conditions": split.test.len(),
                    "train_seconds": t0.elapsed().as_secs_f64(), "seconds_per_step": trained.card.metrics["seconds_per_train_step"]});
                let panel = trained.panel.clone();
                let (mean, sd) = (trained.card.reference_mean.clone(), trained.card.reference_sd.clone());
                let reference_kind = trained.card.reference;
                let sizes = trained.card.answer_sizes.unwrap_or([1.0 / 3.0; 3]);
                let device = Device::flex();
                let predictor = Predictor::from_parts(trained.card, trained.net, &device);
                // The ablation without gene positions: the same network and training, no chromosome/locus.
                let no_position = match ablations {
                    false => None,
                    true => {
                        let mut nargs = margs.clone();
                        nargs.no_position = true;
                        let t =
                            super::train::train_on(&data, &split, &nargs, &format!("{label} {ABLATION_NO_POSITION}"))?;
                        Some(Predictor::from_parts(t.card, t.net, &device))
                    }
                };

                // Test cells: the held-out conditions, or (transfer) every cell of the other file, its
                // genes matched to the panel by name (absent ones are absent, as in `predict`). Each
                // file is measured against its own cells, as `Predictor::prepare` does.
                let tested = match (&other, transfer) {
                    (Some(o), true) => o,
                    _ => &data,
                };
                let test_rows = match transfer {
                    true => (0..tested.labels.len()).collect(),
                    false => splits::rows_of(&data.condition, &split.test),
                };
                // The tested file's column of each panel gene (None: it does not measure the gene).
                let tested_columns: Vec<Option<usize>> = match transfer {
                    true => tested.columns_of(&data, &panel),
                    false => panel.iter().map(|&j| Some(j)).collect(),
                };
                let mut x_test = tested.dense_columns(&test_rows, &tested_columns);
                let measured: Vec<bool> = tested_columns.iter().map(Option::is_some).collect();
                let reference = match transfer {
                    // Every cell of the other file is tested: its own reference is over all of them.
                    // against what the model expects: all of them, or its control cells.
                    true => {
                        let is_control = test_rows.iter().map(|&i| tested.conditions[tested.condition[i]].is_control());
                        let cells =
                            ReferenceCells { control: Some((is_control.collect(), "control".into())), batches: None };
                        Reference::for_cells(&mut x_test, &measured, reference_kind, (&mean, &sd), &cells).0
                    }
                    false => {
                        Reference { mean: mean.clone(), sd: sd.clone(), measured, source: "the file's cells".into() }
                    }
                };
                let ceiling = match transfer {
                    true => other_ceiling.as_ref().and_then(|c| c.as_ref().ok()),
                    false => data_ceiling.as_ref().ok(),
                };
                let (mut run_oracle_seconds, mut run_oracle_genes) = (0.0, Vec::new());
                if !transfer {
                    // The held-out mix: cells of every answer size the training kept out (validation
                    // pairs, calibration control and singles), by size. A test set of pairs alone
                    // cannot show a trade between sizes. The model's figure is on its card (training
                    // scored these cells); the ceilings score the same cells here.
                    let (_, mut rows) = super::train::training_and_calibration_rows(&data, &split, seed);
                    rows.extend(splits::rows_of(&data.condition, &split.valid));
                    let mut mix = vec![("mamba-perturb", predictor.card.metrics["held_out_top1_by_size"].clone())];
                    if let Ok(c) = data_ceiling.as_ref() {
                        let t = std::time::Instant::now();
                        let lik = c.likelihoods(&data, &rows, &panel)?;
                        run_oracle_seconds += t.elapsed().as_secs_f64();
                        let (truths, members) =
                            (data.targets(&rows), (0..rows.len()).map(|i| vec![i]).collect::<Vec<_>>());
                        for (name, variant, prior) in ceiling::CEILINGS {
                            let scores = c.scores(&lik, &members, variant, prior);
                            let cells: Vec<(&SetScores, &[usize])> =
                                scores.iter().zip(&truths).map(|(s, t)| (s, t.as_slice())).collect();
                            mix.push((name, training::top1_by_size(&cells).to_json(sizes)));
                        }
                    }
                    for (method, row) in mix {
                        eprintln!("{label}: held-out mix, {method}: {row}");
                        held_out_mix.push(
                            json!({"seed": seed, "split": split_name, "targets": vis, "method": method, "top1": row}),
                        );
                    }
                }

                // Baselines see the same training cells (training + validation conditions).
                let mut train_conds = split.train.clone();
                train_conds.extend(&split.valid);
                let train_rows = splits::rows_of(&data.condition, &train_conds);
                let x_train = data.dense(&train_rows, &panel);
                let t_train = data.targets(&train_rows);
                let cand_cols = data.candidate_columns();
                let view = TrainView {
                    g: panel.len(),
                    candidates: &data.candidates,
                    candidate_column: cand_cols
                        .iter()
                        .map(|c| c.and_then(|j| panel.iter().position(|&p| p == j)))
                        .collect(),
                    z: baselines::zscore(&x_train, &mean, &sd),
                    targets: &t_train,
                };
                // The logistic baseline and the mlp ablation: the same training and validation cells.
                let plain = PlainInputs::new(&data, &split, &panel, &mean, &sd);
                let lr = plain.fit(
                    &|d: &Device| LinearBaseline::new(plain.g, plain.c, d),
                    &margs,
                    &format!("{label} logistic"),
                )?;
                let width = 4 * margs.d_model;
                let mlp = ablations.then(|| {
                    let init = |d: &Device| MlpAblation::new(plain.g, plain.c, width, d);
                    plain.fit(&init, &margs, &format!("{label} {ABLATION_MLP}"))
                });
                let mlp = mlp.transpose()?;

                // Every method at every level of one panel: the full one, then genes removed as a file
                // lacking them would (absent for every method, as `Predictor::prepare` leaves them).
                let prior = sets::answer_prior(sizes, data.candidates.len());
                let mut score_panel = |panel_name: &str, x: &[f32], reference: &Reference| -> Result<(), CliError> {
                    let kept = &reference.measured;
                    let truths = tested.targets(&test_rows);
                    let levels = make_levels(&tested.condition, &test_rows, x, panel.len(), &truths, seed);
                    // The ceiling sees exactly the genes this row's methods see: a removed gene is
                    // absent, not a zero count.
                    let oracle_lik = match ceiling {
                        Some(c) => {
                            let columns: Vec<usize> =
                                tested_columns.iter().zip(kept).filter(|(_, k)| **k).filter_map(|(c, _)| *c).collect();
                            let t = std::time::Instant::now();
                            let lik = c.likelihoods(tested, &test_rows, &columns)?;
                            run_oracle_seconds += t.elapsed().as_secs_f64();
                            run_oracle_genes.push(json!({"panel": panel_name, "genes": lik.genes}));
                            oracle_unconverged += lik.unconverged;
                            Some((c, lik))
                        }
                        None => None,
                    };
                    let head_terms = predictor.head_terms(reference);
                    for level in &levels {
                        // Baselines see z-scores against the same reference; an absent gene sits at its centre.
                        let mut z = baselines::zscore(&level.x, &reference.mean, &reference.sd);
                        let g = panel.len();
                        z.iter_mut()
                            .enumerate()
                            .filter(|(k, _)| !reference.measured[k % g])
                            .for_each(|(_, v)| *v = 0.0);
                        // The network runs once: the model is its scores times the head's evidence.
                        let evidence = predictor.evidence(&level.x, head_terms.as_ref());
                        let network = predictor.network_scores(&level.x, reference, 256).map_err(output)?;
                        let model = predictor.combine(network.clone(), &evidence);
                        // The model's groups pool as the core pools them (by the head's group
                        // likelihood when its card says so): from the network, posteriors and rows.
                        let model_groups = (level.name == "cell").then(|| {
                            let pooled = by_condition(level).into_values().map(|members| {
                                let sums =
                                    predictor.group_sums(predictor.pooling(), &members, &network, &model, &level.x);
                                predictor.finish_group(&sums, head_terms.as_ref())
                            });
                            pooled.collect::<Vec<_>>()
                        });
                        let mut methods: Vec<(&str, Vec<SetScores>)> = Vec::new();
                        if predictor.pooling().guide_failure > 0.0 {
                            methods.push((ABLATION_RESPONDING_POOLING, model.clone()));
                        }
                        methods.extend([
                            ("mamba-perturb", model),
                            ("target-upregulation", baselines::upregulation(&view, &z)),
                            ("logistic-regression", score_linear(&lr, &level.x, reference)),
                            ("nearest-centroid", baselines::nearest_centroid(&view, &z)),
                            ("additive-inverse", baselines::additive_inverse(&view, &z)),
                            ("prior-only", baselines::prior_only(&view, level.truths.len())),
                        ]);
                        // The product's two parts alone: the network without the head, the head
                        // without the network (every answer equally likely before its evidence).
                        if !evidence.is_empty() {
                            let flat = vec![SetScores::uniform(data.candidates.len()); evidence.len()];
                            methods.push((ABLATION_HEAD_ONLY, predict::combine(flat, &evidence)));
                            methods.push((ABLATION_NETWORK_ONLY, network));
                        }
                        if let Some(p) = &no_position {
                            methods
                                .push((ABLATION_NO_POSITION, p.score_rows(&level.x, reference, 256).map_err(output)?));
                        }
                        if let Some(m) = &mlp {
                            // The product with an MLP in the network's place: the same head on top.
                            methods.push((
                                ABLATION_MLP,
                                predict::combine(score_linear(m, &level.x, reference), &evidence),
                            ));
                        }
                        for (method, scores) in methods {
                            let key = (method, split_name, vis, panel_name);
                            let (classes, conditions) = (&class_of, &tested.conditions);
                            if level.name == "cell" {
                                // Pseudobulk from the cells' posteriors, for every method.
                                // The model pools with its fitted guide failure; other methods as if every cell responded.
                                let pooling = match (method, &no_position) {
                                    ("mamba-perturb", _) => predictor.pooling(),
                                    (ABLATION_NO_POSITION, Some(p)) => p.pooling(),
                                    _ => sets::Pooling::responding(prior),
                                };
                                let (mut bulk, truths, conds) = posterior_pseudobulk(&scores, level, pooling);
                                if let ("mamba-perturb", Some(groups)) = (method, &model_groups) {
                                    bulk = groups.clone();
                                }
                                let name = "pseudobulk-posterior";
                                record(&mut values, key, name, &bulk, &truths, &conds, classes, conditions);
                            }
                            let (truths, conds) = (&level.truths, &level.conditions);
                            record(&mut values, key, level.name, &scores, truths, conds, classes, conditions);
                            add_reliability(&mut reliability, key, level.name, &scores, truths);
                        }
                        if let Some((c, lik)) = &oracle_lik {
                            for (name, variant, prior) in ceiling::CEILINGS {
                                let scores = c.scores(lik, &level.members, variant, prior);
                                let key = (name, split_name, vis, panel_name);
                                let (truths, conds, all) = (&level.truths, &level.conditions, &tested.conditions);
                                record(&mut values, key, level.name, &scores, truths, conds, &class_of, all);
                                add_reliability(&mut reliability, key, level.name, &scores, truths);
                                // Bayes pools a condition's cells by their likelihoods whatever the
                                // level: its posterior from all cells is also its pseudobulk-posterior.
                                if level.name == "pseudobulk" {
                                    let name = "pseudobulk-posterior";
                                    record(&mut values, key, name, &scores, truths, conds, &class_of, all);
                                }
                            }
                        }
                    }
                    Ok(())
                };
                score_panel("full", &x_test, &reference)?;
                if split_kind == SplitKind::HeldoutPairs && !transfer {
                    let targets: Vec<usize> = view.candidate_column.iter().flatten().copied().collect();
                    for (name, keep, drop_targets) in PARTIAL_PANELS {
                        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9a9e1);
                        let mut x = x_test.clone();
                        let mut partial = reference.clone();
                        let g = panel.len();
                        for j in 0..g {
                            let is_target = targets.contains(&j);
                            if (!is_target || drop_targets) && rand::Rng::random::<f64>(&mut rng) >= keep {
                                x.iter_mut().skip(j).step_by(g).for_each(|v| *v = 0.0);
                                partial.measured[j] = false;
                            }
                        }
                        score_panel(name, &x, &partial)?;
                    }
                }
                let key = (
                    "mamba-perturb".to_string(),
                    split_name.to_string(),
                    vis.to_string(),
                    "full".to_string(),
                    "cell".to_string(),
                    "all".to_string(),
                    "exact_pair_top1".to_string(),
                );
                let oracle_key = (
                    String::from("oracle"),
                    key.1.clone(),
                    key.2.clone(),
                    key.3.clone(),
                    key.4.clone(),
                    key.5.clone(),
                    key.6.clone(),
                );
                eprintln!(
                    "{label}: test exact top-1 (cell) {:.3}{}",
                    values.get(&key).and_then(|v| v.last()).unwrap_or(&f64::NAN),
                    match values.get(&oracle_key).and_then(|v| v.last()) {
                        Some(v) => format!(" (oracle {v:.3}, {run_oracle_seconds:.1} s)"),
                        None => String::new(),
                    }
                );
                if ceiling.is_some() {
                    timing["oracle_seconds"] = json!(run_oracle_seconds);
                    timing["oracle_genes"] = json!(run_oracle_genes);
                    timing["oracle_cells"] = json!(test_rows.len());
                }
                oracle_seconds += run_oracle_seconds;
                timings.push(timing);
            }
        }
        for (key, v) in &values {
            let s = seeds_of.entry(key.clone()).or_default();
            if s.len() < v.len() {
                s.push(seed);
            }
        }
    }

    let results: Vec<serde_json::Value> = values
        .iter()
        .map(|((method, split, targets, panel, level, class, metric), v)| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let sd = if v.len() > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt() } else { 0.0 };
            json!({"method": method, "role": role(method), "split": split, "targets": targets, "panel": panel, "level": level,
                   "class": class, "metric": metric, "mean": mean, "sd": sd, "n_seeds": v.len(), "values": v, "seeds": seeds_of.get(&(method.clone(), split.clone(), targets.clone(), panel.clone(), level.clone(), class.clone(), metric.clone()))})
        })
        .collect();
    let world_json =
        |f: &dataset::Labelled| f.data.world.as_deref().and_then(|w| serde_json::from_str::<serde_json::Value>(w).ok());
    let ceiling_json = |name: &str, c: &Result<Ceiling, String>| match c {
        Ok(c) => json!({"file": name, "rows": true, "prior": c.prior_json()}),
        Err(reason) => json!({"file": name, "rows": false, "reason": format!("no oracle rows: {reason}")}),
    };
    let mut oracle_files = vec![ceiling_json(&data.name, &data_ceiling)];
    if let (Some(o), Some(c)) = (&other, &other_ceiling) {
        oracle_files.push(ceiling_json(&o.name, c));
    }
    let report = json!({
        "transfer_dataset": other.as_ref().map(|o| json!({"name": std::path::Path::new(&o.name).file_name().map(|f| f.to_string_lossy().to_string()),
                    "sha256": o.sha256, "cells": o.labels.len(), "genes": o.data.genes.len(), "simulated": o.data.simulated, "world": world_json(o)})),
        "dataset": {"name": std::path::Path::new(&data.name).file_name().map(|f| f.to_string_lossy().to_string()), "kind": kind,
                    "sha256": data.sha256, "cells": data.labels.len(), "genes": data.data.genes.len(),
                    "conditions": data.conditions.len(), "world": world_json(&data)},
        "oracle_prior": data_ceiling.as_ref().ok().map(|c| c.prior_json()),
        "oracle": {
            "rows": ["oracle", "oracle-additive", "oracle-design"],
            "what": "Bayes posterior with the simulator's world known (expected profiles, dispersion, depth, cell-state loadings, guide failure). oracle: over the answers every method ranks (control, each candidate, each pair of candidates), a pair outside the design being the additive composition of its singles; oracle-additive: the same with every pair the additive composition of its singles (c1 = c2 = 1, no residual, both CRISPRa boosts); oracle-design: over the design's conditions only (it knows which pairs the screen holds, which no method is told)",
            "screening": "pairs outside the design are screened per cell by their log density at the control fit's mode; the 48 best get the full Laplace fit, the rest the screen value plus the median correction of those fitted (tested against full fits: same top-1, probabilities within 0.01)",
            "likelihood": "P(x | k) = (1 - f) L_k(x) + f L_control(x) (guide failure f); L integrates depth and the 3 cell-state axes out of the negative binomial by a Laplace approximation (Newton to the mode); raw counts of exactly the genes the row's methods see",
            "files": oracle_files,
            "seconds": oracle_seconds,
            "unconverged_fits": oracle_unconverged,
        },
        "pseudobulk_levels": {"pseudobulk": "mean normalised profile of all test cells of a condition, through the method",
                              "pseudobulk10": "the same for random groups of 10 cells",
                              "pseudobulk-posterior": "log P(S | cells) = sum of log P(S | cell) - (n - 1) log P(S), with P(S) uniform within each answer size and P(size) from the design (every labelled cell of the training file, card answer_sizes); the model's rows take each cell of a perturbed S as a failed, control-like cell with its fitted probability f (card guide_failure; row pooling-without-failure: the cells' posteriors with f = 0); where the card has a group_model, the model's row instead scores the group's mean levels by the additive head's Gaussian likelihood (each fold's sampling variance counted once) plus the cells' network log likelihood ratios times its weight",
                              "oracle": "oracle rows pool a group's cells by their likelihoods at every pseudobulk level (log P(k | cells) = sum of log P(x_i | k) + log prior, the exact Bayes combination), not through a mean profile; their pseudobulk and pseudobulk-posterior are therefore the same posterior"},
        "seeds": seeds,
        "reliability": reliability.iter().map(|((method, split, targets), bins)| json!({"method": method, "split": split,
            "targets": targets, "level": "cell", "panel": "full", "bins": bins})).collect::<Vec<_>>(),
        "model": &args.model,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "total_seconds": started.elapsed().as_secs_f64(),
        "timings": timings,
        "held_out_mix": {
            "what": "exact top-1 on the cells the training kept out of every answer size (validation pairs; calibration control and single cells, which the head and temperature are chosen on), per size and weighted to the design's size shares (mix); the test set of heldout-pairs is pairs only",
            "rows": held_out_mix,
        },
        "results": results,
    });
    std::fs::create_dir_all(&args.out).map_err(io_at(&args.out))?;
    std::fs::write(args.out.join("benchmark.json"), json_rows_per_line(&report).map_err(output)?)
        .map_err(io_at(&args.out))?;
    let md = write_report(&report, &args.out)?;
    println!("{md}");
    eprintln!(
        "{tag}wrote {}/benchmark.json, benchmark.md, benchmark.svg, reliability.svg in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Writes the human-readable faces of a results JSON into `dir` (benchmark.md, benchmark.svg,
/// reliability.svg) and returns the Markdown.
/// The report as indented JSON, except that each result row takes one line: thousands of rows
/// indented key by key made the file several megabytes.
fn json_rows_per_line(report: &serde_json::Value) -> serde_json::Result<String> {
    let mut head = report.clone();
    let rows = head["results"].take();
    head["results"] = json!([]);
    let text = serde_json::to_string_pretty(&head)?;
    let lines = rows.as_array().map_or(Ok(Vec::new()), |r| r.iter().map(serde_json::to_string).collect())?;
    Ok(text.replacen("\"results\": []", &format!("\"results\": [\n    {}\n  ]", lines.join(",\n    ")), 1))
}

fn write_report(report: &serde_json::Value, dir: &std::path::Path) -> Result<String, CliError> {
    let md = crate::report::markdown(report);
    std::fs::write(dir.join("benchmark.md"), &md).map_err(io_at(dir))?;
    std::fs::write(dir.join("benchmark.svg"), crate::report::bar_chart(report)).map_err(io_at(dir))?;
    std::fs::write(dir.join("reliability.svg"), crate::report::reliability_diagram(report)).map_err(io_at(dir))?;
    Ok(md)
}

/// `bench-report DIR`: writes DIR's tables and plots again from its benchmark.json (after the report
/// code changed), running nothing.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// A folder `bench` wrote.
    pub dir: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<(), CliError> {
    let path = args.dir.join("benchmark.json");
    let text = std::fs::read_to_string(&path).map_err(io_at(&path))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CliError::Output(format!("{}: {e}", path.display())))?;
    write_report(&report, &args.dir)?;
    eprintln!("wrote {}/benchmark.md, benchmark.svg, reliability.svg", args.dir.display());
    Ok(())
}

/// A full-panel cell row's reliability bins, summed over seeds (the report's reliability diagram).
fn add_reliability(
    reliability: &mut BTreeMap<(String, String, String), [ReliabilityBin; ECE_BINS]>,
    (method, split, targets, panel): (&str, &str, &str, &str),
    level: &str,
    scores: &[SetScores],
    truths: &[Vec<usize>],
) {
    if level != "cell" || panel != "full" {
        return;
    }
    let sum = reliability.entry((method.into(), split.into(), targets.into())).or_default();
    for (total, bin) in sum.iter_mut().zip(metrics::reliability(scores, truths)) {
        total.examples += bin.examples;
        total.confidence += bin.confidence;
        total.hits += bin.hits;
    }
}

/// Adds one level's metrics (overall and per genetic-interaction class) to `values`.
#[allow(clippy::too_many_arguments)]
fn record(
    values: &mut BTreeMap<Key, Vec<f64>>,
    (method, split, targets, panel): (&str, &str, &str, &str),
    level: &str,
    scores: &[SetScores],
    truths: &[Vec<usize>],
    conditions: &[usize],
    class_of: &BTreeMap<String, String>,
    all_conditions: &[mamba_perturb::labels::Perturbation],
) {
    let mut classes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, &cond) in conditions.iter().enumerate() {
        classes.entry("all".into()).or_default().push(i);
        // The interaction-class breakdown: full panel, single cells (its table's level).
        if let Some(k) = class_of.get(&all_conditions[cond].to_string()).filter(|_| panel == "full" && level == "cell")
        {
            classes.entry(k.clone()).or_default().push(i);
        }
    }
    for (class, idx) in classes {
        let s: Vec<SetScores> = idx.iter().map(|&i| scores[i].clone()).collect();
        let t: Vec<Vec<usize>> = idx.iter().map(|&i| truths[i].clone()).collect();
        let collapse = (level == "cell").then(|| ("answer_collapse", answer_collapse(&s, &t)));
        let named = METRIC_NAMES.iter().copied().zip(metrics::score(&s, &t).values()).chain(collapse);
        for (name, v) in named {
            let key = (
                method.into(),
                split.into(),
                targets.into(),
                panel.into(),
                level.into(),
                class.clone(),
                name.to_string(),
            );
            values.entry(key).or_default().push(v);
        }
    }
}

/// How far the most frequent top-1 answer exceeds its allowed share of the cells, max(20 %,
/// 1.5 × its true share): ≤ 0 when no answer swallows the cells (as a partial panel once made nearly
/// every cell one of two answers).
fn answer_collapse(scores: &[SetScores], truths: &[Vec<usize>]) -> f64 {
    let mut predicted: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    scores.iter().for_each(|s| *predicted.entry(metrics::top_answer(s)).or_default() += 1);
    let n = scores.len().max(1) as f64;
    predicted
        .iter()
        .map(|(answer, &count)| {
            let truth = truths.iter().filter(|t| *t == answer).count() as f64 / n;
            count as f64 / n - (0.2f64).max(1.5 * truth)
        })
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Pseudobulk of each test condition from its cells' posteriors (`sets::combine`, as the page's).
fn posterior_pseudobulk(
    cells: &[SetScores],
    level: &Level,
    pooling: sets::Pooling,
) -> (Vec<SetScores>, Vec<Vec<usize>>, Vec<usize>) {
    let (mut out, mut truths, mut conds) = (Vec::new(), Vec::new(), Vec::new());
    for (cond, members) in by_condition(level) {
        out.push(sets::combine(&members.iter().map(|&i| &cells[i]).collect::<Vec<_>>(), pooling));
        truths.push(level.truths[members[0]].clone());
        conds.push(cond);
    }
    (out, truths, conds)
}

/// The rows of each test condition at one level, by condition.
fn by_condition(level: &Level) -> BTreeMap<usize, Vec<usize>> {
    let mut by_cond: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    level.conditions.iter().enumerate().for_each(|(i, &c)| by_cond.entry(c).or_default().push(i));
    by_cond
}

/// Inputs of one evaluation level.
struct Level {
    name: &'static str,
    x: Vec<f32>,
    truths: Vec<Vec<usize>>,
    conditions: Vec<usize>,
    /// The test cells (positions in the test rows) behind each row of `x`.
    members: Vec<Vec<usize>>,
}

fn make_levels(
    condition: &[usize],
    rows: &[usize],
    x: &[f32],
    g: usize,
    truths: &[Vec<usize>],
    seed: u64,
) -> Vec<Level> {
    let cell = Level {
        name: "cell",
        x: x.to_vec(),
        truths: truths.to_vec(),
        conditions: rows.iter().map(|&i| condition[i]).collect(),
        members: (0..rows.len()).map(|k| vec![k]).collect(),
    };
    let mut by_cond: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (k, &i) in rows.iter().enumerate() {
        by_cond.entry(condition[i]).or_default().push(k);
    }
    let mean_of = |members: &[usize]| mean_profile(x, g, members);
    let empty = |name| Level { name, x: vec![], truths: vec![], conditions: vec![], members: vec![] };
    let (mut pseudobulk, mut bulk10) = (empty("pseudobulk"), empty("pseudobulk10"));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xb01c);
    for (cond, mut members) in by_cond {
        pseudobulk.x.extend(mean_of(&members));
        pseudobulk.truths.push(truths[members[0]].clone());
        pseudobulk.conditions.push(cond);
        pseudobulk.members.push(members.clone());
        members.shuffle(&mut rng);
        for chunk in members.chunks(10).filter(|c| c.len() == 10) {
            bulk10.x.extend(mean_of(chunk));
            bulk10.truths.push(truths[chunk[0]].clone());
            bulk10.conditions.push(cond);
            bulk10.members.push(chunk.to_vec());
        }
    }
    vec![cell, pseudobulk, bulk10]
}

/// Training and validation inputs without gene positions, for the models other than the network.
struct PlainInputs {
    g: usize,
    c: usize,
    mean: Vec<f32>,
    sd: Vec<f32>,
    train: (Vec<f32>, Vec<Vec<usize>>),
    valid: (Vec<f32>, Vec<Vec<usize>>),
}

impl PlainInputs {
    fn new(
        data: &dataset::Labelled,
        split: &splits::ConditionSplit,
        panel: &[usize],
        mean: &[f32],
        sd: &[f32],
    ) -> Self {
        let rows = |conditions: &[usize]| {
            let rows = splits::rows_of(&data.condition, conditions);
            (data.dense(&rows, panel), data.targets(&rows))
        };
        PlainInputs {
            g: panel.len(),
            c: data.candidates.len(),
            mean: mean.to_vec(),
            sd: sd.to_vec(),
            train: rows(&split.train),
            valid: rows(&split.valid),
        }
    }

    fn features(&self, device: &Device) -> GenomeFeatures {
        GenomeFeatures::new(&vec![None; self.g], &vec![None; self.c], 1, &[], &self.mean, &self.sd, device)
    }

    /// Fits a model on the set likelihood with early stopping, like the network.
    fn fit<M: SetModel>(
        &self,
        init: &dyn Fn(&Device) -> M,
        opts: &training::TrainConfig,
        label: &str,
    ) -> Result<(M, GenomeFeatures, usize, usize), CliError> {
        let mut cells = training::InMemory::new(
            Split { x: &self.train.0, targets: &self.train.1 },
            self.g,
            self.c,
            opts.synthetic_pairs,
        );
        let fitted = training::fit(
            init,
            (self.g, self.c),
            &|d: &Device| self.features(d),
            &mut cells,
            &Split { x: &self.valid.0, targets: &self.valid.1 },
            opts,
            label,
        )
        .map_err(CliError::Training)?;
        Ok((fitted.net, self.features(&Device::flex()), self.g, self.c))
    }
}

fn score_linear<M: SetModel>(
    model: &(M, GenomeFeatures, usize, usize),
    x: &[f32],
    reference: &Reference,
) -> Vec<SetScores> {
    use burn::tensor::{Tensor, TensorData};
    let (net, feats, g, c) = model;
    let feats = feats.with_reference(&reference.mean, &reference.sd, &reference.measured);
    let device = Device::flex();
    let mut out = Vec::new();
    for chunk in x.chunks(1024 * g) {
        let rows = chunk.len() / g;
        let t = Tensor::<2>::from_data(TensorData::new(chunk.to_vec(), [rows, *g]), &device);
        let f = match &feats.present {
            Some(p) => feats.with_present(p.clone().expand([rows, *g])),
            None => feats.clone(),
        };
        let (gene_logits, count_logits) = net.logits(t, &f);
        let gene_logits: Vec<f32> = gene_logits.into_data().try_to_vec().unwrap_or_default();
        let count_logits: Vec<f32> = count_logits.into_data().try_to_vec().unwrap_or_default();
        out.extend(set_scores(&gene_logits, &count_logits, *c));
    }
    out
}
