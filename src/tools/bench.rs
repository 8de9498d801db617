//! `websd bench`: times each network of a full-size model (random weights made on the device, so
//! nothing is downloaded) and reports the achieved TFLOP/s. bench/reference.py prints the same
//! table for PyTorch + diffusers, so one run of each on the same machine gives the ratio.

use std::future::Future;
use std::pin::Pin;

use burn::prelude::*;
use burn::tensor::{Distribution, FloatDType};

use crate::error::{Error, Result};
use crate::model::clip::{ClipConfig, ClipTextModel};
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::taesd::{Taesd, TaesdConfig};
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoencoderKL;
use crate::pipeline::{Decoder, Request, SeededNoise, StableDiffusion};
use crate::scheduler::{SchedulerConfig, SchedulerKind};
use crate::weights::{RandomSource, WeightLoader};

/// The model whose networks are timed: one of the real architectures by name, or any converted
/// model's configs (its manifest) for a custom or tiny one.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub unet: UNetConfig,
    pub text: ClipConfig,
    pub vae: VaeConfig,
    pub taesd: TaesdConfig,
    /// The tokenizer's padding id (49407 for SD 1.x, 0 for SD 2.x).
    pub pad: i64,
    /// SD-Turbo's image row: 1 step without guidance (the others: 20 steps with CFG).
    pub turbo: bool,
    /// Operation counts are known for the real SD 1.5 / 2.x architectures only.
    unet_flops: Option<(f64, f64, f64)>,
    sd_decoders: bool,
}

impl Model {
    /// `sd15`, `sd21` or `sd-turbo`: the full-size architectures.
    pub fn parse(name: &str) -> Result<Self> {
        let (unet, text, pad, turbo, flops) = match name {
            "sd15" => (UNetConfig::sd15(), ClipConfig::sd1(), 49407, false, SD15_UNET),
            "sd21" => (UNetConfig::sd21(), ClipConfig::sd2(), 0, false, SD21_UNET),
            // SD-Turbo has SD 2.1's architecture.
            "sd-turbo" => (UNetConfig::sd21(), ClipConfig::sd2(), 0, true, SD21_UNET),
            other => return Err(Error::InvalidRequest(format!("unknown model {other:?}: sd15, sd21, sd-turbo or a converted model's folder"))),
        };
        Ok(Self { name: name.into(), unet, text, vae: VaeConfig::sd(), taesd: TaesdConfig::sd(), pad, turbo, unet_flops: Some(flops), sd_decoders: true })
    }

    /// The architecture of a converted model (its manifest.json); the weights stay random.
    pub fn from_manifest(manifest: &crate::weights::Manifest) -> Result<Self> {
        if manifest.components.contains_key("text_encoder_2") {
            return Err(Error::UnsupportedConfig("benchmarking an SDXL model (two text encoders) is not supported yet".into()));
        }
        let config = |name: &str| manifest.components.get(name).map(|v| v.to_string()).ok_or_else(|| Error::Other(format!("the manifest has no {name} config")));
        Ok(Self {
            name: manifest.name.clone(),
            unet: UNetConfig::from_json(&config("unet")?)?,
            text: ClipConfig::from_json(&config("text_encoder")?)?,
            vae: VaeConfig::from_json(&config("vae")?)?,
            taesd: match manifest.components.get("taesd") {
                Some(c) => TaesdConfig::from_json(&c.to_string())?,
                None => TaesdConfig::sd(),
            },
            pad: manifest.tokenizer.pad_token_id as i64,
            turbo: false,
            unet_flops: None,
            sd_decoders: false,
        })
    }

    /// One image's UNet pass at `size`², when known.
    fn unet_tflop(&self, size: usize) -> Option<f64> {
        self.unet_flops.map(|f| scaled(f, size))
    }

    fn decoder_tflop(&self, counts: (f64, f64, f64), size: usize) -> Option<f64> {
        self.sd_decoders.then(|| scaled(counts, size))
    }

    fn default_steps(&self) -> usize {
        if self.turbo { 1 } else { 20 }
    }
}

/// One measurable part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Part {
    Text,
    Unet,
    Vae,
    Taesd,
    Image,
    /// Loading the UNet with and without a LoRA merged in (natively: it waits on the device).
    Lora,
    /// SD 1.5's hot ops one by one at their real shapes (src/tools/ops.rs).
    Ops,
    /// The batch-2 UNet step again with burn's stock ops in every layer (our kernels off,
    /// `kernels::set_own_kernels`): the side-by-side of the two.
    UnetStock,
}

impl Part {
    /// `text,unet,vae,taesd[,image]`.
    pub fn parse_list(list: &str) -> Result<Vec<Self>> {
        list.split(',')
            .map(|p| match p.trim() {
                "text" => Ok(Self::Text),
                "unet" => Ok(Self::Unet),
                "vae" => Ok(Self::Vae),
                "taesd" => Ok(Self::Taesd),
                "image" => Ok(Self::Image),
                "lora" => Ok(Self::Lora),
                "ops" => Ok(Self::Ops),
                "unet-stock" => Ok(Self::UnetStock),
                other => Err(Error::InvalidRequest(format!("unknown bench part {other:?}: text, unet, vae, taesd, image, lora, ops, unet-stock"))),
            })
            .collect()
    }
}

pub struct Options {
    pub model: Model,
    pub dtype: FloatDType,
    /// Image side in pixels (a multiple of 8).
    pub size: usize,
    pub runs: usize,
    pub warmup: usize,
    pub parts: Vec<Part>,
    /// Steps of the full image row (default: the model's usual count).
    pub steps: Option<usize>,
    /// Only the ops rows whose name contains this text (`--match`).
    pub ops_matching: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            model: Model::parse("sd15").expect("a known model"),
            dtype: FloatDType::F32,
            size: 512,
            runs: 5,
            warmup: 1,
            parts: vec![Part::Text, Part::Unet, Part::Vae, Part::Taesd],
            steps: None,
            ops_matching: None,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub component: String,
    pub dtype: FloatDType,
    /// Every timed run, in milliseconds.
    pub times_ms: Vec<f64>,
    /// Work of one run, when we have a count for it.
    pub tflop: Option<f64>,
    /// Whether the last run's output held only finite numbers.
    pub finite: bool,
}

impl Row {
    pub fn median_ms(&self) -> f64 {
        let mut t = self.times_ms.clone();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            t[n / 2]
        } else {
            (t[n / 2 - 1] + t[n / 2]) / 2.0
        }
    }

    pub fn tflops(&self) -> Option<f64> {
        self.tflop.map(|w| w / (self.median_ms() / 1000.0))
    }
}

pub struct Report {
    pub model_name: String,
    pub size: usize,
    pub dtype: FloatDType,
    /// Adapter and backend (or "flex (CPU)").
    pub device: String,
    pub runs: usize,
    pub warmup: usize,
    pub rows: Vec<Row>,
    /// The most the device's allocator held after any timed run (None where the backend does not
    /// report it, e.g. flex).
    pub peak_reserved_bytes: Option<u64>,
}

// Operation counts (2 FLOP per multiply-add), from torch.utils.flop_counter on diffusers' models
// (`bench/reference.py --count-flops`, exact at 512², 256², 128²). Work is c + a·s² + b·s⁴ TFLOP
// with s = size/512: the time embedding and the cross-attention keys/values of the 77 text tokens
// are constant, convolutions and projections grow with the pixels, self-attention with their square.
const SD15_UNET: (f64, f64, f64) = (0.003008, 0.677771, 0.122495);
const SD21_UNET: (f64, f64, f64) = (0.003992, 0.677771, 0.122495);
const VAE_DECODER: (f64, f64, f64) = (0.0, 2.480159, 0.034360);
const TAESD_DECODER: (f64, f64, f64) = (0.0, 0.141350, 0.0);

fn scaled((c, a, b): (f64, f64, f64), size: usize) -> f64 {
    let s2 = (size as f64 / 512.0).powi(2);
    c + a * s2 + b * s2 * s2
}

/// The text encoder on one 77-token chunk, from its config: per layer the q/k/v/out and MLP
/// matrices per token plus the two attention products.
pub fn text_tflop(c: &ClipConfig) -> f64 {
    let (t, d, i) = (c.max_position_embeddings as f64, c.hidden_size as f64, c.intermediate_size as f64);
    let per_layer = t * (4.0 * d * d + 2.0 * d * i) + 2.0 * t * t * d;
    2.0 * per_layer * c.num_hidden_layers as f64 / 1e12
}

/// A prompt chunk: BOS, a few word ids, EOS, padding.
fn prompt_ids(pad: i64) -> Vec<i64> {
    let mut ids = vec![49406, 320, 1125, 539, 320, 2368, 530, 518, 5195, 49407];
    ids.resize(77, pad);
    ids
}

/// Milliseconds on a monotonic clock (performance.now() in the browser).
fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let performance = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
        let now = performance.as_ref().and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok()).and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match (performance, now) {
            (Some(p), Some(now)) => now.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
            _ => js_sys::Date::now(),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1000.0
    }
}

type Run<'a> = Pin<Box<dyn Future<Output = Result<Tensor<4>>> + 'a>>;

/// Runs `f` warmup + runs times; each run ends when the sum of its output has been read back
/// (the same wait for the device natively and in the browser). Returns the timed runs (ms) and
/// whether every output was finite.
async fn time<'a>(what: &str, device: &Device, warmup: usize, runs: usize, peak: &mut Option<u64>, mut f: impl FnMut() -> Run<'a>) -> Result<(Vec<f64>, bool)> {
    let mut times = Vec::with_capacity(runs);
    let mut finite = true;
    for i in 0..warmup + runs {
        let start = now_ms();
        let out = f().await?;
        // GPU failures (e.g. a buffer over the adapter's limits) surface when data is read.
        let sum = out.cast(FloatDType::F32).abs().sum().into_data_async().await.map_err(|e| Error::readback(what, e))?;
        // The data's bytes, not the awaited TensorData: natively the read-back ends (and the
        // device is waited for) only when the bytes are first touched. Stopping the clock before
        // that timed a 0.24 GFLOP conv at 0.5 ms on lavapipe (see PERFORMANCE.md).
        let values = sum.try_to_vec::<f32>().map_err(|e| Error::Other(format!("{what}: {e:?}")))?;
        let ms = now_ms() - start;
        finite &= values.iter().all(|v| v.is_finite());
        if i >= warmup {
            times.push(ms);
        }
        if let Some(u) = device.memory_pool_usage() {
            *peak = Some(peak.unwrap_or(0).max(u.bytes_reserved));
        }
    }
    Ok((times, finite))
}

fn ready<'a>(value: Result<Tensor<4>>) -> Run<'a> {
    Box::pin(std::future::ready(value))
}

/// Builds the model parts `opts` asks for on `device` and times them. The VAE runs in f32 as the
/// pipeline runs it; TAESD too. `on_row` hears of each row as soon as it is measured (the
/// browser's page shows them one by one).
pub async fn run(opts: &Options, device: &Device, device_name: &str, mut on_row: impl FnMut(&Row)) -> Result<Report> {
    if opts.size == 0 || !opts.size.is_multiple_of(8) {
        return Err(Error::InvalidRequest(format!("--size must be a positive multiple of 8, not {}", opts.size)));
    }
    if opts.runs == 0 {
        return Err(Error::InvalidRequest("--runs must be at least 1".into()));
    }
    let model = &opts.model;
    let latent = opts.size / 8;
    let pad = model.pad;
    let wants = |p: Part| opts.parts.contains(&p);
    let needs_all = wants(Part::Image);
    let mut rows = Vec::new();
    let mut peak = None;
    let (w, r) = (opts.warmup, opts.runs);
    let dt = opts.dtype;
    let mut push = |row: Row, rows: &mut Vec<Row>| {
        on_row(&row);
        rows.push(row);
    };

    let text = if wants(Part::Text) || needs_all {
        let mut src = RandomSource::new();
        Some(ClipTextModel::load(&model.text, &mut WeightLoader::new(&mut src, device).with_dtype(dt))?)
    } else {
        None
    };
    if let (true, Some(text)) = (wants(Part::Text), &text) {
        let ids = vec![prompt_ids(pad)];
        let (times, finite) = time("text encoder", device, w, r, &mut peak, || ready(text.forward(&ids, 1).map(|o| o.hidden.unsqueeze_dim(0)))).await?;
        push(Row { component: "text encoder".into(), dtype: dt, times_ms: times, tflop: Some(text_tflop(&model.text)), finite }, &mut rows);
    }

    let unet = if wants(Part::Unet) || wants(Part::UnetStock) || needs_all {
        let mut src = RandomSource::new();
        Some(UNet2DConditionModel::load(&model.unet, &mut WeightLoader::new(&mut src, device).with_dtype(dt))?)
    } else {
        None
    };
    // Before the model's own rows, so a run of both does not always time the stock ops last.
    if let (true, Some(unet)) = (wants(Part::UnetStock), &unet) {
        let context = Tensor::<3>::random([2, 77, model.text.hidden_size], Distribution::Normal(0.0, 1.0), device).cast(dt);
        let sample = Tensor::<4>::random([2, 4, latent, latent], Distribution::Normal(0.0, 1.0), device).cast(dt);
        let t = Tensor::<1>::full([2], 500.0, device);
        let name = "UNet step, batch 2 (CFG), burn's stock ops";
        crate::kernels::set_own_kernels(false);
        let timed = time(name, device, w, r, &mut peak, || ready(unet.forward(sample.clone(), t.clone(), context.clone(), None))).await;
        crate::kernels::set_own_kernels(true);
        let (times, finite) = timed?;
        push(Row { component: name.into(), dtype: dt, times_ms: times, tflop: model.unet_tflop(opts.size).map(|t| 2.0 * t), finite }, &mut rows);
    }
    if let (true, Some(unet)) = (wants(Part::Unet), &unet) {
        // Random conditioning, so the UNet rows run without the text encoder.
        let context = Tensor::<3>::random([1, 77, model.text.hidden_size], Distribution::Normal(0.0, 1.0), device).cast(dt);
        for batch in [2, 1] {
            let sample = Tensor::<4>::random([batch, 4, latent, latent], Distribution::Normal(0.0, 1.0), device).cast(dt);
            let ctx = context.clone().repeat_dim(0, batch);
            let t = Tensor::<1>::full([batch], 500.0, device);
            let name = if batch == 2 { "UNet step, batch 2 (CFG)" } else { "UNet step, batch 1" };
            let (times, finite) = time(name, device, w, r, &mut peak, || ready(unet.forward(sample.clone(), t.clone(), ctx.clone(), None))).await?;
            let tflop = model.unet_tflop(opts.size).map(|t| batch as f64 * t);
            push(Row { component: name.into(), dtype: dt, times_ms: times, tflop, finite }, &mut rows);
        }
    }

    let latents = Tensor::<4>::random([1, 4, latent, latent], Distribution::Normal(0.0, 1.0), device).cast(FloatDType::F32);
    let vae = if wants(Part::Vae) || needs_all {
        let mut src = RandomSource::new();
        Some(AutoencoderKL::load(&model.vae, &mut WeightLoader::new(&mut src, device).with_dtype(FloatDType::F32))?)
    } else {
        None
    };
    if let (true, Some(vae)) = (wants(Part::Vae), &vae) {
        let (times, finite) = time("VAE decode", device, w, r, &mut peak, || ready(Ok(vae.decode(latents.clone())))).await?;
        let tflop = model.decoder_tflop(VAE_DECODER, opts.size);
        push(Row { component: "VAE decode".into(), dtype: FloatDType::F32, times_ms: times, tflop, finite }, &mut rows);
    }
    if wants(Part::Taesd) {
        let mut src = RandomSource::new();
        let taesd = Taesd::load(&model.taesd, &mut WeightLoader::new(&mut src, device).with_dtype(FloatDType::F32))?;
        let (times, finite) = time("TAESD decode", device, w, r, &mut peak, || ready(Ok(taesd.decode(latents.clone())))).await?;
        let tflop = model.decoder_tflop(TAESD_DECODER, opts.size);
        push(Row { component: "TAESD decode".into(), dtype: FloatDType::F32, times_ms: times, tflop, finite }, &mut rows);
    }

    if wants(Part::Ops) {
        if !opts.size.is_multiple_of(64) {
            return Err(Error::InvalidRequest(format!("the ops need a size that is a multiple of 64 (the UNet's deepest level is size/64), not {}", opts.size)));
        }
        let matches = |case: &super::ops::OpCase| opts.ops_matching.as_ref().is_none_or(|m| case.name.contains(m.as_str()));
        for case in super::ops::sd15_cases(opts.size, dt, device).into_iter().filter(matches) {
            let (times, finite) = time(&case.name, device, w, r, &mut peak, || ready(Ok((case.run)()))).await?;
            push(Row { component: case.name.clone(), dtype: dt, times_ms: times, tflop: case.tflop, finite }, &mut rows);
        }
    }

    if wants(Part::Lora) {
        for row in lora_rows(model, dt, device, w, r)? {
            push(row, &mut rows);
        }
    }

    if let (true, Some(text_encoder), Some(unet), Some(vae)) = (needs_all, text, unet, vae) {
        let steps = opts.steps.unwrap_or(model.default_steps());
        let cfg = !model.turbo;
        let sd = StableDiffusion {
            text_encoder,
            text_encoder_2: None,
            unet,
            vae,
            taesd: None,
            scheduler_config: SchedulerConfig::default(),
            suggested: crate::suggested::Suggested { scheduler: SchedulerKind::Euler, steps, guidance_scale: if cfg { 7.5 } else { 0.0 }, width: opts.size, height: opts.size },
            configs: crate::pipeline::Configs { unet: model.unet.clone(), vae: model.vae.clone(), text_encoder: model.text.clone(), text_encoder_2: None },
            buffer_limit: None,
            pad_token: pad,
            pad_token_2: 0,
            force_zeros_for_empty_prompt: true,
            loras: vec![],
            device: device.clone(),
            dtype: dt,
        };
        let request = Request {
            prompt: vec![prompt_ids(pad)],
            negative_prompt: vec![],
            prompt_2: vec![],
            negative_prompt_2: vec![],
            prompt_weights: vec![],
            negative_weights: vec![],
            steps,
            guidance: if cfg { 7.5 } else { 0.0 },
            width: opts.size,
            height: opts.size,
            scheduler: SchedulerKind::Euler,
            batch: 1,
            clip_skip: 1,
            init_image: None,
            mask: None,
            strength: 1.0,
            decoder: Decoder::Vae,
        };
        let name = format!("txt2img image, {steps} Euler steps{}", if cfg { ", CFG" } else { "" });
        let (sd, request) = (&sd, &request);
        let (times, finite) = time(&name, device, w, r, &mut peak, || Box::pin(async move { sd.generate(request, &mut SeededNoise(1), |_, _, _| async { true }).await })).await?;
        let copies = if cfg { 2.0 } else { 1.0 };
        let work = match (model.unet_tflop(opts.size), model.decoder_tflop(VAE_DECODER, opts.size)) {
            (Some(unet), Some(vae)) => Some(copies * text_tflop(&model.text) + steps as f64 * copies * unet + vae),
            _ => None,
        };
        push(Row { component: name, dtype: dt, times_ms: times, tflop: work, finite }, &mut rows);
    }

    Ok(Report { model_name: model.name.clone(), size: opts.size, dtype: dt, device: device_name.to_string(), runs: r, warmup: w, rows, peak_reserved_bytes: peak })
}

/// The rank of the LoRA the bench merges (kohya's common default for SD 1.x character LoRAs).
#[cfg(not(target_arch = "wasm32"))]
const BENCH_LORA_RANK: usize = 16;

/// What a LoRA costs at load: the UNet built from random weights, alone and with a rank-16 LoRA
/// on every attention and feed-forward projection merged in (src/weights/lora.rs: one
/// `up·down` matmul per changed weight, in f32 on the device, before the cast to `dtype`). Each
/// run waits for the device, so the difference of the two rows is the merge.
#[cfg(not(target_arch = "wasm32"))]
fn lora_rows(model: &Model, dtype: FloatDType, device: &Device, warmup: usize, runs: usize) -> Result<Vec<Row>> {
    use crate::weights::lora::{Component, WithLoras};
    let mut shapes = RandomSource::new();
    UNet2DConditionModel::load(&model.unet, &mut WeightLoader::new(&mut shapes, device))?;
    let lora = bench_lora(&shapes, BENCH_LORA_RANK)?;
    let modules = lora.modules(Component::Unet);
    let loras = [(lora, 1.0)];
    let mut rows = Vec::new();
    for with_lora in [false, true] {
        let mut times = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let start = now_ms();
            let mut random = RandomSource::new();
            let unet = if with_lora {
                let mut source = WithLoras::new(&mut random, Component::Unet, &loras);
                let unet = UNet2DConditionModel::load(&model.unet, &mut WeightLoader::new(&mut source, device).with_dtype(dtype))?;
                source.finish()?;
                unet
            } else {
                UNet2DConditionModel::load(&model.unet, &mut WeightLoader::new(&mut random, device).with_dtype(dtype))?
            };
            device.sync().map_err(|e| Error::readback("the UNet's weights", e))?;
            drop(unet);
            if i >= warmup {
                times.push(now_ms() - start);
            }
        }
        let component = if with_lora { format!("UNet load + LoRA r{BENCH_LORA_RANK} ({modules} layers)") } else { "UNet load (random weights)".to_string() };
        rows.push(Row { component, dtype, times_ms: times, tflop: None, finite: true });
    }
    Ok(rows)
}

#[cfg(target_arch = "wasm32")]
fn lora_rows(_: &Model, _: FloatDType, _: &Device, _: usize, _: usize) -> Result<Vec<Row>> {
    Err(Error::InvalidRequest("the LoRA rows run natively only (websd bench --only lora): a load cannot wait on the device in the browser".into()))
}

/// A kohya-named LoRA of `rank` for every attention and feed-forward projection among the UNet
/// weights `shapes` lists, with small deterministic values.
#[cfg(not(target_arch = "wasm32"))]
fn bench_lora(shapes: &RandomSource, rank: usize) -> Result<crate::weights::lora::Lora> {
    use crate::weights::TensorSource;
    let projection = |n: &str| [".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight", ".ff.net.0.proj.weight", ".ff.net.2.weight"].iter().any(|s| n.ends_with(s));
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let values = |n: usize, seed: usize| -> Vec<u8> { (0..n).flat_map(|i| (((i * 2654435761 + seed) % 2001) as f32 / 2e5 - 0.005).to_le_bytes()).collect() };
    for name in shapes.names().into_iter().filter(|n| projection(n)) {
        let shape = shapes.shape(&name).unwrap_or_default();
        let (out, input) = (shape[0], shape[1..].iter().product::<usize>());
        let module = format!("lora_unet_{}", name.trim_end_matches(".weight").replace('.', "_"));
        tensors.push((format!("{module}.lora_down.weight"), vec![rank, input], values(rank * input, tensors.len())));
        tensors.push((format!("{module}.lora_up.weight"), vec![out, rank], values(out * rank, tensors.len())));
        tensors.push((format!("{module}.alpha"), vec![], (rank as f32).to_le_bytes().to_vec()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, bytes)| Ok((n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).map_err(|e| Error::Other(e.to_string()))?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| Error::Other(e.to_string()))?;
    crate::weights::lora::Lora::from_bytes("bench", bytes)
}

pub fn dtype_name(d: FloatDType) -> &'static str {
    match d {
        FloatDType::F16 => "f16",
        FloatDType::BF16 => "bf16",
        FloatDType::F64 => "f64",
        _ => "f32",
    }
}

/// The report as a text table (the same columns bench/reference.py prints).
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "websd bench: model {} at {}×{}, dtype {}, device {}, median of {} runs after {} warm-up\n",
        r.model_name,
        r.size,
        r.size,
        dtype_name(r.dtype),
        r.device,
        r.runs,
        r.warmup
    );
    let width = r.rows.iter().map(|row| row.component.chars().count()).max().unwrap_or(0).max(34);
    s += &format!("{:<width$} {:>5} {:>12} {:>9} {:>9} {:>7}\n", "component", "dtype", "median ms", "TFLOP", "TFLOP/s", "finite");
    for row in &r.rows {
        let tflop = row.tflop.map_or("—".to_string(), |t| format!("{t:.4}"));
        let tflops = row.tflops().map_or("—".to_string(), |t| format!("{t:.4}"));
        s += &format!("{:<width$} {:>5} {:>12.1} {:>9} {:>9} {:>7}\n", row.component, dtype_name(row.dtype), row.median_ms(), tflop, tflops, if row.finite { "yes" } else { "NO" });
    }
    s += &match r.peak_reserved_bytes {
        Some(b) => format!("peak memory reserved by the allocator: {:.1} MiB\n", b as f64 / (1 << 20) as f64),
        None => "peak memory: — (the backend does not report its pool)\n".to_string(),
    };
    s
}
