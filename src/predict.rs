//! The model at work: match a file's genes to the model's panel, normalise as in training, run the
//! network, and rank control, every single and every pair (`top_k`, one pure function for every
//! face). `analysis` drives it for an opened file.

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::Serialize;

use crate::genome::strip_version;
use crate::io::ExpressionData;
use crate::model::additive::{AdditiveHead, Evidence, HeadTerms};
use crate::model::card::{CardError, ModelCard};
use crate::model::sets::{self, SetScores, pair_at};
use crate::model::{GenomeFeatures, PerturbNet};
use crate::normalize::{self, ValueKind};
use crate::reference::{Reference, ReferenceCells};

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("model weights do not fit the model card's architecture: {0}")]
    Weights(String),
    #[error(
        "none of the file's {file_genes} genes matches the model's {panel} panel genes (by Ensembl ID or symbol), e.g. the file has '{example}' and the panel '{panel_example}'"
    )]
    NoCommonGenes { file_genes: usize, panel: usize, example: String, panel_example: String },
    #[error("reading the network output: {0}")]
    Output(String),
}

/// A trained model ready to predict.
pub struct Predictor {
    pub card: ModelCard,
    net: PerturbNet,
    features: GenomeFeatures,
    device: Device,
}

/// The file's cells projected onto the model's panel and normalised, with a report for people.
pub struct Prepared {
    pub cells: Vec<String>,
    /// cells × panel genes, row-major, log1p(CP10k).
    pub values: Vec<f32>,
    /// Per panel gene: whether the file measures it (an unmeasured gene's value is 0 and the
    /// network treats it as absent).
    pub measured: Vec<bool>,
    pub n_genes: usize,
    /// What each gene is measured against (the file's own cells, as the model expects).
    pub reference: Reference,
    /// The additive head's terms for this file (None: the model has no head).
    pub head: Option<HeadTerms>,
    pub report: MatchReport,
}

#[derive(Clone, Debug, Serialize)]
pub struct MatchReport {
    pub panel_genes: usize,
    pub matched: usize,
    /// Panel genes absent from the file (absent for the network too: not attended to).
    pub missing: Vec<String>,
    pub values: ValueKind,
    /// What each gene's level is measured against, e.g. "this file's 1000 cells".
    pub reference: String,
    /// Share of cells further from the reference than 99% of the training cells were from theirs.
    pub atypical_cells: f64,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Ranked {
    pub perturbation: String,
    pub probability: f64,
}

/// Cells per forward pass (the CLI's default batch) for a model of Norman's size, and the most
/// cells × queries a pass holds: with 10,000 candidates a pass is 2 cells (each cell's
/// [queries × width] tensors are 1.3 MB there; 256 cells' took a page worker past 2 GB).
const MAX_PASS_ROWS: usize = 256;
const MAX_PASS_QUERY_ROWS: usize = MAX_PASS_ROWS * 106;

impl Predictor {
    /// Builds the network from the card and loads burnpack weights into it.
    pub fn load(card_json: &str, weights: Vec<u8>, device: &Device) -> Result<Predictor, PredictError> {
        let card = ModelCard::from_json(card_json)?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights))
            .map_err(|e| PredictError::Weights(format!("{e:?}")))?;
        let net = card.net.init(device).try_load_record(record).map_err(|e| PredictError::Weights(format!("{e:?}")))?;
        Ok(Predictor::from_parts(card, net, device))
    }

    pub fn from_parts(card: ModelCard, net: PerturbNet, device: &Device) -> Predictor {
        let gene_loci: Vec<_> = card.panel.iter().map(|g| g.locus()).collect();
        let cand_loci: Vec<_> = card.candidates.iter().map(|g| g.locus()).collect();
        let features = GenomeFeatures::new(
            &gene_loci,
            &cand_loci,
            card.net.n_freqs,
            &card.own_genes(),
            &card.reference_mean,
            &card.reference_sd,
            device,
        );
        Predictor { card, net, features, device: device.clone() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn net(&self) -> &PerturbNet {
        &self.net
    }

    pub fn features(&self) -> &GenomeFeatures {
        &self.features
    }

    /// The model's training reference with every panel gene measured (the card's mean and sd).
    pub fn training_reference(&self) -> Reference {
        Reference {
            mean: self.card.reference_mean.clone(),
            sd: self.card.reference_sd.clone(),
            measured: vec![true; self.card.panel.len()],
            source: "the model's training cells".into(),
        }
    }

    pub fn candidates(&self) -> Vec<String> {
        self.card.candidates.iter().map(|g| g.symbol.clone()).collect()
    }

    /// Normalises the file as in training and lays its values out in panel order, measured against
    /// all of its cells.
    pub fn prepare(&self, data: &ExpressionData) -> Result<Prepared, PredictError> {
        self.prepare_with(data, &ReferenceCells::default())
    }

    /// `prepare` with the reference taken from the cells `cells` names (control cells, batches).
    pub fn prepare_with(&self, data: &ExpressionData, cells: &ReferenceCells) -> Result<Prepared, PredictError> {
        let panel = &self.card.panel;
        let columns = match_genes(data, panel.iter().map(|g| (g.symbol.as_str(), g.gene_id.as_deref())));
        let matched = columns.iter().filter(|c| c.is_some()).count();
        if matched == 0 {
            return Err(PredictError::NoCommonGenes {
                file_genes: data.genes_in_file(),
                panel: panel.len(),
                example: data.genes.first().cloned().unwrap_or_default(),
                panel_example: panel.first().map(|g| g.symbol.clone()).unwrap_or_default(),
            });
        }
        let values = normalize::detect(&data.matrix);
        let totals = data.subset.as_ref().map(|s| s.row_totals.as_slice());
        let g = panel.len();
        let mut x = normalize::normalized_columns(&data.matrix, values, totals, &columns);
        let missing: Vec<String> =
            columns.iter().zip(panel).filter(|(c, _)| c.is_none()).map(|(_, p)| p.symbol.clone()).collect();
        let measured: Vec<bool> = columns.iter().map(Option::is_some).collect();
        let card = &self.card;
        let (reference, mut warnings) =
            Reference::for_cells(&mut x, &measured, card.reference, (&card.reference_mean, &card.reference_sd), cells);
        let atypical_cells = self.atypical_share(&x, &reference);
        if matched * 10 < g * 8 {
            warnings.push(format!(
                "only {matched} of the model's {g} panel genes are in the file; predictions will be less reliable"
            ));
        }
        if atypical_cells > 0.2 {
            warnings.push(format!(
                "{:.0}% of cells look unlike the training data (training: 1%); check the species, the gene names and the normalisation",
                atypical_cells * 100.0
            ));
        }
        Ok(Prepared {
            cells: data.cells.clone(),
            values: x,
            measured,
            n_genes: g,
            report: MatchReport {
                panel_genes: g,
                matched,
                missing,
                values,
                reference: reference.source.clone(),
                atypical_cells,
                warnings,
            },
            head: self.head_terms(&reference),
            reference,
        })
    }

    /// Share of cells whose mean squared z-score over the measured panel genes exceeds the training
    /// cells' 99th percentile (each against its own reference).
    fn atypical_share(&self, x: &[f32], reference: &Reference) -> f64 {
        let g = reference.mean.len();
        let n = x.len() / g.max(1);
        if n == 0 {
            return 0.0;
        }
        let limit = self.card.metrics.get("typicality_p99").and_then(|v| v.as_f64()).unwrap_or(f64::INFINITY);
        let far = x.chunks(g).filter(|row| typicality(row, reference) > limit).count();
        far as f64 / n as f64
    }

    fn run(&self, x: &[f32], rows: usize, reference: &Reference, with_attention: bool) -> crate::model::NetOutput {
        let input = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [rows, self.card.net.n_genes]), &self.device);
        let features = self.features.with_reference(&reference.mean, &reference.sd, &reference.measured);
        self.net.forward(input, &features, with_attention)
    }

    /// Runs the network on `rows` cells (row-major `x`, measured against `reference`) and returns
    /// their gene and count logits, at most `MAX_PASS_ROWS` cells per forward pass.
    pub fn logits(&self, x: &[f32], rows: usize, reference: &Reference) -> Result<(Vec<f32>, Vec<f32>), PredictError> {
        let features = self.features.with_reference(&reference.mean, &reference.sd, &reference.measured);
        let mut out = (Vec::new(), Vec::new());
        for (x, rows) in self.passes(x, rows) {
            let (gene, count) = self.net.row_logits(x, rows, &features).map_err(PredictError::Output)?;
            out.0.extend(gene);
            out.1.extend(count);
        }
        Ok(out)
    }

    /// The same as `logits`, reading results asynchronously (required in the browser).
    pub async fn logits_async(
        &self,
        x: &[f32],
        rows: usize,
        reference: &Reference,
    ) -> Result<(Vec<f32>, Vec<f32>), PredictError> {
        let mut out = (Vec::new(), Vec::new());
        for (x, rows) in self.passes(x, rows) {
            let pass = self.run(x, rows, reference, false);
            out.0.extend(read(pass.gene_logits.into_data_async().await)?);
            out.1.extend(read(pass.count_logits.into_data_async().await)?);
        }
        Ok(out)
    }

    /// `rows` cells of `x` in forward passes of at most `MAX_PASS_ROWS` (fewer with many candidates): the network's
    /// intermediate tensors (cells × genes × width) stay small however many cells come at once.
    fn passes<'a>(&self, x: &'a [f32], rows: usize) -> impl Iterator<Item = (&'a [f32], usize)> + use<'a> {
        let g = self.card.net.n_genes.max(1);
        let per_pass = (MAX_PASS_QUERY_ROWS / (self.card.net.n_candidates + 1)).clamp(1, MAX_PASS_ROWS);
        x[..(rows * g).min(x.len())].chunks(per_pass * g).map(move |part| (part, part.len() / g))
    }

    /// Attention over the panel genes (mean over heads) of each of `queries` (candidate indices, or
    /// `n_candidates` for "no perturbation"), for each of `rows` profiles: rows × queries × genes.
    pub fn attention(
        &self,
        x: &[f32],
        rows: usize,
        reference: &Reference,
        queries: &[usize],
    ) -> Result<Vec<f32>, PredictError> {
        read(self.attention_rows(x, rows, reference, queries)?.try_into_data())
    }

    /// The same as `attention`, read asynchronously for the browser.
    pub async fn attention_async(
        &self,
        x: &[f32],
        rows: usize,
        reference: &Reference,
        queries: &[usize],
    ) -> Result<Vec<f32>, PredictError> {
        read(self.attention_rows(x, rows, reference, queries)?.into_data_async().await)
    }

    fn attention_rows(
        &self,
        x: &[f32],
        rows: usize,
        reference: &Reference,
        queries: &[usize],
    ) -> Result<Tensor<4>, PredictError> {
        let w = self
            .run(x, rows, reference, true)
            .attention
            .ok_or_else(|| PredictError::Output("no attention returned".into()))?;
        let [_, heads, _, _] = w.dims();
        let index: Vec<i64> = queries.iter().map(|&q| q as i64).collect();
        let picked = w.select(2, Tensor::<1, burn::tensor::Int>::from_ints(index.as_slice(), &self.device));
        Ok(picked.sum_dim(1).div_scalar(heads as f32)) // [rows, 1, queries, genes]
    }

    /// The additive head's terms for files measured against `reference` (None: no head).
    pub fn head_terms(&self, reference: &Reference) -> Option<HeadTerms> {
        let head = self.card.additive.as_ref()?;
        Some(head.terms(&AdditiveHead::scale(&self.training_reference(), reference), &reference.measured))
    }

    /// The additive head's evidence per row of `x` (empty for a model without the head).
    pub fn evidence(&self, x: &[f32], terms: Option<&HeadTerms>) -> Vec<Evidence> {
        let (Some(head), Some(terms)) = (&self.card.additive, terms) else { return Vec::new() };
        head.evidence_rows(x, terms)
    }

    /// The model's answer distributions from the network's outputs and the head's evidence (as
    /// `logits` and `evidence` return them; no evidence: the network's alone): the one place both
    /// are combined.
    pub fn scores(&self, gene: &[f32], count: &[f32], evidence: &[Evidence]) -> Vec<SetScores> {
        self.scores_with_logs(gene, count, evidence).map(|(s, _)| s).collect()
    }

    /// The same, each with its answers' log probabilities (what pseudobulks add up).
    pub fn scores_with_logs<'a>(
        &self,
        gene: &'a [f32],
        count: &'a [f32],
        evidence: &'a [Evidence],
    ) -> impl Iterator<Item = (SetScores, Vec<f64>)> + 'a {
        let t = self.card.posterior_temperature.unwrap_or(1.0);
        let evidence = evidence.iter().map(|e| Some((e.singles.as_slice(), e.pairs.as_slice())));
        let rows = gene.chunks(self.card.net.n_candidates).zip(count.chunks(3));
        let with_evidence = rows.zip(evidence.chain(std::iter::repeat(None)));
        with_evidence.map(move |((g, c), e)| SetScores::from_parts_with_logs(g, c, e, t))
    }

    /// How this model pools cells into a group's answer: its answer sizes (the design's, card
    /// `answer_sizes`; equal sizes for older cards) as the prior, its fitted guide-failure share and,
    /// when its head records fold variances, its group model (card `group_model`).
    pub fn pooling(&self) -> sets::Pooling {
        let card = &self.card;
        let prior = sets::answer_prior(card.answer_sizes.unwrap_or([1.0 / 3.0; 3]), card.net.n_candidates);
        let group = card.group_model.filter(|_| card.additive.as_ref().is_some_and(|h| h.pools_groups()));
        sets::Pooling { prior, guide_failure: card.guide_failure.unwrap_or(0.0), group }
    }

    /// What a group adds up of one cell, its `Pooling::cell_terms` under `pooling` (this model's
    /// `pooling()`; `gene`, `count`: its network outputs; `product`: its log posteriors in answer
    /// order): of the network's own log probabilities when the head speaks for the group as a
    /// whole (`sets::GroupModel`; at the card's posterior temperature, as `network_scores` gives
    /// them to train, which fits the group model), else of the cell's posterior. None when the
    /// pooling does not `weighs_cells` (the default model's): they would count for nothing, and
    /// building them (an exponential and a logarithm per answer) was a fifth of a cell's time.
    pub fn group_terms(&self, pooling: &sets::Pooling, gene: &[f32], count: &[f32], product: Vec<f64>) -> Vec<f64> {
        let c = self.card.net.n_candidates;
        match pooling.group {
            _ if !pooling.weighs_cells() => Vec::new(),
            Some(_) => {
                let t = self.card.posterior_temperature.unwrap_or(1.0);
                pooling.cell_terms(&SetScores::network_logs(gene, count, t), c)
            }
            None => pooling.cell_terms(&product, c),
        }
    }

    /// A group's answer distribution from its sums (`head`: the file's head terms).
    pub fn finish_group(&self, group: &sets::Combination, head: Option<&HeadTerms>) -> SetScores {
        group.finish_with_head(self.card.additive.as_ref().zip(head))
    }

    /// One group's sums (finished by `finish_group`) from its cells' network distributions
    /// (`network`, as `network_scores` gives them), posteriors (`product`) and rows of `x` (log1p
    /// CP10k over the panel), pooled by `pooling` (e.g. `Predictor::pooling`).
    pub fn group_sums(
        &self,
        pooling: sets::Pooling,
        members: &[usize],
        network: &[SetScores],
        product: &[SetScores],
        x: &[f32],
    ) -> sets::Combination {
        let (c, g) = (self.card.net.n_candidates, self.card.net.n_genes);
        let logs = |s: &SetScores| -> Vec<f64> {
            let p = std::iter::once(&s.control).chain(&s.singles).chain(&s.pairs);
            p.map(|&p| p.max(1e-300).ln()).collect()
        };
        let mut group = sets::Combination::new(c, pooling);
        for &i in members {
            let cell = if pooling.group.is_some() { &network[i] } else { &product[i] };
            let terms = if pooling.weighs_cells() { pooling.cell_terms(&logs(cell), c) } else { Vec::new() };
            group.add_cell(&terms, &x[i * g..(i + 1) * g]);
        }
        group
    }

    /// The network's distributions times the head's evidence, at the card's posterior temperature.
    pub fn combine(&self, scores: Vec<SetScores>, evidence: &[Evidence]) -> Vec<SetScores> {
        let combined = combine(scores, evidence);
        match self.card.posterior_temperature {
            Some(t) if t != 1.0 => combined.iter().map(|s| s.tempered(t)).collect(),
            _ => combined,
        }
    }

    /// The same without the head: the network's own distributions (the `network-only` ablation).
    pub fn network_scores(
        &self,
        x: &[f32],
        reference: &Reference,
        batch: usize,
    ) -> Result<Vec<SetScores>, PredictError> {
        self.score_rows_with(x, reference, batch, false)
    }

    /// Scores rows of normalised panel values (row-major), `batch` rows per forward pass.
    pub fn score_rows(&self, x: &[f32], reference: &Reference, batch: usize) -> Result<Vec<SetScores>, PredictError> {
        self.score_rows_with(x, reference, batch, true)
    }

    fn score_rows_with(
        &self,
        x: &[f32],
        reference: &Reference,
        batch: usize,
        head: bool,
    ) -> Result<Vec<SetScores>, PredictError> {
        let g = self.card.net.n_genes;
        let mut out = Vec::with_capacity(x.len() / g.max(1));
        let terms = if head { self.head_terms(reference) } else { None };
        for chunk in x.chunks(batch.max(1) * g) {
            let (gene_logits, count_logits) = self.logits(chunk, chunk.len() / g, reference)?;
            let evidence = self.evidence(chunk, terms.as_ref());
            out.extend(self.scores(&gene_logits, &count_logits, &evidence));
        }
        Ok(out)
    }

    /// Scores every cell, `batch` cells at a time, reporting (done, total) after each batch.
    pub fn score_cells(
        &self,
        prepared: &Prepared,
        batch: usize,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Vec<SetScores>, PredictError> {
        let (g, n, batch) = (prepared.n_genes, prepared.cells.len(), batch.max(1));
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(batch) {
            let end = (start + batch).min(n);
            out.extend(self.score_rows(&prepared.values[start * g..end * g], &prepared.reference, batch)?);
            progress(end, n);
        }
        Ok(out)
    }
}

fn read<E: std::fmt::Debug>(data: Result<TensorData, E>) -> Result<Vec<f32>, PredictError> {
    data.map_err(|e| PredictError::Output(format!("{e:?}")))?
        .try_to_vec::<f32>()
        .map_err(|e| PredictError::Output(format!("{e:?}")))
}

/// Per-row distributions times the additive head's evidence (none: unchanged). The same rule puts
/// the head on top of other per-row distributions (the benchmark's ablations).
pub fn combine(scores: Vec<SetScores>, evidence: &[Evidence]) -> Vec<SetScores> {
    if evidence.is_empty() {
        return scores;
    }
    scores.iter().zip(evidence).map(|(s, e)| s.with_evidence(&e.singles, &e.pairs)).collect()
}

/// Per-row answer distributions from gene logits ([rows × candidates]) and count logits ([rows × 3]).
pub fn set_scores(gene: &[f32], count: &[f32], n_candidates: usize) -> Vec<SetScores> {
    gene.chunks(n_candidates).zip(count.chunks(3)).map(|(g, c)| SetScores::from_logits(g, c)).collect()
}

/// Mean of the given rows of a row-major matrix with `g` columns (a pseudobulk profile).
pub fn mean_profile(x: &[f32], g: usize, members: &[usize]) -> Vec<f32> {
    let mut m = vec![0f32; g];
    for &i in members {
        for (acc, v) in m.iter_mut().zip(&x[i * g..(i + 1) * g]) {
            *acc += v;
        }
    }
    m.iter_mut().for_each(|v| *v /= members.len().max(1) as f32);
    m
}

/// Mean squared z-score of a normalised profile over the genes its reference measures (clipped per gene).
pub fn typicality(row: &[f32], reference: &Reference) -> f64 {
    let mut n = 0usize;
    let mut total = 0f64;
    for (j, &x) in row.iter().enumerate().filter(|(j, _)| reference.measured[*j]) {
        let z = (x - reference.mean[j]) as f64 / (reference.sd[j] as f64).max(0.05);
        total += z.clamp(-10.0, 10.0).powi(2);
        n += 1;
    }
    total / n.max(1) as f64
}

/// For each wanted gene, the file's column: by Ensembl ID (version ignored) first, then symbol
/// (case-insensitive). The first occurrence wins for duplicated names.
pub fn match_genes<'a>(
    data: &ExpressionData,
    wanted: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<Option<usize>> {
    let mut by_symbol = std::collections::HashMap::new();
    for (j, g) in data.genes.iter().enumerate() {
        by_symbol.entry(g.to_ascii_uppercase()).or_insert(j);
    }
    let mut by_id = std::collections::HashMap::new();
    if let Some(ids) = &data.gene_ids {
        for (j, id) in ids.iter().enumerate() {
            by_id.entry(strip_version(id).to_string()).or_insert(j);
        }
    }
    wanted
        .map(|(symbol, id)| {
            id.and_then(|id| by_id.get(strip_version(id)).copied())
                .or_else(|| by_symbol.get(&symbol.to_ascii_uppercase()).copied())
        })
        .collect()
}

/// The `k` most probable answers, written as `control` or sorted `+`-joined genes.
pub fn top_k(scores: &SetScores, candidates: &[String], k: usize) -> Vec<Ranked> {
    let top = top_codes(scores, k);
    top.into_iter().map(|(code, p)| Ranked { perturbation: answer_name(code, candidates), probability: p }).collect()
}

/// The `k` most probable answers as (code, probability), most probable first; a code is
/// `CONTROL_CODE`, a candidate index, or the number of candidates plus a pair's `pair_index`.
pub fn top_codes(scores: &SetScores, k: usize) -> Vec<(usize, f64)> {
    let n = scores.singles.len();
    let mut all: Vec<(f64, usize)> = Vec::with_capacity(1 + n + scores.pairs.len());
    all.push((scores.control, CONTROL_CODE));
    all.extend(scores.singles.iter().enumerate().map(|(i, &p)| (p, i)));
    all.extend(scores.pairs.iter().enumerate().map(|(i, &p)| (p, n + i)));
    let k = k.min(all.len());
    all.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.0.total_cmp(&a.0));
    all.truncate(k);
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    all.into_iter().map(|(p, code)| (code, p)).collect()
}

/// The code of "no perturbation" among `top_codes`.
pub const CONTROL_CODE: usize = u32::MAX as usize;

/// An answer's name from its code (`top_codes`): `control`, a gene, or a sorted `A+B`.
pub fn answer_name(code: usize, candidates: &[String]) -> String {
    let n = candidates.len();
    if code == CONTROL_CODE {
        "control".into()
    } else if code < n {
        candidates[code].clone()
    } else {
        let (a, b) = pair_at(code - n, n);
        let mut pair = [candidates[a].as_str(), candidates[b].as_str()];
        pair.sort();
        pair.join("+")
    }
}

/// Where the page runs a model: Burn's CPU backend (WebAssembly) or WebGPU, by the names the page
/// and its links use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    WebGpu,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Backend::Cpu),
            "webgpu" => Ok(Backend::WebGpu),
            other => Err(format!("unknown backend '{other}' (use 'cpu' or 'webgpu')")),
        }
    }
}

#[cfg(test)]
mod backend_tests {
    use super::Backend;

    #[test]
    fn backends_are_named_as_the_page_names_them() {
        assert_eq!("cpu".parse(), Ok(Backend::Cpu));
        assert_eq!("webgpu".parse(), Ok(Backend::WebGpu));
        let err = "gpu".parse::<Backend>().unwrap_err();
        assert!(err.contains("'gpu'") && err.contains("'cpu' or 'webgpu'"), "{err}");
    }
}
