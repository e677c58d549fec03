//! A chunk of cells as a self-contained job, so that helpers (the page's other Web Workers, each
//! with its own WebAssembly instance and the same model) share the work: the open file makes the
//! jobs (`Analysis::cell_job`), anyone holding the model runs them (`Analysis::run_job`: the
//! network, each cell's answer distribution, its top answers, and its share of the accuracy and of
//! the pseudobulks), and the file takes the results back (`Analysis::accept`). The CLI and a single
//! worker take the same path, so each cell is scored once however the work is split.

use serde::{Deserialize, Serialize};

use super::{Analysis, AnalysisError};
use crate::metrics::Tally;
use crate::model::additive::HeadTerms;
use crate::model::sets::Combination;
use crate::reference::Reference;

/// What a job needs of the open file besides its rows: the reference its genes are measured
/// against and the head's terms. `version` changes whenever they do, so that results of an older
/// reference are refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobContext {
    pub version: u64,
    pub reference: Reference,
    pub head: Option<HeadTerms>,
}

/// Cells [start, start + rows) of the open file. Per-cell fields travel as flat arrays of numbers
/// (raw bytes between workers: decoding thousands of small JS arrays cost the page's analysis worker
/// a quarter of a core).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellJob {
    /// The `JobContext::version` the job was made under, and the grouping's.
    pub context: u64,
    pub grouping: u64,
    pub start: usize,
    pub rows: usize,
    /// Top answers to return per cell.
    pub top: usize,
    /// The cells' normalised values over the panel, row-major.
    #[serde(with = "raw")]
    pub input: Vec<f32>,
    /// Per cell when the file has labels (else empty), two numbers: its true answer's candidate
    /// indices (-1 for none: control is [-1, -1], a single [a, -1]), or [-2, -2] for a label the
    /// model cannot name (counted as outside the model).
    #[serde(with = "raw")]
    pub truths: Vec<i32>,
    /// Per cell: its group of the current pseudobulk grouping besides "all cells" (group 0), or
    /// `NO_GROUP`.
    #[serde(with = "raw")]
    pub groups: Vec<u32>,
    /// The runner keeps the chunk's group sums (`HeldGroups`: a helper adds them up over its jobs
    /// and hands them over once) instead of returning them with each chunk.
    #[serde(default)]
    pub hold_groups: bool,
}

pub const NO_GROUP: u32 = u32::MAX;

/// A truth as `CellJob::truths` writes it.
pub fn encode_truth(truth: Option<&[usize]>) -> [i32; 2] {
    match truth {
        None => [-2, -2],
        Some(genes) => [0, 1].map(|k| genes.get(k).map_or(-1, |&g| g as i32)),
    }
}

/// The candidate indices of an encoded truth; None: outside the model.
pub fn decode_truth(code: [i32; 2]) -> Option<Vec<usize>> {
    if code[0] == -2 {
        return None;
    }
    Some(code.iter().filter(|&&g| g >= 0).map(|&g| g as usize).collect())
}

/// What running a job gives back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoredChunk {
    pub context: u64,
    pub grouping: u64,
    pub start: usize,
    pub rows: usize,
    /// Per cell: the network's gene logits then its three count logits.
    #[serde(with = "raw")]
    pub outputs: Vec<f32>,
    /// Per cell, its `top` best answers as codes (`predict::top_codes`) and probabilities.
    pub top: usize,
    #[serde(with = "raw")]
    pub top_codes: Vec<u32>,
    #[serde(with = "raw")]
    pub top_probabilities: Vec<f64>,
    /// The labelled cells' accuracy (None without labels), and those the model cannot name.
    pub tally: Option<Tally>,
    pub outside: usize,
    /// The combined answers of each group the chunk's cells belong to (empty when held).
    pub groups: Vec<(u32, Combination)>,
    /// The group sums stayed with the runner (`CellJob::hold_groups`).
    #[serde(default)]
    pub groups_held: bool,
}

/// Group sums a helper keeps over the jobs it runs: a chunk's sums for 238 groups are 10 MB, which
/// sent with every chunk made the analysis worker the bottleneck of a large file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeldGroups {
    pub context: u64,
    pub grouping: u64,
    /// Cells whose sums these are.
    pub cells: usize,
    pub groups: Vec<(u32, Combination)>,
}

impl HeldGroups {
    /// Keeps a chunk's group sums when its job asked for that (sums of another reference or
    /// grouping than those held are dropped: their chunks no longer count).
    pub fn hold(&mut self, job: &CellJob, chunk: &mut ScoredChunk) {
        if !job.hold_groups {
            return;
        }
        if (self.context, self.grouping) != (chunk.context, chunk.grouping) {
            *self = HeldGroups { context: chunk.context, grouping: chunk.grouping, ..Default::default() };
        }
        add_group_sums(&mut self.groups, std::mem::take(&mut chunk.groups));
        self.cells += chunk.rows;
        chunk.groups_held = true;
    }
}

/// Adds group sums into a list kept sorted by group (sums of one model: their sizes agree).
pub fn add_group_sums(into: &mut Vec<(u32, Combination)>, from: Vec<(u32, Combination)>) {
    for (group, sum) in from {
        match into.binary_search_by_key(&group, |g| g.0) {
            // Same model, same sizes: merging cannot fail here.
            Ok(k) => into[k].1.merge(&sum).unwrap_or(()),
            Err(k) => into.insert(k, (group, sum)),
        }
    }
}

/// What a helper worker keeps between jobs: the open file's context and the group sums it holds.
#[derive(Default)]
pub struct Helper {
    context: Option<JobContext>,
    held: HeldGroups,
}

impl Helper {
    pub fn set_context(&mut self, context: JobContext) {
        self.context = Some(context);
    }

    /// Runs a job with `analysis`'s model under the context the job was made with, keeping its
    /// group sums when it asks (`CellJob::hold_groups`).
    pub async fn run(&mut self, analysis: &Analysis, job: &CellJob) -> Result<ScoredChunk, AnalysisError> {
        let context = self.context.as_ref().filter(|c| c.version == job.context).ok_or(AnalysisError::NoJobContext)?;
        let mut chunk = analysis.run_job_async(&context.reference, context.head.as_ref(), job).await?;
        self.held.hold(job, &mut chunk);
        Ok(chunk)
    }

    /// The group sums held so far, handed over once.
    pub fn take_groups(&mut self) -> HeldGroups {
        std::mem::take(&mut self.held)
    }
}

/// Arrays of numbers as raw little-endian bytes: a `Uint8Array` through `serde-wasm-bindgen`, which
/// a worker message copies in one piece (a JS array of numbers would be a million boxed values).
pub mod raw {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<T: bytemuck::Pod, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytemuck::cast_slice(v))
    }

    pub fn deserialize<'de, T: bytemuck::Pod, D: Deserializer<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        let bytes = d.deserialize_byte_buf(Bytes)?;
        let size = std::mem::size_of::<T>();
        if bytes.len() % size != 0 {
            return Err(D::Error::custom(format!(
                "{} bytes are not a whole number of {size}-byte values",
                bytes.len()
            )));
        }
        Ok(bytes.chunks_exact(size).map(bytemuck::pod_read_unaligned).collect())
    }
}
