//! websd's own GPU kernels, written in CubeCL (compiled to WGSL for WebGPU, or for Vulkan/Metal
//! natively) and run through burn's backend-extension route: with fusion on, each call is an
//! opaque operation in burn's lazy stream. burn's op stays the fallback (on the CPU backend);
//! check.rs compares each kernel with exact (f64) results for the native and browser tests.

pub mod check;
pub mod conv3x3;
pub mod group_norm;

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
}

impl Kernels for CubeBackend {
    fn conv3x3(input: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        conv3x3::conv3x3(input, weight, bias)
    }

    fn group_norm(input: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, groups: usize, epsilon: f64, silu: bool) -> FloatTensor<Self> {
        group_norm::group_norm(input, gamma, beta, groups, epsilon, silu)
    }
}

static OWN_KERNELS: AtomicBool = AtomicBool::new(true);

/// Turns our kernels off (`false`: burn's stock ops everywhere) or back on, for the whole
/// process: `websd bench` times the UNet both ways side by side.
pub fn set_own_kernels(on: bool) {
    OWN_KERNELS.store(on, Ordering::Relaxed);
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
