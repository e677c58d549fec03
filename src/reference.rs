//! What each gene's level is measured against. A model trained on one file and run on another sees
//! other depths, gene counts and baselines; z-scores against the *training* cells then make every
//! cell of the new file look perturbed everywhere. So each file is its own reference: every panel
//! gene's centre and scale over the file's own cells, label-free (in a pooled screen most cells are
//! unperturbed at any one gene, and no cell's label enters anything). The model is trained the same
//! way, on references of its training file. Too few cells for a stable reference: the model's
//! training reference, with a warning.
//!
//! Two choices refine that, both the user's (`ReferenceCells`): the file's control cells as the
//! reference when the user names the control label (`--control`), and each batch (gem group,
//! lane) measured against its own cells when the user names a batch column (`--batch-column`;
//! Replogle 2022 normalises per gem group). Each batch's gene-wise scale is undone first
//! (`align_batches`), so that everything downstream (network, head, views) sees one reference.

use serde::{Deserialize, Serialize};

/// Fewer cells than this and the file's own reference is too noisy to use.
pub const MIN_REFERENCE_CELLS: usize = 100;

/// Share of values clipped at each end of a gene's distribution before its mean and sd are taken,
/// so a few strongly perturbed cells do not move the reference.
const TRIM: f64 = 0.01;

/// The reference a model expects its inputs to be measured against (recorded in its card).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceKind {
    /// The training cells' mean and sd, for every file (models from before per-file references).
    #[default]
    Training,
    /// Each file's own cells (winsorised mean and sd per gene).
    FileCells,
    /// Each file's control cells (winsorised mean and sd per gene): the user names their label.
    ControlCells,
}

impl std::str::FromStr for ReferenceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file-cells" => Ok(ReferenceKind::FileCells),
            "control-cells" => Ok(ReferenceKind::ControlCells),
            "training" => Ok(ReferenceKind::Training),
            o => Err(format!("'{o}': use file-cells or control-cells")),
        }
    }
}

/// The reference one file's cells are measured against, per panel gene.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reference {
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
    /// Whether the file measures each panel gene (an unmeasured gene is absent, not zero).
    pub measured: Vec<bool>,
    /// Where the centre and scale came from, for people: "this file's 1,000 cells", ...
    pub source: String,
}

impl Reference {
    /// The file's own reference over `x` (row-major cells × `measured.len()` values), or the
    /// training reference when the model expects it or the file has too few cells (then `warning`).
    pub fn for_file(
        x: &[f32],
        measured: &[bool],
        kind: ReferenceKind,
        training: (&[f32], &[f32]),
    ) -> (Reference, Option<String>) {
        let g = measured.len();
        let n = x.len() / g.max(1);
        let training_reference = |source: String| Reference {
            mean: training.0.to_vec(),
            sd: training.1.to_vec(),
            measured: measured.to_vec(),
            source,
        };
        match kind {
            ReferenceKind::Training => (training_reference("the model's training cells".into()), None),
            ReferenceKind::FileCells | ReferenceKind::ControlCells if n < MIN_REFERENCE_CELLS => (
                training_reference(format!("the model's training cells (the file has {n} cells)")),
                Some(format!(
                    "the file has {n} cells, fewer than the {MIN_REFERENCE_CELLS} needed to measure each gene against the file itself; genes are measured against the model's training cells instead, so a file from another lab or depth may look perturbed throughout"
                )),
            ),
            ReferenceKind::FileCells | ReferenceKind::ControlCells => {
                let (mean, sd) = centre_and_scale(x, g);
                (Reference { mean, sd, measured: measured.to_vec(), source: format!("this file's {n} cells") }, None)
            }
        }
    }
}

/// Which of a file's cells define its reference; resolved from the user's control label and batch
/// column by `Analysis::set_reference`. Default: every cell, one batch.
#[derive(Clone, Debug, Default)]
pub struct ReferenceCells {
    /// Per cell: labelled control (the reference is these cells'), with the label for people.
    pub control: Option<(Vec<bool>, String)>,
    /// Per cell: its batch (an index into the names), with the column for people.
    pub batches: Option<Batches>,
}

#[derive(Clone, Debug)]
pub struct Batches {
    pub column: String,
    pub names: Vec<String>,
    pub of_cell: Vec<usize>,
}

impl Reference {
    /// The file's reference from the cells `cells` names (its control cells when named, else every
    /// cell), after each batch is moved into a common frame (`align_batches`, which changes `x`).
    /// Warnings say where a choice could not be honoured.
    pub fn for_cells(
        x: &mut [f32],
        measured: &[bool],
        kind: ReferenceKind,
        training: (&[f32], &[f32]),
        cells: &ReferenceCells,
    ) -> (Reference, Vec<String>) {
        let g = measured.len().max(1);
        let mut warnings = Vec::new();
        let mut control = cells.control.as_ref();
        if let Some((is_control, label)) = control {
            let n = is_control.iter().filter(|&&c| c).count();
            if n < MIN_REFERENCE_CELLS {
                warnings.push(format!(
                    "only {n} cells are labelled '{label}', fewer than the {MIN_REFERENCE_CELLS} a stable reference needs; genes are measured against all of the file's cells instead"
                ));
                control = None;
            }
        }
        // The model's card says what its inputs were measured against in training; control cells
        // serve a model trained on other references only to align batches.
        match (kind, control) {
            (ReferenceKind::ControlCells, None) => warnings.push(
                "this model measures genes against a file's control cells; name their label (--control, or the page's field), or genes are measured against all cells, which the model was not trained on".into(),
            ),
            (ReferenceKind::FileCells | ReferenceKind::Training, Some(_)) if cells.batches.is_none() => warnings.push(
                "this model measures genes against all of a file's cells, as it was trained; the control label only chooses each batch's reference cells, so it changes nothing without a batch column".into(),
            ),
            _ => {}
        }
        let is_reference = control.map(|(c, _)| c.as_slice());
        let batches = cells.batches.as_ref().map(|b| (b, align_batches(x, measured, b, is_reference)));
        let (mut reference, warning) = match control.filter(|_| kind == ReferenceKind::ControlCells) {
            Some((is_control, label)) => {
                let rows: Vec<usize> = (0..x.len() / g).filter(|&i| is_control[i]).collect();
                let (mean, sd) = centre_and_scale(&gather_rows(x, g, &rows), g);
                let source = format!("this file's {} control cells (labelled '{label}')", rows.len());
                (Reference { mean, sd, measured: measured.to_vec(), source }, None)
            }
            None => Reference::for_file(x, measured, kind, training),
        };
        warnings.extend(warning);
        if let Some((b, (aligned, skipped))) = batches {
            let whose = if control.is_some() { "control cells" } else { "cells" };
            reference.source += &format!(", each of {aligned} batches of '{}' against its own {whose}", b.column);
            if !skipped.is_empty() {
                warnings.push(format!(
                    "batches of '{}' with fewer than {MIN_REFERENCE_CELLS} reference {whose} are left as they are: {}",
                    b.column,
                    skipped.join(", ")
                ));
            }
        }
        (reference, warnings)
    }
}

/// The rows `rows` of a row-major matrix with `g` columns.
fn gather_rows(x: &[f32], g: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter().flat_map(|&i| &x[i * g..(i + 1) * g]).copied().collect()
}

/// Undoes each batch's gene-wise scale (a gem group's chemistry multiplies each gene's counts by
/// its own factor): every value of a batch's gene is multiplied, on the CP10k scale, by the ratio
/// of the gene's mean over all reference cells to its mean over the batch's own (`is_reference`:
/// its control cells; None: all of them). A multiplicative correction keeps zeros at zero and the
/// counts' shape, which a shift of log values would not. Unmeasured genes stay absent. Returns
/// how many batches were aligned and the names of those with too few reference cells, left as
/// they are.
pub fn align_batches(
    x: &mut [f32],
    measured: &[bool],
    batches: &Batches,
    is_reference: Option<&[bool]>,
) -> (usize, Vec<String>) {
    let g = measured.len().max(1);
    let mut rows_of = vec![Vec::new(); batches.names.len()];
    for (i, &b) in batches.of_cell.iter().enumerate() {
        rows_of[b].push(i);
    }
    // Per batch with enough reference cells: their count and each gene's summed CP10k.
    let mut sums = Vec::new();
    let mut skipped = Vec::new();
    for (b, rows) in rows_of.iter().enumerate() {
        let own: Vec<usize> = rows.iter().copied().filter(|&i| is_reference.is_none_or(|r| r[i])).collect();
        if own.len() < MIN_REFERENCE_CELLS {
            skipped.push(batches.names[b].clone());
            continue;
        }
        let mut sum = vec![0f64; g];
        for &i in &own {
            sum.iter_mut().zip(&x[i * g..(i + 1) * g]).for_each(|(s, &v)| *s += (v as f64).exp_m1());
        }
        sums.push((b, own.len() as f64, sum));
    }
    let cells: f64 = sums.iter().map(|s| s.1).sum();
    let overall: Vec<f64> = (0..g).map(|j| sums.iter().map(|s| s.2[j]).sum::<f64>() / cells).collect();
    for (b, n, sum) in &sums {
        let ratio: Vec<f32> =
            (0..g).map(|j| (overall[j].max(MIN_CP10K) / (sum[j] / n).max(MIN_CP10K)).clamp(0.1, 10.0) as f32).collect();
        for &i in &rows_of[*b] {
            for j in (0..g).filter(|&j| measured[j]) {
                let v = &mut x[i * g + j];
                *v = (v.exp_m1() * ratio[j]).ln_1p();
            }
        }
    }
    (sums.len(), skipped)
}

/// A gene's batch mean below this (CP10k) is too small to estimate its batch factor from.
const MIN_CP10K: f64 = 1e-3;

/// The smallest scale a gene's z-score divides by (as `GenomeFeatures::with_reference`).
pub const SD_FLOOR: f32 = 0.05;

/// Per column of a row-major matrix with `g` columns: mean and sd after clipping each column at
/// its TRIM and 1 − TRIM quantiles (winsorising).
pub fn centre_and_scale(x: &[f32], g: usize) -> (Vec<f32>, Vec<f32>) {
    let n = x.len() / g.max(1);
    let mut mean = vec![0f32; g];
    let mut sd = vec![0f32; g];
    if n == 0 {
        return (mean, sd);
    }
    let mut column = Vec::with_capacity(n);
    for j in 0..g {
        column.clear();
        column.extend(x.iter().skip(j).step_by(g).copied());
        let k = ((n as f64 * TRIM) as usize).min(n - 1);
        let lo = *column.select_nth_unstable_by(k, f32::total_cmp).1;
        let hi = *column.select_nth_unstable_by(n - 1 - k, f32::total_cmp).1;
        let (mut s, mut sq) = (0f64, 0f64);
        for &v in &column {
            let v = v.clamp(lo, hi) as f64;
            s += v;
            sq += v * v;
        }
        let m = s / n as f64;
        mean[j] = m as f32;
        sd[j] = (sq / n as f64 - m * m).max(0.0).sqrt() as f32;
    }
    (mean, sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winsorised_reference_ignores_a_few_extreme_cells() {
        // 1,000 cells: column 0 is 1.0 ± 0.5 alternating, with 5 huge outliers; column 1 constant.
        let g = 2;
        let mut x = Vec::new();
        for i in 0..1000 {
            let v = if i < 5 {
                100.0
            } else if i % 2 == 0 {
                0.5
            } else {
                1.5
            };
            x.extend([v, 2.0]);
        }
        let (mean, sd) = centre_and_scale(&x, g);
        assert!((mean[0] - 1.0).abs() < 0.01, "{}", mean[0]);
        assert!((sd[0] - 0.5).abs() < 0.01, "{}", sd[0]);
        assert_eq!((mean[1], sd[1]), (2.0, 0.0));
    }

    #[test]
    fn small_files_fall_back_to_the_training_reference_with_a_warning() {
        let x = vec![1.0f32; 10 * 3];
        let measured = [true, true, false];
        let training = (&[0.5f32, 0.5, 0.5][..], &[1.0f32, 1.0, 1.0][..]);
        let (r, warning) = Reference::for_file(&x, &measured, ReferenceKind::FileCells, training);
        assert_eq!(r.mean, vec![0.5; 3]);
        assert!(warning.unwrap().contains("10 cells"));
        let x = vec![1.0f32; 200 * 3];
        let (r, warning) = Reference::for_file(&x, &measured, ReferenceKind::FileCells, training);
        assert_eq!((r.mean, warning), (vec![1.0; 3], None));
        assert_eq!(r.measured, measured);
        let (r, warning) = Reference::for_file(&x, &measured, ReferenceKind::Training, training);
        assert_eq!((r.mean, warning), (vec![0.5; 3], None));
    }

    #[test]
    fn batches_are_brought_to_one_scale_per_gene_and_zeros_stay_zero() {
        // Three genes, 600 cells in batches a (300), b (250), c (50 < MIN_REFERENCE_CELLS). Gene 0
        // is captured twice as well in b; gene 1 is the same; gene 2 is not measured.
        let g = 3;
        let cp10k = |i: usize| 1.0 + (i % 5) as f64;
        let mut x = Vec::new();
        let mut of_cell = Vec::new();
        for i in 0..600 {
            let b = if i < 300 {
                0
            } else if i < 550 {
                1
            } else {
                2
            };
            let scale = if b == 1 { 2.0 } else { 1.0 };
            let v0 = if i % 7 == 0 { 0.0 } else { (cp10k(i) * scale).ln_1p() };
            x.extend([v0 as f32, cp10k(i).ln_1p() as f32, 0.0]);
            of_cell.push(b);
        }
        let zeros: Vec<usize> = (0..600).filter(|i| x[i * g] == 0.0).collect();
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let batches = Batches { column: "gem".into(), names, of_cell: of_cell.clone() };
        let before = x.clone();
        let (aligned, skipped) = align_batches(&mut x, &[true, true, false], &batches, None);
        assert_eq!((aligned, skipped), (2, vec!["c".to_string()]));
        let mean = |b: usize, j: usize| {
            let rows: Vec<usize> = (0..600).filter(|&i| of_cell[i] == b).collect();
            rows.iter().map(|&i| (x[i * g + j] as f64).exp_m1()).sum::<f64>() / rows.len() as f64
        };
        assert!((mean(0, 0) - mean(1, 0)).abs() < 1e-3 * mean(0, 0), "{} vs {}", mean(0, 0), mean(1, 0));
        assert!((mean(0, 1) - mean(1, 1)).abs() < 1e-3 * mean(0, 1));
        assert!(zeros.iter().all(|&i| x[i * g] == 0.0));
        assert!((0..600).all(|i| x[i * g + 2] == 0.0));
        assert_eq!(&x[550 * g..], &before[550 * g..], "the small batch is left as it is");
    }
}
