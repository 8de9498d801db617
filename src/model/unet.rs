//! UNet2DConditionModel, configured by diffusers' config.json and loaded by its tensor names.

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::config::{TextTimeSpec, UNetConfig};
use super::conv;
use super::embeddings::{TimestepEmbedding, timestep_embedding};
use super::resnet::group_norm_silu;
use super::unet_blocks::{BlockSpec, DownBlock, MidBlock, TransformerSpec, UpBlock};
use crate::error::{Error, Result};
use crate::weights::WeightLoader;

#[derive(Module, Debug)]
pub struct UNet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: Option<MidBlock>,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    /// SDXL's `add_embedding`: the pooled text and time ids, embedded and added to the timestep's.
    add_embedding: Option<TimestepEmbedding>,
    #[module(skip)]
    text_time: Option<TextTimeSpec>,
    #[module(skip)]
    time_proj_dim: usize,
    #[module(skip)]
    flip_sin_to_cos: bool,
    #[module(skip)]
    freq_shift: f64,
    /// LCM-distilled UNets take the guidance scale as an embedding of this size.
    #[module(skip)]
    pub guidance_embedding_dim: Option<usize>,
}

impl UNet2DConditionModel {
    pub fn load(config: &UNetConfig, w: &mut WeightLoader) -> Result<Self> {
        config.check()?;
        let boc = &config.block_out_channels;
        let n = boc.len();
        let heads = config.heads()?;
        let layers = config.layers()?;
        let tlayers = config.transformer_layers()?;
        let cross = config.cross_dims()?;
        let temb_dim = boc[0] * 4;
        let spec = BlockSpec { temb_channels: temb_dim, groups: config.norm_num_groups, eps: config.norm_eps };
        let transformer = |i: usize| TransformerSpec {
            heads: heads[i],
            layers: tlayers[i],
            context_dim: cross[i],
            groups: config.norm_num_groups,
            linear_projection: config.use_linear_projection,
        };
        for (i, &c) in boc.iter().enumerate() {
            if c % heads[i] != 0 {
                return Err(Error::UnsupportedConfig(format!("block {i}: {c} channels do not split into {} heads", heads[i])));
            }
        }

        let k_in = config.conv_in_kernel;
        let conv_in = w.conv2d("conv_in", config.in_channels, boc[0], k_in, 1, k_in / 2, true)?;
        let time_embedding = TimestepEmbedding::load(w, "time_embedding", boc[0], temb_dim, config.time_cond_proj_dim)?;
        let text_time = config.text_time()?;
        let add_embedding = match text_time {
            Some(spec) => Some(TimestepEmbedding::load(w, "add_embedding", spec.input_dim, temb_dim, None)?),
            None => None,
        };

        // Down blocks; record the channels of every skip connection, in order.
        let mut skip_channels = vec![boc[0]];
        let mut down_blocks = Vec::new();
        let mut cin = boc[0];
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let cout = boc[i];
            let last = i == n - 1;
            let t = transformer(i);
            let attn = (kind == "CrossAttnDownBlock2D").then_some(&t);
            let pad = (!last).then_some(config.downsample_padding);
            down_blocks.push(DownBlock::load(w, &format!("down_blocks.{i}"), cin, cout, layers[i], &spec, attn, pad)?);
            skip_channels.extend(std::iter::repeat_n(cout, layers[i]));
            if !last {
                skip_channels.push(cout);
            }
            cin = cout;
        }

        let mid_block = match &config.mid_block_type {
            Some(_) => Some(MidBlock::load(w, "mid_block", boc[n - 1], &spec, config.mid_block_scale_factor, &transformer(n - 1))?),
            None => None,
        };

        // Up blocks mirror the down blocks (per-block lists reversed).
        let mut up_blocks = Vec::new();
        let mut prev_out = boc[n - 1];
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let level = n - 1 - i;
            let cout = boc[level];
            let resnets = layers[level] + 1;
            let skips: Vec<usize> = (0..resnets).map(|_| skip_channels.pop().expect("skip channels")).collect();
            let t = transformer(level);
            let attn = (kind == "CrossAttnUpBlock2D").then_some(&t);
            up_blocks.push(UpBlock::load(w, &format!("up_blocks.{i}"), prev_out, cout, &skips, &spec, attn, i < n - 1)?);
            prev_out = cout;
        }
        if !skip_channels.is_empty() {
            return Err(Error::UnsupportedConfig("up blocks do not consume every skip connection".into()));
        }

        let conv_norm_out = w.group_norm("conv_norm_out", config.norm_num_groups, boc[0], config.norm_eps)?;
        let k_out = config.conv_out_kernel;
        let conv_out = w.conv2d("conv_out", boc[0], config.out_channels, k_out, 1, k_out / 2, true)?;
        w.finish("")?;
        Ok(Self {
            conv_in,
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            add_embedding,
            text_time,
            time_proj_dim: boc[0],
            flip_sin_to_cos: config.flip_sin_to_cos,
            freq_shift: config.freq_shift,
            guidance_embedding_dim: config.time_cond_proj_dim,
        })
    }

    /// Loads `dir/config.json` and the safetensors beside it.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        crate::weights::safetensors::load_component_dir(dir.as_ref(), device, UNetConfig::from_json, Self::load)
    }

    /// SDXL's added conditioning, when this UNet takes it (`addition_embed_type: "text_time"`).
    pub fn text_time(&self) -> Option<TextTimeSpec> {
        self.text_time
    }

    /// Predicts noise (or v) for `sample` [B, C, h, w] at `timesteps` [B] given the text
    /// conditioning [B, 77·k, D]. `guidance_embedding` [B, d] feeds LCM-distilled UNets. A UNet
    /// that needs SDXL's added conditioning refuses this: see [`Self::forward_text_time`].
    pub fn forward(&self, sample: Tensor<4>, timesteps: Tensor<1>, context: Tensor<3>, guidance_embedding: Option<Tensor<2>>) -> Result<Tensor<4>> {
        self.forward_text_time(sample, timesteps, context, guidance_embedding, None)
    }

    /// [`Self::forward`] with SDXL's added conditioning, which a `text_time` UNet requires and
    /// any other refuses.
    pub fn forward_text_time(
        &self,
        sample: Tensor<4>,
        timesteps: Tensor<1>,
        context: Tensor<3>,
        guidance_embedding: Option<Tensor<2>>,
        text_time: Option<TextTime>,
    ) -> Result<Tensor<4>> {
        let t = timestep_embedding(timesteps, self.time_proj_dim, self.flip_sin_to_cos, self.freq_shift)?.cast(sample.dtype());
        let mut temb = self.time_embedding.forward(t, guidance_embedding);
        match (self.add_embedding.as_ref().zip(self.text_time), text_time) {
            (Some((add, spec)), Some(cond)) => {
                let added = cond.embed(spec, sample.dims()[0], self.flip_sin_to_cos, self.freq_shift)?.cast(sample.dtype());
                temb = temb + add.forward(added, None);
            }
            (None, None) => {}
            (Some(_), None) => return Err(Error::InvalidInput("this UNet (SDXL) needs the pooled text embedding and the time ids".into())),
            (None, Some(_)) => return Err(Error::InvalidInput("this UNet takes no pooled text embedding or time ids (only SDXL's does)".into())),
        }

        let mut x = conv::forward(&self.conv_in, sample);
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            let (out, block_skips) = block.forward(x, &temb, &context);
            x = out;
            skips.extend(block_skips);
        }
        if let Some(mid) = &self.mid_block {
            x = mid.forward(x, &temb, &context);
        }
        for block in &self.up_blocks {
            x = block.forward(x, &mut skips, &temb, &context);
        }
        Ok(conv::forward(&self.conv_out, group_norm_silu(&self.conv_norm_out, x)))
    }
}

/// SDXL's added conditioning (diffusers' `added_cond_kwargs`).
pub struct TextTime {
    /// The second text encoder's projected pooled output. [B, P]
    pub text_embeds: Tensor<2>,
    /// Micro-conditioning: original size (h, w), crop top-left (y, x), target size (h, w) in
    /// pixels for the base model; the refiner has an aesthetic score instead of the target size. [B, k]
    pub time_ids: Tensor<2>,
}

impl TextTime {
    /// `add_embedding`'s input [B, P + k·time_dim]: the text embedding, then every time id's
    /// sinusoidal embedding in order (diffusers' concat order), in f32.
    fn embed(self, spec: TextTimeSpec, batch: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Tensor<2>> {
        let ([b_text, p], [b_ids, k]) = (self.text_embeds.dims(), self.time_ids.dims());
        if b_text != batch || b_ids != batch || p + k * spec.time_dim != spec.input_dim {
            return Err(Error::InvalidInput(format!(
                "SDXL conditioning: text_embeds [{b_text}, {p}] and time_ids [{b_ids}, {k}] for a batch of {batch}; \
                 this UNet wants {} features (pooled + time ids × {})",
                spec.input_dim, spec.time_dim
            )));
        }
        let times = timestep_embedding(self.time_ids.reshape([batch * k]), spec.time_dim, flip_sin_to_cos, freq_shift)?.reshape([batch, k * spec.time_dim]);
        Ok(Tensor::cat(vec![self.text_embeds.cast(burn::tensor::FloatDType::F32), times], 1))
    }
}
