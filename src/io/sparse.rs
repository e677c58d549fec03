//! A compressed-sparse-row cells × genes matrix: the one in-memory form every reader produces.
//! Single-cell matrices are mostly zeros, so CSR keeps a 100k-cell file at one compact copy.

/// Cells are rows, genes are columns. Values are f32 (counts or normalised values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsrMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    /// Row `i` occupies `indices[indptr[i]..indptr[i+1]]` and the same range of `data`.
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub data: Vec<f32>,
}

impl CsrMatrix {
    pub fn new(n_cols: usize) -> Self {
        CsrMatrix { n_rows: 0, n_cols, indptr: vec![0], indices: Vec::new(), data: Vec::new() }
    }

    /// Appends one row given as a dense slice, keeping only non-zeros.
    pub fn push_dense_row(&mut self, row: &[f32]) {
        debug_assert_eq!(row.len(), self.n_cols);
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                self.indices.push(j as u32);
                self.data.push(v);
            }
        }
        self.indptr.push(self.data.len() as u64);
        self.n_rows += 1;
    }

    /// Appends one row given as sorted (column, value) pairs.
    pub fn push_sparse_row(&mut self, cols: &[u32], vals: &[f32]) {
        self.indices.extend_from_slice(cols);
        self.data.extend_from_slice(vals);
        self.indptr.push(self.data.len() as u64);
        self.n_rows += 1;
    }

    /// Room for what is still to come, at the rate seen so far: the entries held came from `seen`
    /// units of input (rows, or the file's stored values), and `rest` units and `more_rows` rows
    /// follow (5 % spare). A matrix read window by window then does not grow by doubling: the
    /// spare room and the copy at each growth lifted the page's memory for a large file by a few
    /// hundred MB (measured).
    pub fn reserve_at_rate(&mut self, seen: u64, rest: u64, more_rows: usize) {
        let more = (rest as f64 * self.nnz() as f64 / seen.max(1) as f64 * 1.05) as usize + 1024;
        self.indices.reserve_exact(more);
        self.data.reserve_exact(more);
        self.indptr.reserve_exact(more_rows);
    }

    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    pub fn dense_row(&self, i: usize) -> Vec<f32> {
        let mut out = vec![0.0; self.n_cols];
        let (cols, vals) = self.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            out[j as usize] = v;
        }
        out
    }

    pub fn row_sums(&self) -> Vec<f64> {
        crate::parallel::map(self.n_rows, |i| lane_sum(self.row(i).1))
    }

    /// Builds a CSR matrix from compressed-sparse-column arrays (AnnData's `csc_matrix`).
    pub fn from_csc(n_rows: usize, n_cols: usize, colptr: &[u64], rows: &[u32], vals: &[f32]) -> Self {
        let mut counts = vec![0u64; n_rows + 1];
        for &r in rows {
            counts[r as usize + 1] += 1;
        }
        for i in 0..n_rows {
            counts[i + 1] += counts[i];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; vals.len()];
        let mut data = vec![0f32; vals.len()];
        for j in 0..n_cols {
            for k in colptr[j] as usize..colptr[j + 1] as usize {
                let r = rows[k] as usize;
                let slot = next[r] as usize;
                indices[slot] = j as u32;
                data[slot] = vals[k];
                next[r] += 1;
            }
        }
        CsrMatrix { n_rows, n_cols, indptr, indices, data }
    }

    /// Keeps only the given columns, in the given order (used to project onto a model's gene panel).
    pub fn select_columns(&self, columns: &[Option<usize>]) -> CsrMatrix {
        let mut remap = vec![u32::MAX; self.n_cols];
        for (new, old) in columns.iter().enumerate() {
            if let Some(old) = old {
                remap[*old] = new as u32;
            }
        }
        let mut out = CsrMatrix::new(columns.len());
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        for i in 0..self.n_rows {
            pairs.clear();
            let (cols, vals) = self.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                let n = remap[j as usize];
                if n != u32::MAX {
                    pairs.push((n, v));
                }
            }
            pairs.sort_unstable_by_key(|p| p.0);
            for &(j, v) in &pairs {
                out.indices.push(j);
                out.data.push(v);
            }
            out.indptr.push(out.data.len() as u64);
            out.n_rows += 1;
        }
        out
    }

    /// Keeps only the given rows, in order.
    pub fn select_rows(&self, rows: &[usize]) -> CsrMatrix {
        let mut out = CsrMatrix::new(self.n_cols);
        for &i in rows {
            let (c, v) = self.row(i);
            out.push_sparse_row(c, v);
        }
        out
    }

    /// Transposes (used for CSV files written with genes as rows).
    pub fn transpose(&self) -> CsrMatrix {
        // A CSR matrix read as CSC of the transpose: reuse the CSC conversion.
        CsrMatrix::from_csc(self.n_cols, self.n_rows, &self.indptr, &self.indices, &self.data)
    }
}

/// Sum in f64 with four running partial sums (one per lane, so the loop vectorises), combined in
/// a fixed order: the same result on every platform and thread count.
pub fn lane_sum(values: &[f32]) -> f64 {
    let mut lanes = [0f64; 4];
    let mut chunks = values.chunks_exact(4);
    for c in &mut chunks {
        for l in 0..4 {
            lanes[l] += c[l] as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> CsrMatrix {
        let mut m = CsrMatrix::new(3);
        m.push_dense_row(&[1.0, 0.0, 2.0]);
        m.push_dense_row(&[0.0, 0.0, 0.0]);
        m.push_dense_row(&[0.0, 3.0, 4.0]);
        m
    }

    #[test]
    fn csc_round_trip_and_transpose() {
        let m = example();
        let t = m.transpose();
        assert_eq!((t.n_rows, t.n_cols), (3, 3));
        assert_eq!(t.dense_row(0), vec![1.0, 0.0, 0.0]);
        assert_eq!(t.dense_row(2), vec![2.0, 0.0, 4.0]);
        assert_eq!(t.transpose(), m);
    }

    #[test]
    fn select_columns_reorders_and_fills_missing() {
        let m = example();
        let s = m.select_columns(&[Some(2), None, Some(0)]);
        assert_eq!(s.dense_row(0), vec![2.0, 0.0, 1.0]);
        assert_eq!(s.dense_row(2), vec![4.0, 0.0, 0.0]);
        assert_eq!(m.row_sums(), vec![3.0, 0.0, 7.0]);
    }

    #[test]
    fn lane_sum_is_the_sum_for_every_length() {
        for n in [0, 1, 3, 4, 5, 17, 1000] {
            let values: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 * 0.5 + 0.25).collect();
            let plain: f64 = values.iter().map(|&v| v as f64).sum();
            assert!((lane_sum(&values) - plain).abs() < 1e-9, "length {n}");
        }
    }
}
