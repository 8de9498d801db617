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

/// What the page and the CLI fill in for SDXL (src/suggested.rs, from the published configs):
/// SDXL base at 1024² (its UNet's sample_size 128 × 8) with its Euler config, SDXL-Turbo at
/// 512² (sample_size 64) with Euler ancestral, and the one step without guidance its manifest
/// carries when converted with `--suggest-steps 1 --suggest-guidance 0`.
#[test]
fn real_sdxl_configs_suggest_their_sizes_and_samplers() {
    use websd::scheduler::{SchedulerConfig, SchedulerKind};
    use websd::suggested::{Hints, Suggested};
    let read = |dir: &str, file: &str| std::fs::read_to_string(fixtures().join("configs").join(dir).join(file)).unwrap();
    let vae = websd::model::config::VaeConfig::sdxl();
    let base = Suggested::infer(
        &UNetConfig::from_json(&read("unet", "sdxl-base-hdrj-one-c8714c9.json")).unwrap(),
        &vae,
        &SchedulerConfig::from_json(&read("scheduler", "sdxl-base-eulerdiscrete-hdrj-one-e5bc842.json")).unwrap(),
        &Hints::default(),
    );
    assert_eq!((base.scheduler, base.steps, base.guidance_scale, base.width, base.height), (SchedulerKind::Euler, 20, 7.5, 1024, 1024));
    let turbo = Suggested::infer(
        &UNetConfig::from_json(&read("unet", "sdxl-turbo-jschalter-fd8eb9c.json")).unwrap(),
        &vae,
        &SchedulerConfig::from_json(&read("scheduler", "sdxl-turbo-eulerancestraldiscrete-jschalter-b703f8b.json")).unwrap(),
        &Hints { steps: Some(1), guidance_scale: Some(0.0) },
    );
    assert_eq!((turbo.scheduler, turbo.steps, turbo.guidance_scale, turbo.width, turbo.height), (SchedulerKind::EulerAncestral, 1, 0.0, 512, 512));
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

// ---------------------------------------------------------------- converted SDXL folders

/// Converts `folder` into a fresh directory; the manifest read back from disk.
fn convert_sdxl(folder: &std::path::Path, quant: convert::Quant, tag: &str) -> (std::path::PathBuf, websd::weights::Manifest) {
    let out = std::env::temp_dir().join(format!("websd-sdxl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = ConvertOptions { quant, min_quant_elements: 256, ..Default::default() };
    let converted = convert::convert(folder, &out, &opts).expect("convert");
    println!("{tag}:\n{}", convert::size_table(&converted));
    let manifest = websd::weights::Manifest::parse(&std::fs::read(out.join("manifest.json")).unwrap()).expect("manifest parses");
    assert_eq!(manifest, converted.manifest, "manifest.json round-trips");
    (out, manifest)
}

/// A converted model, loaded shard by shard as the browser loads it.
fn load_converted(dir: &std::path::Path, manifest: &websd::weights::Manifest) -> StableDiffusion {
    let device = Device::flex();
    let prepared = pollster::block_on(websd::weights::prepared::prepare(
        manifest,
        &device,
        |_, entry| {
            let path = dir.join(&entry.file);
            async move { std::fs::read(&path).map_err(|e| websd::Error::io(&path, e)) }
        },
        |_, _| {},
    ))
    .unwrap();
    StableDiffusion::from_prepared(manifest, prepared, &device, burn::tensor::FloatDType::F32).unwrap()
}

/// The diffusers SDXL folder converts with both encoders and both tokenizers' padding (the
/// second's `text_projection` kept), and the converted model generates what diffusers'
/// StableDiffusionXLPipeline generates: f16 storage is exact here (the fixture's weights are f16
/// values), q8 within 3% of the image after one step.
#[test]
fn converted_sdxl_folder_generates_like_diffusers() {
    let (dir, manifest) = convert_sdxl(&fixtures().join("sdxl"), convert::Quant::F16, "f16");
    let components: Vec<&str> = manifest.components.keys().map(String::as_str).collect();
    assert_eq!(components, ["text_encoder", "text_encoder_2", "unet", "vae"]);
    assert_eq!((manifest.tokenizer.variant.as_str(), manifest.tokenizer.pad_token_id), ("clip-sd1", 49407));
    let second = manifest.tokenizer_2.as_ref().expect("the second tokenizer");
    assert_eq!((second.variant.as_str(), second.pad_token_id), ("clip-sd2", 0));
    assert!(manifest.force_zeros_for_empty_prompt);
    let has = |component: &str, name: &str| manifest.tensors.iter().any(|t| t.component == component && t.name == name);
    assert!(has("text_encoder_2", "text_projection.weight") && has("text_encoder_2", "embeddings.token_embedding.weight"));
    assert!(!manifest.tensors.iter().any(|t| t.name.ends_with("position_ids") || (t.component == "text_encoder" && t.name.starts_with("text_projection"))));
    let sd = load_converted(&dir, &manifest);
    assert_eq!((sd.pad_token, sd.pad_token_2), (49407, 0));
    let err = crate::pipeline::replay_with("sdxl_euler", &sd);
    assert!(err < 1e-4, "converted f16 SDXL: image relative error {err:.2e}");
    let folder = StableDiffusion::from_diffusers_dir(fixtures().join("sdxl"), &Device::flex()).unwrap();
    let unconverted = crate::pipeline::replay_with("sdxl_euler", &folder);
    assert!((err - unconverted).abs() < 1e-6, "converted {err:.2e} vs folder {unconverted:.2e}");
    let _ = std::fs::remove_dir_all(&dir);

    let (dir, manifest) = convert_sdxl(&fixtures().join("sdxl"), convert::Quant::Q8, "q8");
    let quantized = |component: &str| manifest.tensors.iter().filter(|t| t.component == component && t.dtype == websd::weights::manifest::StorageDtype::Q8).count();
    assert!(quantized("text_encoder_2") > 0 && quantized("unet") > 0, "q8 reaches both encoders and the UNet");
    // One step without CFG: CFG 5 over 3 steps amplifies the random model's 0.6% weight error
    // (the size table's rel.err) several times over.
    let mut sd = load_converted(&dir, &manifest);
    sd.scheduler_config.timestep_spacing = Some("trailing".into()); // as the trace's JSON says
    let err = crate::pipeline::replay_quantized("sdxl_turbo_euler_1step", &sd);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(err < 3e-2, "converted q8 SDXL: image relative error {err:.2e}");
}

/// model_index.json's force_zeros_for_empty_prompt reaches the converted model (false here).
#[test]
fn sdxl_force_zeros_for_empty_prompt_is_read_from_model_index() {
    let dir = std::env::temp_dir().join(format!("websd-sdxl-nozeros-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&fixtures().join("sdxl"), &dir);
    let index = std::fs::read_to_string(dir.join("model_index.json")).unwrap().replace("\"force_zeros_for_empty_prompt\": true", "\"force_zeros_for_empty_prompt\": false");
    std::fs::write(dir.join("model_index.json"), index).unwrap();
    let folder = StableDiffusion::from_diffusers_dir(&dir, &Device::flex()).unwrap();
    let (out, manifest) = convert_sdxl(&dir, convert::Quant::F16, "nozeros-out");
    let _ = (std::fs::remove_dir_all(&dir), std::fs::remove_dir_all(&out));
    assert!(!folder.force_zeros_for_empty_prompt && !manifest.force_zeros_for_empty_prompt);
    let json = serde_json::to_value(&manifest).unwrap();
    assert_eq!(json["force_zeros_for_empty_prompt"], false);
}

/// A user's settings become an SDXL request: the prompts through both tokenizers (the same
/// BPE ids, padded with `<|endoftext|>` and with `!`), and an empty negative prompt left out
/// (diffusers' None, zeros under force_zeros_for_empty_prompt) while a given one is kept.
#[test]
fn sdxl_settings_tokenize_for_both_encoders() {
    let sd = StableDiffusion::from_diffusers_dir(fixtures().join("sdxl"), &Device::flex()).unwrap();
    let settings = |negative: &str| -> websd::pipeline::generate::Settings {
        serde_json::from_value(serde_json::json!({"prompt": "a fox in the snow", "negative_prompt": negative, "width": 64, "height": 64})).unwrap()
    };
    let req = sd.request(&settings("")).unwrap();
    assert!(req.negative_prompt.is_empty() && req.negative_prompt_2.is_empty(), "an empty negative prompt is left out");
    assert_eq!((req.prompt.len(), req.prompt_2.len()), (1, 1));
    let (first, second) = (&req.prompt[0], &req.prompt_2[0]);
    let eos = first.iter().position(|&id| id == 49407).expect("EOS");
    assert!(eos > 1 && first[eos..].iter().all(|&id| id == 49407), "{first:?}");
    assert_eq!(second[..=eos], first[..=eos], "the same ids up to EOS");
    assert!(second[eos + 1..].iter().all(|&id| id == 0), "the second tokenizer pads with `!`: {second:?}");
    let req = sd.request(&settings("blurry")).unwrap();
    assert_eq!((req.negative_prompt.len(), req.negative_prompt_2.len()), (1, 1));
    assert_eq!(req.negative_prompt_2[0][3..], [0; 74]);
}

// ---------------------------------------------------------------- single-file SDXL checkpoints

/// Every tensor of `component`, by name, as the converted model stores it.
fn converted_tensors(manifest: &websd::weights::Manifest, dir: &std::path::Path, component: &str) -> std::collections::BTreeMap<String, Vec<f32>> {
    use websd::weights::{ManifestSource, ShardStore, TensorSource};
    let device = Device::flex();
    let mut src = ManifestSource::new(manifest, component, ShardStore::from_dir(manifest, dir)).unwrap();
    src.names()
        .into_iter()
        .map(|n| {
            let shape = src.shape(&n).unwrap();
            let t = src.load(&n, &shape, &device).unwrap_or_else(|e| panic!("{component}/{n}: {e}"));
            (n, crate::common::values(t))
        })
        .collect()
}

/// An SDXL single-file checkpoint (tests/fixtures/make_single_file.py: sdxl/ in SDXL's LDM
/// naming, checked there against diffusers' own single-file conversion: label_emb, both
/// embedders, bigG's fused q/k/v and transposed text_projection) converts to exactly the
/// tensors, configs and tokenizers of the diffusers folder.
#[test]
fn sdxl_single_file_matches_the_diffusers_folder() {
    let root = fixtures().join("sdxl");
    let file = fixtures().join("single_file/sdxl.safetensors");
    let (from_dir, a) = convert_sdxl(&root, convert::Quant::F16, "sf-dir");
    let out = std::env::temp_dir().join(format!("websd-sdxl-sf-file-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let converted = convert::convert(&file, &out, &ConvertOptions { configs: Some(root.clone()), ..Default::default() }).unwrap();
    assert!(converted.notes.iter().any(|n| n.contains("SDXL")), "{:?}", converted.notes);
    let b = converted.manifest;
    assert_eq!(a.components, b.components, "configs");
    assert_eq!((&a.tokenizer, &a.tokenizer_2), (&b.tokenizer, &b.tokenizer_2), "tokenizers");
    for component in ["text_encoder", "text_encoder_2", "unet", "vae"] {
        let (x, y) = (converted_tensors(&a, &from_dir, component), converted_tensors(&b, &out, component));
        assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{component}: names");
        for (name, v) in &x {
            assert_eq!(v, &y[name], "{component}/{name}: values");
        }
        println!("sdxl single file: {component}: {} tensors identical", x.len());
    }
    assert!(b.tensors.iter().any(|t| t.component == "unet" && t.name == "add_embedding.linear_1.weight"));
    // The built-in configs are SDXL base 1.0's: the fixture's 3-block bigG does not fit them.
    let builtin = std::env::temp_dir().join(format!("websd-sdxl-sf-builtin-{}", std::process::id()));
    let err = convert::convert(&file, &builtin, &ConvertOptions::default()).err().expect("built-in config mismatch");
    let _ = [&from_dir, &out, &builtin].map(std::fs::remove_dir_all);
    assert!(matches!(&err, Error::UnsupportedConfig(m) if m.contains("32")), "{err}");
}

/// A1111 weights on SDXL scale each encoder's embeddings by token and give each back its own
/// mean (as the SD pipeline does for its one encoder); the pooled embedding is left alone.
#[test]
fn sdxl_prompt_weights_scale_each_encoder_and_keep_its_mean() {
    let sd = StableDiffusion::from_diffusers_dir(fixtures().join("sdxl"), &Device::flex()).unwrap();
    let reference = parity("sdxl/unet");
    let (first, second) = (ids(&reference, "case2.input_ids").remove(0), ids(&reference, "case2.input_ids_2").remove(0));
    let (plain, pooled) = sd.encode_prompt_sdxl(std::slice::from_ref(&first), std::slice::from_ref(&second), &[], 1).unwrap();
    let mut w = vec![1.0f32; 77];
    w[2] = 1.5;
    w[3] = 0.5;
    let (weighted, weighted_pooled) = sd.encode_prompt_sdxl(&[first], &[second], &[w.clone()], 1).unwrap();
    assert_eq!(crate::common::values(pooled), crate::common::values(weighted_pooled), "pooled unweighted");
    let d = plain.dims()[2];
    let (plain, weighted) = (crate::common::values(plain), crate::common::values(weighted));
    for (from, to) in [(0, 16), (16, d)] {
        // Encoder 1's 16 features, then encoder 2's 48, of every token.
        let part = |v: &[f32]| -> Vec<(usize, f32)> { v.chunks(d).enumerate().flat_map(|(t, row)| row[from..to].iter().map(move |&x| (t, x))).collect() };
        let (p, q) = (part(&plain), part(&weighted));
        let mean = |v: &[(usize, f32)], f: &dyn Fn(usize) -> f32| v.iter().map(|&(t, x)| (x * f(t)) as f64).sum::<f64>() / v.len() as f64;
        let scale = (mean(&p, &|_| 1.0) / mean(&p, &|t| w[t])) as f32;
        for (&(t, x), &(_, y)) in p.iter().zip(&q) {
            let expected = x * w[t] * scale;
            assert!((y - expected).abs() < 1e-4 * expected.abs().max(1.0), "features {from}..{to}, token {t}: {y} vs {expected}");
        }
        assert!((mean(&q, &|_| 1.0) - mean(&p, &|_| 1.0)).abs() < 1e-5, "features {from}..{to}: mean kept");
    }
}

/// The pipeline takes SDXL base's networks together and refuses other pairings by name: the
/// refiner's UNet (five time ids: an aesthetic score instead of the target size), a second text
/// encoder beside an SD UNet, and an SDXL UNet whose added embedding does not fit the second
/// encoder's projection.
#[test]
fn sdxl_pipeline_checks_its_networks_fit_together() {
    use websd::pipeline::check_pipeline;
    let unet = |file: &str| UNetConfig::from_json(&std::fs::read_to_string(fixtures().join("configs/unet").join(file)).unwrap()).unwrap();
    let (_, big_g) = ClipConfig::sdxl();
    assert!(check_pipeline(&UNetConfig::sdxl(), Some(&big_g)).is_ok());
    assert!(check_pipeline(&unet("sdxl-turbo-jschalter-fd8eb9c.json"), Some(&big_g)).is_ok());
    let refused = |unet: &UNetConfig, second: Option<&ClipConfig>| match check_pipeline(unet, second) {
        Err(Error::UnsupportedConfig(m)) => m,
        other => panic!("not refused: {other:?}"),
    };
    let refiner = unet("sdxl-refiner-jschalter-6231334.json");
    assert!(refused(&refiner, Some(&big_g)).contains("refiner"));
    assert!(refused(&refiner, None).contains("refiner"));
    assert!(refused(&UNetConfig::sd15(), Some(&big_g)).contains("not SDXL's"));
    let mut narrow = big_g.clone();
    narrow.projection_dim = 1024;
    assert!(refused(&UNetConfig::sdxl(), Some(&narrow)).contains("2816 features"));
}
