//! LoRA against diffusers' `load_lora_weights` + `set_adapters` on the tiny sd1 model
//! (tests/fixtures/make_lora_fixtures.py): one file in diffusers/PEFT naming, the same matrices in
//! kohya naming with an alpha, each at a weight and both at once; the UNet's and text encoder's
//! outputs must match. A LoRA that does not fit the model is refused, naming its tensor.

use burn::prelude::*;
use websd::pipeline::StableDiffusion;
use websd::weights::lora::{Component, Lora};
use websd::weights::{SafetensorsSource, TensorSource};

use crate::common::{assert_close, fixtures};

fn lora(file: &str) -> Lora {
    Lora::from_file(fixtures().join("lora").join(file)).unwrap()
}

fn check(case: &str, loras: &[(Lora, f32)]) {
    let device = Device::flex();
    let sd = StableDiffusion::from_diffusers_dir_with_loras(fixtures().join("sd1"), &device, loras).unwrap();
    let reference = SafetensorsSource::from_file(fixtures().join("lora/reference.safetensors")).unwrap();
    let sample = reference.tensor::<4>("sample", &device).unwrap();
    let t = reference.tensor::<1>("timestep", &device).unwrap();
    let ctx = reference.tensor::<3>("encoder_hidden_states", &device).unwrap();
    assert_close(&format!("LoRA {case}: unet"), sd.unet.forward(sample, t, ctx, None).unwrap(), &reference, &format!("{case}.unet"), 1e-4);
    let ids = vec![reference.read_i64("input_ids").unwrap().0];
    assert_close(&format!("LoRA {case}: text encoder"), sd.text_encoder.forward(&ids, 1).unwrap().hidden, &reference, &format!("{case}.text"), 1e-4);
}

#[test]
fn both_namings_match_diffusers_alone_and_together() {
    let (peft, kohya) = (lora("diffusers.safetensors"), lora("kohya.safetensors"));
    // The fixture's LoRA: the 8 attention projections and the 1×1-conv proj_in/proj_out of each
    // of the UNet's 11 transformers, and the text encoder's 3 layers × q, k, v, out.
    for l in [&peft, &kohya] {
        assert_eq!((l.modules(Component::Unet), l.modules(Component::TextEncoder)), (11 * 10, 12), "{}", l.name);
    }
    check("base", &[]);
    check("diffusers", &[(peft.clone(), 1.0)]);
    check("kohya", &[(kohya.clone(), 0.7)]);
    check("both", &[(peft, 0.6), (kohya, 1.3)]);
}

/// Rewrites the kohya fixture with `change` applied to its tensor names and values.
fn altered(change: impl Fn(&str, Vec<f32>, Vec<usize>) -> Option<(String, Vec<f32>, Vec<usize>)>) -> Vec<u8> {
    let file = SafetensorsSource::from_file(fixtures().join("lora/kohya.safetensors")).unwrap();
    let tensors: Vec<(String, Vec<f32>, Vec<usize>)> = file
        .names()
        .into_iter()
        .filter_map(|n| {
            let (v, s) = file.read_f32(&n).unwrap();
            change(&n, v, s)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(n, v, s)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck_f32(v)).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

fn bytemuck_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no invalid bit patterns and u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

#[test]
fn a_lora_that_does_not_fit_names_its_first_tensor() {
    let device = Device::flex();
    let load = |bytes: Vec<u8>| {
        let lora = Lora::from_bytes("odd", bytes)?;
        StableDiffusion::from_diffusers_dir_with_loras(fixtures().join("sd1"), &device, &[(lora, 1.0)]).map(|_| ())
    };
    // A module the model does not have (a LoRA for another architecture).
    let renamed = altered(|n, v, s| Some((n.replace("lora_unet_mid_block_attentions_0_proj_in", "lora_unet_mid_block_attentions_7_proj_in"), v, s)));
    let err = load(renamed).unwrap_err();
    assert_eq!(err.code(), "BadLora");
    assert_eq!(err.to_string(), "LoRA odd: `lora_unet_mid_block_attentions_7_proj_in.lora_down.weight` matches no weight of this model's unet");
    // A pair of the wrong width.
    let widened = altered(|n, mut v, mut s| {
        if n == "lora_te_text_model_encoder_layers_1_self_attn_k_proj.lora_down.weight" {
            s[1] += 1;
            v.resize(s.iter().product(), 0.0);
        }
        Some((n.to_string(), v, s))
    });
    let err = load(widened).unwrap_err().to_string();
    assert!(err.starts_with("LoRA odd: `lora_te_text_model_encoder_layers_1_self_attn_k_proj.lora_down.weight` is [4, 17]"), "{err}");
    // A half pair, and a name that is no LoRA tensor.
    let half = altered(|n, v, s| (!n.starts_with("lora_unet_down_blocks_0_attentions_0_proj_out.lora_up")).then(|| (n.to_string(), v, s)));
    assert!(load(half).unwrap_err().to_string().contains("module `down_blocks_0_attentions_0_proj_out` of the unet has no down/up pair"));
    let stray = altered(|n, v, s| Some((n.replace("lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha", "model.diffusion_model.x"), v, s)));
    let err = load(stray).unwrap_err().to_string();
    assert!(err.contains("`model.diffusion_model.x` is not a LoRA tensor websd reads"), "{err}");
}

/// A prompt's `<lora:…>` tags must be what the model was loaded with: the pipeline refuses a
/// mismatch (the page and the CLI reload with the right LoRAs first) and never feeds the tag to
/// the text encoder as words.
#[test]
fn a_prompt_asking_for_other_loras_than_the_loaded_ones_is_refused() {
    let device = Device::flex();
    let sd = StableDiffusion::from_diffusers_dir_with_loras(fixtures().join("sd1"), &device, &[(lora("kohya.safetensors"), 0.7)]).unwrap();
    let settings = |prompt: &str| serde_json::from_value::<websd::pipeline::generate::Settings>(serde_json::json!({"prompt": prompt, "width": 64, "height": 64})).unwrap();
    let err = sd.request(&settings("a fox <lora:kohya:0.5>")).err().unwrap();
    assert_eq!((err.code(), err.to_string()), ("InvalidRequest", "the prompt asks for <lora:kohya:0.5> but the model is loaded with <lora:kohya:0.7>".into()));
    let err = sd.request(&settings("a fox")).err().unwrap().to_string();
    assert_eq!(err, "the prompt asks for no LoRA but the model is loaded with <lora:kohya:0.7>");
    // With the tag it runs, and the text encoder sees the prompt without it.
    let tagged = sd.request(&settings("a fox <lora:kohya:0.7>")).unwrap();
    let (plain, _) = sd.tokenize("a fox ").unwrap();
    assert_eq!(tagged.prompt, plain);
}
