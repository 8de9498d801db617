//! Opening the GPU, and the checks that it computes what the native build computes.

use wasm_bindgen::prelude::*;

use super::{GPU, device, js_error};
use crate::gpu::open_gpu_raw;

/// Opens the WebGPU adapter and device through burn; returns the adapter's name, backend,
/// whether it has shader-f16, and its buffer limits.
#[wasm_bindgen]
pub async fn init_gpu() -> Result<JsValue, JsValue> {
    if let Some(info) = GPU.with(|gpu| gpu.borrow().as_ref().map(|(_, i, _)| i.clone())) {
        return serde_wasm_bindgen::to_value(&info).map_err(js_error);
    }
    let (device, info, wgpu_device) = open_gpu_raw().await.map_err(js_error)?;
    GPU.with(|gpu| *gpu.borrow_mut() = Some((device, info.clone(), wgpu_device)));
    serde_wasm_bindgen::to_value(&info).map_err(js_error)
}

/// Destroys the GPU device (WebGPU's `GPUDevice.destroy()`): what a driver reset or a GPU process
/// crash does to the page. For testing that websd recovers; the worker is unusable afterwards.
#[wasm_bindgen]
pub fn destroy_gpu_device() {
    GPU.with(|gpu| {
        if let Some((_, _, wgpu_device)) = gpu.borrow().as_ref() {
            wgpu_device.destroy();
        }
    });
}

/// Runs the probe computation (conv2d + matmul + softmax) on the GPU and returns its values.
#[wasm_bindgen]
pub async fn run_probe() -> Result<Vec<f32>, JsValue> {
    Ok(crate::tools::probe::probe_async(&device()?).await?)
}

/// The seeded Gaussian noise (`rng::gaussian`): the browser test checks it is bit-identical to
/// the native build's.
#[wasm_bindgen]
pub fn gaussian_noise(seed: f64, stream: f64, count: u32) -> Vec<f32> {
    crate::rng::gaussian(seed as u64, stream as u64, count as usize)
}
