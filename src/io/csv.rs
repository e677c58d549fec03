//! Delimited text matrices: cells as rows with a header of genes (pandas `to_csv`), or the transposed
//! form (genes as rows), told apart by which side's names match known genes (`choose_orientation`).
//! Comma or tab, optionally gzip-compressed, with or without a UTF-8 BOM and CRLF line ends. Rows
//! are parsed as they stream in.

use std::io::{BufRead, BufReader, Read};

use std::collections::HashSet;

use super::{ExpressionData, Orientation, OrientationChoice, ReadError, ReadOptions, sparse::CsrMatrix};

pub fn read_csv<R: Read>(file: &str, reader: R, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let mut input = BufReader::with_capacity(1 << 20, reader);
    let head = input.fill_buf().map_err(|source| ReadError::Io { file: file.to_string(), source })?;
    let mut input: Box<dyn BufRead> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(input)))
    } else {
        Box::new(input)
    };

    let mut line = String::new();
    let n = input.read_line(&mut line).map_err(|e| text_error(file, 1, e))?;
    if n == 0 || line.trim().is_empty() {
        return Err(ReadError::malformed(file, "the file is empty (expected a header line of gene or cell names)"));
    }
    let header_line = line.trim_start_matches('\u{feff}').trim_end_matches(['\n', '\r']).to_string();
    let delimiter = if header_line.contains('\t') { '\t' } else { ',' };
    let header: Vec<String> = header_line.split(delimiter).map(unquote).collect();

    let mut row_names = Vec::new();
    let mut matrix: Option<CsrMatrix> = None;
    let mut cols: Vec<u32> = Vec::new();
    let mut vals: Vec<f32> = Vec::new();
    // Only the asked-for genes (a model's panel) when the header names some of them: a cells-as-rows
    // file larger than memory keeps only their columns, and each cell's total over every gene.
    let mut kept: Option<KeptColumns> = None;
    let mut line_no = 1;
    loop {
        line.clear();
        let n = input.read_line(&mut line).map_err(|e| text_error(file, line_no + 1, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            continue;
        }
        let mut fields = text.split(delimiter);
        let name = unquote(fields.next().unwrap_or(""));
        // A header with one name fewer than the rows is R's `write.csv`/`write.table` style.
        let n_values = match (&matrix, &kept) {
            (Some(_), Some(k)) => k.position.len(),
            (Some(m), None) => m.n_cols,
            (None, _) => {
                let n_fields = text.split(delimiter).count();
                let n_values = if n_fields == header.len() { header.len() - 1 } else { header.len() };
                let names = if header.len() > n_values { &header[1..] } else { &header[..] };
                kept = KeptColumns::for_header(names, options);
                matrix = Some(CsrMatrix::new(kept.as_ref().map_or(n_values, |k| k.names.len())));
                n_values
            }
        };
        let value_names = if header.len() > n_values { &header[1..] } else { &header[..] };
        cols.clear();
        vals.clear();
        let mut count = 0;
        for (j, field) in fields.enumerate() {
            count += 1;
            if j >= n_values {
                continue;
            }
            let field = field.trim();
            let column = j + 2;
            let v: f32 = match field.trim_matches('"').parse() {
                Ok(v) => v,
                Err(_) if field.is_empty() || field.eq_ignore_ascii_case("na") => {
                    return Err(ReadError::NotFinite {
                        file: file.to_string(),
                        location: format!("line {line_no}, column {column} ({})", value_names[j]),
                        value: "an empty/NA field".to_string(),
                    });
                }
                Err(_) => {
                    return Err(ReadError::NotNumeric {
                        file: file.to_string(),
                        line: line_no,
                        column,
                        gene: value_names[j].clone(),
                        value: field.to_string(),
                    });
                }
            };
            if !v.is_finite() || v < 0.0 {
                let location = format!("line {line_no}, column {column} ({})", value_names[j]);
                let (file, value) = (file.to_string(), field.to_string());
                return Err(if v.is_finite() {
                    ReadError::Negative { file, location, value }
                } else {
                    ReadError::NotFinite { file, location, value }
                });
            }
            if v != 0.0 {
                cols.push(j as u32);
                vals.push(v);
            }
        }
        if let Some(k) = kept.as_mut() {
            k.keep_row(&mut cols, &mut vals);
        }
        if count != n_values {
            return Err(ReadError::Ragged {
                file: file.to_string(),
                line: line_no,
                expected: n_values + 1,
                found: count + 1,
            });
        }
        row_names.push(name);
        if let Some(m) = matrix.as_mut() {
            m.push_sparse_row(&cols, &vals);
        }
    }
    let matrix = matrix.unwrap_or_else(|| CsrMatrix::new(header.len().saturating_sub(1)));
    let n_header_values = kept.as_ref().map_or(matrix.n_cols, |k| k.position.len());
    let col_names: Vec<String> = if header.len() > n_header_values { header[1..].to_vec() } else { header };
    let (col_names, orientation, subset) = match kept {
        Some(k) => {
            let reason = match options.orientation {
                Orientation::Auto => format!(
                    "{} of {} column names match the genes asked for (the model's panel): genes are the columns",
                    k.names.len(),
                    col_names.len()
                ),
                asked => format!("asked for ({asked})"),
            };
            let chosen = OrientationChoice { chosen: Orientation::CellsAsRows, reason, from_shape: false };
            let subset = super::GeneSubset { genes_in_file: col_names.len(), nnz_in_file: k.nnz, row_totals: k.totals };
            (k.names, chosen, Some(subset))
        }
        None => {
            let orientation = choose_orientation(&row_names, &col_names, options.orientation, &options.known_genes);
            (col_names, orientation, None)
        }
    };
    let genes_as_rows = orientation.chosen == Orientation::GenesAsRows;
    // A guess from the shape alone is worth a warning the person sees.
    let warnings =
        if orientation.from_shape { vec![format!("orientation: {}", orientation.reason)] } else { Vec::new() };
    let kind = if file.to_ascii_lowercase().contains(".tsv") || delimiter == '\t' { "tsv" } else { "csv" };
    let (cells, genes, matrix, source) = if genes_as_rows {
        (col_names, row_names, matrix.transpose(), format!("{kind} (genes as rows: {})", orientation.reason))
    } else {
        (row_names, col_names, matrix, format!("{kind} (cells as rows: {})", orientation.reason))
    };
    // The simulator names its index column `simulated_cell`, the CSV's only place for the mark.
    let simulated = header_line.split(delimiter).next().map(unquote).as_deref() == Some("simulated_cell");
    // Ensembl IDs as gene names (Cell Ranger's features, versioned or not) match the panel by ID.
    let gene_ids = super::h5ad::looks_like_ensembl(&genes).then(|| genes.clone());
    Ok(ExpressionData {
        cells,
        genes,
        gene_ids,
        matrix,
        matrix_source: source,
        simulated,
        warnings,
        subset,
        ..Default::default()
    })
}

/// The columns of a cells-as-rows CSV that `ReadOptions::only_genes` asks for, and what the
/// others still contribute: each cell's total and the stored values' count.
struct KeptColumns {
    names: Vec<String>,
    /// Each header column's kept position (u32::MAX: dropped).
    position: Vec<u32>,
    totals: Vec<f64>,
    nnz: u64,
}

impl KeptColumns {
    /// None when nothing is asked for, the file is said to hold genes as rows, or the header names
    /// none (or all) of the asked-for genes: the file is then read whole.
    fn for_header(names: &[String], options: &ReadOptions) -> Option<KeptColumns> {
        if options.only_genes.is_empty() || options.orientation == Orientation::GenesAsRows {
            return None;
        }
        let wanted: HashSet<&str> = options.only_genes.iter().map(String::as_str).collect();
        let keep: Vec<bool> = names.iter().map(|n| wanted.contains(n.as_str())).collect();
        if !keep.contains(&true) || !keep.contains(&false) {
            return None;
        }
        let mut position = vec![u32::MAX; names.len()];
        let mut kept_names = Vec::new();
        for (j, name) in names.iter().enumerate().filter(|(j, _)| keep[*j]) {
            position[j] = kept_names.len() as u32;
            kept_names.push(name.clone());
        }
        Some(KeptColumns { names: kept_names, position, totals: Vec::new(), nnz: 0 })
    }

    /// Notes a row's total and count, and leaves only its kept columns (renumbered).
    fn keep_row(&mut self, cols: &mut Vec<u32>, vals: &mut Vec<f32>) {
        self.totals.push(super::sparse::lane_sum(vals));
        self.nnz += vals.len() as u64;
        let mut k = 0;
        for i in 0..cols.len() {
            let p = self.position[cols[i] as usize];
            if p != u32::MAX {
                (cols[k], vals[k]) = (p, vals[i]);
                k += 1;
            }
        }
        cols.truncate(k);
        vals.truncate(k);
    }
}

fn text_error(file: &str, line: usize, e: std::io::Error) -> ReadError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        ReadError::malformed(file, format!("line {line}: not UTF-8 text (is this a binary file?)"))
    } else {
        ReadError::Io { file: file.to_string(), source: e }
    }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

/// Names sampled, evenly spaced, from each axis when matching: enough to decide, bounded on huge files.
const SAMPLE: usize = 2000;
/// Share of an axis' names that must match known genes for that axis to count as genes.
const ENOUGH: f64 = 0.1;
/// Without matching names, rows are taken as genes only from this many on (and twice the columns).
const SHAPE_MIN_GENES: usize = 200;

/// Gene names a file's axes are matched against: the model's panel (symbols, Ensembl IDs with or
/// without version) and, natively, the GRCh38 table (the page does not ship it, see `inspect`).
struct KnownGenes {
    extra: HashSet<String>,
}

impl KnownGenes {
    fn new(names: &[String]) -> KnownGenes {
        KnownGenes { extra: names.iter().map(|n| key(n)).collect() }
    }

    fn contains(&self, name: &str) -> bool {
        if name.is_empty() {
            return false;
        }
        if self.extra.contains(&key(name)) {
            return true;
        }
        #[cfg(not(target_arch = "wasm32"))]
        return crate::genome::GeneTable::grch38().lookup(name).is_some();
        #[cfg(target_arch = "wasm32")]
        false
    }

    /// (matched, sampled) over an evenly spaced sample of `names`.
    fn matches(&self, names: &[String]) -> (usize, usize) {
        let step = names.len().div_ceil(SAMPLE).max(1);
        let sample = names.iter().step_by(step);
        let sampled = sample.clone().count();
        (sample.filter(|n| self.contains(n.trim())).count(), sampled)
    }
}

fn key(name: &str) -> String {
    crate::genome::strip_version(&name.trim().to_ascii_uppercase()).to_string()
}

const SOURCES: &str =
    if cfg!(target_arch = "wasm32") { "the model's panel genes" } else { "the GRCh38 gene table or the model's panel" };

/// The one orientation rule of both faces: the axis whose names match more known genes holds the
/// genes; when neither matches well enough (or both equally), the shape decides: genes as rows
/// only when the rows are a gene panel's worth and at least twice the columns.
/// `rows` are the first-column names, `cols` the header's.
pub fn choose_orientation(rows: &[String], cols: &[String], asked: Orientation, known: &[String]) -> OrientationChoice {
    if asked != Orientation::Auto {
        return OrientationChoice { chosen: asked, reason: format!("asked for ({asked})"), from_shape: false };
    }
    let known = KnownGenes::new(known);
    let ((rm, rn), (cm, cn)) = (known.matches(rows), known.matches(cols));
    let share = |m: usize, n: usize| if n == 0 { 0.0 } else { m as f64 / n as f64 };
    let (rs, cs) = (share(rm, rn), share(cm, cn));
    let counts = format!("{rm} of {rn} row names and {cm} of {cn} column names match {SOURCES}");
    if rs.max(cs) >= ENOUGH && rs != cs {
        let chosen = if rs > cs { Orientation::GenesAsRows } else { Orientation::CellsAsRows };
        let axis = if rs > cs { "rows" } else { "columns" };
        return OrientationChoice { chosen, reason: format!("{counts}: genes are the {axis}"), from_shape: false };
    }
    // No names to go by: cells as rows (what pandas `to_csv` and anndata `to_df` write), unless the
    // rows clearly outnumber the columns the way a gene panel outnumbers a few cells.
    let (r, c) = (rows.len(), cols.len());
    let genes_as_rows = r >= SHAPE_MIN_GENES && r >= 2 * c;
    let (chosen, why) = if genes_as_rows {
        (
            Orientation::GenesAsRows,
            format!("the rows ({r}) are at least twice as many as the columns ({c}) and taken as genes"),
        )
    } else {
        (Orientation::CellsAsRows, format!("with {r} rows and {c} columns, cells are taken as rows (the usual layout)"))
    };
    let undecided = if rs == cs && rs >= ENOUGH { "both axes alike" } else { "not enough to tell genes from cells" };
    OrientationChoice {
        chosen,
        from_shape: true,
        reason: format!(
            "{counts}, {undecided}: {why}; if that is wrong, set the orientation (CLI `--orientation`, or the page's orientation control)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ExpressionData, ReadError> {
        read_csv("t.csv", std::io::Cursor::new(text.as_bytes().to_vec()), &ReadOptions::default())
    }

    #[test]
    fn cells_as_rows_with_pandas_header() {
        let d = read(",KLF1,CEBPA\nAAACCTGAGAAGGCCT-1,0,3\nAAACCTGAGCTAGTGG-1,2,0\n").unwrap();
        assert_eq!(d.genes, vec!["KLF1", "CEBPA"]);
        assert_eq!(d.cells.len(), 2);
        assert_eq!(d.matrix.dense_row(0), vec![0.0, 3.0]);
    }

    #[test]
    fn genes_as_rows_are_detected_and_transposed() {
        let d = read("gene\tcell_1\tcell_2\tcell_3\nKLF1\t1\t0\t0\nCEBPA\t0\t5\t1\n").unwrap();
        assert_eq!(d.genes, vec!["KLF1", "CEBPA"]);
        assert_eq!(d.cells, vec!["cell_1", "cell_2", "cell_3"]);
        assert_eq!(d.matrix.dense_row(1), vec![0.0, 5.0]);
        assert!(d.matrix_source.contains("genes as rows"));
    }

    fn read_with(text: &str, orientation: Orientation, known: &[&str]) -> ExpressionData {
        let known_genes = known.iter().map(|s| s.to_string()).collect();
        let options = ReadOptions { orientation, known_genes, ..Default::default() };
        read_csv("t.tsv", std::io::Cursor::new(text.as_bytes().to_vec()), &options).unwrap()
    }

    const TENX_GENES: [&str; 4] = ["C1orf112", "XXbac-B461K10.4", "Metazoa_SRP", "snoU13"];

    #[test]
    fn lower_case_gene_names_and_upper_case_cell_ids_are_told_apart() {
        // Cells as rows: ids of upper-case letters and digits, genes as 10x writes them.
        let header = format!(",{},GAPDH", TENX_GENES.join(","));
        let text = format!("{header}\nCELL12-1,1,0,2,0,3\nS1A01,0,4,0,1,0\n");
        let d = read_with(&text, Orientation::Auto, &[]);
        assert_eq!(d.cells, vec!["CELL12-1", "S1A01"]);
        assert_eq!(d.genes[0], "C1orf112");
        assert!(d.matrix_source.starts_with("tsv (cells as rows:"), "{}", d.matrix_source);
        // The same file transposed: genes as rows.
        let mut t = String::from("gene,CELL12-1,S1A01\n");
        for (j, g) in TENX_GENES.iter().chain(["GAPDH"].iter()).enumerate() {
            t.push_str(&format!("{g},{},{}\n", d.matrix.dense_row(0)[j], d.matrix.dense_row(1)[j]));
        }
        let e = read_with(&t, Orientation::Auto, &[]);
        assert_eq!((e.cells.clone(), e.genes.clone()), (d.cells.clone(), d.genes.clone()));
        assert_eq!(e.matrix, d.matrix);
        assert!(e.matrix_source.contains("genes are the rows"), "{}", e.matrix_source);
    }

    #[test]
    fn the_models_panel_decides_when_the_genome_table_cannot() {
        // Names in neither the GRCh38 table nor the look of genes, but in the panel (with a version).
        let text = "gene,c1,c2,c3\nENSG99999999991.2,1,0,0\nmygene_b,0,5,1\n";
        let d = read_with(text, Orientation::Auto, &["ENSG99999999991", "MYGENE_B"]);
        assert_eq!(d.cells, vec!["c1", "c2", "c3"]);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    }

    #[test]
    fn unknown_names_on_both_axes_fall_back_to_shape_and_say_so() {
        let text = "id,a1,a2,a3\nb1,1,0,0\nb2,0,5,1\n";
        let d = read_with(text, Orientation::Auto, &[]);
        assert_eq!(d.genes, vec!["a1", "a2", "a3"], "cells as rows, the usual layout");
        assert!(d.warnings.iter().any(|w| w.contains("not enough") && w.contains("--orientation")), "{:?}", d.warnings);
        // Many more rows than columns, none known: a gene panel as rows.
        let mut tall = String::from("id,s1,s2\n");
        for i in 0..300 {
            tall.push_str(&format!("g{i},1,0\n"));
        }
        let d = read_with(&tall, Orientation::Auto, &[]);
        assert_eq!((d.cells.len(), d.genes.len()), (2, 300));
        assert!(d.matrix_source.contains("at least twice"), "{}", d.matrix_source);
        // Both axes alike (the same gene names): no side matches more, so again the shape decides.
        let text = ",KLF1,CEBPA,GATA1\nKLF1,1,0,0\nCEBPA,0,5,1\n";
        let d = read_with(text, Orientation::Auto, &[]);
        assert_eq!(d.genes, vec!["KLF1", "CEBPA", "GATA1"]);
        assert!(d.matrix_source.contains("both axes alike"), "{}", d.matrix_source);
        // An explicit orientation wins and says so.
        let d = read_with(text, Orientation::GenesAsRows, &[]);
        assert_eq!(d.genes, vec!["KLF1", "CEBPA"]);
        assert!(d.matrix_source.contains("asked for (genes-as-rows)"), "{}", d.matrix_source);
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn orientation_parses_from_text() {
        assert_eq!("".parse::<Orientation>(), Ok(Orientation::Auto));
        assert_eq!("genes-as-rows".parse::<Orientation>(), Ok(Orientation::GenesAsRows));
        assert!("sideways".parse::<Orientation>().unwrap_err().contains("cells-as-rows"));
    }

    #[test]
    fn r_style_header_without_index_name() {
        let d = read("KLF1,CEBPA\nc1,1,2\n").unwrap();
        assert_eq!(d.genes, vec!["KLF1", "CEBPA"]);
        assert_eq!(d.matrix.dense_row(0), vec![1.0, 2.0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = read(",A,B\nc1,1,2\nc2,1,x\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("column 3") && e.contains("'x'"), "{e}");
        let e = read(",A,B\nc1,1,2\nc2,1\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("expected 3 fields"), "{e}");
        let e = read(",A,B\nc1,1,-2\n").unwrap_err().to_string();
        assert!(e.contains("negative") && e.contains("column 3 (B)"), "{e}");
    }
}
