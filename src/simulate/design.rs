//! The real Norman 2019 design the simulator stands on (see data/README.md for provenance): the 237
//! conditions with their authors' UMAP cluster, mean UMI depth, DE-gene count and genetic-interaction
//! fit, and the GEO gene list (Ensembl IDs + symbols). No expression values are in these tables.

use std::io::Read;

use crate::labels::Perturbation;

const DESIGN_TSV: &str = include_str!("../../data/norman2019/design.tsv");
const GEO_GENES_TSV_GZ: &[u8] = include_bytes!("../../data/norman2019/GSE133344_genes.tsv.gz");

/// The authors' genetic-interaction class of a double (rule in data/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GiClass {
    Additive,
    Dominant,
    Synergy,
    Buffering,
    Unfitted,
}

impl GiClass {
    pub fn name(&self) -> &'static str {
        match self {
            GiClass::Additive => "additive",
            GiClass::Dominant => "dominant",
            GiClass::Synergy => "synergy",
            GiClass::Buffering => "buffering",
            GiClass::Unfitted => "unfitted",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Condition {
    pub perturbation: Perturbation,
    /// The authors' UMAP cluster of the population (-1: unclustered).
    pub cluster: i32,
    /// Mean UMIs per cell of the population, when the authors' table has it.
    pub umi: Option<f64>,
    /// Number of genes DE against control (KS test), when known.
    pub de_genes: Option<f64>,
    /// GI fit coefficients (target_1, target_2 of the sorted pair), for fitted doubles.
    pub coefs: Option<(f64, f64)>,
    pub gi_class: Option<GiClass>,
}

/// All conditions of the Norman design, control first, then singles, then doubles.
pub fn norman_conditions() -> Vec<Condition> {
    let mut out = Vec::new();
    for line in DESIGN_TSV.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
        let genes: Vec<&str> = [f[2], f[3]].into_iter().filter(|g| !g.is_empty()).collect();
        let gi_class = match f.get(9).copied().unwrap_or("") {
            "additive" => Some(GiClass::Additive),
            "dominant" => Some(GiClass::Dominant),
            "synergy" => Some(GiClass::Synergy),
            "buffering" => Some(GiClass::Buffering),
            "unfitted" => Some(GiClass::Unfitted),
            _ => None,
        };
        out.push(Condition {
            perturbation: Perturbation::from_genes(genes),
            cluster: f[4].parse().unwrap_or(-1),
            umi: num(5),
            de_genes: num(6),
            coefs: num(7).zip(num(8)),
            gi_class,
        });
    }
    out.sort_by_key(|c| (c.perturbation.genes().len(), c.perturbation.clone()));
    out
}

/// The GEO gene list of GSE133344: (Ensembl ID, symbol), 33,694 genes.
pub fn geo_genes() -> Vec<(String, String)> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(GEO_GENES_TSV_GZ)
        .read_to_string(&mut text)
        .expect("embedded GEO gene list is valid gzip (checked by a unit test)");
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_matches_the_paper() {
        let c = norman_conditions();
        let count = |n: usize| c.iter().filter(|c| c.perturbation.genes().len() == n).count();
        assert_eq!((count(0), count(1), count(2)), (1, 105, 131));
        let fitted = c.iter().filter(|c| c.coefs.is_some()).count();
        assert_eq!(fitted, 125);
        let klf1 = c.iter().find(|c| c.perturbation.to_string() == "CEBPA+KLF1");
        assert!(klf1.is_some());
        let genes = geo_genes();
        assert_eq!(genes.len(), 33_694);
        assert!(genes.iter().any(|(id, s)| id == "ENSG00000105610" && s == "KLF1"));
    }
}
