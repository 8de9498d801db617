//! websd's own GPU kernels, written in CubeCL (compiled to WGSL for WebGPU, or for Vulkan/Metal
//! natively) and run through burn's backend-extension route: with fusion on, each call is an
//! opaque operation in burn's lazy stream. burn's op stays the fallback (on the CPU backend) and
//! the reference the tests compare against.

pub mod conv3x3;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::prelude::*;
use burn_cubecl::CubeBackend;

#[backend_extension(Cube, Fusion)]
pub trait Kernels: Backend {
    #[fusion(dtype = input, shape = conv3x3::output_shape(input, weight))]
    fn conv3x3(input: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl Kernels for CubeBackend {
    fn conv3x3(input: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        conv3x3::conv3x3(input, weight, bias)
    }
}

/// Whether `device` runs our kernels. In the browser, not yet: the kernels have run natively (Vulkan) but not through a browser's
/// WGSL compiler, and the browser tests would be the first to find out. Turning this on comes
/// with a browser test of the kernel against burn's conv (issue #11).
#[cfg(target_arch = "wasm32")]
pub fn runs_kernels(_: &Device) -> bool {
    false
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
