//! The CPU arithmetic of the network's two hot spots, on plain slices: multi-head attention per
//! (cell, head) through the `gemm` crate with a vectorised softmax between the products, and exact
//! GELU. Built natively (tasks spread over threads with rayon) and in wasm (one thread, WebAssembly
//! SIMD): the CLI reaches them through a Burn backend extension (`cpu_kernels.rs`, with their
//! backward passes for training), the page through `attention` / `gelu` in `model/mod.rs`. Burn's
//! own CPU ops evaluate exp and erf by a scalar library call per element, which made the page's
//! network five times slower per thread than the CLI's (measured: 430 against 2,180 cells/s).

#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

/// Runs `task(scratch, i)` for i in 0..n, each task with scratch from `init` (one per thread).
#[cfg(not(target_arch = "wasm32"))]
fn for_each_task<S>(n: usize, init: impl Fn() -> S + Sync + Send, task: impl Fn(&mut S, usize) + Sync + Send) {
    (0..n).into_par_iter().for_each_init(init, task);
}

#[cfg(target_arch = "wasm32")]
fn for_each_task<S>(n: usize, init: impl Fn() -> S, task: impl Fn(&mut S, usize)) {
    let mut scratch = init();
    (0..n).for_each(|i| task(&mut scratch, i));
}

/// Chunks of `data` changed in place by `kernel(chunk, offset of its first element)`, in parallel natively.
pub fn map_chunks(data: &mut [f32], kernel: impl Fn(&mut [f32], usize) + Sync + Send) {
    const CHUNK: usize = 1 << 14;
    #[cfg(not(target_arch = "wasm32"))]
    data.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| kernel(chunk, i * CHUNK));
    #[cfg(target_arch = "wasm32")]
    data.chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| kernel(chunk, i * CHUNK));
}

/// The same arithmetic on Burn tensors by way of their values, for inference where the backend
/// extension is not built (the page): reading a CPU tensor and making one are copies, small next to
/// the work.
#[cfg(not(feature = "train"))]
pub mod on_tensors {
    use burn::tensor::{Bool, Tensor, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
    }

    /// Exact GELU, elementwise.
    pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
        let (shape, device) = (x.shape(), x.device());
        let mut v = values(x);
        super::map_chunks(&mut v, |chunk, _| super::kernels::gelu(chunk));
        Tensor::from_data(TensorData::new(v, shape), &device)
    }

    /// Multi-head softmax(q kᵀ) v (q [1 or B, Q, d] already scaled, k, v [B, G, d]), keys of
    /// `absent` ([B, G]) getting `fill` added to their scores: the context [B, Q, d].
    pub fn attention(
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
        absent: Option<Tensor<2, Bool>>,
        fill: f64,
        heads: usize,
    ) -> Tensor<3> {
        let z = super::attention::Sizes::of(q.dims(), k.dims(), heads);
        let device = k.device();
        let bias: Vec<f32> = match absent {
            Some(a) => a.into_data().iter::<bool>().map(|x| if x { fill as f32 } else { 0.0 }).collect(),
            None => vec![0.0; z.b * z.g],
        };
        let (q, k, v) = (values(q), values(k), values(v));
        let (context, _) = super::attention::forward(z, (&q, &k, &v, &bias), false);
        Tensor::from_data(TensorData::new(context, [z.b, z.nq, z.d]), &device)
    }
}

/// A matrix inside a buffer: its first element and its (column, row) strides.
#[derive(Clone, Copy)]
struct Mat(*const f32, isize, isize);

/// dst = lhs (m × k) · rhs (k × n), dst rows `dst_rs` apart (columns adjacent).
unsafe fn matmul((m, n, k): (usize, usize, usize), dst: *mut f32, dst_rs: usize, lhs: Mat, rhs: Mat) {
    // SAFETY: the caller passes pointers valid for these shapes and strides.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// a (m × k) · bᵀ, with b (n × k): both row-major, the result m × n row-major.
pub fn matmul_transposed(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    assert!(a.len() >= m * k && b.len() >= n * k, "matrix sizes");
    let mut out = vec![0f32; m * n];
    if m > 0 && n > 0 && k > 0 {
        // SAFETY: `out` holds m × n elements with rows n apart, `a` m × k (rows k apart) and `b`
        // n × k read as its transpose (k × n: columns k apart); the assert checks the lengths.
        unsafe {
            matmul((m, n, k), out.as_mut_ptr(), n, Mat(a.as_ptr(), 1, k as isize), Mat(b.as_ptr(), k as isize, 1))
        };
    }
    out
}

/// The fused attention: per (cell, head) matrix products through the `gemm` crate (the one Burn's
/// CPU matmul calls), reading and writing each head's columns in place by strides, the softmax row
/// kernel in between; parallel over (cell, head) natively.
pub mod attention {
    use super::{Mat, for_each_task, kernels, matmul};

    /// Queries scored at a time in inference (a genome-wide model has 10,000).
    const QUERY_BLOCK: usize = 1024;

    /// A raw pointer that parallel tasks write through, each to its own disjoint elements.
    #[derive(Clone, Copy)]
    struct Out(*mut f32);
    // SAFETY: every task writes elements no other task touches.
    unsafe impl Send for Out {}
    unsafe impl Sync for Out {}

    impl Out {
        /// The element at `offset` (a method, so closures capture the whole `Out`).
        fn at(self, offset: usize) -> *mut f32 {
            // SAFETY: callers stay inside the allocation.
            unsafe { self.0.add(offset) }
        }
    }

    /// Sizes: query rows `qb` (1 = shared), cells `b`, heads `h`, queries `nq`, keys `g`, model
    /// width `d`, head width `dk`.
    #[derive(Clone, Copy, Debug)]
    pub struct Sizes {
        pub qb: usize,
        pub b: usize,
        pub h: usize,
        pub nq: usize,
        pub g: usize,
        pub d: usize,
        pub dk: usize,
    }

    impl Sizes {
        /// From q [qb, nq, d] and k [b, g, d] in `heads` heads.
        pub fn of(q: [usize; 3], k: [usize; 3], heads: usize) -> Sizes {
            let ([qb, nq, d], [b, g, dk_all]) = (q, k);
            assert!(qb == 1 || qb == b, "queries for one cell or for each");
            assert!(dk_all == d && heads > 0 && d % heads == 0, "width {d} in {heads} heads");
            Sizes { qb, b, h: heads, nq, g, d, dk: d / heads }
        }

        /// Offsets of head `head`'s first column in cell `cell`'s queries and keys/values.
        fn q_at(&self, cell: usize, head: usize) -> usize {
            (if self.qb == 1 { 0 } else { cell }) * self.nq * self.d + head * self.dk
        }

        fn kv_at(&self, cell: usize, head: usize) -> usize {
            cell * self.g * self.d + head * self.dk
        }
    }

    /// Context [b, nq, d] of row-major q, k, v and bias [b, g] (added to the scores), and the
    /// weights [b, h, nq, g] when `keep`.
    pub fn forward(
        z: Sizes,
        (qd, kd, vd, bd): (&[f32], &[f32], &[f32], &[f32]),
        keep: bool,
    ) -> (Vec<f32>, Option<Vec<f32>>) {
        assert_eq!(qd.len(), z.qb * z.nq * z.d, "queries [qb, nq, d]");
        assert!(kd.len() == z.b * z.g * z.d && vd.len() == kd.len(), "keys and values [b, g, d]");
        assert_eq!(bd.len(), z.b * z.g, "one bias row per cell");
        let (nq, g, d) = (z.nq, z.g, z.d);
        let mut context = vec![0f32; z.b * nq * d];
        let mut weights: Vec<f32> = if keep { Vec::with_capacity(z.b * z.h * nq * g) } else { Vec::new() };
        let (ctx, w) = (Out(context.as_mut_ptr()), Out(weights.as_mut_ptr()));
        // Without kept weights, the queries go in blocks: the scratch is QUERY_BLOCK × G however
        // many candidates there are (10,000 queries × 2,000 genes would be 80 MB per thread).
        let block = if keep { nq } else { nq.min(QUERY_BLOCK) };
        for_each_task(
            z.b * z.h,
            || if keep { Vec::new() } else { vec![0f32; block * g] },
            |scratch: &mut Vec<f32>, i| {
                let (cell, head) = (i / z.h, i % z.h);
                let (d_, g_) = (d as isize, g as isize);
                for first in (0..nq).step_by(block.max(1)) {
                    let rows = block.min(nq - first);
                    // Weights (cell, head) are region i of the kept weights, or this task's scratch.
                    let s_ptr = if keep { w.at(i * nq * g) } else { scratch.as_mut_ptr() };
                    // SAFETY: every pointer stays inside its buffer for these shapes and strides, and
                    // each task writes only its own weights region and its own head's context columns.
                    unsafe {
                        let qh = Mat(qd.as_ptr().add(z.q_at(cell, head) + first * d), 1, d_);
                        let kt = Mat(kd.as_ptr().add(z.kv_at(cell, head)), d_, 1); // kᵀ: dk × G
                        matmul((rows, g, z.dk), s_ptr, g, qh, kt);
                        let s = std::slice::from_raw_parts_mut(s_ptr, rows * g);
                        kernels::softmax_rows(s, g, &bd[cell * g..][..g]);
                        let vh = Mat(vd.as_ptr().add(z.kv_at(cell, head)), 1, d_);
                        let out = ctx.at(cell * nq * d + first * d + head * z.dk);
                        matmul((rows, z.dk, g), out, d, Mat(s.as_ptr(), 1, g_), vh);
                    }
                }
            },
        );
        let weights = keep.then(|| {
            // SAFETY: every (cell, head) region was written above.
            unsafe { weights.set_len(z.b * z.h * nq * g) };
            weights
        });
        (context, weights)
    }

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
    /// Gradients (dq [qb, nq, d], dk, dv [b, g, d]) from the forward inputs, the weights P and the
    /// context's gradient (all row-major).
    pub fn backward(
        z: Sizes,
        (qd, kd, vd): (&[f32], &[f32], &[f32]),
        pd: &[f32],
        gd: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        assert!(pd.len() == z.b * z.h * z.nq * z.g && gd.len() == z.b * z.nq * z.d, "weights and gradient sizes");
        let (nq, g, d, dk) = (z.nq, z.g, z.d, z.dk);
        let mut dq_each = vec![0f32; z.b * nq * d];
        let mut dk_all = vec![0f32; z.b * g * d];
        let mut dv_all = vec![0f32; z.b * g * d];
        let (dq_o, dk_o, dv_o) = (Out(dq_each.as_mut_ptr()), Out(dk_all.as_mut_ptr()), Out(dv_all.as_mut_ptr()));
        for_each_task(
            z.b * z.h,
            || vec![0f32; nq * g],
            |ds: &mut Vec<f32>, i| {
                let (cell, head) = (i / z.h, i % z.h);
                let pi = &pd[i * nq * g..][..nq * g];
                let (d_, g_) = (d as isize, g as isize);
                // SAFETY: every pointer stays inside its buffer for these shapes and strides, and
                // each task writes only its own head's columns of its own cell.
                unsafe {
                    let qh = Mat(qd.as_ptr().add(z.q_at(cell, head)), 1, d_);
                    let kh = Mat(kd.as_ptr().add(z.kv_at(cell, head)), 1, d_);
                    let vt = Mat(vd.as_ptr().add(z.kv_at(cell, head)), d_, 1); // vᵀ: dk × G
                    let gh = Mat(gd.as_ptr().add(cell * nq * d + head * dk), 1, d_);
                    // dP = dC · vᵀ, then dS = P ⊙ (dP − Σ P ⊙ dP) in place.
                    matmul((nq, g, dk), ds.as_mut_ptr(), g, gh, vt);
                    kernels::backward_rows(pi, ds, g);
                    let (pt, dst) = (Mat(pi.as_ptr(), g_, 1), Mat(ds.as_ptr(), g_, 1)); // Pᵀ, dSᵀ: G × Q
                    let at = |o: Out| o.at(cell * g * d + head * dk);
                    // dv = Pᵀ · dC, dk = dSᵀ · q, dq = dS · k.
                    matmul((g, dk, nq), at(dv_o), d, pt, gh);
                    matmul((g, dk, nq), at(dk_o), d, dst, qh);
                    matmul((nq, dk, g), dq_o.at(cell * nq * d + head * dk), d, Mat(ds.as_ptr(), 1, g_), kh);
                }
            },
        );
        let dq = if z.qb == 1 {
            // The queries are shared by every cell: their gradient sums over cells.
            let mut sum = vec![0f32; nq * d];
            for cell in dq_each.chunks_exact(nq * d) {
                sum.iter_mut().zip(cell).for_each(|(s, v)| *s += v);
            }
            sum
        } else {
            dq_each
        };
        (dq, dk_all, dv_all)
    }
}

/// Row kernels. Written so the compiler vectorises them (lane-wise partial sums, a polynomial exp
/// without branches), and built twice: for the baseline CPU and for AVX2 + FMA, chosen at run time.
#[cfg(test)]
mod blocked_queries {
    use super::attention::{Sizes, forward};

    /// More queries than one block (a genome-wide model): scoring them a block at a time gives the
    /// context of scoring them all at once (the path that keeps the weights), shared queries or not.
    #[test]
    fn queries_in_blocks_give_the_context_of_all_at_once() {
        let (b, h, nq, g, d) = (2, 2, 2500, 37, 8);
        let wave = |n: usize, k: usize| -> Vec<f32> { (0..n).map(|i| (((i * k) % 97) as f32 / 48.0) - 1.0).collect() };
        let (k, v) = (wave(b * g * d, 31), wave(b * g * d, 17));
        let bias: Vec<f32> = (0..b * g).map(|i| if i % 5 == 0 { -1e4 } else { 0.0 }).collect();
        for qb in [1, b] {
            let q = wave(qb * nq * d, 13);
            let z = Sizes::of([qb, nq, d], [b, g, d], h);
            let (blocked, none) = forward(z, (&q, &k, &v, &bias), false);
            let (whole, kept) = forward(z, (&q, &k, &v, &bias), true);
            assert!(none.is_none() && kept.is_some());
            let worst = blocked.iter().zip(&whole).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "largest difference {worst}");
        }
    }
}

pub mod kernels {
    const LANES: usize = 8;
    /// 1.5 · 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer, kept in the low bits.
    const ROUNDER: f32 = 12_582_912.0;

    /// exp(x) for x ≤ 0 (scores minus their row's maximum): 2^k · e^r with k = round(x / ln 2),
    /// |r| ≤ ln 2 / 2, e^r by Cephes' degree-6 polynomial (relative error ~2e-7). Below −60 it
    /// is 0: f32 cannot add e^−60 to a row sum of at least 1, and such tiny weights make the
    /// products after them denormal, which x86 computes about a hundred times slower (a masked
    /// key once made a training step six times slower). Only adds, multiplies, bit moves and a
    /// select, so a loop of it vectorises.
    #[inline(always)]
    fn exp_neg(x_in: f32) -> f32 {
        let x = if x_in < -87.0 { -87.0 } else { x_in };
        let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
        let kf = shifted - ROUNDER;
        let k = shifted.to_bits().wrapping_sub(ROUNDER.to_bits()); // k as i32 bits, in -126..=0
        let r = x - kf * 0.693_359_4 + kf * 2.121_944_4e-4;
        let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
            + 1.666_666_5e-1)
            * r
            + 0.5;
        let er = p * r * r + r + 1.0;
        let e = er * f32::from_bits(k.wrapping_add(127) << 23);
        if x_in < CUTOFF { 0.0 } else { e }
    }

    /// Where `exp_neg` stops (see there).
    const CUTOFF: f32 = -60.0;

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

    /// In place: each `n`-long row of `rows` becomes softmax(row + bias).
    #[inline(always)]
    fn softmax_rows_body(rows: &mut [f32], n: usize, bias: &[f32]) {
        for row in rows.chunks_exact_mut(n) {
            for (v, &b) in row.iter_mut().zip(bias) {
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

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
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
    unsafe fn softmax_rows_avx2(rows: &mut [f32], n: usize, bias: &[f32]) {
        softmax_rows_body(rows, n, bias)
    }

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
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

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
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

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
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

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
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
    pub fn softmax_rows(rows: &mut [f32], n: usize, bias: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { softmax_rows_avx2(rows, n, bias) };
        }
        softmax_rows_body(rows, n, bias)
    }

    #[cfg_attr(not(feature = "train"), allow(dead_code))] // backward passes: training only
    /// Gradient of each row's scores, p ⊙ (g − Σ p ⊙ g), in place of the output gradient `g`.
    pub fn backward_rows(p: &[f32], g: &mut [f32], n: usize) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { backward_rows_avx2(p, g, n) };
        }
        backward_rows_body(p, g, n)
    }

    /// (ln v, 1/v) for a positive normal f64 with one division, branch-free so that a loop of it
    /// vectorises (the library's ln is a call per element; in the page it was most of a group's
    /// 1.3 million Gaussian terms): v = 2^e·m with m in [√½, √2), ln m = 2 atanh(s) with
    /// s = (m − 1)/(m + 1), |s| ≤ 0.172, by its series to s¹⁷ (error below 1e-15); 1/v and
    /// 1/(m + 1) both come from q = 1/(v(m + 1)).
    #[inline(always)]
    fn ln_and_reciprocal(v: f64) -> (f64, f64) {
        let bits = v.to_bits();
        let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000); // in [1, 2)
        // The exponent as a float without an integer conversion: 2^52 + e + 1023, minus both.
        let e = f64::from_bits((bits >> 52) | 0x4330_0000_0000_0000) - (4_503_599_627_370_496.0 + 1023.0);
        let big = m > std::f64::consts::SQRT_2;
        let (m, e) = (if big { m * 0.5 } else { m }, if big { e + 1.0 } else { e });
        let q = 1.0 / (v * (m + 1.0));
        let s = (m - 1.0) * v * q;
        let z = s * s;
        let series = 1.0
            + z * (1.0 / 3.0
                + z * (1.0 / 5.0
                    + z * (1.0 / 7.0
                        + z * (1.0 / 9.0
                            + z * (1.0 / 11.0 + z * (1.0 / 13.0 + z * (1.0 / 15.0 + z * (1.0 / 17.0))))))));
        (e * std::f64::consts::LN_2 + 2.0 * s * series, (m + 1.0) * q)
    }

    /// What a group's Gaussian terms read per gene (`AdditiveHead::group_evidence`): each gene's
    /// control level at the file's depth, the group's mean level and the genes' quasi-Poisson
    /// dispersion, plus the cell count, the guide-failure share, a pair's genetic-interaction
    /// spread and the floors.
    #[derive(Clone)]
    pub struct GroupGenes {
        pub base: Vec<f64>,
        pub mean: Vec<f64>,
        pub noise: Vec<f64>,
        pub cells: f64,
        pub failure: f64,
        /// ρ² in a pair's extra fold variance ρ²(Δ_A² + Δ_B²).
        pub pair_error2: f64,
        /// The lowest fold change minus 1 (a pair's Δ_A + Δ_B is floored there).
        pub min_delta: f64,
        pub min_level: f64,
        pub min_variance: f64,
    }

    /// One answer's fold changes minus 1 and fold variances over the same genes as `GroupGenes`.
    pub type Folds<'a> = (&'a [f64], &'a [f64]);

    impl GroupGenes {
        /// ln N(mean; μ, V) of one gene without its constant, for the answer {A, B} (B: zeros for
        /// a single): Δ = max(Δ_A + Δ_B, floor), μ = b(1 + (1 − f)Δ), V = (dμ + f(1 − f)(bΔ)²)/n +
        /// (b(1 − f))²·(var_A + var_B + ρ²(Δ_A² + Δ_B²)).
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn term(&self, inv_n: f64, b: f64, mean: f64, noise: f64, da: f64, va: f64, db: f64, vb: f64) -> f64 {
            let f = self.failure;
            let sum = da + db;
            let delta = if sum > self.min_delta { sum } else { self.min_delta };
            let fold_var = va + vb + self.pair_error2 * (da * da + db * db);
            let shift = b * delta;
            let mu = b + (1.0 - f) * shift;
            let mu = if mu > self.min_level { mu } else { self.min_level };
            let v = (noise * mu + f * (1.0 - f) * shift * shift) * inv_n + (b * (1.0 - f)) * (b * (1.0 - f)) * fold_var;
            let v = if v > self.min_variance { v } else { self.min_variance };
            let (ln_v, inv_v) = ln_and_reciprocal(v);
            -0.5 * ((mean - mu) * (mean - mu) * inv_v + ln_v)
        }

        #[inline(always)]
        fn sum_body(&self, (da, va): Folds, (db, vb): Folds) -> f64 {
            const L: usize = 4;
            let n = [da.len(), va.len(), db.len(), vb.len(), self.mean.len(), self.noise.len()]
                .into_iter()
                .fold(self.base.len(), usize::min);
            let (m, inv_n) = (n / L * L, 1.0 / self.cells);
            let mut lanes = [0f64; L];
            fn lanes_of(x: &[f64], m: usize) -> std::slice::ChunksExact<'_, f64> {
                x[..m].chunks_exact(L)
            }
            let genes = lanes_of(&self.base, m).zip(lanes_of(&self.mean, m)).zip(lanes_of(&self.noise, m));
            let folds = lanes_of(da, m).zip(lanes_of(va, m)).zip(lanes_of(db, m).zip(lanes_of(vb, m)));
            for (((b, mean), noise), ((da, va), (db, vb))) in genes.zip(folds) {
                for l in 0..L {
                    lanes[l] += self.term(inv_n, b[l], mean[l], noise[l], da[l], va[l], db[l], vb[l]);
                }
            }
            let tail =
                (m..n).map(|k| self.term(inv_n, self.base[k], self.mean[k], self.noise[k], da[k], va[k], db[k], vb[k]));
            lanes.iter().sum::<f64>() + tail.sum::<f64>()
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn sum_avx2(&self, a: Folds, b: Folds) -> f64 {
            self.sum_body(a, b)
        }

        /// Σ over genes of `term` for the answer {A, B} (for a single, B's slices are zeros), in
        /// lanes so that the loop vectorises.
        pub fn log_likelihood(&self, a: Folds, b: Folds) -> f64 {
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU has the features the function is compiled for.
                return unsafe { self.sum_avx2(a, b) };
            }
            self.sum_body(a, b)
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn exp_matches_the_library_exp() {
            let mut worst = 0f64;
            for i in 0..=200_000 {
                let x = super::CUTOFF * i as f32 / 200_000.0;
                let (ours, std) = (super::exp_neg(x) as f64, (x as f64).exp());
                worst = worst.max((ours - std).abs() / std);
            }
            assert!(worst < 5e-7, "worst relative error {worst}");
            assert_eq!(super::exp_neg(0.0), 1.0);
            assert_eq!(super::exp_neg(super::CUTOFF - 0.01), 0.0);
            assert_eq!(super::exp_neg(-1.0e4), 0.0);
        }

        /// The branch-free ln and reciprocal against the library's, from the variance floor (1e-9) to far above
        /// any level, and its lanes' sum against the terms one by one.
        #[test]
        fn ln_and_reciprocal_match_the_library_and_lanes_add_up() {
            let mut worst = 0f64;
            for i in 0..=200_000 {
                let v = 10f64.powf(-9.0 + 18.0 * i as f64 / 200_000.0);
                let (ln, inverse) = super::ln_and_reciprocal(v);
                worst = worst.max((ln - v.ln()).abs()).max((inverse * v - 1.0).abs());
            }
            assert!(worst < 1e-14, "worst absolute error {worst}");
            for v in [1.0, 2.0, 0.5, std::f64::consts::SQRT_2, 1e-9, 3.7e7] {
                assert!((super::ln_and_reciprocal(v).0 - v.ln()).abs() < 1e-15 * (1.0 + v.ln().abs()), "{v}");
            }
            let genes = super::GroupGenes {
                base: (0..11).map(|k| 0.5 + k as f64).collect(),
                mean: (0..11).map(|k| 0.7 + 1.1 * k as f64).collect(),
                noise: vec![1.3; 11],
                cells: 40.0,
                failure: 0.1,
                pair_error2: 0.09,
                min_delta: -0.95,
                min_level: 1e-3,
                min_variance: 1e-9,
            };
            let (da, db): (Vec<f64>, Vec<f64>) =
                (0..11).map(|k| (k as f64 * 0.3 - 1.2, 0.3 - (k % 3) as f64 * 0.4)).unzip();
            let (va, vb, zeros) = (vec![0.01; 11], vec![0.02; 11], vec![0.0; 11]);
            let by_hand = |pair: bool| -> f64 {
                (0..11)
                    .map(|k| {
                        let (b, f) = (genes.base[k], 0.1);
                        let (d2, v2) = if pair { (db[k], 0.02) } else { (0.0, 0.0) };
                        let delta = (da[k] + d2).max(-0.95);
                        let fold_var = 0.01 + v2 + 0.09 * (da[k] * da[k] + d2 * d2);
                        let mu = (b * (1.0 + (1.0 - f) * delta)).max(1e-3);
                        let v = (1.3 * mu + f * (1.0 - f) * (b * delta).powi(2)) / 40.0
                            + (b * (1.0 - f)).powi(2) * fold_var;
                        -0.5 * ((genes.mean[k] - mu).powi(2) / v + v.ln())
                    })
                    .sum()
            };
            let (single, pair) = (by_hand(false), by_hand(true));
            assert!((genes.log_likelihood((&da, &va), (&zeros, &zeros)) - single).abs() < 1e-12 * single.abs());
            assert!((genes.log_likelihood((&da, &va), (&db, &vb)) - pair).abs() < 1e-12 * pair.abs());
            assert!(da.iter().zip(&db).any(|(a, b)| a + b < -0.95), "the floor is reached");
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
                super::softmax_rows(&mut p, n, &zeros);
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
