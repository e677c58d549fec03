//! The benchmark's human-readable faces: a Markdown table and an SVG bar chart, both read from the
//! flat results JSON so they can never disagree with it.

use std::collections::BTreeMap;

use serde_json::Value;

const METHODS: [&str; 11] = [
    "mamba-perturb",
    "attention-no-position",
    "mlp",
    "network-only",
    "additive-head-only",
    "pooling-without-failure",
    "logistic-regression",
    "additive-inverse",
    "nearest-centroid",
    "target-upregulation",
    "prior-only",
];

/// Rows with role `ceiling` (the Bayes oracle of a simulated file): shown after the methods, marked,
/// only where the results have them.
const CEILINGS: [&str; 3] = ["oracle", "oracle-additive", "oracle-design"];

/// The methods, then the ceilings the results hold.
fn rows(r: &Value) -> Vec<&'static str> {
    let has = |m: &str| r["results"].as_array().is_some_and(|a| a.iter().any(|x| x["method"] == m));
    METHODS.iter().copied().chain(CEILINGS.iter().copied().filter(|m| has(m))).collect()
}

/// How a row is named in a table: ceilings say so.
fn label(method: &str) -> String {
    if CEILINGS.contains(&method) { format!("*{method}* (ceiling)") } else { method.to_string() }
}

fn find(
    r: &Value,
    method: &str,
    split: &str,
    targets: &str,
    level: &str,
    class: &str,
    metric: &str,
) -> Option<(f64, f64)> {
    find_on(r, "full", method, split, targets, level, class, metric)
}

/// `find` on a given panel (`full`, or one of the evaluation-only partial panels).
#[allow(clippy::too_many_arguments)]
fn find_on(
    r: &Value,
    panel: &str,
    method: &str,
    split: &str,
    targets: &str,
    level: &str,
    class: &str,
    metric: &str,
) -> Option<(f64, f64)> {
    r["results"].as_array()?.iter().find_map(|x| {
        (x["method"] == method
            && (x["panel"] == panel || (x["panel"].is_null() && panel == "full"))
            && x["split"] == split
            && x["targets"] == targets
            && x["level"] == level
            && x["class"] == class
            && x["metric"] == metric)
            .then(|| (x["mean"].as_f64().unwrap_or(f64::NAN), x["sd"].as_f64().unwrap_or(0.0)))
    })
}

fn cell(v: Option<(f64, f64)>) -> String {
    v.map(|(m, s)| format!("{m:.3} ± {s:.3}")).unwrap_or_else(|| "–".into())
}

pub fn markdown(r: &Value) -> String {
    let kind = r["dataset"]["kind"].as_str().unwrap_or("?");
    let mut s = String::new();
    if kind == "simulated" {
        s += "**Measured on SIMULATED Norman-design data, not on real measurements** (see docs/simulation.md).\n\n";
    }
    s += &format!(
        "Dataset `{}` ({kind}, {} cells, {} conditions); seeds {}; whole conditions held out. Mean ± sd over seeds.\n",
        r["dataset"]["name"].as_str().unwrap_or("?"),
        r["dataset"]["cells"],
        r["dataset"]["conditions"],
        r["seeds"]
    );
    s += &ceiling_note(r);
    for split in ["heldout-pairs", "unseen-genes", "transfer"] {
        for targets in ["visible", "masked"] {
            if find(r, "mamba-perturb", split, targets, "cell", "all", "exact_pair_top1").is_none() {
                continue;
            }
            s += &format!("\n### Split `{split}`, target genes {targets}\n\n");
            s += "| method | cell exact top-1 | top-5 | top-10 | ≥1 gene hit@1 | MRR | micro-F1 | ECE top-1 | pseudobulk exact top-1 (mean profile) | pseudobulk exact top-1 (from cell posteriors) | pseudobulk, the better of the two | 10-cell pseudobulk exact top-1 |\n";
            s += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
            for m in rows(r) {
                if find(r, m, split, targets, "cell", "all", "exact_pair_top1").is_none() {
                    continue;
                }
                let c = |metric: &str| cell(find(r, m, split, targets, "cell", "all", metric));
                let mean_profile = find(r, m, split, targets, "pseudobulk", "all", "exact_pair_top1");
                let posterior = find(r, m, split, targets, "pseudobulk-posterior", "all", "exact_pair_top1");
                let better = match (mean_profile, posterior) {
                    (Some(a), Some(b)) if a.0 > b.0 => format!("{:.3} (mean profile)", a.0),
                    (_, Some(b)) => format!("{:.3} (posteriors)", b.0),
                    (Some(a), None) => format!("{:.3} (mean profile)", a.0),
                    _ => "–".into(),
                };
                s += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    label(m),
                    c("exact_pair_top1"),
                    c("exact_pair_top5"),
                    c("exact_pair_top10"),
                    c("any_gene_hit1"),
                    c("mrr"),
                    c("micro_f1"),
                    c("ece_top1"),
                    cell(mean_profile),
                    cell(posterior),
                    better,
                    cell(find(r, m, split, targets, "pseudobulk10", "all", "exact_pair_top1")),
                );
            }
        }
    }
    let panels = ["full", "partial-panel-75", "partial-panel-50", "partial-panel-25", "partial-panel-50-targets"];
    if find_on(r, "partial-panel-50", "mamba-perturb", "heldout-pairs", "visible", "cell", "all", "exact_pair_top1")
        .is_some()
    {
        s += "\n### Partial panels (`heldout-pairs`, cell exact top-1; genes removed at evaluation only and absent for every method)\n\n";
        s +=
            &format!("| method | targets | {} |\n| --- | --- |{}\n", panels.join(" | "), " --- |".repeat(panels.len()));
        for targets in ["visible", "masked"] {
            for m in rows(r) {
                let row: Vec<String> = panels
                    .iter()
                    .map(|p| cell(find_on(r, p, m, "heldout-pairs", targets, "cell", "all", "exact_pair_top1")))
                    .collect();
                if row.iter().all(|c| c == "–") {
                    continue;
                }
                s += &format!("| {} | {targets} | {} |\n", label(m), row.join(" | "));
            }
        }
    }
    s += &paired_differences(r);
    s += &calibration_summary(r);
    s += &held_out_mix_summary(r);
    s += "\n### By genetic-interaction class of the held-out pair (cell exact top-1, `heldout-pairs`)\n\n";
    let classes = ["additive", "dominant", "synergy", "buffering", "unfitted"];
    s += "| method | targets | ";
    s += &classes.join(" | ");
    s += " |\n| --- | --- |";
    s += &" --- |".repeat(classes.len());
    s += "\n";
    for targets in ["visible", "masked"] {
        for m in rows(r) {
            if find(r, m, "heldout-pairs", targets, "cell", "all", "exact_pair_top1").is_none() {
                continue;
            }
            let row: Vec<String> = classes
                .iter()
                .map(|c| cell(find(r, m, "heldout-pairs", targets, "cell", c, "exact_pair_top1")))
                .collect();
            s += &format!("| {} | {targets} | {} |\n", label(m), row.join(" | "));
        }
    }
    s
}

/// Per-seed values of one row, keyed by seed (ablations may have run on fewer seeds than the model).
fn seed_values(r: &Value, method: &str, split: &str, targets: &str, level: &str) -> Option<BTreeMap<u64, f64>> {
    r["results"].as_array()?.iter().find_map(|x| {
        (x["method"] == method
            && (x["panel"] == "full" || x["panel"].is_null())
            && x["split"] == split
            && x["targets"] == targets
            && x["level"] == level
            && x["class"] == "all"
            && x["metric"] == "exact_pair_top1")
            .then(|| {
                let values = x["values"].as_array()?.iter().filter_map(Value::as_f64);
                let seeds = x["seeds"].as_array().map(|s| s.iter().filter_map(Value::as_u64).collect::<Vec<_>>());
                Some(
                    values
                        .enumerate()
                        .map(|(i, v)| (seeds.as_ref().and_then(|s| s.get(i).copied()).unwrap_or(i as u64), v))
                        .collect(),
                )
            })
            .flatten()
    })
}

/// The model minus each other method, seed by seed (paired: same split, same cells), as mean ± sd of
/// the differences: the figure that says whether a difference is larger than the seeds' spread.
fn paired_differences(r: &Value) -> String {
    let mut s = String::from(
        "\n### Paired differences: mamba-perturb minus each method (exact top-1, `heldout-pairs`, mean ± sd of the per-seed differences)\n\n| method | targets | cell | pseudobulk (from cell posteriors) |\n| --- | --- | --- | --- |\n",
    );
    let mut any = false;
    for targets in ["visible", "masked"] {
        for m in METHODS.iter().skip(1) {
            let diff = |level: &str| -> Option<(f64, f64)> {
                let a = seed_values(r, "mamba-perturb", "heldout-pairs", targets, level)?;
                let b = seed_values(r, m, "heldout-pairs", targets, level)?;
                let d: Vec<f64> = a.iter().filter_map(|(seed, x)| Some(x - b.get(seed)?)).collect();
                let n = d.len() as f64;
                let mean = d.iter().sum::<f64>() / n;
                let sd = if d.len() > 1 {
                    (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                } else {
                    0.0
                };
                (!d.is_empty()).then_some((mean, sd))
            };
            let (c, p) = (diff("cell"), diff("pseudobulk-posterior"));
            if c.is_none() && p.is_none() {
                continue;
            }
            any = true;
            let signed =
                |v: Option<(f64, f64)>| v.map(|(m, s)| format!("{m:+.3} ± {s:.3}")).unwrap_or_else(|| "–".into());
            s += &format!("| {m} | {targets} | {} | {} |\n", signed(c), signed(p));
        }
    }
    if any { s } else { String::new() }
}

/// What the ceiling rows are, or why there are none.
fn ceiling_note(r: &Value) -> String {
    let files = r["oracle"]["files"].as_array().cloned().unwrap_or_default();
    let mut s = String::new();
    if files.iter().any(|f| f["rows"] == true) {
        s += "\nRows marked *(ceiling)* are not methods: *oracle* is the Bayes posterior with the simulator's world known \
              (expected profiles, noise, depth, cell state, guide failure) over the same answers every method ranks (control, \
              each candidate, each pair of candidates; the design's size shares, every answer of one size equally likely; \
              a pair outside the design composed additively from its singles): the best any method can do on average from \
              these genes. *oracle-additive* is the same with every pair's own interaction removed (its singles composed \
              additively). *oracle-design* also knows which pairs the screen holds, which no method is told; it shows how \
              much of the difficulty is choosing among all pairs. At pseudobulk levels they pool the cells' likelihoods.\n";
    }
    for f in files.iter().filter(|f| f["rows"] == false) {
        s += &format!(
            "\n{}: {}.\n",
            f["file"].as_str().unwrap_or("?"),
            f["reason"].as_str().unwrap_or("no oracle rows")
        );
    }
    s
}

/// Cell-level exact top-1 per method on held-out pairs, target genes visible and masked (ceilings
/// as the last bars, when present).
pub fn bar_chart(r: &Value) -> String {
    let methods = rows(r);
    let (w, h, left, top, bottom) = (720.0, 360.0, 170.0, 50.0, 40.0);
    let bar_h = (h - top - bottom) / methods.len() as f64 / 2.4;
    let scale = |v: f64| (w - left - 40.0) * v.clamp(0.0, 1.0);
    let simulated = r["dataset"]["kind"] == "simulated";
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="14">{}Held-out pairs: exact top-1 per cell (mean ± sd over seeds)</text>
<text x="10" y="38" fill="#1f77b4">■ target genes visible</text><text x="170" y="38" fill="#ff7f0e">■ target genes masked</text>
"##,
        if simulated { "[SIMULATED data] " } else { "" }
    );
    for (i, m) in methods.iter().enumerate() {
        let y0 = top + i as f64 * bar_h * 2.4;
        let name = if CEILINGS.contains(m) { format!("{m} (ceiling)") } else { m.to_string() };
        s += &format!(r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{name}</text>"#, left - 8.0, y0 + bar_h * 1.2);
        for (k, (targets, color)) in [("visible", "#1f77b4"), ("masked", "#ff7f0e")].iter().enumerate() {
            if let Some((mean, sd)) = find(r, m, "heldout-pairs", targets, "cell", "all", "exact_pair_top1") {
                let y = y0 + k as f64 * bar_h;
                s += &format!(
                    r#"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="black"/><text x="{:.1}" y="{:.1}">{mean:.3}</text>"#,
                    scale(mean).max(1.0),
                    bar_h * 0.9,
                    left + scale(mean - sd),
                    left + scale(mean + sd),
                    y + bar_h * 0.45,
                    y + bar_h * 0.45,
                    left + scale(mean + sd) + 4.0,
                    y + bar_h * 0.8
                );
            }
        }
        s += "\n";
    }
    s += &format!(
        r#"<text x="{left}" y="{:.0}">0</text><text x="{:.0}" y="{:.0}" text-anchor="end">1.0</text>"#,
        h - 12.0,
        w - 40.0,
        h - 12.0
    );
    s += "\n</svg>\n";
    s
}

/// Per split, the model's and the ceiling's reliability bins as (mean top-1 probability, accuracy,
/// examples), summed over seeds.
fn reliability_of(r: &Value, method: &str, split: &str, targets: &str) -> Option<Vec<(f64, f64, f64)>> {
    let entry = r["reliability"]
        .as_array()?
        .iter()
        .find(|e| e["method"] == method && e["split"] == split && e["targets"] == targets)?;
    let bins = entry["bins"].as_array()?;
    Some(
        bins.iter()
            .map(|b| {
                let n = b["examples"].as_f64().unwrap_or(0.0);
                (b["confidence"].as_f64().unwrap_or(0.0), b["hits"].as_f64().unwrap_or(0.0), n)
            })
            .collect(),
    )
}

/// Over- or under-confidence in one line per split: the mean probability of the top answer against
/// how often it is right (what the ECE column measures bin by bin).
fn calibration_summary(r: &Value) -> String {
    let mut lines = String::new();
    for (split, targets) in SPLITS_DRAWN {
        for m in ["mamba-perturb", "oracle", "oracle-design"] {
            let Some(bins) = reliability_of(r, m, split, targets) else { continue };
            let n: f64 = bins.iter().map(|b| b.2).sum();
            if n == 0.0 {
                continue;
            }
            let (conf, hits) = (bins.iter().map(|b| b.0).sum::<f64>() / n, bins.iter().map(|b| b.1).sum::<f64>() / n);
            lines += &format!("| {} | {split} | {targets} | {conf:.3} | {hits:.3} | {:+.3} |\n", label(m), conf - hits);
        }
    }
    match lines.is_empty() {
        true => lines,
        false => format!(
            "\n### Calibration (cells, full panel, all seeds pooled; bin by bin in `reliability.svg`)\n\n| method | split | targets | mean top-1 probability | top-1 accuracy | over (+) / under (−) confidence |\n| --- | --- | --- | --- | --- | --- |\n{lines}"
        ),
    }
}

/// The held-out mix (`held_out_mix` in the JSON): exact top-1 on the training's held-out cells of
/// every answer size, mean over seeds, so that a gain on the pairs-only test set that is paid for
/// by single or control cells shows in the same report.
fn held_out_mix_summary(r: &Value) -> String {
    let Some(rows) = r["held_out_mix"]["rows"].as_array().filter(|rows| !rows.is_empty()) else { return String::new() };
    let mut groups: BTreeMap<(String, String, String), Vec<&Value>> = BTreeMap::new();
    for row in rows {
        let key = |k: &str| row[k].as_str().unwrap_or("?").to_string();
        groups.entry((key("split"), key("targets"), key("method"))).or_default().push(&row["top1"]);
    }
    let mut lines = String::new();
    for ((split, targets, method), tops) in &groups {
        let mean = |k: &str| {
            let v: Vec<f64> = tops.iter().filter_map(|t| t[k].as_f64()).collect();
            if v.is_empty() { "–".to_string() } else { format!("{:.3}", v.iter().sum::<f64>() / v.len() as f64) }
        };
        lines += &format!(
            "| {} | {split} | {targets} | {} | {} | {} | {} | {} |\n",
            label(method),
            tops.len(),
            mean("control"),
            mean("singles"),
            mean("pairs"),
            mean("mix")
        );
    }
    format!(
        "\n### Held-out mix (cells of every answer size that training kept out: validation pairs, calibration control and single cells; exact top-1, mean over seeds; mix weighted to the design's size shares)\n\n| method | split | targets | seeds | control | singles | pairs | mix |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n{lines}"
    )
}

/// The splits the reliability diagram draws, one panel each.
const SPLITS_DRAWN: [(&str, &str); 4] =
    [("heldout-pairs", "visible"), ("heldout-pairs", "masked"), ("transfer", "visible"), ("transfer", "masked")];

/// Reliability diagram: per split, accuracy of the top answer against its probability (bins with at
/// least 20 cells, all seeds pooled), for the model, two baselines and the ceiling; the diagonal is
/// perfect calibration.
pub fn reliability_diagram(r: &Value) -> String {
    let lines = [
        ("mamba-perturb", "#1f77b4", ""),
        ("additive-inverse", "#2ca02c", ""),
        ("target-upregulation", "#7f7f7f", ""),
        ("oracle", "black", "4 3"),
    ];
    let panels: Vec<(&str, &str)> =
        SPLITS_DRAWN.iter().copied().filter(|(s, t)| reliability_of(r, "mamba-perturb", s, t).is_some()).collect();
    let (size, pad, top) = (220.0, 50.0, 60.0);
    let w = (pad + panels.len().max(1) as f64 * (size + pad)).max(780.0);
    let h = top + size + 50.0;
    let simulated = r["dataset"]["kind"] == "simulated";
    let mut s = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="14">{}Reliability: accuracy of each cell's top answer against its probability (bins of ≥ 20 cells)</text>
"##,
        if simulated { "[SIMULATED data] " } else { "" }
    );
    let mut x = 10.0;
    for (name, color, dash) in lines {
        let name = if CEILINGS.contains(&name) { format!("{name} (ceiling)") } else { name.to_string() };
        s += &format!(
            r#"<line x1="{x}" x2="{}" y1="34" y2="34" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="38">{name}</text>"#,
            x + 18.0,
            x + 22.0,
        );
        x += 40.0 + 7.0 * name.len() as f64;
    }
    s += "\n";
    for (i, (split, targets)) in panels.iter().enumerate() {
        let x0 = pad + i as f64 * (size + pad);
        let (px, py) = (|v: f64| x0 + v * size, |v: f64| top + size - v * size);
        s += &format!(
            r##"<rect x="{x0}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#999"/><line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{top}" stroke="#ccc"/><text x="{x0}" y="{:.1}">{split}, targets {targets}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">top-1 probability</text><text x="{:.1}" y="{:.1}" text-anchor="middle" transform="rotate(-90 {:.1} {:.1})">accuracy</text>"##,
            top + size,
            x0 + size,
            top - 6.0,
            x0 + size / 2.0,
            top + size + 30.0,
            x0 - 12.0,
            top + size / 2.0,
            x0 - 12.0,
            top + size / 2.0
        );
        s += &format!(
            r#"<text x="{x0}" y="{:.1}">0</text><text x="{:.1}" y="{:.1}" text-anchor="end">1</text>"#,
            top + size + 14.0,
            x0 + size,
            top + size + 14.0
        );
        for (method, color, dash) in lines {
            let Some(bins) = reliability_of(r, method, split, targets) else { continue };
            let points: Vec<String> = bins
                .iter()
                .filter(|b| b.2 >= 20.0)
                .map(|&(conf, hits, n)| format!("{:.1},{:.1}", px(conf / n), py(hits / n)))
                .collect();
            s += &format!(
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                points.join(" ")
            );
        }
        s += "\n";
    }
    s += "</svg>\n";
    s
}
