//! The network: cross-attention from perturbation queries to gene tokens whose embeddings carry each
//! measured gene's chromosome (24-way one-hot) and relative locus, so attention reads as a map
//! along the genome. Inputs are the cell's normalised expression over the model's gene panel; gene
//! positions come from the genome table (properties of the measured genes), never from labels.
//!
//! Each candidate's query also reads its own gene's token directly (when the panel measures that
//! gene): the cis evidence of CRISPRa, next to what attention gathers from the rest of the genome.
//! With the candidates' expression masked there is no own token and only attention speaks.
//!
//! Output: one logit per candidate target gene and a 3-way cardinality (0, 1 or 2 genes perturbed).
//! Together they define a distribution over control, every single and every pair (`sets.rs`).

pub mod additive;
pub mod card;
#[cfg(feature = "train")]
mod cpu_kernels;
mod cpu_math;
pub mod features;
pub mod sets;
pub mod shrinkage;

use burn::module::Module;
use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor};

pub use features::GenomeFeatures;

/// Architecture sizes (saved in the model card so weights can be rebuilt).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// Genes in the panel (gene tokens).
    pub n_genes: usize,
    /// Candidate target genes (queries besides the "no perturbation" one).
    pub n_candidates: usize,
    pub d_model: usize,
    pub n_heads: usize,
    /// Sinusoidal frequencies used to encode the relative locus.
    pub n_freqs: usize,
    /// A cis path: one small function, shared by every candidate, of the z-score of the candidate's
    /// own gene, added to its logit. CRISPRa raises its target in any screen, so this rule carries
    /// over to other files and to genes never seen in training. False for models from before it.
    #[serde(default)]
    pub cis: bool,
}

impl NetConfig {
    /// Floating-point operations of a batch's forward pass (multiply-adds count as 2), as the code
    /// runs them: per cell the value MLP, key/value projections, attention scores and context,
    /// output projection and heads; once per batch the query projection.
    pub fn forward_flops(&self, batch: usize) -> f64 {
        let (g, q, d) = (self.n_genes as f64, (self.n_candidates + 1) as f64, self.d_model as f64);
        let per_cell = g * (d + d * d)
            + 2.0 * g * d * d
            + 2.0 * q * g * d
            + q * d * d
            + q * (2.0 * d * d + d)
            + 3.0 * d
            + if self.cis { 2.0 * q * d } else { 0.0 };
        2.0 * (batch as f64 * per_cell + q * d * d)
    }
}

/// Whether tensors on `device` run on the flex CPU backend (with or without autodiff).
pub fn on_flex(device: &Device) -> bool {
    matches!(device.clone().inner().as_dispatch(), burn::backend::DispatchDevice::Flex(_))
}

/// Exact GELU: on the CPU a vectorised kernel (`cpu_math.rs`; in the CLI with its own backward
/// pass, `cpu_kernels.rs`), elsewhere Burn's.
fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "train")]
    return cpu_kernels::gelu(x);
    #[cfg(not(feature = "train"))]
    if on_flex(&x.device()) && x.dtype() == burn::tensor::DType::F32 {
        cpu_math::on_tensors::gelu(x)
    } else {
        burn::tensor::activation::gelu(x)
    }
}

#[derive(Module, Debug)]
pub struct PerturbNet {
    /// Expression value → token: Linear(1, d) → GELU → Linear(d, d).
    value_in: Linear,
    value_out: Linear,
    /// Learned identity of each panel gene.
    gene_id: Embedding,
    /// Chromosome one-hot (24) → d, shared by gene tokens and queries.
    chrom: Linear,
    /// Sinusoidal locus features → d, shared by gene tokens and queries.
    locus: Linear,
    /// Learned identity of each candidate query, plus the "no perturbation" query (last).
    query_id: Embedding,
    token_norm: LayerNorm,
    attention: MultiHeadAttention,
    /// [attention context ; own-gene token] → hidden.
    head_hidden: Linear,
    head_gene: Linear,
    head_count: Linear,
    /// z-score of the own gene → d → 1 (None without the cis path).
    cis_in: Option<Linear>,
    cis_out: Option<Linear>,
}

/// What a forward pass returns.
pub struct NetOutput {
    /// [batch, candidates]: evidence that each candidate gene is perturbed.
    pub gene_logits: Tensor<2>,
    /// [batch, 3]: logits of 0, 1 or 2 perturbed genes.
    pub count_logits: Tensor<2>,
    /// [batch, heads, queries, genes], only when asked for (it is large).
    pub attention: Option<Tensor<4>>,
}

impl NetConfig {
    pub fn init(&self, device: &Device) -> PerturbNet {
        let d = self.d_model;
        PerturbNet {
            value_in: LinearConfig::new(1, d).init(device),
            value_out: LinearConfig::new(d, d).init(device),
            gene_id: EmbeddingConfig::new(self.n_genes, d).init(device),
            chrom: LinearConfig::new(features::N_CHROM_FEATURES, d).with_bias(false).init(device),
            locus: LinearConfig::new(2 * self.n_freqs, d).with_bias(false).init(device),
            query_id: EmbeddingConfig::new(self.n_candidates + 1, d).init(device),
            token_norm: LayerNormConfig::new(d).init(device),
            attention: MultiHeadAttentionConfig::new(d, self.n_heads).with_dropout(0.0).init(device),
            head_hidden: LinearConfig::new(2 * d, d).init(device),
            head_gene: LinearConfig::new(d, 1).init(device),
            head_count: LinearConfig::new(d, 3).init(device),
            cis_in: self.cis.then(|| LinearConfig::new(1, d).init(device)),
            cis_out: self.cis.then(|| LinearConfig::new(d, 1).init(device)),
        }
    }
}

impl PerturbNet {
    /// The same network with its output logits divided by `t` (temperature scaling, folded into the
    /// heads so the page and every face run it unchanged). Gene logits are divided before their
    /// bound, so `bound(raw / t)` is what comes out.
    pub fn with_temperature(mut self, t: f32) -> Self {
        let scale = |l: Linear| Linear {
            weight: l.weight.map(|w| w.div_scalar(t)),
            bias: l.bias.map(|b| b.map(|b| b.div_scalar(t))),
        };
        self.head_gene = scale(self.head_gene);
        self.head_count = scale(self.head_count);
        self.cis_out = self.cis_out.map(scale);
        self
    }

    /// Gene and count logits of `rows` cells (row-major `x`), read back. On the native CPU the rows
    /// are split over threads, each running its share of the batch: most of Burn's CPU kernels run
    /// on one thread.
    pub fn row_logits(&self, x: &[f32], rows: usize, genome: &GenomeFeatures) -> Result<(Vec<f32>, Vec<f32>), String> {
        let device = genome.gene_mean.device();
        let n_genes = genome.gene_mean.dims()[1];
        let run = |x: &[f32], rows: usize| -> Result<(Vec<f32>, Vec<f32>), String> {
            let input = Tensor::<2>::from_data(burn::tensor::TensorData::new(x.to_vec(), [rows, n_genes]), &device);
            let out = self.forward(input, genome, false);
            let read = |t: Tensor<2>| -> Result<Vec<f32>, String> {
                t.try_into_data().map_err(|e| format!("{e:?}"))?.try_to_vec().map_err(|e| format!("{e:?}"))
            };
            Ok((read(out.gene_logits)?, read(out.count_logits)?))
        };
        #[cfg(not(target_arch = "wasm32"))]
        {
            const MIN_SHARD_ROWS: usize = 16;
            let threads = rayon::current_num_threads().min(rows / MIN_SHARD_ROWS);
            if on_flex(&device) && threads > 1 {
                let size = rows.div_ceil(threads);
                let parts = std::thread::scope(|scope| {
                    let handles: Vec<_> = x
                        .chunks(size * n_genes)
                        .map(|part| scope.spawn(move || run(part, part.len() / n_genes)))
                        .collect();
                    handles.into_iter().map(|h| h.join().expect("an inference shard panicked")).collect::<Vec<_>>()
                });
                let (mut gene, mut count) = (Vec::new(), Vec::new());
                for part in parts {
                    let (g, c) = part?;
                    gene.extend(g);
                    count.extend(c);
                }
                return Ok((gene, count));
            }
        }
        run(x, rows)
    }

    /// `x`: [batch, genes] normalised expression (log1p CP10k) over the panel.
    pub fn forward(&self, x: Tensor<2>, genome: &GenomeFeatures, with_attention: bool) -> NetOutput {
        let [batch, n_genes] = x.dims();
        let device = x.device();

        // Gene tokens: expression embedding (of the z-score, clipped) + identity + chromosome + locus.
        let z = ((x - genome.gene_mean.clone()) * genome.gene_inv_sd.clone()).clamp(-5.0, 10.0);
        let value = gelu(self.value_in.forward(z.clone().unsqueeze_dim::<3>(2)));
        let value = self.value_out.forward(value); // [B, G, d]
        let ids = Tensor::<1, Int>::arange(0..n_genes as i64, &device).unsqueeze::<2>();
        let identity = self.gene_id.forward(ids); // [1, G, d]
        let place = self.chrom.forward(genome.gene_chrom.clone()) + self.locus.forward(genome.gene_locus.clone());
        let tokens = self.token_norm.forward(value + identity + place.unsqueeze::<3>()); // [B, G, d]

        // Queries: one per candidate gene (its identity + its own place on the genome) + control.
        // They do not depend on the cell, so they are built and projected once per batch.
        let n_queries = genome.query_chrom.dims()[0];
        let qids = Tensor::<1, Int>::arange(0..n_queries as i64, &device).unsqueeze::<2>();
        let query_place =
            self.chrom.forward(genome.query_chrom.clone()) + self.locus.forward(genome.query_locus.clone());
        let queries = self.query_id.forward(qids).squeeze_dim::<2>(0) + query_place; // [Q, d]

        // Each candidate's own gene token (a zero token when the panel lacks that gene; zeros for control).
        let d = self.gene_id.weight.dims()[1];
        let padded = Tensor::cat(vec![tokens.clone(), Tensor::zeros([batch, 1, d], &device)], 1); // [B, G+1, d]
        let mut own = padded.select(1, genome.own_token.clone()); // [B, Q, d]

        // Genes the input does not measure are absent: no key to attend to, no own token.
        // [rows, Q]: 1 where a query's own gene is present (the padded column stands for "none").
        let own_present = |present: Tensor<2>| {
            let rows = present.dims()[0];
            Tensor::cat(vec![present, Tensor::zeros([rows, 1], &device)], 1).select(1, genome.own_token.clone())
        };
        let mut has_own = None;
        let mut absent = None;
        if let Some(present) = &genome.present {
            let present = present.clone().expand([batch, n_genes]);
            let gate = own_present(present.clone());
            own = own * gate.clone().unsqueeze_dim::<3>(2);
            absent = Some(present.lower_elem(0.5));
            has_own = Some(gate);
        }
        let (context, weights) = self.attend(queries, tokens, absent, with_attention);
        let hidden = gelu(self.head_hidden.forward(Tensor::cat(vec![context, own], 2))); // [B, Q, d]
        let n_candidates = n_queries - 1;
        let mut raw = self.head_gene.forward(hidden.clone().narrow(1, 0, n_candidates)).squeeze_dim::<2>(2);
        if let (Some(cis_in), Some(cis_out)) = (&self.cis_in, &self.cis_out) {
            let padded = Tensor::cat(vec![z, Tensor::zeros([batch, 1], &device)], 1);
            let own_z = padded.select(1, genome.own_token.clone()).narrow(1, 0, n_candidates); // [B, C]
            let cis = cis_out.forward(gelu(cis_in.forward(own_z.unsqueeze_dim::<3>(2)))).squeeze_dim::<2>(2);
            let has_own = has_own.unwrap_or_else(|| own_present(Tensor::ones([1, n_genes], &device)));
            raw = raw + cis * has_own.narrow(1, 0, n_candidates);
        }
        let gene_logits = sets::bound(raw);
        let count_logits = self.head_count.forward(hidden.narrow(1, n_candidates, 1)).squeeze_dim::<2>(1);
        NetOutput { gene_logits, count_logits, attention: weights }
    }

    /// Multi-head cross-attention of the queries ([Q, d], the same for every cell) over each cell's
    /// gene tokens ([B, G, d]); `absent` ([B, G]) masks keys the input does not measure. The
    /// arithmetic of Burn's `MultiHeadAttention` (whose weights it uses), with the queries projected
    /// once rather than once per cell. Returns the context [B, Q, d] and, when asked, the weights
    /// [B, heads, Q, G].
    fn attend(
        &self,
        queries: Tensor<2>,
        tokens: Tensor<3>,
        absent: Option<Tensor<2, Bool>>,
        with_weights: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let mha = &self.attention;
        let [batch, n_genes, d] = tokens.dims();
        let n_queries = queries.dims()[0];
        let (h, dk) = (mha.n_heads, mha.d_k);
        let scale = 1.0 / (dk as f64).sqrt();
        let (q, k, v) =
            (mha.query.forward(queries).unsqueeze::<3>(), mha.key.forward(tokens.clone()), mha.value.forward(tokens));
        #[cfg(feature = "train")]
        if !with_weights && cpu_kernels::on_flex_f32(&k) {
            // The CLI on the CPU: one fused kernel forwards and backwards, reading the heads in
            // place (`cpu_kernels.rs`).
            let context = cpu_kernels::attention(q.mul_scalar(scale), k, v, absent, mha.min_float, h);
            return (mha.output.forward(context), None);
        }
        #[cfg(not(feature = "train"))]
        if !with_weights && on_flex(&k.device()) && k.dtype() == burn::tensor::DType::F32 {
            // The page on the CPU: the same kernel, by way of the tensors' values.
            let context = cpu_math::on_tensors::attention(q.mul_scalar(scale), k, v, absent, mha.min_float, h);
            return (mha.output.forward(context), None);
        }
        let heads = |t: Tensor<3>, rows: usize, len: usize| t.reshape([rows, len, h, dk]).swap_dims(1, 2);
        let q = heads(q, 1, n_queries); // [1, H, Q, dk]
        let k = heads(k, batch, n_genes); // [B, H, G, dk]
        let v = heads(v, batch, n_genes);
        let (context, weights) = if with_weights || k.is_autodiff() {
            // Scores materialised: for the attention views and for training (autodiff). The scale
            // goes on the small query tensor, not on the [B, H, Q, G] scores.
            let mut scores = q.mul_scalar(scale).matmul(k.transpose()); // [B, H, Q, G]
            if let Some(absent) = absent {
                scores = scores.mask_fill(absent.reshape([batch, 1, 1, n_genes]), mha.min_float);
            }
            let weights = burn::tensor::activation::softmax(scores, 3);
            (weights.clone().matmul(v), with_weights.then_some(weights))
        } else {
            // Inference without the CLI's kernels (the page, GPUs): the backend's fused attention
            // (no [B, H, Q, G] tensor on the CPU). The explicit scale (the default one) keeps GPU backends on their plain
            // composed kernels.
            let mask = absent.map(|a| a.reshape([batch, 1, 1, n_genes]).expand([batch, 1, n_queries, n_genes]));
            let options = AttentionModuleOptions { scale: Some(scale), ..Default::default() };
            let q = q.expand([batch, h, n_queries, dk]);
            // (The fused kernel applies `scale` to the scores itself.)
            (burn::tensor::module::attention(q, k, v, mask, None, options), None)
        };
        let context = context.swap_dims(1, 2).reshape([batch, n_queries, d]);
        (mha.output.forward(context), weights)
    }
}
