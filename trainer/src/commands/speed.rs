//! `speed`: times the network's training step and inference on given shapes with random inputs,
//! for benches/torch_vs_burn.py, which times the PyTorch twin on the same shapes in the same run.

use burn::optim::AdamWConfig;
use burn::tensor::{Distribution, Tensor};
use mamba_perturb::model::{GenomeFeatures, NetConfig};

use crate::compute::Compute;
use crate::training::{Batch, batch_gradients};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 233)]
    pub genes: usize,
    #[arg(long, default_value_t = 105)]
    pub candidates: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    #[arg(long, default_value_t = 32)]
    pub d_model: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// cpu, or gpu in a build with `--features gpu` (Vulkan).
    #[arg(long, value_enum, default_value_t = Compute::Cpu)]
    pub device: Compute,
    /// Instead of timing: write to --out an UNTRAINED model of this shape for FILE (a labelled
    /// h5ad): its --genes most variable genes as the panel, --candidates candidates (the file's
    /// genes first, then GRCh38 genes), the additive head from FILE's singles plus each other
    /// candidate's own-gene rise. For measuring a genome-wide model's memory and speed
    /// (benches/page_genome_wide.mjs); its answers mean nothing.
    #[arg(long, requires = "out")]
    pub model_for: Option<std::path::PathBuf>,
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// The machine's achievable matrix-product rate through the same backend (for the CPU, the same
/// gemm crate Burn's matmul calls): a 1024³ f32 product, best of 5 after a warm-up.
fn gemm_gflops(device: &burn::tensor::Device) -> f64 {
    let n = 1024;
    let a = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
    let b = Tensor::<2>::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
    let mut best = f64::INFINITY;
    for i in 0..6 {
        let t = std::time::Instant::now();
        let c = a.clone().matmul(b.clone());
        let _: Vec<f32> = c.narrow(0, 0, 1).into_data().try_to_vec().unwrap_or_default();
        if i > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(args: Args) -> Result<(), crate::error::CliError> {
    args.device.check()?;
    if let (Some(file), Some(out)) = (&args.model_for, &args.out) {
        return write_untrained_model(&args, file, out);
    }
    let config = NetConfig {
        n_genes: args.genes,
        n_candidates: args.candidates,
        d_model: args.d_model,
        n_heads: args.heads,
        n_freqs: 6,
        // The PyTorch twin it is timed against has no cis path.
        cis: false,
    };
    let plain = args.device.device();
    plain.seed(0);
    let device = plain.clone().autodiff();
    let loci = vec![None; args.genes];
    let cands = vec![None; args.candidates];
    let (mean, sd) = (vec![0.5f32; args.genes], vec![1.0f32; args.genes]);
    // As in a visible-target panel: every candidate's own gene is measured.
    let own: Vec<Option<usize>> = (0..args.candidates).map(|c| Some(c % args.genes)).collect();
    let feats = GenomeFeatures::new(&loci, &cands, 6, &own, &mean, &sd, &device);
    let mut net = config.init(&device);
    let mut optim = AdamWConfig::new().init();
    let b = args.batch;
    let x = Tensor::<2>::random([b, args.genes], Distribution::Uniform(0.0, 3.0), &device);
    let mut y = vec![0f32; b * args.candidates];
    let mut k = vec![0f32; b * 3];
    for r in 0..b {
        y[r * args.candidates + r % args.candidates] = 1.0;
        y[r * args.candidates + (r + 1) % args.candidates] = 1.0;
        k[r * 3 + 2] = 1.0;
    }
    let y = Tensor::<2>::from_data(burn::tensor::TensorData::new(y, [b, args.candidates]), &device);
    let k = Tensor::<2>::from_data(burn::tensor::TensorData::new(k, [b, 3]), &device);
    // The training loop's own step (sharded over threads), so this times what `train` runs.
    let batch = Batch { x, y, k, present: None };
    let mut train = Vec::new();
    for i in 0..args.steps + 2 {
        let t = std::time::Instant::now();
        let (_, grads) = batch_gradients(&net, &feats, &batch, args.device.shards());
        net = optim.step(1e-3, net, grads);
        // GPU kernels run asynchronously: wait for the step before reading the clock.
        let _ = plain.sync();
        if i >= 2 {
            train.push(t.elapsed().as_secs_f64());
        }
    }
    let valid = burn::module::Module::valid(&net);
    let plain_feats = GenomeFeatures::new(&loci, &cands, 6, &own, &mean, &sd, &plain);
    // What `predict` runs per batch (rows split over threads on the CPU), outputs read back.
    let xp: Vec<f32> = Tensor::<2>::random([b, args.genes], Distribution::Uniform(0.0, 3.0), &plain)
        .into_data()
        .try_to_vec()
        .unwrap_or_default();
    let mut infer = Vec::new();
    for i in 0..args.steps + 2 {
        let t = std::time::Instant::now();
        valid
            .row_logits(&xp, b, &plain_feats)
            .map_err(|problem| crate::error::CliError::Data { file: "speed".into(), problem })?;
        if i >= 2 {
            infer.push(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "{}",
        serde_json::json!({"backend": args.device.name(), "train_step_s": median(train), "inference_batch_s": median(infer),
            "forward_flops": config.forward_flops(b), "gemm_gflops": gemm_gflops(&plain)})
    );
    Ok(())
}

/// `--model-for FILE --out DIR`: an untrained model of the asked shape, said so in its card.
fn write_untrained_model(
    args: &Args,
    file: &std::path::Path,
    out: &std::path::Path,
) -> Result<(), crate::error::CliError> {
    use mamba_perturb::genome::GeneTable;
    use mamba_perturb::model::additive::{AdditiveHead, Shrinkage};
    use mamba_perturb::model::card::{CARD_FORMAT, CardGene, ModelCard, TrainingData, WeightsInfo, own_genes};
    use mamba_perturb::reference::{ReferenceKind, centre_and_scale};

    let data = crate::dataset::load(file, &Default::default())?;
    let cells: Vec<usize> = (0..data.labels.len()).collect();
    let panel = data.choose_panel(&cells, args.genes, true);
    let panel_genes = data.card_genes(&panel);
    // Candidates: the file's genes (with their places), then GRCh38 genes with a place.
    let table = GeneTable::grch38();
    let mut seen = std::collections::HashSet::new();
    let file_genes = data.card_genes(&(0..data.data.genes.len()).collect::<Vec<_>>());
    let others = table.records().iter().filter_map(|r| {
        let locus = table.locus(r)?;
        Some(CardGene::new(&r.symbol, Some(&r.gene_id), Some(&locus)))
    });
    let candidates: Vec<CardGene> = file_genes
        .into_iter()
        .chain(others)
        .filter(|g| seen.insert(g.symbol.to_ascii_uppercase()))
        .take(args.candidates)
        .collect();
    if candidates.len() < args.candidates {
        return Err(crate::error::flag("candidates", format!("only {} genes could be found", candidates.len())));
    }
    let index: std::collections::HashMap<&str, usize> =
        candidates.iter().enumerate().map(|(i, g)| (g.symbol.as_str(), i)).collect();
    let x = data.dense(&cells, &panel);
    let g = panel.len();
    let (mean, sd) = centre_and_scale(&x, g);
    let targets: Vec<Vec<usize>> = cells
        .iter()
        .map(|&i| data.labels[i].genes().iter().filter_map(|s| index.get(s.as_str()).copied()).collect())
        .collect();
    let own = own_genes(&panel_genes, &candidates);
    let head = AdditiveHead::fit(&x, g, &targets, candidates.len(), Shrinkage::PseudoCells(100.0))
        .map(|h| h.with_own_rise(&own));
    let net_config = NetConfig {
        n_genes: g,
        n_candidates: candidates.len(),
        d_model: args.d_model,
        n_heads: args.heads,
        n_freqs: 6,
        cis: false,
    };
    let device = burn::tensor::Device::flex();
    let net = crate::training::seeded(&device, 0, || net_config.init(&device));
    let mut card = ModelCard {
        format: CARD_FORMAT.into(),
        name: out.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
        description: format!(
            "UNTRAINED network of a genome-wide shape ({} candidates, {g} panel genes), written by `mamba-perturb speed --model-for` to measure memory and speed; its answers mean nothing.",
            candidates.len()
        ),
        training_data: TrainingData {
            name: file.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
            kind: if data.data.simulated { "simulated" } else { "real" }.into(),
            sha256: data.sha256.clone(),
            cells: 0,
            conditions: 0,
            label_column: String::new(),
        },
        panel: panel_genes,
        candidates,
        targets_masked: false,
        normalization: "scanpy normalize_total(target_sum=1e4) + log1p over all genes of the file (counts)".into(),
        net: net_config,
        reference_mean: mean,
        reference_sd: sd,
        reference: ReferenceKind::FileCells,
        answer_sizes: Some([0.1, 0.9, 0.0]),
        additive: head,
        posterior_temperature: None,
        guide_failure: None,
        group_model: None,
        weights: WeightsInfo { file: String::new(), sha256: String::new(), bytes: 0, dtype: "f32".into() },
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: 0,
        metrics: serde_json::json!({ "untrained": true }),
        versions: serde_json::json!({ "mamba_perturb": env!("CARGO_PKG_VERSION"), "burn": "0.22.1" }),
    };
    mamba_perturb::model_folder::write(out, &mut card, net)?;
    eprintln!(
        "wrote {}: an UNTRAINED model, {} candidates x {g} panel genes ({} weight bytes)",
        out.display(),
        card.candidates.len(),
        card.weights.bytes
    );
    Ok(())
}
