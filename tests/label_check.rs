//! The label check against the simulator's per-cell truth: on a labelled simulated file with a known
//! guide-failure rate (obs `responded`), cells flagged "likely non-responder" are the cells whose
//! guides failed. Judged on perturbations the authors found strong (≥ 100 DE genes), reported for all.

use std::path::Path;

use burn::tensor::Device;
use mamba_perturb::analysis::{Analysis, View, ViewRequest};
use mamba_perturb::io::{FileSource, ReadOptions};
use mamba_perturb::model_folder::ModelFiles;
use mamba_perturb::simulate::{self, Layout, SimConfig, layouts};

fn precision_recall(flagged_and_failed: &[(bool, bool)]) -> (f64, f64, usize, usize) {
    let tp = flagged_and_failed.iter().filter(|&&(f, t)| f && t).count();
    let flagged = flagged_and_failed.iter().filter(|&&(f, _)| f).count();
    let failed = flagged_and_failed.iter().filter(|&&(_, t)| t).count();
    (tp as f64 / flagged.max(1) as f64, tp as f64 / failed.max(1) as f64, flagged, failed)
}

/// Fresh cells of the default model's world (seed 0), the default guide-failure rate, every cell
/// predicted by the default model.
fn predicted(cell_seed: u64) -> (simulate::Simulation, Analysis) {
    let config = SimConfig { seed: 0, cells: 6000, genes: 2000, cell_seed: Some(cell_seed), ..Default::default() };
    let sim = simulate::simulate(&config, |_, _| {}).unwrap();
    let bytes = layouts::to_h5ad(&sim, Layout::Pertpy, None).unwrap();
    let model = ModelFiles::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")).unwrap();
    let mut a = Analysis::new(model, &Device::flex()).unwrap();
    a.open("sim.h5ad", FileSource::bytes(bytes), &ReadOptions::default()).unwrap();
    a.predict_all_cells(256, 0, |_, _| {}).unwrap();
    (sim, a)
}

#[test]
fn non_responders_are_found_among_strong_perturbations() {
    // The default model's world (seed 0), cells it never saw (the flag's threshold was chosen on cell
    // seed 11, so these are new to it too), the default guide-failure rate.
    let (sim, a) = predicted(23);
    let View::LabelCheck(check) = a.view(&ViewRequest::LabelCheck).unwrap() else { unreachable!() };
    let (mut strong, mut all) = (Vec::new(), Vec::new());
    for c in &check.cells {
        let condition = &sim.conditions[sim.cell_condition[c.index]];
        if condition.perturbation.is_control() {
            continue;
        }
        let pair = (c.verdict == "likely non-responder", !sim.responded[c.index]);
        all.push(pair);
        if condition.de_genes.is_some_and(|d| d >= 100.0) {
            strong.push(pair);
        }
    }
    let (p, r, flagged, failed) = precision_recall(&strong);
    let (pa, ra, fa, ta) = precision_recall(&all);
    println!(
        "[simulated] non-responder flag, perturbations with >= 100 DE genes: precision {p:.3}, recall {r:.3} ({flagged} flagged, {failed} failed guides, {} cells); all perturbations: precision {pa:.3}, recall {ra:.3} ({fa} flagged, {ta} failed, {} cells)",
        strong.len(),
        all.len()
    );
    assert!(failed > 50 && strong.len() > 1000, "enough cells to judge: {failed} failed of {}", strong.len());
    // Measured 0.943 / 0.652 (the network alone gave 0.881 / 0.863; see NON_RESPONDER_SHARE).
    assert!(p >= 0.9 && r >= 0.6, "precision {p:.3}, recall {r:.3}");
}

/// How NON_RESPONDER_SHARE is chosen when the default model changes (not a check; run with
/// `cargo test --release --test label_check -- --ignored --nocapture`): precision and recall of
/// the flag on strong perturbations for several shares, on cell seed 11 (the check uses seed 23).
#[test]
#[ignore]
fn choose_non_responder_share() {
    use mamba_perturb::metrics::best_answer;
    let (sim, a) = predicted(11);
    let labels = a.labels().unwrap().to_vec();
    // Per strong, labelled cell: P(control), P(its label), P(best other answer).
    let mut scored = Vec::new();
    let strong = |i: usize| sim.conditions[sim.cell_condition[i]].de_genes.is_some_and(|d| d >= 100.0);
    a.for_each_scored(0..labels.len(), |i, s| {
        if strong(i) && !labels[i].is_control() {
            let own = a.candidate_indices(&labels[i]).unwrap();
            let p_other = best_answer(&s, |x| x.genes() != own).map_or(0.0, |(_, p)| p);
            scored.push((i, s.control, s.probability(&own), p_other));
        }
    });
    for share in [0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995] {
        let pairs: Vec<(bool, bool)> = scored
            .iter()
            .map(|&(i, control, p_label, p_other)| {
                let flagged =
                    p_label < control.max(p_other) && control >= p_other && control >= share * (control + p_label);
                (flagged, !sim.responded[i])
            })
            .collect();
        let (p, r, flagged, failed) = precision_recall(&pairs);
        println!("share {share}: precision {p:.3}, recall {r:.3} ({flagged} flagged, {failed} failed)");
    }
}
