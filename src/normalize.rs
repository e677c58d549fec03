//! Normalisation as scanpy does it (`normalize_total(target_sum=1e4)` then `log1p`), after detecting
//! whether a file holds raw counts or values that were already normalised, so the model sees the
//! same scale whatever the file held.

use serde::Serialize;

use crate::io::CsrMatrix;

/// scanpy's conventional target sum (counts per 10k).
pub const TARGET_SUM: f64 = 1e4;

/// What the values of a matrix are, as far as they tell.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ValueKind {
    /// Non-negative integers: raw UMI counts.
    Counts,
    /// log1p of per-cell normalised values; `target_sum` is the median per-cell sum of expm1(x).
    LogNormalized { target_sum: f64 },
    /// Per-cell normalised but not logged (each cell sums to about `target_sum`).
    Normalized { target_sum: f64 },
}

impl ValueKind {
    /// The `values` field of `inspect`: `counts` or `normalized`.
    pub fn short(&self) -> &'static str {
        match self {
            ValueKind::Counts => "counts",
            _ => "normalized",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ValueKind::Counts => "raw counts (integers); normalising with normalize_total(1e4) + log1p".into(),
            ValueKind::LogNormalized { target_sum } if *target_sum > 2.0 * TARGET_SUM => {
                format!("log-normalised values (log1p, cells sum to ~{target_sum:.0} before the log); rescaling to 1e4")
            }
            ValueKind::LogNormalized { .. } => {
                "log-normalised values (log1p of counts per 10k); used as they are".into()
            }
            ValueKind::Normalized { target_sum } => {
                format!(
                    "normalised but not logged (cells sum to ~{target_sum:.0}); applying log1p (rescaled to 1e4 if needed)"
                )
            }
        }
    }
}

/// Looks at the values: integers mean counts. Otherwise a normalised cell's values are multiples of
/// one per-cell unit (count × target/total), before or after undoing log1p; whichever reading makes
/// them integral tells logged from unlogged. This works on gene subsets, where totals do not.
pub fn detect(m: &CsrMatrix) -> ValueKind {
    // Up to 2,000 evenly spaced cells decide; reading every value of a 100k-cell file adds nothing.
    let rows = sample_rows(m);
    if rows.iter().all(|&i| m.row(i).1.iter().all(|v| v.fract() == 0.0)) {
        return ValueKind::Counts;
    }
    let logged = integrality(m, &rows, |v| (v as f64).exp_m1());
    let plain = integrality(m, &rows, |v| v as f64);
    let max = m.data.iter().cloned().fold(0f32, f32::max);
    let sums =
        |f: fn(f32) -> f64| median(&rows.iter().map(|&i| m.row(i).1.iter().map(|&v| f(v)).sum()).collect::<Vec<f64>>());
    if logged > plain || (logged == plain && max < 20.0) {
        ValueKind::LogNormalized { target_sum: sums(|v| (v as f64).exp_m1()) }
    } else {
        ValueKind::Normalized { target_sum: sums(|v| v as f64) }
    }
}

/// Share of values that are whole multiples of their cell's smallest value, after `f`.
fn integrality(m: &CsrMatrix, rows: &[usize], f: impl Fn(f32) -> f64) -> f64 {
    let (mut hits, mut total) = (0usize, 0usize);
    for &i in rows {
        let vals: Vec<f64> = m.row(i).1.iter().map(|&v| f(v)).collect();
        let unit = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        if vals.len() < 2 || unit <= 0.0 {
            continue;
        }
        for v in vals {
            let r = v / unit;
            total += 1;
            if (r - r.round()).abs() < 0.01 * r.max(1.0) {
                hits += 1;
            }
        }
    }
    if total == 0 { 0.0 } else { hits as f64 / total as f64 }
}

fn sample_rows(m: &CsrMatrix) -> Vec<usize> {
    let step = (m.n_rows / 2000).max(1);
    (0..m.n_rows).step_by(step).filter(|&i| m.indptr[i + 1] > m.indptr[i]).collect()
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// Brings any input to scanpy's scale, log1p(x / cell total × 1e4):
/// counts are normalised per cell over the genes in the file; already-normalised values are kept
/// per cell (their totals may span genes the file no longer has) and only rescaled by one factor
/// when they were made with another target sum (e.g. CPM, 1e6). Empty cells stay zero.
pub fn normalize(m: &CsrMatrix, kind: ValueKind) -> CsrMatrix {
    normalize_with_totals(m, kind, None)
}

/// The same, with each cell's count total given (`totals`: over every gene of a file of which `m`
/// holds some genes only); None: the row sums of `m`.
pub fn normalize_with_totals(m: &CsrMatrix, kind: ValueKind, totals: Option<&[f64]>) -> CsrMatrix {
    let mut out = m.clone();
    for i in 0..m.n_rows {
        let (a, b) = (m.indptr[i] as usize, m.indptr[i + 1] as usize);
        let f = value_map(kind, row_total(m, totals, i));
        out.data[a..b].iter_mut().for_each(|v| *v = f(*v));
    }
    out
}

/// The normalised values of `columns` (panel position → the matrix's column), cells × panel
/// row-major (0 where a column is absent), made row by row: no normalised copy of the matrix.
pub fn normalized_columns(
    m: &CsrMatrix,
    kind: ValueKind,
    totals: Option<&[f64]>,
    columns: &[Option<usize>],
) -> Vec<f32> {
    let g = columns.len();
    let mut position = vec![usize::MAX; m.n_cols];
    for (p, c) in columns.iter().enumerate() {
        if let Some(&c) = c.as_ref().filter(|&&c| c < m.n_cols) {
            position[c] = p;
        }
    }
    let mut x = vec![0f32; m.n_rows * g];
    for (i, out) in x.chunks_mut(g.max(1)).enumerate().take(m.n_rows) {
        let f = value_map(kind, row_total(m, totals, i));
        let (cols, vals) = m.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            if let Some(&p) = position.get(j as usize).filter(|&&p| p != usize::MAX) {
                out[p] = f(v);
            }
        }
    }
    x
}

/// Cell `i`'s count total: given (over every gene of the file), or its row's sum.
fn row_total(m: &CsrMatrix, totals: Option<&[f64]>, i: usize) -> f64 {
    match totals {
        Some(t) if t.len() == m.n_rows => t[i],
        _ => {
            let (a, b) = (m.indptr[i] as usize, m.indptr[i + 1] as usize);
            m.data[a..b].iter().map(|&v| v as f64).sum()
        }
    }
}

/// How one value of a cell whose count total is `total` maps to log1p(CP10k) (see `normalize`).
fn value_map(kind: ValueKind, total: f64) -> impl Fn(f32) -> f32 {
    // Sums up to 2e4 are read as 1e4-scaled data (a gene subset only lowers them).
    let factor = |target: f64| {
        if target > 2.0 * TARGET_SUM { TARGET_SUM / target } else { 1.0 }
    };
    let (scale, logged) = match kind {
        // Empty cells stay zero.
        ValueKind::Counts => (if total > 0.0 { TARGET_SUM / total } else { 0.0 }, false),
        ValueKind::LogNormalized { target_sum } => (factor(target_sum), true),
        ValueKind::Normalized { target_sum } => (factor(target_sum), false),
    };
    move |v: f32| match (logged, scale == 1.0) {
        (true, true) => v,
        (true, false) => ((v as f64).exp_m1() * scale).ln_1p() as f32,
        (false, _) => (v as f64 * scale).ln_1p() as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> CsrMatrix {
        let mut m = CsrMatrix::new(4);
        m.push_dense_row(&[1.0, 0.0, 3.0, 6.0]);
        m.push_dense_row(&[0.0, 10.0, 10.0, 0.0]);
        m.push_dense_row(&[2.0, 2.0, 0.0, 100.0]);
        m
    }

    #[test]
    fn counts_are_normalised_like_scanpy() {
        let m = counts();
        assert_eq!(detect(&m), ValueKind::Counts);
        let n = normalize(&m, ValueKind::Counts);
        // scanpy: log1p(1 / 10 * 1e4) = log1p(1000)
        assert!((n.dense_row(0)[0] - 1000f32.ln_1p()).abs() < 1e-5);
        assert!((n.dense_row(1)[1] - 5000f32.ln_1p()).abs() < 1e-4);
    }

    #[test]
    fn log_normalised_input_is_recognised_and_maps_to_the_same_values() {
        let m = counts();
        let once = normalize(&m, ValueKind::Counts);
        let kind = detect(&once);
        assert!(matches!(kind, ValueKind::LogNormalized { target_sum } if (target_sum - 1e4).abs() < 1.0), "{kind:?}");
        let twice = normalize(&once, kind);
        for (a, b) in once.data.iter().zip(&twice.data) {
            assert!((a - b).abs() < 1e-4);
        }
        // A different target sum (e.g. 1e6, CPM) is rescaled to 1e4.
        let mut cpm = m.clone();
        for i in 0..cpm.n_rows {
            let (a, b) = (cpm.indptr[i] as usize, cpm.indptr[i + 1] as usize);
            let t: f32 = cpm.data[a..b].iter().sum();
            for v in &mut cpm.data[a..b] {
                *v = (*v / t * 1e6).ln_1p();
            }
        }
        let k = detect(&cpm);
        assert!(matches!(k, ValueKind::LogNormalized { target_sum } if (target_sum - 1e6).abs() < 10.0), "{k:?}");
        for (a, b) in once.data.iter().zip(&normalize(&cpm, k).data) {
            assert!((a - b).abs() < 1e-3);
        }
    }
}
