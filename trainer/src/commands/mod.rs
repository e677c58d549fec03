//! One module per subcommand.

pub mod bench;
pub mod eval;
pub mod import_torch;
pub mod inspect;
pub mod predict;
pub mod simulate;
pub mod speed;
pub mod train;
pub mod view;

use mamba_perturb::io::{MatrixChoice, Orientation, ReadOptions};

use crate::error::{CliError, flag};

/// Reading flags shared by every subcommand that takes an expression file.
#[derive(clap::Args, Clone, Debug)]
pub struct ReadArgs {
    /// Which matrix of an h5ad to read: auto (layers/counts, then raw/X, then X), X, raw, or a layer name.
    #[arg(long, default_value = "auto")]
    pub matrix: String,
    /// Obs column holding perturbation labels (default: perturbation_name, perturbation, condition, ...).
    #[arg(long)]
    pub label_column: Option<String>,
    /// CSV orientation: auto, cells-as-rows or genes-as-rows.
    #[arg(long, default_value = "auto")]
    pub orientation: String,
}

/// What a file's genes are measured against (the model card says which reference the model expects).
#[derive(clap::Args, Clone, Debug)]
pub struct ReferenceArgs {
    /// The label of the file's control cells (a value of the label column, e.g. ctrl or
    /// non-targeting): each gene is measured against them instead of against all cells.
    #[arg(long)]
    pub control: Option<String>,
    /// Obs column of batches (gem group, lane): each batch is measured against its own cells (its
    /// control cells with --control).
    #[arg(long)]
    pub batch_column: Option<String>,
}

impl ReadArgs {
    pub fn options(&self) -> Result<ReadOptions, CliError> {
        let orientation = self.orientation.parse::<Orientation>().map_err(|e| flag("orientation", e))?;
        Ok(ReadOptions {
            matrix: self.matrix.parse::<MatrixChoice>().map_err(|e| flag("matrix", e))?,
            label_column: self.label_column.clone(),
            extra_obs: Vec::new(),
            orientation,
            known_genes: Vec::new(),
            ..Default::default()
        })
    }
}
