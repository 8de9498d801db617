//! Scaled dot-product attention that never materialises a score matrix larger than a budget.
//!
//! At a 64×64 latent, SD's self-attention scores are [batch, heads, 4096, 4096]: 537 MB per image
//! in f32, far over WebGPU's default 128 MiB binding limit. Rows of queries are independent, so
//! the queries are processed in chunks whose scores fit the budget. In the browser our fused
//! kernel (`kernels::attention`) writes no scores at all.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::linear;
use crate::kernels;

/// Natively burn autotunes the chunked route's matmuls, and on lavapipe that route was 1.9–2×
/// faster than our fused kernel (`websd bench --ops --device wgpu --size 128|256 --match
/// ": attention"`); in the browser, on SwiftShader, the fused kernel was 1.3–2.4× faster than the
/// chunked route with our matmul (bench.html, docs/PERFORMANCE.md). Unmeasured on a GPU.
const FUSED_NATIVE: bool = false;

/// Set while [`with_fused_attention`] runs: the fused kernel wherever the device runs ours.
static FORCE_FUSED: AtomicBool = AtomicBool::new(false);

/// Runs `f` with the fused attention kernel natively too (tests compare the model through it).
pub fn with_fused_attention<T>(f: impl FnOnce() -> T) -> T {
    let before = FORCE_FUSED.swap(true, Ordering::Relaxed);
    let out = f();
    FORCE_FUSED.store(before, Ordering::Relaxed);
    out
}

/// Whether attention with heads of `head_dim` runs our fused kernel: no causal mask (the text
/// encoder's attention has one and stays chunked), a head the kernel takes (not the VAE's 512),
/// on a device that runs our kernels, in the browser or when forced.
fn use_fused(device: &Device, causal: bool, head_dim: usize) -> bool {
    let wanted = FUSED_NATIVE || cfg!(target_arch = "wasm32") || FORCE_FUSED.load(Ordering::Relaxed);
    !causal && head_dim <= kernels::attention::MAX_HEAD_DIM && wanted && kernels::use_own(device)
}

/// Largest score block, in bytes, that attention materialises at once.
pub const DEFAULT_SCORE_BUDGET: usize = 64 << 20;

/// softmax(q·kᵀ·scale [+ causal mask])·v for q `[B, H, Sq, Dh]`, k/v `[B, H, Sk, Dh]`.
/// Scores and softmax are computed in f32 even when the inputs are f16.
pub fn scaled_dot_product_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool, score_budget: usize) -> Tensor<4> {
    let [b, h, sq, dh] = q.dims();
    let sk = k.dims()[2];
    let scale = (dh as f64).powf(-0.5);
    if use_fused(&q.device(), causal, dh) {
        return kernels::attention(q, k, v, scale).swap_dims(1, 2);
    }
    let bytes_per_row = b * h * sk * 4;
    let rows = (score_budget / bytes_per_row.max(1)).clamp(1, sq);
    let dtype = q.dtype();
    let kt = k.cast(burn::tensor::FloatDType::F32).swap_dims(2, 3);
    let v32 = v.cast(burn::tensor::FloatDType::F32);
    let mut outputs = Vec::with_capacity(sq.div_ceil(rows));
    let mut start = 0;
    while start < sq {
        let len = rows.min(sq - start);
        let q_chunk = q.clone().narrow(2, start, len).cast(burn::tensor::FloatDType::F32);
        let mut scores = linear::matmul(q_chunk, kt.clone()) * scale;
        if causal {
            scores = scores + causal_bias(start, len, sk, &q.device()).unsqueeze::<4>();
        }
        outputs.push(linear::matmul(softmax(scores, 3), v32.clone()));
        start += len;
    }
    let out = if outputs.len() == 1 { outputs.pop().unwrap() } else { Tensor::cat(outputs, 2) };
    out.cast(dtype)
}

/// Additive mask for query rows `start..start+len`: -inf where the key comes after the query.
fn causal_bias(start: usize, len: usize, sk: usize, device: &Device) -> Tensor<2> {
    let mut values = vec![0f32; len * sk];
    for i in 0..len {
        for j in (start + i + 1)..sk {
            values[i * sk + j] = f32::NEG_INFINITY;
        }
    }
    // Explicitly f32: the scores are f32 even when the device defaults to f16.
    Tensor::from_data(burn::tensor::TensorData::new(values, [len, sk]), (device, burn::tensor::DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunked and unchunked attention agree, with and without the causal mask.
    #[test]
    fn chunking_does_not_change_the_result() {
        let device = Device::flex();
        let q = Tensor::<4>::random([2, 3, 37, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([2, 3, 37, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let v = Tensor::<4>::random([2, 3, 37, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        for causal in [false, true] {
            let whole = scaled_dot_product_attention(q.clone(), k.clone(), v.clone(), causal, usize::MAX);
            let chunked = scaled_dot_product_attention(q.clone(), k.clone(), v.clone(), causal, 2 * 3 * 37 * 4 * 5);
            let diff: f32 = (whole.clone() - chunked).abs().max().into_scalar();
            assert!(diff < 1e-5, "causal={causal}: chunked differs by {diff}");
            // Row 0 under the causal mask sees only key 0, so its output equals v[.., 0, ..].
            if causal {
                let first = whole.narrow(2, 0, 1);
                let d: f32 = (first - v.clone().narrow(2, 0, 1)).abs().max().into_scalar();
                assert!(d < 1e-5, "causal row 0 should copy v[0], differs by {d}");
            }
        }
    }
}

/// diffusers' `Attention` (to_q, to_k, to_v, to_out.0): self-attention over a sequence, or
/// cross-attention to a context.
#[derive(Module, Debug)]
pub struct Attention {
    to_q: burn::nn::Linear,
    to_k: burn::nn::Linear,
    to_v: burn::nn::Linear,
    to_out: burn::nn::Linear,
    heads: usize,
}

impl Attention {
    /// `qkv_bias`: the UNet's attention has none, the VAE's has them.
    pub fn load(
        w: &mut crate::weights::WeightLoader,
        prefix: &str,
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        qkv_bias: bool,
    ) -> crate::error::Result<Self> {
        Self::load_named(w, prefix, Self::NAMES, query_dim, context_dim, heads, head_dim, qkv_bias)
    }

    /// diffusers' names for the q, k, v and output projections.
    pub const NAMES: [&'static str; 4] = ["to_q", "to_k", "to_v", "to_out.0"];
    /// The names older diffusers saved the VAE's attention under (diffusers renames them on load;
    /// e.g. stabilityai/sd-vae-ft-mse still has them).
    pub const DEPRECATED_NAMES: [&'static str; 4] = ["query", "key", "value", "proj_attn"];

    #[allow(clippy::too_many_arguments)]
    pub fn load_named(
        w: &mut crate::weights::WeightLoader,
        prefix: &str,
        [q, k, v, out]: [&str; 4],
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        qkv_bias: bool,
    ) -> crate::error::Result<Self> {
        let inner = heads * head_dim;
        Ok(Self {
            to_q: w.linear(&format!("{prefix}.{q}"), query_dim, inner, qkv_bias)?,
            to_k: w.linear(&format!("{prefix}.{k}"), context_dim, inner, qkv_bias)?,
            to_v: w.linear(&format!("{prefix}.{v}"), context_dim, inner, qkv_bias)?,
            to_out: w.linear(&format!("{prefix}.{out}"), inner, query_dim, true)?,
            heads,
        })
    }

    /// `x` [B, N, query_dim]; `context` [B, M, context_dim] for cross-attention, None for self.
    pub fn forward(&self, x: Tensor<3>, context: Option<Tensor<3>>) -> Tensor<3> {
        let context = context.unwrap_or_else(|| x.clone());
        let split = |t: Tensor<3>| {
            let [b, n, inner] = t.dims();
            t.reshape([b, n, self.heads, inner / self.heads]).swap_dims(1, 2)
        };
        let q = split(linear::forward(&self.to_q, x));
        let k = split(linear::forward(&self.to_k, context.clone()));
        let v = split(linear::forward(&self.to_v, context));
        let out = scaled_dot_product_attention(q, k, v, false, DEFAULT_SCORE_BUDGET);
        let [b, h, n, d] = out.dims();
        linear::forward(&self.to_out, out.swap_dims(1, 2).reshape([b, n, h * d]))
    }
}
