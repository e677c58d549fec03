//! The CLI's CPU kernels (flex), each with its own backward pass: the attention and GELU, as a Burn
//! backend extension (so autodiff records them) around the slice arithmetic of `cpu_math.rs`.
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
use burn::tensor::{Bytes, Shape};
use burn::tensor::{DType, Tensor};
use burn_flex::{FlexTensor, Layout};

use super::cpu_math::{self, attention::Sizes, kernels};

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
fn map_in_place(
    t: FlexTensor,
    expected_len: Option<usize>,
    kernel: impl Fn(&mut [f32], usize) + Sync + Send,
) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "the CPU kernels run on f32");
    // Moved, not cloned, when already contiguous: a second reference would make the write copy.
    let mut t = if t.is_contiguous() { t } else { t.to_contiguous() };
    let (start, end) = t.layout().contiguous_offsets().expect("contiguous after to_contiguous");
    let data = &mut t.storage_mut::<f32>()[start..end];
    if let Some(len) = expected_len {
        assert_eq!(data.len(), len, "a gradient and its forward input differ in size");
    }
    cpu_math::map_chunks(data, kernel);
    t
}

fn tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), DType::F32)
}

fn dims3(t: &FlexTensor) -> [usize; 3] {
    let s = t.layout().shape();
    assert_eq!(s.num_dims(), 3, "attention inputs are [rows, length, d]");
    [s[0], s[1], s[2]]
}

/// The fused attention on flex tensors (`cpu_math::attention`).
mod attention {
    use super::*;

    pub fn forward(
        q: &FlexTensor,
        k: &FlexTensor,
        v: &FlexTensor,
        bias: &FlexTensor,
        heads: usize,
        keep: bool,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let (q, k, v, bias) = (q.to_contiguous(), k.to_contiguous(), v.to_contiguous(), bias.to_contiguous());
        let z = Sizes::of(dims3(&q), dims3(&k), heads);
        let slices = (contiguous_f32(&q), contiguous_f32(&k), contiguous_f32(&v), contiguous_f32(&bias));
        let (context, weights) = cpu_math::attention::forward(z, slices, keep);
        (tensor(context, vec![z.b, z.nq, z.d]), weights.map(|w| tensor(w, vec![z.b, z.h, z.nq, z.g])))
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
        let z = Sizes::of(dims3(&q), dims3(&k), p.layout().shape()[1]);
        let inputs = (contiguous_f32(&q), contiguous_f32(&k), contiguous_f32(&v));
        let (dq, dk, dv) = cpu_math::attention::backward(z, inputs, contiguous_f32(&p), contiguous_f32(&grad));
        (tensor(dq, vec![z.qb, z.nq, z.d]), tensor(dk, vec![z.b, z.g, z.d]), tensor(dv, vec![z.b, z.g, z.d]))
    }
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
