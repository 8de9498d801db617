//! The wasm API the Web Worker calls (www/worker.js). The worker owns the GPU; the page only
//! talks to the worker with messages.

use std::cell::RefCell;

use burn::prelude::*;
use wasm_bindgen::prelude::*;

use crate::gpu::{GpuInfo, open_gpu_raw};

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
        let message = js_sys::Object::new();
        set(&message, "type", "crashed");
        set(&message, "message", info.to_string());
        if let Ok(post) = Reflect::get(&js_sys::global(), &"postMessage".into()).and_then(|f| f.dyn_into::<Function>()) {
            let _ = post.call1(&JsValue::NULL, &message);
        }
    }));
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
    GPU.with(|gpu| gpu.borrow().as_ref().map(|(d, _, _)| d.clone())).ok_or_else(|| js_error("the GPU is not open yet: call init_gpu first"))
}

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
    Ok(crate::probe::probe_async(&device()?).await?)
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
    static MODEL: RefCell<Option<Loaded>> = const { RefCell::new(None) };
    /// Set by `cancel`, checked between steps.
    static CANCEL: Cell<bool> = const { Cell::new(false) };
}

/// The loaded model and its name.
#[derive(Clone)]
struct Loaded {
    sd: Rc<StableDiffusion>,
    name: String,
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
    let gpu = GPU.with(|g| g.borrow().as_ref().map(|(_, i, _)| i.clone())).ok_or_else(|| js_error("the GPU is not open yet: call init_gpu first"))?;
    let shader_f16 = gpu.shader_f16;
    let manifest = Manifest::parse(manifest_json.as_bytes())?;
    MODEL.with(|m| *m.borrow_mut() = None); // free the previous model's GPU memory first
    let prepared = crate::weights::prepared::prepare(
        &manifest,
        &device,
        |_, entry| {
            let get_shard = get_shard.clone();
            async move {
                let promise =
                    get_shard.call1(&JsValue::NULL, &JsValue::from_str(&entry.sha256)).map_err(|e| crate::Error::Other(format!("reading shard {}: {e:?}", entry.file)))?;
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
    .await?;
    let dtype = if shader_f16 { burn::tensor::FloatDType::F16 } else { burn::tensor::FloatDType::F32 };
    let mut sd = StableDiffusion::from_prepared(&manifest, prepared, &device, dtype)?;
    sd.buffer_limit = Some(gpu.buffer_limit());
    let info = Object::new();
    set(&info, "name", manifest.name.as_str());
    set(&info, "dtype", if shader_f16 { "f16" } else { "f32" });
    set(&info, "taesd", sd.taesd.is_some());
    set(&info, "suggested", serde_wasm_bindgen::to_value(&sd.suggested).map_err(js_error)?);
    MODEL.with(|m| *m.borrow_mut() = Some(Loaded { sd: Rc::new(sd), name: manifest.name.clone() }));
    Ok(info.into())
}

/// What a converted model suggests running with ({scheduler, steps, guidance_scale, width,
/// height}; src/suggested.rs), from its manifest alone: the page fills its form with it when the
/// model is chosen, before anything is loaded. Fails as `load_model` would on a manifest Rust refuses.
#[wasm_bindgen]
pub fn suggested_settings(manifest_json: &str) -> Result<JsValue, JsValue> {
    let manifest = Manifest::parse(manifest_json.as_bytes())?;
    let suggested = crate::suggested::Suggested::for_manifest(&manifest)?;
    serde_wasm_bindgen::to_value(&suggested).map_err(js_error)
}

/// Generates images for `params` (see `generate::Settings`; plus `preview` and `init_image:
/// {width, height, pixels}`). `on_step(step, total, preview | null)` is awaited after each step;
/// resolving to false (or `cancel()`) stops the run. Resolves to an array of
/// `{width, height, pixels, png, seed, parameters}`.
#[wasm_bindgen]
pub async fn generate(params: JsValue, on_step: Function) -> Result<JsValue, JsValue> {
    let Loaded { sd, name } = MODEL.with(|m| m.borrow().clone()).ok_or_else(|| invalid_request("no model is loaded"))?;
    let settings: Settings = serde_wasm_bindgen::from_value(params.clone()).map_err(|e| invalid_request(format!("bad settings: {e}")))?;
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
    // A preview that cannot be read back means the GPU is gone: stop at once and say so.
    let lost: Rc<RefCell<Option<crate::Error>>> = Rc::default();
    let lost_in_step = lost.clone();
    let result = sd
        .generate_images(&settings, init_image.as_ref(), &name, |done, total, denoised| {
            let on_step = on_step.clone();
            let sd = sd_for_preview.clone();
            let lost = lost_in_step.clone();
            async move {
                let preview = if want_preview {
                    match sd.preview(denoised).await {
                        Ok(Some(img)) => JsValue::from(rgba_object(&img)),
                        Err(e @ crate::Error::GpuLost(_)) => {
                            *lost.borrow_mut() = Some(e);
                            return false;
                        }
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
        .await;
    let images = match (result, lost.borrow_mut().take()) {
        (Err(crate::Error::Cancelled), Some(lost)) => return Err(lost.into()),
        (result, _) => result?,
    };
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
    let length = crate::tokenizer::PromptLength::of(text)?;
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

// ---------------------------------------------------------------- benchmark (bench.html)

fn bench_row(row: &crate::bench::Row) -> Object {
    let o = Object::new();
    set(&o, "component", row.component.as_str());
    set(&o, "dtype", crate::bench::dtype_name(row.dtype));
    set(&o, "median_ms", row.median_ms());
    set(&o, "times_ms", row.times_ms.iter().map(|&t| JsValue::from(t)).collect::<js_sys::Array>());
    set(&o, "tflop", row.tflop.map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "tflops", row.tflops().map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "finite", row.finite);
    o
}

/// `websd bench` on the worker's GPU. `options`: {model: 'sd15'|'sd21'|'sd-turbo' | manifest JSON
/// text of a converted model (its architecture, random weights), dtype: 'f32'|'f16', size, runs,
/// warmup, parts: 'text,unet,vae,taesd[,image]', steps?}. `on_row(row)` hears each row as it is
/// measured; resolves with {table, rows, peak_bytes, device}.
#[wasm_bindgen]
pub async fn run_bench(options: JsValue, on_row: Function) -> Result<JsValue, JsValue> {
    use crate::bench::{Model, Options, Part};
    let (device, info) = GPU.with(|g| g.borrow().as_ref().map(|(d, i, _)| (d.clone(), i.clone()))).ok_or_else(|| js_error("the GPU is not open yet: call init_gpu first"))?;
    let get = |k: &str| Reflect::get(&options, &k.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let text = |k: &str, default: &str| get(k).and_then(|v| v.as_string()).unwrap_or_else(|| default.to_string());
    let number = |k: &str, default: f64| get(k).and_then(|v| v.as_f64()).unwrap_or(default) as usize;
    let model_arg = text("model", "sd15");
    let model = if model_arg.trim_start().starts_with('{') { Model::from_manifest(&Manifest::parse(model_arg.as_bytes())?)? } else { Model::parse(&model_arg)? };
    let dtype = match text("dtype", "f32").as_str() {
        "f16" if info.shader_f16 => burn::tensor::FloatDType::F16,
        "f16" => return Err(invalid_request("this GPU has no shader-f16: benchmark f32")),
        "f32" => burn::tensor::FloatDType::F32,
        other => return Err(invalid_request(format!("unknown dtype {other:?}: f32 or f16"))),
    };
    let opts = Options {
        model,
        dtype,
        size: number("size", 512.0),
        runs: number("runs", 5.0),
        warmup: number("warmup", 1.0),
        parts: Part::parse_list(&text("parts", "text,unet,vae,taesd"))?,
        steps: get("steps").and_then(|v| v.as_f64()).map(|s| s as usize),
    };
    let name = format!("{} ({}, {}, shader-f16 {})", info.adapter, info.backend, info.device_type, info.shader_f16);
    let report = crate::bench::run(&opts, &device, &name, |row| {
        let _ = on_row.call1(&JsValue::NULL, &bench_row(row));
    })
    .await?;
    let out = Object::new();
    set(&out, "table", crate::bench::table(&report));
    set(&out, "rows", report.rows.iter().map(|r| JsValue::from(bench_row(r))).collect::<js_sys::Array>());
    set(&out, "peak_bytes", report.peak_reserved_bytes.map(|b| JsValue::from(b as f64)).unwrap_or(JsValue::NULL));
    set(&out, "device", name);
    Ok(out.into())
}

// ---------------------------------------------------------------- real-weights check (bench.html)

/// The GPU check with real weights: a TAESD-family autoencoder (`config`: its diffusers
/// config.json; `weights`: its safetensors bytes) round-trips `photo` (PNG bytes) at `size`².
/// Resolves with {psnr_db, random_psnr_db, latent_shape, latent_mean, latent_std, input,
/// round_trip, random}, each image as {width, height, png}. See src/roundtrip.rs.
#[wasm_bindgen]
pub async fn taesd_round_trip(config: String, weights: Vec<u8>, photo: Vec<u8>, size: usize, seed: u32) -> Result<JsValue, JsValue> {
    use crate::model::taesd::{Taesd, TaesdConfig};
    use crate::weights::{SafetensorsSource, WeightLoader};
    let device = device()?;
    let config = TaesdConfig::from_json(&config)?;
    let mut source = SafetensorsSource::from_bytes("the autoencoder's weights", weights)?;
    let taesd = Taesd::load(&config, &mut WeightLoader::new(&mut source, &device))?;
    let photo = crate::image::decode_png("the photo", &photo)?;
    let r = crate::roundtrip::taesd_round_trip(&taesd, &photo, size, seed as u64, &device).await?;
    let out = Object::new();
    set(&out, "psnr_db", r.psnr_db);
    set(&out, "random_psnr_db", r.random_psnr_db);
    set(&out, "latent_shape", r.latent_shape.iter().map(|&d| JsValue::from(d as u32)).collect::<js_sys::Array>());
    set(&out, "latent_mean", r.latent_mean);
    set(&out, "latent_std", r.latent_std);
    for (key, image) in [("input", &r.input), ("round_trip", &r.round_trip), ("random", &r.random)] {
        let o = Object::new();
        set(&o, "width", image.width as u32);
        set(&o, "height", image.height as u32);
        set(&o, "png", Uint8Array::from(crate::image::encode_png(image, key)?.as_slice()));
        set(&out, key, o);
    }
    Ok(out.into())
}
