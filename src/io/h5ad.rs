//! AnnData (.h5ad) reading with the pure-Rust `hdf5-pure` crate, so the same code runs in the browser.
//! Handles files written by anndata 0.6 (compound obs/var, see `h5ad_legacy`) through the current
//! release: dense or sparse (CSR/CSC) `X`, `layers/counts` and `raw/X`, dataframes with `_index`,
//! string arrays, categoricals (0.7 and 0.8+ layouts) and numeric columns. Only the matrix, gene
//! names, cell names and asked-for obs columns are read.

use hdf5_pure::{AttrValue, Dataset, File, FormatError, Group};

use super::h5ad_direct::{self, RawSource};
use super::h5ad_legacy;
use super::source::SharedSource;
use super::{
    ExpressionData, GeneSubset, LabelColumn, MatrixChoice, ReadError, ReadOptions, choose_label_column,
    sparse::CsrMatrix,
};

/// Symbol columns tried, in order, when the var index holds Ensembl IDs.
const SYMBOL_COLUMNS: &[&str] = &["feature_name", "gene_name", "gene_symbols", "gene_symbol", "symbol", "gene_names"];
/// Ensembl-ID columns tried when the var index holds symbols.
const ID_COLUMNS: &[&str] = &["gene_ids", "gene_id", "ensembl_id", "ensemble_id", "feature_id", "ensembl_ids"];

/// Opens lazily from disk: datasets are fetched on demand, so memory follows what is read.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_h5ad_path(path: &std::path::Path, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let name = path.display().to_string();
    let file = File::open_streaming(path).map_err(|e| open_error(&name, e))?;
    read_h5ad(&name, &file, &RawSource::Path(path.to_path_buf()), options, true)
}

/// Everything `read_h5ad_path` gives except the matrix, which is left empty (0 cells × the file's
/// genes): what streaming needs before it reads the cells through `CsrRows`.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_metadata_path(path: &std::path::Path, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let name = path.display().to_string();
    let file = File::open_streaming(path).map_err(|e| open_error(&name, e))?;
    read_h5ad(&name, &file, &RawSource::Path(path.to_path_buf()), options, false)
}

/// Opens from a random-access source (a browser `File`): datasets are fetched on demand.
pub fn read_h5ad_source(name: &str, source: SharedSource, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let file = File::from_source(source.clone()).map_err(|e| open_error(name, e))?;
    read_h5ad(name, &file, &RawSource::Shared(source), options, true)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn read_obs_column_path(
    name: &str,
    path: &std::path::Path,
    column: &str,
    cells: usize,
) -> Result<Vec<String>, ReadError> {
    let file = File::open_streaming(path).map_err(|e| open_error(name, e))?;
    read_obs_column(name, &file, column, cells)
}

pub fn read_obs_column_source(
    name: &str,
    source: SharedSource,
    column: &str,
    cells: usize,
) -> Result<Vec<String>, ReadError> {
    let file = File::from_source(source).map_err(|e| open_error(name, e))?;
    read_obs_column(name, &file, column, cells)
}

/// One obs column, checked to hold one value per cell.
fn read_obs_column(name: &str, file: &File, column: &str, cells: usize) -> Result<Vec<String>, ReadError> {
    let available = column_names(file, "obs");
    if !available.iter().any(|c| c == column) {
        return Err(missing_obs_column(name, column, &available));
    }
    read_text_column(name, file, "obs", column, cells)
}

fn missing_obs_column(name: &str, column: &str, available: &[String]) -> ReadError {
    ReadError::Missing {
        file: name.to_string(),
        what: format!("obs column '{column}'"),
        hint: format!("the file has: {}", available.join(", ")),
    }
}

pub fn read_h5ad_bytes(name: &str, bytes: Vec<u8>, options: &ReadOptions) -> Result<ExpressionData, ReadError> {
    let file = File::from_bytes(bytes).map_err(|e| open_error(name, e))?;
    read_h5ad(name, &file, &RawSource::InMemory, options, true)
}

fn open_error(file: &str, e: hdf5_pure::Error) -> ReadError {
    match e {
        hdf5_pure::Error::Io(source) => ReadError::Io { file: file.to_string(), source },
        hdf5_pure::Error::Format(FormatError::SignatureNotFound) => ReadError::NotHdf5 { file: file.to_string() },
        other => ReadError::Damaged { file: file.to_string(), detail: other.to_string() },
    }
}

/// Turns a library error met while reading one object into a message naming that object.
fn object_error(file: &str, object: &str, e: hdf5_pure::Error) -> ReadError {
    match e {
        hdf5_pure::Error::Format(FormatError::UnsupportedFilter(id)) => ReadError::Unsupported {
            file: file.to_string(),
            what: format!("dataset '{object}' is compressed with HDF5 filter {id}{}, which this reader does not support", filter_name(id)),
            hint: "Re-save it with gzip or no compression, e.g. in Python: `ad.read_h5ad(f).write_h5ad(g, compression='gzip')`".to_string(),
        },
        hdf5_pure::Error::Io(source) => ReadError::Io { file: file.to_string(), source },
        other => ReadError::Damaged { file: file.to_string(), detail: format!("reading '{object}': {other}") },
    }
}

fn filter_name(id: u16) -> &'static str {
    match id {
        32001 => " (Blosc)",
        32004 => " (LZ4)",
        32008 => " (Bitshuffle)",
        32015 => " (Zstandard)",
        4 => " (SZIP)",
        _ => "",
    }
}

fn exists_group(file: &File, path: &str) -> bool {
    file.group(path).is_ok()
}

fn exists_dataset(file: &File, path: &str) -> bool {
    file.dataset(path).is_ok()
}

fn attr_string(attrs: &std::collections::HashMap<String, AttrValue>, key: &str) -> Option<String> {
    attrs.get(key).and_then(|v| v.as_str()).map(|s| s.to_string())
}

fn read_h5ad(
    name: &str,
    file: &File,
    raw: &RawSource,
    options: &ReadOptions,
    with_matrix: bool,
) -> Result<ExpressionData, ReadError> {
    // A cut-off copy still opens (the superblock is at the start) but ends before its stated end.
    let (stated, actual) = (file.superblock().eof_address, file.file_size());
    if actual < stated {
        return Err(ReadError::Damaged {
            file: name.to_string(),
            detail: format!("truncated: the file has {actual} bytes but its HDF5 header says {stated}"),
        });
    }
    // Pre-0.7 AnnData stored obs/var as structured (compound) datasets rather than groups.
    if !exists_group(file, "obs") && !exists_dataset(file, "obs") {
        return Err(ReadError::Missing {
            file: name.to_string(),
            what: "the 'obs' group".to_string(),
            hint: "this HDF5 file is not an AnnData .h5ad (expected groups obs, var and a matrix X)".to_string(),
        });
    }

    let (matrix_path, var_path) = choose_matrix(name, file, &options.matrix)?;
    let cells = read_index(name, file, "obs")?;
    let var_index = read_index(name, file, var_path)?;
    let var_columns = column_names(file, var_path);
    let (mut genes, mut gene_ids) = gene_names(name, file, var_path, var_index, &var_columns)?;

    // Only the asked-for genes (the model's panel): the matrix is streamed and the rest dropped.
    let keep: Option<Vec<bool>> = (!options.only_genes.is_empty()).then(|| {
        let wanted: std::collections::HashSet<&str> = options.only_genes.iter().map(String::as_str).collect();
        let id = |j: usize| gene_ids.as_ref().map(|ids| ids[j].as_str());
        (0..genes.len())
            .map(|j| wanted.contains(genes[j].as_str()) || id(j).is_some_and(|i| wanted.contains(i)))
            .collect()
    });
    // None of them: a few genes are kept anyway, so that the error names some of the file's.
    let keep = keep.map(|mut k| {
        if !k.contains(&true) {
            k.iter_mut().take(5).for_each(|x| *x = true);
        }
        k
    });
    let keep = keep.filter(|k| k.contains(&false));
    let (matrix, subset) = match with_matrix {
        true => read_matrix(name, file, raw, &matrix_path, cells.len(), genes.len(), keep.as_deref())?,
        false => (CsrMatrix::new(genes.len()), None),
    };
    if let Some(keep) = &keep {
        genes = kept_only(genes, keep);
        gene_ids = gene_ids.map(|ids| kept_only(ids, keep));
    }

    let obs_column_names = column_names(file, "obs");
    let label_name = choose_label_column(name, &obs_column_names, options.label_column.as_deref())?;
    let labels = match label_name {
        Some(col) => Some(LabelColumn { values: read_text_column(name, file, "obs", &col, cells.len())?, name: col }),
        None => None,
    };
    let mut obs = Vec::new();
    for col in &options.extra_obs {
        if !obs_column_names.contains(col) {
            return Err(missing_obs_column(name, col, &obs_column_names));
        }
        obs.push(LabelColumn { name: col.clone(), values: read_text_column(name, file, "obs", col, cells.len())? });
    }

    let simulated = file
        .dataset("uns/data_kind")
        .ok()
        .filter(|d| check_size(name, file, "uns/data_kind", d).is_ok())
        .and_then(|d| d.read_string().ok())
        .is_some_and(|v| v.iter().any(|s| s == "simulated"));
    let world = file
        .dataset("uns/world")
        .ok()
        .filter(|d| check_size(name, file, "uns/world", d).is_ok())
        .and_then(|d| d.read_string().ok())
        .and_then(|v| v.into_iter().next())
        .filter(|_| simulated);

    Ok(ExpressionData {
        cells,
        genes,
        gene_ids,
        matrix,
        matrix_source: matrix_path,
        labels,
        obs,
        obs_column_names,
        simulated,
        world,
        warnings: Vec::new(),
        subset,
    })
}

/// Returns (matrix path, var dataframe path). Raw counts are preferred because the model
/// normalises them itself; `X` is often already log-normalised.
fn choose_matrix(name: &str, file: &File, choice: &MatrixChoice) -> Result<(String, &'static str), ReadError> {
    let has = |p: &str| exists_group(file, p) || exists_dataset(file, p);
    let missing = |what: String| ReadError::Missing {
        file: name.to_string(),
        what,
        hint: format!(
            "available: {}",
            ["X", "layers/counts", "raw/X", "raw.X"].iter().filter(|p| has(p)).cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    match choice {
        MatrixChoice::Auto => {
            if has("layers/counts") {
                Ok(("layers/counts".into(), "var"))
            } else if has("raw/X") && has("raw/var") {
                Ok(("raw/X".into(), "raw/var"))
            } else if has("raw.X") && has("raw.var") {
                Ok(("raw.X".into(), "raw.var")) // anndata before 0.7
            } else if has("X") {
                Ok(("X".into(), "var"))
            } else {
                Err(missing("the expression matrix X".into()))
            }
        }
        MatrixChoice::X => has("X").then(|| ("X".to_string(), "var")).ok_or_else(|| missing("X".into())),
        MatrixChoice::RawX => {
            if has("raw/X") {
                Ok(("raw/X".to_string(), "raw/var"))
            } else if has("raw.X") {
                Ok(("raw.X".to_string(), "raw.var"))
            } else {
                Err(missing("raw/X".into()))
            }
        }
        MatrixChoice::Layer(l) => {
            let p = format!("layers/{l}");
            if has(&p) { Ok((p, "var")) } else { Err(missing(format!("layer '{l}'"))) }
        }
    }
}

/// The dataframe's row names: the dataset named by its `_index` attribute.
fn read_index(name: &str, file: &File, df: &str) -> Result<Vec<String>, ReadError> {
    if let Some(frame) = h5ad_legacy::read_frame(name, file, df)? {
        return Ok(frame.index);
    }
    let group = file.group(df).map_err(|e| object_error(name, df, e))?;
    let attrs = group.attrs().map_err(|e| object_error(name, df, e))?;
    let index_name = attr_string(&attrs, "_index").unwrap_or_else(|| "_index".to_string());
    let path = format!("{df}/{index_name}");
    let ds = file.dataset(&path).map_err(|_| ReadError::Missing {
        file: name.to_string(),
        what: format!("the index of '{df}' ('{path}')"),
        hint: "the dataframe has no `_index`; re-save the file with anndata".to_string(),
    })?;
    read_strings(name, file, &path, &ds)
}

fn read_strings(name: &str, file: &File, path: &str, ds: &Dataset) -> Result<Vec<String>, ReadError> {
    check_size(name, file, path, ds)?;
    ds.read_string().map_err(|e| object_error(name, path, e))
}

/// Column names of a dataframe, from `column-order` when present, else its members.
fn column_names(file: &File, df: &str) -> Vec<String> {
    let Ok(group) = file.group(df) else {
        // A legacy frame's columns; one that cannot be decoded fails later, where it is read.
        return match h5ad_legacy::read_frame("", file, df) {
            Ok(Some(frame)) => frame.columns.into_iter().map(|(c, _)| c).collect(),
            _ => Vec::new(),
        };
    };
    let index_name = group.attrs().ok().and_then(|a| attr_string(&a, "_index")).unwrap_or_else(|| "_index".into());
    if let Some(order) =
        group.attrs().ok().and_then(|a| a.get("column-order").and_then(|v| v.as_strings().map(|s| s.to_vec())))
        && !order.is_empty()
    {
        return order;
    }
    let mut names: Vec<String> = group.datasets().unwrap_or_default();
    names.extend(group.groups().unwrap_or_default());
    names.retain(|n| n != &index_name && !n.starts_with("__"));
    names.sort();
    names
}

/// Symbols and Ensembl IDs for the genes, whichever the file puts in its index and columns.
fn gene_names(
    name: &str,
    file: &File,
    var: &str,
    index: Vec<String>,
    columns: &[String],
) -> Result<(Vec<String>, Option<Vec<String>>), ReadError> {
    let n = index.len();
    let index_is_ensembl = looks_like_ensembl(&index);
    if index_is_ensembl {
        for col in SYMBOL_COLUMNS {
            if columns.iter().any(|c| c == col) {
                let symbols = read_text_column(name, file, var, col, n)?;
                return Ok((symbols, Some(index)));
            }
        }
        return Ok((index.clone(), Some(index)));
    }
    for col in ID_COLUMNS {
        if columns.iter().any(|c| c == col) {
            let ids = read_text_column(name, file, var, col, n)?;
            if looks_like_ensembl(&ids) {
                return Ok((index, Some(ids)));
            }
        }
    }
    Ok((index, None))
}

/// True when most names are Ensembl gene IDs (ENSG..., ENSMUSG..., with or without a version).
pub fn looks_like_ensembl(names: &[String]) -> bool {
    let sample: Vec<&String> = names.iter().take(200).collect();
    !sample.is_empty()
        && sample.iter().filter(|s| s.starts_with("ENS") && s.contains('G')).count() * 10 >= sample.len() * 9
}

/// Reads any dataframe column as text: string arrays, categoricals (both layouts) and numbers.
fn read_text_column(name: &str, file: &File, df: &str, col: &str, n: usize) -> Result<Vec<String>, ReadError> {
    let path = format!("{df}/{col}");
    let legacy = match h5ad_legacy::read_frame(name, file, df)? {
        Some(frame) => Some(frame.columns.into_iter().find(|(c, _)| c == col).map(|(_, v)| v).ok_or_else(|| {
            ReadError::Missing {
                file: name.to_string(),
                what: format!("column '{df}.{col}'"),
                hint: "the legacy dataframe has no such field".into(),
            }
        })?),
        None => None,
    };
    let values = if let Some(values) = legacy {
        values
    } else if let Ok(group) = file.group(&path) {
        let attrs = group.attrs().map_err(|e| object_error(name, &path, e))?;
        match attr_string(&attrs, "encoding-type").as_deref() {
            Some("categorical") => {
                let codes = file.dataset(&format!("{path}/codes")).map_err(|e| object_error(name, &path, e))?;
                let cats = file.dataset(&format!("{path}/categories")).map_err(|e| object_error(name, &path, e))?;
                let categories = read_category_values(name, file, &format!("{path}/categories"), &cats)?;
                decode_categorical(name, file, &path, &codes, &categories)?
            }
            Some("nullable-integer") | Some("nullable-boolean") | Some("nullable-string-array") => {
                let values = file.dataset(&format!("{path}/values")).map_err(|e| object_error(name, &path, e))?;
                read_any_as_text(name, file, &format!("{path}/values"), &values)?
            }
            other => {
                return Err(ReadError::Unsupported {
                    file: name.to_string(),
                    what: format!("column '{path}' has encoding '{}'", other.unwrap_or("none")),
                    hint: "Use a string, categorical or numeric column".to_string(),
                });
            }
        }
    } else {
        let ds = file.dataset(&path).map_err(|e| object_error(name, &path, e))?;
        // anndata 0.7: categorical codes with their categories in `<df>/__categories/<col>`.
        let legacy = format!("{df}/__categories/{col}");
        if let Ok(cats) = file.dataset(&legacy) {
            let categories = read_category_values(name, file, &legacy, &cats)?;
            decode_categorical(name, file, &path, &ds, &categories)?
        } else {
            read_any_as_text(name, file, &path, &ds)?
        }
    };
    if values.len() != n {
        return Err(ReadError::malformed(
            name,
            format!("column '{path}' has {} values but the dataframe has {n} rows", values.len()),
        ));
    }
    Ok(values)
}

fn read_category_values(name: &str, file: &File, path: &str, ds: &Dataset) -> Result<Vec<String>, ReadError> {
    read_any_as_text(name, file, path, ds)
}

fn decode_categorical(
    name: &str,
    file: &File,
    path: &str,
    codes: &Dataset,
    categories: &[String],
) -> Result<Vec<String>, ReadError> {
    check_size(name, file, path, codes)?;
    let codes = codes.read_i64().map_err(|e| object_error(name, path, e))?;
    codes
        .iter()
        .map(|&c| {
            if c < 0 {
                Ok(String::new()) // pandas' code for a missing value
            } else {
                categories.get(c as usize).cloned().ok_or_else(|| {
                    ReadError::malformed(
                        name,
                        format!("categorical '{path}' has code {c} but only {} categories", categories.len()),
                    )
                })
            }
        })
        .collect()
}

fn read_any_as_text(name: &str, file: &File, path: &str, ds: &Dataset) -> Result<Vec<String>, ReadError> {
    use hdf5_pure::DType;
    check_size(name, file, path, ds)?;
    let dtype = ds.dtype().map_err(|e| object_error(name, path, e))?;
    Ok(match dtype {
        DType::String | DType::VariableLengthString => read_strings(name, file, path, ds)?,
        DType::F32 | DType::F64 => {
            ds.read_f64().map_err(|e| object_error(name, path, e))?.iter().map(|v| v.to_string()).collect()
        }
        DType::Enum(_) | DType::U8 | DType::I8 => {
            // h5py stores booleans as an 8-bit enum; show them as true/false when they are 0/1.
            let v = ds.read_i64().map_err(|e| object_error(name, path, e))?;
            if matches!(dtype, DType::Enum(_)) {
                v.iter().map(|&x| (x != 0).to_string()).collect()
            } else {
                v.iter().map(|x| x.to_string()).collect()
            }
        }
        DType::I16 | DType::I32 | DType::I64 | DType::U16 | DType::U32 | DType::U64 => {
            ds.read_i64().map_err(|e| object_error(name, path, e))?.iter().map(|v| v.to_string()).collect()
        }
        other => {
            return Err(ReadError::Unsupported {
                file: name.to_string(),
                what: format!("column '{path}' has HDF5 type {other:?}"),
                hint: "Use a string, categorical or numeric column".to_string(),
            });
        }
    })
}

/// gzip compresses at most about 1032:1, so a dataset declaring more bytes than this many times
/// the file's size (at least 64 KiB) has damaged sizes, and reading it would try to allocate them.
const MAX_EXPANSION: u128 = 1100;

/// Refuses a dataset whose declared size no file of this size can hold, before reading it.
pub(super) fn check_size(name: &str, file: &File, path: &str, ds: &Dataset) -> Result<(), ReadError> {
    let shape = ds.shape().map_err(|e| object_error(name, path, e))?;
    let element = ds.datatype().map_err(|e| object_error(name, path, e))?.type_size();
    let bytes = shape.iter().fold(element as u128, |a, &d| a.saturating_mul(d as u128));
    let limit = (file.file_size() as u128).max(1 << 16) * MAX_EXPANSION;
    if bytes > limit {
        return Err(ReadError::Damaged {
            file: name.to_string(),
            detail: format!(
                "dataset '{path}' declares shape {shape:?} ({bytes} bytes), more than a file of {} bytes can hold",
                file.file_size()
            ),
        });
    }
    Ok(())
}

/// Reads the chosen matrix into CSR: dense datasets in row windows, sparse groups by their arrays.
/// The matrix at `path`, all of it, or (`keep`) only the kept genes' columns with what the rest of
/// the file adds to each cell.
fn read_matrix(
    name: &str,
    file: &File,
    raw: &RawSource,
    path: &str,
    n_obs: usize,
    n_vars: usize,
    keep: Option<&[bool]>,
) -> Result<(CsrMatrix, Option<GeneSubset>), ReadError> {
    if let Ok(group) = file.group(path) {
        read_sparse(name, file, raw, &group, path, n_obs, n_vars, keep)
    } else {
        let ds = file.dataset(path).map_err(|e| object_error(name, path, e))?;
        read_dense(name, file, &ds, path, n_obs, n_vars, keep)
    }
}

/// The kept entries of `v`.
fn kept_only(v: Vec<String>, keep: &[bool]) -> Vec<String> {
    v.into_iter().zip(keep).filter(|(_, k)| **k).map(|(g, _)| g).collect()
}

/// The kept genes' columns, in order (`CsrMatrix::select_columns`' argument).
fn kept_columns(keep: &[bool]) -> Vec<Option<usize>> {
    (0..keep.len()).filter(|&j| keep[j]).map(Some).collect()
}

/// A whole matrix cut down to the kept genes, with each cell's total over every gene.
fn keep_only(m: CsrMatrix, keep: &[bool]) -> (CsrMatrix, GeneSubset) {
    let subset = GeneSubset { genes_in_file: m.n_cols, nnz_in_file: m.nnz() as u64, row_totals: m.row_sums() };
    (m.select_columns(&kept_columns(keep)), subset)
}

fn read_dense(
    name: &str,
    file: &File,
    ds: &Dataset,
    path: &str,
    n_obs: usize,
    n_vars: usize,
    keep: Option<&[bool]>,
) -> Result<(CsrMatrix, Option<GeneSubset>), ReadError> {
    check_size(name, file, path, ds)?;
    let shape = ds.shape().map_err(|e| object_error(name, path, e))?;
    if shape.len() != 2 || shape[0] as usize != n_obs || shape[1] as usize != n_vars {
        return Err(ReadError::malformed(
            name,
            format!("matrix '{path}' has shape {shape:?}, but obs has {n_obs} rows and var {n_vars}"),
        ));
    }
    let kept: Option<Vec<usize>> = keep.map(|k| (0..n_vars).filter(|&j| k[j]).collect());
    let mut m = CsrMatrix::new(kept.as_ref().map_or(n_vars, Vec::len));
    let mut subset = keep.map(|_| GeneSubset { genes_in_file: n_vars, nnz_in_file: 0, row_totals: Vec::new() });
    // About 4M values a window keeps the transient dense buffer small for any file size.
    let window = (4_000_000 / n_vars.max(1)).max(1);
    let mut start = 0;
    let mut row = Vec::new();
    while start < n_obs {
        let count = window.min(n_obs - start);
        let vals = ds.read_f32_rows(start as u64, count as u64).map_err(|e| object_error(name, path, e))?;
        if vals.len() != count * n_vars {
            return Err(ReadError::Damaged {
                file: name.to_string(),
                detail: format!("'{path}' returned a short read"),
            });
        }
        for values in vals.chunks_exact(n_vars) {
            match (&kept, &mut subset) {
                (Some(kept), Some(s)) => {
                    s.row_totals.push(values.iter().map(|&v| v as f64).sum());
                    s.nnz_in_file += values.iter().filter(|v| **v != 0.0).count() as u64;
                    row.clear();
                    row.extend(kept.iter().map(|&j| values[j]));
                    m.push_dense_row(&row);
                }
                _ => m.push_dense_row(values),
            }
        }
        if start == 0 {
            m.reserve_at_rate(count as u64, (n_obs - count) as u64, n_obs - count);
        }
        start += count;
    }
    Ok((m, subset))
}

#[allow(clippy::too_many_arguments)]
fn read_sparse(
    name: &str,
    file: &File,
    raw: &RawSource,
    group: &Group,
    path: &str,
    n_obs: usize,
    n_vars: usize,
    keep: Option<&[bool]>,
) -> Result<(CsrMatrix, Option<GeneSubset>), ReadError> {
    let attrs = group.attrs().map_err(|e| object_error(name, path, e))?;
    let encoding = attr_string(&attrs, "encoding-type")
        .or_else(|| attr_string(&attrs, "h5sparse_format").map(|f| format!("{f}_matrix")))
        .unwrap_or_default();
    let shape: Vec<usize> = attrs
        .get("shape")
        .or_else(|| attrs.get("h5sparse_shape"))
        .and_then(|v| v.to_u64s())
        .map(|v| v.into_iter().map(|x| x as usize).collect())
        .unwrap_or_default();
    if shape != [n_obs, n_vars] {
        return Err(ReadError::malformed(
            name,
            format!("sparse matrix '{path}' has shape {shape:?}, but obs has {n_obs} rows and var {n_vars}"),
        ));
    }
    let ds = |member: &str| {
        let p = format!("{path}/{member}");
        file.dataset(&p).map_err(|_| ReadError::Missing {
            file: name.to_string(),
            what: format!("'{p}'"),
            hint: "a sparse matrix needs data, indices and indptr".to_string(),
        })
    };
    let (data_ds, indices_ds, indptr_ds) = (ds("data")?, ds("indices")?, ds("indptr")?);
    for (member, d) in [("data", &data_ds), ("indices", &indices_ds), ("indptr", &indptr_ds)] {
        check_size(name, file, &format!("{path}/{member}"), d)?;
    }
    if let (Some(keep), "csr_matrix") = (keep, encoding.as_str()) {
        let indptr = indptr_ds.read_u64().map_err(|e| object_error(name, &format!("{path}/indptr"), e))?;
        let datasets = (&data_ds, &indices_ds);
        return read_csr_rows_kept(name, path, datasets, &indptr, n_obs, n_vars, keep).map(|(m, s)| (m, Some(s)));
    }
    let data = match h5ad_direct::read_f32(file, raw, &data_ds) {
        Some(v) => v,
        None => data_ds.read_f32().map_err(|e| object_error(name, &format!("{path}/data"), e))?,
    };
    let indices = match h5ad_direct::read_u32(file, raw, &indices_ds) {
        Some(v) => v,
        None => indices_ds.read_u32().map_err(|e| object_error(name, &format!("{path}/indices"), e))?,
    };
    let indptr = indptr_ds.read_u64().map_err(|e| object_error(name, &format!("{path}/indptr"), e))?;
    let (major, minor) = match encoding.as_str() {
        "csr_matrix" => (n_obs, n_vars),
        "csc_matrix" => (n_vars, n_obs),
        other => {
            return Err(ReadError::Unsupported {
                file: name.to_string(),
                what: format!("matrix '{path}' has encoding '{other}'"),
                hint: "Expected csr_matrix or csc_matrix (re-save with anndata)".to_string(),
            });
        }
    };
    check_compressed(name, path, major, minor, &indptr, &indices, data.len())?;
    let m = if encoding == "csr_matrix" {
        let mut m = CsrMatrix { n_rows: n_obs, n_cols: n_vars, indptr, indices, data };
        sort_rows(&mut m);
        m
    } else {
        CsrMatrix::from_csc(n_obs, n_vars, &indptr, &indices, &data)
    };
    Ok(match keep {
        Some(keep) => {
            let (m, subset) = keep_only(m, keep);
            (m, Some(subset))
        }
        None => (m, None),
    })
}

/// Stored values read at a time when a CSR matrix is streamed.
const WINDOW_VALUES: u64 = 1 << 20;

/// A CSR matrix read in windows of about `WINDOW_VALUES` stored values, keeping only the kept
/// genes' columns and each cell's total: memory follows the kept part, not the file.
fn read_csr_rows_kept(
    name: &str,
    path: &str,
    (data_ds, indices_ds): (&Dataset, &Dataset),
    indptr: &[u64],
    n_obs: usize,
    n_vars: usize,
    keep: &[bool],
) -> Result<(CsrMatrix, GeneSubset), ReadError> {
    let rows = CsrRows::new(name, path, data_ds.clone(), indices_ds.clone(), indptr.to_vec(), n_vars, keep)?;
    let (m, row_totals) = rows.read(0, n_obs)?;
    Ok((m, GeneSubset { genes_in_file: n_vars, nnz_in_file: rows.nnz(), row_totals }))
}

/// An h5ad's CSR matrix read a range of cells at a time, with only the kept genes' columns and each
/// cell's total over every gene: training streams a file larger than memory through it.
pub struct CsrRows {
    name: String,
    path: String,
    data: Dataset,
    indices: Dataset,
    indptr: Vec<u64>,
    /// Each file gene's kept column (u32::MAX: dropped).
    position: Vec<u32>,
    kept: usize,
}

impl CsrRows {
    fn new(
        name: &str,
        path: &str,
        data: Dataset,
        indices: Dataset,
        indptr: Vec<u64>,
        n_vars: usize,
        keep: &[bool],
    ) -> Result<CsrRows, ReadError> {
        let nnz = data.shape().ok().and_then(|s| s.first().copied()).unwrap_or(0);
        let indices_len = indices.shape().ok().and_then(|s| s.first().copied()).unwrap_or(0);
        let bad = |d: String| ReadError::malformed(name, format!("sparse matrix '{path}': {d}"));
        let n_obs = indptr.len().saturating_sub(1);
        if indptr.is_empty() || indptr[0] != 0 || indptr[n_obs] != nnz || indices_len != nnz {
            return Err(bad(format!(
                "indptr has {} entries ending at {:?}, for {n_obs} rows, {nnz} values and {indices_len} indices",
                indptr.len(),
                indptr.last()
            )));
        }
        if indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(bad("indptr is not non-decreasing".into()));
        }
        if keep.len() != n_vars {
            return Err(bad(format!("{} genes to keep or drop, for {n_vars} columns", keep.len())));
        }
        let mut position = vec![u32::MAX; n_vars];
        kept_columns(keep).iter().flatten().enumerate().for_each(|(p, &j)| position[j] = p as u32);
        let kept = keep.iter().filter(|k| **k).count();
        Ok(CsrRows { name: name.into(), path: path.into(), data, indices, indptr, position, kept })
    }

    /// Opens the matrix `options.matrix` chooses (counts first, as `read_path`) for streaming, with
    /// the genes `keep` marks (one entry per gene of the file, in the order `read_metadata_path` gives).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path, options: &ReadOptions, keep: &[bool]) -> Result<CsrRows, ReadError> {
        let name = path.display().to_string();
        let file = File::open_streaming(path).map_err(|e| open_error(&name, e))?;
        let (matrix_path, var_path) = choose_matrix(&name, &file, &options.matrix)?;
        let n_obs = read_index(&name, &file, "obs")?.len();
        let n_vars = read_index(&name, &file, var_path)?.len();
        let group = file.group(&matrix_path).map_err(|_| ReadError::Unsupported {
            file: name.clone(),
            what: format!("'{matrix_path}' is a dense matrix, and streaming reads sparse CSR rows"),
            hint: "Re-save it sparse, e.g. in Python: `a.X = scipy.sparse.csr_matrix(a.X); a.write_h5ad(f)`".into(),
        })?;
        let attrs = group.attrs().map_err(|e| object_error(&name, &matrix_path, e))?;
        let encoding = attr_string(&attrs, "encoding-type").unwrap_or_default();
        if encoding != "csr_matrix" {
            return Err(ReadError::Unsupported {
                file: name,
                what: format!("'{matrix_path}' is stored as '{encoding}', and streaming reads cells as CSR rows"),
                hint: "Re-save it as CSR, e.g. in Python: `a.X = a.X.tocsr(); a.write_h5ad(f)`".into(),
            });
        }
        let ds = |member: &str| {
            let p = format!("{matrix_path}/{member}");
            let d = file.dataset(&p).map_err(|e| object_error(&name, &p, e))?;
            check_size(&name, &file, &p, &d)?;
            Ok::<_, ReadError>(d)
        };
        let (data, indices) = (ds("data")?, ds("indices")?);
        let indptr = ds("indptr")?.read_u64().map_err(|e| object_error(&name, &format!("{matrix_path}/indptr"), e))?;
        if indptr.len() != n_obs + 1 {
            return Err(ReadError::malformed(
                &name,
                format!("'{matrix_path}/indptr' has {} entries for {n_obs} cells", indptr.len()),
            ));
        }
        CsrRows::new(&name, &matrix_path, data, indices, indptr, n_vars, keep)
    }

    pub fn cells(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Stored values in the whole matrix.
    pub fn nnz(&self) -> u64 {
        self.indptr[self.cells()]
    }

    /// Cells `start..end`: their kept columns (sorted within each row) and each cell's total over
    /// every gene; read in windows of about `WINDOW_VALUES` stored values.
    pub fn read(&self, start: usize, end: usize) -> Result<(CsrMatrix, Vec<f64>), ReadError> {
        let (name, path) = (self.name.as_str(), self.path.as_str());
        let end = end.min(self.cells());
        let bad = |d: String| ReadError::malformed(name, format!("sparse matrix '{path}': {d}"));
        let mut m = CsrMatrix::new(self.kept);
        let mut totals = Vec::with_capacity(end.saturating_sub(start));
        let (mut cols, mut vals) = (Vec::new(), Vec::new());
        let indptr = &self.indptr;
        let mut row = start;
        while row < end {
            // Rows up to the window's size (at least one row, however long).
            let first = indptr[row];
            let mut stop = row + 1;
            while stop < end && indptr[stop + 1] - first <= WINDOW_VALUES {
                stop += 1;
            }
            let count = indptr[stop] - first;
            let data =
                self.data.read_f32_rows(first, count).map_err(|e| object_error(name, &format!("{path}/data"), e))?;
            let indices = match self.indices.read_u32_rows(first, count) {
                Ok(v) => v,
                Err(_) => {
                    let wide = self.indices.read_i64_rows(first, count);
                    let wide = wide.map_err(|e| object_error(name, &format!("{path}/indices"), e))?;
                    wide.into_iter().map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect()
                }
            };
            if data.len() as u64 != count || indices.len() as u64 != count {
                return Err(ReadError::Damaged {
                    file: name.to_string(),
                    detail: format!("'{path}' returned a short read"),
                });
            }
            // Row by row rather than through `select_columns`, which sorts every row (6 % of `predict`).
            for i in row..stop {
                let (a, b) = ((indptr[i] - first) as usize, (indptr[i + 1] - first) as usize);
                totals.push(super::sparse::lane_sum(&data[a..b]));
                cols.clear();
                vals.clear();
                for (&j, &x) in indices[a..b].iter().zip(&data[a..b]) {
                    match self.position.get(j as usize) {
                        Some(&p) if p != u32::MAX => {
                            cols.push(p);
                            vals.push(x);
                        }
                        Some(_) => {}
                        None => return Err(bad(format!("index {j} is out of range (size {})", self.position.len()))),
                    }
                }
                if cols.windows(2).any(|w| w[0] > w[1]) {
                    // scipy allows unsorted indices within a row; downstream code expects them sorted.
                    let mut pairs: Vec<(u32, f32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
                    pairs.sort_by_key(|p| p.0);
                    (cols, vals) = pairs.into_iter().unzip();
                }
                m.push_sparse_row(&cols, &vals);
            }
            if row == start {
                m.reserve_at_rate(indptr[stop] - first, indptr[end] - indptr[stop], end - stop);
            }
            row = stop;
        }
        Ok((m, totals))
    }
}

/// Refuses inconsistent sparse arrays before they can index out of bounds.
fn check_compressed(
    name: &str,
    path: &str,
    major: usize,
    minor: usize,
    indptr: &[u64],
    indices: &[u32],
    nnz: usize,
) -> Result<(), ReadError> {
    let bad = |d: String| Err(ReadError::malformed(name, format!("sparse matrix '{path}': {d}")));
    if indptr.len() != major + 1 {
        return bad(format!("indptr has {} entries, expected {}", indptr.len(), major + 1));
    }
    if indices.len() != nnz || indptr[major] as usize != nnz || indptr[0] != 0 {
        return bad(format!(
            "indptr ends at {} but there are {} values and {} indices",
            indptr[major],
            nnz,
            indices.len()
        ));
    }
    if indptr.windows(2).any(|w| w[0] > w[1]) {
        return bad("indptr is not non-decreasing".into());
    }
    // A vectorised maximum over chunks first; the search for the culprit only when there is one.
    let max = crate::parallel::map_chunks(indices, |c| c.iter().copied().max().unwrap_or(0)).into_iter().max();
    if max.is_some_and(|m| m as usize >= minor)
        && let Some(&i) = indices.iter().find(|&&i| i as usize >= minor)
    {
        return bad(format!("index {i} is out of range (size {minor})"));
    }
    Ok(())
}

/// scipy allows unsorted column indices within a row; downstream code expects them sorted.
fn sort_rows(m: &mut CsrMatrix) {
    // Rows are checked in parallel; AnnData writes them sorted, so the sorting loop rarely runs.
    let sorted = crate::parallel::map(m.n_rows, |i| {
        m.indices[m.indptr[i] as usize..m.indptr[i + 1] as usize].windows(2).all(|w| w[0] < w[1])
    });
    for i in (0..m.n_rows).filter(|&i| !sorted[i]) {
        let (a, b) = (m.indptr[i] as usize, m.indptr[i + 1] as usize);
        let mut pairs: Vec<(u32, f32)> = m.indices[a..b].iter().cloned().zip(m.data[a..b].iter().cloned()).collect();
        pairs.sort_unstable_by_key(|p| p.0);
        for (k, (j, v)) in pairs.into_iter().enumerate() {
            m.indices[a + k] = j;
            m.data[a + k] = v;
        }
    }
}
