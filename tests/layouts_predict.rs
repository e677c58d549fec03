//! Every text layout a person brings gives the same predictions as the h5ad of the same cells, through
//! the one pipeline both faces drive (`Analysis`): cells or genes as rows, CSV or TSV, gzip, BOM +
//! CRLF, with 10x-style gene names (`C1orf112`, `XXbac-B461K10.4`, `Metazoa_SRP`, `snoU13`) and cell
//! IDs of upper-case letters and digits (`CELL12-1`, `S1A01`), which once passed for genes.

use std::io::Write;
use std::path::Path;

use burn::tensor::Device;
use mamba_perturb::analysis::Analysis;
use mamba_perturb::io::h5ad_write::{self, AnnData, Frame};
use mamba_perturb::io::{CsrMatrix, FileSource, Orientation, ReadOptions};
use mamba_perturb::model_folder::ModelFiles;

const TENX: [&str; 4] = ["C1orf112", "XXbac-B461K10.4", "Metazoa_SRP", "snoU13"];

fn model() -> ModelFiles {
    ModelFiles::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")).expect("models/default")
}

struct Cells {
    cells: Vec<String>,
    genes: Vec<String>,
    counts: Vec<Vec<u32>>,
}

/// 30 cells over the 10x-style names and the default model's panel, with seeded counts.
fn cells(analysis: &Analysis) -> Cells {
    let mut genes: Vec<String> = TENX.iter().map(|s| s.to_string()).collect();
    genes.extend(analysis.predictor().card.panel.iter().map(|g| g.symbol.clone()));
    let cells: Vec<String> =
        (0..30).map(|i| if i % 2 == 0 { format!("CELL{i}-1") } else { format!("S1A{i:02}") }).collect();
    let mut state = 12345u64;
    let counts = (0..cells.len())
        .map(|_| {
            (0..genes.len())
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let r = (state >> 33) % 100;
                    if r < 60 { 0 } else { (r - 55) as u32 / 5 }
                })
                .collect()
        })
        .collect();
    Cells { cells, genes, counts }
}

fn h5ad(c: &Cells) -> Vec<u8> {
    let mut x = CsrMatrix::new(c.genes.len());
    for row in &c.counts {
        x.push_dense_row(&row.iter().map(|&v| v as f32).collect::<Vec<_>>());
    }
    let frame = |index: &[String]| Frame { index: index.to_vec(), columns: Vec::new() };
    let a = AnnData {
        x: &x,
        layers: Vec::new(),
        obs: frame(&c.cells),
        var: frame(&c.genes),
        uns: Vec::new(),
        compression: None,
    };
    h5ad_write::write_h5ad(&a).unwrap()
}

fn text(c: &Cells, genes_as_rows: bool, sep: &str, eol: &str) -> String {
    let mut out = String::new();
    if genes_as_rows {
        out.push_str(&format!("gene{sep}{}{eol}", c.cells.join(sep)));
        for (j, g) in c.genes.iter().enumerate() {
            let vals: Vec<String> = c.counts.iter().map(|r| r[j].to_string()).collect();
            out.push_str(&format!("{g}{sep}{}{eol}", vals.join(sep)));
        }
    } else {
        out.push_str(&format!("{sep}{}{eol}", c.genes.join(sep)));
        for (i, cell) in c.cells.iter().enumerate() {
            let vals: Vec<String> = c.counts[i].iter().map(|v| v.to_string()).collect();
            out.push_str(&format!("{cell}{sep}{}{eol}", vals.join(sep)));
        }
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// (cell, top-5 perturbations with probabilities) for every cell, and how the file was read.
fn predict(a: &mut Analysis, name: &str, bytes: Vec<u8>, orientation: Orientation) -> (Vec<String>, String) {
    let options = ReadOptions { orientation, ..Default::default() };
    let report = a.open(name, FileSource::bytes(bytes), &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let how = report.summary.matrix.clone();
    let n = report.cells;
    let rows = a.predict_cells(0, n, 5).unwrap();
    let out = rows
        .iter()
        .map(|r| {
            let top: Vec<String> = r.top.iter().map(|t| format!("{}={:.6}", t.perturbation, t.probability)).collect();
            format!("{}: {}", r.cell, top.join(" "))
        })
        .collect();
    (out, how)
}

#[test]
fn every_text_layout_predicts_like_the_h5ad_of_the_same_cells() {
    let mut a = Analysis::new(model(), &Device::flex()).unwrap();
    let c = cells(&a);
    let (expected, _) = predict(&mut a, "cells.h5ad", h5ad(&c), Orientation::Auto);
    assert_eq!(expected.len(), 30);
    let bom_crlf = [&b"\xef\xbb\xbf"[..], text(&c, false, ",", "\r\n").as_bytes()].concat();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("cells_rows.csv", text(&c, false, ",", "\n").into_bytes(), "cells as rows"),
        ("genes_rows.csv", text(&c, true, ",", "\n").into_bytes(), "genes as rows"),
        ("cells_rows.tsv", text(&c, false, "\t", "\n").into_bytes(), "cells as rows"),
        ("genes_rows.tsv.gz", gzip(text(&c, true, "\t", "\n").as_bytes()), "genes as rows"),
        ("cells_rows.csv.gz", gzip(text(&c, false, ",", "\n").as_bytes()), "cells as rows"),
        ("bom_crlf.csv", bom_crlf.clone(), "cells as rows"),
        (
            "genes_rows_crlf.csv",
            [&b"\xef\xbb\xbf"[..], text(&c, true, ",", "\r\n").as_bytes()].concat(),
            "genes as rows",
        ),
    ];
    for (name, bytes, orientation) in cases {
        let (got, how) = predict(&mut a, name, bytes, Orientation::Auto);
        assert!(how.contains(orientation) && how.contains("match"), "{name}: read as {how}");
        assert_eq!(got, expected, "{name}");
    }
    // The orientation asked for wins, in the same way.
    let (got, how) = predict(&mut a, "bom_crlf.csv", bom_crlf, Orientation::CellsAsRows);
    assert!(how.contains("asked for"), "{how}");
    assert_eq!(got, expected);
}

/// Genes named by versioned Ensembl IDs (as Cell Ranger's `features.tsv` gives them) are told from
/// cells too, and predict like the symbols.
#[test]
fn versioned_ensembl_ids_are_genes() {
    let mut a = Analysis::new(model(), &Device::flex()).unwrap();
    let mut c = cells(&a);
    let (expected, _) = predict(&mut a, "cells.h5ad", h5ad(&c), Orientation::Auto);
    let ids: Vec<String> = a.predictor().card.panel.iter().map(|g| g.gene_id.clone().unwrap_or_default()).collect();
    if ids.iter().any(|i| i.is_empty()) {
        return; // a panel without IDs: nothing to check
    }
    c.genes = TENX.iter().map(|s| s.to_string()).chain(ids.iter().map(|i| format!("{i}.7"))).collect();
    let (got, how) = predict(&mut a, "ids.csv", text(&c, true, ",", "\n").into_bytes(), Orientation::Auto);
    assert!(how.contains("genes as rows") && how.contains("genes are the rows"), "{how}");
    assert_eq!(got, expected);
}
