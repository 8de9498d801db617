//! SDXL's UNet (the `text_time` added embedding, attention-free first and last blocks, per-block
//! transformer depths) and its two text encoders (CLIPTextModel and CLIPTextModelWithProjection)
//! against diffusers/transformers on tests/fixtures/sdxl (make_sdxl_fixtures.py), and the real
//! SDXL UNet configs.

use burn::prelude::*;
use websd::error::Error;
use websd::model::clip::{ClipConfig, ClipTextModel};
use websd::model::config::{TextTimeSpec, UNetConfig};
use websd::model::unet::{TextTime, UNet2DConditionModel};
use websd::pipeline::StableDiffusion;
use websd::weights::SafetensorsSource;
use websd::weights::convert::{self, ConvertOptions};

use crate::common::{assert_close, fixtures, parity};

fn ids(reference: &SafetensorsSource, name: &str) -> Vec<Vec<i64>> {
    let (ids, shape) = reference.read_i64(name).unwrap();
    ids.chunks(shape[1]).map(<[i64]>::to_vec).collect()
}

fn text_time(reference: &SafetensorsSource, case: usize, device: &Device) -> TextTime {
    TextTime {
        text_embeds: reference.tensor::<2>(&format!("case{case}.text_embeds"), device).unwrap(),
        time_ids: reference.tensor::<2>(&format!("case{case}.time_ids"), device).unwrap(),
    }
}

fn unet_inputs(reference: &SafetensorsSource, case: usize, device: &Device) -> (Tensor<4>, Tensor<1>, Tensor<3>) {
    (
        reference.tensor::<4>(&format!("case{case}.sample"), device).unwrap(),
        reference.tensor::<1>(&format!("case{case}.timestep"), device).unwrap(),
        reference.tensor::<3>(&format!("case{case}.encoder_hidden_states"), device).unwrap(),
    )
}

fn check_unet(device: &Device, tag: &str) {
    let unet = UNet2DConditionModel::from_dir(fixtures().join("sdxl/unet"), device).expect("load unet");
    assert_eq!(unet.text_time(), Some(TextTimeSpec { time_dim: 8, input_dim: 72 }));
    let reference = parity("sdxl/unet");
    for case in 0..3 {
        let (sample, t, ctx) = unet_inputs(&reference, case, device);
        let out = unet.forward_text_time(sample, t, ctx, None, Some(text_time(&reference, case, device))).unwrap();
        assert_close(&format!("{tag} sdxl unet case{case}"), out, &reference, &format!("case{case}.out"), 1e-4);
    }
}

#[test]
fn sdxl_unet_matches_diffusers() {
    check_unet(&Device::flex(), "flex");
}

#[test]
fn wgpu_sdxl_unet_matches_diffusers() {
    check_unet(&crate::common::wgpu_device(), "wgpu");
}

/// The UNet takes SDXL's conditioning exactly when its config says `text_time`, in the widths
/// that config gives.
#[test]
fn sdxl_unet_refuses_missing_or_misshapen_conditioning() {
    let device = Device::flex();
    let unet = UNet2DConditionModel::from_dir(fixtures().join("sdxl/unet"), &device).unwrap();
    let reference = parity("sdxl/unet");
    let (sample, t, ctx) = unet_inputs(&reference, 1, &device);
    let err = unet.forward(sample.clone(), t.clone(), ctx.clone(), None).unwrap_err();
    assert!(matches!(&err, Error::InvalidInput(m) if m.contains("needs the pooled text embedding")), "{err}");
    // Five time ids (the refiner's count) do not fill this UNet's 72 input features.
    let mut short = text_time(&reference, 1, &device);
    short.time_ids = short.time_ids.narrow(1, 0, 5);
    let err = unet.forward_text_time(sample.clone(), t.clone(), ctx.clone(), None, Some(short)).unwrap_err();
    assert!(matches!(&err, Error::InvalidInput(m) if m.contains("time_ids [2, 5]") && m.contains("72 features")), "{err}");
    // A batch that does not match the sample's.
    let mut one = text_time(&reference, 1, &device);
    one.text_embeds = one.text_embeds.narrow(0, 0, 1);
    assert!(matches!(unet.forward_text_time(sample, t, ctx, None, Some(one)), Err(Error::InvalidInput(_))));

    let sd1 = UNet2DConditionModel::from_dir(fixtures().join("sd1/unet"), &device).unwrap();
    assert_eq!(sd1.text_time(), None);
    let sd1_ref = parity("sd1/unet");
    let (sample, t, ctx) = unet_inputs(&sd1_ref, 0, &device);
    let extra = TextTime { text_embeds: Tensor::zeros([1, 24], &device), time_ids: Tensor::zeros([1, 6], &device) };
    let err = sd1.forward_text_time(sample, t, ctx, None, Some(extra)).unwrap_err();
    assert!(matches!(&err, Error::InvalidInput(m) if m.contains("only SDXL's")), "{err}");
}

/// What SDXL reads from each encoder: hidden_states[-2] without the final layer norm, and the
/// final layer's pooled output (projected by the second encoder's `text_projection`). The
/// ordinary outputs (last hidden state, clip skip 2 through the final layer norm) match too.
#[test]
fn sdxl_text_encoders_match_transformers() {
    let device = Device::flex();
    for (folder, pooled) in [("sdxl/text_encoder", "pooled"), ("sdxl/text_encoder_2", "text_embeds")] {
        let model = ClipTextModel::from_dir(fixtures().join(folder), &device).expect("load text encoder");
        let reference = parity(folder);
        for case in 0..2 {
            let rows = ids(&reference, &format!("case{case}.input_ids"));
            let what = format!("{folder} case{case}");
            let sdxl = model.forward_sdxl(&rows, 2).unwrap();
            assert_close(&format!("{what} hidden_states[-2]"), sdxl.hidden, &reference, &format!("case{case}.penultimate_hidden_state_raw"), 1e-4);
            assert_close(&format!("{what} {pooled}"), sdxl.pooled, &reference, &format!("case{case}.{pooled}"), 1e-4);
            let last = model.forward(&rows, 1).unwrap();
            assert_close(&format!("{what} last"), last.hidden, &reference, &format!("case{case}.last_hidden_state"), 1e-4);
            let penultimate = model.forward(&rows, 2).unwrap();
            assert_close(&format!("{what} penultimate"), penultimate.hidden, &reference, &format!("case{case}.penultimate_hidden_state"), 1e-4);
        }
    }
}

/// Token ids → both encoders → joined context and pooled embedding → UNet, against diffusers'
/// StableDiffusionXLPipeline.encode_prompt and UNet on the same ids (the UNet fixture's case2).
#[test]
fn sdxl_prompt_conditioning_matches_diffusers() {
    let device = Device::flex();
    let encoder = ClipTextModel::from_dir(fixtures().join("sdxl/text_encoder"), &device).unwrap();
    let encoder_2 = ClipTextModel::from_dir(fixtures().join("sdxl/text_encoder_2"), &device).unwrap();
    let unet = UNet2DConditionModel::from_dir(fixtures().join("sdxl/unet"), &device).unwrap();
    let reference = parity("sdxl/unet");
    let first = encoder.forward_sdxl(&ids(&reference, "case2.input_ids"), 2).unwrap();
    let second = encoder_2.forward_sdxl(&ids(&reference, "case2.input_ids_2"), 2).unwrap();
    let context = Tensor::cat(vec![first.hidden, second.hidden], 2);
    assert_close("sdxl context", context.clone(), &reference, "case2.encoder_hidden_states", 1e-4);
    assert_close("sdxl pooled", second.pooled.clone(), &reference, "case2.text_embeds", 1e-4);
    let sample = reference.tensor::<4>("case2.sample", &device).unwrap();
    let t = reference.tensor::<1>("case2.timestep", &device).unwrap();
    let time_ids = reference.tensor::<2>("case2.time_ids", &device).unwrap();
    let out = unet.forward_text_time(sample, t, context, None, Some(TextTime { text_embeds: second.pooled, time_ids })).unwrap();
    assert_close("sdxl unet from token ids", out, &reference, "case2.out", 1e-4);
}

/// The published SDXL base, SDXL-Turbo and refiner UNet configs (tests/fixtures/configs, copied
/// unmodified) parse into SDXL's block structure, and their text encoders into ViT-L and bigG
/// with its projection.
#[test]
fn real_sdxl_configs_give_sdxl_structure() {
    let read = |file: &str| UNetConfig::from_json(&std::fs::read_to_string(fixtures().join("configs/unet").join(file)).unwrap()).unwrap();
    for file in ["sdxl-base-hdrj-one-c8714c9.json", "sdxl-turbo-jschalter-fd8eb9c.json"] {
        let c = read(file);
        assert_eq!(c.block_out_channels, vec![320, 640, 1280], "{file}");
        assert_eq!(c.down_block_types, vec!["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "{file}");
        assert_eq!(c.up_block_types, vec!["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "{file}");
        assert_eq!(c.heads().unwrap(), vec![5, 10, 20], "{file}: heads of 64 channels each");
        assert_eq!(c.transformer_layers().unwrap(), vec![1, 2, 10], "{file}");
        assert_eq!(c.layers().unwrap(), vec![2, 2, 2], "{file}");
        assert_eq!(c.cross_dims().unwrap(), vec![2048; 3], "{file}: 768 (ViT-L) + 1280 (bigG)");
        assert!(c.use_linear_projection && !c.upcast_attention, "{file}");
        // 1280 pooled (bigG's projection) + 6 time ids × 256.
        assert_eq!(c.text_time().unwrap(), Some(TextTimeSpec { time_dim: 256, input_dim: 1280 + 6 * 256 }), "{file}");
        assert_eq!(c.mid_block_type.as_deref(), Some("UNetMidBlock2DCrossAttn"));
    }
    // The refiner: four levels, 1280-wide context (bigG only), 5 time ids (with the aesthetic score).
    let refiner = read("sdxl-refiner-jschalter-6231334.json");
    assert_eq!(refiner.transformer_layers().unwrap(), vec![4; 4]);
    assert_eq!(refiner.cross_dims().unwrap(), vec![1280; 4]);
    assert_eq!(refiner.text_time().unwrap(), Some(TextTimeSpec { time_dim: 256, input_dim: 1280 + 5 * 256 }));

    let text = |file: &str| ClipConfig::from_json(&std::fs::read_to_string(fixtures().join("configs/text_encoder").join(file)).unwrap()).unwrap();
    for (first, second) in [
        ("sdxl-base-jschalter-3ecaa31.json", "sdxl-base-text-encoder-2-jschalter-13b129b.json"),
        ("sdxl-turbo-jschalter-53bd2ac.json", "sdxl-turbo-text-encoder-2-jschalter-683a3ba.json"),
    ] {
        let (vit_l, big_g) = (text(first), text(second));
        assert!(!vit_l.with_projection() && vit_l.hidden_act == "quick_gelu" && vit_l.hidden_size == 768, "{first}");
        assert!(big_g.with_projection() && big_g.hidden_act == "gelu", "{second}");
        assert_eq!((big_g.hidden_size, big_g.num_hidden_layers, big_g.projection_dim), (1280, 32, 1280), "{second}");
        // Both say eos_token_id 2: transformers pools at the largest id (the EOS, 49407).
        assert_eq!((vit_l.eos_token_id, big_g.eos_token_id), (2, 2));
    }
}

/// Copies `from` into `to`, folders included.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_dir(&path, &target) } else { std::fs::copy(&path, &target).map(|_| ()).unwrap() }
    }
}

/// A diffusers folder with SDXL's UNet but without SDXL's second text encoder (an SD folder with
/// the UNet swapped, or the refiner) is refused by name when converted or loaded, not run into an
/// error at the first step.
#[test]
fn sd_pipeline_refuses_an_sdxl_unet() {
    let dir = std::env::temp_dir().join(format!("websd-sdxl-folder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixtures().join("sd1"), &dir);
    std::fs::remove_dir_all(dir.join("unet")).unwrap();
    copy_dir(&fixtures().join("sdxl/unet"), &dir.join("unet"));
    let out = dir.with_extension("out");
    let converted = convert::convert(&dir, &out, &ConvertOptions::default()).err().expect("convert refuses SDXL");
    let loaded = StableDiffusion::from_diffusers_dir(&dir, &Device::flex()).err().expect("the pipeline refuses SDXL");
    let _ = (std::fs::remove_dir_all(&dir), std::fs::remove_dir_all(&out));
    for err in [converted, loaded] {
        assert!(matches!(&err, Error::UnsupportedConfig(m) if m.contains("SDXL")), "{err}");
    }
}

// ---------------------------------------------------------------- the SDXL pipeline

/// SDXL base: both encoders, CFG with a negative prompt, Euler, 3 steps, against diffusers'
/// StableDiffusionXLPipeline (make_sdxl_pipeline_fixtures.py).
#[test]
fn sdxl_pipeline_euler_cfg_matches_diffusers() {
    crate::pipeline::replay("sdxl_euler");
}

/// A negative prompt left out: force_zeros_for_empty_prompt gives zero unconditional embeddings
/// (context and pooled), DPM++ 2M.
#[test]
fn sdxl_pipeline_zero_negative_dpmpp_2m_matches_diffusers() {
    crate::pipeline::replay("sdxl_dpmpp_2m_zero_negative");
}

/// The empty text as a negative prompt is encoded, not zeroed (Euler ancestral, recorded noise).
#[test]
fn sdxl_pipeline_empty_negative_prompt_is_encoded_as_diffusers_does() {
    crate::pipeline::replay("sdxl_euler_a_empty_negative");
}

/// SDXL-Turbo's sampler: Euler ancestral with trailing spacing, 2 steps, guidance 0 (no CFG).
#[test]
fn sdxl_turbo_two_steps_matches_diffusers() {
    crate::pipeline::replay("sdxl_turbo");
}

/// One trailing Euler step, guidance 0.
#[test]
fn sdxl_turbo_one_euler_step_matches_diffusers() {
    crate::pipeline::replay("sdxl_turbo_euler_1step");
}

/// StableDiffusionXLImg2ImgPipeline: strength 0.6 of 5 Euler steps, CFG.
#[test]
fn sdxl_img2img_euler_matches_diffusers() {
    crate::pipeline::replay("sdxl_img2img_euler");
}
