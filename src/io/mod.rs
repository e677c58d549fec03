//! Reading the files users bring (h5ad, CSV, CSV.gz) into one cells × genes matrix with names and labels.
//! Every reader returns the same `ExpressionData`, checks values the same way and reports problems as
//! `ReadError`s that name the file, line, column, dataset or gene involved.

pub mod csv;
pub mod h5ad;
mod h5ad_direct;
mod h5ad_legacy;
pub mod h5ad_write;
pub mod source;
pub mod sparse;

pub use source::{FileSource, SharedSource};
pub use sparse::CsrMatrix;

/// What a reader produced: the matrix, its row and column names, and the metadata the model needs.
#[derive(Clone, Debug, Default)]
pub struct ExpressionData {
    /// Cell identifiers (AnnData `obs_names`, or the CSV's index column).
    pub cells: Vec<String>,
    /// Gene names as the user knows them: symbols when the file has them, else the identifiers given.
    pub genes: Vec<String>,
    /// Ensembl gene IDs when the file carries them alongside symbols (or instead of them).
    pub gene_ids: Option<Vec<String>>,
    pub matrix: CsrMatrix,
    /// Where the values came from: `X`, `layers/counts`, `raw/X`, `csv (cells as rows: <why>)`, ...
    pub matrix_source: String,
    /// The perturbation label column, when the file has one (raw strings, as stored).
    pub labels: Option<LabelColumn>,
    /// Other obs columns that were asked for (e.g. for grouping), as text.
    pub obs: Vec<LabelColumn>,
    /// Every obs column name the file offers (read cheaply, without their values).
    pub obs_column_names: Vec<String>,
    /// True when the file says it was written by the mambaPerturb simulator.
    pub simulated: bool,
    /// The simulator's description of the world behind the file (`uns/world`: seed and parameters,
    /// JSON), when the file carries one: enough to rebuild every condition's expected profile.
    pub world: Option<String>,
    /// Problems that do not stop reading (duplicated genes, ...), to show the user.
    pub warnings: Vec<String>,
    /// Set when only some of the file's genes were kept (`ReadOptions::only_genes`).
    pub subset: Option<GeneSubset>,
}

/// What a matrix read for some genes only keeps of the rest of the file.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneSubset {
    pub genes_in_file: usize,
    pub nnz_in_file: u64,
    /// Each cell's sum over every gene of the file (what counts are normalised by).
    pub row_totals: Vec<f64>,
}

impl ExpressionData {
    /// Genes in the file (more than `genes` when only some were kept).
    pub fn genes_in_file(&self) -> usize {
        self.subset.as_ref().map_or(self.genes.len(), |s| s.genes_in_file)
    }

    /// Each cell's total over every gene of the file.
    pub fn row_totals(&self) -> Vec<f64> {
        self.subset.as_ref().map_or_else(|| self.matrix.row_sums(), |s| s.row_totals.clone())
    }
}

/// The orientation a delimited file is read in, and why; the reader puts both in `matrix_source`
/// (`csv (genes as rows: 40 of 40 row names match ...)`), which the report shows.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct OrientationChoice {
    pub chosen: Orientation,
    pub reason: String,
    /// True when no axis' names decided and the shape did (the report then warns).
    pub from_shape: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LabelColumn {
    pub name: String,
    pub values: Vec<String>,
}

/// Which matrix of an h5ad to use. `Auto` prefers raw counts (`layers/counts`, then `raw/X`) over `X`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum MatrixChoice {
    #[default]
    Auto,
    X,
    Layer(String),
    RawX,
}

impl std::str::FromStr for MatrixChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => MatrixChoice::Auto,
            "X" | "x" => MatrixChoice::X,
            "raw" | "raw/X" | "raw.X" => MatrixChoice::RawX,
            other => MatrixChoice::Layer(other.trim_start_matches("layers/").to_string()),
        })
    }
}

/// Which CSV orientation; `Auto` decides from which side's names match known genes (see
/// `csv::choose_orientation`), falling back to the shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Orientation {
    #[default]
    Auto,
    CellsAsRows,
    GenesAsRows,
}

impl std::str::FromStr for Orientation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "auto" => Ok(Orientation::Auto),
            "cells-as-rows" | "cells" => Ok(Orientation::CellsAsRows),
            "genes-as-rows" | "genes" => Ok(Orientation::GenesAsRows),
            other => Err(format!("orientation '{other}': use auto, cells-as-rows or genes-as-rows")),
        }
    }
}

impl std::fmt::Display for Orientation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Orientation::Auto => "auto",
            Orientation::CellsAsRows => "cells-as-rows",
            Orientation::GenesAsRows => "genes-as-rows",
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub matrix: MatrixChoice,
    /// Name of the label column; `None` looks for the public Norman column names.
    pub label_column: Option<String>,
    /// Extra obs columns to read as text (e.g. a `--group-by` column).
    pub extra_obs: Vec<String>,
    pub orientation: Orientation,
    /// Gene names known besides the GRCh38 table (the model's panel: symbols and Ensembl IDs), used
    /// to tell a CSV's gene axis from its cell axis. The page has only these (no GRCh38 table there).
    pub known_genes: Vec<String>,
    /// Keep only these genes (symbols or Ensembl IDs: the model's panel), reading an h5ad's matrix
    /// in row windows, so that a file far larger than memory opens; each cell's total over every
    /// gene is kept for normalisation (`ExpressionData::subset`). Empty: every gene.
    pub only_genes: Vec<String>,
}

/// Column names that hold perturbation labels in the public Norman 2019 versions, tried in order.
pub const LABEL_COLUMN_CANDIDATES: &[&str] =
    &["perturbation_name", "perturbation", "condition", "gene", "target_gene", "guide_identity"];

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{file}: cannot read the file: {source}")]
    Io { file: String, source: std::io::Error },
    #[error(
        "{file}: not an HDF5 file (no HDF5 signature found); an .h5ad must be written by anndata (`adata.write_h5ad(...)`)"
    )]
    NotHdf5 { file: String },
    #[error("{file}: the HDF5 file is damaged or truncated ({detail}); re-copy or re-export it")]
    Damaged { file: String, detail: String },
    #[error("{file}: {what}. {hint}")]
    Unsupported { file: String, what: String, hint: String },
    #[error("{file}: {what} is missing: {hint}")]
    Missing { file: String, what: String, hint: String },
    #[error("{file}: the file holds zero cells")]
    ZeroCells { file: String },
    #[error("{file}: the file holds zero genes")]
    ZeroGenes { file: String },
    #[error("{file}: {location}: value {value} is not a finite number; expression values must be finite")]
    NotFinite { file: String, location: String, value: String },
    #[error("{file}: {location}: value {value} is negative; counts and log-normalised values are never negative")]
    Negative { file: String, location: String, value: String },
    #[error("{file}: line {line}: expected {expected} fields like the header, found {found}")]
    Ragged { file: String, line: usize, expected: usize, found: usize },
    #[error("{file}: line {line}, column {column} (gene {gene}): '{value}' is not a number")]
    NotNumeric { file: String, line: usize, column: usize, gene: String, value: String },
    #[error("{file}: {detail}")]
    Malformed { file: String, detail: String },
}

impl ReadError {
    pub(crate) fn malformed(file: &str, detail: impl Into<String>) -> Self {
        ReadError::Malformed { file: file.to_string(), detail: detail.into() }
    }
}

/// The kinds of file we read, told apart by their first bytes (names can lie).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileKind {
    H5ad,
    Csv,
}

const HDF5_SIGNATURE: &[u8] = b"\x89HDF\r\n\x1a\n";

fn sniff(name: &str, head: &[u8]) -> FileKind {
    if head.starts_with(HDF5_SIGNATURE) {
        return FileKind::H5ad;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".h5ad") || lower.ends_with(".h5") || lower.ends_with(".hdf5") {
        // Named like HDF5 but not HDF5: the h5ad reader reports it clearly.
        return FileKind::H5ad;
    }
    FileKind::Csv
}

/// Reads a file from disk. h5ad files are opened lazily, so only the datasets needed are read.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_path(path: &std::path::Path, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let file = path.display().to_string();
    let head = FileSource::Path(path.to_path_buf()).head(&file)?;
    let data = match sniff(&file, &head) {
        FileKind::H5ad => h5ad::read_h5ad_path(path, options)?,
        FileKind::Csv => {
            let f = std::fs::File::open(path).map_err(|source| ReadError::Io { file: file.clone(), source })?;
            csv::read_csv(&file, std::io::BufReader::with_capacity(1 << 20, f), options)?
        }
    };
    validate(&file, data)
}

/// Reads a file held in memory.
pub fn read_bytes(name: &str, bytes: Vec<u8>, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let data = match sniff(name, &bytes[..bytes.len().min(8)]) {
        FileKind::H5ad => h5ad::read_h5ad_bytes(name, bytes, options)?,
        FileKind::Csv => csv::read_csv(name, std::io::Cursor::new(bytes), options)?,
    };
    validate(name, data)
}

/// Reads a file from wherever it is: h5ad datasets are fetched on demand (only what is needed), a
/// CSV streams through; nothing keeps a copy of the whole file.
#[cfg_attr(target_arch = "wasm32", allow(clippy::infallible_destructuring_match))] // one variant there
pub fn read_source(name: &str, source: &FileSource, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let random = match source {
        #[cfg(not(target_arch = "wasm32"))]
        FileSource::Path(path) => return read_path(path, options),
        FileSource::RandomAccess(s) => s,
    };
    let data = match sniff(name, &source.head(name)?) {
        FileKind::H5ad => h5ad::read_h5ad_source(name, random.clone(), options)?,
        FileKind::Csv => csv::read_csv(name, source::SequentialReader::new(random.clone()), options)?,
    };
    validate(name, data)
}

/// Reads one obs column of `cells` values as text, and nothing else (no matrix, no other column).
pub fn read_obs_column(name: &str, source: &FileSource, column: &str, cells: usize) -> Result<LabelColumn, ReadError> {
    if sniff(name, &source.head(name)?) == FileKind::Csv {
        return Err(ReadError::Missing {
            file: name.to_string(),
            what: format!("obs column '{column}'"),
            hint: "a CSV/TSV expression file has no obs columns; use an .h5ad to group cells".to_string(),
        });
    }
    let values = match source {
        #[cfg(not(target_arch = "wasm32"))]
        FileSource::Path(path) => h5ad::read_obs_column_path(name, path, column, cells)?,
        FileSource::RandomAccess(s) => h5ad::read_obs_column_source(name, s.clone(), column, cells)?,
    };
    Ok(LabelColumn { name: column.to_string(), values })
}

/// Checks every reader's output the same way: non-empty, finite, non-negative, unique genes.
fn validate(file: &str, mut data: ExpressionData) -> Result<ExpressionData, ReadError> {
    let m = &data.matrix;
    if m.n_rows == 0 {
        return Err(ReadError::ZeroCells { file: file.to_string() });
    }
    if m.n_cols == 0 {
        return Err(ReadError::ZeroGenes { file: file.to_string() });
    }
    // One branch-free pass in the common case; the slow loop only runs to name the bad value.
    let clean =
        crate::parallel::map_chunks(&m.data, |c| c.iter().fold(true, |ok, &v| ok & (v.is_finite() & (v >= 0.0))))
            .into_iter()
            .all(|ok| ok);
    for i in (0..m.n_rows).filter(|_| !clean) {
        let (cols, vals) = m.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            if !v.is_finite() || v < 0.0 {
                let location = format!("cell {} (row {}), gene {}", data.cells[i], i + 1, data.genes[j as usize]);
                let (file, value) = (file.to_string(), v.to_string());
                return Err(if v.is_finite() {
                    ReadError::Negative { file, location, value }
                } else {
                    ReadError::NotFinite { file, location, value }
                });
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    let mut dups = Vec::new();
    for g in &data.genes {
        let c = seen.entry(g.as_str()).or_insert(0usize);
        *c += 1;
        if *c == 2 {
            dups.push(g.clone());
        }
    }
    if !dups.is_empty() {
        let shown: Vec<_> = dups.iter().take(10).cloned().collect();
        data.warnings.push(format!(
            "{} gene name(s) occur more than once ({}{}); the first occurrence is used when matching",
            dups.len(),
            shown.join(", "),
            if dups.len() > 10 { ", ..." } else { "" }
        ));
    }
    Ok(data)
}

/// Picks the label column: the one asked for, else the first public Norman column name present.
pub(crate) fn choose_label_column(
    file: &str,
    available: &[String],
    asked: Option<&str>,
) -> Result<Option<String>, ReadError> {
    match asked {
        Some(name) => {
            if available.iter().any(|a| a == name) {
                Ok(Some(name.to_string()))
            } else {
                Err(ReadError::Missing {
                    file: file.to_string(),
                    what: format!("label column '{name}'"),
                    hint: format!(
                        "the file has: {}",
                        if available.is_empty() { "no columns".into() } else { available.join(", ") }
                    ),
                })
            }
        }
        None => Ok(LABEL_COLUMN_CANDIDATES.iter().find(|c| available.iter().any(|a| a == *c)).map(|c| c.to_string())),
    }
}
