//! Fixed features of the model's genes and queries: the 24-way chromosome one-hot, sinusoidal
//! features of the relative locus, and each gene's training mean/sd. They are rebuilt from the
//! model card, not stored as weights; an unplaced gene gets zeros (no position, not a wrong one).

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::genome::Locus;

pub const N_CHROM_FEATURES: usize = 24;

/// Constant tensors fed to every forward pass.
#[derive(Clone, Debug)]
pub struct GenomeFeatures {
    /// [genes, 24]
    pub gene_chrom: Tensor<2>,
    /// [genes, 2 × freqs]
    pub gene_locus: Tensor<2>,
    /// [candidates + 1, 24]; the last row (the "no perturbation" query) is zero.
    pub query_chrom: Tensor<2>,
    /// [candidates + 1, 2 × freqs]
    pub query_locus: Tensor<2>,
    /// [1, genes]: training mean and 1 / sd of each panel gene, so tokens see z-scores: how
    /// unusual a gene's level is in this cell, on one scale for every gene.
    pub gene_mean: Tensor<2>,
    pub gene_inv_sd: Tensor<2>,
    /// [candidates + 1]: each query's own gene among the tokens, or `genes` (a zero token) when
    /// the panel does not measure it; the control query always gets the zero token.
    pub own_token: Tensor<1, Int>,
    /// [1 or batch, genes]: 1 where the input measures the gene, 0 where it is absent (its key is
    /// masked from attention and a candidate's absent own gene gives no own token). None: all measured.
    pub present: Option<Tensor<2>>,
}

/// sin/cos of 2π·2^k·position for k < freqs: coarse to fine position along the chromosome.
pub fn locus_features(locus: Option<&Locus>, n_freqs: usize) -> Vec<f32> {
    let mut v = vec![0.0; 2 * n_freqs];
    if let Some(l) = locus {
        for k in 0..n_freqs {
            let angle = std::f32::consts::TAU * (1u32 << k) as f32 * l.relative;
            v[2 * k] = angle.sin();
            v[2 * k + 1] = angle.cos();
        }
    }
    v
}

fn rows(loci: &[Option<Locus>], extra_zero_rows: usize, n_freqs: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let n = loci.len() + extra_zero_rows;
    let mut chrom = vec![0f32; n * N_CHROM_FEATURES];
    let mut locus = vec![0f32; n * 2 * n_freqs];
    for (i, l) in loci.iter().enumerate() {
        if let Some(l) = l {
            chrom[i * N_CHROM_FEATURES + l.chrom as usize] = 1.0;
        }
        locus[i * 2 * n_freqs..(i + 1) * 2 * n_freqs].copy_from_slice(&locus_features(l.as_ref(), n_freqs));
    }
    (
        Tensor::from_data(TensorData::new(chrom, [n, N_CHROM_FEATURES]), device),
        Tensor::from_data(TensorData::new(locus, [n, 2 * n_freqs]), device),
    )
}

impl GenomeFeatures {
    pub fn new(
        gene_loci: &[Option<Locus>],
        candidate_loci: &[Option<Locus>],
        n_freqs: usize,
        own_gene: &[Option<usize>],
        mean: &[f32],
        sd: &[f32],
        device: &Device,
    ) -> Self {
        let (gene_chrom, gene_locus) = rows(gene_loci, 0, n_freqs, device);
        let (query_chrom, query_locus) = rows(candidate_loci, 1, n_freqs, device);
        let g = gene_loci.len();
        let inv: Vec<f32> = sd.iter().map(|s| 1.0 / s.max(crate::reference::SD_FLOOR)).collect();
        let gene_mean = Tensor::from_data(TensorData::new(mean.to_vec(), [1, g]), device);
        let gene_inv_sd = Tensor::from_data(TensorData::new(inv, [1, g]), device);
        let mut own: Vec<i64> = own_gene.iter().map(|o| o.map(|j| j as i64).unwrap_or(g as i64)).collect();
        own.resize(candidate_loci.len(), g as i64);
        own.push(g as i64);
        let own_token = Tensor::from_data(TensorData::new(own, [candidate_loci.len() + 1]), device);
        GenomeFeatures {
            gene_chrom,
            gene_locus,
            query_chrom,
            query_locus,
            gene_mean,
            gene_inv_sd,
            own_token,
            present: None,
        }
    }

    /// The same genes and queries, measured against another reference with only some genes present.
    pub fn with_reference(&self, mean: &[f32], sd: &[f32], measured: &[bool]) -> Self {
        let device = self.gene_mean.device();
        let g = mean.len();
        let inv: Vec<f32> = sd.iter().map(|s| 1.0 / s.max(crate::reference::SD_FLOOR)).collect();
        let all = measured.iter().all(|&m| m);
        let present: Vec<f32> = measured.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect();
        GenomeFeatures {
            gene_mean: Tensor::from_data(TensorData::new(mean.to_vec(), [1, g]), &device),
            gene_inv_sd: Tensor::from_data(TensorData::new(inv, [1, g]), &device),
            present: (!all).then(|| Tensor::from_data(TensorData::new(present, [1, g]), &device)),
            ..self.clone()
        }
    }

    /// The same features with per-row presence ([batch, genes], 1 present / 0 absent).
    pub fn with_present(&self, present: Tensor<2>) -> Self {
        GenomeFeatures { present: Some(present), ..self.clone() }
    }
}
