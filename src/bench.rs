//! `websd bench`: times each network of a full-size model (random weights made on the device, so
//! nothing is downloaded) and reports the achieved TFLOP/s. bench/reference.py prints the same
//! table for PyTorch + diffusers, so one run of each on the same machine gives the ratio.

use std::time::Instant;

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

/// Which full-size model to build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    Sd15,
    Sd21,
    SdTurbo,
}

impl Model {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "sd15" => Ok(Self::Sd15),
            "sd21" => Ok(Self::Sd21),
            "sd-turbo" => Ok(Self::SdTurbo),
            other => Err(Error::Other(format!("unknown model {other:?}: sd15, sd21 or sd-turbo"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sd15 => "sd15",
            Self::Sd21 => "sd21",
            Self::SdTurbo => "sd-turbo",
        }
    }

    fn configs(self) -> (UNetConfig, ClipConfig) {
        match self {
            Self::Sd15 => (UNetConfig::sd15(), ClipConfig::sd1()),
            Self::Sd21 | Self::SdTurbo => (UNetConfig::sd21(), ClipConfig::sd2()),
        }
    }

    /// The full image row: SD-Turbo runs 1 step without guidance, the others 20 Euler steps
    /// with classifier-free guidance.
    fn default_steps(self) -> usize {
        if self == Self::SdTurbo { 1 } else { 20 }
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
                other => Err(Error::Other(format!("unknown bench part {other:?}: text, unet, vae, taesd, image"))),
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
}

impl Default for Options {
    fn default() -> Self {
        Self { model: Model::Sd15, dtype: FloatDType::F32, size: 512, runs: 5, warmup: 1, parts: vec![Part::Text, Part::Unet, Part::Vae, Part::Taesd], steps: None }
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
    pub model: Model,
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

/// One image's UNet pass.
fn unet_tflop(model: Model, size: usize) -> f64 {
    scaled(if model == Model::Sd15 { SD15_UNET } else { SD21_UNET }, size)
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

/// Runs `f` warmup + runs times, waiting for the device after each; returns the timed runs (ms)
/// and whether the last output is finite.
fn time(what: &str, device: &Device, warmup: usize, runs: usize, peak: &mut Option<u64>, mut f: impl FnMut() -> Result<Tensor<4>>) -> Result<(Vec<f64>, bool)> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for i in 0..warmup + runs {
        let start = Instant::now();
        let out = f()?;
        device.sync().map_err(|e| Error::Other(format!("{what}: {e:?}")))?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if i >= warmup {
            times.push(ms);
        }
        if let Some(u) = device.memory_pool_usage() {
            *peak = Some(peak.unwrap_or(0).max(u.bytes_reserved));
        }
        last = Some(out);
    }
    let finite = match last {
        Some(out) => {
            // GPU failures (e.g. a buffer over the adapter's limits) surface when data is read.
            let sum: f32 = out.cast(FloatDType::F32).abs().sum().try_into_scalar().map_err(|e| Error::Other(format!("{what}: {e:?}")))?;
            sum.is_finite()
        }
        None => false,
    };
    Ok((times, finite))
}

/// Builds the model parts `opts` asks for on `device` and times them. The device must already
/// be configured for `opts.dtype` (see `Device::configure`). The VAE runs in f32 as the
/// pipeline runs it; TAESD too.
pub fn run(opts: &Options, device: &Device, device_name: &str) -> Result<Report> {
    if opts.size == 0 || opts.size % 8 != 0 {
        return Err(Error::Other(format!("--size must be a positive multiple of 8, not {}", opts.size)));
    }
    if opts.runs == 0 {
        return Err(Error::Other("--runs must be at least 1".into()));
    }
    let (unet_config, clip_config) = opts.model.configs();
    let latent = opts.size / 8;
    let pad = if opts.model == Model::Sd15 { 49407 } else { 0 };
    let wants = |p: Part| opts.parts.contains(&p);
    let needs_all = wants(Part::Image);
    let mut rows = Vec::new();
    let mut peak = None;
    let (w, r) = (opts.warmup, opts.runs);
    let dt = opts.dtype;

    let text = if wants(Part::Text) || needs_all {
        let mut src = RandomSource::new();
        Some(ClipTextModel::load(&clip_config, &mut WeightLoader::new(&mut src, device).with_dtype(dt))?)
    } else {
        None
    };
    if let (true, Some(text)) = (wants(Part::Text), &text) {
        let ids = vec![prompt_ids(pad)];
        let (times, finite) = time("text encoder", device, w, r, &mut peak, || Ok(text.forward(&ids, 1)?.hidden.unsqueeze_dim(0)))?;
        rows.push(Row { component: "text encoder".into(), dtype: dt, times_ms: times, tflop: Some(text_tflop(&clip_config)), finite });
    }

    let unet = if wants(Part::Unet) || needs_all {
        let mut src = RandomSource::new();
        Some(UNet2DConditionModel::load(&unet_config, &mut WeightLoader::new(&mut src, device).with_dtype(dt))?)
    } else {
        None
    };
    if let (true, Some(unet)) = (wants(Part::Unet), &unet) {
        // Random conditioning, so the UNet rows run without the text encoder.
        let context = Tensor::<3>::random([1, 77, clip_config.hidden_size], Distribution::Normal(0.0, 1.0), device).cast(dt);
        for batch in [2, 1] {
            let sample = Tensor::<4>::random([batch, 4, latent, latent], Distribution::Normal(0.0, 1.0), device).cast(dt);
            let ctx = context.clone().repeat_dim(0, batch);
            let t = Tensor::<1>::full([batch], 500.0, device);
            let name = if batch == 2 { "UNet step, batch 2 (CFG)" } else { "UNet step, batch 1" };
            let (times, finite) = time(name, device, w, r, &mut peak, || unet.forward(sample.clone(), t.clone(), ctx.clone(), None))?;
            rows.push(Row { component: name.into(), dtype: dt, times_ms: times, tflop: Some(batch as f64 * unet_tflop(opts.model, opts.size)), finite });
        }
    }

    let latents = Tensor::<4>::random([1, 4, latent, latent], Distribution::Normal(0.0, 1.0), device).cast(FloatDType::F32);
    let vae = if wants(Part::Vae) || needs_all {
        let mut src = RandomSource::new();
        Some(AutoencoderKL::load(&VaeConfig::sd(), &mut WeightLoader::new(&mut src, device).with_dtype(FloatDType::F32))?)
    } else {
        None
    };
    if let (true, Some(vae)) = (wants(Part::Vae), &vae) {
        let (times, finite) = time("VAE decode", device, w, r, &mut peak, || Ok(vae.decode(latents.clone())))?;
        rows.push(Row { component: "VAE decode".into(), dtype: FloatDType::F32, times_ms: times, tflop: Some(scaled(VAE_DECODER, opts.size)), finite });
    }
    if wants(Part::Taesd) {
        let mut src = RandomSource::new();
        let taesd = Taesd::load(&TaesdConfig::sd(), &mut WeightLoader::new(&mut src, device).with_dtype(FloatDType::F32))?;
        let (times, finite) = time("TAESD decode", device, w, r, &mut peak, || Ok(taesd.decode(latents.clone())))?;
        rows.push(Row { component: "TAESD decode".into(), dtype: FloatDType::F32, times_ms: times, tflop: Some(scaled(TAESD_DECODER, opts.size)), finite });
    }

    if let (true, Some(text_encoder), Some(unet), Some(vae)) = (needs_all, text, unet, vae) {
        let steps = opts.steps.unwrap_or(opts.model.default_steps());
        let cfg = opts.model != Model::SdTurbo;
        let sd = StableDiffusion {
            text_encoder,
            unet,
            vae,
            taesd: None,
            scheduler_config: SchedulerConfig::default(),
            default_scheduler: SchedulerKind::Euler,
            pad_token: pad,
            device: device.clone(),
            dtype: dt,
        };
        let request = Request {
            prompt: vec![prompt_ids(pad)],
            negative_prompt: vec![],
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
            strength: 1.0,
            decoder: Decoder::Vae,
        };
        let name = format!("txt2img image, {steps} Euler steps{}", if cfg { ", CFG" } else { "" });
        let (times, finite) = time(&name, device, w, r, &mut peak, || pollster::block_on(sd.generate(&request, &mut SeededNoise(1), |_, _, _| async { true })))?;
        let copies = if cfg { 2.0 } else { 1.0 };
        let work = copies * text_tflop(&clip_config) + steps as f64 * copies * unet_tflop(opts.model, opts.size) + scaled(VAE_DECODER, opts.size);
        rows.push(Row { component: name, dtype: dt, times_ms: times, tflop: Some(work), finite });
    }

    Ok(Report { model: opts.model, size: opts.size, dtype: dt, device: device_name.to_string(), runs: r, warmup: w, rows, peak_reserved_bytes: peak })
}

fn dtype_name(d: FloatDType) -> &'static str {
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
        r.model.name(),
        r.size,
        r.size,
        dtype_name(r.dtype),
        r.device,
        r.runs,
        r.warmup
    );
    s += &format!("{:<34} {:>5} {:>12} {:>9} {:>9} {:>7}\n", "component", "dtype", "median ms", "TFLOP", "TFLOP/s", "finite");
    for row in &r.rows {
        let tflop = row.tflop.map_or("—".to_string(), |t| format!("{t:.4}"));
        let tflops = row.tflops().map_or("—".to_string(), |t| format!("{t:.4}"));
        s += &format!("{:<34} {:>5} {:>12.1} {:>9} {:>9} {:>7}\n", row.component, dtype_name(row.dtype), row.median_ms(), tflop, tflops, if row.finite { "yes" } else { "NO" });
    }
    s += &match r.peak_reserved_bytes {
        Some(b) => format!("peak memory reserved by the allocator: {:.1} MiB\n", b as f64 / (1 << 20) as f64),
        None => "peak memory: — (the backend does not report its pool)\n".to_string(),
    };
    s
}
