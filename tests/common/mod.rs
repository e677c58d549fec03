//! Helpers shared by integration tests (each test file includes this module with `mod common;`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python with anndata that `scripts/setup-python.sh` installs (or `MAMBA_PYTHON`).
pub fn python() -> PathBuf {
    let p = std::env::var_os("MAMBA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&p).args(["-c", "import anndata"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{} cannot import anndata: run scripts/setup-python.sh (or set MAMBA_PYTHON)", p.display());
    p
}
