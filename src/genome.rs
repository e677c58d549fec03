//! Genes on the genome: the shipped GRCh38 table (Ensembl 110 + org.Hs.eg.db, see data/README.md),
//! gene matching by symbol or Ensembl ID, and the per-gene features the model uses — a 24-way
//! chromosome one-hot (1–22, X, Y) and a relative locus (start / chromosome length).
//! Positions belong to the measured genes only; nothing here looks at a cell's label.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

/// The 24 chromosomes of the one-hot code, in order. MT genes have a place but no slot here.
pub const CHROMOSOMES: [&str; 24] = [
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20",
    "21", "22", "X", "Y",
];

const GENES_TSV_GZ: &[u8] = include_bytes!("../data/genome/genes_GRCh38.tsv.gz");
const CHROM_SIZES_TSV: &str = include_str!("../data/genome/chrom_sizes_GRCh38.tsv");

#[derive(Clone, Debug, PartialEq)]
pub struct GeneRecord {
    pub gene_id: String,
    pub symbol: String,
    pub chrom: String,
    pub start: u64,
    pub end: u64,
}

/// Where a measured gene sits, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Locus {
    /// Index into `CHROMOSOMES`.
    pub chrom: u8,
    pub start: u64,
    pub end: u64,
    /// start / chromosome length, in [0, 1).
    pub relative: f32,
}

impl Locus {
    pub fn chrom_name(&self) -> &'static str {
        CHROMOSOMES[self.chrom as usize]
    }

    pub fn one_hot(&self) -> [f32; 24] {
        let mut v = [0.0; 24];
        v[self.chrom as usize] = 1.0;
        v
    }
}

#[derive(Debug)]
pub struct GeneTable {
    genes: Vec<GeneRecord>,
    by_id: HashMap<String, usize>,
    by_symbol: HashMap<String, usize>,
    chrom_lengths: HashMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenomeError {
    #[error("gene table: {0}")]
    Table(String),
}

/// Strips an Ensembl version suffix: `ENSG00000105610.5` → `ENSG00000105610`.
pub fn strip_version(id: &str) -> &str {
    if id.starts_with("ENS") { id.split('.').next().unwrap_or(id) } else { id }
}

impl GeneTable {
    /// The shipped GRCh38 table, parsed once.
    pub fn grch38() -> &'static GeneTable {
        static TABLE: OnceLock<GeneTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(GENES_TSV_GZ)
                .read_to_string(&mut text)
                .expect("embedded gene table is valid gzip (checked by a unit test)");
            GeneTable::parse(&text, CHROM_SIZES_TSV).expect("embedded gene table parses (checked by a unit test)")
        })
    }

    /// Parses `gene_id symbol chrom start end ...` rows and `chrom length` rows (both with headers).
    pub fn parse(genes_tsv: &str, chrom_sizes_tsv: &str) -> Result<GeneTable, GenomeError> {
        let mut chrom_lengths = HashMap::new();
        for (i, line) in chrom_sizes_tsv.lines().enumerate().skip(1) {
            let mut f = line.split('\t');
            let (Some(c), Some(l)) = (f.next(), f.next()) else {
                continue;
            };
            let l: u64 =
                l.trim().parse().map_err(|_| GenomeError::Table(format!("chrom sizes line {}: bad length", i + 1)))?;
            chrom_lengths.insert(c.to_string(), l);
        }
        let mut genes = Vec::new();
        let mut by_id = HashMap::new();
        let mut by_symbol = HashMap::new();
        for (i, line) in genes_tsv.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 5 {
                return Err(GenomeError::Table(format!("line {}: expected 5+ fields", i + 1)));
            }
            let bad = || GenomeError::Table(format!("line {}: bad coordinate", i + 1));
            let rec = GeneRecord {
                gene_id: f[0].to_string(),
                symbol: f[1].to_string(),
                chrom: f[2].to_string(),
                start: f[3].parse().map_err(|_| bad())?,
                end: f[4].parse().map_err(|_| bad())?,
            };
            let idx = genes.len();
            by_id.entry(rec.gene_id.clone()).or_insert(idx);
            // First row wins for duplicated symbols: the table lists Ensembl 110 genes first.
            by_symbol.entry(rec.symbol.to_ascii_uppercase()).or_insert(idx);
            genes.push(rec);
        }
        Ok(GeneTable { genes, by_id, by_symbol, chrom_lengths })
    }

    pub fn len(&self) -> usize {
        self.genes.len()
    }

    /// Every gene, in the table's order.
    pub fn records(&self) -> &[GeneRecord] {
        &self.genes
    }

    pub fn is_empty(&self) -> bool {
        self.genes.is_empty()
    }

    pub fn chrom_length(&self, chrom: &str) -> Option<u64> {
        self.chrom_lengths.get(chrom).copied()
    }

    /// Finds a gene by Ensembl ID (any version suffix) or by symbol (case-insensitive).
    pub fn lookup(&self, name: &str) -> Option<&GeneRecord> {
        let name = name.trim();
        if let Some(&i) = self.by_id.get(strip_version(name)) {
            return Some(&self.genes[i]);
        }
        self.by_symbol.get(&name.to_ascii_uppercase()).map(|&i| &self.genes[i])
    }

    /// The model's view of a gene's place, or `None` when unplaced or on MT.
    pub fn locus(&self, rec: &GeneRecord) -> Option<Locus> {
        let chrom = CHROMOSOMES.iter().position(|c| *c == rec.chrom)? as u8;
        let len = self.chrom_length(&rec.chrom)?;
        Some(Locus {
            chrom,
            start: rec.start,
            end: rec.end,
            relative: (rec.start as f64 / len as f64).min(0.999_999) as f32,
        })
    }

    /// Places each measured gene, preferring its Ensembl ID when the file has one.
    pub fn place(&self, symbols: &[String], ids: Option<&[String]>) -> Placement {
        let mut loci = Vec::with_capacity(symbols.len());
        let mut not_found = Vec::new();
        let mut off_24 = Vec::new();
        for (k, sym) in symbols.iter().enumerate() {
            let rec = ids.and_then(|ids| self.lookup(&ids[k])).or_else(|| self.lookup(sym));
            let locus = rec.and_then(|r| self.locus(r));
            match (rec, locus) {
                (None, _) => not_found.push(sym.clone()),
                (Some(r), None) => off_24.push(format!("{sym} (chr{})", r.chrom)),
                _ => {}
            }
            loci.push(locus);
        }
        Placement { loci, not_found, outside_24: off_24 }
    }
}

/// The result of placing a panel of genes: a locus per gene, and which genes were not placed.
#[derive(Clone, Debug)]
pub struct Placement {
    pub loci: Vec<Option<Locus>>,
    /// Genes absent from the table (by ID and by symbol).
    pub not_found: Vec<String>,
    /// Genes found but on a sequence outside the 24-way code (mitochondrion).
    pub outside_24: Vec<String>,
}

impl Placement {
    pub fn placed(&self) -> usize {
        self.loci.iter().filter(|l| l.is_some()).count()
    }

    /// One line for people: how many genes were placed and which were not.
    pub fn report(&self) -> String {
        let total = self.loci.len();
        let mut s = format!("{} of {} genes placed on GRCh38", self.placed(), total);
        if !self.not_found.is_empty() {
            let shown: Vec<_> = self.not_found.iter().take(8).cloned().collect();
            s += &format!(
                "; {} not in the gene table ({}{})",
                self.not_found.len(),
                shown.join(", "),
                if self.not_found.len() > 8 { ", ..." } else { "" }
            );
        }
        if !self.outside_24.is_empty() {
            s += &format!("; {} on MT (no chromosome slot)", self.outside_24.len());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_places_known_genes() {
        let t = GeneTable::grch38();
        assert!(t.len() > 30_000, "table has {} genes", t.len());
        let klf1 = t.lookup("klf1").unwrap();
        assert_eq!((klf1.chrom.as_str(), klf1.start), ("19", 12_884_422));
        // Same gene by versioned Ensembl ID.
        assert_eq!(t.lookup("ENSG00000105610.5").unwrap().symbol, "KLF1");
        let gata1 = t.locus(t.lookup("GATA1").unwrap()).unwrap();
        assert_eq!(gata1.chrom_name(), "X");
        assert_eq!(gata1.one_hot().iter().sum::<f32>(), 1.0);
        assert_eq!(gata1.one_hot()[22], 1.0);
        // 48.79 Mb on a 156.04 Mb chromosome.
        assert!((gata1.relative - 0.3127).abs() < 1e-3, "{}", gata1.relative);
    }

    #[test]
    fn placement_reports_missing_and_mitochondrial_genes() {
        let t = GeneTable::grch38();
        let genes: Vec<String> = ["KLF1", "NOT_A_GENE", "MT-CO1", "CEBPA"].iter().map(|s| s.to_string()).collect();
        let p = t.place(&genes, None);
        assert_eq!(p.placed(), 2);
        assert_eq!(p.not_found, vec!["NOT_A_GENE"]);
        assert_eq!(p.outside_24.len(), 1);
        assert!(p.report().starts_with("2 of 4 genes placed"), "{}", p.report());
    }
}
