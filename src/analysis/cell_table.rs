//! The per-cell table the page shows: the predicted cells that match a search, in a chosen order,
//! the first few of them. Kept here rather than in the page, so a large file's answers stay in the
//! core's compact form (a few numbers per cell) instead of a JS object per cell in the tab (170,000
//! cells held that way took 80 MB of the page's heap), and the CLI can list the same rows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Analysis, AnalysisError, CellPrediction, RankedCodes};
use crate::predict::{Ranked, answer_name, top_codes};

/// The column the table is ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellOrder {
    /// The file's order.
    #[default]
    Index,
    /// The cell's name.
    Cell,
    /// The top answer's probability.
    Probability,
    /// The file's label.
    Label,
}

impl std::str::FromStr for CellOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "index" => Ok(CellOrder::Index),
            "cell" => Ok(CellOrder::Cell),
            "probability" => Ok(CellOrder::Probability),
            "label" => Ok(CellOrder::Label),
            o => Err(format!("'{o}': use index, cell, probability or label")),
        }
    }
}

/// What the table shows of one request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CellQuery {
    /// Cells whose name or label contains this (any case), or one of whose top answers names this
    /// gene; empty: every predicted cell.
    #[serde(default)]
    pub search: String,
    #[serde(default)]
    pub order: CellOrder,
    #[serde(default)]
    pub descending: bool,
    /// Rows returned at most (the first of the ordered matches).
    pub limit: usize,
    /// Answers per row.
    pub top: usize,
    /// A cell to look up besides (a shared link's): its name, or its 1-based number.
    #[serde(default)]
    pub find: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CellTable {
    pub rows: Vec<CellPrediction>,
    /// Predicted cells that match the search, and predicted cells in all.
    pub matched: usize,
    pub predicted: usize,
    /// The cell `find` names, once it is predicted.
    pub found: Option<CellPrediction>,
}

impl Analysis {
    /// The table of predicted cells for `query` (ties keep the file's order).
    pub fn cell_table(&self, query: &CellQuery) -> Result<CellTable, AnalysisError> {
        let f = self.open_file()?;
        let candidates = self.predictor.candidates();
        let top = query.top;
        let predicted: Vec<usize> = (0..f.outputs.len()).filter(|&i| f.outputs[i].is_some()).collect();
        // Answers ranked when the cells were predicted; ranked here for cells predicted without
        // them (the CLI's runs that keep none).
        let mut ranked_late: HashMap<usize, RankedCodes> = HashMap::new();
        let missing = predicted.iter().copied().filter(|&i| f.tops[i].as_ref().is_none_or(|(k, _)| *k < top));
        self.for_each_scored(missing, |i, s| {
            ranked_late.insert(i, top_codes(&s, top));
        });
        let answers = |i: usize| -> &[(usize, f64)] {
            let t = match f.tops[i].as_ref().filter(|(k, _)| *k >= top) {
                Some((_, t)) => t,
                None => ranked_late.get(&i).map_or(&[][..], |t| t),
            };
            &t[..top.min(t.len())]
        };
        let label = |i: usize| f.labels.as_ref().map(|l| l[i].to_string());
        let row = |i: usize| CellPrediction {
            index: i,
            cell: f.prepared.cells[i].clone(),
            label: label(i),
            top: answers(i)
                .iter()
                .map(|&(code, p)| Ranked { perturbation: answer_name(code, &candidates), probability: p })
                .collect(),
        };

        let search = query.search.trim().to_uppercase();
        let mut names_gene: HashMap<usize, bool> = HashMap::new();
        let mut matches = |i: usize| {
            search.is_empty()
                || f.prepared.cells[i].to_uppercase().contains(&search)
                || label(i).is_some_and(|l| l.to_uppercase().contains(&search))
                || answers(i).iter().any(|&(code, _)| {
                    *names_gene.entry(code).or_insert_with(|| {
                        answer_name(code, &candidates).to_uppercase().split('+').any(|g| g == search)
                    })
                })
        };
        let mut shown: Vec<usize> = predicted.iter().copied().filter(|&i| matches(i)).collect();
        let probability = |i: usize| answers(i).first().map_or(0.0, |a| a.1);
        let labels: HashMap<usize, String> = match query.order {
            CellOrder::Label => shown.iter().map(|&i| (i, label(i).unwrap_or_default())).collect(),
            _ => HashMap::new(),
        };
        // A stable sort: ties keep the file's order, descending too.
        shown.sort_by(|&a, &b| {
            let by_key = match query.order {
                CellOrder::Index => a.cmp(&b),
                CellOrder::Cell => f.prepared.cells[a].cmp(&f.prepared.cells[b]),
                CellOrder::Probability => probability(a).total_cmp(&probability(b)),
                CellOrder::Label => labels[&a].cmp(&labels[&b]),
            };
            if query.descending { by_key.reverse() } else { by_key }
        });
        let found = query.find.as_deref().map(str::trim).and_then(|name| {
            let by_number = name.parse::<usize>().ok().and_then(|k| k.checked_sub(1));
            predicted.iter().copied().find(|&i| f.prepared.cells[i] == name || Some(i) == by_number)
        });
        Ok(CellTable {
            matched: shown.len(),
            predicted: predicted.len(),
            rows: shown.iter().take(query.limit).map(|&i| row(i)).collect(),
            found: found.map(row),
        })
    }
}
