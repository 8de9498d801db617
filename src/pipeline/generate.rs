//! The user-facing generation, shared by the native CLI and the browser worker: prompts as text in,
//! checked RGBA images and PNGs (with A1111-style parameters) out.

use burn::prelude::*;
use burn::tensor::TensorData;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::image::{RgbaImage, encode_png, rgb_values_to_images, to_rgb_255};
use crate::pipeline::{Decoder, Request, SeededNoise, StableDiffusion};
use crate::scheduler::SchedulerKind;
use crate::tokenizer::ClipTokenizer;

/// A prompt's token ids, in 77-id chunks.
pub type Chunks = Vec<Vec<i64>>;

/// A number the user sets, with its default and the range a request may take. [`Field::ALL`] is
/// the one list: serde's defaults, [`Settings::check`], the CLI's fallbacks, the manifest's
/// suggestion check and (through wasm `setting_fields()`) the page's form all read it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Field {
    /// The [`Settings`] field it describes.
    pub name: &'static str,
    pub default: f64,
    pub min: f64,
    pub max: f64,
    /// The form's increment. Only a hint: sizes must also be multiples of 8, which the pipeline
    /// checks (once, for every caller), and guidance may be any number in range.
    pub step: f64,
}

impl Field {
    pub const STEPS: Field = Field { name: "steps", default: 20.0, min: 1.0, max: 150.0, step: 1.0 };
    pub const GUIDANCE: Field = Field { name: "guidance_scale", default: 7.5, min: 0.0, max: 30.0, step: 0.5 };
    pub const WIDTH: Field = Field { name: "width", default: 512.0, min: 64.0, max: 2048.0, step: 8.0 };
    pub const HEIGHT: Field = Field { name: "height", ..Field::WIDTH };
    pub const BATCH: Field = Field { name: "batch_count", default: 1.0, min: 1.0, max: 16.0, step: 1.0 };
    pub const STRENGTH: Field = Field { name: "strength", default: 0.75, min: 0.0, max: 1.0, step: 0.01 };
    pub const ALL: [Field; 6] = [Field::STEPS, Field::GUIDANCE, Field::WIDTH, Field::HEIGHT, Field::BATCH, Field::STRENGTH];

    pub fn holds(&self, value: f64) -> bool {
        value.is_finite() && (self.min..=self.max).contains(&value)
    }

    /// "1 to 150".
    pub fn range(&self) -> String {
        format!("{} to {}", self.min, self.max)
    }

    /// Refuses `value` outside the range, naming the field as the user knows it.
    pub fn check(&self, value: f64) -> Result<()> {
        if self.holds(value) {
            return Ok(());
        }
        let what = match self.name {
            "guidance_scale" => "guidance",
            "batch_count" => "batch count",
            other => other,
        };
        Err(Error::InvalidRequest(format!("{what} must be {}, not {value}", self.range())))
    }

    /// Clamps `value` into the range (a model's suggestion, which the form must be able to hold).
    pub fn clamp(&self, value: f64) -> f64 {
        value.clamp(self.min, self.max)
    }
}

/// What the user asked for (the page's settings; the CLI's flags).
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub prompt: String,
    #[serde(default)]
    pub negative_prompt: String,
    #[serde(default = "default_steps")]
    pub steps: usize,
    #[serde(default = "default_guidance")]
    pub guidance_scale: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_size")]
    pub width: usize,
    #[serde(default = "default_size")]
    pub height: usize,
    /// A sampler name (`euler_a`, …) or empty for the model's own.
    #[serde(default)]
    pub scheduler: String,
    #[serde(default = "default_batch")]
    pub batch_count: usize,
    #[serde(default = "one")]
    pub clip_skip: usize,
    /// img2img strength (used when an input image is given).
    #[serde(default = "default_strength")]
    pub strength: f64,
    /// Decode with TAESD instead of the VAE (fast, lower quality).
    #[serde(default)]
    pub fast_decode: bool,
    /// Show the denoised image after each step (TAESD when the model has it: the page's live preview).
    #[serde(default)]
    pub preview: bool,
    /// img2img's start image (RGBA8 at width×height); none for text-to-image.
    #[serde(default)]
    pub init_image: Option<RgbaImage>,
    /// Inpainting's mask (RGBA8 at width×height): white (grey ≥ 128) is repainted, black kept.
    #[serde(default)]
    pub mask: Option<RgbaImage>,
}

fn default_steps() -> usize {
    Field::STEPS.default as usize
}
fn default_guidance() -> f64 {
    Field::GUIDANCE.default
}
fn default_size() -> usize {
    Field::WIDTH.default as usize
}
fn default_batch() -> usize {
    Field::BATCH.default as usize
}
fn one() -> usize {
    1
}
fn default_strength() -> f64 {
    Field::STRENGTH.default
}

impl Settings {
    /// Refuses a number outside its [`Field`] range, before anything is tokenized or run.
    pub fn check(&self) -> Result<()> {
        Field::STEPS.check(self.steps as f64)?;
        Field::GUIDANCE.check(self.guidance_scale)?;
        Field::WIDTH.check(self.width as f64)?;
        Field::HEIGHT.check(self.height as f64)?;
        Field::BATCH.check(self.batch_count as f64)?;
        Field::STRENGTH.check(self.strength)
    }
}

/// One finished image.
pub struct Generated {
    pub image: RgbaImage,
    pub png: Vec<u8>,
    pub seed: u64,
    pub parameters: String,
}

impl StableDiffusion {
    /// Tokenizes `text` (A1111 weighting syntax) into 77-id chunks with this model's padding,
    /// and the weight of each id.
    pub fn tokenize(&self, text: &str) -> Result<(Chunks, Vec<Vec<f32>>)> {
        self.tokenize_padded(text, self.pad_token)
    }

    /// [`Self::tokenize`] for the tokenizer that pads with `pad_token` (SDXL's two differ).
    fn tokenize_padded(&self, text: &str, pad_token: i64) -> Result<(Chunks, Vec<Vec<f32>>)> {
        let tokenizer = ClipTokenizer::shared(pad_token as u32)?;
        let encoded = tokenizer.encode_weighted(text)?;
        if encoded.chunks.len() > crate::tokenizer::MAX_CHUNKS {
            return Err(Error::InvalidInput(crate::tokenizer::too_long("prompt", encoded.token_count)));
        }
        Ok((encoded.chunks.into_iter().map(|c| c.into_iter().map(i64::from).collect()).collect(), encoded.weights))
    }

    /// The request for `settings`.
    pub fn request(&self, s: &Settings) -> Result<Request> {
        s.check()?;
        let scheduler = if s.scheduler.is_empty() || s.scheduler == "default" { self.suggested.scheduler } else { SchedulerKind::parse(&s.scheduler)? };
        let init_image = match &s.init_image {
            Some(img) => {
                if (img.width, img.height) != (s.width, s.height) {
                    return Err(Error::InvalidInput(format!("the input image is {}×{}; resize it to {}×{}", img.width, img.height, s.width, s.height)));
                }
                Some(rgba_to_tensor(img, &self.device))
            }
            None => None,
        };
        let mask = match &s.mask {
            Some(m) if (m.width, m.height) != (s.width, s.height) => {
                return Err(Error::InvalidInput(format!("the mask is {}×{}; resize it to {}×{}", m.width, m.height, s.width, s.height)));
            }
            Some(m) => Some(mask_to_tensor(m, &self.device)),
            None => None,
        };
        // `<lora:name:w>` tags are instructions, not text: the model must carry exactly those.
        let (prompt_text, wanted) = crate::prompt::lora_tags(&s.prompt).map_err(Error::InvalidRequest)?;
        if !same_loras(&wanted, &self.loras) {
            let list = |tags: &[crate::prompt::LoraTag]| {
                if tags.is_empty() { "no LoRA".to_string() } else { tags.iter().map(|t| format!("<lora:{}:{}>", t.name, t.weight)).collect::<Vec<_>>().join(" ") }
            };
            return Err(Error::InvalidRequest(format!("the prompt asks for {} but the model is loaded with {}", list(&wanted), list(&self.loras))));
        }
        let (prompt, prompt_weights) = self.tokenize(&prompt_text)?;
        let (mut negative_prompt, negative_weights) = self.tokenize(&s.negative_prompt)?;
        // SDXL: the same texts through the second tokenizer; an empty negative prompt is one left
        // out (diffusers' None), which force_zeros_for_empty_prompt turns into zeros.
        let (mut prompt_2, mut negative_prompt_2) = (vec![], vec![]);
        if self.text_encoder_2.is_some() {
            prompt_2 = self.tokenize_padded(&prompt_text, self.pad_token_2)?.0;
            negative_prompt_2 = self.tokenize_padded(&s.negative_prompt, self.pad_token_2)?.0;
            if s.negative_prompt.trim().is_empty() {
                (negative_prompt, negative_prompt_2) = (vec![], vec![]);
            }
        }
        Ok(Request {
            prompt,
            negative_prompt,
            prompt_2,
            negative_prompt_2,
            prompt_weights,
            negative_weights,
            steps: s.steps,
            guidance: s.guidance_scale,
            width: s.width,
            height: s.height,
            scheduler,
            batch: s.batch_count,
            clip_skip: s.clip_skip,
            init_image,
            strength: s.strength,
            mask,
            decoder: if s.fast_decode && self.taesd.is_some() { Decoder::Taesd } else { Decoder::Vae },
        })
    }

    /// Runs `settings`; `on_step(done, total, denoised)` as in [`StableDiffusion::generate`].
    pub async fn generate_images<F, Fut>(&self, s: &Settings, model_name: &str, on_step: F) -> Result<Vec<Generated>>
    where
        F: FnMut(usize, usize, Tensor<4>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let request = self.request(s)?;
        let decoded = self.generate(&request, &mut SeededNoise(s.seed), on_step).await?;
        let images = read_images(decoded, s.height, s.width).await.map_err(|e| match e {
            Error::BadImage(m) => Error::BadImage(format!("{m}; settings: {}", parameters(s, request.scheduler, 0, model_name).replace('\n', " | "))),
            other => other,
        })?;
        images
            .into_iter()
            .enumerate()
            .map(|(b, image)| {
                let parameters = parameters(s, request.scheduler, b as u64, model_name);
                Ok(Generated { png: encode_png(&image, &parameters)?, image, seed: s.seed.wrapping_add(b as u64), parameters })
            })
            .collect()
    }

    /// A quick RGBA preview of `denoised` latents (image 0), with TAESD when the model has it.
    pub async fn preview(&self, denoised: Tensor<4>) -> Result<Option<RgbaImage>> {
        let Some(taesd) = &self.taesd else { return Ok(None) };
        let first = denoised.narrow(0, 0, 1);
        let [_, _, h, w] = first.dims();
        let decoded = taesd.decode(first);
        let values: Vec<f32> =
            to_rgb_255(decoded).into_data_async().await.map_err(|e| Error::readback("the preview", e))?.try_to_vec().map_err(|e| Error::Other(format!("{e:?}")))?;
        // A preview of a still-noisy image may be flat; it is shown, never judged.
        let mut pixels = Vec::with_capacity(values.len() / 3 * 4);
        for px in values.chunks(3) {
            pixels.extend(px.iter().map(|v| if v.is_finite() { v.round() as u8 } else { 0 }));
            pixels.push(255);
        }
        Ok(Some(RgbaImage { width: w * 8, height: h * 8, pixels }))
    }
}

/// Reads decoded images [B, 3, H, W] back from the device and checks them.
pub async fn read_images(decoded: Tensor<4>, height: usize, width: usize) -> Result<Vec<RgbaImage>> {
    let batch = decoded.dims()[0];
    let data = to_rgb_255(decoded).into_data_async().await.map_err(|e| Error::readback("the image", e))?;
    let values: Vec<f32> = data.try_to_vec().map_err(|e| Error::Other(format!("{e:?}")))?;
    rgb_values_to_images(&values, batch, height, width)
}

/// RGBA8 → [1, 3, H, W] in [-1, 1].
pub fn rgba_to_tensor(img: &RgbaImage, device: &Device) -> Tensor<4> {
    let plane = img.width * img.height;
    let mut values = vec![0f32; 3 * plane];
    for (i, px) in img.pixels.chunks(4).enumerate() {
        for c in 0..3 {
            values[c * plane + i] = px[c] as f32 / 127.5 - 1.0;
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 3, img.height, img.width]), device)
}

/// Whether two LoRA lists are the same set of names at the same weights.
fn same_loras(a: &[crate::prompt::LoraTag], b: &[crate::prompt::LoraTag]) -> bool {
    a.len() == b.len() && a.iter().all(|t| b.iter().any(|u| u.name == t.name && (u.weight - t.weight).abs() < 1e-6))
}

/// An RGBA8 mask → [1, 1, H, W] of 0 and 1, as diffusers' mask processor reads a picture: its
/// grey level (PIL's "L": 0.299 R + 0.587 G + 0.114 B, rounded) binarized at half.
pub fn mask_to_tensor(img: &RgbaImage, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = img
        .pixels
        .chunks(4)
        .map(|px| {
            let grey = (px[0] as u32 * 19595 + px[1] as u32 * 38470 + px[2] as u32 * 7471 + 0x8000) >> 16;
            if grey as f32 / 255.0 >= 0.5 { 1.0 } else { 0.0 }
        })
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 1, img.height, img.width]), device)
}

/// A1111's `parameters` text for image `b` of the batch.
pub fn parameters(s: &Settings, scheduler: SchedulerKind, b: u64, model: &str) -> String {
    let mut text = s.prompt.clone();
    if !s.negative_prompt.is_empty() {
        text.push_str(&format!("\nNegative prompt: {}", s.negative_prompt));
    }
    text.push_str(&format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {model}",
        s.steps,
        scheduler.name(),
        s.guidance_scale,
        s.seed.wrapping_add(b),
        s.width,
        s.height
    ));
    if s.init_image.is_some() {
        text.push_str(&format!(", Denoising strength: {}", s.strength));
    }
    if s.clip_skip > 1 {
        text.push_str(&format!(", Clip skip: {}", s.clip_skip));
    }
    text.push_str(", Generator: websd");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A1111's layout: prompt, negative prompt, then one line of `Key: value` pairs; img2img adds
    /// the denoising strength.
    #[test]
    fn parameters_text_is_a1111s() {
        let s: Settings =
            serde_json::from_str(r#"{"prompt": "a fox", "negative_prompt": "blurry", "steps": 4, "guidance_scale": 6.5, "seed": 9, "width": 64, "height": 48, "strength": 0.5}"#)
                .unwrap();
        assert_eq!(
            parameters(&s, SchedulerKind::EulerAncestral, 1, "tiny"),
            "a fox\nNegative prompt: blurry\nSteps: 4, Sampler: euler_a, CFG scale: 6.5, Seed: 10, Size: 64x48, Model: tiny, Generator: websd"
        );
        let img2img = Settings { init_image: Some(RgbaImage { width: 64, height: 48, pixels: vec![0; 64 * 48 * 4] }), ..s };
        assert!(parameters(&img2img, SchedulerKind::EulerAncestral, 0, "tiny").ends_with("Model: tiny, Denoising strength: 0.5, Generator: websd"));
    }

    /// serde fills a left-out number with its Field's default, and a number outside its range is
    /// refused by name (the page clamps its form to the same ranges, from wasm setting_fields()).
    #[test]
    fn left_out_numbers_take_the_fields_defaults_and_out_of_range_ones_are_refused() {
        let s: Settings = serde_json::from_str(r#"{"prompt": "a fox"}"#).unwrap();
        let values = [s.steps as f64, s.guidance_scale, s.width as f64, s.height as f64, s.batch_count as f64, s.strength];
        assert_eq!(values, Field::ALL.map(|f| f.default));
        assert!(s.check().is_ok());
        let refused = |json: &str| serde_json::from_str::<Settings>(json).unwrap().check().map_err(|e| (e.code(), e.to_string())).unwrap_err();
        assert_eq!(refused(r#"{"prompt": "", "steps": 151}"#), ("InvalidRequest", "steps must be 1 to 150, not 151".into()));
        assert_eq!(refused(r#"{"prompt": "", "guidance_scale": -1}"#), ("InvalidRequest", "guidance must be 0 to 30, not -1".into()));
        assert_eq!(refused(r#"{"prompt": "", "width": 32}"#), ("InvalidRequest", "width must be 64 to 2048, not 32".into()));
        assert_eq!(refused(r#"{"prompt": "", "batch_count": 0}"#), ("InvalidRequest", "batch count must be 1 to 16, not 0".into()));
        assert_eq!(refused(r#"{"prompt": "", "strength": 1.5}"#), ("InvalidRequest", "strength must be 0 to 1, not 1.5".into()));
    }

    /// A mask is read as diffusers reads a picture: PIL's grey level, binarized at half (so a
    /// mid grey of 128 repaints and 127 keeps; pure red is dark, pure green light).
    #[test]
    fn masks_are_binarized_from_their_grey_level() {
        let colours: [[u8; 3]; 5] = [[128, 128, 128], [127, 127, 127], [255, 0, 0], [0, 255, 0], [255, 255, 255]];
        let pixels = colours.iter().flat_map(|c| [c[0], c[1], c[2], 255]).collect();
        let mask = mask_to_tensor(&RgbaImage { width: 5, height: 1, pixels }, &Device::flex());
        let values: Vec<f32> = mask.into_data().try_to_vec().unwrap();
        assert_eq!(values, [1.0, 0.0, 0.0, 1.0, 1.0]);
    }
}
