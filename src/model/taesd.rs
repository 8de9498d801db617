//! TAESD, diffusers' AutoencoderTiny: a small conv autoencoder for SD latents, used for fast
//! decoding and live previews. It works on the UNet's latents directly (no scaling factor).
//!
//! The same code runs madebyollin's later members of the family that keep this layout: TAEF1/TAESD3
//! (16 latent channels) and TAEF2 (32 channels, and a `pool` branch in three blocks of each half,
//! taken when the checkpoint has its tensors).

use std::path::Path;

use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use crate::model::conv;
use burn::tensor::activation::relu;
use serde::Deserialize;

use super::resnet::{group_norm_f32, upsample_nearest_2x};
use crate::error::{Error, Result};
use crate::weights::WeightLoader;

#[derive(Debug, Clone, Deserialize)]
pub struct TaesdConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "sixty_four")]
    pub encoder_block_out_channels: Vec<usize>,
    #[serde(default = "sixty_four")]
    pub decoder_block_out_channels: Vec<usize>,
    #[serde(default = "encoder_blocks")]
    pub num_encoder_blocks: Vec<usize>,
    #[serde(default = "decoder_blocks")]
    pub num_decoder_blocks: Vec<usize>,
    #[serde(default = "relu_name")]
    pub act_fn: String,
    #[serde(default = "two")]
    pub upsampling_scaling_factor: usize,
    #[serde(default = "nearest")]
    pub upsample_fn: String,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn sixty_four() -> Vec<usize> {
    vec![64; 4]
}
fn encoder_blocks() -> Vec<usize> {
    vec![1, 3, 3, 3]
}
fn decoder_blocks() -> Vec<usize> {
    vec![3, 3, 3, 1]
}
fn relu_name() -> String {
    "relu".into()
}
fn nearest() -> String {
    "nearest".into()
}

impl TaesdConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = crate::config_json::parse(text, "TAESD config.json", &[])?;
        if c.act_fn != "relu" || c.upsampling_scaling_factor != 2 || c.upsample_fn != "nearest" {
            return Err(Error::UnsupportedConfig("TAESD: only relu, nearest 2× upsampling".into()));
        }
        if c.encoder_block_out_channels.len() != c.num_encoder_blocks.len() || c.decoder_block_out_channels.len() != c.num_decoder_blocks.len() {
            return Err(Error::UnsupportedConfig("TAESD: block lists differ in length".into()));
        }
        Ok(c)
    }

    /// madebyollin/taesd's config.
    pub fn sd() -> Self {
        Self::from_json("{}").expect("built-in config")
    }
}

/// AutoencoderTinyBlock: three 3×3 convs with ReLUs, a 1×1 skip when channels change, ReLU fuse.
#[derive(Module, Debug)]
struct TinyBlock {
    pool: Option<PoolBranch>,
    conv0: Conv2d,
    conv2: Conv2d,
    conv4: Conv2d,
    skip: Option<Conv2d>,
}

/// TAEF2's `pool` branch, added to the block's input before the block runs:
/// x + conv1x1(relu(GroupNorm(4)(conv1x1(x)))), both 1×1 convs without bias (`pool.0`..`pool.3`).
#[derive(Module, Debug)]
struct PoolBranch {
    expand: Conv2d,
    norm: GroupNorm,
    project: Conv2d,
}

impl PoolBranch {
    fn load(w: &mut WeightLoader, prefix: &str, channels: usize) -> Result<Self> {
        let hidden = w.shape(&format!("{prefix}.0.weight")).map_or(4 * channels, |s| s[0]);
        Ok(Self {
            expand: w.conv2d(&format!("{prefix}.0"), channels, hidden, 1, 1, 0, false)?,
            // torch's nn.GroupNorm default eps.
            norm: w.group_norm(&format!("{prefix}.1"), 4, hidden, 1e-5)?,
            project: w.conv2d(&format!("{prefix}.3"), hidden, channels, 1, 1, 0, false)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu(group_norm_f32(&self.norm, self.expand.forward(x.clone())));
        x + self.project.forward(h)
    }
}

impl TinyBlock {
    fn load(w: &mut WeightLoader, prefix: &str, cin: usize, cout: usize) -> Result<Self> {
        let pool_prefix = format!("{prefix}.pool");
        Ok(Self {
            pool: if w.has(&format!("{pool_prefix}.0.weight")) { Some(PoolBranch::load(w, &pool_prefix, cin)?) } else { None },
            conv0: w.conv2d(&format!("{prefix}.conv.0"), cin, cout, 3, 1, 1, true)?,
            conv2: w.conv2d(&format!("{prefix}.conv.2"), cout, cout, 3, 1, 1, true)?,
            conv4: w.conv2d(&format!("{prefix}.conv.4"), cout, cout, 3, 1, 1, true)?,
            skip: if cin != cout { Some(w.conv2d(&format!("{prefix}.skip"), cin, cout, 1, 1, 0, false)?) } else { None },
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = match &self.pool {
            Some(pool) => pool.forward(x),
            None => x,
        };
        let h = conv::forward(&self.conv4, relu(conv::forward(&self.conv2, relu(conv::forward(&self.conv0, x.clone())))));
        let skip = match &self.skip {
            Some(s) => s.forward(x),
            None => x,
        };
        relu(h + skip)
    }
}

/// One entry of diffusers' `nn.Sequential` (its index is the tensor name's number).
// A block is larger than a conv; there are a few dozen layers, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
enum Layer {
    Conv(Conv2d),
    ConvRelu(Conv2d),
    Block(TinyBlock),
    /// nn.Upsample (no parameters) followed by its conv.
    UpsampleConv(Conv2d),
}

fn run(layers: &[Layer], mut x: Tensor<4>) -> Tensor<4> {
    for layer in layers {
        x = match layer {
            Layer::Conv(c) => conv::forward(c, x),
            Layer::ConvRelu(c) => relu(conv::forward(c, x)),
            Layer::Block(b) => b.forward(x),
            Layer::UpsampleConv(c) => conv::forward(c, upsample_nearest_2x(x)),
        };
    }
    x
}

#[derive(Module, Debug)]
pub struct Taesd {
    encoder: Vec<Layer>,
    decoder: Vec<Layer>,
    latent_channels: usize,
}

impl Taesd {
    pub fn load(c: &TaesdConfig, w: &mut WeightLoader) -> Result<Self> {
        // Encoder: conv (stride 2 after the first level, no bias), blocks; final conv to latents.
        let mut encoder = Vec::new();
        let mut index = 0;
        let name = |i: &mut usize| {
            let n = *i;
            *i += 1;
            n
        };
        let ch = &c.encoder_block_out_channels;
        for (level, &blocks) in c.num_encoder_blocks.iter().enumerate() {
            let n = name(&mut index);
            encoder.push(Layer::Conv(if level == 0 {
                w.conv2d(&format!("encoder.layers.{n}"), c.in_channels, ch[0], 3, 1, 1, true)?
            } else {
                w.conv2d(&format!("encoder.layers.{n}"), ch[level], ch[level], 3, 2, 1, false)?
            }));
            for _ in 0..blocks {
                let n = name(&mut index);
                encoder.push(Layer::Block(TinyBlock::load(w, &format!("encoder.layers.{n}"), ch[level], ch[level])?));
            }
        }
        let n = name(&mut index);
        encoder.push(Layer::Conv(w.conv2d(&format!("encoder.layers.{n}"), ch[ch.len() - 1], c.latent_channels, 3, 1, 1, true)?));

        // Decoder: conv + ReLU, then per level blocks, 2× upsample (not on the last level), conv.
        let mut decoder = Vec::new();
        let ch = &c.decoder_block_out_channels;
        let mut index = 0;
        decoder.push(Layer::ConvRelu(w.conv2d("decoder.layers.0", c.latent_channels, ch[0], 3, 1, 1, true)?));
        index += 2; // conv and its ReLU
        let levels = c.num_decoder_blocks.len();
        for (level, &blocks) in c.num_decoder_blocks.iter().enumerate() {
            let last = level == levels - 1;
            for _ in 0..blocks {
                let n = name(&mut index);
                decoder.push(Layer::Block(TinyBlock::load(w, &format!("decoder.layers.{n}"), ch[level], ch[level])?));
            }
            if !last {
                name(&mut index); // the upsample layer
            }
            let n = name(&mut index);
            let cout = if last { c.out_channels } else { ch[level] };
            let conv = w.conv2d(&format!("decoder.layers.{n}"), ch[level], cout, 3, 1, 1, last)?;
            decoder.push(if last { Layer::Conv(conv) } else { Layer::UpsampleConv(conv) });
        }
        w.finish("")?;
        Ok(Self { encoder, decoder, latent_channels: c.latent_channels })
    }

    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        crate::weights::safetensors::load_component_dir(dir.as_ref(), device, TaesdConfig::from_json, Self::load)
    }

    pub fn latent_channels(&self) -> usize {
        self.latent_channels
    }

    /// Image [B, 3, H, W] in [-1, 1] → latents [B, 4, H/8, W/8] (AutoencoderTiny.encode().latents).
    pub fn encode(&self, image: Tensor<4>) -> Tensor<4> {
        run(&self.encoder, (image + 1.0) / 2.0)
    }

    /// Latents → image in about [-1, 1] (AutoencoderTiny.decode().sample): latents are soft-clamped
    /// with 3·tanh(x/3) and the [0, 1] output mapped to [-1, 1].
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let x = (latents / 3.0).tanh() * 3.0;
        run(&self.decoder, x) * 2.0 - 1.0
    }
}
