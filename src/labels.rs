//! Perturbation labels from the public Norman 2019 versions, turned into one canonical gene set.
//! pertpy `perturbation_name` (`control`, `KLF1`, `CEBPA+KLF1`), GEARS/CPA `condition` (`ctrl`,
//! `KLF1+ctrl`, `ctrl+KLF1`, `A+B`) and scPerturb `perturbation` (`control`, `A`, `A_B`) all map to
//! the same `Perturbation`, written `control` or as sorted `+`-joined genes.

use std::fmt;

/// A set of perturbed genes; empty means control. Genes are sorted and unique.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Perturbation {
    genes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LabelError {
    #[error("perturbation label '{label}' has an empty gene name (check the separators)")]
    EmptyGene { label: String },
}

/// Tokens that mean "no gene perturbed" in the public versions (non-targeting guides included).
fn is_control_token(token: &str) -> bool {
    let t = token.to_ascii_lowercase();
    matches!(t.as_str(), "ctrl" | "control" | "non-targeting" | "nontargeting" | "non_targeting" | "unperturbed" | "nt")
        || t.starts_with("negctrl")
}

impl Perturbation {
    pub fn control() -> Self {
        Perturbation { genes: Vec::new() }
    }

    pub fn from_genes<I: IntoIterator<Item = S>, S: Into<String>>(genes: I) -> Self {
        let mut genes: Vec<String> = genes.into_iter().map(Into::into).collect();
        genes.sort();
        genes.dedup();
        Perturbation { genes }
    }

    /// Parses any of the public label styles. `_` separates genes only when there is no `+`
    /// (scPerturb style); control tokens inside a pair (`KLF1+ctrl`) are dropped.
    pub fn parse(label: &str) -> Result<Self, LabelError> {
        let label = label.trim();
        if label.is_empty() || is_control_token(label) {
            return Ok(Perturbation::control());
        }
        let sep = if label.contains('+') {
            '+'
        } else if label.contains('_') {
            '_'
        } else {
            '+'
        };
        let mut genes = Vec::new();
        for token in label.split(sep) {
            let token = token.trim();
            if token.is_empty() {
                return Err(LabelError::EmptyGene { label: label.to_string() });
            }
            if !is_control_token(token) {
                genes.push(token.to_string());
            }
        }
        Ok(Perturbation::from_genes(genes))
    }

    pub fn genes(&self) -> &[String] {
        &self.genes
    }

    pub fn is_control(&self) -> bool {
        self.genes.is_empty()
    }

    /// `control`, `single` or `double` (or `multiple` beyond two genes).
    pub fn kind(&self) -> &'static str {
        match self.genes.len() {
            0 => "control",
            1 => "single",
            2 => "double",
            _ => "multiple",
        }
    }

    /// GEARS/CPA style: `ctrl`, `A+ctrl`, `A+B`.
    pub fn gears_label(&self) -> String {
        match self.genes.len() {
            0 => "ctrl".into(),
            1 => format!("{}+ctrl", self.genes[0]),
            _ => self.genes.join("+"),
        }
    }

    /// scPerturb style: `control`, `A`, `A_B`.
    pub fn scperturb_label(&self) -> String {
        if self.genes.is_empty() { "control".into() } else { self.genes.join("_") }
    }
}

impl fmt::Display for Perturbation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.genes.is_empty() { write!(f, "control") } else { write!(f, "{}", self.genes.join("+")) }
    }
}

/// Parses a whole label column, reporting the first bad label with its row.
pub fn parse_column(values: &[String]) -> Result<Vec<Perturbation>, (usize, LabelError)> {
    values.iter().enumerate().map(|(i, v)| Perturbation::parse(v).map_err(|e| (i, e))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_formats_agree() {
        let pair = Perturbation::from_genes(["KLF1", "CEBPA"]);
        for label in ["CEBPA+KLF1", "KLF1+CEBPA", "CEBPA_KLF1", "KLF1_CEBPA"] {
            assert_eq!(Perturbation::parse(label).unwrap(), pair, "{label}");
        }
        let single = Perturbation::from_genes(["KLF1"]);
        for label in ["KLF1", "KLF1+ctrl", "ctrl+KLF1", "KLF1_NegCtrl0"] {
            assert_eq!(Perturbation::parse(label).unwrap(), single, "{label}");
        }
        for label in ["control", "ctrl", "", "NegCtrl10_NegCtrl0", "non-targeting"] {
            assert!(Perturbation::parse(label).unwrap().is_control(), "{label}");
        }
    }

    #[test]
    fn canonical_forms_round_trip() {
        let p = Perturbation::parse("KLF1+CEBPA").unwrap();
        assert_eq!(p.to_string(), "CEBPA+KLF1");
        assert_eq!(p.gears_label(), "CEBPA+KLF1");
        assert_eq!(p.scperturb_label(), "CEBPA_KLF1");
        assert_eq!(Perturbation::parse(&p.scperturb_label()).unwrap(), p);
        let s = Perturbation::parse("KLF1").unwrap();
        assert_eq!(Perturbation::parse(&s.gears_label()).unwrap(), s);
        assert_eq!(Perturbation::control().to_string(), "control");
    }

    #[test]
    fn genes_with_dashes_and_dots_survive() {
        let p = Perturbation::parse("RP5-862P8.2+ctrl").unwrap();
        assert_eq!(p.genes(), ["RP5-862P8.2"]);
        assert!(Perturbation::parse("A++B").is_err());
    }
}
