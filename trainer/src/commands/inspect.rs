//! `inspect FILE`: read a file with the core readers and print the JSON summary.

use std::path::PathBuf;

use mamba_perturb::{inspect, io};

#[derive(clap::Args)]
pub struct Args {
    /// An .h5ad, .csv, .tsv or .csv.gz file.
    pub file: PathBuf,
    #[command(flatten)]
    pub read: super::ReadArgs,
}

pub fn run(args: Args) -> Result<(), String> {
    let options = args.read.options()?;
    let data = io::read_path(&args.file, &options).map_err(|e| e.to_string())?;
    for w in &data.warnings {
        eprintln!("warning: {w}");
    }
    let summary = inspect::summarize(&args.file.display().to_string(), &data)?;
    let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}
