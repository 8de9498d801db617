//! The CLIP text encoder as transformers' CLIPTextModel: SD 1.x's ViT-L/14 text tower (quick_gelu)
//! and the OpenCLIP ViT-H text tower SD 2.x / SD-Turbo ship (gelu), configured by config.json; and
//! CLIPTextModelWithProjection, SDXL's second encoder (OpenCLIP bigG, gelu, with `text_projection`).

use std::path::Path;

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use serde::Deserialize;

use super::attention::{DEFAULT_SCORE_BUDGET, scaled_dot_product_attention};
use super::linear;
use crate::error::{Error, Result};
use crate::weights::WeightLoader;

/// Largest token-embedding chunk in f32 (SD's [49408, 768] table is 145 MiB whole, over WebGPU's
/// 128 MiB binding limit).
pub const EMBEDDING_CHUNK_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// 2 in older configs: then the pooled token is the one with the largest id (transformers'
    /// legacy rule); otherwise the first `eos_token_id`.
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    /// `["CLIPTextModelWithProjection"]`: the pooled output goes through `text_projection`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// The width of `text_projection`'s output (transformers' default: 512).
    #[serde(default = "default_projection")]
    pub projection_dim: usize,
}

fn default_positions() -> usize {
    77
}
fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> i64 {
    2
}
fn default_projection() -> usize {
    512
}

impl ClipConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = crate::config_json::parse(text, "text encoder config.json", &[])?;
        if !matches!(c.hidden_act.as_str(), "quick_gelu" | "gelu") {
            return Err(Error::UnsupportedConfig(format!("text encoder hidden_act `{}`", c.hidden_act)));
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::UnsupportedConfig("hidden_size must divide into the attention heads".into()));
        }
        if let Some(other) = c.architectures.iter().find(|a| !matches!(a.as_str(), "CLIPTextModel" | "CLIPTextModelWithProjection")) {
            return Err(Error::UnsupportedConfig(format!("text encoder architecture `{other}` (only CLIPTextModel and CLIPTextModelWithProjection)")));
        }
        Ok(c)
    }

    /// Whether the model carries `text_projection` (CLIPTextModelWithProjection).
    pub fn with_projection(&self) -> bool {
        self.architectures.iter().any(|a| a == "CLIPTextModelWithProjection")
    }

    /// SD 1.x: openai/clip-vit-large-patch14's text tower.
    pub fn sd1() -> Self {
        Self::from_json(
            r#"{"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
            "num_hidden_layers": 12, "hidden_act": "quick_gelu", "eos_token_id": 2}"#,
        )
        .expect("built-in config")
    }

    /// SDXL's two encoders: CLIP ViT-L (as SD 1.x's) and OpenCLIP bigG with its projection.
    pub fn sdxl() -> (Self, Self) {
        let config = |text| Self::from_json(text).expect("built-in config");
        (config(crate::weights::single_file::SDXL_TEXT), config(crate::weights::single_file::SDXL_TEXT_2))
    }

    /// SD 2.x / SD-Turbo: OpenCLIP ViT-H/14's text tower with its last layer dropped (23 layers).
    pub fn sd2() -> Self {
        Self::from_json(
            r#"{"vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
            "num_hidden_layers": 23, "hidden_act": "gelu", "eos_token_id": 2}"#,
        )
        .expect("built-in config")
    }
}

#[derive(Module, Debug)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    quick_gelu: bool,
}

impl EncoderLayer {
    fn load(w: &mut WeightLoader, prefix: &str, c: &ClipConfig) -> Result<Self> {
        let d = c.hidden_size;
        let attn = format!("{prefix}.self_attn");
        Ok(Self {
            layer_norm1: w.layer_norm(&format!("{prefix}.layer_norm1"), d, c.layer_norm_eps)?,
            q_proj: w.linear(&format!("{attn}.q_proj"), d, d, true)?,
            k_proj: w.linear(&format!("{attn}.k_proj"), d, d, true)?,
            v_proj: w.linear(&format!("{attn}.v_proj"), d, d, true)?,
            out_proj: w.linear(&format!("{attn}.out_proj"), d, d, true)?,
            layer_norm2: w.layer_norm(&format!("{prefix}.layer_norm2"), d, c.layer_norm_eps)?,
            fc1: w.linear(&format!("{prefix}.mlp.fc1"), d, c.intermediate_size, true)?,
            fc2: w.linear(&format!("{prefix}.mlp.fc2"), c.intermediate_size, d, true)?,
            heads: c.num_attention_heads,
            quick_gelu: c.hidden_act == "quick_gelu",
        })
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.layer_norm1.forward(x.clone());
        let split = |t: Tensor<3>| t.reshape([b, n, self.heads, d / self.heads]).swap_dims(1, 2);
        let attn = scaled_dot_product_attention(
            split(linear::forward(&self.q_proj, h.clone())),
            split(linear::forward(&self.k_proj, h.clone())),
            split(linear::forward(&self.v_proj, h)),
            true,
            DEFAULT_SCORE_BUDGET,
        );
        let x = x + linear::forward(&self.out_proj, attn.swap_dims(1, 2).reshape([b, n, d]));
        let h = linear::forward(&self.fc1, self.layer_norm2.forward(x.clone()));
        let h = if self.quick_gelu { h.clone() * sigmoid(h * 1.702) } else { gelu(h) };
        x + linear::forward(&self.fc2, h)
    }
}

/// The text encoder's outputs.
pub struct ClipOutput {
    /// The hidden state the UNet is conditioned on: the last layer's, or with `skip` > 1 an
    /// earlier layer's, passed through the final layer norm. [B, 77, D]
    pub hidden: Tensor<3>,
    /// The returned hidden state at the end-of-text token (transformers' pooler output when
    /// `skip` is 1). [B, D]
    pub pooled: Tensor<2>,
}

/// What SDXL takes from each of its text encoders.
pub struct ClipXlOutput {
    /// transformers' `hidden_states[-skip]`: a layer's output *without* the final layer norm
    /// (SDXL's default is `skip` 2, the penultimate layer). [B, N, D]
    pub hidden: Tensor<3>,
    /// The final layer's pooled output (after the final layer norm, at the end-of-text token),
    /// through `text_projection` when the model has one: CLIPTextModelWithProjection's
    /// `text_embeds`, SDXL's pooled conditioning. [B, P]
    pub pooled: Tensor<2>,
}

#[derive(Module, Debug)]
pub struct ClipTextModel {
    /// The token embedding table in row chunks (see [`EMBEDDING_CHUNK_BYTES`]).
    token_embedding: Vec<Tensor<2>>,
    position_embedding: Tensor<2>,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    /// CLIPTextModelWithProjection's projection of the pooled output (no bias).
    text_projection: Option<Linear>,
    #[module(skip)]
    eos_token_id: i64,
}

impl ClipTextModel {
    /// Names as transformers 5 saves them; real checkpoints' `text_model.` prefix is accepted too.
    pub fn load(c: &ClipConfig, w: &mut WeightLoader) -> Result<Self> {
        let rows = (EMBEDDING_CHUNK_BYTES / (4 * c.hidden_size.max(1))).max(1);
        Self::load_with_embedding_chunk_rows(c, w, rows)
    }

    /// [`Self::load`] with the token embedding stored in chunks of `chunk_rows` rows.
    pub fn load_with_embedding_chunk_rows(c: &ClipConfig, w: &mut WeightLoader, chunk_rows: usize) -> Result<Self> {
        w.accept_prefix("text_model.");
        let d = c.hidden_size;
        let chunk_rows = chunk_rows.max(1);
        let token_embedding = (0..c.vocab_size)
            .step_by(chunk_rows)
            .map(|r0| w.tensor_rows("embeddings.token_embedding.weight", [c.vocab_size, d], r0..(r0 + chunk_rows).min(c.vocab_size)))
            .collect::<Result<Vec<_>>>()?;
        let position_embedding = w.tensor("embeddings.position_embedding.weight", [c.max_position_embeddings, d])?;
        let layers = (0..c.num_hidden_layers).map(|i| EncoderLayer::load(w, &format!("encoder.layers.{i}"), c)).collect::<Result<Vec<_>>>()?;
        let final_layer_norm = w.layer_norm("final_layer_norm", d, c.layer_norm_eps)?;
        // Outside `text_model.` in transformers' CLIPTextModelWithProjection and real checkpoints.
        let text_projection = if c.with_projection() { Some(w.linear("text_projection", d, c.projection_dim, false)?) } else { None };
        // position_ids is a non-persistent buffer in transformers but older checkpoints store it;
        // a projection head a CLIPTextModel config does not ask for is not used by SD 1.x/2.x.
        let unused: Vec<String> = w.unused("").into_iter().filter(|n| !n.ends_with("embeddings.position_ids") && !n.starts_with("text_projection")).collect();
        if !unused.is_empty() {
            return Err(Error::UnexpectedTensors(unused));
        }
        Ok(Self { token_embedding, position_embedding, layers, final_layer_norm, text_projection, eos_token_id: c.eos_token_id })
    }

    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        crate::weights::safetensors::load_component_dir(dir.as_ref(), device, ClipConfig::from_json, Self::load)
    }

    pub fn vocab_size(&self) -> usize {
        self.token_embedding.iter().map(|t| t.dims()[0]).sum()
    }

    /// The embedding rows of `ids` (all in the vocabulary) → [ids.len(), D]: each chunk gathers
    /// the ids that fall in it (chosen on the CPU), then one gather restores the ids' order.
    fn embed_tokens(&self, ids: &[i64]) -> Tensor<2> {
        let device = self.position_embedding.device();
        let int = |v: Vec<i64>| {
            let n = v.len();
            Tensor::<1, Int>::from_data(burn::tensor::TensorData::new(v, [n]), &device)
        };
        let mut parts = Vec::new();
        let mut order = vec![0i64; ids.len()];
        let (mut start, mut taken) = (0i64, 0i64);
        for chunk in &self.token_embedding {
            let rows = chunk.dims()[0] as i64;
            let (mut local, mut positions) = (Vec::new(), Vec::new());
            for (i, &t) in ids.iter().enumerate() {
                if t >= start && t < start + rows {
                    local.push(t - start);
                    positions.push(i);
                }
            }
            if !local.is_empty() {
                for p in positions {
                    order[p] = taken;
                    taken += 1;
                }
                parts.push(chunk.clone().select(0, int(local)));
            }
            start += rows;
        }
        let grouped = Tensor::cat(parts, 0);
        if self.token_embedding.len() == 1 { grouped } else { grouped.select(0, int(order)) }
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// Encodes `ids` [B, N] (N ≤ 77). `skip` = 1 gives the last layer ("clip skip 1"), 2 the
    /// penultimate, and so on.
    pub fn forward(&self, ids: &[Vec<i64>], skip: usize) -> Result<ClipOutput> {
        let mut x = self.embed(ids)?;
        self.check_skip(skip)?;
        for layer in &self.layers[..self.layers.len() + 1 - skip] {
            x = layer.forward(x);
        }
        let hidden = self.final_layer_norm.forward(x);
        let pooled = self.pool(&hidden, ids);
        Ok(ClipOutput { hidden, pooled })
    }

    /// What SDXL's pipeline reads (`output_hidden_states`): `hidden_states[-skip]` without the
    /// final layer norm (SDXL: `skip` 2; diffusers' `clip_skip` c is `skip` c + 2), and the
    /// final layer's pooled output, projected when the model has `text_projection`.
    pub fn forward_sdxl(&self, ids: &[Vec<i64>], skip: usize) -> Result<ClipXlOutput> {
        let mut x = self.embed(ids)?;
        self.check_skip(skip)?;
        let mut kept = None;
        // hidden_states[i + 1] is layer i's output, so hidden_states[-skip] is layer L - skip's.
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i + skip == self.layers.len() {
                kept = Some(x.clone());
            }
        }
        let pooled = self.pool(&self.final_layer_norm.forward(x), ids);
        let pooled = match &self.text_projection {
            Some(projection) => linear::forward(projection, pooled),
            None => pooled,
        };
        Ok(ClipXlOutput { hidden: kept.expect("skip checked against the layer count"), pooled })
    }

    fn check_skip(&self, skip: usize) -> Result<()> {
        if skip == 0 || skip > self.layers.len() {
            return Err(Error::InvalidRequest(format!("clip skip must be 1..={}", self.layers.len())));
        }
        Ok(())
    }

    /// Token and position embeddings of `ids` [B, N] → [B, N, D], after checking the ids.
    fn embed(&self, ids: &[Vec<i64>]) -> Result<Tensor<3>> {
        let b = ids.len();
        let n = ids.first().map(Vec::len).unwrap_or(0);
        let max = self.position_embedding.dims()[0];
        if n == 0 || n > max || ids.iter().any(|r| r.len() != n) {
            return Err(Error::InvalidInput(format!("token ids must be {b} rows of equal length 1..={max}")));
        }
        let flat: Vec<i64> = ids.iter().flatten().copied().collect();
        let vocab = self.vocab_size() as i64;
        if let Some(bad) = flat.iter().find(|&&t| t < 0 || t >= vocab) {
            return Err(Error::InvalidInput(format!("token id {bad} is outside the vocabulary of {vocab}")));
        }
        let d = self.position_embedding.dims()[1];
        Ok(self.embed_tokens(&flat).reshape([b, n, d]) + self.position_embedding.clone().narrow(0, 0, n).unsqueeze::<3>())
    }

    /// `hidden` [B, N, D] at each row's pooled token (transformers' rule for `eos_token_id`, see
    /// ClipConfig) → [B, D].
    fn pool(&self, hidden: &Tensor<3>, ids: &[Vec<i64>]) -> Tensor<2> {
        let positions: Vec<usize> = ids
            .iter()
            .map(|row| {
                if self.eos_token_id == 2 {
                    let max = *row.iter().max().unwrap();
                    row.iter().position(|&t| t == max).unwrap()
                } else {
                    row.iter().position(|&t| t == self.eos_token_id).unwrap_or(0)
                }
            })
            .collect();
        let d = hidden.dims()[2];
        Tensor::cat(positions.iter().enumerate().map(|(i, &p)| hidden.clone().slice([i..i + 1, p..p + 1]).reshape([1, d])).collect(), 0)
    }
}
