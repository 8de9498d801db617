//! AutoencoderKL: the encoder (image → latent mean/logvar, for img2img) and the decoder
//! (latents → image), named and wired as diffusers' autoencoder_kl.py / vae.py.
//!
//! Memory at 512² (SD VAE, per image): up_blocks.2's upsampler makes [1, 256, 512, 512], 256 MiB in
//! f32 (128 MiB in f16), which up_blocks.3.resnets.0 reads; up_blocks.3 then holds [1, 128, 512,
//! 512], 128 MiB in f32. So `decode` runs one image at a time, and WebGPU's default 128 MiB binding
//! limit is met at 512² only in f16; f32 at 512², and any dtype at 768² (SD 2.x-768: 576 MiB /
//! 288 MiB), need tiled decoding of up_blocks.2's upsampler onward (see `decode`).

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use crate::model::conv;

use super::attention::Attention;
use super::config::VaeConfig;
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetSpec, Upsample2D, group_norm_f32, group_norm_silu};
use crate::error::Result;
use crate::weights::WeightLoader;

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
    /// The config's `block_out_channels`, for the decoder's activation-size estimate.
    #[module(skip)]
    block_out_channels: Vec<usize>,
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
        Ok(Self { encoder, quant_conv, decoder, post_quant_conv, scaling_factor: c.scaling_factor, block_out_channels: boc.clone() })
    }

    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        crate::weights::safetensors::load_component_dir(dir.as_ref(), device, VaeConfig::from_json, Self::load)
    }

    /// Image [B, 3, H, W] in [-1, 1] → the latent distribution's (mean, logvar), each [B, 4, H/8, W/8].
    /// One image at a time: the first down block holds [1, 128, H, W] (128 MiB in f32 at 512²).
    pub fn encode(&self, image: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let batch = image.dims()[0];
        if batch == 1 {
            return self.encode_one(image);
        }
        let (means, logvars) = (0..batch).map(|i| self.encode_one(image.clone().narrow(0, i, 1))).unzip();
        (Tensor::cat(means, 0), Tensor::cat(logvars, 0))
    }

    fn encode_one(&self, image: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let e = &self.encoder;
        let mut x = conv::forward(&e.conv_in, image);
        for block in &e.down_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            if let Some(d) = &block.downsampler {
                x = d.forward(x);
            }
        }
        x = e.mid_block.forward(x);
        x = conv::forward(&e.conv_out, group_norm_silu(&e.conv_norm_out, x));
        if let Some(q) = &self.quant_conv {
            x = q.forward(x);
        }
        let mut halves = x.chunk(2, 1);
        let logvar = halves.pop().unwrap().clamp(-30.0, 20.0);
        (halves.pop().unwrap(), logvar)
    }

    /// Latents [B, 4, h, w] (already divided by `scaling_factor`) → image [B, 3, 8h, 8w], one image
    /// at a time to bound the largest activation.
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let batch = latents.dims()[0];
        if batch == 1 {
            return self.decode_one(latents);
        }
        Tensor::cat((0..batch).map(|i| self.decode_one(latents.clone().narrow(0, i, 1))).collect(), 0)
    }

    /// One image (or tile): post_quant_conv, then the decoder.
    fn decode_one(&self, latents: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let mut x = match &self.post_quant_conv {
            Some(p) => p.forward(latents),
            None => latents,
        };
        x = d.mid_block.forward(conv::forward(&d.conv_in, x));
        for block in &d.up_blocks {
            for r in &block.resnets {
                x = r.forward(x, None);
            }
            if let Some(u) = &block.upsampler {
                x = u.forward(x);
            }
        }
        conv::forward(&d.conv_out, group_norm_silu(&d.conv_norm_out, x))
    }

    /// Bytes of the decoder's largest activation for one [1, C, h, w] latent (see
    /// [`decoder_activation_bytes`]).
    pub fn decode_activation_bytes(&self, h: usize, w: usize) -> u64 {
        decoder_activation_bytes(&self.block_out_channels, h, w)
    }

    /// Decodes whole when the largest activation fits `max_buffer_bytes`, else in overlapping
    /// tiles (see [`decode_tile_size`]) with a quarter of each tile overlapping.
    pub fn decode_within(&self, latents: Tensor<4>, max_buffer_bytes: u64) -> Tensor<4> {
        let [_, _, h, w] = latents.dims();
        match decode_tile_size(&self.block_out_channels, h, w, max_buffer_bytes) {
            None => self.decode(latents),
            Some(tile) => self.decode_tiled(latents, tile, tile / 4),
        }
    }

    /// diffusers' `tiled_decode`: latent tiles of `tile` × `tile` starting every `tile - overlap`
    /// latents, decoded separately; each tile is blended linearly into the tile above and to the
    /// left over `8 × overlap` pixels, then cropped to its `8 × (tile - overlap)` pixel stride.
    /// Equals diffusers with `tile_latent_min_size = tile` when `overlap = tile / 4` and 4 divides `tile`.
    pub fn decode_tiled(&self, latents: Tensor<4>, tile: usize, overlap: usize) -> Tensor<4> {
        assert!(overlap < tile, "tile overlap {overlap} must be smaller than the tile {tile}");
        let [batch, _, h, w] = latents.dims();
        if h <= tile && w <= tile {
            return self.decode(latents);
        }
        let factor = 1 << (self.block_out_channels.len() - 1);
        let stride = tile - overlap;
        let blend = overlap * factor;
        let limit = stride * factor;
        let mut rows: Vec<Vec<Tensor<4>>> = Vec::new();
        for i in (0..h).step_by(stride) {
            let mut row: Vec<Tensor<4>> = Vec::new();
            for j in (0..w).step_by(stride) {
                let part = latents.clone().slice([0..batch, 0..latents.dims()[1], i..(i + tile).min(h), j..(j + tile).min(w)]);
                let mut t = self.decode(part);
                // Blended in place as diffusers does: later tiles blend with blended neighbours.
                if let Some(above) = rows.last() {
                    t = blend_edge(&above[row.len()], t, blend, 2);
                }
                if let Some(left) = row.last() {
                    t = blend_edge(left, t, blend, 3);
                }
                row.push(t);
            }
            rows.push(row);
        }
        let crop = |t: &Tensor<4>| {
            let [b, c, th, tw] = t.dims();
            t.clone().slice([0..b, 0..c, 0..th.min(limit), 0..tw.min(limit)])
        };
        Tensor::cat(rows.iter().map(|row| Tensor::cat(row.iter().map(crop).collect(), 3)).collect(), 2)
    }
}

/// diffusers' `blend_v` (dim 2) / `blend_h` (dim 3): the first `extent` rows/columns of `b` fade
/// from `a`'s last ones (weight 1 - y/extent) to `b`'s own (weight y/extent).
fn blend_edge(a: &Tensor<4>, b: Tensor<4>, extent: usize, dim: usize) -> Tensor<4> {
    let extent = extent.min(a.dims()[dim]).min(b.dims()[dim]);
    if extent == 0 {
        return b;
    }
    let len_b = b.dims()[dim];
    let weights: Vec<f32> = (0..extent).map(|y| y as f32 / extent as f32).collect();
    let mut shape = [1, 1, 1, 1];
    shape[dim] = extent;
    let wb = Tensor::<1>::from_data(burn::tensor::TensorData::new(weights, [extent]), &b.device()).reshape(shape).cast(b.dtype());
    let wa = wb.clone().neg().add_scalar(1.0);
    let a_edge = a.clone().narrow(dim, a.dims()[dim] - extent, extent);
    let head = a_edge * wa + b.clone().narrow(dim, 0, extent) * wb;
    if extent == len_b { head } else { Tensor::cat(vec![head, b.narrow(dim, extent, len_b - extent)], dim) }
}

/// Bytes of the VAE decoder's largest activation for one [1, C, h, w] latent in f32: each up
/// block's output (after its upsampler) with the block's channels at its resolution.
pub fn decoder_activation_bytes(block_out_channels: &[usize], h: usize, w: usize) -> u64 {
    let n = block_out_channels.len();
    (0..n)
        .map(|i| {
            let scale = 1u64 << (i + 1).min(n - 1);
            block_out_channels[n - 1 - i] as u64 * (h as u64 * scale) * (w as u64 * scale) * 4
        })
        .max()
        .unwrap_or(0)
}

/// The latent tile side [`AutoencoderKL::decode_within`] uses for an h × w latent under
/// `max_buffer_bytes`: `None` when the whole decode fits, else the largest multiple of 4 (so the
/// quarter overlap is whole, as diffusers' 64) whose tile fits (at least 4).
pub fn decode_tile_size(block_out_channels: &[usize], h: usize, w: usize, max_buffer_bytes: u64) -> Option<usize> {
    if decoder_activation_bytes(block_out_channels, h, w) <= max_buffer_bytes {
        return None;
    }
    let mut tile = 4;
    while tile + 4 < h.max(w) && decoder_activation_bytes(block_out_channels, tile + 4, tile + 4) <= max_buffer_bytes {
        tile += 4;
    }
    Some(tile)
}
