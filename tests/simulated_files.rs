//! The simulator's files: each public layout opens in real Python anndata, reads back through our
//! own readers to the same counts and labels, and says it is simulated.

mod common;
use common::python;
use std::path::{Path, PathBuf};
use std::process::Command;

use mamba_perturb::io::{self, ReadOptions};
use mamba_perturb::labels::Perturbation;
use mamba_perturb::normalize::{self, ValueKind};
use mamba_perturb::simulate::{self, Layout, SimConfig, layouts};

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("simulated_files");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_layout_opens_in_anndata_and_reads_back_identically() {
    let py = python();
    let sim = simulate::simulate(
        &SimConfig { seed: 11, cells: 1200, genes: 300, control_fraction: 0.1, ..Default::default() },
        |_, _| {},
    )
    .unwrap();
    let truth: Vec<Perturbation> = sim.cell_condition.iter().map(|&k| sim.conditions[k].perturbation.clone()).collect();
    for (layout, compression) in [(Layout::Pertpy, None), (Layout::Gears, Some(4)), (Layout::Scperturb, None)] {
        let path = out_dir().join(format!("{layout:?}.h5ad"));
        std::fs::write(&path, layouts::to_h5ad(&sim, layout, compression).unwrap()).unwrap();

        let check = Command::new(&py)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check_h5ad.py"))
            .arg(&path)
            .args(["--expect-cells", "1200", "--expect-genes", "300", "--label-column", layout.label_column()])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "anndata rejected {layout:?}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let uns = Command::new(&py)
            .args(["-c", "import anndata,sys; a=anndata.read_h5ad(sys.argv[1]); print(a.uns['data_kind'])"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&uns.stdout).trim(), "simulated", "{layout:?}");
        // The world (seed and parameters) and each cell's response are in the file.
        let world = Command::new(&py)
            .args([
                "-c",
                "import anndata,json,sys; a=anndata.read_h5ad(sys.argv[1]); w=json.loads(a.uns['world']); \
                 print(w['seed'], w['params']['guide_failure'], int(a.obs['responded'].sum()), int((a.obs['responded'] == 1).sum()))",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let responded = sim.responded.iter().filter(|&&r| r).count();
        assert_eq!(
            String::from_utf8_lossy(&world.stdout).trim(),
            format!("11 0.15 {responded} {responded}"),
            "{layout:?}: {}",
            String::from_utf8_lossy(&world.stderr)
        );

        let d = io::read_path(&path, &ReadOptions::default()).unwrap();
        assert!(d.simulated, "{layout:?} is marked simulated");
        assert_eq!(d.cells, sim.data.cells);
        assert_eq!(d.genes, sim.data.genes, "{layout:?}: symbols (GEARS keeps them in gene_name)");
        let labels: Vec<Perturbation> =
            d.labels.unwrap().values.iter().map(|l| Perturbation::parse(l).unwrap()).collect();
        assert_eq!(labels, truth, "{layout:?}: labels");
        match layout {
            // GEARS ships only log-normalised X: it must equal our normalisation of the counts.
            Layout::Gears => {
                let kind = normalize::detect(&d.matrix);
                assert!(matches!(kind, ValueKind::LogNormalized { .. }), "{kind:?}");
                let expected = normalize::normalize(&sim.data.matrix, ValueKind::Counts);
                assert_eq!(normalize::normalize(&d.matrix, kind), expected);
            }
            _ => assert_eq!(d.matrix, sim.data.matrix, "{layout:?}: counts"),
        }
    }
}

#[test]
fn csv_output_reads_back_and_keeps_its_simulated_mark() {
    let sim = simulate::simulate(
        &SimConfig { seed: 5, cells: 900, genes: 200, control_fraction: 0.1, ..Default::default() },
        |_, _| {},
    )
    .unwrap();
    let mut bytes = Vec::new();
    layouts::to_csv(&sim, &mut bytes).unwrap();
    let d = io::read_bytes("sim.csv", bytes, &ReadOptions::default()).unwrap();
    assert!(d.simulated);
    assert_eq!(d.matrix, sim.data.matrix);
    assert_eq!(d.genes, sim.data.genes);
}
