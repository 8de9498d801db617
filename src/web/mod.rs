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

// ---------------------------------------------------------------- models and generation

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array, Uint8ClampedArray};
use wasm_bindgen_futures::JsFuture;

use crate::generate::Settings;
use crate::image::RgbaImage;
use crate::pipeline::StableDiffusion;
use crate::weights::Manifest;

thread_local! {
    /// The loaded model and its name.
    static MODEL: RefCell<Option<(Rc<StableDiffusion>, String)>> = const { RefCell::new(None) };
    /// Set by `cancel`, checked between steps.
    static CANCEL: Cell<bool> = const { Cell::new(false) };
}

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(object, &JsValue::from_str(key), &value.into());
}

fn rgba_object(image: &RgbaImage) -> Object {
    let o = Object::new();
    set(&o, "width", image.width as u32);
    set(&o, "height", image.height as u32);
    set(&o, "pixels", Uint8ClampedArray::from(image.pixels.as_slice()));
    o
}

/// Loads a converted model: `get_shard(sha256)` resolves to the shard's bytes (from IndexedDB),
/// `on_progress(done, total)` is called after each shard. Shards are verified, dequantized onto the
/// GPU and dropped one at a time. Uses f16 when the adapter has shader-f16.
#[wasm_bindgen]
pub async fn load_model(manifest_json: String, get_shard: Function, on_progress: Function) -> Result<JsValue, JsValue> {
    let device = device()?;
    let shader_f16 = GPU.with(|g| g.borrow().as_ref().map(|(_, i)| i.shader_f16)).unwrap_or(false);
    let manifest = Manifest::parse(manifest_json.as_bytes()).map_err(js_error)?;
    MODEL.with(|m| *m.borrow_mut() = None); // free the previous model's GPU memory first
    let prepared = crate::weights::prepared::prepare(
        &manifest,
        &device,
        |_, entry| {
            let get_shard = get_shard.clone();
            async move {
                let promise = get_shard
                    .call1(&JsValue::NULL, &JsValue::from_str(&entry.sha256))
                    .map_err(|e| crate::Error::Other(format!("reading shard {}: {e:?}", entry.file)))?;
                let value = JsFuture::from(Promise::resolve(&promise))
                    .await
                    .map_err(|e| crate::Error::Other(format!("shard {} is not in storage: {}", entry.file, e.as_string().unwrap_or_default())))?;
                Ok(Uint8Array::new(&value).to_vec())
            }
        },
        |done, total| {
            let _ = on_progress.call2(&JsValue::NULL, &JsValue::from(done as u32), &JsValue::from(total as u32));
        },
    )
    .await
    .map_err(js_error)?;
    let dtype = if shader_f16 { burn::tensor::FloatDType::F16 } else { burn::tensor::FloatDType::F32 };
    let sd = StableDiffusion::from_prepared(&manifest, prepared, &device, dtype).map_err(js_error)?;
    let info = Object::new();
    set(&info, "name", manifest.name.as_str());
    set(&info, "dtype", if shader_f16 { "f16" } else { "f32" });
    set(&info, "taesd", sd.taesd.is_some());
    set(&info, "default_scheduler", sd.default_scheduler.name());
    MODEL.with(|m| *m.borrow_mut() = Some((Rc::new(sd), manifest.name.clone())));
    Ok(info.into())
}

/// Generates images for `params` (see `generate::Settings`; plus `preview` and `init_image:
/// {width, height, pixels}`). `on_step(step, total, preview | null)` is awaited after each step;
/// resolving to false (or `cancel()`) stops the run. Resolves to an array of
/// `{width, height, pixels, png, seed, parameters}`.
#[wasm_bindgen]
pub async fn generate(params: JsValue, on_step: Function) -> Result<JsValue, JsValue> {
    let (sd, name) = MODEL.with(|m| m.borrow().clone()).ok_or_else(|| js_error("no model is loaded"))?;
    let settings: Settings = serde_wasm_bindgen::from_value(params.clone()).map_err(|e| js_error(format!("bad settings: {e}")))?;
    let want_preview = Reflect::get(&params, &"preview".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
    let init_image = match Reflect::get(&params, &"init_image".into()) {
        Ok(v) if v.is_object() => {
            let num = |k: &str| Reflect::get(&v, &k.into()).ok().and_then(|x| x.as_f64()).unwrap_or(0.0) as usize;
            let pixels = Uint8Array::new(&Reflect::get(&v, &"pixels".into())?).to_vec();
            Some(RgbaImage { width: num("width"), height: num("height"), pixels })
        }
        _ => None,
    };
    CANCEL.with(|c| c.set(false));
    let sd_for_preview = sd.clone();
    let images = sd
        .generate_images(&settings, init_image.as_ref(), &name, |done, total, denoised| {
            let on_step = on_step.clone();
            let sd = sd_for_preview.clone();
            async move {
                let preview = if want_preview {
                    match sd.preview(denoised).await {
                        Ok(Some(img)) => JsValue::from(rgba_object(&img)),
                        _ => JsValue::NULL,
                    }
                } else {
                    JsValue::NULL
                };
                let answer = on_step.call3(&JsValue::NULL, &JsValue::from(done as u32), &JsValue::from(total as u32), &preview);
                // The worker's callback is async: awaiting it also lets "cancel" messages in.
                let keep_going = match answer {
                    Ok(v) => JsFuture::from(Promise::resolve(&v)).await.map(|v| v.as_bool() != Some(false)).unwrap_or(false),
                    Err(_) => false,
                };
                keep_going && !CANCEL.with(|c| c.get())
            }
        })
        .await
        .map_err(js_error)?;
    let out = js_sys::Array::new();
    for g in images {
        let o = rgba_object(&g.image);
        set(&o, "png", Uint8Array::from(g.png.as_slice()));
        set(&o, "seed", g.seed as f64);
        set(&o, "parameters", g.parameters.as_str());
        out.push(&o);
    }
    Ok(out.into())
}

/// Asks a running generation to stop after its current step.
/// How `text` tokenizes: {tokens, chunks, notice} (notice: null unless the prompt is split into
/// 75-token chunks), for the page's counter under each prompt.
#[wasm_bindgen]
pub fn prompt_length(text: &str, what: &str) -> Result<JsValue, JsValue> {
    let length = crate::tokenizer::PromptLength::of(text).map_err(js_error)?;
    let o = js_sys::Object::new();
    set(&o, "tokens", length.tokens as u32);
    set(&o, "chunks", length.chunks as u32);
    set(&o, "notice", length.notice(what).map(JsValue::from).unwrap_or(JsValue::NULL));
    Ok(o.into())
}

#[wasm_bindgen]
pub fn cancel() {
    CANCEL.with(|c| c.set(true));
}

/// The seeded Gaussian noise (`rng::gaussian`): the browser test checks it is bit-identical to
/// the native build's.
#[wasm_bindgen]
pub fn gaussian_noise(seed: f64, stream: f64, count: u32) -> Vec<f32> {
    crate::rng::gaussian(seed as u64, stream as u64, count as usize)
}
