//! The export layouts, one for every face: `predict --format json|csv` writes them, and so do the
//! page's Export buttons (from the same `PredictionReport`), so the two cannot disagree.

use serde::Serialize;

use crate::analysis::{CellPrediction, GroupPrediction};
use crate::predict::MatchReport;

/// The two export layouts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExportFormat {
    Json,
    Csv,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(ExportFormat::Json),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!("unknown export format '{other}' (use json or csv)")),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PredictionReport {
    pub model: String,
    pub model_trained_on: String,
    /// The file's name (without its folder).
    pub file: String,
    pub genes: MatchReport,
    /// The obs column of the pseudobulk groups (null: all cells only).
    pub group_by: Option<String>,
    pub cells: Vec<CellPrediction>,
    pub pseudobulk: Vec<GroupPrediction>,
}

impl PredictionReport {
    pub fn to_text(&self, format: ExportFormat) -> String {
        match format {
            ExportFormat::Json => self.to_json(),
            ExportFormat::Csv => self.to_csv(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// One row per (cell or group, rank): `kind,id,rank,perturbation,probability`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("kind,id,rank,perturbation,probability\n");
        let rows = self.cells.iter().map(|c| ("cell", &c.cell, &c.top));
        for (kind, id, top) in rows.chain(self.pseudobulk.iter().map(|g| ("pseudobulk", &g.group, &g.top))) {
            for (r, t) in top.iter().enumerate() {
                out += &format!(
                    "{kind},{},{},{},{:.6}\n",
                    csv_field(id),
                    r + 1,
                    csv_field(&t.perturbation),
                    t.probability
                );
            }
        }
        out
    }
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")).into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_and_quotes_survive() {
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(csv_field("KLF1+CEBPA"), "KLF1+CEBPA");
    }
}
