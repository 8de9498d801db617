//! The whole txt2img, img2img and inpainting pipeline against diffusers' StableDiffusionPipeline,
//! StableDiffusionImg2ImgPipeline and StableDiffusionInpaintPipeline on the tiny models: same
//! token ids, same initial latents and noise (recorded), same images.

use burn::prelude::*;
use websd::pipeline::{Decoder, NoiseSource, Request, STREAM_ENCODER, STREAM_IMG2IMG, STREAM_LATENTS, STREAM_MASKED_ENCODER, STREAM_STEP, StableDiffusion};
use websd::scheduler::SchedulerKind;
use websd::weights::SafetensorsSource;

use crate::common::{fixtures, rel_err, values};

/// Replays what diffusers drew: the initial latents, then one noise tensor per noisy step.
pub struct Recorded<'a> {
    trace: &'a SafetensorsSource,
    draws: usize,
}

impl NoiseSource for Recorded<'_> {
    fn noise(&mut self, stream: u64, _batch: usize, _shape: [usize; 3], device: &Device) -> websd::Result<Tensor<4>> {
        let name = match stream {
            STREAM_LATENTS => "latents".to_string(),
            STREAM_ENCODER => "encoder_noise".to_string(),
            STREAM_IMG2IMG => "img2img_noise".to_string(),
            STREAM_MASKED_ENCODER => "masked_encoder_noise".to_string(),
            _ => {
                assert!(stream >= STREAM_STEP, "unexpected noise stream {stream}");
                self.draws += 1;
                format!("noise{}", self.draws - 1)
            }
        };
        self.trace.tensor::<4>(&name, device)
    }
}

pub fn replay(name: &str) {
    let meta = meta(name);
    let mut sd = StableDiffusion::from_diffusers_dir(fixtures().join(meta["folder"].as_str().unwrap()), &Device::flex()).unwrap();
    // Inpainting fixtures may run another UNet (9 channels) with the folder's other components.
    if let Some(unet) = meta["unet"].as_str() {
        let dir = fixtures().join(unet);
        sd.unet = websd::model::unet::UNet2DConditionModel::from_dir(&dir, &sd.device).unwrap();
        sd.configs.unet = websd::model::config::UNetConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    }
    // SDXL-Turbo style fixtures override the folder's spacing, as diffusers' from_config did.
    if let Some(spacing) = meta["timestep_spacing"].as_str() {
        sd.scheduler_config.timestep_spacing = Some(spacing.into());
    }
    let err = replay_with(name, &sd);
    assert!(err < 1e-4, "{name}: image relative error {err:.2e}");
}

pub fn meta(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("pipeline").join(format!("{name}.json"))).unwrap()).unwrap()
}

/// Runs pipeline fixture `name` on `sd` with the recorded noise; returns the image's relative
/// error against diffusers'.
pub fn replay_with(name: &str, sd: &StableDiffusion) -> f32 {
    replay_checked(name, sd, true)
}

/// [`replay_with`] without the 8-bit PNG check (a quantized model's pixels are further off).
pub fn replay_quantized(name: &str, sd: &StableDiffusion) -> f32 {
    replay_checked(name, sd, false)
}

fn replay_checked(name: &str, sd: &StableDiffusion, png: bool) -> f32 {
    let meta = meta(name);
    let trace = SafetensorsSource::from_file(fixtures().join("pipeline").join(format!("{name}.safetensors"))).unwrap();
    let ids = |n: &str| vec![trace.read_i64(n).unwrap().0];
    // SDXL's: the second tokenizer's ids; a trace without a negative prompt left it out.
    let optional_ids = |n: &str| trace.read_i64(n).ok().map(|(ids, _)| vec![ids]).unwrap_or_default();
    let class = meta["scheduler"].as_str().unwrap();
    // img2img: diffusers' input in [0, 1] becomes [-1, 1], as the pipeline's preprocessing does.
    let strength = meta["strength"].as_f64();
    let init_image = strength.map(|_| trace.tensor::<4>("init_image", &sd.device).unwrap() * 2.0 - 1.0);
    let request = Request {
        prompt: ids("prompt_ids"),
        negative_prompt: optional_ids("negative_ids"),
        prompt_2: optional_ids("prompt_ids_2"),
        negative_prompt_2: optional_ids("negative_ids_2"),
        prompt_weights: vec![],
        negative_weights: vec![],
        steps: meta["steps"].as_u64().unwrap() as usize,
        guidance: meta["guidance"].as_f64().unwrap(),
        width: meta["width"].as_u64().unwrap() as usize,
        height: meta["height"].as_u64().unwrap() as usize,
        scheduler: SchedulerKind::from_class(class, meta["karras"].as_bool().unwrap_or(false)).unwrap(),
        batch: 2,
        clip_skip: 1,
        init_image,
        strength: strength.unwrap_or(1.0),
        mask: meta["inpaint"].as_bool().unwrap_or(false).then(|| trace.tensor::<4>("mask", &sd.device).unwrap()),
        decoder: Decoder::Vae,
    };
    let mut noise = Recorded { trace: &trace, draws: 0 };
    let mut seen = Vec::new();
    let image = pollster::block_on(sd.generate(&request, &mut noise, |done, total, _| {
        seen.push((done, total));
        async { true }
    }))
    .unwrap();
    assert_eq!(noise.draws, meta["noise_draws"].as_u64().unwrap() as usize, "{name}: noise draws");
    let steps = seen.len();
    assert_eq!(steps, meta["steps_run"].as_u64().unwrap() as usize, "{name}: steps run");
    assert_eq!(seen.last(), Some(&(steps, steps)), "{name}: progress reaches the end");
    // diffusers' output_type "np": (x / 2 + 0.5) clamped to [0, 1], as [B, H, W, 3].
    if png {
        check_png(&image, &trace, name);
    }
    let ours = values(((image + 1.0) / 2.0).clamp(0.0, 1.0).permute([0, 2, 3, 1]));
    let err = rel_err(&ours, &trace.read_f32("image").unwrap().0);
    println!("{name}: image relative error {err:.2e}");
    err
}

#[test]
fn sd1_euler_cfg_matches_diffusers() {
    replay("sd1_euler");
}

#[test]
fn sd1_ddim_cfg_matches_diffusers() {
    replay("sd1_ddim");
}

#[test]
fn sd1_dpmpp_2m_karras_matches_diffusers() {
    replay("sd1_dpmpp_2m_karras");
}

#[test]
fn sd1_euler_ancestral_matches_diffusers() {
    replay("sd1_euler_a");
}

#[test]
fn sd1_pndm_without_guidance_matches_diffusers() {
    replay("sd1_pndm_noguidance");
}

#[test]
fn sd2_ddim_v_prediction_matches_diffusers() {
    replay("sd2_ddim_vpred");
}

#[test]
fn sd1_img2img_euler_matches_diffusers() {
    replay("sd1_img2img_euler");
}

#[test]
fn sd1_img2img_ddim_matches_diffusers() {
    replay("sd1_img2img_ddim");
}

#[test]
fn sd1_img2img_dpmpp_2m_karras_matches_diffusers() {
    replay("sd1_img2img_dpmpp_2m_karras");
}

#[test]
fn sd1_img2img_euler_ancestral_matches_diffusers() {
    replay("sd1_img2img_euler_a");
}

/// A plain (4-channel) UNet inpaints by putting the image back outside the mask after each step.
#[test]
fn sd1_inpaint_plain_unet_euler_matches_diffusers() {
    replay("sd1_inpaint_euler");
}

#[test]
fn sd1_inpaint_plain_unet_ddim_half_strength_matches_diffusers() {
    replay("sd1_inpaint_ddim_half");
}

/// A 9-channel inpainting UNet sees the mask and the masked image's latents.
#[test]
fn sd1_inpainting_unet_euler_ancestral_matches_diffusers() {
    replay("sd1_inpaint9_euler_a");
}

#[test]
fn sd1_inpainting_unet_dpmpp_2m_three_quarter_strength_matches_diffusers() {
    replay("sd1_inpaint9_dpmpp_2m_half");
}

#[test]
fn cancel_stops_after_the_step_that_asked() {
    let device = Device::flex();
    let sd = StableDiffusion::from_diffusers_dir(fixtures().join("sd1"), &device).unwrap();
    let mut empty = vec![49406, 49407];
    empty.resize(77, 49407);
    let request = Request {
        prompt: vec![empty.clone()],
        negative_prompt: vec![],
        prompt_2: vec![],
        negative_prompt_2: vec![],
        prompt_weights: vec![],
        negative_weights: vec![],
        steps: 5,
        guidance: 7.0,
        width: 32,
        height: 32,
        scheduler: SchedulerKind::Euler,
        batch: 1,
        clip_skip: 1,
        init_image: None,
        strength: 1.0,
        mask: None,
        decoder: Decoder::Vae,
    };
    let mut calls = 0;
    let result = pollster::block_on(sd.generate(&request, &mut websd::pipeline::SeededNoise(1), |done, _, _| {
        calls += 1;
        async move { done < 2 }
    }));
    assert!(matches!(result, Err(websd::Error::Cancelled)));
    assert_eq!(calls, 2);
}

/// A size whose buffers exceed the device's limit is refused before anything runs, naming what
/// to change; with CFG (guidance > 1) the UNet runs a batch of 2, and the check counts it.
#[test]
fn a_size_too_large_for_the_gpu_is_refused_before_it_runs() {
    let device = Device::flex();
    let mut sd = StableDiffusion::from_diffusers_dir(fixtures().join("sd1"), &device).unwrap();
    let settings = |guidance_scale: f64| websd::pipeline::generate::Settings {
        prompt: "a fox".into(),
        negative_prompt: String::new(),
        steps: 1,
        guidance_scale,
        seed: 1,
        width: 64,
        height: 64,
        scheduler: "euler".into(),
        batch_count: 1,
        clip_skip: 1,
        strength: 0.75,
        fast_decode: false,
        preview: false,
        init_image: None,
        mask: None,
    };
    // The tiny model's largest buffer at 64², with the UNet's batch of 1 and of 2 (websd::memory).
    let c = sd.configs.clone();
    let largest = |batch| websd::memory::largest_buffers(&c.unet, &c.vae, &c.text_encoder, 64, batch, 4).unwrap()[0].bytes;
    sd.buffer_limit = Some(largest(1) - 1);
    for (guidance, batch) in [(7.5, 2), (1.0, 1)] {
        let mut steps = 0;
        let refused = pollster::block_on(sd.generate_images(&settings(guidance), "tiny", |_, _, _| {
            steps += 1;
            async { true }
        }));
        let Err(e) = refused else { panic!("a request over the buffer limit ran") };
        let message = e.to_string();
        assert_eq!(e.code(), "InvalidRequest", "{message}");
        assert!(message.contains(&format!("64×64 with batch {batch} is too large for this GPU")) && message.contains("Choose a smaller size"), "{message}");
        assert_eq!(steps, 0, "nothing ran");
    }
    sd.buffer_limit = Some(largest(2));
    let fits = pollster::block_on(sd.generate_images(&settings(7.5), "tiny", |_, _, _| async { true }));
    assert_eq!(fits.map(|images| images.len()).unwrap(), 1, "at the limit it runs");
}

/// A1111 weighting: all-1 weights change nothing; a weight scales that token's embedding
/// relative to the others and the chunk's mean is kept.
#[test]
fn prompt_weights_scale_tokens_and_keep_the_mean() {
    let device = Device::flex();
    let sd = StableDiffusion::from_diffusers_dir(fixtures().join("sd1"), &device).unwrap();
    let mut ids = vec![49406, 320, 1125, 539, 49407];
    ids.resize(77, 49407);
    let plain = values(sd.encode_prompt(&[ids.clone()], &[], 1).unwrap());
    let ones = values(sd.encode_prompt(&[ids.clone()], &[vec![1.0; 77]], 1).unwrap());
    assert_eq!(plain, ones);
    let mut w = vec![1.0; 77];
    w[2] = 1.5;
    let weighted = values(sd.encode_prompt(&[ids], &[w.clone()], 1).unwrap());
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    assert!((mean(&weighted) - mean(&plain)).abs() < 1e-5 * mean(&plain).abs().max(1.0), "mean kept");
    let d = 16; // the fixture's hidden size
    let scaled: Vec<f32> = plain.iter().enumerate().map(|(i, &p)| p * w[i / d]).collect();
    let scale = (mean(&plain) / mean(&scaled)) as f32;
    for (i, (&p, &q)) in plain.iter().zip(&weighted).enumerate() {
        let expected = p * w[i / d] * scale;
        assert!((q - expected).abs() < 1e-4 * expected.abs().max(1.0), "value {i}: {q} vs {expected}");
    }
}

/// The PNG the user gets: its pixels are diffusers' image in 8 bits (±1 for rounding near
/// ties) and its `parameters` chunk reads back unchanged.
fn check_png(image: &Tensor<4>, trace: &SafetensorsSource, name: &str) {
    let [_, _, h, w] = image.dims();
    let images = pollster::block_on(websd::pipeline::generate::read_images(image.clone(), h, w)).unwrap();
    let (expected, _) = trace.read_f32("image").unwrap();
    let parameters = "a prompt\nSteps: 3, Sampler: euler, Seed: 7";
    for (b, img) in images.iter().enumerate() {
        let png = websd::image::encode_png(img, parameters).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().utf8_text[0].get_text().unwrap(), parameters);
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        for (i, px) in buf.chunks(4).enumerate() {
            for c in 0..3 {
                let want = expected[(b * h * w + i) * 3 + c] * 255.0;
                assert!((px[c] as f32 - want).abs() <= 1.0, "{name}: PNG pixel {i} channel {c}: {} vs {want}", px[c]);
            }
        }
    }
}
