//! `mamba-perturb`: the native face of the core crate. Each subcommand parses flags, calls the
//! core, and prints; errors are printed as one line on stderr with a non-zero exit, never a panic.

mod baselines;
mod ceiling;
mod commands;
mod compute;
mod dataset;
mod error;
mod plot;
mod report;
mod splits;
mod training;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mamba-perturb",
    version,
    about = "Predict which gene perturbation(s) caused a cell's expression profile"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read an expression file (h5ad, CSV, CSV.gz) and print a JSON summary of what was found.
    Inspect(commands::inspect::Args),
    /// Simulate Norman-design Perturb-seq data (clearly marked as simulated) as h5ad or CSV.
    Simulate(Box<commands::simulate::Args>),
    /// Train the cross-attention model on a labelled file; writes weights, model card and curve.
    Train(commands::train::Args),
    /// Predict the perturbation(s) of each cell (and pseudobulks) with a trained model.
    Predict(commands::predict::Args),
    /// Score a trained model on a labelled file (cell, pseudobulk and 10-cell pseudobulk metrics).
    Eval(commands::eval::Args),
    /// The page's explaining views as numbers: confusion, label check, a cell's why, attention.
    View(commands::view::Args),
    /// Honest held-out benchmark: the model and baselines on whole held-out conditions, several seeds.
    Bench(commands::bench::Args),
    /// Convert weights saved from the PyTorch twin (safetensors) into a model folder.
    ImportTorch(commands::import_torch::Args),
    /// Bench entry point, not for users: times Burn's training step and inference on given shapes
    /// (benches/torch_vs_burn.py runs it beside the PyTorch twin).
    Speed(commands::speed::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Simulate(a) => commands::simulate::run(*a).map_err(error::CliError::Simulate),
        Command::Train(a) => commands::train::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::View(a) => commands::view::run(a),
        Command::ImportTorch(a) => commands::import_torch::run(a),
        Command::Speed(a) => commands::speed::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
