//! What each gene's level is measured against. A model trained on one file and run on another sees
//! other depths, gene counts and baselines; z-scores against the *training* cells then make every
//! cell of the new file look perturbed everywhere. So each file is its own reference: every panel
//! gene's centre and scale over the file's own cells, label-free (in a pooled screen most cells are
//! unperturbed at any one gene, and no cell's label enters anything). The model is trained the same
//! way, on references of its training file. Too few cells for a stable reference: the model's
//! training reference, with a warning.

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
}

/// The reference one file's cells are measured against, per panel gene.
#[derive(Clone, Debug, Serialize)]
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
            ReferenceKind::FileCells if n < MIN_REFERENCE_CELLS => (
                training_reference(format!("the model's training cells (the file has {n} cells)")),
                Some(format!(
                    "the file has {n} cells, fewer than the {MIN_REFERENCE_CELLS} needed to measure each gene against the file itself; genes are measured against the model's training cells instead, so a file from another lab or depth may look perturbed throughout"
                )),
            ),
            ReferenceKind::FileCells => {
                let (mean, sd) = centre_and_scale(x, g);
                (Reference { mean, sd, measured: measured.to_vec(), source: format!("this file's {n} cells") }, None)
            }
        }
    }
}

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
}
