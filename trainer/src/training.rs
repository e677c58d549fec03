//! Fitting the network: AdamW on the exact set likelihood, seeded shuffles, early stopping on
//! held-out *training conditions* (whole conditions, never random cells of the test set).

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use mamba_perturb::model::additive::Evidence;
use mamba_perturb::model::sets::set_nll;
use mamba_perturb::model::sets::{self, SetScores};
use mamba_perturb::model::{GenomeFeatures, PerturbNet};

use crate::compute::Compute;
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Anything trained on the set likelihood: the network, and the logistic-regression baseline.
pub trait SetModel: Module + Clone + Sync {
    /// (gene logits [B, C], count logits [B, 3]).
    fn logits(&self, x: Tensor<2>, features: &GenomeFeatures) -> (Tensor<2>, Tensor<2>);
}

impl SetModel for PerturbNet {
    fn logits(&self, x: Tensor<2>, features: &GenomeFeatures) -> (Tensor<2>, Tensor<2>) {
        let out = self.forward(x, features, false);
        (out.gene_logits, out.count_logits)
    }
}

/// Dense inputs with their answers.
pub struct Split<'a> {
    /// rows × genes
    pub x: &'a [f32],
    pub targets: &'a [Vec<usize>],
}

/// A batch of training cells: inputs (rows × genes, row-major) and each row's answer.
pub type CellBatch = (Vec<f32>, Vec<Vec<usize>>);

/// The training cells an epoch goes through, batch by batch: held in memory (`InMemory`) or
/// streamed from the file (`stream::StreamedCells`).
pub trait TrainingCells {
    /// Cells in one epoch (synthetic ones included), for the progress bar and the schedule.
    fn cells_per_epoch(&self) -> usize;
    /// Starts an epoch: its cells in a new seeded order.
    fn start_epoch(&mut self, rng: &mut ChaCha8Rng) -> Result<(), String>;
    /// The epoch's next batch of at most `batch` cells (rows × genes, answers); None: epoch over.
    fn next_batch(&mut self, batch: usize) -> Result<Option<CellBatch>, String>;
}

/// Training cells held in memory, shuffled each epoch, with the epoch's synthetic pairs.
pub struct InMemory<'a> {
    train: Split<'a>,
    g: usize,
    singles: SinglesIndex,
    n_synthetic: usize,
    epoch: CellBatch,
    order: Vec<usize>,
    next: usize,
}

impl<'a> InMemory<'a> {
    pub fn new(train: Split<'a>, g: usize, c: usize, synthetic_pairs: f64) -> InMemory<'a> {
        let n_synthetic = (train.targets.len() as f64 * synthetic_pairs) as usize;
        let singles = SinglesIndex::new(train.targets, c);
        InMemory { train, g, singles, n_synthetic, epoch: Default::default(), order: Vec::new(), next: 0 }
    }
}

impl TrainingCells for InMemory<'_> {
    fn cells_per_epoch(&self) -> usize {
        self.train.targets.len() + self.n_synthetic
    }

    fn start_epoch(&mut self, rng: &mut ChaCha8Rng) -> Result<(), String> {
        let (x_syn, t_syn) = self.singles.synthesise(self.n_synthetic, self.train.x, self.g, rng);
        self.epoch = match t_syn.is_empty() {
            true => Default::default(),
            false => ([self.train.x, &x_syn].concat(), [self.train.targets, &t_syn].concat()),
        };
        let n = self.train.targets.len() + t_syn.len();
        self.order = (0..n).collect();
        self.order.shuffle(rng);
        self.next = 0;
        Ok(())
    }

    fn next_batch(&mut self, batch: usize) -> Result<Option<CellBatch>, String> {
        let rows = &self.order[self.next..(self.next + batch).min(self.order.len())];
        if rows.is_empty() {
            return Ok(None);
        }
        self.next += rows.len();
        let (x, targets) = match self.epoch.1.is_empty() {
            true => (self.train.x, self.train.targets),
            false => (self.epoch.0.as_slice(), self.epoch.1.as_slice()),
        };
        let g = self.g;
        let xs = rows.iter().flat_map(|&i| &x[i * g..(i + 1) * g]).copied().collect();
        Ok(Some((xs, rows.iter().map(|&i| targets[i].clone()).collect())))
    }
}

/// Everything that shapes a training run, architecture and optimisation, for `train` and `bench`.
/// The defaults are written here once, as the command line's.
#[derive(clap::Args, Clone, Debug, serde::Serialize)]
pub struct TrainConfig {
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Highly variable genes in the panel (every candidate target gene is added unless masked).
    #[arg(long, default_value_t = 256)]
    pub hvg: usize,
    #[arg(long, default_value_t = 32)]
    pub d_model: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 6)]
    pub freqs: usize,
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// AdamW learning rate (1e-2 lets the attention align within a few epochs on 2 cores).
    #[arg(long, default_value_t = 1e-2)]
    pub lr: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Epochs without a better validation loss before stopping.
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Remove the candidate genes' own expression from the input.
    #[arg(long)]
    pub mask_targets: bool,
    /// Share of training cells shown with a thinned panel (a random 25-100 % of genes present, the
    /// rest absent), so the model stays calibrated on files that measure only part of its panel.
    #[arg(long, default_value_t = 0.5)]
    pub gene_dropout: f64,
    /// Add the cis path (a shared function of each candidate's own-gene z-score added to its
    /// logit). Off by default: in one-seed runs it did not beat the plain network (0.23-0.30 vs
    /// 0.32-0.35 exact top-1 on held-out pair cells), and the PyTorch twin lacks it.
    #[arg(long)]
    pub cis: bool,
    /// Ablation: no chromosome or locus features (the card then lists no gene positions).
    #[arg(long)]
    pub no_position: bool,
    /// Ablation: the network alone, without the additive head (each candidate's training single
    /// profile, model/additive.rs).
    #[arg(long)]
    pub no_additive_head: bool,
    /// Synthetic pair cells added each epoch, as a share of the training cells: a cell of single A
    /// plus a cell of single B minus a control cell (normalised counts), labelled A+B, for pairs
    /// drawn at random from all candidate pairs. Teaches the additive rule that unseen pairs follow.
    #[arg(long, default_value_t = 0.0)]
    pub synthetic_pairs: f64,
    /// What each gene is measured against, in training and in every file the model later reads:
    /// file-cells (all of a file's cells, label-free) or control-cells (a file's control cells,
    /// whose label the user names: `predict --control`, the page's field).
    #[arg(long, default_value = "file-cells")]
    pub reference: mamba_perturb::reference::ReferenceKind,
    /// Where to train: cpu, or gpu in a build with `--features gpu` (Vulkan).
    #[arg(long, value_enum, default_value_t = Compute::Cpu)]
    pub device: Compute,
    /// Data-parallel replicas a batch is split over, each on its own thread with its own autodiff
    /// graph, their gradients summed before one optimiser step (default: one per CPU thread; 1 on
    /// a GPU). Results do not depend on it beyond float rounding (tests/data_parallel).
    #[arg(long)]
    pub replicas: Option<usize>,
}

#[cfg(test)]
impl TrainConfig {
    /// The command line's defaults with `flags` on top.
    pub fn from_flags(flags: &[&str]) -> TrainConfig {
        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            config: TrainConfig,
        }
        <Command as clap::Parser>::parse_from(std::iter::once("train").chain(flags.iter().copied())).config
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_loss: f64,
    pub valid_top1: f64,
    pub seconds: f64,
}

pub struct Fitted<M> {
    pub net: M,
    pub history: Vec<Epoch>,
    pub best_epoch: usize,
    pub seconds_per_step: f64,
}

fn batch_tensors(
    split: &Split,
    rows: &[usize],
    g: usize,
    c: usize,
    device: &Device,
) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
    let mut x = Vec::with_capacity(rows.len() * g);
    let mut y = vec![0f32; rows.len() * c];
    let mut k = vec![0f32; rows.len() * 3];
    for (r, &i) in rows.iter().enumerate() {
        x.extend_from_slice(&split.x[i * g..(i + 1) * g]);
        for &t in &split.targets[i] {
            y[r * c + t] = 1.0;
        }
        k[r * 3 + split.targets[i].len().min(2)] = 1.0;
    }
    let b = rows.len();
    (
        Tensor::from_data(TensorData::new(x, [b, g]), device),
        Tensor::from_data(TensorData::new(y, [b, c]), device),
        Tensor::from_data(TensorData::new(k, [b, 3]), device),
    )
}

/// One batch on the training device: inputs, answers (multi-hot [B, C], cardinality one-hot
/// [B, 3]) and, for thinned panels, which genes each row measures.
pub struct Batch {
    pub x: Tensor<2>,
    pub y: Tensor<2>,
    pub k: Tensor<2>,
    pub present: Option<Tensor<2>>,
}

impl Batch {
    fn rows(&self) -> usize {
        self.x.dims()[0]
    }

    /// Rows `start..start + len` of every part.
    fn narrow(&self, start: usize, len: usize) -> Batch {
        Batch {
            x: self.x.clone().narrow(0, start, len),
            y: self.y.clone().narrow(0, start, len),
            k: self.k.clone().narrow(0, start, len),
            present: self.present.clone().map(|p| p.narrow(0, start, len)),
        }
    }
}

/// Fewest rows worth a thread of their own.
const MIN_SHARD_ROWS: usize = 16;

/// The batch's mean set NLL and its gradients. The rows are split into up to `shards` parts, each
/// run forward and backward on its own thread and their gradients summed (weighted by rows, so the
/// result is the whole batch's): Burn's CPU element-wise kernels run on one thread, so a step
/// barely sped up from one thread to two before this.
pub fn batch_gradients<M: SetModel>(
    net: &M,
    features: &GenomeFeatures,
    batch: &Batch,
    shards: usize,
) -> (f64, GradientsParams) {
    let n = batch.rows();
    let threads = shards.clamp(1, (n / MIN_SHARD_ROWS).max(1));
    let size = n.div_ceil(threads);
    let shard = |part: Batch| -> (f64, GradientsParams) {
        let features = match &part.present {
            Some(present) => features.with_present(present.clone()),
            None => features.clone(),
        };
        let weight = part.rows() as f64 / n as f64;
        // A fork has the same parameters (and ids) under new autodiff nodes, so each shard's graph
        // is its own: shards sharing the parameters' nodes would share one graph and one lock.
        let net = if threads > 1 { net.clone().fork(&part.x.device()) } else { net.clone() };
        let (gene_logits, count_logits) = net.logits(part.x, &features);
        let loss = set_nll(gene_logits, count_logits, part.y, part.k).mul_scalar(weight);
        let value: f32 = loss.clone().into_data().try_to_vec().unwrap_or_default()[0];
        (value as f64, GradientsParams::from_grads(loss.backward(), &net))
    };
    let parts: Vec<Batch> = (0..n).step_by(size).map(|start| batch.narrow(start, size.min(n - start))).collect();
    let results: Vec<(f64, GradientsParams)> = if parts.len() == 1 {
        parts.into_iter().map(shard).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts.into_iter().map(|part| scope.spawn(move || shard(part))).collect();
            handles.into_iter().map(|h| h.join().expect("a training shard panicked")).collect()
        })
    };
    let mut total = 0.0;
    let mut accumulator = GradientsAccumulator::new();
    for (value, grads) in results {
        total += value;
        accumulator.accumulate(net, grads);
    }
    (total, accumulator.grads())
}

/// Mean NLL and exact top-1 accuracy on a split, without gradients.
pub fn evaluate<M: SetModel>(
    net: &M,
    features: &GenomeFeatures,
    split: &Split,
    g: usize,
    c: usize,
    device: &Device,
) -> (f64, f64) {
    let n = split.targets.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (mut loss, mut hits) = (0.0, 0usize);
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(256) {
        let (x, y, k) = batch_tensors(split, chunk, g, c, device);
        let (gene_logits, count_logits) = net.logits(x, features);
        let gene_values: Vec<f32> = gene_logits.clone().into_data().try_to_vec().unwrap_or_default();
        let count_values: Vec<f32> = count_logits.clone().into_data().try_to_vec().unwrap_or_default();
        let l: f32 = set_nll(gene_logits, count_logits, y, k).into_data().try_to_vec().unwrap_or_default()[0];
        loss += l as f64 * chunk.len() as f64;
        let scores = mamba_perturb::predict::set_scores(&gene_values, &count_values, c);
        hits += chunk
            .iter()
            .zip(&scores)
            .filter(|(i, s)| mamba_perturb::metrics::rank_of(s, &split.targets[**i]) == 0)
            .count();
    }
    (loss / n as f64, hits as f64 / n as f64)
}

/// Runs `draw` right after seeding the device's random generator, which Burn keeps per process:
/// another thread's draws in between (tests train side by side) would give the same seed other
/// initial weights.
pub fn seeded<T>(device: &Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    static SEEDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = SEEDING.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    draw()
}

/// Prints above the progress bar, or plainly when output is not a terminal (the bar is hidden then
/// and would swallow the line).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
}

pub fn fit<M: SetModel>(
    init: &dyn Fn(&Device) -> M,
    (g, c): (usize, usize),
    features_of: &dyn Fn(&Device) -> GenomeFeatures,
    train: &mut dyn TrainingCells,
    valid: &Split,
    opts: &TrainConfig,
    label: &str,
) -> Result<Fitted<M>, String> {
    let plain = opts.device.device();
    let device = plain.clone().autodiff();
    let shards = opts.replicas.unwrap_or_else(|| opts.device.shards());
    let mut net = seeded(&plain, opts.seed, || init(&device));
    let train_features = features_of(&device);
    let valid_features = features_of(&plain);
    let mut optim = AdamWConfig::new().with_weight_decay(opts.weight_decay).init();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let steps_per_epoch = train.cells_per_epoch().div_ceil(opts.batch);
    let bar = ProgressBar::new((opts.epochs * steps_per_epoch) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:25} {pos}/{len} steps {msg} ({elapsed}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    let mut history = Vec::new();
    let mut best: Option<(f64, M, usize)> = None;
    let mut step_time = 0.0;
    let mut steps = 0usize;
    for epoch in 1..=opts.epochs {
        let start = std::time::Instant::now();
        train.start_epoch(&mut rng)?;
        let (mut total, mut n) = (0.0, 0usize);
        while let Some((x, targets)) = train.next_batch(opts.batch)? {
            let t = std::time::Instant::now();
            let rows = targets.len();
            let (x, y, k) =
                batch_tensors(&Split { x: &x, targets: &targets }, &(0..rows).collect::<Vec<_>>(), g, c, &device);
            let present = thinned_panel(rows, g, opts.gene_dropout, &mut rng, &device);
            let (value, grads) = batch_gradients(&net, &train_features, &Batch { x, y, k, present }, shards);
            // Cosine decay to zero over the planned steps: a high start aligns the attention fast,
            // the decay settles it (a constant 1e-2 made validation accuracy swing between epochs).
            let progress = (steps as f64 / (opts.epochs * steps_per_epoch) as f64).min(1.0);
            let lr = opts.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            net = optim.step(lr, net, grads);
            total += value * rows as f64;
            n += rows;
            step_time += t.elapsed().as_secs_f64();
            steps += 1;
            bar.inc(1);
            bar.set_message(format!("epoch {epoch} loss {value:.3}"));
        }
        let valid_net = net.valid();
        let (valid_loss, valid_top1) = evaluate(&valid_net, &valid_features, valid, g, c, &plain);
        let e = Epoch {
            epoch,
            train_loss: total / n as f64,
            valid_loss,
            valid_top1,
            seconds: start.elapsed().as_secs_f64(),
        };
        say(
            &bar,
            format!(
                "{label} epoch {epoch}: train loss {:.3}, validation loss {:.3}, validation exact top-1 {:.3} ({:.0} s)",
                e.train_loss, e.valid_loss, e.valid_top1, e.seconds
            ),
        );
        history.push(e);
        let improved = best.as_ref().is_none_or(|b| valid_loss < b.0 || b.0.is_nan());
        if improved {
            best = Some((valid_loss, valid_net, epoch));
        } else if epoch - best.as_ref().map(|b| b.2).unwrap_or(epoch) >= opts.patience {
            say(&bar, format!("{label}: early stop, best epoch {}", best.as_ref().map(|b| b.2).unwrap_or(0)));
            break;
        }
    }
    bar.finish_and_clear();
    let (_, net, best_epoch) = best.ok_or("no training epoch ran (--epochs 0?)")?;
    // Everything after training (temperature, head, evaluation, saving) runs on the CPU.
    let net = net.to_device(&Device::flex());
    Ok(Fitted { net, history, best_epoch, seconds_per_step: step_time / steps.max(1) as f64 })
}

/// Per-row presence for a batch ([rows, g], 1 present / 0 absent): a `share` of rows keep a random
/// 25-100 % of the genes; None when no row is thinned.
fn thinned_panel(rows: usize, g: usize, share: f64, rng: &mut ChaCha8Rng, device: &Device) -> Option<Tensor<2>> {
    if share <= 0.0 {
        return None;
    }
    let mut present = vec![1f32; rows * g];
    for row in present.chunks_mut(g) {
        if rng.random::<f64>() < share {
            let keep = rng.random_range(0.25..1.0);
            row.iter_mut().for_each(|v| *v = if rng.random::<f64>() < keep { 1.0 } else { 0.0 });
        }
    }
    Some(Tensor::from_data(TensorData::new(present, [rows, g]), device))
}

/// The temperature T that minimises the validation conditions' NLL when every logit is divided by
/// it (gene logits before their bound), by golden-section search over [0.25, 8]. Held-out training
/// conditions stand in for unseen ones, so probabilities on new pairs mean what they say.
pub fn temperature<M: SetModel>(net: &M, features: &GenomeFeatures, valid: &Split, c: usize, device: &Device) -> f64 {
    let n = valid.targets.len();
    if n == 0 {
        return 1.0;
    }
    let g = features.gene_mean.dims()[1];
    let mut outputs = Vec::with_capacity(n);
    let rows: Vec<usize> = (0..n).collect();
    for chunk in rows.chunks(256) {
        let (x, _, _) = batch_tensors(valid, chunk, g, c, device);
        let (gene, count) = net.logits(x, features);
        let gene: Vec<f32> = gene.into_data().try_to_vec().unwrap_or_default();
        let count: Vec<f32> = count.into_data().try_to_vec().unwrap_or_default();
        for (r, &i) in chunk.iter().enumerate() {
            outputs.push((gene[r * c..(r + 1) * c].to_vec(), count[r * 3..(r + 1) * 3].to_vec(), i));
        }
    }
    let bound = mamba_perturb::model::sets::LOGIT_BOUND;
    let nll = |t: f64| -> f64 {
        outputs
            .iter()
            .map(|(gene, count, i)| {
                let scaled: Vec<f32> = gene
                    .iter()
                    .map(|&l| {
                        let raw = bound as f64 * ((l / bound).clamp(-0.999_999, 0.999_999) as f64).atanh();
                        (bound as f64 * (raw / t / bound as f64).tanh()) as f32
                    })
                    .collect();
                let count: Vec<f32> = count.iter().map(|&v| (v as f64 / t) as f32).collect();
                let s = mamba_perturb::model::sets::SetScores::from_logits(&scaled, &count);
                -s.probability(&valid.targets[*i]).max(1e-300).ln()
            })
            .sum::<f64>()
            / n as f64
    };
    best_temperature(nll)
}

/// The temperature in [0.25, 8] that minimises `nll`, by golden-section search on its log (both
/// temperature fits: the network's and the posterior's).
fn best_temperature(nll: impl Fn(f64) -> f64) -> f64 {
    golden_minimum(0.25f64.ln(), 8f64.ln(), 30, |x| nll(x.exp())).exp()
}

/// Where `f` is least on [lo, hi], by golden-section search (`steps` narrowings; `f` unimodal there).
fn golden_minimum(mut lo: f64, mut hi: f64, steps: usize, f: impl Fn(f64) -> f64) -> f64 {
    let phi = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..steps {
        let (a, b) = (hi - phi * (hi - lo), lo + phi * (hi - lo));
        if f(a) < f(b) { hi = b } else { lo = a }
    }
    (lo + hi) / 2.0
}

/// The additive head's weight on held-out training cells: the weight that ranks them best
/// (weighted exact top-1 over a log grid from 0.01 to 2, ties to the lower weighted NLL). The
/// network's `scores`, the head's unweighted `evidence` and each cell's `weight` (`size_weights`:
/// the validation pairs and the calibration cells of control and singles, so that the choice
/// serves a screen's whole mix and not its unseen pairs alone). The evidence sums over genes as if
/// they were independent, so at full weight it is overconfident; a weight fitted on NLL alone mutes
/// it at a loss of accuracy.
pub fn head_weight(scores: &[SetScores], evidence: &[Evidence], targets: &[Vec<usize>], weights: &[f64]) -> HeadFit {
    if scores.is_empty() || evidence.len() != scores.len() {
        return HeadFit { weight: 1.0, accuracy: 0.0, nll: f64::NAN };
    }
    let combined = |w: f64| -> Vec<SetScores> {
        let times = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| (x as f64 * w) as f32).collect() };
        scores.iter().zip(evidence).map(|(s, e)| s.with_evidence(&times(&e.singles), &times(&e.pairs))).collect()
    };
    let nll = |c: &[SetScores]| -> f64 {
        c.iter().zip(targets).zip(weights).map(|((s, t), w)| -w * s.probability(t).max(1e-300).ln()).sum::<f64>()
    };
    let accuracy = |c: &[SetScores]| -> f64 {
        c.iter()
            .zip(targets)
            .zip(weights)
            .filter(|((s, t), _)| mamba_perturb::metrics::rank_of(s, t) == 0)
            .map(|(_, w)| w)
            .sum()
    };
    let mut best = HeadFit { weight: 1.0, accuracy: -1.0, nll: f64::INFINITY };
    for k in 0..=12 {
        let w = 0.01f64 * (200f64).powf(k as f64 / 12.0);
        let c = combined(w);
        let (a, l) = (accuracy(&c), nll(&c));
        if best.better_than(a, l) {
            best = HeadFit { weight: w, accuracy: a, nll: l };
        }
    }
    best
}

/// Per held-out cell, its weight when the answer sizes are to count as in `sizes` (the training
/// cells' shares): each size's share spread evenly over its cells; sizes without cells drop out.
pub fn size_weights(targets: &[&[usize]], sizes: [f64; 3]) -> Vec<f64> {
    let mut count = [0usize; 3];
    targets.iter().for_each(|t| count[t.len().min(2)] += 1);
    let total: f64 = (0..3).filter(|&k| count[k] > 0).map(|k| sizes[k]).sum();
    targets
        .iter()
        .map(|t| {
            let k = t.len().min(2);
            sizes[k] / total / count[k] as f64
        })
        .collect()
}

/// Splits off a tenth of the control and single cells of `rows` (every tenth of each condition's
/// cells in a seeded order) for calibration: (training rows, calibration rows).
pub fn calibration_cells(rows: &[usize], targets: &[Vec<usize>], seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0xca11b));
    let mut seen: std::collections::HashMap<&[usize], usize> = std::collections::HashMap::new();
    let mut calibration = vec![false; rows.len()];
    for i in order {
        if targets[i].len() < 2 {
            let n = seen.entry(targets[i].as_slice()).or_default();
            calibration[i] = *n % 10 == 9;
            *n += 1;
        }
    }
    let pick = |keep: bool| rows.iter().zip(&calibration).filter(|(_, c)| **c == keep).map(|(r, _)| *r).collect();
    (pick(false), pick(true))
}

/// The posterior temperature `posterior_temperature` chose, and the weighted NLL before and after.
pub struct TemperatureFit {
    pub temperature: f64,
    pub cells: usize,
    pub nll_before: f64,
    pub nll_after: f64,
}

/// The temperature T minimising the held-out cells' NLL when each posterior's log is divided by T,
/// each cell weighted so that the answer sizes count as in `sizes` (the design's shares):
/// golden-section search over [0.25, 8]. At most 2,000 cells per size are used. None without
/// cells of at least two sizes.
pub fn posterior_temperature(cells: &[(&SetScores, &[usize])], sizes: [f64; 3]) -> Option<TemperatureFit> {
    let mut by_size: [Vec<usize>; 3] = Default::default();
    cells.iter().enumerate().for_each(|(i, (_, t))| by_size[t.len().min(2)].push(i));
    if by_size.iter().filter(|v| !v.is_empty()).count() < 2 {
        return None;
    }
    // Per used cell: its weight, the log probability of its truth, and every answer's log probability.
    let kept: Vec<usize> = by_size
        .iter()
        .flat_map(|members| members.iter().copied().step_by(members.len().div_ceil(2000).max(1)))
        .collect();
    let weights = size_weights(&kept.iter().map(|&i| cells[i].1).collect::<Vec<_>>(), sizes);
    let log = |p: f64| if p > 0.0 { p.ln() } else { -745.0 };
    let used: Vec<(f64, f64, Vec<f32>)> = kept
        .iter()
        .zip(weights)
        .map(|(&i, w)| {
            let (s, truth) = cells[i];
            let all = std::iter::once(s.control).chain(s.singles.iter().copied()).chain(s.pairs.iter().copied());
            (w, log(s.probability(truth)), all.map(|p| log(p) as f32).collect())
        })
        .collect();
    let nll = |t: f64| -> f64 {
        used.iter()
            .map(|(w, truth, all)| {
                let max = all.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64 / t;
                let z: f64 = all.iter().map(|&v| (v as f64 / t - max).exp()).sum();
                w * (-(truth / t) + max + z.ln())
            })
            .sum()
    };
    let temperature = best_temperature(nll);
    Some(TemperatureFit { temperature, cells: used.len(), nll_before: nll(1.0), nll_after: nll(temperature) })
}

/// The share f of perturbed cells that look like control cells, as pooling sees them
/// (`sets::Pooling`): the f maximising Σ log((1 − f)·P(S|x)/P(S) + f·P(control|x)/P(control))
/// over held-out perturbed cells (`cells`: each one's posterior and true answer), searched by golden
/// section over [0, 0.5]. None without perturbed cells.
pub fn guide_failure(cells: &[(&SetScores, &[usize])], prior: [f64; 3]) -> Option<f64> {
    let log = |p: f64| p.max(1e-300).ln();
    // Per perturbed cell: ln of how much likelier control makes it than its own answer.
    let ratios: Vec<f64> = cells
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(s, t)| (log(s.control) - log(prior[0])) - (log(s.probability(t)) - log(prior[t.len().min(2)])))
        .collect();
    if ratios.is_empty() {
        return None;
    }
    // The mixture's log likelihood, up to each cell's own-answer term (which f does not change).
    let fit = |f: f64| -> f64 { ratios.iter().map(|&r| sets::log_add((1.0 - f).ln(), f.ln() + r)).sum() };
    Some(golden_minimum(0.0, 0.5, 40, |f| -fit(f)))
}

/// The group model (`sets::GroupModel`) on held-out training groups: each validation pair's
/// cells, and each control and single condition's calibration cells. Every (network weight, pair
/// error) of a small grid is tried, and pooling through the cells' posteriors (`cell_pooling`,
/// the model's pooling without a group model); the best by exact top-1 weighted to the design's
/// size shares, ties to the lower weighted NLL. None (with its fit) when cell pooling ranks the
/// groups at least as well, or the head cannot speak for groups.
pub fn group_model(
    predictor: &mamba_perturb::predict::Predictor,
    network: &[SetScores],
    product: &[SetScores],
    x: &[f32],
    targets: &[Vec<usize>],
    sizes: [f64; 3],
    head: Option<&mamba_perturb::model::additive::HeadTerms>,
) -> (Option<sets::GroupModel>, HeadFit, HeadFit) {
    let mut by_answer: std::collections::BTreeMap<&[usize], Vec<usize>> = Default::default();
    targets.iter().enumerate().for_each(|(i, t)| by_answer.entry(t.as_slice()).or_default().push(i));
    let answers: Vec<&[usize]> = by_answer.keys().copied().collect();
    let weights = size_weights(&answers, sizes);
    let cell_pooling = sets::Pooling { group: None, ..predictor.pooling() };
    let fit_of = |scores: &[SetScores]| -> (f64, f64) {
        let (mut accuracy, mut nll) = (0.0, 0.0);
        for ((s, t), w) in scores.iter().zip(&answers).zip(&weights) {
            accuracy += if mamba_perturb::metrics::rank_of(s, t) == 0 { *w } else { 0.0 };
            nll -= w * s.probability(t).max(1e-300).ln();
        }
        (accuracy, nll)
    };
    let by_cells: Vec<SetScores> = by_answer
        .values()
        .map(|members| predictor.finish_group(&predictor.group_sums(cell_pooling, members, network, product, x), head))
        .collect();
    let (accuracy, nll) = fit_of(&by_cells);
    let cells_fit = HeadFit { weight: f64::NAN, accuracy, nll };
    let has_head = predictor.card.additive.as_ref().is_some_and(|h| h.pools_groups()) && head.is_some();
    if !has_head || answers.is_empty() {
        return (None, cells_fit, HeadFit { weight: f64::NAN, accuracy: -1.0, nll: f64::INFINITY });
    }
    let start = sets::GroupModel { network_weight: 1.0, pair_error: 0.0 };
    let group_pooling = sets::Pooling { group: Some(start), ..cell_pooling };
    let sums: Vec<sets::Combination> =
        by_answer.values().map(|members| predictor.group_sums(group_pooling, members, network, product, x)).collect();
    let (mut best, mut best_fit) = (start, HeadFit { weight: f64::NAN, accuracy: -1.0, nll: f64::INFINITY });
    for pair_error in [0.0, 0.15, 0.3, 0.6] {
        for network_weight in [0.0, 0.1, 0.3, 1.0] {
            let model = sets::GroupModel { network_weight, pair_error };
            let scores: Vec<SetScores> =
                sums.iter().map(|s| predictor.finish_group(&s.with_group(model), head)).collect();
            let (a, l) = fit_of(&scores);
            if best_fit.better_than(a, l) {
                (best, best_fit) = (model, HeadFit { weight: network_weight, accuracy: a, nll: l });
            }
        }
    }
    let chosen = cells_fit.better_than(best_fit.accuracy, best_fit.nll).then_some(best);
    (chosen, cells_fit, best_fit)
}

/// Exact top-1 among cells of each answer size (control, one gene, two) and how many there were.
pub struct BySize {
    pub top1: [f64; 3],
    pub cells: [usize; 3],
}

impl BySize {
    /// As the card and the bench write it: top-1 per size (null for a size without cells), the
    /// cells, and `mix`: the sizes weighted to the design's shares `sizes`, over those with cells.
    pub fn to_json(&self, sizes: [f64; 3]) -> serde_json::Value {
        let has = |k: usize| self.cells[k] > 0;
        let weight: f64 = (0..3).filter(|&k| has(k)).map(|k| sizes[k]).sum();
        let mix = (0..3).filter(|&k| has(k)).map(|k| sizes[k] * self.top1[k]).sum::<f64>() / weight;
        let value = |k: usize| if has(k) { serde_json::json!(self.top1[k]) } else { serde_json::Value::Null };
        serde_json::json!({"control": value(0), "singles": value(1), "pairs": value(2), "mix": mix, "cells": self.cells})
    }
}

/// `BySize` of cells with their true answers (a size without cells: NaN).
pub fn top1_by_size(cells: &[(&SetScores, &[usize])]) -> BySize {
    let (mut hits, mut counts) = ([0usize; 3], [0usize; 3]);
    for (s, t) in cells {
        let k = t.len().min(2);
        counts[k] += 1;
        hits[k] += usize::from(mamba_perturb::metrics::rank_of(s, t) == 0);
    }
    let top1 = std::array::from_fn(|k| if counts[k] == 0 { f64::NAN } else { hits[k] as f64 / counts[k] as f64 });
    BySize { top1, cells: counts }
}

/// What `head_weight` chose and how the held-out cells fared with it.
pub struct HeadFit {
    pub weight: f64,
    /// The held-out cells' weighted share whose exact answer ranks first, and their weighted NLL.
    pub accuracy: f64,
    pub nll: f64,
}

impl HeadFit {
    /// Whether (accuracy, nll) would be a better choice than this one: more accurate, or as
    /// accurate (to float rounding) with a lower NLL.
    pub fn better_than(&self, accuracy: f64, nll: f64) -> bool {
        accuracy > self.accuracy + 1e-12 || ((accuracy - self.accuracy).abs() <= 1e-12 && nll < self.nll)
    }
}

/// The training cells of each single and of control, for synthetic pairs.
struct SinglesIndex {
    of_gene: Vec<Vec<usize>>,
    control: Vec<usize>,
}

impl SinglesIndex {
    fn new(targets: &[Vec<usize>], c: usize) -> Self {
        let mut of_gene = vec![Vec::new(); c];
        let mut control = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            match t.as_slice() {
                [] => control.push(i),
                [a] => of_gene[*a].push(i),
                _ => {}
            }
        }
        SinglesIndex { of_gene, control }
    }

    /// `count` synthetic pair cells: log1p(expm1(a) + expm1(b) - expm1(control)), floored at 0.
    fn synthesise(&self, count: usize, x: &[f32], g: usize, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<Vec<usize>>) {
        let genes: Vec<usize> = (0..self.of_gene.len()).filter(|&a| !self.of_gene[a].is_empty()).collect();
        if genes.len() < 2 || self.control.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let (mut out, mut targets) = (Vec::with_capacity(count * g), Vec::with_capacity(count));
        let row = |i: usize| &x[i * g..(i + 1) * g];
        for _ in 0..count {
            let a = genes[rng.random_range(0..genes.len())];
            let mut b = genes[rng.random_range(0..genes.len())];
            while b == a {
                b = genes[rng.random_range(0..genes.len())];
            }
            let pick = |cells: &[usize], rng: &mut ChaCha8Rng| cells[rng.random_range(0..cells.len())];
            let (ra, rb) = (row(pick(&self.of_gene[a], rng)), row(pick(&self.of_gene[b], rng)));
            let rc = row(pick(&self.control, rng));
            out.extend((0..g).map(|j| (ra[j].exp_m1() + rb[j].exp_m1() - rc[j].exp_m1()).max(0.0).ln_1p()));
            targets.push(if a < b { vec![a, b] } else { vec![b, a] });
        }
        (out, targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use mamba_perturb::model::NetConfig;

    #[test]
    fn calibration_takes_a_tenth_of_each_control_and_single_condition_and_no_pair() {
        let targets: Vec<Vec<usize>> = (0..600)
            .map(|i| {
                if i < 200 {
                    vec![]
                } else if i < 400 {
                    vec![i % 3]
                } else {
                    vec![0, 1]
                }
            })
            .collect();
        let rows: Vec<usize> = (1000..1600).collect();
        let (train, calibration) = calibration_cells(&rows, &targets, 7);
        assert_eq!(train.len() + calibration.len(), 600);
        let count = |keep: &dyn Fn(&[usize]) -> bool| calibration.iter().filter(|&&r| keep(&targets[r - 1000])).count();
        assert_eq!(count(&|t| t.is_empty()), 20);
        assert_eq!(count(&|t| t == [0]), 6);
        assert_eq!(count(&|t| t.len() == 2), 0);
    }

    #[test]
    fn the_guide_failure_share_is_recovered_from_cells_that_look_like_control() {
        // Cells of single 1 (of four candidates): 300 look like it, 60 look like control (a failure
        // share of 1/6), and control cells (which say nothing about failure).
        let n = 4;
        let cell = |looks_like_control: bool| {
            let mut s = SetScores::uniform(n);
            let rest = 1e-4;
            s.control = rest;
            s.singles.iter_mut().for_each(|p| *p = rest);
            s.pairs.iter_mut().for_each(|p| *p = rest);
            if looks_like_control {
                s.control = 0.99
            } else {
                s.singles[1] = 0.99
            }
            s
        };
        let (responding, failed) = (cell(false), cell(true));
        let mut cells: Vec<(&SetScores, &[usize])> = Vec::new();
        cells.extend(std::iter::repeat_n((&responding, &[1usize][..]), 300));
        cells.extend(std::iter::repeat_n((&failed, &[1usize][..]), 60));
        cells.extend(std::iter::repeat_n((&failed, &[][..]), 100));
        let prior = mamba_perturb::model::sets::answer_prior([0.2, 0.5, 0.3], n);
        let f = guide_failure(&cells, prior).unwrap();
        assert!((f - 1.0 / 6.0).abs() < 0.01, "{f}");
        // Every cell responding: no failure share.
        let f = guide_failure(&cells[..300], prior).unwrap();
        assert!(f < 0.001, "{f}");
        assert!(guide_failure(&cells[360..], prior).is_none());
    }

    #[test]
    fn an_overconfident_posterior_gets_a_temperature_above_one_that_calibrates_it() {
        // Four candidates. Each cell puts 0.9 on its top answer, which is right half the time.
        let n = 4;
        let cell = |top: &[usize]| {
            let mut s = SetScores::uniform(n);
            let rest = 0.1 / (1 + n + n * (n - 1) / 2 - 1) as f64;
            s.control = rest;
            s.singles.iter_mut().for_each(|p| *p = rest);
            s.pairs.iter_mut().for_each(|p| *p = rest);
            match top {
                [] => s.control = 0.9,
                [a] => s.singles[*a] = 0.9,
                [a, b] => s.pairs[mamba_perturb::model::sets::pair_index(*a, *b, n)] = 0.9,
                _ => unreachable!(),
            }
            s
        };
        let answers: Vec<Vec<usize>> = vec![vec![], vec![1], vec![0, 2]];
        let scores: Vec<SetScores> = (0..300).map(|i| cell(&answers[i % 3])).collect();
        let truths: Vec<Vec<usize>> = (0..300)
            .map(|i| if (i / 3) % 2 == 0 { answers[i % 3].clone() } else { answers[(i + 1) % 3].clone() })
            .collect();
        let cells: Vec<(&SetScores, &[usize])> = scores.iter().zip(truths.iter().map(Vec::as_slice)).collect();
        let fit = posterior_temperature(&cells, [0.2, 0.3, 0.5]).unwrap();
        assert!(fit.temperature > 1.0 && fit.nll_after < fit.nll_before, "{}", fit.temperature);
        let tempered: Vec<SetScores> = scores.iter().map(|s| s.tempered(fit.temperature)).collect();
        let ece = |s: &[SetScores]| mamba_perturb::metrics::score(s, &truths).ece_top1;
        assert!(ece(&tempered) < 0.05 && ece(&scores) > 0.35, "{} -> {}", ece(&scores), ece(&tempered));
    }

    /// A batch split over threads (forked parameters, gradients summed by rows) gives the loss and
    /// gradients of the whole batch at once, with a thinned panel too.
    #[test]
    fn sharded_gradients_equal_the_whole_batch() {
        let (g, c, b) = (20, 6, 48);
        let config = NetConfig { n_genes: g, n_candidates: c, d_model: 8, n_heads: 2, n_freqs: 2, cis: false };
        let device = Device::flex().autodiff();
        let net = seeded(&device, 3, || config.init(&device));
        let own: Vec<Option<usize>> = (0..c).map(Some).collect();
        let features_on =
            |d: &Device| GenomeFeatures::new(&vec![None; g], &vec![None; c], 2, &own, &vec![0.5; g], &vec![1.0; g], d);
        let (features, plain) = (features_on(&device), features_on(&Device::flex()));
        let x = Tensor::<2>::random([b, g], Distribution::Uniform(0.0, 3.0), &device);
        let targets: Vec<Vec<usize>> =
            (0..b).map(|r| [vec![], vec![r % c], vec![r % c, (r + 1) % c]][r % 3].clone()).collect();
        let (_, y, k) = batch_tensors(
            &Split { x: &vec![0.0; b * g], targets: &targets },
            &(0..b).collect::<Vec<_>>(),
            g,
            c,
            &device,
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let present = thinned_panel(b, g, 0.5, &mut rng, &device);
        let batch = Batch { x, y, k, present };
        let (whole_loss, whole) = batch_gradients(&net, &features, &batch, 1);
        let (split_loss, split) = batch_gradients(&net, &features, &batch, 3);
        assert!((whole_loss - split_loss).abs() < 1e-5, "{whole_loss} vs {split_loss}");
        // One plain gradient step from each: the same model after it (every weight's gradient).
        let step = |grads: GradientsParams| {
            let mut sgd = burn::optim::SgdConfig::new().init();
            let moved = sgd.step(0.5, net.clone(), grads);
            let (gene, count) = SetModel::logits(&moved.valid(), batch.x.clone().inner(), &plain);
            let mut v: Vec<f32> = gene.into_data().try_to_vec().unwrap();
            v.extend(count.into_data().try_to_vec::<f32>().unwrap());
            v
        };
        let (before, _) = SetModel::logits(&net.valid(), batch.x.clone().inner(), &plain);
        let before: Vec<f32> = before.into_data().try_to_vec().unwrap();
        let (a, s) = (step(whole), step(split));
        assert!(a.iter().zip(&before).any(|(u, v)| (u - v).abs() > 1e-3), "the step moved the model");
        for (u, v) in a.iter().zip(&s) {
            assert!((u - v).abs() < 1e-3, "{u} vs {v}");
        }
    }
}
