//! `inspect FILE`: read a file with the core readers and print the JSON summary.

use std::path::PathBuf;

use mamba_perturb::{inspect, io};

use crate::error::{CliError, output};

#[derive(clap::Args)]
pub struct Args {
    /// An .h5ad, .csv, .tsv or .csv.gz file.
    pub file: PathBuf,
    #[command(flatten)]
    pub read: super::ReadArgs,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let options = args.read.options()?;
    let data = io::read_path(&args.file, &options)?;
    for w in &data.warnings {
        eprintln!("warning: {w}");
    }
    let summary = inspect::summarize(&args.file.display().to_string(), &data).map_err(CliError::Labels)?;
    let json = serde_json::to_string_pretty(&summary).map_err(output)?;
    println!("{json}");
    Ok(())
}
