//! Models and generation: loading a stored model, its suggested settings, generating with
//! previews and cancel, and the prompt's token count.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Uint8Array, Uint8ClampedArray};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{gpu, invalid_request, js_error, set};
use crate::image::RgbaImage;
use crate::pipeline::StableDiffusion;
use crate::pipeline::generate::Settings;
use crate::weights::Manifest;
use crate::weights::lora::{Component, Lora};

thread_local! {
    /// The loaded model and its name.
    static MODEL: RefCell<Option<Loaded>> = const { RefCell::new(None) };
}

/// The loaded model and its name.
#[derive(Clone)]
struct Loaded {
    sd: Rc<StableDiffusion>,
    name: String,
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
/// GPU and dropped one at a time. Uses f16 when the adapter has shader-f16. `loras`:
/// `[{name, bytes: Uint8Array, weight}]`, merged into the weights as they load (src/weights/lora.rs).
#[wasm_bindgen]
pub async fn load_model(manifest_json: String, get_shard: Function, on_progress: Function, loras: js_sys::Array) -> Result<JsValue, JsValue> {
    let loras = loras
        .iter()
        .map(|l| {
            let field = |k: &str| js_sys::Reflect::get(&l, &k.into()).unwrap_or(JsValue::UNDEFINED);
            let name = field("name").as_string().ok_or_else(|| invalid_request("a LoRA needs a name"))?;
            let weight = field("weight").as_f64().ok_or_else(|| invalid_request(format!("LoRA {name} needs a weight")))? as f32;
            Ok((Lora::from_bytes(&name, Uint8Array::new(&field("bytes")).to_vec())?, weight))
        })
        .collect::<Result<Vec<_>, JsValue>>()?;
    let (device, gpu) = gpu()?;
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
    let mut sd = StableDiffusion::from_prepared_with_loras(&manifest, prepared, &device, dtype, &loras)?;
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

/// The largest manifest Rust reads (`weights::manifest::MAX_MANIFEST_BYTES`): the page's store
/// refuses a larger download before reading it.
#[wasm_bindgen]
pub fn max_manifest_bytes() -> f64 {
    crate::weights::manifest::MAX_MANIFEST_BYTES as f64
}

/// Generates images for `params` (`pipeline::generate::Settings`: img2img's `init_image` is
/// `{width, height, pixels: Uint8Array}`). `on_step(step, total, preview | null)` is awaited after each step;
/// resolving to false stops the run: the one way to cancel (the worker answers false once it has
/// heard "cancel", which awaiting lets in). Resolves to an array of
/// `{width, height, pixels, png, seed, parameters}`.
#[wasm_bindgen]
pub async fn generate(params: JsValue, on_step: Function) -> Result<JsValue, JsValue> {
    let Loaded { sd, name } = MODEL.with(|m| m.borrow().clone()).ok_or_else(|| invalid_request("no model is loaded"))?;
    let settings: Settings = serde_wasm_bindgen::from_value(params).map_err(|e| invalid_request(format!("bad settings: {e}")))?;
    let want_preview = settings.preview;
    let sd_for_preview = sd.clone();
    // A preview that cannot be read back means the GPU is gone: stop at once and say so.
    let lost: Rc<RefCell<Option<crate::Error>>> = Rc::default();
    let lost_in_step = lost.clone();
    let result = sd
        .generate_images(&settings, &name, |done, total, denoised| {
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
                match answer {
                    Ok(v) => JsFuture::from(Promise::resolve(&v)).await.map(|v| v.as_bool() != Some(false)).unwrap_or(false),
                    Err(_) => false,
                }
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

/// The samplers, as [{name, label}]: index.html's list must be these (a browser test checks it),
/// after its "Model default" (`default`).
#[wasm_bindgen]
pub fn samplers() -> js_sys::Array {
    crate::scheduler::SchedulerKind::ALL
        .iter()
        .map(|k| {
            let o = Object::new();
            set(&o, "name", k.name());
            set(&o, "label", k.label());
            JsValue::from(o)
        })
        .collect()
}

/// The `<lora:name:weight>` tags of a prompt, as `[{name, weight}]` (which LoRAs the worker must
/// load the model with); a tag that does not parse fails as `InvalidRequest`, naming it.
#[wasm_bindgen]
pub fn prompt_loras(prompt: &str) -> Result<JsValue, JsValue> {
    let (_, tags) = crate::prompt::lora_tags(prompt).map_err(invalid_request)?;
    let out = js_sys::Array::new();
    for tag in tags {
        let o = Object::new();
        set(&o, "name", tag.name.as_str());
        // The f32's shortest decimal (0.7, not 0.699999988), as the prompt wrote it.
        set(&o, "weight", tag.weight.to_string().parse::<f64>().unwrap_or(tag.weight as f64));
        out.push(&o);
    }
    Ok(out.into())
}

/// What a LoRA file changes, `{unet, text_encoder}` (modules of each), or `BadLora` /
/// `BadWeights` naming what is wrong: the page checks a file before it stores it.
#[wasm_bindgen]
pub fn lora_info(name: &str, bytes: &[u8]) -> Result<JsValue, JsValue> {
    let lora = Lora::from_bytes(name, bytes.to_vec())?;
    let o = Object::new();
    set(&o, "unet", lora.modules(Component::Unet) as u32);
    set(&o, "text_encoder", lora.modules(Component::TextEncoder) as u32);
    Ok(o.into())
}

/// Each number a generation takes, as [{name, default, min, max, step}] (`Field::ALL`, by
/// `Settings` field name): the page's form takes its defaults and ranges from here.
#[wasm_bindgen]
pub fn setting_fields() -> Result<JsValue, JsValue> {
    serde_wasm_bindgen::to_value(&crate::pipeline::generate::Field::ALL).map_err(|e| JsValue::from(e.to_string()))
}

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
