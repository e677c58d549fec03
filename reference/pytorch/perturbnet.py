"""PyTorch twin of mambaPerturb's Burn network (src/model/mod.rs), kept as a reference.

Same parameters under the same names (Burn's module tree), same arithmetic: weights saved from this
module as safetensors load into the Burn model through burn-store's PyTorch adapter
(`mamba-perturb import-torch`) and give the same logits. Use it to check the Burn model, or to train
on a GPU cluster and run the result in the browser.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

N_CHROM = 24
CHROMOSOMES = [str(i) for i in range(1, 23)] + ["X", "Y"]
LOGIT_BOUND = 12.0


def own_tokens(panel_symbols, candidate_symbols):
    """Each candidate's index in the panel (same symbol), else len(panel); plus the control query's."""
    g = len(panel_symbols)
    upper = [p.upper() for p in panel_symbols]
    idx = [upper.index(c.upper()) if c.upper() in upper else g for c in candidate_symbols]
    return torch.tensor(idx + [g], dtype=torch.long)


def genome_features(loci, n_freqs, extra_zero_rows=0):
    """loci: list of (chrom name, relative) or None -> (one-hot [n, 24], sin/cos locus [n, 2F])."""
    n = len(loci) + extra_zero_rows
    chrom = torch.zeros(n, N_CHROM)
    locus = torch.zeros(n, 2 * n_freqs)
    for i, l in enumerate(loci):
        if l is None:
            continue
        name, rel = l
        chrom[i, CHROMOSOMES.index(name)] = 1.0
        for k in range(n_freqs):
            angle = torch.tensor(2 * math.pi * (2 ** k), dtype=torch.float32) * torch.tensor(rel, dtype=torch.float32)
            locus[i, 2 * k] = torch.sin(angle)
            locus[i, 2 * k + 1] = torch.cos(angle)
    return chrom, locus


class MultiHeadAttention(nn.Module):
    """Burn's MultiHeadAttention weights and arithmetic (no dropout), restructured as the Burn model
    is: the queries [Q, d] are the same for every cell, so they are projected (and scaled) once."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.d_k = heads, d // heads
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))

    def forward(self, q, kv, mask_pad=None):
        """mask_pad: [B, keys] bool, True where a key is absent (Burn fills its score with -1e4)."""
        lq, d = q.shape
        b, lk, _ = kv.shape
        split = lambda x, rows, n: x.view(rows, n, self.heads, self.d_k).transpose(1, 2)
        qh = split(self.query(q), 1, lq) * (1.0 / math.sqrt(self.d_k))  # [1, H, Q, dk]
        kh, vh = split(self.key(kv), b, lk), split(self.value(kv), b, lk)
        scores = qh @ kh.transpose(-1, -2)  # [B, H, Q, G]
        if mask_pad is not None:
            scores = scores.masked_fill(mask_pad[:, None, None, :], -1.0e4)
        weights = torch.softmax(scores, dim=-1)
        context = (weights @ vh).transpose(1, 2).reshape(b, lq, d)
        return self.output(context), weights


class PerturbNet(nn.Module):
    def __init__(self, n_genes, n_candidates, d_model=32, n_heads=4, n_freqs=6, cis=False):
        super().__init__()
        d = d_model
        self.value_in = nn.Linear(1, d)
        self.value_out = nn.Linear(d, d)
        self.gene_id = nn.Embedding(n_genes, d)
        self.chrom = nn.Linear(N_CHROM, d, bias=False)
        self.locus = nn.Linear(2 * n_freqs, d, bias=False)
        self.query_id = nn.Embedding(n_candidates + 1, d)
        self.token_norm = nn.LayerNorm(d, eps=1e-5)
        self.attention = MultiHeadAttention(d, n_heads)
        self.head_hidden = nn.Linear(2 * d, d)  # [attention context ; own-gene token]
        self.head_gene = nn.Linear(d, 1)
        self.head_count = nn.Linear(d, 3)
        # The cis path (card net.cis): a shared function of each candidate's own-gene z-score.
        self.cis_in = nn.Linear(1, d) if cis else None
        self.cis_out = nn.Linear(d, 1) if cis else None
        self.n_candidates = n_candidates

    def forward(self, x, feats):
        """x: [B, G] log1p(CP10k); feats: dict of gene_chrom, gene_locus, query_chrom, query_locus, mean, inv_sd,
        own_token ([C + 1] long: each query's own gene index, or G for none), and optionally present
        ([1 or B, G]: 1 where the input measures the gene, 0 where it is absent)."""
        b, g = x.shape
        z = ((x - feats["mean"]) * feats["inv_sd"]).clamp(-5.0, 10.0)
        value = self.value_out(F.gelu(self.value_in(z.unsqueeze(-1))))
        place = self.chrom(feats["gene_chrom"]) + self.locus(feats["gene_locus"])
        tokens = self.token_norm(value + self.gene_id.weight.unsqueeze(0) + place.unsqueeze(0))
        qplace = self.chrom(feats["query_chrom"]) + self.locus(feats["query_locus"])
        queries = self.query_id.weight + qplace  # [Q, d]: the same for every cell
        padded = torch.cat([tokens, torch.zeros_like(tokens[:, :1])], 1)
        own = padded[:, feats["own_token"]]
        has_own = torch.cat([torch.ones(1, g), torch.zeros(1, 1)], 1)[:, feats["own_token"]].repeat(b, 1)
        mask = None
        if feats.get("present") is not None:
            present = feats["present"].expand(b, g)
            has_own = has_own * torch.cat([present, torch.zeros(b, 1)], 1)[:, feats["own_token"]]
            own = own * has_own.unsqueeze(2)
            mask = present < 0.5
        context, weights = self.attention(queries, tokens, mask)
        hidden = F.gelu(self.head_hidden(torch.cat([context, own], 2)))
        c = self.n_candidates
        raw = self.head_gene(hidden[:, :c]).squeeze(-1)
        if self.cis_in is not None:
            own_z = torch.cat([z, torch.zeros(b, 1)], 1)[:, feats["own_token"]][:, :c]
            raw = raw + self.cis_out(F.gelu(self.cis_in(own_z.unsqueeze(2)))).squeeze(-1) * has_own[:, :c]
        gene = LOGIT_BOUND * torch.tanh(raw / LOGIT_BOUND)
        count = self.head_count(hidden[:, c])
        return gene, count, weights
