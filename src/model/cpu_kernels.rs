//! The CLI's CPU kernels (flex), each with its own backward pass: the attention and GELU.
//!
//! Attention: the [batch, heads, queries, genes] weights are the largest tensor of a training step
//! and their element-wise work dominated it. Composed from primitive ops, autodiff records about
//! ten passes over them (scores, mask, max, shift, exp, sum, divide, and as many backwards), flex's
//! softmax calls a scalar `exp` per element, and each matmul output is zeroed, then copied again.
//! The fused op runs per cell and head: scores, softmax (vectorised exp) and context forwards,
//! dS = P ⊙ (dP − Σ dP ⊙ P) and the three products backwards. GELU: flex evaluates erf by a
//! scalar library call; this one is vectorised. Both match Burn's ops to float rounding (exp
//! ~2e-7 relative, erf ~1.5e-7 absolute).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

#[backend_extension(Autodiff, Flex)]
pub trait CpuKernels: Backend {
    /// x · Φ(x), Φ the standard normal distribution function (exact GELU).
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The gradient of x from x and the gradient of GELU(x): grad · (Φ(x) + x φ(x)).
    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Multi-head softmax(q kᵀ + bias) v: q [1 or B, Q, d] (already scaled), k and v [B, G, d],
    /// each split into `heads` blocks of d / heads columns; bias [B, G] (a constant). Returns the
    /// context [B, Q, d], heads side by side as a multi-head attention concatenates them.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;
    /// The same, also returning the weights P [B, heads, Q, G] for the backward pass.
    fn attention_keeping_weights(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradients of q, k and v from the forward inputs, the weights P and the context's gradient.
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        p: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl CpuKernels for Flex {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        map_in_place(x, None, |chunk, _| kernels::gelu(chunk))
    }

    fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, bias: FlexTensor, heads: usize) -> FlexTensor {
        attention::forward(&q, &k, &v, &bias, heads, false).0
    }

    fn attention_keeping_weights(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        bias: FlexTensor,
        heads: usize,
    ) -> (FlexTensor, FlexTensor) {
        let (context, p) = attention::forward(&q, &k, &v, &bias, heads, true);
        (context, p.expect("weights kept"))
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        p: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        attention::backward(&q, &k, &v, &p, &grad)
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        let x = x.to_contiguous();
        let x = contiguous_f32(&x);
        map_in_place(grad, Some(x.len()), |chunk, offset| kernels::gelu_backward(&x[offset..][..chunk.len()], chunk))
    }
}

fn contiguous_f32(t: &FlexTensor) -> &[f32] {
    let (start, end) = t.layout().contiguous_offsets().expect("a contiguous tensor");
    &t.storage::<f32>()[start..end]
}

/// Runs `kernel` over chunks of `t`'s elements, in place (a copy only when the buffer is shared
/// or strided), chunks in parallel; the kernel gets a chunk and the offset of its first element.
/// `expected_len`: the length `t` must have.
fn map_in_place(t: FlexTensor, expected_len: Option<usize>, kernel: impl Fn(&mut [f32], usize) + Sync) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "the CPU kernels run on f32");
    // Moved, not cloned, when already contiguous: a second reference would make the write copy.
    let mut t = if t.is_contiguous() { t } else { t.to_contiguous() };
    let (start, end) = t.layout().contiguous_offsets().expect("contiguous after to_contiguous");
    let data = &mut t.storage_mut::<f32>()[start..end];
    if let Some(len) = expected_len {
        assert_eq!(data.len(), len, "a gradient and its forward input differ in size");
    }
    const CHUNK: usize = 1 << 14;
    data.par_chunks_mut(CHUNK).enumerate().for_each(|(i, chunk)| kernel(chunk, i * CHUNK));
    t
}

#[derive(Debug)]
struct GeluBackward;

impl<B: CpuKernels> Backward<B, 1> for GeluBackward {
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

#[derive(Debug)]
struct AttentionBackward;

impl<B: CpuKernels> Backward<B, 3> for AttentionBackward {
    /// q, k, v and the weights P.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, p) = ops.state;
        let (dq, dk, dv) = B::attention_backward(q, k, v, p, grad);
        for (node, g) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: CpuKernels, C: CheckpointStrategy> CpuKernels for Autodiff<B, C> {
    fn attention_keeping_weights(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the weights are kept by the inner backend")
    }

    fn attention_backward(
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
        _: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        unreachable!("the backward pass runs on the inner backend")
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        let bias = bias.into_primitive();
        match AttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                let (context, p) = B::attention_keeping_weights(q.clone(), k.clone(), v.clone(), bias, heads);
                prep.finish((q, k, v, p), context)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_attention(q.into_primitive(), k.into_primitive(), v.into_primitive(), bias, heads))
            }
        }
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
}

/// Whether a tensor lives on the flex CPU backend (with or without autodiff) in f32: where the
/// kernels here are registered.
pub fn on_flex_f32<const D: usize>(x: &Tensor<D>) -> bool {
    super::on_flex(&x.device()) && x.dtype() == DType::F32
}

/// Multi-head softmax(q kᵀ + bias) v per cell (q [1 or B, Q, d] already scaled, k and v
/// [B, G, d], `heads` column blocks each), keys absent from a cell's input (`absent` [B, G])
/// getting `fill` added to their scores; returns the context [B, Q, d]. One kernel forwards and
/// one backwards, reading the heads in place: no [B, H, Q, G] tensor in inference, one (the
/// weights) in training. Flex tensors only (`on_flex_f32`).
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    absent: Option<Tensor<2, burn::tensor::Bool>>,
    fill: f64,
    heads: usize,
) -> Tensor<3> {
    let [batch, n_genes, _] = k.dims();
    let bias = match absent {
        Some(absent) => absent.float().mul_scalar(fill),
        None => Tensor::zeros([batch, n_genes], &k.device()),
    };
    Tensor::from_dispatch(Dispatch::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        bias.into_dispatch(),
        heads,
    ))
}

/// Exact GELU, x · Φ(x): the vectorised kernel on flex (with or without autodiff), Burn's elsewhere.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if on_flex_f32(&x) {
        Tensor::from_dispatch(Dispatch::gelu_exact(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// The fused attention on flex tensors: per (cell, head) matrix products through the `gemm` crate
/// (the one flex's matmul calls), reading and writing each head's columns in place by strides,
/// the softmax row kernel in between; parallel over (cell, head).
mod attention {
    use burn::tensor::{Bytes, DType, Shape};
    use burn_flex::{FlexTensor, Layout};
    use rayon::prelude::*;

    use super::{contiguous_f32, kernels};

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

    fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
        FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), DType::F32)
    }

    fn dims3(t: &FlexTensor) -> [usize; 3] {
        let s = t.layout().shape();
        assert_eq!(s.num_dims(), 3, "attention inputs are [rows, length, d]");
        [s[0], s[1], s[2]]
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

    /// Sizes: query rows `qb` (1 = shared), cells `b`, heads `h`, queries `nq`, keys `g`, model
    /// width `d`, head width `dk`.
    struct Sizes {
        qb: usize,
        b: usize,
        h: usize,
        nq: usize,
        g: usize,
        d: usize,
        dk: usize,
    }

    impl Sizes {
        fn of(q: &FlexTensor, k: &FlexTensor, heads: usize) -> Sizes {
            let [qb, nq, d] = dims3(q);
            let [b, g, dk_all] = dims3(k);
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

    pub fn forward(
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        bias: &FlexTensor,
        heads: usize,
        keep: bool,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let (q, k, v, bias) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous(), bias.to_contiguous());
        let z = Sizes::of(&q, &k, heads);
        let (qd, kd, vd, bd) = (contiguous_f32(&q), contiguous_f32(&k), contiguous_f32(&v), contiguous_f32(&bias));
        assert_eq!(bd.len(), z.b * z.g, "one bias row per cell");
        let (nq, g, d) = (z.nq, z.g, z.d);
        let mut context = vec![0f32; z.b * nq * d];
        let mut weights: Vec<f32> = if keep { Vec::with_capacity(z.b * z.h * nq * g) } else { Vec::new() };
        let (ctx, w) = (Out(context.as_mut_ptr()), Out(weights.as_mut_ptr()));
        (0..z.b * z.h).into_par_iter().for_each_init(
            || if keep { Vec::new() } else { vec![0f32; nq * g] },
            |scratch, i| {
                let (cell, head) = (i / z.h, i % z.h);
                // Weights (cell, head) are region i of the kept weights, or this task's scratch.
                let s_ptr = if keep { w.at(i * nq * g) } else { scratch.as_mut_ptr() };
                let (d_, g_) = (d as isize, g as isize);
                // SAFETY: every pointer stays inside its buffer for these shapes and strides, and
                // each task writes only its own weights region and its own head's context columns.
                unsafe {
                    let qh = Mat(qd.as_ptr().add(z.q_at(cell, head)), 1, d_);
                    let kt = Mat(kd.as_ptr().add(z.kv_at(cell, head)), d_, 1); // kᵀ: dk × G
                    matmul((nq, g, z.dk), s_ptr, g, qh, kt);
                    let s = std::slice::from_raw_parts_mut(s_ptr, nq * g);
                    kernels::softmax_rows(s, g, &bd[cell * g..][..g]);
                    let vh = Mat(vd.as_ptr().add(z.kv_at(cell, head)), 1, d_);
                    matmul((nq, z.dk, g), ctx.at(cell * nq * d + head * z.dk), d, Mat(s.as_ptr(), 1, g_), vh);
                }
            },
        );
        let weights = keep.then(|| {
            // SAFETY: every (cell, head) region was written above.
            unsafe { weights.set_len(z.b * z.h * nq * g) };
            tensor(weights, vec![z.b, z.h, nq, g])
        });
        (tensor(context, vec![z.b, nq, d]), weights)
    }

    pub fn backward(
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        p: &FlexTensor,
        grad: &FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (q, k, v, p, grad) =
            (q.to_contiguous(), k.to_contiguous(), v.to_contiguous(), p.to_contiguous(), grad.to_contiguous());
        let heads = p.layout().shape()[1];
        let z = Sizes::of(&q, &k, heads);
        let (qd, kd, vd, pd, gd) =
            (contiguous_f32(&q), contiguous_f32(&k), contiguous_f32(&v), contiguous_f32(&p), contiguous_f32(&grad));
        let (nq, g, d, dk) = (z.nq, z.g, z.d, z.dk);
        let mut dq_each = vec![0f32; z.b * nq * d];
        let mut dk_all = vec![0f32; z.b * g * d];
        let mut dv_all = vec![0f32; z.b * g * d];
        let (dq_o, dk_o, dv_o) = (Out(dq_each.as_mut_ptr()), Out(dk_all.as_mut_ptr()), Out(dv_all.as_mut_ptr()));
        (0..z.b * z.h).into_par_iter().for_each_init(
            || vec![0f32; nq * g],
            |ds, i| {
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
            tensor(sum, vec![1, nq, d])
        } else {
            tensor(dq_each, vec![z.b, nq, d])
        };
        (dq, tensor(dk_all, vec![z.b, g, d]), tensor(dv_all, vec![z.b, g, d]))
    }
}

/// Row kernels. Written so the compiler vectorises them (lane-wise partial sums, a polynomial exp
/// without branches), and built twice: for the baseline CPU and for AVX2 + FMA, chosen at run time.
mod kernels {
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
    pub fn softmax_rows(rows: &mut [f32], n: usize, bias: &[f32]) {
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
                let x = super::CUTOFF * i as f32 / 200_000.0;
                let (ours, std) = (super::exp_neg(x) as f64, (x as f64).exp());
                worst = worst.max((ours - std).abs() / std);
            }
            assert!(worst < 5e-7, "worst relative error {worst}");
            assert_eq!(super::exp_neg(0.0), 1.0);
            assert_eq!(super::exp_neg(super::CUTOFF - 0.01), 0.0);
            assert_eq!(super::exp_neg(-1.0e4), 0.0);
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 2e-5 * scale.max(1.0), "{what}[{i}]: {x} vs {y}");
        }
    }

    /// The fused attention and its backward pass against Burn's composed ops (matmul, mask,
    /// softmax, matmul) under autodiff: same context, same gradients of q, k and v, with shared
    /// queries, two heads and some keys masked.
    #[test]
    fn fused_attention_matches_composed_ops_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let (b, h, nq, g, dk) = (3, 2, 5, 11, 4);
        let d = h * dk;
        let q0 = Tensor::<3>::random([1, nq, d], Distribution::Normal(0.0, 1.0), &device);
        let k0 = Tensor::<3>::random([b, g, d], Distribution::Normal(0.0, 1.0), &device);
        let v0 = Tensor::<3>::random([b, g, d], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<3>::random([b, nq, d], Distribution::Normal(0.0, 1.0), &device);
        let absent: Vec<bool> = (0..b * g).map(|i| i % 4 == 1).collect();
        let absent = Tensor::<2, Bool>::from_data(TensorData::new(absent, [b, g]), &device);
        let run = |fused: bool| {
            let (q, k, v) = (q0.clone().require_grad(), k0.clone().require_grad(), v0.clone().require_grad());
            let context = if fused {
                super::attention(q.clone(), k.clone(), v.clone(), Some(absent.clone()), -1.0e4, h)
            } else {
                let heads = |t: Tensor<3>, rows: usize, len: usize| t.reshape([rows, len, h, dk]).swap_dims(1, 2);
                let (qh, kh, vh) = (heads(q.clone(), 1, nq), heads(k.clone(), b, g), heads(v.clone(), b, g));
                let scores = qh.matmul(kh.transpose()).mask_fill(absent.clone().reshape([b, 1, 1, g]), -1.0e4);
                let context = burn::tensor::activation::softmax(scores, 3).matmul(vh);
                context.swap_dims(1, 2).reshape([b, nq, d])
            };
            let grads = (context.clone() * w.clone()).sum().backward();
            let grad = |t: &Tensor<3>| values(t.grad(&grads).expect("a gradient"));
            (values(context), grad(&q), grad(&k), grad(&v))
        };
        let (fused, composed) = (run(true), run(false));
        close(&fused.0, &composed.0, "context");
        close(&fused.1, &composed.1, "dq");
        close(&fused.2, &composed.2, "dk");
        close(&fused.3, &composed.3, "dv");
    }
}
