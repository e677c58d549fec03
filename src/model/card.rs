//! The model card: everything needed to use a trained model and to judge it — the gene panel with
//! positions, the candidate genes, normalisation, what it was trained on (real or simulated),
//! checksums, the command line, metrics and versions. Saved as `card.json` beside `model.bpk`.

use serde::{Deserialize, Serialize};

use super::NetConfig;
use crate::genome::{CHROMOSOMES, Locus};

pub const CARD_FORMAT: &str = "mamba-perturb-model/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CardGene {
    pub symbol: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gene_id: Option<String>,
    /// Chromosome name (1–22, X, Y), absent for unplaced genes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chrom: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub end: Option<u64>,
    /// start / chromosome length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub relative: Option<f32>,
}

impl CardGene {
    pub fn new(symbol: &str, gene_id: Option<&str>, locus: Option<&Locus>) -> Self {
        CardGene {
            symbol: symbol.to_string(),
            gene_id: gene_id.map(str::to_string),
            chrom: locus.map(|l| l.chrom_name().to_string()),
            start: locus.map(|l| l.start),
            end: locus.map(|l| l.end),
            relative: locus.map(|l| l.relative),
        }
    }

    pub fn locus(&self) -> Option<Locus> {
        let chrom = CHROMOSOMES.iter().position(|c| Some(*c) == self.chrom.as_deref())? as u8;
        Some(Locus { chrom, start: self.start?, end: self.end.unwrap_or(self.start?), relative: self.relative? })
    }
}

/// Each candidate's position in the panel, if measured: same symbol (labels and panel come from the
/// same file), else same Ensembl ID.
pub fn own_genes(panel: &[CardGene], candidates: &[CardGene]) -> Vec<Option<usize>> {
    let id = |g: &CardGene| g.gene_id.as_deref().map(crate::genome::strip_version).map(str::to_string);
    candidates
        .iter()
        .map(|c| {
            panel
                .iter()
                .position(|p| p.symbol.eq_ignore_ascii_case(&c.symbol))
                .or_else(|| panel.iter().position(|p| id(p).is_some() && id(p) == id(c)))
        })
        .collect()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingData {
    /// File name of the training data.
    pub name: String,
    /// `simulated` or `real`: simulated models say so wherever they are shown.
    pub kind: String,
    pub sha256: String,
    pub cells: usize,
    pub conditions: usize,
    pub label_column: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightsInfo {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub dtype: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub name: String,
    pub description: String,
    pub training_data: TrainingData,
    /// The gene tokens, in input order.
    pub panel: Vec<CardGene>,
    /// The candidate target genes, in query order.
    pub candidates: Vec<CardGene>,
    /// True when the candidates' own expression was removed from the panel.
    pub targets_masked: bool,
    pub normalization: String,
    pub net: NetConfig,
    /// Mean and standard deviation of each panel gene over the training cells (for
    /// out-of-distribution warnings).
    pub reference_mean: Vec<f32>,
    pub reference_sd: Vec<f32>,
    /// What inputs are measured against: each file's own cells, or (older models) the training cells.
    #[serde(default)]
    pub reference: crate::reference::ReferenceKind,
    /// P(0, 1 or 2 genes perturbed) among the training file's labelled cells (the screen's design;
    /// older models: among the cells trained on): the prior that combines cells' posteriors into a
    /// pseudobulk's. None (older models): equal sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_sizes: Option<[f64; 3]>,
    /// The additive head fitted on the training cells (`additive.rs`); None (older models): the
    /// network alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additive: Option<crate::model::additive::AdditiveHead>,
    /// Divides the log of the combined posterior (network × head) before it is normalised again:
    /// fitted on held-out training cells of every answer size, so that probabilities mean what they
    /// say. None (older models): 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posterior_temperature: Option<f64>,
    /// Share of a perturbed condition's cells that look like control cells (guides that did
    /// nothing), fitted on held-out training cells: pooling a group's cells allows for them
    /// (`sets::Pooling`), so one failed cell cannot veto its group's answer. None (older models): 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guide_failure: Option<f64>,
    /// How a group's answer weighs the head's likelihood of its mean levels against its cells'
    /// network posteriors (`sets::GroupModel`), fitted on held-out training groups. None (older
    /// models, or where it did not rank those groups better): through the cells' posteriors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_model: Option<crate::model::sets::GroupModel>,
    pub weights: WeightsInfo,
    pub command: String,
    pub seed: u64,
    pub metrics: serde_json::Value,
    pub versions: serde_json::Value,
}

/// Largest network sizes a card may declare (far above any model this project trains).
const MAX_D_MODEL: usize = 4096;
const MAX_FREQS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("model card: not valid JSON for a mamba-perturb model ({0})")]
    Json(#[from] serde_json::Error),
    #[error("model card: format '{0}' is not {CARD_FORMAT}; this build cannot read it")]
    Format(String),
    #[error("model card: {0}")]
    Inconsistent(String),
}

impl ModelCard {
    pub fn from_json(text: &str) -> Result<ModelCard, CardError> {
        let card: ModelCard = serde_json::from_str(text)?;
        if card.format != CARD_FORMAT {
            return Err(CardError::Format(card.format));
        }
        if card.panel.len() != card.net.n_genes || card.candidates.len() != card.net.n_candidates {
            return Err(CardError::Inconsistent(format!(
                "{} panel genes and {} candidates listed, the network expects {} and {}",
                card.panel.len(),
                card.candidates.len(),
                card.net.n_genes,
                card.net.n_candidates
            )));
        }
        if card.reference_mean.len() != card.panel.len() || card.reference_sd.len() != card.panel.len() {
            return Err(CardError::Inconsistent("reference profile length differs from the panel".into()));
        }
        // The network is built from these sizes before any weight is read: bound them, so a damaged
        // card gets this message instead of a division by zero or an allocation of terabytes.
        let n = &card.net;
        if n.n_heads == 0 || n.d_model == 0 || !n.d_model.is_multiple_of(n.n_heads) {
            return Err(CardError::Inconsistent(format!(
                "net.d_model ({}) must be a positive multiple of net.n_heads ({})",
                n.d_model, n.n_heads
            )));
        }
        if n.d_model > MAX_D_MODEL || n.n_freqs > MAX_FREQS || n.n_genes == 0 {
            return Err(CardError::Inconsistent(format!(
                "net sizes out of range: d_model {} (at most {MAX_D_MODEL}), n_freqs {} (at most {MAX_FREQS}), n_genes {} (at least 1)",
                n.d_model, n.n_freqs, n.n_genes
            )));
        }
        if let Some(head) = &card.additive {
            head.check(card.panel.len(), card.candidates.len()).map_err(CardError::Inconsistent)?;
        }
        Ok(card)
    }

    pub fn own_genes(&self) -> Vec<Option<usize>> {
        own_genes(&self.panel, &self.candidates)
    }

    pub fn is_simulated(&self) -> bool {
        self.training_data.kind == "simulated"
    }

    /// What a person is shown about the model (the page's model box).
    pub fn overview(&self) -> ModelOverview<'_> {
        ModelOverview {
            name: &self.name,
            description: &self.description,
            kind: &self.training_data.kind,
            training_data: &self.training_data.name,
            panel: &self.panel,
            candidates: &self.candidates,
            targets_masked: self.targets_masked,
            validation_exact_top1: self.metrics.get("validation_exact_top1").and_then(|v| v.as_f64()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ModelOverview<'a> {
    pub name: &'a str,
    pub description: &'a str,
    /// `simulated` or `real`.
    pub kind: &'a str,
    pub training_data: &'a str,
    pub panel: &'a [CardGene],
    pub candidates: &'a [CardGene],
    pub targets_masked: bool,
    pub validation_exact_top1: Option<f64>,
}
