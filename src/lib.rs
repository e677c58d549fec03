//! mambaPerturb core: from a cell's expression profile to the gene perturbation(s) that caused it.
//!
//! The data path, one module per step:
//! `io` (h5ad, CSV → cells × genes) → `labels` (public label styles → gene sets) →
//! `genome` (genes → chromosome, locus) → `normalize` (counts → log1p(CP10k)) → `model` (the Burn
//! cross-attention network, its set distribution and model card) → `predict` (ranking per cell and
//! per pseudobulk, attention for the genome view) → `analysis` (one opened file with one model: the
//! pipeline both faces drive) → `export` (the CSV and JSON layouts). `metrics` scores answers against
//! labels; `model_folder` names a model's files.
//! `simulate` builds Norman-design Perturb-seq data grounded in the real design tables; `inspect`
//! summarises a file. The CLI (`trainer/`) and the web page are thin faces over these modules.

pub mod analysis;
pub mod export;
pub mod genome;
pub mod inspect;
pub mod io;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod model_folder;
pub mod normalize;
pub mod parallel;
pub mod predict;
pub mod reference;
pub mod simulate;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
