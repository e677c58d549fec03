//! Writing a simulation in the on-disk layouts of the three public Norman 2019 versions, so every
//! reader path is exercised: pertpy (log-normalised X + `layers/counts`, `perturbation_name`),
//! GEARS (log-normalised X only, Ensembl var index + `gene_name`, `condition` as `A+ctrl`) and
//! scPerturb (raw counts in X, `perturbation` as `A_B`). Each file says it is simulated in `uns`.

use std::io::Write;

use crate::io::CsrMatrix;
use crate::io::h5ad_write::{AnnData, Column, Frame, WriteError, write_h5ad};
use crate::labels::Perturbation;
use crate::normalize::{ValueKind, normalize};

use super::Simulation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Pertpy,
    Gears,
    Scperturb,
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pertpy" => Ok(Layout::Pertpy),
            "gears" | "cpa" => Ok(Layout::Gears),
            "scperturb" => Ok(Layout::Scperturb),
            other => Err(format!("unknown layout '{other}' (use pertpy, gears or scperturb)")),
        }
    }
}

impl Layout {
    pub fn label_column(&self) -> &'static str {
        match self {
            Layout::Pertpy => "perturbation_name",
            Layout::Gears => "condition",
            Layout::Scperturb => "perturbation",
        }
    }

    fn label(&self, p: &Perturbation) -> String {
        match self {
            Layout::Pertpy => p.to_string(),
            Layout::Gears => p.gears_label(),
            Layout::Scperturb => p.scperturb_label(),
        }
    }
}

fn provenance(sim: &Simulation) -> String {
    let c = &sim.config;
    format!(
        "SIMULATED data (not real measurements): mamba-perturb {} simulate --seed {}{} --cells {} --genes {} --control-fraction {}; \
         world parameters in uns/world; Norman 2019 design (237 conditions), real GEO gene list, authors' UMI depth, DE counts, GI fits and clusters; see docs/simulation.md",
        env!("CARGO_PKG_VERSION"),
        c.seed,
        c.cell_seed.map(|s| format!(" --cell-seed {s}")).unwrap_or_default(),
        c.cells,
        c.genes,
        c.control_fraction
    )
}

pub fn to_h5ad(sim: &Simulation, layout: Layout, compression: Option<u32>) -> Result<Vec<u8>, WriteError> {
    to_h5ad_with_obs(sim, layout, compression, Vec::new())
}

/// `to_h5ad` with more obs columns after the layout's own (e.g. a batch column in tests).
pub fn to_h5ad_with_obs(
    sim: &Simulation,
    layout: Layout,
    compression: Option<u32>,
    extra_obs: Vec<(String, Column)>,
) -> Result<Vec<u8>, WriteError> {
    let d = &sim.data;
    let perts: Vec<&Perturbation> = sim.cell_condition.iter().map(|&k| &sim.conditions[k].perturbation).collect();
    let labels: Vec<String> = perts.iter().map(|p| layout.label(p)).collect();
    let counts = &d.matrix;
    let lognorm: CsrMatrix = normalize(counts, ValueKind::Counts);
    // Like the public files' `ncounts`: UMIs over the whole transcriptome, not only the panel.
    let totals: Vec<f64> = sim.total_counts.clone();
    let responded = Column::Int(sim.responded.iter().map(|&r| r as i64).collect());
    let ids = d.gene_ids.clone().unwrap_or_else(|| d.genes.clone());

    let mut obs_columns = vec![
        (layout.label_column().to_string(), Column::Categorical(labels)),
        // Simulation truth, not a label a real file has: 1 if the cell's guides acted, 0 for
        // control cells and guide failures (which are control cells in distribution).
        ("responded".to_string(), responded),
    ];
    let var;
    let (x, layers): (&CsrMatrix, Vec<(&str, &CsrMatrix)>) = match layout {
        Layout::Pertpy => {
            obs_columns.push(("nperts".into(), Column::Int(perts.iter().map(|p| p.genes().len() as i64).collect())));
            obs_columns.push(("ncounts".into(), Column::Float(totals)));
            var = Frame { index: d.genes.clone(), columns: vec![("gene_ids".into(), Column::Text(ids))] };
            (&lognorm, vec![("counts", counts)])
        }
        Layout::Gears => {
            obs_columns.push(("cell_type".into(), Column::Categorical(vec!["K562".into(); d.cells.len()])));
            obs_columns.push(("control".into(), Column::Int(perts.iter().map(|p| p.is_control() as i64).collect())));
            var = Frame { index: ids, columns: vec![("gene_name".into(), Column::Text(d.genes.clone()))] };
            (&lognorm, vec![])
        }
        Layout::Scperturb => {
            obs_columns.push(("ncounts".into(), Column::Float(totals)));
            var = Frame { index: d.genes.clone(), columns: vec![("ensembl_id".into(), Column::Text(ids))] };
            (counts, vec![])
        }
    };
    obs_columns.extend(extra_obs);
    write_h5ad(&AnnData {
        x,
        layers,
        obs: Frame { index: d.cells.clone(), columns: obs_columns },
        var,
        uns: vec![
            ("data_kind", "simulated".into()),
            ("provenance", provenance(sim)),
            ("world", sim.world_json.clone()),
        ],
        compression,
    })
}

/// Raw counts as CSV, cells as rows (pandas `to_csv` form). A matrix CSV has no place for labels
/// (see `labels_csv`); the index column's name, `simulated_cell`, says what the file is.
pub fn to_csv<W: Write>(sim: &Simulation, mut w: W) -> std::io::Result<()> {
    let d = &sim.data;
    write!(w, "simulated_cell")?;
    for g in &d.genes {
        write!(w, ",{g}")?;
    }
    writeln!(w)?;
    let mut row = vec![0f32; d.genes.len()];
    for i in 0..d.matrix.n_rows {
        row.iter_mut().for_each(|v| *v = 0.0);
        let (cols, vals) = d.matrix.row(i);
        for (&j, &v) in cols.iter().zip(vals) {
            row[j as usize] = v;
        }
        write!(w, "{}", d.cells[i])?;
        for v in &row {
            write!(w, ",{}", *v as u32)?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// Per-cell labels for a CSV export: `simulated_cell,perturbation_name`.
pub fn labels_csv<W: Write>(sim: &Simulation, mut w: W) -> std::io::Result<()> {
    writeln!(w, "simulated_cell,perturbation_name")?;
    for (i, &k) in sim.cell_condition.iter().enumerate() {
        writeln!(w, "{},{}", sim.data.cells[i], sim.conditions[k].perturbation)?;
    }
    Ok(())
}
