//! One opened file analysed with one model: the single pipeline behind the CLI (`predict`, `eval`)
//! and the page. It owns the decoded data (decoded once per file; no copy of the file's bytes), the
//! input matched to the model's panel, and the network's outputs so far, and it offers per-cell and
//! pseudobulk predictions, attention, accuracy against the labels and the export layouts.
//!
//! Running the network is the one step that differs between faces (synchronous natively,
//! asynchronous with WebGPU in the browser), so each step that runs it comes as a pair
//! (`predict_cells` / `predict_cells_async`, ...) around the same input and ranking code.

use burn::tensor::Device;
use serde::Serialize;

use crate::export::{ExportFormat, PredictionReport};
use crate::inspect::{self, Summary};
use crate::io::{self, ExpressionData, FileSource, LabelColumn, ReadError, ReadOptions};
use crate::labels::Perturbation;
use crate::metrics::{self, Scores, Tally};
use crate::model::additive::HeadTerms;
use crate::model::sets::{self, SetScores};
use crate::model_folder::ModelFiles;
use crate::predict::{MatchReport, PredictError, Predictor, Prepared, Ranked, answer_name, top_codes, top_k};
use crate::reference::{Batches, Reference, ReferenceCells};

mod cell_table;
pub mod jobs;
mod views;
pub use cell_table::{CellOrder, CellQuery, CellTable};
pub use jobs::{CellJob, HeldGroups, Helper, JobContext, ScoredChunk};
use jobs::{NO_GROUP, decode_truth, encode_truth};
pub use views::{Attention, Confusion, GeneWeight, LabelCheck, Selection, View, ViewRequest, Why};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{file}: {source}")]
    Predict { file: String, source: PredictError },
    #[error("the model: {0}")]
    Model(PredictError),
    #[error("{0}")]
    Labels(String),
    #[error("no file is open")]
    NoFile,
    #[error("no group '{0}' in the current grouping")]
    NoGroup(String),
    #[error("'{0}' is not a candidate gene of this model (nor 'control')")]
    NotACandidate(String),
    #[error("choose a cell or a group")]
    NoSelection,
    #[error("the file has no perturbation label column")]
    NoLabels,
    #[error("cell {0} has not been predicted yet")]
    NotPredicted(usize),
    #[error("cell {index} is out of range (the file has {cells} cells)")]
    NoCell { index: usize, cells: usize },
    #[error(
        "obs column '{column}' has {groups} distinct values; a pseudobulk pools the cells that share a value, so choose a column with at most {MAX_GROUPS} (a condition, guide, cluster or batch)"
    )]
    TooManyGroups { column: String, groups: usize },
    #[error("a scored chunk does not fit the open file: {0}")]
    BadChunk(String),
    #[error("this job's file reference has not reached this worker")]
    NoJobContext,
}

/// Groups a pseudobulk column may have: each keeps a running table of 5,566 answers.
pub const MAX_GROUPS: usize = 5_000;

/// One cell's answers; `label` is the file's label for it in canonical form (`A+B`), if any.
#[derive(Clone, Debug, Serialize)]
pub struct CellPrediction {
    pub index: usize,
    pub cell: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub top: Vec<Ranked>,
}

/// One pseudobulk group's answers; grouped by the label column, `label` is the group's canonical label.
#[derive(Clone, Debug, Serialize)]
pub struct GroupPrediction {
    pub group: String,
    pub cells: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub top: Vec<Ranked>,
}

/// Pseudobulk of every group of one obs column (and of all cells), with accuracy when the column
/// holds the labels. A group's answer combines its cells (`sets::Combination`): their posteriors,
/// or, where the card has a group model, the head's likelihood of their mean levels (as a mixture
/// of responders and failed guides) next to their network terms. Running the network on an
/// averaged profile instead blurs a mixed group into a profile no cell has (0.15 against 0.92 on
/// held-out pairs).
#[derive(Clone, Debug, Serialize)]
pub struct Pseudobulk {
    pub column: Option<String>,
    pub groups: Vec<GroupPrediction>,
    pub accuracy: Option<Scores>,
}

/// Accuracy of the predicted cells against the file's labels.
#[derive(Clone, Debug, Serialize)]
pub struct CellAccuracy {
    pub scores: Scores,
    /// Labelled cells whose genes the model cannot name: left out of `scores`.
    pub outside_the_model: usize,
}

/// What the page shows about an input file: the `inspect` summary and the match to the panel.
#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    pub summary: Summary,
    pub genes: MatchReport,
    pub cells: usize,
    /// What pseudobulks can be grouped by: the file's obs columns, then `PREDICTED_ANSWER`.
    pub group_columns: Vec<String>,
    /// What `set_reference` accepts: the label column's values that name control cells (`ctrl`,
    /// `non-targeting`, ...), and the obs columns that can be batches (all but the label column).
    pub control_labels: Vec<String>,
    pub batch_columns: Vec<String>,
}

/// The grouping by each cell's top answer, offered beside the file's obs columns.
pub const PREDICTED_ANSWER: &str = "predicted answer";

/// The network input of one step.
struct Pending {
    input: Vec<f32>,
    rows: usize,
}

/// A cell's top answers as (code, probability): `predict::top_codes`.
type RankedCodes = Vec<(usize, f64)>;

/// Cells scored per block: one matrix product for the head's evidence of the block.
const SCORE_BLOCK: usize = 256;

/// A number never handed out before in this process: versions of references and groupings, unique
/// across files too, so that a job of a file closed meanwhile can never join its successor.
fn next_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub struct Analysis {
    model: ModelFiles,
    predictor: Predictor,
    file: Option<OpenFile>,
}

struct OpenFile {
    name: String,
    source: FileSource,
    /// How the file was read (for reading it again for another model's panel).
    options: ReadOptions,
    data: ExpressionData,
    report: InputReport,
    prepared: Prepared,
    /// Canonical label of each cell, when the file has a label column.
    labels: Option<Vec<Perturbation>>,
    /// The cells the file's reference comes from (`set_reference`; default: all cells).
    reference: ReferenceCells,
    /// Rows of the network's output (gene logits then count logits) per cell, once computed.
    outputs: Vec<Option<Box<[f32]>>>,
    /// Each predicted cell's top answers (codes, `predict::top_codes`) as ranked when it was
    /// predicted, with how many were asked.
    tops: Vec<Option<(usize, RankedCodes)>>,
    /// Accuracy and pseudobulks summed as cells are predicted, so that neither needs another pass.
    running: Running,
    /// Changes with the reference (jobs made under an older one are refused).
    context_version: u64,
    /// The current pseudobulk grouping: its column (None: all cells only) and groups.
    grouping: Grouping,
    /// The predicted cells and the answer distribution of each group of `grouping`, once computed.
    group_scores: Option<Vec<(Vec<usize>, SetScores)>>,
}

#[derive(Default)]
struct Grouping {
    column: Option<String>,
    by_labels: bool,
    groups: Vec<(String, Vec<usize>)>,
    /// Per cell: its group besides "all cells" (group 0), if any.
    of_cell: Vec<Option<u32>>,
    /// Changes with every regrouping (sums made for another grouping are not merged).
    version: u64,
}

/// Accuracy and group sums over the cells predicted so far, each cell counted once.
struct Running {
    counted: Vec<bool>,
    n_counted: usize,
    tally: Tally,
    outside: usize,
    /// One per group of the grouping `grouping` (version).
    groups: Vec<sets::Combination>,
    /// How the groups pool their cells (the model's).
    pooling: sets::Pooling,
    grouping: u64,
    /// Counted cells whose group sums a helper still holds (`accept_groups`).
    held_cells: usize,
    /// False once a cell came back twice or from another grouping: then the figures are recomputed
    /// from the stored outputs.
    tally_valid: bool,
    groups_valid: bool,
}

impl Running {
    /// Adds group sums of the current grouping (one that does not fit voids the sums).
    fn add_groups(&mut self, sums: &[(u32, sets::Combination)]) {
        for (group, sum) in sums {
            if !matches!(self.groups.get_mut(*group as usize).map(|g| g.merge(sum)), Some(Ok(()))) {
                self.groups_valid = false;
            }
        }
    }

    /// Whether the running figures hold for exactly the cells predicted so far.
    fn covers(&self, outputs: &[Option<Box<[f32]>>]) -> bool {
        self.n_counted == outputs.iter().filter(|o| o.is_some()).count()
    }

    fn new(cells: usize, grouping: &Grouping, candidates: usize, pooling: sets::Pooling) -> Running {
        Running {
            counted: vec![false; cells],
            n_counted: 0,
            tally: Tally::default(),
            outside: 0,
            groups: vec![sets::Combination::new(candidates, pooling); grouping.groups.len()],
            pooling,
            grouping: grouping.version,
            held_cells: 0,
            tally_valid: true,
            groups_valid: true,
        }
    }
}

impl Analysis {
    pub fn new(model: ModelFiles, device: &Device) -> Result<Analysis, AnalysisError> {
        let predictor = model.predictor(device).map_err(AnalysisError::Model)?;
        Ok(Analysis { model, predictor, file: None })
    }

    /// A model for a session that may not have an analysis yet (the page's): a new one, or the
    /// model replaced in the one there (`set_model`, its open file kept).
    pub fn load_into<'a>(
        slot: &'a mut Option<Analysis>,
        model: ModelFiles,
        device: &Device,
    ) -> Result<&'a mut Analysis, AnalysisError> {
        match slot {
            Some(a) => {
                a.set_model(model)?;
                Ok(a)
            }
            None => Ok(slot.insert(Analysis::new(model, device)?)),
        }
    }

    pub fn predictor(&self) -> &Predictor {
        &self.predictor
    }

    /// Another model: the open file is matched to its panel again and its outputs dropped. Only the
    /// old panel's genes were read, so the file's matrix is read again for the new one.
    pub fn set_model(&mut self, model: ModelFiles) -> Result<(), AnalysisError> {
        let predictor = model.predictor(self.predictor.device()).map_err(AnalysisError::Model)?;
        let old = std::mem::replace(&mut self.predictor, predictor);
        let reread = match &self.file {
            Some(f) => io::read_source(&f.name, &f.source, &self.panel_options(&f.options)).map(Some),
            None => Ok(None),
        };
        let prepared = match (&self.file, reread) {
            (Some(f), Ok(Some(data))) => self
                .predictor
                .prepare_with(&data, &f.reference)
                .map(|p| Some((data, p)))
                .map_err(|e| predict_error(&f.name, e)),
            (_, Err(e)) => Err(e.into()),
            _ => Ok(None),
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.predictor = old; // the file stays matched to the model it was read for
                return Err(e);
            }
        };
        self.model = model;
        let (candidates, pooling) = (self.predictor.card.net.n_candidates, self.pooling());
        if let (Some(f), Some((data, p))) = (&mut self.file, prepared) {
            (f.data, f.prepared) = (without_matrix(data), p);
            f.clear_outputs(candidates, pooling);
        }
        Ok(())
    }

    /// The open file's matrix, read again: it is dropped once the file is prepared, since for a
    /// large file it would be most of the page's memory.
    fn read_matrix_again(&self, f: &OpenFile) -> Result<ExpressionData, AnalysisError> {
        Ok(io::read_source(&f.name, &f.source, &self.panel_options(&f.options))?)
    }

    /// Read options for this model: only its panel's genes are read (so a file larger than memory
    /// opens), and their names help tell a CSV's gene axis from its cells.
    fn panel_options(&self, options: &ReadOptions) -> ReadOptions {
        let panel = self.predictor.card.panel.iter();
        let names: Vec<String> =
            panel.flat_map(|g| std::iter::once(g.symbol.clone()).chain(g.gene_id.clone())).collect();
        let mut options = options.clone();
        if options.known_genes.is_empty() {
            options.known_genes = names.clone();
        }
        if options.only_genes.is_empty() {
            options.only_genes = names;
        }
        options
    }

    /// The same model on another device (the page's CPU / WebGPU switch); outputs are dropped.
    pub fn set_device(&mut self, device: &Device) -> Result<(), AnalysisError> {
        self.predictor = self.model.predictor(device).map_err(AnalysisError::Model)?;
        let (candidates, pooling) = (self.predictor.card.net.n_candidates, self.pooling());
        if let Some(f) = &mut self.file {
            f.clear_outputs(candidates, pooling);
        }
        Ok(())
    }

    /// Opens a file: reads it (the matrix is decoded here, once), summarises it and matches it to the
    /// model's panel. A file that fails leaves no file open, so nothing of an earlier file lingers.
    pub fn open(
        &mut self,
        name: &str,
        source: FileSource,
        options: &ReadOptions,
    ) -> Result<&InputReport, AnalysisError> {
        self.file = None;
        let data = io::read_source(name, &source, &self.panel_options(options))?;
        let summary = inspect::summarize_with(name, &data, None).map_err(AnalysisError::Labels)?;
        let labels = match &data.labels {
            Some(col) => Some(crate::labels::parse_column(&col.values).map_err(|(i, e)| {
                AnalysisError::Labels(format!("{name}: obs column '{}', cell {}: {e}", col.name, data.cells[i]))
            })?),
            None => None,
        };
        let prepared = self.predictor.prepare(&data).map_err(|e| predict_error(name, e))?;
        let n = prepared.cells.len();
        let mut control_labels: Vec<String> = match (&data.labels, &labels) {
            (Some(column), Some(parsed)) => column
                .values
                .iter()
                .zip(parsed)
                .filter(|(_, p)| p.is_control())
                .map(|(v, _)| v.trim().to_string())
                .collect(),
            _ => Vec::new(),
        };
        control_labels.sort();
        control_labels.dedup();
        let label_column = data.labels.as_ref().map(|l| l.name.as_str());
        let batch_columns = summary.obs_columns.iter().filter(|c| Some(c.as_str()) != label_column).cloned().collect();
        let mut file = OpenFile {
            name: name.to_string(),
            source,
            options: options.clone(),
            report: InputReport {
                group_columns: summary.obs_columns.iter().cloned().chain([PREDICTED_ANSWER.to_string()]).collect(),
                control_labels,
                batch_columns,
                summary,
                genes: prepared.report.clone(),
                cells: n,
            },
            data: without_matrix(data),
            prepared,
            labels,
            reference: ReferenceCells::default(),
            outputs: vec![None; n],
            tops: vec![None; n],
            running: Running::new(0, &Grouping::default(), 0, sets::Pooling::responding([1.0; 3])),
            context_version: 0,
            grouping: Grouping::default(),
            group_scores: None,
        };
        let label_column = file.data.labels.as_ref().map(|l| l.name.clone());
        file.grouping = file.grouping_by(label_column.as_deref(), None, next_version())?;
        file.clear_outputs(self.predictor.card.net.n_candidates, self.pooling());
        Ok(&self.file.insert(file).report)
    }

    /// What the open file's genes are measured against: its cells labelled `control` (a raw value
    /// of the label column, e.g. `ctrl` or `non-targeting`) instead of all its cells, and each
    /// batch of `batch_column` (gem group, lane) against its own cells. The file is matched to the
    /// model again (not re-read) and its outputs dropped. A label no cell carries, a batch column
    /// that is the label column, or a file without labels gets a clear error and changes nothing.
    pub fn set_reference(
        &mut self,
        control: Option<&str>,
        batch_column: Option<&str>,
    ) -> Result<&InputReport, AnalysisError> {
        let f = self.open_file()?;
        let n = f.prepared.cells.len();
        let control = match control.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(label) => {
                let column = f.data.labels.as_ref().ok_or(AnalysisError::NoLabels)?;
                let is_control: Vec<bool> = column.values.iter().map(|v| v.trim() == label).collect();
                if !is_control.contains(&true) {
                    return Err(AnalysisError::Labels(format!(
                        "{}: no cell of obs column '{}' is labelled '{label}' (its most common labels: {})",
                        f.name,
                        column.name,
                        most_common(&column.values, 5).join(", ")
                    )));
                }
                Some((is_control, label.to_string()))
            }
        };
        let batches = match batch_column.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(c) if f.data.labels.as_ref().is_some_and(|l| l.name == c) => {
                return Err(AnalysisError::Labels(format!(
                    "'{c}' is the perturbation label column: measuring each perturbation against its own cells would erase what it did; name a batch column such as a gem group or lane"
                )));
            }
            Some(c) => {
                let values = io::read_obs_column(&f.name, &f.source, c, n)?.values;
                let mut names: Vec<String> = values.clone();
                names.sort();
                names.dedup();
                let of_cell = values.iter().map(|v| names.binary_search(v).unwrap_or(0)).collect();
                Some(Batches { column: c.to_string(), names, of_cell })
            }
        };
        let cells = ReferenceCells { control, batches };
        let data = self.read_matrix_again(f)?;
        let mut prepared = self.predictor.prepare_with(&data, &cells).map_err(|e| predict_error(&f.name, e))?;
        if let (Some(b), Some(labels)) = (&cells.batches, &f.labels) {
            prepared.report.warnings.extend(batch_label_warning(b, labels));
        }
        let (candidates, pooling) = (self.predictor.card.net.n_candidates, self.pooling());
        let f = self.open_file_mut()?;
        (f.prepared, f.reference) = (prepared, cells);
        f.clear_outputs(candidates, pooling);
        Ok(&f.report)
    }

    pub fn report(&self) -> Result<&InputReport, AnalysisError> {
        Ok(&self.open_file()?.report)
    }

    pub fn cell_count(&self) -> usize {
        self.file.as_ref().map_or(0, |f| f.prepared.cells.len())
    }

    fn open_file(&self) -> Result<&OpenFile, AnalysisError> {
        self.file.as_ref().ok_or(AnalysisError::NoFile)
    }

    fn open_file_mut(&mut self) -> Result<&mut OpenFile, AnalysisError> {
        self.file.as_mut().ok_or(AnalysisError::NoFile)
    }

    /// Groups pseudobulks by an obs column (None: all cells only). Only that column is read from the
    /// file, and only when it is neither the label column nor the current one.
    pub fn set_group_column(&mut self, column: Option<&str>) -> Result<(), AnalysisError> {
        let candidates = self.predictor.card.net.n_candidates;
        // Grouping by the top answer: each cell's as predicted so far.
        let predicted = (column == Some(PREDICTED_ANSWER)).then(|| {
            let n = self.cell_count();
            let mut values = vec!["not predicted yet".to_string(); n];
            self.cell_predictions(0..n, 1).into_iter().for_each(|c| values[c.index] = c.top[0].perturbation.clone());
            LabelColumn { name: PREDICTED_ANSWER.into(), values }
        });
        let f = self.open_file_mut()?;
        if f.grouping.column.as_deref() == column && predicted.is_none() {
            return Ok(());
        }
        let values = match column {
            Some(_) if predicted.is_some() => predicted,
            Some(c) if f.data.labels.as_ref().is_some_and(|l| l.name == c) => None,
            Some(c) => Some(io::read_obs_column(&f.name, &f.source, c, f.prepared.cells.len())?),
            None => None,
        };
        f.grouping = f.grouping_by(column, values, next_version())?;
        f.group_scores = None;
        // Sums for the new groups start now; cells predicted before are not in them.
        let r = &mut f.running;
        r.groups = vec![sets::Combination::new(candidates, r.pooling); f.grouping.groups.len()];
        r.grouping = f.grouping.version;
        r.groups_valid = r.n_counted == 0;
        r.held_cells = 0;
        Ok(())
    }

    // ---- per-cell predictions ----

    /// What a job needs of the open file besides its rows (for helpers that run jobs).
    pub fn job_context(&self) -> Result<JobContext, AnalysisError> {
        let f = self.open_file()?;
        Ok(JobContext {
            version: f.context_version,
            reference: f.prepared.reference.clone(),
            head: f.prepared.head.clone(),
        })
    }

    /// Cells [start, start + count) of the open file as a job returning `top` answers per cell.
    pub fn cell_job(
        &self,
        start: usize,
        count: usize,
        top: usize,
        hold_groups: bool,
    ) -> Result<CellJob, AnalysisError> {
        let f = self.open_file()?;
        let (n, g) = (f.prepared.cells.len(), f.prepared.n_genes);
        let range = start.min(n)..start.saturating_add(count).min(n);
        let truths = match &f.labels {
            Some(l) => range.clone().flat_map(|i| encode_truth(self.candidate_indices(&l[i]).as_deref())).collect(),
            None => Vec::new(),
        };
        Ok(CellJob {
            context: f.context_version,
            grouping: f.grouping.version,
            start: range.start,
            rows: range.len(),
            top,
            input: f.prepared.values[range.start * g..range.end * g].to_vec(),
            truths,
            groups: range.map(|i| f.grouping.of_cell[i].unwrap_or(NO_GROUP)).collect(),
            hold_groups,
        })
    }

    /// Runs a job: the network, then each cell's answer distribution (with the head's evidence when
    /// `head` is given), its top answers and its share of the accuracy and of its groups' answers.
    /// Needs only the model: helpers run jobs with no file open.
    pub fn run_job(
        &self,
        reference: &Reference,
        head: Option<&HeadTerms>,
        job: &CellJob,
    ) -> Result<ScoredChunk, AnalysisError> {
        let (gene, count) = self.predictor.logits(&job.input, job.rows, reference).map_err(|e| self.output_error(e))?;
        Ok(self.score_job(head, job, gene, count))
    }

    /// The same, reading the network's results asynchronously (WebGPU in the page).
    pub async fn run_job_async(
        &self,
        reference: &Reference,
        head: Option<&HeadTerms>,
        job: &CellJob,
    ) -> Result<ScoredChunk, AnalysisError> {
        let (gene, count) =
            self.predictor.logits_async(&job.input, job.rows, reference).await.map_err(|e| self.output_error(e))?;
        Ok(self.score_job(head, job, gene, count))
    }

    fn score_job(&self, head: Option<&HeadTerms>, job: &CellJob, gene: Vec<f32>, count: Vec<f32>) -> ScoredChunk {
        let (c, g) = (self.predictor.card.net.n_candidates, self.predictor.card.net.n_genes);
        let labelled = job.truths.len() == 2 * job.rows;
        let empty = || ScoredChunk {
            context: job.context,
            grouping: job.grouping,
            start: job.start,
            rows: job.rows,
            outputs: Vec::new(),
            top: job.top,
            top_codes: Vec::new(),
            top_probabilities: Vec::new(),
            tally: labelled.then(Tally::default),
            outside: 0,
            groups: Vec::new(),
            groups_held: false,
        };
        // Blocks in parallel natively (one thread per worker in the page), merged in order: at
        // least one block per thread, at most `SCORE_BLOCK` cells each. A wave of one block per
        // thread at a time, merged before the next, so that a job holds one wave's group sums (a
        // block's are ~10 MB for a file with 238 groups) rather than every block's at once.
        let block = job.rows.div_ceil(crate::parallel::threads()).clamp(32, SCORE_BLOCK);
        let pooling = self.pooling();
        let score_block = |b: usize| {
            let rows = b * block..((b + 1) * block).min(job.rows);
            let evidence = self.predictor.evidence(&job.input[rows.start * g..rows.end * g], head);
            let (gene, count) = (&gene[rows.start * c..rows.end * c], &count[rows.start * 3..rows.end * 3]);
            let mut part = empty();
            let mut groups: std::collections::BTreeMap<u32, sets::Combination> = Default::default();
            let first = rows.start;
            for (k, (s, log_p)) in rows.zip(self.predictor.scores_with_logs(gene, count, &evidence)) {
                for (code, p) in top_codes(&s, job.top) {
                    part.top_codes.push(code as u32);
                    part.top_probabilities.push(p);
                }
                if let Some(tally) = &mut part.tally {
                    match decode_truth([job.truths[2 * k], job.truths[2 * k + 1]]) {
                        Some(truth) => tally.add(&s, &truth),
                        None => part.outside += 1,
                    }
                }
                let group = job.groups.get(k).copied().unwrap_or(NO_GROUP);
                let at = k - first;
                let terms = self.predictor.group_terms(
                    &pooling,
                    &gene[at * c..(at + 1) * c],
                    &count[at * 3..(at + 1) * 3],
                    log_p,
                );
                let row = &job.input[k * g..(k + 1) * g];
                for group in std::iter::once(0).chain((group != NO_GROUP).then_some(group)) {
                    groups.entry(group).or_insert_with(|| sets::Combination::new(c, pooling)).add_cell(&terms, row);
                }
            }
            part.groups = groups.into_iter().collect();
            part
        };
        let mut chunk = empty();
        let (blocks, wave) = (job.rows.div_ceil(block), crate::parallel::threads().max(1));
        for first in (0..blocks).step_by(wave) {
            for part in crate::parallel::map(wave.min(blocks - first), |b| score_block(first + b)) {
                chunk.top_codes.extend(part.top_codes);
                chunk.top_probabilities.extend(part.top_probabilities);
                if let (Some(all), Some(t)) = (&mut chunk.tally, &part.tally) {
                    all.merge(t);
                }
                chunk.outside += part.outside;
                jobs::add_group_sums(&mut chunk.groups, part.groups);
            }
        }
        chunk.outputs = output_rows((gene, count), c).into_iter().flat_map(|r| r.into_vec()).collect();
        chunk
    }

    /// Takes a job's results back: keeps each cell's outputs and top answers and adds its share of
    /// the accuracy and of the pseudobulks. Returns the cells taken (`cell_predictions` gives their
    /// answers; the page reads them through the `cells` view instead). Results made under an
    /// older reference are dropped (an empty range); results that do not fit the file are refused.
    pub fn accept(&mut self, chunk: ScoredChunk) -> Result<std::ops::Range<usize>, AnalysisError> {
        let c = self.predictor.card.net.n_candidates;
        let f = self.open_file_mut()?;
        if chunk.context != f.context_version {
            return Ok(0..0);
        }
        let n = f.outputs.len();
        let width = c + 3;
        let bad = |what: String| Err(AnalysisError::BadChunk(what));
        if chunk.start + chunk.rows > n || chunk.outputs.len() != chunk.rows * width {
            return bad(format!(
                "cells {}..{} with {} output values",
                chunk.start,
                chunk.start + chunk.rows,
                chunk.outputs.len()
            ));
        }
        let k = chunk.top_codes.len() / chunk.rows.max(1);
        if chunk.top_codes.len() != k * chunk.rows || chunk.top_probabilities.len() != chunk.top_codes.len() {
            return bad(format!("{} top answers for {} cells", chunk.top_codes.len(), chunk.rows));
        }
        let range = chunk.start..chunk.start + chunk.rows;
        for (i, row) in range.clone().zip(chunk.outputs.chunks_exact(width)) {
            f.outputs[i] = Some(row.into());
        }
        for (j, i) in range.clone().enumerate() {
            let top = (j * k..(j + 1) * k).map(|t| (chunk.top_codes[t] as usize, chunk.top_probabilities[t]));
            f.tops[i] = Some((chunk.top, top.collect()));
        }
        let r = &mut f.running;
        if range.clone().any(|i| r.counted[i]) {
            (r.tally_valid, r.groups_valid) = (false, false);
        } else {
            range.clone().for_each(|i| r.counted[i] = true);
            r.n_counted += chunk.rows;
            if let Some(t) = &chunk.tally {
                r.tally.merge(t);
            }
            r.outside += chunk.outside;
            if chunk.groups_held {
                r.held_cells += chunk.rows;
            } else if chunk.grouping != r.grouping {
                r.groups_valid = false;
            } else {
                r.add_groups(&chunk.groups);
            }
        }
        f.group_scores = None;
        Ok(range)
    }

    /// Takes the group sums a helper held (`HeldGroups`) into the pseudobulks; sums of another
    /// reference or grouping are dropped.
    pub fn accept_groups(&mut self, held: HeldGroups) -> Result<(), AnalysisError> {
        let f = self.open_file_mut()?;
        let r = &mut f.running;
        if held.context != f.context_version || held.grouping != r.grouping || held.cells > r.held_cells {
            return Ok(());
        }
        r.add_groups(&held.groups);
        r.held_cells -= held.cells;
        f.group_scores = None;
        Ok(())
    }

    /// Runs the network on cells [start, start + count) and returns their top answers.
    pub fn predict_cells(
        &mut self,
        start: usize,
        count: usize,
        top: usize,
    ) -> Result<Vec<CellPrediction>, AnalysisError> {
        let job = self.cell_job(start, count, top, false)?;
        let f = self.open_file()?;
        let chunk = self.run_job(&f.prepared.reference, f.prepared.head.as_ref(), &job)?;
        let cells = self.accept(chunk)?;
        Ok(self.cell_predictions(cells, top))
    }

    /// The same for the browser, returning the cells predicted (their answers: the `cells` view).
    pub async fn predict_cells_async(
        &mut self,
        start: usize,
        count: usize,
        top: usize,
    ) -> Result<std::ops::Range<usize>, AnalysisError> {
        let job = self.cell_job(start, count, top, false)?;
        let f = self.open_file()?;
        let chunk = self.run_job_async(&f.prepared.reference, f.prepared.head.as_ref(), &job).await?;
        self.accept(chunk)
    }

    /// Runs every cell, `batch` at a time, keeping each cell's `top` answers, reporting (done,
    /// total) after each batch.
    pub fn predict_all_cells(
        &mut self,
        batch: usize,
        top: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), AnalysisError> {
        let n = self.cell_count();
        for start in (0..n).step_by(batch.max(1)) {
            self.predict_cells(start, batch, top)?;
            progress((start + batch).min(n), n);
        }
        Ok(())
    }

    /// The answers of the cells of `range` predicted so far.
    pub fn cell_predictions(&self, range: std::ops::Range<usize>, top: usize) -> Vec<CellPrediction> {
        let Some(f) = &self.file else { return Vec::new() };
        let range = range.start.min(f.outputs.len())..range.end.min(f.outputs.len());
        let cell = |i: usize, top: Vec<Ranked>| CellPrediction {
            index: i,
            cell: f.prepared.cells[i].clone(),
            label: f.labels.as_ref().map(|l| l[i].to_string()),
            top,
        };
        // The answers ranked when the cells were predicted, when they go deep enough.
        let candidates = self.predictor.candidates();
        let ranked = |i: usize| {
            let (_, t) = f.tops[i].as_ref().filter(|(k, _)| *k >= top)?;
            let name =
                |&(code, p): &(usize, f64)| Ranked { perturbation: answer_name(code, &candidates), probability: p };
            Some(t[..top.min(t.len())].iter().map(name).collect())
        };
        let predicted = || range.clone().filter(|&i| f.outputs[i].is_some());
        if predicted().all(|i| ranked(i).is_some()) {
            return predicted().filter_map(|i| Some(cell(i, ranked(i)?))).collect();
        }
        let mut cells = Vec::new();
        self.for_each_scored(range, |i, s| cells.push(cell(i, top_k(&s, &candidates, top))));
        cells
    }

    /// Calls `visit` with each predicted cell of `cells` and its answer distribution, in order. The
    /// distributions are built a block at a time (one matrix product for the head's evidence) and
    /// dropped after the visit: a cell's holds 5,566 answers, too many to keep for a large file.
    pub fn for_each_scored(&self, cells: impl IntoIterator<Item = usize>, mut visit: impl FnMut(usize, SetScores)) {
        self.scored_blocks(cells, false, |i, s, _| visit(i, s));
    }

    /// Scores the predicted `cells` from their stored outputs, a block at a time (`pooled`: with
    /// each cell's `Predictor::group_terms`, else an empty vector).
    fn scored_blocks(
        &self,
        cells: impl IntoIterator<Item = usize>,
        pooled: bool,
        mut visit: impl FnMut(usize, SetScores, Vec<f64>),
    ) {
        let Some(f) = &self.file else { return };
        let (g, c, pooling) = (f.prepared.n_genes, self.predictor.card.net.n_candidates, self.pooling());
        let mut predicted = cells.into_iter().filter_map(|i| Some((i, f.outputs.get(i)?.as_deref()?))).peekable();
        while predicted.peek().is_some() {
            let block: Vec<(usize, &[f32])> = predicted.by_ref().take(SCORE_BLOCK).collect();
            let (mut x, mut gene, mut count) = (Vec::new(), Vec::new(), Vec::new());
            for &(i, row) in &block {
                x.extend_from_slice(&f.prepared.values[i * g..(i + 1) * g]);
                gene.extend_from_slice(&row[..c]);
                count.extend_from_slice(&row[c..]);
            }
            let evidence = self.predictor.evidence(&x, f.prepared.head.as_ref());
            let scores = self.predictor.scores_with_logs(&gene, &count, &evidence);
            for (&(i, row), (s, logs)) in block.iter().zip(scores) {
                let terms =
                    if pooled { self.predictor.group_terms(&pooling, &row[..c], &row[c..], logs) } else { Vec::new() };
                visit(i, s, terms);
            }
        }
    }

    /// Accuracy of the cells predicted so far against the file's labels (None without labels).
    pub fn cell_accuracy(&self) -> Option<CellAccuracy> {
        let f = self.file.as_ref()?;
        let labels = f.labels.as_ref()?;
        if f.running.tally_valid && f.running.covers(&f.outputs) {
            return Some(CellAccuracy { scores: f.running.tally.scores(), outside_the_model: f.running.outside });
        }
        let (mut tally, mut outside) = (metrics::Tally::default(), 0);
        self.for_each_scored(0..labels.len(), |i, s| match self.candidate_indices(&labels[i]) {
            Some(t) => tally.add(&s, &t),
            None => outside += 1,
        });
        Some(CellAccuracy { scores: tally.scores(), outside_the_model: outside })
    }

    /// The label's genes as candidate indices; None when the model cannot name one of them.
    pub fn candidate_indices(&self, label: &Perturbation) -> Option<Vec<usize>> {
        let candidates = &self.predictor.card.candidates;
        label.genes().iter().map(|g| candidates.iter().position(|c| &c.symbol == g)).collect()
    }

    /// The file's canonical labels, if it has a label column.
    pub fn labels(&self) -> Option<&[Perturbation]> {
        self.file.as_ref()?.labels.as_deref()
    }

    // ---- pseudobulk ----

    /// Pseudobulk of all cells and of each group of the current column, from the posteriors of the
    /// cells predicted so far (a cancelled run's pseudobulks use what was predicted; nothing more is
    /// run behind the person's back). No network call: the same in the page and the CLI.
    pub fn pseudobulk(&mut self, top: usize) -> Result<Pseudobulk, AnalysisError> {
        let f = self.open_file()?;
        let predicted: Vec<Vec<usize>> = f
            .grouping
            .groups
            .iter()
            .map(|(_, members)| members.iter().copied().filter(|&i| f.outputs[i].is_some()).collect())
            .collect();
        let r = &f.running;
        let summed = r.groups_valid && r.held_cells == 0 && r.grouping == f.grouping.version && r.covers(&f.outputs);
        let scores = if summed {
            crate::parallel::map(r.groups.len(), |k| {
                self.predictor.finish_group(&r.groups[k], f.prepared.head.as_ref())
            })
        } else {
            self.score_groups(&predicted)?
        };
        self.open_file_mut()?.group_scores = Some(predicted.into_iter().zip(scores).collect());
        self.pseudobulk_result(top)
    }

    /// The same as `pseudobulk` (kept for the page's asynchronous call sequence).
    pub async fn pseudobulk_async(&mut self, top: usize) -> Result<Pseudobulk, AnalysisError> {
        self.pseudobulk(top)
    }

    /// How cells combine into groups: the model's pooling (`Predictor::pooling`).
    fn pooling(&self) -> sets::Pooling {
        self.predictor.pooling()
    }

    /// Answer distributions of arbitrary groups of predicted cells (e.g. 10-cell pseudobulks),
    /// combined from their cells' posteriors.
    pub fn score_groups(&self, groups: &[Vec<usize>]) -> Result<Vec<SetScores>, AnalysisError> {
        let f = self.open_file()?;
        let c = self.predictor.card.net.n_candidates;
        // Each cell's answer table is built once and added to every group holding it.
        let mut groups_of: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (k, members) in groups.iter().enumerate() {
            members.iter().for_each(|&i| groups_of.entry(i).or_default().push(k));
        }
        let mut combined = vec![sets::Combination::new(c, self.pooling()); groups.len()];
        if let Some((&i, _)) = groups_of.iter().find(|(i, _)| !matches!(f.outputs.get(**i), Some(Some(_)))) {
            return Err(match f.outputs.get(i) {
                Some(_) => AnalysisError::NotPredicted(i),
                None => AnalysisError::NoCell { index: i, cells: f.outputs.len() },
            });
        }
        let g = f.prepared.n_genes;
        self.scored_blocks(groups_of.keys().copied(), true, |i, _, terms| {
            let row = &f.prepared.values[i * g..(i + 1) * g];
            groups_of[&i].iter().for_each(|&k| combined[k].add_cell(&terms, row));
        });
        // A group's answer from its mean levels is ~1.3 million Gaussian terms: groups in parallel.
        Ok(crate::parallel::map(combined.len(), |k| {
            self.predictor.finish_group(&combined[k], f.prepared.head.as_ref())
        }))
    }

    /// The last computed pseudobulk of the current grouping (empty groups if none yet).
    pub fn pseudobulk_result(&self, top: usize) -> Result<Pseudobulk, AnalysisError> {
        let f = self.open_file()?;
        let candidates = self.predictor.candidates();
        let Some(outputs) = &f.group_scores else {
            return Ok(Pseudobulk { column: f.grouping.column.clone(), groups: Vec::new(), accuracy: None });
        };
        let mut groups = Vec::new();
        let (mut scored, mut truths) = (Vec::new(), Vec::new());
        for (k, ((name, _), (members, scores))) in f.grouping.groups.iter().zip(outputs).enumerate() {
            // Group 0 is "all cells"; grouped by labels, the others are canonical labels.
            let label = (f.grouping.by_labels && k > 0).then(|| name.clone());
            // `cells`: the group's predicted cells, the ones its answer combines (none: no answer).
            let predicted = !members.is_empty();
            if let Some(t) = label
                .as_ref()
                .filter(|_| predicted)
                .and_then(|l| Perturbation::parse(l).ok())
                .and_then(|p| self.candidate_indices(&p))
            {
                truths.push(t);
                scored.push(scores.clone());
            }
            groups.push(GroupPrediction {
                group: name.clone(),
                cells: members.len(),
                label,
                top: if predicted { top_k(scores, &candidates, top) } else { Vec::new() },
            });
        }
        let accuracy = f.grouping.by_labels.then(|| metrics::score(&scored, &truths));
        Ok(Pseudobulk { column: f.grouping.column.clone(), groups, accuracy })
    }

    // ---- export ----

    /// Everything predicted so far in the export layout: cells (top `cell_top`) and the last
    /// pseudobulk (top `group_top`).
    pub fn prediction_report(&self, cell_top: usize, group_top: usize) -> Result<PredictionReport, AnalysisError> {
        let f = self.open_file()?;
        let card = &self.predictor.card;
        Ok(PredictionReport {
            model: card.name.clone(),
            model_trained_on: format!("{} ({})", card.training_data.name, card.training_data.kind),
            file: f.name.rsplit(['/', '\\']).next().unwrap_or(&f.name).to_string(),
            genes: f.prepared.report.clone(),
            group_by: f.grouping.column.clone(),
            cells: self.cell_predictions(0..f.prepared.cells.len(), cell_top),
            pseudobulk: self.pseudobulk_result(group_top)?.groups,
        })
    }

    /// Everything predicted so far as export text.
    pub fn export(&self, format: ExportFormat, cell_top: usize, group_top: usize) -> Result<String, AnalysisError> {
        Ok(self.prediction_report(cell_top, group_top)?.to_text(format))
    }

    fn output_error(&self, e: PredictError) -> AnalysisError {
        predict_error(self.file.as_ref().map_or("", |f| f.name.as_str()), e)
    }
}

impl OpenFile {
    fn clear_outputs(&mut self, candidates: usize, pooling: sets::Pooling) {
        self.outputs.iter_mut().for_each(|o| *o = None);
        self.tops.iter_mut().for_each(|t| *t = None);
        self.running = Running::new(self.outputs.len(), &self.grouping, candidates, pooling);
        self.context_version = next_version();
        self.group_scores = None;
        self.report.genes = self.prepared.report.clone();
    }

    /// Groups by `column`: the label column (canonical labels, so `A+ctrl` and `ctrl+A` are one
    /// group), or another column's raw values.
    fn grouping_by(
        &self,
        column: Option<&str>,
        values: Option<LabelColumn>,
        version: u64,
    ) -> Result<Grouping, AnalysisError> {
        let n = self.prepared.cells.len();
        let mut groups = vec![("all cells".to_string(), (0..n).collect::<Vec<_>>())];
        let by_labels = column.is_some() && values.is_none() && self.labels.is_some();
        let names: Option<Vec<String>> = if by_labels {
            self.labels.as_ref().map(|l| l.iter().map(|p| p.to_string()).collect())
        } else {
            values.map(|v| v.values)
        };
        let mut of_cell = vec![None; n];
        if let Some(names) = names {
            let mut by_value: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
            for (i, v) in names.iter().enumerate() {
                by_value.entry(v.as_str()).or_default().push(i);
            }
            if by_value.len() > MAX_GROUPS {
                let column = column.unwrap_or_default().to_string();
                return Err(AnalysisError::TooManyGroups { column, groups: by_value.len() });
            }
            for (k, (v, members)) in by_value.into_iter().enumerate() {
                members.iter().for_each(|&i| of_cell[i] = Some(k as u32 + 1));
                groups.push((v.to_string(), members));
            }
        }
        Ok(Grouping { column: column.map(str::to_string), by_labels, groups, of_cell, version })
    }
}

/// The `k` most frequent values, most frequent first.
fn most_common(values: &[String], k: usize) -> Vec<String> {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    values.iter().for_each(|v| *counts.entry(v.as_str()).or_default() += 1);
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    counts.into_iter().take(k).map(|(v, n)| format!("'{v}' ({n})")).collect()
}

/// A batch whose cells all carry one perturbation is measured against that perturbation's own
/// cells, which erases its effect: say so (the labels are only read here, never by the model).
fn batch_label_warning(batches: &Batches, labels: &[Perturbation]) -> Option<String> {
    let mut first: Vec<Option<&Perturbation>> = vec![None; batches.names.len()];
    let mut mixed = vec![false; batches.names.len()];
    for (&b, label) in batches.of_cell.iter().zip(labels) {
        match first[b] {
            None => first[b] = Some(label),
            Some(l) if l != label => mixed[b] = true,
            _ => {}
        }
    }
    let pure: Vec<&str> = (0..mixed.len())
        .filter(|&b| !mixed[b] && first[b].is_some_and(|l| !l.is_control()))
        .map(|b| batches.names[b].as_str())
        .collect();
    (!pure.is_empty()).then(|| {
        format!(
            "batches of '{}' that hold one perturbation only are measured against that perturbation's own cells, which hides its effect: {}",
            batches.column,
            pure.join(", ")
        )
    })
}

/// The file's data without its matrix and totals (labels, names and obs kept).
fn without_matrix(mut data: ExpressionData) -> ExpressionData {
    data.matrix = crate::io::sparse::CsrMatrix::new(data.matrix.n_cols);
    data.subset = None;
    data
}

fn predict_error(file: &str, source: PredictError) -> AnalysisError {
    AnalysisError::Predict { file: file.to_string(), source }
}

/// One row per example: its gene logits then its three count logits.
fn output_rows((gene, count): (Vec<f32>, Vec<f32>), n_candidates: usize) -> Vec<Box<[f32]>> {
    gene.chunks(n_candidates).zip(count.chunks(3)).map(|(g, c)| g.iter().chain(c).copied().collect()).collect()
}
