//! `train --data FILE --out DIR`: fit the cross-attention model and write `model.bpk` (burnpack
//! weights), `card.json` (the model card) and `training.svg` (the training curve).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use mamba_perturb::io::ExpressionData;
use mamba_perturb::model::additive::{AdditiveHead, ConditionSums, Shrinkage};
use mamba_perturb::model::card::{CARD_FORMAT, CardGene, ModelCard, TrainingData, WeightsInfo};
use mamba_perturb::model::sets::SetScores;
use mamba_perturb::model::{GenomeFeatures, NetConfig};
use mamba_perturb::model_folder;
use mamba_perturb::predict::{Predictor, typicality};
use mamba_perturb::reference::{Reference, ReferenceKind, centre_and_scale};

use crate::dataset::{self, Labelled};
use crate::error::{CliError, flag, io_at};
use crate::splits::{self, SplitKind};
use crate::training::{self, Split, TrainConfig, TrainingCells};

/// How the additive head's single profiles are denoised: shared programs, then gene by gene. On
/// held-out training cells every shrinkage tried ranked cells alike (0.674–0.678, one seed of the
/// Norman-scale simulation), and this one had the lowest NLL with targets masked and the best
/// head on the held-out pairs (see README, "additive head").
const HEAD_SHRINKAGE: Shrinkage = Shrinkage::Programs;

#[derive(clap::Args)]
pub struct Args {
    /// Labelled training data (.h5ad with a perturbation label column, any public Norman style).
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (created): model.bpk, card.json, training.svg.
    #[arg(long)]
    pub out: PathBuf,
    /// Conditions to train on: all, heldout-pairs or unseen-genes (the benchmark's splits).
    #[arg(long, default_value = "all")]
    pub split: String,
    #[command(flatten)]
    pub model: TrainConfig,
    #[command(flatten)]
    pub read: super::ReadArgs,
    /// Stream the cells from the h5ad instead of holding the file in memory (a screen larger than
    /// memory): two passes choose the panel and the reference, then each epoch reads CSR row
    /// chunks of 1,024 cells, shuffled by chunk and within a buffer of chunks.
    #[arg(long)]
    pub stream: bool,
    /// With --stream: chunks shuffled together (memory: about this × 1,024 cells × panel genes × 8 bytes).
    #[arg(long, default_value_t = 16)]
    pub stream_buffer: usize,
}

/// A trained model with everything needed to write it or evaluate it.
pub struct Trained {
    pub card: ModelCard,
    pub net: mamba_perturb::model::PerturbNet,
    pub panel: Vec<usize>,
    pub fitted_history: Vec<training::Epoch>,
}

/// What fitting needs of a labelled file, whichever way its cells are held: the panel, the
/// reference, held-out cells, each training condition's sums for the additive head, and the
/// training cells to go through each epoch.
pub struct Prepared<'a> {
    /// File columns of the panel genes.
    pub panel: Vec<usize>,
    pub panel_genes: Vec<CardGene>,
    pub candidates: Vec<CardGene>,
    /// Each panel gene's centre and scale (`Predictor::prepare` measures any later file the same way).
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
    /// 99th percentile of the training cells' typicality against that reference.
    pub typicality_p99: f64,
    /// The answer sizes' shares among the file's labelled cells (`design_sizes`): the prior of
    /// every posterior.
    pub sizes: [f64; 3],
    /// Cells of the validation conditions (early stopping, head weight, temperatures).
    pub valid: (Vec<f32>, Vec<Vec<usize>>),
    /// A tenth of the training control and single cells, kept out of training and of the head.
    pub calibration: (Vec<f32>, Vec<Vec<usize>>),
    pub valid_conditions: usize,
    /// Per-condition sums of the training and validation cells (the additive head's input).
    pub head_sums: ConditionSums,
    pub cells: Box<dyn TrainingCells + 'a>,
    pub source: TrainingData,
    pub simulated: bool,
}

/// Fits on the training conditions of `split`; the card is filled except weights and command.
pub fn train_on(
    data: &Labelled,
    split: &splits::ConditionSplit,
    args: &TrainConfig,
    label: &str,
) -> Result<Trained, CliError> {
    let all_train_rows = splits::rows_of(&data.condition, &split.train);
    let valid_rows = splits::rows_of(&data.condition, &split.valid);
    if all_train_rows.is_empty() {
        return Err(CliError::Data { file: data.name.clone(), problem: "no training cells after the split".into() });
    }
    let panel = data.choose_panel(&all_train_rows, args.hvg, args.mask_targets);
    let sizes = design_sizes(data.targets(&(0..data.labels.len()).collect::<Vec<_>>()).iter());
    let (train_rows, calibration_rows) = training_and_calibration_rows(data, split, args.seed);
    let x_train = data.dense(&train_rows, &panel);
    let x_valid = data.dense(&valid_rows, &panel);
    let (t_train, t_valid) = (data.targets(&train_rows), data.targets(&valid_rows));
    // Reference: each gene's centre and scale over the whole file's cells (label-free) or over its
    // control cells, exactly as `Predictor::prepare` measures any file the model is later run on.
    let g = panel.len();
    let reference_rows: Vec<usize> = match args.reference {
        ReferenceKind::ControlCells => data.rows_where(|p| p.is_control()),
        _ => (0..data.labels.len()).collect(),
    };
    check_reference_cells(&data.name, reference_rows.len())?;
    let (mean, sd) = centre_and_scale(&data.dense(&reference_rows, &panel), g);
    let typicality_p99 = typicality_p99(&x_train, &mean, &sd);
    let mut head_sums = ConditionSums::new(g);
    head_sums.add_rows(&x_train, &t_train);
    head_sums.add_rows(&x_valid, &t_valid);
    let calibration = (data.dense(&calibration_rows, &panel), data.targets(&calibration_rows));
    let prepared = Prepared {
        panel_genes: data.card_genes(&panel),
        candidates: data.candidate_card_genes(),
        panel,
        mean,
        sd,
        typicality_p99,
        sizes,
        valid: (x_valid, t_valid),
        calibration,
        valid_conditions: split.valid.len(),
        head_sums,
        cells: Box::new(training::InMemory::new(
            training::Split { x: &x_train, targets: &t_train },
            g,
            data.candidates.len(),
            args.synthetic_pairs,
        )),
        source: training_data(&data.name, &data.sha256, &data.data, train_rows.len(), split.train.len()),
        simulated: data.data.simulated,
    };
    fit_prepared(prepared, args, label)
}

/// The rows the network trains on, and the calibration cells: a tenth of the training control
/// and single cells, kept out of training and of the head, so that the posterior's temperature is
/// fitted on cells of every answer size (the validation conditions are all pairs).
pub fn training_and_calibration_rows(
    data: &Labelled,
    split: &splits::ConditionSplit,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let rows = splits::rows_of(&data.condition, &split.train);
    training::calibration_cells(&rows, &data.targets(&rows), seed)
}

/// The card's description of the training data.
pub fn training_data(name: &str, sha256: &str, data: &ExpressionData, cells: usize, conditions: usize) -> TrainingData {
    TrainingData {
        name: Path::new(name).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
        kind: if data.simulated { "simulated" } else { "real" }.into(),
        sha256: sha256.into(),
        cells,
        conditions,
        label_column: data.labels.as_ref().map(|l| l.name.clone()).unwrap_or_default(),
    }
}

/// Refuses a control-cell reference with too few control cells.
pub fn check_reference_cells(file: &str, cells: usize) -> Result<(), CliError> {
    if cells < mamba_perturb::reference::MIN_REFERENCE_CELLS {
        return Err(CliError::Data {
            file: file.into(),
            problem: format!(
                "--reference: only {cells} reference cells (at least {} needed)",
                mamba_perturb::reference::MIN_REFERENCE_CELLS
            ),
        });
    }
    Ok(())
}

/// 99th percentile of the typicality of training rows (`x`, row-major) against a reference.
pub fn typicality_p99(x: &[f32], mean: &[f32], sd: &[f32]) -> f64 {
    let g = mean.len();
    let reference = Reference { mean: mean.to_vec(), sd: sd.to_vec(), measured: vec![true; g], source: String::new() };
    let mut typ: Vec<f64> = x.chunks(g).map(|r| typicality(r, &reference)).collect();
    typ.sort_by(|a, b| a.total_cmp(b));
    typ.get(((typ.len() as f64 * 0.99) as usize).min(typ.len().saturating_sub(1))).copied().unwrap_or(f64::NAN)
}

/// Fits the network, its temperature, the additive head and the posterior's temperature on
/// prepared cells; the card is filled except weights and command.
pub fn fit_prepared(mut p: Prepared, args: &TrainConfig, label: &str) -> Result<Trained, CliError> {
    let unplace = |genes: Vec<CardGene>| -> Vec<CardGene> {
        match args.no_position {
            true => genes
                .into_iter()
                .map(|g| CardGene { chrom: None, start: None, end: None, relative: None, ..g })
                .collect(),
            false => genes,
        }
    };
    let panel_genes = unplace(std::mem::take(&mut p.panel_genes));
    let candidates = unplace(std::mem::take(&mut p.candidates));
    let (panel, mean, sd, sizes) = (p.panel, p.mean, p.sd, p.sizes);
    let net_config = NetConfig {
        n_genes: panel.len(),
        n_candidates: candidates.len(),
        d_model: args.d_model,
        n_heads: args.heads,
        n_freqs: args.freqs,
        cis: args.cis && !args.mask_targets,
    };
    if !args.d_model.is_multiple_of(args.heads) {
        return Err(flag("d-model", format!("{} must be a multiple of --heads {}", args.d_model, args.heads)));
    }
    let (x_valid, t_valid) = p.valid;
    let gene_loci: Vec<_> = panel_genes.iter().map(|g| g.locus()).collect();
    let cand_loci: Vec<_> = candidates.iter().map(|g| g.locus()).collect();
    let own = mamba_perturb::model::card::own_genes(&panel_genes, &candidates);
    let features = |d: &Device| GenomeFeatures::new(&gene_loci, &cand_loci, args.freqs, &own, &mean, &sd, d);
    let fitted = training::fit(
        &|d: &Device| net_config.init(d),
        (net_config.n_genes, net_config.n_candidates),
        &features,
        p.cells.as_mut(),
        &Split { x: &x_valid, targets: &t_valid },
        args,
        label,
    )
    .map_err(CliError::Training)?;
    drop(p.cells);
    // Temperature scaling on the validation conditions, folded into the network's heads.
    let plain = Device::flex();
    let t = training::temperature(
        &fitted.net,
        &features(&plain),
        &Split { x: &x_valid, targets: &t_valid },
        candidates.len(),
        &plain,
    );
    let net = fitted.net.with_temperature(t as f32);

    // The additive head is fitted below (it needs control cells); the card says whether there is one.
    let with_head = !args.no_additive_head && p.head_sums.cells_of(&[]) > 0;
    let with_single = (0..candidates.len()).filter(|&a| p.head_sums.cells_of(&[a]) > 0).count();
    let kind = if p.simulated { "simulated" } else { "real" };
    let last = fitted.history.iter().find(|e| e.epoch == fitted.best_epoch);
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        name: String::new(),
        description: format!(
            "Cross-attention over {} gene tokens (expression + identity + chromosome one-hot + locus) from {} candidate-gene queries + a no-perturbation query{}; trained on {} data{}.",
            panel.len(),
            candidates.len(),
            match with_head {
                true => format!(", times an additive head over {with_single} candidates' training single profiles"),
                false => String::new(),
            },
            kind,
            if args.mask_targets { ", candidate genes' own expression masked" } else { "" }
        ),
        training_data: p.source,
        panel: panel_genes,
        candidates,
        targets_masked: args.mask_targets,
        normalization: "scanpy normalize_total(target_sum=1e4) + log1p over all genes of the file (counts); normalised input kept per cell".into(),
        net: net_config.clone(),
        reference_mean: mean,
        reference_sd: sd,
        reference: args.reference,
        answer_sizes: Some(sizes),
        additive: None,
        posterior_temperature: None,
        guide_failure: None,
        group_model: None,
        weights: WeightsInfo { file: model_folder::WEIGHTS_FILE.into(), sha256: String::new(), bytes: 0, dtype: "f32".into() },
        command: String::new(),
        seed: args.seed,
        metrics: serde_json::json!({
            "typicality_p99": p.typicality_p99,
            "temperature": t,
            "best_epoch": fitted.best_epoch,
            "validation_loss": last.map(|e| e.valid_loss),
            "validation_exact_top1": last.map(|e| e.valid_top1),
            "validation_conditions": p.valid_conditions,
            "seconds_per_train_step": fitted.seconds_per_step,
            "forward_flops_per_cell": net_config.forward_flops(args.batch) / args.batch as f64,
            // A training step costs about 3 forward passes (forward + backward).
            "achieved_gflops_training": 3.0 * net_config.forward_flops(args.batch) / fitted.seconds_per_step / 1e9,
            "device": args.device,
            "batch": args.batch,
            "history": fitted.history,
        }),
        versions: serde_json::json!({ "mamba_perturb": env!("CARGO_PKG_VERSION"), "burn": "0.22.1" }),
    };
    // The additive head from all training conditions, validation ones included; its weight chosen
    // on held-out training cells of every size (validation pairs, calibration control and singles,
    // weighted to the design's size shares), through the predictor the faces use (the network's
    // scores computed once).
    let mut predictor = Predictor::from_parts(card, net.clone(), &plain);
    let (x_calibration, t_calibration) = p.calibration;
    let x_held: Vec<f32> = x_valid.iter().chain(&x_calibration).copied().collect();
    let t_held: Vec<Vec<usize>> = t_valid.iter().chain(&t_calibration).cloned().collect();
    let held_weights = training::size_weights(&t_held.iter().map(Vec::as_slice).collect::<Vec<_>>(), sizes);
    let head = AdditiveHead::from_sums(&p.head_sums, predictor.card.candidates.len(), HEAD_SHRINKAGE);
    if let (true, Some(head)) = (with_head, head) {
        let reference = predictor.training_reference();
        let scores = predictor.network_scores(&x_held, &reference, 256).map_err(|e| CliError::Output(e.to_string()))?;
        predictor.card.additive = Some(head.with_own_rise(&own));
        let evidence = predictor.evidence(&x_held, predictor.head_terms(&reference).as_ref());
        let fit = training::head_weight(&scores, &evidence, &t_held, &held_weights);
        eprintln!(
            "{label}: additive head ({}): weight {:.3}, held-out exact top-1 {:.3} (weighted to the size shares), NLL {:.3}",
            HEAD_SHRINKAGE.describe(),
            fit.weight,
            fit.accuracy,
            fit.nll
        );
        if let Some(head) = predictor.card.additive.as_mut() {
            head.weight = fit.weight as f32;
        }
        predictor.card.metrics["additive_head"] = serde_json::json!({
            "shrinkage": HEAD_SHRINKAGE, "weight": fit.weight,
            "held_out_exact_top1": fit.accuracy, "held_out_nll": fit.nll, "held_out_cells": t_held.len(),
        });
    }
    // The posterior's temperature on the same held-out cells, weighted to the design's size
    // shares (validation pairs stand in for unseen pairs, calibration cells for control and the
    // singles); then pooling's guide-failure share from them at that temperature. One network pass.
    let reference = predictor.training_reference();
    let scored = predictor.score_rows(&x_held, &reference, 256).map_err(|e| CliError::Output(e.to_string()))?;
    let truths = || t_held.iter().map(Vec::as_slice);
    let cells: Vec<(&SetScores, &[usize])> = scored.iter().zip(truths()).collect();
    let mut tempered = None;
    if let Some(fit) = training::posterior_temperature(&cells, sizes) {
        eprintln!(
            "{label}: posterior temperature {:.3} on {} held-out cells (weighted NLL {:.3} -> {:.3})",
            fit.temperature, fit.cells, fit.nll_before, fit.nll_after
        );
        predictor.card.posterior_temperature = Some(fit.temperature);
        predictor.card.metrics["posterior_temperature"] = serde_json::json!({
            "temperature": fit.temperature, "cells": fit.cells, "calibration_cells": t_calibration.len(),
            "weighted_nll_before": fit.nll_before, "weighted_nll_after": fit.nll_after,
        });
        tempered = Some(scored.iter().map(|s| s.tempered(fit.temperature)).collect::<Vec<_>>());
    }
    let cells: Vec<(&SetScores, &[usize])> = tempered.as_ref().unwrap_or(&scored).iter().zip(truths()).collect();
    if let Some(f) = training::guide_failure(&cells, predictor.pooling().prior) {
        let perturbed = t_held.iter().filter(|t| !t.is_empty()).count();
        eprintln!("{label}: guide failure {f:.3} in pooling, from {perturbed} held-out perturbed cells");
        predictor.card.guide_failure = Some(f);
        predictor.card.metrics["guide_failure"] = serde_json::json!({ "share": f, "cells": perturbed });
    }
    // How groups pool: the head's likelihood of a group's mean levels, or the cells' posteriors,
    // whichever ranks the held-out training groups better.
    let head_terms = predictor.head_terms(&reference);
    if head_terms.is_some() {
        let network =
            predictor.network_scores(&x_held, &reference, 256).map_err(|e| CliError::Output(e.to_string()))?;
        let product = tempered.as_ref().unwrap_or(&scored);
        let (model, by_cells, by_group) =
            training::group_model(&predictor, &network, product, &x_held, &t_held, sizes, head_terms.as_ref());
        eprintln!(
            "{label}: pooling {} (held-out groups, exact top-1 weighted to the size shares: through cells {:.3}, NLL {:.3}; by the head's group likelihood {:.3}, NLL {:.3})",
            match model {
                Some(m) => format!(
                    "by the head's group likelihood, network weight {}, pair error {}",
                    m.network_weight, m.pair_error
                ),
                None => "through the cells' posteriors".into(),
            },
            by_cells.accuracy,
            by_cells.nll,
            by_group.accuracy,
            by_group.nll
        );
        predictor.card.group_model = model;
        predictor.card.metrics["group_model"] = serde_json::json!({
            "chosen": model, "held_out_groups_by_cells": {"exact_top1": by_cells.accuracy, "nll": by_cells.nll},
            "held_out_groups_by_group_likelihood": {"exact_top1": by_group.accuracy, "nll": by_group.nll},
        });
    }
    // Held-out exact top-1 per answer size: what the head's and temperature's choices trade
    // between the sizes (a pairs-only test set sees only one side of it).
    let by_size = training::top1_by_size(&cells).to_json(sizes);
    eprintln!("{label}: held-out exact top-1 by answer size: {by_size}");
    predictor.card.metrics["held_out_top1_by_size"] = by_size;
    let card = predictor.card;
    Ok(Trained { card, net, panel, fitted_history: fitted.history })
}

/// The shares of control, single and pair answers among `targets` (every labelled cell of the
/// file): the screen's design, what the bench's oracle knows too. Not the training cells' shares:
/// with conditions held out (unseen pairs), those understate how often a cell has two guides, and
/// a prior that does so costs the unseen pairs (measured: exact top-1 0.445 against 0.476 on one
/// seed of the 50k bench). No cell's own label enters its input; the three shares are the same
/// for every cell.
pub fn design_sizes<T: AsRef<[usize]>>(targets: impl ExactSizeIterator<Item = T>) -> [f64; 3] {
    let mut sizes = [0f64; 3];
    let n = targets.len().max(1) as f64;
    targets.for_each(|t| sizes[t.as_ref().len().min(2)] += 1.0 / n);
    sizes
}

pub fn run(args: Args) -> Result<(), CliError> {
    args.model.device.check()?;
    let kind: SplitKind = args.split.parse().map_err(|e| flag("split", e))?;
    let options = args.read.options()?;
    let started = std::time::Instant::now();
    let (trained, simulated) = if args.stream {
        let meta = dataset::load_labels(&args.data, &options)?;
        let tag = if meta.data.simulated { "[simulated] " } else { "" };
        describe(tag, &meta, "streamed");
        let split = splits::split_conditions(&meta.conditions, kind, args.model.seed);
        let (prepared, data) =
            crate::stream::prepare(meta, &args.data, &options, &split, &args.model, args.stream_buffer, tag)?;
        (fit_prepared(prepared, &args.model, &format!("{tag}train"))?, data.data.simulated)
    } else {
        let data = dataset::load(&args.data, &options)?;
        let tag = if data.data.simulated { "[simulated] " } else { "" };
        describe(tag, &data, "in memory");
        let split = splits::split_conditions(&data.conditions, kind, args.model.seed);
        (train_on(&data, &split, &args.model, &format!("{tag}train"))?, data.data.simulated)
    };
    let tag = if simulated { "[simulated] " } else { "" };
    let mut card = trained.card;
    card.name = args.out.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| "model".into());
    card.command = std::env::args().collect::<Vec<_>>().join(" ");
    model_folder::write(&args.out, &mut card, trained.net)?;
    let svg = crate::plot::training_curve(&trained.fitted_history, &card.name, simulated);
    let curve = args.out.join(model_folder::CURVE_FILE);
    std::fs::write(&curve, svg).map_err(io_at(&curve))?;
    eprintln!(
        "{tag}wrote {}: {} ({} bytes), {}, {}; validation exact top-1 {} at epoch {}",
        args.out.display(),
        model_folder::WEIGHTS_FILE,
        card.weights.bytes,
        model_folder::CARD_FILE,
        model_folder::CURVE_FILE,
        card.metrics["validation_exact_top1"],
        card.metrics["best_epoch"]
    );
    eprintln!("{tag}training took {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn describe(tag: &str, data: &Labelled, how: &str) {
    eprintln!(
        "{tag}{}: {} cells, {} conditions, {} candidate genes, {} genes in the file ({how})",
        data.name,
        data.labels.len(),
        data.conditions.len(),
        data.candidates.len(),
        data.data.genes.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data-parallel training as it runs on CPU (Burn 0.22's own DDP needs a backend with collective
    /// operations, which its CPU backend lacks; README, "Training on many devices"): each batch is
    /// split over replicas, each with its own autodiff graph, and their gradients are summed before
    /// one AdamW step. Two replicas end at one replica's training loss (same global batch, seed).
    #[test]
    fn two_data_parallel_replicas_train_to_the_loss_of_one() {
        let (dir, path) = dataset::simulated_h5ad("replicas", 5, 2400, 300);
        let data = dataset::load(&path, &Default::default()).unwrap();
        let split = splits::split_conditions(&data.conditions, SplitKind::HeldoutPairs, 0);
        let losses: Vec<Vec<f64>> = ["1", "2"]
            .iter()
            .map(|replicas| {
                let flags = ["--hvg", "32", "--epochs", "3", "--patience", "9", "--replicas", replicas];
                let args = TrainConfig::from_flags(&[&flags[..], &["--no-additive-head"]].concat());
                let trained = train_on(&data, &split, &args, "test").unwrap();
                trained.fitted_history.iter().map(|e| e.train_loss).collect()
            })
            .collect();
        let (one, two) = (&losses[0], &losses[1]);
        assert_eq!((one.len(), two.len()), (3, 3));
        assert!(one[2] < one[0] - 0.1, "training lowered the loss: {one:?}");
        let gap = (one[2] - two[2]).abs() / one[2];
        eprintln!("training loss by epoch: 1 replica {one:?}, 2 replicas {two:?}");
        assert!(
            gap < 0.01,
            "final training loss: 1 replica {} vs 2 replicas {} ({:.2} %)",
            one[2],
            two[2],
            gap * 100.0
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// With half the pairs held out, the prior still counts every labelled cell of the file (the
    /// screen's design), not the training cells alone, which hold half its pairs.
    #[test]
    fn the_prior_is_the_designs_answer_sizes_not_the_training_cells() {
        let (dir, path) = dataset::simulated_h5ad("design-sizes", 5, 1200, 300);
        let data = dataset::load(&path, &Default::default()).unwrap();
        let split = splits::split_conditions(&data.conditions, SplitKind::HeldoutPairs, 0);
        let args = TrainConfig::from_flags(&["--hvg", "32", "--epochs", "1"]);
        let trained = train_on(&data, &split, &args, "test").unwrap();
        let everyone = data.targets(&(0..data.labels.len()).collect::<Vec<_>>());
        let pairs = |t: &[Vec<usize>]| t.iter().filter(|t| t.len() == 2).count() as f64 / t.len() as f64;
        let sizes = trained.card.answer_sizes.unwrap();
        assert!((sizes[2] - pairs(&everyone)).abs() < 1e-9, "{sizes:?}");
        let trained_on = data.targets(&splits::rows_of(&data.condition, &split.train));
        assert!(pairs(&trained_on) < sizes[2] - 0.05, "{} vs {}", pairs(&trained_on), sizes[2]);
        assert!((sizes.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // The card reports held-out accuracy per answer size, over the cells of each size held out.
        let by_size = &trained.card.metrics["held_out_top1_by_size"];
        // (a size with no held-out cell has no figure rather than a made-up one).
        let held = data.targets(&splits::rows_of(&data.condition, &split.valid));
        let cells: Vec<u64> = (0..3).map(|k| by_size["cells"][k].as_u64().unwrap()).collect();
        assert!(cells[2] as usize == held.len() && cells[0] > 0, "{by_size}");
        for (k, size) in ["control", "singles", "pairs"].into_iter().enumerate() {
            match cells[k] {
                0 => assert!(by_size[size].is_null(), "{by_size}"),
                _ => assert!((0.0..=1.0).contains(&by_size[size].as_f64().unwrap()), "{by_size}"),
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
