//! diffusers' `config.json` for UNet2DConditionModel and AutoencoderKL, as plain data.
//!
//! Only what SD 1.x, 2.x, SD-Turbo, SDXL (base, refiner, Turbo), LCM-distilled and the distilled
//! (BK-SDM, segmind) UNets use is supported; anything else that would change the computation is
//! refused with a clear message rather than silently ignored.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// An int-or-list config value (diffusers accepts both for per-block settings).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    /// The value for each of `n` blocks.
    pub fn expand(&self, n: usize, key: &str) -> Result<Vec<usize>> {
        match self {
            PerBlock::One(v) => Ok(vec![*v; n]),
            PerBlock::Each(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Each(v) => Err(Error::UnsupportedConfig(format!("`{key}` has {} entries for {n} blocks", v.len()))),
        }
    }
}

fn default_act() -> String {
    "silu".into()
}
fn default_groups() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn one() -> f64 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn three() -> usize {
    3
}
fn default_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_mid")]
    pub mid_block_type: Option<String>,
    pub layers_per_block: PerBlock,
    #[serde(default = "one_usize_block")]
    pub transformer_layers_per_block: PerBlock,
    /// Legacy naming: in SD configs this is the number of heads.
    #[serde(default)]
    pub attention_head_dim: Option<PerBlock>,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    pub cross_attention_dim: PerBlock,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "one_usize")]
    pub downsample_padding: usize,
    #[serde(default = "one")]
    pub mid_block_scale_factor: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Equivalent to our attention, which always computes scores and softmax in f32.
    #[serde(default)]
    pub upcast_attention: bool,
    /// LCM-distilled UNets embed the guidance scale (`time_embedding.cond_proj`).
    #[serde(default)]
    pub time_cond_proj_dim: Option<usize>,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default = "three")]
    pub conv_in_kernel: usize,
    #[serde(default = "three")]
    pub conv_out_kernel: usize,
    /// SDXL's `"text_time"`: an embedding of the pooled text embedding and the micro-conditioning
    /// time ids is added to the timestep embedding. No other added embedding is supported.
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// The sinusoidal embedding size of each time id (`text_time` only).
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// The added embedding's input: pooled text width + time ids × addition_time_embed_dim.
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Keys that would change the computation in ways we do not implement.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Keys of diffusers' UNet2DConditionModel that we do not implement, each with the values that
/// mean "off" (the computation is then the one we implement).
const UNET_OFF_VALUES: &[(&str, &[&str])] = &[
    ("class_embed_type", &["null"]),
    ("num_class_embeds", &["null"]),
    ("encoder_hid_dim", &["null"]),
    ("encoder_hid_dim_type", &["null"]),
    ("time_embedding_type", &["\"positional\""]),
    ("time_embedding_dim", &["null"]),
    ("time_embedding_act_fn", &["null"]),
    ("timestep_post_act", &["null"]),
    ("resnet_time_scale_shift", &["\"default\""]),
    ("resnet_skip_time_act", &["false"]),
    ("resnet_out_scale_factor", &["1", "1.0"]),
    ("only_cross_attention", &["false"]),
    ("mid_block_only_cross_attention", &["null", "false"]),
    ("dual_cross_attention", &["false"]),
    ("center_input_sample", &["false"]),
    ("class_embeddings_concat", &["false"]),
    ("attention_type", &["\"default\""]),
    ("cross_attention_norm", &["null"]),
    ("reverse_transformer_layers_per_block", &["null"]),
];

/// Keys that do not change the computation: metadata, training-only settings, and settings read
/// only together with an embedding we refuse (`addition_embed_type_num_heads`: "text" and
/// "text_image" only).
const UNET_IGNORED: &[&str] = &["sample_size", "dropout", "addition_embed_type_num_heads"];

/// Whether a config key we do not model leaves the computation as we implement it. Unknown keys
/// are refused unless null: a newer diffusers option must not be silently ignored.
fn unet_key_is_harmless(key: &str, value: &Value) -> bool {
    if key.starts_with('_') || UNET_IGNORED.contains(&key) {
        return true;
    }
    let off = |v: &Value| match UNET_OFF_VALUES.iter().find(|(k, _)| *k == key) {
        Some((_, values)) => values.contains(&v.to_string().as_str()),
        None => v.is_null(),
    };
    match value {
        // Per-block lists (only_cross_attention may be one): every entry must be off.
        Value::Array(items) => items.iter().all(off),
        v => off(v),
    }
}

fn four() -> usize {
    4
}
fn one_usize_block() -> PerBlock {
    PerBlock::One(1)
}

impl UNetConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = crate::config_json::parse(text, "UNet config.json", &["mid_block_type"])?;
        config.check()?;
        Ok(config)
    }

    /// Refuses configs whose meaning we would get wrong.
    pub fn check(&self) -> Result<()> {
        let unsupported = |m: String| Err(Error::UnsupportedConfig(format!("UNet: {m}")));
        if let Some((key, value)) = self.other.iter().find(|(k, v)| !unet_key_is_harmless(k, v)) {
            return unsupported(format!("`{key}` = {value} is not supported"));
        }
        if self.act_fn != "silu" {
            return unsupported(format!("act_fn `{}` is not supported (only silu)", self.act_fn));
        }
        let n = self.block_out_channels.len();
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return unsupported("down/up block type lists must match block_out_channels".into());
        }
        for t in self.down_block_types.iter().chain(&self.up_block_types) {
            if !matches!(t.as_str(), "CrossAttnDownBlock2D" | "DownBlock2D" | "CrossAttnUpBlock2D" | "UpBlock2D") {
                return unsupported(format!("block type `{t}`"));
            }
        }
        if let Some(mid) = &self.mid_block_type
            && mid != "UNetMidBlock2DCrossAttn"
        {
            return unsupported(format!("mid_block_type `{mid}`"));
        }
        if self.conv_in_kernel.is_multiple_of(2) || self.conv_out_kernel.is_multiple_of(2) {
            return unsupported("even conv_in/conv_out kernels".into());
        }
        self.text_time()?;
        self.heads()?;
        self.layers()?;
        self.transformer_layers()?;
        self.cross_dims()?;
        Ok(())
    }

    /// Attention heads per down block (diffusers: `num_attention_heads or attention_head_dim`).
    pub fn heads(&self) -> Result<Vec<usize>> {
        let n = self.block_out_channels.len();
        match (&self.num_attention_heads, &self.attention_head_dim) {
            (Some(h), _) => h.expand(n, "num_attention_heads"),
            (None, Some(h)) => h.expand(n, "attention_head_dim"),
            (None, None) => Ok(vec![8; n]),
        }
    }

    pub fn layers(&self) -> Result<Vec<usize>> {
        self.layers_per_block.expand(self.block_out_channels.len(), "layers_per_block")
    }

    pub fn transformer_layers(&self) -> Result<Vec<usize>> {
        self.transformer_layers_per_block.expand(self.block_out_channels.len(), "transformer_layers_per_block")
    }

    /// SDXL's added `text_time` embedding, when the config has one.
    pub fn text_time(&self) -> Result<Option<TextTimeSpec>> {
        let unsupported = |m: String| Err(Error::UnsupportedConfig(format!("UNet: {m}")));
        match self.addition_embed_type.as_deref() {
            None => Ok(None),
            Some("text_time") => match (self.addition_time_embed_dim, self.projection_class_embeddings_input_dim) {
                (Some(time_dim), Some(input_dim)) if time_dim > 0 && time_dim.is_multiple_of(2) && input_dim > 0 => Ok(Some(TextTimeSpec { time_dim, input_dim })),
                (Some(time_dim), Some(input_dim)) => {
                    unsupported(format!("text_time with addition_time_embed_dim {time_dim} and projection_class_embeddings_input_dim {input_dim}"))
                }
                _ => unsupported("`addition_embed_type` \"text_time\" needs addition_time_embed_dim and projection_class_embeddings_input_dim".into()),
            },
            Some(other) => unsupported(format!("`addition_embed_type` = \"{other}\" is not supported (only \"text_time\", SDXL's)")),
        }
    }

    pub fn cross_dims(&self) -> Result<Vec<usize>> {
        self.cross_attention_dim.expand(self.block_out_channels.len(), "cross_attention_dim")
    }

    /// The real SD 1.5 UNet config (runwayml/stable-diffusion-v1-5).
    pub fn sd15() -> Self {
        Self::from_json(SD15_UNET).expect("built-in config")
    }

    /// The real SD 2.1 UNet config (stabilityai/stable-diffusion-2-1; SD-Turbo uses the same).
    pub fn sd21() -> Self {
        Self::from_json(SD21_UNET).expect("built-in config")
    }

    /// The real SDXL base 1.0 UNet config (SDXL-Turbo uses the same).
    pub fn sdxl() -> Self {
        Self::from_json(crate::weights::single_file::SDXL_UNET).expect("built-in config")
    }
}

const SD15_UNET: &str = r#"{
  "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
  "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;

const SD21_UNET: &str = r#"{
  "act_fn": "silu", "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 1024,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "dual_cross_attention": false, "flip_sin_to_cos": true, "freq_shift": 0,
  "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
  "num_class_embeds": null, "only_cross_attention": false, "out_channels": 4, "sample_size": 96,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  "use_linear_projection": true, "upcast_attention": true
}"#;

/// SDXL's added conditioning: `add_time_proj` embeds each time id in `time_dim` sinusoidal
/// features; `add_embedding` maps [pooled text, time features] (`input_dim` wide) to the timestep
/// embedding's width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextTimeSpec {
    pub time_dim: usize,
    pub input_dim: usize,
}

/// diffusers' AutoencoderKL config.json.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one_usize")]
    pub layers_per_block: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "default_act")]
    pub act_fn: String,
    #[serde(default)]
    pub down_block_types: Vec<String>,
    #[serde(default)]
    pub up_block_types: Vec<String>,
    /// The VAE overflows in f16 (true for the SD 1.x/2.x VAE): the pipeline should decode in f32.
    #[serde(default = "yes")]
    pub force_upcast: bool,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

fn default_scaling() -> f64 {
    0.18215
}

impl VaeConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Self = crate::config_json::parse(text, "VAE config.json", &[])?;
        let bad = |m: String| Err(Error::UnsupportedConfig(format!("VAE: {m}")));
        if config.act_fn != "silu" {
            return bad(format!("act_fn `{}`", config.act_fn));
        }
        for t in config.down_block_types.iter().chain(&config.up_block_types) {
            if !matches!(t.as_str(), "DownEncoderBlock2D" | "UpDecoderBlock2D") {
                return bad(format!("block type `{t}`"));
            }
        }
        if config.shift_factor.is_some_and(|s| s != 0.0) {
            return bad("shift_factor (SD3/Flux VAEs) is not supported".into());
        }
        let n = config.block_out_channels.len();
        if n == 0 || [&config.down_block_types, &config.up_block_types].iter().any(|t| !t.is_empty() && t.len() != n) {
            return bad(format!("{n} block_out_channels but {} down and {} up block types", config.down_block_types.len(), config.up_block_types.len()));
        }
        // sample_size is metadata; latents_mean/std (SDXL-style latent normalisation) must be absent.
        if let Some((key, value)) = config.other.iter().find(|(k, v)| !(k.starts_with('_') || *k == "sample_size" || v.is_null())) {
            return bad(format!("`{key}` = {value} is not supported"));
        }
        Ok(config)
    }

    /// SDXL's VAE: SD's architecture, `scaling_factor` 0.13025.
    pub fn sdxl() -> Self {
        Self::from_json(crate::weights::single_file::SDXL_VAE).expect("built-in config")
    }

    /// The SD 1.x/2.x VAE.
    pub fn sd() -> Self {
        Self::from_json(
            r#"{"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
            "norm_num_groups": 32, "scaling_factor": 0.18215,
            "down_block_types": ["DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D","DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D","UpDecoderBlock2D"]}"#,
        )
        .expect("built-in config")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_counts_follow_diffusers_legacy_naming() {
        assert_eq!(UNetConfig::sd15().heads().unwrap(), vec![8; 4]);
        assert_eq!(UNetConfig::sd21().heads().unwrap(), vec![5, 10, 20, 20]);
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let with = |extra: &str| UNetConfig::from_json(&SD15_UNET.replacen('{', &format!("{{{extra},"), 1));
        assert!(with(r#""class_embed_type": null"#).is_ok());
        assert!(with(r#""only_cross_attention": [false, false, false, false]"#).is_ok());
        assert!(with(r#""resnet_out_scale_factor": 1.0, "dropout": 0.1, "_name_or_path": "x""#).is_ok());
        for bad in [
            r#""num_class_embeds": 10"#,
            r#""addition_embed_type": "text_image""#,
            r#""only_cross_attention": true"#,
            r#""only_cross_attention": [false, true, false, false]"#,
            r#""time_embedding_act_fn": "silu""#,
            r#""resnet_out_scale_factor": 2.0"#,
            r#""some_future_option": 3"#,
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("not supported"), "{bad}: {err}");
        }
    }

    /// SDXL's added embedding needs both of its sizes; other added embeddings are refused.
    #[test]
    fn text_time_needs_its_sizes() {
        let with = |extra: &str| UNetConfig::from_json(&SD15_UNET.replacen('{', &format!("{{{extra},"), 1));
        let c = with(r#""addition_embed_type": "text_time", "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2816"#).unwrap();
        assert_eq!(c.text_time().unwrap(), Some(TextTimeSpec { time_dim: 256, input_dim: 2816 }));
        assert_eq!(UNetConfig::sd15().text_time().unwrap(), None);
        // Without text_time the two sizes change nothing (diffusers reads them only with it).
        assert_eq!(with(r#""addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": null"#).unwrap().text_time().unwrap(), None);
        for bad in [r#""addition_embed_type": "text_time""#, r#""addition_embed_type": "text_time", "addition_time_embed_dim": 256"#] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("needs addition_time_embed_dim"), "{bad}: {err}");
        }
        let err = with(r#""addition_embed_type": "text_time", "addition_time_embed_dim": 7, "projection_class_embeddings_input_dim": 42"#).unwrap_err().to_string();
        assert!(err.contains("addition_time_embed_dim 7"), "{err}");
    }

    /// SD 2.x style per-block lists, with up blocks using them reversed in diffusers.
    #[test]
    fn per_block_values_expand() {
        let c = UNetConfig::from_json(
            r#"{"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": [1, 2],
            "transformer_layers_per_block": [2, 1], "attention_head_dim": [2, 4], "cross_attention_dim": 16}"#,
        )
        .unwrap();
        assert_eq!(c.heads().unwrap(), vec![2, 4]);
        assert_eq!(c.layers().unwrap(), vec![1, 2]);
        assert_eq!(c.transformer_layers().unwrap(), vec![2, 1]);
        assert_eq!(c.cross_dims().unwrap(), vec![16, 16]);
        // num_attention_heads, when given, wins over the legacy attention_head_dim.
        let with_heads = UNetConfig::from_json(&SD15_UNET.replacen('{', r#"{"num_attention_heads": [2, 4, 8, 8],"#, 1)).unwrap();
        assert_eq!(with_heads.heads().unwrap(), vec![2, 4, 8, 8]);
        let err = UNetConfig::from_json(&SD15_UNET.replacen('{', r#"{"transformer_layers_per_block": [1, 2],"#, 1)).unwrap_err();
        assert!(err.to_string().contains("transformer_layers_per_block"), "{err}");
    }

    #[test]
    fn vae_config_refuses_other_latent_spaces() {
        assert!(VaeConfig::sd().force_upcast);
        let sd = r#"{"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2"#;
        assert!(VaeConfig::from_json(&format!(r#"{sd}, "latents_mean": null, "sample_size": 512}}"#)).is_ok());
        let err = VaeConfig::from_json(&format!(r#"{sd}, "latents_mean": [0.1, 0.2, 0.3, 0.4]}}"#)).unwrap_err();
        assert!(err.to_string().contains("latents_mean"), "{err}");
    }
}
