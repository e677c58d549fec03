//! A summary of a read file for people and scripts: what was read, what the values are, how many
//! genes sit on the genome, which conditions the labels hold. Behind `mamba-perturb inspect`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::genome::GeneTable;
use crate::io::ExpressionData;
use crate::labels::Perturbation;
use crate::normalize::{self, ValueKind};

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub file: String,
    pub kind: &'static str,
    pub cells: usize,
    pub genes: usize,
    pub nnz: usize,
    pub matrix: String,
    pub values: &'static str,
    pub values_detail: ValueKind,
    pub median_total_per_cell: f64,
    pub label_column: Option<String>,
    /// Number of distinct conditions (canonical gene sets), null without a label column.
    pub conditions: Option<usize>,
    /// Conditions by kind (`control`, `single`, `double`), null without a label column.
    pub condition_kinds: Option<BTreeMap<&'static str, usize>>,
    /// Genes found in the GRCh38 table; null when placement was skipped (the web page, whose
    /// model panel carries its own loci, does not ship the 564 KB table).
    pub genes_placed: Option<usize>,
    pub genes_not_placed: Option<usize>,
    pub placement: Option<String>,
    pub obs_columns: Vec<String>,
    pub warnings: Vec<String>,
}

/// Summarises what a reader produced, placing its genes on GRCh38. Fails only on unparseable
/// labels (with the row).
pub fn summarize(file: &str, data: &ExpressionData) -> Result<Summary, String> {
    summarize_with(file, data, Some(GeneTable::grch38()))
}

/// `summarize`, with gene placement only when a gene table is given.
pub fn summarize_with(file: &str, data: &ExpressionData, genes: Option<&GeneTable>) -> Result<Summary, String> {
    let kind_of_values = normalize::detect(&data.matrix);
    let mut totals = data.row_totals();
    totals.sort_by(|a, b| a.total_cmp(b));
    let placement = genes.map(|t| t.place(&data.genes, data.gene_ids.as_deref()));

    let (conditions, condition_kinds) = match &data.labels {
        Some(col) => {
            let mut distinct: BTreeMap<Perturbation, usize> = BTreeMap::new();
            for (i, v) in col.values.iter().enumerate() {
                let p = Perturbation::parse(v)
                    .map_err(|e| format!("{file}: obs column '{}', cell {}: {e}", col.name, data.cells[i]))?;
                *distinct.entry(p).or_default() += 1;
            }
            let mut kinds = BTreeMap::new();
            for p in distinct.keys() {
                *kinds.entry(p.kind()).or_default() += 1;
            }
            (Some(distinct.len()), Some(kinds))
        }
        None => (None, None),
    };

    let mut warnings = data.warnings.clone();
    if placement.as_ref().is_some_and(|p| p.placed() == 0) {
        warnings.push(format!(
            "none of the {} genes matched the GRCh38 gene table (by symbol or Ensembl ID), e.g. '{}': are the gene names in the header?",
            data.genes.len(),
            data.genes.first().map(String::as_str).unwrap_or("")
        ));
    }
    Ok(Summary {
        file: file.to_string(),
        kind: if data.simulated { "simulated" } else { "unknown (not marked simulated)" },
        cells: data.matrix.n_rows,
        genes: data.genes_in_file(),
        nnz: data.subset.as_ref().map_or(data.matrix.nnz() as u64, |s| s.nnz_in_file) as usize,
        matrix: data.matrix_source.clone(),
        values: kind_of_values.short(),
        values_detail: kind_of_values,
        median_total_per_cell: totals.get(totals.len() / 2).copied().unwrap_or(0.0),
        label_column: data.labels.as_ref().map(|l| l.name.clone()),
        conditions,
        condition_kinds,
        genes_placed: placement.as_ref().map(|p| p.placed()),
        genes_not_placed: placement.as_ref().map(|p| p.loci.len() - p.placed()),
        placement: placement.as_ref().map(|p| p.report()),
        obs_columns: data.obs_column_names.clone(),
        warnings,
    })
}
