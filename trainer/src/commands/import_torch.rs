//! `import-torch --weights W.safetensors --card card.json --out DIR`: turns weights saved from the
//! PyTorch twin (reference/pytorch/perturbnet.py) into a Burn model folder the CLI and the web page
//! load. burn-store reads the safetensors and its PyTorch adapter transposes Linear weights and
//! renames LayerNorm parameters; every tensor must be used and none may be missing.

use std::path::PathBuf;

use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::Device;
use mamba_perturb::model::card::ModelCard;

use crate::error::{CliError, io_at};

#[derive(clap::Args)]
pub struct Args {
    /// state_dict of the PyTorch twin saved with safetensors.
    #[arg(long)]
    pub weights: PathBuf,
    /// Model card describing the panel, candidates and sizes (same format as `train` writes).
    #[arg(long)]
    pub card: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.card).map_err(io_at(&args.card))?;
    let mut card = ModelCard::from_json(&text)
        .map_err(|source| CliError::Card { path: args.card.display().to_string(), source })?;
    let device = Device::flex();
    let mut net = card.net.init(&device);
    let mut store = SafetensorsStore::from_file(&args.weights).with_from_adapter(PyTorchToBurnAdapter);
    let weights = args.weights.display().to_string();
    let result =
        net.load_from(&mut store).map_err(|e| CliError::Weights { path: weights.clone(), problem: e.to_string() })?;
    if !result.missing.is_empty() || !result.unused.is_empty() || !result.errors.is_empty() {
        return Err(CliError::Weights {
            path: weights,
            problem: format!(
                "weights do not match the card's architecture (missing: {:?}; unused: {:?}; errors: {:?})",
                result.missing, result.unused, result.errors
            ),
        });
    }
    card.command = std::env::args().collect::<Vec<_>>().join(" ");
    mamba_perturb::model_folder::write(&args.out, &mut card, net)?;
    let weights_file = args.out.join(mamba_perturb::model_folder::WEIGHTS_FILE);
    eprintln!("imported {} tensors into {}", result.applied.len(), weights_file.display());
    Ok(())
}
