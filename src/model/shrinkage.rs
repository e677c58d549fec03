//! Denoising the singles' measured changes before they compose answers (`programs_and_own`): the
//! programs perturbations share, read from every single that shows them, then what is left gene
//! by gene with an empirical-Bayes adaptive shrinkage (`adaptive_shrink`, the "ash" prior of
//! Stephens 2017, Biostatistics 18:275): each candidate's change d_i, with its sampling variance
//! v_i, is a true change θ_i plus noise, θ_i drawn from a mixture of a point mass at 0 and centred
//! normals of a grid of widths whose weights are fitted by maximum likelihood over the candidates;
//! each θ_i is then its posterior mean. Most candidates leave a given gene alone, so its small,
//! noisy changes fall to about 0 while the changes that stand out of their noise stay: the noise
//! of many unmoved genes no longer adds up as evidence.

/// Standardised changes are clipped at this share of (n g)^¼ noise sds before the shared programs
/// are sought: one change alone rises above the noise edge only beyond (n g)^¼ (the BBP
/// transition), so no lone change (a target's own rise) makes a program of its own.
const PROGRAM_CLIP: f64 = 0.5;

/// Changes of `n` candidates × `g` genes (row-major) with their sampling variances, denoised as
/// shared response programs plus each candidate's own changes: perturbations in a screen share a
/// few responses (Norman et al.'s clusters), so each candidate's share of them is read from every
/// candidate that shows them. The programs are the components of the noise-standardised changes
/// that rise above what noise alone gives (the Marchenko–Pastur edge, √n + √g for unit noise),
/// each shrunk by √(1 − edge²/σ²); what they leave is shrunk gene by gene (`adaptive_shrink`).
/// Returns the denoised changes and the number of programs found.
pub fn programs_and_own(d: &[f64], v: &[f64], n: usize, g: usize) -> (Vec<f64>, usize) {
    if n < MIN_OBSERVATIONS || d.len() != n * g || v.len() != n * g {
        return (d.to_vec(), 0);
    }
    let sd: Vec<f64> = v.iter().map(|&x| if x.is_finite() { x.max(1e-12).sqrt() } else { 1e-6 }).collect();
    let clip = PROGRAM_CLIP * ((n * g) as f64).powf(0.25);
    let z: Vec<f64> = d.iter().zip(&sd).map(|(d, s)| (d / s).clamp(-clip, clip)).collect();
    // Z Zᵀ (n × n): its eigenvectors are Z's left singular vectors, its eigenvalues σ².
    let mut gram = vec![0.0; n * n];
    for a in 0..n {
        for b in a..n {
            let x: f64 = z[a * g..(a + 1) * g].iter().zip(&z[b * g..(b + 1) * g]).map(|(x, y)| x * y).sum();
            gram[a * n + b] = x;
            gram[b * n + a] = x;
        }
    }
    let (values, vectors) = symmetric_eigen(gram, n);
    let edge = ((n as f64).sqrt() + (g as f64).sqrt()).powi(2);
    let mut low = vec![0.0; n * g];
    let mut programs = 0;
    for (i, &lambda) in values.iter().enumerate() {
        if lambda <= edge {
            continue;
        }
        programs += 1;
        let w = (1.0 - edge / lambda).sqrt();
        let u: Vec<f64> = (0..n).map(|a| vectors[a * n + i]).collect();
        // w · u (uᵀ Z), added to the low-rank part.
        let mut proj = vec![0.0; g];
        for (a, ua) in u.iter().enumerate() {
            proj.iter_mut().zip(&z[a * g..(a + 1) * g]).for_each(|(p, z)| *p += ua * z);
        }
        for (a, ua) in u.iter().enumerate() {
            low[a * g..(a + 1) * g].iter_mut().zip(&proj).for_each(|(l, p)| *l += w * ua * p);
        }
    }
    let shared: Vec<f64> = low.iter().zip(&sd).map(|(l, s)| l * s).collect();
    let mut out = shared.clone();
    for j in 0..g {
        let rest: Vec<f64> = (0..n).map(|a| d[a * g + j] - shared[a * g + j]).collect();
        let var: Vec<f64> = (0..n).map(|a| v[a * g + j]).collect();
        for (a, r) in adaptive_shrink(&rest, &var).into_iter().enumerate() {
            out[a * g + j] += r;
        }
    }
    (out, programs)
}

/// Eigenvalues and unit eigenvectors (the columns of a row-major n × n matrix) of a symmetric
/// matrix, by cyclic Jacobi rotations (n is the candidates, about a hundred: no linear-algebra
/// crate needed, natively or in the browser).
fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(1e-300);
    for _ in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q].powi(2))
            .sum();
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (kp, kq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * kp - s * kq;
                    a[k * n + q] = s * kp + c * kq;
                }
                for k in 0..n {
                    let (pk, qk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * pk - s * qk;
                    a[q * n + k] = s * pk + c * qk;
                }
                for k in 0..n {
                    let (kp, kq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * kp - s * kq;
                    v[k * n + q] = s * kp + c * kq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// Fewer measured changes than this: too few to fit a prior on, left as they are.
const MIN_OBSERVATIONS: usize = 5;
/// The point mass at 0 is favoured as ash does by default (a Dirichlet weight of 10 on it), so a
/// gene with no real change is shrunk all the way.
const NULL_PRIOR_WEIGHT: f64 = 10.0;
const EM_STEPS: usize = 500;
const EM_TOLERANCE: f64 = 1e-8;

/// Posterior means of the true changes, given changes `d` and their sampling variances `v`.
pub fn adaptive_shrink(d: &[f64], v: &[f64]) -> Vec<f64> {
    let n = d.len();
    if n < MIN_OBSERVATIONS || v.len() != n {
        return d.to_vec();
    }
    let v: Vec<f64> = v.iter().map(|&x| if x.is_finite() { x.max(1e-12) } else { 1e-12 }).collect();
    let widths = grid(d, &v);
    let k = widths.len();
    // log N(d_i; 0, σ_k² + v_i), one row per observation.
    let log_lik: Vec<f64> = d
        .iter()
        .zip(&v)
        .flat_map(|(&di, &vi)| {
            widths.iter().map(move |&s| {
                let total = s * s + vi;
                -0.5 * (di * di / total + total.ln() + std::f64::consts::TAU.ln())
            })
        })
        .collect();
    let mut weights = vec![1.0 / k as f64; k];
    let mut responsibilities = vec![0.0; n * k];
    for _ in 0..EM_STEPS {
        posterior_weights(&log_lik, &weights, &mut responsibilities);
        let mut next: Vec<f64> = (0..k).map(|c| (0..n).map(|i| responsibilities[i * k + c]).sum()).collect();
        next[0] += NULL_PRIOR_WEIGHT - 1.0;
        let total: f64 = next.iter().sum();
        next.iter_mut().for_each(|w| *w /= total);
        let change = next.iter().zip(&weights).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        weights = next;
        if change < EM_TOLERANCE {
            break;
        }
    }
    posterior_weights(&log_lik, &weights, &mut responsibilities);
    (0..n)
        .map(|i| {
            let r = &responsibilities[i * k..(i + 1) * k];
            r.iter().zip(&widths).map(|(&r, &s)| r * d[i] * s * s / (s * s + v[i])).sum()
        })
        .collect()
}

/// Widths of the prior's components: 0 (the point mass), then from a tenth of the smallest
/// noise up to twice the largest change beyond its noise, by factors of √2 (ash's default grid).
fn grid(d: &[f64], v: &[f64]) -> Vec<f64> {
    let smallest = v.iter().copied().fold(f64::INFINITY, f64::min).sqrt() / 10.0;
    let largest = d.iter().zip(v).map(|(&d, &v)| (d * d - v).max(0.0)).fold(0.0, f64::max).sqrt() * 2.0;
    let mut widths = vec![0.0, smallest];
    while widths.last().is_some_and(|&s| s < largest) {
        widths.push(widths[widths.len() - 1] * std::f64::consts::SQRT_2);
    }
    widths
}

/// Each observation's posterior over the components (rows of `out`), from the log likelihoods.
fn posterior_weights(log_lik: &[f64], weights: &[f64], out: &mut [f64]) {
    let k = weights.len();
    for (row, lik) in out.chunks_mut(k).zip(log_lik.chunks(k)) {
        let top = lik.iter().zip(weights).map(|(l, w)| l + w.max(1e-300).ln()).fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for ((r, l), w) in row.iter_mut().zip(lik).zip(weights) {
            *r = (l + w.max(1e-300).ln() - top).exp();
            total += *r;
        }
        row.iter_mut().for_each(|r| *r /= total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64 of `k`, as a uniform number in [−0.5, 0.5): test noise without a generator.
    fn uniform(k: u64) -> f64 {
        let mut z = k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64 - 0.5
    }

    /// Forty candidates leave the gene alone (noise of sd 1), two move it by 12: the noise falls
    /// near 0, the real changes stay near 12.
    #[test]
    fn noise_is_shrunk_and_real_changes_stay() {
        let noise: Vec<f64> = (0..40).map(|i| ((i * 7919 % 41) as f64 / 20.0 - 1.0) * 1.5).collect();
        let d: Vec<f64> = noise.iter().copied().chain([12.0, -11.0]).collect();
        let v = vec![1.0; d.len()];
        let s = adaptive_shrink(&d, &v);
        let kept_noise = s[..40].iter().map(|x| x.abs()).fold(0.0, f64::max);
        assert!(kept_noise < 0.3, "noise kept: {kept_noise} ({s:?})");
        assert!((s[40] - 12.0).abs() < 0.5 && (s[41] + 11.0).abs() < 0.5, "{:?}", &s[40..]);
        // Shrinkage never changes a sign nor grows a change.
        assert!(s.iter().zip(&d).all(|(a, b)| a * b >= 0.0 && a.abs() <= b.abs() + 1e-12));
    }

    /// A gene every candidate moves by about 5 (noise sd 1): the changes are kept, not pulled to 0.
    #[test]
    fn a_gene_every_candidate_moves_keeps_its_changes() {
        let d: Vec<f64> = (0..30).map(|i| 5.0 + ((i * 13 % 7) as f64 - 3.0) * 0.3).collect();
        let s = adaptive_shrink(&d, &vec![1.0; 30]);
        let mean = s.iter().sum::<f64>() / 30.0;
        assert!(mean > 4.5, "{mean} ({s:?})");
    }

    #[test]
    fn eigenpairs_rebuild_the_matrix() {
        let n = 6;
        let m: Vec<f64> =
            (0..n * n).map(|k| ((k / n + 1) * (k % n + 1)) as f64 + if k / n == k % n { 3.0 } else { 0.0 }).collect();
        let (values, vectors) = symmetric_eigen(m.clone(), n);
        for p in 0..n {
            for q in 0..n {
                let rebuilt: f64 = (0..n).map(|i| vectors[p * n + i] * values[i] * vectors[q * n + i]).sum();
                assert!((rebuilt - m[p * n + q]).abs() < 1e-9, "{p},{q}: {rebuilt} vs {}", m[p * n + q]);
            }
        }
    }

    /// Thirty candidates × eighty genes: ten of them share one program (its genes moved by 2 to
    /// 4), every change carries noise of sd 1, and candidate 0 also raises its own gene 0 by 40.
    /// The program is found, its members' changes come back near the truth, much nearer than the
    /// noisy measurements, and the own rise stays.
    #[test]
    fn a_shared_program_is_read_from_every_candidate_that_shows_it() {
        let (n, g) = (30, 80);
        let noise = |k: usize| uniform(k as u64) * 12f64.sqrt();
        let program: Vec<f64> = (0..g).map(|j| if j % 4 == 1 { 2.0 + (j % 3) as f64 } else { 0.0 }).collect();
        let truth: Vec<f64> = (0..n * g)
            .map(|k| {
                let (a, j) = (k / g, k % g);
                (if a < 10 { program[j] } else { 0.0 }) + if a == 0 && j == 0 { 40.0 } else { 0.0 }
            })
            .collect();
        let d: Vec<f64> = truth.iter().enumerate().map(|(k, t)| t + noise(k)).collect();
        let (out, programs) = programs_and_own(&d, &vec![1.0; n * g], n, g);
        assert_eq!(programs, 1);
        let error = |x: &[f64]| x.iter().zip(&truth).map(|(x, t)| (x - t).powi(2)).sum::<f64>() / (n * g) as f64;
        assert!(error(&out) < 0.25 * error(&d), "{} vs {}", error(&out), error(&d));
        assert!((out[0] - 40.0).abs() < 2.0, "{}", out[0]);
    }

    #[test]
    fn too_few_changes_are_left_as_they_are() {
        assert_eq!(adaptive_shrink(&[3.0, -1.0], &[1.0, 1.0]), vec![3.0, -1.0]);
    }
}
