//! Linear layers and the matmuls of attention: through our matmul kernel (`kernels::matmul`) in
//! the browser, burn's matmul natively and on the CPU backend.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::nn::Linear;
use burn::prelude::*;

use crate::kernels;

/// Natively burn autotunes its matmul, and on lavapipe the tuned kernel was 1.2–2× faster than
/// ours at SD's linear shapes (`websd bench --ops --device wgpu --size 128 --match linear`,
/// docs/PERFORMANCE.md). The browser has no autotune.
const OWN_MATMUL_NATIVE: bool = false;

/// Set while [`with_own_matmul`] runs: ours wherever the device runs our kernels.
static FORCE_OWN: AtomicBool = AtomicBool::new(false);

fn use_own(device: &Device) -> bool {
    (OWN_MATMUL_NATIVE || cfg!(target_arch = "wasm32") || FORCE_OWN.load(Ordering::Relaxed)) && kernels::use_own(device)
}

/// Runs `f` with our matmul natively too (`websd bench --ops` times it beside burn's there).
pub fn with_own_matmul<T>(f: impl FnOnce() -> T) -> T {
    let before = FORCE_OWN.swap(true, Ordering::Relaxed);
    let out = f();
    FORCE_OWN.store(before, Ordering::Relaxed);
    out
}

/// `linear.forward(x)`: `x [.., in] · weight [in, out] + bias`.
pub fn forward<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    if !use_own(&x.device()) {
        return linear.forward(x);
    }
    let dims = x.dims();
    let inputs = dims[D - 1];
    let rows = x.shape().num_elements() / inputs.max(1);
    let out = kernels::matmul(x.reshape([rows, inputs]), linear.weight.val(), linear.bias.as_ref().map(|b| b.val()));
    let outputs = out.dims()[1];
    out.reshape::<D, _>(std::array::from_fn::<usize, D, _>(|i| if i == D - 1 { outputs } else { dims[i] }))
}

/// `lhs · rhs` over the last two dims (batch dims equal or 1).
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    if use_own(&lhs.device()) { kernels::matmul(lhs, rhs, None) } else { lhs.matmul(rhs) }
}
