//! websd's own GPU kernels, written in CubeCL (compiled to WGSL for WebGPU, or for Vulkan/Metal
//! natively) and run through burn's backend-extension route: with fusion on, each call is an
//! opaque operation in burn's lazy stream. burn's op stays the fallback (on the CPU backend);
//! check.rs compares each kernel with exact (f64) results for the native and browser tests.

pub mod attention;
pub mod check;
pub mod conv3x3;
pub mod group_norm;
pub mod matmul;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::prelude::*;
use burn_cubecl::CubeBackend;

#[backend_extension(Cube, Fusion)]
pub trait Kernels: Backend {
    #[fusion(dtype = input, shape = conv3x3::output_shape(input, weight))]
    fn conv3x3(input: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;

    #[fusion(dtype = input, shape = input)]
    fn group_norm(input: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64, silu: bool) -> FloatTensor<Self>;

    #[fusion(dtype = lhs, shape = matmul::output_shape(lhs, rhs))]
    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;

    #[fusion(dtype = q, shape = attention::output_shape(q, v))]
    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, scale: f64) -> FloatTensor<Self>;

    #[fusion(dtype = lhs, shape = matmul::output_shape(lhs, rhs))]
    fn matmul_bias(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl Kernels for CubeBackend {
    fn conv3x3(input: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        conv3x3::conv3x3(input, weight, bias)
    }

    fn group_norm(input: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64, silu: bool) -> FloatTensor<Self> {
        group_norm::group_norm(input, gamma, beta, groups, epsilon, silu)
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        matmul::matmul(lhs, rhs, None)
    }

    fn matmul_bias(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        matmul::matmul(lhs, rhs, Some(bias))
    }

    fn attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, scale: f64) -> FloatTensor<Self> {
        attention::attention(q, k, v, scale)
    }
}

static OWN_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns our kernels off (`false`: burn's stock ops everywhere) or back on, for the whole
/// process: `websd bench` times the UNet both ways side by side.
pub fn set_own_kernels(on: bool) {
    OWN_KERNELS.store(on, Ordering::Relaxed);
}

/// Runs `f` with our kernels off, then restores the setting: a bench row that times burn's op
/// beside ours. (Ops are chosen as they are queued, so the lazy execution after does not matter.)
pub fn without_own_kernels<T>(f: impl FnOnce() -> T) -> T {
    let before = OWN_KERNELS.swap(false, Ordering::Relaxed);
    let out = f();
    OWN_KERNELS.store(before, Ordering::Relaxed);
    out
}

/// Whether the model runs our kernels on `device`: the device can ([`runs_kernels`]) and
/// [`set_own_kernels`] has not turned them off.
pub fn use_own(device: &Device) -> bool {
    OWN_KERNELS.load(Ordering::Relaxed) && runs_kernels(device)
}

/// Whether `device` runs our kernels: in the browser, always (WebGPU is the only backend there).
/// tests/e2e/foundation.test.mjs checks them through Chromium's WGSL compiler (check.rs). Which
/// model layers take them is each layer's decision (`model::conv::OWN_CONV_IN_BROWSER`).
#[cfg(target_arch = "wasm32")]
pub fn runs_kernels(_: &Device) -> bool {
    true
}

/// Whether `device` runs our kernels: natively on wgpu (Vulkan, Metal, DX12), not on burn's CPU
/// backend (flex), where burn's own ops are used.
#[cfg(not(target_arch = "wasm32"))]
pub fn runs_kernels(device: &Device) -> bool {
    *device != Device::flex()
}

/// A 3×3 conv (stride 1, padding 1) through [`conv3x3::conv3x3`]: `x [B, C, H, W]`,
/// `w [O, C, 3, 3]`, an optional bias `[O]`. Only on a device where [`runs_kernels`].
pub fn conv3x3(x: Tensor<4>, w: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let out_channels = w.dims()[0];
    let bias = bias.unwrap_or_else(|| Tensor::<1>::zeros([out_channels], &x.device()).cast(x.dtype()));
    Tensor::from_dispatch(Dispatch::conv3x3(x.into_dispatch(), w.into_dispatch(), bias.into_dispatch()))
}

/// GroupNorm of `x [B, C, H, W]` over `groups` groups, `· gamma [C] + beta [C]`, then SiLU where
/// `silu`, through [`group_norm::group_norm`] (statistics in f32). Only on a device where
/// [`runs_kernels`].
pub fn group_norm(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, groups: usize, epsilon: f64, silu: bool) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::group_norm(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), groups, epsilon, silu))
}

/// `lhs [.., M, K] · rhs [.., K, N]` (+ `bias [N]`) through [`matmul::matmul`]: f32 accumulation,
/// operands read through their strides (a transposed view costs no copy), batch dims of size 1
/// broadcast. Up to two batch dims. Only on a device where [`runs_kernels`].
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>, bias: Option<Tensor<1>>) -> Tensor<D> {
    assert!((2..=4).contains(&D), "matmul: 2 to 4 dims, got {D}");
    let [lhs, rhs] = [lhs, rhs].map(|t| t.unsqueeze::<4>().into_dispatch());
    let out = match bias {
        Some(bias) => Dispatch::matmul_bias(lhs, rhs, bias.into_dispatch()),
        None => Dispatch::matmul(lhs, rhs),
    };
    let out = Tensor::<4>::from_dispatch(out);
    let dims = out.dims();
    out.reshape::<D, _>(std::array::from_fn::<usize, D, _>(|i| dims[4 - D + i]))
}

/// softmax(q·kᵀ·scale)·v for q `[B, H, Sq, D]`, k and v `[B, H, Sk, D]` through
/// [`attention::attention`], without materialising the scores (online softmax, f32). The output
/// is `[B, Sq, H, D]`: joining the heads after is a reshape. Only on a device where
/// [`runs_kernels`].
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: f64) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), scale))
}
