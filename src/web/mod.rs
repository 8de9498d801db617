//! The wasm API the Web Worker calls (www/worker.js), one file per part: gpu.rs (opening the
//! GPU, the probe), generate.rs (models and generation), import.rs (converting the user's
//! checkpoint in the page), bench.rs (bench.html's benchmark and
//! real-weights check). The worker owns the GPU; the page only talks to the worker with messages.

mod bench;
mod generate;
mod gpu;
mod import;

use std::cell::RefCell;

use burn::prelude::*;
use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::gpu::GpuInfo;

thread_local! {
    /// The worker's GPU device (burn's, and wgpu's handle of it), opened once by `init_gpu`.
    static GPU: RefCell<Option<(Device, GpuInfo, burn::tensor::wgpu::wgpu::Device)>> = const { RefCell::new(None) };
}

/// A panic leaves the wasm instance unusable (and may strike inside a callback, where no awaited
/// promise hears of it): besides logging it, tell the page at once with {type:'crashed', message},
/// so that it can start a fresh worker. A lost GPU device often ends this way.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let message = Object::new();
        set(&message, "type", "crashed");
        set(&message, "message", info.to_string());
        if let Ok(post) = Reflect::get(&js_sys::global(), &"postMessage".into()).and_then(|f| f.dyn_into::<Function>()) {
            let _ = post.call1(&JsValue::NULL, &message);
        }
    }));
}

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(object, &JsValue::from_str(key), &value.into());
}

/// Errors reach JavaScript as `Error`s whose `name` is the kind of failure (`Error::code`:
/// `GpuLost`, `InvalidRequest`, `BadWeights`, …), so the worker decides by the name, not by the
/// message's words. With this, `?` turns a `crate::Error` into such an error.
impl From<crate::Error> for JsValue {
    fn from(error: crate::Error) -> Self {
        let js = js_sys::Error::new(&error.to_string());
        js.set_name(error.code());
        js.into()
    }
}

impl From<crate::weights::manifest::WeightsError> for JsValue {
    fn from(error: crate::weights::manifest::WeightsError) -> Self {
        crate::Error::from(error).into()
    }
}

/// A failure of the caller's request that has no `crate::Error` of its own.
fn invalid_request(message: impl Into<String>) -> JsValue {
    crate::Error::InvalidRequest(message.into()).into()
}

/// Anything else, in words (named plain `Error`).
fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

fn device() -> Result<Device, JsValue> {
    Ok(gpu()?.0)
}

/// What burn's allocator holds on the GPU now, `{reserved, in_use, allocations}` (bytes; null
/// before the GPU is opened): the soak test checks it stays bounded over many generations.
#[wasm_bindgen]
pub fn gpu_memory() -> JsValue {
    let Some(usage) = gpu().ok().and_then(|(device, _)| device.memory_pool_usage()) else { return JsValue::NULL };
    let o = Object::new();
    set(&o, "reserved", usage.bytes_reserved as f64);
    set(&o, "in_use", usage.bytes_in_use as f64);
    set(&o, "allocations", usage.number_allocs as f64);
    o.into()
}

/// The open GPU's device and what it offers.
fn gpu() -> Result<(Device, GpuInfo), JsValue> {
    GPU.with(|g| g.borrow().as_ref().map(|(d, i, _)| (d.clone(), i.clone()))).ok_or_else(|| js_error("the GPU is not open yet: call init_gpu first"))
}
