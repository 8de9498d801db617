//! Our kernels against exact (f64, on the host) results of the same rounded operands, at awkward
//! shapes. The native tests (tests/integration/bench.rs) and the browser test
//! (tests/e2e/foundation.test.mjs, through the wasm export `check_kernel`) run these lists, so a
//! browser's WGSL compiler sees the cases that lavapipe's sees.

use burn::prelude::*;
use burn::tensor::{Distribution, FloatDType};

use crate::error::{Error, Result};
use crate::tools::compare::errors;

/// One comparison: the case, its dtype, the relative error (‖ours − exact‖ / ‖exact‖) and the
/// bound it must stay under.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub case: String,
    pub dtype: &'static str,
    pub relative_error: f32,
    pub tolerance: f32,
}

impl Check {
    /// Under the bound (a NaN error fails).
    pub fn passed(&self) -> bool {
        self.relative_error < self.tolerance
    }
}

/// The bounds of issue #11 (f32 ≤ 1e-5, f16 ≤ 2e-3), against the exact result of the same
/// rounded operands.
pub fn tolerance(dtype: FloatDType) -> f32 {
    if dtype == FloatDType::F16 { 2e-3 } else { 1e-5 }
}

/// 3×3 conv cases as (batch, in channels, out channels, height, width, bias): edges in every
/// dimension (channel counts that fill no tile, in ≠ out, images smaller and larger than a tile,
/// one pixel), batch 1 and 2, with and without a bias, and all four tilings (`Tiling::for_shape`:
/// ≥ 256 output channels, ≥ 2048 pixels), each over several tiles. Small enough for a CPU-emulated
/// WebGPU (SwiftShader, ~0.2 GFLOP/s); the wgpu parity tests run the kernel at SD's real widths.
pub const CONV3X3_CASES: [(usize, usize, usize, usize, usize, bool); 8] = [
    (1, 3, 5, 7, 9, true),
    (2, 17, 33, 6, 5, false),
    (2, 40, 24, 1, 1, true),
    (1, 4, 70, 13, 11, true),
    (2, 24, 272, 16, 16, true),
    (1, 67, 129, 9, 30, false),
    (1, 8, 260, 48, 48, true),
    (1, 5, 20, 50, 45, false),
];

async fn read_f32<const D: usize>(what: &str, t: Tensor<D>) -> Result<Vec<f32>> {
    let data = t.cast(FloatDType::F32).into_data_async().await.map_err(|e| Error::readback(what, e))?;
    data.try_to_vec::<f32>().map_err(|e| Error::Other(format!("{what}: {e:?}")))
}

/// Our kernel's output `out` against the `expected` values: it must have `shape` and `dtype`.
async fn compare(case: String, dtype: FloatDType, out: Tensor<4>, shape: [usize; 4], expected: &[f32]) -> Result<Check> {
    if out.dims() != shape || out.dtype() != dtype.into() {
        return Err(Error::Other(format!("{case}: our kernel gave {:?} {:?}", out.dims(), out.dtype())));
    }
    let relative_error = errors(&read_f32(&case, out).await?, expected).1;
    Ok(Check { case, dtype: crate::tools::bench::dtype_name(dtype), relative_error, tolerance: tolerance(dtype) })
}

/// A 3×3 conv (stride 1, padding 1) of `x [batch, cin, h, w]` by `k [cout, cin, 3, 3]` plus
/// `bias`, in f64: the exact reference.
fn conv3x3_f64(x: &[f32], k: &[f32], bias: Option<&[f32]>, [batch, cin, cout, h, w]: [usize; 5]) -> Vec<f32> {
    let mut out = vec![0f32; batch * cout * h * w];
    for b in 0..batch {
        for o in 0..cout {
            for y in 0..h {
                for x_ in 0..w {
                    let mut sum = bias.map_or(0.0, |bias| bias[o] as f64);
                    for c in 0..cin {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (iy, ix) = ((y + dy) as isize - 1, (x_ + dx) as isize - 1);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let input = x[((b * cin + c) * h + iy as usize) * w + ix as usize] as f64;
                                    sum += input * k[((o * cin + c) * 3 + dy) * 3 + dx] as f64;
                                }
                            }
                        }
                    }
                    out[((b * cout + o) * h + y) * w + x_] = sum as f32;
                }
            }
        }
    }
    out
}

/// Our 3×3 conv ([`super::conv3x3`]) against the f64 conv of the same rounded operands, at one
/// case of [`CONV3X3_CASES`]. (burn's own conv is not the reference here: on SwiftShader its
/// direct kernel lost the device at 8 → 260 channels, 48².)
pub async fn check_conv3x3_case(device: &Device, dtype: FloatDType, (batch, cin, cout, h, w, bias): (usize, usize, usize, usize, usize, bool)) -> Result<Check> {
    let x = Tensor::<4>::random([batch, cin, h, w], Distribution::Normal(0.0, 1.0), device).cast(dtype);
    let k = (Tensor::<4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 1.0), device) / (9.0 * cin as f64).sqrt()).cast(dtype);
    let b = bias.then(|| Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), device).cast(dtype));
    let case = format!("conv3x3 {batch}×{cin}→{cout} {h}×{w}{}", if bias { " bias" } else { "" });
    let host_bias = match &b {
        Some(b) => Some(read_f32(&case, b.clone()).await?),
        None => None,
    };
    let expected = conv3x3_f64(&read_f32(&case, x.clone()).await?, &read_f32(&case, k.clone()).await?, host_bias.as_deref(), [batch, cin, cout, h, w]);
    compare(case, dtype, super::conv3x3(x, k, b), [batch, cout, h, w], &expected).await
}

/// [`check_conv3x3_case`] at every case, in each of `dtypes`.
pub async fn check_conv3x3(device: &Device, dtypes: &[FloatDType]) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for &dtype in dtypes {
        for case in CONV3X3_CASES {
            checks.push(check_conv3x3_case(device, dtype, case).await?);
        }
    }
    Ok(checks)
}

/// GroupNorm cases as (batch, channels, groups, height, width, mean, SiLU): groups of one channel
/// and of several, odd and single-pixel maps, batch 1 and 2, SD's UNet level 0 at 128², a group
/// longer than one reduction chunk (4096 elements) with a mean far from zero, with and without
/// SiLU.
pub const GROUP_NORM_CASES: [(usize, usize, usize, usize, usize, f64, bool); 6] = [
    (1, 32, 32, 5, 7, 0.0, true),
    (1, 6, 3, 1, 1, 0.5, false),
    (2, 96, 32, 13, 11, 0.0, true),
    (2, 320, 32, 16, 16, 0.0, true),
    (1, 128, 32, 72, 72, 50.0, false),
    (2, 64, 32, 9, 9, -2.0, true),
];

/// GroupNorm(+SiLU) of `x [batch, channels, hw]` in f64: the exact reference. (burn's GroupNorm
/// in f32 is off by ~2e-5 itself when the mean is 50 standard deviations from zero.)
#[allow(clippy::too_many_arguments)]
fn group_norm_f64(x: &[f32], gamma: &[f32], beta: &[f32], batch: usize, channels: usize, groups: usize, epsilon: f64, silu: bool) -> Vec<f32> {
    let hw = x.len() / (batch * channels);
    let group_len = channels / groups * hw;
    let mut out = vec![0f32; x.len()];
    for (g, (xs, ys)) in x.chunks(group_len).zip(out.chunks_mut(group_len)).enumerate() {
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / group_len as f64;
        let variance = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / group_len as f64;
        let rstd = 1.0 / (variance + epsilon).sqrt();
        for (i, (&v, y)) in xs.iter().zip(ys.iter_mut()).enumerate() {
            let c = (g % groups) * (channels / groups) + i / hw;
            let n = (v as f64 - mean) * rstd * gamma[c] as f64 + beta[c] as f64;
            *y = if silu { n / (1.0 + (-n).exp()) } else { n } as f32;
        }
    }
    out
}

/// Our GroupNorm(+SiLU) ([`super::group_norm`]) against the f64 GroupNorm of the same rounded
/// operands, at one case of [`GROUP_NORM_CASES`].
pub async fn check_group_norm_case(
    device: &Device,
    dtype: FloatDType,
    (batch, channels, groups, h, w, mean, silu): (usize, usize, usize, usize, usize, f64, bool),
) -> Result<Check> {
    let x = (Tensor::<4>::random([batch, channels, h, w], Distribution::Normal(0.0, 1.0), device) + mean).cast(dtype);
    let gamma = Tensor::<1>::random([channels], Distribution::Normal(1.0, 0.5), device).cast(dtype);
    let beta = Tensor::<1>::random([channels], Distribution::Normal(0.0, 0.5), device).cast(dtype);
    let case = format!("group norm {batch}×{channels} {h}×{w} {groups} groups mean {mean}{}", if silu { " SiLU" } else { "" });
    let host = (read_f32(&case, x.clone()).await?, read_f32(&case, gamma.clone()).await?, read_f32(&case, beta.clone()).await?);
    let expected = group_norm_f64(&host.0, &host.1, &host.2, batch, channels, groups, 1e-5, silu);
    compare(case, dtype, super::group_norm(x, gamma, beta, groups, 1e-5, silu), [batch, channels, h, w], &expected).await
}

/// [`check_group_norm_case`] at every case, in each of `dtypes`.
pub async fn check_group_norm(device: &Device, dtypes: &[FloatDType]) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for &dtype in dtypes {
        for case in GROUP_NORM_CASES {
            checks.push(check_group_norm_case(device, dtype, case).await?);
        }
    }
    Ok(checks)
}

/// How a matmul case's right operand is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RhsLayout {
    /// Its own `[b0, b1, k, n]`, contiguous.
    Plain,
    /// A `[b0, b1, n, k]` tensor seen transposed (attention's kᵀ): strided reads.
    Transposed,
    /// One `[1, 1, k, n]` for every batch, plus a bias `[n]` (a linear layer).
    SharedWithBias,
}

/// Matmul cases as (b0, b1, m, k, n, rhs layout): sizes that fill no tile, a summed dim shorter
/// than one staged slice, two rows (the time embedding's linears), attention's kᵀ over heads,
/// a weight broadcast over the batch with a bias, and the wide-row and (natively) wide-column
/// tiles (m ≥ 256, n ≥ 2048).
pub const MATMUL_CASES: [(usize, usize, usize, usize, usize, RhsLayout); 7] = [
    (1, 1, 5, 7, 9, RhsLayout::Plain),
    (2, 3, 37, 19, 41, RhsLayout::Transposed),
    (1, 1, 2, 64, 300, RhsLayout::SharedWithBias),
    (2, 1, 77, 16, 48, RhsLayout::SharedWithBias),
    (1, 2, 300, 33, 70, RhsLayout::Plain),
    (1, 1, 130, 40, 2100, RhsLayout::SharedWithBias),
    (2, 4, 64, 40, 77, RhsLayout::Transposed),
];

/// `lhs [batches, m, k] · rhs [batches or 1, k, n] (+ bias [n])` in f64: the exact reference.
fn matmul_f64(lhs: &[f32], rhs: &[f32], bias: Option<&[f32]>, batches: usize, [m, k, n]: [usize; 3]) -> Vec<f32> {
    let rhs_batches = rhs.len() / (k * n);
    let mut out = vec![0f32; batches * m * n];
    for b in 0..batches {
        let (a, w) = (&lhs[b * m * k..], &rhs[(b % rhs_batches) * k * n..]);
        for i in 0..m {
            for j in 0..n {
                let sum: f64 = (0..k).map(|p| a[i * k + p] as f64 * w[p * n + j] as f64).sum();
                out[(b * m + i) * n + j] = (sum + bias.map_or(0.0, |b| b[j] as f64)) as f32;
            }
        }
    }
    out
}

/// Our matmul ([`super::matmul`]) against the f64 matmul of the same rounded operands, at one case
/// of [`MATMUL_CASES`].
pub async fn check_matmul_case(device: &Device, dtype: FloatDType, (b0, b1, m, k, n, layout): (usize, usize, usize, usize, usize, RhsLayout)) -> Result<Check> {
    let normal = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device).cast(dtype);
    let lhs = normal([b0, b1, m, k]);
    let rhs = match layout {
        RhsLayout::Plain => normal([b0, b1, k, n]),
        RhsLayout::Transposed => normal([b0, b1, n, k]).swap_dims(2, 3),
        RhsLayout::SharedWithBias => normal([1, 1, k, n]),
    };
    let bias = (layout == RhsLayout::SharedWithBias).then(|| Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), device).cast(dtype));
    let case = format!("matmul {b0}×{b1}×{m}×{k} · {k}×{n} {layout:?}");
    let host_bias = match &bias {
        Some(b) => Some(read_f32(&case, b.clone()).await?),
        None => None,
    };
    let expected = matmul_f64(&read_f32(&case, lhs.clone()).await?, &read_f32(&case, rhs.clone()).await?, host_bias.as_deref(), b0 * b1, [m, k, n]);
    compare(case, dtype, super::matmul(lhs, rhs, bias), [b0, b1, m, n], &expected).await
}

/// [`check_matmul_case`] at every case, in each of `dtypes`.
pub async fn check_matmul(device: &Device, dtypes: &[FloatDType]) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for &dtype in dtypes {
        for case in MATMUL_CASES {
            checks.push(check_matmul_case(device, dtype, case).await?);
        }
    }
    Ok(checks)
}

/// Attention cases as (batch, heads, queries, keys, head dim, q amplitude, q seen transposed):
/// sizes that fill no workgroup of 64 queries or step of 8 keys, queries over three workgroups,
/// one key, cross-attention's 77 keys, SD's head dims (40, 64, 160 = `MAX_HEAD_DIM`) and one that
/// is no multiple of 4 (10), and scores far apart (amplitude 8: the
/// running maximum changes between key blocks, and an unstabilised softmax would overflow). With
/// the transposed flag q is a `[B, Sq, H, D]` tensor seen as `[B, H, Sq, D]`, as the model splits
/// its heads.
pub const ATTENTION_CASES: [(usize, usize, usize, usize, usize, f64, bool); 7] = [
    (1, 1, 5, 7, 10, 1.0, false),
    (2, 3, 37, 77, 40, 1.0, true),
    (1, 2, 33, 1, 64, 1.0, false),
    (1, 2, 70, 100, 64, 8.0, true),
    (2, 1, 40, 65, 160, 1.0, false),
    (1, 1, 130, 40, 40, 1.0, false),
    (1, 4, 96, 96, 64, 8.0, false),
];

/// softmax(q·kᵀ/√d)·v of `q [bh, sq, d]`, `k, v [bh, sk, d]` in f64, as `[b, sq, h, d]`: the exact
/// reference.
fn attention_f64(q: &[f32], k: &[f32], v: &[f32], [b, h, sq, sk, d]: [usize; 5]) -> Vec<f32> {
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; b * h * sq * d];
    for bh in 0..b * h {
        let (qs, ks, vs) = (&q[bh * sq * d..], &k[bh * sk * d..], &v[bh * sk * d..]);
        for i in 0..sq {
            let scores: Vec<f64> = (0..sk).map(|j| (0..d).map(|p| qs[i * d + p] as f64 * ks[j * d + p] as f64).sum::<f64>() * scale).collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for p in 0..d {
                let value: f64 = weights.iter().enumerate().map(|(j, w)| w * vs[j * d + p] as f64).sum::<f64>() / total;
                out[(((bh / h) * sq + i) * h + bh % h) * d + p] = value as f32;
            }
        }
    }
    out
}

/// Our attention ([`super::attention`]) against the f64 attention of the same rounded operands, at
/// one case of [`ATTENTION_CASES`].
pub async fn check_attention_case(device: &Device, dtype: FloatDType, (b, h, sq, sk, d, amplitude, transposed): (usize, usize, usize, usize, usize, f64, bool)) -> Result<Check> {
    let normal = |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let q = if transposed { normal([b, sq, h, d]).swap_dims(1, 2) } else { normal([b, h, sq, d]) };
    let q = (q * amplitude).cast(dtype);
    let (k, v) = (normal([b, h, sk, d]).cast(dtype), normal([b, h, sk, d]).cast(dtype));
    let case = format!(
        "attention {b}×{h} {sq}→{sk} tokens dim {d}{}{}",
        if amplitude != 1.0 { format!(" q×{amplitude}") } else { String::new() },
        if transposed { " q transposed" } else { "" }
    );
    let expected = attention_f64(&read_f32(&case, q.clone()).await?, &read_f32(&case, k.clone()).await?, &read_f32(&case, v.clone()).await?, [b, h, sq, sk, d]);
    compare(case, dtype, super::attention(q, k, v, 1.0 / (d as f64).sqrt()), [b, sq, h, d], &expected).await
}

/// [`check_attention_case`] at every case, in each of `dtypes`.
pub async fn check_attention(device: &Device, dtypes: &[FloatDType]) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for &dtype in dtypes {
        for case in ATTENTION_CASES {
            checks.push(check_attention_case(device, dtype, case).await?);
        }
    }
    Ok(checks)
}
