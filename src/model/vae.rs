//! AutoencoderKL: the encoder (image → latent mean/logvar, for img2img) and the decoder
//! (latents → image), named and wired as diffusers' autoencoder_kl.py / vae.py.
//!
//! At 512² the decoder's last blocks hold [1, 128, 512, 512] activations (128 MiB in f32), so the
//! pipeline decodes one image at a time; 768² (SD 2.x-768) would need tiled decoding to stay within
//! WebGPU's default 128 MiB binding limit.

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::silu;

use super::attention::Attention;
use super::config::VaeConfig;
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetSpec, Upsample2D, group_norm_f32};
use crate::error::{Error, Result};
use crate::weights::{SafetensorsSource, WeightLoader};

const EPS: f64 = 1e-6;

/// The VAE's single-head spatial self-attention with its own GroupNorm and a residual (diffusers'
/// `Attention` with `norm_num_groups`, `residual_connection=True`, heads = channels / channels).
#[derive(Module, Debug)]
struct SpatialAttention {
    group_norm: GroupNorm,
    attention: Attention,
}

impl SpatialAttention {
    fn load(w: &mut WeightLoader, prefix: &str, channels: usize, groups: usize) -> Result<Self> {
        Ok(Self {
            group_norm: w.group_norm(&format!("{prefix}.group_norm"), groups, channels, EPS)?,
            attention: {
                let names = if w.has(&format!("{prefix}.query.weight")) { Attention::DEPRECATED_NAMES } else { Attention::NAMES };
                Attention::load_named(w, prefix, names, channels, channels, 1, channels, true)?
            },
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let seq = group_norm_f32(&self.group_norm, x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let out = self.attention.forward(seq, None).swap_dims(1, 2).reshape([b, c, h, w]);
        out + x
    }
}

/// UNetMidBlock2D without time embedding: resnet, attention, resnet.
#[derive(Module, Debug)]
struct MidBlock {
    resnet_0: ResnetBlock2D,
    attention: Option<SpatialAttention>,
    resnet_1: ResnetBlock2D,
}

fn resnet_spec(cin: usize, cout: usize, groups: usize) -> ResnetSpec {
    ResnetSpec { in_channels: cin, out_channels: cout, temb_channels: None, groups, eps: EPS, output_scale_factor: 1.0 }
}

impl MidBlock {
    fn load(w: &mut WeightLoader, prefix: &str, channels: usize, groups: usize, attention: bool) -> Result<Self> {
        let spec = resnet_spec(channels, channels, groups);
        Ok(Self {
            resnet_0: ResnetBlock2D::load(w, &format!("{prefix}.resnets.0"), &spec)?,
            attention: if attention { Some(SpatialAttention::load(w, &format!("{prefix}.attentions.0"), channels, groups)?) } else { None },
            resnet_1: ResnetBlock2D::load(w, &format!("{prefix}.resnets.1"), &spec)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut x = self.resnet_0.forward(x, None);
        if let Some(attn) = &self.attention {
            x = attn.forward(x);
        }
        self.resnet_1.forward(x, None)
    }
}

#[derive(Module, Debug)]
struct EncoderBlock {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
}

#[derive(Module, Debug)]
struct DecoderBlock {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<EncoderBlock>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<DecoderBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
pub struct AutoencoderKL {
    encoder: Encoder,
    quant_conv: Option<Conv2d>,
    decoder: Decoder,
    post_quant_conv: Option<Conv2d>,
    #[module(skip)]
    pub scaling_factor: f64,
}

impl AutoencoderKL {
    pub fn load(c: &VaeConfig, w: &mut WeightLoader) -> Result<Self> {
        let boc = &c.block_out_channels;
        let n = boc.len();
        let g = c.norm_num_groups;
        let latent = c.latent_channels;

        let mut down_blocks = Vec::new();
        let mut cin = boc[0];
        for (i, &cout) in boc.iter().enumerate() {
            let prefix = format!("encoder.down_blocks.{i}");
            let resnets = (0..c.layers_per_block)
                .map(|j| ResnetBlock2D::load(w, &format!("{prefix}.resnets.{j}"), &resnet_spec(if j == 0 { cin } else { cout }, cout, g)))
                .collect::<Result<Vec<_>>>()?;
            let downsampler = if i < n - 1 { Some(Downsample2D::load(w, &format!("{prefix}.downsamplers.0"), cout, 0)?) } else { None };
            down_blocks.push(EncoderBlock { resnets, downsampler });
            cin = cout;
        }
        let encoder = Encoder {
            conv_in: w.conv2d("encoder.conv_in", c.in_channels, boc[0], 3, 1, 1, true)?,
            down_blocks,
            mid_block: MidBlock::load(w, "encoder.mid_block", boc[n - 1], g, c.mid_block_add_attention)?,
            conv_norm_out: w.group_norm("encoder.conv_norm_out", g, boc[n - 1], EPS)?,
            conv_out: w.conv2d("encoder.conv_out", boc[n - 1], 2 * latent, 3, 1, 1, true)?,
        };
        let quant_conv = if c.use_quant_conv { Some(w.conv2d("quant_conv", 2 * latent, 2 * latent, 1, 1, 0, true)?) } else { None };

        let mut up_blocks = Vec::new();
        let mut prev = boc[n - 1];
        for i in 0..n {
            let cout = boc[n - 1 - i];
            let prefix = format!("decoder.up_blocks.{i}");
            let resnets = (0..=c.layers_per_block)
                .map(|j| ResnetBlock2D::load(w, &format!("{prefix}.resnets.{j}"), &resnet_spec(if j == 0 { prev } else { cout }, cout, g)))
                .collect::<Result<Vec<_>>>()?;
            let upsampler = if i < n - 1 { Some(Upsample2D::load(w, &format!("{prefix}.upsamplers.0"), cout)?) } else { None };
            up_blocks.push(DecoderBlock { resnets, upsampler });
            prev = cout;
        }
        let decoder = Decoder {
            conv_in: w.conv2d("decoder.conv_in", latent, boc[n - 1], 3, 1, 1, true)?,
            mid_block: MidBlock::load(w, "decoder.mid_block", boc[n - 1], g, c.mid_block_add_attention)?,
            up_blocks,
            conv_norm_out: w.group_norm("decoder.conv_norm_out", g, boc[0], EPS)?,
            conv_out: w.conv2d("decoder.conv_out", boc[0], c.out_channels, 3, 1, 1, true)?,
        };
        let post_quant_conv = if c.use_post_quant_conv { Some(w.conv2d("post_quant_conv", latent, latent, 1, 1, 0, true)?) } else { None };
        w.finish("")?;
        Ok(Self { encoder, quant_conv, decoder, post_quant_conv, scaling_factor: c.scaling_factor })
    }

    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("config.json");
        let config = VaeConfig::from_json(&std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?)?;
        let mut source = SafetensorsSource::from_dir(dir)?;
        Self::load(&config, &mut WeightLoader::new(&mut source, device))
    }

    /// Image [B, 3, H, W] in [-1, 1] → the latent distribution's (mean, logvar), each [B, 4, H/8, W/8].
    pub fn encode(&self, image: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let e = &self.encoder;
        let mut x = e.conv_in.forward(image);
        for block in &e.down_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            if let Some(d) = &block.downsampler {
                x = d.forward(x);
            }
        }
        x = e.mid_block.forward(x);
        x = e.conv_out.forward(silu(group_norm_f32(&e.conv_norm_out, x)));
        if let Some(q) = &self.quant_conv {
            x = q.forward(x);
        }
        let mut halves = x.chunk(2, 1);
        let logvar = halves.pop().unwrap().clamp(-30.0, 20.0);
        (halves.pop().unwrap(), logvar)
    }

    /// Latents [B, 4, h, w] (already divided by `scaling_factor`) → image [B, 3, 8h, 8w].
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let mut x = match &self.post_quant_conv {
            Some(p) => p.forward(latents),
            None => latents,
        };
        x = d.mid_block.forward(d.conv_in.forward(x));
        for block in &d.up_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            if let Some(u) = &block.upsampler {
                x = u.forward(x);
            }
        }
        d.conv_out.forward(silu(group_norm_f32(&d.conv_norm_out, x)))
    }
}
