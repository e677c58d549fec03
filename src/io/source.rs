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
