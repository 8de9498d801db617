//! Text-to-image, image-to-image and inpainting: text conditioning, the sampler loop with classifier-free
//! guidance, progress and cancel between steps, and decoding. Async so that the browser worker can
//! yield between steps (to hear "cancel" and to show previews); native callers block on it.
//! load.rs builds a model from a diffusers folder or a converted one; generate.rs takes the
//! user's settings in and gives checked images and PNGs out.

pub mod generate;
mod load;

use std::future::Future;

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::error::{Error, Result};
use crate::model::clip::{ClipConfig, ClipTextModel};
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::taesd::Taesd;
use crate::model::unet::{TextTime, UNet2DConditionModel};
use crate::model::vae::AutoencoderKL;
use crate::scheduler::{SchedulerConfig, SchedulerKind};

/// The networks of one model, on one device.
pub struct StableDiffusion {
    pub text_encoder: ClipTextModel,
    /// SDXL's second text encoder (OpenCLIP bigG with its projection); None for SD 1.x/2.x.
    pub text_encoder_2: Option<ClipTextModel>,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    pub taesd: Option<Taesd>,
    pub scheduler_config: SchedulerConfig,
    /// The settings this model is meant to run with: the sampler its scheduler_config.json names,
    /// steps, guidance, size.
    pub suggested: crate::suggested::Suggested,
    /// The configs the networks were built from: they size a generation's buffers.
    pub configs: Configs,
    /// The largest buffer the device allows (its storage-binding limit; WebGPU's default is
    /// 128 MiB), or None (the CPU): a request whose buffers would not fit is refused before
    /// anything runs, with what to change.
    pub buffer_limit: Option<u64>,
    /// Padding token: 49407 for SD 1.x's tokenizer, 0 for SD 2.x's.
    pub pad_token: i64,
    /// SDXL: the second tokenizer's padding token (0: SDXL's second tokenizer pads with `!`).
    pub pad_token_2: i64,
    /// SDXL: a negative prompt left out gives all-zero unconditional embeddings instead of the
    /// encoded empty prompt (model_index.json's `force_zeros_for_empty_prompt`, diffusers'
    /// default true).
    pub force_zeros_for_empty_prompt: bool,
    /// The LoRAs merged into the weights, with their weights: a prompt's `<lora:…>` tags must
    /// name exactly these (a different set needs a reload).
    pub loras: Vec<crate::prompt::LoraTag>,
    pub device: Device,
    /// The UNet's and text encoder's parameter dtype (f16 where the device has shader-f16).
    /// The VAE always runs in f32: SD's VAE overflows f16 (diffusers' `force_upcast`).
    pub dtype: FloatDType,
}

/// The configs of a model's networks.
#[derive(Debug, Clone)]
pub struct Configs {
    pub unet: UNetConfig,
    pub vae: VaeConfig,
    pub text_encoder: ClipConfig,
    /// SDXL's second text encoder.
    pub text_encoder_2: Option<ClipConfig>,
}

/// Refuses a set of networks this pipeline cannot drive together: an SDXL UNet (`text_time`)
/// needs the second text encoder and the base model's six time ids (original size, crop, target
/// size); the refiner's five (an aesthetic score instead of the target size) and its single
/// encoder are not supported. A second encoder without an SDXL UNet is refused too.
pub fn check_pipeline(unet: &UNetConfig, text_encoder_2: Option<&ClipConfig>) -> Result<()> {
    match (unet.text_time()?, text_encoder_2) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(Error::UnsupportedConfig("a second text encoder (text_encoder_2) with a UNet that takes no pooled text embedding (not SDXL's)".into())),
        (Some(_), None) => Err(Error::UnsupportedConfig(
            "an SDXL UNet (addition_embed_type \"text_time\") without SDXL's second text encoder (text_encoder_2): the SDXL refiner is not supported".into(),
        )),
        (Some(spec), Some(second)) => {
            let pooled = second.projection_dim;
            if !second.with_projection() || spec.input_dim != pooled + SDXL_TIME_IDS * spec.time_dim {
                return Err(Error::UnsupportedConfig(format!(
                    "an SDXL UNet whose added embedding takes {} features; SDXL base takes the pooled text embedding ({pooled}) and {SDXL_TIME_IDS} time ids × {} (the refiner's aesthetic score is not supported)",
                    spec.input_dim, spec.time_dim
                )));
            }
            Ok(())
        }
    }
}

/// SDXL base's micro-conditioning: original size (h, w), crop top-left (y, x), target size (h, w).
pub const SDXL_TIME_IDS: usize = 6;

/// An empty prompt's 77 ids for a tokenizer padding with `pad_token`: BOS, EOS, padding.
pub fn empty_chunk(pad_token: i64) -> Vec<i64> {
    let mut ids = vec![49406, 49407];
    ids.resize(77, pad_token);
    ids
}

/// Which decoder turns latents into pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoder {
    Vae,
    Taesd,
}

/// One generation request, with prompts already tokenized into 77-id chunks.
pub struct Request {
    pub prompt: Vec<Vec<i64>>,
    /// SDXL: an empty negative prompt (no chunks) is a negative prompt left out, which
    /// `force_zeros_for_empty_prompt` makes all zeros; one chunk of the empty text is encoded.
    pub negative_prompt: Vec<Vec<i64>>,
    /// SDXL: the same texts through the second tokenizer (which pads differently), as many
    /// chunks as `prompt` and `negative_prompt`; empty for SD 1.x/2.x.
    pub prompt_2: Vec<Vec<i64>>,
    pub negative_prompt_2: Vec<Vec<i64>>,
    /// A1111 prompt weights per id of each chunk (empty: all 1).
    pub prompt_weights: Vec<Vec<f32>>,
    pub negative_weights: Vec<Vec<f32>>,
    pub steps: usize,
    pub guidance: f64,
    pub width: usize,
    pub height: usize,
    pub scheduler: SchedulerKind,
    pub batch: usize,
    /// How many of the text encoder's last layers to skip (1: use the last).
    pub clip_skip: usize,
    /// img2img: the input image [1, 3, H, W] in [-1, 1] and how much of it to repaint (0..=1).
    pub init_image: Option<Tensor<4>>,
    pub strength: f64,
    /// Inpainting: [1, 1, H, W], 1 where the image is repainted and 0 where it is kept (binarized,
    /// as diffusers' mask processor leaves it). Needs `init_image`.
    pub mask: Option<Tensor<4>>,
    pub decoder: Decoder,
}

/// Where the pipeline's randomness comes from. Streams: 0 the initial latents, 1 the img2img
/// noise, 2 the VAE encoder's sample, 3 its sample of the masked image (inpainting), 100 + i the
/// sampler's noise at step i.
pub trait NoiseSource {
    fn noise(&mut self, stream: u64, batch: usize, shape: [usize; 3], device: &Device) -> Result<Tensor<4>>;
}

pub const STREAM_LATENTS: u64 = 0;
pub const STREAM_IMG2IMG: u64 = 1;
pub const STREAM_ENCODER: u64 = 2;
pub const STREAM_MASKED_ENCODER: u64 = 3;
pub const STREAM_STEP: u64 = 100;

/// The seeded noise users get: image b of the batch uses seed + b.
pub struct SeededNoise(pub u64);

impl NoiseSource for SeededNoise {
    fn noise(&mut self, stream: u64, batch: usize, shape: [usize; 3], device: &Device) -> Result<Tensor<4>> {
        Ok(crate::rng::batch_noise(self.0, stream, batch, shape, device))
    }
}

/// Inpainting's extra inputs: the mask at latent size [1, 1, h, w] and, for a 9-channel UNet,
/// the masked image's latents [1, 4, h, w].
struct Inpainting {
    mask: Tensor<4>,
    masked_latents: Option<Tensor<4>>,
}

/// Sinusoidal embedding of the guidance scale for LCM-distilled UNets (diffusers'
/// `get_guidance_scale_embedding` of w = guidance − 1, scaled by 1000).
fn guidance_embedding(guidance: f64, dim: usize, batch: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let w = (guidance - 1.0) as f32 * 1000.0;
    let step = 10000f32.ln() / (half as f32 - 1.0);
    let mut row: Vec<f32> = (0..half).map(|i| (w * (-(i as f32) * step).exp()).sin()).collect();
    row.extend((0..half).map(|i| (w * (-(i as f32) * step).exp()).cos()));
    row.resize(dim, 0.0);
    let values: Vec<f32> = (0..batch).flat_map(|_| row.iter().copied()).collect();
    Tensor::from_data(burn::tensor::TensorData::new(values, [batch, dim]), device)
}

impl StableDiffusion {
    /// Encodes 77-id chunks and joins them along the sequence ([1, 77·k, D]). With `weights`
    /// (one per id), each chunk's embeddings are scaled per token and then rescaled to keep their
    /// mean, as A1111 applies `(word:1.3)`.
    pub fn encode_prompt(&self, chunks: &[Vec<i64>], weights: &[Vec<f32>], clip_skip: usize) -> Result<Tensor<3>> {
        let mut parts = Vec::with_capacity(chunks.len());
        for (i, chunk) in chunks.iter().enumerate() {
            let hidden = self.text_encoder.forward(std::slice::from_ref(chunk), clip_skip)?.hidden;
            parts.push(self.weigh(hidden, weights.get(i)));
        }
        Ok(Tensor::cat(parts, 1))
    }

    /// One chunk's embeddings [1, 77, D] with A1111's weights applied (scaled per token, then
    /// rescaled to keep the chunk's mean); unchanged without weights or with all of them 1.
    fn weigh(&self, hidden: Tensor<3>, weights: Option<&Vec<f32>>) -> Tensor<3> {
        let n = hidden.dims()[1];
        match weights {
            Some(w) if w.len() == n && w.iter().any(|&x| x != 1.0) => {
                let dtype = hidden.dtype();
                let z = hidden.cast(FloatDType::F32);
                let original_mean = z.clone().mean();
                let w = Tensor::<1>::from_data(burn::tensor::TensorData::new(w.clone(), [n]), &self.device);
                let weighted = z * w.reshape([1, n, 1]);
                let new_mean = weighted.clone().mean();
                (weighted * (original_mean / new_mean).unsqueeze::<3>()).cast(dtype)
            }
            _ => hidden,
        }
    }

    /// SDXL's conditioning for one prompt, as diffusers' StableDiffusionXLPipeline.encode_prompt
    /// makes it: each chunk through both encoders (`chunks` from the first tokenizer, `chunks_2`
    /// from the second), their `hidden_states[-(clip_skip + 1)]` (SDXL's default, clip_skip 1, is
    /// the penultimate layer, without the final layer norm) joined on the feature axis and the
    /// chunks along the sequence: [1, 77·k, D1 + D2]; and the second encoder's projected pooled
    /// output of the first chunk [1, P] (diffusers truncates to one chunk; A1111 and ComfyUI pool
    /// the first). A1111 weights scale each encoder's embeddings separately (each keeps its mean),
    /// never the pooled output. A clip_skip above 1 applies to the negative prompt too, as in
    /// this pipeline's SD path and A1111 (diffusers skips only in the prompt: its negative prompt
    /// always reads hidden_states[-2]).
    pub fn encode_prompt_sdxl(&self, chunks: &[Vec<i64>], chunks_2: &[Vec<i64>], weights: &[Vec<f32>], clip_skip: usize) -> Result<(Tensor<3>, Tensor<2>)> {
        let Some(encoder_2) = &self.text_encoder_2 else {
            return Err(Error::InvalidRequest("SDXL conditioning needs the second text encoder, which this model lacks".into()));
        };
        if chunks.len() != chunks_2.len() || chunks.is_empty() {
            return Err(Error::InvalidRequest(format!("SDXL needs the prompt from both tokenizers in the same number of chunks, not {} and {}", chunks.len(), chunks_2.len())));
        }
        let skip = clip_skip.max(1) + 1;
        let (mut parts, mut pooled) = (Vec::with_capacity(chunks.len()), None);
        for (i, (chunk, chunk_2)) in chunks.iter().zip(chunks_2).enumerate() {
            let first = self.text_encoder.forward_sdxl(std::slice::from_ref(chunk), skip)?.hidden;
            let second = encoder_2.forward_sdxl(std::slice::from_ref(chunk_2), skip)?;
            pooled.get_or_insert(second.pooled);
            let weights = weights.get(i);
            parts.push(Tensor::cat(vec![self.weigh(first, weights), self.weigh(second.hidden, weights)], 2));
        }
        Ok((Tensor::cat(parts, 1), pooled.expect("at least one chunk")))
    }

    /// An empty prompt's chunk: BOS, EOS, padding (what an absent negative prompt encodes).
    pub fn empty_chunk(&self) -> Vec<i64> {
        empty_chunk(self.pad_token)
    }

    /// SDXL's conditioning for a request, for the UNet's rows (the unconditional half first when
    /// `cfg`): context [R, 77·k, D1 + D2] and the added conditioning (pooled embedding and
    /// time ids [R, 6]). The time ids are diffusers' defaults: original and target size both the
    /// request's (height, width), crop (0, 0).
    fn sdxl_conditioning(&self, req: &Request, cfg: bool) -> Result<(Tensor<3>, TextTime)> {
        let b = req.batch;
        let chunks = req.prompt.len().max(if cfg { req.negative_prompt.len() } else { 0 });
        let pad = |c: &[Vec<i64>], pad_token: i64| {
            let mut c = c.to_vec();
            c.resize(chunks, empty_chunk(pad_token));
            c
        };
        let (cond, pooled) = self.encode_prompt_sdxl(&pad(&req.prompt, self.pad_token), &pad(&req.prompt_2, self.pad_token_2), &req.prompt_weights, req.clip_skip)?;
        let (context, pooled) = if cfg {
            let (uncond, uncond_pooled) = if req.negative_prompt.is_empty() && self.force_zeros_for_empty_prompt {
                // diffusers: a negative prompt left out (None) with force_zeros_for_empty_prompt is zeros.
                (cond.zeros_like(), pooled.zeros_like())
            } else {
                let negative = if req.negative_prompt.is_empty() { vec![self.empty_chunk()] } else { req.negative_prompt.clone() };
                let negative_2 = if req.negative_prompt_2.is_empty() { vec![empty_chunk(self.pad_token_2)] } else { req.negative_prompt_2.clone() };
                self.encode_prompt_sdxl(&pad(&negative, self.pad_token), &pad(&negative_2, self.pad_token_2), &req.negative_weights, req.clip_skip)?
            };
            (Tensor::cat(vec![uncond.repeat_dim(0, b), cond.repeat_dim(0, b)], 0), Tensor::cat(vec![uncond_pooled.repeat_dim(0, b), pooled.repeat_dim(0, b)], 0))
        } else {
            (cond.repeat_dim(0, b), pooled.repeat_dim(0, b))
        };
        let rows = context.dims()[0];
        let (h, w) = (req.height as f32, req.width as f32);
        let ids: Vec<f32> = (0..rows).flat_map(|_| [h, w, 0.0, 0.0, h, w]).collect();
        let time_ids = Tensor::<2>::from_data(burn::tensor::TensorData::new(ids, [rows, SDXL_TIME_IDS]), &self.device).cast(pooled.dtype());
        Ok((context, TextTime { text_embeds: pooled, time_ids }))
    }

    /// Runs the request; `on_step(done, total, denoised)` is awaited after every step and stops
    /// the run (with `Error::Cancelled`) when it returns false. Returns the decoded images
    /// [B, 3, H, W] in about [-1, 1].
    pub async fn generate<F, Fut>(&self, req: &Request, noise: &mut dyn NoiseSource, mut on_step: F) -> Result<Tensor<4>>
    where
        F: FnMut(usize, usize, Tensor<4>) -> Fut,
        Fut: Future<Output = bool>,
    {
        if !req.width.is_multiple_of(8) || !req.height.is_multiple_of(8) || req.width == 0 || req.height == 0 {
            return Err(Error::InvalidRequest(format!("width and height must be positive multiples of 8, not {}×{}", req.width, req.height)));
        }
        if req.batch == 0 || req.prompt.is_empty() {
            return Err(Error::InvalidRequest("nothing to generate: empty batch or prompt".into()));
        }
        if self.configs.unet.in_channels == 9 && req.mask.is_none() {
            return Err(Error::InvalidRequest("this is an inpainting model: give it a start image and a mask (white where it repaints)".into()));
        }
        let cfg = self.uses_cfg(req.guidance);
        if let Some(limit) = self.buffer_limit {
            let copies = if cfg { 2 } else { 1 };
            let bytes_per = if self.dtype == FloatDType::F16 { 2 } else { 4 };
            let Configs { unet, vae, text_encoder, text_encoder_2 } = &self.configs;
            // SDXL: the wider encoder (bigG) has the larger token embedding chunk.
            let text = text_encoder_2.as_ref().filter(|t| t.hidden_size > text_encoder.hidden_size).unwrap_or(text_encoder);
            crate::memory::check_fits(unet, vae, text, req.width, req.height, (req.batch * copies) as u64, bytes_per, limit)?;
        }
        let device = self.device.clone();
        let b = req.batch;
        let (h, w) = (req.height / 8, req.width / 8);
        let lcm_guidance = self.unet.guidance_embedding_dim;

        // Conditioning: prompt and negative prompt padded to the same number of chunks.
        let (context, text_time) = if self.text_encoder_2.is_some() {
            let (context, text_time) = self.sdxl_conditioning(req, cfg)?;
            (context, Some(text_time))
        } else {
            let chunks = req.prompt.len().max(if cfg { req.negative_prompt.len() } else { 0 });
            let pad = |c: &[Vec<i64>]| {
                let mut c = c.to_vec();
                c.resize(chunks, self.empty_chunk());
                c
            };
            let cond = self.encode_prompt(&pad(&req.prompt), &req.prompt_weights, req.clip_skip)?;
            let context = if cfg {
                let uncond = self.encode_prompt(&pad(&req.negative_prompt), &req.negative_weights, req.clip_skip)?;
                Tensor::cat(vec![uncond.repeat_dim(0, b), cond.repeat_dim(0, b)], 0)
            } else {
                cond.repeat_dim(0, b)
            };
            (context, None)
        };
        let guidance_emb = lcm_guidance.map(|d| guidance_embedding(req.guidance, d, b, &device).cast(self.dtype));

        let mut scheduler = req.scheduler.build(&self.scheduler_config, req.steps)?;
        let n = scheduler.timesteps().len();
        let inpaint = match &req.mask {
            Some(mask) => Some(self.inpainting(req, mask, noise)?),
            None => None,
        };
        // The image's latents, for img2img and for a plain UNet's inpainting (kept outside the mask).
        let mut image_latents = None;
        let (start, mut latents, start_noise) = match &req.init_image {
            None => (0, noise.noise(STREAM_LATENTS, b, [4, h, w], &device)? * scheduler.init_noise_sigma(), None),
            Some(image) => {
                crate::pipeline::generate::Field::STRENGTH.check(req.strength)?;
                let [_, _, ih, iw] = image.dims();
                if (ih, iw) != (req.height, req.width) {
                    return Err(Error::InvalidInput(format!("the input image is {iw}×{ih}, the request {}×{}", req.width, req.height)));
                }
                let init_steps = ((req.steps as f64 * req.strength) as usize).min(req.steps);
                let start = n - init_steps.min(n);
                if start >= n {
                    return Err(Error::InvalidRequest("strength too low: no steps left to run".into()));
                }
                // diffusers' inpainting at full strength starts from pure noise, as text-to-image
                // does (its img2img noises the image even then); a 9-channel UNet then needs no
                // image latents at all.
                let from_noise = inpaint.is_some() && req.strength >= 1.0;
                let needs_latents = !from_noise || inpaint.as_ref().is_some_and(|i| i.masked_latents.is_none());
                if needs_latents {
                    image_latents = Some(self.encode_image(image.clone(), STREAM_ENCODER, noise)?.repeat_dim(0, b));
                }
                if from_noise {
                    let start_noise = noise.noise(STREAM_LATENTS, b, [4, h, w], &device)?;
                    (0, start_noise.clone() * scheduler.init_noise_sigma(), Some(start_noise))
                } else {
                    let start_noise = noise.noise(STREAM_IMG2IMG, b, [4, h, w], &device)?;
                    let latents = scheduler.add_noise(image_latents.clone().expect("encoded above"), start_noise.clone(), start);
                    (start, latents, Some(start_noise))
                }
            }
        };

        for i in start..n {
            let t = scheduler.timesteps()[i];
            let input = scheduler.scale_model_input(latents.clone(), i);
            let copies = if cfg { 2 } else { 1 };
            let input = if cfg { Tensor::cat(vec![input.clone(), input], 0) } else { input };
            // An inpainting UNet (9 input channels) also sees the mask and the masked image's latents.
            let input = match inpaint.as_ref().and_then(|i| i.masked_latents.clone().map(|m| (i.mask.clone(), m))) {
                Some((mask, masked)) => {
                    let rows = b * copies;
                    Tensor::cat(vec![input, mask.repeat_dim(0, rows), masked.repeat_dim(0, rows)], 1)
                }
                None => input,
            }
            .cast(self.dtype);
            let timesteps = Tensor::<1>::full([b * copies], t as f32, &device);
            let added = text_time.as_ref().map(|c| TextTime { text_embeds: c.text_embeds.clone(), time_ids: c.time_ids.clone() });
            let out = self.unet.forward_text_time(input, timesteps, context.clone(), guidance_emb.clone(), added)?.cast(FloatDType::F32);
            let prediction = if cfg {
                let mut halves = out.chunk(2, 0);
                let cond = halves.pop().unwrap();
                let uncond = halves.pop().unwrap();
                uncond.clone() + (cond - uncond) * req.guidance
            } else {
                out
            };
            let step_noise = if scheduler.needs_noise(i) { Some(noise.noise(STREAM_STEP + i as u64, b, [4, h, w], &device)?) } else { None };
            let step = scheduler.step(prediction, i, latents, step_noise)?;
            latents = step.prev_sample;
            // A plain UNet inpaints by putting the image back outside the mask after every step,
            // noised to the next step's level (none after the last), as diffusers does.
            if let Some(Inpainting { mask, masked_latents: None }) = &inpaint {
                let original = image_latents.clone().expect("encoded above");
                let kept = if i + 1 < n { scheduler.add_noise(original, start_noise.clone().expect("drawn above"), i + 1) } else { original };
                latents = kept * (mask.clone().neg() + 1.0) + latents * mask.clone();
            }
            if !on_step(i + 1 - start, n - start, step.denoised).await {
                return Err(Error::Cancelled);
            }
        }
        Ok(self.decode(latents, req.decoder))
    }

    /// The VAE's sample of `image`'s latents (noise from `stream`), scaled for the UNet: [1, 4, h, w].
    fn encode_image(&self, image: Tensor<4>, stream: u64, noise: &mut dyn NoiseSource) -> Result<Tensor<4>> {
        let [_, _, ih, iw] = image.dims();
        let (mean, logvar) = self.vae.encode(image);
        let sample_noise = noise.noise(stream, 1, [4, ih / 8, iw / 8], &self.device)?;
        Ok((mean + (logvar * 0.5).exp() * sample_noise) * self.vae.scaling_factor)
    }

    /// What inpainting adds to a request: the mask at latent size and, for a 9-channel
    /// inpainting UNet, the latents of the image with the masked part blacked out.
    fn inpainting(&self, req: &Request, mask: &Tensor<4>, noise: &mut dyn NoiseSource) -> Result<Inpainting> {
        let Some(image) = &req.init_image else {
            return Err(Error::InvalidRequest("a mask needs a start image to paint into".into()));
        };
        let [_, c, mh, mw] = mask.dims();
        if (c, mh, mw) != (1, req.height, req.width) {
            return Err(Error::InvalidInput(format!("the mask is {mw}×{mh}, the request {}×{}", req.width, req.height)));
        }
        let (h, w) = (req.height / 8, req.width / 8);
        // diffusers: nearest-neighbour to latent size (torch picks pixel 8·i of each 8×8 cell).
        let small = mask.clone().reshape([1, h, 8, w, 8]).narrow(2, 0, 1).narrow(4, 0, 1).reshape([1, 1, h, w]);
        let masked_latents = match self.configs.unet.in_channels {
            4 => None,
            9 => {
                let keep = mask.clone().lower_elem(0.5).float();
                Some(self.encode_image(image.clone() * keep, STREAM_MASKED_ENCODER, noise)?)
            }
            other => return Err(Error::UnsupportedConfig(format!("a UNet with {other} input channels: inpainting takes 4 (any model) or 9 (an inpainting model)"))),
        };
        Ok(Inpainting { mask: small, masked_latents })
    }

    /// Whether a generation at `guidance` runs classifier-free guidance (the UNet twice per step):
    /// above 1, unless the UNet embeds the guidance itself (LCM-distilled).
    pub fn uses_cfg(&self, guidance: f64) -> bool {
        guidance > 1.0 && self.unet.guidance_embedding_dim.is_none()
    }

    /// Latents → images [B, 3, H, W]; the VAE decodes one image at a time, in tiles when its
    /// largest activation would exceed WebGPU's default 128 MiB storage binding. The VAE is
    /// always f32 (SD's and SDXL's overflow f16: diffusers' `force_upcast`), and the latents are
    /// unscaled by the VAE config's `scaling_factor` (0.18215 SD 1.x/2.x, 0.13025 SDXL).
    pub fn decode(&self, latents: Tensor<4>, decoder: Decoder) -> Tensor<4> {
        match (decoder, &self.taesd) {
            (Decoder::Taesd, Some(taesd)) => taesd.decode(latents),
            _ => {
                let images: Vec<Tensor<4>> =
                    latents.split(1, 0).into_iter().map(|l| self.vae.decode_within(l / self.vae.scaling_factor, crate::memory::MAX_BUFFER_BYTES)).collect();
                Tensor::cat(images, 0)
            }
        }
    }
}
