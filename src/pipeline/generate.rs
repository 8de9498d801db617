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
    #[serde(default = "one")]
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
}

fn default_steps() -> usize {
    20
}
fn default_guidance() -> f64 {
    7.5
}
fn default_size() -> usize {
    512
}
fn one() -> usize {
    1
}
fn default_strength() -> f64 {
    0.75
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
        let tokenizer = ClipTokenizer::shared(self.pad_token as u32)?;
        let encoded = tokenizer.encode_weighted(text)?;
        Ok((encoded.chunks.into_iter().map(|c| c.into_iter().map(i64::from).collect()).collect(), encoded.weights))
    }

    /// The request for `settings`, with an optional input image (RGBA8, width×height).
    pub fn request(&self, s: &Settings, init_image: Option<&RgbaImage>) -> Result<Request> {
        let scheduler = if s.scheduler.is_empty() || s.scheduler == "default" { self.suggested.scheduler } else { SchedulerKind::parse(&s.scheduler)? };
        let init_image = match init_image {
            Some(img) => {
                if (img.width, img.height) != (s.width, s.height) {
                    return Err(Error::InvalidInput(format!("the input image is {}×{}; resize it to {}×{}", img.width, img.height, s.width, s.height)));
                }
                Some(rgba_to_tensor(img, &self.device))
            }
            None => None,
        };
        let (prompt, prompt_weights) = self.tokenize(&s.prompt)?;
        let (negative_prompt, negative_weights) = self.tokenize(&s.negative_prompt)?;
        Ok(Request {
            prompt,
            negative_prompt,
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
            decoder: if s.fast_decode && self.taesd.is_some() { Decoder::Taesd } else { Decoder::Vae },
        })
    }

    /// Runs `settings`; `on_step(done, total, denoised)` as in [`StableDiffusion::generate`].
    pub async fn generate_images<F, Fut>(&self, s: &Settings, init_image: Option<&RgbaImage>, model_name: &str, on_step: F) -> Result<Vec<Generated>>
    where
        F: FnMut(usize, usize, Tensor<4>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let request = self.request(s, init_image)?;
        let decoded = self.generate(&request, &mut SeededNoise(s.seed), on_step).await?;
        let images = read_images(decoded, s.height, s.width).await.map_err(|e| match e {
            Error::BadImage(m) => Error::BadImage(format!("{m}; settings: {}", parameters(s, request.scheduler, 0, model_name, init_image.is_some()).replace('\n', " | "))),
            other => other,
        })?;
        images
            .into_iter()
            .enumerate()
            .map(|(b, image)| {
                let parameters = parameters(s, request.scheduler, b as u64, model_name, init_image.is_some());
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

/// A1111's `parameters` text for image `b` of the batch.
pub fn parameters(s: &Settings, scheduler: SchedulerKind, b: u64, model: &str, img2img: bool) -> String {
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
    if img2img {
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
            parameters(&s, SchedulerKind::EulerAncestral, 1, "tiny", false),
            "a fox\nNegative prompt: blurry\nSteps: 4, Sampler: euler_a, CFG scale: 6.5, Seed: 10, Size: 64x48, Model: tiny, Generator: websd"
        );
        assert!(parameters(&s, SchedulerKind::EulerAncestral, 0, "tiny", true).ends_with("Model: tiny, Denoising strength: 0.5, Generator: websd"));
    }
}
