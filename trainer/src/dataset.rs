//! Labelled cells ready for training and evaluation: read with the core readers, labels parsed to
//! gene sets, normalised exactly as `Predictor::prepare` does at prediction time, projected onto a
//! gene panel (highly variable genes + every candidate target present).

use std::path::Path;

use crate::error::{CliError, io_at};

use mamba_perturb::genome::GeneTable;
use mamba_perturb::io::{self, ExpressionData, ReadOptions};
use mamba_perturb::labels::Perturbation;
use mamba_perturb::model::card::CardGene;
use mamba_perturb::normalize;
use mamba_perturb::predict::match_genes;

/// All cells of a labelled file, normalised, over all of the file's genes (sparse).
pub struct Labelled {
    pub name: String,
    pub sha256: String,
    pub data: ExpressionData,
    /// Normalised log1p(CP10k), cells × file genes.
    pub normalised: io::CsrMatrix,
    pub labels: Vec<Perturbation>,
    /// Distinct conditions, sorted; `condition[i]` indexes into it.
    pub conditions: Vec<Perturbation>,
    pub condition: Vec<usize>,
    /// Candidate target genes: every gene named in a label, sorted.
    pub candidates: Vec<String>,
}

pub fn sha256_file(path: &Path) -> Result<String, CliError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(io_at(path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io_at(path))?;
    Ok(format!("{:x}", h.finalize()))
}

pub fn load(path: &Path, options: &ReadOptions) -> Result<Labelled, CliError> {
    let data = io::read_path(path, options)?;
    let kind = normalize::detect(&data.matrix);
    let normalised = normalize::normalize(&data.matrix, kind);
    with_labels(path, data, normalised)
}

/// Everything but the cells (an h5ad's metadata: genes, labels): `normalised` and `data.matrix`
/// have no rows. Streaming reads the cells afterwards through `CsrRows`.
pub fn load_labels(path: &Path, options: &ReadOptions) -> Result<Labelled, CliError> {
    let data = io::h5ad::read_metadata_path(path, options)?;
    let normalised = io::CsrMatrix::new(data.genes.len());
    with_labels(path, data, normalised)
}

fn with_labels(path: &Path, data: ExpressionData, normalised: io::CsrMatrix) -> Result<Labelled, CliError> {
    let name = path.display().to_string();
    let column = data.labels.as_ref().ok_or_else(|| CliError::Data {
        file: name.clone(),
        problem: format!(
            "no perturbation label column found (looked for {}); name it with --label-column",
            io::LABEL_COLUMN_CANDIDATES.join(", ")
        ),
    })?;
    let labels = mamba_perturb::labels::parse_column(&column.values).map_err(|(i, e)| {
        CliError::Labels(format!("{name}: obs column '{}', cell {}: {e}", column.name, data.cells[i]))
    })?;
    // Distinct labels without a second copy of every cell's (a screen has millions of cells).
    let conditions: Vec<Perturbation> =
        labels.iter().collect::<std::collections::BTreeSet<_>>().into_iter().cloned().collect();
    let condition = labels.iter().map(|l| conditions.binary_search(l).unwrap_or(0)).collect();
    let mut candidates: Vec<String> = conditions.iter().flat_map(|c| c.genes().to_vec()).collect();
    candidates.sort();
    candidates.dedup();
    Ok(Labelled { name, sha256: sha256_file(path)?, data, normalised, labels, conditions, condition, candidates })
}

/// Per gene: sum and sum of squares of normalised values over some cells, and how many cells.
#[derive(Clone, Debug)]
pub struct GeneMoments {
    pub sum: Vec<f64>,
    pub squares: Vec<f64>,
    pub cells: usize,
}

impl GeneMoments {
    pub fn new(genes: usize) -> GeneMoments {
        GeneMoments { sum: vec![0.0; genes], squares: vec![0.0; genes], cells: 0 }
    }

    /// Adds one cell's stored values (columns, values).
    pub fn add(&mut self, (cols, vals): (&[u32], &[f32])) {
        for (&j, &v) in cols.iter().zip(vals) {
            self.sum[j as usize] += v as f64;
            self.squares[j as usize] += (v as f64) * (v as f64);
        }
        self.cells += 1;
    }

    pub fn variances(&self) -> Vec<f64> {
        let n = self.cells.max(1) as f64;
        self.sum.iter().zip(&self.squares).map(|(s, q)| q / n - (s / n).powi(2)).collect()
    }
}

impl Labelled {
    /// Highly variable genes over `rows` (variance of normalised values), plus every candidate gene
    /// the file measures unless `mask_targets`, in which case candidates are left out entirely.
    pub fn choose_panel(&self, rows: &[usize], n_hvg: usize, mask_targets: bool) -> Vec<usize> {
        let mut moments = GeneMoments::new(self.data.genes.len());
        rows.iter().for_each(|&i| moments.add(self.normalised.row(i)));
        self.panel_by_variance(&moments.variances(), n_hvg, mask_targets)
    }

    /// `choose_panel` from each gene's variance (a streamed file adds its moments chunk by chunk).
    pub fn panel_by_variance(&self, var: &[f64], n_hvg: usize, mask_targets: bool) -> Vec<usize> {
        let g = self.data.genes.len();
        let candidate_cols = self.candidate_columns();
        let is_candidate = |j: usize| candidate_cols.contains(&Some(j));
        let mut order: Vec<usize> = (0..g).filter(|&j| !is_candidate(j)).collect();
        order.sort_by(|&a, &b| var[b].total_cmp(&var[a]).then(a.cmp(&b)));
        let mut panel: Vec<usize> = order.into_iter().take(n_hvg).collect();
        if !mask_targets {
            panel.extend(candidate_cols.iter().flatten());
        }
        panel.sort_unstable();
        panel.dedup();
        panel
    }

    /// The file column of each candidate gene (None when the file does not measure it).
    /// This file's columns for `panel` columns of `other` (matched by Ensembl ID, then symbol).
    pub fn columns_of(&self, other: &Labelled, panel: &[usize]) -> Vec<Option<usize>> {
        let ids = other.data.gene_ids.as_ref();
        match_genes(&self.data, panel.iter().map(|&j| (other.data.genes[j].as_str(), ids.map(|i| i[j].as_str()))))
    }

    pub fn candidate_columns(&self) -> Vec<Option<usize>> {
        match_genes(&self.data, self.candidates.iter().map(|c| (c.as_str(), None)))
    }

    /// Card entries (symbol, ID, place on GRCh38) for file columns.
    pub fn card_genes(&self, columns: &[usize]) -> Vec<CardGene> {
        let table = GeneTable::grch38();
        columns
            .iter()
            .map(|&j| {
                let symbol = &self.data.genes[j];
                let id = self.data.gene_ids.as_ref().map(|ids| ids[j].as_str());
                let rec = id.and_then(|id| table.lookup(id)).or_else(|| table.lookup(symbol));
                CardGene::new(symbol, id, rec.and_then(|r| table.locus(r)).as_ref())
            })
            .collect()
    }

    pub fn candidate_card_genes(&self) -> Vec<CardGene> {
        let table = GeneTable::grch38();
        self.candidates
            .iter()
            .map(|c| {
                let rec = table.lookup(c);
                CardGene::new(c, rec.map(|r| r.gene_id.as_str()), rec.and_then(|r| table.locus(r)).as_ref())
            })
            .collect()
    }

    /// The cells whose condition `keep` accepts.
    pub fn rows_where(&self, keep: impl Fn(&Perturbation) -> bool) -> Vec<usize> {
        (0..self.condition.len()).filter(|&i| keep(&self.conditions[self.condition[i]])).collect()
    }

    /// Dense rows × panel matrix of normalised values.
    pub fn dense(&self, rows: &[usize], panel: &[usize]) -> Vec<f32> {
        self.dense_columns(rows, &panel.iter().map(|&j| Some(j)).collect::<Vec<_>>())
    }

    /// `dense` over columns that may be absent (their values are 0).
    pub fn dense_columns(&self, rows: &[usize], panel: &[Option<usize>]) -> Vec<f32> {
        let sub = self.normalised.select_rows(rows).select_columns(panel);
        let g = panel.len();
        let mut x = vec![0f32; rows.len() * g];
        for i in 0..sub.n_rows {
            let (cols, vals) = sub.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                x[i * g + j as usize] = v;
            }
        }
        x
    }

    /// Candidate indices of each cell's perturbed genes.
    pub fn targets(&self, rows: &[usize]) -> Vec<Vec<usize>> {
        rows.iter()
            .map(|&i| self.labels[i].genes().iter().filter_map(|g| self.candidates.binary_search(g).ok()).collect())
            .collect()
    }
}

/// A SIMULATED labelled h5ad (scPerturb layout: counts in X) in a temporary folder of its own, for
/// tests: (folder, file). The caller removes the folder.
#[cfg(test)]
pub fn simulated_h5ad(tag: &str, seed: u64, cells: usize, genes: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    use mamba_perturb::simulate::{Layout, SimConfig, simulate, to_h5ad};
    let sim = simulate(&SimConfig { seed, cells, genes, ..Default::default() }, |_, _| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("mamba-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cells.h5ad");
    std::fs::write(&path, to_h5ad(&sim, Layout::Scperturb, None).unwrap()).unwrap();
    (dir, path)
}
