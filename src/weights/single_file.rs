//! Single-file checkpoints in the original LDM / A1111 naming (SD 1.x and 2.x) mapped to diffusers
//! names, following diffusers' own single-file conversion (loaders/single_file_utils.py):
//! `model.diffusion_model.*` → UNet, `first_stage_model.*` → VAE, `cond_stage_model.transformer.*`
//! (OpenAI CLIP, SD 1.x) or `cond_stage_model.model.*` (OpenCLIP, SD 2.x, fused q/k/v split into
//! three, last block dropped because SD 2 conditions on the penultimate layer) → text encoder.
//! SDXL: `conditioner.embedders.0.transformer.*` (CLIP ViT-L) → text_encoder,
//! `conditioner.embedders.1.model.*` (OpenCLIP bigG: fused q/k/v split, every block kept,
//! `text_projection` stored [width, projection] and transposed) → text_encoder_2, and the UNet's
//! `label_emb.0.{0,2}` → `add_embedding.linear_{1,2}`.

use serde_json::Value;

use super::convert::{Item, Op, SourceFile};
use crate::error::{Error, Result};

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const CLIP: &str = "cond_stage_model.transformer.";
const OPEN_CLIP: &str = "cond_stage_model.model.";
const SDXL_CLIP: &str = "conditioner.embedders.0.transformer.";
const SDXL_OPEN_CLIP: &str = "conditioner.embedders.1.model.";

pub struct SingleFile {
    /// "SD 1.x", "SD 2.x" or "SDXL".
    pub kind: &'static str,
    pub config_origin: String,
    pub items: Vec<Item>,
    pub configs: std::collections::BTreeMap<String, Value>,
    pub scheduler: Value,
    /// Source tensors not converted (EMA copies, schedule buffers, the OpenCLIP projection).
    pub ignored: usize,
    /// Of those, the EMA copies (`model_ema.*`): A1111 loads a checkpoint's own weights, not these.
    pub ema: usize,
}

/// Checkpoints of architectures websd does not run, recognised by a name only they have.
const OTHER_ARCHITECTURES: &[(&str, &str)] = &[
    // The refiner's only text encoder is OpenCLIP bigG, as embedder 0.
    ("conditioner.embedders.0.model.", "an SDXL refiner checkpoint (conditioner.embedders.0.model.*): not supported (SDXL base and Turbo are)"),
    ("model.diffusion_model.joint_blocks.", "an SD 3 checkpoint (joint_blocks): not supported"),
    ("model.diffusion_model.double_blocks.", "a FLUX checkpoint (double_blocks): not supported"),
    ("double_blocks.", "a FLUX checkpoint (double_blocks): not supported"),
    ("text_encoders.", "a checkpoint with ComfyUI/SD3-style text encoders (text_encoders.*): not supported"),
];

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("built-in config")
}

/// The unet, text_encoder (and SDXL's text_encoder_2) and vae configs, the scheduler config, and
/// where they came from.
pub type Configs = (std::collections::BTreeMap<String, Value>, Value, String);

/// Maps a single file's names; `configs` (read from a diffusers folder) override the built-in ones.
pub fn plan(file: &SourceFile, configs: Option<Configs>) -> Result<SingleFile> {
    if let Some((_, what)) = OTHER_ARCHITECTURES.iter().find(|(prefix, _)| file.names().any(|n| n.starts_with(prefix))) {
        return Err(Error::UnsupportedConfig(format!("single file: {what}")));
    }
    if file.names().any(|n| n.starts_with(SDXL_CLIP) || n.starts_with(SDXL_OPEN_CLIP)) {
        return plan_sdxl(file, configs);
    }
    let open_clip = file.names().any(|n| n.starts_with(OPEN_CLIP));
    let clip = file.names().any(|n| n.starts_with(CLIP));
    // The UNet's cross-attention context width tells SD 1.x (768) from SD 2.x (1024).
    let context = file
        .names()
        .find(|n| n.starts_with(UNET) && n.ends_with("attn2.to_k.weight"))
        .and_then(|n| file.shape(n))
        .map(|s| s[1])
        .ok_or_else(|| Error::Other("not an SD 1.x/2.x single-file checkpoint: no UNet cross-attention (model.diffusion_model.*.attn2.to_k.weight)".into()))?;
    if open_clip == clip {
        return Err(Error::Other("single file: expected exactly one text encoder (cond_stage_model.transformer.* or cond_stage_model.model.*)".into()));
    }
    let sd2 = open_clip;
    let text_width = if sd2 {
        file.shape(&format!("{OPEN_CLIP}token_embedding.weight")).map(|s| s[1])
    } else {
        // Some SD 1.x files name the CLIP tower without its `text_model.` level (mapped below either way).
        file.shape(&format!("{CLIP}text_model.embeddings.token_embedding.weight")).or_else(|| file.shape(&format!("{CLIP}embeddings.token_embedding.weight"))).map(|s| s[1])
    }
    .ok_or_else(|| Error::MissingTensor("text encoder token_embedding.weight".into()))?;
    if text_width != context {
        return Err(Error::Other(format!("single file: the text encoder's width {text_width} differs from the UNet's context width {context}")));
    }
    let kind = if sd2 { "SD 2.x" } else { "SD 1.x" };

    let (mut configs, scheduler, config_origin) = match configs {
        Some(given) => given,
        None => {
            let mut c = std::collections::BTreeMap::new();
            let (unet, text, sched, origin) = if sd2 {
                (SD21_UNET, SD2_TEXT, SD21_SCHEDULER, "built-in SD 2.1 (768, v-prediction) configs; pass --configs for others")
            } else {
                (SD15_UNET, SD1_TEXT, SD15_SCHEDULER, "built-in SD 1.5 configs")
            };
            c.insert("unet".into(), json(unet));
            c.insert("text_encoder".into(), json(text));
            c.insert("vae".into(), json(SD_VAE));
            (c, json(sched), origin.to_string())
        }
    };
    // An inpainting checkpoint (sd-v1-5-inpainting, 512-inpainting-ema) takes 9 input channels:
    // latents, mask and masked-image latents. Its conv_in says so; the built-in configs say 4.
    if let Some(in_channels) = file.shape(&format!("{UNET}input_blocks.0.0.weight")).map(|s| s[1])
        && let Some(unet) = configs.get_mut("unet").and_then(Value::as_object_mut)
    {
        unet.insert("in_channels".into(), Value::from(in_channels));
    }
    let usize_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map(|x| x as usize);
    let layers_per_block = usize_of(&configs["unet"], "layers_per_block").ok_or_else(|| Error::UnsupportedConfig("unet config: layers_per_block must be a number".into()))?;
    let vae_levels = configs["vae"].get("up_block_types").and_then(Value::as_array).map(Vec::len).unwrap_or(4);

    let mut items = Vec::new();
    let (mut ignored, mut ema) = (0, 0);
    let mut unmapped = Vec::new();
    let resblocks = if sd2 { count_resblocks(file, OPEN_CLIP) } else { 0 };
    for name in file.names() {
        let mapped = if let Some(rest) = name.strip_prefix(UNET) {
            unet_name(rest, layers_per_block).map(|n| vec![(n, Op::Copy)])
        } else if let Some(rest) = name.strip_prefix(VAE) {
            vae_name(rest, vae_levels)
        } else if let Some(rest) = name.strip_prefix(CLIP) {
            let rest = rest.strip_prefix("text_model.").unwrap_or(rest);
            if rest.ends_with("position_ids") { Some(vec![]) } else { Some(vec![(rest.to_string(), Op::Copy)]) }
        } else if let Some(rest) = name.strip_prefix(OPEN_CLIP) {
            open_clip_names(rest, resblocks)
        } else {
            // EMA copies, betas / alphas_cumprod and other training buffers.
            ignored += 1;
            ema += usize::from(name.starts_with("model_ema."));
            continue;
        };
        match mapped {
            Some(v) if v.is_empty() => ignored += 1,
            Some(v) => {
                let component = if name.starts_with(UNET) {
                    "unet"
                } else if name.starts_with(VAE) {
                    "vae"
                } else {
                    "text_encoder"
                };
                for (n, op) in v {
                    items.push(Item { component: component.into(), name: n, source: name.clone(), op });
                }
            }
            None => unmapped.push(name.clone()),
        }
    }
    if !unmapped.is_empty() {
        return Err(Error::Other(format!("single file: {} tensor(s) with no diffusers name, e.g. `{}`", unmapped.len(), unmapped[0])));
    }
    if sd2 {
        // Diffusers' SD 2 text encoder has the OpenCLIP tower less its last block.
        if let Some(tc) = configs.get_mut("text_encoder").and_then(Value::as_object_mut)
            && tc.get("num_hidden_layers").and_then(Value::as_u64) != Some(resblocks as u64 - 1)
        {
            return Err(Error::UnsupportedConfig(format!(
                "text encoder config has num_hidden_layers {:?}; the file's OpenCLIP tower has {resblocks} blocks (the last is dropped)",
                tc.get("num_hidden_layers")
            )));
        }
    }
    Ok(SingleFile { kind, config_origin, items, configs, scheduler, ignored, ema })
}

/// An SDXL base (or Turbo) checkpoint: both text encoders, as diffusers' single-file loader maps
/// them (convert_ldm_clip_checkpoint, convert_open_clip_checkpoint with the embedder's prefix).
fn plan_sdxl(file: &SourceFile, configs: Option<Configs>) -> Result<SingleFile> {
    let has = |prefix: &str| file.names().any(|n| n.starts_with(prefix));
    if !has(SDXL_CLIP) || !has(SDXL_OPEN_CLIP) {
        return Err(Error::UnsupportedConfig(format!("single file: an SDXL checkpoint needs both text encoders ({SDXL_CLIP}* and {SDXL_OPEN_CLIP}*)")));
    }
    let width = |name: &str| file.shape(name).map(|s| s[1]).ok_or_else(|| Error::MissingTensor(name.to_string()));
    let first = width(&format!("{SDXL_CLIP}text_model.embeddings.token_embedding.weight")).or_else(|_| width(&format!("{SDXL_CLIP}embeddings.token_embedding.weight")))?;
    let second = width(&format!("{SDXL_OPEN_CLIP}token_embedding.weight"))?;
    let context = file
        .names()
        .find(|n| n.starts_with(UNET) && n.ends_with("attn2.to_k.weight"))
        .and_then(|n| file.shape(n))
        .map(|s| s[1])
        .ok_or_else(|| Error::Other("not an SDXL single-file checkpoint: no UNet cross-attention (model.diffusion_model.*.attn2.to_k.weight)".into()))?;
    if first + second != context {
        return Err(Error::Other(format!("single file: the text encoders' widths {first} + {second} differ from the UNet's context width {context}")));
    }
    let (configs, scheduler, config_origin) = match configs {
        Some(given) => given,
        None => {
            let mut c = std::collections::BTreeMap::new();
            c.insert("unet".into(), json(SDXL_UNET));
            c.insert("text_encoder".into(), json(SDXL_TEXT));
            c.insert("text_encoder_2".into(), json(SDXL_TEXT_2));
            c.insert("vae".into(), json(SDXL_VAE));
            (c, json(SDXL_SCHEDULER), "built-in SDXL base 1.0 configs".to_string())
        }
    };
    if !configs.contains_key("text_encoder_2") {
        return Err(Error::UnsupportedConfig("an SDXL checkpoint with configs that have no text_encoder_2: pass an SDXL diffusers folder as --configs".into()));
    }
    let usize_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map(|x| x as usize);
    let layers_per_block = usize_of(&configs["unet"], "layers_per_block").ok_or_else(|| Error::UnsupportedConfig("unet config: layers_per_block must be a number".into()))?;
    let vae_levels = configs["vae"].get("up_block_types").and_then(Value::as_array).map(Vec::len).unwrap_or(4);
    let resblocks = count_resblocks(file, SDXL_OPEN_CLIP);
    if usize_of(&configs["text_encoder_2"], "num_hidden_layers") != Some(resblocks) {
        return Err(Error::UnsupportedConfig(format!(
            "text_encoder_2 config has num_hidden_layers {:?}; the file's OpenCLIP tower has {resblocks} blocks",
            configs["text_encoder_2"].get("num_hidden_layers")
        )));
    }

    let mut items = Vec::new();
    let (mut ignored, mut ema) = (0, 0);
    let mut unmapped = Vec::new();
    for name in file.names() {
        let (component, mapped) = if let Some(rest) = name.strip_prefix(UNET) {
            ("unet", unet_name(rest, layers_per_block).map(|n| vec![(n, Op::Copy)]))
        } else if let Some(rest) = name.strip_prefix(VAE) {
            ("vae", vae_name(rest, vae_levels))
        } else if let Some(rest) = name.strip_prefix(SDXL_CLIP) {
            let rest = rest.strip_prefix("text_model.").unwrap_or(rest);
            ("text_encoder", Some(if rest.ends_with("position_ids") { vec![] } else { vec![(rest.to_string(), Op::Copy)] }))
        } else if let Some(rest) = name.strip_prefix(SDXL_OPEN_CLIP) {
            let mapped = match rest {
                // diffusers: `text_projection.weight` is the stored matrix transposed.
                "text_projection" => Some(vec![("text_projection.weight".to_string(), Op::Transpose)]),
                _ => open_clip_names(rest, usize::MAX),
            };
            ("text_encoder_2", mapped)
        } else {
            ignored += 1;
            ema += usize::from(name.starts_with("model_ema."));
            continue;
        };
        match mapped {
            Some(v) if v.is_empty() => ignored += 1,
            Some(v) => items.extend(v.into_iter().map(|(n, op)| Item { component: component.into(), name: n, source: name.clone(), op })),
            None => unmapped.push(name.clone()),
        }
    }
    if !unmapped.is_empty() {
        return Err(Error::Other(format!("single file: {} tensor(s) with no diffusers name, e.g. `{}`", unmapped.len(), unmapped[0])));
    }
    Ok(SingleFile { kind: "SDXL", config_origin, items, configs, scheduler, ignored, ema })
}

fn count_resblocks(file: &SourceFile, prefix: &str) -> usize {
    file.names().filter_map(|n| n.strip_prefix(prefix)?.strip_prefix("transformer.resblocks.")?.split('.').next()?.parse::<usize>().ok()).max().map_or(0, |m| m + 1)
}

fn resnet_rename(rest: &str) -> String {
    rest.replace("in_layers.0", "norm1")
        .replace("in_layers.2", "conv1")
        .replace("out_layers.0", "norm2")
        .replace("out_layers.3", "conv2")
        .replace("emb_layers.1", "time_emb_proj")
        .replace("skip_connection", "conv_shortcut")
}

/// `input_blocks.4.1.proj_in.weight` → `down_blocks.1.attentions.0.proj_in.weight`, etc.
fn unet_name(rest: &str, lpb: usize) -> Option<String> {
    let fixed = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        // SDXL's added embedding (diffusers: `label_emb` for addition_embed_type "text_time").
        ("label_emb.0.0.", "add_embedding.linear_1."),
        ("label_emb.0.2.", "add_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ];
    for (ldm, diff) in fixed {
        if let Some(tail) = rest.strip_prefix(ldm) {
            return Some(format!("{diff}{tail}"));
        }
    }
    if let Some(t) = rest.strip_prefix("middle_block.") {
        let (i, tail) = t.split_once('.')?;
        return match i {
            "0" | "2" => Some(format!("mid_block.resnets.{}.{}", if i == "0" { 0 } else { 1 }, resnet_rename(tail))),
            "1" => Some(format!("mid_block.attentions.0.{tail}")),
            _ => None,
        };
    }
    let mut parts = rest.splitn(4, '.');
    let (block, i, j, tail) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let (i, j): (usize, usize) = (i.parse().ok()?, j.parse().ok()?);
    match block {
        "input_blocks" if i >= 1 => {
            let (b, l) = ((i - 1) / (lpb + 1), (i - 1) % (lpb + 1));
            match j {
                0 if tail.starts_with("op.") => Some(format!("down_blocks.{b}.downsamplers.0.conv.{}", &tail[3..])),
                0 => Some(format!("down_blocks.{b}.resnets.{l}.{}", resnet_rename(tail))),
                1 => Some(format!("down_blocks.{b}.attentions.{l}.{tail}")),
                _ => None,
            }
        }
        "output_blocks" => {
            let (b, l) = (i / (lpb + 1), i % (lpb + 1));
            match j {
                0 => Some(format!("up_blocks.{b}.resnets.{l}.{}", resnet_rename(tail))),
                1 | 2 if tail.starts_with("conv.") => Some(format!("up_blocks.{b}.upsamplers.0.{tail}")),
                1 => Some(format!("up_blocks.{b}.attentions.{l}.{tail}")),
                _ => None,
            }
        }
        _ => None,
    }
}

fn vae_name(rest: &str, levels: usize) -> Option<Vec<(String, Op)>> {
    let one = |n: String| Some(vec![(n, Op::Copy)]);
    if rest.starts_with("quant_conv.") || rest.starts_with("post_quant_conv.") {
        return one(rest.to_string());
    }
    let (side, r) = rest.split_once('.')?;
    if side != "encoder" && side != "decoder" {
        return None;
    }
    if r.starts_with("conv_in.") || r.starts_with("conv_out.") {
        return one(rest.to_string());
    }
    if let Some(t) = r.strip_prefix("norm_out.") {
        return one(format!("{side}.conv_norm_out.{t}"));
    }
    let resnet = |t: &str| t.replace("nin_shortcut", "conv_shortcut");
    if let Some(t) = r.strip_prefix("mid.block_") {
        let (k, t) = t.split_once('.')?;
        let k: usize = k.parse().ok()?;
        return one(format!("{side}.mid_block.resnets.{}.{}", k.checked_sub(1)?, resnet(t)));
    }
    if let Some(t) = r.strip_prefix("mid.attn_1.") {
        let (param, kind) = t.split_once('.')?;
        let name = match param {
            "norm" => "group_norm",
            "q" => "to_q",
            "k" => "to_k",
            "v" => "to_v",
            "proj_out" => "to_out.0",
            _ => return None,
        };
        let op = if param == "norm" { Op::Copy } else { Op::Squeeze };
        return Some(vec![(format!("{side}.mid_block.attentions.0.{name}.{kind}"), op)]);
    }
    let (dir, t) = if side == "encoder" { ("down", r.strip_prefix("down.")?) } else { ("up", r.strip_prefix("up.")?) };
    let (i, t) = t.split_once('.')?;
    let i: usize = i.parse().ok()?;
    // LDM numbers the decoder's levels from the bottom, diffusers from the top.
    let level = if side == "encoder" { i } else { levels.checked_sub(1 + i)? };
    if let Some(t) = t.strip_prefix("block.") {
        return one(format!("{side}.{dir}_blocks.{level}.resnets.{}", resnet(t)));
    }
    for sampler in ["downsample.", "upsample."] {
        if let Some(t) = t.strip_prefix(sampler) {
            return one(format!("{side}.{dir}_blocks.{level}.{dir}samplers.0.{t}"));
        }
    }
    None
}

fn open_clip_names(rest: &str, resblocks: usize) -> Option<Vec<(String, Op)>> {
    let one = |n: &str| Some(vec![(n.to_string(), Op::Copy)]);
    match rest {
        "token_embedding.weight" => return one("embeddings.token_embedding.weight"),
        "positional_embedding" => return one("embeddings.position_embedding.weight"),
        "ln_final.weight" => return one("final_layer_norm.weight"),
        "ln_final.bias" => return one("final_layer_norm.bias"),
        // Not part of CLIPTextModel (diffusers ignores them too).
        "text_projection" | "logit_scale" | "attn_mask" => return Some(vec![]),
        _ => {}
    }
    let t = rest.strip_prefix("transformer.resblocks.")?;
    let (i, t) = t.split_once('.')?;
    let i: usize = i.parse().ok()?;
    if i + 1 == resblocks {
        return Some(vec![]);
    }
    let p = format!("encoder.layers.{i}");
    let split = |kind: &str| Some(["q", "k", "v"].iter().enumerate().map(|(k, x)| (format!("{p}.self_attn.{x}_proj.{kind}"), Op::Third(k))).collect());
    match t {
        "attn.in_proj_weight" => split("weight"),
        "attn.in_proj_bias" => split("bias"),
        _ => {
            let t = t
                .replace("ln_1.", "layer_norm1.")
                .replace("ln_2.", "layer_norm2.")
                .replace("mlp.c_fc.", "mlp.fc1.")
                .replace("mlp.c_proj.", "mlp.fc2.")
                .replace("attn.out_proj.", "self_attn.out_proj.");
            let known = ["layer_norm1.", "layer_norm2.", "mlp.fc1.", "mlp.fc2.", "self_attn.out_proj."];
            known.iter().any(|k| t.starts_with(k)).then(|| vec![(format!("{p}.{t}"), Op::Copy)])
        }
    }
}

// Built-in configs (diffusers' for runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1).
const SD15_UNET: &str = r#"{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
 "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 768,
 "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
 "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
 "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
 "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}"#;
const SD21_UNET: &str = r#"{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20],
 "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": false, "cross_attention_dim": 1024,
 "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
 "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
 "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
 "sample_size": 96, "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
 "use_linear_projection": true, "upcast_attention": true}"#;
const SD1_TEXT: &str = r#"{"architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 768,
 "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "num_attention_heads": 12,
 "num_hidden_layers": 12, "vocab_size": 49408, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 768}"#;
const SD2_TEXT: &str = r#"{"architectures": ["CLIPTextModel"], "hidden_act": "gelu", "hidden_size": 1024,
 "intermediate_size": 4096, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "num_attention_heads": 16,
 "num_hidden_layers": 23, "vocab_size": 49408, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 512}"#;
const SD_VAE: &str = r#"{"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
 "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
 "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
 "sample_size": 512, "scaling_factor": 0.18215,
 "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#;
const SD15_SCHEDULER: &str = r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
 "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#;
const SD21_SCHEDULER: &str = r#"{"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
 "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}"#;

// SDXL base 1.0's configs (stabilityai/stable-diffusion-xl-base-1.0; SDXL-Turbo's networks are the same).
pub(crate) const SDXL_UNET: &str = r#"{"_class_name": "UNet2DConditionModel", "act_fn": "silu", "addition_embed_type": "text_time",
 "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20],
 "block_out_channels": [320, 640, 1280], "center_input_sample": false, "cross_attention_dim": 2048,
 "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
 "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1,
 "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
 "projection_class_embeddings_input_dim": 2816, "sample_size": 128, "transformer_layers_per_block": [1, 2, 10],
 "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": true}"#;
pub(crate) const SDXL_TEXT: &str = r#"{"architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 768,
 "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "num_attention_heads": 12,
 "num_hidden_layers": 12, "vocab_size": 49408, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 768}"#;
pub(crate) const SDXL_TEXT_2: &str = r#"{"architectures": ["CLIPTextModelWithProjection"], "hidden_act": "gelu", "hidden_size": 1280,
 "intermediate_size": 5120, "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "num_attention_heads": 20,
 "num_hidden_layers": 32, "vocab_size": 49408, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 1280}"#;
pub(crate) const SDXL_VAE: &str = r#"{"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
 "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
 "force_upcast": true, "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
 "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.13025,
 "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}"#;
const SDXL_SCHEDULER: &str = r#"{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear", "num_train_timesteps": 1000,
 "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false, "skip_prk_steps": true,
 "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": null, "use_karras_sigmas": false}"#;
