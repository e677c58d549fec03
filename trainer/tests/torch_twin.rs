//! The PyTorch twin's weights (tests/fixtures/torch_twin, written by
//! reference/pytorch/make_twin_fixture.py) import through burn-store and give PyTorch's logits,
//! with the full panel and with a partial one (absent genes masked), the cis path included:
//! a check of the Burn model's arithmetic and of the import path, without torch installed.

use mamba_perturb::model_folder;
use std::path::Path;
use std::process::Command;

use burn::tensor::Device;

#[test]
fn torch_weights_import_and_match_pytorch_logits() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/torch_twin");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("torch_twin_model");
    let status = Command::new(env!("CARGO_BIN_EXE_mamba-perturb"))
        .arg("import-torch")
        .arg("--weights")
        .arg(fixture.join("weights.safetensors"))
        .arg("--card")
        .arg(fixture.join(model_folder::CARD_FILE))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));

    let (_, p) = model_folder::load(&out, &Device::flex()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap()).unwrap();
    let rows = expected["x"].as_array().unwrap();
    let x: Vec<f32> =
        rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32)).collect();
    let (gene, count) = p.logits(&x, rows.len(), &p.training_reference()).unwrap();
    let flat = |k: &str| -> Vec<f32> {
        expected[k]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32))
            .collect()
    };
    // A partial panel: the genes the file lacks are absent keys and absent own tokens in both.
    let mut partial = p.training_reference();
    partial.measured = expected["present"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() > 0.5).collect();
    assert!(partial.measured.iter().any(|m| !m));
    let (gene_p, count_p) = p.logits(&x, rows.len(), &partial).unwrap();
    for (name, got, want) in [
        ("gene", gene, flat("gene_logits")),
        ("count", count, flat("count_logits")),
        ("partial-panel gene", gene_p, flat("partial_gene_logits")),
        ("partial-panel count", count_p, flat("partial_count_logits")),
    ] {
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{name} logits differ from PyTorch by {worst}");
    }

    // Weights for another architecture are refused with a clear message.
    let mut wrong: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join(model_folder::CARD_FILE)).unwrap()).unwrap();
    wrong["net"]["d_model"] = 8.into();
    let wrong_card = out.join("wrong_card.json");
    std::fs::write(&wrong_card, wrong.to_string()).unwrap();
    let res = Command::new(env!("CARGO_BIN_EXE_mamba-perturb"))
        .args(["import-torch", "--weights"])
        .arg(fixture.join("weights.safetensors"))
        .arg("--card")
        .arg(&wrong_card)
        .arg("--out")
        .arg(out.join("wrong"))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&res.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&res.stderr));
}
