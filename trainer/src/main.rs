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
mod stream;
mod training;

use clap::{Parser, Subcommand};

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
    /// Writes a bench folder's tables and plots again from its benchmark.json (running nothing).
    BenchReport(commands::bench::ReportArgs),
    /// Convert weights saved from the PyTorch twin (safetensors) into a model folder.
    ImportTorch(commands::import_torch::Args),
    /// Bench entry point, not for users: times Burn's training step and inference on given shapes
    /// (benches/torch_vs_burn.py runs it beside the PyTorch twin).
    Speed(commands::speed::Args),
}

/// Burn allocates and frees tensors of tens of MB every step. glibc hands blocks that large back
/// to the kernel on free and maps fresh zeroed pages on the next allocation (page faults were ~20-30 %
/// of a training step); keeping them in the heap lets the next step reuse them.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Simulate(a) => commands::simulate::run(*a).map_err(error::CliError::Simulate),
        Command::Train(a) => commands::train::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::BenchReport(a) => commands::bench::report(a),
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
