//! Opening the GPU, and the checks that it computes what the native build computes.

use burn::tensor::FloatDType;
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

/// One case of our GPU kernels' check (`kernels::check`) on this GPU: `kernel` 'conv3x3',
/// 'group_norm', 'matmul' or 'attention', `index` into its case list, `dtype` 'f32' or 'f16'. Resolves with {case, dtype,
/// relative_error, tolerance}; the number of cases is `kernel_check_cases(kernel)`.
#[wasm_bindgen]
pub async fn check_kernel(kernel: String, index: usize, dtype: String) -> Result<JsValue, JsValue> {
    use crate::kernels::check::{
        ATTENTION_CASES, CONV3X3_CASES, GROUP_NORM_CASES, MATMUL_CASES, check_attention_case, check_conv3x3_case, check_group_norm_case, check_matmul_case,
    };
    let (device, info) = super::gpu()?;
    let dtype = match dtype.as_str() {
        "f32" => FloatDType::F32,
        "f16" if info.shader_f16 => FloatDType::F16,
        other => return Err(super::invalid_request(format!("dtype {other:?} on this GPU: f32, or f16 where it has shader-f16"))),
    };
    let out_of_range = || super::invalid_request(format!("no {kernel} case {index}"));
    let check = match kernel.as_str() {
        "conv3x3" => check_conv3x3_case(&device, dtype, *CONV3X3_CASES.get(index).ok_or_else(out_of_range)?).await?,
        "group_norm" => check_group_norm_case(&device, dtype, *GROUP_NORM_CASES.get(index).ok_or_else(out_of_range)?).await?,
        "matmul" => check_matmul_case(&device, dtype, *MATMUL_CASES.get(index).ok_or_else(out_of_range)?).await?,
        "attention" => check_attention_case(&device, dtype, *ATTENTION_CASES.get(index).ok_or_else(out_of_range)?).await?,
        _ => return Err(super::invalid_request(format!("unknown kernel {kernel:?}: conv3x3, group_norm, matmul or attention"))),
    };
    serde_wasm_bindgen::to_value(&check).map_err(js_error)
}

/// How many cases `check_kernel(kernel, …)` has.
#[wasm_bindgen]
pub fn kernel_check_cases(kernel: &str) -> usize {
    match kernel {
        "conv3x3" => crate::kernels::check::CONV3X3_CASES.len(),
        "group_norm" => crate::kernels::check::GROUP_NORM_CASES.len(),
        "matmul" => crate::kernels::check::MATMUL_CASES.len(),
        "attention" => crate::kernels::check::ATTENTION_CASES.len(),
        _ => 0,
    }
}

/// The seeded Gaussian noise (`rng::gaussian`): the browser test checks it is bit-identical to
/// the native build's.
#[wasm_bindgen]
pub fn gaussian_noise(seed: f64, stream: f64, count: u32) -> Vec<f32> {
    crate::rng::gaussian(seed as u64, stream as u64, count as usize)
}
