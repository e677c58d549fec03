//! The CLI's CPU kernels (flex), each with its own backward pass: the attention softmax and GELU.
//!
//! Softmax: the [batch, heads, queries, genes] attention weights are the largest tensor of a
//! training step and their element-wise work dominated it. Composed from primitive ops, autodiff
//! records five passes over them (max, shift, exp, sum, divide) plus the mask and about as many
//! again backwards, and flex's own softmax calls a scalar `exp` per element (13 ms of a 60 ms step
//! here). This op runs one row kernel forwards (bias, max, vectorised exp and sum, scale) and one
//! backwards, dS = P ⊙ (dP − Σ dP ⊙ P), both in place. GELU: flex evaluates erf by a scalar
//! library call; this one is vectorised. Both match Burn's ops to float rounding (exp ~2e-7
//! relative, erf ~1.5e-7 absolute).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

#[backend_extension(Autodiff, Flex)]
pub trait SoftmaxOps: Backend {
    /// Softmax over the last dimension of `x + bias`, `bias` [B, n] added to every row of batch
    /// item b (x: [B, ..., n]); the bias is a constant (no gradient).
    fn softmax_last(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of the scores from the output P and the gradient of P.
    fn softmax_last_backward(p: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// x · Φ(x), Φ the standard normal distribution function (exact GELU).
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of x from x and the gradient of GELU(x): grad · (Φ(x) + x φ(x)).
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SoftmaxOps for Flex {
    fn softmax_last(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let n = *x.shape().as_slice().last().unwrap_or(&1);
        let rows = x.shape().num_elements() / n.max(1);
        let bias = bias.to_contiguous();
        let bias = contiguous_f32(&bias);
        let items = bias.len() / n.max(1);
        assert!(items > 0 && rows % items == 0, "softmax bias: {items} rows of {n} for {rows} score rows");
        let per_item = rows / items;
        rows_in_place(x, None, |chunk, first_row, n| {
            kernels::softmax_rows(chunk, n, |r| &bias[(first_row + r) / per_item * n..][..n])
        })
    }

    fn softmax_last_backward(p: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let p = p.to_contiguous();
        let p = contiguous_f32(&p);
        rows_in_place(grad, Some(p.len()), |rows, first_row, n| {
            kernels::backward_rows(&p[first_row * n..][..rows.len()], rows, n)
        })
    }

    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        rows_in_place(x, None, |chunk, _, _| kernels::gelu(chunk))
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let x = x.to_contiguous();
        let x = contiguous_f32(&x);
        rows_in_place(grad, Some(x.len()), |chunk, first_row, n| {
            kernels::gelu_backward(&x[first_row * n..][..chunk.len()], chunk)
        })
    }
}

fn contiguous_f32(t: &FlexTensor) -> &[f32] {
    let (start, end) = t.layout().contiguous_offsets().expect("a contiguous tensor");
    &t.storage::<f32>()[start..end]
}

/// Runs `kernel` over chunks of whole rows (last dimension) of `t`, in place (a copy only when
/// the buffer is shared or strided), chunks in parallel. The kernel gets the chunk, the index of
/// its first row and the row length. The big attention tensors are neither zeroed nor copied.
fn rows_in_place(
    t: FlexTensor,
    expected_len: Option<usize>,
    kernel: impl Fn(&mut [f32], usize, usize) + Sync,
) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "the fused softmax runs on f32");
    let shape = t.shape();
    let n = *shape.as_slice().last().unwrap_or(&1);
    let mut t = t.to_contiguous();
    let (start, end) = t.layout().contiguous_offsets().expect("contiguous after to_contiguous");
    let data = &mut t.storage_mut::<f32>()[start..end];
    if let Some(len) = expected_len {
        assert_eq!(data.len(), len, "softmax backward: gradient and output differ in size");
    }
    if n > 0 {
        const ROWS_PER_TASK: usize = 64;
        data.par_chunks_mut(ROWS_PER_TASK * n).enumerate().for_each(|(i, chunk)| kernel(chunk, i * ROWS_PER_TASK, n));
    }
    t
}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: SoftmaxOps> Backward<B, 1> for SoftmaxBackward {
    /// The forward output P.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::softmax_last_backward(ops.state, grad));
        }
    }
}

#[derive(Debug)]
struct GeluBackward;

impl<B: SoftmaxOps> Backward<B, 1> for GeluBackward {
    /// The forward input x.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = parent {
            grads.register::<B>(node.id, B::gelu_exact_backward(ops.state, grad));
        }
    }
}

impl<B: SoftmaxOps, C: CheckpointStrategy> SoftmaxOps for Autodiff<B, C> {
    fn softmax_last_backward(_: FloatTensor<Self>, _: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the backward pass runs on the inner backend")
    }

    fn gelu_exact_backward(_: FloatTensor<Self>, _: FloatTensor<Self>) -> FloatTensor<Self> {
        unreachable!("the backward pass runs on the inner backend")
    }

    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                // The kernel writes in place unless its buffer is shared, as it is here: the input
                // stays intact for the backward pass.
                let input = x.into_primitive();
                prep.finish(input.clone(), B::gelu_exact(input))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
        }
    }

    fn softmax_last(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let bias = bias.into_primitive();
        match SoftmaxBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let p = B::softmax_last(x.into_primitive(), bias);
                prep.finish(p.clone(), p)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive(), bias)),
        }
    }
}

/// Exact GELU, x · Φ(x): the vectorised kernel on flex (with or without autodiff), Burn's elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_)) && x.dtype() == DType::F32 {
        Tensor::from_dispatch(Dispatch::gelu_exact(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// Softmax over the keys of attention scores [B, H, Q, G], keys absent from a row's input
/// (`absent` [B, G]) masked: the fused op on flex (with or without autodiff), Burn's own
/// elsewhere (the extension is not registered for GPU backends). A masked key's score gets
/// −10⁴ added where Burn's attention sets it to −10⁴: both weigh exp(−10⁴) ≈ 0.
pub fn softmax_keys(scores: Tensor<4>, absent: Option<Tensor<2, burn::tensor::Bool>>, fill: f64) -> Tensor<4> {
    let [batch, _, _, n_genes] = scores.dims();
    if matches!(scores.device().inner().as_dispatch(), DispatchDevice::Flex(_)) && scores.dtype() == DType::F32 {
        let bias = match absent {
            Some(absent) => absent.float().mul_scalar(fill),
            None => Tensor::zeros([batch, n_genes], &scores.device()),
        };
        Tensor::from_dispatch(Dispatch::softmax_last(scores.into_dispatch(), bias.into_dispatch()))
    } else {
        let scores = match absent {
            Some(absent) => scores.mask_fill(absent.reshape([batch, 1, 1, n_genes]), fill),
            None => scores,
        };
        burn::tensor::activation::softmax(scores, 3)
    }
}

/// Row kernels. Written so the compiler vectorises them (lane-wise partial sums, a polynomial exp
/// without branches), and built twice: for the baseline CPU and for AVX2 + FMA, chosen at run time.
mod kernels {
    const LANES: usize = 8;
    /// 1.5 · 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer, kept in the low bits.
    const ROUNDER: f32 = 12_582_912.0;

    /// exp(x) for x ≤ 0 (scores minus their row's maximum): 2^k · e^r with k = round(x / ln 2),
    /// |r| ≤ ln 2 / 2, e^r by Cephes' degree-6 polynomial (relative error ~2e-7). Below −87 it
    /// returns ~1e-38, not 0, which no row sum can notice. Only adds, multiplies and bit moves,
    /// so a loop of it vectorises.
    #[inline(always)]
    fn exp_neg(x: f32) -> f32 {
        let x = if x < -87.0 { -87.0 } else { x };
        let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
        let kf = shifted - ROUNDER;
        let k = shifted.to_bits().wrapping_sub(ROUNDER.to_bits()); // k as i32 bits, in -126..=0
        let r = x - kf * 0.693_359_4 + kf * 2.121_944_4e-4;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
            + 1.666_666_5e-1)
            * r
            + 5.000_000_1e-1;
        let er = p * r * r + r + 1.0;
        er * f32::from_bits(k.wrapping_add(127) << 23)
    }

    #[inline(always)]
    fn row_max(x: &[f32]) -> f32 {
        let mut maxes = [f32::NEG_INFINITY; LANES];
        let n = x.len() / LANES * LANES;
        for xs in x[..n].chunks_exact(LANES) {
            for l in 0..LANES {
                maxes[l] = if xs[l] > maxes[l] { xs[l] } else { maxes[l] };
            }
        }
        x[n..].iter().chain(&maxes).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
    }

    /// In place: each `n`-long row of `rows` becomes softmax(row + bias(row index)).
    #[inline(always)]
    fn softmax_rows_body<'b>(rows: &mut [f32], n: usize, bias: impl Fn(usize) -> &'b [f32]) {
        for (r, row) in rows.chunks_exact_mut(n).enumerate() {
            for (v, &b) in row.iter_mut().zip(bias(r)) {
                *v += b;
            }
            let max = row_max(row);
            for v in row.iter_mut() {
                *v = exp_neg(*v - max);
            }
            let mut sums = [0f32; LANES];
            let m = n / LANES * LANES;
            for vs in row[..m].chunks_exact(LANES) {
                for l in 0..LANES {
                    sums[l] += vs[l];
                }
            }
            let sum: f32 = sums.iter().sum::<f32>() + row[m..].iter().sum::<f32>();
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// In place: each row of `g` becomes p ⊙ (g − Σ p ⊙ g).
    #[inline(always)]
    fn backward_rows_body(p: &[f32], g: &mut [f32], n: usize) {
        for (p, g) in p.chunks_exact(n).zip(g.chunks_exact_mut(n)) {
            let mut dots = [0f32; LANES];
            let m = n / LANES * LANES;
            for (ps, gs) in p[..m].chunks_exact(LANES).zip(g[..m].chunks_exact(LANES)) {
                for l in 0..LANES {
                    dots[l] += ps[l] * gs[l];
                }
            }
            let dot: f32 = dots.iter().sum::<f32>() + p[m..].iter().zip(&g[m..]).map(|(a, b)| a * b).sum::<f32>();
            for (o, &pv) in g.iter_mut().zip(p) {
                *o = pv * (*o - dot);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn softmax_rows_avx2<'b>(rows: &mut [f32], n: usize, bias: impl Fn(usize) -> &'b [f32]) {
        softmax_rows_body(rows, n, bias)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn backward_rows_avx2(p: &[f32], g: &mut [f32], n: usize) {
        backward_rows_body(p, g, n)
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), with exp(−x²) from `exp_neg`.
    #[inline(always)]
    fn erf(x: f32) -> f32 {
        let a = if x < 0.0 { -x } else { x };
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
        let e = 1.0 - poly * exp_neg(-a * a);
        if x < 0.0 { -e } else { e }
    }

    #[inline(always)]
    fn gelu_body(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }

    #[inline(always)]
    fn gelu_backward_body(x: &[f32], g: &mut [f32]) {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        for (o, &v) in g.iter_mut().zip(x) {
            let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp_neg(-0.5 * v * v);
            *o *= cdf + v * pdf;
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gelu_avx2(x: &mut [f32]) {
        gelu_body(x)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gelu_backward_avx2(x: &[f32], g: &mut [f32]) {
        gelu_backward_body(x, g)
    }

    /// GELU of every element, in place.
    pub fn gelu(x: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { gelu_avx2(x) };
        }
        gelu_body(x)
    }

    /// g · GELU'(x), in place of the output gradient `g`.
    pub fn gelu_backward(x: &[f32], g: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { gelu_backward_avx2(x, g) };
        }
        gelu_backward_body(x, g)
    }

    /// Softmax of each `n`-long row of `rows` plus its bias row, in place.
    pub fn softmax_rows<'b>(rows: &mut [f32], n: usize, bias: impl Fn(usize) -> &'b [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { softmax_rows_avx2(rows, n, bias) };
        }
        softmax_rows_body(rows, n, bias)
    }

    /// Gradient of each row's scores, p ⊙ (g − Σ p ⊙ g), in place of the output gradient `g`.
    pub fn backward_rows(p: &[f32], g: &mut [f32], n: usize) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { backward_rows_avx2(p, g, n) };
        }
        backward_rows_body(p, g, n)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn exp_matches_the_library_exp() {
            let mut worst = 0f64;
            for i in 0..=200_000 {
                let x = -87.0 * i as f32 / 200_000.0;
                let (ours, std) = (super::exp_neg(x) as f64, (x as f64).exp());
                worst = worst.max((ours - std).abs() / std);
            }
            assert!(worst < 5e-7, "worst relative error {worst}");
            assert_eq!(super::exp_neg(0.0), 1.0);
        }

        /// GELU and its derivative against f64 references (erf by its series / continued tail).
        #[test]
        fn gelu_matches_the_exact_function() {
            fn erf64(x: f64) -> f64 {
                // Maclaurin series: converges for |x| ≤ 6 in f64 with enough terms.
                let (mut term, mut sum, mut n) = (x, x, 0);
                while term.abs() > 1e-17 * sum.abs().max(1e-300) && n < 400 {
                    n += 1;
                    term *= -x * x / n as f64;
                    sum += term / (2 * n + 1) as f64;
                }
                2.0 / std::f64::consts::PI.sqrt() * sum
            }
            let xs: Vec<f32> = (0..=4000).map(|i| -6.0 + 12.0 * i as f32 / 4000.0).collect();
            let mut y = xs.clone();
            super::gelu(&mut y);
            let mut g = vec![1f32; xs.len()];
            super::gelu_backward(&xs, &mut g);
            for ((&x, &yv), &gv) in xs.iter().zip(&y).zip(&g) {
                let x64 = x as f64;
                let cdf = 0.5 * (1.0 + erf64(x64 / 2f64.sqrt()));
                let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
                assert!((yv as f64 - x64 * cdf).abs() < 1e-6 * (1.0 + x64.abs()), "gelu({x}) = {yv}");
                assert!((gv as f64 - (cdf + x64 * pdf)).abs() < 1e-6 * (1.0 + x64.abs()), "gelu'({x}) = {gv}");
            }
        }

        /// Timing of the row kernels on the attention's shape (run with --ignored --nocapture).
        #[test]
        #[ignore]
        fn kernel_timing() {
            let (rows, n) = (64 * 4 * 106, 233);
            let x: Vec<f32> = (0..rows * n).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
            let zeros = vec![0f32; n];
            for _ in 0..3 {
                let mut p = x.clone();
                let mut d = x.clone();
                let t = std::time::Instant::now();
                super::softmax_rows(&mut p, n, |_| &zeros);
                let fwd = t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                super::backward_rows(&p, &mut d, n);
                let t_exp = std::time::Instant::now();
                let s: f32 = x.iter().map(|v| v.exp()).sum();
                eprintln!(
                    "forward {:.4} s, backward {:.4} s, libm exp pass {:.4} s ({s})",
                    fwd,
                    t.elapsed().as_secs_f64() - t_exp.elapsed().as_secs_f64(),
                    t_exp.elapsed().as_secs_f64()
                );
            }
        }
    }
}
