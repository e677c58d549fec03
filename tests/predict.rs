//! Prediction through the shipped default model: the weights decode into the architecture the card
//! describes; predictions do not depend on labels (no leakage path); the same cells give the same
//! predictions whichever file form they come in (CSV, and each h5ad layout).

use std::path::Path;

use burn::tensor::Device;
use mamba_perturb::io::{self, LabelColumn, ReadOptions};
use mamba_perturb::model::sets::SetScores;
use mamba_perturb::model_folder;
use mamba_perturb::predict::{Predictor, top_k};
use mamba_perturb::simulate::{self, Layout, SimConfig, layouts};

fn default_model() -> Predictor {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let (_, predictor) =
        model_folder::load(&dir, &Device::flex()).expect("models/default is committed and its weights fit its card");
    predictor
}

/// The default model's simulated world (seed 0 fixes the gene panel, baselines and effects) with
/// cells it did not see: another cell seed (with the training file's, cell i can repeat exactly).
fn sample() -> simulate::Simulation {
    simulate::simulate(
        &SimConfig {
            seed: 0,
            cells: 800,
            genes: 2000,
            control_fraction: 0.1,
            cell_seed: Some(1),
            ..Default::default()
        },
        |_, _| {},
    )
    .unwrap()
}

fn scores(p: &Predictor, data: &io::ExpressionData) -> Vec<SetScores> {
    let prepared = p.prepare(data).unwrap();
    p.score_cells(&prepared, 128, |_, _| {}).unwrap()
}

fn max_abs_diff(a: &[SetScores], b: &[SetScores]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            std::iter::once((x.control - y.control).abs())
                .chain(x.singles.iter().zip(&y.singles).map(|(p, q)| (p - q).abs()))
                .chain(x.pairs.iter().zip(&y.pairs).map(|(p, q)| (p - q).abs()))
        })
        .fold(0.0, f64::max)
}

#[test]
fn the_default_model_is_simulated_and_says_so() {
    let p = default_model();
    assert!(p.card.is_simulated());
    assert_eq!(p.card.candidates.len(), 105);
    assert!(
        p.card.panel.iter().filter(|g| g.locus().is_some()).count() * 10 >= p.card.panel.len() * 9,
        "panel genes are placed"
    );
}

#[test]
fn predictions_do_not_depend_on_labels() {
    let p = default_model();
    let sim = sample();
    let with_labels = sim.data.clone();
    let baseline = scores(&p, &with_labels);

    let mut shuffled = sim.data.clone();
    let mut values = shuffled.labels.as_ref().unwrap().values.clone();
    values.reverse();
    shuffled.labels = Some(LabelColumn { name: "perturbation_name".into(), values });
    assert_eq!(max_abs_diff(&baseline, &scores(&p, &shuffled)), 0.0);

    let mut removed = sim.data.clone();
    removed.labels = None;
    removed.obs_column_names.clear();
    assert_eq!(max_abs_diff(&baseline, &scores(&p, &removed)), 0.0);

    // Predicting a batch cell by cell gives the same answers: nothing is pooled across cells.
    let prepared = p.prepare(&with_labels).unwrap();
    let one_by_one = p.score_cells(&prepared, 1, |_, _| {}).unwrap();
    assert!(max_abs_diff(&baseline, &one_by_one) < 1e-5);
}

#[test]
fn every_file_form_gives_the_same_predictions() {
    let p = default_model();
    let sim = sample();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("predict_forms");
    std::fs::create_dir_all(&dir).unwrap();
    let reference = scores(&p, &sim.data);
    let candidates = p.candidates();
    for layout in [Layout::Pertpy, Layout::Gears, Layout::Scperturb] {
        let path = dir.join(format!("{layout:?}.h5ad"));
        std::fs::write(&path, layouts::to_h5ad(&sim, layout, None).unwrap()).unwrap();
        let d = io::read_path(&path, &ReadOptions::default()).unwrap();
        let s = scores(&p, &d);
        assert!(max_abs_diff(&reference, &s) < 1e-4, "{layout:?}: {}", max_abs_diff(&reference, &s));
        assert_eq!(top_k(&s[0], &candidates, 3)[0].perturbation, top_k(&reference[0], &candidates, 3)[0].perturbation);
    }
    let mut csv = Vec::new();
    layouts::to_csv(&sim, &mut csv).unwrap();
    let d = io::read_bytes("cells.csv", csv, &ReadOptions::default()).unwrap();
    assert!(max_abs_diff(&reference, &scores(&p, &d)) < 1e-5);
}

#[test]
fn the_default_model_finds_crispra_targets_in_fresh_simulated_cells() {
    // Cells the model did not see: the top answer should usually name a true gene.
    let p = default_model();
    let sim = sample();
    let s = scores(&p, &sim.data);
    let candidates = p.candidates();
    let labels = &sim.data.labels.as_ref().unwrap().values;
    let hits = s
        .iter()
        .zip(labels)
        .filter(|(sc, truth)| {
            let top = &top_k(sc, &candidates, 1)[0].perturbation;
            let truth_genes: Vec<&str> = truth.split('+').collect();
            top.split('+').any(|g| truth_genes.contains(&g))
        })
        .count();
    let rate = hits as f64 / s.len() as f64;
    assert!(rate > 0.5, "at least one true gene in the top answer for only {rate:.2} of cells");
}

#[test]
fn another_gene_count_and_depth_are_measured_against_the_file_itself() {
    // The default model's world measured differently: 4,000 genes instead of 2,000 (other per-cell
    // totals), then also a third of the depth. Each file is its own reference, so accuracy follows
    // the information in the file: unchanged with more genes, lower (not collapsed) at lower depth.
    let p = default_model();
    assert_eq!(p.card.reference, mamba_perturb::reference::ReferenceKind::FileCells);
    let candidates = p.candidates();
    let accuracy = |genes: usize, depth: f64| -> (f64, String) {
        let world = simulate::WorldParams { control_depth: depth, ..Default::default() };
        let config = SimConfig { seed: 0, cells: 1200, genes, cell_seed: Some(5), world, ..Default::default() };
        let sim = simulate::simulate(&config, |_, _| {}).unwrap();
        let prepared = p.prepare(&sim.data).unwrap();
        let s = p.score_cells(&prepared, 256, |_, _| {}).unwrap();
        let truth = &sim.data.labels.as_ref().unwrap().values;
        let hits = s.iter().zip(truth).filter(|(sc, t)| top_k(sc, &candidates, 1)[0].perturbation == **t).count();
        (hits as f64 / s.len() as f64, prepared.report.reference)
    };
    let full = simulate::WorldParams::default().control_depth;
    let (standard, _) = accuracy(2000, full);
    let (more_genes, reference) = accuracy(4000, full);
    let (shallow, _) = accuracy(4000, full / 3.0);
    println!(
        "[simulated] exact top-1 per cell: 2,000 genes {standard:.3}; 4,000 genes {more_genes:.3}; 4,000 genes at a third of the depth {shallow:.3}"
    );
    assert!(reference.contains("1200 cells"), "{reference}");
    // Measured: 0.046 lower with 4,000 genes for the previous default model, 0.050 for this one.
    // A likely part, not yet tested: the additive head's noise is in the training file's CP10k
    // units; with twice the genes a panel gene's CP10k halves, and so does its variance over its
    // mean, which the head does not know, so its evidence reads weaker than it is.
    assert!((more_genes - standard).abs() < 0.06, "{more_genes} vs {standard}");
    assert!(shallow > standard - 0.15, "{shallow} vs {standard}");
}

#[test]
fn the_additive_head_adds_to_the_network_on_fresh_cells() {
    // The default model is the network times its additive head (each candidate's training single
    // profile). On cells the model did not see, the product names the exact answer at least as
    // often as the network alone, and the head's choices are on the card.
    let p = default_model();
    let head = p.card.additive.as_ref().expect("the default model carries its additive head");
    assert_eq!(head.folds.iter().filter(|f| f.is_some()).count(), 105);
    assert!(head.weight > 0.0);
    let config = SimConfig { seed: 0, cells: 1200, genes: 2000, cell_seed: Some(9), ..Default::default() };
    let sim = simulate::simulate(&config, |_, _| {}).unwrap();
    let prepared = p.prepare(&sim.data).unwrap();
    let candidates = p.candidates();
    let truth = &sim.data.labels.as_ref().unwrap().values;
    let accuracy = |s: &[SetScores]| {
        s.iter().zip(truth).filter(|(sc, t)| top_k(sc, &candidates, 1)[0].perturbation == **t).count() as f64
            / s.len() as f64
    };
    let product = accuracy(&p.score_cells(&prepared, 256, |_, _| {}).unwrap());
    let network = accuracy(&p.network_scores(&prepared.values, &prepared.reference, 256).unwrap());
    println!("[simulated] exact top-1 per cell: network × head {product:.3}, network alone {network:.3}");
    assert!(product >= network, "{product} vs {network}");
}
