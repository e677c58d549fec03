//! A fast path for the big 1-D arrays of a sparse matrix (`data`, `indices`): when a dataset is
//! stored unfiltered (contiguous, or in plain chunks, as anndata writes them), its bytes are read
//! straight from the file in large windows and decoded into the output, one pass and one copy.
//! Anything else (compression, big-endian, missing chunks) returns `None` and the caller falls back
//! to `hdf5-pure`'s general reader.

use hdf5_pure::{Dataset, Datatype, DatatypeByteOrder, File, Layout, Source};

use super::source::SharedSource;

/// Where the file's bytes can be read from directly.
pub enum RawSource {
    #[cfg(not(target_arch = "wasm32"))]
    Path(std::path::PathBuf),
    /// The file is in memory (`File::from_bytes`): slices of `File::as_bytes`.
    InMemory,
    /// Any random-access source (a browser `File`), read in windows.
    Shared(SharedSource),
}

/// Bytes per read from a random-access source (a browser `File` slice).
const WINDOW: usize = 8 << 20;

#[derive(Clone, Copy)]
enum Elem {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl Elem {
    fn of(dt: &Datatype) -> Option<Elem> {
        match dt {
            Datatype::FloatingPoint { size, byte_order: DatatypeByteOrder::LittleEndian, .. } => match size {
                4 => Some(Elem::F32),
                8 => Some(Elem::F64),
                _ => None,
            },
            Datatype::FixedPoint { size, byte_order: DatatypeByteOrder::LittleEndian, layout } => {
                let signed = layout.signed;
                match (size, signed) {
                    (1, true) => Some(Elem::I8),
                    (2, true) => Some(Elem::I16),
                    (4, true) => Some(Elem::I32),
                    (8, true) => Some(Elem::I64),
                    (1, false) => Some(Elem::U8),
                    (2, false) => Some(Elem::U16),
                    (4, false) => Some(Elem::U32),
                    (8, false) => Some(Elem::U64),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Elem::I8 | Elem::U8 => 1,
            Elem::I16 | Elem::U16 => 2,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F64 | Elem::I64 | Elem::U64 => 8,
        }
    }

    /// Decodes little-endian bytes into f64 first only for the narrow/wide cases; the common
    /// f32 → f32 and i32 → u32 cases decode directly.
    fn decode_f32(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Elem::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            _ => out.extend(bytes.chunks_exact(self.size()).map(|b| self.as_f64(b) as f32)),
        }
    }

    fn decode_u32(self, bytes: &[u8], out: &mut Vec<u32>) {
        match self {
            // Negative indices become huge values, which the caller's range check rejects.
            Elem::I32 | Elem::U32 => {
                out.extend(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            _ => out.extend(bytes.chunks_exact(self.size()).map(|b| {
                let v = self.as_f64(b);
                if v < 0.0 || v > u32::MAX as f64 { u32::MAX } else { v as u32 }
            })),
        }
    }

    fn as_f64(self, b: &[u8]) -> f64 {
        match self {
            Elem::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Elem::F64 => f64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
            Elem::I8 => b[0] as i8 as f64,
            Elem::U8 => b[0] as f64,
            Elem::I16 => i16::from_le_bytes([b[0], b[1]]) as f64,
            Elem::U16 => u16::from_le_bytes([b[0], b[1]]) as f64,
            Elem::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Elem::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Elem::I64 => i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64,
            Elem::U64 => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64,
        }
    }
}

/// One stored piece of a 1-D dataset: (first element, file address, element count).
type Piece = (u64, u64, u64);

/// Every stored piece, in order, covering the whole dataset; `None` when the bytes cannot be
/// taken as they are.
fn extents(ds: &Dataset, n: u64) -> Option<Vec<Piece>> {
    if !ds.filters().is_empty() {
        return None;
    }
    match ds.layout().ok()? {
        Layout::Contiguous { address: Some(a), .. } => Some(vec![(0, a, n)]),
        Layout::Chunked { chunk_shape, .. } if chunk_shape.len() == 1 => {
            let len = chunk_shape[0];
            let mut pieces: Vec<Piece> = ds
                .chunks()
                .ok()?
                .into_iter()
                .map(|c| (c.offset[0], c.address, len.min(n.saturating_sub(c.offset[0]))))
                .collect();
            pieces.sort_unstable();
            let mut next = 0;
            for p in &pieces {
                if p.0 != next {
                    return None; // a missing chunk holds fill values: let the library handle it
                }
                next += p.2;
            }
            (next == n).then_some(pieces)
        }
        _ => None,
    }
}

/// Reads pieces whose stored bytes already are the output's in-memory form (little-endian f32 or
/// 32-bit integers on a little-endian machine) straight into the output: no second pass.
fn read_in_place<T: bytemuck::Pod>(file: &File, source: &RawSource, pieces: &[Piece], n: u64) -> Option<Vec<T>> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // Zeroed allocation maps fresh pages lazily (no memset pass over gigabytes).
    let mut out: Vec<T> = bytemuck::zeroed_vec(n as usize);
    let size = std::mem::size_of::<T>();
    for &(first, address, count) in pieces {
        let dst: &mut [u8] = bytemuck::cast_slice_mut(&mut out[first as usize..(first + count) as usize]);
        match source {
            #[cfg(not(target_arch = "wasm32"))]
            RawSource::Path(path) => read_file_parallel(path, address, dst)?,
            RawSource::InMemory => {
                let start = address as usize;
                dst.copy_from_slice(file.as_bytes().get(start..start + count as usize * size)?);
            }
            RawSource::Shared(s) => {
                for (k, window) in dst.chunks_mut(WINDOW).enumerate() {
                    s.read_at(address + (k * WINDOW) as u64, window).ok()?;
                }
            }
        }
    }
    Some(out)
}

/// Fills `dst` from the file at `address`, split over the cores: the cost of a big read is mostly
/// faulting in fresh pages, which parallelises.
#[cfg(not(target_arch = "wasm32"))]
fn read_file_parallel(path: &std::path::Path, address: u64, dst: &mut [u8]) -> Option<()> {
    use std::io::{Read, Seek, SeekFrom};
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    let part = dst.len().div_ceil(threads).max(64 << 20);
    std::thread::scope(|scope| {
        let handles: Vec<_> = dst
            .chunks_mut(part)
            .enumerate()
            .map(|(k, chunk)| {
                scope.spawn(move || -> Option<()> {
                    let mut f = std::fs::File::open(path).ok()?;
                    f.seek(SeekFrom::Start(address + (k * part) as u64)).ok()?;
                    f.read_exact(chunk).ok()
                })
            })
            .collect();
        handles.into_iter().all(|h| h.join().ok().flatten().is_some()).then_some(())
    })
}

fn read_pieces<T>(
    file: &File,
    source: &RawSource,
    ds: &Dataset,
    decode: impl Fn(Elem, &[u8], &mut Vec<T>),
) -> Option<Vec<T>> {
    let (n, elem, pieces) = describe(ds)?;
    let mut out = Vec::new();
    out.try_reserve_exact(n as usize).ok()?;
    match source {
        #[cfg(not(target_arch = "wasm32"))]
        RawSource::Path(path) => {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = std::fs::File::open(path).ok()?;
            let window_elems = (8 << 20) / elem.size();
            let mut buf = vec![0u8; window_elems * elem.size()];
            for (_, address, count) in pieces {
                f.seek(SeekFrom::Start(address)).ok()?;
                let mut left = count as usize;
                while left > 0 {
                    let take = left.min(window_elems);
                    let bytes = &mut buf[..take * elem.size()];
                    f.read_exact(bytes).ok()?;
                    decode(elem, bytes, &mut out);
                    left -= take;
                }
            }
        }
        RawSource::Shared(s) => {
            let window_elems = WINDOW / elem.size();
            let mut buf = vec![0u8; window_elems * elem.size()];
            for (_, address, count) in pieces {
                let (mut at, mut left) = (address, count as usize);
                while left > 0 {
                    let take = left.min(window_elems);
                    let bytes = &mut buf[..take * elem.size()];
                    s.read_at(at, bytes).ok()?;
                    decode(elem, bytes, &mut out);
                    (at, left) = (at + bytes.len() as u64, left - take);
                }
            }
        }
        RawSource::InMemory => {
            let all = file.as_bytes();
            for (_, address, count) in pieces {
                let start = address as usize;
                let bytes = all.get(start..start + count as usize * elem.size())?;
                decode(elem, bytes, &mut out);
            }
        }
    }
    (out.len() == n as usize).then_some(out)
}

/// Element count, stored type and pieces of a 1-D dataset that can be read directly.
fn describe(ds: &Dataset) -> Option<(u64, Elem, Vec<Piece>)> {
    let shape = ds.shape().ok()?;
    if shape.len() != 1 {
        return None;
    }
    let elem = Elem::of(&ds.datatype().ok()?)?;
    Some((shape[0], elem, extents(ds, shape[0])?))
}

pub fn read_f32(file: &File, source: &RawSource, ds: &Dataset) -> Option<Vec<f32>> {
    if let Some((n, Elem::F32, pieces)) = describe(ds) {
        return read_in_place(file, source, &pieces, n);
    }
    read_pieces(file, source, ds, |e, b, out| e.decode_f32(b, out))
}

pub fn read_u32(file: &File, source: &RawSource, ds: &Dataset) -> Option<Vec<u32>> {
    // i32 indices are taken bit for bit; a negative one becomes a huge value the range check rejects.
    if let Some((n, Elem::I32 | Elem::U32, pieces)) = describe(ds) {
        return read_in_place(file, source, &pieces, n);
    }
    read_pieces(file, source, ds, |e, b, out| e.decode_u32(b, out))
}
