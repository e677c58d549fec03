//! Writing AnnData (.h5ad) files that Python anndata opens: the 0.8+ on-disk layout (encoding-type
//! attributes, `_index`, categoricals as codes + categories, CSR groups). Used by the simulator.

use hdf5_pure::{AttrValue, FileBuilder, GroupBuilder};

use super::sparse::CsrMatrix;

/// A dataframe column as anndata stores it.
pub enum Column {
    /// pandas categorical: codes + sorted categories.
    Categorical(Vec<String>),
    Text(Vec<String>),
    Int(Vec<i64>),
    Float(Vec<f64>),
}

/// An obs or var dataframe: an index and named columns.
pub struct Frame {
    pub index: Vec<String>,
    pub columns: Vec<(String, Column)>,
}

pub struct AnnData<'a> {
    pub x: &'a CsrMatrix,
    pub layers: Vec<(&'a str, &'a CsrMatrix)>,
    pub obs: Frame,
    pub var: Frame,
    /// String entries of `uns` (e.g. `data_kind = simulated`).
    pub uns: Vec<(&'a str, String)>,
    /// gzip level for the matrix arrays (chunked), or none.
    pub compression: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("writing h5ad: {0}")]
pub struct WriteError(String);

fn s(v: &str) -> AttrValue {
    AttrValue::VarLenString(v.to_string())
}

fn encoding(g: &mut GroupBuilder, kind: &str, version: &str) {
    g.set_attr("encoding-type", s(kind));
    g.set_attr("encoding-version", s(version));
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(|x| x.as_str()).collect()
}

fn write_string_array(g: &mut GroupBuilder, name: &str, values: &[String]) {
    g.create_dataset(name)
        .with_vlen_strings(&strs(values))
        .set_attr("encoding-type", s("string-array"))
        .set_attr("encoding-version", s("0.2.0"));
}

fn write_frame(fb: &mut FileBuilder, name: &str, frame: &Frame) {
    let mut g = fb.create_group(name);
    encoding(&mut g, "dataframe", "0.2.0");
    g.set_attr("_index", s("_index"));
    let order: Vec<String> = frame.columns.iter().map(|(n, _)| n.clone()).collect();
    g.set_attr("column-order", AttrValue::VarLenStringArray(order));
    write_string_array(&mut g, "_index", &frame.index);
    for (col, values) in &frame.columns {
        match values {
            Column::Text(v) => write_string_array(&mut g, col, v),
            Column::Int(v) => {
                g.create_dataset(col)
                    .with_i64_data(v)
                    .set_attr("encoding-type", s("array"))
                    .set_attr("encoding-version", s("0.2.0"));
            }
            Column::Float(v) => {
                g.create_dataset(col)
                    .with_f64_data(v)
                    .set_attr("encoding-type", s("array"))
                    .set_attr("encoding-version", s("0.2.0"));
            }
            Column::Categorical(v) => {
                let mut cats: Vec<String> = v.clone();
                cats.sort();
                cats.dedup();
                let mut c = g.create_group(col);
                encoding(&mut c, "categorical", "0.2.0");
                c.set_attr("ordered", AttrValue::U8(0));
                let code = |x: &String| cats.binary_search(x).map(|i| i as i64).unwrap_or(-1);
                if cats.len() < 128 {
                    let codes: Vec<i8> = v.iter().map(|x| code(x) as i8).collect();
                    c.create_dataset("codes").with_i8_data(&codes);
                } else {
                    let codes: Vec<i16> = v.iter().map(|x| code(x) as i16).collect();
                    c.create_dataset("codes").with_i16_data(&codes);
                }
                write_string_array(&mut c, "categories", &cats);
                g.add_group(c.finish());
            }
        }
    }
    fb.add_group(g.finish());
}

fn csr_group(g: &mut GroupBuilder, m: &CsrMatrix, compression: Option<u32>) {
    encoding(g, "csr_matrix", "0.1.0");
    g.set_attr("shape", AttrValue::I64Array(vec![m.n_rows as i64, m.n_cols as i64]));
    let indices: Vec<i32> = m.indices.iter().map(|&i| i as i32).collect();
    let indptr: Vec<i64> = m.indptr.iter().map(|&i| i as i64).collect();
    // Chunks stay below 65,536 elements: hdf5-pure 0.47 encodes larger chunk dimensions in a
    // width libhdf5 2.0 rejects ("stored chunk dimension encoding length does not match").
    let chunk = (m.nnz() as u64).clamp(1, 1 << 15);
    let d = g.create_dataset("data");
    d.with_f32_data(&m.data);
    if let Some(level) = compression {
        d.with_chunks(&[chunk]).with_deflate(level);
    }
    let i = g.create_dataset("indices");
    i.with_i32_data(&indices);
    if let Some(level) = compression {
        i.with_chunks(&[chunk]).with_deflate(level);
    }
    g.create_dataset("indptr").with_i64_data(&indptr);
}

fn empty_dict(fb: &mut FileBuilder, name: &str) -> GroupBuilder {
    let mut g = fb.create_group(name);
    encoding(&mut g, "dict", "0.1.0");
    g
}

/// Serialises to bytes (works the same natively and in wasm).
pub fn write_h5ad(a: &AnnData) -> Result<Vec<u8>, WriteError> {
    if a.obs.index.len() != a.x.n_rows || a.var.index.len() != a.x.n_cols {
        return Err(WriteError(format!(
            "matrix is {}×{} but obs has {} rows and var {}",
            a.x.n_rows,
            a.x.n_cols,
            a.obs.index.len(),
            a.var.index.len()
        )));
    }
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));
    fb.set_attr("encoding-version", s("0.1.0"));

    let mut x = fb.create_group("X");
    csr_group(&mut x, a.x, a.compression);
    fb.add_group(x.finish());

    let mut layers = empty_dict(&mut fb, "layers");
    for (name, m) in &a.layers {
        let mut l = layers.create_group(name);
        csr_group(&mut l, m, a.compression);
        layers.add_group(l.finish());
    }
    fb.add_group(layers.finish());

    write_frame(&mut fb, "obs", &a.obs);
    write_frame(&mut fb, "var", &a.var);

    let mut uns = empty_dict(&mut fb, "uns");
    for (k, v) in &a.uns {
        uns.create_dataset(k)
            .with_vlen_strings(&[v.as_str()])
            .with_shape(&[])
            .set_attr("encoding-type", s("string"))
            .set_attr("encoding-version", s("0.2.0"));
    }
    fb.add_group(uns.finish());
    for name in ["obsm", "varm", "obsp", "varp"] {
        let g = empty_dict(&mut fb, name);
        fb.add_group(g.finish());
    }
    fb.finish().map_err(|e| WriteError(e.to_string()))
}
