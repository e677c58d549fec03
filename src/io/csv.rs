//! Delimited text matrices: cells as rows with a header of genes (pandas `to_csv`), or the transposed
//! form (genes as rows), detected from which side carries gene names. Comma or tab, optionally
//! gzip-compressed, with or without a UTF-8 BOM and CRLF line ends. Rows are parsed as they stream in.

use std::io::{BufRead, BufReader, Read};

use super::{ExpressionData, Orientation, ReadError, ReadOptions, sparse::CsrMatrix};

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
        let n_values = match &matrix {
            Some(m) => m.n_cols,
            None => {
                let n_fields = text.split(delimiter).count();
                let n_values = if n_fields == header.len() { header.len() - 1 } else { header.len() };
                matrix = Some(CsrMatrix::new(n_values));
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
    let col_names: Vec<String> = if header.len() > matrix.n_cols { header[1..].to_vec() } else { header };

    let genes_as_rows = match options.orientation {
        Orientation::CellsAsRows => false,
        Orientation::GenesAsRows => true,
        Orientation::Auto => gene_likeness(&row_names) > gene_likeness(&col_names),
    };
    let kind = if file.to_ascii_lowercase().contains(".tsv") || delimiter == '\t' { "tsv" } else { "csv" };
    let (cells, genes, matrix, source) = if genes_as_rows {
        (col_names, row_names, matrix.transpose(), format!("{kind} (genes as rows)"))
    } else {
        (row_names, col_names, matrix, format!("{kind} (cells as rows)"))
    };
    // The simulator names its index column `simulated_cell`, the CSV's only place for the mark.
    let simulated = header_line.split(delimiter).next().map(unquote).as_deref() == Some("simulated_cell");
    Ok(ExpressionData { cells, genes, matrix, matrix_source: source, simulated, ..Default::default() })
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

/// How much a list of names looks like genes rather than cells: Ensembl IDs and upper-case
/// symbols score; 10x barcodes (`ACGT...-1`), numbers and lower-case ids do not.
fn gene_likeness(names: &[String]) -> f64 {
    let sample: Vec<&String> = names.iter().take(500).collect();
    if sample.is_empty() {
        return 0.0;
    }
    let genes = sample.iter().filter(|n| is_gene_like(n)).count();
    genes as f64 / sample.len() as f64
}

fn is_gene_like(name: &str) -> bool {
    let core = name.split('-').next().unwrap_or("");
    let is_barcode = core.len() >= 8 && core.chars().all(|c| matches!(c, 'A' | 'C' | 'G' | 'T' | 'N'));
    if is_barcode || name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    if name.starts_with("ENS") && name.contains('G') {
        return true;
    }
    let first = name.chars().next().unwrap_or(' ');
    first.is_ascii_uppercase()
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "-._".contains(c))
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
