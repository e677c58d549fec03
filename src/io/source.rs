//! Where a file's bytes come from: a path on disk, or any random-access source (a browser `File`, a
//! buffer). An analysis keeps the source, never a copy of the bytes, so it can go back for one more
//! obs column without decoding the matrix again.

use std::io::Read;
use std::sync::Arc;

/// The random-access trait sources implement (a face's own source, e.g. the browser's `File`).
pub use hdf5_pure::{FormatError, Source};

/// An opened file's origin.
#[derive(Clone)]
pub enum FileSource {
    #[cfg(not(target_arch = "wasm32"))]
    Path(std::path::PathBuf),
    RandomAccess(SharedSource),
}

impl FileSource {
    /// A buffer already in memory (tests, files fetched whole).
    pub fn bytes(bytes: Vec<u8>) -> FileSource {
        FileSource::RandomAccess(SharedSource::new(MemorySource(bytes)))
    }

    /// The first bytes, to tell HDF5 from text.
    pub(crate) fn head(&self, file: &str) -> Result<Vec<u8>, super::ReadError> {
        let io = |source| super::ReadError::Io { file: file.to_string(), source };
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            FileSource::Path(path) => {
                let mut head = [0u8; 8];
                let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(io)?;
                Ok(head[..n].to_vec())
            }
            FileSource::RandomAccess(s) => {
                let mut head = vec![0u8; s.len().min(8) as usize];
                s.read_at(0, &mut head).map_err(|e| io(std::io::Error::other(e.to_string())))?;
                Ok(head)
            }
        }
    }
}

/// A random-access source that clones cheaply (the reader and the analysis share it).
#[derive(Clone)]
pub struct SharedSource(Arc<dyn Source + Send + Sync>);

impl SharedSource {
    pub fn new(source: impl Source + Send + Sync + 'static) -> SharedSource {
        SharedSource(Arc::new(source))
    }

    /// A source whose every read is costly (a browser `File`: one slice and one read per call),
    /// behind a small block cache: HDF5 metadata and compressed chunks arrive in thousands of
    /// small reads, which this turns into a few large ones.
    pub fn cached(source: impl Source + Send + Sync + 'static) -> SharedSource {
        SharedSource::new(BlockCache { source, blocks: std::sync::Mutex::new(Vec::new()) })
    }
}

/// Bytes per cached block, and blocks kept (at most 32 MiB, whatever the file's size).
const BLOCK: u64 = 1 << 20;
const BLOCKS_KEPT: usize = 32;

struct BlockCache<S> {
    source: S,
    /// Most recently used last: (block number, its bytes).
    blocks: std::sync::Mutex<Vec<(u64, Vec<u8>)>>,
}

impl<S: Source> Source for BlockCache<S> {
    fn len(&self) -> u64 {
        self.source.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        // Large reads (matrix data) go straight through; they would only evict the metadata.
        if buf.len() as u64 >= BLOCK {
            return self.source.read_at(offset, buf);
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let number = at / BLOCK;
            let k = match blocks.iter().position(|(n, _)| *n == number) {
                Some(k) => k,
                None => {
                    let start = number * BLOCK;
                    let mut bytes = vec![0u8; (self.source.len().saturating_sub(start)).min(BLOCK) as usize];
                    self.source.read_at(start, &mut bytes)?;
                    if blocks.len() == BLOCKS_KEPT {
                        blocks.remove(0);
                    }
                    blocks.push((number, bytes));
                    blocks.len() - 1
                }
            };
            let block = blocks.remove(k);
            let from = (at - block.0 * BLOCK) as usize;
            let take = (buf.len() - done).min(block.1.len().saturating_sub(from));
            if take == 0 {
                return Err(FormatError::UnexpectedEof { expected: buf.len(), available: done });
            }
            buf[done..done + take].copy_from_slice(&block.1[from..from + take]);
            done += take;
            blocks.push(block);
        }
        Ok(())
    }
}

impl Source for SharedSource {
    fn len(&self) -> u64 {
        self.0.len()
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        self.0.read_at(offset, buf)
    }
}

/// A buffer as a source.
pub struct MemorySource(pub Vec<u8>);

impl Source for MemorySource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), FormatError> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start.checked_add(buf.len()).and_then(|end| self.0.get(start..end));
        let bytes = bytes
            .ok_or(FormatError::UnexpectedEof { expected: start.saturating_add(buf.len()), available: self.0.len() })?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// Streams a random-access source from the start (the CSV reader takes a `Read`).
pub(crate) struct SequentialReader {
    source: SharedSource,
    position: u64,
}

impl SequentialReader {
    pub(crate) fn new(source: SharedSource) -> SequentialReader {
        SequentialReader { source, position: 0 }
    }
}

impl Read for SequentialReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.source.len().saturating_sub(self.position)).min(buf.len() as u64) as usize;
        if n > 0 {
            self.source.read_at(self.position, &mut buf[..n]).map_err(|e| std::io::Error::other(e.to_string()))?;
            self.position += n as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_cache_reads_what_the_source_holds() {
        let bytes: Vec<u8> = (0..(3 * BLOCK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let cached = SharedSource::cached(MemorySource(bytes.clone()));
        for (offset, len) in
            [(0u64, 10usize), (BLOCK - 3, 7), (2 * BLOCK + 5, 100), (3 * BLOCK, 12345), (5, 2 * BLOCK as usize)]
        {
            let mut buf = vec![0u8; len];
            cached.read_at(offset, &mut buf).unwrap();
            assert_eq!(buf, &bytes[offset as usize..offset as usize + len], "at {offset}, {len} bytes");
        }
        let mut past = vec![0u8; 10];
        assert!(cached.read_at(3 * BLOCK + 12340, &mut past).is_err(), "reading past the end fails");
    }
}
