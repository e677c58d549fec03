//! A model folder, as `train` and `import-torch` write it and every face reads it: `card.json` (the
//! model card) beside `model.bpk` (burnpack weights), and `training.svg` when trained here. The file
//! names live here and nowhere else; the page asks the core for them.

use burn::tensor::Device;

use crate::predict::{PredictError, Predictor};

pub const CARD_FILE: &str = "card.json";
pub const WEIGHTS_FILE: &str = "model.bpk";
pub const CURVE_FILE: &str = "training.svg";

/// A model's two files in memory: what the page receives, and what a predictor is built from (on
/// any device, as often as the page switches backends).
#[derive(Clone)]
pub struct ModelFiles {
    pub card_json: String,
    pub weights: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelFolderError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{folder}: {source}")]
    Model { folder: String, source: PredictError },
    #[error("serialising the weights: {0}")]
    Serialize(String),
}

impl ModelFiles {
    pub fn predictor(&self, device: &Device) -> Result<Predictor, PredictError> {
        Predictor::load(&self.card_json, self.weights.clone(), device)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(dir: &std::path::Path) -> Result<ModelFiles, ModelFolderError> {
        let io = |name: &str| {
            let path = dir.join(name);
            move |source| ModelFolderError::Io { path: path.display().to_string(), source }
        };
        Ok(ModelFiles {
            card_json: std::fs::read_to_string(dir.join(CARD_FILE)).map_err(io(CARD_FILE))?,
            weights: std::fs::read(dir.join(WEIGHTS_FILE)).map_err(io(WEIGHTS_FILE))?,
        })
    }
}

/// Reads a model folder and builds its predictor.
#[cfg(not(target_arch = "wasm32"))]
pub fn load(dir: &std::path::Path, device: &Device) -> Result<(ModelFiles, Predictor), ModelFolderError> {
    let files = ModelFiles::read(dir)?;
    let predictor = files
        .predictor(device)
        .map_err(|source| ModelFolderError::Model { folder: dir.display().to_string(), source })?;
    Ok((files, predictor))
}

/// Writes the weights and the card (with the weights' size and checksum) into `dir`, created.
#[cfg(not(target_arch = "wasm32"))]
pub fn write(
    dir: &std::path::Path,
    card: &mut crate::model::card::ModelCard,
    net: crate::model::PerturbNet,
) -> Result<(), ModelFolderError> {
    use burn::module::Module;
    use sha2::{Digest, Sha256};
    let io = |path: std::path::PathBuf| move |source| ModelFolderError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    let bytes = net.into_record().into_bytes().map_err(|e| ModelFolderError::Serialize(format!("{e:?}")))?;
    let bytes: &[u8] = &bytes;
    card.weights.file = WEIGHTS_FILE.into();
    card.weights.sha256 = format!("{:x}", Sha256::digest(bytes));
    card.weights.bytes = bytes.len() as u64;
    std::fs::write(dir.join(WEIGHTS_FILE), bytes).map_err(io(dir.join(WEIGHTS_FILE)))?;
    let json = serde_json::to_string_pretty(card).map_err(|e| ModelFolderError::Serialize(e.to_string()))?;
    std::fs::write(dir.join(CARD_FILE), json).map_err(io(dir.join(CARD_FILE)))
}
