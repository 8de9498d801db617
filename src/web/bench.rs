//! bench.html: `websd bench` on the worker's GPU, and the check with real weights (TAEF2).

use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{device, gpu, invalid_request, set};
use crate::weights::Manifest;

fn bench_row(row: &crate::tools::bench::Row) -> Object {
    let o = Object::new();
    set(&o, "component", row.component.as_str());
    set(&o, "dtype", crate::tools::bench::dtype_name(row.dtype));
    set(&o, "median_ms", row.median_ms());
    set(&o, "times_ms", row.times_ms.iter().map(|&t| JsValue::from(t)).collect::<js_sys::Array>());
    set(&o, "tflop", row.tflop.map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "tflops", row.tflops().map(JsValue::from).unwrap_or(JsValue::NULL));
    set(&o, "finite", row.finite);
    o
}

/// `websd bench` on the worker's GPU. `options`: {model: 'sd15'|'sd21'|'sd-turbo' | manifest JSON
/// text of a converted model (its architecture, random weights), dtype: 'f32'|'f16', size, runs,
/// warmup, parts: 'text,unet,vae,taesd[,image]', steps?, match?: only the ops rows whose name
/// contains it}. `on_row(row)` hears each row as it is
/// measured; resolves with {table, rows, peak_bytes, device}.
#[wasm_bindgen]
pub async fn run_bench(options: JsValue, on_row: Function) -> Result<JsValue, JsValue> {
    use crate::tools::bench::{Model, Options, Part};
    let (device, info) = gpu()?;
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
        ops_matching: get("match").and_then(|v| v.as_string()),
    };
    let name = format!("{} ({}, {}, shader-f16 {})", info.adapter, info.backend, info.device_type, info.shader_f16);
    let report = crate::tools::bench::run(&opts, &device, &name, |row| {
        let _ = on_row.call1(&JsValue::NULL, &bench_row(row));
    })
    .await?;
    let out = Object::new();
    set(&out, "table", crate::tools::bench::table(&report));
    set(&out, "rows", report.rows.iter().map(|r| JsValue::from(bench_row(r))).collect::<js_sys::Array>());
    set(&out, "peak_bytes", report.peak_reserved_bytes.map(|b| JsValue::from(b as f64)).unwrap_or(JsValue::NULL));
    set(&out, "device", name);
    Ok(out.into())
}

// ---------------------------------------------------------------- real-weights check (bench.html)

/// The GPU check with real weights: a TAESD-family autoencoder (`config`: its diffusers
/// config.json; `weights`: its safetensors bytes) round-trips `photo` (PNG bytes) at `size`².
/// Resolves with {psnr_db, random_psnr_db, pass_db (TAEF2's bound at this size on the astronaut
/// photo, where there is one), latent_shape, latent_mean, latent_std, input,
/// round_trip, random}, each image as {width, height, png}. See src/tools/roundtrip.rs.
#[wasm_bindgen]
pub async fn taesd_round_trip(config: String, weights: Vec<u8>, photo: Vec<u8>, size: usize, seed: u32) -> Result<JsValue, JsValue> {
    use crate::model::taesd::{Taesd, TaesdConfig};
    use crate::weights::{SafetensorsSource, WeightLoader};
    let device = device()?;
    let config = TaesdConfig::from_json(&config)?;
    let mut source = SafetensorsSource::from_bytes("the autoencoder's weights", weights)?;
    let taesd = Taesd::load(&config, &mut WeightLoader::new(&mut source, &device))?;
    let photo = crate::image::decode_png("the photo", &photo)?;
    let r = crate::tools::roundtrip::taesd_round_trip(&taesd, &photo, size, seed as u64, &device).await?;
    let out = Object::new();
    set(&out, "psnr_db", r.psnr_db);
    set(&out, "random_psnr_db", r.random_psnr_db);
    // The bound is TAEF2's on the astronaut photo, which is what bench.html sends.
    if let Some(bound) = crate::tools::roundtrip::taef2_passing_psnr_db(size) {
        set(&out, "pass_db", bound);
    }
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
