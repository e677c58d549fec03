//! AnnData before 0.7 stored `obs` and `var` as one compound (structured-array) dataset each: the
//! first field is the index, the others are columns; a categorical column holds integer codes and
//! its categories sit in `uns/<column>_categories`. Decoded here the way anndata's legacy path does.

use hdf5_pure::{Datatype, DatatypeByteOrder, File, StringPadding};

use super::ReadError;

/// A legacy dataframe, every column as text (as the readers of the current layout give them).
pub(super) struct LegacyFrame {
    pub index: Vec<String>,
    pub columns: Vec<(String, Vec<String>)>,
}

enum Values {
    Text(Vec<String>),
    Int(Vec<i64>),
    Float(Vec<f64>),
}

/// The dataframe `df` (`obs`, `var` or `raw/var`) when it is a compound dataset; `None` when the
/// file stores it the current way (a group).
pub(super) fn read_frame(name: &str, file: &File, df: &str) -> Result<Option<LegacyFrame>, ReadError> {
    let Ok(ds) = file.dataset(df) else {
        return Ok(None);
    };
    let damaged =
        |e: hdf5_pure::Error| ReadError::Damaged { file: name.to_string(), detail: format!("reading '{df}': {e}") };
    let Datatype::Compound { size, members } = ds.datatype().map_err(damaged)? else {
        return Err(ReadError::Unsupported {
            file: name.to_string(),
            what: format!("'{df}' is a dataset but not a structured (compound) one"),
            hint: "an .h5ad stores obs/var as groups (anndata ≥ 0.7) or compound datasets (older)".to_string(),
        });
    };
    let size = size as usize;
    if members.is_empty() || size == 0 {
        return Err(ReadError::malformed(name, format!("'{df}' is a compound dataset with no fields")));
    }
    super::h5ad::check_size(name, file, df, &ds)?;
    let raw = ds.read_raw().map_err(damaged)?;
    if raw.len() % size != 0 {
        return Err(ReadError::malformed(
            name,
            format!("'{df}' holds {} bytes, not a whole number of {size}-byte records", raw.len()),
        ));
    }
    let records: Vec<&[u8]> = raw.chunks_exact(size).collect();
    let mut columns = Vec::with_capacity(members.len());
    for m in &members {
        let field = format!("{df}.{}", m.name);
        let offset = m.byte_offset as usize;
        let width = m.datatype.type_size() as usize;
        if offset.checked_add(width).is_none_or(|end| end > size) {
            return Err(ReadError::malformed(name, format!("field '{field}' lies outside its {size}-byte record")));
        }
        let cells = records.iter().map(|r| &r[offset..offset + width]);
        let values = decode(name, &field, &m.datatype, cells)?;
        columns.push((m.name.clone(), values));
    }
    let mut columns = columns.into_iter();
    let index = match columns.next() {
        Some((_, Values::Text(v))) => v,
        Some((_, other)) => as_text(other),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (col, values) in columns {
        let categories = format!("uns/{col}_categories");
        let text = match (values, file.dataset(&categories)) {
            (Values::Int(codes), Ok(cats)) => {
                super::h5ad::check_size(name, file, &categories, &cats)?;
                let cats = cats.read_string().map_err(|e| ReadError::Damaged {
                    file: name.to_string(),
                    detail: format!("reading '{categories}': {e}"),
                })?;
                codes
                    .iter()
                    .map(|&c| match usize::try_from(c) {
                        Err(_) => Ok(String::new()), // -1: pandas' code for a missing value
                        Ok(i) => cats.get(i).cloned().ok_or_else(|| {
                            ReadError::malformed(
                                name,
                                format!(
                                    "column '{df}.{col}' has code {c} but '{categories}' has {} categories",
                                    cats.len()
                                ),
                            )
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            (values, _) => as_text(values),
        };
        out.push((col, text));
    }
    Ok(Some(LegacyFrame { index, columns: out }))
}

fn as_text(values: Values) -> Vec<String> {
    match values {
        Values::Text(v) => v,
        Values::Int(v) => v.iter().map(|x| x.to_string()).collect(),
        Values::Float(v) => v.iter().map(|x| x.to_string()).collect(),
    }
}

fn decode<'a>(
    name: &str,
    field: &str,
    dtype: &Datatype,
    cells: impl Iterator<Item = &'a [u8]>,
) -> Result<Values, ReadError> {
    let unsupported = || ReadError::Unsupported {
        file: name.to_string(),
        what: format!("field '{field}' has HDF5 type {dtype:?}"),
        hint: "Re-save the file with a current anndata: `ad.read_h5ad(old).write_h5ad(new)`".to_string(),
    };
    Ok(match dtype {
        Datatype::String { padding, .. } => Values::Text(
            cells
                .map(|b| {
                    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                    let s = String::from_utf8_lossy(&b[..end]);
                    if *padding == StringPadding::SpacePad {
                        s.trim_end_matches(' ').to_string()
                    } else {
                        s.into_owned()
                    }
                })
                .collect(),
        ),
        Datatype::FixedPoint { size: 1 | 2 | 4 | 8, byte_order, layout } => {
            let big = *byte_order == DatatypeByteOrder::BigEndian;
            Values::Int(cells.map(|b| int(b, big, layout.signed)).collect())
        }
        Datatype::Enumeration { base_type, .. } => match decode(name, field, base_type, cells)? {
            // h5py's booleans: an 8-bit enum FALSE/TRUE.
            Values::Int(v) => Values::Text(v.iter().map(|&x| (x != 0).to_string()).collect()),
            other => other,
        },
        Datatype::FloatingPoint { size: 4 | 8, byte_order, .. } => {
            let big = *byte_order == DatatypeByteOrder::BigEndian;
            Values::Float(
                cells
                    .map(|b| {
                        let mut a = [0u8; 8];
                        a[..b.len()].copy_from_slice(b);
                        if big {
                            a[..b.len()].reverse();
                        }
                        if b.len() == 4 {
                            f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64
                        } else {
                            f64::from_le_bytes(a)
                        }
                    })
                    .collect(),
            )
        }
        _ => return Err(unsupported()),
    })
}

/// A 1-, 2-, 4- or 8-byte integer as i64 (unsigned 64-bit values above i64::MAX wrap, as numpy's do).
fn int(b: &[u8], big: bool, signed: bool) -> i64 {
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    if big {
        a[..b.len()].reverse();
    }
    let negative = signed && b.len() < 8 && a[b.len() - 1] & 0x80 != 0;
    if negative {
        for x in a.iter_mut().skip(b.len()) {
            *x = 0xff;
        }
    }
    i64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::int;

    #[test]
    fn integers_of_every_width_and_order() {
        assert_eq!(int(&[0xff], false, true), -1);
        assert_eq!(int(&[0xff], false, false), 255);
        assert_eq!(int(&[0x01, 0x00], true, true), 256);
        assert_eq!(int(&[0xfe, 0xff, 0xff, 0xff], false, true), -2);
    }
}
