//! Training from an h5ad larger than memory. The cells are read in CSR row chunks (`CsrRows`):
//! a first pass sums each gene over the training cells (the panel's variances), a second reads the
//! panel genes only, summing each condition for the additive head and keeping bounded samples
//! (reference, validation, calibration cells); each epoch then streams the training cells in
//! chunks shuffled by chunk and within a buffer of chunks, read on a thread of their own while the
//! network trains. Memory follows the chunk and buffer sizes and the samples, not the file.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use indicatif::{ProgressBar, ProgressStyle};
use mamba_perturb::io::h5ad::CsrRows;
use mamba_perturb::io::{CsrMatrix, ReadOptions};
use mamba_perturb::model::additive::ConditionSums;
use mamba_perturb::normalize::{self, ValueKind};
use mamba_perturb::reference::{ReferenceKind, centre_and_scale};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::commands::train::{self, Prepared};
use crate::dataset::{GeneMoments, Labelled};
use crate::error::CliError;
use crate::splits::{self, ConditionSplit};
use crate::training::{self, TrainConfig, TrainingCells};

/// Cells read at a time.
pub const CHUNK_CELLS: usize = 1024;
/// Cells sampled for the reference's quantiles (and the typicality percentile).
pub const REFERENCE_CELLS: usize = 20_000;
/// Validation and calibration cells held (each): every held cell is scored over all answers for
/// the head's weight and the temperatures, 5,566 f64 a cell with the Norman design (5,000 cells:
/// 220 MB), so these samples, not the file, set the peak memory.
pub const HELD_CELLS: usize = 5_000;

/// What one cell is for in a streamed run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Train,
    Valid,
    Calibration,
    /// Test conditions, or cells of a held-out condition beyond its sample.
    None,
}

/// Two passes over the cells of a file whose labels are read (`dataset::load_labels`); the result trains like an in-memory
/// file (`train::fit_prepared`), its training cells streamed `buffer` chunks at a time.
pub fn prepare(
    mut data: Labelled,
    path: &Path,
    options: &ReadOptions,
    split: &ConditionSplit,
    args: &TrainConfig,
    buffer: usize,
    tag: &str,
) -> Result<(Prepared<'static>, Labelled), CliError> {
    if args.synthetic_pairs > 0.0 {
        return Err(crate::error::flag(
            "synthetic-pairs",
            "is not available with --stream (it needs the singles in memory)",
        ));
    }
    let n = data.labels.len();
    // Each condition's answer, from its first cell.
    let targets_of: Vec<Vec<usize>> = {
        let mut first = vec![0; data.conditions.len()];
        data.condition.iter().enumerate().rev().for_each(|(i, &k)| first[k] = i);
        data.targets(&first)
    };
    let target = |i: usize| targets_of[data.condition[i]].as_slice();
    let train_rows = splits::rows_of(&data.condition, &split.train);
    if train_rows.is_empty() {
        return Err(CliError::Data { file: data.name.clone(), problem: "no training cells after the split".into() });
    }
    let sizes = crate::commands::train::design_sizes((0..n).map(target));
    let train_targets: Vec<Vec<usize>> = train_rows.iter().map(|&i| target(i).to_vec()).collect();
    let (train_rows, calibration_rows) = training::calibration_cells(&train_rows, &train_targets, args.seed);
    let valid_rows = splits::rows_of(&data.condition, &split.valid);
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x57ea_u64);
    let mut role = vec![Role::None; n];
    train_rows.iter().for_each(|&i| role[i] = Role::Train);
    sample(&valid_rows, HELD_CELLS, &mut rng).into_iter().for_each(|i| role[i] = Role::Valid);
    sample(&calibration_rows, HELD_CELLS, &mut rng).into_iter().for_each(|i| role[i] = Role::Calibration);
    // Validation cells beyond the sample still inform the head (as in memory: all of them).
    let mut in_head = vec![false; n];
    train_rows.iter().chain(&valid_rows).for_each(|&i| in_head[i] = true);
    let reference_rows: Vec<usize> = match args.reference {
        ReferenceKind::ControlCells => data.rows_where(|p| p.is_control()),
        _ => (0..n).collect(),
    };
    train::check_reference_cells(&data.name, reference_rows.len())?;
    let mut in_reference = vec![false; n];
    sample(&reference_rows, REFERENCE_CELLS, &mut rng).into_iter().for_each(|i| in_reference[i] = true);
    // The per-cell strings are no longer needed: memory per cell is a few bytes from here on.
    data.labels = Vec::new();
    data.data.cells = Vec::new();
    data.data.labels = None;

    // Pass 1: every gene's variance over the training cells (calibration cells included, as in
    // memory), for the panel.
    let all = CsrRows::open(path, options, &vec![true; data.data.genes.len()])?;
    let kind = normalize::detect(&all.read(0, CHUNK_CELLS.min(n))?.0);
    let mut moments = GeneMoments::new(data.data.genes.len());
    for_each_chunk(&all, kind, &format!("{tag}pass 1/2: gene variances"), |start, m| {
        (0..m.n_rows)
            .filter(|&r| matches!(role[start + r], Role::Train | Role::Calibration))
            .for_each(|r| moments.add(m.row(r)));
    })?;
    drop(all);
    let panel = data.panel_by_variance(&moments.variances(), args.hvg, args.mask_targets);
    let g = panel.len();

    // Pass 2: the panel genes: condition sums and the samples.
    let reader = CsrRows::open(path, options, &keep_mask(&panel, data.data.genes.len()))?;
    let mut head_sums = ConditionSums::new(g);
    let (mut reference, mut valid, mut calibration) = (Vec::new(), (Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for_each_chunk(&reader, kind, &format!("{tag}pass 2/2: panel genes"), |start, m| {
        let x = panel_rows(m);
        for (r, row) in x.chunks_exact(g).enumerate() {
            let i = start + r;
            if in_head[i] {
                head_sums.add_row(row, target(i));
            }
            if in_reference[i] {
                reference.extend_from_slice(row);
            }
            let held = match role[i] {
                Role::Valid => &mut valid,
                Role::Calibration => &mut calibration,
                _ => continue,
            };
            held.0.extend_from_slice(row);
            held.1.push(target(i).to_vec());
        }
    })?;
    let (mean, sd) = centre_and_scale(&reference, g);
    let typicality_p99 = train::typicality_p99(&reference, &mean, &sd);
    drop(reference);

    let is_train: Vec<bool> = role.iter().map(|r| *r == Role::Train).collect();
    let cell_targets: Vec<[u32; 2]> = (0..n)
        .map(|i| match target(i) {
            [] => [u32::MAX; 2],
            [a] => [*a as u32, u32::MAX],
            [a, b, ..] => [*a as u32, *b as u32],
        })
        .collect();
    let cells = StreamedCells::new(reader, kind, g, is_train, cell_targets, buffer);
    let prepared = Prepared {
        panel_genes: data.card_genes(&panel),
        candidates: data.candidate_card_genes(),
        panel,
        mean,
        sd,
        typicality_p99,
        sizes,
        valid,
        calibration,
        valid_conditions: split.valid.len(),
        head_sums,
        cells: Box::new(cells),
        source: train::training_data(&data.name, &data.sha256, &data.data, train_rows.len(), split.train.len()),
        simulated: data.data.simulated,
    };
    Ok((prepared, data))
}

/// At most `count` of `rows`, drawn at random (all of them when fewer), in file order.
fn sample(rows: &[usize], count: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    match rows.len() <= count {
        true => rows.to_vec(),
        false => {
            let mut picked: Vec<usize> =
                rand::seq::index::sample(rng, rows.len(), count).into_iter().map(|k| rows[k]).collect();
            picked.sort_unstable();
            picked
        }
    }
}

fn keep_mask(panel: &[usize], genes: usize) -> Vec<bool> {
    let mut keep = vec![false; genes];
    panel.iter().for_each(|&j| keep[j] = true);
    keep
}

/// A chunk's normalised values, dense over its kept (panel) columns, row-major.
fn panel_rows(m: &CsrMatrix) -> Vec<f32> {
    let g = m.n_cols;
    let mut x = vec![0f32; m.n_rows * g];
    for r in 0..m.n_rows {
        let (cols, vals) = m.row(r);
        cols.iter().zip(vals).for_each(|(&j, &v)| x[r * g + j as usize] = v);
    }
    x
}

/// Cells `start..end`, normalised over every gene of the file (each cell's total is read with it).
fn read_normalised(reader: &CsrRows, kind: ValueKind, start: usize, end: usize) -> Result<CsrMatrix, String> {
    let (m, totals) = reader.read(start, end).map_err(|e| e.to_string())?;
    Ok(normalize::normalize_with_totals(&m, kind, Some(&totals)))
}

/// Calls `visit(first cell, normalised chunk)` for each chunk of the file, in order, with a
/// progress bar.
fn for_each_chunk(
    reader: &CsrRows,
    kind: ValueKind,
    what: &str,
    mut visit: impl FnMut(usize, &CsrMatrix),
) -> Result<(), CliError> {
    let n = reader.cells();
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:25} {pos}/{len} cells ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(what.to_string());
    let started = std::time::Instant::now();
    for start in (0..n).step_by(CHUNK_CELLS) {
        let end = (start + CHUNK_CELLS).min(n);
        let m = read_normalised(reader, kind, start, end).map_err(CliError::Training)?;
        visit(start, &m);
        bar.set_position(end as u64);
    }
    bar.finish_and_clear();
    eprintln!("{what}: {n} cells read in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A buffer's training cells: rows × panel inputs and their answers.
type Block = crate::training::CellBatch;

/// The training cells of a file read chunk by chunk: each epoch visits the chunks in a new order,
/// `buffer` chunks at a time, their training cells shuffled together; the next buffer is read on
/// another thread while the current one trains.
pub struct StreamedCells {
    reader: Arc<CsrRows>,
    kind: ValueKind,
    g: usize,
    is_train: Arc<Vec<bool>>,
    /// Each cell's answer: up to two candidate indices (u32::MAX: none).
    targets: Arc<Vec<[u32; 2]>>,
    buffer: usize,
    /// Chunks with at least one training cell.
    chunks: Vec<usize>,
    train_cells: usize,
    incoming: Option<Receiver<Result<Block, String>>>,
    current: Block,
    next: usize,
}

impl StreamedCells {
    fn new(
        reader: CsrRows,
        kind: ValueKind,
        g: usize,
        is_train: Vec<bool>,
        targets: Vec<[u32; 2]>,
        buffer: usize,
    ) -> StreamedCells {
        let chunks = (0..is_train.len().div_ceil(CHUNK_CELLS))
            .filter(|&k| is_train[k * CHUNK_CELLS..((k + 1) * CHUNK_CELLS).min(is_train.len())].contains(&true))
            .collect();
        let train_cells = is_train.iter().filter(|t| **t).count();
        StreamedCells {
            reader: Arc::new(reader),
            kind,
            g,
            is_train: Arc::new(is_train),
            targets: Arc::new(targets),
            buffer: buffer.max(1),
            chunks,
            train_cells,
            incoming: None,
            current: Default::default(),
            next: 0,
        }
    }
}

/// One buffer: the training cells of `chunks`, shuffled together.
fn read_buffer(
    reader: &CsrRows,
    kind: ValueKind,
    is_train: &[bool],
    targets: &[[u32; 2]],
    chunks: &[usize],
    rng: &mut ChaCha8Rng,
) -> Result<Block, String> {
    let (mut x, mut answers) = (Vec::new(), Vec::new());
    let mut g = 0;
    for &k in chunks {
        let start = k * CHUNK_CELLS;
        let m = read_normalised(reader, kind, start, (start + CHUNK_CELLS).min(reader.cells()))?;
        g = m.n_cols;
        let rows = panel_rows(&m);
        for (r, row) in rows.chunks_exact(g.max(1)).enumerate().filter(|(r, _)| is_train[start + r]) {
            x.extend_from_slice(row);
            answers.push(targets[start + r].iter().filter(|&&t| t != u32::MAX).map(|&t| t as usize).collect());
        }
    }
    let mut order: Vec<usize> = (0..answers.len()).collect();
    order.shuffle(rng);
    let shuffled = order.iter().flat_map(|&i| &x[i * g..(i + 1) * g]).copied().collect();
    Ok((shuffled, order.into_iter().map(|i| std::mem::take(&mut answers[i])).collect()))
}

impl TrainingCells for StreamedCells {
    fn cells_per_epoch(&self) -> usize {
        self.train_cells
    }

    fn start_epoch(&mut self, rng: &mut ChaCha8Rng) -> Result<(), String> {
        let mut order = self.chunks.clone();
        order.shuffle(rng);
        let seed: u64 = rng.random();
        // One buffer waiting while one trains: two buffers of memory at most besides the model.
        let (send, receive) = sync_channel(1);
        let (reader, kind, is_train, targets, buffer) =
            (self.reader.clone(), self.kind, self.is_train.clone(), self.targets.clone(), self.buffer);
        std::thread::spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for group in order.chunks(buffer) {
                let block = read_buffer(&reader, kind, &is_train, &targets, group, &mut rng);
                let failed = block.is_err();
                // A closed channel: the epoch stopped early; nothing more to read.
                if send.send(block).is_err() || failed {
                    return;
                }
            }
        });
        self.incoming = Some(receive);
        self.current = Default::default();
        self.next = 0;
        Ok(())
    }

    fn next_batch(&mut self, batch: usize) -> Result<Option<Block>, String> {
        let g = self.g;
        // Fill up from the next buffer when this one has less than a batch left.
        while self.current.1.len() - self.next < batch {
            let Some(incoming) = &self.incoming else { break };
            match incoming.recv() {
                Ok(block) => {
                    let (x, t) = block?;
                    let (rest_x, rest_t) = (&self.current.0[self.next * g..], &self.current.1[self.next..]);
                    self.current = ([rest_x, &x].concat(), [rest_t, &t].concat());
                    self.next = 0;
                }
                Err(_) => self.incoming = None,
            }
        }
        let end = (self.next + batch).min(self.current.1.len());
        if end == self.next {
            return Ok(None);
        }
        let out = (self.current.0[self.next * g..end * g].to_vec(), self.current.1[self.next..end].to_vec());
        self.next = end;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset;
    use crate::splits::SplitKind;
    use mamba_perturb::model::additive::{AdditiveHead, Shrinkage};

    /// A streamed file gives training what the same file in memory gives: the same panel, reference,
    /// held-out cells and head, and over one epoch each training cell exactly once, in a shuffled
    /// order (3,000 simulated cells: three chunks, read two at a time).
    #[test]
    fn a_streamed_file_trains_on_what_the_file_in_memory_gives() {
        let (dir, path) = dataset::simulated_h5ad("stream", 4, 3000, 400);
        let args = TrainConfig::from_flags(&["--hvg", "32"]);
        let data = dataset::load(&path, &Default::default()).unwrap();
        let split = splits::split_conditions(&data.conditions, SplitKind::HeldoutPairs, 0);
        let meta = dataset::load_labels(&path, &Default::default()).unwrap();
        assert_eq!((meta.normalised.n_rows, &meta.condition), (0, &data.condition));
        let (mut streamed, _) = prepare(meta, &path, &Default::default(), &split, &args, 2, "").unwrap();

        let rows = splits::rows_of(&data.condition, &split.train);
        let panel = data.choose_panel(&rows, 32, false);
        assert_eq!(streamed.panel, panel);
        let (train, calibration) = training::calibration_cells(&rows, &data.targets(&rows), args.seed);
        let valid = splits::rows_of(&data.condition, &split.valid);
        assert_eq!(streamed.valid, (data.dense(&valid, &panel), data.targets(&valid)));
        assert_eq!(streamed.calibration, (data.dense(&calibration, &panel), data.targets(&calibration)));
        let all: Vec<usize> = (0..data.labels.len()).collect();
        let (mean, sd) = centre_and_scale(&data.dense(&all, &panel), panel.len());
        assert_eq!((&streamed.mean, &streamed.sd), (&mean, &sd));
        let head_rows: Vec<usize> = train.iter().chain(&valid).copied().collect();
        let c = data.candidates.len();
        let in_memory = AdditiveHead::fit(
            &data.dense(&head_rows, &panel),
            panel.len(),
            &data.targets(&head_rows),
            c,
            Shrinkage::Programs,
        );
        let from_stream = AdditiveHead::from_sums(&streamed.head_sums, c, Shrinkage::Programs);
        let (a, b) = (in_memory.unwrap(), from_stream.unwrap());
        assert_eq!((&a.folds, &a.cells), (&b.folds, &b.cells));
        assert!(a.dispersion.iter().zip(&b.dispersion).all(|(u, v)| (u - v).abs() <= 1e-5 * u.abs().max(1.0)));

        let mut rng = ChaCha8Rng::seed_from_u64(1);
        streamed.cells.start_epoch(&mut rng).unwrap();
        assert_eq!(streamed.cells.cells_per_epoch(), train.len());
        let g = panel.len();
        let (mut seen, mut batches) = (Vec::new(), 0);
        while let Some((x, t)) = streamed.cells.next_batch(64).unwrap() {
            assert!(t.len() == 64 || seen.len() + t.len() == train.len(), "only the last batch is short");
            seen.extend(x.chunks(g).zip(t).map(|(r, t)| (t, r.iter().map(|v| v.to_bits()).collect::<Vec<_>>())));
            batches += 1;
        }
        assert_eq!(batches, train.len().div_ceil(64));
        let x = data.dense(&train, &panel);
        let mut expected: Vec<_> =
            x.chunks(g).zip(data.targets(&train)).map(|(r, t)| (t, r.iter().map(|v| v.to_bits()).collect())).collect();
        assert_ne!(seen, expected, "the epoch's order is shuffled, not the file's");
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
        std::fs::remove_dir_all(&dir).ok();
    }
}
