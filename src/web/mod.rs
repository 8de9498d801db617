//! The wasm API the Web Worker calls (www/worker.js). The worker owns the GPU; the page only
//! talks to the worker with messages.

use std::cell::RefCell;

use burn::prelude::*;
use wasm_bindgen::prelude::*;

use crate::gpu::{GpuInfo, open_gpu};

thread_local! {
    /// The worker's GPU device, opened once by `init_gpu`.
    static GPU: RefCell<Option<(Device, GpuInfo)>> = const { RefCell::new(None) };
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

fn device() -> Result<Device, JsValue> {
    GPU.with(|gpu| gpu.borrow().as_ref().map(|(d, _)| d.clone()))
        .ok_or_else(|| js_error("the GPU is not open yet: call init_gpu first"))
}

/// Opens the WebGPU adapter and device through burn; returns the adapter's name, backend,
/// whether it has shader-f16, and its buffer limits.
#[wasm_bindgen]
pub async fn init_gpu() -> Result<JsValue, JsValue> {
    if let Some(info) = GPU.with(|gpu| gpu.borrow().as_ref().map(|(_, i)| i.clone())) {
        return serde_wasm_bindgen::to_value(&info).map_err(js_error);
    }
    let (device, info) = open_gpu().await.map_err(js_error)?;
    GPU.with(|gpu| *gpu.borrow_mut() = Some((device, info.clone())));
    serde_wasm_bindgen::to_value(&info).map_err(js_error)
}

/// Runs the probe computation (conv2d + matmul + softmax) on the GPU and returns its values.
#[wasm_bindgen]
pub async fn run_probe() -> Result<Vec<f32>, JsValue> {
    Ok(crate::probe::probe_async(&device()?).await)
}
