//! The hot ops of SD 1.5 at its real shapes, for `websd bench --ops` (and bench.html's "ops"
//! part): the 3×3 convs of every UNet level and of the VAE decoder, the transformer blocks' linear
//! projections, self-attention at each level's token count and cross-attention over the 77 text
//! tokens, and GroupNorm + SiLU. Each is timed with burn's stock op and, where the device runs our
//! kernels (issue #11), with ours ("… ours" rows), on the same operands.

use burn::nn::GroupNormConfig;
use burn::prelude::*;
use burn::tensor::activation::silu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, FloatDType};

use crate::kernels;
use crate::model::attention::{DEFAULT_SCORE_BUDGET, scaled_dot_product_attention};
use crate::model::conv::conv3x3_as_matmuls;
use crate::model::linear::with_own_matmul;
use crate::model::resnet::group_norm_burn;

/// One op at one shape: what it is, its work, and a call that queues it.
pub struct OpCase {
    pub name: String,
    /// TFLOP of one call (2 per multiply-add), where the op is arithmetic-bound.
    pub tflop: Option<f64>,
    pub run: Box<dyn Fn() -> Tensor<4>>,
}

fn random<const D: usize>(shape: [usize; D], dtype: FloatDType, device: &Device) -> Tensor<D> {
    Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype)
}

/// A 3×3 conv, padding 1, `channels` → `channels` on `[batch, channels, side, side]`, on the
/// same operands by each route: burn's conv, nine matmuls (the route before our kernel) and, where
/// the device runs our kernels, our implicit-GEMM kernel. The side-by-side rows.
fn conv3x3_rows(name: &str, batch: usize, channels: usize, side: usize, dtype: FloatDType, device: &Device) -> Vec<OpCase> {
    let x = random([batch, channels, side, side], dtype, device);
    let w = random([channels, channels, 3, 3], dtype, device) * (1.0 / (9.0 * channels as f64).sqrt());
    let b = random([channels], dtype, device);
    let flop = 2.0 * (batch * channels * channels * 9 * side * side) as f64;
    let name = format!("{name}: conv3x3 {channels}ch {side}² ×{batch}");
    let case = |suffix: &str, run: fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>| {
        let (x, w, b) = (x.clone(), w.clone(), b.clone());
        OpCase { name: format!("{name}{suffix}"), tflop: Some(flop / 1e12), run: Box::new(move || run(x.clone(), w.clone(), b.clone())) }
    };
    let mut rows = vec![case("", |x, w, b| conv2d(x, w, Some(b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1))), case(" as 9 matmuls", |x, w, b| conv3x3_as_matmuls(x, w, Some(b)))];
    if kernels::runs_kernels(device) {
        rows.push(case(" ours", |x, w, b| kernels::conv3x3(x, w, Some(b))));
    }
    rows
}

/// `[rows, k] × [k, n] + bias`: a linear projection over every token of a batch, by burn's matmul
/// and, where the device runs our kernels, ours, on the same operands.
fn linear_rows(name: &str, rows: usize, k: usize, n: usize, dtype: FloatDType, device: &Device) -> Vec<OpCase> {
    let x = random([rows, k], dtype, device);
    let w = random([k, n], dtype, device) * (1.0 / (k as f64).sqrt());
    let b = random([n], dtype, device);
    let name = format!("{name}: linear {rows}×{k}·{k}×{n}");
    let tflop = Some(2.0 * (rows * k * n) as f64 / 1e12);
    let (x1, w1, b1) = (x.clone(), w.clone(), b.clone());
    let mut cases = vec![OpCase { name: name.clone(), tflop, run: Box::new(move || (x1.clone().matmul(w1.clone()) + b1.clone().unsqueeze()).unsqueeze::<4>()) }];
    if kernels::runs_kernels(device) {
        cases.push(OpCase { name: format!("{name} ours"), tflop, run: Box::new(move || kernels::matmul(x.clone(), w.clone(), Some(b.clone())).unsqueeze::<4>()) });
    }
    cases
}

/// softmax(q·kᵀ/√d)·v with `heads` heads of `dim` over `queries` × `keys` tokens: the
/// model's chunked route with burn's matmuls, the same route with our matmul ("ours (matmuls)")
/// and our fused kernel ("ours"), on the same operands.
#[allow(clippy::too_many_arguments)]
fn attention_rows(name: &str, batch: usize, heads: usize, dim: usize, queries: usize, keys: usize, dtype: FloatDType, device: &Device) -> Vec<OpCase> {
    let q = random([batch, heads, queries, dim], dtype, device);
    let k = random([batch, heads, keys, dim], dtype, device);
    let v = random([batch, heads, keys, dim], dtype, device);
    let tflop = Some(2.0 * 2.0 * (batch * heads * queries * keys * dim) as f64 / 1e12);
    let name = format!("{name}: attention {heads}×{dim} {queries}→{keys} tokens ×{batch}");
    #[derive(Clone, Copy)]
    enum Route {
        Stock,
        OurMatmuls,
        Fused,
    }
    let row = |suffix: &str, route: Route| {
        let (q, k, v) = (q.clone(), k.clone(), v.clone());
        OpCase {
            name: format!("{name}{suffix}"),
            tflop,
            run: Box::new(move || {
                let chunked = || scaled_dot_product_attention(q.clone(), k.clone(), v.clone(), false, DEFAULT_SCORE_BUDGET);
                match route {
                    Route::Stock => kernels::without_own_kernels(chunked),
                    Route::OurMatmuls => with_own_matmul(chunked),
                    Route::Fused => kernels::attention(q.clone(), k.clone(), v.clone(), 1.0 / (dim as f64).sqrt()),
                }
            }),
        }
    };
    let mut cases = vec![row("", Route::Stock)];
    if kernels::runs_kernels(device) {
        cases.push(row(" ours (matmuls)", Route::OurMatmuls));
        if dim <= kernels::attention::MAX_HEAD_DIM {
            cases.push(row(" ours", Route::Fused));
        }
    }
    cases
}

/// GroupNorm (32 groups) + SiLU on `[batch, channels, side, side]`: burn's ops and, where the
/// device runs our kernels, our fused kernel, on the same input.
fn group_norm_silu_rows(name: &str, batch: usize, channels: usize, side: usize, dtype: FloatDType, device: &Device) -> Vec<OpCase> {
    let x = random([batch, channels, side, side], dtype, device);
    let norm = GroupNormConfig::new(32, channels).init(device);
    let name = format!("{name}: GroupNorm+SiLU {channels}ch {side}² ×{batch}");
    let (x1, norm1) = (x.clone(), norm.clone());
    let mut rows = vec![OpCase { name: name.clone(), tflop: None, run: Box::new(move || silu(group_norm_burn(&norm1, x1.clone()))) }];
    if kernels::runs_kernels(device) {
        let (gamma, beta) = (norm.gamma.as_ref().unwrap().val().cast(dtype), norm.beta.as_ref().unwrap().val().cast(dtype));
        rows.push(OpCase { name: format!("{name} ours"), tflop: None, run: Box::new(move || kernels::group_norm(x.clone(), gamma.clone(), beta.clone(), 32, 1e-5, true)) });
    }
    rows
}

/// SD 1.5's hot ops for an image of `size`² (a multiple of 64): the UNet at batch 2 (CFG), the VAE
/// decoder at batch 1. The VAE's last level (128 channels at the full image size) is left out: the
/// pipeline decodes it in tiles.
pub fn sd15_cases(size: usize, dtype: FloatDType, device: &Device) -> Vec<OpCase> {
    let l = size / 8;
    let mut cases = Vec::new();
    for (level, (channels, side)) in [(320, l), (640, l / 2), (1280, l / 4), (1280, l / 8)].into_iter().enumerate() {
        cases.extend(conv3x3_rows(&format!("UNet level {level}"), 2, channels, side, dtype, device));
    }
    for (level, (channels, side)) in [(512, l), (512, 2 * l), (256, 4 * l)].into_iter().enumerate() {
        cases.extend(conv3x3_rows(&format!("VAE decoder level {level}"), 1, channels, side, dtype, device));
    }
    // The transformer blocks: q/k/v/out are [tokens, c]·[c, c]; the GEGLU feed-forward [c, 8c] in.
    for (level, (channels, side)) in [(320, l), (640, l / 2), (1280, l / 4)].into_iter().enumerate() {
        let tokens = 2 * side * side;
        cases.extend(linear_rows(&format!("UNet level {level} attention proj"), tokens, channels, channels, dtype, device));
        cases.extend(linear_rows(&format!("UNet level {level} feed-forward in"), tokens, channels, 8 * channels, dtype, device));
    }
    // SD 1.5: 8 heads at every level, so the head size grows with the channels.
    for (level, (channels, side)) in [(320, l), (640, l / 2), (1280, l / 4)].into_iter().enumerate() {
        cases.extend(attention_rows(&format!("UNet level {level} self"), 2, 8, channels / 8, side * side, side * side, dtype, device));
    }
    cases.extend(attention_rows("UNet level 0 cross", 2, 8, 40, l * l, 77, dtype, device));
    // The VAE's mid-block: one head as wide as its 512 channels, over the latent's pixels.
    cases.extend(attention_rows("VAE mid-block self", 1, 1, 512, l * l, l * l, dtype, device));
    cases.extend(group_norm_silu_rows("UNet level 0", 2, 320, l, dtype, device));
    cases.extend(group_norm_silu_rows("VAE decoder level 2", 1, 256, 4 * l, dtype, device));
    cases
}
