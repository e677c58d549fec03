//! The command line's errors. The core's typed errors pass through unchanged (they already name the
//! file, line, column, dataset or gene); the CLI adds its own kinds: a bad flag, a file it cannot
//! read or write, data that cannot serve the command. `main` prints one line and exits with 2.

use std::path::Path;

use mamba_perturb::analysis::AnalysisError;
use mamba_perturb::io::ReadError;
use mamba_perturb::model::card::CardError;
use mamba_perturb::model_folder::ModelFolderError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error(transparent)]
    ModelFolder(#[from] ModelFolderError),
    #[error("{path}: {source}")]
    Card { path: String, source: CardError },
    #[error("--{flag}: {problem}")]
    Flag { flag: &'static str, problem: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The data cannot serve the command (no labels to train on, no cells after a split, ...).
    #[error("{file}: {problem}")]
    Data { file: String, problem: String },
    /// Label parsing in the core, already naming file, column and cell.
    #[error("{0}")]
    Labels(String),
    #[error("{path}: {problem}")]
    Weights { path: String, problem: String },
    #[error("{0}")]
    Simulate(String),
    #[error("writing the output: {0}")]
    Output(String),
    /// Training stopped (a streamed file that could not be read further, no epoch run).
    #[error("training: {0}")]
    Training(String),
}

/// Maps an I/O error to one that names the path.
pub fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io { path: path.display().to_string(), source }
}

pub fn flag(flag: &'static str, problem: impl Into<String>) -> CliError {
    CliError::Flag { flag, problem: problem.into() }
}

pub fn output(e: impl std::fmt::Display) -> CliError {
    CliError::Output(e.to_string())
}
