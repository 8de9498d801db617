//! Building a `StableDiffusion` from a diffusers folder or from a converted model's shards.

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::{Configs, StableDiffusion};
use crate::error::{Error, Result};
use crate::model::clip::{ClipConfig, ClipTextModel};
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::taesd::Taesd;
use crate::model::unet::UNet2DConditionModel;
use crate::model::vae::AutoencoderKL;
use crate::scheduler::SchedulerConfig;
use crate::weights::TensorSource;
use crate::weights::lora::{Component, Lora, WithLoras};

impl Configs {
    /// A converted model's configs, from its manifest (a manifest whose configs Rust refuses fails
    /// here, before any weight is read).
    pub fn from_manifest(manifest: &crate::weights::Manifest) -> Result<Self> {
        let config = |name: &str| manifest.components.get(name).map(|v| v.to_string()).ok_or_else(|| Error::Other(format!("the model has no {name}")));
        let unet = UNetConfig::from_json(&config("unet")?)?;
        let text_encoder_2 = match manifest.components.get("text_encoder_2") {
            Some(c) => Some(ClipConfig::from_json(&c.to_string())?),
            None => None,
        };
        super::check_pipeline(&unet, text_encoder_2.as_ref())?;
        Ok(Self { unet, vae: VaeConfig::from_json(&config("vae")?)?, text_encoder: ClipConfig::from_json(&config("text_encoder")?)?, text_encoder_2 })
    }
}

impl StableDiffusion {
    /// Loads a diffusers pipeline folder (text_encoder/, unet/, vae/, scheduler/, and taesd/ when
    /// present beside them; SDXL's also text_encoder_2/ and tokenizer_2/).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_diffusers_dir(dir: impl AsRef<std::path::Path>, device: &Device) -> Result<Self> {
        Self::from_diffusers_dir_with_loras(dir, device, &[])
    }

    /// [`StableDiffusion::from_diffusers_dir`] with LoRAs (each with its weight) merged in.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_diffusers_dir_with_loras(dir: impl AsRef<std::path::Path>, device: &Device, loras: &[(Lora, f32)]) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e));
        use crate::weights::{SafetensorsSource, WeightLoader};
        let scheduler_config = SchedulerConfig::from_json(&read(dir.join("scheduler/scheduler_config.json"))?)?;
        let text_config = crate::config_json::parse_value(&read(dir.join("text_encoder/config.json"))?, "text encoder config")?;
        let configs = Configs {
            unet: UNetConfig::from_json(&read(dir.join("unet/config.json"))?)?,
            vae: VaeConfig::from_json(&read(dir.join("vae/config.json"))?)?,
            text_encoder: ClipConfig::from_json(&read(dir.join("text_encoder/config.json"))?)?,
            text_encoder_2: if dir.join("text_encoder_2").is_dir() { Some(ClipConfig::from_json(&read(dir.join("text_encoder_2/config.json"))?)?) } else { None },
        };
        super::check_pipeline(&configs.unet, configs.text_encoder_2.as_ref())?;
        let text_config_2 = match configs.text_encoder_2 {
            Some(_) => Some(crate::config_json::parse_value(&read(dir.join("text_encoder_2/config.json"))?, "text encoder 2 config")?),
            None => None,
        };
        let taesd_dir = dir.join("taesd");
        let suggested = crate::suggested::Suggested::infer(&configs.unet, &configs.vae, &scheduler_config, &Default::default());
        let weights = |name: &str| SafetensorsSource::from_dir(dir.join(name));
        Ok(Self {
            text_encoder: with_loras(&mut weights("text_encoder")?, Component::TextEncoder, loras, |s| {
                ClipTextModel::load(&configs.text_encoder, &mut WeightLoader::new(s, device))
            })?,
            text_encoder_2: match &configs.text_encoder_2 {
                Some(c) => Some(ClipTextModel::load(c, &mut WeightLoader::new(&mut weights("text_encoder_2")?, device))?),
                None => None,
            },
            unet: with_loras(&mut weights("unet")?, Component::Unet, loras, |s| UNet2DConditionModel::load(&configs.unet, &mut WeightLoader::new(s, device)))?,
            vae: AutoencoderKL::load(&configs.vae, &mut WeightLoader::new(&mut weights("vae")?, device))?,
            taesd: if taesd_dir.is_dir() { Some(Taesd::from_dir(taesd_dir, device)?) } else { None },
            suggested,
            configs,
            buffer_limit: None,
            pad_token: pad_token(&dir.join("tokenizer"), &text_config),
            pad_token_2: text_config_2.as_ref().map_or(0, |c| pad_token(&dir.join("tokenizer_2"), c)),
            force_zeros_for_empty_prompt: force_zeros_for_empty_prompt(dir),
            loras: tags(loras),
            scheduler_config,
            device: device.clone(),
            dtype: FloatDType::F32,
        })
    }
}

fn tags(loras: &[(Lora, f32)]) -> Vec<crate::prompt::LoraTag> {
    loras.iter().map(|(l, w)| crate::prompt::LoraTag { name: l.name.clone(), weight: *w }).collect()
}

/// Builds one network through `source` with the LoRAs' updates for `component` merged in, and
/// refuses a LoRA module that matched none of its weights.
fn with_loras<T>(source: &mut dyn TensorSource, component: Component, loras: &[(Lora, f32)], build: impl FnOnce(&mut dyn TensorSource) -> Result<T>) -> Result<T> {
    let mut merged = WithLoras::new(source, component, loras);
    let built = build(&mut merged)?;
    merged.finish()?;
    Ok(built)
}

/// diffusers' StableDiffusionXLPipeline default (true) unless model_index.json says otherwise.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn force_zeros_for_empty_prompt(dir: &std::path::Path) -> bool {
    std::fs::read_to_string(dir.join("model_index.json"))
        .ok()
        .and_then(|t| crate::config_json::parse_value(&t, "model_index.json").ok())
        .and_then(|v| v["force_zeros_for_empty_prompt"].as_bool())
        .unwrap_or(true)
}

/// SD 1.x's tokenizer pads with `<|endoftext|>` (49407), SD 2.x's (and SDXL's second) with `!`
/// (0): from the tokenizer folder's special_tokens_map.json when the folder has it, else from
/// the text tower (OpenCLIP uses gelu).
#[cfg(not(target_arch = "wasm32"))]
fn pad_token(tokenizer_dir: &std::path::Path, text_config: &serde_json::Value) -> i64 {
    let tokenizer: Option<serde_json::Value> =
        std::fs::read_to_string(tokenizer_dir.join("special_tokens_map.json")).ok().and_then(|t| crate::config_json::parse_value(&t, "special_tokens_map.json").ok());
    let pad = tokenizer.as_ref().and_then(|t| t["pad_token"].as_str().or_else(|| t["pad_token"]["content"].as_str()).map(String::from));
    match pad.as_deref() {
        Some("!") => 0,
        Some(_) => 49407,
        None if text_config["hidden_act"] == "gelu" => 0,
        None => 49407,
    }
}

impl StableDiffusion {
    /// Builds the model from a converted model's prepared tensors (see `weights::prepared`).
    /// `dtype` is the UNet's and text encoder's; the VAE and TAESD stay f32.
    pub fn from_prepared(
        manifest: &crate::weights::Manifest,
        prepared: std::collections::HashMap<String, crate::weights::prepared::PreparedSource>,
        device: &Device,
        dtype: FloatDType,
    ) -> Result<Self> {
        Self::from_prepared_with_loras(manifest, prepared, device, dtype, &[])
    }

    /// [`StableDiffusion::from_prepared`] with LoRAs (each with its weight) merged in.
    pub fn from_prepared_with_loras(
        manifest: &crate::weights::Manifest,
        mut prepared: std::collections::HashMap<String, crate::weights::prepared::PreparedSource>,
        device: &Device,
        dtype: FloatDType,
        loras: &[(Lora, f32)],
    ) -> Result<Self> {
        use crate::model::taesd::TaesdConfig;
        use crate::weights::WeightLoader;
        let mut source = |name: &str| prepared.remove(name).ok_or_else(|| Error::Other(format!("the model has no {name} weights")));
        let configs = Configs::from_manifest(manifest)?;
        let text_encoder = with_loras(&mut source("text_encoder")?, Component::TextEncoder, loras, |s| {
            ClipTextModel::load(&configs.text_encoder, &mut WeightLoader::new(s, device).with_dtype(dtype))
        })?;
        let text_encoder_2 = match &configs.text_encoder_2 {
            Some(c) => Some(ClipTextModel::load(c, &mut WeightLoader::new(&mut source("text_encoder_2")?, device).with_dtype(dtype))?),
            None => None,
        };
        let unet = with_loras(&mut source("unet")?, Component::Unet, loras, |s| UNet2DConditionModel::load(&configs.unet, &mut WeightLoader::new(s, device).with_dtype(dtype)))?;
        let vae = AutoencoderKL::load(&configs.vae, &mut WeightLoader::new(&mut source("vae")?, device))?;
        let taesd = match manifest.components.get("taesd") {
            Some(c) => Some(Taesd::load(&TaesdConfig::from_json(&c.to_string())?, &mut WeightLoader::new(&mut source("taesd")?, device))?),
            None => None,
        };
        let scheduler_config = SchedulerConfig::from_json(&manifest.scheduler.to_string())?;
        let suggested = crate::suggested::Suggested::infer(&configs.unet, &configs.vae, &scheduler_config, &manifest.suggested);
        Ok(Self {
            text_encoder,
            text_encoder_2,
            unet,
            vae,
            taesd,
            suggested,
            configs,
            buffer_limit: None,
            scheduler_config,
            pad_token: manifest.tokenizer.pad_token_id as i64,
            pad_token_2: manifest.tokenizer_2.as_ref().map_or(0, |t| t.pad_token_id as i64),
            force_zeros_for_empty_prompt: manifest.force_zeros_for_empty_prompt,
            loras: tags(loras),
            device: device.clone(),
            dtype,
        })
    }
}
